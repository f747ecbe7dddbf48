using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;

namespace Freshet.Protocol.Wire;

/// <summary>
/// Writes Kafka's primitive types into a span sized beforehand with <see cref="MessageSize"/>.
/// Transferable records are not copied: their place is noted in <see cref="Splices"/> and the
/// transport sends them between the in-memory parts.
/// </summary>
public ref struct ProtocolWriter
{
    private readonly Span<byte> _span;
    private int _pos;
    private List<RecordSplice>? _splices;

    public ProtocolWriter(Span<byte> destination)
    {
        _span = destination;
        _pos = 0;
        _splices = null;
    }

    /// <summary>Bytes written to the span so far (external records excluded).</summary>
    public readonly int Position => _pos;

    /// <summary>Transferable records in wire order, or null when there are none.</summary>
    public readonly List<RecordSplice>? Splices => _splices;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Span<byte> Take(int n)
    {
        var s = _span.Slice(_pos, n);
        _pos += n;
        return s;
    }

    public void WriteInt8(sbyte v) => Take(1)[0] = (byte)v;
    public void WriteBool(bool v) => Take(1)[0] = v ? (byte)1 : (byte)0;
    public void WriteInt16(short v) => BinaryPrimitives.WriteInt16BigEndian(Take(2), v);
    public void WriteUInt16(ushort v) => BinaryPrimitives.WriteUInt16BigEndian(Take(2), v);
    public void WriteInt32(int v) => BinaryPrimitives.WriteInt32BigEndian(Take(4), v);
    public void WriteUInt32(uint v) => BinaryPrimitives.WriteUInt32BigEndian(Take(4), v);
    public void WriteInt64(long v) => BinaryPrimitives.WriteInt64BigEndian(Take(8), v);
    public void WriteFloat64(double v) => BinaryPrimitives.WriteDoubleBigEndian(Take(8), v);
    public void WriteUuid(Uuid v) => v.WriteTo(Take(16));

    public void WriteUnsignedVarInt(uint v)
    {
        while (v >= 0x80)
        {
            _span[_pos++] = (byte)(v | 0x80);
            v >>= 7;
        }
        _span[_pos++] = (byte)v;
    }

    public void WriteUnsignedVarLong(ulong v)
    {
        while (v >= 0x80)
        {
            _span[_pos++] = (byte)(v | 0x80);
            v >>= 7;
        }
        _span[_pos++] = (byte)v;
    }

    public void WriteVarInt(int v) => WriteUnsignedVarInt((uint)((v << 1) ^ (v >> 31)));
    public void WriteVarLong(long v) => WriteUnsignedVarLong((ulong)((v << 1) ^ (v >> 63)));

    /// <summary>Array count (-1 for null): int32, or unsigned varint N+1 when compact.</summary>
    public void WriteArrayLength(int n, bool compact)
    {
        if (compact) WriteUnsignedVarInt((uint)(n + 1));
        else WriteInt32(n);
    }

    public void WriteString(string v, bool compact) => WriteNullableString(v, compact);

    public void WriteNullableString(string? v, bool compact)
    {
        if (v is null)
        {
            if (compact) WriteUnsignedVarInt(0);
            else WriteInt16(-1);
            return;
        }
        int n = Encoding.UTF8.GetByteCount(v);
        if (compact) WriteUnsignedVarInt((uint)n + 1);
        else WriteInt16(checked((short)n));
        Encoding.UTF8.GetBytes(v, Take(n));
    }

    public void WriteBytes(ReadOnlyMemory<byte> v, bool compact) => WriteNullableBytes(v, compact);

    public void WriteNullableBytes(ReadOnlyMemory<byte>? v, bool compact)
    {
        if (v is null)
        {
            if (compact) WriteUnsignedVarInt(0);
            else WriteInt32(-1);
            return;
        }
        var s = v.Value.Span;
        if (compact) WriteUnsignedVarInt((uint)s.Length + 1);
        else WriteInt32(s.Length);
        s.CopyTo(Take(s.Length));
    }

    public void WriteRecords(RecordSet? v, bool compact)
    {
        if (v is null)
        {
            if (compact) WriteUnsignedVarInt(0);
            else WriteInt32(-1);
            return;
        }
        int n = v.Length;
        if (compact) WriteUnsignedVarInt((uint)n + 1);
        else WriteInt32(n);
        if (v is TransferableRecords ext)
            (_splices ??= []).Add(new RecordSplice(_pos, ext));
        else
            v.Memory.Span.CopyTo(Take(n));
    }

    public void WriteRaw(ReadOnlySpan<byte> bytes) => bytes.CopyTo(Take(bytes.Length));
}

/// <summary>
/// Accumulates the encoded size of a message: <see cref="Total"/> is what goes on the wire,
/// <see cref="External"/> the part of it that external record sets send themselves.
/// </summary>
public struct MessageSize
{
    public int Total;
    public int External;

    public void Add(int bytes) => Total += bytes;

    /// <summary>The in-memory part: what a <see cref="ProtocolWriter"/> needs room for.</summary>
    public readonly int InMemory => Total - External;

    public static int UnsignedVarIntSize(uint v) => v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;

    public static int UnsignedVarLongSize(ulong v)
    {
        int n = 1;
        while (v >= 0x80) { v >>= 7; n++; }
        return n;
    }

    public static int VarIntSize(int v) => UnsignedVarIntSize((uint)((v << 1) ^ (v >> 31)));
    public static int VarLongSize(long v) => UnsignedVarLongSize((ulong)((v << 1) ^ (v >> 63)));

    public void AddArrayLength(int n, bool compact) => Total += compact ? UnsignedVarIntSize((uint)(n + 1)) : 4;

    public void AddString(string? v, bool compact)
    {
        if (v is null) { Total += compact ? 1 : 2; return; }
        int n = Encoding.UTF8.GetByteCount(v);
        if (!compact && n > short.MaxValue) throw new InvalidOperationException($"string of {n} bytes does not fit an int16 length");
        Total += (compact ? UnsignedVarIntSize((uint)n + 1) : 2) + n;
    }

    public void AddBytes(ReadOnlyMemory<byte>? v, bool compact)
    {
        if (v is null) { Total += compact ? 1 : 4; return; }
        int n = v.Value.Length;
        Total += (compact ? UnsignedVarIntSize((uint)n + 1) : 4) + n;
    }

    public void AddRecords(RecordSet? v, bool compact)
    {
        if (v is null) { Total += compact ? 1 : 4; return; }
        int n = v.Length;
        Total += (compact ? UnsignedVarIntSize((uint)n + 1) : 4) + n;
        if (v.IsExternal) External += n;
    }
}
