using Freshet.Protocol.Wire;

namespace Freshet.Metadata.Raft;

/// <summary>
/// The log under a <see cref="RaftNode"/>: Kafka record batches (v2) whose PartitionLeaderEpoch is the
/// Raft epoch, an epoch history (a leader-epoch cache), a log start offset below which only a snapshot
/// remains, and snapshots. Single-threaded: only the node's driver thread calls it.
/// <para>
/// Durability: appends and truncations may be buffered; <see cref="Flush"/> makes everything up to
/// <see cref="EndOffset"/> durable, and <see cref="FlushedEndOffset"/> says how far that is. Raft counts
/// an entry toward the high watermark only once it is flushed. Snapshots are durable when
/// <see cref="StoreSnapshot"/> returns.
/// </para>
/// Batch boundaries: an implementation never splits a batch. Snapshot ends and fetch positions the node
/// uses are batch ends; <see cref="TruncateTo"/> drops a batch it would cut.
/// </summary>
public interface IRaftLog
{
    /// <summary>First offset still in the log (the latest snapshot's end offset once the prefix is deleted; 0 otherwise).</summary>
    long LogStartOffset { get; }

    /// <summary>Offset the next appended record gets.</summary>
    long EndOffset { get; }

    /// <summary>Offsets below this are durable.</summary>
    long FlushedEndOffset { get; }

    /// <summary>
    /// Epoch of the last entry: of the last batch, else of the snapshot the log starts at, else 0.
    /// </summary>
    int LastFetchedEpoch { get; }

    /// <summary>
    /// The leader-epoch cache lookup: the largest epoch E &lt;= <paramref name="epoch"/> that the log (or the
    /// snapshot it starts at) has entries of, and the offset where E's entries end (where the next epoch
    /// starts, or <see cref="EndOffset"/> for the last one). <see cref="OffsetAndEpoch.Unknown"/> when
    /// <paramref name="epoch"/> is older than everything the log still knows.
    /// </summary>
    OffsetAndEpoch EndOffsetForEpoch(int epoch);

    /// <summary>
    /// Appends one batch the leader built, stamped with <paramref name="epoch"/> and starting at
    /// <see cref="EndOffset"/>; returns the offset of its last record.
    /// </summary>
    long AppendAsLeader(ReadOnlyMemory<byte> batch, int epoch);

    /// <summary>
    /// Appends batches fetched from the leader (offsets and epochs as the leader assigned them). Batches
    /// entirely below <see cref="EndOffset"/> are skipped; the rest must continue the log exactly.
    /// Returns the new end offset.
    /// </summary>
    long AppendAsFollower(ReadOnlyMemory<byte> batches);

    /// <summary>
    /// Removes every entry at or after <paramref name="offset"/> (and the epochs that start there). A batch
    /// holding <paramref name="offset"/> goes whole, so the log may end before it; never below the log start.
    /// </summary>
    void TruncateTo(long offset);

    /// <summary>Makes every entry up to <see cref="EndOffset"/> durable.</summary>
    void Flush();

    /// <summary>
    /// Whole batches from the one holding <paramref name="offset"/>, at most <paramref name="maxBytes"/>
    /// (but at least one batch when any exists), as Kafka record-batch bytes. Empty at the end of the log.
    /// </summary>
    ReadOnlyMemory<byte> Read(long offset, int maxBytes);

    /// <summary>
    /// The same as <see cref="Read"/> as a record set for a fetch response; a file-backed log can answer
    /// with a file range the transport sends with sendfile.
    /// </summary>
    RecordSet ReadForFetch(long offset, int maxBytes) => new(Read(offset, maxBytes));

    /// <summary>The latest complete snapshot, if any.</summary>
    OffsetAndEpoch? LatestSnapshotId { get; }

    /// <summary>Reads a snapshot whole (at start, to hand it to the state machine).</summary>
    RaftSnapshot? ReadSnapshot(OffsetAndEpoch id);

    /// <summary>
    /// Up to <paramref name="maxBytes"/> of snapshot <paramref name="id"/> from <paramref name="position"/>;
    /// false when there is no such snapshot. <paramref name="size"/> is the snapshot's total size.
    /// </summary>
    bool TryReadSnapshotChunk(OffsetAndEpoch id, long position, int maxBytes, out long size, out ReadOnlyMemory<byte> chunk);

    /// <summary>Stores a complete snapshot durably (written by the state machine, or downloaded from the leader).</summary>
    void StoreSnapshot(RaftSnapshot snapshot);

    /// <summary>
    /// Deletes the log prefix that snapshot <paramref name="id"/> covers: the log start becomes
    /// <c>id.Offset</c>. The entries after it stay. <c>id.Offset</c> must not pass <see cref="EndOffset"/>.
    /// </summary>
    void DeleteBeforeSnapshot(OffsetAndEpoch id);

    /// <summary>
    /// Replaces the whole log with snapshot <paramref name="id"/> (a follower that downloaded it): log start
    /// and end become <c>id.Offset</c>, the epoch history is the snapshot's epoch alone.
    /// </summary>
    void ResetToSnapshot(OffsetAndEpoch id);
}
