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
        string groupId, int generationOrEpoch, string memberId, string? instanceId, IReadOnlyList<CommitRequest> commits)
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
        Group g = _groups.GetOrAdd(groupId, id => new ClassicGroup(id, PartitionFor(id)));
        lock (g.Lock)
        {
            var error = ValidateCommitter(g, generationOrEpoch, memberId, instanceId);
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

    /// <summary>Kafka's checks of who may commit: members of the current generation, or anyone while the group has no members.</summary>
    private ErrorCode ValidateCommitter(Group g, int generationOrEpoch, string memberId, string? instanceId)
    {
        if (g.IsDead) return ErrorCode.CoordinatorNotAvailable;
        if (g is ClassicGroup cg)
        {
            if (generationOrEpoch < 0 && cg.State == ClassicGroupState.Empty) return ErrorCode.None; // standalone consumer or admin
            if (cg.State == ClassicGroupState.CompletingRebalance) return ErrorCode.RebalanceInProgress;
            if (instanceId is not null && (!cg.StaticMembers.TryGetValue(instanceId, out var sid) || sid != memberId)) return ErrorCode.FencedInstanceId;
            if (!cg.Members.ContainsKey(memberId)) return cg.State == ClassicGroupState.Empty ? ErrorCode.IllegalGeneration : ErrorCode.UnknownMemberId;
            if (generationOrEpoch != cg.GenerationId) return ErrorCode.IllegalGeneration;
            return ErrorCode.None;
        }
        return ValidateOtherCommitter(g, generationOrEpoch, memberId);
    }

    /// <summary>Commit validation for non-classic groups (the KIP-848 member epoch rules); empty groups accept any commit.</summary>
    private ErrorCode ValidateOtherCommitter(Group g, int epoch, string memberId)
    {
        ErrorCode e = g.IsEmpty && epoch < 0 ? ErrorCode.None : ErrorCode.UnknownMemberId;
        ValidateConsumerGroupCommit(g, epoch, memberId, ref e);
        return e;
    }

    partial void ValidateConsumerGroupCommit(Group g, int epoch, string memberId, ref ErrorCode result);

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
