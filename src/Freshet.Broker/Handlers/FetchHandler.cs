using Freshet.Broker.Replication;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using Freshet.Storage.Segments;

namespace Freshet.Broker.Handlers;

/// <summary>
/// Fetch: whole batches from each partition's log as file ranges (the transport sends them with
/// sendfile), never decoded; long polls until min.bytes arrive or max.wait.ms passes. Fetch
/// sessions (KIP-227) are not kept: the response's session id 0 tells clients to send full
/// fetches, which Kafka's clients accept. Versions 0-3 get batches down-converted to the old
/// message formats.
/// </summary>
public sealed class FetchHandler(RequestDispatcher dispatcher, BrokerOptions options, ReplicaManager replicas, MetadataCache cache)
{
    private const sbyte ReadCommitted = 1;

    public void Register() => dispatcher.Register(ApiKey.Fetch, (c, r) => HandleAsync(c, (FetchRequest)r));

    private sealed class Item(FetchResponse.PartitionData response, Partition? partition, FetchRequest.FetchPartition request, ErrorCode setupError)
    {
        public FetchResponse.PartitionData Response { get; } = response;
        public Partition? Partition { get; } = partition;
        public FetchRequest.FetchPartition Request { get; } = request;
        public ErrorCode SetupError { get; } = setupError;
    }

    public async ValueTask<IApiMessage?> HandleAsync(RequestContext context, FetchRequest request)
    {
        short v = context.ApiVersion;
        var response = new FetchResponse();
        if (v >= 7 && request.SessionId != 0)
        {
            response.ErrorCode = (short)ErrorCode.FetchSessionIdNotFound;
            return response;
        }
        int replicaId = v >= 15 ? request.ReplicaState.ReplicaId : request.ReplicaId;
        bool fromFollower = replicaId >= 0;
        var image = cache.Image;
        var items = new List<Item>();
        var waitOn = new List<Partition>();
        foreach (var topic in request.Topics)
        {
            string? name = v >= 13 ? image.Topic(topic.TopicId)?.Name : topic.Topic;
            var tr = new FetchResponse.FetchableTopicResponse { Topic = v >= 13 ? "" : topic.Topic, TopicId = topic.TopicId };
            response.Responses.Add(tr);
            foreach (var fp in topic.Partitions)
            {
                var pr = new FetchResponse.PartitionData { PartitionIndex = fp.Partition, HighWatermark = -1, Records = RecordSet.Empty };
                tr.Partitions.Add(pr);
                ErrorCode error = ErrorCode.None;
                Partition? p = null;
                if (name is null) error = ErrorCode.UnknownTopicId;
                else
                {
                    p = replicas.GetPartition(name, fp.Partition);
                    if (p is null) error = image.Partition(name, fp.Partition) is null ? ErrorCode.UnknownTopicOrPartition : ErrorCode.NotLeaderOrFollower;
                    else if (!p.IsLeader) error = ErrorCode.NotLeaderOrFollower;
                    else if (v >= 9) error = p.CheckLeaderEpoch(fp.CurrentLeaderEpoch);
                }
                if (p is not null && error == ErrorCode.None) waitOn.Add(p);
                items.Add(new Item(pr, p, fp, error));
            }
        }

        int maxWait = Math.Clamp(request.MaxWaitMs, 0, options.MaxFetchWaitMs);
        long deadline = Environment.TickCount64 + maxWait;
        while (true)
        {
            // Note the signals' versions before reading, so data appended in between wakes the wait below at once.
            var seen = DataWaiter.Snapshot(waitOn);
            var (bytes, errors) = ReadAll(v, request, items, fromFollower);
            long remaining = deadline - Environment.TickCount64;
            if (bytes >= request.MinBytes || errors || remaining <= 0 || waitOn.Count == 0) break;
            await DataWaiter.WaitAsync(waitOn, seen, (int)remaining, context.ConnectionClosed).ConfigureAwait(false);
            if (context.ConnectionClosed.IsCancellationRequested) break;
        }
        return response;
    }

    /// <summary>Fills every partition's response from its log; returns bytes found and whether any partition errored.</summary>
    private (int Bytes, bool Errors) ReadAll(short v, FetchRequest request, List<Item> items, bool fromFollower)
    {
        int total = 0;
        bool errors = false;
        int responseBudget = v >= 3 ? request.MaxBytes : int.MaxValue;
        bool minOne = v >= 3;
        foreach (var item in items)
        {
            var pr = item.Response;
            pr.Records = RecordSet.Empty;
            if (item.SetupError != ErrorCode.None)
            {
                pr.ErrorCode = (short)item.SetupError;
                if (item.Partition is { } np) pr.CurrentLeader = new() { LeaderId = np.LeaderId, LeaderEpoch = np.LeaderEpoch };
                errors = true;
                continue;
            }
            var p = item.Partition!;
            var log = p.Log;
            long hw = p.HighWatermark;
            long limit = fromFollower ? log.LogEndOffset : hw; // no transactions yet: the last stable offset is the high watermark
            int maxBytes = Math.Min(item.Request.PartitionMaxBytes, Math.Max(0, responseBudget - total));
            var r = log.Read(item.Request.FetchOffset, maxBytes, limit, minOne);
            pr.HighWatermark = hw;
            pr.LastStableOffset = hw;
            pr.LogStartOffset = log.LogStartOffset;
            pr.AbortedTransactions = null;
            pr.ErrorCode = (short)r.Error;
            if (r.Error != ErrorCode.None)
            {
                errors = true;
                continue;
            }
            if (r.Records is { Length: > 0 } records)
            {
                if (v <= 3)
                {
                    if (!log.Config.Values.TryGetValue(Storage.LogConfig.MessageDownconversionEnableConfig, out var down) || down != "true")
                    {
                        pr.ErrorCode = (short)ErrorCode.UnsupportedVersion;
                        errors = true;
                        continue;
                    }
                    pr.Records = DownConvert(records, v <= 1 ? (byte)0 : (byte)1, item.Request.FetchOffset);
                }
                else
                {
                    pr.Records = records;
                }
                total += pr.Records.Length;
                minOne = false;
            }
        }
        return (total, errors);
    }

    private static RecordSet DownConvert(FileRecords records, byte magic, long fetchOffset)
    {
        byte[] bytes = records.ReadAll();
        using var output = new PooledBufferWriter();
        LegacyMessageSet.FromRecordBatches(bytes, magic, output, fetchOffset);
        return new RecordSet(output.WrittenSpan.ToArray());
    }
}
