using System.Text.Json;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Freshet.Integration.Tests.Support;

namespace Freshet.Integration.Tests.Cli;

/// <summary>`freshet topics ...` run as a real process against an embedded broker.</summary>
public sealed class TopicsCommandTests(CliBroker broker) : IClassFixture<CliBroker>
{
    private Task<CliResult> Topics(params string[] args) => FreshetCli.RunAsync(["topics", .. args, "--bootstrap-server", broker.Bootstrap]);

    private static string IdText(Uuid id)
    {
        var bytes = new byte[16];
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(bytes, id.MostSignificantBits);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(bytes.AsSpan(8), id.LeastSignificantBits);
        return Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }

    private async Task<TopicDescription> AdminDescribeAsync(string topic)
    {
        using var admin = Clients.Admin(broker.Bootstrap);
        var r = await admin.DescribeTopicsAsync(TopicCollection.OfTopicNames([topic]));
        return r.TopicDescriptions.Single();
    }

    private async Task<Dictionary<string, ConfigEntryResult>> AdminConfigsAsync(string topic)
    {
        using var admin = Clients.Admin(broker.Bootstrap);
        var r = await admin.DescribeConfigsAsync([new ConfigResource { Type = ResourceType.Topic, Name = topic }]);
        return r.Single().Entries;
    }

    [Fact]
    public async Task CreatePrintsATableAndTheTopicExistsWithItsPartitionsAndConfigs()
    {
        string topic = CliBroker.NewTopic("create");
        var r = await Topics("create", "--topic", topic, "--partitions", "3", "--config", "retention.ms=3600000", "--config", "cleanup.policy=compact");
        Assert.True(r.ExitCode == 0, r.ToString());

        var d = await AdminDescribeAsync(topic);
        Assert.Equal(3, d.Partitions.Count);
        var configs = await AdminConfigsAsync(topic);
        Assert.Equal("3600000", configs["retention.ms"].Value);
        Assert.Equal("compact", configs["cleanup.policy"].Value);

        // Header row and one row, columns aligned: the id and counts are the broker's.
        Assert.Equal(2, r.Lines.Length);
        Assert.StartsWith("TOPIC", r.Lines[0], StringComparison.Ordinal);
        var cells = r.Lines[1].Split("  ", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal([topic, "created", "3", "1", IdText(d.TopicId), "cleanup.policy=compact, retention.ms=3600000"], cells);
        Assert.Equal(r.Lines[0].IndexOf("STATUS", StringComparison.Ordinal), r.Lines[1].IndexOf("created", StringComparison.Ordinal));
    }

    [Fact]
    public async Task CreateWithJsonUsesBrokerDefaultsAndReportsTheTopicId()
    {
        string topic = CliBroker.NewTopic("create-json");
        var r = await Topics("create", "--topic", topic, "--format", "json");
        Assert.True(r.ExitCode == 0, r.ToString());
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        var d = await AdminDescribeAsync(topic);
        Assert.Equal(topic, root.GetProperty("name").GetString());
        Assert.Equal("created", root.GetProperty("status").GetString());
        Assert.Equal(1, root.GetProperty("partitionCount").GetInt32()); // num.partitions default
        Assert.Equal(1, root.GetProperty("replicationFactor").GetInt32());
        Assert.Equal(IdText(d.TopicId), root.GetProperty("topicId").GetString());
        Assert.Empty(root.GetProperty("configs").EnumerateObject());
    }

    [Fact]
    public async Task CreatingATopicTwiceFailsWithTopicAlreadyExistsUnlessIfNotExists()
    {
        string topic = CliBroker.NewTopic("twice");
        Assert.Equal(0, (await Topics("create", "--topic", topic, "--partitions", "2")).ExitCode);

        var again = await Topics("create", "--topic", topic);
        Assert.True(again.ExitCode == 1, again.ToString());
        Assert.Contains("TOPIC_ALREADY_EXISTS", again.Stderr, StringComparison.Ordinal);
        Assert.Contains(topic, again.Stderr, StringComparison.Ordinal);
        Assert.Equal("", again.Stdout);

        var tolerated = await Topics("create", "--topic", topic, "--partitions", "7", "--if-not-exists", "--format", "json");
        Assert.True(tolerated.ExitCode == 0, tolerated.ToString());
        using var doc = JsonDocument.Parse(tolerated.Stdout);
        Assert.Equal("exists", doc.RootElement.GetProperty("status").GetString());
        Assert.Equal(2, doc.RootElement.GetProperty("partitionCount").GetInt32()); // the existing topic, untouched
        Assert.Equal(2, (await AdminDescribeAsync(topic)).Partitions.Count);
    }

    [Fact]
    public async Task BrokerRejectionsPrintKafkaErrorNamesAndExitWith1()
    {
        var badConfig = await Topics("create", "--topic", CliBroker.NewTopic("badcfg"), "--config", "no.such.config=1");
        Assert.True(badConfig.ExitCode == 1, badConfig.ToString());
        Assert.Contains("INVALID_CONFIG", badConfig.Stderr, StringComparison.Ordinal);

        var badRf = await Topics("create", "--topic", CliBroker.NewTopic("badrf"), "--replication-factor", "3");
        Assert.True(badRf.ExitCode == 1, badRf.ToString());
        Assert.Contains("INVALID_REPLICATION_FACTOR", badRf.Stderr, StringComparison.Ordinal);

        var badName = await Topics("create", "--topic", "no spaces allowed");
        Assert.True(badName.ExitCode == 1, badName.ToString());
        Assert.Contains("INVALID_TOPIC_EXCEPTION", badName.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ListShowsTopicsAsTableAndJson()
    {
        string a = CliBroker.NewTopic("list-a"), b = CliBroker.NewTopic("list-b");
        await Clients.CreateTopicAsync(broker.Bootstrap, a, 2);
        await Clients.CreateTopicAsync(broker.Bootstrap, b, 4);

        var table = await Topics("list");
        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.Equal(["TOPIC", "PARTITIONS", "REPLICATION-FACTOR", "INTERNAL", "TOPIC-ID"],
            table.Lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        var rowA = table.Lines.Single(l => l.StartsWith(a + " ", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal([a, "2", "1", "no", IdText((await AdminDescribeAsync(a)).TopicId)], rowA);

        var json = await Topics("list", "--format", "json", "--exclude-internal");
        Assert.True(json.ExitCode == 0, json.ToString());
        using var doc = JsonDocument.Parse(json.Stdout);
        var topics = doc.RootElement.GetProperty("topics").EnumerateArray().ToDictionary(t => t.GetProperty("name").GetString()!);
        Assert.Equal(2, topics[a].GetProperty("partitionCount").GetInt32());
        Assert.Equal(4, topics[b].GetProperty("partitionCount").GetInt32());
        Assert.False(topics[b].GetProperty("internal").GetBoolean());
        var names = topics.Keys.ToList();
        Assert.Equal(names.Order(StringComparer.Ordinal), names);
    }

    [Fact]
    public async Task DescribeShowsPartitionsReplicasConfigsAndWatermarks()
    {
        string topic = CliBroker.NewTopic("describe");
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 2, new Dictionary<string, string> { ["retention.ms"] = "7200000" });
        using (var producer = new ProducerBuilder<Null, string>(Clients.ProducerConfig(broker.Bootstrap)).Build())
        {
            for (int i = 0; i < 5; i++) producer.Produce(new TopicPartition(topic, 1), new Message<Null, string> { Value = $"m{i}" });
            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(30)));
        }

        var json = await Topics("describe", "--topic", topic, "--format", "json");
        Assert.True(json.ExitCode == 0, json.ToString());
        using var doc = JsonDocument.Parse(json.Stdout);
        var t = doc.RootElement.GetProperty("topics").EnumerateArray().Single();
        Assert.Equal(topic, t.GetProperty("name").GetString());
        Assert.Equal(IdText((await AdminDescribeAsync(topic)).TopicId), t.GetProperty("topicId").GetString());
        Assert.Equal(2, t.GetProperty("partitionCount").GetInt32());
        Assert.Equal(1, t.GetProperty("replicationFactor").GetInt32());
        // Only what differs from the built-in defaults.
        Assert.Equal([("retention.ms", "7200000")], t.GetProperty("configs").EnumerateObject().Select(p => (p.Name, p.Value.GetString())).ToList());
        var parts = t.GetProperty("partitions").EnumerateArray().ToList();
        Assert.Equal([0, 1], parts.Select(p => p.GetProperty("partition").GetInt32()));
        foreach (var p in parts)
        {
            Assert.Equal(1, p.GetProperty("leader").GetInt32());
            Assert.Equal([1], p.GetProperty("replicas").EnumerateArray().Select(e => e.GetInt32()));
            Assert.Equal([1], p.GetProperty("isr").EnumerateArray().Select(e => e.GetInt32()));
            Assert.Equal(0, p.GetProperty("lowWatermark").GetInt64());
        }
        Assert.Equal(0, parts[0].GetProperty("highWatermark").GetInt64());
        Assert.Equal(5, parts[1].GetProperty("highWatermark").GetInt64());

        var table = await Topics("describe", "--topic", topic);
        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.StartsWith($"Topic: {topic}  TopicId: ", table.Lines[0], StringComparison.Ordinal);
        Assert.Contains("PartitionCount: 2  ReplicationFactor: 1", table.Lines[0], StringComparison.Ordinal);
        Assert.Equal("Configs: retention.ms=7200000", table.Lines[1]);
        Assert.Equal(["PARTITION", "LEADER", "REPLICAS", "ISR", "LOW-WATERMARK", "HIGH-WATERMARK"], table.Lines[2].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["1", "1", "1", "1", "0", "5"], table.Lines[4].Split(' ', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public async Task DescribingAMissingTopicFailsWithUnknownTopicOrPartition()
    {
        string missing = CliBroker.NewTopic("missing");
        var r = await Topics("describe", "--topic", missing);
        Assert.True(r.ExitCode == 1, r.ToString());
        Assert.Contains("UNKNOWN_TOPIC_OR_PARTITION", r.Stderr, StringComparison.Ordinal);
        Assert.Contains(missing, r.Stderr, StringComparison.Ordinal);
        // Describing must not have auto-created it.
        using var admin = Clients.Admin(broker.Bootstrap);
        Assert.DoesNotContain(admin.GetMetadata(TimeSpan.FromSeconds(10)).Topics, t => t.Topic == missing);
    }

    [Fact]
    public async Task AlterAddsPartitionsSetsAndDeletesConfigs()
    {
        string topic = CliBroker.NewTopic("alter");
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1, new Dictionary<string, string> { ["cleanup.policy"] = "compact" });

        var r = await Topics("alter", "--topic", topic, "--partitions", "4", "--config", "retention.ms=1000", "--delete-config", "cleanup.policy");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(4, (await AdminDescribeAsync(topic)).Partitions.Count);
        var configs = await AdminConfigsAsync(topic);
        Assert.Equal("1000", configs["retention.ms"].Value);
        Assert.Equal(ConfigSource.DynamicTopicConfig, configs["retention.ms"].Source);
        Assert.NotEqual(ConfigSource.DynamicTopicConfig, configs["cleanup.policy"].Source);
        Assert.Equal("delete", configs["cleanup.policy"].Value);

        var shrink = await Topics("alter", "--topic", topic, "--partitions", "2");
        Assert.True(shrink.ExitCode == 1, shrink.ToString());
        Assert.Contains("INVALID_PARTITIONS", shrink.Stderr, StringComparison.Ordinal);
        Assert.Equal(4, (await AdminDescribeAsync(topic)).Partitions.Count);

        var missing = await Topics("alter", "--topic", CliBroker.NewTopic("alter-missing"), "--config", "retention.ms=5");
        Assert.True(missing.ExitCode == 1, missing.ToString());
        Assert.Contains("UNKNOWN_TOPIC_OR_PARTITION", missing.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DeleteRemovesTheTopicAndAMissingOneIsAnErrorUnlessIfExists()
    {
        string topic = CliBroker.NewTopic("delete");
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);

        var r = await Topics("delete", "--topic", topic);
        Assert.True(r.ExitCode == 0, r.ToString());
        using (var admin = Clients.Admin(broker.Bootstrap))
            Assert.DoesNotContain(admin.GetMetadata(TimeSpan.FromSeconds(10)).Topics, t => t.Topic == topic);

        var again = await Topics("delete", "--topic", topic);
        Assert.True(again.ExitCode == 1, again.ToString());
        Assert.Contains("UNKNOWN_TOPIC_OR_PARTITION", again.Stderr, StringComparison.Ordinal);

        var tolerated = await Topics("delete", "--topic", topic, "--if-exists");
        Assert.True(tolerated.ExitCode == 0, tolerated.ToString());
    }

    [Theory]
    [InlineData("create")] // no --topic
    [InlineData("create", "--topic", "x", "--partitions", "many")]
    [InlineData("create", "--topic", "x", "--partitions", "0")]
    [InlineData("create", "--topic", "x", "--config", "novalue")]
    [InlineData("list", "--format", "xml")]
    [InlineData("list", "--no-such-option")]
    [InlineData("list", "stray")]
    [InlineData("alter", "--topic", "x")] // nothing to alter
    [InlineData("frobnicate")]
    public async Task UsageErrorsExitWith2AndSayWhy(params string[] args)
    {
        var r = await Topics(args);
        Assert.True(r.ExitCode == 2, r.ToString());
        Assert.StartsWith("freshet: ", r.Stderr, StringComparison.Ordinal);
        Assert.Contains("freshet topics --help", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HelpPrintsUsageAndExits0()
    {
        var r = await FreshetCli.RunAsync("topics", "create", "--help");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.StartsWith("usage: freshet topics create", r.Stdout, StringComparison.Ordinal);
        Assert.Contains("--bootstrap-server", r.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CommandConfigFileSuppliesClientProperties()
    {
        // The file names the broker; no --bootstrap-server on the command line.
        string file = Path.Combine(Path.GetTempPath(), $"freshet-cli-{Guid.NewGuid():N}.properties");
        await File.WriteAllTextAsync(file, $"# test\nbootstrap.servers={broker.Bootstrap}\nclient.id=from-file\n");
        try
        {
            string topic = CliBroker.NewTopic("cmdcfg");
            var r = await FreshetCli.RunAsync("topics", "create", "--topic", topic, "--command-config", file);
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Single((await AdminDescribeAsync(topic)).Partitions);
        }
        finally
        {
            File.Delete(file);
        }
    }
}
