using System.Text;
using Freshet.Protocol.Records;

namespace Freshet.Storage.Tests.Support;

/// <summary>A record as read back from the log.</summary>
public readonly record struct StoredRecord(long Offset, long Timestamp, string Value);

/// <summary>Header facts of a batch as read back from the log.</summary>
public readonly record struct StoredBatch(long BaseOffset, long LastOffset, int Size, long MaxTimestamp);

/// <summary>Builds record batches for appends and decodes what reads return.</summary>
public static class Batches
{
    /// <summary>
    /// One batch with a record per timestamp; record i's value is "<paramref name="tag"/>-i" padded
    /// with '.' to <paramref name="valueSize"/> bytes. Idempotent when <paramref name="producerId"/> is set.
    /// </summary>
    public static byte[] Make(long[] timestamps, string tag = "v", int valueSize = 32,
        long producerId = RecordBatch.NoProducerId, short epoch = RecordBatch.NoProducerEpoch, int baseSequence = RecordBatch.NoSequence)
    {
        using var b = new RecordBatchBuilder
        {
            ProducerId = producerId,
            ProducerEpoch = epoch,
            BaseSequence = baseSequence,
        };
        for (int i = 0; i < timestamps.Length; i++)
            b.Append(timestamps[i], null, Value($"{tag}-{i}", valueSize));
        return b.Build();
    }

    /// <summary><paramref name="count"/> records all stamped <paramref name="timestamp"/>.</summary>
    public static byte[] Make(int count, long timestamp, string tag = "v", int valueSize = 32,
        long producerId = RecordBatch.NoProducerId, short epoch = RecordBatch.NoProducerEpoch, int baseSequence = RecordBatch.NoSequence) =>
        Make(Enumerable.Repeat(timestamp, count).ToArray(), tag, valueSize, producerId, epoch, baseSequence);

    /// <summary>An idempotent batch of <paramref name="count"/> records starting at <paramref name="baseSequence"/>.</summary>
    public static byte[] Idempotent(long producerId, short epoch, int baseSequence, int count, long timestamp, string? tag = null) =>
        Make(count, timestamp, tag ?? $"p{producerId}e{epoch}s{baseSequence}", 32, producerId, epoch, baseSequence);

    private static byte[] Value(string text, int size)
    {
        var s = text.Length >= size ? text : text.PadRight(size, '.');
        return Encoding.UTF8.GetBytes(s);
    }

    /// <summary>The records of back-to-back batches.</summary>
    public static List<StoredRecord> Records(byte[] batches)
    {
        var result = new List<StoredRecord>();
        using var scratch = new PooledBufferWriter();
        int pos = 0;
        while (pos < batches.Length)
        {
            int size = RecordBatch.PeekSize(batches.AsSpan(pos));
            foreach (var r in new BatchRecords(batches.AsSpan(pos, size), scratch))
                result.Add(new StoredRecord(r.Offset, r.Timestamp, Encoding.UTF8.GetString(r.Record.Value).TrimEnd('.')));
            pos += size;
        }
        return result;
    }

    /// <summary>The batch headers of back-to-back batches.</summary>
    public static List<StoredBatch> Headers(byte[] batches)
    {
        var result = new List<StoredBatch>();
        int pos = 0;
        while (pos < batches.Length)
        {
            var b = new RecordBatch(batches.AsSpan(pos, RecordBatch.PeekSize(batches.AsSpan(pos))));
            Assert.True(b.IsCrcValid, $"batch at byte {pos} has a bad CRC");
            result.Add(new StoredBatch(b.BaseOffset, b.LastOffset, b.SizeInBytes, b.MaxTimestamp));
            pos += b.SizeInBytes;
        }
        return result;
    }
}
