using System.Globalization;
using ConsumerGroupState = Confluent.Kafka.ConsumerGroupState;
using IAdminClient = Confluent.Kafka.IAdminClient;
using Confluent.Kafka.Admin;
using System.Text;
using System.Text.RegularExpressions;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;
using Freshet.Server;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Compatibility;

/// <summary>
/// kcat (Debian's, on librdkafka 2.0.2, a different librdkafka than the bundled one Confluent.Kafka
/// loads) as a child process against an embedded broker: metadata listing, keyed produce with
/// headers, consume to the end of every partition, each producer codec, and consuming as a member of
/// a consumer group (-G: the classic protocol, offsets committed on exit).
/// </summary>
public sealed partial class KcatTests(ITestOutputHelper output)
{
    private const int Partitions = 3;

    [Fact]
    public async Task MetadataListsTheBrokerAndEveryPartitionWithItsLeader()
    {
        string kcat = await ClientTools.RequireKcatAsync(output.WriteLine);
        using var loggers = TestOutputLoggerProvider.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(null, loggers);
        await Clients.CreateTopicAsync(broker.BootstrapServers, "kcat-meta", Partitions);
        await Clients.CreateTopicAsync(broker.BootstrapServers, "kcat-meta-other", 1);

        var all = await RunKcatAsync(kcat, broker, ["-L"]);
        var (host, port) = RawKafkaClient.Split(broker.BootstrapServers);
        Assert.Matches(new Regex($@"^\s*1 brokers:\s*$", RegexOptions.Multiline), all.StdOut);
        Assert.Matches(new Regex($@"^\s*broker 1 at {Regex.Escape(host)}:{port}\b", RegexOptions.Multiline), all.StdOut);
        Assert.Matches(new Regex(@"^\s*topic ""kcat-meta"" with 3 partitions:\s*$", RegexOptions.Multiline), all.StdOut);
        Assert.Matches(new Regex(@"^\s*topic ""kcat-meta-other"" with 1 partitions:\s*$", RegexOptions.Multiline), all.StdOut);

        var one = await RunKcatAsync(kcat, broker, ["-L", "-t", "kcat-meta"]);
        Assert.Matches(new Regex(@"^\s*1 topics:\s*$", RegexOptions.Multiline), one.StdOut);
        Assert.DoesNotContain("kcat-meta-other", one.StdOut, StringComparison.Ordinal);
        // "    partition 0, leader 1, replicas: 1, isrs: 1" once per partition, no error.
        var partitions = PartitionLine().Matches(one.StdOut).Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).Order().ToList();
        Assert.Equal([0, 1, 2], partitions);
        Assert.DoesNotContain("Broker:", one.StdOut, StringComparison.Ordinal); // kcat prints "Broker: <error>" for a partition or topic error
    }

    /// <summary>
    /// Produce with each codec through <c>-X compression.codec</c> (what <c>-z</c> sets), consume it all back.
    /// <para>LZ4: librdkafka decides whether a broker takes LZ4 from whether it advertises FindCoordinator
    /// (its stand-in for "0.8.2 or later"); without it, it logs "Broker does not support compression type lz4:
    /// not compressing batch" and sends the batch uncompressed. Freshet serves FindCoordinator now that it
    /// has consumer groups, so the batches are stored as LZ4; the test still expects whichever the broker's
    /// ApiVersions implies. <see cref="LegacyGenerationRoundTrip"/> covers LZ4 with an old protocol generation.</para>
    /// </summary>
    [Theory]
    [InlineData("none")]
    [InlineData("gzip")]
    [InlineData("snappy")]
    [InlineData("lz4")]
    [InlineData("zstd")]
    public async Task KeyedLinesWithHeadersComeBackExactlyOnceInPartitionOrder(string codec)
    {
        string kcat = await ClientTools.RequireKcatAsync(output.WriteLine);
        using var loggers = TestOutputLoggerProvider.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(null, loggers);
        var stored = Codec(codec);
        if (stored == CompressionType.Lz4 && !await AdvertisesFindCoordinatorAsync(broker))
        {
            stored = CompressionType.None;
            output.WriteLine("NOTE: the broker does not advertise FindCoordinator, so librdkafka sends LZ4 batches uncompressed");
        }
        await RoundTripAsync(kcat, broker, "kcat-" + codec, codec, stored, protocolArgs: [], headers: true);
    }

    /// <summary>
    /// librdkafka told not to ask ApiVersions and to assume a 0.9.0 broker: Produce v1 with magic 0
    /// message sets (LZ4 with the old, miscomputed frame header checksum), Fetch v1 (down-converted to
    /// magic 0) and ListOffsets v0. No headers and no timestamps exist in magic 0. The broker up-converts
    /// each produce to a v2 batch and keeps the producer's codec.
    /// </summary>
    [Theory]
    [InlineData("none")]
    [InlineData("gzip")]
    [InlineData("snappy")]
    [InlineData("lz4")]
    public async Task LegacyGenerationRoundTrip(string codec)
    {
        string kcat = await ClientTools.RequireKcatAsync(output.WriteLine);
        using var loggers = TestOutputLoggerProvider.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(null, loggers);
        await RoundTripAsync(kcat, broker, "kcat-legacy-" + codec, codec, Codec(codec),
            protocolArgs: ["-X", "api.version.request=false", "-X", "broker.version.fallback=0.9.0"], headers: false);
    }

    /// <summary>
    /// 500 keyed lines in, then kcat -C -e reads every partition to its end: each line exactly once,
    /// offsets dense from 0, line order kept per partition, one partition per key, the headers kcat -H
    /// set; and the stored batches carry <paramref name="storedCodec"/>.
    /// </summary>
    private async Task RoundTripAsync(string kcat, FreshetServer broker, string topic, string codec, CompressionType storedCodec,
        string[] protocolArgs, bool headers)
    {
        const int lines = 500;
        await Clients.CreateTopicAsync(broker.BootstrapServers, topic, Partitions);

        var input = new StringBuilder();
        for (int i = 0; i < lines; i++) input.Append(CultureInfo.InvariantCulture, $"key-{i % 11}:line-{i}\n");
        string[] headerArgs = headers ? ["-H", "source=kcat", "-H", "codec=" + codec] : [];
        var produce = await RunKcatAsync(kcat, broker,
            ["-P", "-t", topic, "-K:", .. headerArgs, "-X", "compression.codec=" + codec, "-X", "linger.ms=20", .. protocolArgs],
            input.ToString());
        Assert.True(produce.StdErr.Trim().Length == 0, $"kcat -P reported problems: {produce.Describe()}"); // delivery failures go to stderr

        // Tab-separated: partition, offset, key, value, headers ("k=v,k=v").
        var consume = await RunKcatAsync(kcat, broker, ["-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p\t%o\t%k\t%s\t%h\n", .. protocolArgs]);
        var seen = new HashSet<int>();
        var lastByPartition = new Dictionary<int, (long Offset, int Line)>();
        var partitionOfKey = new Dictionary<string, int>();
        foreach (var row in consume.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var f = row.Split('\t');
            Assert.True(f.Length == 5, $"unexpected kcat line: {row}");
            int partition = int.Parse(f[0], CultureInfo.InvariantCulture);
            long offset = long.Parse(f[1], CultureInfo.InvariantCulture);
            Assert.StartsWith("line-", f[3], StringComparison.Ordinal);
            int line = int.Parse(f[3]["line-".Length..], CultureInfo.InvariantCulture);
            Assert.True(seen.Add(line), $"line {line} came back twice");
            Assert.Equal($"key-{line % 11}", f[2]);
            Assert.Equal(headers ? $"source=kcat,codec={codec}" : "", f[4]);
            if (lastByPartition.TryGetValue(partition, out var last))
            {
                Assert.Equal(last.Offset + 1, offset);
                Assert.True(line > last.Line, $"partition {partition}: line {line} after line {last.Line}");
            }
            else
            {
                Assert.Equal(0, offset);
            }
            lastByPartition[partition] = (offset, line);
            Assert.Equal(partitionOfKey.GetValueOrDefault(f[2], partition), partition); // one key, one partition
            partitionOfKey[f[2]] = partition;
        }
        Assert.Equal(lines, seen.Count);
        Assert.True(lastByPartition.Count > 1, "11 keys should spread over more than one of 3 partitions");

        // How the broker stored it (compression.type=producer keeps the producer's codec).
        for (int p = 0; p < Partitions; p++)
        {
            var batches = await ClientTools.StoredBatchesAsync(broker.BootstrapServers, topic, p);
            Assert.All(batches, b => Assert.Equal(storedCodec, b.Compression));
            Assert.Equal(lastByPartition.TryGetValue(p, out var l) ? l.Offset + 1 : 0, batches.Sum(b => (long)b.Count));
        }
    }

    /// <summary>
    /// kcat -G consumes as a balanced group member and commits what it read when it exits (-e: at the
    /// end of its partitions); a second run in the same group starts at those offsets and reads only
    /// what was produced since.
    /// </summary>
    [Fact]
    public async Task GroupMemberCommitsAndASecondRunResumesAfterTheCommittedOffsets()
    {
        string kcat = await ClientTools.RequireKcatAsync(output.WriteLine);
        using var loggers = TestOutputLoggerProvider.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(GroupBrokerProperties(initialRebalanceDelayMs: 0), loggers);
        const string topic = "kcat-group", group = "kcat-group-g";
        await Clients.CreateTopicAsync(broker.BootstrapServers, topic, Partitions);

        await ProduceLinesAsync(kcat, broker, topic, 0, 150);
        var first = ParseConsumed(await RunKcatAsync(kcat, broker, GroupConsumeArgs(group, topic)));
        CheckExactlyOnce(first, 0, 150);
        var ends = await ClientTools.EndOffsetsAsync(broker.BootstrapServers, topic, Partitions);
        Assert.Equal(150, ends.Values.Sum());
        foreach (var (p, rows) in first.GroupBy(r => r.Partition).Select(g => (g.Key, g.ToList())))
            Assert.Equal(Enumerable.Range(0, (int)ends[p]).Select(i => (long)i), rows.Select(r => r.Offset)); // from the start, in order
        Assert.Equal(ends, await ClientTools.CommittedAsync(broker.BootstrapServers, group, topic, Partitions));

        await ProduceLinesAsync(kcat, broker, topic, 150, 60);
        var second = ParseConsumed(await RunKcatAsync(kcat, broker, GroupConsumeArgs(group, topic)));
        CheckExactlyOnce(second, 150, 60);
        Assert.All(second, r => Assert.True(r.Offset >= ends[r.Partition], $"partition {r.Partition}: offset {r.Offset} was committed before (resume point {ends[r.Partition]})"));
        var newEnds = await ClientTools.EndOffsetsAsync(broker.BootstrapServers, topic, Partitions);
        Assert.Equal(newEnds, await ClientTools.CommittedAsync(broker.BootstrapServers, group, topic, Partitions));
    }

    /// <summary>
    /// Two kcat -G members share a 4-partition topic: once the group is stable the range assignor has
    /// given each two partitions; records produced then are read by the member that owns their
    /// partition, each exactly once, and the members' auto commits reach the end of every partition.
    /// (Waiting for the stable group, instead of counting on both members joining within the initial
    /// rebalance delay, keeps a slow process start on a loaded machine from handing one member all four.)
    /// </summary>
    [Fact]
    public async Task TwoGroupMembersSplitTheTopicsPartitions()
    {
        string kcat = await ClientTools.RequireKcatAsync(output.WriteLine);
        using var loggers = TestOutputLoggerProvider.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(GroupBrokerProperties(initialRebalanceDelayMs: 0), loggers);
        const string topic = "kcat-split", group = "kcat-split-g";
        await Clients.CreateTopicAsync(broker.BootstrapServers, topic, 4);

        // Members without -e: they consume until they are stopped (SIGTERM, on which kcat commits and leaves).
        using var stop = new CancellationTokenSource();
        string[] Member(string clientId) =>
            ["-G", group, "-X", "auto.offset.reset=earliest", "-q", "-f", "%p\t%o\t%s\n", "-X", "client.id=" + clientId,
                "-X", "heartbeat.interval.ms=500", "-X", "session.timeout.ms=10000", "-X", "auto.commit.interval.ms=200", topic];
        var runA = RunKcatAsync(kcat, broker, Member("kcat-a"), terminate: stop.Token, timeout: TimeSpan.FromMinutes(5));
        var runB = RunKcatAsync(kcat, broker, Member("kcat-b"), terminate: stop.Token, timeout: TimeSpan.FromMinutes(5));
        Dictionary<string, HashSet<int>> owned;
        using (var admin = Clients.Admin(broker.BootstrapServers))
        {
            try
            {
                owned = await StableAssignmentAsync(admin, group, topic);
                await ProduceLinesAsync(kcat, broker, topic, 0, 400);
                var ends = await ClientTools.EndOffsetsAsync(broker.BootstrapServers, topic, 4);
                Assert.Equal(400, ends.Values.Sum());
                for (var deadline = DateTime.UtcNow.AddSeconds(90); ; await Task.Delay(200))
                {
                    var committed = await ClientTools.CommittedAsync(broker.BootstrapServers, group, topic, 4);
                    if (committed.OrderBy(c => c.Key).SequenceEqual(ends.OrderBy(e => e.Key))) break;
                    Assert.True(DateTime.UtcNow < deadline, $"the members committed {string.Join(",", committed.OrderBy(c => c.Key))}, not the ends {string.Join(",", ends.OrderBy(e => e.Key))}");
                }
                // Still the assignment the records were read under (no rebalance in between).
                Assert.Equal(owned.OrderBy(o => o.Key).Select(o => (o.Key, string.Join(",", o.Value.Order()))),
                    (await StableAssignmentAsync(admin, group, topic)).OrderBy(o => o.Key).Select(o => (o.Key, string.Join(",", o.Value.Order()))));
            }
            finally
            {
                await stop.CancelAsync();
            }
        }
        var a = ParseConsumed(await runA);
        var b = ParseConsumed(await runB);
        var partitionsA = a.Select(r => r.Partition).ToHashSet();
        var partitionsB = b.Select(r => r.Partition).ToHashSet();
        output.WriteLine($"kcat-a read partitions {string.Join(',', partitionsA.Order())}, kcat-b {string.Join(',', partitionsB.Order())}");
        Assert.Equal(2, owned["kcat-a"].Count);
        Assert.Equal(2, owned["kcat-b"].Count);
        Assert.Equal(owned["kcat-a"].Order(), partitionsA.Order());
        Assert.Equal(owned["kcat-b"].Order(), partitionsB.Order());
        CheckExactlyOnce([.. a, .. b], 0, 400);
    }

    /// <summary>The partitions each member (by client id) owns once the group is stable with two members covering the topic's four partitions.</summary>
    private static async Task<Dictionary<string, HashSet<int>>> StableAssignmentAsync(IAdminClient admin, string group, string topic)
    {
        string last = "";
        for (var deadline = DateTime.UtcNow.AddSeconds(90); DateTime.UtcNow < deadline; await Task.Delay(200))
        {
            try
            {
                var d = (await admin.DescribeConsumerGroupsAsync([group])).ConsumerGroupDescriptions.Single();
                var owned = d.Members.ToDictionary(m => m.ClientId,
                    m => m.Assignment.TopicPartitions.Where(tp => tp.Topic == topic).Select(tp => tp.Partition.Value).ToHashSet());
                last = $"{d.State}: {string.Join("; ", owned.Select(o => $"{o.Key}: {string.Join(",", o.Value.Order())}"))}";
                if (d.State == ConsumerGroupState.Stable && owned.Count == 2 && owned.Values.Sum(v => v.Count) == 4
                    && owned.Values.SelectMany(v => v).Distinct().Count() == 4)
                    return owned;
            }
            catch (DescribeConsumerGroupsException)
            {
                // The group is not there yet.
            }
        }
        throw new TimeoutException($"group {group} did not become stable with two members sharing the four partitions; last seen {last}");
    }

    /// <summary>Short sessions are allowed; how long a new group waits for more members before its first rebalance.</summary>
    private static Dictionary<string, string> GroupBrokerProperties(int initialRebalanceDelayMs) => new()
    {
        ["group.initial.rebalance.delay.ms"] = initialRebalanceDelayMs.ToString(CultureInfo.InvariantCulture),
        ["offsets.topic.num.partitions"] = "5",
    };

    /// <summary>
    /// kcat -G (balanced consumer, auto commit on): from the committed offset, or the earliest when the
    /// group has none (auto.offset.reset; -o would override the committed offset on every assignment),
    /// exit at the end of every assigned partition, one "partition TAB offset TAB value" line per
    /// record. Heartbeats every 500 ms so a rebalance is noticed quickly.
    /// </summary>
    private static string[] GroupConsumeArgs(string group, string topic, string clientId = "kcat-group") =>
        ["-G", group, "-X", "auto.offset.reset=earliest", "-e", "-q", "-f", "%p\t%o\t%s\n", "-X", "client.id=" + clientId,
            "-X", "heartbeat.interval.ms=500", "-X", "session.timeout.ms=6000", topic];

    private async Task ProduceLinesAsync(string kcat, FreshetServer broker, string topic, int from, int count)
    {
        var input = new StringBuilder();
        for (int i = from; i < from + count; i++) input.Append(CultureInfo.InvariantCulture, $"key-{i % 13}:line-{i}\n");
        var produce = await RunKcatAsync(kcat, broker, ["-P", "-t", topic, "-K:", "-X", "linger.ms=20"], input.ToString());
        Assert.True(produce.StdErr.Trim().Length == 0, $"kcat -P reported problems: {produce.Describe()}");
    }

    private readonly record struct Consumed(int Partition, long Offset, int Line);

    private static List<Consumed> ParseConsumed(ProcessResult result) =>
    [
        .. result.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(row =>
        {
            var f = row.Split('\t');
            Assert.True(f.Length == 3 && f[2].StartsWith("line-", StringComparison.Ordinal), $"unexpected kcat line: {row}");
            return new Consumed(int.Parse(f[0], CultureInfo.InvariantCulture), long.Parse(f[1], CultureInfo.InvariantCulture),
                int.Parse(f[2]["line-".Length..], CultureInfo.InvariantCulture));
        }),
    ];

    /// <summary>Lines <paramref name="from"/> .. from + count - 1, each exactly once, in offset order within a partition.</summary>
    private static void CheckExactlyOnce(List<Consumed> rows, int from, int count)
    {
        Assert.Equal(Enumerable.Range(from, count), rows.Select(r => r.Line).Order());
        foreach (var g in rows.GroupBy(r => r.Partition))
        {
            var list = g.ToList();
            for (int i = 1; i < list.Count; i++)
                Assert.True(list[i].Offset > list[i - 1].Offset && list[i].Line > list[i - 1].Line, $"partition {g.Key}: {list[i]} after {list[i - 1]}");
        }
    }

    private static CompressionType Codec(string name) => name switch
    {
        "gzip" => CompressionType.Gzip,
        "snappy" => CompressionType.Snappy,
        "lz4" => CompressionType.Lz4,
        "zstd" => CompressionType.Zstd,
        _ => CompressionType.None,
    };

    private static async Task<bool> AdvertisesFindCoordinatorAsync(FreshetServer broker)
    {
        await using var raw = await RawKafkaClient.ConnectAsync(broker.BootstrapServers);
        var versions = await raw.RequestAsync<ApiVersionsResponse>(new ApiVersionsRequest(), 0);
        return versions.ApiKeys.Any(k => k.ApiKey == (short)ApiKey.FindCoordinator);
    }

    private async Task<ProcessResult> RunKcatAsync(string kcat, FreshetServer broker, string[] args, string? stdin = null, CancellationToken terminate = default, TimeSpan? timeout = null)
    {
        var all = new List<string> { "-b", broker.BootstrapServers, "-X", "socket.connection.setup.timeout.ms=10000" };
        if (ClientTools.Debug) all.AddRange(["-d", args.Contains("-G") ? "broker,protocol,cgrp" : "broker,protocol"]);
        all.AddRange(args);
        var result = await ExternalProcess.RunAsync(kcat, all, timeout ?? ClientTools.ClientTimeout, stdin, terminate: terminate);
        output.WriteLine(ClientTools.Debug ? result.Describe() : result.Summary);
        Assert.True(result.ExitCode == 0, $"kcat failed (exit code {result.ExitCode}): {result.Describe()}");
        return result;
    }

    [GeneratedRegex(@"^\s*partition (\d+), leader 1, replicas: 1, isrs: 1\s*$", RegexOptions.Multiline)]
    private static partial Regex PartitionLine();
}
