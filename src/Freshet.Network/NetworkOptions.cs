namespace Freshet.Network;

/// <summary>A listener to bind: its name (PLAINTEXT, ...), host ("" or 0.0.0.0 for all) and port (0 for any free one).</summary>
public sealed record ListenerEndpoint(string Name, string Host, int Port);

/// <summary>Socket server settings (Kafka's names).</summary>
public sealed record NetworkOptions
{
    public required IReadOnlyList<ListenerEndpoint> Listeners { get; init; }

    /// <summary>socket.request.max.bytes: a larger frame closes its connection.</summary>
    public int SocketRequestMaxBytes { get; init; } = 104_857_600;

    /// <summary>connections.max.idle.ms</summary>
    public long ConnectionsMaxIdleMs { get; init; } = 600_000;

    /// <summary>max.connections: accepted connections beyond this are closed at once.</summary>
    public int MaxConnections { get; init; } = int.MaxValue;

    /// <summary>socket.send.buffer.bytes (-1: the OS default).</summary>
    public int SocketSendBufferBytes { get; init; } = 102_400;

    /// <summary>socket.receive.buffer.bytes (-1: the OS default).</summary>
    public int SocketReceiveBufferBytes { get; init; } = 102_400;

    /// <summary>Requests a connection may have in progress before the broker stops reading from it (pipelining bound).</summary>
    public int MaxInFlightRequestsPerConnection { get; init; } = 64;
}
