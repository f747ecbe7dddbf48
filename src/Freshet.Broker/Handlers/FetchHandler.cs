using Freshet.Broker.Replication;
using Freshet.Metadata.Image;
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
///
/// <para>
/// A fetch with a replica id (ReplicaState.ReplicaId from v15, ReplicaId before) comes from a
/// follower: it must be in the partition's replica set, reads up to the log end rather than the
/// high watermark, waits for the log to grow rather than the high watermark, and its fetch offset
/// is that follower's progress. Any fetch that
/// sends LastFetchedEpoch (v12+) whose epoch ended on this leader before its fetch offset, or that
/// this leader does not know, gets DivergingEpoch (the largest epoch at or below it and where it
/// ended) and no records.
/// </para>
/// <para>
/// Consumers (KIP-392): from v11 a consumer may fetch from any replica, a follower included; it
/// reads up to that replica's high watermark (which followers take from the leader's fetch
/// responses), an offset past the replica's log end is OFFSET_OUT_OF_RANGE (clients then go back
/// to the leader rather than reset), and the current leader epoch is checked against the
/// replica's own. Before v11, and for followers, only the leader serves. With
/// replica.selector.class set to the rack-aware selector, the leader answers a consumer that sent
/// a RackId with PreferredReadReplica (and no records, at once) when an in-sync follower in that
/// rack should serve it instead (<see cref="Partition.SelectReadReplica"/>). With a selector set,
/// a follower's fetch is also answered as soon as its response would carry a high watermark the
/// follower was not sent yet: consumers of a follower otherwise see a quiet partition's new records
/// only when the follower's long poll (replica.fetch.wait.max.ms) ends. Kafka did this when KIP-392
/// shipped, then only with a selector (KAFKA-9731), and since KAFKA-9952 not at all, for the extra
/// follower fetches; here it costs one more round trip per follower when the high watermark moves
/// on a partition that is otherwise idle, and nothing without a selector.
/// A partition this broker cannot serve answers NOT_LEADER_OR_FOLLOWER with the leader and epoch
/// it knows, and the leader's endpoint from v16 (KIP-951), so clients need no metadata round trip.
/// </para>
/// <para>
/// This handler only decodes the request, asks <see cref="ReplicaManager.FetchMessagesAsync"/> (which makes every
/// decision above through <see cref="Partition"/> and long polls) and encodes the answer, down-converting for v0-3.
/// </para>
/// </summary>
public sealed class FetchHandler(RequestDispatcher dispatcher, ReplicaManager replicas, MetadataCache cache)
{
    public void Register() => dispatcher.Register(ApiKey.Fetch, (c, r) => HandleAsync(c, (FetchRequest)r));

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
        var fetch = new FetchParams
        {
            ReplicaId = replicaId,
            ReplicaEpoch = v >= 15 ? request.ReplicaState.ReplicaEpoch : -1,
            // Followers read to the log end, consumers to the high watermark (read_committed is not served yet: no transactions).
            Isolation = fromFollower ? FetchIsolation.LogEnd : FetchIsolation.HighWatermark,
            MaxWaitMs = request.MaxWaitMs,
            MinBytes = request.MinBytes,
            MaxBytes = v >= 3 ? request.MaxBytes : int.MaxValue,
            MinOneMessage = v >= 3,
            // Kafka's fetchOnlyLeader: consumers may read from followers from v11 (KIP-392), followers only from the leader.
            FetchOnlyLeader = fromFollower || v < 11,
            ClientRack = request.RackId,
            ListenerName = context.ListenerName,
        };
        var image = cache.Image;
        // The partitions asked for, in request order; those of an unknown topic id are answered here and not read.
        var responses = new List<(FetchResponse.PartitionData Response, string? Topic)>();
        var infos = new List<FetchPartitionInfo>();
        foreach (var topic in request.Topics)
        {
            string? name = v >= 13 ? image.Topic(topic.TopicId)?.Name : topic.Topic;
            var tr = new FetchResponse.FetchableTopicResponse { Topic = v >= 13 ? "" : topic.Topic, TopicId = topic.TopicId };
            response.Responses.Add(tr);
            foreach (var fp in topic.Partitions)
            {
                var pr = new FetchResponse.PartitionData { PartitionIndex = fp.Partition, HighWatermark = -1, Records = RecordSet.Empty };
                tr.Partitions.Add(pr);
                if (name is null)
                {
                    pr.ErrorCode = (short)ErrorCode.UnknownTopicId;
                    continue;
                }
                responses.Add((pr, name));
                infos.Add(new FetchPartitionInfo(new TopicPartition(name, fp.Partition), fp.FetchOffset, fp.PartitionMaxBytes,
                    v >= 9 ? fp.CurrentLeaderEpoch : -1, v >= 12 ? fp.LastFetchedEpoch : -1, fp.LogStartOffset));
            }
        }

        var results = await replicas.FetchMessagesAsync(fetch, infos, image, context.ConnectionClosed).ConfigureAwait(false);

        for (int i = 0; i < results.Length; i++)
        {
            var (pr, topic) = responses[i];
            var r = results[i];
            var tp = infos[i].TopicPartition;
            pr.ErrorCode = (short)r.Error;
            pr.HighWatermark = r.HighWatermark;
            if (r.HighWatermark >= 0)
            {
                // The log was looked at: its offsets (no transactions yet: the last stable offset is the high watermark).
                pr.LastStableOffset = r.HighWatermark;
                pr.LogStartOffset = r.LogStartOffset;
                pr.AbortedTransactions = null;
            }
            if (r.DivergingEpoch is { } d) pr.DivergingEpoch = new FetchResponse.EpochEndOffset { Epoch = d.Epoch, EndOffset = d.EndOffset };
            // KIP-392: no records from the leader; the consumer's next fetch goes to the replica named.
            if (r.PreferredReadReplica >= 0) pr.PreferredReadReplica = r.PreferredReadReplica;
            if (r.Error is ErrorCode.NotLeaderOrFollower or ErrorCode.FencedLeaderEpoch)
                AddLeaderHint(v, response, pr, image, topic!, tp.Partition, replicas.GetPartition(tp), context.ListenerName);
            if (r.Records is not { } records) continue;
            if (v > 3)
            {
                pr.Records = records; // the file range itself: the transport sends it with sendfile
                continue;
            }
            if (replicas.GetPartition(tp) is not { MessageDownconversionEnabled: true })
            {
                pr.ErrorCode = (short)ErrorCode.UnsupportedVersion;
                continue;
            }
            pr.Records = DownConvert(records, v <= 1 ? (byte)0 : (byte)1, infos[i].FetchOffset);
        }
        return response;
    }

    /// <summary>KIP-951: the leader and epoch this broker knows, and (v16+) the leader's endpoint on the request's listener.</summary>
    private static void AddLeaderHint(short v, FetchResponse response, FetchResponse.PartitionData pr, MetadataImage image, string topic, int partition,
        Partition? p, string listener)
    {
        var reg = p?.Registration ?? image.Partition(topic, partition);
        if (reg is null) return;
        pr.CurrentLeader = new() { LeaderId = reg.Leader, LeaderEpoch = reg.LeaderEpoch };
        if (v < 16 || reg.Leader < 0 || response.NodeEndpoints.Any(e => e.NodeId == reg.Leader)) return;
        if (LeaderHints.Endpoint(image, reg.Leader, listener) is { } ep)
            response.NodeEndpoints.Add(new FetchResponse.NodeEndpoint { NodeId = reg.Leader, Host = ep.Host, Port = ep.Port, Rack = ep.Rack });
    }

    /// <summary>Fetch v0-3: the batches rewritten in message format v0/v1 (into memory: the old formats cannot be sent from the file).</summary>
    private static RecordSet DownConvert(FileRecords records, byte magic, long fetchOffset)
    {
        byte[] bytes = records.ReadAll();
        using var output = new PooledBufferWriter();
        LegacyMessageSet.FromRecordBatches(bytes, magic, output, fetchOffset);
        return new RecordSet(output.WrittenSpan.ToArray());
    }
}

/// <summary>Where a partition's leader can be reached, for NOT_LEADER_OR_FOLLOWER answers (KIP-951).</summary>
public static class LeaderHints
{
    /// <summary>The endpoint of broker <paramref name="nodeId"/> on <paramref name="listener"/> (or its first one), with its rack; null when unknown.</summary>
    public static (string Host, int Port, string? Rack)? Endpoint(MetadataImage image, int nodeId, string listener)
    {
        if (!image.Brokers.TryGetValue(nodeId, out var b) || b.Endpoints.IsDefaultOrEmpty) return null;
        var ep = b.Endpoints.FirstOrDefault(e => e.Name == listener) ?? b.Endpoints[0];
        return (ep.Host, ep.Port, b.Rack);
    }
}
