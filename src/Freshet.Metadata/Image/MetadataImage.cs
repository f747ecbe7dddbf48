using System.Collections.Immutable;
using Freshet.Protocol.Wire;

namespace Freshet.Metadata.Image;

/// <summary>Config resource types, numbered as the Admin API numbers them.</summary>
public enum ConfigResourceType : sbyte
{
    Unknown = 0,
    Topic = 2,
    Broker = 4,
    BrokerLogger = 8,
    ClientMetrics = 16,
    Group = 32,
}

/// <summary>A listener endpoint a broker registered (name, host, port, security protocol id).</summary>
public sealed record BrokerEndpoint(string Name, string Host, int Port, short SecurityProtocol);

/// <summary>A broker as the controller knows it.</summary>
public sealed record BrokerRegistration(
    int Id,
    long Epoch,
    Uuid IncarnationId,
    ImmutableArray<BrokerEndpoint> Endpoints,
    string? Rack,
    bool Fenced,
    bool InControlledShutdown);

/// <summary>One partition's replica set and leadership, as the metadata log records it.</summary>
public sealed record PartitionRegistration(
    ImmutableArray<int> Replicas,
    ImmutableArray<int> Isr,
    ImmutableArray<int> RemovingReplicas,
    ImmutableArray<int> AddingReplicas,
    int Leader,
    int LeaderEpoch,
    int PartitionEpoch)
{
    public const int NoLeader = -1;

    public bool HasLeader => Leader >= 0;
}

/// <summary>A topic: name, id and partitions by index.</summary>
public sealed record TopicImage(string Name, Uuid Id, ImmutableSortedDictionary<int, PartitionRegistration> Partitions);

/// <summary>A config resource key (type and name; the empty name is the cluster-wide default for brokers).</summary>
public readonly record struct ConfigResourceKey(ConfigResourceType Type, string Name);

/// <summary>
/// The metadata image: the state the metadata log's records add up to at <see cref="Offset"/>
/// (topics, partitions, brokers, configs, producer id blocks, features). Immutable, so request
/// handlers read a consistent snapshot without locks while the controller publishes the next one.
/// </summary>
public sealed record MetadataImage(
    long Offset,
    string ClusterId,
    int ControllerId,
    ImmutableDictionary<string, TopicImage> TopicsByName,
    ImmutableDictionary<Uuid, TopicImage> TopicsById,
    ImmutableSortedDictionary<int, BrokerRegistration> Brokers,
    ImmutableDictionary<ConfigResourceKey, ImmutableDictionary<string, string>> Configs,
    long NextProducerId,
    ImmutableDictionary<string, short> Features)
{
    public static MetadataImage Empty(string clusterId, int controllerId) => new(
        -1,
        clusterId,
        controllerId,
        ImmutableDictionary<string, TopicImage>.Empty.WithComparers(StringComparer.Ordinal),
        ImmutableDictionary<Uuid, TopicImage>.Empty,
        ImmutableSortedDictionary<int, BrokerRegistration>.Empty,
        ImmutableDictionary<ConfigResourceKey, ImmutableDictionary<string, string>>.Empty,
        0,
        ImmutableDictionary<string, short>.Empty);

    public TopicImage? Topic(string name) => TopicsByName.GetValueOrDefault(name);

    public TopicImage? Topic(Uuid id) => TopicsById.GetValueOrDefault(id);

    public PartitionRegistration? Partition(string topic, int partition) =>
        TopicsByName.TryGetValue(topic, out var t) ? t.Partitions.GetValueOrDefault(partition) : null;

    /// <summary>Config overrides set for a resource (empty when none).</summary>
    public IReadOnlyDictionary<string, string> ConfigsOf(ConfigResourceType type, string name) =>
        Configs.TryGetValue(new ConfigResourceKey(type, name), out var c) ? c : ImmutableDictionary<string, string>.Empty;

    public IEnumerable<BrokerRegistration> ActiveBrokers => Brokers.Values.Where(b => !b.Fenced);
}
