using System.Collections.Immutable;
using Freshet.Metadata.Controller;
using Freshet.Protocol;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Replication;

/// <summary>
/// A leader's proposal to change a partition's ISR (Kafka's AlterPartition, KIP-497): made at
/// <see cref="LeaderEpoch"/> over the registration of <see cref="PartitionEpoch"/>; the controller
/// refuses it when either is stale.
/// </summary>
public sealed record AlterPartitionProposal(
    TopicPartition TopicPartition,
    Uuid TopicId,
    int LeaderEpoch,
    int PartitionEpoch,
    ImmutableArray<IsrMember> NewIsr)
{
    public ImmutableArray<int> NewIsrIds => [.. NewIsr.Select(m => m.BrokerId)];
}

/// <summary>
/// The controller's answer to one partition of an AlterPartition request: on success, the
/// partition state it committed (leader, leader epoch, ISR, partition epoch); otherwise the error
/// (FENCED_LEADER_EPOCH, INVALID_UPDATE_VERSION, INELIGIBLE_REPLICA, NOT_LEADER_OR_FOLLOWER,
/// UNKNOWN_TOPIC_OR_PARTITION, OPERATION_NOT_ATTEMPTED, NEW_LEADER_ELECTED, or a transport error
/// such as NETWORK_EXCEPTION / REQUEST_TIMED_OUT).
/// </summary>
public readonly record struct AlterPartitionResult(ErrorCode Error, int LeaderId, int LeaderEpoch, ImmutableArray<int> Isr, int PartitionEpoch)
{
    public static AlterPartitionResult Failed(ErrorCode error) => new(error, -1, -1, [], -1);
}

/// <summary>
/// Sends ISR changes to the active controller (implemented by the node wiring over the controller
/// RPC; batching many partitions into one AlterPartition request is the implementation's business).
/// A transport failure may throw (IOException, TimeoutException) or return a failed result; the
/// partition retries either way after a backoff, or gives up when a newer registration arrives.
/// </summary>
public interface IAlterPartitionSender
{
    Task<AlterPartitionResult> SendAsync(AlterPartitionProposal proposal, CancellationToken ct);
}
