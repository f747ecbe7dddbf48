using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Confluent.Kafka;
using Freshet.Integration.Tests.Compatibility;
using Freshet.Integration.Tests.Support;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Cluster;

/// <summary>
/// KIP-392 across three `freshet server` processes in racks r1, r2 and r3: a librdkafka consumer
/// with client.rack=r2 reads a partition led from r1 through the r2 broker when the brokers run
/// the rack-aware replica selector, and from the leader when they run none. Where it fetched from
/// is read from librdkafka's statistics: the partition's fetch broker, and the bytes each broker
/// sent it; kcat (another librdkafka) is checked through its fetch debug log.
/// </summary>
public sealed class RackAwareFetchTests(ITestOutputHelper output)
{
    private const string RackAware = "org.apache.kafka.common.replica.RackAwareReplicaSelector";

    private const string Topic = "racks";
    private const int Leader = 1, Local = 2;
    private const int N = 3000;

    private static string Value(int i) => i.ToString("D8", CultureInfo.InvariantCulture) + new string('x', 192);

    /// <summary>
    /// Three nodes in racks r1-r3 (with the rack-aware selector or none), an RF 3 topic led from r1
    /// (broker 1, followers 3 and 2), and <see cref="N"/> values of 200 bytes produced with acks=all:
    /// the r2 follower has them all once the produce is acknowledged.
    /// </summary>
    private static async Task<ClusterProcesses> StartWithRecordsAsync(bool rackAware)
    {
        var shared = rackAware ? new Dictionary<string, string> { ["replica.selector.class"] = RackAware } : null;
        var cluster = new ClusterProcesses(3, shared, n => new() { ["broker.rack"] = $"r{n}" });
        try
        {
            await cluster.StartAsync();
            await using (var raw = await RawKafkaClient.ConnectAsync(cluster.Nodes[1].BootstrapServers))
            {
                var created = await raw.RequestAsync<Freshet.Protocol.Messages.CreateTopicsResponse>(new Freshet.Protocol.Messages.CreateTopicsRequest
                {
                    Topics =
                    [
                        new()
                        {
                            Name = Topic, NumPartitions = -1, ReplicationFactor = -1,
                            Assignments = [new() { PartitionIndex = 0, BrokerIds = [Leader, 3, Local] }],
                            Configs = [new() { Name = "min.insync.replicas", Value = "2" }],
                        },
                    ],
                }, 7);
                Assert.Equal(0, created.Topics.Single().ErrorCode);
            }
            using (var admin = Clients.Admin(cluster.BootstrapServers))
            {
                // Leader and ISR size as some broker's metadata has them (the brokers learn of the topic one by one).
                (int Leader, int Isr) state = (-1, 0);
                for (var deadline = DateTime.UtcNow.AddSeconds(30); state != (Leader, 3) && DateTime.UtcNow < deadline; await Task.Delay(200))
                {
                    var p = admin.GetMetadata(Topic, TimeSpan.FromSeconds(10)).Topics.SingleOrDefault()?.Partitions.SingleOrDefault();
                    state = p is null || p.Error.IsError ? (-1, 0) : (p.Leader, p.InSyncReplicas.Length);
                }
                Assert.Equal((Leader, 3), state);
            }
            var pc = Clients.ProducerConfig(cluster.BootstrapServers);
            pc.Acks = Acks.All;
            pc.EnableIdempotence = true;
            using var producer = new ProducerBuilder<Null, string>(pc).Build();
            for (int i = 0; i < N; i++) producer.Produce(Topic, new Message<Null, string> { Value = Value(i) });
            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(60)));
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AConsumerInRackR2ReadsThroughTheR2BrokerOnlyWithTheRackAwareSelector(bool rackAware)
    {
        await using var cluster = await StartWithRecordsAsync(rackAware);
        long payload = (long)N * 200;

        string? stats = null;
        var cc = Clients.ConsumerConfig(cluster.BootstrapServers);
        cc.ClientRack = "r2";
        cc.StatisticsIntervalMs = 200;
        var received = new List<string>(N);
        using (var consumer = new ConsumerBuilder<Ignore, string>(cc).SetStatisticsHandler((_, json) => Volatile.Write(ref stats, json)).Build())
        {
            consumer.Assign(new TopicPartitionOffset(Topic, 0, Offset.Beginning));
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (received.Count < N && DateTime.UtcNow < deadline)
            {
                var cr = consumer.Consume(TimeSpan.FromMilliseconds(200));
                if (cr is null || cr.IsPartitionEOF) continue;
                received.Add(cr.Message.Value);
            }
            // Statistics taken after the last record arrived.
            Volatile.Write(ref stats, null);
            for (var until = DateTime.UtcNow.AddSeconds(30); Volatile.Read(ref stats) is null && DateTime.UtcNow < until;) consumer.Consume(TimeSpan.FromMilliseconds(100));
        }
        Assert.Equal(N, received.Count);
        Assert.Equal(Enumerable.Range(0, N).Select(Value), received);

        Assert.NotNull(stats);
        using var doc = JsonDocument.Parse(stats);
        var partition = doc.RootElement.GetProperty("topics").GetProperty(Topic).GetProperty("partitions").GetProperty("0");
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

    /// <summary>
    /// kcat (Debian's, on librdkafka 2.0.2) with client.rack=r2: every value in order, and its fetch debug
    /// log shows the move to broker 2 on the leader's word and every record arriving from broker 2.
    /// </summary>
    [Fact]
    public async Task KcatWithClientRackR2ReadsThroughTheR2Broker()
    {
        string kcat = await ClientTools.RequireKcatAsync(output.WriteLine);
        await using var cluster = await StartWithRecordsAsync(rackAware: true);
        var r = await ExternalProcess.RunAsync(kcat, ["-b", cluster.BootstrapServers, "-C", "-t", Topic, "-p", "0", "-o", "beginning", "-e", "-q",
            "-f", "%s\n", "-X", "client.rack=r2", "-X", "socket.connection.setup.timeout.ms=10000", "-d", "fetch"], ClientTools.ClientTimeout);
        output.WriteLine(r.Summary);
        Assert.True(r.ExitCode == 0, r.Describe());
        Assert.Equal(Enumerable.Range(0, N).Select(Value), r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Matches(new Regex($@"Topic {Topic} \[0\]: migrating from broker {Leader} to {Local} \(leader is {Leader}\): preferred replica updated"), r.StdErr);
        // "<host:port>/<node id>: Enqueue <n> message(s) ... on racks [0] fetch queue": records handed over per broker.
        var enqueued = Regex.Matches(r.StdErr, $@"/(\d+): Enqueue (\d+) message\(s\) .* on {Topic} \[0\]")
            .GroupBy(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture))
            .ToDictionary(g => g.Key, g => g.Sum(m => int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)));
        Assert.Equal(new Dictionary<int, int> { [Local] = N }, enqueued);
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
