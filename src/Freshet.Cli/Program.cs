using Freshet.Cli;
using Freshet.Cli.Commands;

const string usage = """
    usage: freshet <command> [options]

    commands:
      server     run a Freshet node (broker + controller)
      cluster    start a local cluster of several nodes (cluster up); show brokers and the quorum (cluster describe)
      topics     create, list, describe, alter, delete topics
      groups     list, describe, delete consumer groups; delete or reset their offsets
      partitions move replicas between brokers (reassign), elect partition leaders (elect-leaders)
      produce    send lines from stdin to a topic
      consume    print records of a topic
      bench      produce and consume through a Kafka client and report throughput and latency

    Run `freshet <command> --help` for a command's options.
    """;

if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
{
    Console.Out.WriteLine(usage);
    return args.Length == 0 ? 2 : 0;
}

var rest = args[1..];
try
{
    return args[0] switch
    {
        "server" => rest.Contains("--help") ? Help(ServerCommand.Usage) : await ServerCommand.RunAsync(rest),
        "cluster" => await ClusterCommand.RunAsync(rest),
        "topics" => await TopicsCommand.RunAsync(rest),
        "groups" => await GroupsCommand.RunAsync(rest),
        "partitions" => await PartitionsCommand.RunAsync(rest),
        "produce" => rest.Contains("--help") ? Help(ProduceCommand.Usage) : await ProduceCommand.RunAsync(rest),
        "consume" => rest.Contains("--help") ? Help(ConsumeCommand.Usage) : await ConsumeCommand.RunAsync(rest),
        "bench" => rest.Contains("--help") ? Help(BenchCommand.Usage) : await BenchCommand.RunAsync(rest),
        _ => throw new UsageException($"unknown command '{args[0]}'"),
    };
}
catch (UsageException e)
{
    Console.Error.WriteLine($"freshet: {e.Message}");
    Console.Error.WriteLine(args[0] is "server" or "topics" or "groups" or "partitions" or "produce" or "consume"
        ? $"Run `freshet {args[0]} --help` for usage."
        : "Run `freshet --help` for usage.");
    return 2;
}
catch (CommandFailedException e)
{
    Console.Error.WriteLine($"freshet {args[0]}: {e.Message}");
    return 1;
}
catch (IOException e)
{
    // A port already taken, an unreadable file: the message says it all; a stack trace does not help.
    Console.Error.WriteLine($"freshet {args[0]}: {e.Message}");
    return 1;
}
catch (Confluent.Kafka.KafkaException e)
{
    // Errors not tied to one topic or record: the cluster unreachable, a request timed out.
    Console.Error.WriteLine($"freshet {args[0]}: {KafkaErrors.Describe(e.Error)}");
    return 1;
}

static int Help(string text)
{
    Console.Out.WriteLine(text);
    return 0;
}
