using System.Collections.Immutable;
using System.Globalization;
using Freshet.Metadata.Image;
using Freshet.Metadata.Log;
using Freshet.Protocol;
using Freshet.Protocol.Config;
using Freshet.Protocol.MetadataRecords;
using Freshet.Protocol.Wire;
using Freshet.Storage;
using Microsoft.Extensions.Logging;
using static Freshet.Metadata.Log.MetadataRecordSerde;

namespace Freshet.Metadata.Controller;

/// <summary>Receives every committed image, in order (the broker's metadata publisher).</summary>
public interface IMetadataListener
{
    void OnMetadataUpdate(MetadataImage previous, MetadataImage current);
}

/// <summary>
/// The active controller (Kafka's QuorumController): turns admin operations into metadata
/// records, validates them against the current image, appends them to the metadata log and
/// publishes the resulting image. Operations run one at a time under a lock, as Kafka's single
/// controller event thread does. With a quorum of one, an append is a commit; when the Raft
/// quorum arrives it sits behind <see cref="IMetadataLog"/> and this class stays the same.
/// </summary>
public sealed partial class QuorumController
{
    /// <summary>The metadata.version written at bootstrap (Kafka 3.9-IV0's level).</summary>
    public const short BootstrapMetadataVersion = 21;

    private readonly Lock _lock = new();
    private readonly IMetadataLog _log;
    private readonly ILogger _logger;
    private readonly List<IMetadataListener> _listeners = [];
    private MetadataImage _image;

    public QuorumController(ControllerOptions options, IMetadataLog log, ILogger<QuorumController> logger)
    {
        Options = options;
        _log = log;
        _logger = logger;
        _image = MetadataImage.Empty(options.ClusterId, options.NodeId);
    }

    public ControllerOptions Options { get; }

    /// <summary>The latest committed image.</summary>
    public MetadataImage Image => Volatile.Read(ref _image);

    public void AddListener(IMetadataListener listener)
    {
        lock (_lock) _listeners.Add(listener);
    }

    /// <summary>Adds a listener and hands it the current image at once (as an update from the empty image), atomically with later updates.</summary>
    public void AddListenerWithCurrentImage(IMetadataListener listener)
    {
        lock (_lock)
        {
            _listeners.Add(listener);
            listener.OnMetadataUpdate(MetadataImage.Empty(Options.ClusterId, Options.NodeId), _image);
        }
    }

    /// <summary>
    /// True while this node is the active controller: the quorum leader, with every record
    /// committed before its epoch applied. Only then do operations commit; otherwise they throw
    /// <see cref="NotControllerException"/> (NOT_CONTROLLER to the caller).
    /// </summary>
    public bool IsActive => Volatile.Read(ref _active);

    private bool _active;

    /// <summary>
    /// This node became the active controller: brokers get full sessions from now, and a new
    /// cluster's log is bootstrapped with the metadata.version feature.
    /// </summary>
    public void BecomeActive()
    {
        lock (_lock)
        {
            Volatile.Write(ref _active, true);
            _lastHeartbeatMs.Clear();
            _unheard.Clear();
            if (!_image.Features.ContainsKey("metadata.version"))
                Commit([new VersionedRecord((short)MetadataRecordType.FeatureLevel, 0,
                    new FeatureLevelRecord { Name = "metadata.version", FeatureLevel = BootstrapMetadataVersion })]);
            LogActive(_logger, Options.NodeId, _image.Offset);
        }
    }

    /// <summary>Another node leads the quorum now: stop committing (in-flight operations fail with NOT_CONTROLLER).</summary>
    public void BecomeStandby() => Volatile.Write(ref _active, false);

    /// <summary>
    /// Applies records the quorum committed (replay on every node; on the active controller only
    /// what it did not append itself) and publishes the image they produce.
    /// </summary>
    public void ApplyCommitted(IReadOnlyList<(long Offset, VersionedRecord Record)> records)
    {
        lock (_lock)
        {
            var previous = _image;
            var builder = new MetadataImageBuilder(previous);
            long last = previous.Offset;
            foreach (var (offset, record) in records)
            {
                if (offset <= last) continue;
                builder.Apply(record.Message);
                last = offset;
            }
            if (last == previous.Offset) return;
            var next = builder.Build(last);
            Volatile.Write(ref _image, next);
            foreach (var l in _listeners) l.OnMetadataUpdate(previous, next);
        }
    }

    /// <summary>
    /// Replaces the image with a snapshot's (at start when the metadata log begins with one, or when
    /// this node fell behind the leader's log start and downloaded it): the image is rebuilt from the
    /// empty one, so whatever the skipped records removed is gone, and listeners see the difference.
    /// </summary>
    /// <param name="endOffset">The snapshot's end: it covers the records below this offset.</param>
    public void LoadSnapshot(long endOffset, IEnumerable<VersionedRecord> records)
    {
        ArgumentNullException.ThrowIfNull(records);
        lock (_lock)
        {
            // Only a node that does not lead downloads a snapshot; stop committing all the same if it did.
            BecomeStandby();
            var previous = _image;
            var builder = new MetadataImageBuilder(MetadataImage.Empty(previous.ClusterId, previous.ControllerId));
            foreach (var r in records) builder.Apply(r.Message);
            var next = builder.Build(endOffset - 1);
            Volatile.Write(ref _image, next);
            LogSnapshotLoaded(_logger, endOffset, next.TopicsByName.Count, next.Brokers.Count);
            foreach (var l in _listeners) l.OnMetadataUpdate(previous, next);
        }
    }

    /// <summary>Replays a local (one-node, Raft-less) log into the image and becomes active; an empty log is bootstrapped with the metadata.version feature.</summary>
    public void Start()
    {
        lock (_lock)
        {
            var builder = new MetadataImageBuilder(_image);
            long last = -1;
            foreach (var (offset, record) in _log.ReadAll())
            {
                builder.Apply(record.Message);
                last = offset;
            }
            var empty = _image;
            _image = builder.Build(last);
            LogReplayed(_logger, last + 1, _image.TopicsByName.Count);
            foreach (var l in _listeners) l.OnMetadataUpdate(empty, _image);
            BecomeActive();
        }
    }

    /// <summary>Appends records (durably) and publishes the image they produce. Under the lock.</summary>
    private MetadataImage Commit(IReadOnlyList<VersionedRecord> records)
    {
        if (records.Count == 0) return _image;
        if (!IsActive) throw new NotControllerException($"node {Options.NodeId} is not the active controller");
        long lastOffset = _log.Append(records);
        var previous = _image;
        var builder = new MetadataImageBuilder(previous);
        foreach (var r in records) builder.Apply(r.Message);
        var next = builder.Build(lastOffset);
        Volatile.Write(ref _image, next);
        foreach (var l in _listeners) l.OnMetadataUpdate(previous, next);
        return next;
    }

    // ================================================================ brokers

    // ================================================================ topics

    public IReadOnlyList<CreateTopicResult> CreateTopics(IReadOnlyList<NewTopic> topics, bool validateOnly)
    {
        lock (_lock)
        {
            var image = _image;
            var results = new List<CreateTopicResult>();
            var records = new List<VersionedRecord>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var duplicates = topics.GroupBy(t => t.Name).Where(g => g.Count() > 1).Select(g => g.Key).ToHashSet(StringComparer.Ordinal);
            int partitionsInRequest = 0;
            foreach (var t in topics)
            {
                if (duplicates.Contains(t.Name))
                {
                    if (seen.Add(t.Name)) results.Add(Fail(t.Name, ErrorCode.InvalidRequest, "Duplicate topic name."));
                    continue;
                }
                var r = PlanTopic(image, t, records, ref partitionsInRequest, validateOnly);
                results.Add(r);
            }
            if (!validateOnly) Commit(records);
            return results;
        }
    }

    private static CreateTopicResult Fail(string name, ErrorCode e, string message) => new(name, e, message, Uuid.Zero, -1, -1);

    private CreateTopicResult PlanTopic(MetadataImage image, NewTopic t, List<VersionedRecord> records, ref int partitionsInRequest, bool validateOnly)
    {
        if (TopicNames.Validate(t.Name) is { } bad) return Fail(t.Name, ErrorCode.InvalidTopicException, bad);
        if (image.TopicsByName.ContainsKey(t.Name) || records.Any(r => r.Message is TopicRecord tr && tr.Name == t.Name))
            return Fail(t.Name, ErrorCode.TopicAlreadyExists, $"Topic '{t.Name}' already exists.");
        string normalized = t.Name.Replace('.', '_');
        var collision = image.TopicsByName.Keys.FirstOrDefault(n => n.Replace('.', '_') == normalized);
        if (collision is not null)
            return Fail(t.Name, ErrorCode.InvalidTopicException, $"Topic '{t.Name}' collides with existing topic: {collision}");

        List<IReadOnlyList<int>> assignment;
        var brokers = image.ActiveBrokers.Where(b => !b.InControlledShutdown).ToList();
        if (t.Assignments is { Count: > 0 } given)
        {
            if (t.NumPartitions != -1 || t.ReplicationFactor != -1)
                return Fail(t.Name, ErrorCode.InvalidRequest, "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.");
            if (t.DuplicateAssignment >= 0)
                return Fail(t.Name, ErrorCode.InvalidReplicaAssignment, $"Found multiple manual partition assignments for partition {t.DuplicateAssignment}");
            // Explicit assignments count towards the per-request cap like counted partitions do.
            if (partitionsInRequest + given.Count > Options.MaxPartitionsPerRequest)
                return Fail(t.Name, ErrorCode.PolicyViolation, $"Unable to create {given.Count} partitions: at most {Options.MaxPartitionsPerRequest} partitions may be created per request.");
            assignment = [];
            for (int p = 0; p < given.Count; p++)
            {
                if (!given.TryGetValue(p, out var replicas))
                    return Fail(t.Name, ErrorCode.InvalidReplicaAssignment, "partitions should be a consecutive 0-based integer sequence");
                if (replicas.Count == 0 || replicas.Distinct().Count() != replicas.Count)
                    return Fail(t.Name, ErrorCode.InvalidReplicaAssignment, $"Invalid replica list for partition {p}: duplicate or empty replicas");
                var unknown = replicas.Where(b => !image.Brokers.ContainsKey(b)).ToList();
                if (unknown.Count > 0)
                    return Fail(t.Name, ErrorCode.InvalidReplicaAssignment, $"The manual partition assignment includes broker {unknown[0]}, but no such broker is registered.");
                assignment.Add(replicas);
            }
        }
        else
        {
            int partitions = t.NumPartitions == -1 ? Options.DefaultNumPartitions : t.NumPartitions;
            short rf = t.ReplicationFactor == -1 ? Options.DefaultReplicationFactor : t.ReplicationFactor;
            if (partitions <= 0) return Fail(t.Name, ErrorCode.InvalidPartitions, "Number of partitions was set to an invalid non-positive value.");
            if (rf <= 0) return Fail(t.Name, ErrorCode.InvalidReplicationFactor, "Replication factor must be larger than 0, or -1 to use the default value.");
            if (rf > brokers.Count)
                return Fail(t.Name, ErrorCode.InvalidReplicationFactor,
                    $"Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {brokers.Count} broker(s) are registered.");
            if (partitionsInRequest + partitions > Options.MaxPartitionsPerRequest)
                return Fail(t.Name, ErrorCode.PolicyViolation, $"Unable to create {partitions} partitions: at most {Options.MaxPartitionsPerRequest} partitions may be created per request.");
            assignment = ReplicaPlacer.Place(brokers, partitions, rf, 0, Random.Shared);
        }
        partitionsInRequest += assignment.Count;

        var overrides = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (k, v) in t.Configs)
        {
            if (v is null) return Fail(t.Name, ErrorCode.InvalidConfig, $"Null value not supported for topic configs: {k}");
            overrides[k] = v;
        }
        if (LogConfig.Validate(overrides) is { } configError) return Fail(t.Name, ErrorCode.InvalidConfig, configError);
        var effective = LogConfig.Create(TopicDefaults(image), overrides);
        short replication = (short)assignment[0].Count;
        if (effective.MinInSyncReplicas > replication && overrides.ContainsKey(LogConfig.MinInSyncReplicasConfig))
            return Fail(t.Name, ErrorCode.InvalidConfig, $"min.insync.replicas {effective.MinInSyncReplicas} is larger than the replication factor {replication}");

        var id = Uuid.Random();
        if (validateOnly) return new CreateTopicResult(t.Name, ErrorCode.None, null, Uuid.Zero, assignment.Count, replication);
        records.Add(new VersionedRecord((short)MetadataRecordType.Topic, 0, new TopicRecord { Name = t.Name, TopicId = id }));
        foreach (var (k, v) in overrides)
            records.Add(new VersionedRecord((short)MetadataRecordType.Config, 0,
                new ConfigRecord { ResourceType = (sbyte)ConfigResourceType.Topic, ResourceName = t.Name, Name = k, Value = v }));
        for (int p = 0; p < assignment.Count; p++) records.Add(PartitionRecordFor(image, id, p, assignment[p]));
        return new CreateTopicResult(t.Name, ErrorCode.None, null, id, assignment.Count, replication);
    }

    /// <summary>A new partition: the ISR is its live replicas and the leader the first of them (all replicas when none is live).</summary>
    private static VersionedRecord PartitionRecordFor(MetadataImage image, Uuid topicId, int partition, IReadOnlyList<int> replicas)
    {
        var live = replicas.Where(r => image.Brokers.TryGetValue(r, out var b) && !b.Fenced && !b.InControlledShutdown).ToList();
        if (live.Count == 0) live = [.. replicas];
        return new((short)MetadataRecordType.Partition, 0, new PartitionRecord
        {
            PartitionId = partition,
            TopicId = topicId,
            Replicas = [.. replicas],
            Isr = [.. live],
            Leader = live[0],
            LeaderEpoch = 0,
            PartitionEpoch = 0,
        });
    }

    /// <summary>Deletes topics by name (or by id when the name is null).</summary>
    public IReadOnlyList<DeleteTopicResult> DeleteTopics(IReadOnlyList<(string? Name, Uuid Id)> topics)
    {
        lock (_lock)
        {
            var image = _image;
            var results = new List<DeleteTopicResult>();
            var records = new List<VersionedRecord>();
            var removed = new HashSet<Uuid>();
            foreach (var (name, id) in topics)
            {
                TopicImage? t = name is not null ? image.Topic(name) : image.Topic(id);
                if (t is null)
                {
                    results.Add(name is not null
                        ? new DeleteTopicResult(name, id, ErrorCode.UnknownTopicOrPartition, "This server does not host this topic-partition.")
                        : new DeleteTopicResult(null, id, ErrorCode.UnknownTopicId, "This server does not host this topic ID."));
                    continue;
                }
                if (removed.Add(t.Id))
                    records.Add(new VersionedRecord((short)MetadataRecordType.RemoveTopic, 0, new RemoveTopicRecord { TopicId = t.Id }));
                results.Add(new DeleteTopicResult(t.Name, t.Id, ErrorCode.None, null));
            }
            Commit(records);
            return results;
        }
    }

    public IReadOnlyList<CreatePartitionsResult> CreatePartitions(IReadOnlyList<NewPartitions> requests, bool validateOnly)
    {
        lock (_lock)
        {
            var image = _image;
            var results = new List<CreatePartitionsResult>();
            var records = new List<VersionedRecord>();
            foreach (var req in requests)
            {
                var t = image.Topic(req.Topic);
                if (t is null)
                {
                    results.Add(new(req.Topic, ErrorCode.UnknownTopicOrPartition, "This server does not host this topic-partition."));
                    continue;
                }
                int current = t.Partitions.Count;
                if (req.Count < current)
                {
                    results.Add(new(req.Topic, ErrorCode.InvalidPartitions, $"Topic currently has {current} partitions, which is higher than the requested {req.Count}."));
                    continue;
                }
                if (req.Count == current)
                {
                    results.Add(new(req.Topic, ErrorCode.InvalidPartitions, $"Topic already has {current} partitions."));
                    continue;
                }
                if (req.Count - current > Options.MaxPartitionsPerRequest)
                {
                    results.Add(new(req.Topic, ErrorCode.PolicyViolation, $"Unable to create {req.Count - current} partitions: at most {Options.MaxPartitionsPerRequest} per request."));
                    continue;
                }
                int rf = t.Partitions.Values.First().Replicas.Length;
                var brokers = image.ActiveBrokers.Where(b => !b.InControlledShutdown).ToList();
                List<IReadOnlyList<int>> assignment;
                if (req.Assignments is { } given)
                {
                    if (given.Count != req.Count - current)
                    {
                        results.Add(new(req.Topic, ErrorCode.InvalidReplicaAssignment,
                            $"Increasing the number of partitions by {req.Count - current} but {given.Count} assignments provided."));
                        continue;
                    }
                    var bad = given.FirstOrDefault(a => a.Count == 0 || a.Distinct().Count() != a.Count || a.Any(b => !image.Brokers.ContainsKey(b)));
                    if (bad is not null)
                    {
                        results.Add(new(req.Topic, ErrorCode.InvalidReplicaAssignment, "Invalid replica assignment: empty, duplicate or unknown brokers."));
                        continue;
                    }
                    assignment = [.. given];
                }
                else
                {
                    if (rf > brokers.Count)
                    {
                        results.Add(new(req.Topic, ErrorCode.InvalidReplicationFactor,
                            $"Unable to replicate the partition {rf} time(s): only {brokers.Count} broker(s) are registered."));
                        continue;
                    }
                    assignment = ReplicaPlacer.Place(brokers, req.Count - current, (short)rf, current, Random.Shared);
                }
                if (!validateOnly)
                    for (int i = 0; i < assignment.Count; i++) records.Add(PartitionRecordFor(image, t.Id, current + i, assignment[i]));
                results.Add(new(req.Topic, ErrorCode.None, null));
            }
            if (!validateOnly) Commit(records);
            return results;
        }
    }

    // ================================================================ configs

    /// <summary>
    /// IncrementalAlterConfigs for topics and brokers (a broker id, or "" for the cluster-wide
    /// default): SET, DELETE, APPEND and SUBTRACT on the resource's dynamic configs, checked as a
    /// whole and written as ConfigRecords. Other resource types are refused with INVALID_REQUEST.
    /// </summary>
    public IReadOnlyList<AlterConfigsResult> IncrementalAlterConfigs(
        IReadOnlyList<(ConfigResourceType Type, string Name, IReadOnlyList<ConfigChange> Changes)> resources, bool validateOnly)
    {
        lock (_lock)
        {
            var image = _image;
            var results = new List<AlterConfigsResult>();
            var records = new List<VersionedRecord>();
            foreach (var (type, name, changes) in resources)
            {
                if (CheckConfigResource(image, type, name) is { } refused)
                {
                    results.Add(refused);
                    continue;
                }
                var current = image.ConfigsOf(type, name);
                var next = new Dictionary<string, string>(current, StringComparer.Ordinal);
                (ErrorCode, string)? error = null;
                foreach (var c in changes)
                {
                    error = ApplyChange(image, type, name, next, c);
                    if (error is not null) break;
                }
                error ??= ValidateConfigs(type, next);
                if (error is { } e)
                {
                    results.Add(new(type, name, e.Item1, e.Item2));
                    continue;
                }
                if (!validateOnly) AddConfigRecords(records, type, name, current, next);
                results.Add(new(type, name, ErrorCode.None, null));
            }
            if (!validateOnly) Commit(records);
            return results;
        }
    }

    /// <summary>
    /// AlterConfigs (the non-incremental form): the given configs become the resource's whole set of
    /// dynamic configs; those it had and the request leaves out are removed.
    /// </summary>
    public IReadOnlyList<AlterConfigsResult> AlterConfigs(
        IReadOnlyList<(ConfigResourceType Type, string Name, IReadOnlyList<(string Name, string? Value)> Configs)> resources, bool validateOnly)
    {
        lock (_lock)
        {
            var image = _image;
            var results = new List<AlterConfigsResult>();
            var records = new List<VersionedRecord>();
            foreach (var (type, name, configs) in resources)
            {
                if (CheckConfigResource(image, type, name) is { } refused)
                {
                    results.Add(refused);
                    continue;
                }
                var next = new Dictionary<string, string>(StringComparer.Ordinal);
                (ErrorCode, string)? error = null;
                foreach (var (k, v) in configs)
                {
                    if (v is null)
                    {
                        error = (ErrorCode.InvalidRequest, $"Null value not supported for : {k}");
                        break;
                    }
                    next[k] = v;
                }
                error ??= ValidateConfigs(type, next);
                if (error is { } e)
                {
                    results.Add(new(type, name, e.Item1, e.Item2));
                    continue;
                }
                if (!validateOnly) AddConfigRecords(records, type, name, image.ConfigsOf(type, name), next);
                results.Add(new(type, name, ErrorCode.None, null));
            }
            if (!validateOnly) Commit(records);
            return results;
        }
    }

    /// <summary>The resource exists and its type is one whose configs can change: null, else the refusal.</summary>
    private static AlterConfigsResult? CheckConfigResource(MetadataImage image, ConfigResourceType type, string name)
    {
        switch (type)
        {
            case ConfigResourceType.Topic:
                return image.Topic(name) is null ? new(type, name, ErrorCode.UnknownTopicOrPartition, "This server does not host this topic-partition.") : null;
            case ConfigResourceType.Broker:
                return DynamicBrokerConfigs.ValidateResourceName(name) is { } bad ? new(type, name, ErrorCode.InvalidRequest, bad) : null;
            default:
                return new(type, name, ErrorCode.InvalidRequest, $"Freshet does not change {type} configs at runtime.");
        }
    }

    /// <summary>One IncrementalAlterConfigs operation on <paramref name="next"/>; the error that stops the resource, or null.</summary>
    private (ErrorCode, string)? ApplyChange(MetadataImage image, ConfigResourceType type, string name, Dictionary<string, string> next, ConfigChange c)
    {
        ConfigKey? key = null;
        if (type == ConfigResourceType.Topic)
        {
            if (!LogConfig.Definition.TryGet(c.Name, out var k)) return (ErrorCode.InvalidConfig, $"Unknown topic config name: {c.Name}");
            key = k;
        }
        else if (DynamicBrokerConfigs.TopicKeyOf.TryGetValue(c.Name, out var topicKey) && LogConfig.Definition.TryGet(topicKey, out var k))
        {
            key = k;
        }
        switch (c.Op)
        {
            case AlterConfigOp.Set:
                if (c.Value is null) return (ErrorCode.InvalidRequest, $"Null value not supported for : {c.Name}");
                next[c.Name] = c.Value;
                return null;
            case AlterConfigOp.Delete:
                next.Remove(c.Name);
                return null;
            case AlterConfigOp.Append or AlterConfigOp.Subtract:
            {
                // An unknown or read-only broker name is reported by the validation of the whole set.
                if (key is null)
                {
                    next[c.Name] = c.Value ?? "";
                    return null;
                }
                if (key.Type != ConfigType.List) return (ErrorCode.InvalidConfig, $"Config value append is not allowed for config key: {c.Name}");
                var items = ConfigValues.ParseList(next.GetValueOrDefault(c.Name) ?? CurrentValue(image, type, name, key.Name, next)).ToList();
                var delta = ConfigValues.ParseList(c.Value ?? "");
                if (c.Op == AlterConfigOp.Append) items.AddRange(delta.Where(d => !items.Contains(d)));
                else items.RemoveAll(delta.Contains);
                next[c.Name] = string.Join(",", items);
                return null;
            }
            default:
                return (ErrorCode.InvalidRequest, $"Unknown operation {(int)c.Op} for {c.Name}");
        }
    }

    /// <summary>The value a list config has before an APPEND/SUBTRACT when the resource sets none: what it inherits.</summary>
    private string CurrentValue(MetadataImage image, ConfigResourceType type, string name, string topicKey, Dictionary<string, string> next)
    {
        if (type == ConfigResourceType.Topic) return LogConfig.Create(TopicDefaults(image), next).Values[topicKey];
        // A broker's own value falls back on the cluster default, then the static and built-in ones.
        int? node = name.Length == 0 ? null : int.Parse(name, CultureInfo.InvariantCulture);
        var inherited = DynamicBrokerConfigs.TopicDefaults(Options.TopicDefaults, image, node);
        return LogConfig.Create(inherited, new Dictionary<string, string>()).Values[topicKey];
    }

    private (ErrorCode, string)? ValidateConfigs(ConfigResourceType type, Dictionary<string, string> next)
    {
        if (type == ConfigResourceType.Broker) return DynamicBrokerConfigs.Validate(next, Options.StaticBrokerConfigs);
        foreach (var k in next.Keys)
            if (!LogConfig.Definition.TryGet(k, out _)) return (ErrorCode.InvalidConfig, $"Unknown topic config name: {k}");
        return LogConfig.Validate(next) is { } error ? (ErrorCode.InvalidConfig, error) : null;
    }

    /// <summary>A ConfigRecord for every config whose value changes (a null value removes it).</summary>
    private static void AddConfigRecords(List<VersionedRecord> records, ConfigResourceType type, string name,
        IReadOnlyDictionary<string, string> current, Dictionary<string, string> next)
    {
        foreach (var k in current.Keys.Union(next.Keys).Order(StringComparer.Ordinal))
        {
            next.TryGetValue(k, out var v);
            if (current.TryGetValue(k, out var old) && old == v) continue;
            if (v is null && !current.ContainsKey(k)) continue;
            records.Add(new VersionedRecord((short)MetadataRecordType.Config, 0,
                new ConfigRecord { ResourceType = (sbyte)type, ResourceName = name, Name = k, Value = v }));
        }
    }

    /// <summary>The topic defaults the controller works with: the static ones under the cluster-wide dynamic defaults.</summary>
    private IReadOnlyDictionary<string, string> TopicDefaults(MetadataImage image) =>
        DynamicBrokerConfigs.TopicDefaults(Options.TopicDefaults, image, nodeId: null);

    // ================================================================ producer ids

    /// <summary>Hands a broker the next block of producer ids, durably (AllocateProducerIds).</summary>
    public ProducerIdBlock AllocateProducerIds(int brokerId, long brokerEpoch)
    {
        lock (_lock)
        {
            long first = _image.NextProducerId;
            int size = Options.ProducerIdBlockSize;
            Commit([new VersionedRecord((short)MetadataRecordType.ProducerIds, 0,
                new ProducerIdsRecord { BrokerId = brokerId, BrokerEpoch = brokerEpoch, NextProducerId = first + size })]);
            return new ProducerIdBlock(brokerId, first, size);
        }
    }

    [LoggerMessage(EventId = 2002, Level = LogLevel.Information, Message = "Node {NodeId} is the active controller (metadata at offset {Offset})")]
    private static partial void LogActive(ILogger logger, int nodeId, long offset);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Information, Message = "Metadata snapshot up to offset {EndOffset} loaded: {Topics} topics, {Brokers} brokers")]
    private static partial void LogSnapshotLoaded(ILogger logger, long endOffset, int topics, int brokers);

    [LoggerMessage(EventId = 2001, Level = LogLevel.Information, Message = "Metadata log replayed: {Records} records, {Topics} topics")]
    private static partial void LogReplayed(ILogger logger, long records, int topics);
}
