using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Broker;

/// <summary>Handles one request; returns the response, or null when none is sent (acks=0 produce).</summary>
public delegate ValueTask<IApiMessage?> ApiHandler(RequestContext context, IApiMessage request);

/// <summary>
/// Maps API keys to handlers. What is registered here is what ApiVersions advertises, at every
/// version the schemas list as valid (an unstable latest version only when asked for, as Kafka's
/// unstable.api.versions.enable does); anything else is refused before a handler sees it.
/// </summary>
public sealed class RequestDispatcher(bool enableUnstableVersions = false)
{
    private readonly ApiHandler?[] _handlers = new ApiHandler?[short.MaxValue + 1];
    private readonly SortedSet<short> _keys = [];

    public void Register(ApiKey key, ApiHandler handler)
    {
        _handlers[(short)key] = handler;
        _keys.Add((short)key);
    }

    public IReadOnlyCollection<short> ApiKeys => _keys;

    public short MinVersion(short apiKey) => ApiMessages.LowestVersion(apiKey);

    public short MaxVersion(short apiKey)
    {
        short max = ApiMessages.HighestVersion(apiKey);
        return !enableUnstableVersions && ApiMessages.IsLatestVersionUnstable(apiKey) && max > ApiMessages.LowestVersion(apiKey) ? (short)(max - 1) : max;
    }

    public bool IsSupported(short apiKey, short version) =>
        apiKey >= 0 && _handlers[apiKey] is not null && version >= MinVersion(apiKey) && version <= MaxVersion(apiKey);

    public bool IsApiSupported(short apiKey) => apiKey >= 0 && _handlers[apiKey] is not null;

    public ValueTask<IApiMessage?> DispatchAsync(RequestContext context, IApiMessage request)
    {
        var handler = _handlers[context.ApiKey] ?? throw new InvalidOperationException($"no handler for API {context.ApiKey}");
        return handler(context, request);
    }
}
