using System.Diagnostics;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;
using Freshet.Server;
using Xunit.Abstractions;
using ErrorCode = Freshet.Protocol.ErrorCode;

namespace Freshet.Integration.Tests;

/// <summary>Fetch semantics at the protocol level: long polling, byte limits, offsets out of range.</summary>
public sealed class FetchTests(ITestOutputHelper output) : IAsyncLifetime
{
    private FreshetServer _broker = null!;
    private readonly Microsoft.Extensions.Logging.ILoggerFactory _loggers = TestOutputLoggerProvider.Factory(output);

    public async Task InitializeAsync() => _broker = await FreshetServer.StartEmbeddedAsync(null, _loggers);

    public async Task DisposeAsync()
    {
        await _broker.DisposeAsync();
        _loggers.Dispose();
    }

    private static FetchRequest Fetch(string topic, long offset, int maxWaitMs, int minBytes, int partitionMaxBytes = 1 << 20, int maxBytes = 50 << 20)
    {
        var f = new FetchRequest { ReplicaId = -1, MaxWaitMs = maxWaitMs, MinBytes = minBytes, MaxBytes = maxBytes };
        f.Topics.Add(new() { Topic = topic, Partitions = [new() { Partition = 0, FetchOffset = offset, PartitionMaxBytes = partitionMaxBytes }] });
        return f;
    }

    private async Task<string> TopicAsync(int batches, int recordsPerBatch = 10)
    {
        string topic = "fetch-" + Guid.NewGuid().ToString("N")[..6];
        await Clients.CreateTopicAsync(_broker.BootstrapServers, topic, 1);
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        for (int i = 0; i < batches; i++)
        {
            var r = await c.RequestAsync<ProduceResponse>(BadInputTests.ProduceOf(topic, BadInputTests.Batch(recordsPerBatch, valueSize: 100)), 9);
            Assert.Equal((short)ErrorCode.None, r.Responses[0].PartitionResponses[0].ErrorCode);
        }
        return topic;
    }

    [Fact]
    public async Task EmptyFetchWaitsMaxWaitAndReturnsEarlyWhenDataArrives()
    {
        string topic = await TopicAsync(0);
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var sw = Stopwatch.StartNew();
        var empty = await c.RequestAsync<FetchResponse>(Fetch(topic, 0, maxWaitMs: 400, minBytes: 1), 12);
        Assert.InRange(sw.ElapsedMilliseconds, 350, 3000);
        Assert.Equal(0, empty.Responses[0].Partitions[0].Records!.Length);
        Assert.Equal(0, empty.Responses[0].Partitions[0].HighWatermark);

        // A long poll that data ends early.
        sw.Restart();
        int id = await c.SendAsync(Fetch(topic, 0, maxWaitMs: 10_000, minBytes: 1), 12);
        await Task.Delay(200);
        await using (var p = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers))
            await p.RequestAsync<ProduceResponse>(BadInputTests.ProduceOf(topic, BadInputTests.Batch(3)), 9);
        var got = await c.ReadResponseAsync<FetchResponse>(12, id);
        Assert.True(sw.ElapsedMilliseconds < 5000, $"fetch returned after {sw.ElapsedMilliseconds} ms");
        var part = got.Responses[0].Partitions[0];
        Assert.Equal(3, part.HighWatermark);
        Assert.Equal(0, part.LogStartOffset);
        Assert.Equal(3, new RecordBatch(part.Records!.Memory.Span).RecordsCount);
    }

    [Fact]
    public async Task MinBytesHoldsTheAnswerUntilEnoughDataOrTimeout()
    {
        string topic = await TopicAsync(1);
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var sw = Stopwatch.StartNew();
        var r = await c.RequestAsync<FetchResponse>(Fetch(topic, 0, maxWaitMs: 500, minBytes: 1 << 20), 12);
        Assert.InRange(sw.ElapsedMilliseconds, 450, 5000); // not enough bytes: waits the full max wait
        Assert.True(r.Responses[0].Partitions[0].Records!.Length > 0); // and then returns what there is
    }

    [Fact]
    public async Task PartitionMaxBytesLimitsWholeBatchesButTheFirstBatchAlwaysComes()
    {
        string topic = await TopicAsync(10); // 10 batches of ~1.3 KB
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var small = await c.RequestAsync<FetchResponse>(Fetch(topic, 0, 0, 0, partitionMaxBytes: 3000), 12);
        var records = small.Responses[0].Partitions[0].Records!.Memory;
        int batches = 0;
        for (int pos = 0; pos < records.Length; pos += RecordBatch.PeekSize(records.Span[pos..])) batches++;
        Assert.Equal(2, batches); // whole batches only, within 3000 bytes
        var tiny = await c.RequestAsync<FetchResponse>(Fetch(topic, 25, 0, 0, partitionMaxBytes: 10), 12);
        var first = new RecordBatch(tiny.Responses[0].Partitions[0].Records!.Memory.Span);
        Assert.Equal(20, first.BaseOffset); // the batch holding offset 25, though larger than the limit
        Assert.Equal(first.SizeInBytes, tiny.Responses[0].Partitions[0].Records!.Length);
    }

    [Fact]
    public async Task OffsetsBeyondTheLogGetOffsetOutOfRange()
    {
        string topic = await TopicAsync(2);
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var beyond = await c.RequestAsync<FetchResponse>(Fetch(topic, 21, 0, 0), 12);
        Assert.Equal((short)ErrorCode.OffsetOutOfRange, beyond.Responses[0].Partitions[0].ErrorCode);
        var negative = await c.RequestAsync<FetchResponse>(Fetch(topic, -5, 0, 0), 12);
        Assert.Equal((short)ErrorCode.OffsetOutOfRange, negative.Responses[0].Partitions[0].ErrorCode);
        var atEnd = await c.RequestAsync<FetchResponse>(Fetch(topic, 20, 0, 0), 12);
        Assert.Equal((short)ErrorCode.None, atEnd.Responses[0].Partitions[0].ErrorCode);
        Assert.Equal(0, atEnd.Responses[0].Partitions[0].Records!.Length);
    }

    [Fact]
    public async Task FetchByTopicIdAndUnknownTopicIds()
    {
        string topic = await TopicAsync(1);
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var md = await c.RequestAsync<MetadataResponse>(new MetadataRequest { Topics = [new() { Name = topic }] }, 12);
        var id = md.Topics[0].TopicId;
        var f = new FetchRequest { ReplicaId = -1, MaxWaitMs = 0, MinBytes = 0, MaxBytes = 1 << 20 };
        f.Topics.Add(new() { TopicId = id, Partitions = [new() { Partition = 0, FetchOffset = 0, PartitionMaxBytes = 1 << 20 }] });
        f.Topics.Add(new() { TopicId = Freshet.Protocol.Wire.Uuid.Random(), Partitions = [new() { Partition = 0, FetchOffset = 0, PartitionMaxBytes = 1 << 20 }] });
        var r = await c.RequestAsync<FetchResponse>(f, 16);
        Assert.Equal(id, r.Responses[0].TopicId);
        Assert.Equal(10, new RecordBatch(r.Responses[0].Partitions[0].Records!.Memory.Span).RecordsCount);
        Assert.Equal((short)ErrorCode.UnknownTopicId, r.Responses[1].Partitions[0].ErrorCode);
    }
}
