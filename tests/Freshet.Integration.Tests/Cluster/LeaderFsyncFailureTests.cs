using System.Globalization;
using System.Text;
using Freshet.Integration.Tests.Support;
using Freshet.Metadata.Controller;
using Freshet.Server;
using Freshet.Storage;
using Freshet.Storage.Tests.Support;
using Xunit.Abstractions;
using ErrorCode = Freshet.Protocol.ErrorCode;
using TopicPartition = Freshet.Protocol.TopicPartition;

namespace Freshet.Integration.Tests.Cluster;

/// <summary>
/// Three nodes with log.flush.per.append=true; the partition leader's fsync of a produced batch fails
/// (a file seam on node 1, <see cref="FaultyStorageIo"/>). The produce is answered KAFKA_STORAGE_ERROR (or its connection closes),
/// and that answer holds: the followers never got the batch (they fetch only what the leader has on
/// disk), node 1 halts (its only log directory failed, as Kafka's broker does) and the leadership moves,
/// and a plain (not idempotent) producer's retry to the new leader writes the batch exactly once.
/// </summary>
public sealed class LeaderFsyncFailureTests(ITestOutputHelper output)
{
    [Fact]
    public async Task ARecordWhoseLeaderFsyncFailedIsOnNoReplicaAndARetryWritesItOnce()
    {
        string root = Path.Combine(Path.GetTempPath(), "freshet-leader-fsync-" + Guid.NewGuid().ToString("N")[..8]);
        var ports = Enumerable.Range(1, 3).ToDictionary(n => n, _ => (Client: BrokerProcess.FreePort(), Controller: BrokerProcess.FreePort()));
        string voters = string.Join(",", ports.Select(p => $"{p.Key}@127.0.0.1:{p.Value.Controller}"));
        string clusterId = MetaProperties.NewClusterId();
        string LogDir(int n) => Path.Combine(root, $"node-{n}", "logs");
        Dictionary<string, string> Props(int n) => new()
        {
            ["node.id"] = n.ToString(CultureInfo.InvariantCulture),
            ["cluster.id"] = clusterId,
            ["log.dirs"] = LogDir(n),
            ["metadata.log.dir"] = Path.Combine(root, $"node-{n}", "meta"),
            ["listeners"] = $"PLAINTEXT://127.0.0.1:{ports[n].Client},CONTROLLER://127.0.0.1:{ports[n].Controller}",
            ["controller.listener.names"] = "CONTROLLER",
            ["controller.quorum.voters"] = voters,
            ["log.flush.per.append"] = "true",
            ["replica.fetch.backoff.ms"] = "200",
            ["auto.leader.rebalance.enable"] = "false",
        };
        using var loggers = TestOutputLoggerProvider.Factory(output);
        var io = new FaultyStorageIo();
        var servers = new Dictionary<int, FreshetServer>();
        try
        {
            var started = await Task.WhenAll(ports.Keys.Select(n =>
                FreshetServer.StartAsync(new FreshetServerOptions { Properties = Props(n), Loggers = loggers, StorageIo = n == 1 ? io : null })));
            foreach (var s in started) servers[s.Config.NodeId] = s;
            await Wait.UntilAsync(() => servers.Values.Any(s => s.Controller.IsActive), "a controller is active");
            QuorumController Active() => servers.Values.Select(s => s.Controller).First(c => c.IsActive);
            const string topic = "leader-fsync";
            var tp = new TopicPartition(topic, 0);
            var created = Active().CreateTopics([new NewTopic(topic, -1, -1, new Dictionary<int, IReadOnlyList<int>> { [0] = [1, 2, 3] },
                new Dictionary<string, string?> { ["min.insync.replicas"] = "2" })], false);
            Assert.Equal(ErrorCode.None, created[0].Error);
            await Wait.UntilAsync(() => Active().Image.Partition(topic, 0)!.Isr.Length == 3, "the ISR is complete");
            Assert.Equal(1, Active().Image.Partition(topic, 0)!.Leader);
            await Wait.UntilAsync(() => servers[1].Replicas.GetPartition(tp) is { IsLeader: true }, "node 1 leads the partition");

            await using (var c = await RawKafkaClient.ConnectAsync($"127.0.0.1:{ports[1].Client}"))
                Assert.Equal((ErrorCode.None, 0L), await StorageFailureTests.ProduceAsync(c, 0, "kept", topic));
            await Wait.UntilAsync(() => servers[2].Logs.GetLog(tp)!.LogEndOffset == 2 && servers[3].Logs.GetLog(tp)!.LogEndOffset == 2, "the followers have the first batch");

            // Node 1's next fsync of the segment fails, after giving the followers up to 3 s to fetch the batch
            // it covers: enough for them to get it, were they allowed past the leader's durable end.
            bool FollowerHasIt() => servers[2].Logs.GetLog(tp)!.LogEndOffset > 2 || servers[3].Logs.GetLog(tp)!.LogEndOffset > 2;
            string leaderDir = LogDirFailureChannel.Normalize(LogDir(1));
            io.FailFsync(p => p.StartsWith(leaderDir + Path.DirectorySeparatorChar, StringComparison.Ordinal) && p.EndsWith(".log", StringComparison.Ordinal),
                waitFor: FollowerHasIt, waitMs: 3000);
            // Answered KAFKA_STORAGE_ERROR, or not at all when the node's halt (below) closes the connection first
            // (Kafka's broker halts at once too): either way never acknowledged.
            await using (var c = await RawKafkaClient.ConnectAsync($"127.0.0.1:{ports[1].Client}"))
            {
                string outcome;
                try
                {
                    outcome = (await StorageFailureTests.ProduceAsync(c, 0, "failed", topic)).Error.ToString();
                }
                catch (Exception e) when (e is EndOfStreamException or IOException or System.Net.Sockets.SocketException)
                {
                    outcome = "connection closed";
                }
                Assert.Contains(outcome, new[] { nameof(ErrorCode.KafkaStorageError), "connection closed" });
            }
            Assert.Equal(1, io.Fired);
            Assert.False(FollowerHasIt(), "a follower fetched a batch the leader never made durable");

            // That was node 1's only log directory: it halts, as Kafka's broker does, saying why. The other
            // nodes fence it and the leadership and its ISR place move.
            var halted = await servers[1].Fatal.WaitAsync(TimeSpan.FromSeconds(60));
            Assert.Contains("every log directory has failed", halted.Message, StringComparison.Ordinal);
            Assert.True(servers[1].Logs.GetLog(tp)!.IsOffline);
            QuorumController Survivor() => servers.Where(s => s.Key != 1).Select(s => s.Value.Controller).First(c => c.IsActive);
            await Wait.UntilAsync(() => servers.Any(s => s.Key != 1 && s.Value.Controller.IsActive), "node 2 or 3 is the active controller");
            await Wait.UntilAsync(() => Survivor().Image.Partition(topic, 0)!.Leader is 2 or 3, "the leadership leaves node 1");
            await Wait.UntilAsync(() => !Survivor().Image.Partition(topic, 0)!.Isr.Contains(1), "node 1 leaves the ISR");
            int leader = Survivor().Image.Partition(topic, 0)!.Leader;

            // The producer retries the failed batch (not idempotent) where the metadata now points: written once.
            await using (var c = await RawKafkaClient.ConnectAsync($"127.0.0.1:{ports[leader].Client}"))
            {
                (ErrorCode Error, long BaseOffset) retry = default;
                for (int attempt = 0; attempt < 100; attempt++)
                {
                    retry = await StorageFailureTests.ProduceAsync(c, 0, "failed", topic);
                    if (retry.Error is not (ErrorCode.NotLeaderOrFollower or ErrorCode.NotEnoughReplicas or ErrorCode.NotEnoughReplicasAfterAppend)) break;
                    await Task.Delay(100);
                }
                Assert.Equal((ErrorCode.None, 2L), retry);
            }
            string bootstrap = $"127.0.0.1:{ports[2].Client},127.0.0.1:{ports[3].Client}";
            var values = Clients.ReadAll(bootstrap, topic, 1, TimeSpan.FromSeconds(30))[0].Select(r => Encoding.UTF8.GetString(r.Message.Value)).ToList();
            Assert.Equal(["kept-0", "kept-1", "failed-0", "failed-1"], values);
        }
        finally
        {
            foreach (var s in servers.Values) await s.DisposeAsync();
            try { Directory.Delete(root, recursive: true); }
            catch (IOException) { }
        }
    }
}
