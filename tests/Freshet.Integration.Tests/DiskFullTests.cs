using System.Diagnostics;
using Confluent.Kafka;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol;
using ErrorCode = Freshet.Protocol.ErrorCode;
using Freshet.Protocol.Messages;
using Freshet.Server;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests;

/// <summary>
/// A log directory on a small tmpfs that fills up: produce fails with KAFKA_STORAGE_ERROR, what was
/// stored stays readable and intact, and writes succeed again once space is freed. Needs root (to
/// mount the tmpfs), which CI and the test script have.
/// </summary>
public sealed class DiskFullTests(ITestOutputHelper output)
{
    internal static void Run(string file, params string[] args)
    {
        using var p = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed ({p.ExitCode}): {p.StandardError.ReadToEnd()} — this test needs root to mount a tmpfs");
    }

    [Fact]
    public async Task FullDiskFailsProduceWithStorageErrorAndKeepsStoredDataReadable()
    {
        string root = Path.Combine(Path.GetTempPath(), "freshet-full-" + Guid.NewGuid().ToString("N")[..8]);
        string logDir = Path.Combine(root, "logs");
        string metaDir = Path.Combine(root, "meta");
        Directory.CreateDirectory(logDir);
        Directory.CreateDirectory(metaDir);
        Run("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", logDir);
        using var loggers = TestOutputLoggerProvider.Factory(output, Microsoft.Extensions.Logging.LogLevel.Error);
        try
        {
            // Ballast we can delete later to free space.
            await File.WriteAllBytesAsync(Path.Combine(logDir, "ballast"), new byte[512 * 1024]);
            var props = new Dictionary<string, string>
            {
                ["log.dirs"] = logDir,
                ["metadata.log.dir"] = metaDir,
                ["listeners"] = "PLAINTEXT://127.0.0.1:0",
            };
            const string topic = "fill";
            long storedRecords = 0;
            await using (var broker = await FreshetServer.StartEmbeddedAsync(props, loggers))
            {
                await Clients.CreateTopicAsync(broker.BootstrapServers, topic, 1);
                await using var c = await RawKafkaClient.ConnectAsync(broker.BootstrapServers);
                ErrorCode last = ErrorCode.None;
                for (int i = 0; i < 200 && last == ErrorCode.None; i++)
                {
                    var r = await c.RequestAsync<ProduceResponse>(BadInputTests.ProduceOf(topic, BadInputTests.Batch(32, valueSize: 2000)), 9);
                    last = (ErrorCode)r.Responses[0].PartitionResponses[0].ErrorCode;
                    if (last == ErrorCode.None) storedRecords += 32;
                }
                Assert.Equal(ErrorCode.KafkaStorageError, last);
                Assert.True(storedRecords > 0);
                output.WriteLine($"stored {storedRecords} records before the disk filled");

                // Everything acknowledged reads back, nothing more.
                var read = Clients.ReadAll(broker.BootstrapServers, topic, 1, TimeSpan.FromSeconds(30))[0];
                Assert.Equal(storedRecords, read.Count);
                Assert.Equal(Enumerable.Range(0, (int)storedRecords).Select(i => (long)i), read.Select(cr => cr.Offset.Value));

                // Free space: the next produce succeeds, right after the last stored offset.
                File.Delete(Path.Combine(logDir, "ballast"));
                var again = await c.RequestAsync<ProduceResponse>(BadInputTests.ProduceOf(topic, BadInputTests.Batch(32, valueSize: 2000)), 9);
                Assert.Equal((short)ErrorCode.None, again.Responses[0].PartitionResponses[0].ErrorCode);
                Assert.Equal(storedRecords, again.Responses[0].PartitionResponses[0].BaseOffset);
                storedRecords += 32;
            }
            // And the log is intact after a restart.
            await using (var broker = await FreshetServer.StartEmbeddedAsync(props, loggers))
            {
                var read = Clients.ReadAll(broker.BootstrapServers, topic, 1, TimeSpan.FromSeconds(30))[0];
                Assert.Equal(storedRecords, read.Count);
            }
        }
        finally
        {
            Run("umount", "-l", logDir);
            Directory.Delete(root, recursive: true);
        }
    }
}
