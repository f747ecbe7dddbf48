using Freshet.Protocol.Wire;

namespace Freshet.Broker.Replication;

/// <summary>
/// Requests from this broker to another one (follower fetches, OffsetForLeaderEpoch, ListOffsets).
/// Implemented over TCP by the network layer; tests route to another broker's handlers in process.
/// </summary>
public interface INodeClient
{
    /// Sends a request to broker nodeId (its inter-broker listener, from the metadata image) at the given version and returns the response; throws NodeUnreachableException (an IOException) when the connection fails, drops or the request times out.
    Task<TResponse> SendAsync<TResponse>(int nodeId, IApiMessage request, short version, CancellationToken ct) where TResponse : IApiMessage, new();
}

/// <summary>A request to another broker got no response: no connection, a dropped connection, or a timeout.</summary>
public sealed class NodeUnreachableException : IOException
{
    public NodeUnreachableException() { }

    public NodeUnreachableException(string message) : base(message) { }

    public NodeUnreachableException(string message, Exception inner) : base(message, inner) { }

    public NodeUnreachableException(int nodeId, string reason, Exception? inner = null)
        : base($"node {nodeId} unreachable: {reason}", inner) => NodeId = nodeId;

    /// <summary>The broker that could not be reached, -1 when not given.</summary>
    public int NodeId { get; } = -1;
}
