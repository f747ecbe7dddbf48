using Freshet.Protocol;
using Freshet.Storage.Epochs;
using Freshet.Storage.Segments;

namespace Freshet.Broker.Replication;

/// <summary>
/// How far a fetch may read (Kafka's FetchIsolation): the upper bound a <see cref="Partition"/> puts on
/// reads, and which of its signals a long poll waits on.
/// </summary>
public enum FetchIsolation
{
    /// <summary>
    /// Follower replicas: up to the log end (with fsync per append only what is on disk, see
    /// <see cref="Partition.ReplicableEndOffset"/>); their long polls wait for the log to grow.
    /// </summary>
    LogEnd,

    /// <summary>Consumers (read_uncommitted): up to the high watermark; their long polls wait for it to move.</summary>
    HighWatermark,
}

/// <summary>
/// A fetch request's parameters that apply to every partition it reads (Kafka's FetchParams), decoded
/// from the request's version by the handler.
/// </summary>
public sealed record FetchParams
{
    /// <summary>The follower broker fetching, or -1 for a consumer.</summary>
    public int ReplicaId { get; init; } = -1;

    /// <summary>The follower's broker epoch (KIP-903, Fetch v15+), -1 when not sent.</summary>
    public long ReplicaEpoch { get; init; } = -1;

    /// <summary>The upper bound of reads: <see cref="FetchIsolation.LogEnd"/> for followers, the high watermark for consumers.</summary>
    public FetchIsolation Isolation { get; init; } = FetchIsolation.HighWatermark;

    /// <summary>fetch.max.wait.ms as the request sent it (capped by the broker's maximum).</summary>
    public int MaxWaitMs { get; init; }

    /// <summary>fetch.min.bytes: the long poll ends once this many bytes were found.</summary>
    public int MinBytes { get; init; }

    /// <summary>The response's byte budget over all partitions (fetch.max.bytes; unbounded before Fetch v3).</summary>
    public int MaxBytes { get; init; } = int.MaxValue;

    /// <summary>Whether the first partition with records returns at least one whole batch even past the byte limits (Fetch v3+).</summary>
    public bool MinOneMessage { get; init; }

    /// <summary>Only the leader serves (followers always; consumers before Fetch v11, KIP-392).</summary>
    public bool FetchOnlyLeader { get; init; } = true;

    /// <summary>The consumer's rack (client.rack, Fetch v11+), for the leader's choice of a preferred read replica.</summary>
    public string? ClientRack { get; init; }

    /// <summary>The listener the request came in on (a preferred read replica must be reachable on it).</summary>
    public string ListenerName { get; init; } = "";

    public bool IsFromFollower => ReplicaId >= 0;
}

/// <summary>What a fetch asks of one partition (Kafka's FetchRequest.PartitionData).</summary>
/// <param name="CurrentLeaderEpoch">The fetcher's leader epoch (KIP-320), -1 when not sent (before Fetch v9).</param>
/// <param name="LastFetchedEpoch">The epoch of the last batch the fetcher has (Fetch v12+), -1 when not sent.</param>
/// <param name="LogStartOffset">A follower's log start offset (Fetch v5+), -1 from consumers.</param>
public readonly record struct FetchPartitionInfo(TopicPartition TopicPartition, long FetchOffset, int MaxBytes, int CurrentLeaderEpoch, int LastFetchedEpoch,
    long LogStartOffset);

/// <summary>
/// The outcome of reading one partition for a fetch (Kafka's LogReadResult / FetchPartitionData): the error, the
/// offsets the response reports, and the records as a file range (sent with sendfile, never copied here).
/// </summary>
/// <param name="HighWatermark">The partition's high watermark; -1 when the fetch was refused before the log was looked at.</param>
/// <param name="LogStartOffset">The log start offset; -1 when the log was not looked at.</param>
/// <param name="Records">Whole batches from the fetch offset; null when there are none.</param>
/// <param name="DivergingEpoch">Set when the fetcher's log diverged from this one (answered without records).</param>
/// <param name="PreferredReadReplica">The replica the consumer should fetch from instead (KIP-392), -1 for none.</param>
public readonly record struct FetchPartitionData(ErrorCode Error, long HighWatermark, long LogStartOffset, FileRecords? Records, EpochEndOffset? DivergingEpoch,
    int PreferredReadReplica)
{
    /// <summary>Refused before the log was looked at: no offsets, no records.</summary>
    public static FetchPartitionData Failed(ErrorCode error) => new(error, -1, -1, null, null, -1);
}
