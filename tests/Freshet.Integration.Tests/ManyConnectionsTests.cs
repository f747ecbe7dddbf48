using Freshet.Integration.Tests.Support;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;
using Freshet.Server;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests;

/// <summary>Thousands of connections at once, with pipelined requests answered in order on each.</summary>
public sealed class ManyConnectionsTests(ITestOutputHelper output)
{
    [Fact]
    public async Task AThousandConnectionsWithFiftyPipeliningProduceAndFetchKeepResponseOrder()
    {
        const int connections = 1000, active = 50, rounds = 20, recordsPerBatch = 10, partitions = 5;
        using var loggers = TestOutputLoggerProvider.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(null, loggers);
        const string topic = "crowd";
        await Clients.CreateTopicAsync(broker.BootstrapServers, topic, partitions);

        var clients = new List<RawKafkaClient>();
        try
        {
            for (int i = 0; i < connections; i++) clients.Add(await RawKafkaClient.ConnectAsync(broker.BootstrapServers));
            // Every connection handshakes.
            await Parallel.ForEachAsync(clients, new ParallelOptions { MaxDegreeOfParallelism = 64 }, async (c, _) =>
            {
                var v = await c.RequestAsync<ApiVersionsResponse>(new ApiVersionsRequest { ClientSoftwareName = "crowd", ClientSoftwareVersion = "1" }, 3);
                Assert.Equal((short)ErrorCode.None, v.ErrorCode);
            });
            Assert.True(broker.ConnectionCount >= connections, $"broker sees {broker.ConnectionCount} connections");

            // 50 of them pipeline produce, fetch and metadata requests without waiting, then check answers come back in order.
            await Parallel.ForEachAsync(Enumerable.Range(0, active), new ParallelOptions { MaxDegreeOfParallelism = active }, async (n, _) =>
            {
                var c = clients[n * (connections / active)];
                var sent = new List<(int Id, short Key, short Version)>();
                for (int r = 0; r < rounds; r++)
                {
                    var produce = BadInputTests.ProduceOf(topic, BadInputTests.Batch(recordsPerBatch), acks: 1);
                    produce.TopicData[0].PartitionData[0].Index = (n + r) % partitions;
                    sent.Add((await c.SendAsync(produce, 9), (short)ApiKey.Produce, 9));
                    var fetch = new FetchRequest { ReplicaId = -1, MaxWaitMs = 0, MinBytes = 0, MaxBytes = 1 << 20 };
                    fetch.Topics.Add(new() { Topic = topic, Partitions = [new() { Partition = n % partitions, FetchOffset = 0, PartitionMaxBytes = 65536 }] });
                    sent.Add((await c.SendAsync(fetch, 11), (short)ApiKey.Fetch, 11));
                    var md = new MetadataRequest { Topics = [new() { Name = topic }] };
                    sent.Add((await c.SendAsync(md, 9), (short)ApiKey.Metadata, 9));
                }
                foreach (var (id, key, version) in sent)
                {
                    var (got, body) = await c.ReadFrameAsync(key, version);
                    Assert.Equal(id, got); // responses in request order
                    switch (key)
                    {
                        case (short)ApiKey.Produce:
                            var pr = MessageExtensions.Parse<ProduceResponse>(body, version);
                            Assert.Equal((short)ErrorCode.None, pr.Responses[0].PartitionResponses[0].ErrorCode);
                            break;
                        case (short)ApiKey.Fetch:
                            var fr = MessageExtensions.Parse<FetchResponse>(body, version);
                            Assert.Equal((short)ErrorCode.None, fr.Responses[0].Partitions[0].ErrorCode);
                            break;
                        default:
                            var mr = MessageExtensions.Parse<MetadataResponse>(body, version);
                            Assert.Equal(partitions, mr.Topics[0].Partitions.Count);
                            break;
                    }
                }
            });

            // Nothing was lost: every produced record is in the topic.
            await using var check = await RawKafkaClient.ConnectAsync(broker.BootstrapServers);
            long total = 0;
            for (int p = 0; p < partitions; p++)
            {
                var lo = BadInputTests.LatestOffset(topic);
                lo.Topics[0].Partitions[0].PartitionIndex = p;
                var r = await check.RequestAsync<ListOffsetsResponse>(lo, 7);
                total += r.Topics[0].Partitions[0].Offset;
            }
            Assert.Equal((long)active * rounds * recordsPerBatch, total);

            // And every connection is still served.
            await Parallel.ForEachAsync(clients, new ParallelOptions { MaxDegreeOfParallelism = 64 }, async (c, _) =>
            {
                var v = await c.RequestAsync<ApiVersionsResponse>(new ApiVersionsRequest(), 0);
                Assert.Equal((short)ErrorCode.None, v.ErrorCode);
            });
        }
        finally
        {
            foreach (var c in clients) await c.DisposeAsync();
        }
    }
}
