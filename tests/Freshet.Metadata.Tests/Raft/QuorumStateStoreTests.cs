using System.Text.Json;
using Freshet.Metadata.Raft;

namespace Freshet.Metadata.Tests.Raft;

public sealed class QuorumStateStoreTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "freshet-quorum-state-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private string FilePath => Path.Combine(_dir, "__cluster_metadata-0", FileQuorumStateStore.FileName);

    [Fact]
    public void NoFileReadsAsNull() => Assert.Null(new FileQuorumStateStore(FilePath, [1, 2, 3]).Read());

    [Fact]
    public void WrittenStateReadsBack()
    {
        var store = new FileQuorumStateStore(FilePath, [3, 1, 2]);
        store.Write(new ElectionState(7, 2, 3));
        Assert.Equal(new ElectionState(7, 2, 3), new FileQuorumStateStore(FilePath, [1, 2, 3]).Read());
        store.Write(new ElectionState(8, -1, 1));
        Assert.Equal(new ElectionState(8, -1, 1), store.Read());
        Assert.False(File.Exists(FilePath + ".tmp"));
    }

    [Fact]
    public void FileIsKafkasJson()
    {
        new FileQuorumStateStore(FilePath, [3, 1, 2]).Write(new ElectionState(5, 1, -1));
        Assert.Equal(
            """{"clusterId":"","leaderId":1,"leaderEpoch":5,"votedId":-1,"appliedOffset":0,"currentVoters":[{"voterId":1},{"voterId":2},{"voterId":3}],"data_version":0}""",
            File.ReadAllText(FilePath));
    }

    [Fact]
    public void ReadsWhatKafkaWrites()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(FilePath)!);
        // Version 0, as Kafka 3.x writes with static voters.
        File.WriteAllText(FilePath, """{"clusterId":"","leaderId":-1,"leaderEpoch":12,"votedId":2,"appliedOffset":0,"currentVoters":[{"voterId":1},{"voterId":2}],"data_version":0}""");
        Assert.Equal(new ElectionState(12, -1, 2), new FileQuorumStateStore(FilePath, [1, 2]).Read());
        // Version 1 (KIP-853).
        File.WriteAllText(FilePath, """{"leaderId":3,"leaderEpoch":4,"votedId":-1,"votedDirectoryId":"AAAAAAAAAAAAAAAAAAAAAA","data_version":1}""");
        Assert.Equal(new ElectionState(4, 3, -1), new FileQuorumStateStore(FilePath, [1, 2, 3]).Read());
    }

    [Fact]
    public void MalformedFileIsAnError()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(FilePath)!);
        File.WriteAllText(FilePath, """{"leaderId":3,""");
        Assert.Throws<InvalidDataException>(() => new FileQuorumStateStore(FilePath, [1]).Read());
        File.WriteAllText(FilePath, """{"leaderId":3,"leaderEpoch":4,"votedId":-1,"data_version":9}""");
        Assert.Throws<InvalidDataException>(() => new FileQuorumStateStore(FilePath, [1]).Read());
    }

    [Fact]
    public void OutputParsesAsJson()
    {
        new FileQuorumStateStore(FilePath, [1]).Write(new ElectionState(1, 1, 1));
        using var doc = JsonDocument.Parse(File.ReadAllBytes(FilePath));
        Assert.Equal(0, doc.RootElement.GetProperty("data_version").GetInt32());
    }

    [Fact]
    public void MemoryStoreKeepsTheLastWrite()
    {
        var store = new MemoryQuorumStateStore();
        Assert.Null(store.Read());
        store.Write(new ElectionState(1, -1, 1));
        store.Write(new ElectionState(2, 3, -1));
        Assert.Equal(new ElectionState(2, 3, -1), store.Read());
        Assert.Equal(2, store.WriteCount);
    }
}
