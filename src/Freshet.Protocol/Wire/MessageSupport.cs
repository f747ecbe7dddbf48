namespace Freshet.Protocol.Wire;

/// <summary>
/// Small helpers the generated message classes (tools/Freshet.ProtocolGen) call, kept here so each
/// of the several hundred generated classes does not repeat them. Not meant for other callers.
/// </summary>
internal static class MessageSupport
{
    /// <summary>The exception Write throws for a null where the schema allows none at that version.</summary>
    public static InvalidOperationException NullNotAllowed(string field, short version) =>
        new($"{field} is null, but version {version} does not allow null");

    public static bool BytesEqual(ReadOnlyMemory<byte> a, ReadOnlyMemory<byte> b) => a.Span.SequenceEqual(b.Span);

    public static bool BytesEqual(ReadOnlyMemory<byte>? a, ReadOnlyMemory<byte>? b) =>
        a is null ? b is null : b is not null && a.Value.Span.SequenceEqual(b.Value.Span);

    /// <summary>Element-wise equality (elements by their Equals); two nulls are equal, null and empty are not.</summary>
    public static bool ListEqual<T>(List<T>? a, List<T>? b)
    {
        if (ReferenceEquals(a, b)) return true;
        if (a is null || b is null || a.Count != b.Count) return false;
        var comparer = EqualityComparer<T>.Default;
        for (int i = 0; i < a.Count; i++)
        {
            if (!comparer.Equals(a[i], b[i])) return false;
        }
        return true;
    }

    /// <summary>Unknown tagged fields compare in order; no list and an empty list are the same.</summary>
    public static bool TaggedFieldsEqual(List<RawTaggedField>? a, List<RawTaggedField>? b) =>
        (a is null || a.Count == 0) ? (b is null || b.Count == 0) : ListEqual(a, b);

    /// <summary>
    /// Reads a tagged-field section in which no tag is known: every field is kept as raw bytes.
    /// Returns null when the section is empty (the common case), so nothing is allocated.
    /// </summary>
    public static List<RawTaggedField>? ReadUnknownTaggedFields(ref ProtocolReader reader)
    {
        int count = reader.ReadTaggedFieldCount();
        List<RawTaggedField>? fields = null;
        for (int i = 0; i < count; i++)
        {
            int tag = (int)reader.ReadUnsignedVarInt();
            int end = reader.ReadTaggedFieldEnd();
            (fields ??= []).Add(new RawTaggedField(tag, reader.ReadRawBytes(end - reader.Position)));
        }
        return fields;
    }

    /// <summary>Size of a tagged-field section holding only unknown fields: the count, then each field.</summary>
    public static void AddTaggedFieldsSize(ref MessageSize size, List<RawTaggedField>? fields) =>
        size.Add(MessageSize.UnsignedVarIntSize((uint)AddRawTaggedFieldsSize(ref size, fields)));

    /// <summary>Writes a tagged-field section holding only unknown fields: the count, then each field.</summary>
    public static void WriteTaggedFields(ref ProtocolWriter writer, List<RawTaggedField>? fields)
    {
        writer.WriteUnsignedVarInt((uint)(fields?.Count ?? 0));
        int next = 0;
        WriteRawTaggedFields(ref writer, fields, ref next, long.MaxValue);
    }

    /// <summary>Adds the encoded size of the unknown tagged fields and returns how many there are.</summary>
    public static int AddRawTaggedFieldsSize(ref MessageSize size, List<RawTaggedField>? fields)
    {
        if (fields is null) return 0;
        foreach (var f in fields)
        {
            size.Add(MessageSize.UnsignedVarIntSize((uint)f.Tag) + MessageSize.UnsignedVarIntSize((uint)f.Data.Length) + f.Data.Length);
        }
        return fields.Count;
    }

    /// <summary>
    /// Writes the unknown tagged fields from index <paramref name="next"/> on whose tag is below
    /// <paramref name="beforeTag"/> (tags compare as the unsigned varints they are on the wire), so that they interleave with the known ones in tag order
    /// (the list is in the order it was read, which a conforming writer made ascending).
    /// </summary>
    public static void WriteRawTaggedFields(ref ProtocolWriter writer, List<RawTaggedField>? fields, ref int next, long beforeTag)
    {
        if (fields is null) return;
        while (next < fields.Count && (uint)fields[next].Tag < beforeTag)
        {
            var f = fields[next++];
            writer.WriteUnsignedVarInt((uint)f.Tag);
            writer.WriteUnsignedVarInt((uint)f.Data.Length);
            writer.WriteRaw(f.Data);
        }
    }
}
