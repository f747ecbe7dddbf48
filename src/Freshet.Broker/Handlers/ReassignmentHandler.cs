using Freshet.Metadata.Controller;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Handlers;

/// <summary>
/// Operators' leadership and placement APIs: ElectLeaders (preferred or unclean),
/// AlterPartitionReassignments and ListPartitionReassignments, carried out by the controller.
/// </summary>
public sealed class ReassignmentHandler(RequestDispatcher dispatcher, QuorumController controller)
{
    /// <summary>Each may commit to the metadata log: off the network thread, one at a time per connection.</summary>
    public void Register()
    {
        dispatcher.Register(ApiKey.ElectLeaders, (c, r) => new(Task.Run<IApiMessage?>(() => Handle(c, (ElectLeadersRequest)r))), ordered: true);
        dispatcher.Register(ApiKey.AlterPartitionReassignments, (_, r) => new(Task.Run<IApiMessage?>(() => Handle((AlterPartitionReassignmentsRequest)r))), ordered: true);
        dispatcher.Register(ApiKey.ListPartitionReassignments, (_, r) => new(Handle((ListPartitionReassignmentsRequest)r)));
    }

    public ElectLeadersResponse Handle(RequestContext context, ElectLeadersRequest request)
    {
        // v0 has no election type: preferred.
        var type = context.ApiVersion >= 1 ? (ElectionType)request.ElectionType : ElectionType.Preferred;
        var response = new ElectLeadersResponse();
        if (type is not (ElectionType.Preferred or ElectionType.Unclean))
        {
            response.ErrorCode = (short)ErrorCode.InvalidRequest;
            return response;
        }
        var partitions = request.TopicPartitions?.SelectMany(t => t.Partitions.Select(p => (t.Topic, p))).ToList();
        foreach (var group in controller.ElectLeaders(type, partitions).GroupBy(r => r.Topic))
        {
            response.ReplicaElectionResults.Add(new ElectLeadersResponse.ReplicaElectionResult
            {
                Topic = group.Key,
                PartitionResult = [.. group.Select(r => new ElectLeadersResponse.PartitionResult
                {
                    PartitionId = r.Partition, ErrorCode = (short)r.Error, ErrorMessage = r.Message,
                })],
            });
        }
        return response;
    }

    public AlterPartitionReassignmentsResponse Handle(AlterPartitionReassignmentsRequest request)
    {
        var asked = request.Topics.SelectMany(t => t.Partitions.Select(p => (t.Name, p.PartitionIndex, (IReadOnlyList<int>?)p.Replicas))).ToList();
        var response = new AlterPartitionReassignmentsResponse { ErrorMessage = null };
        foreach (var group in controller.AlterPartitionReassignments(asked).GroupBy(r => r.Topic))
        {
            response.Responses.Add(new AlterPartitionReassignmentsResponse.ReassignableTopicResponse
            {
                Name = group.Key,
                Partitions = [.. group.Select(r => new AlterPartitionReassignmentsResponse.ReassignablePartitionResponse
                {
                    PartitionIndex = r.Partition, ErrorCode = (short)r.Error, ErrorMessage = r.Message,
                })],
            });
        }
        return response;
    }

    public ListPartitionReassignmentsResponse Handle(ListPartitionReassignmentsRequest request)
    {
        var asked = request.Topics?.SelectMany(t => t.PartitionIndexes.Select(p => (t.Name, p))).ToList();
        var response = new ListPartitionReassignmentsResponse { ErrorMessage = null };
        foreach (var group in controller.ListPartitionReassignments(asked).GroupBy(r => r.Topic))
        {
            response.Topics.Add(new ListPartitionReassignmentsResponse.OngoingTopicReassignment
            {
                Name = group.Key,
                Partitions = [.. group.Select(r => new ListPartitionReassignmentsResponse.OngoingPartitionReassignment
                {
                    PartitionIndex = r.Partition, Replicas = [.. r.Replicas], AddingReplicas = [.. r.Adding], RemovingReplicas = [.. r.Removing],
                })],
            });
        }
        return response;
    }
}
