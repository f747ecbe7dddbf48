using System.Collections.Concurrent;
using System.Text;
using Confluent.Kafka;
using Freshet.Integration.Tests.Support;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests;

/// <summary>A broker process killed with SIGKILL loses nothing it acknowledged.</summary>
public sealed class CrashRecoveryTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(true)]  // log.flush.per.append: acknowledged = fsynced
    [InlineData(false)] // Kafka's default: acknowledged = in the page cache, which a killed process does not lose
    public async Task EveryAcknowledgedMessageIsThereAfterSigkillDuringAcksAllProduce(bool fsyncPerAppend)
    {
        await using var broker = new BrokerProcess(new() { ["log.flush.per.append"] = fsyncPerAppend ? "true" : "false", ["log.segment.bytes"] = "1048576" });
        await broker.StartAsync();
        const string topic = "crash";
        await Clients.CreateTopicAsync(broker.BootstrapServers, topic, 3);

        var acked = new ConcurrentDictionary<int, bool>();
        var config = Clients.ProducerConfig(broker.BootstrapServers);
        config.LingerMs = 1;
        config.MessageTimeoutMs = 5_000;
        var producer = new ProducerBuilder<string, string>(config).Build();
        using var stop = new CancellationTokenSource();
        var sending = Task.Run(() =>
        {
            for (int i = 0; !stop.IsCancellationRequested; i++)
            {
                int seq = i;
                try
                {
                    producer.Produce(topic, new Message<string, string> { Key = $"k{seq % 97}", Value = seq.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                        r => { if (!r.Error.IsError && r.Status == PersistenceStatus.Persisted) acked[seq] = true; });
                }
                catch (ProduceException<string, string> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
                {
                    producer.Poll(TimeSpan.FromMilliseconds(5));
                    i--;
                }
            }
        });
        // Kill mid-stream, once a good number of messages are acknowledged.
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (acked.Count < 30_000 && DateTime.UtcNow < deadline) await Task.Delay(20);
        await broker.KillAsync();
        stop.Cancel();
        await sending;
        int ackedAtKill = acked.Count;
        producer.Flush(TimeSpan.FromSeconds(6)); // what was in flight fails; it was never acknowledged
        producer.Dispose();
        output.WriteLine($"acknowledged before SIGKILL: {ackedAtKill}");
        Assert.True(ackedAtKill >= 30_000, "the producer should have been acknowledged 30,000 messages before the kill");

        await broker.StartAsync();
        var all = Clients.ReadAll(broker.BootstrapServers, topic, 3, TimeSpan.FromSeconds(60));
        var stored = new HashSet<int>();
        foreach (var (_, list) in all)
        {
            long expected = 0;
            foreach (var cr in list)
            {
                Assert.Equal(expected++, cr.Offset.Value); // recovered logs have no holes
                stored.Add(int.Parse(Encoding.UTF8.GetString(cr.Message.Value), System.Globalization.CultureInfo.InvariantCulture));
            }
        }
        var lost = acked.Keys.Where(k => !stored.Contains(k)).Take(10).ToList();
        Assert.True(lost.Count == 0, $"acknowledged but lost after SIGKILL: {string.Join(", ", lost)}");

        // The recovered broker keeps taking writes.
        using var p2 = new ProducerBuilder<string, string>(Clients.ProducerConfig(broker.BootstrapServers)).Build();
        var r = await p2.ProduceAsync(topic, new Message<string, string> { Key = "after", Value = "restart" });
        Assert.Equal(PersistenceStatus.Persisted, r.Status);
    }
}
