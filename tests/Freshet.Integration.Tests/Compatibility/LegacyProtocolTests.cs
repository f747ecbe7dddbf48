using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Hashing;
using System.Text;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using Freshet.Server;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests.Compatibility;

/// <summary>
/// The deprecated API versions pre-0.11 clients speak, over a raw connection: Produce v2 with
/// message format v1 (magic 1, one plain set and one gzip wrapper, built by hand here) and Produce v0
/// with magic 0, read back with Fetch v3 (down-converted to magic 1 messages) and Fetch v4/v12
/// (the stored v2 batches), ListOffsets v0 and Metadata v0.
/// </summary>
public sealed class LegacyProtocolTests(ITestOutputHelper output)
{
    private const string Topic = "legacy";

    [Fact]
    public async Task OldProduceFetchListOffsetsAndMetadataVersionsWork()
    {
        // Recent timestamps: records older than segment.ms or retention.ms would bring segment rolls and deletions into the test.
        long t0 = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 60_000;
        // What the test writes, in offset order: offset, CreateTime (-1 for magic 0), key, value (null for a null).
        (long Offset, long Timestamp, string? Key, string? Value)[] expected =
        [
            (0, t0, "k0", "v0"),
            (1, t0 + 1, null, "v1"),
            (2, t0 + 2, "k2", null),
            (3, t0 + 3, "k3", "v3-gzip"),
            (4, t0 + 4, "k4", "v4-gzip"),
            (5, t0 + 5, "k5", "v5-gzip"),
            (6, -1, "k6", "v6-magic0"),
        ];
        using var loggers = TestOutputLoggerProvider.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(null, loggers);
        await Clients.CreateTopicAsync(broker.BootstrapServers, Topic, 1);
        await using var raw = await RawKafkaClient.ConnectAsync(broker.BootstrapServers);

        // Metadata v0: an empty topic list means all topics (v0 has no null list).
        var (host, port) = RawKafkaClient.Split(broker.BootstrapServers);
        foreach (var topics in new List<MetadataRequest.MetadataRequestTopic>[] { [], [new() { Name = Topic }] })
        {
            var md = await raw.RequestAsync<MetadataResponse>(new MetadataRequest { Topics = topics }, 0);
            var b = Assert.Single(md.Brokers);
            Assert.Equal((1, host, port), (b.NodeId, b.Host, b.Port));
            var t = Assert.Single(md.Topics, x => x.Name == Topic);
            Assert.Equal(0, t.ErrorCode);
            var p = Assert.Single(t.Partitions);
            Assert.Equal((0, 0, 1), (p.ErrorCode, p.PartitionIndex, p.LeaderId));
            Assert.Equal([1], p.ReplicaNodes);
            Assert.Equal([1], p.IsrNodes);
        }

        // Produce v2, magic 1: three plain messages, then a gzip wrapper of three (inner offsets relative, 0-2).
        var plain = Concat(
            Message(1, 0, t0, "k0", "v0"),
            Message(1, 1, t0 + 1, null, "v1"),
            Message(1, 2, t0 + 2, "k2", null));
        var inner = Concat(
            Message(1, 0, t0 + 3, "k3", "v3-gzip"),
            Message(1, 1, t0 + 4, "k4", "v4-gzip"),
            Message(1, 2, t0 + 5, "k5", "v5-gzip"));
        var wrapper = Message(1, 2, t0 + 5, null, Gzip(inner), attributes: 1);
        Assert.Equal(0, await ProduceAsync(raw, 2, plain));
        Assert.Equal(3, await ProduceAsync(raw, 2, wrapper));
        // Produce v0, magic 0 (no timestamp).
        Assert.Equal(6, await ProduceAsync(raw, 0, Message(0, 0, 0, "k6", Encoding.UTF8.GetBytes("v6-magic0"))));

        // ListOffsets v0: old-style offset lists; -1 is the latest offset, -2 the earliest.
        foreach (var (timestamp, offset) in new[] { (-1L, 7L), (-2L, 0L) })
        {
            var lo = await raw.RequestAsync<ListOffsetsResponse>(new ListOffsetsRequest
            {
                ReplicaId = -1,
                Topics = [new() { Name = Topic, Partitions = [new() { PartitionIndex = 0, Timestamp = timestamp, MaxNumOffsets = 1 }] }],
            }, 0);
            var lp = Assert.Single(Assert.Single(lo.Topics).Partitions);
            Assert.Equal(0, lp.ErrorCode);
            Assert.Equal([offset], lp.OldStyleOffsets);
        }

        // Fetch v3: everything comes back as uncompressed magic 1 messages with absolute offsets.
        Assert.Equal(expected, await FetchAllAsync(raw, 3, 0, (set, codecs) => ParseMessageSet(set, magic: 1)));
        // From the middle of what was the gzip wrapper: nothing before the fetch offset.
        Assert.Equal(expected[4..], await FetchAllAsync(raw, 3, 4, (set, codecs) => ParseMessageSet(set, magic: 1)));

        // Fetch v4 and v12: the stored v2 batches, one per produce, the wrapper's gzip kept.
        foreach (short version in new short[] { 4, 12 })
        {
            var codecs = new List<CompressionType>();
            Assert.Equal(expected, await FetchAllAsync(raw, version, 0, ParseBatches, codecs));
            Assert.Equal([CompressionType.None, CompressionType.Gzip, CompressionType.None], codecs);
        }
    }

    private delegate List<(long, long, string?, string?)> RecordParser(ReadOnlySpan<byte> records, List<CompressionType> codecs);

    /// <summary>Fetches from <paramref name="offset"/> until the high watermark, as a client does: one fetch may stop at a segment's end.</summary>
    private static async Task<List<(long, long, string?, string?)>> FetchAllAsync(RawKafkaClient raw, short version, long offset, RecordParser parse,
        List<CompressionType>? codecs = null)
    {
        var all = new List<(long, long, string?, string?)>();
        for (int fetches = 0; ; fetches++)
        {
            Assert.True(fetches < 10, $"no progress fetching from offset {offset}");
            var f = await FetchAsync(raw, version, offset);
            Assert.Equal(7, f.HighWatermark);
            if (version >= 4) Assert.Equal(7, f.LastStableOffset);
            var got = parse(f.Records!.Memory.Span, codecs ?? []);
            Assert.NotEmpty(got);
            all.AddRange(got);
            offset = got[^1].Item1 + 1;
            if (offset >= f.HighWatermark) return all;
        }
    }

    /// <summary>Produces one message set to partition 0; returns the base offset after checking the response.</summary>
    private static async Task<long> ProduceAsync(RawKafkaClient raw, short version, byte[] messageSet)
    {
        var response = await raw.RequestAsync<ProduceResponse>(new ProduceRequest
        {
            Acks = -1,
            TimeoutMs = 10_000,
            TopicData = [new() { Name = Topic, PartitionData = [new() { Index = 0, Records = new RecordSet(messageSet) }] }],
        }, version);
        var topic = Assert.Single(response.Responses);
        Assert.Equal(Topic, topic.Name);
        var p = Assert.Single(topic.PartitionResponses);
        Assert.Equal(0, p.ErrorCode);
        if (version >= 2) Assert.Equal(-1, p.LogAppendTimeMs); // CreateTime topic
        return p.BaseOffset;
    }

    private static async Task<FetchResponse.PartitionData> FetchAsync(RawKafkaClient raw, short version, long offset)
    {
        var response = await raw.RequestAsync<FetchResponse>(new FetchRequest
        {
            ReplicaId = -1,
            MaxWaitMs = 0,
            MinBytes = 1,
            MaxBytes = 1 << 20,
            Topics = [new() { Topic = Topic, Partitions = [new() { Partition = 0, FetchOffset = offset, PartitionMaxBytes = 1 << 20 }] }],
        }, version);
        var p = Assert.Single(Assert.Single(response.Responses).Partitions);
        Assert.Equal(0, p.ErrorCode);
        Assert.NotNull(p.Records);
        return p;
    }

    /// <summary>One legacy message entry: offset, size, crc, magic, attributes, [timestamp], key, value.</summary>
    private static byte[] Message(byte magic, long offset, long timestamp, string? key, string? value) =>
        Message(magic, offset, timestamp, key, value is null ? null : Encoding.UTF8.GetBytes(value));

    private static byte[] Message(byte magic, long offset, long timestamp, string? key, byte[]? value, byte attributes = 0)
    {
        var k = key is null ? null : Encoding.UTF8.GetBytes(key);
        int size = 4 + 1 + 1 + (magic == 1 ? 8 : 0) + 4 + (k?.Length ?? 0) + 4 + (value?.Length ?? 0);
        var m = new byte[12 + size];
        BinaryPrimitives.WriteInt64BigEndian(m, offset);
        BinaryPrimitives.WriteInt32BigEndian(m.AsSpan(8), size);
        int p = 16;
        m[p++] = magic;
        m[p++] = attributes;
        if (magic == 1)
        {
            BinaryPrimitives.WriteInt64BigEndian(m.AsSpan(p), timestamp);
            p += 8;
        }
        foreach (var bytes in new[] { k, value })
        {
            BinaryPrimitives.WriteInt32BigEndian(m.AsSpan(p), bytes?.Length ?? -1);
            p += 4;
            bytes?.CopyTo(m, p);
            p += bytes?.Length ?? 0;
        }
        BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(12), Crc32.HashToUInt32(m.AsSpan(16)));
        return m;
    }

    private static byte[] Concat(params byte[][] parts) => [.. parts.SelectMany(p => p)];

    private static byte[] Gzip(byte[] data)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(data);
        return ms.ToArray();
    }

    /// <summary>Reads a fetch v0-3 message set, checking every CRC and that each message has the given magic and no codec.</summary>
    private static List<(long, long, string?, string?)> ParseMessageSet(ReadOnlySpan<byte> set, byte magic)
    {
        var result = new List<(long, long, string?, string?)>();
        while (set.Length >= 12)
        {
            long offset = BinaryPrimitives.ReadInt64BigEndian(set);
            int size = BinaryPrimitives.ReadInt32BigEndian(set[8..]);
            Assert.True(size <= set.Length - 12, $"message at offset {offset} is cut");
            var m = set.Slice(12, size);
            set = set[(12 + size)..];
            Assert.Equal(BinaryPrimitives.ReadUInt32BigEndian(m), Crc32.HashToUInt32(m[4..]));
            Assert.Equal(magic, m[4]);
            Assert.Equal(0, m[5] & 0x07);
            int p = 6;
            long timestamp = -1;
            if (magic == 1)
            {
                timestamp = BinaryPrimitives.ReadInt64BigEndian(m[p..]);
                p += 8;
            }
            string? key = ReadBytes(m, ref p);
            string? value = ReadBytes(m, ref p);
            Assert.Equal(m.Length, p);
            result.Add((offset, timestamp, key, value));
        }
        return result;
    }

    private static string? ReadBytes(ReadOnlySpan<byte> m, ref int p)
    {
        int n = BinaryPrimitives.ReadInt32BigEndian(m[p..]);
        p += 4;
        if (n < 0) return null;
        string s = Encoding.UTF8.GetString(m.Slice(p, n));
        p += n;
        return s;
    }

    /// <summary>Reads fetch v4+ record batches, checking CRCs; adds each batch's codec to <paramref name="codecs"/>.</summary>
    private static List<(long, long, string?, string?)> ParseBatches(ReadOnlySpan<byte> bytes, List<CompressionType> codecs)
    {
        var records = new List<(long, long, string?, string?)>();
        using var scratch = new PooledBufferWriter();
        while (bytes.Length >= RecordBatch.HeaderSize)
        {
            int size = new RecordBatch(bytes).SizeInBytes;
            var batch = new RecordBatch(bytes[..size]);
            Assert.Equal(RecordBatch.CurrentMagic, batch.Magic);
            Assert.True(batch.IsCrcValid);
            Assert.Equal(TimestampType.CreateTime, batch.TimestampType);
            codecs.Add(batch.Compression);
            foreach (var r in new BatchRecords(batch.Bytes, scratch))
            {
                records.Add((r.Offset, r.Timestamp,
                    r.Record.KeyIsNull ? null : Encoding.UTF8.GetString(r.Record.Key),
                    r.Record.ValueIsNull ? null : Encoding.UTF8.GetString(r.Record.Value)));
            }
            bytes = bytes[size..];
        }
        Assert.True(bytes.IsEmpty, "a partial batch at the end of a small fetch");
        return records;
    }
}
