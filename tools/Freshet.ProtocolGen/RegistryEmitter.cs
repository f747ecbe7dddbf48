namespace Freshet.ProtocolGen;

/// <summary>
/// Emits the lookup tables over the generated classes: API keys and their request/response
/// classes, metadata record types, and the key/value pairs of the coordinators' internal topics.
/// Lookups are switch expressions on the key, which the compiler turns into jump tables.
/// </summary>
public static class RegistryEmitter
{
    /// <summary>ControlledShutdown v0 is the one request that uses request header v0 (RequestHeader.json says so).</summary>
    private const string ControlledShutdown = "ControlledShutdown";

    /// <summary>ApiVersions responses always use response header v0, so a client can read them before it knows the broker's versions.</summary>
    private const string ApiVersions = "ApiVersions";

    public static IEnumerable<(string FileName, string Text)> EmitApiRegistry(IReadOnlyList<MessageSpec> protocol, string ns)
    {
        var apis = PairApis(protocol);

        var e = Header("kafka-protocol/*Request.json");
        e.Line($"namespace {ns};");
        e.Line();
        e.Line("/// <summary>Kafka API keys: the request name without \"Request\".</summary>");
        e.Open("public enum ApiKey : short");
        foreach (var (name, req, _) in apis) e.Line($"{name} = {req.ApiKey},");
        e.Close();
        yield return ("ApiKey.g.cs", e.ToString());

        var w = Header("kafka-protocol/*Request.json and *Response.json");
        w.Line("using Freshet.Protocol.Wire;");
        w.Line();
        w.Line($"namespace {ns};");
        w.Line();
        w.Line("/// <summary>Per-API facts from the schemas, and factories for the request and response classes.</summary>");
        w.Open("public static class ApiMessages");
        w.Line("/// <summary>Every API key the schemas define, ascending.</summary>");
        w.Line($"public static IReadOnlyList<short> AllApiKeys {{ get; }} = [{string.Join(", ", apis.Select(a => a.Request.ApiKey))}];");
        w.Line();

        w.Line("public static bool IsKnown(short apiKey) => apiKey switch");
        w.OpenScope();
        var keys = apis.Select(a => (int)a.Request.ApiKey!.Value).ToList();
        bool contiguous = keys[^1] - keys[0] == keys.Count - 1;
        w.Line(contiguous ? $">= {keys[0]} and <= {keys[^1]} => true," : $"{string.Join(" or ", keys)} => true,");
        w.Line("_ => false,");
        w.Close(";");
        w.Line();

        Switch(w, "/// <summary>A new, empty request of the API, or null for an unknown key.</summary>",
            "public static IApiMessage? CreateRequest(short apiKey)", apis, a => $"new {a.Request.Name}()", "null");
        Switch(w, "/// <summary>A new, empty response of the API, or null for an unknown key.</summary>",
            "public static IApiMessage? CreateResponse(short apiKey)", apis, a => $"new {a.Response.Name}()", "null");
        Switch(w, null, "public static short LowestVersion(short apiKey)", apis, a => $"{a.Request.Name}.LowestVersion", "throw Unknown(apiKey)");
        Switch(w, null, "public static short HighestVersion(short apiKey)", apis, a => $"{a.Request.Name}.HighestVersion", "throw Unknown(apiKey)");
        Switch(w, "/// <summary>True when the latest version is still in development and not offered to clients by default.</summary>",
            "public static bool IsLatestVersionUnstable(short apiKey)", apis, a => a.Request.LatestVersionUnstable ? "true" : "false", "throw Unknown(apiKey)");
        Switch(w, "/// <summary>HighestVersion as Kafka's schema file has it, before Freshet's overlays (tools/Freshet.ProtocolGen/overlay).</summary>",
            "public static short KafkaSchemaHighestVersion(short apiKey)", apis,
            a => (a.Request.WithoutOverlay ?? a.Request).ValidVersions.Highest.ToString(System.Globalization.CultureInfo.InvariantCulture), "throw Unknown(apiKey)");
        Switch(w, "/// <summary>IsLatestVersionUnstable as Kafka's schema file has it, before Freshet's overlays.</summary>",
            "public static bool KafkaSchemaLatestVersionUnstable(short apiKey)", apis,
            a => (a.Request.WithoutOverlay ?? a.Request).LatestVersionUnstable ? "true" : "false", "throw Unknown(apiKey)");
        Switch(w, "/// <summary>Whether the request at this version uses the flexible (KIP-482) encodings.</summary>",
            "public static bool IsFlexible(short apiKey, short version)", apis, a => $"{a.Request.Name}.IsFlexibleVersion(version)", "throw Unknown(apiKey)");
        Switch(w, null, "public static bool IsDeprecated(short apiKey, short version)", apis,
            a => MessageEmitter.Check(a.Request.DeprecatedVersions, VersionRange.All).Expr, "throw Unknown(apiKey)");

        // Listener lists are shared: one field per distinct list.
        var lists = apis.Select(a => string.Join(", ", a.Request.Listeners.Select(l => $"\"{l}\""))).Distinct().Order(StringComparer.Ordinal).ToList();
        Switch(w, "/// <summary>The listeners the API is served on (\"broker\", \"controller\", \"zkBroker\").</summary>",
            "public static IReadOnlyList<string> Listeners(short apiKey)", apis,
            a => $"Listeners{lists.IndexOf(string.Join(", ", a.Request.Listeners.Select(l => $"\"{l}\"")))}", "throw Unknown(apiKey)");

        w.Line("/// <summary>Request header version: 2 for flexible requests, else 1 (0 for ControlledShutdown v0).</summary>");
        w.Line("public static short RequestHeaderVersion(short apiKey, short version) =>");
        w.Indent();
        var cs = apis.FirstOrDefault(a => a.Name == ControlledShutdown);
        w.Line(cs.Request is null
            ? "IsFlexible(apiKey, version) ? (short)2 : (short)1;"
            : $"IsFlexible(apiKey, version) ? (short)2 : apiKey == {cs.Request.ApiKey} && version == 0 ? (short)0 : (short)1;");
        w.Outdent();
        w.Line();

        Switch(w, "/// <summary>Response header version: 1 for flexible responses, else 0 (always 0 for ApiVersions).</summary>",
            "public static short ResponseHeaderVersion(short apiKey, short version)", apis,
            a => a.Name == ApiVersions ? "0" : $"{a.Response.Name}.IsFlexibleVersion(version) ? (short)1 : (short)0", "throw Unknown(apiKey)");

        for (int i = 0; i < lists.Count; i++) w.Line($"private static readonly IReadOnlyList<string> Listeners{i} = [{lists[i]}];");
        w.Line();
        w.Line("private static ArgumentOutOfRangeException Unknown(short apiKey) => new(nameof(apiKey), apiKey, \"unknown API key\");");
        w.Close();
        yield return ("ApiMessages.g.cs", w.ToString());
    }

    private static void Switch(CodeWriter w, string? doc, string signature,
        List<(string Name, MessageSpec Request, MessageSpec Response)> apis,
        Func<(string Name, MessageSpec Request, MessageSpec Response), string> value, string fallback)
    {
        if (doc is not null) w.Line(doc);
        w.Line(signature + " => apiKey switch");
        w.OpenScope();
        foreach (var a in apis) w.Line($"{a.Request.ApiKey} => {value(a)},");
        w.Line($"_ => {fallback},");
        w.Close(";");
        w.Line();
    }

    /// <summary>Requests and responses by API key; the two must agree on versions.</summary>
    private static List<(string Name, MessageSpec Request, MessageSpec Response)> PairApis(IReadOnlyList<MessageSpec> protocol)
    {
        var requests = protocol.Where(m => m.Type == "request").ToDictionary(m => m.ApiKey ?? throw new SchemaException($"{m.SourcePath}: request without apiKey"));
        var responses = protocol.Where(m => m.Type == "response").ToDictionary(m => m.ApiKey ?? throw new SchemaException($"{m.SourcePath}: response without apiKey"));
        var result = new List<(string, MessageSpec, MessageSpec)>();
        foreach (var (key, req) in requests.OrderBy(p => p.Key))
        {
            if (!responses.TryGetValue(key, out var resp)) throw new SchemaException($"{req.SourcePath}: no response with apiKey {key}");
            if (req.ValidVersions != resp.ValidVersions)
                throw new SchemaException($"{req.SourcePath}: versions {req.ValidVersions} differ from {resp.SourcePath}'s {resp.ValidVersions}");
            if (!req.Name.EndsWith("Request", StringComparison.Ordinal)) throw new SchemaException($"{req.SourcePath}: request name must end in Request");
            result.Add((req.Name[..^"Request".Length], req, resp));
        }
        foreach (var (key, resp) in responses)
        {
            if (!requests.ContainsKey(key)) throw new SchemaException($"{resp.SourcePath}: no request with apiKey {key}");
        }
        return result;
    }

    public static IEnumerable<(string FileName, string Text)> EmitMetadataRegistry(IReadOnlyList<MessageSpec> records, string ns)
    {
        var typed = records
            .Select(r => (Name: r.Name.EndsWith("Record", StringComparison.Ordinal) ? r.Name[..^"Record".Length] : r.Name,
                Spec: r, Type: r.ApiKey ?? throw new SchemaException($"{r.SourcePath}: metadata record without apiKey")))
            .OrderBy(r => r.Type)
            .ToList();
        if (typed.GroupBy(r => r.Type).FirstOrDefault(g => g.Count() > 1) is { } dup)
            throw new SchemaException($"metadata record type {dup.Key} used by {string.Join(", ", dup.Select(d => d.Spec.Name))}");

        var e = Header("kafka-metadata/*.json");
        e.Line($"namespace {ns};");
        e.Line();
        e.Line("/// <summary>KRaft metadata record types (the schema's apiKey): the record name without \"Record\".</summary>");
        e.Open("public enum MetadataRecordType : short");
        foreach (var r in typed) e.Line($"{r.Name} = {r.Type},");
        e.Close();
        yield return ("MetadataRecordType.g.cs", e.ToString());

        var w = Header("kafka-metadata/*.json");
        w.Line("using Freshet.Protocol.Wire;");
        w.Line();
        w.Line($"namespace {ns};");
        w.Line();
        w.Line("/// <summary>Factories for the metadata record classes by record type.</summary>");
        w.Open("public static class MetadataRecords");
        w.Line("/// <summary>Every record type the schemas define, ascending.</summary>");
        w.Line($"public static IReadOnlyList<short> AllTypes {{ get; }} = [{string.Join(", ", typed.Select(r => r.Type))}];");
        w.Line();
        w.Line("/// <summary>A new, empty record of the type, or null for an unknown type.</summary>");
        w.Line("public static IMessage? Create(short type) => type switch");
        w.OpenScope();
        foreach (var r in typed) w.Line($"{r.Type} => new {r.Spec.Name}(),");
        w.Line("_ => null,");
        w.Close(";");
        w.Close();
        yield return ("MetadataRecords.g.cs", w.ToString());
    }

    /// <summary>
    /// The internal topic each coordinator record pair belongs to. The schemas (at this Kafka commit)
    /// do not say it: they come from different Kafka modules, and the key's version, which selects
    /// the record type, is only unique within one topic. So this table is the one piece of
    /// knowledge not taken from the schemas; every pair not listed is a __consumer_offsets record.
    /// </summary>
    private static readonly Dictionary<string, string> TopicOfRecord = new(StringComparer.Ordinal)
    {
        ["TransactionLog"] = "TransactionState",
        ["ShareSnapshot"] = "ShareGroupState",
        ["ShareUpdate"] = "ShareGroupState",
    };

    private static readonly (string Topic, string KafkaName)[] Topics =
    [
        ("ConsumerOffsets", "__consumer_offsets"),
        ("TransactionState", "__transaction_state"),
        ("ShareGroupState", "__share_group_state"),
    ];

    public static IEnumerable<(string FileName, string Text)> EmitCoordinatorRegistry(IReadOnlyList<MessageSpec> records, string ns)
    {
        // A record is a key schema "XKey" and a value schema "XValue"; the key is written after its
        // version (int16), which names the record type within the topic. Other schemas
        // (QuorumStateData) are not topic records.
        var byName = records.ToDictionary(r => r.Name, StringComparer.Ordinal);
        var pairs = new List<(string Topic, string Name, MessageSpec Key, MessageSpec Value)>();
        foreach (var key in records.Where(r => r.Name.EndsWith("Key", StringComparison.Ordinal)).OrderBy(r => r.Name, StringComparer.Ordinal))
        {
            string name = key.Name[..^"Key".Length];
            if (!byName.TryGetValue(name + "Value", out var value)) throw new SchemaException($"{key.SourcePath}: no {name}Value schema");
            pairs.Add((TopicOfRecord.GetValueOrDefault(name, "ConsumerOffsets"), name, key, value));
        }
        foreach (var group in pairs.GroupBy(p => p.Topic))
        {
            var seen = new Dictionary<short, string>();
            foreach (var p in group)
            {
                for (int v = p.Key.ValidVersions.Lowest; v <= p.Key.ValidVersions.Highest; v++)
                {
                    if (!seen.TryAdd((short)v, p.Name)) throw new SchemaException($"{group.Key}: key version {v} used by {seen[(short)v]} and {p.Name}");
                }
            }
        }

        var w = Header("kafka-coordinator-records/*Key.json and *Value.json");
        w.Line("using Freshet.Protocol.Wire;");
        w.Line();
        w.Line($"namespace {ns};");
        w.Line();
        w.Line("/// <summary>The internal topics coordinators write key/value records to.</summary>");
        w.Open("public enum CoordinatorTopic");
        foreach (var (topic, kafkaName) in Topics)
        {
            w.Line($"/// <summary>{kafkaName}</summary>");
            w.Line($"{topic},");
        }
        w.Close();
        foreach (var (topic, kafkaName) in Topics)
        {
            var inTopic = pairs.Where(p => p.Topic == topic).OrderBy(p => p.Key.ValidVersions.Highest).ToList();
            w.Line();
            w.Line($"/// <summary>Record types of {kafkaName}: the key version a writer uses (the key schema's highest).</summary>");
            w.Open($"public enum {topic}RecordType : short");
            foreach (var p in inTopic) w.Line($"{p.Name} = {p.Key.ValidVersions.Highest},");
            w.Close();
        }
        w.Line();
        w.Line("/// <summary>Factories for coordinator record keys and values, by topic and key version.</summary>");
        w.Open("public static class CoordinatorRecords");
        foreach (var (what, pick) in new (string, Func<(string Topic, string Name, MessageSpec Key, MessageSpec Value), MessageSpec>)[]
                 { ("Key", p => p.Key), ("Value", p => p.Value) })
        {
            w.Line($"/// <summary>A new, empty record {what.ToLowerInvariant()} for the key version, or null for an unknown one.</summary>");
            w.Line($"public static IMessage? Create{what}(CoordinatorTopic topic, short keyVersion) => (topic, keyVersion) switch");
            w.OpenScope();
            foreach (var p in pairs.OrderBy(p => Array.FindIndex(Topics, t => t.Topic == p.Topic)).ThenBy(p => p.Key.ValidVersions.Lowest))
            {
                var r = p.Key.ValidVersions;
                string versions = r.Lowest == r.Highest ? $"{r.Lowest}"
                    : string.Join(" or ", Enumerable.Range(r.Lowest, r.Highest - r.Lowest + 1));
                w.Line($"(CoordinatorTopic.{p.Topic}, {versions}) => new {pick(p).Name}(),");
            }
            w.Line("_ => null,");
            w.Close(";");
            if (what == "Key") w.Line();
        }
        w.Close();
        yield return ("CoordinatorRecords.g.cs", w.ToString());
    }

    private static CodeWriter Header(string sources)
    {
        var w = new CodeWriter();
        w.Line("// <auto-generated>");
        w.Line($"//     Generated by tools/Freshet.ProtocolGen from {sources}.");
        w.Line("//     Do not edit: change the generator or the schemas, then regenerate.");
        w.Line("// </auto-generated>");
        w.Line();
        w.Line("#nullable enable");
        w.Line();
        return w;
    }
}
