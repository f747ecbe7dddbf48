namespace Freshet.Broker.Replication;

/// <summary>
/// replica.selector.class: how a leader picks the replica a consumer should read from (KIP-392).
/// Kafka loads a class by name; Freshet knows the selectors Kafka ships under the names users put
/// in server.properties, and refuses any other name at start-up (it cannot load Java classes).
/// </summary>
public enum ReplicaSelector
{
    /// <summary>Unset (Kafka's default), or LeaderReplicaSelector: consumers are never sent elsewhere.</summary>
    Leader,

    /// <summary>
    /// RackAwareReplicaSelector: a consumer that names its rack (client.rack, FetchRequest v11+
    /// RackId) is sent to an in-sync replica in that rack; to the leader when the leader is in it,
    /// or when no replica is.
    /// </summary>
    RackAware,
}

/// <summary>The replica.selector.class values Freshet accepts.</summary>
public static class ReplicaSelectors
{
    public const string ConfigKey = "replica.selector.class";
    public const string RackAwareClassName = "org.apache.kafka.common.replica.RackAwareReplicaSelector";

    /// <summary>Kafka's explicit spelling of the default (shipped from 2.4 until 4.0): always the leader.</summary>
    public const string LeaderClassName = "org.apache.kafka.common.replica.LeaderReplicaSelector";

    /// <summary>The selector a config value names; null or blank is the default.</summary>
    public static ReplicaSelector Parse(string? className) => className?.Trim() switch
    {
        null or "" or LeaderClassName => ReplicaSelector.Leader,
        RackAwareClassName => ReplicaSelector.RackAware,
        var other => throw new ArgumentException(Describe(other)),
    };

    /// <summary>Config validator: null when <paramref name="className"/> is accepted, else why not.</summary>
    public static string? Validate(string className) => className.Trim() is "" or LeaderClassName or RackAwareClassName ? null
        : $"Freshet cannot load replica selector classes; supported: {RackAwareClassName} (rack-aware follower fetching), {LeaderClassName} or unset (consumers read from the leader)";

    private static string Describe(string className) => $"Invalid value {className} for configuration {ConfigKey}: {Validate(className)}";
}
