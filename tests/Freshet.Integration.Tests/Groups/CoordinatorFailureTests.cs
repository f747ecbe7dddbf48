using System.Globalization;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Freshet.Server;
using Xunit.Abstractions;
using ErrorCode = Freshet.Protocol.ErrorCode;

namespace Freshet.Integration.Tests.Groups;

/// <summary>
/// The group coordinator when its writes or its loads fail: a request whose records cannot be written
/// gets an error and leaves the group as the log has it (memory never runs ahead of the log); a
/// __consumer_offsets partition whose load fails is loaded again, its groups answering
/// COORDINATOR_LOAD_IN_PROGRESS meanwhile, not NOT_COORDINATOR for ever. The full disk is a small
/// tmpfs, which needs root (CI and the test script have it).
/// </summary>
public sealed class CoordinatorFailureTests(ITestOutputHelper output)
{
    private const string Topic = "t";

    private static OffsetCommitRequest Commit(string group, long offset) => new()
    {
        GroupId = group, GenerationIdOrMemberEpoch = -1, MemberId = "",
        Topics = [new() { Name = Topic, Partitions = [new() { PartitionIndex = 0, CommittedOffset = offset }] }],
    };

    private static async Task<ErrorCode> CommitAsync(RawKafkaClient c, string group, long offset) =>
        (ErrorCode)(await c.RequestAsync<OffsetCommitResponse>(Commit(group, offset), 8)).Topics[0].Partitions[0].ErrorCode;

    /// <summary>The group's committed offset of t-0 (-1: none), or the group-level error.</summary>
    private static async Task<(ErrorCode Error, long Offset)> FetchAsync(RawKafkaClient c, string group)
    {
        var r = await c.RequestAsync<OffsetFetchResponse>(new OffsetFetchRequest
        {
            Groups = [new() { GroupId = group, Topics = [new() { Name = Topic, PartitionIndexes = [0] }] }],
        }, 8);
        var g = r.Groups[0];
        return ((ErrorCode)g.ErrorCode, g.ErrorCode == 0 ? g.Topics[0].Partitions[0].CommittedOffset : -1);
    }

    private static async Task<int> FindCoordinatorAsync(RawKafkaClient c, string group)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            var r = await c.RequestAsync<FindCoordinatorResponse>(new FindCoordinatorRequest { Key = group }, 3);
            if (r.ErrorCode == 0) return r.NodeId;
            Assert.True(DateTime.UtcNow < deadline, $"FindCoordinator: {(ErrorCode)r.ErrorCode}");
            await Task.Delay(100);
        }
    }

    private static ConsumerGroupHeartbeatRequest Join(string group) => new()
    {
        GroupId = group, MemberId = "", MemberEpoch = 0, RebalanceTimeoutMs = 30_000, SubscribedTopicNames = [Topic], TopicPartitions = [],
    };

    [Fact]
    public async Task WritesThatFailOnAFullDiskFailTheirRequestsAndLeaveTheGroupsAsWritten()
    {
        string root = Path.Combine(Path.GetTempPath(), "freshet-coord-full-" + Guid.NewGuid().ToString("N")[..8]);
        string logs = Path.Combine(root, "logs");
        Directory.CreateDirectory(logs);
        DiskFullTests.Run("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", logs);
        try
        {
            await using var broker = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string>
            {
                ["log.dirs"] = logs,
                ["metadata.log.dir"] = Path.Combine(root, "meta"),
                ["offsets.topic.num.partitions"] = "1",
            });
            await Clients.CreateTopicAsync(broker.BootstrapServers, Topic, 1);
            await using var c = await RawKafkaClient.ConnectAsync(broker.BootstrapServers);
            await FindCoordinatorAsync(c, "g");
            Assert.Equal(ErrorCode.None, await CommitAsync(c, "g", 1));
            // Groups to delete later, each with an offset.
            for (int i = 0; i < 30; i++) Assert.Equal(ErrorCode.None, await CommitAsync(c, $"d{i}", 100 + i));
            // A KIP-848 group with one member.
            var a = await c.RequestAsync<ConsumerGroupHeartbeatResponse>(Join("cg"), 0);
            Assert.Equal((short)ErrorCode.None, a.ErrorCode);
            var before = (await c.RequestAsync<ConsumerGroupDescribeResponse>(new ConsumerGroupDescribeRequest { GroupIds = ["cg"] }, 0)).Groups[0];
            Assert.Single(before.Members);

            Cluster.MetadataLogFailureTests.Fill(logs);

            // Commits until one needs a block the disk does not have (a few fit in blocks the log holds already).
            long lastGood = 1;
            var failed = ErrorCode.None;
            for (long offset = 2; offset < 500 && failed == ErrorCode.None; offset++)
            {
                failed = await CommitAsync(c, "g", offset);
                if (failed == ErrorCode.None) lastGood = offset;
            }
            output.WriteLine($"commits after the fill: the last that was written {lastGood}, then {failed}");
            Assert.Equal(ErrorCode.NotCoordinator, failed); // KAFKA_STORAGE_ERROR, as Kafka's coordinator maps it
            Assert.Equal((ErrorCode.None, lastGood), await FetchAsync(c, "g"));

            // A deletion that cannot be written leaves the group and its offsets (the smaller tombstones may still fit a few times).
            string? kept = null;
            for (int i = 0; i < 30 && kept is null; i++)
            {
                var del = await c.RequestAsync<DeleteGroupsResponse>(new DeleteGroupsRequest { GroupsNames = [$"d{i}"] }, 2);
                var e = (ErrorCode)del.Results[0].ErrorCode;
                if (e == ErrorCode.None) Assert.Equal((ErrorCode.None, -1L), await FetchAsync(c, $"d{i}"));
                else kept = $"d{i}";
            }
            Assert.NotNull(kept);
            output.WriteLine($"deleting {kept} failed");
            Assert.Equal((ErrorCode.None, 100L + int.Parse(kept[1..], CultureInfo.InvariantCulture)), await FetchAsync(c, kept));

            // A member that cannot be written does not join: the group stays as its records say.
            var b = await c.RequestAsync<ConsumerGroupHeartbeatResponse>(Join("cg"), 0);
            Assert.NotEqual((short)ErrorCode.None, b.ErrorCode);
            var after = (await c.RequestAsync<ConsumerGroupDescribeResponse>(new ConsumerGroupDescribeRequest { GroupIds = ["cg"] }, 0)).Groups[0];
            Assert.Equal((short)ErrorCode.None, after.ErrorCode);
            Assert.Equal([a.MemberId], after.Members.Select(m => m.MemberId));
            Assert.Equal(before.GroupEpoch, after.GroupEpoch);

            // Space again: writes go through.
            File.Delete(Path.Combine(logs, "ballast"));
            Assert.Equal(ErrorCode.None, await CommitAsync(c, "g", 1000));
            Assert.Equal((ErrorCode.None, 1000L), await FetchAsync(c, "g"));
            var joined = await c.RequestAsync<ConsumerGroupHeartbeatResponse>(Join("cg"), 0);
            Assert.Equal((short)ErrorCode.None, joined.ErrorCode);
        }
        finally
        {
            DiskFullTests.Run("umount", "-l", logs);
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public async Task AnOffsetsPartitionWhoseLoadFailsIsLoadedAgain()
    {
        var ports = Enumerable.Range(1, 3).ToDictionary(n => n, _ => BrokerProcess.FreePort());
        string voters = string.Join(",", ports.Select(p => $"{p.Key}@127.0.0.1:{p.Value}"));
        string clusterId = MetaProperties.NewClusterId();
        var servers = await Task.WhenAll(ports.Keys.Select(n => FreshetServer.StartEmbeddedAsync(new Dictionary<string, string>
        {
            ["node.id"] = n.ToString(CultureInfo.InvariantCulture),
            ["cluster.id"] = clusterId,
            ["listeners"] = $"PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:{ports[n]}",
            ["controller.listener.names"] = "CONTROLLER",
            ["controller.quorum.voters"] = voters,
            ["offsets.topic.num.partitions"] = "1",
            ["auto.leader.rebalance.enable"] = "false",
        })));
        var byId = servers.ToDictionary(s => s.Config.NodeId);
        try
        {
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (servers.Count(s => s.Controller.Image.ActiveBrokers.Count() == 3) < 3 && DateTime.UtcNow < deadline) await Task.Delay(100);
            using (var admin = Clients.Admin(servers[0].BootstrapServers))
                await admin.CreateTopicsAsync([new Confluent.Kafka.Admin.TopicSpecification { Name = Topic, NumPartitions = 1, ReplicationFactor = 3 }]);

            int coordinator;
            await using (var c = await RawKafkaClient.ConnectAsync(servers[0].BootstrapServers))
                coordinator = await FindCoordinatorAsync(c, "g");
            await using (var c = await RawKafkaClient.ConnectAsync(byId[coordinator].BootstrapServers))
            {
                // The coordinator may still be taking the partition up (its metadata is a moment ahead of its group coordinator).
                ErrorCode e;
                while ((e = await CommitAsync(c, "g", 42)) is ErrorCode.NotCoordinator or ErrorCode.CoordinatorLoadInProgress && DateTime.UtcNow < deadline)
                    await Task.Delay(100);
                Assert.Equal(ErrorCode.None, e);
            }
            // Every replica has the commit before its leader goes.
            while (byId[coordinator].Controller.Image.Partition("__consumer_offsets", 0)!.Isr.Length < 3 && DateTime.UtcNow < deadline) await Task.Delay(100);

            // Whichever broker leads the partition next fails its first two loads of it.
            var attempts = new System.Collections.Concurrent.ConcurrentDictionary<int, int>();
            foreach (var s in servers.Where(s => s.Config.NodeId != coordinator))
            {
                int id = s.Config.NodeId;
                s.Groups.LoadFault = (partition, attempt) =>
                {
                    attempts[id] = attempt;
                    return attempt <= 2 ? new IOException("injected read error") : null;
                };
            }
            await byId[coordinator].DisposeAsync();
            var rest = servers.Where(s => s.Config.NodeId != coordinator).ToList();

            int next;
            await using (var c = await RawKafkaClient.ConnectAsync(rest[0].BootstrapServers))
            {
                deadline = DateTime.UtcNow.AddSeconds(60);
                while ((next = await FindCoordinatorAsync(c, "g")) == coordinator)
                {
                    Assert.True(DateTime.UtcNow < deadline, "the coordinator did not move");
                    await Task.Delay(100);
                }
            }
            await using (var c = await RawKafkaClient.ConnectAsync(byId[next].BootstrapServers))
            {
                var seen = new List<ErrorCode>();
                (ErrorCode Error, long Offset) fetched;
                deadline = DateTime.UtcNow.AddSeconds(60);
                while ((fetched = await FetchAsync(c, "g")).Error != ErrorCode.None)
                {
                    if (seen.Count == 0 || seen[^1] != fetched.Error) seen.Add(fetched.Error);
                    Assert.True(DateTime.UtcNow < deadline, $"the group never came back on node {next}: {string.Join(", ", seen)}");
                    await Task.Delay(100);
                }
                output.WriteLine($"node {next} answered {string.Join(", ", seen)} before loading on attempt {attempts[next]}");
                Assert.Equal(42, fetched.Offset);
                Assert.Equal(3, attempts[next]);
            }
        }
        finally
        {
            foreach (var s in servers) await s.DisposeAsync();
        }
    }
}
