using Freshet.Protocol;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using Freshet.Storage.Epochs;
using Freshet.Storage.Producers;
using Freshet.Storage.Segments;
using Microsoft.Extensions.Logging;

namespace Freshet.Storage;

/// <summary>Who is appending: a client's produce (offsets assigned, producer checks), a coordinator, or a follower.</summary>
public enum AppendOrigin
{
    Client,
    Coordinator,
    Replication,
}

/// <summary>Result of an append: the offsets given to the records, or the error that kept them out.</summary>
public readonly record struct LogAppendResult(
    ErrorCode Error,
    string? ErrorMessage,
    long FirstOffset,
    long LastOffset,
    long LogAppendTime,
    long LogStartOffset,
    int RecordCount,
    bool IsDuplicate)
{
    /// <summary>
    /// Set when the append was made with <c>deferSync</c> and the flush policy wants the data on
    /// disk before it is acknowledged: pass the result to <see cref="PartitionLog.SyncAsync"/>.
    /// </summary>
    public PendingSync? Sync { get; init; }

    /// <summary>
    /// The records that made a refused append fail, by their index in the batch (Produce v8+
    /// RecordErrors, KIP-467), so a client can fail exactly those; null when the whole batch is at fault.
    /// </summary>
    public IReadOnlyList<(int BatchIndex, string Message)>? RecordErrors { get; init; }

    public static LogAppendResult Failed(ErrorCode error, string? message, long logStartOffset) =>
        new(error, message, -1, -1, -1, logStartOffset, 0, false);
}

/// <summary>An fsync an append still owes: the segment written and how far, or a flush of everything up to an offset.</summary>
public sealed record PendingSync(LogSegment Segment, long Position, long FlushUpTo);

/// <summary>Result of a read: whole batches as a file range, and the offsets a fetch response reports.</summary>
public readonly record struct LogReadResult(ErrorCode Error, FileRecords? Records, long HighWatermark, long LogStartOffset, long LogEndOffset);

/// <summary>Options the broker sets for every log (not per topic).</summary>
public sealed record LogOptions
{
    /// <summary>fsync the data of every append before it is acknowledged (Freshet's single-node durability switch).</summary>
    public bool FsyncOnAppend { get; init; }

    /// <summary>producer.id.expiration.ms: idle producers are forgotten after this long.</summary>
    public long ProducerIdExpirationMs { get; init; } = 86_400_000;

    /// <summary>Where deferred fsyncs are done (group commit); without one they run on the thread pool.</summary>
    public LogSyncer? Syncer { get; init; }

    /// <summary>Where the logs given these options report a log directory that failed (shared by all of them).</summary>
    public LogDirFailureChannel Failures { get; init; } = new();

    /// <summary>The file operations that change what is on disk (tests substitute failing or recording ones).</summary>
    internal StorageIo Io { get; init; } = StorageIo.Default;
}

/// <summary>
/// The log of one partition replica (Kafka's UnifiedLog + LocalLog): an ordered list of
/// <see cref="LogSegment"/>s, the log start and end offsets, the high watermark, the recovery point,
/// the producer state for idempotence, and the leader epoch cache (<see cref="LeaderEpochFileCache"/>)
/// that replication's truncation and OffsetForLeaderEpoch rely on. It starts from what
/// <see cref="LogLoader"/> made of its directory (<see cref="Create"/>, <see cref="Open"/>: the files
/// opened and recovered, the offsets and the state rebuilt) and from there appends, reads, rolls,
/// truncates, flushes and applies retention.
///
/// Concurrency: appends, rolls, truncation and segment deletion take <see cref="_lock"/>; reads
/// do not. The segment list is copy-on-write and offsets are read with volatile semantics, so a
/// reader sees a consistent prefix of the log. Validation of a batch's bytes happens before the
/// lock; only offset assignment, producer checks and the write happen under it.
///
/// <para>
/// Failure policy (see <see cref="LogDirFailureChannel"/> for why). A write that fails for a full disk
/// (ENOSPC) fails that append with KAFKA_STORAGE_ERROR; the partial tail is cut off, the log end does
/// not move, and the log stays readable and writable for the next try. Any other failed write, a
/// partial tail that cannot be cut off, and any failed fsync (of data, an index or the directory) take
/// the log's directory offline for good: every log in it then answers KAFKA_STORAGE_ERROR to appends,
/// reads and syncs, its high watermark stops, and nothing written after the last successful fsync is
/// ever counted durable. With fsync per append, where nothing past the durable end was acknowledged,
/// that unsynced tail is also cut from the files, so a restart does not bring back records whose
/// appends were answered with an error.
/// </para>
/// <para>
/// Directory entries: creating the log, a roll, a truncation, retention and the cleaner create, rename
/// and delete files; the next fsync of the log (<see cref="SyncUpTo"/>, <see cref="Flush"/>) fsyncs the
/// directory first (and, for a new log, the log directory holding it), so an acknowledged record never
/// sits in a file whose name a power loss could take back.
/// </para>
/// </summary>
public sealed partial class PartitionLog : IDisposable
{
    private readonly Lock _lock = new();
    private readonly Lock _syncLock = new();
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly Action<LogSegment, long> _scheduleDelete;
    private LogSegment[] _segments;
    private long _logStartOffset;
    private long _logEndOffset;
    private long _highWatermark;
    private long _recoveryPoint;
    private long _unflushedMessages;
    private long _lastFlushMs;
    private LogSegment? _syncedSegment;
    private long _syncedPosition;
    private LogConfig _config;
    private bool _disposed;
    private long _cleanerCheckpoint;
    private readonly LeaderEpochFileCache _epochs;
    private readonly LogDirState _dirState;

    /// <summary>Offsets below this are on disk (fsynced, names included): moved by successful syncs and flushes only.</summary>
    private long _durableEnd;

    /// <summary>1 when a segment file was created, renamed or deleted since the directory was last fsynced.</summary>
    private int _dirSyncPending;

    /// <summary>1 until the directory's own name in the log directory has been fsynced (a new log).</summary>
    private int _parentSyncPending;

    /// <summary>Set once this log has cut its unsynced tail after its directory went offline.</summary>
    private bool _tailCut;

    private PartitionLog(string dir, TopicPartition tp, LogConfig config, LogOptions options, LoadedLog loaded, TimeProvider time, ILogger logger,
        Action<LogSegment, long> scheduleDelete)
    {
        _epochs = loaded.Epochs;
        Dir = dir;
        TopicPartition = tp;
        TopicId = loaded.TopicId;
        _config = config;
        Options = options;
        _segments = loaded.Segments;
        Producers = loaded.Producers;
        _logStartOffset = loaded.LogStartOffset;
        _logEndOffset = loaded.LogEndOffset;
        _recoveryPoint = loaded.RecoveryPoint;
        _highWatermark = loaded.LogStartOffset;
        // What the loader kept counts as on disk (as Kafka counts it): after a process crash it may be in the
        // page cache only, but no append in it was answered with an error (a failed fsync cut the unsynced
        // tail first, unless the disk refused that too).
        _durableEnd = loaded.LogEndOffset;
        // The directory is fsynced with the first sync, for whatever the loader created, deleted or renamed.
        _dirSyncPending = 1;
        _time = time;
        _logger = logger;
        _scheduleDelete = scheduleDelete;
        _lastFlushMs = time.GetUtcNow().ToUnixTimeMilliseconds();
        _dirState = options.Failures.For(Path.GetDirectoryName(LogDirFailureChannel.Normalize(dir)) ?? dir);
    }

    public string Dir { get; private set; }
    public TopicPartition TopicPartition { get; }
    public Uuid TopicId { get; }
    public LogOptions Options { get; }
    public ProducerStateManager Producers { get; }

    /// <summary>The leader epoch cache: where each leader epoch starts in this log.</summary>
    public LeaderEpochFileCache LeaderEpochCache => _epochs;

    /// <summary>The newest leader epoch in the log (or assigned to it by a new leader), -1 when none.</summary>
    public int LatestEpoch => _epochs.LatestEpoch;

    /// <summary>
    /// Where <paramref name="requestedEpoch"/> ended in this log (OffsetForLeaderEpoch, a follower's
    /// truncation): the largest epoch at or below it and its end offset, the log end for the latest
    /// epoch, or (-1, -1) when none is known. See <see cref="LeaderEpochFileCache.EndOffsetFor"/>.
    /// </summary>
    public EpochEndOffset EndOffsetForEpoch(int requestedEpoch) => _epochs.EndOffsetFor(requestedEpoch, LogEndOffset);

    public LogConfig Config
    {
        get => Volatile.Read(ref _config);
        set
        {
            Volatile.Write(ref _config, value);
            foreach (var s in Segments) s.IndexIntervalBytes = value.IndexIntervalBytes;
        }
    }

    public IReadOnlyList<LogSegment> Segments => Volatile.Read(ref _segments);
    public LogSegment ActiveSegment => Segments[^1];
    public long LogStartOffset => Volatile.Read(ref _logStartOffset);
    public long LogEndOffset => Volatile.Read(ref _logEndOffset);
    public long HighWatermark => Volatile.Read(ref _highWatermark);
    public long RecoveryPoint => Volatile.Read(ref _recoveryPoint);
    public long Size => Segments.Sum(s => (long)s.Size);

    /// <summary>
    /// Offsets below this are known to be on disk: what the last successful fsync of the log covered (or
    /// what was there when the log was opened). With fsync per append the leader counts its own log end
    /// only up to here toward the high watermark, and followers fetch only up to here.
    /// </summary>
    public long DurableEndOffset => Volatile.Read(ref _durableEnd);

    /// <summary>The log's directory failed (see <see cref="LogDirFailureChannel"/>): the log refuses appends, reads and syncs until the process restarts.</summary>
    public bool IsOffline => _dirState.IsOffline;

    private StorageIo Io => Options.Io;

    /// <summary>
    /// The log cleaner's checkpoint: the first offset of the dirty section, i.e. everything below it
    /// has been compacted (Kafka's cleaner-offset-checkpoint entry). 0 until the first cleaning; the
    /// cleaner treats a value below the log start offset as the log start offset.
    /// </summary>
    public long CleanerCheckpoint => Volatile.Read(ref _cleanerCheckpoint);

    internal void SetCleanerCheckpoint(long offset) => Volatile.Write(ref _cleanerCheckpoint, Math.Max(0, offset));

    /// <summary>Closed or deleted: a cleaning under way gives up instead of reporting its I/O errors.</summary>
    internal bool IsClosed
    {
        get
        {
            lock (_lock) return _disposed;
        }
    }

    /// <summary>
    /// Earliest delete horizon of a batch the cleaner left holding tombstones: when it passes, the log
    /// needs cleaning to remove them even if it has no dirty data. <see cref="long.MaxValue"/> when there
    /// is none, <see cref="long.MinValue"/> when not yet known (the cleaner then scans the batch headers).
    /// Read and written by the cleaner only, under its lock.
    /// </summary>
    internal long CleanerDeleteHorizon { get; set; } = long.MinValue;

    private long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    // ================================================================ opening

    /// <summary>Creates an empty log in <paramref name="dir"/> (see <see cref="LogLoader.CreateEmpty"/>).</summary>
    public static PartitionLog Create(string dir, TopicPartition tp, Uuid topicId, LogConfig config, LogOptions options,
        TimeProvider time, ILogger logger, Action<LogSegment, long>? scheduleDelete = null)
    {
        var loaded = LogLoader.CreateEmpty(dir, topicId, config, options, time);
        // The names of these files, then the partition directory's own in the log directory, are made durable
        // by the first sync or flush (before the first acknowledgement that relies on them), not here: creating
        // a topic of many partitions (__consumer_offsets has 50) would otherwise pay two directory fsyncs each,
        // most of them for partitions that are never written.
        var log = new PartitionLog(dir, tp, config, options, loaded, time, logger, scheduleDelete ?? DeleteNow);
        log._parentSyncPending = 1;
        return log;
    }

    private static void DeleteNow(LogSegment s, long delayMs) => s.DeleteFiles();

    /// <summary>
    /// Opens an existing log, recovering it after a crash (<see cref="LogLoader.Load"/>): removes leftovers
    /// of interrupted operations, completes interrupted cleaner swaps, loads the segments, recovers every
    /// segment from the recovery point on (or from the first one whose indexes are unusable), truncates a
    /// torn or corrupt tail, deletes segments after a corrupt one, and rebuilds the producer state and the
    /// leader epoch cache from their files and the log.
    /// </summary>
    public static PartitionLog Open(string dir, TopicPartition tp, LogConfig config, LogOptions options, long recoveryPoint,
        long logStartOffsetCheckpoint, bool hadCleanShutdown, TimeProvider time, ILogger logger, Action<LogSegment, long>? scheduleDelete = null)
    {
        var loaded = new LogLoader(dir, tp, config, options, recoveryPoint, logStartOffsetCheckpoint, hadCleanShutdown, time, logger).Load();
        return new PartitionLog(dir, tp, config, options, loaded, time, logger, scheduleDelete ?? DeleteNow);
    }

    /// <summary>Applies a change to the epoch cache; a failed checkpoint write is logged (the cache in memory is right, and recovery repairs the file).</summary>
    private void EpochChange(Func<LeaderEpochFileCache, long, bool> change, long offset)
    {
        try { change(_epochs, offset); }
        catch (IOException e) { LogEpochCheckpointFailed(_logger, TopicPartition, e.Message); }
    }

    private void AssignEpochLocked(int epoch, long startOffset)
    {
        if (epoch < 0 || epoch == _epochs.LatestEpoch) return; // the common case: no change, no allocation
        try { _epochs.Assign(epoch, startOffset); }
        catch (IOException e) { LogEpochCheckpointFailed(_logger, TopicPartition, e.Message); }
    }

    /// <summary>
    /// A new leader records that its epoch starts at the current end of its log (Kafka does this on
    /// becoming leader, before the first append of the epoch), so OffsetForLeaderEpoch for the previous
    /// epoch answers with this offset.
    /// </summary>
    public void AssignEpochStartOffset(int epoch, long startOffset)
    {
        lock (_lock)
        {
            if (_disposed || IsOffline) return;
            AssignEpochLocked(epoch, Math.Min(startOffset, LogEndOffset));
        }
    }

    // ================================================================ append

    /// <summary>
    /// Validates, assigns offsets to and appends the batches of a produce request's record set
    /// (<paramref name="records"/> is modified in place: base offsets, leader epoch, LogAppendTime).
    /// Nothing is stored unless every batch is valid.
    /// </summary>
    /// <param name="deferSync">
    /// When true, an fsync the flush policy requires is not done here but returned in
    /// <see cref="LogAppendResult.Sync"/> for <see cref="SyncAsync"/>, so that a network thread
    /// appending in request order never blocks on the disk.
    /// </param>
    /// <summary>INVALID_RECORD for a batch with keyless records in a compacted topic, with one record error per such record (as Kafka's LogValidator reports them).</summary>
    private LogAppendResult NullKeysRefused(ReadOnlySpan<byte> batchRecords)
    {
        var indexes = new List<int>();
        RecordBatchValidator.FindNullKeys(batchRecords, indexes);
        string message = $"Compacted topic cannot accept message without key in topic partition {TopicPartition}.";
        var errors = indexes.Select(i => (i, message)).ToList();
        string summary = $"One or more records have been rejected due to {errors.Count} record errors in total, and only showing the first three errors at most: ["
            + string.Join(", ", errors.Take(3).Select(e => $"RecordError(batchIndex={e.i}, message='{e.message}')")) + "]";
        return LogAppendResult.Failed(ErrorCode.InvalidRecord, summary, LogStartOffset) with { RecordErrors = errors };
    }

    public LogAppendResult AppendAsLeader(Memory<byte> records, int leaderEpoch, AppendOrigin origin = AppendOrigin.Client, bool deferSync = false)
    {
        var config = Config;
        var span = records.Span;
        // ---- validation, outside the lock
        if (span.Length == 0) return LogAppendResult.Failed(ErrorCode.CorruptMessage, "empty record set", LogStartOffset);
        if (span.Length > config.SegmentBytes)
            return LogAppendResult.Failed(ErrorCode.RecordListTooLarge,
                $"Message batch size is {span.Length} bytes in append to partition {TopicPartition} which exceeds the maximum configured segment size of {config.SegmentBytes}.",
                LogStartOffset);
        int batchCount = 0, recordCount = 0;
        long maxTimestamp = RecordBatch.NoTimestamp;
        long now = NowMs;
        using (var scratch = new PooledBufferWriter())
        {
            int pos = 0;
            while (pos < span.Length)
            {
                int size = RecordBatch.PeekSize(span[pos..]);
                if (size < RecordBatch.HeaderSize || size > span.Length - pos)
                    return LogAppendResult.Failed(ErrorCode.CorruptMessage, $"record batch at byte {pos} has an invalid length", LogStartOffset);
                var batch = span.Slice(pos, size);
                if (size > config.MaxMessageBytes)
                    return LogAppendResult.Failed(ErrorCode.MessageTooLarge,
                        $"The record batch size in the append to {TopicPartition} is {size} bytes which exceeds the maximum configured value of {config.MaxMessageBytes}.",
                        LogStartOffset);
                var v = RecordBatchValidator.Validate(batch, scratch);
                if (v.Error != ErrorCode.None)
                    return LogAppendResult.Failed(v.Error, v.Message ?? $"invalid record batch in append to {TopicPartition}", LogStartOffset);
                var rb = new RecordBatch(batch);
                if (rb.IsControl && origin == AppendOrigin.Client)
                    return LogAppendResult.Failed(ErrorCode.InvalidRecord, "clients may not write control batches", LogStartOffset);
                // Kafka's rule: compaction keeps the latest record per key, so a record without one has no
                // place in a compacted topic. Refused for the whole request, nothing stored; each keyless
                // record is named by its index in the batch so the producer fails just those.
                if (v.HasNullKey && config.Compact && origin == AppendOrigin.Client)
                    return NullKeysRefused(rb.Compression == CompressionType.None ? rb.Records : scratch.WrittenSpan);
                if (config.MessageTimestampType == TimestampType.CreateTime && rb.TimestampType == TimestampType.CreateTime)
                {
                    long maxTs = v.MaxTimestamp;
                    if (rb.BaseTimestamp >= 0 && now - rb.BaseTimestamp > config.MessageTimestampBeforeMaxMs
                        || maxTs >= 0 && maxTs - now > config.MessageTimestampAfterMaxMs)
                        return LogAppendResult.Failed(ErrorCode.InvalidTimestamp,
                            $"Timestamp of a record in {TopicPartition} is out of the range allowed by message.timestamp.before.max.ms/after.max.ms", LogStartOffset);
                    if (v.MaxTimestampMismatch) RecordBatch.SetMaxTimestamp(records.Span.Slice(pos, size), maxTs);
                }
                batchCount++;
                recordCount += v.RecordCount;
                maxTimestamp = Math.Max(maxTimestamp, v.MaxTimestamp);
                pos += size;
            }
        }

        LogAppendResult result;
        LogSegment written;
        long endPosition;
        bool flushByCount;
        lock (_lock)
        {
            if (_disposed) return LogAppendResult.Failed(ErrorCode.NotLeaderOrFollower, "log is closed", LogStartOffset);
            if (IsOffline) return OfflineResult();
            span = records.Span;
            // ---- producer checks: a duplicate of a batch already in the log gets its offsets back
            if (origin == AppendOrigin.Client)
            {
                int pos = 0;
                while (pos < span.Length)
                {
                    var b = new RecordBatch(span[pos..]);
                    if (b.HasProducerId)
                    {
                        var check = Producers.Check(b.ProducerId, b.ProducerEpoch, b.BaseSequence, b.LastSequence);
                        if (check.Error != ErrorCode.None) return LogAppendResult.Failed(check.Error, check.Message, LogStartOffset);
                        if (check.Duplicate is { } d)
                        {
                            if (batchCount != 1)
                                return LogAppendResult.Failed(ErrorCode.DuplicateSequenceNumber, "duplicate batch inside a multi-batch append", LogStartOffset);
                            return new LogAppendResult(ErrorCode.None, null, d.FirstOffset, d.LastOffset, -1, LogStartOffset, 0, true);
                        }
                    }
                    pos += b.SizeInBytes;
                }
            }

            // ---- offsets, epoch and timestamps, in place
            long first = _logEndOffset;
            long next = first;
            long appendTime = config.MessageTimestampType == TimestampType.LogAppendTime ? NowMs : -1;
            {
                int pos = 0;
                while (pos < span.Length)
                {
                    var batch = span.Slice(pos, RecordBatch.PeekSize(span[pos..]));
                    RecordBatch.SetBaseOffset(batch, next);
                    RecordBatch.SetPartitionLeaderEpoch(batch, leaderEpoch);
                    if (appendTime >= 0) RecordBatch.SetLogAppendTime(batch, appendTime);
                    next += new RecordBatch(batch).LastOffsetDelta + 1;
                    pos += batch.Length;
                }
            }

            // ---- write
            try
            {
                var seg = MaybeRoll(span.Length, next - 1, appendTime >= 0 ? appendTime : maxTimestamp);
                seg.Append(span);
                written = seg;
                endPosition = seg.Size;
            }
            catch (IOException e)
            {
                return WriteFailedLocked(e);
            }

            // ---- producer state and offsets
            if (origin != AppendOrigin.Replication)
            {
                int pos = 0;
                while (pos < span.Length)
                {
                    var b = new RecordBatch(span[pos..]);
                    if (b.HasProducerId && !b.IsControl)
                        Producers.Update(b.ProducerId, b.ProducerEpoch, b.BaseSequence, b.LastSequence, b.BaseOffset, b.LastOffset,
                            appendTime >= 0 ? appendTime : b.MaxTimestamp);
                    pos += b.SizeInBytes;
                }
            }
            AssignEpochLocked(leaderEpoch, first);
            Producers.SetMapEndOffset(next);
            Volatile.Write(ref _logEndOffset, next);
            _unflushedMessages += recordCount;
            flushByCount = _unflushedMessages >= config.FlushMessages;
            result = new LogAppendResult(ErrorCode.None, null, first, next - 1, appendTime, LogStartOffset, recordCount, false);
        }

        // ---- durability, outside the lock so concurrent appends share one fsync
        if (!flushByCount && !Options.FsyncOnAppend) return result;
        var sync = new PendingSync(written, endPosition, flushByCount ? result.LastOffset + 1 : -1);
        if (deferSync) return result with { Sync = sync };
        return Sync(result, sync);
    }

    /// <summary>
    /// Appends batches a follower fetched from its leader, exactly as the leader wrote them: offsets,
    /// leader epochs and timestamps are the leader's and the bytes are not rewritten. Each batch's
    /// structure and CRC are checked (the records are not decompressed), offsets must increase from
    /// batch to batch and start at or past the log end (a gap is legal: the leader's cleaner may
    /// have removed whole batches). A partial batch at the end of the data (a fetch cut off by its
    /// size limit) is ignored. The producer state and the leader epoch cache are updated, so
    /// idempotent producers keep their sequence checks when this replica becomes the leader.
    /// </summary>
    public LogAppendResult AppendAsFollower(ReadOnlyMemory<byte> records)
    {
        var span = records.Span;
        int pos = 0, recordCount = 0;
        long first = -1, next = -1;
        while (pos + RecordBatch.LogOverhead <= span.Length)
        {
            int size = RecordBatch.PeekSize(span[pos..]);
            if (size < RecordBatch.HeaderSize) return FollowerAppendFailed($"record batch at byte {pos} has an invalid length {size}");
            if (size > span.Length - pos) break; // partial tail
            var b = new RecordBatch(span.Slice(pos, size));
            if (b.Magic != RecordBatch.CurrentMagic) return FollowerAppendFailed($"record batch at byte {pos} has magic {b.Magic}");
            if (!b.IsCrcValid) return FollowerAppendFailed($"record batch at offset {b.BaseOffset} has a bad CRC");
            if (b.LastOffsetDelta < 0 || b.RecordsCount < 0) return FollowerAppendFailed($"record batch at offset {b.BaseOffset} has a negative count");
            if (next >= 0 && b.BaseOffset < next) return FollowerAppendFailed($"offsets out of order: batch at {b.BaseOffset} after one ending at {next - 1}");
            if (first < 0) first = b.BaseOffset;
            next = b.NextOffset;
            recordCount += b.RecordsCount;
            pos += size;
        }
        if (pos == 0) return FollowerAppendFailed("no whole record batch to append");
        span = span[..pos];

        LogSegment written;
        long endPosition;
        bool flushByCount;
        LogAppendResult result;
        lock (_lock)
        {
            if (_disposed) return LogAppendResult.Failed(ErrorCode.NotLeaderOrFollower, "log is closed", LogStartOffset);
            if (IsOffline) return OfflineResult();
            if (first < _logEndOffset)
                return FollowerAppendFailed($"first offset {first} is below the log end offset {_logEndOffset}", ErrorCode.OffsetOutOfRange);
            var config = Config;
            try
            {
                // Whole batches in runs that fit the active segment; each run rolls first if needed
                // (at its own first offset) and updates the producer state before the next roll's snapshot.
                int runStart = 0, p = 0;
                while (p < span.Length)
                {
                    int size = RecordBatch.PeekSize(span[p..]);
                    if (p > runStart && ActiveSegment.Size + (long)(p + size - runStart) > config.SegmentBytes)
                    {
                        AppendFollowerRun(span[runStart..p]);
                        runStart = p;
                    }
                    p += size;
                }
                written = AppendFollowerRun(span[runStart..]);
                endPosition = written.Size;
            }
            catch (IOException e)
            {
                // Runs written before the failure stay: the log end covers them (not yet synced, as any append before its sync).
                return WriteFailedLocked(e);
            }
            _unflushedMessages += recordCount;
            flushByCount = _unflushedMessages >= config.FlushMessages;
            result = new LogAppendResult(ErrorCode.None, null, first, next - 1, -1, LogStartOffset, recordCount, false);
        }
        if (!flushByCount && !Options.FsyncOnAppend) return result;
        return Sync(result, new PendingSync(written, endPosition, flushByCount ? next : -1));
    }

    /// <summary>Writes one run of a follower append and applies it: producer state, epoch cache, log end. Under the lock.</summary>
    private LogSegment AppendFollowerRun(ReadOnlySpan<byte> run)
    {
        long runFirst = new RecordBatch(run).BaseOffset, runLast = -1, maxTs = RecordBatch.NoTimestamp;
        for (int p = 0; p < run.Length;)
        {
            var b = new RecordBatch(run[p..]);
            runLast = b.LastOffset;
            maxTs = Math.Max(maxTs, b.MaxTimestamp);
            p += b.SizeInBytes;
        }
        var seg = MaybeRoll(run.Length, runLast, maxTs, rollAt: runFirst);
        seg.Append(run);
        for (int p = 0; p < run.Length;)
        {
            var b = new RecordBatch(run[p..]);
            if (b.HasProducerId && !b.IsControl)
                Producers.Update(b.ProducerId, b.ProducerEpoch, b.BaseSequence, b.LastSequence, b.BaseOffset, b.LastOffset, b.MaxTimestamp);
            AssignEpochLocked(b.PartitionLeaderEpoch, b.BaseOffset);
            p += b.SizeInBytes;
        }
        Producers.SetMapEndOffset(runLast + 1);
        Volatile.Write(ref _logEndOffset, runLast + 1);
        return seg;
    }

    private LogAppendResult FollowerAppendFailed(string reason, ErrorCode error = ErrorCode.CorruptMessage)
    {
        LogFollowerAppendRefused(_logger, TopicPartition, reason);
        return LogAppendResult.Failed(error, reason, LogStartOffset);
    }

    /// <summary>Does the fsync an append deferred, on a thread-pool thread; the result's error tells whether it worked.</summary>
    public Task<LogAppendResult> SyncAsync(LogAppendResult result)
    {
        if (result.Sync is null) return Task.FromResult(result);
        return Options.Syncer is { } syncer ? syncer.Enqueue(this, result) : Task.Run(() => SyncNow(result));
    }

    /// <summary>Does a deferred fsync on the calling thread.</summary>
    public LogAppendResult SyncNow(LogAppendResult result) =>
        result.Sync is { } sync ? Sync(result with { Sync = null }, sync) : result;

    private LogAppendResult Sync(LogAppendResult result, PendingSync sync)
    {
        try
        {
            if (sync.FlushUpTo >= 0) Flush(sync.FlushUpTo);
            else SyncUpTo(sync.Segment, sync.Position);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            LogAppendFailed(_logger, TopicPartition, e.Message);
            return LogAppendResult.Failed(ErrorCode.KafkaStorageError, $"Disk error while syncing {TopicPartition}: {e.Message}", LogStartOffset);
        }
        return result;
    }

    /// <summary>
    /// fsyncs <paramref name="segment"/>'s data unless a concurrent sync already covered <paramref name="position"/>,
    /// and moves the durable end over what it covered. A sync in a segment the previous one did not cover
    /// first flushes the segments before it (a roll leaves the old segment's tail to a background flush, and a
    /// sync of the new segment alone must not count offsets below it as durable), and every sync first fsyncs
    /// the directory when segment files came or went since the last. A failure takes the directory offline.
    /// </summary>
    private void SyncUpTo(LogSegment segment, long position)
    {
        lock (_syncLock)
        {
            if (IsOffline) throw OfflineLocked();
            if (ReferenceEquals(_syncedSegment, segment) && _syncedPosition >= position) return;
            // What the sync covers: everything written before it starts. Read without the append lock, in the
            // order appends publish in reverse (an append writes its bytes, then the segment's size, then the log
            // end; a roll publishes the new segment before anything is appended to it): every batch below the
            // log end read first lies in this segment or an older one, within the size read last.
            long leo = LogEndOffset;
            var segs = Volatile.Read(ref _segments);
            int covered = segment.Size;
            long coveredEnd = EndOffsetOf(segs, segment, leo);
            try
            {
                if (!ReferenceEquals(_syncedSegment, segment) && segment.BaseOffset > RecoveryPoint) FlushSegmentsLocked(segment.BaseOffset);
                SyncDirectoryIfPending();
                segment.SyncData();
            }
            catch (Exception e) when (e is IOException && !_disposed)
            {
                throw FailLocked(e, "fsync");
            }
            _syncedSegment = segment;
            _syncedPosition = covered;
            // Never past the log end (a truncation meanwhile).
            coveredEnd = Math.Min(coveredEnd, LogEndOffset);
            if (coveredEnd > _durableEnd) Volatile.Write(ref _durableEnd, coveredEnd);
        }
    }

    /// <summary>
    /// Where the data of <paramref name="segment"/> ends as far as a sync can count it: <paramref name="leo"/>
    /// for the active segment, the next one's base for a rolled one, -1 when it left the log.
    /// </summary>
    private static long EndOffsetOf(LogSegment[] segs, LogSegment segment, long leo)
    {
        for (int i = segs.Length - 1; i >= 0; i--)
        {
            if (!ReferenceEquals(segs[i], segment)) continue;
            return i == segs.Length - 1 ? leo : segs[i + 1].BaseOffset;
        }
        return -1;
    }

    /// <summary>
    /// fsyncs the log's directory if segment files were created, renamed or deleted since it last was, and
    /// for a new log its parent, the log directory, once. Under the sync lock.
    /// </summary>
    private void SyncDirectoryIfPending()
    {
        if (Volatile.Read(ref _dirSyncPending) == 0 || Interlocked.Exchange(ref _dirSyncPending, 0) == 0) return;
        try
        {
            Io.FsyncDirectory(Dir);
            if (_parentSyncPending != 0)
            {
                Io.FsyncDirectory(Path.GetDirectoryName(LogDirFailureChannel.Normalize(Dir)) ?? Dir);
                _parentSyncPending = 0;
            }
        }
        catch (IOException)
        {
            Volatile.Write(ref _dirSyncPending, 1);
            throw;
        }
    }

    /// <summary>Notes that a segment file was created, renamed or deleted: the next sync or flush fsyncs the directory first.</summary>
    private void DirectoryChanged() => Volatile.Write(ref _dirSyncPending, 1);

    /// <summary>
    /// An append's write failed (the segment cut its partial tail, or said it could not). A full disk
    /// leaves the log as it was and fails only this append; anything else takes the directory offline.
    /// Under the lock.
    /// </summary>
    private LogAppendResult WriteFailedLocked(IOException e)
    {
        LogAppendFailed(_logger, TopicPartition, e.Message);
        if (!StorageIo.IsDiskFull(e) || e is TornWriteException) MarkOffline(e, "write");
        return LogAppendResult.Failed(ErrorCode.KafkaStorageError, $"Disk error while appending to {TopicPartition}: {e.Message}", LogStartOffset);
    }

    private LogAppendResult OfflineResult() =>
        LogAppendResult.Failed(ErrorCode.KafkaStorageError, $"The log directory of {TopicPartition} is offline: {_dirState.Failure}", LogStartOffset);

    private void MarkOffline(Exception e, string what)
    {
        if (_dirState.MarkOffline($"{what} of {TopicPartition} failed: {e.Message}")) LogDirOffline(_logger, TopicPartition, _dirState.Path, what, e.Message);
    }

    /// <summary>The exception a sync or flush throws once the directory is offline; cuts this log's unsynced tail first. Under the sync lock.</summary>
    private IOException OfflineLocked()
    {
        CutUnsyncedTailLocked();
        return new IOException($"the log directory of {TopicPartition} is offline: {_dirState.Failure}");
    }

    /// <summary>A sync or flush failed: the directory goes offline, and this log's unsynced tail is cut. Under the sync lock.</summary>
    private IOException FailLocked(Exception e, string what)
    {
        MarkOffline(e, what);
        CutUnsyncedTailLocked();
        return e as IOException ?? new IOException(e.Message, e);
    }

    /// <summary>
    /// With fsync per append, cuts everything past the durable end from the files, once: no append there was
    /// acknowledged, and every one of them is (or will be) answered with an error, so a restart must not bring
    /// them back as valid batches. Without fsync per append the tail stays: acks=1 and replicated appends
    /// there were acknowledged from the page cache, and a restart recovers what is intact. Best effort: a
    /// disk that refuses the truncation too leaves it to recovery. Under the sync lock (then the append lock).
    /// </summary>
    private void CutUnsyncedTailLocked()
    {
        if (_tailCut || !Options.FsyncOnAppend) return;
        lock (_lock)
        {
            if (_tailCut || _disposed) return;
            _tailCut = true;
            long end = _durableEnd;
            if (end >= _logEndOffset) return;
            var segs = _segments;
            // Segments wholly past the end go (as a truncation removes them: renamed to .deleted, which the next
            // start deletes), so that a restart finds the log ending at the durable end, not at an empty
            // segment's base with a gap before it; the one holding the end is cut there.
            int keep = segs.Length;
            while (keep > 1 && segs[keep - 1].BaseOffset >= end) keep--;
            try
            {
                for (int i = segs.Length - 1; i >= keep; i--)
                {
                    segs[i].MarkDeleted();
                    _scheduleDelete(segs[i], Config.FileDeleteDelayMs);
                }
                segs[keep - 1].TruncateTo(end);
                LogTailCut(_logger, TopicPartition, end, _logEndOffset);
            }
            catch (IOException e)
            {
                LogTailCutFailed(_logger, TopicPartition, end, e.Message);
            }
            Volatile.Write(ref _segments, segs[..keep]);
            // Nothing past the durable end is served or counted any more (the log refuses everything anyway).
            Volatile.Write(ref _logEndOffset, end);
            if (HighWatermark > end) Volatile.Write(ref _highWatermark, end);
        }
    }

    /// <summary>Rolls a new active segment when the next append would not fit (Kafka's shouldRoll). Under the lock.</summary>
    /// <remarks>
    /// A segment's age for segment.ms is measured in record time, as Kafka does: the incoming
    /// batches' largest timestamp minus the first batch's timestamp; wall-clock time since the
    /// segment was created only when the segment has no timestamped batch. (Wall-clock "now minus
    /// first timestamp" would roll on every append for a producer whose clock lags segment.ms.)
    /// </remarks>
    private LogSegment MaybeRoll(int bytes, long lastOffset, long incomingMaxTimestamp, long rollAt = -1)
    {
        var config = Config;
        var active = ActiveSegment;
        long age = active.FirstBatchTimestamp >= 0 && incomingMaxTimestamp >= 0
            ? incomingMaxTimestamp - active.FirstBatchTimestamp
            : NowMs - active.CreatedMs;
        bool full = active.Size > config.SegmentBytes - bytes;
        // A compacted log also rolls by max.compaction.lag.ms (as Kafka does): the cleaner never touches
        // the active segment, so without the roll its records could stay uncompacted past the bound.
        long segmentMs = config.Compact ? Math.Min(config.SegmentMs, config.MaxCompactionLagMs) : config.SegmentMs;
        bool old = active.Size > 0 && age > segmentMs - config.SegmentJitterMs;
        bool indexFull = active.OffsetIndex.IsFull || active.TimeIndex.IsFull;
        bool overflow = lastOffset - active.BaseOffset > int.MaxValue;
        if (active.Size == 0 || !(full || old || indexFull || overflow)) return active;
        return RollLocked(rollAt >= 0 ? rollAt : LogEndOffset);
    }

    /// <summary>
    /// Starts a new active segment at <paramref name="baseOffset"/>; the old one is flushed in the background.
    /// The new file's name becomes durable with the next sync or flush (the directory fsync it owes), not here
    /// under the append lock.
    /// </summary>
    private LogSegment RollLocked(long baseOffset)
    {
        var config = Config;
        var old = ActiveSegment;
        old.Flush(fsync: false);
        var seg = LogSegment.Create(Io, Dir, baseOffset, config.IndexIntervalBytes, config.SegmentIndexBytes, NowMs);
        DirectoryChanged();
        Volatile.Write(ref _segments, [.. _segments, seg]);
        Producers.SetMapEndOffset(baseOffset);
        // Not fsynced here, under the append lock: a snapshot lost to a crash (or cut by its CRC check) only
        // makes recovery replay the log from an older one.
        try { Producers.TakeSnapshot(fsync: false); }
        catch (IOException e) { LogSnapshotFailed(_logger, TopicPartition, e.Message); }
        LogRolled(_logger, TopicPartition, baseOffset);
        // Kafka flushes the rolled segment asynchronously, which moves the recovery point so that
        // crash recovery only needs to scan the new active segment.
        _ = Task.Run(() =>
        {
            try { Flush(baseOffset); }
            catch (Exception e) when (e is IOException or ObjectDisposedException) { LogFlushFailed(_logger, TopicPartition, e.Message); }
        });
        return seg;
    }

    /// <summary>Rolls now (tests, DeleteRecords of the whole log, retention of the active segment).</summary>
    public void Roll()
    {
        lock (_lock)
        {
            if (_disposed || IsOffline) return;
            if (ActiveSegment.Size > 0) RollLocked(LogEndOffset);
        }
    }

    // ================================================================ flush

    /// <summary>
    /// fsyncs every segment holding offsets below <paramref name="upToExclusive"/> and their indexes (and the
    /// directory, when segment files came or went), then moves the recovery point and the durable end there
    /// (segments below the recovery point are not scanned after a crash). A failure takes the directory offline.
    /// </summary>
    public void Flush(long upToExclusive)
    {
        if (upToExclusive <= RecoveryPoint && Volatile.Read(ref _dirSyncPending) == 0) return;
        lock (_syncLock)
        {
            if (IsOffline) throw OfflineLocked();
            try
            {
                FlushSegmentsLocked(upToExclusive);
                SyncDirectoryIfPending();
            }
            catch (Exception e) when (e is IOException && !_disposed)
            {
                throw FailLocked(e, "flush");
            }
        }
        lock (_lock) _unflushedMessages = 0;
        _lastFlushMs = NowMs;
    }

    /// <summary>The fsyncs of <see cref="Flush"/>; moves the recovery point and the durable end. Under the sync lock.</summary>
    private void FlushSegmentsLocked(long upToExclusive)
    {
        long from = RecoveryPoint;
        if (upToExclusive <= from) return;
        var segs = Segments;
        for (int i = 0; i < segs.Count; i++)
        {
            long nextBase = i + 1 < segs.Count ? segs[i + 1].BaseOffset : long.MaxValue;
            if (nextBase <= from || segs[i].BaseOffset >= upToExclusive) continue;
            segs[i].Flush(fsync: true);
        }
        _syncedSegment = null;
        long end = Math.Min(upToExclusive, LogEndOffset);
        if (end > Volatile.Read(ref _recoveryPoint)) Volatile.Write(ref _recoveryPoint, end);
        if (end > _durableEnd) Volatile.Write(ref _durableEnd, end);
    }

    /// <summary>Flushes when flush.ms has passed since the last flush (the log manager's periodic task).</summary>
    public void FlushIfDue(long nowMs)
    {
        if (IsOffline) return;
        if (LogEndOffset > RecoveryPoint && nowMs - _lastFlushMs >= Config.FlushMs) Flush(LogEndOffset);
    }

    // ================================================================ read

    /// <summary>
    /// Reads whole batches from <paramref name="offset"/>, up to <paramref name="maxBytes"/> (at least one
    /// batch when <paramref name="minOneBatch"/>), stopping before <paramref name="maxOffsetExclusive"/>
    /// (the high watermark for consumers, the end of the log for followers).
    /// </summary>
    public LogReadResult Read(long offset, int maxBytes, long maxOffsetExclusive, bool minOneBatch)
    {
        long start = LogStartOffset, end = LogEndOffset, hw = HighWatermark;
        // An offline directory serves nothing (Kafka answers KAFKA_STORAGE_ERROR for its partitions).
        if (IsOffline) return new LogReadResult(ErrorCode.KafkaStorageError, null, hw, start, end);
        if (offset < start || offset > end)
            return new LogReadResult(ErrorCode.OffsetOutOfRange, null, hw, start, end);
        long limit = Math.Min(maxOffsetExclusive, end);
        if (offset >= limit) return new LogReadResult(ErrorCode.None, null, hw, start, end);
        var segs = Segments;
        for (int i = FloorSegmentIndex(segs, offset); i >= 0 && i < segs.Count; i++)
        {
            var r = segs[i].Read(offset, maxBytes, limit, minOneBatch);
            if (r is not null && r.Length > 0) return new LogReadResult(ErrorCode.None, r, hw, start, end);
            if (r is not null) return new LogReadResult(ErrorCode.None, r, hw, start, end); // zero-length: first batch bigger than maxBytes
        }
        return new LogReadResult(ErrorCode.None, null, hw, start, end);
    }

    private static int FloorSegmentIndex(IReadOnlyList<LogSegment> segs, long offset)
    {
        int lo = 0, hi = segs.Count - 1, found = 0;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (segs[mid].BaseOffset <= offset) { found = mid; lo = mid + 1; }
            else hi = mid - 1;
        }
        return found;
    }

    /// <summary>Reads every batch from <paramref name="offset"/> to the end into memory (cold paths: metadata replay, tools, tests).</summary>
    public IEnumerable<byte[]> ReadBatches(long offset, long maxOffsetExclusive = long.MaxValue)
    {
        long next = Math.Max(offset, LogStartOffset);
        while (true)
        {
            var r = Read(next, 1 << 20, maxOffsetExclusive, minOneBatch: true);
            if (r.Error != ErrorCode.None || r.Records is null || r.Records.Length == 0) yield break;
            var bytes = r.Records.ReadAll();
            int pos = 0;
            while (pos + RecordBatch.LogOverhead <= bytes.Length)
            {
                int size = RecordBatch.PeekSize(bytes.AsSpan(pos));
                var batch = bytes.AsSpan(pos, size).ToArray();
                next = new RecordBatch(batch).NextOffset;
                yield return batch;
                pos += size;
            }
        }
    }

    // ================================================================ offsets by time

    /// <summary>
    /// The first offset whose record timestamp is at or after <paramref name="timestamp"/> (ListOffsets
    /// by time), with that record's timestamp; null when every record is older.
    /// </summary>
    public (long Offset, long Timestamp)? FindOffsetByTimestamp(long timestamp)
    {
        long start = LogStartOffset, hw = HighWatermark;
        foreach (var seg in Segments)
        {
            if (seg.MaxTimestamp < timestamp || seg.Size == 0) continue;
            var (_, hintOffset) = seg.TimeIndex.Lookup(timestamp);
            var (_, pos) = seg.OffsetIndex.Lookup(Math.Max(hintOffset, start));
            int limit = seg.Size;
            while (seg.ReadHeader(pos, limit) is { } h)
            {
                if (h.BaseOffset >= hw) return null;
                if (h.MaxTimestamp >= timestamp && h.LastOffset >= start)
                {
                    var bytes = new byte[h.Size];
                    seg.ReadExactly(h.Position, bytes);
                    var found = FirstRecordAtOrAfter(bytes, timestamp, start);
                    if (found is not null) return found;
                }
                pos += h.Size;
            }
        }
        return null;
    }

    private static (long Offset, long Timestamp)? FirstRecordAtOrAfter(byte[] batch, long timestamp, long minOffset)
    {
        var b = new RecordBatch(batch);
        // A batch the cleaner emptied (kept for its producer's state) holds no record to find.
        if (b.RecordsCount == 0) return null;
        if (b.TimestampType == TimestampType.LogAppendTime)
            return b.MaxTimestamp >= timestamp ? (FirstOffsetAtOrAfter(batch, minOffset), b.MaxTimestamp) : null;
        using var scratch = new PooledBufferWriter();
        foreach (var r in new BatchRecords(batch, scratch))
        {
            if (r.Offset >= minOffset && r.Timestamp >= timestamp) return (r.Offset, r.Timestamp);
        }
        return null;
    }

    /// <summary>
    /// The offset of the batch's first record at or after <paramref name="minOffset"/>. Without gaps in
    /// its offsets (every batch but one the cleaner thinned) that is arithmetic; otherwise the records say.
    /// </summary>
    private static long FirstOffsetAtOrAfter(byte[] batch, long minOffset)
    {
        var b = new RecordBatch(batch);
        if (b.RecordsCount == b.LastOffsetDelta + 1) return Math.Max(b.BaseOffset, minOffset);
        using var scratch = new PooledBufferWriter();
        foreach (var r in new BatchRecords(batch, scratch))
            if (r.Offset >= minOffset) return r.Offset;
        return Math.Max(b.BaseOffset, minOffset);
    }

    /// <summary>The offset and timestamp of the record with the largest timestamp (ListOffsets MAX_TIMESTAMP).</summary>
    public (long Offset, long Timestamp)? FindMaxTimestamp()
    {
        long best = RecordBatch.NoTimestamp, offset = -1;
        foreach (var seg in Segments)
        {
            if (seg.MaxTimestamp > best && seg.OffsetOfMaxTimestamp < HighWatermark)
            {
                best = seg.MaxTimestamp;
                offset = seg.OffsetOfMaxTimestamp;
            }
        }
        if (offset < 0) return null;
        // The index keeps the batch's last offset; find the exact record inside that batch.
        foreach (var seg in Segments)
        {
            if (seg.OffsetOfMaxTimestamp != offset || seg.MaxTimestamp != best) continue;
            if (seg.FindBatch(offset, seg.Size) is not { } h) break;
            var bytes = new byte[h.Size];
            seg.ReadExactly(h.Position, bytes);
            var b = new RecordBatch(bytes);
            if (b.TimestampType == TimestampType.LogAppendTime && b.RecordsCount > 0) return (FirstOffsetAtOrAfter(bytes, b.BaseOffset), b.MaxTimestamp);
            using var scratch = new PooledBufferWriter();
            foreach (var r in new BatchRecords(bytes, scratch))
                if (r.Timestamp == best) return (r.Offset, r.Timestamp);
            break;
        }
        return (offset, best);
    }

    // ================================================================ high watermark, log start, retention

    /// <summary>Moves the high watermark (never past the end of the log, never backwards unless <paramref name="force"/>).</summary>
    public bool UpdateHighWatermark(long hw, bool force = false)
    {
        // Once the directory is offline nothing more becomes committed here.
        if (IsOffline) return false;
        hw = Math.Clamp(hw, LogStartOffset, LogEndOffset);
        long cur = HighWatermark;
        if (hw == cur || hw < cur && !force) return false;
        Volatile.Write(ref _highWatermark, hw);
        return true;
    }

    /// <summary>DeleteRecords: moves the log start offset forward (at most to the high watermark) and drops whole segments below it.</summary>
    public ErrorCode DeleteRecordsBefore(long offset, out long newLogStart)
    {
        lock (_lock)
        {
            newLogStart = LogStartOffset;
            if (IsOffline) return ErrorCode.KafkaStorageError;
            if (offset > HighWatermark || offset < 0) return ErrorCode.OffsetOutOfRange;
            if (offset > LogStartOffset)
            {
                Volatile.Write(ref _logStartOffset, offset);
                Producers.OnLogStartOffsetIncremented(offset);
                EpochChange(static (c, o) => c.TruncateFromStart(o), offset);
            }
            newLogStart = LogStartOffset;
        }
        DeleteOldSegments(NowMs);
        return ErrorCode.None;
    }

    /// <summary>
    /// Deletes segments by retention.ms, retention.bytes (delete policy) and the log start offset;
    /// only segments wholly below the high watermark. The active segment may go too (a new one is
    /// rolled first), as Kafka does. Returns the number of segments deleted.
    /// </summary>
    public int DeleteOldSegments(long nowMs)
    {
        var config = Config;
        lock (_lock)
        {
            if (_disposed || IsOffline) return 0;
            var segs = _segments;
            long hw = HighWatermark;
            long total = segs.Sum(s => (long)s.Size);
            long excess = config.Delete && config.RetentionBytes >= 0 ? total - config.RetentionBytes : long.MinValue;
            int delete = 0;
            for (int i = 0; i < segs.Length; i++)
            {
                var s = segs[i];
                bool isLast = i == segs.Length - 1;
                long upper = isLast ? LogEndOffset : segs[i + 1].BaseOffset;
                if (isLast && s.Size == 0 || upper > hw) break;
                bool byStart = !isLast && segs[i + 1].BaseOffset <= LogStartOffset;
                long ts = s.MaxTimestamp >= 0 ? s.MaxTimestamp : s.LastModifiedMs;
                bool byTime = config.Delete && config.RetentionMs >= 0 && nowMs - ts > config.RetentionMs;
                bool bySize = excess != long.MinValue && excess - s.Size >= 0;
                if (!(byStart || byTime || bySize)) break;
                // Every deleted segment shrinks the log, whatever the reason it goes for: Kafka applies
                // the policies one after the other, re-measuring the size in between, so a segment
                // dropped by age or log start counts toward retention.bytes too. (Decrementing only
                // for size-deleted segments deleted more than retention.bytes required.)
                if (excess != long.MinValue) excess -= s.Size;
                delete++;
            }
            if (delete == 0) return 0;
            if (delete == segs.Length) RollLocked(LogEndOffset);
            var keep = _segments[delete..];
            var gone = _segments[..delete];
            Volatile.Write(ref _segments, keep);
            long newStart = Math.Max(LogStartOffset, keep[0].BaseOffset);
            Volatile.Write(ref _logStartOffset, newStart);
            Producers.OnLogStartOffsetIncremented(newStart);
            EpochChange(static (c, o) => c.TruncateFromStart(o), newStart);
            if (RecoveryPoint < newStart) Volatile.Write(ref _recoveryPoint, newStart);
            if (HighWatermark < newStart) Volatile.Write(ref _highWatermark, newStart);
            foreach (var s in gone)
            {
                LogSegmentDeleted(_logger, TopicPartition, s.BaseOffset);
                try { s.MarkDeleted(); }
                catch (IOException e) { LogFlushFailed(_logger, TopicPartition, e.Message); }
                _scheduleDelete(s, Config.FileDeleteDelayMs);
            }
            DirectoryChanged();
            return gone.Length;
        }
    }

    /// <summary>Removes idle producers (producer.id.expiration.ms).</summary>
    public int RemoveExpiredProducers(long nowMs)
    {
        lock (_lock) return Producers.RemoveExpired(nowMs);
    }

    // ================================================================ truncation (replication)

    /// <summary>
    /// Removes everything at or past <paramref name="offset"/> (a follower's divergent tail), whole
    /// batches only, and leaves the rest consistent: indexes, leader epoch cache, producer state
    /// (reloaded from a snapshot below the cut and replayed), high watermark and recovery point.
    /// </summary>
    public void TruncateTo(long offset)
    {
        lock (_lock)
        {
            if (IsOffline) throw new IOException($"the log directory of {TopicPartition} is offline: {_dirState.Failure}");
            if (offset >= LogEndOffset)
            {
                // Nothing to cut, but a replica that led without appending left its epoch at the log end:
                // that entry conflicts with the new leader's log and goes (as Kafka does).
                EpochChange(static (c, o) => c.TruncateFromEnd(o), LogEndOffset);
                return;
            }
            offset = Math.Max(offset, LogStartOffset);
            var segs = _segments.ToList();
            try
            {
                while (segs.Count > 1 && segs[^1].BaseOffset >= offset)
                {
                    var s = segs[^1];
                    segs.RemoveAt(segs.Count - 1);
                    s.MarkDeleted();
                    DirectoryChanged();
                    _scheduleDelete(s, Config.FileDeleteDelayMs);
                }
                if (segs[^1].BaseOffset > offset) segs[^1].TruncateTo(segs[^1].BaseOffset);
                else segs[^1].TruncateTo(offset);
            }
            catch (IOException e)
            {
                // Half a truncation: the files no longer match the log in memory.
                MarkOffline(e, "truncation");
                throw;
            }
            Volatile.Write(ref _segments, segs.ToArray());
            // The end is where the remaining batches end (at or below the target: a batch straddling it goes too).
            Volatile.Write(ref _logEndOffset, segs[^1].Size == 0 ? segs[^1].BaseOffset : segs[^1].ReadNextOffset());
            if (HighWatermark > LogEndOffset) Volatile.Write(ref _highWatermark, LogEndOffset);
            if (RecoveryPoint > LogEndOffset) Volatile.Write(ref _recoveryPoint, LogEndOffset);
            if (DurableEndOffset > LogEndOffset) Volatile.Write(ref _durableEnd, LogEndOffset);
            // What was cleaned below the cut stays clean; the dirty section cannot start past the end.
            if (CleanerCheckpoint > LogEndOffset) SetCleanerCheckpoint(LogEndOffset);
            EpochChange(static (c, o) => c.TruncateFromEnd(o), LogEndOffset);
            Producers.ResetTo(LogEndOffset);
            LogLoader.RebuildProducerState(Producers, _segments, LogStartOffset, LogEndOffset, hadCleanShutdown: false);
        }
    }

    /// <summary>
    /// Empties the log and starts it over at <paramref name="offset"/>: a follower whose log ends
    /// below the leader's log start (it was away longer than retention) has nothing worth keeping.
    /// Producer state, epoch cache, high watermark and recovery point start over with it.
    /// </summary>
    public void TruncateFullyAndStartAt(long offset)
    {
        lock (_lock)
        {
            if (_disposed) return;
            if (IsOffline) throw new IOException($"the log directory of {TopicPartition} is offline: {_dirState.Failure}");
            var gone = _segments;
            LogSegment seg;
            try
            {
                foreach (var s in gone)
                {
                    s.MarkDeleted();
                    _scheduleDelete(s, Config.FileDeleteDelayMs);
                }
                seg = LogSegment.Create(Io, Dir, offset, Config.IndexIntervalBytes, Config.SegmentIndexBytes, NowMs);
            }
            catch (IOException e)
            {
                MarkOffline(e, "truncation");
                throw;
            }
            DirectoryChanged();
            Volatile.Write(ref _segments, [seg]);
            Volatile.Write(ref _logStartOffset, offset);
            Volatile.Write(ref _logEndOffset, offset);
            Volatile.Write(ref _highWatermark, offset);
            Volatile.Write(ref _recoveryPoint, offset);
            Volatile.Write(ref _durableEnd, offset);
            SetCleanerCheckpoint(offset);
            _unflushedMessages = 0;
            Producers.TruncateFullyAndStartAt(offset);
            try { _epochs.Reset([]); }
            catch (IOException e) { LogEpochCheckpointFailed(_logger, TopicPartition, e.Message); }
        }
    }

    /// <summary>
    /// A follower's log start follows the leader's (retention and DeleteRecords on the leader), up
    /// to its own high watermark. Returns true when it moved.
    /// </summary>
    public bool MaybeIncrementLogStartOffset(long offset)
    {
        lock (_lock)
        {
            if (_disposed || IsOffline) return false;
            offset = Math.Min(offset, HighWatermark);
            if (offset <= LogStartOffset) return false;
            Volatile.Write(ref _logStartOffset, offset);
            Producers.OnLogStartOffsetIncremented(offset);
            EpochChange(static (c, o) => c.TruncateFromStart(o), offset);
        }
        DeleteOldSegments(NowMs);
        return true;
    }

    // ================================================================ compaction support (LogCleaner)

    /// <summary>
    /// What a cleaning starts from, taken together under the lock: the segment list, and the last
    /// offset of each producer's last batch (the batch the cleaner must keep, if only as an empty
    /// header, so that the producer's sequence and epoch survive a rebuild of the state from the log).
    /// Every batch of a segment that is not active in this list was appended before the state was read.
    /// </summary>
    internal (LogSegment[] Segments, Dictionary<long, long> ProducerLastOffsets) SnapshotForCleaning()
    {
        lock (_lock)
        {
            var last = new Dictionary<long, long>(Producers.Count);
            foreach (var e in Producers.Producers.Values)
                if (e.LastOffset >= 0) last[e.ProducerId] = e.LastOffset;
            return (_segments, last);
        }
    }

    /// <summary>
    /// Swaps a cleaned segment in for the consecutive segments <paramref name="old"/> it was built from,
    /// under the lock, if they are still in the log as the cleaner read them (same objects, same sizes,
    /// none of them active); returns false and changes nothing otherwise (retention, truncation or
    /// deletion got there first; the caller discards its output). The cleaned segment must be flushed.
    /// <para>
    /// Files: <c>{base}.log.cleaned</c> is renamed to <c>.log.swap</c> (the commit point: from here a
    /// crash is finished by <see cref="LogLoader"/>), the old segments are renamed to *.deleted and handed to
    /// the delayed deletion (readers holding their file ranges keep working), then the cleaned
    /// segment's index files and finally its .log file get their normal names. An empty result replaces
    /// nothing unless it is the first segment of the log, which keeps the log start where it is; else
    /// the old segments just go (in offset order, which a crash can stop anywhere without harm).
    /// </para>
    /// </summary>
    internal bool ReplaceSegments(IReadOnlyList<(LogSegment Segment, int Size)> old, LogSegment cleaned)
    {
        lock (_lock)
        {
            if (_disposed || IsOffline || old.Count == 0) return false;
            var segs = _segments;
            int first = Array.IndexOf(segs, old[0].Segment);
            if (first < 0 || first + old.Count >= segs.Length) return false;
            for (int k = 0; k < old.Count; k++)
                if (!ReferenceEquals(segs[first + k], old[k].Segment) || segs[first + k].Size != old[k].Size) return false;
            bool keep = cleaned.Size > 0 || first == 0;
            if (keep)
            {
                try { cleaned.RenameLogFile(LogSegment.FilePath(Dir, cleaned.BaseOffset, LogSegment.LogSuffix) + LogSegment.SwapSuffix); }
                catch (IOException e)
                {
                    LogFlushFailed(_logger, TopicPartition, e.Message);
                    return false;
                }
                // The commit point on disk before the old segments are renamed away: a power loss must not
                // keep their deletion and lose the .swap that replaces them. (Once per cleaning, so under the lock.)
                try { Io.FsyncDirectory(Dir); }
                catch (IOException e)
                {
                    // The .swap may or may not survive; either way the loader finds a consistent set (the old
                    // segments, or the swap replacing them), and the directory is no longer trusted.
                    MarkOffline(e, "directory fsync");
                    return false;
                }
            }
            // Committed. A failure from here on leaves the files in a state the loader completes; the log in
            // memory takes the new segment regardless, so the two agree after a restart.
            try
            {
                foreach (var (s, _) in old) s.MarkDeleted();
                if (keep)
                {
                    cleaned.RenameIndexFiles("");
                    cleaned.RenameLogFile(LogSegment.FilePath(Dir, cleaned.BaseOffset, LogSegment.LogSuffix));
                }
            }
            catch (IOException e)
            {
                LogFlushFailed(_logger, TopicPartition, e.Message);
            }
            DirectoryChanged();
            LogSegment[] next = [.. segs[..first], .. keep ? [cleaned] : Array.Empty<LogSegment>(), .. segs[(first + old.Count)..]];
            cleaned.IndexIntervalBytes = Config.IndexIntervalBytes;
            Volatile.Write(ref _segments, next);
            foreach (var (s, _) in old) _scheduleDelete(s, Config.FileDeleteDelayMs);
            if (!keep) cleaned.DeleteFiles();
            return true;
        }
    }

    // ================================================================ lifecycle

    /// <summary>
    /// Clean shutdown: flush everything (the directory too), snapshot the producer state, close files. A log
    /// whose directory is offline only closes its files: nothing there is trusted to a flush any more, and
    /// the next start recovers it (the log manager leaves no clean-shutdown marker there).
    /// </summary>
    public void Close()
    {
        lock (_lock)
        {
            if (_disposed) return;
            try
            {
                if (IsOffline) return;
                foreach (var s in _segments) s.Flush(fsync: true);
                SyncDirectoryIfPending();
                Volatile.Write(ref _recoveryPoint, LogEndOffset);
                Producers.SetMapEndOffset(LogEndOffset);
                Producers.TakeSnapshot(fsync: true);
            }
            catch (IOException e)
            {
                MarkOffline(e, "flush at shutdown");
                throw;
            }
            finally
            {
                foreach (var s in _segments) s.Dispose();
                _disposed = true;
            }
        }
    }

    /// <summary>Renames the directory (topic deletion) and closes the files; the caller deletes the directory later.</summary>
    public void MarkForDeletion(string deletedDir)
    {
        lock (_lock)
        {
            foreach (var s in _segments) s.Dispose();
            _disposed = true;
            Directory.Move(Dir, deletedDir);
            Dir = deletedDir;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            foreach (var s in _segments) s.Dispose();
            _disposed = true;
        }
    }

    // ================================================================ logging

    [LoggerMessage(EventId = 1004, Level = LogLevel.Error, Message = "{Partition}: append failed: {Reason}")]
    private static partial void LogAppendFailed(ILogger logger, TopicPartition partition, string reason);

    [LoggerMessage(EventId = 1005, Level = LogLevel.Debug, Message = "{Partition}: rolled new segment at offset {BaseOffset}")]
    private static partial void LogRolled(ILogger logger, TopicPartition partition, long baseOffset);

    [LoggerMessage(EventId = 1006, Level = LogLevel.Warning, Message = "{Partition}: flush failed: {Reason}")]
    private static partial void LogFlushFailed(ILogger logger, TopicPartition partition, string reason);

    [LoggerMessage(EventId = 1007, Level = LogLevel.Warning, Message = "{Partition}: producer state snapshot failed: {Reason}")]
    private static partial void LogSnapshotFailed(ILogger logger, TopicPartition partition, string reason);

    [LoggerMessage(EventId = 1008, Level = LogLevel.Information, Message = "{Partition}: deleting segment {BaseOffset} (retention or log start offset)")]
    private static partial void LogSegmentDeleted(ILogger logger, TopicPartition partition, long baseOffset);

    [LoggerMessage(EventId = 1010, Level = LogLevel.Warning, Message = "{Partition}: leader epoch checkpoint write failed: {Reason}")]
    internal static partial void LogEpochCheckpointFailed(ILogger logger, TopicPartition partition, string reason);

    [LoggerMessage(EventId = 1012, Level = LogLevel.Warning, Message = "{Partition}: follower append refused: {Reason}")]
    private static partial void LogFollowerAppendRefused(ILogger logger, TopicPartition partition, string reason);

    [LoggerMessage(EventId = 1013, Level = LogLevel.Error, Message = "{Partition}: {What} failed ({Reason}): log directory {Dir} is offline until restart; its partitions answer KAFKA_STORAGE_ERROR")]
    private static partial void LogDirOffline(ILogger logger, TopicPartition partition, string dir, string what, string reason);

    [LoggerMessage(EventId = 1014, Level = LogLevel.Warning, Message = "{Partition}: cut the records from offset {DurableEnd} to {End}, written but never made durable (their appends failed)")]
    private static partial void LogTailCut(ILogger logger, TopicPartition partition, long durableEnd, long end);

    [LoggerMessage(EventId = 1015, Level = LogLevel.Error, Message = "{Partition}: could not cut the records past the durable end {DurableEnd} ({Reason}); a restart may recover them")]
    private static partial void LogTailCutFailed(ILogger logger, TopicPartition partition, long durableEnd, string reason);
}
