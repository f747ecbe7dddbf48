using System.Buffers.Binary;
using Freshet.Metadata.Image;
using Freshet.Metadata.Raft;
using Freshet.Protocol.Messages;
using Freshet.Protocol.MetadataRecords;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using static Freshet.Metadata.Log.MetadataRecordSerde;

namespace Freshet.Metadata.Log;

/// <summary>
/// A snapshot of the metadata image in KRaft's format, so Kafka's tools read our <c>.checkpoint</c>
/// files: record batches (v2, stamped with the snapshot's epoch, offsets counting from 0) whose first
/// batch is a control batch holding a SnapshotHeaderRecord, then the records that rebuild the image
/// (framed as in the log), then a control batch holding a SnapshotFooterRecord. A file without the
/// footer, with a bad CRC or with an undecodable record is refused whole.
/// </summary>
public static class MetadataSnapshot
{
    /// <summary>Records per data batch: keeps batches well under the metadata log's batch limit.</summary>
    private const int RecordsPerBatch = 500;

    /// <summary>The records an empty image would need to become <paramref name="image"/> (Kafka's image-to-records).</summary>
    public static IEnumerable<VersionedRecord> RecordsOf(MetadataImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        foreach (var (name, level) in image.Features.OrderBy(f => f.Key, StringComparer.Ordinal))
            yield return new((short)MetadataRecordType.FeatureLevel, 0, new FeatureLevelRecord { Name = name, FeatureLevel = level });
        foreach (var b in image.Brokers.Values)
        {
            yield return new((short)MetadataRecordType.RegisterBroker, 2, new RegisterBrokerRecord
            {
                BrokerId = b.Id,
                IncarnationId = b.IncarnationId,
                BrokerEpoch = b.Epoch,
                Rack = b.Rack,
                Fenced = b.Fenced,
                InControlledShutdown = b.InControlledShutdown,
                EndPoints = [.. b.Endpoints.Select(e => new RegisterBrokerRecord.BrokerEndpoint
                {
                    Name = e.Name, Host = e.Host, Port = (ushort)e.Port, SecurityProtocol = e.SecurityProtocol,
                })],
            });
        }
        foreach (var t in image.TopicsByName.Values.OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            yield return new((short)MetadataRecordType.Topic, 0, new TopicRecord { Name = t.Name, TopicId = t.Id });
            foreach (var (index, p) in t.Partitions)
            {
                yield return new((short)MetadataRecordType.Partition, 0, new PartitionRecord
                {
                    TopicId = t.Id,
                    PartitionId = index,
                    Replicas = [.. p.Replicas],
                    Isr = [.. p.Isr],
                    RemovingReplicas = [.. p.RemovingReplicas],
                    AddingReplicas = [.. p.AddingReplicas],
                    Leader = p.Leader,
                    LeaderEpoch = p.LeaderEpoch,
                    PartitionEpoch = p.PartitionEpoch,
                });
            }
        }
        foreach (var (key, configs) in image.Configs.OrderBy(c => (c.Key.Type, c.Key.Name)))
            foreach (var (name, value) in configs.OrderBy(c => c.Key, StringComparer.Ordinal))
                yield return new((short)MetadataRecordType.Config, 0,
                    new ConfigRecord { ResourceType = (sbyte)key.Type, ResourceName = key.Name, Name = name, Value = value });
        if (image.NextProducerId > 0)
            yield return new((short)MetadataRecordType.ProducerIds, 0,
                new ProducerIdsRecord { BrokerId = -1, BrokerEpoch = -1, NextProducerId = image.NextProducerId });
    }

    /// <summary>The snapshot file's bytes for <paramref name="image"/>.</summary>
    /// <param name="epoch">The epoch of the snapshot id (of the last entry it covers).</param>
    /// <param name="lastContainedTimestamp">Timestamp of the last record the snapshot covers (ms since the epoch).</param>
    public static byte[] Write(MetadataImage image, int epoch, long lastContainedTimestamp)
    {
        using var output = new PooledBufferWriter();
        long offset = 0;
        var header = new SnapshotHeaderRecord { Version = 0, LastContainedLogTimestamp = lastContainedTimestamp };
        offset = AppendControl(output, offset, epoch, lastContainedTimestamp, ControlRecords.SnapshotHeaderType, header.ToBytes(0));
        using var builder = new RecordBatchBuilder(initialCapacity: 64 * 1024) { PartitionLeaderEpoch = epoch };
        foreach (var r in RecordsOf(image))
        {
            if (builder.Count == RecordsPerBatch) offset = Flush(builder, output, offset);
            builder.Append(lastContainedTimestamp, null, Serialize(r.Type, r.Version, r.Message));
        }
        if (builder.Count > 0) offset = Flush(builder, output, offset);
        var footer = new SnapshotFooterRecord { Version = 0 };
        AppendControl(output, offset, epoch, lastContainedTimestamp, ControlRecords.SnapshotFooterType, footer.ToBytes(0));
        return output.WrittenSpan.ToArray();

        static long Flush(RecordBatchBuilder builder, PooledBufferWriter output, long offset)
        {
            builder.BaseOffset = offset;
            int count = builder.Count;
            builder.WriteTo(output);
            builder.Reset();
            return offset + count;
        }
    }

    private static long AppendControl(PooledBufferWriter output, long offset, int epoch, long timestamp, short type, byte[] value)
    {
        Span<byte> key = stackalloc byte[4];
        BinaryPrimitives.WriteInt16BigEndian(key, 0);
        BinaryPrimitives.WriteInt16BigEndian(key[2..], type);
        using var builder = new RecordBatchBuilder(initialCapacity: 128) { BaseOffset = offset, PartitionLeaderEpoch = epoch, IsControl = true };
        builder.Append(timestamp, key, value);
        builder.WriteTo(output);
        return offset + 1;
    }

    /// <summary>The records of a snapshot file, checked whole (header first, footer last, every CRC).</summary>
    /// <exception cref="InvalidDataException">The snapshot is truncated, corrupt, or not a metadata snapshot.</exception>
    public static List<VersionedRecord> Read(ReadOnlyMemory<byte> data)
    {
        var records = new List<VersionedRecord>();
        var span = data.Span;
        int pos = 0;
        bool header = false, footer = false;
        using var scratch = new PooledBufferWriter();
        while (pos < span.Length)
        {
            if (footer) throw new InvalidDataException("metadata snapshot: data after the footer");
            if (span.Length - pos < RecordBatch.HeaderSize) throw new InvalidDataException($"metadata snapshot: truncated batch at byte {pos}");
            int size = RecordBatch.PeekSize(span[pos..]);
            if (size < RecordBatch.HeaderSize || size > span.Length - pos) throw new InvalidDataException($"metadata snapshot: truncated batch at byte {pos}");
            var bytes = span.Slice(pos, size);
            var batch = new RecordBatch(bytes);
            if (batch.Magic != RecordBatch.CurrentMagic || batch.Crc != batch.ComputeCrc())
                throw new InvalidDataException($"metadata snapshot: corrupt batch at byte {pos}");
            pos += size;
            foreach (var r in new BatchRecords(bytes, scratch))
            {
                if (batch.IsControl)
                {
                    short type = ControlRecords.TypeOf(r.Record.Key);
                    if (type == ControlRecords.SnapshotHeaderType && !header && records.Count == 0) header = true;
                    else if (type == ControlRecords.SnapshotFooterType && header) footer = true;
                    else throw new InvalidDataException($"metadata snapshot: unexpected control record type {type}");
                }
                else
                {
                    if (!header) throw new InvalidDataException("metadata snapshot: records before the header");
                    try
                    {
                        records.Add(Deserialize(r.Record.Value.ToArray()));
                    }
                    catch (ProtocolException e)
                    {
                        throw new InvalidDataException($"metadata snapshot: {e.Message}", e);
                    }
                }
            }
        }
        if (!footer) throw new InvalidDataException("metadata snapshot: no footer (the file is incomplete)");
        return records;
    }
}
