using Freshet.Broker.Lifecycle;
using Freshet.Metadata.Controller;
using Freshet.Metadata.Image;
using Freshet.Network;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Server.Tests;

/// <summary>A second broker's lifecycle (register, unfence, controlled shutdown, session expiry) against a real node's controller listener.</summary>
public sealed class BrokerLifecycleTests
{
    /// <summary>Heartbeats every 200 ms; a 6 s session (unless a test waits for one to end) leaves a loaded machine room for late ones.</summary>
    private static async Task<(FreshetServer, NodeClient, BrokerLifecycleManager)> StartAsync(int sessionTimeoutMs = 6000)
    {
        var server = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string>
        {
            ["listeners"] = "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0",
            ["controller.listener.names"] = "CONTROLLER",
            ["broker.session.timeout.ms"] = sessionTimeoutMs.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["broker.heartbeat.interval.ms"] = "200",
        });
        int controllerPort = server.BoundListeners.Single(l => l.Name == "CONTROLLER").EndPoint.Port;
        var nodes = new NodeClient(id => id == 1 ? ("127.0.0.1", controllerPort) : null, new NodeClientOptions { ClientId = "broker-2" },
            NullLogger<NodeClient>.Instance);
        var channel = new ControllerChannel(nodes, () => 1, NullLogger<ControllerChannel>.Instance);
        var lifecycle = new BrokerLifecycleManager(new BrokerIdentity(2, server.ClusterId, [new BrokerEndpoint("PLAINTEXT", "127.0.0.1", 39998, 0)], "rack-b"),
            channel, () => server.Controller.Image.Offset, 200, NullLogger<BrokerLifecycleManager>.Instance);
        return (server, nodes, lifecycle);
    }

    [Fact]
    public async Task RegistersIsUnfencedAndHandsLeadershipOverOnControlledShutdown()
    {
        var (server, nodes, lifecycle) = await StartAsync();
        await using var _ = server;
        await using var __ = nodes;
        await using var ___ = lifecycle;
        lifecycle.Start();
        await lifecycle.Unfenced.WaitAsync(TimeSpan.FromSeconds(30));
        var reg = server.Controller.Image.Brokers[2];
        Assert.False(reg.Fenced);
        Assert.Equal(lifecycle.BrokerEpoch, reg.Epoch);
        Assert.Equal("rack-b", reg.Rack);
        Assert.Equal(lifecycle.IncarnationId, reg.IncarnationId);

        var created = server.Controller.CreateTopics([new NewTopic("led-by-2", -1, -1,
            new Dictionary<int, IReadOnlyList<int>> { [0] = [2, 1] }, new Dictionary<string, string?>())], false);
        Assert.Equal(Protocol.ErrorCode.None, created[0].Error);
        Assert.Equal(2, server.Controller.Image.Partition("led-by-2", 0)!.Leader);

        Assert.True(await lifecycle.ControlledShutdownAsync(TimeSpan.FromSeconds(30)));
        var p = server.Controller.Image.Partition("led-by-2", 0)!;
        Assert.Equal(1, p.Leader);
        Assert.Equal([1], p.Isr.ToArray());
        Assert.True(server.Controller.Image.Brokers[2].InControlledShutdown);
    }

    [Fact]
    public async Task ABrokerThatStopsHeartbeatingIsFencedAndItsLeadershipsMove()
    {
        var (server, nodes, lifecycle) = await StartAsync(sessionTimeoutMs: 3000);
        await using var _ = server;
        await using var __ = nodes;
        lifecycle.Start();
        await lifecycle.Unfenced.WaitAsync(TimeSpan.FromSeconds(30));
        server.Controller.CreateTopics([new NewTopic("t", -1, -1, new Dictionary<int, IReadOnlyList<int>> { [0] = [2, 1] }, new Dictionary<string, string?>())], false);
        await lifecycle.DisposeAsync(); // the process "dies": no more heartbeats, no controlled shutdown
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!server.Controller.Image.Brokers[2].Fenced && DateTime.UtcNow < deadline) await Task.Delay(100);
        Assert.True(server.Controller.Image.Brokers[2].Fenced);
        Assert.Equal(1, server.Controller.Image.Partition("t", 0)!.Leader);
    }
}
