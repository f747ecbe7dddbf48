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
/// </summary>
public sealed class ProduceHandler(RequestDispatcher dispatcher, ReplicaManager replicas, MetadataCache cache)
{
    public void Register() => dispatcher.Register(ApiKey.Produce, (c, r) => HandleAsync(c, (ProduceRequest)r));

    public async ValueTask<IApiMessage?> HandleAsync(RequestContext context, ProduceRequest request)
    {
        short v = context.ApiVersion;
        short acks = request.Acks;
        var response = new ProduceResponse();
        List<(ProduceResponse.PartitionProduceResponse Response, Partition Partition, long LastOffset)>? waiting = null;
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
                var (error, message, partition, result) = Append(v, acks, topic.Name, pd);
                pr.ErrorCode = (short)error;
                pr.ErrorMessage = message;
                if (error != ErrorCode.None)
                {
                    anyError = true;
                    if (partition is not null) pr.CurrentLeader = new() { LeaderId = partition.LeaderId, LeaderEpoch = partition.LeaderEpoch };
                    continue;
                }
                pr.BaseOffset = result.FirstOffset;
                pr.LogAppendTimeMs = result.LogAppendTime;
                pr.LogStartOffset = result.LogStartOffset;
                if (result.Sync is not null && partition is not null) (syncing ??= []).Add((pr, partition, result));
                if (acks == -1 && result.LastOffset >= 0 && partition is not null && partition.HighWatermark <= result.LastOffset)
                    (waiting ??= []).Add((pr, partition, result.LastOffset));
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
            foreach (var (pr, partition, last) in waiting)
            {
                if (!await ReplicaManager.WaitForHighWatermarkAsync(partition, last, request.TimeoutMs, context.ConnectionClosed).ConfigureAwait(false))
                {
                    pr.ErrorCode = (short)ErrorCode.RequestTimedOut;
                    pr.ErrorMessage = "Timed out waiting for the in-sync replicas";
                }
            }
        }
        return response;
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
        if (records is null || records.Length == 0) return (ErrorCode.None, null, partition, new LogAppendResult(ErrorCode.None, null, -1, -1, -1, partition.Log.LogStartOffset, 0, false));

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
