using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;
using Freshet.Storage;

namespace Freshet.Broker.Handlers;

/// <summary>
/// DescribeLogDirs: every log directory of this broker with the partitions it holds, their size
/// on disk and how far their end is behind the high watermark (what kafka-log-dirs.sh shows),
/// and from v4 the directory's total and usable bytes. A directory that failed (a failed fsync or
/// write) answers KAFKA_STORAGE_ERROR.
/// </summary>
public sealed class LogDirsHandler(RequestDispatcher dispatcher, LogManager logs)
{
    public void Register() =>
        dispatcher.Register(ApiKey.DescribeLogDirs, (c, r) => new(Task.Run<IApiMessage?>(() => Handle((DescribeLogDirsRequest)r))));

    public DescribeLogDirsResponse Handle(DescribeLogDirsRequest request)
    {
        // null: every partition; otherwise the partitions named (unknown ones are left out, as Kafka does).
        HashSet<TopicPartition>? wanted = request.Topics is null ? null
            : [.. request.Topics.SelectMany(t => t.Partitions.Select(p => new TopicPartition(t.Topic, p)))];
        var response = new DescribeLogDirsResponse();
        foreach (string dir in logs.Options.LogDirs)
        {
            string full = Path.GetFullPath(dir);
            var result = new DescribeLogDirsResponse.DescribeLogDirsResult { LogDir = full };
            if (logs.Failures.IsOffline(dir))
            {
                // As Kafka answers for an offline directory: the error, and nothing about its partitions.
                result.ErrorCode = (short)ErrorCode.KafkaStorageError;
                response.Results.Add(result);
                continue;
            }
            try
            {
                var drive = new DriveInfo(full);
                result.TotalBytes = drive.TotalSize;
                result.UsableBytes = drive.AvailableFreeSpace;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
            {
                result.ErrorCode = (short)ErrorCode.KafkaStorageError;
            }
            var inDir = logs.Logs
                .Where(l => string.Equals(Path.GetFullPath(Path.GetDirectoryName(l.Dir)!), full, StringComparison.Ordinal))
                .Where(l => wanted is null || wanted.Contains(l.TopicPartition))
                .GroupBy(l => l.TopicPartition.Topic)
                .OrderBy(g => g.Key, StringComparer.Ordinal);
            foreach (var topic in inDir)
            {
                result.Topics.Add(new DescribeLogDirsResponse.DescribeLogDirsTopic
                {
                    Name = topic.Key,
                    Partitions = [.. topic.OrderBy(l => l.TopicPartition.Partition).Select(l => new DescribeLogDirsResponse.DescribeLogDirsPartition
                    {
                        PartitionIndex = l.TopicPartition.Partition,
                        PartitionSize = l.Size,
                        OffsetLag = Math.Max(0, l.HighWatermark - l.LogEndOffset),
                    })],
                });
            }
            response.Results.Add(result);
        }
        return response;
    }
}
