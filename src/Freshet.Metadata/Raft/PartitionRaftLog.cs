using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using Freshet.Protocol;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using Freshet.Storage;
using Freshet.Storage.Epochs;
using Freshet.Storage.Segments;
using Microsoft.Extensions.Logging;

namespace Freshet.Metadata.Raft;

/// <summary>
/// The production <see cref="IRaftLog"/>: the metadata log <c>__cluster_metadata-0</c> stored by the
/// same <see cref="PartitionLog"/> as user partitions (segments, indexes, the leader-epoch cache,
/// crash recovery that cuts a torn tail), plus Raft snapshots as files beside the segments
/// (<see cref="SnapshotFiles"/>). <see cref="MemoryRaftLog"/> is the reference behaviour; this class
/// adapts PartitionLog's semantics where they differ.
/// <para>Files in the partition directory, besides PartitionLog's own:</para>
/// <list type="bullet">
/// <item><c>{end offset:D20}-{epoch:D10}.checkpoint</c>: a snapshot (at most the two newest are kept).</item>
/// <item><c>raft-log-start-checkpoint</c>: where the log starts and the epoch of the snapshot it starts
/// at, as two lines <c>0</c> (version) and <c>{offset} {epoch}</c>. PartitionLog itself does not
/// remember a log start that lies inside a segment, and the epoch before it is in no batch any more.
/// Absent for a log that still starts where it began (a log written by <see cref="Log.LocalMetadataLog"/>).</item>
/// </list>
/// <para>
/// Durability: appends are not fsynced; <see cref="Flush"/> fsyncs up to the end (the node calls it when
/// it needs durability) and <see cref="FlushedEndOffset"/> says how far that went. Truncations, the log
/// start, resets and snapshots are durable when their call returns, as in <see cref="MemoryRaftLog"/>.
/// Deleted segments stay open for <c>file.delete.delay.ms</c>, so a fetch answered with a file range
/// (<see cref="ReadForFetch"/>) can still be sent after the prefix it covers was deleted.
/// </para>
/// Failure policy: an I/O error is thrown to the caller (the node's driver), which must stop the node;
/// reopening recovers from what is on disk.
/// <para>Single-threaded, as <see cref="IRaftLog"/> is: only the node's driver calls it.</para>
/// </summary>
public sealed partial class PartitionRaftLog : IRaftLog, IDisposable
{
    public const string TopicName = "__cluster_metadata";
    public static readonly TopicPartition Partition = new(TopicName, 0);

    /// <summary>The file that remembers the log start offset and the epoch before it.</summary>
    public const string LogStartCheckpointFile = "raft-log-start-checkpoint";

    /// <summary>The largest batch the metadata log takes (Kafka's default for the metadata log's max message bytes).</summary>
    public const int MaxBatchBytes = 8 * 1024 * 1024;

    /// <summary>How many snapshots are kept: the newest for lagging followers, one older so a download in progress can finish.</summary>
    private const int SnapshotsKept = 2;

    private readonly PartitionLog _log;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ConcurrentQueue<(LogSegment Segment, long DueMs)> _pendingDeletes;
    private readonly List<OffsetAndEpoch> _snapshots;
    private long _flushedEndOffset;
    /// <summary>Epoch of the entry just before the log start (the snapshot's), 0 for a log that starts at its beginning.</summary>
    private int _baseEpoch;
    /// <summary>The active segment's base when the directory was last fsynced: a roll since then created a file whose name is not durable yet.</summary>
    private long _dirSyncedActiveBase;
    private bool _closed;

    private PartitionRaftLog(PartitionLog log, List<OffsetAndEpoch> snapshots, ConcurrentQueue<(LogSegment, long)> pendingDeletes, TimeProvider time, ILogger logger)
    {
        _log = log;
        _snapshots = snapshots;
        _pendingDeletes = pendingDeletes;
        _time = time;
        _logger = logger;
    }

    /// <summary>The partition directory (<c>&lt;metadata log dir&gt;/__cluster_metadata-0</c>).</summary>
    public string Dir => _log.Dir;

    public long LogStartOffset => _log.LogStartOffset;
    public long EndOffset => _log.LogEndOffset;
    public long FlushedEndOffset => _flushedEndOffset;
    public OffsetAndEpoch? LatestSnapshotId => _snapshots.Count > 0 ? _snapshots[^1] : null;

    /// <summary>Truncations that removed entries (tests and the simulation's statistics).</summary>
    public int TruncationCount { get; private set; }

    public int LastFetchedEpoch
    {
        get
        {
            var entries = _log.LeaderEpochCache.Entries;
            for (int i = entries.Count - 1; i >= 0; i--)
                if (HoldsEntries(entries[i])) return entries[i].Epoch;
            return _baseEpoch;
        }
    }

    private long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    // ================================================================ opening

    /// <summary>
    /// Opens (or creates) <c>__cluster_metadata-0</c> in <paramref name="metadataLogDir"/>: retention off,
    /// batches up to <see cref="MaxBatchBytes"/>. Every segment from the log start on is recovered (CRC
    /// checked, a torn or corrupt tail cut), the leader-epoch cache reconciled with what survived, and
    /// everything fsynced, so <see cref="FlushedEndOffset"/> starts at the end. A directory written by
    /// <see cref="Log.LocalMetadataLog"/> (epoch 1, no snapshots) opens as a log starting at 0.
    /// </summary>
    /// <param name="logConfigOverrides">Topic-level settings on top of the metadata log's (tests: a small segment.bytes).</param>
    public static PartitionRaftLog Open(string metadataLogDir, TimeProvider time, ILoggerFactory loggers, IReadOnlyDictionary<string, string>? logConfigOverrides = null)
    {
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(loggers);
        string dir = Path.Combine(metadataLogDir, Partition.ToString());
        var overrides = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [LogConfig.RetentionMsConfig] = "-1",
            [LogConfig.RetentionBytesConfig] = "-1",
            [LogConfig.MaxMessageBytesConfig] = MaxBatchBytes.ToString(CultureInfo.InvariantCulture),
        };
        if (logConfigOverrides is not null)
            foreach (var (k, v) in logConfigOverrides) overrides[k] = v;
        var config = LogConfig.Create(new Dictionary<string, string>(), overrides);
        var options = new LogOptions { FsyncOnAppend = false };
        var logger = loggers.CreateLogger<PartitionRaftLog>();
        var pending = new ConcurrentQueue<(LogSegment, long)>();
        void ScheduleDelete(LogSegment s, long delayMs) => pending.Enqueue((s, time.GetUtcNow().ToUnixTimeMilliseconds() + delayMs));

        var start = ReadLogStart(dir);
        bool exists = Directory.Exists(dir) && Directory.EnumerateFiles(dir, "*" + LogSegment.LogSuffix).Any();
        var log = exists
            ? PartitionLog.Open(dir, Partition, config, options, recoveryPoint: start?.Offset ?? 0, logStartOffsetCheckpoint: start?.Offset ?? 0,
                hadCleanShutdown: false, time, loggers.CreateLogger<PartitionLog>(), ScheduleDelete)
            : PartitionLog.Create(dir, Partition, Uuid.OneUuid, config, options, time, loggers.CreateLogger<PartitionLog>(), ScheduleDelete);
        try
        {
            var raftLog = new PartitionRaftLog(log, SnapshotFiles.Load(dir), pending, time, logger);
            raftLog.Initialize(start);
            return raftLog;
        }
        catch
        {
            log.Dispose();
            throw;
        }
    }

    private void Initialize((long Offset, int Epoch)? start)
    {
        if (start is { } s && s.Offset > _log.LogEndOffset)
        {
            // The checkpoint is written only once the log reaches it (DeleteBeforeSnapshot flushes first,
            // ResetToSnapshot empties the log first): a log ending below it lost data under the start.
            LogStartBeyondEnd(_logger, s.Offset, _log.LogEndOffset);
            _log.TruncateFullyAndStartAt(s.Offset);
        }
        long logStart = _log.LogStartOffset;
        int? epoch = start is { } c && c.Offset == logStart ? c.Epoch : null;
        // A reset interrupted between emptying the log and writing the checkpoint: the snapshot it reset
        // to was stored before, and is the newest.
        for (int i = _snapshots.Count - 1; i >= 0 && epoch is null; i--)
            if (_snapshots[i].Offset == logStart) epoch = _snapshots[i].Epoch;
        if (epoch is null && logStart > 0) LogBaseEpochUnknown(_logger, logStart);
        _baseEpoch = epoch ?? 0;
        if (logStart > 0 && (start is null || start.Value.Offset != logStart || start.Value.Epoch != _baseEpoch))
            WriteLogStart(logStart, _baseEpoch);

        while (_snapshots.Count > SnapshotsKept) DeleteOldestSnapshot();
        // Segments wholly below the log start (a crash interrupted their deletion) go now.
        _log.UpdateHighWatermark(_log.LogEndOffset);
        _log.DeleteOldSegments(NowMs);
        // What recovery kept may still be only in the page cache (a process crash): make it durable,
        // so that FlushedEndOffset can start at the end.
        _log.Flush(_log.LogEndOffset);
        SyncDirectory();
        _flushedEndOffset = _log.LogEndOffset;
        LogOpened(_logger, _log.LogStartOffset, _log.LogEndOffset, _baseEpoch, LatestSnapshotId?.ToString() ?? "none");
    }

    // ================================================================ epochs

    /// <summary>
    /// The leader-epoch cache restricted to what <see cref="IRaftLog"/> calls the epoch history: epochs
    /// that have entries in the log (PartitionLog's cache may keep an epoch at the log end, with none)
    /// and are not older than the snapshot the log starts at.
    /// </summary>
    private bool HoldsEntries(EpochEntry e) => e.StartOffset < _log.LogEndOffset && e.Epoch >= _baseEpoch;

    public OffsetAndEpoch EndOffsetForEpoch(int epoch)
    {
        if (epoch < _baseEpoch) return OffsetAndEpoch.Unknown;
        var entries = _log.LeaderEpochCache.Entries;
        long start = _log.LogStartOffset, end = _log.LogEndOffset;
        int first = -1, chosen = -1;
        for (int i = 0; i < entries.Count; i++)
        {
            if (!HoldsEntries(entries[i])) continue;
            if (first < 0) first = i;
            if (entries[i].Epoch > epoch) break;
            chosen = i;
        }
        // Older than every epoch with entries: the snapshot's epoch ends where the first one starts.
        if (chosen < 0) return new OffsetAndEpoch(first >= 0 ? Math.Max(entries[first].StartOffset, start) : end, _baseEpoch);
        long next = end;
        for (int j = chosen + 1; j < entries.Count; j++)
        {
            if (!HoldsEntries(entries[j])) continue;
            next = Math.Max(entries[j].StartOffset, start);
            break;
        }
        return new OffsetAndEpoch(next, entries[chosen].Epoch);
    }

    // ================================================================ append

    public long AppendAsLeader(ReadOnlyMemory<byte> batch, int epoch)
    {
        var span = batch.Span;
        if (span.Length < RecordBatch.HeaderSize || RecordBatch.PeekSize(span) != span.Length) throw new ArgumentException("expected exactly one batch", nameof(batch));
        var b = new RecordBatch(span);
        if (b.BaseOffset != EndOffset) throw new ArgumentException($"batch starts at {b.BaseOffset}, the log ends at {EndOffset}", nameof(batch));
        if (b.PartitionLeaderEpoch != epoch) throw new ArgumentException($"batch epoch {b.PartitionLeaderEpoch} is not {epoch}", nameof(batch));
        int last = LastFetchedEpoch;
        if (epoch < last) throw new InvalidOperationException($"batch epoch {epoch} is older than the log's last epoch {last}");
        // PartitionLog writes offsets, epoch and timestamps into the batch in place; the caller's bytes stay as they are.
        var result = _log.AppendAsLeader(batch.ToArray(), epoch, AppendOrigin.Coordinator);
        ThrowIfFailed(result);
        return result.LastOffset;
    }

    public long AppendAsFollower(ReadOnlyMemory<byte> batches)
    {
        var span = batches.Span;
        int pos = 0, from = -1;
        long expected = EndOffset;
        int lastEpoch = LastFetchedEpoch;
        // Checked whole before anything is written: the append is all or nothing.
        while (pos < span.Length)
        {
            if (span.Length - pos < RecordBatch.HeaderSize) throw new InvalidDataException("truncated batch in fetched records");
            int size = RecordBatch.PeekSize(span[pos..]);
            if (size < RecordBatch.HeaderSize || size > span.Length - pos) throw new InvalidDataException("truncated batch in fetched records");
            var b = new RecordBatch(span.Slice(pos, size));
            if (from < 0 && b.NextOffset <= expected)
            {
                pos += size; // already in the log
                continue;
            }
            if (b.BaseOffset != expected) throw new InvalidDataException($"fetched batch starts at {b.BaseOffset}, the log ends at {expected}");
            if (b.PartitionLeaderEpoch < lastEpoch)
                throw new InvalidOperationException($"batch epoch {b.PartitionLeaderEpoch} is older than the log's last epoch {lastEpoch}");
            if (from < 0) from = pos;
            lastEpoch = b.PartitionLeaderEpoch;
            expected = b.NextOffset;
            pos += size;
        }
        if (from < 0) return EndOffset;
        ThrowIfFailed(_log.AppendAsFollower(batches[from..]));
        return EndOffset;
    }

    private static void ThrowIfFailed(LogAppendResult result)
    {
        if (result.Error == ErrorCode.None) return;
        string message = $"metadata log append failed: {result.Error.KafkaName()} {result.ErrorMessage}";
        throw result.Error == ErrorCode.KafkaStorageError ? new IOException(message) : new InvalidDataException(message);
    }

    // ================================================================ truncation, flush

    public void TruncateTo(long offset)
    {
        if (offset < LogStartOffset) throw new ArgumentOutOfRangeException(nameof(offset), $"truncation to {offset} is below the log start {LogStartOffset}");
        if (offset >= EndOffset) return;
        int segments = _log.Segments.Count;
        _log.TruncateTo(offset); // the batch holding offset goes whole
        TruncationCount++;
        _flushedEndOffset = Math.Min(_flushedEndOffset, EndOffset);
        // Durable at once: a truncation undone by a crash would bring back entries the leader replaced.
        _log.ActiveSegment.SyncData();
        if (_log.Segments.Count != segments) SyncDirectory();
        DeleteDueSegments(all: false);
    }

    public void Flush()
    {
        long end = EndOffset;
        _log.Flush(end);
        if (_log.ActiveSegment.BaseOffset != _dirSyncedActiveBase) SyncDirectory();
        _flushedEndOffset = end;
        DeleteDueSegments(all: false);
    }

    /// <summary>fsyncs the directory: created and renamed segment files are durable under their names.</summary>
    private void SyncDirectory()
    {
        DurableFile.SyncDirectory(Dir);
        _dirSyncedActiveBase = _log.ActiveSegment.BaseOffset;
    }

    // ================================================================ read

    public ReadOnlyMemory<byte> Read(long offset, int maxBytes)
    {
        var records = ReadFile(offset, maxBytes);
        return records is null ? ReadOnlyMemory<byte>.Empty : records.ReadAll();
    }

    /// <summary>The segment file range itself, which the transport sends with sendfile.</summary>
    public RecordSet ReadForFetch(long offset, int maxBytes) => (RecordSet?)ReadFile(offset, maxBytes) ?? RecordSet.Empty;

    private FileRecords? ReadFile(long offset, int maxBytes)
    {
        if (offset < LogStartOffset || offset > EndOffset)
            throw new ArgumentOutOfRangeException(nameof(offset), $"offset {offset} is outside [{LogStartOffset}, {EndOffset}]");
        if (offset == EndOffset) return null;
        var r = _log.Read(offset, maxBytes, long.MaxValue, minOneBatch: true);
        if (r.Error != ErrorCode.None) throw new ArgumentOutOfRangeException(nameof(offset), $"offset {offset}: {r.Error.KafkaName()}");
        return r.Records is { Length: > 0 } records ? records : null;
    }

    /// <summary>The base offset of the batch holding <paramref name="offset"/> (which must be in the log).</summary>
    private long BatchBaseOffset(long offset)
    {
        var records = ReadFile(offset, 1) ?? throw new InvalidOperationException($"no batch holds offset {offset}");
        Span<byte> head = stackalloc byte[8];
        int n = RandomAccess.Read(records.Handle, head, records.Position);
        if (n < head.Length) throw new IOException($"short read of the batch holding offset {offset}");
        return System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(head);
    }

    // ================================================================ snapshots

    public RaftSnapshot? ReadSnapshot(OffsetAndEpoch id)
    {
        if (!_snapshots.Contains(id)) return null;
        var bytes = SnapshotFiles.ReadAll(Dir, id);
        return bytes is null ? null : new RaftSnapshot(id, bytes);
    }

    public bool TryReadSnapshotChunk(OffsetAndEpoch id, long position, int maxBytes, out long size, out ReadOnlyMemory<byte> chunk)
    {
        chunk = default;
        size = 0;
        if (!_snapshots.Contains(id)) return false;
        bool ok = SnapshotFiles.TryReadChunk(Dir, id, position, maxBytes, out size, out var bytes);
        if (ok) chunk = bytes;
        return ok;
    }

    public void StoreSnapshot(RaftSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        if (_snapshots.Contains(snapshot.Id)) return;
        SnapshotFiles.Write(Dir, snapshot);
        _snapshots.Add(snapshot.Id);
        _snapshots.Sort(SnapshotFiles.Compare);
        while (_snapshots.Count > SnapshotsKept) DeleteOldestSnapshot();
    }

    private void DeleteOldestSnapshot()
    {
        SnapshotFiles.Delete(Dir, _snapshots[0]);
        _snapshots.RemoveAt(0);
    }

    public void DeleteBeforeSnapshot(OffsetAndEpoch id)
    {
        if (id.Offset <= LogStartOffset) return;
        if (id.Offset > EndOffset) throw new ArgumentOutOfRangeException(nameof(id), $"snapshot end {id.Offset} is past the log end {EndOffset}");
        if (id.Offset < EndOffset && BatchBaseOffset(id.Offset) != id.Offset) throw new ArgumentException($"snapshot end {id.Offset} is inside a batch", nameof(id));
        // The log must reach the new start after a crash, so the entries below it are made durable first
        // (the snapshot covers them, so they count as flushed from here on).
        _log.Flush(id.Offset);
        WriteLogStart(id.Offset, id.Epoch);
        _baseEpoch = id.Epoch;
        _log.UpdateHighWatermark(EndOffset); // PartitionLog deletes records only below its high watermark
        var error = _log.DeleteRecordsBefore(id.Offset, out long newStart);
        if (error != ErrorCode.None || newStart != id.Offset)
            throw new InvalidOperationException($"moving the log start to {id.Offset} failed: {error.KafkaName()} (log start {newStart})");
        _flushedEndOffset = Math.Max(_flushedEndOffset, id.Offset);
        DeleteDueSegments(all: false);
    }

    public void ResetToSnapshot(OffsetAndEpoch id)
    {
        // Empty the log first, then record the start: a crash in between reopens at the new segment's
        // base, and the epoch comes from the snapshot stored there (see Initialize).
        _log.TruncateFullyAndStartAt(id.Offset);
        SyncDirectory();
        WriteLogStart(id.Offset, id.Epoch);
        _baseEpoch = id.Epoch;
        _flushedEndOffset = id.Offset;
        DeleteDueSegments(all: false);
    }

    // ================================================================ the log start checkpoint

    private static (long Offset, int Epoch)? ReadLogStart(string dir)
    {
        string path = Path.Combine(dir, LogStartCheckpointFile);
        if (!File.Exists(path)) return null;
        var lines = File.ReadAllLines(path);
        if (lines.Length < 2 || lines[0].Trim() != "0") throw new InvalidDataException($"{path}: unsupported or malformed log start checkpoint");
        var parts = lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length != 2
            || !long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out long offset)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int epoch))
            throw new InvalidDataException($"{path}: malformed log start checkpoint");
        return (offset, epoch);
    }

    /// <summary>Written to a .tmp file (PartitionLog.Open deletes leftovers), fsynced, renamed, directory fsynced.</summary>
    private void WriteLogStart(long offset, int epoch)
    {
        var text = string.Create(CultureInfo.InvariantCulture, $"0\n{offset} {epoch}\n");
        DurableFile.Write(Path.Combine(Dir, LogStartCheckpointFile), Encoding.UTF8.GetBytes(text));
    }

    // ================================================================ lifecycle

    /// <summary>Deleted segments stay open for file.delete.delay.ms (readers holding a file range), then go.</summary>
    private void DeleteDueSegments(bool all)
    {
        long now = NowMs;
        int n = _pendingDeletes.Count;
        for (int i = 0; i < n && _pendingDeletes.TryDequeue(out var item); i++)
        {
            if (!all && item.DueMs > now)
            {
                _pendingDeletes.Enqueue(item);
                continue;
            }
            try { item.Segment.DeleteFiles(); }
            catch (IOException e) { LogSegmentDeleteFailed(_logger, item.Segment.LogPath, e.Message); }
        }
    }

    /// <summary>Clean close: everything flushed, files closed, deleted segments removed.</summary>
    public void Dispose()
    {
        if (_closed) return;
        _closed = true;
        try
        {
            _log.Close();
        }
        finally
        {
            DeleteDueSegments(all: true);
        }
    }

    /// <summary>
    /// Tests: the process dies. Files are closed without a flush (what was written stays in the page
    /// cache, as after a real process crash); segments waiting for deletion stay as <c>*.deleted</c>.
    /// </summary>
    internal void CloseWithoutFlush()
    {
        if (_closed) return;
        _closed = true;
        _log.Dispose();
        while (_pendingDeletes.TryDequeue(out var item)) item.Segment.Dispose();
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"metadata log {Dir}: [{LogStartOffset}, {EndOffset}) flushed to {FlushedEndOffset}, last epoch {LastFetchedEpoch}, snapshot {LatestSnapshotId?.ToString() ?? "none"}");

    // ================================================================ logging

    [LoggerMessage(EventId = 2201, Level = LogLevel.Information, Message = "Metadata log opened: offsets [{LogStart}, {LogEnd}), epoch before the start {BaseEpoch}, latest snapshot {Snapshot}")]
    private static partial void LogOpened(ILogger logger, long logStart, long logEnd, int baseEpoch, string snapshot);

    [LoggerMessage(EventId = 2202, Level = LogLevel.Warning, Message = "Metadata log starts at {LogStart} but its checkpoint is past the recovered end {LogEnd}; starting the log over at the checkpoint")]
    private static partial void LogStartBeyondEnd(ILogger logger, long logStart, long logEnd);

    [LoggerMessage(EventId = 2203, Level = LogLevel.Warning, Message = "Metadata log starts at {LogStart} with no checkpoint or snapshot giving the epoch before it; assuming epoch 0")]
    private static partial void LogBaseEpochUnknown(ILogger logger, long logStart);

    [LoggerMessage(EventId = 2204, Level = LogLevel.Warning, Message = "Deleting metadata log segment {Path} failed: {Reason}")]
    private static partial void LogSegmentDeleteFailed(ILogger logger, string path, string reason);
}
