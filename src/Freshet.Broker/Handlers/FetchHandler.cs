using Freshet.Broker.Replication;
using Freshet.Metadata.Image;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using Freshet.Storage.Epochs;
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
/// is that follower's progress (<see cref="Partition.UpdateFollowerFetchState"/>). Any fetch that
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
/// </summary>
public sealed class FetchHandler(RequestDispatcher dispatcher, BrokerOptions options, ReplicaManager replicas, MetadataCache cache)
{
    public void Register() => dispatcher.Register(ApiKey.Fetch, (c, r) => HandleAsync(c, (FetchRequest)r));

    private sealed class Item(FetchResponse.PartitionData response, Partition? partition, FetchRequest.FetchPartition request, ErrorCode setupError)
    {
        public FetchResponse.PartitionData Response { get; } = response;
        public Partition? Partition { get; } = partition;
        public FetchRequest.FetchPartition Request { get; } = request;
        public ErrorCode SetupError { get; } = setupError;

        /// <summary>Set when the fetcher's log diverged from this one: answered with DivergingEpoch, no records.</summary>
        public EpochEndOffset? Diverging { get; init; }

        /// <summary>The replica the consumer should fetch from instead of this leader (KIP-392), -1 for none: answered with no records.</summary>
        public int PreferredReadReplica { get; init; } = -1;
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
        long replicaEpoch = v >= 15 ? request.ReplicaState.ReplicaEpoch : -1;
        bool fromFollower = replicaId >= 0;
        // Kafka's fetchOnlyLeader: consumers may read from followers from v11 (KIP-392), followers only from the leader.
        bool leaderOnly = fromFollower || v < 11;
        // With a replica selector, consumers read from followers: a follower is answered as soon as the high
        // watermark moved past what it was last sent, not only when data arrives, so its consumers see new
        // records without waiting out its long poll (replica.fetch.wait.max.ms).
        bool pushHighWatermark = fromFollower && options.ReplicaSelector != ReplicaSelector.Leader;
        var image = cache.Image;
        var items = new List<Item>();
        var waitOn = new List<PartitionSignal>();
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
                    // The epoch first, as Kafka checks it: a follower knows the current one too.
                    if (p is null) error = image.Partition(name, fp.Partition) is null ? ErrorCode.UnknownTopicOrPartition : ErrorCode.NotLeaderOrFollower;
                    else if (v >= 9 && p.CheckLeaderEpoch(fp.CurrentLeaderEpoch) is var epochError && epochError != ErrorCode.None) error = epochError;
                    else if (leaderOnly && !p.IsLeader) error = ErrorCode.NotLeaderOrFollower;
                    else if (fromFollower && !p.Replicas.Contains(replicaId)) error = ErrorCode.NotLeaderOrFollower; // not a known follower
                }
                if (error is ErrorCode.NotLeaderOrFollower or ErrorCode.FencedLeaderEpoch && name is not null)
                    AddLeaderHint(v, response, pr, image, name, fp.Partition, p, context.ListenerName);
                int preferred = -1;
                if (error == ErrorCode.None && !leaderOnly && options.ReplicaSelector != ReplicaSelector.Leader && p!.IsLeader)
                    preferred = p.SelectReadReplica(options.ReplicaSelector, request.RackId, fp.FetchOffset, context.ListenerName);
                EpochEndOffset? diverging = null;
                if (error == ErrorCode.None && preferred < 0 && v >= 12 && fp.LastFetchedEpoch >= 0)
                {
                    var end = p!.Log.EndOffsetForEpoch(fp.LastFetchedEpoch);
                    if (end.Epoch < fp.LastFetchedEpoch || end.EndOffset < fp.FetchOffset) diverging = end;
                }
                if (p is not null && error == ErrorCode.None && diverging is null && preferred < 0)
                {
                    // Followers wait for the log to grow, consumers for the high watermark to move.
                    waitOn.Add(fromFollower ? p.EndSignal : p.Signal);
                    if (pushHighWatermark) waitOn.Add(p.Signal);
                }
                items.Add(new Item(pr, p, fp, error) { Diverging = diverging, PreferredReadReplica = preferred });
            }
        }
        if (fromFollower) UpdateFollowers(items, replicaId, replicaEpoch);

        int maxWait = Math.Clamp(request.MaxWaitMs, 0, options.MaxFetchWaitMs);
        long deadline = Environment.TickCount64 + maxWait;
        while (true)
        {
            // Note the signals' versions before reading, so data appended in between wakes the wait below at once.
            var seen = DataWaiter.Snapshot(waitOn);
            var (bytes, answerNow) = ReadAll(v, request, items, fromFollower, leaderOnly);
            if (pushHighWatermark && !answerNow) answerNow = HasNewHighWatermark(items, replicaId);
            long remaining = deadline - Environment.TickCount64;
            if (bytes >= request.MinBytes || answerNow || remaining <= 0 || waitOn.Count == 0) break;
            await DataWaiter.WaitAsync(waitOn, seen, (int)remaining, context.ConnectionClosed).ConfigureAwait(false);
            if (context.ConnectionClosed.IsCancellationRequested) break;
        }
        if (pushHighWatermark) NoteHighWatermarksSent(items, replicaId);
        return response;
    }

    /// <summary>Whether the response would carry a high watermark the follower was not sent yet, for any partition read.</summary>
    private static bool HasNewHighWatermark(List<Item> items, int replicaId)
    {
        foreach (var item in items)
        {
            if (item.SetupError == ErrorCode.None && item.Partition is { } p && p.FollowerLacksHighWatermark(replicaId, item.Response.HighWatermark))
                return true;
        }
        return false;
    }

    private static void NoteHighWatermarksSent(List<Item> items, int replicaId)
    {
        foreach (var item in items)
        {
            if (item.SetupError == ErrorCode.None && item.Partition is { } p) p.NoteHighWatermarkSent(replicaId, item.Response.HighWatermark);
        }
    }

    /// <summary>A follower's fetch offsets are its log end offsets: record them (this may move the high watermark and grow the ISR).</summary>
    private static void UpdateFollowers(List<Item> items, int replicaId, long replicaEpoch)
    {
        foreach (var item in items)
        {
            if (item.SetupError != ErrorCode.None || item.Diverging is not null || item.Partition is not { } p) continue;
            long offset = item.Request.FetchOffset, leo = p.Log.LogEndOffset;
            if (offset < p.Log.LogStartOffset || offset > leo) continue; // answered OFFSET_OUT_OF_RANGE
            // Caught up means having all the follower may fetch (up to the durable end with fsync per append).
            p.UpdateFollowerFetchState(replicaId, offset, item.Request.LogStartOffset, replicaEpoch, p.ReplicableEndOffset);
        }
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

    /// <summary>
    /// Fills every partition's response from its log; returns bytes found and whether any partition must be
    /// answered now (error, divergence, or a preferred read replica).
    /// </summary>
    private static (int Bytes, bool AnswerNow) ReadAll(short v, FetchRequest request, List<Item> items, bool fromFollower, bool leaderOnly)
    {
        int total = 0;
        bool answerNow = false;
        int responseBudget = v >= 3 ? request.MaxBytes : int.MaxValue;
        bool minOne = v >= 3;
        foreach (var item in items)
        {
            var pr = item.Response;
            pr.Records = RecordSet.Empty;
            if (item.SetupError != ErrorCode.None)
            {
                pr.ErrorCode = (short)item.SetupError;
                answerNow = true;
                continue;
            }
            var p = item.Partition!;
            // Leadership may have moved while the fetch waited (Kafka's DelayedFetch checks the same):
            // a stale epoch or a lost leadership is answered now, without records.
            var moved = v >= 9 ? p.CheckLeaderEpoch(item.Request.CurrentLeaderEpoch) : ErrorCode.None;
            if (moved == ErrorCode.None && leaderOnly && !p.IsLeader) moved = ErrorCode.NotLeaderOrFollower;
            if (moved != ErrorCode.None)
            {
                pr.ErrorCode = (short)moved;
                pr.HighWatermark = -1;
                answerNow = true;
                continue;
            }
            var log = p.Log;
            long hw = p.HighWatermark;
            pr.HighWatermark = hw;
            pr.LastStableOffset = hw; // no transactions yet: the last stable offset is the high watermark
            pr.LogStartOffset = log.LogStartOffset;
            pr.AbortedTransactions = null;
            if (item.Diverging is { } d)
            {
                pr.DivergingEpoch = new FetchResponse.EpochEndOffset { Epoch = d.Epoch, EndOffset = d.EndOffset };
                answerNow = true;
                continue;
            }
            if (item.PreferredReadReplica >= 0)
            {
                // KIP-392: no records from the leader; the consumer's next fetch goes to the replica named.
                pr.PreferredReadReplica = item.PreferredReadReplica;
                answerNow = true;
                continue;
            }
            // Followers up to the log end (only what is on disk with fsync per append), consumers up to the high watermark.
            long limit = fromFollower ? p.ReplicableEndOffset : hw;
            int maxBytes = Math.Min(item.Request.PartitionMaxBytes, Math.Max(0, responseBudget - total));
            var r = log.Read(item.Request.FetchOffset, maxBytes, limit, minOne);
            pr.ErrorCode = (short)r.Error;
            if (r.Error != ErrorCode.None)
            {
                answerNow = true;
                continue;
            }
            if (r.Records is { Length: > 0 } records)
            {
                if (v <= 3)
                {
                    if (!log.Config.Values.TryGetValue(Storage.LogConfig.MessageDownconversionEnableConfig, out var down) || down != "true")
                    {
                        pr.ErrorCode = (short)ErrorCode.UnsupportedVersion;
                        answerNow = true;
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
        return (total, answerNow);
    }

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
