using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;
using Freshet.Server;
using Xunit.Abstractions;
using ErrorCode = Freshet.Protocol.ErrorCode;

namespace Freshet.Integration.Tests.Groups;

/// <summary>Classic-protocol mistakes get Kafka's error codes, and do not disturb the group's other members.</summary>
public sealed class GroupProtocolErrorTests(ITestOutputHelper output) : IAsyncLifetime
{
    private FreshetServer _broker = null!;
    private RawKafkaClient _c = null!;
    private readonly Microsoft.Extensions.Logging.ILoggerFactory _loggers = TestOutputLoggerProvider.Factory(output);

    public async Task InitializeAsync()
    {
        _broker = await FreshetServer.StartEmbeddedAsync(ClassicGroupTests.BrokerProperties, _loggers);
        await Clients.CreateTopicAsync(_broker.BootstrapServers, "t", 2);
        _c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var fc = await _c.RequestAsync<FindCoordinatorResponse>(new FindCoordinatorRequest { Key = "warmup" }, 3);
        Assert.Equal((short)ErrorCode.None, fc.ErrorCode);
    }

    public async Task DisposeAsync()
    {
        await _c.DisposeAsync();
        await _broker.DisposeAsync();
        _loggers.Dispose();
    }

    private static JoinGroupRequest Join(string group, string memberId = "", string protocolType = "consumer", int session = 10_000) => new()
    {
        GroupId = group,
        SessionTimeoutMs = session,
        RebalanceTimeoutMs = 10_000,
        MemberId = memberId,
        ProtocolType = protocolType,
        Protocols = [new() { Name = "range", Metadata = new ConsumerProtocolSubscription { Topics = ["t"] }.ToVersionedBytes(0) }],
    };

    /// <summary>Joins (retrying while the coordinator loads) and syncs as the only member; returns member id and generation.</summary>
    private async Task<(string MemberId, int Generation)> JoinAloneAsync(string group)
    {
        JoinGroupResponse r;
        var deadline = DateTime.UtcNow.AddSeconds(20);
        do r = await _c.RequestAsync<JoinGroupResponse>(Join(group), 5);
        while (r.ErrorCode == (short)ErrorCode.CoordinatorLoadInProgress && DateTime.UtcNow < deadline);
        Assert.Equal((short)ErrorCode.MemberIdRequired, r.ErrorCode);
        string id = r.MemberId;
        r = await _c.RequestAsync<JoinGroupResponse>(Join(group, id), 5);
        Assert.Equal((short)ErrorCode.None, r.ErrorCode);
        Assert.Equal(id, r.Leader);
        var s = await _c.RequestAsync<SyncGroupResponse>(new SyncGroupRequest
        {
            GroupId = group, GenerationId = r.GenerationId, MemberId = id, Assignments = [new() { MemberId = id, Assignment = new byte[] { 0, 0 } }],
        }, 3);
        Assert.Equal((short)ErrorCode.None, s.ErrorCode);
        return (id, r.GenerationId);
    }

    [Fact]
    public async Task InvalidJoinsAreRefused()
    {
        Assert.Equal((short)ErrorCode.InvalidGroupId, (await _c.RequestAsync<JoinGroupResponse>(Join(""), 5)).ErrorCode);
        Assert.Equal((short)ErrorCode.InvalidSessionTimeout, (await _c.RequestAsync<JoinGroupResponse>(Join("g-timeout", session: 10), 5)).ErrorCode);
        Assert.Equal((short)ErrorCode.UnknownMemberId, (await _c.RequestAsync<JoinGroupResponse>(Join("g-unknown", "nobody"), 5)).ErrorCode);
        var (id, _) = await JoinAloneAsync("g-proto");
        var other = await _c.RequestAsync<JoinGroupResponse>(Join("g-proto", protocolType: "connect"), 5);
        Assert.Equal((short)ErrorCode.InconsistentGroupProtocol, other.ErrorCode);
        // The member is unaffected.
        var hb = await _c.RequestAsync<HeartbeatResponse>(new HeartbeatRequest { GroupId = "g-proto", GenerationId = 1, MemberId = id }, 3);
        Assert.Equal((short)ErrorCode.None, hb.ErrorCode);
    }

    [Fact]
    public async Task WrongGenerationUnknownMemberAndRebalanceInProgress()
    {
        var (id, gen) = await JoinAloneAsync("g-gen");
        Assert.Equal((short)ErrorCode.IllegalGeneration,
            (await _c.RequestAsync<HeartbeatResponse>(new HeartbeatRequest { GroupId = "g-gen", GenerationId = gen + 5, MemberId = id }, 3)).ErrorCode);
        Assert.Equal((short)ErrorCode.UnknownMemberId,
            (await _c.RequestAsync<HeartbeatResponse>(new HeartbeatRequest { GroupId = "g-gen", GenerationId = gen, MemberId = "stranger" }, 3)).ErrorCode);
        Assert.Equal((short)ErrorCode.IllegalGeneration,
            (await _c.RequestAsync<SyncGroupResponse>(new SyncGroupRequest { GroupId = "g-gen", GenerationId = gen - 1, MemberId = id }, 3)).ErrorCode);

        // A second member joining starts a rebalance: the first one's heartbeats and syncs say so.
        await using var c2 = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var first = await c2.RequestAsync<JoinGroupResponse>(Join("g-gen"), 5);
        int pending = await c2.SendAsync(Join("g-gen", first.MemberId), 5); // waits for the rebalance
        // The broker has taken that join up once the group says it is rebalancing (the event, not a sleep).
        for (var sw = System.Diagnostics.Stopwatch.StartNew(); ; await Task.Delay(50))
        {
            var d = await _c.RequestAsync<DescribeGroupsResponse>(new DescribeGroupsRequest { Groups = ["g-gen"] }, 5);
            if (d.Groups[0].GroupState == "PreparingRebalance") break;
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(30), $"group g-gen is {d.Groups[0].GroupState}");
        }
        Assert.Equal((short)ErrorCode.RebalanceInProgress,
            (await _c.RequestAsync<HeartbeatResponse>(new HeartbeatRequest { GroupId = "g-gen", GenerationId = gen, MemberId = id }, 3)).ErrorCode);
        Assert.Equal((short)ErrorCode.RebalanceInProgress,
            (await _c.RequestAsync<SyncGroupResponse>(new SyncGroupRequest { GroupId = "g-gen", GenerationId = gen, MemberId = id }, 3)).ErrorCode);
        // The first member rejoins: the rebalance completes for both, a generation later.
        var rejoin = await _c.RequestAsync<JoinGroupResponse>(Join("g-gen", id), 5);
        var second = await c2.ReadResponseAsync<JoinGroupResponse>(5, pending);
        Assert.Equal(gen + 1, rejoin.GenerationId);
        Assert.Equal(gen + 1, second.GenerationId);
        Assert.Equal(2, (rejoin.Leader == id ? rejoin : second).Members.Count);
    }

    [Fact]
    public async Task CommitsAreCheckedPerPartitionAndPerMember()
    {
        var (id, gen) = await JoinAloneAsync("g-commit");
        var commit = new OffsetCommitRequest
        {
            GroupId = "g-commit", GenerationIdOrMemberEpoch = gen, MemberId = id,
            Topics =
            [
                new() { Name = "t", Partitions = [new() { PartitionIndex = 0, CommittedOffset = 5 }, new() { PartitionIndex = 7, CommittedOffset = 5 }] },
                new() { Name = "no-such-topic", Partitions = [new() { PartitionIndex = 0, CommittedOffset = 1 }] },
            ],
        };
        var r = await _c.RequestAsync<OffsetCommitResponse>(commit, 8);
        Assert.Equal((short)ErrorCode.None, r.Topics[0].Partitions[0].ErrorCode);
        Assert.Equal((short)ErrorCode.UnknownTopicOrPartition, r.Topics[0].Partitions[1].ErrorCode);
        Assert.Equal((short)ErrorCode.UnknownTopicOrPartition, r.Topics[1].Partitions[0].ErrorCode);

        commit.GenerationIdOrMemberEpoch = gen + 1;
        Assert.Equal((short)ErrorCode.IllegalGeneration, (await _c.RequestAsync<OffsetCommitResponse>(commit, 8)).Topics[0].Partitions[0].ErrorCode);
        commit.GenerationIdOrMemberEpoch = gen;
        commit.MemberId = "stranger";
        Assert.Equal((short)ErrorCode.UnknownMemberId, (await _c.RequestAsync<OffsetCommitResponse>(commit, 8)).Topics[0].Partitions[0].ErrorCode);

        var fetched = await _c.RequestAsync<OffsetFetchResponse>(new OffsetFetchRequest
        {
            Groups = [new() { GroupId = "g-commit", Topics = [new() { Name = "t", PartitionIndexes = [0, 1] }] }],
        }, 8);
        var parts = fetched.Groups[0].Topics[0].Partitions;
        Assert.Equal(5, parts.Single(p => p.PartitionIndex == 0).CommittedOffset);
        Assert.Equal(-1, parts.Single(p => p.PartitionIndex == 1).CommittedOffset);
        Assert.Equal((short)ErrorCode.InvalidGroupId,
            (await _c.RequestAsync<OffsetCommitResponse>(new OffsetCommitRequest { GroupId = "", Topics = commit.Topics }, 8)).Topics[0].Partitions[0].ErrorCode);
    }

    private static OffsetCommitRequest Commit(string group, int generation, string memberId, long offset, string? instanceId = null) => new()
    {
        GroupId = group, GenerationIdOrMemberEpoch = generation, MemberId = memberId, GroupInstanceId = instanceId,
        Topics = [new() { Name = "t", Partitions = [new() { PartitionIndex = 1, CommittedOffset = offset }] }],
    };

    private async Task<short> CommitErrorAsync(RawKafkaClient c, OffsetCommitRequest request, short version = 8) =>
        (await c.RequestAsync<OffsetCommitResponse>(request, version)).Topics[0].Partitions[0].ErrorCode;

    private async Task<long> CommittedAsync(string group)
    {
        var f = await _c.RequestAsync<OffsetFetchResponse>(new OffsetFetchRequest
        {
            Groups = [new() { GroupId = group, Topics = [new() { Name = "t", PartitionIndexes = [1] }] }],
        }, 8);
        Assert.Equal((short)ErrorCode.None, f.Groups[0].ErrorCode);
        return f.Groups[0].Topics[0].Partitions[0].CommittedOffset;
    }

    /// <summary>
    /// Kafka's ClassicGroup.validateOffsetCommit, rule by rule: the member is checked before the
    /// generation, the generation before the group's state; a generation for a group that does not
    /// exist creates none.
    /// </summary>
    [Fact]
    public async Task CommitsFollowKafkasValidationOrder()
    {
        // No such group: a generation is refused (ILLEGAL_GENERATION before v9, GROUP_ID_NOT_FOUND from v9) and makes no group.
        Assert.Equal((short)ErrorCode.IllegalGeneration, await CommitErrorAsync(_c, Commit("g-none", 3, "m", 1), 8));
        Assert.Equal((short)ErrorCode.GroupIdNotFound, await CommitErrorAsync(_c, Commit("g-none", 3, "m", 1), 9));
        var described = await _c.RequestAsync<DescribeGroupsResponse>(new DescribeGroupsRequest { Groups = ["g-none"] }, 5);
        Assert.Equal("Dead", described.Groups[0].GroupState);

        // An empty group (made by a simple commit): anyone without a generation may commit; a member id it does not know is UNKNOWN_MEMBER_ID.
        Assert.Equal((short)ErrorCode.None, await CommitErrorAsync(_c, Commit("g-simple", -1, "", 5)));
        Assert.Equal((short)ErrorCode.UnknownMemberId, await CommitErrorAsync(_c, Commit("g-simple", 0, "ghost", 6)));
        Assert.Equal(5, await CommittedAsync("g-simple"));

        // A group waiting for its leader's SyncGroup (CompletingRebalance).
        JoinGroupResponse j;
        var deadline = DateTime.UtcNow.AddSeconds(20);
        do j = await _c.RequestAsync<JoinGroupResponse>(Join("g-order"), 5);
        while (j.ErrorCode == (short)ErrorCode.CoordinatorLoadInProgress && DateTime.UtcNow < deadline);
        j = await _c.RequestAsync<JoinGroupResponse>(Join("g-order", j.MemberId), 5);
        Assert.Equal((short)ErrorCode.None, j.ErrorCode);
        string id = j.MemberId;
        int gen = j.GenerationId;
        Assert.Equal((short)ErrorCode.UnknownMemberId, await CommitErrorAsync(_c, Commit("g-order", gen, "stranger", 1)));
        Assert.Equal((short)ErrorCode.IllegalGeneration, await CommitErrorAsync(_c, Commit("g-order", gen + 1, id, 1)));
        Assert.Equal((short)ErrorCode.RebalanceInProgress, await CommitErrorAsync(_c, Commit("g-order", gen, id, 1)));
        // Without generation or member id the group must be empty.
        Assert.Equal((short)ErrorCode.UnknownMemberId, await CommitErrorAsync(_c, Commit("g-order", -1, "", 1)));
        // -1 with the member's id is a wrong generation.
        Assert.Equal((short)ErrorCode.IllegalGeneration, await CommitErrorAsync(_c, Commit("g-order", -1, id, 1)));
        var s = await _c.RequestAsync<SyncGroupResponse>(new SyncGroupRequest
        {
            GroupId = "g-order", GenerationId = gen, MemberId = id, Assignments = [new() { MemberId = id, Assignment = new byte[] { 0, 0 } }],
        }, 3);
        Assert.Equal((short)ErrorCode.None, s.ErrorCode);
        Assert.Equal((short)ErrorCode.None, await CommitErrorAsync(_c, Commit("g-order", gen, id, 10)));
        Assert.Equal((short)ErrorCode.None, await CommitErrorAsync(_c, Commit("g-order", gen, id, 10), 9));

        // A second member joins: during PreparingRebalance the first may still commit with its generation (its revocation callback does).
        await using var c2 = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var first = await c2.RequestAsync<JoinGroupResponse>(Join("g-order"), 5);
        int pending = await c2.SendAsync(Join("g-order", first.MemberId), 5);
        deadline = DateTime.UtcNow.AddSeconds(20);
        while ((await _c.RequestAsync<HeartbeatResponse>(new HeartbeatRequest { GroupId = "g-order", GenerationId = gen, MemberId = id }, 3)).ErrorCode
               != (short)ErrorCode.RebalanceInProgress)
        {
            Assert.True(DateTime.UtcNow < deadline, "the second member's join did not start a rebalance");
            await Task.Delay(50);
        }
        Assert.Equal((short)ErrorCode.None, await CommitErrorAsync(_c, Commit("g-order", gen, id, 11)));
        var rejoin = await _c.RequestAsync<JoinGroupResponse>(Join("g-order", id), 5);
        var second = await c2.ReadResponseAsync<JoinGroupResponse>(5, pending);
        Assert.Equal(gen + 1, rejoin.GenerationId);
        var leader = rejoin.Leader == id ? (_c, id) : (c2, second.MemberId);
        var assignments = new List<SyncGroupRequest.SyncGroupRequestAssignment>
        {
            new() { MemberId = id, Assignment = new byte[] { 0, 0 } }, new() { MemberId = second.MemberId, Assignment = new byte[] { 0, 0 } },
        };
        int otherSync = await (leader.Item1 == _c ? c2 : _c).SendAsync(new SyncGroupRequest
        {
            GroupId = "g-order", GenerationId = gen + 1, MemberId = leader.Item2 == id ? second.MemberId : id,
        }, 3);
        Assert.Equal((short)ErrorCode.None, (await leader.Item1.RequestAsync<SyncGroupResponse>(new SyncGroupRequest
        {
            GroupId = "g-order", GenerationId = gen + 1, MemberId = leader.Item2, Assignments = assignments,
        }, 3)).ErrorCode);
        Assert.Equal((short)ErrorCode.None, (await (leader.Item1 == _c ? c2 : _c).ReadResponseAsync<SyncGroupResponse>(3, otherSync)).ErrorCode);

        // The partition now belongs to the second member, which commits it; the first member's
        // late commit with the generation it had before the rebalance is ILLEGAL_GENERATION and moves nothing.
        Assert.Equal((short)ErrorCode.None, await CommitErrorAsync(c2, Commit("g-order", gen + 1, second.MemberId, 20)));
        Assert.Equal((short)ErrorCode.IllegalGeneration, await CommitErrorAsync(_c, Commit("g-order", gen, id, 12)));
        Assert.Equal((short)ErrorCode.IllegalGeneration, await CommitErrorAsync(_c, Commit("g-order", gen, id, 12), 9));
        Assert.Equal(20, await CommittedAsync("g-order"));
    }

    /// <summary>Static members are known by group.instance.id: an unknown one is UNKNOWN_MEMBER_ID, a known one with another member id FENCED_INSTANCE_ID.</summary>
    [Fact]
    public async Task StaticMembersCommitsAreCheckedByInstanceId()
    {
        var join = Join("g-static");
        join.GroupInstanceId = "instance-a";
        JoinGroupResponse j;
        var deadline = DateTime.UtcNow.AddSeconds(20);
        do j = await _c.RequestAsync<JoinGroupResponse>(join, 5);
        while (j.ErrorCode == (short)ErrorCode.CoordinatorLoadInProgress && DateTime.UtcNow < deadline);
        Assert.Equal((short)ErrorCode.None, j.ErrorCode);
        var s = await _c.RequestAsync<SyncGroupResponse>(new SyncGroupRequest
        {
            GroupId = "g-static", GenerationId = j.GenerationId, MemberId = j.MemberId, GroupInstanceId = "instance-a",
            Assignments = [new() { MemberId = j.MemberId, Assignment = new byte[] { 0, 0 } }],
        }, 3);
        Assert.Equal((short)ErrorCode.None, s.ErrorCode);
        Assert.Equal((short)ErrorCode.UnknownMemberId, await CommitErrorAsync(_c, Commit("g-static", j.GenerationId, j.MemberId, 1, "instance-b")));
        Assert.Equal((short)ErrorCode.FencedInstanceId, await CommitErrorAsync(_c, Commit("g-static", j.GenerationId, "old-id", 1, "instance-a")));
        Assert.Equal((short)ErrorCode.None, await CommitErrorAsync(_c, Commit("g-static", j.GenerationId, j.MemberId, 1, "instance-a")));
    }

    [Fact]
    public async Task DeletingGroupsAndOffsets()
    {
        var (id, gen) = await JoinAloneAsync("g-delete");
        var del = await _c.RequestAsync<DeleteGroupsResponse>(new DeleteGroupsRequest { GroupsNames = ["g-delete", "g-missing"] }, 2);
        Assert.Equal((short)ErrorCode.NonEmptyGroup, del.Results.Single(r => r.GroupId == "g-delete").ErrorCode);
        Assert.Equal((short)ErrorCode.GroupIdNotFound, del.Results.Single(r => r.GroupId == "g-missing").ErrorCode);

        await _c.RequestAsync<OffsetCommitResponse>(new OffsetCommitRequest
        {
            GroupId = "g-delete", GenerationIdOrMemberEpoch = gen, MemberId = id,
            Topics = [new() { Name = "t", Partitions = [new() { PartitionIndex = 0, CommittedOffset = 3 }, new() { PartitionIndex = 1, CommittedOffset = 4 }] }],
        }, 8);
        // The member subscribes to t: its offsets cannot be deleted while it is there.
        var od = await _c.RequestAsync<OffsetDeleteResponse>(new OffsetDeleteRequest { GroupId = "g-delete", Topics = [new() { Name = "t", Partitions = [new() { PartitionIndex = 0 }] }] }, 0);
        Assert.Equal((short)ErrorCode.GroupSubscribedToTopic, od.Topics[0].Partitions[0].ErrorCode);

        var leave = await _c.RequestAsync<LeaveGroupResponse>(new LeaveGroupRequest { GroupId = "g-delete", Members = [new() { MemberId = id }] }, 3);
        Assert.Equal((short)ErrorCode.None, leave.Members[0].ErrorCode);
        od = await _c.RequestAsync<OffsetDeleteResponse>(new OffsetDeleteRequest { GroupId = "g-delete", Topics = [new() { Name = "t", Partitions = [new() { PartitionIndex = 0 }] }] }, 0);
        Assert.Equal((short)ErrorCode.None, od.Topics[0].Partitions[0].ErrorCode);
        var fetched = await _c.RequestAsync<OffsetFetchResponse>(new OffsetFetchRequest { GroupId = "g-delete", Topics = null }, 7);
        Assert.Equal([(1, 4L)], fetched.Topics.SelectMany(t => t.Partitions).Select(p => (p.PartitionIndex, p.CommittedOffset)));

        del = await _c.RequestAsync<DeleteGroupsResponse>(new DeleteGroupsRequest { GroupsNames = ["g-delete"] }, 2);
        Assert.Equal((short)ErrorCode.None, del.Results[0].ErrorCode);
        var list = await _c.RequestAsync<ListGroupsResponse>(new ListGroupsRequest(), 4);
        Assert.DoesNotContain(list.Groups, g => g.GroupId == "g-delete");
        fetched = await _c.RequestAsync<OffsetFetchResponse>(new OffsetFetchRequest { GroupId = "g-delete", Topics = null }, 7);
        Assert.Empty(fetched.Topics);
    }
}

internal static class SubscriptionBytes
{
    /// <summary>The consumer protocol's subscription metadata: int16 version, then the struct.</summary>
    public static byte[] ToVersionedBytes(this ConsumerProtocolSubscription s, short version)
    {
        var body = s.ToBytes(version);
        var bytes = new byte[2 + body.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteInt16BigEndian(bytes, version);
        body.CopyTo(bytes, 2);
        return bytes;
    }
}
