using System.Buffers;
using System.Buffers.Binary;
using Freshet.Protocol.Records;
using Microsoft.Win32.SafeHandles;

namespace Freshet.Storage.Segments;

/// <summary>
/// One segment of a partition log: <c>{baseOffset:D20}.log</c> holding record batches back to back,
/// with its <see cref="OffsetIndex"/> and <see cref="TimeIndex"/>. Only the active (last) segment
/// is appended to, under the partition's lock; readers use <see cref="Size"/> as the end of valid
/// data and never look past it.
///
/// Failure policy: an IOException from a write leaves the file as long as it was before the
/// write (the partial tail is cut off) and propagates; when the tail cannot be cut off either, a
/// <see cref="TornWriteException"/> says so. <see cref="Size"/> never covers a failed write, so no
/// reader sees its bytes. What the partition makes of it: see <see cref="PartitionLog"/>.
///
/// Writes, fsyncs, truncations and renames go through <see cref="StorageIo"/>.
/// </summary>
public sealed class LogSegment : IDisposable
{
    public const string LogSuffix = ".log";
    public const string IndexSuffix = ".index";
    public const string TimeIndexSuffix = ".timeindex";
    public const string DeletedSuffix = ".deleted";
    public const string CleanedSuffix = ".cleaned";

    /// <summary>
    /// Suffix of a cleaned segment's .log file once the cleaner has committed to swapping it in
    /// (see <see cref="Cleaner.LogCleaner"/> for the protocol): <c>{base}.log.swap</c> replaces the
    /// segments it covers even if the process dies before the swap completes.
    /// </summary>
    public const string SwapSuffix = ".swap";

    private readonly SafeFileHandle _log;
    private readonly StorageIo _io;
    private int _size;
    private int _bytesSinceLastIndexEntry;
    private long _maxTimestamp = RecordBatch.NoTimestamp;
    private long _offsetOfMaxTimestamp = -1;
    private long _firstBatchTimestamp = RecordBatch.NoTimestamp;
    private bool _disposed;

    private LogSegment(StorageIo io, string dir, long baseOffset, SafeFileHandle log, int size, int indexIntervalBytes, int maxIndexSize, long createdMs,
        string fileSuffix = "")
    {
        _io = io;
        Dir = dir;
        BaseOffset = baseOffset;
        _log = log;
        _size = size;
        IndexIntervalBytes = indexIntervalBytes;
        LogPath = FilePath(dir, baseOffset, LogSuffix) + fileSuffix;
        OffsetIndex = new OffsetIndex(io, FilePath(dir, baseOffset, IndexSuffix) + fileSuffix, baseOffset, maxIndexSize);
        TimeIndex = new TimeIndex(io, FilePath(dir, baseOffset, TimeIndexSuffix) + fileSuffix, baseOffset, maxIndexSize);
        CreatedMs = createdMs;
    }

    public string Dir { get; }
    public long BaseOffset { get; }
    public string LogPath { get; private set; }
    public OffsetIndex OffsetIndex { get; }
    public TimeIndex TimeIndex { get; }
    public int IndexIntervalBytes { get; set; }

    /// <summary>Bytes of valid data in the .log file.</summary>
    public int Size => Volatile.Read(ref _size);

    /// <summary>When the segment was created (for segment.ms when no batch carries a timestamp).</summary>
    public long CreatedMs { get; }

    /// <summary>Largest batch max timestamp in the segment, -1 when none.</summary>
    public long MaxTimestamp => Volatile.Read(ref _maxTimestamp);

    /// <summary>Last offset of the batch that carried <see cref="MaxTimestamp"/>.</summary>
    public long OffsetOfMaxTimestamp => Volatile.Read(ref _offsetOfMaxTimestamp);

    /// <summary>Timestamp of the first batch (segment.ms counts from it, as Kafka does), -1 when none.</summary>
    public long FirstBatchTimestamp => _firstBatchTimestamp;

    public SafeFileHandle Handle => _log;

    public static string FilePath(string dir, long baseOffset, string suffix) =>
        Path.Combine(dir, baseOffset.ToString("D20", System.Globalization.CultureInfo.InvariantCulture) + suffix);

    /// <summary>Creates an empty segment file (its name is made durable by the owner's next directory fsync).</summary>
    internal static LogSegment Create(StorageIo io, string dir, long baseOffset, int indexIntervalBytes, int maxIndexSize, long nowMs)
    {
        string path = FilePath(dir, baseOffset, LogSuffix);
        var h = io.Open(path, FileMode.Create, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        return new LogSegment(io, dir, baseOffset, h, 0, indexIntervalBytes, maxIndexSize, nowMs);
    }

    /// <summary>
    /// Creates the output segment of a cleaning: <c>{base}.log.cleaned</c>, with <c>.index.cleaned</c>
    /// and <c>.timeindex.cleaned</c> written when it is flushed. A file left by an earlier attempt is
    /// overwritten. The cleaner renames the files when it swaps the segment into the log.
    /// </summary>
    internal static LogSegment CreateCleaned(StorageIo io, string dir, long baseOffset, int indexIntervalBytes, int maxIndexSize, long nowMs)
    {
        string path = FilePath(dir, baseOffset, LogSuffix) + CleanedSuffix;
        var h = io.Open(path, FileMode.Create, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        var seg = new LogSegment(io, dir, baseOffset, h, 0, indexIntervalBytes, maxIndexSize, nowMs, CleanedSuffix);
        // Stale index files of an earlier attempt would be extended, not replaced, by the first flush.
        seg.OffsetIndex.DeleteFile();
        seg.TimeIndex.DeleteFile();
        return seg;
    }

    /// <summary>Renames the .log file (the open handle stays valid), e.g. .log.cleaned to .log.swap to .log.</summary>
    internal void RenameLogFile(string newPath)
    {
        if (File.Exists(LogPath)) _io.Move(LogPath, newPath);
        LogPath = newPath;
    }

    /// <summary>Gives the index files their normal names plus <paramref name="suffix"/> ("" for the normal names).</summary>
    internal void RenameIndexFiles(string suffix)
    {
        OffsetIndex.Rename(FilePath(Dir, BaseOffset, IndexSuffix) + suffix);
        TimeIndex.Rename(FilePath(Dir, BaseOffset, TimeIndexSuffix) + suffix);
    }

    /// <summary>Opens an existing segment; its indexes are loaded by <see cref="LoadIndexes"/> or rebuilt by <see cref="Recover"/>.</summary>
    internal static LogSegment Open(StorageIo io, string dir, long baseOffset, int indexIntervalBytes, int maxIndexSize)
    {
        string path = FilePath(dir, baseOffset, LogSuffix);
        var h = io.Open(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        long len = RandomAccess.GetLength(h);
        if (len > int.MaxValue)
        {
            h.Dispose();
            throw new IOException($"segment {path} is larger than 2 GiB");
        }
        long created = new DateTimeOffset(File.GetLastWriteTimeUtc(path)).ToUnixTimeMilliseconds();
        return new LogSegment(io, dir, baseOffset, h, (int)len, indexIntervalBytes, maxIndexSize, created);
    }

    /// <summary>Last-modified time of the log file, in ms (retention's fallback when no batch has a timestamp).</summary>
    public long LastModifiedMs => new DateTimeOffset(File.GetLastWriteTimeUtc(LogPath)).ToUnixTimeMilliseconds();

    // ---------------------------------------------------------------- append

    /// <summary>
    /// Appends batches whose offsets are already assigned. <paramref name="batches"/> holds whole
    /// batches; index entries are added per batch when index.interval.bytes have passed.
    /// </summary>
    public void Append(ReadOnlySpan<byte> batches)
    {
        int start = _size;
        try
        {
            _io.Write(_log, LogPath, batches, start);
        }
        catch (IOException e)
        {
            // Leave the file as it was: a partial tail must not survive to confuse readers or recovery
            // (nor a later append shorter than it, which would leave its end behind as garbage).
            try { _io.SetLength(_log, LogPath, start); }
            catch (IOException cut)
            {
                throw new TornWriteException($"write to {LogPath} failed ({e.Message}) and its partial tail could not be cut off ({cut.Message})", e);
            }
            throw;
        }
        int pos = 0;
        while (pos < batches.Length)
        {
            var b = new RecordBatch(batches[pos..]);
            int size = b.SizeInBytes;
            IndexBatch(b, start + pos, size);
            pos += size;
        }
        Volatile.Write(ref _size, start + batches.Length);
    }

    private void IndexBatch(RecordBatch b, int position, int size)
    {
        long maxTs = b.MaxTimestamp;
        if (_firstBatchTimestamp == RecordBatch.NoTimestamp) _firstBatchTimestamp = FirstTimestamp(b);
        if (maxTs > _maxTimestamp)
        {
            Volatile.Write(ref _offsetOfMaxTimestamp, b.LastOffset);
            Volatile.Write(ref _maxTimestamp, maxTs);
        }
        // A full index takes no more entries; the batches after its last entry are found by scanning
        // forward from it. The log rolls before the next append, but one append of several batches can
        // fill the index midway, and recovery re-indexes segments written when segment.index.bytes or
        // index.interval.bytes allowed more entries: OffsetIndex.Append would throw there, after the
        // batches were written (append) or on every attempt to open the log (recovery).
        if ((position == 0 || _bytesSinceLastIndexEntry > IndexIntervalBytes) && !OffsetIndex.IsFull)
        {
            OffsetIndex.Append(b.LastOffset, position);
            TimeIndex.MaybeAppend(_maxTimestamp, _offsetOfMaxTimestamp);
            _bytesSinceLastIndexEntry = 0;
        }
        _bytesSinceLastIndexEntry += size;
    }

    /// <summary>
    /// The batch's first timestamp for segment.ms and max.compaction.lag.ms: its base timestamp, except
    /// in a batch the cleaner marked with a delete horizon, whose base timestamp field holds the horizon
    /// (a time in the future); its max timestamp stands in for it there. -1 when there is none.
    /// </summary>
    private static long FirstTimestamp(RecordBatch b)
    {
        long ts = b.HasDeleteHorizon ? b.MaxTimestamp : b.BaseTimestamp;
        return ts >= 0 ? ts : RecordBatch.NoTimestamp;
    }

    // ---------------------------------------------------------------- read

    /// <summary>Header fields of the batch at a file position.</summary>
    public readonly record struct BatchHeader(int Position, long BaseOffset, long LastOffset, int Size, long MaxTimestamp, byte Magic);

    /// <summary>Reads the header of the batch at <paramref name="position"/>; null past the end or on a malformed length.</summary>
    public BatchHeader? ReadHeader(int position, int limit)
    {
        if (position + RecordBatch.LogOverhead > limit) return null;
        Span<byte> h = stackalloc byte[RecordBatch.HeaderSize];
        int want = Math.Min(RecordBatch.HeaderSize, limit - position);
        int n = RandomAccess.Read(_log, h[..want], position);
        return Parse(h[..n], position, limit);
    }

    /// <summary>
    /// Reads batch headers through a window of the file, so that walking consecutive small batches
    /// costs one read per window instead of one per batch (a consumer at the tail of a log with
    /// small batches would otherwise pay a system call for every batch between the last index
    /// entry and its offset). A header that does not fit the window is read on its own.
    /// </summary>
    private ref struct HeaderCursor(LogSegment segment, Span<byte> window, int limit)
    {
        private readonly Span<byte> _window = window;
        private long _start = -1;
        private int _length;

        public BatchHeader? At(int position)
        {
            if (position + RecordBatch.LogOverhead > limit) return null;
            if (_start < 0 || position < _start || position + Math.Min(RecordBatch.HeaderSize, limit - position) > _start + _length)
            {
                int want = Math.Min(_window.Length, limit - position);
                int n = RandomAccess.Read(segment._log, _window[..want], position);
                _start = position;
                _length = n;
            }
            var h = _window.Slice((int)(position - _start), (int)Math.Min(RecordBatch.HeaderSize, _start + _length - position));
            return Parse(h, position, limit);
        }
    }

    private static BatchHeader? Parse(ReadOnlySpan<byte> h, int position, int limit)
    {
        if (h.Length < RecordBatch.LogOverhead) return null;
        long baseOffset = BinaryPrimitives.ReadInt64BigEndian(h);
        int length = BinaryPrimitives.ReadInt32BigEndian(h[RecordBatch.LengthOffset..]);
        int size = RecordBatch.LogOverhead + length;
        if (length < 0 || position + (long)size > limit) return null;
        if (h.Length < RecordBatch.HeaderSize || h[RecordBatch.MagicOffset] != RecordBatch.CurrentMagic)
            return new BatchHeader(position, baseOffset, baseOffset, size, RecordBatch.NoTimestamp, h.Length > RecordBatch.MagicOffset ? h[RecordBatch.MagicOffset] : (byte)0);
        long last = baseOffset + BinaryPrimitives.ReadInt32BigEndian(h[RecordBatch.LastOffsetDeltaOffset..]);
        long maxTs = BinaryPrimitives.ReadInt64BigEndian(h[RecordBatch.MaxTimestampOffset..]);
        return new BatchHeader(position, baseOffset, last, size, maxTs, h[RecordBatch.MagicOffset]);
    }

    private const int HeaderWindowBytes = 8192;

    /// <summary>The first batch with last offset at or past <paramref name="offset"/>, scanning from the index's hint.</summary>
    public BatchHeader? FindBatch(long offset, int limit)
    {
        var cursor = new HeaderCursor(this, stackalloc byte[HeaderWindowBytes], limit);
        return FindBatch(ref cursor, offset);
    }

    private BatchHeader? FindBatch(ref HeaderCursor cursor, long offset)
    {
        var (_, pos) = OffsetIndex.Lookup(offset);
        while (cursor.At(pos) is { } h)
        {
            if (h.LastOffset >= offset) return h;
            pos += h.Size;
        }
        return null;
    }

    /// <summary>
    /// Whole batches starting with the one holding <paramref name="offset"/>, ending before
    /// <paramref name="maxOffsetExclusive"/> and within <paramref name="maxBytes"/>; the first batch is
    /// returned even when larger than maxBytes if <paramref name="minOneBatch"/> (so consumers progress).
    /// Null when the segment holds nothing at or past the offset.
    /// </summary>
    public FileRecords? Read(long offset, int maxBytes, long maxOffsetExclusive, bool minOneBatch)
    {
        int limit = Size;
        var cursor = new HeaderCursor(this, stackalloc byte[HeaderWindowBytes], limit);
        var first = FindBatch(ref cursor, offset);
        if (first is not { } f || f.BaseOffset >= maxOffsetExclusive) return null;
        int end = f.Position;
        var h = first;
        while (h is { } b && b.BaseOffset < maxOffsetExclusive && b.LastOffset < maxOffsetExclusive)
        {
            int next = b.Position + b.Size;
            if (next - f.Position > maxBytes && !(minOneBatch && end == f.Position)) break;
            end = next;
            h = cursor.At(next);
        }
        if (end == f.Position) return minOneBatch || maxBytes <= 0 ? null : new FileRecords(_log, f.Position, 0);
        return new FileRecords(_log, f.Position, end - f.Position);
    }

    /// <summary>Copies <paramref name="length"/> bytes at <paramref name="position"/> into memory.</summary>
    public void ReadExactly(long position, Span<byte> destination)
    {
        int read = 0;
        while (read < destination.Length)
        {
            int n = RandomAccess.Read(_log, destination[read..], position + read);
            if (n <= 0) throw new IOException($"unexpected end of {LogPath} at {position + read}");
            read += n;
        }
    }

    // ---------------------------------------------------------------- recovery and truncation

    /// <summary>
    /// Rebuilds the indexes by reading every batch, checking its length and CRC, and cuts the file
    /// at the first batch that is torn or corrupt. <paramref name="onBatch"/> sees every valid batch
    /// (producer state replay). Returns the number of bytes cut and the next offset after the last valid batch.
    /// </summary>
    public (int TruncatedBytes, long NextOffset) Recover(Action<ReadOnlySpan<byte>>? onBatch = null)
    {
        OffsetIndex.Reset();
        TimeIndex.Reset();
        _bytesSinceLastIndexEntry = 0;
        _maxTimestamp = RecordBatch.NoTimestamp;
        _offsetOfMaxTimestamp = -1;
        _firstBatchTimestamp = RecordBatch.NoTimestamp;
        int fileSize = checked((int)RandomAccess.GetLength(_log));
        int pos = 0;
        long next = BaseOffset;
        byte[] buf = ArrayPool<byte>.Shared.Rent(1 << 20);
        Span<byte> head = stackalloc byte[RecordBatch.LogOverhead];
        try
        {
            while (pos + RecordBatch.LogOverhead <= fileSize)
            {
                ReadExactly(pos, head);
                int length = BinaryPrimitives.ReadInt32BigEndian(head[RecordBatch.LengthOffset..]);
                long size = RecordBatch.LogOverhead + (long)length;
                if (length < RecordBatch.HeaderSize - RecordBatch.LogOverhead || pos + size > fileSize) break;
                if (buf.Length < size)
                {
                    ArrayPool<byte>.Shared.Return(buf);
                    buf = ArrayPool<byte>.Shared.Rent((int)size);
                }
                var batch = buf.AsSpan(0, (int)size);
                ReadExactly(pos, batch);
                var b = new RecordBatch(batch);
                if (b.Magic != RecordBatch.CurrentMagic || !b.IsCrcValid || b.BaseOffset < next || b.LastOffsetDelta < 0) break;
                onBatch?.Invoke(batch);
                IndexBatch(b, pos, (int)size);
                next = b.NextOffset;
                pos += (int)size;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buf);
        }
        int truncated = fileSize - pos;
        if (truncated > 0) _io.SetLength(_log, LogPath, pos);
        Volatile.Write(ref _size, pos);
        return (truncated, next);
    }

    /// <summary>
    /// Loads the index files for a segment that needs no recovery (below the recovery point).
    /// Returns false when they are missing or malformed; the caller then runs <see cref="Recover"/>.
    /// Also restores the largest timestamp from the last batches via the time index's last entry.
    /// </summary>
    public bool LoadIndexes(long nextOffset)
    {
        if (!OffsetIndex.Load(nextOffset, _size) || !TimeIndex.Load(nextOffset)) return false;
        if (TimeIndex.Count > 0)
        {
            var (ts, off) = TimeIndex.Lookup(long.MaxValue);
            _maxTimestamp = ts;
            _offsetOfMaxTimestamp = off;
        }
        // Batches after the last index entry may carry a larger timestamp; read their headers.
        var (_, pos) = OffsetIndex.Lookup(long.MaxValue);
        while (ReadHeader(pos, _size) is { } h)
        {
            if (h.MaxTimestamp > _maxTimestamp)
            {
                _maxTimestamp = h.MaxTimestamp;
                _offsetOfMaxTimestamp = h.LastOffset;
            }
            pos += h.Size;
        }
        if (ReadHeader(0, _size) is { } first && first.Magic == RecordBatch.CurrentMagic)
        {
            Span<byte> header = stackalloc byte[RecordBatch.HeaderSize];
            ReadExactly(0, header);
            _firstBatchTimestamp = FirstTimestamp(new RecordBatch(header));
        }
        return true;
    }

    /// <summary>Reads the next offset after the last batch (scan from the last index entry).</summary>
    public long ReadNextOffset()
    {
        var (_, pos) = OffsetIndex.Lookup(long.MaxValue);
        long next = BaseOffset;
        while (ReadHeader(pos, _size) is { } h)
        {
            next = h.LastOffset + 1;
            pos += h.Size;
        }
        return next;
    }

    /// <summary>
    /// Removes every batch holding an offset at or past <paramref name="offset"/>, the batch that
    /// straddles it included (as Kafka does: a divergent follower must not keep part of a batch the
    /// leader may have cut differently); returns bytes removed.
    /// </summary>
    public int TruncateTo(long offset)
    {
        int limit = Size;
        var h = FindBatch(offset, limit);
        if (h is null) return 0;
        int pos = h.Value.Position;
        int removed = limit - pos;
        if (removed <= 0) return 0;
        OffsetIndex.TruncateTo(h.Value.BaseOffset);
        TimeIndex.TruncateTo(h.Value.BaseOffset);
        _io.SetLength(_log, LogPath, pos);
        Volatile.Write(ref _size, pos);
        // Re-derive the largest timestamp from what is left.
        _maxTimestamp = RecordBatch.NoTimestamp;
        _offsetOfMaxTimestamp = -1;
        int p = 0;
        while (ReadHeader(p, pos) is { } b)
        {
            if (b.MaxTimestamp > _maxTimestamp)
            {
                _maxTimestamp = b.MaxTimestamp;
                _offsetOfMaxTimestamp = b.LastOffset;
            }
            p += b.Size;
        }
        _bytesSinceLastIndexEntry = pos - OffsetIndex.Lookup(long.MaxValue).Position;
        if (pos == 0) _firstBatchTimestamp = RecordBatch.NoTimestamp;
        return removed;
    }

    // ---------------------------------------------------------------- lifecycle

    /// <summary>Writes index entries to their files; <paramref name="fsync"/> also syncs the log and the indexes.</summary>
    public void Flush(bool fsync)
    {
        if (fsync) _io.Fsync(_log, LogPath);
        OffsetIndex.Flush(fsync);
        TimeIndex.Flush(fsync);
    }

    /// <summary>Syncs only the log data (the fsync-per-append path; indexes are rebuilt by recovery).</summary>
    public void SyncData() => _io.Fsync(_log, LogPath);

    /// <summary>Renames the files to *.deleted (retention / topic deletion), keeping the handle open for readers.</summary>
    public void MarkDeleted()
    {
        string deleted = LogPath + DeletedSuffix;
        if (File.Exists(LogPath)) _io.Move(LogPath, deleted);
        LogPath = deleted;
        OffsetIndex.Rename(OffsetIndex.Path + DeletedSuffix);
        TimeIndex.Rename(TimeIndex.Path + DeletedSuffix);
    }

    public void DeleteFiles()
    {
        Dispose();
        if (File.Exists(LogPath)) File.Delete(LogPath);
        OffsetIndex.DeleteFile();
        TimeIndex.DeleteFile();
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _log.Dispose();
    }
}

/// <summary>A write failed and its partial tail could not be cut off: the file holds bytes past the segment's size that no one may trust.</summary>
internal sealed class TornWriteException(string message, IOException inner) : IOException(message, inner);
