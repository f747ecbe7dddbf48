using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using ErrorCode = Freshet.Protocol.ErrorCode;

namespace Freshet.Integration.Tests;

/// <summary>Topics, configs and idempotent-producer state survive restarts, clean and SIGKILL.</summary>
public sealed class DurabilityTests
{
    [Fact]
    public async Task TopicsAndConfigsSurviveARestart()
    {
        await using var broker = new BrokerProcess();
        await broker.StartAsync();
        using (var admin = Clients.Admin(broker.BootstrapServers))
        {
            await admin.CreateTopicsAsync([new TopicSpecification { Name = "kept", NumPartitions = 4, ReplicationFactor = 1, Configs = new() { ["retention.ms"] = "123456" } }]);
            await admin.CreateTopicsAsync([new TopicSpecification { Name = "dropped", NumPartitions = 1, ReplicationFactor = 1 }]);
            await admin.DeleteTopicsAsync(["dropped"]);
        }
        await broker.StopAsync();
        await broker.StartAsync();
        using (var admin = Clients.Admin(broker.BootstrapServers))
        {
            var md = admin.GetMetadata(TimeSpan.FromSeconds(10));
            Assert.Equal(4, md.Topics.Single(t => t.Topic == "kept").Partitions.Count);
            Assert.DoesNotContain(md.Topics, t => t.Topic == "dropped");
            var cfg = (await admin.DescribeConfigsAsync([new ConfigResource { Type = ResourceType.Topic, Name = "kept" }])).Single().Entries;
            Assert.Equal("123456", cfg["retention.ms"].Value);
        }
        Assert.False(Directory.Exists(Path.Combine(broker.DataDir, "dropped-0")));
    }

    [Fact]
    public async Task IdempotentProducerStateIsRebuiltAfterSigkill()
    {
        await using var broker = new BrokerProcess(new() { ["log.segment.bytes"] = "4096" });
        await broker.StartAsync();
        const string topic = "idem-restart";
        await Clients.CreateTopicAsync(broker.BootstrapServers, topic, 1);

        long pid;
        await using (var c = await RawKafkaClient.ConnectAsync(broker.BootstrapServers))
        {
            var init = await c.RequestAsync<InitProducerIdResponse>(new InitProducerIdRequest { TransactionalId = null, TransactionTimeoutMs = 60000 }, 4);
            Assert.Equal((short)ErrorCode.None, init.ErrorCode);
            pid = init.ProducerId;
            // 30 batches of 10 records: sequences 0..299, across several segments (segment.bytes=4096).
            for (int b = 0; b < 30; b++)
            {
                var r = await c.RequestAsync<ProduceResponse>(BadInputTests.ProduceOf(topic, IdempotentBatch(pid, 0, b * 10, 10)), 9);
                Assert.Equal((short)ErrorCode.None, r.Responses[0].PartitionResponses[0].ErrorCode);
                Assert.Equal(b * 10, r.Responses[0].PartitionResponses[0].BaseOffset);
            }
        }
        await broker.KillAsync();
        await broker.StartAsync();
        await using (var c = await RawKafkaClient.ConnectAsync(broker.BootstrapServers))
        {
            // A retry of the last batch is recognised and answered with its original offset.
            var dup = await c.RequestAsync<ProduceResponse>(BadInputTests.ProduceOf(topic, IdempotentBatch(pid, 0, 290, 10)), 9);
            Assert.Equal((short)ErrorCode.None, dup.Responses[0].PartitionResponses[0].ErrorCode);
            Assert.Equal(290, dup.Responses[0].PartitionResponses[0].BaseOffset);
            // A gap is refused; the next sequence is accepted right after the last offset.
            var gap = await c.RequestAsync<ProduceResponse>(BadInputTests.ProduceOf(topic, IdempotentBatch(pid, 0, 320, 10)), 9);
            Assert.Equal((short)ErrorCode.OutOfOrderSequenceNumber, gap.Responses[0].PartitionResponses[0].ErrorCode);
            var next = await c.RequestAsync<ProduceResponse>(BadInputTests.ProduceOf(topic, IdempotentBatch(pid, 0, 300, 10)), 9);
            Assert.Equal((short)ErrorCode.None, next.Responses[0].PartitionResponses[0].ErrorCode);
            Assert.Equal(300, next.Responses[0].PartitionResponses[0].BaseOffset);
            // An older epoch is fenced.
            var bumped = await c.RequestAsync<ProduceResponse>(BadInputTests.ProduceOf(topic, IdempotentBatch(pid, 1, 0, 10)), 9);
            Assert.Equal((short)ErrorCode.None, bumped.Responses[0].PartitionResponses[0].ErrorCode);
            var fenced = await c.RequestAsync<ProduceResponse>(BadInputTests.ProduceOf(topic, IdempotentBatch(pid, 0, 310, 10)), 9);
            Assert.Equal((short)ErrorCode.InvalidProducerEpoch, fenced.Responses[0].PartitionResponses[0].ErrorCode);
        }
        var all = Clients.ReadAll(broker.BootstrapServers, topic, 1, TimeSpan.FromSeconds(30))[0];
        Assert.Equal(320, all.Count);
    }

    private static byte[] IdempotentBatch(long producerId, short epoch, int baseSequence, int records)
    {
        using var b = new RecordBatchBuilder { ProducerId = producerId, ProducerEpoch = epoch, BaseSequence = baseSequence };
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        for (int i = 0; i < records; i++) b.Append(now, null, System.Text.Encoding.UTF8.GetBytes($"seq-{baseSequence + i}"));
        return b.Build();
    }
}
