using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Freshet.Integration.Tests.Compatibility;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Cli;

/// <summary>
/// Clients that connect while a node is starting (issue 10): the client listener accepts at once,
/// but requests wait until the node is ready (caught up with the metadata, its broker unfenced),
/// then are answered right: never an empty broker list. Each test fires, the moment the port
/// accepts, a bare ApiVersions + Metadata, Confluent.Kafka's AdminClient (CreateTopics), kcat -L,
/// kafka-python's KafkaAdminClient and Debian's confluent-kafka AdminClient (librdkafka 2.0.2, the
/// client of the report, which gave up on the empty answer and waited out its whole timeout).
/// </summary>
public sealed partial class StartupReadinessTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);

    /// <summary>
    /// The deterministic case: node 1 of a two-voter quorum started alone cannot be ready until node 2
    /// starts, so every request it gets before then provably arrived early. Node 2 starts only once each
    /// client has connected to node 1 (its established connections counted in /proc/net/tcp).
    /// </summary>
    [Fact]
    public async Task RequestsToANodeWaitingForItsQuorumAreHeldAndAnsweredOnceItIsReady()
    {
        var tools = await ToolsAsync();
        int client1 = BrokerProcess.FreePort(), client2 = BrokerProcess.FreePort();
        int controller1 = BrokerProcess.FreePort(), controller2 = BrokerProcess.FreePort();
        string clusterId = Freshet.Server.MetaProperties.NewClusterId();
        BrokerProcess Node(int id, int client, int controller) => new(new Dictionary<string, string>
        {
            ["node.id"] = id.ToString(CultureInfo.InvariantCulture),
            ["cluster.id"] = clusterId,
            ["listeners"] = $"PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}",
            ["advertised.listeners"] = $"PLAINTEXT://127.0.0.1:{client}",
            ["controller.listener.names"] = "CONTROLLER",
            ["controller.quorum.voters"] = $"1@127.0.0.1:{controller1},2@127.0.0.1:{controller2}",
        }, client);
        await using var node1 = Node(1, client1, controller1);
        await using var node2 = Node(2, client2, controller2);

        var ready1 = node1.Launch();
        await using var raw = await RawKafkaClient.ConnectWhenListeningAsync(client1, Wait, () => ready1.IsFaulted);
        var early = await SendApiVersionsAndMetadataAsync(raw);
        var fired = Fire(tools, node1.BootstrapServers, "held");
        // Every client is connected (and librdkafka and kafka-python send ApiVersions the moment they are):
        // 1 bare connection + Confluent.Kafka + kcat + kafka-python + confluent-kafka.
        // A client that finishes first was answered without the node being ready: the checks below say how.
        bool allConnected = await WaitUntilAsync(() => ProcessTable.EstablishedTo(client1) >= 5, fired.Failed);
        Assert.False(node1.IsReady, "node 1 cannot be ready before node 2 starts");
        Assert.False(ready1.IsCompleted, node1.Output);

        await Task.WhenAll(ready1, node2.Launch()).WaitAsync(TimeSpan.FromSeconds(90));
        var brokers = new Dictionary<int, int> { [1] = client1, [2] = client2 };
        await CheckEarlyAnswerAsync(raw, early, self: 1, brokers);
        await CheckAsync(fired, brokers, node1.BootstrapServers);
        Assert.True(allConnected, "the clients connected to node 1 before it was ready");
    }

    /// <summary>
    /// A request that waits for a node that never gets ready is not answered with what the node has:
    /// when the node is stopped (SIGTERM during start-up), the held connection is closed unanswered.
    /// A client that gives up first (closes its connection, as after a request timeout) is let go at
    /// once: the node closes its side too, nothing waits for readiness on its behalf.
    /// </summary>
    [Fact]
    public async Task ANodeStoppedBeforeItIsReadyClosesHeldConnectionsUnanswered()
    {
        int client = BrokerProcess.FreePort(), controller = BrokerProcess.FreePort();
        await using var node = new BrokerProcess(new Dictionary<string, string>
        {
            ["listeners"] = $"PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}",
            ["advertised.listeners"] = $"PLAINTEXT://127.0.0.1:{client}",
            ["controller.listener.names"] = "CONTROLLER",
            // A second voter that never comes: no quorum, never ready.
            ["controller.quorum.voters"] = $"1@127.0.0.1:{controller},2@127.0.0.1:{BrokerProcess.FreePort()}",
        }, client);
        var ready = node.Launch();
        await using var raw = await RawKafkaClient.ConnectWhenListeningAsync(client, Wait, () => ready.IsFaulted);
        await SendApiVersionsAndMetadataAsync(raw);
        Assert.True(await WaitUntilAsync(() => ProcessTable.EstablishedTo(client) >= 1, () => ready.IsCompleted), node.Output);

        await using (var quitter = await RawKafkaClient.ConnectAsync(node.BootstrapServers))
        {
            await SendApiVersionsAndMetadataAsync(quitter);
            Assert.True(await WaitUntilAsync(() => ProcessTable.EstablishedTo(client) >= 2, () => ready.IsCompleted), node.Output);
        }
        // The quitter's side is closed; a node that did not notice would keep its socket in CLOSE_WAIT until it got ready.
        Assert.True(await WaitUntilAsync(() => ProcessTable.ClosedByClientOnly(client) == 0 && ProcessTable.EstablishedTo(client) == 1, () => ready.IsCompleted),
            $"CLOSE_WAIT {ProcessTable.ClosedByClientOnly(client)}, established {ProcessTable.EstablishedTo(client)}");

        await node.StopAsync(TimeSpan.FromSeconds(30));
        Assert.Contains("Stopped before it was ready", node.Output, StringComparison.Ordinal);
        Assert.False(ready.IsCompletedSuccessfully, node.Output);
        // End of stream with not one byte of an answer.
        var buffer = new byte[64];
        using var cts = new CancellationTokenSource(Wait);
        int n = await raw.Stream.ReadAsync(buffer, cts.Token);
        Assert.Equal(0, n);
    }

    /// <summary>`freshet server`: the clients fire the moment its port accepts.</summary>
    [Fact]
    public async Task RequestsFiredTheMomentFreshetServerListensAreAnsweredRight()
    {
        var tools = await ToolsAsync();
        await using var node = new BrokerProcess();
        var ready = node.Launch();
        await using var raw = await RawKafkaClient.ConnectWhenListeningAsync(node.Port, Wait, () => ready.IsFaulted);
        var early = await SendApiVersionsAndMetadataAsync(raw);
        bool beforeReady = !node.IsReady;
        var fired = Fire(tools, node.BootstrapServers, "server");
        await ready.WaitAsync(Wait);
        // A single node gets ready in a fraction of a second: whether the first request beat it varies (the
        // two-voter test above is the deterministic one); what is asserted is that every answer is right.
        output.WriteLine($"first request sent before the ready line: {beforeReady}");
        var brokers = new Dictionary<int, int> { [1] = node.Port };
        await CheckEarlyAnswerAsync(raw, early, self: 1, brokers);
        await CheckAsync(fired, brokers, node.BootstrapServers, all: true);
    }

    /// <summary>
    /// `freshet cluster up --nodes 3` (the report's case: CreateTopics sent the moment it opened its
    /// ports timed out after 60 s). The first request goes to node 1 before the cluster's ready line;
    /// the clients bootstrap from all three nodes. Once the cluster is up, metadata lists all three.
    /// </summary>
    [Fact]
    public async Task RequestsFiredTheMomentClusterUpListensAreAnsweredRight()
    {
        var tools = await ToolsAsync();
        await using var cluster = ClusterUpProcess.Start(3);
        using var _ = new OnDispose(() => output.WriteLine($"--- freshet cluster up\n{cluster.Output}"));
        await using var raw = await RawKafkaClient.ConnectWhenListeningAsync(cluster.ClientPort, Wait, () => cluster.HasExited);
        var early = await SendApiVersionsAndMetadataAsync(raw);
        Assert.False(cluster.HasLine(l => l.StartsWith("Freshet cluster of", StringComparison.Ordinal)), cluster.Output);
        bool nodeReady = cluster.HasLine(l => l.StartsWith("[node-1] Freshet is ready", StringComparison.Ordinal));
        var fired = Fire(tools, cluster.BootstrapServers, "up");
        output.WriteLine($"first request sent before node 1's ready line: {!nodeReady}");

        await cluster.WaitForLineAsync(l => l.StartsWith("Freshet cluster of 3 nodes is ready", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
        var brokers = Enumerable.Range(1, 3).ToDictionary(n => n, n => cluster.ClientPort + n - 1);
        await CheckEarlyAnswerAsync(raw, early, self: 1, brokers);
        await CheckAsync(fired, brokers, cluster.BootstrapServers);

        // Up: every node is registered and unfenced, and kcat lists all three.
        var after = await ExternalProcess.RunAsync(tools.Kcat, ["-b", cluster.BootstrapServers, "-L", "-m", "30"], Wait);
        Assert.Equal(brokers, KcatBrokers(after));
        Assert.Equal(0, await cluster.StopAsync(TimeSpan.FromSeconds(90)));
    }

    // ================================================================ the clients

    private sealed class OnDispose(Action action) : IDisposable
    {
        public void Dispose() => action();
    }

    private sealed record Tools(string Kcat, string Python, string ConfluentPython);

    private async Task<Tools> ToolsAsync()
    {
        output.WriteLine($"Confluent.Kafka on librdkafka {Clients.LibrdkafkaVersion}");
        return new Tools(await ClientTools.RequireKcatAsync(output.WriteLine), await ClientTools.RequirePythonKafkaAsync(v => output.WriteLine($"kafka-python {v}")),
            await ClientTools.RequireConfluentKafkaPythonAsync(output.WriteLine));
    }

    /// <summary>The clients' work, started at once; each creates its own topic with its own partition count.</summary>
    private sealed record Fired(string Tag, Task<Confluent.Kafka.Metadata> Net, Task<ProcessResult> Kcat, Task<ProcessResult> KafkaPython, Task<ProcessResult> ConfluentPython)
    {
        public const int NetPartitions = 3, PythonPartitions = 2, ConfluentPartitions = 4;

        public IEnumerable<Task> All => [Net, Kcat, KafkaPython, ConfluentPython];

        /// <summary>A client finished before the node could answer it: it failed (the checks say how).</summary>
        public bool Failed() => All.Any(t => t.IsCompleted);
    }

    private static Fired Fire(Tools tools, string bootstrap, string tag)
    {
        string python = Path.Combine(ClientTools.ClientsDir, "python");
        var net = Task.Run(async () =>
        {
            // Confluent.Kafka's defaults but for the waits: 60 s, as a user who knows the cluster is starting would give.
            using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = bootstrap }).Build();
            await admin.CreateTopicsAsync([new TopicSpecification { Name = $"{tag}-net", NumPartitions = Fired.NetPartitions, ReplicationFactor = 1 }],
                new CreateTopicsOptions { RequestTimeout = Wait, OperationTimeout = Wait });
            // The controller has committed the topic; the broker GetMetadata asks may apply it a moment later.
            var deadline = DateTime.UtcNow + Wait;
            while (true)
            {
                var md = admin.GetMetadata($"{tag}-net", Wait);
                if (md.Topics.Any(t => t.Topic == $"{tag}-net" && t.Error.Code == ErrorCode.NoError && t.Partitions.Count > 0) || DateTime.UtcNow > deadline)
                    return md;
                await Task.Delay(100);
            }
        });
        var kcat = ExternalProcess.RunAsync(tools.Kcat, ["-b", bootstrap, "-L", "-m", "60"], TimeSpan.FromSeconds(90));
        var kafkaPython = ExternalProcess.RunAsync(tools.Python, [Path.Combine(python, "kafka_python_client.py"), "create", "--bootstrap", bootstrap,
            "--topic", $"{tag}-py", "--partitions", Fired.PythonPartitions.ToString(CultureInfo.InvariantCulture), "--timeout", "60"], TimeSpan.FromSeconds(150));
        var confluentPython = ExternalProcess.RunAsync(tools.ConfluentPython, [Path.Combine(python, "confluent_kafka_client.py"), "create", "--bootstrap", bootstrap,
            "--topic", $"{tag}-ck", "--partitions", Fired.ConfluentPartitions.ToString(CultureInfo.InvariantCulture), "--timeout", "60"], TimeSpan.FromSeconds(150));
        return new Fired(tag, net, kcat, kafkaPython, confluentPython);
    }

    /// <summary>
    /// Every client's answer: its topic created with the partitions asked for, and metadata that lists
    /// brokers (never none), each at its own port, among them the broker that answered. With
    /// <paramref name="all"/>, exactly <paramref name="brokers"/>; otherwise a node that got ready before
    /// its peers registered rightly lists only the registered ones (as Kafka's brokers do).
    /// </summary>
    private async Task CheckAsync(Fired fired, Dictionary<int, int> brokers, string bootstrap, bool all = false)
    {
        var md = await fired.Net;
        Assert.Equal(Fired.NetPartitions, md.Topics.Single(t => t.Topic == $"{fired.Tag}-net").Partitions.Count);
        CheckBrokers("Confluent.Kafka", md.Brokers.ToDictionary(b => b.BrokerId, b => b.Port), md.OriginatingBrokerId, brokers, all);

        var kcat = await fired.Kcat;
        output.WriteLine(kcat.Summary);
        Assert.True(kcat.ExitCode == 0, kcat.Describe());
        CheckBrokers("kcat", KcatBrokers(kcat), int.Parse(KcatAnsweredBy().Match(kcat.StdOut).Groups[1].Value, CultureInfo.InvariantCulture), brokers, all);

        var py = ClientTools.LastJsonLine(await fired.KafkaPython);
        output.WriteLine($"kafka-python: {py}");
        Assert.Equal(0, py.GetProperty("create_error").GetInt32());
        Assert.Equal(0, py.GetProperty("describe_error").GetInt32());
        Assert.Equal(Enumerable.Range(0, Fired.PythonPartitions), py.GetProperty("partitions").EnumerateArray().Select(p => p.GetInt32()));
        CheckBrokers("kafka-python", JsonBrokers(py), null, brokers, all);

        var ck = ClientTools.LastJsonLine(await fired.ConfluentPython);
        output.WriteLine($"confluent-kafka: {ck}");
        Assert.Equal(JsonValueKind.Null, ck.GetProperty("create_error").ValueKind);
        Assert.Equal(JsonValueKind.Null, ck.GetProperty("topic_error").ValueKind);
        Assert.Equal(Enumerable.Range(0, Fired.ConfluentPartitions), ck.GetProperty("partitions").EnumerateArray().Select(p => p.GetInt32()));
        CheckBrokers("confluent-kafka", JsonBrokers(ck), ck.GetProperty("answered_by").GetInt32(), brokers, all);

        // And from the broker's side, each topic once, with its partitions.
        // The topics were created through other nodes: this one may apply the last metadata records a moment later.
        await using var check = await RawKafkaClient.ConnectAsync(bootstrap.Split(',')[0]);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        MetadataResponse topics;
        while (true)
        {
            topics = await check.RequestAsync<MetadataResponse>(new MetadataRequest
            {
                Topics = [.. new[] { "net", "py", "ck" }.Select(s => new MetadataRequest.MetadataRequestTopic { Name = $"{fired.Tag}-{s}" })],
                AllowAutoTopicCreation = false,
            }, 12);
            if (topics.Topics.All(t => t.ErrorCode == 0) || DateTime.UtcNow > deadline) break;
            await Task.Delay(100);
        }
        Assert.All(topics.Topics, t => Assert.Equal(0, t.ErrorCode));
        Assert.Equal([Fired.NetPartitions, Fired.PythonPartitions, Fired.ConfluentPartitions], topics.Topics.Select(t => t.Partitions.Count));
    }

    private void CheckBrokers(string client, Dictionary<int, int> listed, int? answeredBy, Dictionary<int, int> brokers, bool all)
    {
        output.WriteLine($"{client}: brokers {string.Join(", ", listed.Select(b => $"{b.Key}@{b.Value}"))}, answered by {answeredBy?.ToString(CultureInfo.InvariantCulture) ?? "?"}");
        Assert.NotEmpty(listed);
        foreach (var (id, port) in listed)
            Assert.True(brokers.TryGetValue(id, out int expected) && expected == port, $"{client} lists broker {id} at port {port}");
        if (all) Assert.Equal(brokers, listed);
        if (answeredBy is { } a && a >= 0) Assert.Contains(a, listed.Keys);
    }

    private static Dictionary<int, int> JsonBrokers(JsonElement result) =>
        result.GetProperty("brokers").EnumerateArray().ToDictionary(b => b[0].GetInt32(), b => b[2].GetInt32());

    /// <summary>kcat -L: "N brokers:" then "  broker ID at HOST:PORT" per broker.</summary>
    private static Dictionary<int, int> KcatBrokers(ProcessResult kcat)
    {
        var count = KcatBrokerCount().Match(kcat.StdOut);
        Assert.True(count.Success, kcat.Describe());
        var listed = KcatBroker().Matches(kcat.StdOut).ToDictionary(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), m => int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));
        Assert.Equal(int.Parse(count.Groups[1].Value, CultureInfo.InvariantCulture), listed.Count);
        return listed;
    }

    [GeneratedRegex(@"^\s*(\d+) brokers:\s*$", RegexOptions.Multiline)]
    private static partial Regex KcatBrokerCount();

    [GeneratedRegex(@"^\s*broker (\d+) at 127\.0\.0\.1:(\d+)", RegexOptions.Multiline)]
    private static partial Regex KcatBroker();

    [GeneratedRegex(@"from broker (\d+):")]
    private static partial Regex KcatAnsweredBy();

    // ================================================================ the first, bare request

    private static async Task<(int ApiVersions, int Metadata)> SendApiVersionsAndMetadataAsync(RawKafkaClient raw)
    {
        // Pipelined, as the node is starting: both are held, then answered in order.
        int versions = await raw.SendAsync(new ApiVersionsRequest { ClientSoftwareName = "freshet-test", ClientSoftwareVersion = "1" }, 3);
        int metadata = await raw.SendAsync(new MetadataRequest { Topics = null }, 12);
        return (versions, metadata);
    }

    private static async Task CheckEarlyAnswerAsync(RawKafkaClient raw, (int ApiVersions, int Metadata) ids, int self, Dictionary<int, int> brokers)
    {
        var versions = await raw.ReadResponseAsync<ApiVersionsResponse>(3, ids.ApiVersions, Wait);
        Assert.Equal(0, versions.ErrorCode);
        Assert.Contains(versions.ApiKeys, k => k.ApiKey == (short)ApiKey.Metadata);
        var md = await raw.ReadResponseAsync<MetadataResponse>(12, ids.Metadata, Wait);
        Assert.False(string.IsNullOrEmpty(md.ClusterId));
        Assert.Contains(md.Brokers, b => b.NodeId == self && b.Port == brokers[self]);
        Assert.All(md.Brokers, b => Assert.Equal(brokers[b.NodeId], b.Port));
    }

    /// <summary>Waits for a condition polled every 20 ms: true once it holds; false after a minute or when <paramref name="failed"/> says it never will.</summary>
    private static async Task<bool> WaitUntilAsync(Func<bool> condition, Func<bool> failed)
    {
        var deadline = DateTime.UtcNow + Wait;
        while (!condition())
        {
            if (failed() || DateTime.UtcNow > deadline) return false;
            await Task.Delay(20);
        }
        return true;
    }
}
