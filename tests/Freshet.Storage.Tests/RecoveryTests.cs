using Freshet.Protocol;
using Freshet.Protocol.Records;
using Freshet.Storage.Checkpoints;
using Freshet.Storage.Segments;
using Freshet.Storage.Tests.Support;

namespace Freshet.Storage.Tests;

public sealed class RecoveryTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly ManualTimeProvider _time = new();
    private string Dir => _tmp.Sub("orders-0");
    private long Now => _time.NowMs;

    public void Dispose() => _tmp.Dispose();

    /// <summary>Five batches of two records in one segment, then a crash; returns the batch sizes.</summary>
    private List<int> FiveBatchesThenCrash()
    {
        var sizes = new List<int>();
        using var log = TestLogs.Create(Dir, _time);
        for (int i = 0; i < 5; i++)
        {
            var b = Batches.Make(2, Now + i, tag: $"b{i}");
            sizes.Add(b.Length);
            log.Append(b);
        }
        log.Crash();
        return sizes;
    }

    [Theory]
    [InlineData(5)]    // a few bytes of the last batch's offset field
    [InlineData(12)]   // its offset and length, nothing else
    [InlineData(40)]   // part of its header
    [InlineData(-1)]   // all but its last byte
    public void A_torn_tail_is_cut_off_and_the_log_ends_at_the_last_whole_batch(int keepOfLast)
    {
        var sizes = FiveBatchesThenCrash();
        int whole = sizes.Take(4).Sum();
        int keep = keepOfLast >= 0 ? keepOfLast : sizes[4] - 1;
        string path = TestLogs.SegmentPath(Dir, 0);
        using (var fs = new FileStream(path, FileMode.Open)) fs.SetLength(whole + keep);

        using var log = TestLogs.Open(Dir, _time);
        Assert.Equal((0L, 8L), (log.LogStartOffset, log.LogEndOffset));
        Assert.Equal(whole, new FileInfo(path).Length);
        Assert.Equal(whole, log.ActiveSegment.Size);
        log.CommitAll();
        Assert.Equal(["b0-0", "b0-1", "b1-0", "b1-1", "b2-0", "b2-1", "b3-0", "b3-1"], log.RecordsFrom(0).Select(r => r.Value));
        Assert.Equal((8L, 0L), (log.Append(Batches.Make(1, Now, tag: "new")).FirstOffset, log.ActiveSegment.BaseOffset));
        log.CommitAll();
        Assert.Equal("new-0", log.RecordsFrom(8).Single().Value);
        Assert.Equal(whole + Batches.Make(1, Now, tag: "new").Length, new FileInfo(path).Length);
    }

    [Theory]
    [InlineData(RecordBatch.MagicOffset)]
    [InlineData(RecordBatch.CrcOffset + 1)]
    [InlineData(RecordBatch.AttributesOffset + 1)]
    [InlineData(RecordBatch.MaxTimestampOffset + 3)]
    [InlineData(RecordBatch.RecordsOffset + 10)] // a record's bytes
    [InlineData(-1)]                            // the last byte of the batch
    public void A_corrupt_byte_in_the_active_segment_truncates_the_log_from_that_batch_on(int at)
    {
        var sizes = FiveBatchesThenCrash();
        int start = sizes.Take(2).Sum();
        TestLogs.CorruptByte(TestLogs.SegmentPath(Dir, 0), start + (at >= 0 ? at : sizes[2] - 1));

        using var log = TestLogs.Open(Dir, _time);
        Assert.Equal(4, log.LogEndOffset);
        Assert.Equal(start, new FileInfo(TestLogs.SegmentPath(Dir, 0)).Length);
        log.CommitAll();
        Assert.Equal([0L, 2L], log.BatchesFrom(0).Select(b => b.BaseOffset));
        Assert.Equal(4, log.Append(Batches.Make(1, Now)).FirstOffset);
    }

    /// <summary>Segments 0, 4, 8 and 12, each of two batches of two records; the rolled ones flushed; then a crash.</summary>
    private List<int> FourSegmentsThenCrash()
    {
        var sizes = new List<int>();
        using var log = TestLogs.Create(Dir, _time);
        for (int i = 0; i < 8; i++)
        {
            var b = Batches.Make(2, Now + i, tag: $"b{i}");
            sizes.Add(b.Length);
            log.Append(b);
            if (i % 2 == 1 && i < 7) log.Roll();
        }
        Assert.Equal([0L, 4L, 8L, 12L], log.SegmentBases());
        log.Crash();
        return sizes;
    }

    [Fact]
    public void A_corrupt_byte_in_an_older_segment_past_the_recovery_point_drops_the_segments_after_it()
    {
        var sizes = FourSegmentsThenCrash();
        TestLogs.CorruptByte(TestLogs.SegmentPath(Dir, 4), sizes[2] + RecordBatch.RecordsOffset + 5); // batch 6-7

        using var log = TestLogs.Open(Dir, _time, recoveryPoint: 4);
        Assert.Equal([0L, 4L], log.SegmentBases());
        Assert.Equal(6, log.LogEndOffset);
        Assert.Equal(sizes[2], new FileInfo(TestLogs.SegmentPath(Dir, 4)).Length);
        foreach (var suffix in new[] { LogSegment.LogSuffix, LogSegment.IndexSuffix, LogSegment.TimeIndexSuffix })
        {
            Assert.False(File.Exists(TestLogs.SegmentPath(Dir, 8, suffix)), $"segment 8 {suffix}");
            Assert.False(File.Exists(TestLogs.SegmentPath(Dir, 12, suffix)), $"segment 12 {suffix}");
        }
        log.CommitAll();
        Assert.Equal(["b0-0", "b0-1", "b1-0", "b1-1", "b2-0", "b2-1"], log.RecordsFrom(0).Select(r => r.Value));
        Assert.Equal(6, log.Append(Batches.Make(1, Now)).FirstOffset);
        Assert.Equal(4, log.ActiveSegment.BaseOffset);
    }

    [Fact]
    public void Segments_below_the_recovery_point_are_not_scanned_after_a_crash()
    {
        var sizes = FourSegmentsThenCrash();
        TestLogs.CorruptByte(TestLogs.SegmentPath(Dir, 4), sizes[2] + RecordBatch.RecordsOffset + 5);

        // Recovery point 12: segments 0-8 were flushed and are trusted; only the active one is checked.
        using (var log = TestLogs.Open(Dir, _time, recoveryPoint: 12))
        {
            Assert.Equal([0L, 4L, 8L, 12L], log.SegmentBases());
            Assert.Equal(16, log.LogEndOffset);
            log.Crash();
        }
        // Recovery point 0: everything is checked and the damage found.
        using var full = TestLogs.Open(Dir, _time, recoveryPoint: 0);
        Assert.Equal([0L, 4L], full.SegmentBases());
        Assert.Equal(6, full.LogEndOffset);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Missing_or_garbage_index_files_are_rebuilt_and_lookups_still_work(bool clean)
    {
        long t0 = Now;
        List<StoredBatch> batches;
        List<long> bases;
        using (var log = TestLogs.Create(Dir, _time, ManySegments.Config))
        {
            batches = ManySegments.Fill(log, t0);
            bases = log.SegmentBases();
            log.Close();
        }
        var originals = TestLogs.Files(Dir).Where(f => f.EndsWith("index", StringComparison.Ordinal))
            .ToDictionary(f => f, f => File.ReadAllBytes(Path.Combine(Dir, f)));
        Assert.Equal(2 * bases.Count, originals.Count);
        Assert.All(originals.Values, b => Assert.NotEmpty(b));

        File.Delete(TestLogs.SegmentPath(Dir, bases[1], ".index"));
        File.Delete(TestLogs.SegmentPath(Dir, bases[2], ".timeindex"));
        File.WriteAllBytes(TestLogs.SegmentPath(Dir, bases[3], ".index"), [1, 2, 3, 4, 5]); // not whole entries
        var descending = new byte[24]; // timestamps going backwards
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(descending, t0 + 1000);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(descending.AsSpan(12), t0);
        File.WriteAllBytes(TestLogs.SegmentPath(Dir, bases[4], ".timeindex"), descending);
        var pastEnd = new byte[8]; // an entry pointing past the end of the log file
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(pastEnd.AsSpan(4), 1_000_000);
        File.WriteAllBytes(TestLogs.SegmentPath(Dir, bases[5], ".index"), pastEnd);

        // Clean: the indexes of every segment are loaded, and rebuilt when unusable. Unclean with the
        // recovery point at the active segment: the same for the older segments.
        using (var log = TestLogs.Open(Dir, _time, ManySegments.Config, recoveryPoint: bases[^1], clean: clean))
        {
            log.CommitAll();
            Assert.Equal(batches, log.BatchesFrom(0));
            ManySegments.CheckLookups(log, batches, t0);
            log.Close();
        }
        // What was rebuilt and written back is what the appends had produced.
        foreach (var (name, bytes) in originals)
            Assert.True(bytes.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(Dir, name))), $"{name} differs after the rebuild");
    }

    [Fact]
    public void A_log_with_no_segment_left_starts_empty_at_its_log_start_offset()
    {
        using (var log = TestLogs.Create(Dir, _time))
        {
            log.Append(Batches.Make(3, Now));
            log.Close();
        }
        foreach (var f in Directory.GetFiles(Dir, "*.log")) File.Delete(f);

        using var reopened = TestLogs.Open(Dir, _time, logStartOffset: 42);
        Assert.Equal((42L, 42L), (reopened.LogStartOffset, reopened.LogEndOffset));
        Assert.Equal([42L], reopened.SegmentBases());
        Assert.Equal(42, reopened.Append(Batches.Make(1, Now)).FirstOffset);
    }

    [Fact]
    public void The_recovery_point_follows_flushes()
    {
        using var log = TestLogs.Create(Dir, _time, TestLogs.Config((LogConfig.FlushMessagesConfig, "5"), (LogConfig.FlushMsConfig, "1000")));
        log.Append(Batches.Make(3, Now));
        Assert.Equal(0, log.RecoveryPoint);
        log.Append(Batches.Make(2, Now)); // 5 messages since the last flush: flushed before the append returns
        Assert.Equal(5, log.RecoveryPoint);
        log.Append(Batches.Make(1, Now));
        log.FlushIfDue(Now + 999);
        Assert.Equal(5, log.RecoveryPoint);
        log.FlushIfDue(Now + 1000);
        Assert.Equal(6, log.RecoveryPoint);
        log.Append(Batches.Make(1, Now));
        log.Roll(); // the rolled segment is flushed in the background
        log.WaitForRecoveryPoint(7);
        Assert.Equal(7, log.RecoveryPoint);
    }

    [Fact]
    public async Task A_clean_shutdown_skips_recovery_and_an_unclean_one_does_not()
    {
        string root = _tmp.Sub("data");
        string marker = Path.Combine(root, LogManager.CleanShutdownFile);
        string dir;
        int first;
        {
            var m = TestManagers.Start(_time, root);
            var log = m.GetOrCreateLog(TestLogs.Tp, TestLogs.TopicId, LogConfig.Default);
            dir = log.Dir;
            var b0 = Batches.Make(2, Now);
            first = b0.Length;
            log.Append(b0);
            log.Append(Batches.Make(2, Now));
            log.Append(Batches.Make(2, Now));
            Assert.False(File.Exists(marker));
            await m.DisposeAsync();
        }
        Assert.True(File.Exists(marker));
        Assert.Equal(new Dictionary<TopicPartition, long> { [TestLogs.Tp] = 6 },
            new OffsetCheckpointFile(Path.Combine(root, OffsetCheckpointFile.RecoveryPoint)).Read());

        // Damage that only a recovery would notice.
        TestLogs.CorruptByte(TestLogs.SegmentPath(dir, 0), first + RecordBatch.RecordsOffset + 3);
        {
            var m = TestManagers.Start(_time, root);
            Assert.False(File.Exists(marker)); // a crash from now on must be detected
            Assert.Equal(6, m.GetLog(TestLogs.Tp)!.LogEndOffset);
            await m.DisposeAsync();
        }
        File.Delete(marker); // as if the broker had crashed
        {
            var m = TestManagers.Start(_time, root);
            Assert.Equal(2, m.GetLog(TestLogs.Tp)!.LogEndOffset);
            Assert.Equal(first, new FileInfo(TestLogs.SegmentPath(dir, 0)).Length);
            await m.DisposeAsync();
        }
    }

    [Fact]
    public async Task Checkpoints_carry_the_recovery_point_and_log_start_offset_across_a_crash()
    {
        string root = _tmp.Sub("data");
        var a = new TopicPartition("orders", 0);
        var b = new TopicPartition("orders", 1);
        int s = Batches.Make(2, Now).Length;
        var config = TestLogs.Config((LogConfig.SegmentBytesConfig, (2 * s).ToString()));
        var defaults = new Dictionary<string, string> { [LogConfig.SegmentBytesConfig] = (2 * s).ToString() };
        string dirA;
        {
            var m = TestManagers.Start(_time, TestManagers.Options([root], defaults));
            var la = m.GetOrCreateLog(a, TestLogs.TopicId, config);
            var lb = m.GetOrCreateLog(b, TestLogs.TopicId, config);
            dirA = la.Dir;
            for (int i = 0; i < 5; i++) la.Append(Batches.Make(2, Now));
            lb.Append(Batches.Make(2, Now));
            la.CommitAll();
            lb.CommitAll();
            Assert.Equal(ErrorCode.None, la.DeleteRecordsBefore(5, out _));
            m.WriteCheckpoints();
            Assert.Equal(new Dictionary<TopicPartition, long> { [a] = 5 },
                new OffsetCheckpointFile(Path.Combine(root, OffsetCheckpointFile.LogStartOffset)).Read());
            Assert.Equal(new Dictionary<TopicPartition, long> { [a] = 10, [b] = 2 }, m.ReadHighWatermarkCheckpoints());
            la.WaitForRecoveryPoint(8);
            await m.DisposeAsync();
        }
        var rp = new OffsetCheckpointFile(Path.Combine(root, OffsetCheckpointFile.RecoveryPoint));
        Assert.Equal(new Dictionary<TopicPartition, long> { [a] = 10, [b] = 2 }, rp.Read());

        // Crash: no marker. The log start offset comes back from its checkpoint, and damage in segment 4
        // (below the recovery point) is not looked for.
        File.Delete(Path.Combine(root, LogManager.CleanShutdownFile));
        TestLogs.CorruptByte(TestLogs.SegmentPath(dirA, 4), RecordBatch.RecordsOffset + 3);
        {
            var m = TestManagers.Start(_time, TestManagers.Options([root], defaults));
            var la = m.GetLog(a)!;
            Assert.Equal((5L, 10L), (la.LogStartOffset, la.LogEndOffset));
            Assert.Equal([4L, 8L], la.SegmentBases());
            Assert.Equal(2, m.GetLog(b)!.LogEndOffset);
            await m.DisposeAsync();
        }
        // A crash with an older recovery point: segment 4 is scanned, found corrupt and cut.
        File.Delete(Path.Combine(root, LogManager.CleanShutdownFile));
        rp.Write([KeyValuePair.Create(a, 0L), KeyValuePair.Create(b, 0L)]);
        {
            var m = TestManagers.Start(_time, TestManagers.Options([root], defaults));
            var la = m.GetLog(a)!;
            Assert.Equal((4L, 4L), (la.LogStartOffset, la.LogEndOffset));
            Assert.Equal([4L], la.SegmentBases());
            await m.DisposeAsync();
        }
    }
}
