namespace Freshet.Protocol.Wire;

/// <summary>A tagged field (KIP-482) this version of Freshet does not know; kept so it round-trips.</summary>
public sealed record RawTaggedField(int Tag, byte[] Data)
{
    public bool Equals(RawTaggedField? other) =>
        other is not null && Tag == other.Tag && Data.AsSpan().SequenceEqual(other.Data);

    public override int GetHashCode() => HashCode.Combine(Tag, Data.Length);
}
