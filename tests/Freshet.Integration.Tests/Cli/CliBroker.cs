using Freshet.Server;

namespace Freshet.Integration.Tests.Cli;

/// <summary>
/// One embedded broker shared by the tests of a class: the CLI tests only create uniquely named
/// topics, so they do not disturb each other, and starting a broker per test would cost more
/// than the tests themselves.
/// </summary>
public sealed class CliBroker : IAsyncLifetime
{
    private FreshetServer? _server;

    public string Bootstrap => _server?.BootstrapServers ?? throw new InvalidOperationException("broker not started");

    public async Task InitializeAsync() => _server = await FreshetServer.StartEmbeddedAsync();

    public async Task DisposeAsync()
    {
        if (_server is not null) await _server.DisposeAsync();
    }

    /// <summary>A topic name no other test uses.</summary>
    public static string NewTopic(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..8]}";
}
