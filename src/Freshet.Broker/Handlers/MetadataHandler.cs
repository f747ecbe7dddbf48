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
        response.ControllerId = ControllerIdAmong(response.Brokers.Select(b => b.NodeId));

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

    /// <summary>
    /// The "controller" a client is told of (Metadata and DescribeCluster on a broker listener). A
    /// KRaft cluster's clients cannot reach the controllers, so Kafka names some live broker there (one
    /// that forwards controller requests), never a node missing from the broker list. Freshet names the
    /// active controller when it is one of those brokers (combined mode), else this node, else the
    /// first listed broker; -1 when none is listed.
    /// </summary>
    private int ControllerIdAmong(IEnumerable<int> listed)
    {
        var ids = listed.ToList();
        if (options.ActiveControllerId() is { } active && ids.Contains(active)) return active;
        if (ids.Contains(options.NodeId)) return options.NodeId;
        return ids.Count > 0 ? ids.Min() : -1;
    }

    /// <summary>
    /// DescribeCluster on a broker listener: the brokers (EndpointType 1). A request for the
    /// controllers (2) belongs on a controller listener: MISMATCHED_ENDPOINT_TYPE (INVALID_REQUEST at
    /// v0), as Kafka answers; an unknown type UNSUPPORTED_ENDPOINT_TYPE.
    /// </summary>
    public DescribeClusterResponse HandleDescribeCluster(RequestContext context, DescribeClusterRequest request)
    {
        var image = cache.Image;
        var response = new DescribeClusterResponse
        {
            ClusterId = image.ClusterId,
            EndpointType = request.EndpointType,
            ClusterAuthorizedOperations = request.IncludeClusterAuthorizedOperations ? AllClusterOperations : NotRequested,
        };
        if (EndpointTypeError(context, request, expected: BrokerEndpoints, response)) return response;
        foreach (var b in image.ActiveBrokers)
        {
            var ep = EndpointFor(b, context.ListenerName);
            if (ep is null) continue;
            response.Brokers.Add(new DescribeClusterResponse.DescribeClusterBroker { BrokerId = b.Id, Host = ep.Host, Port = ep.Port, Rack = b.Rack });
        }
        response.ControllerId = ControllerIdAmong(response.Brokers.Select(b => b.BrokerId));
        return response;
    }

    private const sbyte BrokerEndpoints = 1, ControllerEndpoints = 2;

    /// <summary>Kafka's endpoint-type checks (AuthHelper.computeDescribeClusterResponse); true when the response carries the error.</summary>
    private static bool EndpointTypeError(RequestContext context, DescribeClusterRequest request, sbyte expected, DescribeClusterResponse response)
    {
        bool v0 = context.ApiVersion == 0;
        if (request.EndpointType is not (BrokerEndpoints or ControllerEndpoints))
        {
            response.ErrorCode = (short)(v0 ? ErrorCode.InvalidRequest : ErrorCode.UnsupportedEndpointType);
            response.ErrorMessage = $"Unsupported endpoint type {request.EndpointType}";
            return true;
        }
        if (request.EndpointType != expected)
        {
            response.ErrorCode = (short)(v0 ? ErrorCode.InvalidRequest : ErrorCode.MismatchedEndpointType);
            response.ErrorMessage = $"The request was sent to an endpoint of type {Name(expected)}, but we wanted an endpoint of type {Name(request.EndpointType)}";
            return true;
        }
        return false;

        static string Name(sbyte t) => t == BrokerEndpoints ? "BROKER" : "CONTROLLER";
    }

    /// <summary>
    /// DescribeCluster on a controller listener (Kafka's ControllerApis): the controllers (the
    /// quorum's voters at their controller-listener addresses) and the active controller.
    /// </summary>
    public DescribeClusterResponse HandleDescribeControllers(RequestContext context, DescribeClusterRequest request)
    {
        var response = new DescribeClusterResponse
        {
            ClusterId = cache.Image.ClusterId,
            EndpointType = request.EndpointType,
            ClusterAuthorizedOperations = request.IncludeClusterAuthorizedOperations ? AllClusterOperations : NotRequested,
        };
        if (EndpointTypeError(context, request, expected: ControllerEndpoints, response)) return response;
        foreach (var (id, host, port) in options.Controllers)
            response.Brokers.Add(new DescribeClusterResponse.DescribeClusterBroker { BrokerId = id, Host = host, Port = port, Rack = null });
        int? leader = options.ActiveControllerId();
        response.ControllerId = leader is { } l && options.Controllers.Any(c => c.Id == l) ? l : -1;
        return response;
    }

    /// <summary>Registers DescribeCluster for the controller listener.</summary>
    public void RegisterControllerListener(RequestDispatcher controllerListener) =>
        controllerListener.Register(ApiKey.DescribeCluster, (c, r) => new(HandleDescribeControllers(c, (DescribeClusterRequest)r)));
}
