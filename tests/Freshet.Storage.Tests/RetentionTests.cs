using Freshet.Protocol;
using Freshet.Storage.Segments;
using Freshet.Storage.Tests.Support;

namespace Freshet.Storage.Tests;

public sealed class RetentionTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly ManualTimeProvider _time = new();
    private readonly List<(LogSegment Segment, long DelayMs)> _scheduled = [];
    private string Dir => _tmp.Sub("orders-0");
    private long Now => _time.NowMs;

    public void Dispose() => _tmp.Dispose();

    private PartitionLog Create(LogConfig config) => TestLogs.Create(Dir, _time, config, scheduleDelete: (s, d) => _scheduled.Add((s, d)));

    private List<string> LogFiles() => TestLogs.Files(Dir).Where(f => f.Contains(".log", StringComparison.Ordinal)).ToList();

    [Fact]
    public void Retention_ms_deletes_segments_whose_newest_record_is_older_and_rolls_when_all_go()
    {
        using var log = Create(TestLogs.Config((LogConfig.RetentionMsConfig, "15000")));
        log.Append(Batches.Make(1, Now, tag: "a"));
        log.Roll();
        _time.Advance(10_000);
        log.Append(Batches.Make(1, Now, tag: "b"));
        log.Roll();
        _time.Advance(10_000);
        log.Append(Batches.Make(1, Now, tag: "c"));
        Assert.Equal([0L, 1L, 2L], log.SegmentBases());

        // Nothing above the high watermark is deleted, however old.
        Assert.Equal(0, log.DeleteOldSegments(Now));
        log.CommitAll();

        // Segment 0's record is 20 s old, segment 1's 10 s: only segment 0 goes.
        Assert.Equal(1, log.DeleteOldSegments(Now));
        Assert.Equal([1L, 2L], log.SegmentBases());
        Assert.Equal(1, log.LogStartOffset);
        Assert.Equal(ErrorCode.OffsetOutOfRange, log.Read(0, 1000, 3, true).Error);
        Assert.Equal("b-0", log.RecordsFrom(1)[0].Value);
        // Renamed to .deleted, handed to the scheduler with file.delete.delay.ms.
        var (seg, delay) = Assert.Single(_scheduled);
        Assert.Equal((0L, 60_000L), (seg.BaseOffset, delay));
        Assert.Equal([TestLogs.Name(0, ".log.deleted"), TestLogs.Name(1, ".log"), TestLogs.Name(2, ".log")], LogFiles());
        Assert.True(File.Exists(TestLogs.SegmentPath(Dir, 0, ".index.deleted")));
        Assert.True(File.Exists(TestLogs.SegmentPath(Dir, 0, ".timeindex.deleted")));
        Assert.False(File.Exists(TestLogs.SegmentPath(Dir, 0, ".index")));
        seg.DeleteFiles();
        Assert.DoesNotContain(TestLogs.Files(Dir), f => f.StartsWith(TestLogs.Name(0, ""), StringComparison.Ordinal) && !f.EndsWith(".snapshot", StringComparison.Ordinal));

        // Later every segment is too old, the active one included: a new empty active segment takes over at the end.
        _time.Advance(15_001);
        Assert.Equal(2, log.DeleteOldSegments(Now));
        Assert.Equal([3L], log.SegmentBases());
        Assert.Equal((3L, 3L, 3L), (log.LogStartOffset, log.LogEndOffset, log.HighWatermark));
        Assert.Equal([TestLogs.Name(1, ".log.deleted"), TestLogs.Name(2, ".log.deleted"), TestLogs.Name(3, ".log")], LogFiles());
        Assert.Equal(0, log.DeleteOldSegments(Now)); // an empty active segment is never deleted
        Assert.Equal(3, log.Append(Batches.Make(1, Now)).FirstOffset);
    }

    [Fact]
    public void Retention_bytes_keeps_the_newest_segments_within_the_limit()
    {
        int s = Batches.Make(1, Now).Length;
        using var log = Create(TestLogs.Config((LogConfig.RetentionBytesConfig, (2 * s + s / 2).ToString())));
        for (int i = 0; i < 5; i++)
        {
            log.Append(Batches.Make(1, Now));
            if (i < 4) log.Roll();
        }
        log.CommitAll();
        Assert.Equal(5 * s, log.Size);

        // 5 segments of s bytes, limit 2.5 s: deleting two leaves 3 s; a third would go under the limit.
        Assert.Equal(2, log.DeleteOldSegments(Now));
        Assert.Equal([2L, 3L, 4L], log.SegmentBases());
        Assert.Equal(3 * s, log.Size);
        Assert.Equal(2, log.LogStartOffset);
        Assert.Equal([0L, 1L], _scheduled.Select(x => x.Segment.BaseOffset));
        Assert.Equal(0, log.DeleteOldSegments(Now));
    }

    [Fact]
    public void Retention_does_not_apply_to_compacted_topics_or_without_limits()
    {
        // Keyed records: a compacted topic refuses records without a key.
        int s = KeyedBatches.Make(Now, ("k", "v")).Length;
        using var log = Create(TestLogs.Config((LogConfig.RetentionBytesConfig, "0"), (LogConfig.RetentionMsConfig, "1"),
            (LogConfig.CleanupPolicyConfig, "compact")));
        for (int i = 0; i < 3; i++) { log.Append(KeyedBatches.Make(Now, ("k", "v"))); log.Roll(); }
        log.CommitAll();
        _time.Advance(1_000_000);
        Assert.Equal(0, log.DeleteOldSegments(Now));
        log.Config = TestLogs.Config((LogConfig.RetentionBytesConfig, "-1"), (LogConfig.RetentionMsConfig, "-1"));
        Assert.Equal(0, log.DeleteOldSegments(Now));
        log.Config = TestLogs.Config((LogConfig.RetentionBytesConfig, s.ToString()), (LogConfig.RetentionMsConfig, "-1"));
        Assert.Equal(2, log.DeleteOldSegments(Now));
        Assert.Equal([2L, 3L], log.SegmentBases());
    }

    /// <summary>
    /// Segments A (two batches), B (one) and the active C (one), retention.bytes 2.5 batches. A goes
    /// for another reason (log start offset or age); that alone brings the log under the limit, so B must stay.
    /// </summary>
    [Theory]
    [InlineData("log-start")]
    [InlineData("time")]
    public void A_segment_deleted_for_another_reason_counts_toward_retention_bytes(string reason)
    {
        int s = Batches.Make(1, Now).Length;
        using var log = Create(TestLogs.Config((LogConfig.RetentionBytesConfig, (2 * s + s / 2).ToString()), (LogConfig.RetentionMsConfig, "60000")));
        log.Append(Batches.Make(1, Now, tag: "a"));
        log.Append(Batches.Make(1, Now, tag: "a"));
        log.Roll();
        _time.Advance(30_000);
        log.Append(Batches.Make(1, Now, tag: "b"));
        log.Roll();
        log.Append(Batches.Make(1, Now, tag: "c"));
        log.CommitAll();
        Assert.Equal([0L, 2L, 3L], log.SegmentBases());

        if (reason == "log-start")
        {
            Assert.Equal(ErrorCode.None, log.DeleteRecordsBefore(2, out _));
        }
        else
        {
            _time.Advance(30_001); // A is 60001 ms old, B 30001 ms
            Assert.Equal(1, log.DeleteOldSegments(Now));
        }
        Assert.Equal([2L, 3L], log.SegmentBases());
        Assert.Equal(2 * s, log.Size);
        Assert.Equal(2, log.LogStartOffset);
        Assert.Equal(["b-0", "c-0"], log.RecordsFrom(2).Select(r => r.Value));
    }

    [Fact]
    public void DeleteRecordsBefore_moves_the_log_start_and_drops_the_segments_wholly_below_it()
    {
        int s = Batches.Make(2, Now).Length;
        using var log = Create(TestLogs.Config((LogConfig.SegmentBytesConfig, (2 * s).ToString())));
        for (int i = 0; i < 7; i++) log.Append(Batches.Make(2, Now, tag: $"b{i}"));
        Assert.Equal([0L, 4L, 8L, 12L], log.SegmentBases());
        log.UpdateHighWatermark(10);

        Assert.Equal(ErrorCode.OffsetOutOfRange, log.DeleteRecordsBefore(11, out long start)); // past the high watermark
        Assert.Equal(0, start);
        Assert.Equal(ErrorCode.OffsetOutOfRange, log.DeleteRecordsBefore(-1, out _));
        log.CommitAll();

        Assert.Equal(ErrorCode.None, log.DeleteRecordsBefore(6, out start));
        Assert.Equal(6, start);
        Assert.Equal([4L, 8L, 12L], log.SegmentBases()); // segment 4 holds offset 6 and stays
        Assert.Equal([0L], _scheduled.Select(x => x.Segment.BaseOffset));
        Assert.Equal(ErrorCode.OffsetOutOfRange, log.Read(5, 1000, 14, true).Error);
        Assert.Equal(6, log.RecordsFrom(6).First(r => r.Offset >= 6).Offset);

        Assert.Equal(ErrorCode.None, log.DeleteRecordsBefore(3, out start)); // never backwards
        Assert.Equal(6, start);

        Assert.Equal(ErrorCode.None, log.DeleteRecordsBefore(14, out start)); // everything
        Assert.Equal(14, start);
        Assert.Equal([12L], log.SegmentBases()); // the active segment is not deleted by the log start offset
        Assert.Equal(ErrorCode.OffsetOutOfRange, log.Read(13, 1000, 14, true).Error);
        Assert.Equal(ErrorCode.None, log.Read(14, 1000, 14, true).Error);
        Assert.Equal(14, log.Append(Batches.Make(1, Now)).FirstOffset);
        Assert.Equal([0L, 4L, 8L], _scheduled.Select(x => x.Segment.BaseOffset));
    }

    [Fact]
    public async Task The_log_manager_removes_deleted_segment_files_after_file_delete_delay_ms()
    {
        string root = _tmp.Sub("data");
        var defaults = new Dictionary<string, string> { [LogConfig.FileDeleteDelayMsConfig] = "5000" };
        long t = Now;
        string dir;
        byte[] firstBatch;
        FileRecords early;
        {
            var manager = TestManagers.Start(_time, TestManagers.Options([root], defaults));
            try
            {
                var log = manager.GetOrCreateLog(TestLogs.Tp, TestLogs.TopicId, LogConfig.Create(defaults, new Dictionary<string, string>()));
                dir = log.Dir;
                log.Append(Batches.Make(2, t, tag: "old"));
                log.Roll();
                log.Append(Batches.Make(2, t, tag: "new"));
                log.CommitAll();
                early = log.Read(0, 1 << 20, 4, true).Records!;
                firstBatch = early.ReadAll();

                Assert.Equal(ErrorCode.None, log.DeleteRecordsBefore(2, out _));
                Assert.Equal([2L], log.SegmentBases());
                Assert.Equal([TestLogs.Name(0, ".log.deleted"), TestLogs.Name(2, ".log")], TestLogs.Files(dir).Where(f => f.Contains(".log", StringComparison.Ordinal)));
                // A reader that got the file range before the deletion can still send it.
                Assert.Equal(firstBatch, early.ReadAll());

                manager.DeletePendingSegments();
                Assert.True(File.Exists(TestLogs.SegmentPath(dir, 0, ".log.deleted")));
                _time.Advance(4_999);
                manager.DeletePendingSegments();
                Assert.True(File.Exists(TestLogs.SegmentPath(dir, 0, ".log.deleted")));
                _time.Advance(1);
                manager.DeletePendingSegments();
                Assert.DoesNotContain(TestLogs.Files(dir), f => f.StartsWith(TestLogs.Name(0, "."), StringComparison.Ordinal));
                Assert.Equal([TestLogs.Name(2, ".log")], TestLogs.Files(dir, ".log"));

                // Retention through the manager, and what is still pending at shutdown goes at shutdown.
                log.Config = LogConfig.Create(defaults, new Dictionary<string, string> { [LogConfig.RetentionMsConfig] = "1000" });
                Assert.Equal(1, manager.RunRetention());
                Assert.True(File.Exists(TestLogs.SegmentPath(dir, 2, ".log.deleted")));
            }
            finally
            {
                await manager.DisposeAsync();
            }
        }
        Assert.False(File.Exists(TestLogs.SegmentPath(dir, 2, ".log.deleted")));
        Assert.Equal([TestLogs.Name(4, ".log")], TestLogs.Files(dir, ".log"));
    }

    [Fact]
    public void Leftovers_of_interrupted_deletions_are_removed_when_the_log_opens()
    {
        using (var log = TestLogs.Create(Dir, _time))
        {
            log.Append(Batches.Make(3, Now));
            log.Close();
        }
        foreach (var name in new[] { TestLogs.Name(0, ".log.deleted"), TestLogs.Name(0, ".index.deleted"), TestLogs.Name(0, ".log.cleaned"),
                     TestLogs.Name(0, ".snapshot.tmp"), TestLogs.Name(99, ".index"), TestLogs.Name(99, ".timeindex") })
            File.WriteAllBytes(Path.Combine(Dir, name), [1, 2, 3]);

        using var reopened = TestLogs.Open(Dir, _time, clean: true);
        Assert.Equal(3, reopened.LogEndOffset);
        Assert.Equal(new[] { TestLogs.Name(0, ".index"), TestLogs.Name(0, ".log"), TestLogs.Name(3, ".snapshot"), TestLogs.Name(0, ".timeindex"), PartitionMetadataFile.FileName,
                Epochs.LeaderEpochFileCache.FileName }
            .Order(StringComparer.Ordinal), TestLogs.Files(Dir));
    }
}
