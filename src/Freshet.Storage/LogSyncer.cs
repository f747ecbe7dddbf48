using System.Collections.Concurrent;

namespace Freshet.Storage;

/// <summary>
/// Group commit for deferred fsyncs: appends hand their pending sync to one dedicated thread,
/// which takes everything queued, syncs each log once (covering every append queued before it
/// started), and completes the waiters. Blocking fsyncs therefore never occupy thread-pool
/// threads (which starves every other request when appends arrive faster than the pool grows),
/// and a burst of appends costs one fsync per partition, not one per append.
/// </summary>
public sealed class LogSyncer : IDisposable
{
    private readonly BlockingCollection<(PartitionLog Log, LogAppendResult Result, TaskCompletionSource<LogAppendResult> Done)> _queue = new();
    private readonly Thread _thread;

    public LogSyncer()
    {
        _thread = new Thread(Run) { IsBackground = true, Name = "freshet-log-sync" };
        _thread.Start();
    }

    public Task<LogAppendResult> Enqueue(PartitionLog log, LogAppendResult result)
    {
        var done = new TaskCompletionSource<LogAppendResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            _queue.Add((log, result, done));
        }
        catch (InvalidOperationException)
        {
            // Shutting down: sync on the caller's thread instead.
            done.SetResult(log.SyncNow(result));
        }
        return done.Task;
    }

    private void Run()
    {
        var batch = new List<(PartitionLog Log, LogAppendResult Result, TaskCompletionSource<LogAppendResult> Done)>();
        foreach (var first in _queue.GetConsumingEnumerable())
        {
            batch.Clear();
            batch.Add(first);
            while (_queue.TryTake(out var more)) batch.Add(more);
            // One pass per log: the first sync covers every append written before it began, so the
            // later ones of the same log find nothing left to do.
            foreach (var (log, result, done) in batch) done.TrySetResult(log.SyncNow(result));
        }
    }

    public void Dispose()
    {
        _queue.CompleteAdding();
        _thread.Join(TimeSpan.FromSeconds(30));
        _queue.Dispose();
    }
}
