using Freshet.Protocol;
using Freshet.Protocol.Wire;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Broker.Replication;

/// <summary>
/// The follower partitions of this broker, grouped by leader (Kafka's ReplicaFetcherManager): one
/// <see cref="ReplicaFetcher"/> per source broker, created when a partition starts following it
/// and stopped when it has none left.
/// </summary>
public sealed class ReplicaFetcherManager(BrokerOptions options, INodeClient client, ILoggerFactory? loggers = null) : IAsyncDisposable
{
    private readonly Lock _lock = new();
    private readonly Dictionary<int, ReplicaFetcher> _fetchers = [];
    private readonly Dictionary<TopicPartition, int> _leaderOf = [];
    private readonly ILoggerFactory _loggers = loggers ?? NullLoggerFactory.Instance;
    private bool _closed;

    /// <summary>Follows <paramref name="partition"/> from <paramref name="leaderId"/> at <paramref name="leaderEpoch"/> (moving it off another leader's fetcher).</summary>
    public void AddPartition(Partition partition, int leaderId, int leaderEpoch)
    {
        List<ReplicaFetcher>? idle = null;
        lock (_lock)
        {
            if (_closed) return;
            var tp = partition.TopicPartition;
            if (_leaderOf.TryGetValue(tp, out int old) && old != leaderId && _fetchers.TryGetValue(old, out var previous))
            {
                previous.RemovePartition(tp);
                if (previous.PartitionCount == 0) (idle ??= []).Add(TakeFetcher(old));
            }
            if (!_fetchers.TryGetValue(leaderId, out var fetcher))
            {
                fetcher = new ReplicaFetcher(leaderId, options, client, _loggers.CreateLogger<ReplicaFetcher>());
                _fetchers[leaderId] = fetcher;
            }
            fetcher.AddPartition(partition, leaderEpoch);
            _leaderOf[tp] = leaderId;
        }
        StopInBackground(idle);
    }

    /// <summary>Stops following <paramref name="tp"/> (it became leader, lost its leader, or left this broker).</summary>
    public void RemovePartition(TopicPartition tp)
    {
        List<ReplicaFetcher>? idle = null;
        lock (_lock)
        {
            if (!_leaderOf.Remove(tp, out int leader) || !_fetchers.TryGetValue(leader, out var fetcher)) return;
            fetcher.RemovePartition(tp);
            if (fetcher.PartitionCount == 0) (idle ??= []).Add(TakeFetcher(leader));
        }
        StopInBackground(idle);
    }

    /// <summary>The leader <paramref name="tp"/> is fetched from, or null.</summary>
    public int? LeaderOf(TopicPartition tp)
    {
        lock (_lock) return _leaderOf.TryGetValue(tp, out int l) ? l : null;
    }

    public int FetcherCount
    {
        get
        {
            lock (_lock) return _fetchers.Count;
        }
    }

    private ReplicaFetcher TakeFetcher(int leader)
    {
        var f = _fetchers[leader];
        _fetchers.Remove(leader);
        return f;
    }

    private static void StopInBackground(List<ReplicaFetcher>? fetchers)
    {
        if (fetchers is null) return;
        foreach (var f in fetchers) _ = Task.Run(async () => await f.DisposeAsync().ConfigureAwait(false));
    }

    public async ValueTask DisposeAsync()
    {
        List<ReplicaFetcher> all;
        lock (_lock)
        {
            _closed = true;
            all = [.. _fetchers.Values];
            _fetchers.Clear();
            _leaderOf.Clear();
        }
        foreach (var f in all) await f.DisposeAsync().ConfigureAwait(false);
    }
}
