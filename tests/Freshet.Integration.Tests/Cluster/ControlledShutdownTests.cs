using System.Diagnostics;
using Confluent.Kafka;
using Freshet.Integration.Tests.Support;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Cluster;

/// <summary>
/// SIGTERM to the node that leads the partition and the metadata quorum, mid-produce: it hands both
/// over before it exits (controlled shutdown), so the producer sees no failed request.
/// </summary>
public sealed class ControlledShutdownTests(ITestOutputHelper output)
{
    [Fact]
    public async Task ALeaderStoppedWithSigtermHandsOverFirstAndNoRequestFails()
    {
        await using var cluster = new ClusterProcesses(3);
        await cluster.StartAsync();
        const string topic = "graceful";
        int stopped = await cluster.ActiveControllerAsync(1);
        await cluster.CreateTopicAsync(topic, [[stopped, .. Enumerable.Range(1, 3).Where(n => n != stopped)]], new() { ["min.insync.replicas"] = "2" });
        using var admin = Clients.Admin(cluster.BootstrapServers);
        var state = PartitionStates.Of(admin, topic);
        for (var until = DateTime.UtcNow.AddSeconds(30); (state.Isr.Length < 3 || state.Leader < 0) && DateTime.UtcNow < until; state = PartitionStates.Of(admin, topic))
            await Task.Delay(200);
        Assert.Equal(stopped, state.Leader);

        const int Total = 60_000;
        var config = Clients.ProducerConfig(cluster.BootstrapServers);
        config.Acks = Acks.All;
        config.EnableIdempotence = true;
        config.MessageTimeoutMs = 60_000;
        config.LingerMs = 5;
        long lastAck = 0, longestGap = 0;
        var sequence = new SequenceProducer
        {
            OnAcknowledged = _ =>
            {
                // The longest pause between two acknowledgements: how long the hand-over held the producer up.
                long now = Stopwatch.GetTimestamp();
                if (lastAck != 0) longestGap = Math.Max(longestGap, now - lastAck);
                lastAck = now;
            },
        };
        var producing = sequence.RunAsync(config, topic, Total, 10_000);
        while (sequence.Acked.Count < Total / 4 && !producing.IsCompleted) await Task.Delay(20);
        var sw = Stopwatch.StartNew();
        await cluster.Nodes[stopped].StopAsync(TimeSpan.FromSeconds(60));
        output.WriteLine($"node {stopped} (partition leader and active controller) stopped in {sw.Elapsed.TotalSeconds:F1} s after {sequence.Acked.Count} acknowledgements");
        int newController = await cluster.ActiveControllerAsync(stopped == 1 ? 2 : 1);
        Assert.NotEqual(stopped, newController);
        await producing.WaitAsync(TimeSpan.FromSeconds(120));
        output.WriteLine($"longest pause between acknowledgements {Stopwatch.GetElapsedTime(0, longestGap).TotalMilliseconds:F0} ms; client-reported: {string.Join(" | ", sequence.ClientErrors.Take(5))}");

        Assert.Empty(sequence.Failures);
        Assert.Equal(Total, sequence.Acked.Count);
        var read = SequenceReader.Read(cluster.BootstrapWithout(stopped), topic, Total, TimeSpan.FromSeconds(60));
        Assert.Null(read.Reordering);
        Assert.Equal(Total, read.Distinct.Count);
        // Idempotent producer: retries across the hand-over wrote nothing twice.
        Assert.Equal(Total, read.Records);
    }
}
