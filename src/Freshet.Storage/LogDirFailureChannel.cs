using System.Collections.Concurrent;

namespace Freshet.Storage;

/// <summary>
/// The log directories this process found unusable (Kafka's LogDirFailureChannel): a write that
/// failed other than for a full disk, a write whose partial tail could not be cut off, or any failed
/// fsync marks the directory of the log concerned offline, for good (until the process restarts, as
/// in Kafka). Every log in an offline directory refuses appends, reads and syncs from then on; the
/// log manager stops writing checkpoints there and leaves no clean-shutdown marker, so the next start
/// recovers those logs. The broker reports the directories in its heartbeats (OfflineLogDirs) and the
/// controller moves their leaderships away.
///
/// <para>
/// Why an fsync failure is final: after Linux fails to write back dirty pages it may drop them or mark
/// them clean, so a later fsync that succeeds says nothing about them; the only safe view is that
/// whatever was not known durable before the failure is lost. A full disk on a write (ENOSPC from
/// write(2)) is different: the kernel refused the new bytes and left the rest of the file as it was, so
/// once the partial tail is cut off the log is exactly as before; that case stays a passing storage
/// error of the one append (the broker marks the directory offline only until appends succeed again).
/// </para>
/// </summary>
public sealed class LogDirFailureChannel
{
    private readonly ConcurrentDictionary<string, LogDirState> _dirs = new(StringComparer.Ordinal);
    private volatile int _offlineCount;

    /// <summary>
    /// Raised once per directory when it goes offline, with its path and the reason, on the thread that
    /// found the failure (which may hold a log's locks: handlers only signal, they never call into the log).
    /// </summary>
    public event Action<string, string>? DirectoryFailed;

    /// <summary>The offline log directories (full paths); empty, without allocating, while there are none.</summary>
    public IReadOnlyList<string> Offline => _offlineCount == 0 ? [] : [.. _dirs.Values.Where(d => d.IsOffline).Select(d => d.Path).Order(StringComparer.Ordinal)];

    /// <summary>Whether <paramref name="logDir"/> is offline.</summary>
    public bool IsOffline(string logDir) => _offlineCount > 0 && _dirs.TryGetValue(Normalize(logDir), out var d) && d.IsOffline;

    /// <summary>Why <paramref name="logDir"/> went offline; null while it is online.</summary>
    public string? FailureOf(string logDir) => _dirs.TryGetValue(Normalize(logDir), out var d) ? d.Failure : null;

    /// <summary>Takes <paramref name="logDir"/> offline (a failure outside any one log, e.g. a checkpoint write). True the first time.</summary>
    public bool MarkOffline(string logDir, string reason) => For(logDir).MarkOffline(reason);

    /// <summary>The shared state of one log directory, which every log in it checks with one volatile read.</summary>
    internal LogDirState For(string logDir) => _dirs.GetOrAdd(Normalize(logDir), p => new LogDirState(this, p));

    internal void OnOffline(LogDirState dir, string reason)
    {
        Interlocked.Increment(ref _offlineCount);
        DirectoryFailed?.Invoke(dir.Path, reason);
    }

    /// <summary>Full path without a trailing separator, so "/data/" and "/data" name the same log directory.</summary>
    internal static string Normalize(string dir) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir));
}

/// <summary>One log directory's health: online until its first permanent failure (see <see cref="LogDirFailureChannel"/>).</summary>
internal sealed class LogDirState(LogDirFailureChannel channel, string path)
{
    private string? _failure;

    public string Path { get; } = path;

    public bool IsOffline => Volatile.Read(ref _failure) is not null;

    public string? Failure => Volatile.Read(ref _failure);

    public bool MarkOffline(string reason)
    {
        if (Interlocked.CompareExchange(ref _failure, reason, null) is not null) return false;
        channel.OnOffline(this, reason);
        return true;
    }
}
