using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using Freshet.Protocol.Records;

namespace Freshet.Protocol.Tests.Records;

/// <summary>Deterministic inputs and hand-made encodings shared by the record tests.</summary>
internal static class TestData
{
    public static readonly CompressionType[] Codecs =
        [CompressionType.None, CompressionType.Gzip, CompressionType.Snappy, CompressionType.Lz4, CompressionType.Zstd];

    public static TheoryData<CompressionType> AllCodecs => [.. Codecs];

    public static TheoryData<CompressionType> CompressingCodecs => [.. Codecs.Where(c => c != CompressionType.None)];

    /// <summary>Text-like bytes that compress well.</summary>
    public static byte[] Compressible(int size, int seed = 1)
    {
        var rng = new Random(seed);
        string[] words = ["kafka", "record", "batch", "offset", "freshet", "partition", "leader", "epoch", "{\"id\":", "}\n"];
        var sb = new StringBuilder(size + 16);
        while (sb.Length < size) sb.Append(words[rng.Next(words.Length)]).Append(' ').Append(rng.Next(1000));
        return Encoding.ASCII.GetBytes(sb.ToString(0, size));
    }

    /// <summary>Bytes that do not compress.</summary>
    public static byte[] Random(int size, int seed = 2)
    {
        var b = new byte[size];
        new Random(seed).NextBytes(b);
        return b;
    }

    public static byte[] Compress(CompressionType codec, ReadOnlySpan<byte> data)
    {
        using var w = new PooledBufferWriter();
        RecordCompression.Compress(codec, data, w);
        return w.ToArray();
    }

    public static byte[] Decompress(CompressionType codec, ReadOnlySpan<byte> data, int maxSize = int.MaxValue)
    {
        using var w = new PooledBufferWriter(0, maxSize);
        RecordCompression.Decompress(codec, data, w);
        return w.ToArray();
    }

    /// <summary>One legacy entry: offset, size, crc, magic, attributes, [timestamp], key, value.</summary>
    public static byte[] LegacyMessage(long offset, byte magic, byte attributes, long timestamp, byte[]? key, byte[]? value)
    {
        int size = (magic == 0 ? 14 : 22) + (key?.Length ?? 0) + (value?.Length ?? 0);
        var b = new byte[12 + size];
        BinaryPrimitives.WriteInt64BigEndian(b, offset);
        BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(8), size);
        int p = 16;
        b[p++] = magic;
        b[p++] = attributes;
        if (magic == 1)
        {
            BinaryPrimitives.WriteInt64BigEndian(b.AsSpan(p), timestamp);
            p += 8;
        }
        foreach (var field in new[] { key, value })
        {
            BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(p), field?.Length ?? -1);
            p += 4;
            field?.CopyTo(b, p);
            p += field?.Length ?? 0;
        }
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(12), Crc32.HashToUInt32(b.AsSpan(16)));
        return b;
    }

    /// <summary>A compressed wrapper around <paramref name="inner"/> (a message set), as old producers wrote it.</summary>
    public static byte[] LegacyWrapper(long offset, byte magic, CompressionType codec, long timestamp, byte[] inner, bool logAppendTime = false) =>
        LegacyMessage(offset, magic, (byte)((byte)codec | (logAppendTime ? 0x08 : 0)), timestamp, null, Compress(codec, inner));

    public static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    /// <summary>Recomputes the CRC of a v2 batch after a test edited it.</summary>
    public static byte[] FixCrc(byte[] batch)
    {
        RecordBatch.UpdateCrc(batch);
        return batch;
    }
}
