using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Metadata.Raft;

// Requests from other nodes.
public sealed partial class RaftNode
{
    /// <summary>The leader id we report in answers: none while resigned.</summary>
    private int ReportedLeaderId => Leader.LeaderId ?? -1;

    private bool ClusterIdMatches(string? clusterId) =>
        clusterId is null || _config.ClusterId is null || clusterId == _config.ClusterId;

    // ------------------------------------------------------------------ Vote

    private VoteResponse HandleVote(VoteRequest r)
    {
        if (!ClusterIdMatches(r.ClusterId)) return RaftMessages.VoteResponse(ErrorCode.InconsistentClusterId, ErrorCode.None, -1, -1, false);
        var p = RaftMessages.Partition(r);
        if (p is null) return RaftMessages.VoteResponse(ErrorCode.InvalidRequest, ErrorCode.None, -1, -1, false);
        if (!_isVoter || Array.IndexOf(_voters, p.CandidateId) < 0 || (r.VoterId >= 0 && r.VoterId != NodeId))
            return RaftMessages.VoteResponse(ErrorCode.None, ErrorCode.InconsistentVoterSet, ReportedLeaderId, _epoch, false);
        if (p.CandidateEpoch < _epoch)
            return RaftMessages.VoteResponse(ErrorCode.None, ErrorCode.FencedLeaderEpoch, ReportedLeaderId, _epoch, false);

        // Raft's election restriction: only a candidate whose log is at least as up to date as ours.
        int lastEpoch = _log.LastFetchedEpoch;
        bool logOk = p.LastOffsetEpoch > lastEpoch || (p.LastOffsetEpoch == lastEpoch && p.LastOffset >= _log.EndOffset);
        bool granted;
        if (p.CandidateEpoch > _epoch)
        {
            // A newer epoch: whatever we were (even leader), we are unattached in it, and may vote once.
            granted = logOk;
            if (granted) TransitionToVoted(p.CandidateEpoch, p.CandidateId);
            else TransitionToUnattached(p.CandidateEpoch, keepElectionTimer: true);
        }
        else if (_state is UnattachedState { Role: RaftRole.Voted })
        {
            granted = _votedId == p.CandidateId;
        }
        else if (_state is UnattachedState)
        {
            granted = logOk;
            if (granted) TransitionToVoted(_epoch, p.CandidateId);
        }
        else
        {
            // Candidate (voted for itself), follower or leader of this epoch: the epoch's vote is spent.
            granted = false;
        }
        if (!granted && TestOnlyForgetVotes && logOk && p.CandidateId != NodeId && _state is not (LeaderState or ResignedState))
            granted = true;
        return RaftMessages.VoteResponse(ErrorCode.None, ErrorCode.None, ReportedLeaderId, _epoch, granted);
    }

    // ------------------------------------------------------------------ BeginQuorumEpoch / EndQuorumEpoch

    private BeginQuorumEpochResponse HandleBeginQuorumEpoch(BeginQuorumEpochRequest r)
    {
        if (!ClusterIdMatches(r.ClusterId)) return RaftMessages.BeginQuorumEpochResponse(ErrorCode.InconsistentClusterId, ErrorCode.None, -1, -1);
        var p = RaftMessages.Partition(r);
        if (p is null) return RaftMessages.BeginQuorumEpochResponse(ErrorCode.InvalidRequest, ErrorCode.None, -1, -1);
        if (p.LeaderEpoch < _epoch)
            return RaftMessages.BeginQuorumEpochResponse(ErrorCode.None, ErrorCode.FencedLeaderEpoch, ReportedLeaderId, _epoch);
        ObserveLeader(p.LeaderId, p.LeaderEpoch);
        return RaftMessages.BeginQuorumEpochResponse(ErrorCode.None, ErrorCode.None, ReportedLeaderId, _epoch);
    }

    private EndQuorumEpochResponse HandleEndQuorumEpoch(EndQuorumEpochRequest r)
    {
        if (!ClusterIdMatches(r.ClusterId)) return RaftMessages.EndQuorumEpochResponse(ErrorCode.InconsistentClusterId, ErrorCode.None, -1, -1);
        var p = RaftMessages.Partition(r);
        if (p is null) return RaftMessages.EndQuorumEpochResponse(ErrorCode.InvalidRequest, ErrorCode.None, -1, -1);
        if (p.LeaderEpoch < _epoch)
            return RaftMessages.EndQuorumEpochResponse(ErrorCode.None, ErrorCode.FencedLeaderEpoch, ReportedLeaderId, _epoch);
        // The leader of this (or a newer) epoch steps down: nobody leads it any more.
        if (p.LeaderEpoch > _epoch) TransitionToUnattached(p.LeaderEpoch);
        if (_isVoter && p.LeaderId != NodeId)
        {
            // Stand sooner the better placed we are among the successors the old leader named.
            int position = RaftMessages.PreferredSuccessors(p).ToList().IndexOf(NodeId);
            long at = _nowMs + ResignedLeaderBackoff(position);
            switch (_state)
            {
                case FollowerState f when _leaderId == p.LeaderId:
                    f.FetchDeadlineMs = Math.Min(f.FetchDeadlineMs, at);
                    break;
                case UnattachedState u:
                    u.ElectionDeadlineMs = Math.Min(u.ElectionDeadlineMs, at);
                    break;
            }
        }
        return RaftMessages.EndQuorumEpochResponse(ErrorCode.None, ErrorCode.None, ReportedLeaderId, _epoch);
    }

    /// <summary>The first successor stands at once; the others wait exponentially longer, randomized.</summary>
    private long ResignedLeaderBackoff(int position)
    {
        if (position < 0) return _config.ElectionTimeoutMs + _random.Next(_config.ElectionTimeoutMs);
        if (position == 0) return 0;
        long cap = Math.Min(_config.ElectionBackoffMaxMs, (long)_config.RetryBackoffMs << Math.Min(position, 20));
        return cap + _random.Next(_config.RetryBackoffMs);
    }

    // ------------------------------------------------------------------ Fetch (leader side)

    private enum FetchCheck { Valid, Diverging, Snapshot }

    /// <summary>
    /// Does a replica whose log ends at <paramref name="fetchOffset"/> with an entry of
    /// <paramref name="lastFetchedEpoch"/> hold a prefix of ours? If not, where our log for that epoch ends
    /// (it truncates there and asks again), or that it must load our snapshot.
    /// </summary>
    private FetchCheck CheckFetchPosition(long fetchOffset, int lastFetchedEpoch, out OffsetAndEpoch diverging)
    {
        diverging = OffsetAndEpoch.Unknown;
        if (fetchOffset < _log.LogStartOffset) return FetchCheck.Snapshot;
        var end = _log.EndOffsetForEpoch(lastFetchedEpoch);
        if (end.Epoch == lastFetchedEpoch && end.Offset >= fetchOffset) return FetchCheck.Valid;
        if (end.Epoch < 0 || end.Offset < _log.LogStartOffset) return FetchCheck.Snapshot;
        diverging = end;
        return FetchCheck.Diverging;
    }

    private void HandleFetch(FetchRequest r, Action<object> respond)
    {
        if (!ClusterIdMatches(r.ClusterId))
        {
            respond(RaftMessages.FetchResponse(ErrorCode.InconsistentClusterId));
            return;
        }
        var p = RaftMessages.Partition(r);
        int replicaId = RaftMessages.ReplicaId(r);
        if (p is null || replicaId < 0)
        {
            respond(RaftMessages.FetchResponse(ErrorCode.InvalidRequest));
            return;
        }
        if (_state is not LeaderState l || p.CurrentLeaderEpoch != _epoch)
        {
            var error = p.CurrentLeaderEpoch < _epoch ? ErrorCode.FencedLeaderEpoch
                : p.CurrentLeaderEpoch > _epoch ? ErrorCode.UnknownLeaderEpoch
                : ErrorCode.NotLeaderOrFollower;
            respond(RaftMessages.FetchResponse(RaftMessages.FetchPartition(error, ReportedLeaderId, _epoch, -1)));
            return;
        }
        if (!l.Replicas.TryGetValue(replicaId, out var progress))
        {
            progress = new ReplicaProgress(isVoter: false, _nowMs);
            l.Replicas[replicaId] = progress;
        }
        progress.LastFetchMs = _nowMs;

        var check = CheckFetchPosition(p.FetchOffset, p.LastFetchedEpoch, out var diverging);
        if (check == FetchCheck.Snapshot && _log.LatestSnapshotId is null)
        {
            // Only a malformed position gets here (a log without a snapshot starts at 0): start over at 0.
            check = FetchCheck.Diverging;
            diverging = new OffsetAndEpoch(_log.LogStartOffset, 0);
        }
        if (check != FetchCheck.Valid)
        {
            var partition = RaftMessages.FetchPartition(ErrorCode.None, NodeId, _epoch, _highWatermark);
            if (check == FetchCheck.Diverging)
            {
                partition.DivergingEpoch.Epoch = diverging.Epoch;
                partition.DivergingEpoch.EndOffset = diverging.Offset;
            }
            else
            {
                // Below our log start, or inconsistent before it: start over from our latest snapshot.
                var id = _log.LatestSnapshotId!.Value;
                partition.SnapshotId.EndOffset = id.Offset;
                partition.SnapshotId.Epoch = id.Epoch;
            }
            respond(RaftMessages.FetchResponse(partition));
            return;
        }

        progress.EndOffset = p.FetchOffset;
        if (p.FetchOffset >= _log.EndOffset) progress.LastCaughtUpMs = _nowMs;
        if (progress.IsVoter)
        {
            l.BeginEpoch.MarkDone(replicaId); // it knows who leads
            if (UpdateLeaderHighWatermark(l)) AnswerParkedFetches(l, hwMoved: true);
        }
        int maxBytes = Math.Min(p.PartitionMaxBytes > 0 ? p.PartitionMaxBytes : int.MaxValue, Math.Min(r.MaxBytes > 0 ? r.MaxBytes : int.MaxValue, _config.FetchMaxBytes));
        if (p.FetchOffset < _log.EndOffset || r.MaxWaitMs <= 0)
        {
            respond(RaftMessages.FetchResponse(FetchData(p.FetchOffset, maxBytes)));
            return;
        }
        long wait = Math.Min(r.MaxWaitMs, _config.FetchMaxWaitMs);
        l.Parked.Add(new ParkedFetch(replicaId, p.FetchOffset, maxBytes, _nowMs + wait, respond));
    }

    /// <summary>A successful fetch answer: whole batches from the offset and the high watermark.</summary>
    private FetchResponse.PartitionData FetchData(long fetchOffset, int maxBytes)
    {
        var partition = RaftMessages.FetchPartition(ErrorCode.None, NodeId, _epoch, _highWatermark);
        partition.LogStartOffset = _log.LogStartOffset;
        partition.Records = _log.ReadForFetch(fetchOffset, maxBytes);
        return partition;
    }

    /// <summary>
    /// The HW is the largest offset a majority of voters hold durably (the leader's flushed end, the
    /// followers' last valid fetch offsets), but only once it passes the start of this epoch: entries of
    /// older epochs are committed indirectly, by an entry of ours (Raft's figure 8).
    /// </summary>
    private bool UpdateLeaderHighWatermark(LeaderState l)
    {
        Span<long> ends = stackalloc long[_voters.Length];
        for (int i = 0; i < _voters.Length; i++)
            ends[i] = _voters[i] == NodeId ? DurableEndOffset : l.Replicas[_voters[i]].EndOffset;
        ends.Sort();
        long majorityEnd = ends[_voters.Length - Majority]; // ascending: the Majority-th largest
        return majorityEnd > l.EpochStartOffset && AdvanceHighWatermark(majorityEnd);
    }

    /// <summary>Answers parked fetches that have data, a new HW to learn (<paramref name="hwMoved"/>), or waited long enough.</summary>
    private void AnswerParkedFetches(LeaderState l, bool hwMoved)
    {
        if (l.Parked.Count == 0) return;
        var due = new List<ParkedFetch>();
        l.Parked.RemoveAll(f =>
        {
            bool answer = hwMoved || f.FetchOffset < _log.EndOffset || _nowMs >= f.DeadlineMs;
            if (answer) due.Add(f);
            return answer;
        });
        foreach (var f in due) f.Respond(RaftMessages.FetchResponse(FetchData(f.FetchOffset, f.MaxBytes)));
    }

    /// <summary>No longer leader: parked fetches learn the new epoch and leader.</summary>
    private void AnswerParkedFetchesLeaving(LeaderState l)
    {
        var parked = l.Parked.ToArray();
        l.Parked.Clear();
        foreach (var f in parked)
            f.Respond(RaftMessages.FetchResponse(RaftMessages.FetchPartition(ErrorCode.NotLeaderOrFollower, ReportedLeaderId, _epoch, -1)));
    }

    private void PollLeader(LeaderState l)
    {
        if (DurableEndOffset < _log.EndOffset) _log.Flush();
        bool hwMoved = UpdateLeaderHighWatermark(l);
        if (!HasQuorumContact(l))
        {
            // Check-quorum: a leader cut off from a majority steps down rather than lead in vain.
            TransitionToResigned(l);
            return;
        }
        AnswerParkedFetches(l, hwMoved);
        l.BeginEpoch.SendDue(_nowMs, _transport, BuildBeginQuorumEpochRequest);
    }

    private bool HasQuorumContact(LeaderState l)
    {
        int recent = 1; // ourselves
        foreach (int v in _voters)
            if (v != NodeId && _nowMs - l.Replicas[v].LastFetchMs <= _config.CheckQuorumTimeoutMs) recent++;
        return recent >= Majority;
    }

    private long LeaderNextPollMs(LeaderState l)
    {
        if (DurableEndOffset < _log.EndOffset) return _nowMs;
        long next = l.BeginEpoch.NextDueMs();
        foreach (var f in l.Parked) next = Math.Min(next, f.DeadlineMs);
        int needed = Majority - 1; // other voters that must have fetched recently
        if (needed > 0)
        {
            Span<long> times = stackalloc long[_voters.Length - 1];
            int n = 0;
            foreach (int v in _voters)
                if (v != NodeId) times[n++] = l.Replicas[v].LastFetchMs;
            times.Sort();
            next = Math.Min(next, times[n - needed] + _config.CheckQuorumTimeoutMs + 1);
        }
        return next;
    }

    // ------------------------------------------------------------------ FetchSnapshot, DescribeQuorum

    private FetchSnapshotResponse HandleFetchSnapshot(FetchSnapshotRequest r)
    {
        if (!ClusterIdMatches(r.ClusterId)) return RaftMessages.FetchSnapshotResponse(ErrorCode.InconsistentClusterId);
        var p = RaftMessages.Partition(r);
        if (p is null || r.ReplicaId < 0) return RaftMessages.FetchSnapshotResponse(ErrorCode.InvalidRequest);
        var id = new OffsetAndEpoch(p.SnapshotId.EndOffset, p.SnapshotId.Epoch);
        if (_state is not LeaderState l || p.CurrentLeaderEpoch != _epoch)
        {
            var error = p.CurrentLeaderEpoch < _epoch ? ErrorCode.FencedLeaderEpoch
                : p.CurrentLeaderEpoch > _epoch ? ErrorCode.UnknownLeaderEpoch
                : ErrorCode.NotLeaderOrFollower;
            return RaftMessages.FetchSnapshotResponse(RaftMessages.FetchSnapshotPartition(error, ReportedLeaderId, _epoch, id));
        }
        if (l.Replicas.TryGetValue(r.ReplicaId, out var progress)) progress.LastFetchMs = _nowMs;
        int maxBytes = Math.Min(r.MaxBytes > 0 ? r.MaxBytes : int.MaxValue, _config.SnapshotChunkBytes);
        if (!_log.TryReadSnapshotChunk(id, p.Position, maxBytes, out long size, out var chunk))
            return RaftMessages.FetchSnapshotResponse(RaftMessages.FetchSnapshotPartition(ErrorCode.SnapshotNotFound, NodeId, _epoch, id));
        var partition = RaftMessages.FetchSnapshotPartition(ErrorCode.None, NodeId, _epoch, id);
        partition.Size = size;
        partition.Position = p.Position;
        partition.UnalignedRecords = new RecordSet(chunk);
        return RaftMessages.FetchSnapshotResponse(partition);
    }

    private DescribeQuorumResponse HandleDescribeQuorum(DescribeQuorumRequest r)
    {
        if (!RaftMessages.AsksForMetadataPartition(r))
            return new DescribeQuorumResponse { ErrorCode = (short)ErrorCode.InvalidRequest, ErrorMessage = "only __cluster_metadata-0 is replicated by Raft" };
        var partition = new DescribeQuorumResponse.PartitionData { PartitionIndex = RaftMessages.PartitionIndex, LeaderEpoch = _epoch, LeaderId = ReportedLeaderId };
        if (_state is LeaderState l)
        {
            partition.HighWatermark = _highWatermark;
            foreach (int v in _voters)
            {
                partition.CurrentVoters.Add(v == NodeId
                    ? new DescribeQuorumResponse.ReplicaState { ReplicaId = v, LogEndOffset = _log.EndOffset, LastFetchTimestamp = _nowMs, LastCaughtUpTimestamp = _nowMs }
                    : ReplicaState(v, l.Replicas[v]));
            }
            foreach (var (id, progress) in l.Replicas.OrderBy(e => e.Key))
                if (!progress.IsVoter) partition.Observers.Add(ReplicaState(id, progress));
        }
        else
        {
            partition.ErrorCode = (short)ErrorCode.NotLeaderOrFollower;
            partition.ErrorMessage = ErrorCode.NotLeaderOrFollower.DefaultMessage();
        }
        return new DescribeQuorumResponse
        {
            Topics = [new DescribeQuorumResponse.TopicData { TopicName = RaftMessages.TopicName, Partitions = [partition] }],
        };
    }

    private static DescribeQuorumResponse.ReplicaState ReplicaState(int id, ReplicaProgress p) => new()
    {
        ReplicaId = id,
        LogEndOffset = p.EndOffset,
        LastFetchTimestamp = p.LastFetchMs,
        LastCaughtUpTimestamp = p.LastCaughtUpMs,
    };
}
