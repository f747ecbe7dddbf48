using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Freshet.Cli;

namespace Freshet.Integration.Tests.Support;

/// <summary>Confluent.Kafka clients against a test broker, with the bundled librdkafka (checked) and test-friendly timeouts.</summary>
public static class Clients
{
    static Clients() => KafkaClientLibrary.EnsureLoaded();

    public static string LibrdkafkaVersion => Library.VersionString;

    public static IAdminClient Admin(string bootstrap) =>
        new AdminClientBuilder(new AdminClientConfig { BootstrapServers = bootstrap, SocketConnectionSetupTimeoutMs = 10_000 }).Build();

    public static ProducerConfig ProducerConfig(string bootstrap) => new()
    {
        BootstrapServers = bootstrap,
        Acks = Acks.All,
        LingerMs = 5,
        MessageTimeoutMs = 60_000,
        SocketConnectionSetupTimeoutMs = 10_000,
    };

    public static ConsumerConfig ConsumerConfig(string bootstrap) => new()
    {
        BootstrapServers = bootstrap,
        GroupId = "test-" + Guid.NewGuid().ToString("N")[..8],
        EnableAutoCommit = false,
        EnableAutoOffsetStore = false,
        AutoOffsetReset = AutoOffsetReset.Earliest,
        EnablePartitionEof = true,
        FetchWaitMaxMs = 100,
        SocketConnectionSetupTimeoutMs = 10_000,
    };

    /// <summary>
    /// A synchronous commit, retried while the group's coordinator is being found or is loading: right after a
    /// broker started (or created __consumer_offsets) that can take a loaded machine seconds, and librdkafka
    /// gives a commit only a couple of quick retries, so an application retries it, as this does for up to 30 s.
    /// </summary>
    public static async Task CommitWhenCoordinatorReadyAsync<TKey, TValue>(IConsumer<TKey, TValue> consumer, List<TopicPartitionOffset> offsets)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                consumer.Commit(offsets);
                return;
            }
            catch (KafkaException e) when (e.Error.Code is ErrorCode.GroupLoadInProgress or ErrorCode.NotCoordinatorForGroup or ErrorCode.GroupCoordinatorNotAvailable
                                           && DateTime.UtcNow < deadline)
            {
                await Task.Delay(200);
            }
        }
    }

    public static async Task CreateTopicAsync(string bootstrap, string topic, int partitions, Dictionary<string, string>? configs = null)
    {
        using var admin = Admin(bootstrap);
        await admin.CreateTopicsAsync([new TopicSpecification { Name = topic, NumPartitions = partitions, ReplicationFactor = 1, Configs = configs }]);
    }

    /// <summary>
    /// Reads every partition of <paramref name="topic"/> from offset 0 until each reaches its end
    /// (as of when the partition EOF arrives), returning messages per partition in order.
    /// </summary>
    public static Dictionary<int, List<ConsumeResult<byte[], byte[]>>> ReadAll(string bootstrap, string topic, int partitions, TimeSpan timeout,
        Action<ConsumerConfig>? configure = null)
    {
        var config = ConsumerConfig(bootstrap);
        configure?.Invoke(config);
        using var consumer = new ConsumerBuilder<byte[], byte[]>(config).Build();
        consumer.Assign(Enumerable.Range(0, partitions).Select(p => new TopicPartitionOffset(topic, p, Offset.Beginning)));
        var result = Enumerable.Range(0, partitions).ToDictionary(p => p, _ => new List<ConsumeResult<byte[], byte[]>>());
        var atEnd = new HashSet<int>();
        var deadline = DateTime.UtcNow + timeout;
        while (atEnd.Count < partitions)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"read of {topic} did not reach the end of every partition within {timeout}");
            var cr = consumer.Consume(TimeSpan.FromMilliseconds(200));
            if (cr is null) continue;
            if (cr.IsPartitionEOF)
            {
                atEnd.Add(cr.Partition.Value);
                continue;
            }
            atEnd.Remove(cr.Partition.Value);
            result[cr.Partition.Value].Add(cr);
        }
        consumer.Close();
        return result;
    }
}
