namespace Freshet.Storage;

/// <summary>
/// Small files replaced whole and durably (checkpoints, meta.properties, partition.metadata, the
/// leader epoch cache, producer snapshots, the quorum state): the new contents go to a temporary
/// file beside the target, which is fsynced, renamed over the target, and the directory fsynced.
/// A crash at any point leaves either the old file or the new one, never a torn one; and once the
/// call returns the new one survives a power loss (the rename alone is not durable until the
/// directory is synced, and a rename of unsynced data can leave an empty file after one).
/// </summary>
public static class DurableFile
{
    /// <summary>Replaces <paramref name="path"/> with <paramref name="contents"/>, durably (see <see cref="DurableFile"/>).</summary>
    /// <param name="tempSuffix">Suffix of the temporary file; its owner deletes leftovers of a crash on start-up.</param>
    public static void Write(string path, ReadOnlySpan<byte> contents, string tempSuffix = ".tmp") =>
        Write(StorageIo.Default, path, contents, fsync: true, tempSuffix);

    /// <summary>fsyncs a directory, making the creations, renames and deletions in it durable (Linux; a no-op elsewhere).</summary>
    public static void SyncDirectory(string dir) => StorageIo.Default.FsyncDirectory(dir);

    /// <summary>
    /// Replaces <paramref name="path"/> through <paramref name="io"/>. Without <paramref name="fsync"/> the
    /// replacement is atomic but not durable (no fsync of the file nor of the directory): for files whose
    /// loss costs only time (a producer snapshot taken at a roll, which recovery can replace by replaying the log).
    /// Without <paramref name="syncDirectory"/> the caller owes the directory fsync (it has more files to put there first).
    /// </summary>
    internal static void Write(StorageIo io, string path, ReadOnlySpan<byte> contents, bool fsync = true, string tempSuffix = ".tmp",
        bool syncDirectory = true)
    {
        string tmp = path + tempSuffix;
        try
        {
            using var h = io.Open(tmp, FileMode.Create, FileAccess.Write, FileShare.None);
            io.Write(h, tmp, contents, 0);
            // The data before the name: renamed first, a crash could leave the new name on an empty file.
            if (fsync) io.Fsync(h, tmp);
        }
        catch (IOException)
        {
            TryDelete(tmp);
            throw;
        }
        io.Move(tmp, path);
        if (fsync && syncDirectory) io.FsyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
