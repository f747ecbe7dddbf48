using System.Net;
using System.Net.Sockets;

namespace Freshet.Network;

/// <summary>A listener to bind: its name (PLAINTEXT, ...), host ("" or 0.0.0.0 for all) and port (0 for any free one).</summary>
public sealed record ListenerEndpoint(string Name, string Host, int Port)
{
    /// <summary>listener.name.&lt;listener&gt;.max.connections: this listener stops accepting at this many connections.</summary>
    public int MaxConnections { get; init; } = int.MaxValue;
}

/// <summary>Socket server settings (Kafka's names).</summary>
public sealed record NetworkOptions
{
    public required IReadOnlyList<ListenerEndpoint> Listeners { get; init; }

    /// <summary>socket.request.max.bytes: a larger frame closes its connection.</summary>
    public int SocketRequestMaxBytes { get; init; } = 104_857_600;

    /// <summary>connections.max.idle.ms: a connection with no request or response for this long is closed; negative: never.</summary>
    public long ConnectionsMaxIdleMs { get; init; } = 600_000;

    /// <summary>
    /// max.connections: at this many connections the listeners stop accepting (new connections wait
    /// in the listen backlog) until one closes, as Kafka's do. The inter-broker listener is exempt
    /// (see <see cref="InterBrokerListenerName"/>); controller listeners are counted on their own.
    /// </summary>
    public int MaxConnections { get; init; } = int.MaxValue;

    /// <summary>max.connections.per.ip: a connection from an address that already has this many is closed at once.</summary>
    public int MaxConnectionsPerIp { get; init; } = int.MaxValue;

    /// <summary>max.connections.per.ip.overrides, resolved to addresses: their own per-address limits.</summary>
    public IReadOnlyDictionary<IPAddress, int> MaxConnectionsPerIpOverrides { get; init; } = new Dictionary<IPAddress, int>();

    /// <summary>
    /// inter.broker.listener.name: when other (non-controller) listeners exist, this one accepts past
    /// max.connections, and the least recently used connections of the others are closed to make room.
    /// </summary>
    public string? InterBrokerListenerName { get; init; }

    /// <summary>controller.listener.names: counted against max.connections apart from the other listeners (Kafka's controller has a socket server of its own).</summary>
    public IReadOnlyCollection<string> ControllerListenerNames { get; init; } = [];

    /// <summary>socket.send.buffer.bytes (-1: the OS default).</summary>
    public int SocketSendBufferBytes { get; init; } = 102_400;

    /// <summary>socket.receive.buffer.bytes (-1: the OS default).</summary>
    public int SocketReceiveBufferBytes { get; init; } = 102_400;

    /// <summary>Requests a connection may have in progress before the broker stops reading from it (pipelining bound).</summary>
    public int MaxInFlightRequestsPerConnection { get; init; } = 64;

    /// <summary>
    /// Resolves max.connections.per.ip.overrides (host or address, as Kafka allows) to the addresses
    /// connections arrive from. A name stands for every address it resolves to.
    /// </summary>
    public static IReadOnlyDictionary<IPAddress, int> ResolvePerIpOverrides(IReadOnlyDictionary<string, int> overrides)
    {
        var result = new Dictionary<IPAddress, int>();
        foreach (var (host, max) in overrides)
        {
            IPAddress[] addresses;
            if (IPAddress.TryParse(host.Trim('[', ']'), out var ip)) addresses = [ip];
            else
            {
                try
                {
                    addresses = Dns.GetHostAddresses(host);
                }
                catch (SocketException e)
                {
                    throw new ArgumentException($"max.connections.per.ip.overrides names host {host}, which does not resolve: {e.Message}", e);
                }
            }
            foreach (var a in addresses) result[ConnectionQuotas.Normalize(a)] = max;
        }
        return result;
    }
}
