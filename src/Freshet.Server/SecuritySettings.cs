namespace Freshet.Server;

/// <summary>
/// Fail closed on security. Freshet has no TLS, SASL or ACLs yet: a node configured for any of them
/// would serve its listeners in plain text, to anyone, while its operator believes them secured.
/// So such a configuration stops start-up with a message naming what asked for security, instead
/// of being warned about as an unknown key and ignored (what a typo or a thread-pool setting gets).
/// </summary>
internal static class SecuritySettings
{
    public const string NotSupported = "Freshet does not support TLS, SASL or ACLs yet";

    /// <summary>Kafka's security protocols (SecurityProtocol); only PLAINTEXT can be served.</summary>
    public static readonly IReadOnlyList<string> Protocols = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

    /// <summary>
    /// Kafka's broker settings that configure security, by exact name or by prefix (ending in a dot), with
    /// what they protect, and the value (if any) that asks for nothing and is accepted. The same names
    /// under <c>listener.name.&lt;listener&gt;.</c> (and <c>listener.name.&lt;listener&gt;.&lt;mechanism&gt;.</c>
    /// for SASL) are refused too. ZooKeeper's TLS and ACL settings (zookeeper.ssl.*, zookeeper.set.acl)
    /// are not here: Freshet, like Kafka in KRaft mode, opens no ZooKeeper connection for them to
    /// protect, so they stay unknown keys with a warning.
    /// </summary>
    private readonly record struct Entry(string Name, string Protects, string? Accepted);

    private static readonly Entry[] Table =
    [
        new("ssl.", "TLS: encryption and certificate authentication of connections", null),
        new("sasl.", "SASL authentication", null),
        new("security.inter.broker.protocol", "the security protocol between brokers", "PLAINTEXT"),
        new("security.protocol", "a client's security protocol, which on a broker suggests secured listeners", "PLAINTEXT"),
        new("sasl.mechanism.inter.broker.protocol", "SASL between brokers", null), // under sasl. already; named for the message
        new("sasl.mechanism.controller.protocol", "SASL to the controllers", null),
        new("authorizer.class.name", "ACL authorization of every request", ""),
        new("super.users", "ACL authorization (principals allowed everything)", null),
        new("allow.everyone.if.no.acl.found", "ACL authorization (resources without ACLs)", null),
        new("principal.builder.class", "the principals authentication yields, that ACLs and quotas name", null),
        new("connections.max.reauth.ms", "SASL re-authentication of long-lived connections", null),
        new("security.providers", "the providers of TLS and SASL algorithms", null),
        new("delegation.token.", "delegation-token authentication", null),
        new("password.encoder.", "encryption of passwords stored in dynamic configuration", null),
    ];

    private const string PerListener = "listener.name.";

    /// <summary>Whether Freshet knows <paramref name="key"/> as a security setting (accepted or refused): it is no unknown key.</summary>
    public static bool IsSecurityKey(string key) => Find(key) is not null;

    /// <summary>
    /// The settings among <paramref name="properties"/> that ask for security Freshet cannot give, each
    /// with what it protects; empty when there are none.
    /// </summary>
    public static IReadOnlyList<(string Key, string Protects)> Refused(IReadOnlyDictionary<string, string> properties)
    {
        var refused = new List<(string, string)>();
        foreach (var (key, value) in properties.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            if (Find(key) is not { } entry) continue;
            if (entry.Accepted is { } ok && value.Trim().Equals(ok, StringComparison.OrdinalIgnoreCase)) continue;
            refused.Add((key, entry.Protects));
        }
        return refused;
    }

    private static Entry? Find(string key)
    {
        // Exact names first: their reason is more precise than their prefix's (sasl.mechanism.inter.broker.protocol).
        foreach (var e in Table)
            if (e.Name == key) return e;
        foreach (var e in Table)
            if (e.Name.EndsWith('.') && key.Length > e.Name.Length && key.StartsWith(e.Name, StringComparison.Ordinal)) return e;
        if (!key.StartsWith(PerListener, StringComparison.Ordinal)) return null;
        // listener.name.<listener>.<setting>, and listener.name.<listener>.<mechanism>.<setting> for SASL's per-mechanism ones.
        string rest = AfterFirstDot(key[PerListener.Length..]);
        return rest.Length == 0 ? null : Find(rest) ?? (AfterFirstDot(rest) is { Length: > 0 } setting ? Find(setting) : null);
    }

    private static string AfterFirstDot(string s)
    {
        int dot = s.IndexOf('.', StringComparison.Ordinal);
        return dot <= 0 ? "" : s[(dot + 1)..];
    }
}
