using System.Globalization;
using System.Text.Json;
using Confluent.Kafka;
using Freshet.Integration.Tests.Support;
using Freshet.Server;

namespace Freshet.Integration.Tests.Cli;

/// <summary>
/// An embedded broker for the groups CLI tests: a group's first rebalance does not wait
/// (group.initial.rebalance.delay.ms=0) and members may ask for short sessions.
/// </summary>
public sealed class GroupsCliBroker : IAsyncLifetime
{
    private FreshetServer? _server;

    public string Bootstrap => _server?.BootstrapServers ?? throw new InvalidOperationException("broker not started");

    public async Task InitializeAsync() => _server = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string>
    {
        ["group.initial.rebalance.delay.ms"] = "0",
        ["group.min.session.timeout.ms"] = "1000",
        ["offsets.topic.num.partitions"] = "5",
    });

    public async Task DisposeAsync()
    {
        if (_server is not null) await _server.DisposeAsync();
    }
}

/// <summary>
/// `freshet groups ...` run as a real process against an embedded broker, with Confluent.Kafka
/// consumers making the groups and the admin client (or a consumer's Committed()) checking what
/// the commands changed.
/// </summary>
public sealed class GroupsCommandTests(GroupsCliBroker broker) : IClassFixture<GroupsCliBroker>
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

    private Task<CliResult> Groups(params string[] args) => FreshetCli.RunAsync(["groups", .. args, "--bootstrap-server", broker.Bootstrap]);

    private static string NewGroup(string prefix) => CliBroker.NewTopic("grp-" + prefix);

    /// <summary>A topic with <paramref name="counts"/>[p] records in partition p; record i of a partition has timestamp <paramref name="baseTime"/> + i s.</summary>
    private async Task<string> TopicWithRecordsAsync(string prefix, int[] counts, long baseTime = -1)
    {
        string topic = CliBroker.NewTopic(prefix);
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, counts.Length);
        using var producer = new ProducerBuilder<byte[], byte[]>(Clients.ProducerConfig(broker.Bootstrap)).Build();
        for (int p = 0; p < counts.Length; p++)
        {
            for (int i = 0; i < counts[p]; i++)
            {
                var message = new Message<byte[], byte[]> { Value = System.Text.Encoding.UTF8.GetBytes($"p{p}-r{i}") };
                if (baseTime >= 0) message.Timestamp = new Timestamp(baseTime + i * 1000L, TimestampType.CreateTime);
                producer.Produce(new TopicPartition(topic, p), message);
            }
        }
        Assert.Equal(0, producer.Flush(Wait));
        return topic;
    }

    /// <summary>
    /// A group member that subscribed to <paramref name="topic"/> and read <paramref name="expected"/>
    /// records; it stays in the group (librdkafka heartbeats in the background) until disposed.
    /// </summary>
    private IConsumer<byte[], byte[]> MemberThatRead(string group, string topic, int expected, string clientId)
    {
        var config = Clients.ConsumerConfig(broker.Bootstrap);
        config.GroupId = group;
        config.ClientId = clientId;
        config.SessionTimeoutMs = 6000;
        config.HeartbeatIntervalMs = 500;
        config.EnablePartitionEof = false;
        config.EnableAutoOffsetStore = true; // Commit() commits what was read; nothing is committed automatically
        var consumer = new ConsumerBuilder<byte[], byte[]>(config).Build();
        consumer.Subscribe(topic);
        int read = 0;
        var deadline = DateTime.UtcNow + Wait;
        while (read < expected)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"group {group} read {read} of {expected} records of {topic}");
            if (consumer.Consume(TimeSpan.FromMilliseconds(200)) is not null) read++;
        }
        return consumer;
    }

    /// <summary>The group's committed offsets as OffsetFetch returns them (through the admin client); -1 for none.</summary>
    private async Task<long[]> CommittedAsync(string group, string topic, int partitions)
    {
        using var admin = Clients.Admin(broker.Bootstrap);
        var r = await admin.ListConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitions(group,
            [.. Enumerable.Range(0, partitions).Select(p => new TopicPartition(topic, p))])]);
        var byPartition = r.Single().Partitions.ToDictionary(p => p.Partition.Value, p => p.Offset.Value < 0 ? -1 : p.Offset.Value);
        return [.. Enumerable.Range(0, partitions).Select(p => byPartition[p])];
    }

    /// <summary>The same, read by a consumer of the group that does not join it (Committed() sends OffsetFetch).</summary>
    private long[] CommittedByConsumer(string group, string topic, int partitions)
    {
        var config = Clients.ConsumerConfig(broker.Bootstrap);
        config.GroupId = group;
        using var consumer = new ConsumerBuilder<byte[], byte[]>(config).Build();
        var offsets = consumer.Committed([.. Enumerable.Range(0, partitions).Select(p => new TopicPartition(topic, p))], Wait);
        consumer.Close();
        return [.. offsets.OrderBy(o => o.Partition.Value).Select(o => o.Offset.Value < 0 ? -1 : o.Offset.Value)];
    }

    private static void AssertOffsets(long[] expected, long[] actual) => Assert.Equal(expected, actual);

    private static JsonElement Json(CliResult r)
    {
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        return doc.RootElement.Clone();
    }

    private static string[] Cells(string line) => line.Split(' ', StringSplitOptions.RemoveEmptyEntries);

    private static long? NullableLong(JsonElement e) => e.ValueKind == JsonValueKind.Null ? null : e.GetInt64();

    [Fact]
    public async Task ListAndDescribeShowTheGroupItsMemberCommittedOffsetsAndLag()
    {
        string topic = await TopicWithRecordsAsync("describe", [10, 20, 30]);
        string group = NewGroup("describe");
        var (host, port) = RawKafkaClient.Split(broker.Bootstrap);
        string memberId;
        using (var consumer = MemberThatRead(group, topic, 60, "cli-describe"))
        {
            // Partition 0 committed to its end, partition 1 part way, partition 2 not at all.
            consumer.Commit([new TopicPartitionOffset(topic, 0, 10), new TopicPartitionOffset(topic, 1, 12)]);
            memberId = consumer.MemberId;

            var listed = Json(await Groups("list", "--format", "json")).GetProperty("groups").EnumerateArray()
                .Single(g => g.GetProperty("groupId").GetString() == group);
            Assert.Equal("Stable", listed.GetProperty("state").GetString());
            Assert.Equal("classic", listed.GetProperty("type").GetString());
            Assert.Equal("consumer", listed.GetProperty("protocolType").GetString());

            var table = await Groups("list", "--state", "stable", "--type", "classic");
            Assert.True(table.ExitCode == 0, table.ToString());
            Assert.Equal(["GROUP", "STATE", "TYPE", "PROTOCOL-TYPE"], Cells(table.Lines[0]));
            Assert.Contains([group, "Stable", "classic", "consumer"], table.Lines.Skip(1).Select(Cells));
            var empties = await Groups("list", "--state", "Empty");
            Assert.True(empties.ExitCode == 0, empties.ToString());
            Assert.DoesNotContain(empties.Lines, l => l.StartsWith(group + " ", StringComparison.Ordinal));

            var d = Assert.Single(Json(await Groups("describe", "--group", group, "--format", "json")).GetProperty("groups").EnumerateArray());
            Assert.Equal(group, d.GetProperty("groupId").GetString());
            Assert.Equal("Stable", d.GetProperty("state").GetString());
            Assert.Equal("classic", d.GetProperty("type").GetString());
            Assert.Equal("consumer", d.GetProperty("protocolType").GetString());
            Assert.Equal("range", d.GetProperty("assignor").GetString()); // librdkafka's first strategy, range,roundrobin
            Assert.Equal(1, d.GetProperty("coordinator").GetProperty("id").GetInt32());
            Assert.Equal(host, d.GetProperty("coordinator").GetProperty("host").GetString());
            Assert.Equal(port, d.GetProperty("coordinator").GetProperty("port").GetInt32());
            var member = Assert.Single(d.GetProperty("members").EnumerateArray());
            Assert.Equal(memberId, member.GetProperty("memberId").GetString());
            Assert.Equal("cli-describe", member.GetProperty("clientId").GetString());
            Assert.Equal("/127.0.0.1", member.GetProperty("host").GetString());
            Assert.Equal(JsonValueKind.Null, member.GetProperty("instanceId").ValueKind);
            Assert.Equal([0, 1, 2], member.GetProperty("assignment").EnumerateArray().Select(a =>
            {
                Assert.Equal(topic, a.GetProperty("topic").GetString());
                return a.GetProperty("partition").GetInt32();
            }));
            var rows = d.GetProperty("offsets").EnumerateArray().ToList();
            Assert.Equal([0, 1, 2], rows.Select(r => r.GetProperty("partition").GetInt32()));
            Assert.Equal([10L, 12L, null], rows.Select(r => NullableLong(r.GetProperty("committedOffset"))));
            Assert.Equal([10L, 20L, 30L], rows.Select(r => NullableLong(r.GetProperty("logEndOffset"))));
            Assert.Equal([0L, 8L, null], rows.Select(r => NullableLong(r.GetProperty("lag"))));
            Assert.All(rows, r => Assert.Equal(memberId, r.GetProperty("memberId").GetString()));

            // The table: a header line, the members, then the offsets with the same numbers.
            var text = await Groups("describe", "--group", group);
            Assert.True(text.ExitCode == 0, text.ToString());
            Assert.StartsWith($"Group: {group}  State: Stable  Type: classic  ProtocolType: consumer  Assignor: range  Coordinator: 1 ({host}:{port})  Members: 1",
                text.Lines[0], StringComparison.Ordinal);
            Assert.Contains([memberId, "-", "cli-describe", "/127.0.0.1", "3", $"{topic}:0,1,2"], text.Lines.Select(Cells));
            Assert.Contains([topic, "1", "12", "20", "8", memberId, "cli-describe", "/127.0.0.1"], text.Lines.Select(Cells));
            Assert.Contains([topic, "2", "-", "30", "-", memberId, "cli-describe", "/127.0.0.1"], text.Lines.Select(Cells));

            var membersOnly = await Groups("describe", "--group", group, "--members");
            Assert.Contains("Members:", membersOnly.Lines);
            Assert.DoesNotContain("Offsets:", membersOnly.Lines);
            var offsetsOnly = await Groups("describe", "--group", group, "--offsets", "--format", "json");
            var o = Assert.Single(Json(offsetsOnly).GetProperty("groups").EnumerateArray());
            Assert.False(o.TryGetProperty("members", out _));
            Assert.Equal(3, o.GetProperty("offsets").GetArrayLength());

            consumer.Close();
        }

        // Left the group: Empty, no owners, the same offsets and lag.
        var after = Assert.Single(Json(await Groups("describe", "--group", group, "--format", "json")).GetProperty("groups").EnumerateArray());
        Assert.Equal("Empty", after.GetProperty("state").GetString());
        Assert.Equal(0, after.GetProperty("members").GetArrayLength());
        var afterRows = after.GetProperty("offsets").EnumerateArray().ToList();
        Assert.Equal([0, 1], afterRows.Select(r => r.GetProperty("partition").GetInt32())); // nothing committed for 2, nobody owns it
        Assert.Equal([0L, 8L], afterRows.Select(r => NullableLong(r.GetProperty("lag"))));
        Assert.All(afterRows, r => Assert.Equal(JsonValueKind.Null, r.GetProperty("memberId").ValueKind));
    }

    [Fact]
    public async Task ResetOffsetsOfAnInactiveGroupChangesWhatOffsetFetchReturns()
    {
        long baseTime = (DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 3_600_000) / 1000 * 1000;
        string topic = await TopicWithRecordsAsync("reset", [10, 10, 10], baseTime);
        string group = NewGroup("reset");
        using (var consumer = MemberThatRead(group, topic, 30, "cli-reset"))
        {
            consumer.Commit();
            consumer.Close();
        }
        AssertOffsets([10, 10, 10], await CommittedAsync(group, topic, 3));

        // Without --execute: the plan is printed, nothing changes.
        var dry = await Groups("reset-offsets", "--group", group, "--topic", topic, "--to-earliest");
        Assert.True(dry.ExitCode == 0, dry.ToString());
        Assert.Equal(["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET", "STATUS"], Cells(dry.Lines[0]));
        Assert.Equal([[topic, "0", "10", "0", "planned"], [topic, "1", "10", "0", "planned"], [topic, "2", "10", "0", "planned"]],
            dry.Lines.Skip(1).Select(Cells));
        Assert.Contains("dry run", dry.Stderr, StringComparison.Ordinal);
        AssertOffsets([10, 10, 10], await CommittedAsync(group, topic, 3));

        var earliest = await Groups("reset-offsets", "--group", group, "--topic", topic, "--to-earliest", "--execute");
        Assert.True(earliest.ExitCode == 0, earliest.ToString());
        Assert.All(earliest.Lines.Skip(1), l => Assert.EndsWith("reset", l, StringComparison.Ordinal));
        AssertOffsets([0, 0, 0], CommittedByConsumer(group, topic, 3));

        var latest = Json(await Groups("reset-offsets", "--group", group, "--topic", topic, "--to-latest", "--execute", "--format", "json"));
        Assert.True(latest.GetProperty("executed").GetBoolean());
        Assert.All(latest.GetProperty("partitions").EnumerateArray(), p =>
        {
            Assert.Equal(0, p.GetProperty("currentOffset").GetInt64());
            Assert.Equal(10, p.GetProperty("newOffset").GetInt64());
            Assert.Equal("reset", p.GetProperty("status").GetString());
        });
        AssertOffsets([10, 10, 10], await CommittedAsync(group, topic, 3));

        // By time: record i of each partition has timestamp baseTime + i s.
        var byTimestamp = await Groups("reset-offsets", "--group", group, "--topic", topic + ":0", "--to-timestamp",
            (baseTime + 5000).ToString(CultureInfo.InvariantCulture), "--execute");
        Assert.True(byTimestamp.ExitCode == 0, byTimestamp.ToString());
        string iso = DateTimeOffset.FromUnixTimeMilliseconds(baseTime + 2500).ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);
        var byDate = await Groups("reset-offsets", "--group", group, "--topic", topic + ":1", "--to-datetime", iso, "--execute");
        Assert.True(byDate.ExitCode == 0, byDate.ToString());
        var toOffset = await Groups("reset-offsets", "--group", group, "--topic", topic + ":2", "--to-offset", "7", "--execute");
        Assert.True(toOffset.ExitCode == 0, toOffset.ToString());
        AssertOffsets([5, 3, 7], CommittedByConsumer(group, topic, 3));

        var shifted = await Groups("reset-offsets", "--group", group, "--all-topics", "--shift-by", "-4", "--execute");
        Assert.True(shifted.ExitCode == 0, shifted.ToString());
        AssertOffsets([1, 0, 3], await CommittedAsync(group, topic, 3)); // 3 - 4 stops at the log start

        var beyond = await Groups("reset-offsets", "--group", group, "--topic", topic + ":0", "--to-offset", "99", "--execute");
        Assert.True(beyond.ExitCode == 0, beyond.ToString());
        Assert.Contains("99 is outside the log (0..10)", beyond.Stderr, StringComparison.Ordinal);
        AssertOffsets([10, 0, 3], await CommittedAsync(group, topic, 3));
    }

    [Fact]
    public async Task ResetOffsetsOfAnActiveGroupIsRefusedAndChangesNothing()
    {
        string topic = await TopicWithRecordsAsync("reset-active", [5, 5]);
        string group = NewGroup("reset-active");
        using var consumer = MemberThatRead(group, topic, 10, "cli-active");
        consumer.Commit();

        foreach (var mode in new[] { "--execute", "--dry-run" })
        {
            var r = await Groups("reset-offsets", "--group", group, "--topic", topic, "--to-earliest", mode);
            Assert.True(r.ExitCode == 1, r.ToString());
            Assert.Contains($"group '{group}' is active: it has 1 member(s) (state Stable)", r.Stderr, StringComparison.Ordinal);
            Assert.Equal("", r.Stdout);
        }
        AssertOffsets([5, 5], await CommittedAsync(group, topic, 2));
        consumer.Close();
    }

    [Fact]
    public async Task DeleteOffsetsAndDeleteRefuseAnActiveGroupThenWork()
    {
        string topic = await TopicWithRecordsAsync("delete", [4, 4, 4]);
        string group = NewGroup("delete");
        using (var consumer = MemberThatRead(group, topic, 12, "cli-delete"))
        {
            consumer.Commit();

            var subscribed = await Groups("delete-offsets", "--group", group, "--topic", topic);
            Assert.True(subscribed.ExitCode == 1, subscribed.ToString());
            Assert.Equal([[topic, "0", "GROUP_SUBSCRIBED_TO_TOPIC"], [topic, "1", "GROUP_SUBSCRIBED_TO_TOPIC"], [topic, "2", "GROUP_SUBSCRIBED_TO_TOPIC"]],
                subscribed.Lines.Skip(1).Select(Cells));
            Assert.Contains("GROUP_SUBSCRIBED_TO_TOPIC", subscribed.Stderr, StringComparison.Ordinal);

            var nonEmpty = await Groups("delete", "--group", group);
            Assert.True(nonEmpty.ExitCode == 1, nonEmpty.ToString());
            Assert.Contains($"group '{group}': NON_EMPTY_GROUP", nonEmpty.Stderr, StringComparison.Ordinal);
            AssertOffsets([4, 4, 4], await CommittedAsync(group, topic, 3));
            consumer.Close();
        }

        var one = await Groups("delete-offsets", "--group", group, "--topic", topic, "--partition", "1", "--format", "json");
        var partition = Assert.Single(Json(one).GetProperty("partitions").EnumerateArray());
        Assert.Equal(1, partition.GetProperty("partition").GetInt32());
        Assert.Equal("deleted", partition.GetProperty("status").GetString());
        AssertOffsets([4, -1, 4], await CommittedAsync(group, topic, 3));

        var deleted = await Groups("delete", "--group", group);
        Assert.True(deleted.ExitCode == 0, deleted.ToString());
        Assert.Equal([$"Deleted group '{group}'."], deleted.Lines);
        AssertOffsets([-1, -1, -1], await CommittedAsync(group, topic, 3));
        var listed = Json(await Groups("list", "--format", "json")).GetProperty("groups").EnumerateArray();
        Assert.DoesNotContain(group, listed.Select(g => g.GetProperty("groupId").GetString()));

        var again = await Groups("delete", "--group", group);
        Assert.True(again.ExitCode == 1, again.ToString());
        Assert.Contains($"group '{group}': GROUP_ID_NOT_FOUND", again.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task MissingGroupsAndTopicsAreReportedWithKafkaErrorNames()
    {
        string topic = await TopicWithRecordsAsync("missing", [1]);
        string group = NewGroup("missing");

        foreach (var args in new[]
        {
            new[] { "describe", "--group", group },
            ["describe", "--group", group, "--format", "json"],
            ["delete", "--group", group],
            ["delete-offsets", "--group", group, "--topic", topic],
        })
        {
            var r = await Groups(args);
            Assert.True(r.ExitCode == 1, r.ToString());
            Assert.Contains($"group '{group}': GROUP_ID_NOT_FOUND", r.Stderr, StringComparison.Ordinal);
            Assert.Equal("", r.Stdout);
        }

        // A topic that does not exist is not created by asking about it.
        string absent = CliBroker.NewTopic("absent");
        var noTopic = await Groups("reset-offsets", "--group", group, "--topic", absent, "--to-earliest");
        Assert.True(noTopic.ExitCode == 1, noTopic.ToString());
        Assert.Contains($"topic '{absent}': UNKNOWN_TOPIC_OR_PARTITION", noTopic.Stderr, StringComparison.Ordinal);
        using (var admin = Clients.Admin(broker.Bootstrap))
            Assert.DoesNotContain(absent, admin.GetMetadata(TimeSpan.FromSeconds(10)).Topics.Select(t => t.Topic));

        // A group that does not exist yet may be given offsets before its consumers start.
        var seeded = await Groups("reset-offsets", "--group", group, "--topic", topic, "--to-latest", "--execute");
        Assert.True(seeded.ExitCode == 0, seeded.ToString());
        AssertOffsets([1], await CommittedAsync(group, topic, 1));

        // Mistakes in the arguments: exit code 2 with the usage pointer.
        foreach (var args in new[]
        {
            new[] { "reset-offsets", "--group", group, "--topic", topic },
            ["reset-offsets", "--group", group, "--topic", topic, "--to-earliest", "--to-latest"],
            ["reset-offsets", "--group", group, "--to-earliest"],
            ["list", "--state", "Sleeping"],
            ["describe"],
        })
        {
            var r = await Groups(args);
            Assert.True(r.ExitCode == 2, r.ToString());
            Assert.Contains("freshet groups --help", r.Stderr, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task ConsumerProtocolGroupsAreListedDescribedResetAndDeleted()
    {
        string topic = await TopicWithRecordsAsync("kip848", [3, 3, 3]);
        string group = NewGroup("kip848");
        var config = Clients.ConsumerConfig(broker.Bootstrap);
        config.GroupId = group;
        config.ClientId = "cli-kip848";
        config.GroupProtocol = GroupProtocol.Consumer;
        config.EnablePartitionEof = false;
        config.EnableAutoOffsetStore = true;
        using (var consumer = new ConsumerBuilder<byte[], byte[]>(config).Build())
        {
            consumer.Subscribe(topic);
            int read = 0;
            var deadline = DateTime.UtcNow + Wait;
            while (read < 9)
            {
                Assert.True(DateTime.UtcNow < deadline, $"read {read} of 9");
                if (consumer.Consume(TimeSpan.FromMilliseconds(200)) is not null) read++;
            }
            consumer.Commit();

            var listed = Json(await Groups("list", "--type", "consumer", "--format", "json")).GetProperty("groups").EnumerateArray()
                .Single(g => g.GetProperty("groupId").GetString() == group);
            Assert.Equal("consumer", listed.GetProperty("type").GetString());
            Assert.Equal("Stable", listed.GetProperty("state").GetString());

            var described = Json(await Groups("describe", "--group", group, "--format", "json")).GetProperty("groups")[0];
            Assert.Equal("consumer", described.GetProperty("type").GetString());
            Assert.Equal("uniform", described.GetProperty("assignor").GetString());
            var member = Assert.Single(described.GetProperty("members").EnumerateArray());
            Assert.Equal("cli-kip848", member.GetProperty("clientId").GetString());
            Assert.Equal([0, 1, 2], member.GetProperty("assignment").EnumerateArray().Select(a => a.GetProperty("partition").GetInt32()).Order());
            Assert.Equal([3L, 3L, 3L], described.GetProperty("offsets").EnumerateArray().OrderBy(o => o.GetProperty("partition").GetInt32())
                .Select(o => o.GetProperty("committedOffset").GetInt64()));

            var active = await Groups("reset-offsets", "--group", group, "--topic", topic, "--to-earliest", "--execute");
            Assert.True(active.ExitCode == 1, active.ToString());
            consumer.Close();
        }

        var reset = await Groups("reset-offsets", "--group", group, "--topic", topic, "--to-offset", "1", "--execute");
        Assert.True(reset.ExitCode == 0, reset.ToString());
        AssertOffsets([1, 1, 1], await CommittedAsync(group, topic, 3));
        var deleted = await Groups("delete", "--group", group);
        Assert.True(deleted.ExitCode == 0, deleted.ToString());
        AssertOffsets([-1, -1, -1], await CommittedAsync(group, topic, 3));
    }

    [Fact]
    public async Task AnUnreachableClusterIsAReadableFailureForEverySubcommand()
    {
        int port;
        using (var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        }
        foreach (var args in new[]
        {
            new[] { "list" },
            ["describe", "--group", "g"],
            ["delete", "--group", "g"],
            ["delete-offsets", "--group", "g", "--topic", "t"],
            ["reset-offsets", "--group", "g", "--topic", "t", "--to-earliest", "--execute"],
        })
        {
            var r = await FreshetCli.RunAsync(["groups", .. args, "--bootstrap-server", $"127.0.0.1:{port}", "--timeout-ms", "2000"]);
            Assert.True(r.ExitCode == 1, r.ToString()); // not a crash (139/134) nor a hang
            Assert.Contains("is --bootstrap-server right", r.Stderr, StringComparison.Ordinal);
        }
    }
}
