using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Freshet.Metadata.Controller;
using Freshet.Metadata.Image;
using Freshet.Protocol;

namespace Freshet.Server.Tests;

/// <summary>
/// The metadata log bounded by snapshots of the image: written by every node, the log before them
/// dropped, loaded at start, and downloaded (FetchSnapshot) by a node that fell behind the leader's
/// log start.
/// </summary>
public sealed class MetadataSnapshotTests
{
    /// <summary>Snapshots after ~2 KB of records, metadata segments of 4 KB: a few dozen topics go through several of each.</summary>
    private static readonly Dictionary<string, string> SmallSnapshots = new()
    {
        ["metadata.log.max.record.bytes.between.snapshots"] = "2000",
        ["metadata.log.segment.bytes"] = "4096",
    };

    private static string MetadataDir(string dataDir) => Path.Combine(dataDir, "__cluster_metadata-0");

    private static string[] Checkpoints(string dataDir) =>
        Directory.Exists(MetadataDir(dataDir)) ? Directory.GetFiles(MetadataDir(dataDir), "*.checkpoint") : [];

    private static bool FirstSegmentGone(string dataDir) =>
        !File.Exists(Path.Combine(MetadataDir(dataDir), "00000000000000000000.log"));

    private static NewTopic Topic(string name, int replicationFactor = 1) =>
        new(name, 1, (short)replicationFactor, null, new Dictionary<string, string?>());

    private static async Task WaitUntil(Func<bool> condition, string what, int seconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"timed out waiting until {what}");
            await Task.Delay(50);
        }
    }

    private static SortedDictionary<string, Protocol.Wire.Uuid> TopicIds(MetadataImage image) =>
        new(image.TopicsByName.ToDictionary(t => t.Key, t => t.Value.Id), StringComparer.Ordinal);

    [Fact]
    public async Task ASingleNodeSnapshotsDropsTheLogPrefixAndRestartsFromTheSnapshot()
    {
        string dir = Path.Combine(Path.GetTempPath(), "freshet-snap-" + Guid.NewGuid().ToString("N")[..8]);
        var props = new Dictionary<string, string>(SmallSnapshots) { ["log.dirs"] = dir };
        try
        {
            SortedDictionary<string, Protocol.Wire.Uuid> before;
            await using (var server = await FreshetServer.StartEmbeddedAsync(props))
            {
                for (int i = 0; i < 60; i++)
                    Assert.Equal(ErrorCode.None, server.Controller.CreateTopics([Topic($"t-{i:D2}")], false)[0].Error);
                var deleted = server.Controller.DeleteTopics([.. Enumerable.Range(0, 20).Select(i => ((string?)$"t-{i:D2}", default(Protocol.Wire.Uuid)))]);
                Assert.All(deleted, d => Assert.Equal(ErrorCode.None, d.Error));
                await WaitUntil(() => Checkpoints(dir).Length > 0 && FirstSegmentGone(dir), "a snapshot is written and the first metadata segment deleted");
                before = TopicIds(server.Controller.Image);
                Assert.Equal(40, before.Count);
            }
            // The log no longer starts at 0: the restart has to begin from the snapshot.
            Assert.True(FirstSegmentGone(dir));
            await using (var again = await FreshetServer.StartEmbeddedAsync(props))
            {
                Assert.Equal(before, TopicIds(again.Controller.Image));
                Assert.True(again.Controller.IsActive);
                // And it keeps working on top of it.
                Assert.Equal(ErrorCode.None, again.Controller.CreateTopics([Topic("after-restart")], false)[0].Error);
                Assert.NotNull(again.Controller.Image.Topic("after-restart"));
                Assert.DoesNotContain("t-05", again.Controller.Image.TopicsByName.Keys);
            }
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    private static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    [Fact]
    public async Task ANodeBehindTheLeadersLogStartCatchesUpFromTheLeadersSnapshot()
    {
        string root = Path.Combine(Path.GetTempPath(), "freshet-snap3-" + Guid.NewGuid().ToString("N")[..8]);
        var ports = Enumerable.Range(1, 3).ToDictionary(n => n, _ => (Client: FreePort(), Controller: FreePort()));
        string voters = string.Join(",", ports.Select(p => $"{p.Key}@127.0.0.1:{p.Value.Controller}"));
        string clusterId = MetaProperties.NewClusterId();
        Dictionary<string, string> Props(int n) => new(SmallSnapshots)
        {
            ["node.id"] = n.ToString(CultureInfo.InvariantCulture),
            ["cluster.id"] = clusterId,
            ["log.dirs"] = Path.Combine(root, $"node-{n}"),
            ["listeners"] = $"PLAINTEXT://127.0.0.1:{ports[n].Client},CONTROLLER://127.0.0.1:{ports[n].Controller}",
            ["controller.listener.names"] = "CONTROLLER",
            ["controller.quorum.voters"] = voters,
            ["broker.session.timeout.ms"] = "3000",
            ["broker.heartbeat.interval.ms"] = "300",
        };
        var servers = new Dictionary<int, FreshetServer>();
        try
        {
            var started = await Task.WhenAll(Enumerable.Range(1, 3).Select(n => FreshetServer.StartEmbeddedAsync(Props(n))));
            for (int n = 1; n <= 3; n++) servers[n] = started[n - 1];

            // Node 3 stops (a majority stays), so it must not be the one committing.
            await WaitUntil(() => servers.Values.Any(s => s.Controller.IsActive), "a controller is active");
            if (servers[3].Controller.IsActive)
            {
                await servers[3].DisposeAsync();
                servers.Remove(3);
                await WaitUntil(() => servers.Values.Any(s => s.Controller.IsActive), "another controller is active");
                servers[3] = await FreshetServer.StartEmbeddedAsync(Props(3));
            }
            var created = ActiveOf(servers).CreateTopics([Topic("before", 3)], false);
            Assert.Equal(ErrorCode.None, created[0].Error);
            await WaitUntil(() => servers[3].Controller.Image.Topic("before") is not null, "node 3 has the first topic");
            long node3End = servers[3].Quorum.LogEndOffset;
            await servers[3].DisposeAsync();
            servers.Remove(3);

            // While node 3 is away: topics come and go, snapshots are taken, the log start moves past node 3's end.
            for (int i = 0; i < 60; i++)
                Assert.Equal(ErrorCode.None, ActiveOf(servers).CreateTopics([Topic($"while-away-{i:D2}")], false)[0].Error);
            Assert.All(ActiveOf(servers).DeleteTopics([("before", default), .. Enumerable.Range(0, 10).Select(i => ((string?)$"while-away-{i:D2}", default(Protocol.Wire.Uuid)))]),
                d => Assert.Equal(ErrorCode.None, d.Error));
            await WaitUntil(() => servers.Keys.All(n => Checkpoints(Path.Combine(root, $"node-{n}")).Any(f => SnapshotEnd(f) > node3End)),
                "both live nodes have a snapshot past node 3's log end");
            await WaitUntil(() => servers.Keys.All(n => FirstSegmentGone(Path.Combine(root, $"node-{n}"))), "the live nodes dropped their first metadata segment");

            servers[3] = await FreshetServer.StartEmbeddedAsync(Props(3));
            var expected = TopicIds(ActiveOf(servers).Image);
            await WaitUntil(() => TopicIds(servers[3].Controller.Image).SequenceEqual(expected), "node 3's image matches the leader's");
            Assert.Null(servers[3].Controller.Image.Topic("before"));
            Assert.Equal(50, expected.Count);
            // Node 3 now stores a snapshot it downloaded (or wrote) that starts past where it had stopped.
            Assert.Contains(Checkpoints(Path.Combine(root, "node-3")), f => SnapshotEnd(f) > node3End);
        }
        finally
        {
            foreach (var s in servers.Values) await s.DisposeAsync();
            if (Directory.Exists(root)) Directory.Delete(root, true);
        }
    }

    private static QuorumController ActiveOf(Dictionary<int, FreshetServer> servers) =>
        servers.Values.Select(s => s.Controller).FirstOrDefault(c => c.IsActive) ?? throw new InvalidOperationException("no active controller");

    /// <summary>A snapshot file's end offset (its name is offset-epoch.checkpoint).</summary>
    private static long SnapshotEnd(string path) =>
        long.Parse(Path.GetFileName(path).AsSpan(0, 20), CultureInfo.InvariantCulture);
}
