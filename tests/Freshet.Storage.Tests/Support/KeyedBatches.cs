using System.Text;
using Freshet.Protocol.Records;

namespace Freshet.Storage.Tests.Support;

/// <summary>A keyed record as read back from the log; a null value is a tombstone.</summary>
public readonly record struct KeyedRecord(long Offset, long Timestamp, string Key, string? Value, string Headers);

/// <summary>A record to append: key, value (null for a tombstone), timestamp.</summary>
public readonly record struct KeyedInput(string Key, string? Value, long Timestamp);

/// <summary>Builds keyed batches (what compacted topics hold) and reads them back.</summary>
public static class KeyedBatches
{
    /// <summary>One batch of keyed records, optionally compressed, idempotent and with a header on every record.</summary>
    public static byte[] Make(IEnumerable<KeyedInput> records, CompressionType compression = CompressionType.None,
        long producerId = RecordBatch.NoProducerId, short epoch = RecordBatch.NoProducerEpoch, int baseSequence = RecordBatch.NoSequence,
        string? header = null)
    {
        using var b = new RecordBatchBuilder(compression)
        {
            ProducerId = producerId,
            ProducerEpoch = epoch,
            BaseSequence = baseSequence,
        };
        foreach (var r in records)
        {
            var value = r.Value is null ? null : Encoding.UTF8.GetBytes(r.Value);
            if (header is null) b.Append(r.Timestamp, Encoding.UTF8.GetBytes(r.Key), value);
            else b.Append(r.Timestamp, Encoding.UTF8.GetBytes(r.Key), value, new Header("h", Encoding.UTF8.GetBytes(header + ":" + r.Key)));
        }
        return b.Build();
    }

    /// <summary>One batch of records all stamped <paramref name="timestamp"/>.</summary>
    public static byte[] Make(long timestamp, params (string Key, string? Value)[] records) =>
        Make(records.Select(r => new KeyedInput(r.Key, r.Value, timestamp)));

    /// <summary>The keyed records of back-to-back batches.</summary>
    public static List<KeyedRecord> Records(byte[] batches)
    {
        var result = new List<KeyedRecord>();
        using var scratch = new PooledBufferWriter();
        int pos = 0;
        while (pos < batches.Length)
        {
            int size = RecordBatch.PeekSize(batches.AsSpan(pos));
            foreach (var r in new BatchRecords(batches.AsSpan(pos, size), scratch))
            {
                var headers = new StringBuilder();
                var hr = r.Record.Headers;
                while (hr.TryRead(out var h))
                    headers.Append(Encoding.UTF8.GetString(h.Key)).Append('=').Append(h.ValueIsNull ? "null" : Encoding.UTF8.GetString(h.Value)).Append(';');
                result.Add(new KeyedRecord(r.Offset, r.Timestamp, Encoding.UTF8.GetString(r.Record.Key),
                    r.Record.ValueIsNull ? null : Encoding.UTF8.GetString(r.Record.Value), headers.ToString()));
            }
            pos += size;
        }
        return result;
    }

    /// <summary>Every keyed record of the log, from the log start to its end.</summary>
    public static List<KeyedRecord> KeyedRecords(this PartitionLog log) => log.ReadBatches(log.LogStartOffset).SelectMany(Records).ToList();

    /// <summary>What a consumer reading from the start ends up with: the last value of every key, tombstoned keys removed.</summary>
    public static Dictionary<string, string> Table(IEnumerable<KeyedRecord> records)
    {
        var table = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var r in records)
        {
            if (r.Value is null) table.Remove(r.Key);
            else table[r.Key] = r.Value;
        }
        return table;
    }

    /// <summary>The stored batches of the log (raw bytes), from the log start.</summary>
    public static List<byte[]> RawBatches(this PartitionLog log) => log.ReadBatches(log.LogStartOffset).ToList();
}
