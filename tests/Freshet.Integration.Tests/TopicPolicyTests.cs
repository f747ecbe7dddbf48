using Confluent.Kafka;
using Freshet.Integration.Tests.Support;
using Freshet.Server;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests;

/// <summary>Per-topic policies a client can observe: LogAppendTime stamping and retention run by the broker in the background.</summary>
public sealed class TopicPolicyTests(ITestOutputHelper output)
{
    [Fact]
    public async Task LogAppendTimeTopicsCarryTheBrokersTimestamp()
    {
        using var loggers = TestOutputLoggerProvider.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(null, loggers);
        await Clients.CreateTopicAsync(broker.BootstrapServers, "appendtime", 1, new() { ["message.timestamp.type"] = "LogAppendTime" });
        await Clients.CreateTopicAsync(broker.BootstrapServers, "createtime", 1);
        var old = new Timestamp(DateTime.UtcNow.AddDays(-3));
        long before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        using (var p = new ProducerBuilder<Null, string>(Clients.ProducerConfig(broker.BootstrapServers)).Build())
        {
            var a = await p.ProduceAsync("appendtime", new Message<Null, string> { Value = "x", Timestamp = old });
            Assert.Equal(TimestampType.LogAppendTime, a.Timestamp.Type); // the produce response carries the broker's time
            await p.ProduceAsync("createtime", new Message<Null, string> { Value = "x", Timestamp = old });
        }
        long after = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var stamped = Assert.Single(Clients.ReadAll(broker.BootstrapServers, "appendtime", 1, TimeSpan.FromSeconds(30))[0]);
        Assert.Equal(TimestampType.LogAppendTime, stamped.Message.Timestamp.Type);
        Assert.InRange(stamped.Message.Timestamp.UnixTimestampMs, before, after);
        var kept = Assert.Single(Clients.ReadAll(broker.BootstrapServers, "createtime", 1, TimeSpan.FromSeconds(30))[0]);
        Assert.Equal(TimestampType.CreateTime, kept.Message.Timestamp.Type);
        Assert.Equal(old.UnixTimestampMs, kept.Message.Timestamp.UnixTimestampMs);
    }

    [Fact]
    public async Task RetentionDeletesOldSegmentsInTheBackgroundAndMovesTheLogStart()
    {
        using var loggers = TestOutputLoggerProvider.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string>
        {
            ["log.retention.check.interval.ms"] = "200",
            ["log.segment.delete.delay.ms"] = "0",
        }, loggers);
        // Small segments, records timestamped an hour ago, retention of ten minutes: every segment
        // goes, the active one too (a new one is rolled first), as Kafka does.
        await Clients.CreateTopicAsync(broker.BootstrapServers, "retained", 1,
            new() { ["segment.bytes"] = "2000", ["retention.ms"] = "600000" });
        var hourAgo = new Timestamp(DateTime.UtcNow.AddHours(-1));
        using (var p = new ProducerBuilder<Null, string>(Clients.ProducerConfig(broker.BootstrapServers)).Build())
        {
            for (int i = 0; i < 50; i++)
                await p.ProduceAsync("retained", new Message<Null, string> { Value = new string('r', 200), Timestamp = hourAgo });
        }
        using var consumer = new ConsumerBuilder<Ignore, string>(Clients.ConsumerConfig(broker.BootstrapServers)).Build();
        var tp = new TopicPartition("retained", 0);
        // Retention works through the segments over several checks: wait until it has taken them all (the records are
        // all past retention), so that what is read below is not racing a deletion still under way.
        var deadline = DateTime.UtcNow.AddSeconds(60);
        WatermarkOffsets w;
        do
        {
            await Task.Delay(200);
            w = consumer.QueryWatermarkOffsets(tp, TimeSpan.FromSeconds(5));
        }
        while (w.Low.Value < 50 && DateTime.UtcNow < deadline);
        Assert.True(w.Low.Value > 0, "retention never ran");
        Assert.Equal(50, w.High.Value);
        var rest = Clients.ReadAll(broker.BootstrapServers, "retained", 1, TimeSpan.FromSeconds(30))[0];
        Assert.Equal(50 - w.Low.Value, rest.Count);
        if (rest.Count > 0) Assert.Equal(w.Low.Value, rest[0].Offset.Value);
        // The log goes on from where it was.
        using var p2 = new ProducerBuilder<Null, string>(Clients.ProducerConfig(broker.BootstrapServers)).Build();
        Assert.Equal(50, (await p2.ProduceAsync("retained", new Message<Null, string> { Value = "fresh" })).Offset.Value);
    }
}
