using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;

namespace Freshet.Protocol.Wire;

/// <summary>
/// Reads Kafka's primitive types from one contiguous frame. Byte and record fields come back as
/// slices of the frame (no copy), so the frame's buffer must outlive what is read from it.
/// Malformed input throws <see cref="ProtocolException"/>; nothing here returns partial values.
/// </summary>
public ref struct ProtocolReader
{
    private readonly ReadOnlyMemory<byte> _memory;
    private readonly ReadOnlySpan<byte> _span;
    private int _pos;

    public ProtocolReader(ReadOnlyMemory<byte> memory)
    {
        _memory = memory;
        _span = memory.Span;
        _pos = 0;
    }

    public readonly int Position => _pos;
    public readonly int Remaining => _span.Length - _pos;
    public readonly bool End => _pos >= _span.Length;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ReadOnlySpan<byte> Take(int n)
    {
        if ((uint)n > (uint)(_span.Length - _pos)) ProtocolException.ThrowTruncated(n, _span.Length - _pos);
        var s = _span.Slice(_pos, n);
        _pos += n;
        return s;
    }

    public void Skip(int n) => Take(n);

    public sbyte ReadInt8() => (sbyte)Take(1)[0];
    public bool ReadBool() => Take(1)[0] != 0;
    public short ReadInt16() => BinaryPrimitives.ReadInt16BigEndian(Take(2));
    public ushort ReadUInt16() => BinaryPrimitives.ReadUInt16BigEndian(Take(2));
    public int ReadInt32() => BinaryPrimitives.ReadInt32BigEndian(Take(4));
    public uint ReadUInt32() => BinaryPrimitives.ReadUInt32BigEndian(Take(4));
    public long ReadInt64() => BinaryPrimitives.ReadInt64BigEndian(Take(8));
    public double ReadFloat64() => BinaryPrimitives.ReadDoubleBigEndian(Take(8));

    public Uuid ReadUuid()
    {
        var s = Take(16);
        return new Uuid(BinaryPrimitives.ReadInt64BigEndian(s), BinaryPrimitives.ReadInt64BigEndian(s[8..]));
    }

    /// <summary>Unsigned LEB128 varint, at most 5 bytes.</summary>
    public uint ReadUnsignedVarInt()
    {
        uint value = 0;
        for (int shift = 0; shift < 35; shift += 7)
        {
            byte b = Take(1)[0];
            value |= (uint)(b & 0x7f) << shift;
            if ((b & 0x80) == 0) return value;
        }
        ProtocolException.Throw("varint longer than 5 bytes");
        return 0;
    }

    /// <summary>Unsigned LEB128 varint, at most 10 bytes.</summary>
    public ulong ReadUnsignedVarLong()
    {
        ulong value = 0;
        for (int shift = 0; shift < 70; shift += 7)
        {
            byte b = Take(1)[0];
            value |= (ulong)(b & 0x7f) << shift;
            if ((b & 0x80) == 0) return value;
        }
        ProtocolException.Throw("varlong longer than 10 bytes");
        return 0;
    }

    /// <summary>Zig-zag signed varint (record fields).</summary>
    public int ReadVarInt()
    {
        uint v = ReadUnsignedVarInt();
        return (int)(v >> 1) ^ -(int)(v & 1);
    }

    /// <summary>Zig-zag signed varlong (record fields).</summary>
    public long ReadVarLong()
    {
        ulong v = ReadUnsignedVarLong();
        return (long)(v >> 1) ^ -(long)(v & 1);
    }

    // ---- lengths

    private readonly int CheckLength(int length, string what)
    {
        if (length < 0) ProtocolException.Throw($"negative {what} length {length}");
        if (length > Remaining) ProtocolException.ThrowTruncated(length, Remaining);
        return length;
    }

    /// <summary>Compact length: unsigned varint N+1, 0 meaning null (returned as -1).</summary>
    private int ReadCompactLength()
    {
        uint v = ReadUnsignedVarInt();
        if (v > int.MaxValue) ProtocolException.Throw($"compact length {v} too large");
        return (int)v - 1;
    }

    /// <summary>
    /// The most elements an array of a request or response may have, and the most tagged fields one
    /// structure may carry (Kafka 4.4's limits). Checked before anything is allocated for them: a
    /// large frame could otherwise make the decoder reserve a list of millions of references (8
    /// bytes each for every byte of input) before finding the input short.
    /// </summary>
    public const int MaxArrayLength = 1_000_000;
    public const int MaxTaggedFields = 10_000;

    /// <summary>Array element count, -1 for null; checked against the limit and the bytes left (every element takes at least one byte).</summary>
    public int ReadArrayLength(bool compact)
    {
        int n = compact ? ReadCompactLength() : ReadInt32();
        if (n < -1) ProtocolException.Throw($"negative array length {n}");
        if (n > MaxArrayLength) ProtocolException.Throw($"array of {n} elements is longer than the limit of {MaxArrayLength}");
        if (n > Remaining) ProtocolException.Throw($"array of {n} elements cannot fit in {Remaining} bytes");
        return n;
    }

    /// <summary>The number of tagged fields that follows: at most <see cref="MaxTaggedFields"/>, and two bytes each at least (tag and size).</summary>
    public int ReadTaggedFieldCount()
    {
        uint n = ReadUnsignedVarInt();
        if (n > MaxTaggedFields) ProtocolException.Throw($"{n} tagged fields are more than the limit of {MaxTaggedFields}");
        if (n * 2 > (uint)Remaining) ProtocolException.Throw($"{n} tagged fields cannot fit in {Remaining} bytes");
        return (int)n;
    }

    // ---- strings

    public string ReadString(bool compact) =>
        ReadNullableString(compact) ?? ProtocolException.ThrowNull<string>("string");

    public string? ReadNullableString(bool compact)
    {
        int n = compact ? ReadCompactLength() : ReadInt16();
        if (n < 0)
        {
            if (n == -1) return null;
            ProtocolException.Throw($"negative string length {n}");
        }
        CheckLength(n, "string");
        return n == 0 ? string.Empty : Encoding.UTF8.GetString(Take(n));
    }

    // ---- bytes and records (slices of the frame)

    public ReadOnlyMemory<byte> ReadBytes(bool compact) =>
        ReadNullableBytes(compact) ?? ProtocolException.ThrowNull<ReadOnlyMemory<byte>>("bytes");

    public ReadOnlyMemory<byte>? ReadNullableBytes(bool compact)
    {
        int n = compact ? ReadCompactLength() : ReadInt32();
        if (n < 0)
        {
            if (n == -1) return null;
            ProtocolException.Throw($"negative bytes length {n}");
        }
        CheckLength(n, "bytes");
        var m = _memory.Slice(_pos, n);
        _pos += n;
        return m;
    }

    public RecordSet? ReadRecords(bool compact)
    {
        var m = ReadNullableBytes(compact);
        return m is null ? null : new RecordSet(m.Value);
    }

    /// <summary>Raw bytes of a tagged field this code does not know, copied so they outlive the frame.</summary>
    public byte[] ReadRawBytes(int n)
    {
        CheckLength(n, "tagged field");
        return Take(n).ToArray();
    }

    /// <summary>Reads the size of a known tagged field and returns the position where it must end.</summary>
    public int ReadTaggedFieldEnd()
    {
        int size = (int)ReadUnsignedVarInt();
        CheckLength(size, "tagged field");
        return _pos + size;
    }

    /// <summary>Moves to the end of a tagged field (a newer writer may have appended to it).</summary>
    public void SeekTaggedFieldEnd(int end)
    {
        if (_pos > end) ProtocolException.Throw("tagged field overran its size");
        _pos = end;
    }
}
