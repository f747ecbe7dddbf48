using System.Buffers;
using System.Buffers.Binary;
using System.IO.Hashing;

namespace Freshet.Protocol.Records;

/// <summary>What <see cref="LegacyMessageSet.ToRecordBatchV2"/> did.</summary>
public readonly struct LegacyConversionResult
{
    public ErrorCode Error { get; init; }
    public string? Message { get; init; }
    public bool IsValid => Error == ErrorCode.None;

    /// <summary>Magic of the first message (0 or 1).</summary>
    public byte Magic { get; init; }

    /// <summary>Codec of the first message (a wrapper's when compressed).</summary>
    public CompressionType SourceCompression { get; init; }

    /// <summary>Records in the written batch (inner messages of wrappers counted one by one); 0 when the set was empty and nothing was written.</summary>
    public int RecordCount { get; init; }

    /// <summary>Bytes appended to the output (the batch).</summary>
    public int BatchSize { get; init; }
}

/// <summary>
/// The message formats before record batches (magic 0 and 1, Kafka 0.8-0.10), which produce v0-2 carry
/// and fetch v0-3 return. A message set is a sequence of entries, integers big-endian:
/// <code>
/// offset       int64
/// messageSize  int32   bytes of the message below
/// crc          uint32  CRC-32 (IEEE) of magic..end of value
/// magic        int8    0 or 1
/// attributes   int8    bits 0-2 codec (0 none, 1 gzip, 2 snappy, 3 lz4), bit 3 (magic 1) LogAppendTime
/// timestamp    int64   magic 1 only
/// key          int32 length (-1 = null) + bytes
/// value        int32 length (-1 = null) + bytes
/// </code>
/// A compressed message is a wrapper: its value is the compressed bytes of an inner message set of
/// uncompressed messages of the same magic. Inner offsets are absolute in magic 0 and relative
/// (0, 1, ...; the wrapper carries the absolute offset of the last one) in magic 1; a LogAppendTime
/// magic 1 wrapper's timestamp applies to all its inner messages. The offset, size and magic sit at
/// the same places as in a v2 batch (magic at byte 16), so <see cref="PeekMagic"/> works on either.
/// </summary>
public static class LegacyMessageSet
{
    public const int OffsetLength = 8;
    public const int SizeLength = 4;
    public const int LogOverhead = OffsetLength + SizeLength;

    /// <summary>crc, magic, attributes, key length, value length.</summary>
    public const int MessageOverheadV0 = 4 + 1 + 1 + 4 + 4;

    /// <summary>As v0 plus the timestamp.</summary>
    public const int MessageOverheadV1 = MessageOverheadV0 + 8;

    public const byte CodecMask = 0x07;
    public const byte TimestampTypeFlag = 0x08;

    /// <summary>Bound on one wrapper's decompressed inner message set.</summary>
    public const int DefaultMaxDecompressedSize = RecordBatchValidator.DefaultMaxDecompressedSize;

    /// <summary>Magic of the first entry of a record set in any format (byte 16), or -1 when it is too short.</summary>
    public static int PeekMagic(ReadOnlySpan<byte> records) => records.Length > RecordBatch.MagicOffset ? records[RecordBatch.MagicOffset] : -1;

    /// <summary>
    /// Up-converts a produce v0-2 message set into one v2 batch appended to <paramref name="output"/>, checking
    /// every CRC (outer and inner). Offsets are renumbered 0..n-1 (the broker assigns the real ones) and the
    /// batch has baseOffset 0, no producer id and CreateTime; magic 0 messages get timestamp -1 (none), magic 1
    /// messages their own, or their wrapper's when the wrapper is LogAppendTime.
    /// <para>The batch is compressed with <paramref name="compression"/>, or when null with the first message's
    /// codec: a compressed legacy producer keeps its compression, as Kafka does for compression.type=producer.</para>
    /// Errors: CORRUPT_MESSAGE for bad framing, CRCs, compressed data, a compressed wrapper with a null value,
    /// no inner messages, nested compression or inner messages of another magic; INVALID_RECORD when an
    /// entry is not magic 0 or 1 (route magic 2 to <see cref="RecordBatchValidator"/>);
    /// UNSUPPORTED_COMPRESSION_TYPE for codec ids above lz4 (zstd exists only with magic 2). An empty set
    /// writes nothing and is not an error (Kafka appends nothing).
    /// </summary>
    public static LegacyConversionResult ToRecordBatchV2(ReadOnlySpan<byte> messageSet, PooledBufferWriter output,
        CompressionType? compression = null, int maxDecompressedSize = DefaultMaxDecompressedSize)
    {
        ArgumentNullException.ThrowIfNull(output);
        if (messageSet.IsEmpty) return default;
        using var builder = new RecordBatchBuilder(initialCapacity: Math.Min(messageSet.Length + 64, 1 << 20));
        using var scratch = new PooledBufferWriter(0, maxDecompressedSize);
        var state = new UpState { Builder = builder, Scratch = scratch, Magic = messageSet.Length > RecordBatch.MagicOffset ? messageSet[RecordBatch.MagicOffset] : (byte)0 };
        var error = ParseSet(messageSet, state, wrapper: null, out string? message);
        var result = new LegacyConversionResult { Magic = state.Magic, SourceCompression = state.SourceCompression ?? CompressionType.None };
        if (error != ErrorCode.None) return result with { Error = error, Message = message };
        if (builder.Count == 0) return result;
        builder.Compression = compression ?? state.SourceCompression ?? CompressionType.None;
        int size = builder.WriteTo(output);
        return result with { RecordCount = builder.Count, BatchSize = size };
    }

    private sealed class UpState
    {
        public required RecordBatchBuilder Builder;
        public required PooledBufferWriter Scratch;
        public byte Magic;
        public CompressionType? SourceCompression;
    }

    /// <summary>The wrapper an inner message set came from.</summary>
    private readonly record struct Wrapper(byte Magic, long? LogAppendTime);

    private static ErrorCode ParseSet(ReadOnlySpan<byte> set, UpState state, Wrapper? wrapper, out string? message)
    {
        int pos = 0;
        while (pos < set.Length)
        {
            int left = set.Length - pos;
            if (left < LogOverhead) return Corrupt($"{left} bytes after the last message, fewer than an entry's log overhead", out message);
            int size = BinaryPrimitives.ReadInt32BigEndian(set[(pos + OffsetLength)..]);
            if (size < MessageOverheadV0) return Corrupt($"message size {size} is smaller than a message's overhead", out message);
            if (size > left - LogOverhead) return Corrupt($"message size {size} runs past the {left - LogOverhead} bytes left", out message);
            var m = set.Slice(pos + LogOverhead, size);
            pos += LogOverhead + size;

            byte magic = m[4];
            if (magic > 1)
            {
                message = $"message magic {magic} in a legacy message set";
                return wrapper is null ? ErrorCode.InvalidRecord : ErrorCode.CorruptMessage;
            }
            if (wrapper is { } w && magic != w.Magic)
                return Corrupt($"inner message magic {magic} differs from its wrapper's {w.Magic}", out message);
            int overhead = magic == 0 ? MessageOverheadV0 : MessageOverheadV1;
            if (size < overhead) return Corrupt($"magic {magic} message of {size} bytes is smaller than its overhead {overhead}", out message);
            uint crc = Crc32.HashToUInt32(m[4..]);
            uint stored = BinaryPrimitives.ReadUInt32BigEndian(m);
            if (crc != stored) return Corrupt($"message CRC-32 is {crc:x8}, message says {stored:x8}", out message);

            byte attributes = m[5];
            int p = 6;
            long timestamp = RecordBatch.NoTimestamp;
            if (magic == 1)
            {
                timestamp = BinaryPrimitives.ReadInt64BigEndian(m[p..]);
                p += 8;
            }
            if (!TryReadBytes(m, ref p, out var key, out bool keyIsNull) || !TryReadBytes(m, ref p, out var value, out bool valueIsNull))
                return Corrupt("message key or value length runs past the message", out message);
            if (p != m.Length) return Corrupt($"{m.Length - p} bytes after the message value", out message);

            var codec = (CompressionType)(attributes & CodecMask);
            if (wrapper is null) state.SourceCompression ??= codec;
            if (codec == CompressionType.None)
            {
                if (wrapper is { LogAppendTime: { } appendTime }) timestamp = appendTime;
                state.Builder.Append(timestamp, key, keyIsNull, value, valueIsNull);
                continue;
            }
            if (wrapper is not null) return Corrupt("compressed message inside a compressed message", out message);
            if (codec > CompressionType.Lz4)
            {
                message = $"compression codec id {(int)codec} is not allowed with magic {magic}";
                return ErrorCode.UnsupportedCompressionType;
            }
            if (valueIsNull) return Corrupt("compressed message with a null value", out message);

            var error = Decompress(codec, magic, value, state.Scratch, out message);
            if (error != ErrorCode.None) return error;
            int before = state.Builder.Count;
            var inner = new Wrapper(magic, magic == 1 && (attributes & TimestampTypeFlag) != 0 ? timestamp : null);
            error = ParseSet(state.Scratch.WrittenSpan, state, inner, out message);
            if (error != ErrorCode.None) return error;
            if (state.Builder.Count == before) return Corrupt("compressed message holds no messages", out message);
        }
        message = null;
        return ErrorCode.None;
    }

    private static ErrorCode Decompress(CompressionType codec, byte magic, ReadOnlySpan<byte> value, PooledBufferWriter scratch, out string? message)
    {
        scratch.Clear();
        message = null;
        try
        {
            if (codec == CompressionType.Lz4 && magic == 0)
            {
                // Magic 0 LZ4 came with a miscomputed frame header checksum that Kafka accepts for this
                // magic only; put the right one in a copy so the frame decoder takes it.
                var copy = ArrayPool<byte>.Shared.Rent(value.Length);
                try
                {
                    value.CopyTo(copy);
                    RecordCompression.FixLz4HeaderChecksum(copy.AsSpan(0, value.Length));
                    RecordCompression.Decompress(codec, copy.AsSpan(0, value.Length), scratch);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(copy);
                }
            }
            else
            {
                RecordCompression.Decompress(codec, value, scratch);
            }
            return ErrorCode.None;
        }
        catch (InvalidDataException e)
        {
            return Corrupt(e.Message, out message);
        }
    }

    private static bool TryReadBytes(ReadOnlySpan<byte> m, ref int p, out ReadOnlySpan<byte> bytes, out bool isNull)
    {
        bytes = default;
        isNull = false;
        if (m.Length - p < 4) return false;
        int n = BinaryPrimitives.ReadInt32BigEndian(m[p..]);
        p += 4;
        if (n == -1)
        {
            isNull = true;
            return true;
        }
        if (n < 0 || n > m.Length - p) return false;
        bytes = m.Slice(p, n);
        p += n;
        return true;
    }

    private static ErrorCode Corrupt(string text, out string? message)
    {
        message = text;
        return ErrorCode.CorruptMessage;
    }

    /// <summary>
    /// Down-converts stored v2 batches for fetch v0-3 (which predate record batches): every record at or
    /// after <paramref name="firstOffset"/> becomes an uncompressed message of <paramref name="targetMagic"/>
    /// with its absolute offset, appended to <paramref name="output"/>. Magic 1 keeps the timestamp
    /// (a LogAppendTime batch's records take its maxTimestamp and the LogAppendTime attribute); magic 0 has
    /// none. Headers are dropped and control batches skipped, as Kafka does; transactional records are
    /// kept (these fetch versions read uncommitted). A partial batch at the end (a fetch cut at its size
    /// limit) is left out. Legacy entries already at or below the target magic are copied as they are.
    /// </summary>
    /// <param name="scratch">Where compressed batches are decompressed; null uses a pooled buffer.</param>
    /// <returns>Messages written.</returns>
    /// <exception cref="InvalidDataException">A malformed batch, or a legacy entry above the target magic.</exception>
    public static int FromRecordBatches(ReadOnlySpan<byte> v2Batches, byte targetMagic, PooledBufferWriter output,
        long firstOffset = long.MinValue, PooledBufferWriter? scratch = null)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(targetMagic, (byte)1);
        PooledBufferWriter? owned = null;
        int written = 0;
        try
        {
            int pos = 0;
            while (v2Batches.Length - pos >= LogOverhead)
            {
                var rest = v2Batches[pos..];
                int length = BinaryPrimitives.ReadInt32BigEndian(rest[OffsetLength..]);
                if (length < 0 || length > rest.Length - LogOverhead) break; // partial trailing batch
                var entry = rest[..(LogOverhead + length)];
                pos += entry.Length;
                if (entry.Length <= RecordBatch.MagicOffset) throw new InvalidDataException($"entry of {entry.Length} bytes has no magic");
                byte magic = entry[RecordBatch.MagicOffset];
                if (magic != RecordBatch.CurrentMagic)
                {
                    if (magic > targetMagic) throw new InvalidDataException($"cannot down-convert a magic {magic} message to magic {targetMagic}");
                    output.Write(entry);
                    written++;
                    continue;
                }
                if (entry.Length < RecordBatch.HeaderSize) throw new InvalidDataException($"batch of {entry.Length} bytes is shorter than its header");
                var batch = new RecordBatch(entry);
                if (batch.IsControl || batch.NextOffset <= firstOffset) continue;
                var buffer = batch.Compression == CompressionType.None ? null : scratch ?? (owned ??= new PooledBufferWriter(0, DefaultMaxDecompressedSize));
                bool logAppendTime = batch.TimestampType == TimestampType.LogAppendTime;
                foreach (var r in new BatchRecords(entry, buffer))
                {
                    if (r.Offset < firstOffset) continue;
                    WriteMessage(output, targetMagic, r.Offset, logAppendTime, r.Timestamp, r.Record);
                    written++;
                }
            }
            return written;
        }
        finally
        {
            owned?.Dispose();
        }
    }

    private static void WriteMessage(PooledBufferWriter output, byte magic, long offset, bool logAppendTime, long timestamp, Record r)
    {
        int keyLength = r.KeyIsNull ? 0 : r.Key.Length;
        int valueLength = r.ValueIsNull ? 0 : r.Value.Length;
        int size = (magic == 0 ? MessageOverheadV0 : MessageOverheadV1) + keyLength + valueLength;
        var w = output.GetSpan(LogOverhead + size)[..(LogOverhead + size)];
        BinaryPrimitives.WriteInt64BigEndian(w, offset);
        BinaryPrimitives.WriteInt32BigEndian(w[OffsetLength..], size);
        var m = w[LogOverhead..];
        m[4] = magic;
        m[5] = magic == 1 && logAppendTime ? TimestampTypeFlag : (byte)0;
        int p = 6;
        if (magic == 1)
        {
            BinaryPrimitives.WriteInt64BigEndian(m[p..], timestamp);
            p += 8;
        }
        p += WriteBytes(m[p..], r.Key, r.KeyIsNull);
        WriteBytes(m[p..], r.Value, r.ValueIsNull);
        BinaryPrimitives.WriteUInt32BigEndian(m, Crc32.HashToUInt32(m[4..]));
        output.Advance(w.Length);
    }

    private static int WriteBytes(Span<byte> w, ReadOnlySpan<byte> bytes, bool isNull)
    {
        if (isNull)
        {
            BinaryPrimitives.WriteInt32BigEndian(w, -1);
            return 4;
        }
        BinaryPrimitives.WriteInt32BigEndian(w, bytes.Length);
        bytes.CopyTo(w[4..]);
        return 4 + bytes.Length;
    }
}
