using System.Diagnostics;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;
using Freshet.Server;
using Xunit.Abstractions;
using ErrorCode = Freshet.Protocol.ErrorCode;

namespace Freshet.Integration.Tests.Groups;

/// <summary>
/// The KIP-848 consumer group protocol: librdkafka consumers with group.protocol=consumer
/// (partitions split and moved without ever being owned twice, crashed members fenced after the
/// session timeout, committed offsets honoured, state kept across a broker restart), and the
/// protocol's rules checked on the wire with a raw client (epochs, errors, static members,
/// revocation before reassignment, describe, offsets, deletion).
/// </summary>
public sealed class ConsumerProtocolTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int Partitions = 6;
    private const int SessionTimeoutMs = 6000;
    private FreshetServer _broker = null!;
    private readonly Microsoft.Extensions.Logging.ILoggerFactory _loggers = TestOutputLoggerProvider.Factory(output);

    /// <summary>
    /// The broker's defaults, except short sessions and heartbeats that keep tests fast.
    /// </summary>
    private static Dictionary<string, string> BrokerProperties(Dictionary<string, string>? extra = null)
    {
        var p = new Dictionary<string, string>
        {
            ["group.consumer.session.timeout.ms"] = SessionTimeoutMs.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["group.consumer.heartbeat.interval.ms"] = "500",
            ["offsets.topic.num.partitions"] = "4",
        };
        foreach (var (k, v) in extra ?? []) p[k] = v;
        return p;
    }

    public async Task InitializeAsync() => _broker = await FreshetServer.StartEmbeddedAsync(BrokerProperties(), _loggers);

    public async Task DisposeAsync()
    {
        await _broker.DisposeAsync();
        _loggers.Dispose();
    }

    // ================================================================ librdkafka with group.protocol=consumer

    [Fact]
    public async Task TwoThenThreeConsumersGetDisjointAssignmentsCoveringEveryPartition()
    {
        const string topic = "split", group = "g-split";
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, Partitions);
        await using var watch = await GroupWatch.StartAsync(_broker.BootstrapServers, group);

        await using var a = Member.Start(_broker.BootstrapServers, group, topic, "a");
        await using var b = Member.Start(_broker.BootstrapServers, group, topic, "b");
        await WaitSplitAsync(watch, [a, b], [3, 3]);

        await using var c = Member.Start(_broker.BootstrapServers, group, topic, "c");
        await WaitSplitAsync(watch, [a, b, c], [2, 2, 2]);

        await c.StopAsync();
        await WaitSplitAsync(watch, [a, b], [3, 3]);
        Assert.Empty(watch.Violations);
        output.WriteLine($"{watch.Describes} descriptions checked; librdkafka {Clients.LibrdkafkaVersion}");
    }

    [Fact]
    public async Task MemberProcessesSplitPartitionsAndAKilledMembersPartitionsMoveWithoutLossOrRedelivery()
    {
        // The classic tests' scenario with `freshet consume --group-protocol consumer` members: two,
        // then three, then one killed with SIGKILL (its heartbeats stop, it never leaves).
        const string topic = "procs", group = "g-procs";
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, Partitions);
        var memberProperties = new Dictionary<string, string>
        {
            ["auto.commit.interval.ms"] = "100",
            ["topic.metadata.refresh.interval.ms"] = "1000",
        };
        await GroupScenario.RunAsync(_broker.BootstrapServers, topic, group, memberProperties, protocol: "consumer", output);
    }

    [Fact]
    public async Task TheRangeAssignorCanBeAskedForByTheClient()
    {
        const string topic = "ranged", group = "g-ranged";
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, Partitions);
        await using var watch = await GroupWatch.StartAsync(_broker.BootstrapServers, group);
        await using var a = Member.Start(_broker.BootstrapServers, group, topic, "a", assignor: "range");
        await using var b = Member.Start(_broker.BootstrapServers, group, topic, "b", assignor: "range");
        await WaitSplitAsync(watch, [a, b], [3, 3]);
        var d = await watch.DescribeAsync();
        Assert.Equal("range", d.AssignorName);
        // Consecutive ranges: each member has 0-2 or 3-5.
        Assert.All(d.Members, m => Assert.Contains(string.Join(",", m.Assignment.TopicPartitions.Single().Partitions.Order()), new[] { "0,1,2", "3,4,5" }));
    }

    [Fact]
    public async Task AMemberThatStopsHeartbeatingIsFencedAfterTheSessionTimeoutAndItsPartitionsMove()
    {
        const string topic = "crash", group = "g-crash";
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, Partitions);
        await using var live = Member.Start(_broker.BootstrapServers, group, topic, "live");
        await Until(() => live.Assignment.Length == Partitions, TimeSpan.FromSeconds(20), "the first member gets every partition");

        // The member that will crash: a raw protocol member that heartbeats (and acknowledges) until it holds its share, then goes silent.
        await using var conn = await ConnectAsync(group);
        await using var watcher = await ConnectAsync(group);
        var crashing = new RawMember(conn, group, [topic]);
        long lastBeatSent = Stopwatch.GetTimestamp();
        await crashing.JoinAsync();
        var sw = Stopwatch.StartNew();
        while (crashing.Owned.Count != Partitions / 2 || live.Assignment.Length != Partitions / 2)
        {
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(30), $"raw member owns {crashing.Owned.Count}, live member {live.Assignment.Length}");
            await Task.Delay(300);
            lastBeatSent = Stopwatch.GetTimestamp();
            await crashing.BeatAsync();
        }
        Assert.Empty(crashing.Owned.Intersect(live.Assignment.Select(tp => tp.Partition.Value)));

        // Silent from here. The embedded broker's session timer runs on this process's monotonic clock and was
        // armed when the last heartbeat arrived, after lastBeatSent: a description answered before
        // lastBeatSent + the session timeout was made before the deadline and must still list the member
        // (50 ms are for the coarse clock timers fire on). Load can only make answers later, never earlier.
        int describedBefore = 0;
        while (true)
        {
            var d = await DescribeAsync(watcher, group);
            double answeredMs = Stopwatch.GetElapsedTime(lastBeatSent).TotalMilliseconds;
            if (d.Members.All(m => m.MemberId != crashing.MemberId))
            {
                output.WriteLine($"fenced in an answer {answeredMs:F0} ms after the last heartbeat was sent (session timeout {SessionTimeoutMs} ms; {describedBefore} answers before that still listed it)");
                Assert.True(answeredMs >= SessionTimeoutMs - 50, $"fenced in an answer {answeredMs:F0} ms after its last heartbeat was sent, before its {SessionTimeoutMs} ms session ended");
                break;
            }
            describedBefore++;
            Assert.True(answeredMs < SessionTimeoutMs + 30_000, "the silent member was never fenced");
            await Task.Delay(100);
        }
        await Until(() => live.Assignment.Length == Partitions, TimeSpan.FromSeconds(30), "the live member gets the silent member's partitions");

        var late = await Heartbeat(conn, new ConsumerGroupHeartbeatRequest { GroupId = group, MemberId = crashing.MemberId, MemberEpoch = crashing.Epoch });
        Assert.Equal((short)ErrorCode.UnknownMemberId, late.ErrorCode);
    }

    [Fact]
    public async Task CommittedOffsetsAreHonouredAcrossRebalancesNothingCommittedIsReadAgainAndNothingIsSkipped()
    {
        const string topic = "commits", group = "g-commits";
        const int perPartition = 150;
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, Partitions);
        using (var producer = new ProducerBuilder<string, string>(Clients.ProducerConfig(_broker.BootstrapServers)).Build())
        {
            for (int i = 0; i < perPartition; i++)
                for (int p = 0; p < Partitions; p++) producer.Produce(new TopicPartition(topic, p), new Message<string, string> { Key = $"{p}", Value = $"{p}-{i}" });
            producer.Flush(TimeSpan.FromSeconds(30));
        }

        var journal = new Journal();
        await using var a = Member.Start(_broker.BootstrapServers, group, topic, "a", journal);
        await Until(() => journal.Delivered >= 150, TimeSpan.FromSeconds(30), "a consumes");
        await using var b = Member.Start(_broker.BootstrapServers, group, topic, "b", journal);
        await Until(() => journal.Delivered >= 400, TimeSpan.FromSeconds(30), "a and b consume");
        await using var c = Member.Start(_broker.BootstrapServers, group, topic, "c", journal);
        await Until(() => journal.Delivered >= 600, TimeSpan.FromSeconds(30), "a, b and c consume");
        await a.StopAsync(); // leaves the group: its partitions move to b and c
        await Until(() => journal.CommittedEverything(Partitions, perPartition), TimeSpan.FromSeconds(40), "every message is consumed and committed");

        var (redelivered, skipped, duplicates) = journal.Check(Partitions, perPartition);
        output.WriteLine($"{journal.Delivered} deliveries, {duplicates} of uncommitted messages delivered again, {journal.FailedCommits} commits refused; by member: " +
                         string.Join(", ", journal.ByMember()));
        Assert.Empty(redelivered);
        Assert.Empty(skipped);
        // How the work splits depends on timing; that messages moved between members at all is what matters here.
        Assert.True(journal.ByMember().Count(kv => kv.Value > 0) >= 2, "partitions moved between members while there was data");
    }

    [Fact]
    public async Task MembersKeepTheirEpochsAndAssignmentsAcrossABrokerRestart()
    {
        const string topic = "restart", group = "g-restart";
        int port = BrokerProcess.FreePort();
        string dir = Path.Combine(Path.GetTempPath(), "freshet-cgrestart-" + Guid.NewGuid().ToString("N")[..8]);
        var props = BrokerProperties(new() { ["listeners"] = $"PLAINTEXT://127.0.0.1:{port}", ["log.dirs"] = dir });
        await _broker.DisposeAsync();
        _broker = await FreshetServer.StartEmbeddedAsync(props, _loggers);
        try
        {
            await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, Partitions);
            await using var a = Member.Start(_broker.BootstrapServers, group, topic, "a");
            await using var b = Member.Start(_broker.BootstrapServers, group, topic, "b");
            ConsumerGroupDescribeResponse.DescribedGroup before;
            await using (var watch = await GroupWatch.StartAsync(_broker.BootstrapServers, group))
            {
                await WaitSplitAsync(watch, [a, b], [3, 3]);
                before = await watch.DescribeAsync();
            }
            int rebalancesBefore = a.Rebalances + b.Rebalances;

            // Two more groups whose tombstones must win at the replay: one whose member left, one deleted.
            await using (var c = await ConnectAsync("g-restart-left"))
            {
                var gone = new RawMember(c, "g-restart-left", [topic]);
                await gone.JoinAsync();
                await Heartbeat(c, new ConsumerGroupHeartbeatRequest { GroupId = "g-restart-left", MemberId = gone.MemberId, MemberEpoch = -1 });
                await ConnectAsync("g-restart-deleted");
                var deleted = new RawMember(c, "g-restart-deleted", [topic]);
                await deleted.JoinAsync();
                await Heartbeat(c, new ConsumerGroupHeartbeatRequest { GroupId = "g-restart-deleted", MemberId = deleted.MemberId, MemberEpoch = -1 });
                using var admin = Clients.Admin(_broker.BootstrapServers);
                await admin.DeleteGroupsAsync(["g-restart-deleted"]);
            }

            await _broker.DisposeAsync();
            _broker = await FreshetServer.StartEmbeddedAsync(props, _loggers);

            // The members reconnect and heartbeat with the epochs they had: the group is loaded with them.
            await using var watchAfter = await GroupWatch.StartAsync(_broker.BootstrapServers, group);
            var sw = Stopwatch.StartNew();
            ConsumerGroupDescribeResponse.DescribedGroup after;
            while (true)
            {
                after = await watchAfter.DescribeAsync();
                if (after.ErrorCode == 0 && after.GroupState == "Stable") break;
                Assert.True(sw.Elapsed < TimeSpan.FromSeconds(40), $"group after restart: {after.ErrorCode} {after.GroupState}");
                await Task.Delay(200);
            }
            // The load armed every member's session. A member of another group joins now (after the load) and
            // stays silent: once it is fenced, a full session has passed since the load, so a or b would be
            // gone by now had they not come back (the event replaces waiting out the session).
            await using (var c = await ConnectAsync(group + "-control"))
            {
                var silent = new RawMember(c, group + "-control", [topic]);
                await silent.JoinAsync();
                sw.Restart();
                while ((await DescribeAsync(c, group + "-control")).Members.Count > 0)
                {
                    Assert.True(sw.Elapsed < TimeSpan.FromMilliseconds(SessionTimeoutMs + 30_000), "the control group's silent member was never fenced");
                    await Task.Delay(200);
                }
            }
            after = await watchAfter.DescribeAsync();
            Assert.Equal("Stable", after.GroupState);
            Assert.Equal(before.GroupEpoch, after.GroupEpoch);
            Assert.Equal(Summary(before), Summary(after));
            Assert.Equal(rebalancesBefore, a.Rebalances + b.Rebalances);
            Assert.Equal(3, a.Assignment.Length);
            await using (var c = await ConnectAsync("g-restart-left"))
            {
                var left = await DescribeAsync(c, "g-restart-left");
                Assert.Equal("Empty", left.GroupState);
                Assert.Equal(2, left.GroupEpoch); // joined (1), left (2)
                Assert.Empty(left.Members);
                Assert.Equal((short)ErrorCode.GroupIdNotFound, (await DescribeAsync(c, "g-restart-deleted")).ErrorCode);
            }

            // A commit at the epoch from before the restart is accepted.
            var mine = a.Assignment[0];
            a.CommitOffset(new TopicPartitionOffset(mine, 0));
        }
        finally
        {
            await _broker.DisposeAsync();
            _broker = await FreshetServer.StartEmbeddedAsync(BrokerProperties(), _loggers);
            try { Directory.Delete(dir, recursive: true); }
            catch (IOException) { }
        }

        static string Summary(ConsumerGroupDescribeResponse.DescribedGroup d) => string.Join(";", d.Members.OrderBy(m => m.MemberId).Select(m =>
            $"{m.MemberId}@{m.MemberEpoch}:{string.Join(",", m.Assignment.TopicPartitions.SelectMany(t => t.Partitions).Order())}"));
    }

    // ================================================================ the protocol on the wire

    [Fact]
    public async Task MalformedHeartbeatsAreInvalidRequestsAndUnknownAssignorsAreRefused()
    {
        const string group = "g-invalid";
        await Clients.CreateTopicAsync(_broker.BootstrapServers, "inv", 1);
        await using var c = await ConnectAsync(group);
        async Task Expect(ErrorCode expected, ConsumerGroupHeartbeatRequest r, short version = 0)
        {
            var resp = await Heartbeat(c, r, version);
            output.WriteLine($"{expected}: {resp.ErrorMessage}");
            Assert.Equal((short)expected, resp.ErrorCode);
            Assert.False(string.IsNullOrEmpty(resp.ErrorMessage));
        }

        await Expect(ErrorCode.InvalidRequest, Join("", ["inv"]));
        await Expect(ErrorCode.InvalidRequest, Join(group, ["inv"], r => { r.RebalanceTimeoutMs = -1; }));
        await Expect(ErrorCode.InvalidRequest, Join(group, ["inv"], r => { r.TopicPartitions = null; }));
        await Expect(ErrorCode.InvalidRequest, Join(group, ["inv"], r => { r.SubscribedTopicNames = null; }));
        await Expect(ErrorCode.InvalidRequest, Join(group, ["inv"], r => { r.InstanceId = ""; }));
        await Expect(ErrorCode.InvalidRequest, new ConsumerGroupHeartbeatRequest { GroupId = group, MemberId = "", MemberEpoch = 3 });
        await Expect(ErrorCode.InvalidRequest, new ConsumerGroupHeartbeatRequest { GroupId = group, MemberId = "m", MemberEpoch = -3 });
        await Expect(ErrorCode.InvalidRequest, new ConsumerGroupHeartbeatRequest { GroupId = group, MemberId = "m", MemberEpoch = -2 }); // static leave without an instance id
        await Expect(ErrorCode.InvalidRequest, Join(group, [], r => { r.SubscribedTopicRegex = "inv("; r.SubscribedTopicNames = null; }), version: 1);
        await Expect(ErrorCode.UnsupportedAssignor, Join(group, ["inv"], r => { r.ServerAssignor = "sticky"; }));
        // Nothing above created the group.
        await Expect(ErrorCode.GroupIdNotFound, new ConsumerGroupHeartbeatRequest { GroupId = group, MemberId = "m", MemberEpoch = 1 });
    }

    [Fact]
    public async Task EpochsAreCheckedUnknownMembersAndStaleEpochsAreFenced()
    {
        const string group = "g-epochs";
        await Clients.CreateTopicAsync(_broker.BootstrapServers, "ep", 2);
        await using var c = await ConnectAsync(group);
        var m = new RawMember(c, group, ["ep"]);
        var joined = await m.JoinAsync();
        Assert.Equal(22, joined.MemberId!.Length); // a broker-generated id (a Kafka UUID)
        Assert.True(m.Epoch > 0);
        Assert.Equal(500, joined.HeartbeatIntervalMs);
        Assert.Equal(2, m.Owned.Count);

        async Task<short> Beat(string memberId, int epoch, List<ConsumerGroupHeartbeatRequest.TopicPartitionsData>? owned = null) =>
            (await Heartbeat(c, new ConsumerGroupHeartbeatRequest { GroupId = group, MemberId = memberId, MemberEpoch = epoch, TopicPartitions = owned })).ErrorCode;

        Assert.Equal((short)ErrorCode.None, await Beat(m.MemberId, m.Epoch));
        Assert.Equal((short)ErrorCode.FencedMemberEpoch, await Beat(m.MemberId, m.Epoch + 5));
        Assert.Equal((short)ErrorCode.UnknownMemberId, await Beat("not-a-member", m.Epoch));

        // A client-chosen member id (KIP-1082, what librdkafka sends) is kept.
        var own = new RawMember(c, group, ["ep"], memberId: "client-chosen-id");
        var r = await own.JoinAsync();
        Assert.Equal("client-chosen-id", r.MemberId);

        // The first member revokes one partition and moves to the new epoch.
        int previous = m.Epoch;
        await m.BeatAsync(ack: false);
        await m.BeatAsync();
        Assert.True(m.Epoch > previous);
        Assert.Single(m.Owned);
        // Its previous epoch is accepted once more if it reports owning no more than it is assigned
        // (the response with the bump was lost), but not without saying what it owns.
        Assert.Equal((short)ErrorCode.FencedMemberEpoch, await Beat(m.MemberId, previous));
        var mine = new List<ConsumerGroupHeartbeatRequest.TopicPartitionsData> { new() { TopicId = joined.Assignment!.TopicPartitions[0].TopicId, Partitions = [.. m.Owned] } };
        Assert.Equal((short)ErrorCode.None, await Beat(m.MemberId, previous, mine));

        // After FENCED_MEMBER_EPOCH a member rejoins with epoch 0 and its id, and goes on.
        Assert.Equal((short)ErrorCode.FencedMemberEpoch, await Beat(own.MemberId, own.Epoch + 1));
        var rejoined = await own.JoinAsync();
        Assert.Equal((short)ErrorCode.None, rejoined.ErrorCode);
        Assert.Equal("client-chosen-id", rejoined.MemberId);

        // Leaving: epoch -1 answers -1; the member is gone.
        var left = await Heartbeat(c, new ConsumerGroupHeartbeatRequest { GroupId = group, MemberId = own.MemberId, MemberEpoch = -1 });
        Assert.Equal((short)ErrorCode.None, left.ErrorCode);
        Assert.Equal(-1, left.MemberEpoch);
        Assert.Equal((short)ErrorCode.UnknownMemberId, await Beat(own.MemberId, own.Epoch));
    }

    [Fact]
    public async Task APartitionIsGivenToItsNewOwnerOnlyAfterThePreviousOwnerRevokedIt()
    {
        const string group = "g-revoke", topic = "rv";
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, 4);
        await using var c = await ConnectAsync(group);
        var first = new RawMember(c, group, [topic]);
        await first.JoinAsync();
        Assert.Equal(4, first.Owned.Count);
        int firstEpoch = first.Epoch;

        var second = new RawMember(c, group, [topic]);
        var joined = await second.JoinAsync();
        Assert.Empty(second.Owned); // its target is still held by the first member
        Assert.True(second.Epoch > firstEpoch);

        // The first member is told to keep two: the other two are pending revocation, at its old epoch.
        var told = await first.BeatAsync(ack: false);
        Assert.Equal(2, told.Assignment!.TopicPartitions.Sum(t => t.Partitions.Count));
        Assert.Equal(firstEpoch, first.Epoch);
        var d = await DescribeAsync(c, group);
        Assert.Equal("Reconciling", d.GroupState);

        // Until it confirms, the second member gets nothing.
        await second.BeatAsync();
        Assert.Empty(second.Owned);
        // A heartbeat that still reports the revoked partitions does not complete the revocation.
        await first.BeatAsync(ack: false, reportAll: true);
        await second.BeatAsync();
        Assert.Empty(second.Owned);

        // Confirmed: the first member moves to the new epoch, the second gets the released partitions.
        await first.BeatAsync();
        Assert.Equal(second.Epoch, first.Epoch);
        await second.BeatAsync();
        Assert.Equal(2, second.Owned.Count);
        Assert.Empty(second.Owned.Intersect(first.Owned));
        await first.BeatAsync();
        d = await DescribeAsync(c, group);
        Assert.Equal("Stable", d.GroupState);
        Assert.Equal("uniform", d.AssignorName);
        Assert.All(d.Members, mem => Assert.Equal(d.AssignmentEpoch, mem.MemberEpoch));
    }

    [Fact]
    public async Task AMemberThatDoesNotRevokeWithinItsRebalanceTimeoutIsFenced()
    {
        const string group = "g-stuck", topic = "stuck";
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, 2);
        await using var c = await ConnectAsync(group);
        const int RebalanceTimeoutMs = 1500;
        var stuck = new RawMember(c, group, [topic], rebalanceTimeoutMs: RebalanceTimeoutMs);
        await stuck.JoinAsync();
        var other = new RawMember(c, group, [topic]);
        await other.JoinAsync();
        long told = Stopwatch.GetTimestamp();
        await stuck.BeatAsync(ack: false, reportAll: true); // told to revoke one partition (the rebalance timer starts); does not

        // It keeps heartbeating, still reporting both partitions: its session stays alive, so only the
        // rebalance timeout can fence it. The embedded broker's timers run on this process's monotonic clock,
        // and the timer was armed after `told`: an answer given before told + the rebalance timeout was made
        // before the deadline and must still find the member (50 ms for the coarse clock timers fire on).
        var sw = Stopwatch.StartNew();
        while (true)
        {
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(30), "the stuck member was never fenced");
            await Task.Delay(100);
            var beat = await stuck.BeatAsync(ack: false, reportAll: true, allowError: true);
            double answeredMs = Stopwatch.GetElapsedTime(told).TotalMilliseconds;
            if (beat.ErrorCode == (short)ErrorCode.UnknownMemberId)
            {
                Assert.True(answeredMs >= RebalanceTimeoutMs - 50, $"fenced in an answer {answeredMs:F0} ms after it was told to revoke, before its {RebalanceTimeoutMs} ms rebalance timeout");
                break;
            }
            Assert.Equal((short)ErrorCode.None, beat.ErrorCode);
        }
        sw.Restart();
        while (other.Owned.Count < 1)
        {
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(30), "the stuck member's partition never moved");
            await Task.Delay(250);
            await other.BeatAsync();
        }
        var late = await Heartbeat(c, new ConsumerGroupHeartbeatRequest { GroupId = group, MemberId = stuck.MemberId, MemberEpoch = stuck.Epoch });
        Assert.Equal((short)ErrorCode.UnknownMemberId, late.ErrorCode);
    }

    [Fact]
    public async Task StaticMembersCannotShareAnInstanceIdAndTakeTheirPlaceBackAfterATemporaryLeave()
    {
        const string group = "g-static", topic = "st";
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, 4);
        await using var c = await ConnectAsync(group);
        var a = new RawMember(c, group, [topic], instanceId: "instance-a");
        await a.JoinAsync();
        var b = new RawMember(c, group, [topic], instanceId: "instance-b");
        await b.JoinAsync();
        for (int i = 0; i < 4; i++)
        {
            await a.BeatAsync();
            await b.BeatAsync();
        }
        Assert.Equal(2, a.Owned.Count);
        Assert.Equal(2, b.Owned.Count);

        var impostor = await Heartbeat(c, Join(group, [topic], r => { r.InstanceId = "instance-a"; }));
        Assert.Equal((short)ErrorCode.UnreleasedInstanceId, impostor.ErrorCode);

        // -2: a leaves for now; its place and partitions are kept.
        var away = await Heartbeat(c, new ConsumerGroupHeartbeatRequest { GroupId = group, MemberId = a.MemberId, MemberEpoch = -2, InstanceId = "instance-a" });
        Assert.Equal((short)ErrorCode.None, away.ErrorCode);
        Assert.Equal(-2, away.MemberEpoch);
        int groupEpoch = (await DescribeAsync(c, group)).GroupEpoch;

        // It comes back under a new member id: same partitions, same epoch, no group epoch bump.
        var back = new RawMember(c, group, [topic], instanceId: "instance-a");
        var r = await back.JoinAsync();
        Assert.Equal((short)ErrorCode.None, r.ErrorCode);
        Assert.NotEqual(a.MemberId, back.MemberId);
        Assert.Equal(a.Owned.Order(), back.Owned.Order());
        Assert.Equal(a.Epoch, back.Epoch);
        var d = await DescribeAsync(c, group);
        Assert.Equal(groupEpoch, d.GroupEpoch);
        Assert.DoesNotContain(d.Members, m => m.MemberId == a.MemberId);
        Assert.Contains(d.Members, m => m.MemberId == back.MemberId && m.InstanceId == "instance-a");
    }

    [Fact]
    public async Task AddingPartitionsBumpsTheGroupEpochAndTheNewPartitionsAreAssigned()
    {
        const string group = "g-grow", topic = "grow";
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, 2);
        await using var c = await ConnectAsync(group);
        var m = new RawMember(c, group, [topic]);
        await m.JoinAsync();
        Assert.Equal(2, m.Owned.Count);
        int epoch = m.Epoch;
        using (var admin = Clients.Admin(_broker.BootstrapServers))
            await admin.CreatePartitionsAsync([new PartitionsSpecification { Topic = topic, IncreaseTo = 5 }]);
        await m.BeatAsync();
        Assert.Equal(5, m.Owned.Count);
        Assert.True(m.Epoch > epoch);
        var d = await DescribeAsync(c, group);
        Assert.Equal(m.Epoch, d.GroupEpoch);
        Assert.Equal(topic, d.Members.Single().Assignment.TopicPartitions.Single().TopicName);
    }

    [Fact]
    public async Task ARegexSubscriptionFollowsTheTopicsItMatches()
    {
        const string group = "g-regex";
        await Clients.CreateTopicAsync(_broker.BootstrapServers, "rx-one", 2);
        await Clients.CreateTopicAsync(_broker.BootstrapServers, "other", 2);
        await using var c = await ConnectAsync(group);
        var m = new RawMember(c, group, [], regex: "rx-.*");
        await m.JoinAsync();
        Assert.Equal(2, m.Owned.Count);
        await Clients.CreateTopicAsync(_broker.BootstrapServers, "rx-two", 3);
        await m.BeatAsync();
        Assert.Equal(5, m.Owned.Count);
        var d = await DescribeAsync(c, group);
        Assert.Equal("rx-.*", d.Members.Single().SubscribedTopicRegex);
        Assert.Equal(new[] { "rx-one", "rx-two" }, d.Members.Single().Assignment.TopicPartitions.Select(t => t.TopicName).Order());
    }

    [Fact]
    public async Task ALibrdkafkaPatternSubscriptionIsResolvedByTheBroker()
    {
        // librdkafka sends "^..." subscriptions as SubscribedTopicRegex (v1) and lets the coordinator match topics.
        await Clients.CreateTopicAsync(_broker.BootstrapServers, "pat-a", 2);
        await Clients.CreateTopicAsync(_broker.BootstrapServers, "pat-b", 2);
        await Clients.CreateTopicAsync(_broker.BootstrapServers, "unrelated", 2);
        await using var m = Member.Start(_broker.BootstrapServers, "g-pattern", "^pat-.*", "p");
        await Until(() => m.Assignment.Length == 4, TimeSpan.FromSeconds(20), "the pattern's four partitions are assigned");
        Assert.Equal(new[] { "pat-a", "pat-b" }, m.Assignment.Select(tp => tp.Topic).Distinct().Order());
    }

    [Fact]
    public async Task OffsetCommitsAndFetchesAreCheckedAgainstTheMemberEpoch()
    {
        const string group = "g-offsets", topic = "off";
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, 1);
        await using var c = await ConnectAsync(group);
        var m = new RawMember(c, group, [topic]);
        await m.JoinAsync();

        async Task<short> Commit(string memberId, int epoch, short version = 9)
        {
            var r = await c.RequestAsync<OffsetCommitResponse>(new OffsetCommitRequest
            {
                GroupId = group, MemberId = memberId, GenerationIdOrMemberEpoch = epoch,
                Topics = [new() { Name = topic, Partitions = [new() { PartitionIndex = 0, CommittedOffset = 7 }] }],
            }, version);
            return r.Topics[0].Partitions[0].ErrorCode;
        }
        async Task<short> Fetch(string? memberId, int epoch)
        {
            var r = await c.RequestAsync<OffsetFetchResponse>(new OffsetFetchRequest
            {
                Groups = [new() { GroupId = group, MemberId = memberId, MemberEpoch = epoch, Topics = [new() { Name = topic, PartitionIndexes = [0] }] }],
            }, 9);
            return r.Groups[0].ErrorCode;
        }

        Assert.Equal((short)ErrorCode.StaleMemberEpoch, await Commit(m.MemberId, m.Epoch - 1));
        Assert.Equal((short)ErrorCode.StaleMemberEpoch, await Commit(m.MemberId, m.Epoch + 1));
        // A member of the consumer protocol must commit with v9+ (Kafka's ConsumerGroup.validateOffsetCommit).
        Assert.Equal((short)ErrorCode.UnsupportedVersion, await Commit(m.MemberId, m.Epoch, 8));
        Assert.Equal((short)ErrorCode.UnknownMemberId, await Commit("stranger", m.Epoch));
        Assert.Equal((short)ErrorCode.UnknownMemberId, await Commit("", -1)); // the group has members
        Assert.Equal((short)ErrorCode.None, await Commit(m.MemberId, m.Epoch));
        Assert.Equal((short)ErrorCode.StaleMemberEpoch, await Fetch(m.MemberId, m.Epoch + 1));
        Assert.Equal((short)ErrorCode.UnknownMemberId, await Fetch("stranger", m.Epoch));
        Assert.Equal((short)ErrorCode.None, await Fetch(m.MemberId, m.Epoch));
        Assert.Equal((short)ErrorCode.None, await Fetch(null, -1)); // admin

        // Offsets of a topic the group subscribes to cannot be deleted; the group cannot be deleted while it has members.
        using var admin = Clients.Admin(_broker.BootstrapServers);
        var del = await Assert.ThrowsAsync<DeleteConsumerGroupOffsetsException>(() =>
            admin.DeleteConsumerGroupOffsetsAsync(group, [new TopicPartition(topic, 0)]));
        Assert.Equal(Confluent.Kafka.ErrorCode.GroupSubscribedToTopic, del.Result.Partitions[0].Error.Code);
        var nonEmpty = await Assert.ThrowsAsync<DeleteGroupsException>(() => admin.DeleteGroupsAsync([group]));
        Assert.Equal(Confluent.Kafka.ErrorCode.NonEmptyGroup, nonEmpty.Results[0].Error.Code);

        // Once the member left, an admin commit is accepted, and the group and its offsets can be deleted.
        await Heartbeat(c, new ConsumerGroupHeartbeatRequest { GroupId = group, MemberId = m.MemberId, MemberEpoch = -1 });
        Assert.Equal("Empty", (await DescribeAsync(c, group)).GroupState);
        Assert.Equal((short)ErrorCode.None, await Commit("", -1));
        await admin.DeleteGroupsAsync([group]);
        var gone = await DescribeAsync(c, group);
        Assert.Equal((short)ErrorCode.GroupIdNotFound, gone.ErrorCode);
        var listed = await c.RequestAsync<ListGroupsResponse>(new ListGroupsRequest(), 5);
        Assert.DoesNotContain(listed.Groups, g => g.GroupId == group);
    }

    [Fact]
    public async Task ConsumerGroupsAreListedAndDescribedOnlyByTheirOwnApis()
    {
        const string group = "g-listed", topic = "lst";
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, 3);
        await using var c = await ConnectAsync(group);
        var m = new RawMember(c, group, [topic], assignor: "range");
        await m.JoinAsync();

        var listed = await c.RequestAsync<ListGroupsResponse>(new ListGroupsRequest { TypesFilter = ["consumer"] }, 5);
        var g = Assert.Single(listed.Groups, x => x.GroupId == group);
        Assert.Equal("consumer", g.GroupType);
        Assert.Equal("Stable", g.GroupState);
        Assert.Equal("consumer", g.ProtocolType);
        var classicOnly = await c.RequestAsync<ListGroupsResponse>(new ListGroupsRequest { TypesFilter = ["classic"] }, 5);
        Assert.DoesNotContain(classicOnly.Groups, x => x.GroupId == group);

        var old = await c.RequestAsync<DescribeGroupsResponse>(new DescribeGroupsRequest { Groups = [group] }, 5);
        Assert.Equal((short)ErrorCode.GroupIdNotFound, old.Groups[0].ErrorCode);

        var described = await c.RequestAsync<ConsumerGroupDescribeResponse>(new ConsumerGroupDescribeRequest { GroupIds = [group, "no-such-group"], IncludeAuthorizedOperations = true }, 0);
        var d = described.Groups[0];
        Assert.Equal((short)ErrorCode.None, d.ErrorCode);
        Assert.Equal("Stable", d.GroupState);
        Assert.Equal("range", d.AssignorName);
        Assert.Equal(d.GroupEpoch, d.AssignmentEpoch);
        Assert.NotEqual(int.MinValue, d.AuthorizedOperations);
        var member = Assert.Single(d.Members);
        Assert.Equal(m.MemberId, member.MemberId);
        Assert.Equal(m.Epoch, member.MemberEpoch);
        Assert.Equal("raw-test", member.ClientId);
        Assert.StartsWith("/127.0.0.1", member.ClientHost);
        Assert.Equal(new[] { topic }, member.SubscribedTopicNames);
        Assert.Equal(new[] { 0, 1, 2 }, member.Assignment.TopicPartitions.Single().Partitions.Order());
        Assert.Equal(new[] { 0, 1, 2 }, member.TargetAssignment.TopicPartitions.Single().Partitions.Order());
        Assert.Equal((short)ErrorCode.GroupIdNotFound, described.Groups[1].ErrorCode);
    }

    [Fact]
    public async Task AClassicGroupWithMembersCannotBeJoinedWithTheConsumerProtocolAndViceVersa()
    {
        const string topic = "mixed";
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, 2);
        // A live classic member.
        var config = Clients.ConsumerConfig(_broker.BootstrapServers);
        config.GroupId = "g-classic";
        config.SessionTimeoutMs = 10000;
        using var classic = new ConsumerBuilder<Ignore, string>(config).Build();
        classic.Subscribe(topic);
        var sw = Stopwatch.StartNew();
        while (classic.Assignment.Count == 0)
        {
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), "the classic member never got an assignment");
            classic.Consume(100);
        }
        await using var c = await ConnectAsync("g-classic");
        var refused = await Heartbeat(c, Join("g-classic", [topic]));
        Assert.Equal((short)ErrorCode.GroupIdNotFound, refused.ErrorCode);
        output.WriteLine(refused.ErrorMessage);
        classic.Close();

        // The classic group is now empty: a consumer-protocol member takes the group over.
        var taken = await Heartbeat(c, Join("g-classic", [topic]));
        Assert.Equal((short)ErrorCode.None, taken.ErrorCode);
        Assert.Equal("Stable", (await DescribeAsync(c, "g-classic")).GroupState);

        // And a classic JoinGroup on a consumer group is refused.
        var join = await c.RequestAsync<JoinGroupResponse>(new JoinGroupRequest
        {
            GroupId = "g-classic", SessionTimeoutMs = 10000, RebalanceTimeoutMs = 10000, MemberId = "", ProtocolType = "consumer",
            Protocols = [new() { Name = "range", Metadata = new byte[] { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 } }],
        }, 5);
        Assert.Equal((short)ErrorCode.InconsistentGroupProtocol, join.ErrorCode);

        // Once empty, it becomes a classic group again for a classic member (Kafka converts empty groups either way).
        await Heartbeat(c, new ConsumerGroupHeartbeatRequest { GroupId = "g-classic", MemberId = taken.MemberId!, MemberEpoch = -1 });
        var again = await c.RequestAsync<JoinGroupResponse>(new JoinGroupRequest
        {
            GroupId = "g-classic", SessionTimeoutMs = 10000, RebalanceTimeoutMs = 10000, MemberId = "", ProtocolType = "consumer",
            Protocols = [new() { Name = "range", Metadata = new byte[] { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 } }],
        }, 5);
        Assert.Equal((short)ErrorCode.MemberIdRequired, again.ErrorCode);
        Assert.Equal((short)ErrorCode.GroupIdNotFound, (await DescribeAsync(c, "g-classic")).ErrorCode);
    }

    [Fact]
    public async Task HeartbeatVersionOneIsAdvertisedByDefault()
    {
        // librdkafka 2.15+ sends ConsumerGroupHeartbeat v1 only: a default broker must offer it.
        await using var defaults = await FreshetServer.StartEmbeddedAsync(null, _loggers);
        await using var c = await RawKafkaClient.ConnectAsync(defaults.BootstrapServers);
        var v = await c.RequestAsync<ApiVersionsResponse>(new ApiVersionsRequest(), 3);
        Assert.Equal(1, v.ApiKeys.Single(k => k.ApiKey == (short)ApiKey.ConsumerGroupHeartbeat).MaxVersion);
        Assert.Equal(0, v.ApiKeys.Single(k => k.ApiKey == (short)ApiKey.ConsumerGroupDescribe).MaxVersion);
    }

    // ================================================================ helpers

    /// <summary>A well-formed join, then changed by <paramref name="change"/>.</summary>
    private static ConsumerGroupHeartbeatRequest Join(string group, string[] topics, Action<ConsumerGroupHeartbeatRequest>? change = null)
    {
        var r = new ConsumerGroupHeartbeatRequest
        {
            GroupId = group,
            MemberId = "",
            MemberEpoch = 0,
            RebalanceTimeoutMs = 30_000,
            SubscribedTopicNames = [.. topics],
            TopicPartitions = [],
        };
        change?.Invoke(r);
        return r;
    }

    /// <summary>A raw connection to the group's coordinator (the only broker), after FindCoordinator created __consumer_offsets.</summary>
    private async Task<RawKafkaClient> ConnectAsync(string group)
    {
        var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var sw = Stopwatch.StartNew();
        while (true)
        {
            var r = await c.RequestAsync<FindCoordinatorResponse>(new FindCoordinatorRequest { Key = group }, 3);
            if (r.ErrorCode == 0) return c;
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20), $"FindCoordinator: {(ErrorCode)r.ErrorCode}");
            await Task.Delay(100);
        }
    }

    /// <summary>A heartbeat, retried while the coordinator is still loading.</summary>
    private static async Task<ConsumerGroupHeartbeatResponse> Heartbeat(RawKafkaClient c, ConsumerGroupHeartbeatRequest r, short version = 0)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            var resp = await c.RequestAsync<ConsumerGroupHeartbeatResponse>(r, version);
            if (resp.ErrorCode is not ((short)ErrorCode.CoordinatorLoadInProgress or (short)ErrorCode.NotCoordinator or (short)ErrorCode.CoordinatorNotAvailable)
                || sw.Elapsed > TimeSpan.FromSeconds(15))
                return resp;
            await Task.Delay(100);
        }
    }

    private static async Task<ConsumerGroupDescribeResponse.DescribedGroup> DescribeAsync(RawKafkaClient c, string group) =>
        (await c.RequestAsync<ConsumerGroupDescribeResponse>(new ConsumerGroupDescribeRequest { GroupIds = [group] }, 0)).Groups[0];

    private static async Task Until(Func<bool> condition, TimeSpan timeout, string what)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed > timeout) throw new TimeoutException($"not within {timeout}: {what}");
            await Task.Delay(50);
        }
    }

    /// <summary>Waits until the members' own assignments are disjoint, cover the topic and have the given sizes, and the broker says Stable.</summary>
    private async Task WaitSplitAsync(GroupWatch watch, Member[] members, int[] sizes)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            var snapshot = members.Select(m => m.Assignment.Select(tp => tp.Partition.Value).ToList()).ToList();
            var all = snapshot.SelectMany(s => s).ToList();
            bool split = all.Count == Partitions && all.Distinct().Count() == Partitions
                         && snapshot.Select(s => s.Count).Order().SequenceEqual(sizes.Order());
            if (split && (await watch.DescribeAsync()).GroupState == "Stable")
            {
                output.WriteLine($"split {string.Join(" | ", members.Select(m => $"{m.Name}: {string.Join(",", m.Assignment.Select(tp => tp.Partition.Value).Order())}"))} after {sw.ElapsedMilliseconds} ms");
                Assert.Empty(watch.Violations);
                return;
            }
            if (sw.Elapsed > TimeSpan.FromSeconds(30))
                throw new TimeoutException($"no split {string.Join("/", sizes)}: {string.Join(" | ", snapshot.Select(s => string.Join(",", s)))}");
            await Task.Delay(100);
        }
    }

    /// <summary>
    /// Polls ConsumerGroupDescribe in the background and records any moment at which two members
    /// were assigned the same partition (which must never happen).
    /// </summary>
    private sealed class GroupWatch : IAsyncDisposable
    {
        private readonly RawKafkaClient _client;
        private readonly SemaphoreSlim _gate = new(1, 1);
        private readonly CancellationTokenSource _stop = new();
        private readonly string _group;
        private Task _loop = Task.CompletedTask;

        private GroupWatch(RawKafkaClient client, string group)
        {
            _client = client;
            _group = group;
        }

        public List<string> Violations { get; } = [];
        public int Describes { get; private set; }

        public static async Task<GroupWatch> StartAsync(string bootstrap, string group)
        {
            var w = new GroupWatch(await RawKafkaClient.ConnectAsync(bootstrap), group);
            w._loop = Task.Run(async () =>
            {
                while (!w._stop.IsCancellationRequested)
                {
                    try
                    {
                        await w.DescribeAsync();
                        await Task.Delay(50, w._stop.Token);
                    }
                    catch (OperationCanceledException) { }
                    catch (Exception e) when (e is IOException or InvalidOperationException)
                    {
                        await Task.Delay(200); // the broker went away: the test notices on its own
                    }
                }
            });
            return w;
        }

        public async Task<ConsumerGroupDescribeResponse.DescribedGroup> DescribeAsync()
        {
            await _gate.WaitAsync();
            try
            {
                var d = (await _client.RequestAsync<ConsumerGroupDescribeResponse>(new ConsumerGroupDescribeRequest { GroupIds = [_group] }, 0)).Groups[0];
                Describes++;
                var owned = d.Members.SelectMany(m => m.Assignment.TopicPartitions.SelectMany(t => t.Partitions.Select(p => (t.TopicId, p)))).ToList();
                if (owned.Count != owned.Distinct().Count()) Violations.Add($"epoch {d.GroupEpoch}: a partition is assigned to two members");
                return d;
            }
            finally
            {
                _gate.Release();
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await _loop;
            await _client.DisposeAsync();
            _stop.Dispose();
            _gate.Dispose();
        }
    }

    /// <summary>A raw-protocol member: joins, heartbeats, and acknowledges what it is given by reporting it as owned.</summary>
    private sealed class RawMember(RawKafkaClient c, string group, string[] topics, string memberId = "", string? instanceId = null,
        string? assignor = null, string? regex = null, int rebalanceTimeoutMs = 30_000)
    {
        private List<ConsumerGroupHeartbeatResponse.TopicPartitions> _assignment = [];
        private List<ConsumerGroupHeartbeatResponse.TopicPartitions> _reported = [];

        public string MemberId { get; private set; } = memberId;
        public int Epoch { get; private set; }
        public List<int> Owned => [.. _assignment.SelectMany(t => t.Partitions)];

        public async Task<ConsumerGroupHeartbeatResponse> JoinAsync()
        {
            var r = await Heartbeat(c, new ConsumerGroupHeartbeatRequest
            {
                GroupId = group, MemberId = MemberId, MemberEpoch = 0, InstanceId = instanceId, RebalanceTimeoutMs = rebalanceTimeoutMs,
                SubscribedTopicNames = regex is null ? [.. topics] : null, SubscribedTopicRegex = regex, ServerAssignor = assignor, TopicPartitions = [],
            }, regex is null ? (short)0 : (short)1);
            Assert.Equal((short)ErrorCode.None, r.ErrorCode);
            Apply(r);
            _reported = _assignment;
            return r;
        }

        /// <summary>
        /// A heartbeat at the current epoch. With <paramref name="ack"/> it reports owning what it was last given
        /// (a member that applied its assignment); without, it reports nothing (null), or with
        /// <paramref name="reportAll"/> everything it was ever given (a member that did not revoke). An error
        /// fails the test unless <paramref name="allowError"/> (then it is returned, and nothing is applied).
        /// </summary>
        public async Task<ConsumerGroupHeartbeatResponse> BeatAsync(bool ack = true, bool reportAll = false, bool allowError = false)
        {
            List<ConsumerGroupHeartbeatRequest.TopicPartitionsData>? owned = null;
            if (ack) owned = [.. _assignment.Select(t => new ConsumerGroupHeartbeatRequest.TopicPartitionsData { TopicId = t.TopicId, Partitions = [.. t.Partitions] })];
            else if (reportAll) owned = [.. _reported.Select(t => new ConsumerGroupHeartbeatRequest.TopicPartitionsData { TopicId = t.TopicId, Partitions = [.. t.Partitions] })];
            var r = await Heartbeat(c, new ConsumerGroupHeartbeatRequest { GroupId = group, MemberId = MemberId, MemberEpoch = Epoch, TopicPartitions = owned }, regex is null ? (short)0 : (short)1);
            if (allowError && r.ErrorCode != (short)ErrorCode.None) return r;
            Assert.Equal((short)ErrorCode.None, r.ErrorCode);
            Apply(r);
            if (ack) _reported = _assignment;
            return r;
        }

        private void Apply(ConsumerGroupHeartbeatResponse r)
        {
            MemberId = r.MemberId ?? MemberId;
            Epoch = r.MemberEpoch;
            if (r.Assignment is not null) _assignment = r.Assignment.TopicPartitions;
        }
    }

    /// <summary>What the members of the commit test delivered and committed, in one order.</summary>
    private sealed class Journal
    {
        private readonly Lock _lock = new();
        private readonly List<(long Seq, bool Commit, string Member, int Partition, long Offset)> _events = [];
        private long _seq;
        private int _failedCommits;

        public int Delivered
        {
            get { lock (_lock) return _events.Count(e => !e.Commit); }
        }

        public int FailedCommits => Volatile.Read(ref _failedCommits);

        public void Delivery(string member, int partition, long offset)
        {
            lock (_lock) _events.Add((++_seq, false, member, partition, offset));
        }

        public void Committed(string member, int partition, long next)
        {
            lock (_lock) _events.Add((++_seq, true, member, partition, next));
        }

        public void CommitFailed() => Interlocked.Increment(ref _failedCommits);

        public bool CommittedEverything(int partitions, int perPartition)
        {
            lock (_lock)
                return Enumerable.Range(0, partitions).All(p => _events.Any(e => e.Commit && e.Partition == p && e.Offset == perPartition));
        }

        public Dictionary<string, int> ByMember()
        {
            lock (_lock) return _events.Where(e => !e.Commit).GroupBy(e => e.Member).ToDictionary(g => g.Key, g => g.Count());
        }

        /// <summary>Deliveries of offsets already committed when they were delivered; offsets never delivered; deliveries of uncommitted messages again.</summary>
        public (List<string> Redelivered, List<string> Skipped, int Duplicates) Check(int partitions, int perPartition)
        {
            lock (_lock)
            {
                var redelivered = new List<string>();
                var committed = new long[partitions];
                var seen = new HashSet<(int, long)>();
                int duplicates = 0;
                foreach (var e in _events.OrderBy(e => e.Seq))
                {
                    if (e.Commit)
                    {
                        committed[e.Partition] = Math.Max(committed[e.Partition], e.Offset);
                        continue;
                    }
                    if (e.Offset < committed[e.Partition]) redelivered.Add($"{e.Member} got {e.Partition}@{e.Offset} after {committed[e.Partition]} was committed");
                    if (!seen.Add((e.Partition, e.Offset))) duplicates++;
                }
                var skipped = new List<string>();
                for (int p = 0; p < partitions; p++)
                    for (long o = 0; o < perPartition; o++)
                        if (!seen.Contains((p, o))) skipped.Add($"{p}@{o}");
                return (redelivered, skipped, duplicates);
            }
        }
    }

    /// <summary>
    /// A librdkafka consumer with group.protocol=consumer, polled on its own thread; it records
    /// its assignment after every poll and, with a journal, commits every message it delivers.
    /// </summary>
    private sealed class Member : IAsyncDisposable
    {
        private readonly IConsumer<string, string> _consumer;
        private readonly CancellationTokenSource _stop = new();
        private readonly Journal? _journal;
        private Task _loop = Task.CompletedTask;
        private volatile TopicPartition[] _assignment = [];
        private int _rebalances;
        private bool _stopped;

        private Member(string name, IConsumer<string, string> consumer, Journal? journal)
        {
            Name = name;
            _consumer = consumer;
            _journal = journal;
        }

        public string Name { get; }
        public TopicPartition[] Assignment => _assignment;

        /// <summary>Revocations and losses the member was told of.</summary>
        public int Rebalances => Volatile.Read(ref _rebalances);

        public static Member Start(string bootstrap, string group, string topic, string name, Journal? journal = null, string? assignor = null)
        {
            Assert.True(Library.Version >= 0x020400ff, $"librdkafka {Library.VersionString} predates the consumer protocol");
            var config = Clients.ConsumerConfig(bootstrap);
            config.GroupId = group;
            config.GroupProtocol = GroupProtocol.Consumer;
            config.GroupRemoteAssignor = assignor;
            config.EnablePartitionEof = false;
            config.ClientId = name;
            Member? self = null;
            var consumer = new ConsumerBuilder<string, string>(config)
                .SetPartitionsRevokedHandler((_, _) => Interlocked.Increment(ref self!._rebalances))
                .SetPartitionsLostHandler((_, _) => Interlocked.Increment(ref self!._rebalances))
                .SetErrorHandler((_, _) => { })
                .SetLogHandler((_, _) => { })
                .Build();
            self = new Member(name, consumer, journal);
            consumer.Subscribe(topic);
            self._loop = Task.Factory.StartNew(self.Run, TaskCreationOptions.LongRunning);
            return self;
        }

        private void Run()
        {
            while (!_stop.IsCancellationRequested)
            {
                ConsumeResult<string, string>? cr;
                try
                {
                    cr = _consumer.Consume(50);
                }
                catch (ConsumeException)
                {
                    continue;
                }
                _assignment = [.. _consumer.Assignment];
                if (cr is null || _journal is null) continue;
                _journal.Delivery(Name, cr.Partition.Value, cr.Offset.Value);
                Thread.Sleep(4); // some work per message, so members join and leave while there is data left
                try
                {
                    _consumer.Commit(cr);
                    _journal.Committed(Name, cr.Partition.Value, cr.Offset.Value + 1);
                }
                catch (KafkaException)
                {
                    _journal.CommitFailed(); // STALE_MEMBER_EPOCH around an epoch bump: not committed, may be read again
                }
            }
        }

        /// <summary>A synchronous commit (librdkafka's commit may be called from any thread).</summary>
        public void CommitOffset(TopicPartitionOffset offset) => _consumer.Commit([offset]);

        /// <summary>Stops polling and leaves the group (Close: revocation, then a leave heartbeat).</summary>
        public async Task StopAsync()
        {
            if (_stopped) return;
            _stopped = true;
            await _stop.CancelAsync();
            await _loop;
            _consumer.Close();
            _assignment = [];
        }

        public async ValueTask DisposeAsync()
        {
            await StopAsync();
            _consumer.Dispose();
            _stop.Dispose();
        }
    }
}
