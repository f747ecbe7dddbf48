using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;

namespace Freshet.Metadata.Raft;

// Requests this node sends, and their responses.
public sealed partial class RaftNode
{
    private VoteRequest BuildVoteRequest(int voterId) =>
        RaftMessages.VoteRequest(_config.ClusterId, voterId, _epoch, NodeId, new OffsetAndEpoch(_log.EndOffset, _log.LastFetchedEpoch));

    private BeginQuorumEpochRequest BuildBeginQuorumEpochRequest(int voterId) =>
        RaftMessages.BeginQuorumEpochRequest(_config.ClusterId, voterId, NodeId, _epoch);

    private EndQuorumEpochRequest BuildEndQuorumEpochRequest(int voterId) =>
        RaftMessages.EndQuorumEpochRequest(_config.ClusterId, NodeId, _epoch, _state is ResignedState r ? r.Successors : []);

    private void SendFetch(FollowerState f)
    {
        if (f.Snapshot is { } s)
        {
            var request = RaftMessages.FetchSnapshotRequest(_config.ClusterId, NodeId, _epoch, s.Id, s.Data.WrittenCount, _config.SnapshotChunkBytes);
            f.FetchInFlight = request;
            _transport.Send(_leaderId, request);
        }
        else
        {
            var request = RaftMessages.FetchRequest(_config.ClusterId, NodeId, _epoch, _log.EndOffset, _log.LastFetchedEpoch, _config.FetchMaxWaitMs, _config.FetchMaxBytes);
            f.FetchInFlight = request;
            _transport.Send(_leaderId, request);
        }
    }

    /// <summary>An observer that knows no leader asks the voters in turn; any answer names the leader they know.</summary>
    private void SendDiscoveryFetch(UnattachedState u)
    {
        if (u.NextBootstrapIndex == 0) u.NextBootstrapIndex = 1 + _random.Next(_voters.Length);
        int voter = _voters[u.NextBootstrapIndex++ % _voters.Length];
        var request = RaftMessages.FetchRequest(_config.ClusterId, NodeId, _epoch, _log.EndOffset, _log.LastFetchedEpoch, 0, _config.FetchMaxBytes);
        u.FetchInFlight = request;
        _transport.Send(voter, request);
    }

    // ------------------------------------------------------------------ Vote

    private void OnVoteResponse(int from, VoteRequest request, VoteResponse? response)
    {
        var c = _state as CandidateState;
        bool mine = c is not null && c.Votes.Complete(from, request);
        var p = response is { ErrorCode: 0 } ? RaftMessages.Partition(response) : null;
        if (p is null)
        {
            if (mine) c!.Votes.RetryLater(from, _nowMs + _config.RetryBackoffMs);
            return;
        }
        var before = _state;
        ObserveLeader(p.LeaderId, p.LeaderEpoch);
        if (!mine || _state != before || RaftMessages.Partition(request)?.CandidateEpoch != _epoch) return;
        if (p.ErrorCode != (short)ErrorCode.None)
        {
            c!.Votes.RetryLater(from, _nowMs + _config.RetryBackoffMs);
            return;
        }
        c!.Votes.MarkDone(from);
        if (p.VoteGranted)
        {
            c.Granted.Add(from);
            if (c.Granted.Count >= Majority && c.BackoffUntilMs is null) BecomeLeader(c);
        }
        else
        {
            c.Rejected.Add(from);
            // Lost when too many said no for a majority to remain: wait, then stand again in a new epoch.
            if (c.Rejected.Count > _voters.Length - Majority && c.BackoffUntilMs is null) c.BackoffUntilMs = ElectionBackoff();
        }
    }

    // ------------------------------------------------------------------ BeginQuorumEpoch / EndQuorumEpoch

    private void OnBeginQuorumEpochResponse(int from, BeginQuorumEpochRequest request, BeginQuorumEpochResponse? response)
    {
        var l = _state as LeaderState;
        bool mine = l is not null && l.BeginEpoch.Complete(from, request);
        var p = response is { ErrorCode: 0 } ? RaftMessages.Partition(response) : null;
        if (p is not null) ObserveLeader(p.LeaderId, p.LeaderEpoch);
        if (!mine || _state != l) return;
        if (p is { ErrorCode: 0 }) l!.BeginEpoch.MarkDone(from);
        else l!.BeginEpoch.RetryLater(from, _nowMs + _config.RetryBackoffMs);
    }

    private void OnEndQuorumEpochResponse(int from, EndQuorumEpochRequest request, EndQuorumEpochResponse? response)
    {
        var r = _state as ResignedState;
        bool mine = r is not null && r.EndEpoch.Complete(from, request);
        var p = response is { ErrorCode: 0 } ? RaftMessages.Partition(response) : null;
        if (p is not null) ObserveLeader(p.LeaderId, p.LeaderEpoch);
        if (!mine || _state != r) return;
        if (p is not null) r!.EndEpoch.MarkDone(from);
        else r!.EndEpoch.RetryLater(from, _nowMs + _config.RetryBackoffMs);
    }

    // ------------------------------------------------------------------ Fetch (follower side)

    private void OnFetchResponse(int from, FetchRequest request, FetchResponse? response)
    {
        var p = response is { ErrorCode: 0 } ? RaftMessages.Partition(response) : null;
        if (_state is UnattachedState u && ReferenceEquals(u.FetchInFlight, request))
        {
            // An observer's discovery fetch: learn the leader; the data is fetched again from it.
            u.FetchInFlight = null;
            u.NextFetchMs = _nowMs + _config.RetryBackoffMs;
            if (p is not null) ObserveLeader(p.CurrentLeader.LeaderId, p.CurrentLeader.LeaderEpoch);
            return;
        }
        if (_state is not FollowerState f || !ReferenceEquals(f.FetchInFlight, request))
        {
            if (p is not null) ObserveLeader(p.CurrentLeader.LeaderId, p.CurrentLeader.LeaderEpoch);
            return;
        }
        f.FetchInFlight = null;
        if (p is null)
        {
            f.NextFetchMs = _nowMs + _config.RetryBackoffMs;
            return;
        }
        ObserveLeader(p.CurrentLeader.LeaderId, p.CurrentLeader.LeaderEpoch);
        if (_state != f) return;
        if (p.ErrorCode != (short)ErrorCode.None || p.CurrentLeader.LeaderId != _leaderId || p.CurrentLeader.LeaderEpoch != _epoch)
        {
            f.NextFetchMs = _nowMs + _config.RetryBackoffMs;
            return;
        }

        // A good answer from our leader: it is alive.
        f.FetchDeadlineMs = _nowMs + _config.FetchTimeoutMs;
        f.NextFetchMs = _nowMs;
        if (p.DivergingEpoch.EndOffset >= 0 && p.DivergingEpoch.Epoch >= 0)
        {
            TruncateToDivergence(new OffsetAndEpoch(p.DivergingEpoch.EndOffset, p.DivergingEpoch.Epoch));
            return;
        }
        if (p.SnapshotId.EndOffset >= 0 && p.SnapshotId.Epoch >= 0)
        {
            f.Snapshot?.Dispose();
            f.Snapshot = new PendingSnapshot(new OffsetAndEpoch(p.SnapshotId.EndOffset, p.SnapshotId.Epoch));
            return;
        }
        var records = p.Records ?? Protocol.Wire.RecordSet.Empty;
        if (records.IsExternal) throw new ArgumentException("a received fetch response must hold its records in memory", nameof(response));
        if (records.Length > 0)
        {
            ValidateBatches(records.Memory.Span);
            _log.AppendAsFollower(records.Memory);
            // Durable before our next Fetch reports the new end offset, which the leader counts toward the HW.
            if (!TestOnlySkipFlush) _log.Flush();
        }
        if (p.HighWatermark >= 0) AdvanceHighWatermark(Math.Min(p.HighWatermark, _log.EndOffset));
    }

    /// <summary>Whole, well-formed batches with valid CRCs, or an exception (the response is dropped).</summary>
    private static void ValidateBatches(ReadOnlySpan<byte> records)
    {
        int pos = 0;
        while (pos < records.Length)
        {
            var rest = records[pos..];
            if (rest.Length < RecordBatch.HeaderSize) throw new InvalidDataException("partial record batch in a fetch response");
            int size = RecordBatch.PeekSize(rest);
            if (size < RecordBatch.HeaderSize || size > rest.Length) throw new InvalidDataException("partial record batch in a fetch response");
            var batch = new RecordBatch(rest[..size]);
            if (batch.Magic != RecordBatch.CurrentMagic || !batch.IsCrcValid) throw new InvalidDataException($"corrupt record batch at offset {batch.BaseOffset}");
            pos += size;
        }
    }

    /// <summary>
    /// The leader's log for <paramref name="diverging"/>.Epoch ends at its offset: we keep at most that and
    /// at most where our own entries of that epoch end, then fetch again (and may be told to go further back).
    /// </summary>
    private void TruncateToDivergence(OffsetAndEpoch diverging)
    {
        var local = _log.EndOffsetForEpoch(diverging.Epoch);
        long offset = local.Epoch < 0 ? _log.LogStartOffset : Math.Min(diverging.Offset, local.Offset);
        offset = Math.Max(offset, _log.LogStartOffset);
        _log.TruncateTo(offset);
        if (_log.EndOffset < _highWatermark)
            throw new InvalidOperationException($"node {NodeId}: truncating to {_log.EndOffset} would drop committed entries below {_highWatermark}");
    }

    // ------------------------------------------------------------------ FetchSnapshot

    private void OnFetchSnapshotResponse(int from, FetchSnapshotRequest request, FetchSnapshotResponse? response)
    {
        var p = response is { ErrorCode: 0 } ? RaftMessages.Partition(response) : null;
        if (_state is not FollowerState f || !ReferenceEquals(f.FetchInFlight, request))
        {
            if (p is not null) ObserveLeader(p.CurrentLeader.LeaderId, p.CurrentLeader.LeaderEpoch);
            return;
        }
        f.FetchInFlight = null;
        if (p is null)
        {
            f.NextFetchMs = _nowMs + _config.RetryBackoffMs;
            return;
        }
        ObserveLeader(p.CurrentLeader.LeaderId, p.CurrentLeader.LeaderEpoch);
        if (_state != f) return;
        var s = f.Snapshot;
        if (p.ErrorCode is (short)ErrorCode.SnapshotNotFound or (short)ErrorCode.PositionOutOfRange || s is null
            || s.Id != new OffsetAndEpoch(p.SnapshotId.EndOffset, p.SnapshotId.Epoch) || p.Position != s.Data.WrittenCount)
        {
            // The leader has a newer snapshot now (or we lost track): a Fetch tells us which.
            s?.Dispose();
            f.Snapshot = null;
            f.NextFetchMs = _nowMs + (p.ErrorCode == 0 ? 0 : _config.RetryBackoffMs);
            return;
        }
        if (p.ErrorCode != (short)ErrorCode.None)
        {
            f.NextFetchMs = _nowMs + _config.RetryBackoffMs;
            return;
        }
        f.FetchDeadlineMs = _nowMs + _config.FetchTimeoutMs;
        f.NextFetchMs = _nowMs;
        var chunk = p.UnalignedRecords ?? Protocol.Wire.RecordSet.Empty;
        if (chunk.IsExternal) throw new ArgumentException("a received snapshot chunk must be in memory", nameof(response));
        if (chunk.Length == 0 && s.Data.WrittenCount < p.Size)
        {
            f.NextFetchMs = _nowMs + _config.RetryBackoffMs;
            return;
        }
        s.Data.Write(chunk.Memory.Span);
        if (s.Data.WrittenCount < p.Size) return;
        f.Snapshot = null;
        using (s) InstallSnapshot(new RaftSnapshot(s.Id, s.Data.ToArray()));
    }

    /// <summary>A downloaded snapshot replaces our whole log; the state machine reloads from it.</summary>
    private void InstallSnapshot(RaftSnapshot snapshot)
    {
        if (snapshot.Id.Offset <= _nextDeliverOffset) return; // we already have all it holds
        _log.StoreSnapshot(snapshot);
        _log.ResetToSnapshot(snapshot.Id);
        AdvanceHighWatermark(snapshot.Id.Offset);
        _nextDeliverOffset = snapshot.Id.Offset;
        _listener.HandleSnapshot(snapshot);
    }
}
