using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Server;

namespace Freshet.Cli.Commands;

/// <summary>`freshet cluster up`: a local cluster of separate `freshet server` processes, for trying replication and failover on one machine.</summary>
public static class ClusterCommand
{
    public const string Usage = """
        usage: freshet cluster up [--nodes 3] [--data ./data] [--port 9092] [--controller-port 19092]
                                  [--override key=value]... [--log-level info]
               freshet cluster describe [--bootstrap-server HOST:PORT] [--json]

        describe: the brokers, and the metadata quorum (DescribeQuorum): its leader (the active
        controller), epoch and high watermark, and each voter's and observer's log end offset and
        lag behind the leader. Brokers are "live" when DescribeCluster lists them (it lists only
        unfenced brokers and gives no others); every other node id the cluster refers to -- in a
        partition's replica list (Metadata) or among the quorum's voters and observers -- is shown
        as "fenced", without an address: a broker that stopped or missed its heartbeats for
        broker.session.timeout.ms, or one that has not registered yet. A voter that is fetching the
        metadata log (within the last 10 s) but is no live broker and holds no replica is taken for a
        controller-only node (process.roles=controller) and listed in the quorum only.

        Starts --nodes `freshet server` processes, each in combined broker+controller mode:
        node N listens for clients on 127.0.0.1:(port+N-1) and for the controller quorum on
        127.0.0.1:(controller-port+N-1), keeps its data in <data>/node-N, and all of them share
        one cluster id (kept in <data>/node-1 across runs). Prints each node's pid as it starts and
        the bootstrap address once every node is ready, forwards each node's output prefixed with its
        name, and stops them all (SIGTERM: controlled shutdown) on Ctrl-C or SIGTERM, exiting with 0.
        --override applies to every node.

        A node that fails to start (its port taken, a bad setting) stops the others; the command
        prints that node's error and exits with 1. A node that exits once the cluster is up (killed
        to try failover, say) is reported on stderr and the others keep running, as a real
        cluster's would; when no node is left the command exits with 1.

        Each node runs what `freshet server` would run on a machine of its own, e.g. node 1 of 3:
          freshet server --override node.id=1 --override cluster.id=<id> \
            --override listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:19092 \
            --override advertised.listeners=PLAINTEXT://127.0.0.1:9092 --override controller.listener.names=CONTROLLER \
            --override controller.quorum.voters=1@127.0.0.1:19092,2@127.0.0.1:19093,3@127.0.0.1:19094 \
            --override log.dirs=./data/node-1
        """;

    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help") { Console.Out.WriteLine(Usage); return args.Length == 0 ? 2 : 0; }
        if (args[0] == "describe") return await DescribeAsync(args[1..]).ConfigureAwait(false);
        if (args[0] != "up") throw new UsageException($"unknown cluster command '{args[0]}'");
        var cl = new CommandLine(args[1..], new HashSet<string> { "help" });
        if (cl.Has("help")) { Console.Out.WriteLine(Usage); return 0; }
        int nodes = cl.GetInt("nodes", 3);
        string data = cl.Get("data") ?? "./data";
        int port = cl.GetInt("port", 9092);
        int controllerPort = cl.GetInt("controller-port", 19092);
        string level = cl.Get("log-level") ?? "info";
        var overrides = cl.GetAll("override").ToList();
        cl.EnsureAllUsed();
        if (nodes < 1 || nodes > 9) throw new UsageException("--nodes must be between 1 and 9");

        string clusterId = MetaProperties.Read(Path.Combine(data, "node-1"))?.ClusterId ?? MetaProperties.NewClusterId();
        string voters = string.Join(",", Enumerable.Range(1, nodes).Select(n => $"{n}@127.0.0.1:{controllerPort + n - 1}"));
        string bootstrap = string.Join(",", Enumerable.Range(1, nodes).Select(n => $"127.0.0.1:{port + n - 1}"));
        var children = new List<Node>();
        using var stop = new CancellationTokenSource();
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
        try
        {
            for (int n = 1; n <= nodes; n++)
            {
                var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
                if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") psi.ArgumentList.Add(typeof(ClusterCommand).Assembly.Location);
                string[] nodeArgs =
                [
                    "server", "--log-level", level,
                    "--override", $"node.id={n}",
                    "--override", $"cluster.id={clusterId}",
                    "--override", "process.roles=broker,controller",
                    "--override", $"listeners=PLAINTEXT://127.0.0.1:{port + n - 1},CONTROLLER://127.0.0.1:{controllerPort + n - 1}",
                    "--override", $"advertised.listeners=PLAINTEXT://127.0.0.1:{port + n - 1}",
                    "--override", "controller.listener.names=CONTROLLER",
                    "--override", $"controller.quorum.voters={voters}",
                    "--override", $"log.dirs={Path.Combine(data, $"node-{n}")}",
                ];
                foreach (var a in nodeArgs) psi.ArgumentList.Add(a);
                foreach (var o in overrides) { psi.ArgumentList.Add("--override"); psi.ArgumentList.Add(o); }
                var node = new Node(n, Process.Start(psi) ?? throw new CommandFailedException($"could not start node {n}"));
                children.Add(node);
                node.Forward();
                Console.Out.WriteLine($"freshet cluster: node {n} started (pid {node.Process.Id}): clients on 127.0.0.1:{port + n - 1}, "
                    + $"controller quorum on 127.0.0.1:{controllerPort + n - 1}, data in {Path.Combine(data, $"node-{n}")}");
            }
            var stopped = Task.Delay(Timeout.Infinite, stop.Token).ContinueWith(_ => { }, TaskScheduler.Default);
            var allReady = Task.WhenAll(children.Select(c => c.Ready.Task));
            var firstExit = Task.WhenAny(children.Select(c => c.Exited));

            // Start-up: every node ready, or one gone (its port taken, a bad setting, a crash): then the cluster
            // cannot be what was asked for, so the others are stopped and the command fails with that node's error.
            var first = await Task.WhenAny(allReady, firstExit, stopped).ConfigureAwait(false);
            if (first == stopped) return 0;
            if (first != allReady)
            {
                var failed = children.First(c => c.Exited.IsCompleted);
                Console.Error.WriteLine($"freshet cluster: node {failed.Id} failed to start (exit code {failed.Process.ExitCode}); stopping the other nodes");
                foreach (var line in failed.LastLines()) Console.Error.WriteLine($"  [node-{failed.Id}] {line}");
                return 1;
            }
            Console.Out.WriteLine($"Freshet cluster of {nodes} nodes is ready: bootstrap.servers={bootstrap} (cluster {clusterId}; Ctrl-C stops it)");

            // Up: a node that exits (killed to try failover, or failed) is reported and the others keep running,
            // as the nodes of a real cluster would; Ctrl-C or SIGTERM stops them. When none is left, the command fails.
            var running = children.ToList();
            while (running.Count > 0)
            {
                var exited = await Task.WhenAny(running.Select(c => c.Exited).Append(stopped)).ConfigureAwait(false);
                if (exited == stopped) return 0;
                foreach (var gone in running.Where(c => c.Exited.IsCompleted).ToList())
                {
                    running.Remove(gone);
                    Console.Error.WriteLine($"freshet cluster: node {gone.Id} (pid {gone.Process.Id}) exited with code {gone.Process.ExitCode} while the cluster was up; "
                        + (running.Count > 0 ? $"{running.Count} of {nodes} nodes still running (Ctrl-C stops them)" : "no node is left"));
                    if (gone.Process.ExitCode != 0)
                        foreach (var line in gone.LastLines()) Console.Error.WriteLine($"  [node-{gone.Id}] {line}");
                }
            }
            Console.Error.WriteLine("freshet cluster: every node has exited");
            return 1;
        }
        finally
        {
            await StopAsync(children).ConfigureAwait(false);
        }
    }

    /// <summary>SIGTERM to every node still running (a node still starting gives up at once), then SIGKILL to any still there after 60 s.</summary>
    private static async Task StopAsync(List<Node> children)
    {
        foreach (var c in children.Where(c => !c.Process.HasExited))
        {
            using var kill = Process.Start("kill", ["-TERM", c.Process.Id.ToString(CultureInfo.InvariantCulture)]);
            await kill.WaitForExitAsync().ConfigureAwait(false);
        }
        foreach (var c in children)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            try { await c.Exited.WaitAsync(timeout.Token).ConfigureAwait(false); }
            catch (OperationCanceledException)
            {
                Console.Error.WriteLine($"freshet cluster: node {c.Id} did not stop within 60 s; killing it");
                c.Process.Kill();
                await c.Process.WaitForExitAsync().ConfigureAwait(false);
            }
            c.Process.Dispose();
        }
    }

    /// <summary>One node's process: its output forwarded with a [node-N] prefix, and its last lines kept to explain a failure.</summary>
    private sealed class Node(int id, Process process)
    {
        private const int Kept = 12;
        private readonly Queue<string> _stderr = new();
        private readonly Queue<string> _problems = new();

        public int Id { get; } = id;
        public Process Process { get; } = process;
        public TaskCompletionSource Ready { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Completes when the process has exited and its output has been read to the end.</summary>
        public Task Exited { get; private set; } = Task.CompletedTask;

        public void Forward()
        {
            string name = $"node-{Id}";
            Process.OutputDataReceived += (_, e) =>
            {
                if (e.Data is null) return;
                if (e.Data.StartsWith("Freshet is ready", StringComparison.Ordinal)) Ready.TrySetResult();
                // The console logger's warnings, errors and critical errors ("warn:", "fail:", "crit:" after the time).
                if (e.Data.Contains(" fail: ", StringComparison.Ordinal) || e.Data.Contains(" crit: ", StringComparison.Ordinal)) Keep(_problems, e.Data);
                Console.Out.WriteLine($"[{name}] {e.Data}");
            };
            Process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is null) return;
                Keep(_stderr, e.Data);
                Console.Error.WriteLine($"[{name}] {e.Data}");
            };
            Process.BeginOutputReadLine();
            Process.BeginErrorReadLine();
            Exited = Process.WaitForExitAsync();
        }

        /// <summary>What explains an exit: the error lines the node logged and what it printed on stderr (`freshet server: ...`).</summary>
        public List<string> LastLines()
        {
            lock (_stderr) return [.. _problems, .. _stderr];
        }

        private void Keep(Queue<string> lines, string line)
        {
            lock (_stderr)
            {
                lines.Enqueue(line);
                while (lines.Count > Kept) lines.Dequeue();
            }
        }
    }

    private static async Task<int> DescribeAsync(string[] args)
    {
        var cl = new CommandLine(args, new HashSet<string> { "json", "help" });
        if (cl.Has("help")) { Console.Out.WriteLine(Usage); return 0; }
        var settings = ClientSettings.Read(cl);
        bool json = cl.Has("json");
        cl.EnsureAllUsed();
        // DescribeCluster, DescribeQuorum and Metadata over a bare connection to the first reachable bootstrap broker
        // (Confluent.Kafka's admin client has no call for DescribeQuorum).
        await using var client = BareAdminClient.Create(settings, TimeSpan.FromSeconds(15));
        var cluster = await client.SendAsync<DescribeClusterResponse>(new DescribeClusterRequest(), 1).ConfigureAwait(false);
        if (cluster.ErrorCode != 0)
            throw new CommandFailedException($"DescribeCluster: {((ErrorCode)cluster.ErrorCode).KafkaName()}: {cluster.ErrorMessage ?? ((ErrorCode)cluster.ErrorCode).DefaultMessage()}");
        DescribeQuorumResponse.PartitionData? quorum = null;
        string? quorumError = null;
        try
        {
            var r = await client.SendAsync<DescribeQuorumResponse>(new DescribeQuorumRequest
            {
                Topics = [new() { TopicName = "__cluster_metadata", Partitions = [new() { PartitionIndex = 0 }] }],
            }, 1).ConfigureAwait(false);
            var p = r.Topics.SelectMany(t => t.Partitions).FirstOrDefault();
            var error = (ErrorCode)(p?.ErrorCode ?? r.ErrorCode);
            if (p is not null && error == ErrorCode.None) quorum = p;
            else quorumError = error.KafkaName();
        }
        catch (CommandFailedException e)
        {
            quorumError = e.Message;
        }
        var metadata = await client.MetadataAsync(null).ConfigureAwait(false);

        // DescribeCluster up to v1 lists live (unfenced) brokers only. Every other node the cluster
        // refers to -- a partition replica, a quorum voter or observer -- is registered but not live.
        var live = cluster.Brokers.Select(b => b.BrokerId).ToHashSet();
        var replicaIds = metadata.Topics.SelectMany(t => t.Partitions).SelectMany(p => p.ReplicaNodes).ToHashSet();
        // A voter that keeps fetching the metadata log but is no live broker and holds no replica is a
        // controller-only node (process.roles=controller), not a fenced broker.
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var controllersOnly = quorum is null ? [] : quorum.CurrentVoters
            .Where(v => !live.Contains(v.ReplicaId) && !replicaIds.Contains(v.ReplicaId) && v.LastFetchTimestamp >= 0 && now - v.LastFetchTimestamp < 10_000)
            .Select(v => v.ReplicaId).ToHashSet();
        var referenced = replicaIds.Concat(quorum is null ? [] : quorum.CurrentVoters.Concat(quorum.Observers).Select(r => r.ReplicaId));
        var fenced = referenced.Where(id => id >= 0 && !live.Contains(id) && !controllersOnly.Contains(id)).Distinct().Order().ToList();
        var brokerRows = cluster.Brokers.Select(b => (Id: b.BrokerId, Host: (string?)b.Host, Port: (int?)b.Port, b.Rack, Status: "live"))
            .Concat(fenced.Select(id => (Id: id, Host: (string?)null, Port: (int?)null, Rack: (string?)null, Status: "fenced")))
            .OrderBy(b => b.Id).ToList();

        long leaderEnd = quorum?.CurrentVoters.Where(v => v.ReplicaId == quorum.LeaderId).Select(v => v.LogEndOffset).FirstOrDefault() ?? 0;
        if (json)
        {
            var node = new System.Text.Json.Nodes.JsonObject
            {
                ["clusterId"] = cluster.ClusterId,
                ["brokers"] = new System.Text.Json.Nodes.JsonArray([.. brokerRows.Select(n => (System.Text.Json.Nodes.JsonNode?)new System.Text.Json.Nodes.JsonObject
                {
                    ["id"] = n.Id, ["host"] = n.Host, ["port"] = n.Port, ["rack"] = n.Rack, ["status"] = n.Status,
                })]),
                ["quorum"] = quorum is null ? new System.Text.Json.Nodes.JsonObject { ["error"] = quorumError } : new System.Text.Json.Nodes.JsonObject
                {
                    ["leaderId"] = quorum.LeaderId,
                    ["leaderEpoch"] = quorum.LeaderEpoch,
                    ["highWatermark"] = quorum.HighWatermark,
                    ["voters"] = Replicas(quorum.CurrentVoters, leaderEnd),
                    ["observers"] = Replicas(quorum.Observers, leaderEnd),
                },
            };
            Console.Out.WriteLine(Output.ToIndentedJson(node));
            return 0;
        }
        Console.Out.WriteLine($"Cluster: {cluster.ClusterId}");
        var brokers = new Table("BROKER", "HOST", "PORT", "RACK", "STATUS");
        foreach (var n in brokerRows) brokers.Add(n.Id, n.Host ?? "-", n.Port?.ToString(CultureInfo.InvariantCulture) ?? "-", n.Rack ?? "", n.Status);
        brokers.Write(Console.Out);
        if (quorum is null)
        {
            Console.Out.WriteLine($"Metadata quorum: unavailable ({quorumError})");
            return 1;
        }
        Console.Out.WriteLine($"Metadata quorum: leader (active controller) {quorum.LeaderId}, epoch {quorum.LeaderEpoch}, high watermark {quorum.HighWatermark}");
        var replicas = new Table("NODE", "ROLE", "LOG-END-OFFSET", "LAG");
        foreach (var v in quorum.CurrentVoters) replicas.Add(v.ReplicaId, v.ReplicaId == quorum.LeaderId ? "leader" : "voter", v.LogEndOffset, Math.Max(0, leaderEnd - v.LogEndOffset));
        foreach (var o in quorum.Observers) replicas.Add(o.ReplicaId, "observer", o.LogEndOffset, Math.Max(0, leaderEnd - o.LogEndOffset));
        replicas.Write(Console.Out);
        return 0;
    }

    private static System.Text.Json.Nodes.JsonArray Replicas(IEnumerable<DescribeQuorumResponse.ReplicaState> replicas, long leaderEnd) =>
        new([.. replicas.Select(r => (System.Text.Json.Nodes.JsonNode?)new System.Text.Json.Nodes.JsonObject
        {
            ["id"] = r.ReplicaId, ["logEndOffset"] = r.LogEndOffset, ["lag"] = Math.Max(0, leaderEnd - r.LogEndOffset),
        })]);
}
