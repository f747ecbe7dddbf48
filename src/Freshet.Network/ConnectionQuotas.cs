using System.Net;

namespace Freshet.Network;

/// <summary>
/// Kafka's connection limits, counted at accept:
/// <list type="bullet">
/// <item>max.connections, and a listener's own listener.name.&lt;listener&gt;.max.connections: when
/// either is reached the listener stops accepting (new connections wait in the listen backlog) until
/// a connection closes. The inter-broker listener is exempt from the broker-wide limit when there
/// are other listeners; when a connection it takes puts the total over the limit, the least recently
/// used connections of the other listeners are closed to make room (the caller does that, asking
/// <see cref="Excess"/>).</item>
/// <item>max.connections.per.ip, with max.connections.per.ip.overrides per address: a connection from
/// an address that already has that many is closed at once.</item>
/// </list>
/// Controller listeners are counted apart from the others, as Kafka's controller has a socket server
/// (and limits) of its own: clients filling max.connections never lock the quorum out.
/// </summary>
internal sealed class ConnectionQuotas
{
    private readonly object _lock = new();
    private readonly Dictionary<string, Pool> _pools = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _listenerMax = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _listenerCounts = new(StringComparer.Ordinal);
    private readonly int _maxConnections;
    private readonly int _maxPerIp;
    private readonly IReadOnlyDictionary<IPAddress, int> _perIpOverrides;
    private TaskCompletionSource _released = NewSignal();

    /// <summary>Listeners counted together, with their per-address counts (Kafka: one socket server).</summary>
    private sealed class Pool
    {
        public int Total;
        public string? Protected;
        public readonly Dictionary<IPAddress, int> PerIp = [];
    }

    /// <summary>Which limit kept a connection waiting, or refused it.</summary>
    public enum Limit { None, Broker, Listener, PerIp }

    public ConnectionQuotas(NetworkOptions options)
    {
        _maxConnections = options.MaxConnections;
        _maxPerIp = options.MaxConnectionsPerIp;
        _perIpOverrides = options.MaxConnectionsPerIpOverrides;
        var controller = new Pool();
        var broker = new Pool();
        foreach (var l in options.Listeners)
        {
            _pools[l.Name] = options.ControllerListenerNames.Contains(l.Name) ? controller : broker;
            _listenerMax[l.Name] = l.MaxConnections;
            _listenerCounts[l.Name] = 0;
        }
        // Kafka protects the inter-broker listener only when it shares its limit with another listener.
        if (options.InterBrokerListenerName is { } ib && _pools.TryGetValue(ib, out var pool) && _pools.Count(p => p.Value == pool) > 1)
            pool.Protected = ib;
    }

    public int MaxConnections => _maxConnections;

    public int MaxFor(IPAddress address) => _perIpOverrides.TryGetValue(address, out int max) ? max : _maxPerIp;

    public bool IsProtected(string listener) => _pools[listener].Protected == listener;

    /// <summary>True when both listeners' connections count against the same max.connections.</summary>
    public bool SharePool(string a, string b) => _pools[a] == _pools[b];

    /// <summary>
    /// Counts a connection accepted on <paramref name="listener"/> from <paramref name="address"/>,
    /// first waiting while its listener or the broker is at its limit (<paramref name="onBlocked"/>
    /// is told once, when the wait starts). Returns <see cref="Limit.PerIp"/> when the address is at
    /// its own limit (nothing is counted then: the caller closes the connection), otherwise
    /// <see cref="Limit.None"/>; <see cref="Release"/> undoes it when the connection closes.
    /// </summary>
    public async ValueTask<Limit> AdmitAsync(string listener, IPAddress address, Action<Limit> onBlocked, CancellationToken ct)
    {
        address = Normalize(address);
        bool told = false;
        while (true)
        {
            Task released;
            Limit limit;
            lock (_lock)
            {
                limit = Blocking(listener);
                if (limit == Limit.None)
                {
                    var pool = _pools[listener];
                    int fromAddress = pool.PerIp.GetValueOrDefault(address);
                    if (fromAddress >= MaxFor(address)) return Limit.PerIp;
                    pool.PerIp[address] = fromAddress + 1;
                    pool.Total++;
                    _listenerCounts[listener]++;
                    return Limit.None;
                }
                released = _released.Task;
            }
            if (!told)
            {
                told = true;
                onBlocked(limit);
            }
            await released.WaitAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>A connection counted by <see cref="AdmitAsync"/> has closed: wakes listeners waiting for a slot.</summary>
    public void Release(string listener, IPAddress address)
    {
        address = Normalize(address);
        TaskCompletionSource released;
        lock (_lock)
        {
            var pool = _pools[listener];
            int fromAddress = pool.PerIp[address];
            if (fromAddress == 1) pool.PerIp.Remove(address);
            else pool.PerIp[address] = fromAddress - 1;
            pool.Total--;
            _listenerCounts[listener]--;
            released = _released;
            _released = NewSignal();
        }
        released.SetResult();
    }

    /// <summary>How far the connections counted with <paramref name="listener"/>'s are over max.connections (only the protected listener can put them there).</summary>
    public int Excess(string listener)
    {
        lock (_lock) return Math.Max(0, _pools[listener].Total - _maxConnections);
    }

    private Limit Blocking(string listener)
    {
        if (_listenerCounts[listener] >= _listenerMax[listener]) return Limit.Listener;
        var pool = _pools[listener];
        if (pool.Protected == listener) return Limit.None;
        return pool.Total >= _maxConnections ? Limit.Broker : Limit.None;
    }

    /// <summary>An IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d: count it (and match overrides) as a.b.c.d.</summary>
    public static IPAddress Normalize(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
