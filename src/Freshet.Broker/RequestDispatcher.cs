using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Broker;

/// <summary>Handles one request; returns the response, or null when none is sent (acks=0 produce).</summary>
public delegate ValueTask<IApiMessage?> ApiHandler(RequestContext context, IApiMessage request);

/// <summary>
/// Maps API keys to handlers. What is registered here is what ApiVersions advertises, at every
/// version the schemas list as valid (an unstable latest version only when asked for, as Kafka's
/// unstable.api.versions.enable does); anything else is refused before a handler sees it.
/// The versions Freshet's generator overlays add to Kafka's schema files (a newer Kafka's, e.g.
/// Produce v12, or EndTxn v5 released) are advertised only when the registration names them with
/// maxVersion: a schema gaining a version never raises what the broker advertises by itself.
/// </summary>
public sealed class RequestDispatcher(bool enableUnstableVersions = false)
{
    private readonly ApiHandler?[] _handlers = new ApiHandler?[short.MaxValue + 1];
    private readonly bool[] _ordered = new bool[short.MaxValue + 1];
    private readonly bool[] _latestReleased = new bool[short.MaxValue + 1];
    private readonly short[] _implementedMax = new short[short.MaxValue + 1];
    private readonly SortedSet<short> _keys = [];

    /// <param name="ordered">
    /// The connection reads no further request until this one has completed (Kafka's behaviour
    /// for every request). For APIs whose effects later requests may depend on and whose handlers
    /// can wait on the controller or the disk: topic and config administration, producer ids,
    /// metadata with auto-creation. Others (produce, fetch) pipeline: their order-sensitive part
    /// runs before the handler first awaits.
    /// </param>
    /// <param name="latestReleased">
    /// The schemas' latest version is marked unstable, but Kafka has since released it unchanged
    /// and the handler implements all of it: advertise it without unstable.api.versions.enable.
    /// </param>
    /// <param name="maxVersion">
    /// The highest version the handler implements: nothing above it is advertised or accepted, and
    /// versions up to it that only the overlays define are. Null: the versions of Kafka's schema
    /// files alone, without what the overlays add.
    /// </param>
    public void Register(ApiKey key, ApiHandler handler, bool ordered = false, bool latestReleased = false, short? maxVersion = null)
    {
        if (maxVersion is short cap && (cap < ApiMessages.LowestVersion((short)key) || cap > ApiMessages.HighestVersion((short)key)))
            throw new ArgumentOutOfRangeException(nameof(maxVersion), cap, $"{key} has versions {ApiMessages.LowestVersion((short)key)}-{ApiMessages.HighestVersion((short)key)}");
        _handlers[(short)key] = handler;
        _ordered[(short)key] = ordered;
        _latestReleased[(short)key] = latestReleased;
        _implementedMax[(short)key] = maxVersion ?? short.MaxValue;
        _keys.Add((short)key);
    }

    /// <summary>True when the connection must wait for this API's requests to complete before reading the next one.</summary>
    public bool IsOrdered(short apiKey) => apiKey >= 0 && _ordered[apiKey];

    public IReadOnlyCollection<short> ApiKeys => _keys;

    public short MinVersion(short apiKey) => ApiMessages.LowestVersion(apiKey);

    public short MaxVersion(short apiKey)
    {
        // Without a cap the registration has not looked at the overlays' versions: Kafka's schema
        // files decide (EndTxn then stops at v4, its v5 being unstable there).
        bool capped = ImplementedMaxVersion(apiKey) is not null;
        short max = capped ? ApiMessages.HighestVersion(apiKey) : ApiMessages.KafkaSchemaHighestVersion(apiKey);
        bool unstable = capped ? ApiMessages.IsLatestVersionUnstable(apiKey) : ApiMessages.KafkaSchemaLatestVersionUnstable(apiKey);
        bool hidden = !enableUnstableVersions && !(apiKey >= 0 && _latestReleased[apiKey]) && unstable;
        if (hidden && max > ApiMessages.LowestVersion(apiKey)) max--;
        return capped ? Math.Min(max, _implementedMax[apiKey]) : max;
    }

    /// <summary>The highest version the registration of an API implements (see Register), or null when it takes every version of the schemas.</summary>
    public short? ImplementedMaxVersion(short apiKey) =>
        apiKey >= 0 && _handlers[apiKey] is not null && _implementedMax[apiKey] != short.MaxValue ? _implementedMax[apiKey] : null;

    public bool IsSupported(short apiKey, short version) =>
        apiKey >= 0 && _handlers[apiKey] is not null && version >= MinVersion(apiKey) && version <= MaxVersion(apiKey);

    /// <summary>True when the latest version is advertised although the schemas mark it unstable (see Register).</summary>
    public bool IsLatestReleased(short apiKey) => apiKey >= 0 && _latestReleased[apiKey];

    public bool IsApiSupported(short apiKey) => apiKey >= 0 && _handlers[apiKey] is not null;

    /// <summary>The handler registered for an API, or null.</summary>
    public ApiHandler? HandlerOf(ApiKey key) => _handlers[(short)key];

    public ValueTask<IApiMessage?> DispatchAsync(RequestContext context, IApiMessage request)
    {
        var handler = _handlers[context.ApiKey] ?? throw new InvalidOperationException($"no handler for API {context.ApiKey}");
        return handler(context, request);
    }
}
