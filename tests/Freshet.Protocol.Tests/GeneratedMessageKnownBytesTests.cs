using Freshet.Protocol.CoordinatorRecords;
using Freshet.Protocol.Messages;
using Freshet.Protocol.MetadataRecords;
using Freshet.Protocol.Wire;

namespace Freshet.Protocol.Tests;

/// <summary>
/// Generated classes against bytes worked out by hand from the protocol rules (each test spells
/// the bytes out), plus unknown tagged fields, nulls and truncated input.
/// </summary>
public class GeneratedMessageKnownBytesTests
{
    private static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal));

    private static void AssertEncodes(IMessage message, short version, string expectedHex)
    {
        byte[] expected = Hex(expectedHex);
        Assert.Equal(expected.Length, message.Size(version));
        Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(message.ToBytes(version)));
    }

    [Fact]
    public void ApiVersionsRequestV3()
    {
        // v3 is flexible: compact strings (uvarint length+1), then an empty tagged-field section.
        //   ClientSoftwareName    "freshet": 08 66 72 65 73 68 65 74
        //   ClientSoftwareVersion "1.0":     04 31 2e 30
        //   tagged fields: none              00
        var request = new ApiVersionsRequest { ClientSoftwareName = "freshet", ClientSoftwareVersion = "1.0" };
        const string hex = "08 66726573686574 04 312e30 00";
        AssertEncodes(request, 3, hex);

        var decoded = MessageExtensions.Parse<ApiVersionsRequest>(Hex(hex), 3);
        Assert.Equal("freshet", decoded.ClientSoftwareName);
        Assert.Equal("1.0", decoded.ClientSoftwareVersion);
        Assert.Equal(request, decoded);

        // v0-v2 have no fields at all.
        AssertEncodes(request, 2, "");
    }

    [Fact]
    public void RequestHeaderV1()
    {
        // RequestApiKey 3 (Metadata): 00 03; RequestApiVersion 0: 00 00; CorrelationId 7: 00 00 00 07;
        // ClientId "cli", int16 length: 00 03 63 6c 69.
        var header = new RequestHeader { RequestApiKey = 3, RequestApiVersion = 0, CorrelationId = 7, ClientId = "cli" };
        AssertEncodes(header, 1, "0003 0000 00000007 0003 636c69");

        // A null client id is length -1.
        header.ClientId = null;
        AssertEncodes(header, 1, "0003 0000 00000007 ffff");
        Assert.Null(MessageExtensions.Parse<RequestHeader>(Hex("0003 0000 00000007 ffff"), 1).ClientId);

        // v0 (ControlledShutdown v0 only) has no client id.
        AssertEncodes(header, 0, "0003 0000 00000007");
    }

    [Fact]
    public void RequestHeaderV2KeepsTheOldClientIdEncoding()
    {
        // RequestApiKey 18 (ApiVersions): 00 12; RequestApiVersion 3: 00 03; CorrelationId 42: 00 00 00 2a;
        // ClientId "cli" still with an int16 length (its flexibleVersions is "none"): 00 03 63 6c 69;
        // then the tagged-field section of a flexible header: 00.
        var header = new RequestHeader { RequestApiKey = 18, RequestApiVersion = 3, CorrelationId = 42, ClientId = "cli" };
        const string hex = "0012 0003 0000002a 0003 636c69 00";
        AssertEncodes(header, 2, hex);
        Assert.Equal(header, MessageExtensions.Parse<RequestHeader>(Hex(hex), 2));
    }

    [Fact]
    public void ResponseHeaderV1()
    {
        // CorrelationId 42: 00 00 00 2a; tagged fields: 00.
        AssertEncodes(new ResponseHeader { CorrelationId = 42 }, 1, "0000002a 00");
        AssertEncodes(new ResponseHeader { CorrelationId = 42 }, 0, "0000002a");
    }

    [Fact]
    public void MetadataRequestV0WithOneTopic()
    {
        // Topics: int32 count 1: 00 00 00 01; topic Name "foo", int16 length: 00 03 66 6f 6f.
        var request = new MetadataRequest { Topics = [new MetadataRequest.MetadataRequestTopic { Name = "foo" }] };
        const string hex = "00000001 0003 666f6f";
        AssertEncodes(request, 0, hex);
        var decoded = MessageExtensions.Parse<MetadataRequest>(Hex(hex), 0);
        Assert.Equal("foo", Assert.Single(decoded.Topics!).Name);
        // Fields added after v0 keep their schema defaults.
        Assert.True(decoded.AllowAutoTopicCreation);
    }

    [Fact]
    public void MetadataRequestNullTopics()
    {
        // Null Topics ("all topics") is allowed from v1: int32 -1.
        var request = new MetadataRequest { Topics = null, AllowAutoTopicCreation = false };
        AssertEncodes(request, 1, "ffffffff");
        Assert.Null(MessageExtensions.Parse<MetadataRequest>(Hex("ffffffff"), 1).Topics);

        // v0 allows no null: writing throws, reading a -1 count is a protocol error.
        var e = Assert.Throws<InvalidOperationException>(() => request.ToBytes(0));
        Assert.Contains("MetadataRequest.Topics", e.Message, StringComparison.Ordinal);
        Assert.Throws<ProtocolException>(() => MessageExtensions.Parse<MetadataRequest>(Hex("ffffffff"), 0));
    }

    [Fact]
    public void MetadataRequestV9IsCompact()
    {
        // Topics compact array of 1: 02; topic Name compact "foo": 04 66 6f 6f; topic tagged fields: 00;
        // AllowAutoTopicCreation true: 01; IncludeClusterAuthorizedOperations (v8-10) false: 00;
        // IncludeTopicAuthorizedOperations false: 00; tagged fields: 00. (TopicId starts at v10.)
        var request = new MetadataRequest { Topics = [new MetadataRequest.MetadataRequestTopic { Name = "foo" }] };
        AssertEncodes(request, 9, "02 04666f6f 00 01 00 00 00");
    }

    [Fact]
    public void UnknownTaggedFieldsRoundTrip()
    {
        // RequestHeader v2 with two tagged fields no schema defines:
        //   count 2: 02; tag 5, size 2, ab cd: 05 02 ab cd; tag 300 (uvarint ac 02), size 0: ac02 00.
        const string hex = "0012 0003 0000002a 0003 636c69 02 05 02 abcd ac02 00";
        var header = MessageExtensions.Parse<RequestHeader>(Hex(hex), 2);
        Assert.NotNull(header.UnknownTaggedFields);
        Assert.Equal(new[] { new RawTaggedField(5, [0xab, 0xcd]), new RawTaggedField(300, []) }, header.UnknownTaggedFields);
        AssertEncodes(header, 2, hex);
        // A non-flexible version has no tagged fields to carry them.
        AssertEncodes(header, 1, "0012 0003 0000002a 0003 636c69");
    }

    [Fact]
    public void UnknownTaggedFieldsInterleaveWithKnownOnesInTagOrder()
    {
        // FetchRequest v12 knows tag 0 (ClusterId) but not tag 1 (ReplicaState, v15+). Written:
        //   count 2: 02; tag 0, size 2, compact "c": 00 02 02 63; tag 1 kept raw: 01 01 2a.
        var request = new FetchRequest { ClusterId = "c", UnknownTaggedFields = [new RawTaggedField(1, [0x2a])] };
        byte[] v12 = request.ToBytes(12);
        Assert.EndsWith("02000202630101" + "2A", Convert.ToHexString(v12), StringComparison.Ordinal);
        var decoded = MessageExtensions.Parse<FetchRequest>(v12, 12);
        Assert.Equal("c", decoded.ClusterId);
        Assert.Equal(new[] { new RawTaggedField(1, [0x2a]) }, decoded.UnknownTaggedFields);

        // At v15 an unknown tag 0 goes before the known tag 1 (ReplicaState: ReplicaId 1, ReplicaEpoch 2,
        // its own empty tagged section: 13 bytes):
        //   02 | 00 02 02 78 | 01 0d 00000001 0000000000000002 00
        request = new FetchRequest
        {
            ReplicaState = new FetchRequest.ReplicaStateData { ReplicaId = 1, ReplicaEpoch = 2 },
            UnknownTaggedFields = [new RawTaggedField(0, [0x02, 0x78])],
        };
        byte[] v15 = request.ToBytes(15);
        Assert.EndsWith("02" + "00020278" + "010D" + "00000001" + "0000000000000002" + "00", Convert.ToHexString(v15), StringComparison.Ordinal);
        // Read back at v15, tag 0 is ClusterId.
        decoded = MessageExtensions.Parse<FetchRequest>(v15, 15);
        Assert.Equal("x", decoded.ClusterId);
        Assert.Null(decoded.UnknownTaggedFields);
        Assert.Equal(2, decoded.ReplicaState.ReplicaEpoch);
    }

    [Fact]
    public void TaggedFieldsAreWrittenOnlyWhenNotDefault()
    {
        // ApiVersionsResponse v3, everything default: ErrorCode 00 00; ApiKeys empty compact array 01;
        // ThrottleTimeMs 00 00 00 00; no tagged fields: 00. FinalizedFeaturesEpoch defaults to -1.
        var response = new ApiVersionsResponse();
        AssertEncodes(response, 3, "0000 01 00000000 00");

        // ZkMigrationReady (tag 3) set: count 1, tag 3, size 1, true: 01 03 01 01.
        response.ZkMigrationReady = true;
        AssertEncodes(response, 3, "0000 01 00000000 01 030101");
    }

    [Fact]
    public void NullableTaggedStructWithNonNullDefault()
    {
        // ClassicMemberMetadata's schema default is JSON null, which Kafka reads as "no default": the
        // default is an empty struct, and an explicit null is written as tag 0, size 1, varint 0.
        var value = new ConsumerGroupMemberMetadataValue();
        byte[] withDefault = value.ToBytes(0);
        Assert.EndsWith("00", Convert.ToHexString(withDefault), StringComparison.Ordinal);
        value.ClassicMemberMetadata = null;
        byte[] withNull = value.ToBytes(0);
        Assert.Equal(Convert.ToHexString(withDefault[..^1]) + "01000100", Convert.ToHexString(withNull));
        Assert.Null(MessageExtensions.Parse<ConsumerGroupMemberMetadataValue>(withNull, 0).ClassicMemberMetadata);
    }

    [Fact]
    public void TruncatedInputThrowsProtocolException()
    {
        var produce = new ProduceRequest
        {
            TransactionalId = "tx",
            Acks = -1,
            TimeoutMs = 30000,
            TopicData =
            [
                new ProduceRequest.TopicProduceData
                {
                    Name = "t",
                    PartitionData = [new ProduceRequest.PartitionProduceData { Index = 0, Records = new RecordSet(new byte[] { 1, 2, 3 }) }],
                },
            ],
        };
        foreach (short version in new short[] { 3, 8, 9, 11 })
        {
            byte[] bytes = produce.ToBytes(version);
            for (int n = 0; n < bytes.Length; n++)
            {
                var prefix = bytes[..n];
                Assert.Throws<ProtocolException>(() => MessageExtensions.Parse<ProduceRequest>(prefix, version));
            }
            // Trailing bytes are an error too.
            byte[] extended = [.. bytes, 0];
            Assert.Throws<ProtocolException>(() => MessageExtensions.Parse<ProduceRequest>(extended, version));
        }
    }

    [Fact]
    public void TaggedFieldOverrunningItsSizeIsRejected()
    {
        // FetchRequest v12 ends with its tagged fields: count 1, tag 0 (ClusterId), size 2, compact "c":
        // 01 00 02 02 63. Declaring size 1 makes the string run past its field: an error, not a
        // silent read into whatever follows.
        byte[] ok = new FetchRequest { ClusterId = "c" }.ToBytes(12);
        Assert.EndsWith("0100020263", Convert.ToHexString(ok), StringComparison.Ordinal);
        byte[] bad = [.. ok[..^3], 0x01, 0x02, 0x63];
        Assert.Throws<ProtocolException>(() => MessageExtensions.Parse<FetchRequest>(bad, 12));
    }

    [Fact]
    public void Registries()
    {
        Assert.Equal(0, (short)ApiKey.Produce);
        Assert.Equal(18, (short)ApiKey.ApiVersions);
        Assert.IsType<ProduceRequest>(ApiMessages.CreateRequest(0));
        Assert.IsType<FetchResponse>(ApiMessages.CreateResponse(1));
        Assert.Null(ApiMessages.CreateRequest(-1));
        Assert.Null(ApiMessages.CreateRequest(short.MaxValue));
        Assert.Contains((short)18, ApiMessages.AllApiKeys);
        Assert.Equal(ProduceRequest.HighestVersion, ApiMessages.HighestVersion(0));
        Assert.True(ApiMessages.IsFlexible(0, 9));
        Assert.False(ApiMessages.IsFlexible(0, 8));
        Assert.True(ApiMessages.IsDeprecated(0, 6));
        Assert.False(ApiMessages.IsDeprecated(0, 7));
        Assert.Contains("broker", ApiMessages.Listeners(0));
        Assert.Equal(2, ApiMessages.RequestHeaderVersion(18, 3));
        Assert.Equal(1, ApiMessages.RequestHeaderVersion(18, 2));
        Assert.Equal(0, ApiMessages.RequestHeaderVersion((short)ApiKey.ControlledShutdown, 0));
        Assert.Equal(1, ApiMessages.RequestHeaderVersion((short)ApiKey.ControlledShutdown, 1));
        Assert.Equal(0, ApiMessages.ResponseHeaderVersion(18, 3));
        Assert.Equal(1, ApiMessages.ResponseHeaderVersion(3, 9));
        Assert.Equal(0, ApiMessages.ResponseHeaderVersion(3, 8));
        Assert.Throws<ArgumentOutOfRangeException>(() => ApiMessages.HighestVersion(-1));
        foreach (short key in ApiMessages.AllApiKeys)
        {
            var request = ApiMessages.CreateRequest(key)!;
            var response = ApiMessages.CreateResponse(key)!;
            Assert.Equal(key, request.ApiKey);
            Assert.Equal(key, response.ApiKey);
            Assert.Equal(ApiMessages.LowestVersion(key), request.LowestSupportedVersion);
            Assert.Equal(ApiMessages.HighestVersion(key), response.HighestSupportedVersion);
            // A request names its response type (typed clients infer it): the response the registry pairs with it.
            var typed = Assert.Single(request.GetType().GetInterfaces(), i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IApiRequest<>));
            Assert.Equal(response.GetType(), typed.GetGenericArguments()[0]);
        }

        Assert.Equal(2, (short)MetadataRecordType.Topic);
        Assert.IsType<TopicRecord>(MetadataRecords.MetadataRecords.Create((short)MetadataRecordType.Topic));
        Assert.Null(MetadataRecords.MetadataRecords.Create(-1));

        Assert.Equal(1, (short)ConsumerOffsetsRecordType.OffsetCommit);
        Assert.Equal(2, (short)ConsumerOffsetsRecordType.GroupMetadata);
        Assert.IsType<OffsetCommitKey>(CoordinatorRecords.CoordinatorRecords.CreateKey(CoordinatorTopic.ConsumerOffsets, 0));
        Assert.IsType<OffsetCommitValue>(CoordinatorRecords.CoordinatorRecords.CreateValue(CoordinatorTopic.ConsumerOffsets, 1));
        Assert.IsType<GroupMetadataValue>(CoordinatorRecords.CoordinatorRecords.CreateValue(CoordinatorTopic.ConsumerOffsets, 2));
        Assert.IsType<TransactionLogKey>(CoordinatorRecords.CoordinatorRecords.CreateKey(CoordinatorTopic.TransactionState, 0));
        Assert.IsType<ShareUpdateValue>(CoordinatorRecords.CoordinatorRecords.CreateValue(CoordinatorTopic.ShareGroupState, 1));
        Assert.Null(CoordinatorRecords.CoordinatorRecords.CreateKey(CoordinatorTopic.TransactionState, 1));
    }
}
