namespace Freshet.Broker.Replication;

/// <summary>
/// Wakes long-polling fetches and waiting acks=all produces when a partition's high watermark
/// (or end offset) moves. A waiter takes <see cref="Next"/>; <see cref="Pulse"/> completes it and
/// arms a fresh one, so no waiter list is kept and a pulse with nobody waiting costs one allocation.
/// </summary>
public sealed class PartitionSignal
{
    private TaskCompletionSource _tcs = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes at the next pulse.</summary>
    public Task Next => Volatile.Read(ref _tcs).Task;

    public void Pulse()
    {
        var old = Interlocked.Exchange(ref _tcs, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        old.TrySetResult();
    }
}
