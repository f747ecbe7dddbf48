using Freshet.Protocol.Records;

namespace Freshet.Metadata.Raft;

/// <summary>
/// An <see cref="IRaftLog"/> in memory, for the simulation and unit tests. It models durability:
/// <see cref="Crash"/> drops what was not flushed (keeping a random part of it, as a page cache might),
/// while truncations and stored snapshots count as durable at once.
/// </summary>
public sealed class MemoryRaftLog : IRaftLog
{
    private readonly List<StoredBatch> _batches = [];
    private readonly List<(int Epoch, long StartOffset)> _epochs = [];
    private readonly List<RaftSnapshot> _snapshots = [];
    private long _logStartOffset;
    private long _flushedEndOffset;
    /// <summary>Epoch of the entry just before the log start (the snapshot's), 0 for a log from offset 0.</summary>
    private int _baseEpoch;

    private readonly record struct StoredBatch(long BaseOffset, long NextOffset, int Epoch, byte[] Bytes);

    public long LogStartOffset => _logStartOffset;
    public long EndOffset => _batches.Count > 0 ? _batches[^1].NextOffset : _logStartOffset;
    public long FlushedEndOffset => _flushedEndOffset;
    public int LastFetchedEpoch => _epochs.Count > 0 ? _epochs[^1].Epoch : _baseEpoch;
    public OffsetAndEpoch? LatestSnapshotId => _snapshots.Count > 0 ? _snapshots[^1].Id : null;

    /// <summary>Number of batches held (tests).</summary>
    public int BatchCount => _batches.Count;

    /// <summary>Truncations that removed entries (tests: proof that divergence was exercised).</summary>
    public int TruncationCount { get; private set; }

    public OffsetAndEpoch EndOffsetForEpoch(int epoch)
    {
        if (epoch < _baseEpoch) return OffsetAndEpoch.Unknown;
        int i = _epochs.Count - 1;
        while (i >= 0 && _epochs[i].Epoch > epoch) i--;
        if (i < 0) return new OffsetAndEpoch(_epochs.Count > 0 ? _epochs[0].StartOffset : EndOffset, _baseEpoch);
        return new OffsetAndEpoch(i + 1 < _epochs.Count ? _epochs[i + 1].StartOffset : EndOffset, _epochs[i].Epoch);
    }

    public long AppendAsLeader(ReadOnlyMemory<byte> batch, int epoch)
    {
        var b = new RecordBatch(batch.Span);
        if (RecordBatch.PeekSize(batch.Span) != batch.Length) throw new ArgumentException("expected exactly one batch", nameof(batch));
        if (b.BaseOffset != EndOffset) throw new ArgumentException($"batch starts at {b.BaseOffset}, the log ends at {EndOffset}", nameof(batch));
        if (b.PartitionLeaderEpoch != epoch) throw new ArgumentException($"batch epoch {b.PartitionLeaderEpoch} is not {epoch}", nameof(batch));
        Add(batch.Span);
        return b.LastOffset;
    }

    public long AppendAsFollower(ReadOnlyMemory<byte> batches)
    {
        var span = batches.Span;
        int pos = 0;
        while (pos < span.Length)
        {
            if (span.Length - pos < RecordBatch.HeaderSize) throw new InvalidDataException("truncated batch in fetched records");
            int size = RecordBatch.PeekSize(span[pos..]);
            if (size < RecordBatch.HeaderSize || size > span.Length - pos) throw new InvalidDataException("truncated batch in fetched records");
            var batch = span.Slice(pos, size);
            var b = new RecordBatch(batch);
            pos += size;
            if (b.NextOffset <= EndOffset) continue;
            if (b.BaseOffset != EndOffset) throw new InvalidDataException($"fetched batch starts at {b.BaseOffset}, the log ends at {EndOffset}");
            Add(batch);
        }
        return EndOffset;
    }

    private void Add(ReadOnlySpan<byte> batch)
    {
        var b = new RecordBatch(batch);
        int epoch = b.PartitionLeaderEpoch;
        if (epoch < LastFetchedEpoch) throw new InvalidOperationException($"batch epoch {epoch} is older than the log's last epoch {LastFetchedEpoch}");
        if (epoch > LastFetchedEpoch || _epochs.Count == 0) _epochs.Add((epoch, b.BaseOffset));
        _batches.Add(new StoredBatch(b.BaseOffset, b.NextOffset, epoch, batch.ToArray()));
    }

    public void TruncateTo(long offset)
    {
        if (offset < _logStartOffset) throw new ArgumentOutOfRangeException(nameof(offset), $"truncation to {offset} is below the log start {_logStartOffset}");
        if (offset >= EndOffset) return;
        int i = FindBatch(offset); // the batch holding offset goes whole
        _batches.RemoveRange(i, _batches.Count - i);
        TruncationCount++;
        _flushedEndOffset = Math.Min(_flushedEndOffset, EndOffset);
        RebuildEpochs();
    }

    public void Flush() => _flushedEndOffset = EndOffset;

    public ReadOnlyMemory<byte> Read(long offset, int maxBytes)
    {
        if (offset < _logStartOffset || offset > EndOffset)
            throw new ArgumentOutOfRangeException(nameof(offset), $"offset {offset} is outside [{_logStartOffset}, {EndOffset}]");
        if (offset == EndOffset) return ReadOnlyMemory<byte>.Empty;
        int first = FindBatch(offset);
        int last = first, total = _batches[first].Bytes.Length;
        while (last + 1 < _batches.Count && total + _batches[last + 1].Bytes.Length <= maxBytes) total += _batches[++last].Bytes.Length;
        if (first == last) return _batches[first].Bytes;
        var bytes = new byte[total];
        int pos = 0;
        for (int i = first; i <= last; i++)
        {
            _batches[i].Bytes.CopyTo(bytes, pos);
            pos += _batches[i].Bytes.Length;
        }
        return bytes;
    }

    public RaftSnapshot? ReadSnapshot(OffsetAndEpoch id) => _snapshots.Find(s => s.Id == id);

    public bool TryReadSnapshotChunk(OffsetAndEpoch id, long position, int maxBytes, out long size, out ReadOnlyMemory<byte> chunk)
    {
        var s = ReadSnapshot(id);
        if (s is null || position < 0 || position > s.Data.Length)
        {
            size = s?.Data.Length ?? 0;
            chunk = default;
            return false;
        }
        size = s.Data.Length;
        chunk = s.Data.Slice((int)position, (int)Math.Min(maxBytes, s.Data.Length - position));
        return true;
    }

    public void StoreSnapshot(RaftSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        if (_snapshots.Exists(s => s.Id == snapshot.Id)) return;
        _snapshots.Add(snapshot with { Data = snapshot.Data.ToArray() });
        _snapshots.Sort((a, b) => a.Id.Offset.CompareTo(b.Id.Offset));
        // The newest is what lagging followers get; one older is kept so a download in progress can finish.
        while (_snapshots.Count > 2) _snapshots.RemoveAt(0);
    }

    public void DeleteBeforeSnapshot(OffsetAndEpoch id)
    {
        if (id.Offset <= _logStartOffset) return;
        if (id.Offset > EndOffset) throw new ArgumentOutOfRangeException(nameof(id), $"snapshot end {id.Offset} is past the log end {EndOffset}");
        int i = id.Offset == EndOffset ? _batches.Count : FindBatch(id.Offset);
        if (i < _batches.Count && _batches[i].BaseOffset != id.Offset) throw new ArgumentException($"snapshot end {id.Offset} is inside a batch", nameof(id));
        _batches.RemoveRange(0, i);
        _logStartOffset = id.Offset;
        _flushedEndOffset = Math.Max(_flushedEndOffset, id.Offset);
        _baseEpoch = id.Epoch;
        RebuildEpochs();
    }

    public void ResetToSnapshot(OffsetAndEpoch id)
    {
        _batches.Clear();
        _logStartOffset = id.Offset;
        _flushedEndOffset = id.Offset;
        _baseEpoch = id.Epoch;
        _epochs.Clear();
    }

    /// <summary>
    /// A simulated crash: entries past <see cref="FlushedEndOffset"/> are lost, except a random number of
    /// whole batches right after it that the "disk" happened to keep.
    /// </summary>
    public void Crash(Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        int firstUnflushed = _batches.FindIndex(b => b.NextOffset > _flushedEndOffset);
        if (firstUnflushed < 0) return;
        int keep = random.Next(_batches.Count - firstUnflushed + 1);
        int cut = firstUnflushed + keep;
        if (cut < _batches.Count) TruncateTo(_batches[cut].BaseOffset);
        _flushedEndOffset = EndOffset;
    }

    /// <summary>Index of the batch holding <paramref name="offset"/> (which must be in the log).</summary>
    private int FindBatch(long offset)
    {
        int lo = 0, hi = _batches.Count - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >>> 1;
            if (_batches[mid].BaseOffset <= offset) lo = mid;
            else hi = mid - 1;
        }
        return lo;
    }

    private void RebuildEpochs()
    {
        _epochs.Clear();
        foreach (var b in _batches)
            if (_epochs.Count == 0 ? b.Epoch >= _baseEpoch : b.Epoch > _epochs[^1].Epoch) _epochs.Add((b.Epoch, b.BaseOffset));
    }
}
