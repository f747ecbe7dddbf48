using System.Text;
using Confluent.Kafka;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using RecordBatch = Freshet.Protocol.Records.RecordBatch;
using CompressionType = Confluent.Kafka.CompressionType;
using Freshet.Server;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests;

/// <summary>Confluent.Kafka producing and consuming through the embedded broker, across a restart.</summary>
public sealed class ProduceConsumeTests(ITestOutputHelper output)
{
    private const int Messages = 100_000;
    private const int Partitions = 3;

    [Theory]
    [InlineData(CompressionType.None)]
    [InlineData(CompressionType.Gzip)]
    [InlineData(CompressionType.Snappy)]
    [InlineData(CompressionType.Lz4)]
    [InlineData(CompressionType.Zstd)]
    public async Task KeyedMessagesWithHeadersSurviveARestartExactlyOnceAndInOrder(CompressionType codec)
    {
        string dir = Path.Combine(Path.GetTempPath(), "freshet-pc-" + Guid.NewGuid().ToString("N")[..8]);
        var props = new Dictionary<string, string> { ["log.dirs"] = dir, ["listeners"] = "PLAINTEXT://127.0.0.1:0" };
        using var loggers = TestOutputLoggerProvider.Factory(output);
        string topic = $"pc-{codec}".ToLowerInvariant();
        try
        {
            var sent = new Dictionary<int, List<int>>();
            await using (var broker = await FreshetServer.StartEmbeddedAsync(props, loggers))
            {
                await Clients.CreateTopicAsync(broker.BootstrapServers, topic, Partitions);
                var config = Clients.ProducerConfig(broker.BootstrapServers);
                config.CompressionType = codec;
                config.BatchSize = 64 * 1024;
                using var producer = new ProducerBuilder<string, string>(config).Build();
                long errors = 0;
                for (int i = 0; i < Messages; i++)
                {
                    var m = new Message<string, string>
                    {
                        Key = $"key-{i % 1000}",
                        Value = $"value-{i}-{new string('x', i % 50)}",
                        Headers = [new Header("seq", Encoding.UTF8.GetBytes(i.ToString(System.Globalization.CultureInfo.InvariantCulture))), new Header("codec", Encoding.UTF8.GetBytes(codec.ToString()))],
                    };
                    while (true)
                    {
                        try
                        {
                            producer.Produce(topic, m, r => { if (r.Error.IsError) Interlocked.Increment(ref errors); });
                            break;
                        }
                        catch (ProduceException<string, string> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
                        {
                            producer.Poll(TimeSpan.FromMilliseconds(10));
                        }
                    }
                }
                Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(60)));
                Assert.Equal(0, Interlocked.Read(ref errors));
                await AssertStoredCodecAsync(broker.BootstrapServers, topic, codec);
            }

            // Same directory, new process-equivalent: everything acknowledged must be there.
            await using (var broker = await FreshetServer.StartEmbeddedAsync(props, loggers))
            {
                var byPartition = Clients.ReadAll(broker.BootstrapServers, topic, Partitions, TimeSpan.FromSeconds(120));
                Assert.Equal(Messages, byPartition.Values.Sum(l => l.Count));
                var seen = new HashSet<int>();
                foreach (var (partition, list) in byPartition)
                {
                    long lastOffset = -1;
                    int lastSeq = -1;
                    foreach (var cr in list)
                    {
                        Assert.True(cr.Offset.Value > lastOffset, "offsets increase");
                        lastOffset = cr.Offset.Value;
                        int seq = int.Parse(Encoding.UTF8.GetString(cr.Message.Headers.GetLastBytes("seq")), System.Globalization.CultureInfo.InvariantCulture);
                        Assert.True(seq > lastSeq, $"partition {partition}: message {seq} after {lastSeq}");
                        lastSeq = seq;
                        Assert.True(seen.Add(seq), $"message {seq} read twice");
                        Assert.Equal($"key-{seq % 1000}", Encoding.UTF8.GetString(cr.Message.Key));
                        Assert.Equal($"value-{seq}-{new string('x', seq % 50)}", Encoding.UTF8.GetString(cr.Message.Value));
                        Assert.Equal(codec.ToString(), Encoding.UTF8.GetString(cr.Message.Headers.GetLastBytes("codec")));
                    }
                }
                Assert.Equal(Messages, seen.Count);
            }
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }


    /// <summary>
    /// The batches on disk carry the codec the producer used: stored as sent. (librdkafka sends a
    /// batch uncompressed when compressing did not make it smaller, so some may be uncompressed.)
    /// </summary>
    private static async Task AssertStoredCodecAsync(string bootstrap, string topic, CompressionType codec)
    {
        await using var c = await RawKafkaClient.ConnectAsync(bootstrap);
        var f = new FetchRequest { ReplicaId = -1, MaxWaitMs = 0, MinBytes = 0, MaxBytes = 1 << 20 };
        f.Topics.Add(new() { Topic = topic, Partitions = [new() { Partition = 0, FetchOffset = 0, PartitionMaxBytes = 1 << 16 }] });
        var r = await c.RequestAsync<FetchResponse>(f, 12);
        var records = r.Responses[0].Partitions[0].Records!.Memory;
        var expected = (Freshet.Protocol.Records.CompressionType)(int)codec;
        int withCodec = 0;
        for (int pos = 0; pos < records.Length;)
        {
            var batch = new RecordBatch(records.Span[pos..]);
            Assert.Contains(batch.Compression, new[] { expected, Freshet.Protocol.Records.CompressionType.None });
            if (batch.Compression == expected) withCodec++;
            pos += batch.SizeInBytes;
        }
        Assert.True(withCodec > 0, $"no batch stored with {codec}");
    }
}
