using System.Buffers.Binary;

namespace Freshet.Protocol.Records;

/// <summary>
/// A record batch (magic v2), read in place. Layout, all integers big-endian:
/// <code>
///  0 baseOffset            int64   first offset of the batch
///  8 batchLength           int32   bytes after this field
/// 12 partitionLeaderEpoch  int32
/// 16 magic                 int8    2
/// 17 crc                   uint32  CRC-32C of bytes 21..end
/// 21 attributes            int16   bits 0-2 compression, 3 timestamp type, 4 transactional,
///                                  5 control, 6 delete horizon set (compaction)
/// 23 lastOffsetDelta       int32
/// 27 baseTimestamp         int64   (the delete horizon when bit 6 is set)
/// 35 maxTimestamp          int64
/// 43 producerId            int64   -1 when not idempotent
/// 51 producerEpoch         int16
/// 53 baseSequence          int32   -1 when not idempotent
/// 57 recordsCount          int32
/// 61 records               (compressed as a whole when bits 0-2 are set)
/// </code>
/// The first 12 bytes (offset and length) are the log overhead shared with the old formats, so a
/// reader can find batch boundaries without knowing the magic. Offsets, timestamps and the leader
/// epoch are assigned by the broker in place; the CRC starts after them so that only the
/// timestamp type change (LogAppendTime) requires recomputing it.
/// </summary>
public readonly ref struct RecordBatch
{
    public const int BaseOffsetOffset = 0;
    public const int LengthOffset = 8;
    public const int PartitionLeaderEpochOffset = 12;
    public const int MagicOffset = 16;
    public const int CrcOffset = 17;
    public const int AttributesOffset = 21;
    public const int LastOffsetDeltaOffset = 23;
    public const int BaseTimestampOffset = 27;
    public const int MaxTimestampOffset = 35;
    public const int ProducerIdOffset = 43;
    public const int ProducerEpochOffset = 51;
    public const int BaseSequenceOffset = 53;
    public const int RecordsCountOffset = 57;
    public const int RecordsOffset = 61;

    /// <summary>Bytes before the length field's end: baseOffset (8) and batchLength (4).</summary>
    public const int LogOverhead = 12;
    public const int HeaderSize = RecordsOffset;
    public const byte CurrentMagic = 2;

    public const short CompressionMask = 0x07;
    public const short TimestampTypeFlag = 0x08;
    public const short TransactionalFlag = 0x10;
    public const short ControlFlag = 0x20;
    public const short DeleteHorizonFlag = 0x40;

    public const long NoProducerId = -1;
    public const short NoProducerEpoch = -1;
    public const int NoSequence = -1;
    public const int NoPartitionLeaderEpoch = -1;
    public const long NoTimestamp = -1;

    private readonly ReadOnlySpan<byte> _b;

    /// <summary>Views a whole batch (<see cref="LogOverhead"/> + batchLength bytes); header bounds are the caller's to check.</summary>
    public RecordBatch(ReadOnlySpan<byte> batch) => _b = batch;

    public ReadOnlySpan<byte> Bytes => _b;
    public long BaseOffset => BinaryPrimitives.ReadInt64BigEndian(_b);
    public int BatchLength => BinaryPrimitives.ReadInt32BigEndian(_b[LengthOffset..]);
    public int SizeInBytes => LogOverhead + BatchLength;
    public int PartitionLeaderEpoch => BinaryPrimitives.ReadInt32BigEndian(_b[PartitionLeaderEpochOffset..]);
    public byte Magic => _b[MagicOffset];
    public uint Crc => BinaryPrimitives.ReadUInt32BigEndian(_b[CrcOffset..]);
    public short Attributes => BinaryPrimitives.ReadInt16BigEndian(_b[AttributesOffset..]);
    public int LastOffsetDelta => BinaryPrimitives.ReadInt32BigEndian(_b[LastOffsetDeltaOffset..]);
    public long LastOffset => BaseOffset + LastOffsetDelta;
    public long NextOffset => LastOffset + 1;
    public long BaseTimestamp => BinaryPrimitives.ReadInt64BigEndian(_b[BaseTimestampOffset..]);
    public long MaxTimestamp => BinaryPrimitives.ReadInt64BigEndian(_b[MaxTimestampOffset..]);
    public long ProducerId => BinaryPrimitives.ReadInt64BigEndian(_b[ProducerIdOffset..]);
    public short ProducerEpoch => BinaryPrimitives.ReadInt16BigEndian(_b[ProducerEpochOffset..]);
    public int BaseSequence => BinaryPrimitives.ReadInt32BigEndian(_b[BaseSequenceOffset..]);
    public int RecordsCount => BinaryPrimitives.ReadInt32BigEndian(_b[RecordsCountOffset..]);
    public ReadOnlySpan<byte> Records => _b[RecordsOffset..];

    public CompressionType Compression => (CompressionType)(Attributes & CompressionMask);
    public TimestampType TimestampType => (Attributes & TimestampTypeFlag) != 0 ? TimestampType.LogAppendTime : TimestampType.CreateTime;
    public bool IsTransactional => (Attributes & TransactionalFlag) != 0;
    public bool IsControl => (Attributes & ControlFlag) != 0;
    public bool HasDeleteHorizon => (Attributes & DeleteHorizonFlag) != 0;
    public bool HasProducerId => ProducerId >= 0;

    /// <summary>Sequence of the last record (wraps at int32 max like Kafka's).</summary>
    public int LastSequence => BaseSequence == NoSequence ? NoSequence : IncrementSequence(BaseSequence, LastOffsetDelta);

    /// <summary>CRC-32C over attributes..end, to compare with <see cref="Crc"/>.</summary>
    public uint ComputeCrc() => Crc32C.Compute(_b[AttributesOffset..]);

    public bool IsCrcValid => _b.Length >= HeaderSize && ComputeCrc() == Crc;

    public static int IncrementSequence(int sequence, int increment) =>
        sequence > int.MaxValue - increment ? increment - (int.MaxValue - sequence) - 1 : sequence + increment;

    // ---- in-place mutation (broker-assigned fields)

    public static void SetBaseOffset(Span<byte> batch, long baseOffset) => BinaryPrimitives.WriteInt64BigEndian(batch, baseOffset);

    public static void SetPartitionLeaderEpoch(Span<byte> batch, int epoch) =>
        BinaryPrimitives.WriteInt32BigEndian(batch[PartitionLeaderEpochOffset..], epoch);

    /// <summary>Sets LogAppendTime: the type bit and maxTimestamp, then the CRC those bytes are under.</summary>
    public static void SetLogAppendTime(Span<byte> batch, long timestamp)
    {
        short attrs = BinaryPrimitives.ReadInt16BigEndian(batch[AttributesOffset..]);
        BinaryPrimitives.WriteInt16BigEndian(batch[AttributesOffset..], (short)(attrs | TimestampTypeFlag));
        BinaryPrimitives.WriteInt64BigEndian(batch[MaxTimestampOffset..], timestamp);
        UpdateCrc(batch);
    }

    /// <summary>Sets maxTimestamp (the type bit stays) and the CRC it is under: the fix for a CreateTime batch whose header disagrees with its records.</summary>
    public static void SetMaxTimestamp(Span<byte> batch, long timestamp)
    {
        BinaryPrimitives.WriteInt64BigEndian(batch[MaxTimestampOffset..], timestamp);
        UpdateCrc(batch);
    }

    public static void UpdateCrc(Span<byte> batch) =>
        BinaryPrimitives.WriteUInt32BigEndian(batch[CrcOffset..], Crc32C.Compute(batch[AttributesOffset..]));

    /// <summary>
    /// Size of the batch starting at <paramref name="buffer"/>[0] from its log overhead, or -1 when fewer
    /// than <see cref="LogOverhead"/> bytes are there. Does not check the length field's sanity.
    /// </summary>
    public static int PeekSize(ReadOnlySpan<byte> buffer) =>
        buffer.Length < LogOverhead ? -1 : LogOverhead + BinaryPrimitives.ReadInt32BigEndian(buffer[LengthOffset..]);
}
