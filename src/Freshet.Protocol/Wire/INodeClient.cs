namespace Freshet.Protocol.Wire;

/// <summary>
/// Requests from this node to another node of the cluster: replica fetches, controller calls
/// (AlterPartition, broker registration and heartbeats, forwarded admin requests) and Raft's
/// Vote, BeginQuorumEpoch, EndQuorumEpoch, Fetch and FetchSnapshot. It lives below every layer
/// that sends such requests (Raft in Metadata, replication in Broker); the network layer
/// implements it over TCP. The response type comes from the request's type, the API key from
/// the request; the caller chooses the version.
/// </summary>
public interface INodeClient
{
    /// <summary>
    /// Sends a request to node <paramref name="nodeId"/> at <paramref name="version"/> and returns its response;
    /// throws <see cref="NodeUnreachableException"/> when the connection fails, drops or the request times out.
    /// </summary>
    Task<TResponse> SendAsync<TResponse>(int nodeId, IApiRequest<TResponse> request, short version, CancellationToken ct)
        where TResponse : IApiMessage, new();

    /// <summary>
    /// As <see cref="SendAsync{TResponse}"/>, but the response (its record sets in particular) may point
    /// into a pooled buffer that goes back to the pool when the lease is disposed: nothing taken from the
    /// response may be used after that. For large, short-lived responses (replica fetches).
    /// </summary>
    async Task<ResponseLease<TResponse>> SendLeasedAsync<TResponse>(int nodeId, IApiRequest<TResponse> request, short version, CancellationToken ct)
        where TResponse : IApiMessage, new() =>
        new(await SendAsync(nodeId, request, version, ct).ConfigureAwait(false), null);
}

/// <summary>A response whose bytes live in a rented buffer until <see cref="Dispose"/>.</summary>
public sealed class ResponseLease<TResponse>(TResponse response, byte[]? rented) : IDisposable
{
    private byte[]? _rented = rented;

    public TResponse Response { get; } = response;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _rented, null) is { } buffer) System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
    }
}

/// <summary>The node could not be reached, the connection dropped, or the request timed out.</summary>
public sealed class NodeUnreachableException : IOException
{
    public NodeUnreachableException(string message) : base(message) { }

    public NodeUnreachableException(string message, Exception inner) : base(message, inner) { }

    public NodeUnreachableException(int nodeId, string reason, Exception? inner = null)
        : base($"node {nodeId} unreachable: {reason}", inner) => NodeId = nodeId;

    /// <summary>The node that could not be reached, -1 when not given.</summary>
    public int NodeId { get; } = -1;
}
