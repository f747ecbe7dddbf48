using System.Text.Json;

namespace Freshet.ProtocolGen;

/// <summary>
/// Reads Kafka's message schemas (JSON with // comments) into <see cref="MessageSpec"/>s.
/// Only names, types and version ranges are kept: the "about" texts and the license headers are
/// Kafka's prose and must not end up in Freshet's sources.
/// </summary>
public static class SchemaParser
{
    // System.Text.Json skips // and /* */ comments itself, which is safer than stripping them with
    // a regex: some "about" strings contain "//" (URLs).
    private static readonly JsonDocumentOptions Options = new()
    {
        CommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    public static MessageSpec ParseFile(string path, string sourcePath, SchemaKind kind)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path), Options);
            return ParseMessage(doc.RootElement, sourcePath, kind);
        }
        catch (Exception e) when (e is JsonException or SchemaException or InvalidOperationException or FormatException)
        {
            throw new SchemaException($"{sourcePath}: {e.Message}");
        }
    }

    private static MessageSpec ParseMessage(JsonElement root, string sourcePath, SchemaKind kind)
    {
        string name = RequiredString(root, "name");
        var valid = VersionRange.Parse(RequiredString(root, "validVersions"));
        if (valid.IsEmpty || valid.IsOpenEnded) throw new SchemaException($"{name}: validVersions must be a closed range");
        return new MessageSpec
        {
            Name = name,
            Type = RequiredString(root, "type"),
            Kind = kind,
            SourcePath = sourcePath,
            ApiKey = root.TryGetProperty("apiKey", out var apiKey) ? checked((short)Integer(apiKey)) : null,
            ValidVersions = valid,
            FlexibleVersions = VersionRange.Parse(RequiredString(root, "flexibleVersions")),
            DeprecatedVersions = OptionalRange(root, "deprecatedVersions") ?? VersionRange.None,
            Listeners = root.TryGetProperty("listeners", out var listeners)
                ? [.. listeners.EnumerateArray().Select(l => l.GetString() ?? throw new SchemaException($"{name}: null listener"))]
                : [],
            LatestVersionUnstable = root.TryGetProperty("latestVersionUnstable", out var unstable) && unstable.GetBoolean(),
            Fields = ParseFields(root, name),
            CommonStructs = root.TryGetProperty("commonStructs", out var common)
                ? [.. common.EnumerateArray().Select(s => new StructSpec
                {
                    Name = RequiredString(s, "name"),
                    Versions = VersionRange.Parse(RequiredString(s, "versions")),
                    Fields = ParseFields(s, RequiredString(s, "name")),
                })]
                : [],
        };
    }

    private static List<FieldSpec> ParseFields(JsonElement parent, string parentName)
    {
        if (!parent.TryGetProperty("fields", out var fields)) return [];
        return [.. fields.EnumerateArray().Select(f => ParseField(f, parentName))];
    }

    /// <summary>One field in the schema syntax (also used for the fields an <see cref="Overlay"/> adds).</summary>
    internal static FieldSpec ParseField(JsonElement e, string parentName)
    {
        string name = RequiredString(e, "name");
        string where = $"{parentName}.{name}";
        try
        {
            var type = FieldType.Parse(RequiredString(e, "type"));
            var tagged = OptionalRange(e, "taggedVersions") ?? VersionRange.None;
            // Kafka's rule: a field without "versions" exists in its tagged versions.
            var versions = OptionalRange(e, "versions") ?? (tagged.IsEmpty
                ? throw new SchemaException("no versions")
                : tagged);
            int? tag = e.TryGetProperty("tag", out var t) ? Integer(t) : null;
            if (tag is not null && (tagged.IsEmpty || !tagged.IsOpenEnded)) throw new SchemaException("a tag needs open-ended taggedVersions");
            if (tag is null && !tagged.IsEmpty) throw new SchemaException("taggedVersions without a tag");
            if (tag < 0) throw new SchemaException("negative tag");
            var nullable = OptionalRange(e, "nullableVersions") ?? VersionRange.None;
            if (!nullable.IsEmpty && !type.CanBeNullable) throw new SchemaException($"type {type} cannot be nullable");
            var flexible = OptionalRange(e, "flexibleVersions");
            if (flexible is not null && type.Kind is not (TypeKind.String or TypeKind.Bytes))
                throw new SchemaException("only string and bytes fields may override flexibleVersions");
            var inline = ParseFields(e, type.IsArray ? type.Element!.StructName ?? name : type.StructName ?? name);
            if (inline.Count > 0 && !(type.IsStruct || type.IsStructArray)) throw new SchemaException("only struct fields may declare fields");
            return new FieldSpec
            {
                Name = name,
                Type = type,
                Versions = versions,
                NullableVersions = nullable,
                TaggedVersions = tagged,
                Tag = tag,
                FlexibleVersions = flexible,
                Default = DefaultText(e),
                Ignorable = e.TryGetProperty("ignorable", out var ig) && ig.GetBoolean(),
                MapKey = e.TryGetProperty("mapKey", out var mk) && mk.GetBoolean(),
                Fields = inline,
            };
        }
        catch (SchemaException ex)
        {
            throw new SchemaException($"field {where}: {ex.Message}");
        }
    }

    /// <summary>The default as Kafka's generator reads it (see <see cref="FieldSpec.Default"/>).</summary>
    private static string DefaultText(JsonElement field)
    {
        if (!field.TryGetProperty("default", out var d)) return "";
        return d.ValueKind switch
        {
            JsonValueKind.String => d.GetString()!,
            JsonValueKind.Number => d.GetRawText(),
            JsonValueKind.True => "true",
            JsonValueKind.False => "false",
            JsonValueKind.Null => "",
            _ => throw new SchemaException($"unsupported default {d.GetRawText()}"),
        };
    }

    /// <summary>An integer written as a JSON number or as a string ("tag": "0" occurs; Kafka's Jackson binding accepts both).</summary>
    private static int Integer(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Number => e.GetInt32(),
        JsonValueKind.String when int.TryParse(e.GetString(), System.Globalization.NumberStyles.AllowLeadingSign,
            System.Globalization.CultureInfo.InvariantCulture, out int v) => v,
        _ => throw new SchemaException($"expected an integer, found {e.GetRawText()}"),
    };

    private static string RequiredString(JsonElement e, string property) =>
        e.TryGetProperty(property, out var v) && v.ValueKind == JsonValueKind.String
            ? v.GetString()!
            : throw new SchemaException($"missing \"{property}\"");

    private static VersionRange? OptionalRange(JsonElement e, string property) =>
        e.TryGetProperty(property, out var v) ? VersionRange.Parse(v.GetString() ?? "none") : null;
}
