using Freshet.Broker;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Server.Tests;

/// <summary>
/// What a registration makes ApiVersions advertise: the schemas' versions, without an unstable
/// latest one, and never above the highest version the handler implements.
/// </summary>
public class RequestDispatcherTests
{
    private static readonly ApiHandler Nothing = (_, _) => ValueTask.FromResult<IApiMessage?>(null);

    [Fact]
    public void ARegistrationCapsTheAdvertisedAndAcceptedVersions()
    {
        var d = new RequestDispatcher();
        d.Register(ApiKey.Produce, Nothing, maxVersion: 11);
        d.Register(ApiKey.Fetch, Nothing);

        Assert.Equal(12, ApiMessages.HighestVersion((short)ApiKey.Produce));
        Assert.Equal(11, d.MaxVersion((short)ApiKey.Produce));
        Assert.Equal((short)11, d.ImplementedMaxVersion((short)ApiKey.Produce));
        Assert.True(d.IsSupported((short)ApiKey.Produce, 11));
        Assert.False(d.IsSupported((short)ApiKey.Produce, 12));
        Assert.Equal(0, d.MinVersion((short)ApiKey.Produce));

        // Without a cap: every version of the schemas.
        Assert.Null(d.ImplementedMaxVersion((short)ApiKey.Fetch));
        Assert.Equal(ApiMessages.HighestVersion((short)ApiKey.Fetch), d.MaxVersion((short)ApiKey.Fetch));
    }

    [Fact]
    public void VersionsOnlyTheOverlaysDefineAreAdvertisedOnlyWhenTheRegistrationNamesThem()
    {
        // Kafka's schema files (../shared) have Produce 0-11 and EndTxn 0-5 with v5 unstable; the
        // generator's overlays add Produce v12 and release EndTxn v5.
        Assert.Equal(11, ApiMessages.KafkaSchemaHighestVersion((short)ApiKey.Produce));
        Assert.True(ApiMessages.KafkaSchemaLatestVersionUnstable((short)ApiKey.EndTxn));
        Assert.False(ApiMessages.IsLatestVersionUnstable((short)ApiKey.EndTxn));

        var d = new RequestDispatcher();
        d.Register(ApiKey.Produce, Nothing);
        d.Register(ApiKey.EndTxn, Nothing);
        Assert.Equal(11, d.MaxVersion((short)ApiKey.Produce));
        Assert.False(d.IsSupported((short)ApiKey.Produce, 12));
        Assert.Equal(4, d.MaxVersion((short)ApiKey.EndTxn));
        Assert.False(d.IsSupported((short)ApiKey.EndTxn, 5));

        var v2 = new RequestDispatcher();
        v2.Register(ApiKey.Produce, Nothing, maxVersion: 12);
        v2.Register(ApiKey.EndTxn, Nothing, maxVersion: 5);
        Assert.Equal(12, v2.MaxVersion((short)ApiKey.Produce));
        Assert.Equal(5, v2.MaxVersion((short)ApiKey.EndTxn));
        Assert.True(v2.IsSupported((short)ApiKey.EndTxn, 5));
    }

    [Fact]
    public void ACapAboveAnUnstableLatestVersionDoesNotRevealIt()
    {
        // The cap only lowers: the schemas' unstable latest version stays hidden without unstable.api.versions.enable.
        short key = ApiMessages.AllApiKeys.First(k => ApiMessages.IsLatestVersionUnstable(k) && ApiMessages.HighestVersion(k) > ApiMessages.LowestVersion(k));
        var d = new RequestDispatcher();
        d.Register((ApiKey)key, Nothing, maxVersion: ApiMessages.HighestVersion(key));
        Assert.Equal(ApiMessages.HighestVersion(key) - 1, d.MaxVersion(key));
        var unstable = new RequestDispatcher(enableUnstableVersions: true);
        unstable.Register((ApiKey)key, Nothing, maxVersion: ApiMessages.HighestVersion(key));
        Assert.Equal(ApiMessages.HighestVersion(key), unstable.MaxVersion(key));
    }

    [Fact]
    public void ACapOutsideTheSchemasVersionsIsAProgrammingError()
    {
        var d = new RequestDispatcher();
        Assert.Throws<ArgumentOutOfRangeException>(() => d.Register(ApiKey.Produce, Nothing, maxVersion: 13));
        Assert.Throws<ArgumentOutOfRangeException>(() => d.Register(ApiKey.Produce, Nothing, maxVersion: -1));
    }
}
