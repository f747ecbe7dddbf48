using Freshet.Storage;

namespace Freshet.Broker.Replication;

/// <summary>
/// Which log directories this broker cannot write to, for its heartbeats (OfflineLogDirs); the
/// controller moves leaderships and ISR places away meanwhile. Two kinds: a full disk, as appends find
/// out (a failed append marks the partition's directory offline, a later successful append to the same
/// directory brings it back), and a failed directory (<see cref="LogDirFailureChannel"/>: a failed
/// fsync, or a write that failed otherwise), offline until the broker restarts. Every append reports
/// here, so the common case (a success while nothing is offline) is one volatile read.
/// </summary>
public sealed class LogDirHealth(LogDirFailureChannel? failures = null)
{
    private readonly Lock _lock = new();
    private readonly HashSet<string> _offline = new(StringComparer.Ordinal);
    private volatile int _offlineCount;

    /// <summary>Offline log directories (their paths): full ones and failed ones.</summary>
    public IReadOnlyList<string> Offline
    {
        get
        {
            var failed = failures?.Offline ?? [];
            if (_offlineCount == 0) return failed;
            lock (_lock) return [.. _offline.Union(failed, StringComparer.Ordinal)];
        }
    }

    /// <summary>Records the outcome of an append to a partition whose directory is <paramref name="partitionDir"/>.</summary>
    public void Report(string partitionDir, bool storageError)
    {
        if (!storageError && _offlineCount == 0) return;
        string logDir = Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(partitionDir)) ?? partitionDir;
        lock (_lock)
        {
            if (storageError) _offline.Add(logDir);
            else _offline.Remove(logDir);
            _offlineCount = _offline.Count;
        }
    }
}
