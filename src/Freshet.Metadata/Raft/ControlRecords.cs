using System.Buffers.Binary;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;

namespace Freshet.Metadata.Raft;

/// <summary>
/// Control records of the metadata log, framed as Kafka frames them so its tools read our log: a
/// control batch (attribute bit 5) whose record key is <c>int16 version (0), int16 type</c> and whose
/// value is the control message at its version. Types: 2 LeaderChange, 3 SnapshotHeader,
/// 4 SnapshotFooter (0 and 1 are transaction markers).
/// </summary>
public static class ControlRecords
{
    public const short LeaderChangeType = 2;
    public const short SnapshotHeaderType = 3;
    public const short SnapshotFooterType = 4;

    /// <summary>
    /// The batch a new leader appends first in its epoch (KIP-595): it names the leader, the voters and
    /// those who voted for it, and, being an entry of the new epoch, lets the leader commit.
    /// </summary>
    public static byte[] BuildLeaderChangeBatch(long baseOffset, int epoch, long timestamp, int leaderId,
        IEnumerable<int> voters, IEnumerable<int> grantingVoters)
    {
        var message = new LeaderChangeMessage
        {
            Version = 0,
            LeaderId = leaderId,
            Voters = [.. voters.Select(v => new LeaderChangeMessage.Voter { VoterId = v })],
            GrantingVoters = [.. grantingVoters.Select(v => new LeaderChangeMessage.Voter { VoterId = v })],
        };
        Span<byte> key = stackalloc byte[4];
        BinaryPrimitives.WriteInt16BigEndian(key, 0);
        BinaryPrimitives.WriteInt16BigEndian(key[2..], LeaderChangeType);
        using var builder = new RecordBatchBuilder(initialCapacity: 64)
        {
            BaseOffset = baseOffset,
            PartitionLeaderEpoch = epoch,
            IsControl = true,
        };
        builder.Append(timestamp, key, message.ToBytes(0));
        return builder.Build();
    }

    /// <summary>The control type of a control record's key, or -1 when the key is not one.</summary>
    public static short TypeOf(ReadOnlySpan<byte> key) =>
        key.Length >= 4 ? BinaryPrimitives.ReadInt16BigEndian(key[2..]) : (short)-1;
}
