using System.Text;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Freshet.Integration.Tests.Support;
using Freshet.Server;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests;

/// <summary>Topic, config, cluster and offset administration through Confluent.Kafka's admin client.</summary>
public sealed class AdminTests(ITestOutputHelper output) : IAsyncLifetime
{
    private FreshetServer _broker = null!;
    private IAdminClient _admin = null!;
    private readonly Microsoft.Extensions.Logging.ILoggerFactory _loggers = TestOutputLoggerProvider.Factory(output);

    public async Task InitializeAsync()
    {
        _broker = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string> { ["num.partitions"] = "2", ["log.retention.hours"] = "24" }, _loggers);
        _admin = Clients.Admin(_broker.BootstrapServers);
    }

    public async Task DisposeAsync()
    {
        _admin.Dispose();
        await _broker.DisposeAsync();
        _loggers.Dispose();
    }

    private static string Name(string prefix) => prefix + "-" + Guid.NewGuid().ToString("N")[..6];

    [Fact]
    public async Task CreateListDescribeAndDeleteTopics()
    {
        string a = Name("a"), b = Name("b");
        await _admin.CreateTopicsAsync([new TopicSpecification { Name = a, NumPartitions = 3, ReplicationFactor = 1 }, new TopicSpecification { Name = b, NumPartitions = -1, ReplicationFactor = -1 }]);
        var md = _admin.GetMetadata(TimeSpan.FromSeconds(10));
        Assert.Equal(3, md.Topics.Single(t => t.Topic == a).Partitions.Count);
        Assert.Equal(2, md.Topics.Single(t => t.Topic == b).Partitions.Count); // num.partitions
        Assert.All(md.Topics.Single(t => t.Topic == a).Partitions, p =>
        {
            Assert.Equal(1, p.Leader);
            Assert.Equal([1], p.Replicas);
            Assert.Equal([1], p.InSyncReplicas);
        });

        var described = await _admin.DescribeTopicsAsync(TopicCollection.OfTopicNames([a]));
        var d = Assert.Single(described.TopicDescriptions);
        Assert.Equal(a, d.Name);
        Assert.Equal(3, d.Partitions.Count);
        Assert.False(d.TopicId.ToString() == Guid.Empty.ToString());

        await _admin.DeleteTopicsAsync([a]);
        md = _admin.GetMetadata(TimeSpan.FromSeconds(10));
        Assert.DoesNotContain(md.Topics, t => t.Topic == a);
        Assert.Contains(md.Topics, t => t.Topic == b);
    }

    [Fact]
    public async Task CreateTopicErrorsUseKafkasCodes()
    {
        string a = Name("dup");
        await _admin.CreateTopicsAsync([new TopicSpecification { Name = a, NumPartitions = 1, ReplicationFactor = 1 }]);
        async Task<ErrorCode> CreateError(TopicSpecification spec)
        {
            var e = await Assert.ThrowsAsync<CreateTopicsException>(() => _admin.CreateTopicsAsync([spec]));
            return e.Results.Single().Error.Code;
        }
        Assert.Equal(ErrorCode.TopicAlreadyExists, await CreateError(new TopicSpecification { Name = a, NumPartitions = 1, ReplicationFactor = 1 }));
        Assert.Equal(ErrorCode.TopicException, await CreateError(new TopicSpecification { Name = "bad name!", NumPartitions = 1, ReplicationFactor = 1 }));
        Assert.Equal(ErrorCode.InvalidReplicationFactor, await CreateError(new TopicSpecification { Name = Name("rf"), NumPartitions = 1, ReplicationFactor = 3 }));
        Assert.Equal(ErrorCode.InvalidConfig, await CreateError(new TopicSpecification { Name = Name("cfg"), NumPartitions = 1, ReplicationFactor = 1, Configs = new() { ["retention.ms"] = "soon" } }));
        Assert.Equal(ErrorCode.InvalidConfig, await CreateError(new TopicSpecification { Name = Name("cfg"), NumPartitions = 1, ReplicationFactor = 1, Configs = new() { ["no.such.config"] = "1" } }));

        var del = await Assert.ThrowsAsync<DeleteTopicsException>(() => _admin.DeleteTopicsAsync([Name("missing")]));
        Assert.Equal(ErrorCode.UnknownTopicOrPart, del.Results.Single().Error.Code);
    }

    [Fact]
    public async Task CreatePartitionsGrowsATopicAndRefusesToShrinkIt()
    {
        string t = Name("grow");
        await _admin.CreateTopicsAsync([new TopicSpecification { Name = t, NumPartitions = 3, ReplicationFactor = 1 }]);
        await _admin.CreatePartitionsAsync([new PartitionsSpecification { Topic = t, IncreaseTo = 6 }]);
        Assert.Equal(6, _admin.GetMetadata(t, TimeSpan.FromSeconds(10)).Topics[0].Partitions.Count);
        var e = await Assert.ThrowsAsync<CreatePartitionsException>(() => _admin.CreatePartitionsAsync([new PartitionsSpecification { Topic = t, IncreaseTo = 4 }]));
        Assert.Equal(ErrorCode.InvalidPartitions, e.Results.Single().Error.Code);

        // A new partition takes writes.
        using var p = new ProducerBuilder<Null, string>(Clients.ProducerConfig(_broker.BootstrapServers)).Build();
        var r = await p.ProduceAsync(new TopicPartition(t, 5), new Message<Null, string> { Value = "in the new partition" });
        Assert.Equal(0, r.Offset.Value);
    }

    [Fact]
    public async Task DescribeAndIncrementallyAlterTopicConfigs()
    {
        string t = Name("cfg");
        await _admin.CreateTopicsAsync([new TopicSpecification { Name = t, NumPartitions = 1, ReplicationFactor = 1, Configs = new() { ["cleanup.policy"] = "compact" } }]);
        var resource = new ConfigResource { Type = ResourceType.Topic, Name = t };
        var before = (await _admin.DescribeConfigsAsync([resource])).Single().Entries;
        Assert.Equal("compact", before["cleanup.policy"].Value);
        Assert.Equal(ConfigSource.DynamicTopicConfig, before["cleanup.policy"].Source);
        Assert.Equal("86400000", before["retention.ms"].Value); // log.retention.hours=24 on this broker
        Assert.Equal(ConfigSource.StaticBrokerConfig, before["retention.ms"].Source);
        Assert.Equal("1073741824", before["segment.bytes"].Value);
        Assert.Equal(ConfigSource.DefaultConfig, before["segment.bytes"].Source);

        var alter = new Dictionary<ConfigResource, List<ConfigEntry>>
        {
            [resource] =
            [
                new ConfigEntry { Name = "retention.ms", Value = "3600000", IncrementalOperation = AlterConfigOpType.Set },
                new ConfigEntry { Name = "cleanup.policy", IncrementalOperation = AlterConfigOpType.Delete },
            ],
        };
        await _admin.IncrementalAlterConfigsAsync(alter);
        var after = (await _admin.DescribeConfigsAsync([resource])).Single().Entries;
        Assert.Equal("3600000", after["retention.ms"].Value);
        Assert.Equal(ConfigSource.DynamicTopicConfig, after["retention.ms"].Source);
        Assert.Equal("delete", after["cleanup.policy"].Value);

        var bad = new Dictionary<ConfigResource, List<ConfigEntry>>
        {
            [resource] = [new ConfigEntry { Name = "segment.bytes", Value = "not-a-number", IncrementalOperation = AlterConfigOpType.Set }],
        };
        var e = await Assert.ThrowsAsync<IncrementalAlterConfigsException>(() => _admin.IncrementalAlterConfigsAsync(bad));
        Assert.Equal(ErrorCode.InvalidConfig, e.Results.Single().Error.Code);

        var broker = (await _admin.DescribeConfigsAsync([new ConfigResource { Type = ResourceType.Broker, Name = "1" }])).Single().Entries;
        Assert.Equal("2", broker["num.partitions"].Value);
        Assert.Equal("true", broker["auto.create.topics.enable"].Value);
    }

    [Fact]
    public async Task DescribeClusterNamesThisNode()
    {
        var cluster = await _admin.DescribeClusterAsync();
        Assert.Equal(_broker.ClusterId, cluster.ClusterId);
        var node = Assert.Single(cluster.Nodes);
        Assert.Equal(1, node.Id);
        Assert.Equal(1, cluster.Controller?.Id);
    }

    [Fact]
    public async Task ListOffsetsByTimeAndDeleteRecords()
    {
        string t = Name("offsets");
        await _admin.CreateTopicsAsync([new TopicSpecification { Name = t, NumPartitions = 1, ReplicationFactor = 1 }]);
        long baseTime = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 100_000;
        using (var p = new ProducerBuilder<Null, string>(Clients.ProducerConfig(_broker.BootstrapServers)).Build())
        {
            for (int i = 0; i < 100; i++)
            {
                // Timestamps 1 s apart, except record 70 which is the newest of all.
                long ts = i == 70 ? baseTime + 500_000 : baseTime + i * 1000;
                p.Produce(t, new Message<Null, string> { Value = $"v{i}", Timestamp = new Timestamp(ts, TimestampType.CreateTime) });
                if (i % 10 == 9) p.Flush(TimeSpan.FromSeconds(10)); // several batches
            }
            p.Flush(TimeSpan.FromSeconds(10));
        }
        var tp = new TopicPartition(t, 0);
        var result = await _admin.ListOffsetsAsync([
            new TopicPartitionOffsetSpec { TopicPartition = tp, OffsetSpec = OffsetSpec.Earliest() },
        ]);
        Assert.Equal(0, result.ResultInfos.Single().TopicPartitionOffsetError.Offset.Value);
        result = await _admin.ListOffsetsAsync([new TopicPartitionOffsetSpec { TopicPartition = tp, OffsetSpec = OffsetSpec.Latest() }]);
        Assert.Equal(100, result.ResultInfos.Single().TopicPartitionOffsetError.Offset.Value);
        result = await _admin.ListOffsetsAsync([new TopicPartitionOffsetSpec { TopicPartition = tp, OffsetSpec = OffsetSpec.MaxTimestamp() }]);
        Assert.Equal(70, result.ResultInfos.Single().TopicPartitionOffsetError.Offset.Value);
        result = await _admin.ListOffsetsAsync([new TopicPartitionOffsetSpec { TopicPartition = tp, OffsetSpec = OffsetSpec.ForTimestamp(baseTime + 42_500) }]);
        Assert.Equal(43, result.ResultInfos.Single().TopicPartitionOffsetError.Offset.Value);

        using var consumer = new ConsumerBuilder<Ignore, string>(Clients.ConsumerConfig(_broker.BootstrapServers)).Build();
        var byTime = consumer.OffsetsForTimes([new TopicPartitionTimestamp(tp, new Timestamp(baseTime + 10_000, TimestampType.CreateTime))], TimeSpan.FromSeconds(10));
        Assert.Equal(10, byTime.Single().Offset.Value);
        var future = consumer.OffsetsForTimes([new TopicPartitionTimestamp(tp, new Timestamp(baseTime + 900_000, TimestampType.CreateTime))], TimeSpan.FromSeconds(10));
        Assert.Equal(Offset.End, future.Single().Offset);

        var deleted = await _admin.DeleteRecordsAsync([new TopicPartitionOffset(tp, 40)]);
        Assert.Equal(40, deleted.Single().Offset.Value);
        var w = consumer.QueryWatermarkOffsets(tp, TimeSpan.FromSeconds(10));
        Assert.Equal(40, w.Low.Value);
        Assert.Equal(100, w.High.Value);
        var rest = Clients.ReadAll(_broker.BootstrapServers, t, 1, TimeSpan.FromSeconds(30))[0];
        Assert.Equal(60, rest.Count);
        Assert.Equal("v40", Encoding.UTF8.GetString(rest[0].Message.Value));
    }

    [Fact]
    public async Task MetadataForAMissingTopicCreatesItWhenAutoCreateIsOn()
    {
        string t = Name("auto");
        using var p = new ProducerBuilder<Null, string>(Clients.ProducerConfig(_broker.BootstrapServers)).Build();
        var r = await p.ProduceAsync(t, new Message<Null, string> { Value = "first" });
        Assert.Equal(PersistenceStatus.Persisted, r.Status);
        Assert.Equal(2, _admin.GetMetadata(t, TimeSpan.FromSeconds(10)).Topics[0].Partitions.Count);
    }
}

/// <summary>DescribeLogDirs over the wire at every version: what kafka-log-dirs.sh shows.</summary>
public sealed class LogDirsTests
{
    [Fact]
    public async Task EveryPartitionOfTheLogDirWithItsSizeOnDisk()
    {
        await using var broker = await FreshetServer.StartEmbeddedAsync();
        string topic = "dirs-" + Guid.NewGuid().ToString("N")[..6];
        await Clients.CreateTopicAsync(broker.BootstrapServers, topic, 2);
        using (var p = new ProducerBuilder<Null, byte[]>(Clients.ProducerConfig(broker.BootstrapServers)).Build())
        {
            for (int i = 0; i < 100; i++) p.Produce(new TopicPartition(topic, 1), new Message<Null, byte[]> { Value = new byte[1000] });
            p.Flush(TimeSpan.FromSeconds(10));
        }
        await using var raw = await RawKafkaClient.ConnectAsync(broker.BootstrapServers);
        for (short v = 0; v <= 4; v++)
        {
            var all = await raw.RequestAsync<Protocol.Messages.DescribeLogDirsResponse>(new Protocol.Messages.DescribeLogDirsRequest { Topics = null }, v);
            var dir = Assert.Single(all.Results);
            Assert.Equal(Path.GetFullPath(broker.Config.LogDirs[0]), dir.LogDir);
            var t = Assert.Single(dir.Topics, x => x.Name == topic);
            Assert.Equal([0, 1], t.Partitions.Select(x => x.PartitionIndex));
            Assert.Equal(0, t.Partitions[0].PartitionSize);
            Assert.True(t.Partitions[1].PartitionSize > 100_000, $"v{v}: partition 1 holds {t.Partitions[1].PartitionSize} bytes");
            Assert.All(t.Partitions, x => Assert.Equal(0, x.OffsetLag));
            if (v >= 4)
            {
                Assert.True(dir.TotalBytes > 0 && dir.UsableBytes > 0 && dir.UsableBytes <= dir.TotalBytes);
            }

            // Only what is asked for; partitions the broker does not have are left out.
            var some = await raw.RequestAsync<Protocol.Messages.DescribeLogDirsResponse>(new Protocol.Messages.DescribeLogDirsRequest
            {
                Topics = [new() { Topic = topic, Partitions = [1, 7] }],
            }, v);
            var only = Assert.Single(Assert.Single(some.Results).Topics);
            Assert.Equal([1], only.Partitions.Select(x => x.PartitionIndex));
        }
    }
}

/// <summary>ElectLeaders through Confluent.Kafka, and the reassignment APIs over the wire, on one node.</summary>
public sealed class LeadershipAdminTests
{
    [Fact]
    public async Task ElectionAndReassignmentAnswersOnASingleNode()
    {
        await using var broker = await FreshetServer.StartEmbeddedAsync();
        string topic = "elect-" + Guid.NewGuid().ToString("N")[..6];
        await Clients.CreateTopicAsync(broker.BootstrapServers, topic, 2);
        using var admin = Clients.Admin(broker.BootstrapServers);
        var elected = await Assert.ThrowsAsync<ElectLeadersException>(() =>
            admin.ElectLeadersAsync(ElectionType.Preferred, [new TopicPartition(topic, 0), new TopicPartition(topic, 5)]));
        var byPartition = elected.Results.TopicPartitions.ToDictionary(p => p.Partition.Value, p => p.Error.Code);
        Assert.Equal(ErrorCode.ElectionNotNeeded, byPartition[0]);
        Assert.Equal(ErrorCode.UnknownTopicOrPart, byPartition[5]);

        await using var raw = await RawKafkaClient.ConnectAsync(broker.BootstrapServers);
        var alter = await raw.RequestAsync<Protocol.Messages.AlterPartitionReassignmentsResponse>(new Protocol.Messages.AlterPartitionReassignmentsRequest
        {
            Topics = [new() { Name = topic, Partitions = [new() { PartitionIndex = 0, Replicas = [2] }, new() { PartitionIndex = 1, Replicas = null }] }],
        }, 0);
        var results = Assert.Single(alter.Responses).Partitions.ToDictionary(p => p.PartitionIndex, p => (Protocol.ErrorCode)p.ErrorCode);
        Assert.Equal(Protocol.ErrorCode.InvalidReplicaAssignment, results[0]); // broker 2 does not exist
        Assert.Equal(Protocol.ErrorCode.NoReassignmentInProgress, results[1]);
        var list = await raw.RequestAsync<Protocol.Messages.ListPartitionReassignmentsResponse>(new Protocol.Messages.ListPartitionReassignmentsRequest { Topics = null }, 0);
        Assert.Empty(list.Topics);
        Assert.Equal(0, list.ErrorCode);
    }
}
