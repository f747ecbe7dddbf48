using Freshet.Metadata.Controller;
using Freshet.Metadata.Log;
using Freshet.Metadata.Raft;
using Freshet.Protocol.Wire;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Metadata.Tests.Raft;

/// <summary>
/// A <see cref="RaftDriver"/> whose log or quorum-state file fails stops for good: every caller waiting
/// on it (queued, or appended and waiting for the commit) and every later caller is failed at once,
/// nobody is left holding the controller's lock, and <see cref="RaftDriver.Failed"/> carries the reason.
/// </summary>
public sealed class RaftDriverFailureTests
{
    /// <summary>Generous bound for "failed at once": a hang is what the tests catch, not a slow machine.</summary>
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>A <see cref="MemoryRaftLog"/> whose appends or flushes throw an I/O error once armed (a disk that failed).</summary>
    private sealed class FailingLog : IRaftLog
    {
        private readonly MemoryRaftLog _log = new();
        public volatile bool FailAppends;
        public volatile bool FailFlushes;

        public long LogStartOffset => _log.LogStartOffset;
        public long EndOffset => _log.EndOffset;
        public long FlushedEndOffset => _log.FlushedEndOffset;
        public int LastFetchedEpoch => _log.LastFetchedEpoch;
        public OffsetAndEpoch? LatestSnapshotId => _log.LatestSnapshotId;
        public OffsetAndEpoch EndOffsetForEpoch(int epoch) => _log.EndOffsetForEpoch(epoch);

        public long AppendAsLeader(ReadOnlyMemory<byte> batch, int epoch) =>
            FailAppends ? throw new IOException("No space left on device (injected)") : _log.AppendAsLeader(batch, epoch);

        public long AppendAsFollower(ReadOnlyMemory<byte> batches) =>
            FailAppends ? throw new IOException("No space left on device (injected)") : _log.AppendAsFollower(batches);

        public void Flush()
        {
            if (FailFlushes) throw new IOException("fsync failed: Input/output error (injected)");
            _log.Flush();
        }

        public void TruncateTo(long offset) => _log.TruncateTo(offset);
        public ReadOnlyMemory<byte> Read(long offset, int maxBytes) => _log.Read(offset, maxBytes);
        public RaftSnapshot? ReadSnapshot(OffsetAndEpoch id) => _log.ReadSnapshot(id);

        public bool TryReadSnapshotChunk(OffsetAndEpoch id, long position, int maxBytes, out long size, out ReadOnlyMemory<byte> chunk) =>
            _log.TryReadSnapshotChunk(id, position, maxBytes, out size, out chunk);

        public void StoreSnapshot(RaftSnapshot snapshot) => _log.StoreSnapshot(snapshot);
        public void DeleteBeforeSnapshot(OffsetAndEpoch id) => _log.DeleteBeforeSnapshot(id);
        public void ResetToSnapshot(OffsetAndEpoch id) => _log.ResetToSnapshot(id);
    }

    /// <summary>A quorum-state store whose writes fail once armed.</summary>
    private sealed class FailingStore : IQuorumStateStore
    {
        private readonly MemoryQuorumStateStore _store = new();
        public volatile bool Fail;

        public ElectionState? Read() => _store.Read();

        public void Write(ElectionState state)
        {
            if (Fail) throw new IOException("quorum-state: No space left on device (injected)");
            _store.Write(state);
        }
    }

    private sealed class NullListener : IRaftListener
    {
        public void HandleCommit(IReadOnlyList<RaftEntry> entries) { }
        public void HandleLeaderChange(LeaderAndEpoch leader) { }
        public void HandleSnapshot(RaftSnapshot snapshot) { }
    }

    private static RaftDriver Driver() =>
        new(new RaftConfig
        {
            NodeId = 1, Voters = [1], ClusterId = "c",
            // A parked fetch is answered once its wait is over (500 ms by default); these tests park one until the driver stops.
            FetchMaxWaitMs = 60_000, FetchTimeoutMs = 120_000, RequestTimeoutMs = 120_000,
        }, new NoPeers(), key => 0, TimeProvider.System,
            NullLogger<RaftDriver>.Instance);

    /// <summary>A single voter has no one to send to.</summary>
    private sealed class NoPeers : INodeClient
    {
        public Task<TResponse> SendAsync<TResponse>(int nodeId, IApiRequest<TResponse> request, short version, CancellationToken ct)
            where TResponse : IApiMessage, new() => throw new IOException("no peers");
    }

    /// <summary>A single voter elects itself; its first append commits once it is leader.</summary>
    private static async Task<RaftDriver> LeaderAsync(IRaftLog log, IQuorumStateStore store, IRaftListener listener)
    {
        var driver = Driver();
        driver.Start(log, store, listener, new Random(1));
        // It elects itself on its thread soon after the start; an append before that is refused (NotLeaderException).
        for (var deadline = DateTime.UtcNow + Bound; !await driver.InvokeAsync((n, _) => n.IsLeader).WaitAsync(Bound); await Task.Delay(10))
            Assert.True(DateTime.UtcNow < deadline, "the single voter did not elect itself");
        await driver.AppendAsync([[1]]).WaitAsync(Bound);
        Assert.True(driver.State.IsLeader);
        return driver;
    }

    [Fact]
    public async Task AnAppendWaitingForItsCommitFailsWhenTheFlushFails()
    {
        var log = new FailingLog();
        using var driver = await LeaderAsync(log, new FailingStore(), new NullListener());

        // The append itself succeeds; the flush that would commit it fails: the waiter must not be left hanging.
        log.FailFlushes = true;
        var pending = driver.AppendAsync([[2]]);
        var e = await Assert.ThrowsAsync<RaftStoppedException>(() => pending.WaitAsync(Bound));
        Assert.Contains("fsync failed", e.Message, StringComparison.Ordinal);

        var reason = await driver.Failed.WaitAsync(Bound);
        Assert.Contains("fsync failed", reason.Message, StringComparison.Ordinal);
        Assert.False(driver.State.IsLeader);
        Assert.Null(driver.State.Leader.LeaderId);

        // Everything after the failure is failed at once, nothing queued for a thread that is gone.
        await Assert.ThrowsAsync<RaftStoppedException>(() => driver.AppendAsync([[3]]).WaitAsync(Bound));
        await Assert.ThrowsAsync<RaftStoppedException>(() => driver.InvokeAsync((n, _) => n.Epoch).WaitAsync(Bound));
        await Assert.ThrowsAsync<RaftStoppedException>(() => driver.HandleRequestAsync(2, new Protocol.Messages.DescribeQuorumRequest()).WaitAsync(Bound));
    }

    [Fact]
    public async Task AFetchParkedOnTheLeaderIsFailedWhenItStops()
    {
        var log = new FailingLog();
        using var driver = await LeaderAsync(log, new FailingStore(), new NullListener());
        // Once the high watermark has reached the log end (a parked fetch is also answered when the high
        // watermark moves, which would complete it before the failure this test is about)...
        (long Hw, long End, int Epoch) state;
        for (var deadline = DateTime.UtcNow + Bound; ; await Task.Delay(10))
        {
            state = await driver.InvokeAsync((n, _) => (n.HighWatermark, n.LogEndOffset, n.Epoch)).WaitAsync(Bound);
            if (state.Hw == state.End) break;
            Assert.True(DateTime.UtcNow < deadline, $"the high watermark stayed at {state.Hw}, below the log end {state.End}");
        }
        // ...an observer caught up with the log: its fetch waits (long poll) for new entries.
        var parked = driver.HandleRequestAsync(9, RaftMessages.FetchRequest("c", 9, state.Epoch, state.End, state.Epoch, 60_000, 1 << 20));
        await driver.InvokeAsync((n, _) => n.Epoch).WaitAsync(Bound); // the fetch was handled (and parked) before this
        Assert.False(parked.IsCompleted);

        log.FailFlushes = true;
        _ = driver.AppendAsync([[2]]);
        await Assert.ThrowsAsync<RaftStoppedException>(() => parked.WaitAsync(Bound));
    }

    [Fact]
    public async Task AnAppendThatFailsToWriteFailsItsCallerAndStopsTheDriver()
    {
        var log = new FailingLog();
        using var driver = await LeaderAsync(log, new FailingStore(), new NullListener());
        log.FailAppends = true;
        var e = await Assert.ThrowsAsync<RaftStoppedException>(() => driver.AppendAsync([[2]]).WaitAsync(Bound));
        Assert.Contains("No space left on device", e.Message, StringComparison.Ordinal);
        Assert.Same(e, await driver.Failed.WaitAsync(Bound));
    }

    [Fact]
    public async Task AQuorumStateWriteFailureFailsCallersQueuedBeforeIt()
    {
        // The node writes its vote for itself before anything else: that write fails, so nothing can ever run.
        var store = new FailingStore { Fail = true };
        using var driver = Driver();
        driver.Start(new FailingLog(), store, new NullListener(), new Random(1));
        var queued = Enumerable.Range(0, 5).Select(i => driver.AppendAsync([[(byte)i]])).ToList();
        foreach (var q in queued)
            await Assert.ThrowsAsync<RaftStoppedException>(() => q.WaitAsync(Bound));
        var reason = await driver.Failed.WaitAsync(Bound);
        Assert.Contains("quorum-state", reason.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AControllerCommitOnAFailedQuorumFailsAndReleasesTheControllerLock()
    {
        var log = new FailingLog();
        using var driver = Driver();
        var controller = new QuorumController(new ControllerOptions { NodeId = 1, ClusterId = "c" }, new RaftMetadataLog(driver), NullLogger<QuorumController>.Instance);
        using var loader = new MetadataLoader(controller, driver, canLead: true, SnapshotPolicy.KafkaDefaults, TimeProvider.System, NullLogger<MetadataLoader>.Instance);
        driver.Start(log, new FailingStore(), loader, new Random(1));
        // Active once it leads and has applied its own epoch's start (the bootstrap commit of metadata.version).
        var deadline = DateTime.UtcNow + Bound;
        while (!(controller.IsActive && controller.Image.Features.ContainsKey("metadata.version")) && DateTime.UtcNow < deadline) await Task.Delay(10);
        Assert.True(controller.IsActive);

        long before = controller.Image.NextProducerId;
        log.FailFlushes = true;
        // Two operations at once: the first waits on its commit under the controller's lock, the second on the lock.
        var first = Task.Run(() => controller.AllocateProducerIds(1, 1));
        var second = Task.Run(() => controller.AllocateProducerIds(1, 1));
        await Assert.ThrowsAsync<NotControllerException>(() => first.WaitAsync(Bound));
        await Assert.ThrowsAsync<NotControllerException>(() => second.WaitAsync(Bound));
        await driver.Failed.WaitAsync(Bound);
        // Nothing that was not committed shows in the image.
        Assert.Equal(before, controller.Image.NextProducerId);
    }
}
