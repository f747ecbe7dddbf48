using System.Text.Json.Nodes;
using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace Freshet.Cli.Commands;

/// <summary>
/// `freshet topics`: create, list, describe, alter and delete topics on any Kafka-protocol
/// cluster through Confluent.Kafka's admin client.
/// </summary>
public static class TopicsCommand
{
    public const string Usage = """
        usage: freshet topics <subcommand> [options]

        Manages the topics of any Kafka-protocol cluster.

        subcommands:
          create    --topic T [--partitions N] [--replication-factor R] [--config k=v]... [--if-not-exists]
          list      [--exclude-internal]
          describe  [--topic T]... [--exclude-internal]
          alter     --topic T [--partitions N] [--config k=v]... [--delete-config k]...
          delete    --topic T [--if-exists]

        options:
          --format table|json   how create, list and describe print their result (default table)
          --timeout-ms N        how long to wait for the cluster (default 30000)
        """ + "\n\n" + ClientSettings.CommonUsage + "\n\n" + """
        Run `freshet topics <subcommand> --help` for one subcommand's details.
        """;

    private const string CreateUsage = """
        usage: freshet topics create --topic T [--partitions N] [--replication-factor R]
                                     [--config key=value]... [--if-not-exists] [--format table|json]

        Creates a topic. Without --partitions or --replication-factor the broker's defaults apply
        (num.partitions, default.replication.factor). --config sets a topic config (repeatable),
        e.g. --config retention.ms=86400000. With --if-not-exists an existing topic is not an error.
        Prints the topic's id, partition count and replication factor.
        """ + "\n\n" + FormatOptions;

    private const string ListUsage = """
        usage: freshet topics list [--exclude-internal] [--format table|json]

        Lists the cluster's topics with their partition count, replication factor and id.
        --exclude-internal leaves out topics the broker marks internal (e.g. __consumer_offsets).
        """ + "\n\n" + FormatOptions;

    private const string DescribeUsage = """
        usage: freshet topics describe [--topic T]... [--exclude-internal] [--format table|json]

        Describes the given topics (all topics without --topic): id, partition count, replication
        factor, the configs whose value does not come from the built-in default, and per partition
        the leader, replicas, in-sync replicas and the low and high watermark offsets.
        """ + "\n\n" + FormatOptions;

    private const string AlterUsage = """
        usage: freshet topics alter --topic T [--partitions N] [--config key=value]... [--delete-config key]...

        Changes a topic: --partitions raises the partition count to N (it can only grow),
        --config sets a topic config, --delete-config removes an override so the default applies
        again. Both config options repeat.
        """ + "\n\n" + CommonOptions;

    private const string DeleteUsage = """
        usage: freshet topics delete --topic T [--if-exists]

        Deletes a topic and its data. With --if-exists a missing topic is not an error.
        """ + "\n\n" + CommonOptions;

    private const string CommonOptions = """
        options:
          --timeout-ms N        how long to wait for the cluster (default 30000)
        """ + "\n\n" + ClientSettings.CommonUsage;

    private const string FormatOptions = """
        options:
          --format table|json   an aligned table (default) or one JSON document
          --timeout-ms N        how long to wait for the cluster (default 30000)
        """ + "\n\n" + ClientSettings.CommonUsage;

    private static readonly HashSet<string> Flags = ["if-not-exists", "if-exists", "exclude-internal", "help"];

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
            "create" => CreateUsage,
            "list" => ListUsage,
            "describe" => DescribeUsage,
            "alter" => AlterUsage,
            "delete" => DeleteUsage,
            _ => throw new UsageException($"unknown topics subcommand '{sub}' (create, list, describe, alter, delete)"),
        };
        if (cl.Has("help"))
        {
            Console.Out.WriteLine(help);
            return 0;
        }
        return sub switch
        {
            "create" => await CreateAsync(cl).ConfigureAwait(false),
            "list" => List(cl),
            "describe" => await DescribeAsync(cl).ConfigureAwait(false),
            "alter" => await AlterAsync(cl).ConfigureAwait(false),
            _ => await DeleteAsync(cl).ConfigureAwait(false),
        };
    }

    /// <summary>What every subcommand needs: how to reach the cluster, how long to wait, how to print.</summary>
    private sealed class Context
    {
        public Context(CommandLine cl, bool hasFormat)
        {
            Settings = ClientSettings.Read(cl);
            Format = hasFormat ? Output.ParseFormat(cl.Get("format")) : OutputFormat.Table;
            int ms = cl.GetInt("timeout-ms", 30_000);
            if (ms <= 0) throw new UsageException("--timeout-ms must be positive");
            Timeout = TimeSpan.FromMilliseconds(ms);
            cl.EnsureAllUsed();
            if (cl.Positionals.Count > 0) throw new UsageException($"unexpected argument '{cl.Positionals[0]}'");
        }

        public ClientSettings Settings { get; }
        public OutputFormat Format { get; }
        public TimeSpan Timeout { get; }

        /// <summary>
        /// How long the broker may take to finish a create or delete before answering; shorter
        /// than the request timeout so its answer arrives before the client gives up.
        /// </summary>
        public TimeSpan OperationTimeout => Timeout > TimeSpan.FromSeconds(10) ? Timeout - TimeSpan.FromSeconds(5) : Timeout / 2;

        public IAdminClient Admin()
        {
            var config = Settings.Apply(new AdminClientConfig { ClientId = "freshet-topics" });
            return new AdminClientBuilder(config)
                .SetLogHandler((_, m) => Settings.OnLog(m))
                .SetErrorHandler((_, e) => Settings.OnError(e))
                .Build();
        }
    }

    private static string RequireTopic(CommandLine cl)
    {
        string topic = cl.Require("topic");
        if (topic.Length == 0) throw new UsageException("--topic must not be empty");
        return topic;
    }

    /// <summary>key=value pairs of repeated options; a later value for the same key wins.</summary>
    private static Dictionary<string, string> ParseConfigs(IReadOnlyList<string> values, string option)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var v in values)
        {
            int eq = v.IndexOf('=');
            if (eq <= 0) throw new UsageException($"--{option} expects key=value, got '{v}'");
            result[v[..eq].Trim()] = v[(eq + 1)..];
        }
        return result;
    }

    private static CommandFailedException Failed(string topic, Error error) => new($"topic '{topic}': {KafkaErrors.Describe(error)}");

    private static async Task<int> CreateAsync(CommandLine cl)
    {
        string topic = RequireTopic(cl);
        int partitions = cl.GetInt("partitions", -1);
        if (cl.Has("partitions") && partitions < 1) throw new UsageException("--partitions must be at least 1");
        int rf = cl.GetInt("replication-factor", -1);
        if (cl.Has("replication-factor") && rf is < 1 or > short.MaxValue) throw new UsageException("--replication-factor must be between 1 and 32767");
        var configs = ParseConfigs(cl.GetAll("config"), "config");
        bool ifNotExists = cl.Has("if-not-exists");
        var ctx = new Context(cl, hasFormat: true);

        using var admin = ctx.Admin();
        string status = "created";
        try
        {
            await admin.CreateTopicsAsync(
                [new TopicSpecification { Name = topic, NumPartitions = partitions, ReplicationFactor = (short)rf, Configs = configs.Count > 0 ? configs : null }],
                new CreateTopicsOptions { RequestTimeout = ctx.Timeout, OperationTimeout = ctx.OperationTimeout }).ConfigureAwait(false);
        }
        catch (CreateTopicsException e)
        {
            var error = e.Results.FirstOrDefault(r => r.Topic == topic)?.Error ?? e.Error;
            if (!(ifNotExists && error.Code == ErrorCode.TopicAlreadyExists)) throw Failed(topic, error);
            status = "exists";
        }

        // CreateTopics' answer through Confluent.Kafka carries no id or counts; read them back.
        // A cluster may take a moment to make a new topic visible on the broker we ask.
        TopicDescription? description = null;
        for (int attempt = 0; attempt < 10 && description is null; attempt++)
        {
            if (attempt > 0) await Task.Delay(200).ConfigureAwait(false);
            var (found, _) = await DescribeTopicsAsync(admin, [topic], ctx.Timeout).ConfigureAwait(false);
            description = found.FirstOrDefault();
        }

        var json = new JsonObject
        {
            ["name"] = topic,
            ["topicId"] = description is null ? null : Output.TopicId(description.TopicId),
            ["status"] = status,
            ["partitionCount"] = description?.Partitions.Count ?? (partitions > 0 ? partitions : null),
            ["replicationFactor"] = description is null ? (rf > 0 ? rf : null) : ReplicationFactor(description),
            ["configs"] = ConfigsJson(AsNullable(configs)),
        };
        if (ctx.Format == OutputFormat.Json)
        {
            Console.Out.WriteLine(Output.ToIndentedJson(json));
            return 0;
        }
        var table = new Table("TOPIC", "STATUS", "PARTITIONS", "REPLICATION-FACTOR", "TOPIC-ID", "CONFIGS");
        table.Add(topic, status, json["partitionCount"]?.ToString() ?? "?", json["replicationFactor"]?.ToString() ?? "?",
            json["topicId"]?.ToString() ?? "?", ConfigsText(AsNullable(configs)));
        table.Write(Console.Out);
        return 0;
    }

    private static int List(CommandLine cl)
    {
        bool excludeInternal = cl.Has("exclude-internal");
        var ctx = new Context(cl, hasFormat: true);
        using var admin = ctx.Admin();
        var topics = AllTopics(admin, ctx, excludeInternal);
        if (ctx.Format == OutputFormat.Json)
        {
            var array = new JsonArray();
            foreach (var t in topics)
                array.Add(new JsonObject
                {
                    ["name"] = t.Name,
                    ["topicId"] = Output.TopicId(t.TopicId),
                    ["internal"] = t.IsInternal,
                    ["partitionCount"] = t.Partitions.Count,
                    ["replicationFactor"] = ReplicationFactor(t),
                });
            Console.Out.WriteLine(Output.ToIndentedJson(new JsonObject { ["topics"] = array }));
            return 0;
        }
        var table = new Table("TOPIC", "PARTITIONS", "REPLICATION-FACTOR", "INTERNAL", "TOPIC-ID");
        foreach (var t in topics)
            table.Add(t.Name, t.Partitions.Count, ReplicationFactor(t), t.IsInternal ? "yes" : "no", Output.TopicId(t.TopicId));
        table.Write(Console.Out);
        return 0;
    }

    /// <summary>Every topic of the cluster, described, in name order.</summary>
    private static List<TopicDescription> AllTopics(IAdminClient admin, Context ctx, bool excludeInternal)
    {
        var names = admin.GetMetadata(ctx.Timeout).Topics.Select(t => t.Topic).Distinct(StringComparer.Ordinal).ToList();
        if (names.Count == 0) return [];
        var (found, failed) = DescribeTopicsAsync(admin, names, ctx.Timeout).GetAwaiter().GetResult();
        foreach (var f in failed)
        {
            // Deleted between the two requests: simply gone. Anything else is worth a word.
            if (f.Error.Code != ErrorCode.UnknownTopicOrPart)
                Console.Error.WriteLine($"freshet: warning: topic '{f.Name}': {KafkaErrors.Describe(f.Error)}");
        }
        return [.. found.Where(t => !excludeInternal || !t.IsInternal).OrderBy(t => t.Name, StringComparer.Ordinal)];
    }

    private static async Task<(List<TopicDescription> Found, List<TopicDescription> Failed)> DescribeTopicsAsync(
        IAdminClient admin, IReadOnlyCollection<string> names, TimeSpan timeout)
    {
        try
        {
            var result = await admin.DescribeTopicsAsync(TopicCollection.OfTopicNames(names), new DescribeTopicsOptions { RequestTimeout = timeout }).ConfigureAwait(false);
            return (result.TopicDescriptions, []);
        }
        catch (DescribeTopicsException e)
        {
            var all = e.Results.TopicDescriptions;
            return ([.. all.Where(t => !t.Error.IsError)], [.. all.Where(t => t.Error.IsError)]);
        }
    }

    /// <summary>The replica count of the first partition, as Kafka's tools report it.</summary>
    private static int ReplicationFactor(TopicDescription t) => t.Partitions.OrderBy(p => p.Partition).FirstOrDefault()?.Replicas.Count ?? 0;

    private static async Task<int> DescribeAsync(CommandLine cl)
    {
        var requested = cl.GetAll("topic").ToList();
        if (requested.Any(t => t.Length == 0)) throw new UsageException("--topic must not be empty");
        bool excludeInternal = cl.Has("exclude-internal");
        var ctx = new Context(cl, hasFormat: true);
        using var admin = ctx.Admin();

        List<TopicDescription> topics;
        if (requested.Count == 0)
        {
            topics = AllTopics(admin, ctx, excludeInternal);
        }
        else
        {
            var (found, failed) = await DescribeTopicsAsync(admin, requested.Distinct(StringComparer.Ordinal).ToList(), ctx.Timeout).ConfigureAwait(false);
            if (failed.Count > 0)
                throw new CommandFailedException(string.Join(Environment.NewLine + "freshet: ", failed.Select(f => Failed(f.Name, f.Error).Message)));
            topics = [.. found.Where(t => !excludeInternal || !t.IsInternal).OrderBy(t => requested.IndexOf(t.Name))];
        }

        var configs = await NonDefaultConfigsAsync(admin, topics, ctx.Timeout).ConfigureAwait(false);
        var low = await WatermarksAsync(admin, topics, OffsetSpec.Earliest(), ctx.Timeout).ConfigureAwait(false);
        var high = await WatermarksAsync(admin, topics, OffsetSpec.Latest(), ctx.Timeout).ConfigureAwait(false);

        if (ctx.Format == OutputFormat.Json)
        {
            var array = new JsonArray();
            foreach (var t in topics)
            {
                var partitions = new JsonArray();
                foreach (var p in t.Partitions.OrderBy(p => p.Partition))
                {
                    var tp = new TopicPartition(t.Name, p.Partition);
                    partitions.Add(new JsonObject
                    {
                        ["partition"] = p.Partition,
                        ["leader"] = p.Leader?.Id,
                        ["replicas"] = new JsonArray([.. p.Replicas.Select(n => (JsonNode?)n.Id)]),
                        ["isr"] = new JsonArray([.. p.ISR.Select(n => (JsonNode?)n.Id)]),
                        ["lowWatermark"] = low.TryGetValue(tp, out long l) ? l : null,
                        ["highWatermark"] = high.TryGetValue(tp, out long h) ? h : null,
                    });
                }
                array.Add(new JsonObject
                {
                    ["name"] = t.Name,
                    ["topicId"] = Output.TopicId(t.TopicId),
                    ["internal"] = t.IsInternal,
                    ["partitionCount"] = t.Partitions.Count,
                    ["replicationFactor"] = ReplicationFactor(t),
                    ["configs"] = configs.TryGetValue(t.Name, out var c) ? ConfigsJson(c) : null,
                    ["partitions"] = partitions,
                });
            }
            Console.Out.WriteLine(Output.ToIndentedJson(new JsonObject { ["topics"] = array }));
            return 0;
        }

        bool firstTopic = true;
        foreach (var t in topics)
        {
            if (!firstTopic) Console.Out.WriteLine();
            firstTopic = false;
            Console.Out.WriteLine($"Topic: {t.Name}  TopicId: {Output.TopicId(t.TopicId)}  PartitionCount: {t.Partitions.Count}  ReplicationFactor: {ReplicationFactor(t)}"
                + (t.IsInternal ? "  Internal: yes" : ""));
            Console.Out.WriteLine($"Configs: {(configs.TryGetValue(t.Name, out var c) ? (c.Count == 0 ? "(all defaults)" : ConfigsText(c)) : "(unavailable)")}");
            var table = new Table("PARTITION", "LEADER", "REPLICAS", "ISR", "LOW-WATERMARK", "HIGH-WATERMARK");
            foreach (var p in t.Partitions.OrderBy(p => p.Partition))
            {
                var tp = new TopicPartition(t.Name, p.Partition);
                table.Add(p.Partition, p.Leader is null ? "none" : p.Leader.Id,
                    string.Join(',', p.Replicas.Select(n => n.Id)), string.Join(',', p.ISR.Select(n => n.Id)),
                    low.TryGetValue(tp, out long l) ? l : "?", high.TryGetValue(tp, out long h) ? h : "?");
            }
            table.Write(Console.Out, "  ");
        }
        return 0;
    }

    /// <summary>
    /// Per topic, the configs whose value is not the built-in default (topic overrides and
    /// broker-level settings). A topic whose configs could not be read is left out, with a warning.
    /// </summary>
    private static async Task<Dictionary<string, Dictionary<string, string?>>> NonDefaultConfigsAsync(IAdminClient admin, List<TopicDescription> topics, TimeSpan timeout)
    {
        var result = new Dictionary<string, Dictionary<string, string?>>(StringComparer.Ordinal);
        if (topics.Count == 0) return result;
        var resources = topics.Select(t => new ConfigResource { Type = ResourceType.Topic, Name = t.Name }).ToList();
        List<(string Name, Error? Error, Dictionary<string, ConfigEntryResult>? Entries)> reports;
        try
        {
            var ok = await admin.DescribeConfigsAsync(resources, new DescribeConfigsOptions { RequestTimeout = timeout }).ConfigureAwait(false);
            reports = [.. ok.Select(r => (r.ConfigResource.Name, (Error?)null, (Dictionary<string, ConfigEntryResult>?)r.Entries))];
        }
        catch (DescribeConfigsException e)
        {
            reports = [.. e.Results.Select(r => (r.ConfigResource.Name, r.Error.IsError ? r.Error : null, r.Error.IsError ? null : r.Entries))];
        }
        foreach (var (name, error, entries) in reports)
        {
            if (error is not null || entries is null)
            {
                Console.Error.WriteLine($"freshet: warning: configs of topic '{name}': {(error is null ? "no answer" : KafkaErrors.Describe(error))}");
                continue;
            }
            result[name] = entries.Values
                .Where(e => !e.IsDefault && e.Source != ConfigSource.DefaultConfig)
                .OrderBy(e => e.Name, StringComparer.Ordinal)
                .ToDictionary(e => e.Name, e => e.IsSensitive ? null : e.Value, StringComparer.Ordinal);
        }
        return result;
    }

    /// <summary>
    /// The offset <paramref name="spec"/> names, per partition. Partitions the cluster could not
    /// answer for (no leader, say) are missing from the result: the watermarks are a convenience,
    /// not worth failing a describe over.
    /// </summary>
    private static async Task<Dictionary<TopicPartition, long>> WatermarksAsync(IAdminClient admin, List<TopicDescription> topics, OffsetSpec spec, TimeSpan timeout)
    {
        var result = new Dictionary<TopicPartition, long>();
        var request = topics.SelectMany(t => t.Partitions.Select(p => new TopicPartitionOffsetSpec { TopicPartition = new TopicPartition(t.Name, p.Partition), OffsetSpec = spec })).ToList();
        if (request.Count == 0) return result;
        List<ListOffsetsResultInfo> infos;
        try
        {
            infos = (await admin.ListOffsetsAsync(request, new ListOffsetsOptions { RequestTimeout = timeout }).ConfigureAwait(false)).ResultInfos;
        }
        catch (ListOffsetsException e)
        {
            infos = e.Result.ResultInfos;
        }
        catch (KafkaException)
        {
            return result;
        }
        foreach (var i in infos)
        {
            var tpo = i.TopicPartitionOffsetError;
            if (!tpo.Error.IsError && tpo.Offset.Value >= 0) result[tpo.TopicPartition] = tpo.Offset.Value;
        }
        return result;
    }

    private static JsonObject ConfigsJson(IReadOnlyDictionary<string, string?> configs)
    {
        var o = new JsonObject();
        foreach (var (k, v) in configs.OrderBy(kv => kv.Key, StringComparer.Ordinal)) o[k] = v;
        return o;
    }

    private static string ConfigsText(IReadOnlyDictionary<string, string?> configs) =>
        string.Join(", ", configs.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value ?? "(sensitive)"}"));

    private static Dictionary<string, string?> AsNullable(Dictionary<string, string> configs) =>
        configs.ToDictionary(kv => kv.Key, kv => (string?)kv.Value, StringComparer.Ordinal);

    private static async Task<int> AlterAsync(CommandLine cl)
    {
        string topic = RequireTopic(cl);
        int partitions = cl.GetInt("partitions", -1);
        if (cl.Has("partitions") && partitions < 1) throw new UsageException("--partitions must be at least 1");
        var sets = ParseConfigs(cl.GetAll("config"), "config");
        var deletes = cl.GetAll("delete-config").Select(k => k.Trim()).Distinct(StringComparer.Ordinal).ToList();
        if (deletes.Any(k => k.Length == 0)) throw new UsageException("--delete-config needs a config name");
        if (deletes.FirstOrDefault(sets.ContainsKey) is { } both) throw new UsageException($"config '{both}' is both set and deleted");
        if (partitions < 0 && sets.Count == 0 && deletes.Count == 0) throw new UsageException("nothing to alter: give --partitions, --config or --delete-config");
        var ctx = new Context(cl, hasFormat: false);

        using var admin = ctx.Admin();
        if (partitions > 0)
        {
            try
            {
                await admin.CreatePartitionsAsync([new PartitionsSpecification { Topic = topic, IncreaseTo = partitions }],
                    new CreatePartitionsOptions { RequestTimeout = ctx.Timeout, OperationTimeout = ctx.OperationTimeout }).ConfigureAwait(false);
            }
            catch (CreatePartitionsException e)
            {
                throw Failed(topic, e.Results.FirstOrDefault()?.Error ?? e.Error);
            }
            Console.Out.WriteLine($"Topic '{topic}' now has {partitions} partitions.");
        }
        if (sets.Count > 0 || deletes.Count > 0)
        {
            var entries = sets.Select(kv => new ConfigEntry { Name = kv.Key, Value = kv.Value, IncrementalOperation = AlterConfigOpType.Set })
                .Concat(deletes.Select(k => new ConfigEntry { Name = k, Value = null, IncrementalOperation = AlterConfigOpType.Delete }))
                .ToList();
            try
            {
                await admin.IncrementalAlterConfigsAsync(
                    new Dictionary<ConfigResource, List<ConfigEntry>> { [new ConfigResource { Type = ResourceType.Topic, Name = topic }] = entries },
                    new IncrementalAlterConfigsOptions { RequestTimeout = ctx.Timeout }).ConfigureAwait(false);
            }
            catch (IncrementalAlterConfigsException e)
            {
                throw Failed(topic, e.Results.FirstOrDefault()?.Error ?? e.Error);
            }
            var parts = new List<string>();
            if (sets.Count > 0) parts.Add("set " + ConfigsText(AsNullable(sets)));
            if (deletes.Count > 0) parts.Add("removed " + string.Join(", ", deletes));
            Console.Out.WriteLine($"Topic '{topic}' configs updated: {string.Join("; ", parts)}.");
        }
        return 0;
    }

    private static async Task<int> DeleteAsync(CommandLine cl)
    {
        string topic = RequireTopic(cl);
        bool ifExists = cl.Has("if-exists");
        var ctx = new Context(cl, hasFormat: false);
        using var admin = ctx.Admin();
        try
        {
            await admin.DeleteTopicsAsync([topic], new DeleteTopicsOptions { RequestTimeout = ctx.Timeout, OperationTimeout = ctx.OperationTimeout }).ConfigureAwait(false);
        }
        catch (DeleteTopicsException e)
        {
            var error = e.Results.FirstOrDefault()?.Error ?? e.Error;
            if (ifExists && error.Code == ErrorCode.UnknownTopicOrPart)
            {
                Console.Out.WriteLine($"Topic '{topic}' does not exist; nothing to delete.");
                return 0;
            }
            throw Failed(topic, error);
        }
        Console.Out.WriteLine($"Deleted topic '{topic}'.");
        return 0;
    }
}
