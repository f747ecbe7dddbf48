using System.Globalization;
using System.Text;
using System.Text.Json;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Records;
using Freshet.Server;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Compatibility;

/// <summary>
/// kafkajs (pinned in tests/clients/package.json) through tests/clients/node/kafkajs_client.js:
/// admin (create with a config, create again, list, metadata, describe configs, fetchTopicOffsets,
/// describeGroups, fetchOffsets, listGroups), a producer of keyed messages with headers (plain, gzip,
/// idempotent), and consumers, which in kafkajs always belong to a consumer group (classic protocol:
/// JoinGroup/SyncGroup/Heartbeat, offsets committed by its auto-commit or commitOffsets).
/// <para>Not covered: Snappy, LZ4 and ZSTD, for which kafkajs needs separate codec packages.</para>
/// </summary>
public sealed class KafkaJsTests(ITestOutputHelper output)
{
    private const int Partitions = 3;
    private const int Messages = 300;
    private const int More = 30;

    [Theory]
    [InlineData("none", false)]
    [InlineData("gzip", false)]
    [InlineData("gzip", true)]
    public async Task AdminProducerAndGroupConsumerRoundTrip(string codec, bool idempotent)
    {
        string node = await ClientTools.RequireNodeKafkaJsAsync(output.WriteLine);
        using var loggers = TestOutputLoggerProvider.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(GroupProperties, loggers);
        string topic = $"kafkajs-{codec}{(idempotent ? "-idempotent" : "")}";
        string group = topic + "-g";

        var args = new List<string>
        {
            Path.Combine(ClientTools.ClientsDir, "node", "kafkajs_client.js"), "--bootstrap", broker.BootstrapServers, "--topic", topic,
            "--partitions", Partitions.ToString(CultureInfo.InvariantCulture), "--messages", Messages.ToString(CultureInfo.InvariantCulture), "--codec", codec,
            "--group", group, "--more", More.ToString(CultureInfo.InvariantCulture),
        };
        if (idempotent) args.Add("--idempotent");
        if (ClientTools.Debug) args.Add("--debug");
        var result = await ExternalProcess.RunAsync(node, args, ClientTools.ClientTimeout, workingDirectory: ClientTools.ClientsDir);
        output.WriteLine(result.Describe());
        var r = ClientTools.LastJsonLine(result);

        // Admin.
        Assert.True(r.GetProperty("created").GetBoolean(), "createTopics should report the topic created");
        Assert.False(r.GetProperty("createdAgain").GetBoolean(), "createTopics of an existing topic resolves to false (TOPIC_ALREADY_EXISTS)");
        Assert.Contains(topic, r.GetProperty("listed").EnumerateArray().Select(e => e.GetString()));
        var md = Assert.Single(r.GetProperty("metadata").EnumerateArray());
        Assert.Equal(topic, md.GetProperty("name").GetString());
        var parts = md.GetProperty("partitions").EnumerateArray().ToList();
        Assert.Equal([0, 1, 2], parts.Select(p => p.GetProperty("partition").GetInt32()));
        Assert.All(parts, p =>
        {
            Assert.Equal(0, p.GetProperty("errorCode").GetInt32());
            Assert.Equal(1, p.GetProperty("leader").GetInt32());
            Assert.Equal([1], p.GetProperty("replicas").EnumerateArray().Select(x => x.GetInt32()));
            Assert.Equal([1], p.GetProperty("isr").EnumerateArray().Select(x => x.GetInt32()));
        });
        var config = Assert.Single(r.GetProperty("configs").EnumerateArray());
        Assert.Equal(0, config.GetProperty("errorCode").GetInt32());
        Assert.Equal("3600000", config.GetProperty("entries").GetProperty("retention.ms").GetString());

        // Producer: one request; every partition it touched starts at offset 0 in the new topic.
        var sent = r.GetProperty("sent").EnumerateArray().ToList();
        Assert.NotEmpty(sent);
        Assert.All(sent, s =>
        {
            Assert.Equal(0, s.GetProperty("errorCode").GetInt32());
            Assert.Equal(0, s.GetProperty("baseOffset").GetInt64());
        });
        var high = r.GetProperty("offsets").EnumerateArray()
            .ToDictionary(o => o.GetProperty("partition").GetInt32(), o => (Low: o.GetProperty("low").GetInt64(), High: o.GetProperty("high").GetInt64()));
        Assert.Equal([0, 1, 2], high.Keys.Order());
        Assert.All(high.Values, o => Assert.Equal(0, o.Low));
        Assert.Equal(Messages, high.Values.Sum(o => o.High));
        Assert.Equal(sent.Select(s => s.GetProperty("partition").GetInt32()).Order(), high.Where(h => h.Value.High > 0).Select(h => h.Key).Order());

        // What kafkajs wrote, read back by a kafkajs consumer of the group (subscribed fromBeginning).
        var consumed = r.GetProperty("consumed");
        string memberId = consumed.GetProperty("memberId").GetString()!;
        var read = consumed.GetProperty("received").EnumerateArray().GroupBy(m => m.GetProperty("partition").GetInt32())
            .ToDictionary(g => g.Key, g => g.ToList());
        var seen = new HashSet<int>();
        var partitionOfKey = new Dictionary<string, int>();
        foreach (var (partition, list) in read)
        {
            Assert.Equal(high[partition].High, list.Count);
            int lastSeq = -1;
            for (int i = 0; i < list.Count; i++)
            {
                var m = list[i];
                Assert.Equal(i, m.GetProperty("offset").GetInt64());
                var headers = m.GetProperty("headers");
                int seq = int.Parse(headers.GetProperty("seq").GetString()!, CultureInfo.InvariantCulture);
                Assert.True(seen.Add(seq), $"message {seq} read twice");
                Assert.True(seq > lastSeq, $"partition {partition}: message {seq} after {lastSeq}");
                lastSeq = seq;
                string key = m.GetProperty("key").GetString()!;
                Assert.Equal($"key-{seq % 7}", key);
                Assert.Equal($"value-{seq}", m.GetProperty("value").GetString());
                Assert.Equal("kafkajs", headers.GetProperty("client").GetString());
                Assert.Equal(partitionOfKey.GetValueOrDefault(key, partition), partition);
                partitionOfKey[key] = partition;
                Assert.InRange(m.GetProperty("timestamp").GetInt64(), DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 600_000, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + 60_000);
            }
        }
        Assert.Equal(Messages, seen.Count);

        // The group as kafkajs' admin saw it while the consumer was in it, and after it left.
        var during = consumed.GetProperty("describedWhileMember");
        Assert.Equal("Stable", during.GetProperty("state").GetString());
        Assert.Equal("consumer", during.GetProperty("protocolType").GetString());
        Assert.Equal("RoundRobinAssigner", during.GetProperty("protocol").GetString()); // kafkajs' default assigner
        var member = Assert.Single(during.GetProperty("members").EnumerateArray());
        Assert.Equal(memberId, member.GetProperty("memberId").GetString());
        Assert.Equal("freshet-compat-kafkajs", member.GetProperty("clientId").GetString());
        Assert.Equal("/127.0.0.1", member.GetProperty("clientHost").GetString());
        Assert.Equal([0, 1, 2], member.GetProperty("assignment").GetProperty(topic).EnumerateArray().Select(p => p.GetInt32()));
        var after = r.GetProperty("describedAfterLeave");
        Assert.Equal("Empty", after.GetProperty("state").GetString());
        Assert.Equal(0, after.GetProperty("members").GetArrayLength());

        // kafkajs' auto-commit committed every partition's end before it left; OffsetFetch from kafkajs and from Confluent.Kafka agree.
        var ends = high.ToDictionary(h => h.Key, h => h.Value.High);
        Assert.Equal(ends, CommittedJson(r.GetProperty("committedAfterFirst")));

        // A second consumer of the group reads only the messages sent after the first one left.
        var resumed = r.GetProperty("resumed").GetProperty("received").EnumerateArray().ToList();
        Assert.Equal(Enumerable.Range(Messages, More), resumed.Select(m => int.Parse(m.GetProperty("headers").GetProperty("seq").GetString()!, CultureInfo.InvariantCulture)).Order());
        Assert.All(resumed, m => Assert.True(m.GetProperty("offset").GetInt64() >= ends[m.GetProperty("partition").GetInt32()],
            $"partition {m.GetProperty("partition").GetInt32()}: offset {m.GetProperty("offset").GetInt64()} was committed before"));
        var newEnds = await ClientTools.EndOffsetsAsync(broker.BootstrapServers, topic, Partitions);
        Assert.Equal(Messages + More, newEnds.Values.Sum());
        Assert.Equal(newEnds, CommittedJson(r.GetProperty("committedAfterSecond")));
        Assert.Equal(newEnds, await ClientTools.CommittedAsync(broker.BootstrapServers, group, topic, Partitions));
        Assert.Contains(r.GetProperty("listedGroups").EnumerateArray(),
            g => g.GetProperty("groupId").GetString() == group && g.GetProperty("protocolType").GetString() == "consumer");

        // How the broker stored it: the codec kafkajs used, and a producer id with sequences from 0 when idempotent.
        for (int p = 0; p < Partitions; p++)
        {
            // The first send's batches; the later, uncompressed send of More messages follows them.
            var batches = (await ClientTools.StoredBatchesAsync(broker.BootstrapServers, topic, p)).Where(b => b.BaseOffset < high[p].High).ToList();
            Assert.Equal(high[p].High, batches.Sum(b => (long)b.Count));
            Assert.All(batches, b => Assert.Equal(codec == "gzip" ? CompressionType.Gzip : CompressionType.None, b.Compression));
            if (batches.Count == 0) continue;
            if (idempotent)
            {
                Assert.All(batches, b => Assert.True(b.ProducerId >= 0, "idempotent batches carry the producer id from InitProducerId"));
                Assert.Equal(0, batches[0].BaseSequence);
            }
            else
            {
                Assert.All(batches, b => Assert.Equal(RecordBatch.NoProducerId, b.ProducerId));
            }
        }
    }

    /// <summary>
    /// Two kafkajs consumers in one group, running together, split a 4-partition topic: two partitions
    /// each (none twice), every message read once, each committing (commitOffsets) its partitions' ends.
    /// </summary>
    [Fact]
    public async Task TwoConsumersInOneGroupSplitThePartitions()
    {
        string node = await ClientTools.RequireNodeKafkaJsAsync(output.WriteLine);
        using var loggers = TestOutputLoggerProvider.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(GroupProperties, loggers);
        const string topic = "kafkajs-split", group = "kafkajs-split-g";
        await Clients.CreateTopicAsync(broker.BootstrapServers, topic, 4);
        ClientTools.ProduceValues(broker.BootstrapServers, topic, 4, 0, 200);
        var ends = await ClientTools.EndOffsetsAsync(broker.BootstrapServers, topic, 4);

        string barrier = Directory.CreateTempSubdirectory("freshet-kafkajs-barrier-").FullName;
        try
        {
            var members = await Task.WhenAll(new[] { "a", "b" }.Select(async m =>
            {
                var args = new List<string>
                {
                    Path.Combine(ClientTools.ClientsDir, "node", "kafkajs_client.js"), "member", "--bootstrap", broker.BootstrapServers, "--topic", topic,
                    "--group", group, "--expect-partitions", "2", "--member", m, "--members", "2", "--barrier", barrier,
                };
                if (ClientTools.Debug) args.Add("--debug");
                var result = await ExternalProcess.RunAsync(node, args, ClientTools.ClientTimeout, workingDirectory: ClientTools.ClientsDir);
                output.WriteLine(result.Describe());
                return ClientTools.LastJsonLine(result);
            }));
            var assigned = members.Select(m => m.GetProperty("assignment").EnumerateArray().Select(p => p.GetInt32()).ToList()).ToList();
            output.WriteLine($"member a owns {string.Join(',', assigned[0])}, member b {string.Join(',', assigned[1])}");
            Assert.All(assigned, a => Assert.Equal(2, a.Count));
            Assert.Equal([0, 1, 2, 3], assigned.SelectMany(a => a).Order());
            Assert.NotEqual(members[0].GetProperty("memberId").GetString(), members[1].GetProperty("memberId").GetString());
            var all = new List<int>();
            for (int i = 0; i < 2; i++)
            {
                var received = members[i].GetProperty("received").EnumerateArray().ToList();
                Assert.All(received, m => Assert.Contains(m.GetProperty("partition").GetInt32(), assigned[i]));
                Assert.Equal(assigned[i].Select(p => ends[p]).Sum(), received.Count);
                Assert.Equal(assigned[i].ToDictionary(p => p, p => ends[p]), CommittedJson(members[i].GetProperty("committed")));
                all.AddRange(received.Select(m => int.Parse(m.GetProperty("value").GetString()!["value-".Length..], CultureInfo.InvariantCulture)));
            }
            Assert.Equal(Enumerable.Range(0, 200), all.Order());
            Assert.Equal(ends, await ClientTools.CommittedAsync(broker.BootstrapServers, group, topic, 4));
        }
        finally
        {
            Directory.Delete(barrier, recursive: true);
        }
    }

    /// <summary>A group's first rebalance does not wait for more members.</summary>
    private static readonly Dictionary<string, string> GroupProperties = new()
    {
        ["group.initial.rebalance.delay.ms"] = "0",
        ["offsets.topic.num.partitions"] = "5",
    };

    private static Dictionary<int, long> CommittedJson(JsonElement e) =>
        e.EnumerateObject().ToDictionary(p => int.Parse(p.Name, CultureInfo.InvariantCulture), p => p.Value.GetInt64());
}
