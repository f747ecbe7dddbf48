using System.Diagnostics;
using System.Globalization;
using Freshet.Broker;
using Freshet.Broker.Groups;
using Freshet.Broker.Handlers;
using Freshet.Broker.Lifecycle;
using Freshet.Broker.Replication;
using Freshet.Metadata.Controller;
using Freshet.Metadata.Image;
using Freshet.Metadata.Log;
using Freshet.Metadata.Raft;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Network;
using Freshet.Protocol.Wire;
using Freshet.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Server;

/// <summary>How to start a <see cref="FreshetServer"/>.</summary>
public sealed record FreshetServerOptions
{
    /// <summary>server.properties keys and values (overrides included).</summary>
    public IReadOnlyDictionary<string, string> Properties { get; init; } = new Dictionary<string, string>();

    public ILoggerFactory? Loggers { get; init; }
    public TimeProvider? Time { get; init; }

    /// <summary>Delete the data directories when the server is disposed (embedded use with a temporary directory).</summary>
    public bool DeleteDataOnDispose { get; init; }

    /// <summary>The partition logs' file operations (tests: a seam that fails fsyncs or writes); the real ones when null.</summary>
    internal Storage.StorageIo? StorageIo { get; init; }
}

/// <summary>
/// A Freshet node in one object: the composition root that wires storage, metadata, broker and
/// network. The `freshet server` command runs one; tests and applications embed one with
/// <see cref="StartEmbeddedAsync"/>:
/// <code>
/// await using var broker = await FreshetServer.StartEmbeddedAsync();
/// var config = new ProducerConfig { BootstrapServers = broker.BootstrapServers };
/// </code>
/// <para>
/// Failures the node cannot go on from halt it (see <see cref="Fatal"/>). Fatal: the metadata quorum's
/// driver stopping (its log or quorum-state file failed: Kafka halts on a metadata log failure), the
/// metadata loader failing to apply committed records (the node's view of the cluster is unknown), and
/// every log directory of a broker having failed (a failed fsync or write takes its directory offline
/// for good; Kafka halts once none is left), any background loop that must run for the node to be what
/// it claims to be ending by an exception
/// (the controller's session loop, the broker's heartbeat loop): such a node would look alive while
/// fencing nobody or being fenced. Retried, not fatal: one round of those loops failing (logged; the
/// next tick tries again: a missed heartbeat or fencing check is made good by the next), a Raft request
/// to a peer failing, a metadata snapshot that could not be written, an ISR proposal the controller
/// did not take (the partition proposes again after a backoff), a __consumer_offsets partition that
/// could not be loaded (loaded again with a backoff while this broker leads it), a replica fetch.
/// </para>
/// </summary>
public sealed partial class FreshetServer : IAsyncDisposable
{
    private readonly ILogger _logger;
    private readonly LogManager _logs;
    private readonly Parts _parts;
    private readonly bool _deleteData;
    private LogSyncer? _syncer;
    private (CancellationTokenSource Stop, Task Run)? _sessions;
    private int _disposed;
    private int _halted;
    private readonly TaskCompletionSource<Exception> _fatal = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private FreshetServer(BrokerConfig config, ILogger logger, LogManager logs, Parts parts,
        QuorumController controller, ReplicaManager replicas, string bootstrap, bool deleteData, TimeSpan startup)
    {
        Config = config;
        _logger = logger;
        _logs = logs;
        _parts = parts;
        Controller = controller;
        Replicas = replicas;
        BootstrapServers = bootstrap;
        _deleteData = deleteData;
        StartupTime = startup;
    }

    public BrokerConfig Config { get; }
    public QuorumController Controller { get; }
    public ReplicaManager Replicas { get; }

    /// <summary>The group coordinator (consumer groups and their offsets).</summary>
    public GroupCoordinator Groups => _parts.Groups!;
    public LogManager Logs => _logs;

    /// <summary>host:port of the first advertised listener, for a client's bootstrap.servers.</summary>
    public string BootstrapServers { get; }

    public string ClusterId => Controller.Image.ClusterId;

    /// <summary>Every listener's bound address (with the real port when port 0 was configured).</summary>
    public IReadOnlyList<(string Name, System.Net.IPEndPoint EndPoint)> BoundListeners => _parts.Sockets!.BoundEndpoints;
    public int ConnectionCount => _parts.Sockets!.ConnectionCount;

    /// <summary>The metadata quorum as this node sees it (leader, epoch, high watermark).</summary>
    public RaftDriver.RaftState Quorum => _parts.Raft!.State;

    /// <summary>From the call to start until the listeners accepted connections.</summary>
    public TimeSpan StartupTime { get; }

    /// <summary>
    /// Completes, with the reason, when this node halted on a failure it cannot go on from (its metadata
    /// log or quorum-state file failed, committed metadata could not be applied, a background loop it
    /// needs died). By then it has stopped serving: its listeners are closed and its broker stopped
    /// heartbeating (the controller fences it), and the other nodes go on without it. `freshet server`
    /// logs the reason and exits with code 1, as Kafka halts; an embedded server stays halted until
    /// disposed (the reason is here and in the log).
    /// </summary>
    public Task<Exception> Fatal => _fatal.Task;

    /// <summary>True once the node halted (<see cref="Fatal"/> completes when it has stopped serving).</summary>
    public bool IsHalted => Volatile.Read(ref _halted) != 0;

    /// <summary>
    /// Starts a one-node broker+controller on a free loopback port with data in a new temporary
    /// directory (deleted on dispose). <paramref name="properties"/> adds or overrides settings.
    /// </summary>
    public static Task<FreshetServer> StartEmbeddedAsync(IReadOnlyDictionary<string, string>? properties = null, ILoggerFactory? loggers = null)
    {
        string dir = Path.Combine(Path.GetTempPath(), "freshet-" + Guid.NewGuid().ToString("N")[..12]);
        var props = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["listeners"] = "PLAINTEXT://127.0.0.1:0",
            ["log.dirs"] = dir,
        };
        if (properties is not null)
            foreach (var (k, v) in properties) props[k] = v;
        return StartAsync(new FreshetServerOptions { Properties = props, Loggers = loggers, DeleteDataOnDispose = properties?.ContainsKey("log.dirs") != true });
    }

    /// <summary>
    /// Starts a node and returns once it is ready: its broker caught up with the metadata and unfenced
    /// (clients' requests, held until then, are served from here on). Cancelling <paramref name="cancel"/>
    /// while it waits for the quorum stops it (connections held so far are closed unanswered) and throws
    /// <see cref="OperationCanceledException"/>.
    /// </summary>
    public static Task<FreshetServer> StartAsync(FreshetServerOptions options, CancellationToken cancel = default) => Task.Run(() => Start(options, cancel), CancellationToken.None);

    private static FreshetServer Start(FreshetServerOptions options, CancellationToken cancel)
    {
        var sw = Stopwatch.StartNew();
        var loggers = options.Loggers ?? NullLoggerFactory.Instance;
        var time = options.Time ?? TimeProvider.System;
        var logger = loggers.CreateLogger<FreshetServer>();
        var config = new BrokerConfig(options.Properties);
        foreach (var k in config.Unknown) LogUnknownKey(logger, k);
        bool isBroker = config.ProcessRoles.Contains("broker");
        bool isController = config.ProcessRoles.Contains("controller");
        var voters = QuorumTopology(config);

        string clusterId = MetaProperties.EnsureFormatted(config.LogDirs.Append(config.MetadataLogDir), config.NodeId, config.ClusterIdOverride);
        var syncer = new LogSyncer();

        var logs = new LogManager(new LogManagerOptions
        {
            LogDirs = config.LogDirs,
            TopicDefaults = config.TopicDefaults,
            Log = new LogOptions
            {
                FsyncOnAppend = config.FlushPerAppend,
                ProducerIdExpirationMs = config.ProducerIdExpirationMs,
                Syncer = syncer,
                Io = options.StorageIo ?? Storage.StorageIo.Default,
            },
            RetentionCheckIntervalMs = config.RetentionCheckIntervalMs,
            FlushCheckIntervalMs = Math.Min(config.FlushSchedulerIntervalMs, 1000),
            CheckpointIntervalMs = config.CheckpointIntervalMs,
            HighWatermarkCheckpointIntervalMs = config.HighWatermarkCheckpointIntervalMs,
            ProducerExpirationCheckIntervalMs = config.ProducerIdExpirationCheckIntervalMs,
            CleanerEnable = config.CleanerEnable,
            CleanerBackoffMs = config.CleanerBackoffMs,
            CleanerDedupeBufferSize = config.CleanerDedupeBufferSize,
            CleanerDedupeBufferLoadFactor = config.CleanerDedupeBufferLoadFactor,
            CleanerIoBufferSize = config.CleanerIoBufferSize,
        }, time, loggers);
        var parts = new Parts();
        // Kafka halts a broker once every one of its log directories has failed: it can hold no replica
        // any more, and a node that looks alive while it can store nothing only delays the failover.
        if (isBroker)
            logs.Failures.DirectoryFailed += (dir, reason) =>
            {
                if (config.LogDirs.All(logs.Failures.IsOffline))
                    parts.Fatal.TrySetResult(new IOException($"every log directory has failed (the last, {dir}: {reason})"));
            };
        ReplicaManager? started = null;
        try
        {
            logs.Startup();
            var raftConfig = new RaftConfig { NodeId = config.NodeId, Voters = [.. voters.Keys], ClusterId = clusterId };
            var network = new NetworkOptions
            {
                Listeners = [.. config.Listeners.Select(l => new ListenerEndpoint(l.Name, l.Host, l.Port)
                {
                    MaxConnections = config.ListenerMaxConnections.GetValueOrDefault(l.Name, int.MaxValue),
                })],
                SocketRequestMaxBytes = config.SocketRequestMaxBytes,
                ConnectionsMaxIdleMs = config.ConnectionsMaxIdleMs,
                MaxConnections = config.MaxConnections,
                MaxConnectionsPerIp = config.MaxConnectionsPerIp,
                MaxConnectionsPerIpOverrides = NetworkOptions.ResolvePerIpOverrides(config.MaxConnectionsPerIpOverrides),
                InterBrokerListenerName = config.InterBrokerListenerName,
                ControllerListenerNames = config.ControllerListenerNames.ToHashSet(StringComparer.Ordinal),
                SocketSendBufferBytes = config.SocketSendBufferBytes,
                SocketReceiveBufferBytes = config.SocketReceiveBufferBytes,
            };
            var dispatcher = new RequestDispatcher(config.UnstableApiVersionsEnable);
            // The controller listener serves the quorum's and the brokers' controller APIs, not the client ones.
            var controllerDispatcher = new RequestDispatcher(config.UnstableApiVersionsEnable);
            parts.Sockets = new SocketServer(network, dispatcher, loggers,
                config.ControllerListenerNames.ToDictionary(n => n, _ => controllerDispatcher, StringComparer.Ordinal));
            parts.Sockets.Bind();
            var advertised = Advertise(config, parts.Sockets);

            // ---- the metadata quorum (a quorum of one on a single combined node) and the image it feeds
            parts.ControllerNodes = new NodeClient(id => voters.TryGetValue(id, out var v) && v is { } e ? (e.Host, e.Port) : null,
                // Raft cancels its own requests after controller.quorum.request.timeout.ms; brokers' calls wait for a commit.
                new NodeClientOptions { ClientId = $"freshet-{config.NodeId}-controller-channel", RequestTimeoutMs = 30_000 },
                loggers.CreateLogger<NodeClient>());
            var controllerNodes = parts.ControllerNodes;
            // Raft has connections of its own: responses come back in request order per connection, so a
            // broker's call waiting on a commit must never sit in front of the fetches that make the commit.
            parts.RaftNodes = new NodeClient(id => voters.TryGetValue(id, out var v) && v is { } e ? (e.Host, e.Port) : null,
                new NodeClientOptions { ClientId = $"freshet-{config.NodeId}-raft", RequestTimeoutMs = 30_000 }, loggers.CreateLogger<NodeClient>());
            var raftNodes = parts.RaftNodes;
            parts.OtherVoters = voters.Count > 1;
            // Raft sends at the highest version this node serves: the voters run the same software.
            parts.Raft = new RaftDriver(raftConfig, raftNodes, controllerDispatcher.MaxVersion, time, loggers.CreateLogger<RaftDriver>());
            var raft = parts.Raft;
            parts.WatchFailure(raft.Failed);
            var controller = new QuorumController(new ControllerOptions
            {
                NodeId = config.NodeId,
                ClusterId = clusterId,
                DefaultNumPartitions = config.NumPartitions,
                DefaultReplicationFactor = config.DefaultReplicationFactor,
                TopicDefaults = config.TopicDefaults,
                StaticBrokerConfigs = BrokerConfig.Definition.Keys.Select(k => k.Name).ToHashSet(StringComparer.Ordinal),
                BrokerSessionTimeoutMs = config.BrokerSessionTimeoutMs,
                Time = time,
            }, new RaftMetadataLog(raft), loggers.CreateLogger<QuorumController>());
            var cache = new MetadataCache(controller.Image);
            controller.AddListener(cache);

            // ---- how this node's broker reaches the active controller
            // The only voter of its quorum is always its own controller: no network between them.
            bool remoteCapable = voters.Count > 1 || !isController;
            IControllerChannel channel = remoteCapable
                ? new ControllerChannel(controllerNodes, () => raft.State.Leader.LeaderId, loggers.CreateLogger<ControllerChannel>())
                : new LocalControllerChannel(controllerDispatcher, retryBackoffMs: 10);
            var operations = new ControllerOperations(controller, remoteCapable ? channel : null, TimeSpan.FromSeconds(30));

            var brokerOptions = new BrokerOptions
            {
                NodeId = config.NodeId,
                Rack = config.Rack,
                AdvertisedListeners = advertised,
                AutoCreateTopicsEnable = config.AutoCreateTopicsEnable,
                DeleteTopicEnable = config.DeleteTopicEnable,
                TopicDefaults = config.TopicDefaults,
                DescribeBrokerConfigs = config.Describe,
                MaxFetchWaitMs = config.FetchMaxWaitCapMs,
                ProducerIdExpirationMs = config.ProducerIdExpirationMs,
                Replication = config.Replication,
                ReplicaSelector = config.ReplicaSelector,
                BrokerEpoch = () => parts.Lifecycle?.BrokerEpoch ?? -1,
                ActiveControllerId = () => raft.State.Leader.LeaderId,
                Controllers = ControllerEndpoints(config, voters),
                LogDirs = new LogDirHealth(logs.Failures),
            };
            parts.BrokerNodes = new NodeClient(id => BrokerAddress(cache, config.InterBrokerListenerName, id),
                new NodeClientOptions { ClientId = $"freshet-{config.NodeId}-replica-fetcher" }, loggers.CreateLogger<NodeClient>());
            var replicas = new ReplicaManager(brokerOptions, logs, loggers.CreateLogger<ReplicaManager>(), isBroker ? parts.BrokerNodes : null,
                new ControllerAlterPartitionSender(channel, config.NodeId, brokerOptions.BrokerEpoch), time, loggers);

            // ---- the controller listener
            new ApiVersionsHandler(controllerDispatcher, cache).Register();
            new QuorumApisHandler(controllerDispatcher, raft, controller).Register();
            if (isController) new ControllerApisHandler(controllerDispatcher, controller, isActive: () => controller.IsActive).Register();
            // Admin APIs: served by the controller for requests brokers forward, and by brokers (here, or forwarded).
            var admin = new RequestDispatcher(config.UnstableApiVersionsEnable);
            new TopicsHandler(admin, brokerOptions, controller).Register();
            new ConfigsHandler(admin, brokerOptions, controller, cache).Register();
            new ReassignmentHandler(admin, controller).Register();
            foreach (short key in admin.ApiKeys)
            {
                var handler = admin.HandlerOf((ApiKey)key)!;
                bool ordered = admin.IsOrdered(key), released = admin.IsLatestReleased(key);
                short? max = admin.ImplementedMaxVersion(key);
                if (ForwardedToController(key) is { } notController)
                {
                    if (isController) controllerDispatcher.Register((ApiKey)key, handler, ordered, released, max);
                    dispatcher.Register((ApiKey)key, operations.Forwarding(handler, notController), ordered, released, max);
                }
                else
                {
                    dispatcher.Register((ApiKey)key, handler, ordered, released, max);
                }
            }

            // ---- the client listener
            new ApiVersionsHandler(dispatcher, cache).Register();
            // DescribeQuorum (kafka-metadata-quorum.sh, freshet cluster describe): answered by the quorum leader, forwarded to it from other nodes.
            dispatcher.Register(ApiKey.DescribeQuorum, operations.Forwarding(controllerDispatcher.HandlerOf(ApiKey.DescribeQuorum)!,
                r => ((DescribeQuorumResponse)r).Topics.SelectMany(t => t.Partitions).Any(p => p.ErrorCode == (short)ErrorCode.NotLeaderOrFollower)
                    ? ErrorCode.NotController : ErrorCode.None));
            var metadataHandler = new MetadataHandler(dispatcher, brokerOptions, cache, operations);
            metadataHandler.Register();
            if (isController) metadataHandler.RegisterControllerListener(controllerDispatcher);
            new ProduceHandler(dispatcher, replicas, cache).Register();
            new FetchHandler(dispatcher, replicas, cache).Register();
            new OffsetsHandler(dispatcher, replicas, cache).Register();
            new LeaderEpochHandler(dispatcher, replicas, cache).Register();
            new LogDirsHandler(dispatcher, replicas).Register();
            new ProducerIdHandler(dispatcher, new ProducerIdManager(operations, config.NodeId, brokerOptions.BrokerEpoch)).Register();
            var internalTopics = new InternalTopics(cache, operations, loggers.CreateLogger<InternalTopics>());
            parts.Groups = new GroupCoordinator(config.Groups, replicas, cache, internalTopics, time, loggers.CreateLogger<GroupCoordinator>());
            new CoordinatorHandler(dispatcher, parts.Groups, cache).Register();
            new GroupMembershipHandler(dispatcher, parts.Groups).Register();
            new OffsetCommitHandler(dispatcher, parts.Groups).Register();
            new GroupAdminHandler(dispatcher, parts.Groups).Register();
            new ConsumerGroupHandler(dispatcher, parts.Groups).Register();

            // ---- start: the quorum first (other nodes reach it through the controller listener), then the broker
            parts.Loader = new MetadataLoader(controller, raft, canLead: isController, config.MetadataSnapshots, time, loggers.CreateLogger<MetadataLoader>());
            parts.WatchFailure(parts.Loader.Failed);
            raft.Start(PartitionRaftLog.Open(config.MetadataLogDir, time, loggers, new Dictionary<string, string>
                {
                    [LogConfig.SegmentBytesConfig] = config.MetadataLogSegmentBytes.ToString(CultureInfo.InvariantCulture),
                    [LogConfig.SegmentMsConfig] = config.MetadataLogSegmentMs.ToString(CultureInfo.InvariantCulture),
                }),
                new FileQuorumStateStore(Path.Combine(config.MetadataLogDir, LocalMetadataLog.Partition.ToString(), "quorum-state"), voters.Keys),
                parts.Loader, new Random());
            replicas.Start();
            started = replicas;
            // Connections are accepted from here on, but only the controller listeners serve requests before
            // the node is ready (EnableRequestProcessing below): the quorum needs them to get there.
            parts.Sockets.StartAccepting(earlyListeners: config.ControllerListenerNames);
            // The replica manager sees the metadata once it is whole: a partial image would make it
            // delete the logs of topics it has not read yet as strays.
            while (!parts.WaitUnlessFatal(parts.Loader.CaughtUp, TimeSpan.FromSeconds(10), config.NodeId, cancel))
                LogWaitingForQuorum(logger, config.NodeId, raft.State.Leader.ToString());
            if (isBroker) controller.AddListenerWithCurrentImage(replicas);
            if (isBroker)
            {
                // Heartbeats name the log directories appends found unwritable by their directory.id (meta.properties).
                var directoryIds = config.LogDirs.ToDictionary(d => Path.TrimEndingDirectorySeparator(Path.GetFullPath(d)),
                    d => MetaProperties.Read(d)?.DirectoryId ?? Uuid.Zero, StringComparer.Ordinal);
                parts.Lifecycle = new BrokerLifecycleManager(new BrokerIdentity(config.NodeId, clusterId, advertised, config.Rack), channel,
                    () => controller.Image.Offset, config.BrokerHeartbeatIntervalMs, loggers.CreateLogger<BrokerLifecycleManager>(),
                    () => [.. brokerOptions.LogDirs.Offline.Select(d => directoryIds.GetValueOrDefault(Path.TrimEndingDirectorySeparator(Path.GetFullPath(d)), Uuid.Zero))]);
                var lifecycle = parts.Lifecycle;
                var visible = new OwnRegistrationWatch(config.NodeId, () => lifecycle.BrokerEpoch);
                controller.AddListenerWithCurrentImage(visible);
                parts.Lifecycle.Start();
                parts.WatchLoop(parts.Lifecycle.Running, "the broker's heartbeat loop");
                // Serve clients once the controller has unfenced this broker (at once on a node that is its own
                // controller; in a cluster, once a quorum of controllers is up and this broker has caught up),
                // and this node's image shows it: a Metadata answer then lists at least this broker.
                while (!parts.WaitUnlessFatal(Task.WhenAll(parts.Lifecycle.Unfenced, visible.Unfenced), TimeSpan.FromSeconds(10), config.NodeId, cancel))
                    LogWaitingForQuorum(logger, config.NodeId, raft.State.Leader.ToString());
            }
            parts.Sockets.EnableRequestProcessing();
            // A controller-only node advertises nothing to clients: it is reached on its controller listener.
            var first = advertised.Count > 0 ? advertised[0]
                : parts.Sockets.BoundEndpoints.Select(b => new BrokerEndpoint(b.Name, b.EndPoint.Address.ToString(), b.EndPoint.Port, 0)).First();
            string bootstrap = $"{(first.Host.Contains(':', StringComparison.Ordinal) ? $"[{first.Host}]" : first.Host)}:{first.Port}";
            LogStarted(logger, config.NodeId, clusterId, bootstrap, sw.ElapsedMilliseconds);
            var server = new FreshetServer(config, logger, logs, parts, controller, replicas, bootstrap, options.DeleteDataOnDispose, sw.Elapsed)
            {
                _syncer = syncer,
                _sessions = isController ? StartSessionLoop(controller, config, logger) : null,
            };
            if (server._sessions is { } sessions) parts.WatchLoop(sessions.Run, "the controller's session loop");
            // Observed here for the server's lifetime; HaltAsync never throws.
            _ = server.HaltOnFatalAsync();
            return server;
        }
        catch
        {
            // Closes the connections held for readiness, unanswered.
            parts.DisposeAsync().AsTask().GetAwaiter().GetResult();
            started?.DisposeAsync().AsTask().GetAwaiter().GetResult();
            logs.DisposeAsync().AsTask().GetAwaiter().GetResult();
            syncer.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The controller's clock work: fencing of brokers whose sessions expired, every
    /// broker.heartbeat.interval.ms (or a third of the session); fencing at once of late brokers
    /// whose listener refuses connections (broker.session.probe.ms); and preferred-leader balancing
    /// every leader.imbalance.check.interval.seconds.
    /// </summary>
    private static (CancellationTokenSource, Task) StartSessionLoop(QuorumController controller, BrokerConfig config, ILogger logger)
    {
        var stop = new CancellationTokenSource();
        int interval = Math.Min(config.BrokerHeartbeatIntervalMs, Math.Max(1, config.BrokerSessionTimeoutMs / 3));
        if (config.BrokerSessionProbeMs > 0) interval = Math.Min(interval, Math.Max(1, config.BrokerSessionProbeMs / 3));
        var run = Task.Run(async () =>
        {
            using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(interval));
            long nextBalanceCheck = Environment.TickCount64 + config.LeaderImbalanceCheckIntervalMs;
            try
            {
                while (await timer.WaitForNextTickAsync(stop.Token).ConfigureAwait(false))
                {
                    if (!controller.IsActive) continue;
                    try
                    {
                        controller.FenceExpiredBrokers();
                        if (config.BrokerSessionProbeMs > 0) await FenceGoneBrokersAsync(controller, config, stop.Token).ConfigureAwait(false);
                        if (config.AutoLeaderRebalanceEnable && Environment.TickCount64 >= nextBalanceCheck)
                        {
                            nextBalanceCheck = Environment.TickCount64 + config.LeaderImbalanceCheckIntervalMs;
                            controller.RebalanceLeaders(config.LeaderImbalancePerBrokerPercentage);
                        }
                    }
                    catch (NotControllerException)
                    {
                        // Leadership moved on; the new active controller checks sessions now.
                    }
#pragma warning disable CA1031 // one failed round is logged and the next tick tries again: fencing reads the image afresh each time
                    catch (Exception e) when (e is not OperationCanceledException || !stop.IsCancellationRequested)
#pragma warning restore CA1031
                    {
                        LogSessionLoopFailed(logger, e);
                    }
                }
            }
            catch (OperationCanceledException) { }
        });
        return (stop, run);
    }

    /// <summary>
    /// Brokers whose heartbeat is broker.session.probe.ms late: their inter-broker listener is tried, and
    /// a refused connection (the host answers, no process holds the port: a broker killed) fences them now
    /// rather than when broker.session.timeout.ms runs out. Silence (a partition, a host down) waits for
    /// the session as in Kafka.
    /// </summary>
    private static async Task FenceGoneBrokersAsync(QuorumController controller, BrokerConfig config, CancellationToken ct)
    {
        var late = controller.BrokersLateForHeartbeat(config.BrokerSessionProbeMs);
        if (late.Count == 0) return;
        await Task.WhenAll(late.Select(async l =>
        {
            var endpoint = l.Broker.Endpoints.FirstOrDefault(e => e.Name == config.InterBrokerListenerName) ?? l.Broker.Endpoints.FirstOrDefault();
            if (endpoint is null) return;
            if (await ListenerProbe.IsRefusedAsync(endpoint.Host, endpoint.Port, timeoutMs: 1000, ct).ConfigureAwait(false))
                controller.FenceUnreachableBroker(l.Broker.Id, l.Broker.Epoch, l.LastHeartbeatMs,
                    $"its listener {endpoint.Host}:{endpoint.Port} refuses connections");
        })).ConfigureAwait(false);
    }

    /// <summary>advertised.listeners with real ports (a listener bound to port 0 advertises the port it got) and a reachable host.</summary>
    private static List<BrokerEndpoint> Advertise(BrokerConfig config, SocketServer sockets)
    {
        var bound = sockets.BoundEndpoints;
        var result = new List<BrokerEndpoint>();
        foreach (var (name, host, port) in config.AdvertisedListeners)
        {
            int realPort = port;
            if (port == 0) realPort = bound.FirstOrDefault(b => b.Name == name).EndPoint?.Port ?? 0;
            string h = host;
            if (string.IsNullOrEmpty(h) || h is "0.0.0.0" or "::")
                h = System.Net.Dns.GetHostName();
            // Security protocol id 0: PLAINTEXT, the only one BrokerConfig lets a listener have.
            result.Add(new BrokerEndpoint(name, h, realPort, 0));
        }
        return result;
    }

    /// <summary>Completes once this node's image shows its own broker registration (this process's epoch) unfenced.</summary>
    private sealed class OwnRegistrationWatch(int nodeId, Func<long> brokerEpoch) : IMetadataListener
    {
        private readonly TaskCompletionSource _unfenced = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Unfenced => _unfenced.Task;

        public void OnMetadataUpdate(MetadataImage previous, MetadataImage current)
        {
            if (!_unfenced.Task.IsCompleted && current.Brokers.TryGetValue(nodeId, out var b) && !b.Fenced && b.Epoch == brokerEpoch())
                _unfenced.TrySetResult();
        }
    }

    /// <summary>The voters' controller-listener addresses; a single node without a voter list is its own controller (at its controller listener, if it has one).</summary>
    private static List<(int Id, string Host, int Port)> ControllerEndpoints(BrokerConfig config, IReadOnlyDictionary<int, VoterEndpoint?> voters)
    {
        var result = new List<(int, string, int)>();
        foreach (var (id, endpoint) in voters.OrderBy(v => v.Key))
        {
            if (endpoint is { } e) result.Add((id, e.Host, e.Port));
            else if (config.Listeners.FirstOrDefault(l => config.ControllerListenerNames.Contains(l.Name)) is { } own) result.Add((id, own.Host, own.Port));
        }
        return result;
    }

    /// <summary>The quorum's voters: controller.quorum.voters, or this node alone when it is a single combined node.</summary>
    private static IReadOnlyDictionary<int, VoterEndpoint?> QuorumTopology(BrokerConfig config)
    {
        if (config.QuorumVoters.Count == 0)
        {
            if (!config.ProcessRoles.Contains("controller"))
                throw new ArgumentException("a broker-only node needs controller.quorum.voters to find its controllers");
            return new Dictionary<int, VoterEndpoint?> { [config.NodeId] = null };
        }
        var voters = QuorumVoters.Parse(string.Join(",", config.QuorumVoters));
        if (config.ProcessRoles.Contains("controller") && !voters.ContainsKey(config.NodeId))
            throw new ArgumentException($"node {config.NodeId} has the controller role but is not in controller.quorum.voters");
        if (config.ProcessRoles.Contains("controller") && config.ControllerListenerNames.Count == 0)
            throw new ArgumentException("a controller in a quorum needs controller.listener.names (the listener the other nodes reach it on)");
        return voters.ToDictionary(v => v.Key, v => (VoterEndpoint?)v.Value);
    }

    /// <summary>The admin APIs a broker hands to the active controller, with how to read NOT_CONTROLLER in their responses.</summary>
    private static Func<IApiMessage, ErrorCode>? ForwardedToController(short key) => (ApiKey)key switch
    {
        ApiKey.CreateTopics => r => ((CreateTopicsResponse)r).Topics.Any(t => t.ErrorCode == (short)ErrorCode.NotController) ? ErrorCode.NotController : ErrorCode.None,
        ApiKey.DeleteTopics => r => ((DeleteTopicsResponse)r).Responses.Any(t => t.ErrorCode == (short)ErrorCode.NotController) ? ErrorCode.NotController : ErrorCode.None,
        ApiKey.CreatePartitions => r => ((CreatePartitionsResponse)r).Results.Any(t => t.ErrorCode == (short)ErrorCode.NotController) ? ErrorCode.NotController : ErrorCode.None,
        ApiKey.IncrementalAlterConfigs => r => ((IncrementalAlterConfigsResponse)r).Responses.Any(t => t.ErrorCode == (short)ErrorCode.NotController) ? ErrorCode.NotController : ErrorCode.None,
        ApiKey.AlterConfigs => r => ((AlterConfigsResponse)r).Responses.Any(t => t.ErrorCode == (short)ErrorCode.NotController) ? ErrorCode.NotController : ErrorCode.None,
        ApiKey.ElectLeaders => r => (ErrorCode)((ElectLeadersResponse)r).ErrorCode,
        ApiKey.AlterPartitionReassignments => r => (ErrorCode)((AlterPartitionReassignmentsResponse)r).ErrorCode,
        ApiKey.ListPartitionReassignments => r => (ErrorCode)((ListPartitionReassignmentsResponse)r).ErrorCode,
        _ => null,
    };

    /// <summary>A broker's address on the inter-broker listener, from the metadata image.</summary>
    private static (string, int)? BrokerAddress(MetadataCache cache, string listener, int brokerId) =>
        cache.Image.Brokers.TryGetValue(brokerId, out var b) && b.Endpoints.FirstOrDefault(e => e.Name == listener) is { } ep ? (ep.Host, ep.Port) : null;

    /// <summary>What the node runs besides its storage, for disposal in reverse order.</summary>
    private sealed class Parts : IAsyncDisposable
    {
        public SocketServer? Sockets;
        public NodeClient? ControllerNodes;
        public NodeClient? RaftNodes;
        public NodeClient? BrokerNodes;
        public RaftDriver? Raft;
        public bool OtherVoters;
        public MetadataLoader? Loader;
        public BrokerLifecycleManager? Lifecycle;
        public GroupCoordinator? Groups;

        /// <summary>Completes with the first failure the node cannot go on from.</summary>
        public readonly TaskCompletionSource<Exception> Fatal = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>A component's failure signal (it completes with the reason, and never faults) makes the node halt.</summary>
        public void WatchFailure(Task<Exception> failed) =>
            failed.ContinueWith(t => Fatal.TrySetResult(t.Result), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

        /// <summary>A loop that runs until the node stops: its ending by an exception makes the node halt.</summary>
        public void WatchLoop(Task loop, string what) =>
            loop.ContinueWith(t => Fatal.TrySetResult(new InvalidOperationException($"{what} died: {t.Exception!.GetBaseException().Message}", t.Exception.GetBaseException())),
                CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

        /// <summary>Waits for a start-up step; a fatal failure meanwhile aborts the start with its reason.</summary>
        public bool WaitUnlessFatal(Task step, TimeSpan timeout, int nodeId, CancellationToken cancel = default)
        {
            Task.WaitAny([step, Fatal.Task], (int)timeout.TotalMilliseconds, cancel);
            if (Fatal.Task.IsCompleted && !step.IsCompleted)
                throw new InvalidOperationException($"node {nodeId} cannot go on: {Fatal.Task.Result.Message}", Fatal.Task.Result);
            return step.IsCompleted;
        }

        public async ValueTask DisposeAsync()
        {
            if (Sockets is not null) await Sockets.DisposeAsync().ConfigureAwait(false);
            if (Lifecycle is not null) await Lifecycle.DisposeAsync().ConfigureAwait(false);
            Groups?.Dispose();
            if (BrokerNodes is not null) await BrokerNodes.DisposeAsync().ConfigureAwait(false);
            Raft?.Dispose();
            Loader?.Dispose();
            if (ControllerNodes is not null) await ControllerNodes.DisposeAsync().ConfigureAwait(false);
            if (RaftNodes is not null) await RaftNodes.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Waits for the first fatal failure, then halts (for the server's lifetime; never throws).</summary>
    private async Task HaltOnFatalAsync()
    {
        var reason = await _parts.Fatal.Task.ConfigureAwait(false);
        if (Volatile.Read(ref _disposed) != 0) return; // shutting down anyway: what failed on the way is the shutdown's
        await HaltAsync(reason).ConfigureAwait(false);
    }

    /// <summary>
    /// Stops serving at once: the listeners close (clients and the other nodes see this node gone) and
    /// the broker stops heartbeating (the controller fences it and moves its leaderships). No controlled
    /// shutdown, no handing over: the node is not in a state to take part. Then <see cref="Fatal"/> completes.
    /// </summary>
    private async Task HaltAsync(Exception reason)
    {
        if (Interlocked.Exchange(ref _halted, 1) != 0) return;
        LogHalted(_logger, Config.NodeId, reason.Message, reason);
        try
        {
            if (_parts.Sockets is { } sockets) await sockets.DisposeAsync().ConfigureAwait(false);
        }
#pragma warning disable CA1031 // halting goes on whatever one step says; each failure is logged
        catch (Exception e)
        {
            LogHaltStepFailed(_logger, "the listeners", e);
        }
        try
        {
            if (_parts.Lifecycle is { } lifecycle) await lifecycle.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            LogHaltStepFailed(_logger, "the broker's heartbeats", e);
        }
#pragma warning restore CA1031
        _fatal.TrySetResult(reason);
    }

    /// <summary>
    /// Clean shutdown: controlled shutdown in a cluster, stop accepting, close connections, flush and close
    /// logs (next start skips recovery). A halted node skips the controlled shutdown and the handing over of
    /// the quorum's leadership (it takes part in neither any more) and closes the rest.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        var sw = Stopwatch.StartNew();
        if (!IsHalted)
        {
            // Controlled shutdown: with other brokers alive, hand leaderships over before going (no failed client request).
            if (_parts.Lifecycle is { } lifecycle && Controller.Image.ActiveBrokers.Any(b => b.Id != Config.NodeId))
                await lifecycle.ControlledShutdownAsync(TimeSpan.FromSeconds(15)).ConfigureAwait(false);
            await ResignQuorumLeadershipAsync().ConfigureAwait(false);
        }
        if (_sessions is { } sessions)
        {
            await sessions.Stop.CancelAsync().ConfigureAwait(false);
            await sessions.Run.ConfigureAwait(false);
            sessions.Stop.Dispose();
        }
        await _parts.DisposeAsync().ConfigureAwait(false);
        await Replicas.DisposeAsync().ConfigureAwait(false);
        await _logs.DisposeAsync().ConfigureAwait(false);
        _syncer?.Dispose();
        LogStopped(_logger, sw.ElapsedMilliseconds);
        if (_deleteData)
        {
            foreach (var dir in Config.LogDirs.Append(Config.MetadataLogDir).Distinct())
            {
                try { Directory.Delete(dir, recursive: true); }
                catch (IOException) { }
            }
        }
    }

    /// <summary>
    /// Leading the metadata quorum with other voters: resign (EndQuorumEpoch names the successors) and
    /// wait briefly for one of them to take over, so the cluster has an active controller again within
    /// moments instead of after the followers' fetch timeout and an election.
    /// </summary>
    private async Task ResignQuorumLeadershipAsync()
    {
        if (_parts.Raft is not { } raft || !_parts.OtherVoters || !raft.State.IsLeader) return;
        try
        {
            await raft.InvokeAsync((node, now) =>
            {
                node.Resign(now);
                return true;
            }).WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
            long until = Environment.TickCount64 + 3000;
            while (Environment.TickCount64 < until && (raft.State.Leader.LeaderId ?? Config.NodeId) == Config.NodeId)
                await Task.Delay(20).ConfigureAwait(false);
            LogResigned(_logger, Config.NodeId, raft.State.Leader.ToString());
        }
        catch (Exception e) when (e is TimeoutException or ObjectDisposedException or InvalidOperationException or RaftStoppedException)
        {
            // The quorum will elect a leader after its fetch timeout all the same.
        }
    }

    [LoggerMessage(EventId = 5006, Level = LogLevel.Information, Message = "Node {NodeId} resigned the metadata quorum's leadership on shutdown: {Leader}")]
    private static partial void LogResigned(ILogger logger, int nodeId, string leader);

    [LoggerMessage(EventId = 5005, Level = LogLevel.Information, Message = "Node {NodeId} waiting for the controller quorum to register this broker ({Leader})")]
    private static partial void LogWaitingForQuorum(ILogger logger, int nodeId, string leader);

    [LoggerMessage(EventId = 5004, Level = LogLevel.Error, Message = "Controller session check failed; trying again at the next tick")]
    private static partial void LogSessionLoopFailed(ILogger logger, Exception e);

    [LoggerMessage(EventId = 5007, Level = LogLevel.Critical, Message = "Node {NodeId} halted: {Reason}")]
    private static partial void LogHalted(ILogger logger, int nodeId, string reason, Exception e);

    [LoggerMessage(EventId = 5008, Level = LogLevel.Error, Message = "Stopping {What} while halting failed")]
    private static partial void LogHaltStepFailed(ILogger logger, string what, Exception e);

    [LoggerMessage(EventId = 5001, Level = LogLevel.Warning, Message = "The configuration '{Key}' was supplied but isn't a known config")]
    private static partial void LogUnknownKey(ILogger logger, string key);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Information, Message = "Freshet node {NodeId} of cluster {ClusterId} ready at {Bootstrap} in {Ms} ms")]
    private static partial void LogStarted(ILogger logger, int nodeId, string clusterId, string bootstrap, long ms);

    [LoggerMessage(EventId = 5003, Level = LogLevel.Information, Message = "Freshet stopped cleanly in {Ms} ms")]
    private static partial void LogStopped(ILogger logger, long ms);
}
