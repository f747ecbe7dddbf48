using System.Net.Sockets;

namespace Freshet.Server.Tests;

public sealed class EmbeddedServerTests
{
    [Fact]
    public async Task StartsOnAFreePortWithATemporaryDirectoryAndCleansUp()
    {
        string dir;
        string bootstrap;
        await using (var server = await FreshetServer.StartEmbeddedAsync())
        {
            bootstrap = server.BootstrapServers;
            dir = server.Config.LogDirs[0];
            Assert.StartsWith("127.0.0.1:", bootstrap, StringComparison.Ordinal);
            Assert.True(Directory.Exists(dir));
            Assert.True(File.Exists(Path.Combine(dir, MetaProperties.FileName)));
            using var tcp = new TcpClient();
            await tcp.ConnectAsync("127.0.0.1", int.Parse(bootstrap.Split(':')[1], System.Globalization.CultureInfo.InvariantCulture));
            Assert.True(tcp.Connected);
        }
        Assert.False(Directory.Exists(dir));
    }

    [Fact]
    public async Task TwoServersCannotShareADataDirectory()
    {
        string dir = Path.Combine(Path.GetTempPath(), "freshet-lock-" + Guid.NewGuid().ToString("N")[..8]);
        var props = new Dictionary<string, string> { ["log.dirs"] = dir, ["listeners"] = "PLAINTEXT://127.0.0.1:0" };
        try
        {
            await using var first = await FreshetServer.StartEmbeddedAsync(props);
            var e = await Assert.ThrowsAsync<IOException>(() => FreshetServer.StartEmbeddedAsync(props));
            Assert.Contains("in use", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public async Task APortInUseFailsStartWithAReadableError()
    {
        using var blocker = new TcpListener(System.Net.IPAddress.Loopback, 0);
        blocker.Start();
        int port = ((System.Net.IPEndPoint)blocker.LocalEndpoint).Port;
        var e = await Assert.ThrowsAsync<IOException>(() => FreshetServer.StartEmbeddedAsync(new Dictionary<string, string> { ["listeners"] = $"PLAINTEXT://127.0.0.1:{port}" }));
        Assert.Contains($"{port}", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ASecondServerCannotListenOnTheSamePort()
    {
        // Both sockets come from Freshet here: with SO_REUSEPORT on both, Linux let the second
        // bind succeed and split new connections between the two brokers.
        await using var first = await FreshetServer.StartEmbeddedAsync();
        int port = int.Parse(first.BootstrapServers[(first.BootstrapServers.LastIndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        string dir = Path.Combine(Path.GetTempPath(), "freshet-port-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var e = await Assert.ThrowsAsync<IOException>(() => FreshetServer.StartEmbeddedAsync(new Dictionary<string, string>
            {
                ["listeners"] = $"PLAINTEXT://127.0.0.1:{port}",
                ["log.dirs"] = dir,
            }));
            Assert.Contains($"{port}", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}
