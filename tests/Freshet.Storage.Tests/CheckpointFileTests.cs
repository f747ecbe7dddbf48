using Freshet.Protocol;
using Freshet.Protocol.Wire;
using Freshet.Storage.Checkpoints;
using Freshet.Storage.Tests.Support;

namespace Freshet.Storage.Tests;

public sealed class CheckpointFileTests : IDisposable
{
    private readonly TempDir _tmp = new();

    public void Dispose() => _tmp.Dispose();

    [Fact]
    public void Offsets_round_trip_in_kafkas_text_format()
    {
        string path = _tmp.Sub(OffsetCheckpointFile.RecoveryPoint);
        var file = new OffsetCheckpointFile(path);
        file.Write([
            KeyValuePair.Create(new TopicPartition("orders", 0), 42L),
            KeyValuePair.Create(new TopicPartition("my-topic.v2", 11), 0L),
            KeyValuePair.Create(new TopicPartition("big", 3), long.MaxValue),
        ]);

        Assert.Equal("0\n3\norders 0 42\nmy-topic.v2 11 0\nbig 3 9223372036854775807\n", File.ReadAllText(path));
        Assert.Equal(new Dictionary<TopicPartition, long>
        {
            [new TopicPartition("orders", 0)] = 42,
            [new TopicPartition("my-topic.v2", 11)] = 0,
            [new TopicPartition("big", 3)] = long.MaxValue,
        }, new OffsetCheckpointFile(path).Read());
        Assert.False(File.Exists(path + ".tmp"));

        file.Write([]);
        Assert.Equal("0\n0\n", File.ReadAllText(path));
        Assert.Empty(file.Read());
    }

    [Theory]
    [InlineData("")]
    [InlineData("0\n")]
    [InlineData("1\n1\norders 0 5\n")]          // unknown version
    [InlineData("0\n2\norders 0 5\n")]          // count does not match
    [InlineData("0\n1\norders 0\n")]            // missing field
    [InlineData("0\n1\norders x 5\n")]          // bad partition
    [InlineData("0\n1\norders 0 five\n")]       // bad offset
    [InlineData("0\n2\norders 0 5\norders 1\n")] // one bad line spoils the file
    public void A_malformed_checkpoint_reads_as_empty(string content)
    {
        string path = _tmp.Sub("checkpoint");
        File.WriteAllText(path, content);
        Assert.Empty(new OffsetCheckpointFile(path).Read());
    }

    [Fact]
    public void A_missing_checkpoint_reads_as_empty()
    {
        Assert.Empty(new OffsetCheckpointFile(_tmp.Sub("absent")).Read());
    }

    [Fact]
    public void The_partition_metadata_file_keeps_the_topic_id()
    {
        var id = new Uuid(0x0102030405060708, 0x090a0b0c0d0e0f10);
        PartitionMetadataFile.Write(_tmp.Path, id);
        Assert.Equal(id, PartitionMetadataFile.Read(_tmp.Path));
        string text = File.ReadAllText(Path.Combine(_tmp.Path, PartitionMetadataFile.FileName));
        Assert.Equal($"version: 0\ntopic_id: {id}\n", text);
        Assert.Null(PartitionMetadataFile.Read(_tmp.Sub("nowhere")));
    }
}
