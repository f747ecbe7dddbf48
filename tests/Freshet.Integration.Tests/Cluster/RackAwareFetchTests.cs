using System.Globalization;
using System.Text.Json;
using Confluent.Kafka;
using Freshet.Integration.Tests.Support;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Cluster;

/// <summary>
/// KIP-392 across three `freshet server` processes in racks r1, r2 and r3: a librdkafka consumer
/// with client.rack=r2 reads a partition led from r1 through the r2 broker when the brokers run
/// the rack-aware replica selector, and from the leader when they run none. Where it fetched from
/// is read from librdkafka's statistics: the partition's fetch broker, and the bytes each broker
/// sent it.
/// </summary>
public sealed class RackAwareFetchTests(ITestOutputHelper output)
{
    private const string RackAware = "org.apache.kafka.common.replica.RackAwareReplicaSelector";

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AConsumerInRackR2ReadsThroughTheR2BrokerOnlyWithTheRackAwareSelector(bool rackAware)
    {
        var shared = rackAware ? new Dictionary<string, string> { ["replica.selector.class"] = RackAware } : null;
        await using var cluster = new ClusterProcesses(3, shared, n => new() { ["broker.rack"] = $"r{n}" });
        await cluster.StartAsync();
        const string topic = "racks";
        const int Leader = 1, Local = 2;
        await using (var raw = await RawKafkaClient.ConnectAsync(cluster.Nodes[1].BootstrapServers))
        {
            var created = await raw.RequestAsync<Freshet.Protocol.Messages.CreateTopicsResponse>(new Freshet.Protocol.Messages.CreateTopicsRequest
            {
                Topics =
                [
                    new()
                    {
                        Name = topic, NumPartitions = -1, ReplicationFactor = -1,
                        Assignments = [new() { PartitionIndex = 0, BrokerIds = [Leader, 3, Local] }],
                        Configs = [new() { Name = "min.insync.replicas", Value = "2" }],
                    },
                ],
            }, 7);
            Assert.Equal(0, created.Topics.Single().ErrorCode);
        }
        using (var admin = Clients.Admin(cluster.BootstrapServers))
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (DateTime.UtcNow < deadline)
            {
                var p = admin.GetMetadata(topic, TimeSpan.FromSeconds(10)).Topics.SingleOrDefault()?.Partitions.SingleOrDefault();
                if (p is { Leader: Leader, InSyncReplicas.Length: 3 }) break;
                await Task.Delay(200);
            }
            var state = admin.GetMetadata(topic, TimeSpan.FromSeconds(10)).Topics.Single().Partitions.Single();
            Assert.Equal((Leader, 3), (state.Leader, state.InSyncReplicas.Length));
        }

        // N values of 200 bytes each, acks=all: the r2 follower has them all once the produce is acknowledged.
        const int N = 3000;
        string Value(int i) => i.ToString("D8", CultureInfo.InvariantCulture) + new string('x', 192);
        var pc = Clients.ProducerConfig(cluster.BootstrapServers);
        pc.Acks = Acks.All;
        pc.EnableIdempotence = true;
        using (var producer = new ProducerBuilder<Null, string>(pc).Build())
        {
            for (int i = 0; i < N; i++) producer.Produce(topic, new Message<Null, string> { Value = Value(i) });
            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(60)));
        }
        long payload = (long)N * 200;

        string? stats = null;
        var cc = Clients.ConsumerConfig(cluster.BootstrapServers);
        cc.ClientRack = "r2";
        cc.StatisticsIntervalMs = 200;
        var received = new List<string>(N);
        using (var consumer = new ConsumerBuilder<Ignore, string>(cc).SetStatisticsHandler((_, json) => Volatile.Write(ref stats, json)).Build())
        {
            consumer.Assign(new TopicPartitionOffset(topic, 0, Offset.Beginning));
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (received.Count < N && DateTime.UtcNow < deadline)
            {
                var cr = consumer.Consume(TimeSpan.FromMilliseconds(200));
                if (cr is null || cr.IsPartitionEOF) continue;
                received.Add(cr.Message.Value);
            }
            // Statistics taken after the last record arrived.
            Volatile.Write(ref stats, null);
            for (var until = DateTime.UtcNow.AddSeconds(10); Volatile.Read(ref stats) is null && DateTime.UtcNow < until;) consumer.Consume(TimeSpan.FromMilliseconds(100));
        }
        Assert.Equal(N, received.Count);
        Assert.Equal(Enumerable.Range(0, N).Select(Value), received);

        Assert.NotNull(stats);
        using var doc = JsonDocument.Parse(stats);
        var partition = doc.RootElement.GetProperty("topics").GetProperty(topic).GetProperty("partitions").GetProperty("0");
        int fetchBroker = partition.GetProperty("broker").GetInt32();
        int leader = partition.GetProperty("leader").GetInt32();
        // Per node id, over the client's connections to it (the group coordinator's logical one left out).
        var rx = doc.RootElement.GetProperty("brokers").EnumerateObject()
            .Where(b => b.Value.GetProperty("nodeid").GetInt32() > 0 && b.Value.GetProperty("source").GetString() is not ("logical" or "internal"))
            .GroupBy(b => b.Value.GetProperty("nodeid").GetInt32())
            .ToDictionary(g => g.Key, g => g.Sum(b => b.Value.GetProperty("rxbytes").GetInt64()));
        output.WriteLine($"rack-aware selector: {rackAware}; fetching from {fetchBroker}, leader {leader}; bytes received per broker: "
            + string.Join(", ", rx.OrderBy(r => r.Key).Select(r => $"{r.Key}: {r.Value}")));
        Assert.Equal(Leader, leader);
        int expected = rackAware ? Local : Leader;
        int other = rackAware ? Leader : Local;
        Assert.Equal(expected, fetchBroker);
        // The records came from the broker named, not the other one (which sent metadata, or a redirect, at most).
        Assert.True(rx.GetValueOrDefault(expected) > payload, $"broker {expected} sent {rx.GetValueOrDefault(expected)} bytes, less than the {payload} bytes of values");
        Assert.True(rx.GetValueOrDefault(other) < payload / 4, $"broker {other} sent {rx.GetValueOrDefault(other)} bytes");
    }

    [Fact]
    public async Task AnUnknownReplicaSelectorClassStopsTheServerAtStartUp()
    {
        await using var broker = new BrokerProcess(new() { ["replica.selector.class"] = "com.example.NearestReplicaSelector" });
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => broker.StartAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("Invalid value com.example.NearestReplicaSelector for configuration replica.selector.class", e.Message, StringComparison.Ordinal);
        Assert.Contains(RackAware, e.Message, StringComparison.Ordinal);
    }
}
