using Freshet.Protocol.Wire;

namespace Freshet.Metadata.Raft;

/// <summary>
/// A position in the replicated log: <see cref="Offset"/> is exclusive (the offset after the last
/// entry covered) and <see cref="Epoch"/> the epoch of that last entry. Snapshot ids and epoch-cache
/// answers have this shape, as in KRaft.
/// </summary>
public readonly record struct OffsetAndEpoch(long Offset, int Epoch)
{
    public static readonly OffsetAndEpoch Unknown = new(-1, -1);

    public override string ToString() => $"(offset {Offset}, epoch {Epoch})";
}

/// <summary>The leader a node knows of in an epoch; <see cref="LeaderId"/> is null when it knows none.</summary>
public readonly record struct LeaderAndEpoch(int? LeaderId, int Epoch)
{
    public override string ToString() => $"leader {(LeaderId?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none")} in epoch {Epoch}";
}

/// <summary>One committed record of the replicated log: its offset, the epoch of the leader that appended it, its value.</summary>
public sealed record RaftEntry(long Offset, int Epoch, byte[] Value);

/// <summary>A complete snapshot: the state up to (excluding) <c>Id.Offset</c>, as the state machine wrote it.</summary>
public sealed record RaftSnapshot(OffsetAndEpoch Id, ReadOnlyMemory<byte> Data);

/// <summary>The roles of KIP-595. <see cref="Voted"/> is Unattached with a vote cast in the current epoch.</summary>
public enum RaftRole
{
    Unattached,
    Voted,
    Candidate,
    Leader,
    Follower,
    Resigned,
}

/// <summary>
/// Where a <see cref="RaftNode"/> sends requests. The driver must later call
/// <see cref="RaftNode.HandleResponse"/> exactly once per <see cref="Send"/>: with the response, or
/// with null when the send failed or timed out. Send must not call back into the node.
/// <para>
/// This seam stays synchronous and fire-and-forget, apart from <see cref="INodeClient"/>: the node is
/// a deterministic state machine that hears back through HandleResponse on its own thread, so the
/// simulation can deliver (or lose, or reorder) responses at a simulated time without tasks.
/// <see cref="RaftDriver"/> feeds it to the typed inter-node client; the request's type names its
/// response type, so neither side switches on it.
/// </para>
/// </summary>
public interface IRaftTransport
{
    /// <param name="request">VoteRequest, BeginQuorumEpochRequest, EndQuorumEpochRequest, FetchRequest or FetchSnapshotRequest.</param>
    void Send<TResponse>(int toNodeId, IApiRequest<TResponse> request) where TResponse : IApiMessage, new();
}

/// <summary>
/// What a <see cref="RaftNode"/> tells the state machine on top of it. Callbacks run on the driver's
/// thread inside a node call and must not call back into the node.
/// </summary>
public interface IRaftListener
{
    /// <summary>
    /// Entries of one or more batches below the high watermark, in offset order, each exactly once per
    /// node incarnation (after <see cref="HandleSnapshot"/>, from the snapshot's end offset). Control
    /// records (LeaderChange) are not delivered, so offsets may skip.
    /// </summary>
    void HandleCommit(IReadOnlyList<RaftEntry> entries);

    /// <summary>The node learned a new epoch or the leader of the current one.</summary>
    void HandleLeaderChange(LeaderAndEpoch leader);

    /// <summary>
    /// Replace the state with this snapshot: at start when the log begins with one, or when a lagging
    /// follower downloaded one from the leader. Later commits continue from <c>snapshot.Id.Offset</c>.
    /// </summary>
    void HandleSnapshot(RaftSnapshot snapshot);
}
