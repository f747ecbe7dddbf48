using Freshet.Protocol;
using Freshet.Protocol.Wire;
using Microsoft.Extensions.Logging;

namespace Freshet.Broker.Lifecycle;

/// <summary>Requests from a broker to the active controller (Kafka's NodeToControllerChannelManager).</summary>
public interface IControllerChannel
{
    /// <summary>
    /// Sends <paramref name="request"/> to the active controller and returns its response. When
    /// the controller is unknown, unreachable, or answers NOT_CONTROLLER (as read by
    /// <paramref name="topLevelError"/>), the request is sent again, to whichever controller is
    /// active then, after a backoff, until <paramref name="ct"/> is cancelled.
    /// </summary>
    Task<TResponse> SendAsync<TResponse>(IApiRequest<TResponse> request, short version, Func<TResponse, ErrorCode> topLevelError, CancellationToken ct)
        where TResponse : IApiMessage, new();
}

/// <summary>
/// The channel over TCP: the active controller's id comes from the quorum (the Raft leader), its
/// address from the controller listener the node client resolves; unreachable or changing
/// controllers are retried with retry.backoff.ms.
/// </summary>
public sealed partial class ControllerChannel(INodeClient nodes, Func<int?> activeController, ILogger<ControllerChannel> logger, int retryBackoffMs = 100)
    : IControllerChannel
{
    public async Task<TResponse> SendAsync<TResponse>(IApiRequest<TResponse> request, short version, Func<TResponse, ErrorCode> topLevelError, CancellationToken ct)
        where TResponse : IApiMessage, new()
    {
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            if (activeController() is int id)
            {
                try
                {
                    var response = await nodes.SendAsync(id, request, version, ct).ConfigureAwait(false);
                    if (topLevelError(response) != ErrorCode.NotController) return response;
                    LogNotController(logger, id, request.GetType().Name);
                }
                catch (NodeUnreachableException e)
                {
                    LogUnreachable(logger, id, e.Message);
                }
            }
            await Task.Delay(retryBackoffMs, ct).ConfigureAwait(false);
        }
    }

    [LoggerMessage(EventId = 3201, Level = LogLevel.Debug, Message = "Controller {Id} is no longer active; {Request} will go to the next one")]
    private static partial void LogNotController(ILogger logger, int id, string request);

    [LoggerMessage(EventId = 3202, Level = LogLevel.Information, Message = "Controller {Id} unreachable: {Reason}")]
    private static partial void LogUnreachable(ILogger logger, int id, string reason);
}
