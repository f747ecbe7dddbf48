using System.Globalization;
using Freshet.Metadata.Controller;
using Freshet.Metadata.Image;
using Freshet.Protocol;
using Freshet.Protocol.Config;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;
using Freshet.Storage;

namespace Freshet.Broker.Handlers;

/// <summary>DescribeConfigs (topics and this broker) and IncrementalAlterConfigs (topics).</summary>
public sealed class ConfigsHandler(RequestDispatcher dispatcher, BrokerOptions options, QuorumController controller, MetadataCache cache)
{
    public void Register()
    {
        dispatcher.Register(ApiKey.DescribeConfigs, (c, r) => new(HandleDescribe(c, (DescribeConfigsRequest)r)));
        dispatcher.Register(ApiKey.IncrementalAlterConfigs,
            (c, r) => new(Task.Run<IApiMessage?>(() => HandleIncrementalAlter(c, (IncrementalAlterConfigsRequest)r))), ordered: true);
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
                    var config = LogConfig.Create(options.TopicDefaults, image.ConfigsOf(ConfigResourceType.Topic, res.ResourceName));
                    foreach (var key in LogConfig.Definition.Keys)
                    {
                        if (keys is not null && !keys.Contains(key.Name)) continue;
                        result.Configs.Add(TopicEntry(config, key, v, synonyms, docs));
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
                    if (res.ResourceName.Length == 0) break; // cluster-wide dynamic defaults: none are set
                    foreach (var e in options.DescribeBrokerConfigs())
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

    private static DescribeConfigsResponse.DescribeConfigsResourceResult TopicEntry(LogConfig config, ConfigKey key, short v, bool synonyms, bool docs)
    {
        var source = config.SourceOf(key.Name);
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
        {
            // Most specific first: the topic's own value, the broker's setting, the built-in default.
            string brokerName = LogConfig.BrokerSynonyms.GetValueOrDefault(key.Name, key.Name);
            if (config.Overrides.TryGetValue(key.Name, out var o))
                entry.Synonyms.Add(new() { Name = key.Name, Value = o, Source = (sbyte)ConfigSource.DynamicTopicConfig });
            if (config.BrokerDefaults.TryGetValue(key.Name, out var b))
                entry.Synonyms.Add(new() { Name = brokerName, Value = b, Source = (sbyte)ConfigSource.StaticBrokerConfig });
            entry.Synonyms.Add(new() { Name = brokerName, Value = key.Default, Source = (sbyte)ConfigSource.DefaultConfig });
        }
        return entry;
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
