using System.Diagnostics;
using System.Text;

namespace Freshet.Integration.Tests.Support;

/// <summary>What a finished child process left: its exit code and everything it wrote.</summary>
public sealed record ProcessResult(string CommandLine, int ExitCode, string StdOut, string StdErr, TimeSpan Elapsed)
{
    /// <summary>Throws (with the command, exit code and both streams) unless the process exited with 0.</summary>
    public ProcessResult EnsureSuccess()
    {
        if (ExitCode != 0) throw new InvalidOperationException($"{Describe()} failed with exit code {ExitCode}");
        return this;
    }

    /// <summary>One line: the command, its exit code, time and how much it printed.</summary>
    public string Summary =>
        $"`{CommandLine}` exited with {ExitCode} in {Elapsed.TotalSeconds:0.0} s ({StdOut.Count(c => c == '\n')} stdout lines, {StdErr.Count(c => c == '\n')} stderr lines)";

    /// <summary>The command and its output, trimmed to the last few kilobytes of each stream, for assertion messages.</summary>
    public string Describe() =>
        $"`{CommandLine}` ({Elapsed.TotalSeconds:0.0} s)\n--- stdout ---\n{Tail(StdOut)}\n--- stderr ---\n{Tail(StdErr)}";

    internal static string Tail(string s, int max = 6000) => s.Length <= max ? s : "[...]" + s[^max..];
}

/// <summary>
/// Runs another program (a Kafka client under test) as a child process: arguments passed as a list
/// (no shell), optional standard input, standard output and error captured in full, and a hard
/// timeout after which the whole process tree is killed and <see cref="TimeoutException"/> thrown.
/// </summary>
public static class ExternalProcess
{
    public static async Task<ProcessResult> RunAsync(string fileName, IEnumerable<string> arguments, TimeSpan timeout,
        string? standardInput = null, string? workingDirectory = null, IReadOnlyDictionary<string, string>? environment = null,
        CancellationToken terminate = default)
    {
        var psi = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
            StandardInputEncoding = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false),
            WorkingDirectory = workingDirectory ?? "",
        };
        foreach (var a in arguments) psi.ArgumentList.Add(a);
        if (environment is not null)
            foreach (var (k, v) in environment) psi.Environment[k] = v;
        string commandLine = string.Join(' ', psi.ArgumentList.Prepend(fileName).Select(Quote));

        using var process = new Process { StartInfo = psi };
        var sw = Stopwatch.StartNew();
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"cannot start `{commandLine}`: {e.Message}", e);
        }

        // Read both streams before writing stdin, so a child that fills a pipe cannot block us.
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            if (standardInput is not null)
            {
                try
                {
                    await process.StandardInput.WriteAsync(standardInput.AsMemory(), cts.Token);
                    await process.StandardInput.FlushAsync(cts.Token);
                }
                catch (IOException)
                {
                    // The child closed its stdin early (it exited); what it printed says why.
                }
            }
            try { process.StandardInput.Close(); }
            catch (IOException) { }
            // A long-running command (a consumer without an end) is asked to stop with SIGTERM, as Ctrl-C would.
            using var stopping = terminate.Register(() =>
            {
                try
                {
                    using var kill = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
                    kill.WaitForExit();
                }
                catch (InvalidOperationException)
                {
                    // It has exited already.
                }
            });
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            try { process.Kill(entireProcessTree: true); }
            catch (InvalidOperationException) { }
            await process.WaitForExitAsync();
            throw new TimeoutException($"`{commandLine}` did not finish within {timeout.TotalSeconds:0} s and was killed\n--- stdout ---\n{ProcessResult.Tail(await stdout)}\n--- stderr ---\n{ProcessResult.Tail(await stderr)}");
        }
        return new ProcessResult(commandLine, process.ExitCode, await stdout, await stderr, sw.Elapsed);
    }

    /// <summary>The full path of an executable found on PATH, or null.</summary>
    public static string? FindOnPath(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, name);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    private static string Quote(string s) =>
        s.Length > 0 && s.All(c => char.IsLetterOrDigit(c) || "-_./:=,@%+".Contains(c)) ? s : "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
