using Freshet.Protocol;
using Freshet.Storage.Checkpoints;
using Freshet.Storage.Epochs;
using Freshet.Storage.Tests.Support;

namespace Freshet.Storage.Tests;

/// <summary>The leader epoch cache: its file, how appends, truncation and retention move it, recovery, and EndOffsetForEpoch.</summary>
public sealed class LeaderEpochTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly ManualTimeProvider _time = new();
    private string Dir => _dir.Path;
    private long Now => _time.GetUtcNow().ToUnixTimeMilliseconds();
    private string EpochFile => Path.Combine(Dir, LeaderEpochFileCache.FileName);

    public void Dispose() => _dir.Dispose();

    private static EpochEntry E(int epoch, long start) => new(epoch, start);

    private static LogAppendResult AppendAt(PartitionLog log, int epoch, int records, string tag = "v")
    {
        var r = log.AppendAsLeader(Batches.Make(records, ManualTimeProvider.DefaultStartMs, tag: tag), epoch);
        Assert.Equal(ErrorCode.None, r.Error);
        return r;
    }

    [Fact]
    public void The_file_is_kafkas_text_format_and_round_trips()
    {
        using (var log = TestLogs.Create(Dir, _time))
        {
            Assert.Equal("0\n0\n", File.ReadAllText(EpochFile)); // created with the log
            AppendAt(log, 0, 3);   // 0-2
            AppendAt(log, 0, 2);   // 3-4
            AppendAt(log, 3, 4);   // 5-8
            AppendAt(log, 7, 1);   // 9
            Assert.Equal("0\n3\n0 0\n3 5\n7 9\n", File.ReadAllText(EpochFile));
            Assert.False(File.Exists(EpochFile + ".tmp"));
            log.Close();
        }
        Assert.Equal([E(0, 0), E(3, 5), E(7, 9)], LeaderEpochFileCache.TryRead(EpochFile)!);
        using var reopened = TestLogs.Open(Dir, _time, clean: true);
        Assert.Equal([E(0, 0), E(3, 5), E(7, 9)], reopened.LeaderEpochCache.Entries);
        Assert.Equal(7, reopened.LatestEpoch);
    }

    [Theory]
    [InlineData("1\n0\n")]              // unknown version
    [InlineData("0\n2\n0 0\n")]         // count does not match
    [InlineData("0\n2\n3 5\n1 9\n")]    // epochs out of order
    [InlineData("0\n1\nzero 0\n")]      // not a number
    public void A_malformed_file_reads_as_missing(string content)
    {
        File.WriteAllText(EpochFile, content);
        Assert.Null(LeaderEpochFileCache.TryRead(EpochFile));
    }

    [Fact]
    public void Assign_keeps_epochs_and_offsets_increasing()
    {
        var c = LeaderEpochFileCache.Create(Dir);
        Assert.True(c.Assign(1, 0));
        Assert.False(c.Assign(1, 5));   // same epoch, later start: nothing
        Assert.False(c.Assign(-1, 7));  // batches without an epoch
        Assert.True(c.Assign(4, 10));
        Assert.True(c.Assign(6, 20));
        // An epoch below the latest, or a start at or before the latest start, drops what conflicts (Kafka's rule).
        Assert.True(c.Assign(5, 15));
        Assert.Equal([E(1, 0), E(4, 10), E(5, 15)], c.Entries);
        Assert.Equal([E(1, 0), E(4, 10), E(5, 15)], LeaderEpochFileCache.TryRead(EpochFile)!);
    }

    [Fact]
    public void End_offset_for_epoch_follows_kafkas_rules()
    {
        var c = LeaderEpochFileCache.Create(Dir);
        c.Assign(2, 10);
        c.Assign(4, 30);
        c.Assign(7, 50);
        Assert.Equal(EpochEndOffset.Undefined, c.EndOffsetFor(-1, 80));
        Assert.Equal(new EpochEndOffset(7, 80), c.EndOffsetFor(7, 80));   // the latest epoch ends at the log end
        Assert.Equal(new EpochEndOffset(4, 50), c.EndOffsetFor(4, 80));   // a known epoch ends where the next starts
        Assert.Equal(new EpochEndOffset(4, 50), c.EndOffsetFor(5, 80));   // unknown: the largest below it
        Assert.Equal(new EpochEndOffset(4, 50), c.EndOffsetFor(6, 80));
        Assert.Equal(new EpochEndOffset(2, 30), c.EndOffsetFor(3, 80));
        Assert.Equal(new EpochEndOffset(1, 10), c.EndOffsetFor(1, 80));   // below every epoch: where the first starts
        Assert.Equal(EpochEndOffset.Undefined, c.EndOffsetFor(9, 80));   // above the latest
        string empty = Directory.CreateDirectory(_dir.Sub("empty")).FullName;
        Assert.Equal(EpochEndOffset.Undefined, LeaderEpochFileCache.Create(empty).EndOffsetFor(3, 0));
    }

    [Fact]
    public void Appends_as_leader_and_as_follower_assign_epochs()
    {
        using var leader = TestLogs.Create(_dir.Sub("leader"), _time);
        AppendAt(leader, 1, 3);
        AppendAt(leader, 1, 3);
        AppendAt(leader, 2, 2);
        Assert.Equal([E(1, 0), E(2, 6)], leader.LeaderEpochCache.Entries);

        using var follower = TestLogs.Create(_dir.Sub("follower"), _time);
        foreach (var batch in leader.ReadBatches(0))
            Assert.Equal(ErrorCode.None, follower.AppendAsFollower(batch).Error);
        Assert.Equal([E(1, 0), E(2, 6)], follower.LeaderEpochCache.Entries);
        Assert.Equal(new EpochEndOffset(1, 6), follower.EndOffsetForEpoch(1));
        Assert.Equal(new EpochEndOffset(2, 8), follower.EndOffsetForEpoch(2));
    }

    [Fact]
    public void Truncation_removes_epochs_from_the_end_and_retention_from_the_start()
    {
        var config = TestLogs.Config((LogConfig.SegmentBytesConfig, "300"));
        using var log = TestLogs.Create(Dir, _time, config);
        for (int e = 0; e < 6; e++) AppendAt(log, e, 2, $"e{e}"); // epoch e at offsets 2e, 2e+1
        Assert.Equal(6, log.LeaderEpochCache.Entries.Count);

        log.TruncateTo(7); // cuts the batch 6-7: epoch 3 ends at 6, epochs 4 and 5 go
        Assert.Equal(6, log.LogEndOffset);
        Assert.Equal([E(0, 0), E(1, 2), E(2, 4)], log.LeaderEpochCache.Entries);
        Assert.Equal([E(0, 0), E(1, 2), E(2, 4)], LeaderEpochFileCache.TryRead(Path.Combine(Dir, LeaderEpochFileCache.FileName))!);

        log.CommitAll();
        Assert.Equal(ErrorCode.None, log.DeleteRecordsBefore(3, out _)); // the log starts inside epoch 1
        Assert.Equal([E(1, 3), E(2, 4)], log.LeaderEpochCache.Entries);
        Assert.Equal(ErrorCode.None, log.DeleteRecordsBefore(5, out _));
        Assert.Equal([E(2, 5)], log.LeaderEpochCache.Entries);
    }

    [Fact]
    public void A_leader_that_never_appended_loses_its_epoch_entry_when_truncated_to_its_end()
    {
        using var log = TestLogs.Create(Dir, _time);
        AppendAt(log, 1, 4);
        log.AssignEpochStartOffset(2, log.LogEndOffset); // became leader at epoch 2, wrote nothing
        Assert.Equal(2, log.LatestEpoch);
        log.TruncateTo(log.LogEndOffset); // a later leader says the logs agree up to the end
        Assert.Equal([E(1, 0)], log.LeaderEpochCache.Entries);
    }

    [Fact]
    public void A_missing_or_stale_cache_is_rebuilt_from_the_log_on_open()
    {
        using (var log = TestLogs.Create(Dir, _time))
        {
            AppendAt(log, 0, 2);
            AppendAt(log, 3, 2);
            AppendAt(log, 5, 2);
            log.Close();
        }
        File.Delete(EpochFile);
        using (var log = TestLogs.Open(Dir, _time, clean: true))
        {
            Assert.Equal([E(0, 0), E(3, 2), E(5, 4)], log.LeaderEpochCache.Entries);
            log.Close();
        }
        Assert.Equal([E(0, 0), E(3, 2), E(5, 4)], LeaderEpochFileCache.TryRead(EpochFile)!);

        // Stale: a crash after an append at a new epoch, before the checkpoint was written.
        File.WriteAllText(EpochFile, "0\n2\n0 0\n3 2\n");
        using (var log = TestLogs.Open(Dir, _time))
            Assert.Equal([E(0, 0), E(3, 2), E(5, 4)], log.LeaderEpochCache.Entries);

        // Ahead of a log whose tail was lost: trimmed to the log.
        File.WriteAllText(EpochFile, "0\n4\n0 0\n3 2\n5 4\n9 6\n");
        using (var log = TestLogs.Open(Dir, _time))
            Assert.Equal([E(0, 0), E(3, 2), E(5, 4)], log.LeaderEpochCache.Entries);
    }

    [Fact]
    public void Follower_append_keeps_the_leaders_offsets_and_bytes()
    {
        using var leader = TestLogs.Create(_dir.Sub("leader"), _time);
        AppendAt(leader, 4, 3, "a");
        AppendAt(leader, 4, 2, "b");
        leader.CommitAll();
        var bytes = leader.Read(0, int.MaxValue, leader.LogEndOffset, true).Bytes();

        using var follower = TestLogs.Create(_dir.Sub("follower"), _time);
        var r = follower.AppendAsFollower(bytes);
        Assert.Equal(ErrorCode.None, r.Error);
        Assert.Equal((0L, 4L, 5), (r.FirstOffset, r.LastOffset, r.RecordCount));
        Assert.Equal(5, follower.LogEndOffset);
        Assert.Equal(bytes, follower.Read(0, int.MaxValue, follower.LogEndOffset, true).Bytes());

        // Already there: offsets below the log end are refused, nothing changes.
        Assert.Equal(ErrorCode.OffsetOutOfRange, follower.AppendAsFollower(bytes).Error);
        // A flipped bit fails the CRC.
        AppendAt(leader, 4, 1, "c");
        var next = leader.Read(5, int.MaxValue, leader.LogEndOffset, true).Bytes();
        var corrupt = next.ToArray();
        corrupt[^1] ^= 0xFF;
        Assert.Equal(ErrorCode.CorruptMessage, follower.AppendAsFollower(corrupt).Error);
        Assert.Equal(5, follower.LogEndOffset);
        // A partial batch at the end of a fetch is left for the next one.
        var partial = next.Concat(next.Take(30)).ToArray();
        Assert.Equal(ErrorCode.None, follower.AppendAsFollower(partial).Error);
        Assert.Equal(6, follower.LogEndOffset);
    }

    [Fact]
    public void Follower_append_rolls_segments_at_the_batches_own_offsets()
    {
        var config = TestLogs.Config((LogConfig.SegmentBytesConfig, "400"));
        using var leader = TestLogs.Create(_dir.Sub("leader"), _time, config);
        for (int i = 0; i < 12; i++) AppendAt(leader, 1, 2, $"r{i}");
        var rest = leader.ReadBatches(0).SelectMany(b => b).ToArray();
        using var follower = TestLogs.Create(_dir.Sub("follower"), _time, config);
        Assert.Equal(ErrorCode.None, follower.AppendAsFollower(rest).Error); // everything in one call
        Assert.True(follower.Segments.Count > 2);
        Assert.Equal(24, follower.LogEndOffset);
        follower.CommitAll();
        Assert.Equal(leader.RecordsFrom(0).Select(r => (r.Offset, r.Value)), follower.RecordsFrom(0).Select(r => (r.Offset, r.Value)));
        for (long o = 0; o < 24; o++)
            Assert.Equal(o - o % 2, Batches.Headers(follower.Read(o, 1, 24, true).Bytes()).First().BaseOffset);
    }

    [Fact]
    public void Follower_appends_keep_producer_state_so_duplicates_are_caught_after_failover()
    {
        using var leader = TestLogs.Create(_dir.Sub("leader"), _time);
        var first = Batches.Idempotent(producerId: 42, epoch: 0, baseSequence: 0, count: 3, timestamp: Now);
        Assert.Equal(ErrorCode.None, leader.AppendAsLeader(first.ToArray(), 1).Error);
        using var follower = TestLogs.Create(_dir.Sub("follower"), _time);
        foreach (var b in leader.ReadBatches(0)) follower.AppendAsFollower(b);

        // The follower leads now; the producer retries its batch.
        var retry = follower.AppendAsLeader(first.ToArray(), 2);
        Assert.True(retry.IsDuplicate);
        Assert.Equal((0L, 2L), (retry.FirstOffset, retry.LastOffset));
        var gap = follower.AppendAsLeader(Batches.Idempotent(42, 0, 7, 1, Now), 2);
        Assert.Equal(ErrorCode.OutOfOrderSequenceNumber, gap.Error);
    }

    [Fact]
    public void Truncation_leaves_producer_state_and_indexes_consistent()
    {
        var config = TestLogs.Config((LogConfig.SegmentBytesConfig, "500"), (LogConfig.IndexIntervalBytesConfig, "1"));
        using var log = TestLogs.Create(Dir, _time, config);
        for (int s = 0; s < 10; s++) Assert.Equal(ErrorCode.None, log.AppendAsLeader(Batches.Idempotent(7, 0, s * 2, 2, Now), 1).Error);
        Assert.True(log.Segments.Count > 2);
        log.CommitAll();
        log.TruncateTo(9); // inside the batch 8-9: it goes, the log ends at 8 (sequences 0-7)
        Assert.Equal(8, log.LogEndOffset);
        Assert.Equal(8, log.HighWatermark);
        Assert.Equal(7, log.Producers.Get(7)!.LastSequence);
        Assert.Equal(7, log.Producers.Get(7)!.LastOffset);
        // The truncated batch can be written again (its sequence is next), an older one is a duplicate.
        Assert.Equal(8, log.AppendAsLeader(Batches.Idempotent(7, 0, 8, 2, Now), 1).FirstOffset);
        Assert.True(log.AppendAsLeader(Batches.Idempotent(7, 0, 6, 2, Now), 1).IsDuplicate);
        // Every offset is found through the indexes, and recovery agrees.
        for (long o = 0; o < 10; o++) Assert.Equal(o - o % 2, Batches.Headers(log.Read(o, 1, 10, true).Bytes()).First().BaseOffset);
        log.Crash();
        using var reopened = TestLogs.Open(Dir, _time, config);
        Assert.Equal(10, reopened.LogEndOffset);
        Assert.Equal(9, reopened.Producers.Get(7)!.LastSequence);
    }

    [Fact]
    public void Truncate_fully_starts_the_log_over()
    {
        using var log = TestLogs.Create(Dir, _time);
        log.AppendAsLeader(Batches.Idempotent(7, 0, 0, 4, Now), 1);
        log.TruncateFullyAndStartAt(100);
        Assert.Equal((100L, 100L, 100L), (log.LogStartOffset, log.LogEndOffset, log.HighWatermark));
        Assert.Empty(log.LeaderEpochCache.Entries);
        Assert.Null(log.Producers.Get(7));
        Assert.Equal(100, log.AppendAsLeader(Batches.Make(1, Now), 3).FirstOffset);
        Assert.Equal([E(3, 100)], log.LeaderEpochCache.Entries);
    }

    [Fact]
    public async Task The_high_watermark_checkpoint_survives_a_restart()
    {
        string root = _dir.Sub("data");
        var tp = TestLogs.Tp;
        {
            var m = TestManagers.Start(_time, root);
            var log = m.GetOrCreateLog(tp, TestLogs.TopicId, TestLogs.Config());
            for (int i = 0; i < 5; i++) log.Append(Batches.Make(2, Now));
            log.UpdateHighWatermark(6); // a follower's: the leader had committed 6
            m.WriteHighWatermarkCheckpoints();
            Assert.Equal(new Dictionary<TopicPartition, long> { [tp] = 6 },
                new OffsetCheckpointFile(Path.Combine(root, OffsetCheckpointFile.Replication)).Read());
            await m.DisposeAsync();
        }
        {
            var m = TestManagers.Start(_time, root);
            Assert.Equal(6, m.GetLog(tp)!.HighWatermark);
            Assert.Equal(10, m.GetLog(tp)!.LogEndOffset);
            await m.DisposeAsync();
        }
        // A checkpoint beyond the log (its tail lost in a crash) is capped at the log end.
        new OffsetCheckpointFile(Path.Combine(root, OffsetCheckpointFile.Replication)).Write([KeyValuePair.Create(tp, 50L)]);
        {
            var m = TestManagers.Start(_time, root);
            Assert.Equal(10, m.GetLog(tp)!.HighWatermark);
            await m.DisposeAsync();
        }
    }
}
