using System.Net;
using System.Text;
using Confluent.Kafka;
using Freshet.Integration.Tests.Support;
using Freshet.Server;
using Xunit.Abstractions;

namespace Freshet.Integration.Tests;

/// <summary>Idempotent producers: retries after lost responses are not written twice.</summary>
public sealed class IdempotentProducerTests(ITestOutputHelper output)
{
    [Fact]
    public async Task RetriesAfterCutConnectionsLeaveEveryMessageExactlyOnceInOrder()
    {
        const int count = 20_000;
        int brokerPort = BrokerProcess.FreePort();
        int proxyPort = BrokerProcess.FreePort();
        using var loggers = TestOutputLoggerProvider.Factory(output);
        // Clients are told the proxy's address, so every connection (bootstrap and data) goes through it.
        await using var broker = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string>
        {
            ["listeners"] = $"PLAINTEXT://127.0.0.1:{brokerPort}",
            ["advertised.listeners"] = $"PLAINTEXT://127.0.0.1:{proxyPort}",
        }, loggers);
        // Lose the responses of the 5th, 40th and 120th produce requests.
        var drops = new HashSet<int> { 5, 40, 120 };
        await using var proxy = new FaultyProxy(proxyPort, new IPEndPoint(IPAddress.Loopback, brokerPort), (key, nth) => key == 0 && drops.Contains(nth));
        string bootstrap = $"127.0.0.1:{proxyPort}";
        string topic = "idem";
        await Clients.CreateTopicAsync(bootstrap, topic, 1);

        var config = Clients.ProducerConfig(bootstrap);
        config.EnableIdempotence = true;
        config.LingerMs = 2;
        config.BatchNumMessages = 50;
        config.MaxInFlight = 5;
        config.MessageTimeoutMs = 120_000;
        long failed = 0;
        using (var producer = new ProducerBuilder<Null, string>(config).Build())
        {
            for (int i = 0; i < count; i++)
            {
                while (true)
                {
                    try
                    {
                        producer.Produce(topic, new Message<Null, string> { Value = i.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                            r => { if (r.Error.IsError) Interlocked.Increment(ref failed); });
                        break;
                    }
                    catch (ProduceException<Null, string> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
                    {
                        producer.Poll(TimeSpan.FromMilliseconds(5));
                    }
                }
            }
            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(120)));
        }
        Assert.Equal(0, Interlocked.Read(ref failed));
        Assert.Equal(drops.Count, proxy.ConnectionsCut);

        var all = Clients.ReadAll(bootstrap, topic, 1, TimeSpan.FromSeconds(60))[0];
        var values = all.Select(cr => int.Parse(Encoding.UTF8.GetString(cr.Message.Value), System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(count, values.Count);
        Assert.Equal(Enumerable.Range(0, count), values);
    }
}
