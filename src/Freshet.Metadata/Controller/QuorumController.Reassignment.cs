using System.Collections.Immutable;
using Freshet.Metadata.Image;
using Freshet.Protocol;
using Freshet.Protocol.MetadataRecords;
using Freshet.Protocol.Wire;
using static Freshet.Metadata.Log.MetadataRecordSerde;

namespace Freshet.Metadata.Controller;

/// <summary>ElectLeaders' election types, numbered as the protocol numbers them.</summary>
public enum ElectionType : sbyte
{
    Preferred = 0,
    Unclean = 1,
}

/// <summary>Outcome of one partition of ElectLeaders or AlterPartitionReassignments.</summary>
public sealed record PartitionResult(string Topic, int Partition, ErrorCode Error, string? Message);

/// <summary>A reassignment in progress (ListPartitionReassignments).</summary>
public sealed record OngoingReassignment(string Topic, int Partition, ImmutableArray<int> Replicas, ImmutableArray<int> Adding, ImmutableArray<int> Removing);

/// <summary>
/// Leader elections asked for by operators (ElectLeaders, preferred-leader balancing) and
/// partition reassignment, as Kafka's controller does them: a reassignment first adds the target
/// replicas (the replica set is old ∪ new, with adding/removing lists), waits until every added
/// replica has joined the ISR, then drops the removed ones in one change, moving leadership when
/// the leader is among them.
/// </summary>
public sealed partial class QuorumController
{
    /// <summary>ElectLeaders: null partitions means every partition (and then only elected ones are reported, as Kafka does).</summary>
    public IReadOnlyList<PartitionResult> ElectLeaders(ElectionType type, IReadOnlyList<(string Topic, int Partition)>? partitions)
    {
        lock (_lock)
        {
            var image = _image;
            var results = new List<PartitionResult>();
            var records = new List<VersionedRecord>();
            bool all = partitions is null;
            var targets = partitions ?? [.. image.TopicsByName.Values.SelectMany(t => t.Partitions.Keys.Select(p => (t.Name, p)))];
            foreach (var (topicName, index) in targets)
            {
                var topic = image.Topic(topicName);
                if (topic is null || !topic.Partitions.TryGetValue(index, out var reg))
                {
                    results.Add(new(topicName, index, ErrorCode.UnknownTopicOrPartition, "The partition does not exist."));
                    continue;
                }
                var (error, message, leader, isr) = type == ElectionType.Preferred ? PreferredElection(image, reg) : UncleanElection(image, reg);
                if (error == ErrorCode.None)
                {
                    records.Add(new VersionedRecord((short)MetadataRecordType.PartitionChange, 0, new PartitionChangeRecord
                    {
                        TopicId = topic.Id,
                        PartitionId = index,
                        Leader = leader,
                        Isr = isr is null ? null : [.. isr],
                    }));
                }
                if (!all || error == ErrorCode.None) results.Add(new(topicName, index, error, message));
            }
            Commit(records);
            return results;
        }
    }

    private (ErrorCode, string?, int Leader, int[]? Isr) PreferredElection(MetadataImage image, PartitionRegistration reg)
    {
        int preferred = reg.Replicas[0];
        if (reg.Leader == preferred) return (ErrorCode.ElectionNotNeeded, "Leader is already the preferred replica.", -1, null);
        if (!reg.Isr.Contains(preferred) || !IsUsable(image, preferred))
            return (ErrorCode.PreferredLeaderNotAvailable, $"Failed to elect leader: the preferred replica {preferred} is not in the ISR or not live.", -1, null);
        return (ErrorCode.None, null, preferred, null);
    }

    private (ErrorCode, string?, int Leader, int[]? Isr) UncleanElection(MetadataImage image, PartitionRegistration reg)
    {
        if (reg.HasLeader && IsUsable(image, reg.Leader)) return (ErrorCode.ElectionNotNeeded, "The partition has a live leader.", -1, null);
        int fromIsr = reg.Replicas.FirstOrDefault(r => reg.Isr.Contains(r) && IsUsable(image, r), PartitionRegistration.NoLeader);
        if (fromIsr != PartitionRegistration.NoLeader) return (ErrorCode.None, null, fromIsr, null);
        int any = reg.Replicas.FirstOrDefault(r => IsUsable(image, r), PartitionRegistration.NoLeader);
        if (any == PartitionRegistration.NoLeader) return (ErrorCode.EligibleLeadersNotAvailable, "No live replica to elect.", -1, null);
        return (ErrorCode.None, null, any, [any]);
    }

    /// <summary>
    /// Preferred-leader balancing (auto.leader.rebalance.enable): for each broker whose share of
    /// partitions it should lead but does not exceeds <paramref name="imbalancePercentage"/>,
    /// elect the preferred leader where it is in the ISR and live. Returns how many moved.
    /// </summary>
    public int RebalanceLeaders(int imbalancePercentage)
    {
        List<(string, int)> move;
        lock (_lock)
        {
            var image = _image;
            move = [];
            var byPreferred = image.TopicsByName.Values
                .SelectMany(t => t.Partitions.Where(p => p.Value.Replicas.Length > 0 && !IsReassigning(p.Value)).Select(p => (Topic: t.Name, Index: p.Key, Reg: p.Value)))
                .GroupBy(p => p.Reg.Replicas[0]);
            foreach (var group in byPreferred)
            {
                if (!IsUsable(image, group.Key)) continue;
                var notLed = group.Where(p => p.Reg.Leader != group.Key).ToList();
                if (notLed.Count * 100 <= imbalancePercentage * group.Count()) continue;
                move.AddRange(notLed.Where(p => p.Reg.Isr.Contains(group.Key)).Select(p => (p.Topic, p.Index)));
            }
        }
        return move.Count == 0 ? 0 : ElectLeaders(ElectionType.Preferred, move).Count(r => r.Error == ErrorCode.None);
    }

    private static bool IsReassigning(PartitionRegistration reg) => reg.AddingReplicas.Length > 0 || reg.RemovingReplicas.Length > 0;

    /// <summary>AlterPartitionReassignments: a target replica list per partition, or null to cancel the reassignment in progress.</summary>
    public IReadOnlyList<PartitionResult> AlterPartitionReassignments(IReadOnlyList<(string Topic, int Partition, IReadOnlyList<int>? Target)> requests)
    {
        lock (_lock)
        {
            var results = new List<PartitionResult>();
            foreach (var (topicName, index, target) in requests)
            {
                var image = _image;
                var topic = image.Topic(topicName);
                if (topic is null || !topic.Partitions.TryGetValue(index, out var reg))
                {
                    results.Add(new(topicName, index, ErrorCode.UnknownTopicOrPartition, "The partition does not exist."));
                    continue;
                }
                if (target is null)
                {
                    if (!IsReassigning(reg))
                    {
                        results.Add(new(topicName, index, ErrorCode.NoReassignmentInProgress, $"No ongoing reassignment for partition {topicName}-{index}."));
                        continue;
                    }
                    // Back to the original replicas: what is there minus what was being added.
                    int[] original = [.. reg.Replicas.Where(r => !reg.AddingReplicas.Contains(r))];
                    Commit([ReplaceReplicas(image, topic.Id, index, reg, original)]);
                    results.Add(new(topicName, index, ErrorCode.None, null));
                    continue;
                }
                if (target.Count == 0 || target.Distinct().Count() != target.Count)
                {
                    results.Add(new(topicName, index, ErrorCode.InvalidReplicaAssignment, "The target replica list is empty or has duplicates."));
                    continue;
                }
                if (target.FirstOrDefault(b => !image.Brokers.ContainsKey(b), -1) is int unknown and >= 0)
                {
                    results.Add(new(topicName, index, ErrorCode.InvalidReplicaAssignment, $"The target replica list contains broker {unknown}, which is not registered."));
                    continue;
                }
                // A new target replaces one in progress: start from the original replicas.
                int[] current = [.. reg.Replicas.Where(r => !reg.AddingReplicas.Contains(r))];
                int[] adding = [.. target.Where(b => !current.Contains(b))];
                int[] removing = [.. current.Where(b => !target.Contains(b))];
                if (adding.Length == 0 && removing.Length == 0)
                {
                    // The same replicas in another order (a new preferred leader): no data moves.
                    Commit([ReplaceReplicas(image, topic.Id, index, reg, [.. target])]);
                }
                else
                {
                    int[] merged = [.. target, .. removing];
                    Commit([new VersionedRecord((short)MetadataRecordType.PartitionChange, 0, new PartitionChangeRecord
                    {
                        TopicId = topic.Id,
                        PartitionId = index,
                        Replicas = [.. merged],
                        Isr = reg.Isr.All(merged.Contains) ? null : [.. reg.Isr.Where(merged.Contains)],
                        AddingReplicas = [.. adding],
                        RemovingReplicas = [.. removing],
                        Leader = -2,
                    })]);
                    // Nothing to copy (a shrink), or the added replicas already in the ISR: done at once.
                    var now = _image.Topic(topic.Id)!.Partitions[index];
                    if (ReassignmentCompletion(_image, topic.Id, index, now) is { } done) Commit([done]);
                }
                results.Add(new(topicName, index, ErrorCode.None, null));
            }
            return results;
        }
    }

    /// <summary>Reassignments in progress; null topics means all.</summary>
    public IReadOnlyList<OngoingReassignment> ListPartitionReassignments(IReadOnlyList<(string Topic, int Partition)>? partitions)
    {
        var image = _image;
        var all = image.TopicsByName.Values.SelectMany(t => t.Partitions.Select(p => (Topic: t.Name, Index: p.Key, Reg: p.Value)));
        if (partitions is not null)
        {
            var wanted = partitions.ToHashSet();
            all = all.Where(p => wanted.Contains((p.Topic, p.Index)));
        }
        return [.. all.Where(p => IsReassigning(p.Reg)).OrderBy(p => p.Topic, StringComparer.Ordinal).ThenBy(p => p.Index)
            .Select(p => new OngoingReassignment(p.Topic, p.Index, p.Reg.Replicas, p.Reg.AddingReplicas, p.Reg.RemovingReplicas))];
    }

    /// <summary>The record that finishes a reassignment once every adding replica is in the ISR; null while some are not.</summary>
    private VersionedRecord? ReassignmentCompletion(MetadataImage image, Uuid topicId, int index, PartitionRegistration reg)
    {
        if (!IsReassigning(reg) || !reg.AddingReplicas.All(reg.Isr.Contains)) return null;
        int[] target = [.. reg.Replicas.Where(r => !reg.RemovingReplicas.Contains(r))];
        if (!target.Any(reg.Isr.Contains)) return null; // the target would have no in-sync replica yet
        return ReplaceReplicas(image, topicId, index, reg, target);
    }

    /// <summary>
    /// The replica set becomes <paramref name="replicas"/> (no reassignment in progress): the ISR
    /// keeps only its members (never empty), and a leader outside it hands over to the first
    /// ISR member in replica order that is live.
    /// </summary>
    private VersionedRecord ReplaceReplicas(MetadataImage image, Uuid topicId, int index, PartitionRegistration reg, int[] replicas)
    {
        int[] isr = [.. replicas.Where(reg.Isr.Contains)];
        int leader = reg.Leader;
        if (isr.Length == 0)
        {
            // None of the new replicas is in sync: keep the old ISR until they are (Kafka does not complete such a move).
            isr = [.. reg.Isr];
        }
        else if (!isr.Contains(leader))
        {
            leader = isr.FirstOrDefault(r => IsUsable(image, r), PartitionRegistration.NoLeader);
        }
        return new VersionedRecord((short)MetadataRecordType.PartitionChange, 0, new PartitionChangeRecord
        {
            TopicId = topicId,
            PartitionId = index,
            Replicas = [.. replicas],
            Isr = isr.SequenceEqual(reg.Isr) ? null : [.. isr],
            AddingReplicas = [],
            RemovingReplicas = [],
            Leader = leader == reg.Leader ? -2 : leader,
        });
    }
}
