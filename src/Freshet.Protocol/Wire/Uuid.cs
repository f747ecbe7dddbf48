using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Freshet.Protocol.Wire;

/// <summary>
/// Kafka's 128-bit UUID (topic ids, directory ids): two big-endian int64 halves on the wire,
/// shown as URL-safe base64 without padding, as Kafka's tools show it.
/// </summary>
public readonly record struct Uuid(long MostSignificantBits, long LeastSignificantBits)
{
    public static readonly Uuid Zero = new(0, 0);

    /// <summary>Kafka reserves the all-zero id and the id with only bit 1 set (METADATA_TOPIC_ID placeholder).</summary>
    public static readonly Uuid OneUuid = new(0, 1);

    public bool IsZero => MostSignificantBits == 0 && LeastSignificantBits == 0;

    /// <summary>A random version-4 UUID that is never one of the reserved values and never starts with '-' in base64.</summary>
    public static Uuid Random()
    {
        Span<byte> b = stackalloc byte[16];
        while (true)
        {
            RandomNumberGenerator.Fill(b);
            b[6] = (byte)((b[6] & 0x0f) | 0x40);
            b[8] = (byte)((b[8] & 0x3f) | 0x80);
            var u = new Uuid(BinaryPrimitives.ReadInt64BigEndian(b), BinaryPrimitives.ReadInt64BigEndian(b[8..]));
            if (!u.IsZero && u != OneUuid && !u.ToString().StartsWith('-')) return u;
        }
    }

    public void WriteTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteInt64BigEndian(destination, MostSignificantBits);
        BinaryPrimitives.WriteInt64BigEndian(destination[8..], LeastSignificantBits);
    }

    public override string ToString()
    {
        Span<byte> b = stackalloc byte[16];
        WriteTo(b);
        return Convert.ToBase64String(b).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }

    public static Uuid Parse(string s)
    {
        if (!TryParse(s, out var u)) throw new FormatException($"not a Kafka UUID: '{s}'");
        return u;
    }

    public static bool TryParse(string? s, out Uuid value)
    {
        value = Zero;
        if (s is null || s.Length != 22) return false;
        var b64 = s.Replace('-', '+').Replace('_', '/') + "==";
        Span<byte> b = stackalloc byte[18];
        if (!Convert.TryFromBase64String(b64, b, out int n) || n != 16) return false;
        value = new Uuid(BinaryPrimitives.ReadInt64BigEndian(b), BinaryPrimitives.ReadInt64BigEndian(b[8..]));
        return true;
    }
}
