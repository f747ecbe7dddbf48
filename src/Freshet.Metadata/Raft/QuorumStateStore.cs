using System.Globalization;
using System.Text.Json;
using Freshet.Storage;

namespace Freshet.Metadata.Raft;

/// <summary>
/// What a node must remember across restarts to keep Raft's promises: the epoch, whom it voted for in
/// it (at most one candidate per epoch), and the leader it knows of. -1 means none.
/// </summary>
public sealed record ElectionState(int Epoch, int LeaderId, int VotedId)
{
    public static readonly ElectionState Initial = new(0, -1, -1);
}

/// <summary>Durable storage of the <see cref="ElectionState"/>: a write is durable when it returns.</summary>
public interface IQuorumStateStore
{
    /// <summary>The last state written, or null when none was.</summary>
    ElectionState? Read();

    void Write(ElectionState state);
}

/// <summary>A store in memory; it outlives a simulated node crash because the simulation keeps it.</summary>
public sealed class MemoryQuorumStateStore : IQuorumStateStore
{
    private ElectionState? _state;

    /// <summary>Writes so far (tests).</summary>
    public int WriteCount { get; private set; }

    public ElectionState? Read() => _state;

    public void Write(ElectionState state)
    {
        _state = state;
        WriteCount++;
    }
}

/// <summary>
/// Kafka's <c>quorum-state</c> file in the metadata log directory: the JSON form of QuorumStateData
/// with a <c>data_version</c>, e.g.
/// <c>{"clusterId":"","leaderId":1,"leaderEpoch":5,"votedId":-1,"appliedOffset":0,"currentVoters":[{"voterId":1}],"data_version":0}</c>.
/// We write version 0 (static voters); version 1 (KIP-853: no clusterId, appliedOffset or
/// currentVoters; a votedDirectoryId) is read too. Written atomically: a temporary file is written
/// and fsynced, then renamed over the old one, then the directory is fsynced where the platform lets us.
/// </summary>
public sealed class FileQuorumStateStore : IQuorumStateStore
{
    public const string FileName = "quorum-state";

    private readonly IReadOnlyList<int> _voters;

    /// <param name="path">The file (usually <c>&lt;metadata log dir&gt;/__cluster_metadata-0/quorum-state</c>).</param>
    /// <param name="voters">Written as <c>currentVoters</c>, as Kafka does with static voters.</param>
    public FileQuorumStateStore(string path, IEnumerable<int> voters)
    {
        ArgumentNullException.ThrowIfNull(voters);
        Path = path;
        _voters = [.. voters.Order()];
    }

    public string Path { get; }

    public ElectionState? Read()
    {
        if (!File.Exists(Path)) return null;
        byte[] bytes = File.ReadAllBytes(Path);
        try
        {
            using var doc = JsonDocument.Parse(bytes);
            var root = doc.RootElement;
            int version = root.TryGetProperty("data_version", out var v) ? v.GetInt32() : 0;
            if (version is < 0 or > 1) throw new InvalidDataException($"{Path}: unsupported data_version {version}");
            return new ElectionState(Int(root, "leaderEpoch"), Int(root, "leaderId"), Int(root, "votedId"));
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{Path}: malformed quorum state: {e.Message}", e);
        }
    }

    private static int Int(JsonElement root, string name) =>
        root.TryGetProperty(name, out var e) && e.ValueKind == JsonValueKind.Number ? e.GetInt32() : -1;

    public void Write(ElectionState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("clusterId", "");
            w.WriteNumber("leaderId", state.LeaderId);
            w.WriteNumber("leaderEpoch", state.Epoch);
            w.WriteNumber("votedId", state.VotedId);
            w.WriteNumber("appliedOffset", 0);
            w.WriteStartArray("currentVoters");
            foreach (int id in _voters)
            {
                w.WriteStartObject();
                w.WriteNumber("voterId", id);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteNumber("data_version", 0);
            w.WriteEndObject();
        }
        string? dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path));
        if (dir is not null) Directory.CreateDirectory(dir);
        DurableFile.Write(Path, buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"quorum state at {Path}");
}
