using Confluent.Kafka;
using Freshet.Server;

namespace Freshet.Cli;

/// <summary>
/// The connection options every client command takes: --bootstrap-server and --command-config
/// (a properties file of extra librdkafka settings, e.g. security.protocol, sasl.*). Precedence:
/// the command's own defaults, then the file, then options given on the command line.
/// </summary>
public sealed class ClientSettings
{
    public const string DefaultBootstrap = "localhost:9092";

    public const string CommonUsage = """
        connection:
          --bootstrap-server HOST:PORT[,...]  brokers to contact first (default localhost:9092)
          --command-config FILE               extra client properties, one key=value per line
                                              (librdkafka names, e.g. security.protocol=SASL_SSL)
          --help                              this text
        """;

    private readonly HashSet<ErrorCode> _reported = [];
    private readonly Lock _gate = new();

    private ClientSettings(string? bootstrap, IReadOnlyDictionary<string, string> properties)
    {
        ExplicitBootstrap = bootstrap;
        Properties = properties;
    }

    public string? ExplicitBootstrap { get; }
    public IReadOnlyDictionary<string, string> Properties { get; }

    /// <summary>What the client will contact first, for messages.</summary>
    public string Bootstrap => ExplicitBootstrap ?? Properties.GetValueOrDefault("bootstrap.servers") ?? DefaultBootstrap;

    /// <summary>librdkafka's own logging asked for in the command config: pass its log lines through.</summary>
    public bool Verbose => Properties.ContainsKey("debug");

    public static ClientSettings Read(CommandLine cl)
    {
        string? bootstrap = cl.Get("bootstrap-server");
        if (bootstrap is not null && string.IsNullOrWhiteSpace(bootstrap)) throw new UsageException("--bootstrap-server must not be empty");
        string? file = cl.Get("command-config");
        IReadOnlyDictionary<string, string> props = new Dictionary<string, string>(StringComparer.Ordinal);
        if (file is not null)
        {
            if (!File.Exists(file)) throw new UsageException($"command config file not found: {file}");
            props = PropertiesFile.Parse(File.ReadAllText(file));
        }
        return new ClientSettings(bootstrap, props);
    }

    /// <summary>Loads the bundled librdkafka, then layers the file's properties and the explicit bootstrap over <paramref name="config"/>.</summary>
    public T Apply<T>(T config) where T : ClientConfig
    {
        KafkaClientLibrary.EnsureLoaded();
        config.BootstrapServers ??= DefaultBootstrap;
        foreach (var (k, v) in Properties) config.Set(k, v);
        if (ExplicitBootstrap is not null) config.BootstrapServers = ExplicitBootstrap;
        return config;
    }

    /// <summary>
    /// librdkafka logs every failed connection attempt; the error callback already reports those
    /// once, so its log lines are shown only when debugging was asked for.
    /// </summary>
    public void OnLog(LogMessage m)
    {
        if (Verbose || m.Level <= SyslogLevel.Critical)
            Console.Error.WriteLine($"librdkafka {m.Level.ToString().ToLowerInvariant()} [{m.Facility}] {m.Message}");
    }

    /// <summary>
    /// Client-level errors (a broker unreachable, all brokers down) are mostly transient and the
    /// client retries; each kind is reported once so a stuck command says why.
    /// </summary>
    public void OnError(Error e)
    {
        // Keyed by code: the text carries timings ("after 0ms") that differ on every retry.
        lock (_gate)
            if (!_reported.Add(e.Code)) return;
        string text = KafkaErrors.Describe(e);
        Console.Error.WriteLine(e.IsFatal ? $"freshet: error: {text}" : $"freshet: warning: {text}");
    }
}
