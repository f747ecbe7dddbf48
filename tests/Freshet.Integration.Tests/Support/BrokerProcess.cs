using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Freshet.Integration.Tests.Support;

/// <summary>
/// A broker in its own process (`freshet server`), for tests that kill it with SIGKILL or stop it
/// with SIGTERM. Data stays in <see cref="DataDir"/> across restarts; the directory is removed on dispose.
/// </summary>
public sealed class BrokerProcess : IAsyncDisposable
{
    private Process? _process;
    private readonly StringBuilder _output = new();
    private readonly Dictionary<string, string> _overrides;

    public BrokerProcess(Dictionary<string, string>? overrides = null, int? port = null)
    {
        Port = port ?? FreePort();
        DataDir = Path.Combine(Path.GetTempPath(), "freshet-proc-" + Guid.NewGuid().ToString("N")[..10]);
        _overrides = new Dictionary<string, string>(overrides ?? [])
        {
            ["listeners"] = $"PLAINTEXT://127.0.0.1:{Port}",
            ["log.dirs"] = DataDir,
        };
        if (overrides is not null)
            foreach (var (k, v) in overrides) _overrides[k] = v;
    }

    public int Port { get; }

    /// <summary>The server's --log-level (warning unless a test wants more).</summary>
    public string LogLevel { get; init; } = "warning";
    public string DataDir { get; }
    public string BootstrapServers => $"127.0.0.1:{Port}";
    public string Output { get { lock (_output) return _output.ToString(); } }
    public int? Pid => _process?.Id;

    /// <summary>
    /// A loopback port free now for a broker started soon, chosen below the kernel's ephemeral range: a port the
    /// kernel handed out (port 0) is in that range, and any outgoing connection (a client, another node) may be
    /// given it as its local port before the broker binds it ("Address already in use" under load). Ports are
    /// picked at random and never twice by this process, so concurrent tests (and test runs) rarely meet.
    /// </summary>
    public static int FreePort()
    {
        int below = EphemeralRangeStart();
        if (below > LowestPort + 1000)
        {
            for (int attempt = 0; attempt < 200; attempt++)
            {
                int candidate = Random.Shared.Next(LowestPort, below);
                lock (HandedOut)
                {
                    if (HandedOut.Contains(candidate) || !IsFree(candidate)) continue;
                    HandedOut.Add(candidate);
                    return candidate;
                }
            }
        }
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    private const int LowestPort = 10_000;
    private static readonly HashSet<int> HandedOut = [];

    /// <summary>The first port of the kernel's ephemeral range (Linux), or 0 when it is not known.</summary>
    private static int EphemeralRangeStart()
    {
        try
        {
            var range = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[])[' ', '\t', '\n'], StringSplitOptions.RemoveEmptyEntries);
            return int.Parse(range[0], System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return 0;
        }
    }

    /// <summary>
    /// The first of <paramref name="count"/> consecutive free loopback ports (what `freshet cluster up --port` takes),
    /// not overlapping the range that starts at <paramref name="avoid"/>.
    /// </summary>
    public static int FreePortRange(int count, int? avoid = null)
    {
        for (int attempt = 0; ; attempt++)
        {
            int first = FreePort();
            bool overlaps = avoid is { } a && first < a + count && a < first + count;
            if (!overlaps && first + count - 1 <= 65535 && Enumerable.Range(first + 1, count - 1).All(IsFree))
            {
                lock (HandedOut)
                    for (int p = first + 1; p < first + count; p++) HandedOut.Add(p);
                return first;
            }
            if (attempt == 50) throw new InvalidOperationException($"no {count} consecutive free ports found");
        }
    }

    /// <summary>Whether a loopback port can be bound now.</summary>
    public static bool IsFree(int port)
    {
        try
        {
            var l = new TcpListener(IPAddress.Loopback, port);
            l.Start();
            l.Stop();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>Path of freshet.dll next to the test assembly (the Cli project is referenced).</summary>
    public static string FreshetDll => Path.Combine(AppContext.BaseDirectory, "freshet.dll");

    /// <summary>Starts the process and waits for its ready line; returns the time it took.</summary>
    public async Task<TimeSpan> StartAsync(TimeSpan? timeout = null)
    {
        var sw = Stopwatch.StartNew();
        await Launch().WaitAsync(timeout ?? TimeSpan.FromSeconds(60));
        return sw.Elapsed;
    }

    /// <summary>Whether the process has printed its ready line (false again after a stop or kill).</summary>
    public bool IsReady => _ready?.Task.IsCompletedSuccessfully == true && _process is not null;

    private TaskCompletionSource? _ready;

    /// <summary>Starts the process without waiting: the task completes at its ready line, and fails if it exits first.</summary>
    public Task Launch()
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(FreshetDll);
        psi.ArgumentList.Add("server");
        psi.ArgumentList.Add("--log-level");
        psi.ArgumentList.Add(LogLevel);
        foreach (var (k, v) in _overrides)
        {
            psi.ArgumentList.Add("--override");
            psi.ArgumentList.Add($"{k}={v}");
        }
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _ready = ready;
        var p = new Process { StartInfo = psi, EnableRaisingEvents = true };
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (_output) _output.AppendLine(e.Data);
            if (e.Data.StartsWith("Freshet is ready", StringComparison.Ordinal)) ready.TrySetResult();
        };
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null) lock (_output) _output.AppendLine(e.Data);
        };
        p.Exited += (_, _) =>
        {
            if (ready.Task.IsCompleted) return;
            // The output events may still be on their way when the process has exited: wait for the end of both streams.
            try { p.WaitForExit(); }
            catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException) { }
            ready.TrySetException(new InvalidOperationException($"broker exited during start-up:\n{Output}"));
        };
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _process = p;
        return ready.Task;
    }

    /// <summary>True once the started process has exited by itself (or was never started).</summary>
    public bool HasExited => _process?.HasExited ?? true;

    /// <summary>Waits for the process to exit by itself (its output read to the end) and returns its exit code.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        var p = _process ?? throw new InvalidOperationException("the process is not running");
        await p.WaitForExitAsync().WaitAsync(timeout);
        return p.ExitCode;
    }

    /// <summary>SIGKILL: no shutdown code runs, as after a power cut of the process (the page cache survives).</summary>
    public async Task KillAsync()
    {
        if (_process is null) return;
        _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
        _process.Dispose();
        _process = null;
    }

    /// <summary>SIGTERM and wait for the clean shutdown.</summary>
    public async Task StopAsync(TimeSpan? timeout = null)
    {
        if (_process is null) return;
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            await kill.WaitForExitAsync();
        await _process.WaitForExitAsync().WaitAsync(timeout ?? TimeSpan.FromSeconds(30));
        _process.Dispose();
        _process = null;
    }

    public async ValueTask DisposeAsync()
    {
        try { await KillAsync(); }
        catch (InvalidOperationException) { }
        try { Directory.Delete(DataDir, recursive: true); }
        catch (DirectoryNotFoundException) { }
        catch (IOException) { }
    }
}
