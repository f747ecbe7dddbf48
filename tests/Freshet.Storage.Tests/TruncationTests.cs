using Freshet.Storage.Tests.Support;

namespace Freshet.Storage.Tests;

/// <summary>Truncation (a follower cutting a divergent tail): whole batches only, and the log goes on from its new end.</summary>
public sealed class TruncationTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly ManualTimeProvider _time = new();
    private string Dir => _dir.Path;
    private long Now => _time.GetUtcNow().ToUnixTimeMilliseconds();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Truncating_inside_a_batch_removes_that_batch_and_the_next_append_continues_from_its_base()
    {
        using var log = TestLogs.Create(Dir, _time, TestLogs.Config());
        log.Append(Batches.Make(5, Now, tag: "a")); // 0-4
        log.Append(Batches.Make(5, Now, tag: "b")); // 5-9
        log.Append(Batches.Make(5, Now, tag: "c")); // 10-14
        log.TruncateTo(7);
        Assert.Equal(5, log.LogEndOffset);
        Assert.Equal(5, log.Append(Batches.Make(2, Now, tag: "d")).FirstOffset);
        log.CommitAll();
        Assert.Equal(["a-0", "a-1", "a-2", "a-3", "a-4", "d-0", "d-1"], log.RecordsFrom(0).Select(r => r.Value));
    }

    [Fact]
    public void Truncating_across_segments_drops_the_later_segments()
    {
        using var log = TestLogs.Create(Dir, _time, TestLogs.Config((LogConfig.SegmentBytesConfig, "200")));
        for (int i = 0; i < 10; i++) log.Append(Batches.Make(1, Now, tag: $"r{i}"));
        Assert.True(log.Segments.Count > 3);
        log.TruncateTo(3);
        Assert.Equal(3, log.LogEndOffset);
        Assert.True(log.Segments[^1].BaseOffset <= 3);
        log.CommitAll();
        Assert.Equal(["r0-0", "r1-0", "r2-0"], log.RecordsFrom(0).Select(r => r.Value));
        Assert.Equal(3, log.Append(Batches.Make(1, Now, tag: "after")).FirstOffset);
    }
}
