using System.Collections.Concurrent;
using Freshet.Metadata.Controller;
using Freshet.Metadata.Image;
using Freshet.Protocol;
using Freshet.Storage;
using Microsoft.Extensions.Logging;

namespace Freshet.Broker.Replication;

/// <summary>
/// The partitions this broker hosts (Kafka's ReplicaManager): follows the metadata image to
/// create, update and delete partition replicas and their logs, appends produced batches to
/// leaders, and lets fetches and acks=all produces wait for the high watermark.
/// </summary>
public sealed partial class ReplicaManager(BrokerOptions options, LogManager logs, ILogger<ReplicaManager> logger) : IMetadataListener
{
    private readonly ConcurrentDictionary<TopicPartition, Partition> _partitions = new();
    private readonly Lock _updateLock = new();
    private bool _strayLogsChecked;

    public BrokerOptions Options { get; } = options;

    /// <summary>This broker became the leader of a partition (coordinators load their state from it).</summary>
    public event Action<Partition>? BecameLeader;

    /// <summary>This broker stopped leading (or hosting) a partition.</summary>
    public event Action<TopicPartition>? Resigned;
    public LogManager Logs { get; } = logs;
    public IReadOnlyCollection<Partition> Partitions => (IReadOnlyCollection<Partition>)_partitions.Values;

    public Partition? GetPartition(TopicPartition tp) => _partitions.GetValueOrDefault(tp);

    public Partition? GetPartition(string topic, int partition) => _partitions.GetValueOrDefault(new TopicPartition(topic, partition));

    // ---------------------------------------------------------------- metadata

    public void OnMetadataUpdate(MetadataImage previous, MetadataImage current)
    {
        lock (_updateLock)
        {
            int me = Options.NodeId;
            var wanted = new HashSet<TopicPartition>();
            foreach (var topic in current.TopicsByName.Values)
            {
                var overrides = current.ConfigsOf(ConfigResourceType.Topic, topic.Name);
                var prevTopic = previous.Topic(topic.Name);
                bool configChanged = prevTopic is null || prevTopic.Id != topic.Id
                    || !ReferenceEquals(previous.ConfigsOf(ConfigResourceType.Topic, topic.Name), overrides);
                LogConfig? config = null;
                foreach (var (index, reg) in topic.Partitions)
                {
                    if (!reg.Replicas.Contains(me)) continue;
                    var tp = new TopicPartition(topic.Name, index);
                    wanted.Add(tp);
                    if (_partitions.TryGetValue(tp, out var existing) && existing.TopicId == topic.Id)
                    {
                        if (configChanged) existing.Log.Config = config ??= LogConfig.Create(Options.TopicDefaults, overrides);
                        if (!ReferenceEquals(prevTopic?.Partitions.GetValueOrDefault(index), reg))
                        {
                            bool wasLeader = existing.IsLeader;
                            existing.Update(reg);
                            if (!wasLeader && existing.IsLeader) BecameLeader?.Invoke(existing);
                            else if (wasLeader && !existing.IsLeader) Resigned?.Invoke(tp);
                        }
                        continue;
                    }
                    if (existing is not null) RemovePartition(tp);
                    config ??= LogConfig.Create(Options.TopicDefaults, overrides);
                    var log = Logs.GetOrCreateLog(tp, topic.Id, config);
                    var partition = new Partition(tp, topic.Id, log, me);
                    _partitions[tp] = partition;
                    partition.Update(reg);
                    if (partition.IsLeader) BecameLeader?.Invoke(partition);
                }
            }
            foreach (var tp in _partitions.Keys.Where(tp => !wanted.Contains(tp)).ToList()) RemovePartition(tp);
            if (!_strayLogsChecked)
            {
                // Logs left on disk for topics the metadata no longer has (deleted while this broker was down).
                _strayLogsChecked = true;
                foreach (var log in Logs.Logs.Where(l => !wanted.Contains(l.TopicPartition)).ToList())
                {
                    LogStray(logger, log.TopicPartition);
                    Logs.DeleteLog(log.TopicPartition);
                }
            }
        }
    }

    private void RemovePartition(TopicPartition tp)
    {
        if (_partitions.TryRemove(tp, out var p))
        {
            if (p.IsLeader) Resigned?.Invoke(tp);
            p.Signal.Pulse();
            Logs.DeleteLog(tp);
            LogRemoved(logger, tp);
        }
    }

    // ---------------------------------------------------------------- produce

    /// <summary>Appends to the leader replica; the caller waits for the high watermark when acks=all.</summary>
    public LogAppendResult AppendToLeader(Partition p, Memory<byte> records, short requiredAcks, AppendOrigin origin = AppendOrigin.Client, bool deferSync = false)
    {
        if (!p.IsLeader)
            return LogAppendResult.Failed(ErrorCode.NotLeaderOrFollower, $"Broker {Options.NodeId} is not the leader of {p.TopicPartition}", p.Log.LogStartOffset);
        if (requiredAcks == -1 && p.Isr.Length < p.Log.Config.MinInSyncReplicas)
            return LogAppendResult.Failed(ErrorCode.NotEnoughReplicas,
                $"The size of the current ISR {p.Isr.Length} is insufficient to satisfy the min.isr requirement of {p.Log.Config.MinInSyncReplicas} for partition {p.TopicPartition}",
                p.Log.LogStartOffset);
        var result = p.Log.AppendAsLeader(records, p.LeaderEpoch, origin, deferSync);
        // With a deferred fsync the high watermark waits for it: consumers never see what is not yet durable.
        if (result.Error == ErrorCode.None && !result.IsDuplicate && result.Sync is null) p.MaybeIncrementHighWatermark();
        return result;
    }

    /// <summary>Finishes an append made with deferSync: the fsync (off the calling thread), then the high watermark.</summary>
    public static async Task<LogAppendResult> CompleteSyncAsync(Partition p, LogAppendResult result)
    {
        if (result.Sync is null) return result;
        var done = await p.Log.SyncAsync(result).ConfigureAwait(false);
        if (done.Error == ErrorCode.None) p.MaybeIncrementHighWatermark(durableUpTo: done.LastOffset + 1);
        return done;
    }

    /// <summary>Waits until the high watermark passes <paramref name="offset"/> (acks=all); false on timeout.</summary>
    public static async Task<bool> WaitForHighWatermarkAsync(Partition p, long offset, int timeoutMs, CancellationToken ct)
    {
        long deadline = Environment.TickCount64 + Math.Max(0, timeoutMs);
        Partition[] one = [p];
        while (true)
        {
            var seen = DataWaiter.Snapshot(one);
            if (p.HighWatermark > offset) return true;
            long remaining = deadline - Environment.TickCount64;
            if (remaining <= 0 || ct.IsCancellationRequested) return false;
            await DataWaiter.WaitAsync(one, seen, (int)remaining, ct).ConfigureAwait(false);
        }
    }

    [LoggerMessage(EventId = 3001, Level = LogLevel.Information, Message = "Deleting stray log {Partition}: its topic is not in the metadata")]
    private static partial void LogStray(ILogger logger, TopicPartition partition);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Information, Message = "Removed partition {Partition}")]
    private static partial void LogRemoved(ILogger logger, TopicPartition partition);
}
