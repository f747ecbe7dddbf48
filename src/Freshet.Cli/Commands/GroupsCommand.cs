using System.Globalization;
using System.Text.Json.Nodes;
using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace Freshet.Cli.Commands;

/// <summary>
/// `freshet groups`: list, describe and delete consumer groups, and delete or reset their
/// committed offsets, on any Kafka-protocol cluster through Confluent.Kafka's admin client.
/// </summary>
public static class GroupsCommand
{
    public const string Usage = """
        usage: freshet groups <subcommand> [options]

        Inspects and manages the consumer groups of any Kafka-protocol cluster.

        subcommands:
          list            [--state S]... [--type classic|consumer]
          describe        --group G... [--members | --offsets]
          delete          --group G...
          delete-offsets  --group G --topic T [--partition P]...
          reset-offsets   --group G (--topic T[:P,P...]... | --all-topics) <target> [--dry-run | --execute]
                          target: --to-earliest | --to-latest | --to-datetime ISO-8601 |
                                  --to-timestamp MS | --to-offset N | --shift-by N

        options:
          --format table|json   how list, describe, delete-offsets and reset-offsets print (default table)
          --timeout-ms N        how long to wait for the cluster (default 30000)
        """ + "\n\n" + ClientSettings.CommonUsage + "\n\n" + """
        Run `freshet groups <subcommand> --help` for one subcommand's details.
        """;

    private const string ListUsage = """
        usage: freshet groups list [--state S]... [--type classic|consumer] [--format table|json]

        Lists the cluster's consumer groups with their state, type (classic: JoinGroup/SyncGroup;
        consumer: KIP-848) and protocol type ("consumer", or empty for a group that only stores
        offsets). --state keeps groups in that state (repeatable: Empty, Stable,
        PreparingRebalance, CompletingRebalance, Dead); --type keeps groups of one type.
        """ + "\n\n" + FormatOptions;

    private const string DescribeUsage = """
        usage: freshet groups describe --group G... [--members | --offsets] [--format table|json]

        Describes groups (--group repeats): state, type, partition assignor, coordinator, and
          members   member id, group.instance.id, client id, host and assigned partitions
          offsets   per partition the committed offset, the log end offset, the lag between
                    them and the member the partition is assigned to
        Both are shown by default; --members or --offsets shows only one. A group that does not
        exist is reported as GROUP_ID_NOT_FOUND (exit code 1).
        """ + "\n\n" + FormatOptions;

    private const string DeleteUsage = """
        usage: freshet groups delete --group G...

        Deletes groups (--group repeats) with their committed offsets. Only a group without
        members can be deleted: the broker answers NON_EMPTY_GROUP otherwise, and
        GROUP_ID_NOT_FOUND for a group it does not know (exit code 1).
        """ + "\n\n" + CommonOptions;

    private const string DeleteOffsetsUsage = """
        usage: freshet groups delete-offsets --group G --topic T [--partition P]... [--format table|json]

        Deletes the group's committed offsets of a topic: the given partitions, or without
        --partition every partition of the topic (and any the group committed for it). The broker
        refuses partitions of topics the group's members consume (GROUP_SUBSCRIBED_TO_TOPIC).
        """ + "\n\n" + FormatOptions;

    private const string ResetOffsetsUsage = """
        usage: freshet groups reset-offsets --group G (--topic T[:P,P...]... | --all-topics) <target>
                                            [--dry-run | --execute] [--format table|json]

        Sets the group's committed offsets, for a group without members only (stop its consumers
        first; a group that does not exist yet is created with these offsets). Prints the current
        and the new offset per partition; nothing changes unless --execute is given (--dry-run,
        the default, only prints the plan).

        partitions:
          --topic T           every partition of topic T (repeatable)
          --topic T:0,2       partitions 0 and 2 of topic T
          --all-topics        every partition the group has committed an offset for
        target (exactly one):
          --to-earliest       the log start offset
          --to-latest         the log end offset
          --to-datetime D     the first offset whose timestamp is at or after D (ISO 8601, e.g.
                              2024-05-01T12:00:00Z; UTC without a zone); the log end
                              offset when there is none
          --to-timestamp MS   the same, for a Unix timestamp in milliseconds
          --to-offset N       offset N, moved into the log's range if outside it
          --shift-by N        the committed offset plus N (negative moves back), kept within the
                              log's range; partitions without a committed offset are left out
        """ + "\n\n" + FormatOptions;

    private const string CommonOptions = """
        options:
          --timeout-ms N        how long to wait for the cluster (default 30000)
        """ + "\n\n" + ClientSettings.CommonUsage;

    private const string FormatOptions = """
        options:
          --format table|json   an aligned table (default) or one JSON document
          --timeout-ms N        how long to wait for the cluster (default 30000)
        """ + "\n\n" + ClientSettings.CommonUsage;

    private static readonly HashSet<string> Flags =
        ["members", "offsets", "all-topics", "to-earliest", "to-latest", "dry-run", "execute", "help"];

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
            "list" => ListUsage,
            "describe" => DescribeUsage,
            "delete" => DeleteUsage,
            "delete-offsets" => DeleteOffsetsUsage,
            "reset-offsets" => ResetOffsetsUsage,
            _ => throw new UsageException($"unknown groups subcommand '{sub}' (list, describe, delete, delete-offsets, reset-offsets)"),
        };
        if (cl.Has("help"))
        {
            Console.Out.WriteLine(help);
            return 0;
        }
        return sub switch
        {
            "list" => await ListAsync(cl).ConfigureAwait(false),
            "describe" => await DescribeAsync(cl).ConfigureAwait(false),
            "delete" => await DeleteAsync(cl).ConfigureAwait(false),
            "delete-offsets" => await DeleteOffsetsAsync(cl).ConfigureAwait(false),
            _ => await ResetOffsetsAsync(cl).ConfigureAwait(false),
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

        public IAdminClient Admin()
        {
            var config = Settings.Apply(new AdminClientConfig { ClientId = "freshet-groups" });
            return new AdminClientBuilder(config)
                .SetLogHandler((_, m) => Settings.OnLog(m))
                .SetErrorHandler((_, e) => Settings.OnError(e))
                .Build();
        }
    }

    // ================================================================ names and small helpers

    private static readonly (string Name, ConsumerGroupState State)[] StateNames =
    [
        ("Empty", ConsumerGroupState.Empty),
        ("Stable", ConsumerGroupState.Stable),
        ("PreparingRebalance", ConsumerGroupState.PreparingRebalance),
        ("CompletingRebalance", ConsumerGroupState.CompletingRebalance),
        ("Dead", ConsumerGroupState.Dead),
    ];

    /// <summary>Kafka's spelling of a state (DescribeGroups and ListGroups use these names).</summary>
    private static string StateName(ConsumerGroupState s) =>
        StateNames.FirstOrDefault(n => n.State == s).Name ?? "Unknown";

    private static string TypeName(ConsumerGroupType t) => t switch
    {
        ConsumerGroupType.Classic => "classic",
        ConsumerGroupType.Consumer => "consumer",
        _ => "unknown",
    };

    /// <summary>
    /// librdkafka reports a group's protocol type only as "simple or not": it lists groups whose
    /// protocol type is "consumer" or empty (offsets committed without membership), so that is
    /// all a group can be here.
    /// </summary>
    private static string ProtocolType(bool isSimple) => isSimple ? "" : "consumer";

    private static string Cell(string? s) => string.IsNullOrEmpty(s) ? "-" : s;

    private static string NodeText(Node? n) => n is null ? "-" : $"{n.Id} ({n.Host}:{n.Port})";

    private static string RequireGroup(string value)
    {
        if (value.Length == 0) throw new UsageException("--group must not be empty");
        return value;
    }

    private static List<string> RequireGroups(CommandLine cl)
    {
        var groups = cl.GetAll("group").Select(RequireGroup).Distinct(StringComparer.Ordinal).ToList();
        if (groups.Count == 0) throw new UsageException("missing required option --group");
        return groups;
    }

    private static string RequireOneGroup(CommandLine cl)
    {
        var all = cl.GetAll("group");
        if (all.Count == 0) throw new UsageException("missing required option --group");
        if (all.Distinct(StringComparer.Ordinal).Count() > 1) throw new UsageException("this subcommand takes one --group");
        return RequireGroup(all[0]);
    }

    /// <summary>Words after the error name that say what it means for groups.</summary>
    private static string Hint(ErrorCode code) => code switch
    {
        ErrorCode.GroupIdNotFound => " (the group does not exist)",
        ErrorCode.NonEmptyGroup => " (the group has active members; stop its consumers first)",
        ErrorCode.GroupSubscribedToTopic => " (the group's members consume this topic; stop them first)",
        ErrorCode.UnknownMemberId => " (the group has active members; stop its consumers first)",
        _ => "",
    };

    private static string Describe(Error e) => KafkaErrors.Describe(e) + Hint(e.Code);

    private static CommandFailedException GroupFailed(string group, Error error) => new($"group '{group}': {Describe(error)}");

    private static CommandFailedException GroupNotFound(string group) =>
        new($"group '{group}': {KafkaErrors.Name(ErrorCode.GroupIdNotFound)}{Hint(ErrorCode.GroupIdNotFound)}");

    private static string AssignmentText(IEnumerable<TopicPartition> partitions) =>
        string.Join(' ', partitions.GroupBy(p => p.Topic).OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => g.Key + ":" + string.Join(',', g.Select(p => p.Partition.Value).Order())));

    // ================================================================ list

    private static async Task<int> ListAsync(CommandLine cl)
    {
        var states = new List<ConsumerGroupState>();
        foreach (var s in cl.GetAll("state"))
        {
            var match = StateNames.FirstOrDefault(n => string.Equals(n.Name, s, StringComparison.OrdinalIgnoreCase));
            if (match.Name is null)
                throw new UsageException($"--state must be one of {string.Join(", ", StateNames.Select(n => n.Name))}, got '{s}'");
            states.Add(match.State);
        }
        var types = new List<ConsumerGroupType>();
        foreach (var t in cl.GetAll("type"))
        {
            types.Add(t.ToLowerInvariant() switch
            {
                "classic" => ConsumerGroupType.Classic,
                "consumer" => ConsumerGroupType.Consumer,
                _ => throw new UsageException($"--type must be classic or consumer, got '{t}'"),
            });
        }
        var ctx = new Context(cl, hasFormat: true);
        using var admin = ctx.Admin();
        // librdkafka (2.x) crashes the process when ListConsumerGroups times out with no broker
        // reachable: make sure one answers first, so an unreachable cluster is a readable error.
        admin.GetMetadata(ctx.Timeout);
        var options = new ListConsumerGroupsOptions { RequestTimeout = ctx.Timeout };
        if (states.Count > 0) options.MatchStates = states;
        if (types.Count > 0) options.MatchTypes = types;
        List<ConsumerGroupListing> groups;
        try
        {
            groups = (await admin.ListConsumerGroupsAsync(options).ConfigureAwait(false)).Valid;
        }
        catch (ListConsumerGroupsException e)
        {
            // Some brokers answered, some did not: show what there is and say what is missing.
            if (e.Results.Errors.Count > 0 && e.Results.Valid.Count == 0) throw new CommandFailedException(KafkaErrors.Describe(e.Results.Errors[0]));
            foreach (var error in e.Results.Errors)
                Console.Error.WriteLine($"freshet: warning: a broker did not list its groups: {KafkaErrors.Describe(error)}");
            groups = e.Results.Valid;
        }
        groups = [.. groups.OrderBy(g => g.GroupId, StringComparer.Ordinal)];

        if (ctx.Format == OutputFormat.Json)
        {
            var array = new JsonArray();
            foreach (var g in groups)
                array.Add(new JsonObject
                {
                    ["groupId"] = g.GroupId,
                    ["state"] = StateName(g.State),
                    ["type"] = TypeName(g.Type),
                    ["protocolType"] = ProtocolType(g.IsSimpleConsumerGroup),
                });
            Console.Out.WriteLine(Output.ToIndentedJson(new JsonObject { ["groups"] = array }));
            return 0;
        }
        var table = new Table("GROUP", "STATE", "TYPE", "PROTOCOL-TYPE");
        foreach (var g in groups) table.Add(g.GroupId, StateName(g.State), TypeName(g.Type), Cell(ProtocolType(g.IsSimpleConsumerGroup)));
        table.Write(Console.Out);
        return 0;
    }

    // ================================================================ describe

    /// <summary>One row of a group's offsets view.</summary>
    private sealed record PartitionRow(TopicPartition Tp, long? Committed, long? LogEnd, MemberDescription? Owner)
    {
        public long? Lag => Committed is { } c && LogEnd is { } e ? Math.Max(0, e - c) : null;
    }

    private static async Task<int> DescribeAsync(CommandLine cl)
    {
        var groups = RequireGroups(cl);
        bool membersOnly = cl.Has("members"), offsetsOnly = cl.Has("offsets");
        if (membersOnly && offsetsOnly) throw new UsageException("give --members or --offsets, not both (neither shows both)");
        bool showMembers = !offsetsOnly, showOffsets = !membersOnly;
        var ctx = new Context(cl, hasFormat: true);
        using var admin = ctx.Admin();

        List<ConsumerGroupDescription> descriptions;
        try
        {
            descriptions = (await admin.DescribeConsumerGroupsAsync(groups, new DescribeConsumerGroupsOptions { RequestTimeout = ctx.Timeout })
                .ConfigureAwait(false)).ConsumerGroupDescriptions;
        }
        catch (DescribeConsumerGroupsException e)
        {
            descriptions = e.Results.ConsumerGroupDescriptions;
        }

        var failures = new List<string>();
        var described = new List<(ConsumerGroupDescription Group, List<PartitionRow>? Rows)>();
        foreach (var id in groups)
        {
            var d = descriptions.FirstOrDefault(x => x.GroupId == id);
            if (d is null)
            {
                failures.Add($"group '{id}': no answer from the cluster");
                continue;
            }
            if (d.Error is { IsError: true } error)
            {
                failures.Add(GroupFailed(id, error).Message);
                continue;
            }
            // DescribeGroups answers a group it does not know with the state Dead (before v6) or
            // GROUP_ID_NOT_FOUND (v6 on); both mean there is nothing to show.
            if (d.State == ConsumerGroupState.Dead && d.Members.Count == 0)
            {
                failures.Add(GroupNotFound(id).Message);
                continue;
            }
            List<PartitionRow>? rows = null;
            if (showOffsets)
            {
                try
                {
                    rows = await PartitionRowsAsync(admin, d, ctx.Timeout).ConfigureAwait(false);
                }
                catch (CommandFailedException e)
                {
                    failures.Add(e.Message);
                    continue;
                }
            }
            described.Add((d, rows));
        }

        if (ctx.Format == OutputFormat.Json)
        {
            var array = new JsonArray();
            foreach (var (d, rows) in described) array.Add(GroupJson(d, rows, showMembers));
            if (described.Count > 0 || failures.Count == 0)
                Console.Out.WriteLine(Output.ToIndentedJson(new JsonObject { ["groups"] = array }));
        }
        else
        {
            bool first = true;
            foreach (var (d, rows) in described)
            {
                if (!first) Console.Out.WriteLine();
                first = false;
                WriteGroupTable(d, rows, showMembers);
            }
        }
        if (failures.Count == 0) return 0;
        if (described.Count == 0 && failures.Count == 1) throw new CommandFailedException(failures[0]);
        foreach (var f in failures) Console.Error.WriteLine($"freshet groups: {f}");
        return 1;
    }

    /// <summary>
    /// The partitions the group has committed offsets for or has assigned to a member, each with
    /// its committed offset, log end offset and owner.
    /// </summary>
    private static async Task<List<PartitionRow>> PartitionRowsAsync(IAdminClient admin, ConsumerGroupDescription d, TimeSpan timeout)
    {
        var committed = await CommittedAsync(admin, d.GroupId, null, timeout).ConfigureAwait(false);
        var owners = new Dictionary<TopicPartition, MemberDescription>();
        foreach (var m in d.Members)
            foreach (var tp in m.Assignment?.TopicPartitions ?? [])
                owners[tp] = m;
        var partitions = committed.Keys.Union(owners.Keys).Distinct()
            .OrderBy(tp => tp.Topic, StringComparer.Ordinal).ThenBy(tp => tp.Partition.Value).ToList();
        var ends = await OffsetsAsync(admin, partitions, OffsetSpec.Latest(), timeout).ConfigureAwait(false);
        return [.. partitions.Select(tp => new PartitionRow(tp, committed.TryGetValue(tp, out long c) ? c : null,
            ends.TryGetValue(tp, out long e) ? e : null, owners.GetValueOrDefault(tp)))];
    }

    private static JsonObject GroupJson(ConsumerGroupDescription d, List<PartitionRow>? rows, bool showMembers)
    {
        var o = new JsonObject
        {
            ["groupId"] = d.GroupId,
            ["state"] = StateName(d.State),
            ["type"] = TypeName(d.GroupType),
            ["protocolType"] = ProtocolType(d.IsSimpleConsumerGroup),
            ["assignor"] = d.PartitionAssignor ?? "",
            ["coordinator"] = d.Coordinator is null ? null : new JsonObject { ["id"] = d.Coordinator.Id, ["host"] = d.Coordinator.Host, ["port"] = d.Coordinator.Port },
        };
        if (showMembers)
        {
            var members = new JsonArray();
            foreach (var m in d.Members.OrderBy(m => m.ConsumerId, StringComparer.Ordinal))
            {
                var assigned = new JsonArray();
                foreach (var tp in (m.Assignment?.TopicPartitions ?? []).OrderBy(tp => tp.Topic, StringComparer.Ordinal).ThenBy(tp => tp.Partition.Value))
                    assigned.Add(new JsonObject { ["topic"] = tp.Topic, ["partition"] = tp.Partition.Value });
                members.Add(new JsonObject
                {
                    ["memberId"] = m.ConsumerId,
                    ["instanceId"] = m.GroupInstanceId,
                    ["clientId"] = m.ClientId,
                    ["host"] = m.Host,
                    ["assignment"] = assigned,
                });
            }
            o["members"] = members;
        }
        if (rows is not null)
        {
            var offsets = new JsonArray();
            foreach (var r in rows)
                offsets.Add(new JsonObject
                {
                    ["topic"] = r.Tp.Topic,
                    ["partition"] = r.Tp.Partition.Value,
                    ["committedOffset"] = r.Committed,
                    ["logEndOffset"] = r.LogEnd,
                    ["lag"] = r.Lag,
                    ["memberId"] = r.Owner?.ConsumerId,
                    ["clientId"] = r.Owner?.ClientId,
                    ["host"] = r.Owner?.Host,
                });
            o["offsets"] = offsets;
        }
        return o;
    }

    private static void WriteGroupTable(ConsumerGroupDescription d, List<PartitionRow>? rows, bool showMembers)
    {
        Console.Out.WriteLine($"Group: {d.GroupId}  State: {StateName(d.State)}  Type: {TypeName(d.GroupType)}  ProtocolType: {Cell(ProtocolType(d.IsSimpleConsumerGroup))}"
            + $"  Assignor: {Cell(d.PartitionAssignor)}  Coordinator: {NodeText(d.Coordinator)}  Members: {d.Members.Count}");
        if (showMembers)
        {
            Console.Out.WriteLine();
            Console.Out.WriteLine("Members:");
            if (d.Members.Count == 0)
            {
                Console.Out.WriteLine("  (none)");
            }
            else
            {
                var table = new Table("MEMBER-ID", "INSTANCE-ID", "CLIENT-ID", "HOST", "PARTITIONS", "ASSIGNMENT");
                foreach (var m in d.Members.OrderBy(m => m.ConsumerId, StringComparer.Ordinal))
                {
                    var assigned = m.Assignment?.TopicPartitions ?? [];
                    table.Add(m.ConsumerId, Cell(m.GroupInstanceId), Cell(m.ClientId), Cell(m.Host), assigned.Count, Cell(AssignmentText(assigned)));
                }
                table.Write(Console.Out, "  ");
            }
        }
        if (rows is not null)
        {
            Console.Out.WriteLine();
            Console.Out.WriteLine("Offsets:");
            if (rows.Count == 0)
            {
                Console.Out.WriteLine("  (no committed offsets and no assigned partitions)");
                return;
            }
            var table = new Table("TOPIC", "PARTITION", "COMMITTED-OFFSET", "LOG-END-OFFSET", "LAG", "MEMBER-ID", "CLIENT-ID", "HOST");
            foreach (var r in rows)
                table.Add(r.Tp.Topic, r.Tp.Partition.Value, r.Committed?.ToString(CultureInfo.InvariantCulture) ?? "-",
                    r.LogEnd?.ToString(CultureInfo.InvariantCulture) ?? "-", r.Lag?.ToString(CultureInfo.InvariantCulture) ?? "-",
                    Cell(r.Owner?.ConsumerId), Cell(r.Owner?.ClientId), Cell(r.Owner?.Host));
            table.Write(Console.Out, "  ");
        }
    }

    // ================================================================ offsets through the admin client

    /// <summary>
    /// The group's committed offsets: of <paramref name="partitions"/>, or every committed
    /// partition when null. Partitions without a committed offset are left out.
    /// </summary>
    private static async Task<Dictionary<TopicPartition, long>> CommittedAsync(IAdminClient admin, string group, IReadOnlyList<TopicPartition>? partitions, TimeSpan timeout)
    {
        List<TopicPartitionOffsetError> list;
        try
        {
            var results = await admin.ListConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitions(group, partitions?.ToList())],
                new ListConsumerGroupOffsetsOptions { RequestTimeout = timeout }).ConfigureAwait(false);
            list = results.SelectMany(r => r.Partitions).ToList();
        }
        catch (ListConsumerGroupOffsetsException e)
        {
            var report = e.Results.FirstOrDefault();
            if (report is null) throw new CommandFailedException($"group '{group}': {KafkaErrors.Describe(e.Error)}");
            if (report.Error.IsError) throw GroupFailed(group, report.Error);
            var bad = report.Partitions.FirstOrDefault(p => p.Error.IsError);
            if (bad is not null) throw new CommandFailedException($"group '{group}': committed offset of {bad.Topic}-{bad.Partition.Value}: {Describe(bad.Error)}");
            list = report.Partitions;
        }
        catch (KafkaException e) when (!KafkaErrors.IsLocal(e.Error.Code))
        {
            throw GroupFailed(group, new Error(e.Error.Code));
        }
        var result = new Dictionary<TopicPartition, long>();
        foreach (var p in list)
            if (!p.Error.IsError && p.Offset.Value >= 0) result[p.TopicPartition] = p.Offset.Value;
        return result;
    }

    /// <summary>
    /// The offset <paramref name="spec"/> names for each partition; partitions the cluster could not
    /// answer for are left out (the caller decides whether that matters).
    /// </summary>
    private static async Task<Dictionary<TopicPartition, long>> OffsetsAsync(IAdminClient admin, IReadOnlyCollection<TopicPartition> partitions, OffsetSpec spec, TimeSpan timeout)
    {
        var result = new Dictionary<TopicPartition, long>();
        if (partitions.Count == 0) return result;
        var request = partitions.Select(tp => new TopicPartitionOffsetSpec { TopicPartition = tp, OffsetSpec = spec }).ToList();
        List<ListOffsetsResultInfo> infos;
        try
        {
            infos = (await admin.ListOffsetsAsync(request, new ListOffsetsOptions { RequestTimeout = timeout }).ConfigureAwait(false)).ResultInfos;
        }
        catch (ListOffsetsException e)
        {
            infos = e.Result.ResultInfos;
        }
        foreach (var i in infos)
        {
            var tpo = i.TopicPartitionOffsetError;
            if (!tpo.Error.IsError) result[tpo.TopicPartition] = tpo.Offset.Value;
        }
        return result;
    }

    /// <summary>
    /// The partition numbers of a topic, or null when the cluster does not know the topic. Asked
    /// with DescribeTopics, not Metadata: a metadata request for a missing topic may create it
    /// (auto.create.topics.enable).
    /// </summary>
    private static async Task<List<int>?> TopicPartitionsAsync(IAdminClient admin, string topic, TimeSpan timeout)
    {
        TopicDescription? d;
        try
        {
            d = (await admin.DescribeTopicsAsync(TopicCollection.OfTopicNames([topic]), new DescribeTopicsOptions { RequestTimeout = timeout }).ConfigureAwait(false))
                .TopicDescriptions.FirstOrDefault();
        }
        catch (DescribeTopicsException e)
        {
            d = e.Results.TopicDescriptions.FirstOrDefault();
            if (d is null) throw;
        }
        if (d is null || d.Error.Code == ErrorCode.UnknownTopicOrPart) return null;
        if (d.Error.IsError) throw new CommandFailedException($"topic '{topic}': {KafkaErrors.Describe(d.Error)}");
        return [.. d.Partitions.Select(p => p.Partition).Order()];
    }

    /// <summary>The group's description; fails on errors, null when the group does not exist.</summary>
    private static async Task<ConsumerGroupDescription?> DescribeOneAsync(IAdminClient admin, string group, TimeSpan timeout)
    {
        ConsumerGroupDescription? d;
        try
        {
            d = (await admin.DescribeConsumerGroupsAsync([group], new DescribeConsumerGroupsOptions { RequestTimeout = timeout }).ConfigureAwait(false))
                .ConsumerGroupDescriptions.FirstOrDefault();
        }
        catch (DescribeConsumerGroupsException e)
        {
            d = e.Results.ConsumerGroupDescriptions.FirstOrDefault();
            if (d is null) throw;
            if (d.Error.Code == ErrorCode.GroupIdNotFound) return null;
            if (d.Error.IsError) throw GroupFailed(group, d.Error);
        }
        if (d is null) throw new CommandFailedException($"group '{group}': no answer from the cluster");
        if (d.Error is { IsError: true } error)
        {
            if (error.Code == ErrorCode.GroupIdNotFound) return null;
            throw GroupFailed(group, error);
        }
        return d.State == ConsumerGroupState.Dead && d.Members.Count == 0 ? null : d;
    }

    // ================================================================ delete

    private static async Task<int> DeleteAsync(CommandLine cl)
    {
        var groups = RequireGroups(cl);
        var ctx = new Context(cl, hasFormat: false);
        using var admin = ctx.Admin();
        var errors = new Dictionary<string, Error>(StringComparer.Ordinal);
        try
        {
            await admin.DeleteGroupsAsync(groups, new DeleteGroupsOptions { RequestTimeout = ctx.Timeout }).ConfigureAwait(false);
        }
        catch (DeleteGroupsException e)
        {
            foreach (var r in e.Results.Where(r => r.Error.IsError)) errors[r.Group] = r.Error;
        }
        foreach (var g in groups.Where(g => !errors.ContainsKey(g))) Console.Out.WriteLine($"Deleted group '{g}'.");
        if (errors.Count == 0) return 0;
        if (errors.Count == 1 && groups.Count == 1) throw GroupFailed(groups[0], errors[groups[0]]);
        foreach (var (g, e) in errors) Console.Error.WriteLine($"freshet groups: {GroupFailed(g, e).Message}");
        return 1;
    }

    // ================================================================ delete-offsets

    private static async Task<int> DeleteOffsetsAsync(CommandLine cl)
    {
        string group = RequireOneGroup(cl);
        var topics = cl.GetAll("topic");
        if (topics.Count != 1 || topics[0].Length == 0) throw new UsageException("give one non-empty --topic");
        string topic = topics[0];
        var explicitPartitions = new SortedSet<int>();
        foreach (var p in cl.GetAll("partition"))
        {
            if (!int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out int n)) throw new UsageException($"--partition must be a partition number, got '{p}'");
            explicitPartitions.Add(n);
        }
        var ctx = new Context(cl, hasFormat: true);
        using var admin = ctx.Admin();

        List<TopicPartition> partitions;
        if (explicitPartitions.Count > 0)
        {
            partitions = [.. explicitPartitions.Select(p => new TopicPartition(topic, p))];
        }
        else
        {
            // Every partition the topic has, and any the group committed for it (the topic may be gone).
            var numbers = new SortedSet<int>(await TopicPartitionsAsync(admin, topic, ctx.Timeout).ConfigureAwait(false) ?? []);
            var committed = await CommittedAsync(admin, group, null, ctx.Timeout).ConfigureAwait(false);
            numbers.UnionWith(committed.Keys.Where(tp => tp.Topic == topic).Select(tp => tp.Partition.Value));
            if (numbers.Count == 0)
                throw new CommandFailedException($"topic '{topic}': {KafkaErrors.Name(ErrorCode.UnknownTopicOrPart)} (no such topic, and group '{group}' has no offsets for it)");
            partitions = [.. numbers.Select(p => new TopicPartition(topic, p))];
        }

        var errors = new Dictionary<TopicPartition, Error>();
        try
        {
            await admin.DeleteConsumerGroupOffsetsAsync(group, partitions,
                new DeleteConsumerGroupOffsetsOptions { RequestTimeout = ctx.Timeout }).ConfigureAwait(false);
        }
        catch (DeleteConsumerGroupOffsetsException e)
        {
            if (e.Result.Error.IsError) throw GroupFailed(group, e.Result.Error);
            foreach (var p in e.Result.Partitions.Where(p => p.Error.IsError)) errors[p.TopicPartition] = p.Error;
            if (errors.Count == 0) throw new CommandFailedException($"group '{group}': {KafkaErrors.Describe(e.Error)}");
        }
        catch (KafkaException e) when (!KafkaErrors.IsLocal(e.Error.Code))
        {
            // A group-level error (GROUP_ID_NOT_FOUND) comes as a plain exception whose text is librdkafka's parse trace.
            throw GroupFailed(group, new Error(e.Error.Code));
        }

        if (ctx.Format == OutputFormat.Json)
        {
            var array = new JsonArray();
            foreach (var tp in partitions)
                array.Add(new JsonObject
                {
                    ["topic"] = tp.Topic,
                    ["partition"] = tp.Partition.Value,
                    ["status"] = errors.TryGetValue(tp, out var e) ? "error" : "deleted",
                    ["error"] = errors.TryGetValue(tp, out e) ? KafkaErrors.Name(e.Code) : null,
                });
            Console.Out.WriteLine(Output.ToIndentedJson(new JsonObject { ["groupId"] = group, ["partitions"] = array }));
        }
        else
        {
            var table = new Table("TOPIC", "PARTITION", "STATUS");
            foreach (var tp in partitions)
                table.Add(tp.Topic, tp.Partition.Value, errors.TryGetValue(tp, out var e) ? KafkaErrors.Name(e.Code) : "deleted");
            table.Write(Console.Out);
        }
        if (errors.Count == 0) return 0;
        var first = errors.First();
        Console.Error.WriteLine($"freshet groups: group '{group}': {errors.Count} partition(s) kept their offsets: {Describe(first.Value)}");
        return 1;
    }

    // ================================================================ reset-offsets

    private enum ResetTarget
    {
        Earliest,
        Latest,
        Timestamp,
        Offset,
        Shift,
    }

    /// <summary>One partition's plan: where the group is, where it will be, and why when left out.</summary>
    private sealed record ResetRow(TopicPartition Tp, long? Current, long? New, string? Note);

    private static async Task<int> ResetOffsetsAsync(CommandLine cl)
    {
        string group = RequireOneGroup(cl);
        bool allTopics = cl.Has("all-topics");
        var topicSpecs = cl.GetAll("topic").Select(ParseTopicSpec).ToList();
        if (allTopics == (topicSpecs.Count > 0)) throw new UsageException("give --topic T[:P,P...] (repeatable) or --all-topics");

        var targets = new List<(ResetTarget Target, long Value)>();
        if (cl.Has("to-earliest")) targets.Add((ResetTarget.Earliest, 0));
        if (cl.Has("to-latest")) targets.Add((ResetTarget.Latest, 0));
        if (cl.Get("to-datetime") is { } dt) targets.Add((ResetTarget.Timestamp, ParseDateTime(dt)));
        if (cl.Has("to-timestamp"))
        {
            long ts = cl.GetLong("to-timestamp", -1);
            if (ts < 0) throw new UsageException("--to-timestamp must be a Unix time in milliseconds (0 or more)");
            targets.Add((ResetTarget.Timestamp, ts));
        }
        if (cl.Has("to-offset"))
        {
            long n = cl.GetLong("to-offset", -1);
            if (n < 0) throw new UsageException("--to-offset must be 0 or more");
            targets.Add((ResetTarget.Offset, n));
        }
        if (cl.Has("shift-by")) targets.Add((ResetTarget.Shift, cl.GetLong("shift-by", 0)));
        if (targets.Count != 1)
            throw new UsageException("give exactly one of --to-earliest, --to-latest, --to-datetime, --to-timestamp, --to-offset, --shift-by");
        var (target, value) = targets[0];
        bool execute = cl.Has("execute"), dryRun = cl.Has("dry-run");
        if (execute && dryRun) throw new UsageException("give --dry-run or --execute, not both");
        var ctx = new Context(cl, hasFormat: true);
        using var admin = ctx.Admin();

        // Offsets can only be set for a group nobody is consuming in: its members would overwrite
        // them (and the broker refuses commits from outside the group's generation).
        var description = await DescribeOneAsync(admin, group, ctx.Timeout).ConfigureAwait(false);
        if (description is not null && description.Members.Count > 0)
            throw new CommandFailedException($"group '{group}' is active: it has {description.Members.Count} member(s) (state {StateName(description.State)}). "
                + "Offsets can only be reset while the group has no members; stop its consumers and try again.");

        // The partitions to reset.
        var partitions = new List<TopicPartition>();
        Dictionary<TopicPartition, long>? allCommitted = null;
        if (allTopics)
        {
            allCommitted = await CommittedAsync(admin, group, null, ctx.Timeout).ConfigureAwait(false);
            if (allCommitted.Count == 0) throw new CommandFailedException($"group '{group}' has no committed offsets; name the partitions with --topic");
            partitions.AddRange(allCommitted.Keys);
        }
        foreach (var (topic, wanted) in topicSpecs)
        {
            var existing = await TopicPartitionsAsync(admin, topic, ctx.Timeout).ConfigureAwait(false)
                ?? throw new CommandFailedException($"topic '{topic}': {KafkaErrors.Name(ErrorCode.UnknownTopicOrPart)} (the topic does not exist)");
            if (wanted is null)
            {
                partitions.AddRange(existing.Select(p => new TopicPartition(topic, p)));
                continue;
            }
            var missing = wanted.Where(p => !existing.Contains(p)).ToList();
            if (missing.Count > 0)
                throw new CommandFailedException($"topic '{topic}' has no partition {string.Join(", ", missing)} (it has {existing.Count})");
            partitions.AddRange(wanted.Select(p => new TopicPartition(topic, p)));
        }
        partitions = [.. partitions.Distinct().OrderBy(tp => tp.Topic, StringComparer.Ordinal).ThenBy(tp => tp.Partition.Value)];

        var committed = allCommitted ?? await CommittedAsync(admin, group, partitions, ctx.Timeout).ConfigureAwait(false);
        var low = await OffsetsAsync(admin, partitions, OffsetSpec.Earliest(), ctx.Timeout).ConfigureAwait(false);
        var high = await OffsetsAsync(admin, partitions, OffsetSpec.Latest(), ctx.Timeout).ConfigureAwait(false);
        Dictionary<TopicPartition, long>? byTime = target == ResetTarget.Timestamp
            ? await OffsetsAsync(admin, partitions, OffsetSpec.ForTimestamp(value), ctx.Timeout).ConfigureAwait(false)
            : null;

        var rows = new List<ResetRow>();
        foreach (var tp in partitions)
        {
            long? current = committed.TryGetValue(tp, out long c) ? c : null;
            if (!low.TryGetValue(tp, out long start) || !high.TryGetValue(tp, out long end))
                throw new CommandFailedException($"could not read the offsets of {tp.Topic}-{tp.Partition.Value} (no leader?)");
            long? next = target switch
            {
                ResetTarget.Earliest => start,
                ResetTarget.Latest => end,
                // No record at or after the time: the end, where the next record will be.
                ResetTarget.Timestamp => byTime!.TryGetValue(tp, out long t) && t >= 0 ? t : end,
                ResetTarget.Offset => Math.Clamp(value, start, end),
                _ => current is { } cur ? Math.Clamp(cur + value, start, end) : null,
            };
            string? note = next is null ? "no committed offset to shift; left unchanged" : null;
            if (target == ResetTarget.Offset && next != value) note = $"{value} is outside the log ({start}..{end})";
            rows.Add(new ResetRow(tp, current, next, note));
        }
        foreach (var r in rows.Where(r => r.Note is not null))
            Console.Error.WriteLine($"freshet: warning: {r.Tp.Topic}-{r.Tp.Partition.Value}: {r.Note}");

        var plan = rows.Where(r => r.New is not null).ToList();
        if (plan.Count == 0) throw new CommandFailedException("no partition to reset");
        var failed = new Dictionary<TopicPartition, Error>();
        if (execute)
        {
            var offsets = plan.Select(r => new TopicPartitionOffset(r.Tp, new Offset(r.New!.Value))).ToList();
            try
            {
                await admin.AlterConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitionOffsets(group, offsets)],
                    new AlterConsumerGroupOffsetsOptions { RequestTimeout = ctx.Timeout }).ConfigureAwait(false);
            }
            catch (AlterConsumerGroupOffsetsException e)
            {
                var report = e.Results.FirstOrDefault() ?? throw new CommandFailedException($"group '{group}': {KafkaErrors.Describe(e.Error)}");
                if (report.Error.IsError) throw GroupFailed(group, report.Error);
                foreach (var p in report.Partitions.Where(p => p.Error.IsError)) failed[p.TopicPartition] = p.Error;
                if (failed.Count == 0) throw new CommandFailedException($"group '{group}': {KafkaErrors.Describe(e.Error)}");
            }
            catch (KafkaException e) when (!KafkaErrors.IsLocal(e.Error.Code))
            {
                throw GroupFailed(group, new Error(e.Error.Code));
            }
        }

        string Status(ResetRow r) => r.New is null ? "skipped" : !execute ? "planned" : failed.TryGetValue(r.Tp, out var e) ? KafkaErrors.Name(e.Code) : "reset";
        if (ctx.Format == OutputFormat.Json)
        {
            var array = new JsonArray();
            foreach (var r in rows)
                array.Add(new JsonObject
                {
                    ["topic"] = r.Tp.Topic,
                    ["partition"] = r.Tp.Partition.Value,
                    ["currentOffset"] = r.Current,
                    ["newOffset"] = r.New,
                    ["status"] = Status(r),
                });
            Console.Out.WriteLine(Output.ToIndentedJson(new JsonObject { ["groupId"] = group, ["executed"] = execute, ["partitions"] = array }));
        }
        else
        {
            var table = new Table("TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET", "STATUS");
            foreach (var r in rows)
                table.Add(r.Tp.Topic, r.Tp.Partition.Value, r.Current?.ToString(CultureInfo.InvariantCulture) ?? "-",
                    r.New?.ToString(CultureInfo.InvariantCulture) ?? "-", Status(r));
            table.Write(Console.Out);
        }
        if (!execute)
        {
            Console.Error.WriteLine("freshet: dry run: no offsets were changed; add --execute to commit them.");
            return 0;
        }
        if (failed.Count == 0) return 0;
        Console.Error.WriteLine($"freshet groups: group '{group}': {failed.Count} partition(s) were not reset: {Describe(failed.First().Value)}");
        return 1;
    }

    /// <summary>"topic" (all partitions: null) or "topic:0,2".</summary>
    private static (string Topic, List<int>? Partitions) ParseTopicSpec(string spec)
    {
        int colon = spec.LastIndexOf(':');
        string topic = colon < 0 ? spec : spec[..colon];
        if (topic.Length == 0) throw new UsageException($"--topic needs a topic name, got '{spec}'");
        if (colon < 0) return (topic, null);
        var partitions = new List<int>();
        foreach (var part in spec[(colon + 1)..].Split(','))
        {
            if (!int.TryParse(part.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int p))
                throw new UsageException($"--topic expects T or T:P,P with partition numbers, got '{spec}'");
            partitions.Add(p);
        }
        return (topic, partitions.Distinct().Order().ToList());
    }

    /// <summary>An ISO 8601 date and time as Unix milliseconds; without a zone it is UTC (as freshet consume --from reads it).</summary>
    private static long ParseDateTime(string text)
    {
        if (!DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AllowWhiteSpaces, out var t))
            throw new UsageException($"--to-datetime expects an ISO 8601 date and time such as 2024-05-01T12:00:00Z, got '{text}'");
        return t.ToUnixTimeMilliseconds();
    }
}
