using Freshet.Storage.Cleaner;
using Freshet.Storage.Segments;
using Freshet.Storage.Tests.Support;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Storage.Tests;

/// <summary>
/// A crash in the middle of a cleaner swap. The same log is written to directories A and B; B is
/// cleaned for real, and its first cleaned segment is planted in A as the swap protocol would have
/// left it at each step (.cleaned before the commit, .swap after it, old segments partly renamed to
/// .deleted, new indexes already in place). Opening A must give a consistent log: before the commit,
/// the old log; after it, the cleaned segment in place of the segments it covers, the rest as it was.
/// </summary>
public sealed class CompactionRecoveryTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly ManualTimeProvider _time = new();
    private string A => _tmp.Sub("a/orders-0");
    private string B => _tmp.Sub("b/orders-0");

    public void Dispose() => _tmp.Dispose();

    private static readonly LogConfig Config = TestLogs.Config(
        (LogConfig.CleanupPolicyConfig, "compact"), (LogConfig.SegmentBytesConfig, "800"), (LogConfig.IndexIntervalBytesConfig, "100"));

    private static List<KeyedRecord> ReadAll(string dir, bool clean)
    {
        using var log = TestLogs.Open(dir, TimeProvider.System, Config, clean: clean);
        log.CommitAll();
        return log.KeyedRecords();
    }

    /// <summary>Fills A (300 records, keys reused), copies it to B, cleans B; returns B's first segment's next offset.</summary>
    private long Prepare()
    {
        long t0 = _time.NowMs;
        using (var log = TestLogs.Create(A, _time, Config))
        {
            for (int i = 0; i < 300; i++)
                log.Append(KeyedBatches.Make([new(i % 3 == 0 ? $"unique-{i}" : $"dup-{i % 2}", $"v{i}", t0 + 10L * i)]));
            log.Roll();
            log.CommitAll();
            log.Close();
        }
        Directory.CreateDirectory(B);
        foreach (var f in Directory.EnumerateFiles(A)) File.Copy(f, Path.Combine(B, Path.GetFileName(f)));
        using (var log = TestLogs.Open(B, _time, Config, clean: true))
        {
            log.CommitAll();
            var r = new LogCleaner(new LogCleanerOptions(), _time, NullLogger.Instance).Clean(log);
            Assert.True(r.Cleaned);
            Assert.True(log.Segments.Count > 3, "the cleaning should produce several segments");
            log.Close();
        }
        var first = Batches.Headers(File.ReadAllBytes(TestLogs.SegmentPath(B, 0)));
        return first[^1].LastOffset + 1;
    }

    private static List<long> Bases(string dir) =>
        TestLogs.Files(dir, LogSegment.LogSuffix).Select(f => long.Parse(f[..20], System.Globalization.CultureInfo.InvariantCulture)).ToList();

    private static void MarkDeleted(string dir, long baseOffset, bool indexesToo)
    {
        foreach (var suffix in indexesToo ? new[] { ".log", ".index", ".timeindex" } : [".log"])
        {
            string path = TestLogs.SegmentPath(dir, baseOffset, suffix);
            if (File.Exists(path)) File.Move(path, path + LogSegment.DeletedSuffix);
        }
    }

    [Theory]
    [InlineData("cleaned", false)]
    [InlineData("orphan-index-swap", false)]
    [InlineData("swap", false)]
    [InlineData("swap", true)]
    [InlineData("swap-old-partly-deleted", false)]
    [InlineData("swap-new-indexes-in-place", false)]
    [InlineData("swap-new-indexes-in-place", true)]
    public void An_interrupted_swap_recovers_to_the_old_or_the_new_segments(string step, bool hadCleanShutdown)
    {
        long next = Prepare();
        var original = ReadAll(A, clean: true);
        var cleaned = ReadAll(B, clean: true);
        var oldBases = Bases(A);
        string newLog = TestLogs.SegmentPath(B, 0), newIndex = TestLogs.SegmentPath(B, 0, ".index"), newTimeIndex = TestLogs.SegmentPath(B, 0, ".timeindex");
        bool committed = step.StartsWith("swap", StringComparison.Ordinal);
        switch (step)
        {
            case "cleaned":
                File.Copy(newLog, TestLogs.SegmentPath(A, 0, ".log.cleaned"));
                File.Copy(newIndex, TestLogs.SegmentPath(A, 0, ".index.cleaned"));
                break;
            case "orphan-index-swap":
                File.Copy(newIndex, TestLogs.SegmentPath(A, 0, ".index.swap"));
                File.Copy(newLog, TestLogs.SegmentPath(A, 0, ".log.cleaned"));
                break;
            case "swap":
                File.Copy(newLog, TestLogs.SegmentPath(A, 0, ".log.swap"));
                File.Copy(newIndex, TestLogs.SegmentPath(A, 0, ".index.cleaned"));
                break;
            case "swap-old-partly-deleted":
                File.Copy(newLog, TestLogs.SegmentPath(A, 0, ".log.swap"));
                MarkDeleted(A, oldBases[0], indexesToo: true);
                MarkDeleted(A, oldBases[1], indexesToo: false);
                break;
            case "swap-new-indexes-in-place":
                File.Copy(newLog, TestLogs.SegmentPath(A, 0, ".log.swap"));
                foreach (long b in oldBases.Where(b => b < next)) MarkDeleted(A, b, indexesToo: true);
                File.Copy(newIndex, TestLogs.SegmentPath(A, 0, ".index"));
                File.Copy(newTimeIndex, TestLogs.SegmentPath(A, 0, ".timeindex"));
                break;
        }

        List<KeyedRecord> recovered;
        using (var log = TestLogs.Open(A, _time, Config, recoveryPoint: hadCleanShutdown ? long.MaxValue : 0, clean: hadCleanShutdown))
        {
            log.CommitAll();
            recovered = log.KeyedRecords();
            // Every offset reads, through the rebuilt indexes.
            foreach (var r in recovered)
                Assert.Equal(r.Offset, KeyedBatches.Records(log.Read(r.Offset, 1, log.HighWatermark, true).Bytes())[0].Offset);
            Assert.Equal(original[^1].Offset + 1, log.LogEndOffset);
            log.Close();
        }
        Assert.DoesNotContain(TestLogs.Files(A), f => f.EndsWith(".swap", StringComparison.Ordinal) || f.EndsWith(".cleaned", StringComparison.Ordinal)
            || f.EndsWith(".deleted", StringComparison.Ordinal));

        if (!committed)
        {
            Assert.Equal(original, recovered);
            Assert.Equal(oldBases, Bases(A));
        }
        else
        {
            // The cleaned segment replaces the old ones whose base is in its range; the others stay whole.
            long rest = oldBases.First(b => b >= next);
            var expected = cleaned.Where(r => r.Offset < next).Concat(original.Where(r => r.Offset >= rest)).ToList();
            Assert.Equal(expected, recovered);
            Assert.Equal([0L, .. oldBases.Where(b => b >= next)], Bases(A));
            Assert.True(recovered.Count < original.Count);
        }
        Assert.Equal(KeyedBatches.Table(original), KeyedBatches.Table(recovered));
        // And a clean restart afterwards reads the same (the indexes written at close load).
        Assert.Equal(recovered, ReadAll(A, clean: true));
    }
}
