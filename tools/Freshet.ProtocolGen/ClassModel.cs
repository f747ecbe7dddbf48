namespace Freshet.ProtocolGen;

/// <summary>A C# class to emit: the message itself or one of its structs, with resolved names.</summary>
public sealed class ClassModel
{
    public required string Name { get; init; }
    public required string SchemaName { get; init; }
    public required MessageSpec Message { get; init; }
    public required bool IsTopLevel { get; init; }

    /// <summary>Versions this class can be read and written at: the message's valid versions, narrowed by the fields that hold it.</summary>
    public required VersionRange Versions { get; init; }

    public List<FieldModel> Fields { get; } = [];

    /// <summary>Structs of the message (top-level class only), in schema order.</summary>
    public List<ClassModel> Nested { get; } = [];

    /// <summary>Versions of this class that have compact encodings and a tagged-field section.</summary>
    public VersionRange FlexibleVersions => Message.FlexibleVersions.Intersect(Versions);

    public bool HasFlexibleVersions => !FlexibleVersions.IsEmpty;

    /// <summary>True when the class, or a struct it holds, has a records field (records may be external, see MessageSize).</summary>
    public bool ContainsRecords(HashSet<ClassModel>? seen = null)
    {
        seen ??= [];
        if (!seen.Add(this)) return false;
        return Fields.Any(f => f.Type.Kind == TypeKind.Records || (f.Struct?.ContainsRecords(seen) ?? false));
    }
}

/// <summary>A field with its C# property name and, for struct and struct-array fields, the struct's class.</summary>
public sealed class FieldModel
{
    public required FieldSpec Spec { get; init; }
    public required string Property { get; init; }
    public ClassModel? Struct { get; set; }

    public FieldType Type => Spec.Type;

    /// <summary>Element type of an array field, the field type otherwise.</summary>
    public FieldType ValueType => Type.IsArray ? Type.Element! : Type;
}

/// <summary>
/// Builds the classes of one schema and gives every class and property its C# name.
///
/// Layout (as Kafka's Java generator does): every struct of a message, inline or common, becomes a
/// class nested directly in the message class. Kafka requires struct names to be unique within a
/// schema, so the flat layout never has two structs with one name.
///
/// Naming rules, applied in this order, deterministic for a given schema:
/// 1. Properties are the field names with the first letter upper-cased ("offset" -> Offset).
/// 2. A property whose name is one of the members every generated class has (Read, Write, AddSize,
///    Equals, UnknownTaggedFields, ...; on the message class also ApiKey, LowestVersion, ...), a
///    type the generated code names in expressions (Uuid, MessageSize, ProtocolException, ...), or
///    the name of the message class itself, gets the suffix "Value".
/// 3. A struct class whose name equals the message class, a property of the message class, a
///    property of the struct itself, a generated member name, a type name the generated code uses,
///    or an already chosen struct class name, gets the suffix "Data" (repeated until unique). So
///    ConsumerGroupHeartbeatResponse's field Assignment of struct Assignment becomes property
///    Assignment of class AssignmentData. Property names are never changed for a struct: they are
///    what callers use.
/// C# keywords need no rule: they are all lower case and every name is capitalized.
/// </summary>
public static class ClassModelBuilder
{
    private static readonly HashSet<string> CommonMembers =
    [
        "Read", "Write", "AddSize", "Equals", "GetHashCode", "ToString", "GetType", "MemberwiseClone",
        "ReferenceEquals", "Finalize", "LowestSupportedVersion", "HighestSupportedVersion", "UnknownTaggedFields",
    ];

    private static readonly HashSet<string> TopLevelMembers =
        [.. CommonMembers, "ApiKey", "ApiKeyValue", "LowestVersion", "HighestVersion", "IsFlexibleVersion"];

    /// <summary>Types the generated code names in expression context, where a property of that name would win.</summary>
    private static readonly HashSet<string> ExpressionTypeNames =
        ["Uuid", "MessageSize", "MessageSupport", "ProtocolException", "InvalidOperationException"];

    /// <summary>Every type the generated code names; a nested class with one of these names would shadow it.</summary>
    private static readonly HashSet<string> UsedTypeNames =
    [
        .. ExpressionTypeNames, "List", "ReadOnlyMemory", "RecordSet", "RawTaggedField", "ProtocolReader",
        "ProtocolWriter", "IMessage", "IApiMessage", "IApiRequest", "HashCode",
    ];

    public static ClassModel Build(MessageSpec message)
    {
        // Pass 1: register every struct with its schema, its versions and where it came from.
        var structs = new Dictionary<string, (StructSpec Spec, VersionRange Versions)>(StringComparer.Ordinal);
        var order = new List<string>();

        void Register(string name, StructSpec spec, VersionRange versions)
        {
            if (versions.IsEmpty) throw new SchemaException($"{message.SourcePath}: struct {name} exists in no valid version");
            if (!structs.TryAdd(name, (spec, versions))) throw new SchemaException($"{message.SourcePath}: struct {name} is defined twice");
            order.Add(name);
        }

        void RegisterInline(IReadOnlyList<FieldSpec> fields, VersionRange parentVersions)
        {
            foreach (var f in fields)
            {
                if (f.Fields.Count == 0) continue;
                string name = Capitalize(f.Type.IsArray ? f.Type.Element!.StructName! : f.Type.StructName!);
                var versions = parentVersions.Intersect(f.Versions);
                Register(name, new StructSpec { Name = name, Versions = f.Versions, Fields = f.Fields }, versions);
                RegisterInline(f.Fields, versions);
            }
        }

        RegisterInline(message.Fields, message.ValidVersions);
        foreach (var common in message.CommonStructs)
        {
            var versions = common.Versions.Intersect(message.ValidVersions);
            Register(Capitalize(common.Name), common, versions);
            RegisterInline(common.Fields, versions);
        }

        // Pass 2: names. The message's properties first, since struct names must avoid them.
        var top = new ClassModel
        {
            Name = message.Name,
            SchemaName = message.Name,
            Message = message,
            IsTopLevel = true,
            Versions = message.ValidVersions,
        };
        AddFields(top, message.Fields, TopLevelMembers, message.Name);
        var topProperties = top.Fields.Select(f => f.Property).ToHashSet(StringComparer.Ordinal);

        var classes = new Dictionary<string, ClassModel>(StringComparer.Ordinal);
        var taken = new HashSet<string>(StringComparer.Ordinal);
        foreach (string schemaName in order)
        {
            var (spec, versions) = structs[schemaName];
            var ownProperties = spec.Fields.Select(f => PropertyName(f.Name, CommonMembers, null)).ToHashSet(StringComparer.Ordinal);
            string name = schemaName;
            while (name == message.Name || topProperties.Contains(name) || ownProperties.Contains(name)
                   || TopLevelMembers.Contains(name) || UsedTypeNames.Contains(name) || taken.Contains(name))
            {
                name += "Data";
            }
            taken.Add(name);
            var model = new ClassModel
            {
                Name = name,
                SchemaName = schemaName,
                Message = message,
                IsTopLevel = false,
                Versions = versions,
            };
            AddFields(model, spec.Fields, CommonMembers, null);
            classes.Add(schemaName, model);
            top.Nested.Add(model);
        }

        // Pass 3: link struct fields to their classes.
        foreach (var model in top.Nested.Prepend(top))
        {
            foreach (var f in model.Fields)
            {
                if (f.ValueType.Kind != TypeKind.Struct) continue;
                string structName = Capitalize(f.ValueType.StructName!);
                f.Struct = classes.TryGetValue(structName, out var c)
                    ? c
                    : throw new SchemaException($"{message.SourcePath}: field {model.SchemaName}.{f.Spec.Name} uses undefined struct {structName}");
            }
        }
        Validate(top);
        return top;
    }

    private static void AddFields(ClassModel model, IReadOnlyList<FieldSpec> fields, HashSet<string> reserved, string? className)
    {
        var seenTags = new HashSet<int>();
        foreach (var f in fields)
        {
            string property = PropertyName(f.Name, reserved, className);
            if (model.Fields.Any(x => x.Property == property))
                throw new SchemaException($"{model.Message.SourcePath}: two fields of {model.SchemaName} map to property {property}");
            if (f.Tag is int tag && !seenTags.Add(tag))
                throw new SchemaException($"{model.Message.SourcePath}: tag {tag} used twice in {model.SchemaName}");
            model.Fields.Add(new FieldModel { Spec = f, Property = property });
        }
    }

    private static string PropertyName(string fieldName, HashSet<string> reserved, string? className)
    {
        string name = Capitalize(fieldName);
        while (reserved.Contains(name) || ExpressionTypeNames.Contains(name) || name == className) name += "Value";
        return name;
    }

    private static void Validate(ClassModel top)
    {
        foreach (var model in top.Nested.Prepend(top))
        {
            foreach (var f in model.Fields)
            {
                var s = f.Spec;
                if (s.Tag is not null)
                {
                    if (f.Type.Kind == TypeKind.Records || (f.Struct?.ContainsRecords() ?? false))
                        throw new SchemaException($"{top.Message.SourcePath}: tagged field {s.Name} holds records, which cannot be tagged");
                    if (!s.Versions.Contains(s.TaggedVersions))
                        throw new SchemaException($"{top.Message.SourcePath}: taggedVersions of {s.Name} are not within its versions");
                    if (!top.Message.FlexibleVersions.Contains(s.TaggedVersions.Intersect(model.Versions)))
                        throw new SchemaException($"{top.Message.SourcePath}: {s.Name} is tagged in a version that is not flexible");
                }
            }
        }
    }

    public static string Capitalize(string name) =>
        name.Length == 0 ? name : char.ToUpperInvariant(name[0]) + name[1..];
}
