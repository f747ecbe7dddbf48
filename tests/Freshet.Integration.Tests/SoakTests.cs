using System.Collections.Concurrent;
using System.Text;
using Confluent.Kafka;
using Freshet.Integration.Tests.Support;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests;

/// <summary>
/// Long runs, left out of the default suite (`./test.sh --full` runs them): minutes of produce and
/// consume through repeated SIGKILLs of the broker process.
/// </summary>
[Trait("Category", "Soak")]
public sealed class SoakTests(ITestOutputHelper output)
{
    [Fact]
    public async Task AcknowledgedMessagesSurviveRepeatedSigkillsUnderLoad()
    {
        int rounds = int.TryParse(Environment.GetEnvironmentVariable("FRESHET_SOAK_ROUNDS"), out int r) ? r : 20;
        await using var broker = new BrokerProcess(new() { ["log.segment.bytes"] = "1048576", ["num.partitions"] = "4" });
        await broker.StartAsync();
        const string topic = "soak";
        await Clients.CreateTopicAsync(broker.BootstrapServers, topic, 4);
        var acked = new ConcurrentDictionary<int, bool>();
        int next = 0;
        for (int round = 0; round < rounds; round++)
        {
            var config = Clients.ProducerConfig(broker.BootstrapServers);
            config.EnableIdempotence = true;
            config.MessageTimeoutMs = 5_000;
            using var producer = new ProducerBuilder<string, string>(config).SetLogHandler((_, _) => { }).Build();
            using var stop = new CancellationTokenSource();
            var sending = Task.Run(() =>
            {
                while (!stop.IsCancellationRequested)
                {
                    int seq = Interlocked.Increment(ref next);
                    try
                    {
                        producer.Produce(topic, new Message<string, string> { Key = $"k{seq % 101}", Value = seq.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                            d => { if (!d.Error.IsError) acked[seq] = true; });
                    }
                    catch (ProduceException<string, string>)
                    {
                        producer.Poll(TimeSpan.FromMilliseconds(5));
                    }
                }
            });
            await Task.Delay(TimeSpan.FromSeconds(3 + round % 5));
            await broker.KillAsync();
            stop.Cancel();
            await sending;
            producer.Flush(TimeSpan.FromSeconds(6));
            await broker.StartAsync();
            output.WriteLine($"round {round}: {acked.Count} acknowledged so far");
        }
        var all = Clients.ReadAll(broker.BootstrapServers, topic, 4, TimeSpan.FromSeconds(120));
        var stored = new HashSet<int>();
        foreach (var (_, list) in all)
        {
            long expected = 0;
            foreach (var cr in list)
            {
                Assert.Equal(expected++, cr.Offset.Value);
                stored.Add(int.Parse(Encoding.UTF8.GetString(cr.Message.Value), System.Globalization.CultureInfo.InvariantCulture));
            }
        }
        var lost = acked.Keys.Where(k => !stored.Contains(k)).Take(10).ToList();
        Assert.True(lost.Count == 0, $"acknowledged but lost: {string.Join(", ", lost)}");
        Assert.True(acked.Count > rounds * 10_000, $"only {acked.Count} messages acknowledged in {rounds} rounds");
    }
}
