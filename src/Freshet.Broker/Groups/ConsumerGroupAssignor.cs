using Freshet.Protocol.Wire;

namespace Freshet.Broker.Groups;

/// <summary>A partition named by its topic's id, as KIP-848 assignments name them.</summary>
public readonly record struct TopicIdPartition(Uuid TopicId, int Partition);

/// <summary>A topic the group subscribes to, with its partition count when the assignment was computed.</summary>
public sealed record AssignableTopic(Uuid Id, string Name, int Partitions);

/// <summary>
/// One member as an assignor sees it: the topics it subscribes to (only topics that exist) and
/// its current target assignment, which sticky assignors try to keep.
/// </summary>
public sealed record AssignorMember(string MemberId, string? InstanceId, string? RackId, IReadOnlySet<Uuid> Topics, IReadOnlySet<TopicIdPartition> Current);

/// <summary>What a server-side assignor gets: the members (ordered by member id) and the subscribed topics.</summary>
public sealed record AssignmentSpec(IReadOnlyList<AssignorMember> Members, IReadOnlyDictionary<Uuid, AssignableTopic> Topics);

/// <summary>
/// A server-side assignor of the consumer protocol (group.consumer.assignors). Given the same
/// spec it must return the same assignment (the coordinator may recompute it after a restart and
/// members must not see partitions move for nothing), every partition of a subscribed topic to
/// exactly one member subscribed to that topic, and an entry for every member.
/// </summary>
public interface IConsumerGroupAssignor
{
    string Name { get; }

    IReadOnlyDictionary<string, IReadOnlySet<TopicIdPartition>> Assign(AssignmentSpec spec);
}

/// <summary>The assignors this broker implements, by the names group.consumer.assignors and clients use.</summary>
public static class ConsumerGroupAssignors
{
    /// <summary>
    /// The assignor for a configured name: "uniform" and "range", or Kafka's class names for them
    /// (so a server.properties written for Kafka works unchanged); null for an unknown one.
    /// </summary>
    public static IConsumerGroupAssignor? Create(string name) => name.Trim() switch
    {
        "uniform" or "org.apache.kafka.coordinator.group.assignor.UniformAssignor" => new UniformAssignor(),
        "range" or "org.apache.kafka.coordinator.group.assignor.RangeAssignor" => new RangeAssignor(),
        _ => null,
    };

    /// <summary>Partitions of a topic that exist now, in order.</summary>
    internal static IEnumerable<TopicIdPartition> PartitionsOf(AssignableTopic t)
    {
        for (int p = 0; p < t.Partitions; p++) yield return new TopicIdPartition(t.Id, p);
    }

    /// <summary>Topics in a fixed order (by name, then id), so iteration never depends on hashing.</summary>
    internal static List<AssignableTopic> Ordered(IEnumerable<AssignableTopic> topics) =>
        [.. topics.OrderBy(t => t.Name, StringComparer.Ordinal).ThenBy(t => t.Id.MostSignificantBits).ThenBy(t => t.Id.LeastSignificantBits)];
}
