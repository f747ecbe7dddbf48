using Freshet.Metadata.Controller;
using Freshet.Metadata.Image;
using Freshet.Protocol;
using Microsoft.Extensions.Logging;

namespace Freshet.Broker;

/// <summary>
/// The internal topics coordinators keep their state in (__consumer_offsets now, __transaction_state
/// once there is a transaction coordinator), created on first use (FindCoordinator) as Kafka's
/// auto-topic creation creates them: with exactly the configured replication factor
/// (offsets.topic.replication.factor, transaction.state.log.replication.factor). While fewer alive
/// brokers (registered, unfenced, not shutting down) than that factor exist, the topic is not created
/// and the coordinator lookup answers COORDINATOR_NOT_AVAILABLE (clients retry): a factor quietly
/// lowered to the brokers up at the first lookup would keep the topic under-replicated for ever.
/// </summary>
public sealed partial class InternalTopics(MetadataCache metadata, Lifecycle.ControllerOperations controller, ILogger<InternalTopics> logger)
{
    private readonly Lock _lock = new();
    /// <summary>Per topic, the alive-broker count last reported as too few (to log each change once, not each lookup).</summary>
    private readonly Dictionary<string, int> _reportedShort = new(StringComparer.Ordinal);

    /// <summary>
    /// NONE once <paramref name="topic"/> exists (creating it now if enough brokers are alive);
    /// COORDINATOR_NOT_AVAILABLE while it cannot be created yet.
    /// </summary>
    /// <param name="factorConfig">The setting <paramref name="replicationFactor"/> comes from, for the log line.</param>
    public ErrorCode Ensure(string topic, int partitions, short replicationFactor, string factorConfig, IReadOnlyDictionary<string, string?> configs)
    {
        if (metadata.Image.Topic(topic) is not null) return ErrorCode.None;
        lock (_lock)
        {
            var image = metadata.Image;
            if (image.Topic(topic) is not null) return ErrorCode.None;
            int alive = image.ActiveBrokers.Count(b => !b.InControlledShutdown);
            if (alive < replicationFactor)
            {
                if (!_reportedShort.TryGetValue(topic, out int reported) || reported != alive)
                {
                    _reportedShort[topic] = alive;
                    LogTooFewBrokers(logger, alive, replicationFactor, topic, factorConfig);
                }
                return ErrorCode.CoordinatorNotAvailable;
            }
            _reportedShort.Remove(topic);
            ErrorCode e;
            string? message;
            try
            {
                var result = controller.CreateTopics([new NewTopic(topic, partitions, replicationFactor, null, configs)], validateOnly: false)[0];
                (e, message) = (result.Error, result.Message);
            }
            catch (Exception ex) when (ex is NotControllerException or OperationCanceledException or IOException)
            {
                // No active controller reachable within the forwarding timeout: the client asks again.
                (e, message) = (ErrorCode.CoordinatorNotAvailable, ex.Message);
            }
            if (e is ErrorCode.None or ErrorCode.TopicAlreadyExists) return ErrorCode.None;
            LogCreateFailed(logger, topic, e.KafkaName(), message);
            return ErrorCode.CoordinatorNotAvailable;
        }
    }

    [LoggerMessage(EventId = 3301, Level = LogLevel.Error, Message = "Number of alive brokers {Alive} does not meet the required replication factor {Factor} for {Topic} (configured via '{Config}'); coordinator lookups answer COORDINATOR_NOT_AVAILABLE until enough brokers are up")]
    private static partial void LogTooFewBrokers(ILogger logger, int alive, short factor, string topic, string config);

    [LoggerMessage(EventId = 3302, Level = LogLevel.Warning, Message = "Creating {Topic} failed: {Error} {Message}")]
    private static partial void LogCreateFailed(ILogger logger, string topic, string error, string? message);
}
