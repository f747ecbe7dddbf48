using System.Net;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Server;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests;

/// <summary>
/// Kafka's connection limits, each with real TCP connections: max.connections and
/// listener.name.&lt;l&gt;.max.connections stop the listener accepting (the newcomer waits, then is
/// served when a connection closes), the inter-broker listener is exempt and makes room by closing
/// the least recently used client connection, max.connections.per.ip closes the newcomer at once
/// (127.0.0.1 and 127.0.0.2 are both this machine, as two client addresses), and
/// connections.max.idle.ms closes idle connections (or never, at -1).
/// </summary>
public sealed class ConnectionLimitsTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(30);

    private static async Task<bool> ServedAsync(RawKafkaClient c, TimeSpan? timeout = null)
    {
        try
        {
            var v = await c.RequestAsync<ApiVersionsResponse>(new ApiVersionsRequest(), 0, timeout ?? Generous);
            return v.ErrorCode == (short)ErrorCode.None;
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or System.Net.Sockets.SocketException)
        {
            return false;
        }
    }

    private static async Task<RawKafkaClient> ServedClientAsync(string bootstrap, IPAddress? from = null)
    {
        var c = await RawKafkaClient.ConnectAsync(bootstrap, from);
        Assert.True(await ServedAsync(c), "a connection within the limits was not answered");
        return c;
    }

    private static string Bootstrap(FreshetServer broker, string listener) =>
        broker.BoundListeners.Where(l => l.Name == listener).Select(l => $"127.0.0.1:{l.EndPoint.Port}").Single();

    [Fact]
    public async Task AtMaxConnectionsTheListenerStopsAcceptingAndTheWaitingConnectionIsServedOnceOneCloses()
    {
        var logs = new LogCapture();
        using var loggers = logs.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string> { ["max.connections"] = "3" }, loggers);
        var open = new List<RawKafkaClient>();
        try
        {
            for (int i = 0; i < 3; i++) open.Add(await ServedClientAsync(broker.BootstrapServers));

            // The fourth connects (the kernel completes the handshake into the listen backlog) but is
            // not accepted: its request waits unanswered, as with Kafka. No error code exists for this.
            await using var waiting = await RawKafkaClient.ConnectAsync(broker.BootstrapServers);
            int id = await waiting.SendAsync(new ApiVersionsRequest(), 0);
            var answer = waiting.ReadResponseAsync<ApiVersionsResponse>(0, id, Generous);
            await Task.Delay(TimeSpan.FromSeconds(1));
            Assert.False(answer.IsCompleted, "a connection past max.connections was answered (or closed) instead of waiting");
            Assert.Equal(3, broker.ConnectionCount);

            // One closes: the waiting connection is accepted and its request answered.
            await open[0].DisposeAsync();
            open.RemoveAt(0);
            Assert.Equal((short)ErrorCode.None, (await answer).ErrorCode);
            Assert.True(await ServedAsync(open[0]));
            Assert.Contains(logs.Lines, l => l.Contains("max.connections (3) reached: PLAINTEXT accepts no new connection", StringComparison.Ordinal));
        }
        finally
        {
            foreach (var c in open) await c.DisposeAsync();
        }
    }

    [Fact]
    public async Task TheInterBrokerListenerAcceptsPastMaxConnectionsAndTheLeastRecentlyUsedClientConnectionMakesRoom()
    {
        var logs = new LogCapture();
        using var loggers = logs.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string>
        {
            ["listeners"] = "PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0",
            ["inter.broker.listener.name"] = "INTERNAL",
            ["max.connections"] = "2",
        }, loggers);
        string clients = Bootstrap(broker, "PLAINTEXT"), internalListener = Bootstrap(broker, "INTERNAL");
        await using var older = await ServedClientAsync(clients);
        await using var newer = await ServedClientAsync(clients);
        await Task.Delay(50); // activity is timed in milliseconds: make the order unambiguous
        Assert.True(await ServedAsync(newer)); // newer is also the more recently used

        // At the limit, a broker's connection on the inter-broker listener is still accepted and served...
        await using var replica = await ServedClientAsync(internalListener);
        // ...and the least recently used client connection is closed to bring the total back to max.connections.
        Assert.True(await older.IsClosedByPeerAsync(Generous), "the least recently used client connection was not closed");
        Assert.True(await ServedAsync(newer));
        Assert.True(await ServedAsync(replica));
        Assert.Contains(logs.Lines, l => l.Contains("to make room for the inter-broker listener INTERNAL: max.connections (2) reached", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AListenersOwnMaxConnectionsLimitsOnlyThatListener()
    {
        var logs = new LogCapture();
        using var loggers = logs.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string>
        {
            ["listeners"] = "PLAINTEXT://127.0.0.1:0,OTHER://127.0.0.1:0",
            ["listener.name.other.max.connections"] = "1",
        }, loggers);
        Assert.DoesNotContain("listener.name.other.max.connections", broker.Config.Unknown);
        string other = Bootstrap(broker, "OTHER");
        var first = await ServedClientAsync(other);
        try
        {
            await using var second = await RawKafkaClient.ConnectAsync(other);
            int id = await second.SendAsync(new ApiVersionsRequest(), 0);
            var answer = second.ReadResponseAsync<ApiVersionsResponse>(0, id, Generous);

            // The other listener is not limited by it.
            var plain = new List<RawKafkaClient>();
            for (int i = 0; i < 3; i++) plain.Add(await ServedClientAsync(Bootstrap(broker, "PLAINTEXT")));
            foreach (var p in plain) await p.DisposeAsync();
            Assert.False(answer.IsCompleted, "a second connection on a listener limited to one was answered (or closed) instead of waiting");

            await first.DisposeAsync();
            Assert.Equal((short)ErrorCode.None, (await answer).ErrorCode);
            Assert.Contains(logs.Lines, l => l.Contains("listener.name.other.max.connections (1) reached: OTHER accepts no new connection", StringComparison.Ordinal));
        }
        finally
        {
            await first.DisposeAsync();
        }
    }

    [Fact]
    public async Task PastMaxConnectionsPerIpTheNewConnectionIsClosedAtOnceAndAnOverriddenAddressHasItsOwnLimit()
    {
        var one = IPAddress.Parse("127.0.0.1");
        var two = IPAddress.Parse("127.0.0.2");
        var logs = new LogCapture();
        using var loggers = logs.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string>
        {
            ["max.connections.per.ip"] = "2",
            ["max.connections.per.ip.overrides"] = "127.0.0.2:3",
        }, loggers);
        var open = new List<RawKafkaClient>();
        try
        {
            for (int i = 0; i < 2; i++) open.Add(await ServedClientAsync(broker.BootstrapServers, one));
            // Further connections from 127.0.0.1 are closed at once, without an answer (Kafka's behaviour).
            const int refusals = 5;
            for (int i = 0; i < refusals; i++)
            {
                await using var refused = await RawKafkaClient.ConnectAsync(broker.BootstrapServers, one);
                Assert.True(await refused.IsClosedByPeerAsync(Generous), "a connection past max.connections.per.ip was not closed");
            }
            // 127.0.0.2 has its own limit of 3, unaffected by 127.0.0.1's connections.
            for (int i = 0; i < 3; i++) open.Add(await ServedClientAsync(broker.BootstrapServers, two));
            await using (var refused = await RawKafkaClient.ConnectAsync(broker.BootstrapServers, two))
                Assert.True(await refused.IsClosedByPeerAsync(Generous), "a connection past the override for 127.0.0.2 was not closed");
            // The connections within the limits are still served, and a closed one frees its address's slot.
            foreach (var c in open) Assert.True(await ServedAsync(c));
            await open[0].DisposeAsync();
            open.RemoveAt(0);
            var again = await RawKafkaClient.ConnectAsync(broker.BootstrapServers, one);
            open.Add(again);
            // The slot is freed when the broker has seen the close: until then a retry may be refused.
            using var deadline = new CancellationTokenSource(Generous);
            while (!await ServedAsync(again, TimeSpan.FromSeconds(5)))
            {
                deadline.Token.ThrowIfCancellationRequested();
                await again.DisposeAsync();
                open.Remove(again);
                await Task.Delay(100);
                again = await RawKafkaClient.ConnectAsync(broker.BootstrapServers, one);
                open.Add(again);
            }

            var said = logs.Lines.Where(l => l.StartsWith("Refused a connection from 127.0.0.1 on PLAINTEXT: max.connections.per.ip (2) reached", StringComparison.Ordinal)).ToList();
            Assert.NotEmpty(said);
            // Refusals are logged at most once per ten seconds, with a count, not once each.
            Assert.True(said.Count < refusals, $"{said.Count} log lines for {refusals} refusals:\n{string.Join('\n', said)}");
        }
        finally
        {
            foreach (var c in open) await c.DisposeAsync();
        }
    }

    [Fact]
    public async Task AnIdleConnectionIsClosedAfterConnectionsMaxIdleMsWhileABusyOneStaysOpen()
    {
        using var loggers = TestOutputLoggerProvider.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string> { ["connections.max.idle.ms"] = "3000" }, loggers);
        await using var idle = await ServedClientAsync(broker.BootstrapServers);
        await using var busy = await ServedClientAsync(broker.BootstrapServers);
        var closed = idle.IsClosedByPeerAsync(TimeSpan.FromSeconds(60));
        while (!closed.IsCompleted)
        {
            Assert.True(await ServedAsync(busy), "a connection sending a request every 100 ms was closed as idle");
            await Task.Delay(100);
        }
        Assert.True(await closed, "the idle connection was not closed within 60 s");
        Assert.True(await ServedAsync(busy));
    }

    [Fact]
    public async Task ConnectionsMaxIdleMsMinusOneNeverClosesAnIdleConnection()
    {
        using var loggers = TestOutputLoggerProvider.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string> { ["connections.max.idle.ms"] = "-1" }, loggers);
        await using var idle = await ServedClientAsync(broker.BootstrapServers);
        // Before -1 was honoured the sweep ran every 100 ms and closed every connection at once; now none is closed.
        Assert.False(await idle.IsClosedByPeerAsync(TimeSpan.FromSeconds(2)), "connections.max.idle.ms=-1 closed an idle connection");
        Assert.True(await ServedAsync(idle));
    }
}
