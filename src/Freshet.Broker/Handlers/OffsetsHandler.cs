using Freshet.Broker.Replication;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Handlers;

/// <summary>ListOffsets (earliest, latest, by timestamp, max timestamp) and DeleteRecords.</summary>
public sealed class OffsetsHandler(RequestDispatcher dispatcher, ReplicaManager replicas, MetadataCache cache)
{
    public const long LatestTimestamp = ListOffsetsTimestamp.Latest;
    public const long EarliestTimestamp = ListOffsetsTimestamp.Earliest;
    public const long MaxTimestamp = ListOffsetsTimestamp.Max;
    public const long EarliestLocalTimestamp = ListOffsetsTimestamp.EarliestLocal;
    public const long LatestTieredTimestamp = ListOffsetsTimestamp.LatestTiered;

    private const int ConsumerReplicaId = -1;
    private const sbyte ReadCommitted = 1;

    public void Register()
    {
        dispatcher.Register(ApiKey.ListOffsets, (c, r) => new(HandleListOffsets(c, (ListOffsetsRequest)r)));
        dispatcher.Register(ApiKey.DeleteRecords, (c, r) => new(HandleDeleteRecords(c, (DeleteRecordsRequest)r)));
    }

    private (Partition? Partition, ErrorCode Error) Lookup(string topic, int index)
    {
        var p = replicas.GetPartition(topic, index);
        if (p is null) return (null, cache.Image.Partition(topic, index) is null ? ErrorCode.UnknownTopicOrPartition : ErrorCode.NotLeaderOrFollower);
        if (p.IsOffline) return (p, ErrorCode.KafkaStorageError); // Kafka: a partition in an offline log directory
        if (!p.IsLeader) return (p, ErrorCode.NotLeaderOrFollower);
        return (p, ErrorCode.None);
    }

    public ListOffsetsResponse HandleListOffsets(RequestContext context, ListOffsetsRequest request)
    {
        short v = context.ApiVersion;
        var response = new ListOffsetsResponse();
        // A partition asked for more than once is answered INVALID_REQUEST each time (v1+), as Kafka does.
        HashSet<(string, int)>? duplicates = null;
        if (v >= 1)
        {
            var seen = new HashSet<(string, int)>();
            foreach (var topic in request.Topics)
                foreach (var rp in topic.Partitions)
                    if (!seen.Add((topic.Name, rp.PartitionIndex))) (duplicates ??= []).Add((topic.Name, rp.PartitionIndex));
        }
        foreach (var topic in request.Topics)
        {
            var tr = new ListOffsetsResponse.ListOffsetsTopicResponse { Name = topic.Name };
            response.Topics.Add(tr);
            foreach (var rp in topic.Partitions)
            {
                var pr = new ListOffsetsResponse.ListOffsetsPartitionResponse { PartitionIndex = rp.PartitionIndex };
                tr.Partitions.Add(pr);
                if (duplicates is not null && duplicates.Contains((topic.Name, rp.PartitionIndex)))
                {
                    pr.ErrorCode = (short)ErrorCode.InvalidRequest;
                    continue;
                }
                var (p, error) = Lookup(topic.Name, rp.PartitionIndex);
                if (error == ErrorCode.None && v >= 4) error = p!.CheckLeaderEpoch(rp.CurrentLeaderEpoch);
                if (error != ErrorCode.None)
                {
                    pr.ErrorCode = (short)error;
                    continue;
                }
                // Followers (replica id >= 0) and debugging tools (-2) see the log end; consumers (-1) the
                // high watermark (the LSO == HW until transactions).
                var isolation = request.ReplicaId == ConsumerReplicaId ? FetchIsolation.HighWatermark : FetchIsolation.LogEnd;
                var found = p!.FetchOffsetForTimestamp(rp.Timestamp, isolation);
                if (found is null)
                {
                    pr.ErrorCode = (short)ErrorCode.InvalidRequest;
                    continue;
                }
                if (v == 0)
                {
                    // v0 returns a list of offsets; one is what every client asks for.
                    if (rp.MaxNumOffsets > 0 && found.Value.Offset >= 0) pr.OldStyleOffsets.Add(found.Value.Offset);
                }
                else
                {
                    pr.Offset = found.Value.Offset;
                    pr.Timestamp = found.Value.Timestamp;
                    pr.LeaderEpoch = found.Value.Offset >= 0 ? p.LeaderEpoch : -1;
                }
            }
        }
        return response;
    }

    public DeleteRecordsResponse HandleDeleteRecords(RequestContext context, DeleteRecordsRequest request)
    {
        var response = new DeleteRecordsResponse();
        foreach (var topic in request.Topics)
        {
            var tr = new DeleteRecordsResponse.DeleteRecordsTopicResult { Name = topic.Name };
            response.Topics.Add(tr);
            foreach (var rp in topic.Partitions)
            {
                var pr = new DeleteRecordsResponse.DeleteRecordsPartitionResult { PartitionIndex = rp.PartitionIndex, LowWatermark = -1 };
                tr.Partitions.Add(pr);
                var (p, error) = Lookup(topic.Name, rp.PartitionIndex);
                if (error != ErrorCode.None)
                {
                    pr.ErrorCode = (short)error;
                    continue;
                }
                // -1 means "up to the high watermark".
                var e = p!.DeleteRecordsOnLeader(rp.Offset, out long low);
                pr.ErrorCode = (short)e;
                pr.LowWatermark = e == ErrorCode.None ? low : -1;
            }
        }
        return response;
    }
}
