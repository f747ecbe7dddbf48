using System.Buffers.Binary;
using System.Text;
using Freshet.Protocol.Records;

namespace Freshet.Protocol.Tests.Records;

public class RecordBatchBuilderValidatorTests
{
    public static TheoryData<CompressionType> AllCodecs => TestData.AllCodecs;
    public static TheoryData<CompressionType> CompressingCodecs => TestData.CompressingCodecs;

    private sealed record Expected(long Timestamp, byte[]? Key, byte[]? Value, (string Key, byte[]? Value)[] Headers);

    private static List<Expected> SampleRecords(int count)
    {
        var list = new List<Expected>
        {
            new(1_700_000_000_000, null, Encoding.UTF8.GetBytes("null key"), []),
            new(1_700_000_000_500, Encoding.UTF8.GetBytes("k"), null, []), // tombstone
            new(1_699_999_999_000, [], [], [("h1", null), ("h2", [1, 2, 3]), ("ünïcode", [])]), // earlier than the base
            new(1_700_000_009_999, null, null, [("only", null)]),
        };
        for (int i = list.Count; i < count; i++)
        {
            var headers = i % 3 == 0 ? [("trace", TestData.Random(8, i))] : Array.Empty<(string, byte[]?)>();
            list.Add(new(1_700_000_000_000 + i, Encoding.UTF8.GetBytes($"key-{i % 17}"), TestData.Compressible(20 + i % 200, i), headers));
        }
        return list;
    }

    private static RecordBatchBuilder Fill(RecordBatchBuilder b, IEnumerable<Expected> records)
    {
        foreach (var r in records)
            b.Append(r.Timestamp, r.Key, r.Value, [.. r.Headers.Select(h => new Header(h.Key, h.Value))]);
        return b;
    }

    private static byte[] Build(CompressionType codec, IEnumerable<Expected> records, Action<RecordBatchBuilder>? configure = null)
    {
        using var b = new RecordBatchBuilder(codec);
        configure?.Invoke(b);
        return Fill(b, records).Build();
    }

    private static void AssertRecords(byte[] batch, List<Expected> expected, long baseOffset = 0)
    {
        using var scratch = new PooledBufferWriter();
        int i = 0;
        foreach (var r in new BatchRecords(batch, scratch))
        {
            var e = expected[i];
            Assert.Equal(baseOffset + i, r.Offset);
            Assert.Equal(i, r.Record.OffsetDelta);
            Assert.Equal(e.Timestamp, r.Timestamp);
            Assert.Equal(e.Key is null, r.Record.KeyIsNull);
            Assert.Equal(e.Key ?? [], r.Record.Key.ToArray());
            Assert.Equal(e.Value is null, r.Record.ValueIsNull);
            Assert.Equal(e.Value ?? [], r.Record.Value.ToArray());
            Assert.Equal(e.Headers.Length, r.Record.HeaderCount);
            var headers = r.Record.Headers;
            foreach (var (key, value) in e.Headers)
            {
                Assert.True(headers.TryRead(out var h));
                Assert.Equal(key, Encoding.UTF8.GetString(h.Key));
                Assert.Equal(value is null, h.ValueIsNull);
                Assert.Equal(value ?? [], h.Value.ToArray());
            }
            Assert.False(headers.TryRead(out _));
            Assert.True(headers.IsValid);
            i++;
        }
        Assert.Equal(expected.Count, i);
    }

    // ---- round trips

    [Theory]
    [MemberData(nameof(AllCodecs))]
    public void Builder_output_validates_and_reads_back(CompressionType codec)
    {
        var records = SampleRecords(1000);
        var batch = Build(codec, records, b =>
        {
            b.BaseOffset = 5000;
            b.PartitionLeaderEpoch = 7;
            b.ProducerId = 123456789;
            b.ProducerEpoch = 3;
            b.BaseSequence = 42;
            b.IsTransactional = true;
        });
        var v = RecordBatchValidator.Validate(batch);
        Assert.Equal(ErrorCode.None, v.Error);
        Assert.Null(v.Message);
        Assert.Equal(1000, v.RecordCount);
        Assert.Equal(999, v.LastOffsetDelta);
        Assert.Equal(codec, v.Compression);
        Assert.Equal(123456789, v.ProducerId);
        Assert.Equal(3, v.ProducerEpoch);
        Assert.Equal(42, v.BaseSequence);
        Assert.True(v.IsTransactional);
        Assert.False(v.IsControl);
        Assert.Equal(TimestampType.CreateTime, v.TimestampType);
        Assert.Equal(records.Max(r => r.Timestamp), v.MaxTimestamp);
        Assert.Equal(v.MaxTimestamp, v.HeaderMaxTimestamp);
        Assert.False(v.MaxTimestampMismatch);
        Assert.Equal(records[0].Timestamp, v.BaseTimestamp);
        Assert.True(v.HasNullKey);
        Assert.Equal(batch.Length, v.SizeInBytes);
        if (codec != CompressionType.None) Assert.True(batch.Length < v.UncompressedRecordsSize, "compressed batch is not smaller");

        var rb = new RecordBatch(batch);
        Assert.Equal(5000, rb.BaseOffset);
        Assert.Equal(7, rb.PartitionLeaderEpoch);
        Assert.Equal(1000, rb.RecordsCount);
        Assert.Equal(42 + 999, rb.LastSequence);
        Assert.True(rb.IsCrcValid);
        AssertRecords(batch, records, baseOffset: 5000);
    }

    [Theory]
    [MemberData(nameof(AllCodecs))]
    public void Single_record_batches_round_trip(CompressionType codec)
    {
        var records = new List<Expected> { new(-1, null, null, []) };
        var batch = Build(codec, records);
        var v = RecordBatchValidator.Validate(batch);
        Assert.Equal(ErrorCode.None, v.Error);
        Assert.Equal(1, v.RecordCount);
        Assert.Equal(0, v.LastOffsetDelta);
        Assert.Equal(-1, v.MaxTimestamp);
        AssertRecords(batch, records);
    }

    [Fact]
    public void Uncompressed_record_encoding_matches_the_format()
    {
        using var b = new RecordBatchBuilder();
        b.Append(1000, "k"u8, "value"u8, new Header("h", [9]));
        var batch = b.Build();
        // length 16 | attributes 0 | tsDelta 0 | offsetDelta 0 | key len 1 "k" | value len 5 "value" | 1 header: len 1 "h" len 1 09
        byte[] record = [16 << 1, 0, 0, 0, 1 << 1, (byte)'k', 5 << 1, .. "value"u8, 1 << 1, 1 << 1, (byte)'h', 1 << 1, 9];
        Assert.Equal(record, batch[RecordBatch.RecordsOffset..]);
        Assert.Equal(RecordBatch.HeaderSize + record.Length, batch.Length);
        Assert.Equal(batch.Length - 12, BinaryPrimitives.ReadInt32BigEndian(batch.AsSpan(8)));
        Assert.Equal(2, batch[RecordBatch.MagicOffset]);
    }

    [Fact]
    public void Builder_flags_and_timestamp_types()
    {
        using var b = new RecordBatchBuilder(CompressionType.Lz4)
        {
            IsControl = true,
            IsTransactional = true,
            TimestampType = TimestampType.LogAppendTime,
            LogAppendTime = 99_999,
        };
        b.Append(5, [0, 0, 0, 0], [0, 0, 0, 0, 0, 0]);
        b.Append(7, [0, 0, 0, 0], [0, 0, 0, 0, 0, 0]);
        var batch = b.Build();
        var rb = new RecordBatch(batch);
        Assert.True(rb.IsControl);
        Assert.True(rb.IsTransactional);
        Assert.Equal(TimestampType.LogAppendTime, rb.TimestampType);
        Assert.Equal(CompressionType.Lz4, rb.Compression);
        Assert.Equal(99_999, rb.MaxTimestamp);
        Assert.Equal(5, rb.BaseTimestamp);
        using var scratch = new PooledBufferWriter();
        foreach (var r in new BatchRecords(batch, scratch)) Assert.Equal(99_999, r.Timestamp); // LogAppendTime applies to all
    }

    [Fact]
    public void Builder_is_reusable_and_writes_into_a_shared_writer()
    {
        using var b = new RecordBatchBuilder(CompressionType.Zstd);
        using var w = new PooledBufferWriter();
        b.Append(1, [1], [2]);
        int first = b.WriteTo(w);
        b.Reset();
        b.BaseOffset = 1;
        b.Append(2, [3], [4]).Append(3, [5], [6]);
        int second = b.WriteTo(w);
        Assert.Equal(first + second, w.WrittenCount);
        var ranges = new List<Range>();
        Assert.Equal(ErrorCode.None, RecordBatchValidator.Split(w.WrittenSpan, ranges));
        Assert.Equal(2, ranges.Count);
        Assert.Equal(1, RecordBatchValidator.Validate(w.WrittenSpan[ranges[0]]).RecordCount);
        Assert.Equal(2, RecordBatchValidator.Validate(w.WrittenSpan[ranges[1]]).RecordCount);
        Assert.Throws<InvalidOperationException>(() => new RecordBatchBuilder().Build());
    }

    [Fact]
    public void Records_copied_from_another_batch_keep_their_contents()
    {
        var records = SampleRecords(50);
        var source = Build(CompressionType.Snappy, records);
        using var scratch = new PooledBufferWriter();
        using var b = new RecordBatchBuilder(CompressionType.Gzip);
        foreach (var r in new BatchRecords(source, scratch)) b.Append(r.Timestamp, r.Record);
        var copy = b.Build();
        Assert.Equal(ErrorCode.None, RecordBatchValidator.Validate(copy).Error);
        AssertRecords(copy, records);
    }

    [Fact]
    public void Crc32C_test_vectors()
    {
        Assert.Equal(0xE3069283u, Crc32C.Compute("123456789"u8));
        Assert.Equal(0u, Crc32C.Compute([]));
        // RFC 3720 (iSCSI) B.4: 32 bytes of zeros, of 0xFF.
        Assert.Equal(0x8A9136AAu, Crc32C.Compute(new byte[32]));
        Assert.Equal(0x62A8AB43u, Crc32C.Compute(Enumerable.Repeat((byte)0xFF, 32).ToArray()));
        // Appending in pieces gives the same.
        var data = TestData.Random(1000);
        Assert.Equal(Crc32C.Compute(data), ~Crc32C.Append(Crc32C.Append(~0u, data.AsSpan(0, 333)), data.AsSpan(333)));
    }

    // ---- corruption

    private static byte[] Sample(CompressionType codec = CompressionType.None, int count = 20) =>
        Build(codec, SampleRecords(count), b => b.ProducerId = 9);

    [Theory]
    [MemberData(nameof(AllCodecs))]
    public void Any_flipped_byte_under_the_crc_or_in_it_is_corrupt(CompressionType codec)
    {
        var batch = Sample(codec);
        for (int i = RecordBatch.CrcOffset; i < batch.Length; i++)
        {
            var bad = (byte[])batch.Clone();
            bad[i] ^= 0x01;
            var v = RecordBatchValidator.Validate(bad);
            Assert.Equal(ErrorCode.CorruptMessage, v.Error);
            Assert.NotNull(v.Message);
        }
    }

    [Fact]
    public void Flipped_length_is_corrupt_and_flipped_magic_is_invalid_record()
    {
        var batch = Sample();
        for (int i = RecordBatch.LengthOffset; i < RecordBatch.LengthOffset + 4; i++)
        {
            var bad = (byte[])batch.Clone();
            bad[i] ^= 0x01;
            Assert.Equal(ErrorCode.CorruptMessage, RecordBatchValidator.Validate(bad).Error);
        }
        var magic = (byte[])batch.Clone();
        magic[RecordBatch.MagicOffset] = 1;
        var v = RecordBatchValidator.Validate(magic);
        Assert.Equal(ErrorCode.InvalidRecord, v.Error);
        Assert.Equal(1, v.Magic);
        // baseOffset and partitionLeaderEpoch are not under the CRC: the broker rewrites them.
        var moved = (byte[])batch.Clone();
        RecordBatch.SetBaseOffset(moved, 77);
        RecordBatch.SetPartitionLeaderEpoch(moved, 3);
        Assert.Equal(ErrorCode.None, RecordBatchValidator.Validate(moved).Error);
    }

    [Theory]
    [MemberData(nameof(AllCodecs))]
    public void Wrong_last_offset_delta_is_corrupt(CompressionType codec)
    {
        foreach (int delta in new[] { 18, 20, -1, int.MaxValue })
        {
            var bad = Sample(codec);
            BinaryPrimitives.WriteInt32BigEndian(bad.AsSpan(RecordBatch.LastOffsetDeltaOffset), delta);
            var v = RecordBatchValidator.Validate(TestData.FixCrc(bad));
            Assert.Equal(ErrorCode.CorruptMessage, v.Error);
            Assert.Contains("lastOffsetDelta", v.Message);
        }
    }

    [Theory]
    [MemberData(nameof(AllCodecs))]
    public void Records_count_not_matching_the_records_is_corrupt(CompressionType codec)
    {
        foreach (int count in new[] { 19, 21, 1000 })
        {
            var bad = Sample(codec);
            // Keep lastOffsetDelta consistent with the count so that the record walk is what fails.
            BinaryPrimitives.WriteInt32BigEndian(bad.AsSpan(RecordBatch.RecordsCountOffset), count);
            BinaryPrimitives.WriteInt32BigEndian(bad.AsSpan(RecordBatch.LastOffsetDeltaOffset), count - 1);
            var v = RecordBatchValidator.Validate(TestData.FixCrc(bad));
            Assert.Equal(ErrorCode.CorruptMessage, v.Error);
            Assert.Contains("recordsCount", v.Message);
        }
        var zero = Sample(codec);
        BinaryPrimitives.WriteInt32BigEndian(zero.AsSpan(RecordBatch.RecordsCountOffset), 0);
        BinaryPrimitives.WriteInt32BigEndian(zero.AsSpan(RecordBatch.LastOffsetDeltaOffset), -1);
        Assert.Equal(ErrorCode.CorruptMessage, RecordBatchValidator.Validate(TestData.FixCrc(zero)).Error);
    }

    [Fact]
    public void Out_of_order_offset_delta_is_corrupt()
    {
        using var b = new RecordBatchBuilder();
        b.Append(1, [1], [1]).Append(2, [2], [2]);
        var batch = b.Build();
        // Record 1's offsetDelta varint sits after its length, attributes and timestamp delta (1 byte each).
        int second = RecordBatch.RecordsOffset + 1 + (batch[RecordBatch.RecordsOffset] >> 1);
        Assert.Equal(1 << 1, batch[second + 3]);
        batch[second + 3] = 2 << 1;
        var v = RecordBatchValidator.Validate(TestData.FixCrc(batch));
        Assert.Equal(ErrorCode.CorruptMessage, v.Error);
        Assert.Contains("offsetDelta", v.Message);
    }

    [Theory]
    [MemberData(nameof(AllCodecs))]
    public void Truncated_batches_are_corrupt(CompressionType codec)
    {
        var batch = Sample(codec);
        foreach (int length in new[] { 0, 5, 16, 17, 60, 61, batch.Length / 2, batch.Length - 1 })
        {
            var v = RecordBatchValidator.Validate(batch.AsSpan(0, length));
            Assert.Equal(ErrorCode.CorruptMessage, v.Error);
        }
        // Also when the header's length and CRC are made to agree with the cut.
        var cut = batch[..^3];
        BinaryPrimitives.WriteInt32BigEndian(cut.AsSpan(RecordBatch.LengthOffset), cut.Length - 12);
        Assert.Equal(ErrorCode.CorruptMessage, RecordBatchValidator.Validate(TestData.FixCrc(cut)).Error);
    }

    [Theory]
    [MemberData(nameof(AllCodecs))]
    public void Trailing_garbage_is_corrupt(CompressionType codec)
    {
        var batch = Sample(codec);
        byte[] garbage = [0, 1, 2, 3, 4];
        Assert.Equal(ErrorCode.CorruptMessage, RecordBatchValidator.Validate(TestData.Concat(batch, garbage)).Error);
        // With the length and CRC covering it, the records section has bytes after the last record.
        var longer = TestData.Concat(batch, garbage);
        BinaryPrimitives.WriteInt32BigEndian(longer.AsSpan(RecordBatch.LengthOffset), longer.Length - 12);
        Assert.Equal(ErrorCode.CorruptMessage, RecordBatchValidator.Validate(TestData.FixCrc(longer)).Error);
    }

    [Theory]
    [InlineData(5)]
    [InlineData(6)]
    [InlineData(7)]
    public void Unknown_codec_id_is_unsupported_compression_type(int codecId)
    {
        var bad = Sample();
        short attributes = BinaryPrimitives.ReadInt16BigEndian(bad.AsSpan(RecordBatch.AttributesOffset));
        BinaryPrimitives.WriteInt16BigEndian(bad.AsSpan(RecordBatch.AttributesOffset), (short)((attributes & ~7) | codecId));
        var v = RecordBatchValidator.Validate(TestData.FixCrc(bad));
        Assert.Equal(ErrorCode.UnsupportedCompressionType, v.Error);
        Assert.Equal(9, v.ProducerId); // header facts are still reported
    }

    [Theory]
    [MemberData(nameof(CompressingCodecs))]
    public void Corrupt_compressed_records_with_a_good_crc_are_corrupt(CompressionType codec)
    {
        var batch = Sample(codec);
        var records = batch.AsSpan(RecordBatch.RecordsOffset);
        // Garbage over the whole compressed section.
        var garbage = (byte[])batch.Clone();
        TestData.Random(records.Length, seed: 5).CopyTo(garbage, RecordBatch.RecordsOffset);
        Assert.Equal(ErrorCode.CorruptMessage, RecordBatchValidator.Validate(TestData.FixCrc(garbage)).Error);
        // Uncompressed records claiming to be compressed.
        var plain = Sample();
        short attributes = BinaryPrimitives.ReadInt16BigEndian(plain.AsSpan(RecordBatch.AttributesOffset));
        BinaryPrimitives.WriteInt16BigEndian(plain.AsSpan(RecordBatch.AttributesOffset), (short)(attributes | (short)codec));
        Assert.Equal(ErrorCode.CorruptMessage, RecordBatchValidator.Validate(TestData.FixCrc(plain)).Error);
    }

    [Theory]
    [MemberData(nameof(CompressingCodecs))]
    public void Decompression_bombs_stop_at_the_scratch_bound(CompressionType codec)
    {
        using var b = new RecordBatchBuilder(codec);
        for (int i = 0; i < 100; i++) b.Append(0, null, new byte[10_000]);
        var batch = b.Build();
        using var small = new PooledBufferWriter(0, maxSize: 100_000);
        var v = RecordBatchValidator.Validate(batch, small);
        Assert.Equal(ErrorCode.CorruptMessage, v.Error);
        Assert.Contains("limit", v.Message);
        using var enough = new PooledBufferWriter(0, maxSize: 2_000_000);
        Assert.Equal(ErrorCode.None, RecordBatchValidator.Validate(batch, enough).Error);
        Assert.Equal(0, v.UncompressedRecordsSize);
        Assert.True(enough.WrittenCount > 1_000_000); // the scratch now holds the records section
    }

    [Fact]
    public void Header_max_timestamp_disagreeing_with_the_records_is_reported()
    {
        var batch = Sample();
        long computed = RecordBatchValidator.Validate(batch).MaxTimestamp;
        BinaryPrimitives.WriteInt64BigEndian(batch.AsSpan(RecordBatch.MaxTimestampOffset), computed - 1);
        var v = RecordBatchValidator.Validate(TestData.FixCrc(batch));
        Assert.Equal(ErrorCode.None, v.Error);
        Assert.True(v.MaxTimestampMismatch);
        Assert.Equal(computed, v.MaxTimestamp);
        Assert.Equal(computed - 1, v.HeaderMaxTimestamp);
        RecordBatch.SetMaxTimestamp(batch, v.MaxTimestamp);
        Assert.False(RecordBatchValidator.Validate(batch).MaxTimestampMismatch);
    }

    // ---- record sets

    [Fact]
    public void Split_finds_every_batch_and_rejects_bad_framing()
    {
        var a = Sample(CompressionType.None, 3);
        var b = Sample(CompressionType.Gzip, 5);
        var c = Sample(CompressionType.Zstd, 1);
        var set = TestData.Concat(a, b, c);
        var ranges = new List<Range>();
        Assert.Equal(ErrorCode.None, RecordBatchValidator.Split(set, ranges));
        Assert.Equal([a.Length, b.Length, c.Length], ranges.Select(r => r.GetOffsetAndLength(set.Length).Length));
        Assert.Equal(ErrorCode.None, RecordBatchValidator.Split([], ranges = []));
        Assert.Empty(ranges);

        // A partial trailing batch, in its log overhead or in its body.
        Assert.Equal(ErrorCode.CorruptMessage, RecordBatchValidator.Split(set.AsSpan(0, set.Length - 1), ranges = []));
        Assert.Equal(2, ranges.Count);
        Assert.Equal(ErrorCode.CorruptMessage, RecordBatchValidator.Split(TestData.Concat(a, new byte[11]), ranges = []));
        // Length below a batch header, and past the end.
        foreach (int length in new[] { -1, 0, 48, set.Length })
        {
            var bad = TestData.Concat(a, b);
            BinaryPrimitives.WriteInt32BigEndian(bad.AsSpan(a.Length + 8), length);
            var splitter = new RecordBatchSplitter(bad);
            Assert.True(splitter.TryNext(out var first));
            Assert.Equal(a.Length, first.Length);
            Assert.False(splitter.TryNext(out _));
            Assert.Equal(ErrorCode.CorruptMessage, splitter.Error);
            Assert.NotNull(splitter.Message);
        }
    }

    [Fact]
    public void Produce_rules_for_v3_and_later()
    {
        var plain = Sample();
        var zstd = Sample(CompressionType.Zstd);
        Assert.Equal(ErrorCode.None, RecordBatchValidator.ValidateProduce(plain, 3).Error);
        Assert.Equal(ErrorCode.InvalidRecord, RecordBatchValidator.ValidateProduce([], 9).Error);
        Assert.Equal(ErrorCode.InvalidRecord, RecordBatchValidator.ValidateProduce(TestData.Concat(plain, plain), 9).Error);
        Assert.Equal(ErrorCode.CorruptMessage, RecordBatchValidator.ValidateProduce(TestData.Concat(plain, [1, 2, 3]), 9).Error);
        Assert.Equal(ErrorCode.UnsupportedCompressionType, RecordBatchValidator.ValidateProduce(zstd, 6).Error);
        Assert.Equal(ErrorCode.None, RecordBatchValidator.ValidateProduce(zstd, 7).Error);
        var legacy = TestData.LegacyMessage(0, 1, 0, 5, null, [1]);
        Assert.Equal(ErrorCode.InvalidRecord, RecordBatchValidator.ValidateProduce(legacy, 3).Error);
        Assert.Throws<ArgumentOutOfRangeException>(() => RecordBatchValidator.ValidateProduce(plain, 2));
    }

    [Fact]
    public void Batch_records_reader_rejects_what_it_cannot_read()
    {
        using var scratch = new PooledBufferWriter();
        var ok = Sample(CompressionType.Snappy);
        Assert.Throws<InvalidDataException>(() => new BatchRecords(ok.AsSpan(0, 40), scratch));
        Assert.Throws<InvalidDataException>(() => new BatchRecords(ok.AsSpan(0, ok.Length - 1), scratch));
        var bad = Sample();
        bad[RecordBatch.RecordsOffset] = 0x7f; // first record's length now runs on
        var records = new BatchRecords(bad, null);
        Assert.Throws<InvalidDataException>(() =>
        {
            foreach (var _ in new BatchRecords(bad, null)) { }
        });
        Assert.Equal(20, records.Count);
    }
}
