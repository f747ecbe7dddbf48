using System.Collections.Concurrent;
using Freshet.Metadata.Controller;
using Freshet.Metadata.Image;
using Freshet.Protocol;
using Freshet.Protocol.Wire;
using Freshet.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Broker.Replication;

/// <summary>
/// The partitions this broker hosts (Kafka's ReplicaManager): follows the metadata image to
/// create, update and delete partition replicas and their logs, appends produced batches to
/// leaders, and lets fetches and acks=all produces wait for the high watermark.
///
/// <para>
/// Replication: a partition this broker leads tracks its followers (<see cref="Partition"/>); one
/// it follows is fetched by a <see cref="ReplicaFetcher"/> per leader, through
/// <see cref="INodeClient"/>. On every metadata change, under one lock: a new leader stops fetching;
/// a new follower, or a follower whose leader or leader epoch changed, (re)starts fetching from the
/// leader (truncating first as the fetcher decides); a replica removed from this broker stops and
/// its log is deleted. ISR changes go to the controller through <see cref="IAlterPartitionSender"/>;
/// the ISR expiration task (every half replica.lag.time.max.ms) proposes shrinks. Without a node
/// client (a one-node cluster) follower partitions are not fetched.
/// </para>
/// </summary>
public sealed partial class ReplicaManager : IMetadataListener, IAsyncDisposable
{
    private readonly ConcurrentDictionary<TopicPartition, Partition> _partitions = new();
    private readonly Lock _updateLock = new();
    private readonly ILogger _logger;
    private readonly ILoggerFactory _loggers;
    private readonly TimeProvider _time;
    private readonly IAlterPartitionSender? _alterPartition;
    private readonly CancellationTokenSource _stop = new();
    private volatile MetadataImage? _image;
    private Task? _isrExpiration;
    private bool _strayLogsChecked;

    public ReplicaManager(BrokerOptions options, LogManager logs, ILogger<ReplicaManager> logger)
        : this(options, logs, logger, null, null, null, null)
    {
    }

    /// <param name="nodeClient">Requests to other brokers (follower fetches); null on a one-node cluster.</param>
    /// <param name="alterPartition">ISR changes to the controller; null when there is none to send them to.</param>
    /// <param name="time">The clock of replica lag and ISR changes.</param>
    public ReplicaManager(BrokerOptions options, LogManager logs, ILogger<ReplicaManager> logger, INodeClient? nodeClient,
        IAlterPartitionSender? alterPartition, TimeProvider? time, ILoggerFactory? loggers)
    {
        Options = options;
        Logs = logs;
        _logger = logger;
        _loggers = loggers ?? NullLoggerFactory.Instance;
        _time = time ?? TimeProvider.System;
        _alterPartition = alterPartition;
        if (nodeClient is not null) Fetchers = new ReplicaFetcherManager(options, nodeClient, _loggers);
        logs.Failures.DirectoryFailed += OnLogDirFailed;
    }

    /// <summary>
    /// A log directory went offline (Kafka's handleLogDirFailure): its partitions now answer
    /// KAFKA_STORAGE_ERROR. Waiting acks=all produces and long-polling fetches on them are woken to answer
    /// so at once; the fetchers skip them; the heartbeats report the directory (<see cref="LogDirHealth"/>),
    /// and the controller moves the leaderships away. Runs on the thread that found the failure: signals only.
    /// </summary>
    private void OnLogDirFailed(string dir, string reason)
    {
        LogDirOffline(_logger, dir, reason);
        foreach (var p in _partitions.Values)
        {
            if (!p.IsOffline) continue;
            p.Signal.Pulse();
            p.EndSignal.Pulse();
        }
    }

    public BrokerOptions Options { get; }

    /// <summary>The follower side: one fetcher per leader broker (null without a node client).</summary>
    public ReplicaFetcherManager? Fetchers { get; }

    /// <summary>The latest metadata image applied.</summary>
    public MetadataImage? Image => _image;

    /// <summary>This broker became the leader of a partition (coordinators load their state from it).</summary>
    public event Action<Partition>? BecameLeader;

    /// <summary>This broker stopped leading (or hosting) a partition.</summary>
    public event Action<TopicPartition>? Resigned;
    public LogManager Logs { get; }
    public IReadOnlyCollection<Partition> Partitions => (IReadOnlyCollection<Partition>)_partitions.Values;

    public Partition? GetPartition(TopicPartition tp) => _partitions.GetValueOrDefault(tp);

    public Partition? GetPartition(string topic, int partition) => _partitions.GetValueOrDefault(new TopicPartition(topic, partition));

    // ---------------------------------------------------------------- metadata

    public void OnMetadataUpdate(MetadataImage previous, MetadataImage current)
    {
        lock (_updateLock)
        {
            _image = current;
            int me = Options.NodeId;
            var wanted = new HashSet<TopicPartition>();
            // Topic defaults: server.properties under the dynamic broker configs (cluster-wide, then this broker's).
            var defaults = DynamicBrokerConfigs.TopicDefaults(Options.TopicDefaults, current, me);
            bool defaultsChanged = DynamicBrokerConfigs.Changed(previous, current, me);
            foreach (var topic in current.TopicsByName.Values)
            {
                var overrides = current.ConfigsOf(ConfigResourceType.Topic, topic.Name);
                var prevTopic = previous.Topic(topic.Name);
                bool configChanged = defaultsChanged || prevTopic is null || prevTopic.Id != topic.Id
                    || !ReferenceEquals(previous.ConfigsOf(ConfigResourceType.Topic, topic.Name), overrides);
                LogConfig? config = null;
                foreach (var (index, reg) in topic.Partitions)
                {
                    if (!reg.Replicas.Contains(me)) continue;
                    var tp = new TopicPartition(topic.Name, index);
                    wanted.Add(tp);
                    if (_partitions.TryGetValue(tp, out var existing) && existing.TopicId == topic.Id)
                    {
                        if (configChanged) existing.Log.Config = config ??= LogConfig.Create(defaults, overrides);
                        if (!ReferenceEquals(prevTopic?.Partitions.GetValueOrDefault(index), reg) || !ReferenceEquals(existing.Registration, reg))
                        {
                            bool wasLeader = existing.IsLeader;
                            var change = existing.Update(reg);
                            ApplyTransition(existing, change, wasLeader);
                        }
                        continue;
                    }
                    if (existing is not null) RemovePartition(tp);
                    config ??= LogConfig.Create(defaults, overrides);
                    PartitionLog log;
                    try
                    {
                        log = Logs.GetOrCreateLog(tp, topic.Id, config);
                    }
                    catch (IOException e)
                    {
                        // No online log directory (or the new one failed): the replica is not hosted here; the
                        // heartbeats' offline directories keep the controller from choosing this broker for it.
                        LogCreateFailed(_logger, tp, e.Message);
                        continue;
                    }
                    var partition = new Partition(tp, topic.Id, log, me, Options.Replication, _time, _alterPartition, LookupBroker, Options.BrokerEpoch,
                        _loggers.CreateLogger<Partition>());
                    _partitions[tp] = partition;
                    ApplyTransition(partition, partition.Update(reg), wasLeader: false);
                }
            }
            foreach (var tp in _partitions.Keys.Where(tp => !wanted.Contains(tp)).ToList()) RemovePartition(tp);
            if (!_strayLogsChecked)
            {
                // Logs left on disk for topics the metadata no longer has (deleted while this broker was down).
                _strayLogsChecked = true;
                foreach (var log in Logs.Logs.Where(l => !wanted.Contains(l.TopicPartition)).ToList())
                {
                    LogStray(_logger, log.TopicPartition);
                    Logs.DeleteLog(log.TopicPartition);
                }
            }
        }
    }

    private BrokerRegistration? LookupBroker(int id) => _image?.Brokers.GetValueOrDefault(id);

    /// <summary>Starts or stops fetching and tells the coordinators, after a partition applied a registration. Under the update lock.</summary>
    private void ApplyTransition(Partition p, PartitionTransition change, bool wasLeader)
    {
        var tp = p.TopicPartition;
        switch (change)
        {
            case PartitionTransition.BecameLeader:
                Fetchers?.RemovePartition(tp);
                BecameLeader?.Invoke(p);
                break;
            case PartitionTransition.BecameFollower or PartitionTransition.LeaderChanged:
                if (wasLeader) Resigned?.Invoke(tp);
                if (p.LeaderId >= 0 && Fetchers is not null)
                {
                    Fetchers.AddPartition(p, p.LeaderId, p.LeaderEpoch);
                }
                else
                {
                    Fetchers?.RemovePartition(tp);
                    if (p.LeaderId >= 0) LogNoNodeClient(_logger, tp, p.LeaderId);
                }
                break;
        }
    }

    private void RemovePartition(TopicPartition tp)
    {
        if (_partitions.TryRemove(tp, out var p))
        {
            Fetchers?.RemovePartition(tp);
            if (p.IsLeader) Resigned?.Invoke(tp);
            p.Signal.Pulse();
            p.EndSignal.Pulse();
            Logs.DeleteLog(tp);
            LogRemoved(_logger, tp);
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
        if (result.Error is ErrorCode.None or ErrorCode.KafkaStorageError) Options.LogDirs.Report(p.Log.Dir, result.Error == ErrorCode.KafkaStorageError);
        // With a deferred fsync the high watermark waits for it: consumers never see what is not yet durable.
        // Without one, an append made with fsync per append is on disk already.
        if (result.Error == ErrorCode.None && !result.IsDuplicate) p.OnLeaderAppend(synced: result.Sync is null);
        return result;
    }

    /// <summary>
    /// Finishes an append made with deferSync: the fsync (off the calling thread), then the high watermark.
    /// A failed fsync has taken the log's directory offline (<see cref="PartitionLog"/>): the records stay
    /// below no high watermark and on no follower (see <see cref="Partition.ReplicableEndOffset"/>).
    /// </summary>
    public static async Task<LogAppendResult> CompleteSyncAsync(Partition p, LogAppendResult result)
    {
        if (result.Sync is null) return result;
        var done = await p.Log.SyncAsync(result).ConfigureAwait(false);
        if (done.Error == ErrorCode.None) p.OnLeaderSync();
        return done;
    }

    /// <summary>
    /// acks=all: waits until the high watermark passes <paramref name="lastOffset"/>, then answers NONE, or
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below min.insync.replicas meanwhile;
    /// NOT_LEADER_OR_FOLLOWER when leadership moved (from <paramref name="leaderEpoch"/>); REQUEST_TIMED_OUT
    /// after <paramref name="timeoutMs"/>.
    /// </summary>
    public static async Task<ErrorCode> WaitForAcksAsync(Partition p, long lastOffset, int leaderEpoch, int timeoutMs, CancellationToken ct)
    {
        long deadline = Environment.TickCount64 + Math.Max(0, timeoutMs);
        PartitionSignal[] one = [p.Signal];
        while (true)
        {
            var seen = DataWaiter.Snapshot(one);
            var (done, error) = p.CheckEnoughReplicasReachOffset(lastOffset, leaderEpoch);
            if (done) return error;
            long remaining = deadline - Environment.TickCount64;
            if (remaining <= 0 || ct.IsCancellationRequested) return ErrorCode.RequestTimedOut;
            await DataWaiter.WaitAsync(one, seen, (int)remaining, ct).ConfigureAwait(false);
        }
    }

    // ---------------------------------------------------------------- ISR expiration

    /// <summary>Starts the ISR expiration task (every half replica.lag.time.max.ms, as Kafka's isr-expiration).</summary>
    public void Start()
    {
        if (_isrExpiration is not null) return;
        long period = Math.Max(1, Options.Replication.ReplicaLagTimeMaxMs / 2);
        _isrExpiration = Task.Run(async () =>
        {
            using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(period), _time);
            try
            {
                while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false))
                {
                    try
                    {
                        MaybeShrinkIsrs();
                    }
#pragma warning disable CA1031 // one failed round is logged; the next tick looks again (a dead loop would leave lagging followers in the ISR for ever)
                    catch (Exception e) when (e is not OperationCanceledException)
#pragma warning restore CA1031
                    {
                        LogIsrExpirationFailed(_logger, e);
                    }
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
            }
        });
    }

    /// <summary>Proposes removing lagging followers from the ISR of every partition this broker leads. Returns how many proposals went out.</summary>
    public int MaybeShrinkIsrs()
    {
        int n = 0;
        foreach (var p in _partitions.Values)
            if (p.IsLeader && p.MaybeShrinkIsr()) n++;
        return n;
    }

    /// <summary>Stops the fetchers and the ISR expiration task.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested) return;
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_isrExpiration is not null)
        {
            try { await _isrExpiration.ConfigureAwait(false); }
            catch (OperationCanceledException) { }
        }
        if (Fetchers is not null) await Fetchers.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Waits until the high watermark passes <paramref name="offset"/> (acks=all); false on timeout.</summary>
    public static async Task<bool> WaitForHighWatermarkAsync(Partition p, long offset, int timeoutMs, CancellationToken ct)
    {
        long deadline = Environment.TickCount64 + Math.Max(0, timeoutMs);
        PartitionSignal[] one = [p.Signal];
        while (true)
        {
            var seen = DataWaiter.Snapshot(one);
            if (p.HighWatermark > offset) return true;
            long remaining = deadline - Environment.TickCount64;
            if (remaining <= 0 || ct.IsCancellationRequested) return false;
            await DataWaiter.WaitAsync(one, seen, (int)remaining, ct).ConfigureAwait(false);
        }
    }

    [LoggerMessage(EventId = 3004, Level = LogLevel.Error, Message = "ISR expiration check failed; trying again at the next tick")]
    private static partial void LogIsrExpirationFailed(ILogger logger, Exception e);

    [LoggerMessage(EventId = 3001, Level = LogLevel.Information, Message = "Deleting stray log {Partition}: its topic is not in the metadata")]
    private static partial void LogStray(ILogger logger, TopicPartition partition);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Information, Message = "Removed partition {Partition}")]
    private static partial void LogRemoved(ILogger logger, TopicPartition partition);

    [LoggerMessage(EventId = 3003, Level = LogLevel.Warning, Message = "{Partition}: follower of broker {Leader}, but there is no node client to fetch with")]
    private static partial void LogNoNodeClient(ILogger logger, TopicPartition partition, int leader);

    [LoggerMessage(EventId = 3004, Level = LogLevel.Error, Message = "Log directory {Dir} is offline until restart ({Reason}): its partitions answer KAFKA_STORAGE_ERROR, heartbeats report it")]
    private static partial void LogDirOffline(ILogger logger, string dir, string reason);

    [LoggerMessage(EventId = 3005, Level = LogLevel.Error, Message = "{Partition}: cannot create the replica's log: {Reason}")]
    private static partial void LogCreateFailed(ILogger logger, TopicPartition partition, string reason);
}
