using System.Diagnostics;
using Freshet.Protocol;
using Freshet.Protocol.Wire;
using Freshet.Storage.Segments;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Storage.Tests.Support;

/// <summary>Opening, appending to, reading and inspecting partition logs on disk.</summary>
public static class TestLogs
{
    public static readonly TopicPartition Tp = new("orders", 0);
    public static readonly Uuid TopicId = new(0x1234, 0x5678);

    public static LogConfig Config(params (string Key, string Value)[] overrides)
    {
        var o = overrides.ToDictionary(x => x.Key, x => x.Value);
        Assert.Null(LogConfig.Validate(o));
        return LogConfig.Create(new Dictionary<string, string>(), o);
    }

    public static PartitionLog Create(string dir, TimeProvider time, LogConfig? config = null, LogOptions? options = null,
        Action<LogSegment, long>? scheduleDelete = null) =>
        PartitionLog.Create(dir, Tp, TopicId, config ?? LogConfig.Default, options ?? new LogOptions(), time, NullLogger.Instance, scheduleDelete);

    public static PartitionLog Open(string dir, TimeProvider time, LogConfig? config = null, long recoveryPoint = 0, long logStartOffset = 0,
        bool clean = false, LogOptions? options = null, Action<LogSegment, long>? scheduleDelete = null) =>
        PartitionLog.Open(dir, Tp, config ?? LogConfig.Default, options ?? new LogOptions(), recoveryPoint, logStartOffset, clean, time,
            NullLogger.Instance, scheduleDelete);

    /// <summary>Appends as a client and asserts success; returns the result.</summary>
    public static LogAppendResult Append(this PartitionLog log, byte[] batch)
    {
        var r = log.AppendAsLeader(batch.ToArray(), leaderEpoch: 0);
        Assert.True(r.Error == ErrorCode.None, $"append failed: {r.Error} {r.ErrorMessage}");
        return r;
    }

    /// <summary>Appends as a client and returns the result, success or not.</summary>
    public static LogAppendResult TryAppend(this PartitionLog log, byte[] batch) => log.AppendAsLeader(batch.ToArray(), leaderEpoch: 0);

    /// <summary>Moves the high watermark to the end of the log (what the replica manager does on a one-node cluster).</summary>
    public static void CommitAll(this PartitionLog log) => log.UpdateHighWatermark(log.LogEndOffset);

    /// <summary>Every batch from <paramref name="offset"/> to the end of the log, as headers.</summary>
    public static List<StoredBatch> BatchesFrom(this PartitionLog log, long offset = 0) =>
        log.ReadBatches(offset).SelectMany(Batches.Headers).ToList();

    /// <summary>Every record from <paramref name="offset"/> to the end of the log.</summary>
    public static List<StoredRecord> RecordsFrom(this PartitionLog log, long offset = 0) =>
        log.ReadBatches(offset).SelectMany(Batches.Records).ToList();

    /// <summary>The bytes of a successful read.</summary>
    public static byte[] Bytes(this LogReadResult r)
    {
        Assert.Equal(ErrorCode.None, r.Error);
        Assert.NotNull(r.Records);
        return r.Records.ReadAll();
    }

    public static List<long> SegmentBases(this PartitionLog log) => log.Segments.Select(s => s.BaseOffset).ToList();

    /// <summary>File names in a directory, sorted (ordinal).</summary>
    public static List<string> Files(string dir, string? suffix = null) =>
        Directory.EnumerateFiles(dir).Select(f => Path.GetFileName(f)!)
            .Where(f => suffix is null || f.EndsWith(suffix, StringComparison.Ordinal))
            .Order(StringComparer.Ordinal).ToList();

    public static string Name(long offset, string suffix) => offset.ToString("D20", System.Globalization.CultureInfo.InvariantCulture) + suffix;

    public static string SegmentPath(string dir, long baseOffset, string suffix = LogSegment.LogSuffix) => Path.Combine(dir, Name(baseOffset, suffix));

    /// <summary>
    /// Waits until the background flush started by a roll has moved the recovery point to
    /// <paramref name="offset"/>, so a simulated crash afterwards is deterministic.
    /// </summary>
    public static void WaitForRecoveryPoint(this PartitionLog log, long offset)
    {
        var sw = Stopwatch.StartNew();
        while (log.RecoveryPoint < offset)
        {
            Assert.True(sw.ElapsedMilliseconds < 30_000, $"recovery point stuck at {log.RecoveryPoint}, expected {offset}");
            Thread.Sleep(5);
        }
    }

    /// <summary>
    /// A process crash as far as the files go: the handles are closed with no flush of the indexes,
    /// no producer snapshot and no recovery point update (the data written is in the page cache).
    /// </summary>
    public static void Crash(this PartitionLog log)
    {
        // Let the asynchronous flush of rolled segments finish first so it cannot touch files afterwards.
        var segs = log.Segments;
        if (segs.Count > 1) log.WaitForRecoveryPoint(segs[^1].BaseOffset);
        log.Dispose();
    }

    /// <summary>Flips every bit of the byte at <paramref name="position"/>.</summary>
    public static void CorruptByte(string path, long position)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        fs.Position = position;
        int b = fs.ReadByte();
        fs.Position = position;
        fs.WriteByte((byte)~b);
    }

    public static void Until(Func<bool> condition, string what, int timeoutMs = 30_000)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(sw.ElapsedMilliseconds < timeoutMs, $"timed out waiting for {what}");
            Thread.Sleep(10);
        }
    }
}
