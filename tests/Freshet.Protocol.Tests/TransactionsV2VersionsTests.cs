using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Protocol.Tests;

/// <summary>
/// The versions Kafka 4.0 added for transactions v2 (KIP-890 part 2), which the generator adds to
/// the October 2024 schemas through its overlays (tools/Freshet.ProtocolGen/overlay): Produce v12,
/// TxnOffsetCommit v5 (both version 11's / 4's fields again) and EndTxn v5 released, its response
/// carrying the producer id and epoch. GeneratedMessageRoundTripTests covers them at random values;
/// these spell out the bytes.
/// </summary>
public class TransactionsV2VersionsTests
{
    private static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal));

    private static void AssertEncodes(IMessage message, short version, string expectedHex)
    {
        byte[] expected = Hex(expectedHex);
        Assert.Equal(expected.Length, message.Size(version));
        Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(message.ToBytes(version)));
    }

    [Fact]
    public void TheRegistryHasKafka40sTransactionVersions()
    {
        Assert.Equal(12, ApiMessages.HighestVersion((short)ApiKey.Produce));
        Assert.Equal(12, ProduceResponse.HighestVersion);
        Assert.Equal(5, ApiMessages.HighestVersion((short)ApiKey.TxnOffsetCommit));
        Assert.Equal(5, TxnOffsetCommitResponse.HighestVersion);
        Assert.Equal(5, ApiMessages.HighestVersion((short)ApiKey.EndTxn));
        Assert.False(ApiMessages.IsLatestVersionUnstable((short)ApiKey.EndTxn), "Kafka 4.0 released EndTxn v5");
        // The new versions are flexible, with the flexible headers, like the versions before them.
        Assert.True(ApiMessages.IsFlexible((short)ApiKey.Produce, 12));
        Assert.Equal(2, ApiMessages.RequestHeaderVersion((short)ApiKey.Produce, 12));
        Assert.Equal(1, ApiMessages.ResponseHeaderVersion((short)ApiKey.Produce, 12));
        Assert.Equal(2, ApiMessages.RequestHeaderVersion((short)ApiKey.TxnOffsetCommit, 5));
        // What the overlays did not touch keeps the schemas' versions (the 4.1 ones are not added).
        Assert.Equal(5, ApiMessages.HighestVersion((short)ApiKey.InitProducerId));
        Assert.Equal(5, ApiMessages.HighestVersion((short)ApiKey.AddPartitionsToTxn));
        Assert.Equal(4, ApiMessages.HighestVersion((short)ApiKey.AddOffsetsToTxn));
    }

    [Fact]
    public void ProduceRequestV12IsVersion11sBody()
    {
        // Flexible (v9+): compact nullable string TransactionalId "tx" = 03 74 78; Acks -1 = ffff;
        // TimeoutMs 30000 = 00007530; TopicData: compact array of 1 = 02; Name "t" = 02 74;
        // PartitionData: 1 entry = 02; Index 0 = 00000000; Records 3 bytes, compact = 04 aabbcc;
        // then the tagged-field sections of the partition, the topic and the message: 00 00 00.
        var request = new ProduceRequest
        {
            TransactionalId = "tx",
            Acks = -1,
            TimeoutMs = 30000,
            TopicData =
            {
                new ProduceRequest.TopicProduceData
                {
                    Name = "t",
                    PartitionData = { new ProduceRequest.PartitionProduceData { Index = 0, Records = new RecordSet(new byte[] { 0xaa, 0xbb, 0xcc }) } },
                },
            },
        };
        const string hex = "03 7478 ffff 00007530 02 02 74 02 00000000 04 aabbcc 00 00 00";
        AssertEncodes(request, 12, hex);
        AssertEncodes(request, 11, hex);

        var decoded = MessageExtensions.Parse<ProduceRequest>(Hex(hex), 12);
        Assert.Equal("tx", decoded.TransactionalId);
        Assert.Equal(request, decoded);
    }

    [Fact]
    public void ProduceResponseV12IsVersion11sBody()
    {
        var response = new ProduceResponse
        {
            Responses =
            {
                new ProduceResponse.TopicProduceResponse
                {
                    Name = "t",
                    PartitionResponses = { new ProduceResponse.PartitionProduceResponse { Index = 1, BaseOffset = 5, LogAppendTimeMs = -1, LogStartOffset = 0 } },
                },
            },
        };
        Assert.Equal(Convert.ToHexString(response.ToBytes(11)), Convert.ToHexString(response.ToBytes(12)));
        Assert.Equal(response, MessageExtensions.Parse<ProduceResponse>(response.ToBytes(12), 12));
    }

    [Fact]
    public void TxnOffsetCommitV5IsVersion4sBody()
    {
        var request = new TxnOffsetCommitRequest
        {
            TransactionalId = "tx",
            GroupId = "g",
            ProducerId = 9,
            ProducerEpoch = 2,
            GenerationId = 4,
            MemberId = "m",
            Topics =
            {
                new TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic
                {
                    Name = "t",
                    Partitions = { new TxnOffsetCommitRequest.TxnOffsetCommitRequestPartition { PartitionIndex = 0, CommittedOffset = 42 } },
                },
            },
        };
        Assert.Equal(Convert.ToHexString(request.ToBytes(4)), Convert.ToHexString(request.ToBytes(5)));
        Assert.Equal(request, MessageExtensions.Parse<TxnOffsetCommitRequest>(request.ToBytes(5), 5));

        var response = new TxnOffsetCommitResponse { ThrottleTimeMs = 3 };
        Assert.Equal(Convert.ToHexString(response.ToBytes(4)), Convert.ToHexString(response.ToBytes(5)));
    }

    [Fact]
    public void EndTxnResponseV5CarriesTheNewProducerIdAndEpoch()
    {
        // ThrottleTimeMs 0 = 00000000; ErrorCode 0 = 0000; ProducerId 4660 = 0000000000001234;
        // ProducerEpoch 7 = 0007; no tagged fields = 00.
        var response = new EndTxnResponse { ThrottleTimeMs = 0, ErrorCode = 0, ProducerId = 0x1234, ProducerEpoch = 7 };
        const string v5 = "00000000 0000 0000000000001234 0007 00";
        AssertEncodes(response, 5, v5);
        var decoded = MessageExtensions.Parse<EndTxnResponse>(Hex(v5), 5);
        Assert.Equal(0x1234, decoded.ProducerId);
        Assert.Equal(7, decoded.ProducerEpoch);

        // Version 4 has no producer id or epoch: a decoder of v4 bytes gets the defaults (-1).
        AssertEncodes(response, 4, "00000000 0000 00");
        var old = MessageExtensions.Parse<EndTxnResponse>(Hex("00000000 0000 00"), 4);
        Assert.Equal(-1, old.ProducerId);
        Assert.Equal(-1, old.ProducerEpoch);
    }

    [Fact]
    public void EndTxnRequestV5IsVersion4sBody()
    {
        // TransactionalId "tx" = 03 7478; ProducerId 1 = 0000000000000001; ProducerEpoch 3 = 0003;
        // Committed true = 01; no tagged fields = 00.
        var request = new EndTxnRequest { TransactionalId = "tx", ProducerId = 1, ProducerEpoch = 3, Committed = true };
        const string hex = "03 7478 0000000000000001 0003 01 00";
        AssertEncodes(request, 5, hex);
        AssertEncodes(request, 4, hex);
        Assert.Equal(request, MessageExtensions.Parse<EndTxnRequest>(Hex(hex), 5));
    }
}
