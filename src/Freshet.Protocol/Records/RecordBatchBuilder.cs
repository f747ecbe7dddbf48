using System.Buffers.Binary;
using System.Text;

namespace Freshet.Protocol.Records;

/// <summary>A record header to append: UTF-8 key and nullable value.</summary>
public readonly struct Header
{
    private readonly ReadOnlyMemory<byte> _value;

    /// <summary>A header whose value is the array's bytes, or null when the array is null.</summary>
    public Header(string key, byte[]? value)
    {
        Key = key;
        _value = value;
        IsValueNull = value is null;
    }

    /// <summary>A header with a non-null value (pass <paramref name="isNull"/> for a null one).</summary>
    public Header(string key, ReadOnlyMemory<byte> value, bool isNull = false)
    {
        Key = key;
        _value = isNull ? default : value;
        IsValueNull = isNull;
    }

    public string Key { get; }
    public ReadOnlyMemory<byte> Value => _value;
    public bool IsValueNull { get; }
}

/// <summary>
/// Builds one record batch v2 (layout in <see cref="RecordBatch"/>). Records are encoded as they are
/// appended into a pooled buffer; <see cref="WriteTo"/> adds the header, compresses the records section
/// when asked, and fills in batchLength, lastOffsetDelta, the timestamps, recordsCount and the CRC.
/// <para>
/// The batch's baseTimestamp is the first record's timestamp and every record stores its delta from it
/// (negative deltas are fine); maxTimestamp is the largest record timestamp, or
/// <see cref="LogAppendTime"/> for a LogAppendTime batch. Offset deltas are 0, 1, 2... in append order.
/// </para>
/// Reusable: <see cref="Reset"/> drops the records and keeps the settings. Dispose returns the buffer.
/// </summary>
public sealed class RecordBatchBuilder : IDisposable
{
    private readonly PooledBufferWriter _records;
    private int _count;
    private long _baseTimestamp;
    private long _maxTimestamp;

    public RecordBatchBuilder(CompressionType compression = CompressionType.None, int initialCapacity = 1024)
    {
        Compression = compression;
        _records = new PooledBufferWriter(initialCapacity);
    }

    public CompressionType Compression { get; set; }
    public long BaseOffset { get; set; }
    public int PartitionLeaderEpoch { get; set; } = RecordBatch.NoPartitionLeaderEpoch;
    public long ProducerId { get; set; } = RecordBatch.NoProducerId;
    public short ProducerEpoch { get; set; } = RecordBatch.NoProducerEpoch;
    public int BaseSequence { get; set; } = RecordBatch.NoSequence;
    public bool IsTransactional { get; set; }
    public bool IsControl { get; set; }
    public TimestampType TimestampType { get; set; } = TimestampType.CreateTime;

    /// <summary>The batch's maxTimestamp when <see cref="TimestampType"/> is LogAppendTime (null: the largest record timestamp).</summary>
    public long? LogAppendTime { get; set; }

    /// <summary>Records appended since construction or <see cref="Reset"/>.</summary>
    public int Count => _count;

    /// <summary>Size of the batch if written uncompressed: header plus encoded records.</summary>
    public int UncompressedSize => RecordBatch.HeaderSize + _records.WrittenCount;

    /// <summary>The encoded records section so far (uncompressed).</summary>
    public ReadOnlySpan<byte> RecordsSection => _records.WrittenSpan;

    /// <summary>Appends a record; null arrays are null keys and values.</summary>
    public RecordBatchBuilder Append(long timestamp, byte[]? key, byte[]? value, params ReadOnlySpan<Header> headers) =>
        Append(timestamp, key, key is null, value, value is null, headers);

    /// <summary>Appends a record with a non-null key and value.</summary>
    public RecordBatchBuilder Append(long timestamp, ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, params ReadOnlySpan<Header> headers) =>
        Append(timestamp, key, false, value, false, headers);

    /// <summary>Appends a record; a key or value flagged null is written as null whatever the span holds.</summary>
    public RecordBatchBuilder Append(long timestamp, ReadOnlySpan<byte> key, bool keyIsNull, ReadOnlySpan<byte> value, bool valueIsNull,
        ReadOnlySpan<Header> headers = default)
    {
        int headersSize = 0;
        foreach (var h in headers)
        {
            ArgumentNullException.ThrowIfNull(h.Key);
            int kl = Encoding.UTF8.GetByteCount(h.Key);
            headersSize += Varint.SizeOfVarInt(kl) + kl + BytesSize(h.Value.Span, h.IsValueNull);
        }
        var w = BeginRecord(timestamp, key, keyIsNull, value, valueIsNull, headers.Length, headersSize, out int pos);
        foreach (var h in headers)
        {
            int kl = Encoding.UTF8.GetByteCount(h.Key);
            pos += Varint.WriteVarInt(w[pos..], kl);
            pos += Encoding.UTF8.GetBytes(h.Key, w[pos..]);
            pos += WriteBytes(w[pos..], h.Value.Span, h.IsValueNull);
        }
        _records.Advance(pos);
        return this;
    }

    /// <summary>
    /// Appends a copy of a record read from another batch (its headers are copied as encoded), with a
    /// new timestamp; the offset delta is this builder's next one. For re-batching and compaction.
    /// </summary>
    public RecordBatchBuilder Append(long timestamp, Record record)
    {
        var w = BeginRecord(timestamp, record.Key, record.KeyIsNull, record.Value, record.ValueIsNull,
            record.HeaderCount, record.HeaderBytes.Length, out int pos);
        record.HeaderBytes.CopyTo(w[pos..]);
        _records.Advance(pos + record.HeaderBytes.Length);
        return this;
    }

    /// <summary>
    /// Writes everything of the record but its headers (sized <paramref name="headersSize"/>) into a span
    /// of the records buffer; the caller writes the headers from <paramref name="pos"/> and advances.
    /// </summary>
    private Span<byte> BeginRecord(long timestamp, ReadOnlySpan<byte> key, bool keyIsNull, ReadOnlySpan<byte> value, bool valueIsNull,
        int headerCount, int headersSize, out int pos)
    {
        if (_count == int.MaxValue) throw new InvalidOperationException("a batch holds at most int.MaxValue records");
        if (_count == 0)
        {
            _baseTimestamp = timestamp;
            _maxTimestamp = timestamp;
        }
        long delta = timestamp - _baseTimestamp;
        int offsetDelta = _count;
        long body = 1L + Varint.SizeOfVarLong(delta) + Varint.SizeOfVarInt(offsetDelta)
            + BytesSize(key, keyIsNull) + BytesSize(value, valueIsNull)
            + Varint.SizeOfVarInt(headerCount) + headersSize;
        if (body > int.MaxValue - 5) throw new InvalidOperationException($"record of {body} bytes is too large");
        int total = Varint.SizeOfVarInt((int)body) + (int)body;
        var w = _records.GetSpan(total);
        int p = Varint.WriteVarInt(w, (int)body);
        w[p++] = 0; // record attributes: unused, always 0
        p += Varint.WriteVarLong(w[p..], delta);
        p += Varint.WriteVarInt(w[p..], offsetDelta);
        p += WriteBytes(w[p..], key, keyIsNull);
        p += WriteBytes(w[p..], value, valueIsNull);
        p += Varint.WriteVarInt(w[p..], headerCount);
        pos = p;
        _count++;
        if (timestamp > _maxTimestamp) _maxTimestamp = timestamp;
        return w;
    }

    private static int BytesSize(ReadOnlySpan<byte> b, bool isNull) =>
        isNull ? Varint.SizeOfVarInt(-1) : Varint.SizeOfVarInt(b.Length) + b.Length;

    private static int WriteBytes(Span<byte> w, ReadOnlySpan<byte> b, bool isNull)
    {
        if (isNull) return Varint.WriteVarInt(w, -1);
        int n = Varint.WriteVarInt(w, b.Length);
        b.CopyTo(w[n..]);
        return n + b.Length;
    }

    /// <summary>Appends the batch to <paramref name="dst"/> and returns its size. The builder keeps its records.</summary>
    /// <exception cref="InvalidOperationException">No record was appended (a v2 batch needs at least one).</exception>
    public int WriteTo(PooledBufferWriter dst)
    {
        ArgumentNullException.ThrowIfNull(dst);
        if (_count == 0) throw new InvalidOperationException("a record batch needs at least one record");
        int start = dst.WrittenCount;
        dst.GetSpan(RecordBatch.HeaderSize)[..RecordBatch.HeaderSize].Clear();
        dst.Advance(RecordBatch.HeaderSize);
        try
        {
            RecordCompression.Compress(Compression, _records.WrittenSpan, dst);
        }
        catch
        {
            dst.Truncate(start);
            throw;
        }
        int size = dst.WrittenCount - start;
        var b = dst.WrittenSpanMutable.Slice(start, size);
        short attributes = (short)((int)Compression & RecordBatch.CompressionMask);
        long maxTimestamp = _maxTimestamp;
        if (TimestampType == TimestampType.LogAppendTime)
        {
            attributes |= RecordBatch.TimestampTypeFlag;
            maxTimestamp = LogAppendTime ?? _maxTimestamp;
        }
        if (IsTransactional) attributes |= RecordBatch.TransactionalFlag;
        if (IsControl) attributes |= RecordBatch.ControlFlag;

        BinaryPrimitives.WriteInt64BigEndian(b, BaseOffset);
        BinaryPrimitives.WriteInt32BigEndian(b[RecordBatch.LengthOffset..], size - RecordBatch.LogOverhead);
        BinaryPrimitives.WriteInt32BigEndian(b[RecordBatch.PartitionLeaderEpochOffset..], PartitionLeaderEpoch);
        b[RecordBatch.MagicOffset] = RecordBatch.CurrentMagic;
        BinaryPrimitives.WriteInt16BigEndian(b[RecordBatch.AttributesOffset..], attributes);
        BinaryPrimitives.WriteInt32BigEndian(b[RecordBatch.LastOffsetDeltaOffset..], _count - 1);
        BinaryPrimitives.WriteInt64BigEndian(b[RecordBatch.BaseTimestampOffset..], _baseTimestamp);
        BinaryPrimitives.WriteInt64BigEndian(b[RecordBatch.MaxTimestampOffset..], maxTimestamp);
        BinaryPrimitives.WriteInt64BigEndian(b[RecordBatch.ProducerIdOffset..], ProducerId);
        BinaryPrimitives.WriteInt16BigEndian(b[RecordBatch.ProducerEpochOffset..], ProducerEpoch);
        BinaryPrimitives.WriteInt32BigEndian(b[RecordBatch.BaseSequenceOffset..], BaseSequence);
        BinaryPrimitives.WriteInt32BigEndian(b[RecordBatch.RecordsCountOffset..], _count);
        RecordBatch.UpdateCrc(b);
        return size;
    }

    /// <summary>The batch as a new array (tests, tools, cold paths).</summary>
    public byte[] Build()
    {
        using var w = new PooledBufferWriter(UncompressedSize + 64);
        WriteTo(w);
        return w.ToArray();
    }

    /// <summary>Drops the appended records; the batch settings stay.</summary>
    public void Reset()
    {
        _records.Clear();
        _count = 0;
        _baseTimestamp = 0;
        _maxTimestamp = 0;
    }

    public void Dispose() => _records.Dispose();
}
