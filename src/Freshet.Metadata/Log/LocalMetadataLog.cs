using Freshet.Protocol;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using Freshet.Storage;
using Microsoft.Extensions.Logging;
using static Freshet.Metadata.Log.MetadataRecordSerde;

namespace Freshet.Metadata.Log;

/// <summary>
/// The metadata log of a one-node quorum: partition <c>__cluster_metadata-0</c> in the metadata
/// log directory, stored by the same <see cref="PartitionLog"/> as user data, one record batch per
/// commit (null keys, values framed by <see cref="MetadataRecordSerde"/>), fsynced before an
/// append returns, as Raft requires of a vote-less single voter.
/// </summary>
public sealed class LocalMetadataLog : IMetadataLog, IDisposable
{
    public const string TopicName = "__cluster_metadata";
    public static readonly TopicPartition Partition = new(TopicName, 0);

    private readonly PartitionLog _log;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();

    private LocalMetadataLog(PartitionLog log, TimeProvider time)
    {
        _log = log;
        _time = time;
    }

    /// <summary>The leader epoch stamped on batches (a one-node quorum stays in epoch 1).</summary>
    public int Epoch { get; init; } = 1;

    public long EndOffset => _log.LogEndOffset;

    public static LocalMetadataLog Open(string metadataLogDir, TimeProvider time, ILoggerFactory loggers)
    {
        string dir = Path.Combine(metadataLogDir, Partition.ToString());
        var config = LogConfig.Create(new Dictionary<string, string>(), new Dictionary<string, string>
        {
            [LogConfig.RetentionMsConfig] = "-1",
            [LogConfig.RetentionBytesConfig] = "-1",
            [LogConfig.MaxMessageBytesConfig] = (8 * 1024 * 1024).ToString(System.Globalization.CultureInfo.InvariantCulture),
        });
        var options = new LogOptions { FsyncOnAppend = true };
        var logger = loggers.CreateLogger<LocalMetadataLog>();
        var log = Directory.Exists(dir) && Directory.EnumerateFiles(dir, "*.log").Any()
            ? PartitionLog.Open(dir, Partition, config, options, recoveryPoint: 0, logStartOffsetCheckpoint: 0, hadCleanShutdown: false, time, logger)
            : PartitionLog.Create(dir, Partition, Uuid.OneUuid, config, options, time, logger);
        log.UpdateHighWatermark(log.LogEndOffset);
        return new LocalMetadataLog(log, time);
    }

    public IEnumerable<(long Offset, VersionedRecord Record)> ReadAll()
    {
        using var scratch = new PooledBufferWriter();
        foreach (var batch in _log.ReadBatches(0))
        {
            var list = new List<(long, VersionedRecord)>();
            foreach (var r in new BatchRecords(batch, scratch))
            {
                if (r.Record.ValueIsNull) continue;
                list.Add((r.Offset, Deserialize(r.Record.Value.ToArray())));
            }
            foreach (var item in list) yield return item;
        }
    }

    public long Append(IReadOnlyList<VersionedRecord> records)
    {
        lock (_lock)
        {
            using var builder = new RecordBatchBuilder { PartitionLeaderEpoch = Epoch };
            long now = _time.GetUtcNow().ToUnixTimeMilliseconds();
            foreach (var r in records) builder.Append(now, (byte[]?)null, Serialize(r.Type, r.Version, r.Message));
            byte[] batch = builder.Build();
            var result = _log.AppendAsLeader(batch, Epoch, AppendOrigin.Coordinator);
            if (result.Error != ErrorCode.None)
                throw new IOException($"metadata log append failed: {result.Error.KafkaName()} {result.ErrorMessage}");
            _log.UpdateHighWatermark(_log.LogEndOffset);
            return result.LastOffset;
        }
    }

    public void Dispose() => _log.Close();
}
