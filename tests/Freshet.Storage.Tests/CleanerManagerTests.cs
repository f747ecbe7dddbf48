using Freshet.Protocol;
using Freshet.Protocol.Wire;
using Freshet.Storage.Checkpoints;
using Freshet.Storage.Tests.Support;

namespace Freshet.Storage.Tests;

/// <summary>The log cleaner as the LogManager runs it: its thread, its checkpoint file, the synchronous entry point.</summary>
public sealed class CleanerManagerTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly ManualTimeProvider _time = new();
    private long Now => _time.NowMs;
    private string Root => _tmp.Sub("data");

    public void Dispose() => _tmp.Dispose();

    private static readonly TopicPartition Offsets0 = new("__consumer_offsets", 0);
    private static readonly Uuid OffsetsId = new(7, 7);
    private static readonly LogConfig Compact = TestLogs.Config((LogConfig.CleanupPolicyConfig, "compact"), (LogConfig.SegmentBytesConfig, "2048"));

    private LogManagerOptions Options(bool cleaner) => TestManagers.Options([Root]) with { CleanerEnable = cleaner, CleanerBackoffMs = 20 };

    private void WriteDuplicates(PartitionLog log, int rounds)
    {
        for (int round = 0; round < rounds; round++)
            for (int k = 0; k < 20; k++)
                log.Append(KeyedBatches.Make(Now, ($"group-{k}", $"round-{round}")));
        log.Roll();
        log.CommitAll();
    }

    [Fact]
    public async Task The_cleaner_checkpoint_is_written_per_log_dir_and_read_back_at_start()
    {
        long checkpoint;
        string file = Path.Combine(Root, OffsetCheckpointFile.CleanerOffset);
        await using (var m = TestManagers.Start(_time, Options(cleaner: false)))
        {
            var log = m.GetOrCreateLog(Offsets0, OffsetsId, Compact);
            WriteDuplicates(log, 5);
            Assert.Null(m.CleanLog(new TopicPartition("missing", 0)));
            var r = m.CleanLog(Offsets0)!;
            Assert.True(r.Cleaned);
            checkpoint = log.CleanerCheckpoint;
            Assert.Equal(log.ActiveSegment.BaseOffset, checkpoint);
            // Written right after the cleaning, in Kafka's checkpoint format.
            Assert.Equal($"0\n1\n__consumer_offsets 0 {checkpoint}\n", File.ReadAllText(file));
            Assert.Equal(20, log.KeyedRecords().Count);
        }
        Assert.Equal(checkpoint, new OffsetCheckpointFile(file).Read()[Offsets0]);

        await using (var m = TestManagers.Start(_time, Options(cleaner: false)))
        {
            var log = m.GetOrCreateLog(Offsets0, OffsetsId, Compact); // the broker gives the topic's config back
            Assert.Equal(checkpoint, log.CleanerCheckpoint);
            log.CommitAll();
            var measured = m.Cleaner.Measure(log)!;
            Assert.Equal((checkpoint, 0L), (measured.FirstDirtyOffset, measured.DirtyBytes));
            Assert.True(measured.CleanBytes > 0);

            WriteDuplicates(log, 1);
            measured = m.Cleaner.Measure(log)!;
            Assert.Equal(checkpoint, measured.FirstDirtyOffset);
            Assert.True(measured.DirtyBytes > 0);
            Assert.True(m.CleanLog(Offsets0)!.Cleaned);
            Assert.Equal(["round-0"], log.KeyedRecords().Select(r => r.Value).Distinct());
        }
    }

    [Fact]
    public async Task The_background_thread_cleans_a_log_that_is_dirty_enough()
    {
        await using var m = TestManagers.Start(_time, Options(cleaner: true));
        var log = m.GetOrCreateLog(Offsets0, OffsetsId, Compact);
        var plain = m.GetOrCreateLog(new TopicPartition("orders", 0), new Uuid(8, 8), TestLogs.Config());
        WriteDuplicates(log, 10);
        WriteDuplicates(plain, 2);

        TestLogs.Until(() => log.CleanerCheckpoint == log.ActiveSegment.BaseOffset, "the cleaner thread to clean the compacted log");
        Assert.Equal(20, log.KeyedRecords().Count);
        Assert.Equal(40, plain.KeyedRecords().Count); // a delete topic is not compacted
        TestLogs.Until(() => new OffsetCheckpointFile(Path.Combine(Root, OffsetCheckpointFile.CleanerOffset)).Read().ContainsKey(Offsets0),
            "the cleaner checkpoint file");

        // A small dirty section is below min.cleanable.dirty.ratio (0.5): left for later. The cleaner thread
        // reads the clock once as each pass begins, holding the cleaner's lock for the pass: a read after the
        // append, then the lock taken here, means a whole pass looked at the log since (not a sleep).
        log.Append(KeyedBatches.Make(Now, ("group-0", "later")));
        log.Roll();
        log.CommitAll();
        long reads = _time.ReadsBy("freshet-log-cleaner");
        TestLogs.Until(() => _time.ReadsBy("freshet-log-cleaner") > reads, "a cleaner pass after the append");
        Assert.False(m.Cleaner.IsUncleanable(log)); // waits for that pass to end (the cleaner's lock)
        Assert.Equal(21, log.KeyedRecords().Count);
        Assert.Equal(ErrorCode.None, log.Read(0, 100, log.HighWatermark, true).Error);
    }

    [Fact]
    public async Task Without_log_cleaner_enable_nothing_is_compacted_in_the_background()
    {
        await using var m = TestManagers.Start(_time, Options(cleaner: false));
        var log = m.GetOrCreateLog(Offsets0, OffsetsId, Compact);
        WriteDuplicates(log, 5);
        Thread.Sleep(200);
        Assert.Equal(100, log.KeyedRecords().Count);
        Assert.Equal(0, log.CleanerCheckpoint);
    }
}
