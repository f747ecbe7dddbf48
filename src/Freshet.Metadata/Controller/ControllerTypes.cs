using Freshet.Metadata.Image;
using Freshet.Protocol;
using Freshet.Protocol.Wire;

namespace Freshet.Metadata.Controller;

/// <summary>
/// A topic to create: -1 partitions or replication factor means the broker default; explicit
/// assignments replace both. <paramref name="DuplicateAssignment"/>: a partition index the request
/// assigned more than once (the topic is then refused), or -1.
/// </summary>
public sealed record NewTopic(
    string Name,
    int NumPartitions,
    short ReplicationFactor,
    IReadOnlyDictionary<int, IReadOnlyList<int>>? Assignments,
    IReadOnlyDictionary<string, string?> Configs,
    int DuplicateAssignment = -1);

/// <summary>Outcome for one topic of CreateTopics.</summary>
public sealed record CreateTopicResult(string Name, ErrorCode Error, string? Message, Uuid TopicId, int NumPartitions, short ReplicationFactor);

/// <summary>Outcome for one topic of DeleteTopics (identified by name or id).</summary>
public sealed record DeleteTopicResult(string? Name, Uuid TopicId, ErrorCode Error, string? Message);

/// <summary>A topic's new partition count, with optional replica lists for the new partitions.</summary>
public sealed record NewPartitions(string Topic, int Count, IReadOnlyList<IReadOnlyList<int>>? Assignments);

public sealed record CreatePartitionsResult(string Topic, ErrorCode Error, string? Message);

/// <summary>IncrementalAlterConfigs operation kinds, numbered as the protocol numbers them.</summary>
public enum AlterConfigOp : sbyte
{
    Set = 0,
    Delete = 1,
    Append = 2,
    Subtract = 3,
}

public sealed record ConfigChange(string Name, AlterConfigOp Op, string? Value);

public sealed record AlterConfigsResult(ConfigResourceType Type, string Name, ErrorCode Error, string? Message);

/// <summary>A contiguous block of producer ids handed to a broker.</summary>
public readonly record struct ProducerIdBlock(int BrokerId, long FirstId, int Size)
{
    public long NextBlockFirstId => FirstId + Size;
}

/// <summary>Controller settings from the node's configuration.</summary>
public sealed record ControllerOptions
{
    public required int NodeId { get; init; }
    public required string ClusterId { get; init; }

    /// <summary>num.partitions</summary>
    public int DefaultNumPartitions { get; init; } = 1;

    /// <summary>default.replication.factor</summary>
    public short DefaultReplicationFactor { get; init; } = 1;

    /// <summary>Broker-level defaults for topic configs (to validate min.insync.replicas against RF and similar).</summary>
    public IReadOnlyDictionary<string, string> TopicDefaults { get; init; } = new Dictionary<string, string>();

    /// <summary>Every broker config name (server.properties), so that a read-only one is told apart from an unknown one.</summary>
    public IReadOnlySet<string> StaticBrokerConfigs { get; init; } = new HashSet<string>();

    /// <summary>Producer ids handed out per AllocateProducerIds (Kafka's block size).</summary>
    public int ProducerIdBlockSize { get; init; } = 1000;

    /// <summary>Largest number of partitions one request may create (Kafka bounds records per operation).</summary>
    public int MaxPartitionsPerRequest { get; init; } = 10_000;

    /// <summary>broker.session.timeout.ms: a broker without a heartbeat for this long is fenced.</summary>
    public int BrokerSessionTimeoutMs { get; init; } = 9_000;

    /// <summary>The controller's clock (broker sessions).</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;
}

/// <summary>Outcome of a BrokerRegistration.</summary>
public readonly record struct BrokerRegistrationOutcome(ErrorCode Error, string? Message, long BrokerEpoch);

/// <summary>Outcome of a BrokerHeartbeat (Kafka's response fields).</summary>
public readonly record struct BrokerHeartbeatOutcome(ErrorCode Error, bool IsCaughtUp, bool IsFenced, bool ShouldShutDown);

/// <summary>An ISR member as AlterPartition names it (KIP-903): the broker and the broker epoch its leader saw it fetch with (-1: unknown, not checked).</summary>
public readonly record struct IsrMember(int BrokerId, long BrokerEpoch);

/// <summary>Outcome of one partition of an AlterPartition: the registration as it now stands, or an error.</summary>
public sealed record AlterPartitionOutcome(ErrorCode Error, PartitionRegistration? Registration);

/// <summary>This node is not the active controller (NOT_CONTROLLER): the operation was not carried out, or its outcome is unknown.</summary>
public sealed class NotControllerException(string message) : Exception(message);
