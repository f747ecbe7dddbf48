using Freshet.Metadata.Controller;
using Freshet.Metadata.Image;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Handlers;

/// <summary>Metadata and DescribeCluster: brokers, topics, partition leaders; auto-creates topics as Kafka does.</summary>
public sealed class MetadataHandler(RequestDispatcher dispatcher, BrokerOptions options, MetadataCache cache, Lifecycle.ControllerOperations controller)
{
    /// <summary>AclOperation codes a topic allows when there is no authorizer: READ..DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.</summary>
    private const int AllTopicOperations = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

    /// <summary>Cluster operations: CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE.</summary>
    private const int AllClusterOperations = (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

    private const int NotRequested = int.MinValue;

    public void Register()
    {
        dispatcher.Register(ApiKey.Metadata, (c, r) => HandleAsync(c, (MetadataRequest)r), ordered: true);
        dispatcher.Register(ApiKey.DescribeCluster, (c, r) => new(HandleDescribeCluster(c, (DescribeClusterRequest)r)));
    }

    /// <summary>Answers at once unless a topic must be auto-created: that commit (an fsync) runs off the network thread.</summary>
    public ValueTask<IApiMessage?> HandleAsync(RequestContext context, MetadataRequest request)
    {
        if (NeedsAutoCreate(context, request)) return new(Task.Run<IApiMessage?>(() => Handle(context, request)));
        return new(Handle(context, request));
    }

    private bool NeedsAutoCreate(RequestContext context, MetadataRequest request)
    {
        short v = context.ApiVersion;
        if (request.Topics is null || v == 0 && request.Topics.Count == 0) return false;
        if (!options.AutoCreateTopicsEnable || v >= 4 && !request.AllowAutoTopicCreation) return false;
        var image = cache.Image;
        foreach (var t in request.Topics)
            if (t.Name is not null && image.Topic(t.Name) is null && TopicNames.Validate(t.Name) is null) return true;
        return false;
    }

    public MetadataResponse Handle(RequestContext context, MetadataRequest request)
    {
        short v = context.ApiVersion;
        var image = cache.Image;
        var response = new MetadataResponse
        {
            ClusterId = image.ClusterId,
            ControllerId = options.NodeId,
            ClusterAuthorizedOperations = v is >= 8 and <= 10 && request.IncludeClusterAuthorizedOperations ? AllClusterOperations : NotRequested,
        };
        foreach (var b in image.ActiveBrokers)
        {
            var ep = EndpointFor(b, context.ListenerName);
            if (ep is null) continue;
            response.Brokers.Add(new MetadataResponse.MetadataResponseBroker { NodeId = b.Id, Host = ep.Host, Port = ep.Port, Rack = b.Rack });
        }
        // Every broker fenced in this node's image (its own session expired while it kept serving, say). Kafka
        // would list none, which librdkafka takes for a partial answer and gives up on; the broker answering
        // is reachable, so it lists itself (its partitions' leaders are still reported unavailable).
        if (response.Brokers.Count == 0 && SelfEndpoint(context.ListenerName) is { } self)
            response.Brokers.Add(new MetadataResponse.MetadataResponseBroker { NodeId = options.NodeId, Host = self.Host, Port = self.Port, Rack = options.Rack });

        bool all = request.Topics is null || v == 0 && request.Topics.Count == 0;
        bool includeOps = v >= 8 && request.IncludeTopicAuthorizedOperations;
        if (all)
        {
            foreach (var t in image.TopicsByName.Values.OrderBy(t => t.Name, StringComparer.Ordinal))
                response.Topics.Add(Describe(image, t, context.ListenerName, includeOps));
            return response;
        }

        bool allowAutoCreate = (v < 4 || request.AllowAutoTopicCreation) && options.AutoCreateTopicsEnable;
        var toCreate = new List<string>();
        foreach (var rt in request.Topics!)
        {
            if (rt.Name is null)
            {
                var byId = image.Topic(rt.TopicId);
                response.Topics.Add(byId is not null
                    ? Describe(image, byId, context.ListenerName, includeOps)
                    : new MetadataResponse.MetadataResponseTopic { ErrorCode = (short)ErrorCode.UnknownTopicId, Name = null, TopicId = rt.TopicId });
                continue;
            }
            if (image.Topic(rt.Name) is { } t)
            {
                response.Topics.Add(Describe(image, t, context.ListenerName, includeOps));
                continue;
            }
            if (TopicNames.Validate(rt.Name) is not null)
            {
                response.Topics.Add(new MetadataResponse.MetadataResponseTopic { ErrorCode = (short)ErrorCode.InvalidTopicException, Name = rt.Name });
                continue;
            }
            if (allowAutoCreate) toCreate.Add(rt.Name);
            else response.Topics.Add(new MetadataResponse.MetadataResponseTopic { ErrorCode = (short)ErrorCode.UnknownTopicOrPartition, Name = rt.Name });
        }
        if (toCreate.Count > 0)
        {
            var results = controller.CreateTopics(
                toCreate.Distinct(StringComparer.Ordinal).Select(n => new NewTopic(n, -1, -1, null, new Dictionary<string, string?>())).ToList(),
                validateOnly: false);
            image = cache.Image;
            foreach (var name in toCreate.Distinct(StringComparer.Ordinal))
            {
                var created = image.Topic(name);
                var error = results.FirstOrDefault(r => r.Name == name)?.Error ?? ErrorCode.None;
                response.Topics.Add(created is not null
                    ? Describe(image, created, context.ListenerName, includeOps)
                    : new MetadataResponse.MetadataResponseTopic
                    {
                        ErrorCode = (short)(error == ErrorCode.None ? ErrorCode.LeaderNotAvailable : error),
                        Name = name,
                    });
            }
        }
        return response;
    }

    private BrokerEndpoint? SelfEndpoint(string listener) =>
        options.AdvertisedListeners.FirstOrDefault(e => e.Name == listener) ?? (options.AdvertisedListeners.Count == 1 ? options.AdvertisedListeners[0] : null);

    private static BrokerEndpoint? EndpointFor(BrokerRegistration b, string listener) =>
        b.Endpoints.FirstOrDefault(e => e.Name == listener) ?? (b.Endpoints.Length == 1 ? b.Endpoints[0] : null);

    private static MetadataResponse.MetadataResponseTopic Describe(MetadataImage image, TopicImage t, string listener, bool includeOps)
    {
        var topic = new MetadataResponse.MetadataResponseTopic
        {
            Name = t.Name,
            TopicId = t.Id,
            IsInternal = TopicNames.IsInternal(t.Name),
            TopicAuthorizedOperations = includeOps ? AllTopicOperations : NotRequested,
        };
        foreach (var (index, p) in t.Partitions)
        {
            var offline = p.Replicas.Where(r => !image.Brokers.TryGetValue(r, out var b) || b.Fenced).ToList();
            ErrorCode error = ErrorCode.None;
            if (!p.HasLeader || !image.Brokers.TryGetValue(p.Leader, out var leader) || leader.Fenced) error = ErrorCode.LeaderNotAvailable;
            else if (EndpointFor(leader, listener) is null) error = ErrorCode.ListenerNotFound;
            topic.Partitions.Add(new MetadataResponse.MetadataResponsePartition
            {
                ErrorCode = (short)error,
                PartitionIndex = index,
                LeaderId = error == ErrorCode.None ? p.Leader : -1,
                LeaderEpoch = p.LeaderEpoch,
                ReplicaNodes = [.. p.Replicas],
                IsrNodes = [.. p.Isr],
                OfflineReplicas = offline,
            });
        }
        return topic;
    }

    public DescribeClusterResponse HandleDescribeCluster(RequestContext context, DescribeClusterRequest request)
    {
        var image = cache.Image;
        var response = new DescribeClusterResponse
        {
            ClusterId = image.ClusterId,
            ControllerId = options.NodeId,
            EndpointType = request.EndpointType,
            ClusterAuthorizedOperations = request.IncludeClusterAuthorizedOperations ? AllClusterOperations : NotRequested,
        };
        // EndpointType 1 = brokers, 2 = controllers; in combined mode this node is both.
        if (request.EndpointType is not (1 or 2))
        {
            response.ErrorCode = (short)ErrorCode.UnsupportedEndpointType;
            response.ErrorMessage = $"Unsupported endpoint type {request.EndpointType}";
            return response;
        }
        foreach (var b in image.ActiveBrokers)
        {
            var ep = EndpointFor(b, context.ListenerName);
            if (ep is null) continue;
            response.Brokers.Add(new DescribeClusterResponse.DescribeClusterBroker { BrokerId = b.Id, Host = ep.Host, Port = ep.Port, Rack = b.Rack });
        }
        return response;
    }
}
