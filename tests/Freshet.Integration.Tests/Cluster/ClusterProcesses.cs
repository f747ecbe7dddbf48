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

    /// <param name="overrides">Settings of every node.</param>
    /// <param name="nodeOverrides">Settings of one node (by node id), over <paramref name="overrides"/>: broker.rack, for instance.</param>
    public ClusterProcesses(int count, Dictionary<string, string>? overrides = null, Func<int, Dictionary<string, string>>? nodeOverrides = null)
    {
        string clusterId = Freshet.Server.MetaProperties.NewClusterId();
        var ports = Enumerable.Range(1, count).ToDictionary(n => n, _ => (Client: BrokerProcess.FreePort(), Controller: BrokerProcess.FreePort()));
        string voters = string.Join(",", ports.Select(p => $"{p.Key}@127.0.0.1:{p.Value.Controller}"));
        foreach (var (n, (client, controller)) in ports)
        {
            var props = new Dictionary<string, string>(overrides ?? [])
            {
                ["node.id"] = n.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["cluster.id"] = clusterId,
                ["listeners"] = $"PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}",
                ["advertised.listeners"] = $"PLAINTEXT://127.0.0.1:{client}",
                ["controller.listener.names"] = "CONTROLLER",
                ["controller.quorum.voters"] = voters,
            };
            foreach (var (k, v) in nodeOverrides?.Invoke(n) ?? []) props[k] = v;
            _controllerPorts[n] = controller;
            _nodes[n] = new BrokerProcess(props, client) { LogLevel = Environment.GetEnvironmentVariable("FRESHET_CLUSTER_LOG_LEVEL") ?? "warning" };
        }
        BootstrapServers = string.Join(",", _nodes.Values.Select(b => b.BootstrapServers));
    }

    public string BootstrapServers { get; }

    public IReadOnlyDictionary<int, BrokerProcess> Nodes => _nodes;

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

    public async ValueTask DisposeAsync()
    {
        foreach (var n in _nodes.Values) await n.DisposeAsync();
    }
}
