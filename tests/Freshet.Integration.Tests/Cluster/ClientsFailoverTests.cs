using System.Globalization;
using System.Text.Json;
using Freshet.Integration.Tests.Compatibility;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Cluster;

/// <summary>
/// The failover of <see cref="FailoverTests"/> with the other clients users run: a kafka-python
/// producer (acks=all) and a kafka-python consumer work through the partition leader's SIGKILL, a kcat
/// producer starts right after it, and kcat reads everything back from the two survivors.
/// </summary>
public sealed class ClientsFailoverTests(ITestOutputHelper output)
{
    private static string Script => Path.Combine(ClientTools.ClientsDir, "python", "kafka_python_client.py");

    [Fact]
    public async Task KafkaPythonProducesAndConsumesThroughTheLeadersSigkillAndKcatReadsItAllBack()
    {
        string python = await ClientTools.RequirePythonKafkaAsync(v => output.WriteLine($"kafka-python {v}"));
        string kcat = await ClientTools.RequireKcatAsync();
        await using var cluster = new ClusterProcesses(3, new() { ["broker.session.timeout.ms"] = "4000", ["broker.heartbeat.interval.ms"] = "500" });
        await cluster.StartAsync();
        const string topic = "py-failover";
        const int Total = 20_000;
        int controller = await cluster.ActiveControllerAsync(1);
        int leader = Enumerable.Range(1, 3).First(n => n != controller);
        const string kcatTopic = "kcat-failover";
        const int KcatTotal = 5_000;
        foreach (var t in new[] { topic, kcatTopic })
            await cluster.CreateTopicAsync(t, [[leader, .. Enumerable.Range(1, 3).Where(n => n != leader)]], new() { ["min.insync.replicas"] = "2" });
        using (var admin = Clients.Admin(cluster.BootstrapServers))
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            foreach (var t in new[] { topic, kcatTopic })
            {
                while (PartitionStates.Of(admin, t).Isr.Length != 3)
                {
                    Assert.True(DateTime.UtcNow < deadline, "the ISR did not fill");
                    await Task.Delay(200);
                }
            }
        }

        // 20,000 values at 2,000 a second: the kill lands a second or so in, with most still to come.
        Task<ProcessResult> Python(params string[] args) => ExternalProcess.RunAsync(python,
            [Script, .. args, "--bootstrap", cluster.BootstrapServers, "--topic", topic, "--messages", Total.ToString(CultureInfo.InvariantCulture)],
            TimeSpan.FromSeconds(240));
        var producing = Python("produce-seq", "--rate", "2000");
        var consuming = Python("consume-seq", "--timeout", "200");
        // The kill lands mid-produce: once a tenth of the values are committed (the event, rather than a
        // sleep that a slow start of the Python process could outlast or fall short of).
        using (var probe = new Confluent.Kafka.ConsumerBuilder<Confluent.Kafka.Ignore, Confluent.Kafka.Ignore>(Clients.ConsumerConfig(cluster.BootstrapServers)).Build())
        {
            var deadline = DateTime.UtcNow.AddSeconds(90);
            while (probe.QueryWatermarkOffsets(new Confluent.Kafka.TopicPartition(topic, 0), TimeSpan.FromSeconds(10)).High.Value < Total / 10)
            {
                Assert.False(producing.IsCompleted, "the producer ended before it had produced a tenth of its values");
                Assert.True(DateTime.UtcNow < deadline, "the producer did not get going within 90 s");
                await Task.Delay(100);
            }
        }
        Assert.False(producing.IsCompleted, "the producer finished before the kill");
        await cluster.Nodes[leader].KillAsync();
        output.WriteLine($"killed node {leader} (the partition leader; active controller {controller})");

        // kcat starts producing right after the kill, while the cluster still names the dead node as leader.
        var kcatProduced = await ExternalProcess.RunAsync(kcat,
            ["-P", "-b", cluster.BootstrapServers, "-t", kcatTopic, "-p", "0", "-X", "acks=all", "-X", "message.timeout.ms=60000"],
            TimeSpan.FromSeconds(120), standardInput: string.Concat(Enumerable.Range(0, KcatTotal).Select(i => $"{i}\n")));
        output.WriteLine($"kcat producer: {kcatProduced.Summary}\n{kcatProduced.StdErr}");
        kcatProduced.EnsureSuccess();
        // Connection errors to the dead node are reported on stderr and retried; a lost message would say "deliver".
        Assert.DoesNotContain("deliver", kcatProduced.StdErr, StringComparison.OrdinalIgnoreCase);

        var produced = ClientTools.LastJsonLine((await producing).EnsureSuccess());
        output.WriteLine($"kafka-python producer: {produced}");
        Assert.Equal(0, produced.GetProperty("failed").GetInt32());
        Assert.Equal(Total, produced.GetProperty("acked").GetInt32());
        var consumed = ClientTools.LastJsonLine((await consuming).EnsureSuccess());
        output.WriteLine($"kafka-python consumer: {consumed}");
        Assert.Equal(Total, consumed.GetProperty("distinct").GetInt32());
        Assert.Equal(JsonValueKind.Null, consumed.GetProperty("reordered").ValueKind);

        // kcat from the survivors: every value, first occurrences in order.
        var read = await ExternalProcess.RunAsync(kcat, ["-C", "-b", cluster.BootstrapWithout(leader), "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q", "-f", "%s\n"],
            TimeSpan.FromSeconds(60));
        read.EnsureSuccess();
        var seen = new HashSet<int>();
        int last = -1;
        foreach (var line in read.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            int v = int.Parse(line, CultureInfo.InvariantCulture);
            if (seen.Add(v))
            {
                Assert.True(v > last, $"{v} first seen after {last}");
                last = v;
            }
        }
        output.WriteLine($"kcat read {read.StdOut.Count(c => c == '\n')} records, {seen.Count} distinct");
        Assert.Equal(Total, seen.Count);

        // And what kcat produced across the failover: every value, from the survivors.
        var kcatRead = SequenceReader.Read(cluster.BootstrapWithout(leader), kcatTopic, KcatTotal, TimeSpan.FromSeconds(60));
        Assert.Null(kcatRead.Reordering);
        Assert.Equal(KcatTotal, kcatRead.Distinct.Count);
    }
}
