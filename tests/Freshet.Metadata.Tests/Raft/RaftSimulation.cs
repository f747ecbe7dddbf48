using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Freshet.Metadata.Raft;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using Freshet.Storage.Segments;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Metadata.Tests.Raft;

/// <summary>A broken invariant, with the seed that replays it.</summary>
public sealed class SimulationFailure(string message) : Exception(message);

/// <summary>The shape of one simulated run.</summary>
public sealed record SimOptions
{
    public int Voters { get; init; } = 3;
    public int Observers { get; init; } = 1;

    /// <summary>Faults are injected from 0 to here; then everything heals.</summary>
    public long FaultPhaseMs { get; init; } = 8_000;

    /// <summary>After healing, an entry appended then must be committed on every node within this long.</summary>
    public long LivenessBoundMs { get; init; } = 20_000;

    /// <summary>Every message goes through the generated Write/Read at its highest version.</summary>
    public bool Serialize { get; init; } = true;

    /// <summary>The broken-on-purpose voters of the checker's own test.</summary>
    public bool ForgetVotes { get; init; }

    /// <summary>Broken on purpose too: nodes never flush, so crashes lose acknowledged entries.</summary>
    public bool SkipFlush { get; init; }

    /// <summary>Keep a full event trace (replays); otherwise the last events only.</summary>
    public bool FullTrace { get; init; }

    /// <summary>
    /// When set, every node keeps its log in a <see cref="PartitionRaftLog"/> under a fresh directory
    /// below this one (deleted after the run), with small segments; a crash closes the files unflushed,
    /// cuts a random part of what was not flushed (possibly mid-batch, a torn tail) and reopens the log.
    /// </summary>
    public string? LogDirectory { get; init; }
}

/// <summary>What one run did, to show the faults were real.</summary>
public sealed record SimStats(long VirtualMs, long Events, int MaxEpoch, int CommittedEntries, int Crashes, int Partitions,
    int SnapshotsCreated, int SnapshotsInstalled, int Truncations, long MessagesDropped, long MessagesDuplicated);

/// <summary>
/// A deterministic simulation of a Raft quorum: voters and observers in one process, a virtual clock,
/// and a virtual network (one priority queue of timed events). Everything random comes from one seed,
/// so a seed replays exactly. Faults: crashes (a node loses its memory and its unflushed log tail, keeps
/// its flushed log and quorum state) and restarts, partitions and heals, delays, reordering,
/// duplicated and lost messages, leader resignations. Clients append to whichever node leads; nodes
/// snapshot and delete their log prefix now and then. After every event the checker asserts: at most one
/// leader per epoch; every node's committed entries are a prefix of one global committed sequence;
/// the high watermark never goes back within an incarnation. After the faults heal, an entry appended
/// then must reach every node within a bound (liveness).
/// </summary>
public sealed class RaftSimulation
{
    private const int ObserverIdBase = 100;

    private readonly int _seed;
    private readonly SimOptions _options;
    private readonly Random _rng;
    private readonly PriorityQueue<Action, (long Time, long Seq)> _events = new();
    private readonly List<SimNode> _nodes = [];
    private readonly Dictionary<int, SimNode> _byId = [];
    private readonly HashSet<(int From, int To)> _cut = [];
    private readonly Dictionary<long, PendingRequest> _pending = [];
    private readonly StringBuilder? _fullTrace;
    private readonly string? _logRoot;

    // the checker's memory
    private readonly List<RaftEntry> _committed = [];
    private readonly Dictionary<int, int> _leaderOfEpoch = [];
    private readonly Dictionary<long, HashSet<int>> _postHealDelivered = [];

    private long _now;
    private long _seq;
    private long _eventCount;
    private long _nextValue = 1;
    private long _firstPostHealValue = long.MaxValue;
    private bool _healed;
    private bool _live;

    // network weather
    private double _dropRate;
    private double _duplicateRate;
    private int _delayMinMs = 1;
    private int _delayJitterMs = 5;

    // stats
    private int _crashes, _partitions, _snapshotsCreated, _snapshotsInstalled;
    private long _dropped, _duplicated;

    public RaftSimulation(int seed, SimOptions options)
    {
        _seed = seed;
        _options = options;
        _rng = new Random(seed);
        if (options.FullTrace) _fullTrace = new StringBuilder();
        if (options.LogDirectory is { } root) _logRoot = Path.Combine(root, string.Create(CultureInfo.InvariantCulture, $"seed-{seed}-{Guid.NewGuid():N}"));
        var voters = Enumerable.Range(1, options.Voters).ToArray();
        foreach (int id in voters) AddNode(id, voters);
        for (int i = 0; i < options.Observers; i++) AddNode(ObserverIdBase + i, voters);
    }

    public string Trace => _fullTrace?.ToString() ?? "";

    private void AddNode(int id, int[] voters)
    {
        var n = new SimNode(this, id, new RaftConfig
        {
            NodeId = id,
            Voters = voters,
            ClusterId = "sim-cluster",
            ElectionTimeoutMs = 1000,
            FetchTimeoutMs = 2000,
            RetryBackoffMs = 20,
            FetchMaxWaitMs = 500,
            FetchMaxBytes = 400,
            SnapshotChunkBytes = 96,
        });
        _nodes.Add(n);
        _byId[id] = n;
    }

    /// <summary>Runs to the liveness point; throws <see cref="SimulationFailure"/> on a broken invariant.</summary>
    public SimStats Run()
    {
        try
        {
            foreach (var n in _nodes) n.Start();
            ScheduleClient();
            ScheduleFault();
            ScheduleSnapshot();
            At(_options.FaultPhaseMs, Heal);
            long deadline = _options.FaultPhaseMs + _options.LivenessBoundMs;
            while (!_live && _events.TryDequeue(out var action, out var when))
            {
                if (when.Time > deadline)
                    Fail($"liveness: no entry appended after the faults healed (at {_options.FaultPhaseMs} ms) reached every node by {deadline} ms; "
                        + $"states: {string.Join("; ", _nodes.Select(n => n.Describe()))}");
                _now = when.Time;
                _eventCount++;
                action();
                Check();
            }
            if (!_live) Fail("the simulation ran out of events");
        }
        catch (SimulationFailure)
        {
            throw;
        }
        catch (Exception e)
        {
            Fail($"a node threw: {e}");
        }
        finally
        {
            foreach (var n in _nodes) n.CloseLog();
            if (_logRoot is not null && Directory.Exists(_logRoot)) Directory.Delete(_logRoot, recursive: true);
        }
        return new SimStats(_now, _eventCount, _nodes.Max(n => n.Store.Read()?.Epoch ?? 0), _committed.Count, _crashes, _partitions,
            _snapshotsCreated, _snapshotsInstalled, _nodes.Sum(n => n.TruncationCount), _dropped, _duplicated);
    }

    private void At(long time, Action action) => _events.Enqueue(action, (time, _seq++));

    /// <summary>Tracing costs more than the simulation; a failing seed is replayed with it on.</summary>
    private bool Tracing => _fullTrace is not null;

    private void Log(string line) => _fullTrace?.Append(CultureInfo.InvariantCulture, $"{_now,7} {line}\n");

    private void Fail(string message)
    {
        string bug = (_options.ForgetVotes ? "FRESHET_RAFT_BUG=forget-votes " : _options.SkipFlush ? "FRESHET_RAFT_BUG=skip-flush " : "")
            + (_options.LogDirectory is not null ? "FRESHET_RAFT_LOG=file " : "");
        throw new SimulationFailure(string.Create(CultureInfo.InvariantCulture,
            $"seed {_seed} ({_options.Voters} voters, {_options.Observers} observers) at {_now} ms: {message}\n"
            + $"replay: {bug}FRESHET_RAFT_SEED={_seed} FRESHET_RAFT_VOTERS={_options.Voters} FRESHET_RAFT_OBSERVERS={_options.Observers} "
            + $"FRESHET_RAFT_FAULT_MS={_options.FaultPhaseMs} dotnet test tests/Freshet.Metadata.Tests --filter FullyQualifiedName~RaftSimulationTests.ReplaySeed"));
    }

    // ------------------------------------------------------------------ the checker

    private void Check()
    {
        foreach (var n in _nodes)
        {
            if (n.Node is not { } node) continue;
            if (node.IsLeader)
            {
                if (_leaderOfEpoch.TryGetValue(node.Epoch, out int other) && other != n.Id)
                    Fail($"two leaders in epoch {node.Epoch}: {other} and {n.Id}");
                _leaderOfEpoch[node.Epoch] = n.Id;
            }
            if (node.HighWatermark < n.LastHighWatermark)
                Fail($"node {n.Id} high watermark went back from {n.LastHighWatermark} to {node.HighWatermark}");
            n.LastHighWatermark = node.HighWatermark;
        }
    }

    /// <summary>Every node that names a leader of an epoch names the same one (the leader itself included).</summary>
    private void OnLeaderKnown(SimNode n, int leaderId, int epoch)
    {
        if (_leaderOfEpoch.TryGetValue(epoch, out int known) && known != leaderId)
            Fail(n.Id == leaderId ? $"two leaders in epoch {epoch}: {known} and {leaderId}" : $"node {n.Id} follows {leaderId} in epoch {epoch}, whose leader is {known}");
        _leaderOfEpoch[epoch] = leaderId;
    }

    /// <summary>A node's listener saw entry number <paramref name="index"/> of its committed sequence.</summary>
    private void OnCommitted(SimNode n, int index, RaftEntry e)
    {
        if (index < _committed.Count)
        {
            var g = _committed[index];
            if (g.Offset != e.Offset || g.Epoch != e.Epoch || !g.Value.AsSpan().SequenceEqual(e.Value))
                Fail($"node {n.Id} committed {Show(e)} as entry {index}, but {Show(g)} was committed there before");
            return;
        }
        if (index != _committed.Count) Fail($"node {n.Id} committed entry {index} with only {_committed.Count} known");
        if (_committed.Count > 0 && e.Offset <= _committed[^1].Offset)
            Fail($"node {n.Id} committed offset {e.Offset} after {_committed[^1].Offset}");
        long value = ValueId(e.Value);
        if (_committed.Exists(c => ValueId(c.Value) == value)) Fail($"value {value} committed twice");
        _committed.Add(e);
    }

    private void OnDeliveredToListener(SimNode n, RaftEntry e)
    {
        long value = ValueId(e.Value);
        if (value < _firstPostHealValue) return;
        if (!_postHealDelivered.TryGetValue(value, out var nodes)) _postHealDelivered[value] = nodes = [];
        nodes.Add(n.Id);
        if (nodes.Count == _nodes.Count) _live = true;
    }

    private static string Show(RaftEntry e) => $"(offset {e.Offset}, epoch {e.Epoch}, value {ValueId(e.Value)})";

    private static long ValueId(byte[] value) => BinaryPrimitives.ReadInt64BigEndian(value);

    // ------------------------------------------------------------------ clients, snapshots, faults

    private void ScheduleClient() => At(_now + 10 + _rng.Next(140), () =>
    {
        var leaders = _nodes.Where(n => n.Node is { IsLeader: true }).ToList();
        if (leaders.Count > 0)
        {
            var n = leaders[_rng.Next(leaders.Count)];
            int count = 1 + _rng.Next(3);
            var values = new List<byte[]>(count);
            for (int i = 0; i < count; i++)
            {
                var v = new byte[8 + _rng.Next(24)];
                _rng.NextBytes(v);
                BinaryPrimitives.WriteInt64BigEndian(v, _nextValue++);
                values.Add(v);
            }
            long? last = n.Node!.TryAppend(values, out int epoch);
            if (Tracing) Log($"client -> {n.Id}: append {ValueId(values[0])}..{ValueId(values[^1])} = {last?.ToString(CultureInfo.InvariantCulture) ?? "refused"} (epoch {epoch})");
            n.AfterCall();
        }
        ScheduleClient();
    });

    private void ScheduleSnapshot() => At(_now + 200 + _rng.Next(1200), () =>
    {
        var n = _nodes[_rng.Next(_nodes.Count)];
        if (n.Node is { } node && n.Listener is { } listener)
        {
            var id = node.CreateSnapshot(node.CommittedOffsetDelivered, listener.Serialize());
            if (id is not null)
            {
                _snapshotsCreated++;
                if (Tracing) Log($"node {n.Id}: snapshot {id}");
            }
        }
        ScheduleSnapshot();
    });

    private void ScheduleFault()
    {
        At(_now + 100 + _rng.Next(1400), () =>
        {
            if (_healed) return;
            switch (_rng.Next(7))
            {
                case 0:
                case 1:
                    Crash(_nodes[_rng.Next(_nodes.Count)]);
                    break;
                case 2:
                    Partition();
                    break;
                case 3:
                    var leader = _nodes.FirstOrDefault(n => n.Node is { IsLeader: true });
                    if (leader is not null) Isolate(leader);
                    break;
                case 4:
                    _dropRate = _rng.NextDouble() * 0.25;
                    _duplicateRate = _rng.NextDouble() * 0.1;
                    _delayMinMs = 1 + _rng.Next(20);
                    _delayJitterMs = _rng.Next(150);
                    if (Tracing) Log($"network: drop {_dropRate:F2}, duplicate {_duplicateRate:F2}, delay {_delayMinMs}+{_delayJitterMs} ms");
                    break;
                case 5:
                    var l = _nodes.FirstOrDefault(n => n.Node is { IsLeader: true });
                    if (l is not null)
                    {
                        if (Tracing) Log($"node {l.Id}: resign");
                        l.Node!.Resign(_now);
                        l.AfterCall();
                    }
                    break;
                case 6:
                    _cut.Clear();
                    if (Tracing) Log("network: healed");
                    break;
            }
            ScheduleFault();
        });
    }

    private void Crash(SimNode n)
    {
        if (n.Node is null) return;
        _crashes++;
        n.Crash(_rng);
        if (Tracing) Log($"node {n.Id}: crash (log end now {n.Log.EndOffset})");
        At(_now + 50 + _rng.Next(3000), () =>
        {
            if (n.Node is not null) return;
            n.Start();
            if (Tracing) Log($"node {n.Id}: restart");
        });
    }

    private void Partition()
    {
        _partitions++;
        _cut.Clear();
        var side = _nodes.ToDictionary(n => n.Id, _ => _rng.Next(2) == 0);
        foreach (var a in _nodes)
            foreach (var b in _nodes)
                if (side[a.Id] != side[b.Id]) _cut.Add((a.Id, b.Id));
        if (Tracing) Log($"network: partition [{string.Join(",", _nodes.Where(n => side[n.Id]).Select(n => n.Id))}] | [{string.Join(",", _nodes.Where(n => !side[n.Id]).Select(n => n.Id))}]");
        At(_now + 200 + _rng.Next(4000), () =>
        {
            if (_cut.Count == 0) return;
            _cut.Clear();
            if (Tracing) Log("network: partition healed");
        });
    }

    private void Isolate(SimNode n)
    {
        _partitions++;
        foreach (var other in _nodes)
        {
            if (other == n) continue;
            _cut.Add((n.Id, other.Id));
            _cut.Add((other.Id, n.Id));
        }
        if (Tracing) Log($"network: isolate node {n.Id}");
    }

    private void Heal()
    {
        _healed = true;
        _cut.Clear();
        _dropRate = 0;
        _duplicateRate = 0;
        _delayMinMs = 1;
        _delayJitterMs = 10;
        _firstPostHealValue = _nextValue;
        foreach (var n in _nodes)
            if (n.Node is null) n.Start();
        if (Tracing) Log("all faults healed");
    }

    // ------------------------------------------------------------------ the network

    private sealed record PendingRequest(SimNode From, int FromIncarnation, int To, object Request);

    private void Send(SimNode from, int to, object request)
    {
        long id = _seq++;
        _pending[id] = new PendingRequest(from, from.Incarnation, to, request);
        if (Tracing) Log($"{from.Id} -> {to}: {Describe(request)}");
        At(_now + from.Config.RequestTimeoutMs, () => CompleteRequest(id, null));
        Transmit(from.Id, to, request, msg =>
        {
            if (!_byId.TryGetValue(to, out var target) || target.Node is not { } node) return;
            int incarnation = target.Incarnation;
            node.HandleRequest(from.Id, msg, _now, response =>
            {
                if (target.Incarnation != incarnation) return; // the process that parked it died
                Transmit(to, from.Id, response, r => CompleteRequest(id, r));
            });
            target.AfterCall();
        });
    }

    private void CompleteRequest(long id, object? response)
    {
        if (!_pending.Remove(id, out var p)) return; // answered already, or timed out
        if (p.From.Node is not { } node || p.From.Incarnation != p.FromIncarnation) return;
        if (Tracing) Log($"{p.To} => {p.From.Id}: {(response is null ? "no answer to " + Describe(p.Request) : Describe(response))}");
        node.HandleResponse(p.To, p.Request, response, _now);
        p.From.AfterCall();
    }

    /// <summary>One message across the network: maybe lost, maybe twice, after a random delay (so reordered).</summary>
    private void Transmit(int from, int to, object message, Action<object> deliver)
    {
        // A file-backed leader answers fetches with a file range the transport would sendfile; on this
        // network the bytes are read now, when the real transport would send them.
        if (message is FetchResponse fr && RaftMessages.Partition(fr) is { Records: FileRecords file } fp) fp.Records = new RecordSet(file.ReadAll());
        if (_cut.Contains((from, to)) || _rng.NextDouble() < _dropRate)
        {
            _dropped++;
            return;
        }
        int copies = _rng.NextDouble() < _duplicateRate ? 2 : 1;
        if (copies == 2) _duplicated++;
        for (int i = 0; i < copies; i++)
        {
            object copy = _options.Serialize ? RoundTrip(message) : message;
            At(_now + _delayMinMs + _rng.Next(_delayJitterMs + 1), () =>
            {
                if (_cut.Contains((from, to))) return;
                deliver(copy);
            });
        }
    }

    /// <summary>Through the generated codecs at the latest version, as the bytes on a real wire would go.</summary>
    internal static object RoundTrip(object message) => message switch
    {
        VoteRequest m => MessageExtensions.Parse<VoteRequest>(m.ToBytes(VoteRequest.HighestVersion), VoteRequest.HighestVersion),
        VoteResponse m => MessageExtensions.Parse<VoteResponse>(m.ToBytes(VoteResponse.HighestVersion), VoteResponse.HighestVersion),
        BeginQuorumEpochRequest m => MessageExtensions.Parse<BeginQuorumEpochRequest>(m.ToBytes(BeginQuorumEpochRequest.HighestVersion), BeginQuorumEpochRequest.HighestVersion),
        BeginQuorumEpochResponse m => MessageExtensions.Parse<BeginQuorumEpochResponse>(m.ToBytes(BeginQuorumEpochResponse.HighestVersion), BeginQuorumEpochResponse.HighestVersion),
        EndQuorumEpochRequest m => MessageExtensions.Parse<EndQuorumEpochRequest>(m.ToBytes(EndQuorumEpochRequest.HighestVersion), EndQuorumEpochRequest.HighestVersion),
        EndQuorumEpochResponse m => MessageExtensions.Parse<EndQuorumEpochResponse>(m.ToBytes(EndQuorumEpochResponse.HighestVersion), EndQuorumEpochResponse.HighestVersion),
        FetchRequest m => MessageExtensions.Parse<FetchRequest>(m.ToBytes(FetchRequest.HighestVersion), FetchRequest.HighestVersion),
        FetchResponse m => MessageExtensions.Parse<FetchResponse>(m.ToBytes(FetchResponse.HighestVersion), FetchResponse.HighestVersion),
        FetchSnapshotRequest m => MessageExtensions.Parse<FetchSnapshotRequest>(m.ToBytes(FetchSnapshotRequest.HighestVersion), FetchSnapshotRequest.HighestVersion),
        FetchSnapshotResponse m => MessageExtensions.Parse<FetchSnapshotResponse>(m.ToBytes(FetchSnapshotResponse.HighestVersion), FetchSnapshotResponse.HighestVersion),
        _ => throw new ArgumentException($"unexpected message {message.GetType().Name}", nameof(message)),
    };

    private string Describe(object m)
    {
        return m switch
        {
            VoteRequest r when RaftMessages.Partition(r) is { } p => $"Vote(epoch {p.CandidateEpoch}, candidate {p.CandidateId}, last {p.LastOffset}@{p.LastOffsetEpoch})",
            VoteResponse r when RaftMessages.Partition(r) is { } p => $"VoteResponse(granted {p.VoteGranted}, error {p.ErrorCode}, leader {p.LeaderId}@{p.LeaderEpoch})",
            BeginQuorumEpochRequest r when RaftMessages.Partition(r) is { } p => $"BeginQuorumEpoch(leader {p.LeaderId}@{p.LeaderEpoch})",
            EndQuorumEpochRequest r when RaftMessages.Partition(r) is { } p => $"EndQuorumEpoch(leader {p.LeaderId}@{p.LeaderEpoch})",
            FetchRequest r when RaftMessages.Partition(r) is { } p => $"Fetch(epoch {p.CurrentLeaderEpoch}, offset {p.FetchOffset}, last epoch {p.LastFetchedEpoch})",
            FetchResponse r when RaftMessages.Partition(r) is { } p =>
                $"FetchResponse(error {p.ErrorCode}, leader {p.CurrentLeader.LeaderId}@{p.CurrentLeader.LeaderEpoch}, hw {p.HighWatermark}, "
                + $"diverging {p.DivergingEpoch.EndOffset}@{p.DivergingEpoch.Epoch}, snapshot {p.SnapshotId.EndOffset}@{p.SnapshotId.Epoch}, {p.Records?.Length ?? 0} bytes)",
            FetchSnapshotRequest r when RaftMessages.Partition(r) is { } p => $"FetchSnapshot({p.SnapshotId.EndOffset}@{p.SnapshotId.Epoch} from {p.Position})",
            FetchSnapshotResponse r when RaftMessages.Partition(r) is { } p => $"FetchSnapshotResponse(error {p.ErrorCode}, {p.Position}+{p.UnalignedRecords?.Length ?? 0}/{p.Size})",
            _ => m.GetType().Name,
        };
    }

    // ------------------------------------------------------------------ a node and its incarnations

    private sealed class SimNode(RaftSimulation sim, int id, RaftConfig config) : IRaftTransport
    {
        private readonly string? _logDir = sim._logRoot is { } root ? Path.Combine(root, string.Create(CultureInfo.InvariantCulture, $"node-{id}")) : null;
        private long _scheduledPollAt = long.MaxValue;
        private int _truncationsBefore;

        public int Id { get; } = id;
        public RaftConfig Config { get; } = config;

        public IRaftLog Log { get; private set; } =
            sim._logRoot is { } root ? OpenFileLog(Path.Combine(root, string.Create(CultureInfo.InvariantCulture, $"node-{id}"))) : new MemoryRaftLog();

        public int TruncationCount => _truncationsBefore + Log switch
        {
            MemoryRaftLog m => m.TruncationCount,
            PartitionRaftLog p => p.TruncationCount,
            _ => 0,
        };

        /// <summary>Small segments, so that rolls and the deletion of whole segments below a snapshot happen.</summary>
        private static PartitionRaftLog OpenFileLog(string dir) => PartitionRaftLog.Open(dir, TimeProvider.System, NullLoggerFactory.Instance,
            new Dictionary<string, string> { ["segment.bytes"] = "2048" });

        public void CloseLog()
        {
            if (Log is PartitionRaftLog p) p.Dispose();
        }
        public MemoryQuorumStateStore Store { get; } = new();
        public RaftNode? Node { get; private set; }
        public SimListener? Listener { get; private set; }
        public int Incarnation { get; private set; }
        public long LastHighWatermark { get; set; }

        public void Start()
        {
            Incarnation++;
            LastHighWatermark = 0;
            Listener = new SimListener(sim, this);
            Node = new RaftNode(Config, Log, Store, this, Listener, new Random(unchecked(sim._seed * 1_000_003 + Id * 7_919 + Incarnation * 104_729)), sim._now)
            {
                TestOnlyForgetVotes = sim._options.ForgetVotes,
                TestOnlySkipFlush = sim._options.SkipFlush,
            };
            _scheduledPollAt = long.MaxValue;
            Listener.Loading = true;
            AfterCall();
            Listener.Loading = false;
        }

        public void Crash(Random rng)
        {
            Node?.Dispose();
            Node = null;
            Listener = null;
            Incarnation++;
            if (Log is MemoryRaftLog m)
            {
                m.Crash(rng);
                return;
            }
            var file = (PartitionRaftLog)Log;
            _truncationsBefore += file.TruncationCount;
            long flushed = file.FlushedEndOffset;
            string dir = file.Dir;
            file.CloseWithoutFlush();
            LoseUnflushed(dir, flushed, rng);
            Log = OpenFileLog(_logDir!);
        }

        /// <summary>
        /// What a machine crash may do to the segment files: keep the flushed batches, a random number of
        /// the unflushed ones after them, and maybe part of the next (a torn batch recovery must cut).
        /// </summary>
        private static void LoseUnflushed(string dir, long flushedEndOffset, Random rng)
        {
            var segments = Directory.EnumerateFiles(dir, "*.log")
                .Select(f => (Base: long.Parse(Path.GetFileNameWithoutExtension(f), CultureInfo.InvariantCulture), Path: f))
                .OrderBy(s => s.Base).ToList();
            var batches = new List<(int Segment, long Position, int Size)>();
            var header = new byte[RecordBatch.HeaderSize];
            for (int s = 0; s < segments.Count; s++)
            {
                using var h = File.OpenHandle(segments[s].Path);
                long length = RandomAccess.GetLength(h), pos = 0;
                while (pos + header.Length <= length && RandomAccess.Read(h, header, pos) == header.Length)
                {
                    int size = RecordBatch.PeekSize(header);
                    if (size < RecordBatch.HeaderSize || pos + size > length) break;
                    if (new RecordBatch(header).NextOffset > flushedEndOffset) batches.Add((s, pos, size));
                    pos += size;
                }
            }
            if (batches.Count == 0) return;
            int keep = rng.Next(batches.Count + 1);
            if (keep == batches.Count) return;
            var (segment, position, batchSize) = batches[keep];
            long cut = position + (rng.Next(2) == 0 ? 0 : rng.Next(1, batchSize));
            using (var f = new FileStream(segments[segment].Path, FileMode.Open)) f.SetLength(cut);
            for (int s = segment + 1; s < segments.Count; s++) File.Delete(segments[s].Path);
        }

        /// <summary>A driver polls after every call into the node, and again when the node asks.</summary>
        public void AfterCall()
        {
            if (Node is not { } node) return;
            long next = Math.Max(node.Poll(sim._now), sim._now + 1);
            if (next >= _scheduledPollAt && _scheduledPollAt > sim._now) return;
            _scheduledPollAt = next;
            int incarnation = Incarnation;
            sim.At(next, () =>
            {
                if (Incarnation != incarnation || _scheduledPollAt != next) return;
                _scheduledPollAt = long.MaxValue;
                AfterCall();
            });
        }

        public void Send<TResponse>(int toNodeId, IApiRequest<TResponse> request) where TResponse : IApiMessage, new() => sim.Send(this, toNodeId, request);

        public string Describe() => Node?.ToString() ?? $"node {Id} down";
    }

    /// <summary>The state machine of the simulation: the committed entries, in order.</summary>
    private sealed class SimListener(RaftSimulation sim, SimNode node) : IRaftListener
    {
        private readonly List<RaftEntry> _entries = [];

        public void HandleCommit(IReadOnlyList<RaftEntry> entries)
        {
            foreach (var e in entries)
            {
                if (_entries.Count > 0 && e.Offset <= _entries[^1].Offset)
                    sim.Fail($"node {node.Id} was given offset {e.Offset} after {_entries[^1].Offset}");
                sim.OnCommitted(node, _entries.Count, e);
                _entries.Add(e);
                sim.OnDeliveredToListener(node, e);
            }
        }

        public bool Loading { get; set; }

        public void HandleLeaderChange(LeaderAndEpoch leader)
        {
            if (sim.Tracing) sim.Log($"node {node.Id}: {leader}");
            if (leader.LeaderId is { } id) sim.OnLeaderKnown(node, id, leader.Epoch);
        }

        public void HandleSnapshot(RaftSnapshot snapshot)
        {
            var entries = Deserialize(snapshot.Data.Span);
            if (entries.Count > 0 && entries[^1].Offset >= snapshot.Id.Offset)
                sim.Fail($"node {node.Id} loaded snapshot {snapshot.Id} holding offset {entries[^1].Offset}");
            _entries.Clear();
            for (int i = 0; i < entries.Count; i++)
            {
                sim.OnCommitted(node, i, entries[i]);
                _entries.Add(entries[i]);
                sim.OnDeliveredToListener(node, entries[i]);
            }
            if (!Loading) sim._snapshotsInstalled++;
            if (sim.Tracing) sim.Log($"node {node.Id}: loaded snapshot {snapshot.Id} ({entries.Count} entries)");
        }

        /// <summary>All entries so far: (offset, epoch, length, value)*.</summary>
        public byte[] Serialize()
        {
            var bytes = new byte[_entries.Sum(e => 16 + e.Value.Length)];
            int pos = 0;
            foreach (var e in _entries)
            {
                BinaryPrimitives.WriteInt64BigEndian(bytes.AsSpan(pos), e.Offset);
                BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(pos + 8), e.Epoch);
                BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(pos + 12), e.Value.Length);
                e.Value.CopyTo(bytes, pos + 16);
                pos += 16 + e.Value.Length;
            }
            return bytes;
        }

        private static List<RaftEntry> Deserialize(ReadOnlySpan<byte> data)
        {
            var list = new List<RaftEntry>();
            int pos = 0;
            while (pos < data.Length)
            {
                long offset = BinaryPrimitives.ReadInt64BigEndian(data[pos..]);
                int epoch = BinaryPrimitives.ReadInt32BigEndian(data[(pos + 8)..]);
                int length = BinaryPrimitives.ReadInt32BigEndian(data[(pos + 12)..]);
                list.Add(new RaftEntry(offset, epoch, data.Slice(pos + 16, length).ToArray()));
                pos += 16 + length;
            }
            return list;
        }
    }
}
