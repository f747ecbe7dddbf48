using System.Collections.Concurrent;
using Freshet.Broker.Replication;
using Freshet.Metadata.Controller;
using Freshet.Protocol;
using Freshet.Protocol.CoordinatorRecords;
using Freshet.Protocol.Records;
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
/// </summary>
public sealed partial class GroupCoordinator : IDisposable
{
    private readonly ConcurrentDictionary<string, Group> _groups = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<int, bool> _owned = new();   // loaded partitions
    private readonly ConcurrentDictionary<int, bool> _loading = new();
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
        _expiryTimer = time.CreateTimer(_ => ExpireOffsets(), null, interval, interval);
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

    private void OnBecameLeader(Partition p)
    {
        if (p.TopicPartition.Topic != GroupRecords.OffsetsTopic) return;
        int index = p.TopicPartition.Partition;
        if (_owned.ContainsKey(index) || !_loading.TryAdd(index, true)) return;
        _ = Task.Run(() =>
        {
            try
            {
                Load(p);
                _owned[index] = true;
            }
            catch (Exception e) when (e is IOException or InvalidDataException or Freshet.Protocol.Wire.ProtocolException)
            {
                LogLoadFailed(_logger, index, e.Message);
            }
            finally
            {
                _loading.TryRemove(index, out _);
            }
        });
    }

    private void OnResigned(TopicPartition tp)
    {
        if (tp.Topic != GroupRecords.OffsetsTopic) return;
        _owned.TryRemove(tp.Partition, out _);
        foreach (var g in _groups.Values.Where(g => g.CoordinatorPartition == tp.Partition).ToList())
        {
            lock (g.Lock)
            {
                if (g is ClassicGroup cg) FailPendingRequests(cg, ErrorCode.NotCoordinator);
                else OnOtherGroupUnloaded(g);
            }
            _groups.TryRemove(g.GroupId, out _);
        }
    }

    /// <summary>Rebuilds the groups of one __consumer_offsets partition by replaying it up to the high watermark.</summary>
    private void Load(Partition p)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        int index = p.TopicPartition.Partition;
        int records = 0;
        using var scratch = new PooledBufferWriter();
        foreach (var batch in p.Log.ReadBatches(p.Log.LogStartOffset, p.HighWatermark))
        {
            var b = new RecordBatch(batch);
            if (b.IsControl) continue;
            foreach (var r in new BatchRecords(batch, scratch))
            {
                if (r.Record.KeyIsNull) continue;
                var decoded = GroupRecords.Decode(r.Record.Key, r.Record.Value, r.Record.ValueIsNull);
                if (decoded is { } d)
                {
                    Replay(index, d);
                    records++;
                }
            }
        }
        long now = NowMs;
        foreach (var g in _groups.Values.Where(g => g.CoordinatorPartition == index))
        {
            lock (g.Lock)
            {
                if (g is ClassicGroup cg)
                {
                    foreach (var m in cg.Members.Values) ScheduleSession(cg, m);
                    if (cg.IsEmpty) cg.EmptySinceMs = cg.CurrentStateTimestamp > 0 ? cg.CurrentStateTimestamp : now;
                }
                else
                {
                    OnOtherGroupLoaded(g);
                }
            }
        }
        LogLoaded(_logger, index, records, _groups.Values.Count(g => g.CoordinatorPartition == index), sw.ElapsedMilliseconds);
    }

    private void Replay(int partition, GroupRecords.Decoded d)
    {
        switch (d.Key)
        {
            case OffsetCommitKey k:
            {
                var tp = new TopicPartition(k.Topic, k.Partition);
                if (d.Value is OffsetCommitValue v)
                {
                    var g = _groups.GetOrAdd(k.Group, id => new ClassicGroup(id, partition));
                    g.Offsets[tp] = new CommittedOffset(v.Offset, v.LeaderEpoch, v.Metadata, v.CommitTimestamp);
                }
                else if (_groups.TryGetValue(k.Group, out var g))
                {
                    g.Offsets.Remove(tp);
                    RemoveIfGone(g);
                }
                break;
            }
            case GroupMetadataKey k:
            {
                if (d.Value is not GroupMetadataValue v)
                {
                    if (_groups.TryGetValue(k.Group, out var old) && old is ClassicGroup oc)
                    {
                        oc.Members.Clear();
                        oc.StaticMembers.Clear();
                        oc.State = ClassicGroupState.Empty;
                        RemoveIfGone(oc);
                    }
                    break;
                }
                ClassicGroup g;
                if (_groups.TryGetValue(k.Group, out var existing) && existing is ClassicGroup c) g = c;
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
                _groups[k.Group] = g;
                break;
            }
            default:
                ReplayOther(partition, d);
                break;
        }
    }

    /// <summary>Forgets a group with no members, no offsets and nothing persisted.</summary>
    private void RemoveIfGone(Group g)
    {
        if (g.IsEmpty && g.Offsets.Count == 0 && g is ClassicGroup { GenerationId: 0 })
            _groups.TryRemove(g.GroupId, out _);
    }

    // ================================================================ persistence

    /// <summary>
    /// Appends records to the group's __consumer_offsets partition and waits until they are
    /// committed (the high watermark passes them). Errors are mapped as Kafka maps them for
    /// coordinator writes.
    /// </summary>
    private async Task<ErrorCode> AppendAsync(int partition, IReadOnlyList<(byte[] Key, byte[]? Value)> records)
    {
        if (records.Count == 0) return ErrorCode.None;
        var p = _replicas.GetPartition(GroupRecords.OffsetsTopic, partition);
        if (p is null || !p.IsLeader) return ErrorCode.NotCoordinator;
        byte[] batch;
        using (var builder = new RecordBatchBuilder())
        {
            long now = NowMs;
            foreach (var (key, value) in records) builder.Append(now, key, false, value ?? [], value is null);
            batch = builder.Build();
        }
        var result = _replicas.AppendToLeader(p, batch, -1, AppendOrigin.Coordinator, deferSync: true);
        if (result.Error == ErrorCode.None) result = await ReplicaManager.CompleteSyncAsync(p, result).ConfigureAwait(false);
        if (result.Error != ErrorCode.None) return MapAppendError(result.Error);
        if (!await ReplicaManager.WaitForHighWatermarkAsync(p, result.LastOffset, Options.OffsetsCommitTimeoutMs, CancellationToken.None).ConfigureAwait(false))
            return ErrorCode.RequestTimedOut;
        return ErrorCode.None;
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
    /// (and were not committed since) are deleted, then the group itself.
    /// </summary>
    public void ExpireOffsets()
    {
        long now = NowMs;
        foreach (var g in _groups.Values.ToList())
        {
            var tombstones = new List<(byte[] Key, byte[]? Value)>();
            lock (g.Lock)
            {
                if (!g.IsEmpty || g.IsDead || !_owned.ContainsKey(g.CoordinatorPartition)) continue;
                long since = g.EmptySinceMs < 0 ? now : g.EmptySinceMs;
                foreach (var (tp, o) in g.Offsets.ToList())
                {
                    long base_ = Math.Max(o.CommitTimestamp, since);
                    if (now - base_ < Options.OffsetsRetentionMs) continue;
                    tombstones.Add((GroupRecords.OffsetCommitKeyBytes(g.GroupId, tp.Topic, tp.Partition), null));
                    g.Offsets.Remove(tp);
                }
                if (g.Offsets.Count == 0 && now - since >= Options.OffsetsRetentionMs)
                {
                    tombstones.AddRange(GroupTombstones(g));
                    g.IsDead = true;
                    _groups.TryRemove(g.GroupId, out _);
                }
            }
            if (tombstones.Count > 0)
            {
                LogExpired(_logger, g.GroupId, tombstones.Count);
                _ = AppendAsync(g.CoordinatorPartition, tombstones);
            }
        }
    }

    public void Dispose()
    {
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
    partial void ReplayOther(int partition, GroupRecords.Decoded record);

    /// <summary>A non-classic group finished loading: start its timers.</summary>
    partial void OnOtherGroupLoaded(Group group);

    /// <summary>A non-classic group is no longer coordinated here: stop its timers.</summary>
    partial void OnOtherGroupUnloaded(Group group);

    [LoggerMessage(EventId = 6002, Level = LogLevel.Debug, Message = "Loaded __consumer_offsets-{Partition}: {Records} records, {Groups} groups in {Ms} ms")]
    private static partial void LogLoaded(ILogger logger, int partition, int records, int groups, long ms);

    [LoggerMessage(EventId = 6003, Level = LogLevel.Error, Message = "Could not load __consumer_offsets-{Partition}: {Reason}")]
    private static partial void LogLoadFailed(ILogger logger, int partition, string reason);

    [LoggerMessage(EventId = 6004, Level = LogLevel.Information, Message = "Group {Group}: expired {Count} records (offsets.retention.minutes)")]
    private static partial void LogExpired(ILogger logger, string group, int count);
}
