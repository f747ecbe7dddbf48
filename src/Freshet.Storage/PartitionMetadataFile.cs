using Freshet.Protocol.Wire;

namespace Freshet.Storage;

/// <summary>
/// Kafka's <c>partition.metadata</c> file in a partition directory: "version: 0" and
/// "topic_id: &lt;base64 uuid&gt;", so a log left behind by a deleted topic of the same name is recognised.
/// </summary>
public static class PartitionMetadataFile
{
    public const string FileName = "partition.metadata";

    /// <summary>Writes the file durably (<see cref="DurableFile"/>).</summary>
    public static void Write(string dir, Uuid topicId) => Write(StorageIo.Default, dir, topicId);

    /// <summary>Writes the file; without <paramref name="syncDirectory"/> the caller fsyncs the directory.</summary>
    internal static void Write(StorageIo io, string dir, Uuid topicId, bool syncDirectory = true) =>
        DurableFile.Write(io, Path.Combine(dir, FileName), System.Text.Encoding.UTF8.GetBytes($"version: 0\ntopic_id: {topicId}\n"), syncDirectory: syncDirectory);

    public static Uuid? Read(string dir)
    {
        string path = Path.Combine(dir, FileName);
        if (!File.Exists(path)) return null;
        foreach (var line in File.ReadAllLines(path))
        {
            if (line.StartsWith("topic_id:", StringComparison.Ordinal) && Uuid.TryParse(line["topic_id:".Length..].Trim(), out var id))
                return id;
        }
        return null;
    }
}
