using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Hashing;
using Freshet.Protocol.Records;
using Snappier;
using ZstdSharp;

namespace Freshet.Protocol.Tests.Records;

public class RecordCompressionTests
{
    public static TheoryData<CompressionType> AllCodecs => TestData.AllCodecs;
    public static TheoryData<CompressionType> CompressingCodecs => TestData.CompressingCodecs;

    public static TheoryData<CompressionType, int, bool> RoundTripCases()
    {
        var data = new TheoryData<CompressionType, int, bool>();
        foreach (var codec in TestData.Codecs)
            foreach (int size in new[] { 0, 1, 100, 32 * 1024, 64 * 1024 + 1, 1024 * 1024 })
                foreach (bool random in new[] { false, true })
                    data.Add(codec, size, random);
        return data;
    }

    [Theory]
    [MemberData(nameof(RoundTripCases))]
    public void Round_trips(CompressionType codec, int size, bool random)
    {
        var input = random ? TestData.Random(size) : TestData.Compressible(size);
        var compressed = TestData.Compress(codec, input);
        if (codec != CompressionType.None) Assert.NotEmpty(compressed); // every framing has a header
        if (codec != CompressionType.None && !random && size >= 32 * 1024) Assert.True(compressed.Length < input.Length / 2, $"{codec} did not compress");
        Assert.Equal(input, TestData.Decompress(codec, compressed));
    }

    [Theory]
    [MemberData(nameof(CompressingCodecs))]
    public void Appends_after_existing_bytes(CompressionType codec)
    {
        var input = TestData.Compressible(10_000);
        using var w = new PooledBufferWriter();
        w.Write([1, 2, 3]);
        RecordCompression.Compress(codec, input, w);
        var compressed = w.WrittenSpan[3..].ToArray();
        w.Clear();
        w.Write([7]);
        RecordCompression.Decompress(codec, compressed, w);
        Assert.Equal(7, w.WrittenSpan[0]);
        Assert.True(w.WrittenSpan[1..].SequenceEqual(input));
    }

    // ---- snappy framings

    [Fact]
    public void Snappy_compress_writes_xerial_framing()
    {
        var input = TestData.Compressible(100_000);
        var c = TestData.Compress(CompressionType.Snappy, input);
        Assert.True(c.AsSpan().StartsWith(RecordCompression.XerialMagic));
        Assert.Equal(1, BinaryPrimitives.ReadInt32BigEndian(c.AsSpan(8)));  // version
        Assert.Equal(1, BinaryPrimitives.ReadInt32BigEndian(c.AsSpan(12))); // compatible version
        // Chunks of at most 32 KB input: 100,000 bytes make four.
        int pos = 16, chunks = 0, total = 0;
        while (pos < c.Length)
        {
            int n = BinaryPrimitives.ReadInt32BigEndian(c.AsSpan(pos));
            total += Snappy.GetUncompressedLength(c.AsSpan(pos + 4, n));
            pos += 4 + n;
            chunks++;
        }
        Assert.Equal(c.Length, pos);
        Assert.Equal(4, chunks);
        Assert.Equal(input.Length, total);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(1000)]
    [InlineData(1024 * 1024)]
    public void Snappy_decodes_raw_blocks_as_librdkafka_writes_them(int size)
    {
        var input = TestData.Compressible(size);
        var raw = Snappy.CompressToArray(input);
        Assert.Equal(input, TestData.Decompress(CompressionType.Snappy, raw));
    }

    [Fact]
    public void Snappy_decodes_hand_made_xerial_with_several_chunks_and_a_repeated_header()
    {
        var a = TestData.Compressible(5000, seed: 3);
        var b = TestData.Random(700, seed: 4);
        var c = TestData.Compressible(40_000, seed: 5);
        byte[] header = [.. RecordCompression.XerialMagic, 0, 0, 0, 1, 0, 0, 0, 1];
        var stream = TestData.Concat(header, Chunk(a), Chunk(b), header, Chunk(c));
        Assert.Equal(TestData.Concat(a, b, c), TestData.Decompress(CompressionType.Snappy, stream));

        static byte[] Chunk(byte[] data)
        {
            var block = Snappy.CompressToArray(data);
            var len = new byte[4];
            BinaryPrimitives.WriteInt32BigEndian(len, block.Length);
            return TestData.Concat(len, block);
        }
    }

    [Fact]
    public void Snappy_xerial_with_a_chunk_length_past_the_end_is_corrupt()
    {
        var c = TestData.Compress(CompressionType.Snappy, TestData.Compressible(1000));
        BinaryPrimitives.WriteInt32BigEndian(c.AsSpan(16), c.Length);
        Assert.Throws<InvalidDataException>(() => TestData.Decompress(CompressionType.Snappy, c));
        Assert.Throws<InvalidDataException>(() => TestData.Decompress(CompressionType.Snappy, c.AsSpan(0, 12)));
    }

    // ---- lz4 and zstd framings

    [Fact]
    public void Lz4_frame_has_kafkas_descriptor()
    {
        var c = TestData.Compress(CompressionType.Lz4, TestData.Compressible(200_000));
        Assert.Equal(0x184D2204u, BinaryPrimitives.ReadUInt32LittleEndian(c));
        byte flg = c[4], bd = c[5];
        Assert.Equal(0b01, flg >> 6);        // version
        Assert.NotEqual(0, flg & 0x20);      // independent blocks
        Assert.Equal(0, flg & 0x10);         // no block checksum
        Assert.Equal(0, flg & 0x08);         // no content size
        Assert.Equal(0, flg & 0x04);         // no content checksum
        Assert.Equal(4, (bd >> 4) & 0x07);   // 64 KB maximum block size
        Assert.Equal((byte)(XxHash32.HashToUInt32(c.AsSpan(4, 2)) >> 8), c[6]);
    }

    [Fact]
    public void Lz4_header_checksum_fix_repairs_kafkas_old_miscomputed_checksum()
    {
        var input = TestData.Compressible(10_000);
        var c = TestData.Compress(CompressionType.Lz4, input);
        // Kafka's first LZ4 writer hashed the magic number along with the descriptor.
        c[6] = (byte)(XxHash32.HashToUInt32(c.AsSpan(0, 6)) >> 8);
        Assert.Throws<InvalidDataException>(() => TestData.Decompress(CompressionType.Lz4, c));
        RecordCompression.FixLz4HeaderChecksum(c);
        Assert.Equal(input, TestData.Decompress(CompressionType.Lz4, c));
    }

    [Fact]
    public void Zstd_decodes_streamed_frames_without_content_size()
    {
        var input = TestData.Compressible(300_000);
        var ms = new MemoryStream();
        using (var z = new CompressionStream(ms, 3, leaveOpen: true))
        {
            // Several writes and a flush, as a streaming producer does: blocks end mid-input.
            z.Write(input.AsSpan(0, 1000));
            z.Flush();
            z.Write(input.AsSpan(1000));
        }
        var frame = ms.ToArray();
        Assert.Equal(0, frame[4] >> 6);   // Frame_Content_Size_flag 0 ...
        Assert.Equal(0, frame[4] & 0x20); // ... without Single_Segment: no content size field
        Assert.Equal(input, TestData.Decompress(CompressionType.Zstd, frame));
    }

    [Fact]
    public void Zstd_decodes_concatenated_and_skippable_frames()
    {
        var a = TestData.Compressible(5000, seed: 7);
        var b = TestData.Random(3000, seed: 8);
        byte[] skippable = [0x50, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 9, 9, 9];
        var stream = TestData.Concat(TestData.Compress(CompressionType.Zstd, a), skippable, TestData.Compress(CompressionType.Zstd, b));
        Assert.Equal(TestData.Concat(a, b), TestData.Decompress(CompressionType.Zstd, stream));
    }

    [Fact]
    public void Lz4_decodes_concatenated_frames()
    {
        var a = TestData.Compressible(70_000, seed: 11);
        var b = TestData.Random(100, seed: 12);
        var stream = TestData.Concat(TestData.Compress(CompressionType.Lz4, a), TestData.Compress(CompressionType.Lz4, b));
        Assert.Equal(TestData.Concat(a, b), TestData.Decompress(CompressionType.Lz4, stream));
    }

    [Fact]
    public void Gzip_decodes_concatenated_members()
    {
        var a = TestData.Compressible(5000, seed: 9);
        var b = TestData.Compressible(7000, seed: 10);
        var stream = TestData.Concat(TestData.Compress(CompressionType.Gzip, a), TestData.Compress(CompressionType.Gzip, b));
        Assert.Equal(TestData.Concat(a, b), TestData.Decompress(CompressionType.Gzip, stream));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(50_000)]
    public void Gzip_output_is_a_standard_gzip_member(int size)
    {
        var input = TestData.Compressible(size);
        var c = TestData.Compress(CompressionType.Gzip, input);
        Assert.Equal(0x1f, c[0]);
        Assert.Equal(0x8b, c[1]);
        using var gz = new GZipStream(new MemoryStream(c), CompressionMode.Decompress);
        var outp = new MemoryStream();
        gz.CopyTo(outp);
        Assert.Equal(input, outp.ToArray());
    }

    // ---- bad input

    [Theory]
    [MemberData(nameof(CompressingCodecs))]
    public void Truncated_data_is_InvalidDataException(CompressionType codec)
    {
        var input = TestData.Compressible(200_000);
        var c = TestData.Compress(codec, input);
        foreach (int cut in new[] { 1, 2, 5, 10, c.Length / 3, c.Length / 2, c.Length - 9, c.Length - 1 })
        {
            if (cut <= 0 || cut >= c.Length) continue;
            // Some cuts of a multi-block stream can still be a valid shorter stream for formats
            // without an end marker; none of ours is one, so every cut must fail.
            Assert.Throws<InvalidDataException>(() => TestData.Decompress(codec, c.AsSpan(0, cut)));
        }
    }

    [Theory]
    [MemberData(nameof(CompressingCodecs))]
    public void Garbage_is_InvalidDataException(CompressionType codec)
    {
        foreach (int seed in new[] { 1, 2, 3 })
            Assert.Throws<InvalidDataException>(() => TestData.Decompress(codec, TestData.Random(1000, seed)));
        Assert.Throws<InvalidDataException>(() => TestData.Decompress(codec, []));
    }

    [Theory]
    [MemberData(nameof(CompressingCodecs))]
    public void Trailing_garbage_is_InvalidDataException(CompressionType codec)
    {
        var c = TestData.Compress(codec, TestData.Compressible(10_000));
        Assert.Throws<InvalidDataException>(() => TestData.Decompress(codec, TestData.Concat(c, [1, 2, 3, 4, 5, 6, 7, 8])));
    }

    [Theory]
    [MemberData(nameof(CompressingCodecs))]
    public void Damaged_headers_are_InvalidDataException(CompressionType codec)
    {
        var c = TestData.Compress(codec, TestData.Compressible(10_000));
        // Damage the framing right at the start (magic numbers, headers, first lengths).
        for (int i = 0; i < 4; i++)
        {
            var bad = (byte[])c.Clone();
            bad[i] ^= 0x5a;
            Assert.Throws<InvalidDataException>(() => TestData.Decompress(codec, bad));
        }
    }

    [Fact]
    public void Gzip_checks_its_crc()
    {
        var c = TestData.Compress(CompressionType.Gzip, TestData.Compressible(10_000));
        c[^8] ^= 1; // the CRC-32 in the trailer
        Assert.Throws<InvalidDataException>(() => TestData.Decompress(CompressionType.Gzip, c));
    }

    [Theory]
    [MemberData(nameof(CompressingCodecs))]
    public void Decompression_stops_at_the_writer_bound(CompressionType codec)
    {
        var input = new byte[1024 * 1024]; // zeros: a small input that inflates a lot
        var c = TestData.Compress(codec, input);
        Assert.True(c.Length < input.Length / 10);
        var e = Assert.Throws<InvalidDataException>(() => TestData.Decompress(codec, c, maxSize: 64 * 1024));
        Assert.Contains("limit", e.Message);
        // Exactly at the bound is fine, one byte below is not.
        Assert.Equal(input, TestData.Decompress(codec, c, maxSize: input.Length));
        Assert.Throws<InvalidDataException>(() => TestData.Decompress(codec, c, maxSize: input.Length - 1));
    }

    [Theory]
    [MemberData(nameof(CompressingCodecs))]
    public void Failed_decompression_leaves_the_writer_as_it_was(CompressionType codec)
    {
        var c = TestData.Compress(codec, TestData.Compressible(100_000));
        using var w = new PooledBufferWriter();
        w.Write([1, 2, 3]);
        Assert.Throws<InvalidDataException>(() => RecordCompression.Decompress(codec, c.AsSpan(0, c.Length - 3), w));
        Assert.Equal([1, 2, 3], w.ToArray());
    }

    [Fact]
    public void Unknown_codec_ids_are_argument_errors()
    {
        using var w = new PooledBufferWriter();
        Assert.False(RecordCompression.IsKnown((CompressionType)5));
        Assert.Throws<ArgumentOutOfRangeException>(() => RecordCompression.Decompress((CompressionType)7, [1], w));
        Assert.Throws<ArgumentOutOfRangeException>(() => RecordCompression.Compress((CompressionType)6, [1], w));
    }
}
