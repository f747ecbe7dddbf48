using Freshet.Protocol;

namespace Freshet.Broker.Groups;

/// <summary>A committed offset as stored in __consumer_offsets.</summary>
public sealed record CommittedOffset(long Offset, int LeaderEpoch, string Metadata, long CommitTimestamp);

/// <summary>
/// What every group has, whatever its protocol: an id, its committed offsets, and a lock that
/// serializes everything done to it (Kafka runs a group's operations one at a time too).
/// </summary>
public abstract class Group(string groupId, int coordinatorPartition)
{
    public string GroupId { get; } = groupId;

    /// <summary>The __consumer_offsets partition that stores this group.</summary>
    public int CoordinatorPartition { get; } = coordinatorPartition;

    public Lock Lock { get; } = new();

    public Dictionary<TopicPartition, CommittedOffset> Offsets { get; } = [];

    /// <summary>"classic" or "consumer" (ListGroups' group type).</summary>
    public abstract string Type { get; }

    /// <summary>The state's name as DescribeGroups and ListGroups report it.</summary>
    public abstract string StateName { get; }

    /// <summary>No members (offsets may remain).</summary>
    public abstract bool IsEmpty { get; }

    /// <summary>Deleted: requests that still hold it must look it up again.</summary>
    public bool IsDead { get; set; }

    /// <summary>Topics the members consume (for OffsetDelete's GROUP_SUBSCRIBED_TO_TOPIC).</summary>
    public abstract IReadOnlySet<string> SubscribedTopics { get; }

    /// <summary>When the group last became empty, or -1 (offsets expire from then on).</summary>
    public long EmptySinceMs { get; set; } = -1;
}
