using Freshet.Protocol.Config;
using Freshet.Protocol.Records;

namespace Freshet.Storage;

/// <summary>
/// A partition log's settings: Kafka's topic-level configs (segment.bytes, retention.ms, ...),
/// resolved from the topic's overrides over the broker's defaults over the built-in defaults.
/// Immutable: a config change builds a new one and the log picks it up on its next operation.
/// </summary>
public sealed class LogConfig
{
    public const string CleanupPolicyConfig = "cleanup.policy";
    public const string CompressionTypeConfig = "compression.type";
    public const string DeleteRetentionMsConfig = "delete.retention.ms";
    public const string FileDeleteDelayMsConfig = "file.delete.delay.ms";
    public const string FlushMessagesConfig = "flush.messages";
    public const string FlushMsConfig = "flush.ms";
    public const string IndexIntervalBytesConfig = "index.interval.bytes";
    public const string MaxCompactionLagMsConfig = "max.compaction.lag.ms";
    public const string MaxMessageBytesConfig = "max.message.bytes";
    public const string MessageDownconversionEnableConfig = "message.downconversion.enable";
    public const string MessageTimestampAfterMaxMsConfig = "message.timestamp.after.max.ms";
    public const string MessageTimestampBeforeMaxMsConfig = "message.timestamp.before.max.ms";
    public const string MessageTimestampTypeConfig = "message.timestamp.type";
    public const string MinCleanableDirtyRatioConfig = "min.cleanable.dirty.ratio";
    public const string MinCompactionLagMsConfig = "min.compaction.lag.ms";
    public const string MinInSyncReplicasConfig = "min.insync.replicas";
    public const string PreallocateConfig = "preallocate";
    public const string RetentionBytesConfig = "retention.bytes";
    public const string RetentionMsConfig = "retention.ms";
    public const string SegmentBytesConfig = "segment.bytes";
    public const string SegmentIndexBytesConfig = "segment.index.bytes";
    public const string SegmentJitterMsConfig = "segment.jitter.ms";
    public const string SegmentMsConfig = "segment.ms";
    public const string UncleanLeaderElectionEnableConfig = "unclean.leader.election.enable";

    private const string LongMax = "9223372036854775807";

    /// <summary>Topic-level keys, with Kafka's defaults.</summary>
    public static readonly ConfigDef Definition = new ConfigDef()
        .Define(CleanupPolicyConfig, ConfigType.List, "delete", "Retention policy for old segments: delete, compact, or both.", ConfigDef.ListOf("delete", "compact"))
        .Define(CompressionTypeConfig, ConfigType.String, "producer", "Codec the broker stores batches with; 'producer' keeps the producer's.",
            ConfigDef.OneOf("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"))
        .Define(DeleteRetentionMsConfig, ConfigType.Long, "86400000", "How long tombstones are kept in a compacted topic.", ConfigDef.AtLeast(0))
        .Define(FileDeleteDelayMsConfig, ConfigType.Long, "60000", "Delay before a deleted segment's files are removed.", ConfigDef.AtLeast(0))
        .Define(FlushMessagesConfig, ConfigType.Long, LongMax, "Messages appended between forced fsyncs of the log.", ConfigDef.AtLeast(1))
        .Define(FlushMsConfig, ConfigType.Long, LongMax, "Milliseconds between forced fsyncs of the log.", ConfigDef.AtLeast(0))
        .Define(IndexIntervalBytesConfig, ConfigType.Int, "4096", "Bytes of log between offset index entries.", ConfigDef.AtLeast(0))
        .Define(MaxCompactionLagMsConfig, ConfigType.Long, LongMax, "Longest a record stays ineligible for compaction.", ConfigDef.AtLeast(1))
        .Define(MaxMessageBytesConfig, ConfigType.Int, "1048588", "Largest record batch the topic accepts.", ConfigDef.AtLeast(0))
        .Define(MessageDownconversionEnableConfig, ConfigType.Boolean, "true", "Whether old consumers get batches converted to the old message format.")
        .Define(MessageTimestampAfterMaxMsConfig, ConfigType.Long, LongMax, "How far in the future a CreateTime timestamp may be.", ConfigDef.AtLeast(0))
        .Define(MessageTimestampBeforeMaxMsConfig, ConfigType.Long, LongMax, "How far in the past a CreateTime timestamp may be.", ConfigDef.AtLeast(0))
        .Define(MessageTimestampTypeConfig, ConfigType.String, "CreateTime", "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's.",
            ConfigDef.OneOf("CreateTime", "LogAppendTime"))
        .Define(MinCleanableDirtyRatioConfig, ConfigType.Double, "0.5", "Dirty share of the log that triggers compaction.", ConfigDef.Between(0, 1))
        .Define(MinCompactionLagMsConfig, ConfigType.Long, "0", "Shortest time a record stays uncompacted.", ConfigDef.AtLeast(0))
        .Define(MinInSyncReplicasConfig, ConfigType.Int, "1", "Replicas that must acknowledge an acks=all produce.", ConfigDef.AtLeast(1))
        .Define(PreallocateConfig, ConfigType.Boolean, "false", "Preallocate segment files.")
        .Define(RetentionBytesConfig, ConfigType.Long, "-1", "Largest size a partition keeps before deleting old segments; -1 for no limit.")
        .Define(RetentionMsConfig, ConfigType.Long, "604800000", "Longest a segment is kept; -1 for no limit.", ConfigDef.AtLeast(-1))
        .Define(SegmentBytesConfig, ConfigType.Int, "1073741824", "Segment file size at which the log rolls.", ConfigDef.AtLeast(14))
        .Define(SegmentIndexBytesConfig, ConfigType.Int, "10485760", "Size of the offset index at which the log rolls.", ConfigDef.AtLeast(4))
        .Define(SegmentJitterMsConfig, ConfigType.Long, "0", "Random jitter subtracted from segment.ms.", ConfigDef.AtLeast(0))
        .Define(SegmentMsConfig, ConfigType.Long, "604800000", "Age at which the active segment rolls even if not full.", ConfigDef.AtLeast(1))
        .Define(UncleanLeaderElectionEnableConfig, ConfigType.Boolean, "false", "Whether a replica outside the ISR may become leader.");

    /// <summary>The broker config that supplies each topic config's default, as Kafka's synonyms list them.</summary>
    public static readonly IReadOnlyDictionary<string, string> BrokerSynonyms = new Dictionary<string, string>
    {
        [CleanupPolicyConfig] = "log.cleanup.policy",
        [CompressionTypeConfig] = "compression.type",
        [DeleteRetentionMsConfig] = "log.cleaner.delete.retention.ms",
        [FileDeleteDelayMsConfig] = "log.segment.delete.delay.ms",
        [FlushMessagesConfig] = "log.flush.interval.messages",
        [FlushMsConfig] = "log.flush.interval.ms",
        [IndexIntervalBytesConfig] = "log.index.interval.bytes",
        [MaxCompactionLagMsConfig] = "log.cleaner.max.compaction.lag.ms",
        [MaxMessageBytesConfig] = "message.max.bytes",
        [MessageDownconversionEnableConfig] = "log.message.downconversion.enable",
        [MessageTimestampAfterMaxMsConfig] = "log.message.timestamp.after.max.ms",
        [MessageTimestampBeforeMaxMsConfig] = "log.message.timestamp.before.max.ms",
        [MessageTimestampTypeConfig] = "log.message.timestamp.type",
        [MinCleanableDirtyRatioConfig] = "log.cleaner.min.cleanable.ratio",
        [MinCompactionLagMsConfig] = "log.cleaner.min.compaction.lag.ms",
        [MinInSyncReplicasConfig] = "min.insync.replicas",
        [PreallocateConfig] = "log.preallocate",
        [RetentionBytesConfig] = "log.retention.bytes",
        [RetentionMsConfig] = "log.retention.ms",
        [SegmentBytesConfig] = "log.segment.bytes",
        [SegmentIndexBytesConfig] = "log.index.size.max.bytes",
        [SegmentJitterMsConfig] = "log.roll.jitter.ms",
        [SegmentMsConfig] = "log.roll.ms",
        [UncleanLeaderElectionEnableConfig] = "unclean.leader.election.enable",
    };

    public static readonly LogConfig Default = Create(new Dictionary<string, string>(), new Dictionary<string, string>());

    private LogConfig(IReadOnlyDictionary<string, string> values, IReadOnlyDictionary<string, string> overrides,
        IReadOnlyDictionary<string, string> brokerDefaults)
    {
        Values = values;
        Overrides = overrides;
        BrokerDefaults = brokerDefaults;
        string V(string k) => values[k];
        var policy = ConfigValues.ParseList(V(CleanupPolicyConfig));
        Compact = policy.Contains("compact");
        Delete = policy.Contains("delete");
        CompressionType = V(CompressionTypeConfig);
        DeleteRetentionMs = ConfigValues.ParseLong(V(DeleteRetentionMsConfig));
        FileDeleteDelayMs = ConfigValues.ParseLong(V(FileDeleteDelayMsConfig));
        FlushMessages = ConfigValues.ParseLong(V(FlushMessagesConfig));
        FlushMs = ConfigValues.ParseLong(V(FlushMsConfig));
        IndexIntervalBytes = ConfigValues.ParseInt(V(IndexIntervalBytesConfig));
        MaxCompactionLagMs = ConfigValues.ParseLong(V(MaxCompactionLagMsConfig));
        MaxMessageBytes = ConfigValues.ParseInt(V(MaxMessageBytesConfig));
        MessageTimestampAfterMaxMs = ConfigValues.ParseLong(V(MessageTimestampAfterMaxMsConfig));
        MessageTimestampBeforeMaxMs = ConfigValues.ParseLong(V(MessageTimestampBeforeMaxMsConfig));
        MessageTimestampType = V(MessageTimestampTypeConfig) == "LogAppendTime" ? TimestampType.LogAppendTime : TimestampType.CreateTime;
        MinCleanableDirtyRatio = ConfigValues.ParseDouble(V(MinCleanableDirtyRatioConfig));
        MinCompactionLagMs = ConfigValues.ParseLong(V(MinCompactionLagMsConfig));
        MinInSyncReplicas = ConfigValues.ParseInt(V(MinInSyncReplicasConfig));
        RetentionBytes = ConfigValues.ParseLong(V(RetentionBytesConfig));
        RetentionMs = ConfigValues.ParseLong(V(RetentionMsConfig));
        SegmentBytes = ConfigValues.ParseInt(V(SegmentBytesConfig));
        SegmentIndexBytes = ConfigValues.ParseInt(V(SegmentIndexBytesConfig));
        SegmentJitterMs = ConfigValues.ParseLong(V(SegmentJitterMsConfig));
        SegmentMs = ConfigValues.ParseLong(V(SegmentMsConfig));
        UncleanLeaderElectionEnable = ConfigValues.ParseBool(V(UncleanLeaderElectionEnableConfig));
    }

    /// <summary>Effective value of every topic-level key, as text.</summary>
    public IReadOnlyDictionary<string, string> Values { get; }

    /// <summary>The topic's own settings (DYNAMIC_TOPIC_CONFIG).</summary>
    public IReadOnlyDictionary<string, string> Overrides { get; }

    /// <summary>Values the broker's configuration supplied (STATIC_BROKER_CONFIG), keyed by topic-level name.</summary>
    public IReadOnlyDictionary<string, string> BrokerDefaults { get; }

    public bool Compact { get; }
    public bool Delete { get; }
    public string CompressionType { get; }
    public long DeleteRetentionMs { get; }
    public long FileDeleteDelayMs { get; }
    public long FlushMessages { get; }
    public long FlushMs { get; }
    public int IndexIntervalBytes { get; }
    public long MaxCompactionLagMs { get; }
    public int MaxMessageBytes { get; }
    public long MessageTimestampAfterMaxMs { get; }
    public long MessageTimestampBeforeMaxMs { get; }
    public TimestampType MessageTimestampType { get; }
    public double MinCleanableDirtyRatio { get; }
    public long MinCompactionLagMs { get; }
    public int MinInSyncReplicas { get; }
    public long RetentionBytes { get; }
    public long RetentionMs { get; }
    public int SegmentBytes { get; }
    public int SegmentIndexBytes { get; }
    public long SegmentJitterMs { get; }
    public long SegmentMs { get; }
    public bool UncleanLeaderElectionEnable { get; }

    /// <summary>Checks topic-level overrides: unknown keys and bad values give an error text.</summary>
    public static string? Validate(IReadOnlyDictionary<string, string> overrides)
    {
        foreach (var (k, v) in overrides)
        {
            if (!Definition.TryGet(k, out var key)) return $"Unknown topic config name: {k}";
            if (key.Validate(v) is { } error) return error;
        }
        return null;
    }

    /// <summary>Resolves overrides over broker defaults over built-in defaults. Invalid values must have been rejected by <see cref="Validate"/>.</summary>
    public static LogConfig Create(IReadOnlyDictionary<string, string> brokerDefaults, IReadOnlyDictionary<string, string> overrides)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var key in Definition.Keys)
        {
            string v = key.Default ?? string.Empty;
            if (brokerDefaults.TryGetValue(key.Name, out var b)) v = b;
            if (overrides.TryGetValue(key.Name, out var o)) v = o;
            values[key.Name] = v;
        }
        return new LogConfig(values,
            new Dictionary<string, string>(overrides, StringComparer.Ordinal),
            new Dictionary<string, string>(brokerDefaults, StringComparer.Ordinal));
    }

    /// <summary>The same broker defaults with other topic overrides.</summary>
    public LogConfig WithOverrides(IReadOnlyDictionary<string, string> overrides) => Create(BrokerDefaults, overrides);

    /// <summary>Where <paramref name="key"/>'s effective value came from.</summary>
    public ConfigSource SourceOf(string key) =>
        Overrides.ContainsKey(key) ? ConfigSource.DynamicTopicConfig
        : BrokerDefaults.ContainsKey(key) ? ConfigSource.StaticBrokerConfig
        : ConfigSource.DefaultConfig;
}
