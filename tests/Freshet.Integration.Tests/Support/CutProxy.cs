using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Freshet.Integration.Tests.Support;

/// <summary>
/// A TCP proxy in front of one listener of a node that can cut the network: while <see cref="CutAll"/>
/// every connection through it is reset and new ones are refused; connections whose Kafka client id
/// starts with a blocked prefix (a node's own clients are named <c>freshet-{id}-...</c>) are treated
/// the same way, so a node can be cut off from the others in both directions with one proxy per
/// listener. Resets rather than silence: the peers see the failure at once, as with a refused route.
/// </summary>
public sealed class CutProxy : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly IPEndPoint _target;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<Connection, byte> _open = new();
    private readonly HashSet<string> _blockedPrefixes = [];
    private readonly Task _accept;
    private volatile bool _cutAll;

    public CutProxy(IPEndPoint target, int port = 0)
    {
        _target = target;
        _listener = new TcpListener(IPAddress.Loopback, port);
        _listener.Start();
        _accept = Task.Run(AcceptLoopAsync);
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>Connections reset or refused because of a cut.</summary>
    public int Refused => Volatile.Read(ref _refused);

    private int _refused;

    /// <summary>Cuts (or heals) every connection through this proxy.</summary>
    public bool CutAll
    {
        get => _cutAll;
        set
        {
            _cutAll = value;
            if (value) ResetBlocked();
        }
    }

    /// <summary>Cuts (or heals) connections whose client id starts with <paramref name="prefix"/>.</summary>
    public void Block(string prefix, bool blocked = true)
    {
        lock (_blockedPrefixes)
        {
            if (blocked) _blockedPrefixes.Add(prefix);
            else _blockedPrefixes.Remove(prefix);
        }
        if (blocked) ResetBlocked();
    }

    private bool IsBlocked(string? clientId)
    {
        if (_cutAll) return true;
        if (clientId is null) return false;
        lock (_blockedPrefixes) return _blockedPrefixes.Any(p => clientId.StartsWith(p, StringComparison.Ordinal));
    }

    private void ResetBlocked()
    {
        foreach (var c in _open.Keys)
            if (IsBlocked(c.ClientId)) c.Reset(this);
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try { client = await _listener.AcceptTcpClientAsync(_stop.Token); }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException) { return; }
            if (_cutAll)
            {
                Interlocked.Increment(ref _refused);
                client.Client.LingerState = new LingerOption(true, 0);
                client.Dispose();
                continue;
            }
            var server = new TcpClient { NoDelay = true };
            try { await server.ConnectAsync(_target); }
            catch (SocketException) { client.Dispose(); server.Dispose(); continue; }
            client.NoDelay = true;
            var c = new Connection(client, server);
            _open[c] = 0;
            _ = Task.Run(() => PumpRequestsAsync(c));
            _ = Task.Run(() => PumpAsync(c.Server, c.Client, c));
        }
    }

    /// <summary>Client to server, frame by frame: the first request's header names the client.</summary>
    private async Task PumpRequestsAsync(Connection c)
    {
        try
        {
            var i = c.Client.GetStream();
            var o = c.Server.GetStream();
            var size = new byte[4];
            while (true)
            {
                await i.ReadExactlyAsync(size, c.Cut.Token);
                var frame = new byte[BinaryPrimitives.ReadInt32BigEndian(size)];
                await i.ReadExactlyAsync(frame, c.Cut.Token);
                if (c.ClientId is null && frame.Length >= 10)
                {
                    // Request header v1+: api key, api version, correlation id, client id (int16 length + UTF-8).
                    short len = BinaryPrimitives.ReadInt16BigEndian(frame.AsSpan(8));
                    c.ClientId = len >= 0 && 10 + len <= frame.Length ? Encoding.UTF8.GetString(frame, 10, len) : "";
                }
                if (IsBlocked(c.ClientId))
                {
                    c.Reset(this);
                    return;
                }
                await o.WriteAsync(size, c.Cut.Token);
                await o.WriteAsync(frame, c.Cut.Token);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or EndOfStreamException or SocketException)
        {
            c.Close(this);
        }
    }

    private async Task PumpAsync(TcpClient from, TcpClient to, Connection c)
    {
        try
        {
            var buffer = new byte[64 * 1024];
            var i = from.GetStream();
            var o = to.GetStream();
            while (true)
            {
                int n = await i.ReadAsync(buffer, c.Cut.Token);
                if (n == 0) break;
                await o.WriteAsync(buffer.AsMemory(0, n), c.Cut.Token);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or SocketException)
        {
        }
        c.Close(this);
    }

    private sealed class Connection(TcpClient client, TcpClient server)
    {
        private int _closed;

        public TcpClient Client { get; } = client;
        public TcpClient Server { get; } = server;
        public CancellationTokenSource Cut { get; } = new();
        public volatile string? ClientId;

        /// <summary>A network failure: both ends see a reset.</summary>
        public void Reset(CutProxy proxy)
        {
            if (Interlocked.Exchange(ref _closed, 1) != 0) return;
            Interlocked.Increment(ref proxy._refused);
            try
            {
                Client.Client.LingerState = new LingerOption(true, 0);
                Server.Client.LingerState = new LingerOption(true, 0);
            }
            catch (ObjectDisposedException) { }
            Dispose(proxy);
        }

        public void Close(CutProxy proxy)
        {
            if (Interlocked.Exchange(ref _closed, 1) != 0) return;
            Dispose(proxy);
        }

        private void Dispose(CutProxy proxy)
        {
            try { Cut.Cancel(); } catch (ObjectDisposedException) { }
            Client.Dispose();
            Server.Dispose();
            proxy._open.TryRemove(this, out _);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        await _accept;
        foreach (var c in _open.Keys) c.Close(this);
    }
}
