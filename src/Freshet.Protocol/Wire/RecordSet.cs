namespace Freshet.Protocol.Wire;

/// <summary>
/// The value of a <c>records</c> field: record batches kept as bytes, never decoded on the way
/// through. A request's records are a slice of the request buffer; a fetch response's records are
/// usually an <see cref="ExternalRecordSet"/> (a file range) that the transport sends itself.
/// </summary>
public class RecordSet
{
    public static readonly RecordSet Empty = new(ReadOnlyMemory<byte>.Empty);

    public RecordSet(ReadOnlyMemory<byte> memory) => Memory = memory;

    /// <summary>The bytes, when they are in memory; empty for an external set.</summary>
    public ReadOnlyMemory<byte> Memory { get; }

    /// <summary>Bytes on the wire (without the length prefix).</summary>
    public virtual int Length => Memory.Length;

    /// <summary>True when the bytes are not in memory and the transport must splice them in.</summary>
    public virtual bool IsExternal => false;

    public override bool Equals(object? obj) =>
        obj is RecordSet other && !IsExternal && !other.IsExternal && Memory.Span.SequenceEqual(other.Memory.Span);

    public override int GetHashCode() => Length;
}

/// <summary>
/// Records that stay where they are (a range of a segment file) until the transport copies them
/// to the socket, with sendfile where the platform allows. Protocol code only knows the length.
/// </summary>
public abstract class ExternalRecordSet : RecordSet
{
    protected ExternalRecordSet() : base(ReadOnlyMemory<byte>.Empty) { }

    public abstract override int Length { get; }

    public sealed override bool IsExternal => true;
}

/// <summary>Where an external record set goes in an encoded message: before byte <see cref="Position"/> of the in-memory part.</summary>
public readonly record struct RecordSplice(int Position, ExternalRecordSet Records);
