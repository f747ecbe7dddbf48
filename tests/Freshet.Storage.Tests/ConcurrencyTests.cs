using Freshet.Protocol;
using Freshet.Protocol.Records;
using Freshet.Storage.Tests.Support;

namespace Freshet.Storage.Tests;

public sealed class ConcurrencyTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly ManualTimeProvider _time = new();

    public void Dispose() => _tmp.Dispose();

    /// <summary>
    /// One writer appends (rolling often, indexing every batch) and moves the high watermark, as the
    /// replica manager does, while readers fetch from random offsets and look up timestamps without
    /// taking the log's lock. Every read must return whole, valid batches starting with the one
    /// holding the offset asked for, and nothing past the high watermark seen.
    /// </summary>
    [Fact]
    public async Task Readers_see_whole_batches_below_the_high_watermark_while_a_writer_appends_and_rolls()
    {
        long t0 = _time.NowMs;
        using var log = TestLogs.Create(_tmp.Sub("orders-0"), _time, TestLogs.Config(
            (LogConfig.SegmentBytesConfig, "6000"), (LogConfig.IndexIntervalBytesConfig, "0")));
        const int batches = 2000;
        using var done = new CancellationTokenSource();
        var errors = new List<string>();
        int reads = 0;

        void Reader(int seed)
        {
            var rnd = new Random(seed);
            while (!done.IsCancellationRequested && errors.Count == 0)
            {
                long hw = log.HighWatermark;
                long offset = rnd.NextInt64(0, hw + 1);
                var r = log.Read(offset, rnd.Next(1, 3000), hw, minOneBatch: true);
                string? error = Check(r, offset, hw);
                // Record j (offset j) is stamped t0 + j.
                if (error is null && offset < hw && log.FindOffsetByTimestamp(t0 + offset) is var (o, ts) && (o != offset || ts != t0 + offset))
                    error = $"timestamp {t0 + offset} found ({o}, {ts})";
                if (error is not null) lock (errors) errors.Add(error);
                Interlocked.Increment(ref reads);
            }
        }

        var readers = Enumerable.Range(0, 2).Select(i => Task.Run(() => Reader(i))).ToArray();
        // On a busy machine the readers may start late: let them get going before the writer runs.
        SpinWait.SpinUntil(() => Volatile.Read(ref reads) > 0, TimeSpan.FromSeconds(10));
        long next = 0;
        for (int i = 0; i < batches && errors.Count == 0; i++)
        {
            int n = 1 + i % 3;
            var r = log.Append(Batches.Make(Enumerable.Range(0, n).Select(k => t0 + next + k).ToArray(), tag: $"b{i}"));
            Assert.Equal(next, r.FirstOffset);
            next += n;
            log.UpdateHighWatermark(log.LogEndOffset);
        }
        SpinWait.SpinUntil(() => Volatile.Read(ref reads) > 100, TimeSpan.FromSeconds(10));
        await Task.Delay(50);
        done.Cancel();
        await Task.WhenAll(readers);

        Assert.Empty(errors);
        Assert.True(log.Segments.Count > 20, $"{log.Segments.Count} segments");
        Assert.True(reads > 100, $"{reads} reads");
        Assert.Equal(Enumerable.Range(0, (int)next).Select(i => (long)i), log.RecordsFrom(0).Select(r => r.Offset));
    }

    private static string? Check(LogReadResult r, long offset, long hw)
    {
        if (r.Error != ErrorCode.None) return $"read {offset}: {r.Error}";
        if (offset == hw) return r.Records is null ? null : $"read {offset} at the high watermark returned data";
        if (r.Records is null || r.Records.Length == 0) return $"read {offset} below the high watermark {hw} returned nothing";
        var bytes = r.Records.ReadAll();
        int pos = 0;
        long expect = -1;
        while (pos < bytes.Length)
        {
            if (bytes.Length - pos < RecordBatch.HeaderSize) return $"read {offset}: {bytes.Length - pos} stray bytes";
            int size = RecordBatch.PeekSize(bytes.AsSpan(pos));
            if (size > bytes.Length - pos) return $"read {offset}: torn batch";
            var b = new RecordBatch(bytes.AsSpan(pos, size));
            if (!b.IsCrcValid) return $"read {offset}: bad CRC at {pos}";
            if (expect < 0 && (b.BaseOffset > offset || b.LastOffset < offset)) return $"read {offset}: first batch {b.BaseOffset}-{b.LastOffset}";
            if (expect >= 0 && b.BaseOffset != expect) return $"read {offset}: batch {b.BaseOffset} after {expect - 1}";
            if (b.LastOffset >= hw) return $"read {offset}: batch {b.BaseOffset}-{b.LastOffset} past the high watermark {hw}";
            expect = b.NextOffset;
            pos += size;
        }
        return null;
    }
}
