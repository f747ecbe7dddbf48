using Freshet.Broker.Replication;
using Freshet.Protocol;
using Freshet.Protocol.Messages;

namespace Freshet.Broker.Lifecycle;

/// <summary>
/// ISR changes to the active controller: one AlterPartition request (v3, topic ids and broker
/// epochs) per proposal, through the controller channel, which finds the active controller and
/// retries while there is none.
/// </summary>
public sealed class ControllerAlterPartitionSender(IControllerChannel controller, int brokerId, Func<long> brokerEpoch) : IAlterPartitionSender
{
    public async Task<AlterPartitionResult> SendAsync(AlterPartitionProposal proposal, CancellationToken ct)
    {
        var request = new AlterPartitionRequest
        {
            BrokerId = brokerId,
            BrokerEpoch = brokerEpoch(),
            Topics =
            [
                new AlterPartitionRequest.TopicData
                {
                    TopicId = proposal.TopicId,
                    Partitions =
                    [
                        new AlterPartitionRequest.PartitionData
                        {
                            PartitionIndex = proposal.TopicPartition.Partition,
                            LeaderEpoch = proposal.LeaderEpoch,
                            PartitionEpoch = proposal.PartitionEpoch,
                            NewIsrWithEpochs = [.. proposal.NewIsr.Select(m => new AlterPartitionRequest.BrokerState { BrokerId = m.BrokerId, BrokerEpoch = m.BrokerEpoch })],
                        },
                    ],
                },
            ],
        };
        var response = await controller.SendAsync<AlterPartitionResponse>(request, 3, r => (ErrorCode)r.ErrorCode, ct).ConfigureAwait(false);
        if ((ErrorCode)response.ErrorCode != ErrorCode.None) return AlterPartitionResult.Failed((ErrorCode)response.ErrorCode);
        var p = response.Topics.SelectMany(t => t.Partitions).FirstOrDefault(x => x.PartitionIndex == proposal.TopicPartition.Partition);
        if (p is null) return AlterPartitionResult.Failed(ErrorCode.UnknownServerError);
        if ((ErrorCode)p.ErrorCode != ErrorCode.None) return AlterPartitionResult.Failed((ErrorCode)p.ErrorCode);
        return new AlterPartitionResult(ErrorCode.None, p.LeaderId, p.LeaderEpoch, [.. p.Isr], p.PartitionEpoch);
    }
}
