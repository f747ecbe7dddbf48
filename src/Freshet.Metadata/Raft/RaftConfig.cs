namespace Freshet.Metadata.Raft;

/// <summary>
/// One node's Raft settings. Defaults are KRaft's (<c>controller.quorum.*</c>).
/// </summary>
public sealed record RaftConfig
{
    /// <summary>This node's id (<c>node.id</c>). A node not in <see cref="Voters"/> is an observer.</summary>
    public required int NodeId { get; init; }

    /// <summary>The voter ids (<c>controller.quorum.voters</c>, parsed by <see cref="QuorumVoters.Parse"/>).</summary>
    public required IReadOnlyCollection<int> Voters { get; init; }

    /// <summary>Sent in every request and checked on every request received; null skips the check.</summary>
    public string? ClusterId { get; init; }

    /// <summary><c>controller.quorum.election.timeout.ms</c>: base of the randomized election timeout (base + [0, base)).</summary>
    public int ElectionTimeoutMs { get; init; } = 1000;

    /// <summary><c>controller.quorum.fetch.timeout.ms</c>: a follower that has not heard from its leader for this long starts an election.</summary>
    public int FetchTimeoutMs { get; init; } = 2000;

    /// <summary><c>controller.quorum.election.backoff.max.ms</c>: cap of the backoff after a lost election.</summary>
    public int ElectionBackoffMaxMs { get; init; } = 1000;

    /// <summary><c>controller.quorum.retry.backoff.ms</c>: wait before resending a failed request.</summary>
    public int RetryBackoffMs { get; init; } = 20;

    /// <summary>
    /// <c>controller.quorum.request.timeout.ms</c>: for the driver, which answers a send with a null
    /// response when no response came within this long (the node itself keeps no request timers).
    /// </summary>
    public int RequestTimeoutMs { get; init; } = 2000;

    /// <summary>How long the leader may park a follower's Fetch waiting for data (KRaft's fetch max wait).</summary>
    public int FetchMaxWaitMs { get; init; } = 500;

    /// <summary>Bytes of records per Fetch response.</summary>
    public int FetchMaxBytes { get; init; } = 8 * 1024 * 1024;

    /// <summary>Bytes of snapshot per FetchSnapshot response.</summary>
    public int SnapshotChunkBytes { get; init; } = 1024 * 1024;

    /// <summary>
    /// The leader resigns when fewer than a majority of voters (counting itself) fetched within this long.
    /// KRaft uses 1.5 times the fetch timeout.
    /// </summary>
    public int CheckQuorumTimeoutMs => FetchTimeoutMs * 3 / 2;

    /// <summary>Rejects settings Raft cannot work with.</summary>
    public void Validate()
    {
        if (Voters is null || Voters.Count == 0) throw new ArgumentException("a Raft quorum needs at least one voter");
        if (Voters.Any(v => v < 0)) throw new ArgumentException("voter ids must be non-negative");
        if (NodeId < 0) throw new ArgumentException("node id must be non-negative");
        if (ElectionTimeoutMs <= 0 || FetchTimeoutMs <= 0 || RetryBackoffMs <= 0 || ElectionBackoffMaxMs <= 0)
            throw new ArgumentException("Raft timeouts must be positive");
        if (FetchMaxWaitMs < 0 || FetchMaxWaitMs >= FetchTimeoutMs || FetchMaxWaitMs >= RequestTimeoutMs)
            throw new ArgumentException("the fetch max wait must be below the fetch and request timeouts");
        if (FetchMaxBytes <= 0 || SnapshotChunkBytes <= 0) throw new ArgumentException("fetch sizes must be positive");
    }
}
