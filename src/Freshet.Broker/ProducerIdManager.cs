using Freshet.Metadata.Controller;

namespace Freshet.Broker;

/// <summary>
/// Hands out producer ids for InitProducerId from blocks the controller allocates durably
/// (AllocateProducerIds / ProducerIdsRecord), so ids are never reused across restarts.
/// </summary>
public sealed class ProducerIdManager(Lifecycle.ControllerOperations controller, int brokerId, Func<long> brokerEpoch)
{
    private readonly Lock _lock = new();
    private long _next;
    private long _end;

    public long NextId()
    {
        lock (_lock)
        {
            if (_next >= _end)
            {
                var block = controller.AllocateProducerIds(brokerId, brokerEpoch());
                _next = block.FirstId;
                _end = block.NextBlockFirstId;
            }
            return _next++;
        }
    }
}
