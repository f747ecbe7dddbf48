using System.Globalization;
using Freshet.Network;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Cli;

/// <summary>
/// Admin requests over bare Kafka-protocol connections, for the APIs Confluent.Kafka's admin
/// client has no call for (DescribeQuorum, AlterPartitionReassignments, ListPartitionReassignments).
/// Every request goes to one bootstrap broker, the next one when it cannot be reached: admin
/// requests are forwarded to the active controller by whichever broker receives them. PLAINTEXT
/// only; the versions sent are fixed (the ones Kafka 3.x and 4.x brokers and Freshet serve).
/// </summary>
public sealed class BareAdminClient : IAsyncDisposable
{
    private readonly string[] _endpoints;
    private readonly NodeClient _nodes;
    private readonly TimeSpan _timeout;
    private int _current;

    private BareAdminClient(string bootstrap, TimeSpan timeout)
    {
        Bootstrap = bootstrap;
        _timeout = timeout;
        _endpoints = bootstrap.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        foreach (var e in _endpoints)
        {
            int colon = e.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(e[(colon + 1)..], NumberStyles.Integer, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535)
                throw new UsageException($"--bootstrap-server expects HOST:PORT[,...], got '{e}'");
        }
        if (_endpoints.Length == 0) throw new UsageException("--bootstrap-server must not be empty");
        _nodes = new NodeClient(id =>
        {
            if (id < 0 || id >= _endpoints.Length) return null;
            int colon = _endpoints[id].LastIndexOf(':');
            return (_endpoints[id][..colon].Trim('[', ']'), int.Parse(_endpoints[id][(colon + 1)..], CultureInfo.InvariantCulture));
        }, new NodeClientOptions { ClientId = "freshet-cli", RequestTimeoutMs = (int)Math.Min(int.MaxValue, timeout.TotalMilliseconds) },
            NullLogger<NodeClient>.Instance);
    }

    /// <summary>What was asked for with --bootstrap-server (or the command config, or the default).</summary>
    public string Bootstrap { get; }

    /// <summary>
    /// A client for the settings' bootstrap servers. The connections are bare TCP: a command config
    /// asking for TLS or SASL is refused rather than ignored.
    /// </summary>
    public static BareAdminClient Create(ClientSettings settings, TimeSpan timeout)
    {
        foreach (var key in settings.Properties.Keys)
        {
            bool plaintext = key == "security.protocol" && string.Equals(settings.Properties[key], "plaintext", StringComparison.OrdinalIgnoreCase);
            if (key.StartsWith("sasl.", StringComparison.Ordinal) || key.StartsWith("ssl.", StringComparison.Ordinal) || key == "security.protocol" && !plaintext)
                throw new UsageException($"this command talks PLAINTEXT only; the command config's '{key}' is not supported here");
        }
        return new BareAdminClient(settings.Bootstrap, timeout);
    }

    /// <summary>
    /// Sends <paramref name="request"/> to the first bootstrap broker that answers. A broker that
    /// cannot be reached (refused, dropped, timed out) is skipped; when none answers the command fails.
    /// </summary>
    public async Task<T> SendAsync<T>(IApiRequest<T> request, short version) where T : IApiMessage, new()
    {
        string? lastError = null;
        for (int tried = 0; tried < _endpoints.Length; tried++)
        {
            int node = (_current + tried) % _endpoints.Length;
            using var cts = new CancellationTokenSource(_timeout);
            try
            {
                var response = await _nodes.SendAsync(node, request, version, cts.Token).ConfigureAwait(false);
                _current = node;
                return response;
            }
            catch (Exception e) when (e is IOException or OperationCanceledException)
            {
                lastError = e is OperationCanceledException ? $"no answer from {_endpoints[node]} within {_timeout.TotalMilliseconds:F0} ms" : e.Message;
            }
        }
        throw new CommandFailedException($"no broker reachable at {Bootstrap} ({lastError})");
    }

    /// <summary>Metadata v12 of the given topics (all topics when null), never creating one.</summary>
    public Task<MetadataResponse> MetadataAsync(IEnumerable<string>? topics) =>
        SendAsync<MetadataResponse>(new MetadataRequest
        {
            Topics = topics?.Distinct(StringComparer.Ordinal).Select(t => new MetadataRequest.MetadataRequestTopic { Name = t }).ToList(),
            AllowAutoTopicCreation = false,
        }, 12);

    public ValueTask DisposeAsync() => _nodes.DisposeAsync();
}
