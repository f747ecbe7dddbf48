namespace Freshet.Protocol.Records;

/// <summary>The codec in bits 0-2 of a batch's attributes (and the compression.type config).</summary>
public enum CompressionType : byte
{
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

/// <summary>Timestamp semantics in bit 3 of a batch's attributes (message.timestamp.type).</summary>
public enum TimestampType : sbyte
{
    NoTimestamp = -1,
    CreateTime = 0,
    LogAppendTime = 1,
}

public static class CompressionTypes
{
    /// <summary>The config value's name (compression.type): none, gzip, snappy, lz4, zstd.</summary>
    public static string Name(this CompressionType t) => t switch
    {
        CompressionType.None => "none",
        CompressionType.Gzip => "gzip",
        CompressionType.Snappy => "snappy",
        CompressionType.Lz4 => "lz4",
        CompressionType.Zstd => "zstd",
        _ => $"unknown({(int)t})",
    };

    public static bool TryParse(string s, out CompressionType t)
    {
        switch (s.Trim().ToLowerInvariant())
        {
            case "none" or "uncompressed": t = CompressionType.None; return true;
            case "gzip": t = CompressionType.Gzip; return true;
            case "snappy": t = CompressionType.Snappy; return true;
            case "lz4": t = CompressionType.Lz4; return true;
            case "zstd": t = CompressionType.Zstd; return true;
            default: t = CompressionType.None; return false;
        }
    }
}
