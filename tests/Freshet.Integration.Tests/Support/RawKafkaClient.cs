using System.Buffers.Binary;
using System.Net.Sockets;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Integration.Tests.Support;

/// <summary>
/// A bare Kafka-protocol connection built on the generated messages, for tests that must control
/// the bytes: pipelined requests, old API versions, malformed frames, abrupt disconnects.
/// </summary>
public sealed class RawKafkaClient : IAsyncDisposable
{
    private readonly TcpClient _tcp;
    private readonly NetworkStream _stream;
    private int _nextCorrelation = 1;

    private RawKafkaClient(TcpClient tcp)
    {
        _tcp = tcp;
        _stream = tcp.GetStream();
    }

    /// <param name="from">The local address to connect from (any 127.x.y.z is this machine's: a second "client address" on loopback).</param>
    public static async Task<RawKafkaClient> ConnectAsync(string bootstrap, System.Net.IPAddress? from = null)
    {
        var (host, port) = Split(bootstrap);
        var tcp = from is null ? new TcpClient() : new TcpClient(new System.Net.IPEndPoint(from, 0));
        tcp.NoDelay = true;
        try
        {
            await tcp.ConnectAsync(host, port);
        }
        catch
        {
            tcp.Dispose();
            throw;
        }
        return new RawKafkaClient(tcp);
    }

    /// <summary>
    /// Connects the moment a port accepts: a refused attempt is retried after a millisecond until
    /// <paramref name="timeout"/>, or until <paramref name="gaveUp"/> says the server is gone.
    /// </summary>
    public static async Task<RawKafkaClient> ConnectWhenListeningAsync(int port, TimeSpan timeout, Func<bool>? gaveUp = null)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var tcp = new TcpClient { NoDelay = true };
            try
            {
                await tcp.ConnectAsync(System.Net.IPAddress.Loopback, port);
                return new RawKafkaClient(tcp);
            }
            catch (SocketException) when (DateTime.UtcNow < deadline && gaveUp?.Invoke() != true)
            {
                tcp.Dispose();
                await Task.Delay(1);
            }
        }
    }

    public static (string Host, int Port) Split(string bootstrap)
    {
        int colon = bootstrap.LastIndexOf(':');
        return (bootstrap[..colon], int.Parse(bootstrap[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture));
    }

    public NetworkStream Stream => _stream;

    /// <summary>Encodes a request frame (size, header, body) without sending it.</summary>
    public byte[] Encode(IApiMessage request, short version, out int correlationId, string? clientId = "raw-test")
    {
        correlationId = _nextCorrelation++;
        var header = new RequestHeader { RequestApiKey = request.ApiKey, RequestApiVersion = version, CorrelationId = correlationId, ClientId = clientId };
        short hv = ApiMessages.RequestHeaderVersion(request.ApiKey, version);
        var size = new MessageSize();
        header.AddSize(ref size, hv);
        request.AddSize(ref size, version);
        var frame = new byte[4 + size.Total];
        BinaryPrimitives.WriteInt32BigEndian(frame, size.Total);
        var w = new ProtocolWriter(frame.AsSpan(4));
        header.Write(ref w, hv);
        request.Write(ref w, version);
        return frame;
    }

    public async Task<int> SendAsync(IApiMessage request, short version)
    {
        var frame = Encode(request, version, out int id);
        await _stream.WriteAsync(frame);
        return id;
    }

    public Task SendRawAsync(byte[] bytes) => _stream.WriteAsync(bytes).AsTask();

    /// <summary>Reads one response frame: its correlation id and body bytes (after the header of the given version).</summary>
    public async Task<(int CorrelationId, byte[] Body)> ReadFrameAsync(short apiKey, short version, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(30));
        var sizeBytes = new byte[4];
        await _stream.ReadExactlyAsync(sizeBytes, cts.Token);
        int size = BinaryPrimitives.ReadInt32BigEndian(sizeBytes);
        var frame = new byte[size];
        await _stream.ReadExactlyAsync(frame, cts.Token);
        var r = new ProtocolReader(frame);
        var header = new ResponseHeader();
        header.Read(ref r, ApiMessages.ResponseHeaderVersion(apiKey, version));
        return (header.CorrelationId, frame[r.Position..]);
    }

    public async Task<T> ReadResponseAsync<T>(short version, int expectedCorrelationId, TimeSpan? timeout = null) where T : IApiMessage, new()
    {
        var probe = new T();
        var (id, body) = await ReadFrameAsync(probe.ApiKey, version, timeout);
        if (id != expectedCorrelationId) throw new InvalidOperationException($"expected correlation id {expectedCorrelationId}, got {id}");
        return MessageExtensions.Parse<T>(body, version);
    }

    public async Task<TResponse> RequestAsync<TResponse>(IApiMessage request, short version, TimeSpan? timeout = null) where TResponse : IApiMessage, new()
    {
        int id = await SendAsync(request, version);
        return await ReadResponseAsync<TResponse>(version, id, timeout);
    }

    /// <summary>True when the broker has closed the connection (a read returns end of stream) within the timeout.</summary>
    public async Task<bool> IsClosedByPeerAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var buf = new byte[1];
        try
        {
            while (true)
            {
                int n = await _stream.ReadAsync(buf, cts.Token);
                if (n == 0) return true;
            }
        }
        catch (OperationCanceledException) { return false; }
        catch (IOException) { return true; }
    }

    public ValueTask DisposeAsync()
    {
        _tcp.Dispose();
        return ValueTask.CompletedTask;
    }
}
