using Freshet.Metadata.Controller;
using Freshet.Metadata.Image;
using Freshet.Protocol;
using Freshet.Protocol.Config;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;
using Freshet.Storage;

namespace Freshet.Broker.Handlers;

/// <summary>CreateTopics, DeleteTopics and CreatePartitions, passed to the controller.</summary>
public sealed class TopicsHandler(RequestDispatcher dispatcher, BrokerOptions options, QuorumController controller)
{
    public void Register()
    {
        // The controller commits to its log with an fsync: off the network thread, and in order.
        dispatcher.Register(ApiKey.CreateTopics, (c, r) => new(Task.Run<IApiMessage?>(() => HandleCreateTopics(c, (CreateTopicsRequest)r))), ordered: true);
        dispatcher.Register(ApiKey.DeleteTopics, (c, r) => new(Task.Run<IApiMessage?>(() => HandleDeleteTopics(c, (DeleteTopicsRequest)r))), ordered: true);
        dispatcher.Register(ApiKey.CreatePartitions, (c, r) => new(Task.Run<IApiMessage?>(() => HandleCreatePartitions(c, (CreatePartitionsRequest)r))), ordered: true);
    }

    public CreateTopicsResponse HandleCreateTopics(RequestContext context, CreateTopicsRequest request)
    {
        short v = context.ApiVersion;
        var topics = request.Topics.Select(t =>
        {
            Dictionary<int, IReadOnlyList<int>>? assignments = null;
            int duplicate = -1;
            foreach (var a in t.Assignments)
            {
                // A partition assigned twice is the client's mistake, answered per topic (not a reason to drop the connection).
                if (!(assignments ??= []).TryAdd(a.PartitionIndex, a.BrokerIds) && duplicate < 0) duplicate = a.PartitionIndex;
            }
            return new NewTopic(t.Name, t.NumPartitions, t.ReplicationFactor, assignments,
                t.Configs.GroupBy(c => c.Name).ToDictionary(g => g.Key, g => g.Last().Value), duplicate);
        }).ToList();
        var results = controller.CreateTopics(topics, request.ValidateOnly);
        var response = new CreateTopicsResponse();
        foreach (var r in results)
        {
            var tr = new CreateTopicsResponse.CreatableTopicResult
            {
                Name = r.Name,
                ErrorCode = (short)r.Error,
                ErrorMessage = r.Message,
                TopicId = r.TopicId,
                NumPartitions = r.Error == ErrorCode.None ? r.NumPartitions : -1,
                ReplicationFactor = r.Error == ErrorCode.None ? r.ReplicationFactor : (short)-1,
                Configs = null,
            };
            if (r.Error == ErrorCode.None && v >= 5)
            {
                var requested = topics.First(t => t.Name == r.Name);
                var overrides = requested.Configs.Where(kv => kv.Value is not null).ToDictionary(kv => kv.Key, kv => kv.Value!);
                var config = LogConfig.Create(DynamicBrokerConfigs.TopicDefaults(options.TopicDefaults, controller.Image, nodeId: null), overrides);
                tr.Configs = [.. LogConfig.Definition.Keys.Select(k => new CreateTopicsResponse.CreatableTopicConfigs
                {
                    Name = k.Name,
                    Value = config.Values[k.Name],
                    ReadOnly = false,
                    ConfigSource = (sbyte)config.SourceOf(k.Name),
                    IsSensitive = k.Sensitive,
                })];
            }
            response.Topics.Add(tr);
        }
        return response;
    }

    public DeleteTopicsResponse HandleDeleteTopics(RequestContext context, DeleteTopicsRequest request)
    {
        short v = context.ApiVersion;
        var targets = v >= 6
            ? request.Topics.Select(t => (t.Name, t.TopicId)).ToList()
            : request.TopicNames.Select(n => ((string?)n, Uuid.Zero)).ToList();
        var response = new DeleteTopicsResponse();
        if (!options.DeleteTopicEnable)
        {
            foreach (var (name, id) in targets)
                response.Responses.Add(new DeleteTopicsResponse.DeletableTopicResult
                {
                    Name = name, TopicId = id, ErrorCode = (short)ErrorCode.TopicDeletionDisabled, ErrorMessage = "Topic deletion is disabled.",
                });
            return response;
        }
        // A topic named (or identified) twice is not deleted: one INVALID_REQUEST answer for it, as Kafka's controller gives.
        var duplicateNames = targets.Where(t => t.Item1 is not null).GroupBy(t => t.Item1!, StringComparer.Ordinal)
            .Where(g => g.Count() > 1).Select(g => g.Key).ToHashSet(StringComparer.Ordinal);
        var duplicateIds = targets.Where(t => t.Item1 is null).GroupBy(t => t.Item2).Where(g => g.Count() > 1).Select(g => g.Key).ToHashSet();
        if (duplicateNames.Count > 0 || duplicateIds.Count > 0)
        {
            targets = [.. targets.Where(t => t.Item1 is null ? !duplicateIds.Contains(t.Item2) : !duplicateNames.Contains(t.Item1))];
            foreach (var name in duplicateNames)
                response.Responses.Add(new() { Name = name, TopicId = Uuid.Zero, ErrorCode = (short)ErrorCode.InvalidRequest, ErrorMessage = "Duplicate topic name." });
            foreach (var id in duplicateIds)
                response.Responses.Add(new() { Name = null, TopicId = id, ErrorCode = (short)ErrorCode.InvalidRequest, ErrorMessage = "Duplicate topic id." });
        }
        foreach (var r in controller.DeleteTopics(targets))
            response.Responses.Add(new DeleteTopicsResponse.DeletableTopicResult
            {
                Name = r.Name, TopicId = r.TopicId, ErrorCode = (short)r.Error, ErrorMessage = r.Message,
            });
        return response;
    }

    public CreatePartitionsResponse HandleCreatePartitions(RequestContext context, CreatePartitionsRequest request)
    {
        var response = new CreatePartitionsResponse();
        var duplicates = request.Topics.GroupBy(t => t.Name).Where(g => g.Count() > 1).Select(g => g.Key).ToHashSet();
        var requests = new List<NewPartitions>();
        foreach (var t in request.Topics)
        {
            if (duplicates.Contains(t.Name)) continue;
            requests.Add(new NewPartitions(t.Name, t.Count, t.Assignments?.Select(a => (IReadOnlyList<int>)a.BrokerIds).ToList()));
        }
        foreach (var name in duplicates)
            response.Results.Add(new() { Name = name, ErrorCode = (short)ErrorCode.InvalidRequest, ErrorMessage = "Duplicate topic in request." });
        foreach (var r in controller.CreatePartitions(requests, request.ValidateOnly))
            response.Results.Add(new() { Name = r.Topic, ErrorCode = (short)r.Error, ErrorMessage = r.Message });
        return response;
    }
}
