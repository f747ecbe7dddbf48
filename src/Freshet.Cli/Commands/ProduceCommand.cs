using System.Diagnostics;
using System.Text;
using Confluent.Kafka;

namespace Freshet.Cli.Commands;

/// <summary>`freshet produce`: one record per line of stdin, sent with Confluent.Kafka's producer.</summary>
public static class ProduceCommand
{
    public const string Usage = """
        usage: freshet produce --topic T [options] < lines

        Sends each line of standard input as one record (UTF-8; an empty line is a record with an
        empty value), waits for every delivery at end of input and prints a summary on stderr.
        Exits with 1 if any record was not delivered.

        options:
          --key-separator S          split each line at the first S: key before, value after
                                     (a line without S is reported and not sent)
          --header key=value         add this header to every record (repeatable)
          --partition P              send everything to partition P (default: by key, or spread)
          --acks all|1|0             acknowledgement to wait for (default all)
          --compression none|gzip|snappy|lz4|zstd   (default none)
          --idempotent               enable idempotence (no duplicates on retry; needs --acks all)
          --timeout-ms N             give up on a record not delivered within N ms (default 30000)
        """ + "\n\n" + ClientSettings.CommonUsage;

    /// <summary>How many failed deliveries are printed one by one before only the count is kept.</summary>
    private const int MaxReportedFailures = 10;

    public static Task<int> RunAsync(string[] args)
    {
        var cl = new CommandLine(args, new HashSet<string> { "idempotent", "help" });
        string topic = cl.Require("topic");
        if (topic.Length == 0) throw new UsageException("--topic must not be empty");
        string? separator = cl.Get("key-separator");
        if (separator is { Length: 0 }) throw new UsageException("--key-separator must not be empty");
        var headers = new List<(string Key, byte[] Value)>();
        foreach (var h in cl.GetAll("header"))
        {
            int eq = h.IndexOf('=');
            if (eq <= 0) throw new UsageException($"--header expects key=value, got '{h}'");
            headers.Add((h[..eq], Encoding.UTF8.GetBytes(h[(eq + 1)..])));
        }
        int partition = cl.GetInt("partition", -1);
        if (cl.Has("partition") && partition < 0) throw new UsageException("--partition must not be negative");
        var acks = (cl.Get("acks") ?? "all").ToLowerInvariant() switch
        {
            "all" or "-1" => Acks.All,
            "1" or "leader" => Acks.Leader,
            "0" or "none" => Acks.None,
            var other => throw new UsageException($"--acks must be all, 1 or 0, got '{other}'"),
        };
        var compression = (cl.Get("compression") ?? "none").ToLowerInvariant() switch
        {
            "none" => CompressionType.None,
            "gzip" => CompressionType.Gzip,
            "snappy" => CompressionType.Snappy,
            "lz4" => CompressionType.Lz4,
            "zstd" => CompressionType.Zstd,
            var other => throw new UsageException($"--compression must be none, gzip, snappy, lz4 or zstd, got '{other}'"),
        };
        bool idempotent = cl.Has("idempotent");
        if (idempotent && acks != Acks.All) throw new UsageException("--idempotent needs --acks all");
        int timeoutMs = cl.GetInt("timeout-ms", 30_000);
        if (timeoutMs <= 0) throw new UsageException("--timeout-ms must be positive");
        var settings = ClientSettings.Read(cl);
        cl.EnsureAllUsed();
        if (cl.Positionals.Count > 0) throw new UsageException($"unexpected argument '{cl.Positionals[0]}'");

        var config = settings.Apply(new ProducerConfig
        {
            ClientId = "freshet-produce",
            MessageTimeoutMs = timeoutMs,
            // Keys land on the same partitions as with Kafka's Java clients (murmur2), so records
            // sent from here and from Java applications agree.
            Partitioner = Partitioner.Murmur2Random,
        });
        // The command line states these explicitly; they win over the command config file.
        config.Acks = acks;
        config.CompressionType = compression;
        if (idempotent) config.EnableIdempotence = true;

        var stats = new Stats();
        var sw = Stopwatch.StartNew();
        using (var producer = new ProducerBuilder<byte[]?, byte[]>(config)
            .SetLogHandler((_, m) => settings.OnLog(m))
            .SetErrorHandler((_, e) => settings.OnError(e))
            .Build())
        {
            var target = partition >= 0 ? new TopicPartition(topic, partition) : new TopicPartition(topic, Partition.Any);
            using var stdin = new StreamReader(Console.OpenStandardInput(), new UTF8Encoding(false), detectEncodingFromByteOrderMarks: false, bufferSize: 64 * 1024);
            long lineNumber = 0;
            while (stdin.ReadLine() is { } line)
            {
                lineNumber++;
                byte[]? key = null;
                string value = line;
                if (separator is not null)
                {
                    int at = line.IndexOf(separator, StringComparison.Ordinal);
                    if (at < 0)
                    {
                        stats.Fail($"line {lineNumber}: no key separator '{separator}'; not sent");
                        continue;
                    }
                    key = Encoding.UTF8.GetBytes(line[..at]);
                    value = line[(at + separator.Length)..];
                }
                var message = new Message<byte[]?, byte[]> { Key = key, Value = Encoding.UTF8.GetBytes(value) };
                if (headers.Count > 0)
                {
                    message.Headers = [];
                    foreach (var (k, v) in headers) message.Headers.Add(k, v);
                }
                Send(producer, target, message, lineNumber, stats);
            }
            // Flush returns the records still in flight when the wait ends; with the wait longer
            // than message.timeout.ms each of those has normally failed by then anyway.
            int left = producer.Flush(TimeSpan.FromMilliseconds(timeoutMs + 10_000L));
            if (left > 0) stats.Fail($"{left} records still undelivered at the end of the wait", left);
        }
        sw.Stop();
        long sent = Interlocked.Read(ref stats.Delivered);
        long failed = Interlocked.Read(ref stats.Failed);
        Console.Error.WriteLine(
            $"freshet produce: {sent} record{(sent == 1 ? "" : "s")} delivered to '{topic}', {failed} failed ({sw.Elapsed.TotalSeconds:F2} s)");
        return Task.FromResult(failed > 0 ? 1 : 0);
    }

    private static void Send(IProducer<byte[]?, byte[]> producer, TopicPartition target, Message<byte[]?, byte[]> message, long lineNumber, Stats stats)
    {
        while (true)
        {
            try
            {
                producer.Produce(target, message, report =>
                {
                    if (report.Error.IsError) stats.Fail($"line {lineNumber}: {KafkaErrors.Describe(report.Error)}");
                    else Interlocked.Increment(ref stats.Delivered);
                });
                return;
            }
            catch (ProduceException<byte[]?, byte[]> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
            {
                // Input faster than the cluster: wait for deliveries to make room.
                producer.Poll(TimeSpan.FromMilliseconds(50));
            }
            catch (ProduceException<byte[]?, byte[]> e)
            {
                stats.Fail($"line {lineNumber}: {KafkaErrors.Describe(e.Error)}");
                return;
            }
        }
    }

    private sealed class Stats
    {
        public long Delivered;
        public long Failed;

        public void Fail(string message, long count = 1)
        {
            if (Interlocked.Add(ref Failed, count) - count < MaxReportedFailures)
                Console.Error.WriteLine($"freshet produce: {message}");
        }
    }
}
