using Freshet.Integration.Tests.Support;

namespace Freshet.Integration.Tests.Cluster;

/// <summary>
/// A cluster of `freshet server` processes on loopback, each a combined broker+controller with a
/// client and a controller listener, sharing one cluster id and voter list (what `freshet cluster
/// up` starts). Nodes can be killed with SIGKILL, stopped with SIGTERM and started again on the
/// same ports and data.
/// </summary>
public sealed class ClusterProcesses : IAsyncDisposable
{
    private readonly Dictionary<int, BrokerProcess> _nodes = [];
    private readonly Dictionary<int, int> _controllerPorts = [];
    private readonly Dictionary<int, (CutProxy Client, CutProxy Controller)> _proxies = [];
    private readonly Dictionary<string, string>? _overrides;
    private readonly string _clusterId;
    private readonly string _voters;

    /// <param name="overrides">Settings of every node.</param>
    /// <param name="nodeOverrides">Settings of one node (by node id), over <paramref name="overrides"/>: broker.rack, for instance.</param>
    /// <param name="proxied">
    /// Put a <see cref="CutProxy"/> in front of each node's client and controller listeners and
    /// advertise those (to clients, brokers and the quorum), so <see cref="Cut"/> can cut a node off.
    /// </param>
    public ClusterProcesses(int count, Dictionary<string, string>? overrides = null, Func<int, Dictionary<string, string>>? nodeOverrides = null, bool proxied = false)
    {
        string clusterId = Freshet.Server.MetaProperties.NewClusterId();
        var ports = Enumerable.Range(1, count).ToDictionary(n => n, _ => (Client: BrokerProcess.FreePort(), Controller: BrokerProcess.FreePort()));
        if (proxied)
        {
            foreach (var (n, (client, controller)) in ports)
                _proxies[n] = (new CutProxy(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, client)),
                    new CutProxy(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, controller)));
        }
        int Advertised(int n) => proxied ? _proxies[n].Client.Port : ports[n].Client;
        string voters = string.Join(",", ports.Select(p => $"{p.Key}@127.0.0.1:{(proxied ? _proxies[p.Key].Controller.Port : p.Value.Controller)}"));
        _overrides = overrides;
        _clusterId = clusterId;
        _voters = voters;
        foreach (var (n, (client, controller)) in ports)
        {
            var props = new Dictionary<string, string>(overrides ?? [])
            {
                ["node.id"] = n.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["cluster.id"] = clusterId,
                ["listeners"] = $"PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}",
                ["advertised.listeners"] = $"PLAINTEXT://127.0.0.1:{Advertised(n)}",
                ["controller.listener.names"] = "CONTROLLER",
                ["controller.quorum.voters"] = voters,
            };
            foreach (var (k, v) in nodeOverrides?.Invoke(n) ?? []) props[k] = v;
            _controllerPorts[n] = controller;
            _nodes[n] = new BrokerProcess(props, client) { LogLevel = Environment.GetEnvironmentVariable("FRESHET_CLUSTER_LOG_LEVEL") ?? "warning" };
        }
        BootstrapServers = string.Join(",", _nodes.Keys.Select(n => $"127.0.0.1:{Advertised(n)}"));
    }

    /// <summary>
    /// Cuts node <paramref name="node"/> off (proxied clusters): nothing reaches its listeners, and
    /// what it sends (its quorum, controller and replica-fetch clients are named freshet-{id}-...)
    /// reaches no other node. Its own process keeps running, believing what it last knew.
    /// </summary>
    public void Cut(int node, bool cut = true)
    {
        if (_proxies.Count == 0) throw new InvalidOperationException("the cluster was not started with proxies");
        string prefix = $"freshet-{node}-";
        foreach (var (n, (client, controller)) in _proxies)
        {
            if (n == node)
            {
                client.CutAll = cut;
                controller.CutAll = cut;
            }
            else
            {
                client.Block(prefix, cut);
                controller.Block(prefix, cut);
            }
        }
    }

    public void Heal(int node) => Cut(node, cut: false);

    public string BootstrapServers { get; }

    public IReadOnlyDictionary<int, BrokerProcess> Nodes => _nodes;

    /// <summary>The port node <paramref name="node"/>'s controller listener is bound to.</summary>
    public int ControllerPort(int node) => _controllerPorts[node];

    /// <summary>
    /// Starts node <paramref name="nodeId"/> as a broker-only node (process.roles=broker) of the running
    /// cluster: it finds the controllers through the same voter list, registers, and is ready once
    /// unfenced. It is not in <see cref="BootstrapServers"/> (clients learn of it from metadata).
    /// </summary>
    public async Task<BrokerProcess> AddBrokerAsync(int nodeId)
    {
        if (_nodes.ContainsKey(nodeId)) throw new ArgumentException($"node {nodeId} exists already", nameof(nodeId));
        int client = BrokerProcess.FreePort();
        var props = new Dictionary<string, string>(_overrides ?? [])
        {
            ["node.id"] = nodeId.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["cluster.id"] = _clusterId,
            ["process.roles"] = "broker",
            ["listeners"] = $"PLAINTEXT://127.0.0.1:{client}",
            ["advertised.listeners"] = $"PLAINTEXT://127.0.0.1:{client}",
            ["controller.listener.names"] = "CONTROLLER",
            ["controller.quorum.voters"] = _voters,
        };
        var node = new BrokerProcess(props, client) { LogLevel = Environment.GetEnvironmentVariable("FRESHET_CLUSTER_LOG_LEVEL") ?? "warning" };
        _nodes[nodeId] = node;
        await node.StartAsync(TimeSpan.FromSeconds(90));
        return node;
    }

    /// <summary>Starts every node at once (a node is ready only when a quorum of controllers is up).</summary>
    public Task StartAsync() => Task.WhenAll(_nodes.Values.Select(n => n.StartAsync(TimeSpan.FromSeconds(90))));

    /// <summary>Bootstrap list without one node (clients that must not depend on it).</summary>
    public string BootstrapWithout(int node) => string.Join(",", _nodes.Where(n => n.Key != node).Select(n => n.Value.BootstrapServers));

    /// <summary>The quorum leader (the active controller) as DescribeQuorum on a live node's controller listener says.</summary>
    public async Task<int> ActiveControllerAsync(int askNode)
    {
        await using var raw = await RawKafkaClient.ConnectAsync($"127.0.0.1:{_controllerPorts[askNode]}");
        var r = await raw.RequestAsync<Freshet.Protocol.Messages.DescribeQuorumResponse>(new Freshet.Protocol.Messages.DescribeQuorumRequest
        {
            Topics = [new() { TopicName = "__cluster_metadata", Partitions = [new() { PartitionIndex = 0 }] }],
        }, 1);
        return r.Topics.Single().Partitions.Single().LeaderId;
    }

    /// <summary>
    /// Creates a topic with a fixed replica assignment (partition i gets <paramref name="assignment"/>[i],
    /// its first replica the preferred leader) by a bare CreateTopics v7: Confluent.Kafka's
    /// ReplicasAssignments fail in the client.
    /// </summary>
    public async Task CreateTopicAsync(string topic, int[][] assignment, Dictionary<string, string>? configs = null)
    {
        var live = _nodes.First(n => n.Value.Pid is not null).Value;
        await using var raw = await RawKafkaClient.ConnectAsync(live.BootstrapServers);
        var created = await raw.RequestAsync<Freshet.Protocol.Messages.CreateTopicsResponse>(new Freshet.Protocol.Messages.CreateTopicsRequest
        {
            Topics =
            [
                new()
                {
                    Name = topic, NumPartitions = -1, ReplicationFactor = -1,
                    Assignments = [.. assignment.Select((replicas, i) => new Freshet.Protocol.Messages.CreateTopicsRequest.CreatableReplicaAssignment { PartitionIndex = i, BrokerIds = [.. replicas] })],
                    Configs = [.. (configs ?? []).Select(c => new Freshet.Protocol.Messages.CreateTopicsRequest.CreatableTopicConfig { Name = c.Key, Value = c.Value })],
                },
            ],
        }, 7);
        var result = created.Topics.Single();
        if (result.ErrorCode != 0) throw new InvalidOperationException($"CreateTopics {topic}: error {result.ErrorCode} {result.ErrorMessage}");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var n in _nodes.Values) await n.DisposeAsync();
        foreach (var (client, controller) in _proxies.Values)
        {
            await client.DisposeAsync();
            await controller.DisposeAsync();
        }
    }
}
