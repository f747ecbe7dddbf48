using System.Globalization;
using System.Text.RegularExpressions;
using Freshet.Integration.Tests.Support;

namespace Freshet.Integration.Tests.Cli;

/// <summary>`freshet bench --phases connections`: the idle-connection memory measurement runs end to end against the broker it starts.</summary>
public sealed partial class BenchCommandTests
{
    [GeneratedRegex(@"^connections\s+(\d+)\s+broker rss ([\d.]+) MiB")]
    private static partial Regex StepLine();

    [Fact]
    public async Task TheConnectionsPhaseReportsTheBrokersMemoryAtEachStep()
    {
        var r = await FreshetCli.RunAsync(["bench", "--phases", "connections", "--connections", "20,50"], stdin: null, timeout: TimeSpan.FromSeconds(120));
        Assert.True(r.ExitCode == 0, r.ToString());
        var steps = r.Lines.Select(l => StepLine().Match(l)).Where(m => m.Success)
            .Select(m => (Connections: int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), Rss: double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture))).ToList();
        Assert.Equal([0, 20, 50], steps.Select(s => s.Connections));
        Assert.All(steps, s => Assert.True(s.Rss > 10, r.ToString()));
        Assert.Contains(r.Lines, l => l.StartsWith("connections     50", StringComparison.Ordinal) && l.Contains("KiB per idle connection", StringComparison.Ordinal));
    }

    [Fact]
    public async Task TheConnectionsPhaseNeedsTheBrokerItStarts()
    {
        var r = await FreshetCli.RunAsync("bench", "--phases", "connections", "--bootstrap-server", "127.0.0.1:1");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("run it without --bootstrap-server", r.Stderr, StringComparison.Ordinal);
    }
}
