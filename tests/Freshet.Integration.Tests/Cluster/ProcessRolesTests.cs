using System.Globalization;
using System.Text.Json;
using Confluent.Kafka;
using Freshet.Integration.Tests.Support;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Cluster;

/// <summary>
/// Dedicated roles, as Kafka deployments split them: a controller-only node (process.roles=controller,
/// a controller listener and nothing else) and two broker-only nodes that find it through
/// controller.quorum.voters.
/// </summary>
public sealed class ProcessRolesTests(ITestOutputHelper output)
{
    [Fact]
    public async Task AControllerOnlyNodeAndTwoBrokerOnlyNodesServeClients()
    {
        int controllerPort = BrokerProcess.FreePort();
        string clusterId = Freshet.Server.MetaProperties.NewClusterId();
        string voters = $"1@127.0.0.1:{controllerPort}";
        await using var controller = new BrokerProcess(new()
        {
            ["node.id"] = "1",
            ["process.roles"] = "controller",
            ["cluster.id"] = clusterId,
            ["listeners"] = $"CONTROLLER://127.0.0.1:{controllerPort}",
            ["controller.listener.names"] = "CONTROLLER",
            ["controller.quorum.voters"] = voters,
        });
        BrokerProcess Broker(int id) => new(new()
        {
            ["node.id"] = id.ToString(CultureInfo.InvariantCulture),
            ["process.roles"] = "broker",
            ["cluster.id"] = clusterId,
            ["controller.listener.names"] = "CONTROLLER",
            ["controller.quorum.voters"] = voters,
            ["broker.session.timeout.ms"] = "4000",
        });
        await using var broker2 = Broker(2);
        await using var broker3 = Broker(3);
        await Task.WhenAll(controller.StartAsync(TimeSpan.FromSeconds(60)), broker2.StartAsync(TimeSpan.FromSeconds(60)), broker3.StartAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains($"controller 1 on 127.0.0.1:{controllerPort} (controller role only", controller.Output, StringComparison.Ordinal);
        string bootstrap = $"{broker2.BootstrapServers},{broker3.BootstrapServers}";

        // Topics go through the controller; records through the brokers only.
        const string topic = "roles";
        await Clients.CreateTopicAsync(bootstrap, topic, 2, new() { ["min.insync.replicas"] = "1" });
        using (var admin = Clients.Admin(bootstrap))
        {
            var md = admin.GetMetadata(TimeSpan.FromSeconds(10));
            Assert.Equal([2, 3], md.Brokers.Select(b => b.BrokerId).Order());

            // Config changes sent to a broker-only node are forwarded to the controller: the non-incremental
            // AlterConfigs (API 33) as much as IncrementalAlterConfigs.
            var resource = new Confluent.Kafka.Admin.ConfigResource { Type = Confluent.Kafka.Admin.ResourceType.Topic, Name = topic };
#pragma warning disable CS0618 // AlterConfigsAsync is what older tools still send: it is the API under test.
            await admin.AlterConfigsAsync(new Dictionary<Confluent.Kafka.Admin.ConfigResource, List<Confluent.Kafka.Admin.ConfigEntry>>
            {
                [resource] = [new() { Name = "retention.ms", Value = "3600000" }, new() { Name = "min.insync.replicas", Value = "1" }],
            });
#pragma warning restore CS0618
            await admin.IncrementalAlterConfigsAsync(new Dictionary<Confluent.Kafka.Admin.ConfigResource, List<Confluent.Kafka.Admin.ConfigEntry>>
            {
                [resource] = [new() { Name = "segment.ms", Value = "7200000", IncrementalOperation = Confluent.Kafka.Admin.AlterConfigOpType.Set }],
            });
            // The brokers apply the change once the controller's record reaches them.
            for (var deadline = DateTime.UtcNow.AddSeconds(30); ; await Task.Delay(100))
            {
                var entries = (await admin.DescribeConfigsAsync([resource])).Single().Entries;
                if (entries["retention.ms"].Value == "3600000" && entries["segment.ms"].Value == "7200000") break;
                Assert.True(DateTime.UtcNow < deadline, $"retention.ms={entries["retention.ms"].Value}, segment.ms={entries["segment.ms"].Value} after 30 s");
            }
        }
        var config = Clients.ProducerConfig(bootstrap);
        config.Acks = Acks.All;
        using (var producer = new ProducerBuilder<Null, string>(config).Build())
        {
            for (int i = 0; i < 200; i++) producer.Produce(topic, new Message<Null, string> { Value = $"v{i}" });
            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(30)));
        }
        var read = Clients.ReadAll(bootstrap, topic, 2, TimeSpan.FromSeconds(30));
        Assert.Equal(200, read.Values.Sum(r => r.Count));

        // The cluster as `freshet cluster describe` shows it: two live brokers, the controller in the quorum only.
        var describe = await FreshetCli.RunAsync("cluster", "describe", "--bootstrap-server", bootstrap, "--json");
        output.WriteLine(describe.ToString());
        Assert.Equal(0, describe.ExitCode);
        var doc = JsonDocument.Parse(describe.Stdout).RootElement;
        Assert.Equal([(2, "live"), (3, "live")], doc.GetProperty("brokers").EnumerateArray()
            .Select(b => (b.GetProperty("id").GetInt32(), b.GetProperty("status").GetString()!)));
        Assert.Equal(1, doc.GetProperty("quorum").GetProperty("leaderId").GetInt32());
    }
}
