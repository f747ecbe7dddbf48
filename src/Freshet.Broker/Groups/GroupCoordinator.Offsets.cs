using System.Text;
using Freshet.Protocol;
using Freshet.Protocol.Messages;

namespace Freshet.Broker.Groups;

/// <summary>
/// Committed offsets: OffsetCommit (from members of a generation, or from consumers that use no
/// group membership, when the group is empty), OffsetFetch and OffsetDelete, each commit being a
/// record in __consumer_offsets acknowledged once committed there.
/// </summary>
public sealed partial class GroupCoordinator
{
    /// <summary>Per requested partition, the commit to make or the error it already has.</summary>
    public sealed record CommitRequest(string Topic, int Partition, long Offset, int LeaderEpoch, string? Metadata);

    public async Task<Dictionary<(string Topic, int Partition), ErrorCode>> CommitOffsetsAsync(
        string groupId, int generationOrEpoch, string memberId, string? instanceId, IReadOnlyList<CommitRequest> commits, short apiVersion)
    {
        var results = new Dictionary<(string, int), ErrorCode>();
        void All(ErrorCode e)
        {
            foreach (var c in commits) results[(c.Topic, c.Partition)] = e;
        }
        if (string.IsNullOrEmpty(groupId))
        {
            All(ErrorCode.InvalidGroupId);
            return results;
        }
        var ce = CheckCoordinator(groupId);
        if (ce != ErrorCode.None)
        {
            All(ce);
            return results;
        }
        var image = _metadata.Image;
        var records = new List<(byte[] Key, byte[]? Value)>();
        var accepted = new List<(TopicPartition Tp, CommittedOffset Offset)>();
        long now = NowMs;
        Group g;
        if (generationOrEpoch < 0)
        {
            // A commit outside group management (an admin, or a consumer with assigned
            // partitions): a "simple" group is made for it if there is none.
            g = _groups.GetOrAdd(groupId, id => new ClassicGroup(id, PartitionFor(id)));
        }
        else if (!_groups.TryGetValue(groupId, out g!))
        {
            // A generation or member epoch for a group that does not exist: Kafka answers
            // GROUP_ID_NOT_FOUND from OffsetCommit v9 on, ILLEGAL_GENERATION before.
            All(apiVersion >= 9 ? ErrorCode.GroupIdNotFound : ErrorCode.IllegalGeneration);
            return results;
        }
        lock (g.Lock)
        {
            var error = ValidateCommitter(g, generationOrEpoch, memberId, instanceId, apiVersion);
            if (error != ErrorCode.None)
            {
                All(error);
                return results;
            }
            foreach (var c in commits)
            {
                if (image.Partition(c.Topic, c.Partition) is null)
                {
                    results[(c.Topic, c.Partition)] = ErrorCode.UnknownTopicOrPartition;
                    continue;
                }
                string metadata = c.Metadata ?? "";
                if (Encoding.UTF8.GetByteCount(metadata) > Options.OffsetMetadataMaxBytes)
                {
                    results[(c.Topic, c.Partition)] = ErrorCode.OffsetMetadataTooLarge;
                    continue;
                }
                records.Add(GroupRecords.OffsetCommit(groupId, c.Topic, c.Partition, c.Offset, c.LeaderEpoch, metadata, now));
                accepted.Add((new TopicPartition(c.Topic, c.Partition), new CommittedOffset(c.Offset, c.LeaderEpoch, metadata, now)));
            }
        }
        var e = await AppendAsync(g.CoordinatorPartition, records).ConfigureAwait(false);
        lock (g.Lock)
        {
            foreach (var (tp, o) in accepted)
            {
                if (e == ErrorCode.None && !g.IsDead) g.Offsets[tp] = o;
                results[(tp.Topic, tp.Partition)] = e;
            }
            if (g.IsEmpty && g.EmptySinceMs < 0) g.EmptySinceMs = now;
        }
        return results;
    }

    /// <summary>
    /// Kafka's checks of who may commit (ClassicGroup.validateOffsetCommit): anyone while the group
    /// is empty and the commit carries no generation; otherwise a member of the group (by member id,
    /// or by group.instance.id for static members) at the group's current generation, and not
    /// while the group waits for its leader's assignment (CompletingRebalance). A commit with no
    /// generation, member or instance id to a group with members is refused (UNKNOWN_MEMBER_ID).
    /// During PreparingRebalance a member of the current generation may still commit: the offsets
    /// are still its own until the rebalance completes, which is what lets consumers commit in
    /// their revocation callbacks. Once the generation moved on, an old one is ILLEGAL_GENERATION,
    /// so a member that lost partitions cannot move their offsets afterwards.
    /// </summary>
    private ErrorCode ValidateCommitter(Group g, int generationOrEpoch, string memberId, string? instanceId, short apiVersion)
    {
        if (g.IsDead) return ErrorCode.CoordinatorNotAvailable;
        if (g is ClassicGroup cg)
        {
            if (generationOrEpoch < 0 && cg.State == ClassicGroupState.Empty) return ErrorCode.None; // standalone consumer or admin
            if (generationOrEpoch >= 0 || memberId.Length > 0 || instanceId is not null)
            {
                if (instanceId is not null)
                {
                    if (!cg.StaticMembers.TryGetValue(instanceId, out var sid)) return ErrorCode.UnknownMemberId;
                    if (sid != memberId) return ErrorCode.FencedInstanceId;
                }
                else if (!cg.Members.ContainsKey(memberId))
                {
                    return ErrorCode.UnknownMemberId;
                }
                if (generationOrEpoch != cg.GenerationId) return ErrorCode.IllegalGeneration;
            }
            else if (cg.State != ClassicGroupState.Empty)
            {
                return ErrorCode.UnknownMemberId;
            }
            if (cg.State == ClassicGroupState.CompletingRebalance) return ErrorCode.RebalanceInProgress;
            return ErrorCode.None;
        }
        return ValidateOtherCommitter(g, generationOrEpoch, memberId, apiVersion);
    }

    /// <summary>Commit validation for non-classic groups (the KIP-848 member epoch rules); empty groups accept any commit.</summary>
    private ErrorCode ValidateOtherCommitter(Group g, int epoch, string memberId, short apiVersion)
    {
        ErrorCode e = g.IsEmpty && epoch < 0 ? ErrorCode.None : ErrorCode.UnknownMemberId;
        ValidateConsumerGroupCommit(g, epoch, memberId, apiVersion, ref e);
        return e;
    }

    partial void ValidateConsumerGroupCommit(Group g, int epoch, string memberId, short apiVersion, ref ErrorCode result);

    /// <summary>
    /// Committed offsets of a group: the requested partitions (-1 and no error for those without a
    /// commit), or every committed partition when <paramref name="topics"/> is null.
    /// </summary>
    public (ErrorCode Error, List<(string Topic, int Partition, CommittedOffset? Offset)> Offsets) FetchOffsets(
        string groupId, IReadOnlyList<(string Topic, IReadOnlyList<int> Partitions)>? topics, string? memberId = null, int memberEpoch = -1)
    {
        var result = new List<(string, int, CommittedOffset?)>();
        if (string.IsNullOrEmpty(groupId)) return (ErrorCode.InvalidGroupId, result);
        var ce = CheckCoordinator(groupId);
        if (ce != ErrorCode.None) return (ce, result);
        if (!_groups.TryGetValue(groupId, out var g))
        {
            if (topics is not null)
                foreach (var (t, ps) in topics) foreach (var p in ps) result.Add((t, p, null));
            return (ErrorCode.None, result);
        }
        lock (g.Lock)
        {
            if (memberId is not null && g is not ClassicGroup)
            {
                var e = ErrorCode.None;
                ValidateConsumerGroupFetch(g, memberId, memberEpoch, ref e);
                if (e != ErrorCode.None) return (e, result);
            }
            if (topics is null)
            {
                foreach (var (tp, o) in g.Offsets.OrderBy(x => x.Key.Topic, StringComparer.Ordinal).ThenBy(x => x.Key.Partition))
                    result.Add((tp.Topic, tp.Partition, o));
            }
            else
            {
                foreach (var (t, ps) in topics)
                    foreach (var p in ps) result.Add((t, p, g.Offsets.GetValueOrDefault(new TopicPartition(t, p))));
            }
        }
        return (ErrorCode.None, result);
    }

    partial void ValidateConsumerGroupFetch(Group g, string memberId, int memberEpoch, ref ErrorCode result);

    /// <summary>OffsetDelete: removes a group's offsets for partitions of topics its members do not consume.</summary>
    public async Task<(ErrorCode Error, Dictionary<(string Topic, int Partition), ErrorCode> Partitions)> DeleteOffsetsAsync(
        string groupId, IReadOnlyList<(string Topic, IReadOnlyList<int> Partitions)> topics)
    {
        var results = new Dictionary<(string, int), ErrorCode>();
        if (string.IsNullOrEmpty(groupId)) return (ErrorCode.InvalidGroupId, results);
        var ce = CheckCoordinator(groupId);
        if (ce != ErrorCode.None) return (ce, results);
        if (!_groups.TryGetValue(groupId, out var g)) return (ErrorCode.GroupIdNotFound, results);
        var records = new List<(byte[] Key, byte[]? Value)>();
        var removed = new List<TopicPartition>();
        lock (g.Lock)
        {
            if (g.IsDead) return (ErrorCode.GroupIdNotFound, results);
            var subscribed = g.IsEmpty ? new HashSet<string>() : g.SubscribedTopics;
            foreach (var (t, ps) in topics)
            {
                foreach (var p in ps)
                {
                    if (subscribed.Contains(t))
                    {
                        results[(t, p)] = ErrorCode.GroupSubscribedToTopic;
                        continue;
                    }
                    results[(t, p)] = ErrorCode.None;
                    var tp = new TopicPartition(t, p);
                    if (g.Offsets.ContainsKey(tp))
                    {
                        records.Add((GroupRecords.OffsetCommitKeyBytes(groupId, t, p), null));
                        removed.Add(tp);
                    }
                }
            }
        }
        var e = await AppendAsync(g.CoordinatorPartition, records).ConfigureAwait(false);
        if (e != ErrorCode.None) return (e, results);
        lock (g.Lock)
        {
            foreach (var tp in removed) g.Offsets.Remove(tp);
        }
        return (ErrorCode.None, results);
    }
}
