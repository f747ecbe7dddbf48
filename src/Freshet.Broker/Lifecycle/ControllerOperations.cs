using Freshet.Metadata.Controller;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Lifecycle;

/// <summary>
/// What brokers ask the controller for on their own behalf (creating a topic a client named,
/// __consumer_offsets, producer id blocks): carried out here when this node's controller is the
/// active one, otherwise sent to the active controller through the channel.
/// </summary>
public sealed class ControllerOperations(QuorumController local, IControllerChannel? remote, TimeSpan timeout)
{
    public QuorumController Local => local;

    public IReadOnlyList<CreateTopicResult> CreateTopics(IReadOnlyList<NewTopic> topics, bool validateOnly)
    {
        if (local.IsActive || remote is null)
        {
            try { return local.CreateTopics(topics, validateOnly); }
            catch (NotControllerException) when (remote is not null) { }
        }
        var request = new CreateTopicsRequest
        {
            ValidateOnly = validateOnly,
            TimeoutMs = (int)timeout.TotalMilliseconds,
            Topics = [.. topics.Select(t => new CreateTopicsRequest.CreatableTopic
            {
                Name = t.Name,
                NumPartitions = t.NumPartitions,
                ReplicationFactor = t.ReplicationFactor,
                Assignments = t.Assignments is null ? [] : [.. t.Assignments.Select(a => new CreateTopicsRequest.CreatableReplicaAssignment { PartitionIndex = a.Key, BrokerIds = [.. a.Value] })],
                Configs = [.. t.Configs.Select(c => new CreateTopicsRequest.CreatableTopicConfig { Name = c.Key, Value = c.Value })],
            })],
        };
        using var cts = new CancellationTokenSource(timeout);
        var response = remote.SendAsync<CreateTopicsResponse>(request, 7,
            r => r.Topics.Any(t => t.ErrorCode == (short)ErrorCode.NotController) ? ErrorCode.NotController : ErrorCode.None, cts.Token).GetAwaiter().GetResult();
        return [.. response.Topics.Select(t => new CreateTopicResult(t.Name, (ErrorCode)t.ErrorCode, t.ErrorMessage, t.TopicId, t.NumPartitions, t.ReplicationFactor))];
    }

    public ProducerIdBlock AllocateProducerIds(int brokerId, long brokerEpoch)
    {
        if (local.IsActive || remote is null)
        {
            try { return local.AllocateProducerIds(brokerId, brokerEpoch); }
            catch (NotControllerException) when (remote is not null) { }
        }
        using var cts = new CancellationTokenSource(timeout);
        var r = remote.SendAsync<AllocateProducerIdsResponse>(new AllocateProducerIdsRequest { BrokerId = brokerId, BrokerEpoch = brokerEpoch }, 0,
            x => (ErrorCode)x.ErrorCode, cts.Token).GetAwaiter().GetResult();
        if ((ErrorCode)r.ErrorCode != ErrorCode.None) throw new IOException($"AllocateProducerIds failed: {((ErrorCode)r.ErrorCode).KafkaName()}");
        return new ProducerIdBlock(brokerId, r.ProducerIdStart, r.ProducerIdLen);
    }

    /// <summary>
    /// Wraps an admin API's local handler: it runs here when this node's controller is active
    /// (or there is no other), otherwise the request goes as it is to the active controller and
    /// its response comes back as it is (Kafka's broker-to-controller forwarding).
    /// </summary>
    public ApiHandler Forwarding(ApiHandler localHandler, Func<IApiMessage, ErrorCode> notController) => async (context, request) =>
    {
        if (local.IsActive || remote is null)
        {
            try
            {
                var response = await localHandler(context, request).ConfigureAwait(false);
                if (response is null || remote is null || notController(response) != ErrorCode.NotController) return response;
            }
            catch (NotControllerException) when (remote is not null)
            {
                // Leadership moved while the operation ran: the active controller decides now.
            }
        }
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(context.ConnectionClosed);
        cts.CancelAfter(timeout);
        return await ForwardAsync(request, context.ApiVersion, notController, cts.Token).ConfigureAwait(false);
    };

    private Task<IApiMessage> ForwardAsync(IApiMessage request, short version, Func<IApiMessage, ErrorCode> notController, CancellationToken ct) => request switch
    {
        CreateTopicsRequest r => Send(r, version, notController, ct),
        DeleteTopicsRequest r => Send(r, version, notController, ct),
        CreatePartitionsRequest r => Send(r, version, notController, ct),
        IncrementalAlterConfigsRequest r => Send(r, version, notController, ct),
        AlterConfigsRequest r => Send(r, version, notController, ct),
        ElectLeadersRequest r => Send(r, version, notController, ct),
        AlterPartitionReassignmentsRequest r => Send(r, version, notController, ct),
        ListPartitionReassignmentsRequest r => Send(r, version, notController, ct),
        DescribeQuorumRequest r => Send(r, version, notController, ct),
        _ => throw new InvalidOperationException($"{request.GetType().Name} is not forwarded to the controller"),
    };

    private async Task<IApiMessage> Send<T>(IApiRequest<T> request, short version, Func<IApiMessage, ErrorCode> notController, CancellationToken ct)
        where T : IApiMessage, new() =>
        await remote!.SendAsync(request, version, r => notController(r), ct).ConfigureAwait(false);
}
