using System.Collections.Concurrent;
using System.Globalization;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Cluster;

/// <summary>A consumer group of three keeps consuming, and committing, when its coordinator's node is SIGKILLed.</summary>
public sealed class CoordinatorFailoverTests(ITestOutputHelper output)
{
    [Fact]
    public async Task AGroupOfThreeSurvivesTheLossOfItsCoordinatorsNode()
    {
        await using var cluster = new ClusterProcesses(3);
        await cluster.StartAsync();
        const string topic = "coord-failover";
        const string group = "g-coord-failover";
        const int Total = 30_000;
        using (var admin = Clients.Admin(cluster.BootstrapServers))
        {
            await admin.CreateTopicsAsync([new TopicSpecification
            {
                Name = topic, NumPartitions = 6, ReplicationFactor = 3,
                Configs = new Dictionary<string, string> { ["min.insync.replicas"] = "2" },
            }]);
        }
        var pc = Clients.ProducerConfig(cluster.BootstrapServers);
        pc.Acks = Acks.All;
        using (var producer = new ProducerBuilder<Null, string>(pc).Build())
        {
            for (int i = 0; i < Total; i++)
                producer.Produce(new TopicPartition(topic, i % 6), new Message<Null, string> { Value = i.ToString(CultureInfo.InvariantCulture) });
            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(60)));
        }

        var seen = new ConcurrentDictionary<int, byte>();
        long commitsAfterKill = 0;
        int killed = -1;
        // The members hold still once a fifth of the topic is read until the coordinator's node is dead, so that the
        // rest (and its commits) comes after the kill however fast the first part went.
        int resumed = 0;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(150));
        var members = Enumerable.Range(0, 3).Select(m => Task.Run(() =>
        {
            var cc = Clients.ConsumerConfig(cluster.BootstrapServers);
            cc.GroupId = group;
            cc.AutoOffsetReset = AutoOffsetReset.Earliest;
            cc.EnableAutoCommit = false;
            cc.SessionTimeoutMs = 10_000;
            cc.MaxPollIntervalMs = 60_000;
            using var consumer = new ConsumerBuilder<Ignore, string>(cc).Build();
            consumer.Subscribe(topic);
            int sinceCommit = 0;
            while (!stop.IsCancellationRequested && seen.Count < Total)
            {
                if (Volatile.Read(ref resumed) == 0 && seen.Count >= Total / 5)
                {
                    Thread.Sleep(20);
                    continue;
                }
                var cr = consumer.Consume(TimeSpan.FromMilliseconds(200));
                if (cr is null || cr.IsPartitionEOF) continue;
                seen.TryAdd(int.Parse(cr.Message.Value, CultureInfo.InvariantCulture), 0);
                if (++sinceCommit >= 200)
                {
                    try
                    {
                        consumer.Commit(cr);
                        if (Volatile.Read(ref killed) >= 0) Interlocked.Increment(ref commitsAfterKill);
                        sinceCommit = 0;
                    }
                    catch (KafkaException e)
                    {
                        // The coordinator moving: retriable, the next commit carries the position.
                        output.WriteLine($"member {m}: commit failed: {e.Error.Code}");
                    }
                }
            }
            consumer.Close();
        })).ToList();

        // Kill the coordinator's node once the group is under way.
        while (seen.Count < Total / 5 && !stop.IsCancellationRequested) await Task.Delay(10);
        await using (var raw = await RawKafkaClient.ConnectAsync(cluster.Nodes[1].BootstrapServers))
        {
            var fc = await raw.RequestAsync<FindCoordinatorResponse>(new FindCoordinatorRequest { Key = group }, 3);
            Assert.Equal(0, fc.ErrorCode);
            Volatile.Write(ref killed, fc.NodeId);
        }
        output.WriteLine($"killing coordinator node {killed} after {seen.Count} messages");
        await cluster.Nodes[killed].KillAsync();
        Volatile.Write(ref resumed, 1);

        try
        {
            await Task.WhenAll(members).WaitAsync(TimeSpan.FromSeconds(170));
        }
        finally
        {
            foreach (var (id, node) in cluster.Nodes) output.WriteLine($"--- node {id}:\n{node.Output}");
        }
        output.WriteLine($"consumed {seen.Count} distinct messages; {commitsAfterKill} commits after the kill");
        Assert.Equal(Total, seen.Count);
        Assert.True(commitsAfterKill > 0, "no offset commit succeeded after the coordinator's node died");

        // The committed offsets are on the new coordinator: together they cover the topic.
        var check = Clients.ConsumerConfig(cluster.BootstrapWithout(killed));
        check.GroupId = group;
        using var probe = new ConsumerBuilder<Ignore, string>(check).Build();
        var committed = probe.Committed(Enumerable.Range(0, 6).Select(p => new TopicPartition(topic, p)), TimeSpan.FromSeconds(30));
        Assert.All(committed, c => Assert.True(c.Offset.Value > 0, $"partition {c.Partition.Value} has no committed offset"));
    }
}

/// <summary>`freshet cluster describe`: brokers and the metadata quorum, asked of a follower and forwarded to the leader.</summary>
public sealed class ClusterDescribeTests
{
    [Fact]
    public async Task ShowsTheBrokersAndTheQuorumLeaderWithEachVotersLag()
    {
        await using var cluster = new ClusterProcesses(3);
        await cluster.StartAsync();
        int leader = await cluster.ActiveControllerAsync(1);
        int follower = leader == 1 ? 2 : 1;
        System.Text.Json.JsonElement json;
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            // Every node is ready; the follower's image may still be a moment behind the last unfencing.
            var r = await FreshetCli.RunAsync("cluster", "describe", "--bootstrap-server", cluster.Nodes[follower].BootstrapServers, "--json");
            Assert.Equal(0, r.ExitCode);
            json = System.Text.Json.JsonDocument.Parse(r.Stdout).RootElement;
            if (json.GetProperty("brokers").EnumerateArray().Count(b => b.GetProperty("status").GetString() == "live") == 3 || DateTime.UtcNow > deadline) break;
            await Task.Delay(250);
        }
        Assert.Equal([1, 2, 3], json.GetProperty("brokers").EnumerateArray().Select(b => b.GetProperty("id").GetInt32()));
        Assert.All(json.GetProperty("brokers").EnumerateArray(), b => Assert.Equal("live", b.GetProperty("status").GetString()));
        var quorum = json.GetProperty("quorum");
        Assert.Equal(leader, quorum.GetProperty("leaderId").GetInt32());
        Assert.True(quorum.GetProperty("highWatermark").GetInt64() > 0);
        Assert.Equal([1, 2, 3], quorum.GetProperty("voters").EnumerateArray().Select(v => v.GetProperty("id").GetInt32()).Order());

        var table = await FreshetCli.RunAsync("cluster", "describe", "--bootstrap-server", cluster.Nodes[follower].BootstrapServers);
        Assert.Equal(0, table.ExitCode);
        Assert.Contains($"leader (active controller) {leader}", table.Stdout, StringComparison.Ordinal);

        var unreachable = await FreshetCli.RunAsync("cluster", "describe", "--bootstrap-server", $"127.0.0.1:{BrokerProcess.FreePort()}");
        Assert.Equal(1, unreachable.ExitCode);
        Assert.Contains("no broker reachable", unreachable.Stderr, StringComparison.Ordinal);
    }

    /// <summary>Status of each broker in `cluster describe --json`, asked of <paramref name="bootstrap"/>.</summary>
    private static async Task<Dictionary<int, (string Status, string? Host)>> BrokerStatusAsync(string bootstrap)
    {
        var r = await FreshetCli.RunAsync("cluster", "describe", "--bootstrap-server", bootstrap, "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        return System.Text.Json.JsonDocument.Parse(r.Stdout).RootElement.GetProperty("brokers").EnumerateArray().ToDictionary(
            b => b.GetProperty("id").GetInt32(),
            b => (b.GetProperty("status").GetString()!, b.GetProperty("host").ValueKind == System.Text.Json.JsonValueKind.Null ? null : b.GetProperty("host").GetString()));
    }

    [Fact]
    public async Task ASigkilledBrokerShowsAsFencedOnceItsSessionExpiresAndLiveAgainAfterARestart()
    {
        await using var cluster = new ClusterProcesses(3, new()
        {
            ["broker.session.timeout.ms"] = "3000",
            ["broker.heartbeat.interval.ms"] = "500",
        });
        await cluster.StartAsync();
        await cluster.CreateTopicAsync("fencing", [[1, 2, 3]]);
        int controller = await cluster.ActiveControllerAsync(1);
        int victim = controller == 3 ? 2 : 3;
        string survivors = cluster.BootstrapWithout(victim);
        Dictionary<int, (string Status, string? Host)> status;
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while ((status = await BrokerStatusAsync(survivors)).Values.Any(s => s.Status != "live") && DateTime.UtcNow < deadline) await Task.Delay(250);
        Assert.Equal(["live", "live", "live"], status.OrderBy(s => s.Key).Select(s => s.Value.Status));

        await cluster.Nodes[victim].KillAsync();
        deadline = DateTime.UtcNow.AddSeconds(60);
        while ((status = await BrokerStatusAsync(survivors))[victim].Status != "fenced" && DateTime.UtcNow < deadline) await Task.Delay(250);
        Assert.Equal("fenced", status[victim].Status);
        Assert.Null(status[victim].Host); // DescribeCluster does not give a fenced broker's address
        Assert.All(status.Where(s => s.Key != victim), s => Assert.Equal("live", s.Value.Status));
        // Fenced because its session expired, by the controller's own clock (its warning says so), not
        // at once by anything else: probe and session are both 3 s here, so no early probe applies.
        string expired = $"Fencing broker {victim}: no heartbeat for ";
        Assert.True(cluster.Nodes.Where(n => n.Key != victim).Any(n => n.Value.Output.Contains(expired, StringComparison.Ordinal)),
            $"no controller logged \"{expired}...\":\n" + string.Join("\n", cluster.Nodes.Select(n => $"--- node {n.Key}:\n{n.Value.Output}")));

        var table = await FreshetCli.RunAsync("cluster", "describe", "--bootstrap-server", survivors);
        Assert.Equal(0, table.ExitCode);
        var row = table.Lines.Single(l => l.StartsWith($"{victim} ", StringComparison.Ordinal) && !l.Contains("voter", StringComparison.Ordinal) && !l.Contains("leader", StringComparison.Ordinal));
        Assert.Equal([victim.ToString(System.Globalization.CultureInfo.InvariantCulture), "-", "-", "fenced"], row.Split(' ', StringSplitOptions.RemoveEmptyEntries));

        await cluster.Nodes[victim].StartAsync(TimeSpan.FromSeconds(90));
        deadline = DateTime.UtcNow.AddSeconds(30);
        while ((status = await BrokerStatusAsync(survivors))[victim].Status != "live" && DateTime.UtcNow < deadline) await Task.Delay(250);
        Assert.Equal("live", status[victim].Status);
    }
}
