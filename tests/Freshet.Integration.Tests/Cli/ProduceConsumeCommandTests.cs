using System.Text;
using System.Text.Json;
using Confluent.Kafka;
using Freshet.Integration.Tests.Support;

namespace Freshet.Integration.Tests.Cli;

/// <summary>`freshet produce` and `freshet consume` run as real processes against an embedded broker.</summary>
public sealed class ProduceConsumeCommandTests(CliBroker broker) : IClassFixture<CliBroker>
{
    private Task<CliResult> Produce(string stdin, params string[] args) =>
        FreshetCli.RunAsync(["produce", .. args, "--bootstrap-server", broker.Bootstrap], stdin);

    /// <summary>
    /// --timeout-ms is always given so a test never hangs on a consume that finds nothing. Where
    /// --max-messages ends the run it is a generous 30 s (a loaded machine may take seconds to
    /// connect and fetch), costing nothing when the records come.
    /// </summary>
    private Task<CliResult> Consume(params string[] args) =>
        FreshetCli.RunAsync(["consume", .. args, "--bootstrap-server", broker.Bootstrap], stdin: null);

    private static List<JsonElement> JsonRecords(CliResult r) => [.. r.Lines.Select(l => JsonDocument.Parse(l).RootElement.Clone())];

    [Fact]
    public async Task LinesWithKeysAndHeadersComeBackAsJsonFromTheBeginning()
    {
        string topic = CliBroker.NewTopic("keys");
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        long before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

        var produced = await Produce("a:1\nb:hello wörld\nc:x:y\nd:\n", "--topic", topic, "--key-separator", ":",
            "--header", "source=cli", "--header", "trace=", "--idempotent", "--compression", "gzip");
        long after = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        Assert.True(produced.ExitCode == 0, produced.ToString());
        Assert.Contains("4 records delivered", produced.Stderr, StringComparison.Ordinal);
        Assert.Contains("0 failed", produced.Stderr, StringComparison.Ordinal);

        var consumed = await Consume("--topic", topic, "--from", "beginning", "--format", "json", "--max-messages", "4", "--timeout-ms", "30000");
        Assert.True(consumed.ExitCode == 0, consumed.ToString());
        var records = JsonRecords(consumed);
        Assert.Equal(4, records.Count);
        Assert.Equal([0L, 1, 2, 3], records.Select(r => r.GetProperty("offset").GetInt64()));
        Assert.Equal(["a", "b", "c", "d"], records.Select(r => r.GetProperty("key").GetString()));
        Assert.Equal(["1", "hello wörld", "x:y", ""], records.Select(r => r.GetProperty("value").GetString()));
        foreach (var r in records)
        {
            Assert.Equal(topic, r.GetProperty("topic").GetString());
            Assert.Equal(0, r.GetProperty("partition").GetInt32());
            Assert.Equal("CreateTime", r.GetProperty("timestampType").GetString());
            // Stamped by the producer while it ran (a second either side for clock granularity).
            Assert.InRange(r.GetProperty("timestamp").GetInt64(), before - 1000, after + 1000);
            Assert.False(r.TryGetProperty("valueEncoding", out _));
            Assert.Equal([("source", "cli"), ("trace", "")],
                r.GetProperty("headers").EnumerateArray().Select(h => (h.GetProperty("key").GetString(), h.GetProperty("value").GetString())));
        }

        // What the broker holds, read by Confluent.Kafka directly.
        var stored = Clients.ReadAll(broker.Bootstrap, topic, 1, TimeSpan.FromSeconds(30))[0];
        Assert.Equal(["a", "b", "c", "d"], stored.Select(m => Encoding.UTF8.GetString(m.Message.Key)));
        Assert.Equal(["1", "hello wörld", "x:y", ""], stored.Select(m => Encoding.UTF8.GetString(m.Message.Value)));
        Assert.All(stored, m => Assert.Equal("cli", Encoding.UTF8.GetString(m.Message.Headers.GetLastBytes("source"))));
    }

    [Fact]
    public async Task ALineWithoutTheSeparatorIsReportedAndTheExitCodeIs1()
    {
        string topic = CliBroker.NewTopic("nosep");
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        var r = await Produce("k:v\nno separator here\nk2:v2\n", "--topic", topic, "--key-separator", ":");
        Assert.True(r.ExitCode == 1, r.ToString());
        Assert.Contains("line 2", r.Stderr, StringComparison.Ordinal);
        Assert.Contains("2 records delivered", r.Stderr, StringComparison.Ordinal);
        Assert.Contains("1 failed", r.Stderr, StringComparison.Ordinal);
        Assert.Equal(2, Clients.ReadAll(broker.Bootstrap, topic, 1, TimeSpan.FromSeconds(30))[0].Count);
    }

    [Fact]
    public async Task PartitionOptionTargetsOnePartitionAndTextOutputPrintsTheAskedFields()
    {
        string topic = CliBroker.NewTopic("part");
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 3);
        var r = await Produce("one\ntwo\nthree\n", "--topic", topic, "--partition", "2", "--acks", "1", "--header", "h=v");
        Assert.True(r.ExitCode == 0, r.ToString());

        using (var admin = Clients.Admin(broker.Bootstrap))
        {
            var latest = await admin.ListOffsetsAsync(Enumerable.Range(0, 3).Select(p => new Confluent.Kafka.Admin.TopicPartitionOffsetSpec
            {
                TopicPartition = new TopicPartition(topic, p), OffsetSpec = Confluent.Kafka.Admin.OffsetSpec.Latest(),
            }));
            Assert.Equal([0L, 0, 3], latest.ResultInfos.OrderBy(i => i.TopicPartitionOffsetError.Partition.Value).Select(i => i.TopicPartitionOffsetError.Offset.Value));
        }

        var text = await Consume("--topic", topic, "--partition", "2", "--from", "1", "--print-offset", "--print-key", "--print-headers", "--max-messages", "2", "--timeout-ms", "30000");
        Assert.True(text.ExitCode == 0, text.ToString());
        Assert.Equal(["2:1\th=v\tnull\ttwo", "2:2\th=v\tnull\tthree"], text.Lines);

        var plain = await Consume("--topic", topic, "--from", "beginning", "--max-messages", "3", "--timeout-ms", "30000");
        Assert.Equal(["one", "two", "three"], plain.Lines);
        Assert.Contains("3 records", plain.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ConsumingFromTheEndPrintsNothingAndStopsWhenIdle()
    {
        string topic = CliBroker.NewTopic("end");
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 2);
        Assert.Equal(0, (await Produce("x\ny\nz\n", "--topic", topic)).ExitCode);

        var r = await Consume("--topic", topic, "--from", "end", "--timeout-ms", "1000");
        // It stopped by itself: the summary is printed when the read loop ends (the runner kills, and
        // fails, a run that outlives 60 s).
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal("", r.Stdout);
        Assert.Contains("0 records", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task MaxMessagesStopsAfterThatManyRecordsWithoutATimeout()
    {
        string topic = CliBroker.NewTopic("max");
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        Assert.Equal(0, (await Produce(string.Concat(Enumerable.Range(0, 10).Select(i => $"m{i}\n")), "--topic", topic)).ExitCode);

        // No --timeout-ms: only --max-messages can end this run.
        var r = await FreshetCli.RunAsync(["consume", "--topic", topic, "--from", "beginning", "--max-messages", "3", "--bootstrap-server", broker.Bootstrap],
            stdin: null, timeout: TimeSpan.FromSeconds(60));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(["m0", "m1", "m2"], r.Lines);
    }

    [Fact]
    public async Task StartingAtATimeOrAnOffsetSkipsEarlierRecords()
    {
        string topic = CliBroker.NewTopic("from");
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        using (var producer = new ProducerBuilder<Null, string>(Clients.ProducerConfig(broker.Bootstrap)).Build())
        {
            for (int i = 0; i < 4; i++)
                await producer.ProduceAsync(topic, new Message<Null, string> { Value = $"v{i}", Timestamp = new Timestamp(1_700_000_000_000 + i * 1000, TimestampType.CreateTime) });
        }

        // --max-messages ends each run as soon as the expected records are in; the first record
        // printed shows where reading started.
        var byMs = await Consume("--topic", topic, "--from", "@1700000002000", "--max-messages", "2", "--timeout-ms", "30000");
        Assert.Equal(["v2", "v3"], byMs.Lines);
        var byIso = await Consume("--topic", topic, "--from", "2023-11-14T22:13:21Z", "--max-messages", "3", "--timeout-ms", "30000"); // 1_700_000_001_000
        Assert.Equal(["v1", "v2", "v3"], byIso.Lines);
        var byOffset = await Consume("--topic", topic, "--from", "3", "--max-messages", "1", "--timeout-ms", "30000");
        Assert.Equal(["v3"], byOffset.Lines);
        var future = await Consume("--topic", topic, "--from", "@1800000000000", "--timeout-ms", "1000");
        Assert.True(future.ExitCode == 0, future.ToString());
        Assert.Equal("", future.Stdout);

        // Only the error ends this run: the idle timeout is there so a missing error fails rather than hangs.
        var pastEnd = await Consume("--topic", topic, "--from", "99", "--timeout-ms", "30000");
        Assert.True(pastEnd.ExitCode == 1, pastEnd.ToString());
        Assert.Contains("out of range", pastEnd.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BytesThatAreNotUtf8AreBase64InJson()
    {
        string topic = CliBroker.NewTopic("binary");
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        byte[] value = [0xff, 0xfe, 0x00, 0x41];
        using (var producer = new ProducerBuilder<string, byte[]>(Clients.ProducerConfig(broker.Bootstrap)).Build())
        {
            await producer.ProduceAsync(topic, new Message<string, byte[]> { Key = "k", Value = value, Headers = [new Header("bin", [0xc3])] });
            await producer.ProduceAsync(topic, new Message<string, byte[]> { Key = null!, Value = null! });
        }

        var r = await Consume("--topic", topic, "--from", "beginning", "--format", "json", "--max-messages", "2", "--timeout-ms", "30000");
        Assert.True(r.ExitCode == 0, r.ToString());
        var records = JsonRecords(r);
        Assert.Equal("k", records[0].GetProperty("key").GetString());
        Assert.Equal("base64", records[0].GetProperty("valueEncoding").GetString());
        Assert.Equal(value, Convert.FromBase64String(records[0].GetProperty("value").GetString()!));
        var header = records[0].GetProperty("headers").EnumerateArray().Single();
        Assert.Equal("base64", header.GetProperty("valueEncoding").GetString());
        Assert.Equal([0xc3], Convert.FromBase64String(header.GetProperty("value").GetString()!));
        Assert.Equal(JsonValueKind.Null, records[1].GetProperty("key").ValueKind);
        Assert.Equal(JsonValueKind.Null, records[1].GetProperty("value").ValueKind);
    }

    [Fact]
    public async Task ConsumingAMissingTopicOrPartitionFails()
    {
        string missing = CliBroker.NewTopic("nope");
        var r = await Consume("--topic", missing, "--timeout-ms", "1000");
        Assert.True(r.ExitCode == 1, r.ToString());
        Assert.Contains("UNKNOWN_TOPIC_OR_PARTITION", r.Stderr, StringComparison.Ordinal);
        using (var admin = Clients.Admin(broker.Bootstrap))
            Assert.DoesNotContain(admin.GetMetadata(TimeSpan.FromSeconds(10)).Topics, t => t.Topic == missing);

        string topic = CliBroker.NewTopic("onepart");
        await Clients.CreateTopicAsync(broker.Bootstrap, topic, 1);
        var p = await Consume("--topic", topic, "--partition", "5", "--timeout-ms", "1000");
        Assert.True(p.ExitCode == 1, p.ToString());
        Assert.Contains("UNKNOWN_TOPIC_OR_PARTITION", p.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("produce")] // no --topic
    [InlineData("produce", "--topic", "t", "--acks", "2")]
    [InlineData("produce", "--topic", "t", "--compression", "brotli")]
    [InlineData("produce", "--topic", "t", "--idempotent", "--acks", "1")]
    [InlineData("produce", "--topic", "t", "--header", "novalue")]
    [InlineData("consume", "--topic", "t", "--from", "yesterday")]
    [InlineData("consume", "--topic", "t", "--format", "xml")]
    [InlineData("consume", "--topic", "t", "--max-messages", "0")]
    public async Task UsageErrorsExitWith2(params string[] args)
    {
        var r = await FreshetCli.RunAsync([.. args, "--bootstrap-server", broker.Bootstrap], stdin: "ignored\n");
        Assert.True(r.ExitCode == 2, r.ToString());
        Assert.Contains($"freshet {args[0]} --help", r.Stderr, StringComparison.Ordinal);
    }
}
