using System.Buffers.Binary;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;
using Freshet.Server;
using Xunit.Abstractions;
using ErrorCode = Freshet.Protocol.ErrorCode;

namespace Freshet.Integration.Tests;

/// <summary>
/// Requests that name a partition, topic or resource twice, or that carry more array elements or
/// tagged fields than Kafka accepts: each is answered as Kafka answers it (an error code for the
/// repeated entry, with the connection kept; the connection closed for an undecodable request),
/// and nothing of the refused entries is applied.
/// </summary>
public sealed class DuplicateEntriesTests(ITestOutputHelper output) : IAsyncLifetime
{
    private FreshetServer _broker = null!;
    private readonly Microsoft.Extensions.Logging.ILoggerFactory _loggers = TestOutputLoggerProvider.Factory(output);

    public async Task InitializeAsync()
    {
        _broker = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string> { ["socket.request.max.bytes"] = "2097152" }, _loggers);
        await Clients.CreateTopicAsync(_broker.BootstrapServers, "d", 2);
    }

    public async Task DisposeAsync()
    {
        await _broker.DisposeAsync();
        _loggers.Dispose();
    }

    private static async Task AssertStillUsableAsync(RawKafkaClient c) =>
        Assert.Equal((short)ErrorCode.None, (await c.RequestAsync<ApiVersionsResponse>(new ApiVersionsRequest(), 0)).ErrorCode);

    [Fact]
    public async Task ListOffsetsAnswersARepeatedPartitionWithInvalidRequest()
    {
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var r = await c.RequestAsync<ListOffsetsResponse>(new ListOffsetsRequest
        {
            ReplicaId = -1,
            Topics = [new() { Name = "d", Partitions = [new() { PartitionIndex = 0, Timestamp = -1 }, new() { PartitionIndex = 1, Timestamp = -1 }, new() { PartitionIndex = 0, Timestamp = -2 }] }],
        }, 7);
        var parts = r.Topics.Single().Partitions;
        Assert.Equal([(0, (short)ErrorCode.InvalidRequest), (1, (short)ErrorCode.None), (0, (short)ErrorCode.InvalidRequest)],
            parts.Select(p => (p.PartitionIndex, p.ErrorCode)));
        await AssertStillUsableAsync(c);
    }

    [Fact]
    public async Task CreateTopicsWithAPartitionAssignedTwiceIsRefusedAndTheConnectionKept()
    {
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var r = await c.RequestAsync<CreateTopicsResponse>(new CreateTopicsRequest
        {
            TimeoutMs = 10_000,
            Topics =
            [
                new() { Name = "twice-assigned", NumPartitions = -1, ReplicationFactor = -1, Assignments = [new() { PartitionIndex = 0, BrokerIds = [1] }, new() { PartitionIndex = 0, BrokerIds = [1] }] },
                new() { Name = "fine-assigned", NumPartitions = -1, ReplicationFactor = -1, Assignments = [new() { PartitionIndex = 0, BrokerIds = [1] }] },
            ],
        }, 7);
        var bad = r.Topics.Single(t => t.Name == "twice-assigned");
        Assert.Equal((short)ErrorCode.InvalidReplicaAssignment, bad.ErrorCode);
        Assert.Contains("multiple manual partition assignments for partition 0", bad.ErrorMessage);
        Assert.Equal((short)ErrorCode.None, r.Topics.Single(t => t.Name == "fine-assigned").ErrorCode);
        var md = await c.RequestAsync<MetadataResponse>(new MetadataRequest { Topics = [new() { Name = "twice-assigned" }], AllowAutoTopicCreation = false }, 9);
        Assert.Equal((short)ErrorCode.UnknownTopicOrPartition, md.Topics.Single().ErrorCode);
    }

    /// <summary>The per-request cap on new partitions (10,000: Kafka's records per controller operation) counts explicit assignments too.</summary>
    [Fact]
    public async Task ExplicitAssignmentsCountTowardsThePartitionsPerRequestCap()
    {
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var many = Enumerable.Range(0, 10_001).Select(p => new CreateTopicsRequest.CreatableReplicaAssignment { PartitionIndex = p, BrokerIds = [1] }).ToList();
        var r = await c.RequestAsync<CreateTopicsResponse>(new CreateTopicsRequest
        {
            TimeoutMs = 10_000, ValidateOnly = true,
            Topics = [new() { Name = "too-many", NumPartitions = -1, ReplicationFactor = -1, Assignments = many }],
        }, 7);
        Assert.Equal((short)ErrorCode.PolicyViolation, r.Topics.Single().ErrorCode);
        // Two topics of 6,000 explicit partitions each: the second goes over the cap.
        r = await c.RequestAsync<CreateTopicsResponse>(new CreateTopicsRequest
        {
            TimeoutMs = 10_000, ValidateOnly = true,
            Topics =
            [
                new() { Name = "half-a", NumPartitions = -1, ReplicationFactor = -1, Assignments = [.. many.Take(6_000)] },
                new() { Name = "half-b", NumPartitions = -1, ReplicationFactor = -1, Assignments = [.. many.Take(6_000)] },
            ],
        }, 7);
        Assert.Equal((short)ErrorCode.None, r.Topics.Single(t => t.Name == "half-a").ErrorCode);
        Assert.Equal((short)ErrorCode.PolicyViolation, r.Topics.Single(t => t.Name == "half-b").ErrorCode);
    }

    [Fact]
    public async Task DeleteTopicsNamingATopicTwiceDeletesNothingOfIt()
    {
        await Clients.CreateTopicAsync(_broker.BootstrapServers, "del-twice", 1);
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var r = await c.RequestAsync<DeleteTopicsResponse>(new DeleteTopicsRequest { TimeoutMs = 10_000, Topics = [new() { Name = "del-twice" }, new() { Name = "del-twice" }] }, 6);
        var only = Assert.Single(r.Responses);
        Assert.Equal(("del-twice", (short)ErrorCode.InvalidRequest, "Duplicate topic name."), (only.Name, only.ErrorCode, only.ErrorMessage));
        var md = await c.RequestAsync<MetadataResponse>(new MetadataRequest { Topics = [new() { Name = "del-twice" }], AllowAutoTopicCreation = false }, 9);
        Assert.Equal((short)ErrorCode.None, md.Topics.Single().ErrorCode);
    }

    [Fact]
    public async Task IncrementalAlterConfigsNamingAResourceTwiceChangesNothing()
    {
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var set = new IncrementalAlterConfigsRequest.AlterableConfig { Name = "retention.ms", ConfigOperation = 0, Value = "1234567" };
        var r = await c.RequestAsync<IncrementalAlterConfigsResponse>(new IncrementalAlterConfigsRequest
        {
            Resources = [new() { ResourceType = 2, ResourceName = "d", Configs = [set] }, new() { ResourceType = 2, ResourceName = "d", Configs = [set] }],
        }, 1);
        var only = Assert.Single(r.Responses);
        Assert.Equal(((short)ErrorCode.InvalidRequest, "Duplicate resource."), (only.ErrorCode, only.ErrorMessage));
        var described = await c.RequestAsync<DescribeConfigsResponse>(new DescribeConfigsRequest
        {
            Resources = [new() { ResourceType = 2, ResourceName = "d", ConfigurationKeys = ["retention.ms"] }],
        }, 4);
        Assert.NotEqual("1234567", described.Results.Single().Configs.Single().Value);
    }

    /// <summary>
    /// A DescribeConfigs v4 (flexible) request whose key list holds 1,000,001 empty compact strings
    /// (one byte each, so the frame is real, not a lie about its length): over Kafka's array limit,
    /// the request is undecodable and the connection is closed, as Kafka closes it.
    /// </summary>
    [Fact]
    public async Task AnArrayOfMoreThanAMillionElementsClosesTheConnection()
    {
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var frame = c.Encode(new DescribeConfigsRequest { Resources = [new() { ResourceType = 2, ResourceName = "d", ConfigurationKeys = [] }] }, 4, out _);
        // Body layout at v4: resources (compact array: 1 element) | type | name | keys (compact array) | tags | flags...
        // Rebuild it with the keys array holding 1,000,001 empty strings.
        const int keys = 1_000_001;
        var body = new List<byte>();
        int headerLength = HeaderLength(frame);
        body.AddRange(frame.AsSpan(4, headerLength).ToArray());
        body.Add(2); // one resource
        body.Add(2); // resource type TOPIC
        body.Add(2); body.Add((byte)'d'); // compact string "d"
        body.AddRange(UnsignedVarInt(keys + 1));
        body.AddRange(Enumerable.Repeat((byte)1, keys)); // empty compact strings
        body.Add(0); // resource tagged fields
        body.Add(0); body.Add(0); // include synonyms, include documentation
        body.Add(0); // request tagged fields
        var bytes = new byte[4 + body.Count];
        BinaryPrimitives.WriteInt32BigEndian(bytes, body.Count);
        body.CopyTo(bytes, 4);
        await c.SendRawAsync(bytes);
        Assert.True(await c.IsClosedByPeerAsync(TimeSpan.FromSeconds(30)));

        // Just under the limit the same request is served.
        await using var ok = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var fine = await ok.RequestAsync<DescribeConfigsResponse>(new DescribeConfigsRequest
        {
            Resources = [new() { ResourceType = 2, ResourceName = "d", ConfigurationKeys = [.. Enumerable.Repeat("", 100_000)] }],
        }, 4);
        Assert.Equal((short)ErrorCode.None, fine.Results.Single().ErrorCode);
    }

    /// <summary>10,001 unknown tagged fields on a request: over Kafka's limit, the connection is closed; 10,000 are accepted.</summary>
    [Theory]
    [InlineData(10_000, false)]
    [InlineData(10_001, true)]
    public async Task MoreThanTenThousandTaggedFieldsCloseTheConnection(int fields, bool closed)
    {
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        // ApiVersions v3: client software name and version, then the request's tagged fields.
        var frame = c.Encode(new ApiVersionsRequest { ClientSoftwareName = "t", ClientSoftwareVersion = "1" }, 3, out int id);
        var body = new List<byte>(frame.AsSpan(4, frame.Length - 5).ToArray()); // all but the (empty) tagged fields
        body.AddRange(UnsignedVarInt(fields));
        for (int t = 0; t < fields; t++)
        {
            body.AddRange(UnsignedVarInt(1000 + t)); // tags this version does not know
            body.Add(0); // empty value
        }
        var bytes = new byte[4 + body.Count];
        BinaryPrimitives.WriteInt32BigEndian(bytes, body.Count);
        body.CopyTo(bytes, 4);
        await c.SendRawAsync(bytes);
        if (closed)
        {
            Assert.True(await c.IsClosedByPeerAsync(TimeSpan.FromSeconds(30)));
        }
        else
        {
            var r = await c.ReadResponseAsync<ApiVersionsResponse>(3, id);
            Assert.Equal((short)ErrorCode.None, r.ErrorCode);
        }
    }

    /// <summary>Length of the request header (v2: api key, version, correlation id, client id, tagged fields) in an encoded frame.</summary>
    private static int HeaderLength(byte[] frame)
    {
        int clientIdLength = BinaryPrimitives.ReadInt16BigEndian(frame.AsSpan(4 + 8));
        return 8 + 2 + clientIdLength + 1;
    }

    private static byte[] UnsignedVarInt(int value)
    {
        var bytes = new List<byte>();
        uint v = (uint)value;
        while (v >= 0x80)
        {
            bytes.Add((byte)(v | 0x80));
            v >>= 7;
        }
        bytes.Add((byte)v);
        return [.. bytes];
    }
}
