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

    /// <summary>The records of every batch in a fetched partition.</summary>
    private static int RecordsIn(FetchResponse.PartitionData part)
    {
        var records = part.Records!.Memory;
        int count = 0;
        for (int pos = 0; pos < records.Length; pos += RecordBatch.PeekSize(records.Span[pos..]))
            count += new RecordBatch(records.Span[pos..]).RecordsCount;
        return count;
    }

    [Fact]
    public async Task EmptyFetchWaitsMaxWaitAndReturnsEarlyWhenDataArrives()
    {
        string topic = await TopicAsync(0);
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        // No data: an empty answer once the max wait is over. The stopwatch starts before the request is
        // sent, so it contains the broker's whole wait (load only lengthens it; 50 ms are for the coarse
        // clock the broker's deadline is read on); the upper bound only says the answer comes at all.
        var sw = Stopwatch.StartNew();
        var empty = await c.RequestAsync<FetchResponse>(Fetch(topic, 0, maxWaitMs: 500, minBytes: 1), 12);
        Assert.InRange(sw.ElapsedMilliseconds, 450, 30_000);
        Assert.Equal(0, empty.Responses[0].Partitions[0].Records!.Length);
        Assert.Equal(0, empty.Responses[0].Partitions[0].HighWatermark);

        // A long poll that data ends early. The produce goes on the same connection right behind the fetch:
        // the broker starts a connection's requests in order, and a fetch is parked waiting for data before
        // the next request is read, so the records arrive while the fetch waits (no sleep needed).
        sw.Restart();
        int fetchId = await c.SendAsync(Fetch(topic, 0, maxWaitMs: 30_000, minBytes: 1), 12);
        int produceId = await c.SendAsync(BadInputTests.ProduceOf(topic, BadInputTests.Batch(3)), 9);
        var got = await c.ReadResponseAsync<FetchResponse>(12, fetchId, TimeSpan.FromSeconds(60));
        long ms = sw.ElapsedMilliseconds;
        var produced = await c.ReadResponseAsync<ProduceResponse>(9, produceId);
        Assert.Equal((short)ErrorCode.None, produced.Responses[0].PartitionResponses[0].ErrorCode);
        // Answered with the records produced after it was sent, and woken by them: well before its 30 s max wait.
        Assert.True(ms < 20_000, $"fetch returned after {ms} ms");
        var part = got.Responses[0].Partitions[0];
        Assert.Equal(3, part.HighWatermark);
        Assert.Equal(0, part.LogStartOffset);
        Assert.Equal(3, new RecordBatch(part.Records!.Memory.Span).RecordsCount);
    }

    [Fact]
    public async Task MinBytesHoldsTheAnswerUntilEnoughDataOrTimeout()
    {
        string topic = await TopicAsync(1); // one batch of 10 records, about 1.3 KB
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        // A fetch asking for 8 KB, then (on the same connection, so it is parked first) a small batch that
        // still leaves it short and a large one that is enough.
        var sw = Stopwatch.StartNew();
        int fetchId = await c.SendAsync(Fetch(topic, 0, maxWaitMs: 30_000, minBytes: 8_000), 12);
        int small = await c.SendAsync(BadInputTests.ProduceOf(topic, BadInputTests.Batch(3)), 9);
        int large = await c.SendAsync(BadInputTests.ProduceOf(topic, BadInputTests.Batch(100, valueSize: 100)), 9);
        var r = await c.ReadResponseAsync<FetchResponse>(12, fetchId, TimeSpan.FromSeconds(60));
        long ms = sw.ElapsedMilliseconds;
        foreach (int id in new[] { small, large })
            Assert.Equal((short)ErrorCode.None, (await c.ReadResponseAsync<ProduceResponse>(9, id)).Responses[0].PartitionResponses[0].ErrorCode);
        // The answer was held past the first batch (there when the fetch came) until min.bytes was reached:
        // it holds all three batches, and came with the large one, well before its 30 s max wait.
        Assert.Equal(10 + 3 + 100, RecordsIn(r.Responses[0].Partitions[0]));
        Assert.True(ms < 20_000, $"fetch returned after {ms} ms");

        // Never enough bytes: the answer comes when the max wait is over, with what there is.
        var timedOut = await c.RequestAsync<FetchResponse>(Fetch(topic, 0, maxWaitMs: 500, minBytes: 1 << 20), 12, TimeSpan.FromSeconds(30));
        Assert.Equal((short)ErrorCode.None, timedOut.Responses[0].Partitions[0].ErrorCode);
        Assert.Equal(10 + 3 + 100, RecordsIn(timedOut.Responses[0].Partitions[0]));
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
