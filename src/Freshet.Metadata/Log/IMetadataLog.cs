using static Freshet.Metadata.Log.MetadataRecordSerde;

namespace Freshet.Metadata.Log;

/// <summary>
/// The ordered, durable log of metadata records. With one node it is a local partition log whose
/// appends are commits; the Raft quorum will provide the same surface with replicated commits.
/// </summary>
public interface IMetadataLog
{
    /// <summary>Offset the next record will get.</summary>
    long EndOffset { get; }

    /// <summary>Every committed record in order, with its offset.</summary>
    IEnumerable<(long Offset, VersionedRecord Record)> ReadAll();

    /// <summary>Appends records as one batch, durably; returns the offset of the last one.</summary>
    long Append(IReadOnlyList<VersionedRecord> records);
}
