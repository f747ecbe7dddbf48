using Freshet.Metadata.Controller;
using Freshet.Metadata.Image;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Handlers;

/// <summary>
/// The APIs brokers call on the active controller (served on the controller listener):
/// BrokerRegistration, BrokerHeartbeat and AlterPartition. A controller that is not the active
/// one answers NOT_CONTROLLER so the broker looks for the one that is.
/// </summary>
public sealed class ControllerApisHandler(RequestDispatcher dispatcher, QuorumController controller, Func<bool> isActive)
{
    /// <summary>Each call may commit to the metadata log (an fsync, a quorum round trip): off the network thread.</summary>
    public void Register()
    {
        dispatcher.Register(ApiKey.BrokerRegistration, (_, r) => new(Task.Run<IApiMessage?>(() =>
            OrNotController(() => Handle((BrokerRegistrationRequest)r), () => new BrokerRegistrationResponse { ErrorCode = (short)ErrorCode.NotController }))));
        dispatcher.Register(ApiKey.BrokerHeartbeat, (_, r) => new(Task.Run<IApiMessage?>(() =>
            OrNotController(() => Handle((BrokerHeartbeatRequest)r), () => new BrokerHeartbeatResponse { ErrorCode = (short)ErrorCode.NotController }))));
        dispatcher.Register(ApiKey.AlterPartition, (c, r) => new(Task.Run<IApiMessage?>(() =>
            OrNotController(() => Handle(c, (AlterPartitionRequest)r), () => new AlterPartitionResponse { ErrorCode = (short)ErrorCode.NotController }))));
    }

    /// <summary>Leadership of the quorum moved while the operation ran: NOT_CONTROLLER, and the broker asks the next one.</summary>
    private static IApiMessage OrNotController(Func<IApiMessage> handle, Func<IApiMessage> notController)
    {
        try { return handle(); }
        catch (NotControllerException) { return notController(); }
    }

    public BrokerRegistrationResponse Handle(BrokerRegistrationRequest request)
    {
        if (!isActive()) return new BrokerRegistrationResponse { ErrorCode = (short)ErrorCode.NotController };
        var outcome = controller.RegisterBroker(request.BrokerId, request.ClusterId, request.IncarnationId,
            [.. request.Listeners.Select(l => new BrokerEndpoint(l.Name, l.Host, l.Port, l.SecurityProtocol))],
            string.IsNullOrEmpty(request.Rack) ? null : request.Rack, request.PreviousBrokerEpoch);
        return new BrokerRegistrationResponse { ErrorCode = (short)outcome.Error, BrokerEpoch = outcome.BrokerEpoch };
    }

    public BrokerHeartbeatResponse Handle(BrokerHeartbeatRequest request)
    {
        if (!isActive()) return new BrokerHeartbeatResponse { ErrorCode = (short)ErrorCode.NotController };
        var o = controller.Heartbeat(request.BrokerId, request.BrokerEpoch, request.CurrentMetadataOffset, request.WantFence, request.WantShutDown,
            request.OfflineLogDirs?.Count ?? 0);
        return new BrokerHeartbeatResponse { ErrorCode = (short)o.Error, IsCaughtUp = o.IsCaughtUp, IsFenced = o.IsFenced, ShouldShutDown = o.ShouldShutDown };
    }

    public AlterPartitionResponse Handle(RequestContext context, AlterPartitionRequest request)
    {
        if (!isActive()) return new AlterPartitionResponse { ErrorCode = (short)ErrorCode.NotController };
        var image = controller.Image;
        if (!image.Brokers.TryGetValue(request.BrokerId, out var sender) || (request.BrokerEpoch >= 0 && sender.Epoch != request.BrokerEpoch))
            return new AlterPartitionResponse { ErrorCode = (short)ErrorCode.StaleBrokerEpoch };
        var response = new AlterPartitionResponse();
        foreach (var topic in request.Topics)
        {
            // v0-1 name topics, v2+ by id.
            Uuid id = context.ApiVersion >= 2 ? topic.TopicId : image.Topic(topic.TopicName)?.Id ?? Uuid.Zero;
            var outTopic = new AlterPartitionResponse.TopicData { TopicName = context.ApiVersion >= 2 ? "" : topic.TopicName, TopicId = id };
            foreach (var p in topic.Partitions)
            {
                // v3+ carries each new ISR member's broker epoch; before that only ids (epochs unchecked).
                IReadOnlyList<IsrMember> isr = context.ApiVersion >= 3
                    ? [.. p.NewIsrWithEpochs.Select(b => new IsrMember(b.BrokerId, b.BrokerEpoch))]
                    : [.. p.NewIsr.Select(b => new IsrMember(b, -1))];
                var o = id == Uuid.Zero
                    ? new AlterPartitionOutcome(context.ApiVersion >= 2 ? ErrorCode.UnknownTopicId : ErrorCode.UnknownTopicOrPartition, null)
                    : controller.AlterPartition(request.BrokerId, request.BrokerEpoch, id, p.PartitionIndex, p.LeaderEpoch, p.PartitionEpoch, isr);
                var outP = new AlterPartitionResponse.PartitionData { PartitionIndex = p.PartitionIndex, ErrorCode = (short)o.Error };
                if (o.Registration is { } reg)
                {
                    outP.LeaderId = reg.Leader;
                    outP.LeaderEpoch = reg.LeaderEpoch;
                    outP.Isr = [.. reg.Isr];
                    outP.PartitionEpoch = reg.PartitionEpoch;
                }
                outTopic.Partitions.Add(outP);
            }
            response.Topics.Add(outTopic);
        }
        return response;
    }
}
