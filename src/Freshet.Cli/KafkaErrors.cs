using Confluent.Kafka;
using Freshet.Protocol;
using ClientErrorCode = Confluent.Kafka.ErrorCode;

namespace Freshet.Cli;

/// <summary>An operation the cluster (or the client) refused or could not finish: printed as is, exit code 1.</summary>
public sealed class CommandFailedException(string message) : Exception(message);

/// <summary>
/// Turns client errors into what an operator can search for: Kafka's error names for errors the
/// broker returned (Confluent.Kafka's codes for those are Kafka's numbers), and plain words for
/// errors librdkafka raised locally (negative codes below -1).
/// </summary>
public static class KafkaErrors
{
    /// <summary>librdkafka's local codes run from -200 to -100; -1 is Kafka's UNKNOWN_SERVER_ERROR.</summary>
    public static bool IsLocal(ClientErrorCode code) => (int)code < -1;

    /// <summary>Kafka's name (TOPIC_ALREADY_EXISTS) for a broker error; librdkafka's enum name for a local one.</summary>
    public static string Name(ClientErrorCode code) =>
        IsLocal(code) || (int)code > short.MaxValue ? code.ToString() : ((Freshet.Protocol.ErrorCode)(short)(int)code).KafkaName();

    /// <summary>"NAME: detail" for broker errors, a readable sentence for local ones.</summary>
    public static string Describe(Error error)
    {
        string reason = error.Reason ?? "";
        if (!IsLocal(error.Code))
        {
            // librdkafka fills Reason with "Broker: <generic text>" when the broker sent no message;
            // the name already says that much.
            string name = Name(error.Code);
            if (reason.Length == 0 || reason.StartsWith("Broker: ", StringComparison.Ordinal)) return name;
            return $"{name}: {reason}";
        }
        string detail = reason.StartsWith("Local: ", StringComparison.Ordinal) ? reason["Local: ".Length..] : reason;
        string? plain = error.Code switch
        {
            ClientErrorCode.Local_TimedOut or ClientErrorCode.Local_TimedOutQueue => "timed out waiting for the cluster (is --bootstrap-server right and reachable?)",
            ClientErrorCode.Local_Transport => "could not talk to the broker (is --bootstrap-server right and reachable?)",
            ClientErrorCode.Local_AllBrokersDown => "no broker is reachable (is --bootstrap-server right?)",
            ClientErrorCode.Local_Resolve => "could not resolve the broker's host name",
            ClientErrorCode.Local_MsgTimedOut => "the record was not delivered before message.timeout.ms",
            ClientErrorCode.Local_UnknownTopic => "the topic does not exist",
            ClientErrorCode.Local_UnknownPartition => "the topic has no such partition",
            ClientErrorCode.Local_AutoOffsetReset => "the offset is out of range for the partition",
            ClientErrorCode.Local_InvalidArg => "invalid argument",
            ClientErrorCode.Local_Authentication => "authentication failed",
            ClientErrorCode.Local_Ssl => "TLS error",
            _ => null,
        };
        if (plain is null) return detail.Length > 0 ? detail : Name(error.Code);
        return detail.Length > 0 && !plain.Contains(detail, StringComparison.OrdinalIgnoreCase) ? $"{plain} ({detail})" : plain;
    }
}
