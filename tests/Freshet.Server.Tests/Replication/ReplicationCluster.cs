using System.Collections.Immutable;
using System.Diagnostics;
using System.Text;
using Freshet.Broker;
using Freshet.Broker.Handlers;
using Freshet.Broker.Replication;
using Freshet.Metadata.Image;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using Freshet.Storage;
using Freshet.Storage.Segments;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Server.Tests.Replication;

/// <summary>A wall clock the test moves by hand (timers still tick in real time; replica lag reads this clock).</summary>
public sealed class ManualClock(long startMs = 1_700_000_000_000) : TimeProvider
{
    private long _nowMs = startMs;

    public long NowMs => Interlocked.Read(ref _nowMs);

    public override DateTimeOffset GetUtcNow() => DateTimeOffset.FromUnixTimeMilliseconds(NowMs);

    public void Advance(long ms) => Interlocked.Add(ref _nowMs, ms);
}

/// <summary>
/// Several brokers in one process, each with its own log directories, replica manager and request
/// handlers, wired by <see cref="LoopbackNodeClient"/> (requests and responses go through the
/// generated encoders and decoders, file-backed records spliced in as the transport would) and
/// by a stand-in controller that owns the metadata image, publishes it to every broker and
/// answers AlterPartition the way KRaft's controller checks it.
/// </summary>
public sealed class ReplicationCluster : IAsyncDisposable
{
    public const string Listener = "PLAINTEXT";

    private readonly string _root = Path.Combine(Path.GetTempPath(), "freshet-repl-tests", Guid.NewGuid().ToString("N"));
    private readonly Lock _imageLock = new();
    private readonly HashSet<(int From, int To)> _cut = [];
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(int From, int To, ApiKey Api), int> _taken = new();
    private MetadataImage _image = MetadataImage.Empty("repl-test", 1);

    /// <param name="selector">replica.selector.class of every broker.</param>
    /// <param name="racks">broker.rack of brokers 1, 2, ... (rack1, rack2, ... by default).</param>
    public ReplicationCluster(int nodes, ReplicationOptions? replication = null, IReadOnlyDictionary<string, string>? topicDefaults = null,
        ReplicaSelector selector = ReplicaSelector.Leader, string?[]? racks = null)
    {
        Replication = replication ?? new ReplicationOptions { ReplicaFetchWaitMaxMs = 100, ReplicaFetchBackoffMs = 50, AlterPartitionRetryBackoffMs = 20 };
        Selector = selector;
        var brokers = ImmutableSortedDictionary<int, BrokerRegistration>.Empty;
        for (int id = 1; id <= nodes; id++)
            brokers = brokers.Add(id, new BrokerRegistration(id, 100 + id, Uuid.Random(), [new BrokerEndpoint(Listener, $"broker{id}.test", 9000 + id, 0)],
                racks is null ? $"rack{id}" : racks[id - 1], false, false));
        _image = _image with { Brokers = brokers };
        for (int id = 1; id <= nodes; id++) Nodes[id] = new Node(this, id, topicDefaults);
        Publish(_image);
    }

    public ManualClock Clock { get; } = new();
    public ReplicationOptions Replication { get; }
    public ReplicaSelector Selector { get; }
    public Dictionary<int, Node> Nodes { get; } = [];
    public MetadataImage Image
    {
        get
        {
            lock (_imageLock) return _image;
        }
    }

    /// <summary>AlterPartition proposals the controller received, in order.</summary>
    public List<(int From, AlterPartitionProposal Proposal, ErrorCode Answer)> AlterPartitions { get; } = [];

    /// <summary>While set, AlterPartition requests wait for it (to observe the pending state).</summary>
    public TaskCompletionSource? AlterPartitionGate { get; set; }

    /// <summary>While set, consulted for each AlterPartition request: an exception it returns is thrown to the sender (a failure of any kind).</summary>
    public Func<AlterPartitionProposal, Exception?>? AlterPartitionFault { get; set; }

    // ---------------------------------------------------------------- network

    /// <summary>Cuts (or heals) requests from <paramref name="from"/> to <paramref name="to"/>.</summary>
    public void Cut(int from, int to, bool cut = true)
    {
        lock (_cut)
        {
            if (cut) _cut.Add((from, to));
            else _cut.Remove((from, to));
        }
    }

    public bool IsCut(int from, int to)
    {
        lock (_cut) return _cut.Contains((from, to));
    }

    /// <summary>
    /// How many <paramref name="api"/> requests from <paramref name="from"/> (0: a test client) node
    /// <paramref name="to"/> has taken up: their handler ran until it first had to wait, so a long poll
    /// counted here is parked (registered for the data it waits for) or already answered. Tests wait for
    /// this instead of sleeping before they make the data arrive.
    /// </summary>
    public int Taken(int from, int to, ApiKey api) => _taken.GetValueOrDefault((from, to, api));

    /// <summary>A client for requests sent by <paramref name="from"/> (0: a test client).</summary>
    public INodeClient ClientOf(int from) => new LoopbackNodeClient(this, from);

    // ---------------------------------------------------------------- metadata

    /// <summary>Creates a topic whose partitions all have <paramref name="replicas"/>, led by the first one, ISR = all.</summary>
    public Uuid CreateTopic(string name, int partitions, int[] replicas, IReadOnlyDictionary<string, string>? configs = null)
    {
        var id = Uuid.Random();
        var parts = ImmutableSortedDictionary<int, PartitionRegistration>.Empty;
        for (int i = 0; i < partitions; i++)
            parts = parts.Add(i, new PartitionRegistration([.. replicas], [.. replicas], [], [], replicas[0], 1, 0));
        var topic = new TopicImage(name, id, parts);
        lock (_imageLock)
        {
            var next = _image with { TopicsByName = _image.TopicsByName.SetItem(name, topic), TopicsById = _image.TopicsById.SetItem(id, topic), Offset = _image.Offset + 1 };
            if (configs is not null)
                next = next with { Configs = next.Configs.SetItem(new ConfigResourceKey(ConfigResourceType.Topic, name), configs.ToImmutableDictionary()) };
            Publish(next);
        }
        return id;
    }

    public PartitionRegistration Registration(TopicPartition tp) => Image.Partition(tp.Topic, tp.Partition)!;

    /// <summary>Fences or unfences a broker in the image (what the controller does when heartbeats stop or resume).</summary>
    public void SetFenced(int id, bool fenced)
    {
        lock (_imageLock)
        {
            var b = _image.Brokers[id] with { Fenced = fenced };
            Publish(_image with { Brokers = _image.Brokers.SetItem(id, b), Offset = _image.Offset + 1 });
        }
    }

    /// <summary>Changes a partition's registration (leader election, reassignment): a new partition epoch, and a new leader epoch when the leader changes or <paramref name="bumpLeaderEpoch"/>.</summary>
    public PartitionRegistration ChangePartition(TopicPartition tp, int? leader = null, int[]? isr = null, int[]? replicas = null, bool bumpLeaderEpoch = false)
    {
        lock (_imageLock)
        {
            var reg = _image.Partition(tp.Topic, tp.Partition)!;
            int newLeader = leader ?? reg.Leader;
            var next = reg with
            {
                Leader = newLeader,
                Isr = isr is null ? reg.Isr : [.. isr],
                Replicas = replicas is null ? reg.Replicas : [.. replicas],
                LeaderEpoch = newLeader != reg.Leader || bumpLeaderEpoch ? reg.LeaderEpoch + 1 : reg.LeaderEpoch,
                PartitionEpoch = reg.PartitionEpoch + 1,
            };
            SetPartition(tp, next);
            return next;
        }
    }

    private void SetPartition(TopicPartition tp, PartitionRegistration reg)
    {
        var topic = _image.Topic(tp.Topic)!;
        var t = topic with { Partitions = topic.Partitions.SetItem(tp.Partition, reg) };
        Publish(_image with { TopicsByName = _image.TopicsByName.SetItem(t.Name, t), TopicsById = _image.TopicsById.SetItem(t.Id, t), Offset = _image.Offset + 1 });
    }

    private void Publish(MetadataImage next)
    {
        var prev = _image;
        _image = next;
        foreach (var n in Nodes.Values)
        {
            if (n.Stopped) continue;
            n.Cache.OnMetadataUpdate(prev, next);
            n.Replicas.OnMetadataUpdate(n.LastImage, next);
            n.LastImage = next;
        }
    }

    /// <summary>KRaft's checks of AlterPartition: the leader and its epochs current, every new member eligible (KIP-903).</summary>
    internal async Task<AlterPartitionResult> AlterPartitionAsync(int from, AlterPartitionProposal proposal)
    {
        if (AlterPartitionGate is { } gate) await gate.Task.ConfigureAwait(false);
        if (AlterPartitionFault?.Invoke(proposal) is { } fault) throw fault;
        lock (_imageLock)
        {
            var tp = proposal.TopicPartition;
            var reg = _image.Partition(tp.Topic, tp.Partition);
            ErrorCode error = ErrorCode.None;
            if (reg is null) error = ErrorCode.UnknownTopicOrPartition;
            else if (reg.Leader != from) error = ErrorCode.NotLeaderOrFollower;
            else if (proposal.LeaderEpoch != reg.LeaderEpoch) error = ErrorCode.FencedLeaderEpoch;
            else if (proposal.PartitionEpoch != reg.PartitionEpoch) error = ErrorCode.InvalidUpdateVersion;
            else if (proposal.NewIsr.Any(m => !_image.Brokers.TryGetValue(m.BrokerId, out var b) || b.Fenced || m.BrokerEpoch != -1 && m.BrokerEpoch != b.Epoch))
                error = ErrorCode.IneligibleReplica;
            AlterPartitions.Add((from, proposal, error));
            if (error != ErrorCode.None) return AlterPartitionResult.Failed(error);
            var next = reg! with { Isr = proposal.NewIsrIds, PartitionEpoch = reg.PartitionEpoch + 1 };
            SetPartition(tp, next);
            return new AlterPartitionResult(ErrorCode.None, next.Leader, next.LeaderEpoch, next.Isr, next.PartitionEpoch);
        }
    }

    // ---------------------------------------------------------------- clients

    public async Task<ProduceResponse.PartitionProduceResponse> ProduceAsync(int node, TopicPartition tp, byte[] batch, short acks = -1, int timeoutMs = 10_000, short version = 11)
    {
        var request = new ProduceRequest
        {
            Acks = acks,
            TimeoutMs = timeoutMs,
            TopicData = [new ProduceRequest.TopicProduceData { Name = tp.Topic, PartitionData = [new ProduceRequest.PartitionProduceData { Index = tp.Partition, Records = new RecordSet(batch) }] }],
        };
        var r = await ClientOf(0).SendAsync<ProduceResponse>(node, request, version, CancellationToken.None);
        return r.Responses.Single().PartitionResponses.Single();
    }

    public static byte[] Batch(string tag, int records = 3, long producerId = -1, short epoch = -1, int sequence = -1)
    {
        using var b = new RecordBatchBuilder { ProducerId = producerId, ProducerEpoch = epoch, BaseSequence = sequence };
        for (int i = 0; i < records; i++) b.Append(1_700_000_000_000 + i, null, Encoding.UTF8.GetBytes($"{tag}-{i}"));
        return b.Build();
    }

    /// <summary>The record values of a replica's log, in order.</summary>
    public List<string> Values(int node, TopicPartition tp)
    {
        var log = Nodes[node].Log(tp);
        var result = new List<string>();
        using var scratch = new PooledBufferWriter();
        foreach (var batch in log.ReadBatches(log.LogStartOffset))
            foreach (var r in new BatchRecords(batch, scratch))
                result.Add(Encoding.UTF8.GetString(r.Record.Value));
        return result;
    }

    /// <summary>The bytes of a replica's log from its start to its end.</summary>
    public byte[] LogBytes(int node, TopicPartition tp)
    {
        var log = Nodes[node].Log(tp);
        return [.. log.ReadBatches(log.LogStartOffset).SelectMany(b => b)];
    }

    public static async Task Until(Func<bool> condition, string what, int timeoutMs = 30_000)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(sw.ElapsedMilliseconds < timeoutMs, $"timed out waiting for {what}");
            await Task.Delay(10);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var n in Nodes.Values) await n.DisposeAsync();
        try { Directory.Delete(_root, recursive: true); }
        catch (IOException) { }
    }

    // ---------------------------------------------------------------- one broker

    public sealed class Node : IAsyncDisposable
    {
        private readonly ReplicationCluster _cluster;

        internal Node(ReplicationCluster cluster, int id, IReadOnlyDictionary<string, string>? topicDefaults)
        {
            _cluster = cluster;
            Id = id;
            Dir = Path.Combine(cluster._root, $"node{id}");
            var defaults = topicDefaults ?? new Dictionary<string, string>();
            Logs = new LogManager(new LogManagerOptions
            {
                LogDirs = [Dir],
                TopicDefaults = defaults,
                RetentionCheckIntervalMs = 1_000_000_000_000,
                CheckpointIntervalMs = 1_000_000_000_000,
                HighWatermarkCheckpointIntervalMs = 1_000_000_000_000,
                ProducerExpirationCheckIntervalMs = 1_000_000_000_000,
                CleanerEnable = false,
            }, cluster.Clock, NullLoggerFactory.Instance);
            Logs.Startup();
            Options = new BrokerOptions
            {
                NodeId = id,
                AdvertisedListeners = [new BrokerEndpoint(Listener, $"broker{id}.test", 9000 + id, 0)],
                TopicDefaults = defaults,
                Replication = cluster.Replication,
                ReplicaSelector = cluster.Selector,
                BrokerEpoch = () => 100 + id,
                AutoCreateTopicsEnable = false,
            };
            LastImage = MetadataImage.Empty("repl-test", 1);
            Cache = new MetadataCache(LastImage);
            Replicas = new ReplicaManager(Options, Logs, NullLogger<ReplicaManager>.Instance, cluster.ClientOf(id), new Sender(cluster, id), cluster.Clock,
                NullLoggerFactory.Instance);
            Dispatcher = new RequestDispatcher();
            new ProduceHandler(Dispatcher, Replicas, Cache).Register();
            new FetchHandler(Dispatcher, Replicas, Cache).Register();
            new OffsetsHandler(Dispatcher, Replicas, Cache).Register();
            new LeaderEpochHandler(Dispatcher, Replicas, Cache).Register();
        }

        public int Id { get; }
        public string Dir { get; }
        public LogManager Logs { get; }
        public BrokerOptions Options { get; }
        public MetadataCache Cache { get; }
        public ReplicaManager Replicas { get; }
        public RequestDispatcher Dispatcher { get; }
        public MetadataImage LastImage { get; internal set; }
        public bool Stopped { get; private set; }

        public Partition Partition(TopicPartition tp) => Replicas.GetPartition(tp) ?? throw new InvalidOperationException($"node {Id} has no {tp}");

        public PartitionLog Log(TopicPartition tp) => Partition(tp).Log;

        public async ValueTask DisposeAsync()
        {
            if (Stopped) return;
            Stopped = true;
            await Replicas.DisposeAsync();
            await Logs.DisposeAsync();
        }
    }

    private sealed class Sender(ReplicationCluster cluster, int from) : IAlterPartitionSender
    {
        public Task<AlterPartitionResult> SendAsync(AlterPartitionProposal proposal, CancellationToken ct) => cluster.AlterPartitionAsync(from, proposal);
    }

    // ---------------------------------------------------------------- transport

    /// <summary>
    /// Routes a request to another node's dispatcher: encoded at the version asked for, decoded there,
    /// handled, and the response encoded (file records spliced in, as the transport sends them) and
    /// decoded here. A cut link, or a stopped node, is a <see cref="NodeUnreachableException"/>.
    /// </summary>
    private sealed class LoopbackNodeClient(ReplicationCluster cluster, int from) : INodeClient
    {
        private static int s_correlation;

        public async Task<TResponse> SendAsync<TResponse>(int nodeId, IApiRequest<TResponse> request, short version, CancellationToken ct) where TResponse : IApiMessage, new()
        {
            ct.ThrowIfCancellationRequested();
            if (cluster.IsCut(from, nodeId) || !cluster.Nodes.TryGetValue(nodeId, out var node) || node.Stopped)
                throw new NodeUnreachableException(nodeId, "link cut");
            await Task.Yield();
            var decoded = ApiMessages.CreateRequest(request.ApiKey)!;
            var r = new ProtocolReader(request.ToBytes(version));
            decoded.Read(ref r, version);
            Assert.True(r.End, "request has trailing bytes");
            Assert.True(node.Dispatcher.IsSupported(request.ApiKey, version), $"node {nodeId} does not serve API {request.ApiKey} v{version}");
            var context = new RequestContext
            {
                ApiKey = request.ApiKey,
                ApiVersion = version,
                CorrelationId = Interlocked.Increment(ref s_correlation),
                ConnectionId = $"{from}->{nodeId}",
                ClientId = from == 0 ? "test" : $"broker-{from}",
                ListenerName = Listener,
                ConnectionClosed = ct,
            };
            // The handler runs synchronously up to its first wait (a fetch registers for the data it waits for first).
            var handling = node.Dispatcher.DispatchAsync(context, decoded);
            cluster._taken.AddOrUpdate((from, nodeId, (ApiKey)request.ApiKey), 1, (_, n) => n + 1);
            var response = await handling;
            if (cluster.IsCut(from, nodeId) || node.Stopped) throw new NodeUnreachableException(nodeId, "link cut while waiting");
            ct.ThrowIfCancellationRequested();
            return MessageExtensions.Parse<TResponse>(Encode(response!, version), version);
        }

        private static byte[] Encode(IApiMessage m, short version)
        {
            var size = new MessageSize();
            m.AddSize(ref size, version);
            var inMemory = new byte[size.InMemory];
            var w = new ProtocolWriter(inMemory);
            m.Write(ref w, version);
            var splices = w.Splices;
            if (splices is null) return inMemory;
            var result = new byte[size.Total];
            int src = 0, dst = 0;
            foreach (var s in splices)
            {
                inMemory.AsSpan(src, s.Position - src).CopyTo(result.AsSpan(dst));
                dst += s.Position - src;
                src = s.Position;
                var bytes = ((FileRecords)s.Records).ReadAll();
                bytes.CopyTo(result.AsSpan(dst));
                dst += bytes.Length;
            }
            inMemory.AsSpan(src).CopyTo(result.AsSpan(dst));
            return result;
        }
    }
}
