using Confluent.Kafka;
using Freshet.Integration.Tests.Support;
using Freshet.Server;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Groups;

/// <summary>offsets.retention.minutes: an empty group's offsets, then the group itself, are removed once they are older than that.</summary>
public sealed class OffsetRetentionTests(ITestOutputHelper output)
{
    /// <summary>
    /// Real time, plus a skew the test moves forward (timers still run on the real clock). It counts the
    /// finished runs of the group coordinator's offsets-expiry check (the coordinator's only periodic timer,
    /// its callback a method of the coordinator's), so a test can wait for the next check instead of sleeping.
    /// </summary>
    private sealed class SkewedTime : TimeProvider
    {
        private int _expiryChecks;

        public TimeSpan Skew { get; set; }
        public int ExpiryChecks => Volatile.Read(ref _expiryChecks);
        public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + Skew;

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            if (period == Timeout.InfiniteTimeSpan || callback.Target is not Freshet.Broker.Groups.GroupCoordinator)
                return base.CreateTimer(callback, state, dueTime, period);
            return base.CreateTimer(s =>
            {
                callback(s);
                Interlocked.Increment(ref _expiryChecks);
            }, state, dueTime, period);
        }
    }

    [Fact]
    public async Task OffsetsOfAnEmptyGroupExpireAfterTheRetentionPeriod()
    {
        string dir = Path.Combine(Path.GetTempPath(), "freshet-retain-" + Guid.NewGuid().ToString("N")[..8]);
        var time = new SkewedTime();
        using var loggers = TestOutputLoggerProvider.Factory(output);
        await using var broker = await FreshetServer.StartAsync(new FreshetServerOptions
        {
            Properties = new Dictionary<string, string>
            {
                ["listeners"] = "PLAINTEXT://127.0.0.1:0",
                ["log.dirs"] = dir,
                ["offsets.retention.minutes"] = "1",
                ["offsets.retention.check.interval.ms"] = "1000",
            },
            Time = time,
            Loggers = loggers,
            DeleteDataOnDispose = true,
        });
        await Clients.CreateTopicAsync(broker.BootstrapServers, "kept", 1);
        var config = Clients.ConsumerConfig(broker.BootstrapServers);
        config.GroupId = "g-retain";
        using (var c = new ConsumerBuilder<Ignore, string>(config).Build())
            await Clients.CommitWhenCoordinatorReadyAsync(c, [new TopicPartitionOffset("kept", 0, 42)]);
        using var admin = Clients.Admin(broker.BootstrapServers);
        async Task<long> CommittedAsync() =>
            (await admin.ListConsumerGroupOffsetsAsync([new ConsumerGroupTopicPartitions("g-retain", [new TopicPartition("kept", 0)])]))
            .Single().Partitions.Single().Offset.Value;
        Assert.Equal(42, await CommittedAsync());

        // Thirty seconds on: younger than a minute, kept. Two more finished checks mean one ran wholly
        // with the new skew (the event, instead of sleeping through the check interval).
        time.Skew = TimeSpan.FromSeconds(30);
        int checks = time.ExpiryChecks;
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (time.ExpiryChecks < checks + 2)
        {
            Assert.True(DateTime.UtcNow < deadline, $"{time.ExpiryChecks - checks} offsets-expiry checks in 30 s (every second)");
            await Task.Delay(100);
        }
        Assert.Equal(42, await CommittedAsync());

        // Two minutes on: expired, and the group is gone with them.
        time.Skew = TimeSpan.FromMinutes(2);
        deadline = DateTime.UtcNow.AddSeconds(30);
        long committed;
        do
        {
            await Task.Delay(250);
            committed = await CommittedAsync();
        }
        while (committed != Offset.Unset.Value && DateTime.UtcNow < deadline);
        Assert.Equal(Offset.Unset.Value, committed);
        var groups = await admin.ListConsumerGroupsAsync();
        Assert.DoesNotContain(groups.Valid, g => g.GroupId == "g-retain");
    }
}
