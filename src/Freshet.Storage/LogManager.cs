using System.Collections.Concurrent;
using Freshet.Protocol;
using Freshet.Protocol.Wire;
using Freshet.Storage.Checkpoints;
using Freshet.Storage.Cleaner;
using Freshet.Storage.Segments;
using Microsoft.Extensions.Logging;

namespace Freshet.Storage;

/// <summary>Settings of the <see cref="LogManager"/>, from the broker's configuration.</summary>
public sealed record LogManagerOptions
{
    /// <summary>log.dirs: where partition directories live (the first also holds the metadata log).</summary>
    public required IReadOnlyList<string> LogDirs { get; init; }

    /// <summary>Broker-level defaults of topic configs, keyed by the topic-level name (segment.bytes, ...).</summary>
    public IReadOnlyDictionary<string, string> TopicDefaults { get; init; } = new Dictionary<string, string>();

    public LogOptions Log { get; init; } = new();

    /// <summary>log.retention.check.interval.ms</summary>
    public long RetentionCheckIntervalMs { get; init; } = 300_000;

    /// <summary>log.flush.scheduler.interval.ms: how often flush.ms is checked.</summary>
    public long FlushCheckIntervalMs { get; init; } = 1_000;

    /// <summary>log.flush.offset.checkpoint.interval.ms (also used for the log start offset checkpoint).</summary>
    public long CheckpointIntervalMs { get; init; } = 60_000;

    /// <summary>
    /// replica.high.watermark.checkpoint.interval.ms: how often the high watermarks are saved to each
    /// directory's replication-offset-checkpoint (a restarted follower starts from there).
    /// </summary>
    public long HighWatermarkCheckpointIntervalMs { get; init; } = 5_000;

    /// <summary>producer.id.expiration.check.interval.ms</summary>
    public long ProducerExpirationCheckIntervalMs { get; init; } = 600_000;

    /// <summary>Directory names the manager must leave alone (the metadata log, managed by the quorum).</summary>
    public IReadOnlySet<string> ReservedDirNames { get; init; } = new HashSet<string> { "__cluster_metadata-0" };

    /// <summary>log.cleaner.enable: run the background cleaner thread that compacts logs with cleanup.policy=compact.</summary>
    public bool CleanerEnable { get; init; } = true;

    /// <summary>log.cleaner.backoff.ms: how long the cleaner sleeps when no log needs cleaning.</summary>
    public long CleanerBackoffMs { get; init; } = 15_000;

    /// <summary>log.cleaner.dedupe.buffer.size: memory of the cleaner's key -> offset map (24 bytes per key).</summary>
    public long CleanerDedupeBufferSize { get; init; } = 134_217_728;

    /// <summary>log.cleaner.io.buffer.load.factor: how full the key -> offset map may get.</summary>
    public double CleanerDedupeBufferLoadFactor { get; init; } = 0.9;

    /// <summary>log.cleaner.io.buffer.size: the cleaner's read and write buffer.</summary>
    public int CleanerIoBufferSize { get; init; } = 524_288;

    /// <summary>The cleaner settings these options describe.</summary>
    public LogCleanerOptions CleanerOptions => new()
    {
        DedupeBufferSize = CleanerDedupeBufferSize,
        DedupeBufferLoadFactor = CleanerDedupeBufferLoadFactor,
        IoBufferSize = CleanerIoBufferSize,
    };
}

/// <summary>
/// Owns the partition logs of this broker's log directories (Kafka's LogManager): loads and
/// recovers them at start-up, creates and deletes them, and runs the background work: retention,
/// time-based flushes, checkpoints, producer expiry, and the delayed removal of deleted segments;
/// and the log cleaner on a thread of its own (compaction, see <see cref="LogCleaner"/>), whose
/// progress per log is kept in each directory's cleaner-offset-checkpoint. A clean shutdown leaves
/// <c>.kafka_cleanshutdown</c> in each directory; without it the next start recovers every log from
/// its recovery point.
///
/// <para>
/// A log directory that failed (<see cref="Failures"/>: an fsync or write of one of its logs, or of a
/// checkpoint, failed other than for a full disk) gets no new logs, no checkpoints and, at shutdown,
/// no clean-shutdown marker, so the next start recovers its logs; its logs refuse everything meanwhile.
/// </para>
/// </summary>
public sealed partial class LogManager : IAsyncDisposable
{
    public const string CleanShutdownFile = ".kafka_cleanshutdown";
    public const string LockFile = ".lock";
    public const string DeleteDirSuffix = "-delete";

    private readonly ConcurrentDictionary<TopicPartition, PartitionLog> _logs = new();
    private readonly ConcurrentQueue<(LogSegment Segment, long DueMs)> _pendingSegmentDeletes = new();
    private readonly List<FileStream> _dirLocks = [];
    private readonly ILogger _logger;
    private readonly ILoggerFactory _loggerFactory;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stop = new();
    private readonly Dictionary<string, OffsetCheckpointFile> _cleanerCheckpoints = new(StringComparer.Ordinal);
    private Task? _background;
    private Thread? _cleanerThread;
    private int _closed;
    private volatile bool _started;

    public LogManager(LogManagerOptions options, TimeProvider time, ILoggerFactory loggerFactory)
    {
        Options = options;
        _time = time;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<LogManager>();
        Cleaner = new LogCleaner(options.CleanerOptions, time, loggerFactory.CreateLogger<LogCleaner>());
        // One instance per file: its lock keeps the cleaner thread and the checkpoint task from writing it at once.
        foreach (var dir in options.LogDirs)
            _cleanerCheckpoints[dir] = new OffsetCheckpointFile(Path.Combine(dir, OffsetCheckpointFile.CleanerOffset), options.Log.Io);
    }

    public LogManagerOptions Options { get; }

    /// <summary>The log directories found unusable (shared with every log through <see cref="LogOptions.Failures"/>).</summary>
    public LogDirFailureChannel Failures => Options.Log.Failures;

    /// <summary>The log cleaner (compaction); its background thread runs when <see cref="LogManagerOptions.CleanerEnable"/>.</summary>
    public LogCleaner Cleaner { get; }
    public IReadOnlyCollection<PartitionLog> Logs => (IReadOnlyCollection<PartitionLog>)_logs.Values;
    private long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Locks the directories, loads every log (recovering after a crash) and starts background work.</summary>
    public void Startup()
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        foreach (var dir in Options.LogDirs)
        {
            Directory.CreateDirectory(dir);
            try
            {
                _dirLocks.Add(new FileStream(Path.Combine(dir, LockFile), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
            }
            catch (IOException e)
            {
                // Release the directories locked so far: a failed start must not keep them from another manager.
                foreach (var l in _dirLocks) l.Dispose();
                _dirLocks.Clear();
                throw new IOException($"log directory {dir} is in use by another process (cannot lock {LockFile}): {e.Message}", e);
            }
        }
        var loads = new List<(string Dir, TopicPartition Tp, long Recovery, long Start, long Cleaner, long Hw, bool Clean)>();
        foreach (var dir in Options.LogDirs)
        {
            string marker = Path.Combine(dir, CleanShutdownFile);
            bool clean = File.Exists(marker);
            var recovery = new OffsetCheckpointFile(Path.Combine(dir, OffsetCheckpointFile.RecoveryPoint)).Read();
            var starts = new OffsetCheckpointFile(Path.Combine(dir, OffsetCheckpointFile.LogStartOffset)).Read();
            var cleaned = _cleanerCheckpoints[dir].Read();
            var highWatermarks = new OffsetCheckpointFile(Path.Combine(dir, OffsetCheckpointFile.Replication)).Read();
            foreach (var sub in Directory.EnumerateDirectories(dir))
            {
                string name = Path.GetFileName(sub);
                if (Options.ReservedDirNames.Contains(name)) continue;
                if (name.EndsWith(DeleteDirSuffix, StringComparison.Ordinal))
                {
                    // A deletion interrupted by a crash or shutdown: finish it.
                    TryDeleteDirectory(sub);
                    continue;
                }
                if (!TopicPartition.TryParse(name, out var tp) || TopicNames.Validate(tp.Topic) is not null) continue;
                loads.Add((sub, tp, recovery.GetValueOrDefault(tp, 0), starts.GetValueOrDefault(tp, 0), cleaned.GetValueOrDefault(tp, 0),
                    highWatermarks.GetValueOrDefault(tp, 0), clean));
            }
        }
        Parallel.ForEach(loads, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, Environment.ProcessorCount) }, l =>
        {
            var config = LogConfig.Create(Options.TopicDefaults, new Dictionary<string, string>());
            var log = PartitionLog.Open(l.Dir, l.Tp, config, Options.Log, l.Recovery, l.Start, l.Clean, _time,
                _loggerFactory.CreateLogger<PartitionLog>(), ScheduleSegmentDelete);
            log.SetCleanerCheckpoint(l.Cleaner);
            // The saved high watermark (within the recovered log): what a follower starts from, and
            // what consumers may read before a leader has heard from its followers again.
            log.UpdateHighWatermark(l.Hw);
            _logs[l.Tp] = log;
        });
        // From here on a crash must be detected at the next start.
        foreach (var dir in Options.LogDirs)
        {
            string marker = Path.Combine(dir, CleanShutdownFile);
            if (File.Exists(marker)) File.Delete(marker);
        }
        LogLoaded(_logger, _logs.Count, sw.ElapsedMilliseconds);
        _started = true;
        _background = Task.Run(() => BackgroundLoopAsync(_stop.Token));
        if (Options.CleanerEnable)
        {
            _cleanerThread = new Thread(CleanerLoop) { IsBackground = true, Name = "freshet-log-cleaner" };
            _cleanerThread.Start();
        }
    }

    public PartitionLog? GetLog(TopicPartition tp) => _logs.GetValueOrDefault(tp);

    /// <summary>
    /// The log of <paramref name="tp"/>, created if missing. An existing log with another topic id
    /// (left by a deleted topic of the same name) is removed first.
    /// </summary>
    public PartitionLog GetOrCreateLog(TopicPartition tp, Uuid topicId, LogConfig config)
    {
        lock (_logs)
        {
            if (_logs.TryGetValue(tp, out var existing))
            {
                if (existing.TopicId == topicId || existing.TopicId.IsZero || topicId.IsZero)
                {
                    existing.Config = config;
                    return existing;
                }
                DeleteLog(tp);
            }
            string dir = Path.Combine(ChooseDir(), tp.ToString());
            var log = PartitionLog.Create(dir, tp, topicId, config, Options.Log, _time, _loggerFactory.CreateLogger<PartitionLog>(), ScheduleSegmentDelete);
            _logs[tp] = log;
            return log;
        }
    }

    /// <summary>The online directory holding the fewest partitions (Kafka's placement across log.dirs).</summary>
    private string ChooseDir()
    {
        var online = Options.LogDirs.Where(d => !Failures.IsOffline(d)).ToList();
        if (online.Count == 0) throw new IOException($"no log directory is online ({string.Join(", ", Options.LogDirs)} failed)");
        if (online.Count == 1) return online[0];
        // Compare whole directory paths: a prefix test counted the logs of /data/d2 as logs of /data/d.
        return online
            .OrderBy(d => _logs.Values.Count(l => IsLogIn(l, d)))
            .First();
    }

    /// <summary>Full path without a trailing separator, so "/data/" and "/data" name the same log directory.</summary>
    private static string NormalizeDir(string dir) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir));

    /// <summary>Whether <paramref name="log"/>'s partition directory sits directly in log directory <paramref name="dir"/>.</summary>
    private static bool IsLogIn(PartitionLog log, string dir) =>
        string.Equals(NormalizeDir(Path.GetDirectoryName(NormalizeDir(log.Dir))!), NormalizeDir(dir), StringComparison.Ordinal);

    /// <summary>Removes a partition's log: renamed to *-delete at once, files removed in the background.</summary>
    public bool DeleteLog(TopicPartition tp)
    {
        if (!_logs.TryRemove(tp, out var log)) return false;
        string parent = Path.GetDirectoryName(log.Dir)!;
        string deleted = Path.Combine(parent, $"{tp}.{Guid.NewGuid():N}{DeleteDirSuffix}");
        try
        {
            log.MarkForDeletion(deleted);
        }
        catch (IOException e)
        {
            LogDeleteFailed(_logger, tp.ToString(), e.Message);
            return true;
        }
        _ = Task.Run(() => TryDeleteDirectory(deleted));
        return true;
    }

    private void TryDeleteDirectory(string dir)
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException e) { LogDeleteFailed(_logger, dir, e.Message); }
        catch (UnauthorizedAccessException e) { LogDeleteFailed(_logger, dir, e.Message); }
    }

    /// <summary>Deleted segments stay open for readers until file.delete.delay.ms has passed.</summary>
    private void ScheduleSegmentDelete(LogSegment segment, long delayMs) => _pendingSegmentDeletes.Enqueue((segment, NowMs + delayMs));

    // ---------------------------------------------------------------- background work

    /// <summary>Runs retention on every log now (the periodic task calls this).</summary>
    public int RunRetention()
    {
        int deleted = 0;
        long now = NowMs;
        foreach (var log in _logs.Values)
        {
            try { deleted += log.DeleteOldSegments(now); }
            catch (Exception e) when (e is IOException or ObjectDisposedException) { LogBackgroundFailed(_logger, "retention", log.TopicPartition.ToString(), e.Message); }
        }
        return deleted;
    }

    /// <summary>Removes the files of deleted segments whose file.delete.delay.ms has passed (all of them when <paramref name="all"/>).</summary>
    public void DeletePendingSegments(bool all = false)
    {
        long now = NowMs;
        int n = _pendingSegmentDeletes.Count;
        for (int i = 0; i < n && _pendingSegmentDeletes.TryDequeue(out var item); i++)
        {
            if (!all && item.DueMs > now)
            {
                _pendingSegmentDeletes.Enqueue(item);
                continue;
            }
            try { item.Segment.DeleteFiles(); }
            catch (IOException e) { LogDeleteFailed(_logger, item.Segment.LogPath, e.Message); }
        }
    }

    /// <summary>
    /// Writes the recovery point, log start offset and high watermark checkpoints of every online directory.
    /// Returns false when one failed (see <see cref="Checkpoint"/>).
    /// </summary>
    public bool WriteCheckpoints(bool fsync = true)
    {
        bool all = true;
        foreach (var dir in Options.LogDirs)
        {
            all &= Checkpoint(dir, () =>
            {
                // Normalized on both sides: with a trailing separator in log.dirs no log matched, and empty
                // checkpoints were written (losing log start offsets and recovery points).
                var logs = _logs.Values.Where(l => IsLogIn(l, dir)).ToList();
                new OffsetCheckpointFile(Path.Combine(dir, OffsetCheckpointFile.RecoveryPoint), Options.Log.Io)
                    .Write(logs.Select(l => KeyValuePair.Create(l.TopicPartition, l.RecoveryPoint)), fsync);
                new OffsetCheckpointFile(Path.Combine(dir, OffsetCheckpointFile.LogStartOffset), Options.Log.Io)
                    .Write(logs.Where(l => l.LogStartOffset > 0).Select(l => KeyValuePair.Create(l.TopicPartition, l.LogStartOffset)), fsync);
                WriteHighWatermarkCheckpoint(dir, logs, fsync);
                WriteCleanerCheckpoint(dir, fsync);
            });
        }
        return all;
    }

    /// <summary>
    /// Writes one directory's checkpoints unless it is offline (then there is nothing to write: its logs
    /// recover at the next start). A failure is logged; one other than a full disk takes the directory
    /// offline (Kafka's rule for any I/O error in a log directory: its disk can no longer be trusted with
    /// the checkpoints that recovery relies on). False when the write failed.
    /// </summary>
    private bool Checkpoint(string dir, Action write)
    {
        if (Failures.IsOffline(dir)) return true;
        try
        {
            write();
            return true;
        }
        catch (IOException e)
        {
            LogBackgroundFailed(_logger, "checkpoint", dir, e.Message);
            if (!StorageIo.IsDiskFull(e) && Failures.MarkOffline(dir, $"checkpoint write failed: {e.Message}")) LogDirFailed(_logger, dir, e.Message);
            return false;
        }
    }

    /// <summary>Writes the replication-offset-checkpoint (high watermarks) of every online directory.</summary>
    public void WriteHighWatermarkCheckpoints(bool fsync = true)
    {
        foreach (var dir in Options.LogDirs) Checkpoint(dir, () => WriteHighWatermarkCheckpoint(dir, _logs.Values.Where(l => IsLogIn(l, dir)).ToList(), fsync));
    }

    private void WriteHighWatermarkCheckpoint(string dir, List<PartitionLog> logs, bool fsync) =>
        new OffsetCheckpointFile(Path.Combine(dir, OffsetCheckpointFile.Replication), Options.Log.Io)
            .Write(logs.Select(l => KeyValuePair.Create(l.TopicPartition, l.HighWatermark)), fsync);

    /// <summary>Writes the cleaner-offset-checkpoint of every online directory (the logs cleaned at least once).</summary>
    public void WriteCleanerCheckpoints(bool fsync = true)
    {
        foreach (var dir in Options.LogDirs) Checkpoint(dir, () => WriteCleanerCheckpoint(dir, fsync));
    }

    private void WriteCleanerCheckpoint(string dir, bool fsync)
    {
        var logs = _logs.Values.Where(l => l.CleanerCheckpoint > 0 && IsLogIn(l, dir));
        _cleanerCheckpoints[dir].Write(logs.Select(l => KeyValuePair.Create(l.TopicPartition, l.CleanerCheckpoint)), fsync);
    }

    private void WriteCleanerCheckpointOf(PartitionLog log)
    {
        foreach (var dir in Options.LogDirs)
        {
            if (!IsLogIn(log, dir)) continue;
            Checkpoint(dir, () => WriteCleanerCheckpoint(dir, fsync: true));
            return;
        }
    }

    /// <summary>
    /// Cleans <paramref name="tp"/>'s log now, whatever its dirty ratio (for the broker and tests; see
    /// <see cref="LogCleaner.Clean"/>), waiting for a cleaning the background thread has under way,
    /// and saves the cleaner checkpoint. Null when there is no such log.
    /// </summary>
    public CleanResult? CleanLog(TopicPartition tp)
    {
        if (GetLog(tp) is not { } log) return null;
        var r = Cleaner.Clean(log, _stop.Token);
        if (r.Cleaned) WriteCleanerCheckpointOf(log);
        return r;
    }

    /// <summary>
    /// The cleaner thread (Kafka's CleanerThread): cleans the dirtiest log that is due, at once again
    /// after a cleaning, or after log.cleaner.backoff.ms when there was nothing to do. Failures are
    /// logged; the log concerned is skipped from then on (see <see cref="LogCleaner.IsUncleanable"/>).
    /// </summary>
    private void CleanerLoop()
    {
        var ct = _stop.Token;
        while (!ct.IsCancellationRequested)
        {
            CleanResult? r = null;
            try
            {
                r = Cleaner.CleanFilthiest(_logs.Values, ct);
                if (r is { Cleaned: true } && GetLog(r.Partition) is { } log) WriteCleanerCheckpointOf(log);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                break;
            }
#pragma warning disable CA1031 // the thread must outlive any one log's failure; the cleaner has logged it and set the log aside
            catch (Exception e)
#pragma warning restore CA1031
            {
                LogBackgroundFailed(_logger, "cleaning", r?.Partition.ToString() ?? "*", e.Message);
            }
            if (r is not { Cleaned: true }) ct.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(Math.Max(1, Options.CleanerBackoffMs)));
        }
    }

    /// <summary>High watermarks saved by the last checkpoint, so a restarted broker does not show consumers less than before.</summary>
    public Dictionary<TopicPartition, long> ReadHighWatermarkCheckpoints()
    {
        var result = new Dictionary<TopicPartition, long>();
        foreach (var dir in Options.LogDirs)
            foreach (var (tp, hw) in new OffsetCheckpointFile(Path.Combine(dir, OffsetCheckpointFile.Replication)).Read())
                result[tp] = hw;
        return result;
    }

    private async Task BackgroundLoopAsync(CancellationToken ct)
    {
        long now = NowMs;
        long nextRetention = now + Math.Min(Options.RetentionCheckIntervalMs, 30_000);
        long nextCheckpoint = now + Options.CheckpointIntervalMs;
        long nextHwCheckpoint = now + Options.HighWatermarkCheckpointIntervalMs;
        long nextExpiry = now + Options.ProducerExpirationCheckIntervalMs;
        long nextFlush = now + Options.FlushCheckIntervalMs;
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(Math.Clamp(Options.FlushCheckIntervalMs, 50, 1000)), _time);
        try
        {
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
            {
                now = NowMs;
                try
                {
                    if (now >= nextFlush)
                    {
                        foreach (var log in _logs.Values) log.FlushIfDue(now);
                        nextFlush = now + Options.FlushCheckIntervalMs;
                    }
                    if (now >= nextRetention)
                    {
                        RunRetention();
                        nextRetention = now + Options.RetentionCheckIntervalMs;
                    }
                    DeletePendingSegments();
                    if (now >= nextExpiry)
                    {
                        foreach (var log in _logs.Values) log.RemoveExpiredProducers(now);
                        nextExpiry = now + Options.ProducerExpirationCheckIntervalMs;
                    }
                    if (now >= nextCheckpoint)
                    {
                        WriteCheckpoints();
                        nextCheckpoint = now + Options.CheckpointIntervalMs;
                        nextHwCheckpoint = now + Options.HighWatermarkCheckpointIntervalMs;
                    }
                    else if (now >= nextHwCheckpoint)
                    {
                        WriteHighWatermarkCheckpoints();
                        nextHwCheckpoint = now + Options.HighWatermarkCheckpointIntervalMs;
                    }
                }
                catch (Exception e) when (e is IOException or ObjectDisposedException or UnauthorizedAccessException)
                {
                    LogBackgroundFailed(_logger, "log maintenance", "*", e.Message);
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    /// <summary>Clean shutdown: stop background work, flush and close every log, write checkpoints and the clean-shutdown marker.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0) return;
        _stop.Cancel();
        if (_background is not null)
        {
            try { await _background.ConfigureAwait(false); }
            catch (OperationCanceledException) { }
        }
        // A cleaning under way notices the cancellation between batches and discards its output.
        _cleanerThread?.Join();
        bool allClosed = true;
        foreach (var log in _logs.Values)
        {
            try { log.Close(); }
            catch (IOException e)
            {
                allClosed = false;
                LogBackgroundFailed(_logger, "close", log.TopicPartition.ToString(), e.Message);
            }
        }
        DeletePendingSegments(all: true);
        // Only a manager that started owns its directories. One whose Startup failed (directory locked
        // by another manager, a log that failed to load) must not write checkpoints or the clean-shutdown
        // marker there: the marker would make the next start skip recovery of logs this manager never
        // loaded, or of the other manager's logs after it crashed.
        if (_started)
        {
            try
            {
                // An offline directory gets no marker: the next start recovers its logs from their recovery points.
                if (WriteCheckpoints() && allClosed)
                    foreach (var dir in Options.LogDirs.Where(d => !Failures.IsOffline(d))) DurableFile.Write(Options.Log.Io, Path.Combine(dir, CleanShutdownFile), []);
            }
            catch (IOException e)
            {
                LogBackgroundFailed(_logger, "checkpoint", "*", e.Message);
            }
        }
        foreach (var l in _dirLocks) await l.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
    }

    [LoggerMessage(EventId = 1101, Level = LogLevel.Information, Message = "Loaded {Count} partition logs in {Ms} ms")]
    private static partial void LogLoaded(ILogger logger, int count, long ms);

    [LoggerMessage(EventId = 1102, Level = LogLevel.Warning, Message = "Could not delete {What}: {Reason}")]
    private static partial void LogDeleteFailed(ILogger logger, string what, string reason);

    [LoggerMessage(EventId = 1103, Level = LogLevel.Warning, Message = "Background {Task} failed for {Partition}: {Reason}")]
    private static partial void LogBackgroundFailed(ILogger logger, string task, string partition, string reason);

    [LoggerMessage(EventId = 1104, Level = LogLevel.Error, Message = "Log directory {Dir} is offline until restart: a checkpoint write failed ({Reason})")]
    private static partial void LogDirFailed(ILogger logger, string dir, string reason);
}
