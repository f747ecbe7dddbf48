using System.Text.Json;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;

namespace Freshet.Integration.Tests.Compatibility;

/// <summary>
/// Where the third-party clients are, checked once per run. A missing client fails the test with a
/// pointer to ./test.sh, which installs them (kcat and python3-kafka with apt, kafkajs with npm ci);
/// nothing is skipped silently. FRESHET_COMPAT_DEBUG=1 turns on the clients' protocol logs.
/// </summary>
public static class ClientTools
{
    public const string InstallHint = "run ./test.sh from the repository root once: it installs kcat, python3-kafka and python3-confluent-kafka (apt) and the npm modules of tests/clients (kafkajs)";

    /// <summary>The Debian interpreter: python3-kafka installs into its dist-packages, which a pyenv or venv python3 earlier on PATH does not see.</summary>
    public const string DebianPython = "/usr/bin/python3";

    public static readonly TimeSpan ClientTimeout = TimeSpan.FromSeconds(25);

    public static bool Debug => Environment.GetEnvironmentVariable("FRESHET_COMPAT_DEBUG") == "1";

    private static readonly Lazy<string> s_repoRoot = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Freshet.slnx"))) return dir.FullName;
        throw new InvalidOperationException($"no Freshet.slnx above {AppContext.BaseDirectory}");
    });

    public static string RepoRoot => s_repoRoot.Value;
    public static string ClientsDir => Path.Combine(RepoRoot, "tests", "clients");

    private static readonly Lazy<Task<(string? Path, string Problem)>> s_kcat = new(async () =>
    {
        string? path = ExternalProcess.FindOnPath("kcat");
        if (path is null) return (null, "kcat is not on PATH");
        var v = await ExternalProcess.RunAsync(path, ["-V"], TimeSpan.FromSeconds(10));
        return v.ExitCode == 0 ? (path, v.StdOut.Trim()) : (null, $"kcat -V failed: {v.Describe()}");
    });

    private static readonly Lazy<Task<(string? Path, string Problem)>> s_python = new(async () =>
    {
        if (!File.Exists(DebianPython)) return (null, $"{DebianPython} does not exist");
        var v = await ExternalProcess.RunAsync(DebianPython, ["-c", "import kafka; print(kafka.__version__)"], TimeSpan.FromSeconds(20));
        return v.ExitCode == 0 ? (DebianPython, v.StdOut.Trim()) : (null, $"{DebianPython} cannot import kafka (package python3-kafka): {v.StdErr.Trim()}");
    });

    private static readonly Lazy<Task<(string? Path, string Problem)>> s_confluentPython = new(async () =>
    {
        if (!File.Exists(DebianPython)) return (null, $"{DebianPython} does not exist");
        var v = await ExternalProcess.RunAsync(DebianPython, ["-c", "import confluent_kafka; print(confluent_kafka.version()[0], 'on librdkafka', confluent_kafka.libversion()[0])"], TimeSpan.FromSeconds(20));
        return v.ExitCode == 0 ? (DebianPython, "confluent-kafka " + v.StdOut.Trim()) : (null, $"{DebianPython} cannot import confluent_kafka (package python3-confluent-kafka): {v.StdErr.Trim()}");
    });

    private static readonly Lazy<Task<(string? Path, string Problem)>> s_node = new(() =>
    {
        string? node = ExternalProcess.FindOnPath("node");
        if (node is null) return Task.FromResult<(string?, string)>((null, "node is not on PATH (Node.js 18+ with npm is needed; test.sh does not install it)"));
        string package = Path.Combine(ClientsDir, "node_modules", "kafkajs", "package.json");
        if (!File.Exists(package)) return Task.FromResult<(string?, string)>((null, $"{package} is missing (npm ci in tests/clients has not run)"));
        using var json = JsonDocument.Parse(File.ReadAllText(package));
        return Task.FromResult<(string?, string)>((node, "kafkajs " + json.RootElement.GetProperty("version").GetString()));
    });

    /// <summary>Path of kcat; fails the test when it is missing. <paramref name="version"/> is kcat's -V text.</summary>
    public static async Task<string> RequireKcatAsync(Action<string>? version = null) => Require(await s_kcat.Value, version);

    /// <summary>/usr/bin/python3 when it imports kafka; fails the test otherwise. <paramref name="version"/> gets kafka-python's version.</summary>
    public static async Task<string> RequirePythonKafkaAsync(Action<string>? version = null) => Require(await s_python.Value, version);

    /// <summary>/usr/bin/python3 when it imports confluent_kafka (Debian's python3-confluent-kafka, on Debian's librdkafka); fails the test otherwise.</summary>
    public static async Task<string> RequireConfluentKafkaPythonAsync(Action<string>? version = null) => Require(await s_confluentPython.Value, version);

    /// <summary>Path of node when tests/clients/node_modules has kafkajs; fails the test otherwise.</summary>
    public static async Task<string> RequireNodeKafkaJsAsync(Action<string>? version = null) => Require(await s_node.Value, version);

    private static string Require((string? Path, string Text) tool, Action<string>? version)
    {
        if (tool.Path is null) Assert.Fail($"{tool.Text}: {InstallHint}");
        version?.Invoke(tool.Text);
        return tool.Path;
    }

    /// <summary>The JSON object a client script printed on its last stdout line; fails with the client's output if there is none.</summary>
    public static JsonElement LastJsonLine(ProcessResult result)
    {
        if (result.ExitCode != 0) Assert.Fail($"client failed with exit code {result.ExitCode}: {result.Describe()}");
        string? last = result.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault();
        if (last is null || !last.StartsWith('{')) Assert.Fail($"client printed no JSON result: {result.Describe()}");
        using var doc = JsonDocument.Parse(last);
        return doc.RootElement.Clone();
    }

    /// <summary>Records "value-{from}" .. "value-{from + count - 1}", record i to partition i mod <paramref name="partitions"/>, through Confluent.Kafka.</summary>
    public static void ProduceValues(string bootstrap, string topic, int partitions, int from, int count)
    {
        using var producer = new Confluent.Kafka.ProducerBuilder<byte[], byte[]>(Clients.ProducerConfig(bootstrap)).Build();
        for (int i = from; i < from + count; i++)
            producer.Produce(new Confluent.Kafka.TopicPartition(topic, i % partitions),
                new Confluent.Kafka.Message<byte[], byte[]> { Key = System.Text.Encoding.UTF8.GetBytes($"key-{i}"), Value = System.Text.Encoding.UTF8.GetBytes($"value-{i}") });
        Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(20)));
    }

    /// <summary>Each partition's log end offset (ListOffsets through Confluent.Kafka's admin client).</summary>
    public static async Task<Dictionary<int, long>> EndOffsetsAsync(string bootstrap, string topic, int partitions)
    {
        using var admin = Clients.Admin(bootstrap);
        var r = await Confluent.Kafka.IAdminClientExtensions.ListOffsetsAsync(admin, [.. Enumerable.Range(0, partitions).Select(p => new Confluent.Kafka.Admin.TopicPartitionOffsetSpec
        {
            TopicPartition = new Confluent.Kafka.TopicPartition(topic, p), OffsetSpec = Confluent.Kafka.Admin.OffsetSpec.Latest(),
        })]);
        return r.ResultInfos.ToDictionary(i => i.TopicPartitionOffsetError.Partition.Value, i => i.TopicPartitionOffsetError.Offset.Value);
    }

    /// <summary>A group's committed offsets per partition (OffsetFetch through Confluent.Kafka's admin client); -1 for none.</summary>
    public static async Task<Dictionary<int, long>> CommittedAsync(string bootstrap, string group, string topic, int partitions)
    {
        using var admin = Clients.Admin(bootstrap);
        var r = await admin.ListConsumerGroupOffsetsAsync([new Confluent.Kafka.ConsumerGroupTopicPartitions(group,
            [.. Enumerable.Range(0, partitions).Select(p => new Confluent.Kafka.TopicPartition(topic, p))])]);
        return r.Single().Partitions.ToDictionary(p => p.Partition.Value, p => p.Offset.Value < 0 ? -1 : p.Offset.Value);
    }

    /// <summary>One stored record batch as a Fetch (v12, the last version that names topics) returns it.</summary>
    public readonly record struct StoredBatch(long BaseOffset, byte Magic, CompressionType Compression, int Count, long ProducerId, int BaseSequence);

    /// <summary>
    /// Every batch of a partition, read with the raw protocol: shows how the broker stored what a
    /// client sent (codec, producer id), which a consuming client does not reveal.
    /// </summary>
    public static async Task<List<StoredBatch>> StoredBatchesAsync(string bootstrap, string topic, int partition)
    {
        await using var raw = await RawKafkaClient.ConnectAsync(bootstrap);
        var batches = new List<StoredBatch>();
        long offset = 0;
        while (true)
        {
            var request = new FetchRequest
            {
                MaxWaitMs = 0,
                MinBytes = 0,
                MaxBytes = 8 << 20,
                Topics = [new FetchRequest.FetchTopic { Topic = topic, Partitions = [new FetchRequest.FetchPartition { Partition = partition, FetchOffset = offset, PartitionMaxBytes = 4 << 20 }] }],
            };
            var response = await raw.RequestAsync<FetchResponse>(request, 12);
            var data = Assert.Single(Assert.Single(response.Responses).Partitions);
            Assert.Equal(0, data.ErrorCode);
            var bytes = data.Records?.Memory ?? ReadOnlyMemory<byte>.Empty;
            int pos = 0;
            while (bytes.Length - pos >= RecordBatch.HeaderSize)
            {
                var batch = new RecordBatch(bytes.Span[pos..]);
                if (batch.SizeInBytes > bytes.Length - pos) break; // cut at the size limit
                batch = new RecordBatch(bytes.Span.Slice(pos, batch.SizeInBytes));
                Assert.True(batch.IsCrcValid, $"batch at offset {batch.BaseOffset} has a bad CRC");
                batches.Add(new StoredBatch(batch.BaseOffset, batch.Magic, batch.Compression, batch.RecordsCount, batch.ProducerId, batch.BaseSequence));
                offset = batch.NextOffset;
                pos += batch.SizeInBytes;
            }
            if (offset >= data.HighWatermark) return batches;
            if (pos == 0) Assert.Fail($"fetch at offset {offset} of {topic}-{partition} returned no whole batch (high watermark {data.HighWatermark})");
        }
    }
}
