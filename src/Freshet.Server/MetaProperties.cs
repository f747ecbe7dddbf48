using System.Globalization;
using Freshet.Protocol.Wire;
using Freshet.Storage;

namespace Freshet.Server;

/// <summary>
/// Kafka's <c>meta.properties</c> in each log directory (version=1, node.id, cluster.id,
/// directory.id). Kafka writes it with `kafka-storage format`; Freshet formats an empty
/// directory on first start, and refuses a directory that belongs to another node or cluster.
/// </summary>
public static class MetaProperties
{
    public const string FileName = "meta.properties";

    public sealed record Contents(int NodeId, string ClusterId, Uuid DirectoryId);

    public static Contents? Read(string dir)
    {
        string path = Path.Combine(dir, FileName);
        if (!File.Exists(path)) return null;
        var p = PropertiesFile.Parse(File.ReadAllText(path));
        if (!p.TryGetValue("node.id", out var node) || !p.TryGetValue("cluster.id", out var cluster))
            throw new InvalidDataException($"{path} lacks node.id or cluster.id");
        var dirId = p.TryGetValue("directory.id", out var d) && Uuid.TryParse(d, out var u) ? u : Uuid.Random();
        return new Contents(int.Parse(node, CultureInfo.InvariantCulture), cluster, dirId);
    }

    public static void Write(string dir, Contents c)
    {
        Directory.CreateDirectory(dir);
        // Durably (fsync, rename, directory fsync): a power loss must not leave a formatted directory without its identity.
        DurableFile.Write(Path.Combine(dir, FileName),
            System.Text.Encoding.UTF8.GetBytes($"#\n#Written by Freshet\nnode.id={c.NodeId}\ndirectory.id={c.DirectoryId}\nversion=1\ncluster.id={c.ClusterId}\n"));
    }

    /// <summary>A new cluster id: 16 random bytes as URL-safe base64, like `kafka-storage random-uuid`.</summary>
    public static string NewClusterId() => Uuid.Random().ToString();

    /// <summary>
    /// Checks (or writes) meta.properties in every directory; all must agree on the cluster.
    /// Returns the cluster id. <paramref name="clusterId"/>, when given, formats new directories
    /// (every node of a cluster needs the same one) and must match directories already formatted.
    /// </summary>
    public static string EnsureFormatted(IEnumerable<string> dirs, int nodeId, string? clusterId = null)
    {
        var all = dirs.Distinct().ToList();
        var existing = all.Select(d => (Dir: d, Meta: Read(d))).ToList();
        string? cluster = null;
        foreach (var (dir, meta) in existing)
        {
            if (meta is null) continue;
            if (meta.NodeId != nodeId)
                throw new InvalidOperationException($"{Path.Combine(dir, FileName)} belongs to node {meta.NodeId}, but this node's node.id is {nodeId}");
            if (cluster is not null && cluster != meta.ClusterId)
                throw new InvalidOperationException($"log directories belong to different clusters: {cluster} and {meta.ClusterId}");
            cluster = meta.ClusterId;
        }
        if (clusterId is not null && cluster is not null && cluster != clusterId)
            throw new InvalidOperationException($"the log directories belong to cluster {cluster}, but cluster.id is {clusterId}");
        cluster ??= clusterId ?? NewClusterId();
        foreach (var (dir, meta) in existing)
            if (meta is null) Write(dir, new Contents(nodeId, cluster, Uuid.Random()));
        return cluster;
    }
}
