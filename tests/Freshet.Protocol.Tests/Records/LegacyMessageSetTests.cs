using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using Freshet.Protocol.Records;

namespace Freshet.Protocol.Tests.Records;

public class LegacyMessageSetTests
{
    public static TheoryData<byte, CompressionType> MagicsAndLegacyCodecs()
    {
        var data = new TheoryData<byte, CompressionType>();
        foreach (byte magic in new byte[] { 0, 1 })
            foreach (var codec in new[] { CompressionType.None, CompressionType.Gzip, CompressionType.Snappy, CompressionType.Lz4 })
                data.Add(magic, codec);
        return data;
    }

    private sealed record Msg(long Timestamp, byte[]? Key, byte[]? Value);

    private static List<Msg> Messages(int count) =>
    [
        .. Enumerable.Range(0, count).Select(i => new Msg(
            1_600_000_000_000 + i * 10,
            i % 5 == 0 ? null : Encoding.UTF8.GetBytes($"key-{i}"),
            i % 7 == 3 ? null : TestData.Compressible(i * 13 % 300, i))),
    ];

    /// <summary>
    /// A message set as an old producer sends it: plain messages with offsets 0..n-1, or one compressed
    /// wrapper whose inner offsets are absolute (magic 0) or relative with the wrapper holding the last (magic 1).
    /// </summary>
    private static byte[] MessageSet(byte magic, CompressionType codec, List<Msg> msgs, bool logAppendTime = false, long wrapperTimestamp = 0)
    {
        var inner = TestData.Concat([.. msgs.Select((m, i) => TestData.LegacyMessage(i, magic, 0, m.Timestamp, m.Key, m.Value))]);
        if (codec == CompressionType.None) return inner;
        return TestData.LegacyWrapper(msgs.Count - 1, magic, codec,
            wrapperTimestamp != 0 ? wrapperTimestamp : msgs.Max(m => m.Timestamp), inner, logAppendTime);
    }

    private static (LegacyConversionResult Result, byte[] Batch) Up(ReadOnlySpan<byte> set, CompressionType? compression = null)
    {
        using var w = new PooledBufferWriter();
        var result = LegacyMessageSet.ToRecordBatchV2(set, w, compression);
        return (result, w.ToArray());
    }

    private static byte[] Down(ReadOnlySpan<byte> batches, byte magic, long firstOffset = long.MinValue)
    {
        using var w = new PooledBufferWriter();
        LegacyMessageSet.FromRecordBatches(batches, magic, w, firstOffset);
        return w.ToArray();
    }

    private static void AssertBatch(byte[] batch, List<Msg> expected, byte magic, long? timestampOverride = null)
    {
        var v = RecordBatchValidator.Validate(batch);
        Assert.Equal(ErrorCode.None, v.Error);
        Assert.Equal(expected.Count, v.RecordCount);
        Assert.Equal(RecordBatch.NoProducerId, v.ProducerId);
        using var scratch = new PooledBufferWriter();
        int i = 0;
        foreach (var r in new BatchRecords(batch, scratch))
        {
            var m = expected[i];
            Assert.Equal(i, r.Offset);
            Assert.Equal(magic == 0 ? RecordBatch.NoTimestamp : timestampOverride ?? m.Timestamp, r.Timestamp);
            Assert.Equal(m.Key is null, r.Record.KeyIsNull);
            Assert.Equal(m.Key ?? [], r.Record.Key.ToArray());
            Assert.Equal(m.Value is null, r.Record.ValueIsNull);
            Assert.Equal(m.Value ?? [], r.Record.Value.ToArray());
            Assert.Equal(0, r.Record.HeaderCount);
            i++;
        }
        Assert.Equal(expected.Count, i);
    }

    [Fact]
    public void Crc32_ieee_test_vector()
    {
        Assert.Equal(0xCBF43926u, Crc32.HashToUInt32("123456789"u8));
    }

    [Theory]
    [MemberData(nameof(MagicsAndLegacyCodecs))]
    public void Up_conversion_keeps_every_message(byte magic, CompressionType codec)
    {
        var msgs = Messages(60);
        var (result, batch) = Up(MessageSet(magic, codec, msgs));
        Assert.Equal(ErrorCode.None, result.Error);
        Assert.Equal(magic, result.Magic);
        Assert.Equal(codec, result.SourceCompression);
        Assert.Equal(60, result.RecordCount);
        Assert.Equal(batch.Length, result.BatchSize);
        Assert.Equal(codec, new RecordBatch(batch).Compression); // the producer's codec is kept
        Assert.Equal(TimestampType.CreateTime, new RecordBatch(batch).TimestampType);
        AssertBatch(batch, msgs, magic);
    }

    [Theory]
    [MemberData(nameof(MagicsAndLegacyCodecs))]
    public void Up_conversion_can_choose_the_codec(byte magic, CompressionType codec)
    {
        var msgs = Messages(10);
        foreach (var target in TestData.Codecs)
        {
            var (result, batch) = Up(MessageSet(magic, codec, msgs), target);
            Assert.Equal(ErrorCode.None, result.Error);
            Assert.Equal(target, new RecordBatch(batch).Compression);
            AssertBatch(batch, msgs, magic);
        }
    }

    [Fact]
    public void Several_wrappers_and_plain_messages_become_one_batch()
    {
        var a = Messages(5);
        var b = Messages(3);
        var c = Messages(2);
        var set = TestData.Concat(MessageSet(1, CompressionType.Gzip, a), MessageSet(1, CompressionType.None, b), MessageSet(1, CompressionType.Snappy, c));
        var (result, batch) = Up(set);
        Assert.Equal(ErrorCode.None, result.Error);
        Assert.Equal(10, result.RecordCount);
        Assert.Equal(CompressionType.Gzip, result.SourceCompression);
        AssertBatch(batch, [.. a, .. b, .. c], 1);
    }

    [Fact]
    public void Log_append_time_wrapper_gives_its_timestamp_to_inner_messages()
    {
        var msgs = Messages(4);
        var (result, batch) = Up(MessageSet(1, CompressionType.Lz4, msgs, logAppendTime: true, wrapperTimestamp: 1_234));
        Assert.Equal(ErrorCode.None, result.Error);
        AssertBatch(batch, msgs, 1, timestampOverride: 1_234);
    }

    [Fact]
    public void Magic_0_lz4_with_kafkas_old_header_checksum_is_accepted()
    {
        var msgs = Messages(8);
        var inner = TestData.Concat([.. msgs.Select((m, i) => TestData.LegacyMessage(i, 0, 0, 0, m.Key, m.Value))]);
        var frame = TestData.Compress(CompressionType.Lz4, inner);
        frame[6] = (byte)(XxHash32.HashToUInt32(frame.AsSpan(0, 6)) >> 8); // hashed over magic + descriptor
        var wrapper = TestData.LegacyMessage(7, 0, (byte)CompressionType.Lz4, 0, null, frame);
        var (result, batch) = Up(wrapper);
        Assert.Equal(ErrorCode.None, result.Error);
        AssertBatch(batch, msgs, 0);
        // Magic 1 must have the right checksum.
        var wrapper1 = TestData.LegacyMessage(7, 1, (byte)CompressionType.Lz4, 0, null, frame);
        Assert.Equal(ErrorCode.CorruptMessage, Up(wrapper1).Result.Error);
    }

    [Fact]
    public void Empty_set_writes_nothing()
    {
        var (result, batch) = Up([]);
        Assert.Equal(ErrorCode.None, result.Error);
        Assert.Equal(0, result.RecordCount);
        Assert.Empty(batch);
    }

    [Theory]
    [InlineData((byte)0)]
    [InlineData((byte)1)]
    public void Bad_crcs_are_corrupt(byte magic)
    {
        var plain = TestData.LegacyMessage(0, magic, 0, 5, [1, 2, 3], [4, 5, 6, 7]);
        Assert.Equal(ErrorCode.None, Up(plain).Result.Error);
        for (int i = 12; i < plain.Length; i++) // every byte from the CRC on is covered by it
        {
            var bad = (byte[])plain.Clone();
            bad[i] ^= 0x04;
            var r = Up(bad).Result;
            // The magic byte turning 4 is refused as such before the CRC is looked at.
            Assert.Equal(i == 16 ? ErrorCode.InvalidRecord : ErrorCode.CorruptMessage, r.Error);
        }
        // An inner message's CRC inside a good wrapper.
        var inner = TestData.LegacyMessage(0, magic, 0, 5, [1], [2]);
        inner[^1] ^= 1;
        var wrapper = TestData.LegacyMessage(0, magic, (byte)CompressionType.Gzip, 5, null, TestData.Compress(CompressionType.Gzip, inner));
        var result = Up(wrapper).Result;
        Assert.Equal(ErrorCode.CorruptMessage, result.Error);
        Assert.Contains("CRC", result.Message);
    }

    [Fact]
    public void Structural_errors()
    {
        var good = MessageSet(1, CompressionType.None, Messages(3));
        // Truncated entries.
        foreach (int cut in new[] { 5, 12, 20, good.Length - 1 })
            Assert.Equal(ErrorCode.CorruptMessage, Up(good.AsSpan(0, cut)).Result.Error);
        // Message size smaller than a message.
        var small = (byte[])good.Clone();
        BinaryPrimitives.WriteInt32BigEndian(small.AsSpan(8), 13);
        Assert.Equal(ErrorCode.CorruptMessage, Up(small).Result.Error);
        // Key length past the message (CRC made right).
        var key = TestData.LegacyMessage(0, 1, 0, 5, [1, 2], [3]);
        BinaryPrimitives.WriteInt32BigEndian(key.AsSpan(12 + 14), 50);
        Recrc(key);
        Assert.Equal(ErrorCode.CorruptMessage, Up(key).Result.Error);
        // Magic 2 in a legacy set.
        var magic2 = TestData.LegacyMessage(0, 1, 0, 5, [1], [2]);
        magic2[16] = 2;
        Recrc(magic2);
        Assert.Equal(ErrorCode.InvalidRecord, Up(magic2).Result.Error);
        // zstd and unknown codecs do not exist with magic 0/1.
        foreach (byte codec in new byte[] { 4, 7 })
        {
            var z = TestData.LegacyMessage(0, 1, codec, 5, null, [1, 2, 3]);
            Assert.Equal(ErrorCode.UnsupportedCompressionType, Up(z).Result.Error);
        }
        // A compressed wrapper with a null value, with no inner messages, with garbage.
        Assert.Equal(ErrorCode.CorruptMessage, Up(TestData.LegacyMessage(0, 1, 1, 5, null, null)).Result.Error);
        Assert.Equal(ErrorCode.CorruptMessage, Up(TestData.LegacyWrapper(0, 1, CompressionType.Snappy, 5, [])).Result.Error);
        Assert.Equal(ErrorCode.CorruptMessage, Up(TestData.LegacyMessage(0, 1, 2, 5, null, TestData.Random(100))).Result.Error);
        // Nested compression and a magic mismatch between wrapper and inner messages.
        var nested = TestData.LegacyWrapper(0, 1, CompressionType.Gzip, 5, TestData.LegacyWrapper(0, 1, CompressionType.Gzip, 5, good));
        Assert.Equal(ErrorCode.CorruptMessage, Up(nested).Result.Error);
        var mixed = TestData.LegacyWrapper(0, 1, CompressionType.Gzip, 5, MessageSet(0, CompressionType.None, Messages(2)));
        Assert.Equal(ErrorCode.CorruptMessage, Up(mixed).Result.Error);

        static void Recrc(byte[] m) => BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(12), Crc32.HashToUInt32(m.AsSpan(16)));
    }

    // ---- down-conversion

    [Theory]
    [InlineData((byte)0)]
    [InlineData((byte)1)]
    public void Plain_legacy_set_survives_up_and_down_conversion_byte_for_byte(byte magic)
    {
        var set = MessageSet(magic, CompressionType.None, Messages(40));
        foreach (var codec in TestData.Codecs)
        {
            var (result, batch) = Up(set, codec);
            Assert.Equal(ErrorCode.None, result.Error);
            Assert.Equal(set, Down(batch, magic));
        }
    }

    [Theory]
    [MemberData(nameof(MagicsAndLegacyCodecs))]
    public void Compressed_legacy_set_survives_up_and_down_conversion(byte magic, CompressionType codec)
    {
        var msgs = Messages(25);
        var (_, batch) = Up(MessageSet(magic, codec, msgs));
        // Down-conversion writes uncompressed messages with absolute offsets.
        Assert.Equal(MessageSet(magic, CompressionType.None, msgs), Down(batch, magic));
    }

    [Theory]
    [MemberData(nameof(AllCodecsAndMagics))]
    public void Down_conversion_of_v2_batches(CompressionType codec, byte magic)
    {
        using var b = new RecordBatchBuilder(codec) { BaseOffset = 100 };
        b.Append(1_000, [1], [2], new Header("dropped", [3]));
        b.Append(1_005, null, null);
        var first = b.Build();
        b.Reset();
        b.BaseOffset = 102;
        b.IsControl = true;
        b.Append(1_010, [0, 0, 0, 0], [0, 0, 0, 0, 0, 0]); // a transaction marker: skipped
        var control = b.Build();
        b.Reset();
        b.BaseOffset = 103;
        b.IsControl = false;
        b.TimestampType = TimestampType.LogAppendTime;
        b.LogAppendTime = 5_000;
        b.Append(1_020, [4], [5]);
        var appendTime = b.Build();

        var set = TestData.Concat(first, control, appendTime);
        var down = Down(set, magic);
        var expected = TestData.Concat(
            TestData.LegacyMessage(100, magic, 0, 1_000, [1], [2]),
            TestData.LegacyMessage(101, magic, 0, 1_005, null, null),
            TestData.LegacyMessage(103, magic, magic == 1 ? (byte)0x08 : (byte)0, 5_000, [4], [5]));
        Assert.Equal(expected, down);

        // Records before the fetch offset are left out, and so is a partial batch at the end.
        Assert.Equal(TestData.LegacyMessage(101, magic, 0, 1_005, null, null), Down(TestData.Concat(first, control, appendTime[..^1]), magic, firstOffset: 101));
        Assert.Empty(Down(set, magic, firstOffset: 104));
        Assert.Empty(Down(set.AsSpan(0, 11), magic));
    }

    public static TheoryData<CompressionType, byte> AllCodecsAndMagics()
    {
        var data = new TheoryData<CompressionType, byte>();
        foreach (var codec in TestData.Codecs)
            foreach (byte magic in new byte[] { 0, 1 })
                data.Add(codec, magic);
        return data;
    }

    [Fact]
    public void Down_conversion_copies_legacy_entries_it_can_and_refuses_others()
    {
        var m0 = TestData.LegacyMessage(3, 0, 0, 0, [1], [2]);
        var m1 = TestData.LegacyMessage(4, 1, 0, 9, [1], [2]);
        Assert.Equal(m0, Down(m0, 1));
        Assert.Equal(m1, Down(m1, 1));
        Assert.Throws<InvalidDataException>(() => Down(m1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Down(m0, 2));
    }

    [Fact]
    public void Down_conversion_throws_on_corrupt_batches()
    {
        using var b = new RecordBatchBuilder(CompressionType.Zstd);
        b.Append(1, [1], [2]);
        var batch = b.Build();
        TestData.Random(batch.Length - RecordBatch.RecordsOffset, 3).CopyTo(batch, RecordBatch.RecordsOffset);
        Assert.Throws<InvalidDataException>(() => Down(batch, 1));
    }

    [Fact]
    public void Peek_magic_reads_byte_16_in_every_format()
    {
        using var b = new RecordBatchBuilder();
        b.Append(1, [1], [2]);
        Assert.Equal(2, LegacyMessageSet.PeekMagic(b.Build()));
        Assert.Equal(0, LegacyMessageSet.PeekMagic(TestData.LegacyMessage(0, 0, 0, 0, null, null)));
        Assert.Equal(1, LegacyMessageSet.PeekMagic(TestData.LegacyMessage(0, 1, 0, 0, null, null)));
        Assert.Equal(-1, LegacyMessageSet.PeekMagic(new byte[16]));
    }
}
