using System.Collections.Immutable;
using Freshet.Metadata.Image;
using Freshet.Protocol;
using Freshet.Protocol.Wire;
using Freshet.Storage;

namespace Freshet.Broker.Replication;

/// <summary>
/// A partition replica on this broker (Kafka's Partition): its log, its place in the replica set
/// (leader or follower), the leader epoch, the ISR, and the high watermark that decides what
/// consumers see and when acks=all produces complete. With the ISR made of this broker alone the
/// high watermark follows the end of the log; replication will move it by followers' progress.
/// </summary>
public sealed class Partition(TopicPartition topicPartition, Uuid topicId, PartitionLog log, int localNodeId)
{
    private volatile PartitionRegistration? _registration;

    public TopicPartition TopicPartition { get; } = topicPartition;
    public Uuid TopicId { get; } = topicId;
    public PartitionLog Log { get; } = log;
    public int LocalNodeId { get; } = localNodeId;
    public PartitionSignal Signal { get; } = new();

    public PartitionRegistration? Registration => _registration;
    public bool IsLeader => _registration is { } r && r.Leader == LocalNodeId;
    public int LeaderId => _registration?.Leader ?? -1;
    public int LeaderEpoch => _registration?.LeaderEpoch ?? -1;
    public ImmutableArray<int> Isr => _registration?.Isr ?? [];
    public ImmutableArray<int> Replicas => _registration?.Replicas ?? [];
    public long HighWatermark => Log.HighWatermark;

    /// <summary>Applies the partition's registration from the metadata image (leader, epoch, replicas, ISR).</summary>
    public void Update(PartitionRegistration registration)
    {
        _registration = registration;
        MaybeIncrementHighWatermark();
    }

    /// <summary>
    /// The high watermark is the smallest end offset among the ISR. Only the leader's own end
    /// offset is known until followers fetch, so an ISR of more than this replica keeps it where
    /// it is. Wakes waiters when it moves.
    /// </summary>
    /// <param name="durableUpTo">
    /// With fsync per append, the end of what is known to be on disk: the high watermark does not
    /// pass it, so consumers never read what a crash could still take back.
    /// </param>
    public void MaybeIncrementHighWatermark(long durableUpTo = long.MaxValue)
    {
        if (!IsLeader) return;
        var isr = Isr;
        if (isr.Length == 1 && isr[0] == LocalNodeId && Log.UpdateHighWatermark(Math.Min(Log.LogEndOffset, durableUpTo))) Signal.Pulse();
    }

    /// <summary>Checks a client's leader epoch (KIP-320): older is fenced, newer is unknown here.</summary>
    public ErrorCode CheckLeaderEpoch(int requestEpoch)
    {
        if (requestEpoch < 0) return ErrorCode.None;
        int mine = LeaderEpoch;
        if (requestEpoch < mine) return ErrorCode.FencedLeaderEpoch;
        if (requestEpoch > mine) return ErrorCode.UnknownLeaderEpoch;
        return ErrorCode.None;
    }
}
