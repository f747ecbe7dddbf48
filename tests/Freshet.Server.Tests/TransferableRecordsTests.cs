using Freshet.Broker;
using Freshet.Network;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using Freshet.Storage.Segments;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Server.Tests;

/// <summary>
/// The network layer sends a response's <see cref="TransferableRecords"/> by letting them write
/// themselves to the connection, whatever their kind: a file range (sendfile) and records of a kind
/// the network layer has never heard of arrive whole, between the response's other fields.
/// </summary>
public sealed class TransferableRecordsTests
{
    /// <summary>Records of a kind only this test knows: written in two pieces from memory.</summary>
    private sealed class InTwoPieces(byte[] bytes) : TransferableRecords
    {
        public override int Length => bytes.Length;

        public override async ValueTask WriteToAsync(IRecordTransferTarget target, CancellationToken ct)
        {
            int half = bytes.Length / 2;
            await target.WriteAsync(bytes.AsMemory(0, half), ct);
            await target.WriteAsync(bytes.AsMemory(half), ct);
        }
    }

    private static byte[] Batch(int records)
    {
        using var b = new RecordBatchBuilder();
        for (int i = 0; i < records; i++) b.Append(0, null, new byte[100]);
        return b.Build();
    }

    private static FetchResponse Respond(params RecordSet[] partitions) => new()
    {
        Responses =
        [
            new FetchResponse.FetchableTopicResponse
            {
                Topic = "t",
                TopicId = Uuid.OneUuid,
                Partitions = [.. partitions.Select((r, i) => new FetchResponse.PartitionData { PartitionIndex = i, HighWatermark = 7, Records = r })],
            },
        ],
    };

    [Fact]
    public async Task RecordsOfAnyKindAreSentWholeBetweenTheResponsesFields()
    {
        byte[] inMemory = Batch(3), inFile = Batch(50);
        string path = Path.Combine(Path.GetTempPath(), $"freshet-transfer-{Guid.NewGuid():N}.log");
        // The range sits in the middle of the file, as a fetched range of a segment does.
        await File.WriteAllBytesAsync(path, [.. new byte[123], .. inFile, .. new byte[77]]);
        try
        {
            using var handle = File.OpenHandle(path);
            var dispatcher = new RequestDispatcher();
            dispatcher.Register(ApiKey.Fetch, (_, _) =>
                ValueTask.FromResult<IApiMessage?>(Respond(new InTwoPieces(inMemory), new FileRecords(handle, 123, inFile.Length), new InTwoPieces(inMemory))));
            await using var sockets = new SocketServer(new NetworkOptions { Listeners = [new ListenerEndpoint("PLAINTEXT", "127.0.0.1", 0)] },
                dispatcher, NullLoggerFactory.Instance);
            sockets.Bind();
            sockets.StartAccepting(["PLAINTEXT"]);
            var port = sockets.BoundEndpoints[0].EndPoint.Port;
            await using var client = new NodeClient(_ => ("127.0.0.1", port), new NodeClientOptions { ClientId = "transfer-test" },
                NullLogger<NodeClient>.Instance);

            for (int round = 0; round < 3; round++)
            {
                var response = await client.SendAsync(1, new FetchRequest { ReplicaId = -1, MaxBytes = 1 << 20 }, 12, CancellationToken.None)
                    .WaitAsync(TimeSpan.FromSeconds(60));
                var partitions = Assert.Single(response.Responses).Partitions;
                Assert.Equal(3, partitions.Count);
                Assert.Equal(inMemory, partitions[0].Records!.Memory.ToArray());
                Assert.Equal(inFile, partitions[1].Records!.Memory.ToArray());
                Assert.Equal(inMemory, partitions[2].Records!.Memory.ToArray());
                Assert.All(partitions, p => Assert.Equal(7, p.HighWatermark));
            }
        }
        finally
        {
            File.Delete(path);
        }
    }
}
