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
}
