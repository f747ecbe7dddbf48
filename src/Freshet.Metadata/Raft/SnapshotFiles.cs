using System.Globalization;
using Freshet.Storage;

namespace Freshet.Metadata.Raft;

/// <summary>
/// Raft snapshots as files in the partition directory, named as KRaft names them (KIP-630):
/// <c>{end offset:D20}-{epoch:D10}.checkpoint</c>, e.g. <c>00000000000000001234-0000000007.checkpoint</c>
/// for the state up to (excluding) offset 1234, whose last entry is of epoch 7. The content is the
/// snapshot's bytes exactly as the state machine wrote them (opaque here).
/// <para>
/// A snapshot is written to <c>{name}.checkpoint.part</c>, fsynced, renamed to its final name and the
/// directory fsynced: a name without <c>.part</c> is a complete, durable snapshot. A <c>.part</c> file
/// is the leftover of a crash during a write and is deleted when the directory is loaded.
/// </para>
/// </summary>
internal static class SnapshotFiles
{
    public const string Suffix = ".checkpoint";
    public const string PartSuffix = Suffix + ".part";
    public const string DeletedSuffix = Suffix + ".deleted";

    private const int OffsetDigits = 20;
    private const int EpochDigits = 10;
    private const int NameLength = OffsetDigits + 1 + EpochDigits;

    public static string FileName(OffsetAndEpoch id) =>
        string.Create(CultureInfo.InvariantCulture, $"{id.Offset:D20}-{id.Epoch:D10}{Suffix}");

    public static string PathOf(string dir, OffsetAndEpoch id) => Path.Combine(dir, FileName(id));

    /// <summary>Parses a complete snapshot's file name (not a <c>.part</c> or <c>.deleted</c> one).</summary>
    public static bool TryParse(string fileName, out OffsetAndEpoch id)
    {
        id = default;
        if (fileName.Length != NameLength + Suffix.Length || !fileName.EndsWith(Suffix, StringComparison.Ordinal) || fileName[OffsetDigits] != '-')
            return false;
        if (!long.TryParse(fileName.AsSpan(0, OffsetDigits), NumberStyles.None, CultureInfo.InvariantCulture, out long offset)
            || !int.TryParse(fileName.AsSpan(OffsetDigits + 1, EpochDigits), NumberStyles.None, CultureInfo.InvariantCulture, out int epoch))
            return false;
        id = new OffsetAndEpoch(offset, epoch);
        return true;
    }

    /// <summary>The complete snapshots of <paramref name="dir"/> in offset order; deletes leftovers of interrupted writes and deletions.</summary>
    public static List<OffsetAndEpoch> Load(string dir)
    {
        var ids = new List<OffsetAndEpoch>();
        foreach (var f in Directory.EnumerateFiles(dir))
        {
            string name = Path.GetFileName(f);
            if (name.EndsWith(PartSuffix, StringComparison.Ordinal) || name.EndsWith(DeletedSuffix, StringComparison.Ordinal)) File.Delete(f);
            else if (TryParse(name, out var id)) ids.Add(id);
        }
        ids.Sort(Compare);
        return ids;
    }

    /// <summary>Offset first, then epoch: the order in which snapshots supersede each other.</summary>
    public static int Compare(OffsetAndEpoch a, OffsetAndEpoch b) =>
        a.Offset != b.Offset ? a.Offset.CompareTo(b.Offset) : a.Epoch.CompareTo(b.Epoch);

    /// <summary>Writes a snapshot durably: temporary file, fsync, rename, directory fsync.</summary>
    public static void Write(string dir, RaftSnapshot snapshot)
    {
        DurableFile.Write(PathOf(dir, snapshot.Id), snapshot.Data.Span, tempSuffix: ".part");
    }

    /// <summary>The whole snapshot, or null when its file is gone.</summary>
    public static byte[]? ReadAll(string dir, OffsetAndEpoch id)
    {
        try
        {
            return File.ReadAllBytes(PathOf(dir, id));
        }
        catch (FileNotFoundException)
        {
            return null;
        }
    }

    /// <summary>
    /// Up to <paramref name="maxBytes"/> from <paramref name="position"/> (random access, for FetchSnapshot);
    /// false when the file is gone or the position is past its end.
    /// </summary>
    public static bool TryReadChunk(string dir, OffsetAndEpoch id, long position, int maxBytes, out long size, out byte[] chunk)
    {
        chunk = [];
        size = 0;
        Microsoft.Win32.SafeHandles.SafeFileHandle h;
        try
        {
            h = File.OpenHandle(PathOf(dir, id), FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (FileNotFoundException)
        {
            return false;
        }
        using (h)
        {
            size = RandomAccess.GetLength(h);
            if (position < 0 || position > size) return false;
            chunk = new byte[(int)Math.Min(Math.Max(0, maxBytes), size - position)];
            int read = 0;
            while (read < chunk.Length)
            {
                int n = RandomAccess.Read(h, chunk.AsSpan(read), position + read);
                if (n <= 0) throw new IOException($"snapshot {FileName(id)} ended at {position + read}, expected {size} bytes");
                read += n;
            }
            return true;
        }
    }

    /// <summary>Deletes a snapshot: renamed first, so a crash never leaves a partial file under a complete name.</summary>
    public static void Delete(string dir, OffsetAndEpoch id)
    {
        string path = PathOf(dir, id);
        if (!File.Exists(path)) return;
        string deleted = path + ".deleted";
        File.Move(path, deleted, overwrite: true);
        File.Delete(deleted);
    }
}

