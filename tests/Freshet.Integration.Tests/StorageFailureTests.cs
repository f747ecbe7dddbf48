using System.Text;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using Freshet.Server;
using Freshet.Storage;
using Freshet.Storage.Tests.Support;
using Xunit.Abstractions;
using ErrorCode = Freshet.Protocol.ErrorCode;
using TopicPartition = Freshet.Protocol.TopicPartition;

namespace Freshet.Integration.Tests;

/// <summary>
/// A broker with log.flush.per.append=true and two log directories whose partition logs write through
/// a file seam that fails an fsync on command (<see cref="FaultyStorageIo"/>): the produce is answered
/// KAFKA_STORAGE_ERROR, the directory goes offline and is reported, nothing of it is served, the other
/// directory goes on, and after a restart the failed records are gone and the partition takes writes again.
/// </summary>
public sealed class StorageFailureTests(ITestOutputHelper output)
{
    private const string Topic = "fsync-fails";

    [Fact]
    public async Task AFailedFsyncIsAStorageErrorTakesItsDirectoryOfflineAndItsRecordsAreNeverServed()
    {
        string root = Path.Combine(Path.GetTempPath(), "freshet-fsync-" + Guid.NewGuid().ToString("N")[..8]);
        string d1 = Path.Combine(root, "d1"), d2 = Path.Combine(root, "d2");
        var props = new Dictionary<string, string>
        {
            ["log.dirs"] = $"{d1},{d2}",
            ["metadata.log.dir"] = Path.Combine(root, "meta"),
            ["listeners"] = "PLAINTEXT://127.0.0.1:0",
            ["log.flush.per.append"] = "true",
        };
        using var loggers = TestOutputLoggerProvider.Factory(output);
        var io = new FaultyStorageIo();
        try
        {
            string failedDir;
            int failing, healthy;
            await using (var broker = await FreshetServer.StartAsync(new FreshetServerOptions { Properties = props, Loggers = loggers, StorageIo = io }))
            {
                await Clients.CreateTopicAsync(broker.BootstrapServers, Topic, 2);
                // One partition in each directory (the fewest-partitions placement).
                var dirs = Enumerable.Range(0, 2).Select(p => Path.GetDirectoryName(broker.Logs.GetLog(new TopicPartition(Topic, p))!.Dir)!).ToList();
                Assert.NotEqual(dirs[0], dirs[1]);
                (failing, healthy) = (0, 1);
                failedDir = LogDirFailureChannel.Normalize(dirs[failing]);

                await using var c = await RawKafkaClient.ConnectAsync(broker.BootstrapServers);
                for (int i = 0; i < 3; i++)
                {
                    Assert.Equal((ErrorCode.None, 2L * i), await ProduceAsync(c, failing, $"kept{i}"));
                    Assert.Equal((ErrorCode.None, 2L * i), await ProduceAsync(c, healthy, $"other{i}"));
                }

                // The next fsync of a segment in that directory fails; the disk behaves again afterwards.
                io.FailFsync(p => p.StartsWith(failedDir + Path.DirectorySeparatorChar, StringComparison.Ordinal) && p.EndsWith(".log", StringComparison.Ordinal));
                Assert.Equal(ErrorCode.KafkaStorageError, (await ProduceAsync(c, failing, "lost")).Error);
                Assert.Equal(1, io.Fired);
                Assert.Equal(ErrorCode.KafkaStorageError, (await ProduceAsync(c, failing, "after")).Error);

                // The other directory goes on.
                Assert.Equal((ErrorCode.None, 6L), await ProduceAsync(c, healthy, "other3"));

                // Nothing of the offline directory is served: fetches and offsets answer KAFKA_STORAGE_ERROR.
                var fetch = await c.RequestAsync<FetchResponse>(Fetch(failing, 0), 12);
                Assert.Equal((short)ErrorCode.KafkaStorageError, fetch.Responses[0].Partitions[0].ErrorCode);
                Assert.Equal(0, fetch.Responses[0].Partitions[0].Records?.Length ?? 0);
                var offsets = await c.RequestAsync<ListOffsetsResponse>(LatestOffset(failing), 7);
                Assert.Equal((short)ErrorCode.KafkaStorageError, offsets.Topics[0].Partitions[0].ErrorCode);
                var healthyFetch = await c.RequestAsync<FetchResponse>(Fetch(healthy, 0), 12);
                Assert.Equal((short)ErrorCode.None, healthyFetch.Responses[0].Partitions[0].ErrorCode);
                Assert.Equal(8, healthyFetch.Responses[0].Partitions[0].HighWatermark);

                // Reported: DescribeLogDirs answers KAFKA_STORAGE_ERROR for it, and the heartbeats name it.
                var described = await c.RequestAsync<DescribeLogDirsResponse>(new DescribeLogDirsRequest { Topics = null }, 4);
                var byDir = described.Results.ToDictionary(r => LogDirFailureChannel.Normalize(r.LogDir), r => (ErrorCode)r.ErrorCode);
                Assert.Equal(ErrorCode.KafkaStorageError, byDir[failedDir]);
                Assert.Equal(ErrorCode.None, byDir[LogDirFailureChannel.Normalize(dirs[healthy])]);
                Assert.Equal([failedDir], broker.Replicas.Options.LogDirs.Offline.Select(LogDirFailureChannel.Normalize));
            }

            // A restart: the directory is back, the failed records are not.
            await using (var broker = await FreshetServer.StartAsync(new FreshetServerOptions { Properties = props, Loggers = loggers }))
            {
                var read = Clients.ReadAll(broker.BootstrapServers, Topic, 2, TimeSpan.FromSeconds(30));
                Assert.Equal(["kept0-0", "kept0-1", "kept1-0", "kept1-1", "kept2-0", "kept2-1"], read[failing].Select(Value));
                Assert.Equal(8, read[healthy].Count);
                await using var c = await RawKafkaClient.ConnectAsync(broker.BootstrapServers);
                Assert.Equal((ErrorCode.None, 6L), await ProduceAsync(c, failing, "again"));
            }
        }
        finally
        {
            try { Directory.Delete(root, recursive: true); }
            catch (IOException) { }
        }
    }

    /// <summary>
    /// A broker whose only log directory fails (an fsync, with log.flush.per.append=true) can hold no
    /// replica any more: it halts, as Kafka's broker does, saying why (Fatal), and stops serving; a
    /// restart recovers the directory without the failed records.
    /// </summary>
    [Fact]
    public async Task ABrokerWhoseEveryLogDirectoryFailedHaltsAndSaysWhy()
    {
        string root = Path.Combine(Path.GetTempPath(), "freshet-fsync-all-" + Guid.NewGuid().ToString("N")[..8]);
        string dir = Path.Combine(root, "logs");
        var props = new Dictionary<string, string>
        {
            ["log.dirs"] = dir,
            ["metadata.log.dir"] = Path.Combine(root, "meta"),
            ["listeners"] = "PLAINTEXT://127.0.0.1:0",
            ["log.flush.per.append"] = "true",
        };
        using var loggers = TestOutputLoggerProvider.Factory(output);
        var io = new FaultyStorageIo();
        try
        {
            await using (var broker = await FreshetServer.StartAsync(new FreshetServerOptions { Properties = props, Loggers = loggers, StorageIo = io }))
            {
                await Clients.CreateTopicAsync(broker.BootstrapServers, Topic, 1);
                await using var c = await RawKafkaClient.ConnectAsync(broker.BootstrapServers);
                Assert.Equal((ErrorCode.None, 0L), await ProduceAsync(c, 0, "kept"));
                Assert.False(broker.Fatal.IsCompleted);

                string failedDir = LogDirFailureChannel.Normalize(dir);
                io.FailFsync(p => p.StartsWith(failedDir + Path.DirectorySeparatorChar, StringComparison.Ordinal) && p.EndsWith(".log", StringComparison.Ordinal));
                // Never acknowledged: answered KAFKA_STORAGE_ERROR, or the connection closes unanswered when the
                // halt closes the listeners first (as a Kafka broker's halt drops it).
                try { Assert.Equal(ErrorCode.KafkaStorageError, (await ProduceAsync(c, 0, "lost")).Error); }
                catch (Exception e) when (e is EndOfStreamException or IOException) { output.WriteLine($"the produce was not answered: {e.GetType().Name}"); }

                var reason = await broker.Fatal.WaitAsync(TimeSpan.FromSeconds(60));
                Assert.Contains("every log directory has failed", reason.Message, StringComparison.Ordinal);
                Assert.Contains(failedDir, reason.Message, StringComparison.Ordinal);
                // Halted: the listener is closed.
                await Assert.ThrowsAnyAsync<Exception>(async () =>
                {
                    await using var again = await RawKafkaClient.ConnectAsync(broker.BootstrapServers);
                    await again.RequestAsync<ApiVersionsResponse>(new ApiVersionsRequest(), 0);
                });
            }

            await using (var broker = await FreshetServer.StartAsync(new FreshetServerOptions { Properties = props, Loggers = loggers }))
            {
                var read = Clients.ReadAll(broker.BootstrapServers, Topic, 1, TimeSpan.FromSeconds(30));
                Assert.Equal(["kept-0", "kept-1"], read[0].Select(Value));
            }
        }
        finally
        {
            try { Directory.Delete(root, recursive: true); }
            catch (IOException) { }
        }
    }

    private static string Value(Confluent.Kafka.ConsumeResult<byte[], byte[]> r) => Encoding.UTF8.GetString(r.Message.Value);

    /// <summary>A produce (acks=all) of one batch of two records "tag-0", "tag-1" to a partition; its error and base offset.</summary>
    internal static async Task<(ErrorCode Error, long BaseOffset)> ProduceAsync(RawKafkaClient c, int partition, string tag, string topic = Topic)
    {
        var request = new ProduceRequest { Acks = -1, TimeoutMs = 30_000 };
        request.TopicData.Add(new() { Name = topic, PartitionData = [new() { Index = partition, Records = new RecordSet(Batch(tag)) }] });
        var r = (await c.RequestAsync<ProduceResponse>(request, 9)).Responses[0].PartitionResponses[0];
        return ((ErrorCode)r.ErrorCode, r.BaseOffset);
    }

    internal static byte[] Batch(string tag)
    {
        using var b = new RecordBatchBuilder();
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        for (int i = 0; i < 2; i++) b.Append(now, null, Encoding.UTF8.GetBytes($"{tag}-{i}"));
        return b.Build();
    }

    private static FetchRequest Fetch(int partition, long offset)
    {
        var f = new FetchRequest { ReplicaId = -1, MaxWaitMs = 0, MinBytes = 0, MaxBytes = 1 << 20 };
        f.Topics.Add(new() { Topic = Topic, Partitions = [new() { Partition = partition, FetchOffset = offset, PartitionMaxBytes = 1 << 20 }] });
        return f;
    }

    private static ListOffsetsRequest LatestOffset(int partition)
    {
        var r = new ListOffsetsRequest { ReplicaId = -1 };
        r.Topics.Add(new() { Name = Topic, Partitions = [new() { PartitionIndex = partition, Timestamp = -1 }] });
        return r;
    }
}
