using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;

namespace Freshet.Metadata.Raft;

public sealed partial class RaftNode
{
    /// <summary>
    /// What a node keeps only while in one role. A transition replaces the object, which also forgets
    /// its requests in flight: a response to one of them no longer matches and is ignored (but the epoch
    /// and leader it carries are still learned).
    /// </summary>
    private abstract class RoleState
    {
        public abstract RaftRole Role { get; }
    }

    /// <summary>Unattached (no leader known in the epoch), possibly with a vote cast (Voted).</summary>
    private sealed class UnattachedState(long electionDeadlineMs, bool voted) : RoleState
    {
        public override RaftRole Role => voted ? RaftRole.Voted : RaftRole.Unattached;
        /// <summary>For a voter: when to stand as candidate.</summary>
        public long ElectionDeadlineMs { get; set; } = electionDeadlineMs;
        /// <summary>For an observer: its discovery Fetch to a voter in flight.</summary>
        public object? FetchInFlight { get; set; }
        public long NextFetchMs { get; set; }
        public int NextBootstrapIndex { get; set; }
    }

    private sealed class CandidateState(long electionDeadlineMs, PeerRequests votes) : RoleState
    {
        public override RaftRole Role => RaftRole.Candidate;
        public long ElectionDeadlineMs { get; } = electionDeadlineMs;
        public PeerRequests Votes { get; } = votes;
        public HashSet<int> Granted { get; } = [];
        public HashSet<int> Rejected { get; } = [];
        /// <summary>Set once the election is lost (a majority said no): when to try again in a new epoch.</summary>
        public long? BackoffUntilMs { get; set; }
    }

    private sealed class LeaderState(long epochStartOffset, long startMs, PeerRequests beginEpoch, int[] grantingVoters) : RoleState
    {
        public override RaftRole Role => RaftRole.Leader;
        /// <summary>Offset of the LeaderChange entry that opened the epoch: the HW moves only past it.</summary>
        public long EpochStartOffset { get; } = epochStartOffset;
        public long StartMs { get; } = startMs;
        public PeerRequests BeginEpoch { get; } = beginEpoch;
        public int[] GrantingVoters { get; } = grantingVoters;
        public Dictionary<int, ReplicaProgress> Replicas { get; } = [];
        public List<ParkedFetch> Parked { get; } = [];
    }

    /// <summary>What the leader knows of a replica from its fetches.</summary>
    private sealed class ReplicaProgress(bool isVoter, long nowMs)
    {
        public bool IsVoter { get; } = isVoter;
        /// <summary>The replica's log end (its last valid fetch offset; durable on the replica); -1 before one.</summary>
        public long EndOffset { get; set; } = -1;
        /// <summary>Last fetch in this epoch; voters start at the leader's start, so check-quorum grants a grace period.</summary>
        public long LastFetchMs { get; set; } = isVoter ? nowMs : -1;
        public long LastCaughtUpMs { get; set; } = -1;
    }

    /// <summary>A follower's Fetch with nothing new to return, held until data, a new HW, or its max wait.</summary>
    private sealed record ParkedFetch(int ReplicaId, long FetchOffset, int MaxBytes, long DeadlineMs, Action<object> Respond);

    private sealed class FollowerState(long fetchDeadlineMs, long nowMs) : RoleState
    {
        public override RaftRole Role => RaftRole.Follower;
        /// <summary>When the leader counts as lost (fetch timeout since the last good answer).</summary>
        public long FetchDeadlineMs { get; set; } = fetchDeadlineMs;
        public object? FetchInFlight { get; set; }
        public long NextFetchMs { get; set; } = nowMs;
        /// <summary>The snapshot being downloaded, if the leader said our fetch offset is below its log start.</summary>
        public PendingSnapshot? Snapshot { get; set; }
    }

    private sealed class PendingSnapshot(OffsetAndEpoch id) : IDisposable
    {
        public OffsetAndEpoch Id { get; } = id;
        public PooledBufferWriter Data { get; } = new();
        public void Dispose() => Data.Dispose();
    }

    private sealed class ResignedState(long electionDeadlineMs, PeerRequests endEpoch) : RoleState
    {
        public override RaftRole Role => RaftRole.Resigned;
        public long ElectionDeadlineMs { get; } = electionDeadlineMs;
        public PeerRequests EndEpoch { get; } = endEpoch;
        /// <summary>The voters sent in EndQuorumEpoch, best placed first.</summary>
        public int[] Successors { get; init; } = [];
    }

    /// <summary>
    /// One kind of request sent to each of a set of peers until each answers: votes, BeginQuorumEpoch,
    /// EndQuorumEpoch. At most one in flight per peer; a failed send is retried after a backoff.
    /// </summary>
    private sealed class PeerRequests
    {
        private readonly SortedDictionary<int, Peer> _peers = [];

        private sealed class Peer
        {
            public object? InFlight;
            public long RetryAtMs;
            public bool Done;
        }

        public PeerRequests(IEnumerable<int> peers)
        {
            foreach (int id in peers) _peers[id] = new Peer();
        }

        /// <summary>Sends to every peer that is neither done, nor waiting on a request, nor backing off.</summary>
        public void SendDue<TResponse>(long nowMs, IRaftTransport transport, Func<int, IApiRequest<TResponse>> build) where TResponse : IApiMessage, new()
        {
            foreach (var (id, p) in _peers)
            {
                if (p.Done || p.InFlight is not null || nowMs < p.RetryAtMs) continue;
                var request = build(id);
                p.InFlight = request;
                transport.Send(id, request);
            }
        }

        /// <summary>True when <paramref name="request"/> is the one in flight to <paramref name="id"/>; it is no longer.</summary>
        public bool Complete(int id, object request)
        {
            if (!_peers.TryGetValue(id, out var p) || !ReferenceEquals(p.InFlight, request)) return false;
            p.InFlight = null;
            return true;
        }

        public void MarkDone(int id)
        {
            if (_peers.TryGetValue(id, out var p)) p.Done = true;
        }

        public void RetryLater(int id, long atMs)
        {
            if (_peers.TryGetValue(id, out var p)) p.RetryAtMs = atMs;
        }

        /// <summary>Earliest time a send is due, or long.MaxValue.</summary>
        public long NextDueMs()
        {
            long next = long.MaxValue;
            foreach (var p in _peers.Values)
                if (!p.Done && p.InFlight is null) next = Math.Min(next, p.RetryAtMs);
            return next;
        }
    }
}
