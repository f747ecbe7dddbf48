using Freshet.Protocol;
using Freshet.Protocol.Wire;
using Freshet.Storage.Checkpoints;
using Freshet.Storage.Tests.Support;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Storage.Tests;

public sealed class LogManagerTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly ManualTimeProvider _time = new();
    private long Now => _time.NowMs;

    public void Dispose() => _tmp.Dispose();

    private static readonly TopicPartition Orders0 = new("orders", 0);
    private static readonly TopicPartition Orders1 = new("orders", 1);
    private static readonly TopicPartition Dashed = new("my-topic.v2", 3);
    private static readonly Uuid OrdersId = new(1, 1);
    private static readonly Uuid DashedId = new(2, 2);

    [Fact]
    public async Task Loads_every_partition_directory_and_ignores_the_rest()
    {
        string root = _tmp.Sub("data");
        await using (var m = TestManagers.Start(_time, root))
        {
            Assert.Empty(m.Logs);
            m.GetOrCreateLog(Orders0, OrdersId, LogConfig.Default).Append(Batches.Make(3, Now));
            m.GetOrCreateLog(Orders1, OrdersId, LogConfig.Default).Append(Batches.Make(1, Now));
            var d = m.GetOrCreateLog(Dashed, DashedId, LogConfig.Default);
            d.Append(Batches.Make(2, Now));
            d.Append(Batches.Make(2, Now));
            Assert.Equal(Path.Combine(root, "my-topic.v2-3"), d.Dir);
        }
        Directory.CreateDirectory(Path.Combine(root, "__cluster_metadata-0"));
        Directory.CreateDirectory(Path.Combine(root, "not a partition"));
        Directory.CreateDirectory(Path.Combine(root, "bad*name-0"));

        await using (var m = TestManagers.Start(_time, root))
        {
            Assert.Equal(
                [(Dashed, 4L, DashedId), (Orders0, 3L, OrdersId), (Orders1, 1L, OrdersId)],
                m.Logs.Select(l => (l.TopicPartition, l.LogEndOffset, l.TopicId)).OrderBy(x => x.TopicPartition.ToString(), StringComparer.Ordinal));
            Assert.Same(m.GetLog(Orders0), m.GetOrCreateLog(Orders0, OrdersId, LogConfig.Default));
            Assert.Null(m.GetLog(new TopicPartition("orders", 2)));
        }
    }

    [Fact]
    public async Task GetOrCreateLog_updates_the_config_of_an_existing_log_and_replaces_one_of_another_topic_id()
    {
        string root = _tmp.Sub("data");
        await using var m = TestManagers.Start(_time, root);
        var log = m.GetOrCreateLog(Orders0, OrdersId, LogConfig.Default);
        log.Append(Batches.Make(3, Now));

        var config = TestLogs.Config((LogConfig.RetentionMsConfig, "1234"));
        Assert.Same(log, m.GetOrCreateLog(Orders0, OrdersId, config));
        Assert.Equal(1234, log.Config.RetentionMs);

        // A topic deleted and created again under the same name: the old data must not show through.
        var newId = new Uuid(9, 9);
        var fresh = m.GetOrCreateLog(Orders0, newId, LogConfig.Default);
        Assert.NotSame(log, fresh);
        Assert.Equal((newId, 0L), (fresh.TopicId, fresh.LogEndOffset));
        Assert.Equal(newId, PartitionMetadataFile.Read(fresh.Dir));
        TestLogs.Until(() => Directory.GetDirectories(root, "*" + LogManager.DeleteDirSuffix).Length == 0, "the old log's directory to go");
        Assert.Equal(["orders-0"], Directory.GetDirectories(root).Select(Path.GetFileName));
    }

    [Fact]
    public async Task DeleteLog_renames_the_directory_at_once_and_removes_it_in_the_background()
    {
        string root = _tmp.Sub("data");
        await using var m = TestManagers.Start(_time, root);
        var log = m.GetOrCreateLog(Orders0, OrdersId, LogConfig.Default);
        log.Append(Batches.Make(3, Now));
        string dir = log.Dir;

        Assert.True(m.DeleteLog(Orders0));
        Assert.False(Directory.Exists(dir));
        Assert.Null(m.GetLog(Orders0));
        Assert.StartsWith(Path.Combine(root, "orders-0."), log.Dir, StringComparison.Ordinal);
        Assert.EndsWith(LogManager.DeleteDirSuffix, log.Dir, StringComparison.Ordinal);
        TestLogs.Until(() => !Directory.Exists(log.Dir), "the renamed directory to be removed");
        Assert.Empty(Directory.GetDirectories(root));
        Assert.False(m.DeleteLog(Orders0));
        Assert.Equal(ErrorCode.NotLeaderOrFollower, log.TryAppend(Batches.Make(1, Now)).Error);
    }

    [Fact]
    public async Task A_deletion_interrupted_by_a_restart_is_finished_at_startup()
    {
        string root = _tmp.Sub("data");
        string leftover = Path.Combine(root, "orders-0.0123456789abcdef0123456789abcdef" + LogManager.DeleteDirSuffix);
        Directory.CreateDirectory(leftover);
        File.WriteAllBytes(Path.Combine(leftover, TestLogs.Name(0, ".log")), new byte[100]);

        await using var m = TestManagers.Start(_time, root);
        Assert.False(Directory.Exists(leftover));
        Assert.Empty(m.Logs);
    }

    [Fact]
    public async Task A_second_manager_cannot_take_a_directory_in_use_and_leaves_it_alone()
    {
        string root = _tmp.Sub("data");
        string marker = Path.Combine(root, LogManager.CleanShutdownFile);
        string rpFile = Path.Combine(root, OffsetCheckpointFile.RecoveryPoint);
        var first = TestManagers.Start(_time, root);
        var log = first.GetOrCreateLog(Orders0, OrdersId, LogConfig.Default);
        log.Append(Batches.Make(3, Now));
        first.WriteCheckpoints();
        string checkpoint = File.ReadAllText(rpFile);

        var second = new LogManager(TestManagers.Options([root]), _time, NullLoggerFactory.Instance);
        var e = Assert.Throws<IOException>(second.Startup);
        Assert.Contains("in use", e.Message, StringComparison.Ordinal);
        // Disposing the manager that failed to start (as the server does on a failed start) must not
        // write a clean-shutdown marker or checkpoints into the directory the first one owns: the
        // marker would make the next start skip recovery after a crash of the first manager.
        await second.DisposeAsync();
        Assert.False(File.Exists(marker));
        Assert.Equal(checkpoint, File.ReadAllText(rpFile));

        await first.DisposeAsync();
        Assert.True(File.Exists(marker));
        await using var third = TestManagers.Start(_time, root);
        Assert.Equal(3, third.GetLog(Orders0)!.LogEndOffset);
    }

    [Fact]
    public async Task A_failed_startup_releases_the_directories_it_had_locked()
    {
        string a = _tmp.Sub("a"), b = _tmp.Sub("b");
        var holder = TestManagers.Start(_time, b);
        var failing = new LogManager(TestManagers.Options([a, b]), _time, NullLoggerFactory.Instance);
        Assert.Throws<IOException>(failing.Startup);

        // Directory a was locked before b failed; it must be free again without disposing the failed manager.
        await using (var other = TestManagers.Start(_time, a))
            Assert.Empty(other.Logs);
        await failing.DisposeAsync();
        await holder.DisposeAsync();
    }

    [Fact]
    public async Task New_partitions_are_spread_over_the_log_dirs()
    {
        // "d" is a prefix of "d2": a log in d2 must not count as one in d.
        string d = _tmp.Sub("d"), d2 = _tmp.Sub("d2");
        await using var m = TestManagers.Start(_time, d, d2);
        for (int p = 0; p < 6; p++) m.GetOrCreateLog(new TopicPartition("orders", p), OrdersId, LogConfig.Default);
        Assert.Equal(3, Directory.GetDirectories(d).Length);
        Assert.Equal(3, Directory.GetDirectories(d2).Length);
    }

    [Fact]
    public async Task Checkpoints_are_written_for_log_dirs_given_with_a_trailing_separator()
    {
        string root = _tmp.Sub("data") + Path.DirectorySeparatorChar;
        await using (var m = TestManagers.Start(_time, root))
        {
            var log = m.GetOrCreateLog(Orders0, OrdersId, LogConfig.Default);
            for (int i = 0; i < 3; i++) log.Append(Batches.Make(2, Now));
            log.CommitAll();
            Assert.Equal(ErrorCode.None, log.DeleteRecordsBefore(4, out _));
        }
        Assert.Equal(new Dictionary<TopicPartition, long> { [Orders0] = 6 },
            new OffsetCheckpointFile(Path.Combine(root, OffsetCheckpointFile.RecoveryPoint)).Read());
        Assert.Equal(new Dictionary<TopicPartition, long> { [Orders0] = 4 },
            new OffsetCheckpointFile(Path.Combine(root, OffsetCheckpointFile.LogStartOffset)).Read());
        await using (var m = TestManagers.Start(_time, root))
            Assert.Equal((4L, 6L), (m.GetLog(Orders0)!.LogStartOffset, m.GetLog(Orders0)!.LogEndOffset));
    }

    [Fact]
    public async Task Expired_producers_are_removed_by_the_background_task()
    {
        string root = _tmp.Sub("data");
        var options = TestManagers.Options([root]) with
        {
            ProducerExpirationCheckIntervalMs = 1_000,
            Log = new LogOptions { ProducerIdExpirationMs = 10_000 },
        };
        await using var m = TestManagers.Start(_time, options);
        var log = m.GetOrCreateLog(Orders0, OrdersId, LogConfig.Default);
        log.Append(Batches.Idempotent(77, 0, 0, 2, Now));
        // A gap in the sequence is refused while the producer is known...
        Assert.Equal(ErrorCode.OutOfOrderSequenceNumber, log.TryAppend(Batches.Idempotent(77, 0, 5, 1, Now)).Error);
        _time.Advance(10_001);
        // ... and accepted once the background task has forgotten it.
        // The loop ticks in real time and takes its first deadline from the clock when it starts, so keep the clock moving.
        TestLogs.Until(() =>
        {
            _time.Advance(200);
            return log.TryAppend(Batches.Idempotent(77, 0, 5, 1, Now)).Error == ErrorCode.None;
        }, "the producer to expire");
        Assert.Equal(3, log.LogEndOffset);
    }
}
