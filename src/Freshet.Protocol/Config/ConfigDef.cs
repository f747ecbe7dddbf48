using System.Globalization;

namespace Freshet.Protocol.Config;

/// <summary>Config value types, numbered as DescribeConfigs reports them.</summary>
public enum ConfigType : sbyte
{
    Unknown = 0,
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
    Class = 8,
    Password = 9,
}

/// <summary>Where a config value came from, numbered as DescribeConfigs (v1+) reports it.</summary>
public enum ConfigSource : sbyte
{
    Unknown = 0,
    DynamicTopicConfig = 1,
    DynamicBrokerConfig = 2,
    DynamicDefaultBrokerConfig = 3,
    StaticBrokerConfig = 4,
    DefaultConfig = 5,
    DynamicBrokerLoggerConfig = 6,
    ClientMetricsConfig = 7,
    GroupConfig = 8,
}

/// <summary>
/// One config key: Kafka's name, type, default (as text, null for none), a validator and a
/// one-line doc. Values travel as text on the wire and in files; <see cref="ConfigDef"/> checks
/// and converts them.
/// </summary>
public sealed record ConfigKey(
    string Name,
    ConfigType Type,
    string? Default,
    string Doc,
    Func<string, string?>? Validator = null,
    bool Sensitive = false,
    bool ReadOnly = false)
{
    /// <summary>Checks that <paramref name="value"/> parses as this key's type and passes the validator; returns an error or null.</summary>
    public string? Validate(string value)
    {
        string? typeError = Type switch
        {
            ConfigType.Boolean => bool.TryParse(value.Trim(), out _) ? null : "not a boolean",
            ConfigType.Int => int.TryParse(value.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out _) ? null : "not an int",
            ConfigType.Short => short.TryParse(value.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out _) ? null : "not a short",
            ConfigType.Long => long.TryParse(value.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out _) ? null : "not a long",
            ConfigType.Double => double.TryParse(value.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out _) ? null : "not a double",
            _ => null,
        };
        if (typeError is not null) return $"Invalid value {value} for configuration {Name}: {typeError}";
        string? error = Validator?.Invoke(value.Trim());
        return error is null ? null : $"Invalid value {value} for configuration {Name}: {error}";
    }
}

/// <summary>A set of config keys (topic configs, broker configs) with typed accessors over text values.</summary>
public sealed class ConfigDef
{
    private readonly Dictionary<string, ConfigKey> _keys = new(StringComparer.Ordinal);
    private readonly List<ConfigKey> _ordered = [];

    public ConfigDef Define(ConfigKey key)
    {
        if (!_keys.TryAdd(key.Name, key)) throw new ArgumentException($"config {key.Name} defined twice");
        _ordered.Add(key);
        return this;
    }

    public ConfigDef Define(string name, ConfigType type, string? defaultValue, string doc,
        Func<string, string?>? validator = null, bool sensitive = false, bool readOnly = false) =>
        Define(new ConfigKey(name, type, defaultValue, doc, validator, sensitive, readOnly));

    public IReadOnlyList<ConfigKey> Keys => _ordered;

    public bool TryGet(string name, out ConfigKey key) => _keys.TryGetValue(name, out key!);

    public bool Contains(string name) => _keys.ContainsKey(name);

    // ---- validators (return an error text or null)

    public static Func<string, string?> AtLeast(long min) => v =>
        long.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out long n) && n >= min ? null : $"Value must be at least {min}";

    public static Func<string, string?> Between(double min, double max) => v =>
        double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double n) && n >= min && n <= max ? null : $"Value must be between {min} and {max}";

    public static Func<string, string?> OneOf(params string[] allowed) => v =>
        allowed.Contains(v, StringComparer.Ordinal) ? null : $"String must be one of: {string.Join(", ", allowed)}";

    /// <summary>A comma-separated list whose every item is one of <paramref name="allowed"/>.</summary>
    public static Func<string, string?> ListOf(params string[] allowed) => v =>
    {
        var items = v.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        foreach (var i in items)
            if (!allowed.Contains(i, StringComparer.Ordinal)) return $"[{i}] is not one of: {string.Join(", ", allowed)}";
        return null;
    };
}

/// <summary>Parsing helpers for config text values, invariant culture.</summary>
public static class ConfigValues
{
    public static long ParseLong(string v) => long.Parse(v.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture);
    public static int ParseInt(string v) => int.Parse(v.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture);
    public static double ParseDouble(string v) => double.Parse(v.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture);
    public static bool ParseBool(string v) => bool.Parse(v.Trim());

    public static IReadOnlyList<string> ParseList(string v) =>
        v.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);

    public static string Format(long v) => v.ToString(CultureInfo.InvariantCulture);
    public static string Format(double v) => v.ToString("R", CultureInfo.InvariantCulture);
    public static string Format(bool v) => v ? "true" : "false";
}
