using System.Collections.Immutable;
using Freshet.Protocol.MetadataRecords;
using Freshet.Protocol.Wire;

namespace Freshet.Metadata.Image;

/// <summary>
/// Applies metadata records to an image (Kafka's MetadataDelta): replay at start-up and every
/// commit go through here, so the image a broker serves is exactly what the log says.
/// Records this version does not model are skipped (they still stay in the log).
/// </summary>
public sealed class MetadataImageBuilder(MetadataImage start)
{
    private MetadataImage _image = start;

    public MetadataImage Build(long offset) => _image with { Offset = offset };

    public MetadataImage Current => _image;

    public void Apply(IMessage record)
    {
        var i = _image;
        switch (record)
        {
            case TopicRecord t:
            {
                var topic = new TopicImage(t.Name, t.TopicId, ImmutableSortedDictionary<int, PartitionRegistration>.Empty);
                _image = i with
                {
                    TopicsByName = i.TopicsByName.SetItem(t.Name, topic),
                    TopicsById = i.TopicsById.SetItem(t.TopicId, topic),
                };
                break;
            }
            case PartitionRecord p:
            {
                if (!i.TopicsById.TryGetValue(p.TopicId, out var topic)) return;
                var reg = new PartitionRegistration(
                    [.. p.Replicas], [.. p.Isr], [.. p.RemovingReplicas], [.. p.AddingReplicas],
                    p.Leader, p.LeaderEpoch, p.PartitionEpoch);
                PutTopic(topic with { Partitions = topic.Partitions.SetItem(p.PartitionId, reg) });
                break;
            }
            case PartitionChangeRecord c:
            {
                if (!i.TopicsById.TryGetValue(c.TopicId, out var topic) || !topic.Partitions.TryGetValue(c.PartitionId, out var reg)) return;
                bool leaderChanged = c.Leader != -2 && c.Leader != reg.Leader;
                var next = reg with
                {
                    Isr = c.Isr is null ? reg.Isr : [.. c.Isr],
                    Replicas = c.Replicas is null ? reg.Replicas : [.. c.Replicas],
                    RemovingReplicas = c.RemovingReplicas is null ? reg.RemovingReplicas : [.. c.RemovingReplicas],
                    AddingReplicas = c.AddingReplicas is null ? reg.AddingReplicas : [.. c.AddingReplicas],
                    Leader = c.Leader == -2 ? reg.Leader : c.Leader,
                    LeaderEpoch = leaderChanged ? reg.LeaderEpoch + 1 : reg.LeaderEpoch,
                    PartitionEpoch = reg.PartitionEpoch + 1,
                };
                PutTopic(topic with { Partitions = topic.Partitions.SetItem(c.PartitionId, next) });
                break;
            }
            case RemoveTopicRecord r:
            {
                if (!i.TopicsById.TryGetValue(r.TopicId, out var topic)) return;
                _image = i with
                {
                    TopicsByName = i.TopicsByName.Remove(topic.Name),
                    TopicsById = i.TopicsById.Remove(topic.Id),
                    Configs = i.Configs.Remove(new ConfigResourceKey(ConfigResourceType.Topic, topic.Name)),
                };
                break;
            }
            case ConfigRecord c:
            {
                var key = new ConfigResourceKey((ConfigResourceType)c.ResourceType, c.ResourceName);
                var cur = i.Configs.GetValueOrDefault(key) ?? ImmutableDictionary<string, string>.Empty.WithComparers(StringComparer.Ordinal);
                // A null value removes the override.
                cur = c.Value is null ? cur.Remove(c.Name) : cur.SetItem(c.Name, c.Value);
                _image = i with { Configs = cur.IsEmpty ? i.Configs.Remove(key) : i.Configs.SetItem(key, cur) };
                break;
            }
            case RegisterBrokerRecord b:
            {
                var reg = new BrokerRegistration(b.BrokerId, b.BrokerEpoch, b.IncarnationId,
                    [.. b.EndPoints.Select(e => new BrokerEndpoint(e.Name, e.Host, e.Port, e.SecurityProtocol))],
                    b.Rack, b.Fenced, b.InControlledShutdown);
                _image = i with { Brokers = i.Brokers.SetItem(b.BrokerId, reg) };
                break;
            }
            case UnfenceBrokerRecord u:
                if (i.Brokers.TryGetValue(u.Id, out var ub) && ub.Epoch == u.Epoch)
                    _image = i with { Brokers = i.Brokers.SetItem(u.Id, ub with { Fenced = false }) };
                break;
            case FenceBrokerRecord f:
                if (i.Brokers.TryGetValue(f.Id, out var fb) && fb.Epoch == f.Epoch)
                    _image = i with { Brokers = i.Brokers.SetItem(f.Id, fb with { Fenced = true }) };
                break;
            case BrokerRegistrationChangeRecord bc:
                if (i.Brokers.TryGetValue(bc.BrokerId, out var cb) && cb.Epoch == bc.BrokerEpoch)
                {
                    // Fenced: 1 fenced, -1 unfenced, 0 unchanged. InControlledShutdown: 1 entered, 0 unchanged.
                    var next = cb with
                    {
                        Fenced = bc.Fenced switch { 1 => true, -1 => false, _ => cb.Fenced },
                        InControlledShutdown = bc.InControlledShutdown == 1 || cb.InControlledShutdown,
                    };
                    _image = i with { Brokers = i.Brokers.SetItem(bc.BrokerId, next) };
                }
                break;
            case UnregisterBrokerRecord ur:
                _image = i with { Brokers = i.Brokers.Remove(ur.BrokerId) };
                break;
            case ProducerIdsRecord pid:
                _image = i with { NextProducerId = Math.Max(i.NextProducerId, pid.NextProducerId) };
                break;
            case FeatureLevelRecord fl:
                _image = i with { Features = fl.FeatureLevel == 0 ? i.Features.Remove(fl.Name) : i.Features.SetItem(fl.Name, fl.FeatureLevel) };
                break;
        }
    }

    private void PutTopic(TopicImage topic) =>
        _image = _image with
        {
            TopicsByName = _image.TopicsByName.SetItem(topic.Name, topic),
            TopicsById = _image.TopicsById.SetItem(topic.Id, topic),
        };
}
