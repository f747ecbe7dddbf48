using Freshet.Broker.Replication;
using Freshet.Metadata.Image;
using Freshet.Protocol.Config;

namespace Freshet.Broker;

/// <summary>One entry of DescribeConfigs for a broker resource.</summary>
public sealed record ConfigEntry(
    string Name,
    string? Value,
    ConfigSource Source,
    bool Sensitive,
    bool ReadOnly,
    ConfigType Type,
    string Documentation,
    IReadOnlyList<(string Name, string? Value, ConfigSource Source)> Synonyms);

/// <summary>The broker's settings that request handlers need (from server.properties).</summary>
public sealed record BrokerOptions
{
    /// <summary>node.id</summary>
    public required int NodeId { get; init; }

    /// <summary>broker.rack</summary>
    public string? Rack { get; init; }

    /// <summary>advertised.listeners (what Metadata responses tell clients to connect to).</summary>
    public required IReadOnlyList<BrokerEndpoint> AdvertisedListeners { get; init; }

    /// <summary>auto.create.topics.enable</summary>
    public bool AutoCreateTopicsEnable { get; init; } = true;

    /// <summary>Broker-level defaults of topic configs, keyed by topic-level name.</summary>
    public IReadOnlyDictionary<string, string> TopicDefaults { get; init; } = new Dictionary<string, string>();

    /// <summary>The broker resource's configs for DescribeConfigs.</summary>
    public Func<IReadOnlyList<ConfigEntry>> DescribeBrokerConfigs { get; init; } = () => [];

    /// <summary>delete.topic.enable</summary>
    public bool DeleteTopicEnable { get; init; } = true;

    /// <summary>replica.fetch.wait.max.ms-like ceiling on a fetch's long poll.</summary>
    public int MaxFetchWaitMs { get; init; } = 30_000;

    /// <summary>producer.id.expiration.ms</summary>
    public long ProducerIdExpirationMs { get; init; } = 86_400_000;

    /// <summary>Replication settings (replica.*).</summary>
    public ReplicationOptions Replication { get; init; } = new();

    /// <summary>replica.selector.class: whether a leader sends consumers to a follower in their rack (KIP-392).</summary>
    public ReplicaSelector ReplicaSelector { get; init; } = ReplicaSelector.Leader;

    /// <summary>
    /// This broker's epoch from its registration with the controller (KIP-903): sent in follower
    /// fetches and in AlterPartition's ISR. -1 until registered.
    /// </summary>
    public Func<long> BrokerEpoch { get; init; } = static () => -1;

    /// <summary>The active controller (the metadata quorum's leader) as this node knows it, or null.</summary>
    public Func<int?> ActiveControllerId { get; init; } = static () => null;

    /// <summary>The controllers (the quorum's voters) and their controller-listener addresses, for DescribeCluster on a controller listener.</summary>
    public IReadOnlyList<(int Id, string Host, int Port)> Controllers { get; init; } = [];

    /// <summary>Log directories appends found unwritable, reported to the controller in heartbeats.</summary>
    public Replication.LogDirHealth LogDirs { get; init; } = new();
}

/// <summary>Replication settings: Kafka's replica.* keys with Kafka's defaults.</summary>
public sealed record ReplicationOptions
{
    /// <summary>replica.lag.time.max.ms: a follower that has not caught up with the leader's end for this long leaves the ISR.</summary>
    public long ReplicaLagTimeMaxMs { get; init; } = 30_000;

    /// <summary>replica.fetch.max.bytes: bytes a follower asks for per partition (at least one batch comes anyway).</summary>
    public int ReplicaFetchMaxBytes { get; init; } = 1_048_576;

    /// <summary>replica.fetch.response.max.bytes: bytes a follower asks for per fetch.</summary>
    public int ReplicaFetchResponseMaxBytes { get; init; } = 10_485_760;

    /// <summary>replica.fetch.wait.max.ms: how long the leader may hold a follower's fetch waiting for data.</summary>
    public int ReplicaFetchWaitMaxMs { get; init; } = 500;

    /// <summary>replica.fetch.min.bytes: bytes the leader waits for before answering a follower's fetch.</summary>
    public int ReplicaFetchMinBytes { get; init; } = 1;

    /// <summary>replica.fetch.backoff.ms: pause after a failed fetch (partition or whole fetcher).</summary>
    public int ReplicaFetchBackoffMs { get; init; } = 1_000;

    /// <summary>
    /// Fetch version followers send. 12 and later carry LastFetchedEpoch and the leader answers
    /// DivergingEpoch (KIP-595 style truncation); below 12 a follower truncates with
    /// OffsetForLeaderEpoch before fetching (the pre-2.7 protocol). Not a Kafka key.
    /// </summary>
    public short ReplicaFetchVersion { get; init; } = 17;

    /// <summary>Pause before proposing an ISR change again after AlterPartition failed. Not a Kafka key.</summary>
    public int AlterPartitionRetryBackoffMs { get; init; } = 100;
}
