using Microsoft.Win32.SafeHandles;

namespace Freshet.Storage.Tests.Support;

/// <summary>
/// The storage layer's file seam with faults on command: fail the Nth fsync or write of the files a
/// filter picks (a write may put part of its bytes down first), as EIO or as a full disk (ENOSPC), and
/// record the calls in order. Everything it does not fail goes to the real files.
/// </summary>
internal sealed class FaultyStorageIo : StorageIo
{
    public const int Eio = 5;

    private readonly Lock _lock = new();
    private readonly List<Fault> _faults = [];
    private readonly List<string> _calls = [];
    private volatile bool _recording;

    private enum Op
    {
        Write,
        Fsync,
        SetLength,
        FsyncDirectory,
    }

    private sealed class Fault(Op op, Func<string, bool> where, int countdown, int writeBytes, int errno, Func<bool>? waitFor, int waitMs)
    {
        public Op Op { get; } = op;
        public Func<string, bool> Where { get; } = where;
        public int Countdown { get; set; } = countdown;
        public int WriteBytes { get; } = writeBytes;
        public int Errno { get; } = errno;
        public Func<bool>? WaitFor { get; } = waitFor;
        public int WaitMs { get; } = waitMs;
    }

    /// <summary>How many faults have fired.</summary>
    public int Fired { get; private set; }

    /// <summary>
    /// Fails the <paramref name="nth"/> fsync (from now on) of a file <paramref name="where"/> accepts, once.
    /// With <paramref name="waitFor"/>, the failing fsync first waits until it holds (at most <paramref name="waitMs"/>).
    /// </summary>
    public void FailFsync(Func<string, bool> where, int nth = 1, int errno = Eio, Func<bool>? waitFor = null, int waitMs = 0) =>
        Add(new Fault(Op.Fsync, where, nth, 0, errno, waitFor, waitMs));

    /// <summary>Fails the <paramref name="nth"/> write of a matching file, once, after putting down its first <paramref name="writeBytes"/> bytes.</summary>
    public void FailWrite(Func<string, bool> where, int nth = 1, int writeBytes = 0, int errno = Eio) =>
        Add(new Fault(Op.Write, where, nth, writeBytes, errno, null, 0));

    /// <summary>Fails the <paramref name="nth"/> truncation (SetLength) of a matching file, once.</summary>
    public void FailSetLength(Func<string, bool> where, int nth = 1, int errno = Eio) =>
        Add(new Fault(Op.SetLength, where, nth, 0, errno, null, 0));

    /// <summary>Fails the <paramref name="nth"/> fsync of a matching directory, once.</summary>
    public void FailDirectoryFsync(Func<string, bool> where, int nth = 1, int errno = Eio) =>
        Add(new Fault(Op.FsyncDirectory, where, nth, 0, errno, null, 0));

    /// <summary>Starts recording calls (forgetting earlier ones): "create PATH", "write PATH", "fsync PATH", "setlength PATH", "move FROM TO", "fsyncdir DIR".</summary>
    public void StartRecording()
    {
        lock (_lock) _calls.Clear();
        _recording = true;
    }

    public List<string> Calls
    {
        get
        {
            lock (_lock) return [.. _calls];
        }
    }

    private void Add(Fault f)
    {
        lock (_lock) _faults.Add(f);
    }

    private void Record(string call)
    {
        if (!_recording) return;
        lock (_lock) _calls.Add(call);
    }

    /// <summary>The fault due for this call, if any (counting down the matching ones).</summary>
    private Fault? Due(Op op, string path)
    {
        lock (_lock)
        {
            foreach (var f in _faults)
            {
                if (f.Op != op || f.Countdown <= 0 || !f.Where(path)) continue;
                if (--f.Countdown > 0) continue;
                Fired++;
                return f;
            }
            return null;
        }
    }

    private static IOException Error(Fault f, string path) =>
        new(f.Errno == Enospc ? $"No space left on device : '{path}' (injected)" : $"Input/output error : '{path}' (injected)", f.Errno);

    public override SafeFileHandle Open(string path, FileMode mode, FileAccess access, FileShare share)
    {
        if (mode is FileMode.Create or FileMode.CreateNew) Record($"create {path}");
        return base.Open(path, mode, access, share);
    }

    public override void Write(SafeFileHandle handle, string path, ReadOnlySpan<byte> data, long fileOffset)
    {
        Record($"write {path}");
        if (Due(Op.Write, path) is { } f)
        {
            int n = Math.Min(f.WriteBytes, data.Length);
            if (n > 0) base.Write(handle, path, data[..n], fileOffset);
            throw Error(f, path);
        }
        base.Write(handle, path, data, fileOffset);
    }

    public override void Fsync(SafeFileHandle handle, string path)
    {
        Record($"fsync {path}");
        if (Due(Op.Fsync, path) is { } f)
        {
            if (f.WaitFor is { } wait)
            {
                var deadline = Environment.TickCount64 + f.WaitMs;
                while (!wait() && Environment.TickCount64 < deadline) Thread.Sleep(10);
            }
            throw Error(f, path);
        }
        base.Fsync(handle, path);
    }

    public override void SetLength(SafeFileHandle handle, string path, long length)
    {
        Record($"setlength {path}");
        if (Due(Op.SetLength, path) is { } f) throw Error(f, path);
        base.SetLength(handle, path, length);
    }

    public override void Move(string from, string to)
    {
        Record($"move {from} {to}");
        base.Move(from, to);
    }

    public override void FsyncDirectory(string dir)
    {
        string full = LogDirFailureChannel.Normalize(dir);
        Record($"fsyncdir {full}");
        if (Due(Op.FsyncDirectory, full) is { } f) throw Error(f, full);
        base.FsyncDirectory(dir);
    }
}
