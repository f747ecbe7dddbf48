using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Cli.Commands;

/// <summary>
/// `freshet bench --phases connections`: what idle client connections cost the broker. Opens
/// connections in steps (each sends ApiVersions and Metadata, as a client's bootstrap does, then
/// stays open and silent), and after each step reads the broker process's resident memory
/// (VmRSS), so that (RSS(N) - RSS(0)) / N is the memory one idle connection holds.
/// </summary>
internal static class ConnectionsBench
{
    /// <param name="Connections">Idle connections open when measured.</param>
    /// <param name="RssBytes">The broker's VmRSS.</param>
    /// <param name="BytesPerConnection">(RssBytes - the 0-connection RSS) / Connections; null for the 0 step.</param>
    /// <param name="KernelTcpBytes">TCP buffer memory of the whole machine (/proc/net/sockstat "mem", pages): kernel memory, not in RSS.</param>
    /// <param name="OpenSeconds">Time to open and handshake this step's new connections.</param>
    /// <param name="BrokerCpuSeconds">Broker CPU while this step's connections were opened and the broker settled.</param>
    public sealed record Step(int Connections, long RssBytes, double? BytesPerConnection, long KernelTcpBytes, double OpenSeconds, double BrokerCpuSeconds);

    /// <summary>How long the broker is left alone before its memory is read (its GC and thread pool settle).</summary>
    private static readonly TimeSpan Settle = TimeSpan.FromSeconds(3);

    public static async Task<List<Step>> RunAsync(string bootstrap, IReadOnlyList<int> counts, Func<long> rss, Func<double> cpu, Action<Step> report)
    {
        int most = counts.Max();
        EnsureDescriptors(most);
        int colon = bootstrap.LastIndexOf(':');
        var endpoint = new IPEndPoint(IPAddress.Parse(bootstrap[..colon]), int.Parse(bootstrap[(colon + 1)..], CultureInfo.InvariantCulture));
        var open = new List<Socket>(most);
        var steps = new List<Step>();
        try
        {
            // One connection first, closed again: the code that serves a connection is compiled and
            // its pools exist before the 0-connection figure, so the steps measure connections only.
            using (var warm = await ConnectAsync(endpoint, 0)) { }
            double cpu0 = cpu();
            await Task.Delay(Settle);
            long baseline = rss();
            var zero = new Step(0, baseline, null, KernelTcpBytes(), 0, cpu() - cpu0);
            steps.Add(zero);
            report(zero);
            foreach (int n in counts.Order())
            {
                if (n <= open.Count) continue;
                cpu0 = cpu();
                var sw = Stopwatch.StartNew();
                var added = new Socket[n - open.Count];
                int first = open.Count;
                await Parallel.ForAsync(0, added.Length, new ParallelOptions { MaxDegreeOfParallelism = 32 },
                    async (i, _) => added[i] = await ConnectAsync(endpoint, first + i));
                double opening = sw.Elapsed.TotalSeconds;
                open.AddRange(added);
                await Task.Delay(Settle);
                long now = rss();
                var step = new Step(n, now, (now - baseline) / (double)n, KernelTcpBytes(), opening, cpu() - cpu0);
                steps.Add(step);
                report(step);
            }
        }
        finally
        {
            foreach (var s in open) s.Dispose();
        }
        return steps;
    }

    public static string Format(Step s) =>
        $"connections {s.Connections,6}  broker rss {s.RssBytes / (1024.0 * 1024):F1} MiB"
        + (s.BytesPerConnection is { } b ? $"  {b / 1024:F1} KiB per idle connection" : "")
        + $"  (opened in {s.OpenSeconds:F1} s, broker cpu {s.BrokerCpuSeconds:F2} s; kernel tcp buffers {s.KernelTcpBytes / (1024.0 * 1024):F1} MiB machine-wide)";

    /// <summary>
    /// The bench holds one descriptor per connection: refuse clearly when the soft limit (which
    /// .NET raises to the hard limit at start-up) cannot hold them, instead of failing half way.
    /// </summary>
    private static void EnsureDescriptors(int connections)
    {
        const string prefix = "Max open files";
        if (!File.Exists("/proc/self/limits")) return;
        foreach (var line in File.ReadLines("/proc/self/limits"))
        {
            if (!line.StartsWith(prefix, StringComparison.Ordinal)) continue;
            string soft = line[prefix.Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
            if (soft != "unlimited" && long.Parse(soft, CultureInfo.InvariantCulture) < connections + 256L)
                throw new UsageException($"--connections {connections} needs about {connections + 256} file descriptors, the limit is {soft} (raise it with ulimit -n; the broker needs as many)");
        }
    }

    private static async Task<Socket> ConnectAsync(IPEndPoint endpoint, int n)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(endpoint);
            var versions = await RoundTripAsync<ApiVersionsResponse>(socket, new ApiVersionsRequest { ClientSoftwareName = "freshet-bench", ClientSoftwareVersion = "1" }, 3, 1, n);
            if (versions.ErrorCode != 0) throw new InvalidOperationException($"connection {n}: ApiVersions answered error {versions.ErrorCode}");
            await RoundTripAsync<MetadataResponse>(socket, new MetadataRequest { Topics = null }, 12, 2, n);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static async Task<T> RoundTripAsync<T>(Socket socket, IApiMessage request, short version, int correlationId, int n) where T : IApiMessage, new()
    {
        var header = new RequestHeader { RequestApiKey = request.ApiKey, RequestApiVersion = version, CorrelationId = correlationId, ClientId = "freshet-bench" };
        short headerVersion = ApiMessages.RequestHeaderVersion(request.ApiKey, version);
        var size = new MessageSize();
        header.AddSize(ref size, headerVersion);
        request.AddSize(ref size, version);
        var frame = new byte[4 + size.Total];
        BinaryPrimitives.WriteInt32BigEndian(frame, size.Total);
        var w = new ProtocolWriter(frame.AsSpan(4));
        header.Write(ref w, headerVersion);
        request.Write(ref w, version);
        await socket.SendAsync(frame);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var sizeBytes = new byte[4];
        await ReceiveExactlyAsync(socket, sizeBytes, timeout.Token, n);
        var body = new byte[BinaryPrimitives.ReadInt32BigEndian(sizeBytes)];
        await ReceiveExactlyAsync(socket, body, timeout.Token, n);
        var r = new ProtocolReader(body);
        var responseHeader = new ResponseHeader();
        responseHeader.Read(ref r, ApiMessages.ResponseHeaderVersion(request.ApiKey, version));
        if (responseHeader.CorrelationId != correlationId)
            throw new InvalidOperationException($"connection {n}: correlation id {responseHeader.CorrelationId}, expected {correlationId}");
        return MessageExtensions.Parse<T>(body.AsMemory(r.Position), version);
    }

    private static async Task ReceiveExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken ct, int n)
    {
        while (!buffer.IsEmpty)
        {
            int got = await socket.ReceiveAsync(buffer, SocketFlags.None, ct);
            if (got == 0) throw new IOException($"connection {n} was closed by the broker");
            buffer = buffer[got..];
        }
    }

    /// <summary>The "mem" of the TCP line of /proc/net/sockstat (pages of socket buffers, all sockets of the machine), in bytes.</summary>
    private static long KernelTcpBytes()
    {
        if (!File.Exists("/proc/net/sockstat")) return 0;
        foreach (var line in File.ReadLines("/proc/net/sockstat"))
        {
            if (!line.StartsWith("TCP:", StringComparison.Ordinal)) continue;
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            int i = Array.IndexOf(f, "mem");
            if (i > 0 && i + 1 < f.Length) return long.Parse(f[i + 1], CultureInfo.InvariantCulture) * Environment.SystemPageSize;
        }
        return 0;
    }
}
