using System.Net;

namespace Freshet.Broker;

/// <summary>What a handler knows about the request besides its body: header fields and the connection.</summary>
public sealed class RequestContext
{
    public required short ApiKey { get; init; }
    public required short ApiVersion { get; init; }
    public required int CorrelationId { get; init; }
    public string? ClientId { get; init; }

    /// <summary>A connection id unique within this broker's life (for logs).</summary>
    public required string ConnectionId { get; init; }

    public EndPoint? ClientAddress { get; init; }

    /// <summary>The listener the request came in on (PLAINTEXT, ...).</summary>
    public required string ListenerName { get; init; }

    /// <summary>Cancelled when the connection closes: long polls stop waiting.</summary>
    public CancellationToken ConnectionClosed { get; init; }
}

/// <summary>
/// Thrown by a handler when Kafka's answer is to close the connection instead of responding
/// (for example an acks=0 produce that failed: the client has no response to read the error from).
/// </summary>
public sealed class CloseConnectionException(string reason) : Exception(reason);
