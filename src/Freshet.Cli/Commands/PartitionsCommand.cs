using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Freshet.Protocol;
using Freshet.Protocol.Messages;

namespace Freshet.Cli.Commands;

/// <summary>
/// `freshet partitions`: moving replicas between brokers (reassign, after kafka-reassign-partitions.sh)
/// and electing leaders (elect-leaders, after kafka-leader-election.sh), with the same JSON files as
/// Kafka's tools. Sent as bare requests (<see cref="BareAdminClient"/>) to any broker, which forwards
/// them to the active controller.
/// </summary>
public static class PartitionsCommand
{
    public const string Usage = """
        usage: freshet partitions <subcommand> [options]

        Moves partition replicas between brokers and elects partition leaders.

        subcommands:
          reassign       --generate --topics-to-move-json-file F --broker-list 1,2,3
                         --execute --reassignment-json-file F [--wait]
                         --verify --reassignment-json-file F
                         --cancel --reassignment-json-file F
                         --list
                         --topic T --partition P --replicas 1,2,3 [--execute | --verify | --cancel] [--wait]
          elect-leaders  --election-type preferred|unclean (--topic T [--partition P] |
                         --all-topic-partitions | --path-to-json-file F)
        """ + "\n\n" + CommonOptions + "\n\nRun `freshet partitions <subcommand> --help` for one subcommand's details.";

    private const string ReassignUsage = """
        usage: freshet partitions reassign --generate --topics-to-move-json-file F --broker-list 1,2,3
               freshet partitions reassign --execute --reassignment-json-file F [--wait [--wait-timeout-ms N]]
               freshet partitions reassign --verify --reassignment-json-file F
               freshet partitions reassign --cancel --reassignment-json-file F
               freshet partitions reassign --list
               freshet partitions reassign --topic T --partition P --replicas 1,2,3 [--execute | --verify | --cancel] [--wait]

        Moves partition replicas to other brokers, as kafka-reassign-partitions.sh does and with its
        files. A reassignment file lists each partition's new replicas, the first being the
        preferred leader ("log_dirs" may be left out; only "any" is accepted):
          {"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[4,2,3],"log_dirs":["any","any","any"]}]}
        --topic/--partition/--replicas give one partition on the command line instead of a file
        (--execute is then the default).

          --generate  reads the topics of a file {"version":1,"topics":[{"topic":"t"}]} and prints their
                      current assignment and a proposed one that spreads each partition's replicas
                      (as many as it has now) round-robin over --broker-list, leaders included (no
                      rack awareness). Changes nothing: edit the proposal and pass it to --execute.
          --execute   first prints the current assignment of the file's partitions as a reassignment
                      file (keep it: executing it moves everything back), then starts the moves. The
                      controller adds the new replicas, waits until they have caught up and joined the
                      in-sync replicas, then drops the old ones (moving leadership off a dropped leader).
                      Every broker named must be live; a partition that does not exist stops the
                      command before anything changes. --wait blocks until every partition has its new
                      replicas and the added ones are in sync (ListPartitionReassignments and Metadata,
                      polled), printing each as it finishes and the elapsed time; --wait-timeout-ms
                      bounds the wait (default: none).
          --verify    reports per partition whether its reassignment is complete (the replicas are the
                      file's), still in progress, or neither (no reassignment in progress, but the
                      replicas differ: cancelled, or changed since).
          --cancel    stops the reassignments of the file's partitions: the replicas go back to what
                      they were before (replicas already copied are deleted again).
          --list      lists every reassignment in progress with its adding and removing replicas.

        Exit codes: 0 done; 1 a partition failed (its Kafka error name and message are printed) or the
        cluster could not be reached; 2 a usage mistake; 3 --verify found reassignments still in
        progress (and none failed).
        """ + "\n\n" + CommonOptions;

    private const string ElectUsage = """
        usage: freshet partitions elect-leaders --election-type preferred|unclean
                                                (--topic T [--partition P] | --all-topic-partitions | --path-to-json-file F)

        Elects partition leaders, as kafka-leader-election.sh does.
          preferred  makes the first replica of each partition its leader, where it is live and in sync
          unclean    elects a leader for partitions that have no live one, from the in-sync replicas if
                     any is live, otherwise from any live replica (records the old leader acknowledged
                     may be lost)
        The partitions: one (--topic T --partition P), every partition of a topic (--topic T alone),
        every partition of the cluster (--all-topic-partitions: only those where a leader was
        elected are reported), or a file {"partitions":[{"topic":"t","partition":0}]}.
        Per partition: elected, or the error, e.g. ELECTION_NOT_NEEDED (the leader is already the
        preferred replica; not a failure) or PREFERRED_LEADER_NOT_AVAILABLE.
        Exit code 1 when an election failed for a reason other than ELECTION_NOT_NEEDED.
        """ + "\n\n" + CommonOptions;

    private const string CommonOptions = """
        options:
          --json                print one JSON document instead of text
          --timeout-ms N        how long to wait for each answer of the cluster (default 30000)
          --bootstrap-server HOST:PORT[,...]  brokers to send the requests to (default localhost:9092);
                                the next one is tried when one cannot be reached (PLAINTEXT only)
          --help                this text
        """;

    /// <summary>Exit code of --verify while some reassignment is still running.</summary>
    public const int InProgressExitCode = 3;

    private static readonly HashSet<string> Flags = ["generate", "execute", "verify", "cancel", "list", "wait", "json", "all-topic-partitions", "help"];

    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
        {
            Console.Out.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        string sub = args[0];
        var cl = new CommandLine(args[1..], Flags);
        string help = sub switch
        {
            "reassign" => ReassignUsage,
            "elect-leaders" => ElectUsage,
            _ => throw new UsageException($"unknown partitions subcommand '{sub}' (reassign, elect-leaders)"),
        };
        if (cl.Has("help"))
        {
            Console.Out.WriteLine(help);
            return 0;
        }
        return sub == "reassign" ? await ReassignAsync(cl).ConfigureAwait(false) : await ElectLeadersAsync(cl).ConfigureAwait(false);
    }

    /// <summary>What both subcommands need: where the cluster is, how long to wait, how to print.</summary>
    private sealed class Context
    {
        public Context(CommandLine cl)
        {
            Settings = ClientSettings.Read(cl);
            Json = cl.Has("json");
            int ms = cl.GetInt("timeout-ms", 30_000);
            if (ms <= 0) throw new UsageException("--timeout-ms must be positive");
            Timeout = TimeSpan.FromMilliseconds(ms);
            cl.EnsureAllUsed();
            if (cl.Positionals.Count > 0) throw new UsageException($"unexpected argument '{cl.Positionals[0]}'");
        }

        public ClientSettings Settings { get; }
        public bool Json { get; }
        public TimeSpan Timeout { get; }

        public BareAdminClient Client() => BareAdminClient.Create(Settings, Timeout);
    }

    // ================================================================ reassign

    private enum Mode { Generate, Execute, Verify, Cancel, List }

    private static async Task<int> ReassignAsync(CommandLine cl)
    {
        var modes = new[] { ("generate", Mode.Generate), ("execute", Mode.Execute), ("verify", Mode.Verify), ("cancel", Mode.Cancel), ("list", Mode.List) }
            .Where(m => cl.Has(m.Item1)).ToList();
        string? file = cl.Get("reassignment-json-file");
        string? topicsFile = cl.Get("topics-to-move-json-file");
        string? brokerList = cl.Get("broker-list");
        string? topic = cl.Get("topic");
        string? partitionText = cl.Get("partition");
        string? replicasText = cl.Get("replicas");
        bool wait = cl.Has("wait");
        string? waitTimeoutText = cl.Get("wait-timeout-ms");
        if (modes.Count > 1) throw new UsageException($"give one of --generate, --execute, --verify, --cancel, --list (got --{modes[0].Item1} and --{modes[1].Item1})");
        if (modes.Count == 0 && topic is null) throw new UsageException("give one of --generate, --execute, --verify, --cancel, --list");
        var mode = modes.Count == 1 ? modes[0].Item2 : Mode.Execute;

        void NotWith(string? value, string option)
        {
            if (value is not null) throw new UsageException($"--{option} does not go with --{mode.ToString().ToLowerInvariant()}");
        }
        if (wait && mode != Mode.Execute) throw new UsageException("--wait goes with --execute only");
        if (waitTimeoutText is not null && !wait) throw new UsageException("--wait-timeout-ms needs --wait");
        if (mode != Mode.Generate)
        {
            NotWith(topicsFile, "topics-to-move-json-file");
            NotWith(brokerList, "broker-list");
        }
        if (mode is Mode.Generate or Mode.List)
        {
            NotWith(file, "reassignment-json-file");
            NotWith(topic, "topic");
            NotWith(partitionText, "partition");
            NotWith(replicasText, "replicas");
        }
        long waitTimeoutMs = cl.GetLong("wait-timeout-ms", 0);
        if (waitTimeoutText is not null && waitTimeoutMs <= 0) throw new UsageException("--wait-timeout-ms must be positive");
        var ctx = new Context(cl);

        if (mode == Mode.Generate)
        {
            if (topicsFile is null) throw new UsageException("--generate needs --topics-to-move-json-file");
            if (brokerList is null) throw new UsageException("--generate needs --broker-list");
            var brokers = PartitionFiles.ParseBrokerList(brokerList, "broker-list");
            var topics = PartitionFiles.ReadTopics(topicsFile);
            await using var generateClient = ctx.Client();
            return await GenerateAsync(generateClient, ctx, topics, brokers).ConfigureAwait(false);
        }
        if (mode == Mode.List)
        {
            await using var listClient = ctx.Client();
            return await ListAsync(listClient, ctx).ConfigureAwait(false);
        }

        // execute, verify, cancel: the partitions of a file, or one given on the command line
        List<PartitionReplicas> plan;
        if (file is not null && topic is not null) throw new UsageException("give either --reassignment-json-file or --topic/--partition/--replicas, not both");
        if (file is not null)
        {
            NotWith(partitionText, "partition");
            NotWith(replicasText, "replicas");
            plan = PartitionFiles.ReadReassignment(file);
        }
        else if (topic is not null)
        {
            if (topic.Length == 0) throw new UsageException("--topic must not be empty");
            int partition = cl.GetInt("partition", -1);
            if (partitionText is null) throw new UsageException("--topic needs --partition");
            if (partition < 0) throw new UsageException("--partition must not be negative");
            if (replicasText is null && mode != Mode.Cancel) throw new UsageException("--topic needs --replicas");
            var replicas = replicasText is null ? [] : PartitionFiles.ParseBrokerList(replicasText, "replicas");
            plan = [new PartitionReplicas(topic, partition, replicas)];
        }
        else
        {
            throw new UsageException($"--{mode.ToString().ToLowerInvariant()} needs --reassignment-json-file (or --topic, --partition and --replicas)");
        }

        await using var client = ctx.Client();
        return mode switch
        {
            Mode.Execute => await ExecuteAsync(client, ctx, plan, wait, waitTimeoutMs > 0 ? TimeSpan.FromMilliseconds(waitTimeoutMs) : null).ConfigureAwait(false),
            Mode.Verify => await VerifyAsync(client, ctx, plan).ConfigureAwait(false),
            _ => await CancelAsync(client, ctx, plan).ConfigureAwait(false),
        };
    }

    /// <summary>Topics of a Metadata answer by name; topics the cluster reported an error for are left out.</summary>
    private static Dictionary<string, MetadataResponse.MetadataResponseTopic> TopicsByName(MetadataResponse metadata) =>
        metadata.Topics.Where(t => t.Name is not null && t.ErrorCode == 0).ToDictionary(t => t.Name!, StringComparer.Ordinal);

    private static MetadataResponse.MetadataResponsePartition? Find(Dictionary<string, MetadataResponse.MetadataResponseTopic> topics, string topic, int partition) =>
        topics.TryGetValue(topic, out var t) ? t.Partitions.FirstOrDefault(p => p.PartitionIndex == partition) : null;

    private static string Ids(IEnumerable<int> ids) => string.Join(',', ids);

    private static JsonNode? IdsJson(IEnumerable<int> ids) => new JsonArray([.. ids.Select(i => (JsonNode?)i)]);

    private static string ErrorText(short code, string? message)
    {
        var error = (ErrorCode)code;
        string name = error.KafkaName();
        return string.IsNullOrEmpty(message) ? $"{name}: {error.DefaultMessage()}" : $"{name}: {message}";
    }

    private static async Task<int> GenerateAsync(BareAdminClient client, Context ctx, List<string> topics, List<int> brokers)
    {
        var metadata = await client.MetadataAsync(topics).ConfigureAwait(false);
        var live = metadata.Brokers.Select(b => b.NodeId).ToHashSet();
        var unknown = brokers.Where(b => !live.Contains(b)).ToList();
        if (unknown.Count > 0)
            throw new CommandFailedException($"--broker-list names broker{(unknown.Count > 1 ? "s" : "")} {Ids(unknown)}, not live in the cluster (live brokers: {Ids(live.Order())})");
        var byName = metadata.Topics.Where(t => t.Name is not null).ToDictionary(t => t.Name!, StringComparer.Ordinal);
        var current = new List<PartitionReplicas>();
        var proposed = new List<PartitionReplicas>();
        var sortedBrokers = brokers.Order().ToList();
        for (int ti = 0; ti < topics.Count; ti++)
        {
            string name = topics[ti];
            if (!byName.TryGetValue(name, out var t)) throw new CommandFailedException($"topic '{name}': no answer for it from the cluster");
            if (t.ErrorCode != 0) throw new CommandFailedException($"topic '{name}': {ErrorText(t.ErrorCode, null)}");
            foreach (var p in t.Partitions.OrderBy(p => p.PartitionIndex))
            {
                int rf = p.ReplicaNodes.Count;
                if (rf > sortedBrokers.Count)
                    throw new CommandFailedException($"{name}-{p.PartitionIndex} has {rf} replicas but --broker-list has only {sortedBrokers.Count} broker{(sortedBrokers.Count > 1 ? "s" : "")}");
                current.Add(new PartitionReplicas(name, p.PartitionIndex, [.. p.ReplicaNodes]));
                // Round-robin: partition p of the ti-th topic starts at broker (ti + p) and takes the next rf.
                int start = (ti + p.PartitionIndex) % sortedBrokers.Count;
                proposed.Add(new PartitionReplicas(name, p.PartitionIndex, [.. Enumerable.Range(0, rf).Select(j => sortedBrokers[(start + j) % sortedBrokers.Count])]));
            }
        }
        var currentJson = PartitionFiles.ReassignmentJson(current);
        var proposedJson = PartitionFiles.ReassignmentJson(proposed);
        if (ctx.Json)
        {
            Console.Out.WriteLine(Output.ToIndentedJson(new JsonObject { ["current"] = currentJson, ["proposed"] = proposedJson }));
            return 0;
        }
        Console.Out.WriteLine("Current partition replica assignment:");
        Console.Out.WriteLine(Output.ToJsonLine(currentJson));
        Console.Out.WriteLine();
        Console.Out.WriteLine("Proposed partition reassignment (nothing changed yet; pass it to --execute --reassignment-json-file):");
        Console.Out.WriteLine(Output.ToJsonLine(proposedJson));
        return 0;
    }

    private static async Task<int> ListAsync(BareAdminClient client, Context ctx)
    {
        var response = await client.SendAsync<ListPartitionReassignmentsResponse>(new ListPartitionReassignmentsRequest
        {
            Topics = null,
            TimeoutMs = (int)ctx.Timeout.TotalMilliseconds,
        }, 0).ConfigureAwait(false);
        if (response.ErrorCode != 0) throw new CommandFailedException(ErrorText(response.ErrorCode, response.ErrorMessage));
        var ongoing = response.Topics.SelectMany(t => t.Partitions.Select(p => (Topic: t.Name, P: p)))
            .OrderBy(x => x.Topic, StringComparer.Ordinal).ThenBy(x => x.P.PartitionIndex).ToList();
        if (ctx.Json)
        {
            Console.Out.WriteLine(Output.ToIndentedJson(new JsonObject
            {
                ["reassignments"] = new JsonArray([.. ongoing.Select(x => (JsonNode?)new JsonObject
                {
                    ["topic"] = x.Topic,
                    ["partition"] = x.P.PartitionIndex,
                    ["replicas"] = IdsJson(x.P.Replicas),
                    ["adding"] = IdsJson(x.P.AddingReplicas),
                    ["removing"] = IdsJson(x.P.RemovingReplicas),
                })]),
            }));
            return 0;
        }
        if (ongoing.Count == 0)
        {
            Console.Out.WriteLine("No partition reassignment is in progress.");
            return 0;
        }
        Console.Out.WriteLine("Reassignments in progress:");
        var table = new Table("TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING");
        foreach (var (t, p) in ongoing)
            table.Add(t, p.PartitionIndex, Ids(p.Replicas), p.AddingReplicas.Count > 0 ? Ids(p.AddingReplicas) : "-", p.RemovingReplicas.Count > 0 ? Ids(p.RemovingReplicas) : "-");
        table.Write(Console.Out, "  ");
        return 0;
    }

    /// <summary>One partition's answer to AlterPartitionReassignments: null error when accepted.</summary>
    private sealed record AlterResult(PartitionReplicas Partition, short ErrorCode, string? Message);

    private static async Task<List<AlterResult>> AlterAsync(BareAdminClient client, Context ctx, List<PartitionReplicas> plan, bool cancel)
    {
        var response = await client.SendAsync<AlterPartitionReassignmentsResponse>(new AlterPartitionReassignmentsRequest
        {
            TimeoutMs = (int)ctx.Timeout.TotalMilliseconds,
            Topics = [.. plan.GroupBy(p => p.Topic).Select(g => new AlterPartitionReassignmentsRequest.ReassignableTopic
            {
                Name = g.Key,
                Partitions = [.. g.Select(p => new AlterPartitionReassignmentsRequest.ReassignablePartition
                {
                    PartitionIndex = p.Partition,
                    Replicas = cancel ? null : [.. p.Replicas],
                })],
            })],
        }, 0).ConfigureAwait(false);
        if (response.ErrorCode != 0) throw new CommandFailedException(ErrorText(response.ErrorCode, response.ErrorMessage));
        var answers = response.Responses.SelectMany(t => t.Partitions.Select(p => (t.Name, p.PartitionIndex, p.ErrorCode, p.ErrorMessage)))
            .ToDictionary(a => (a.Name, a.PartitionIndex));
        return [.. plan.Select(p => answers.TryGetValue((p.Topic, p.Partition), out var a)
            ? new AlterResult(p, a.ErrorCode, a.ErrorMessage)
            : new AlterResult(p, (short)ErrorCode.UnknownServerError, "The cluster's answer did not mention this partition."))];
    }

    /// <summary>The partitions' current replicas; fails, naming them, when some do not exist.</summary>
    private static List<PartitionReplicas> CurrentAssignment(MetadataResponse metadata, List<PartitionReplicas> plan)
    {
        var topics = TopicsByName(metadata);
        var missing = plan.Where(p => Find(topics, p.Topic, p.Partition) is null).Select(p => p.Name).ToList();
        if (missing.Count > 0)
        {
            var topicErrors = metadata.Topics.Where(t => t.ErrorCode != 0 && t.Name is not null && plan.Any(p => p.Topic == t.Name))
                .Select(t => $"topic '{t.Name}': {ErrorText(t.ErrorCode, null)}");
            throw new CommandFailedException($"partition{(missing.Count > 1 ? "s" : "")} {string.Join(", ", missing)} do{(missing.Count > 1 ? "" : "es")} not exist"
                + (topicErrors.Any() ? $" ({string.Join("; ", topicErrors)})" : "") + "; nothing was changed");
        }
        return [.. plan.Select(p => new PartitionReplicas(p.Topic, p.Partition, [.. Find(topics, p.Topic, p.Partition)!.ReplicaNodes]))];
    }

    private static async Task<int> ExecuteAsync(BareAdminClient client, Context ctx, List<PartitionReplicas> plan, bool wait, TimeSpan? waitTimeout)
    {
        MetadataResponse metadata;
        HashSet<int> live;
        List<(PartitionReplicas, int)> notLive;
        for (int attempt = 0; ; attempt++)
        {
            metadata = await client.MetadataAsync(plan.Select(p => p.Topic)).ConfigureAwait(false);
            live = metadata.Brokers.Select(b => b.NodeId).ToHashSet();
            notLive = [.. plan.SelectMany(p => p.Replicas.Where(r => !live.Contains(r)).Select(r => (p, r)))];
            // A broker that has just started is live for the controller a moment before the broker
            // answering here has applied that: look again for a few seconds before refusing.
            if (notLive.Count == 0 || attempt == 6) break;
            await Task.Delay(500).ConfigureAwait(false);
        }
        var current = CurrentAssignment(metadata, plan);
        if (notLive.Count > 0)
        {
            var (p, r) = notLive[0];
            throw new CommandFailedException($"broker {r} (in the replicas of {p.Name}) is not a live broker of the cluster "
                + $"(live brokers: {Ids(live.Order())}); nothing was changed");
        }
        var rollback = PartitionFiles.ReassignmentJson(current);
        if (!ctx.Json)
        {
            Console.Out.WriteLine("Current partition replica assignment (save it: --execute with this file moves the replicas back):");
            Console.Out.WriteLine(Output.ToJsonLine(rollback));
            Console.Out.WriteLine();
        }

        var results = await AlterAsync(client, ctx, plan, cancel: false).ConfigureAwait(false);
        var started = results.Where(r => r.ErrorCode == 0).Select(r => r.Partition).ToList();
        bool failed = started.Count < results.Count;
        if (!ctx.Json)
        {
            var table = new Table("PARTITION", "REPLICAS", "RESULT");
            foreach (var r in results)
            {
                var from = current.First(c => c.Topic == r.Partition.Topic && c.Partition == r.Partition.Partition);
                table.Add(r.Partition.Name, $"{Ids(from.Replicas)} -> {Ids(r.Partition.Replicas)}",
                    r.ErrorCode == 0 ? "started" : ErrorText(r.ErrorCode, r.Message));
            }
            Console.Out.WriteLine(started.Count == results.Count
                ? $"Started the reassignment of {results.Count} partition{(results.Count > 1 ? "s" : "")}:"
                : $"Started the reassignment of {started.Count} of {results.Count} partitions:");
            table.Write(Console.Out, "  ");
        }

        var finished = new Dictionary<string, (double Seconds, List<int> Replicas, List<int> Isr)>(StringComparer.Ordinal);
        var stopped = new Dictionary<string, string>(StringComparer.Ordinal);
        var sw = Stopwatch.StartNew();
        bool timedOut = false;
        if (wait && started.Count > 0)
        {
            if (!ctx.Json) Console.Out.WriteLine("Waiting for the reassignment to finish...");
            timedOut = !await WaitAsync(client, ctx, started, current, waitTimeout, sw, finished, stopped).ConfigureAwait(false);
        }

        if (ctx.Json)
        {
            var partitions = new JsonArray();
            foreach (var r in results)
            {
                var o = new JsonObject
                {
                    ["topic"] = r.Partition.Topic,
                    ["partition"] = r.Partition.Partition,
                    ["replicas"] = IdsJson(r.Partition.Replicas),
                    ["error"] = r.ErrorCode == 0 ? null : ((ErrorCode)r.ErrorCode).KafkaName(),
                    ["message"] = r.ErrorCode == 0 ? null : r.Message ?? ((ErrorCode)r.ErrorCode).DefaultMessage(),
                };
                if (wait && r.ErrorCode == 0)
                {
                    o["status"] = finished.ContainsKey(r.Partition.Name) ? "complete" : stopped.ContainsKey(r.Partition.Name) ? "stopped" : "in-progress";
                    if (finished.TryGetValue(r.Partition.Name, out var f)) o["seconds"] = Math.Round(f.Seconds, 3);
                    if (stopped.TryGetValue(r.Partition.Name, out var why)) o["message"] = why;
                }
                partitions.Add(o);
            }
            var doc = new JsonObject { ["current"] = rollback, ["partitions"] = partitions };
            if (wait) doc["elapsedSeconds"] = Math.Round(sw.Elapsed.TotalSeconds, 3);
            Console.Out.WriteLine(Output.ToIndentedJson(doc));
        }
        else if (wait && started.Count > 0)
        {
            if (timedOut)
                Console.Out.WriteLine($"Still in progress after {sw.Elapsed.TotalSeconds:F1} s: {string.Join(", ", started.Where(p => !finished.ContainsKey(p.Name) && !stopped.ContainsKey(p.Name)).Select(p => p.Name))} "
                    + "(the reassignment goes on; --verify reports on it, --cancel stops it)");
            else if (stopped.Count == 0)
                Console.Out.WriteLine($"Reassignment of {started.Count} partition{(started.Count > 1 ? "s" : "")} completed in {sw.Elapsed.TotalSeconds:F1} s.");
        }
        return failed || timedOut || stopped.Count > 0 ? 1 : 0;
    }

    /// <summary>
    /// Polls until every started partition has its target replicas, no reassignment in progress, and
    /// its added replicas in the ISR; a partition whose reassignment ended with other replicas
    /// (cancelled, or replaced by another) is reported as stopped. False when the timeout came first.
    /// </summary>
    private static async Task<bool> WaitAsync(BareAdminClient client, Context ctx, List<PartitionReplicas> started, List<PartitionReplicas> before,
        TimeSpan? timeout, Stopwatch sw, Dictionary<string, (double Seconds, List<int> Replicas, List<int> Isr)> finished, Dictionary<string, string> stopped)
    {
        var mismatchSince = new Dictionary<string, TimeSpan>(StringComparer.Ordinal);
        while (true)
        {
            var pending = started.Where(p => !finished.ContainsKey(p.Name) && !stopped.ContainsKey(p.Name)).ToList();
            if (pending.Count == 0) return true;
            if (timeout is { } t && sw.Elapsed >= t) return false;
            var ongoing = await OngoingAsync(client, ctx, pending).ConfigureAwait(false);
            var topics = TopicsByName(await client.MetadataAsync(pending.Select(p => p.Topic)).ConfigureAwait(false));
            foreach (var p in pending)
            {
                if (ongoing.ContainsKey((p.Topic, p.Partition)))
                {
                    mismatchSince.Remove(p.Name);
                    continue;
                }
                var now = Find(topics, p.Topic, p.Partition);
                if (now is null) { stopped[p.Name] = "the partition no longer exists"; continue; }
                var added = p.Replicas.Except(before.First(b => b.Name == p.Name).Replicas);
                if (now.ReplicaNodes.SequenceEqual(p.Replicas))
                {
                    mismatchSince.Remove(p.Name);
                    if (!added.All(now.IsrNodes.Contains)) continue;
                    finished[p.Name] = (sw.Elapsed.TotalSeconds, now.ReplicaNodes, now.IsrNodes);
                    if (!ctx.Json)
                        Console.Out.WriteLine($"  {p.Name} done after {sw.Elapsed.TotalSeconds:F1} s: replicas {Ids(now.ReplicaNodes)}, in sync {Ids(now.IsrNodes)}, leader {now.LeaderId}");
                    continue;
                }
                // No reassignment in progress but other replicas: the broker's metadata may trail the
                // controller by a moment; only a mismatch that lasts means the reassignment was stopped.
                if (!mismatchSince.TryGetValue(p.Name, out var since)) mismatchSince[p.Name] = since = sw.Elapsed;
                if (sw.Elapsed - since > TimeSpan.FromSeconds(3))
                {
                    string why = $"no reassignment in progress, but the replicas are {Ids(now.ReplicaNodes)}, not {Ids(p.Replicas)} (cancelled, or changed by another reassignment)";
                    stopped[p.Name] = why;
                    if (!ctx.Json) Console.Out.WriteLine($"  {p.Name} stopped: {why}");
                }
            }
            await Task.Delay(250).ConfigureAwait(false);
        }
    }

    /// <summary>The reassignments in progress among <paramref name="partitions"/>.</summary>
    private static async Task<Dictionary<(string, int), ListPartitionReassignmentsResponse.OngoingPartitionReassignment>> OngoingAsync(
        BareAdminClient client, Context ctx, IEnumerable<PartitionReplicas> partitions)
    {
        var response = await client.SendAsync<ListPartitionReassignmentsResponse>(new ListPartitionReassignmentsRequest
        {
            TimeoutMs = (int)ctx.Timeout.TotalMilliseconds,
            Topics = [.. partitions.GroupBy(p => p.Topic).Select(g => new ListPartitionReassignmentsRequest.ListPartitionReassignmentsTopics
            {
                Name = g.Key,
                PartitionIndexes = [.. g.Select(p => p.Partition)],
            })],
        }, 0).ConfigureAwait(false);
        if (response.ErrorCode != 0) throw new CommandFailedException(ErrorText(response.ErrorCode, response.ErrorMessage));
        return response.Topics.SelectMany(t => t.Partitions.Select(p => (t.Name, p))).ToDictionary(x => (x.Name, x.p.PartitionIndex), x => x.p);
    }

    private static async Task<int> VerifyAsync(BareAdminClient client, Context ctx, List<PartitionReplicas> plan)
    {
        // status per partition: complete, in-progress, or failed (with why)
        var status = new Dictionary<string, (string Status, string Detail)>(StringComparer.Ordinal);
        for (int attempt = 0; ; attempt++)
        {
            var metadata = await client.MetadataAsync(plan.Select(p => p.Topic)).ConfigureAwait(false);
            var ongoing = await OngoingAsync(client, ctx, plan).ConfigureAwait(false);
            var topics = TopicsByName(metadata);
            foreach (var p in plan)
            {
                var now = Find(topics, p.Topic, p.Partition);
                if (ongoing.TryGetValue((p.Topic, p.Partition), out var o))
                    status[p.Name] = ("in-progress", $"replicas {Ids(o.Replicas)}"
                        + (o.AddingReplicas.Count > 0 ? $", adding {Ids(o.AddingReplicas)}" : "")
                        + (o.RemovingReplicas.Count > 0 ? $", removing {Ids(o.RemovingReplicas)}" : ""));
                else if (now is null)
                    status[p.Name] = ("failed", "the partition does not exist");
                else if (now.ReplicaNodes.SequenceEqual(p.Replicas))
                    status[p.Name] = ("complete", $"replicas {Ids(now.ReplicaNodes)}, in sync {Ids(now.IsrNodes)}");
                else
                    status[p.Name] = ("failed", $"no reassignment in progress, but the replicas are {Ids(now.ReplicaNodes)}, not {Ids(p.Replicas)}");
            }
            // The broker answering Metadata may trail the controller by a moment: look again before calling a mismatch.
            if (attempt == 2 || status.Values.All(s => s.Status != "failed")) break;
            await Task.Delay(500).ConfigureAwait(false);
        }
        if (ctx.Json)
        {
            Console.Out.WriteLine(Output.ToIndentedJson(new JsonObject
            {
                ["partitions"] = new JsonArray([.. plan.Select(p => (JsonNode?)new JsonObject
                {
                    ["topic"] = p.Topic,
                    ["partition"] = p.Partition,
                    ["replicas"] = IdsJson(p.Replicas),
                    ["status"] = status[p.Name].Status,
                    ["detail"] = status[p.Name].Detail,
                })]),
            }));
        }
        else
        {
            Console.Out.WriteLine("Status of partition reassignment:");
            var table = new Table("PARTITION", "STATUS", "DETAIL");
            foreach (var p in plan) table.Add(p.Name, status[p.Name].Status, status[p.Name].Detail);
            table.Write(Console.Out, "  ");
        }
        if (status.Values.Any(s => s.Status == "failed")) return 1;
        return status.Values.Any(s => s.Status == "in-progress") ? InProgressExitCode : 0;
    }

    private static async Task<int> CancelAsync(BareAdminClient client, Context ctx, List<PartitionReplicas> plan)
    {
        var results = await AlterAsync(client, ctx, plan, cancel: true).ConfigureAwait(false);
        if (ctx.Json)
        {
            Console.Out.WriteLine(Output.ToIndentedJson(new JsonObject
            {
                ["partitions"] = new JsonArray([.. results.Select(r => (JsonNode?)new JsonObject
                {
                    ["topic"] = r.Partition.Topic,
                    ["partition"] = r.Partition.Partition,
                    ["error"] = r.ErrorCode == 0 ? null : ((ErrorCode)r.ErrorCode).KafkaName(),
                    ["message"] = r.ErrorCode == 0 ? null : r.Message ?? ((ErrorCode)r.ErrorCode).DefaultMessage(),
                })]),
            }));
        }
        else
        {
            var table = new Table("PARTITION", "RESULT");
            foreach (var r in results) table.Add(r.Partition.Name, r.ErrorCode == 0 ? "cancelled" : ErrorText(r.ErrorCode, r.Message));
            table.Write(Console.Out);
        }
        return results.All(r => r.ErrorCode == 0) ? 0 : 1;
    }

    // ================================================================ elect-leaders

    private static async Task<int> ElectLeadersAsync(CommandLine cl)
    {
        string? typeText = cl.Get("election-type");
        string? topic = cl.Get("topic");
        string? partitionText = cl.Get("partition");
        bool all = cl.Has("all-topic-partitions");
        string? file = cl.Get("path-to-json-file");
        int partition = cl.GetInt("partition", -1);
        var ctx = new Context(cl);
        if (typeText is null) throw new UsageException("missing required option --election-type (preferred or unclean)");
        sbyte type = typeText.ToLowerInvariant() switch
        {
            "preferred" => 0,
            "unclean" => 1,
            _ => throw new UsageException($"--election-type must be preferred or unclean, got '{typeText}'"),
        };
        int sources = (topic is null ? 0 : 1) + (all ? 1 : 0) + (file is null ? 0 : 1);
        if (sources != 1) throw new UsageException("give exactly one of --topic, --all-topic-partitions, --path-to-json-file");
        if (partitionText is not null && topic is null) throw new UsageException("--partition goes with --topic");
        if (partitionText is not null && partition < 0) throw new UsageException("--partition must not be negative");
        if (topic is not null && topic.Length == 0) throw new UsageException("--topic must not be empty");

        await using var client = ctx.Client();
        List<(string Topic, int Partition)>? partitions = null;
        if (file is not null)
        {
            partitions = PartitionFiles.ReadPartitions(file);
        }
        else if (topic is not null && partitionText is not null)
        {
            partitions = [(topic, partition)];
        }
        else if (topic is not null)
        {
            var metadata = await client.MetadataAsync([topic]).ConfigureAwait(false);
            var t = metadata.Topics.FirstOrDefault(t => t.Name == topic);
            if (t is null || t.ErrorCode != 0) throw new CommandFailedException($"topic '{topic}': {ErrorText(t?.ErrorCode ?? (short)ErrorCode.UnknownTopicOrPartition, null)}");
            partitions = [.. t.Partitions.Select(p => (topic, p.PartitionIndex)).Order()];
        }

        var response = await client.SendAsync<ElectLeadersResponse>(new ElectLeadersRequest
        {
            ElectionType = type,
            TopicPartitions = partitions?.GroupBy(p => p.Topic).Select(g => new ElectLeadersRequest.TopicPartitionsData
            {
                Topic = g.Key,
                Partitions = [.. g.Select(p => p.Partition)],
            }).ToList(),
            TimeoutMs = (int)ctx.Timeout.TotalMilliseconds,
        }, 2).ConfigureAwait(false);
        if (response.ErrorCode != 0) throw new CommandFailedException(ErrorText(response.ErrorCode, null));
        var answers = response.ReplicaElectionResults.SelectMany(t => t.PartitionResult.Select(p => (t.Topic, p.PartitionId, p.ErrorCode, p.ErrorMessage))).ToList();
        // In the order asked for; with --all-topic-partitions, in topic and partition order.
        var byPartition = answers.ToDictionary(a => (a.Topic, a.PartitionId));
        var ordered = partitions is null
            ? answers.OrderBy(a => a.Topic, StringComparer.Ordinal).ThenBy(a => a.PartitionId).ToList()
            : [.. partitions.Select(p => byPartition.TryGetValue(p, out var a)
                ? a : (p.Topic, p.Partition, (short)ErrorCode.UnknownServerError, "The cluster's answer did not mention this partition."))];
        bool failed = ordered.Any(a => a.ErrorCode is not (0 or (short)ErrorCode.ElectionNotNeeded));
        string typeName = type == 0 ? "preferred" : "unclean";
        if (ctx.Json)
        {
            Console.Out.WriteLine(Output.ToIndentedJson(new JsonObject
            {
                ["electionType"] = typeName,
                ["partitions"] = new JsonArray([.. ordered.Select(a => (JsonNode?)new JsonObject
                {
                    ["topic"] = a.Topic,
                    ["partition"] = a.PartitionId,
                    ["error"] = a.ErrorCode == 0 ? null : ((ErrorCode)a.ErrorCode).KafkaName(),
                    ["message"] = a.ErrorCode == 0 ? null : a.ErrorMessage ?? ((ErrorCode)a.ErrorCode).DefaultMessage(),
                })]),
            }));
            return failed ? 1 : 0;
        }
        if (ordered.Count == 0)
        {
            Console.Out.WriteLine(type == 0
                ? "No partition needed a preferred leader election (each leader is its preferred replica, or that replica is not in sync)."
                : "No partition needed an unclean leader election (each has a live leader, or no live replica).");
            return 0;
        }
        int elected = ordered.Count(a => a.ErrorCode == 0);
        Console.Out.WriteLine($"{char.ToUpperInvariant(typeName[0])}{typeName[1..]} leader election: {elected} of {ordered.Count} partition{(ordered.Count > 1 ? "s" : "")} got a new leader.");
        var table = new Table("PARTITION", "RESULT");
        foreach (var a in ordered) table.Add($"{a.Topic}-{a.PartitionId}", a.ErrorCode == 0 ? "elected" : ErrorText(a.ErrorCode, a.ErrorMessage));
        table.Write(Console.Out, "  ");
        return failed ? 1 : 0;
    }
}
