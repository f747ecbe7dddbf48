using System.Collections.Immutable;
using Freshet.Metadata.Controller;
using Freshet.Metadata.Image;
using Freshet.Protocol;
using Freshet.Protocol.Wire;
using Freshet.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Broker.Replication;

/// <summary>What applying a registration did to this replica's role.</summary>
public enum PartitionTransition
{
    /// <summary>Same role, same leader and epoch (an ISR or replica-set change, or nothing).</summary>
    None,

    /// <summary>This replica became the leader.</summary>
    BecameLeader,

    /// <summary>Still the leader, at a new leader epoch.</summary>
    LeaderEpochBumped,

    /// <summary>This replica became a follower (it led, or is new).</summary>
    BecameFollower,

    /// <summary>Still a follower, of a new leader or at a new leader epoch.</summary>
    LeaderChanged,
}

/// <summary>What the leader knows of one follower (Kafka's Replica state), guarded by the partition's lock.</summary>
public sealed class FollowerState(int brokerId)
{
    public int BrokerId { get; } = brokerId;

    /// <summary>The follower's log end offset as of its last fetch (its fetch offset); -1 until it fetches in this leader epoch.</summary>
    public long LogEndOffset { get; internal set; } = -1;

    public long LogStartOffset { get; internal set; } = -1;

    /// <summary>When the follower last had everything the leader had (Kafka's lastCaughtUpTimeMs).</summary>
    public long LastCaughtUpTimeMs { get; internal set; }

    public long LastFetchTimeMs { get; internal set; }

    /// <summary>The leader's log end offset when the follower last fetched.</summary>
    public long LastFetchLeaderLogEndOffset { get; internal set; } = -1;

    /// <summary>The broker epoch the follower fetched with (KIP-903), -1 when not sent.</summary>
    public long BrokerEpoch { get; internal set; } = -1;

    /// <summary>The high watermark the last fetch response to the follower carried; -1 before the first in this leader epoch.</summary>
    public long LastSentHighWatermark { get; internal set; } = -1;

    /// <summary>Has everything the leader has, or had everything the leader had within the last <paramref name="maxLagMs"/>.</summary>
    public bool IsCaughtUp(long leaderEndOffset, long nowMs, long maxLagMs) =>
        LogEndOffset == leaderEndOffset || nowMs - LastCaughtUpTimeMs <= maxLagMs;
}

/// <summary>
/// A partition replica on this broker (Kafka's Partition): its log, its place in the replica set
/// (leader or follower), the leader epoch, the ISR, and the high watermark that decides what
/// consumers see and when acks=all produces complete.
///
/// <para>
/// As leader it tracks every follower's fetch progress (<see cref="FollowerState"/>); the high
/// watermark is the smallest log end offset over the ISR (and over followers caught up enough to
/// be about to join it), the leader's own end counting only up to what is on disk when fsync per
/// append is on (<see cref="ReplicableEndOffset"/>; followers fetch only that far too, see there). Followers that fall behind for replica.lag.time.max.ms are proposed for removal
/// from the ISR, followers that reach the high watermark in the current epoch for addition, through
/// <see cref="IAlterPartitionSender"/>, one proposal at a time (KIP-497). While an addition is in
/// flight the high watermark already counts the new member (the "maximal ISR"), so committing the
/// new ISR can never make the high watermark go back; the registration the metadata log publishes
/// replaces whatever was pending.
/// </para>
/// <para>
/// As follower it takes appends and truncations from its fetcher only for the leader epoch the
/// fetcher was started for, so nothing fetched from a former leader lands after a change.
/// </para>
/// Concurrency: role changes, follower state, ISR proposals and follower appends take
/// <see cref="_lock"/>; reads (role, epoch, high watermark) do not.
/// </summary>
public sealed partial class Partition
{
    private readonly Lock _lock = new();
    private readonly TimeProvider _time;
    private readonly ReplicationOptions _options;
    private readonly IAlterPartitionSender? _alterPartition;
    private readonly Func<int, BrokerRegistration?> _brokers;
    private readonly Func<long> _brokerEpoch;
    private readonly ILogger _logger;
    private volatile PartitionRegistration? _registration;
    private volatile PendingIsrChange? _pending;
    private Dictionary<int, FollowerState> _followers = [];
    private long _leaderEpochStartOffset = -1;
    private long _proposalBackoffUntilMs;

    /// <summary>An ISR change sent to the controller and not answered yet.</summary>
    private sealed record PendingIsrChange(ImmutableArray<int> Isr, bool IsExpand, AlterPartitionProposal Proposal);

    /// <summary>A replica with no replication (the single-node broker, tests).</summary>
    public Partition(TopicPartition topicPartition, Uuid topicId, PartitionLog log, int localNodeId)
        : this(topicPartition, topicId, log, localNodeId, new ReplicationOptions(), TimeProvider.System, null, static _ => null, static () => -1, NullLogger.Instance)
    {
    }

    public Partition(TopicPartition topicPartition, Uuid topicId, PartitionLog log, int localNodeId, ReplicationOptions options, TimeProvider time,
        IAlterPartitionSender? alterPartition, Func<int, BrokerRegistration?> brokers, Func<long> brokerEpoch, ILogger logger)
    {
        TopicPartition = topicPartition;
        TopicId = topicId;
        Log = log;
        LocalNodeId = localNodeId;
        _options = options;
        _time = time;
        _alterPartition = alterPartition;
        _brokers = brokers;
        _brokerEpoch = brokerEpoch;
        _logger = logger;
    }

    public TopicPartition TopicPartition { get; }
    public Uuid TopicId { get; }
    public PartitionLog Log { get; }
    public int LocalNodeId { get; }

    /// <summary>Pulses when the high watermark moves, and on role or ISR changes (consumer fetches, acks=all produces wait on it).</summary>
    public PartitionSignal Signal { get; } = new();

    /// <summary>Pulses when the leader's log grows, and on role changes (follower fetches wait on it).</summary>
    public PartitionSignal EndSignal { get; } = new();

    /// <summary>The committed registration: from the metadata image, or from a successful AlterPartition answered before the image caught up.</summary>
    public PartitionRegistration? Registration => _registration;
    public bool IsLeader => _registration is { } r && r.Leader == LocalNodeId;
    public int LeaderId => _registration?.Leader ?? -1;
    public int LeaderEpoch => _registration?.LeaderEpoch ?? -1;
    public int PartitionEpoch => _registration?.PartitionEpoch ?? -1;
    public ImmutableArray<int> Isr => _registration?.Isr ?? [];
    public ImmutableArray<int> Replicas => _registration?.Replicas ?? [];
    public long HighWatermark => Log.HighWatermark;

    /// <summary>The replica's log directory failed: it serves nothing (KAFKA_STORAGE_ERROR) until the broker restarts.</summary>
    public bool IsOffline => Log.IsOffline;

    /// <summary>The ISR the high watermark counts: the committed one, plus the member an addition in flight proposes.</summary>
    public ImmutableArray<int> MaximalIsr
    {
        get
        {
            var isr = Isr;
            return _pending is { IsExpand: true } p ? [.. isr.Union(p.Isr)] : isr;
        }
    }

    /// <summary>True while an ISR change waits for the controller.</summary>
    public bool IsIsrChangePending => _pending is not null;

    /// <summary>The offset where the current leader epoch started on this leader (-1 when not leading).</summary>
    public long LeaderEpochStartOffset => Volatile.Read(ref _leaderEpochStartOffset);

    private long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>A copy of the leader's view of a follower (tests, tools); null when unknown or not leading.</summary>
    public FollowerState? GetFollowerState(int brokerId)
    {
        lock (_lock)
        {
            if (!_followers.TryGetValue(brokerId, out var s)) return null;
            return new FollowerState(brokerId)
            {
                LogEndOffset = s.LogEndOffset,
                LogStartOffset = s.LogStartOffset,
                LastCaughtUpTimeMs = s.LastCaughtUpTimeMs,
                LastFetchTimeMs = s.LastFetchTimeMs,
                LastFetchLeaderLogEndOffset = s.LastFetchLeaderLogEndOffset,
                BrokerEpoch = s.BrokerEpoch,
                LastSentHighWatermark = s.LastSentHighWatermark,
            };
        }
    }

    // ================================================================ role changes

    /// <summary>
    /// Applies the partition's registration from the metadata image (leader, epoch, replicas, ISR)
    /// and says how the role changed. A registration older than the state an AlterPartition answer
    /// already installed (same leader epoch, smaller partition epoch) is ignored.
    /// </summary>
    public PartitionTransition Update(PartitionRegistration registration)
    {
        PartitionTransition transition;
        lock (_lock)
        {
            var prev = _registration;
            if (prev is not null && registration.LeaderEpoch == prev.LeaderEpoch && registration.Leader == prev.Leader
                && registration.PartitionEpoch < prev.PartitionEpoch)
                return PartitionTransition.None;
            bool wasLeader = prev is not null && prev.Leader == LocalNodeId;
            bool isLeader = registration.Leader == LocalNodeId;
            bool newEpoch = prev is null || prev.LeaderEpoch != registration.LeaderEpoch || prev.Leader != registration.Leader;
            _registration = registration;
            // The metadata log's word replaces any proposal in flight (its answer will be ignored).
            _pending = null;
            _proposalBackoffUntilMs = 0;
            if (isLeader)
            {
                if (!wasLeader || newEpoch) BecomeLeaderLocked(registration);
                else SyncFollowersLocked(registration);
                transition = !wasLeader ? PartitionTransition.BecameLeader : newEpoch ? PartitionTransition.LeaderEpochBumped : PartitionTransition.None;
                MaybeIncrementHighWatermarkLocked(); // the pulse below covers a move
            }
            else
            {
                _followers = [];
                Volatile.Write(ref _leaderEpochStartOffset, -1);
                transition = wasLeader || prev is null ? PartitionTransition.BecameFollower
                    : newEpoch ? PartitionTransition.LeaderChanged : PartitionTransition.None;
            }
        }
        // Waiters re-check: role, epoch and ISR size all decide what they answer.
        Signal.Pulse();
        EndSignal.Pulse();
        return transition;
    }

    /// <summary>
    /// A new leadership or epoch: every follower's progress is unknown until it fetches; ISR members
    /// count as caught up now (so they are not dropped before they had a chance to fetch). The epoch
    /// starts at the end of the log, and the epoch cache records it at once.
    /// </summary>
    private void BecomeLeaderLocked(PartitionRegistration reg)
    {
        long now = NowMs;
        long leo = Log.LogEndOffset;
        var followers = new Dictionary<int, FollowerState>();
        foreach (int id in reg.Replicas)
        {
            if (id == LocalNodeId) continue;
            bool inIsr = reg.Isr.Contains(id);
            followers[id] = new FollowerState(id)
            {
                LastCaughtUpTimeMs = inIsr ? now : 0,
                LastFetchTimeMs = inIsr ? now : 0,
                LastFetchLeaderLogEndOffset = leo,
            };
        }
        _followers = followers;
        Volatile.Write(ref _leaderEpochStartOffset, leo);
        Log.AssignEpochStartOffset(reg.LeaderEpoch, leo);
        LogBecameLeader(_logger, TopicPartition, reg.LeaderEpoch, leo, string.Join(',', reg.Isr));
    }

    /// <summary>The replica set changed under the same leader epoch: followers come and go, the others keep their state.</summary>
    private void SyncFollowersLocked(PartitionRegistration reg)
    {
        long now = NowMs;
        var next = new Dictionary<int, FollowerState>();
        foreach (int id in reg.Replicas)
        {
            if (id == LocalNodeId) continue;
            next[id] = _followers.TryGetValue(id, out var s) ? s : new FollowerState(id) { LastFetchLeaderLogEndOffset = Log.LogEndOffset, LastCaughtUpTimeMs = 0, LastFetchTimeMs = now };
        }
        _followers = next;
    }

    // ================================================================ leader: high watermark

    /// <summary>
    /// Moves the high watermark to the smallest log end offset among the leader and the followers
    /// that count (maximal ISR, or caught up and eligible to join it); wakes waiters when it moves.
    /// </summary>
    public void MaybeIncrementHighWatermark()
    {
        bool moved;
        lock (_lock) moved = MaybeIncrementHighWatermarkLocked();
        if (moved) Signal.Pulse();
    }

    /// <summary>
    /// Called after a leader append: wakes follower fetches waiting for data, and moves the high watermark,
    /// unless the append still owes an fsync (<paramref name="synced"/> false; then
    /// <see cref="ReplicaManager.CompleteSyncAsync"/> calls <see cref="OnLeaderSync"/> once the data is on
    /// disk). With fsync per append the followers wait for the fsync too: they may fetch only what is durable.
    /// </summary>
    internal void OnLeaderAppend(bool synced)
    {
        if (synced || !Log.Options.FsyncOnAppend) EndSignal.Pulse();
        if (synced) MaybeIncrementHighWatermark();
    }

    /// <summary>A deferred fsync of a leader append succeeded: the durable end moved, for followers and the high watermark.</summary>
    internal void OnLeaderSync()
    {
        EndSignal.Pulse();
        MaybeIncrementHighWatermark();
    }

    /// <summary>
    /// How far followers may fetch from this leader, and how far its own log counts toward the high
    /// watermark: its log end, or with fsync per append (log.flush.per.append) only what is on disk
    /// (<see cref="PartitionLog.DurableEndOffset"/>). Were followers to fetch past the durable end, a record
    /// whose fsync then failed here (answered KAFKA_STORAGE_ERROR) could be on a follower that becomes
    /// leader when this directory goes offline, and be committed there: the error would be a lie, and a
    /// retrying producer that is not idempotent would write it twice. Kept to the durable end, a record
    /// answered with an error is on no other replica. Without fsync per append replication is the
    /// durability (Kafka's model): followers fetch to the log end, and a storage error there is an
    /// outcome unknown, as in Kafka.
    /// </summary>
    public long ReplicableEndOffset
    {
        get
        {
            long leo = Log.LogEndOffset;
            return Log.Options.FsyncOnAppend ? Math.Min(leo, Log.DurableEndOffset) : leo;
        }
    }

    private long LeaderEnd => ReplicableEndOffset;

    private bool MaybeIncrementHighWatermarkLocked()
    {
        var reg = _registration;
        if (reg is null || reg.Leader != LocalNodeId) return false;
        long leo = LeaderEnd;
        long hw = leo;
        if (_followers.Count > 0)
        {
            long now = NowMs;
            var pending = _pending;
            foreach (var s in _followers.Values)
            {
                if (s.LogEndOffset >= hw) continue;
                bool counts = reg.Isr.Contains(s.BrokerId) || pending is { IsExpand: true } && pending.Isr.Contains(s.BrokerId)
                    || s.IsCaughtUp(leo, now, _options.ReplicaLagTimeMaxMs) && IsIsrEligible(s);
                if (counts) hw = s.LogEndOffset;
            }
            if (hw < 0) return false; // an ISR member that has not fetched in this epoch yet
        }
        return hw > Log.HighWatermark && Log.UpdateHighWatermark(hw);
    }

    /// <summary>
    /// acks=all: whether the high watermark has passed <paramref name="lastOffset"/>, and if so whether the
    /// ISR still had min.insync.replicas members (else NOT_ENOUGH_REPLICAS_AFTER_APPEND: the data is
    /// written but fewer replicas than required hold it). A lost leadership (or a new epoch) answers
    /// NOT_LEADER_OR_FOLLOWER.
    /// </summary>
    public (bool Done, ErrorCode Error) CheckEnoughReplicasReachOffset(long lastOffset, int leaderEpoch)
    {
        var reg = _registration;
        if (reg is null || reg.Leader != LocalNodeId || reg.LeaderEpoch != leaderEpoch) return (true, ErrorCode.NotLeaderOrFollower);
        if (HighWatermark <= lastOffset)
        {
            // The directory failed under the write: it will not be committed here (Kafka answers its delayed
            // produces KAFKA_STORAGE_ERROR too; a follower may still hold it: the outcome is unknown).
            return Log.IsOffline ? (true, ErrorCode.KafkaStorageError) : (false, ErrorCode.None);
        }
        int isrSize = MaximalIsr.Length;
        return (true, isrSize >= Log.Config.MinInSyncReplicas ? ErrorCode.None : ErrorCode.NotEnoughReplicasAfterAppend);
    }

    // ================================================================ leader: follower progress and the ISR

    /// <summary>
    /// A follower fetched at <paramref name="fetchOffset"/> (its log end) while the leader's log ended at
    /// <paramref name="leaderEndOffset"/>: records its progress, adds it to the ISR when it has caught
    /// up, and moves the high watermark. False when this replica does not lead or the broker is not a follower.
    /// </summary>
    public bool UpdateFollowerFetchState(int replicaId, long fetchOffset, long followerLogStartOffset, long brokerEpoch, long leaderEndOffset)
    {
        bool moved;
        lock (_lock)
        {
            if (!IsLeader || !_followers.TryGetValue(replicaId, out var s)) return false;
            long now = NowMs;
            if (fetchOffset >= leaderEndOffset) s.LastCaughtUpTimeMs = Math.Max(s.LastCaughtUpTimeMs, now);
            else if (fetchOffset >= s.LastFetchLeaderLogEndOffset) s.LastCaughtUpTimeMs = Math.Max(s.LastCaughtUpTimeMs, s.LastFetchTimeMs);
            s.LogEndOffset = fetchOffset;
            s.LogStartOffset = followerLogStartOffset;
            s.LastFetchLeaderLogEndOffset = leaderEndOffset;
            s.LastFetchTimeMs = now;
            s.BrokerEpoch = brokerEpoch;
            MaybeExpandIsrLocked(s);
            moved = MaybeIncrementHighWatermarkLocked();
        }
        if (moved) Signal.Pulse();
        return true;
    }

    /// <summary>
    /// KIP-903 eligibility: the broker is registered, not fenced, not shutting down, and fetched
    /// with its current broker epoch (or sent none).
    /// </summary>
    private bool IsIsrEligible(FollowerState s)
    {
        if (_brokers(s.BrokerId) is not { } b) return false;
        return !b.Fenced && !b.InControlledShutdown && (s.BrokerEpoch == -1 || s.BrokerEpoch == b.Epoch);
    }

    /// <summary>Adds a follower to the ISR once it has the high watermark and has reached the start of the current epoch.</summary>
    private void MaybeExpandIsrLocked(FollowerState s)
    {
        var reg = _registration!;
        if (_pending is not null || reg.Isr.Contains(s.BrokerId)) return;
        if (s.LogEndOffset < Log.HighWatermark || s.LogEndOffset < LeaderEpochStartOffset || !IsIsrEligible(s)) return;
        ProposeLocked([.. reg.Isr, s.BrokerId], isExpand: true);
    }

    /// <summary>
    /// Proposes removing the ISR members that have not caught up within replica.lag.time.max.ms
    /// (the replica manager calls this every half of it). Returns true when a shrink was proposed.
    /// </summary>
    public bool MaybeShrinkIsr()
    {
        lock (_lock)
        {
            var reg = _registration;
            if (reg is null || reg.Leader != LocalNodeId || _pending is not null) return false;
            long now = NowMs, leo = LeaderEnd;
            List<int>? outOfSync = null;
            foreach (int id in reg.Isr)
            {
                if (id == LocalNodeId) continue;
                if (!_followers.TryGetValue(id, out var s) || !s.IsCaughtUp(leo, now, _options.ReplicaLagTimeMaxMs)) (outOfSync ??= []).Add(id);
            }
            if (outOfSync is null) return false;
            LogIsrShrink(_logger, TopicPartition, string.Join(',', outOfSync), _options.ReplicaLagTimeMaxMs);
            return ProposeLocked([.. reg.Isr.Where(id => !outOfSync.Contains(id))], isExpand: false);
        }
    }

    private bool ProposeLocked(ImmutableArray<int> newIsr, bool isExpand)
    {
        var reg = _registration!;
        if (_alterPartition is null || NowMs < _proposalBackoffUntilMs) return false;
        var members = ImmutableArray.CreateBuilder<IsrMember>(newIsr.Length);
        foreach (int id in newIsr)
            members.Add(new IsrMember(id, id == LocalNodeId ? _brokerEpoch() : _followers.TryGetValue(id, out var s) ? s.BrokerEpoch : -1));
        var proposal = new AlterPartitionProposal(TopicPartition, TopicId, reg.LeaderEpoch, reg.PartitionEpoch, members.MoveToImmutable());
        var pending = new PendingIsrChange(newIsr, isExpand, proposal);
        _pending = pending;
        LogIsrProposed(_logger, TopicPartition, string.Join(',', reg.Isr), string.Join(',', newIsr), reg.LeaderEpoch, reg.PartitionEpoch);
        // Never on this thread: the sender may answer synchronously, and the answer takes this lock.
        // SendProposalAsync never faults: whatever happens to the proposal ends in its result below.
        _ = Task.Run(() => SendProposalAsync(pending));
        return true;
    }

    /// <summary>How long a proposal may wait for the controller before it counts as failed (and is proposed afresh after the backoff).</summary>
    private const int ProposalTimeoutMs = 30_000;

    private async Task SendProposalAsync(PendingIsrChange pending)
    {
        AlterPartitionResult r;
        try
        {
            using var timeout = new CancellationTokenSource(ProposalTimeoutMs);
            r = await _alterPartition!.SendAsync(pending.Proposal, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or TimeoutException or OperationCanceledException)
        {
            LogIsrProposalFailed(_logger, TopicPartition, e.Message);
            r = AlterPartitionResult.Failed(e is OperationCanceledException ? ErrorCode.RequestTimedOut : ErrorCode.NetworkException);
        }
#pragma warning disable CA1031 // a proposal that failed for any reason is reported and made again after the backoff; left pending it would block every later ISR change
        catch (Exception e)
#pragma warning restore CA1031
        {
            LogIsrProposalError(_logger, TopicPartition, e);
            r = AlterPartitionResult.Failed(ErrorCode.UnknownServerError);
        }
        bool moved = false;
        lock (_lock)
        {
            // Superseded by a registration from the metadata log or a role change: that state stands.
            if (!ReferenceEquals(_pending, pending)) return;
            _pending = null;
            var reg = _registration;
            if (r.Error == ErrorCode.None && reg is not null)
            {
                if (r.LeaderEpoch == reg.LeaderEpoch && r.LeaderId == reg.Leader && r.PartitionEpoch > reg.PartitionEpoch)
                {
                    _registration = reg with { Isr = r.Isr, PartitionEpoch = r.PartitionEpoch };
                    LogIsrCommitted(_logger, TopicPartition, string.Join(',', r.Isr), r.PartitionEpoch);
                }
                moved = MaybeIncrementHighWatermarkLocked();
            }
            else
            {
                // Stale epochs, an ineligible replica, a controller that cannot be reached: try again later
                // (a new registration from the metadata log clears the backoff).
                _proposalBackoffUntilMs = NowMs + _options.AlterPartitionRetryBackoffMs;
                LogIsrRejected(_logger, TopicPartition, r.Error.ToString());
            }
        }
        if (moved) Signal.Pulse();
        Signal.Pulse(); // the ISR size changed or not: acks=all waiters re-check min.insync.replicas
    }

    // ================================================================ follower

    /// <summary>Appends what the fetcher got from the leader, if this replica still follows at <paramref name="leaderEpoch"/>.</summary>
    public LogAppendResult AppendAsFollower(ReadOnlyMemory<byte> records, int leaderEpoch)
    {
        lock (_lock)
        {
            if (!IsFollowerAt(leaderEpoch))
                return LogAppendResult.Failed(ErrorCode.NotLeaderOrFollower, $"{TopicPartition} no longer follows at epoch {leaderEpoch}", Log.LogStartOffset);
            return Log.AppendAsFollower(records);
        }
    }

    /// <summary>Truncates the follower's log to <paramref name="offset"/> if it still follows at <paramref name="leaderEpoch"/>.</summary>
    public bool TruncateAsFollower(long offset, int leaderEpoch)
    {
        lock (_lock)
        {
            if (!IsFollowerAt(leaderEpoch)) return false;
            if (offset < Log.LogEndOffset) LogTruncating(_logger, TopicPartition, Log.LogEndOffset, offset, leaderEpoch);
            Log.TruncateTo(offset);
            return true;
        }
    }

    /// <summary>Empties the follower's log and restarts it at the leader's log start offset.</summary>
    public bool TruncateFullyAsFollower(long offset, int leaderEpoch)
    {
        lock (_lock)
        {
            if (!IsFollowerAt(leaderEpoch)) return false;
            LogTruncating(_logger, TopicPartition, Log.LogEndOffset, offset, leaderEpoch);
            Log.TruncateFullyAndStartAt(offset);
            return true;
        }
    }

    /// <summary>A follower's high watermark: the leader's, as far as this log goes.</summary>
    public void UpdateFollowerHighWatermark(long leaderHighWatermark)
    {
        if (IsLeader || leaderHighWatermark < 0) return;
        if (Log.UpdateHighWatermark(Math.Min(leaderHighWatermark, Log.LogEndOffset))) Signal.Pulse();
    }

    private bool IsFollowerAt(int leaderEpoch) => _registration is { } r && r.Leader != LocalNodeId && r.LeaderEpoch == leaderEpoch;

    // ================================================================ requests

    /// <summary>Checks a client's leader epoch (KIP-320): older is fenced, newer is unknown here.</summary>
    public ErrorCode CheckLeaderEpoch(int requestEpoch)
    {
        if (requestEpoch < 0) return ErrorCode.None;
        int mine = LeaderEpoch;
        if (requestEpoch < mine) return ErrorCode.FencedLeaderEpoch;
        if (requestEpoch > mine) return ErrorCode.UnknownLeaderEpoch;
        return ErrorCode.None;
    }

    // ================================================================ logging

    [LoggerMessage(EventId = 3101, Level = LogLevel.Information, Message = "{Partition}: leader at epoch {Epoch} from offset {StartOffset}, ISR [{Isr}]")]
    private static partial void LogBecameLeader(ILogger logger, TopicPartition partition, int epoch, long startOffset, string isr);

    [LoggerMessage(EventId = 3102, Level = LogLevel.Information, Message = "{Partition}: proposing ISR [{Old}] -> [{New}] at leader epoch {LeaderEpoch}, partition epoch {PartitionEpoch}")]
    private static partial void LogIsrProposed(ILogger logger, TopicPartition partition, string old, string @new, int leaderEpoch, int partitionEpoch);

    [LoggerMessage(EventId = 3103, Level = LogLevel.Information, Message = "{Partition}: ISR [{Isr}] committed at partition epoch {PartitionEpoch}")]
    private static partial void LogIsrCommitted(ILogger logger, TopicPartition partition, string isr, int partitionEpoch);

    [LoggerMessage(EventId = 3107, Level = LogLevel.Warning, Message = "{Partition}: ISR change not delivered to the controller: {Reason}; proposing again after the backoff")]
    private static partial void LogIsrProposalFailed(ILogger logger, TopicPartition partition, string reason);

    [LoggerMessage(EventId = 3108, Level = LogLevel.Error, Message = "{Partition}: ISR change failed; proposing again after the backoff")]
    private static partial void LogIsrProposalError(ILogger logger, TopicPartition partition, Exception e);

    [LoggerMessage(EventId = 3104, Level = LogLevel.Warning, Message = "{Partition}: ISR change refused: {Error}")]
    private static partial void LogIsrRejected(ILogger logger, TopicPartition partition, string error);

    [LoggerMessage(EventId = 3105, Level = LogLevel.Information, Message = "{Partition}: followers [{Replicas}] not caught up within {LagMs} ms leave the ISR")]
    private static partial void LogIsrShrink(ILogger logger, TopicPartition partition, string replicas, long lagMs);

    [LoggerMessage(EventId = 3106, Level = LogLevel.Information, Message = "{Partition}: truncating follower log from {From} to {To} (leader epoch {Epoch})")]
    private static partial void LogTruncating(ILogger logger, TopicPartition partition, long from, long to, int epoch);
}
