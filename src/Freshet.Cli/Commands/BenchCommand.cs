using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using HdrHistogram;

namespace Freshet.Cli.Commands;

/// <summary>
/// `freshet bench`: throughput and latency through Confluent.Kafka against a broker. By default it
/// starts its own `freshet server` process (temporary data directory, free port) so that the
/// broker's CPU time and peak memory can be read from /proc; --bootstrap-server measures any
/// Kafka-protocol broker instead (then broker CPU and memory are not reported).
/// </summary>
public static class BenchCommand
{
    public const string Usage = """
        usage: freshet bench [--bootstrap-server host:port] [--messages 2000000] [--size 100]
                             [--partitions 1,8] [--rate 20000] [--seconds 10] [--acks all|1] [--replication-factor 1]
                             [--server-override key=value]... [--consumer-property key=value]...
                             [--phases throughput,latency,groups,connections] [--group-protocols classic,consumer]
                             [--connections 1000,10000] [--json]

        For each partition count: produces --messages records of --size random bytes (acks=all,
        linger.ms=5) as fast as the client goes, then reads them all back; then runs a latency
        phase on one partition: --rate records/s for --seconds, each stamped with its send time,
        read by a consumer in the same process (end-to-end p50/p99/p99.9/max).
        The consumer runs with fetch.queue.backoff.ms=1 (librdkafka's default of 1000 ms stalls a fast
        consumer for whole seconds; --consumer-property fetch.queue.backoff.ms=1000 restores it).
        The groups phase measures synchronous offset commits per second by one consumer, the time
        from ten members subscribing to all of them holding partitions, and the time from a member's
        SIGKILL to its partitions being read again (the spawned broker runs with
        group.initial.rebalance.delay.ms=0, group.consumer.session.timeout.ms=6000 and
        group.consumer.heartbeat.interval.ms=500; with --bootstrap-server the broker's own settings apply).
        A fetch-raw phase reads the same data with bare Fetch requests to show the broker's own rate.
        The connections phase (not run unless named) opens --connections idle connections in steps, each
        sending ApiVersions and Metadata and then staying open, and reports the broker's resident memory
        (VmRSS) at each step and per idle connection; it needs the broker the bench starts, and a file
        descriptor limit above the largest step for the bench and the broker.
        Without --bootstrap-server a broker process is started and its start-up time, CPU seconds
        per GB and peak resident memory are reported too.
        """;

    private sealed record Row(string Phase, int Partitions, long Messages, int Size, double Seconds, double MsgPerSec, double MbPerSec,
        double? P50 = null, double? P99 = null, double? P999 = null, double? Max = null, double? BrokerCpuSeconds = null, double? CpuSecondsPerGb = null);

    public static async Task<int> RunAsync(string[] args)
    {
        var cl = new CommandLine(args, new HashSet<string> { "json" });
        string? bootstrap = cl.Get("bootstrap-server");
        long messages = cl.GetLong("messages", 2_000_000);
        int size = cl.GetInt("size", 100);
        var partitionCounts = (cl.Get("partitions") ?? "1,8").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToList();
        int rate = cl.GetInt("rate", 20_000);
        int seconds = cl.GetInt("seconds", 10);
        string acks = cl.Get("acks") ?? "all";
        short replicationFactor = (short)cl.GetInt("replication-factor", 1);
        if (replicationFactor < 1) throw new UsageException("--replication-factor must be at least 1");
        var phases = (cl.Get("phases") ?? "throughput,latency,groups").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToHashSet();
        if (phases.Except(["throughput", "latency", "groups", "connections"]).FirstOrDefault() is { } unknownPhase)
            throw new UsageException($"unknown phase '{unknownPhase}' (throughput, latency, groups, connections)");
        var connectionCounts = (cl.Get("connections") ?? "1000,10000").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(s => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n > 0 ? n : throw new UsageException($"--connections expects positive counts, got '{s}'")).ToList();
        if (phases.Contains("connections") && bootstrap is not null)
            throw new UsageException("the connections phase reads the broker's memory from /proc: run it without --bootstrap-server (the bench starts its own broker)");
        var groupProtocols = (cl.Get("group-protocols") ?? "classic").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        bool json = cl.Has("json");
        var serverOverrides = cl.GetAll("server-override");
        // librdkafka stops fetching for fetch.queue.backoff.ms (1000 ms by default) whenever its local
        // queue holds queued.min.messages: a consumer fed faster than it drains then idles for whole
        // seconds, so its rate measures that timer, not the broker. 1 ms keeps it fetching.
        var consumerProperties = new Dictionary<string, string>(StringComparer.Ordinal) { ["fetch.queue.backoff.ms"] = "1" };
        foreach (var p in cl.GetAll("consumer-property"))
        {
            int eq = p.IndexOf('=');
            if (eq <= 0) throw new UsageException($"--consumer-property expects key=value, got '{p}'");
            consumerProperties[p[..eq]] = p[(eq + 1)..];
        }
        cl.EnsureAllUsed();
        if (size < 8) throw new UsageException("--size must be at least 8 (the latency phase stamps 8 bytes)");
        KafkaClientLibrary.EnsureLoaded();

        BrokerChild? child = null;
        if (bootstrap is null)
        {
            // A new group would otherwise wait group.initial.rebalance.delay.ms (3 s) before its first
            // rebalance, which the join measurement would mostly be. Consumer-protocol members take
            // their session timeout and heartbeat interval from the broker (45 s and 5 s by default):
            // give them the classic members' 6 s and 500 ms so the two protocols are compared on
            // the same footing. An explicit override wins.
            var overrides = serverOverrides.ToList();
            foreach (string dflt in (string[])["group.initial.rebalance.delay.ms=0", "group.consumer.session.timeout.ms=6000", "group.consumer.heartbeat.interval.ms=500"])
            {
                string key = dflt[..(dflt.IndexOf('=', StringComparison.Ordinal) + 1)];
                if (!overrides.Any(o => o.StartsWith(key, StringComparison.Ordinal))) overrides.Add(dflt);
            }
            child = await BrokerChild.StartAsync(overrides);
            bootstrap = child.Bootstrap;
            Console.Error.WriteLine($"bench: started broker pid {child.Pid} at {bootstrap} in {child.StartupMs:F0} ms (ready line)");
        }
        var rows = new List<Row>();
        try
        {
            using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = bootstrap }).Build();
            var payload = new byte[size];
            Random.Shared.NextBytes(payload);
            foreach (int parts in phases.Contains("throughput") ? partitionCounts : [])
            {
                string topic = $"bench-{parts}-{Guid.NewGuid().ToString("N")[..6]}";
                await admin.CreateTopicsAsync([new TopicSpecification { Name = topic, NumPartitions = parts, ReplicationFactor = replicationFactor }]);
                double cpu0 = child?.CpuSeconds() ?? 0;
                var produce = Produce(bootstrap, topic, messages, payload, acks);
                double cpu1 = child?.CpuSeconds() ?? 0;
                var consume = Consume(bootstrap, topic, parts, messages, consumerProperties);
                double cpu2 = child?.CpuSeconds() ?? 0;
                // The bare-Fetch reader talks to one broker: it needs that broker to lead every partition (one node).
                bool rawPossible = !bootstrap.Contains(',', StringComparison.Ordinal) && replicationFactor == 1;
                double raw = rawPossible ? await RawFetchAsync(bootstrap, topic, parts, messages) : double.NaN;
                double cpu3 = child?.CpuSeconds() ?? 0;
                double gb = messages * (double)size / (1L << 30);
                rows.Add(new Row("produce", parts, messages, size, produce, messages / produce, messages * (double)size / produce / (1 << 20),
                    BrokerCpuSeconds: child is null ? null : cpu1 - cpu0, CpuSecondsPerGb: child is null ? null : (cpu1 - cpu0) / gb));
                rows.Add(new Row("consume", parts, messages, size, consume, messages / consume, messages * (double)size / consume / (1 << 20),
                    BrokerCpuSeconds: child is null ? null : cpu2 - cpu1, CpuSecondsPerGb: child is null ? null : (cpu2 - cpu1) / gb));
                if (rawPossible)
                    rows.Add(new Row("fetch-raw", parts, messages, size, raw, messages / raw, messages * (double)size / raw / (1 << 20),
                        BrokerCpuSeconds: child is null ? null : cpu3 - cpu2, CpuSecondsPerGb: child is null ? null : (cpu3 - cpu2) / gb));
                await admin.DeleteTopicsAsync([topic]);
                foreach (var row in rows.TakeLast(rawPossible ? 3 : 2)) Print(row, json);
            }
            if (phases.Contains("latency"))
            {
                string topic = $"bench-lat-{Guid.NewGuid().ToString("N")[..6]}";
                await admin.CreateTopicsAsync([new TopicSpecification { Name = topic, NumPartitions = 1, ReplicationFactor = replicationFactor }]);
                var row = Latency(bootstrap, topic, rate, seconds, size);
                rows.Add(row);
                Print(row, json);
                await admin.DeleteTopicsAsync([topic]);
            }
            if (phases.Contains("connections"))
            {
                await ConnectionsBench.RunAsync(bootstrap, connectionCounts, child!.RssBytes, child!.CpuSeconds, step =>
                {
                    if (json) Console.Out.WriteLine(JsonSerializer.Serialize(new { phase = "connections", step.Connections, step.RssBytes, step.BytesPerConnection, step.KernelTcpBytes, step.OpenSeconds, step.BrokerCpuSeconds }));
                    else Console.Out.WriteLine(ConnectionsBench.Format(step));
                });
            }
            if (phases.Contains("groups"))
            {
                foreach (var protocol in groupProtocols)
                {
                    var g = await GroupBench.RunAsync(bootstrap, admin, protocol);
                    if (json) Console.Out.WriteLine(JsonSerializer.Serialize(new { phase = "groups", protocol, g.CommitsPerSecond, g.JoinToStableMs, g.CrashToConsumedMs, g.SessionTimeoutMs }));
                    else Console.Out.WriteLine(GroupBench.Format(g, protocol));
                }
            }
        }
        finally
        {
            if (child is not null)
            {
                long rssPeak = child.PeakRssBytes();
                await child.DisposeAsync();
                string summary = $"broker: start-up {child.StartupMs:F0} ms to ready, peak resident memory {rssPeak / (1 << 20)} MiB";
                if (json) Console.Out.WriteLine(JsonSerializer.Serialize(new { broker = new { startupMs = child.StartupMs, peakRssBytes = rssPeak } }));
                else Console.Out.WriteLine(summary);
            }
        }
        return 0;
    }

    private static void Print(Row r, bool json)
    {
        if (json)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(r));
            return;
        }
        string lat = r.P50 is null ? "" : $"  p50 {r.P50:F3} ms  p99 {r.P99:F3} ms  p99.9 {r.P999:F3} ms  max {r.Max:F3} ms";
        string cpu = r.CpuSecondsPerGb is null ? "" : $"  broker cpu {r.BrokerCpuSeconds:F2} s ({r.CpuSecondsPerGb:F2} s/GB)";
        Console.Out.WriteLine($"{r.Phase,-8} partitions {r.Partitions,2}  {r.Messages,9} x {r.Size} B  {r.Seconds,7:F2} s  {r.MsgPerSec,10:N0} msg/s  {r.MbPerSec,7:F1} MB/s{lat}{cpu}");
    }

    private static double Produce(string bootstrap, string topic, long count, byte[] payload, string acks)
    {
        var config = new ProducerConfig
        {
            BootstrapServers = bootstrap,
            Acks = acks == "1" ? Acks.Leader : Acks.All,
            LingerMs = 5,
            EnableIdempotence = false,
            DeliveryReportFields = "none",
        };
        long errors = 0;
        string? firstError = null;
        using var p = new ProducerBuilder<Null, byte[]>(config).Build();
        var sw = Stopwatch.StartNew();
        Action<DeliveryReport<Null, byte[]>> report = r =>
        {
            if (r.Error.IsError && Interlocked.Increment(ref errors) == 1) firstError = r.Error.ToString();
        };
        var m = new Message<Null, byte[]> { Value = payload };
        for (long i = 0; i < count; i++)
        {
            while (true)
            {
                try
                {
                    p.Produce(topic, m, report);
                    break;
                }
                catch (ProduceException<Null, byte[]> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
                {
                    p.Poll(TimeSpan.FromMilliseconds(1));
                }
            }
        }
        while (p.Flush(TimeSpan.FromSeconds(5)) > 0) { }
        sw.Stop();
        if (errors > 0) throw new InvalidOperationException($"produce: {errors} delivery errors, first: {firstError}");
        return sw.Elapsed.TotalSeconds;
    }

    private static double Consume(string bootstrap, string topic, int partitions, long count, IReadOnlyDictionary<string, string> consumerProperties)
    {
        var config = new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = "bench-" + Guid.NewGuid().ToString("N")[..6],
            EnableAutoCommit = false,
            FetchWaitMaxMs = 100,
        };
        foreach (var (k, v) in consumerProperties) config.Set(k, v);
        using var c = new ConsumerBuilder<Ignore, byte[]>(config).Build();
        c.Assign(Enumerable.Range(0, partitions).Select(p => new TopicPartitionOffset(topic, p, new Offset(0))));
        long got = 0;
        var sw = Stopwatch.StartNew();
        var idle = Stopwatch.StartNew();
        while (got < count)
        {
            var cr = c.Consume(TimeSpan.FromMilliseconds(100));
            if (cr is null)
            {
                if (idle.Elapsed > TimeSpan.FromSeconds(30)) throw new InvalidOperationException($"consume stalled at {got} of {count}");
                continue;
            }
            idle.Restart();
            got++;
        }
        sw.Stop();
        c.Close();
        return sw.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// Reads the topic back with bare Fetch requests (1 MiB per partition, one partition after the
    /// other) and counts records from the batch headers without decoding them: what the broker can
    /// serve when the client costs next to nothing, beside what a real client reaches.
    /// </summary>
    private static async Task<double> RawFetchAsync(string bootstrap, string topic, int partitions, long count)
    {
        int colon = bootstrap.LastIndexOf(':');
        using var tcp = new System.Net.Sockets.TcpClient { NoDelay = true, ReceiveBufferSize = 4 << 20 };
        await tcp.ConnectAsync(bootstrap[..colon], int.Parse(bootstrap[(colon + 1)..], CultureInfo.InvariantCulture));
        var stream = tcp.GetStream();
        var buffer = new byte[8 << 20];
        var sizeBytes = new byte[4];
        long got = 0;
        int correlation = 0;
        var sw = Stopwatch.StartNew();
        for (int p = 0; p < partitions; p++)
        {
            long offset = 0;
            while (true)
            {
                var fetch = new Protocol.Messages.FetchRequest { ReplicaId = -1, MaxWaitMs = 0, MinBytes = 0, MaxBytes = 8 << 20 };
                fetch.Topics.Add(new() { Topic = topic, Partitions = [new() { Partition = p, FetchOffset = offset, PartitionMaxBytes = 1 << 20 }] });
                var header = new Protocol.Messages.RequestHeader { RequestApiKey = 1, RequestApiVersion = 12, CorrelationId = ++correlation, ClientId = "bench" };
                var size = new Protocol.Wire.MessageSize();
                header.AddSize(ref size, 2);
                fetch.AddSize(ref size, 12);
                var frame = new byte[4 + size.Total];
                BinaryPrimitives.WriteInt32BigEndian(frame, size.Total);
                var w = new Protocol.Wire.ProtocolWriter(frame.AsSpan(4));
                header.Write(ref w, 2);
                fetch.Write(ref w, 12);
                await stream.WriteAsync(frame);
                await stream.ReadExactlyAsync(sizeBytes);
                int n = BinaryPrimitives.ReadInt32BigEndian(sizeBytes);
                if (n > buffer.Length) buffer = new byte[n];
                await stream.ReadExactlyAsync(buffer.AsMemory(0, n));
                var r = new Protocol.Wire.ProtocolReader(buffer.AsMemory(0, n));
                new Protocol.Messages.ResponseHeader().Read(ref r, 1);
                var response = new Protocol.Messages.FetchResponse();
                response.Read(ref r, 12);
                var records = response.Responses[0].Partitions[0].Records?.Memory ?? default;
                if (records.Length == 0) break;
                int pos = 0;
                while (records.Length - pos >= Protocol.Records.RecordBatch.HeaderSize)
                {
                    int batchSize = Protocol.Records.RecordBatch.PeekSize(records.Span[pos..]);
                    if (batchSize > records.Length - pos) break;
                    var batch = new Protocol.Records.RecordBatch(records.Span.Slice(pos, batchSize));
                    got += batch.RecordsCount;
                    offset = batch.NextOffset;
                    pos += batchSize;
                }
            }
        }
        sw.Stop();
        if (got != count) throw new InvalidOperationException($"fetch-raw: read {got} records, expected {count}");
        return sw.Elapsed.TotalSeconds;
    }

    private static Row Latency(string bootstrap, string topic, int rate, int seconds, int size)
    {
        var histogram = new LongHistogram(TimeStamp.Seconds(60), 3);
        using var consumer = new ConsumerBuilder<Ignore, byte[]>(new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = "bench-lat-" + Guid.NewGuid().ToString("N")[..6],
            EnableAutoCommit = false,
            FetchWaitMaxMs = 100,
            FetchMinBytes = 1,
        }).Build();
        consumer.Assign(new TopicPartitionOffset(topic, 0, Offset.End));
        long expected = (long)rate * seconds;
        long received = 0;
        using var stop = new CancellationTokenSource();
        var reader = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested && received < expected)
            {
                var cr = consumer.Consume(TimeSpan.FromMilliseconds(50));
                if (cr is null) continue;
                long sent = BinaryPrimitives.ReadInt64LittleEndian(cr.Message.Value);
                long now = Stopwatch.GetTimestamp();
                histogram.RecordValue(Math.Max(0, now - sent));
                received++;
            }
        });
        // Let the consumer's assignment settle before sending.
        Thread.Sleep(1000);
        using var p = new ProducerBuilder<Null, byte[]>(new ProducerConfig { BootstrapServers = bootstrap, Acks = Acks.All, LingerMs = 0 }).Build();
        var sw = Stopwatch.StartNew();
        var payloads = new byte[size];
        for (long i = 0; i < expected; i++)
        {
            // Pace by schedule: message i is due at i/rate seconds.
            // Sleep when the next send is a millisecond or more away, yield otherwise (as ../shared/bench's
            // peerbench paces): a spinning sender would take a core from the broker on a small machine.
            long dueTicks = (long)(i * (double)Stopwatch.Frequency / rate);
            while (sw.ElapsedTicks < dueTicks)
            {
                if (dueTicks - sw.ElapsedTicks >= Stopwatch.Frequency / 1000) Thread.Sleep(1);
                else Thread.Yield();
            }
            var value = new byte[size];
            BinaryPrimitives.WriteInt64LittleEndian(value, Stopwatch.GetTimestamp());
            while (true)
            {
                try
                {
                    p.Produce(topic, new Message<Null, byte[]> { Value = value });
                    break;
                }
                catch (ProduceException<Null, byte[]> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
                {
                    p.Poll(TimeSpan.FromMilliseconds(1));
                }
            }
            if ((i & 255) == 0) p.Poll(TimeSpan.Zero);
        }
        double sendSeconds = sw.Elapsed.TotalSeconds;
        p.Flush(TimeSpan.FromSeconds(30));
        if (!reader.Wait(TimeSpan.FromSeconds(30))) stop.Cancel();
        double ToMs(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
        return new Row("latency", 1, received, size, sendSeconds, received / sendSeconds, received * (double)size / sendSeconds / (1 << 20),
            ToMs(histogram.GetValueAtPercentile(50)), ToMs(histogram.GetValueAtPercentile(99)), ToMs(histogram.GetValueAtPercentile(99.9)), ToMs(histogram.GetMaxValue()));
    }

    /// <summary>A `freshet server` child process on a free port with a temporary data directory.</summary>
    private sealed class BrokerChild : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly string _dir;

        private BrokerChild(Process process, string dir, string bootstrap, double startupMs)
        {
            _process = process;
            _dir = dir;
            Bootstrap = bootstrap;
            StartupMs = startupMs;
        }

        public string Bootstrap { get; }
        public double StartupMs { get; }
        public int Pid => _process.Id;

        public static async Task<BrokerChild> StartAsync(IReadOnlyList<string> overrides)
        {
            var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
            l.Start();
            int port = ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
            l.Stop();
            string dir = Path.Combine(Path.GetTempPath(), "freshet-bench-" + Guid.NewGuid().ToString("N")[..8]);
            string self = typeof(BenchCommand).Assembly.Location;
            var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") psi.ArgumentList.Add(self);
            foreach (var a in new[] { "server", "--log-level", "warning", "--override", $"listeners=PLAINTEXT://127.0.0.1:{port}", "--override", $"log.dirs={dir}" })
                psi.ArgumentList.Add(a);
            foreach (var o in overrides)
            {
                psi.ArgumentList.Add("--override");
                psi.ArgumentList.Add(o);
            }
            var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var process = new Process { StartInfo = psi };
            process.OutputDataReceived += (_, e) => { if (e.Data?.StartsWith("Freshet is ready", StringComparison.Ordinal) == true) ready.TrySetResult(); };
            process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine("broker: " + e.Data); };
            var sw = Stopwatch.StartNew();
            process.Start();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            await ready.Task.WaitAsync(TimeSpan.FromSeconds(30));
            return new BrokerChild(process, dir, $"127.0.0.1:{port}", sw.Elapsed.TotalMilliseconds);
        }

        /// <summary>User + system CPU seconds of the broker so far (/proc/pid/stat, clock ticks of 1/100 s).</summary>
        public double CpuSeconds()
        {
            var fields = File.ReadAllText($"/proc/{Pid}/stat").Split(')')[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            // After "pid (comm)": state is field 0, utime is field 11, stime field 12.
            return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
        }

        /// <summary>Peak resident set size (VmHWM in /proc/pid/status).</summary>
        public long PeakRssBytes() => Status("VmHWM:");

        /// <summary>Resident set size now (VmRSS in /proc/pid/status).</summary>
        public long RssBytes() => Status("VmRSS:");

        private long Status(string field)
        {
            foreach (var line in File.ReadLines($"/proc/{Pid}/status"))
                if (line.StartsWith(field, StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
            return -1;
        }

        public async ValueTask DisposeAsync()
        {
            try
            {
                using (var kill = Process.Start("kill", ["-TERM", Pid.ToString(CultureInfo.InvariantCulture)])) await kill.WaitForExitAsync();
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            }
            catch (TimeoutException)
            {
                _process.Kill();
            }
            _process.Dispose();
            try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        }
    }
}
