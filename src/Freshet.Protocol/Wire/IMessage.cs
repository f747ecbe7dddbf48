namespace Freshet.Protocol.Wire;

/// <summary>
/// A message defined by a schema (request, response, header, metadata record, coordinator record):
/// read, write and size for every version the schema lists. Implemented by generated code.
/// </summary>
public interface IMessage
{
    /// <summary>Lowest version the schema lists as valid.</summary>
    short LowestSupportedVersion { get; }

    /// <summary>Highest version the schema lists as valid.</summary>
    short HighestSupportedVersion { get; }

    /// <summary>Replaces this message's fields with the ones read at <paramref name="version"/>.</summary>
    void Read(ref ProtocolReader reader, short version);

    /// <summary>Writes the fields that exist at <paramref name="version"/>.</summary>
    void Write(ref ProtocolWriter writer, short version);

    /// <summary>Adds the encoded size at <paramref name="version"/> to <paramref name="size"/>.</summary>
    void AddSize(ref MessageSize size, short version);
}

/// <summary>A request or response body: a message with an API key.</summary>
public interface IApiMessage : IMessage
{
    short ApiKey { get; }
}

/// <summary>
/// A request body that names its response type (generated: <c>VoteRequest : IApiRequest&lt;VoteResponse&gt;</c>),
/// so a typed client returns the right response without the caller naming it or switching on the request.
/// </summary>
public interface IApiRequest<TResponse> : IApiMessage where TResponse : IApiMessage, new();

public static class MessageExtensions
{
    /// <summary>The encoded size at <paramref name="version"/>.</summary>
    public static int Size(this IMessage message, short version)
    {
        var size = new MessageSize();
        message.AddSize(ref size, version);
        return size.Total;
    }

    /// <summary>Encodes into a new array (for tests, tools and cold paths; hot paths write into pooled buffers).</summary>
    public static byte[] ToBytes(this IMessage message, short version)
    {
        var size = new MessageSize();
        message.AddSize(ref size, version);
        if (size.External != 0) throw new InvalidOperationException("message holds external records; encode it through the transport");
        var bytes = new byte[size.Total];
        var w = new ProtocolWriter(bytes);
        message.Write(ref w, version);
        if (w.Position != bytes.Length)
            throw new InvalidOperationException($"{message.GetType().Name} v{version}: wrote {w.Position} bytes, size said {bytes.Length}");
        return bytes;
    }

    /// <summary>Decodes a whole buffer; trailing bytes are an error.</summary>
    public static T Parse<T>(ReadOnlyMemory<byte> bytes, short version) where T : IMessage, new()
    {
        var m = new T();
        var r = new ProtocolReader(bytes);
        m.Read(ref r, version);
        if (!r.End) throw new ProtocolException($"{typeof(T).Name} v{version}: {r.Remaining} bytes left after the message");
        return m;
    }
}
