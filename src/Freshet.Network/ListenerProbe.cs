using System.Net.Sockets;

namespace Freshet.Network;

/// <summary>
/// Asks the operating system whether anything listens at an address: a refused connection means the
/// host is up and no process holds the port (a broker killed, or not started). A timeout, an
/// unreachable host or an accepted connection say nothing of the kind.
/// </summary>
public static class ListenerProbe
{
    public static async Task<bool> IsRefusedAsync(string host, int port, int timeoutMs, CancellationToken ct = default)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(timeoutMs);
        try
        {
            await socket.ConnectAsync(host, port, timeout.Token).ConfigureAwait(false);
            // A loopback port nobody listens on can connect to itself (TCP simultaneous open): nobody is there.
            return Equals(socket.LocalEndPoint, socket.RemoteEndPoint);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
        {
            return true;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException && !ct.IsCancellationRequested)
        {
            return false;
        }
    }
}
