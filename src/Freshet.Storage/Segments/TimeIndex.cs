using System.Buffers.Binary;

namespace Freshet.Storage.Segments;

/// <summary>
/// The sparse time index of a segment (<c>.timeindex</c> file): entries of (timestamp: int64,
/// offset relative to the base: int32), big-endian, timestamps strictly increasing. An entry is
/// added beside an offset index entry when the segment's largest timestamp has grown since the
/// last one; the offset is the last offset of the batch that carried that timestamp. A lookup
/// gives the greatest entry with timestamp at or below a target, a safe place to start scanning.
/// Same memory/file and concurrency scheme as <see cref="OffsetIndex"/>.
/// </summary>
public sealed class TimeIndex
{
    public const int EntrySize = 12;

    private readonly record struct Entry(long Timestamp, int RelativeOffset);

    private Entry[] _entries;
    private int _count;
    private int _persisted;

    /// <summary>
    /// Serializes the file operations: a rolled segment's background flush must not reopen the file by
    /// its old name while retention renames it to .deleted (it would leave an empty index behind).
    /// </summary>
    private readonly Lock _fileLock = new();

    private readonly StorageIo _io;

    internal TimeIndex(StorageIo io, string path, long baseOffset, int maxIndexSize)
    {
        _io = io;
        Path = path;
        BaseOffset = baseOffset;
        MaxEntries = Math.Max(1, maxIndexSize / EntrySize);
        _entries = new Entry[Math.Min(MaxEntries, 64)];
    }

    public string Path { get; private set; }
    public long BaseOffset { get; }
    public int MaxEntries { get; }
    public int Count => Volatile.Read(ref _count);
    public bool IsFull => _count >= MaxEntries;

    public long LastTimestamp
    {
        get
        {
            int c = Count;
            return c == 0 ? -1 : Volatile.Read(ref _entries)[c - 1].Timestamp;
        }
    }

    public void MaybeAppend(long timestamp, long offset)
    {
        int c = _count;
        if (c >= MaxEntries) return;
        if (c > 0 && (timestamp <= _entries[c - 1].Timestamp || offset - BaseOffset <= _entries[c - 1].RelativeOffset)) return;
        if (c == _entries.Length)
        {
            var grown = new Entry[Math.Min(MaxEntries, _entries.Length * 2)];
            Array.Copy(_entries, grown, c);
            Volatile.Write(ref _entries, grown);
        }
        _entries[c] = new Entry(timestamp, checked((int)(offset - BaseOffset)));
        Volatile.Write(ref _count, c + 1);
    }

    /// <summary>The greatest entry with timestamp at or below <paramref name="timestamp"/>; (-1, base offset) when none.</summary>
    public (long Timestamp, long Offset) Lookup(long timestamp)
    {
        int c = Count;
        var e = Volatile.Read(ref _entries);
        if (c == 0 || e[0].Timestamp > timestamp) return (-1, BaseOffset);
        int lo = 0, hi = c - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >>> 1;
            if (e[mid].Timestamp <= timestamp) lo = mid;
            else hi = mid - 1;
        }
        return (e[lo].Timestamp, BaseOffset + e[lo].RelativeOffset);
    }

    public void TruncateTo(long offset)
    {
        long rel = offset - BaseOffset;
        int c = _count;
        while (c > 0 && _entries[c - 1].RelativeOffset >= rel) c--;
        Volatile.Write(ref _count, c);
        if (_persisted > c) _persisted = -1;
    }

    public void Reset() => TruncateTo(BaseOffset);

    public void Flush(bool fsync)
    {
        lock (_fileLock)
        {
            int c = _count;
            if (_persisted == c && !fsync) return;
            int from = _persisted < 0 ? 0 : _persisted;
            string path = Path;
            using var h = _io.Open(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
            if (c > from)
            {
                var buf = new byte[(c - from) * EntrySize];
                for (int i = from; i < c; i++)
                {
                    BinaryPrimitives.WriteInt64BigEndian(buf.AsSpan((i - from) * EntrySize), _entries[i].Timestamp);
                    BinaryPrimitives.WriteInt32BigEndian(buf.AsSpan((i - from) * EntrySize + 8), _entries[i].RelativeOffset);
                }
                _io.Write(h, path, buf, (long)from * EntrySize);
            }
            if (RandomAccess.GetLength(h) != (long)c * EntrySize) _io.SetLength(h, path, (long)c * EntrySize);
            if (fsync) _io.Fsync(h, path);
            _persisted = c;
        }
    }

    /// <summary>Loads the file; false (and empty) when its shape is wrong, so the caller rebuilds it.</summary>
    public bool Load(long nextOffset)
    {
        Reset();
        _persisted = -1;
        if (!File.Exists(Path)) return false;
        byte[] bytes = File.ReadAllBytes(Path);
        if (bytes.Length % EntrySize != 0 || bytes.Length / EntrySize > MaxEntries) return false;
        int n = bytes.Length / EntrySize;
        if (_entries.Length < n) _entries = new Entry[n];
        long lastTs = long.MinValue;
        int lastRel = -1;
        for (int i = 0; i < n; i++)
        {
            long ts = BinaryPrimitives.ReadInt64BigEndian(bytes.AsSpan(i * EntrySize));
            int rel = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(i * EntrySize + 8));
            if (ts <= lastTs || rel < lastRel || BaseOffset + rel >= nextOffset)
            {
                Reset();
                return false;
            }
            _entries[i] = new Entry(ts, rel);
            lastTs = ts;
            lastRel = rel;
        }
        Volatile.Write(ref _count, n);
        _persisted = n;
        return true;
    }

    public void Rename(string newPath)
    {
        lock (_fileLock)
        {
            if (File.Exists(Path)) _io.Move(Path, newPath);
            Path = newPath;
        }
    }

    public void DeleteFile()
    {
        lock (_fileLock)
        {
            if (File.Exists(Path)) File.Delete(Path);
        }
    }
}
