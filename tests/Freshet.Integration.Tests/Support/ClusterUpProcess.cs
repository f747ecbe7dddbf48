using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Freshet.Integration.Tests.Support;

/// <summary>
/// `freshet cluster up` as a long-running child process on free loopback ports and a temporary data
/// directory: its output lines as they come (a test can wait for one), the node pids it prints, and
/// SIGTERM to stop it. Dispose kills whatever is left (the command and its nodes) and removes the data.
/// </summary>
public sealed partial class ClusterUpProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly List<(Func<string, bool> Match, TaskCompletionSource<string> Seen)> _waiters = [];
    private readonly Dictionary<int, int> _pids = [];

    private ClusterUpProcess(Process process, int nodes, int clientPort, int controllerPort, string dataDir)
    {
        _process = process;
        Nodes = nodes;
        ClientPort = clientPort;
        ControllerPort = controllerPort;
        DataDir = dataDir;
    }

    public int Nodes { get; }

    /// <summary>Node 1's client port (node N's is this + N - 1).</summary>
    public int ClientPort { get; }

    /// <summary>Node 1's controller port (node N's is this + N - 1).</summary>
    public int ControllerPort { get; }
    public string DataDir { get; }
    public string BootstrapServers => string.Join(",", Enumerable.Range(0, Nodes).Select(i => $"127.0.0.1:{ClientPort + i}"));
    public bool HasExited => _process.HasExited;

    /// <summary>Everything printed so far, stdout and stderr interleaved as read.</summary>
    public string Output
    {
        get { lock (_lines) return string.Join('\n', _lines); }
    }

    /// <summary>Node id to pid, from the command's "node N started (pid P)" lines.</summary>
    public IReadOnlyDictionary<int, int> NodePids
    {
        get { lock (_lines) return new Dictionary<int, int>(_pids); }
    }

    /// <summary>Starts `freshet cluster up --nodes N` on free consecutive ports (or the given ones) with extra arguments.</summary>
    public static ClusterUpProcess Start(int nodes, int? clientPort = null, int? controllerPort = null, params string[] extra)
    {
        int client = clientPort ?? BrokerProcess.FreePortRange(nodes);
        int controller = controllerPort ?? BrokerProcess.FreePortRange(nodes, avoid: client);
        string data = Path.Combine(Path.GetTempPath(), "freshet-up-" + Guid.NewGuid().ToString("N")[..10]);
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { BrokerProcess.FreshetDll, "cluster", "up", "--nodes", nodes.ToString(CultureInfo.InvariantCulture),
            "--port", client.ToString(CultureInfo.InvariantCulture), "--controller-port", controller.ToString(CultureInfo.InvariantCulture),
            "--data", data, "--log-level", "warning" }.Concat(extra))
            psi.ArgumentList.Add(a);
        var process = new Process { StartInfo = psi };
        var cluster = new ClusterUpProcess(process, nodes, client, controller, data);
        process.OutputDataReceived += (_, e) => cluster.Add(e.Data);
        process.ErrorDataReceived += (_, e) => cluster.Add(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return cluster;
    }

    private void Add(string? line)
    {
        if (line is null) return;
        List<TaskCompletionSource<string>> seen = [];
        lock (_lines)
        {
            _lines.Add(line);
            if (NodeStarted().Match(line) is { Success: true } m)
                _pids[int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)] = int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
            foreach (var w in _waiters.Where(w => w.Match(line)).ToList())
            {
                _waiters.Remove(w);
                seen.Add(w.Seen);
            }
        }
        foreach (var s in seen) s.TrySetResult(line);
    }

    /// <summary>Whether a line matching <paramref name="match"/> has been printed.</summary>
    public bool HasLine(Func<string, bool> match)
    {
        lock (_lines) return _lines.Any(match);
    }

    /// <summary>The first line (printed before or after the call) matching <paramref name="match"/>; fails with the output on timeout or exit.</summary>
    public async Task<string> WaitForLineAsync(Func<string, bool> match, TimeSpan timeout)
    {
        var seen = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lines)
        {
            if (_lines.FirstOrDefault(match) is { } line) return line;
            _waiters.Add((match, seen));
        }
        var exited = _process.WaitForExitAsync();
        var done = await Task.WhenAny(seen.Task, exited, Task.Delay(timeout));
        if (done == seen.Task) return await seen.Task;
        throw new TimeoutException($"freshet cluster up {(done == exited ? $"exited with {_process.ExitCode}" : $"printed no such line within {timeout}")}:\n{Output}");
    }

    /// <summary>Waits for the command to exit by itself; its exit code.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        await _process.WaitForExitAsync().WaitAsync(timeout);
        return _process.ExitCode;
    }

    /// <summary>SIGTERM (as Ctrl-C would) and the exit code once the command has stopped its nodes and exited.</summary>
    public async Task<int> StopAsync(TimeSpan timeout)
    {
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)]))
            await kill.WaitForExitAsync();
        return await WaitForExitAsync(timeout);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }
        catch (InvalidOperationException) { }
        // Nodes the command left behind (the failure these tests look for) are killed too.
        foreach (int pid in ProcessTable.Naming(DataDir))
        {
            try { Process.GetProcessById(pid).Kill(); }
            catch (ArgumentException) { }
            catch (InvalidOperationException) { }
        }
        _process.Dispose();
        try { Directory.Delete(DataDir, recursive: true); }
        catch (DirectoryNotFoundException) { }
        catch (IOException) { }
    }

    [GeneratedRegex(@"^freshet cluster: node (\d+) started \(pid (\d+)\)")]
    private static partial Regex NodeStarted();
}

/// <summary>Linux's view of processes and sockets (/proc), for tests that check what a command left behind.</summary>
public static class ProcessTable
{
    /// <summary>Pids of live processes whose command line contains <paramref name="text"/> (a test's unique data directory).</summary>
    public static List<int> Naming(string text)
    {
        var pids = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) || pid == Environment.ProcessId) continue;
            string cmdline;
            try { cmdline = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' '); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
            // A zombie (exited, not yet reaped) has an empty command line.
            if (cmdline.Contains(text, StringComparison.Ordinal)) pids.Add(pid);
        }
        return pids;
    }

    /// <summary>Established TCP connections (IPv4) whose local port is <paramref name="port"/>: a listener's accepted clients.</summary>
    public static int EstablishedTo(int port) => SocketsOn(port, "01");

    /// <summary>Whether a socket listens on <paramref name="port"/> (IPv4): a server still there.</summary>
    public static bool Listening(int port) => SocketsOn(port, "0A") > 0;

    /// <summary>
    /// Accepted connections on <paramref name="port"/> whose client has closed but the server has not (CLOSE_WAIT):
    /// a server that never noticed a client leaving.
    /// </summary>
    public static int ClosedByClientOnly(int port) => SocketsOn(port, "08");

    private static int SocketsOn(int port, string state)
    {
        int count = 0;
        foreach (var line in File.ReadLines("/proc/net/tcp").Skip(1))
        {
            // "  sl  local_address rem_address   st ...": addresses as hex IP:PORT, state 01 ESTABLISHED, 08 CLOSE_WAIT, 0A LISTEN.
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length > 3 && f[3] == state && int.Parse(f[1][(f[1].IndexOf(':') + 1)..], NumberStyles.HexNumber, CultureInfo.InvariantCulture) == port) count++;
        }
        return count;
    }
}
