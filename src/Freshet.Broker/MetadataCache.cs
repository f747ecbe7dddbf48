using Freshet.Metadata.Controller;
using Freshet.Metadata.Image;

namespace Freshet.Broker;

/// <summary>The broker's copy of the latest metadata image (Kafka's KRaftMetadataCache).</summary>
public sealed class MetadataCache(MetadataImage initial) : IMetadataListener
{
    private MetadataImage _image = initial;

    public MetadataImage Image => Volatile.Read(ref _image);

    public void OnMetadataUpdate(MetadataImage previous, MetadataImage current) => Volatile.Write(ref _image, current);
}
