using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Freshet.Storage;

/// <summary>
/// The file operations through which the storage layer changes what is on disk: writes and fsyncs
/// of segment, index and checkpoint files, truncations, renames, and directory fsyncs. Production
/// uses this class as it is (RandomAccess on the handles, File.Move, <see cref="DirectoryFsync"/>);
/// tests derive from it to fail the Nth fsync, cut a write short, or record the order of calls.
/// Reads do not pass through it (fetches send file ranges straight from the handles).
///
/// <para>
/// Every method gets the path the handle was opened for (a string the caller already holds, so a
/// call allocates nothing): the one virtual call per write and per fsync is all the hot path pays.
/// </para>
/// </summary>
internal class StorageIo
{
    /// <summary>The real thing.</summary>
    public static StorageIo Default { get; } = new();

    public virtual SafeFileHandle Open(string path, FileMode mode, FileAccess access, FileShare share) => File.OpenHandle(path, mode, access, share);

    /// <summary>Writes all of <paramref name="data"/> at <paramref name="fileOffset"/>; an IOException may leave part of it written.</summary>
    public virtual void Write(SafeFileHandle handle, string path, ReadOnlySpan<byte> data, long fileOffset) => RandomAccess.Write(handle, data, fileOffset);

    /// <summary>fsync: the file's data (and size) are on disk when this returns.</summary>
    public virtual void Fsync(SafeFileHandle handle, string path) => RandomAccess.FlushToDisk(handle);

    public virtual void SetLength(SafeFileHandle handle, string path, long length) => RandomAccess.SetLength(handle, length);

    /// <summary>Renames <paramref name="from"/> to <paramref name="to"/>, replacing it (rename(2): atomic on one file system).</summary>
    public virtual void Move(string from, string to) => File.Move(from, to, overwrite: true);

    /// <summary>fsyncs a directory: the creations, renames and deletions of its entries are on disk when this returns.</summary>
    public virtual void FsyncDirectory(string dir) => DirectoryFsync.Fsync(dir);

    /// <summary>
    /// Whether an IOException is a full disk (ENOSPC on Linux and macOS, ERROR_DISK_FULL or
    /// ERROR_HANDLE_DISK_FULL on Windows). .NET reports the errno in HResult on Unix.
    /// </summary>
    public static bool IsDiskFull(IOException e) =>
        OperatingSystem.IsWindows() ? e.HResult is unchecked((int)0x80070070) or unchecked((int)0x80070027) : e.HResult == Enospc;

    /// <summary>ENOSPC on Linux and macOS.</summary>
    public const int Enospc = 28;
}

/// <summary>
/// fsync of a directory, which makes the creation, renaming and deletion of its entries durable
/// (fsync of a file covers its data, not its name). .NET cannot open a directory as a file
/// (File.OpenHandle refuses with UnauthorizedAccessException on Linux), so this calls libc's
/// open(2), fsync(2) and close(2). Linux only: elsewhere it does nothing (Windows has no
/// directory fsync; NTFS journals its metadata).
/// </summary>
internal static class DirectoryFsync
{
    private const int ORdOnly = 0;
    private const int OCloExec = 0x80000; // 02000000, the same on every Linux architecture
    private const int EINTR = 4;
    private const int ENOENT = 2;

    [DllImport("libc", EntryPoint = "open", SetLastError = true)]
    private static extern int Open(byte[] path, int flags);

    [DllImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static extern int FsyncNative(int fd);

    [DllImport("libc", EntryPoint = "close", SetLastError = true)]
    private static extern int Close(int fd);

    /// <summary>fsyncs <paramref name="dir"/>; a directory that no longer exists is nothing to sync. Throws IOException on failure.</summary>
    public static void Fsync(string dir)
    {
        if (!OperatingSystem.IsLinux()) return;
        byte[] path = System.Text.Encoding.UTF8.GetBytes(Path.GetFullPath(dir) + "\0");
        int fd;
        int errno;
        do
        {
            fd = Open(path, ORdOnly | OCloExec);
            errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        }
        while (fd < 0 && errno == EINTR);
        if (fd < 0)
        {
            if (errno == ENOENT) return;
            throw new IOException($"cannot open directory {dir} to fsync it: {Marshal.GetPInvokeErrorMessage(errno)}", errno);
        }
        try
        {
            if (FsyncNative(fd) != 0)
            {
                errno = Marshal.GetLastPInvokeError();
                throw new IOException($"fsync of directory {dir} failed: {Marshal.GetPInvokeErrorMessage(errno)}", errno);
            }
        }
        finally
        {
            Close(fd);
        }
    }
}
