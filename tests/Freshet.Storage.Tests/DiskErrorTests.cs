using Freshet.Protocol;
using Freshet.Storage.Tests.Support;

namespace Freshet.Storage.Tests;

public sealed class DiskErrorTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly ManualTimeProvider _time = new();
    private string Dir => _tmp.Sub("orders-0");
    private long Now => _time.NowMs;

    public void Dispose() => _tmp.Dispose();

    /// <summary>
    /// A write that fails and whose tail cannot be cut off, without root: the next segment's .log is a
    /// symbolic link to /dev/full, where every write fails with ENOSPC and a truncation with EINVAL (a
    /// character device has no length). Nothing past the last good batch may be trusted, so the log's
    /// directory goes offline (a full disk whose partial tail is cut stays a passing error: see
    /// StorageFaultTests.A_full_disk_halfway_through_a_write_fails_only_that_append). (Linux only;
    /// elsewhere the test is reported as skipped.)
    /// </summary>
    [LinuxDevFullFact]
    public void A_write_that_fails_where_the_tail_cannot_be_cut_takes_the_directory_offline_until_restart()
    {
        using (var log = TestLogs.Create(Dir, _time))
        {
            for (int i = 0; i < 3; i++) log.Append(Batches.Make(2, Now, tag: $"b{i}"));
            log.CommitAll();
            File.CreateSymbolicLink(TestLogs.SegmentPath(Dir, 6), "/dev/full");
            log.Roll();
            Assert.Equal(6, log.ActiveSegment.BaseOffset);
            log.WaitForRecoveryPoint(6); // the rolled segment's background flush is done before the failure

            var failed = log.TryAppend(Batches.Make(2, Now, tag: "lost"));
            Assert.Equal(ErrorCode.KafkaStorageError, failed.Error);
            Assert.Contains("Disk error", failed.ErrorMessage, StringComparison.Ordinal);
            Assert.Equal((-1L, 6L, 0), (failed.FirstOffset, log.LogEndOffset, log.ActiveSegment.Size));
            Assert.True(log.IsOffline);
            // Offline: nothing more is taken or served, whatever the disk does next.
            var refused = log.TryAppend(Batches.Make(1, Now));
            Assert.Equal(ErrorCode.KafkaStorageError, refused.Error);
            Assert.Contains("offline", refused.ErrorMessage, StringComparison.Ordinal);
            Assert.Equal(ErrorCode.KafkaStorageError, log.Read(0, 1 << 20, long.MaxValue, minOneBatch: true).Error);
            Assert.Equal(6, log.LogEndOffset);
        }

        // A restart with the device gone: the log reopens at 6, whole, and takes writes again.
        File.Delete(TestLogs.SegmentPath(Dir, 6));
        using var reopened = TestLogs.Open(Dir, _time);
        Assert.Equal(6, reopened.LogEndOffset);
        Assert.Equal(6, reopened.Append(Batches.Make(1, Now, tag: "after")).FirstOffset);
        reopened.CommitAll();
        Assert.Equal(["b0-0", "b0-1", "b1-0", "b1-1", "b2-0", "b2-1", "after-0"], reopened.RecordsFrom(0).Select(r => r.Value));
    }
}
