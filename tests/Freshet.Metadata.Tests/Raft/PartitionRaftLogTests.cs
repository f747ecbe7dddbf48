using Freshet.Metadata.Log;
using Freshet.Metadata.Raft;
using Freshet.Protocol;
using Freshet.Protocol.MetadataRecords;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using Freshet.Storage.Segments;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Metadata.Tests.Raft;

/// <summary>
/// The <see cref="IRaftLog"/> contract, run against <see cref="MemoryRaftLog"/> (the reference the
/// simulation validated) and <see cref="PartitionRaftLog"/> (the file-backed production log).
/// </summary>
public abstract class RaftLogContractTests : IDisposable
{
    /// <summary>A new empty log.</summary>
    protected abstract IRaftLog NewLog();

    /// <summary>The log after a clean close and reopen (or the same log, for one in memory).</summary>
    protected abstract IRaftLog Reopen(IRaftLog log);

    public virtual void Dispose() => GC.SuppressFinalize(this);

    internal static byte[] Batch(long baseOffset, int epoch, int records, int valueBytes = 1)
    {
        using var b = new RecordBatchBuilder { BaseOffset = baseOffset, PartitionLeaderEpoch = epoch };
        for (int i = 0; i < records; i++)
        {
            var v = new byte[valueBytes];
            v[0] = (byte)i;
            b.Append(1_000 + i, null, v);
        }
        return b.Build();
    }

    /// <summary>Epochs 1 (offsets 0-2), 3 (3-4), 4 (5-9).</summary>
    private IRaftLog ThreeEpochs()
    {
        var log = NewLog();
        Assert.Equal(2, log.AppendAsLeader(Batch(0, 1, 3), 1));
        Assert.Equal(4, log.AppendAsLeader(Batch(3, 3, 2), 3));
        Assert.Equal(9, log.AppendAsLeader(Batch(5, 4, 5), 4));
        return log;
    }

    private static List<(long BaseOffset, int Epoch, bool CrcValid)> Batches(ReadOnlyMemory<byte> bytes)
    {
        var list = new List<(long, int, bool)>();
        int pos = 0;
        while (pos < bytes.Length)
        {
            int size = RecordBatch.PeekSize(bytes.Span[pos..]);
            var b = new RecordBatch(bytes.Span.Slice(pos, size));
            list.Add((b.BaseOffset, b.PartitionLeaderEpoch, b.IsCrcValid));
            pos += size;
        }
        return list;
    }

    [Fact]
    public void EmptyLog()
    {
        var log = NewLog();
        Assert.Equal(0, log.LogStartOffset);
        Assert.Equal(0, log.EndOffset);
        Assert.Equal(0, log.FlushedEndOffset);
        Assert.Equal(0, log.LastFetchedEpoch);
        Assert.Null(log.LatestSnapshotId);
        Assert.Equal(new OffsetAndEpoch(0, 0), log.EndOffsetForEpoch(0));
        Assert.Equal(new OffsetAndEpoch(0, 0), log.EndOffsetForEpoch(5));
        Assert.True(log.Read(0, 100).IsEmpty);
        Assert.Equal(0, log.ReadForFetch(0, 100).Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => log.Read(1, 100));
    }

    [Fact]
    public void LeaderAppendsKeepTheEpochAndReturnTheLastOffset()
    {
        var log = ThreeEpochs();
        Assert.Equal(10, log.EndOffset);
        var batches = Batches(log.Read(0, 100_000));
        Assert.Equal([0L, 3, 5], batches.Select(b => b.BaseOffset));
        Assert.Equal([1, 3, 4], batches.Select(b => b.Epoch));
        Assert.All(batches, b => Assert.True(b.CrcValid));

        Assert.Throws<ArgumentException>(() => log.AppendAsLeader(Batch(11, 4, 1), 4)); // not at the end
        Assert.Throws<ArgumentException>(() => log.AppendAsLeader(Batch(10, 4, 1), 5)); // header says 4
        Assert.Throws<ArgumentException>(() => log.AppendAsLeader((byte[])[.. Batch(10, 4, 1), .. Batch(11, 4, 1)], 4)); // two batches
        Assert.Throws<InvalidOperationException>(() => log.AppendAsLeader(Batch(10, 2, 1), 2)); // older epoch
        Assert.Equal(10, log.EndOffset);
    }

    [Fact]
    public void EndOffsetForEpochIsTheLeaderEpochCache()
    {
        var log = ThreeEpochs();
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
        log.TruncateTo(3); // at the end: nothing
        log.TruncateTo(50);
        Assert.Equal(3, log.EndOffset);
        log.AppendAsFollower(Batch(3, 5, 1));
        Assert.Equal(new OffsetAndEpoch(4, 5), log.EndOffsetForEpoch(5));
        Assert.Equal(new OffsetAndEpoch(3, 1), log.EndOffsetForEpoch(4));
        log.TruncateTo(0);
        Assert.Equal(0, log.EndOffset);
        Assert.Equal(0, log.LastFetchedEpoch);
        Assert.Equal(new OffsetAndEpoch(0, 0), log.EndOffsetForEpoch(5));
    }

    [Fact]
    public void FollowerAppendSkipsWhatItHasAndRejectsGaps()
    {
        var log = ThreeEpochs();
        var bytes = log.Read(3, 1000).ToArray(); // batches at 3 and 5
        var copy = NewLog();
        Assert.Equal(3, copy.AppendAsFollower(log.Read(0, 10)));
        Assert.Equal(10, copy.AppendAsFollower(log.Read(0, 10_000))); // overlaps: skips the first batch
        Assert.Equal(new OffsetAndEpoch(5, 3), copy.EndOffsetForEpoch(3));
        Assert.Equal(10, copy.AppendAsFollower(ReadOnlyMemory<byte>.Empty));
        Assert.Throws<InvalidDataException>(() => NewLog().AppendAsFollower(bytes)); // starts at 3 in an empty log
        Assert.Throws<InvalidDataException>(() => NewLog().AppendAsFollower(bytes.AsMemory(0, bytes.Length - 5))); // torn
        var older = NewLog();
        older.AppendAsFollower(Batch(0, 5, 1));
        Assert.Throws<InvalidOperationException>(() => older.AppendAsFollower(Batch(1, 4, 1)));
    }

    [Fact]
    public void ReadReturnsWholeBatchesUpToTheLimitButAtLeastOne()
    {
        var log = ThreeEpochs();
        var one = log.Read(4, 1);
        Assert.Equal(3, new RecordBatch(one.Span).BaseOffset);
        Assert.Equal(RecordBatch.PeekSize(one.Span), one.Length);
        int first = RecordBatch.PeekSize(log.Read(0, 1).Span);
        int second = RecordBatch.PeekSize(log.Read(3, 1).Span);
        Assert.Single(Batches(log.Read(0, first + second - 1)));
        Assert.Equal(2, Batches(log.Read(0, first + second)).Count);
        Assert.Equal(3, Batches(log.Read(0, 100_000)).Count);
        Assert.Equal(log.Read(3, 100_000).Length, log.ReadForFetch(3, 100_000).Length);
        Assert.True(log.Read(10, 100).IsEmpty);
        Assert.Throws<ArgumentOutOfRangeException>(() => log.Read(11, 100));
    }

    [Fact]
    public void FlushTracksWhatIsDurable()
    {
        var log = ThreeEpochs();
        Assert.Equal(0, log.FlushedEndOffset);
        log.Flush();
        Assert.Equal(10, log.FlushedEndOffset);
        log.AppendAsLeader(Batch(10, 4, 2), 4);
        Assert.Equal(10, log.FlushedEndOffset);
        log.TruncateTo(5);
        Assert.Equal(5, log.FlushedEndOffset);
        log.AppendAsLeader(Batch(5, 6, 1), 6);
        Assert.Equal(5, log.FlushedEndOffset);
        log.Flush();
        Assert.Equal(6, log.FlushedEndOffset);
    }

    [Fact]
    public void SnapshotsMoveTheLogStart()
    {
        var log = ThreeEpochs();
        var id = new OffsetAndEpoch(5, 3);
        log.StoreSnapshot(new RaftSnapshot(id, new byte[] { 1, 2, 3 }));
        Assert.Equal(id, log.LatestSnapshotId);
        Assert.Equal(new byte[] { 1, 2, 3 }, log.ReadSnapshot(id)!.Data.ToArray());
        Assert.Null(log.ReadSnapshot(new OffsetAndEpoch(5, 4)));
        log.DeleteBeforeSnapshot(id);
        Assert.Equal(5, log.LogStartOffset);
        Assert.Equal(10, log.EndOffset);
        Assert.True(log.FlushedEndOffset >= 5);
        Assert.Equal(OffsetAndEpoch.Unknown, log.EndOffsetForEpoch(1)); // before what the log still knows
        Assert.Equal(new OffsetAndEpoch(5, 3), log.EndOffsetForEpoch(3));
        Assert.Equal(new OffsetAndEpoch(10, 4), log.EndOffsetForEpoch(4));
        Assert.Throws<ArgumentOutOfRangeException>(() => log.Read(4, 100));
        Assert.Equal(5, new RecordBatch(log.Read(5, 1).Span).BaseOffset);
        Assert.Throws<ArgumentOutOfRangeException>(() => log.TruncateTo(4));
        log.DeleteBeforeSnapshot(new OffsetAndEpoch(3, 1)); // behind the start: nothing
        Assert.Equal(5, log.LogStartOffset);

        Assert.True(log.TryReadSnapshotChunk(id, 1, 10, out long size, out var chunk));
        Assert.Equal(3, size);
        Assert.Equal(new byte[] { 2, 3 }, chunk.ToArray());
        Assert.True(log.TryReadSnapshotChunk(id, 3, 10, out _, out chunk));
        Assert.True(chunk.IsEmpty);
        Assert.False(log.TryReadSnapshotChunk(id, 4, 10, out _, out _));
        Assert.False(log.TryReadSnapshotChunk(new OffsetAndEpoch(4, 3), 0, 10, out _, out _));

        var follower = NewLog();
        follower.AppendAsFollower(Batch(0, 1, 2));
        follower.StoreSnapshot(new RaftSnapshot(id, new byte[] { 1, 2, 3 }));
        follower.ResetToSnapshot(id);
        Assert.Equal(5, follower.LogStartOffset);
        Assert.Equal(5, follower.EndOffset);
        Assert.Equal(5, follower.FlushedEndOffset);
        Assert.Equal(3, follower.LastFetchedEpoch);
        Assert.Equal(id, follower.LatestSnapshotId);
        Assert.Equal(new OffsetAndEpoch(5, 3), follower.EndOffsetForEpoch(3));
        Assert.Equal(OffsetAndEpoch.Unknown, follower.EndOffsetForEpoch(2));
        follower.AppendAsFollower(log.Read(5, 1000));
        Assert.Equal(10, follower.EndOffset);
        Assert.Equal(new OffsetAndEpoch(5, 3), follower.EndOffsetForEpoch(3));
        Assert.Equal(new OffsetAndEpoch(10, 4), follower.EndOffsetForEpoch(4));
    }

    [Fact]
    public void DeletingUpToTheEndLeavesTheSnapshotEpoch()
    {
        var log = ThreeEpochs();
        var id = new OffsetAndEpoch(10, 4);
        log.StoreSnapshot(new RaftSnapshot(id, new byte[] { 9 }));
        Assert.Throws<ArgumentException>(() => log.DeleteBeforeSnapshot(new OffsetAndEpoch(4, 3))); // inside a batch
        Assert.Throws<ArgumentOutOfRangeException>(() => log.DeleteBeforeSnapshot(new OffsetAndEpoch(11, 4)));
        log.DeleteBeforeSnapshot(id);
        Assert.Equal(10, log.LogStartOffset);
        Assert.Equal(10, log.EndOffset);
        Assert.Equal(4, log.LastFetchedEpoch);
        Assert.Equal(new OffsetAndEpoch(10, 4), log.EndOffsetForEpoch(4));
        Assert.Equal(new OffsetAndEpoch(10, 4), log.EndOffsetForEpoch(7));
        Assert.Equal(OffsetAndEpoch.Unknown, log.EndOffsetForEpoch(3));
        Assert.True(log.Read(10, 100).IsEmpty);
        log.AppendAsLeader(Batch(10, 6, 1), 6);
        Assert.Equal(new OffsetAndEpoch(10, 4), log.EndOffsetForEpoch(5));
        Assert.Equal(new OffsetAndEpoch(11, 6), log.EndOffsetForEpoch(6));
    }

    [Fact]
    public void TheTwoNewestSnapshotsAreKept()
    {
        var log = ThreeEpochs();
        log.StoreSnapshot(new RaftSnapshot(new OffsetAndEpoch(3, 1), new byte[] { 1 }));
        log.StoreSnapshot(new RaftSnapshot(new OffsetAndEpoch(10, 4), new byte[] { 3 }));
        log.StoreSnapshot(new RaftSnapshot(new OffsetAndEpoch(5, 3), new byte[] { 2 }));
        log.StoreSnapshot(new RaftSnapshot(new OffsetAndEpoch(5, 3), new byte[] { 7 })); // already there: ignored
        Assert.Equal(new OffsetAndEpoch(10, 4), log.LatestSnapshotId);
        Assert.Null(log.ReadSnapshot(new OffsetAndEpoch(3, 1)));
        Assert.Equal(new byte[] { 2 }, log.ReadSnapshot(new OffsetAndEpoch(5, 3))!.Data.ToArray());
        Assert.Equal(new byte[] { 3 }, log.ReadSnapshot(new OffsetAndEpoch(10, 4))!.Data.ToArray());
    }

    [Fact]
    public void EverythingFlushedSurvivesAReopen()
    {
        var log = ThreeEpochs();
        var id = new OffsetAndEpoch(5, 3);
        log.StoreSnapshot(new RaftSnapshot(id, new byte[] { 1, 2, 3 }));
        log.DeleteBeforeSnapshot(id);
        log.AppendAsLeader(Batch(10, 6, 2), 6);
        log.Flush();
        var before = log.Read(5, 100_000).ToArray();

        log = Reopen(log);
        Assert.Equal(5, log.LogStartOffset);
        Assert.Equal(12, log.EndOffset);
        Assert.Equal(12, log.FlushedEndOffset);
        Assert.Equal(6, log.LastFetchedEpoch);
        Assert.Equal(id, log.LatestSnapshotId);
        Assert.Equal(new byte[] { 1, 2, 3 }, log.ReadSnapshot(id)!.Data.ToArray());
        Assert.Equal(OffsetAndEpoch.Unknown, log.EndOffsetForEpoch(2));
        Assert.Equal(new OffsetAndEpoch(5, 3), log.EndOffsetForEpoch(3));
        Assert.Equal(new OffsetAndEpoch(10, 4), log.EndOffsetForEpoch(5));
        Assert.Equal(new OffsetAndEpoch(12, 6), log.EndOffsetForEpoch(6));
        Assert.Equal(before, log.Read(5, 100_000).ToArray());
        log.AppendAsLeader(Batch(12, 6, 1), 6);
        Assert.Equal(13, log.EndOffset);
    }

    [Fact]
    public void AResetSurvivesAReopen()
    {
        var log = NewLog();
        log.AppendAsFollower(Batch(0, 1, 4));
        var id = new OffsetAndEpoch(20, 7);
        log.StoreSnapshot(new RaftSnapshot(id, new byte[] { 5, 6 }));
        log.ResetToSnapshot(id);
        log = Reopen(log);
        Assert.Equal(20, log.LogStartOffset);
        Assert.Equal(20, log.EndOffset);
        Assert.Equal(7, log.LastFetchedEpoch);
        Assert.Equal(new OffsetAndEpoch(20, 7), log.EndOffsetForEpoch(9));
        Assert.Equal(OffsetAndEpoch.Unknown, log.EndOffsetForEpoch(6));
        Assert.Equal(id, log.LatestSnapshotId);
    }
}

public sealed class MemoryRaftLogContractTests : RaftLogContractTests
{
    protected override IRaftLog NewLog() => new MemoryRaftLog();

    protected override IRaftLog Reopen(IRaftLog log)
    {
        ((MemoryRaftLog)log).Crash(new Random(1)); // everything was flushed: nothing to lose
        return log;
    }
}

public sealed class PartitionRaftLogContractTests : RaftLogContractTests
{
    private readonly TempDir _dir = new();
    private readonly List<PartitionRaftLog> _open = [];

    protected override IRaftLog NewLog() => Track(PartitionRaftLog.Open(_dir.NewSubdirectory(), TimeProvider.System, NullLoggerFactory.Instance));

    protected override IRaftLog Reopen(IRaftLog log)
    {
        var p = (PartitionRaftLog)log;
        p.Dispose();
        return Track(PartitionRaftLog.Open(Path.GetDirectoryName(p.Dir)!, TimeProvider.System, NullLoggerFactory.Instance));
    }

    private PartitionRaftLog Track(PartitionRaftLog log)
    {
        _open.Add(log);
        return log;
    }

    public override void Dispose()
    {
        foreach (var l in _open) l.Dispose();
        _dir.Dispose();
        base.Dispose();
    }
}

/// <summary>A temporary directory, deleted at the end of the test.</summary>
public sealed class TempDir : IDisposable
{
    private int _next;

    public TempDir()
    {
        // tmpfs when there is one: the logs fsync a lot, and the disk is not what is under test.
        string root = Directory.Exists("/dev/shm") ? "/dev/shm" : System.IO.Path.GetTempPath();
        Path = System.IO.Path.Combine(root, "freshet-raftlog-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string NewSubdirectory() => System.IO.Path.Combine(Path, (_next++).ToString(System.Globalization.CultureInfo.InvariantCulture));

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}

/// <summary>What only the file-backed log does: files, crash recovery, segments, the format left by <see cref="LocalMetadataLog"/>.</summary>
public sealed class PartitionRaftLogTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly List<IDisposable> _open = [];

    public void Dispose()
    {
        foreach (var l in _open) l.Dispose();
        _dir.Dispose();
    }

    private PartitionRaftLog Open(string metadataLogDir, int? segmentBytes = null)
    {
        var overrides = segmentBytes is { } b
            ? new Dictionary<string, string> { ["segment.bytes"] = b.ToString(System.Globalization.CultureInfo.InvariantCulture) }
            : null;
        var log = PartitionRaftLog.Open(metadataLogDir, TimeProvider.System, NullLoggerFactory.Instance, overrides);
        _open.Add(log);
        return log;
    }

    private static byte[] Batch(long baseOffset, int epoch, int records, int valueBytes = 1) => RaftLogContractTests.Batch(baseOffset, epoch, records, valueBytes);

    private static string[] SegmentFiles(PartitionRaftLog log) =>
        [.. Directory.EnumerateFiles(log.Dir, "*" + LogSegment.LogSuffix).Select(System.IO.Path.GetFileName).Order()!];

    [Fact]
    public void ReadForFetchIsAFileRange()
    {
        var log = Open(_dir.NewSubdirectory());
        log.AppendAsLeader(Batch(0, 1, 3), 1);
        var records = log.ReadForFetch(0, 1000);
        Assert.True(records.IsExternal);
        var file = Assert.IsType<FileRecords>(records);
        Assert.Equal(log.Read(0, 1000).ToArray(), file.ReadAll());
        Assert.Same(RecordSet.Empty, log.ReadForFetch(3, 1000));
        Assert.IsType<FileRecords>(((IRaftLog)log).ReadForFetch(0, 1000)); // the node calls it through the interface
    }

    [Fact]
    public void UnflushedAppendsSurviveAProcessCrashButNotALostPageCache()
    {
        string root = _dir.NewSubdirectory();
        var log = Open(root);
        log.AppendAsLeader(Batch(0, 1, 3), 1);
        log.AppendAsLeader(Batch(3, 2, 2), 2);
        log.Flush();
        long flushedBytes = new FileInfo(System.IO.Path.Combine(log.Dir, SegmentFiles(log)[0])).Length;
        log.AppendAsLeader(Batch(5, 2, 2), 2);
        log.AppendAsLeader(Batch(7, 3, 1), 3);
        Assert.Equal(5, log.FlushedEndOffset);

        // A process crash: the page cache keeps what was written.
        string copy = _dir.NewSubdirectory();
        CopyDirectory(root, copy);
        log.CloseWithoutFlush();
        var reopened = Open(root);
        Assert.Equal(8, reopened.EndOffset);
        Assert.Equal(8, reopened.FlushedEndOffset);
        Assert.Equal(3, reopened.LastFetchedEpoch);
        reopened.Dispose();

        // A machine crash: the unflushed tail is gone; only the flushed batches remain.
        string segment = Directory.EnumerateFiles(System.IO.Path.Combine(copy, PartitionRaftLog.Partition.ToString()), "*.log").Single();
        using (var f = new FileStream(segment, FileMode.Open)) f.SetLength(flushedBytes);
        var lost = Open(copy);
        Assert.Equal(5, lost.EndOffset);
        Assert.Equal(2, lost.LastFetchedEpoch);
        Assert.Equal(new OffsetAndEpoch(5, 2), lost.EndOffsetForEpoch(3)); // the epoch cache forgot epoch 3
        lost.AppendAsFollower(Batch(5, 4, 1));
        Assert.Equal(new OffsetAndEpoch(5, 2), lost.EndOffsetForEpoch(3));
        Assert.Equal(new OffsetAndEpoch(6, 4), lost.EndOffsetForEpoch(4));
    }

    [Fact]
    public void ATornTailIsCutOnOpen()
    {
        string root = _dir.NewSubdirectory();
        var log = Open(root);
        log.AppendAsLeader(Batch(0, 1, 3), 1);
        log.AppendAsLeader(Batch(3, 1, 2), 1);
        log.AppendAsLeader(Batch(5, 2, 4, valueBytes: 100), 2);
        log.Flush();
        string segment = System.IO.Path.Combine(log.Dir, SegmentFiles(log)[0]);
        log.CloseWithoutFlush();
        long length = new FileInfo(segment).Length;
        using (var f = new FileStream(segment, FileMode.Open)) f.SetLength(length - 150); // mid-batch

        var reopened = Open(root);
        Assert.Equal(5, reopened.EndOffset);
        Assert.Equal(5, reopened.FlushedEndOffset);
        Assert.Equal(1, reopened.LastFetchedEpoch);
        Assert.Equal(new OffsetAndEpoch(5, 1), reopened.EndOffsetForEpoch(2));
        Assert.Equal(2, ReadBatchCount(reopened));
        Assert.True(new FileInfo(segment).Length < length - 150);
        reopened.AppendAsLeader(Batch(5, 3, 1), 3);
        Assert.Equal(6, reopened.EndOffset);
    }

    private static int ReadBatchCount(PartitionRaftLog log)
    {
        var bytes = log.Read(log.LogStartOffset, int.MaxValue);
        int pos = 0, n = 0;
        while (pos < bytes.Length)
        {
            pos += RecordBatch.PeekSize(bytes.Span[pos..]);
            n++;
        }
        return n;
    }

    [Fact]
    public void SnapshotFilesAreNamedAsKafkaNamesThemAndLeftoversGo()
    {
        string root = _dir.NewSubdirectory();
        var log = Open(root);
        for (int i = 0; i < 4; i++) log.AppendAsLeader(Batch(i * 2, 3, 2), 3);
        var id = new OffsetAndEpoch(6, 3);
        var data = new byte[1000];
        new Random(5).NextBytes(data);
        log.StoreSnapshot(new RaftSnapshot(id, data));
        Assert.True(File.Exists(System.IO.Path.Combine(log.Dir, "00000000000000000006-0000000003.checkpoint")));
        Assert.True(log.TryReadSnapshotChunk(id, 600, 1000, out long size, out var chunk));
        Assert.Equal(1000, size);
        Assert.Equal(data.AsSpan(600).ToArray(), chunk.ToArray());
        log.Flush();
        string dir = log.Dir;
        log.Dispose();
        File.WriteAllBytes(System.IO.Path.Combine(dir, "00000000000000000008-0000000003.checkpoint.part"), [1, 2]);

        var reopened = Open(root);
        Assert.Equal(id, reopened.LatestSnapshotId);
        Assert.Equal(data, reopened.ReadSnapshot(id)!.Data.ToArray());
        Assert.False(File.Exists(System.IO.Path.Combine(dir, "00000000000000000008-0000000003.checkpoint.part")));
    }

    [Fact]
    public void DeleteBeforeSnapshotDropsWholeSegmentsAndKeepsTheStartInsideOne()
    {
        string root = _dir.NewSubdirectory();
        var log = Open(root, segmentBytes: 1024);
        long offset = 0;
        for (int i = 0; i < 40; i++)
        {
            int epoch = 1 + i / 10;
            offset = log.AppendAsLeader(Batch(offset, epoch, 2, valueBytes: 50), epoch) + 1;
        }
        log.Flush();
        var segmentsBefore = SegmentFiles(log);
        Assert.True(segmentsBefore.Length >= 4, $"{segmentsBefore.Length} segments");
        var early = log.ReadForFetch(0, 100_000); // held by a fetch in flight

        // A start inside the third segment: the first two go, the third stays whole.
        long thirdBase = long.Parse(System.IO.Path.GetFileNameWithoutExtension(segmentsBefore[2]), System.Globalization.CultureInfo.InvariantCulture);
        long start = thirdBase + 2;
        var id = new OffsetAndEpoch(start, 1 + (int)(start - 2) / 20);
        log.StoreSnapshot(new RaftSnapshot(id, new byte[] { 1 }));
        log.DeleteBeforeSnapshot(id);
        Assert.Equal(start, log.LogStartOffset);
        Assert.Equal(segmentsBefore[2..], SegmentFiles(log));
        Assert.Equal(((FileRecords)early).Length, ((FileRecords)early).ReadAll().Length); // deleted files stay open for readers
        var expectedEpochs = Enumerable.Range(1, 4).Select(log.EndOffsetForEpoch).ToArray();

        log.Dispose();
        var reopened = Open(root, segmentBytes: 1024);
        Assert.Equal(start, reopened.LogStartOffset);
        Assert.Equal(80, reopened.EndOffset);
        Assert.Equal(expectedEpochs, Enumerable.Range(1, 4).Select(reopened.EndOffsetForEpoch).ToArray());
        Assert.Equal(OffsetAndEpoch.Unknown, reopened.EndOffsetForEpoch(id.Epoch - 1));
        Assert.Equal(start, new RecordBatch(reopened.Read(start, 1).Span).BaseOffset);
        Assert.Empty(Directory.EnumerateFiles(reopened.Dir, "*.deleted"));
    }

    [Fact]
    public void AnInterruptedResetTakesItsEpochFromTheSnapshot()
    {
        string root = _dir.NewSubdirectory();
        var log = Open(root);
        log.AppendAsFollower(Batch(0, 1, 4));
        var id = new OffsetAndEpoch(30, 6);
        log.StoreSnapshot(new RaftSnapshot(id, new byte[] { 1 }));
        log.ResetToSnapshot(id);
        string dir = log.Dir;
        log.CloseWithoutFlush();
        File.Delete(System.IO.Path.Combine(dir, PartitionRaftLog.LogStartCheckpointFile)); // the crash came before the checkpoint

        var reopened = Open(root);
        Assert.Equal(30, reopened.LogStartOffset);
        Assert.Equal(30, reopened.EndOffset);
        Assert.Equal(6, reopened.LastFetchedEpoch);
        Assert.Equal(OffsetAndEpoch.Unknown, reopened.EndOffsetForEpoch(5));
    }

    [Fact]
    public void OpensADirectoryWrittenByTheSingleNodeMetadataLog()
    {
        string root = _dir.NewSubdirectory();
        using (var old = LocalMetadataLog.Open(root, TimeProvider.System, NullLoggerFactory.Instance))
        {
            for (int i = 0; i < 3; i++)
            {
                old.Append([
                    new MetadataRecordSerde.VersionedRecord((short)MetadataRecordType.Topic, 0, new TopicRecord { Name = "t" + i, TopicId = Uuid.OneUuid }),
                    new MetadataRecordSerde.VersionedRecord((short)MetadataRecordType.Topic, 0, new TopicRecord { Name = "u" + i, TopicId = Uuid.OneUuid }),
                ]);
            }
        }
        var log = Open(root);
        Assert.Equal(0, log.LogStartOffset);
        Assert.Equal(6, log.EndOffset);
        Assert.Equal(6, log.FlushedEndOffset);
        Assert.Equal(1, log.LastFetchedEpoch);
        Assert.Equal(new OffsetAndEpoch(0, 0), log.EndOffsetForEpoch(0));
        Assert.Equal(new OffsetAndEpoch(6, 1), log.EndOffsetForEpoch(1));
        var first = new RecordBatch(log.Read(0, 1).Span);
        Assert.Equal(1, first.PartitionLeaderEpoch);
        Assert.Equal(2, first.RecordsCount);
        Assert.Equal(7, log.AppendAsLeader(Batch(6, 2, 2), 2));
        Assert.Equal(new OffsetAndEpoch(6, 1), log.EndOffsetForEpoch(1));
        log.Dispose();
        var reopened = Open(root);
        Assert.Equal(8, reopened.EndOffset);
        Assert.Equal(2, reopened.LastFetchedEpoch);
    }

    [Fact]
    public void TruncationIsDurableAtOnce()
    {
        string root = _dir.NewSubdirectory();
        var log = Open(root, segmentBytes: 1024);
        long offset = 0;
        for (int i = 0; i < 20; i++) offset = log.AppendAsLeader(Batch(offset, 1, 2, valueBytes: 60), 1) + 1;
        log.Flush();
        Assert.True(SegmentFiles(log).Length > 2);
        log.TruncateTo(7); // inside the batch 6-7, in the first segment
        Assert.Equal(6, log.EndOffset);
        Assert.Single(SegmentFiles(log));
        log.CloseWithoutFlush();
        var reopened = Open(root, segmentBytes: 1024);
        Assert.Equal(6, reopened.EndOffset);
        Assert.Single(SegmentFiles(reopened));
    }

    [Fact]
    public void SnapshotNamesRoundTrip()
    {
        var id = new OffsetAndEpoch(1234, 7);
        Assert.Equal("00000000000000001234-0000000007.checkpoint", SnapshotFiles.FileName(id));
        Assert.True(SnapshotFiles.TryParse(SnapshotFiles.FileName(id), out var parsed));
        Assert.Equal(id, parsed);
        Assert.False(SnapshotFiles.TryParse("00000000000000001234-0000000007.checkpoint.part", out _));
        Assert.False(SnapshotFiles.TryParse("00000000000000001234.snapshot", out _));
        Assert.False(SnapshotFiles.TryParse("leader-epoch-checkpoint", out _));
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (var d in Directory.EnumerateDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(d.Replace(from, to, StringComparison.Ordinal));
        Directory.CreateDirectory(to);
        foreach (var f in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
            File.Copy(f, f.Replace(from, to, StringComparison.Ordinal));
    }
}
