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

    /// <summary>
    /// Fail closed (issue 10): a node configured as Kafka users secure one -- secured listeners, TLS,
    /// SASL or ACL settings -- used to start, warn that each setting was unknown, and serve its
    /// listeners in plain text to anyone. Now it refuses to start, says why and names the settings,
    /// and none of its ports ever accepts a connection (nor is a data directory formatted).
    /// </summary>
    [Theory]
    [InlineData("sasl-ssl")]
    [InlineData("ssl-beside-plaintext")]
    [InlineData("tls-setting-on-plaintext")]
    [InlineData("mapped-listener")]
    public async Task ASecuredConfigurationIsRefusedAndNoPortEverAccepts(string scenario)
    {
        string dir = Path.Combine(Path.GetTempPath(), "freshet-secured-" + Guid.NewGuid().ToString("N")[..8]);
        int p1 = BrokerProcess.FreePort(), p2 = BrokerProcess.FreePort();
        (string[] Settings, string[] Expected) c = scenario switch
        {
            "sasl-ssl" => ([$"listeners=SASL_SSL://127.0.0.1:{p1}", $"advertised.listeners=SASL_SSL://127.0.0.1:{p1}",
                "security.inter.broker.protocol=SASL_SSL", "sasl.enabled.mechanisms=SCRAM-SHA-512", "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
                "ssl.keystore.location=/etc/kafka/secrets/broker.keystore.jks", "ssl.keystore.password=changeit",
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer", "super.users=User:admin"],
                ["listener SASL_SSL (in listeners) has security protocol SASL_SSL", "security.inter.broker.protocol is set", "sasl.enabled.mechanisms is set",
                 "ssl.keystore.location is set", "ssl.keystore.password is set", "authorizer.class.name is set", "super.users is set"]),
            "ssl-beside-plaintext" => ([$"listeners=PLAINTEXT://127.0.0.1:{p1},SSL://127.0.0.1:{p2}"],
                ["listener SSL (in listeners) has security protocol SSL"]),
            "tls-setting-on-plaintext" => ([$"listeners=PLAINTEXT://127.0.0.1:{p1}", "ssl.client.auth=required", "ssl.truststore.location=/etc/kafka/ca.jks"],
                ["ssl.client.auth is set (TLS", "ssl.truststore.location is set (TLS"]),
            "mapped-listener" => ([$"listeners=PLAINTEXT://127.0.0.1:{p1},EXTERNAL://127.0.0.1:{p2}", "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,EXTERNAL:SASL_PLAINTEXT",
                "listener.name.external.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required;"],
                ["listener EXTERNAL (in listeners) has security protocol SASL_PLAINTEXT (listener.security.protocol.map)", "listener.name.external.plain.sasl.jaas.config is set (SASL"]),
            _ => throw new ArgumentException(scenario),
        };
        try
        {
            var run = FreshetCli.RunAsync(["server", "--override", $"log.dirs={dir}", .. c.Settings.SelectMany(s => new[] { "--override", s })], stdin: null, TimeSpan.FromSeconds(60));
            // While the process lives, its ports are tried again and again: none may ever accept.
            int accepted = 0;
            while (!run.IsCompleted)
            {
                foreach (int port in new[] { p1, p2 })
                {
                    using var probe = new System.Net.Sockets.TcpClient();
                    try
                    {
                        await probe.ConnectAsync(System.Net.IPAddress.Loopback, port);
                        accepted++;
                    }
                    catch (System.Net.Sockets.SocketException) { }
                }
                await Task.WhenAny(run, Task.Delay(5));
            }
            var r = await run;
            Assert.True(r.ExitCode == 1, r.ToString());
            Assert.Contains("freshet server: invalid configuration: Freshet does not support TLS, SASL or ACLs yet", r.Stderr, StringComparison.Ordinal);
            foreach (var e in c.Expected) Assert.Contains(e, r.Stderr, StringComparison.Ordinal);
            Assert.Contains("refuses to start", r.Stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("isn't a known config", r.Stdout + r.Stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("Freshet is ready", r.Stdout, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
            Assert.Equal(0, accepted);
            Assert.False(Directory.Exists(dir), "nothing is formatted");
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }
}
