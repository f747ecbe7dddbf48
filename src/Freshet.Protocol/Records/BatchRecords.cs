namespace Freshet.Protocol.Records;

/// <summary>A record of a batch with the absolute offset and timestamp the batch header gives it.</summary>
public readonly ref struct BatchRecord(Record record, long offset, long timestamp)
{
    public Record Record { get; } = record;

    /// <summary>baseOffset + offsetDelta.</summary>
    public long Offset { get; } = offset;

    /// <summary>baseTimestamp + timestampDelta, or the batch's maxTimestamp in a LogAppendTime batch.</summary>
    public long Timestamp { get; } = timestamp;
}

/// <summary>
/// The records of one v2 batch, for readers (consumers, tools, compaction):
/// <c>foreach (var r in new BatchRecords(batch, scratch)) ...</c>. A compressed batch is decompressed
/// into <paramref name="scratch"/> up front (it is cleared first), so the records are slices of it and
/// stay valid until it is written again. The CRC is not checked here (see
/// <see cref="RecordBatchValidator"/>); malformed records throw <see cref="InvalidDataException"/>.
/// </summary>
public readonly ref struct BatchRecords
{
    private readonly ReadOnlySpan<byte> _records;
    private readonly long _baseOffset;
    private readonly long _baseTimestamp;
    private readonly long _logAppendTime;
    private readonly bool _isLogAppendTime;

    /// <param name="batch">Exactly one batch.</param>
    /// <param name="scratch">Where a compressed records section is decompressed; may be null for uncompressed batches.</param>
    /// <exception cref="InvalidDataException">Not a whole v2 batch, an unknown codec, or corrupt compressed data.</exception>
    public BatchRecords(ReadOnlySpan<byte> batch, PooledBufferWriter? scratch)
    {
        if (batch.Length < RecordBatch.HeaderSize) throw new InvalidDataException($"batch of {batch.Length} bytes is shorter than its header");
        var b = new RecordBatch(batch);
        if (b.Magic != RecordBatch.CurrentMagic) throw new InvalidDataException($"batch magic {b.Magic}, expected 2");
        if ((long)b.BatchLength + RecordBatch.LogOverhead != batch.Length)
            throw new InvalidDataException($"batchLength {b.BatchLength} does not match the {batch.Length - RecordBatch.LogOverhead} bytes after it");
        if (!RecordCompression.IsKnown(b.Compression)) throw new InvalidDataException($"unknown compression codec id {(int)b.Compression}");
        Batch = batch;
        Count = b.RecordsCount;
        _baseOffset = b.BaseOffset;
        _baseTimestamp = b.BaseTimestamp;
        _isLogAppendTime = b.TimestampType == TimestampType.LogAppendTime;
        _logAppendTime = b.MaxTimestamp;
        if (b.Compression == CompressionType.None)
        {
            _records = b.Records;
            return;
        }
        ArgumentNullException.ThrowIfNull(scratch);
        scratch.Clear();
        RecordCompression.Decompress(b.Compression, b.Records, scratch);
        _records = scratch.WrittenSpan;
    }

    /// <summary>The batch (header and records as stored).</summary>
    public ReadOnlySpan<byte> Batch { get; }

    /// <summary>recordsCount from the header.</summary>
    public int Count { get; }

    /// <summary>The (decompressed) records section.</summary>
    public ReadOnlySpan<byte> RecordsSection => _records;

    public Enumerator GetEnumerator() => new(_records, _baseOffset, _baseTimestamp, _isLogAppendTime, _logAppendTime);

    public ref struct Enumerator
    {
        private RecordReader _reader;
        private readonly long _baseOffset;
        private readonly long _baseTimestamp;
        private readonly bool _isLogAppendTime;
        private readonly long _logAppendTime;
        private BatchRecord _current;

        internal Enumerator(ReadOnlySpan<byte> records, long baseOffset, long baseTimestamp, bool isLogAppendTime, long logAppendTime)
        {
            _reader = new RecordReader(records);
            _baseOffset = baseOffset;
            _baseTimestamp = baseTimestamp;
            _isLogAppendTime = isLogAppendTime;
            _logAppendTime = logAppendTime;
            _current = default;
        }

        public readonly BatchRecord Current => _current;

        public bool MoveNext()
        {
            if (_reader.TryRead(out var r))
            {
                long ts = _isLogAppendTime ? _logAppendTime : unchecked(_baseTimestamp + r.TimestampDelta);
                _current = new BatchRecord(r, _baseOffset + r.OffsetDelta, ts);
                return true;
            }
            if (!_reader.IsValid) throw new InvalidDataException("malformed record in batch");
            return false;
        }
    }
}
