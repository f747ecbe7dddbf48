using System.Globalization;
using Confluent.Kafka;
using Freshet.Integration.Tests.Support;
using Freshet.Metadata.Controller;
using ErrorCode = Freshet.Protocol.ErrorCode;
using TopicPartition = Freshet.Protocol.TopicPartition;
using Freshet.Server;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Cluster;

/// <summary>
/// Three nodes; one replica's log directory (a follower's, or the leader's) is a small tmpfs that fills up during an acks=all
/// produce. The replica drops out of the ISR, the cluster keeps accepting writes, and once space
/// is freed the replica catches up, rejoins, and holds the same bytes as the leader. Needs root
/// (to mount the tmpfs), which CI and the test script have.
/// </summary>
public sealed class ReplicaDiskFullTests(ITestOutputHelper output)
{
    /// <param name="full">The node whose disk fills: 3, a follower; or 1, the partition's leader (its leadership moves).</param>
    [Theory]
    [InlineData(3)]
    [InlineData(1)]
    public async Task AFullDiskOnOneReplicaTakesItOutOfTheIsrNotTheCluster(int full)
    {
        string root = Path.Combine(Path.GetTempPath(), "freshet-replica-full-" + Guid.NewGuid().ToString("N")[..8]);
        var ports = Enumerable.Range(1, 3).ToDictionary(n => n, _ => (Client: BrokerProcess.FreePort(), Controller: BrokerProcess.FreePort()));
        string voters = string.Join(",", ports.Select(p => $"{p.Key}@127.0.0.1:{p.Value.Controller}"));
        string clusterId = MetaProperties.NewClusterId();
        string LogDir(int n) => Path.Combine(root, $"node-{n}", "logs");
        foreach (int n in ports.Keys)
        {
            Directory.CreateDirectory(LogDir(n));
            Directory.CreateDirectory(Path.Combine(root, $"node-{n}", "meta"));
        }
        // One node's partition logs on 8 MB (its metadata log elsewhere, as a separate metadata.log.dir would be).
        DiskFullTests.Run("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", LogDir(full));
        Dictionary<string, string> Props(int n) => new()
        {
            ["node.id"] = n.ToString(CultureInfo.InvariantCulture),
            ["cluster.id"] = clusterId,
            ["log.dirs"] = LogDir(n),
            ["metadata.log.dir"] = Path.Combine(root, $"node-{n}", "meta"),
            ["listeners"] = $"PLAINTEXT://127.0.0.1:{ports[n].Client},CONTROLLER://127.0.0.1:{ports[n].Controller}",
            ["controller.listener.names"] = "CONTROLLER",
            ["controller.quorum.voters"] = voters,
            ["replica.lag.time.max.ms"] = "3000",
            ["replica.fetch.backoff.ms"] = "200",
            ["auto.leader.rebalance.enable"] = "false",
        };
        var servers = new Dictionary<int, FreshetServer>();
        try
        {
            var started = await Task.WhenAll(ports.Keys.Select(n => FreshetServer.StartEmbeddedAsync(Props(n))));
            foreach (var s in started) servers[s.Config.NodeId] = s;
            await Wait.UntilAsync(() => servers.Values.Any(s => s.Controller.IsActive), "a controller is active");
            QuorumController Active() => servers.Values.Select(s => s.Controller).First(c => c.IsActive);
            const string topic = "fills-one-replica";
            var created = Active().CreateTopics([new NewTopic(topic, -1, -1, new Dictionary<int, IReadOnlyList<int>> { [0] = [1, 2, 3] },
                new Dictionary<string, string?> { ["min.insync.replicas"] = "2" })], false);
            Assert.Equal(ErrorCode.None, created[0].Error);
            int[] Isr() => [.. Active().Image.Partition(topic, 0)!.Isr.Order()];
            await Wait.UntilAsync(() => Isr().Length == 3, "the ISR is complete");

            // Leave the node about 1.5 MB, then send 4 MB with acks=all.
            string ballast = Path.Combine(LogDir(full), "ballast");
            var free = new DriveInfo(LogDir(full)).AvailableFreeSpace;
            await File.WriteAllBytesAsync(ballast, new byte[free - 1_500_000]);
            const int Total = 4000;
            long errors = 0, acked = 0;
            var config = Clients.ProducerConfig(string.Join(",", ports.Values.Select(p => $"127.0.0.1:{p.Client}")));
            config.Acks = Acks.All;
            config.EnableIdempotence = true; // retries after KAFKA_STORAGE_ERROR write nothing twice
            config.MessageTimeoutMs = 60_000;
            var value = new byte[1000];
            using (var producer = new ProducerBuilder<Null, byte[]>(config).Build())
            {
                for (int i = 0; i < Total; i++)
                {
                    producer.Produce(topic, new Message<Null, byte[]> { Value = value }, r =>
                    {
                        if (r.Error.IsError) Interlocked.Increment(ref errors);
                        else Interlocked.Increment(ref acked);
                    });
                    if (i % 200 == 0) producer.Poll(TimeSpan.Zero);
                }
                producer.Flush(TimeSpan.FromSeconds(90));
            }
            output.WriteLine($"{acked} acknowledged, {errors} failed; ISR {string.Join(",", Isr())}");
            Assert.Equal(0, errors);
            Assert.Equal(Total, acked);

            // The replica is out of the ISR (and, if it led, the leadership moved); the broker is not out of
            // the cluster: still registered, unfenced, serving.
            await Wait.UntilAsync(() => !Isr().Contains(full), $"node {full} leaves the ISR");
            Assert.Equal([.. new[] { 1, 2, 3 }.Where(n => n != full)], Isr());
            int leader = Active().Image.Partition(topic, 0)!.Leader;
            Assert.NotEqual(full, leader);
            var leaderLog = servers[leader].Logs.GetLog(new TopicPartition(topic, 0))!;
            var fullLog = servers[full].Logs.GetLog(new TopicPartition(topic, 0))!;
            output.WriteLine($"leader {leader} log end {leaderLog.LogEndOffset}, node {full} log end {fullLog.LogEndOffset}");
            Assert.True(fullLog.LogEndOffset < leaderLog.LogEndOffset, $"node {full} stopped short of the leader");
            Assert.False(Active().Image.Brokers[full].Fenced);
            using (var admin = Clients.Admin($"127.0.0.1:{ports[full].Client}"))
                Assert.Equal([1, 2, 3], admin.GetMetadata(TimeSpan.FromSeconds(10)).Brokers.Select(b => b.BrokerId).Order());

            // Space again: the node catches up, rejoins, and holds exactly the leader's batches.
            File.Delete(ballast);
            await Wait.UntilAsync(() => Isr().Contains(full), $"node {full} rejoins the ISR");
            await Wait.UntilAsync(() => fullLog.LogEndOffset == leaderLog.LogEndOffset, $"node {full} reaches the leader's log end");
            Assert.Equal(Total, leaderLog.LogEndOffset);
            var leaderBatches = leaderLog.ReadBatches(0).ToList();
            var replicaBatches = fullLog.ReadBatches(0).ToList();
            Assert.Equal(leaderBatches.Count, replicaBatches.Count);
            for (int i = 0; i < leaderBatches.Count; i++) Assert.True(leaderBatches[i].AsSpan().SequenceEqual(replicaBatches[i]), $"batch {i} differs");
        }
        finally
        {
            foreach (var s in servers.Values) await s.DisposeAsync();
            DiskFullTests.Run("umount", "-l", LogDir(full));
            Directory.Delete(root, recursive: true);
        }
    }
}
