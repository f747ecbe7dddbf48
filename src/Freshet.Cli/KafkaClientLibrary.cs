using System.Runtime.InteropServices;
using Confluent.Kafka;

namespace Freshet.Cli;

/// <summary>
/// Makes Confluent.Kafka load the librdkafka it ships with. On Debian 12 its glibc build needs
/// libsasl2.so.3, which Debian lacks, and Confluent.Kafka then silently falls back to whatever
/// librdkafka.so the system has (Debian's 2.0, pulled in by kcat): a client we did not choose.
/// We resolve the native library ourselves (glibc build first, then the self-contained centos8
/// build) and refuse to run on anything older than what the package bundles.
/// </summary>
public static class KafkaClientLibrary
{
    /// <summary>The librdkafka version Confluent.Kafka 2.16 bundles (0xMMmmrrpp).</summary>
    public const int MinimumVersion = 0x02100000;

    private static readonly Lock Gate = new();
    private static bool _done;

    public static void EnsureLoaded()
    {
        lock (Gate)
        {
            if (_done) return;
            string dir = Path.Combine(AppContext.BaseDirectory, "runtimes",
                "linux-" + RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant(), "native");
            if (OperatingSystem.IsLinux() && Directory.Exists(dir))
            {
                NativeLibrary.SetDllImportResolver(typeof(Library).Assembly, (name, _, _) =>
                {
                    if (!name.Contains("librdkafka", StringComparison.OrdinalIgnoreCase)) return IntPtr.Zero;
                    foreach (var f in new[] { "librdkafka.so", "centos8-librdkafka.so" })
                        if (NativeLibrary.TryLoad(Path.Combine(dir, f), out var h)) return h;
                    return IntPtr.Zero;
                });
            }
            if (Library.Version < MinimumVersion)
                throw new InvalidOperationException(
                    $"loaded librdkafka {Library.VersionString} is older than the one bundled with Confluent.Kafka; the bundled build did not load");
            _done = true;
        }
    }
}
