using Freshet.Metadata.Image;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;
using Microsoft.Extensions.Logging;

namespace Freshet.Broker.Lifecycle;

/// <summary>Who this broker is, for its registration.</summary>
public sealed record BrokerIdentity(int NodeId, string ClusterId, IReadOnlyList<BrokerEndpoint> Endpoints, string? Rack);

/// <summary>
/// A broker's life as the controller sees it (Kafka's BrokerLifecycleManager): it registers
/// (with a new incarnation id per process), then heartbeats every broker.heartbeat.interval.ms
/// reporting how far it has replayed the metadata log; the controller unfences it once it has
/// caught up. On shutdown it heartbeats with WantShutDown until the controller has moved its
/// leaderships away (controlled shutdown), so clients see no failed request.
/// <para>
/// A registration or heartbeat that fails (the controller unreachable, an answer that cannot be read)
/// is logged and tried again at the next interval: the loop must outlive any one failure, or the
/// controller would fence a broker that still looks alive. <see cref="Running"/> ends only when the
/// manager is disposed (the node's owner treats any other end as fatal).
/// </para>
/// </summary>
public sealed partial class BrokerLifecycleManager(
    BrokerIdentity identity,
    IControllerChannel controller,
    Func<long> metadataOffset,
    int heartbeatIntervalMs,
    ILogger<BrokerLifecycleManager> logger,
    Func<IReadOnlyList<Uuid>>? offlineLogDirs = null) : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _unfenced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task? _loop;
    private long _epoch = -1;
    private int _disposed;
    private volatile bool _fenced = true;
    private volatile bool _shuttingDown;

    public Uuid IncarnationId { get; } = Uuid.Random();

    /// <summary>The broker epoch the controller gave at registration (-1 before).</summary>
    public long BrokerEpoch => Interlocked.Read(ref _epoch);

    public bool IsFenced => _fenced;

    /// <summary>Completes when the controller has unfenced this broker for the first time.</summary>
    public Task Unfenced => _unfenced.Task;

    public void Start() => _loop = Task.Run(() => RunAsync(_stop.Token));

    /// <summary>The registration and heartbeat loop (completed before <see cref="Start"/>); it ends when the manager stops.</summary>
    public Task Running => _loop ?? Task.CompletedTask;

    private async Task RunAsync(CancellationToken ct)
    {
        try
        {
            using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(heartbeatIntervalMs));
            bool registered = false;
            do
            {
                try
                {
                    if (!registered)
                    {
                        await RegisterAsync(ct).ConfigureAwait(false);
                        registered = true;
                    }
                    var r = await HeartbeatAsync(wantShutDown: false, ct).ConfigureAwait(false);
                    if ((ErrorCode)r.ErrorCode == ErrorCode.StaleBrokerEpoch)
                    {
                        // The controller no longer knows this registration (for example, it was fenced and replaced): register again.
                        LogStaleEpoch(logger, BrokerEpoch);
                        registered = false;
                        await RegisterAsync(ct).ConfigureAwait(false);
                        registered = true;
                    }
                }
#pragma warning disable CA1031 // one failed round is logged; the next tick registers or heartbeats again
                catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
#pragma warning restore CA1031
                {
                    LogHeartbeatFailed(logger, registered ? "heartbeat" : "registration", e);
                }
            }
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false));
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
    }

    private async Task RegisterAsync(CancellationToken ct)
    {
        while (true)
        {
            var response = await controller.SendAsync<BrokerRegistrationResponse>(new BrokerRegistrationRequest
            {
                BrokerId = identity.NodeId,
                ClusterId = identity.ClusterId,
                IncarnationId = IncarnationId,
                Listeners = [.. identity.Endpoints.Select(e => new BrokerRegistrationRequest.Listener
                {
                    Name = e.Name, Host = e.Host, Port = (ushort)e.Port, SecurityProtocol = e.SecurityProtocol,
                })],
                Features = [new BrokerRegistrationRequest.Feature { Name = "metadata.version", MinSupportedVersion = 1, MaxSupportedVersion = 21 }],
                Rack = identity.Rack,
                PreviousBrokerEpoch = BrokerEpoch,
            }, 4, r => (ErrorCode)r.ErrorCode, ct).ConfigureAwait(false);
            var error = (ErrorCode)response.ErrorCode;
            if (error == ErrorCode.None)
            {
                Interlocked.Exchange(ref _epoch, response.BrokerEpoch);
                LogRegistered(logger, identity.NodeId, response.BrokerEpoch);
                return;
            }
            // DUPLICATE_BROKER_REGISTRATION: the previous process's session has not expired yet. Wait and retry.
            LogRegistrationRefused(logger, error.KafkaName());
            await Task.Delay(heartbeatIntervalMs, ct).ConfigureAwait(false);
        }
    }

    private async Task<BrokerHeartbeatResponse> HeartbeatAsync(bool wantShutDown, CancellationToken ct)
    {
        var r = await controller.SendAsync<BrokerHeartbeatResponse>(new BrokerHeartbeatRequest
        {
            BrokerId = identity.NodeId,
            BrokerEpoch = BrokerEpoch,
            CurrentMetadataOffset = metadataOffset(),
            WantFence = false,
            WantShutDown = wantShutDown,
            OfflineLogDirs = [.. offlineLogDirs?.Invoke() ?? []],
        }, 1, r => (ErrorCode)r.ErrorCode, ct).ConfigureAwait(false);
        if ((ErrorCode)r.ErrorCode == ErrorCode.None)
        {
            bool was = _fenced;
            _fenced = r.IsFenced;
            if (was && !r.IsFenced)
            {
                LogUnfenced(logger, identity.NodeId);
                _unfenced.TrySetResult();
            }
        }
        return r;
    }

    /// <summary>
    /// Controlled shutdown: heartbeats with WantShutDown until the controller answers
    /// ShouldShutDown (this broker leads nothing any more) or <paramref name="timeout"/> passes.
    /// Returns true when the controller agreed.
    /// </summary>
    public async Task<bool> ControlledShutdownAsync(TimeSpan timeout)
    {
        if (_shuttingDown || BrokerEpoch < 0) return false;
        _shuttingDown = true;
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is not null) await _loop.ConfigureAwait(false);
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                var r = await HeartbeatAsync(wantShutDown: true, cts.Token).ConfigureAwait(false);
                if (r.ShouldShutDown) return true;
                await Task.Delay(Math.Min(heartbeatIntervalMs, 200), cts.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            LogShutdownTimedOut(logger, (long)timeout.TotalMilliseconds);
            return false;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is not null) await _loop.ConfigureAwait(false);
        _stop.Dispose();
    }

    [LoggerMessage(EventId = 3211, Level = LogLevel.Information, Message = "Broker {NodeId} registered with the controller, broker epoch {Epoch}")]
    private static partial void LogRegistered(ILogger logger, int nodeId, long epoch);

    [LoggerMessage(EventId = 3212, Level = LogLevel.Warning, Message = "Broker registration refused: {Error}; retrying")]
    private static partial void LogRegistrationRefused(ILogger logger, string error);

    [LoggerMessage(EventId = 3213, Level = LogLevel.Information, Message = "Broker {NodeId} unfenced: serving")]
    private static partial void LogUnfenced(ILogger logger, int nodeId);

    [LoggerMessage(EventId = 3214, Level = LogLevel.Warning, Message = "Broker epoch {Epoch} is stale; registering again")]
    private static partial void LogStaleEpoch(ILogger logger, long epoch);

    [LoggerMessage(EventId = 3216, Level = LogLevel.Error, Message = "Broker {What} failed; trying again at the next heartbeat interval")]
    private static partial void LogHeartbeatFailed(ILogger logger, string what, Exception e);

    [LoggerMessage(EventId = 3215, Level = LogLevel.Warning, Message = "Controlled shutdown not confirmed within {Ms} ms; stopping anyway")]
    private static partial void LogShutdownTimedOut(ILogger logger, long ms);
}
