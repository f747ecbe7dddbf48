using System.Globalization;
using Freshet.Metadata.Controller;
using Freshet.Metadata.Image;
using Freshet.Protocol;
using Freshet.Protocol.Config;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;
using Freshet.Storage;

namespace Freshet.Broker.Handlers;

/// <summary>
/// DescribeConfigs (topics and brokers), IncrementalAlterConfigs and AlterConfigs (topics, and the
/// dynamic broker configs: per broker id, or "" for the cluster-wide default).
/// </summary>
public sealed class ConfigsHandler(RequestDispatcher dispatcher, BrokerOptions options, QuorumController controller, MetadataCache cache)
{
    public void Register()
    {
        dispatcher.Register(ApiKey.DescribeConfigs, (c, r) => new(HandleDescribe(c, (DescribeConfigsRequest)r)));
        dispatcher.Register(ApiKey.IncrementalAlterConfigs,
            (c, r) => new(Task.Run<IApiMessage?>(() => HandleIncrementalAlter(c, (IncrementalAlterConfigsRequest)r))), ordered: true);
        dispatcher.Register(ApiKey.AlterConfigs,
            (c, r) => new(Task.Run<IApiMessage?>(() => HandleAlter(c, (AlterConfigsRequest)r))), ordered: true);
    }

    public DescribeConfigsResponse HandleDescribe(RequestContext context, DescribeConfigsRequest request)
    {
        short v = context.ApiVersion;
        bool synonyms = v >= 1 && request.IncludeSynonyms;
        bool docs = v >= 3 && request.IncludeDocumentation;
        var response = new DescribeConfigsResponse();
        var image = cache.Image;
        foreach (var res in request.Resources)
        {
            var result = new DescribeConfigsResponse.DescribeConfigsResult { ResourceType = res.ResourceType, ResourceName = res.ResourceName, ErrorMessage = null };
            response.Results.Add(result);
            var keys = res.ConfigurationKeys is { Count: > 0 } k ? new HashSet<string>(k, StringComparer.Ordinal) : null;
            switch ((ConfigResourceType)res.ResourceType)
            {
                case ConfigResourceType.Topic:
                {
                    if (image.Topic(res.ResourceName) is null)
                    {
                        result.ErrorCode = (short)ErrorCode.UnknownTopicOrPartition;
                        result.ErrorMessage = $"Topic '{res.ResourceName}' does not exist.";
                        break;
                    }
                    var defaults = DynamicBrokerConfigs.TopicDefaults(options.TopicDefaults, image, options.NodeId);
                    var config = LogConfig.Create(defaults, image.ConfigsOf(ConfigResourceType.Topic, res.ResourceName));
                    foreach (var key in LogConfig.Definition.Keys)
                    {
                        if (keys is not null && !keys.Contains(key.Name)) continue;
                        result.Configs.Add(TopicEntry(image, config, key, synonyms, docs));
                    }
                    break;
                }
                case ConfigResourceType.Broker:
                {
                    if (res.ResourceName.Length > 0 && res.ResourceName != options.NodeId.ToString(CultureInfo.InvariantCulture))
                    {
                        result.ErrorCode = (short)ErrorCode.InvalidRequest;
                        result.ErrorMessage = $"Unexpected broker id, expected {options.NodeId} or empty string, but received {res.ResourceName}";
                        break;
                    }
                    foreach (var e in BrokerEntries(image, clusterDefault: res.ResourceName.Length == 0))
                    {
                        if (keys is not null && !keys.Contains(e.Name)) continue;
                        result.Configs.Add(new DescribeConfigsResponse.DescribeConfigsResourceResult
                        {
                            Name = e.Name,
                            Value = e.Sensitive ? null : e.Value,
                            ReadOnly = e.ReadOnly,
                            IsDefault = e.Source == ConfigSource.DefaultConfig,
                            ConfigSource = (sbyte)e.Source,
                            IsSensitive = e.Sensitive,
                            ConfigType = (sbyte)e.Type,
                            Documentation = docs ? e.Documentation : null,
                            Synonyms = synonyms
                                ? [.. e.Synonyms.Select(s => new DescribeConfigsResponse.DescribeConfigsSynonym { Name = s.Name, Value = e.Sensitive ? null : s.Value, Source = (sbyte)s.Source })]
                                : [],
                        });
                    }
                    break;
                }
                default:
                    result.ErrorCode = (short)ErrorCode.InvalidRequest;
                    result.ErrorMessage = $"Unsupported resource type {res.ResourceType}";
                    break;
            }
        }
        return response;
    }

    /// <summary>
    /// A topic config, with where its value comes from, most specific first (Kafka's synonyms): the
    /// topic's own value, this broker's dynamic config, the cluster-wide dynamic default, the static
    /// broker setting (server.properties), the built-in default.
    /// </summary>
    private DescribeConfigsResponse.DescribeConfigsResourceResult TopicEntry(MetadataImage image, LogConfig config, ConfigKey key, bool synonyms, bool docs)
    {
        string brokerName = LogConfig.BrokerSynonyms.GetValueOrDefault(key.Name, key.Name);
        var layers = new List<(string Name, string? Value, ConfigSource Source)>();
        if (config.Overrides.TryGetValue(key.Name, out var o)) layers.Add((key.Name, o, ConfigSource.DynamicTopicConfig));
        if (LogConfig.BrokerSynonyms.ContainsKey(key.Name))
        {
            if (image.ConfigsOf(ConfigResourceType.Broker, options.NodeId.ToString(CultureInfo.InvariantCulture)).TryGetValue(brokerName, out var nb))
                layers.Add((brokerName, nb, ConfigSource.DynamicBrokerConfig));
            if (image.ConfigsOf(ConfigResourceType.Broker, "").TryGetValue(brokerName, out var cb))
                layers.Add((brokerName, cb, ConfigSource.DynamicDefaultBrokerConfig));
        }
        if (options.TopicDefaults.TryGetValue(key.Name, out var sb)) layers.Add((brokerName, sb, ConfigSource.StaticBrokerConfig));
        layers.Add((brokerName, key.Default, ConfigSource.DefaultConfig));
        var source = layers[0].Source;
        var entry = new DescribeConfigsResponse.DescribeConfigsResourceResult
        {
            Name = key.Name,
            Value = key.Sensitive ? null : config.Values[key.Name],
            ReadOnly = false,
            IsDefault = source == ConfigSource.DefaultConfig,
            ConfigSource = (sbyte)source,
            IsSensitive = key.Sensitive,
            ConfigType = (sbyte)key.Type,
            Documentation = docs ? key.Doc : null,
        };
        if (synonyms)
            foreach (var (name, value, src) in layers)
                entry.Synonyms.Add(new() { Name = name, Value = value, Source = (sbyte)src });
        return entry;
    }

    /// <summary>
    /// This broker's configs: each with its dynamic values (per broker, then cluster-wide) before
    /// the static and default ones, read-only unless Freshet changes it at runtime. For the cluster
    /// default resource ("") only the dynamic defaults set, as Kafka lists them.
    /// </summary>
    private List<ConfigEntry> BrokerEntries(MetadataImage image, bool clusterDefault)
    {
        var own = image.ConfigsOf(ConfigResourceType.Broker, options.NodeId.ToString(CultureInfo.InvariantCulture));
        var cluster = image.ConfigsOf(ConfigResourceType.Broker, "");
        var result = new List<ConfigEntry>();
        if (clusterDefault)
        {
            foreach (var (k, v) in cluster.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                result.Add(new ConfigEntry(k, v, ConfigSource.DynamicDefaultBrokerConfig, false, false, TypeOf(k), "", [(k, v, ConfigSource.DynamicDefaultBrokerConfig)]));
            return result;
        }
        var statics = options.DescribeBrokerConfigs();
        var names = statics.Select(e => e.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var e in statics)
        {
            if (!DynamicBrokerConfigs.IsDynamic(e.Name))
            {
                result.Add(e with { ReadOnly = true });
                continue;
            }
            result.Add(WithDynamic(e.Name, e.Type, e.Documentation, e.Sensitive, e.Synonyms));
        }
        // Dynamic configs server.properties does not define: their static layer is the topic default.
        foreach (var k in own.Keys.Concat(cluster.Keys).Where(k => !names.Contains(k)).Distinct().Order(StringComparer.Ordinal))
        {
            var key = LogConfig.Definition.Keys.First(d => d.Name == DynamicBrokerConfigs.TopicKeyOf[k]);
            result.Add(WithDynamic(k, key.Type, key.Doc, key.Sensitive, [(k, key.Default, ConfigSource.DefaultConfig)]));
        }
        return result;

        ConfigEntry WithDynamic(string name, ConfigType type, string doc, bool sensitive, IReadOnlyList<(string, string?, ConfigSource)> rest)
        {
            var layers = new List<(string Name, string? Value, ConfigSource Source)>();
            if (own.TryGetValue(name, out var nv)) layers.Add((name, nv, ConfigSource.DynamicBrokerConfig));
            if (cluster.TryGetValue(name, out var cv)) layers.Add((name, cv, ConfigSource.DynamicDefaultBrokerConfig));
            layers.AddRange(rest);
            return new ConfigEntry(name, layers[0].Value, layers[0].Source, sensitive, false, type, doc, layers);
        }

        static ConfigType TypeOf(string brokerKey) =>
            DynamicBrokerConfigs.TopicKeyOf.TryGetValue(brokerKey, out var t) && LogConfig.Definition.TryGet(t, out var key) ? key.Type : ConfigType.String;
    }

    public AlterConfigsResponse HandleAlter(RequestContext context, AlterConfigsRequest request)
    {
        var response = new AlterConfigsResponse();
        var duplicates = DuplicateResources(request.Resources.Select(r => (r.ResourceType, r.ResourceName)));
        foreach (var (type, name) in duplicates)
            response.Responses.Add(new() { ErrorCode = (short)ErrorCode.InvalidRequest, ErrorMessage = "Duplicate resource.", ResourceType = type, ResourceName = name });
        var resources = request.Resources
            .Where(r => !duplicates.Contains((r.ResourceType, r.ResourceName)))
            .Select(r => ((ConfigResourceType)r.ResourceType, r.ResourceName, (IReadOnlyList<(string, string?)>)r.Configs.Select(c => (c.Name, c.Value)).ToList()))
            .ToList();
        foreach (var r in controller.AlterConfigs(resources, request.ValidateOnly))
            response.Responses.Add(new AlterConfigsResponse.AlterConfigsResourceResponse
            {
                ErrorCode = (short)r.Error, ErrorMessage = r.Message, ResourceType = (sbyte)r.Type, ResourceName = r.Name,
            });
        return response;
    }

    public IncrementalAlterConfigsResponse HandleIncrementalAlter(RequestContext context, IncrementalAlterConfigsRequest request)
    {
        var response = new IncrementalAlterConfigsResponse();
        var duplicates = DuplicateResources(request.Resources.Select(r => (r.ResourceType, r.ResourceName)));
        foreach (var (type, name) in duplicates)
            response.Responses.Add(new() { ErrorCode = (short)ErrorCode.InvalidRequest, ErrorMessage = "Duplicate resource.", ResourceType = type, ResourceName = name });
        var resources = request.Resources
            .Where(r => !duplicates.Contains((r.ResourceType, r.ResourceName)))
            .Select(r => ((ConfigResourceType)r.ResourceType, r.ResourceName,
                (IReadOnlyList<ConfigChange>)r.Configs.Select(c => new ConfigChange(c.Name, (AlterConfigOp)c.ConfigOperation, c.Value)).ToList()))
            .ToList();
        foreach (var r in controller.IncrementalAlterConfigs(resources, request.ValidateOnly))
            response.Responses.Add(new IncrementalAlterConfigsResponse.AlterConfigsResourceResponse
            {
                ErrorCode = (short)r.Error, ErrorMessage = r.Message, ResourceType = (sbyte)r.Type, ResourceName = r.Name,
            });
        return response;
    }

    /// <summary>Resources named more than once in one alter request: Kafka changes none of them and answers each once with INVALID_REQUEST.</summary>
    private static HashSet<(sbyte Type, string Name)> DuplicateResources(IEnumerable<(sbyte Type, string Name)> resources)
    {
        var seen = new HashSet<(sbyte, string)>();
        var duplicates = new HashSet<(sbyte, string)>();
        foreach (var r in resources)
            if (!seen.Add(r)) duplicates.Add(r);
        return duplicates;
    }
}
