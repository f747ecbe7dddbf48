using System.Net;
using System.Net.Sockets;
using Freshet.Network;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Server.Tests;

/// <summary>The client nodes use to talk to each other, against a real broker and against a peer that misbehaves.</summary>
public sealed class NodeClientTests
{
    private static NodeClient Client((string, int)? endpoint, int requestTimeoutMs = 30_000) =>
        new(_ => endpoint, new NodeClientOptions { ClientId = "node-client-test", RequestTimeoutMs = requestTimeoutMs, ReconnectBackoffMs = 10 },
            NullLogger<NodeClient>.Instance);

    private static (string, int) Split(string bootstrap)
    {
        int colon = bootstrap.LastIndexOf(':');
        return (bootstrap[..colon], int.Parse(bootstrap[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task PipelinedRequestsGetTheirOwnResponses()
    {
        await using var server = await FreshetServer.StartEmbeddedAsync();
        await using var client = Client(Split(server.BootstrapServers));
        var metadata = await client.SendAsync<MetadataResponse>(1, new MetadataRequest { Topics = null }, 12, CancellationToken.None);
        Assert.Equal(server.ClusterId, metadata.ClusterId);
        // Many requests of different APIs and versions in flight on one connection at once.
        var tasks = Enumerable.Range(0, 200).Select(i => i % 2 == 0
            ? (Task<short>)client.SendAsync<ApiVersionsResponse>(1, new ApiVersionsRequest { ClientSoftwareName = "t", ClientSoftwareVersion = "1" }, 3, CancellationToken.None)
                .ContinueWith(t => (short)t.Result.ApiKeys.Count, TaskScheduler.Default)
            : client.SendAsync<MetadataResponse>(1, new MetadataRequest { Topics = [] }, (short)(i % 13), CancellationToken.None)
                .ContinueWith(t => (short)-t.Result.Brokers.Count, TaskScheduler.Default)).ToList();
        var results = await Task.WhenAll(tasks);
        for (int i = 0; i < results.Length; i++)
        {
            if (i % 2 == 0) Assert.True(results[i] > 10, $"ApiVersions response {i} lists {results[i]} APIs");
            else Assert.Equal(-1, results[i]);
        }
    }

    /// <summary>
    /// Requests sent while the first connection to a node is still being opened wait for that connect
    /// (and share its connection); they used to find the half-open connection and fail with a
    /// NullReferenceException, which callers such as Raft treated as no answer.
    /// </summary>
    [Fact]
    public async Task RequestsSentWhileTheFirstConnectIsUnderWayWaitForIt()
    {
        await using var server = await FreshetServer.StartEmbeddedAsync();
        await using var client = Client(Split(server.BootstrapServers));
        var tasks = Enumerable.Range(0, 50)
            .Select(_ => client.SendAsync<ApiVersionsResponse>(1, new ApiVersionsRequest { ClientSoftwareName = "t", ClientSoftwareVersion = "1" }, 3, CancellationToken.None))
            .ToList();
        Assert.All(await Task.WhenAll(tasks), r => Assert.Equal(0, r.ErrorCode));

        // A node that cannot be reached fails every one of them the same way.
        using var closed = new TcpListener(IPAddress.Loopback, 0);
        closed.Start();
        int port = ((IPEndPoint)closed.LocalEndpoint).Port;
        closed.Stop();
        await using var unreachable = Client(("127.0.0.1", port));
        var failing = Enumerable.Range(0, 50)
            .Select(_ => unreachable.SendAsync<ApiVersionsResponse>(1, new ApiVersionsRequest { ClientSoftwareName = "t", ClientSoftwareVersion = "1" }, 3, CancellationToken.None))
            .ToList();
        foreach (var t in failing) await Assert.ThrowsAsync<NodeUnreachableException>(() => t);
    }

    [Fact]
    public async Task LeasedFetchResponsesCarryTheRecordsAndMixWithOrdinaryResponses()
    {
        await using var server = await FreshetServer.StartEmbeddedAsync();
        await using var client = Client(Split(server.BootstrapServers));
        var created = server.Controller.CreateTopics([new Freshet.Metadata.Controller.NewTopic("leased", 1, 1, null, new Dictionary<string, string?>())], false);
        Assert.Equal(Freshet.Protocol.ErrorCode.None, created[0].Error);
        var batches = new List<byte[]>();
        for (int b = 0; b < 20; b++)
        {
            using var builder = new Freshet.Protocol.Records.RecordBatchBuilder();
            for (int i = 0; i < 50; i++) builder.Append(1_700_000_000_000, null, System.Text.Encoding.UTF8.GetBytes($"value-{b}-{i}-" + new string('x', 100)));
            var produce = new ProduceRequest { Acks = 1, TimeoutMs = 5000 };
            produce.TopicData.Add(new() { Name = "leased", PartitionData = [new() { Index = 0, Records = new Freshet.Protocol.Wire.RecordSet(builder.Build()) }] });
            var r = await client.SendAsync<ProduceResponse>(1, produce, 9, CancellationToken.None);
            Assert.Equal(0, r.Responses[0].PartitionResponses[0].ErrorCode);
        }
        var expected = server.Logs.GetLog(new Freshet.Protocol.TopicPartition("leased", 0))!.ReadBatches(0).SelectMany(b => b).ToArray();

        FetchRequest Fetch() => new()
        {
            MaxWaitMs = 0, MinBytes = 1, MaxBytes = 10 << 20,
            Topics = [new() { Topic = "leased", Partitions = [new() { Partition = 0, FetchOffset = 0, PartitionMaxBytes = 10 << 20 }] }],
        };
        // Leased fetches interleaved with ordinary requests on the one connection: each gets its own bytes.
        var leased = Enumerable.Range(0, 20).Select(_ => client.SendLeasedAsync<FetchResponse>(1, Fetch(), 12, CancellationToken.None)).ToList();
        var plain = Enumerable.Range(0, 20).Select(_ => client.SendAsync<ApiVersionsResponse>(1, new ApiVersionsRequest { ClientSoftwareName = "t", ClientSoftwareVersion = "1" }, 3, CancellationToken.None)).ToList();
        foreach (var t in leased)
        {
            using var lease = await t;
            var records = lease.Response.Responses.Single().Partitions.Single().Records!;
            Assert.Equal(expected, records.Memory.ToArray());
        }
        Assert.All(await Task.WhenAll(plain), r => Assert.Equal(0, r.ErrorCode));
        // A buffer back in the pool is reused by the next lease; the records seen through it are the new response's.
        for (int i = 0; i < 5; i++)
        {
            using var lease = await client.SendLeasedAsync<FetchResponse>(1, Fetch(), 12, CancellationToken.None);
            Assert.Equal(expected, lease.Response.Responses.Single().Partitions.Single().Records!.Memory.ToArray());
        }
    }

    [Fact]
    public async Task AnUnknownOrClosedNodeIsUnreachable()
    {
        await using var unknown = Client(null);
        var e = await Assert.ThrowsAsync<NodeUnreachableException>(() =>
            unknown.SendAsync<ApiVersionsResponse>(7, new ApiVersionsRequest(), 0, CancellationToken.None));
        Assert.Contains("node 7", e.Message, StringComparison.Ordinal);

        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop(); // nothing listens there now
        await using var closed = Client(("127.0.0.1", port));
        await Assert.ThrowsAsync<NodeUnreachableException>(() =>
            closed.SendAsync<ApiVersionsResponse>(2, new ApiVersionsRequest(), 0, CancellationToken.None));
    }

    [Fact]
    public async Task ASilentPeerTimesOutAndTheNextRequestReconnects()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var accepted = new List<Socket>();
        var accepting = Task.Run(async () =>
        {
            for (int i = 0; i < 2; i++) accepted.Add(await listener.AcceptSocketAsync());
        });
        await using var client = Client(("127.0.0.1", port), requestTimeoutMs: 300);
        var e = await Assert.ThrowsAsync<NodeUnreachableException>(() =>
            client.SendAsync<ApiVersionsResponse>(3, new ApiVersionsRequest(), 0, CancellationToken.None));
        Assert.Contains("timed out", e.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<NodeUnreachableException>(() =>
            client.SendAsync<ApiVersionsResponse>(3, new ApiVersionsRequest(), 0, CancellationToken.None));
        await accepting.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(2, accepted.Count); // the timed-out connection was closed and a new one opened
        foreach (var s in accepted) s.Dispose();
        listener.Stop();
    }

    [Fact]
    public async Task APeerThatDropsTheConnectionFailsWhatIsInFlight()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var dropping = Task.Run(async () =>
        {
            using var s = await listener.AcceptSocketAsync();
            var buf = new byte[4];
            await s.ReceiveAsync(buf); // a request arrives; hang up without answering
        });
        await using var client = Client(("127.0.0.1", port));
        var e = await Assert.ThrowsAsync<NodeUnreachableException>(() =>
            client.SendAsync<ApiVersionsResponse>(4, new ApiVersionsRequest(), 0, CancellationToken.None));
        Assert.Contains("dropped", e.Message, StringComparison.Ordinal);
        await dropping;
        listener.Stop();
    }
}
