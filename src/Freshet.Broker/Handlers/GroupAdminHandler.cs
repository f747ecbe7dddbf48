using Freshet.Broker.Groups;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Handlers;

/// <summary>ListGroups, DescribeGroups and DeleteGroups.</summary>
public sealed class GroupAdminHandler(RequestDispatcher dispatcher, GroupCoordinator groups)
{
    /// <summary>AclOperation codes a group allows without an authorizer: READ, DELETE, DESCRIBE.</summary>
    private const int AllGroupOperations = (1 << 3) | (1 << 6) | (1 << 8);

    public void Register()
    {
        dispatcher.Register(ApiKey.ListGroups, (c, r) =>
        {
            var req = (ListGroupsRequest)r;
            var response = new ListGroupsResponse();
            response.Groups.AddRange(groups.ListGroups(c.ApiVersion >= 4 ? req.StatesFilter : null, c.ApiVersion >= 5 ? req.TypesFilter : null));
            return new(response);
        });
        dispatcher.Register(ApiKey.DescribeGroups, (c, r) =>
        {
            var req = (DescribeGroupsRequest)r;
            var response = new DescribeGroupsResponse();
            foreach (var id in req.Groups)
            {
                var d = groups.DescribeGroup(id);
                if (c.ApiVersion >= 3 && req.IncludeAuthorizedOperations) d.AuthorizedOperations = AllGroupOperations;
                response.Groups.Add(d);
            }
            return new(response);
        });
        dispatcher.Register(ApiKey.DeleteGroups, async (c, r) =>
        {
            var req = (DeleteGroupsRequest)r;
            var response = new DeleteGroupsResponse();
            foreach (var id in req.GroupsNames)
                response.Results.Add(new() { GroupId = id, ErrorCode = (short)await groups.DeleteGroupAsync(id).ConfigureAwait(false) });
            return response;
        });
    }
}
