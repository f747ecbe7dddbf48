using Freshet.Protocol.Records;

namespace Freshet.Metadata.Raft;

/// <summary>
/// One node of the metadata quorum: KRaft's pull-based Raft (KIP-595). Voters elect a leader with Vote
/// requests; the leader announces itself with BeginQuorumEpoch and opens its epoch with a LeaderChange
/// control entry; followers and observers pull the log with Fetch (long-polled), are told where their
/// log diverges (DivergingEpoch) and truncate, or are sent to a snapshot (FetchSnapshot) when they are
/// below the leader's log start. The high watermark is the largest offset that a majority of voters
/// have durably, once it covers an entry of the leader's epoch.
/// <para>
/// Single-threaded and deterministic: the node does nothing by itself. Its driver calls
/// <see cref="Poll"/>, <see cref="HandleRequest"/>, <see cref="HandleResponse"/> and the leader API with
/// the current time, one call at a time, and sends what the node hands to <see cref="IRaftTransport"/>.
/// Time, randomness, the network, the log and the quorum-state file are all injected, so the same code
/// runs in production and in the simulation test.
/// </para>
/// Durability: the election state is written (<see cref="IQuorumStateStore"/>) before the node acts on
/// it or answers; followers flush their log before reporting an offset in their next Fetch; the
/// leader counts its own entries once flushed (in <see cref="Poll"/>). Failures of the log or the store
/// throw out of the node: the driver must stop it (Raft cannot continue on a node that forgot a vote).
/// </summary>
public sealed partial class RaftNode : IDisposable
{
    private readonly RaftConfig _config;
    private readonly IRaftLog _log;
    private readonly IQuorumStateStore _store;
    private readonly IRaftTransport _transport;
    private readonly IRaftListener _listener;
    private readonly Random _random;
    private readonly int[] _voters;
    private readonly bool _isVoter;
    private readonly PooledBufferWriter _scratch = new();

    private long _nowMs;
    private bool _started;
    private int _epoch;
    private int _leaderId = -1;
    private int _votedId = -1;
    private RoleState _state;
    private long _highWatermark;
    private long _nextDeliverOffset;
    private int _electionsLost;
    private LeaderAndEpoch _lastNotified = new(null, -1);

    /// <param name="random">Seeded by the caller: election timeouts and backoffs are drawn from it.</param>
    /// <param name="nowMs">The driver's clock now; all later calls pass times from the same clock.</param>
    public RaftNode(RaftConfig config, IRaftLog log, IQuorumStateStore store, IRaftTransport transport, IRaftListener listener,
        Random random, long nowMs)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        _config = config;
        _log = log ?? throw new ArgumentNullException(nameof(log));
        _store = store ?? throw new ArgumentNullException(nameof(store));
        _transport = transport ?? throw new ArgumentNullException(nameof(transport));
        _listener = listener ?? throw new ArgumentNullException(nameof(listener));
        _random = random ?? throw new ArgumentNullException(nameof(random));
        _voters = [.. config.Voters.Distinct().Order()];
        _isVoter = Array.IndexOf(_voters, config.NodeId) >= 0;
        _nowMs = nowMs;
        _highWatermark = log.LogStartOffset;
        _nextDeliverOffset = log.LogStartOffset;
        _state = InitialState(store.Read() ?? ElectionState.Initial);
    }

    // ------------------------------------------------------------------ what the driver sees

    public int NodeId => _config.NodeId;
    public bool IsVoter => _isVoter;
    public RaftRole Role => _state.Role;
    public int Epoch => _epoch;
    public LeaderAndEpoch Leader => new(_state is ResignedState || _leaderId < 0 ? null : _leaderId, _epoch);
    public bool IsLeader => _state is LeaderState;

    /// <summary>Offsets below this are committed, as far as this node knows. Never decreases within an incarnation.</summary>
    public long HighWatermark => _highWatermark;

    /// <summary>Offsets below this were handed to <see cref="IRaftListener.HandleCommit"/> (or a snapshot).</summary>
    public long CommittedOffsetDelivered => _nextDeliverOffset;

    public long LogEndOffset => _log.EndOffset;

    /// <summary>
    /// Test-only fault: the node grants every vote whose candidate log is up to date, ignoring the vote
    /// it already cast in the epoch. It breaks Raft; the simulation test proves its checker notices.
    /// </summary>
    internal bool TestOnlyForgetVotes { get; set; }

    /// <summary>
    /// Test-only fault: nothing is flushed, and the leader counts its unflushed end toward the high
    /// watermark, so a crash can lose committed entries. The simulation test proves its checker notices.
    /// </summary>
    internal bool TestOnlySkipFlush { get; set; }

    /// <summary>Where this node's log is durable (all of it under <see cref="TestOnlySkipFlush"/>).</summary>
    private long DurableEndOffset => TestOnlySkipFlush ? _log.EndOffset : _log.FlushedEndOffset;

    public override string ToString() => $"node {NodeId} {Role} epoch {_epoch} leader {_leaderId} hw {_highWatermark} end {_log.EndOffset}";

    // ------------------------------------------------------------------ driver entry points

    /// <summary>
    /// Runs the timers: elections, the follower's fetch timeout, the leader's check-quorum, sending the
    /// next Fetch, retries, answering parked fetches whose wait is over; flushes the leader's appends and
    /// advances the high watermark. Returns the time by which it wants to be polled again (it may be
    /// polled earlier; the driver also polls after every other call).
    /// </summary>
    public long Poll(long nowMs)
    {
        Enter(nowMs);
        switch (_state)
        {
            case UnattachedState u when _isVoter:
                if (nowMs >= u.ElectionDeadlineMs) BecomeCandidate();
                break;
            case UnattachedState u:
                if (u.FetchInFlight is null && nowMs >= u.NextFetchMs) SendDiscoveryFetch(u);
                break;
            case CandidateState c:
                if (nowMs >= (c.BackoffUntilMs ?? c.ElectionDeadlineMs)) BecomeCandidate();
                else if (c.BackoffUntilMs is null) c.Votes.SendDue(nowMs, _transport, BuildVoteRequest);
                break;
            case LeaderState l:
                PollLeader(l);
                break;
            case FollowerState f:
                if (nowMs >= f.FetchDeadlineMs)
                {
                    if (_isVoter) BecomeCandidate();
                    else TransitionToUnattached(_epoch);
                }
                else if (f.FetchInFlight is null && nowMs >= f.NextFetchMs) SendFetch(f);
                break;
            case ResignedState r:
                if (nowMs >= r.ElectionDeadlineMs) BecomeCandidate();
                else r.EndEpoch.SendDue(nowMs, _transport, BuildEndQuorumEpochRequest);
                break;
        }
        DeliverCommits();
        return NextPollMs();
    }

    /// <summary>
    /// Handles a request from another node and answers through <paramref name="respond"/>, now or (a
    /// parked Fetch) in a later call. <paramref name="fromNodeId"/> is informational (-1 when unknown):
    /// the node trusts the ids inside the request.
    /// </summary>
    public void HandleRequest(int fromNodeId, object request, long nowMs, Action<object> respond)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(respond);
        Enter(nowMs);
        switch (request)
        {
            case Protocol.Messages.VoteRequest r: respond(HandleVote(r)); break;
            case Protocol.Messages.BeginQuorumEpochRequest r: respond(HandleBeginQuorumEpoch(r)); break;
            case Protocol.Messages.EndQuorumEpochRequest r: respond(HandleEndQuorumEpoch(r)); break;
            case Protocol.Messages.FetchRequest r: HandleFetch(r, respond); break;
            case Protocol.Messages.FetchSnapshotRequest r: respond(HandleFetchSnapshot(r)); break;
            case Protocol.Messages.DescribeQuorumRequest r: respond(HandleDescribeQuorum(r)); break;
            default: throw new ArgumentException($"not a Raft request: {request.GetType().Name}", nameof(request));
        }
        DeliverCommits();
    }

    /// <summary>
    /// The answer to a request this node sent to <paramref name="fromNodeId"/> through the transport,
    /// or null when the send failed or timed out. Called exactly once per send.
    /// </summary>
    public void HandleResponse(int fromNodeId, object request, object? response, long nowMs)
    {
        ArgumentNullException.ThrowIfNull(request);
        Enter(nowMs);
        switch (request)
        {
            case Protocol.Messages.VoteRequest q: OnVoteResponse(fromNodeId, q, response as Protocol.Messages.VoteResponse); break;
            case Protocol.Messages.BeginQuorumEpochRequest q: OnBeginQuorumEpochResponse(fromNodeId, q, response as Protocol.Messages.BeginQuorumEpochResponse); break;
            case Protocol.Messages.EndQuorumEpochRequest q: OnEndQuorumEpochResponse(fromNodeId, q, response as Protocol.Messages.EndQuorumEpochResponse); break;
            case Protocol.Messages.FetchRequest q: OnFetchResponse(fromNodeId, q, response as Protocol.Messages.FetchResponse); break;
            case Protocol.Messages.FetchSnapshotRequest q: OnFetchSnapshotResponse(fromNodeId, q, response as Protocol.Messages.FetchSnapshotResponse); break;
            default: throw new ArgumentException($"not a Raft request: {request.GetType().Name}", nameof(request));
        }
        DeliverCommits();
    }

    // ------------------------------------------------------------------ leader API

    /// <summary>
    /// Appends the values as one batch when this node is the leader, and returns the offset of the last
    /// one (null, with the current epoch, when it is not the leader). The batch is flushed and starts
    /// counting toward the high watermark at the next <see cref="Poll"/>; it is committed when
    /// <see cref="IRaftListener.HandleCommit"/> delivers it.
    /// </summary>
    public long? TryAppend(IReadOnlyList<byte[]> recordValues, out int epoch)
    {
        ArgumentNullException.ThrowIfNull(recordValues);
        if (recordValues.Count == 0) throw new ArgumentException("append at least one record", nameof(recordValues));
        epoch = _epoch;
        if (_state is not LeaderState) return null;
        using var builder = new RecordBatchBuilder { BaseOffset = _log.EndOffset, PartitionLeaderEpoch = _epoch };
        foreach (var v in recordValues) builder.Append(_nowMs, null, v ?? throw new ArgumentException("a record value is null", nameof(recordValues)));
        return _log.AppendAsLeader(builder.Build(), _epoch);
    }

    /// <summary>
    /// Stores a snapshot of the state machine as of <paramref name="endOffset"/> (exclusive: the end of a
    /// committed batch already delivered to the listener) and deletes the log before it. Returns the
    /// snapshot id, or null when there is nothing new to snapshot.
    /// </summary>
    public OffsetAndEpoch? CreateSnapshot(long endOffset, ReadOnlyMemory<byte> data)
    {
        if (endOffset > _nextDeliverOffset)
            throw new ArgumentOutOfRangeException(nameof(endOffset), $"snapshot end {endOffset} is past what was delivered ({_nextDeliverOffset})");
        if (endOffset <= _log.LogStartOffset || endOffset <= (_log.LatestSnapshotId?.Offset ?? 0)) return null;
        var batches = _log.Read(endOffset - 1, 1);
        var last = new RecordBatch(batches.Span);
        if (last.NextOffset != endOffset) throw new ArgumentException($"snapshot end {endOffset} is not the end of a batch", nameof(endOffset));
        var id = new OffsetAndEpoch(endOffset, last.PartitionLeaderEpoch);
        _log.StoreSnapshot(new RaftSnapshot(id, data));
        _log.DeleteBeforeSnapshot(id);
        return id;
    }

    /// <summary>Graceful handoff: a leader stops accepting appends and asks the others to elect a successor.</summary>
    public void Resign(long nowMs)
    {
        Enter(nowMs);
        if (_state is LeaderState l) TransitionToResigned(l);
    }

    public void Dispose()
    {
        if (_state is FollowerState { Snapshot: { } s }) s.Dispose();
        _scratch.Dispose();
    }

    // ------------------------------------------------------------------ transitions

    private void Enter(long nowMs)
    {
        if (nowMs > _nowMs) _nowMs = nowMs;
        if (_started) return;
        _started = true;
        if (_log.LatestSnapshotId is { } id && id.Offset >= _log.LogStartOffset)
        {
            var snapshot = _log.ReadSnapshot(id) ?? throw new InvalidDataException($"snapshot {id} is listed but cannot be read");
            _highWatermark = Math.Max(_highWatermark, id.Offset);
            _nextDeliverOffset = id.Offset;
            _listener.HandleSnapshot(snapshot);
        }
        NotifyLeaderChange();
    }

    private RoleState InitialState(ElectionState s)
    {
        _epoch = s.Epoch;
        _votedId = s.VotedId;
        _leaderId = s.LeaderId;
        if (s.LeaderId == NodeId && _isVoter)
        {
            // We led this epoch before the restart and may have lost appends: never lead it again.
            return new ResignedState(ElectionDeadline(), new PeerRequests(OtherVoters())) { Successors = [.. OtherVoters()] };
        }
        if (s.LeaderId >= 0 && s.LeaderId != NodeId) return new FollowerState(_nowMs + _config.FetchTimeoutMs, _nowMs);
        _leaderId = -1;
        if (s.VotedId == NodeId && _isVoter)
        {
            var c = new CandidateState(ElectionDeadline(), new PeerRequests(OtherVoters()));
            c.Granted.Add(NodeId);
            return c;
        }
        return new UnattachedState(ElectionDeadline(), voted: s.VotedId >= 0);
    }

    private void Persist(int epoch, int leaderId, int votedId)
    {
        _store.Write(new ElectionState(epoch, leaderId, votedId));
        _epoch = epoch;
        _leaderId = leaderId;
        _votedId = votedId;
    }

    private void SetState(RoleState next)
    {
        if (_state is LeaderState l && next is not LeaderState) AnswerParkedFetchesLeaving(l);
        if (_state is FollowerState { Snapshot: { } s }) s.Dispose();
        _state = next;
        NotifyLeaderChange();
    }

    private void NotifyLeaderChange()
    {
        var now = Leader;
        if (now == _lastNotified) return;
        _lastNotified = now;
        _listener.HandleLeaderChange(now);
    }

    /// <param name="keepElectionTimer">
    /// True when a candidate we refused moved us to its epoch: as in Raft, only a granted vote or a live
    /// leader resets the election timer, so a candidate with a stale log cannot keep the up-to-date
    /// voters from ever timing out (each of its elections would otherwise restart their timers).
    /// </param>
    private void TransitionToUnattached(int epoch, bool keepElectionTimer = false)
    {
        long deadline = (keepElectionTimer ? CurrentElectionDeadline() : null) ?? ElectionDeadline();
        Persist(epoch, -1, -1);
        SetState(new UnattachedState(deadline, voted: false) { NextFetchMs = _nowMs });
    }

    /// <summary>When this voter would stand for election if nothing happened, if its role has such a timer.</summary>
    private long? CurrentElectionDeadline() => _state switch
    {
        UnattachedState u => u.ElectionDeadlineMs,
        CandidateState c => c.BackoffUntilMs ?? c.ElectionDeadlineMs,
        FollowerState f => f.FetchDeadlineMs,
        ResignedState r => r.ElectionDeadlineMs,
        _ => null,
    };

    private void TransitionToVoted(int epoch, int candidateId)
    {
        Persist(epoch, -1, candidateId);
        SetState(new UnattachedState(ElectionDeadline(), voted: true));
    }

    private void TransitionToFollower(int epoch, int leaderId)
    {
        Persist(epoch, leaderId, epoch == _epoch ? _votedId : -1);
        _electionsLost = 0;
        SetState(new FollowerState(_nowMs + _config.FetchTimeoutMs, _nowMs));
    }

    private void BecomeCandidate()
    {
        if (!_isVoter) throw new InvalidOperationException("an observer never stands for election");
        if (_state is CandidateState { BackoffUntilMs: not null }) _electionsLost++;
        Persist(_epoch + 1, -1, NodeId);
        var c = new CandidateState(ElectionDeadline(), new PeerRequests(OtherVoters()));
        c.Granted.Add(NodeId);
        SetState(c);
        if (c.Granted.Count >= Majority) BecomeLeader(c);
        else c.Votes.SendDue(_nowMs, _transport, BuildVoteRequest);
    }

    private void BecomeLeader(CandidateState c)
    {
        Persist(_epoch, NodeId, NodeId);
        _electionsLost = 0;
        var l = new LeaderState(_log.EndOffset, _nowMs, new PeerRequests(OtherVoters()), [.. c.Granted.Order()]);
        foreach (int v in _voters) if (v != NodeId) l.Replicas[v] = new ReplicaProgress(isVoter: true, _nowMs);
        SetState(l);
        _log.AppendAsLeader(ControlRecords.BuildLeaderChangeBatch(_log.EndOffset, _epoch, _nowMs, NodeId, _voters, l.GrantingVoters), _epoch);
        l.BeginEpoch.SendDue(_nowMs, _transport, BuildBeginQuorumEpochRequest);
    }

    private void TransitionToResigned(LeaderState l)
    {
        // Successors in order of how far their logs reach: the best placed stands first.
        int[] successors = [.. l.Replicas.Where(r => r.Value.IsVoter).OrderByDescending(r => r.Value.EndOffset).ThenBy(r => r.Key).Select(r => r.Key)];
        var r = new ResignedState(ElectionDeadline(), new PeerRequests(successors)) { Successors = successors };
        SetState(r);
        r.EndEpoch.SendDue(_nowMs, _transport, BuildEndQuorumEpochRequest);
    }

    /// <summary>
    /// A request or response told us that <paramref name="leaderId"/> (or nobody, -1) leads
    /// <paramref name="epoch"/>. A newer epoch is always adopted; in our own epoch, a leader we did not
    /// know is followed.
    /// </summary>
    private void ObserveLeader(int leaderId, int epoch)
    {
        if (epoch > _epoch)
        {
            if (leaderId >= 0 && leaderId != NodeId) TransitionToFollower(epoch, leaderId);
            else TransitionToUnattached(epoch);
        }
        else if (epoch == _epoch && leaderId >= 0 && leaderId != NodeId && _state is UnattachedState or CandidateState)
        {
            TransitionToFollower(epoch, leaderId);
        }
    }

    // ------------------------------------------------------------------ timers and helpers

    private int Majority => _voters.Length / 2 + 1;

    private IEnumerable<int> OtherVoters() => _voters.Where(v => v != NodeId);

    /// <summary>Election timeout, randomized as KRaft does: base + [0, base). Immediate for a quorum of one.</summary>
    private long ElectionDeadline() =>
        _voters.Length == 1 && _isVoter ? _nowMs : _nowMs + _config.ElectionTimeoutMs + _random.Next(_config.ElectionTimeoutMs);

    /// <summary>After a lost election: a random wait whose cap doubles per loss, up to the election backoff max.</summary>
    private long ElectionBackoff()
    {
        int cap = (int)Math.Min(_config.ElectionBackoffMaxMs, (long)_config.RetryBackoffMs << Math.Min(_electionsLost + 1, 20));
        return _nowMs + 1 + _random.Next(Math.Max(cap, 1));
    }

    private long NextPollMs()
    {
        long next = _state switch
        {
            UnattachedState u when _isVoter => u.ElectionDeadlineMs,
            UnattachedState u => u.FetchInFlight is null ? u.NextFetchMs : long.MaxValue,
            CandidateState c => c.BackoffUntilMs ?? Math.Min(c.ElectionDeadlineMs, c.Votes.NextDueMs()),
            LeaderState l => LeaderNextPollMs(l),
            FollowerState f => Math.Min(f.FetchDeadlineMs, f.FetchInFlight is null ? f.NextFetchMs : long.MaxValue),
            ResignedState r => Math.Min(r.ElectionDeadlineMs, r.EndEpoch.NextDueMs()),
            _ => long.MaxValue,
        };
        return Math.Max(next, _nowMs);
    }

    /// <summary>Raises the high watermark (never lowers it) and returns whether it moved.</summary>
    private bool AdvanceHighWatermark(long hw)
    {
        if (hw <= _highWatermark) return false;
        _highWatermark = hw;
        return true;
    }

    /// <summary>Hands every whole batch below the high watermark not yet delivered to the listener.</summary>
    private void DeliverCommits()
    {
        long limit = Math.Min(_highWatermark, _log.EndOffset);
        while (_nextDeliverOffset < limit)
        {
            if (_nextDeliverOffset < _log.LogStartOffset)
                throw new InvalidOperationException($"node {NodeId}: committed offset {_nextDeliverOffset} is below the log start {_log.LogStartOffset}");
            var bytes = _log.Read(_nextDeliverOffset, 1 << 20);
            if (bytes.IsEmpty) break;
            int pos = 0;
            bool progressed = false;
            while (pos < bytes.Length)
            {
                var span = bytes.Span[pos..];
                int size = RecordBatch.PeekSize(span);
                var batch = new RecordBatch(span[..size]);
                pos += size;
                if (batch.NextOffset <= _nextDeliverOffset) continue;
                if (batch.NextOffset > limit) break;
                if (!batch.IsControl)
                {
                    var entries = new List<RaftEntry>(batch.RecordsCount);
                    foreach (var r in new BatchRecords(span[..size], _scratch))
                        entries.Add(new RaftEntry(r.Offset, batch.PartitionLeaderEpoch, r.Record.ValueIsNull ? [] : r.Record.Value.ToArray()));
                    _listener.HandleCommit(entries);
                }
                _nextDeliverOffset = batch.NextOffset;
                progressed = true;
            }
            if (!progressed) break;
        }
    }
}
