using Freshet.Protocol;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Lifecycle;

/// <summary>
/// The controller channel of a node that is its own controller: requests go straight to the
/// controller listener's handlers in this process (the same code a remote broker's requests
/// reach over TCP), encoded and decoded so that both paths see identical messages.
/// </summary>
public sealed class LocalControllerChannel(RequestDispatcher controllerApis, int retryBackoffMs = 100) : IControllerChannel
{
    private int _correlation;

    public async Task<TResponse> SendAsync<TResponse>(IApiRequest<TResponse> request, short version, Func<TResponse, ErrorCode> topLevelError, CancellationToken ct)
        where TResponse : IApiMessage, new()
    {
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            var context = new RequestContext
            {
                ApiKey = request.ApiKey,
                ApiVersion = version,
                CorrelationId = Interlocked.Increment(ref _correlation),
                ClientId = "local-broker",
                ConnectionId = "local",
                ListenerName = "local",
                ConnectionClosed = ct,
            };
            var response = await controllerApis.DispatchAsync(context, request).ConfigureAwait(false)
                ?? throw new InvalidOperationException($"{request.GetType().Name} got no response");
            var typed = MessageExtensions.Parse<TResponse>(response.ToBytes(version), version);
            if (topLevelError(typed) != ErrorCode.NotController) return typed;
            // This node's controller is not the active one (yet): a remote channel is needed then, or a wait.
            await Task.Delay(retryBackoffMs, ct).ConfigureAwait(false);
        }
    }
}
