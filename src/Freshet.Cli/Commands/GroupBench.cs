using System.Diagnostics;
using System.Globalization;
using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace Freshet.Cli.Commands;

/// <summary>
/// Consumer group measurements for `freshet bench --phases groups`: how many offset commits one
/// consumer makes per second, how long ten members take from subscribing to a stable group, and
/// how long a crashed member's partitions stay unconsumed.
/// </summary>
internal static class GroupBench
{
    public sealed record Result(double CommitsPerSecond, double JoinToStableMs, double CrashToConsumedMs, int SessionTimeoutMs);

    public static async Task<Result> RunAsync(string bootstrap, IAdminClient admin, string protocol)
    {
        double commits = Commits(bootstrap, admin, protocol);
        double join = await JoinAsync(bootstrap, admin, protocol);
        const int session = 6000;
        double crash = await CrashAsync(bootstrap, admin, protocol, session);
        return new Result(commits, join, crash, session);
    }

    private static ConsumerConfig Member(string bootstrap, string group, string protocol, int sessionTimeoutMs = 10_000)
    {
        var c = new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = group,
            EnableAutoCommit = false,
            AutoOffsetReset = AutoOffsetReset.Earliest,
            FetchWaitMaxMs = 100,
        };
        if (protocol == "consumer")
        {
            c.Set("group.protocol", "consumer");
        }
        else
        {
            c.SessionTimeoutMs = sessionTimeoutMs;
            c.HeartbeatIntervalMs = 500;
        }
        return c;
    }

    /// <summary>Synchronous commits of one partition's offset, back to back, for 5 s.</summary>
    private static double Commits(string bootstrap, IAdminClient admin, string protocol)
    {
        string topic = "bench-commit-" + Guid.NewGuid().ToString("N")[..6];
        admin.CreateTopicsAsync([new TopicSpecification { Name = topic, NumPartitions = 1, ReplicationFactor = 1 }]).GetAwaiter().GetResult();
        using var c = new ConsumerBuilder<Ignore, byte[]>(Member(bootstrap, "bench-commit-" + Guid.NewGuid().ToString("N")[..6], protocol)).Build();
        c.Assign(new TopicPartitionOffset(topic, 0, 0));
        long n = 0;
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < TimeSpan.FromSeconds(5))
        {
            c.Commit([new TopicPartitionOffset(topic, 0, n + 1)]);
            n++;
        }
        double rate = n / sw.Elapsed.TotalSeconds;
        c.Close();
        admin.DeleteTopicsAsync([topic]).GetAwaiter().GetResult();
        return rate;
    }

    /// <summary>Ten members subscribe at once; time until every one has partitions assigned.</summary>
    private static async Task<double> JoinAsync(string bootstrap, IAdminClient admin, string protocol)
    {
        string topic = "bench-join-" + Guid.NewGuid().ToString("N")[..6];
        string group = "bench-join-" + Guid.NewGuid().ToString("N")[..6];
        await admin.CreateTopicsAsync([new TopicSpecification { Name = topic, NumPartitions = 10, ReplicationFactor = 1 }]);
        var assigned = new int[10];
        var consumers = new List<IConsumer<Ignore, byte[]>>();
        using var stop = new CancellationTokenSource();
        var sw = Stopwatch.StartNew();
        var loops = new List<Task>();
        for (int i = 0; i < 10; i++)
        {
            int me = i;
            var c = new ConsumerBuilder<Ignore, byte[]>(Member(bootstrap, group, protocol))
                // Counts, not flags: with incremental protocols (cooperative, KIP-848) a member may
                // give up some partitions and keep the rest.
                .SetPartitionsAssignedHandler((_, ps) => Interlocked.Add(ref assigned[me], ps.Count))
                .SetPartitionsRevokedHandler((_, ps) => Interlocked.Add(ref assigned[me], -ps.Count))
                .SetPartitionsLostHandler((_, ps) => Interlocked.Add(ref assigned[me], -ps.Count))
                .Build();
            c.Subscribe(topic);
            consumers.Add(c);
            loops.Add(Dedicated(() => { while (!stop.IsCancellationRequested) c.Consume(50); }));
        }
        double ms = -1;
        while (sw.Elapsed < TimeSpan.FromSeconds(60))
        {
            if (Enumerable.Range(0, 10).All(i => Volatile.Read(ref assigned[i]) == 1))
            {
                ms = sw.Elapsed.TotalMilliseconds;
                break;
            }
            await Task.Delay(5);
        }
        stop.Cancel();
        await Task.WhenAll(loops);
        foreach (var c in consumers)
        {
            c.Close();
            c.Dispose();
        }
        await admin.DeleteTopicsAsync([topic]);
        if (ms < 0) throw new InvalidOperationException("ten members did not all get partitions within 60 s");
        return ms;
    }

    /// <summary>
    /// Two in-process members and one `freshet consume --group` child share 6 partitions while a
    /// producer writes to all of them; the child is killed with SIGKILL and the time until one of
    /// its partitions is read again by a survivor is measured. Dominated by the session timeout.
    /// </summary>
    private static async Task<double> CrashAsync(string bootstrap, IAdminClient admin, string protocol, int sessionTimeoutMs)
    {
        string topic = "bench-crash-" + Guid.NewGuid().ToString("N")[..6];
        string group = "bench-crash-" + Guid.NewGuid().ToString("N")[..6];
        await admin.CreateTopicsAsync([new TopicSpecification { Name = topic, NumPartitions = 6, ReplicationFactor = 1 }]);
        using var stop = new CancellationTokenSource();
        var producing = Dedicated(() =>
        {
            using var p = new ProducerBuilder<Null, string>(new ProducerConfig { BootstrapServers = bootstrap, LingerMs = 0 }).Build();
            for (int i = 0; !stop.IsCancellationRequested; i++)
            {
                p.Produce(new TopicPartition(topic, i % 6), new Message<Null, string> { Value = "x" });
                Thread.Sleep(1);
            }
            p.Flush(TimeSpan.FromSeconds(5));
        });
        string config = Path.GetTempFileName();
        await File.WriteAllLinesAsync(config, protocol == "consumer"
            ? ["fetch.wait.max.ms=100"]
            : [$"session.timeout.ms={sessionTimeoutMs}", "heartbeat.interval.ms=500"]);
        var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") psi.ArgumentList.Add(typeof(GroupBench).Assembly.Location);
        foreach (var a in new[] { "consume", "--topic", topic, "--group", group, "--from", "end", "--bootstrap-server", bootstrap, "--command-config", config,
                     "--group-protocol", protocol })
            psi.ArgumentList.Add(a);
        using var victim = Process.Start(psi)!;
        victim.OutputDataReceived += (_, _) => { };
        victim.ErrorDataReceived += (_, _) => { };
        victim.BeginOutputReadLine();
        victim.BeginErrorReadLine();

        var lastRead = new long[6];
        var owners = new int[6];
        var survivors = new List<IConsumer<Ignore, string>>();
        var loops = new List<Task>();
        for (int i = 0; i < 2; i++)
        {
            int me = i + 1;
            var c = new ConsumerBuilder<Ignore, string>(Member(bootstrap, group, protocol, sessionTimeoutMs)).Build();
            c.Subscribe(topic);
            survivors.Add(c);
            loops.Add(Dedicated(() =>
            {
                while (!stop.IsCancellationRequested)
                {
                    var cr = c.Consume(20);
                    if (cr is null) continue;
                    Volatile.Write(ref lastRead[cr.Partition.Value], Stopwatch.GetTimestamp());
                    Volatile.Write(ref owners[cr.Partition.Value], me);
                }
            }));
        }
        // Wait until the three members share the partitions (each survivor reads some, the child the rest).
        var sw = Stopwatch.StartNew();
        int[] victimPartitions = [];
        while (sw.Elapsed < TimeSpan.FromSeconds(60))
        {
            await Task.Delay(500);
            try
            {
                var d = (await admin.DescribeConsumerGroupsAsync([group])).ConsumerGroupDescriptions.Single();
                if (d.Members.Count == 3 && d.Members.All(m => m.Assignment.TopicPartitions.Count > 0))
                {
                    victimPartitions = d.Members.Where(m => m.ClientId == "freshet-consume")
                        .SelectMany(m => m.Assignment.TopicPartitions.Select(tp => tp.Partition.Value)).ToArray();
                    if (victimPartitions.Length > 0) break;
                }
            }
            catch (KafkaException)
            {
            }
        }
        if (victimPartitions.Length == 0) throw new InvalidOperationException("the crash phase's group did not settle");
        await Task.Delay(1000);
        long killedAt = Stopwatch.GetTimestamp();
        victim.Kill(entireProcessTree: true);
        double ms = -1;
        while (Stopwatch.GetElapsedTime(killedAt) < TimeSpan.FromSeconds(120))
        {
            if (victimPartitions.Any(p => Volatile.Read(ref lastRead[p]) > killedAt))
            {
                long first = victimPartitions.Select(p => Volatile.Read(ref lastRead[p])).Where(t => t > killedAt).Min();
                ms = (first - killedAt) * 1000.0 / Stopwatch.Frequency;
                break;
            }
            await Task.Delay(5);
        }
        stop.Cancel();
        await Task.WhenAll(loops.Append(producing));
        foreach (var c in survivors)
        {
            c.Close();
            c.Dispose();
        }
        File.Delete(config);
        await admin.DeleteTopicsAsync([topic]);
        if (ms < 0) throw new InvalidOperationException("the crashed member's partitions were not read again within 120 s");
        return ms;
    }

    /// <summary>
    /// A blocking client loop on a thread of its own: ten members polling on thread-pool threads
    /// would starve the pool, which then adds a thread every half second or so, and the
    /// measurement would be of that, not of the group.
    /// </summary>
    private static Task Dedicated(Action loop)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var t = new Thread(() =>
        {
            try
            {
                loop();
                done.SetResult();
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        }) { IsBackground = true };
        t.Start();
        return done.Task;
    }

    public static string Format(Result r, string protocol)
    {
        string session = protocol == "consumer"
            ? "(session timeout: the broker's group.consumer.session.timeout.ms)"
            : string.Create(CultureInfo.InvariantCulture, $"(session.timeout.ms={r.SessionTimeoutMs})");
        return string.Create(CultureInfo.InvariantCulture,
            $"groups   protocol {protocol,-8}  offset commits {r.CommitsPerSecond,8:N0}/s (one consumer, synchronous)  join to stable (10 members) {r.JoinToStableMs,7:F0} ms  " +
            $"crash to consumed again {r.CrashToConsumedMs,7:F0} ms {session}");
    }
}
