using Freshet.Metadata.Image;

namespace Freshet.Metadata.Controller;

/// <summary>
/// Spreads replicas over brokers: partition p's replicas are consecutive brokers (by id) starting
/// at (start + p) mod n, so leaders (first replicas) rotate over the brokers. Racks come later.
/// </summary>
public static class ReplicaPlacer
{
    public static List<IReadOnlyList<int>> Place(IReadOnlyList<BrokerRegistration> brokers, int partitions, short replicationFactor,
        int firstPartition, Random random)
    {
        var ids = brokers.Select(b => b.Id).Order().ToArray();
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
}
