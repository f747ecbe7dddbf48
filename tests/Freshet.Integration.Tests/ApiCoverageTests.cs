using System.Buffers.Binary;
using Freshet.Broker.Handlers;
using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;
using Freshet.Server;
using Xunit.Abstractions;
using ErrorCode = Freshet.Protocol.ErrorCode;

namespace Freshet.Integration.Tests;

/// <summary>ApiVersions advertises exactly what is served: every advertised API answers at every advertised version.</summary>
public sealed class ApiCoverageTests(ITestOutputHelper output)
{
    private static readonly ApiKey[] Served =
    [
        ApiKey.Produce, ApiKey.Fetch, ApiKey.ListOffsets, ApiKey.Metadata, ApiKey.ApiVersions, ApiKey.CreateTopics,
        ApiKey.DeleteTopics, ApiKey.DeleteRecords, ApiKey.InitProducerId, ApiKey.DescribeConfigs, ApiKey.CreatePartitions,
        ApiKey.AlterConfigs, ApiKey.IncrementalAlterConfigs, ApiKey.DescribeCluster, ApiKey.DescribeLogDirs,
        ApiKey.ElectLeaders, ApiKey.AlterPartitionReassignments, ApiKey.ListPartitionReassignments, ApiKey.DescribeQuorum,
        ApiKey.FindCoordinator, ApiKey.JoinGroup, ApiKey.SyncGroup, ApiKey.Heartbeat, ApiKey.LeaveGroup, ApiKey.OffsetCommit, ApiKey.OffsetFetch,
        ApiKey.ListGroups, ApiKey.DescribeGroups, ApiKey.DeleteGroups, ApiKey.OffsetDelete,
        ApiKey.ConsumerGroupHeartbeat, ApiKey.ConsumerGroupDescribe, ApiKey.OffsetForLeaderEpoch,
    ];

    [Fact]
    public async Task EveryAdvertisedVersionOfEveryServedApiIsAnswered()
    {
        using var loggers = TestOutputLoggerProvider.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(null, loggers);
        await using var c = await RawKafkaClient.ConnectAsync(broker.BootstrapServers);
        var versions = await c.RequestAsync<ApiVersionsResponse>(new ApiVersionsRequest { ClientSoftwareName = "coverage", ClientSoftwareVersion = "1" }, 3);
        Assert.Equal(Served.Select(k => (short)k).Order(), versions.ApiKeys.Select(k => k.ApiKey).Order());
        int answered = 0;
        foreach (var api in versions.ApiKeys)
        {
            // Every version Kafka's schema files list as valid, deprecated ones included; an unstable
            // latest version only with unstable.api.versions.enable (off here), or where Kafka has
            // since released it (ConsumerGroupHeartbeat v1); none that only the generator's overlays
            // add unless the handler implements it (Produce v12 means transactions v2: not yet).
            Assert.Equal(ApiMessages.LowestVersion(api.ApiKey), api.MinVersion);
            short highest = ApiMessages.KafkaSchemaHighestVersion(api.ApiKey);
            bool hidden = ApiMessages.KafkaSchemaLatestVersionUnstable(api.ApiKey) && api.ApiKey != (short)ApiKey.ConsumerGroupHeartbeat;
            if (hidden && highest > api.MinVersion) highest--;
            if (api.ApiKey == (short)ApiKey.Produce) Assert.Equal(ProduceHandler.MaxVersion, highest);
            Assert.Equal(highest, api.MaxVersion);
            for (short v = api.MinVersion; v <= api.MaxVersion; v++)
            {
                var request = ApiMessages.CreateRequest(api.ApiKey)!;
                if (request is ProduceRequest p) p.Acks = 1; // an empty acks=0 produce has no answer by design
                int id = await c.SendAsync(request, v);
                var (got, body) = await c.ReadFrameAsync(api.ApiKey, v);
                Assert.Equal(id, got);
                var response = ApiMessages.CreateResponse(api.ApiKey)!;
                var r = new ProtocolReader(body);
                response.Read(ref r, v); // decodes at the version asked for
                answered++;
            }
        }
        output.WriteLine($"{answered} API versions answered");
        Assert.True(answered > 90);
    }

    /// <summary>
    /// The schemas have Kafka 4.0's Produce v12 (through the generator's overlay), but v12 means
    /// transactions v2 (KIP-890): until Freshet implements it, ApiVersions stops at v11, a v12
    /// request is refused like any unadvertised version, and the transaction.version feature is
    /// neither supported nor finalized (a client would take it as leave to skip AddPartitionsToTxn).
    /// </summary>
    [Fact]
    public async Task ProduceStopsAtVersion11AndTransactionVersionIsNotAdvertisedUntilTransactionsV2()
    {
        await using var broker = await FreshetServer.StartEmbeddedAsync();
        await using var c = await RawKafkaClient.ConnectAsync(broker.BootstrapServers);
        var versions = await c.RequestAsync<ApiVersionsResponse>(new ApiVersionsRequest { ClientSoftwareName = "coverage", ClientSoftwareVersion = "1" }, 3);

        Assert.Equal(12, ApiMessages.HighestVersion((short)ApiKey.Produce));
        Assert.Equal(11, versions.ApiKeys.Single(k => k.ApiKey == (short)ApiKey.Produce).MaxVersion);
        Assert.DoesNotContain(versions.SupportedFeatures, f => f.Name == "transaction.version");
        Assert.DoesNotContain(versions.FinalizedFeatures, f => f.Name == "transaction.version");
        // EndTxn v5 is no longer marked unstable in the generated registry; EndTxn is not served yet.
        Assert.False(ApiMessages.IsLatestVersionUnstable((short)ApiKey.EndTxn));
        Assert.DoesNotContain(versions.ApiKeys, k => k.ApiKey == (short)ApiKey.EndTxn);

        await c.SendAsync(new ProduceRequest { Acks = 1, TimeoutMs = 1000 }, 12);
        Assert.True(await c.IsClosedByPeerAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task AnApiWithASchemaButNoHandlerIsRefusedByClosingTheConnection()
    {
        await using var broker = await FreshetServer.StartEmbeddedAsync();
        await using var c = await RawKafkaClient.ConnectAsync(broker.BootstrapServers);
        // DescribeAcls is defined by the schemas but not served (there is no authorizer yet).
        await c.SendAsync(new DescribeAclsRequest(), 1);
        Assert.True(await c.IsClosedByPeerAsync(TimeSpan.FromSeconds(10)));
    }
}
