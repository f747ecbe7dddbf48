using System.Globalization;
using System.Text;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using Xunit.Abstractions;
using ErrorCode = Freshet.Protocol.ErrorCode;

namespace Freshet.Integration.Tests.Cluster;

/// <summary>
/// Three `freshet server` processes behind cutting proxies: the partition leader is cut off from the
/// others mid-produce (it keeps running and still believes it leads), then healed.
/// </summary>
public sealed class NetworkPartitionTests(ITestOutputHelper output)
{
    /// <summary>Records straight to a node's own port (a client on the cut-off side), acks=all.</summary>
    private static async Task<ErrorCode> ProduceDirectAsync(string bootstrap, string topic, int count, int timeoutMs)
    {
        using var b = new RecordBatchBuilder();
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        for (int i = 0; i < count; i++) b.Append(now, null, Encoding.UTF8.GetBytes($"stale-{i}"));
        var request = new ProduceRequest { Acks = -1, TimeoutMs = timeoutMs };
        request.TopicData.Add(new() { Name = topic, PartitionData = [new() { Index = 0, Records = new RecordSet(b.Build()) }] });
        await using var raw = await RawKafkaClient.ConnectAsync(bootstrap);
        var r = await raw.RequestAsync<ProduceResponse>(request, 9);
        return (ErrorCode)r.Responses[0].PartitionResponses[0].ErrorCode;
    }

    [Fact]
    public async Task ACutOffLeaderIsReplacedRefusesAcksAllTruncatesItsDivergedTailAndRejoinsWhenHealed()
    {
        await using var cluster = new ClusterProcesses(3, new()
        {
            ["broker.session.timeout.ms"] = "4000",
            ["broker.heartbeat.interval.ms"] = "500",
            ["replica.lag.time.max.ms"] = "5000",
            ["auto.leader.rebalance.enable"] = "false",
        }, proxied: true);
        await cluster.StartAsync();
        const string topic = "cut";
        // The partition leader is not the active controller: the quorum keeps its leader, the data path is what is cut.
        int controller = await cluster.ActiveControllerAsync(1);
        int cut = Enumerable.Range(1, 3).First(n => n != controller);
        await cluster.CreateTopicAsync(topic, [[cut, .. Enumerable.Range(1, 3).Where(n => n != cut)]], new() { ["min.insync.replicas"] = "2" });
        using var admin = Clients.Admin(cluster.BootstrapServers);
        // Leader and ISR from one answer: each request may reach a broker that has not applied the topic yet.
        (int Leader, int[] Isr) ready = (-1, []);
        await Wait.UntilAsync(() => (ready = PartitionStates.Of(admin, topic)).Isr.Length == 3 && ready.Leader > 0, "the ISR is complete");
        Assert.Equal(cut, ready.Leader);

        const int Total = 60_000;
        var config = Clients.ProducerConfig(cluster.BootstrapServers);
        config.Acks = Acks.All;
        config.EnableIdempotence = false;
        config.MessageTimeoutMs = 120_000;
        config.LingerMs = 5;
        var sequence = new SequenceProducer();
        var acked = sequence.Acked;
        var producing = sequence.RunAsync(config, topic, Total, 5_000);

        try
        {
            await Wait.UntilAsync(() => acked.Count >= Total / 4 || producing.IsCompleted, "a quarter is acknowledged");
            cluster.Cut(cut);
            var cutAt = DateTime.UtcNow;
            output.WriteLine($"cut node {cut} off after {acked.Count} acknowledgements (active controller {controller})");

            // A client on the cut-off side: the old leader still takes the records into its log, but cannot
            // get them replicated, so acks=all is never acknowledged.
            var stale = await ProduceDirectAsync(cluster.Nodes[cut].BootstrapServers, topic, 20, timeoutMs: 3000);
            output.WriteLine($"acks=all on the cut-off leader: {stale}");
            Assert.Contains(stale, new[] { ErrorCode.RequestTimedOut, ErrorCode.NotEnoughReplicas, ErrorCode.NotEnoughReplicasAfterAppend, ErrorCode.NotLeaderOrFollower });

            await Wait.UntilAsync(() => PartitionStates.Of(admin, topic) is var s && s.Leader > 0 && s.Leader != cut, "another node leads");
            var moved = PartitionStates.Of(admin, topic);
            output.WriteLine($"leader {moved.Leader} (ISR {string.Join(",", moved.Isr)}) {(DateTime.UtcNow - cutAt).TotalSeconds:F1} s after the cut");
            Assert.DoesNotContain(cut, moved.Isr);
            // Still cut off, still refused.
            Assert.NotEqual(ErrorCode.None, await ProduceDirectAsync(cluster.Nodes[cut].BootstrapServers, topic, 5, timeoutMs: 2000));

            await Wait.UntilAsync(() => acked.Count >= Total * 2 / 3 || producing.IsCompleted, "two thirds are acknowledged", 120);
            cluster.Heal(cut);
            var healedAt = DateTime.UtcNow;
            await Wait.UntilAsync(() => PartitionStates.Of(admin, topic).Isr.Contains(cut), "the healed node is back in the ISR", 90);
            output.WriteLine($"node {cut} back in the ISR {(DateTime.UtcNow - healedAt).TotalSeconds:F1} s after healing");

            await producing.WaitAsync(TimeSpan.FromSeconds(200));
        }
        finally
        {
            foreach (var (id, node) in cluster.Nodes) output.WriteLine($"--- node {id}:\n{node.Output}");
        }
        output.WriteLine($"{acked.Count} acknowledged, {sequence.Failures.Count} failed");
        Assert.Empty(sequence.Failures);
        Assert.Equal(Total, acked.Count);

        // Leadership back to the healed node (preferred election), then read everything from it: every
        // acknowledged record, in order, and none of what it took while cut off (it truncated them).
        await Wait.UntilAsync(() => PartitionStates.Of(admin, topic).Isr.Length == 3, "the ISR is complete again");
        var elected = await admin.ElectLeadersAsync(ElectionType.Preferred, [new TopicPartition(topic, 0)]);
        output.WriteLine($"preferred election: {elected.TopicPartitions.Single().Error.Code}");
        await Wait.UntilAsync(() => PartitionStates.Of(admin, topic).Leader == cut, "the healed node leads again");

        var read = SequenceReader.Read(cluster.BootstrapServers, topic, Total, TimeSpan.FromSeconds(90));
        Assert.Equal(0, read.Foreign); // the "stale-N" records the cut-off leader took are gone
        Assert.Null(read.Reordering);
        Assert.Equal(Total, read.Distinct.Count);
    }
}
