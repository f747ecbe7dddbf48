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
}

/// <summary>
/// A Freshet node in one object: the composition root that wires storage, metadata, broker and
/// network. The `freshet server` command runs one; tests and applications embed one with
/// <see cref="StartEmbeddedAsync"/>:
/// <code>
/// await using var broker = await FreshetServer.StartEmbeddedAsync();
/// var config = new ProducerConfig { BootstrapServers = broker.BootstrapServers };
/// </code>
/// </summary>
public sealed partial class FreshetServer : IAsyncDisposable
{
    private readonly ILogger _logger;
    private readonly LogManager _logs;
    private readonly LocalMetadataLog _metadataLog;
    private readonly SocketServer _sockets;
    private readonly bool _deleteData;
    private LogSyncer? _syncer;
    private (CancellationTokenSource Stop, Task Run)? _sessions;
    private BrokerLifecycleManager? _lifecycle;
    private GroupCoordinator? _groups;
    private int _disposed;

    private FreshetServer(BrokerConfig config, ILogger logger, LogManager logs, LocalMetadataLog metadataLog, SocketServer sockets,
        QuorumController controller, ReplicaManager replicas, string bootstrap, bool deleteData, TimeSpan startup)
    {
        Config = config;
        _logger = logger;
        _logs = logs;
        _metadataLog = metadataLog;
        _sockets = sockets;
        Controller = controller;
        Replicas = replicas;
        BootstrapServers = bootstrap;
        _deleteData = deleteData;
        StartupTime = startup;
    }

    public BrokerConfig Config { get; }
    public QuorumController Controller { get; }
    public ReplicaManager Replicas { get; }
    public LogManager Logs => _logs;

    /// <summary>host:port of the first advertised listener, for a client's bootstrap.servers.</summary>
    public string BootstrapServers { get; }

    public string ClusterId => Controller.Image.ClusterId;

    /// <summary>Every listener's bound address (with the real port when port 0 was configured).</summary>
    public IReadOnlyList<(string Name, System.Net.IPEndPoint EndPoint)> BoundListeners => _sockets.BoundEndpoints;
    public int ConnectionCount => _sockets.ConnectionCount;

    /// <summary>From the call to start until the listeners accepted connections.</summary>
    public TimeSpan StartupTime { get; }

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

    public static Task<FreshetServer> StartAsync(FreshetServerOptions options) => Task.Run(() => Start(options));

    private static FreshetServer Start(FreshetServerOptions options)
    {
        var sw = Stopwatch.StartNew();
        var loggers = options.Loggers ?? NullLoggerFactory.Instance;
        var time = options.Time ?? TimeProvider.System;
        var logger = loggers.CreateLogger<FreshetServer>();
        var config = new BrokerConfig(options.Properties);
        foreach (var k in config.Unknown) LogUnknownKey(logger, k);
        if (!config.ProcessRoles.Contains("broker") || !config.ProcessRoles.Contains("controller"))
            throw new NotSupportedException("this version runs combined broker,controller nodes only (process.roles=broker,controller)");

        string clusterId = MetaProperties.EnsureFormatted(config.LogDirs.Append(config.MetadataLogDir), config.NodeId);
        var syncer = new LogSyncer();

        var logs = new LogManager(new LogManagerOptions
        {
            LogDirs = config.LogDirs,
            TopicDefaults = config.TopicDefaults,
            Log = new LogOptions { FsyncOnAppend = config.FlushPerAppend, ProducerIdExpirationMs = config.ProducerIdExpirationMs, Syncer = syncer },
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
        LocalMetadataLog? metadataLog = null;
        SocketServer? sockets = null;
        GroupCoordinator? groups = null;
        BrokerLifecycleManager? lifecycle = null;
        try
        {
            logs.Startup();
            metadataLog = LocalMetadataLog.Open(config.MetadataLogDir, time, loggers);
            var controller = new QuorumController(new ControllerOptions
            {
                NodeId = config.NodeId,
                ClusterId = clusterId,
                DefaultNumPartitions = config.NumPartitions,
                DefaultReplicationFactor = config.DefaultReplicationFactor,
                TopicDefaults = config.TopicDefaults,
                BrokerSessionTimeoutMs = config.BrokerSessionTimeoutMs,
                Time = time,
            }, metadataLog, loggers.CreateLogger<QuorumController>());

            var network = new NetworkOptions
            {
                Listeners = [.. config.Listeners.Select(l => new ListenerEndpoint(l.Name, l.Host, l.Port))],
                SocketRequestMaxBytes = config.SocketRequestMaxBytes,
                ConnectionsMaxIdleMs = config.ConnectionsMaxIdleMs,
                MaxConnections = config.MaxConnections,
                SocketSendBufferBytes = config.SocketSendBufferBytes,
                SocketReceiveBufferBytes = config.SocketReceiveBufferBytes,
            };
            var dispatcher = new RequestDispatcher(config.UnstableApiVersionsEnable);
            // The controller listener serves the controller's APIs only (brokers' calls; the quorum's come with Raft).
            var controllerDispatcher = new RequestDispatcher(config.UnstableApiVersionsEnable);
            sockets = new SocketServer(network, dispatcher, loggers,
                config.ControllerListenerNames.ToDictionary(n => n, _ => controllerDispatcher, StringComparer.Ordinal));
            sockets.Bind();
            var advertised = Advertise(config, sockets);

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
                BrokerEpoch = () => lifecycle?.BrokerEpoch ?? -1,
            };
            var cache = new MetadataCache(controller.Image);
            // This node is its own controller: the broker reaches it in-process, through the same handlers remote brokers reach over TCP.
            var controllerChannel = new LocalControllerChannel(controllerDispatcher);
            var replicas = new ReplicaManager(brokerOptions, logs, loggers.CreateLogger<ReplicaManager>(), nodeClient: null,
                new ControllerAlterPartitionSender(controllerChannel, config.NodeId, brokerOptions.BrokerEpoch), time, loggers);
            controller.AddListener(cache);
            controller.AddListener(replicas);
            controller.Start();

            new ApiVersionsHandler(controllerDispatcher, cache).Register();
            new ControllerApisHandler(controllerDispatcher, controller, isActive: () => true).Register();
            lifecycle = new BrokerLifecycleManager(new BrokerIdentity(config.NodeId, clusterId, advertised, config.Rack), controllerChannel,
                () => controller.Image.Offset, config.BrokerHeartbeatIntervalMs, loggers.CreateLogger<BrokerLifecycleManager>());
            lifecycle.Start();
            // Serve clients once the controller has unfenced this broker (immediately on a node that is its own controller).
            if (!lifecycle.Unfenced.Wait(TimeSpan.FromSeconds(30)))
                throw new TimeoutException("the controller did not unfence this broker within 30 s");
            Func<long> brokerEpoch = () => lifecycle.BrokerEpoch;

            new ApiVersionsHandler(dispatcher, cache).Register();
            new MetadataHandler(dispatcher, brokerOptions, cache, controller).Register();
            new ProduceHandler(dispatcher, replicas, cache).Register();
            new FetchHandler(dispatcher, brokerOptions, replicas, cache).Register();
            new OffsetsHandler(dispatcher, replicas, cache).Register();
            new LeaderEpochHandler(dispatcher, replicas, cache).Register();
            new TopicsHandler(dispatcher, brokerOptions, controller).Register();
            new ConfigsHandler(dispatcher, brokerOptions, controller, cache).Register();
            new LogDirsHandler(dispatcher, logs).Register();
            new ReassignmentHandler(dispatcher, controller).Register();
            new ProducerIdHandler(dispatcher, new ProducerIdManager(controller, config.NodeId, brokerEpoch)).Register();
            groups = new GroupCoordinator(config.Groups, replicas, cache, controller, time, loggers.CreateLogger<GroupCoordinator>());
            new CoordinatorHandler(dispatcher, groups, cache).Register();
            new GroupMembershipHandler(dispatcher, groups).Register();
            new OffsetCommitHandler(dispatcher, groups).Register();
            new GroupAdminHandler(dispatcher, groups).Register();
            new ConsumerGroupHandler(dispatcher, groups).Register();

            replicas.Start();
            sockets.StartAccepting();
            var first = advertised[0];
            string bootstrap = $"{(first.Host.Contains(':', StringComparison.Ordinal) ? $"[{first.Host}]" : first.Host)}:{first.Port}";
            LogStarted(logger, config.NodeId, clusterId, bootstrap, sw.ElapsedMilliseconds);
            return new FreshetServer(config, logger, logs, metadataLog, sockets, controller, replicas, bootstrap, options.DeleteDataOnDispose, sw.Elapsed)
            {
                _syncer = syncer,
                _sessions = StartSessionLoop(controller, config, logger),
                _lifecycle = lifecycle,
                _groups = groups,
            };
        }
        catch
        {
            if (sockets is not null) sockets.DisposeAsync().AsTask().GetAwaiter().GetResult();
            groups?.Dispose();
            lifecycle?.DisposeAsync().AsTask().GetAwaiter().GetResult();
            logs.DisposeAsync().AsTask().GetAwaiter().GetResult();
            metadataLog?.Dispose();
            syncer.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The controller's clock work: fencing of brokers whose sessions expired, every
    /// broker.heartbeat.interval.ms (or a third of the session), and preferred-leader
    /// balancing every leader.imbalance.check.interval.seconds.
    /// </summary>
    private static (CancellationTokenSource, Task) StartSessionLoop(QuorumController controller, BrokerConfig config, ILogger logger)
    {
        var stop = new CancellationTokenSource();
        int interval = Math.Min(config.BrokerHeartbeatIntervalMs, Math.Max(1, config.BrokerSessionTimeoutMs / 3));
        var run = Task.Run(async () =>
        {
            using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(interval));
            long nextBalanceCheck = Environment.TickCount64 + config.LeaderImbalanceCheckIntervalMs;
            try
            {
                while (await timer.WaitForNextTickAsync(stop.Token).ConfigureAwait(false))
                {
                    try
                    {
                        controller.FenceExpiredBrokers();
                        if (config.AutoLeaderRebalanceEnable && Environment.TickCount64 >= nextBalanceCheck)
                        {
                            nextBalanceCheck = Environment.TickCount64 + config.LeaderImbalanceCheckIntervalMs;
                            controller.RebalanceLeaders(config.LeaderImbalancePerBrokerPercentage);
                        }
                    }
                    catch (IOException e)
                    {
                        LogSessionLoopFailed(logger, e.Message);
                    }
                }
            }
            catch (OperationCanceledException) { }
        });
        return (stop, run);
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
            result.Add(new BrokerEndpoint(name, h, realPort, SecurityProtocolOf(name)));
        }
        return result;
    }

    /// <summary>Security protocol ids as Kafka numbers them: PLAINTEXT 0, SSL 1, SASL_PLAINTEXT 2, SASL_SSL 3.</summary>
    private static short SecurityProtocolOf(string listener) => listener switch
    {
        "SSL" => 1,
        "SASL_PLAINTEXT" => 2,
        "SASL_SSL" => 3,
        _ => 0,
    };

    /// <summary>Clean shutdown: stop accepting, close connections, flush and close logs (next start skips recovery).</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        var sw = Stopwatch.StartNew();
        await _sockets.DisposeAsync().ConfigureAwait(false);
        if (_lifecycle is not null) await _lifecycle.DisposeAsync().ConfigureAwait(false);
        if (_sessions is { } sessions)
        {
            await sessions.Stop.CancelAsync().ConfigureAwait(false);
            await sessions.Run.ConfigureAwait(false);
            sessions.Stop.Dispose();
        }
        _groups?.Dispose();
        await Replicas.DisposeAsync().ConfigureAwait(false);
        await _logs.DisposeAsync().ConfigureAwait(false);
        _syncer?.Dispose();
        _metadataLog.Dispose();
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

    [LoggerMessage(EventId = 5004, Level = LogLevel.Warning, Message = "Controller session check failed: {Reason}")]
    private static partial void LogSessionLoopFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 5001, Level = LogLevel.Warning, Message = "The configuration '{Key}' was supplied but isn't a known config")]
    private static partial void LogUnknownKey(ILogger logger, string key);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Information, Message = "Freshet node {NodeId} of cluster {ClusterId} ready at {Bootstrap} in {Ms} ms")]
    private static partial void LogStarted(ILogger logger, int nodeId, string clusterId, string bootstrap, long ms);

    [LoggerMessage(EventId = 5003, Level = LogLevel.Information, Message = "Freshet stopped cleanly in {Ms} ms")]
    private static partial void LogStopped(ILogger logger, long ms);
}
