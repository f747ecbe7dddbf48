using System.Buffers.Binary;
using Freshet.Protocol;
using Freshet.Protocol.Records;
using Freshet.Storage.Segments;
using Microsoft.Extensions.Logging;

namespace Freshet.Storage.Cleaner;

/// <summary>Settings of the <see cref="LogCleaner"/> (Kafka's log.cleaner.* broker configs).</summary>
public sealed record LogCleanerOptions
{
    /// <summary>log.cleaner.dedupe.buffer.size: memory for the key -> offset map, 24 bytes per key.</summary>
    public long DedupeBufferSize { get; init; } = 134_217_728;

    /// <summary>log.cleaner.io.buffer.load.factor: how full the map may get.</summary>
    public double DedupeBufferLoadFactor { get; init; } = 0.9;

    /// <summary>log.cleaner.io.buffer.size: read and write buffer of the cleaner (grown for a larger batch).</summary>
    public int IoBufferSize { get; init; } = 524_288;
}

/// <summary>
/// A compacted log as the cleaner sees it: the dirty section runs from <see cref="FirstDirtyOffset"/>
/// (the cleaner checkpoint, at least the log start) to <see cref="FirstUncleanableOffset"/>, the end
/// of the last segment that may be cleaned (not the active one, wholly below the high watermark, and
/// older than min.compaction.lag.ms). Byte counts are whole segments.
/// </summary>
public sealed record CleanableLog(PartitionLog Log, long FirstDirtyOffset, long FirstUncleanableOffset, long CleanBytes, long DirtyBytes,
    bool MaxCompactionLagExceeded, bool DeleteHorizonPassed)
{
    /// <summary>Dirty bytes / (clean + dirty bytes): compared with min.cleanable.dirty.ratio.</summary>
    public double DirtyRatio => CleanBytes + DirtyBytes == 0 ? 0 : (double)DirtyBytes / (CleanBytes + DirtyBytes);
}

/// <summary>What one cleaning of a log did.</summary>
public sealed record CleanResult
{
    public required TopicPartition Partition { get; init; }

    /// <summary>True when segments were rewritten and swapped in (all of them, up to <see cref="EndOffset"/>).</summary>
    public bool Cleaned { get; init; }

    /// <summary>True when the log changed under the cleaner (retention, truncation, deletion) and it gave up; nothing is lost.</summary>
    public bool Aborted { get; init; }

    /// <summary>Start of the dirty section this cleaning deduplicated.</summary>
    public long FirstDirtyOffset { get; init; }

    /// <summary>Where the dirty section now starts (the new checkpoint): the end of what the offset map covered.</summary>
    public long EndOffset { get; init; }

    public int SegmentsRead { get; init; }
    public int SegmentsWritten { get; init; }
    public long BytesRead { get; init; }
    public long BytesWritten { get; init; }
    public long RecordsRead { get; init; }
    public long RecordsKept { get; init; }

    /// <summary>Tombstones dropped because their batch's delete horizon had passed.</summary>
    public long TombstonesRemoved { get; init; }

    /// <summary>Batches that lost every record but stay as empty headers: the last batch of an idempotent producer.</summary>
    public int EmptyBatchesKept { get; init; }
}

/// <summary>
/// Log compaction (Kafka's log cleaner, written from its documented behaviour). For a log with
/// cleanup.policy=compact it keeps the latest record of every key and drops the older ones:
/// <list type="number">
/// <item><b>Choice.</b> <see cref="Measure"/> finds the dirty section (from the cleaner checkpoint to
/// the first uncleanable offset: the active segment, the high watermark, or the first segment newer
/// than min.compaction.lag.ms, whichever comes first; only whole segments). A log is cleaned when its
/// dirty ratio exceeds min.cleanable.dirty.ratio, when the first dirty segment is older than
/// max.compaction.lag.ms, or when the delete horizon of a tombstone it holds has passed;
/// <see cref="CleanFilthiest"/> takes the dirtiest such log.</item>
/// <item><b>Map.</b> One pass over the dirty section records key -> latest offset in an
/// <see cref="OffsetMap"/> (log.cleaner.dedupe.buffer.size). If it fills up, the pass stops at a batch
/// boundary and this cleaning covers only the part before it; the checkpoint moves only that far.</item>
/// <item><b>Rewrite.</b> Every segment from the start of the log to the end of what the map covers is
/// read and written again, keeping a record only if it has a key and no later offset for that key
/// is in the map, and, for a tombstone (null value), only until its batch's delete horizon. Offsets
/// stay (gaps are left), and so do timestamps, headers and batch attributes: a batch that keeps every
/// record is copied byte for byte; one that loses some is re-encoded with the same codec, base
/// offset, last offset delta (so the producer's sequence range stays whole, as in Kafka),
/// producer fields and leader epoch, only its records and max timestamp change. A batch that loses
/// all records goes, except the last batch of a producer id in the producer state: it stays as a
/// header with zero records (uncompressed), which every Freshet reader handles (record iteration
/// yields nothing, recovery and producer state replay read the header, reads by offset skip to its
/// last offset + 1) and Kafka clients accept since the broker writes them too. Keeping a record
/// instead would bring back a value its key had lost, once the key's tombstone was gone.</item>
/// <item><b>Tombstones.</b> The first time a batch holding a tombstone it keeps is cleaned, its delete
/// horizon is set to now + delete.retention.ms: attribute bit 6 with the horizon in the base
/// timestamp field and the records' timestamp deltas taken from it, so every record keeps its
/// timestamp (Kafka's KIP-534 layout, readable by clients). A later cleaning after the horizon
/// drops the tombstones; the earliest horizon left is remembered so a quiet log is cleaned then.</item>
/// <item><b>Grouping and swap.</b> Consecutive source segments are written into one cleaned segment
/// (base offset of the first) while its size stays within segment.bytes. Each group is written to
/// <c>{base}.log.cleaned</c> with its indexes, synced, and swapped in by
/// <see cref="PartitionLog.ReplaceSegments"/> under the partition's lock (the only time the cleaner
/// holds it): .cleaned -> .swap (commit), old segments -> .deleted (delayed deletion, so readers of
/// their file ranges keep working), then the new files get their normal names. After a crash
/// <see cref="LogLoader"/> drops *.cleaned and completes *.swap. Groups are swapped in
/// offset order, so a crash between groups leaves a log cleaned up to some point, which is consistent
/// since every dropped record has a later one for its key still in the log.</item>
/// </list>
/// Cleanings are serialized (one map, one cleaner thread); the segments read are immutable, and a
/// change to them before a swap (checked by identity and size) aborts the cleaning, discarding its output.
/// </summary>
public sealed partial class LogCleaner
{
    private readonly Lock _lock = new();
    private readonly OffsetMap _map = new();
    private readonly HashSet<PartitionLog> _uncleanable = new(ReferenceEqualityComparer.Instance);
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly PooledBufferWriter _scratch = new();
    private readonly PooledBufferWriter _recordsSection = new();
    private readonly PooledBufferWriter _out = new();
    private readonly List<bool> _keep = [];
    private byte[] _readBuffer = [];

    public LogCleaner(LogCleanerOptions options, TimeProvider time, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.DedupeBufferSize, OffsetMap.BytesPerEntry * 2L);
        if (options.DedupeBufferLoadFactor is <= 0 or > 1) throw new ArgumentOutOfRangeException(nameof(options), "DedupeBufferLoadFactor must be in (0, 1]");
        ArgumentOutOfRangeException.ThrowIfLessThan(options.IoBufferSize, RecordBatch.HeaderSize);
        Options = options;
        _time = time;
        _logger = logger;
    }

    public LogCleanerOptions Options { get; }

    private long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Logs the background cleaner skips after a cleaning failed on them (a corrupt batch, say), until one succeeds.</summary>
    public bool IsUncleanable(PartitionLog log)
    {
        lock (_lock) return _uncleanable.Contains(log);
    }

    // ================================================================ choosing

    /// <summary>The dirty section of a compacted log now; null when the log is not compacted.</summary>
    public CleanableLog? Measure(PartitionLog log)
    {
        ArgumentNullException.ThrowIfNull(log);
        lock (_lock) return Measure(log, NowMs);
    }

    private CleanableLog? Measure(PartitionLog log, long now)
    {
        var config = log.Config;
        if (!config.Compact) return null;
        var segs = log.Segments;
        long logStart = log.LogStartOffset;
        long firstDirty = log.CleanerCheckpoint;
        // Kafka's reset rules: a checkpoint below the log start (retention, DeleteRecords) starts at the
        // log start; one past the end of the log cannot be right, so everything counts as dirty.
        if (firstDirty < logStart || firstDirty > log.LogEndOffset) firstDirty = logStart;

        long limit = Math.Min(segs[^1].BaseOffset, log.HighWatermark);
        if (config.MinCompactionLagMs > 0)
        {
            for (int i = 0; i < segs.Count - 1; i++)
            {
                long ts = segs[i].MaxTimestamp >= 0 ? segs[i].MaxTimestamp : segs[i].LastModifiedMs;
                if (now - ts < config.MinCompactionLagMs)
                {
                    limit = Math.Min(limit, segs[i].BaseOffset);
                    break;
                }
            }
        }
        long cleanableEnd = segs[0].BaseOffset, clean = 0, dirty = 0;
        LogSegment? firstDirtySegment = null;
        for (int i = 0; i < segs.Count - 1; i++)
        {
            long end = segs[i + 1].BaseOffset;
            if (end > limit) break;
            cleanableEnd = end;
            if (end <= firstDirty) clean += segs[i].Size;
            else
            {
                dirty += segs[i].Size;
                firstDirtySegment ??= segs[i];
            }
        }
        bool lagExceeded = false;
        if (firstDirtySegment is { } fd && dirty > 0 && config.MaxCompactionLagMs < long.MaxValue)
        {
            long ts = fd.FirstBatchTimestamp >= 0 ? fd.FirstBatchTimestamp : fd.MaxTimestamp >= 0 ? fd.MaxTimestamp : fd.LastModifiedMs;
            lagExceeded = now - ts > config.MaxCompactionLagMs;
        }
        if (log.CleanerDeleteHorizon == long.MinValue) log.CleanerDeleteHorizon = ScanDeleteHorizon(segs);
        bool horizonPassed = log.CleanerDeleteHorizon <= now && cleanableEnd > segs[0].BaseOffset;
        return new CleanableLog(log, firstDirty, cleanableEnd, clean, dirty, lagExceeded, horizonPassed);
    }

    /// <summary>Whether a measured log is due: dirty enough, past max.compaction.lag.ms, or holding expired tombstones.</summary>
    private static bool IsDue(CleanableLog c) =>
        c.DirtyBytes > 0 && (c.DirtyRatio > c.Log.Config.MinCleanableDirtyRatio || c.MaxCompactionLagExceeded) || c.DeleteHorizonPassed;

    /// <summary>
    /// Cleans the dirtiest of <paramref name="logs"/> that is due (Kafka's choice: highest dirty ratio
    /// among the logs past min.cleanable.dirty.ratio, past max.compaction.lag.ms or holding expired
    /// tombstones); null when none is. Logs whose last cleaning failed are skipped.
    /// </summary>
    public CleanResult? CleanFilthiest(IEnumerable<PartitionLog> logs, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(logs);
        lock (_lock)
        {
            long now = NowMs;
            CleanableLog? best = null;
            var all = logs.ToList();
            // Forget failures of logs that are gone (deleted topics).
            if (_uncleanable.Count > 0)
            {
                var current = new HashSet<PartitionLog>(all, ReferenceEqualityComparer.Instance);
                _uncleanable.RemoveWhere(l => !current.Contains(l));
            }
            foreach (var log in all)
            {
                if (_uncleanable.Contains(log) || log.IsOffline) continue;
                CleanableLog? c;
                try { c = Measure(log, now); }
                catch (Exception e) when (e is IOException or ObjectDisposedException) { continue; }
                if (c is null || !IsDue(c)) continue;
                if (best is null || c.DirtyRatio > best.DirtyRatio) best = c;
            }
            return best is null ? null : CleanAndRecord(best.Log, ct);
        }
    }

    /// <summary>
    /// Cleans <paramref name="log"/> now, whatever its dirty ratio (the synchronous entry point for the
    /// broker and tests): everything cleanable is deduplicated, tombstones past their horizon go.
    /// Still never touches the active segment, anything at or past the high watermark, or segments
    /// newer than min.compaction.lag.ms. A log that is not compacted is left alone.
    /// </summary>
    /// <exception cref="InvalidDataException">A corrupt batch; the log is then skipped by <see cref="CleanFilthiest"/>.</exception>
    public CleanResult Clean(PartitionLog log, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(log);
        lock (_lock) return CleanAndRecord(log, ct);
    }

    private CleanResult CleanAndRecord(PartitionLog log, CancellationToken ct)
    {
        try
        {
            var r = CleanLocked(log, ct);
            _uncleanable.Remove(log);
            if (r.Cleaned) LogCleaned(_logger, r.Partition, r.FirstDirtyOffset, r.EndOffset, r.SegmentsRead, r.SegmentsWritten, r.BytesRead, r.BytesWritten, r.RecordsRead, r.RecordsKept);
            return r;
        }
        catch (Exception e) when (e is not OperationCanceledException and not ObjectDisposedException)
        {
            _uncleanable.Add(log);
            LogCleanFailed(_logger, log.TopicPartition, e.Message);
            throw;
        }
        finally
        {
            // One big cleaning should not pin its map for the life of the process.
            _map.Trim(Options.DedupeBufferSize / 8);
            _out.Reset();
            _recordsSection.Reset();
            _scratch.Reset();
            if (_readBuffer.Length > Options.IoBufferSize * 4) _readBuffer = [];
        }
    }

    // ================================================================ cleaning

    /// <summary>Thrown when the log changed under the cleaner; the cleaning is given up.</summary>
    private sealed class LogChangedException : Exception
    {
        public LogChangedException() : base("the log changed during cleaning") { }
    }

    /// <summary>Counters and state of one cleaning.</summary>
    private sealed class Run
    {
        public required PartitionLog Log { get; init; }
        public required Dictionary<long, long> ProducerLastOffsets { get; init; }
        public required long Now { get; init; }
        public required long EndOffset { get; init; }
        public required LogConfig Config { get; init; }
        public long MinHorizon = long.MaxValue;
        public long BytesRead, BytesWritten, RecordsRead, RecordsKept, TombstonesRemoved;
        public int EmptyBatchesKept, SegmentsWritten;
    }

    private CleanResult CleanLocked(PartitionLog log, CancellationToken ct)
    {
        long now = NowMs;
        var nothing = new CleanResult { Partition = log.TopicPartition, FirstDirtyOffset = log.CleanerCheckpoint, EndOffset = log.CleanerCheckpoint };
        var m = Measure(log, now);
        if (m is null) return nothing;
        var (segs, producerLast) = log.SnapshotForCleaning();
        var cleanable = new List<(LogSegment Segment, int Size, long End)>();
        for (int i = 0; i < segs.Length - 1; i++)
        {
            long end = segs[i + 1].BaseOffset;
            if (end > m.FirstUncleanableOffset) break;
            cleanable.Add((segs[i], segs[i].Size, end));
        }
        nothing = nothing with { FirstDirtyOffset = m.FirstDirtyOffset, EndOffset = m.FirstDirtyOffset };
        if (cleanable.Count == 0) return nothing;

        long firstDirty = m.FirstDirtyOffset;
        long cleanableEnd = cleanable[^1].End;
        long endOffset;
        if (firstDirty < cleanableEnd)
        {
            endOffset = BuildOffsetMap(cleanable, firstDirty, ct);
            if (endOffset <= firstDirty)
            {
                LogMapTooSmall(_logger, log.TopicPartition, firstDirty, Options.DedupeBufferSize);
                if (!m.DeleteHorizonPassed)
                    throw new InvalidOperationException(
                        $"log.cleaner.dedupe.buffer.size {Options.DedupeBufferSize} cannot hold the keys of the batch at offset {firstDirty} of {log.TopicPartition}");
            }
        }
        else if (!m.DeleteHorizonPassed) return nothing;
        else
        {
            // Nothing dirty (a cleaning for expired tombstones): the clean section is rewritten with an empty map.
            _map.Reset(0, 2, Options.DedupeBufferLoadFactor);
            endOffset = cleanableEnd;
        }
        var rewrite = cleanable.Where(c => c.Segment.BaseOffset < endOffset).ToList();
        if (rewrite.Count == 0) return nothing;

        var run = new Run { Log = log, ProducerLastOffsets = producerLast, Now = now, EndOffset = endOffset, Config = log.Config };
        try
        {
            Rewrite(run, rewrite, ct);
        }
        catch (Exception e) when (e is LogChangedException or ObjectDisposedException || e is IOException && log.IsClosed)
        {
            LogCleanAborted(_logger, log.TopicPartition);
            return nothing with { Aborted = true };
        }
        long checkpoint = Math.Max(firstDirty, endOffset);
        log.SetCleanerCheckpoint(checkpoint);
        log.CleanerDeleteHorizon = run.MinHorizon;
        return new CleanResult
        {
            Partition = log.TopicPartition,
            Cleaned = true,
            FirstDirtyOffset = firstDirty,
            EndOffset = checkpoint,
            SegmentsRead = rewrite.Count,
            SegmentsWritten = run.SegmentsWritten,
            BytesRead = run.BytesRead,
            BytesWritten = run.BytesWritten,
            RecordsRead = run.RecordsRead,
            RecordsKept = run.RecordsKept,
            TombstonesRemoved = run.TombstonesRemoved,
            EmptyBatchesKept = run.EmptyBatchesKept,
        };
    }

    /// <summary>
    /// Fills the map with key -> latest offset over the dirty section. Returns where it stopped: the end
    /// of the section, or the base offset of the first batch whose records might not have fit.
    /// </summary>
    private long BuildOffsetMap(List<(LogSegment Segment, int Size, long End)> cleanable, long firstDirty, CancellationToken ct)
    {
        long dirtyEnd = cleanable[^1].End;
        _map.Reset(dirtyEnd - firstDirty, Options.DedupeBufferSize / OffsetMap.BytesPerEntry, Options.DedupeBufferLoadFactor);
        var reader = new BatchReader(this);
        foreach (var (seg, size, end) in cleanable)
        {
            if (end <= firstDirty) continue;
            reader.Start(seg, 0, size);
            while (reader.TryNext(out var batch))
            {
                ct.ThrowIfCancellationRequested();
                var b = new RecordBatch(batch);
                if (b.LastOffset < firstDirty || b.Magic != RecordBatch.CurrentMagic || b.IsControl) continue;
                if (_map.Count + (long)b.RecordsCount > _map.MaxEntries) return Math.Max(b.BaseOffset, firstDirty);
                CheckCrc(b, seg, reader.LastPosition);
                foreach (var r in new BatchRecords(batch, _scratch))
                {
                    if (r.Offset >= firstDirty && !r.Record.KeyIsNull) _map.Put(OffsetMap.Hash(r.Record.Key), r.Offset);
                }
            }
        }
        return dirtyEnd;
    }

    private static void CheckCrc(RecordBatch b, LogSegment seg, long position)
    {
        if (!b.IsCrcValid) throw new InvalidDataException($"batch at byte {position} of {seg.LogPath} (offset {b.BaseOffset}) fails its CRC");
    }

    /// <summary>
    /// Rewrites <paramref name="sources"/> group by group. A group's output grows until the next source
    /// segment's output would take it past segment.bytes; that output is then moved to a new cleaned
    /// segment starting at that source's base offset and the full group is swapped in.
    /// </summary>
    private void Rewrite(Run run, List<(LogSegment Segment, int Size, long End)> sources, CancellationToken ct)
    {
        var log = run.Log;
        int segmentBytes = run.Config.SegmentBytes;
        LogSegment? current = null, moved = null;
        var group = new List<(LogSegment Segment, int Size)>();
        try
        {
            foreach (var (seg, size, end) in sources)
            {
                ct.ThrowIfCancellationRequested();
                // Index entries hold offsets relative to the segment's base as int32.
                if (current is not null && end - 1 - current.BaseOffset > int.MaxValue)
                {
                    FinishGroup(run, current, group);
                    current = null;
                }
                current ??= NewOutput(log, seg.BaseOffset, run);
                int mark = current.Size;
                FilterSegment(run, seg, size, current, ct);
                run.BytesRead += size;
                if (group.Count > 0 && current.Size > segmentBytes && current.Size > mark)
                {
                    moved = NewOutput(log, seg.BaseOffset, run);
                    CopyTail(current, mark, moved);
                    current.TruncateTo(seg.BaseOffset);
                    FinishGroup(run, current, group);
                    current = moved;
                    moved = null;
                }
                group.Add((seg, size));
            }
            if (current is not null) FinishGroup(run, current, group);
            current = null;
        }
        catch
        {
            current?.DeleteFiles();
            moved?.DeleteFiles();
            throw;
        }
    }

    private static LogSegment NewOutput(PartitionLog log, long baseOffset, Run run) =>
        LogSegment.CreateCleaned(log.Options.Io, log.Dir, baseOffset, run.Config.IndexIntervalBytes, run.Config.SegmentIndexBytes, run.Now);

    /// <summary>Syncs a group's output and swaps it in for the group's source segments.</summary>
    private static void FinishGroup(Run run, LogSegment output, List<(LogSegment Segment, int Size)> group)
    {
        output.Flush(fsync: true);
        // The file's age is the newest source's: retention and min.compaction.lag.ms fall back to it
        // for batches without timestamps, and a rewrite must not make old data look new (Kafka keeps it too).
        var modified = group.Max(g => File.GetLastWriteTimeUtc(g.Segment.LogPath));
        File.SetLastWriteTimeUtc(output.LogPath, modified);
        long written = output.Size;
        if (!run.Log.ReplaceSegments(group, output)) throw new LogChangedException();
        run.BytesWritten += written;
        if (written > 0 || File.Exists(output.LogPath)) run.SegmentsWritten++;
        group.Clear();
    }

    /// <summary>Moves the batches of <paramref name="from"/> at and after byte <paramref name="position"/> to <paramref name="to"/>.</summary>
    private void CopyTail(LogSegment from, int position, LogSegment to)
    {
        var reader = new BatchReader(this);
        reader.Start(from, position, from.Size);
        using var chunk = new PooledBufferWriter();
        while (reader.TryNext(out var batch))
        {
            chunk.Write(batch);
            if (chunk.WrittenCount >= Options.IoBufferSize)
            {
                to.Append(chunk.WrittenSpan);
                chunk.Clear();
            }
        }
        if (chunk.WrittenCount > 0) to.Append(chunk.WrittenSpan);
    }

    /// <summary>Writes what is kept of one source segment to <paramref name="output"/>.</summary>
    private void FilterSegment(Run run, LogSegment seg, int size, LogSegment output, CancellationToken ct)
    {
        var reader = new BatchReader(this);
        reader.Start(seg, 0, size);
        int n = 0;
        while (reader.TryNext(out var batch))
        {
            if ((++n & 1023) == 0) ct.ThrowIfCancellationRequested();
            var b = new RecordBatch(batch);
            if (b.Magic != RecordBatch.CurrentMagic || b.IsControl || b.BaseOffset >= run.EndOffset)
            {
                // Past what the map covers (the next cleaning's dirty section), or not ours to judge: as is.
                _out.Write(batch);
                if (b.Magic == RecordBatch.CurrentMagic && b.HasDeleteHorizon) run.MinHorizon = Math.Min(run.MinHorizon, b.BaseTimestamp);
            }
            else
            {
                CheckCrc(b, seg, reader.LastPosition);
                FilterBatch(run, batch);
            }
            if (_out.WrittenCount >= Options.IoBufferSize) FlushOutput(output);
        }
        FlushOutput(output);
    }

    private void FlushOutput(LogSegment output)
    {
        if (_out.WrittenCount == 0) return;
        output.Append(_out.WrittenSpan);
        _out.Clear();
    }

    /// <summary>Decides each record of a batch and writes the batch as is, thinned, as an empty header, or not at all.</summary>
    private void FilterBatch(Run run, ReadOnlySpan<byte> batch)
    {
        var b = new RecordBatch(batch);
        var records = new BatchRecords(batch, _scratch);
        long horizon = b.HasDeleteHorizon ? b.BaseTimestamp : RecordBatch.NoTimestamp;
        bool horizonPassed = b.HasDeleteHorizon && horizon <= run.Now;
        int kept = 0, removed = 0;
        bool keptTombstone = false;
        _keep.Clear();
        foreach (var r in records)
        {
            run.RecordsRead++;
            bool keep;
            if (r.Record.KeyIsNull) keep = false; // cannot be compacted: Kafka's cleaner drops these too
            else
            {
                long latest = _map.Get(OffsetMap.Hash(r.Record.Key));
                keep = latest < 0 || r.Offset >= latest;
                if (keep && r.Record.ValueIsNull && horizonPassed)
                {
                    keep = false;
                    run.TombstonesRemoved++;
                }
            }
            _keep.Add(keep);
            if (keep)
            {
                kept++;
                keptTombstone |= r.Record.ValueIsNull;
            }
            else removed++;
        }
        run.RecordsKept += kept;

        if (keptTombstone && !b.HasDeleteHorizon)
            horizon = run.Config.DeleteRetentionMs > long.MaxValue - run.Now ? long.MaxValue : run.Now + run.Config.DeleteRetentionMs;
        if (keptTombstone) run.MinHorizon = Math.Min(run.MinHorizon, horizon);

        if (kept == 0)
        {
            // Gone, unless it is its producer's last batch (an empty batch kept earlier included: it
            // goes once the producer has written another).
            if (b.HasProducerId && run.ProducerLastOffsets.TryGetValue(b.ProducerId, out long last) && last == b.LastOffset)
            {
                if (removed == 0) _out.Write(batch);
                else WriteEmptyBatch(b);
                run.EmptyBatchesKept++;
            }
            return;
        }
        if (removed == 0 && (!keptTombstone || b.HasDeleteHorizon))
        {
            _out.Write(batch);
            return;
        }
        WriteThinnedBatch(b, records, keptTombstone ? horizon : RecordBatch.NoTimestamp);
    }

    /// <summary>
    /// Re-encodes a batch with only its kept records (per <see cref="_keep"/>). Each record keeps its
    /// offset delta and its timestamp; the base timestamp is the delete horizon when one is set (bit 6),
    /// else the batch's own base timestamp (or, for a batch whose horizon goes, its first kept record's).
    /// </summary>
    private void WriteThinnedBatch(RecordBatch b, BatchRecords records, long horizon)
    {
        long originalBase = b.BaseTimestamp;
        bool setHorizon = horizon >= 0;
        long newBase = setHorizon ? horizon : b.HasDeleteHorizon ? long.MinValue : originalBase;
        long maxTimestamp = long.MinValue;
        int count = 0, i = 0;
        _recordsSection.Clear();
        foreach (var r in records)
        {
            if (!_keep[i++]) continue;
            long ts = unchecked(originalBase + r.Record.TimestampDelta);
            if (newBase == long.MinValue) newBase = ts;
            if (ts > maxTimestamp) maxTimestamp = ts;
            WriteRecord(_recordsSection, r.Record, unchecked(ts - newBase));
            count++;
        }
        if (b.TimestampType == TimestampType.LogAppendTime) maxTimestamp = b.MaxTimestamp;
        short attributes = (short)(b.Attributes & ~RecordBatch.DeleteHorizonFlag);
        if (setHorizon) attributes |= RecordBatch.DeleteHorizonFlag;

        int start = _out.WrittenCount;
        _out.GetSpan(RecordBatch.HeaderSize)[..RecordBatch.HeaderSize].Clear();
        _out.Advance(RecordBatch.HeaderSize);
        RecordCompression.Compress(b.Compression, _recordsSection.WrittenSpan, _out);
        var h = _out.WrittenSpanMutable[start..];
        WriteHeader(h, b, attributes, b.LastOffsetDelta, newBase, maxTimestamp, count);
    }

    /// <summary>
    /// A batch that lost every record but must stay for its producer: the header alone, recordsCount 0,
    /// uncompressed (an empty compressed section is not valid data for any codec), base and max
    /// timestamp the batch's max timestamp, everything else (offsets, sequence, epoch) unchanged.
    /// </summary>
    private void WriteEmptyBatch(RecordBatch b)
    {
        int start = _out.WrittenCount;
        var h = _out.GetSpan(RecordBatch.HeaderSize)[..RecordBatch.HeaderSize];
        h.Clear();
        _out.Advance(RecordBatch.HeaderSize);
        short attributes = (short)(b.Attributes & ~(RecordBatch.CompressionMask | RecordBatch.DeleteHorizonFlag));
        WriteHeader(_out.WrittenSpanMutable[start..], b, attributes, b.LastOffsetDelta, b.MaxTimestamp, b.MaxTimestamp, 0);
    }

    private static void WriteHeader(Span<byte> h, RecordBatch original, short attributes, int lastOffsetDelta, long baseTimestamp, long maxTimestamp, int count)
    {
        BinaryPrimitives.WriteInt64BigEndian(h, original.BaseOffset);
        BinaryPrimitives.WriteInt32BigEndian(h[RecordBatch.LengthOffset..], h.Length - RecordBatch.LogOverhead);
        BinaryPrimitives.WriteInt32BigEndian(h[RecordBatch.PartitionLeaderEpochOffset..], original.PartitionLeaderEpoch);
        h[RecordBatch.MagicOffset] = RecordBatch.CurrentMagic;
        BinaryPrimitives.WriteInt16BigEndian(h[RecordBatch.AttributesOffset..], attributes);
        BinaryPrimitives.WriteInt32BigEndian(h[RecordBatch.LastOffsetDeltaOffset..], lastOffsetDelta);
        BinaryPrimitives.WriteInt64BigEndian(h[RecordBatch.BaseTimestampOffset..], baseTimestamp);
        BinaryPrimitives.WriteInt64BigEndian(h[RecordBatch.MaxTimestampOffset..], maxTimestamp);
        BinaryPrimitives.WriteInt64BigEndian(h[RecordBatch.ProducerIdOffset..], original.ProducerId);
        BinaryPrimitives.WriteInt16BigEndian(h[RecordBatch.ProducerEpochOffset..], original.ProducerEpoch);
        BinaryPrimitives.WriteInt32BigEndian(h[RecordBatch.BaseSequenceOffset..], original.BaseSequence);
        BinaryPrimitives.WriteInt32BigEndian(h[RecordBatch.RecordsCountOffset..], count);
        RecordBatch.UpdateCrc(h);
    }

    /// <summary>Encodes a record (layout in <see cref="Record"/>) with its own offset delta and a new timestamp delta.</summary>
    private static void WriteRecord(PooledBufferWriter w, Record r, long timestampDelta)
    {
        int keyLength = r.KeyIsNull ? -1 : r.Key.Length;
        int valueLength = r.ValueIsNull ? -1 : r.Value.Length;
        long body = 1L + Varint.SizeOfVarLong(timestampDelta) + Varint.SizeOfVarInt(r.OffsetDelta)
            + Varint.SizeOfVarInt(keyLength) + Math.Max(keyLength, 0)
            + Varint.SizeOfVarInt(valueLength) + Math.Max(valueLength, 0)
            + Varint.SizeOfVarInt(r.HeaderCount) + r.HeaderBytes.Length;
        if (body > int.MaxValue - 5) throw new InvalidDataException($"record of {body} bytes is too large");
        var s = w.GetSpan(Varint.SizeOfVarInt((int)body) + (int)body);
        int p = Varint.WriteVarInt(s, (int)body);
        s[p++] = (byte)r.Attributes;
        p += Varint.WriteVarLong(s[p..], timestampDelta);
        p += Varint.WriteVarInt(s[p..], r.OffsetDelta);
        p += Varint.WriteVarInt(s[p..], keyLength);
        r.Key.CopyTo(s[p..]);
        p += Math.Max(keyLength, 0);
        p += Varint.WriteVarInt(s[p..], valueLength);
        r.Value.CopyTo(s[p..]);
        p += Math.Max(valueLength, 0);
        p += Varint.WriteVarInt(s[p..], r.HeaderCount);
        r.HeaderBytes.CopyTo(s[p..]);
        p += r.HeaderBytes.Length;
        w.Advance(p);
    }

    /// <summary>
    /// The earliest delete horizon among the batches of the non-active segments (bit 6 set), from their
    /// headers: what a restarted broker needs to know when a quiet log's tombstones expire.
    /// </summary>
    private static long ScanDeleteHorizon(IReadOnlyList<LogSegment> segs)
    {
        long min = long.MaxValue;
        Span<byte> h = stackalloc byte[RecordBatch.MaxTimestampOffset];
        for (int i = 0; i < segs.Count - 1; i++)
        {
            var seg = segs[i];
            int limit = seg.Size;
            long pos = 0;
            while (pos + h.Length <= limit)
            {
                if (RandomAccess.Read(seg.Handle, h, pos) < h.Length) break;
                int size = RecordBatch.LogOverhead + BinaryPrimitives.ReadInt32BigEndian(h[RecordBatch.LengthOffset..]);
                if (size < RecordBatch.HeaderSize || pos + size > limit) break;
                var b = new RecordBatch(h);
                if (b.Magic == RecordBatch.CurrentMagic && b.HasDeleteHorizon) min = Math.Min(min, b.BaseTimestamp);
                pos += size;
            }
        }
        return min;
    }

    /// <summary>
    /// Walks the whole batches of a segment file in order through a buffer of log.cleaner.io.buffer.size
    /// (grown to fit a larger batch). A batch whose length is malformed or runs past the limit is
    /// corruption in a segment that recovery had accepted: InvalidDataException.
    /// </summary>
    private ref struct BatchReader(LogCleaner cleaner)
    {
        private LogSegment? _seg;
        private int _limit;
        private long _bufferFilePosition;
        private int _bufferLength;
        private int _pos;

        /// <summary>File position of the batch <see cref="TryNext"/> returned last.</summary>
        public long LastPosition { get; private set; }

        public void Start(LogSegment seg, int position, int limit)
        {
            _seg = seg;
            _limit = limit;
            _bufferFilePosition = position;
            _bufferLength = 0;
            _pos = 0;
            if (cleaner._readBuffer.Length < cleaner.Options.IoBufferSize) cleaner._readBuffer = new byte[cleaner.Options.IoBufferSize];
        }

        public bool TryNext(out ReadOnlySpan<byte> batch)
        {
            batch = default;
            long filePos = _bufferFilePosition + _pos;
            if (filePos >= _limit) return false;
            if (_bufferLength - _pos < RecordBatch.LogOverhead) Fill(RecordBatch.LogOverhead);
            var buf = cleaner._readBuffer;
            int size = RecordBatch.PeekSize(buf.AsSpan(_pos, _bufferLength - _pos));
            if (size < RecordBatch.HeaderSize || filePos + size > _limit)
                throw new InvalidDataException($"malformed batch length at byte {filePos} of {_seg!.LogPath}");
            if (_bufferLength - _pos < size) Fill(size);
            batch = cleaner._readBuffer.AsSpan(_pos, size);
            LastPosition = filePos;
            _pos += size;
            return true;
        }

        /// <summary>Refills the buffer from the current batch on, so that at least <paramref name="need"/> bytes are there.</summary>
        private void Fill(int need)
        {
            var buf = cleaner._readBuffer;
            int left = _bufferLength - _pos;
            if (buf.Length < need)
            {
                var grown = new byte[Math.Max(need, buf.Length * 2)];
                buf.AsSpan(_pos, left).CopyTo(grown);
                cleaner._readBuffer = buf = grown;
            }
            else buf.AsSpan(_pos, left).CopyTo(buf);
            _bufferFilePosition += _pos;
            _pos = 0;
            _bufferLength = left;
            int want = (int)Math.Min(buf.Length - left, _limit - (_bufferFilePosition + left));
            while (_bufferLength < need && want > 0)
            {
                int n = RandomAccess.Read(_seg!.Handle, buf.AsSpan(_bufferLength, want), _bufferFilePosition + _bufferLength);
                if (n <= 0) break;
                _bufferLength += n;
                want -= n;
            }
            if (_bufferLength < need) throw new InvalidDataException($"unexpected end of {_seg!.LogPath} at byte {_bufferFilePosition + _bufferLength}");
        }
    }

    [LoggerMessage(EventId = 1201, Level = LogLevel.Information,
        Message = "{Partition}: cleaned offsets {FirstDirty}..{End}: {SegmentsRead} segments into {SegmentsWritten}, {BytesRead} -> {BytesWritten} bytes, {RecordsRead} -> {RecordsKept} records")]
    private static partial void LogCleaned(ILogger logger, TopicPartition partition, long firstDirty, long end, int segmentsRead, int segmentsWritten,
        long bytesRead, long bytesWritten, long recordsRead, long recordsKept);

    [LoggerMessage(EventId = 1202, Level = LogLevel.Error, Message = "{Partition}: cleaning failed, the log is skipped until a cleaning succeeds: {Reason}")]
    private static partial void LogCleanFailed(ILogger logger, TopicPartition partition, string reason);

    [LoggerMessage(EventId = 1203, Level = LogLevel.Information, Message = "{Partition}: cleaning given up, the log changed meanwhile")]
    private static partial void LogCleanAborted(ILogger logger, TopicPartition partition);

    [LoggerMessage(EventId = 1204, Level = LogLevel.Warning, Message = "{Partition}: the dedupe buffer ({Bytes} bytes) cannot hold the keys of the batch at offset {Offset}")]
    private static partial void LogMapTooSmall(ILogger logger, TopicPartition partition, long offset, long bytes);
}
