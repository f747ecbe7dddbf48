using Microsoft.Win32.SafeHandles;

namespace Freshet.Protocol.Wire;

/// <summary>
/// The value of a <c>records</c> field: record batches kept as bytes, never decoded on the way
/// through. A request's records are a slice of the request buffer; a fetch response's records are
/// usually <see cref="TransferableRecords"/> (a file range) that the transport sends itself.
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
/// Records that stay where they are (a range of a segment file) until the transport writes them to
/// the connection, between the in-memory parts of the message (Kafka's TransferableRecords). Protocol
/// code only knows the length; the transport only knows this class and the target it hands to
/// <see cref="WriteToAsync"/>, never the concrete kind of records, so each kind chooses how its bytes
/// go out (a file range asks for a zero-copy transfer).
/// </summary>
public abstract class TransferableRecords : RecordSet
{
    protected TransferableRecords() : base(ReadOnlyMemory<byte>.Empty) { }

    public abstract override int Length { get; }

    public sealed override bool IsExternal => true;

    /// <summary>Writes all <see cref="RecordSet.Length"/> bytes to <paramref name="target"/>, in order; throws when it cannot.</summary>
    public abstract ValueTask WriteToAsync(IRecordTransferTarget target, CancellationToken ct);
}

/// <summary>
/// Where <see cref="TransferableRecords"/> write themselves: implemented by the transport over its
/// connection. A file handle is only passed through to the transport (which may hand it to the
/// kernel); Protocol code never opens or reads a file.
/// </summary>
public interface IRecordTransferTarget
{
    /// <summary>Sends bytes held in memory.</summary>
    ValueTask WriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken ct);

    /// <summary>
    /// Sends <paramref name="count"/> bytes of <paramref name="file"/> from <paramref name="position"/>,
    /// without copying them through managed memory where the platform allows (sendfile on Linux).
    /// </summary>
    ValueTask TransferFromFileAsync(SafeFileHandle file, long position, long count, CancellationToken ct);
}

/// <summary>Where transferable records go in an encoded message: before byte <see cref="Position"/> of the in-memory part.</summary>
public readonly record struct RecordSplice(int Position, TransferableRecords Records);
