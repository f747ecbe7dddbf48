using System.Text;
using Confluent.Kafka;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using Freshet.Server;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests;

/// <summary>
/// A batch with keyless records sent to a compacted topic is refused whole with INVALID_RECORD,
/// each keyless record named in the response (Produce v8+ RecordErrors, KIP-467), and nothing of
/// it is stored.
/// </summary>
public sealed class CompactedKeylessTests(ITestOutputHelper output) : IAsyncLifetime
{
    private FreshetServer _broker = null!;
    private readonly Microsoft.Extensions.Logging.ILoggerFactory _loggers = TestOutputLoggerProvider.Factory(output);

    public async Task InitializeAsync()
    {
        _broker = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string>(), _loggers);
        await Clients.CreateTopicAsync(_broker.BootstrapServers, "compacted", 1, new() { ["cleanup.policy"] = "compact" });
    }

    public async Task DisposeAsync()
    {
        await _broker.DisposeAsync();
        _loggers.Dispose();
    }

    /// <summary>
    /// Confluent.Kafka (librdkafka) with one batch of six records, two without a key: librdkafka
    /// fails the keyless ones with INVALID_RECORD and, as the whole batch was refused, the keyed
    /// ones of that batch with its local error _INVALID_DIFFERENT_RECORD ("a different record in the
    /// batch was invalid"), without retrying them. The log holds nothing of the batch; a later
    /// batch of keyed records is stored.
    /// </summary>
    [Fact]
    public async Task KeylessRecordsFailWithInvalidRecordAndNothingOfTheirBatchIsStored()
    {
        var config = Clients.ProducerConfig(_broker.BootstrapServers);
        config.LingerMs = 1000; // one batch for all six
        config.BatchNumMessages = 6;
        using var producer = new ProducerBuilder<string?, string>(config).Build();
        string?[] keys = ["k0", null, "k2", "k3", null, "k5"];
        var reports = new DeliveryReport<string?, string>?[keys.Length];
        using var done = new CountdownEvent(keys.Length);
        for (int i = 0; i < keys.Length; i++)
        {
            int n = i;
            producer.Produce(new TopicPartition("compacted", 0), new Message<string?, string> { Key = keys[i], Value = "v" + i }, r =>
            {
                reports[n] = r;
                done.Signal();
            });
        }
        Assert.True(done.Wait(TimeSpan.FromSeconds(60)), "not every delivery report arrived");
        for (int i = 0; i < keys.Length; i++) output.WriteLine($"record {i} key={keys[i] ?? "null"}: {reports[i]!.Error.Code} {reports[i]!.Error.Reason} {reports[i]!.Status}");
        Assert.All(new[] { 1, 4 }, i => Assert.Equal(ErrorCode.InvalidRecord, reports[i]!.Error.Code));
        Assert.All(new[] { 0, 2, 3, 5 }, i => Assert.Equal(ErrorCode.Local_InvalidDifferentRecord, reports[i]!.Error.Code));
        Assert.All(reports, r => Assert.Equal(PersistenceStatus.NotPersisted, r!.Status));

        // A batch of keyed records goes in; the log holds it alone.
        var ok = await producer.ProduceAsync("compacted", new Message<string?, string> { Key = "k9", Value = "v9" });
        Assert.Equal(0, ok.Offset.Value);
        var all = Clients.ReadAll(_broker.BootstrapServers, "compacted", 1, TimeSpan.FromSeconds(30));
        Assert.Equal(["k9"], all[0].Select(m => Encoding.UTF8.GetString(m.Message.Key)));
    }

    /// <summary>The raw answer: INVALID_RECORD, a record error per keyless record (its index in the batch), and a message.</summary>
    [Fact]
    public async Task TheResponseNamesEachKeylessRecordByItsIndexInTheBatch()
    {
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        using var builder = new RecordBatchBuilder(Freshet.Protocol.Records.CompressionType.Lz4);
        builder.Append(now, "a"u8.ToArray(), "1"u8.ToArray());
        builder.Append(now, null, "2"u8.ToArray());
        builder.Append(now, "c"u8.ToArray(), "3"u8.ToArray());
        builder.Append(now, null, "4"u8.ToArray());
        var batch = builder.Build();
        var r = await c.RequestAsync<ProduceResponse>(new ProduceRequest
        {
            Acks = -1, TimeoutMs = 10_000,
            TopicData = [new() { Name = "compacted", PartitionData = [new() { Index = 0, Records = new RecordSet(batch) }] }],
        }, 9);
        var p = r.Responses.Single().PartitionResponses.Single();
        Assert.Equal((short)Freshet.Protocol.ErrorCode.InvalidRecord, p.ErrorCode);
        Assert.Equal([1, 3], p.RecordErrors.Select(e => e.BatchIndex));
        Assert.All(p.RecordErrors, e => Assert.Contains("without key", e.BatchIndexErrorMessage));
        Assert.Contains("2 record errors", p.ErrorMessage);
        Assert.Equal(-1, p.BaseOffset);
        var lo = await c.RequestAsync<ListOffsetsResponse>(new ListOffsetsRequest
        {
            ReplicaId = -1, Topics = [new() { Name = "compacted", Partitions = [new() { PartitionIndex = 0, Timestamp = -1 }] }],
        }, 7);
        Assert.Equal(0, lo.Topics.Single().Partitions.Single().Offset);
    }
}
