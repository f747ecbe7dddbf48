using System.Text;
using Freshet.Broker.Replication;
using Freshet.Protocol;
using Freshet.Protocol.Records;

namespace Freshet.Server.Tests.Replication;

/// <summary>
/// ReplicaManager's read API (<see cref="ReplicaManager.FetchMessagesAsync"/>), which every fetch goes through: the
/// bound a read stops at is the fetch's <see cref="FetchIsolation"/> (the log end for followers, the high watermark for
/// consumers), and the replica's role and leader epoch are checked before the log is looked at.
/// </summary>
public sealed class FetchReadTests
{
    private static readonly TopicPartition Tp = new("reads", 0);

    private static FetchPartitionInfo At(long offset, int currentLeaderEpoch = -1) => new(Tp, offset, 1 << 20, currentLeaderEpoch, -1, -1);

    private static List<string> Values(FetchPartitionData r)
    {
        var values = new List<string>();
        if (r.Records is null) return values;
        ReadOnlySpan<byte> bytes = r.Records.ReadAll();
        while (bytes.Length > 0)
        {
            int size = new RecordBatch(bytes).SizeInBytes;
            foreach (var rec in new BatchRecords(bytes[..size], null)) values.Add(Encoding.UTF8.GetString(rec.Record.Value));
            bytes = bytes[size..];
        }
        return values;
    }

    [Fact]
    public async Task A_consumer_reads_up_to_the_high_watermark_and_a_follower_up_to_the_log_end()
    {
        await using var c = new ReplicationCluster(3);
        c.CreateTopic(Tp.Topic, 1, [1, 2, 3]);
        await ReplicationCluster.Until(() => c.Nodes.Values.All(n => n.Replicas.GetPartition(Tp) is not null), "partitions created");
        Assert.Equal(0, (await c.ProduceAsync(1, Tp, ReplicationCluster.Batch("committed"), acks: -1)).ErrorCode);
        // The followers stop fetching: what is produced now is on the leader's log only, above the high watermark.
        c.Cut(2, 1);
        c.Cut(3, 1);
        Assert.Equal(0, (await c.ProduceAsync(1, Tp, ReplicationCluster.Batch("uncommitted"), acks: 1)).ErrorCode);
        var leader = c.Nodes[1].Replicas;
        Assert.Equal(3, leader.GetPartition(Tp)!.HighWatermark);

        var consumer = new FetchParams { Isolation = FetchIsolation.HighWatermark, FetchOnlyLeader = false, MinBytes = 1, MinOneMessage = true };
        var read = (await leader.FetchMessagesAsync(consumer, [At(0)], c.Image, CancellationToken.None)).Single();
        Assert.Equal((ErrorCode.None, 3L, 0L), (read.Error, read.HighWatermark, read.LogStartOffset));
        Assert.Equal(["committed-0", "committed-1", "committed-2"], Values(read));
        var atHighWatermark = (await leader.FetchMessagesAsync(consumer, [At(3)], c.Image, CancellationToken.None)).Single();
        Assert.Equal((ErrorCode.None, 3L), (atHighWatermark.Error, atHighWatermark.HighWatermark));
        Assert.Null(atHighWatermark.Records);

        var follower = new FetchParams { ReplicaId = 2, Isolation = FetchIsolation.LogEnd, FetchOnlyLeader = true, MinBytes = 1, MinOneMessage = true };
        var replicated = (await leader.FetchMessagesAsync(follower, [At(3)], c.Image, CancellationToken.None)).Single();
        Assert.Equal(ErrorCode.None, replicated.Error);
        Assert.Equal(["uncommitted-0", "uncommitted-1", "uncommitted-2"], Values(replicated));

        // Past the log end: out of range, with the offsets; a newer leader epoch than the replica's: unknown, without them.
        var past = (await leader.FetchMessagesAsync(consumer, [At(7)], c.Image, CancellationToken.None)).Single();
        Assert.Equal((ErrorCode.OffsetOutOfRange, 3L), (past.Error, past.HighWatermark));
        int epoch = leader.GetPartition(Tp)!.LeaderEpoch;
        var future = (await leader.FetchMessagesAsync(consumer, [At(0, epoch + 1)], c.Image, CancellationToken.None)).Single();
        Assert.Equal((ErrorCode.UnknownLeaderEpoch, -1L), (future.Error, future.HighWatermark));
        Assert.Null(future.Records);
        // A follower replica does not serve a fetch that only its leader may serve.
        var notLeader = (await c.Nodes[2].Replicas.FetchMessagesAsync(follower with { ReplicaId = 3 }, [At(0)], c.Image, CancellationToken.None)).Single();
        Assert.Equal(ErrorCode.NotLeaderOrFollower, notLeader.Error);
    }
}
