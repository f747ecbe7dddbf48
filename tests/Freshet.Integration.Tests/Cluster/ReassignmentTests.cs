using System.Collections.Concurrent;
using System.Globalization;
using Confluent.Kafka;
using Freshet.Integration.Tests.Support;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Cluster;

/// <summary>
/// Growing a running cluster: a fourth node (broker only) joins three combined nodes, and
/// `freshet partitions reassign` and `elect-leaders` move replicas and leadership onto it while a
/// producer (acks=all, idempotent) and a consumer keep running.
/// </summary>
public sealed class ReassignmentTests(ITestOutputHelper output)
{
    private static (int[] Replicas, int[] Isr, int Leader) State(IAdminClient admin, string topic, int partition)
    {
        var p = admin.GetMetadata(topic, TimeSpan.FromSeconds(10)).Topics.Single().Partitions.SingleOrDefault(p => p.PartitionId == partition);
        return p is null || p.Error.IsError ? ([], [], -1) : (p.Replicas, p.InSyncReplicas, p.Leader);
    }

    [Fact]
    public async Task AFourthNodeTakesReplicasAndLeadershipWhileClientsProduceAndConsumeWithNothingLost()
    {
        await using var cluster = new ClusterProcesses(3, new() { ["auto.leader.rebalance.enable"] = "false" });
        await cluster.StartAsync();
        const string topic = "grow";
        await cluster.CreateTopicAsync(topic, [[1, 2, 3], [2, 3, 1]], new() { ["min.insync.replicas"] = "2" });
        using var admin = Clients.Admin(cluster.BootstrapServers);
        for (var until = DateTime.UtcNow.AddSeconds(30); State(admin, topic, 0).Isr.Length < 3 || State(admin, topic, 1).Isr.Length < 3; await Task.Delay(200))
            Assert.True(DateTime.UtcNow < until, "the replicas did not all join the ISR");

        // Sequence numbers in the values, paced so the produce spans the join, the move and the election.
        const int Total = 100_000;
        const double PerSecond = 2_500;
        var config = Clients.ProducerConfig(cluster.BootstrapServers);
        config.Acks = Acks.All;
        config.EnableIdempotence = true;
        config.MessageTimeoutMs = 120_000;
        config.LingerMs = 5;
        var sequence = new SequenceProducer();
        var acked = sequence.Acked;
        var produceErrors = sequence.Failures;
        var producing = sequence.RunAsync(config, topic, Total, PerSecond);
        var clientErrors = new ConcurrentQueue<string>();

        // The consumer reads both partitions from the start, concurrently, until told to stop.
        var seen = new ConcurrentDictionary<int, int>(); // sequence -> times read
        var orderViolations = new ConcurrentQueue<string>();
        var consumeErrors = new ConcurrentQueue<string>();
        using var stopConsuming = new CancellationTokenSource();
        var cc = Clients.ConsumerConfig(cluster.BootstrapServers);
        cc.EnablePartitionEof = false;
        var consuming = Task.Run(() =>
        {
            using var consumer = new ConsumerBuilder<Ignore, string>(cc)
                .SetErrorHandler((_, e) => { if (e.IsFatal) consumeErrors.Enqueue($"fatal: {e}"); else clientErrors.Enqueue($"consumer: {e}"); })
                .Build();
            consumer.Assign([new TopicPartitionOffset(topic, 0, Offset.Beginning), new TopicPartitionOffset(topic, 1, Offset.Beginning)]);
            var last = new Dictionary<int, int> { [0] = -1, [1] = -1 };
            while (!stopConsuming.IsCancellationRequested)
            {
                try
                {
                    var cr = consumer.Consume(TimeSpan.FromMilliseconds(200));
                    if (cr is null) continue;
                    int seq = int.Parse(cr.Message.Value, CultureInfo.InvariantCulture);
                    if (seen.AddOrUpdate(seq, 1, (_, n) => n + 1) == 1)
                    {
                        // One producer, idempotent: within a partition its records come in the order sent.
                        if (seq <= last[cr.Partition.Value]) orderViolations.Enqueue($"partition {cr.Partition.Value}: {seq} after {last[cr.Partition.Value]}");
                        last[cr.Partition.Value] = seq;
                    }
                }
                catch (ConsumeException e)
                {
                    consumeErrors.Enqueue(e.Error.ToString());
                }
            }
            consumer.Close();
        });

        while (acked.Count < Total / 10) await Task.Delay(50);
        var joinStarted = DateTime.UtcNow;
        await cluster.AddBrokerAsync(4);
        output.WriteLine($"node 4 ready after {(DateTime.UtcNow - joinStarted).TotalSeconds:F1} s, {acked.Count} acknowledged");

        // Partition 0 gets node 4 as its preferred replica in place of 3; partition 1 gets it in place of 1.
        string plan = Path.Combine(Path.GetTempPath(), $"freshet-grow-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(plan, """
            {"version":1,"partitions":[
              {"topic":"grow","partition":0,"replicas":[4,1,2],"log_dirs":["any","any","any"]},
              {"topic":"grow","partition":1,"replicas":[2,3,4],"log_dirs":["any","any","any"]}]}
            """);
        CliResult reassign, elect, verify;
        try
        {
            reassign = await FreshetCli.RunAsync(["partitions", "reassign", "--execute", "--reassignment-json-file", plan, "--wait",
                "--bootstrap-server", cluster.BootstrapServers], stdin: null, TimeSpan.FromSeconds(120));
            output.WriteLine($"reassign: {reassign}");
            elect = await FreshetCli.RunAsync("partitions", "elect-leaders", "--election-type", "preferred", "--topic", topic, "--bootstrap-server", cluster.BootstrapServers);
            output.WriteLine($"elect-leaders: {elect}");
            verify = await FreshetCli.RunAsync("partitions", "reassign", "--verify", "--reassignment-json-file", plan, "--bootstrap-server", cluster.BootstrapServers);
            output.WriteLine($"verify: {verify}");
        }
        catch (TimeoutException)
        {
            foreach (int p in new[] { 0, 1 })
            {
                var (replicas, isr, leader) = State(admin, topic, p);
                output.WriteLine($"partition {p}: replicas {string.Join(",", replicas)}, in sync {string.Join(",", isr)}, leader {leader}");
            }
            foreach (var (id, node) in cluster.Nodes) output.WriteLine($"--- node {id}:\n{node.Output}");
            throw;
        }
        finally
        {
            File.Delete(plan);
        }
        int ackedAtElection = acked.Count;
        output.WriteLine($"moved and elected {(DateTime.UtcNow - joinStarted).TotalSeconds:F1} s after node 4 started joining; {ackedAtElection} acknowledged");

        try
        {
            await producing.WaitAsync(TimeSpan.FromSeconds(240));
            for (var until = DateTime.UtcNow.AddSeconds(60); DateTime.UtcNow < until && acked.Keys.Any(s => !seen.ContainsKey(s)); await Task.Delay(200)) { }
        }
        finally
        {
            await stopConsuming.CancelAsync();
            await consuming.WaitAsync(TimeSpan.FromSeconds(30));
            foreach (var e in sequence.ClientErrors.Take(20)) output.WriteLine($"client-reported (retried by the client): producer: {e}");
            foreach (var e in clientErrors.Take(20)) output.WriteLine($"client-reported (retried by the client): {e}");
            foreach (var (id, node) in cluster.Nodes) output.WriteLine($"--- node {id}:\n{node.Output}");
        }

        Assert.Equal(0, reassign.ExitCode);
        Assert.Contains("Reassignment of 2 partitions completed in", reassign.Stdout, StringComparison.Ordinal);
        Assert.Equal(0, elect.ExitCode);
        Assert.Contains(elect.Stdout.Split('\n'), l => l.Trim().StartsWith("grow-0", StringComparison.Ordinal) && l.TrimEnd().EndsWith("elected", StringComparison.Ordinal));
        Assert.Equal(0, verify.ExitCode);
        // The moves happened while the producer was still sending.
        Assert.True(ackedAtElection < Total, $"the produce had finished ({ackedAtElection}) before the election");

        Assert.Empty(produceErrors);
        Assert.Empty(consumeErrors);
        Assert.Equal(Total, acked.Count);
        var lost = acked.Keys.Where(s => !seen.ContainsKey(s)).Order().Take(10).ToList();
        Assert.True(lost.Count == 0, $"acknowledged but never read: {string.Join(", ", lost)}");
        Assert.Empty(orderViolations);
        Assert.Equal(0, seen.Count(kv => kv.Value > 1)); // idempotence: no record twice

        var p0 = State(admin, topic, 0);
        var p1 = State(admin, topic, 1);
        Assert.Equal([4, 1, 2], p0.Replicas);
        Assert.Equal([2, 3, 4], p1.Replicas);
        Assert.Contains(4, p0.Isr);
        Assert.Contains(4, p1.Isr);
        Assert.Equal(4, p0.Leader);
    }
}
