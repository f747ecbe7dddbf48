using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Freshet.Network;

/// <summary>
/// Linux sendfile(2): copies a file range to a socket inside the kernel, so fetched batches never
/// pass through managed memory. .NET's own Socket.SendFile sends whole files only, hence the
/// P/Invoke. Sockets are non-blocking under .NET's async I/O, so a full socket buffer ends the
/// call early (EAGAIN); the caller sends the rest by copying, which waits properly.
/// </summary>
internal static partial class SendFile
{
    private const int EAGAIN = 11;
    private const int EINTR = 4;

    public static bool IsSupported { get; } = OperatingSystem.IsLinux();

    [DllImport("libc", EntryPoint = "sendfile64", SetLastError = true)]
    private static extern nint SendFileNative(nint outFd, SafeFileHandle inFd, ref long offset, nuint count);

    /// <summary>
    /// Sends up to <paramref name="count"/> bytes from <paramref name="file"/> at <paramref name="offset"/>
    /// without blocking. Returns the bytes sent (possibly 0 when the socket buffer is full); throws on errors other than EAGAIN.
    /// </summary>
    public static long TrySend(Socket socket, SafeFileHandle file, long offset, long count)
    {
        long sent = 0;
        nint fd = socket.Handle;
        while (sent < count)
        {
            long pos = offset + sent;
            nint n = SendFileNative(fd, file, ref pos, (nuint)Math.Min(count - sent, 1L << 30));
            if (n > 0)
            {
                sent += n;
                continue;
            }
            if (n == 0) break; // end of file: the range is shorter than expected
            int errno = Marshal.GetLastPInvokeError();
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            throw new SocketException(errno);
        }
        return sent;
    }
}
