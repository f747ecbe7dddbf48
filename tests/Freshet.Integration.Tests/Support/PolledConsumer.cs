using Confluent.Kafka;

namespace Freshet.Integration.Tests.Support;

/// <summary>
/// A consumer polled on a thread of its own, as an application polls it, until it is disposed; it is then closed
/// on that same thread right after its last poll. Closing it so leaves no rebalance event unserved: librdkafka
/// (2.x) can block forever in Close or in destroy when an assignment it handed to the application earlier is only
/// served after the group has terminated. Should closing still not finish, the consumer is left undisposed and
/// the test fails with a timeout instead of blocking the test host.
/// </summary>
internal sealed class PolledConsumer<TKey, TValue> : IAsyncDisposable
{
    private static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(120);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    public PolledConsumer(IConsumer<TKey, TValue> consumer)
    {
        Consumer = consumer;
        _loop = Task.Factory.StartNew(Poll, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    public IConsumer<TKey, TValue> Consumer { get; }

    private void Poll()
    {
        try
        {
            while (!_stop.IsCancellationRequested) Consumer.Consume(100);
        }
        finally
        {
            Consumer.Close();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        try
        {
            await _loop.WaitAsync(CloseTimeout);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"consumer {Consumer.Name} did not close within {CloseTimeout.TotalSeconds} s; it is left undisposed");
        }
        Consumer.Dispose();
        _stop.Dispose();
    }
}
