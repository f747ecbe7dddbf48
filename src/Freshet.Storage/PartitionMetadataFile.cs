using Freshet.Protocol.Wire;

namespace Freshet.Storage;

/// <summary>
/// Kafka's <c>partition.metadata</c> file in a partition directory: "version: 0" and
/// "topic_id: &lt;base64 uuid&gt;", so a log left behind by a deleted topic of the same name is recognised.
/// </summary>
public static class PartitionMetadataFile
{
    public const string FileName = "partition.metadata";

    public static void Write(string dir, Uuid topicId)
    {
        string path = Path.Combine(dir, FileName);
        string tmp = path + ".tmp";
        File.WriteAllText(tmp, $"version: 0\ntopic_id: {topicId}\n");
        File.Move(tmp, path, overwrite: true);
    }

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
