using Confluent.Kafka;

namespace Freshet.Integration.Tests.Cluster;

/// <summary>A partition's leader and ISR as one broker's metadata answer has them, for cluster tests.</summary>
public static class PartitionStates
{
    /// <summary>
    /// Leader and ISR of partition 0 of <paramref name="topic"/> from one metadata answer; (-1, none) while
    /// the broker asked has not applied the topic yet, or no broker answered. Read both from the same
    /// answer: two requests may reach two brokers that are not equally up to date.
    /// </summary>
    public static (int Leader, int[] Isr) Of(IAdminClient admin, string topic)
    {
        try
        {
            var p = admin.GetMetadata(topic, TimeSpan.FromSeconds(5)).Topics.SingleOrDefault()?.Partitions.SingleOrDefault();
            return p is null || p.Error.IsError ? (-1, []) : (p.Leader, p.InSyncReplicas);
        }
        catch (KafkaException)
        {
            return (-1, []);
        }
    }
}
