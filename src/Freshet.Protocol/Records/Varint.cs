using System.Runtime.CompilerServices;

namespace Freshet.Protocol.Records;

/// <summary>Zig-zag varints over spans with an explicit position; false means malformed or truncated.</summary>
public static class Varint
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryReadVarInt(ReadOnlySpan<byte> s, ref int pos, out int value)
    {
        uint v = 0;
        for (int shift = 0; shift < 35; shift += 7)
        {
            if ((uint)pos >= (uint)s.Length) break;
            byte b = s[pos++];
            v |= (uint)(b & 0x7f) << shift;
            if ((b & 0x80) == 0)
            {
                value = (int)(v >> 1) ^ -(int)(v & 1);
                return true;
            }
        }
        value = 0;
        return false;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryReadVarLong(ReadOnlySpan<byte> s, ref int pos, out long value)
    {
        ulong v = 0;
        for (int shift = 0; shift < 70; shift += 7)
        {
            if ((uint)pos >= (uint)s.Length) break;
            byte b = s[pos++];
            v |= (ulong)(b & 0x7f) << shift;
            if ((b & 0x80) == 0)
            {
                value = (long)(v >> 1) ^ -(long)(v & 1);
                return true;
            }
        }
        value = 0;
        return false;
    }

    public static int WriteVarInt(Span<byte> s, int value)
    {
        uint v = (uint)((value << 1) ^ (value >> 31));
        int i = 0;
        while (v >= 0x80) { s[i++] = (byte)(v | 0x80); v >>= 7; }
        s[i++] = (byte)v;
        return i;
    }

    public static int WriteVarLong(Span<byte> s, long value)
    {
        ulong v = (ulong)((value << 1) ^ (value >> 63));
        int i = 0;
        while (v >= 0x80) { s[i++] = (byte)(v | 0x80); v >>= 7; }
        s[i++] = (byte)v;
        return i;
    }

    public static int SizeOfVarInt(int value) => Wire.MessageSize.VarIntSize(value);
    public static int SizeOfVarLong(long value) => Wire.MessageSize.VarLongSize(value);
}
