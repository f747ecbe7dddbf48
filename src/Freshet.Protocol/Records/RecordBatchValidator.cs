using System.Buffers.Binary;

namespace Freshet.Protocol.Records;

/// <summary>
/// What <see cref="RecordBatchValidator.Validate"/> found. The header facts are filled in whenever the
/// header could be read (also for most errors, for logging); the record facts only when
/// <see cref="Error"/> is <see cref="ErrorCode.None"/>.
/// </summary>
public readonly struct BatchValidationResult
{
    public ErrorCode Error { get; init; }

    /// <summary>Why the batch was refused (null when valid).</summary>
    public string? Message { get; init; }

    public bool IsValid => Error == ErrorCode.None;

    public int SizeInBytes { get; init; }
    public byte Magic { get; init; }
    public CompressionType Compression { get; init; }
    public TimestampType TimestampType { get; init; }
    public bool IsTransactional { get; init; }
    public bool IsControl { get; init; }
    public long ProducerId { get; init; }
    public short ProducerEpoch { get; init; }
    public int BaseSequence { get; init; }
    public int LastOffsetDelta { get; init; }
    public long BaseTimestamp { get; init; }

    /// <summary>maxTimestamp as the header states it.</summary>
    public long HeaderMaxTimestamp { get; init; }

    /// <summary>Records counted (equal to the header's recordsCount when valid).</summary>
    public int RecordCount { get; init; }

    /// <summary>The largest baseTimestamp + timestampDelta over the records: the CreateTime max timestamp.</summary>
    public long MaxTimestamp { get; init; }

    /// <summary>
    /// True when the header's maxTimestamp is not the one computed from the records. Kafka then
    /// rewrites it in place for CreateTime batches (<see cref="RecordBatch.SetMaxTimestamp"/>).
    /// </summary>
    public bool MaxTimestampMismatch => IsValid && HeaderMaxTimestamp != MaxTimestamp;

    /// <summary>Some record has a null key (refused by compacted topics, which Kafka answers with INVALID_RECORD).</summary>
    public bool HasNullKey { get; init; }

    /// <summary>Size of the records section after decompression.</summary>
    public int UncompressedRecordsSize { get; init; }
}

/// <summary>
/// Checks record batches as they arrive in produce requests (v3 and later, which carry exactly one
/// magic 2 batch per partition). Everything is read in place; a compressed batch is decompressed
/// into a caller-supplied or pooled buffer.
/// <para>Error codes: a batch that cannot be what it claims (lengths, CRC, record encoding, counts,
/// offset deltas, compressed data) is <see cref="ErrorCode.CorruptMessage"/>; a codec id Kafka does not
/// define (5-7) is <see cref="ErrorCode.UnsupportedCompressionType"/>; a batch whose magic is not 2 is
/// <see cref="ErrorCode.InvalidRecord"/>, as Kafka answers produce v3+ requests carrying a legacy message
/// set (its request validation raises InvalidRecordException before the log sees the data; older
/// produce versions are not checked that way and go through <see cref="LegacyMessageSet"/>).</para>
/// </summary>
public static class RecordBatchValidator
{
    /// <summary>Bound on a decompressed records section when no scratch writer is supplied.</summary>
    public const int DefaultMaxDecompressedSize = 64 * 1024 * 1024;

    /// <summary>Smallest batchLength a v2 batch can have: its header after the log overhead.</summary>
    public const int MinBatchLength = RecordBatch.HeaderSize - RecordBatch.LogOverhead;

    /// <summary>
    /// Validates one batch (<paramref name="batch"/> must be exactly the batch). A compressed batch is
    /// decompressed into <paramref name="scratch"/> (cleared first; on success it then holds the records
    /// section) or, when null, into a pooled buffer bounded by <see cref="DefaultMaxDecompressedSize"/>.
    /// Output past the scratch writer's bound counts as corrupt data.
    /// </summary>
    public static BatchValidationResult Validate(ReadOnlySpan<byte> batch, PooledBufferWriter? scratch = null)
    {
        if (batch.Length <= RecordBatch.MagicOffset)
            return Fail(ErrorCode.CorruptMessage, $"batch of {batch.Length} bytes is shorter than its header");
        byte magic = batch[RecordBatch.MagicOffset];
        if (magic != RecordBatch.CurrentMagic)
            return Fail(ErrorCode.InvalidRecord, $"magic {magic} where produce v3+ requires record batch magic 2", magic);
        if (batch.Length < RecordBatch.HeaderSize)
            return Fail(ErrorCode.CorruptMessage, $"batch of {batch.Length} bytes is shorter than the {RecordBatch.HeaderSize}-byte header", magic);

        var b = new RecordBatch(batch);
        var result = new BatchValidationResult
        {
            SizeInBytes = batch.Length,
            Magic = magic,
            Compression = b.Compression,
            TimestampType = b.TimestampType,
            IsTransactional = b.IsTransactional,
            IsControl = b.IsControl,
            ProducerId = b.ProducerId,
            ProducerEpoch = b.ProducerEpoch,
            BaseSequence = b.BaseSequence,
            LastOffsetDelta = b.LastOffsetDelta,
            BaseTimestamp = b.BaseTimestamp,
            HeaderMaxTimestamp = b.MaxTimestamp,
        };

        if ((long)b.BatchLength + RecordBatch.LogOverhead != batch.Length)
            return result with { Error = ErrorCode.CorruptMessage, Message = $"batchLength {b.BatchLength} does not match the {batch.Length - RecordBatch.LogOverhead} bytes after it" };
        uint crc = b.ComputeCrc();
        if (crc != b.Crc)
            return result with { Error = ErrorCode.CorruptMessage, Message = $"CRC-32C is {crc:x8}, header says {b.Crc:x8}" };
        if (!RecordCompression.IsKnown(b.Compression))
            return result with { Error = ErrorCode.UnsupportedCompressionType, Message = $"unknown compression codec id {(int)b.Compression}" };
        int count = b.RecordsCount;
        if (count < 1)
            return result with { Error = ErrorCode.CorruptMessage, Message = $"recordsCount {count}: a batch holds at least one record" };
        if (b.LastOffsetDelta != count - 1)
            return result with { Error = ErrorCode.CorruptMessage, Message = $"lastOffsetDelta {b.LastOffsetDelta} with {count} records" };

        if (b.Compression == CompressionType.None) return CheckRecords(b.Records, b, result);

        PooledBufferWriter? owned = null;
        var buffer = scratch ?? (owned = new PooledBufferWriter(0, DefaultMaxDecompressedSize));
        try
        {
            buffer.Clear();
            try
            {
                RecordCompression.Decompress(b.Compression, b.Records, buffer);
            }
            catch (InvalidDataException e)
            {
                return result with { Error = ErrorCode.CorruptMessage, Message = e.Message };
            }
            return CheckRecords(buffer.WrittenSpan, b, result);
        }
        finally
        {
            owned?.Dispose();
        }
    }

    private static BatchValidationResult CheckRecords(ReadOnlySpan<byte> records, RecordBatch b, BatchValidationResult result)
    {
        int expected = b.RecordsCount;
        long baseTimestamp = b.BaseTimestamp;
        long maxTimestamp = long.MinValue;
        bool nullKey = false;
        var reader = new RecordReader(records);
        int i = 0;
        while (reader.TryRead(out var r))
        {
            if (i == expected)
                return result with { Error = ErrorCode.CorruptMessage, Message = $"more records than recordsCount {expected}" };
            if (r.OffsetDelta != i)
                return result with { Error = ErrorCode.CorruptMessage, Message = $"record {i} has offsetDelta {r.OffsetDelta}" };
            long ts = unchecked(baseTimestamp + r.TimestampDelta);
            if (ts > maxTimestamp) maxTimestamp = ts;
            nullKey |= r.KeyIsNull;
            i++;
        }
        if (!reader.IsValid)
            return result with { Error = ErrorCode.CorruptMessage, Message = $"record {i} is malformed" };
        if (i != expected)
            return result with { Error = ErrorCode.CorruptMessage, Message = $"{i} records where recordsCount is {expected}" };
        if (!reader.AtEnd)
            return result with { Error = ErrorCode.CorruptMessage, Message = "bytes left after the last record" };
        return result with
        {
            RecordCount = i,
            MaxTimestamp = maxTimestamp,
            HasNullKey = nullKey,
            UncompressedRecordsSize = records.Length,
        };
    }

    /// <summary>
    /// Adds to <paramref name="indexes"/> the position in the batch (its offset delta) of every record
    /// of <paramref name="records"/> (a batch's records section, decompressed) whose key is null. Walks
    /// the records in place: nothing is allocated per record. The records must have been validated.
    /// </summary>
    public static void FindNullKeys(ReadOnlySpan<byte> records, List<int> indexes)
    {
        ArgumentNullException.ThrowIfNull(indexes);
        var reader = new RecordReader(records);
        while (reader.TryRead(out var r))
            if (r.KeyIsNull) indexes.Add(r.OffsetDelta);
    }

    /// <summary>
    /// Applies Kafka's produce-request rules for v3 and later to one partition's records, then validates
    /// the batch: the set must be exactly one batch (none, or a second one, is INVALID_RECORD), of magic 2
    /// (INVALID_RECORD otherwise), and zstd needs produce v7 (UNSUPPORTED_COMPRESSION_TYPE before).
    /// Bytes after the batch that do not form another batch are CORRUPT_MESSAGE.
    /// </summary>
    public static BatchValidationResult ValidateProduce(ReadOnlySpan<byte> recordSet, short produceVersion, PooledBufferWriter? scratch = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(produceVersion, (short)3);
        if (recordSet.IsEmpty)
            return Fail(ErrorCode.InvalidRecord, $"produce v{produceVersion} requires one record batch per partition, got none");
        // The magic sits at byte 16 in every format, so a legacy message set is recognised before its
        // (smaller) entry sizes trip the batch splitter.
        if (recordSet.Length > RecordBatch.MagicOffset && recordSet[RecordBatch.MagicOffset] != RecordBatch.CurrentMagic)
            return Fail(ErrorCode.InvalidRecord, $"produce v{produceVersion} requires record batch magic 2, got {recordSet[RecordBatch.MagicOffset]}",
                recordSet[RecordBatch.MagicOffset]);
        var splitter = new RecordBatchSplitter(recordSet);
        if (!splitter.TryNext(out var batch)) return Fail(splitter.Error, splitter.Message);
        if (splitter.TryNext(out _))
            return Fail(ErrorCode.InvalidRecord, $"produce v{produceVersion} allows exactly one record batch per partition");
        if (splitter.Error != ErrorCode.None) return Fail(splitter.Error, splitter.Message);
        if (produceVersion < 7 && batch.Length >= RecordBatch.HeaderSize
            && (CompressionType)(BinaryPrimitives.ReadInt16BigEndian(batch[RecordBatch.AttributesOffset..]) & RecordBatch.CompressionMask) == CompressionType.Zstd)
            return Fail(ErrorCode.UnsupportedCompressionType, $"zstd requires produce v7 or later, got v{produceVersion}", RecordBatch.CurrentMagic);
        return Validate(batch, scratch);
    }

    /// <summary>
    /// Splits a record set (concatenated batches, as in a produce request) and adds each batch's range to
    /// <paramref name="batches"/>. Returns <see cref="ErrorCode.CorruptMessage"/> for a trailing partial
    /// batch or a batchLength below <see cref="MinBatchLength"/>; the ranges found before it are kept.
    /// </summary>
    public static ErrorCode Split(ReadOnlySpan<byte> recordSet, List<Range> batches)
    {
        ArgumentNullException.ThrowIfNull(batches);
        var splitter = new RecordBatchSplitter(recordSet);
        int start = 0;
        while (splitter.TryNext(out var batch))
        {
            batches.Add(new Range(start, start + batch.Length));
            start += batch.Length;
        }
        return splitter.Error;
    }

    private static BatchValidationResult Fail(ErrorCode error, string? message, byte magic = 0) =>
        new() { Error = error, Message = message, Magic = magic };
}

/// <summary>
/// Walks concatenated v2 batches by their log overhead (baseOffset int64, batchLength int32) without
/// reading them. <see cref="TryNext"/> returns false at the end or on malformed framing; then
/// <see cref="Error"/> tells which: <see cref="ErrorCode.None"/> when every byte was consumed by whole
/// batches, <see cref="ErrorCode.CorruptMessage"/> for a partial trailing batch (fewer than 12 bytes, or
/// batchLength past the end) or a batchLength smaller than a batch header.
/// </summary>
public ref struct RecordBatchSplitter
{
    private readonly ReadOnlySpan<byte> _set;
    private int _pos;

    public RecordBatchSplitter(ReadOnlySpan<byte> recordSet)
    {
        _set = recordSet;
        _pos = 0;
        Error = ErrorCode.None;
        Message = null;
    }

    public ErrorCode Error { get; private set; }
    public string? Message { get; private set; }

    /// <summary>Start of the next batch.</summary>
    public readonly int Position => _pos;

    public bool TryNext(out ReadOnlySpan<byte> batch)
    {
        batch = default;
        if (Error != ErrorCode.None) return false;
        int left = _set.Length - _pos;
        if (left == 0) return false;
        if (left < RecordBatch.LogOverhead)
            return Fail($"{left} bytes after the last batch, fewer than a batch's log overhead");
        int length = BinaryPrimitives.ReadInt32BigEndian(_set[(_pos + RecordBatch.LengthOffset)..]);
        if (length < RecordBatchValidator.MinBatchLength)
            return Fail($"batchLength {length} is smaller than a batch header ({RecordBatchValidator.MinBatchLength})");
        if (length > left - RecordBatch.LogOverhead)
            return Fail($"batchLength {length} runs past the {left - RecordBatch.LogOverhead} bytes left");
        batch = _set.Slice(_pos, RecordBatch.LogOverhead + length);
        _pos += batch.Length;
        return true;
    }

    private bool Fail(string message)
    {
        Error = ErrorCode.CorruptMessage;
        Message = message;
        return false;
    }
}
