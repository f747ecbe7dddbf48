using Freshet.Integration.Tests.Support;

namespace Freshet.Integration.Tests.Cli;

/// <summary>`freshet server` refusing bad settings with a readable message, not a stack trace.</summary>
public sealed class ServerCommandTests
{
    [Theory]
    [InlineData("replica.selector.class=com.example.MySelector", "Invalid value com.example.MySelector for configuration replica.selector.class")]
    [InlineData("broker.session.timeout.ms=soon", "Invalid value soon for configuration broker.session.timeout.ms")]
    [InlineData("process.roles=broker", "controller.quorum.voters")]
    [InlineData("controller.quorum.bootstrap.servers=127.0.0.1:19092", "Freshet's metadata quorum has a static voter set")]
    public async Task ABadSettingStopsStartUpWithItsName(string setting, string expected)
    {
        string dir = Path.Combine(Path.GetTempPath(), "freshet-badconf-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var r = await FreshetCli.RunAsync(["server", "--override", setting, "--override", $"log.dirs={dir}",
                "--override", "listeners=PLAINTEXT://127.0.0.1:0"], stdin: null, TimeSpan.FromSeconds(60));
            Assert.True(r.ExitCode == 1, r.ToString());
            Assert.Contains("freshet server: invalid configuration: ", r.Stderr, StringComparison.Ordinal);
            Assert.Contains(expected, r.Stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("Unhandled exception", r.Stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }
}
