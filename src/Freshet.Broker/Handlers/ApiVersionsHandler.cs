using System.Text.RegularExpressions;
using Freshet.Metadata.Controller;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Handlers;

/// <summary>ApiVersions: what this broker serves, and the finalized features (KIP-584).</summary>
public sealed partial class ApiVersionsHandler(RequestDispatcher dispatcher, MetadataCache metadata)
{
    public void Register() => dispatcher.Register(ApiKey.ApiVersions, (c, r) => new(Handle(c, (ApiVersionsRequest)r)));

    [GeneratedRegex("^[a-zA-Z0-9](?:[a-zA-Z0-9\\-.]*[a-zA-Z0-9])?$")]
    private static partial Regex SoftwareNamePattern();

    public ApiVersionsResponse Handle(RequestContext context, ApiVersionsRequest request)
    {
        var response = Build(dispatcher);
        if (context.ApiVersion >= 3
            && (!SoftwareNamePattern().IsMatch(request.ClientSoftwareName) || !SoftwareNamePattern().IsMatch(request.ClientSoftwareVersion)))
        {
            response.ErrorCode = (short)ErrorCode.InvalidRequest;
            return response;
        }
        var image = metadata.Image;
        response.SupportedFeatures.Add(new ApiVersionsResponse.SupportedFeatureKey
        {
            Name = "metadata.version", MinVersion = 1, MaxVersion = QuorumController.BootstrapMetadataVersion,
        });
        response.FinalizedFeaturesEpoch = image.Offset;
        foreach (var (name, level) in image.Features)
            response.FinalizedFeatures.Add(new ApiVersionsResponse.FinalizedFeatureKey { Name = name, MinVersionLevel = level, MaxVersionLevel = level });
        return response;
    }

    /// <summary>The advertised API list (also sent, at version 0, with UNSUPPORTED_VERSION to a client asking for a newer ApiVersions).</summary>
    public static ApiVersionsResponse Build(RequestDispatcher dispatcher)
    {
        var response = new ApiVersionsResponse();
        foreach (short key in dispatcher.ApiKeys)
            response.ApiKeys.Add(new ApiVersionsResponse.ApiVersion { ApiKey = key, MinVersion = dispatcher.MinVersion(key), MaxVersion = dispatcher.MaxVersion(key) });
        return response;
    }

    public static byte[] UnsupportedVersionResponse(RequestDispatcher dispatcher)
    {
        var r = Build(dispatcher);
        r.ErrorCode = (short)ErrorCode.UnsupportedVersion;
        return r.ToBytes(0);
    }
}
