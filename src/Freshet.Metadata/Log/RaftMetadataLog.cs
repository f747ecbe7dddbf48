using Freshet.Metadata.Controller;
using Freshet.Metadata.Raft;
using static Freshet.Metadata.Log.MetadataRecordSerde;

namespace Freshet.Metadata.Log;

/// <summary>
/// The metadata log as the Raft quorum keeps it: an append is a commit (it returns once a
/// majority of voters has the batch), made only by the quorum's leader. Replay is not read from
/// here: committed records reach the controller through the <see cref="MetadataLoader"/>.
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
    }
}

/// <summary>
/// Feeds what the quorum commits to the controller's image, in order, on its own thread (the
/// Raft thread never waits for the controller), and makes this node's controller active once it
/// leads the quorum and has applied everything committed before its epoch began.
/// </summary>
public sealed class MetadataLoader : IRaftListener, IDisposable
{
    private readonly QuorumController _controller;
    private readonly Func<RaftDriver.RaftState> _raft;
    private readonly bool _canLead;
    private readonly System.Collections.Concurrent.BlockingCollection<Action> _queue = [];
    private readonly Thread _thread;
    private readonly TaskCompletionSource _caughtUp = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <param name="canLead">This node is a voter (a controller); observers (broker-only nodes) only replay.</param>
    public MetadataLoader(QuorumController controller, Func<RaftDriver.RaftState> raft, bool canLead)
    {
        _controller = controller;
        _raft = raft;
        _canLead = canLead;
        _thread = new Thread(Run) { IsBackground = true, Name = "metadata-loader" };
        _thread.Start();
    }

    /// <summary>Completes once this node has applied everything committed when it first learned the high watermark.</summary>
    public Task CaughtUp => _caughtUp.Task;

    public void HandleCommit(IReadOnlyList<RaftEntry> entries)
    {
        var records = entries.Select(e => (e.Offset, Deserialize(e.Value))).ToList();
        _queue.Add(() => _controller.ApplyCommitted(records));
    }

    public void HandleLeaderChange(LeaderAndEpoch leader) => _queue.Add(() => { });

    public void HandleSnapshot(RaftSnapshot snapshot) =>
        throw new NotSupportedException("metadata snapshots are not written yet, so none can be loaded");

    private void Run()
    {
        while (!_queue.IsCompleted)
        {
            try
            {
                if (_queue.TryTake(out var work, 100)) work();
                if (_queue.Count > 0) continue;
                var state = _raft();
                // Everything delivered so far is applied (the queue is empty) and the delivery has reached the high watermark.
                if (state.HighWatermark > 0 && state.Delivered >= state.HighWatermark) _caughtUp.TrySetResult();
                bool lead = _canLead && state.IsLeader && state.LeaderEpochStartEnd >= 0 && state.Delivered >= state.LeaderEpochStartEnd;
                if (lead && !_controller.IsActive) _controller.BecomeActive();
                else if (!state.IsLeader && _controller.IsActive) _controller.BecomeStandby();
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
        }
    }

    public void Dispose()
    {
        _queue.CompleteAdding();
        _thread.Join(TimeSpan.FromSeconds(5));
        _queue.Dispose();
    }
}
