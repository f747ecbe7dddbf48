using Freshet.Metadata.Controller;
using Freshet.Broker;
using Freshet.Broker.Replication;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Storage;
using Freshet.Storage.Epochs;

namespace Freshet.Server.Tests.Replication;

/// <summary>
/// ISR replication between brokers in one process: followers catching up, the high watermark and
/// acks=all, ISR shrink and expansion, truncation of a diverged follower after a leader change,
/// OffsetForLeaderEpoch, and fencing by leader epoch.
/// </summary>
public sealed class ReplicationTests
{
    private static readonly TopicPartition Tp = new("orders", 0);

    private static async Task<ReplicationCluster> StartAsync(ReplicationOptions? options = null, IReadOnlyDictionary<string, string>? configs = null)
    {
        var c = new ReplicationCluster(3, options);
        c.CreateTopic(Tp.Topic, 1, [1, 2, 3], configs);
        await ReplicationCluster.Until(() => c.Nodes.Values.All(n => n.Replicas.GetPartition(Tp) is not null), "partitions created");
        // Until a follower has fetched, the leader only assumes it caught up when the epoch began: a test
        // that moves the clock past the lag time before then would see it leave the ISR.
        await ReplicationCluster.Until(() => new[] { 2, 3 }.All(f => c.Nodes[1].Partition(Tp).GetFollowerState(f)?.LogEndOffset >= 0), "first follower fetches");
        return c;
    }

    /// <summary>
    /// Cuts follower 3 off and appends a batch (acks=1) it cannot get; once the leader has seen follower 2
    /// take it, moves the clock past the lag time: the ISR shrinks to [1, 2] (a follower whose log end is
    /// the leader's counts as caught up however long ago, so the log must grow while 3 is away).
    /// </summary>
    private static async Task ShrinkOutFollower3Async(ReplicationCluster c)
    {
        c.Cut(3, 1);
        Assert.Equal(0, (await c.ProduceAsync(1, Tp, ReplicationCluster.Batch("behind"), acks: 1)).ErrorCode);
        long end = c.Nodes[1].Log(Tp).LogEndOffset;
        await ReplicationCluster.Until(() => c.Nodes[1].Partition(Tp).GetFollowerState(2)!.LogEndOffset == end, "the leader saw follower 2 take the batch");
        c.Clock.Advance(c.Replication.ReplicaLagTimeMaxMs + 1);
        Assert.Equal(1, c.Nodes[1].Replicas.MaybeShrinkIsrs());
        await ReplicationCluster.Until(() => c.Registration(Tp).Isr.Length == 2, "ISR [1,2]");
        Assert.Equal([1, 2], c.Registration(Tp).Isr.ToArray());
    }

    private static async Task AllCaughtUp(ReplicationCluster c, params int[] nodes)
    {
        long end = c.Nodes[c.Registration(Tp).Leader].Log(Tp).LogEndOffset;
        await ReplicationCluster.Until(() => nodes.All(n => c.Nodes[n].Log(Tp).LogEndOffset == end && c.Nodes[n].Log(Tp).HighWatermark == end),
            $"nodes {string.Join(',', nodes)} at {end}");
    }

    [Fact]
    public async Task Followers_catch_up_and_hold_the_same_bytes()
    {
        await using var c = await StartAsync();
        for (int i = 0; i < 30; i++) Assert.Equal(0, (await c.ProduceAsync(1, Tp, ReplicationCluster.Batch($"m{i}"), acks: 1)).ErrorCode);
        await AllCaughtUp(c, 1, 2, 3);
        Assert.Equal(90, c.Nodes[1].Log(Tp).HighWatermark);
        var leaderBytes = c.LogBytes(1, Tp);
        Assert.Equal(leaderBytes, c.LogBytes(2, Tp));
        Assert.Equal(leaderBytes, c.LogBytes(3, Tp));
        Assert.Equal(c.Nodes[1].Log(Tp).LeaderEpochCache.Entries, c.Nodes[2].Log(Tp).LeaderEpochCache.Entries);
        Assert.Equal([new EpochEntry(1, 0)], c.Nodes[3].Log(Tp).LeaderEpochCache.Entries);
        // The leader knows where each follower is.
        Assert.Equal(90, c.Nodes[1].Partition(Tp).GetFollowerState(2)!.LogEndOffset);
        Assert.Equal(102, c.Nodes[1].Partition(Tp).GetFollowerState(2)!.BrokerEpoch);
    }

    [Fact]
    public async Task Acks_all_completes_when_the_isr_has_the_data_and_the_isr_shrinks_then_grows_back()
    {
        await using var c = await StartAsync();
        Assert.Equal(0, (await c.ProduceAsync(1, Tp, ReplicationCluster.Batch("a"), acks: -1)).ErrorCode);
        await AllCaughtUp(c, 1, 2, 3);

        c.Cut(3, 1); // follower 3 cannot fetch
        var produce = c.ProduceAsync(1, Tp, ReplicationCluster.Batch("b"), acks: -1, timeoutMs: 20_000);
        var leader = c.Nodes[1].Partition(Tp);
        // The leader has taken follower 2's fetch at 6 and, under the same lock, decided its high watermark.
        await ReplicationCluster.Until(() => leader.GetFollowerState(2)!.LogEndOffset == 6, "the leader saw follower 2 take the batch");
        // Node 3 is in the ISR and counts as caught up (no lag time has passed): the high watermark waits for it.
        Assert.False(produce.IsCompleted);
        Assert.Equal(3, leader.HighWatermark);
        Assert.Equal(0, c.Nodes[1].Replicas.MaybeShrinkIsrs());

        c.Clock.Advance(c.Replication.ReplicaLagTimeMaxMs + 1);
        Assert.Equal(1, c.Nodes[1].Replicas.MaybeShrinkIsrs());
        var done = await produce;
        Assert.Equal(0, done.ErrorCode);
        Assert.Equal([1, 2], c.Registration(Tp).Isr.ToArray());
        Assert.Equal(6, leader.HighWatermark);
        var (from, shrink, answer) = c.AlterPartitions.Single();
        Assert.Equal((1, ErrorCode.None), (from, answer));
        Assert.Equal([new IsrMember(1, 101), new IsrMember(2, 102)], shrink.NewIsr.ToArray());
        Assert.Equal((1, 0), (shrink.LeaderEpoch, shrink.PartitionEpoch));

        // Back: node 3 catches up and is proposed for the ISR again.
        c.Cut(3, 1, cut: false);
        await ReplicationCluster.Until(() => c.Registration(Tp).Isr.Length == 3, "node 3 back in the ISR");
        Assert.Equal([1, 2, 3], c.Registration(Tp).Isr.Order());
        Assert.Equal(2, c.AlterPartitions.Count);
        Assert.Equal([1, 2, 3], c.AlterPartitions[1].Proposal.NewIsrIds.ToArray());
        Assert.Equal(1, c.AlterPartitions[1].Proposal.PartitionEpoch);
        await AllCaughtUp(c, 1, 2, 3);
    }

    [Fact]
    public async Task The_high_watermark_counts_a_member_whose_addition_is_in_flight()
    {
        await using var c = await StartAsync();
        await ShrinkOutFollower3Async(c); // 0-2 on nodes 1 and 2
        for (int i = 0; i < 5; i++) Assert.Equal(0, (await c.ProduceAsync(1, Tp, ReplicationCluster.Batch($"x{i}"), acks: -1)).ErrorCode);

        c.AlterPartitionGate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        c.Cut(3, 1, cut: false);
        var leader = c.Nodes[1].Partition(Tp);
        await ReplicationCluster.Until(() => leader.IsIsrChangePending, "expansion proposed");
        Assert.Equal([1, 2], c.Registration(Tp).Isr.ToArray());
        Assert.Equal([1, 2, 3], leader.MaximalIsr.Order());
        // While the addition is in flight, node 3 holds the high watermark back like a member: cut it
        // again, long enough not to count as caught up any more, and an acks=all produce cannot
        // complete even though nodes 1 and 2 have the data.
        c.Cut(3, 1);
        c.Clock.Advance(c.Replication.ReplicaLagTimeMaxMs + 1);
        var produce = c.ProduceAsync(1, Tp, ReplicationCluster.Batch("y"), acks: -1, timeoutMs: 20_000);
        // The leader has taken follower 2's fetch at 21 and, under the same lock, decided its high watermark.
        await ReplicationCluster.Until(() => leader.GetFollowerState(2)!.LogEndOffset == 21, "the leader saw follower 2 take the batch");
        Assert.False(produce.IsCompleted);
        Assert.Equal(18, leader.HighWatermark);

        // The metadata's registration wins over the pending change: the ISR stays [1, 2] and the produce completes.
        c.ChangePartition(Tp, isr: [1, 2]);
        Assert.False(leader.IsIsrChangePending);
        Assert.Equal(0, (await produce).ErrorCode);
        c.AlterPartitionGate.SetResult();
        c.AlterPartitionGate = null;
    }

    [Fact]
    public async Task An_isr_proposal_that_fails_in_an_unexpected_way_is_made_again()
    {
        await using var c = await StartAsync();
        await ShrinkOutFollower3Async(c);
        int calls = 0;
        // The first two proposals fail with what no transport error looks like (an answer the sender could not read, a bug).
        c.AlterPartitionFault = _ => Interlocked.Increment(ref calls) <= 2 ? new InvalidOperationException("injected sender failure") : null;
        c.Cut(3, 1, cut: false);
        // The retry backoff runs on the test's clock: move it along while waiting.
        await ReplicationCluster.Until(() =>
        {
            c.Clock.Advance(c.Replication.AlterPartitionRetryBackoffMs);
            return c.Registration(Tp).Isr.Length == 3;
        }, "node 3 back in the ISR after two failed proposals");
        Assert.True(Volatile.Read(ref calls) >= 3);
        Assert.Equal([1, 2, 3], c.Registration(Tp).Isr.Order());
        Assert.False(c.Nodes[1].Partition(Tp).IsIsrChangePending);
    }

    [Fact]
    public async Task A_fenced_broker_is_not_proposed_for_the_isr_even_when_caught_up()
    {
        await using var c = await StartAsync();
        await ShrinkOutFollower3Async(c);
        c.SetFenced(3, true);
        c.Cut(3, 1, cut: false);
        for (int i = 0; i < 3; i++) Assert.Equal(0, (await c.ProduceAsync(1, Tp, ReplicationCluster.Batch($"f{i}"), acks: -1)).ErrorCode);
        await AllCaughtUp(c, 1, 2, 3);
        // The leader has taken a fetch of node 3's at its log end: the ISR expansion check of that fetch
        // ran under the same lock (a proposal would be pending now, or already recorded below).
        long end = c.Nodes[1].Log(Tp).LogEndOffset;
        var leader = c.Nodes[1].Partition(Tp);
        await ReplicationCluster.Until(() => leader.GetFollowerState(3)!.LogEndOffset == end, "the leader saw node 3 caught up");
        Assert.False(leader.IsIsrChangePending);
        Assert.Single(c.AlterPartitions); // only the shrink
        Assert.Equal([1, 2], c.Registration(Tp).Isr.ToArray());
        c.SetFenced(3, false);
        await c.ProduceAsync(1, Tp, ReplicationCluster.Batch("g"), acks: 1); // the next fetch sees it eligible
        await ReplicationCluster.Until(() => c.Registration(Tp).Isr.Length == 3, "node 3 back in the ISR once unfenced");
    }

    [Fact]
    public async Task Acks_all_answers_not_enough_replicas_when_the_isr_shrinks_below_min_isr()
    {
        await using var c = await StartAsync(configs: new Dictionary<string, string> { [LogConfig.MinInSyncReplicasConfig] = "3" });
        Assert.Equal(0, (await c.ProduceAsync(1, Tp, ReplicationCluster.Batch("a"), acks: -1)).ErrorCode);
        c.Cut(3, 1);
        var produce = c.ProduceAsync(1, Tp, ReplicationCluster.Batch("b"), acks: -1, timeoutMs: 20_000);
        await ReplicationCluster.Until(() => c.Nodes[2].Log(Tp).LogEndOffset == 6, "follower 2 has the batch");
        c.Clock.Advance(c.Replication.ReplicaLagTimeMaxMs + 1);
        c.Nodes[1].Replicas.MaybeShrinkIsrs();
        Assert.Equal((short)ErrorCode.NotEnoughReplicasAfterAppend, (await produce).ErrorCode);
        // The data is written (and committed by the smaller ISR); the next acks=all produce is refused before the append.
        Assert.Equal(6, c.Nodes[1].Log(Tp).HighWatermark);
        var refused = await c.ProduceAsync(1, Tp, ReplicationCluster.Batch("c"), acks: -1);
        Assert.Equal((short)ErrorCode.NotEnoughReplicas, refused.ErrorCode);
        Assert.Equal(6, c.Nodes[1].Log(Tp).LogEndOffset);
        Assert.Equal(0, (await c.ProduceAsync(1, Tp, ReplicationCluster.Batch("d"), acks: 1)).ErrorCode);
    }

    [Theory]
    [InlineData(17)] // DivergingEpoch in fetch responses
    [InlineData(11)] // OffsetForLeaderEpoch before fetching
    public async Task A_follower_with_an_uncommitted_tail_of_an_old_epoch_truncates_to_the_new_leader(short fetchVersion)
    {
        var options = new ReplicationOptions { ReplicaFetchWaitMaxMs = 100, ReplicaFetchBackoffMs = 50, AlterPartitionRetryBackoffMs = 20, ReplicaFetchVersion = fetchVersion };
        await using var c = await StartAsync(options);
        for (int i = 0; i < 4; i++) Assert.Equal(0, (await c.ProduceAsync(1, Tp, ReplicationCluster.Batch($"committed{i}"), acks: -1)).ErrorCode);
        await AllCaughtUp(c, 1, 2, 3);

        // Node 1 is cut off from its followers and takes writes no one else gets (acks=1).
        c.Cut(2, 1);
        c.Cut(3, 1);
        for (int i = 0; i < 3; i++) Assert.Equal(0, (await c.ProduceAsync(1, Tp, ReplicationCluster.Batch($"lost{i}", records: 2), acks: 1)).ErrorCode);
        Assert.Equal(18, c.Nodes[1].Log(Tp).LogEndOffset);

        // The controller elects node 2 at epoch 2; node 1 follows it and must drop its tail.
        var reg = c.ChangePartition(Tp, leader: 2, isr: [2, 3]);
        Assert.Equal(2, reg.LeaderEpoch);
        for (int i = 0; i < 5; i++) Assert.Equal(0, (await c.ProduceAsync(2, Tp, ReplicationCluster.Batch($"new{i}", records: 1), acks: 1)).ErrorCode);
        await ReplicationCluster.Until(() => c.Nodes[1].Log(Tp).LogEndOffset == 17 && c.Nodes[3].Log(Tp).LogEndOffset == 17, "followers of node 2 caught up");
        await ReplicationCluster.Until(() => c.Nodes[1].Log(Tp).HighWatermark == 17, "node 1's high watermark");

        var bytes = c.LogBytes(2, Tp);
        Assert.Equal(bytes, c.LogBytes(1, Tp));
        Assert.Equal(bytes, c.LogBytes(3, Tp));
        Assert.DoesNotContain(c.Values(1, Tp), v => v.StartsWith("lost", StringComparison.Ordinal));
        Assert.Equal(["committed0-0", "committed0-1"], c.Values(1, Tp).Take(2));
        Assert.Equal("new4-0", c.Values(1, Tp)[^1]);
        Assert.Equal([new EpochEntry(1, 0), new EpochEntry(2, 12)], c.Nodes[1].Log(Tp).LeaderEpochCache.Entries);
        Assert.Equal(c.Nodes[2].Log(Tp).LeaderEpochCache.Entries, c.Nodes[1].Log(Tp).LeaderEpochCache.Entries);
        // Node 1 is fetched by node 2's fetcher now, and back in the ISR once it caught up.
        Assert.Equal(2, c.Nodes[1].Replicas.Fetchers!.LeaderOf(Tp));
        await ReplicationCluster.Until(() => c.Registration(Tp).Isr.Contains(1), "node 1 back in the ISR");
    }

    [Fact]
    public async Task Offset_for_leader_epoch_answers_from_the_leaders_epoch_cache()
    {
        await using var c = await StartAsync();
        for (int i = 0; i < 2; i++) await c.ProduceAsync(1, Tp, ReplicationCluster.Batch($"e1-{i}"), acks: 1); // epoch 1: 0-5
        c.ChangePartition(Tp, bumpLeaderEpoch: true);                                                        // epoch 2: nothing
        c.ChangePartition(Tp, bumpLeaderEpoch: true);                                                        // epoch 3: 6-8
        await c.ProduceAsync(1, Tp, ReplicationCluster.Batch("e3"), acks: 1);
        Assert.Equal([new EpochEntry(1, 0), new EpochEntry(3, 6)], c.Nodes[1].Log(Tp).LeaderEpochCache.Entries);

        async Task<OffsetForLeaderEpochResponse.EpochEndOffset> Ask(int node, int epoch, int current = -1, short version = 4)
        {
            var request = new OffsetForLeaderEpochRequest
            {
                ReplicaId = -1,
                Topics = [new() { Topic = Tp.Topic, Partitions = [new() { Partition = 0, LeaderEpoch = epoch, CurrentLeaderEpoch = current }] }],
            };
            var r = await c.ClientOf(0).SendAsync<OffsetForLeaderEpochResponse>(node, request, version, CancellationToken.None);
            return r.Topics.Single().Partitions.Single();
        }

        static (ErrorCode, int, long) Of(OffsetForLeaderEpochResponse.EpochEndOffset e) => ((ErrorCode)e.ErrorCode, e.LeaderEpoch, e.EndOffset);
        Assert.Equal((ErrorCode.None, 1, 6L), Of(await Ask(1, 1, current: 3)));
        Assert.Equal((ErrorCode.None, 1, 6L), Of(await Ask(1, 2)));     // unknown epoch: the largest below it
        Assert.Equal((ErrorCode.None, 3, 9L), Of(await Ask(1, 3)));     // the current epoch ends at the log end
        Assert.Equal((ErrorCode.None, 0, 0L), Of(await Ask(1, 0)));     // below every epoch
        Assert.Equal((ErrorCode.None, -1, -1L), Of(await Ask(1, 7)));   // above every epoch
        Assert.Equal((ErrorCode.FencedLeaderEpoch, -1, -1L), Of(await Ask(1, 1, current: 2)));
        Assert.Equal((ErrorCode.UnknownLeaderEpoch, -1, -1L), Of(await Ask(1, 1, current: 4)));
        Assert.Equal((ErrorCode.NotLeaderOrFollower, -1, -1L), Of(await Ask(2, 1)));
        Assert.Equal((ErrorCode.None, -1, 6L), Of(await Ask(1, 1, version: 0))); // v0 has no epoch in the answer
        Assert.Equal((ErrorCode.None, 1, 6L), Of(await Ask(1, 1, version: 2)));
        var unknown = new OffsetForLeaderEpochRequest { Topics = [new() { Topic = "nope", Partitions = [new() { Partition = 0, LeaderEpoch = 1 }] }] };
        var u = await c.ClientOf(0).SendAsync<OffsetForLeaderEpochResponse>(1, unknown, 4, CancellationToken.None);
        Assert.Equal((short)ErrorCode.UnknownTopicOrPartition, u.Topics.Single().Partitions.Single().ErrorCode);
    }

    [Fact]
    public async Task A_fetch_waiting_on_a_leader_that_loses_its_leadership_is_answered_at_once()
    {
        await using var c = await StartAsync();
        await c.ProduceAsync(1, Tp, ReplicationCluster.Batch("a"), acks: -1);
        await AllCaughtUp(c, 1, 2, 3);
        long end = c.Nodes[1].Log(Tp).LogEndOffset;
        int epoch = c.Registration(Tp).LeaderEpoch;
        var topicId = c.Image.Topic(Tp.Topic)!.Id;
        // A consumer long-polls at the end of the log (nothing to read: it waits up to 20 s)...
        int taken = c.Taken(0, 1, ApiKey.Fetch);
        var consumer = c.ClientOf(0).SendAsync<FetchResponse>(1, new FetchRequest
        {
            MaxWaitMs = 30_000,
            MinBytes = 1,
            ReplicaId = -1,
            Topics = [new() { Topic = Tp.Topic, TopicId = topicId, Partitions = [new() { Partition = 0, CurrentLeaderEpoch = epoch, FetchOffset = end, PartitionMaxBytes = 1 << 20 }] }],
        }, 12, CancellationToken.None);
        // Parked on broker 1 (the event, not a sleep) before the leadership moves.
        await ReplicationCluster.Until(() => c.Taken(0, 1, ApiKey.Fetch) > taken, "the consumer's fetch parked on broker 1");
        Assert.False(consumer.IsCompleted);
        // ...and the leadership moves to broker 2: the wait ends with the error a new fetch would get.
        var sw = System.Diagnostics.Stopwatch.StartNew();
        c.ChangePartition(Tp, leader: 2);
        var r = (await consumer).Responses.Single().Partitions.Single();
        Assert.Equal((short)ErrorCode.FencedLeaderEpoch, r.ErrorCode);
        Assert.Equal(0, r.Records?.Length ?? 0);
        // Woken by the change, not timed out: well under its 30 s max wait.
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), $"answered after {sw.Elapsed}");
    }

    [Fact]
    public async Task Fetches_are_fenced_by_leader_epoch_and_followers_point_clients_to_the_leader()
    {
        await using var c = await StartAsync();
        await c.ProduceAsync(1, Tp, ReplicationCluster.Batch("a"), acks: -1);
        c.ChangePartition(Tp, bumpLeaderEpoch: true); // epoch 2
        var topicId = c.Image.Topic(Tp.Topic)!.Id;

        async Task<FetchResponse> Fetch(int node, int replicaId, int currentEpoch, short version = 17, int lastFetchedEpoch = -1, long offset = 0)
        {
            var request = new FetchRequest
            {
                MaxWaitMs = 0,
                MinBytes = 1,
                ReplicaState = new() { ReplicaId = replicaId, ReplicaEpoch = -1 },
                ReplicaId = replicaId,
                Topics = [new() { Topic = Tp.Topic, TopicId = topicId, Partitions = [new() { Partition = 0, CurrentLeaderEpoch = currentEpoch, FetchOffset = offset, LastFetchedEpoch = lastFetchedEpoch, PartitionMaxBytes = 1 << 20 }] }],
            };
            return await c.ClientOf(0).SendAsync<FetchResponse>(node, request, version, CancellationToken.None);
        }

        static FetchResponse.PartitionData Part(FetchResponse r) => r.Responses.Single().Partitions.Single();
        Assert.Equal((short)ErrorCode.FencedLeaderEpoch, Part(await Fetch(1, 3, currentEpoch: 1)).ErrorCode);
        Assert.Equal((short)ErrorCode.UnknownLeaderEpoch, Part(await Fetch(1, 3, currentEpoch: 3)).ErrorCode);
        Assert.Equal((short)ErrorCode.NotLeaderOrFollower, Part(await Fetch(1, 9, currentEpoch: 2)).ErrorCode); // not a replica
        var ok = Part(await Fetch(1, 3, currentEpoch: 2, version: 14));
        Assert.Equal((short)ErrorCode.None, ok.ErrorCode);
        Assert.True(ok.Records!.Length > 0);
        Assert.Equal(3, ok.HighWatermark);

        // A follower whose last epoch ended earlier on the leader than its fetch offset is told where to cut.
        var diverging = Part(await Fetch(1, 3, currentEpoch: 2, lastFetchedEpoch: 1, offset: 5));
        Assert.Equal((1, 3L), (diverging.DivergingEpoch.Epoch, diverging.DivergingEpoch.EndOffset));
        Assert.Equal(0, diverging.Records!.Length);

        // A replica fetching from another follower: NOT_LEADER_OR_FOLLOWER, the leader, and (v16+) where to find it.
        var fromFollower = await Fetch(2, 3, currentEpoch: 2);
        var p = Part(fromFollower);
        Assert.Equal((short)ErrorCode.NotLeaderOrFollower, p.ErrorCode);
        Assert.Equal((1, 2), (p.CurrentLeader.LeaderId, p.CurrentLeader.LeaderEpoch));
        var ep = fromFollower.NodeEndpoints.Single();
        Assert.Equal((1, "broker1.test", 9001, "rack1"), (ep.NodeId, ep.Host, ep.Port, ep.Rack));
        // So does a consumer before Fetch v11 (KIP-392 lets only v11+ consumers read from followers).
        Assert.Equal((short)ErrorCode.NotLeaderOrFollower, Part(await Fetch(2, -1, currentEpoch: 2, version: 10)).ErrorCode);

        // Produce to a follower: the same hint (Produce v10+).
        var produce = await c.ProduceAsync(2, Tp, ReplicationCluster.Batch("b"), acks: 1);
        Assert.Equal((short)ErrorCode.NotLeaderOrFollower, produce.ErrorCode);
        Assert.Equal((1, 2), (produce.CurrentLeader.LeaderId, produce.CurrentLeader.LeaderEpoch));
    }

    [Fact]
    public async Task A_followers_high_watermark_is_checkpointed_and_a_removed_replica_stops_fetching()
    {
        await using var c = await StartAsync();
        for (int i = 0; i < 3; i++) await c.ProduceAsync(1, Tp, ReplicationCluster.Batch($"a{i}"), acks: -1);
        await AllCaughtUp(c, 1, 2, 3);
        c.Nodes[3].Logs.WriteHighWatermarkCheckpoints();
        var saved = new Storage.Checkpoints.OffsetCheckpointFile(Path.Combine(c.Nodes[3].Dir, Storage.Checkpoints.OffsetCheckpointFile.Replication)).Read();
        Assert.Equal(9, saved[Tp]);

        // Replica 3 leaves the replica set: its fetcher stops and its log goes.
        c.ChangePartition(Tp, isr: [1, 2], replicas: [1, 2]);
        await ReplicationCluster.Until(() => c.Nodes[3].Replicas.GetPartition(Tp) is null, "replica 3 removed");
        Assert.Null(c.Nodes[3].Replicas.Fetchers!.LeaderOf(Tp));
        Assert.Equal(0, c.Nodes[3].Replicas.Fetchers!.FetcherCount);
        Assert.Equal(0, (await c.ProduceAsync(1, Tp, ReplicationCluster.Batch("b"), acks: -1)).ErrorCode);
    }
}
