using Freshet.Protocol;
using Freshet.Storage.Epochs;
using Freshet.Storage.Segments;
using Freshet.Storage.Tests.Support;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Storage.Tests;

/// <summary>
/// <see cref="LogLoader"/> on its own: what it hands a <see cref="PartitionLog"/> after a crash, and that a
/// second load of what it left (a crash during or right after recovery) finds the same log.
/// </summary>
public sealed class LogLoaderTests : IDisposable
{
    private const long Pid = 7;
    private readonly TempDir _tmp = new();
    private readonly ManualTimeProvider _time = new();
    private string Dir => _tmp.Sub("orders-0");

    public void Dispose() => _tmp.Dispose();

    private LoadedLog Load() =>
        new LogLoader(Dir, TestLogs.Tp, ManySegments.Config, new LogOptions(), recoveryPointCheckpoint: 0, logStartOffsetCheckpoint: 0,
            hadCleanShutdown: false, _time, NullLogger.Instance).Load();

    [Fact]
    public void A_crashed_log_loads_with_its_offsets_producers_and_epochs_and_loads_the_same_again()
    {
        // 30 idempotent batches of two records over several segments (producer snapshots at the rolls),
        // leader epoch 1 for the first 15, 2 after; then a crash, a torn tail and a lost epoch checkpoint.
        using (var log = TestLogs.Create(Dir, _time, ManySegments.Config))
        {
            for (int i = 0; i < 30; i++)
            {
                var r = log.AppendAsLeader(Batches.Idempotent(Pid, 0, 2 * i, 2, _time.NowMs, tag: $"b{i}"), leaderEpoch: i < 15 ? 1 : 2);
                Assert.Equal(ErrorCode.None, r.Error);
            }
            Assert.True(log.Segments.Count >= 3, $"{log.Segments.Count} segments");
            log.Crash();
        }
        string last = Directory.EnumerateFiles(Dir, "*" + LogSegment.LogSuffix).Order(StringComparer.Ordinal).Last();
        long whole = new FileInfo(last).Length;
        using (var fs = new FileStream(last, FileMode.Append)) fs.Write(new byte[20]);
        File.Delete(Path.Combine(Dir, LeaderEpochFileCache.FileName));

        var first = Load();
        try
        {
            Assert.Equal((0L, 60L, 0L), (first.LogStartOffset, first.LogEndOffset, first.RecoveryPoint));
            Assert.Equal(TestLogs.TopicId, first.TopicId);
            Assert.Equal(whole, first.Segments[^1].Size);
            Assert.Equal(whole, new FileInfo(last).Length);
            var producer = first.Producers.Get(Pid);
            Assert.NotNull(producer);
            Assert.Equal((59, 59L), (producer.LastSequence, producer.LastOffset));
            Assert.Equal([new EpochEntry(1, 0), new EpochEntry(2, 30)], first.Epochs.Entries);
        }
        finally
        {
            foreach (var s in first.Segments) s.Dispose();
        }

        var second = Load();
        try
        {
            Assert.Equal((first.LogStartOffset, first.LogEndOffset), (second.LogStartOffset, second.LogEndOffset));
            Assert.Equal(first.Segments.Select(s => (s.BaseOffset, s.Size)), second.Segments.Select(s => (s.BaseOffset, s.Size)));
            Assert.Equal((59, 59L), (second.Producers.Get(Pid)!.LastSequence, second.Producers.Get(Pid)!.LastOffset));
            Assert.Equal(first.Epochs.Entries, second.Epochs.Entries);
        }
        finally
        {
            foreach (var s in second.Segments) s.Dispose();
        }
    }
}
