using System.Globalization;
using System.Text;
using Freshet.Protocol;

namespace Freshet.Storage.Checkpoints;

/// <summary>
/// Kafka's offset checkpoint text file (recovery-point-offset-checkpoint, log-start-offset-checkpoint,
/// replication-offset-checkpoint, cleaner-offset-checkpoint): a version line "0", a count line, then "topic partition offset"
/// lines. Written through <see cref="DurableFile"/> (temporary file, fsync, rename, directory fsync), so a
/// crash leaves a whole file. A malformed file reads as empty (the logs then recover from their first segment).
/// </summary>
public sealed class OffsetCheckpointFile
{
    public const string RecoveryPoint = "recovery-point-offset-checkpoint";
    public const string LogStartOffset = "log-start-offset-checkpoint";
    public const string Replication = "replication-offset-checkpoint";

    /// <summary>Per compacted log, the first offset its cleaner has not deduplicated yet (<see cref="PartitionLog.CleanerCheckpoint"/>).</summary>
    public const string CleanerOffset = "cleaner-offset-checkpoint";

    private readonly Lock _lock = new();
    private readonly StorageIo _io;

    public OffsetCheckpointFile(string path)
        : this(path, StorageIo.Default)
    {
    }

    internal OffsetCheckpointFile(string path, StorageIo io)
    {
        Path = path;
        _io = io;
    }

    public string Path { get; }

    public void Write(IEnumerable<KeyValuePair<TopicPartition, long>> offsets, bool fsync = true)
    {
        var list = offsets.ToList();
        var sb = new StringBuilder();
        sb.Append("0\n").Append(list.Count.ToString(CultureInfo.InvariantCulture)).Append('\n');
        foreach (var (tp, off) in list)
            sb.Append(tp.Topic).Append(' ').Append(tp.Partition.ToString(CultureInfo.InvariantCulture)).Append(' ')
              .Append(off.ToString(CultureInfo.InvariantCulture)).Append('\n');
        lock (_lock) DurableFile.Write(_io, Path, Encoding.UTF8.GetBytes(sb.ToString()), fsync);
    }

    public Dictionary<TopicPartition, long> Read()
    {
        var result = new Dictionary<TopicPartition, long>();
        string[] lines;
        lock (_lock)
        {
            if (!File.Exists(Path)) return result;
            lines = File.ReadAllLines(Path);
        }
        if (lines.Length < 2 || lines[0].Trim() != "0" || !int.TryParse(lines[1], CultureInfo.InvariantCulture, out int n) || n != lines.Length - 2)
            return result;
        for (int i = 2; i < lines.Length; i++)
        {
            var parts = lines[i].Split(' ');
            if (parts.Length != 3
                || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int p)
                || !long.TryParse(parts[2], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long off))
                return [];
            result[new TopicPartition(parts[0], p)] = off;
        }
        return result;
    }
}
