using System.Diagnostics;
using System.Text.Json;

namespace Freshet.Integration.Tests.Support;

/// <summary>A record a member printed: where it came from and its value.</summary>
public readonly record struct ConsumedRecord(int Partition, long Offset, string Value);

/// <summary>
/// A consumer group member in its own process (`freshet consume --group ... --format json`), so a
/// test can kill it with SIGKILL: no LeaveGroup, no final commit, exactly like a crashed machine.
/// Every record it printed is kept, in order.
/// </summary>
public sealed class GroupMemberProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly List<ConsumedRecord> _records = [];
    private readonly string _configFile;

    private GroupMemberProcess(Process process, string configFile)
    {
        _process = process;
        _configFile = configFile;
    }

    public string Name { get; private init; } = "";
    public int Pid => _process.Id;
    public bool HasExited => _process.HasExited;

    public IReadOnlyList<ConsumedRecord> Records
    {
        get { lock (_records) return [.. _records]; }
    }

    /// <summary>Starts a member of <paramref name="group"/> reading <paramref name="topic"/> from the beginning where nothing is committed.</summary>
    public static GroupMemberProcess Start(string name, string bootstrap, string group, string topic, IReadOnlyDictionary<string, string> clientProperties,
        string? instanceId = null, string? protocol = null)
    {
        string config = Path.Combine(Path.GetTempPath(), $"freshet-member-{Guid.NewGuid():N}.properties");
        File.WriteAllLines(config, clientProperties.Select(kv => $"{kv.Key}={kv.Value}"));
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { BrokerProcess.FreshetDll, "consume", "--topic", topic, "--group", group, "--from", "beginning", "--format", "json",
                     "--bootstrap-server", bootstrap, "--command-config", config })
            psi.ArgumentList.Add(a);
        if (instanceId is not null)
        {
            psi.ArgumentList.Add("--group-instance-id");
            psi.ArgumentList.Add(instanceId);
        }
        if (protocol is not null)
        {
            psi.ArgumentList.Add("--group-protocol");
            psi.ArgumentList.Add(protocol);
        }
        var p = new Process { StartInfo = psi };
        var member = new GroupMemberProcess(p, config) { Name = name };
        p.OutputDataReceived += (_, e) =>
        {
            if (string.IsNullOrWhiteSpace(e.Data)) return;
            using var doc = JsonDocument.Parse(e.Data);
            var r = doc.RootElement;
            var record = new ConsumedRecord(r.GetProperty("partition").GetInt32(), r.GetProperty("offset").GetInt64(), r.GetProperty("value").GetString() ?? "");
            lock (member._records) member._records.Add(record);
        };
        p.ErrorDataReceived += (_, _) => { };
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return member;
    }

    /// <summary>SIGKILL: the member vanishes without leaving the group or committing.</summary>
    public async Task KillAsync()
    {
        if (_process.HasExited) return;
        _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
    }

    /// <summary>SIGTERM: the member closes cleanly (commits and leaves).</summary>
    public async Task StopAsync()
    {
        if (_process.HasExited) return;
        using (var kill = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            await kill.WaitForExitAsync();
        try { await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(20)); }
        catch (TimeoutException) { _process.Kill(entireProcessTree: true); }
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process.Dispose();
        File.Delete(_configFile);
    }
}
