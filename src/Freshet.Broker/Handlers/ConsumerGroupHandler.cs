using Freshet.Broker.Groups;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Handlers;

/// <summary>
/// The KIP-848 consumer group protocol: ConsumerGroupHeartbeat and ConsumerGroupDescribe.
/// ConsumerGroupHeartbeat v1 (SubscribedTopicRegex) is marked unstable in the schemas we generate
/// from, but Kafka 4.0 released it as the protocol's general-availability version, and librdkafka
/// 2.15 and later speak v1 only: it is advertised by default, as a Kafka 4 broker does.
/// </summary>
public sealed class ConsumerGroupHandler(RequestDispatcher dispatcher, GroupCoordinator groups)
{
    /// <summary>AclOperation codes a group allows without an authorizer: READ, DELETE, DESCRIBE.</summary>
    private const int AllGroupOperations = (1 << 3) | (1 << 6) | (1 << 8);

    public void Register()
    {
        // Not ordered: a member sends one heartbeat at a time, and the group's lock orders the rest.
        dispatcher.Register(ApiKey.ConsumerGroupHeartbeat, async (c, r) =>
            await groups.ConsumerGroupHeartbeatAsync((ConsumerGroupHeartbeatRequest)r, c.ApiVersion, c.ClientId ?? "", Host(c)).ConfigureAwait(false),
            latestReleased: true);
        dispatcher.Register(ApiKey.ConsumerGroupDescribe, (c, r) =>
        {
            var req = (ConsumerGroupDescribeRequest)r;
            var response = new ConsumerGroupDescribeResponse();
            foreach (var id in req.GroupIds)
            {
                var d = groups.DescribeConsumerGroup(id);
                if (req.IncludeAuthorizedOperations && d.ErrorCode == 0) d.AuthorizedOperations = AllGroupOperations;
                response.Groups.Add(d);
            }
            return new(response);
        });
    }

    /// <summary>The client's address as Kafka shows it in group descriptions ("/127.0.0.1").</summary>
    private static string Host(RequestContext c) =>
        c.ClientAddress is System.Net.IPEndPoint ip ? "/" + ip.Address : c.ClientAddress?.ToString() ?? "";
}
