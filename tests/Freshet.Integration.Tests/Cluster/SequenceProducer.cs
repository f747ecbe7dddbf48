using System.Collections.Concurrent;
using System.Globalization;
using Confluent.Kafka;

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
