namespace Freshet.Storage.Tests.Support;

/// <summary>
/// A fact that needs Linux's /dev/full (every write to it fails with ENOSPC). Where it is missing the
/// test is reported as skipped, with this reason, instead of passing without running.
/// </summary>
public sealed class LinuxDevFullFactAttribute : FactAttribute
{
    public LinuxDevFullFactAttribute()
    {
        if (!OperatingSystem.IsLinux() || !File.Exists("/dev/full")) Skip = "needs Linux's /dev/full to make writes fail with ENOSPC";
    }
}

/// <summary>A fact about a Linux system call; elsewhere it is reported as skipped, with this reason.</summary>
public sealed class LinuxFactAttribute : FactAttribute
{
    public LinuxFactAttribute()
    {
        if (!OperatingSystem.IsLinux()) Skip = "tests a Linux system call (elsewhere the code path is a no-op by design)";
    }
}
