using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Sockets;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;
using Microsoft.Extensions.Logging;

namespace Freshet.Network;

/// <summary>Where a node listens, or null when it is not known (yet).</summary>
public delegate (string Host, int Port)? NodeResolver(int nodeId);

/// <summary>Settings of the client a node uses to talk to the others (Kafka's inter-broker client names).</summary>
public sealed record NodeClientOptions
{
    /// <summary>client.id in request headers.</summary>
    public required string ClientId { get; init; }

    /// <summary>request.timeout.ms: a request without a response after this long fails and its connection is closed.</summary>
    public int RequestTimeoutMs { get; init; } = 30_000;

    /// <summary>socket.connection.setup.timeout.ms</summary>
    public int ConnectTimeoutMs { get; init; } = 10_000;

    /// <summary>reconnect.backoff.ms: the wait before connecting again to a node whose connection failed.</summary>
    public int ReconnectBackoffMs { get; init; } = 50;

    /// <summary>Largest response accepted (a larger size prefix means a broken stream).</summary>
    public int MaxResponseBytes { get; init; } = 256 * 1024 * 1024;
}

/// <summary>
/// The TCP side of <see cref="INodeClient"/>: one connection per node, requests pipelined on it and
/// matched to responses by correlation id. A failed connect, a dropped connection or a request
/// timeout fails every request in flight on that connection (as Kafka's NetworkClient does), and the
/// next request connects again after <see cref="NodeClientOptions.ReconnectBackoffMs"/>.
/// </summary>
public sealed partial class NodeClient(NodeResolver resolve, NodeClientOptions options, ILogger<NodeClient> logger) : INodeClient, IAsyncDisposable
{
    private readonly ConcurrentDictionary<int, NodeConnection> _connections = new();
    private readonly ConcurrentDictionary<int, long> _lastFailure = new();
    private readonly Lock _connectLock = new();
    private readonly CancellationTokenSource _closed = new();

    public NodeClientOptions Options { get; } = options;

    public async Task<TResponse> SendAsync<TResponse>(int nodeId, IApiRequest<TResponse> request, short version, CancellationToken ct) where TResponse : IApiMessage, new()
    {
        var connection = await ConnectionAsync(nodeId, ct).ConfigureAwait(false);
        var (body, _) = await connection.SendAsync(request, version, pooled: false, ct).ConfigureAwait(false);
        return Parse<TResponse>(nodeId, body, version);
    }

    /// <summary>The response is read into a buffer rented from the shared pool, returned when the lease is disposed.</summary>
    public async Task<ResponseLease<TResponse>> SendLeasedAsync<TResponse>(int nodeId, IApiRequest<TResponse> request, short version, CancellationToken ct)
        where TResponse : IApiMessage, new()
    {
        var connection = await ConnectionAsync(nodeId, ct).ConfigureAwait(false);
        var (body, rented) = await connection.SendAsync(request, version, pooled: true, ct).ConfigureAwait(false);
        try
        {
            return new ResponseLease<TResponse>(Parse<TResponse>(nodeId, body, version), rented);
        }
        catch
        {
            if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
            throw;
        }
    }

    private static TResponse Parse<TResponse>(int nodeId, ReadOnlyMemory<byte> body, short version) where TResponse : IApiMessage, new()
    {
        try
        {
            return MessageExtensions.Parse<TResponse>(body, version);
        }
        catch (ProtocolException e)
        {
            throw new NodeUnreachableException($"node {nodeId} sent a response to {typeof(TResponse).Name} v{version} that does not parse: {e.Message}", e);
        }
    }

    private async Task<NodeConnection> ConnectionAsync(int nodeId, CancellationToken ct)
    {
        ObjectDisposedException.ThrowIf(_closed.IsCancellationRequested, this);
        if (_connections.TryGetValue(nodeId, out var existing) && existing.IsOpen) return await ConnectedAsync(existing, ct).ConfigureAwait(false);
        if (_lastFailure.TryGetValue(nodeId, out long failedAt))
        {
            long wait = failedAt + Options.ReconnectBackoffMs - Environment.TickCount64;
            if (wait > 0) await Task.Delay((int)wait, ct).ConfigureAwait(false);
        }
        var endpoint = resolve(nodeId) ?? throw new NodeUnreachableException($"node {nodeId} has no known address");
        NodeConnection connection;
        lock (_connectLock)
        {
            if (!_connections.TryGetValue(nodeId, out connection!) || !connection.IsOpen)
            {
                // Published while it connects: callers meanwhile wait for the same connect rather than open another.
                connection = new NodeConnection(nodeId, endpoint.Host, endpoint.Port, Options, this);
                connection.StartConnecting(_closed.Token);
                _connections[nodeId] = connection;
            }
        }
        return await ConnectedAsync(connection, ct).ConfigureAwait(false);
    }

    private async Task<NodeConnection> ConnectedAsync(NodeConnection connection, CancellationToken ct)
    {
        await connection.Connected.WaitAsync(ct).ConfigureAwait(false);
        _lastFailure.TryRemove(connection.NodeId, out _);
        return connection;
    }

    /// <summary>Called by a connection that broke: forget it and back off before the next connect.</summary>
    internal void Failed(NodeConnection connection, string reason)
    {
        _lastFailure[connection.NodeId] = Environment.TickCount64;
        _connections.TryRemove(new KeyValuePair<int, NodeConnection>(connection.NodeId, connection));
        if (!_closed.IsCancellationRequested) LogDisconnected(logger, connection.NodeId, connection.Address, reason);
    }

    /// <summary>Closes the connection to one node (for example when its address changed).</summary>
    public void Disconnect(int nodeId)
    {
        if (_connections.TryRemove(nodeId, out var c)) c.Close(new NodeUnreachableException($"connection to node {nodeId} closed"));
    }

    public ValueTask DisposeAsync()
    {
        _closed.Cancel();
        foreach (var c in _connections.Values) c.Close(new NodeUnreachableException("node client closed"));
        _connections.Clear();
        _closed.Dispose();
        return ValueTask.CompletedTask;
    }

    [LoggerMessage(EventId = 4201, Level = LogLevel.Information, Message = "Connection to node {NodeId} at {Address} closed: {Reason}")]
    private static partial void LogDisconnected(ILogger logger, int nodeId, string address, string reason);
}

/// <summary>One pipelined connection to a node.</summary>
internal sealed class NodeConnection(int nodeId, string host, int port, NodeClientOptions options, NodeClient owner)
{
    /// <param name="Pooled">Read the response into a buffer rented from the shared pool (the caller returns it).</param>
    private sealed record Pending(short ApiKey, short Version, bool Pooled, TaskCompletionSource<(ReadOnlyMemory<byte> Body, byte[]? Rented)> Done);

    private readonly Socket _socket = new(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
    private readonly ConcurrentDictionary<int, Pending> _pending = new();
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private NetworkStream? _stream;
    private int _nextCorrelation;
    private int _closed;

    public int NodeId { get; } = nodeId;
    public string Address { get; } = $"{host}:{port}";
    public bool IsOpen => Volatile.Read(ref _closed) == 0;

    /// <summary>Completes once the connection is open; fails with <see cref="NodeUnreachableException"/> when it cannot be opened.</summary>
    public Task Connected { get; private set; } = Task.CompletedTask;

    /// <summary>Starts connecting (before the connection is shared, so that every caller finds <see cref="Connected"/> set).</summary>
    public void StartConnecting(CancellationToken closed) => Connected = ConnectAsync(closed);

    private async Task ConnectAsync(CancellationToken closed)
    {
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(closed);
            timeout.CancelAfter(options.ConnectTimeoutMs);
            await _socket.ConnectAsync(host, port, timeout.Token).ConfigureAwait(false);
            // Connecting to a loopback port nobody listens on, inside the ephemeral range, can connect the
            // socket to itself (TCP simultaneous open) and hold that port: refuse such a connection.
            if (Equals(_socket.LocalEndPoint, _socket.RemoteEndPoint))
                throw new SocketException((int)SocketError.ConnectionRefused);
            _stream = new NetworkStream(_socket, ownsSocket: false);
            _ = Task.Run(ReadLoopAsync, CancellationToken.None);
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            var failure = new NodeUnreachableException($"cannot connect to node {NodeId} at {Address}: {e.Message}", e);
            Close(failure); // releases the socket (and its port) and backs off
            throw failure;
        }
    }

    /// <summary>Sends a request and returns the response body; with <paramref name="pooled"/> it lies in <c>Rented</c>, which the caller returns to the shared pool.</summary>
    public async Task<(ReadOnlyMemory<byte> Body, byte[]? Rented)> SendAsync(IApiMessage request, short version, bool pooled, CancellationToken ct)
    {
        int correlationId = Interlocked.Increment(ref _nextCorrelation);
        var header = new RequestHeader { RequestApiKey = request.ApiKey, RequestApiVersion = version, CorrelationId = correlationId, ClientId = options.ClientId };
        short headerVersion = ApiMessages.RequestHeaderVersion(request.ApiKey, version);
        var size = new MessageSize();
        header.AddSize(ref size, headerVersion);
        request.AddSize(ref size, version);
        if (size.External != 0) throw new InvalidOperationException("requests to other nodes carry their records in memory");
        var frame = new byte[4 + size.Total];
        BinaryPrimitives.WriteInt32BigEndian(frame, size.Total);
        var writer = new ProtocolWriter(frame.AsSpan(4));
        header.Write(ref writer, headerVersion);
        request.Write(ref writer, version);

        var pending = new Pending(request.ApiKey, version, pooled, new TaskCompletionSource<(ReadOnlyMemory<byte>, byte[]?)>(TaskCreationOptions.RunContinuationsAsynchronously));
        _pending[correlationId] = pending;
        if (!IsOpen) Close(new NodeUnreachableException($"connection to node {NodeId} at {Address} is closed"));
        try
        {
            await _writeLock.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                await _stream!.WriteAsync(frame, ct).ConfigureAwait(false);
            }
            finally
            {
                _writeLock.Release();
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            Close(new NodeUnreachableException($"sending to node {NodeId} at {Address} failed: {e.Message}", e));
        }
        catch (OperationCanceledException)
        {
            _pending.TryRemove(correlationId, out _);
            throw;
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(options.RequestTimeoutMs);
        try
        {
            return await pending.Done.Task.WaitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            // Kafka closes a connection whose request timed out: what is in flight on it is unknowable.
            Close(new NodeUnreachableException($"request {request.GetType().Name} to node {NodeId} at {Address} timed out after {options.RequestTimeoutMs} ms"));
            throw new NodeUnreachableException($"request {request.GetType().Name} to node {NodeId} at {Address} timed out after {options.RequestTimeoutMs} ms");
        }
        finally
        {
            _pending.TryRemove(correlationId, out _);
        }
    }

    private async Task ReadLoopAsync()
    {
        var sizeBytes = new byte[4];
        try
        {
            while (IsOpen)
            {
                await _stream!.ReadExactlyAsync(sizeBytes).ConfigureAwait(false);
                int size = BinaryPrimitives.ReadInt32BigEndian(sizeBytes);
                if (size < 4 || size > options.MaxResponseBytes)
                    throw new IOException($"response size {size} out of range");
                // The correlation id comes first: it says whether the caller wants the frame in a pooled buffer.
                await _stream.ReadExactlyAsync(sizeBytes).ConfigureAwait(false);
                int correlationId = BinaryPrimitives.ReadInt32BigEndian(sizeBytes);
                _pending.TryRemove(correlationId, out var pending); // null: timed out or cancelled, the frame is read and dropped
                byte[] frame = pending?.Pooled == true ? ArrayPool<byte>.Shared.Rent(size) : new byte[size];
                bool handed = false;
                try
                {
                    sizeBytes.CopyTo(frame, 0);
                    await _stream.ReadExactlyAsync(frame.AsMemory(4, size - 4)).ConfigureAwait(false);
                    if (pending is null) continue;
                    var reader = new ProtocolReader(frame.AsMemory(0, size));
                    var header = new ResponseHeader();
                    header.Read(ref reader, ApiMessages.ResponseHeaderVersion(pending.ApiKey, pending.Version));
                    handed = pending.Done.TrySetResult((frame.AsMemory(reader.Position, size - reader.Position), pending.Pooled ? frame : null));
                }
                finally
                {
                    if (!handed && pending?.Pooled == true) ArrayPool<byte>.Shared.Return(frame);
                }
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or EndOfStreamException or ProtocolException)
        {
            Close(new NodeUnreachableException($"connection to node {NodeId} at {Address} dropped: {e.Message}", e));
        }
#pragma warning disable CA1031 // whatever stops the read loop closes the connection, so callers waiting on it are failed, not left to time out
        catch (Exception e)
#pragma warning restore CA1031
        {
            Close(new NodeUnreachableException($"reading from node {NodeId} at {Address} failed: {e.Message}", e));
        }
    }

    public void Close(NodeUnreachableException reason)
    {
        if (Interlocked.Exchange(ref _closed, 1) == 0)
        {
            owner.Failed(this, reason.Message);
            try { _socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
            _socket.Dispose();
        }
        foreach (var id in _pending.Keys)
        {
            if (_pending.TryRemove(id, out var p)) p.Done.TrySetException(reason);
        }
    }
}
