namespace Freshet.Broker.Replication;

/// <summary>
/// Wakes long-polling fetches and waiting acks=all produces when a partition's high watermark
/// (or end offset) moves. A waiter notes <see cref="Version"/> before it reads the log, then
/// registers with that version: if a pulse came in between, registration fails and the waiter
/// reads again at once, so no update is ever missed. A pulse with nobody waiting costs an
/// increment and an uncontended lock, and allocates nothing.
/// </summary>
public sealed class PartitionSignal
{
    private readonly Lock _lock = new();
    private List<DataWaiter>? _waiters;
    private long _version;

    /// <summary>Changes at every pulse.</summary>
    public long Version => Volatile.Read(ref _version);

    public void Pulse()
    {
        List<DataWaiter>? waiters;
        lock (_lock)
        {
            _version++;
            waiters = _waiters;
            _waiters = null;
        }
        if (waiters is null) return;
        foreach (var w in waiters) w.Wake();
    }

    /// <summary>Registers <paramref name="waiter"/> unless the signal pulsed since <paramref name="seenVersion"/> (then false: read again).</summary>
    public bool Register(DataWaiter waiter, long seenVersion)
    {
        lock (_lock)
        {
            if (_version != seenVersion) return false;
            (_waiters ??= []).Add(waiter);
            return true;
        }
    }

    public void Unregister(DataWaiter waiter)
    {
        lock (_lock) _waiters?.Remove(waiter);
    }
}

/// <summary>One waiting request: woken by the first pulse of any partition it registered with.</summary>
public sealed class DataWaiter
{
    private readonly TaskCompletionSource _woken = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task Woken => _woken.Task;

    public void Wake() => _woken.TrySetResult();

    /// <summary>
    /// Waits until one of <paramref name="signals"/> pulses after the versions in <paramref name="seen"/>
    /// were read, the timeout passes, or <paramref name="ct"/> fires. Returns at once if one already has.
    /// Consumer fetches and acks=all produces wait on <see cref="Partition.Signal"/> (the high watermark),
    /// follower fetches on <see cref="Partition.EndSignal"/> (log growth).
    /// </summary>
    public static async Task WaitAsync(IReadOnlyList<PartitionSignal> signals, long[] seen, int timeoutMs, CancellationToken ct)
    {
        if (timeoutMs <= 0 || signals.Count == 0) return;
        var waiter = new DataWaiter();
        int registered = 0;
        for (; registered < signals.Count; registered++)
        {
            if (!signals[registered].Register(waiter, seen[registered]))
            {
                waiter.Wake();
                break;
            }
        }
        try
        {
            if (!waiter.Woken.IsCompleted) await waiter.Woken.WaitAsync(TimeSpan.FromMilliseconds(timeoutMs), ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
        }
        finally
        {
            for (int i = 0; i < registered; i++) signals[i].Unregister(waiter);
        }
    }

    /// <summary>The current versions of <paramref name="signals"/>, read before looking at the logs they stand for.</summary>
    public static long[] Snapshot(IReadOnlyList<PartitionSignal> signals)
    {
        var v = new long[signals.Count];
        for (int i = 0; i < v.Length; i++) v[i] = signals[i].Version;
        return v;
    }
}
