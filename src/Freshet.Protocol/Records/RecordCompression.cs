using System.Buffers;
using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Hashing;
using K4os.Compression.LZ4;
using K4os.Compression.LZ4.Streams;
using Snappier;
using ZstdSharp;

namespace Freshet.Protocol.Records;

/// <summary>
/// The codecs of a batch's records section (and of a legacy wrapper message's value), in the
/// framings Kafka clients actually send:
/// <list type="bullet">
/// <item>gzip: RFC 1952 members (<see cref="GZipStream"/>); concatenated members decode as one.</item>
/// <item>snappy: the Java client writes the xerial (snappy-java) stream format, librdkafka writes one raw
/// snappy block. Decompression accepts both, telling them apart by the xerial magic (see
/// <see cref="XerialMagic"/>); compression writes xerial, which every consumer reads.</item>
/// <item>lz4: the LZ4 frame format, one frame of independent 64 KB blocks without content size or
/// checksum, as Kafka's producer writes it.</item>
/// <item>zstd: one or more zstd frames, with or without a declared content size (streaming compressors
/// such as the Java client's omit it), decoded with the streaming decoder.</item>
/// </list>
/// Both directions append to the destination writer. Bad input of any kind throws
/// <see cref="InvalidDataException"/> (codec exceptions are wrapped) and leaves the destination as it was;
/// output past the writer's <see cref="PooledBufferWriter.MaxSize"/> throws the same.
/// </summary>
public static class RecordCompression
{
    /// <summary>
    /// First 8 bytes of a xerial snappy stream: 0x82 "SNAPPY" 0x00. They are followed by two big-endian
    /// int32s, version and minimum compatible version (both 1), then chunks of a big-endian int32
    /// compressed length and a raw snappy block of at most 32 KB input. A raw snappy block cannot start
    /// with these bytes: 0x82 0x53 is a varint length, and the next byte 'N' (0x4E, tag 2) would be a copy
    /// before any literal, which is invalid, so the detection is unambiguous.
    /// </summary>
    public static ReadOnlySpan<byte> XerialMagic => [0x82, (byte)'S', (byte)'N', (byte)'A', (byte)'P', (byte)'P', (byte)'Y', 0];

    private const int XerialHeaderSize = 16;
    private const int XerialVersion = 1;
    private const int XerialCompatibleVersion = 1;
    private const int XerialBlockSize = 32 * 1024;

    /// <summary>Kafka's producer default for gzip is zlib's level 6, which <see cref="CompressionLevel.Optimal"/> maps to.</summary>
    private const CompressionLevel GzipLevel = CompressionLevel.Optimal;

    /// <summary>Kafka's default compression.zstd.level.</summary>
    private const int ZstdLevel = 3;

    private const int ReadChunk = 64 * 1024;

    private static readonly LZ4EncoderSettings Lz4Settings = new()
    {
        BlockSize = 64 * 1024,
        ChainBlocks = false,
        ContentChecksum = false,
        BlockChecksum = false,
        CompressionLevel = LZ4Level.L00_FAST,
    };

    // Zstd contexts are costly to create (and hold native tables), so each thread keeps one of each.
    [ThreadStatic] private static Compressor? t_zstdCompressor;
    [ThreadStatic] private static Decompressor? t_zstdDecompressor;

    /// <summary>True for the codec ids Kafka defines (0-4); 5-7 are unassigned.</summary>
    public static bool IsKnown(CompressionType type) => (byte)type <= (byte)CompressionType.Zstd;

    /// <summary>Compresses <paramref name="src"/> and appends the result to <paramref name="dst"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An unknown codec id.</exception>
    /// <exception cref="InvalidDataException">The output would exceed the writer's bound.</exception>
    public static void Compress(CompressionType type, ReadOnlySpan<byte> src, PooledBufferWriter dst)
    {
        ArgumentNullException.ThrowIfNull(dst);
        int start = dst.WrittenCount;
        try
        {
            switch (type)
            {
                case CompressionType.None: dst.Write(src); break;
                case CompressionType.Gzip: GzipCompress(src, dst); break;
                case CompressionType.Snappy: XerialCompress(src, dst); break;
                case CompressionType.Lz4: LZ4Frame.Encode(src, dst, Lz4Settings); break;
                case CompressionType.Zstd: ZstdCompress(src, dst); break;
                default: throw new ArgumentOutOfRangeException(nameof(type), type, "unknown compression codec");
            }
        }
        catch
        {
            dst.Truncate(start);
            throw;
        }
    }

    /// <summary>Decompresses <paramref name="src"/> and appends the result to <paramref name="dst"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An unknown codec id (check <see cref="IsKnown"/> first).</exception>
    /// <exception cref="InvalidDataException">Corrupt or truncated input, or output past the writer's bound.</exception>
    public static void Decompress(CompressionType type, ReadOnlySpan<byte> src, PooledBufferWriter dst)
    {
        ArgumentNullException.ThrowIfNull(dst);
        if (!IsKnown(type)) throw new ArgumentOutOfRangeException(nameof(type), type, "unknown compression codec");
        if (type == CompressionType.None)
        {
            dst.Write(src);
            return;
        }
        // Every codec's framing has at least a header; some decoders would return nothing for no input.
        if (src.IsEmpty) throw new InvalidDataException($"empty {type.Name()} data");
        int start = dst.WrittenCount;
        try
        {
            switch (type)
            {
                case CompressionType.Gzip: GzipDecompress(src, dst); break;
                case CompressionType.Snappy: SnappyDecompress(src, dst); break;
                case CompressionType.Lz4: Lz4Decompress(src, dst); break;
                case CompressionType.Zstd: ZstdDecompress(src, dst); break;
            }
        }
        catch (InvalidDataException)
        {
            dst.Truncate(start);
            throw;
        }
        catch (Exception e) when (e is not OutOfMemoryException and not ObjectDisposedException)
        {
            // Codecs report bad input as ArgumentException, IndexOutOfRangeException, EndOfStreamException,
            // ZstdException...; callers must only have to handle one type.
            dst.Truncate(start);
            throw new InvalidDataException($"corrupt {type.Name()} data: {e.Message}", e);
        }
    }

    // ---- gzip

    /// <summary>
    /// A gzip member holding nothing: header (magic 1f 8b, deflate, no flags, no mtime, no extra flags,
    /// OS unknown), a final fixed-Huffman deflate block with only its end code (03 00), then CRC-32 and
    /// size, both 0. <see cref="GZipStream"/> writes no bytes at all for empty input, which no gzip
    /// reader accepts.
    /// </summary>
    private static ReadOnlySpan<byte> EmptyGzipMember => [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    /// <summary>Header, the smallest deflate stream, trailer.</summary>
    private const int MinGzipMember = 20;

    private static void GzipCompress(ReadOnlySpan<byte> src, PooledBufferWriter dst)
    {
        if (src.IsEmpty)
        {
            dst.Write(EmptyGzipMember);
            return;
        }
        using var gz = new GZipStream(dst.AsStream(), GzipLevel, leaveOpen: true);
        gz.Write(src);
    }

    private static void GzipDecompress(ReadOnlySpan<byte> src, PooledBufferWriter dst)
    {
        int start = dst.WrittenCount;
        // GZipStream only reads streams, and a stream cannot hold a span: copy the (compressed, so
        // smaller) input into a pooled array.
        var input = ArrayPool<byte>.Shared.Rent(src.Length);
        try
        {
            src.CopyTo(input);
            using var ms = new MemoryStream(input, 0, src.Length, writable: false);
            using var gz = new GZipStream(ms, CompressionMode.Decompress);
            ReadToEnd(gz, dst);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(input);
        }
        CheckGzipEnd(src, dst.WrittenSpan[start..]);
    }

    /// <summary>
    /// <see cref="GZipStream"/> stops quietly when the input ends inside a member and ignores what follows
    /// the last member, so check that the input ends with the trailer of the last member: its last 8 bytes
    /// are the CRC-32 and the size (mod 2^32) of that member's data, which is the tail of the output. A cut
    /// or garbage tail matches that by chance with odds of 2^-32.
    /// </summary>
    private static void CheckGzipEnd(ReadOnlySpan<byte> src, ReadOnlySpan<byte> output)
    {
        if (src.Length < MinGzipMember) throw new InvalidDataException($"gzip data of {src.Length} bytes is shorter than a member");
        uint crc = BinaryPrimitives.ReadUInt32LittleEndian(src[^8..]);
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(src[^4..]);
        if (size > (uint)output.Length || Crc32.HashToUInt32(output[^(int)size..]) != crc)
            throw new InvalidDataException("gzip data is truncated or followed by other bytes");
    }

    /// <summary>Appends everything <paramref name="s"/> yields, stopping with an error at the writer's bound.</summary>
    private static void ReadToEnd(Stream s, PooledBufferWriter dst)
    {
        Span<byte> probe = stackalloc byte[1];
        while (true)
        {
            int room = dst.MaxSize - dst.WrittenCount;
            if (room == 0)
            {
                if (s.Read(probe) > 0) throw TooLarge(dst);
                return;
            }
            int n = s.Read(dst.GetSpan(Math.Min(room, ReadChunk)));
            if (n == 0) return;
            dst.Advance(n);
        }
    }

    // ---- snappy

    private static void XerialCompress(ReadOnlySpan<byte> src, PooledBufferWriter dst)
    {
        var header = dst.GetSpan(XerialHeaderSize);
        XerialMagic.CopyTo(header);
        BinaryPrimitives.WriteInt32BigEndian(header[8..], XerialVersion);
        BinaryPrimitives.WriteInt32BigEndian(header[12..], XerialCompatibleVersion);
        dst.Advance(XerialHeaderSize);
        while (!src.IsEmpty)
        {
            var block = src[..Math.Min(src.Length, XerialBlockSize)];
            src = src[block.Length..];
            var span = dst.GetSpan(4 + Snappy.GetMaxCompressedLength(block.Length));
            int n = Snappy.Compress(block, span[4..]);
            BinaryPrimitives.WriteInt32BigEndian(span, n);
            dst.Advance(4 + n);
        }
    }

    private static void SnappyDecompress(ReadOnlySpan<byte> src, PooledBufferWriter dst)
    {
        if (!src.StartsWith(XerialMagic))
        {
            SnappyBlock(src, dst);
            return;
        }
        int pos = 0;
        while (pos < src.Length)
        {
            var rest = src[pos..];
            // The header starts the stream, and snappy-java also accepts it again between chunks
            // (concatenated streams); a chunk length never has the high bit 0x82 has.
            if (rest.StartsWith(XerialMagic))
            {
                if (rest.Length < XerialHeaderSize) throw new InvalidDataException("truncated xerial snappy header");
                pos += XerialHeaderSize;
                continue;
            }
            if (rest.Length < 4) throw new InvalidDataException("truncated xerial snappy chunk length");
            int length = BinaryPrimitives.ReadInt32BigEndian(rest);
            if (length < 0 || length > rest.Length - 4)
                throw new InvalidDataException($"xerial snappy chunk of {length} bytes with {rest.Length - 4} left");
            if (length > 0) SnappyBlock(rest.Slice(4, length), dst);
            pos += 4 + length;
        }
    }

    private static void SnappyBlock(ReadOnlySpan<byte> block, PooledBufferWriter dst)
    {
        // A raw block starts with its uncompressed length (varint), so the output is sized exactly.
        int length = Snappy.GetUncompressedLength(block);
        if (length == 0)
        {
            Snappy.Decompress(block, []);
            return;
        }
        var span = dst.GetSpan(length)[..length];
        int n = Snappy.Decompress(block, span);
        if (n != length) throw new InvalidDataException($"snappy block declared {length} bytes and held {n}");
        dst.Advance(n);
    }

    // ---- lz4

    /// <summary>
    /// Rewrites the header checksum (HC) byte of an LZ4 frame at the start of <paramref name="frame"/> to
    /// the correct value. Kafka's first LZ4 writers (magic 0 messages; KIP-57) computed HC over the magic
    /// number as well as the frame descriptor, and Kafka still accepts that for magic 0, while the LZ4
    /// frame decoder rejects it. HC is byte 1 of xxHash32 (seed 0) of the descriptor, i.e. FLG through
    /// the optional content size and dictionary id. Does nothing when the bytes are not an LZ4 frame header.
    /// </summary>
    public static void FixLz4HeaderChecksum(Span<byte> frame)
    {
        if (frame.Length < 7 || BinaryPrimitives.ReadUInt32LittleEndian(frame) != 0x184D2204) return;
        byte flg = frame[4];
        int descriptor = 2 + ((flg & 0x08) != 0 ? 8 : 0) + ((flg & 0x01) != 0 ? 4 : 0);
        if (frame.Length < 4 + descriptor + 1) return;
        uint hash = XxHash32.HashToUInt32(frame.Slice(4, descriptor));
        frame[4 + descriptor] = (byte)(hash >> 8);
    }

    private const uint Lz4FrameMagic = 0x184D2204;

    private static void Lz4Decompress(ReadOnlySpan<byte> src, PooledBufferWriter dst)
    {
        // The span decoder reads one frame and ignores what follows, so frames are delimited here and
        // decoded one by one; a truncated frame or stray bytes fail the walk.
        int pos = 0;
        while (pos < src.Length)
        {
            int length = Lz4FrameLength(src[pos..], out bool skippable);
            if (length < 0) throw new InvalidDataException("truncated or malformed lz4 frame");
            if (!skippable) LZ4Frame.Decode(src.Slice(pos, length), new BoundedWriter(dst));
            pos += length;
        }
    }

    /// <summary>
    /// Length of the LZ4 frame (or skippable frame) at the start of <paramref name="s"/>, or -1 when it is
    /// not one or is cut short. Frame layout (little-endian): magic 0x184D2204, FLG, BD, [content size 8],
    /// [dictionary id 4], HC, then blocks of a 4-byte size (high bit: stored uncompressed) and data
    /// [+ 4-byte block checksum], ended by a zero size [+ 4-byte content checksum]. Skippable frames are
    /// a magic 0x184D2A50-5F, a 4-byte size and that many bytes.
    /// </summary>
    private static int Lz4FrameLength(ReadOnlySpan<byte> s, out bool skippable)
    {
        skippable = false;
        if (s.Length < 4) return -1;
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(s);
        if ((magic & 0xFFFFFFF0) == 0x184D2A50)
        {
            skippable = true;
            if (s.Length < 8) return -1;
            uint size = BinaryPrimitives.ReadUInt32LittleEndian(s[4..]);
            return size > (uint)(s.Length - 8) ? -1 : 8 + (int)size;
        }
        if (magic != Lz4FrameMagic || s.Length < 7) return -1;
        byte flg = s[4];
        bool blockChecksum = (flg & 0x10) != 0;
        int pos = 6 + ((flg & 0x08) != 0 ? 8 : 0) + ((flg & 0x01) != 0 ? 4 : 0) + 1;
        while (true)
        {
            if (s.Length - pos < 4) return -1;
            uint block = BinaryPrimitives.ReadUInt32LittleEndian(s[pos..]);
            pos += 4;
            if (block == 0) break;
            long data = (block & 0x7FFFFFFF) + (blockChecksum ? 4 : 0);
            if (data > s.Length - pos) return -1;
            pos += (int)data;
        }
        if ((flg & 0x04) != 0)
        {
            if (s.Length - pos < 4) return -1;
            pos += 4;
        }
        return pos;
    }

    /// <summary>
    /// Hands the LZ4 decoder spans that stop at the writer's bound. The decoder asks for 4 KB or more even
    /// when the frame has no data left, so a strict writer would refuse output that ends exactly at its
    /// bound; at the bound this gives a one-byte probe instead and fails only if the decoder fills it.
    /// </summary>
    private readonly struct BoundedWriter(PooledBufferWriter dst) : IBufferWriter<byte>
    {
        [ThreadStatic] private static byte[]? t_probe;

        private int Room => dst.MaxSize - dst.WrittenCount;

        public void Advance(int count)
        {
            if (Room > 0) dst.Advance(count);
            else if (count > 0) throw TooLarge(dst);
        }

        public Memory<byte> GetMemory(int sizeHint = 0) =>
            Room == 0 ? (t_probe ??= new byte[1]) : dst.GetMemory(Math.Clamp(sizeHint, 1, Room));

        public Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;
    }

    // ---- zstd

    private static void ZstdCompress(ReadOnlySpan<byte> src, PooledBufferWriter dst)
    {
        var c = t_zstdCompressor ??= new Compressor(ZstdLevel);
        var span = dst.GetSpan(Compressor.GetCompressBound(src.Length));
        int n = c.Wrap(src, span);
        dst.Advance(n);
    }

    private static void ZstdDecompress(ReadOnlySpan<byte> src, PooledBufferWriter dst)
    {
        // The streaming decoder cannot tell "input ended exactly at a frame end" from "input ended
        // inside a frame" when the output buffer filled at the same moment, so completeness is checked
        // structurally first; then only the codec itself can find fault with the input.
        if (!ZstdFramesComplete(src)) throw new InvalidDataException("truncated or malformed zstd frame");
        var d = t_zstdDecompressor ??= new Decompressor();
        d.ResetStream();
        Span<byte> probe = stackalloc byte[1];
        var input = src;
        while (true)
        {
            int room = dst.MaxSize - dst.WrittenCount;
            var output = room == 0 ? probe : dst.GetSpan(Math.Min(room, 2 * ReadChunk));
            var status = d.UnwrapStream(input, output, out int consumed, out int written);
            input = input[consumed..];
            if (status == OperationStatus.InvalidData)
            {
                d.ResetStream();
                throw new InvalidDataException("corrupt zstd data");
            }
            if (room == 0)
            {
                if (written > 0) throw TooLarge(dst);
            }
            else
            {
                dst.Advance(written);
            }
            // Done and NeedMoreData come only with the input used up; the structural check says it was whole.
            if (status != OperationStatus.DestinationTooSmall) return;
        }
    }

    /// <summary>
    /// True when <paramref name="s"/> is a sequence of whole zstd frames (RFC 8878) and skippable frames with
    /// nothing after them. Reads only headers: frame header, then 3-byte block headers
    /// (bit 0 last block, bits 1-2 type: raw / RLE (1 byte of content) / compressed / reserved,
    /// bits 3-23 size), then the optional 4-byte checksum.
    /// </summary>
    private static bool ZstdFramesComplete(ReadOnlySpan<byte> s)
    {
        const uint FrameMagic = 0xFD2FB528;
        const int MaxBlockSize = 128 * 1024;
        int pos = 0;
        while (pos < s.Length)
        {
            if (s.Length - pos < 4) return false;
            uint magic = BinaryPrimitives.ReadUInt32LittleEndian(s[pos..]);
            pos += 4;
            if ((magic & 0xFFFFFFF0) == 0x184D2A50)
            {
                // Skippable frame: 4-byte little-endian size, then that many bytes.
                if (s.Length - pos < 4) return false;
                uint size = BinaryPrimitives.ReadUInt32LittleEndian(s[pos..]);
                pos += 4;
                if (size > (uint)(s.Length - pos)) return false;
                pos += (int)size;
                continue;
            }
            if (magic != FrameMagic || pos >= s.Length) return false;
            byte fhd = s[pos++];
            if ((fhd & 0x08) != 0) return false; // reserved bit
            bool singleSegment = (fhd & 0x20) != 0;
            int fcsSize = (fhd >> 6) switch { 0 => singleSegment ? 1 : 0, 1 => 2, 2 => 4, _ => 8 };
            int dictSize = (fhd & 0x03) switch { 0 => 0, 1 => 1, 2 => 2, _ => 4 };
            int rest = (singleSegment ? 0 : 1) + dictSize + fcsSize;
            if (s.Length - pos < rest) return false;
            pos += rest;
            bool last;
            do
            {
                if (s.Length - pos < 3) return false;
                int header = s[pos] | (s[pos + 1] << 8) | (s[pos + 2] << 16);
                pos += 3;
                last = (header & 1) != 0;
                int size = header >> 3;
                int content = ((header >> 1) & 3) switch { 0 => size, 1 => 1, 2 => size, _ => -1 };
                if (content < 0 || size > MaxBlockSize || s.Length - pos < content) return false;
                pos += content;
            } while (!last);
            if ((fhd & 0x04) != 0)
            {
                if (s.Length - pos < 4) return false;
                pos += 4;
            }
        }
        return true;
    }

    private static InvalidDataException TooLarge(PooledBufferWriter dst) =>
        new($"decompressed data exceeds the limit of {dst.MaxSize} bytes");
}
