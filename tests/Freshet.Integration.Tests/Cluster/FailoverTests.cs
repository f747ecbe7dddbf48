using System.Globalization;
using System.Text;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Freshet.Integration.Tests.Support;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Cluster;

/// <summary>Three `freshet server` processes: replication factor 3, min.insync.replicas=2, the partition leader SIGKILLed mid-produce.</summary>
public sealed class FailoverTests(ITestOutputHelper output)
{
    private static int LeaderOf(IAdminClient admin, string topic) =>
        admin.GetMetadata(topic, TimeSpan.FromSeconds(10)).Topics.Single().Partitions.Single().Leader;

    private static (int Leader, int[] Isr) PartitionState(IAdminClient admin, string topic)
    {
        var p = admin.GetMetadata(topic, TimeSpan.FromSeconds(10)).Topics.Single().Partitions.Single();
        return (p.Leader, p.InSyncReplicas);
    }

    [Fact]
    public async Task EveryAcknowledgedMessageSurvivesTheLeadersSigkillAndTheNodeRejoinsTheIsr()
    {
        await using var cluster = new ClusterProcesses(3);
        await cluster.StartAsync();
        const string topic = "failover";
        using (var admin = Clients.Admin(cluster.BootstrapServers))
        {
            await admin.CreateTopicsAsync([new TopicSpecification
            {
                Name = topic, NumPartitions = 1, ReplicationFactor = 3,
                Configs = new Dictionary<string, string> { ["min.insync.replicas"] = "2" },
            }]);
        }
        using var adminClient = Clients.Admin(cluster.BootstrapServers);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (PartitionState(adminClient, topic).Isr.Length < 3 && DateTime.UtcNow < deadline) await Task.Delay(200);
        int leader = LeaderOf(adminClient, topic);
        output.WriteLine($"leader before: {leader}");

        // A sequence number in each value; acks=all; retries allowed (duplicates possible until idempotence, losses never).
        const int Total = 200_000;
        var acked = new System.Collections.Concurrent.ConcurrentDictionary<int, byte>();
        long errors = 0;
        var config = Clients.ProducerConfig(cluster.BootstrapServers);
        config.Acks = Acks.All;
        config.EnableIdempotence = false;
        config.MessageTimeoutMs = 120_000;
        config.LingerMs = 5;
        var producing = Task.Run(() =>
        {
            using var producer = new ProducerBuilder<Null, string>(config).Build();
            for (int i = 0; i < Total; i++)
            {
                int seq = i;
                while (true)
                {
                    try
                    {
                        producer.Produce(topic, new Message<Null, string> { Value = seq.ToString(CultureInfo.InvariantCulture) }, r =>
                        {
                            if (r.Error.IsError) Interlocked.Increment(ref errors);
                            else acked.TryAdd(seq, 0);
                        });
                        break;
                    }
                    catch (ProduceException<Null, string> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
                    {
                        producer.Poll(TimeSpan.FromMilliseconds(10));
                    }
                }
            }
            producer.Flush(TimeSpan.FromSeconds(150));
        });
        while (acked.Count < Total / 4) await Task.Delay(20);
        var killedAt = DateTime.UtcNow;
        await cluster.Nodes[leader].KillAsync();
        output.WriteLine($"killed node {leader} after {acked.Count} acknowledgements");
        await producing.WaitAsync(TimeSpan.FromSeconds(240));
        output.WriteLine($"produce finished {(DateTime.UtcNow - killedAt).TotalSeconds:F1} s after the kill; {acked.Count} acknowledged, {errors} failed");
        Assert.Equal(0, Interlocked.Read(ref errors));
        Assert.Equal(Total, acked.Count);

        // Read from the survivors: every acknowledged sequence number, first occurrences in order.
        var seen = new HashSet<int>();
        int last = -1;
        var cc = Clients.ConsumerConfig(cluster.BootstrapWithout(leader));
        cc.GroupId = "failover-check";
        cc.AutoOffsetReset = AutoOffsetReset.Earliest;
        cc.EnableAutoCommit = false;
        using (var consumer = new ConsumerBuilder<Ignore, string>(cc).Build())
        {
            consumer.Assign(new TopicPartitionOffset(topic, 0, Offset.Beginning));
            var readDeadline = DateTime.UtcNow.AddSeconds(120);
            while (seen.Count < Total && DateTime.UtcNow < readDeadline)
            {
                var cr = consumer.Consume(TimeSpan.FromSeconds(1));
                if (cr is null || cr.IsPartitionEOF) continue;
                int seq = int.Parse(cr.Message.Value, CultureInfo.InvariantCulture);
                if (seen.Add(seq))
                {
                    // A retry may repeat a batch; a first occurrence out of order would be a reordering.
                    Assert.True(seq > last, $"message {seq} first seen after {last}");
                    last = seq;
                }
            }
        }
        Assert.Equal(Total, seen.Count);

        // The killed node, started again, catches up and rejoins the ISR by itself.
        await cluster.Nodes[leader].StartAsync(TimeSpan.FromSeconds(90));
        deadline = DateTime.UtcNow.AddSeconds(60);
        while (!PartitionState(adminClient, topic).Isr.Contains(leader) && DateTime.UtcNow < deadline) await Task.Delay(250);
        Assert.Contains(leader, PartitionState(adminClient, topic).Isr);
    }
}
