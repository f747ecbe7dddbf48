using System.Globalization;
using System.Text;

namespace Freshet.Storage.Epochs;

/// <summary>The first offset a leader epoch wrote in the log.</summary>
public readonly record struct EpochEntry(int Epoch, long StartOffset);

/// <summary>
/// An answer of <see cref="LeaderEpochFileCache.EndOffsetFor"/> (and of OffsetForLeaderEpoch): the
/// largest epoch at or below the requested one and the offset where it ended, or
/// <see cref="Undefined"/> (-1, -1) when the log knows no such epoch.
/// </summary>
public readonly record struct EpochEndOffset(int Epoch, long EndOffset)
{
    public const int UndefinedEpoch = -1;
    public const long UndefinedEndOffset = -1;

    public static readonly EpochEndOffset Undefined = new(UndefinedEpoch, UndefinedEndOffset);

    public bool IsUndefined => EndOffset == UndefinedEndOffset;
}

/// <summary>
/// A partition's leader epoch cache (Kafka's LeaderEpochFileCache, KIP-101/KIP-279): for every
/// leader epoch that wrote to the log, the offset of its first batch, in increasing order of both.
/// It answers "where did epoch E end?" for OffsetForLeaderEpoch and for a follower's truncation.
///
/// <para>File (<c>leader-epoch-checkpoint</c> in the partition directory, Kafka's format):</para>
/// <code>
/// 0              version
/// 2              number of entries
/// 0 0            epoch start-offset
/// 3 1207
/// </code>
/// Written through <see cref="DurableFile"/> (to <c>.tmp</c>, fsynced, renamed, directory fsynced) at every
/// change, so a crash leaves a whole file.
/// Changes are rare (a new epoch, a truncation, the log start moving past an epoch's start), so the
/// append path pays one comparison per append and nothing else.
///
/// Concurrency: writers hold the owning <see cref="PartitionLog"/>'s lock; the entries are a
/// copy-on-write array, so readers (fetches, OffsetForLeaderEpoch) take no lock.
/// </summary>
public sealed class LeaderEpochFileCache
{
    public const string FileName = "leader-epoch-checkpoint";
    private const int Version = 0;

    private readonly StorageIo _io;
    private EpochEntry[] _entries;

    private LeaderEpochFileCache(StorageIo io, string path, EpochEntry[] entries)
    {
        _io = io;
        Path = path;
        _entries = entries;
    }

    public string Path { get; private set; }

    public IReadOnlyList<EpochEntry> Entries => Volatile.Read(ref _entries);

    /// <summary>The newest epoch, or null when the cache is empty.</summary>
    public EpochEntry? Latest
    {
        get
        {
            var e = Volatile.Read(ref _entries);
            return e.Length == 0 ? null : e[^1];
        }
    }

    /// <summary>The newest epoch, or -1 when the cache is empty.</summary>
    public int LatestEpoch
    {
        get
        {
            var e = Volatile.Read(ref _entries);
            return e.Length == 0 ? EpochEndOffset.UndefinedEpoch : e[^1].Epoch;
        }
    }

    /// <summary>An empty cache for a new log; the file is written at once.</summary>
    public static LeaderEpochFileCache Create(string dir) => Create(dir, StorageIo.Default);

    /// <summary>An empty cache for a new log; the file is written (and fsynced) at once, its directory fsynced by the caller.</summary>
    internal static LeaderEpochFileCache Create(string dir, StorageIo io)
    {
        var c = new LeaderEpochFileCache(io, System.IO.Path.Combine(dir, FileName), []);
        c.Write([], syncDirectory: false);
        return c;
    }

    /// <summary>Loads the file of <paramref name="dir"/>; <paramref name="found"/> is false when it is missing or malformed (the cache is then empty).</summary>
    public static LeaderEpochFileCache Load(string dir, out bool found) => Load(dir, out found, StorageIo.Default);

    internal static LeaderEpochFileCache Load(string dir, out bool found, StorageIo io)
    {
        string path = System.IO.Path.Combine(dir, FileName);
        var entries = TryRead(path);
        found = entries is not null;
        return new LeaderEpochFileCache(io, path, entries ?? []);
    }

    /// <summary>Parses a checkpoint file; null when missing or malformed (wrong version, count, order or syntax).</summary>
    public static EpochEntry[]? TryRead(string path)
    {
        string[] lines;
        try
        {
            if (!File.Exists(path)) return null;
            lines = File.ReadAllLines(path);
        }
        catch (IOException)
        {
            return null;
        }
        if (lines.Length < 2 || lines[0].Trim() != "0"
            || !int.TryParse(lines[1].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n != lines.Length - 2)
            return null;
        var result = new EpochEntry[n];
        for (int i = 0; i < n; i++)
        {
            var parts = lines[i + 2].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length != 2
                || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int epoch)
                || !long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long start))
                return null;
            result[i] = new EpochEntry(epoch, start);
            if (i > 0 && (epoch <= result[i - 1].Epoch || start < result[i - 1].StartOffset)) return null;
        }
        return result;
    }

    /// <summary>
    /// Records that <paramref name="epoch"/> starts at <paramref name="startOffset"/> (an append at a
    /// new epoch, or a leader taking over). Nothing changes when the epoch is negative (a batch written
    /// before epochs existed) or already the latest with an earlier start. Entries that would break
    /// the order (an epoch at or above the new one, or a start at or past the new one) are dropped
    /// first, as Kafka does. Returns true when the cache changed.
    /// </summary>
    public bool Assign(int epoch, long startOffset)
    {
        if (epoch < 0) return false;
        var cur = _entries;
        if (cur.Length > 0 && cur[^1].Epoch == epoch && cur[^1].StartOffset <= startOffset) return false;
        int keep = cur.Length;
        while (keep > 0 && (cur[keep - 1].Epoch >= epoch || cur[keep - 1].StartOffset >= startOffset)) keep--;
        var next = new EpochEntry[keep + 1];
        Array.Copy(cur, next, keep);
        next[keep] = new EpochEntry(epoch, startOffset);
        Publish(next);
        return true;
    }

    /// <summary>Removes the epochs that start at or past <paramref name="endOffset"/> (the log was truncated to end there).</summary>
    public bool TruncateFromEnd(long endOffset)
    {
        var cur = _entries;
        int keep = cur.Length;
        while (keep > 0 && cur[keep - 1].StartOffset >= endOffset) keep--;
        if (keep == cur.Length) return false;
        Publish(cur[..keep]);
        return true;
    }

    /// <summary>
    /// The log now starts at <paramref name="startOffset"/> (retention, DeleteRecords): epochs that
    /// ended before it go, and the epoch holding it starts there.
    /// </summary>
    public bool TruncateFromStart(long startOffset)
    {
        var cur = _entries;
        // The last entry starting at or before the new start is the epoch that holds it.
        int floor = -1;
        for (int i = 0; i < cur.Length && cur[i].StartOffset <= startOffset; i++) floor = i;
        if (floor < 0 || floor == 0 && cur[0].StartOffset == startOffset) return false;
        var next = cur[floor..];
        next[0] = next[0] with { StartOffset = startOffset };
        Publish(next);
        return true;
    }

    /// <summary>Replaces every entry (rebuild from the log, or a log started over at a new offset).</summary>
    public void Reset(IReadOnlyList<EpochEntry> entries) => Publish([.. entries]);

    /// <summary>The partition directory moved (topic deletion renames it); later writes go to the new place.</summary>
    public void Relocate(string dir) => Path = System.IO.Path.Combine(dir, FileName);

    /// <summary>
    /// Where <paramref name="requestedEpoch"/> ended, with Kafka's semantics:
    /// <list type="bullet">
    /// <item>-1 asked, or an epoch above the latest: <see cref="EpochEndOffset.Undefined"/>;</item>
    /// <item>the latest epoch: it has not ended, its end is <paramref name="logEndOffset"/>;</item>
    /// <item>an epoch below the latest: the largest known epoch at or below it, ending where the next known epoch starts;</item>
    /// <item>below every known epoch: the requested epoch, ending where the first known epoch starts (its data is gone).</item>
    /// </list>
    /// </summary>
    public EpochEndOffset EndOffsetFor(int requestedEpoch, long logEndOffset)
    {
        var e = Volatile.Read(ref _entries);
        if (requestedEpoch == EpochEndOffset.UndefinedEpoch || e.Length == 0) return EpochEndOffset.Undefined;
        if (e[^1].Epoch == requestedEpoch) return new EpochEndOffset(requestedEpoch, logEndOffset);
        // The first entry with an epoch above the requested one.
        int higher = -1;
        for (int i = 0; i < e.Length; i++)
        {
            if (e[i].Epoch > requestedEpoch)
            {
                higher = i;
                break;
            }
        }
        if (higher < 0) return EpochEndOffset.Undefined;
        if (higher == 0) return new EpochEndOffset(requestedEpoch, e[0].StartOffset);
        return new EpochEndOffset(e[higher - 1].Epoch, e[higher].StartOffset);
    }

    /// <summary>The epoch of the entry holding <paramref name="offset"/>, or -1.</summary>
    public int EpochForOffset(long offset)
    {
        var e = Volatile.Read(ref _entries);
        int epoch = EpochEndOffset.UndefinedEpoch;
        foreach (var entry in e)
        {
            if (entry.StartOffset > offset) break;
            epoch = entry.Epoch;
        }
        return epoch;
    }

    /// <summary>Memory first: a failed write (disk full) leaves the file behind, which the log's recovery detects and rebuilds.</summary>
    private void Publish(EpochEntry[] next)
    {
        Volatile.Write(ref _entries, next);
        Write(next);
    }

    /// <summary>Writes the current entries again (after a failed write).</summary>
    public void Flush() => Write(Volatile.Read(ref _entries));

    private void Write(EpochEntry[] entries, bool syncDirectory = true)
    {
        var sb = new StringBuilder();
        sb.Append(Version.ToString(CultureInfo.InvariantCulture)).Append('\n')
          .Append(entries.Length.ToString(CultureInfo.InvariantCulture)).Append('\n');
        foreach (var e in entries)
            sb.Append(e.Epoch.ToString(CultureInfo.InvariantCulture)).Append(' ').Append(e.StartOffset.ToString(CultureInfo.InvariantCulture)).Append('\n');
        DurableFile.Write(_io, Path, Encoding.UTF8.GetBytes(sb.ToString()), syncDirectory: syncDirectory);
    }
}
