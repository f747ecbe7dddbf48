using System.Globalization;
using Freshet.Metadata.Image;
using Freshet.Protocol;
using Freshet.Protocol.Config;
using Freshet.Storage;

namespace Freshet.Metadata.Controller;

/// <summary>
/// Broker configs changed at runtime (IncrementalAlterConfigs / AlterConfigs on a BROKER resource),
/// kept as ConfigRecords in the metadata log: per broker (resource name = the broker id) and
/// cluster-wide (resource name "", the dynamic default every broker falls back on).
///
/// Freshet accepts only the configs it really applies while running: the broker-side defaults of
/// topic configs (Kafka's DynamicLogConfig: log.retention.ms, log.segment.bytes, message.max.bytes,
/// min.insync.replicas, ...), which every log without a topic override picks up at once. Every other
/// broker config is read-only here and refused as Kafka refuses a non-dynamic one.
/// </summary>
public static class DynamicBrokerConfigs
{
    /// <summary>Dynamic broker config name -> the topic config it is the default of.</summary>
    public static readonly IReadOnlyDictionary<string, string> TopicKeyOf =
        LogConfig.BrokerSynonyms.ToDictionary(kv => kv.Value, kv => kv.Key, StringComparer.Ordinal);

    public static bool IsDynamic(string brokerConfig) => TopicKeyOf.ContainsKey(brokerConfig);

    /// <summary>
    /// The topic defaults in force on broker <paramref name="nodeId"/>: the static ones
    /// (server.properties), under the cluster-wide dynamic defaults, under this broker's own dynamic
    /// configs (Kafka's order of precedence). A null <paramref name="nodeId"/> leaves out per-broker values.
    /// </summary>
    public static IReadOnlyDictionary<string, string> TopicDefaults(IReadOnlyDictionary<string, string> staticDefaults, MetadataImage image, int? nodeId)
    {
        var cluster = image.ConfigsOf(ConfigResourceType.Broker, "");
        var own = nodeId is { } id ? image.ConfigsOf(ConfigResourceType.Broker, id.ToString(CultureInfo.InvariantCulture)) : null;
        if (cluster.Count == 0 && (own is null || own.Count == 0)) return staticDefaults;
        var result = new Dictionary<string, string>(staticDefaults, StringComparer.Ordinal);
        foreach (var layer in new[] { cluster, own })
        {
            if (layer is null) continue;
            foreach (var (k, v) in layer)
                if (TopicKeyOf.TryGetValue(k, out var topicKey)) result[topicKey] = v;
        }
        return result;
    }

    /// <summary>True when the dynamic broker configs <paramref name="nodeId"/> sees differ between two images.</summary>
    public static bool Changed(MetadataImage previous, MetadataImage current, int nodeId)
    {
        string own = nodeId.ToString(CultureInfo.InvariantCulture);
        return !ReferenceEquals(previous.ConfigsOf(ConfigResourceType.Broker, ""), current.ConfigsOf(ConfigResourceType.Broker, ""))
            || !ReferenceEquals(previous.ConfigsOf(ConfigResourceType.Broker, own), current.ConfigsOf(ConfigResourceType.Broker, own));
    }

    /// <summary>Kafka's broker resource names: "" (the cluster default) or a broker id.</summary>
    public static string? ValidateResourceName(string name) =>
        name.Length == 0 || int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out int id) && id >= 0
            ? null
            : $"Invalid broker name {name}";

    /// <summary>
    /// Checks a broker resource's whole new set of dynamic configs: a known but read-only name is
    /// INVALID_REQUEST ("Cannot update these configs dynamically"), an unknown name INVALID_CONFIG, a
    /// bad value INVALID_CONFIG.
    /// </summary>
    public static (ErrorCode Error, string Message)? Validate(IReadOnlyDictionary<string, string> configs, IReadOnlySet<string> staticBrokerConfigs)
    {
        var readOnly = configs.Keys.Where(k => !IsDynamic(k) && staticBrokerConfigs.Contains(k)).Order(StringComparer.Ordinal).ToList();
        if (readOnly.Count > 0)
            return (ErrorCode.InvalidRequest, $"Cannot update these configs dynamically: [{string.Join(", ", readOnly)}]");
        var unknown = configs.Keys.Where(k => !IsDynamic(k)).Order(StringComparer.Ordinal).ToList();
        if (unknown.Count > 0) return (ErrorCode.InvalidConfig, $"Unknown broker config name: {string.Join(", ", unknown)}");
        var asTopic = configs.ToDictionary(kv => TopicKeyOf[kv.Key], kv => kv.Value, StringComparer.Ordinal);
        if (LogConfig.Validate(asTopic) is { } error)
        {
            // Name the broker config, not the topic config the check speaks of.
            foreach (var (brokerKey, topicKey) in TopicKeyOf)
                if (configs.ContainsKey(brokerKey)) error = error.Replace(topicKey, brokerKey, StringComparison.Ordinal);
            return (ErrorCode.InvalidConfig, error);
        }
        return null;
    }
}
