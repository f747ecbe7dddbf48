using System.Buffers.Binary;
using System.Globalization;
using Freshet.Protocol;
using Freshet.Protocol.Records;

namespace Freshet.Storage.Producers;

/// <summary>Offsets and sequence range of one appended batch of an idempotent producer.</summary>
public readonly record struct BatchMetadata(int FirstSequence, int LastSequence, long FirstOffset, long LastOffset, long Timestamp);

/// <summary>What the partition knows of one producer id: its epoch and its last few batches.</summary>
public sealed class ProducerStateEntry(long producerId)
{
    /// <summary>Batches remembered per producer for duplicate detection (Kafka's max.in.flight bound for idempotence).</summary>
    public const int MaxBatches = 5;

    private readonly Queue<BatchMetadata> _batches = new(MaxBatches);

    public long ProducerId { get; } = producerId;
    public short Epoch { get; set; } = RecordBatch.NoProducerEpoch;
    public long LastTimestamp { get; set; } = RecordBatch.NoTimestamp;
    public int CoordinatorEpoch { get; set; } = -1;
    public long CurrentTxnFirstOffset { get; set; } = -1;
    public IReadOnlyCollection<BatchMetadata> Batches => _batches;

    public int LastSequence => _batches.Count == 0 ? RecordBatch.NoSequence : _batches.Last().LastSequence;
    public long LastOffset => _batches.Count == 0 ? -1 : _batches.Last().LastOffset;

    public void AddBatch(BatchMetadata b)
    {
        if (_batches.Count == MaxBatches) _batches.Dequeue();
        _batches.Enqueue(b);
        LastTimestamp = b.Timestamp;
    }

    public void ResetBatches() => _batches.Clear();

    public BatchMetadata? FindDuplicate(int firstSeq, int lastSeq)
    {
        foreach (var b in _batches)
            if (b.FirstSequence == firstSeq && b.LastSequence == lastSeq) return b;
        return null;
    }
}

/// <summary>Outcome of checking an idempotent batch against the producer state.</summary>
public readonly record struct ProducerCheck(ErrorCode Error, BatchMetadata? Duplicate, string? Message = null)
{
    public static readonly ProducerCheck Ok = new(ErrorCode.None, null);
    public bool IsDuplicate => Duplicate is not null;
}

/// <summary>
/// The idempotent-producer state of one partition (Kafka's ProducerStateManager): per producer id,
/// the epoch and the last five batches' sequence ranges and offsets. A retried batch is found
/// among them and answered with its original offsets; a gap in sequence numbers or an old epoch
/// is refused. Snapshots (<c>{offset:D20}.snapshot</c>, Kafka's format v1) are taken when a
/// segment rolls and at clean shutdown; after a crash the state is rebuilt from the latest
/// snapshot plus the batch headers after it. Guarded by the owning partition's lock.
/// </summary>
public sealed class ProducerStateManager(string dir, long producerIdExpirationMs)
{
    public const string SnapshotSuffix = ".snapshot";
    private const short SnapshotVersion = 1;

    private readonly Dictionary<long, ProducerStateEntry> _producers = [];
    private readonly StorageIo _io = StorageIo.Default;

    internal ProducerStateManager(string dir, long producerIdExpirationMs, StorageIo io)
        : this(dir, producerIdExpirationMs)
    {
        _io = io;
    }

    public long ProducerIdExpirationMs { get; set; } = producerIdExpirationMs;

    /// <summary>Offset up to which the state reflects the log (exclusive).</summary>
    public long MapEndOffset { get; private set; }

    public int Count => _producers.Count;
    public IReadOnlyDictionary<long, ProducerStateEntry> Producers => _producers;

    public ProducerStateEntry? Get(long producerId) => _producers.GetValueOrDefault(producerId);

    /// <summary>Checks a client's batch: duplicate, fenced epoch or out-of-order sequence, as Kafka does.</summary>
    public ProducerCheck Check(long producerId, short epoch, int firstSeq, int lastSeq)
    {
        if (!_producers.TryGetValue(producerId, out var e) || e.Epoch == RecordBatch.NoProducerEpoch)
            return ProducerCheck.Ok; // no state (new, expired, or removed by retention): any sequence starts it
        if (epoch < e.Epoch)
            return new ProducerCheck(ErrorCode.InvalidProducerEpoch, null,
                $"Epoch of producer {producerId} at offset is {epoch}, which is smaller than the last seen epoch {e.Epoch}");
        if (epoch > e.Epoch)
        {
            // A bumped epoch restarts the sequence at 0.
            return firstSeq == 0 ? ProducerCheck.Ok
                : new ProducerCheck(ErrorCode.OutOfOrderSequenceNumber, null,
                    $"Invalid sequence number for new epoch of producer {producerId}: {epoch} (request epoch), {firstSeq} (seq. number), {e.Epoch} (current producer epoch)");
        }
        if (e.FindDuplicate(firstSeq, lastSeq) is { } dup) return new ProducerCheck(ErrorCode.None, dup);
        int last = e.LastSequence;
        bool inSequence = last == RecordBatch.NoSequence || firstSeq == (last == int.MaxValue ? 0 : last + 1);
        return inSequence ? ProducerCheck.Ok
            : new ProducerCheck(ErrorCode.OutOfOrderSequenceNumber, null,
                $"Out of order sequence number for producer {producerId} at offset: {firstSeq} (incoming seq. number), {last} (current end sequence number)");
    }

    /// <summary>Records an appended batch (leader append, follower append or recovery replay).</summary>
    public void Update(long producerId, short epoch, int firstSeq, int lastSeq, long firstOffset, long lastOffset, long timestamp)
    {
        if (!_producers.TryGetValue(producerId, out var e))
        {
            e = new ProducerStateEntry(producerId);
            _producers[producerId] = e;
        }
        if (epoch != e.Epoch)
        {
            e.ResetBatches();
            e.Epoch = epoch;
        }
        e.AddBatch(new BatchMetadata(firstSeq, lastSeq, firstOffset, lastOffset, timestamp));
        if (lastOffset + 1 > MapEndOffset) MapEndOffset = lastOffset + 1;
    }

    /// <summary>Replays a batch header read from the log (recovery). Non-idempotent batches only move the end offset.</summary>
    public void Replay(ReadOnlySpan<byte> batchHeader)
    {
        var b = new RecordBatch(batchHeader);
        if (b.HasProducerId && !b.IsControl)
            Update(b.ProducerId, b.ProducerEpoch, b.BaseSequence, b.LastSequence, b.BaseOffset, b.LastOffset, b.MaxTimestamp);
        else if (b.NextOffset > MapEndOffset) MapEndOffset = b.NextOffset;
    }

    public void SetMapEndOffset(long offset) => MapEndOffset = offset;

    /// <summary>Forgets producers idle longer than producer.id.expiration.ms.</summary>
    public int RemoveExpired(long nowMs)
    {
        var expired = _producers.Values.Where(e => e.LastTimestamp >= 0 && nowMs - e.LastTimestamp >= ProducerIdExpirationMs).Select(e => e.ProducerId).ToList();
        foreach (var id in expired) _producers.Remove(id);
        return expired.Count;
    }

    /// <summary>Drops producers whose last batch is below the new log start offset (retention, DeleteRecords), as Kafka does.</summary>
    public void OnLogStartOffsetIncremented(long logStartOffset)
    {
        var gone = _producers.Values.Where(e => e.LastOffset >= 0 && e.LastOffset < logStartOffset).Select(e => e.ProducerId).ToList();
        foreach (var id in gone) _producers.Remove(id);
        foreach (var f in ListSnapshots().Where(s => s.Offset < logStartOffset && s.Offset != LatestSnapshotOffset())) File.Delete(f.Path);
    }

    /// <summary>Drops all state at or past <paramref name="offset"/> by reloading from a snapshot below it (truncation). Returns the snapshot offset used.</summary>
    public long ResetTo(long offset)
    {
        foreach (var s in ListSnapshots().Where(s => s.Offset > offset)) File.Delete(s.Path);
        _producers.Clear();
        MapEndOffset = 0;
        return LoadLatestSnapshot(offset) ?? 0;
    }

    // ---------------------------------------------------------------- snapshots

    public static string SnapshotPath(string dir, long offset) =>
        Path.Combine(dir, offset.ToString("D20", CultureInfo.InvariantCulture) + SnapshotSuffix);

    public IEnumerable<(long Offset, string Path)> ListSnapshots()
    {
        if (!Directory.Exists(dir)) yield break;
        foreach (var f in Directory.EnumerateFiles(dir, "*" + SnapshotSuffix).Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileNameWithoutExtension(f);
            if (long.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out long off)) yield return (off, f);
        }
    }

    private long LatestSnapshotOffset() => ListSnapshots().Select(s => s.Offset).DefaultIfEmpty(-1).Max();

    /// <summary>
    /// Writes the state as of <see cref="MapEndOffset"/> (Kafka's snapshot format v1: version int16,
    /// crc32c uint32 of the rest, then an int32-counted array of producer entries) and keeps only
    /// the two newest snapshots. The file is written aside and renamed (<see cref="DurableFile"/>), so a
    /// crash leaves either the old set or the new one; <paramref name="fsync"/> makes it durable too.
    /// </summary>
    public void TakeSnapshot(bool fsync)
    {
        const int entrySize = 8 + 2 + 4 + 8 + 4 + 8 + 4 + 8;
        var entries = _producers.Values.Where(e => e.Batches.Count > 0).ToList();
        var buf = new byte[2 + 4 + 4 + entries.Count * entrySize];
        BinaryPrimitives.WriteInt16BigEndian(buf, SnapshotVersion);
        BinaryPrimitives.WriteInt32BigEndian(buf.AsSpan(6), entries.Count);
        int p = 10;
        foreach (var e in entries)
        {
            var last = e.Batches.Last();
            BinaryPrimitives.WriteInt64BigEndian(buf.AsSpan(p), e.ProducerId); p += 8;
            BinaryPrimitives.WriteInt16BigEndian(buf.AsSpan(p), e.Epoch); p += 2;
            BinaryPrimitives.WriteInt32BigEndian(buf.AsSpan(p), last.LastSequence); p += 4;
            BinaryPrimitives.WriteInt64BigEndian(buf.AsSpan(p), last.LastOffset); p += 8;
            BinaryPrimitives.WriteInt32BigEndian(buf.AsSpan(p), (int)(last.LastOffset - last.FirstOffset)); p += 4;
            BinaryPrimitives.WriteInt64BigEndian(buf.AsSpan(p), e.LastTimestamp); p += 8;
            BinaryPrimitives.WriteInt32BigEndian(buf.AsSpan(p), e.CoordinatorEpoch); p += 4;
            BinaryPrimitives.WriteInt64BigEndian(buf.AsSpan(p), e.CurrentTxnFirstOffset); p += 8;
        }
        BinaryPrimitives.WriteUInt32BigEndian(buf.AsSpan(2), Crc32C.Compute(buf.AsSpan(6)));
        DurableFile.Write(_io, SnapshotPath(dir, MapEndOffset), buf, fsync);
        foreach (var old in ListSnapshots().OrderByDescending(s => s.Offset).Skip(2)) File.Delete(old.Path);
    }

    /// <summary>Loads the newest valid snapshot at or below <paramref name="maxOffset"/>; returns its offset, or null when there is none.</summary>
    public long? LoadLatestSnapshot(long maxOffset)
    {
        foreach (var (offset, path) in ListSnapshots().Where(s => s.Offset <= maxOffset).OrderByDescending(s => s.Offset))
        {
            if (TryLoad(path))
            {
                MapEndOffset = offset;
                return offset;
            }
            File.Delete(path); // corrupt: fall back to an older one
        }
        return null;
    }

    private bool TryLoad(string path)
    {
        const int entrySize = 8 + 2 + 4 + 8 + 4 + 8 + 4 + 8;
        byte[] buf;
        try { buf = File.ReadAllBytes(path); }
        catch (IOException) { return false; }
        if (buf.Length < 10 || BinaryPrimitives.ReadInt16BigEndian(buf) != SnapshotVersion) return false;
        if (BinaryPrimitives.ReadUInt32BigEndian(buf.AsSpan(2)) != Crc32C.Compute(buf.AsSpan(6))) return false;
        int n = BinaryPrimitives.ReadInt32BigEndian(buf.AsSpan(6));
        if (n < 0 || buf.Length != 10 + (long)n * entrySize) return false;
        _producers.Clear();
        int p = 10;
        for (int i = 0; i < n; i++)
        {
            long pid = BinaryPrimitives.ReadInt64BigEndian(buf.AsSpan(p)); p += 8;
            short epoch = BinaryPrimitives.ReadInt16BigEndian(buf.AsSpan(p)); p += 2;
            int lastSeq = BinaryPrimitives.ReadInt32BigEndian(buf.AsSpan(p)); p += 4;
            long lastOffset = BinaryPrimitives.ReadInt64BigEndian(buf.AsSpan(p)); p += 8;
            int offsetDelta = BinaryPrimitives.ReadInt32BigEndian(buf.AsSpan(p)); p += 4;
            long ts = BinaryPrimitives.ReadInt64BigEndian(buf.AsSpan(p)); p += 8;
            int coordEpoch = BinaryPrimitives.ReadInt32BigEndian(buf.AsSpan(p)); p += 4;
            long txnFirst = BinaryPrimitives.ReadInt64BigEndian(buf.AsSpan(p)); p += 8;
            var e = new ProducerStateEntry(pid) { Epoch = epoch, CoordinatorEpoch = coordEpoch, CurrentTxnFirstOffset = txnFirst };
            int firstSeq = lastSeq == RecordBatch.NoSequence ? lastSeq : Math.Max(0, lastSeq - offsetDelta);
            e.AddBatch(new BatchMetadata(firstSeq, lastSeq, lastOffset - offsetDelta, lastOffset, ts));
            _producers[pid] = e;
        }
        return true;
    }

    /// <summary>Forgets every producer and snapshot: the log starts over, empty, at <paramref name="offset"/>.</summary>
    public void TruncateFullyAndStartAt(long offset)
    {
        DeleteAllSnapshots();
        _producers.Clear();
        MapEndOffset = offset;
    }

    public void DeleteAllSnapshots()
    {
        foreach (var s in ListSnapshots()) File.Delete(s.Path);
    }
}
