using System.Globalization;

namespace Freshet.ProtocolGen;

/// <summary>
/// A contiguous range of versions, as the schemas write them: "3", "3+", "3-7" or "none".
/// Every range in the schemas is contiguous, which keeps the emitted version checks to at most
/// two comparisons.
/// </summary>
public readonly record struct VersionRange(short Lowest, short Highest)
{
    /// <summary>The empty range ("none").</summary>
    public static readonly VersionRange None = new(1, 0);

    /// <summary>"0+": every version.</summary>
    public static readonly VersionRange All = new(0, short.MaxValue);

    public bool IsEmpty => Lowest > Highest;

    /// <summary>Open-ended ("N+"): new versions of the schema keep it.</summary>
    public bool IsOpenEnded => !IsEmpty && Highest == short.MaxValue;

    public bool Contains(short version) => version >= Lowest && version <= Highest;

    public bool Contains(VersionRange other) =>
        other.IsEmpty || (!IsEmpty && Lowest <= other.Lowest && other.Highest <= Highest);

    public VersionRange Intersect(VersionRange other)
    {
        var r = new VersionRange(Math.Max(Lowest, other.Lowest), Math.Min(Highest, other.Highest));
        return r.IsEmpty ? None : r;
    }

    /// <summary>
    /// The versions of this range that are not in <paramref name="other"/>. Only defined when the
    /// result is contiguous, which holds for what the generator asks (a field's versions minus its
    /// open-ended tagged versions).
    /// </summary>
    public VersionRange Except(VersionRange other)
    {
        if (IsEmpty) return None;
        var common = Intersect(other);
        if (common.IsEmpty) return this;
        if (common == this) return None;
        if (common.Lowest == Lowest) return new VersionRange((short)(common.Highest + 1), Highest);
        if (common.Highest == Highest) return new VersionRange(Lowest, (short)(common.Lowest - 1));
        throw new SchemaException($"{this} minus {other} is not a contiguous range");
    }

    public static VersionRange Parse(string text)
    {
        text = text.Trim();
        if (text == "none") return None;
        if (text.EndsWith('+')) return new VersionRange(ParseVersion(text[..^1], text), short.MaxValue);
        int dash = text.IndexOf('-');
        if (dash > 0) return Checked(new VersionRange(ParseVersion(text[..dash], text), ParseVersion(text[(dash + 1)..], text)), text);
        short v = ParseVersion(text, text);
        return new VersionRange(v, v);
    }

    private static VersionRange Checked(VersionRange r, string text) =>
        r.IsEmpty ? throw new SchemaException($"empty version range '{text}'") : r;

    private static short ParseVersion(string s, string whole) =>
        short.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out short v) && v >= 0
            ? v
            : throw new SchemaException($"bad version range '{whole}'");

    public override string ToString() =>
        IsEmpty ? "none" : IsOpenEnded ? $"{Lowest}+" : Lowest == Highest ? $"{Lowest}" : $"{Lowest}-{Highest}";
}

/// <summary>The primitive kinds of the schema type system; arrays and structs wrap them.</summary>
public enum TypeKind
{
    Bool,
    Int8,
    Int16,
    UInt16,
    Int32,
    UInt32,
    Int64,
    Float64,
    String,
    Bytes,
    Records,
    Uuid,
    Struct,
    Array,
}

/// <summary>A field type: a primitive, a struct (by schema name), or an array of either.</summary>
public sealed record FieldType(TypeKind Kind, FieldType? Element = null, string? StructName = null)
{
    public static FieldType Parse(string text)
    {
        if (text.StartsWith("[]", StringComparison.Ordinal))
        {
            var element = Parse(text[2..]);
            if (element.Kind == TypeKind.Array) throw new SchemaException($"nested arrays are not supported: '{text}'");
            if (element.Kind == TypeKind.Records) throw new SchemaException($"arrays of records are not supported: '{text}'");
            return new FieldType(TypeKind.Array, element);
        }
        return text switch
        {
            "bool" => new FieldType(TypeKind.Bool),
            "int8" => new FieldType(TypeKind.Int8),
            "int16" => new FieldType(TypeKind.Int16),
            "uint16" => new FieldType(TypeKind.UInt16),
            "int32" => new FieldType(TypeKind.Int32),
            "uint32" => new FieldType(TypeKind.UInt32),
            "int64" => new FieldType(TypeKind.Int64),
            "float64" => new FieldType(TypeKind.Float64),
            "string" => new FieldType(TypeKind.String),
            "bytes" => new FieldType(TypeKind.Bytes),
            "records" => new FieldType(TypeKind.Records),
            "uuid" => new FieldType(TypeKind.Uuid),
            _ when text.Length > 0 && char.IsLetter(text[0]) => new FieldType(TypeKind.Struct, StructName: text),
            _ => throw new SchemaException($"unknown type '{text}'"),
        };
    }

    public bool IsArray => Kind == TypeKind.Array;
    public bool IsStruct => Kind == TypeKind.Struct;
    public bool IsStructArray => Kind == TypeKind.Array && Element!.Kind == TypeKind.Struct;

    /// <summary>Encoded size of fixed-size types, null for variable-length ones.</summary>
    public int? FixedSize => Kind switch
    {
        TypeKind.Bool or TypeKind.Int8 => 1,
        TypeKind.Int16 or TypeKind.UInt16 => 2,
        TypeKind.Int32 or TypeKind.UInt32 => 4,
        TypeKind.Int64 or TypeKind.Float64 => 8,
        TypeKind.Uuid => 16,
        _ => null,
    };

    /// <summary>Types whose value can be null in nullable versions.</summary>
    public bool CanBeNullable => Kind is TypeKind.String or TypeKind.Bytes or TypeKind.Records or TypeKind.Array or TypeKind.Struct;

    public override string ToString() => Kind switch
    {
        TypeKind.Array => "[]" + Element,
        TypeKind.Struct => StructName!,
        _ => Kind.ToString().ToLowerInvariant(),
    };
}

/// <summary>One field of a struct or message, as the schema declares it.</summary>
public sealed class FieldSpec
{
    public required string Name { get; init; }
    public required FieldType Type { get; init; }
    public required VersionRange Versions { get; init; }
    public VersionRange NullableVersions { get; init; } = VersionRange.None;
    public VersionRange TaggedVersions { get; init; } = VersionRange.None;
    public int? Tag { get; init; }

    /// <summary>Per-field override of the message's flexible versions (only RequestHeader.ClientId uses it).</summary>
    public VersionRange? FlexibleVersions { get; init; }

    /// <summary>
    /// The "default" text, as Kafka's generator sees it: a JSON string as is, a JSON number or
    /// bool as its text, and an absent default or a JSON null as "" (Kafka's Jackson binding turns
    /// a JSON null into no default, so only the string "null" means null).
    /// </summary>
    public string Default { get; init; } = "";

    public bool Ignorable { get; init; }
    public bool MapKey { get; init; }

    /// <summary>Fields of the struct this field declares inline (struct or struct-array type), else empty.</summary>
    public IReadOnlyList<FieldSpec> Fields { get; init; } = [];

    public bool IsNullableSomewhere => !NullableVersions.Intersect(Versions).IsEmpty;
    public bool IsTaggedSomewhere => Tag is not null;
}

/// <summary>A struct: the fields of a message, of a commonStruct, or of an inline struct field.</summary>
public sealed class StructSpec
{
    public required string Name { get; init; }
    public required VersionRange Versions { get; init; }
    public required IReadOnlyList<FieldSpec> Fields { get; init; }
}

/// <summary>Where a schema came from and where its class goes.</summary>
public enum SchemaKind
{
    /// <summary>kafka-protocol: requests, responses, headers and the data types Kafka writes in records.</summary>
    Protocol,

    /// <summary>kafka-metadata: KRaft metadata log records.</summary>
    Metadata,

    /// <summary>kafka-coordinator-records: internal-topic keys and values, and the quorum-state file.</summary>
    Coordinator,
}

/// <summary>One schema file.</summary>
public sealed class MessageSpec
{
    public required string Name { get; init; }

    /// <summary>"request", "response", "header", "metadata" or "data".</summary>
    public required string Type { get; init; }

    public required SchemaKind Kind { get; init; }

    /// <summary>File name relative to the schema root, e.g. "kafka-protocol/ProduceRequest.json".</summary>
    public required string SourcePath { get; init; }

    /// <summary>The repository-relative path of the <see cref="Overlay"/> applied to this schema, or null.</summary>
    public string? OverlayPath { get; init; }

    /// <summary>The schema as Kafka's file has it, before the overlay; null when no overlay applies.</summary>
    public MessageSpec? WithoutOverlay { get; init; }

    public short? ApiKey { get; init; }
    public required VersionRange ValidVersions { get; init; }
    public required VersionRange FlexibleVersions { get; init; }
    public VersionRange DeprecatedVersions { get; init; } = VersionRange.None;
    public IReadOnlyList<string> Listeners { get; init; } = [];
    public bool LatestVersionUnstable { get; init; }
    public required IReadOnlyList<FieldSpec> Fields { get; init; }
    public IReadOnlyList<StructSpec> CommonStructs { get; init; } = [];

    public bool IsApiMessage => Type is "request" or "response";
}

/// <summary>A schema the generator cannot handle; the message names the file and the field.</summary>
public sealed class SchemaException(string message) : Exception(message);
