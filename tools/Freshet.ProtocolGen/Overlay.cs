using System.Text.Json;

namespace Freshet.ProtocolGen;

/// <summary>
/// Freshet's own additions to Kafka's schemas: versions that a newer Kafka release has and the
/// schema copy beside the repository (../shared) does not. The schemas stay as Kafka wrote them;
/// an overlay is applied to the parsed schema at generation time, so `--check` covers it like the
/// schemas themselves.
///
/// Where: tools/Freshet.ProtocolGen/overlay/&lt;schema folder&gt;/&lt;schema file name&gt;, e.g.
/// overlay/kafka-protocol/ProduceRequest.overlay.json for kafka-protocol/ProduceRequest.json. Format (JSON,
/// // comments allowed; unknown properties are an error, so a typo never passes silently):
///
///   {
///     "name": "ProduceRequest",              // must be the schema's name
///     "reason": "...",                       // required: which Kafka release / KIP, in our own words
///     "validVersions": "0-12",               // optional: the same lowest version, a higher highest one
///     "latestVersionUnstable": false,        // optional: must differ from the schema's
///     "addFields": [                         // optional: fields of the new versions only
///       { "under": "TopicData.PartitionData", // field names from the message root ("" = the message);
///                                             // a first segment naming a commonStruct starts there
///         "field": { "name": "...", "type": "int32", "versions": "13+", ... } }  // schema syntax
///     ]
///   }
///
/// An overlay may only add: versions above the schema's highest, and fields that exist in those
/// versions alone (or are tagged with a new tag), so the encoding of every version the schema
/// already had stays byte for byte Kafka's. An overlay that adds nothing (the schema copy was
/// updated and already has it) is an error that says to delete it.
/// </summary>
public static class Overlay
{
    /// <summary>Where the overlays live, relative to the repository root.</summary>
    public const string Folder = "tools/Freshet.ProtocolGen/overlay";

    private static readonly JsonDocumentOptions Options = new()
    {
        CommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    private static readonly HashSet<string> TopLevelProperties =
        ["name", "reason", "validVersions", "latestVersionUnstable", "addFields"];

    /// <summary>
    /// The overlays of one schema folder by schema file name ("ProduceRequest.json"), or an empty
    /// map when the repository has none for it.
    /// </summary>
    public static Dictionary<string, string> FilesFor(string repoRoot, string schemaDir)
    {
        string dir = Path.Combine(repoRoot, Folder, schemaDir);
        if (!Directory.Exists(dir)) return new(StringComparer.Ordinal);
        return Directory.EnumerateFiles(dir, "*" + Suffix)
            .Order(StringComparer.Ordinal)
            .ToDictionary(p => Path.GetFileName(p)[..^Suffix.Length] + ".json", p => p, StringComparer.Ordinal);
    }

    /// <summary>
    /// An overlay's file name ends so ("ProduceRequest.overlay.json" for ProduceRequest.json): a delta of our own,
    /// never mistaken for one of Kafka's schema files, which stay outside the repository.
    /// </summary>
    public const string Suffix = ".overlay.json";

    /// <summary>The repository-relative path of the overlay for <paramref name="schemaFile"/> ("ProduceRequest.json").</summary>
    public static string RelativePath(string schemaDir, string schemaFile) =>
        $"{Folder}/{schemaDir}/{schemaFile[..^".json".Length]}{Suffix}";

    /// <summary>The schema with the overlay's changes; throws <see cref="SchemaException"/> naming the overlay on any misuse.</summary>
    public static MessageSpec Apply(MessageSpec spec, string overlayJson, string overlayPath)
    {
        try
        {
            return ApplyCore(spec, overlayJson, overlayPath);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException
                                  || (e is SchemaException && !e.Message.StartsWith(overlayPath + ":", StringComparison.Ordinal)))
        {
            throw new SchemaException($"{overlayPath}: {e.Message}");
        }
    }

    private static MessageSpec ApplyCore(MessageSpec spec, string overlayJson, string overlayPath)
    {
        using var doc = JsonDocument.Parse(overlayJson, Options);
        var root = doc.RootElement;
        SchemaException Error(string what) => new($"{overlayPath}: {what}");

        if (root.ValueKind != JsonValueKind.Object) throw Error("an overlay is a JSON object");
        foreach (var p in root.EnumerateObject())
            if (!TopLevelProperties.Contains(p.Name)) throw Error($"unknown property \"{p.Name}\"");
        string name = root.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString()! : throw Error("missing \"name\"");
        if (name != spec.Name) throw Error($"names {name}, but the schema {spec.SourcePath} is {spec.Name}");
        if (!root.TryGetProperty("reason", out var reason) || reason.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(reason.GetString()))
            throw Error("missing \"reason\" (say which Kafka release and KIP the change comes from)");

        var valid = spec.ValidVersions;
        bool changed = false;
        if (root.TryGetProperty("validVersions", out var vv))
        {
            var raised = VersionRange.Parse(vv.GetString() ?? throw Error("validVersions must be a string"));
            if (raised.IsEmpty || raised.IsOpenEnded) throw Error("validVersions must be a closed range");
            if (raised.Lowest != valid.Lowest) throw Error($"validVersions {raised} changes the lowest version of {spec.SourcePath} ({valid}); an overlay only adds versions");
            if (raised.Highest <= valid.Highest)
                throw Error($"validVersions {raised} adds nothing to {spec.SourcePath}'s {valid}: the schema already has these versions, delete this part of the overlay");
            valid = raised;
            changed = true;
        }

        bool unstable = spec.LatestVersionUnstable;
        if (root.TryGetProperty("latestVersionUnstable", out var lu))
        {
            bool value = lu.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Error("latestVersionUnstable must be true or false"),
            };
            if (value == spec.LatestVersionUnstable)
                throw Error($"latestVersionUnstable is already {(value ? "true" : "false")} in {spec.SourcePath}: delete this part of the overlay");
            unstable = value;
            changed = true;
        }

        var fields = spec.Fields;
        var commonStructs = spec.CommonStructs;
        if (root.TryGetProperty("addFields", out var addFields))
        {
            if (addFields.ValueKind != JsonValueKind.Array) throw Error("addFields must be an array");
            foreach (var add in addFields.EnumerateArray())
            {
                foreach (var p in add.EnumerateObject())
                    if (p.Name is not ("under" or "field")) throw Error($"unknown property \"{p.Name}\" in addFields");
                string under = add.TryGetProperty("under", out var u) && u.ValueKind == JsonValueKind.String ? u.GetString()! : throw Error("an addFields entry needs \"under\" (\"\" for the message itself)");
                if (!add.TryGetProperty("field", out var fieldJson)) throw Error("an addFields entry needs \"field\"");
                var field = SchemaParser.ParseField(fieldJson, under.Length == 0 ? spec.Name : under);
                // Only versions the schema did not have: an old version's encoding must not change.
                // A tagged field is the exception Kafka itself uses: old readers skip unknown tags.
                if (field.Tag is null && field.Versions.Lowest <= spec.ValidVersions.Highest)
                    throw Error($"field {field.Name} would exist in version {field.Versions.Lowest}, which {spec.SourcePath} already defines; a new field exists only in the versions the overlay adds ({spec.ValidVersions.Highest + 1}+) or is tagged");
                if (field.Versions.Lowest > valid.Highest) throw Error($"field {field.Name} exists in no valid version ({valid})");

                var path = under.Length == 0 ? [] : under.Split('.');
                var common = path.Length > 0 ? commonStructs.FirstOrDefault(s => s.Name == path[0]) : null;
                if (common is not null)
                {
                    var updated = new StructSpec { Name = common.Name, Versions = common.Versions, Fields = AddField(common.Fields, path[1..], field, under, Error) };
                    commonStructs = [.. commonStructs.Select(s => ReferenceEquals(s, common) ? updated : s)];
                }
                else
                {
                    fields = AddField(fields, path, field, under, Error);
                }
                changed = true;
            }
        }
        if (!changed) throw Error("changes nothing");

        return new MessageSpec
        {
            Name = spec.Name,
            Type = spec.Type,
            Kind = spec.Kind,
            SourcePath = spec.SourcePath,
            OverlayPath = overlayPath,
            WithoutOverlay = spec,
            ApiKey = spec.ApiKey,
            ValidVersions = valid,
            FlexibleVersions = spec.FlexibleVersions,
            DeprecatedVersions = spec.DeprecatedVersions,
            Listeners = spec.Listeners,
            LatestVersionUnstable = unstable,
            Fields = fields,
            CommonStructs = commonStructs,
        };
    }

    /// <summary>The fields with <paramref name="field"/> appended to the struct that <paramref name="path"/> leads to.</summary>
    private static IReadOnlyList<FieldSpec> AddField(IReadOnlyList<FieldSpec> fields, ReadOnlySpan<string> path, FieldSpec field, string under, Func<string, SchemaException> error)
    {
        if (path.IsEmpty)
        {
            if (fields.Any(f => f.Name == field.Name)) throw error($"{(under.Length == 0 ? "the message" : under)} already has a field {field.Name}");
            return [.. fields, field];
        }
        string head = path[0];
        var parent = fields.FirstOrDefault(f => f.Name == head);
        if (parent is null || parent.Fields.Count == 0)
        {
            throw error($"\"{under}\": no struct field {head} declares fields there");
        }
        var updated = new FieldSpec
        {
            Name = parent.Name,
            Type = parent.Type,
            Versions = parent.Versions,
            NullableVersions = parent.NullableVersions,
            TaggedVersions = parent.TaggedVersions,
            Tag = parent.Tag,
            FlexibleVersions = parent.FlexibleVersions,
            Default = parent.Default,
            Ignorable = parent.Ignorable,
            MapKey = parent.MapKey,
            Fields = AddField(parent.Fields, path[1..], field, under, error),
        };
        return [.. fields.Select(f => ReferenceEquals(f, parent) ? updated : f)];
    }
}
