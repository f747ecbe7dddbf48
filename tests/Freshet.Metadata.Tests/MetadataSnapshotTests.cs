using Freshet.Metadata.Image;
using Freshet.Metadata.Log;
using Freshet.Metadata.Raft;
using Freshet.Protocol.MetadataRecords;
using Freshet.Protocol.Records;
using Freshet.Protocol.Wire;
using static Freshet.Metadata.Log.MetadataRecordSerde;

namespace Freshet.Metadata.Tests;

/// <summary>The metadata image written as a KRaft snapshot and read back.</summary>
public sealed class MetadataSnapshotTests
{
    private static readonly Uuid TopicA = Uuid.Random();
    private static readonly Uuid TopicB = Uuid.Random();

    /// <summary>An image that went through registrations, fencing, a reassignment in flight, configs, a deletion and producer ids.</summary>
    private static MetadataImage BusyImage()
    {
        var b = new MetadataImageBuilder(MetadataImage.Empty("snap-cluster", 1));
        b.Apply(new FeatureLevelRecord { Name = "metadata.version", FeatureLevel = 21 });
        for (int id = 1; id <= 3; id++)
        {
            b.Apply(new RegisterBrokerRecord
            {
                BrokerId = id, BrokerEpoch = 10 * id, IncarnationId = Uuid.Random(), Rack = id == 2 ? null : $"r{id}", Fenced = true,
                EndPoints = [new RegisterBrokerRecord.BrokerEndpoint { Name = "PLAINTEXT", Host = "127.0.0.1", Port = (ushort)(9090 + id), SecurityProtocol = 0 }],
            });
        }
        b.Apply(new UnfenceBrokerRecord { Id = 1, Epoch = 10 });
        b.Apply(new UnfenceBrokerRecord { Id = 2, Epoch = 20 });
        b.Apply(new BrokerRegistrationChangeRecord { BrokerId = 2, BrokerEpoch = 20, InControlledShutdown = 1 });
        b.Apply(new TopicRecord { Name = "a", TopicId = TopicA });
        b.Apply(new PartitionRecord { TopicId = TopicA, PartitionId = 0, Replicas = [1, 2, 3], Isr = [1, 2, 3], Leader = 1, LeaderEpoch = 0, PartitionEpoch = 0 });
        b.Apply(new PartitionRecord { TopicId = TopicA, PartitionId = 1, Replicas = [2, 3, 1], Isr = [2, 3, 1], Leader = 2, LeaderEpoch = 0, PartitionEpoch = 0 });
        b.Apply(new PartitionChangeRecord { TopicId = TopicA, PartitionId = 1, Leader = 3, Isr = [3, 1] });
        b.Apply(new PartitionChangeRecord { TopicId = TopicA, PartitionId = 0, Replicas = [1, 2, 3, 4], AddingReplicas = [4], RemovingReplicas = [3] });
        b.Apply(new ConfigRecord { ResourceType = (sbyte)ConfigResourceType.Topic, ResourceName = "a", Name = "min.insync.replicas", Value = "2" });
        b.Apply(new ConfigRecord { ResourceType = (sbyte)ConfigResourceType.Broker, ResourceName = "", Name = "log.retention.ms", Value = "1000" });
        b.Apply(new TopicRecord { Name = "b", TopicId = TopicB });
        b.Apply(new PartitionRecord { TopicId = TopicB, PartitionId = 0, Replicas = [3], Isr = [3], Leader = 3, LeaderEpoch = 0, PartitionEpoch = 0 });
        b.Apply(new ConfigRecord { ResourceType = (sbyte)ConfigResourceType.Topic, ResourceName = "b", Name = "cleanup.policy", Value = "compact" });
        b.Apply(new RemoveTopicRecord { TopicId = TopicB });
        b.Apply(new ProducerIdsRecord { BrokerId = 1, BrokerEpoch = 10, NextProducerId = 2000 });
        return b.Build(57);
    }

    private static MetadataImage Load(byte[] data, long endOffset)
    {
        var b = new MetadataImageBuilder(MetadataImage.Empty("snap-cluster", 1));
        foreach (var r in MetadataSnapshot.Read(data)) b.Apply(r.Message);
        return b.Build(endOffset - 1);
    }

    private static List<byte[]> Canonical(MetadataImage image) =>
        [.. MetadataSnapshot.RecordsOf(image).Select(r => Serialize(r.Type, r.Version, r.Message))];

    [Fact]
    public void AnImageSurvivesASnapshotRoundTrip()
    {
        var image = BusyImage();
        byte[] data = MetadataSnapshot.Write(image, epoch: 7, lastContainedTimestamp: 1_700_000_000_000);
        var loaded = Load(data, 58);

        Assert.Equal(57, loaded.Offset);
        Assert.Equal(Canonical(image), Canonical(loaded));
        // The parts that matter, checked directly rather than only through the same writer.
        Assert.Equal(["a"], loaded.TopicsByName.Keys);
        Assert.Equal(TopicA, loaded.Topic("a")!.Id);
        Assert.Null(loaded.Topic(TopicB));
        var p0 = loaded.Partition("a", 0)!;
        Assert.Equal([1, 2, 3, 4], p0.Replicas.ToArray());
        Assert.Equal([4], p0.AddingReplicas.ToArray());
        Assert.Equal([3], p0.RemovingReplicas.ToArray());
        Assert.Equal(1, p0.PartitionEpoch);
        var p1 = loaded.Partition("a", 1)!;
        Assert.Equal((3, 1, 1), (p1.Leader, p1.LeaderEpoch, p1.PartitionEpoch));
        Assert.Equal([3, 1], p1.Isr.ToArray());
        Assert.False(loaded.Brokers[1].Fenced);
        Assert.True(loaded.Brokers[2].InControlledShutdown);
        Assert.True(loaded.Brokers[3].Fenced);
        Assert.Equal(30, loaded.Brokers[3].Epoch);
        Assert.Null(loaded.Brokers[2].Rack);
        Assert.Equal("r3", loaded.Brokers[3].Rack);
        Assert.Equal(9093, loaded.Brokers[3].Endpoints.Single().Port);
        Assert.Equal("2", loaded.ConfigsOf(ConfigResourceType.Topic, "a")["min.insync.replicas"]);
        Assert.Equal("1000", loaded.ConfigsOf(ConfigResourceType.Broker, "")["log.retention.ms"]);
        Assert.Empty(loaded.ConfigsOf(ConfigResourceType.Topic, "b"));
        Assert.Equal(2000, loaded.NextProducerId);
        Assert.Equal((short)21, loaded.Features["metadata.version"]);
    }

    [Fact]
    public void TheFileIsKraftsFormatHeaderRecordsFooter()
    {
        byte[] data = MetadataSnapshot.Write(BusyImage(), epoch: 7, lastContainedTimestamp: 1_700_000_000_000);
        var batches = new List<(bool Control, int Epoch, long Base, int Count, short FirstControlType)>();
        int pos = 0;
        using var scratch = new PooledBufferWriter();
        while (pos < data.Length)
        {
            int size = RecordBatch.PeekSize(data.AsSpan(pos));
            var batch = new RecordBatch(data.AsSpan(pos, size));
            Assert.Equal(batch.Crc, batch.ComputeCrc());
            short type = -1;
            if (batch.IsControl)
                foreach (var r in new BatchRecords(data.AsSpan(pos, size), scratch)) type = ControlRecords.TypeOf(r.Record.Key);
            batches.Add((batch.IsControl, batch.PartitionLeaderEpoch, batch.BaseOffset, batch.RecordsCount, type));
            pos += size;
        }
        Assert.True(batches.Count >= 3);
        Assert.Equal((true, ControlRecords.SnapshotHeaderType), (batches[0].Control, batches[0].FirstControlType));
        Assert.Equal((true, ControlRecords.SnapshotFooterType), (batches[^1].Control, batches[^1].FirstControlType));
        Assert.All(batches[1..^1], b => Assert.False(b.Control));
        Assert.All(batches, b => Assert.Equal(7, b.Epoch));
        // Offsets count up from 0 across the batches.
        long next = 0;
        foreach (var b in batches)
        {
            Assert.Equal(next, b.Base);
            next += b.Count;
        }
    }

    [Fact]
    public void ALargeImageIsSplitIntoBatches()
    {
        var b = new MetadataImageBuilder(MetadataImage.Empty("snap-cluster", 1));
        for (int t = 0; t < 400; t++)
        {
            var id = Uuid.Random();
            b.Apply(new TopicRecord { Name = $"topic-{t:D4}", TopicId = id });
            for (int p = 0; p < 3; p++) b.Apply(new PartitionRecord { TopicId = id, PartitionId = p, Replicas = [1], Isr = [1], Leader = 1, LeaderEpoch = 0, PartitionEpoch = 0 });
        }
        var image = b.Build(1999);
        byte[] data = MetadataSnapshot.Write(image, 3, 0);
        var loaded = Load(data, 2000);
        Assert.Equal(400, loaded.TopicsByName.Count);
        Assert.Equal(Canonical(image), Canonical(loaded));
    }

    [Fact]
    public void ATruncatedOrCorruptSnapshotIsRefusedWhole()
    {
        byte[] data = MetadataSnapshot.Write(BusyImage(), 7, 0);
        // Cut anywhere: inside a batch, or cleanly before the footer batch.
        int footerSize = FooterSize(data);
        foreach (int cut in new[] { 10, data.Length / 2, data.Length - footerSize, data.Length - 1 })
            Assert.Throws<InvalidDataException>(() => MetadataSnapshot.Read(data.AsMemory(0, cut)));
        var corrupt = (byte[])data.Clone();
        corrupt[data.Length / 2] ^= 0x40;
        Assert.Throws<InvalidDataException>(() => MetadataSnapshot.Read(corrupt));
        Assert.Throws<InvalidDataException>(() => MetadataSnapshot.Read(ReadOnlyMemory<byte>.Empty));
    }

    private static int FooterSize(byte[] data)
    {
        int pos = 0, last = 0;
        while (pos < data.Length)
        {
            last = RecordBatch.PeekSize(data.AsSpan(pos));
            pos += last;
        }
        return last;
    }
}
