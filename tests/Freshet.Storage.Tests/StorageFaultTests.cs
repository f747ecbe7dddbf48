using Freshet.Protocol;
using Freshet.Storage.Checkpoints;
using Freshet.Storage.Tests.Support;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Storage.Tests;

/// <summary>
/// Failed fsyncs and writes, injected through the storage layer's file seam (<see cref="FaultyStorageIo"/>):
/// no record whose append was answered with an error is ever counted durable, read, or brought back by a
/// restart; the directory goes offline for good on anything but a full disk.
/// </summary>
public sealed class StorageFaultTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly ManualTimeProvider _time = new();
    private readonly FaultyStorageIo _io = new();
    private long Now => _time.NowMs;

    public void Dispose() => _tmp.Dispose();

    private string LogDir(string name = "d1") => _tmp.Sub(name);

    private PartitionLog Create(string logDir, int partition, LogOptions options, LogConfig? config = null) =>
        PartitionLog.Create(Path.Combine(logDir, $"orders-{partition}"), new TopicPartition("orders", partition), TestLogs.TopicId, config ?? LogConfig.Default,
            options, _time, NullLogger.Instance);

    private static bool SegmentOf(string path, string logDir) =>
        path.StartsWith(logDir + Path.DirectorySeparatorChar, StringComparison.Ordinal) && path.EndsWith(".log", StringComparison.Ordinal);

    /// <summary>The case: a failed fsync used to leave the records in the log, and the next successful fsync made them durable.</summary>
    [Fact]
    public void A_failed_fsync_takes_the_directory_offline_and_no_later_fsync_counts_its_records()
    {
        var options = new LogOptions { FsyncOnAppend = true, Io = _io };
        string d1 = LogDir("d1"), d2 = LogDir("d2");
        string? reported = null;
        options.Failures.DirectoryFailed += (dir, _) => reported = dir;
        var log = Create(d1, 0, options);
        using var sibling = Create(d1, 1, options);
        using var elsewhere = Create(d2, 2, options);

        var kept = log.AppendAsLeader(Batches.Make(2, Now, tag: "kept"), 0, deferSync: true);
        Assert.Equal(ErrorCode.None, log.SyncNow(kept).Error);
        Assert.Equal(2, log.DurableEndOffset);
        Assert.True(log.UpdateHighWatermark(log.DurableEndOffset));

        // Two appends written, their fsyncs pending (group commit); the first fsync fails, the disk works again after.
        _io.FailFsync(p => SegmentOf(p, d1));
        var lost = log.AppendAsLeader(Batches.Make(2, Now, tag: "lost"), 0, deferSync: true);
        var behind = log.AppendAsLeader(Batches.Make(2, Now, tag: "behind"), 0, deferSync: true);
        Assert.Equal((ErrorCode.None, ErrorCode.None), (lost.Error, behind.Error));
        Assert.Equal(ErrorCode.KafkaStorageError, log.SyncNow(lost).Error);
        Assert.Equal(1, _io.Fired);
        // The next fsync would succeed; it must not cover what the failed one did not.
        Assert.Equal(ErrorCode.KafkaStorageError, log.SyncNow(behind).Error);
        Assert.Equal(2, log.DurableEndOffset);

        // The whole directory is offline and reported; the other directory is not.
        Assert.True(log.IsOffline);
        Assert.True(sibling.IsOffline);
        Assert.False(elsewhere.IsOffline);
        Assert.Equal(LogDirFailureChannel.Normalize(d1), reported);
        Assert.Equal([LogDirFailureChannel.Normalize(d1)], options.Failures.Offline);

        // Nothing more is taken, served or committed there.
        Assert.Equal(ErrorCode.KafkaStorageError, log.TryAppend(Batches.Make(1, Now, tag: "after")).Error);
        Assert.Equal(ErrorCode.KafkaStorageError, sibling.TryAppend(Batches.Make(1, Now)).Error);
        Assert.Equal(ErrorCode.KafkaStorageError, log.Read(0, 1 << 20, long.MaxValue, minOneBatch: true).Error);
        Assert.False(log.UpdateHighWatermark(6));
        Assert.Equal(2, log.HighWatermark);
        Assert.Throws<IOException>(() => log.Flush(6));

        // A log in another directory goes on.
        var other = elsewhere.AppendAsLeader(Batches.Make(1, Now, tag: "other"), 0, deferSync: true);
        Assert.Equal(ErrorCode.None, elsewhere.SyncNow(other).Error);
        Assert.Equal(1, elsewhere.DurableEndOffset);

        // After a restart the records answered with an error are gone (cut from the file), not recovered as valid batches.
        log.Dispose();
        using var reopened = TestLogs.Open(Path.Combine(d1, "orders-0"), _time);
        Assert.False(reopened.IsOffline);
        Assert.Equal(2, reopened.LogEndOffset);
        reopened.CommitAll();
        Assert.Equal(["kept-0", "kept-1"], reopened.RecordsFrom(0).Select(r => r.Value));
        Assert.Equal(2, reopened.Append(Batches.Make(1, Now, tag: "again")).FirstOffset);
    }

    /// <summary>
    /// A roll leaves the old segment's tail to a background flush; a sync of an append in the new segment
    /// used to cover that segment alone, so the durable end passed records of the old one not yet on disk.
    /// </summary>
    [Fact]
    public void A_sync_in_a_new_segment_does_not_count_an_unsynced_tail_of_the_segment_before()
    {
        var options = new LogOptions { FsyncOnAppend = true, Io = _io };
        string d1 = LogDir();
        var config = TestLogs.Config((LogConfig.SegmentBytesConfig, "2048"));
        var log = Create(d1, 0, options, config);
        var first = log.AppendAsLeader(Batches.Make(4, Now, tag: "first", valueSize: 200), 0, deferSync: true);
        Assert.Equal(ErrorCode.None, log.SyncNow(first).Error);
        string firstSegment = log.ActiveSegment.LogPath;

        // Every later fsync of the first segment fails: its tail written below never reaches the disk.
        _io.FailFsync(p => p == firstSegment);
        var tail = log.AppendAsLeader(Batches.Make(4, Now, tag: "tail", valueSize: 200), 0, deferSync: true);
        var rolled = log.AppendAsLeader(Batches.Make(4, Now, tag: "rolled", valueSize: 200), 0, deferSync: true);
        Assert.Equal(2, log.Segments.Count);
        Assert.Equal(rolled.FirstOffset, log.ActiveSegment.BaseOffset);

        // The new segment's own fsync would succeed; its append must not be acknowledged over the tail's.
        Assert.Equal(ErrorCode.KafkaStorageError, log.SyncNow(rolled).Error);
        Assert.Equal(ErrorCode.KafkaStorageError, log.SyncNow(tail).Error);
        Assert.True(log.IsOffline);
        Assert.Equal(4, log.DurableEndOffset);

        // Both unsynced batches are cut, the emptied segment removed: a restart ends the log at 4, with no gap.
        log.Dispose();
        using var reopened = TestLogs.Open(Path.Combine(d1, "orders-0"), _time, config);
        Assert.Equal((4L, 1), (reopened.LogEndOffset, reopened.Segments.Count));
        Assert.Equal(4, reopened.Append(Batches.Make(1, Now, tag: "next")).FirstOffset);
    }

    /// <summary>A write that fails halfway (EIO): the partial bytes are cut, never read, and the directory goes offline.</summary>
    [Fact]
    public void A_write_that_fails_halfway_leaves_no_partial_bytes_and_takes_the_directory_offline()
    {
        var options = new LogOptions { Io = _io };
        string d1 = LogDir();
        var log = Create(d1, 0, options);
        log.Append(Batches.Make(3, Now, tag: "kept"));
        long size = log.ActiveSegment.Size;

        var batch = Batches.Make(3, Now, tag: "torn");
        _io.FailWrite(p => SegmentOf(p, d1), writeBytes: batch.Length / 2);
        var r = log.TryAppend(batch);
        Assert.Equal(ErrorCode.KafkaStorageError, r.Error);
        Assert.Equal(1, _io.Fired);
        Assert.Equal((3L, size), (log.LogEndOffset, (long)log.ActiveSegment.Size));
        Assert.Equal(size, new FileInfo(log.ActiveSegment.LogPath).Length);
        Assert.True(log.IsOffline);
        Assert.Equal(ErrorCode.KafkaStorageError, log.TryAppend(Batches.Make(1, Now)).Error);

        log.Dispose();
        using var reopened = TestLogs.Open(Path.Combine(d1, "orders-0"), _time);
        Assert.Equal(3, reopened.LogEndOffset);
        reopened.CommitAll();
        Assert.Equal(["kept-0", "kept-1", "kept-2"], reopened.RecordsFrom(0).Select(r => r.Value));
    }

    /// <summary>
    /// A full disk halfway through a write: the partial bytes are cut and only that append fails; the log
    /// stays writable (the full-disk behaviour the replica tests rely on: the replica rejoins once appends succeed).
    /// </summary>
    [Fact]
    public void A_full_disk_halfway_through_a_write_fails_only_that_append()
    {
        var options = new LogOptions { Io = _io };
        string d1 = LogDir();
        using var log = Create(d1, 0, options);
        log.Append(Batches.Make(3, Now, tag: "kept"));
        long size = log.ActiveSegment.Size;

        var batch = Batches.Make(3, Now, tag: "full");
        _io.FailWrite(p => SegmentOf(p, d1), writeBytes: batch.Length / 2, errno: StorageIo.Enospc);
        Assert.Equal(ErrorCode.KafkaStorageError, log.TryAppend(batch).Error);
        Assert.Equal((3L, size, size), (log.LogEndOffset, (long)log.ActiveSegment.Size, new FileInfo(log.ActiveSegment.LogPath).Length));
        Assert.False(log.IsOffline);

        Assert.Equal(3, log.Append(Batches.Make(2, Now, tag: "later")).FirstOffset);
        log.CommitAll();
        Assert.Equal(["kept-0", "kept-1", "kept-2", "later-0", "later-1"], log.RecordsFrom(0).Select(r => r.Value));
    }

    /// <summary>A full disk whose partial tail cannot be cut off either: the file holds bytes no one may trust, so the directory goes offline.</summary>
    [Fact]
    public void A_failed_write_whose_tail_cannot_be_cut_takes_the_directory_offline_and_recovery_removes_it()
    {
        var options = new LogOptions { Io = _io };
        string d1 = LogDir();
        var log = Create(d1, 0, options);
        log.Append(Batches.Make(3, Now, tag: "kept"));
        long size = log.ActiveSegment.Size;

        var batch = Batches.Make(3, Now, tag: "torn");
        _io.FailWrite(p => SegmentOf(p, d1), writeBytes: batch.Length / 2, errno: StorageIo.Enospc);
        _io.FailSetLength(p => SegmentOf(p, d1));
        Assert.Equal(ErrorCode.KafkaStorageError, log.TryAppend(batch).Error);
        Assert.Equal(2, _io.Fired);
        Assert.True(log.IsOffline);
        Assert.Equal(size + batch.Length / 2, new FileInfo(log.ActiveSegment.LogPath).Length);
        Assert.Equal(ErrorCode.KafkaStorageError, log.TryAppend(Batches.Make(1, Now)).Error);

        log.Dispose();
        using var reopened = TestLogs.Open(Path.Combine(d1, "orders-0"), _time);
        Assert.Equal(3, reopened.LogEndOffset);
        Assert.Equal(size, new FileInfo(reopened.ActiveSegment.LogPath).Length);
    }

    /// <summary>A follower's append whose fsync fails is refused, and its log end goes back to what is on disk (the next fetch must not report it).</summary>
    [Fact]
    public void A_follower_append_whose_fsync_fails_is_cut_and_refused()
    {
        string leaderDir = LogDir("leader"), d1 = LogDir("follower");
        using var leader = Create(leaderDir, 0, new LogOptions());
        leader.Append(Batches.Make(2, Now, tag: "a"));
        leader.Append(Batches.Make(2, Now, tag: "b"));
        var batches = leader.ReadBatches(0).ToList();

        var options = new LogOptions { FsyncOnAppend = true, Io = _io };
        var follower = Create(d1, 0, options);
        Assert.Equal(ErrorCode.None, follower.AppendAsFollower(batches[0]).Error);
        _io.FailFsync(p => SegmentOf(p, d1));
        Assert.Equal(ErrorCode.KafkaStorageError, follower.AppendAsFollower(batches[1]).Error);
        Assert.True(follower.IsOffline);
        Assert.Equal(2, follower.LogEndOffset);
        Assert.Equal(2, follower.DurableEndOffset);

        follower.Dispose();
        using var reopened = TestLogs.Open(Path.Combine(d1, "orders-0"), _time);
        Assert.Equal(2, reopened.LogEndOffset);
    }

    /// <summary>A follower's truncation that fails halfway leaves files that no longer match the log: the directory goes offline.</summary>
    [Fact]
    public void A_truncation_that_fails_takes_the_directory_offline()
    {
        string d1 = LogDir();
        using var log = Create(d1, 0, new LogOptions { Io = _io });
        for (int i = 0; i < 3; i++) log.Append(Batches.Make(2, Now, tag: $"b{i}"));
        _io.FailSetLength(p => SegmentOf(p, d1));
        Assert.Throws<IOException>(() => log.TruncateTo(2));
        Assert.True(log.IsOffline);
        Assert.Equal(ErrorCode.KafkaStorageError, log.TryAppend(Batches.Make(1, Now)).Error);
    }

    // ================================================================ directory fsyncs and durable files

    /// <summary>The name of a freshly rolled segment is durable before an append in it is acknowledged (fsync per append).</summary>
    [Fact]
    public void A_roll_fsyncs_the_directory_before_an_append_in_the_new_segment_is_acknowledged()
    {
        var options = new LogOptions { FsyncOnAppend = true, Io = _io };
        string dir = Path.Combine(LogDir(), "orders-0");
        var config = TestLogs.Config((LogConfig.SegmentBytesConfig, "2048"));
        using var log = Create(LogDir(), 0, options, config);
        Assert.Equal(ErrorCode.None, log.SyncNow(log.AppendAsLeader(Batches.Make(4, Now, valueSize: 200), 0, deferSync: true)).Error);
        Assert.Equal(ErrorCode.None, log.SyncNow(log.AppendAsLeader(Batches.Make(4, Now, valueSize: 200), 0, deferSync: true)).Error);

        _io.StartRecording();
        var rolled = log.AppendAsLeader(Batches.Make(4, Now, tag: "rolled", valueSize: 200), 0, deferSync: true);
        Assert.Equal(2, log.Segments.Count);
        string segment = log.ActiveSegment.LogPath;
        Assert.Equal(ErrorCode.None, log.SyncNow(rolled).Error);
        var calls = _io.Calls;
        int created = calls.IndexOf($"create {segment}");
        int dirSynced = calls.IndexOf($"fsyncdir {dir}", Math.Max(0, created));
        int dataSynced = calls.LastIndexOf($"fsync {segment}");
        Assert.True(created >= 0 && dirSynced > created && dataSynced > dirSynced,
            $"expected create, directory fsync, data fsync in that order:\n{string.Join('\n', calls)}");
    }

    /// <summary>Without fsync per append the rolled segment's background flush syncs the directory with the old segment.</summary>
    [Fact]
    public void The_flush_after_a_roll_fsyncs_the_directory()
    {
        var options = new LogOptions { Io = _io };
        string dir = Path.Combine(LogDir(), "orders-0");
        var config = TestLogs.Config((LogConfig.SegmentBytesConfig, "2048"));
        using var log = Create(LogDir(), 0, options, config);
        log.Append(Batches.Make(4, Now, valueSize: 200));
        log.Append(Batches.Make(4, Now, valueSize: 200));
        _io.StartRecording();
        log.Append(Batches.Make(4, Now, valueSize: 200));
        log.WaitForRecoveryPoint(8);
        Assert.Contains($"fsyncdir {dir}", _io.Calls);
    }

    /// <summary>
    /// A new partition's files' names and its directory's own name in the log directory are durable before
    /// its first append is acknowledged (fsync per append).
    /// </summary>
    [Fact]
    public void A_new_log_fsyncs_its_directory_and_the_log_directory_before_its_first_acknowledgement()
    {
        string logDir = LogDirFailureChannel.Normalize(LogDir());
        string dir = Path.Combine(logDir, "orders-0");
        _io.StartRecording();
        using var log = Create(logDir, 0, new LogOptions { FsyncOnAppend = true, Io = _io });
        Assert.Equal(ErrorCode.None, log.SyncNow(log.AppendAsLeader(Batches.Make(1, Now), 0, deferSync: true)).Error);
        var calls = _io.Calls;
        string segmentPath = TestLogs.SegmentPath(dir, 0);
        int segment = calls.IndexOf($"create {segmentPath}");
        int dirSynced = calls.IndexOf($"fsyncdir {dir}");
        int parentSynced = calls.IndexOf($"fsyncdir {logDir}");
        int acknowledged = calls.LastIndexOf($"fsync {segmentPath}");
        Assert.True(segment >= 0 && dirSynced > segment && parentSynced > dirSynced && acknowledged > parentSynced, string.Join('\n', calls));
        // partition.metadata and leader-epoch-checkpoint, each by temporary file, fsync, rename, directory fsync.
        AssertDurableWrite(calls, Path.Combine(dir, PartitionMetadataFile.FileName));
        AssertDurableWrite(calls, Path.Combine(dir, Epochs.LeaderEpochFileCache.FileName));
    }

    /// <summary>Checkpoints, the producer snapshot and the clean-shutdown marker: the temporary file is fsynced before the rename, the directory after.</summary>
    [Fact]
    public async Task Checkpoints_snapshots_and_the_shutdown_marker_are_written_durably()
    {
        string root = LogDirFailureChannel.Normalize(LogDir());
        var options = TestManagers.Options([root]) with { Log = new LogOptions { Io = _io } };
        var m = TestManagers.Start(_time, options);
        var log = m.GetOrCreateLog(TestLogs.Tp, TestLogs.TopicId, LogConfig.Default);
        log.Append(Batches.Idempotent(7, 0, 0, 2, Now));
        log.CommitAll();
        _io.StartRecording();
        await m.DisposeAsync();
        var calls = _io.Calls;
        foreach (var name in new[] { "recovery-point-offset-checkpoint", "log-start-offset-checkpoint", "replication-offset-checkpoint", LogManager.CleanShutdownFile })
            AssertDurableWrite(calls, Path.Combine(root, name));
        AssertDurableWrite(calls, Producers.ProducerStateManager.SnapshotPath(log.Dir, 2));
    }

    /// <summary>
    /// The real directory fsync (libc open + fsync; .NET's File.OpenHandle refuses a directory, which made the
    /// metadata quorum's former helper a silent no-op) reaches the system and reports its failures; a
    /// directory gone meanwhile is nothing to sync.
    /// </summary>
    [LinuxFact]
    public void The_real_directory_fsync_reaches_the_system_and_reports_failures()
    {
        DurableFile.SyncDirectory(_tmp.Path);
        DurableFile.SyncDirectory(_tmp.Sub("gone"));
        string file = _tmp.Sub("f");
        DurableFile.Write(file, "one"u8);
        DurableFile.Write(file, "two"u8);
        Assert.Equal("two", File.ReadAllText(file));
        Assert.False(File.Exists(file + ".tmp"));
        // open(2) of "file/sub" fails with ENOTDIR: an error from the system, not swallowed.
        var e = Assert.Throws<IOException>(() => DurableFile.SyncDirectory(Path.Combine(file, "sub")));
        Assert.Equal(20, e.HResult);
    }

    /// <summary>A failed checkpoint write (other than a full disk) takes the directory offline: no new logs, no checkpoints, no clean-shutdown marker there.</summary>
    [Fact]
    public async Task A_failed_checkpoint_takes_its_directory_offline_and_the_next_start_recovers_it()
    {
        string d1 = LogDirFailureChannel.Normalize(LogDir("d1")), d2 = LogDirFailureChannel.Normalize(LogDir("d2"));
        var options = TestManagers.Options([d1, d2]) with { Log = new LogOptions { Io = _io } };
        var m = TestManagers.Start(_time, options);
        var a = m.GetOrCreateLog(new TopicPartition("t", 0), TestLogs.TopicId, LogConfig.Default);
        var b = m.GetOrCreateLog(new TopicPartition("t", 1), TestLogs.TopicId, LogConfig.Default);
        Assert.NotEqual(Path.GetDirectoryName(a.Dir), Path.GetDirectoryName(b.Dir));
        var (failedLog, healthy) = Path.GetDirectoryName(a.Dir) == d1 ? (a, b) : (b, a);

        _io.FailFsync(p => p.StartsWith(Path.Combine(d1, OffsetCheckpointFile.RecoveryPoint), StringComparison.Ordinal));
        Assert.False(m.WriteCheckpoints());
        Assert.Equal([d1], m.Failures.Offline);
        Assert.True(failedLog.IsOffline);
        Assert.False(healthy.IsOffline);
        // New logs go to the online directory.
        var c = m.GetOrCreateLog(new TopicPartition("t", 2), TestLogs.TopicId, LogConfig.Default);
        Assert.Equal(d2, Path.GetDirectoryName(c.Dir));

        await m.DisposeAsync();
        Assert.False(File.Exists(Path.Combine(d1, LogManager.CleanShutdownFile)));
        Assert.True(File.Exists(Path.Combine(d2, LogManager.CleanShutdownFile)));
    }

    /// <summary>The calls of one <see cref="DurableFile"/> write: temporary file written and fsynced, renamed over the file, directory fsynced.</summary>
    private static void AssertDurableWrite(List<string> calls, string path)
    {
        string tmp = path + ".tmp", dir = Path.GetDirectoryName(path)!;
        int write = calls.IndexOf($"write {tmp}");
        int fsync = calls.IndexOf($"fsync {tmp}", Math.Max(0, write));
        int move = calls.IndexOf($"move {tmp} {path}", Math.Max(0, fsync));
        int dirSync = calls.IndexOf($"fsyncdir {dir}", Math.Max(0, move));
        Assert.True(write >= 0 && fsync > write && move > fsync && dirSync > move,
            $"{path}: expected write, fsync, rename of {tmp}, then fsync of {dir}:\n{string.Join('\n', calls)}");
    }
}
