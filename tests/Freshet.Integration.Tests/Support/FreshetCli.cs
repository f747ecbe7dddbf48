using System.Diagnostics;
using System.Text;

namespace Freshet.Integration.Tests.Support;

/// <summary>What one run of the `freshet` program did.</summary>
public sealed record CliResult(int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
{
    /// <summary>Non-empty stdout lines.</summary>
    public string[] Lines => Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    public override string ToString() => $"exit {ExitCode} after {Elapsed.TotalSeconds:F1} s\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
}

/// <summary>
/// Runs the real `freshet` program (`dotnet freshet.dll ...`) as a child process, with stdin fed
/// from a string and stdout/stderr captured, and kills it if it outlives the timeout.
/// </summary>
public static class FreshetCli
{
    public static Task<CliResult> RunAsync(params string[] args) => RunAsync(args, stdin: null);

    public static async Task<CliResult> RunAsync(IEnumerable<string> args, string? stdin, TimeSpan? timeout = null)
    {
        var utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false);
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardInputEncoding = utf8,
            StandardOutputEncoding = utf8,
            StandardErrorEncoding = utf8,
        };
        psi.ArgumentList.Add(BrokerProcess.FreshetDll);
        foreach (var a in args) psi.ArgumentList.Add(a);

        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start dotnet");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        try
        {
            if (stdin is not null) await p.StandardInput.WriteAsync(stdin);
            p.StandardInput.Close();
        }
        catch (IOException)
        {
            // The program exited without reading its input (a usage error): its output says why.
        }
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(60));
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            await p.WaitForExitAsync();
            throw new TimeoutException($"freshet {string.Join(' ', args)} did not finish within {timeout ?? TimeSpan.FromSeconds(60)}:\n"
                + $"--- stdout\n{await stdout}\n--- stderr\n{await stderr}");
        }
        return new CliResult(p.ExitCode, await stdout, await stderr, sw.Elapsed);
    }
}
