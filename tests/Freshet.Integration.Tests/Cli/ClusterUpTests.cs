using System.Net;
using System.Net.Sockets;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Cli;

/// <summary>
/// `freshet cluster up` when a node fails (issue 10): one that cannot start stops the whole command
/// with its error and leaves no node behind; one that dies once the cluster is up is reported, and
/// the others keep serving until Ctrl-C (or until none is left).
/// </summary>
public sealed class ClusterUpTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task ANodeThatCannotStartStopsTheOthersAndTheCommandFailsWithItsError()
    {
        int client = BrokerProcess.FreePortRange(3), controller = BrokerProcess.FreePortRange(3, avoid: client);
        // Node 2's client port is taken.
        var squatter = new TcpListener(IPAddress.Loopback, client + 1);
        squatter.Start();
        try
        {
            await using var cluster = ClusterUpProcess.Start(3, client, controller);
            int exit = await cluster.WaitForExitAsync(Wait);
            output.WriteLine(cluster.Output);

            Assert.Equal(1, exit);
            Assert.Contains("freshet cluster: node 2 failed to start (exit code 1)", cluster.Output, StringComparison.Ordinal);
            // Its error, repeated under the summary: the port and why.
            Assert.Contains($"  [node-2] freshet server: cannot listen on PLAINTEXT://127.0.0.1:{client + 1}: Address already in use", cluster.Output, StringComparison.Ordinal);
            Assert.DoesNotContain("Freshet cluster of 3 nodes is ready", cluster.Output, StringComparison.Ordinal);
            Assert.Equal(3, cluster.NodePids.Count);
            // Nodes 1 and 3 are gone: no process names the cluster's data, nothing listens on their ports. (Not "the
            // ports can be bound": any process's outgoing connection may hold one of them as its ephemeral port.)
            Assert.Empty(ProcessTable.Naming(cluster.DataDir));
            foreach (int port in new[] { client, client + 2, controller, controller + 1, controller + 2 })
                Assert.False(ProcessTable.Listening(port), $"something still listens on port {port}");
        }
        finally
        {
            squatter.Stop();
        }
    }

    [Fact]
    public async Task ANodeThatDiesWhileTheClusterIsUpIsReportedAndTheOthersKeepServing()
    {
        await using var cluster = ClusterUpProcess.Start(3);
        try
        {
            await cluster.WaitForLineAsync(l => l.StartsWith("Freshet cluster of 3 nodes is ready", StringComparison.Ordinal), Wait);
            int pid2 = cluster.NodePids[2];
            System.Diagnostics.Process.GetProcessById(pid2).Kill(); // SIGKILL, as to try failover

            await cluster.WaitForLineAsync(l => l.StartsWith($"freshet cluster: node 2 (pid {pid2}) exited with code 137 while the cluster was up; 2 of 3 nodes still running",
                StringComparison.Ordinal), Wait);
            Assert.False(cluster.HasExited);
            // The others still serve clients.
            await using (var raw = await RawKafkaClient.ConnectAsync($"127.0.0.1:{cluster.ClientPort}"))
            {
                var md = await raw.RequestAsync<MetadataResponse>(new MetadataRequest { Topics = null }, 12, Wait);
                Assert.Contains(md.Brokers, b => b.NodeId == 1 && b.Port == cluster.ClientPort);
            }

            // With no node left the command has nothing to run: it says so and fails.
            foreach (var (_, pid) in cluster.NodePids.Where(n => n.Key != 2))
                System.Diagnostics.Process.GetProcessById(pid).Kill();
            Assert.Equal(1, await cluster.WaitForExitAsync(Wait));
            Assert.Contains("freshet cluster: every node has exited", cluster.Output, StringComparison.Ordinal);
            Assert.Empty(ProcessTable.Naming(cluster.DataDir));
        }
        finally
        {
            output.WriteLine(cluster.Output);
        }
    }
}
