using Freshet.Protocol.Wire;

namespace Freshet.Broker.Groups;

/// <summary>A KIP-848 group's state, named as Kafka reports it (Dead is <see cref="Group.IsDead"/>).</summary>
public enum ConsumerGroupState
{
    /// <summary>No members.</summary>
    Empty,

    /// <summary>The group epoch moved past the target assignment's: a new target is due.</summary>
    Assigning,

    /// <summary>Some member has not yet reached the target assignment.</summary>
    Reconciling,

    /// <summary>Every member owns exactly its target, at the target's epoch.</summary>
    Stable,
}

/// <summary>A member's reconciliation state, with the byte values Kafka stores in ConsumerGroupCurrentMemberAssignmentValue.State.</summary>
public enum ConsumerMemberState : sbyte
{
    /// <summary>Reconciled with its target at the member epoch it has.</summary>
    Stable = 0,

    /// <summary>Must give up <see cref="ConsumerGroupMember.PendingRevocation"/> before it moves to the next epoch.</summary>
    UnrevokedPartitions = 1,

    /// <summary>At the target epoch, but waits for partitions other members have not released yet.</summary>
    UnreleasedPartitions = 2,

    Unknown = 127,
}

/// <summary>A member of a consumer-protocol group. Guarded by its group's lock.</summary>
public sealed class ConsumerGroupMember(string memberId)
{
    public string MemberId { get; } = memberId;
    public string? InstanceId { get; set; }
    public string? RackId { get; set; }
    public string ClientId { get; set; } = "";
    public string ClientHost { get; set; } = "";

    /// <summary>Sorted, without duplicates.</summary>
    public List<string> SubscribedTopicNames { get; set; } = [];
    public string? SubscribedTopicRegex { get; set; }
    public string? ServerAssignor { get; set; }
    public int RebalanceTimeoutMs { get; set; } = -1;

    /// <summary>The epoch the member must heartbeat with; -2 while a static member is away.</summary>
    public int MemberEpoch { get; set; }

    /// <summary>The epoch before the last bump: accepted once more if the response with the bump was lost.</summary>
    public int PreviousMemberEpoch { get; set; }

    public ConsumerMemberState State { get; set; } = ConsumerMemberState.Stable;

    /// <summary>Partitions the member may use now.</summary>
    public HashSet<TopicIdPartition> Assigned { get; set; } = [];

    /// <summary>Partitions the member still has but must give up (it confirms by no longer reporting them).</summary>
    public HashSet<TopicIdPartition> PendingRevocation { get; set; } = [];

    /// <summary>Fences the member when no heartbeat comes for group.consumer.session.timeout.ms.</summary>
    public ITimer? SessionTimer { get; set; }

    /// <summary>Fences the member when it has not revoked partitions within its rebalance timeout.</summary>
    public ITimer? RebalanceTimer { get; set; }

    /// <summary>False only while a load has seen assignment records of the member but not its metadata record.</summary>
    public bool HasMetadata { get; set; } = true;

    public bool IsStaticLeft => MemberEpoch == GroupCoordinator.StaticLeaveEpoch;

    public bool IsReconciledTo(int assignmentEpoch) => State == ConsumerMemberState.Stable && MemberEpoch == assignmentEpoch;

    public void DisposeTimers()
    {
        SessionTimer?.Dispose();
        SessionTimer = null;
        RebalanceTimer?.Dispose();
        RebalanceTimer = null;
    }
}

/// <summary>
/// A group using the KIP-848 consumer protocol (Kafka's ConsumerGroup). The coordinator keeps
/// three things per group and persists each as records in __consumer_offsets:
/// <list type="bullet">
/// <item>the members with their subscriptions, and the group epoch, bumped whenever membership,
/// a subscription or a subscribed topic's partition count changes;</item>
/// <item>the target assignment, computed by the server-side assignor for a group epoch (the
/// assignment epoch);</item>
/// <item>each member's current assignment and member epoch, which move towards the target one
/// heartbeat at a time (<see cref="GroupCoordinator"/>'s reconciliation).</item>
/// </list>
/// Guarded by <see cref="Group.Lock"/>.
/// </summary>
public sealed class ConsumerGroup(string groupId, int coordinatorPartition) : Group(groupId, coordinatorPartition)
{
    public override string Type => "consumer";

    public int GroupEpoch { get; set; }

    public int AssignmentEpoch { get; set; }

    public Dictionary<string, ConsumerGroupMember> Members { get; } = new(StringComparer.Ordinal);

    /// <summary>group.instance.id -> member id, for static members.</summary>
    public Dictionary<string, string> StaticMembers { get; } = new(StringComparer.Ordinal);

    /// <summary>Member id -> the partitions the assignor gave it at <see cref="AssignmentEpoch"/>.</summary>
    public Dictionary<string, HashSet<TopicIdPartition>> TargetAssignment { get; } = new(StringComparer.Ordinal);

    /// <summary>Topic name -> id and partition count of every subscribed topic that exists (ConsumerGroupPartitionMetadata).</summary>
    public SortedDictionary<string, AssignableTopic> SubscriptionMetadata { get; set; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Which member holds each partition (assigned or pending revocation): a partition is given
    /// to a member only when nobody else holds it, so two members never own one partition.
    /// </summary>
    public Dictionary<TopicIdPartition, string> PartitionOwners { get; } = [];

    /// <summary>Topic names each subscribed regex matched when the metadata was last looked at (not persisted: resolved again after a load).</summary>
    public Dictionary<string, IReadOnlySet<string>> ResolvedRegexes { get; } = new(StringComparer.Ordinal);

    /// <summary>The metadata image the subscription metadata was last computed from: a new image means topics may have changed.</summary>
    public object? MetadataImageSeen { get; set; }

    /// <summary>The assignor that computed the current target assignment.</summary>
    public string? AssignorName { get; set; }

    public ConsumerGroupState State
    {
        get
        {
            if (Members.Count == 0) return ConsumerGroupState.Empty;
            if (GroupEpoch > AssignmentEpoch) return ConsumerGroupState.Assigning;
            foreach (var m in Members.Values)
                if (!m.IsReconciledTo(AssignmentEpoch)) return ConsumerGroupState.Reconciling;
            return ConsumerGroupState.Stable;
        }
    }

    public override string StateName => IsDead ? "Dead" : State.ToString();

    public override bool IsEmpty => Members.Count == 0;

    /// <summary>Topic names the members subscribe to, by name or through their regex.</summary>
    public override IReadOnlySet<string> SubscribedTopics
    {
        get
        {
            var topics = new HashSet<string>(StringComparer.Ordinal);
            foreach (var m in Members.Values) topics.UnionWith(TopicsOf(m));
            return topics;
        }
    }

    /// <summary>A member's subscribed topic names: those it lists plus what its regex matched.</summary>
    public IEnumerable<string> TopicsOf(ConsumerGroupMember m)
    {
        IEnumerable<string> names = m.SubscribedTopicNames;
        if (m.SubscribedTopicRegex is { } regex && ResolvedRegexes.TryGetValue(regex, out var matched)) names = names.Concat(matched);
        return names;
    }

    /// <summary>Rebuilds <see cref="PartitionOwners"/> from the members (after a load).</summary>
    public void RebuildOwners()
    {
        PartitionOwners.Clear();
        foreach (var m in Members.Values.OrderBy(m => m.MemberId, StringComparer.Ordinal))
        {
            foreach (var p in m.Assigned.Concat(m.PendingRevocation)) PartitionOwners.TryAdd(p, m.MemberId);
        }
    }

    /// <summary>Forgets every partition <paramref name="memberId"/> holds.</summary>
    public void ReleaseAll(string memberId)
    {
        foreach (var (p, owner) in PartitionOwners.ToList())
            if (owner == memberId) PartitionOwners.Remove(p);
    }

    /// <summary>The server assignor most members ask for (ties to the name first in order), or <paramref name="fallback"/> when none asks.</summary>
    public string PreferredAssignor(string fallback)
    {
        var named = Members.Values.Where(m => m.ServerAssignor is not null).GroupBy(m => m.ServerAssignor!, StringComparer.Ordinal)
            .OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).FirstOrDefault();
        return named?.Key ?? fallback;
    }

    /// <summary>Topic name by id, from the subscription metadata (for descriptions).</summary>
    public string? TopicName(Uuid id) => SubscriptionMetadata.Values.FirstOrDefault(t => t.Id == id)?.Name;
}
