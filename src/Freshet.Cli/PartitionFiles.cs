using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Freshet.Cli;

/// <summary>One partition and the replicas it should have, the first being its preferred leader.</summary>
public sealed record PartitionReplicas(string Topic, int Partition, IReadOnlyList<int> Replicas)
{
    public string Name => $"{Topic}-{Partition}";
}

/// <summary>
/// The JSON files of Kafka's partition tools, read with messages that point at the offending
/// entry, and written in the same shape (so one tool's output is another's input):
///   reassignment  {"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2],"log_dirs":["any","any"]}]}
///   topics        {"version":1,"topics":[{"topic":"t"}]}
///   partitions    {"partitions":[{"topic":"t","partition":0}]}   (leader election)
/// </summary>
public static class PartitionFiles
{
    /// <summary>A reassignment file's partitions, in file order. Only log_dirs of "any" are accepted.</summary>
    public static List<PartitionReplicas> ReadReassignment(string path)
    {
        var root = ReadObject(path);
        CheckVersion(path, root);
        var result = new List<PartitionReplicas>();
        var seen = new HashSet<(string, int)>();
        var entries = RequireArray(path, root, "partitions", "");
        for (int i = 0; i < entries.Count; i++)
        {
            string at = $"partitions[{i}]";
            var entry = entries[i] as JsonObject ?? throw Bad(path, $"{at} must be an object");
            string topic = RequireTopic(path, entry, at);
            int partition = RequirePartition(path, entry, at);
            var replicasArray = RequireArray(path, entry, "replicas", at);
            var replicas = new List<int>();
            foreach (var r in replicasArray)
            {
                if (!TryInt(r, out int id) || id < 0) throw Bad(path, $"{at}.replicas must hold broker ids (non-negative integers), got {r?.ToJsonString() ?? "null"}");
                replicas.Add(id);
            }
            if (replicas.Count == 0) throw Bad(path, $"{at} ({topic}-{partition}) has no replicas");
            if (replicas.Distinct().Count() != replicas.Count) throw Bad(path, $"{at} ({topic}-{partition}) lists a broker twice: [{string.Join(',', replicas)}]");
            if (entry["log_dirs"] is { } dirsNode)
            {
                var dirs = dirsNode as JsonArray ?? throw Bad(path, $"{at}.log_dirs must be an array");
                if (dirs.Count != replicas.Count) throw Bad(path, $"{at}.log_dirs has {dirs.Count} entries for {replicas.Count} replicas");
                var other = dirs.FirstOrDefault(d => d is not JsonValue v || !v.TryGetValue(out string? s) || s != "any");
                if (other is not null)
                    throw Bad(path, $"{at}.log_dirs: only \"any\" is supported (moving a replica to a chosen log directory is not), got {other.ToJsonString()}");
            }
            foreach (var key in entry.Select(kv => kv.Key))
                if (key is not ("topic" or "partition" or "replicas" or "log_dirs")) throw Bad(path, $"{at} has an unknown field \"{key}\"");
            if (!seen.Add((topic, partition))) throw Bad(path, $"{topic}-{partition} appears more than once");
            result.Add(new PartitionReplicas(topic, partition, replicas));
        }
        if (result.Count == 0) throw Bad(path, "\"partitions\" is empty");
        return result;
    }

    /// <summary>The topic names of a --topics-to-move-json-file, in file order, without repeats.</summary>
    public static List<string> ReadTopics(string path)
    {
        var root = ReadObject(path);
        CheckVersion(path, root);
        var entries = RequireArray(path, root, "topics", "");
        var result = new List<string>();
        for (int i = 0; i < entries.Count; i++)
        {
            var entry = entries[i] as JsonObject ?? throw Bad(path, $"topics[{i}] must be an object");
            string topic = RequireTopic(path, entry, $"topics[{i}]");
            if (!result.Contains(topic)) result.Add(topic);
        }
        if (result.Count == 0) throw Bad(path, "\"topics\" is empty");
        return result;
    }

    /// <summary>The partitions of a leader-election file (--path-to-json-file); a partition listed twice is an error, as in Kafka's tool.</summary>
    public static List<(string Topic, int Partition)> ReadPartitions(string path)
    {
        var root = ReadObject(path);
        var entries = RequireArray(path, root, "partitions", "");
        var result = new List<(string, int)>();
        for (int i = 0; i < entries.Count; i++)
        {
            string at = $"partitions[{i}]";
            var entry = entries[i] as JsonObject ?? throw Bad(path, $"{at} must be an object");
            var tp = (RequireTopic(path, entry, at), RequirePartition(path, entry, at));
            if (result.Contains(tp)) throw Bad(path, $"{tp.Item1}-{tp.Item2} appears more than once");
            result.Add(tp);
        }
        if (result.Count == 0) throw Bad(path, "\"partitions\" is empty");
        return result;
    }

    /// <summary>A reassignment document (version 1, log_dirs "any") for these partitions.</summary>
    public static JsonObject ReassignmentJson(IEnumerable<PartitionReplicas> partitions) => new()
    {
        ["version"] = 1,
        ["partitions"] = new JsonArray([.. partitions.Select(p => (JsonNode?)new JsonObject
        {
            ["topic"] = p.Topic,
            ["partition"] = p.Partition,
            ["replicas"] = new JsonArray([.. p.Replicas.Select(r => (JsonNode?)r)]),
            ["log_dirs"] = new JsonArray([.. p.Replicas.Select(_ => (JsonNode?)"any")]),
        })]),
    };

    /// <summary>"1,2,3" as broker ids: non-negative, no repeats.</summary>
    public static List<int> ParseBrokerList(string value, string option)
    {
        var ids = new List<int>();
        foreach (var part in value.Split(',', StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int id))
                throw new UsageException($"--{option} expects broker ids separated by commas (e.g. 1,2,3), got '{value}'");
            if (ids.Contains(id)) throw new UsageException($"--{option} lists broker {id} twice");
            ids.Add(id);
        }
        return ids;
    }

    private static JsonObject ReadObject(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CommandFailedException($"cannot read {path}: {e.Message}");
        }
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(text, documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            // The parser's message ends with where it stopped ("LineNumber: 2 | BytePositionInLine: 7."), zero-based.
            string where = e.LineNumber is long line ? $" at line {line + 1}, column {(e.BytePositionInLine ?? 0) + 1}" : "";
            throw Bad(path, $"not valid JSON{where}");
        }
        return node as JsonObject ?? throw Bad(path, "the document must be a JSON object");
    }

    private static void CheckVersion(string path, JsonObject root)
    {
        if (root["version"] is { } v && (!TryInt(v, out int version) || version != 1))
            throw Bad(path, $"unsupported \"version\" {v.ToJsonString()} (only 1 exists)");
    }

    private static JsonArray RequireArray(string path, JsonObject o, string name, string at)
    {
        string where = at.Length == 0 ? $"\"{name}\"" : $"{at}.{name}";
        return o[name] switch
        {
            JsonArray a => a,
            null => throw Bad(path, $"{where} is missing"),
            _ => throw Bad(path, $"{where} must be an array"),
        };
    }

    private static string RequireTopic(string path, JsonObject entry, string at) =>
        entry["topic"] is JsonValue v && v.TryGetValue(out string? s) && s.Length > 0 ? s : throw Bad(path, $"{at}.topic must be a non-empty string");

    private static int RequirePartition(string path, JsonObject entry, string at) =>
        TryInt(entry["partition"], out int p) && p >= 0 ? p : throw Bad(path, $"{at}.partition must be a non-negative integer");

    private static bool TryInt(JsonNode? node, out int value)
    {
        value = 0;
        return node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out value);
    }

    private static CommandFailedException Bad(string path, string message) => new($"{path}: {message}");
}
