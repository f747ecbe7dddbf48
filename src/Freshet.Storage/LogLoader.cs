using Freshet.Protocol;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using Freshet.Storage.Epochs;
using Freshet.Storage.Producers;
using Freshet.Storage.Segments;
using Microsoft.Extensions.Logging;

namespace Freshet.Storage;

/// <summary>
/// A partition directory made ready to serve, as <see cref="LogLoader"/> leaves it: the open segments (the
/// last one active), the log start and end offsets, the recovery point, and the state rebuilt from the
/// log (producers, leader epochs), all consistent with one another. What a <see cref="PartitionLog"/>
/// starts from (Kafka's LoadedLogOffsets, with the segments and the state beside them).
/// </summary>
internal sealed record LoadedLog(
    Uuid TopicId,
    LogSegment[] Segments,
    long LogStartOffset,
    long LogEndOffset,
    long RecoveryPoint,
    ProducerStateManager Producers,
    LeaderEpochFileCache Epochs);

/// <summary>
/// Turns a partition directory into a <see cref="LoadedLog"/> (Kafka's LogLoader): a new, empty one
/// (<see cref="CreateEmpty"/>), or an existing one after a clean shutdown or a crash (<see cref="Load"/>).
/// Everything here runs before the log serves anything, on the thread that opens it, so none of it takes
/// a lock; its I/O errors propagate to the caller, which cannot open the log (as Kafka's start-up does).
///
/// <para>
/// The steps of <see cref="Load"/>, in order, each relying on the ones before:
/// <list type="number">
/// <item>the leftovers of interrupted operations go (*.deleted, *.cleaned, *.tmp), and cleaner swaps a crash
/// interrupted are completed (*.log.swap, see <see cref="CompleteInterruptedSwaps"/>);</item>
/// <item>the segments are opened; every one from the recovery point on (or from the first whose indexes are
/// unusable) is recovered: its batches checked, a torn or corrupt tail cut, its indexes rebuilt, and the
/// segments after a corrupt one deleted;</item>
/// <item>the log start and end offsets and the recovery point follow from what was kept;</item>
/// <item>the state derived from the batches is brought in line with them: producer snapshots past the end
/// go, the producer state is rebuilt from the newest snapshot and the batches after it
/// (<see cref="RebuildProducerState"/>), and the leader epoch cache is truncated to the log, or rebuilt
/// from the batch headers when it lacks the last batch's epoch.</item>
/// </list>
/// State that a later append or truncation must find again (the producers now; a transaction index and
/// the ongoing transactions with it) is rebuilt in the last step, from the same replay of batch headers,
/// which <see cref="PartitionLog.TruncateTo"/> repeats after cutting a follower's divergent tail.
/// </para>
/// </summary>
internal sealed partial class LogLoader
{
    private readonly string _dir;
    private readonly TopicPartition _tp;
    private readonly LogConfig _config;
    private readonly LogOptions _options;
    private readonly long _recoveryPointCheckpoint;
    private readonly long _logStartOffsetCheckpoint;
    private readonly bool _hadCleanShutdown;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;

    /// <param name="recoveryPointCheckpoint">Segments ending past this are recovered after a crash (the log directory's recovery-point-offset-checkpoint entry).</param>
    /// <param name="logStartOffsetCheckpoint">The log start offset saved in log-start-offset-checkpoint (DeleteRecords, retention), kept within the recovered log.</param>
    /// <param name="hadCleanShutdown">The directory holds the clean-shutdown marker: nothing past the recovery point needs checking, and a snapshot at the log end is the whole producer state.</param>
    public LogLoader(string dir, TopicPartition tp, LogConfig config, LogOptions options, long recoveryPointCheckpoint, long logStartOffsetCheckpoint,
        bool hadCleanShutdown, TimeProvider time, ILogger logger)
    {
        _dir = dir;
        _tp = tp;
        _config = config;
        _options = options;
        _recoveryPointCheckpoint = recoveryPointCheckpoint;
        _logStartOffsetCheckpoint = logStartOffsetCheckpoint;
        _hadCleanShutdown = hadCleanShutdown;
        _time = time;
        _logger = logger;
    }

    /// <summary>
    /// Makes <paramref name="dir"/> a new empty log: its partition.metadata, a first segment at offset 0, no
    /// producer state, an empty leader epoch checkpoint. Nothing is fsynced here (the log's first sync or
    /// flush fsyncs the directory, see <see cref="PartitionLog.Create"/>).
    /// </summary>
    public static LoadedLog CreateEmpty(string dir, Uuid topicId, LogConfig config, LogOptions options, TimeProvider time)
    {
        var io = options.Io;
        Directory.CreateDirectory(dir);
        PartitionMetadataFile.Write(io, dir, topicId, syncDirectory: false);
        var seg = LogSegment.Create(io, dir, 0, config.IndexIntervalBytes, config.SegmentIndexBytes, time.GetUtcNow().ToUnixTimeMilliseconds());
        var producers = new ProducerStateManager(dir, options.ProducerIdExpirationMs, io);
        var epochs = LeaderEpochFileCache.Create(dir, io);
        return new LoadedLog(topicId, [seg], LogStartOffset: 0, LogEndOffset: 0, RecoveryPoint: 0, producers, epochs);
    }

    /// <summary>Loads and recovers the existing log in the directory (the steps in the class comment).</summary>
    public LoadedLog Load()
    {
        RemoveLeftovers();
        var swapped = CompleteInterruptedSwaps();
        var topicId = PartitionMetadataFile.Read(_dir) ?? Uuid.Zero;
        var segments = OpenSegments();
        var producers = new ProducerStateManager(_dir, _options.ProducerIdExpirationMs, _options.Io);
        long nextOffset = RecoverSegments(segments, swapped);
        if (segments.Count == 0)
        {
            long start = Math.Max(0, _logStartOffsetCheckpoint);
            segments.Add(LogSegment.Create(_options.Io, _dir, start, _config.IndexIntervalBytes, _config.SegmentIndexBytes, _time.GetUtcNow().ToUnixTimeMilliseconds()));
            nextOffset = start;
        }
        // An empty last segment keeps its base as the end offset.
        if (nextOffset < segments[^1].BaseOffset) nextOffset = segments[^1].BaseOffset;
        // Snapshots past the recovered end describe batches that were cut off (torn tail, corrupt
        // batch, dropped segments). Left in place, a later restart would load one of them once the
        // log grows past its offset again, and replace the real producer state with that of the
        // lost batches. Kafka deletes them on load too.
        foreach (var (offset, path) in producers.ListSnapshots().ToList())
            if (offset > nextOffset) File.Delete(path);

        var epochs = LeaderEpochFileCache.Load(_dir, out bool epochsFound, _options.Io);
        var segs = segments.ToArray();
        long logStart = Math.Max(segs[0].BaseOffset, Math.Min(_logStartOffsetCheckpoint, nextOffset));
        long recoveryPoint = _hadCleanShutdown ? nextOffset : Math.Min(_recoveryPointCheckpoint, nextOffset);
        RebuildProducerState(producers, segs, logStart, nextOffset, _hadCleanShutdown);
        ReconcileEpochCache(epochs, epochsFound, segs, logStart, nextOffset);
        return new LoadedLog(topicId, segs, logStart, nextOffset, recoveryPoint, producers, epochs);
    }

    /// <summary>Deletes what interrupted operations left: segments renamed for deletion, a cleaning's output not yet committed, files written aside.</summary>
    private void RemoveLeftovers()
    {
        foreach (var f in Directory.EnumerateFiles(_dir))
        {
            if (f.EndsWith(LogSegment.DeletedSuffix, StringComparison.Ordinal) || f.EndsWith(LogSegment.CleanedSuffix, StringComparison.Ordinal)
                || f.EndsWith(".tmp", StringComparison.Ordinal))
                File.Delete(f);
        }
    }

    /// <summary>
    /// Finishes the cleaner swaps a crash interrupted. A <c>{base}.log.swap</c> file is a cleaned
    /// segment the cleaner had committed to swapping in (it is written and synced as .cleaned and
    /// renamed to .swap only then): it replaces every segment whose base offset lies in its offset
    /// range [base, next offset after its last batch), which are deleted with their indexes, and
    /// takes its normal name. Its indexes are rebuilt by <see cref="RecoverSegments"/> (returned bases).
    /// Other *.swap files (index files of a swap whose .log never got to .swap) are discarded.
    /// </summary>
    private HashSet<long> CompleteInterruptedSwaps()
    {
        var done = new HashSet<long>();
        string logSwap = LogSegment.LogSuffix + LogSegment.SwapSuffix;
        var swaps = Directory.EnumerateFiles(_dir, "*" + logSwap)
            .Select(f => (Path: f, Base: ParseBaseOffset(Path.GetFileName(f))))
            .Where(x => x.Base >= 0).OrderBy(x => x.Base).ToList();
        foreach (var (swapPath, swapBase) in swaps)
        {
            long next = ScanNextOffset(swapPath, swapBase);
            long end = Math.Max(next, swapBase + 1); // the segment of the same name is replaced even by an empty swap
            int replaced = 0;
            foreach (var f in Directory.EnumerateFiles(_dir, "*" + LogSegment.LogSuffix).ToList())
            {
                long b = ParseBaseOffset(Path.GetFileName(f));
                if (b < swapBase || b >= end) continue;
                File.Delete(f);
                replaced++;
            }
            foreach (var f in Directory.EnumerateFiles(_dir).ToList())
            {
                string name = Path.GetFileName(f);
                if (!(name.EndsWith(LogSegment.IndexSuffix, StringComparison.Ordinal) || name.EndsWith(LogSegment.TimeIndexSuffix, StringComparison.Ordinal)
                    || name.EndsWith(LogSegment.IndexSuffix + LogSegment.SwapSuffix, StringComparison.Ordinal)
                    || name.EndsWith(LogSegment.TimeIndexSuffix + LogSegment.SwapSuffix, StringComparison.Ordinal)))
                    continue;
                long b = ParseBaseOffset(name);
                if (b >= swapBase && b < end) File.Delete(f);
            }
            File.Move(swapPath, LogSegment.FilePath(_dir, swapBase, LogSegment.LogSuffix), overwrite: true);
            done.Add(swapBase);
            LogSwapCompleted(_logger, _tp, swapBase, replaced);
        }
        foreach (var f in Directory.EnumerateFiles(_dir, "*" + LogSegment.SwapSuffix).ToList()) File.Delete(f);
        return done;
    }

    /// <summary>The base offset a segment file's name starts with (20 digits), or -1.</summary>
    private static long ParseBaseOffset(string fileName)
    {
        int dot = fileName.IndexOf('.', StringComparison.Ordinal);
        return dot > 0 && long.TryParse(fileName.AsSpan(0, dot), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long b)
            ? b : -1;
    }

    /// <summary>The offset after the last whole batch of a segment file, from the batch headers (base offset when empty).</summary>
    private static long ScanNextOffset(string path, long baseOffset)
    {
        using var h = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        long length = RandomAccess.GetLength(h);
        Span<byte> head = stackalloc byte[RecordBatch.BaseTimestampOffset];
        long pos = 0, next = baseOffset;
        while (pos + head.Length <= length)
        {
            if (RandomAccess.Read(h, head, pos) < head.Length) break;
            int size = RecordBatch.LogOverhead + System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(head[RecordBatch.LengthOffset..]);
            if (size < RecordBatch.HeaderSize || pos + size > length) break;
            next = Math.Max(next, new RecordBatch(head).NextOffset); // the header up to lastOffsetDelta is all it reads
            pos += size;
        }
        return next;
    }

    /// <summary>
    /// Opens the segments, in offset order, and deletes index files without a log file (leftovers of a crash
    /// during a roll or a deletion).
    /// </summary>
    private List<LogSegment> OpenSegments()
    {
        var bases = Directory.EnumerateFiles(_dir, "*" + LogSegment.LogSuffix)
            .Select(f => Path.GetFileNameWithoutExtension(f))
            .Select(n => long.TryParse(n, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long b) ? b : -1)
            .Where(b => b >= 0).Order().ToList();
        foreach (var f in Directory.EnumerateFiles(_dir).Where(f => f.EndsWith(LogSegment.IndexSuffix, StringComparison.Ordinal) || f.EndsWith(LogSegment.TimeIndexSuffix, StringComparison.Ordinal)))
        {
            var n = Path.GetFileNameWithoutExtension(f);
            if (long.TryParse(n, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long b) && !bases.Contains(b)) File.Delete(f);
        }

        var segments = new List<LogSegment>();
        foreach (long b in bases) segments.Add(LogSegment.Open(_options.Io, _dir, b, _config.IndexIntervalBytes, _config.SegmentIndexBytes));
        return segments;
    }

    /// <summary>
    /// Recovers every segment from the recovery point on (after a crash), from the first one whose indexes
    /// are unusable, and the last one after a crash; cuts a torn or corrupt tail and deletes the segments
    /// after it. Returns the offset after the last batch kept (0 when there is none; an empty last segment's
    /// base is applied by the caller).
    /// </summary>
    private long RecoverSegments(List<LogSegment> segments, HashSet<long> swapped)
    {
        long nextOffset = 0;
        bool recovering = false;
        for (int i = 0; i < segments.Count; i++)
        {
            var seg = segments[i];
            long nextBase = i + 1 < segments.Count ? segments[i + 1].BaseOffset : long.MaxValue;
            bool needsRecovery = recovering || !_hadCleanShutdown && nextBase > _recoveryPointCheckpoint || i == segments.Count - 1 && !_hadCleanShutdown;
            // A segment swapped in by CompleteInterruptedSwaps gets its indexes rebuilt (its index files
            // may be the old segment's); that alone does not make the segments after it suspect.
            bool swappedIn = swapped.Contains(seg.BaseOffset);
            if (!needsRecovery && !swappedIn && !seg.LoadIndexes(Math.Min(nextBase, long.MaxValue)))
            {
                LogIndexRebuild(_logger, _tp, seg.BaseOffset);
                needsRecovery = true;
            }
            if (needsRecovery || swappedIn)
            {
                var (cut, next) = seg.Recover();
                if (needsRecovery || cut > 0) recovering = true;
                if (cut > 0)
                {
                    LogTruncatedTail(_logger, _tp, seg.BaseOffset, cut, next);
                    // Everything after a corrupt batch is unreachable: drop the later segments.
                    for (int j = segments.Count - 1; j > i; j--)
                    {
                        LogDroppedSegment(_logger, _tp, segments[j].BaseOffset);
                        segments[j].DeleteFiles();
                        segments.RemoveAt(j);
                    }
                }
                nextOffset = next;
            }
            else
            {
                nextOffset = seg.ReadNextOffset();
            }
        }
        return nextOffset;
    }

    /// <summary>
    /// Rebuilds the producer state of the log in <paramref name="segments"/>, from
    /// <paramref name="logStartOffset"/> to <paramref name="logEndOffset"/>: loads the newest snapshot at or
    /// below the end and replays the batch headers after it. After a clean shutdown a snapshot at the end is
    /// the whole state. Used by <see cref="Load"/> and by <see cref="PartitionLog.TruncateTo"/> (after
    /// <see cref="ProducerStateManager.ResetTo"/>), as Kafka's UnifiedLog.rebuildProducerState is.
    /// </summary>
    internal static void RebuildProducerState(ProducerStateManager producers, LogSegment[] segments, long logStartOffset, long logEndOffset,
        bool hadCleanShutdown)
    {
        long from = producers.LoadLatestSnapshot(logEndOffset) ?? logStartOffset;
        if (hadCleanShutdown && from == logEndOffset) return;
        Span<byte> header = stackalloc byte[RecordBatch.HeaderSize];
        foreach (var seg in segments)
        {
            int limit = seg.Size;
            if (seg.Size == 0) continue;
            var start = seg.FindBatch(from, limit);
            if (start is null) continue;
            int pos = start.Value.Position;
            while (seg.ReadHeader(pos, limit) is { } h)
            {
                if (h.Magic == RecordBatch.CurrentMagic && h.BaseOffset >= from)
                {
                    seg.ReadExactly(pos, header);
                    producers.Replay(header);
                }
                pos += h.Size;
            }
        }
        producers.SetMapEndOffset(logEndOffset);
    }

    /// <summary>
    /// Brings the loaded leader epoch cache in line with the recovered log: epochs starting past
    /// its end (a cut tail) or ending before its start go. A missing or malformed file, or one that
    /// lacks the epoch of the last batch (a crash between an append and the checkpoint write), is
    /// rebuilt from the batch headers, which carry their leader epoch. A failed checkpoint write is
    /// logged (the cache in memory is right, and the next start repairs the file).
    /// </summary>
    private void ReconcileEpochCache(LeaderEpochFileCache epochs, bool found, LogSegment[] segments, long logStartOffset, long logEndOffset)
    {
        try
        {
            epochs.TruncateFromEnd(logEndOffset);
            epochs.TruncateFromStart(logStartOffset);
            int last = LastBatchEpoch(segments);
            if (found && last <= epochs.LatestEpoch) return;
            var rebuilt = new List<EpochEntry>();
            Span<byte> header = stackalloc byte[RecordBatch.HeaderSize];
            foreach (var seg in segments)
            {
                int limit = seg.Size;
                if (limit == 0) continue;
                var start = seg.FindBatch(logStartOffset, limit);
                if (start is null) continue;
                int pos = start.Value.Position;
                while (seg.ReadHeader(pos, limit) is { } h)
                {
                    if (h.Magic == RecordBatch.CurrentMagic && h.Size >= RecordBatch.HeaderSize)
                    {
                        seg.ReadExactly(pos, header);
                        int epoch = new RecordBatch(header).PartitionLeaderEpoch;
                        if (epoch >= 0 && (rebuilt.Count == 0 || epoch > rebuilt[^1].Epoch))
                            rebuilt.Add(new EpochEntry(epoch, Math.Max(h.BaseOffset, logStartOffset)));
                    }
                    pos += h.Size;
                }
            }
            LogEpochCacheRebuilt(_logger, _tp, found ? "stale" : "missing", rebuilt.Count);
            epochs.Reset(rebuilt);
        }
        catch (IOException e)
        {
            PartitionLog.LogEpochCheckpointFailed(_logger, _tp, e.Message);
        }
    }

    /// <summary>The partition leader epoch of the last batch in the log, -1 when the log is empty.</summary>
    private static int LastBatchEpoch(LogSegment[] segments)
    {
        for (int i = segments.Length - 1; i >= 0; i--)
        {
            var seg = segments[i];
            if (seg.Size == 0) continue;
            var (_, pos) = seg.OffsetIndex.Lookup(long.MaxValue);
            int lastPos = -1;
            while (seg.ReadHeader(pos, seg.Size) is { } h)
            {
                if (h.Magic == RecordBatch.CurrentMagic && h.Size >= RecordBatch.HeaderSize) lastPos = pos;
                pos += h.Size;
            }
            if (lastPos < 0) continue;
            Span<byte> header = stackalloc byte[RecordBatch.HeaderSize];
            seg.ReadExactly(lastPos, header);
            return new RecordBatch(header).PartitionLeaderEpoch;
        }
        return EpochEndOffset.UndefinedEpoch;
    }

    // ================================================================ logging (the log's own logger and event ids)

    [LoggerMessage(EventId = 1001, Level = LogLevel.Warning, Message = "{Partition}: truncated {Bytes} bytes of torn or corrupt data at the end of segment {BaseOffset}; log ends at offset {Next}")]
    private static partial void LogTruncatedTail(ILogger logger, TopicPartition partition, long baseOffset, int bytes, long next);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Warning, Message = "{Partition}: deleted segment {BaseOffset}, which followed a corrupt segment")]
    private static partial void LogDroppedSegment(ILogger logger, TopicPartition partition, long baseOffset);

    [LoggerMessage(EventId = 1003, Level = LogLevel.Information, Message = "{Partition}: rebuilding the indexes of segment {BaseOffset}")]
    private static partial void LogIndexRebuild(ILogger logger, TopicPartition partition, long baseOffset);

    [LoggerMessage(EventId = 1009, Level = LogLevel.Warning, Message = "{Partition}: completed an interrupted cleaner swap: segment {BaseOffset} replaces {Replaced} segment files")]
    private static partial void LogSwapCompleted(ILogger logger, TopicPartition partition, long baseOffset, int replaced);

    [LoggerMessage(EventId = 1011, Level = LogLevel.Information, Message = "{Partition}: leader epoch cache was {Why}; rebuilt {Count} entries from the log")]
    private static partial void LogEpochCacheRebuilt(ILogger logger, TopicPartition partition, string why, int count);
}
