using Freshet.Broker.Replication;
using Freshet.Protocol.Config;
using Freshet.Storage;

namespace Freshet.Server.Tests;

public sealed class BrokerConfigTests
{
    private static BrokerConfig Config(params (string Key, string Value)[] props) =>
        new(props.ToDictionary(p => p.Key, p => p.Value));

    [Fact]
    public void DefaultsAreASingleCombinedNodeOnLocalhost9092WithDataInDotData()
    {
        var c = Config();
        Assert.Equal(1, c.NodeId);
        Assert.Equal(["broker", "controller"], c.ProcessRoles);
        Assert.Equal([("PLAINTEXT", "localhost", 9092)], c.Listeners);
        Assert.Equal(c.Listeners, c.AdvertisedListeners);
        Assert.Equal(["./data"], c.LogDirs);
        Assert.Equal("./data", c.MetadataLogDir);
        Assert.True(c.AutoCreateTopicsEnable);
        Assert.Equal(1, c.NumPartitions);
        Assert.Equal(1, c.DefaultReplicationFactor);
        Assert.Equal(104857600, c.SocketRequestMaxBytes);
        Assert.False(c.FlushPerAppend);
        // log.retention.hours=168 is Kafka's default and becomes the topic default retention.ms.
        Assert.Equal("604800000", LogConfig.Create(c.TopicDefaults, new Dictionary<string, string>()).Values["retention.ms"]);
    }

    [Fact]
    public void RetentionUsesMsThenMinutesThenHours()
    {
        Assert.Equal("7200000", Config(("log.retention.hours", "2")).TopicDefaults["retention.ms"]);
        Assert.Equal("300000", Config(("log.retention.hours", "2"), ("log.retention.minutes", "5")).TopicDefaults["retention.ms"]);
        Assert.Equal("42", Config(("log.retention.hours", "2"), ("log.retention.minutes", "5"), ("log.retention.ms", "42")).TopicDefaults["retention.ms"]);
        Assert.Equal("3600000", Config(("log.roll.hours", "1")).TopicDefaults["segment.ms"]);
        Assert.Equal("1048576", Config(("log.segment.bytes", "1048576")).TopicDefaults["segment.bytes"]);
        Assert.Equal("2000000", Config(("message.max.bytes", "2000000")).TopicDefaults["max.message.bytes"]);
    }

    [Fact]
    public void ListenersLogDirsAndUnknownKeys()
    {
        var c = Config(("listeners", "PLAINTEXT://0.0.0.0:9093,internal://[::1]:9094"), ("advertised.listeners", "PLAINTEXT://kafka.example:9093"),
            ("log.dirs", "/a,/b"), ("num.io.threads", "8"), ("no.such.setting", "x"));
        Assert.Equal([("PLAINTEXT", "0.0.0.0", 9093), ("INTERNAL", "::1", 9094)], c.Listeners);
        Assert.Equal([("PLAINTEXT", "kafka.example", 9093)], c.AdvertisedListeners);
        Assert.Equal(["/a", "/b"], c.LogDirs);
        Assert.Equal(["no.such.setting"], c.Unknown); // Kafka's thread settings are known and ignored
    }

    [Theory]
    [InlineData("num.partitions", "0")]
    [InlineData("num.partitions", "three")]
    [InlineData("auto.create.topics.enable", "maybe")]
    [InlineData("listeners", "localhost:9092")]
    [InlineData("log.cleanup.policy", "shred")]
    [InlineData("log.retention.ms", "soon")]
    public void BadValuesAreRefusedWithTheKeyInTheMessage(string key, string value)
    {
        var e = Assert.Throws<ArgumentException>(() => Config((key, value)));
        Assert.Contains(key, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ConnectionLimitsTakeKafkasNamesDefaultsAndRules()
    {
        var d = Config();
        Assert.Equal(int.MaxValue, d.MaxConnections);
        Assert.Equal(int.MaxValue, d.MaxConnectionsPerIp);
        Assert.Empty(d.MaxConnectionsPerIpOverrides);
        Assert.Empty(d.ListenerMaxConnections);
        Assert.Equal(600_000, d.ConnectionsMaxIdleMs);

        var c = Config(("listeners", "PLAINTEXT://127.0.0.1:9092,Internal://127.0.0.1:9093"), ("max.connections", "100"),
            ("listener.name.internal.max.connections", "7"), ("listener.name.nosuch.max.connections", "3"),
            ("max.connections.per.ip", "0"), ("max.connections.per.ip.overrides", "hostName1:100, 127.0.0.2 : 0,::1:5"));
        Assert.Equal(100, c.MaxConnections);
        Assert.Equal(new Dictionary<string, int> { ["INTERNAL"] = 7 }, c.ListenerMaxConnections);
        Assert.Equal(0, c.MaxConnectionsPerIp);
        Assert.Equal(new Dictionary<string, int> { ["hostName1"] = 100, ["127.0.0.2"] = 0, ["::1"] = 5 }, c.MaxConnectionsPerIpOverrides);
        // A listener's key is known; one for a listener that does not exist is reported, as any unknown key.
        Assert.Equal(["listener.name.nosuch.max.connections"], c.Unknown);

        // Kafka's rule: 0 per address locks every client out unless some address has an override.
        var zero = Assert.Throws<ArgumentException>(() => Config(("max.connections.per.ip", "0")));
        Assert.Contains("max.connections.per.ip can be set to zero only if max.connections.per.ip.overrides is set", zero.Message, StringComparison.Ordinal);
        foreach (var bad in new[] { "hostName1", "hostName1:many", ":5", "a:1,b:-2" })
        {
            var e = Assert.Throws<ArgumentException>(() => Config(("max.connections.per.ip.overrides", bad)));
            Assert.Contains("max.connections.per.ip.overrides", e.Message, StringComparison.Ordinal);
        }
        var listener = Assert.Throws<ArgumentException>(() => Config(("listener.name.plaintext.max.connections", "-1")));
        Assert.Contains("listener.name.plaintext.max.connections", listener.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => Config(("max.connections.per.ip", "-1")));
    }

    [Fact]
    public void ReplicaSelectorClassTakesKafkasSelectorNamesAndRefusesOtherClasses()
    {
        Assert.Equal(ReplicaSelector.Leader, Config().ReplicaSelector);
        var rackAware = Config(("replica.selector.class", "org.apache.kafka.common.replica.RackAwareReplicaSelector"));
        Assert.Equal(ReplicaSelector.RackAware, rackAware.ReplicaSelector);
        Assert.Empty(rackAware.Unknown);
        Assert.Equal(ReplicaSelector.Leader, Config(("replica.selector.class", "org.apache.kafka.common.replica.LeaderReplicaSelector")).ReplicaSelector);
        Assert.Equal(ReplicaSelector.Leader, Config(("replica.selector.class", " ")).ReplicaSelector);
        foreach (var other in new[] { "com.example.NearestReplicaSelector", "RackAwareReplicaSelector", "org.apache.kafka.common.replica.MostCaughtUpReplicaSelector" })
        {
            var e = Assert.Throws<ArgumentException>(() => Config(("replica.selector.class", other)));
            Assert.Contains($"Invalid value {other} for configuration replica.selector.class", e.Message, StringComparison.Ordinal);
            Assert.Contains("org.apache.kafka.common.replica.RackAwareReplicaSelector", e.Message, StringComparison.Ordinal);
        }
        var described = rackAware.Describe().Single(e => e.Name == "replica.selector.class");
        Assert.Equal(("org.apache.kafka.common.replica.RackAwareReplicaSelector", ConfigSource.StaticBrokerConfig, ConfigType.Class),
            (described.Value, described.Source, described.Type));
    }

    [Fact]
    public void DescribeReportsSourceAndDefaults()
    {
        var entries = Config(("num.partitions", "6")).Describe().ToDictionary(e => e.Name);
        Assert.Equal("6", entries["num.partitions"].Value);
        Assert.Equal(ConfigSource.StaticBrokerConfig, entries["num.partitions"].Source);
        Assert.Equal("true", entries["auto.create.topics.enable"].Value);
        Assert.Equal(ConfigSource.DefaultConfig, entries["auto.create.topics.enable"].Source);
    }

    [Fact]
    public void PropertiesFileSyntax()
    {
        var p = PropertiesFile.Parse("""
            # comment
            ! also a comment
            a=1
            b : two
            c three
              d.e = spaced value  
            long=first,\
                 second
            path=C:\\data\\x
            unicode=caf\u00e9
            empty=
            """);
        Assert.Equal("1", p["a"]);
        Assert.Equal("two", p["b"]);
        Assert.Equal("three", p["c"]);
        Assert.Equal("spaced value", p["d.e"]);
        Assert.Equal("first,second", p["long"]);
        Assert.Equal(@"C:\data\x", p["path"]);
        Assert.Equal("café", p["unicode"]);
        Assert.Equal("", p["empty"]);
        Assert.Equal(8, p.Count);
    }

    /// <summary>
    /// Fail closed: a listener Kafka would secure, or a TLS, SASL or ACL setting, stops start-up with a message
    /// that says Freshet lacks them and names the trigger; before, each was an unknown key and the listener
    /// was served in plain text to anyone.
    /// </summary>
    [Theory]
    [InlineData("listeners", "SASL_SSL://127.0.0.1:9093", "listener SASL_SSL (in listeners) has security protocol SASL_SSL")]
    [InlineData("listeners", "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9093", "listener SSL (in listeners) has security protocol SSL")]
    [InlineData("listeners", "SASL_PLAINTEXT://127.0.0.1:9093", "listener SASL_PLAINTEXT (in listeners) has security protocol SASL_PLAINTEXT")]
    [InlineData("advertised.listeners", "SSL://kafka.example:9093", "listener SSL (in advertised.listeners) has security protocol SSL")]
    [InlineData("ssl.keystore.location", "/etc/kafka/broker.jks", "ssl.keystore.location is set (TLS")]
    [InlineData("ssl.client.auth", "required", "ssl.client.auth is set (TLS")]
    [InlineData("sasl.enabled.mechanisms", "SCRAM-SHA-512", "sasl.enabled.mechanisms is set (SASL")]
    [InlineData("sasl.mechanism.inter.broker.protocol", "PLAIN", "sasl.mechanism.inter.broker.protocol is set (SASL between brokers)")]
    [InlineData("listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config", "x required;", "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config is set (SASL")]
    [InlineData("listener.name.external.ssl.keystore.location", "/k.jks", "listener.name.external.ssl.keystore.location is set (TLS")]
    [InlineData("security.inter.broker.protocol", "SSL", "security.inter.broker.protocol is set")]
    [InlineData("authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "authorizer.class.name is set (ACL")]
    [InlineData("super.users", "User:admin", "super.users is set (ACL")]
    [InlineData("allow.everyone.if.no.acl.found", "false", "allow.everyone.if.no.acl.found is set (ACL")]
    [InlineData("principal.builder.class", "com.example.Builder", "principal.builder.class is set")]
    [InlineData("connections.max.reauth.ms", "3600000", "connections.max.reauth.ms is set (SASL")]
    [InlineData("delegation.token.secret.key", "s3cret", "delegation.token.secret.key is set (delegation-token")]
    public void SecurityFreshetCannotGiveIsRefusedNamingItsSetting(string key, string value, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => Config((key, value)));
        Assert.StartsWith("Freshet does not support TLS, SASL or ACLs yet", e.Message, StringComparison.Ordinal);
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.Contains("refuses to start", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ListenerProtocolsComeFromTheSecurityProtocolMap()
    {
        // A name mapped to a secured protocol is refused whatever it is called.
        var e = Assert.Throws<ArgumentException>(() => Config(("listeners", "PLAINTEXT://:9092,EXTERNAL://:9093"),
            ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,EXTERNAL:SASL_SSL")));
        Assert.Contains("listener EXTERNAL (in listeners) has security protocol SASL_SSL (listener.security.protocol.map)", e.Message, StringComparison.Ordinal);
        // Kafka's shipped server.properties maps every protocol name; only the listeners in use count, and a name mapped to PLAINTEXT is plain.
        var c = Config(("listeners", "PLAINTEXT://:9092,CONTROLLER://:19092,SSL://:9093"), ("controller.listener.names", "CONTROLLER"),
            ("advertised.listeners", "PLAINTEXT://localhost:9092,SSL://localhost:9093"),
            ("listener.security.protocol.map", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"));
        Assert.Empty(c.Unknown);
        Assert.Equal(["CONTROLLER", "PLAINTEXT", "SSL"], c.Listeners.Select(l => l.Name).Order(StringComparer.Ordinal));
        // An explicit map must name every listener, as in Kafka; an unknown protocol is a bad value.
        var missing = Assert.Throws<ArgumentException>(() => Config(("listeners", "PLAINTEXT://:9092,INTERNAL://:9094"), ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT")));
        Assert.Contains("listener INTERNAL (in listeners) is not in listener.security.protocol.map", missing.Message, StringComparison.Ordinal);
        var bad = Assert.Throws<ArgumentException>(() => Config(("listener.security.protocol.map", "PLAINTEXT:TLS")));
        Assert.Contains("Invalid value PLAINTEXT:TLS for configuration listener.security.protocol.map", bad.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void EverySecurityTriggerIsNamedInOneMessage()
    {
        var e = Assert.Throws<ArgumentException>(() => Config(("listeners", "SASL_SSL://:9093"), ("advertised.listeners", "SASL_SSL://kafka.example:9093"),
            ("ssl.keystore.location", "/k.jks"), ("sasl.enabled.mechanisms", "PLAIN"), ("authorizer.class.name", "kafka.security.authorizer.AclAuthorizer")));
        foreach (var trigger in new[] { "listener SASL_SSL (in listeners)", "ssl.keystore.location is set", "sasl.enabled.mechanisms is set", "authorizer.class.name is set" })
            Assert.Contains(trigger, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SecuritySettingsThatAskForNothingAreAcceptedAndOtherUnknownKeysOnlyWarned()
    {
        var c = Config(("security.inter.broker.protocol", "PLAINTEXT"), ("authorizer.class.name", ""), ("no.such.setting", "x"),
            ("listener.name.plaintext.max.connections", "100"), ("listener.name.plaintext.no.such.setting", "1"), ("zookeeper.ssl.client.enable", "true"));
        // Not security Freshet could give: unknown keys, warned at start-up as before (ZooKeeper's TLS protects a connection Freshet never opens).
        Assert.Equal(["listener.name.plaintext.no.such.setting", "no.such.setting", "zookeeper.ssl.client.enable"], c.Unknown);
    }

    [Fact]
    public void MetaPropertiesFormatsOnceAndRefusesAnotherNode()
    {
        string a = Path.Combine(Path.GetTempPath(), "meta-" + Guid.NewGuid().ToString("N")[..8]);
        string b = a + "-b";
        try
        {
            string cluster = MetaProperties.EnsureFormatted([a, b], 3);
            Assert.Equal(22, cluster.Length);
            Assert.Equal(cluster, MetaProperties.EnsureFormatted([a, b], 3));
            Assert.Equal(3, MetaProperties.Read(a)!.NodeId);
            Assert.Throws<InvalidOperationException>(() => MetaProperties.EnsureFormatted([a], 4));
        }
        finally
        {
            Directory.Delete(a, true);
            Directory.Delete(b, true);
        }
    }
}
