using System.Runtime.InteropServices;
using Freshet.Broker.Replication;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using Freshet.Storage;

namespace Freshet.Broker.Handlers;

/// <summary>
/// Produce: appends each partition's batch to its leader replica, then (acks=all) waits for the
/// high watermark. Every append runs before the first await, so requests pipelined on one
/// connection are appended in the order they were sent (what idempotent producers rely on).
/// The batch bytes are the request buffer's: offsets are written into them and they go to disk as they are.
/// acks=all answers NOT_ENOUGH_REPLICAS before appending when the ISR is below min.insync.replicas,
/// and NOT_ENOUGH_REPLICAS_AFTER_APPEND when it shrank below it while the produce waited. A
/// partition this broker does not lead answers NOT_LEADER_OR_FOLLOWER with the leader it knows
/// (and, from v10, its endpoint: KIP-951).
/// </summary>
public sealed class ProduceHandler(RequestDispatcher dispatcher, ReplicaManager replicas, MetadataCache cache)
{
    /// <summary>
    /// The highest Produce version served. Version 12 (Kafka 4.0) has version 11's fields, but a
    /// transactional producer sends it only to a cluster that finalizes transaction.version 2, and
    /// then counts on the leader to add the partition to the transaction itself (KIP-890 part 2),
    /// which Freshet does not do yet. Some clients pick the version from ApiVersions alone (franz-go
    /// 1.19.1 sent 12 inside transactions, twmb/franz-go#1017), so the version is advertised only
    /// once it means what it says. Raise this with transactions v2 (docs/design/transactions-protocol.md).
    /// </summary>
    public const short MaxVersion = 11;

    public void Register() => dispatcher.Register(ApiKey.Produce, (c, r) => HandleAsync(c, (ProduceRequest)r), maxVersion: MaxVersion);

    public async ValueTask<IApiMessage?> HandleAsync(RequestContext context, ProduceRequest request)
    {
        short v = context.ApiVersion;
        short acks = request.Acks;
        var response = new ProduceResponse();
        List<(ProduceResponse.PartitionProduceResponse Response, Partition Partition, long LastOffset, int LeaderEpoch)>? waiting = null;
        List<(ProduceResponse.PartitionProduceResponse Response, Partition Partition, LogAppendResult Result)>? syncing = null;
        bool anyError = false;
        foreach (var topic in request.TopicData)
        {
            var tr = new ProduceResponse.TopicProduceResponse { Name = topic.Name };
            response.Responses.Add(tr);
            foreach (var pd in topic.PartitionData)
            {
                var pr = new ProduceResponse.PartitionProduceResponse { Index = pd.Index, BaseOffset = -1 };
                tr.PartitionResponses.Add(pr);
                int epoch = replicas.GetPartition(topic.Name, pd.Index)?.LeaderEpoch ?? -1;
                var (error, message, partition, result) = Append(v, acks, topic.Name, pd);
                pr.ErrorCode = (short)error;
                pr.ErrorMessage = message;
                if (error != ErrorCode.None)
                {
                    anyError = true;
                    // v8+: the records at fault (KIP-467); the client fails those and retries or fails the rest.
                    if (v >= 8 && result.RecordErrors is { } recordErrors)
                        pr.RecordErrors = [.. recordErrors.Select(e => new ProduceResponse.BatchIndexAndErrorMessage { BatchIndex = e.BatchIndex, BatchIndexErrorMessage = e.Message })];
                    if (error is ErrorCode.NotLeaderOrFollower or ErrorCode.FencedLeaderEpoch) AddLeaderHint(v, response, pr, topic.Name, pd.Index, partition, context.ListenerName);
                    else if (partition is not null) pr.CurrentLeader = new() { LeaderId = partition.LeaderId, LeaderEpoch = partition.LeaderEpoch };
                    continue;
                }
                pr.BaseOffset = result.FirstOffset;
                pr.LogAppendTimeMs = result.LogAppendTime;
                pr.LogStartOffset = result.LogStartOffset;
                if (result.Sync is not null && partition is not null) (syncing ??= []).Add((pr, partition, result));
                if (acks == -1 && result.LastOffset >= 0 && partition is not null && partition.HighWatermark <= result.LastOffset)
                    (waiting ??= []).Add((pr, partition, result.LastOffset, epoch));
            }
        }
        if (syncing is not null)
        {
            // The flush policy wants these appends on disk before any acknowledgement.
            foreach (var (pr, partition, result) in syncing)
            {
                var done = await ReplicaManager.CompleteSyncAsync(partition, result).ConfigureAwait(false);
                if (done.Error != ErrorCode.None)
                {
                    pr.ErrorCode = (short)done.Error;
                    pr.ErrorMessage = done.ErrorMessage;
                    pr.BaseOffset = -1;
                    anyError = true;
                }
            }
        }
        if (acks == 0)
        {
            // No response: a failed acks=0 produce closes the connection so the client notices, as Kafka does.
            if (anyError) throw new CloseConnectionException("acks=0 produce failed");
            return null;
        }
        if (waiting is not null)
        {
            foreach (var (pr, partition, last, epoch) in waiting)
            {
                if (pr.ErrorCode != (short)ErrorCode.None) continue; // its fsync failed
                var error = await ReplicaManager.WaitForAcksAsync(partition, last, epoch, request.TimeoutMs, context.ConnectionClosed).ConfigureAwait(false);
                if (error == ErrorCode.None) continue;
                pr.ErrorCode = (short)error;
                pr.ErrorMessage = error switch
                {
                    ErrorCode.RequestTimedOut => "Timed out waiting for the in-sync replicas",
                    ErrorCode.NotEnoughReplicasAfterAppend =>
                        $"The ISR of {partition.TopicPartition} shrank below min.insync.replicas ({partition.MinInSyncReplicas}) before the write was replicated",
                    _ => $"Leadership of {partition.TopicPartition} moved before the write was replicated",
                };
                if (error == ErrorCode.NotLeaderOrFollower) AddLeaderHint(v, response, pr, partition.TopicPartition.Topic, partition.TopicPartition.Partition, partition, context.ListenerName);
            }
        }
        return response;
    }

    /// <summary>KIP-951: the leader and epoch this broker knows, and (v10+) the leader's endpoint on the request's listener.</summary>
    private void AddLeaderHint(short v, ProduceResponse response, ProduceResponse.PartitionProduceResponse pr, string topicName, int index, Partition? p, string listener)
    {
        var image = cache.Image;
        var reg = p?.Registration ?? image.Partition(topicName, index);
        if (reg is null) return;
        pr.CurrentLeader = new() { LeaderId = reg.Leader, LeaderEpoch = reg.LeaderEpoch };
        if (v < 10 || reg.Leader < 0 || response.NodeEndpoints.Any(e => e.NodeId == reg.Leader)) return;
        if (LeaderHints.Endpoint(image, reg.Leader, listener) is { } ep)
            response.NodeEndpoints.Add(new ProduceResponse.NodeEndpoint { NodeId = reg.Leader, Host = ep.Host, Port = ep.Port, Rack = ep.Rack });
    }

    private (ErrorCode, string?, Partition?, LogAppendResult) Append(short version, short acks, string topic, ProduceRequest.PartitionProduceData pd)
    {
        if (acks is not (-1 or 0 or 1)) return (ErrorCode.InvalidRequiredAcks, null, null, default);
        var partition = replicas.GetPartition(topic, pd.Index);
        if (partition is null)
        {
            bool known = cache.Image.Partition(topic, pd.Index) is not null;
            return (known ? ErrorCode.NotLeaderOrFollower : ErrorCode.UnknownTopicOrPartition, null, null, default);
        }
        if (TopicNames.IsInternal(topic))
            return (ErrorCode.InvalidTopicException, $"Cannot append to internal topic {topic}", partition, default);
        var records = pd.Records;
        if (records is null || records.Length == 0) return (ErrorCode.None, null, partition, new LogAppendResult(ErrorCode.None, null, -1, -1, -1, partition.LogStartOffset, 0, false));

        Memory<byte> bytes;
        if (version <= 2)
        {
            // Message format v0/v1: up-convert to one v2 batch, as Kafka does for old producers.
            using var converted = new PooledBufferWriter();
            var c = LegacyMessageSet.ToRecordBatchV2(records.Memory.Span, converted);
            if (!c.IsValid) return (c.Error, c.Message, partition, default);
            bytes = converted.WrittenSpan.ToArray();
        }
        else
        {
            // v3+: exactly one batch of magic 2 (Kafka's rule); zstd needs v7+.
            var span = records.Memory.Span;
            int size = RecordBatch.PeekSize(span);
            if (size != span.Length)
                return (size > 0 && size < span.Length ? ErrorCode.InvalidRecord : ErrorCode.CorruptMessage,
                    size > 0 && size < span.Length ? "Produce requests with version 3 and later must contain exactly one record batch" : "Record batch length does not match the records size",
                    partition, default);
            if (span.Length <= RecordBatch.MagicOffset || span[RecordBatch.MagicOffset] != RecordBatch.CurrentMagic)
                return (ErrorCode.InvalidRecord, "Produce requests with version 3 and later are only allowed to contain record batches with magic version 2", partition, default);
            if (version < 7 && span.Length >= RecordBatch.HeaderSize && new RecordBatch(span).Compression == CompressionType.Zstd)
                return (ErrorCode.UnsupportedCompressionType, "Produce requests with version older than 7 cannot use zstd", partition, default);
            bytes = MemoryMarshal.AsMemory(records.Memory);
        }
        // deferSync: the write happens here, in request order; an fsync the flush policy asks for is awaited after.
        var result = replicas.AppendToLeader(partition, bytes, acks, deferSync: true);
        return (result.Error, result.Error == ErrorCode.None ? null : result.ErrorMessage, partition, result);
    }
}
