using System.Collections.Concurrent;
using System.Globalization;
using Confluent.Kafka;
using Freshet.Integration.Tests.Support;

namespace Freshet.Integration.Tests.Cluster;

/// <summary>
/// A Confluent.Kafka producer that sends the values 0..total-1 (decimal text) at a steady rate, for
/// tests that break the cluster meanwhile: which values were acknowledged, and every failure a
/// client would have to handle (delivery errors and fatal client errors).
/// </summary>
public sealed class SequenceProducer
{
    /// <summary>Acknowledged values.</summary>
    public ConcurrentDictionary<int, byte> Acked { get; } = new();

    /// <summary>Delivery errors ("value: error") and fatal client errors.</summary>
    public ConcurrentQueue<string> Failures { get; } = new();

    /// <summary>Non-fatal client errors (a broker went away; librdkafka retries these itself).</summary>
    public ConcurrentQueue<string> ClientErrors { get; } = new();

    /// <summary>Called on the client's thread for each acknowledged value.</summary>
    public Action<int>? OnAcknowledged { get; init; }

    /// <summary>Produces on a thread of its own; the task ends once everything is acknowledged or failed (or 150 s of flushing pass).</summary>
    public Task RunAsync(ProducerConfig config, string topic, int total, double perSecond) => Task.Run(() =>
    {
        using var producer = new ProducerBuilder<Null, string>(config)
            .SetErrorHandler((_, e) => (e.IsFatal ? Failures : ClientErrors).Enqueue(e.IsFatal ? $"fatal: {e}" : e.ToString()))
            .Build();
        int pace = Math.Max(1, (int)(perSecond / 100));
        var paced = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < total; i++)
        {
            int seq = i;
            if (i % pace == 0)
                while (paced.Elapsed.TotalSeconds < i / perSecond) Thread.Sleep(5);
            while (true)
            {
                try
                {
                    producer.Produce(topic, new Message<Null, string> { Value = seq.ToString(CultureInfo.InvariantCulture) }, r =>
                    {
                        if (r.Error.IsError) Failures.Enqueue($"{seq}: {r.Error}");
                        else if (Acked.TryAdd(seq, 0)) OnAcknowledged?.Invoke(seq);
                    });
                    break;
                }
                catch (ProduceException<Null, string> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
                {
                    producer.Poll(TimeSpan.FromMilliseconds(10));
                }
            }
        }
        producer.Flush(TimeSpan.FromSeconds(150));
    });
}

/// <summary>Reads back what a <see cref="SequenceProducer"/> wrote to partition 0 of a topic.</summary>
public static class SequenceReader
{
    /// <summary>What was read: the distinct values, records that were not a sequence number, and the first reordering.</summary>
    public sealed record Result(HashSet<int> Distinct, int Records, int Foreign, string? Reordering);

    /// <summary>
    /// Reads from the beginning until <paramref name="expected"/> distinct values were seen and the end of
    /// the partition reached, or <paramref name="timeout"/> passed. Retries may repeat values; a value
    /// first seen after a larger one is a reordering.
    /// </summary>
    public static Result Read(string bootstrap, string topic, int expected, TimeSpan timeout)
    {
        var distinct = new HashSet<int>();
        int last = -1, records = 0, foreign = 0;
        string? reordering = null;
        var cc = Clients.ConsumerConfig(bootstrap);
        cc.GroupId = "sequence-reader-" + Guid.NewGuid().ToString("N")[..8];
        cc.AutoOffsetReset = AutoOffsetReset.Earliest;
        cc.EnableAutoCommit = false;
        cc.EnablePartitionEof = true;
        using var consumer = new ConsumerBuilder<Ignore, string>(cc).Build();
        consumer.Assign(new TopicPartitionOffset(topic, 0, Offset.Beginning));
        var deadline = DateTime.UtcNow + timeout;
        bool atEnd = false;
        while (!(atEnd && distinct.Count >= expected) && DateTime.UtcNow < deadline)
        {
            var cr = consumer.Consume(TimeSpan.FromSeconds(1));
            if (cr is null) continue;
            atEnd = cr.IsPartitionEOF;
            if (atEnd) continue;
            records++;
            if (!int.TryParse(cr.Message.Value, NumberStyles.None, CultureInfo.InvariantCulture, out int seq))
            {
                foreign++;
                continue;
            }
            if (distinct.Add(seq))
            {
                if (seq < last) reordering ??= $"{seq} first seen after {last}";
                last = Math.Max(last, seq);
            }
        }
        return new Result(distinct, records, foreign, reordering);
    }
}
