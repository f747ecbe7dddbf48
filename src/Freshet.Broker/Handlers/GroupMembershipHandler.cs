using Freshet.Broker.Groups;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Handlers;

/// <summary>The classic group protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup.</summary>
public sealed class GroupMembershipHandler(RequestDispatcher dispatcher, GroupCoordinator groups)
{
    public void Register()
    {
        // Join and sync wait for the rest of the group; they do not hold up the connection's other requests.
        dispatcher.Register(ApiKey.JoinGroup, async (c, r) => await groups.JoinGroupAsync((JoinGroupRequest)r, c.ApiVersion, c.ClientId ?? "", Host(c)).ConfigureAwait(false));
        dispatcher.Register(ApiKey.SyncGroup, async (c, r) => await groups.SyncGroupAsync((SyncGroupRequest)r, c.ApiVersion).ConfigureAwait(false));
        dispatcher.Register(ApiKey.Heartbeat, (c, r) => new(new HeartbeatResponse { ErrorCode = (short)groups.Heartbeat((HeartbeatRequest)r, c.ApiVersion) }));
        dispatcher.Register(ApiKey.LeaveGroup, (c, r) => new(groups.LeaveGroup((LeaveGroupRequest)r, c.ApiVersion)));
    }

    /// <summary>The client's address as Kafka shows it in group descriptions ("/127.0.0.1").</summary>
    private static string Host(RequestContext c) =>
        c.ClientAddress is System.Net.IPEndPoint ip ? "/" + ip.Address : c.ClientAddress?.ToString() ?? "";
}
