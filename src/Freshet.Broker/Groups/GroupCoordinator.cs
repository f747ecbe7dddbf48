using System.Collections.Concurrent;
using Freshet.Broker.Replication;
using Freshet.Metadata.Controller;
using Freshet.Protocol;
using Freshet.Protocol.CoordinatorRecords;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using Freshet.Storage;
using Microsoft.Extensions.Logging;

namespace Freshet.Broker.Groups;

/// <summary>
/// The group coordinator (Kafka's GroupCoordinator): consumer groups and their committed offsets.
/// A group lives in the __consumer_offsets partition its id hashes to, and this broker
/// coordinates the groups of the partitions it leads. Every change is a record appended to
/// that partition (committed once the high watermark passes it); the in-memory state is rebuilt
/// by replaying the partition when this broker becomes its leader. The classic protocol
/// (Join/Sync/Heartbeat/Leave) is in GroupCoordinator.Classic.cs, offsets in .Offsets.cs,
/// administration in .Admin.cs, the KIP-848 protocol in .Consumer.cs.
/// <para>
/// Failure policy: memory never runs ahead of what was written. A change made to a group under its
/// lock is appended under that lock too (the append itself is synchronous); when the append fails,
/// the group is rebuilt from what its partition holds before the lock is released (Kafka's coordinator
/// reverts its in-memory state the same way), and the request gets the error. Changes made in the
/// background (a member's session expiring, an empty group's new generation, offsets expiring) are
/// undone the same way and come again: the rebuilt group's timers fire again, expiry runs again. A
/// change whose records were appended but did not commit (the high watermark did not pass them in
/// time) stays: it is in the leader's log, and a leadership change unloads the partition anyway. A
/// partition whose load fails is loaded again with a backoff while this broker leads it, each failure
/// logged; meanwhile its groups answer COORDINATOR_LOAD_IN_PROGRESS, never NOT_COORDINATOR.
/// </para>
/// </summary>
public sealed partial class GroupCoordinator : IDisposable
{
    private readonly ConcurrentDictionary<string, Group> _groups = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<int, bool> _owned = new();   // loaded partitions
    private readonly ConcurrentDictionary<int, bool> _loading = new();
    /// <summary>
    /// Per __consumer_offsets partition, a number that changes whenever this broker starts or stops
    /// leading it (or starts it over): a load begun under an older number is stale and is dropped.
    /// </summary>
    private readonly Dictionary<int, long> _leadership = [];
    /// <summary>Guards <see cref="_leadership"/> with the moves between loading and owned.</summary>
    private readonly Lock _ownershipLock = new();
    /// <summary>One load per partition at a time: a stale one drops its result before the next replays.</summary>
    private readonly ConcurrentDictionary<int, SemaphoreSlim> _loadGates = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly ReplicaManager _replicas;
    private readonly MetadataCache _metadata;
    private readonly InternalTopics _internalTopics;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ITimer _expiryTimer;

    public GroupCoordinator(GroupCoordinatorOptions options, ReplicaManager replicas, MetadataCache metadata, InternalTopics internalTopics,
        TimeProvider time, ILogger<GroupCoordinator> logger)
    {
        Options = options;
        _replicas = replicas;
        _metadata = metadata;
        _internalTopics = internalTopics;
        _time = time;
        _logger = logger;
        replicas.BecameLeader += OnBecameLeader;
        replicas.Resigned += OnResigned;
        foreach (var p in replicas.Partitions.Where(p => p.TopicPartition.Topic == GroupRecords.OffsetsTopic && p.IsLeader)) OnBecameLeader(p);
        var interval = TimeSpan.FromMilliseconds(Math.Max(1000, options.OffsetsRetentionCheckIntervalMs));
        _expiryTimer = time.CreateTimer(_ => ExpireOffsetsGuarded(), null, interval, interval);
    }

    public GroupCoordinatorOptions Options { get; }

    private long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    public int PartitionFor(string groupId) => GroupRecords.PartitionFor(groupId, Options.OffsetsTopicPartitions);

    // ================================================================ placement

    /// <summary>
    /// Creates __consumer_offsets on first use (FindCoordinator), compacted, with
    /// offsets.topic.num.partitions partitions and offsets.topic.replication.factor replicas;
    /// COORDINATOR_NOT_AVAILABLE while fewer brokers than that are alive (as Kafka: the factor is
    /// never lowered to the brokers up at the first lookup).
    /// </summary>
    public ErrorCode EnsureOffsetsTopic() =>
        _internalTopics.Ensure(GroupRecords.OffsetsTopic, Options.OffsetsTopicPartitions, Options.OffsetsTopicReplicationFactor, "offsets.topic.replication.factor",
            new Dictionary<string, string?>
            {
                [LogConfig.CleanupPolicyConfig] = "compact",
                [LogConfig.SegmentBytesConfig] = Options.OffsetsTopicSegmentBytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
                [LogConfig.CompressionTypeConfig] = "producer",
            });

    /// <summary>The broker leading the group's partition, or the error to give (COORDINATOR_NOT_AVAILABLE while there is none).</summary>
    public (ErrorCode Error, int NodeId) FindCoordinator(string groupId)
    {
        var e = EnsureOffsetsTopic();
        if (e != ErrorCode.None) return (e, -1);
        var reg = _metadata.Image.Partition(GroupRecords.OffsetsTopic, PartitionFor(groupId));
        if (reg is null || !reg.HasLeader) return (ErrorCode.CoordinatorNotAvailable, -1);
        return (ErrorCode.None, reg.Leader);
    }

    /// <summary>NONE when this broker coordinates the group now; otherwise the error to answer with.</summary>
    private ErrorCode CheckCoordinator(string groupId)
    {
        int p = PartitionFor(groupId);
        if (_loading.ContainsKey(p)) return ErrorCode.CoordinatorLoadInProgress;
        if (!_owned.ContainsKey(p)) return ErrorCode.NotCoordinator;
        return ErrorCode.None;
    }

    // ================================================================ loading

    /// <summary>First pause after a failed load of a partition; it doubles up to <see cref="LoadRetryMaxMs"/>.</summary>
    private const int LoadRetryInitialMs = 500;
    private const int LoadRetryMaxMs = 30_000;

    /// <summary>
    /// Test hook: consulted before each load attempt of a partition (partition, attempt from 1); an
    /// exception it returns fails that attempt, as a disk error reading the partition would.
    /// </summary>
    internal Func<int, int, Exception?>? LoadFault { get; set; }

    private void OnBecameLeader(Partition p)
    {
        if (p.TopicPartition.Topic != GroupRecords.OffsetsTopic) return;
        int index = p.TopicPartition.Partition;
        long leadership;
        lock (_ownershipLock)
        {
            if (_owned.ContainsKey(index) || !_loading.TryAdd(index, true)) return;
            leadership = NextLeadership(index);
        }
        // Off the metadata thread (this runs inside a metadata update); never faults: every failure is logged and retried.
        _ = Task.Run(() => LoadWithRetriesAsync(p, index, leadership));
    }

    /// <summary>Under <see cref="_ownershipLock"/>.</summary>
    private long NextLeadership(int index) => _leadership[index] = _leadership.GetValueOrDefault(index) + 1;

    /// <summary>Under <see cref="_ownershipLock"/>.</summary>
    private bool IsCurrent(int index, long leadership) => _leadership.GetValueOrDefault(index) == leadership;

    /// <summary>
    /// Loads a partition, again and again with a backoff while it fails (each failure logged), until it
    /// is loaded or this broker no longer leads it (or the coordinator stops).
    /// </summary>
    private async Task LoadWithRetriesAsync(Partition p, int index, long leadership)
    {
        var gate = _loadGates.GetOrAdd(index, _ => new SemaphoreSlim(1, 1));
        try
        {
            await gate.WaitAsync(_stop.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return;
        }
        try
        {
            int delayMs = LoadRetryInitialMs;
            for (int attempt = 1; ; attempt++)
            {
                lock (_ownershipLock)
                {
                    if (!IsCurrent(index, leadership) || _stop.IsCancellationRequested) return;
                }
                if (!p.IsLeader)
                {
                    // The resignation on its way unloads it; until then nothing is served from it.
                    lock (_ownershipLock)
                    {
                        if (IsCurrent(index, leadership)) _loading.TryRemove(index, out _);
                    }
                    return;
                }
                try
                {
                    if (LoadFault?.Invoke(index, attempt) is { } fault) throw fault;
                    Load(p, index, leadership);
                    return;
                }
#pragma warning disable CA1031 // a load that fails for any reason is logged and tried again: the partition must not stay unserved in silence
                catch (Exception e)
#pragma warning restore CA1031
                {
                    LogLoadFailed(_logger, index, attempt, delayMs, e);
                }
                try
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(delayMs), _time, _stop.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                delayMs = Math.Min(delayMs * 2, LoadRetryMaxMs);
            }
        }
        finally
        {
            gate.Release();
        }
    }

    private void OnResigned(TopicPartition tp)
    {
        if (tp.Topic != GroupRecords.OffsetsTopic) return;
        lock (_ownershipLock)
        {
            NextLeadership(tp.Partition);
            _owned.TryRemove(tp.Partition, out _);
            _loading.TryRemove(tp.Partition, out _);
        }
        UnloadGroups(tp.Partition, ErrorCode.NotCoordinator);
    }

    /// <summary>Forgets the groups of a partition: their waiting requests get <paramref name="error"/>, their timers stop.</summary>
    private void UnloadGroups(int partition, ErrorCode error)
    {
        foreach (var g in _groups.Values.Where(g => g.CoordinatorPartition == partition).ToList())
        {
            lock (g.Lock)
            {
                g.IsDead = true;
                UnloadLocked(g, error);
            }
            _groups.TryRemove(new KeyValuePair<string, Group>(g.GroupId, g));
        }
    }

    /// <summary>Stops a group's timers and answers its waiting requests with <paramref name="error"/>. Under its lock.</summary>
    private void UnloadLocked(Group g, ErrorCode error)
    {
        if (g is ClassicGroup cg) FailPendingRequests(cg, error);
        else OnOtherGroupUnloaded(g);
    }

    /// <summary>
    /// Starts a partition over (its groups unloaded, then loaded again): when a group could not be
    /// rebuilt from it after a failed write, nothing of the partition can be trusted.
    /// </summary>
    private void RestartLoad(int index)
    {
        long leadership;
        lock (_ownershipLock)
        {
            if (!_owned.TryRemove(index, out _)) return;
            _loading[index] = true;
            leadership = NextLeadership(index);
        }
        UnloadGroups(index, ErrorCode.NotCoordinator);
        if (_replicas.GetPartition(GroupRecords.OffsetsTopic, index) is { } p)
        {
            _ = Task.Run(() => LoadWithRetriesAsync(p, index, leadership)); // never faults
        }
        else
        {
            lock (_ownershipLock)
            {
                if (IsCurrent(index, leadership)) _loading.TryRemove(index, out _);
            }
        }
    }

    /// <summary>
    /// Rebuilds the groups of one __consumer_offsets partition by replaying it up to the high watermark,
    /// apart from the live groups; they are published (and their timers started) only if this broker
    /// still leads the partition under the same <paramref name="leadership"/>.
    /// </summary>
    private void Load(Partition p, int index, long leadership)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var loaded = new ConcurrentDictionary<string, Group>(StringComparer.Ordinal);
        int records = ReplayLog(p, index, loaded, onlyGroup: null, p.HighWatermark);
        lock (_ownershipLock)
        {
            if (!IsCurrent(index, leadership)) return;
            foreach (var g in loaded.Values) _groups[g.GroupId] = g;
            _owned[index] = true;
            _loading.TryRemove(index, out _);
        }
        foreach (var g in loaded.Values) StartLoaded(g);
        LogLoaded(_logger, index, records, loaded.Count, sw.ElapsedMilliseconds);
    }

    /// <summary>Replays the records of a partition below <paramref name="upTo"/> (of one group, or all) into <paramref name="into"/>; returns how many.</summary>
    private int ReplayLog(Partition p, int index, ConcurrentDictionary<string, Group> into, string? onlyGroup, long upTo)
    {
        int records = 0;
        using var scratch = new PooledBufferWriter();
        foreach (var batch in p.Log.ReadBatches(p.Log.LogStartOffset, upTo))
        {
            var b = new RecordBatch(batch);
            if (b.IsControl) continue;
            foreach (var r in new BatchRecords(batch, scratch))
            {
                if (r.Record.KeyIsNull) continue;
                var decoded = GroupRecords.Decode(r.Record.Key, r.Record.Value, r.Record.ValueIsNull);
                if (decoded is not { } d || onlyGroup is not null && GroupIdOf(d.Key) != onlyGroup) continue;
                Replay(index, d, into);
                records++;
            }
        }
        return records;
    }

    /// <summary>The group a record's key belongs to (null for keys of other record kinds).</summary>
    private static string? GroupIdOf(IMessage key) => key switch
    {
        OffsetCommitKey k => k.Group,
        GroupMetadataKey k => k.Group,
        ConsumerGroupMetadataKey k => k.GroupId,
        ConsumerGroupPartitionMetadataKey k => k.GroupId,
        ConsumerGroupMemberMetadataKey k => k.GroupId,
        ConsumerGroupTargetAssignmentMetadataKey k => k.GroupId,
        ConsumerGroupTargetAssignmentMemberKey k => k.GroupId,
        ConsumerGroupCurrentMemberAssignmentKey k => k.GroupId,
        _ => null,
    };

    /// <summary>A group just loaded (or rebuilt): its members' sessions start afresh.</summary>
    private void StartLoaded(Group g)
    {
        lock (g.Lock)
        {
            if (g.IsDead) return;
            if (g is ClassicGroup cg)
            {
                foreach (var m in cg.Members.Values) ScheduleSession(cg, m);
                if (cg.IsEmpty) cg.EmptySinceMs = cg.CurrentStateTimestamp > 0 ? cg.CurrentStateTimestamp : NowMs;
            }
            else
            {
                OnOtherGroupLoaded(g);
            }
        }
    }

    /// <summary>
    /// Undoes changes to <paramref name="g"/> whose records could not be written: the group is rebuilt
    /// from what its partition holds (up to the log end: everything this leader appended, the group's
    /// own records all under its lock) and replaces <paramref name="g"/>, whose waiting requests get
    /// COORDINATOR_NOT_AVAILABLE (clients retry). Under g's lock. If even that read fails, the whole
    /// partition is loaded again.
    /// </summary>
    private void RebuildGroupLocked(Group g, ErrorCode writeError)
    {
        int index = g.CoordinatorPartition;
        var rebuilt = new ConcurrentDictionary<string, Group>(StringComparer.Ordinal);
        bool read = false;
        try
        {
            if (_replicas.GetPartition(GroupRecords.OffsetsTopic, index) is { } p)
            {
                ReplayLog(p, index, rebuilt, g.GroupId, p.Log.LogEndOffset);
                read = true;
            }
        }
#pragma warning disable CA1031 // reported, and the partition is loaded again from scratch
        catch (Exception e)
#pragma warning restore CA1031
        {
            LogRebuildFailed(_logger, g.GroupId, index, e);
        }
        g.IsDead = true;
        UnloadLocked(g, ErrorCode.CoordinatorNotAvailable);
        if (!read)
        {
            _groups.TryRemove(new KeyValuePair<string, Group>(g.GroupId, g));
            _ = Task.Run(() => RestartLoad(index)); // not under this group's lock: it takes every group's of the partition
            return;
        }
        if (_groups.TryGetValue(g.GroupId, out var current) && !ReferenceEquals(current, g))
        {
            // Another object holds the id already (made since g left the map): it is someone else's to keep.
        }
        else if (rebuilt.TryGetValue(g.GroupId, out var fresh))
        {
            _groups[g.GroupId] = fresh;
            StartLoaded(fresh);
        }
        else
        {
            _groups.TryRemove(new KeyValuePair<string, Group>(g.GroupId, g));
        }
        LogGroupRebuilt(_logger, g.GroupId, writeError.KafkaName());
    }

    private void Replay(int partition, GroupRecords.Decoded d, ConcurrentDictionary<string, Group> groups)
    {
        switch (d.Key)
        {
            case OffsetCommitKey k:
            {
                var tp = new TopicPartition(k.Topic, k.Partition);
                if (d.Value is OffsetCommitValue v)
                {
                    var g = groups.GetOrAdd(k.Group, id => new ClassicGroup(id, partition));
                    g.Offsets[tp] = new CommittedOffset(v.Offset, v.LeaderEpoch, v.Metadata, v.CommitTimestamp);
                }
                else if (groups.TryGetValue(k.Group, out var g))
                {
                    g.Offsets.Remove(tp);
                    RemoveIfGone(g, groups);
                }
                break;
            }
            case GroupMetadataKey k:
            {
                if (d.Value is not GroupMetadataValue v)
                {
                    if (groups.TryGetValue(k.Group, out var old) && old is ClassicGroup oc)
                    {
                        oc.Members.Clear();
                        oc.StaticMembers.Clear();
                        oc.State = ClassicGroupState.Empty;
                        RemoveIfGone(oc, groups);
                    }
                    break;
                }
                ClassicGroup g;
                if (groups.TryGetValue(k.Group, out var existing) && existing is ClassicGroup c) g = c;
                else
                {
                    g = new ClassicGroup(k.Group, partition);
                    if (existing is not null) foreach (var (tp, o) in existing.Offsets) g.Offsets[tp] = o;
                }
                g.ProtocolType = v.ProtocolType;
                g.GenerationId = v.Generation;
                g.ProtocolName = v.Protocol;
                g.LeaderId = v.Leader;
                g.CurrentStateTimestamp = v.CurrentStateTimestamp;
                g.Members.Clear();
                g.StaticMembers.Clear();
                foreach (var m in v.Members)
                {
                    var member = new ClassicMember(m.MemberId, m.GroupInstanceId, m.ClientId, m.ClientHost, m.SessionTimeout,
                        m.RebalanceTimeout < 0 ? m.SessionTimeout : m.RebalanceTimeout)
                    {
                        ProtocolType = v.ProtocolType,
                        Protocols = [(v.Protocol ?? "", m.Subscription.ToArray())],
                        Assignment = m.Assignment.ToArray(),
                    };
                    g.Members[m.MemberId] = member;
                    if (m.GroupInstanceId is not null) g.StaticMembers[m.GroupInstanceId] = m.MemberId;
                }
                g.State = g.Members.Count == 0 ? ClassicGroupState.Empty : ClassicGroupState.Stable;
                groups[k.Group] = g;
                break;
            }
            default:
                ReplayOther(partition, d, groups);
                break;
        }
    }

    /// <summary>Forgets a group with no members, no offsets and nothing persisted.</summary>
    private static void RemoveIfGone(Group g, ConcurrentDictionary<string, Group> groups)
    {
        if (g.IsEmpty && g.Offsets.Count == 0 && g is ClassicGroup { GenerationId: 0 })
            groups.TryRemove(g.GroupId, out _);
    }

    // ================================================================ persistence

    /// <summary>
    /// Appends records to the group's __consumer_offsets partition and waits until they are
    /// committed (the high watermark passes them). Errors are mapped as Kafka maps them for
    /// coordinator writes.
    /// </summary>
    private Task<ErrorCode> AppendAsync(int partition, IReadOnlyList<(byte[] Key, byte[]? Value)> records)
    {
        var started = BeginAppend(partition, records);
        return started.Error != ErrorCode.None || started.Partition is null ? Task.FromResult(started.Error) : CompleteAppendAsync(started);
    }

    /// <summary>An append whose records are in the leader's log (<see cref="Partition"/> set), or that failed (<see cref="Error"/>).</summary>
    private readonly record struct StartedAppend(ErrorCode Error, Partition? Partition, LogAppendResult Result);

    /// <summary>
    /// The synchronous part of an append: the records enter the leader's log, or nothing does (an
    /// error). Done under the group's lock by changes to a group, so the log has them in the order
    /// the state changed.
    /// </summary>
    private StartedAppend BeginAppend(int partition, IReadOnlyList<(byte[] Key, byte[]? Value)> records)
    {
        if (records.Count == 0) return new StartedAppend(ErrorCode.None, null, default);
        var p = _replicas.GetPartition(GroupRecords.OffsetsTopic, partition);
        if (p is null || !p.IsLeader) return new StartedAppend(ErrorCode.NotCoordinator, null, default);
        byte[] batch;
        using (var builder = new RecordBatchBuilder())
        {
            long now = NowMs;
            foreach (var (key, value) in records) builder.Append(now, key, false, value ?? [], value is null);
            batch = builder.Build();
        }
        var result = _replicas.AppendToLeader(p, batch, -1, AppendOrigin.Coordinator, deferSync: true);
        return result.Error == ErrorCode.None ? new StartedAppend(ErrorCode.None, p, result) : new StartedAppend(MapAppendError(result.Error), null, result);
    }

    /// <summary>The rest of an append: the deferred fsync, then the wait for the high watermark.</summary>
    private async Task<ErrorCode> CompleteAppendAsync(StartedAppend started)
    {
        var p = started.Partition!;
        var result = await ReplicaManager.CompleteSyncAsync(p, started.Result).ConfigureAwait(false);
        if (result.Error != ErrorCode.None) return MapAppendError(result.Error);
        if (!await ReplicaManager.WaitForHighWatermarkAsync(p, result.LastOffset, Options.OffsetsCommitTimeoutMs, CancellationToken.None).ConfigureAwait(false))
            return ErrorCode.RequestTimedOut;
        return ErrorCode.None;
    }

    /// <summary>
    /// Appends the records of a change already made to <paramref name="g"/> (under its lock, which the
    /// caller holds). When they cannot be written the change is undone at once (the group is rebuilt
    /// from its partition) and the error returned; otherwise the task completes once they commit.
    /// </summary>
    private Task<ErrorCode> AppendGroupChangeLocked(Group g, IReadOnlyList<(byte[] Key, byte[]? Value)> records)
    {
        var started = BeginAppend(g.CoordinatorPartition, records);
        if (started.Error != ErrorCode.None)
        {
            RebuildGroupLocked(g, started.Error);
            return Task.FromResult(started.Error);
        }
        return started.Partition is null ? Task.FromResult(ErrorCode.None) : CompleteGroupChangeAsync(g, started);
    }

    private async Task<ErrorCode> CompleteGroupChangeAsync(Group g, StartedAppend started)
    {
        var e = await CompleteAppendAsync(started).ConfigureAwait(false);
        // The fsync failed: what the log keeps of the records is the storage's call; the group follows the log.
        if (e == ErrorCode.NotCoordinator && started.Partition!.IsLeader)
        {
            lock (g.Lock)
            {
                if (!g.IsDead) RebuildGroupLocked(g, e);
            }
        }
        return e;
    }

    /// <summary>
    /// A background change's write (no client waits on it): its failure is logged; the change was
    /// undone if nothing was written, and what undid it (the rebuilt group's timers, the next expiry
    /// run) brings it about again.
    /// </summary>
    private async Task ObserveBackgroundWriteAsync(Task<ErrorCode> write, string groupId, string what)
    {
        var e = await write.ConfigureAwait(false);
        if (e != ErrorCode.None) LogBackgroundWriteFailed(_logger, what, groupId, e.KafkaName());
    }

    private static ErrorCode MapAppendError(ErrorCode e) => e switch
    {
        ErrorCode.NotLeaderOrFollower or ErrorCode.KafkaStorageError => ErrorCode.NotCoordinator,
        ErrorCode.UnknownTopicOrPartition or ErrorCode.NotEnoughReplicas or ErrorCode.NotEnoughReplicasAfterAppend or ErrorCode.RequestTimedOut
            => ErrorCode.CoordinatorNotAvailable,
        ErrorCode.MessageTooLarge or ErrorCode.RecordListTooLarge or ErrorCode.InvalidFetchSize => ErrorCode.UnknownServerError,
        _ => e,
    };

    // ================================================================ offsets retention

    /// <summary>
    /// offsets.retention.minutes: the offsets of a group that has had no members for that long
    /// (and were not committed since) are deleted, then the group itself. The tombstones are appended
    /// first, under the group's lock, and the offsets forgotten only once that worked; otherwise the
    /// next run tries again.
    /// </summary>
    public void ExpireOffsets()
    {
        long now = NowMs;
        foreach (var g in _groups.Values.ToList())
        {
            Task<ErrorCode>? write = null;
            int count = 0;
            lock (g.Lock)
            {
                if (!g.IsEmpty || g.IsDead || !_owned.ContainsKey(g.CoordinatorPartition)) continue;
                long since = g.EmptySinceMs < 0 ? now : g.EmptySinceMs;
                var expired = new List<TopicPartition>();
                var tombstones = new List<(byte[] Key, byte[]? Value)>();
                foreach (var (tp, o) in g.Offsets)
                {
                    long base_ = Math.Max(o.CommitTimestamp, since);
                    if (now - base_ < Options.OffsetsRetentionMs) continue;
                    tombstones.Add((GroupRecords.OffsetCommitKeyBytes(g.GroupId, tp.Topic, tp.Partition), null));
                    expired.Add(tp);
                }
                bool groupGoes = expired.Count == g.Offsets.Count && now - since >= Options.OffsetsRetentionMs;
                if (groupGoes) tombstones = GroupTombstones(g); // every offset and the group's records
                if (tombstones.Count == 0) continue;
                count = tombstones.Count;
                var started = BeginAppend(g.CoordinatorPartition, tombstones);
                if (started.Error != ErrorCode.None)
                {
                    // Nothing written: if the group's records were dropped with it, the group follows the log again.
                    if (groupGoes) RebuildGroupLocked(g, started.Error);
                    LogBackgroundWriteFailed(_logger, "offset expiry", g.GroupId, started.Error.KafkaName());
                    continue;
                }
                foreach (var tp in expired) g.Offsets.Remove(tp);
                if (groupGoes)
                {
                    g.IsDead = true;
                    _groups.TryRemove(new KeyValuePair<string, Group>(g.GroupId, g));
                }
                write = started.Partition is null ? null : CompleteAppendAsync(started);
            }
            LogExpired(_logger, g.GroupId, count);
            if (write is not null) _ = ObserveBackgroundWriteAsync(write, g.GroupId, "offset expiry"); // never faults
        }
    }

    /// <summary>The expiry timer's call: a failed run is logged and the next one tries again (an exception would end the process).</summary>
    private void ExpireOffsetsGuarded()
    {
        try
        {
            ExpireOffsets();
        }
#pragma warning disable CA1031 // see above
        catch (Exception e)
#pragma warning restore CA1031
        {
            LogExpiryFailed(_logger, e);
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _replicas.BecameLeader -= OnBecameLeader;
        _replicas.Resigned -= OnResigned;
        _expiryTimer.Dispose();
        foreach (var g in _groups.Values)
        {
            lock (g.Lock)
            {
                if (g is ClassicGroup cg)
                {
                    cg.JoinTimer?.Dispose();
                    foreach (var m in cg.Members.Values) m.SessionTimer?.Dispose();
                }
                else
                {
                    OnOtherGroupUnloaded(g);
                }
            }
        }
    }

    // Extension points for group types other than classic (the KIP-848 consumer protocol).

    /// <summary>Replays a __consumer_offsets record that is not an offset commit or classic group metadata.</summary>
    partial void ReplayOther(int partition, GroupRecords.Decoded record, ConcurrentDictionary<string, Group> groups);

    /// <summary>A non-classic group finished loading: start its timers.</summary>
    partial void OnOtherGroupLoaded(Group group);

    /// <summary>A non-classic group is no longer coordinated here: stop its timers.</summary>
    partial void OnOtherGroupUnloaded(Group group);

    [LoggerMessage(EventId = 6002, Level = LogLevel.Debug, Message = "Loaded __consumer_offsets-{Partition}: {Records} records, {Groups} groups in {Ms} ms")]
    private static partial void LogLoaded(ILogger logger, int partition, int records, int groups, long ms);

    [LoggerMessage(EventId = 6003, Level = LogLevel.Error, Message = "Could not load __consumer_offsets-{Partition} (attempt {Attempt}); its groups answer COORDINATOR_LOAD_IN_PROGRESS, trying again in {DelayMs} ms")]
    private static partial void LogLoadFailed(ILogger logger, int partition, int attempt, int delayMs, Exception e);

    [LoggerMessage(EventId = 6008, Level = LogLevel.Error, Message = "Offset expiry failed; the next run tries again")]
    private static partial void LogExpiryFailed(ILogger logger, Exception e);

    [LoggerMessage(EventId = 6005, Level = LogLevel.Warning, Message = "Group {Group}: a change could not be written ({Error}); the group was rebuilt from __consumer_offsets")]
    private static partial void LogGroupRebuilt(ILogger logger, string group, string error);

    [LoggerMessage(EventId = 6006, Level = LogLevel.Error, Message = "Group {Group}: rebuilding it from __consumer_offsets-{Partition} failed; loading the partition again")]
    private static partial void LogRebuildFailed(ILogger logger, string group, int partition, Exception e);

    [LoggerMessage(EventId = 6007, Level = LogLevel.Warning, Message = "Writing the {What} of group {Group} failed: {Error}")]
    private static partial void LogBackgroundWriteFailed(ILogger logger, string what, string group, string error);

    [LoggerMessage(EventId = 6004, Level = LogLevel.Information, Message = "Group {Group}: expired {Count} records (offsets.retention.minutes)")]
    private static partial void LogExpired(ILogger logger, string group, int count);
}
