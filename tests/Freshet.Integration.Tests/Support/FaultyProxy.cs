using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Freshet.Integration.Tests.Support;

/// <summary>
/// A TCP proxy between Kafka clients and a broker that can lose a response: it forwards a chosen
/// request to the broker and, when the broker's answer arrives, cuts the connection instead of
/// delivering it. The client sees a request that may or may not have happened, the case
/// idempotent producers exist for.
/// </summary>
public sealed class FaultyProxy : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly IPEndPoint _target;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentBag<TcpClient> _open = [];
    private readonly Task _accept;
    private int _requestsSeen;

    /// <param name="dropResponse">Given the API key and the 1-based count of requests of that key so far; true drops that request's response.</param>
    public FaultyProxy(int port, IPEndPoint target, Func<short, int, bool> dropResponse)
    {
        _target = target;
        DropResponse = dropResponse;
        _listener = new TcpListener(IPAddress.Loopback, port);
        _listener.Start();
        _accept = Task.Run(AcceptLoopAsync);
    }

    public Func<short, int, bool> DropResponse { get; }
    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;
    public int ConnectionsCut { get; private set; }
    private readonly ConcurrentDictionary<short, int> _countByKey = new();

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try { client = await _listener.AcceptTcpClientAsync(_stop.Token); }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException) { return; }
            var server = new TcpClient { NoDelay = true };
            try { await server.ConnectAsync(_target); }
            catch (SocketException) { client.Dispose(); server.Dispose(); continue; }
            client.NoDelay = true;
            _open.Add(client);
            _open.Add(server);
            var doomed = new ConcurrentDictionary<int, bool>();
            var cut = new CancellationTokenSource();
            _ = Task.Run(() => PumpRequestsAsync(client, server, doomed, cut));
            _ = Task.Run(() => PumpResponsesAsync(server, client, doomed, cut));
        }
    }

    private async Task PumpRequestsAsync(TcpClient from, TcpClient to, ConcurrentDictionary<int, bool> doomed, CancellationTokenSource cut)
    {
        try
        {
            var i = from.GetStream();
            var o = to.GetStream();
            var size = new byte[4];
            while (true)
            {
                await i.ReadExactlyAsync(size, cut.Token);
                int n = BinaryPrimitives.ReadInt32BigEndian(size);
                var frame = new byte[n];
                await i.ReadExactlyAsync(frame, cut.Token);
                short apiKey = BinaryPrimitives.ReadInt16BigEndian(frame);
                int correlation = BinaryPrimitives.ReadInt32BigEndian(frame.AsSpan(4));
                int nth = _countByKey.AddOrUpdate(apiKey, 1, (_, c) => c + 1);
                Interlocked.Increment(ref _requestsSeen);
                if (DropResponse(apiKey, nth)) doomed[correlation] = true;
                await o.WriteAsync(size, cut.Token);
                await o.WriteAsync(frame, cut.Token);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or EndOfStreamException)
        {
            Cut(from, to, cut);
        }
    }

    private async Task PumpResponsesAsync(TcpClient from, TcpClient to, ConcurrentDictionary<int, bool> doomed, CancellationTokenSource cut)
    {
        try
        {
            var i = from.GetStream();
            var o = to.GetStream();
            var size = new byte[4];
            while (true)
            {
                await i.ReadExactlyAsync(size, cut.Token);
                int n = BinaryPrimitives.ReadInt32BigEndian(size);
                var frame = new byte[n];
                await i.ReadExactlyAsync(frame, cut.Token);
                int correlation = BinaryPrimitives.ReadInt32BigEndian(frame);
                if (doomed.ContainsKey(correlation))
                {
                    // The broker did the work; the client will never hear of it.
                    ConnectionsCut++;
                    Cut(from, to, cut);
                    return;
                }
                await o.WriteAsync(size, cut.Token);
                await o.WriteAsync(frame, cut.Token);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or EndOfStreamException)
        {
            Cut(from, to, cut);
        }
    }

    private static void Cut(TcpClient a, TcpClient b, CancellationTokenSource cut)
    {
        try { cut.Cancel(); } catch (ObjectDisposedException) { }
        a.Client.LingerState = new LingerOption(true, 0); // RST, like a network failure
        a.Dispose();
        b.Dispose();
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        await _accept;
        foreach (var c in _open) c.Dispose();
    }
}
