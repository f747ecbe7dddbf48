using Freshet.Metadata.Image;

namespace Freshet.Metadata.Controller;

/// <summary>
/// Spreads replicas over brokers. The brokers are put in a rack-alternating order (one broker
/// from each rack in turn, racks and brokers sorted), and partition p's replicas are consecutive
/// brokers of that order starting at (start + p) mod n: leaders (first replicas) rotate over
/// every broker, and a partition's replicas land on as many different racks as there are. With
/// no racks set this is the plain by-id rotation.
/// </summary>
public static class ReplicaPlacer
{
    public static List<IReadOnlyList<int>> Place(IReadOnlyList<BrokerRegistration> brokers, int partitions, short replicationFactor,
        int firstPartition, Random random)
    {
        var ids = RackAlternated(brokers);
        if (ids.Length == 0 || replicationFactor > ids.Length) throw new InvalidOperationException("not enough brokers");
        int start = random.Next(ids.Length);
        var result = new List<IReadOnlyList<int>>(partitions);
        for (int p = 0; p < partitions; p++)
        {
            var replicas = new int[replicationFactor];
            for (int r = 0; r < replicationFactor; r++) replicas[r] = ids[(start + firstPartition + p + r) % ids.Length];
            result.Add(replicas);
        }
        return result;
    }

    /// <summary>Broker ids taking one broker from each rack in turn (brokers without a rack form one rack of their own).</summary>
    public static int[] RackAlternated(IReadOnlyList<BrokerRegistration> brokers)
    {
        var racks = brokers.GroupBy(b => b.Rack ?? "", StringComparer.Ordinal)
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => g.Select(b => b.Id).Order().ToArray())
            .ToArray();
        var order = new List<int>(brokers.Count);
        for (int i = 0; order.Count < brokers.Count; i++)
        {
            foreach (var rack in racks)
            {
                if (i < rack.Length) order.Add(rack[i]);
            }
        }
        return [.. order];
    }
}
