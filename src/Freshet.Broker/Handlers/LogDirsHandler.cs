using Freshet.Broker.Replication;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Handlers;

/// <summary>
/// DescribeLogDirs: every log directory of this broker with the partitions it holds, their size
/// on disk and how far their end is behind the high watermark (what kafka-log-dirs.sh shows),
/// and from v4 the directory's total and usable bytes. A directory that failed (a failed fsync or
/// write) answers KAFKA_STORAGE_ERROR.
/// </summary>
public sealed class LogDirsHandler(RequestDispatcher dispatcher, ReplicaManager replicas)
{
    public void Register() =>
        dispatcher.Register(ApiKey.DescribeLogDirs, (c, r) => new(Task.Run<IApiMessage?>(() => Handle((DescribeLogDirsRequest)r))));

    public DescribeLogDirsResponse Handle(DescribeLogDirsRequest request)
    {
        // null: every partition; otherwise the partitions named (unknown ones are left out, as Kafka does).
        HashSet<TopicPartition>? wanted = request.Topics is null ? null
            : [.. request.Topics.SelectMany(t => t.Partitions.Select(p => new TopicPartition(t.Topic, p)))];
        var response = new DescribeLogDirsResponse();
        foreach (var dir in replicas.DescribeLogDirs(wanted))
        {
            var result = new DescribeLogDirsResponse.DescribeLogDirsResult { LogDir = dir.Path };
            if (dir.Offline)
            {
                // As Kafka answers for an offline directory: the error, and nothing about its partitions.
                result.ErrorCode = (short)ErrorCode.KafkaStorageError;
                response.Results.Add(result);
                continue;
            }
            try
            {
                var drive = new DriveInfo(dir.Path);
                result.TotalBytes = drive.TotalSize;
                result.UsableBytes = drive.AvailableFreeSpace;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
            {
                result.ErrorCode = (short)ErrorCode.KafkaStorageError;
            }
            foreach (var topic in dir.Replicas.GroupBy(r => r.TopicPartition.Topic).OrderBy(g => g.Key, StringComparer.Ordinal))
            {
                result.Topics.Add(new DescribeLogDirsResponse.DescribeLogDirsTopic
                {
                    Name = topic.Key,
                    Partitions = [.. topic.OrderBy(r => r.TopicPartition.Partition).Select(r => new DescribeLogDirsResponse.DescribeLogDirsPartition
                    {
                        PartitionIndex = r.TopicPartition.Partition,
                        PartitionSize = r.Size,
                        OffsetLag = r.OffsetLag,
                    })],
                });
            }
            response.Results.Add(result);
        }
        return response;
    }
}
