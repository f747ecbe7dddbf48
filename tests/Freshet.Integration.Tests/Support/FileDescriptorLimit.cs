using System.Globalization;
using System.Runtime.InteropServices;

namespace Freshet.Integration.Tests.Support;

/// <summary>
/// RLIMIT_NOFILE for tests that hold thousands of sockets: raises this process's soft limit (up to
/// the hard one; past it only when privileged, as CI's root is) before the sockets are opened.
/// Child processes started afterwards (a `freshet server`) inherit the raised limit. .NET's own
/// start-up already lifts the soft limit to the hard one, so on most machines only the hard limit
/// decides; a hard limit that is too low fails the test with what to change.
/// </summary>
public static class FileDescriptorLimit
{
    [StructLayout(LayoutKind.Sequential)]
    private struct RLimit
    {
        public ulong Current;
        public ulong Max;
    }

    // rlim_t is 64 bits on every 64-bit Linux and macOS; RLIMIT_NOFILE is 7 on Linux, 8 on macOS.
    private static int Resource => OperatingSystem.IsMacOS() ? 8 : 7;

    [DllImport("libc", EntryPoint = "getrlimit", SetLastError = true)]
    private static extern int GetRLimit(int resource, out RLimit limit);

    [DllImport("libc", EntryPoint = "setrlimit", SetLastError = true)]
    private static extern int SetRLimit(int resource, ref RLimit limit);

    /// <summary>The soft and hard limits now.</summary>
    public static (ulong Soft, ulong Hard) Current()
    {
        if (GetRLimit(Resource, out var l) != 0) throw new InvalidOperationException($"getrlimit(RLIMIT_NOFILE) failed: errno {Marshal.GetLastPInvokeError()}");
        return (l.Current, l.Max);
    }

    /// <summary>Makes room for at least <paramref name="needed"/> open descriptors in this process, or throws saying why it cannot.</summary>
    public static (ulong Soft, ulong Hard) Ensure(int needed)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
            throw new PlatformNotSupportedException("raising RLIMIT_NOFILE is done for Linux and macOS only");
        var (soft, hard) = Current();
        if (soft >= (ulong)needed) return (soft, hard);
        // Up to the hard limit any process may go; above it only a privileged one.
        ulong target = Math.Max(hard, (ulong)needed);
        var wanted = new RLimit { Current = target, Max = target };
        if (SetRLimit(Resource, ref wanted) == 0) return Current();
        int errno = Marshal.GetLastPInvokeError();
        throw new InvalidOperationException(
            $"this test holds about {needed} sockets, but the open-files limit (RLIMIT_NOFILE) is soft {soft}, hard {hard}, and the hard limit "
            + $"cannot be raised by this user: raise it to at least {needed} (as root: ulimit -Hn {needed}; systemd: LimitNOFILE=; "
            + $"/etc/security/limits.conf: nofile) and run again (setrlimit: errno {errno})");
    }

    /// <summary>The soft open-files limit of another process (from /proc/&lt;pid&gt;/limits), or null where /proc is missing.</summary>
    public static long? SoftLimitOf(int pid)
    {
        string path = $"/proc/{pid}/limits";
        if (!File.Exists(path)) return null;
        foreach (var line in File.ReadLines(path))
        {
            if (!line.StartsWith("Max open files", StringComparison.Ordinal)) continue;
            string soft = line["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
            return soft == "unlimited" ? long.MaxValue : long.Parse(soft, CultureInfo.InvariantCulture);
        }
        return null;
    }
}
