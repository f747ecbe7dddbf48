using Freshet.Metadata.Raft;
using Freshet.Protocol.Records;

namespace Freshet.Metadata.Tests.Raft;

public sealed class MemoryRaftLogTests
{
    private static byte[] Batch(long baseOffset, int epoch, int records)
    {
        using var b = new RecordBatchBuilder { BaseOffset = baseOffset, PartitionLeaderEpoch = epoch };
        for (int i = 0; i < records; i++) b.Append(0, null, new byte[] { (byte)i });
        return b.Build();
    }

    /// <summary>Epochs 1 (offsets 0-2), 3 (3-4), 4 (5-9).</summary>
    private static MemoryRaftLog ThreeEpochs()
    {
        var log = new MemoryRaftLog();
        log.AppendAsLeader(Batch(0, 1, 3), 1);
        log.AppendAsLeader(Batch(3, 3, 2), 3);
        log.AppendAsLeader(Batch(5, 4, 5), 4);
        return log;
    }

    [Fact]
    public void EmptyLog()
    {
        var log = new MemoryRaftLog();
        Assert.Equal(0, log.EndOffset);
        Assert.Equal(0, log.LastFetchedEpoch);
        Assert.Equal(new OffsetAndEpoch(0, 0), log.EndOffsetForEpoch(0));
        Assert.Equal(new OffsetAndEpoch(0, 0), log.EndOffsetForEpoch(5));
        Assert.True(log.Read(0, 100).IsEmpty);
    }

    [Fact]
    public void EndOffsetForEpochIsTheLeaderEpochCache()
    {
        var log = ThreeEpochs();
        Assert.Equal(10, log.EndOffset);
        Assert.Equal(4, log.LastFetchedEpoch);
        Assert.Equal(new OffsetAndEpoch(0, 0), log.EndOffsetForEpoch(0));
        Assert.Equal(new OffsetAndEpoch(3, 1), log.EndOffsetForEpoch(1));
        Assert.Equal(new OffsetAndEpoch(3, 1), log.EndOffsetForEpoch(2)); // no epoch 2: epoch 1 ends at 3
        Assert.Equal(new OffsetAndEpoch(5, 3), log.EndOffsetForEpoch(3));
        Assert.Equal(new OffsetAndEpoch(10, 4), log.EndOffsetForEpoch(4));
        Assert.Equal(new OffsetAndEpoch(10, 4), log.EndOffsetForEpoch(9));
    }

    [Fact]
    public void TruncationDropsWholeBatchesAndEpochs()
    {
        var log = ThreeEpochs();
        log.TruncateTo(4); // inside the epoch-3 batch: it goes whole
        Assert.Equal(3, log.EndOffset);
        Assert.Equal(1, log.LastFetchedEpoch);
        Assert.Equal(new OffsetAndEpoch(3, 1), log.EndOffsetForEpoch(4));
        log.AppendAsFollower(Batch(3, 5, 1));
        Assert.Equal(new OffsetAndEpoch(4, 5), log.EndOffsetForEpoch(5));
    }

    [Fact]
    public void FollowerAppendSkipsWhatItHasAndRejectsGaps()
    {
        var log = ThreeEpochs();
        var bytes = log.Read(3, 1000).ToArray(); // batches at 3 and 5
        var copy = new MemoryRaftLog();
        copy.AppendAsFollower(log.Read(0, 10));
        Assert.Equal(3, copy.EndOffset);
        copy.AppendAsFollower(log.Read(0, 10_000)); // overlaps: skips the first batch
        Assert.Equal(10, copy.EndOffset);
        Assert.Throws<InvalidDataException>(() => new MemoryRaftLog().AppendAsFollower(bytes));
    }

    [Fact]
    public void ReadReturnsWholeBatchesUpToTheLimitButAtLeastOne()
    {
        var log = ThreeEpochs();
        var one = log.Read(4, 1);
        Assert.Equal(3, new RecordBatch(one.Span).BaseOffset);
        Assert.Equal(RecordBatch.PeekSize(one.Span), one.Length);
        var all = log.Read(0, 100_000);
        int pos = 0, count = 0;
        while (pos < all.Length)
        {
            pos += RecordBatch.PeekSize(all.Span[pos..]);
            count++;
        }
        Assert.Equal(3, count);
    }

    [Fact]
    public void CrashLosesOnlyUnflushedBatches()
    {
        var log = ThreeEpochs();
        Assert.Equal(0, log.FlushedEndOffset);
        log.Flush();
        log.AppendAsLeader(Batch(10, 4, 1), 4);
        log.AppendAsLeader(Batch(11, 4, 1), 4);
        for (int seed = 0; seed < 20; seed++)
        {
            var l = ThreeEpochs();
            l.Flush();
            l.AppendAsLeader(Batch(10, 4, 1), 4);
            l.AppendAsLeader(Batch(11, 4, 1), 4);
            l.Crash(new Random(seed));
            Assert.InRange(l.EndOffset, 10, 12);
            Assert.Equal(l.EndOffset, l.FlushedEndOffset);
        }
    }

    [Fact]
    public void SnapshotsMoveTheLogStart()
    {
        var log = ThreeEpochs();
        var id = new OffsetAndEpoch(5, 3);
        log.StoreSnapshot(new RaftSnapshot(id, new byte[] { 1, 2, 3 }));
        log.DeleteBeforeSnapshot(id);
        Assert.Equal(5, log.LogStartOffset);
        Assert.Equal(10, log.EndOffset);
        Assert.Equal(OffsetAndEpoch.Unknown, log.EndOffsetForEpoch(1)); // before what the log still knows
        Assert.Equal(new OffsetAndEpoch(5, 3), log.EndOffsetForEpoch(3));
        Assert.Equal(new OffsetAndEpoch(10, 4), log.EndOffsetForEpoch(4));
        Assert.True(log.TryReadSnapshotChunk(id, 1, 10, out long size, out var chunk));
        Assert.Equal(3, size);
        Assert.Equal(new byte[] { 2, 3 }, chunk.ToArray());
        Assert.False(log.TryReadSnapshotChunk(new OffsetAndEpoch(4, 3), 0, 10, out _, out _));

        var follower = new MemoryRaftLog();
        follower.AppendAsFollower(Batch(0, 1, 2));
        follower.StoreSnapshot(new RaftSnapshot(id, new byte[] { 1, 2, 3 }));
        follower.ResetToSnapshot(id);
        Assert.Equal(5, follower.LogStartOffset);
        Assert.Equal(5, follower.EndOffset);
        Assert.Equal(3, follower.LastFetchedEpoch);
        Assert.Equal(id, follower.LatestSnapshotId);
        follower.AppendAsFollower(log.Read(5, 1000));
        Assert.Equal(10, follower.EndOffset);
        Assert.Equal(new OffsetAndEpoch(5, 3), follower.EndOffsetForEpoch(3));
    }
}
