namespace Freshet.Broker.Replication;

/// <summary>
/// Which log directories this broker could not write to (a disk error, a full disk), as its appends
/// find out: a failed append marks the partition's directory offline, a later successful append to the
/// same directory brings it back. The broker's heartbeats report the offline ones (OfflineLogDirs), and
/// the controller moves leaderships and ISR places away meanwhile. Every append reports here, so the
/// common case (a success while nothing is offline) is one volatile read.
/// </summary>
public sealed class LogDirHealth
{
    private readonly Lock _lock = new();
    private readonly HashSet<string> _offline = new(StringComparer.Ordinal);
    private volatile int _offlineCount;

    /// <summary>Offline log directories (their paths).</summary>
    public IReadOnlyList<string> Offline
    {
        get
        {
            if (_offlineCount == 0) return [];
            lock (_lock) return [.. _offline];
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
