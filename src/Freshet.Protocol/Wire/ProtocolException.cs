using System.Diagnostics.CodeAnalysis;

namespace Freshet.Protocol.Wire;

/// <summary>
/// Input that does not follow the wire format: a length past the end of the frame, a negative
/// length where none is allowed, an unterminated varint. It means the peer is broken (or hostile);
/// the connection layer answers it by closing the connection, as Kafka does.
/// </summary>
public sealed class ProtocolException(string message) : Exception(message)
{
    [DoesNotReturn]
    public static void Throw(string message) => throw new ProtocolException(message);

    [DoesNotReturn]
    public static void ThrowTruncated(int needed, int remaining) =>
        throw new ProtocolException($"frame truncated: needed {needed} more bytes, {remaining} left");

    /// <summary>A null where the schema allows none.</summary>
    [DoesNotReturn]
    public static T ThrowNull<T>(string what) => throw new ProtocolException($"null {what} where the schema allows none");
}
