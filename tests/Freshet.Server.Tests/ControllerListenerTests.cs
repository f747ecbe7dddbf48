using Freshet.Network;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Server.Tests;

/// <summary>A broker registering and heartbeating on a node's controller listener, over TCP.</summary>
public sealed class ControllerListenerTests
{
    /// <summary>
    /// A node whose own broker heartbeats every 200 ms; its session (6 s unless a test needs a shorter
    /// one) leaves a loaded machine room for late heartbeats, so node 1 itself is never fenced.
    /// </summary>
    private static async Task<(FreshetServer Server, NodeClient Client)> StartAsync(int sessionTimeoutMs = 6000, int probeMs = 3000)
    {
        var server = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string>
        {
            ["listeners"] = "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0",
            ["controller.listener.names"] = "CONTROLLER",
            ["broker.session.timeout.ms"] = sessionTimeoutMs.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["broker.session.probe.ms"] = probeMs.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["broker.heartbeat.interval.ms"] = "200",
        });
        var listeners = server.BoundListeners.ToDictionary(l => l.Name, l => l.EndPoint);
        // Node 1's client listener and node 1's controller listener, as separate "nodes" of the client.
        var client = new NodeClient(id => id switch
        {
            0 => ("127.0.0.1", listeners["PLAINTEXT"].Port),
            1 => ("127.0.0.1", listeners["CONTROLLER"].Port),
            _ => null,
        }, new NodeClientOptions { ClientId = "broker-2" }, NullLogger<NodeClient>.Instance);
        return (server, client);
    }

    [Fact]
    public async Task EachListenerAdvertisesItsOwnApis()
    {
        var (server, client) = await StartAsync();
        await using var _ = server;
        await using var __ = client;
        var onClient = await client.SendAsync<ApiVersionsResponse>(0, new ApiVersionsRequest(), 3, CancellationToken.None);
        var onController = await client.SendAsync<ApiVersionsResponse>(1, new ApiVersionsRequest(), 3, CancellationToken.None);
        Assert.Contains(onClient.ApiKeys, k => k.ApiKey == (short)ApiKey.Produce);
        Assert.DoesNotContain(onClient.ApiKeys, k => k.ApiKey == (short)ApiKey.BrokerRegistration);
        Assert.Contains(onController.ApiKeys, k => k.ApiKey == (short)ApiKey.BrokerRegistration);
        Assert.Contains(onController.ApiKeys, k => k.ApiKey == (short)ApiKey.AlterPartition);
        Assert.DoesNotContain(onController.ApiKeys, k => k.ApiKey == (short)ApiKey.Produce);
        // Clients are never told about the controller listener.
        var md = await client.SendAsync<MetadataResponse>(0, new MetadataRequest { Topics = [] }, 12, CancellationToken.None);
        Assert.Equal(listeners(server)["PLAINTEXT"], md.Brokers.Single().Port);
    }

    private static Dictionary<string, int> listeners(FreshetServer s) => s.BoundListeners.ToDictionary(l => l.Name, l => l.EndPoint.Port);

    /// <summary>Waits (up to a generous 30 s) until the controller has fenced <paramref name="brokerId"/>.</summary>
    private static async Task FencedAsync(FreshetServer server, int brokerId)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!server.Controller.Image.Brokers[brokerId].Fenced && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.True(server.Controller.Image.Brokers[brokerId].Fenced, $"broker {brokerId} was not fenced within 30 s");
    }

    [Fact]
    public async Task ARegisteredBrokerIsUnfencedByItsHeartbeatsAndFencedWhenTheyStop()
    {
        var (server, client) = await StartAsync(sessionTimeoutMs: 3000);
        await using var _ = server;
        await using var __ = client;
        var reg = await client.SendAsync<BrokerRegistrationResponse>(1, new BrokerRegistrationRequest
        {
            BrokerId = 2,
            ClusterId = server.ClusterId,
            IncarnationId = Uuid.Random(),
            Listeners = [new BrokerRegistrationRequest.Listener { Name = "PLAINTEXT", Host = "127.0.0.1", Port = 39999, SecurityProtocol = 0 }],
        }, 4, CancellationToken.None);
        Assert.Equal(0, reg.ErrorCode);
        Assert.True(server.Controller.Image.Brokers[2].Fenced);

        async Task<BrokerHeartbeatResponse> BeatAsync() => await client.SendAsync<BrokerHeartbeatResponse>(1, new BrokerHeartbeatRequest
        {
            BrokerId = 2, BrokerEpoch = reg.BrokerEpoch, CurrentMetadataOffset = server.Controller.Image.Offset,
        }, 1, CancellationToken.None);
        var beat = await BeatAsync();
        Assert.Equal(0, beat.ErrorCode);
        Assert.True(beat.IsCaughtUp);
        Assert.False(beat.IsFenced);
        var md = await client.SendAsync<MetadataResponse>(0, new MetadataRequest { Topics = [] }, 12, CancellationToken.None);
        Assert.Equal([1, 2], md.Brokers.Select(b => b.NodeId).Order());

        var stale = await client.SendAsync<BrokerHeartbeatResponse>(1, new BrokerHeartbeatRequest { BrokerId = 2, BrokerEpoch = reg.BrokerEpoch + 1 }, 1, CancellationToken.None);
        Assert.Equal((short)ErrorCode.StaleBrokerEpoch, stale.ErrorCode);

        // Broker 2 goes silent: fenced after broker.session.timeout.ms.
        await FencedAsync(server, 2);

        // Node 1 keeps its own session alive. Broker 2 heartbeats once more (unfenced again) and goes silent
        // again: its second fencing is a session check at least a session after that heartbeat, and that
        // check (brokers in id order) would have fenced node 1 first had node 1 not heartbeated since.
        Assert.False((await BeatAsync()).IsFenced);
        await FencedAsync(server, 2);
        Assert.False(server.Controller.Image.Brokers[1].Fenced);
        md = await client.SendAsync<MetadataResponse>(0, new MetadataRequest { Topics = [] }, 12, CancellationToken.None);
        Assert.Equal([1], md.Brokers.Select(b => b.NodeId));
    }

    /// <summary>
    /// Metadata never answers an empty broker list (librdkafka takes one for a partial answer and gives up):
    /// with every broker fenced in the node's image, here its own broker fenced on its own controller
    /// listener, the broker answering lists itself.
    /// </summary>
    [Fact]
    public async Task MetadataListsTheAnsweringBrokerWhenEveryBrokerIsFenced()
    {
        await using var server = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string>
        {
            ["listeners"] = "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0",
            ["controller.listener.names"] = "CONTROLLER",
            // The node's own heartbeats, which would unfence it again, come every 5 s; its session lasts a minute.
            ["broker.heartbeat.interval.ms"] = "5000",
            ["broker.session.timeout.ms"] = "60000",
        });
        var ports = listeners(server);
        await using var client = new NodeClient(id => ("127.0.0.1", id == 0 ? ports["PLAINTEXT"] : ports["CONTROLLER"]),
            new NodeClientOptions { ClientId = "fencer" }, NullLogger<NodeClient>.Instance);
        for (int attempt = 0; attempt < 5; attempt++)
        {
            var self = server.Controller.Image.Brokers[1];
            var fence = await client.SendAsync<BrokerHeartbeatResponse>(1, new BrokerHeartbeatRequest
            {
                BrokerId = 1,
                BrokerEpoch = self.Epoch,
                CurrentMetadataOffset = server.Controller.Image.Offset,
                WantFence = true,
            }, 1, CancellationToken.None);
            Assert.True(fence.IsFenced);
            var md = await client.SendAsync<MetadataResponse>(0, new MetadataRequest { Topics = [] }, 12, CancellationToken.None);
            // Its own heartbeat unfenced it before the answer: not the case under test, fence it again.
            if (!server.Controller.Image.Brokers[1].Fenced) continue;
            Assert.Empty(server.Controller.Image.ActiveBrokers);
            var listed = Assert.Single(md.Brokers);
            Assert.Equal(1, listed.NodeId);
            Assert.Equal(ports["PLAINTEXT"], listed.Port);
            return;
        }
        Assert.Fail("the node's own heartbeats unfenced it before every answer");
    }

    [Fact]
    public async Task DescribeQuorumReportsWallClockTimestamps()
    {
        long started = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var (server, client) = await StartAsync();
        await using var _ = server;
        await using var __ = client;
        var r = await client.SendAsync<DescribeQuorumResponse>(1, new DescribeQuorumRequest
        {
            Topics = [new() { TopicName = "__cluster_metadata", Partitions = [new() { PartitionIndex = 0 }] }],
        }, 1, CancellationToken.None);
        long after = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var voter = r.Topics.Single().Partitions.Single().CurrentVoters.Single();
        Assert.Equal(1, voter.ReplicaId);
        // Milliseconds since the Unix epoch (what admin tools print as dates), not a monotonic counter: between
        // the node's start and the answer (however long a loaded machine took between the two), give or take
        // a second of clock granularity.
        Assert.InRange(voter.LastFetchTimestamp, started - 1000, after + 1000);
        Assert.InRange(voter.LastCaughtUpTimestamp, started - 1000, after + 1000);
    }

    /// <summary>Registers broker 2 with its listener at <paramref name="port"/> and heartbeats once, so that it is unfenced.</summary>
    private static async Task RegisterAndUnfenceAsync(FreshetServer server, NodeClient client, int port)
    {
        var reg = await client.SendAsync<BrokerRegistrationResponse>(1, new BrokerRegistrationRequest
        {
            BrokerId = 2,
            ClusterId = server.ClusterId,
            IncarnationId = Uuid.Random(),
            Listeners = [new BrokerRegistrationRequest.Listener { Name = "PLAINTEXT", Host = "127.0.0.1", Port = (ushort)port, SecurityProtocol = 0 }],
        }, 4, CancellationToken.None);
        Assert.Equal(0, reg.ErrorCode);
        var beat = await client.SendAsync<BrokerHeartbeatResponse>(1, new BrokerHeartbeatRequest
        {
            BrokerId = 2, BrokerEpoch = reg.BrokerEpoch, CurrentMetadataOffset = server.Controller.Image.Offset,
        }, 1, CancellationToken.None);
        Assert.False(beat.IsFenced);
    }

    [Fact]
    public async Task ALateBrokerWhoseListenerRefusesConnectionsIsFencedBeforeItsSessionEnds()
    {
        // A 60 s session, a probe after 600 ms: broker 2's "process" is gone (nothing listens on its port).
        var (server, client) = await StartAsync(sessionTimeoutMs: 60_000, probeMs: 600);
        await using var _ = server;
        await using var __ = client;
        var nobody = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        nobody.Start();
        int port = ((System.Net.IPEndPoint)nobody.LocalEndpoint).Port;
        nobody.Stop();
        // Started before the registration, so this clock contains broker 2's whole session so far: fenced
        // before it reads 40 s, broker 2 was fenced before its 60 s session could end (by the probe).
        var sw = System.Diagnostics.Stopwatch.StartNew();
        await RegisterAndUnfenceAsync(server, client, port);
        while (!server.Controller.Image.Brokers[2].Fenced && sw.Elapsed < TimeSpan.FromSeconds(40)) await Task.Delay(50);
        Assert.True(server.Controller.Image.Brokers[2].Fenced, "broker 2 was not fenced within 40 s (its session is 60 s)");
    }

    [Fact]
    public async Task ALateBrokerWhoseListenerAnswersWaitsOutItsSession()
    {
        // Silence without a refusal (a partition, a paused process): only the session ends it, as in Kafka.
        var (server, client) = await StartAsync(sessionTimeoutMs: 8000, probeMs: 600);
        await using var _ = server;
        await using var __ = client;
        var listening = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listening.Start();
        using var stop = new CancellationTokenSource();
        int probes = 0;
        // Every connection to broker 2's port is the controller's probe (connect, then close).
        var accepting = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    using var probe = await listening.AcceptSocketAsync(stop.Token);
                    Interlocked.Increment(ref probes);
                }
            }
            catch (OperationCanceledException) { }
        });
        try
        {
            await RegisterAndUnfenceAsync(server, client, ((System.Net.IPEndPoint)listening.LocalEndpoint).Port);
            // Only unfenced brokers are probed, one session check after another: a second probe shows that the
            // first, which got an answer, did not fence broker 2.
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (Volatile.Read(ref probes) < 2 && DateTime.UtcNow < deadline) await Task.Delay(50);
            Assert.True(Volatile.Read(ref probes) >= 2, $"{probes} probes of broker 2's listener");
            await FencedAsync(server, 2);
        }
        finally
        {
            await stop.CancelAsync();
            await accepting;
            listening.Stop();
        }
    }
}
