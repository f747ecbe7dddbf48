using System.Diagnostics;
using System.Text;
using Freshet.Broker;
using Freshet.Broker.Replication;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;

namespace Freshet.Server.Tests.Replication;

/// <summary>
/// KIP-392 between brokers in one process: the leader naming a preferred read replica for a
/// consumer's rack (replica.selector.class=RackAwareReplicaSelector), and followers serving
/// consumer fetches up to their own high watermark, with Kafka's errors (offset out of range past
/// the follower's log end, leader epoch fencing, leader-only before Fetch v11 and for ListOffsets).
/// </summary>
public sealed class FollowerFetchTests
{
    private static readonly TopicPartition Tp = new("reads", 0);

    private static async Task<ReplicationCluster> StartAsync(ReplicaSelector selector = ReplicaSelector.RackAware, string?[]? racks = null,
        ReplicationOptions? options = null)
    {
        var c = new ReplicationCluster(3, options, selector: selector, racks: racks);
        c.CreateTopic(Tp.Topic, 1, [1, 2, 3]);
        await ReplicationCluster.Until(() => c.Nodes.Values.All(n => n.Replicas.GetPartition(Tp) is not null), "partitions created");
        return c;
    }

    /// <summary>Produces <paramref name="batches"/> batches of 3 records with acks=all and waits until every replica has them and knows they are committed.</summary>
    private static async Task ProduceCommittedAsync(ReplicationCluster c, string tag, int batches)
    {
        for (int i = 0; i < batches; i++) Assert.Equal(0, (await c.ProduceAsync(1, Tp, ReplicationCluster.Batch($"{tag}{i}"), acks: -1)).ErrorCode);
        long end = c.Nodes[1].Log(Tp).LogEndOffset;
        await ReplicationCluster.Until(() => c.Nodes.Values.All(n => n.Log(Tp).LogEndOffset == end && n.Log(Tp).HighWatermark == end), $"every replica committed to {end}");
    }

    private static async Task<FetchResponse> FetchAsync(ReplicationCluster c, int node, long offset, string rack = "", short version = 17,
        int currentEpoch = -1, int maxWaitMs = 0, sbyte isolation = 0, int replicaId = -1)
    {
        var request = new FetchRequest
        {
            MaxWaitMs = maxWaitMs,
            MinBytes = 1,
            MaxBytes = 1 << 20,
            IsolationLevel = isolation,
            ReplicaId = replicaId,
            ReplicaState = new() { ReplicaId = replicaId, ReplicaEpoch = -1 },
            RackId = rack,
            Topics =
            [
                new()
                {
                    Topic = Tp.Topic, TopicId = c.Image.Topic(Tp.Topic)!.Id,
                    Partitions = [new() { Partition = 0, CurrentLeaderEpoch = currentEpoch, FetchOffset = offset, LastFetchedEpoch = -1, PartitionMaxBytes = 1 << 20 }],
                },
            ],
        };
        return await c.ClientOf(0).SendAsync<FetchResponse>(node, request, version, CancellationToken.None);
    }

    private static FetchResponse.PartitionData Part(FetchResponse r) => r.Responses.Single().Partitions.Single();

    /// <summary>The record values of a fetch response's partition, in order.</summary>
    private static List<string> Values(FetchResponse.PartitionData p)
    {
        var values = new List<string>();
        var bytes = p.Records?.Memory ?? ReadOnlyMemory<byte>.Empty;
        while (bytes.Length > 0)
        {
            int size = new RecordBatch(bytes.Span).SizeInBytes;
            foreach (var r in new BatchRecords(bytes.Span[..size], null)) values.Add(Encoding.UTF8.GetString(r.Record.Value));
            bytes = bytes[size..];
        }
        return values;
    }

    [Fact]
    public async Task The_leader_sends_a_consumer_to_the_in_sync_follower_in_its_rack_and_the_follower_serves_it()
    {
        await using var c = await StartAsync();
        await ProduceCommittedAsync(c, "a", 4);

        // Rack 2 is broker 2's: the leader names it at once (no long poll), with no records and its own offsets.
        // Nothing new arrives, so a long-polled answer would come only after the 30 s max wait; 20 s leaves a
        // loaded machine ample time for one that comes at once.
        var sw = Stopwatch.StartNew();
        var redirected = Part(await FetchAsync(c, 1, 0, rack: "rack2", maxWaitMs: 30_000));
        Assert.True(sw.ElapsedMilliseconds < 20_000, $"the redirect took {sw.ElapsedMilliseconds} ms");
        Assert.Equal((short)ErrorCode.None, redirected.ErrorCode);
        Assert.Equal(2, redirected.PreferredReadReplica);
        Assert.Equal(0, redirected.Records!.Length);
        Assert.Equal((12L, 12L, 0L), (redirected.HighWatermark, redirected.LastStableOffset, redirected.LogStartOffset));

        // Broker 2 serves the same fetch: every committed record, in order.
        var served = Part(await FetchAsync(c, 2, 0, rack: "rack2"));
        Assert.Equal((short)ErrorCode.None, served.ErrorCode);
        Assert.Equal(-1, served.PreferredReadReplica);
        Assert.Equal(12, served.HighWatermark);
        Assert.Equal(c.Values(1, Tp), Values(served));
        Assert.Equal(12, Values(served).Count);

        // The leader's own rack, a rack no replica is in, no rack, and a consumer before v11 all read from the leader.
        foreach (var (rack, version) in new[] { ("rack1", (short)17), ("elsewhere", (short)17), ("", (short)17), ("rack2", (short)10) })
        {
            var here = Part(await FetchAsync(c, 1, 0, rack: rack, version: version));
            Assert.Equal((short)ErrorCode.None, here.ErrorCode);
            Assert.Equal(-1, here.PreferredReadReplica);
            Assert.Equal(12, Values(here).Count);
        }
    }

    [Fact]
    public async Task Without_a_replica_selector_consumers_read_from_the_leader_whatever_their_rack()
    {
        await using var c = await StartAsync(ReplicaSelector.Leader);
        await ProduceCommittedAsync(c, "a", 2);
        var p = Part(await FetchAsync(c, 1, 0, rack: "rack2"));
        Assert.Equal(-1, p.PreferredReadReplica);
        Assert.Equal(6, Values(p).Count);
        // Followers still serve a v11+ consumer that comes to them (Kafka's rule, independent of the selector).
        Assert.Equal(6, Values(Part(await FetchAsync(c, 3, 0, rack: "rack3"))).Count);
    }

    [Fact]
    public async Task Only_an_in_sync_unfenced_follower_that_has_the_offset_is_preferred()
    {
        await using var c = await StartAsync();
        await ProduceCommittedAsync(c, "a", 2); // 0-5 everywhere

        // Follower 2 is cut off: the leader takes 6-8, which broker 2 does not have.
        c.Cut(2, 1);
        Assert.Equal(0, (await c.ProduceAsync(1, Tp, ReplicationCluster.Batch("b"), acks: 1)).ErrorCode);
        await ReplicationCluster.Until(() => c.Nodes[1].Partition(Tp).GetFollowerState(3)!.LogEndOffset == 9, "the leader saw follower 3 at 9");
        Assert.Equal(2, Part(await FetchAsync(c, 1, 3, rack: "rack2")).PreferredReadReplica);  // broker 2 has offset 3
        Assert.Equal(2, Part(await FetchAsync(c, 1, 6, rack: "rack2")).PreferredReadReplica);  // and its end, 6
        var leader = Part(await FetchAsync(c, 1, 7, rack: "rack2"));                           // not 7
        Assert.Equal((short)ErrorCode.None, leader.ErrorCode);
        Assert.Equal(-1, leader.PreferredReadReplica);

        // Out of the ISR: never preferred, even for an offset it has.
        c.Clock.Advance(c.Replication.ReplicaLagTimeMaxMs + 1);
        Assert.Equal(1, c.Nodes[1].Replicas.MaybeShrinkIsrs());
        await ReplicationCluster.Until(() => !c.Registration(Tp).Isr.Contains(2), "broker 2 out of the ISR");
        Assert.Equal(-1, Part(await FetchAsync(c, 1, 0, rack: "rack2")).PreferredReadReplica);

        // Follower 3 is in the ISR, but fenced: not preferred until unfenced.
        Assert.Equal(3, Part(await FetchAsync(c, 1, 0, rack: "rack3")).PreferredReadReplica);
        c.SetFenced(3, true);
        Assert.Equal(-1, Part(await FetchAsync(c, 1, 0, rack: "rack3")).PreferredReadReplica);
        c.SetFenced(3, false);
        Assert.Equal(3, Part(await FetchAsync(c, 1, 0, rack: "rack3")).PreferredReadReplica);
    }

    [Fact]
    public async Task In_a_rack_with_the_leader_the_leader_serves_and_among_followers_the_most_caught_up_wins()
    {
        // Brokers 2 and 3 share rack "east"; broker 1 (the leader) is in "west".
        await using var c = await StartAsync(racks: ["west", "east", "east"]);
        await ProduceCommittedAsync(c, "a", 2);
        // Both have everything and caught up at the same (manual) time: the higher id wins the tie.
        Assert.Equal(3, Part(await FetchAsync(c, 1, 0, rack: "east")).PreferredReadReplica);
        // Broker 3 falls behind (still in the ISR): broker 2 has more.
        c.Cut(3, 1);
        Assert.Equal(0, (await c.ProduceAsync(1, Tp, ReplicationCluster.Batch("b"), acks: 1)).ErrorCode);
        await ReplicationCluster.Until(() => c.Nodes[1].Partition(Tp).GetFollowerState(2)!.LogEndOffset == 9, "the leader saw broker 2 at 9");
        Assert.Equal(2, Part(await FetchAsync(c, 1, 0, rack: "east")).PreferredReadReplica);
        c.Cut(3, 1, cut: false);

        // The leader in the client's rack: the leader, never a follower there.
        await using var d = await StartAsync(racks: ["east", "east", "west"]);
        await ProduceCommittedAsync(d, "a", 1);
        Assert.Equal(-1, Part(await FetchAsync(d, 1, 0, rack: "east")).PreferredReadReplica);
        Assert.Equal(3, Part(await FetchAsync(d, 1, 0, rack: "west")).PreferredReadReplica);
    }

    [Fact]
    public async Task A_follower_serves_consumers_up_to_its_own_high_watermark_and_answers_out_of_range_past_its_log_end()
    {
        await using var c = await StartAsync();
        await ProduceCommittedAsync(c, "a", 1); // 0-2 committed everywhere
        // Follower 3 is cut off and still in the ISR: the leader's high watermark stays at 3 while
        // broker 2 gets 3-5 (its log end 6, its high watermark 3).
        c.Cut(3, 1);
        Assert.Equal(0, (await c.ProduceAsync(1, Tp, ReplicationCluster.Batch("b"), acks: 1)).ErrorCode);
        await ReplicationCluster.Until(() => c.Nodes[2].Log(Tp).LogEndOffset == 6, "follower 2 has 3-5");
        Assert.Equal(3, c.Nodes[2].Log(Tp).HighWatermark);

        foreach (sbyte isolation in new sbyte[] { 0, 1 }) // read_uncommitted, read_committed (the last stable offset is the high watermark)
        {
            var p = Part(await FetchAsync(c, 2, 0, isolation: isolation));
            Assert.Equal((short)ErrorCode.None, p.ErrorCode);
            Assert.Equal(["a0-0", "a0-1", "a0-2"], Values(p));
            Assert.Equal((3L, 3L), (p.HighWatermark, p.LastStableOffset));
        }
        // Between the follower's high watermark and its log end: nothing yet, no error.
        var pending = Part(await FetchAsync(c, 2, 4));
        Assert.Equal((short)ErrorCode.None, pending.ErrorCode);
        Assert.Empty(Values(pending));
        // Past the follower's log end (where a consumer that read further from the leader would be):
        // OFFSET_OUT_OF_RANGE with the follower's high watermark, which Kafka's clients take as "back to
        // the leader" rather than an offset reset.
        var beyond = Part(await FetchAsync(c, 2, 7));
        Assert.Equal((short)ErrorCode.OffsetOutOfRange, beyond.ErrorCode);
        Assert.Equal(3, beyond.HighWatermark);

        // A consumer long-polling the follower at its high watermark is answered as soon as the
        // follower learns the new one from the leader's fetch responses, long before its max wait.
        var sw = Stopwatch.StartNew();
        int taken = c.Taken(0, 2, ApiKey.Fetch);
        var waiting = FetchAsync(c, 2, 3, maxWaitMs: 30_000);
        // Parked on broker 2 before the cut is lifted (the event, not a sleep): the answer below must wake it.
        await ReplicationCluster.Until(() => c.Taken(0, 2, ApiKey.Fetch) > taken, "the consumer's fetch parked on broker 2");
        Assert.False(waiting.IsCompleted); // broker 2 cannot commit past 3 while broker 3 is cut off
        c.Cut(3, 1, cut: false);
        var woken = Part(await waiting);
        // The records and the high watermark of 6 prove it was answered after the cut was lifted; the bound
        // (20 s, under its 30 s max wait) that it was woken rather than timed out.
        Assert.True(sw.ElapsedMilliseconds < 20_000, $"answered after {sw.ElapsedMilliseconds} ms");
        Assert.Equal(["b-0", "b-1", "b-2"], Values(woken));
        Assert.Equal(6, woken.HighWatermark);
    }

    [Theory]
    [InlineData(ReplicaSelector.RackAware)]
    [InlineData(ReplicaSelector.Leader)]
    public async Task With_a_replica_selector_followers_learn_a_new_high_watermark_without_waiting_out_their_long_poll(ReplicaSelector selector)
    {
        // Once every replica has a record, the leader's high watermark moves on the last follower fetch;
        // without a selector (Kafka's behaviour since 2.6, KAFKA-9952) the followers hear of it when their
        // next long poll ends, with one they hear at once. The followers' long polls are 30 s with a
        // selector (so "at once" can be given a generous bound well under it) and 4 s without (so the
        // test does not wait long for the poll to end).
        bool pushes = selector == ReplicaSelector.RackAware;
        int followerWaitMs = pushes ? 30_000 : 4_000;
        var options = new ReplicationOptions { ReplicaFetchWaitMaxMs = followerWaitMs, ReplicaFetchBackoffMs = 50, AlterPartitionRetryBackoffMs = 20 };
        await using var c = await StartAsync(selector, options: options);
        await ProduceCommittedAsync(c, "a", 1);
        int taken = c.Taken(0, 2, ApiKey.Fetch);
        var waiting = FetchAsync(c, 2, 3, maxWaitMs: 30_000); // a consumer long-polling follower 2 at its end
        await ReplicationCluster.Until(() => c.Taken(0, 2, ApiKey.Fetch) > taken, "the consumer's fetch parked on broker 2");
        var sw = Stopwatch.StartNew();
        Assert.Equal(0, (await c.ProduceAsync(1, Tp, ReplicationCluster.Batch("b"), acks: -1)).ErrorCode);
        Assert.Equal(6, c.Nodes[1].Log(Tp).HighWatermark);
        var p = Part(await waiting);
        long ms = sw.ElapsedMilliseconds;
        Assert.Equal(["b-0", "b-1", "b-2"], Values(p));
        if (pushes)
        {
            // Well before the follower's 30 s long poll could have ended.
            Assert.True(ms < 15_000, $"the follower's consumer waited {ms} ms");
        }
        else
        {
            // Follower 2 can only be told of the high watermark of 6 by a fetch it sends at offset 6, after
            // taking the batch produced once this stopwatch ran; the leader holds that fetch for its whole
            // 4 s wait (nothing new comes), so this clock contains that wait (load only lengthens it; the
            // 100 ms are for the coarse clock the broker's deadline is read on).
            Assert.True(ms >= followerWaitMs - 100, $"the follower's consumer got the records after {ms} ms: the high watermark reached it before the follower's long poll ended");
        }
    }

    [Fact]
    public async Task Leader_epochs_are_checked_on_followers_and_only_leaders_serve_old_consumers_replicas_and_list_offsets()
    {
        await using var c = await StartAsync();
        await ProduceCommittedAsync(c, "a", 1);
        c.ChangePartition(Tp, bumpLeaderEpoch: true); // epoch 2
        await ReplicationCluster.Until(() => c.Nodes[2].Partition(Tp).LeaderEpoch == 2, "broker 2 at epoch 2");
        await ReplicationCluster.Until(() => c.Nodes[2].Log(Tp).HighWatermark == 3, "broker 2's high watermark");

        var current = Part(await FetchAsync(c, 2, 0, currentEpoch: 2));
        Assert.Equal((short)ErrorCode.None, current.ErrorCode);
        Assert.Equal(3, Values(current).Count);
        var fenced = await FetchAsync(c, 2, 0, currentEpoch: 1);
        Assert.Equal((short)ErrorCode.FencedLeaderEpoch, Part(fenced).ErrorCode);
        Assert.Equal((1, 2), (Part(fenced).CurrentLeader.LeaderId, Part(fenced).CurrentLeader.LeaderEpoch));
        Assert.Equal(1, fenced.NodeEndpoints.Single().NodeId);
        Assert.Equal((short)ErrorCode.UnknownLeaderEpoch, Part(await FetchAsync(c, 2, 0, currentEpoch: 3)).ErrorCode);

        // Leader-only: a consumer before v11, another replica, ListOffsets.
        Assert.Equal((short)ErrorCode.NotLeaderOrFollower, Part(await FetchAsync(c, 2, 0, version: 10)).ErrorCode);
        Assert.Equal((short)ErrorCode.NotLeaderOrFollower, Part(await FetchAsync(c, 2, 0, currentEpoch: 2, replicaId: 3)).ErrorCode);
        var list = new ListOffsetsRequest
        {
            ReplicaId = -1,
            Topics = [new() { Name = Tp.Topic, Partitions = [new() { PartitionIndex = 0, CurrentLeaderEpoch = 2, Timestamp = -1 }] }],
        };
        var offsets = await c.ClientOf(0).SendAsync<ListOffsetsResponse>(2, list, 7, CancellationToken.None);
        Assert.Equal((short)ErrorCode.NotLeaderOrFollower, offsets.Topics.Single().Partitions.Single().ErrorCode);
        var atLeader = await c.ClientOf(0).SendAsync<ListOffsetsResponse>(1, list, 7, CancellationToken.None);
        Assert.Equal(3, atLeader.Topics.Single().Partitions.Single().Offset);
    }
}
