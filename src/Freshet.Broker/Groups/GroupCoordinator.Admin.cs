using Freshet.Protocol;
using Freshet.Protocol.Messages;

namespace Freshet.Broker.Groups;

/// <summary>ListGroups, DescribeGroups and DeleteGroups.</summary>
public sealed partial class GroupCoordinator
{
    /// <summary>Groups coordinated here, optionally filtered by state and type names (case-insensitive, as Kafka compares them).</summary>
    public List<ListGroupsResponse.ListedGroup> ListGroups(IReadOnlyCollection<string>? states, IReadOnlyCollection<string>? types)
    {
        var result = new List<ListGroupsResponse.ListedGroup>();
        foreach (var g in _groups.Values.OrderBy(g => g.GroupId, StringComparer.Ordinal))
        {
            if (!_owned.ContainsKey(g.CoordinatorPartition)) continue;
            string state, protocolType;
            lock (g.Lock)
            {
                if (g.IsDead) continue;
                state = g.StateName;
                protocolType = g is ClassicGroup cg ? cg.ProtocolType ?? "" : "consumer";
            }
            if (states is { Count: > 0 } && !states.Contains(state, StringComparer.OrdinalIgnoreCase)) continue;
            if (types is { Count: > 0 } && !types.Contains(g.Type, StringComparer.OrdinalIgnoreCase)) continue;
            result.Add(new ListGroupsResponse.ListedGroup { GroupId = g.GroupId, ProtocolType = protocolType, GroupState = state, GroupType = g.Type });
        }
        return result;
    }

    /// <summary>A classic group's description; members' metadata and assignments only when Stable, as Kafka gives them.</summary>
    public DescribeGroupsResponse.DescribedGroup DescribeGroup(string groupId)
    {
        var d = new DescribeGroupsResponse.DescribedGroup { GroupId = groupId };
        var ce = CheckCoordinator(groupId);
        if (ce != ErrorCode.None)
        {
            d.ErrorCode = (short)ce;
            return d;
        }
        if (!_groups.TryGetValue(groupId, out var g))
        {
            d.GroupState = "Dead";
            return d;
        }
        lock (g.Lock)
        {
            if (g.IsDead)
            {
                d.GroupState = "Dead";
                return d;
            }
            if (g is not ClassicGroup cg)
            {
                // A KIP-848 group: described by ConsumerGroupDescribe.
                d.ErrorCode = (short)ErrorCode.GroupIdNotFound;
                d.GroupState = "Dead";
                return d;
            }
            d.GroupState = cg.StateName;
            d.ProtocolType = cg.ProtocolType ?? "";
            d.ProtocolData = cg.State == ClassicGroupState.Stable ? cg.ProtocolName ?? "" : "";
            foreach (var m in cg.Members.Values)
            {
                var dm = new DescribeGroupsResponse.DescribedGroupMember
                {
                    MemberId = m.MemberId,
                    GroupInstanceId = m.GroupInstanceId,
                    ClientId = m.ClientId,
                    ClientHost = m.ClientHost,
                };
                if (cg.State == ClassicGroupState.Stable && cg.ProtocolName is not null)
                {
                    dm.MemberMetadata = m.MetadataFor(cg.ProtocolName) ?? [];
                    dm.MemberAssignment = m.Assignment;
                }
                d.Members.Add(dm);
            }
        }
        return d;
    }

    /// <summary>Deletes empty groups with their offsets (tombstones in __consumer_offsets).</summary>
    public async Task<ErrorCode> DeleteGroupAsync(string groupId)
    {
        if (string.IsNullOrEmpty(groupId)) return ErrorCode.InvalidGroupId;
        var ce = CheckCoordinator(groupId);
        if (ce != ErrorCode.None) return ce;
        if (!_groups.TryGetValue(groupId, out var g)) return ErrorCode.GroupIdNotFound;
        Task<ErrorCode> write;
        lock (g.Lock)
        {
            if (g.IsDead) return ErrorCode.GroupIdNotFound;
            if (!g.IsEmpty) return ErrorCode.NonEmptyGroup;
            // The tombstones first: the group goes from memory only once they are in the log.
            write = AppendGroupChangeLocked(g, GroupTombstones(g));
            // Not written (g was rebuilt from the log, and is dead): the error is the answer.
            if (!g.IsDead)
            {
                g.IsDead = true;
                _groups.TryRemove(new KeyValuePair<string, Group>(groupId, g));
            }
        }
        return await write.ConfigureAwait(false);
    }

    /// <summary>Tombstones for everything a group stored: its offsets and its metadata record(s).</summary>
    private List<(byte[] Key, byte[]? Value)> GroupTombstones(Group g)
    {
        var records = g.Offsets.Keys.Select(tp => (GroupRecords.OffsetCommitKeyBytes(g.GroupId, tp.Topic, tp.Partition), (byte[]?)null)).ToList();
        if (g is ClassicGroup) records.Add((GroupRecords.GroupMetadataKeyBytes(g.GroupId), null));
        else AddConsumerGroupTombstones(g, records);
        g.Offsets.Clear();
        return records;
    }

    partial void AddConsumerGroupTombstones(Group g, List<(byte[] Key, byte[]? Value)> records);
}
