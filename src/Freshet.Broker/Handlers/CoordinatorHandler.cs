using Freshet.Broker.Groups;
using Freshet.Metadata.Image;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Handlers;

/// <summary>
/// FindCoordinator: the broker leading the __consumer_offsets partition a group id hashes to
/// (creating the topic on first use). Transactional ids (key type 1) have no coordinator yet.
/// </summary>
public sealed class CoordinatorHandler(RequestDispatcher dispatcher, GroupCoordinator groups, MetadataCache cache)
{
    private const sbyte GroupKey = 0;
    private const sbyte TransactionKey = 1;

    /// <summary>Ordered: the first call may create __consumer_offsets (a controller commit), which runs off the network thread.</summary>
    public void Register() => dispatcher.Register(ApiKey.FindCoordinator, (c, r) =>
        cache.Image.Topic(GroupRecords.OffsetsTopic) is null
            ? new(Task.Run<IApiMessage?>(() => Handle(c, (FindCoordinatorRequest)r)))
            : new(Handle(c, (FindCoordinatorRequest)r)), ordered: true);

    public FindCoordinatorResponse Handle(RequestContext context, FindCoordinatorRequest request)
    {
        var response = new FindCoordinatorResponse();
        if (context.ApiVersion >= 4)
        {
            foreach (var key in request.CoordinatorKeys)
            {
                var (e, message, node) = Lookup(key, request.KeyType, context.ListenerName);
                response.Coordinators.Add(new FindCoordinatorResponse.Coordinator
                {
                    Key = key, ErrorCode = (short)e, ErrorMessage = message, NodeId = node?.Id ?? -1, Host = node?.Host ?? "", Port = node?.Port ?? -1,
                });
            }
            return response;
        }
        var (error, msg, n) = Lookup(request.Key, request.KeyType, context.ListenerName);
        response.ErrorCode = (short)error;
        response.ErrorMessage = msg;
        response.NodeId = n?.Id ?? -1;
        response.Host = n?.Host ?? "";
        response.Port = n?.Port ?? -1;
        return response;
    }

    private (ErrorCode Error, string? Message, (int Id, string Host, int Port)? Node) Lookup(string key, sbyte keyType, string listener)
    {
        if (keyType == TransactionKey)
            return (ErrorCode.CoordinatorNotAvailable, "This broker does not run a transaction coordinator yet.", null);
        if (keyType != GroupKey) return (ErrorCode.InvalidRequest, $"Unknown coordinator key type {keyType}", null);
        if (string.IsNullOrEmpty(key)) return (ErrorCode.InvalidRequest, "The group id must not be empty", null);
        var (error, nodeId) = groups.FindCoordinator(key);
        if (error != ErrorCode.None) return (error, error.DefaultMessage(), null);
        var image = cache.Image;
        if (!image.Brokers.TryGetValue(nodeId, out var broker) || broker.Fenced) return (ErrorCode.CoordinatorNotAvailable, null, null);
        var ep = broker.Endpoints.FirstOrDefault(e => e.Name == listener) ?? (broker.Endpoints.Length == 1 ? broker.Endpoints[0] : null);
        if (ep is null) return (ErrorCode.CoordinatorNotAvailable, $"The coordinator has no {listener} listener", null);
        return (ErrorCode.None, null, (nodeId, ep.Host, ep.Port));
    }
}
