namespace Freshet.Broker.Groups;

/// <summary>Group coordinator settings (Kafka's names and defaults).</summary>
public sealed record GroupCoordinatorOptions
{
    /// <summary>offsets.topic.num.partitions</summary>
    public int OffsetsTopicPartitions { get; init; } = 50;

    /// <summary>
    /// offsets.topic.replication.factor: __consumer_offsets gets exactly this many replicas; it is not
    /// created (COORDINATOR_NOT_AVAILABLE) while fewer brokers are alive.
    /// </summary>
    public short OffsetsTopicReplicationFactor { get; init; } = 3;

    /// <summary>offsets.topic.segment.bytes</summary>
    public int OffsetsTopicSegmentBytes { get; init; } = 104_857_600;

    /// <summary>group.min.session.timeout.ms</summary>
    public int MinSessionTimeoutMs { get; init; } = 6_000;

    /// <summary>group.max.session.timeout.ms</summary>
    public int MaxSessionTimeoutMs { get; init; } = 1_800_000;

    /// <summary>group.initial.rebalance.delay.ms: how long a new group waits for more members before its first rebalance.</summary>
    public int InitialRebalanceDelayMs { get; init; } = 3_000;

    /// <summary>group.max.size</summary>
    public int MaxGroupSize { get; init; } = int.MaxValue;

    /// <summary>offsets.retention.minutes, in ms: offsets of an empty group expire after this long.</summary>
    public long OffsetsRetentionMs { get; init; } = 7L * 24 * 60 * 60 * 1000;

    /// <summary>offsets.retention.check.interval.ms</summary>
    public long OffsetsRetentionCheckIntervalMs { get; init; } = 600_000;

    /// <summary>offset.metadata.max.bytes</summary>
    public int OffsetMetadataMaxBytes { get; init; } = 4096;

    /// <summary>offsets.commit.timeout.ms: how long a commit waits for its record to be replicated.</summary>
    public int OffsetsCommitTimeoutMs { get; init; } = 5_000;

    /// <summary>group.consumer.heartbeat.interval.ms (KIP-848).</summary>
    public int ConsumerHeartbeatIntervalMs { get; init; } = 5_000;

    /// <summary>group.consumer.session.timeout.ms (KIP-848).</summary>
    public int ConsumerSessionTimeoutMs { get; init; } = 45_000;

    /// <summary>group.consumer.assignors (KIP-848): the first is the default.</summary>
    public IReadOnlyList<string> ConsumerAssignors { get; init; } = ["uniform", "range"];
}
