namespace Freshet.Cli;

/// <summary>
/// The arguments of one command: options (--name value, --name=value, repeatable), flags
/// (--name) and positionals. Kept small on purpose; each command states what it accepts and
/// anything else is an error with a readable message.
/// </summary>
public sealed class CommandLine
{
    private readonly Dictionary<string, List<string>> _options = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    public CommandLine(IEnumerable<string> args, IReadOnlySet<string> flags)
    {
        var list = args.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            string a = list[i];
            if (a == "--")
            {
                Positionals.AddRange(list.Skip(i + 1));
                break;
            }
            if (a.StartsWith("--", StringComparison.Ordinal) && a.Length > 2)
            {
                string name = a[2..];
                string? value = null;
                int eq = name.IndexOf('=');
                if (eq >= 0)
                {
                    value = name[(eq + 1)..];
                    name = name[..eq];
                }
                else if (!flags.Contains(name))
                {
                    if (i + 1 >= list.Count) throw new UsageException($"option --{name} needs a value");
                    value = list[++i];
                }
                if (!_options.TryGetValue(name, out var values)) _options[name] = values = [];
                values.Add(value ?? "true");
            }
            else if (a.StartsWith('-') && a.Length == 2 && !char.IsDigit(a[1]))
            {
                throw new UsageException($"unknown option {a} (options are spelled --name)");
            }
            else
            {
                Positionals.Add(a);
            }
        }
    }

    public List<string> Positionals { get; } = [];

    public string? Get(string name)
    {
        _used.Add(name);
        return _options.TryGetValue(name, out var v) ? v[^1] : null;
    }

    public IReadOnlyList<string> GetAll(string name)
    {
        _used.Add(name);
        return _options.TryGetValue(name, out var v) ? v : [];
    }

    public bool Has(string name)
    {
        _used.Add(name);
        return _options.ContainsKey(name);
    }

    public string Require(string name) => Get(name) ?? throw new UsageException($"missing required option --{name}");

    public int GetInt(string name, int defaultValue)
    {
        var v = Get(name);
        if (v is null) return defaultValue;
        return int.TryParse(v, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int n)
            ? n : throw new UsageException($"--{name} must be an integer, got '{v}'");
    }

    public long GetLong(string name, long defaultValue)
    {
        var v = Get(name);
        if (v is null) return defaultValue;
        return long.TryParse(v, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out long n)
            ? n : throw new UsageException($"--{name} must be an integer, got '{v}'");
    }

    /// <summary>Throws on options no one asked for (typos).</summary>
    public void EnsureAllUsed()
    {
        var unknown = _options.Keys.Where(k => !_used.Contains(k)).ToList();
        if (unknown.Count > 0) throw new UsageException($"unknown option --{unknown[0]}");
    }
}

/// <summary>A mistake in how a command was called: printed with the command's usage, exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);
