using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Freshet.Integration.Tests.Support;
using Freshet.Server;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests;

/// <summary>
/// AlterConfigs (the whole set of a resource's dynamic configs) and dynamic broker configs (per
/// broker and cluster-wide, by IncrementalAlterConfigs or AlterConfigs) through Confluent.Kafka's
/// admin client: DescribeConfigs shows each value's source and synonyms as Kafka does, and the
/// broker configs Freshet accepts take effect on the logs at once; read-only ones are refused.
/// </summary>
public sealed class DynamicConfigsTests(ITestOutputHelper output) : IAsyncLifetime
{
    private FreshetServer _broker = null!;
    private IAdminClient _admin = null!;
    private readonly Microsoft.Extensions.Logging.ILoggerFactory _loggers = TestOutputLoggerProvider.Factory(output);

    public async Task InitializeAsync()
    {
        _broker = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string> { ["log.segment.bytes"] = "50000000" }, _loggers);
        _admin = Clients.Admin(_broker.BootstrapServers);
    }

    public async Task DisposeAsync()
    {
        _admin.Dispose();
        await _broker.DisposeAsync();
        _loggers.Dispose();
    }

    private static readonly ConfigResource Broker1 = new() { Type = ResourceType.Broker, Name = "1" };
    /// <summary>Confluent.Kafka refuses a broker resource without a name, so the cluster default ("") is set and read over a bare connection.</summary>
    private async Task SetClusterDefaultAsync(string name, string? value, AlterConfigOpType op)
    {
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var r = await c.RequestAsync<Freshet.Protocol.Messages.IncrementalAlterConfigsResponse>(new Freshet.Protocol.Messages.IncrementalAlterConfigsRequest
        {
            Resources = [new() { ResourceType = 4, ResourceName = "", Configs = [new() { Name = name, Value = value, ConfigOperation = (sbyte)op }] }],
        }, 1);
        var result = r.Responses.Single();
        if (result.ErrorCode != 0) throw new KafkaException(new Error((ErrorCode)result.ErrorCode, result.ErrorMessage));
    }

    private async Task<Dictionary<string, (string? Value, ConfigSource Source)>> DescribeClusterDefaultAsync()
    {
        await using var c = await RawKafkaClient.ConnectAsync(_broker.BootstrapServers);
        var r = await c.RequestAsync<Freshet.Protocol.Messages.DescribeConfigsResponse>(new Freshet.Protocol.Messages.DescribeConfigsRequest
        {
            Resources = [new() { ResourceType = 4, ResourceName = "" }], IncludeSynonyms = true,
        }, 4);
        var result = r.Results.Single();
        Assert.Equal(0, result.ErrorCode);
        return result.Configs.ToDictionary(e => e.Name, e => (e.Value, (ConfigSource)e.ConfigSource));
    }

    private async Task<Dictionary<string, ConfigEntryResult>> DescribeAsync(ConfigResource resource) =>
        (await _admin.DescribeConfigsAsync([resource], new DescribeConfigsOptions { RequestTimeout = TimeSpan.FromSeconds(30) })).Single().Entries;

    private Task SetAsync(ConfigResource resource, params (string Name, string? Value, AlterConfigOpType Op)[] changes) =>
        _admin.IncrementalAlterConfigsAsync(new Dictionary<ConfigResource, List<ConfigEntry>>
        {
            [resource] = [.. changes.Select(c => new ConfigEntry { Name = c.Name, Value = c.Value, IncrementalOperation = c.Op })],
        });

#pragma warning disable CS0618 // AlterConfigsAsync is what older tools still send: it is the API under test.
    private Task ReplaceAsync(ConfigResource resource, bool validateOnly, params (string Name, string Value)[] configs) =>
        _admin.AlterConfigsAsync(new Dictionary<ConfigResource, List<ConfigEntry>>
        {
            [resource] = [.. configs.Select(c => new ConfigEntry { Name = c.Name, Value = c.Value })],
        }, new AlterConfigsOptions { ValidateOnly = validateOnly });
#pragma warning restore CS0618

    [Fact]
    public async Task AlterConfigsReplacesATopicsWholeSetOfConfigs()
    {
        await Clients.CreateTopicAsync(_broker.BootstrapServers, "replace", 1, new() { ["retention.ms"] = "1000000", ["max.message.bytes"] = "5000" });
        var topic = new ConfigResource { Type = ResourceType.Topic, Name = "replace" };

        await ReplaceAsync(topic, validateOnly: true, ("cleanup.policy", "compact"));
        Assert.Equal("1000000", (await DescribeAsync(topic))["retention.ms"].Value); // validate-only changes nothing

        await ReplaceAsync(topic, validateOnly: false, ("cleanup.policy", "compact"), ("segment.ms", "600000"));
        var after = await DescribeAsync(topic);
        Assert.Equal(("compact", ConfigSource.DynamicTopicConfig), (after["cleanup.policy"].Value, after["cleanup.policy"].Source));
        Assert.Equal(("600000", ConfigSource.DynamicTopicConfig), (after["segment.ms"].Value, after["segment.ms"].Source));
        // The configs the request left out are gone: back to the defaults.
        Assert.Equal(("604800000", ConfigSource.DefaultConfig), (after["retention.ms"].Value, after["retention.ms"].Source));
        Assert.Equal(("1048588", ConfigSource.DefaultConfig), (after["max.message.bytes"].Value, after["max.message.bytes"].Source));

        var unknown = await Assert.ThrowsAsync<AlterConfigsException>(() => ReplaceAsync(topic, false, ("no.such.config", "1")));
        Assert.Equal(ErrorCode.InvalidConfig, unknown.Results.Single().Error.Code);
        var badValue = await Assert.ThrowsAsync<AlterConfigsException>(() => ReplaceAsync(topic, false, ("retention.ms", "soon")));
        Assert.Equal(ErrorCode.InvalidConfig, badValue.Results.Single().Error.Code);
        Assert.Equal("compact", (await DescribeAsync(topic))["cleanup.policy"].Value);
    }

    /// <summary>
    /// message.max.bytes (the default of every topic's max.message.bytes) set cluster-wide, then for
    /// this broker: each level shows in DescribeConfigs with its source, and produce follows it at once.
    /// </summary>
    [Fact]
    public async Task DynamicBrokerConfigsTakeEffectPerBrokerOverTheClusterDefault()
    {
        await Clients.CreateTopicAsync(_broker.BootstrapServers, "dyn", 1);
        using var producer = new ProducerBuilder<Null, byte[]>(Clients.ProducerConfig(_broker.BootstrapServers)).Build();
        var big = new byte[3000];
        Assert.Equal(PersistenceStatus.Persisted, (await producer.ProduceAsync("dyn", new Message<Null, byte[]> { Value = big })).Status);

        await SetClusterDefaultAsync("message.max.bytes", "1000", AlterConfigOpType.Set);
        var refused = await Assert.ThrowsAsync<ProduceException<Null, byte[]>>(() => producer.ProduceAsync("dyn", new Message<Null, byte[]> { Value = big }));
        Assert.Equal(ErrorCode.MsgSizeTooLarge, refused.Error.Code);
        var topic = (await DescribeAsync(new ConfigResource { Type = ResourceType.Topic, Name = "dyn" }))["max.message.bytes"];
        Assert.Equal(("1000", ConfigSource.DynamicDefaultBrokerConfig), (topic.Value, topic.Source));
        Assert.Equal(("1000", ConfigSource.DynamicDefaultBrokerConfig), (await DescribeClusterDefaultAsync())["message.max.bytes"]);

        await SetAsync(Broker1, ("message.max.bytes", "10000", AlterConfigOpType.Set));
        Assert.Equal(PersistenceStatus.Persisted, (await producer.ProduceAsync("dyn", new Message<Null, byte[]> { Value = big })).Status);
        var broker = (await DescribeAsync(Broker1))["message.max.bytes"];
        Assert.Equal(("10000", ConfigSource.DynamicBrokerConfig, false), (broker.Value, broker.Source, broker.IsReadOnly));
        Assert.Equal([ConfigSource.DynamicBrokerConfig, ConfigSource.DynamicDefaultBrokerConfig, ConfigSource.DefaultConfig],
            broker.Synonyms.Select(s => s.Source));
        topic = (await DescribeAsync(new ConfigResource { Type = ResourceType.Topic, Name = "dyn" }))["max.message.bytes"];
        Assert.Equal(("10000", ConfigSource.DynamicBrokerConfig), (topic.Value, topic.Source));

        // DELETE falls back level by level: the cluster default again, then the static setting.
        await SetAsync(Broker1, ("message.max.bytes", null, AlterConfigOpType.Delete));
        await Assert.ThrowsAsync<ProduceException<Null, byte[]>>(() => producer.ProduceAsync("dyn", new Message<Null, byte[]> { Value = big }));
        await SetClusterDefaultAsync("message.max.bytes", null, AlterConfigOpType.Delete);
        Assert.Equal(PersistenceStatus.Persisted, (await producer.ProduceAsync("dyn", new Message<Null, byte[]> { Value = big })).Status);
        var segment = (await DescribeAsync(Broker1))["log.segment.bytes"];
        Assert.Equal(("50000000", ConfigSource.StaticBrokerConfig), (segment.Value, segment.Source));
        Assert.Empty(await DescribeClusterDefaultAsync());
    }

    [Fact]
    public async Task ReadOnlyAndUnknownBrokerConfigsAreRefused()
    {
        var readOnly = await Assert.ThrowsAsync<IncrementalAlterConfigsException>(() => SetAsync(Broker1, ("num.partitions", "3", AlterConfigOpType.Set)));
        Assert.Equal(ErrorCode.InvalidRequest, readOnly.Results.Single().Error.Code);
        Assert.Contains("Cannot update these configs dynamically", readOnly.Results.Single().Error.Reason);
        var unknown = await Assert.ThrowsAsync<IncrementalAlterConfigsException>(() => SetAsync(Broker1, ("no.such.config", "1", AlterConfigOpType.Set)));
        Assert.Equal(ErrorCode.InvalidConfig, unknown.Results.Single().Error.Code);
        var unknownDefault = await Assert.ThrowsAsync<KafkaException>(() => SetClusterDefaultAsync("no.such.config", "1", AlterConfigOpType.Set));
        Assert.Equal(ErrorCode.InvalidConfig, unknownDefault.Error.Code);
        var badValue = await Assert.ThrowsAsync<IncrementalAlterConfigsException>(() => SetAsync(Broker1, ("log.retention.ms", "later", AlterConfigOpType.Set)));
        Assert.Equal(ErrorCode.InvalidConfig, badValue.Results.Single().Error.Code);
        var entry = (await DescribeAsync(Broker1))["num.partitions"];
        Assert.True(entry.IsReadOnly);
        Assert.Equal("1", entry.Value);
    }

    [Fact]
    public async Task AlterConfigsReplacesABrokersDynamicConfigsAndAppendWorksOnLists()
    {
        await SetAsync(Broker1, ("log.retention.ms", "7200000", AlterConfigOpType.Set), ("log.cleanup.policy", "compact", AlterConfigOpType.Append));
        var b = await DescribeAsync(Broker1);
        Assert.Equal(("7200000", ConfigSource.DynamicBrokerConfig), (b["log.retention.ms"].Value, b["log.retention.ms"].Source));
        Assert.Equal("delete,compact", b["log.cleanup.policy"].Value);

        await ReplaceAsync(Broker1, validateOnly: false, ("log.roll.ms", "3600000"));
        b = await DescribeAsync(Broker1);
        Assert.Equal(("3600000", ConfigSource.DynamicBrokerConfig), (b["log.roll.ms"].Value, b["log.roll.ms"].Source));
        Assert.NotEqual(ConfigSource.DynamicBrokerConfig, b["log.retention.ms"].Source);
        Assert.Equal("delete", b["log.cleanup.policy"].Value);

        var readOnly = await Assert.ThrowsAsync<AlterConfigsException>(() => ReplaceAsync(Broker1, false, ("log.dirs", "/tmp/elsewhere")));
        Assert.Equal(ErrorCode.InvalidRequest, readOnly.Results.Single().Error.Code);
        // Nothing of a refused request applies.
        Assert.Equal("3600000", (await DescribeAsync(Broker1))["log.roll.ms"].Value);
        await ReplaceAsync(Broker1, validateOnly: false);
    }

    /// <summary>Dynamic broker configs live in the metadata log: a restarted broker has them, and applies them.</summary>
    [Fact]
    public async Task DynamicBrokerConfigsSurviveARestart()
    {
        string dir = Path.Combine(Path.GetTempPath(), "freshet-dyn-" + Guid.NewGuid().ToString("N")[..8]);
        var props = new Dictionary<string, string> { ["log.dirs"] = dir, ["listeners"] = "PLAINTEXT://127.0.0.1:0" };
        try
        {
            await using (var first = await FreshetServer.StartEmbeddedAsync(props, _loggers))
            {
                using var admin = Clients.Admin(first.BootstrapServers);
                await admin.IncrementalAlterConfigsAsync(new Dictionary<ConfigResource, List<ConfigEntry>>
                {
                    [Broker1] = [new ConfigEntry { Name = "log.retention.ms", Value = "7200000", IncrementalOperation = AlterConfigOpType.Set }],
                });
            }
            await using var second = await FreshetServer.StartEmbeddedAsync(props, _loggers);
            await Clients.CreateTopicAsync(second.BootstrapServers, "after-restart", 1);
            using var admin2 = Clients.Admin(second.BootstrapServers);
            var broker = (await admin2.DescribeConfigsAsync([Broker1])).Single().Entries["log.retention.ms"];
            Assert.Equal(("7200000", ConfigSource.DynamicBrokerConfig), (broker.Value, broker.Source));
            var topic = (await admin2.DescribeConfigsAsync([new ConfigResource { Type = ResourceType.Topic, Name = "after-restart" }])).Single().Entries["retention.ms"];
            Assert.Equal(("7200000", ConfigSource.DynamicBrokerConfig), (topic.Value, topic.Source));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}
