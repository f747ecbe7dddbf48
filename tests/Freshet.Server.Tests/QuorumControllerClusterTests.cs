using Freshet.Metadata.Controller;
using Freshet.Metadata.Image;
using Freshet.Metadata.Log;
using Freshet.Protocol;
using Freshet.Protocol.Wire;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Server.Tests;

/// <summary>The controller's broker lifecycle and leadership rules, on a real metadata log in a temporary directory.</summary>
public sealed class QuorumControllerClusterTests : IDisposable
{
    private sealed class Clock : TimeProvider
    {
        public long NowMs = 1_700_000_000_000;
        public override DateTimeOffset GetUtcNow() => DateTimeOffset.FromUnixTimeMilliseconds(NowMs);
        public override long TimestampFrequency => 1000;
        public override long GetTimestamp() => NowMs;
    }

    private readonly string _dir = Path.Combine(Path.GetTempPath(), "freshet-ctl-" + Guid.NewGuid().ToString("N")[..8]);
    private readonly Clock _clock = new();
    private readonly LocalMetadataLog _log;
    private readonly QuorumController _controller;
    private readonly Dictionary<int, (Uuid Incarnation, long Epoch)> _brokers = [];

    public QuorumControllerClusterTests()
    {
        _log = LocalMetadataLog.Open(_dir, _clock, NullLoggerFactory.Instance);
        _controller = new QuorumController(new ControllerOptions { NodeId = 100, ClusterId = "test-cluster", Time = _clock },
            _log, NullLogger<QuorumController>.Instance);
        _controller.Start();
    }

    public void Dispose()
    {
        _log.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private MetadataImage Image => _controller.Image;

    private long Register(int id, Uuid? incarnation = null)
    {
        var inc = incarnation ?? Uuid.Random();
        var r = _controller.RegisterBroker(id, "test-cluster", inc, [new BrokerEndpoint("PLAINTEXT", "127.0.0.1", 9000 + id, 0)], null, -1);
        Assert.Equal(ErrorCode.None, r.Error);
        _brokers[id] = (inc, r.BrokerEpoch);
        return r.BrokerEpoch;
    }

    private BrokerHeartbeatOutcome Beat(int id, bool wantFence = false, bool wantShutDown = false) =>
        _controller.Heartbeat(id, _brokers[id].Epoch, Image.Offset + 1, wantFence, wantShutDown);

    private void StartCluster(params int[] ids)
    {
        foreach (int id in ids) Register(id);
        foreach (int id in ids) Assert.False(Beat(id).IsFenced);
    }

    private PartitionRegistration Partition(string topic, int p = 0) => Image.Partition(topic, p)!;

    private void CreateTopic(string name, int partitions, short rf, IReadOnlyDictionary<string, string?>? configs = null)
    {
        var r = _controller.CreateTopics([new NewTopic(name, partitions, rf, null, configs ?? new Dictionary<string, string?>())], false);
        Assert.Equal(ErrorCode.None, r[0].Error);
    }

    [Fact]
    public void ABrokerIsFencedUntilItsHeartbeatShowsItCaughtUp()
    {
        long epoch = Register(1);
        Assert.True(Image.Brokers[1].Fenced);
        var behind = _controller.Heartbeat(1, epoch, currentMetadataOffset: epoch - 1, false, false);
        Assert.False(behind.IsCaughtUp);
        Assert.True(behind.IsFenced);
        var caughtUp = _controller.Heartbeat(1, epoch, currentMetadataOffset: epoch, false, false);
        Assert.True(caughtUp.IsCaughtUp);
        Assert.False(caughtUp.IsFenced);
        Assert.False(Image.Brokers[1].Fenced);
        Assert.Equal(ErrorCode.StaleBrokerEpoch, _controller.Heartbeat(1, epoch + 1, epoch, false, false).Error);
    }

    [Fact]
    public void SameIncarnationKeepsItsEpochAndAnotherIsRefusedWhileTheSessionLives()
    {
        var inc = Uuid.Random();
        long first = Register(1, inc);
        Assert.Equal(first, Register(1, inc));
        Beat(1);
        var dup = _controller.RegisterBroker(1, "test-cluster", Uuid.Random(), [], null, -1);
        Assert.Equal(ErrorCode.DuplicateBrokerRegistration, dup.Error);
        _clock.NowMs += 10_000; // past broker.session.timeout.ms (9000)
        var later = _controller.RegisterBroker(1, "test-cluster", Uuid.Random(), [], null, -1);
        Assert.Equal(ErrorCode.None, later.Error);
        Assert.True(later.BrokerEpoch > first);
        Assert.Equal(ErrorCode.InconsistentClusterId, _controller.RegisterBroker(2, "other", Uuid.Random(), [], null, -1).Error);
    }

    [Fact]
    public void AnExpiredSessionFencesTheBrokerAndMovesItsLeadershipsToTheIsr()
    {
        StartCluster(1, 2, 3);
        CreateTopic("t", 6, 3);
        var ledByOne = Image.Topic("t")!.Partitions.Where(p => p.Value.Leader == 1).Select(p => p.Key).ToList();
        Assert.NotEmpty(ledByOne);
        var before = ledByOne.ToDictionary(p => p, p => Partition("t", p));

        _clock.NowMs += 5_000;
        Beat(2);
        Beat(3);
        Assert.Empty(_controller.FenceExpiredBrokers());
        _clock.NowMs += 5_000; // broker 1: 10 s without a heartbeat
        Beat(2);
        Beat(3);
        Assert.Equal([1], _controller.FenceExpiredBrokers());
        Assert.True(Image.Brokers[1].Fenced);
        foreach (var (p, reg) in Image.Topic("t")!.Partitions)
        {
            Assert.DoesNotContain(1, reg.Isr);
            Assert.NotEqual(1, reg.Leader);
            Assert.True(reg.Leader is 2 or 3);
            if (before.TryGetValue(p, out var old)) Assert.Equal(old.LeaderEpoch + 1, reg.LeaderEpoch);
        }
    }

    [Fact]
    public void TheLastIsrMemberGoingLeavesThePartitionLeaderlessUntilItReturns()
    {
        StartCluster(1, 2);
        CreateTopic("solo", 1, 1);
        int owner = Partition("solo").Leader;
        int other = owner == 1 ? 2 : 1;
        _clock.NowMs += 10_000;
        Beat(other);
        _controller.FenceExpiredBrokers();
        Assert.Equal(PartitionRegistration.NoLeader, Partition("solo").Leader);
        Assert.Equal([owner], Partition("solo").Isr.ToArray()); // never an empty ISR
        Assert.False(Beat(owner).IsFenced);
        Assert.Equal(owner, Partition("solo").Leader);
    }

    [Fact]
    public void UncleanElectionPicksALiveOutOfSyncReplicaOnlyWhenTheTopicAllowsIt()
    {
        StartCluster(1, 2);
        CreateTopic("clean", 1, 2);
        CreateTopic("unclean", 1, 2, new Dictionary<string, string?> { ["unclean.leader.election.enable"] = "true" });
        foreach (var topic in new[] { "clean", "unclean" })
        {
            var reg = Partition(topic);
            int follower = reg.Replicas.First(r => r != reg.Leader);
            var shrunk = _controller.AlterPartition(reg.Leader, _brokers[reg.Leader].Epoch, Image.Topic(topic)!.Id, 0, reg.LeaderEpoch, reg.PartitionEpoch,
                [new IsrMember(reg.Leader, _brokers[reg.Leader].Epoch)]);
            Assert.Equal(ErrorCode.None, shrunk.Error);
            Assert.DoesNotContain(follower, shrunk.Registration!.Isr);
        }
        // Fence each partition's leader: only the unclean topic elects the out-of-sync replica.
        int cleanLeader = Partition("clean").Leader;
        Beat(cleanLeader, wantFence: true);
        Assert.Equal(PartitionRegistration.NoLeader, Partition("clean").Leader);
        var u = Partition("unclean");
        if (u.Leader == cleanLeader) Assert.Equal([u.Leader == 1 ? 2 : 1], Partition("unclean").Isr.ToArray());
        else Assert.Equal(u.Leader, Partition("unclean").Leader);
        Assert.NotEqual(PartitionRegistration.NoLeader, Partition("unclean").Leader);
    }

    [Fact]
    public void ABrokerReportingOfflineLogDirsLosesItsLeadershipsAndIsrPlacesUntilTheReportClears()
    {
        StartCluster(1, 2, 3);
        CreateTopic("a", 1, 3);
        CreateTopic("solo", 1, 1);
        int leader = Partition("a").Leader;
        int soloOwner = Partition("solo").Leader;
        var id = Image.Topic("a")!.Id;
        var o = _controller.Heartbeat(leader, _brokers[leader].Epoch, Image.Offset + 1, false, false, offlineLogDirs: 1);
        Assert.False(o.IsFenced); // out of the partitions, not out of the cluster
        var moved = Partition("a");
        Assert.NotEqual(leader, moved.Leader);
        Assert.DoesNotContain(leader, moved.Isr);
        // A replica nobody else has keeps its only leader.
        if (soloOwner == leader) Assert.Equal(leader, Partition("solo").Leader);
        // While the report stands, the new leader cannot take it back into the ISR.
        long le = _brokers[moved.Leader].Epoch;
        IsrMember[] grow = [.. moved.Isr.Select(r => new IsrMember(r, _brokers[r].Epoch)), new IsrMember(leader, _brokers[leader].Epoch)];
        Assert.Equal(ErrorCode.IneligibleReplica, _controller.AlterPartition(moved.Leader, le, id, 0, moved.LeaderEpoch, moved.PartitionEpoch, grow).Error);
        // The next heartbeat reports none: it may rejoin.
        _controller.Heartbeat(leader, _brokers[leader].Epoch, Image.Offset + 1, false, false, offlineLogDirs: 0);
        var grown = _controller.AlterPartition(moved.Leader, le, id, 0, moved.LeaderEpoch, moved.PartitionEpoch, grow);
        Assert.Equal(ErrorCode.None, grown.Error);
        Assert.Contains(leader, grown.Registration!.Isr);
    }

    [Fact]
    public void AlterPartitionChecksLeaderEpochsAndEligibility()
    {
        StartCluster(1, 2, 3);
        CreateTopic("a", 1, 3);
        var reg = Partition("a");
        var id = Image.Topic("a")!.Id;
        int leader = reg.Leader;
        long le = _brokers[leader].Epoch;
        int f1 = reg.Replicas.First(r => r != leader);
        IsrMember[] shrink = [new(leader, le)];
        Assert.Equal(ErrorCode.NotLeaderOrFollower, _controller.AlterPartition(f1, _brokers[f1].Epoch, id, 0, reg.LeaderEpoch, reg.PartitionEpoch, shrink).Error);
        Assert.Equal(ErrorCode.StaleBrokerEpoch, _controller.AlterPartition(leader, le + 99, id, 0, reg.LeaderEpoch, reg.PartitionEpoch, shrink).Error);
        Assert.Equal(ErrorCode.FencedLeaderEpoch, _controller.AlterPartition(leader, le, id, 0, reg.LeaderEpoch - 1, reg.PartitionEpoch, shrink).Error);
        Assert.Equal(ErrorCode.InvalidUpdateVersion, _controller.AlterPartition(leader, le, id, 0, reg.LeaderEpoch, reg.PartitionEpoch + 1, shrink).Error);
        Assert.Equal(ErrorCode.UnknownTopicId, _controller.AlterPartition(leader, le, Uuid.Random(), 0, reg.LeaderEpoch, reg.PartitionEpoch, shrink).Error);

        var shrunk = _controller.AlterPartition(leader, le, id, 0, reg.LeaderEpoch, reg.PartitionEpoch, shrink);
        Assert.Equal(ErrorCode.None, shrunk.Error);
        Assert.Equal([leader], shrunk.Registration!.Isr.ToArray());
        Assert.Equal(reg.LeaderEpoch, shrunk.Registration.LeaderEpoch); // an ISR change keeps the leader epoch
        Assert.Equal(reg.PartitionEpoch + 1, shrunk.Registration.PartitionEpoch);

        // Expanding with a fenced broker, or with a stale broker epoch, is refused.
        Beat(f1, wantFence: true);
        var cur = Partition("a");
        Assert.Equal(ErrorCode.IneligibleReplica, _controller.AlterPartition(leader, le, id, 0, cur.LeaderEpoch, cur.PartitionEpoch,
            [new(leader, le), new(f1, _brokers[f1].Epoch)]).Error);
        int f2 = reg.Replicas.First(r => r != leader && r != f1);
        Assert.Equal(ErrorCode.IneligibleReplica, _controller.AlterPartition(leader, le, id, 0, cur.LeaderEpoch, cur.PartitionEpoch,
            [new(leader, le), new(f2, _brokers[f2].Epoch - 1)]).Error);
        var grown = _controller.AlterPartition(leader, le, id, 0, cur.LeaderEpoch, cur.PartitionEpoch, [new(leader, le), new(f2, _brokers[f2].Epoch)]);
        Assert.Equal(ErrorCode.None, grown.Error);
        Assert.Equal(reg.Replicas.Where(r => r == leader || r == f2).ToArray(), grown.Registration!.Isr.ToArray());
    }

    [Fact]
    public void ControlledShutdownHandsLeadershipsOverBeforeTheBrokerMayStop()
    {
        StartCluster(1, 2, 3);
        CreateTopic("c", 6, 3);
        Assert.Contains(Image.Topic("c")!.Partitions.Values, p => p.Leader == 2);
        var r = Beat(2, wantShutDown: true);
        Assert.True(r.ShouldShutDown);
        Assert.True(Image.Brokers[2].InControlledShutdown);
        Assert.DoesNotContain(Image.Topic("c")!.Partitions.Values, p => p.Leader == 2 || p.Isr.Contains(2));
        // New topics avoid a broker that is shutting down.
        CreateTopic("after", 3, 2);
        Assert.DoesNotContain(Image.Topic("after")!.Partitions.Values, p => p.Replicas.Contains(2));
    }

    [Fact]
    public void TheImageRebuiltFromTheLogMatchesTheController()
    {
        StartCluster(1, 2, 3);
        CreateTopic("r", 3, 3);
        Beat(3, wantFence: true);
        var replayed = new QuorumController(new ControllerOptions { NodeId = 100, ClusterId = "test-cluster", Time = _clock },
            _log, NullLogger<QuorumController>.Instance);
        replayed.Start();
        static string Show(MetadataImage i) => string.Join("; ",
            i.Brokers.Values.Select(b => $"{b.Id}/{b.Epoch}/{b.Fenced}/{b.InControlledShutdown}/{string.Join(",", b.Endpoints)}")
                .Concat(i.Topic("r")!.Partitions.Select(p =>
                    $"{p.Key}:{p.Value.Leader}/{p.Value.LeaderEpoch}/{p.Value.PartitionEpoch}/{string.Join(",", p.Value.Replicas)}/{string.Join(",", p.Value.Isr)}")));
        Assert.Equal(Show(Image), Show(replayed.Image));
        Assert.Contains("3/", Show(Image), StringComparison.Ordinal);
    }

    private void Expand(string topic, int p, params int[] isr)
    {
        var reg = Partition(topic, p);
        var r = _controller.AlterPartition(reg.Leader, _brokers[reg.Leader].Epoch, Image.Topic(topic)!.Id, p, reg.LeaderEpoch, reg.PartitionEpoch,
            [.. isr.Select(b => new IsrMember(b, _brokers[b].Epoch))]);
        Assert.Equal(ErrorCode.None, r.Error);
    }

    [Fact]
    public void PreferredElectionMovesLeadershipBackOnlyWhereItCan()
    {
        StartCluster(1, 2, 3);
        CreateTopic("p", 3, 3);
        int preferred = Partition("p").Replicas[0];
        Beat(preferred, wantFence: true); // leadership moves away
        Assert.NotEqual(preferred, Partition("p").Leader);
        var notLive = _controller.ElectLeaders(ElectionType.Preferred, [("p", 0)]);
        Assert.Equal(ErrorCode.PreferredLeaderNotAvailable, Assert.Single(notLive).Error);
        Assert.False(Beat(preferred).IsFenced);
        Assert.DoesNotContain(preferred, Partition("p").Isr); // not back in sync until its leader says so
        Assert.Equal(ErrorCode.PreferredLeaderNotAvailable, _controller.ElectLeaders(ElectionType.Preferred, [("p", 0)])[0].Error);
        Expand("p", 0, [.. Partition("p").Isr, preferred]);
        Assert.Equal(ErrorCode.None, _controller.ElectLeaders(ElectionType.Preferred, [("p", 0)])[0].Error);
        Assert.Equal(preferred, Partition("p").Leader);
        Assert.Equal(ErrorCode.ElectionNotNeeded, _controller.ElectLeaders(ElectionType.Preferred, [("p", 0)])[0].Error);
        Assert.Equal(ErrorCode.UnknownTopicOrPartition, _controller.ElectLeaders(ElectionType.Preferred, [("p", 9)])[0].Error);
        // All partitions: only the ones elected are reported.
        Assert.DoesNotContain(_controller.ElectLeaders(ElectionType.Preferred, null), r => r.Error == ErrorCode.ElectionNotNeeded);
    }

    [Fact]
    public void AutomaticRebalanceGivesEachBrokerBackThePartitionsItPrefers()
    {
        StartCluster(1, 2, 3);
        CreateTopic("bal", 9, 3);
        Beat(2, wantFence: true);
        Assert.DoesNotContain(Image.Topic("bal")!.Partitions.Values, p => p.Leader == 2);
        Beat(2);
        foreach (var (p, reg) in Image.Topic("bal")!.Partitions.Where(x => x.Value.Replicas[0] == 2).ToList()) Expand("bal", p, [.. reg.Isr, 2]);
        int moved = _controller.RebalanceLeaders(10);
        Assert.Equal(3, moved);
        Assert.All(Image.Topic("bal")!.Partitions.Values, p => Assert.Equal(p.Replicas[0], p.Leader));
        Assert.Equal(0, _controller.RebalanceLeaders(10));
    }

    [Fact]
    public void AReassignmentAddsReplicasFirstAndDropsTheOldOnesOnceTheNewAreInSync()
    {
        StartCluster(1, 2, 3, 4);
        var create = _controller.CreateTopics([new NewTopic("move", -1, -1,
            new Dictionary<int, IReadOnlyList<int>> { [0] = [1, 2] }, new Dictionary<string, string?>())], false);
        Assert.Equal(ErrorCode.None, create[0].Error);
        Assert.Equal(1, Partition("move").Leader);

        var r = _controller.AlterPartitionReassignments([("move", 0, [3, 4])]);
        Assert.Equal(ErrorCode.None, Assert.Single(r).Error);
        var moving = Partition("move");
        Assert.Equal([3, 4, 1, 2], moving.Replicas.ToArray());
        Assert.Equal([3, 4], moving.AddingReplicas.ToArray());
        Assert.Equal([1, 2], moving.RemovingReplicas.ToArray());
        Assert.Equal(1, moving.Leader);
        var listed = Assert.Single(_controller.ListPartitionReassignments(null));
        Assert.Equal(("move", 0), (listed.Topic, listed.Partition));

        Expand("move", 0, 1, 2, 3); // one of two added replicas caught up: still moving
        Assert.True(Partition("move").AddingReplicas.Length > 0);
        Expand("move", 0, 1, 2, 3, 4); // both: the move completes and leadership leaves broker 1
        var done = Partition("move");
        Assert.Equal([3, 4], done.Replicas.ToArray());
        Assert.Equal([3, 4], done.Isr.ToArray());
        Assert.Empty(done.AddingReplicas);
        Assert.Empty(done.RemovingReplicas);
        Assert.Equal(3, done.Leader);
        Assert.Equal(moving.LeaderEpoch + 1, done.LeaderEpoch);
        Assert.Empty(_controller.ListPartitionReassignments(null));
    }

    [Fact]
    public void AReassignmentCanBeCancelledAndBadTargetsAreRefused()
    {
        StartCluster(1, 2, 3);
        _controller.CreateTopics([new NewTopic("c2", -1, -1, new Dictionary<int, IReadOnlyList<int>> { [0] = [1] }, new Dictionary<string, string?>())], false);
        Assert.Equal(ErrorCode.NoReassignmentInProgress, _controller.AlterPartitionReassignments([("c2", 0, null)])[0].Error);
        Assert.Equal(ErrorCode.InvalidReplicaAssignment, _controller.AlterPartitionReassignments([("c2", 0, [2, 2])])[0].Error);
        Assert.Equal(ErrorCode.InvalidReplicaAssignment, _controller.AlterPartitionReassignments([("c2", 0, [9])])[0].Error);
        Assert.Equal(ErrorCode.UnknownTopicOrPartition, _controller.AlterPartitionReassignments([("nope", 0, [1])])[0].Error);

        Assert.Equal(ErrorCode.None, _controller.AlterPartitionReassignments([("c2", 0, [2, 3])])[0].Error);
        Assert.Equal(ErrorCode.None, _controller.AlterPartitionReassignments([("c2", 0, null)])[0].Error);
        var back = Partition("c2");
        Assert.Equal([1], back.Replicas.ToArray());
        Assert.Equal([1], back.Isr.ToArray());
        Assert.Empty(back.AddingReplicas);
        Assert.Equal(1, back.Leader);

        // Growing the replication factor: [1] -> [1, 2] completes when 2 joins the ISR.
        Assert.Equal(ErrorCode.None, _controller.AlterPartitionReassignments([("c2", 0, [1, 2])])[0].Error);
        Expand("c2", 0, 1, 2);
        Assert.Equal([1, 2], Partition("c2").Replicas.ToArray());
        Assert.Empty(Partition("c2").AddingReplicas);
        // Shrinking needs no copy and completes at once.
        Assert.Equal(ErrorCode.None, _controller.AlterPartitionReassignments([("c2", 0, [2])])[0].Error);
        Assert.Equal([2], Partition("c2").Replicas.ToArray());
        Assert.Equal(2, Partition("c2").Leader);
    }

    [Fact]
    public void ReplicasOfAPartitionSpreadOverRacks()
    {
        foreach (var (id, rack) in new[] { (1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c") })
        {
            var r = _controller.RegisterBroker(id, "test-cluster", Uuid.Random(), [], rack, -1);
            _brokers[id] = (Uuid.Random(), r.BrokerEpoch);
            Beat(id);
        }
        CreateTopic("racks", 12, 3);
        foreach (var p in Image.Topic("racks")!.Partitions.Values)
            Assert.Equal(3, p.Replicas.Select(r => Image.Brokers[r].Rack).Distinct().Count());
        // Leadership still rotates over every broker.
        Assert.Equal(6, Image.Topic("racks")!.Partitions.Values.Select(p => p.Leader).Distinct().Count());
        Assert.Equal([1, 3, 5, 2, 4, 6], ReplicaPlacer.RackAlternated([.. Image.Brokers.Values]));
    }
}
