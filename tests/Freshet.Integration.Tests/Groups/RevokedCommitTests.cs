using Confluent.Kafka;
using Freshet.Integration.Tests.Support;
using Freshet.Server;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Groups;

/// <summary>
/// A member that lost partitions in a rebalance and commits offsets for them afterwards, with the
/// generation (or member epoch) it had before, is refused as Kafka refuses it, and the offsets the
/// partitions' new owner committed stay as they are.
/// </summary>
public sealed class RevokedCommitTests(ITestOutputHelper output) : IAsyncLifetime
{
    private FreshetServer _broker = null!;
    private readonly Microsoft.Extensions.Logging.ILoggerFactory _loggers = TestOutputLoggerProvider.Factory(output);

    public async Task InitializeAsync() => _broker = await FreshetServer.StartEmbeddedAsync(ClassicGroupTests.BrokerProperties, _loggers);

    public async Task DisposeAsync()
    {
        await _broker.DisposeAsync();
        _loggers.Dispose();
    }

    /// <summary>
    /// The first consumer owns both partitions; a second one joins. The first one's revocation
    /// handler holds on (as a slow application would) past its rebalance timeout, so the group
    /// moves on without it and the second consumer takes both partitions and commits. Only then
    /// does the first consumer commit the revoked partitions with its old generation.
    /// (cooperative-sticky cannot get there: a partition being revoked is given to no one until its
    /// owner has rejoined, so the old owner's commit is still its own.)
    /// </summary>
    [Theory]
    [InlineData("range", "classic")]
    [InlineData(null, "consumer")]
    public async Task ARevokedMembersLateCommitIsRefusedAndTheNewOwnersOffsetsStay(string? strategy, string protocol)
    {
        string topic = "revoked-" + (strategy ?? protocol), group = "g-" + topic;
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, 2);
        var cfg1 = Clients.ConsumerConfig(_broker.BootstrapServers);
        cfg1.GroupId = group;
        cfg1.Set("group.protocol", protocol);
        if (protocol == "classic")
        {
            cfg1.SessionTimeoutMs = 3000;
            cfg1.HeartbeatIntervalMs = 500;
            cfg1.Set("partition.assignment.strategy", strategy!);
        }
        // The rebalance timeout (librdkafka sends max.poll.interval.ms): the group waits that long for the first member.
        cfg1.MaxPollIntervalMs = 6000;
        var cfg2 = new ConsumerConfig(new Dictionary<string, string>(cfg1));

        using var secondOwnsBoth = new ManualResetEventSlim();
        var lateCommit = new TaskCompletionSource<Exception?>(TaskCreationOptions.RunContinuationsAsynchronously);
        var c1 = new ConsumerBuilder<Ignore, Ignore>(cfg1)
            .SetPartitionsRevokedHandler((c, parts) =>
            {
                if (lateCommit.Task.IsCompleted || parts.Count == 0) return;
                // Hold on until the group has given the partitions to the other member.
                if (!secondOwnsBoth.Wait(TimeSpan.FromSeconds(90)))
                {
                    lateCommit.TrySetResult(new TimeoutException("the second consumer never owned both partitions"));
                    return;
                }
                try
                {
                    c.Commit(parts.Select(p => new TopicPartitionOffset(p.TopicPartition, 7)));
                    lateCommit.TrySetResult(null);
                }
                catch (Exception e)
                {
                    lateCommit.TrySetResult(e);
                }
            })
            .Build();
        c1.Subscribe(topic);
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (c1.Assignment.Count < 2)
        {
            if (DateTime.UtcNow >= deadline)
            {
                c1.Close();
                c1.Dispose();
                Assert.Fail("the first consumer never owned both partitions");
            }
            c1.Consume(100);
        }
        // The first consumer polls on its own thread from now on (and goes on polling after its late commit, until
        // it is closed); its revocation handler blocks it.
        var first = new PolledConsumer<Ignore, Ignore>(c1);
        try
        {
            await SecondConsumerTakesOverAsync(topic, cfg2, secondOwnsBoth, lateCommit.Task);
        }
        finally
        {
            secondOwnsBoth.Set();
            await first.DisposeAsync();
        }
    }

    private async Task SecondConsumerTakesOverAsync(string topic, ConsumerConfig cfg2, ManualResetEventSlim secondOwnsBoth, Task<Exception?> lateCommit)
    {
        // What the group gave the second consumer, followed through its rebalance handlers (eager ones hand over the
        // whole assignment, incremental ones the changes).
        var owned = new HashSet<TopicPartition>();
        var assigned = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var c2 = new ConsumerBuilder<Ignore, Ignore>(cfg2)
            .SetPartitionsAssignedHandler((_, parts) =>
            {
                owned.UnionWith(parts);
                if (owned.Count == 2) assigned.TrySetResult();
            })
            .SetPartitionsRevokedHandler((_, parts) => owned.ExceptWith(parts.Select(p => p.TopicPartition)))
            .SetPartitionsLostHandler((_, parts) => owned.ExceptWith(parts.Select(p => p.TopicPartition)))
            .Build();
        c2.Subscribe(topic);
        // Polled on its own thread too, so that it serves every rebalance event until it is closed.
        await using var second = new PolledConsumer<Ignore, Ignore>(c2);
        await assigned.Task.WaitAsync(TimeSpan.FromSeconds(90));
        c2.Commit([new TopicPartitionOffset(topic, 0, 3), new TopicPartitionOffset(topic, 1, 4)]);
        secondOwnsBoth.Set();

        var refused = await lateCommit.WaitAsync(TimeSpan.FromSeconds(90));
        output.WriteLine($"late commit: {refused}");
        var error = Assert.IsAssignableFrom<KafkaException>(refused);
        Assert.Contains(error.Error.Code, new[] { ErrorCode.UnknownMemberId, ErrorCode.IllegalGeneration, ErrorCode.StaleMemberEpoch });

        var committed = c2.Committed([new TopicPartition(topic, 0), new TopicPartition(topic, 1)], TimeSpan.FromSeconds(30));
        Assert.Equal([3L, 4L], committed.OrderBy(c => c.Partition.Value).Select(c => c.Offset.Value));
    }
}
