using System.Globalization;
using System.Text;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Freshet.Integration.Tests.Support;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Cluster;

/// <summary>Three `freshet server` processes: replication factor 3, min.insync.replicas=2, the partition leader (alone, or also the active controller) SIGKILLed mid-produce.</summary>
public sealed class FailoverTests(ITestOutputHelper output)
{
    /// <param name="leaderIsActiveController">
    /// The partition's leader is also the active controller, so killing it loses both at once (the
    /// hardest case: the quorum elects a new leader before the dead broker can be fenced); otherwise
    /// the leader is another node and the controller stays up.
    /// </param>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task EveryAcknowledgedMessageSurvivesTheLeadersSigkillAndTheNodeRejoinsTheIsr(bool leaderIsActiveController)
    {
        await using var cluster = new ClusterProcesses(3);
        await cluster.StartAsync();
        const string topic = "failover";
        int controller = await cluster.ActiveControllerAsync(1);
        int chosen = leaderIsActiveController ? controller : Enumerable.Range(1, 3).First(n => n != controller);
        await cluster.CreateTopicAsync(topic, [[chosen, .. Enumerable.Range(1, 3).Where(n => n != chosen)]], new() { ["min.insync.replicas"] = "2" });
        using var adminClient = Clients.Admin(cluster.BootstrapServers);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        // Each metadata request may go to another broker, which may not have applied the topic yet: read leader and ISR together.
        var state = PartitionStates.Of(adminClient, topic);
        while ((state.Isr.Length < 3 || state.Leader < 0) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(200);
            state = PartitionStates.Of(adminClient, topic);
        }
        int leader = state.Leader;
        output.WriteLine($"leader before: {leader}; active controller {controller}");
        Assert.Equal(chosen, leader);

        // A sequence number in each value; acks=all; retries allowed (duplicates possible until idempotence, losses never).
        const int Total = 200_000;
        long killedAtTicks = long.MaxValue, firstAckAfterKillTicks = 0;
        var config = Clients.ProducerConfig(cluster.BootstrapServers);
        config.Acks = Acks.All;
        config.EnableIdempotence = false;
        config.MessageTimeoutMs = 120_000;
        config.LingerMs = 5;
        var sequence = new SequenceProducer
        {
            // Acks already on their way when the leader died arrive within a few ms; later ones come from the new leader.
            OnAcknowledged = _ =>
            {
                long now = System.Diagnostics.Stopwatch.GetTimestamp(), kill = Interlocked.Read(ref killedAtTicks);
                if (kill != long.MaxValue && now > kill + System.Diagnostics.Stopwatch.Frequency / 20)
                    Interlocked.CompareExchange(ref firstAckAfterKillTicks, now, 0);
            },
        };
        var acked = sequence.Acked;
        // About 25,000 messages a second, so the kill lands in the middle of the produce.
        var producing = sequence.RunAsync(config, topic, Total, 25_000);
        while (acked.Count < Total / 4) await Task.Delay(20);
        var killedAt = DateTime.UtcNow;
        long killTicks = System.Diagnostics.Stopwatch.GetTimestamp();
        await cluster.Nodes[leader].KillAsync();
        Interlocked.Exchange(ref killedAtTicks, killTicks);
        output.WriteLine($"killed node {leader} after {acked.Count} acknowledgements");
        int newController = -1;
        for (var until = DateTime.UtcNow.AddSeconds(30); DateTime.UtcNow < until; await Task.Delay(200))
        {
            try { newController = await cluster.ActiveControllerAsync(leader == 1 ? 2 : 1); } catch (IOException) { }
            if (newController > 0 && newController != leader) break;
        }
        output.WriteLine($"active controller after the kill: {newController}");
        Assert.NotEqual(leader, newController);
        if (!leaderIsActiveController) Assert.Equal(controller, newController);
        try
        {
            await producing.WaitAsync(TimeSpan.FromSeconds(240));
        }
        finally
        {
            foreach (var (id, node) in cluster.Nodes) output.WriteLine($"--- node {id}:\n{node.Output}");
        }
        output.WriteLine($"first acknowledgement from the new leader {System.Diagnostics.Stopwatch.GetElapsedTime(killTicks, Interlocked.Read(ref firstAckAfterKillTicks)).TotalSeconds:F1} s after the kill");
        output.WriteLine($"produce finished {(DateTime.UtcNow - killedAt).TotalSeconds:F1} s after the kill; {acked.Count} acknowledged, {sequence.Failures.Count} failed");
        Assert.Empty(sequence.Failures);
        Assert.Equal(Total, acked.Count);

        // Read from the survivors: every acknowledged sequence number, first occurrences in order
        // (a retry may repeat a batch until the producer is idempotent; a reordering never).
        var read = SequenceReader.Read(cluster.BootstrapWithout(leader), topic, Total, TimeSpan.FromSeconds(120));
        Assert.Null(read.Reordering);
        Assert.Equal(Total, read.Distinct.Count);

        // The killed node, started again, catches up and rejoins the ISR by itself.
        await cluster.Nodes[leader].StartAsync(TimeSpan.FromSeconds(90));
        deadline = DateTime.UtcNow.AddSeconds(60);
        while (!PartitionStates.Of(adminClient, topic).Isr.Contains(leader) && DateTime.UtcNow < deadline) await Task.Delay(250);
        Assert.Contains(leader, PartitionStates.Of(adminClient, topic).Isr);
    }
}
