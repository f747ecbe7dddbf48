using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Cluster;

/// <summary>
/// A node whose metadata log cannot be written (its metadata.log.dir is a small tmpfs that fills up)
/// halts, as Kafka does: `freshet server` logs why and exits with code 1, and in a cluster the other
/// voters elect a new leader and keep serving. Needs root (to mount the tmpfs), which CI and the test
/// script have.
/// </summary>
public sealed class MetadataLogFailureTests(ITestOutputHelper output)
{
    /// <summary>Fills the file system under <paramref name="dir"/> to the last byte with a ballast file.</summary>
    internal static void Fill(string dir)
    {
        using var h = File.OpenHandle(Path.Combine(dir, "ballast"), FileMode.Create, FileAccess.Write);
        long pos = 0;
        foreach (int chunk in new[] { 1 << 20, 4096, 1 })
        {
            var bytes = new byte[chunk];
            try
            {
                while (true)
                {
                    RandomAccess.Write(h, bytes, pos);
                    pos += chunk;
                }
            }
            catch (IOException)
            {
                // Full at this granularity: go on with smaller writes.
            }
        }
    }

    /// <summary>Creates a topic by a bare CreateTopics (bounded in time); false when the node did not take it.</summary>
    private async Task<bool> TryCreateTopicAsync(string bootstrap, string topic)
    {
        try
        {
            await using var raw = await RawKafkaClient.ConnectAsync(bootstrap);
            var r = await raw.RequestAsync<CreateTopicsResponse>(new CreateTopicsRequest
            {
                Topics = [new() { Name = topic, NumPartitions = 1, ReplicationFactor = 1 }],
                TimeoutMs = 30_000,
            }, 7).WaitAsync(TimeSpan.FromSeconds(60));
            var t = r.Topics.Single();
            if (t.ErrorCode != 0) output.WriteLine($"create {topic}: error {t.ErrorCode} {t.ErrorMessage}");
            return t.ErrorCode == 0;
        }
#pragma warning disable CA1031 // the node going away mid-request is what the test waits for
        catch (Exception e)
#pragma warning restore CA1031
        {
            output.WriteLine($"create {topic}: {e.GetType().Name}: {e.Message}");
            return false;
        }
    }

    private static string MountTmpfs(string root, string name)
    {
        string dir = Path.Combine(root, name);
        Directory.CreateDirectory(dir);
        DiskFullTests.Run("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir);
        return dir;
    }

    [Fact]
    public async Task AServerWhoseMetadataLogFailsExitsNonZeroAndSaysWhy()
    {
        string root = Path.Combine(Path.GetTempPath(), "freshet-metafail-" + Guid.NewGuid().ToString("N")[..8]);
        string meta = MountTmpfs(root, "meta");
        try
        {
            await using var node = new BrokerProcess(new() { ["metadata.log.dir"] = meta });
            await node.StartAsync(TimeSpan.FromSeconds(60));
            Assert.True(await TryCreateTopicAsync(node.BootstrapServers, "before-the-disk-filled"), node.Output);

            Fill(meta);
            // Metadata writes until one needs a block the disk does not have (a few may fit in blocks already held).
            for (int i = 0; i < 200 && !node.HasExited; i++)
                if (!await TryCreateTopicAsync(node.BootstrapServers, $"t{i}")) break;
            int exitCode = await node.WaitForExitAsync(TimeSpan.FromSeconds(60));
            output.WriteLine(node.Output);
            Assert.Equal(1, exitCode);
            Assert.Contains("freshet server: node 1 halted: the metadata quorum on node 1 stopped", node.Output, StringComparison.Ordinal);
            Assert.Contains("No space left on device", node.Output, StringComparison.Ordinal);
            Assert.DoesNotContain("Unhandled exception", node.Output, StringComparison.Ordinal);
        }
        finally
        {
            DiskFullTests.Run("umount", "-l", meta);
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public async Task AnEmbeddedServerWhoseMetadataLogFailsStopsServingAndExposesWhy()
    {
        string root = Path.Combine(Path.GetTempPath(), "freshet-metafail-emb-" + Guid.NewGuid().ToString("N")[..8]);
        string meta = MountTmpfs(root, "meta");
        try
        {
            var server = await Freshet.Server.FreshetServer.StartEmbeddedAsync(new Dictionary<string, string>
            {
                ["log.dirs"] = Path.Combine(root, "logs"),
                ["metadata.log.dir"] = meta,
            });
            await using (server)
            {
                Fill(meta);
                Exception? refused = null;
                for (int i = 0; i < 200 && refused is null; i++)
                {
                    try
                    {
                        server.Controller.CreateTopics([new Freshet.Metadata.Controller.NewTopic($"t{i}", 1, 1, null, new Dictionary<string, string?>())], false);
                    }
                    catch (Freshet.Metadata.Controller.NotControllerException e)
                    {
                        refused = e;
                    }
                }
                Assert.NotNull(refused);
                var reason = await server.Fatal.WaitAsync(TimeSpan.FromSeconds(60));
                Assert.True(server.IsHalted);
                Assert.Contains("No space left on device", reason.Message, StringComparison.Ordinal);
                // It no longer serves: its listener is closed.
                var (host, port) = RawKafkaClient.Split(server.BootstrapServers);
                using var tcp = new System.Net.Sockets.TcpClient();
                await Assert.ThrowsAsync<System.Net.Sockets.SocketException>(() => tcp.ConnectAsync(host, port));
            }
        }
        finally
        {
            DiskFullTests.Run("umount", "-l", meta);
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public async Task WhenTheQuorumLeadersMetadataLogFailsItExitsAndTheOtherTwoKeepServing()
    {
        string root = Path.Combine(Path.GetTempPath(), "freshet-metafail3-" + Guid.NewGuid().ToString("N")[..8]);
        var meta = Enumerable.Range(1, 3).ToDictionary(n => n, n => MountTmpfs(root, $"meta-{n}"));
        try
        {
            await using var cluster = new ClusterProcesses(3, nodeOverrides: n => new() { ["metadata.log.dir"] = meta[n] });
            await cluster.StartAsync();
            int leader = await cluster.ActiveControllerAsync(1);
            int survivor = leader == 1 ? 2 : 1;
            output.WriteLine($"quorum leader: node {leader}");

            Fill(meta[leader]);
            // Metadata writes, sent to another node and forwarded to the leader, until the leader cannot write one.
            for (int i = 0; i < 200 && !cluster.Nodes[leader].HasExited; i++)
                if (!await TryCreateTopicAsync(cluster.Nodes[survivor].BootstrapServers, $"t{i}")) break;
            int exitCode = await cluster.Nodes[leader].WaitForExitAsync(TimeSpan.FromSeconds(60));
            output.WriteLine($"--- node {leader}:\n{cluster.Nodes[leader].Output}");
            Assert.Equal(1, exitCode);
            Assert.Contains($"freshet server: node {leader} halted: the metadata quorum on node {leader} stopped", cluster.Nodes[leader].Output, StringComparison.Ordinal);
            Assert.Contains("No space left on device", cluster.Nodes[leader].Output, StringComparison.Ordinal);

            // The other two elect a leader between them...
            var deadline = DateTime.UtcNow.AddSeconds(60);
            int newLeader;
            while ((newLeader = await cluster.ActiveControllerAsync(survivor)) is var l && (l < 0 || l == leader))
            {
                Assert.True(DateTime.UtcNow < deadline, "no new quorum leader within 60 s");
                await Task.Delay(200);
            }
            output.WriteLine($"new quorum leader: node {newLeader}");
            Assert.All(cluster.Nodes.Where(n => n.Key != leader), n => Assert.False(n.Value.HasExited, n.Value.Output));

            // ...and serve a client: a new topic on the two of them, records written with acks=all and read back.
            string bootstrap = cluster.BootstrapWithout(leader);
            const string topic = "after-the-failure";
            using (var admin = Clients.Admin(bootstrap))
            {
                // Once the halted node's session has run out and it is fenced: until then the controller may still
                // place a replica on it (as Kafka's would), and the topic could never reach min.insync.replicas=2.
                deadline = DateTime.UtcNow.AddSeconds(60);
                while (admin.GetMetadata(TimeSpan.FromSeconds(10)).Brokers.Any(b => b.BrokerId == leader))
                {
                    Assert.True(DateTime.UtcNow < deadline, $"node {leader} still listed as a live broker after 60 s");
                    await Task.Delay(200);
                }
                await admin.CreateTopicsAsync([new TopicSpecification
                {
                    Name = topic, NumPartitions = 1, ReplicationFactor = 2,
                    Configs = new Dictionary<string, string> { ["min.insync.replicas"] = "2" },
                }]);
            }
            var clientLog = new System.Collections.Concurrent.ConcurrentQueue<string>();
            using (var producer = new ProducerBuilder<Null, string>(Clients.ProducerConfig(bootstrap))
                       .SetLogHandler((_, m) => clientLog.Enqueue($"{m.Level} {m.Facility} {m.Message}"))
                       .Build())
            {
                for (int i = 0; i < 100; i++)
                    producer.Produce(topic, new Message<Null, string> { Value = $"v{i}" },
                        r => { if (r.Error.IsError) clientLog.Enqueue($"v{r.Message.Value}: {r.Error.Code} {r.Error.Reason}"); });
                int undelivered = producer.Flush(TimeSpan.FromSeconds(60));
                Assert.True(undelivered == 0, $"{undelivered} of 100 records not delivered within 60 s; the producer said:\n{string.Join('\n', clientLog)}\n"
                    + string.Join('\n', cluster.Nodes.Where(n => n.Key != leader).Select(n => $"--- node {n.Key}:\n{n.Value.Output}")));
            }
            var read = Clients.ReadAll(bootstrap, topic, 1, TimeSpan.FromSeconds(60))[0];
            Assert.Equal(Enumerable.Range(0, 100).Select(i => $"v{i}"), read.Select(r => System.Text.Encoding.UTF8.GetString(r.Message.Value)));
        }
        finally
        {
            foreach (var dir in meta.Values) DiskFullTests.Run("umount", "-l", dir);
            Directory.Delete(root, recursive: true);
        }
    }
}
