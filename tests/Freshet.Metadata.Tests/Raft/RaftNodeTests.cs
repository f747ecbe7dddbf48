using Freshet.Metadata.Raft;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;

namespace Freshet.Metadata.Tests.Raft;

/// <summary>Single rules of <see cref="RaftNode"/>, driven by hand (the simulation covers their interplay).</summary>
public sealed class RaftNodeTests
{
    private sealed class Recorder : IRaftTransport, IRaftListener
    {
        public List<(int To, object Request)> Sent { get; } = [];
        public List<RaftEntry> Committed { get; } = [];
        public List<LeaderAndEpoch> Leaders { get; } = [];
        public List<RaftSnapshot> Snapshots { get; } = [];
        public void Send<TResponse>(int toNodeId, IApiRequest<TResponse> request) where TResponse : IApiMessage, new() => Sent.Add((toNodeId, request));
        public void HandleCommit(IReadOnlyList<RaftEntry> entries) => Committed.AddRange(entries);
        public void HandleLeaderChange(LeaderAndEpoch leader) => Leaders.Add(leader);
        public void HandleSnapshot(RaftSnapshot snapshot) => Snapshots.Add(snapshot);
    }

    private static RaftConfig Config(int id, params int[] voters) => new() { NodeId = id, Voters = voters, ClusterId = "c" };

    private static byte[] Batch(long baseOffset, int epoch, int records)
    {
        using var b = new RecordBatchBuilder { BaseOffset = baseOffset, PartitionLeaderEpoch = epoch };
        for (int i = 0; i < records; i++) b.Append(0, null, new byte[] { (byte)i });
        return b.Build();
    }

    private static object Ask(RaftNode node, object request, long now)
    {
        object? answer = null;
        node.HandleRequest(-1, request, now, r => answer = r);
        return answer ?? throw new InvalidOperationException("no immediate answer");
    }

    /// <summary>Node 1 of voters 1-3, made leader of epoch 2 over a log holding epoch 1 at offsets 0-2.</summary>
    private static (RaftNode Node, Recorder Io, MemoryRaftLog Log) LeaderOfThree()
    {
        var log = new MemoryRaftLog();
        log.AppendAsLeader(Batch(0, 1, 3), 1);
        log.Flush();
        var store = new MemoryQuorumStateStore();
        store.Write(new ElectionState(1, 2, -1));
        var io = new Recorder();
        var node = new RaftNode(Config(1, 1, 2, 3), log, store, io, io, new Random(1), 0);
        node.Poll(0);
        Assert.Equal(RaftRole.Follower, node.Role);
        node.Poll(2_000); // fetch timeout: stand for epoch 2
        Assert.Equal(RaftRole.Candidate, node.Role);
        var vote = io.Sent.First(s => s.Request is VoteRequest);
        node.HandleResponse(vote.To, vote.Request, RaftMessages.VoteResponse(ErrorCode.None, ErrorCode.None, -1, 2, true), 2_001);
        Assert.Equal(RaftRole.Leader, node.Role);
        Assert.Equal(2, node.Epoch);
        return (node, io, log);
    }

    [Fact]
    public void SingleVoterElectsItselfAndCommitsWhatItAppends()
    {
        var log = new MemoryRaftLog();
        var store = new MemoryQuorumStateStore();
        var io = new Recorder();
        var node = new RaftNode(Config(1, 1), log, store, io, io, new Random(1), 0);
        node.Poll(0);
        Assert.Equal(RaftRole.Leader, node.Role);
        Assert.Equal(new ElectionState(1, 1, 1), store.Read());
        Assert.Equal(new LeaderAndEpoch(1, 1), io.Leaders[^1]);

        long? last = node.TryAppend([[1], [2]], out int epoch);
        Assert.Equal(2, last); // offset 0 is the LeaderChange entry
        Assert.Equal(1, epoch);
        Assert.Empty(io.Committed); // not flushed yet
        node.Poll(1);
        Assert.Equal([1L, 2L], io.Committed.Select(e => e.Offset));
        Assert.Equal(3, node.HighWatermark);
        Assert.Empty(io.Sent);

        // The epoch opened with a LeaderChange control record, as KRaft writes it.
        var first = log.Read(0, 1);
        var batch = new RecordBatch(first.Span);
        Assert.True(batch.IsControl);
        Assert.Equal(1, batch.PartitionLeaderEpoch);
        foreach (var r in new BatchRecords(first.Span, null))
        {
            Assert.Equal(ControlRecords.LeaderChangeType, ControlRecords.TypeOf(r.Record.Key));
            var message = Protocol.Wire.MessageExtensions.Parse<LeaderChangeMessage>(r.Record.Value.ToArray(), 0);
            Assert.Equal(1, message.LeaderId);
        }
    }

    [Fact]
    public void VoterGrantsOneCandidatePerEpoch()
    {
        var store = new MemoryQuorumStateStore();
        var io = new Recorder();
        var node = new RaftNode(Config(1, 1, 2, 3), new MemoryRaftLog(), store, io, io, new Random(1), 0);
        var forTwo = RaftMessages.VoteRequest("c", 1, 1, 2, new OffsetAndEpoch(0, 0));
        var forThree = RaftMessages.VoteRequest("c", 1, 1, 3, new OffsetAndEpoch(0, 0));
        Assert.True(RaftMessages.Partition((VoteResponse)Ask(node, forTwo, 1))!.VoteGranted);
        Assert.Equal(new ElectionState(1, -1, 2), store.Read());
        Assert.Equal(RaftRole.Voted, node.Role);
        Assert.False(RaftMessages.Partition((VoteResponse)Ask(node, forThree, 2))!.VoteGranted);
        Assert.True(RaftMessages.Partition((VoteResponse)Ask(node, forTwo, 3))!.VoteGranted); // a retry of the same vote

        // The vote survives a restart.
        var restarted = new RaftNode(Config(1, 1, 2, 3), new MemoryRaftLog(), store, io, io, new Random(2), 10);
        Assert.False(RaftMessages.Partition((VoteResponse)Ask(restarted, forThree, 11))!.VoteGranted);
    }

    [Fact]
    public void VoterRefusesACandidateWithAStaleLogButAdoptsItsEpoch()
    {
        var log = new MemoryRaftLog();
        log.AppendAsLeader(Batch(0, 2, 1), 2);
        var io = new Recorder();
        var node = new RaftNode(Config(1, 1, 2, 3), log, new MemoryQuorumStateStore(), io, io, new Random(1), 0);
        var stale = RaftMessages.VoteRequest("c", 1, 3, 2, new OffsetAndEpoch(5, 1)); // longer, but an older last epoch
        var answer = RaftMessages.Partition((VoteResponse)Ask(node, stale, 1))!;
        Assert.False(answer.VoteGranted);
        Assert.Equal(3, answer.LeaderEpoch);
        Assert.Equal(RaftRole.Unattached, node.Role);
        var current = RaftMessages.VoteRequest("c", 1, 3, 3, new OffsetAndEpoch(1, 2));
        Assert.True(RaftMessages.Partition((VoteResponse)Ask(node, current, 2))!.VoteGranted);
    }

    [Fact]
    public void ObserversNeverVoteNorStand()
    {
        var io = new Recorder();
        var node = new RaftNode(Config(9, 1, 2, 3), new MemoryRaftLog(), new MemoryQuorumStateStore(), io, io, new Random(1), 0);
        Assert.False(node.IsVoter);
        var answer = RaftMessages.Partition((VoteResponse)Ask(node, RaftMessages.VoteRequest("c", 9, 1, 2, new OffsetAndEpoch(0, 0)), 1))!;
        Assert.False(answer.VoteGranted);
        Assert.Equal((short)ErrorCode.InconsistentVoterSet, answer.ErrorCode);
        node.Poll(60_000);
        Assert.Equal(RaftRole.Unattached, node.Role);
        Assert.All(io.Sent, s => Assert.IsType<FetchRequest>(s.Request)); // it only looks for the leader
    }

    [Fact]
    public void LeaderSendsDivergingFollowersBackAndServesConsistentOnes()
    {
        var (node, io, log) = LeaderOfThree();
        node.Poll(2_002);
        Assert.Contains(io.Sent, s => s.Request is BeginQuorumEpochRequest);
        Assert.Equal(4, log.EndOffset); // offsets 0-2 of epoch 1, the LeaderChange at 3

        // Node 2 has offsets 0-4 with the last in epoch 1: the leader's epoch 1 ends at 3.
        var diverging = (FetchResponse)Ask(node, RaftMessages.FetchRequest("c", 2, 2, 5, 1, 500, 1 << 20), 2_003);
        var p = RaftMessages.Partition(diverging)!;
        Assert.Equal((1, 3L), (p.DivergingEpoch.Epoch, p.DivergingEpoch.EndOffset));

        // After truncating to 3 it is consistent and gets the LeaderChange batch.
        var good = RaftMessages.Partition((FetchResponse)Ask(node, RaftMessages.FetchRequest("c", 2, 2, 3, 1, 500, 1 << 20), 2_004))!;
        Assert.Equal(-1, good.DivergingEpoch.EndOffset);
        Assert.Equal(3, new RecordBatch(good.Records!.Memory.Span).BaseOffset);
        Assert.Equal(0, node.HighWatermark);

        // Caught up at 4 (with the leader's flushed 4): a majority holds epoch 2's first entry, which commits.
        object? parked = null;
        node.HandleRequest(2, RaftMessages.FetchRequest("c", 2, 2, 4, 2, 500, 1 << 20), 2_005, r => parked = r);
        Assert.Null(parked); // nothing new: it waits (long poll)
        Assert.Equal(4, node.HighWatermark);
        node.Poll(2_505);
        Assert.NotNull(parked);
        Assert.Equal(4, RaftMessages.Partition((FetchResponse)parked)!.HighWatermark);

        // A stale epoch is fenced.
        var fenced = RaftMessages.Partition((FetchResponse)Ask(node, RaftMessages.FetchRequest("c", 2, 1, 4, 2, 0, 1 << 20), 2_506))!;
        Assert.Equal((short)ErrorCode.FencedLeaderEpoch, fenced.ErrorCode);
        Assert.Equal(1, fenced.CurrentLeader.LeaderId);
    }

    [Fact]
    public void LeaderSendsFollowersBelowItsLogStartToASnapshot()
    {
        var (node, _, log) = LeaderOfThree();
        node.Poll(2_002);
        Ask(node, RaftMessages.FetchRequest("c", 2, 2, 4, 2, 0, 1 << 20), 2_003); // commits through 4
        Ask(node, RaftMessages.FetchRequest("c", 3, 2, 4, 2, 0, 1 << 20), 2_003);
        node.Poll(2_004);
        Assert.Equal(4, node.HighWatermark);
        var id = node.CreateSnapshot(4, new byte[] { 7, 7, 7 });
        Assert.Equal(new OffsetAndEpoch(4, 2), id);
        Assert.Equal(4, log.LogStartOffset);

        var p = RaftMessages.Partition((FetchResponse)Ask(node, RaftMessages.FetchRequest("c", 100, 2, 0, 0, 0, 1 << 20), 2_005))!;
        Assert.Equal((4L, 2), (p.SnapshotId.EndOffset, p.SnapshotId.Epoch));
        var chunk = RaftMessages.Partition((FetchSnapshotResponse)Ask(node,
            RaftMessages.FetchSnapshotRequest("c", 100, 2, new OffsetAndEpoch(4, 2), 1, 100), 2_006))!;
        Assert.Equal(3, chunk.Size);
        Assert.Equal(new byte[] { 7, 7 }, chunk.UnalignedRecords!.Memory.ToArray());
    }

    [Fact]
    public void LeaderWithoutFetchesFromAMajorityResigns()
    {
        var (node, io, _) = LeaderOfThree();
        node.Poll(2_001 + 3_000);
        Assert.Equal(RaftRole.Leader, node.Role);
        node.Poll(2_001 + 3_001); // 1.5 x fetch timeout without a fetch from 2 or 3
        Assert.Equal(RaftRole.Resigned, node.Role);
        Assert.Null(node.TryAppend([[1]], out _));
        Assert.Contains(io.Sent, s => s.Request is EndQuorumEpochRequest);
        Assert.Equal(new LeaderAndEpoch(null, 2), io.Leaders[^1]);
    }

    [Fact]
    public void ARestartedLeaderDoesNotLeadItsEpochAgain()
    {
        var store = new MemoryQuorumStateStore();
        store.Write(new ElectionState(5, 1, 1));
        var io = new Recorder();
        var node = new RaftNode(Config(1, 1, 2, 3), new MemoryRaftLog(), store, io, io, new Random(1), 0);
        node.Poll(0);
        Assert.Equal(RaftRole.Resigned, node.Role);
        Assert.Equal(2, io.Sent.Count(s => s.Request is EndQuorumEpochRequest));
        node.Poll(2_000);
        Assert.Equal(RaftRole.Candidate, node.Role);
        Assert.Equal(6, node.Epoch);
    }

    [Fact]
    public void DescribeQuorumReportsTheLeadersView()
    {
        var (node, _, _) = LeaderOfThree();
        Ask(node, RaftMessages.FetchRequest("c", 2, 2, 4, 2, 0, 1 << 20), 2_003);
        Ask(node, RaftMessages.FetchRequest("c", 100, 2, 4, 2, 0, 1 << 20), 2_003);
        var response = (DescribeQuorumResponse)Ask(node, RaftMessages.DescribeQuorumRequest(), 2_004);
        var p = RaftMessages.Partition(response)!;
        Assert.Equal((1, 2), (p.LeaderId, p.LeaderEpoch));
        Assert.Equal([1, 2, 3], p.CurrentVoters.Select(v => v.ReplicaId));
        Assert.Equal(4, p.CurrentVoters[1].LogEndOffset);
        Assert.Equal(-1, p.CurrentVoters[2].LogEndOffset);
        Assert.Equal(100, Assert.Single(p.Observers).ReplicaId);
    }

    [Fact]
    public void ForeignClusterIsRefused()
    {
        var io = new Recorder();
        var node = new RaftNode(Config(1, 1, 2, 3), new MemoryRaftLog(), new MemoryQuorumStateStore(), io, io, new Random(1), 0);
        var answer = (VoteResponse)Ask(node, RaftMessages.VoteRequest("other", 1, 1, 2, new OffsetAndEpoch(0, 0)), 1);
        Assert.Equal((short)ErrorCode.InconsistentClusterId, answer.ErrorCode);
        Assert.Equal(0, node.Epoch);
    }
}
