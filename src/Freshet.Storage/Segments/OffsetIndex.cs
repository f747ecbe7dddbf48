using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;

namespace Freshet.Storage.Segments;

/// <summary>
/// The sparse offset index of a segment (<c>.index</c> file): entries of (offset relative to the
/// segment's base offset: int32, byte position of the batch in the .log file: int32), both
/// big-endian, in increasing order, one entry per <c>index.interval.bytes</c> of log. A lookup gives
/// the greatest entry at or before an offset; the reader then scans batch headers forward from there.
///
/// Entries live in memory (8 bytes each, one per 4 KiB of log by default) and are written to the
/// file when the segment is flushed, rolled or closed. The file is not checksummed: recovery
/// checks its shape and rebuilds it from the log when anything is off, as Kafka does.
///
/// Concurrency: one writer (the partition's append lock) and lock-free readers. The writer
/// publishes the (possibly grown) array before the count, so a reader that reads the count
/// first never indexes past the array it then reads.
/// </summary>
public sealed class OffsetIndex
{
    public const int EntrySize = 8;

    private long[] _entries; // (relativeOffset << 32) | (uint)position
    private int _count;
    private int _persisted; // entries already in the file

    /// <summary>
    /// Serializes the file operations: a rolled segment's background flush must not reopen the file by
    /// its old name while retention renames it to .deleted (it would leave an empty index behind).
    /// </summary>
    private readonly Lock _fileLock = new();

    private readonly StorageIo _io;

    internal OffsetIndex(StorageIo io, string path, long baseOffset, int maxIndexSize)
    {
        _io = io;
        Path = path;
        BaseOffset = baseOffset;
        MaxEntries = Math.Max(1, maxIndexSize / EntrySize);
        _entries = new long[Math.Min(MaxEntries, 64)];
    }

    public string Path { get; private set; }
    public long BaseOffset { get; }
    public int MaxEntries { get; }
    public int Count => Volatile.Read(ref _count);
    public bool IsFull => _count >= MaxEntries;

    /// <summary>The offset of the last entry, or the base offset when there is none.</summary>
    public long LastOffset
    {
        get
        {
            int c = Count;
            return c == 0 ? BaseOffset : BaseOffset + (int)(Volatile.Read(ref _entries)[c - 1] >> 32);
        }
    }

    public void Append(long offset, int position)
    {
        long rel = offset - BaseOffset;
        if (rel < 0 || rel > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(offset), $"offset {offset} outside the index of segment {BaseOffset}");
        int c = _count;
        if (c >= MaxEntries) throw new InvalidOperationException($"offset index of segment {BaseOffset} is full");
        if (c > 0)
        {
            long last = _entries[c - 1];
            if (rel <= (int)(last >> 32) || position <= (int)last) return; // not past the last entry: nothing to add
        }
        if (c == _entries.Length)
        {
            var grown = new long[Math.Min(MaxEntries, _entries.Length * 2)];
            Array.Copy(_entries, grown, c);
            Volatile.Write(ref _entries, grown);
        }
        _entries[c] = (rel << 32) | (uint)position;
        Volatile.Write(ref _count, c + 1);
    }

    /// <summary>The greatest entry with offset at or below <paramref name="offset"/>; (base offset, 0) when none.</summary>
    public (long Offset, int Position) Lookup(long offset)
    {
        int c = Count;
        var e = Volatile.Read(ref _entries);
        long rel = offset - BaseOffset;
        if (c == 0 || rel < (int)(e[0] >> 32)) return (BaseOffset, 0);
        int lo = 0, hi = c - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) >>> 1;
            if ((int)(e[mid] >> 32) <= rel) lo = mid;
            else hi = mid - 1;
        }
        return (BaseOffset + (int)(e[lo] >> 32), (int)e[lo]);
    }

    /// <summary>Removes entries at or past <paramref name="offset"/>.</summary>
    public void TruncateTo(long offset)
    {
        long rel = offset - BaseOffset;
        int c = _count;
        while (c > 0 && (int)(_entries[c - 1] >> 32) >= rel) c--;
        Volatile.Write(ref _count, c);
        if (_persisted > c) _persisted = -1; // file must be rewritten
    }

    public void Reset() => TruncateTo(BaseOffset);

    /// <summary>Writes entries not yet in the file; rewrites it after a truncation. <paramref name="fsync"/> also syncs it.</summary>
    public void Flush(bool fsync)
    {
        lock (_fileLock)
        {
            int c = _count;
            if (_persisted == c && !fsync) return;
            bool rewrite = _persisted < 0;
            int from = rewrite ? 0 : _persisted;
            string path = Path;
            using var h = _io.Open(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
            if (c > from)
            {
                var buf = new byte[(c - from) * EntrySize];
                for (int i = from; i < c; i++)
                {
                    BinaryPrimitives.WriteInt32BigEndian(buf.AsSpan((i - from) * EntrySize), (int)(_entries[i] >> 32));
                    BinaryPrimitives.WriteInt32BigEndian(buf.AsSpan((i - from) * EntrySize + 4), (int)_entries[i]);
                }
                _io.Write(h, path, buf, (long)from * EntrySize);
            }
            if (RandomAccess.GetLength(h) != (long)c * EntrySize) _io.SetLength(h, path, (long)c * EntrySize);
            if (fsync) _io.Fsync(h, path);
            _persisted = c;
        }
    }

    /// <summary>
    /// Loads the file. False (and an empty index) when its shape is wrong: size not a multiple of
    /// 8, offsets or positions not increasing, an offset at or past <paramref name="nextOffset"/>
    /// or a position past <paramref name="logSize"/>. The caller then rebuilds it from the log.
    /// </summary>
    public bool Load(long nextOffset, long logSize)
    {
        Reset();
        _persisted = -1;
        if (!File.Exists(Path)) return false;
        byte[] bytes = File.ReadAllBytes(Path);
        if (bytes.Length % EntrySize != 0 || bytes.Length / EntrySize > MaxEntries) return false;
        int n = bytes.Length / EntrySize;
        if (_entries.Length < n) _entries = new long[n];
        int lastRel = -1, lastPos = -1;
        for (int i = 0; i < n; i++)
        {
            int rel = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(i * EntrySize));
            int pos = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(i * EntrySize + 4));
            if (rel <= lastRel || pos <= lastPos || pos < 0 || BaseOffset + rel >= nextOffset || pos >= logSize)
            {
                Reset();
                return false;
            }
            _entries[i] = ((long)rel << 32) | (uint)pos;
            lastRel = rel;
            lastPos = pos;
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
