using System.Collections.Concurrent;
using Freshet.Protocol.Wire;
using Microsoft.Extensions.Logging;

namespace Freshet.Metadata.Raft;

/// <summary>
/// Runs a <see cref="RaftNode"/> for real: one dedicated thread owns the node and runs, in order,
/// the requests other nodes send, the responses to what it sent, appends, and its timers (Poll);
/// the network and the waiting callers never touch the node. Requests the node sends go out
/// through the inter-node client (<see cref="INodeClient"/>, typed by the request) and come back
/// as HandleResponse, or as a failure after the request timeout. Appends complete when the high
/// watermark passes them, or fail when this node stops leading first.
/// <para>
/// Failure policy: the node's log and quorum-state file must never be half-written under a running
/// node (Raft cannot go on with a forgotten vote or a log it is unsure of), so any exception out of the
/// node (an append, flush, truncation, snapshot or quorum-state write that failed, or a bug) stops the
/// driver for good: it publishes that it leads nothing, fails every caller waiting on it and every
/// later one at once with <see cref="RaftStoppedException"/> (nobody waits on work no thread will
/// run), and completes <see cref="Failed"/> with the reason. The owner of the driver must then halt
/// the node (Kafka halts the process on a metadata log failure); on restart the log recovers from
/// what is on disk, and the other voters elect a leader meanwhile.
/// </para>
/// </summary>
public sealed partial class RaftDriver : IRaftTransport, IDisposable
{
    private readonly RaftConfig _config;
    private readonly INodeClient _nodes;
    private readonly Func<short, short> _versionOf;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly BlockingCollection<Work> _queue = new(new ConcurrentQueue<Work>());
    private readonly List<(long Offset, int Epoch, TaskCompletionSource<long> Done)> _appendWaiters = [];
    /// <summary>Requests from other nodes the node has not answered yet (parked fetches): failed if the driver stops.</summary>
    private readonly HashSet<TaskCompletionSource<object>> _unanswered = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource<Exception> _failed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Thread _thread;
    private RaftNode _node = null!;
    private volatile RaftState _state = new(new LeaderAndEpoch(null, 0), false, 0, 0, 0, -1, 0);
    /// <summary>Set once the driver stopped (failed or disposed): what every later caller is failed with.</summary>
    private volatile Exception? _stopped;

    /// <summary>Work for the node's thread, and how to fail its caller when it will never run (or threw).</summary>
    private readonly record struct Work(Action Run, Action<Exception>? Fail);

    /// <summary>What callers may read without going through the node's thread.</summary>
    /// <param name="LeaderEpochStartEnd">While leading: the log end right after this epoch's first entry (committing it commits every earlier epoch); -1 otherwise.</param>
    /// <param name="Delivered">Offsets below this were handed to the listener.</param>
    public sealed record RaftState(LeaderAndEpoch Leader, bool IsLeader, long HighWatermark, long LogEndOffset, int Epoch, long LeaderEpochStartEnd, long Delivered);

    /// <param name="nodes">The client to the other voters (Raft's own connections: see FreshetServer).</param>
    /// <param name="versionOf">The version to send an API at, by API key (the highest this node serves: the voters run the same software).</param>
    public RaftDriver(RaftConfig config, INodeClient nodes, Func<short, short> versionOf, TimeProvider time, ILogger<RaftDriver> logger)
    {
        _config = config;
        _nodes = nodes;
        _versionOf = versionOf;
        _time = time;
        _logger = logger;
        _thread = new Thread(Run) { IsBackground = true, Name = $"raft-{config.NodeId}" };
    }

    public RaftState State => _state;

    /// <summary>
    /// Completes, with the reason, when the node stopped because its log, its quorum-state file or its
    /// own code failed (never on <see cref="Dispose"/>): the node can no longer take part in the quorum.
    /// </summary>
    public Task<Exception> Failed => _failed.Task;

    /// <summary>Milliseconds on the monotonic clock (Raft's timers must not jump with the wall clock).</summary>
    public long NowMs => _time.GetTimestamp() / Math.Max(1, _time.TimestampFrequency / 1000);

    /// <summary>Creates the node (reading its quorum state and log) and starts its thread.</summary>
    public void Start(IRaftLog log, IQuorumStateStore store, IRaftListener listener, Random random)
    {
        _node = new RaftNode(_config, log, store, this, listener, random, NowMs);
        Publish();
        _thread.Start();
    }

    private void Run()
    {
        long nextPoll = 0;
        Work current = default;
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                long wait = Math.Max(0, nextPoll - NowMs);
                if (_queue.TryTake(out current, (int)Math.Min(wait, int.MaxValue), _stop.Token)) current.Run();
                // Drain what else is waiting before polling: bursts of fetches and responses cost one Poll.
                while (_queue.TryTake(out current)) current.Run();
                current = default;
                nextPoll = _node.Poll(NowMs);
                Publish();
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested) { }
        catch (Exception e)
        {
            // The log or the quorum-state file failed (or the node has a bug): this node can no longer take part safely.
            LogNodeFailed(_logger, _config.NodeId, e);
            var reason = new RaftStoppedException($"the metadata quorum on node {_config.NodeId} stopped: {e.Message}", e);
            current.Fail?.Invoke(reason);
            Stop(reason);
            _failed.TrySetResult(reason);
        }
    }

    /// <summary>
    /// Stops for good (on the node's thread, or after it ended): this node leads nothing from now on, and
    /// every caller waiting (queued work, appends not yet committed) or still to come is failed with
    /// <paramref name="reason"/>.
    /// </summary>
    private void Stop(Exception reason)
    {
        _stopped = reason;
        var s = _state;
        _state = s with { Leader = new LeaderAndEpoch(null, s.Epoch), IsLeader = false, LeaderEpochStartEnd = -1 };
        _stop.Cancel();
        _queue.CompleteAdding();
        while (_queue.TryTake(out var work)) work.Fail?.Invoke(reason);
        FailWaiters(reason);
    }

    /// <summary>Publishes the node's state for other threads and completes (or fails) waiting appends.</summary>
    private void Publish()
    {
        var prev = _state;
        bool leader = _node.IsLeader;
        long epochStartEnd = leader ? (prev.IsLeader && prev.Epoch == _node.Epoch ? prev.LeaderEpochStartEnd : _node.LogEndOffset) : -1;
        _state = new RaftState(_node.Leader, leader, _node.HighWatermark, _node.LogEndOffset, _node.Epoch, epochStartEnd, _node.CommittedOffsetDelivered);
        if (_appendWaiters.Count == 0) return;
        long hw = _node.HighWatermark;
        for (int i = _appendWaiters.Count - 1; i >= 0; i--)
        {
            var (offset, epoch, done) = _appendWaiters[i];
            if (hw > offset) done.TrySetResult(offset);
            else if (!leader || _node.Epoch != epoch) done.TrySetException(new NotLeaderException($"node {_config.NodeId} stopped leading epoch {epoch} before offset {offset} was committed"));
            else continue;
            _appendWaiters.RemoveAt(i);
        }
    }

    private void FailWaiters(Exception e)
    {
        foreach (var (_, _, done) in _appendWaiters) done.TrySetException(e);
        _appendWaiters.Clear();
        foreach (var done in _unanswered) done.TrySetException(e);
        _unanswered.Clear();
    }

    /// <summary>
    /// Queues <paramref name="work"/> for the node's thread; once the driver stopped, <paramref name="fail"/>
    /// runs at once instead (and for work queued but not run when it stops, or that throws).
    /// </summary>
    private void Enqueue(Action work, Action<Exception>? fail)
    {
        if (_stopped is { } stopped)
        {
            fail?.Invoke(stopped);
            return;
        }
        try
        {
            _queue.Add(new Work(work, fail));
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
        {
            // Stopped meanwhile: whatever was queued before has been failed by Stop; this is failed here.
            fail?.Invoke(_stopped ?? new RaftStoppedException($"the metadata quorum on node {_config.NodeId} is stopped", null));
        }
    }

    /// <summary>A request from another node (Vote, BeginQuorumEpoch, EndQuorumEpoch, Fetch, FetchSnapshot, DescribeQuorum).</summary>
    public Task<object> HandleRequestAsync(int fromNodeId, object request)
    {
        var done = new TaskCompletionSource<object>(TaskCreationOptions.RunContinuationsAsynchronously);
        Enqueue(() =>
        {
            _unanswered.Add(done);
            _node.HandleRequest(fromNodeId, request, NowMs, response =>
            {
                if (response is Protocol.Messages.DescribeQuorumResponse d) ToWallClock(d);
                _unanswered.Remove(done);
                done.TrySetResult(response);
            });
        }, e => done.TrySetException(e));
        return done.Task;
    }

    /// <summary>
    /// The node times replicas on the monotonic clock; admin tools expect DescribeQuorum's
    /// LastFetchTimestamp and LastCaughtUpTimestamp in milliseconds since the Unix epoch, as Kafka reports them.
    /// </summary>
    private void ToWallClock(Protocol.Messages.DescribeQuorumResponse response)
    {
        long monotonic = NowMs, wall = _time.GetUtcNow().ToUnixTimeMilliseconds();
        foreach (var p in response.Topics.SelectMany(t => t.Partitions))
        {
            foreach (var r in p.CurrentVoters.Concat(p.Observers))
            {
                if (r.LastFetchTimestamp >= 0) r.LastFetchTimestamp = wall - (monotonic - r.LastFetchTimestamp);
                if (r.LastCaughtUpTimestamp >= 0) r.LastCaughtUpTimestamp = wall - (monotonic - r.LastCaughtUpTimestamp);
            }
        }
    }

    /// <summary>
    /// Appends record values as one batch when this node leads, and completes with the last
    /// offset once the quorum has committed it; fails with <see cref="NotLeaderException"/>
    /// when it does not lead, or stops leading first (the entry may or may not end up committed);
    /// with <see cref="RaftStoppedException"/> when the driver stopped (the same uncertainty).
    /// </summary>
    public Task<long> AppendAsync(IReadOnlyList<byte[]> values)
    {
        var done = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        Enqueue(() =>
        {
            long? last = _node.TryAppend(values, out int epoch);
            if (last is null) done.TrySetException(new NotLeaderException($"node {_config.NodeId} does not lead the metadata quorum"));
            else _appendWaiters.Add((last.Value, epoch, done));
        }, e => done.TrySetException(e));
        return done.Task;
    }

    /// <summary>
    /// Runs <paramref name="action"/> on the node's thread (reads of its state, snapshots, resignation).
    /// An exception it throws goes to the caller; an I/O error (the log or the quorum-state file failed
    /// under the node, e.g. writing a snapshot) also stops the driver, as any failure of the node does.
    /// </summary>
    public Task<T> InvokeAsync<T>(Func<RaftNode, long, T> action)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        Enqueue(() =>
        {
            try { done.TrySetResult(action(_node, NowMs)); }
            catch (Exception e) when (e is not IOException) { done.TrySetException(e); }
        }, e => done.TrySetException(e));
        return done.Task;
    }

    /// <summary>IRaftTransport: called on the node's thread; the response (or failure) comes back through the queue.</summary>
    void IRaftTransport.Send<TResponse>(int toNodeId, IApiRequest<TResponse> request)
    {
        _ = SendAsync(toNodeId, request);
    }

    private async Task SendAsync<TResponse>(int toNodeId, IApiRequest<TResponse> request) where TResponse : IApiMessage, new()
    {
        TResponse? response = default;
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            timeout.CancelAfter(_config.RequestTimeoutMs);
            response = await _nodes.SendAsync(toNodeId, request, _versionOf(request.ApiKey), timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or TimeoutException or Protocol.Wire.ProtocolException)
        {
            LogSendFailed(_logger, request.GetType().Name, toNodeId, e.Message);
        }
#pragma warning disable CA1031 // the node must hear back once per send whatever went wrong, or it waits on that peer for ever
        catch (Exception e)
#pragma warning restore CA1031
        {
            LogSendFailedUnexpectedly(_logger, request.GetType().Name, toNodeId, e);
        }
        Enqueue(() => _node.HandleResponse(toNodeId, request, response, NowMs), null);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _stop.Cancel();
        if (_thread.IsAlive && Thread.CurrentThread != _thread) _thread.Join(TimeSpan.FromSeconds(10));
        if (_stopped is null) Stop(new RaftStoppedException($"the metadata quorum on node {_config.NodeId} is shut down", new ObjectDisposedException(nameof(RaftDriver))));
        _node?.Dispose();
    }

    private int _disposed;

    [LoggerMessage(EventId = 2201, Level = LogLevel.Critical, Message = "The metadata quorum on node {NodeId} stopped")]
    private static partial void LogNodeFailed(ILogger logger, int nodeId, Exception e);

    [LoggerMessage(EventId = 2202, Level = LogLevel.Debug, Message = "{Request} to node {NodeId} failed: {Reason}")]
    private static partial void LogSendFailed(ILogger logger, string request, int nodeId, string reason);

    [LoggerMessage(EventId = 2205, Level = LogLevel.Error, Message = "{Request} to node {NodeId} failed unexpectedly; treated as no answer")]
    private static partial void LogSendFailedUnexpectedly(ILogger logger, string request, int nodeId, Exception e);
}

/// <summary>
/// The metadata quorum's driver on this node stopped (its log or quorum-state file failed, or it was
/// shut down): nothing more runs on it. An append in flight may or may not end up committed by the
/// other voters.
/// </summary>
public sealed class RaftStoppedException(string message, Exception? inner) : IOException(message, inner);

/// <summary>This node does not lead the Raft quorum (or stopped leading before an append was committed).</summary>
public sealed class NotLeaderException(string message) : Exception(message);
