using System.Globalization;
using Freshet.Broker;
using Freshet.Broker.Replication;
using Freshet.Protocol.Config;
using Freshet.Storage;

namespace Freshet.Server;

/// <summary>
/// A node's configuration: Kafka's server.properties keys, with Kafka's defaults except where
/// noted (listeners binds localhost, log.dirs is ./data). Built from a properties file plus
/// overrides; unknown keys are reported (not fatal, as in Kafka), bad values are fatal, and so is
/// any security Freshet cannot give yet (<see cref="SecuritySettings"/>: TLS, SASL, ACLs), which
/// would otherwise leave a listener its operator believes secured open to anyone.
/// To add a setting: define it in <see cref="Definition"/> and read it in the constructor.
/// </summary>
public sealed class BrokerConfig
{
    private const string LongMax = "9223372036854775807";

    /// <summary>Broker-level keys (topic defaults come from <see cref="LogConfig.BrokerSynonyms"/>, added below).</summary>
    public static readonly ConfigDef Definition = BuildDefinition();

    /// <summary>Keys Kafka has that tune things Freshet does not have (threads, ZooKeeper, JVM); accepted and ignored.</summary>
    public static readonly IReadOnlySet<string> IgnoredKeys = new HashSet<string>(StringComparer.Ordinal)
    {
        "num.network.threads", "num.io.threads", "num.replica.fetchers", "num.recovery.threads.per.data.dir",
        "background.threads", "queued.max.requests", "socket.listen.backlog.size",
        "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
        "log.segment.delete.delay.ms", "log.cleaner.threads",
    };

    private static ConfigDef BuildDefinition()
    {
        var d = new ConfigDef()
            .Define("node.id", ConfigType.Int, "1", "This node's id in the cluster.", ConfigDef.AtLeast(0), readOnly: true)
            .Define("process.roles", ConfigType.List, "broker,controller", "Roles of this node: broker, controller, or both.", ConfigDef.ListOf("broker", "controller"), readOnly: true)
            .Define("listeners", ConfigType.List, "PLAINTEXT://localhost:9092", "Listeners to bind: NAME://host:port, comma separated.", readOnly: true)
            .Define("advertised.listeners", ConfigType.List, null, "Addresses given to clients; defaults to listeners.", readOnly: true)
            .Define("log.dirs", ConfigType.List, null, "Directories for partition logs.", readOnly: true)
            .Define("log.dir", ConfigType.String, "./data", "Directory for partition logs when log.dirs is not set.", readOnly: true)
            .Define("metadata.log.dir", ConfigType.String, null, "Directory of the metadata log; defaults to the first log directory.", readOnly: true)
            .Define("metadata.log.max.record.bytes.between.snapshots", ConfigType.Long, "20971520", "Record bytes committed to the metadata log after which a node snapshots its metadata image (and the log before the snapshot is dropped).", ConfigDef.AtLeast(1), readOnly: true)
            .Define("metadata.log.max.snapshot.interval.ms", ConfigType.Long, "3600000", "A metadata snapshot at least this often while records are committed; 0 turns the interval off.", ConfigDef.AtLeast(0), readOnly: true)
            .Define("metadata.log.segment.bytes", ConfigType.Int, "1073741824", "Segment size of the metadata log (segments below the latest snapshot are deleted).", ConfigDef.AtLeast(1024), readOnly: true)
            .Define("metadata.log.segment.ms", ConfigType.Long, "604800000", "A new metadata log segment at least this often.", ConfigDef.AtLeast(1), readOnly: true)
            .Define("broker.rack", ConfigType.String, null, "Rack of this broker.", readOnly: true)
            .Define("cluster.id", ConfigType.String, null, "Freshet: the cluster id new log directories are formatted with (kafka-storage format -t); the same on every node of a cluster, and it must match directories already formatted.", readOnly: true)
            .Define("listener.security.protocol.map", ConfigType.List, "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL", "Security protocol of each listener name (NAME:PROTOCOL, comma separated). Freshet serves PLAINTEXT only: a listener mapped to SSL, SASL_PLAINTEXT or SASL_SSL is refused at start-up. Set, it must name every listener (as in Kafka); unset, a name it lacks is PLAINTEXT.", readOnly: true)
            .Define("controller.listener.names", ConfigType.List, "", "Listeners that serve the controller APIs (the quorum and brokers' calls), not clients.", readOnly: true)
            .Define("controller.quorum.bootstrap.servers", ConfigType.List, "", "Kafka's dynamic quorum (KIP-853) is not supported: Freshet's quorum is the static controller.quorum.voters. Accepted only together with controller.quorum.voters.", readOnly: true)
            .Define("controller.quorum.voters", ConfigType.List, "", "The controller quorum: id@host:port of every voter; empty for a single combined node.", readOnly: true)
            .Define("inter.broker.listener.name", ConfigType.String, null, "Listener brokers use to reach each other; defaults to the first non-controller listener.", readOnly: true)
            .Define("broker.session.timeout.ms", ConfigType.Int, "9000", "A broker without a heartbeat for this long is fenced.", ConfigDef.AtLeast(1), readOnly: true)
            .Define("auto.leader.rebalance.enable", ConfigType.Boolean, "true", "Move leadership back to preferred replicas when a broker's share of them passes leader.imbalance.per.broker.percentage.")
            .Define("leader.imbalance.check.interval.seconds", ConfigType.Long, "300", "How often leadership balance is checked.", ConfigDef.AtLeast(1))
            .Define("leader.imbalance.per.broker.percentage", ConfigType.Int, "10", "Share of a broker's preferred partitions led elsewhere that triggers a rebalance.", ConfigDef.AtLeast(0))
            .Define("broker.session.probe.ms", ConfigType.Int, "3000", "Freshet: when a broker's heartbeat is this late, the active controller tries the broker's listener and fences it at once if the connection is refused (its process is gone), instead of waiting out broker.session.timeout.ms; 0 turns the probe off.", ConfigDef.AtLeast(0), readOnly: true)
            .Define("broker.heartbeat.interval.ms", ConfigType.Int, "2000", "How often a broker heartbeats to the active controller.", ConfigDef.AtLeast(1), readOnly: true)
            .Define("num.partitions", ConfigType.Int, "1", "Default partitions of a new topic.", ConfigDef.AtLeast(1))
            .Define("default.replication.factor", ConfigType.Int, "1", "Default replication factor of a new topic.", ConfigDef.AtLeast(1))
            .Define("auto.create.topics.enable", ConfigType.Boolean, "true", "Create a topic when a client asks for metadata of a missing one.")
            .Define("delete.topic.enable", ConfigType.Boolean, "true", "Allow deleting topics.")
            .Define("socket.request.max.bytes", ConfigType.Int, "104857600", "Largest request accepted; a larger one closes the connection.", ConfigDef.AtLeast(1))
            .Define("socket.send.buffer.bytes", ConfigType.Int, "102400", "SO_SNDBUF of client sockets; -1 for the OS default.")
            .Define("socket.receive.buffer.bytes", ConfigType.Int, "102400", "SO_RCVBUF of client sockets; -1 for the OS default.")
            .Define("connections.max.idle.ms", ConfigType.Long, "600000", "A connection with no request or response for this long is closed; -1: never.")
            .Define("max.connections", ConfigType.Int, "2147483647", "Connections the listeners hold at most (controller listeners are counted apart). At the limit they stop accepting until a connection closes (new ones wait in the listen backlog), except the inter-broker listener when there are others: it accepts, and the least recently used connection of another listener is closed. listener.name.<listener>.max.connections limits one listener the same way.", ConfigDef.AtLeast(0))
            .Define("max.connections.per.ip", ConfigType.Int, "2147483647", "Connections one address may hold; a further one from it is closed at once. 0 is allowed only with max.connections.per.ip.overrides.", ConfigDef.AtLeast(0))
            .Define("max.connections.per.ip.overrides", ConfigType.String, "", "Per-address limits that replace max.connections.per.ip: host:count or address:count, comma separated.", v => ParseIpOverrides(v, out var error) is null ? error : null)
            .Define("log.retention.hours", ConfigType.Int, "168", "Retention in hours, when log.retention.ms and .minutes are unset.")
            .Define("log.retention.minutes", ConfigType.Int, null, "Retention in minutes, when log.retention.ms is unset.")
            .Define("log.roll.hours", ConfigType.Int, "168", "Segment age in hours, when log.roll.ms is unset.", ConfigDef.AtLeast(1))
            .Define("log.roll.jitter.hours", ConfigType.Int, "0", "Segment jitter in hours, when log.roll.jitter.ms is unset.", ConfigDef.AtLeast(0))
            .Define("log.retention.check.interval.ms", ConfigType.Long, "300000", "How often retention runs.", ConfigDef.AtLeast(1))
            .Define("log.flush.scheduler.interval.ms", ConfigType.Long, LongMax, "How often flush.ms is checked.")
            .Define("log.flush.offset.checkpoint.interval.ms", ConfigType.Int, "60000", "How often recovery points are checkpointed.", ConfigDef.AtLeast(0))
            .Define("log.flush.per.append", ConfigType.Boolean, "false", "Freshet: fsync each append before acknowledging it (durability without replication).")
            .Define("producer.id.expiration.ms", ConfigType.Int, "86400000", "Idle producers' state is dropped after this long.", ConfigDef.AtLeast(1))
            .Define("producer.id.expiration.check.interval.ms", ConfigType.Int, "600000", "How often idle producers are looked for.", ConfigDef.AtLeast(1))
            .Define("transactional.id.expiration.ms", ConfigType.Int, "604800000", "Idle transactional ids expire after this long.", ConfigDef.AtLeast(1))
            .Define("unstable.api.versions.enable", ConfigType.Boolean, "false", "Advertise API versions the schemas mark unstable.")
            .Define("fetch.max.wait.ms.cap", ConfigType.Int, "30000", "Freshet: ceiling on a fetch's max.wait.ms.", ConfigDef.AtLeast(0))
            .Define("replica.lag.time.max.ms", ConfigType.Long, "30000", "A follower not caught up with the leader for this long leaves the ISR.", ConfigDef.AtLeast(1))
            .Define("replica.fetch.max.bytes", ConfigType.Int, "1048576", "Bytes a follower fetches per partition (at least one batch).", ConfigDef.AtLeast(0))
            .Define("replica.fetch.response.max.bytes", ConfigType.Int, "10485760", "Bytes a follower fetches per request (at least one batch).", ConfigDef.AtLeast(0))
            .Define("replica.fetch.wait.max.ms", ConfigType.Int, "500", "How long a leader may hold a follower's fetch waiting for data.", ConfigDef.AtLeast(0))
            .Define("replica.fetch.min.bytes", ConfigType.Int, "1", "Bytes a leader waits for before answering a follower's fetch.", ConfigDef.AtLeast(1))
            .Define("replica.fetch.backoff.ms", ConfigType.Int, "1000", "Pause after a failed follower fetch.", ConfigDef.AtLeast(0))
            .Define(ReplicaSelectors.ConfigKey, ConfigType.Class, null, "Picks the replica a consumer reads from (KIP-392): " + ReplicaSelectors.RackAwareClassName + " sends consumers that set client.rack to an in-sync replica in their rack; unset, they read from the leader.", ReplicaSelectors.Validate, readOnly: true)
            .Define("replica.high.watermark.checkpoint.interval.ms", ConfigType.Long, "5000", "How often high watermarks are saved to replication-offset-checkpoint.", ConfigDef.AtLeast(1))
            .Define("offsets.topic.num.partitions", ConfigType.Int, "50", "Partitions of __consumer_offsets.", ConfigDef.AtLeast(1), readOnly: true)
            .Define("offsets.topic.replication.factor", ConfigType.Short, null, "Replication factor of __consumer_offsets; it is not created (coordinator lookups answer COORDINATOR_NOT_AVAILABLE) while fewer brokers are alive. Default 3; 1 on a standalone node (no controller.quorum.voters), as Kafka's single-node server.properties sets it.", ConfigDef.AtLeast(1), readOnly: true)
            .Define("offsets.topic.segment.bytes", ConfigType.Int, "104857600", "Segment size of __consumer_offsets.", ConfigDef.AtLeast(1), readOnly: true)
            .Define("offsets.retention.minutes", ConfigType.Int, "10080", "How long an empty group's offsets are kept.", ConfigDef.AtLeast(1))
            .Define("offsets.retention.check.interval.ms", ConfigType.Long, "600000", "How often expired offsets are looked for.", ConfigDef.AtLeast(1))
            .Define("offset.metadata.max.bytes", ConfigType.Int, "4096", "Largest metadata string of a committed offset.")
            .Define("offsets.commit.timeout.ms", ConfigType.Int, "5000", "How long a commit waits for its record to be replicated.", ConfigDef.AtLeast(1))
            .Define("group.min.session.timeout.ms", ConfigType.Int, "6000", "Smallest session timeout a classic member may ask for.")
            .Define("group.max.session.timeout.ms", ConfigType.Int, "1800000", "Largest session timeout a classic member may ask for.")
            .Define("group.initial.rebalance.delay.ms", ConfigType.Int, "3000", "How long a new group waits for more members before its first rebalance.")
            .Define("group.max.size", ConfigType.Int, "2147483647", "Most members a group may have.", ConfigDef.AtLeast(1))
            .Define("group.consumer.heartbeat.interval.ms", ConfigType.Int, "5000", "Heartbeat interval given to consumer-protocol (KIP-848) members.", ConfigDef.AtLeast(1))
            .Define("group.consumer.session.timeout.ms", ConfigType.Int, "45000", "Session timeout of consumer-protocol (KIP-848) members.", ConfigDef.AtLeast(1))
            .Define("log.cleaner.enable", ConfigType.Boolean, "true", "Run the log cleaner (compaction of cleanup.policy=compact topics).")
            .Define("log.cleaner.backoff.ms", ConfigType.Long, "15000", "How long the cleaner sleeps when no log needs cleaning.", ConfigDef.AtLeast(0))
            .Define("log.cleaner.dedupe.buffer.size", ConfigType.Long, "134217728", "Memory for the cleaner's key map.", ConfigDef.AtLeast(1024))
            .Define("log.cleaner.io.buffer.load.factor", ConfigType.Double, "0.9", "How full the cleaner's key map may get.", ConfigDef.Between(0.1, 1))
            .Define("log.cleaner.io.buffer.size", ConfigType.Int, "524288", "Read and write buffer of the cleaner.", ConfigDef.AtLeast(1024))
            .Define("group.consumer.assignors", ConfigType.List, "uniform,range", "Server-side assignors of the consumer protocol; the first is the default.");
        foreach (var (topicKey, brokerKey) in LogConfig.BrokerSynonyms)
        {
            if (d.Contains(brokerKey)) continue;
            LogConfig.Definition.TryGet(topicKey, out var k);
            string? def = brokerKey switch
            {
                "log.retention.ms" or "log.roll.ms" or "log.roll.jitter.ms" or "log.flush.interval.ms" => null, // derived from hours/minutes
                "log.flush.interval.messages" => LongMax,
                "compression.type" => "producer",
                _ => k.Default,
            };
            d.Define(brokerKey, k.Type, def, k.Doc, k.Validator);
        }
        return d;
    }

    private readonly Dictionary<string, string> _values;

    public BrokerConfig(IReadOnlyDictionary<string, string> properties)
    {
        _values = new Dictionary<string, string>(properties, StringComparer.Ordinal);
        foreach (var (k, v) in properties)
        {
            if (Definition.TryGet(k, out var key) && key.Validate(v) is { } error) throw new ArgumentException(error);
        }
        NodeId = GetInt("node.id");
        ProcessRoles = GetList("process.roles");
        Listeners = ParseListeners(Get("listeners")!, "listeners");
        ListenerMaxConnections = ParseListenerLimits(properties, Listeners);
        Unknown = properties.Keys.Where(k => !Definition.Contains(k) && !IgnoredKeys.Contains(k) && !SecuritySettings.IsSecurityKey(k)
                && !Listeners.Any(l => k == ListenerMaxConnectionsKey(l.Name)))
            .Order(StringComparer.Ordinal).ToList();
        LogDirs = Get("log.dirs") is { } dirs ? ConfigValues.ParseList(dirs) : [Get("log.dir")!];
        if (LogDirs.Count == 0) throw new ArgumentException("log.dirs is empty");
        MetadataLogDir = Get("metadata.log.dir") ?? LogDirs[0];
        Rack = Get("broker.rack");
        MetadataSnapshots = new Freshet.Metadata.Log.SnapshotPolicy(GetLong("metadata.log.max.record.bytes.between.snapshots"), GetLong("metadata.log.max.snapshot.interval.ms"));
        MetadataLogSegmentBytes = GetInt("metadata.log.segment.bytes");
        MetadataLogSegmentMs = GetLong("metadata.log.segment.ms");
        ControllerListenerNames = GetList("controller.listener.names");
        ClusterIdOverride = Get("cluster.id");
        QuorumVoters = GetList("controller.quorum.voters");
        // Without voters Freshet would start a quorum of one: with several such nodes, several clusters.
        if (QuorumVoters.Count == 0 && GetList("controller.quorum.bootstrap.servers").Count > 0)
            throw new ArgumentException("controller.quorum.bootstrap.servers is set but controller.quorum.voters is not: Freshet's metadata quorum has a static voter set (Kafka's dynamic quorum, KIP-853, is not supported); list every controller in controller.quorum.voters as id@host:port");
        BrokerSessionTimeoutMs = GetInt("broker.session.timeout.ms");
        BrokerHeartbeatIntervalMs = GetInt("broker.heartbeat.interval.ms");
        BrokerSessionProbeMs = GetInt("broker.session.probe.ms");
        AutoLeaderRebalanceEnable = GetBool("auto.leader.rebalance.enable");
        LeaderImbalanceCheckIntervalMs = GetLong("leader.imbalance.check.interval.seconds") * 1000;
        LeaderImbalancePerBrokerPercentage = GetInt("leader.imbalance.per.broker.percentage");
        foreach (var name in ControllerListenerNames)
        {
            if (ProcessRoles.Contains("controller") && !Listeners.Any(l => l.Name == name))
                throw new ArgumentException($"controller.listener.names names {name}, which is not in listeners");
        }
        // Controller listeners are not advertised to clients (Kafka's rule).
        AdvertisedListeners = Get("advertised.listeners") is { } adv
            ? ParseListeners(adv, "advertised.listeners")
            : [.. Listeners.Where(l => !ControllerListenerNames.Contains(l.Name))];
        InterBrokerListenerName = Get("inter.broker.listener.name")
            ?? AdvertisedListeners.Select(l => l.Name).FirstOrDefault(n => !ControllerListenerNames.Contains(n))
            ?? (ProcessRoles.Contains("broker")
                ? throw new ArgumentException("every listener is a controller listener: brokers need one for clients and each other")
                : ""); // a controller-only node talks to brokers only through its controller listener
        RefuseSecurity(properties);
        NumPartitions = GetInt("num.partitions");
        DefaultReplicationFactor = (short)GetInt("default.replication.factor");
        AutoCreateTopicsEnable = GetBool("auto.create.topics.enable");
        DeleteTopicEnable = GetBool("delete.topic.enable");
        SocketRequestMaxBytes = GetInt("socket.request.max.bytes");
        SocketSendBufferBytes = GetInt("socket.send.buffer.bytes");
        SocketReceiveBufferBytes = GetInt("socket.receive.buffer.bytes");
        ConnectionsMaxIdleMs = GetLong("connections.max.idle.ms");
        MaxConnections = GetInt("max.connections");
        MaxConnectionsPerIp = GetInt("max.connections.per.ip");
        MaxConnectionsPerIpOverrides = ParseIpOverrides(Get("max.connections.per.ip.overrides") ?? "", out string? overridesError)
            ?? throw new ArgumentException(overridesError);
        if (MaxConnectionsPerIp == 0 && MaxConnectionsPerIpOverrides.Count == 0)
            throw new ArgumentException("max.connections.per.ip can be set to zero only if max.connections.per.ip.overrides is set (no address could connect)");
        RetentionCheckIntervalMs = GetLong("log.retention.check.interval.ms");
        FlushSchedulerIntervalMs = GetLong("log.flush.scheduler.interval.ms");
        CheckpointIntervalMs = GetInt("log.flush.offset.checkpoint.interval.ms");
        FlushPerAppend = GetBool("log.flush.per.append");
        ProducerIdExpirationMs = GetInt("producer.id.expiration.ms");
        ProducerIdExpirationCheckIntervalMs = GetInt("producer.id.expiration.check.interval.ms");
        UnstableApiVersionsEnable = GetBool("unstable.api.versions.enable");
        FetchMaxWaitCapMs = GetInt("fetch.max.wait.ms.cap");
        Replication = new ReplicationOptions
        {
            ReplicaLagTimeMaxMs = GetLong("replica.lag.time.max.ms"),
            ReplicaFetchMaxBytes = GetInt("replica.fetch.max.bytes"),
            ReplicaFetchResponseMaxBytes = GetInt("replica.fetch.response.max.bytes"),
            ReplicaFetchWaitMaxMs = GetInt("replica.fetch.wait.max.ms"),
            ReplicaFetchMinBytes = GetInt("replica.fetch.min.bytes"),
            ReplicaFetchBackoffMs = GetInt("replica.fetch.backoff.ms"),
        };
        ReplicaSelector = ReplicaSelectors.Parse(Get(ReplicaSelectors.ConfigKey));
        HighWatermarkCheckpointIntervalMs = GetLong("replica.high.watermark.checkpoint.interval.ms");
        CleanerEnable = GetBool("log.cleaner.enable");
        CleanerBackoffMs = GetLong("log.cleaner.backoff.ms");
        CleanerDedupeBufferSize = GetLong("log.cleaner.dedupe.buffer.size");
        CleanerDedupeBufferLoadFactor = ConfigValues.ParseDouble(Get("log.cleaner.io.buffer.load.factor")!);
        CleanerIoBufferSize = GetInt("log.cleaner.io.buffer.size");
        TopicDefaults = ResolveTopicDefaults();
        Groups = new Broker.Groups.GroupCoordinatorOptions
        {
            OffsetsTopicPartitions = GetInt("offsets.topic.num.partitions"),
            // Kafka's default is 3; a standalone node can never have more than itself, so it takes 1 unless told otherwise.
            OffsetsTopicReplicationFactor = Get("offsets.topic.replication.factor") is not null ? (short)GetInt("offsets.topic.replication.factor") : QuorumVoters.Count == 0 ? (short)1 : (short)3,
            OffsetsTopicSegmentBytes = GetInt("offsets.topic.segment.bytes"),
            OffsetsRetentionMs = GetInt("offsets.retention.minutes") * 60_000L,
            OffsetsRetentionCheckIntervalMs = GetLong("offsets.retention.check.interval.ms"),
            OffsetMetadataMaxBytes = GetInt("offset.metadata.max.bytes"),
            OffsetsCommitTimeoutMs = GetInt("offsets.commit.timeout.ms"),
            MinSessionTimeoutMs = GetInt("group.min.session.timeout.ms"),
            MaxSessionTimeoutMs = GetInt("group.max.session.timeout.ms"),
            InitialRebalanceDelayMs = GetInt("group.initial.rebalance.delay.ms"),
            MaxGroupSize = GetInt("group.max.size"),
            ConsumerHeartbeatIntervalMs = GetInt("group.consumer.heartbeat.interval.ms"),
            ConsumerSessionTimeoutMs = GetInt("group.consumer.session.timeout.ms"),
            ConsumerAssignors = GetList("group.consumer.assignors"),
        };
    }

    /// <summary>The group coordinator's settings.</summary>
    public Broker.Groups.GroupCoordinatorOptions Groups { get; }

    public static BrokerConfig Load(string? path, IReadOnlyDictionary<string, string> overrides)
    {
        var props = path is null ? new Dictionary<string, string>(StringComparer.Ordinal) : PropertiesFile.Parse(File.ReadAllText(path));
        foreach (var (k, v) in overrides) props[k] = v;
        return new BrokerConfig(props);
    }

    public int NodeId { get; }
    public IReadOnlyList<string> ProcessRoles { get; }
    public IReadOnlyList<(string Name, string Host, int Port)> Listeners { get; }
    public IReadOnlyList<(string Name, string Host, int Port)> AdvertisedListeners { get; }
    public IReadOnlyList<string> LogDirs { get; }
    public string MetadataLogDir { get; }
    public string? Rack { get; }

    /// <summary>cluster.id (Freshet): formats new directories; null generates one on a first start.</summary>
    public string? ClusterIdOverride { get; }

    /// <summary>controller.listener.names</summary>
    public IReadOnlyList<string> ControllerListenerNames { get; }

    /// <summary>controller.quorum.voters (id@host:port entries; empty: a single combined node is its own quorum).</summary>
    public IReadOnlyList<string> QuorumVoters { get; }

    /// <summary>inter.broker.listener.name (resolved: the first non-controller listener when unset).</summary>
    public string InterBrokerListenerName { get; }

    /// <summary>metadata.log.max.record.bytes.between.snapshots and metadata.log.max.snapshot.interval.ms</summary>
    public Freshet.Metadata.Log.SnapshotPolicy MetadataSnapshots { get; }

    /// <summary>metadata.log.segment.bytes</summary>
    public int MetadataLogSegmentBytes { get; }

    /// <summary>metadata.log.segment.ms</summary>
    public long MetadataLogSegmentMs { get; }

    /// <summary>broker.session.timeout.ms</summary>
    public int BrokerSessionTimeoutMs { get; }

    /// <summary>broker.session.probe.ms (0: off)</summary>
    public int BrokerSessionProbeMs { get; }

    /// <summary>broker.heartbeat.interval.ms</summary>
    public int BrokerHeartbeatIntervalMs { get; }

    /// <summary>auto.leader.rebalance.enable</summary>
    public bool AutoLeaderRebalanceEnable { get; }

    /// <summary>leader.imbalance.check.interval.seconds, in ms</summary>
    public long LeaderImbalanceCheckIntervalMs { get; }

    /// <summary>leader.imbalance.per.broker.percentage</summary>
    public int LeaderImbalancePerBrokerPercentage { get; }
    public int NumPartitions { get; }
    public short DefaultReplicationFactor { get; }
    public bool AutoCreateTopicsEnable { get; }
    public bool DeleteTopicEnable { get; }
    public int SocketRequestMaxBytes { get; }
    public int SocketSendBufferBytes { get; }
    public int SocketReceiveBufferBytes { get; }
    public long ConnectionsMaxIdleMs { get; }
    public int MaxConnections { get; }

    /// <summary>listener.name.&lt;listener&gt;.max.connections, for the listeners that set one.</summary>
    public IReadOnlyDictionary<string, int> ListenerMaxConnections { get; }

    /// <summary>max.connections.per.ip</summary>
    public int MaxConnectionsPerIp { get; }

    /// <summary>max.connections.per.ip.overrides: host or address, and its limit.</summary>
    public IReadOnlyDictionary<string, int> MaxConnectionsPerIpOverrides { get; }
    public long RetentionCheckIntervalMs { get; }
    public long FlushSchedulerIntervalMs { get; }
    public int CheckpointIntervalMs { get; }
    public bool FlushPerAppend { get; }
    public int ProducerIdExpirationMs { get; }
    public int ProducerIdExpirationCheckIntervalMs { get; }
    public bool UnstableApiVersionsEnable { get; }
    public int FetchMaxWaitCapMs { get; }

    /// <summary>replica.* settings of the replica manager and its fetchers.</summary>
    public ReplicationOptions Replication { get; }

    /// <summary>replica.selector.class (KIP-392 follower fetching)</summary>
    public ReplicaSelector ReplicaSelector { get; }

    /// <summary>replica.high.watermark.checkpoint.interval.ms</summary>
    public long HighWatermarkCheckpointIntervalMs { get; }
    public bool CleanerEnable { get; }
    public long CleanerBackoffMs { get; }
    public long CleanerDedupeBufferSize { get; }
    public double CleanerDedupeBufferLoadFactor { get; }
    public int CleanerIoBufferSize { get; }

    /// <summary>Keys given that Freshet does not know (reported at start-up).</summary>
    public IReadOnlyList<string> Unknown { get; }

    /// <summary>Topic config defaults set by broker keys, keyed by topic-level name (what <see cref="LogConfig.Create"/> takes).</summary>
    public IReadOnlyDictionary<string, string> TopicDefaults { get; }

    public string? Get(string key)
    {
        if (_values.TryGetValue(key, out var v)) return v;
        return Definition.TryGet(key, out var k) ? k.Default : null;
    }

    private int GetInt(string key) => ConfigValues.ParseInt(Get(key)!);
    private long GetLong(string key) => ConfigValues.ParseLong(Get(key)!);
    private bool GetBool(string key) => ConfigValues.ParseBool(Get(key)!);
    private IReadOnlyList<string> GetList(string key) => ConfigValues.ParseList(Get(key) ?? "");

    /// <summary>
    /// Fails closed (<see cref="SecuritySettings"/>): a listener whose security protocol is not PLAINTEXT, or any
    /// TLS, SASL or ACL setting, stops start-up with one message naming every one of them.
    /// </summary>
    private void RefuseSecurity(IReadOnlyDictionary<string, string> properties)
    {
        const string MapKey = "listener.security.protocol.map";
        bool explicitMap = _values.ContainsKey(MapKey);
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in GetList(MapKey))
        {
            int colon = entry.IndexOf(':', StringComparison.Ordinal);
            string protocol = colon > 0 ? entry[(colon + 1)..].Trim().ToUpperInvariant() : "";
            if (colon <= 0 || !SecuritySettings.Protocols.Contains(protocol))
                throw new ArgumentException($"Invalid value {entry} for configuration {MapKey}: expected NAME:PROTOCOL with PROTOCOL one of {string.Join(", ", SecuritySettings.Protocols)}");
            map[entry[..colon].Trim().ToUpperInvariant()] = protocol;
        }
        var problems = new List<string>();
        var named = Listeners.Select(l => (l.Name, Key: "listeners"))
            .Concat(AdvertisedListeners.Select(l => (l.Name, Key: "advertised.listeners")))
            .Concat(ControllerListenerNames.Select(n => (Name: n.ToUpperInvariant(), Key: "controller.listener.names")))
            .Concat(Get("inter.broker.listener.name") is { } ibl ? [(Name: ibl.ToUpperInvariant(), Key: "inter.broker.listener.name")] : []);
        foreach (var (name, key) in named.DistinctBy(n => n.Name))
        {
            if (!map.TryGetValue(name, out var protocol))
            {
                // Kafka wants every listener in an explicit map. Without one, Freshet (PLAINTEXT only) takes any
                // name but SSL and the SASL ones for PLAINTEXT, where Kafka maps only controller listeners so.
                if (explicitMap) throw new ArgumentException($"listener {name} (in {key}) is not in {MapKey}: map it, e.g. {name}:PLAINTEXT");
                protocol = "PLAINTEXT";
            }
            if (protocol != "PLAINTEXT")
                problems.Add($"listener {name} (in {key}) has security protocol {protocol}{(explicitMap ? $" ({MapKey})" : "")}");
        }
        foreach (var (key, protects) in SecuritySettings.Refused(properties))
            problems.Add($"{key} is set ({protects})");
        if (problems.Count > 0)
            throw new ArgumentException($"{SecuritySettings.NotSupported}, and this configuration asks for them: {string.Join("; ", problems)}. "
                + "Started, the node would serve every listener in plain text to anyone, with no authentication or authorization, so it refuses to start; "
                + "to run Freshet unsecured, use PLAINTEXT listeners and remove the security settings");
    }

    private static List<(string, string, int)> ParseListeners(string value, string key)
    {
        var result = new List<(string, string, int)>();
        foreach (var item in ConfigValues.ParseList(value))
        {
            int sep = item.IndexOf("://", StringComparison.Ordinal);
            int colon = item.LastIndexOf(':');
            if (sep <= 0 || colon <= sep + 2 || !int.TryParse(item.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port > 65535)
                throw new ArgumentException($"Invalid value {item} for configuration {key}: expected NAME://host:port");
            string host = item[(sep + 3)..colon].Trim('[', ']');
            result.Add((item[..sep].ToUpperInvariant(), host, port));
        }
        if (result.Count == 0) throw new ArgumentException($"{key} is empty");
        return result;
    }

    /// <summary>Kafka's per-listener key: the listener's name in lower case after listener.name.</summary>
    public static string ListenerMaxConnectionsKey(string listener) => $"listener.name.{listener.ToLowerInvariant()}.max.connections";

    private static Dictionary<string, int> ParseListenerLimits(IReadOnlyDictionary<string, string> properties, IEnumerable<(string Name, string Host, int Port)> listeners)
    {
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (name, _, _) in listeners)
        {
            string key = ListenerMaxConnectionsKey(name);
            if (!properties.TryGetValue(key, out var v)) continue;
            if (!int.TryParse(v.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int max) || max < 0)
                throw new ArgumentException($"Invalid value {v} for configuration {key}: Value must be at least 0");
            result[name] = max;
        }
        return result;
    }

    /// <summary>max.connections.per.ip.overrides: "host:count,..." (the last colon separates, so IPv6 addresses work); null and an error for a bad entry.</summary>
    private static Dictionary<string, int>? ParseIpOverrides(string value, out string? error)
    {
        error = null;
        var result = new Dictionary<string, int>(StringComparer.OrdinalIgnoreCase);
        foreach (var item in ConfigValues.ParseList(value))
        {
            int colon = item.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(item.AsSpan(colon + 1).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int max))
            {
                error = $"Invalid value {item} for configuration max.connections.per.ip.overrides: expected host:count, count at least 0";
                return null;
            }
            result[item[..colon].Trim()] = max;
        }
        return result;
    }

    /// <summary>Broker keys that set topic defaults, with Kafka's ms / minutes / hours precedence.</summary>
    private Dictionary<string, string> ResolveTopicDefaults()
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (topicKey, brokerKey) in LogConfig.BrokerSynonyms)
            if (_values.TryGetValue(brokerKey, out var v)) result[topicKey] = v;
        string Ms(long n) => n.ToString(CultureInfo.InvariantCulture);
        if (!result.ContainsKey(LogConfig.RetentionMsConfig))
        {
            if (_values.TryGetValue("log.retention.minutes", out var m)) result[LogConfig.RetentionMsConfig] = Ms(ConfigValues.ParseLong(m) * 60_000);
            else if (_values.TryGetValue("log.retention.hours", out var h)) result[LogConfig.RetentionMsConfig] = Ms(ConfigValues.ParseLong(h) * 3_600_000);
        }
        if (!result.ContainsKey(LogConfig.SegmentMsConfig) && _values.TryGetValue("log.roll.hours", out var rh))
            result[LogConfig.SegmentMsConfig] = Ms(ConfigValues.ParseLong(rh) * 3_600_000);
        if (!result.ContainsKey(LogConfig.SegmentJitterMsConfig) && _values.TryGetValue("log.roll.jitter.hours", out var jh))
            result[LogConfig.SegmentJitterMsConfig] = Ms(ConfigValues.ParseLong(jh) * 3_600_000);
        if (!result.ContainsKey(LogConfig.FlushMsConfig) && _values.TryGetValue("log.flush.scheduler.interval.ms", out var fs))
            result[LogConfig.FlushMsConfig] = fs;
        if (LogConfig.Validate(result) is { } error) throw new ArgumentException(error);
        return result;
    }

    /// <summary>Every broker key with its value and source, for DescribeConfigs on this broker.</summary>
    public IReadOnlyList<ConfigEntry> Describe()
    {
        var list = new List<ConfigEntry>();
        foreach (var key in Definition.Keys)
        {
            bool set = _values.TryGetValue(key.Name, out var v);
            var source = set ? ConfigSource.StaticBrokerConfig : ConfigSource.DefaultConfig;
            string? value = set ? v : key.Default;
            var synonyms = new List<(string, string?, ConfigSource)>();
            if (set) synonyms.Add((key.Name, v, ConfigSource.StaticBrokerConfig));
            synonyms.Add((key.Name, key.Default, ConfigSource.DefaultConfig));
            list.Add(new ConfigEntry(key.Name, value, source, key.Sensitive, true, key.Type, key.Doc, synonyms));
        }
        return list;
    }
}
