using System.Globalization;

namespace Freshet.Metadata.Raft;

/// <summary>Where a voter listens: the host and port of <c>controller.quorum.voters</c>.</summary>
public readonly record struct VoterEndpoint(string Host, int Port)
{
    public override string ToString() => Host.Contains(':', StringComparison.Ordinal) ? $"[{Host}]:{Port}" : $"{Host}:{Port}";
}

/// <summary>
/// The static voter set of <c>controller.quorum.voters</c>: a comma-separated list of
/// <c>id@host:port</c> (an IPv6 host in brackets: <c>1@[::1]:9093</c>). Dynamic voters (KIP-853) are not
/// supported.
/// </summary>
public static class QuorumVoters
{
    public const string ConfigKey = "controller.quorum.voters";

    /// <summary>Parses the setting; throws <see cref="FormatException"/> saying which entry is wrong.</summary>
    public static IReadOnlyDictionary<int, VoterEndpoint> Parse(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var voters = new SortedDictionary<int, VoterEndpoint>();
        foreach (string raw in value.Split(',', StringSplitOptions.TrimEntries))
        {
            if (raw.Length == 0)
            {
                if (value.Trim().Length == 0) break;
                throw new FormatException($"{ConfigKey}: empty entry in \"{value}\"");
            }
            int at = raw.IndexOf('@', StringComparison.Ordinal);
            if (at <= 0) throw new FormatException($"{ConfigKey}: \"{raw}\" is not id@host:port");
            if (!int.TryParse(raw.AsSpan(0, at), NumberStyles.None, CultureInfo.InvariantCulture, out int id))
                throw new FormatException($"{ConfigKey}: \"{raw}\" does not start with a non-negative node id");
            var endpoint = ParseEndpoint(raw, raw[(at + 1)..]);
            if (!voters.TryAdd(id, endpoint)) throw new FormatException($"{ConfigKey}: node id {id} appears twice");
        }
        return voters;
    }

    private static VoterEndpoint ParseEndpoint(string raw, string hostPort)
    {
        string host;
        string port;
        if (hostPort.StartsWith('['))
        {
            int close = hostPort.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || close + 1 >= hostPort.Length || hostPort[close + 1] != ':')
                throw new FormatException($"{ConfigKey}: \"{raw}\" has a malformed [IPv6]:port");
            host = hostPort[1..close];
            port = hostPort[(close + 2)..];
        }
        else
        {
            int colon = hostPort.LastIndexOf(':');
            if (colon < 0) throw new FormatException($"{ConfigKey}: \"{raw}\" has no port");
            host = hostPort[..colon];
            port = hostPort[(colon + 1)..];
            if (host.Contains(':', StringComparison.Ordinal)) throw new FormatException($"{ConfigKey}: \"{raw}\": put an IPv6 host in brackets");
        }
        if (host.Length == 0) throw new FormatException($"{ConfigKey}: \"{raw}\" has no host");
        if (!int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out int p) || p > 65535)
            throw new FormatException($"{ConfigKey}: \"{raw}\" has an invalid port \"{port}\"");
        return new VoterEndpoint(host, p);
    }
}
