using System.Buffers.Binary;
using System.Numerics;

namespace Freshet.Protocol.Records;

/// <summary>
/// CRC-32C (Castagnoli), the checksum of record batch v2. <see cref="BitOperations.Crc32C(uint, ulong)"/>
/// uses the SSE4.2 / ARMv8 instruction where the CPU has it and a table otherwise.
/// </summary>
public static class Crc32C
{
    public static uint Compute(ReadOnlySpan<byte> data) => ~Append(~0u, data);

    /// <summary>Continues a running CRC (pre-inverted state, as <see cref="Compute"/> keeps it).</summary>
    public static uint Append(uint state, ReadOnlySpan<byte> data)
    {
        uint crc = state;
        while (data.Length >= 8)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }
        if (data.Length >= 4)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt32LittleEndian(data));
            data = data[4..];
        }
        foreach (byte b in data) crc = BitOperations.Crc32C(crc, b);
        return crc;
    }
}
