using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Groups;

/// <summary>The classic (Join/Sync/Heartbeat) protocol's group states, named as Kafka names them.</summary>
public enum ClassicGroupState
{
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

/// <summary>A member of a classic group.</summary>
public sealed class ClassicMember(string memberId, string? groupInstanceId, string clientId, string clientHost, int sessionTimeoutMs, int rebalanceTimeoutMs)
{
    public string MemberId { get; set; } = memberId;
    public string? GroupInstanceId { get; } = groupInstanceId;
    public string ClientId { get; set; } = clientId;
    public string ClientHost { get; set; } = clientHost;
    public int SessionTimeoutMs { get; set; } = sessionTimeoutMs;
    public int RebalanceTimeoutMs { get; set; } = rebalanceTimeoutMs;
    public string ProtocolType { get; set; } = "";

    /// <summary>Protocols the member supports, in its order of preference, with their metadata.</summary>
    public List<(string Name, byte[] Metadata)> Protocols { get; set; } = [];

    public byte[] Assignment { get; set; } = [];

    /// <summary>The member's JoinGroup waiting for the rebalance to complete.</summary>
    public TaskCompletionSource<JoinGroupResponse>? PendingJoin { get; set; }
    public short PendingJoinVersion { get; set; }

    /// <summary>The member's SyncGroup waiting for the leader's assignment.</summary>
    public TaskCompletionSource<SyncGroupResponse>? PendingSync { get; set; }

    /// <summary>Session expiry: reset by every heartbeat, join and sync.</summary>
    public ITimer? SessionTimer { get; set; }

    public bool IsStatic => GroupInstanceId is not null;

    public byte[]? MetadataFor(string protocol) => Protocols.FirstOrDefault(p => p.Name == protocol).Metadata;

    public bool SameProtocols(List<(string Name, byte[] Metadata)> other) =>
        Protocols.Count == other.Count
        && Protocols.Zip(other).All(x => x.First.Name == x.Second.Name && x.First.Metadata.AsSpan().SequenceEqual(x.Second.Metadata));
}

/// <summary>
/// A group using the classic protocol (Kafka's ClassicGroup): members, generation, chosen
/// protocol, leader, and the rebalance state machine Empty -> PreparingRebalance ->
/// CompletingRebalance -> Stable. Guarded by <see cref="Group.Lock"/>.
/// </summary>
public sealed class ClassicGroup(string groupId, int coordinatorPartition) : Group(groupId, coordinatorPartition)
{
    public override string Type => "classic";
    public ClassicGroupState State { get; set; } = ClassicGroupState.Empty;
    public override string StateName => State.ToString();
    public override bool IsEmpty => Members.Count == 0;

    public int GenerationId { get; set; }
    public string? ProtocolType { get; set; }
    public string? ProtocolName { get; set; }
    public string? LeaderId { get; set; }
    public long CurrentStateTimestamp { get; set; } = -1;

    public Dictionary<string, ClassicMember> Members { get; } = new(StringComparer.Ordinal);

    /// <summary>group.instance.id -> member id, for static members.</summary>
    public Dictionary<string, string> StaticMembers { get; } = new(StringComparer.Ordinal);

    /// <summary>Member ids handed out with MEMBER_ID_REQUIRED that have not joined yet.</summary>
    public HashSet<string> PendingMembers { get; } = new(StringComparer.Ordinal);

    /// <summary>Completes the current rebalance's join phase when it fires.</summary>
    public ITimer? JoinTimer { get; set; }

    /// <summary>When the initial delayed join (group.initial.rebalance.delay.ms) must end at the latest.</summary>
    public long InitialJoinDeadlineMs { get; set; } = -1;

    public int MaxRebalanceTimeoutMs => Members.Count == 0 ? 0 : Members.Values.Max(m => m.RebalanceTimeoutMs);

    public bool AllMembersJoined => PendingMembers.Count == 0 && Members.Values.All(m => m.PendingJoin is not null);

    /// <summary>The protocol every member supports that gets the most votes (each member votes for its first supported one), as Kafka picks it.</summary>
    public string? SelectProtocol()
    {
        if (Members.Count == 0) return null;
        var candidates = Members.Values.First().Protocols.Select(p => p.Name)
            .Where(name => Members.Values.All(m => m.Protocols.Any(p => p.Name == name))).ToHashSet();
        if (candidates.Count == 0) return null;
        return Members.Values
            .Select(m => m.Protocols.First(p => candidates.Contains(p.Name)).Name)
            .GroupBy(n => n).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).First().Key;
    }

    /// <summary>Whether a member with this protocol type and these protocols can join (Kafka's supportsProtocols).</summary>
    public bool SupportsProtocols(string protocolType, IEnumerable<string> protocols)
    {
        if (Members.Count == 0) return protocolType.Length > 0 && protocols.Any();
        if (ProtocolType != protocolType) return false;
        var names = protocols.ToHashSet();
        return Members.Values.First().Protocols.Select(p => p.Name)
            .Where(n => Members.Values.All(m => m.Protocols.Any(p => p.Name == n)))
            .Any(names.Contains);
    }

    public override IReadOnlySet<string> SubscribedTopics
    {
        get
        {
            var topics = new HashSet<string>(StringComparer.Ordinal);
            if (ProtocolType != "consumer" || ProtocolName is null) return topics;
            foreach (var m in Members.Values)
            {
                var meta = m.MetadataFor(ProtocolName);
                if (meta is null) continue;
                try
                {
                    var r = new ProtocolReader(meta);
                    short version = r.ReadInt16();
                    var sub = new ConsumerProtocolSubscription();
                    sub.Read(ref r, Math.Min(version, ConsumerProtocolSubscription.HighestVersion));
                    topics.UnionWith(sub.Topics);
                }
                catch (ProtocolException)
                {
                    // Unreadable subscription metadata: the member's topics are unknown, not an error here.
                }
            }
            return topics;
        }
    }
}
