using Freshet.Metadata.Image;
using Freshet.Protocol;

namespace Freshet.Broker.Replication;

/// <summary>
/// Fetches (Kafka's ReplicaManager.fetchMessages, readFromLog and DelayedFetch): reads every partition a fetch asks
/// for through its <see cref="Partition"/>, and long polls until min.bytes arrive or max.wait.ms passes.
/// </summary>
public sealed partial class ReplicaManager
{
    /// <summary>
    /// Reads <paramref name="partitions"/> for one fetch and returns their results in the same order. First each
    /// partition is checked once: hosted here (else UNKNOWN_TOPIC_OR_PARTITION or NOT_LEADER_OR_FOLLOWER by
    /// <paramref name="image"/>), its leader epoch and role, a follower's membership; then the leader may name a
    /// preferred read replica for a consumer (KIP-392), a diverging epoch is looked for, and a follower's fetch offset
    /// is recorded as its progress. Then reads, and while fewer than min.bytes were found and no partition must be
    /// answered now (an error, a divergence, a preferred replica), waits for the partitions' signals (the log's
    /// growth for followers, the high watermark for consumers) until max.wait.ms (capped by the broker's maximum)
    /// or <paramref name="ct"/>, and reads again; each read checks the leader epoch and role again.
    /// <para>
    /// With a replica selector, a follower's fetch is also answered as soon as its response would carry a high
    /// watermark the follower was not sent yet: consumers of a follower otherwise see a quiet partition's new
    /// records only when the follower's long poll (replica.fetch.wait.max.ms) ends (see <see cref="Partition.FollowerLacksHighWatermark"/>).
    /// </para>
    /// </summary>
    public async ValueTask<FetchPartitionData[]> FetchMessagesAsync(FetchParams fetch, IReadOnlyList<FetchPartitionInfo> partitions, MetadataImage image,
        CancellationToken ct)
    {
        int n = partitions.Count;
        var results = new FetchPartitionData[n];
        // The partitions that passed the first look (null for the others).
        var hosted = new Partition?[n];
        // Answered by the first look (an error, a preferred read replica, a divergence): not read, and the fetch answers at once.
        var settled = new bool[n];
        bool pushHighWatermark = fetch.IsFromFollower && Options.ReplicaSelector != ReplicaSelector.Leader;
        var waitOn = new List<PartitionSignal>();
        for (int i = 0; i < n; i++)
        {
            var info = partitions[i];
            var p = GetPartition(info.TopicPartition);
            ErrorCode error = p is null
                ? image.Partition(info.TopicPartition.Topic, info.TopicPartition.Partition) is null ? ErrorCode.UnknownTopicOrPartition : ErrorCode.NotLeaderOrFollower
                : p.CheckFirstFetch(fetch, info.CurrentLeaderEpoch);
            if (error != ErrorCode.None)
            {
                results[i] = FetchPartitionData.Failed(error);
                settled[i] = true;
                continue;
            }
            hosted[i] = p; // passed the first look: the high watermark sent to a follower is noted below
            int preferred = -1;
            if (!fetch.FetchOnlyLeader && Options.ReplicaSelector != ReplicaSelector.Leader && p!.IsLeader)
                preferred = p.SelectReadReplica(Options.ReplicaSelector, fetch.ClientRack, info.FetchOffset, fetch.ListenerName);
            var diverging = preferred < 0 ? p!.FindDivergingEpoch(info.LastFetchedEpoch, info.FetchOffset) : null;
            if (preferred >= 0 || diverging is not null)
            {
                results[i] = p!.AnswerWithoutRecords(diverging, preferred);
                settled[i] = true;
                continue;
            }
            waitOn.Add(fetch.Isolation == FetchIsolation.LogEnd ? p!.EndSignal : p!.Signal);
            if (pushHighWatermark) waitOn.Add(p.Signal);
        }
        if (fetch.IsFromFollower)
        {
            for (int i = 0; i < n; i++)
                if (!settled[i]) hosted[i]!.UpdateFollowerFetchState(fetch, partitions[i]);
        }

        int maxWait = Math.Clamp(fetch.MaxWaitMs, 0, Options.MaxFetchWaitMs);
        long deadline = Environment.TickCount64 + maxWait;
        while (true)
        {
            // Note the signals' versions before reading, so data appended in between wakes the wait below at once.
            var seen = DataWaiter.Snapshot(waitOn);
            var (bytes, answerNow) = ReadFromLocalLog(fetch, partitions, hosted, settled, results);
            if (pushHighWatermark && !answerNow) answerNow = HasNewHighWatermark(fetch.ReplicaId, hosted, results);
            long remaining = deadline - Environment.TickCount64;
            if (bytes >= fetch.MinBytes || answerNow || remaining <= 0 || waitOn.Count == 0) break;
            await DataWaiter.WaitAsync(waitOn, seen, (int)remaining, ct).ConfigureAwait(false);
            if (ct.IsCancellationRequested) break;
        }
        if (pushHighWatermark)
        {
            for (int i = 0; i < n; i++)
                hosted[i]?.NoteHighWatermarkSent(fetch.ReplicaId, results[i].HighWatermark);
        }
        return results;
    }

    /// <summary>
    /// Reads every partition not settled by the first look, within the response's byte budget; returns the bytes
    /// found and whether any partition must be answered now.
    /// </summary>
    private static (int Bytes, bool AnswerNow) ReadFromLocalLog(FetchParams fetch, IReadOnlyList<FetchPartitionInfo> partitions, Partition?[] hosted,
        bool[] settled, FetchPartitionData[] results)
    {
        int total = 0;
        bool answerNow = false;
        bool minOne = fetch.MinOneMessage;
        for (int i = 0; i < results.Length; i++)
        {
            if (settled[i])
            {
                answerNow = true;
                continue;
            }
            var info = partitions[i];
            int maxBytes = Math.Min(info.MaxBytes, Math.Max(0, fetch.MaxBytes - total));
            var r = hosted[i]!.ReadRecords(fetch, info, maxBytes, minOne);
            results[i] = r;
            if (r.Error != ErrorCode.None)
            {
                answerNow = true;
                continue;
            }
            if (r.Records is { } records)
            {
                total += records.Length;
                minOne = false;
            }
        }
        return (total, answerNow);
    }

    /// <summary>Whether the response would carry a high watermark the follower was not sent yet, for any partition it reads.</summary>
    private static bool HasNewHighWatermark(int replicaId, Partition?[] hosted, FetchPartitionData[] results)
    {
        for (int i = 0; i < results.Length; i++)
            if (hosted[i] is { } p && p.FollowerLacksHighWatermark(replicaId, results[i].HighWatermark)) return true;
        return false;
    }

    // ---------------------------------------------------------------- log directories

    /// <summary>
    /// Every configured log directory (DescribeLogDirs): its full path, whether it failed, and the logs in it among
    /// <paramref name="wanted"/> (null: all) with their size on disk and how far their end is behind the high watermark.
    /// </summary>
    public IReadOnlyList<LogDirDescription> DescribeLogDirs(IReadOnlySet<TopicPartition>? wanted)
    {
        var dirs = new List<LogDirDescription>();
        foreach (string dir in Logs.Options.LogDirs)
        {
            string full = Path.GetFullPath(dir);
            if (Logs.Failures.IsOffline(dir))
            {
                dirs.Add(new LogDirDescription(full, Offline: true, []));
                continue;
            }
            var replicas = Logs.Logs
                .Where(l => string.Equals(Path.GetFullPath(Path.GetDirectoryName(l.Dir)!), full, StringComparison.Ordinal))
                .Where(l => wanted is null || wanted.Contains(l.TopicPartition))
                .Select(l => new LogDirReplica(l.TopicPartition, l.Size, Math.Max(0, l.HighWatermark - l.LogEndOffset)))
                .ToList();
            dirs.Add(new LogDirDescription(full, Offline: false, replicas));
        }
        return dirs;
    }
}

/// <summary>A log directory as DescribeLogDirs reports it; an offline one lists no replicas.</summary>
public sealed record LogDirDescription(string Path, bool Offline, IReadOnlyList<LogDirReplica> Replicas);

/// <summary>A replica's log in a directory: its size on disk and how far its end is behind the high watermark.</summary>
public readonly record struct LogDirReplica(TopicPartition TopicPartition, long Size, long OffsetLag);
