using Freshet.Metadata.Controller;
using Freshet.Metadata.Raft;
using Microsoft.Extensions.Logging;
using static Freshet.Metadata.Log.MetadataRecordSerde;

namespace Freshet.Metadata.Log;

/// <summary>
/// The metadata log as the Raft quorum keeps it: an append is a commit (it returns once a
/// majority of voters has the batch), made only by the quorum's leader. Replay is not read from
/// here: committed records reach the controller through the <see cref="MetadataLoader"/>.
/// An append on a node whose quorum driver stopped (its metadata log failed) fails at once with
/// NOT_CONTROLLER, as when leadership moves: the node is about to halt, and brokers retry with the
/// controller the other voters elect.
/// </summary>
public sealed class RaftMetadataLog(RaftDriver raft) : IMetadataLog
{
    public long EndOffset => raft.State.LogEndOffset;

    public IEnumerable<(long Offset, VersionedRecord Record)> ReadAll() => [];

    public long Append(IReadOnlyList<VersionedRecord> records)
    {
        var values = records.Select(r => Serialize(r.Type, r.Version, r.Message)).ToList();
        try
        {
            return raft.AppendAsync(values).GetAwaiter().GetResult();
        }
        catch (NotLeaderException e)
        {
            throw new NotControllerException(e.Message);
        }
        catch (RaftStoppedException e)
        {
            throw new NotControllerException(e.Message);
        }
    }
}

/// <summary>When a node writes a snapshot of its metadata image (Kafka's metadata.log.max.* settings).</summary>
/// <param name="MaxBytesBetweenSnapshots">metadata.log.max.record.bytes.between.snapshots: record bytes committed since the last snapshot that trigger the next.</param>
/// <param name="MaxIntervalMs">metadata.log.max.snapshot.interval.ms: a snapshot at least this often while records arrive (0 turns the interval off).</param>
public sealed record SnapshotPolicy(long MaxBytesBetweenSnapshots, long MaxIntervalMs)
{
    public static readonly SnapshotPolicy KafkaDefaults = new(20 * 1024 * 1024, 60 * 60 * 1000);
}

/// <summary>
/// Feeds what the quorum commits to the controller's image, in order, on its own thread (the
/// Raft thread never waits for the controller), and makes this node's controller active once it
/// leads the quorum and has applied everything committed before its epoch began.
/// <para>
/// It also bounds the metadata log: every node (voter or observer) writes a snapshot of its own
/// image once enough records were committed since the last one (<see cref="SnapshotPolicy"/>), and
/// the Raft log then drops the prefix the snapshot covers. A node that starts from a snapshot, or
/// falls behind the leader's log start and downloads one, gets its image replaced by it.
/// </para>
/// Failure policy: records that cannot be applied (a listener or the image builder throws) leave this
/// node's view of the metadata unknown, so the loader stops, logs why and completes
/// <see cref="Failed"/>; its owner halts the node (Kafka treats metadata loading faults as fatal).
/// A snapshot that cannot be written is logged and tried again later.
/// </summary>
public sealed partial class MetadataLoader : IRaftListener, IDisposable
{
    /// <summary>Pause after a snapshot attempt that could not be taken (nothing delivered yet, or it failed).</summary>
    private const long RetryMs = 1000;

    private readonly QuorumController _controller;
    private readonly RaftDriver _raft;
    private readonly bool _canLead;
    private readonly SnapshotPolicy _policy;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly System.Collections.Concurrent.BlockingCollection<Action> _queue = [];
    private readonly Thread _thread;
    private readonly TaskCompletionSource _caughtUp = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<Exception> _failed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Loader-thread state.
    private long _bytesSinceSnapshot;
    private long _lastSnapshotMs;
    private long _nextAttemptMs;
    private int _appliedEpoch;
    private bool _snapshotInFlight;

    /// <param name="canLead">This node is a voter (a controller); observers (broker-only nodes) only replay.</param>
    public MetadataLoader(QuorumController controller, RaftDriver raft, bool canLead, SnapshotPolicy policy, TimeProvider time, ILogger<MetadataLoader> logger)
    {
        _controller = controller;
        _raft = raft;
        _canLead = canLead;
        _policy = policy;
        _time = time;
        _logger = logger;
        _lastSnapshotMs = NowMs;
        _thread = new Thread(Run) { IsBackground = true, Name = "metadata-loader" };
        _thread.Start();
    }

    /// <summary>Completes once this node has applied everything committed when it first learned the high watermark.</summary>
    public Task CaughtUp => _caughtUp.Task;

    /// <summary>Completes, with the reason, when committed metadata could not be applied and the loader stopped.</summary>
    public Task<Exception> Failed => _failed.Task;

    /// <summary>Snapshots this node wrote since it started (tests, operators' logs).</summary>
    public int SnapshotsWritten => Volatile.Read(ref _snapshotsWritten);

    private int _snapshotsWritten;

    private long NowMs => _time.GetTimestamp() / Math.Max(1, _time.TimestampFrequency / 1000);

    public void HandleCommit(IReadOnlyList<RaftEntry> entries)
    {
        var records = new List<(long, VersionedRecord)>(entries.Count);
        long bytes = 0;
        foreach (var e in entries)
        {
            records.Add((e.Offset, Deserialize(e.Value)));
            bytes += e.Value.Length;
        }
        int epoch = entries.Count > 0 ? entries[^1].Epoch : 0;
        Enqueue(() =>
        {
            _controller.ApplyCommitted(records);
            _bytesSinceSnapshot += bytes;
            _appliedEpoch = epoch;
            MaybeSnapshot();
        });
    }

    public void HandleLeaderChange(LeaderAndEpoch leader) => Enqueue(() => { });

    /// <summary>
    /// Decoded here, on the Raft thread, so a corrupt snapshot stops the node's quorum participation
    /// (with the reason logged) instead of being half applied.
    /// </summary>
    public void HandleSnapshot(RaftSnapshot snapshot)
    {
        var records = MetadataSnapshot.Read(snapshot.Data);
        Enqueue(() =>
        {
            _controller.LoadSnapshot(snapshot.Id.Offset, records);
            _bytesSinceSnapshot = 0;
            _appliedEpoch = snapshot.Id.Epoch;
            _lastSnapshotMs = NowMs;
        });
    }

    /// <summary>Writes a snapshot of the image when the policy says so (loader thread).</summary>
    private void MaybeSnapshot()
    {
        if (_snapshotInFlight || _bytesSinceSnapshot == 0 || _raft.Failed.IsCompleted) return;
        long now = NowMs;
        if (now < _nextAttemptMs) return;
        bool due = _bytesSinceSnapshot >= _policy.MaxBytesBetweenSnapshots
            || (_policy.MaxIntervalMs > 0 && now - _lastSnapshotMs >= _policy.MaxIntervalMs);
        if (!due) return;
        var image = _controller.Image;
        if (image.Offset < 0) return;
        long end = image.Offset + 1;
        byte[] data = MetadataSnapshot.Write(image, _appliedEpoch, _time.GetUtcNow().ToUnixTimeMilliseconds());
        long bytes = _bytesSinceSnapshot;
        _snapshotInFlight = true;
        _raft.InvokeAsync((node, _) => end <= node.CommittedOffsetDelivered ? node.CreateSnapshot(end, data) : null)
            .ContinueWith(t => Enqueue(() =>
            {
                _snapshotInFlight = false;
                if (t.IsCompletedSuccessfully && t.Result is { } id)
                {
                    _bytesSinceSnapshot = Math.Max(0, _bytesSinceSnapshot - bytes);
                    _lastSnapshotMs = NowMs;
                    Interlocked.Increment(ref _snapshotsWritten);
                    LogSnapshotWritten(_logger, id.Offset, id.Epoch, data.Length, bytes);
                }
                else
                {
                    if (t.Exception is { } e) LogSnapshotFailed(_logger, end, e.GetBaseException().Message);
                    _nextAttemptMs = NowMs + RetryMs;
                }
            }), TaskScheduler.Default);
    }

    /// <summary>Queues work for the loader's thread; dropped once the loader stopped (failed or disposed).</summary>
    private void Enqueue(Action work)
    {
        try
        {
            _queue.Add(work);
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
        {
        }
    }

    private void Run()
    {
        while (!_queue.IsCompleted)
        {
            try
            {
                if (_queue.TryTake(out var work, 100)) work();
                if (_queue.Count > 0) continue;
                var state = _raft.State;
                // Everything delivered so far is applied (the queue is empty) and the delivery has reached the high watermark.
                if (state.HighWatermark > 0 && state.Delivered >= state.HighWatermark) _caughtUp.TrySetResult();
                bool lead = _canLead && state.IsLeader && state.LeaderEpochStartEnd >= 0 && state.Delivered >= state.LeaderEpochStartEnd;
                if (lead && !_controller.IsActive) _controller.BecomeActive();
                else if (!state.IsLeader && _controller.IsActive) _controller.BecomeStandby();
                MaybeSnapshot();
            }
            catch (InvalidOperationException) when (_queue.IsAddingCompleted)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (NotControllerException)
            {
                // Leadership moved while activating: the next round sees it.
            }
#pragma warning disable CA1031 // any failure to apply committed metadata is fatal to the node: reported, never swallowed
            catch (Exception e)
#pragma warning restore CA1031
            {
                LogLoaderFailed(_logger, e);
                _queue.CompleteAdding();
                _failed.TrySetResult(new InvalidOperationException($"applying the committed metadata failed: {e.Message}", e));
                return;
            }
        }
    }

    public void Dispose()
    {
        if (!_queue.IsAddingCompleted) _queue.CompleteAdding();
        _thread.Join(TimeSpan.FromSeconds(5));
        _queue.Dispose();
    }

    [LoggerMessage(EventId = 2210, Level = LogLevel.Information, Message = "Metadata snapshot {Offset}-{Epoch} written ({Bytes} bytes, {LogBytes} bytes of records since the previous one)")]
    private static partial void LogSnapshotWritten(ILogger logger, long offset, int epoch, int bytes, long logBytes);

    [LoggerMessage(EventId = 2212, Level = LogLevel.Critical, Message = "Applying committed metadata failed; this node's metadata loader stopped")]
    private static partial void LogLoaderFailed(ILogger logger, Exception e);

    [LoggerMessage(EventId = 2211, Level = LogLevel.Warning, Message = "Metadata snapshot up to offset {Offset} failed: {Reason}")]
    private static partial void LogSnapshotFailed(ILogger logger, long offset, string reason);
}
