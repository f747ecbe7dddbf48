using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;
using Freshet.Storage;
using Freshet.Storage.Epochs;
using Microsoft.Extensions.Logging;

namespace Freshet.Broker.Replication;

/// <summary>
/// The follower side of replication for the partitions led by one broker (Kafka's
/// ReplicaFetcherThread): one loop that fetches all of them in one request, like a consumer but
/// with the replica id set and up to the leader's log end rather than its high watermark.
///
/// <para>
/// Per partition: when its log knows a leader epoch and the fetch version is 12 or later, it
/// fetches at once with LastFetchedEpoch, and the leader answers DivergingEpoch when the logs part
/// ways; the follower then truncates to where they agree (possibly in several rounds, one per
/// epoch it does not share with the leader). Below version 12, or when its log knows no epoch, it
/// first truncates: with OffsetForLeaderEpoch for its latest epoch, or to its high watermark when it
/// has none. Fetched batches go to <see cref="Partition.AppendAsFollower"/> unchanged; the
/// follower's high watermark is the leader's, capped by its own log end. A fetch offset the leader
/// no longer has (retention) restarts the log at the leader's log start.
/// </para>
/// <para>
/// Errors: a partition whose fetch fails (not leader, fenced or unknown epoch, storage error) is
/// paused for replica.fetch.backoff.ms and retried; the replica manager moves it elsewhere when the
/// metadata changes. A partition whose log directory went offline is not fetched at all (its log
/// end may cover records it never made durable, which a fetch offset would report to the leader). An unreachable leader pauses the whole fetcher as long. Backoffs use the
/// monotonic clock, not the <see cref="TimeProvider"/> (which drives the ISR's lag bookkeeping).
/// </para>
/// </summary>
public sealed partial class ReplicaFetcher : IAsyncDisposable
{
    private const int ListOffsetsVersion = 7;
    private const int OffsetForLeaderEpochVersion = 4;
    private const long LatestTimestamp = -1;
    private const long EarliestTimestamp = -2;

    private readonly Lock _lock = new();
    private readonly Dictionary<TopicPartition, FetchState> _partitions = [];
    private readonly BrokerOptions _options;
    private readonly INodeClient _client;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task? _loop;

    /// <summary>One partition this fetcher replicates, for the leader epoch it was added at.</summary>
    private sealed class FetchState(Partition partition, int leaderEpoch, bool truncating)
    {
        public Partition Partition { get; } = partition;
        public int LeaderEpoch { get; } = leaderEpoch;

        /// <summary>Must truncate (OffsetForLeaderEpoch, or to the high watermark) before fetching.</summary>
        public bool Truncating { get; set; } = truncating;

        /// <summary>Environment.TickCount64 before which the partition is not fetched (backoff).</summary>
        public long DelayedUntil { get; set; }
    }

    public ReplicaFetcher(int sourceBroker, BrokerOptions options, INodeClient client, ILogger logger)
    {
        SourceBroker = sourceBroker;
        _options = options;
        _client = client;
        _logger = logger;
    }

    /// <summary>The leader this fetcher fetches from.</summary>
    public int SourceBroker { get; }

    private ReplicationOptions Replication => _options.Replication;

    public int PartitionCount
    {
        get
        {
            lock (_lock) return _partitions.Count;
        }
    }

    public bool Contains(TopicPartition tp)
    {
        lock (_lock) return _partitions.ContainsKey(tp);
    }

    /// <summary>Starts (or restarts) replicating <paramref name="partition"/> from this leader at <paramref name="leaderEpoch"/>.</summary>
    public void AddPartition(Partition partition, int leaderEpoch)
    {
        bool truncating = Replication.ReplicaFetchVersion < 12 || partition.Log.LatestEpoch < 0;
        lock (_lock)
        {
            _partitions[partition.TopicPartition] = new FetchState(partition, leaderEpoch, truncating);
            _loop ??= Task.Run(() => RunAsync(_stop.Token));
        }
        Wake();
    }

    /// <summary>Stops replicating a partition; a response already on its way is dropped (its state is gone).</summary>
    public bool RemovePartition(TopicPartition tp)
    {
        lock (_lock) return _partitions.Remove(tp);
    }

    private void Wake()
    {
        TaskCompletionSource old;
        lock (_lock)
        {
            old = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        old.TrySetResult();
    }

    // ================================================================ the loop

    private async Task RunAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await DoWorkAsync(ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                break;
            }
            catch (IOException e)
            {
                // Unreachable leader (or a disk error while appending): pause everything for the backoff.
                LogFetchFailed(_logger, SourceBroker, e.Message);
                await DelayAsync(Replication.ReplicaFetchBackoffMs, null, ct).ConfigureAwait(false);
            }
#pragma warning disable CA1031 // the loop outlives any one failure; it is logged and retried after the backoff
            catch (Exception e) when (e is not OperationCanceledException)
#pragma warning restore CA1031
            {
                LogFetchError(_logger, SourceBroker, e);
                await DelayAsync(Replication.ReplicaFetchBackoffMs, null, ct).ConfigureAwait(false);
            }
        }
    }

    private static async Task DelayAsync(long ms, Task? orWhen, CancellationToken ct)
    {
        if (ms <= 0) return;
        try
        {
            var delay = Task.Delay(TimeSpan.FromMilliseconds(ms), ct);
            if (orWhen is null) await delay.ConfigureAwait(false);
            else await Task.WhenAny(delay, orWhen).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    private async Task DoWorkAsync(CancellationToken ct)
    {
        List<FetchState> ready;
        Task changed;
        long now = Environment.TickCount64;
        long nextDue = long.MaxValue;
        lock (_lock)
        {
            changed = _changed.Task;
            ready = new List<FetchState>(_partitions.Count);
            foreach (var s in _partitions.Values)
            {
                if (s.Partition.IsOffline) continue;
                if (s.DelayedUntil <= now) ready.Add(s);
                else nextDue = Math.Min(nextDue, s.DelayedUntil);
            }
        }
        if (ready.Count == 0)
        {
            // Nothing to do until a partition is added or a backoff ends.
            long wait = nextDue == long.MaxValue ? Replication.ReplicaFetchBackoffMs : nextDue - now;
            await DelayAsync(Math.Max(1, wait), changed, ct).ConfigureAwait(false);
            return;
        }
        var truncating = ready.Where(s => s.Truncating).ToList();
        if (truncating.Count > 0) await TruncateAsync(truncating, ct).ConfigureAwait(false);
        var fetching = ready.Where(s => !s.Truncating && IsCurrent(s)).ToList();
        if (fetching.Count > 0) await FetchAsync(fetching, ct).ConfigureAwait(false);
    }

    /// <summary>Whether the state is still this fetcher's for its partition (not removed or replaced).</summary>
    private bool IsCurrent(FetchState s)
    {
        lock (_lock) return _partitions.TryGetValue(s.Partition.TopicPartition, out var cur) && ReferenceEquals(cur, s);
    }

    private void Delay(FetchState s) => s.DelayedUntil = Environment.TickCount64 + Replication.ReplicaFetchBackoffMs;

    // ================================================================ truncation before fetching

    /// <summary>
    /// Partitions that must truncate before fetching: with OffsetForLeaderEpoch for their latest epoch,
    /// or to their high watermark when their log knows no epoch.
    /// </summary>
    private async Task TruncateAsync(List<FetchState> states, CancellationToken ct)
    {
        var request = new OffsetForLeaderEpochRequest { ReplicaId = _options.NodeId };
        var asked = new List<(FetchState State, int Epoch)>();
        foreach (var s in states)
        {
            int epoch = s.Partition.Log.LatestEpoch;
            if (epoch < 0)
            {
                // No epoch to compare: what is above the high watermark may be a former leader's uncommitted tail.
                if (s.Partition.TruncateAsFollower(s.Partition.Log.HighWatermark, s.LeaderEpoch)) s.Truncating = false;
                else Delay(s);
                continue;
            }
            var topic = request.Topics.FirstOrDefault(t => t.Topic == s.Partition.TopicPartition.Topic);
            if (topic is null)
            {
                topic = new OffsetForLeaderEpochRequest.OffsetForLeaderTopic { Topic = s.Partition.TopicPartition.Topic };
                request.Topics.Add(topic);
            }
            topic.Partitions.Add(new OffsetForLeaderEpochRequest.OffsetForLeaderPartition
            {
                Partition = s.Partition.TopicPartition.Partition,
                CurrentLeaderEpoch = s.LeaderEpoch,
                LeaderEpoch = epoch,
            });
            asked.Add((s, epoch));
        }
        if (asked.Count == 0) return;
        var response = await _client.SendAsync<OffsetForLeaderEpochResponse>(SourceBroker, request, OffsetForLeaderEpochVersion, ct).ConfigureAwait(false);
        foreach (var (s, epoch) in asked)
        {
            var tp = s.Partition.TopicPartition;
            var r = response.Topics.FirstOrDefault(t => t.Topic == tp.Topic)?.Partitions.FirstOrDefault(p => p.Partition == tp.Partition);
            if (r is null || !IsCurrent(s))
            {
                Delay(s);
                continue;
            }
            if (r.ErrorCode != (short)ErrorCode.None)
            {
                LogPartitionError(_logger, tp, SourceBroker, ((ErrorCode)r.ErrorCode).ToString());
                Delay(s);
                continue;
            }
            var (offset, complete) = TruncationOffset(s.Partition.Log, new EpochEndOffset(r.LeaderEpoch, r.EndOffset));
            if (!s.Partition.TruncateAsFollower(offset, s.LeaderEpoch))
            {
                Delay(s);
                continue;
            }
            // Incomplete: the leader's epoch is unknown here; ask again for the epoch before it.
            if (complete) s.Truncating = false;
        }
    }

    /// <summary>
    /// Where a follower truncates given the leader's end of an epoch (from OffsetForLeaderEpoch or a
    /// fetch's DivergingEpoch), as Kafka does: to the end of that epoch on both sides, whichever is
    /// smaller; when the follower does not know the leader's epoch, to the end of its own largest
    /// epoch below it, and not complete (ask again); when the leader knows no epoch, to the high
    /// watermark. Never past the follower's own log end.
    /// </summary>
    public static (long Offset, bool Complete) TruncationOffset(PartitionLog log, EpochEndOffset leader)
    {
        long leo = log.LogEndOffset;
        if (leader.EndOffset == EpochEndOffset.UndefinedEndOffset) return (Math.Min(log.HighWatermark, leo), true);
        if (leader.Epoch == EpochEndOffset.UndefinedEpoch) return (Math.Min(leader.EndOffset, leo), true);
        var mine = log.EndOffsetForEpoch(leader.Epoch);
        if (mine.IsUndefined) return (Math.Min(leader.EndOffset, leo), true);
        if (mine.Epoch != leader.Epoch) return (Math.Min(mine.EndOffset, leo), false);
        return (Math.Min(Math.Min(mine.EndOffset, leader.EndOffset), leo), true);
    }

    // ================================================================ fetching

    private async Task FetchAsync(List<FetchState> states, CancellationToken ct)
    {
        short v = Replication.ReplicaFetchVersion;
        var request = new FetchRequest
        {
            MaxWaitMs = Replication.ReplicaFetchWaitMaxMs,
            MinBytes = Replication.ReplicaFetchMinBytes,
            MaxBytes = Replication.ReplicaFetchResponseMaxBytes,
            IsolationLevel = 0,
            SessionId = 0,
            SessionEpoch = -1, // full fetches, no session
        };
        if (v >= 15) request.ReplicaState = new FetchRequest.ReplicaStateData { ReplicaId = _options.NodeId, ReplicaEpoch = _options.BrokerEpoch() };
        else request.ReplicaId = _options.NodeId;
        var sent = new List<(FetchState State, long FetchOffset)>(states.Count);
        foreach (var s in states)
        {
            var p = s.Partition;
            var topic = request.Topics.FirstOrDefault(t => v >= 13 ? t.TopicId == p.TopicId : t.Topic == p.TopicPartition.Topic);
            if (topic is null)
            {
                topic = new FetchRequest.FetchTopic { Topic = v >= 13 ? "" : p.TopicPartition.Topic, TopicId = p.TopicId };
                request.Topics.Add(topic);
            }
            long fetchOffset = p.Log.LogEndOffset;
            topic.Partitions.Add(new FetchRequest.FetchPartition
            {
                Partition = p.TopicPartition.Partition,
                CurrentLeaderEpoch = s.LeaderEpoch,
                FetchOffset = fetchOffset,
                LastFetchedEpoch = v >= 12 ? p.Log.LatestEpoch : -1,
                LogStartOffset = p.Log.LogStartOffset,
                PartitionMaxBytes = Replication.ReplicaFetchMaxBytes,
            });
            sent.Add((s, fetchOffset));
        }
        // The records are appended straight from the response buffer, which goes back to the pool after.
        using var lease = await _client.SendLeasedAsync<FetchResponse>(SourceBroker, request, v, ct).ConfigureAwait(false);
        var response = lease.Response;
        if (response.ErrorCode != (short)ErrorCode.None)
        {
            LogFetchFailed(_logger, SourceBroker, ((ErrorCode)response.ErrorCode).ToString());
            foreach (var (s, _) in sent) Delay(s);
            return;
        }
        var answered = new HashSet<FetchState>();
        foreach (var topic in response.Responses)
        {
            foreach (var pr in topic.Partitions)
            {
                var (s, fetchOffset) = sent.FirstOrDefault(x => x.State.Partition.TopicPartition.Partition == pr.PartitionIndex
                    && (v >= 13 ? x.State.Partition.TopicId == topic.TopicId : x.State.Partition.TopicPartition.Topic == topic.Topic));
                if (s is null || !answered.Add(s)) continue;
                await ProcessPartitionAsync(s, fetchOffset, pr, ct).ConfigureAwait(false);
            }
        }
    }

    private async Task ProcessPartitionAsync(FetchState s, long fetchOffset, FetchResponse.PartitionData pr, CancellationToken ct)
    {
        var p = s.Partition;
        // Removed, replaced, or truncated meanwhile: this answer describes a fetch that no longer applies.
        if (!IsCurrent(s) || p.Log.LogEndOffset != fetchOffset) return;
        var error = (ErrorCode)pr.ErrorCode;
        switch (error)
        {
            case ErrorCode.None:
                break;
            case ErrorCode.OffsetOutOfRange:
                await HandleOutOfRangeAsync(s, ct).ConfigureAwait(false);
                return;
            default:
                // NOT_LEADER_OR_FOLLOWER, FENCED/UNKNOWN_LEADER_EPOCH, UNKNOWN_TOPIC_*: the metadata will tell.
                LogPartitionError(_logger, p.TopicPartition, SourceBroker, error.ToString());
                Delay(s);
                return;
        }
        if (pr.DivergingEpoch.Epoch >= 0 || pr.DivergingEpoch.EndOffset >= 0)
        {
            var (offset, _) = TruncationOffset(p.Log, new EpochEndOffset(pr.DivergingEpoch.Epoch, pr.DivergingEpoch.EndOffset));
            // Incomplete truncations converge: the next fetch carries the new latest epoch.
            if (!p.TruncateAsFollower(offset, s.LeaderEpoch)) Delay(s);
            return;
        }
        if (pr.Records is { Length: > 0 } records)
        {
            var r = p.AppendAsFollower(records.Memory, s.LeaderEpoch);
            if (r.Error is ErrorCode.None or ErrorCode.KafkaStorageError) _options.LogDirs.Report(p.Log.Dir, r.Error == ErrorCode.KafkaStorageError);
            if (r.Error != ErrorCode.None)
            {
                LogPartitionError(_logger, p.TopicPartition, SourceBroker, $"{r.Error}: {r.ErrorMessage}");
                Delay(s);
                return;
            }
        }
        p.UpdateFollowerHighWatermark(pr.HighWatermark);
        if (pr.LogStartOffset > p.Log.LogStartOffset) p.Log.MaybeIncrementLogStartOffset(pr.LogStartOffset);
    }

    /// <summary>
    /// The fetch offset is outside the leader's log. Past its end (a leader that lost data, possible only
    /// with unclean election): truncate to its end. Below its start (retention ran while this replica was
    /// away): start the log over at the leader's log start.
    /// </summary>
    private async Task HandleOutOfRangeAsync(FetchState s, CancellationToken ct)
    {
        var p = s.Partition;
        long leaderEnd = await ListOffsetAsync(s, LatestTimestamp, ct).ConfigureAwait(false);
        if (leaderEnd < 0 || !IsCurrent(s))
        {
            Delay(s);
            return;
        }
        long leo = p.Log.LogEndOffset;
        if (leaderEnd < leo)
        {
            LogOutOfRange(_logger, p.TopicPartition, leo, "after the leader's end", leaderEnd);
            if (!p.TruncateAsFollower(leaderEnd, s.LeaderEpoch)) Delay(s);
            return;
        }
        long leaderStart = await ListOffsetAsync(s, EarliestTimestamp, ct).ConfigureAwait(false);
        if (leaderStart < 0 || !IsCurrent(s))
        {
            Delay(s);
            return;
        }
        if (leaderStart > leo)
        {
            LogOutOfRange(_logger, p.TopicPartition, leo, "before the leader's start", leaderStart);
            if (!p.TruncateFullyAsFollower(leaderStart, s.LeaderEpoch)) Delay(s);
            return;
        }
        Delay(s); // in range by now (the leader moved meanwhile): fetch again after the backoff
    }

    private async Task<long> ListOffsetAsync(FetchState s, long timestamp, CancellationToken ct)
    {
        var tp = s.Partition.TopicPartition;
        var request = new ListOffsetsRequest
        {
            ReplicaId = _options.NodeId,
            Topics =
            [
                new ListOffsetsRequest.ListOffsetsTopic
                {
                    Name = tp.Topic,
                    Partitions = [new ListOffsetsRequest.ListOffsetsPartition { PartitionIndex = tp.Partition, CurrentLeaderEpoch = s.LeaderEpoch, Timestamp = timestamp }],
                },
            ],
        };
        var response = await _client.SendAsync<ListOffsetsResponse>(SourceBroker, request, ListOffsetsVersion, ct).ConfigureAwait(false);
        var r = response.Topics.FirstOrDefault(t => t.Name == tp.Topic)?.Partitions.FirstOrDefault(x => x.PartitionIndex == tp.Partition);
        if (r is null || r.ErrorCode != (short)ErrorCode.None)
        {
            LogPartitionError(_logger, tp, SourceBroker, r is null ? "no ListOffsets answer" : ((ErrorCode)r.ErrorCode).ToString());
            return -1;
        }
        return r.Offset;
    }

    public async ValueTask DisposeAsync()
    {
        Task? loop;
        lock (_lock) loop = _loop;
        await _stop.CancelAsync().ConfigureAwait(false);
        Wake();
        if (loop is not null)
        {
            try { await loop.ConfigureAwait(false); }
            catch (OperationCanceledException) { }
        }
        _stop.Dispose();
    }

    // ================================================================ logging

    [LoggerMessage(EventId = 3201, Level = LogLevel.Warning, Message = "Fetch from broker {Leader} failed: {Reason}")]
    private static partial void LogFetchFailed(ILogger logger, int leader, string reason);

    [LoggerMessage(EventId = 3202, Level = LogLevel.Error, Message = "Replica fetcher for broker {Leader} failed")]
    private static partial void LogFetchError(ILogger logger, int leader, Exception e);

    [LoggerMessage(EventId = 3203, Level = LogLevel.Information, Message = "{Partition}: fetch from broker {Leader}: {Error}")]
    private static partial void LogPartitionError(ILogger logger, TopicPartition partition, int leader, string error);

    [LoggerMessage(EventId = 3204, Level = LogLevel.Warning, Message = "{Partition}: fetch offset {Offset} is {Where} {LeaderOffset}")]
    private static partial void LogOutOfRange(ILogger logger, TopicPartition partition, long offset, string where, long leaderOffset);
}
