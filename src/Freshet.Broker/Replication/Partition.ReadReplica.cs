namespace Freshet.Broker.Replication;

/// <summary>The leader's choice of the replica a consumer reads from (KIP-392 follower fetching).</summary>
public sealed partial class Partition
{
    /// <summary>
    /// On the leader: the broker a consumer in <paramref name="clientRack"/>, fetching at
    /// <paramref name="fetchOffset"/> on <paramref name="listener"/>, should read from instead of
    /// this one, or -1 to read here. With <see cref="ReplicaSelector.RackAware"/> the candidates are
    /// the followers in the committed ISR that have the offset as of their last fetch (log end at or
    /// past it, log start at or before it), on an unfenced broker the client can reach on its
    /// listener, in the client's rack. The leader wins when it is in that rack itself, or when there
    /// is no candidate; otherwise the most caught-up candidate does (largest log end offset, then
    /// most recently caught up, then highest id), as Kafka's RackAwareReplicaSelector picks.
    /// </summary>
    public int SelectReadReplica(ReplicaSelector selector, string? clientRack, long fetchOffset, string listener)
    {
        if (selector != ReplicaSelector.RackAware || string.IsNullOrEmpty(clientRack)) return -1;
        if (string.Equals(ReachableRack(LocalNodeId, listener), clientRack, StringComparison.Ordinal)) return -1;
        lock (_lock)
        {
            var reg = _registration;
            if (reg is null || reg.Leader != LocalNodeId) return -1;
            FollowerState? best = null;
            foreach (int id in reg.Isr)
            {
                if (id == LocalNodeId || !_followers.TryGetValue(id, out var s)) continue;
                if (s.LogEndOffset < fetchOffset || s.LogStartOffset > fetchOffset) continue;
                if (!string.Equals(ReachableRack(id, listener), clientRack, StringComparison.Ordinal)) continue;
                if (best is null || MoreCaughtUp(s, best)) best = s;
            }
            return best?.BrokerId ?? -1;
        }
    }

    /// <summary>
    /// Whether a fetch response carrying <paramref name="highWatermark"/> would tell follower
    /// <paramref name="replicaId"/> a high watermark it has not been sent yet (false for a broker that is
    /// not a follower here). With a replica selector the leader answers such a follower's fetch without
    /// waiting for data, so consumers reading from the follower see new records about as soon as those
    /// reading from the leader do.
    /// </summary>
    public bool FollowerLacksHighWatermark(int replicaId, long highWatermark)
    {
        lock (_lock) return _followers.TryGetValue(replicaId, out var s) && s.LastSentHighWatermark < highWatermark;
    }

    /// <summary>Records the high watermark a fetch response to follower <paramref name="replicaId"/> carried.</summary>
    public void NoteHighWatermarkSent(int replicaId, long highWatermark)
    {
        lock (_lock)
        {
            if (_followers.TryGetValue(replicaId, out var s)) s.LastSentHighWatermark = highWatermark;
        }
    }

    /// <summary>The rack of broker <paramref name="id"/> when it is unfenced and has an endpoint on <paramref name="listener"/>; null otherwise.</summary>
    private string? ReachableRack(int id, string listener)
    {
        if (_brokers(id) is not { Fenced: false } b) return null;
        foreach (var ep in b.Endpoints)
            if (ep.Name == listener) return b.Rack;
        return null;
    }

    private static bool MoreCaughtUp(FollowerState a, FollowerState b) =>
        a.LogEndOffset != b.LogEndOffset ? a.LogEndOffset > b.LogEndOffset
        : a.LastCaughtUpTimeMs != b.LastCaughtUpTimeMs ? a.LastCaughtUpTimeMs > b.LastCaughtUpTimeMs
        : a.BrokerId > b.BrokerId;
}
