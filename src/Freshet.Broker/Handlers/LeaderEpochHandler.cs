using Freshet.Broker.Replication;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Handlers;

/// <summary>
/// OffsetForLeaderEpoch (KIP-101, KIP-279, KIP-320), every version: for each partition and
/// requested leader epoch, the largest epoch at or below it in the leader's log and the offset
/// where it ended (the log end for the current epoch; -1/-1 when no such epoch is known). Followers
/// use it to find where their log parts from the leader's; consumers after a leader change, to
/// detect that the log they read was truncated. Served by the leader only; CurrentLeaderEpoch
/// (v2+) is checked as fetches check it.
/// </summary>
public sealed class LeaderEpochHandler(RequestDispatcher dispatcher, ReplicaManager replicas, MetadataCache cache)
{
    public void Register() => dispatcher.Register(ApiKey.OffsetForLeaderEpoch, (c, r) => new(Handle(c, (OffsetForLeaderEpochRequest)r)));

    public OffsetForLeaderEpochResponse Handle(RequestContext context, OffsetForLeaderEpochRequest request)
    {
        short v = context.ApiVersion;
        var response = new OffsetForLeaderEpochResponse();
        var image = cache.Image;
        foreach (var topic in request.Topics)
        {
            var tr = new OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult { Topic = topic.Topic };
            response.Topics.Add(tr);
            foreach (var rp in topic.Partitions)
            {
                var pr = new OffsetForLeaderEpochResponse.EpochEndOffset { Partition = rp.Partition, LeaderEpoch = -1, EndOffset = -1 };
                tr.Partitions.Add(pr);
                var p = replicas.GetPartition(topic.Topic, rp.Partition);
                if (p is null)
                {
                    pr.ErrorCode = (short)(image.Partition(topic.Topic, rp.Partition) is null ? ErrorCode.UnknownTopicOrPartition : ErrorCode.NotLeaderOrFollower);
                    continue;
                }
                var (error, end) = p.LastOffsetForLeaderEpoch(v >= 2 ? rp.CurrentLeaderEpoch : -1, rp.LeaderEpoch);
                pr.ErrorCode = (short)error;
                if (error != ErrorCode.None) continue;
                pr.LeaderEpoch = end.Epoch;
                pr.EndOffset = end.EndOffset;
            }
        }
        return response;
    }
}
