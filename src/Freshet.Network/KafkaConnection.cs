using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Threading.Channels;
using Freshet.Broker;
using Freshet.Broker.Handlers;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace Freshet.Network;

/// <summary>
/// One client connection. The read loop takes size-prefixed frames off a <see cref="PipeReader"/>,
/// copies each into one pooled array (whose slices the request keeps: a produce's batches are
/// written to disk from it), decodes the header and body, and starts the handler at once, so
/// requests pipeline. Their results go through a bounded queue in arrival order to the write
/// loop, which keeps per-connection response order as Kafka requires, coalesces small responses
/// into one send, and sends fetched file ranges with sendfile.
///
/// Failure policy (Kafka's): a frame over socket.request.max.bytes, a negative size, an API or
/// version this broker does not serve, or a body that does not decode closes this connection
/// only; an unsupported ApiVersions version is answered at version 0 with UNSUPPORTED_VERSION.
///
/// Before the node is ready (<see cref="SocketServer.EnableRequestProcessing"/>) a connection on a
/// client listener reads and keeps what arrives, up to <see cref="HeldBytesLimit"/>, without
/// decoding it: its requests run in order once the node is ready, and a client that gives up and
/// closes first ends the connection with nothing answered.
/// </summary>
internal sealed partial class KafkaConnection : IRecordTransferTarget, IAsyncDisposable
{
    private const int MinFrameSize = 8; // api key, version, correlation id
    private const int CoalesceLimit = 256 * 1024;
    private const int CopyChunk = 64 * 1024;

    /// <summary>Bytes a connection buffers while its requests are held; past this it stops reading (TCP pushes back).</summary>
    private const int HeldBytesLimit = 64 * 1024;

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly PipeReader _reader;
    private readonly Channel<Pending> _queue;
    private readonly RequestDispatcher _dispatcher;
    private readonly NetworkOptions _options;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _closed = new();
    // Rented on the first response and returned whenever the write queue runs dry: an idle
    // connection holds no output buffer.
    private readonly PooledBufferWriter _out = new();
    private readonly List<(int Position, TransferableRecords Records)> _outSplices = [];
    private readonly Task? _requestsEnabled;
    private int _disposed;

    private readonly record struct Pending(RequestContext Context, ValueTask<IApiMessage?> Task, byte[]? Frame, byte[]? Precomputed);

    /// <param name="requestsEnabled">Completes when requests may run (the node is ready); null: at once.</param>
    public KafkaConnection(Socket socket, string id, string listenerName, RequestDispatcher dispatcher, NetworkOptions options, ILogger logger,
        Task? requestsEnabled = null)
    {
        _requestsEnabled = requestsEnabled;
        _socket = socket;
        Id = id;
        ListenerName = listenerName;
        _dispatcher = dispatcher;
        _options = options;
        _logger = logger;
        _stream = new NetworkStream(socket, ownsSocket: false);
        // Zero-byte reads: a read waits for data with no buffer, and the pipe rents one only when bytes
        // have arrived; frames are copied out, so once a read's bytes are consumed the pipe returns
        // it. An idle connection holds no receive buffer (thousands of them would otherwise hold 64 KiB each).
        _reader = PipeReader.Create(_stream, new StreamPipeReaderOptions(bufferSize: 64 * 1024, minimumReadSize: 16 * 1024, leaveOpen: true, useZeroByteReads: true));
        _queue = Channel.CreateBounded<Pending>(new BoundedChannelOptions(Math.Max(1, options.MaxInFlightRequestsPerConnection))
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait,
            // The write loop continues on the reading thread when a response is ready: one thread
            // hop less per request, which on small machines is most of the per-request cost.
            AllowSynchronousContinuations = true,
        });
        Touch();
    }

    public string Id { get; }
    public string ListenerName { get; }
    public long LastActivityTicks { get; private set; }
    public CancellationToken Closed => _closed.Token;

    private void Touch() => LastActivityTicks = Environment.TickCount64;

    public async Task RunAsync()
    {
        var writer = WriteLoopAsync();
        try
        {
            await ReadLoopAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
        catch (ConnectionClosingException e)
        {
            LogClosing(_logger, Id, _socket.RemoteEndPoint?.ToString(), e.Message);
        }
        catch (Exception e)
        {
            LogUnexpected(_logger, Id, e);
        }
        finally
        {
            // The client is gone (or broke the protocol): stop long polls and drop what is queued, as Kafka does.
            _queue.Writer.TryComplete();
            try { _closed.Cancel(); } catch (ObjectDisposedException) { }
        }
        await writer.ConfigureAwait(false);
        await DisposeAsync().ConfigureAwait(false);
    }

    // ================================================================ read side

    private sealed class ConnectionClosingException(string reason) : Exception(reason);

    private async Task ReadLoopAsync()
    {
        var ct = _closed.Token;
        if (_requestsEnabled is { IsCompleted: false } gate && !await HoldUntilEnabledAsync(gate, ct).ConfigureAwait(false)) return;
        while (!ct.IsCancellationRequested)
        {
            var result = await _reader.ReadAsync(ct).ConfigureAwait(false);
            var buffer = result.Buffer;
            Touch();
            try
            {
                while (TryTakeFrame(ref buffer, out byte[]? frame, out int length))
                {
                    var pending = Prepare(frame!, length, out Task? mute);
                    await _queue.Writer.WriteAsync(pending, ct).ConfigureAwait(false);
                    if (mute is not null)
                    {
                        // An ordered request (admin, auto-creating metadata): read nothing more until it is done.
                        try { await mute.ConfigureAwait(false); }
                        catch (Exception) when (!ct.IsCancellationRequested) { /* the write loop reports it */ }
                    }
                }
            }
            finally
            {
                _reader.AdvanceTo(buffer.Start, buffer.End);
            }
            if (result.IsCompleted)
            {
                if (buffer.Length > 0) LogTruncatedFrame(_logger, Id, buffer.Length);
                return;
            }
        }
    }

    /// <summary>
    /// Waits for the node to be ready while reading what the client sends (without consuming it), so
    /// a client that closes meanwhile is noticed: false then, and its requests are dropped unanswered.
    /// A pending read is cancelled when the gate opens; the bytes it had stay in the pipe for the read loop.
    /// </summary>
    private async Task<bool> HoldUntilEnabledAsync(Task gate, CancellationToken ct)
    {
        while (true)
        {
            var read = _reader.ReadAsync(ct).AsTask();
            if (await Task.WhenAny(gate, read).ConfigureAwait(false) == gate)
            {
                if (!read.IsCompleted) _reader.CancelPendingRead();
                var pending = await read.ConfigureAwait(false);
                _reader.AdvanceTo(pending.Buffer.Start); // nothing consumed or examined: the read loop sees it all at once
                return true;
            }
            var result = await read.ConfigureAwait(false);
            Touch();
            if (result.IsCompleted)
            {
                LogClosedWhileHeld(_logger, Id, result.Buffer.Length);
                return false;
            }
            _reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            if (result.Buffer.Length >= HeldBytesLimit)
            {
                await gate.WaitAsync(ct).ConfigureAwait(false);
                return true;
            }
        }
    }

    private bool TryTakeFrame(ref ReadOnlySequence<byte> buffer, out byte[]? frame, out int length)
    {
        frame = null;
        length = 0;
        if (buffer.Length < 4) return false;
        Span<byte> sizeBytes = stackalloc byte[4];
        buffer.Slice(0, 4).CopyTo(sizeBytes);
        int size = BinaryPrimitives.ReadInt32BigEndian(sizeBytes);
        if (size < MinFrameSize)
            throw new ConnectionClosingException($"invalid request size {size}");
        if (size > _options.SocketRequestMaxBytes)
            throw new ConnectionClosingException($"request of {size} bytes is larger than socket.request.max.bytes ({_options.SocketRequestMaxBytes})");
        if (buffer.Length < 4L + size) return false;
        frame = ArrayPool<byte>.Shared.Rent(size);
        buffer.Slice(4, size).CopyTo(frame);
        buffer = buffer.Slice(4 + size);
        length = size;
        return true;
    }

    /// <summary>
    /// Decodes a frame and starts its handler. Throws <see cref="ConnectionClosingException"/> where
    /// Kafka closes the connection. <paramref name="mute"/> is set when the request is ordered and
    /// still running: the read loop waits for it before taking the next frame.
    /// </summary>
    private Pending Prepare(byte[] frame, int length, out Task? mute)
    {
        mute = null;
        short apiKey = BinaryPrimitives.ReadInt16BigEndian(frame);
        short version = BinaryPrimitives.ReadInt16BigEndian(frame.AsSpan(2));
        int correlationId = BinaryPrimitives.ReadInt32BigEndian(frame.AsSpan(4));
        if (!_dispatcher.IsSupported(apiKey, version))
        {
            ArrayPool<byte>.Shared.Return(frame);
            if (apiKey == (short)ApiKey.ApiVersions && version > _dispatcher.MaxVersion(apiKey))
            {
                // KIP-511: a newer client learns our versions from a v0 answer and retries.
                var context = new RequestContext { ApiKey = apiKey, ApiVersion = 0, CorrelationId = correlationId, ConnectionId = Id, ListenerName = ListenerName };
                return new Pending(context, default, null, ApiVersionsHandler.UnsupportedVersionResponse(_dispatcher));
            }
            throw new ConnectionClosingException(ApiMessages.IsKnown(apiKey)
                ? $"unsupported version {version} of API {(ApiKey)apiKey}"
                : $"unknown API key {apiKey}");
        }
        RequestContext ctx;
        IApiMessage request;
        try
        {
            var reader = new ProtocolReader(frame.AsMemory(0, length));
            var header = new RequestHeader();
            header.Read(ref reader, ApiMessages.RequestHeaderVersion(apiKey, version));
            request = ApiMessages.CreateRequest(apiKey)!;
            request.Read(ref reader, version);
            ctx = new RequestContext
            {
                ApiKey = apiKey,
                ApiVersion = version,
                CorrelationId = correlationId,
                ClientId = header.ClientId,
                ConnectionId = Id,
                ClientAddress = _socket.RemoteEndPoint,
                ListenerName = ListenerName,
                ConnectionClosed = _closed.Token,
            };
        }
        catch (ProtocolException e)
        {
            ArrayPool<byte>.Shared.Return(frame);
            throw new ConnectionClosingException($"malformed {(ApiKey)apiKey} v{version} request: {e.Message}");
        }
        ValueTask<IApiMessage?> task;
        try
        {
            task = _dispatcher.DispatchAsync(ctx, request);
        }
        catch (Exception e)
        {
            task = ValueTask.FromException<IApiMessage?>(e);
        }
        if (!task.IsCompleted && _dispatcher.IsOrdered(apiKey))
        {
            // A ValueTask may be awaited once: share it as a Task between the two loops.
            var shared = task.AsTask();
            mute = shared;
            task = new ValueTask<IApiMessage?>(shared);
        }
        return new Pending(ctx, task, frame, null);
    }

    // ================================================================ write side

    private async Task WriteLoopAsync()
    {
        var ct = _closed.Token;
        try
        {
            while (await _queue.Reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
            {
                while (_queue.Reader.TryRead(out var p))
                {
                    IApiMessage? response;
                    try
                    {
                        response = p.Precomputed is null ? await p.Task.ConfigureAwait(false) : null;
                    }
                    catch (CloseConnectionException e)
                    {
                        LogClosing(_logger, Id, _socket.RemoteEndPoint?.ToString(), e.Message);
                        await FlushAsync(ct).ConfigureAwait(false);
                        Close();
                        return;
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        LogHandlerFailed(_logger, (ApiKey)p.Context.ApiKey, p.Context.ApiVersion, Id, e);
                        await FlushAsync(ct).ConfigureAwait(false);
                        Close();
                        return;
                    }
                    finally
                    {
                        if (p.Frame is not null) ArrayPool<byte>.Shared.Return(p.Frame);
                    }
                    if (p.Precomputed is not null) AppendRaw(p.Context.CorrelationId, p.Precomputed);
                    else if (response is not null) Append(p.Context, response);
                    // Send when nothing else is ready to go with this batch of bytes.
                    if (_out.WrittenCount >= CoalesceLimit || !_queue.Reader.TryPeek(out var next) || next.Precomputed is null && !next.Task.IsCompleted)
                        await FlushAsync(ct).ConfigureAwait(false);
                }
                await FlushAsync(ct).ConfigureAwait(false);
                if (!_queue.Reader.TryPeek(out _)) _out.Reset(); // nothing more to answer: give the buffer back while idle
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            Close();
        }
        finally
        {
            // Return the frames of requests that will never be answered.
            while (_queue.Reader.TryRead(out var p))
                if (p.Frame is not null) ArrayPool<byte>.Shared.Return(p.Frame);
        }
    }

    /// <summary>Encodes size, response header and body into the output buffer; transferable records are noted, to write themselves when flushed.</summary>
    private void Append(RequestContext ctx, IApiMessage response)
    {
        short headerVersion = ApiMessages.ResponseHeaderVersion(ctx.ApiKey, ctx.ApiVersion);
        var header = new ResponseHeader { CorrelationId = ctx.CorrelationId };
        var size = new MessageSize();
        header.AddSize(ref size, headerVersion);
        response.AddSize(ref size, ctx.ApiVersion);
        int inMemory = size.InMemory;
        int start = _out.WrittenCount;
        var span = _out.GetSpan(4 + inMemory);
        BinaryPrimitives.WriteInt32BigEndian(span, size.Total);
        var w = new ProtocolWriter(span.Slice(4, inMemory));
        header.Write(ref w, headerVersion);
        response.Write(ref w, ctx.ApiVersion);
        if (w.Position != inMemory)
            throw new InvalidOperationException($"{response.GetType().Name} v{ctx.ApiVersion}: wrote {w.Position} bytes, size said {inMemory}");
        if (w.Splices is { } splices)
            foreach (var s in splices) _outSplices.Add((start + 4 + s.Position, s.Records));
        _out.Advance(4 + inMemory);
    }

    private void AppendRaw(int correlationId, byte[] body)
    {
        var span = _out.GetSpan(8 + body.Length);
        BinaryPrimitives.WriteInt32BigEndian(span, 4 + body.Length);
        BinaryPrimitives.WriteInt32BigEndian(span[4..], correlationId);
        body.CopyTo(span[8..]);
        _out.Advance(8 + body.Length);
    }

    private async ValueTask FlushAsync(CancellationToken ct)
    {
        if (_out.WrittenCount == 0) return;
        var data = _out.WrittenMemory;
        int sent = 0;
        foreach (var (pos, records) in _outSplices)
        {
            await SendAsync(data[sent..pos], ct).ConfigureAwait(false);
            await records.WriteToAsync(this, ct).ConfigureAwait(false);
            sent = pos;
        }
        await SendAsync(data[sent..], ct).ConfigureAwait(false);
        _outSplices.Clear();
        _out.Clear();
        Touch();
    }

    private async ValueTask SendAsync(ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        while (!data.IsEmpty)
        {
            int n = await _socket.SendAsync(data, SocketFlags.None, ct).ConfigureAwait(false);
            data = data[n..];
        }
    }

    /// <summary>IRecordTransferTarget: transferable records that are in memory after all.</summary>
    ValueTask IRecordTransferTarget.WriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken ct) => SendAsync(bytes, ct);

    /// <summary>
    /// IRecordTransferTarget: a file range (fetched batches), sent with sendfile while the socket takes
    /// it, a pooled copy when it is full (which waits for room).
    /// </summary>
    async ValueTask IRecordTransferTarget.TransferFromFileAsync(SafeFileHandle file, long position, long count, CancellationToken ct)
    {
        long done = 0;
        byte[]? chunk = null;
        try
        {
            while (done < count)
            {
                if (SendFile.IsSupported)
                {
                    done += SendFile.TrySend(_socket, file, position + done, count - done);
                    if (done >= count) break;
                }
                chunk ??= ArrayPool<byte>.Shared.Rent(CopyChunk);
                int want = (int)Math.Min(chunk.Length, count - done);
                int n = RandomAccess.Read(file, chunk.AsSpan(0, want), position + done);
                if (n <= 0) throw new IOException("file ended before the range to send");
                await SendAsync(chunk.AsMemory(0, n), ct).ConfigureAwait(false);
                done += n;
            }
        }
        finally
        {
            if (chunk is not null) ArrayPool<byte>.Shared.Return(chunk);
        }
    }

    // ================================================================ lifecycle

    public void Close()
    {
        try { _closed.Cancel(); } catch (ObjectDisposedException) { }
        try { _socket.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        _socket.Close();
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        Close();
        await _reader.CompleteAsync().ConfigureAwait(false);
        await _stream.DisposeAsync().ConfigureAwait(false);
        _out.Dispose();
        _closed.Dispose();
    }

    [LoggerMessage(EventId = 4001, Level = LogLevel.Warning, Message = "Closing connection {Connection} from {Remote}: {Reason}")]
    private static partial void LogClosing(ILogger logger, string connection, string? remote, string reason);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Error, Message = "Handler for {Api} v{Version} failed on connection {Connection}; closing it")]
    private static partial void LogHandlerFailed(ILogger logger, ApiKey api, short version, string connection, Exception e);

    [LoggerMessage(EventId = 4003, Level = LogLevel.Error, Message = "Connection {Connection} failed")]
    private static partial void LogUnexpected(ILogger logger, string connection, Exception e);

    [LoggerMessage(EventId = 4005, Level = LogLevel.Debug, Message = "Connection {Connection} closed by the client before the node was ready, {Bytes} bytes of requests unanswered")]
    private static partial void LogClosedWhileHeld(ILogger logger, string connection, long bytes);

    [LoggerMessage(EventId = 4004, Level = LogLevel.Debug, Message = "Connection {Connection} closed by the client with {Bytes} bytes of an unfinished request")]
    private static partial void LogTruncatedFrame(ILogger logger, string connection, long bytes);
}
