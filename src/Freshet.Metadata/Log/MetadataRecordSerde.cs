using Freshet.Protocol.MetadataRecords;
using Freshet.Protocol.Wire;

namespace Freshet.Metadata.Log;

/// <summary>
/// A metadata record as a record value in the metadata log, the way KRaft frames it so Kafka's
/// tools can read our log: unsigned varint frame version (1), unsigned varint record type (the
/// schema's apiKey), unsigned varint record version, then the record in its (flexible) encoding.
/// </summary>
public static class MetadataRecordSerde
{
    public const byte FrameVersion = 1;

    /// <summary>A record and the version it is written at.</summary>
    public readonly record struct VersionedRecord(short Type, short Version, IMessage Message);

    public static byte[] Serialize(short type, short version, IMessage record)
    {
        var size = new MessageSize();
        record.AddSize(ref size, version);
        int header = MessageSize.UnsignedVarIntSize(FrameVersion) + MessageSize.UnsignedVarIntSize((uint)type) + MessageSize.UnsignedVarIntSize((uint)version);
        var bytes = new byte[header + size.Total];
        var w = new ProtocolWriter(bytes);
        w.WriteUnsignedVarInt(FrameVersion);
        w.WriteUnsignedVarInt((uint)type);
        w.WriteUnsignedVarInt((uint)version);
        record.Write(ref w, version);
        return bytes;
    }

    /// <summary>Decodes a record value; throws <see cref="ProtocolException"/> on malformed input or an unknown type.</summary>
    public static VersionedRecord Deserialize(ReadOnlyMemory<byte> value)
    {
        var r = new ProtocolReader(value);
        uint frame = r.ReadUnsignedVarInt();
        if (frame != FrameVersion) throw new ProtocolException($"unsupported metadata record frame version {frame}");
        short type = checked((short)r.ReadUnsignedVarInt());
        short version = checked((short)r.ReadUnsignedVarInt());
        var message = MetadataRecords.Create(type) ?? throw new ProtocolException($"unknown metadata record type {type}");
        if (version < message.LowestSupportedVersion || version > message.HighestSupportedVersion)
            throw new ProtocolException($"unsupported version {version} of metadata record type {type}");
        message.Read(ref r, version);
        if (!r.End) throw new ProtocolException($"{r.Remaining} bytes left after metadata record type {type}");
        return new VersionedRecord(type, version, message);
    }
}
