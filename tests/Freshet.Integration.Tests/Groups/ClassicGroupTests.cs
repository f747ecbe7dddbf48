using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Freshet.Integration.Tests.Support;
using Freshet.Server;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Groups;

/// <summary>
/// Consumer groups with the classic protocol and real members (`freshet consume --group` child
/// processes, librdkafka inside): partitions are split, moved when members come and go or crash,
/// and every message is consumed exactly once across the group when members stop only after
/// committing what they printed.
/// </summary>
public sealed class ClassicGroupTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int Partitions = 6;
    private FreshetServer _broker = null!;
    private readonly Microsoft.Extensions.Logging.ILoggerFactory _loggers = TestOutputLoggerProvider.Factory(output);

    /// <summary>Short sessions so a crashed member is noticed in seconds; no initial rebalance delay.</summary>
    internal static readonly Dictionary<string, string> BrokerProperties = new()
    {
        ["group.initial.rebalance.delay.ms"] = "0",
        ["group.min.session.timeout.ms"] = "1000",
        ["group.consumer.session.timeout.ms"] = "3000",
        ["group.consumer.heartbeat.interval.ms"] = "500",
    };

    internal static Dictionary<string, string> MemberProperties(string strategy) => new()
    {
        ["session.timeout.ms"] = "3000",
        ["heartbeat.interval.ms"] = "500",
        ["auto.commit.interval.ms"] = "100",
        ["partition.assignment.strategy"] = strategy,
        ["topic.metadata.refresh.interval.ms"] = "1000",
    };

    public async Task InitializeAsync() => _broker = await FreshetServer.StartEmbeddedAsync(BrokerProperties, _loggers);

    public async Task DisposeAsync()
    {
        await _broker.DisposeAsync();
        _loggers.Dispose();
    }

    [Theory]
    [InlineData("range")]
    [InlineData("roundrobin")]
    [InlineData("cooperative-sticky")]
    public async Task MembersSplitPartitionsAndACrashedMembersPartitionsMoveWithoutLossOrRedelivery(string strategy)
    {
        string topic = "split-" + strategy, group = "g-" + strategy;
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, Partitions);
        await GroupScenario.RunAsync(_broker.BootstrapServers, topic, group, MemberProperties(strategy), protocol: null, output);
    }

    [Fact]
    public async Task AStaticMemberRestartingWithinTheSessionTimeoutKeepsItsPartitionsWithoutARebalance()
    {
        const string topic = "static", group = "g-static";
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, Partitions);
        var props = MemberProperties("range");
        props["session.timeout.ms"] = "30000"; // time to restart (a new process, on a loaded machine)
        // An in-process member that counts the revocations it is asked for.
        int revoked = 0, assigned = 0;
        var config = Clients.ConsumerConfig(_broker.BootstrapServers);
        config.GroupId = group;
        config.GroupInstanceId = "static-b";
        config.SessionTimeoutMs = 10000;
        config.HeartbeatIntervalMs = 500;
        config.PartitionAssignmentStrategy = PartitionAssignmentStrategy.Range;
        config.EnablePartitionEof = false;
        using var b = new ConsumerBuilder<Ignore, string>(config)
            .SetPartitionsAssignedHandler((_, ps) => { Interlocked.Increment(ref assigned); })
            .SetPartitionsRevokedHandler((_, ps) => { Interlocked.Increment(ref revoked); })
            .Build();
        b.Subscribe(topic);
        using var stop = new CancellationTokenSource();
        var polling = Task.Run(() => { while (!stop.IsCancellationRequested) b.Consume(100); });
        await using var a = GroupMemberProcess.Start("a", _broker.BootstrapServers, group, topic, props, instanceId: "static-a");
        using var admin = Clients.Admin(_broker.BootstrapServers);
        var before = await GroupScenario.WaitForAssignmentAsync(admin, group, topic, members: 2, Partitions);
        int revokedBefore = Volatile.Read(ref revoked);
        string MemberIdOfA(ConsumerGroupDescription d) => d.Members.SingleOrDefault(m => m.GroupInstanceId == "static-a")?.ConsumerId ?? "";
        string killedId = MemberIdOfA((await admin.DescribeConsumerGroupsAsync([group])).ConsumerGroupDescriptions.Single());

        await a.KillAsync();
        await using var a2 = GroupMemberProcess.Start("a2", _broker.BootstrapServers, group, topic, props, instanceId: "static-a");
        // The restarted member has rejoined once instance static-a has a new member id (the event, instead of
        // a sleep); then the group settles as before.
        for (var sw = System.Diagnostics.Stopwatch.StartNew(); ; await Task.Delay(250))
        {
            string id = MemberIdOfA((await admin.DescribeConsumerGroupsAsync([group])).ConsumerGroupDescriptions.Single());
            if (id != "" && id != killedId) break;
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(60), "the restarted static member did not rejoin");
        }
        var after = await GroupScenario.WaitForAssignmentAsync(admin, group, topic, members: 2, Partitions);
        stop.Cancel();
        await polling;

        Assert.Equal(revokedBefore, Volatile.Read(ref revoked)); // b was never asked to give anything up
        Assert.Equal(before["static-b"], after["static-b"]);
        Assert.Equal(before["static-a"], after["static-a"]);
        b.Close();
    }

    [Fact]
    public async Task GroupsAndCommittedOffsetsSurviveARestartAndSigkill()
    {
        await using var broker = new BrokerProcess(BrokerProperties);
        await broker.StartAsync();
        const string topic = "durable-offsets", group = "g-durable";
        await Clients.CreateTopicAsync(broker.BootstrapServers, topic, 2);
        using (var p = new ProducerBuilder<Null, string>(Clients.ProducerConfig(broker.BootstrapServers)).Build())
        {
            for (int i = 0; i < 200; i++) p.Produce(new TopicPartition(topic, i % 2), new Message<Null, string> { Value = $"v{i}" });
            p.Flush(TimeSpan.FromSeconds(10));
        }
        var config = Clients.ConsumerConfig(broker.BootstrapServers);
        config.GroupId = group;
        config.EnablePartitionEof = false;
        using (var c = new ConsumerBuilder<Ignore, string>(config).Build())
        {
            c.Assign([new TopicPartitionOffset(topic, 0, 0), new TopicPartitionOffset(topic, 1, 0)]);
            // Commit 60 on partition 0 and 40 on partition 1, as a group with no members may (once the new
            // broker's coordinator has loaded).
            await Clients.CommitWhenCoordinatorReadyAsync(c, [new TopicPartitionOffset(topic, 0, 60), new TopicPartitionOffset(topic, 1, 40)]);
        }
        await broker.StopAsync();   // clean
        await broker.StartAsync();
        await AssertCommittedAsync(broker.BootstrapServers, group, topic, 60, 40);
        using (var c = new ConsumerBuilder<Ignore, string>(config).Build())
            c.Commit([new TopicPartitionOffset(topic, 0, 70), new TopicPartitionOffset(topic, 1, 45)]);
        await broker.KillAsync();   // SIGKILL
        await broker.StartAsync();
        await AssertCommittedAsync(broker.BootstrapServers, group, topic, 70, 45);

        // A member subscribing now starts exactly at the committed offsets.
        config.EnableAutoCommit = false;
        using var member = new ConsumerBuilder<Ignore, string>(config).Build();
        member.Subscribe(topic);
        var first = new Dictionary<int, long>();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (first.Count < 2 && DateTime.UtcNow < deadline)
        {
            var cr = member.Consume(200);
            if (cr is not null && !first.ContainsKey(cr.Partition.Value)) first[cr.Partition.Value] = cr.Offset.Value;
        }
        Assert.Equal(70, first[0]);
        Assert.Equal(45, first[1]);
        member.Close();
        using var admin = Clients.Admin(broker.BootstrapServers);
        var groups = await admin.ListConsumerGroupsAsync();
        Assert.Contains(groups.Valid, g => g.GroupId == group);
    }

    private static async Task AssertCommittedAsync(string bootstrap, string group, string topic, long p0, long p1)
    {
        using var admin = Clients.Admin(bootstrap);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                var r = await admin.ListConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitions(group, [new TopicPartition(topic, 0), new TopicPartition(topic, 1)])]);
                var offsets = r.Single().Partitions.ToDictionary(p => p.Partition.Value, p => p.Offset.Value);
                Assert.Equal(p0, offsets[0]);
                Assert.Equal(p1, offsets[1]);
                return;
            }
            catch (KafkaException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(200); // the coordinator is still loading after the restart
            }
        }
    }
}

/// <summary>The membership scenario shared by the classic and consumer protocol tests.</summary>
internal static class GroupScenario
{
    /// <summary>
    /// Two members, then three, then one killed with SIGKILL: after each change the assignment is
    /// disjoint and covers every partition, and each batch of messages is produced only once the
    /// group is settled and has committed what it printed, so every message must be consumed
    /// exactly once across all members (none skipped, none redelivered).
    /// </summary>
    public static async Task RunAsync(string bootstrap, string topic, string group, Dictionary<string, string> memberProperties, string? protocol, ITestOutputHelper output)
    {
        using var admin = Clients.Admin(bootstrap);
        int produced = 0;
        async Task ProduceAsync(int n)
        {
            using var p = new ProducerBuilder<Null, string>(Clients.ProducerConfig(bootstrap)).Build();
            for (int i = 0; i < n; i++, produced++)
                p.Produce(new TopicPartition(topic, produced % 6), new Message<Null, string> { Value = produced.ToString(System.Globalization.CultureInfo.InvariantCulture) });
            p.Flush(TimeSpan.FromSeconds(30));
        }
        var members = new List<GroupMemberProcess>();
        try
        {
            await ProduceAsync(600);
            members.Add(GroupMemberProcess.Start("m1", bootstrap, group, topic, memberProperties, protocol: protocol));
            members.Add(GroupMemberProcess.Start("m2", bootstrap, group, topic, memberProperties, protocol: protocol));
            await WaitForAssignmentAsync(admin, group, topic, 2, 6, protocol);
            await WaitForConsumedAndCommittedAsync(admin, group, topic, members, produced);

            members.Add(GroupMemberProcess.Start("m3", bootstrap, group, topic, memberProperties, protocol: protocol));
            await WaitForAssignmentAsync(admin, group, topic, 3, 6, protocol);
            await ProduceAsync(600);
            await WaitForConsumedAndCommittedAsync(admin, group, topic, members, produced);

            var victim = members[1];
            var sw = System.Diagnostics.Stopwatch.StartNew();
            await victim.KillAsync();
            await WaitForAssignmentAsync(admin, group, topic, 2, 6, protocol);
            output.WriteLine($"partitions of the killed member reassigned after {sw.ElapsedMilliseconds} ms");
            await ProduceAsync(600);
            await WaitForConsumedAndCommittedAsync(admin, group, topic, members.Where(m => m != victim).ToList(), produced, also: victim);

            var all = members.SelectMany(m => m.Records).ToList();
            var dups = all.GroupBy(r => (r.Partition, r.Offset)).Where(g => g.Count() > 1).Select(g => g.Key).Take(5).ToList();
            Assert.True(dups.Count == 0, $"redelivered: {string.Join(", ", dups)}");
            var values = all.Select(r => int.Parse(r.Value, System.Globalization.CultureInfo.InvariantCulture)).ToHashSet();
            Assert.Equal(produced, values.Count);
            Assert.Equal(Enumerable.Range(0, produced).ToHashSet(), values);
        }
        finally
        {
            foreach (var m in members) await m.DisposeAsync();
        }
    }

    /// <summary>
    /// Waits until the group has <paramref name="members"/> members whose assignments are disjoint
    /// and cover all partitions; returns each member's partitions by instance id or member id.
    /// </summary>
    public static async Task<Dictionary<string, string>> WaitForAssignmentAsync(IAdminClient admin, string group, string topic, int members, int partitions, string? protocol = null)
    {
        var deadline = DateTime.UtcNow.AddSeconds(45);
        string last = "";
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                var d = (await admin.DescribeConsumerGroupsAsync([group])).ConsumerGroupDescriptions.Single();
                var owned = d.Members.SelectMany(m => m.Assignment.TopicPartitions.Where(tp => tp.Topic == topic).Select(tp => tp.Partition.Value)).ToList();
                last = $"{d.State}: {string.Join("; ", d.Members.Select(m => $"{m.ClientId}/{m.GroupInstanceId}: {string.Join(",", m.Assignment.TopicPartitions.Select(tp => tp.Partition.Value))}"))}";
                bool settled = d.Members.Count == members && owned.Count == partitions && owned.Distinct().Count() == partitions
                    && (d.State == ConsumerGroupState.Stable);
                if (settled)
                    return d.Members.ToDictionary(m => m.GroupInstanceId ?? m.ConsumerId,
                        m => string.Join(",", m.Assignment.TopicPartitions.Select(tp => tp.Partition.Value).Order()));
            }
            catch (DescribeConsumerGroupsException)
            {
            }
            await Task.Delay(250);
        }
        throw new TimeoutException($"group {group} did not settle with {members} members covering {partitions} partitions; last seen {last}");
    }

    /// <summary>Waits until the members printed every message produced so far and the group committed the end of every partition.</summary>
    public static async Task WaitForConsumedAndCommittedAsync(IAdminClient admin, string group, string topic, IReadOnlyList<GroupMemberProcess> members, int produced, GroupMemberProcess? also = null)
    {
        var deadline = DateTime.UtcNow.AddSeconds(45);
        while (DateTime.UtcNow < deadline)
        {
            var values = members.Append(also).Where(m => m is not null).SelectMany(m => m!.Records).Select(r => r.Value).ToHashSet();
            if (values.Count >= produced)
            {
                var offsets = await admin.ListConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitions(group,
                    Enumerable.Range(0, 6).Select(p => new TopicPartition(topic, p)).ToList())]);
                long committed = offsets.Single().Partitions.Sum(p => Math.Max(0, p.Offset.Value));
                if (committed == produced) return;
            }
            await Task.Delay(200);
        }
        throw new TimeoutException($"group {group} did not consume and commit {produced} messages");
    }
}
