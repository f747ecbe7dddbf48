using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Freshet.Broker;
using Microsoft.Extensions.Logging;

namespace Freshet.Network;

/// <summary>
/// Accepts client connections on every listener (Kafka's SocketServer): one accept loop per
/// listener, one <see cref="KafkaConnection"/> per socket, Kafka's connection limits enforced at
/// accept (<see cref="ConnectionQuotas"/>: max.connections and the listener's own limit stop the
/// accepting, max.connections.per.ip closes the newcomer), refusals logged at most once per ten
/// seconds with a count, and idle connections (connections.max.idle.ms) closed by a sweep.
/// <para>
/// Readiness gate: as Kafka enables request processing on a broker's listeners only once the
/// broker has caught up with the metadata and been unfenced, requests on every listener but the
/// early ones (the controller listeners, which the quorum needs in order to get ready) wait in
/// their connections until <see cref="EnableRequestProcessing"/>, then run in order. Before that,
/// a client would be told a cluster with no brokers and no topics.
/// </para>
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
    private readonly TaskCompletionSource _requestsEnabled = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private IReadOnlySet<string> _earlyListeners = new HashSet<string>();
    private readonly ConnectionQuotas _quotas;
    private readonly LogRateLimit _perIpRefusals = new(10_000);
    private readonly LogRateLimit _blocked = new(10_000);
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
        _quotas = new ConnectionQuotas(options);
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

    /// <summary>
    /// Starts accepting connections on every listener. Requests on <paramref name="earlyListeners"/>
    /// are served at once; on the other listeners they wait until <see cref="EnableRequestProcessing"/>.
    /// </summary>
    public void StartAccepting(IEnumerable<string> earlyListeners)
    {
        _earlyListeners = earlyListeners.ToHashSet(StringComparer.Ordinal);
        foreach (var (l, socket, _) in _bound) _acceptLoops.Add(Task.Run(() => AcceptLoopAsync(l, socket)));
        _sweeper = Task.Run(SweepIdleAsync);
    }

    /// <summary>The node is ready: requests held on the client listeners run now, new ones at once.</summary>
    public void EnableRequestProcessing() => _requestsEnabled.TrySetResult();

    /// <summary>Whether <see cref="EnableRequestProcessing"/> was called.</summary>
    public bool RequestProcessingEnabled => _requestsEnabled.Task.IsCompleted;

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
        var dispatcher = _listenerDispatchers.GetValueOrDefault(listener.Name, _dispatcher);
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
            IPAddress address;
            ConnectionQuotas.Limit refused;
            try
            {
                address = ConnectionQuotas.Normalize(((IPEndPoint)socket.RemoteEndPoint!).Address);
                // At max.connections this waits (Kafka's acceptor blocks): the connections behind this one stay in the backlog.
                refused = await _quotas.AdmitAsync(listener.Name, address, limit => Blocked(listener.Name, limit), ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                // Stopping, or the peer left before it was looked at.
                socket.Dispose();
                continue;
            }
            if (refused == ConnectionQuotas.Limit.PerIp)
            {
                // Kafka closes it at once, with no answer: the client sees the connection closed.
                if (_perIpRefusals.TryLog(out int more))
                    LogTooManyFromAddress(_logger, address.ToString(), listener.Name, _quotas.MaxFor(address), more);
                socket.Dispose();
                continue;
            }
            try
            {
                socket.NoDelay = true;
                // Kafka's acceptor sets it too: a peer that vanished without a FIN is found out eventually.
                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
                if (_options.SocketSendBufferBytes > 0) socket.SendBufferSize = _options.SocketSendBufferBytes;
                if (_options.SocketReceiveBufferBytes > 0) socket.ReceiveBufferSize = _options.SocketReceiveBufferBytes;
            }
            catch (SocketException)
            {
                socket.Dispose();
                _quotas.Release(listener.Name, address);
                continue;
            }
            string id = $"{listener.Name}-{Interlocked.Increment(ref _nextId)}";
            var connection = new KafkaConnection(socket, id, listener.Name, dispatcher, _options, _loggers.CreateLogger<KafkaConnection>(),
                _earlyListeners.Contains(listener.Name) ? null : _requestsEnabled.Task);
            // Registered before it runs, so that a connection ending at once is also removed.
            var run = new Task<Task>(async () =>
            {
                try { await connection.RunAsync().ConfigureAwait(false); }
                finally
                {
                    _connections.TryRemove(id, out _);
                    _quotas.Release(listener.Name, address);
                }
            });
            _connections[id] = (connection, run.Unwrap());
            run.Start(TaskScheduler.Default);
            if (_quotas.IsProtected(listener.Name)) MakeRoomFor(listener.Name);
        }
    }

    /// <summary>A listener is at max.connections or its own limit and stops accepting until a connection closes.</summary>
    private void Blocked(string listener, ConnectionQuotas.Limit limit)
    {
        if (!_blocked.TryLog(out int more)) return;
        if (limit == ConnectionQuotas.Limit.Listener)
            LogListenerLimit(_logger, listener, listener.ToLowerInvariant(), _options.Listeners.First(l => l.Name == listener).MaxConnections, more);
        else
            LogBrokerLimit(_logger, listener, _quotas.MaxConnections, more);
    }

    /// <summary>
    /// The inter-broker listener accepted past max.connections: close the least recently used
    /// connections of the listeners counted with it, as many as the total is over (Kafka's rule).
    /// </summary>
    private void MakeRoomFor(string listener)
    {
        int excess = _quotas.Excess(listener);
        if (excess == 0) return;
        var others = _connections.Values.Select(v => v.Connection)
            .Where(c => c.ListenerName != listener && _quotas.SharePool(c.ListenerName, listener)).ToList();
        excess -= others.Count(IsClosing); // already on their way out
        foreach (var c in others.Where(c => !IsClosing(c)).OrderBy(c => c.LastActivityTicks).Take(excess))
        {
            LogClosingForInterBroker(_logger, c.Id, listener, _quotas.MaxConnections);
            c.Close();
        }
    }

    /// <summary>Closed or closing (a connection that has ended is removed from the table just after it is disposed).</summary>
    private static bool IsClosing(KafkaConnection c)
    {
        try { return c.Closed.IsCancellationRequested; }
        catch (ObjectDisposedException) { return true; }
    }

    private async Task SweepIdleAsync()
    {
        long idleMs = _options.ConnectionsMaxIdleMs;
        long period = idleMs < 0 ? 10_000 : Math.Clamp(idleMs / 4, 100, 10_000);
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(period));
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false))
            {
                // Refusals counted since the last message, said once things are quiet again.
                if (_perIpRefusals.TryFlush(out int refused)) LogRefusedSince(_logger, refused, "max.connections.per.ip");
                if (_blocked.TryFlush(out int blocked)) LogBlockedSince(_logger, blocked);
                if (idleMs < 0) continue; // connections.max.idle.ms=-1: never closed for idleness (Kafka's meaning)
                long now = Environment.TickCount64;
                foreach (var (id, (c, _)) in _connections)
                {
                    if (now - c.LastActivityTicks > idleMs)
                    {
                        LogIdle(_logger, id, idleMs);
                        c.Close();
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>
    /// Lets a message through at most once per interval; the ones held back are counted and the
    /// count goes with the next message (or <see cref="TryFlush"/>), so a flood of refusals costs a
    /// line every ten seconds and is still visible.
    /// </summary>
    private sealed class LogRateLimit(long intervalMs)
    {
        private readonly object _lock = new();
        private long _last = long.MinValue / 2;
        private int _held;

        public bool TryLog(out int heldSinceLast)
        {
            lock (_lock)
            {
                long now = Environment.TickCount64;
                if (now - _last < intervalMs)
                {
                    _held++;
                    heldSinceLast = 0;
                    return false;
                }
                _last = now;
                heldSinceLast = _held;
                _held = 0;
                return true;
            }
        }

        public bool TryFlush(out int held)
        {
            lock (_lock)
            {
                held = _held;
                if (held == 0 || Environment.TickCount64 - _last < intervalMs) return false;
                _held = 0;
                _last = Environment.TickCount64;
                return true;
            }
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

    [LoggerMessage(EventId = 4103, Level = LogLevel.Warning, Message = "max.connections ({Max}) reached: {Listener} accepts no new connection until one closes (they wait in the listen backlog); {More} more times since the last message")]
    private static partial void LogBrokerLimit(ILogger logger, string listener, int max, int more);

    [LoggerMessage(EventId = 4105, Level = LogLevel.Warning, Message = "{Count} connections did not close within 10 s of shutdown")]
    private static partial void LogSlowClose(ILogger logger, int count);

    [LoggerMessage(EventId = 4104, Level = LogLevel.Debug, Message = "Closing connection {Connection}: idle for more than connections.max.idle.ms ({IdleMs})")]
    private static partial void LogIdle(ILogger logger, string connection, long idleMs);

    [LoggerMessage(EventId = 4106, Level = LogLevel.Warning, Message = "listener.name.{Prefix}.max.connections ({Max}) reached: {Listener} accepts no new connection until one closes (they wait in the listen backlog); {More} more times since the last message")]
    private static partial void LogListenerLimit(ILogger logger, string listener, string prefix, int max, int more);

    [LoggerMessage(EventId = 4107, Level = LogLevel.Warning, Message = "Refused a connection from {Address} on {Listener}: max.connections.per.ip ({Max}) reached for that address, connection closed; {More} more refused since the last message")]
    private static partial void LogTooManyFromAddress(ILogger logger, string address, string listener, int max, int more);

    [LoggerMessage(EventId = 4108, Level = LogLevel.Warning, Message = "Refused {Count} more connections ({Limit}) since the last message")]
    private static partial void LogRefusedSince(ILogger logger, int count, string limit);

    [LoggerMessage(EventId = 4109, Level = LogLevel.Warning, Message = "A listener was held at its connection limit {Count} more times since the last message")]
    private static partial void LogBlockedSince(ILogger logger, int count);

    [LoggerMessage(EventId = 4110, Level = LogLevel.Information, Message = "Closing connection {Connection}, the least recently used, to make room for the inter-broker listener {Listener}: max.connections ({Max}) reached")]
    private static partial void LogClosingForInterBroker(ILogger logger, string connection, string listener, int max);
}
