using Freshet.Server;
using Microsoft.Extensions.Logging;

namespace Freshet.Cli.Commands;

/// <summary>
/// `freshet server`: runs a node until Ctrl-C or SIGTERM, then shuts down cleanly; or until the node
/// halts on a failure it cannot go on from (FreshetServer.Fatal), when it prints why and exits with code 1.
/// </summary>
public static class ServerCommand
{
    public const string Usage = """
        usage: freshet server [--config server.properties] [--override key=value]... [--log-level info]

        Starts a Freshet node. Without a config file: one node in combined broker+controller mode,
        listening on localhost:9092, data in ./data. Settings use Kafka's server.properties names;
        --override (repeatable) sets one, e.g. --override num.partitions=3.
        """;

    private const string InlineCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    public static async Task<int> RunAsync(string[] args)
    {
        var cl = new CommandLine(args, new HashSet<string>());
        string? configPath = cl.Get("config") ?? cl.Positionals.FirstOrDefault();
        var overrides = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var o in cl.GetAll("override"))
        {
            int eq = o.IndexOf('=');
            if (eq <= 0) throw new UsageException($"--override expects key=value, got '{o}'");
            overrides[o[..eq].Trim()] = o[(eq + 1)..].Trim();
        }
        var level = ParseLevel(cl.Get("log-level") ?? "info");
        // Socket completions run on the epoll thread instead of hopping to the thread pool: fewer
        // thread wake-ups per request (the largest per-request cost measured on small machines).
        // Request handlers never block there: disk syncs and controller commits are handed off.
        // Read by the runtime when the first socket is created, so it must be set before that.
        if (Environment.GetEnvironmentVariable(InlineCompletions) is null) Environment.SetEnvironmentVariable(InlineCompletions, "1");
        cl.EnsureAllUsed();
        if (configPath is not null && !File.Exists(configPath)) throw new UsageException($"config file not found: {configPath}");

        var props = configPath is null ? new Dictionary<string, string>(StringComparer.Ordinal) : PropertiesFile.Parse(File.ReadAllText(configPath));
        foreach (var (k, v) in overrides) props[k] = v;

        using var loggers = LoggerFactory.Create(b => b
            .SetMinimumLevel(level)
            .AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "yyyy-MM-dd HH:mm:ss.fff ";
                o.UseUtcTimestamp = false;
            }));
        using var stop = new CancellationTokenSource();
        using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c =>
        {
            c.Cancel = true;
            stop.Cancel();
        });
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        FreshetServer started;
        try
        {
            started = await FreshetServer.StartAsync(new FreshetServerOptions { Properties = props, Loggers = loggers }, stop.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Ctrl-C or SIGTERM while waiting for the quorum (freshet cluster up stopping a cluster that cannot form).
            Console.Out.WriteLine("Stopped before it was ready");
            return 0;
        }
        catch (ArgumentException e)
        {
            // A setting with a bad value, or settings that do not fit together: the message names it.
            throw new CommandFailedException($"invalid configuration: {e.Message}");
        }
        catch (Exception e) when (e is InvalidDataException or InvalidOperationException)
        {
            // Data directories that belong to another cluster or node, a metadata log that cannot be read.
            throw new CommandFailedException($"cannot start: {e.Message}");
        }
        var server = started;
        Exception? fatal = null;
        try
        {
            Console.Out.WriteLine(server.Config.ProcessRoles.Contains("broker")
                ? $"Freshet is ready: bootstrap.servers={server.BootstrapServers} (cluster {server.ClusterId}, started in {server.StartupTime.TotalMilliseconds:F0} ms)"
                : $"Freshet is ready: controller {server.Config.NodeId} on {server.BootstrapServers} (controller role only; cluster {server.ClusterId}, started in {server.StartupTime.TotalMilliseconds:F0} ms)");
            Console.Out.Flush();
            var signalled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            using (stop.Token.Register(() => signalled.TrySetResult()))
                await Task.WhenAny(signalled.Task, server.Fatal).ConfigureAwait(false);
            if (server.Fatal.IsCompleted) fatal = server.Fatal.Result;
            else Console.Out.WriteLine("Shutting down...");
        }
        finally
        {
            if (fatal is null)
            {
                await server.DisposeAsync().ConfigureAwait(false);
            }
            else
            {
                // The node halted (it already stopped serving): close what is left, but never wait long on a node that failed.
                try
                {
                    await server.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
                }
#pragma warning disable CA1031 // the exit code and the reason below are what matters now
                catch (Exception e)
#pragma warning restore CA1031
                {
                    Console.Error.WriteLine($"freshet server: closing after the halt failed: {e.Message}");
                }
            }
        }
        // Kafka halts the process (exit code 1) when its metadata log fails; so does a node that cannot go on here.
        if (fatal is not null) throw new CommandFailedException($"node {server.Config.NodeId} halted: {fatal.Message}");
        return 0;
    }

    private static LogLevel ParseLevel(string s) => s.ToLowerInvariant() switch
    {
        "trace" => LogLevel.Trace,
        "debug" => LogLevel.Debug,
        "info" or "information" => LogLevel.Information,
        "warn" or "warning" => LogLevel.Warning,
        "error" => LogLevel.Error,
        "none" or "off" => LogLevel.None,
        _ => throw new UsageException($"unknown log level '{s}'"),
    };
}
