using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Freshet.Server;
using Xunit.Abstractions;
using ErrorCode = Freshet.Protocol.ErrorCode;

namespace Freshet.Integration.Tests.Groups;

/// <summary>__consumer_offsets is compacted: 100,000 commits of a few partitions leave a log of about their latest values.</summary>
public sealed class OffsetsTopicCompactionTests(ITestOutputHelper output)
{
    [Fact]
    public async Task TheOffsetsTopicStaysBoundedUnderAHundredThousandCommits()
    {
        using var loggers = TestOutputLoggerProvider.Factory(output);
        await using var broker = await FreshetServer.StartEmbeddedAsync(new Dictionary<string, string>
        {
            ["offsets.topic.segment.bytes"] = "1048576",
            ["log.cleaner.backoff.ms"] = "200",
            ["log.segment.delete.delay.ms"] = "0",
        }, loggers);
        await Clients.CreateTopicAsync(broker.BootstrapServers, "t", 10);
        await using var c = await RawKafkaClient.ConnectAsync(broker.BootstrapServers);
        Assert.Equal((short)ErrorCode.None, (await c.RequestAsync<FindCoordinatorResponse>(new FindCoordinatorRequest { Key = "g-bounded" }, 3)).ErrorCode);
        // The offsets partition is created on first use and loads in the background: wait until it answers.
        var loadDeadline = DateTime.UtcNow.AddSeconds(30);
        short loadError;
        do
        {
            loadError = (await c.RequestAsync<OffsetFetchResponse>(new OffsetFetchRequest { GroupId = "g-bounded", Topics = null }, 7)).ErrorCode;
            if (loadError == (short)ErrorCode.CoordinatorLoadInProgress) await Task.Delay(50);
        }
        while (loadError == (short)ErrorCode.CoordinatorLoadInProgress && DateTime.UtcNow < loadDeadline);
        Assert.Equal((short)ErrorCode.None, loadError);

        const int commits = 100_000, window = 200;
        var pending = new Queue<int>();
        for (int i = 0; i < commits; i++)
        {
            var request = new OffsetCommitRequest
            {
                GroupId = "g-bounded",
                Topics = [new() { Name = "t", Partitions = [new() { PartitionIndex = i % 10, CommittedOffset = i, CommittedMetadata = "m" }] }],
            };
            pending.Enqueue(await c.SendAsync(request, 8));
            if (pending.Count == window) await ExpectCommittedAsync(c, pending.Dequeue());
        }
        while (pending.Count > 0) await ExpectCommittedAsync(c, pending.Dequeue());

        int partition = Freshet.Broker.Groups.GroupRecords.PartitionFor("g-bounded", 50);
        string dir = Path.Combine(broker.Config.LogDirs[0], $"__consumer_offsets-{partition}");
        long written = 0;
        long size = long.MaxValue;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            var log = broker.Logs.GetLog(new Freshet.Protocol.TopicPartition("__consumer_offsets", partition))!;
            written = log.LogEndOffset;
            size = log.Size;
            if (size < 1_200_000) break; // at most the active segment plus the cleaned remainder
            await Task.Delay(250);
        }
        output.WriteLine($"{written} records written, {size} bytes left in {dir}");
        Assert.Equal(commits, written);
        Assert.True(size < 1_200_000, $"__consumer_offsets-{partition} still holds {size} bytes after {commits} commits");

        // The latest commit of every partition is what the group reads back.
        var fetched = await c.RequestAsync<OffsetFetchResponse>(new OffsetFetchRequest { GroupId = "g-bounded", Topics = null }, 7);
        var offsets = fetched.Topics.Single().Partitions.ToDictionary(p => p.PartitionIndex, p => p.CommittedOffset);
        for (int p = 0; p < 10; p++) Assert.Equal(commits - 10 + p, offsets[p]);
    }

    private static async Task ExpectCommittedAsync(RawKafkaClient c, int correlation)
    {
        var r = await c.ReadResponseAsync<OffsetCommitResponse>(8, correlation);
        Assert.Equal((short)ErrorCode.None, r.Topics[0].Partitions[0].ErrorCode);
    }
}
