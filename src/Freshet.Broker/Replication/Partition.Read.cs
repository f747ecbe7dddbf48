using Freshet.Protocol;
using Freshet.Storage;
using Freshet.Storage.Epochs;

namespace Freshet.Broker.Replication;

/// <summary>
/// Reads for requests (Kafka's Partition.fetchRecords, fetchOffsetForTimestamp, lastOffsetForLeaderEpoch,
/// deleteRecordsOnLeader): the replica decides what a request may see of its log (leader epoch, role, the
/// upper bound by isolation), so no request handler reaches into the log itself.
/// </summary>
public sealed partial class Partition
{
    /// <summary>The log's start offset.</summary>
    public long LogStartOffset => Log.LogStartOffset;

    /// <summary>The topic's min.insync.replicas.</summary>
    public int MinInSyncReplicas => Log.Config.MinInSyncReplicas;

    /// <summary>message.downconversion.enable: whether Fetch v0-3 may get this topic's batches in the old message formats.</summary>
    public bool MessageDownconversionEnabled =>
        Log.Config.Values.TryGetValue(LogConfig.MessageDownconversionEnableConfig, out var down) && down == "true";

    /// <summary>
    /// Whether a fetch may read this replica now: the fetcher's leader epoch (KIP-320; -1 skips the check) is
    /// this replica's, and this replica leads when <see cref="FetchParams.FetchOnlyLeader"/>. Checked at every
    /// read, since leadership may move while a fetch waits (Kafka's DelayedFetch checks the same).
    /// </summary>
    public ErrorCode CheckFetchable(FetchParams fetch, int currentLeaderEpoch)
    {
        var error = CheckLeaderEpoch(currentLeaderEpoch);
        if (error == ErrorCode.None && fetch.FetchOnlyLeader && !IsLeader) error = ErrorCode.NotLeaderOrFollower;
        return error;
    }

    /// <summary>
    /// The first look at a partition a fetch asks for: <see cref="CheckFetchable"/>, then a follower must be in the
    /// replica set (else NOT_LEADER_OR_FOLLOWER), as Kafka's updateFollowerFetchState refuses an unknown replica.
    /// </summary>
    public ErrorCode CheckFirstFetch(FetchParams fetch, int currentLeaderEpoch)
    {
        var error = CheckFetchable(fetch, currentLeaderEpoch);
        if (error == ErrorCode.None && fetch.IsFromFollower && !Replicas.Contains(fetch.ReplicaId)) error = ErrorCode.NotLeaderOrFollower;
        return error;
    }

    /// <summary>
    /// The largest epoch at or below <paramref name="lastFetchedEpoch"/> and where it ended, when the fetcher's log
    /// diverged from this one: that epoch ended here before <paramref name="fetchOffset"/>, or this replica does not
    /// know it. Null when it did not diverge or no epoch was sent (before Fetch v12).
    /// </summary>
    public EpochEndOffset? FindDivergingEpoch(int lastFetchedEpoch, long fetchOffset)
    {
        if (lastFetchedEpoch < 0) return null;
        var end = Log.EndOffsetForEpoch(lastFetchedEpoch);
        return end.Epoch < lastFetchedEpoch || end.EndOffset < fetchOffset ? end : null;
    }

    /// <summary>
    /// A follower's fetch offset is its log end offset: record it (this may move the high watermark and grow the
    /// ISR). An offset outside this log is answered OFFSET_OUT_OF_RANGE and records nothing. Caught up means
    /// having all the follower may fetch (up to the durable end with fsync per append).
    /// </summary>
    public void UpdateFollowerFetchState(FetchParams fetch, in FetchPartitionInfo info)
    {
        long offset = info.FetchOffset;
        if (offset < Log.LogStartOffset || offset > Log.LogEndOffset) return;
        UpdateFollowerFetchState(fetch.ReplicaId, offset, info.LogStartOffset, fetch.ReplicaEpoch, ReplicableEndOffset);
    }

    /// <summary>
    /// Reads whole batches from the fetch offset, up to <paramref name="maxBytes"/> (at least one batch when
    /// <paramref name="minOneMessage"/>), stopping at the bound of the fetch's isolation: the log end a follower may
    /// fetch (<see cref="ReplicableEndOffset"/>) or the high watermark. An offset outside the log answers
    /// OFFSET_OUT_OF_RANGE, an offline log KAFKA_STORAGE_ERROR, both with the offsets.
    /// </summary>
    public FetchPartitionData ReadRecords(FetchParams fetch, in FetchPartitionInfo info, int maxBytes, bool minOneMessage)
    {
        var error = CheckFetchable(fetch, info.CurrentLeaderEpoch);
        if (error != ErrorCode.None) return FetchPartitionData.Failed(error);
        long hw = HighWatermark, logStart = Log.LogStartOffset;
        long limit = fetch.Isolation == FetchIsolation.LogEnd ? ReplicableEndOffset : hw;
        var r = Log.Read(info.FetchOffset, maxBytes, limit, minOneMessage);
        var records = r.Error == ErrorCode.None && r.Records is { Length: > 0 } found ? found : null;
        return new FetchPartitionData(r.Error, hw, logStart, records, null, -1);
    }

    /// <summary>An answer from this replica's offsets without reading records (a diverging epoch, a preferred read replica).</summary>
    public FetchPartitionData AnswerWithoutRecords(EpochEndOffset? diverging, int preferredReadReplica) =>
        new(ErrorCode.None, HighWatermark, Log.LogStartOffset, null, diverging, preferredReadReplica);

    /// <summary>
    /// ListOffsets for one partition: the offset (and timestamp, -1 for the special ones) for
    /// <paramref name="timestamp"/>, one of <see cref="ListOffsetsTimestamp"/> or a record timestamp. The latest
    /// offset is the high watermark for consumers, the log end for followers and tools
    /// (<see cref="FetchIsolation.LogEnd"/>). (-1, -1) when no record qualifies; null for an unknown special timestamp.
    /// </summary>
    public (long Offset, long Timestamp)? FetchOffsetForTimestamp(long timestamp, FetchIsolation isolation)
    {
        var log = Log;
        long latest = isolation == FetchIsolation.HighWatermark ? HighWatermark : log.LogEndOffset;
        return timestamp switch
        {
            ListOffsetsTimestamp.Latest => (latest, -1),
            ListOffsetsTimestamp.Earliest or ListOffsetsTimestamp.EarliestLocal => (log.LogStartOffset, -1),
            ListOffsetsTimestamp.Max => log.FindMaxTimestamp() ?? (-1, -1),
            ListOffsetsTimestamp.LatestTiered => (-1, -1),
            < 0 => null,
            _ => log.FindOffsetByTimestamp(timestamp) ?? (-1, -1),
        };
    }

    /// <summary>
    /// OffsetForLeaderEpoch on this replica: the largest epoch at or below <paramref name="leaderEpoch"/> and where it
    /// ended (the log end for the current epoch). Only the leader answers; <paramref name="currentLeaderEpoch"/> is
    /// checked as fetches check it (-1 skips the check).
    /// </summary>
    public (ErrorCode Error, EpochEndOffset End) LastOffsetForLeaderEpoch(int currentLeaderEpoch, int leaderEpoch)
    {
        var error = IsLeader ? CheckLeaderEpoch(currentLeaderEpoch) : ErrorCode.NotLeaderOrFollower;
        return error == ErrorCode.None ? (error, Log.EndOffsetForEpoch(leaderEpoch)) : (error, new EpochEndOffset(-1, -1));
    }

    /// <summary>DeleteRecords on the leader: moves the log start to <paramref name="offset"/> (-1: the high watermark); the new start in <paramref name="lowWatermark"/>.</summary>
    public ErrorCode DeleteRecordsOnLeader(long offset, out long lowWatermark) =>
        Log.DeleteRecordsBefore(offset == -1 ? HighWatermark : offset, out lowWatermark);
}

/// <summary>The special timestamps of ListOffsets.</summary>
public static class ListOffsetsTimestamp
{
    public const long Latest = -1;
    public const long Earliest = -2;
    public const long Max = -3;
    public const long EarliestLocal = -4;
    public const long LatestTiered = -5;
}
