using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json.Nodes;
using Confluent.Kafka;

namespace Freshet.Cli.Commands;

/// <summary>
/// `freshet consume`: prints a topic's records. Without --group, partitions are assigned directly,
/// nothing is committed, and any Kafka-protocol broker serves it, group coordinator or not; with
/// --group it is a member of that consumer group and commits what it printed, like
/// kafka-console-consumer.sh --group.
/// </summary>
public static class ConsumeCommand
{
    public const string Usage = """
        usage: freshet consume --topic T [options]

        Prints the records of a topic (every partition, or one with --partition) until interrupted,
        --max-messages records were printed, or nothing arrived for --timeout-ms. Without --group no
        consumer group is used and no offsets are committed. A summary goes to stderr.

        options:
          --group G            consume as a member of consumer group G: partitions are shared with the
                               group's other members and offsets of printed records are committed
                               (every auto.commit.interval.ms, and on exit). --from then only applies
                               where the group has no committed offset (beginning or end).
          --group-instance-id I  static membership (group.instance.id)
          --group-protocol P   classic (default) or consumer (KIP-848)
          --from WHERE         where to start in each partition (default end):
                                 beginning | end
                                 N                 offset N (a partition that lacks it is an error)
                                 @MS               first record at or after MS milliseconds since the epoch
                                 ISO-8601 time     e.g. 2024-05-01T12:00:00Z (no zone: UTC)
          --partition P        read only partition P
          --max-messages N     stop after N records
          --timeout-ms N       stop when no record arrived for N ms
          --format text|json   text (default): one line per record, value only unless the
                               --print-* options add fields, tab-separated, in the order
                               partition:offset, headers (k=v,k=v), key, value; null prints as null.
                               json: one object per line with topic, partition, offset, timestamp,
                               timestampType, key, value and headers ([{"key","value"}...]).
                               Keys and values are UTF-8 text; bytes that are not valid UTF-8 are
                               base64, flagged by "keyEncoding"/"valueEncoding": "base64" (in a
                               header object: "valueEncoding"). The --print-* options do not apply.
          --print-key          text format: print the key
          --print-headers      text format: print the headers
          --print-offset       text format: print partition:offset
        """ + "\n\n" + ClientSettings.CommonUsage;

    private static readonly HashSet<string> Flags = ["print-key", "print-headers", "print-offset", "help"];

    /// <summary>Parsed --from.</summary>
    private readonly record struct StartAt(Offset Offset, long? Timestamp);

    private sealed record Options(
        string Topic, int? Partition, StartAt From, long MaxMessages, int? IdleTimeoutMs, bool Json, bool PrintKey, bool PrintHeaders, bool PrintOffset,
        string? Group = null, string? GroupInstanceId = null, string? GroupProtocol = null);

    public static Task<int> RunAsync(string[] args)
    {
        var cl = new CommandLine(args, Flags);
        string topic = cl.Require("topic");
        if (topic.Length == 0) throw new UsageException("--topic must not be empty");
        int? partition = cl.Has("partition") ? cl.GetInt("partition", 0) : null;
        if (partition < 0) throw new UsageException("--partition must not be negative");
        var from = ParseFrom(cl.Get("from") ?? "end");
        long max = cl.GetLong("max-messages", long.MaxValue);
        if (max <= 0) throw new UsageException("--max-messages must be positive");
        int? idle = cl.Has("timeout-ms") ? cl.GetInt("timeout-ms", 0) : null;
        if (idle <= 0) throw new UsageException("--timeout-ms must be positive");
        bool json = (cl.Get("format") ?? "text").ToLowerInvariant() switch
        {
            "text" => false,
            "json" => true,
            var other => throw new UsageException($"--format must be text or json, got '{other}'"),
        };
        string? group = cl.Get("group");
        string? instance = cl.Get("group-instance-id");
        string? protocol = cl.Get("group-protocol");
        if (group is not null)
        {
            if (group.Length == 0) throw new UsageException("--group must not be empty");
            if (partition is not null) throw new UsageException("--partition cannot be used with --group: the group assigns partitions");
            if (from.Offset != Offset.Beginning && from.Offset != Offset.End)
                throw new UsageException("with --group, --from must be beginning or end (where the group has no committed offset)");
            if (protocol is not null and not ("classic" or "consumer")) throw new UsageException($"--group-protocol must be classic or consumer, got '{protocol}'");
        }
        else if (instance is not null || protocol is not null)
        {
            throw new UsageException("--group-instance-id and --group-protocol need --group");
        }
        var options = new Options(topic, partition, from, max, idle, json, cl.Has("print-key"), cl.Has("print-headers"), cl.Has("print-offset"),
            group, instance, protocol);
        var settings = ClientSettings.Read(cl);
        cl.EnsureAllUsed();
        if (cl.Positionals.Count > 0) throw new UsageException($"unexpected argument '{cl.Positionals[0]}'");
        return Task.FromResult(Run(options, settings));
    }

    private static StartAt ParseFrom(string s)
    {
        switch (s.ToLowerInvariant())
        {
            case "beginning" or "earliest":
                return new StartAt(Offset.Beginning, null);
            case "end" or "latest":
                return new StartAt(Offset.End, null);
        }
        if (long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out long offset))
        {
            // Epoch milliseconds look like a number too; offsets this large are not seen in practice.
            if (offset >= 1_000_000_000_000)
                Console.Error.WriteLine($"freshet consume: note: reading {s} as an offset; write @{s} for a time in milliseconds");
            return new StartAt(new Offset(offset), null);
        }
        if (s.StartsWith('@'))
        {
            if (long.TryParse(s.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out long ms))
                return new StartAt(Offset.Unset, ms);
            throw new UsageException($"--from @MS expects milliseconds since the epoch, got '{s}'");
        }
        if (DateTimeOffset.TryParse(s, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AllowWhiteSpaces, out var time)
            && s.Length >= 10 && char.IsDigit(s[0]))
            return new StartAt(Offset.Unset, time.ToUnixTimeMilliseconds());
        throw new UsageException($"--from must be beginning, end, an offset, @milliseconds or an ISO-8601 time, got '{s}'");
    }

    private static int Run(Options o, ClientSettings settings)
    {
        var config = o.Group is not null ? GroupConfig(o, settings) : settings.Apply(new ConsumerConfig
        {
            ClientId = "freshet-consume",
            // Confluent.Kafka insists on a group id even for assigned partitions. assign() never
            // joins it and nothing is committed; at most librdkafka looks up its coordinator.
            GroupId = "freshet-consume-" + Guid.NewGuid().ToString("N")[..12],
            EnableAutoCommit = false,
            EnableAutoOffsetStore = false,
            // An explicit offset the partition lacks is the operator's mistake: say so rather than
            // silently jump. Beginning and end name a position that always exists.
            AutoOffsetReset = o.From.Offset == Offset.Beginning ? AutoOffsetReset.Earliest
                : o.From.Offset.Value >= 0 ? AutoOffsetReset.Error : AutoOffsetReset.Latest,
        });

        using var stop = new CancellationTokenSource();
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c =>
        {
            c.Cancel = true;
            stop.Cancel();
        });
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        Console.CancelKeyPress += onCancel;

        long printed = 0;
        var stdout = new StreamWriter(OpenStdout(), new UTF8Encoding(false), 64 * 1024) { AutoFlush = false };
        try
        {
            using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(config)
                .SetLogHandler((_, m) => settings.OnLog(m))
                .SetErrorHandler((_, e) => settings.OnError(e))
                .Build();
            if (o.Group is not null)
            {
                consumer.Subscribe(o.Topic);
            }
            else
            {
                var partitions = Partitions(consumer, o);
                consumer.Assign(StartOffsets(consumer, o, partitions));
            }

            var lastActivity = Environment.TickCount64;
            while (!stop.IsCancellationRequested && printed < o.MaxMessages)
            {
                int wait = 200;
                if (o.IdleTimeoutMs is int idle)
                {
                    long left = idle - (Environment.TickCount64 - lastActivity);
                    if (left <= 0) break;
                    wait = (int)Math.Min(wait, left);
                }
                ConsumeResult<byte[]?, byte[]?>? cr;
                try
                {
                    cr = consumer.Consume(wait);
                }
                catch (ConsumeException e)
                {
                    stdout.Flush();
                    string where = e.ConsumerRecord?.TopicPartitionOffset is { } tpo ? $"partition {tpo.Partition.Value} at offset {tpo.Offset}: " : "";
                    throw new CommandFailedException($"topic '{o.Topic}': {where}{KafkaErrors.Describe(e.Error)}");
                }
                if (cr is null || cr.IsPartitionEOF)
                {
                    // Nothing more right now: let a reader at the other end of a pipe see what we have.
                    stdout.Flush();
                    continue;
                }
                lastActivity = Environment.TickCount64;
                stdout.WriteLine(o.Json ? JsonLine(cr) : TextLine(cr, o));
                printed++;
                if (o.Group is not null)
                {
                    stdout.Flush();
                    consumer.StoreOffset(cr);
                }
            }
            stdout.Flush();
            consumer.Close();
        }
        catch (IOException)
        {
            // The reader went away (`| head`): not a failure of ours.
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
            try { stdout.Dispose(); }
            catch (IOException) { }
        }
        Console.Error.WriteLine($"freshet consume: {printed} record{(printed == 1 ? "" : "s")}");
        return 0;
    }

    /// <summary>A group member's settings: offsets of printed records committed periodically and on close.</summary>
    private static ConsumerConfig GroupConfig(Options o, ClientSettings settings)
    {
        var config = new ConsumerConfig
        {
            ClientId = "freshet-consume",
            GroupId = o.Group,
            GroupInstanceId = o.GroupInstanceId,
            EnableAutoCommit = true,
            // An offset is stored (and so committed) only after its record is written out: a
            // consumer killed mid-stream has its last records delivered again, never skipped.
            EnableAutoOffsetStore = false,
            AutoOffsetReset = o.From.Offset == Offset.Beginning ? AutoOffsetReset.Earliest : AutoOffsetReset.Latest,
        };
        if (o.GroupProtocol is not null) config.Set("group.protocol", o.GroupProtocol);
        return settings.Apply(config);
    }

    /// <summary>
    /// Standard output as a plain file stream: .NET's console stream swallows EPIPE, so after
    /// `| head` exits the command would go on reading forever. Written through the descriptor, a
    /// closed pipe surfaces as an IOException and the command ends.
    /// </summary>
    private static Stream OpenStdout() => OperatingSystem.IsWindows()
        ? Console.OpenStandardOutput()
        : new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(1, ownsHandle: false), FileAccess.Write, bufferSize: 0);

    /// <summary>The partitions to read, checked against the topic's metadata.</summary>
    private static List<TopicPartition> Partitions(IConsumer<byte[]?, byte[]?> consumer, Options o)
    {
        using var admin = new DependentAdminClientBuilder(consumer.Handle).Build();
        var md = admin.GetMetadata(o.Topic, TimeSpan.FromSeconds(30));
        var t = md.Topics.FirstOrDefault(t => t.Topic == o.Topic);
        if (t is null) throw new CommandFailedException($"topic '{o.Topic}': no metadata returned");
        if (t.Error.IsError) throw new CommandFailedException($"topic '{o.Topic}': {KafkaErrors.Describe(t.Error)}");
        var all = t.Partitions.Select(p => p.PartitionId).Order().ToList();
        if (o.Partition is int only)
        {
            if (!all.Contains(only))
                throw new CommandFailedException($"topic '{o.Topic}': UNKNOWN_TOPIC_OR_PARTITION: the topic has no partition {only} (it has {all.Count})");
            return [new TopicPartition(o.Topic, only)];
        }
        return [.. all.Select(p => new TopicPartition(o.Topic, p))];
    }

    private static List<TopicPartitionOffset> StartOffsets(IConsumer<byte[]?, byte[]?> consumer, Options o, List<TopicPartition> partitions)
    {
        if (o.From.Timestamp is not long ms) return [.. partitions.Select(tp => new TopicPartitionOffset(tp, o.From.Offset))];
        var found = consumer.OffsetsForTimes(partitions.Select(tp => new TopicPartitionTimestamp(tp, new Timestamp(ms, TimestampType.CreateTime))), TimeSpan.FromSeconds(30));
        var result = new List<TopicPartitionOffset>();
        foreach (var f in found)
        {
            // No record at or after the time: start at the end, where the next one will be.
            result.Add(new TopicPartitionOffset(f.TopicPartition, f.Offset.Value < 0 ? Offset.End : f.Offset));
        }
        return result;
    }

    private static string TextLine(ConsumeResult<byte[]?, byte[]?> cr, Options o)
    {
        var sb = new StringBuilder();
        if (o.PrintOffset) sb.Append(cr.Partition.Value).Append(':').Append(cr.Offset.Value).Append('\t');
        if (o.PrintHeaders)
        {
            var headers = cr.Message.Headers;
            if (headers is null || headers.Count == 0) sb.Append('-');
            else sb.AppendJoin(',', headers.Select(h => $"{h.Key}={Text(h.GetValueBytes())}"));
            sb.Append('\t');
        }
        if (o.PrintKey) sb.Append(Text(cr.Message.Key)).Append('\t');
        sb.Append(Text(cr.Message.Value));
        return sb.ToString();
    }

    /// <summary>Text output is for reading: invalid UTF-8 shows as replacement characters (use json for binary).</summary>
    private static string Text(byte[]? bytes) => bytes is null ? "null" : Encoding.UTF8.GetString(bytes);

    private static string JsonLine(ConsumeResult<byte[]?, byte[]?> cr)
    {
        var m = cr.Message;
        var o = new JsonObject
        {
            ["topic"] = cr.Topic,
            ["partition"] = cr.Partition.Value,
            ["offset"] = cr.Offset.Value,
            ["timestamp"] = m.Timestamp.Type == TimestampType.NotAvailable ? null : m.Timestamp.UnixTimestampMs,
            ["timestampType"] = m.Timestamp.Type switch
            {
                TimestampType.CreateTime => "CreateTime",
                TimestampType.LogAppendTime => "LogAppendTime",
                _ => null,
            },
        };
        AddBytes(o, "key", "keyEncoding", m.Key);
        AddBytes(o, "value", "valueEncoding", m.Value);
        var headers = new JsonArray();
        if (m.Headers is not null)
            foreach (var h in m.Headers)
            {
                var ho = new JsonObject { ["key"] = h.Key };
                AddBytes(ho, "value", "valueEncoding", h.GetValueBytes());
                headers.Add(ho);
            }
        o["headers"] = headers;
        return Output.ToJsonLine(o);
    }

    private static void AddBytes(JsonObject o, string name, string encodingName, byte[]? bytes)
    {
        o[name] = Output.BytesAsText(bytes, out bool base64);
        if (base64) o[encodingName] = "base64";
    }
}
