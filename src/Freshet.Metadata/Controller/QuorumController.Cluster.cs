using System.Collections.Immutable;
using Freshet.Metadata.Image;
using Freshet.Protocol;
using Freshet.Protocol.MetadataRecords;
using Freshet.Protocol.Wire;
using Freshet.Storage;
using Microsoft.Extensions.Logging;
using static Freshet.Metadata.Log.MetadataRecordSerde;

namespace Freshet.Metadata.Controller;

/// <summary>
/// The cluster half of the controller: broker registration, heartbeats and sessions (a broker
/// that stops heartbeating is fenced), controlled shutdown, partition leader election and ISR
/// changes (AlterPartition). Leadership rules follow Kafka's: a new leader comes from the ISR,
/// in replica order; an ISR never becomes empty (when its last member goes, the partition has no
/// leader until that member returns) unless the topic allows unclean leader election.
/// </summary>
public sealed partial class QuorumController
{
    // Controller-local soft state (not in the log): last heartbeat per broker epoch, and the log
    // offset of each broker's registration (a broker has caught up once its metadata reaches it).
    private readonly Dictionary<int, long> _lastHeartbeatMs = [];

    /// <summary>Brokers whose heartbeats report offline log directories (a disk error, a full disk): they lead nothing and join no ISR until the report clears.</summary>
    private readonly HashSet<int> _storageFailed = [];

    /// <summary>Brokers this controller has not heard from since it became active (their session started at activation).</summary>
    private readonly HashSet<int> _unheard = [];

    private void Heard(int brokerId, long now)
    {
        _lastHeartbeatMs[brokerId] = now;
        _unheard.Remove(brokerId);
    }
    private readonly Dictionary<int, long> _registrationOffsets = [];

    /// <summary>Monotonic milliseconds (sessions must not expire when the wall clock jumps).</summary>
    private long NowMs => Options.Time.GetTimestamp() / Math.Max(1, Options.Time.TimestampFrequency / 1000);

    /// <summary>
    /// BrokerRegistration: a broker announces itself (fenced until its heartbeats show it caught up).
    /// The same incarnation registering again gets its epoch back; a new incarnation gets a new
    /// epoch, unless the old one's session is still alive (DUPLICATE_BROKER_REGISTRATION).
    /// </summary>
    public BrokerRegistrationOutcome RegisterBroker(int brokerId, string clusterId, Uuid incarnationId,
        IReadOnlyList<BrokerEndpoint> endpoints, string? rack, long previousBrokerEpoch)
    {
        lock (_lock)
        {
            var image = _image;
            if (clusterId != image.ClusterId)
                return new(ErrorCode.InconsistentClusterId, $"Expected cluster ID {image.ClusterId}, but got cluster ID {clusterId}", -1);
            long now = NowMs;
            if (image.Brokers.TryGetValue(brokerId, out var existing))
            {
                if (existing.IncarnationId == incarnationId)
                {
                    Heard(brokerId, now);
                    return new(ErrorCode.None, null, existing.Epoch);
                }
                if (!existing.Fenced && _lastHeartbeatMs.TryGetValue(brokerId, out long last) && now - last < Options.BrokerSessionTimeoutMs)
                    return new(ErrorCode.DuplicateBrokerRegistration,
                        $"Another broker is registered with that broker id, and its session has not expired (last heartbeat {now - last} ms ago).", -1);
            }
            long epoch = _log.EndOffset;
            var records = new List<VersionedRecord>
            {
                new((short)MetadataRecordType.RegisterBroker, 2, new RegisterBrokerRecord
                {
                    BrokerId = brokerId,
                    IncarnationId = incarnationId,
                    BrokerEpoch = epoch,
                    Rack = rack,
                    Fenced = true,
                    EndPoints = [.. endpoints.Select(e => new RegisterBrokerRecord.BrokerEndpoint
                    {
                        Name = e.Name, Host = e.Host, Port = (ushort)e.Port, SecurityProtocol = e.SecurityProtocol,
                    })],
                }),
            };
            // The previous incarnation's leaderships and ISR places go to live replicas, as when a broker is
            // fenced; a partition with no other in-sync replica keeps it (a one-node cluster restarting).
            if (existing is not null) AddLeaveRecords(image, brokerId, records, keepSoleLeader: true);
            Commit(records);
            _registrationOffsets[brokerId] = epoch;
            Heard(brokerId, now);
            LogRegistered(_logger, brokerId, epoch);
            return new(ErrorCode.None, null, epoch);
        }
    }

    /// <summary>
    /// BrokerHeartbeat: keeps the broker's session alive, unfences it once it has caught up with
    /// the metadata log (unless it asks to stay fenced), and runs its controlled shutdown: its
    /// leaderships move to other ISR members and it leaves the ISRs; ShouldShutDown says when
    /// it leads nothing any more.
    /// </summary>
    /// <param name="offlineLogDirs">
    /// Log directories the broker cannot write to (BrokerHeartbeat v1's OfflineLogDirs). Freshet does not
    /// record which directory holds which replica, so any offline directory takes all of the broker's
    /// replicas out: its leaderships move to other in-sync replicas and it leaves the ISRs (a replica
    /// with no other in-sync copy keeps its leader), until a heartbeat reports none.
    /// </param>
    public BrokerHeartbeatOutcome Heartbeat(int brokerId, long brokerEpoch, long currentMetadataOffset, bool wantFence, bool wantShutDown,
        int offlineLogDirs = 0)
    {
        lock (_lock)
        {
            var image = _image;
            if (!image.Brokers.TryGetValue(brokerId, out var broker) || broker.Epoch != brokerEpoch)
                return new(ErrorCode.StaleBrokerEpoch, false, true, false);
            Heard(brokerId, NowMs);
            bool storageFailed = offlineLogDirs > 0;
            if (storageFailed && _storageFailed.Add(brokerId)) LogStorageFailed(_logger, brokerId, offlineLogDirs);
            else if (!storageFailed && _storageFailed.Remove(brokerId)) LogStorageRecovered(_logger, brokerId);
            // Unknown registration offset (a controller that took over after the registration): the broker's epoch is that offset.
            bool caughtUp = currentMetadataOffset >= _registrationOffsets.GetValueOrDefault(brokerId, broker.Epoch);
            var records = new List<VersionedRecord>();
            if (wantShutDown)
            {
                if (!broker.InControlledShutdown)
                    records.Add(new VersionedRecord((short)MetadataRecordType.BrokerRegistrationChange, 0,
                        new BrokerRegistrationChangeRecord { BrokerId = brokerId, BrokerEpoch = brokerEpoch, InControlledShutdown = 1 }));
                AddLeaveRecords(image, brokerId, records);
            }
            else if (broker.Fenced && caughtUp && !wantFence)
            {
                records.Add(new VersionedRecord((short)MetadataRecordType.UnfenceBroker, 0, new UnfenceBrokerRecord { Id = brokerId, Epoch = brokerEpoch }));
                AddReturnRecords(image, brokerId, records);
            }
            else if (!broker.Fenced && wantFence)
            {
                AddFenceRecords(image, broker, records);
            }
            else if (storageFailed && !broker.Fenced)
            {
                AddLeaveRecords(image, brokerId, records, keepSoleLeader: true);
            }
            if (records.Count > 0)
            {
                image = Commit(records);
                broker = image.Brokers[brokerId];
            }
            bool shouldShutDown = wantShutDown && !image.TopicsByName.Values.Any(t => t.Partitions.Values.Any(p => p.Leader == brokerId));
            return new(ErrorCode.None, caughtUp, broker.Fenced, shouldShutDown);
        }
    }

    /// <summary>Fences every unfenced broker whose last heartbeat is older than broker.session.timeout.ms; returns the ids fenced.</summary>
    public IReadOnlyList<int> FenceExpiredBrokers()
    {
        lock (_lock)
        {
            var image = _image;
            long now = NowMs;
            var fenced = new List<int>();
            foreach (var b in image.Brokers.Values)
            {
                if (b.Fenced) continue;
                if (!_lastHeartbeatMs.TryGetValue(b.Id, out long last))
                {
                    // A controller that just became active gives every broker a full session from now.
                    _lastHeartbeatMs[b.Id] = now;
                    _unheard.Add(b.Id);
                    continue;
                }
                if (now - last < Options.BrokerSessionTimeoutMs) continue;
                var records = new List<VersionedRecord>();
                AddFenceRecords(image, b, records);
                image = Commit(records);
                fenced.Add(b.Id);
                LogSessionExpired(_logger, b.Id, now - last);
            }
            return fenced;
        }
    }

    /// <summary>
    /// Unfenced brokers (other than this node) whose last heartbeat is at least <paramref name="lateMs"/>
    /// old, or that have not heartbeated to this controller since it became active (the previous one may
    /// have died with one of them), but whose session has not expired yet: candidates for a liveness
    /// probe of their listener.
    /// </summary>
    public IReadOnlyList<(BrokerRegistration Broker, long LastHeartbeatMs)> BrokersLateForHeartbeat(long lateMs)
    {
        lock (_lock)
        {
            long now = NowMs;
            var late = new List<(BrokerRegistration, long)>();
            foreach (var b in _image.Brokers.Values)
            {
                if (b.Fenced || b.Id == Options.NodeId || !_lastHeartbeatMs.TryGetValue(b.Id, out long last)) continue;
                if ((now - last >= lateMs || _unheard.Contains(b.Id)) && now - last < Options.BrokerSessionTimeoutMs) late.Add((b, last));
            }
            return late;
        }
    }

    /// <summary>
    /// Fences a broker before its session expires because its process is gone (its listener refuses
    /// connections), unless it heartbeated or re-registered since <paramref name="lastHeartbeatMs"/>
    /// was read. Fencing only moves leaderships and ISR places, so a wrong guess costs availability
    /// for a moment, never data: the broker's next heartbeat unfences it.
    /// </summary>
    public bool FenceUnreachableBroker(int brokerId, long brokerEpoch, long lastHeartbeatMs, string reason)
    {
        lock (_lock)
        {
            var image = _image;
            if (!image.Brokers.TryGetValue(brokerId, out var b) || b.Fenced || b.Epoch != brokerEpoch) return false;
            if (!_lastHeartbeatMs.TryGetValue(brokerId, out long last) || last != lastHeartbeatMs) return false;
            var records = new List<VersionedRecord>();
            AddFenceRecords(image, b, records);
            Commit(records);
            LogFencedUnreachable(_logger, brokerId, NowMs - last, reason);
            return true;
        }
    }

    /// <summary>Forgets heartbeat times (this node became the active controller: every broker gets a full session).</summary>
    public void ResetBrokerSessions()
    {
        lock (_lock)
        {
            _lastHeartbeatMs.Clear();
            _unheard.Clear();
        }
    }

    /// <summary>
    /// AlterPartition from a partition leader: a new ISR (shrink or expand). Checked against the
    /// leader, its epochs and the partition epoch; new members must be live replicas whose broker
    /// epoch matches what the leader saw.
    /// </summary>
    public AlterPartitionOutcome AlterPartition(int brokerId, long brokerEpoch, Uuid topicId, int partition, int leaderEpoch, int partitionEpoch,
        IReadOnlyList<IsrMember> newIsr)
    {
        lock (_lock)
        {
            var image = _image;
            if (!image.Brokers.TryGetValue(brokerId, out var leaderBroker) || (brokerEpoch >= 0 && leaderBroker.Epoch != brokerEpoch))
                return new(ErrorCode.StaleBrokerEpoch, null);
            var topic = image.Topic(topicId);
            if (topic is null) return new(ErrorCode.UnknownTopicId, null);
            if (!topic.Partitions.TryGetValue(partition, out var reg)) return new(ErrorCode.UnknownTopicOrPartition, null);
            if (reg.Leader != brokerId) return new(ErrorCode.NotLeaderOrFollower, null);
            if (leaderEpoch != reg.LeaderEpoch) return new(ErrorCode.FencedLeaderEpoch, null);
            if (partitionEpoch != reg.PartitionEpoch) return new(ErrorCode.InvalidUpdateVersion, null);
            if (newIsr.Count == 0 || newIsr.Select(m => m.BrokerId).Distinct().Count() != newIsr.Count || !newIsr.Any(m => m.BrokerId == brokerId))
                return new(ErrorCode.InvalidRequest, null);
            foreach (var m in newIsr)
            {
                if (!reg.Replicas.Contains(m.BrokerId)) return new(ErrorCode.IneligibleReplica, null);
                if (reg.Isr.Contains(m.BrokerId)) continue; // only additions must be live
                if (!image.Brokers.TryGetValue(m.BrokerId, out var b) || b.Fenced || b.InControlledShutdown || (m.BrokerEpoch >= 0 && b.Epoch != m.BrokerEpoch)
                    || _storageFailed.Contains(m.BrokerId))
                    return new(ErrorCode.IneligibleReplica, null);
            }
            int[] isr = [.. reg.Replicas.Where(r => newIsr.Any(m => m.BrokerId == r))];
            if (isr.SequenceEqual(reg.Isr)) return new(ErrorCode.None, reg);
            image = Commit([new VersionedRecord((short)MetadataRecordType.PartitionChange, 0,
                new PartitionChangeRecord { TopicId = topicId, PartitionId = partition, Isr = [.. isr], Leader = -2 })]);
            // An expansion may be what a reassignment was waiting for.
            if (ReassignmentCompletion(image, topicId, partition, image.Topic(topicId)!.Partitions[partition]) is { } done) image = Commit([done]);
            return new(ErrorCode.None, image.Topic(topicId)!.Partitions[partition]);
        }
    }

    /// <summary>
    /// Records for broker <paramref name="brokerId"/> leaving service (fenced, or in controlled
    /// shutdown): it leaves every ISR it is in (except as the last member), and partitions it led
    /// get a new leader from the remaining ISR, or none.
    /// </summary>
    /// <summary>Records that fence a broker: the fence itself, then its leaderships and ISR places moving to live replicas.</summary>
    private void AddFenceRecords(MetadataImage image, BrokerRegistration broker, List<VersionedRecord> records)
    {
        records.Add(new VersionedRecord((short)MetadataRecordType.FenceBroker, 0, new FenceBrokerRecord { Id = broker.Id, Epoch = broker.Epoch }));
        AddLeaveRecords(image, broker.Id, records);
    }

    private void AddLeaveRecords(MetadataImage image, int brokerId, List<VersionedRecord> records, bool keepSoleLeader = false)
    {
        foreach (var topic in image.TopicsByName.Values)
        {
            foreach (var (index, reg) in topic.Partitions)
            {
                if (!reg.Isr.Contains(brokerId) && reg.Leader != brokerId) continue;
                var isr = reg.Isr.Length > 1 ? reg.Isr.Remove(brokerId) : reg.Isr;
                int leader = reg.Leader;
                if (leader == brokerId)
                {
                    leader = isr.Where(r => r != brokerId && IsUsable(image, r)).Select(r => (int?)r)
                        .OrderBy(r => reg.Replicas.IndexOf(r!.Value)).FirstOrDefault() ?? PartitionRegistration.NoLeader;
                    if (leader == PartitionRegistration.NoLeader && UncleanAllowed(image, topic.Name))
                    {
                        int unclean = reg.Replicas.FirstOrDefault(r => r != brokerId && IsUsable(image, r), PartitionRegistration.NoLeader);
                        if (unclean != PartitionRegistration.NoLeader)
                        {
                            leader = unclean;
                            isr = [unclean];
                        }
                    }
                }
                if (keepSoleLeader && leader == PartitionRegistration.NoLeader) continue;
                if (leader == reg.Leader && isr.SequenceEqual(reg.Isr)) continue;
                records.Add(new VersionedRecord((short)MetadataRecordType.PartitionChange, 0, new PartitionChangeRecord
                {
                    TopicId = topic.Id,
                    PartitionId = index,
                    Isr = isr.SequenceEqual(reg.Isr) ? null : [.. isr],
                    Leader = leader == reg.Leader ? -2 : leader,
                }));
            }
        }
    }

    /// <summary>Records for a broker coming back: leaderless partitions whose ISR holds it elect it.</summary>
    private void AddReturnRecords(MetadataImage image, int brokerId, List<VersionedRecord> records)
    {
        foreach (var topic in image.TopicsByName.Values)
        {
            foreach (var (index, reg) in topic.Partitions)
            {
                if (reg.HasLeader || !reg.Replicas.Contains(brokerId)) continue;
                if (reg.Isr.Contains(brokerId))
                {
                    records.Add(new VersionedRecord((short)MetadataRecordType.PartitionChange, 0,
                        new PartitionChangeRecord { TopicId = topic.Id, PartitionId = index, Leader = brokerId }));
                }
                else if (UncleanAllowed(image, topic.Name))
                {
                    records.Add(new VersionedRecord((short)MetadataRecordType.PartitionChange, 0,
                        new PartitionChangeRecord { TopicId = topic.Id, PartitionId = index, Leader = brokerId, Isr = [brokerId] }));
                }
            }
        }
    }

    private bool IsUsable(MetadataImage image, int brokerId) =>
        image.Brokers.TryGetValue(brokerId, out var b) && !b.Fenced && !b.InControlledShutdown && !_storageFailed.Contains(brokerId);

    private bool UncleanAllowed(MetadataImage image, string topic) =>
        LogConfig.Create(TopicDefaults(image), image.ConfigsOf(ConfigResourceType.Topic, topic)).UncleanLeaderElectionEnable;

    [LoggerMessage(EventId = 2101, Level = LogLevel.Information, Message = "Broker {BrokerId} registered with epoch {Epoch}")]
    private static partial void LogRegistered(ILogger logger, int brokerId, long epoch);

    [LoggerMessage(EventId = 2109, Level = LogLevel.Warning, Message = "Broker {BrokerId} reports {Dirs} offline log directories: its leaderships and ISR places move to other replicas")]
    private static partial void LogStorageFailed(ILogger logger, int brokerId, int dirs);

    [LoggerMessage(EventId = 2110, Level = LogLevel.Information, Message = "Broker {BrokerId} reports its log directories online again")]
    private static partial void LogStorageRecovered(ILogger logger, int brokerId);

    [LoggerMessage(EventId = 2108, Level = LogLevel.Warning, Message = "Fencing broker {BrokerId} (last heartbeat {Ms} ms ago): {Reason}")]
    private static partial void LogFencedUnreachable(ILogger logger, int brokerId, long ms, string reason);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Warning, Message = "Fencing broker {BrokerId}: no heartbeat for {Ms} ms")]
    private static partial void LogSessionExpired(ILogger logger, int brokerId, long ms);
}
