using System.Buffers.Binary;
using Freshet.Protocol.CoordinatorRecords;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Groups;

/// <summary>
/// The records the group coordinator writes to __consumer_offsets, in Kafka's format so Kafka's
/// tools read them: key = int16 key version + key struct, value = int16 value version + value
/// struct (null value = tombstone). Key versions 0-1 are offset commits, 2 is group metadata,
/// 3-8 are the KIP-848 consumer group records.
/// </summary>
public static class GroupRecords
{
    public const string OffsetsTopic = "__consumer_offsets";

    public const short OffsetCommitKeyVersion = 1;
    public const short OffsetCommitValueVersion = 3;
    public const short GroupMetadataKeyVersion = 2;
    public const short GroupMetadataValueVersion = 3;

    public static byte[] Encode(short version, IMessage message)
    {
        var size = new MessageSize();
        message.AddSize(ref size, version);
        var bytes = new byte[2 + size.Total];
        BinaryPrimitives.WriteInt16BigEndian(bytes, version);
        var w = new ProtocolWriter(bytes.AsSpan(2));
        message.Write(ref w, version);
        return bytes;
    }

    public static (byte[] Key, byte[] Value) OffsetCommit(string group, string topic, int partition, long offset, int leaderEpoch, string metadata, long commitTimestamp) =>
        (OffsetCommitKeyBytes(group, topic, partition),
         Encode(OffsetCommitValueVersion, new OffsetCommitValue { Offset = offset, LeaderEpoch = leaderEpoch, Metadata = metadata, CommitTimestamp = commitTimestamp }));

    public static byte[] OffsetCommitKeyBytes(string group, string topic, int partition) =>
        Encode(OffsetCommitKeyVersion, new OffsetCommitKey { Group = group, Topic = topic, Partition = partition });

    public static byte[] GroupMetadataKeyBytes(string group) => Encode(GroupMetadataKeyVersion, new GroupMetadataKey { Group = group });

    /// <summary>A decoded record: key version, key, and value (null for a tombstone).</summary>
    public readonly record struct Decoded(short KeyVersion, IMessage Key, IMessage? Value);

    /// <summary>Decodes a __consumer_offsets record; null for a key version this code does not know.</summary>
    public static Decoded? Decode(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, bool valueIsNull)
    {
        if (key.Length < 2) throw new ProtocolException("coordinator record key shorter than its version");
        short keyVersion = BinaryPrimitives.ReadInt16BigEndian(key);
        var k = CoordinatorRecords.CreateKey(CoordinatorTopic.ConsumerOffsets, keyVersion);
        if (k is null) return null;
        var kr = new ProtocolReader(key[2..].ToArray());
        k.Read(ref kr, keyVersion);
        if (valueIsNull) return new Decoded(keyVersion, k, null);
        if (value.Length < 2) throw new ProtocolException("coordinator record value shorter than its version");
        short valueVersion = BinaryPrimitives.ReadInt16BigEndian(value);
        var v = CoordinatorRecords.CreateValue(CoordinatorTopic.ConsumerOffsets, keyVersion)!;
        var vr = new ProtocolReader(value[2..].ToArray());
        v.Read(ref vr, valueVersion);
        return new Decoded(keyVersion, k, v);
    }

    /// <summary>Kafka's placement of a group: its id's Java String.hashCode, made non-negative, modulo the partition count.</summary>
    public static int PartitionFor(string groupId, int partitions)
    {
        int h = 0;
        foreach (char c in groupId) h = unchecked(31 * h + c);
        return (h & 0x7fffffff) % partitions;
    }
}
