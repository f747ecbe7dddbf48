using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Freshet.Broker;
using Microsoft.Extensions.Logging;

namespace Freshet.Network;

/// <summary>
/// Accepts client connections on every listener (Kafka's SocketServer): one accept loop per
/// listener, one <see cref="KafkaConnection"/> per socket, max.connections enforced at accept,
/// and idle connections (connections.max.idle.ms) closed by a sweep.
/// </summary>
public sealed partial class SocketServer : IAsyncDisposable
{
    private readonly NetworkOptions _options;
    private readonly RequestDispatcher _dispatcher;
    private readonly IReadOnlyDictionary<string, RequestDispatcher> _listenerDispatchers;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, (KafkaConnection Connection, Task Run)> _connections = new();
    private readonly List<(ListenerEndpoint Listener, Socket Socket, IPEndPoint Bound)> _bound = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly CancellationTokenSource _stop = new();
    private Task? _sweeper;
    private long _nextId;

    /// <param name="listenerDispatchers">
    /// Listeners that serve a different set of APIs (the controller listener serves the quorum's
    /// and brokers' controller APIs, not the client ones); every other listener uses <paramref name="dispatcher"/>.
    /// </param>
    public SocketServer(NetworkOptions options, RequestDispatcher dispatcher, ILoggerFactory loggers,
        IReadOnlyDictionary<string, RequestDispatcher>? listenerDispatchers = null)
    {
        _options = options;
        _dispatcher = dispatcher;
        _listenerDispatchers = listenerDispatchers ?? new Dictionary<string, RequestDispatcher>();
        _loggers = loggers;
        _logger = loggers.CreateLogger<SocketServer>();
    }

    /// <summary>The address each listener is bound to (with the real port when 0 was asked for).</summary>
    public IReadOnlyList<(string Name, IPEndPoint EndPoint)> BoundEndpoints => _bound.Select(b => (b.Listener.Name, b.Bound)).ToList();

    public int ConnectionCount => _connections.Count;

    /// <summary>Binds every listener, failing fast if a port is taken; connections wait in the backlog until <see cref="StartAccepting"/>.</summary>
    public void Bind()
    {
        foreach (var l in _options.Listeners)
        {
            var address = Resolve(l.Host);
            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            if (address.Equals(IPAddress.IPv6Any)) socket.DualMode = true;
            AllowRebindDuringTimeWait(socket);
            try
            {
                socket.Bind(new IPEndPoint(address, l.Port));
                socket.Listen(1024);
            }
            catch (SocketException e)
            {
                socket.Dispose();
                throw new IOException($"cannot listen on {l.Name}://{l.Host}:{l.Port}: {e.Message}", e);
            }
            var bound = (IPEndPoint)socket.LocalEndPoint!;
            _bound.Add((l, socket, bound));
            LogListening(_logger, l.Name, bound.ToString());
        }
    }

    /// <summary>
    /// Sets plain SO_REUSEADDR, so a restarted broker can bind while its old connections sit in
    /// TIME_WAIT. Not SocketOptionName.ReuseAddress: on Linux and macOS .NET maps that to
    /// SO_REUSEPORT as well, which lets a second process bind a port already in use and silently
    /// take half of its connections. Windows needs nothing (TIME_WAIT does not block a bind).
    /// </summary>
    private static void AllowRebindDuringTimeWait(Socket socket)
    {
        const int enable = 1;
        if (OperatingSystem.IsLinux())
            socket.SetRawSocketOption(1 /* SOL_SOCKET */, 2 /* SO_REUSEADDR */, BitConverter.GetBytes(enable));
        else if (OperatingSystem.IsMacOS() || OperatingSystem.IsFreeBSD())
            socket.SetRawSocketOption(0xffff /* SOL_SOCKET */, 4 /* SO_REUSEADDR */, BitConverter.GetBytes(enable));
    }

    /// <summary>Starts serving connections (once the broker is ready to answer them).</summary>
    public void StartAccepting()
    {
        foreach (var (l, socket, _) in _bound) _acceptLoops.Add(Task.Run(() => AcceptLoopAsync(l, socket)));
        _sweeper = Task.Run(SweepIdleAsync);
    }

    private static IPAddress Resolve(string host)
    {
        if (string.IsNullOrEmpty(host) || host == "0.0.0.0") return IPAddress.Any;
        if (host == "::" || host == "[::]") return IPAddress.IPv6Any;
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase)) return IPAddress.Loopback;
        if (IPAddress.TryParse(host.Trim('[', ']'), out var ip)) return ip;
        return Dns.GetHostAddresses(host).OrderBy(a => a.AddressFamily == AddressFamily.InterNetwork ? 0 : 1).First();
    }

    private async Task AcceptLoopAsync(ListenerEndpoint listener, Socket listen)
    {
        var ct = _stop.Token;
        while (!ct.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listen.AcceptAsync(ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                LogAcceptFailed(_logger, listener.Name, e.Message);
                continue;
            }
            if (_connections.Count >= _options.MaxConnections)
            {
                LogTooManyConnections(_logger, socket.RemoteEndPoint?.ToString(), _options.MaxConnections);
                socket.Dispose();
                continue;
            }
            socket.NoDelay = true;
            if (_options.SocketSendBufferBytes > 0) socket.SendBufferSize = _options.SocketSendBufferBytes;
            if (_options.SocketReceiveBufferBytes > 0) socket.ReceiveBufferSize = _options.SocketReceiveBufferBytes;
            string id = $"{listener.Name}-{Interlocked.Increment(ref _nextId)}";
            var connection = new KafkaConnection(socket, id, listener.Name, _listenerDispatchers.GetValueOrDefault(listener.Name, _dispatcher), _options, _loggers.CreateLogger<KafkaConnection>());
            var run = Task.Run(async () =>
            {
                try { await connection.RunAsync().ConfigureAwait(false); }
                finally { _connections.TryRemove(id, out _); }
            });
            _connections[id] = (connection, run);
        }
    }

    private async Task SweepIdleAsync()
    {
        long period = Math.Clamp(_options.ConnectionsMaxIdleMs / 4, 100, 10_000);
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(period));
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false))
            {
                long now = Environment.TickCount64;
                foreach (var (id, (c, _)) in _connections)
                {
                    if (now - c.LastActivityTicks > _options.ConnectionsMaxIdleMs)
                    {
                        LogIdle(_logger, id);
                        c.Close();
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Stops accepting, closes every connection, and waits for their loops to end.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested) return;
        _stop.Cancel();
        foreach (var (_, socket, _) in _bound) socket.Dispose();
        await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        foreach (var (c, _) in _connections.Values) c.Close();
        try
        {
            await Task.WhenAll(_connections.Values.Select(v => v.Run)).WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            LogSlowClose(_logger, _connections.Count);
        }
        if (_sweeper is not null) await _sweeper.ConfigureAwait(false);
        _stop.Dispose();
    }

    [LoggerMessage(EventId = 4101, Level = LogLevel.Information, Message = "Listening for {Listener} on {EndPoint}")]
    private static partial void LogListening(ILogger logger, string listener, string endPoint);

    [LoggerMessage(EventId = 4102, Level = LogLevel.Warning, Message = "Accept failed on {Listener}: {Reason}")]
    private static partial void LogAcceptFailed(ILogger logger, string listener, string reason);

    [LoggerMessage(EventId = 4103, Level = LogLevel.Warning, Message = "Refused connection from {Remote}: max.connections ({Max}) reached")]
    private static partial void LogTooManyConnections(ILogger logger, string? remote, int max);

    [LoggerMessage(EventId = 4105, Level = LogLevel.Warning, Message = "{Count} connections did not close within 10 s of shutdown")]
    private static partial void LogSlowClose(ILogger logger, int count);

    [LoggerMessage(EventId = 4104, Level = LogLevel.Information, Message = "Closing idle connection {Connection}")]
    private static partial void LogIdle(ILogger logger, string connection);
}
