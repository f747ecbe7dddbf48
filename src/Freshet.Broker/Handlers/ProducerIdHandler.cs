using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Handlers;

/// <summary>
/// InitProducerId for idempotent producers (no transactional id): a fresh producer id at epoch 0,
/// as Kafka gives one whether or not the producer sends its previous id (KIP-360). Transactional
/// ids need the transaction coordinator, which this broker does not run yet: NOT_COORDINATOR.
/// </summary>
public sealed class ProducerIdHandler(RequestDispatcher dispatcher, ProducerIdManager producerIds)
{
    /// <summary>A new block of ids is committed by the controller (an fsync): off the network thread.</summary>
    public void Register() =>
        dispatcher.Register(ApiKey.InitProducerId, (c, r) => new(Task.Run<IApiMessage?>(() => Handle(c, (InitProducerIdRequest)r))), ordered: true);

    public InitProducerIdResponse Handle(RequestContext context, InitProducerIdRequest request)
    {
        if (request.TransactionalId is not null)
            return new InitProducerIdResponse { ErrorCode = (short)ErrorCode.NotCoordinator, ProducerId = -1, ProducerEpoch = -1 };
        return new InitProducerIdResponse { ProducerId = producerIds.NextId(), ProducerEpoch = 0 };
    }
}
