using System.Globalization;
using System.Text.Json;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Records;
using Freshet.Server;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Compatibility;

/// <summary>
/// kafka-python 2.0.2 (Debian's python3-kafka, run with /usr/bin/python3) through
/// tests/clients/python/kafka_python_client.py: KafkaAdminClient, KafkaProducer, a KafkaConsumer
/// with assign() + seek_to_beginning() and no group, and KafkaConsumers with a group_id (the classic
/// group protocol: subscribe, commit, resume, partitions split between members).
/// <para>Codecs: python3-kafka does not depend on the codec modules, so a test.sh machine has gzip
/// only; snappy (python3-snappy), lz4 (python3-lz4) and zstd (python3-zstandard) are exercised when
/// their modules import, and otherwise kafka-python's refusal to use them is what is checked.
/// lz4 with api_version 0.9 (magic 0) also needs xxhash, which Debian does not package for Python 3.</para>
/// </summary>
public sealed class KafkaPythonTests(ITestOutputHelper output) : IDisposable
{
    private readonly ILoggerFactory _loggers = TestOutputLoggerProvider.Factory(output);

    private const int Partitions = 3;
    private const int Messages = 300;

    private static string Script => Path.Combine(ClientTools.ClientsDir, "python", "kafka_python_client.py");

    [Fact]
    public async Task AdminClientCreatesListsAndDescribesTopics()
    {
        await using var broker = await StartAsync();
        var r = await RunAsync(broker, "admin", "--topic", "py-admin-a", "--topic", "py-admin-b", "--partitions", "3");

        Assert.Equal(0, r.GetProperty("create_errors").GetProperty("py-admin-a").GetInt32());
        Assert.Equal(0, r.GetProperty("create_errors").GetProperty("py-admin-b").GetInt32());
        Assert.Equal("TopicAlreadyExistsError", r.GetProperty("duplicate_create").GetString());
        var listed = r.GetProperty("listed").EnumerateArray().Select(e => e.GetString()).ToList();
        Assert.Contains("py-admin-a", listed);
        Assert.Contains("py-admin-b", listed);
        foreach (var topic in new[] { "py-admin-a", "py-admin-b" })
        {
            var d = r.GetProperty("described").GetProperty(topic);
            Assert.Equal(0, d.GetProperty("error_code").GetInt32());
            var parts = d.GetProperty("partitions").EnumerateArray().ToList();
            Assert.Equal([0, 1, 2], parts.Select(p => p.GetProperty("partition").GetInt32()));
            Assert.All(parts, p =>
            {
                Assert.Equal(1, p.GetProperty("leader").GetInt32());
                Assert.Equal([1], p.GetProperty("replicas").EnumerateArray().Select(x => x.GetInt32()));
                Assert.Equal([1], p.GetProperty("isr").EnumerateArray().Select(x => x.GetInt32()));
            });
        }
        // The protocol generation kafka-python settles on from ApiVersions; 2.4 is the newest it knows.
        output.WriteLine($"kafka-python probed api_version {r.GetProperty("api_version").GetString()}");
        Assert.Equal("2.4.0", r.GetProperty("api_version").GetString());
    }

    /// <summary>
    /// kafka-python's alter_configs sends AlterConfigs (API 33, the non-incremental form): a topic's
    /// configs are replaced as a whole, a broker's dynamic config is set and a read-only one refused,
    /// and describe_configs (v1, with synonyms) shows the values with Kafka's sources.
    /// </summary>
    [Fact]
    public async Task AdminClientAltersConfigsWithTheNonIncrementalApi()
    {
        await using var broker = await StartAsync();
        var r = await RunAsync(broker, "configs", "--topic", "py-configs");
        Assert.Equal([0], r.GetProperty("replaced").EnumerateArray().Select(e => e.GetInt32()));
        var topic = r.GetProperty("topic");
        Assert.Equal("compact", topic.GetProperty("cleanup.policy").GetProperty("value").GetString());
        Assert.Equal(1, topic.GetProperty("cleanup.policy").GetProperty("source").GetInt32()); // DYNAMIC_TOPIC_CONFIG
        Assert.Equal("604800000", topic.GetProperty("retention.ms").GetProperty("value").GetString()); // replaced: back to the default
        Assert.Equal(5, topic.GetProperty("retention.ms").GetProperty("source").GetInt32()); // DEFAULT_CONFIG

        Assert.Equal([0], r.GetProperty("broker_set").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal([42], r.GetProperty("broker_read_only").EnumerateArray().Select(e => e.GetInt32())); // INVALID_REQUEST
        var b = r.GetProperty("broker");
        Assert.Equal("7200000", b.GetProperty("log.retention.ms").GetProperty("value").GetString());
        Assert.Equal(2, b.GetProperty("log.retention.ms").GetProperty("source").GetInt32()); // DYNAMIC_BROKER_CONFIG
        Assert.True(b.GetProperty("num.partitions").GetProperty("read_only").GetBoolean());
        Assert.Equal("7200000", r.GetProperty("topic_final").GetProperty("retention.ms").GetProperty("value").GetString());
    }

    /// <summary>
    /// Produce and read back. api_version null lets kafka-python probe the broker (2.4: Produce v7 with
    /// record batches, Fetch v10); forcing an old generation makes it speak the deprecated versions:
    /// 0.10.1 is Produce v2 with magic 1 messages, Fetch v3 and ListOffsets v1; 0.9 is Produce v1 with
    /// magic 0 messages (no timestamps), Fetch v1 and ListOffsets v0.
    /// </summary>
    [Theory]
    [InlineData("none", null)]
    [InlineData("gzip", null)]
    [InlineData("none", "0.10.1")]
    [InlineData("gzip", "0.10.1")]
    [InlineData("none", "0.9")]
    [InlineData("gzip", "0.9")]
    public async Task ProducerAndAssignedConsumerRoundTrip(string codec, string? apiVersion)
    {
        await using var broker = await StartAsync();
        string topic = $"py-{codec}-{apiVersion ?? "probed"}".Replace('.', '_');
        var r = await RoundTripAsync(broker, topic, codec, apiVersion);
        CheckRoundTrip(r, codec, apiVersion);
        await CheckStoredCodecAsync(broker, topic, codec);
    }

    /// <summary>
    /// The codecs whose Python modules python3-kafka does not pull in (test.sh installs python3-snappy,
    /// python3-lz4 and python3-zstandard): a full round trip. A module that does not import fails the
    /// test with the package to install, rather than passing without a round trip.
    /// </summary>
    [Theory]
    [InlineData("snappy")]
    [InlineData("lz4")]
    [InlineData("zstd")]
    public async Task OptionalCodecRoundTrips(string codec)
    {
        await using var broker = await StartAsync();
        string topic = "py-opt-" + codec;
        var r = await RoundTripAsync(broker, topic, codec, null);
        if (r.TryGetProperty("producer_error", out var error))
            Assert.Fail($"kafka-python cannot use {codec}: {error.GetString()} (apt package python3-{(codec == "zstd" ? "zstandard" : codec)}; {ClientTools.InstallHint})");
        CheckRoundTrip(r, codec, null);
        await CheckStoredCodecAsync(broker, topic, codec);
    }

    /// <summary>
    /// A KafkaConsumer with a group_id reads everything and commits; after more records arrive, a
    /// second consumer in the group reads only those, from the committed offsets.
    /// </summary>
    [Fact]
    public async Task GroupConsumerCommitsAndASecondConsumerResumesFromTheCommittedOffsets()
    {
        await using var broker = await StartAsync(GroupProperties);
        const string topic = "py-group", group = "py-group-g";
        await Clients.CreateTopicAsync(broker.BootstrapServers, topic, Partitions);
        ClientTools.ProduceValues(broker.BootstrapServers, topic, Partitions, 0, 90);
        var ends = await ClientTools.EndOffsetsAsync(broker.BootstrapServers, topic, Partitions);

        var first = await RunAsync(broker, "group", "--topic", topic, "--group", group, "--expect-partitions", "3");
        Assert.Equal([0, 1, 2], Ints(first.GetProperty("assignment")));
        var read = Received(first);
        Assert.Equal(Enumerable.Range(0, 90), read.Select(r => r.Seq).Order());
        foreach (var g in read.GroupBy(r => r.Partition))
            Assert.Equal(Enumerable.Range(0, (int)ends[g.Key]).Select(i => (long)i), g.Select(r => r.Offset)); // from the start, in order
        Assert.Equal(ends, Committed(first));
        Assert.Equal(ends, await ClientTools.CommittedAsync(broker.BootstrapServers, group, topic, Partitions));

        ClientTools.ProduceValues(broker.BootstrapServers, topic, Partitions, 90, 30);
        var newEnds = await ClientTools.EndOffsetsAsync(broker.BootstrapServers, topic, Partitions);
        var second = await RunAsync(broker, "group", "--topic", topic, "--group", group, "--expect-partitions", "3", "--member", "b");
        var resumed = Received(second);
        Assert.Equal(Enumerable.Range(90, 30), resumed.Select(r => r.Seq).Order());
        foreach (var g in resumed.GroupBy(r => r.Partition))
            Assert.Equal(Enumerable.Range((int)ends[g.Key], (int)(newEnds[g.Key] - ends[g.Key])).Select(i => (long)i), g.Select(r => r.Offset));
        Assert.Equal(newEnds, await ClientTools.CommittedAsync(broker.BootstrapServers, group, topic, Partitions));
    }

    /// <summary>
    /// Two KafkaConsumers in one group, running together, split a 4-partition topic: two partitions
    /// each (no partition twice), every record read once, and each commits its partitions' ends.
    /// </summary>
    [Fact]
    public async Task TwoConsumersInOneGroupSplitThePartitions()
    {
        await using var broker = await StartAsync(GroupProperties);
        const string topic = "py-split", group = "py-split-g";
        await Clients.CreateTopicAsync(broker.BootstrapServers, topic, 4);
        ClientTools.ProduceValues(broker.BootstrapServers, topic, 4, 0, 200);
        var ends = await ClientTools.EndOffsetsAsync(broker.BootstrapServers, topic, 4);

        string barrier = Directory.CreateTempSubdirectory("freshet-py-barrier-").FullName;
        try
        {
            var members = await Task.WhenAll(new[] { "a", "b" }.Select(m => RunAsync(broker, "group", "--topic", topic, "--group", group,
                "--expect-partitions", "2", "--member", m, "--members", "2", "--barrier", barrier)));
            var assigned = members.Select(m => Ints(m.GetProperty("assignment"))).ToList();
            output.WriteLine($"member a owns {string.Join(',', assigned[0])}, member b {string.Join(',', assigned[1])}");
            Assert.All(assigned, a => Assert.Equal(2, a.Count));
            Assert.Equal([0, 1, 2, 3], assigned.SelectMany(a => a).Order());
            Assert.NotEqual(members[0].GetProperty("member_id").GetString(), members[1].GetProperty("member_id").GetString());
            for (int i = 0; i < 2; i++)
            {
                var received = Received(members[i]);
                Assert.All(received, r => Assert.Contains(r.Partition, assigned[i]));
                Assert.Equal(assigned[i].Select(p => ends[p]).Sum(), received.Count);
                Assert.Equal(assigned[i].ToDictionary(p => p, p => ends[p]), Committed(members[i]));
            }
            Assert.Equal(Enumerable.Range(0, 200), members.SelectMany(Received).Select(r => r.Seq).Order());
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

    private readonly record struct Record(int Partition, long Offset, int Seq);

    private static List<Record> Received(JsonElement r) =>
    [
        .. r.GetProperty("received").EnumerateArray().Select(m => new Record(m.GetProperty("partition").GetInt32(), m.GetProperty("offset").GetInt64(),
            int.Parse(m.GetProperty("value").GetString()!["value-".Length..], CultureInfo.InvariantCulture))),
    ];

    private static List<int> Ints(JsonElement array) => [.. array.EnumerateArray().Select(e => e.GetInt32())];

    private static Dictionary<int, long> Committed(JsonElement r) =>
        r.GetProperty("committed").EnumerateObject().ToDictionary(e => int.Parse(e.Name, CultureInfo.InvariantCulture), e => e.Value.GetInt64());

    private async Task<FreshetServer> StartAsync(IReadOnlyDictionary<string, string>? properties = null)
    {
        await ClientTools.RequirePythonKafkaAsync(v => output.WriteLine("kafka-python " + v));
        return await FreshetServer.StartEmbeddedAsync(properties, _loggers);
    }

    public void Dispose() => _loggers.Dispose();

    private Task<JsonElement> RoundTripAsync(FreshetServer broker, string topic, string codec, string? apiVersion)
    {
        var args = new List<string> { "roundtrip", "--topic", topic, "--partitions", Partitions.ToString(CultureInfo.InvariantCulture),
            "--messages", Messages.ToString(CultureInfo.InvariantCulture), "--codec", codec };
        if (apiVersion is not null) args.AddRange(["--api-version", apiVersion]);
        return RunAsync(broker, [.. args]);
    }

    private async Task<JsonElement> RunAsync(FreshetServer broker, params string[] args)
    {
        var all = new List<string> { Script };
        all.AddRange(args);
        all.AddRange(["--bootstrap", broker.BootstrapServers]);
        if (ClientTools.Debug) all.Add("--debug");
        var result = await ExternalProcess.RunAsync(ClientTools.DebianPython, all, ClientTools.ClientTimeout);
        output.WriteLine(result.Describe());
        return ClientTools.LastJsonLine(result);
    }

    private static void CheckRoundTrip(JsonElement r, string codec, string? apiVersion)
    {
        Assert.False(r.TryGetProperty("producer_error", out var pe), $"producer refused: {pe}");
        Assert.Equal(apiVersion ?? "2.4.0", r.GetProperty("api_version").GetString());
        Assert.Equal(apiVersion ?? "2.4.0", r.GetProperty("consumer_api_version").GetString());
        Assert.Equal([0, 1, 2], r.GetProperty("partitions").EnumerateArray().Select(p => p.GetInt32()));
        bool magic0 = apiVersion == "0.9";
        bool hasHeaders = apiVersion is null; // record headers exist from magic 2 (0.11) on

        // Where the producer was told each message went.
        var sent = r.GetProperty("sent").EnumerateArray()
            .ToDictionary(s => s.GetProperty("seq").GetInt32(), s => (Partition: s.GetProperty("partition").GetInt32(), Offset: s.GetProperty("offset").GetInt64()));
        Assert.Equal(Messages, sent.Count);

        var received = r.GetProperty("received").EnumerateArray().ToList();
        Assert.Equal(Messages, received.Count);
        var seen = new HashSet<int>();
        var last = new Dictionary<int, (long Offset, int Seq)>();
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        foreach (var m in received)
        {
            int partition = m.GetProperty("partition").GetInt32();
            long offset = m.GetProperty("offset").GetInt64();
            string value = m.GetProperty("value").GetString()!;
            int seq = int.Parse(value["value-".Length..], CultureInfo.InvariantCulture);
            Assert.True(seen.Add(seq), $"message {seq} read twice");
            Assert.Equal(sent[seq], (partition, offset));
            Assert.Equal($"key-{seq % 7}", m.GetProperty("key").GetString());
            var headers = m.GetProperty("headers").EnumerateArray().Select(h => $"{h[0].GetString()}={h[1].GetString()}").ToList();
            List<string> expectedHeaders = hasHeaders ? [$"seq={seq}", $"codec={codec}"] : [];
            Assert.Equal(expectedHeaders, headers);
            var ts = m.GetProperty("timestamp");
            if (magic0)
            {
                Assert.Equal(JsonValueKind.Null, ts.ValueKind); // magic 0 messages have no timestamp
            }
            else
            {
                Assert.InRange(ts.GetInt64(), now - 600_000, now + 60_000); // the producer's CreateTime
            }
            if (last.TryGetValue(partition, out var l))
            {
                Assert.Equal(l.Offset + 1, offset);
                Assert.True(seq > l.Seq, $"partition {partition}: message {seq} after {l.Seq}");
            }
            else
            {
                Assert.Equal(0, offset);
            }
            last[partition] = (offset, seq);
        }
        foreach (var (partition, end) in r.GetProperty("end_offsets").EnumerateObject().Select(e => (int.Parse(e.Name, CultureInfo.InvariantCulture), e.Value.GetInt64())))
            Assert.Equal(last.TryGetValue(partition, out var l) ? l.Offset + 1 : 0, end);
    }

    /// <summary>Legacy message sets are up-converted to one v2 batch per produce; a compressed producer keeps its codec.</summary>
    private static async Task CheckStoredCodecAsync(FreshetServer broker, string topic, string codec)
    {
        var expected = codec switch
        {
            "gzip" => CompressionType.Gzip,
            "snappy" => CompressionType.Snappy,
            "lz4" => CompressionType.Lz4,
            "zstd" => CompressionType.Zstd,
            _ => CompressionType.None,
        };
        long total = 0;
        int compressed = 0;
        for (int p = 0; p < Partitions; p++)
        {
            var batches = await ClientTools.StoredBatchesAsync(broker.BootstrapServers, topic, p);
            // kafka-python sends a batch uncompressed when compressing would not make it smaller (one or two
            // small records under lz4's frame header were seen), so only batches of more records must carry the codec.
            Assert.All(batches, b => Assert.True(b.Compression == expected || (b.Count <= 4 && b.Compression == CompressionType.None),
                $"batch at {b.BaseOffset} with {b.Count} records stored as {b.Compression}, expected {expected}"));
            compressed += batches.Count(b => b.Compression == expected);
            total += batches.Sum(b => (long)b.Count);
        }
        Assert.Equal(Messages, total);
        Assert.True(compressed > 0, $"no batch stored as {expected}");
    }
}
