using System.Text.Json;
using Confluent.Kafka;
using Freshet.Integration.Tests.Cluster;
using Freshet.Integration.Tests.Support;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Cli;

/// <summary>
/// `freshet partitions reassign` and `elect-leaders` run as real processes against three `freshet
/// server` processes; what they changed is checked with Confluent.Kafka's metadata.
/// </summary>
public sealed class PartitionsCommandTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("freshet-partitions-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string File(string name, string json)
    {
        string path = Path.Combine(_dir, name);
        System.IO.File.WriteAllText(path, json);
        return path;
    }

    private async Task<CliResult> Partitions(string bootstrap, params string[] args)
    {
        var r = await FreshetCli.RunAsync(["partitions", .. args, "--bootstrap-server", bootstrap], stdin: null, TimeSpan.FromSeconds(90));
        output.WriteLine($"$ freshet partitions {string.Join(' ', args)}\n{r}");
        return r;
    }

    /// <summary>Replicas, ISR and leader of one partition as a broker's metadata has them (Confluent.Kafka's view).</summary>
    private static (int[] Replicas, int[] Isr, int Leader) State(IAdminClient admin, string topic, int partition)
    {
        // A broker may not have applied the topic yet: no partition then, rather than an exception.
        var p = admin.GetMetadata(topic, TimeSpan.FromSeconds(10)).Topics.SingleOrDefault()?.Partitions.SingleOrDefault(p => p.PartitionId == partition);
        return p is null ? ([], [], -1) : (p.Replicas, p.InSyncReplicas, p.Leader);
    }

    private static async Task Eventually(Func<bool> condition, string what, int seconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"not within {seconds} s: {what}");
            await Task.Delay(200);
        }
    }

    /// <summary>The partitions of a reassignment document: "topic-partition" to replicas.</summary>
    private static Dictionary<string, int[]> Assignment(JsonElement doc)
    {
        Assert.Equal(1, doc.GetProperty("version").GetInt32());
        return doc.GetProperty("partitions").EnumerateArray().ToDictionary(
            p => $"{p.GetProperty("topic").GetString()}-{p.GetProperty("partition").GetInt32()}",
            p =>
            {
                int[] replicas = [.. p.GetProperty("replicas").EnumerateArray().Select(r => r.GetInt32())];
                Assert.Equal(replicas.Select(_ => "any"), p.GetProperty("log_dirs").EnumerateArray().Select(d => d.GetString()));
                return replicas;
            });
    }

    [Fact]
    public async Task BadFilesAndOptionsAreRefusedWithReadableMessages()
    {
        // Nothing listens there: each of these must fail before any request.
        string nowhere = $"127.0.0.1:{BrokerProcess.FreePort()}";
        var notJson = await Partitions(nowhere, "reassign", "--execute", "--reassignment-json-file", File("bad.json", "{\"version\":1,\"partitions\":[{\"topic\":\"t\",}"));
        Assert.Equal(1, notJson.ExitCode);
        Assert.Contains("bad.json: not valid JSON at line 1", notJson.Stderr, StringComparison.Ordinal);

        var duplicate = await Partitions(nowhere, "reassign", "--verify", "--reassignment-json-file",
            File("dup.json", """{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,1]}]}"""));
        Assert.Equal(1, duplicate.ExitCode);
        Assert.Contains("lists a broker twice", duplicate.Stderr, StringComparison.Ordinal);

        var logDir = await Partitions(nowhere, "reassign", "--execute", "--reassignment-json-file",
            File("dirs.json", """{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2],"log_dirs":["/data","any"]}]}"""));
        Assert.Equal(1, logDir.ExitCode);
        Assert.Contains("only \"any\" is supported", logDir.Stderr, StringComparison.Ordinal);

        var missingFile = await Partitions(nowhere, "reassign", "--cancel", "--reassignment-json-file", Path.Combine(_dir, "absent.json"));
        Assert.Equal(1, missingFile.ExitCode);
        Assert.Contains("cannot read", missingFile.Stderr, StringComparison.Ordinal);

        var twoModes = await Partitions(nowhere, "reassign", "--execute", "--verify", "--reassignment-json-file", "x.json");
        Assert.Equal(2, twoModes.ExitCode);
        Assert.Contains("give one of --generate, --execute, --verify, --cancel, --list", twoModes.Stderr, StringComparison.Ordinal);

        var noFile = await Partitions(nowhere, "reassign", "--execute");
        Assert.Equal(2, noFile.ExitCode);
        Assert.Contains("--execute needs --reassignment-json-file", noFile.Stderr, StringComparison.Ordinal);

        var badReplicas = await Partitions(nowhere, "reassign", "--topic", "t", "--partition", "0", "--replicas", "1,x");
        Assert.Equal(2, badReplicas.ExitCode);
        Assert.Contains("--replicas expects broker ids", badReplicas.Stderr, StringComparison.Ordinal);

        var noType = await Partitions(nowhere, "elect-leaders", "--all-topic-partitions");
        Assert.Equal(2, noType.ExitCode);
        Assert.Contains("--election-type", noType.Stderr, StringComparison.Ordinal);

        var unreachable = await Partitions(nowhere, "reassign", "--list");
        Assert.Equal(1, unreachable.ExitCode);
        Assert.Contains("no broker reachable", unreachable.Stderr, StringComparison.Ordinal);

        var help = await FreshetCli.RunAsync("--help");
        Assert.Contains("partitions", help.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ReassignGeneratesExecutesVerifiesListsAndCancelsAndElectLeadersMovesLeadership()
    {
        // A long session and no liveness probe: a SIGKILLed node stays registered and unfenced for the in-progress part.
        await using var cluster = new ClusterProcesses(3, new()
        {
            ["broker.session.timeout.ms"] = "60000",
            ["broker.session.probe.ms"] = "0",
            ["auto.leader.rebalance.enable"] = "false",
        });
        await cluster.StartAsync();
        string bootstrap = cluster.BootstrapServers;
        int controller = await cluster.ActiveControllerAsync(1);
        int victim = controller == 3 ? 2 : 3;
        int[] others = [.. new[] { 1, 2, 3 }.Where(n => n != victim)];
        await cluster.CreateTopicAsync("moves", [[1, 2], [2, 1]]);
        await cluster.CreateTopicAsync("stuck", [others]);
        using var admin = Clients.Admin(bootstrap);
        await Eventually(() => State(admin, "moves", 0).Isr.Length == 2 && State(admin, "moves", 1).Isr.Length == 2 && State(admin, "stuck", 0).Isr.Length == 2,
            "every replica in sync");

        // --generate: the current assignment and a proposal over brokers 2 and 3 that changes nothing yet.
        string topicsFile = File("topics.json", """{"version":1,"topics":[{"topic":"moves"}]}""");
        var generate = await Partitions(bootstrap, "reassign", "--generate", "--topics-to-move-json-file", topicsFile, "--broker-list", "2,3", "--json");
        Assert.Equal(0, generate.ExitCode);
        var generated = JsonDocument.Parse(generate.Stdout).RootElement;
        var current = Assignment(generated.GetProperty("current"));
        Assert.Equal([1, 2], current["moves-0"]);
        Assert.Equal([2, 1], current["moves-1"]);
        var proposed = Assignment(generated.GetProperty("proposed"));
        Assert.Equal(["moves-0", "moves-1"], proposed.Keys.Order());
        Assert.All(proposed.Values, r => Assert.Equal([2, 3], r.Order()));
        Assert.NotEqual(proposed["moves-0"][0], proposed["moves-1"][0]); // leaders spread
        Assert.Equal([1, 2], State(admin, "moves", 0).Replicas);
        var generateText = await Partitions(bootstrap, "reassign", "--generate", "--topics-to-move-json-file", topicsFile, "--broker-list", "2,3");
        Assert.Equal(0, generateText.ExitCode);
        Assert.Equal(proposed, Assignment(JsonDocument.Parse(generateText.Lines.Last()).RootElement));
        var generateUnknown = await Partitions(bootstrap, "reassign", "--generate", "--topics-to-move-json-file", topicsFile, "--broker-list", "2,7");
        Assert.Equal(1, generateUnknown.ExitCode);
        Assert.Contains("broker 7, not live", generateUnknown.Stderr, StringComparison.Ordinal);

        // --execute --wait: moves-0 gets broker 3 instead of 1 (data is copied), moves-1 only swaps its preferred leader.
        string plan = File("plan.json", """
            {"version":1,"partitions":[
              {"topic":"moves","partition":0,"replicas":[3,2]},
              {"topic":"moves","partition":1,"replicas":[1,2],"log_dirs":["any","any"]}]}
            """);
        var execute = await Partitions(bootstrap, "reassign", "--execute", "--reassignment-json-file", plan, "--wait");
        Assert.Equal(0, execute.ExitCode);
        var rollback = Assignment(JsonDocument.Parse(execute.Lines.First(l => l.StartsWith('{'))).RootElement);
        Assert.Equal(current, rollback);
        Assert.Contains(execute.Lines, l => l.StartsWith("moves-0", StringComparison.Ordinal) && l.Contains("1,2 -> 3,2", StringComparison.Ordinal) && l.EndsWith("started", StringComparison.Ordinal));
        Assert.Matches(@"Reassignment of 2 partitions completed in \d+\.\d s\.", execute.Stdout);
        // --wait ends once the controller has finished the move; the broker answering Metadata applies its record soon after.
        await Eventually(() => State(admin, "moves", 0).Replicas.SequenceEqual([3, 2]) && State(admin, "moves", 1).Replicas.SequenceEqual([1, 2]),
            "the brokers see the reassigned replicas");
        var moved = State(admin, "moves", 0);
        Assert.Equal([3, 2], moved.Replicas);
        Assert.Contains(3, moved.Isr);
        Assert.DoesNotContain(1, moved.Isr);
        var reordered = State(admin, "moves", 1);
        Assert.Equal([1, 2], reordered.Replicas);
        Assert.Equal(2, reordered.Leader); // a new order moves no leadership by itself

        var verify = await Partitions(bootstrap, "reassign", "--verify", "--reassignment-json-file", plan, "--json");
        Assert.Equal(0, verify.ExitCode);
        Assert.All(JsonDocument.Parse(verify.Stdout).RootElement.GetProperty("partitions").EnumerateArray(),
            p => Assert.Equal("complete", p.GetProperty("status").GetString()));

        // Refused before anything changes: a broker that is not live, a partition that does not exist.
        var unknownBroker = await Partitions(bootstrap, "reassign", "--topic", "moves", "--partition", "0", "--replicas", "3,9");
        Assert.Equal(1, unknownBroker.ExitCode);
        Assert.Contains("broker 9 (in the replicas of moves-0) is not a live broker", unknownBroker.Stderr, StringComparison.Ordinal);
        var noPartition = await Partitions(bootstrap, "reassign", "--execute", "--reassignment-json-file",
            File("missing.json", """{"version":1,"partitions":[{"topic":"moves","partition":5,"replicas":[1,2]},{"topic":"moves","partition":0,"replicas":[1,2]}]}"""));
        Assert.Equal(1, noPartition.ExitCode);
        Assert.Contains("partition moves-5 does not exist", noPartition.Stderr, StringComparison.Ordinal);
        Assert.Equal([3, 2], State(admin, "moves", 0).Replicas);

        // elect-leaders: the preferred replica of moves-1 (now broker 1) takes over; asking again is not needed.
        var elect = await Partitions(bootstrap, "elect-leaders", "--election-type", "preferred", "--topic", "moves", "--partition", "1");
        Assert.Equal(0, elect.ExitCode);
        Assert.Contains(elect.Lines, l => l.StartsWith("moves-1", StringComparison.Ordinal) && l.EndsWith("elected", StringComparison.Ordinal));
        await Eventually(() => State(admin, "moves", 1).Leader == 1, "broker 1 leads moves-1");
        var again = await Partitions(bootstrap, "elect-leaders", "--election-type", "preferred", "--path-to-json-file",
            File("elect.json", """{"partitions":[{"topic":"moves","partition":1},{"topic":"moves","partition":9}]}"""), "--json");
        Assert.Equal(1, again.ExitCode); // moves-9 does not exist
        var results = JsonDocument.Parse(again.Stdout).RootElement.GetProperty("partitions").EnumerateArray()
            .ToDictionary(p => p.GetProperty("partition").GetInt32(), p => p.GetProperty("error").GetString());
        Assert.Equal("ELECTION_NOT_NEEDED", results[1]);
        Assert.Equal("UNKNOWN_TOPIC_OR_PARTITION", results[9]);
        var unclean = await Partitions(bootstrap, "elect-leaders", "--election-type", "unclean", "--topic", "moves");
        Assert.Equal(0, unclean.ExitCode);
        Assert.Equal(2, unclean.Lines.Count(l => l.Contains("ELECTION_NOT_NEEDED: The partition has a live leader.", StringComparison.Ordinal)));
        var all = await Partitions(bootstrap, "elect-leaders", "--election-type", "preferred", "--all-topic-partitions");
        Assert.Equal(0, all.ExitCode);

        // In progress: a reassignment onto a SIGKILLed broker (still registered and unfenced) cannot finish.
        await cluster.Nodes[victim].KillAsync();
        string live = cluster.BootstrapWithout(victim);
        string target = $"{others[0]},{others[1]},{victim}";
        var stuck = await Partitions(live, "reassign", "--topic", "stuck", "--partition", "0", "--replicas", target, "--wait", "--wait-timeout-ms", "2000");
        Assert.Equal(1, stuck.ExitCode);
        Assert.Contains("Still in progress after", stuck.Stdout, StringComparison.Ordinal);
        var list = await Partitions(live, "reassign", "--list", "--json");
        Assert.Equal(0, list.ExitCode);
        var ongoing = JsonDocument.Parse(list.Stdout).RootElement.GetProperty("reassignments").EnumerateArray().Single();
        Assert.Equal("stuck", ongoing.GetProperty("topic").GetString());
        Assert.Equal([victim], ongoing.GetProperty("adding").EnumerateArray().Select(a => a.GetInt32()));
        var listText = await Partitions(live, "reassign", "--list");
        Assert.Contains(listText.Lines, l => l.StartsWith($"stuck  0", StringComparison.Ordinal) && l.Contains(target, StringComparison.Ordinal));
        var inProgress = await Partitions(live, "reassign", "--verify", "--topic", "stuck", "--partition", "0", "--replicas", target);
        Assert.Equal(3, inProgress.ExitCode);
        Assert.Contains("in-progress", inProgress.Stdout, StringComparison.Ordinal);

        var cancel = await Partitions(live, "reassign", "--cancel", "--topic", "stuck", "--partition", "0");
        Assert.Equal(0, cancel.ExitCode);
        Assert.Contains(cancel.Lines, l => l.StartsWith("stuck-0", StringComparison.Ordinal) && l.EndsWith("cancelled", StringComparison.Ordinal));
        var none = await Partitions(live, "reassign", "--list");
        Assert.Equal("No partition reassignment is in progress.", none.Lines.Single());
        var cancelAgain = await Partitions(live, "reassign", "--cancel", "--topic", "stuck", "--partition", "0");
        Assert.Equal(1, cancelAgain.ExitCode);
        Assert.Contains("NO_REASSIGNMENT_IN_PROGRESS: No ongoing reassignment for partition stuck-0.", cancelAgain.Stdout, StringComparison.Ordinal);
        // --verify asks the controller whether a reassignment is in progress and a broker for the replicas: wait
        // until both live brokers have applied the cancellation's record.
        foreach (var node in cluster.Nodes.Where(n => n.Key != victim))
        {
            using var nodeAdmin = Clients.Admin(node.Value.BootstrapServers);
            for (var deadline = DateTime.UtcNow.AddSeconds(30); !State(nodeAdmin, "stuck", 0).Replicas.SequenceEqual(others); await Task.Delay(100))
                Assert.True(DateTime.UtcNow < deadline, $"node {node.Key} still lists replicas {string.Join(",", State(nodeAdmin, "stuck", 0).Replicas)} 30 s after the cancellation");
        }
        var cancelled = await Partitions(live, "reassign", "--verify", "--topic", "stuck", "--partition", "0", "--replicas", target);
        Assert.Equal(1, cancelled.ExitCode);
        Assert.Contains($"no reassignment in progress, but the replicas are {others[0]},{others[1]}", cancelled.Stdout, StringComparison.Ordinal);
        using var liveAdmin = Clients.Admin(live);
        Assert.Equal(others, State(liveAdmin, "stuck", 0).Replicas);
    }
}
