namespace Freshet.Broker.Groups;

/// <summary>
/// The "range" server-side assignor: topic by topic, the subscribers (in member id order) split
/// the partitions into consecutive ranges; the first <c>partitions % subscribers</c> members get
/// one more. Topics with the same partition count and the same subscribers are therefore
/// co-partitioned (a member gets the same partition numbers of each), which is what joins of
/// keyed topics rely on.
/// <para>
/// Like Kafka's server-side range assignor it is sticky: a member first keeps, up to its share,
/// the partitions of the topic it already has, and only the rest are handed out in order to
/// members still below their share. From scratch that is exactly the ranges above.
/// </para>
/// </summary>
public sealed class RangeAssignor : IConsumerGroupAssignor
{
    public string Name => "range";

    public IReadOnlyDictionary<string, IReadOnlySet<TopicIdPartition>> Assign(AssignmentSpec spec)
    {
        var members = spec.Members.OrderBy(m => m.MemberId, StringComparer.Ordinal).ToList();
        var result = members.ToDictionary(m => m.MemberId, _ => new HashSet<TopicIdPartition>(), StringComparer.Ordinal);
        foreach (var topic in ConsumerGroupAssignors.Ordered(spec.Topics.Values))
        {
            var subscribers = members.Where(m => m.Topics.Contains(topic.Id)).ToList();
            if (subscribers.Count == 0 || topic.Partitions <= 0) continue;
            int share = topic.Partitions / subscribers.Count;
            int extra = topic.Partitions % subscribers.Count;
            var quota = new int[subscribers.Count];
            for (int i = 0; i < subscribers.Count; i++) quota[i] = share + (i < extra ? 1 : 0);

            var taken = new bool[topic.Partitions];
            var filled = new int[subscribers.Count];
            for (int i = 0; i < subscribers.Count; i++)
            {
                foreach (int p in subscribers[i].Current.Where(tp => tp.TopicId == topic.Id).Select(tp => tp.Partition).Order())
                {
                    if (filled[i] >= quota[i]) break;
                    if (p >= topic.Partitions || taken[p]) continue;
                    taken[p] = true;
                    filled[i]++;
                    result[subscribers[i].MemberId].Add(new TopicIdPartition(topic.Id, p));
                }
            }
            int member = 0;
            for (int p = 0; p < topic.Partitions; p++)
            {
                if (taken[p]) continue;
                while (filled[member] >= quota[member]) member++;
                filled[member]++;
                result[subscribers[member].MemberId].Add(new TopicIdPartition(topic.Id, p));
            }
        }
        return result.ToDictionary(kv => kv.Key, kv => (IReadOnlySet<TopicIdPartition>)kv.Value, StringComparer.Ordinal);
    }
}
