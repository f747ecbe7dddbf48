namespace Freshet.Broker.Groups;

/// <summary>
/// The "uniform" server-side assignor (group.consumer.assignors' default): spreads all subscribed
/// partitions as evenly as the subscriptions allow while moving as few as possible.
/// <list type="number">
/// <item>Every member keeps the partitions of its current target that still exist and that it
/// still subscribes to (a partition claimed twice, e.g. after a static member was replaced, goes
/// to the first member in id order).</item>
/// <item>Partitions nobody kept go, one at a time, to the subscribed member with the fewest
/// partitions; topics with the fewest subscribers are placed first, as they have the fewest choices.</item>
/// <item>While some member has at least two more partitions than a member that could take one
/// of them, one partition moves from the fuller to the emptier. With identical subscriptions
/// this ends with counts that differ by at most one.</item>
/// </list>
/// Ties are broken by member id, topic name and partition number, never by hash order, so the
/// same spec always gives the same assignment.
/// </summary>
public sealed class UniformAssignor : IConsumerGroupAssignor
{
    public string Name => "uniform";

    public IReadOnlyDictionary<string, IReadOnlySet<TopicIdPartition>> Assign(AssignmentSpec spec)
    {
        var members = spec.Members.OrderBy(m => m.MemberId, StringComparer.Ordinal).ToList();
        var topics = ConsumerGroupAssignors.Ordered(spec.Topics.Values);
        var topicRank = new Dictionary<Protocol.Wire.Uuid, int>();
        for (int i = 0; i < topics.Count; i++) topicRank[topics[i].Id] = i;

        // Partitions kept sorted per member (topic order, then partition), so "the last one" is well defined.
        var comparer = Comparer<TopicIdPartition>.Create((a, b) =>
        {
            int c = topicRank[a.TopicId].CompareTo(topicRank[b.TopicId]);
            return c != 0 ? c : a.Partition.CompareTo(b.Partition);
        });
        var owned = members.Select(_ => new SortedSet<TopicIdPartition>(comparer)).ToArray();
        var taken = new HashSet<TopicIdPartition>();

        // 1. Stickiness: keep what is still valid.
        for (int i = 0; i < members.Count; i++)
        {
            var m = members[i];
            foreach (var p in m.Current.Where(p => topicRank.ContainsKey(p.TopicId)).OrderBy(p => p, comparer))
            {
                if (p.Partition >= spec.Topics[p.TopicId].Partitions || !m.Topics.Contains(p.TopicId)) continue;
                if (taken.Add(p)) owned[i].Add(p);
            }
        }

        // 2. Place the rest: most constrained topics first, each partition to the least loaded subscriber.
        var subscribers = topics.ToDictionary(t => t.Id, t => Enumerable.Range(0, members.Count).Where(i => members[i].Topics.Contains(t.Id)).ToArray());
        foreach (var t in topics.OrderBy(t => subscribers[t.Id].Length).ThenBy(t => topicRank[t.Id]))
        {
            var eligible = subscribers[t.Id];
            if (eligible.Length == 0) continue;
            foreach (var p in ConsumerGroupAssignors.PartitionsOf(t))
            {
                if (taken.Contains(p)) continue;
                int best = eligible[0];
                foreach (int i in eligible)
                    if (owned[i].Count < owned[best].Count) best = i;
                owned[best].Add(p);
                taken.Add(p);
            }
        }

        // 3. Balance: move single partitions from fuller to emptier members that may take them.
        // Each move lowers the sum of squared counts, so this ends; the cap is a safety net.
        int maxMoves = taken.Count * Math.Max(1, members.Count);
        for (int moves = 0; moves < maxMoves; moves++)
        {
            if (!MoveOne(members, owned)) break;
        }

        var result = new Dictionary<string, IReadOnlySet<TopicIdPartition>>(StringComparer.Ordinal);
        for (int i = 0; i < members.Count; i++) result[members[i].MemberId] = new HashSet<TopicIdPartition>(owned[i]);
        return result;
    }

    /// <summary>Finds the most loaded member that can give a partition to a member with at least two fewer, and moves it.</summary>
    private static bool MoveOne(List<AssignorMember> members, SortedSet<TopicIdPartition>[] owned)
    {
        var byLoad = Enumerable.Range(0, members.Count).OrderBy(i => owned[i].Count).ThenBy(i => i).ToArray();
        for (int d = byLoad.Length - 1; d >= 0; d--)
        {
            int donor = byLoad[d];
            for (int r = 0; r < d; r++)
            {
                int receiver = byLoad[r];
                if (owned[donor].Count - owned[receiver].Count < 2) break; // receivers only get fuller from here
                // The donor's last partition the receiver subscribes to: the newest-looking one moves, the rest stay put.
                TopicIdPartition? pick = null;
                foreach (var p in owned[donor].Reverse())
                {
                    if (!members[receiver].Topics.Contains(p.TopicId)) continue;
                    pick = p;
                    break;
                }
                if (pick is not { } moved) continue;
                owned[donor].Remove(moved);
                owned[receiver].Add(moved);
                return true;
            }
        }
        return false;
    }
}
