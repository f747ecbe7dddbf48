using System.Buffers.Binary;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Protocol.Tests;

/// <summary>
/// Lengths read from the wire are checked before anything is allocated for them: a request that
/// claims a huge array, or carries more elements or tagged fields than Kafka's limits, is refused
/// with a <see cref="ProtocolException"/> at a cost of a few bytes, not the claimed size.
/// </summary>
public sealed class DecodeLimitTests
{
    private static long AllocatedBy(Action action)
    {
        action(); // warm up (JIT, statics)
        long before = GC.GetAllocatedBytesForCurrentThread();
        action();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    private static void Refused<T>(byte[] body, short version) where T : IMessage, new()
    {
        try
        {
            MessageExtensions.Parse<T>(body, version);
        }
        catch (ProtocolException)
        {
            return;
        }
        Assert.Fail("the body was decoded");
    }

    [Fact]
    public void ATwoBillionElementArrayInAHundredBytesIsRefusedWithoutAllocatingIt()
    {
        // Metadata v1: topics array (int32 count) claiming 2,000,000,000 entries, then 96 bytes.
        var body = new byte[100];
        BinaryPrimitives.WriteInt32BigEndian(body, 2_000_000_000);
        long allocated = AllocatedBy(() => Refused<MetadataRequest>(body, 1));
        Assert.True(allocated < 64 * 1024, $"{allocated} bytes allocated");
    }

    [Fact]
    public void AnArrayOverAMillionElementsIsRefusedBeforeItsListIsAllocated()
    {
        // DescribeConfigs v4: one resource whose key list holds 1,000,001 empty compact strings (one byte each).
        const int keys = 1_000_001;
        var body = new List<byte> { 2, 2, 2, (byte)'d' };
        uint v = keys + 1;
        while (v >= 0x80)
        {
            body.Add((byte)(v | 0x80));
            v >>= 7;
        }
        body.Add((byte)v);
        body.AddRange(Enumerable.Repeat((byte)1, keys));
        body.AddRange(new byte[] { 0, 0, 0, 0 });
        var bytes = body.ToArray();
        long allocated = AllocatedBy(() => Refused<DescribeConfigsRequest>(bytes, 4));
        // A list of a million references alone would be 8 MB.
        Assert.True(allocated < 1024 * 1024, $"{allocated} bytes allocated");
    }

    [Fact]
    public void MoreThanTenThousandTaggedFieldsAreRefused()
    {
        // ApiVersions v3: two empty compact strings, then 10,001 empty unknown tagged fields.
        var body = new List<byte> { 1, 1, 0x91, 0x4E }; // 10,001 as an unsigned varint
        for (int t = 0; t < 10_001; t++) body.AddRange(new byte[] { 0x7F, 0 });
        Refused<ApiVersionsRequest>([.. body], 3);
        body[2] = 0x90; // 10,000
        body.RemoveRange(body.Count - 2, 2);
        var parsed = MessageExtensions.Parse<ApiVersionsRequest>(body.ToArray(), 3);
        Assert.Equal(10_000, parsed.UnknownTaggedFields!.Count);
    }
}
