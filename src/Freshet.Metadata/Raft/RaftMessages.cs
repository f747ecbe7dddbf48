using Freshet.Metadata.Log;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Metadata.Raft;

/// <summary>
/// Builds and reads the KRaft requests and responses for the one partition Raft replicates,
/// <c>__cluster_metadata-0</c> (named in requests before Fetch v13, identified by the fixed metadata
/// topic id from v13 on).
/// </summary>
public static class RaftMessages
{
    public const string TopicName = LocalMetadataLog.TopicName;
    public const int PartitionIndex = 0;

    /// <summary>Kafka's METADATA_TOPIC_ID.</summary>
    public static readonly Uuid MetadataTopicId = Uuid.OneUuid;

    // ------------------------------------------------------------------ Vote

    public static VoteRequest VoteRequest(string? clusterId, int voterId, int candidateEpoch, int candidateId, OffsetAndEpoch lastEntry) => new()
    {
        ClusterId = clusterId,
        VoterId = voterId,
        Topics =
        [
            new VoteRequest.TopicData
            {
                TopicName = TopicName,
                Partitions =
                [
                    new VoteRequest.PartitionData
                    {
                        PartitionIndex = PartitionIndex,
                        CandidateEpoch = candidateEpoch,
                        CandidateId = candidateId,
                        LastOffsetEpoch = lastEntry.Epoch,
                        LastOffset = lastEntry.Offset,
                    },
                ],
            },
        ],
    };

    public static VoteResponse VoteResponse(ErrorCode error, ErrorCode partitionError, int leaderId, int epoch, bool granted) => new()
    {
        ErrorCode = (short)error,
        Topics =
        [
            new VoteResponse.TopicData
            {
                TopicName = TopicName,
                Partitions =
                [
                    new VoteResponse.PartitionData
                    {
                        PartitionIndex = PartitionIndex,
                        ErrorCode = (short)partitionError,
                        LeaderId = leaderId,
                        LeaderEpoch = epoch,
                        VoteGranted = granted,
                    },
                ],
            },
        ],
    };

    public static VoteRequest.PartitionData? Partition(VoteRequest r) =>
        r.Topics.Find(t => t.TopicName == TopicName)?.Partitions.Find(p => p.PartitionIndex == PartitionIndex);

    public static VoteResponse.PartitionData? Partition(VoteResponse r) =>
        r.Topics.Find(t => t.TopicName == TopicName)?.Partitions.Find(p => p.PartitionIndex == PartitionIndex);

    // ------------------------------------------------------------------ BeginQuorumEpoch

    public static BeginQuorumEpochRequest BeginQuorumEpochRequest(string? clusterId, int voterId, int leaderId, int epoch) => new()
    {
        ClusterId = clusterId,
        VoterId = voterId,
        Topics =
        [
            new BeginQuorumEpochRequest.TopicData
            {
                TopicName = TopicName,
                Partitions = [new BeginQuorumEpochRequest.PartitionData { PartitionIndex = PartitionIndex, LeaderId = leaderId, LeaderEpoch = epoch }],
            },
        ],
    };

    public static BeginQuorumEpochResponse BeginQuorumEpochResponse(ErrorCode error, ErrorCode partitionError, int leaderId, int epoch) => new()
    {
        ErrorCode = (short)error,
        Topics =
        [
            new BeginQuorumEpochResponse.TopicData
            {
                TopicName = TopicName,
                Partitions =
                [
                    new BeginQuorumEpochResponse.PartitionData
                    {
                        PartitionIndex = PartitionIndex,
                        ErrorCode = (short)partitionError,
                        LeaderId = leaderId,
                        LeaderEpoch = epoch,
                    },
                ],
            },
        ],
    };

    public static BeginQuorumEpochRequest.PartitionData? Partition(BeginQuorumEpochRequest r) =>
        r.Topics.Find(t => t.TopicName == TopicName)?.Partitions.Find(p => p.PartitionIndex == PartitionIndex);

    public static BeginQuorumEpochResponse.PartitionData? Partition(BeginQuorumEpochResponse r) =>
        r.Topics.Find(t => t.TopicName == TopicName)?.Partitions.Find(p => p.PartitionIndex == PartitionIndex);

    // ------------------------------------------------------------------ EndQuorumEpoch

    public static EndQuorumEpochRequest EndQuorumEpochRequest(string? clusterId, int leaderId, int epoch, IReadOnlyList<int> preferredSuccessors) => new()
    {
        ClusterId = clusterId,
        Topics =
        [
            new EndQuorumEpochRequest.TopicData
            {
                TopicName = TopicName,
                Partitions =
                [
                    new EndQuorumEpochRequest.PartitionData
                    {
                        PartitionIndex = PartitionIndex,
                        LeaderId = leaderId,
                        LeaderEpoch = epoch,
                        PreferredSuccessors = [.. preferredSuccessors],
                        PreferredCandidates = [.. preferredSuccessors.Select(id => new EndQuorumEpochRequest.ReplicaInfo { CandidateId = id })],
                    },
                ],
            },
        ],
    };

    public static EndQuorumEpochResponse EndQuorumEpochResponse(ErrorCode error, ErrorCode partitionError, int leaderId, int epoch) => new()
    {
        ErrorCode = (short)error,
        Topics =
        [
            new EndQuorumEpochResponse.TopicData
            {
                TopicName = TopicName,
                Partitions =
                [
                    new EndQuorumEpochResponse.PartitionData
                    {
                        PartitionIndex = PartitionIndex,
                        ErrorCode = (short)partitionError,
                        LeaderId = leaderId,
                        LeaderEpoch = epoch,
                    },
                ],
            },
        ],
    };

    public static EndQuorumEpochRequest.PartitionData? Partition(EndQuorumEpochRequest r) =>
        r.Topics.Find(t => t.TopicName == TopicName)?.Partitions.Find(p => p.PartitionIndex == PartitionIndex);

    public static EndQuorumEpochResponse.PartitionData? Partition(EndQuorumEpochResponse r) =>
        r.Topics.Find(t => t.TopicName == TopicName)?.Partitions.Find(p => p.PartitionIndex == PartitionIndex);

    /// <summary>The preferred successors, from the KIP-853 field when present, else the older list.</summary>
    public static IReadOnlyList<int> PreferredSuccessors(EndQuorumEpochRequest.PartitionData p) =>
        p.PreferredCandidates.Count > 0 ? [.. p.PreferredCandidates.Select(c => c.CandidateId)] : p.PreferredSuccessors;

    // ------------------------------------------------------------------ Fetch

    public static FetchRequest FetchRequest(string? clusterId, int replicaId, int epoch, long fetchOffset, int lastFetchedEpoch,
        int maxWaitMs, int maxBytes)
    {
        return new()
        {
            ClusterId = clusterId,
            ReplicaId = replicaId,
            ReplicaState = new FetchRequest.ReplicaStateData { ReplicaId = replicaId, ReplicaEpoch = -1 },
            MaxWaitMs = maxWaitMs,
            MinBytes = 0,
            MaxBytes = maxBytes,
            Topics =
            [
                new FetchRequest.FetchTopic
                {
                    Topic = TopicName,
                    TopicId = MetadataTopicId,
                    Partitions =
                    [
                        new FetchRequest.FetchPartition
                        {
                            Partition = PartitionIndex,
                            CurrentLeaderEpoch = epoch,
                            FetchOffset = fetchOffset,
                            LastFetchedEpoch = lastFetchedEpoch,
                            LogStartOffset = -1,
                            PartitionMaxBytes = maxBytes,
                        },
                    ],
                },
            ],
        };
    }

    /// <summary>The fetching replica: ReplicaState.ReplicaId from v15, the top-level ReplicaId before.</summary>
    public static int ReplicaId(FetchRequest r) => r.ReplicaState.ReplicaId >= 0 ? r.ReplicaState.ReplicaId : r.ReplicaId;

    public static FetchRequest.FetchPartition? Partition(FetchRequest r) =>
        r.Topics.Find(t => t.Topic == TopicName || t.TopicId == MetadataTopicId)?.Partitions.Find(p => p.Partition == PartitionIndex);

    public static FetchResponse FetchResponse(ErrorCode error) => new() { ErrorCode = (short)error };

    public static FetchResponse FetchResponse(FetchResponse.PartitionData partition) => new()
    {
        Responses = [new FetchResponse.FetchableTopicResponse { Topic = TopicName, TopicId = MetadataTopicId, Partitions = [partition] }],
    };

    public static FetchResponse.PartitionData FetchPartition(ErrorCode error, int leaderId, int epoch, long highWatermark) => new()
    {
        PartitionIndex = PartitionIndex,
        ErrorCode = (short)error,
        HighWatermark = highWatermark,
        CurrentLeader = new FetchResponse.LeaderIdAndEpoch { LeaderId = leaderId, LeaderEpoch = epoch },
        Records = RecordSet.Empty,
    };

    public static FetchResponse.PartitionData? Partition(FetchResponse r) =>
        r.Responses.Find(t => t.Topic == TopicName || t.TopicId == MetadataTopicId)?.Partitions.Find(p => p.PartitionIndex == PartitionIndex);

    // ------------------------------------------------------------------ FetchSnapshot

    public static FetchSnapshotRequest FetchSnapshotRequest(string? clusterId, int replicaId, int epoch, OffsetAndEpoch snapshotId,
        long position, int maxBytes)
    {
        return new()
        {
            ClusterId = clusterId,
            ReplicaId = replicaId,
            MaxBytes = maxBytes,
            Topics =
            [
                new FetchSnapshotRequest.TopicSnapshot
                {
                    Name = TopicName,
                    Partitions =
                    [
                        new FetchSnapshotRequest.PartitionSnapshot
                        {
                            Partition = PartitionIndex,
                            CurrentLeaderEpoch = epoch,
                            SnapshotId = new FetchSnapshotRequest.SnapshotId { EndOffset = snapshotId.Offset, Epoch = snapshotId.Epoch },
                            Position = position,
                        },
                    ],
                },
            ],
        };
    }

    public static FetchSnapshotRequest.PartitionSnapshot? Partition(FetchSnapshotRequest r) =>
        r.Topics.Find(t => t.Name == TopicName)?.Partitions.Find(p => p.Partition == PartitionIndex);

    public static FetchSnapshotResponse FetchSnapshotResponse(ErrorCode error) => new() { ErrorCode = (short)error };

    public static FetchSnapshotResponse FetchSnapshotResponse(FetchSnapshotResponse.PartitionSnapshot partition) => new()
    {
        Topics = [new FetchSnapshotResponse.TopicSnapshot { Name = TopicName, Partitions = [partition] }],
    };

    public static FetchSnapshotResponse.PartitionSnapshot FetchSnapshotPartition(ErrorCode error, int leaderId, int epoch, OffsetAndEpoch snapshotId) => new()
    {
        Index = PartitionIndex,
        ErrorCode = (short)error,
        SnapshotId = new FetchSnapshotResponse.SnapshotId { EndOffset = snapshotId.Offset, Epoch = snapshotId.Epoch },
        CurrentLeader = new FetchSnapshotResponse.LeaderIdAndEpoch { LeaderId = leaderId, LeaderEpoch = epoch },
        UnalignedRecords = RecordSet.Empty,
    };

    public static FetchSnapshotResponse.PartitionSnapshot? Partition(FetchSnapshotResponse r) =>
        r.Topics.Find(t => t.Name == TopicName)?.Partitions.Find(p => p.Index == PartitionIndex);

    // ------------------------------------------------------------------ DescribeQuorum

    public static DescribeQuorumRequest DescribeQuorumRequest() => new()
    {
        Topics = [new DescribeQuorumRequest.TopicData { TopicName = TopicName, Partitions = [new DescribeQuorumRequest.PartitionData { PartitionIndex = PartitionIndex }] }],
    };

    public static bool AsksForMetadataPartition(DescribeQuorumRequest r) =>
        r.Topics.Exists(t => t.TopicName == TopicName && t.Partitions.Exists(p => p.PartitionIndex == PartitionIndex));

    public static DescribeQuorumResponse.PartitionData? Partition(DescribeQuorumResponse r) =>
        r.Topics.Find(t => t.TopicName == TopicName)?.Partitions.Find(p => p.PartitionIndex == PartitionIndex);
}
