using Freshet.Metadata.Controller;
using Freshet.Metadata.Raft;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Handlers;

/// <summary>
/// The metadata quorum's APIs on the controller listener: Vote, BeginQuorumEpoch,
/// EndQuorumEpoch, Fetch and FetchSnapshot of <c>__cluster_metadata</c> (voters and observers
/// replicating the log) and DescribeQuorum, all answered by the Raft node; and
/// AllocateProducerIds, answered by the active controller.
/// </summary>
public sealed class QuorumApisHandler(RequestDispatcher dispatcher, RaftDriver raft, QuorumController controller)
{
    public void Register()
    {
        foreach (var key in new[] { ApiKey.Vote, ApiKey.BeginQuorumEpoch, ApiKey.EndQuorumEpoch, ApiKey.Fetch, ApiKey.FetchSnapshot, ApiKey.DescribeQuorum })
            dispatcher.Register(key, (_, r) => new(ToRaftAsync(r)));
        dispatcher.Register(ApiKey.AllocateProducerIds, (_, r) => new(Task.Run<IApiMessage?>(() => Allocate((AllocateProducerIdsRequest)r))));
    }

    private async Task<IApiMessage?> ToRaftAsync(IApiMessage request) => (IApiMessage)await raft.HandleRequestAsync(-1, request).ConfigureAwait(false);

    private AllocateProducerIdsResponse Allocate(AllocateProducerIdsRequest request)
    {
        if (!controller.IsActive) return new AllocateProducerIdsResponse { ErrorCode = (short)ErrorCode.NotController };
        var image = controller.Image;
        if (!image.Brokers.TryGetValue(request.BrokerId, out var b) || b.Epoch != request.BrokerEpoch)
            return new AllocateProducerIdsResponse { ErrorCode = (short)ErrorCode.StaleBrokerEpoch };
        try
        {
            var block = controller.AllocateProducerIds(request.BrokerId, request.BrokerEpoch);
            return new AllocateProducerIdsResponse { ProducerIdStart = block.FirstId, ProducerIdLen = block.Size };
        }
        catch (NotControllerException)
        {
            return new AllocateProducerIdsResponse { ErrorCode = (short)ErrorCode.NotController };
        }
    }
}
