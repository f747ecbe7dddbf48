namespace Freshet.Protocol;

/// <summary>A partition of a topic, named the way Kafka names its log directory: topic-partition.</summary>
public readonly record struct TopicPartition(string Topic, int Partition)
{
    public override string ToString() => $"{Topic}-{Partition}";

    /// <summary>Parses a directory name such as "orders-3" (the topic may itself contain dashes).</summary>
    public static bool TryParse(string name, out TopicPartition tp)
    {
        tp = default;
        int dash = name.LastIndexOf('-');
        if (dash <= 0 || dash == name.Length - 1) return false;
        if (!int.TryParse(name.AsSpan(dash + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int p)) return false;
        tp = new TopicPartition(name[..dash], p);
        return true;
    }
}

/// <summary>Kafka's rules for topic names: 1-249 chars of [a-zA-Z0-9._-], not "." or "..".</summary>
public static class TopicNames
{
    public const int MaxLength = 249;

    public static string? Validate(string? name)
    {
        if (string.IsNullOrEmpty(name)) return "Topic name is illegal, it can't be empty";
        if (name is "." or "..") return "Topic name cannot be \".\" or \"..\"";
        if (name.Length > MaxLength) return $"Topic name is illegal, it can't be longer than {MaxLength} characters, topic name: {name}";
        foreach (char c in name)
        {
            bool ok = c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '.' or '_' or '-';
            if (!ok) return $"Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'";
        }
        return null;
    }

    public static bool IsInternal(string name) => name is "__consumer_offsets" or "__transaction_state";
}
