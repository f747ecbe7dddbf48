using Freshet.Protocol.Wire;
using Microsoft.Win32.SafeHandles;

namespace Freshet.Storage.Segments;

/// <summary>
/// A range of a segment's .log file holding whole batches, handed to the transport unread: it writes
/// itself as a file transfer, which the transport makes with sendfile. The handle stays valid after the segment is deleted by retention:
/// deleted segments are closed only after file.delete.delay.ms.
/// </summary>
public sealed class FileRecords(SafeFileHandle handle, long position, int length) : TransferableRecords
{
    public SafeFileHandle Handle { get; } = handle;
    public long Position { get; } = position;
    public override int Length => length;

    public override ValueTask WriteToAsync(IRecordTransferTarget target, CancellationToken ct) =>
        target.TransferFromFileAsync(Handle, Position, length, ct);

    /// <summary>Copies the bytes into memory (cold paths: tests, internal readers, down-conversion).</summary>
    public byte[] ReadAll()
    {
        var buf = new byte[length];
        int read = 0;
        while (read < length)
        {
            int n = RandomAccess.Read(Handle, buf.AsSpan(read), Position + read);
            if (n <= 0) throw new IOException($"unexpected end of segment file at {Position + read}");
            read += n;
        }
        return buf;
    }
}
