using System.Globalization;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Freshet.Server;
using Xunit.Abstractions;
using ErrorCode = Freshet.Protocol.ErrorCode;

namespace Freshet.Integration.Tests.Cluster;

/// <summary>
/// __consumer_offsets gets offsets.topic.replication.factor replicas, never fewer: while fewer brokers
/// are alive, FindCoordinator answers COORDINATOR_NOT_AVAILABLE and the topic is not created, as in Kafka.
/// </summary>
public sealed class OffsetsTopicReplicationTests(ITestOutputHelper output)
{
    private static async Task<FindCoordinatorResponse> FindCoordinatorAsync(string bootstrap, string group)
    {
        await using var raw = await RawKafkaClient.ConnectAsync(bootstrap);
        return await raw.RequestAsync<FindCoordinatorResponse>(new FindCoordinatorRequest { Key = group }, 3);
    }

    [Fact]
    public async Task ACoordinatorLookupBeforeEnoughBrokersAreUpWaitsForThemInsteadOfCreatingTheTopicWithFewerReplicas()
    {
        await using var cluster = new ClusterProcesses(3, new() { ["offsets.topic.num.partitions"] = "5" });
        // Two of the three nodes: a quorum, so they serve, but one broker short of offsets.topic.replication.factor (3 by default).
        await Task.WhenAll(cluster.Nodes[1].StartAsync(TimeSpan.FromSeconds(90)), cluster.Nodes[2].StartAsync(TimeSpan.FromSeconds(90)));
        const string group = "early-group";
        for (int i = 0; i < 3; i++)
        {
            var early = await FindCoordinatorAsync(cluster.Nodes[1 + i % 2].BootstrapServers, group);
            Assert.Equal((short)ErrorCode.CoordinatorNotAvailable, early.ErrorCode);
        }
        using (var admin = Clients.Admin(cluster.BootstrapWithout(3)))
        {
            var md = admin.GetMetadata(TimeSpan.FromSeconds(10));
            Assert.DoesNotContain(md.Topics, t => t.Topic == "__consumer_offsets");
        }

        await cluster.Nodes[3].StartAsync(TimeSpan.FromSeconds(90));
        const string topic = "orders";
        using (var admin = Clients.Admin(cluster.BootstrapServers))
            await admin.CreateTopicsAsync([new TopicSpecification { Name = topic, NumPartitions = 2, ReplicationFactor = 3 }]);
        using (var producer = new ProducerBuilder<Null, string>(Clients.ProducerConfig(cluster.BootstrapServers)).Build())
        {
            for (int i = 0; i < 20; i++) producer.Produce(topic, new Message<Null, string> { Value = i.ToString(CultureInfo.InvariantCulture) });
            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(30)));
        }

        // A consumer group now: it joins, consumes and commits.
        var cc = Clients.ConsumerConfig(cluster.BootstrapServers);
        cc.GroupId = group;
        cc.AutoOffsetReset = AutoOffsetReset.Earliest;
        cc.EnablePartitionEof = false;
        using (var consumer = new ConsumerBuilder<Ignore, string>(cc).Build())
        {
            consumer.Subscribe(topic);
            var last = new Dictionary<Confluent.Kafka.TopicPartition, long>();
            var deadline = DateTime.UtcNow.AddSeconds(90);
            while (last.Values.Sum(o => o + 1) < 20 && DateTime.UtcNow < deadline)
                if (consumer.Consume(TimeSpan.FromMilliseconds(500)) is { } cr) last[cr.TopicPartition] = cr.Offset.Value;
            Assert.Equal(20, last.Values.Sum(o => o + 1));
            var commits = last.Select(l => new TopicPartitionOffset(l.Key, l.Value + 1)).ToList();
            consumer.Commit(commits);
            var committed = consumer.Committed(last.Keys, TimeSpan.FromSeconds(30));
            Assert.Equal(commits.OrderBy(c => c.Partition.Value), committed.Select(c => new TopicPartitionOffset(c.TopicPartition, c.Offset)).OrderBy(c => c.Partition.Value));
            consumer.Close();
        }

        using (var admin = Clients.Admin(cluster.BootstrapServers))
        {
            var offsets = admin.GetMetadata("__consumer_offsets", TimeSpan.FromSeconds(10)).Topics.Single();
            output.WriteLine(string.Join("; ", offsets.Partitions.Select(p => $"{p.PartitionId}: [{string.Join(',', p.Replicas)}]")));
            Assert.Equal(5, offsets.Partitions.Count);
            Assert.All(offsets.Partitions, p => Assert.Equal([1, 2, 3], p.Replicas.Order()));
        }
    }

    [Fact]
    public async Task AFactorAboveTheBrokersThereAreIsNeverLowered()
    {
        await using var broker = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string> { ["offsets.topic.replication.factor"] = "2" });
        for (int i = 0; i < 3; i++)
        {
            var r = await FindCoordinatorAsync(broker.BootstrapServers, "g");
            Assert.Equal((short)ErrorCode.CoordinatorNotAvailable, r.ErrorCode);
        }
        Assert.Null(broker.Controller.Image.Topic("__consumer_offsets"));
    }

    [Fact]
    public async Task AStandaloneNodeDefaultsTheFactorToOne()
    {
        await using var broker = await FreshetServer.StartEmbeddedAsync();
        var r = await FindCoordinatorAsync(broker.BootstrapServers, "g");
        Assert.Equal((short)ErrorCode.None, r.ErrorCode);
        Assert.All(broker.Controller.Image.Topic("__consumer_offsets")!.Partitions.Values, p => Assert.Single(p.Replicas));
    }
}
