using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Storage.Tests.Support;

public static class TestManagers
{
    /// <summary>
    /// Options whose periodic work never comes due on the manual clock unless a test moves it far:
    /// the tests call RunRetention, DeletePendingSegments and WriteCheckpoints themselves.
    /// </summary>
    public static LogManagerOptions Options(IReadOnlyList<string> dirs, IReadOnlyDictionary<string, string>? topicDefaults = null) => new()
    {
        LogDirs = dirs,
        TopicDefaults = topicDefaults ?? new Dictionary<string, string>(),
        RetentionCheckIntervalMs = 1_000_000_000_000,
        CheckpointIntervalMs = 1_000_000_000_000,
        HighWatermarkCheckpointIntervalMs = 1_000_000_000_000,
        ProducerExpirationCheckIntervalMs = 1_000_000_000_000,
        FlushCheckIntervalMs = 1_000,
    };

    public static LogManager Start(TimeProvider time, params string[] dirs) => Start(time, Options(dirs));

    public static LogManager Start(TimeProvider time, LogManagerOptions options)
    {
        var m = new LogManager(options, time, NullLoggerFactory.Instance);
        m.Startup();
        return m;
    }
}
