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
    /// A full disk without root: the next segment's .log is a symbolic link to /dev/full, where every
    /// write fails with ENOSPC. (Linux only; elsewhere the test is reported as skipped.)
    /// </summary>
    [LinuxDevFullFact]
    public void A_write_that_fails_is_a_storage_error_and_the_log_stays_readable_and_consistent()
    {
        using (var log = TestLogs.Create(Dir, _time))
        {
            for (int i = 0; i < 3; i++) log.Append(Batches.Make(2, Now, tag: $"b{i}"));
            File.CreateSymbolicLink(TestLogs.SegmentPath(Dir, 6), "/dev/full");
            log.Roll();
            Assert.Equal(6, log.ActiveSegment.BaseOffset);

            var failed = log.TryAppend(Batches.Make(2, Now, tag: "lost"));
            Assert.Equal(ErrorCode.KafkaStorageError, failed.Error);
            Assert.Contains("Disk error", failed.ErrorMessage, StringComparison.Ordinal);
            Assert.Equal((-1L, 6L, 0), (failed.FirstOffset, log.LogEndOffset, log.ActiveSegment.Size));
            // Still full: the next try fails the same way and nothing moves.
            Assert.Equal(ErrorCode.KafkaStorageError, log.TryAppend(Batches.Make(1, Now)).Error);
            Assert.Equal(6, log.LogEndOffset);

            // Everything written before stays readable.
            log.CommitAll();
            Assert.Equal(6, log.HighWatermark);
            Assert.Equal(["b0-0", "b0-1", "b1-0", "b1-1", "b2-0", "b2-1"], log.RecordsFrom(0).Select(r => r.Value));
            log.Crash();
        }

        // Space is back (the link is gone): the log reopens at 6 and takes writes again.
        File.Delete(TestLogs.SegmentPath(Dir, 6));
        using var reopened = TestLogs.Open(Dir, _time);
        Assert.Equal(6, reopened.LogEndOffset);
        Assert.Equal(6, reopened.Append(Batches.Make(1, Now, tag: "after")).FirstOffset);
        reopened.CommitAll();
        Assert.Equal("after-0", reopened.RecordsFrom(6).Single().Value);
    }
}
