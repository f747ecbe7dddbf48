using System.Buffers.Binary;
using System.Text;
using Confluent.Kafka;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol;
using ErrorCode = Freshet.Protocol.ErrorCode;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using Freshet.Server;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests;

/// <summary>
/// Malformed, truncated, oversized and unknown requests, corrupt batches and clients that vanish:
/// each gets Kafka's answer (an error code, or the connection closed where Kafka closes it),
/// nothing is stored from a bad request, and other clients carry on.
/// </summary>
public sealed class BadInputTests(ITestOutputHelper output) : IAsyncLifetime
{
    private FreshetServer _broker = null!;
    private readonly Microsoft.Extensions.Logging.ILoggerFactory _loggers = TestOutputLoggerProvider.Factory(output);

    public async Task InitializeAsync() =>
        _broker = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string> { ["socket.request.max.bytes"] = "1048576" }, _loggers);

    public async Task DisposeAsync()
    {
        await _broker.DisposeAsync();
        _loggers.Dispose();
    }

    private static byte[] Frame(short apiKey, short version, int correlationId, ReadOnlySpan<byte> rest)
    {
        var f = new byte[4 + 8 + rest.Length];
        BinaryPrimitives.WriteInt32BigEndian(f, 8 + rest.Length);
        BinaryPrimitives.WriteInt16BigEndian(f.AsSpan(4), apiKey);
        BinaryPrimitives.WriteInt16BigEndian(f.AsSpan(6), version);
        BinaryPrimitives.WriteInt32BigEndian(f.AsSpan(8), correlationId);
        rest.CopyTo(f.AsSpan(12));
        return f;
    }

    /// <summary>A real client still produces and reads back through the broker.</summary>
    private async Task AssertOtherClientsWorkAsync()
    {
        string topic = "healthy-" + Guid.NewGuid().ToString("N")[..6];
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, 1);
        using (var p = new ProducerBuilder<Null, string>(Clients.ProducerConfig(_broker.BootstrapServers)).Build())
        {
            var r = await p.ProduceAsync(topic, new Message<Null, string> { Value = "still here" });
            Assert.Equal(PersistenceStatus.Persisted, r.Status);
        }
        var all = Clients.ReadAll(_broker.BootstrapServers, topic, 1, TimeSpan.FromSeconds(30));
        Assert.Equal("still here", Encoding.UTF8.GetString(Assert.Single(all[0]).Message.Value));
    }

    [Fact]
    public async Task MalformedBodyClosesOnlyThatConnection()
    {
        await using var bystander = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        await using var bad = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        // Metadata v1 with a client id, then a topic array claiming 1,000,000 entries in 4 bytes.
        var body = new byte[] { 0, 3, (byte)'b', (byte)'a', (byte)'d', 0x00, 0x0F, 0x42, 0x40 };
        await bad.SendRawAsync(Frame((short)ApiKey.Metadata, 1, 7, body));
        Assert.True(await bad.IsClosedByPeerAsync(TimeSpan.FromSeconds(10)));

        var ok = await bystander.RequestAsync<ApiVersionsResponse>(new ApiVersionsRequest(), 0);
        Assert.Equal((short)ErrorCode.None, ok.ErrorCode);
        await AssertOtherClientsWorkAsync();
    }

    [Fact]
    public async Task UnknownApiKeyAndUnsupportedVersionCloseTheConnection()
    {
        await using (var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers))
        {
            await c.SendRawAsync(Frame(999, 0, 1, [0, 0]));
            Assert.True(await c.IsClosedByPeerAsync(TimeSpan.FromSeconds(10)));
        }
        await using (var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers))
        {
            await c.SendRawAsync(Frame((short)ApiKey.Metadata, 99, 1, [0, 0]));
            Assert.True(await c.IsClosedByPeerAsync(TimeSpan.FromSeconds(10)));
        }
        await AssertOtherClientsWorkAsync();
    }

    [Fact]
    public async Task NewerApiVersionsGetsVersionZeroAnswerWithUnsupportedVersion()
    {
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        // ApiVersions v99 with a flexible (v2) header: client id, empty tagged fields; body unknown to us.
        var rest = new byte[] { 0, 1, (byte)'x', 0, 0, 0 };
        await c.SendRawAsync(Frame((short)ApiKey.ApiVersions, 99, 42, rest));
        var (id, body) = await c.ReadFrameAsync((short)ApiKey.ApiVersions, 0);
        Assert.Equal(42, id);
        var response = MessageExtensions.Parse<ApiVersionsResponse>(body, 0);
        Assert.Equal((short)ErrorCode.UnsupportedVersion, response.ErrorCode);
        var apiVersions = response.ApiKeys.Single(k => k.ApiKey == (short)ApiKey.ApiVersions);
        Assert.Equal(4, apiVersions.MaxVersion);
        // The connection stays usable: the client retries at a version we serve.
        var again = await c.RequestAsync<ApiVersionsResponse>(new ApiVersionsRequest { ClientSoftwareName = "t", ClientSoftwareVersion = "1" }, 3);
        Assert.Equal((short)ErrorCode.None, again.ErrorCode);
    }

    [Fact]
    public async Task OversizedAndNegativeSizedRequestsCloseTheConnection()
    {
        await using (var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers))
        {
            var size = new byte[4];
            BinaryPrimitives.WriteInt32BigEndian(size, 1048576 + 1); // socket.request.max.bytes + 1
            await c.SendRawAsync(size);
            Assert.True(await c.IsClosedByPeerAsync(TimeSpan.FromSeconds(10)));
        }
        await using (var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers))
        {
            await c.SendRawAsync([0xFF, 0xFF, 0xFF, 0xF0]);
            Assert.True(await c.IsClosedByPeerAsync(TimeSpan.FromSeconds(10)));
        }
        await AssertOtherClientsWorkAsync();
    }

    [Fact]
    public async Task TruncatedFrameWaitsAndAClientVanishingMidRequestStoresNothing()
    {
        string topic = "vanish-" + Guid.NewGuid().ToString("N")[..6];
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, 1);
        await using (var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers))
        {
            var request = ProduceOf(topic, Batch(10));
            var frame = c.Encode(request, 9, out _);
            // Half the frame, then silence: the broker waits for the rest without blocking anyone.
            await c.SendRawAsync(frame[..(frame.Length / 2)]);
            Assert.False(await c.IsClosedByPeerAsync(TimeSpan.FromMilliseconds(500)));
            await AssertOtherClientsWorkAsync();
        }
        // The client has gone with half a produce request sent: nothing of it may appear. Once the broker has
        // no connection left, it has read that one to its end (the event, not a sleep).
        for (var sw = System.Diagnostics.Stopwatch.StartNew(); _broker.ConnectionCount > 0; await Task.Delay(50))
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(30), $"{_broker.ConnectionCount} connections still open");
        using var admin = Clients.Admin(_broker.BootstrapServers);
        using var consumer = new ConsumerBuilder<byte[], byte[]>(Clients.ConsumerConfig(_broker.BootstrapServers)).Build();
        var w = consumer.QueryWatermarkOffsets(new Confluent.Kafka.TopicPartition(topic, 0), TimeSpan.FromSeconds(10));
        Assert.Equal(0, w.High.Value);
    }

    [Fact]
    public async Task CorruptBatchIsRefusedAndNothingOfItIsStored()
    {
        string topic = "corrupt-" + Guid.NewGuid().ToString("N")[..6];
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, 1);
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);

        var good = Batch(5);
        var flipped = (byte[])good.Clone();
        flipped[^3] ^= 0x40; // a byte inside the last record: the CRC no longer matches
        var r1 = await c.RequestAsync<ProduceResponse>(ProduceOf(topic, flipped), 9);
        Assert.Equal((short)ErrorCode.CorruptMessage, r1.Responses[0].PartitionResponses[0].ErrorCode);

        var badCount = (byte[])good.Clone();
        BinaryPrimitives.WriteInt32BigEndian(badCount.AsSpan(RecordBatch.RecordsCountOffset), 6);
        RecordBatch.UpdateCrc(badCount); // a well-checksummed batch that lies about its record count
        var r2 = await c.RequestAsync<ProduceResponse>(ProduceOf(topic, badCount), 9);
        Assert.Equal((short)ErrorCode.CorruptMessage, r2.Responses[0].PartitionResponses[0].ErrorCode);

        var listed = await c.RequestAsync<ListOffsetsResponse>(LatestOffset(topic), 7);
        Assert.Equal(0, listed.Topics[0].Partitions[0].Offset);

        var r3 = await c.RequestAsync<ProduceResponse>(ProduceOf(topic, good), 9);
        Assert.Equal((short)ErrorCode.None, r3.Responses[0].PartitionResponses[0].ErrorCode);
        Assert.Equal(0, r3.Responses[0].PartitionResponses[0].BaseOffset);
        listed = await c.RequestAsync<ListOffsetsResponse>(LatestOffset(topic), 7);
        Assert.Equal(5, listed.Topics[0].Partitions[0].Offset);
    }

    [Fact]
    public async Task BatchOverMaxMessageBytesGetsMessageTooLarge()
    {
        string topic = "large-" + Guid.NewGuid().ToString("N")[..6];
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, 1, new() { ["max.message.bytes"] = "2000" });
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var big = Batch(1, valueSize: 3000);
        var r = await c.RequestAsync<ProduceResponse>(ProduceOf(topic, big), 9);
        Assert.Equal((short)ErrorCode.MessageTooLarge, r.Responses[0].PartitionResponses[0].ErrorCode);

        // Confluent.Kafka sees the same refusal as a delivery error.
        var config = Clients.ProducerConfig(_broker.BootstrapServers);
        config.MessageMaxBytes = 10_000;
        using var p = new ProducerBuilder<Null, byte[]>(config).Build();
        var e = await Assert.ThrowsAsync<ProduceException<Null, byte[]>>(() => p.ProduceAsync(topic, new Message<Null, byte[]> { Value = new byte[3000] }));
        Assert.Equal(Confluent.Kafka.ErrorCode.MsgSizeTooLarge, e.Error.Code);
        var listed = await c.RequestAsync<ListOffsetsResponse>(LatestOffset(topic), 7);
        Assert.Equal(0, listed.Topics[0].Partitions[0].Offset);
    }

    [Fact]
    public async Task ProduceToAMissingTopicOrPartitionGetsUnknownTopicOrPartition()
    {
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var r = await c.RequestAsync<ProduceResponse>(ProduceOf("no-such-topic", Batch(1)), 9);
        Assert.Equal((short)ErrorCode.UnknownTopicOrPartition, r.Responses[0].PartitionResponses[0].ErrorCode);
        var bad = new ProduceRequest { Acks = 7, TimeoutMs = 1000 };
        bad.TopicData.Add(new() { Name = "x", PartitionData = [new() { Index = 0, Records = new RecordSet(Batch(1)) }] });
        var r2 = await c.RequestAsync<ProduceResponse>(bad, 9);
        Assert.Equal((short)ErrorCode.InvalidRequiredAcks, r2.Responses[0].PartitionResponses[0].ErrorCode);
    }

    internal static byte[] Batch(int records, int valueSize = 16)
    {
        using var b = new RecordBatchBuilder();
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        for (int i = 0; i < records; i++) b.Append(now, Encoding.UTF8.GetBytes($"k{i}"), new byte[valueSize]);
        return b.Build();
    }

    internal static ProduceRequest ProduceOf(string topic, byte[] batch, short acks = -1)
    {
        var request = new ProduceRequest { Acks = acks, TimeoutMs = 10_000 };
        request.TopicData.Add(new() { Name = topic, PartitionData = [new() { Index = 0, Records = new RecordSet(batch) }] });
        return request;
    }

    internal static ListOffsetsRequest LatestOffset(string topic)
    {
        var r = new ListOffsetsRequest { ReplicaId = -1 };
        r.Topics.Add(new() { Name = topic, Partitions = [new() { PartitionIndex = 0, Timestamp = -1 }] });
        return r;
    }
}
