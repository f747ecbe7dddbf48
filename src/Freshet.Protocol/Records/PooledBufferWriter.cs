using System.Buffers;

namespace Freshet.Protocol.Records;

/// <summary>
/// A growable <see cref="IBufferWriter{T}"/> over one array rented from <see cref="ArrayPool{T}.Shared"/>.
/// Dispose returns the array; <see cref="Clear"/> keeps it for reuse, <see cref="Reset"/> gives it back.
/// <para>
/// <see cref="MaxSize"/> bounds what may be written (written bytes plus the size a caller asks for):
/// going past it throws <see cref="InvalidDataException"/>, so decompressing hostile input (a small
/// frame that inflates to gigabytes) stops at the bound instead of exhausting memory. The exception
/// type is the one the codecs use for bad data, so callers that map bad data to CORRUPT_MESSAGE
/// treat a bomb the same way.
/// </para>
/// Not thread-safe; spans handed out are valid until the next write, Clear, Reset or Dispose.
/// </summary>
public sealed class PooledBufferWriter : IBufferWriter<byte>, IDisposable
{
    private const int MinimumRent = 256;

    private byte[] _buffer;
    private int _written;
    private int _maxSize;
    private WriteOnlyStream? _stream;

    /// <param name="initialCapacity">Bytes to rent up front (0 rents lazily on the first write).</param>
    /// <param name="maxSize">Upper bound on <see cref="WrittenCount"/> plus any requested size hint (clamped to <see cref="Array.MaxLength"/>).</param>
    public PooledBufferWriter(int initialCapacity = 0, int maxSize = int.MaxValue)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(initialCapacity);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxSize);
        _maxSize = Math.Min(maxSize, Array.MaxLength);
        _buffer = initialCapacity == 0 ? [] : ArrayPool<byte>.Shared.Rent(Math.Min(initialCapacity, _maxSize));
    }

    /// <summary>Bytes written so far.</summary>
    public int WrittenCount => _written;

    /// <summary>Size of the rented array (it may exceed <see cref="MaxSize"/>; the excess is never handed out).</summary>
    public int Capacity => _buffer.Length;

    /// <summary>Bound on the written size; lowering it below <see cref="WrittenCount"/> is not allowed.</summary>
    public int MaxSize
    {
        get => _maxSize;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, Math.Max(_written, 1));
            _maxSize = Math.Min(value, Array.MaxLength);
        }
    }

    public ReadOnlySpan<byte> WrittenSpan => _buffer.AsSpan(0, _written);

    public ReadOnlyMemory<byte> WrittenMemory => _buffer.AsMemory(0, _written);

    /// <summary>The written bytes, writable: for patching length and CRC fields after the body is written.</summary>
    public Span<byte> WrittenSpanMutable => _buffer.AsSpan(0, _written);

    public void Advance(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count > _buffer.Length - _written)
            throw new InvalidOperationException($"advanced {count} bytes past the {_buffer.Length - _written} handed out");
        _written += count;
    }

    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _buffer.AsMemory(_written, Math.Min(_buffer.Length, _maxSize) - _written);
    }

    public Span<byte> GetSpan(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _buffer.AsSpan(_written, Math.Min(_buffer.Length, _maxSize) - _written);
    }

    public void Write(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty) return;
        bytes.CopyTo(GetSpan(bytes.Length));
        _written += bytes.Length;
    }

    public void WriteByte(byte b)
    {
        GetSpan(1)[0] = b;
        _written++;
    }

    /// <summary>Forgets the written bytes and keeps the array.</summary>
    public void Clear() => _written = 0;

    /// <summary>Drops bytes after <paramref name="length"/> (to undo a partial write).</summary>
    public void Truncate(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, _written);
        _written = length;
    }

    /// <summary>Forgets the written bytes and returns the array to the pool (the next write rents again).</summary>
    public void Reset()
    {
        _written = 0;
        var old = _buffer;
        _buffer = [];
        if (old.Length > 0) ArrayPool<byte>.Shared.Return(old);
    }

    public byte[] ToArray() => WrittenSpan.ToArray();

    /// <summary>
    /// A write-only, forward-only <see cref="Stream"/> that appends to this writer, for codecs that
    /// only write to streams. One instance per writer; disposing it leaves the writer alone.
    /// </summary>
    public Stream AsStream() => _stream ??= new WriteOnlyStream(this);

    public void Dispose() => Reset();

    private void Ensure(int sizeHint)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sizeHint);
        if (sizeHint == 0) sizeHint = 1;
        if (sizeHint > _maxSize - _written)
            throw new InvalidDataException($"output would exceed the limit of {_maxSize} bytes ({_written} written, {sizeHint} more requested)");
        if (sizeHint <= _buffer.Length - _written) return;

        // Double, so that n appends cost O(n) copying, but never rent past the bound.
        long wanted = Math.Max((long)_written + sizeHint, Math.Max((long)_buffer.Length * 2, MinimumRent));
        int size = (int)Math.Min(wanted, _maxSize);
        var next = ArrayPool<byte>.Shared.Rent(size);
        _buffer.AsSpan(0, _written).CopyTo(next);
        var old = _buffer;
        _buffer = next;
        if (old.Length > 0) ArrayPool<byte>.Shared.Return(old);
    }

    private sealed class WriteOnlyStream(PooledBufferWriter writer) : Stream
    {
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => writer.WrittenCount;

        public override long Position
        {
            get => writer.WrittenCount;
            set => throw new NotSupportedException();
        }

        public override void Write(byte[] buffer, int offset, int count) => writer.Write(buffer.AsSpan(offset, count));
        public override void Write(ReadOnlySpan<byte> buffer) => writer.Write(buffer);
        public override void WriteByte(byte value) => writer.WriteByte(value);

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        {
            writer.Write(buffer.AsSpan(offset, count));
            return Task.CompletedTask;
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            writer.Write(buffer.Span);
            return ValueTask.CompletedTask;
        }

        public override void Flush() { }
        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
