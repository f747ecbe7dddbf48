using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using Freshet.Metadata.Image;
using Freshet.Protocol;
using Freshet.Protocol.CoordinatorRecords;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;
using Microsoft.Extensions.Logging;

namespace Freshet.Broker.Groups;

/// <summary>
/// The KIP-848 consumer group protocol: ConsumerGroupHeartbeat and ConsumerGroupDescribe.
/// <para>
/// A member joins with epoch 0, then heartbeats with the epoch it was last given; -1 leaves and
/// -2 is a static member's temporary leave. Each heartbeat may (1) update the member and bump
/// the group epoch when membership, a subscription or a subscribed topic's partitions changed,
/// (2) compute a new target assignment with the server-side assignor when the group epoch is
/// ahead of the assignment epoch, and (3) move the member one step towards its target:
/// <list type="bullet">
/// <item>partitions it has that its target no longer has must be revoked first: the member keeps
/// its epoch and is told its reduced assignment (state UnrevokedPartitions) until a heartbeat
/// reports owned partitions without them, or its rebalance timeout fences it;</item>
/// <item>then it moves to the assignment epoch and gets the target partitions nobody else holds;
/// those still held by a member that has not revoked them follow on later heartbeats (state
/// UnreleasedPartitions).</item>
/// </list>
/// So a partition is never assigned to two members at once. Every change is written as
/// ConsumerGroup* records to __consumer_offsets before the response goes out, and replayed
/// when the partition is loaded, so members keep their epochs across a coordinator restart.
/// </para>
/// </summary>
public sealed partial class GroupCoordinator
{
    public const int JoinEpoch = 0;
    public const int LeaveEpoch = -1;
    public const int StaticLeaveEpoch = -2;

    private const short ValueVersion0 = 0;

    /// <summary>Internal topics a subscription regex never matches (Kafka leaves them out of regex resolution too).</summary>
    private static readonly HashSet<string> InternalTopics = new(StringComparer.Ordinal) { GroupRecords.OffsetsTopic, "__transaction_state", "__share_group_state" };

    private IReadOnlyList<IConsumerGroupAssignor>? _assignors;

    /// <summary>group.consumer.assignors that this broker implements, in configured order (the first is the default).</summary>
    public IReadOnlyList<IConsumerGroupAssignor> ConsumerAssignors =>
        _assignors ??= [.. Options.ConsumerAssignors.Select(ConsumerGroupAssignors.Create).OfType<IConsumerGroupAssignor>().DistinctBy(a => a.Name)];

    private IConsumerGroupAssignor DefaultAssignor => ConsumerAssignors.Count > 0 ? ConsumerAssignors[0] : new UniformAssignor();

    private IConsumerGroupAssignor? FindAssignor(string name) => ConsumerAssignors.FirstOrDefault(a => a.Name == name);

    // ================================================================ ConsumerGroupHeartbeat

    public async Task<ConsumerGroupHeartbeatResponse> ConsumerGroupHeartbeatAsync(ConsumerGroupHeartbeatRequest req, short version, string clientId, string clientHost)
    {
        var invalid = ValidateHeartbeat(req, version);
        if (invalid is not null) return invalid;
        var ce = CheckCoordinator(req.GroupId);
        if (ce != ErrorCode.None) return HeartbeatError(ce);

        bool leaving = req.MemberEpoch is LeaveEpoch or StaticLeaveEpoch;
        for (int attempt = 0; attempt < 3; attempt++)
        {
            var (group, error, message, deleteClassic) = ConsumerGroupFor(req.GroupId, create: req.MemberEpoch == JoinEpoch);
            if (group is null) return HeartbeatError(error, message);
            ConsumerGroupHeartbeatResponse response;
            Task<ErrorCode> persist;
            lock (group.Lock)
            {
                if (group.IsDead) continue; // deleted or expired meanwhile: look it up again
                var records = new List<(byte[] Key, byte[]? Value)>();
                if (deleteClassic) records.Add((GroupRecords.GroupMetadataKeyBytes(group.GroupId), null));
                response = leaving
                    ? Leave(group, req, records)
                    : Heartbeat(group, req, clientId, clientHost, records);
                // Appending under the lock keeps the log in the order the state changed (the
                // append itself is synchronous; only the wait for the commit is not); a change
                // that cannot be written is undone there.
                persist = AppendGroupChangeLocked(group, records);
            }
            var e = await persist.ConfigureAwait(false);
            return e == ErrorCode.None ? response : HeartbeatError(e);
        }
        return HeartbeatError(ErrorCode.CoordinatorNotAvailable);
    }

    private ConsumerGroupHeartbeatResponse HeartbeatError(ErrorCode e, string? message = null) => new()
    {
        ErrorCode = (short)e,
        ErrorMessage = message ?? e.DefaultMessage(),
    };

    /// <summary>The request checks Kafka makes before looking at the group (INVALID_REQUEST, UNSUPPORTED_ASSIGNOR); null when the request is well formed.</summary>
    private ConsumerGroupHeartbeatResponse? ValidateHeartbeat(ConsumerGroupHeartbeatRequest req, short version)
    {
        ConsumerGroupHeartbeatResponse Invalid(string message) => HeartbeatError(ErrorCode.InvalidRequest, message);

        if (string.IsNullOrEmpty(req.GroupId)) return Invalid("GroupId can't be empty.");
        if (req.InstanceId is { Length: 0 }) return Invalid("InstanceId can't be empty.");
        if (req.RackId is { Length: 0 }) return Invalid("RackId can't be empty.");
        switch (req.MemberEpoch)
        {
            case JoinEpoch:
                if (req.RebalanceTimeoutMs == -1) return Invalid("RebalanceTimeoutMs must be provided in first request.");
                if (req.TopicPartitions is null || req.TopicPartitions.Count > 0) return Invalid("TopicPartitions must be empty when (re-)joining.");
                if (req.SubscribedTopicNames is null && req.SubscribedTopicRegex is null)
                    return Invalid(version >= 1 ? "SubscribedTopicNames or SubscribedTopicRegex must be set in first request." : "SubscribedTopicNames must be set in first request.");
                break;
            case StaticLeaveEpoch:
                if (string.IsNullOrEmpty(req.MemberId)) return Invalid("MemberId can't be empty.");
                if (req.InstanceId is null) return Invalid("InstanceId can't be null.");
                break;
            case LeaveEpoch:
            case > 0:
                if (string.IsNullOrEmpty(req.MemberId)) return Invalid("MemberId can't be empty.");
                break;
            default:
                return Invalid($"MemberEpoch {req.MemberEpoch} is invalid.");
        }
        if (req.ServerAssignor is { } assignor && FindAssignor(assignor) is null)
            return HeartbeatError(ErrorCode.UnsupportedAssignor,
                $"ServerAssignor {assignor} is not supported. Supported assignors: {string.Join(", ", ConsumerAssignors.Select(a => a.Name))}.");
        if (req.SubscribedTopicRegex is { Length: > 0 } regex && CompileSubscriptionRegex(regex) is null)
            return Invalid($"SubscribedTopicRegex {regex} is not a valid regular expression.");
        return null;
    }

    /// <summary>
    /// The consumer group for a heartbeat. Joining (epoch 0) creates it, or takes over an empty
    /// classic group (its offsets stay; its GroupMetadata record must be deleted), as Kafka does.
    /// A classic group with members is refused with GROUP_ID_NOT_FOUND, which is what Kafka
    /// answers when it cannot convert the group (this broker does not do Kafka's online upgrade).
    /// </summary>
    private (ConsumerGroup? Group, ErrorCode Error, string? Message, bool DeleteClassicRecord) ConsumerGroupFor(string groupId, bool create)
    {
        for (int attempt = 0; attempt < 5; attempt++)
        {
            if (!_groups.TryGetValue(groupId, out var g))
            {
                if (!create) return (null, ErrorCode.GroupIdNotFound, $"Group {groupId} not found.", false);
                var fresh = new ConsumerGroup(groupId, PartitionFor(groupId));
                if (_groups.TryAdd(groupId, fresh)) return (fresh, ErrorCode.None, null, false);
                continue;
            }
            if (g is ConsumerGroup cg) return (cg, ErrorCode.None, null, false);
            if (!create) return (null, ErrorCode.GroupIdNotFound, $"Group {groupId} is not a consumer group.", false);
            lock (g.Lock)
            {
                if (g.IsDead) continue;
                if (!g.IsEmpty)
                    return (null, ErrorCode.GroupIdNotFound,
                        $"Group {groupId} is not a consumer group: it has members using the classic protocol, and this broker does not convert a classic group with members to the consumer protocol.", false);
                var converted = new ConsumerGroup(groupId, g.CoordinatorPartition) { EmptySinceMs = g.EmptySinceMs };
                foreach (var (tp, o) in g.Offsets) converted.Offsets[tp] = o;
                if (!_groups.TryUpdate(groupId, converted, g)) continue;
                g.IsDead = true;
                if (g is ClassicGroup classic) classic.JoinTimer?.Dispose();
                return (converted, ErrorCode.None, null, g is ClassicGroup { GenerationId: > 0 });
            }
        }
        return (null, ErrorCode.CoordinatorNotAvailable, null, false);
    }

    /// <summary>
    /// A classic JoinGroup for a consumer group: an empty one is replaced by a classic group that
    /// keeps its offsets (Kafka converts empty groups either way); its records are deleted first,
    /// so a replay ends with the classic group. Null while it has members: the join is refused
    /// with INCONSISTENT_GROUP_PROTOCOL (no mixed groups here). When the tombstones cannot be
    /// written the consumer group stays (rebuilt from the log) and the error is returned.
    /// </summary>
    private (ClassicGroup? Group, ErrorCode Error) ReplaceEmptyConsumerGroup(ConsumerGroup g)
    {
        lock (g.Lock)
        {
            if (!g.IsEmpty) return (null, ErrorCode.None);
            if (!g.IsDead)
            {
                if (!_groups.TryGetValue(g.GroupId, out var current) || !ReferenceEquals(current, g)) return (null, ErrorCode.None);
                var classic = new ClassicGroup(g.GroupId, g.CoordinatorPartition) { EmptySinceMs = g.EmptySinceMs };
                foreach (var (tp, o) in g.Offsets) classic.Offsets[tp] = o;
                var records = new List<(byte[] Key, byte[]? Value)>();
                AddConsumerGroupTombstones(g, records);
                var write = AppendGroupChangeLocked(g, records);
                if (g.IsDead) return (null, write.Result); // not written: g was rebuilt from the log
                _groups[g.GroupId] = classic;
                g.IsDead = true;
                _ = ObserveBackgroundWriteAsync(write, g.GroupId, "conversion to a classic group"); // never faults
                LogConsumerGroupConverted(_logger, g.GroupId);
                return (classic, ErrorCode.None);
            }
        }
        // Deleted meanwhile: whatever replaced it.
        return (_groups.TryGetValue(g.GroupId, out var now) ? now as ClassicGroup : null, ErrorCode.None);
    }

    /// <summary>A join (epoch 0) or a heartbeat (epoch &gt; 0). Under the group's lock.</summary>
    private ConsumerGroupHeartbeatResponse Heartbeat(ConsumerGroup g, ConsumerGroupHeartbeatRequest req, string clientId, string clientHost,
        List<(byte[] Key, byte[]? Value)> records)
    {
        var owned = OwnedPartitions(req.TopicPartitions);
        ConsumerGroupMember? member;
        bool isNew = false;
        if (req.MemberEpoch == JoinEpoch)
        {
            string memberId = req.MemberId.Length > 0 ? req.MemberId : Uuid.Random().ToString();
            if (req.InstanceId is { } instanceId && g.StaticMembers.TryGetValue(instanceId, out var heldBy) && heldBy != memberId
                && g.Members.TryGetValue(heldBy, out var previous))
            {
                if (!previous.IsStaticLeft)
                    return HeartbeatError(ErrorCode.UnreleasedInstanceId,
                        $"Static member {memberId} with instance id {instanceId} cannot join the group because the instance id is owned by member {heldBy}.");
                member = ReplaceStaticMember(g, previous, memberId, records);
            }
            else if (g.Members.TryGetValue(memberId, out member))
            {
                // A member rejoining (after FENCED_MEMBER_EPOCH or UNKNOWN_MEMBER_ID on its side, or a
                // static member back from a temporary leave): it holds nothing now, which the empty
                // TopicPartitions of the request says, so any revocation it owed is done.
                if (member.IsStaticLeft)
                {
                    member.MemberEpoch = member.PreviousMemberEpoch;
                    records.Add(CurrentAssignmentRecord(g, member));
                }
            }
            else
            {
                member = new ConsumerGroupMember(memberId) { InstanceId = req.InstanceId };
                g.Members[memberId] = member;
                if (req.InstanceId is not null) g.StaticMembers[req.InstanceId] = memberId;
                g.EmptySinceMs = -1;
                isNew = true;
                LogConsumerJoined(_logger, g.GroupId, memberId);
            }
        }
        else
        {
            if (!g.Members.TryGetValue(req.MemberId, out member))
                return HeartbeatError(ErrorCode.UnknownMemberId, $"Member {req.MemberId} is not a member of group {g.GroupId}.");
            if (req.InstanceId is { } instanceId && (!g.StaticMembers.TryGetValue(instanceId, out var heldBy) || heldBy != member.MemberId))
                return HeartbeatError(ErrorCode.FencedInstanceId, $"Instance id {instanceId} is not held by member {member.MemberId}.");
            if (req.MemberEpoch > member.MemberEpoch)
                return HeartbeatError(ErrorCode.FencedMemberEpoch,
                    $"The consumer group member has a greater member epoch ({req.MemberEpoch}) than the one known by the group coordinator ({member.MemberEpoch}). The member must abandon all its partitions and rejoin.");
            if (req.MemberEpoch < member.MemberEpoch
                && !(req.MemberEpoch == member.PreviousMemberEpoch && owned is not null && owned.IsSubsetOf(member.Assigned)))
            {
                // The previous epoch is accepted only from a member that missed the response bumping
                // it: it then still owns a subset of what it is assigned.
                return HeartbeatError(ErrorCode.FencedMemberEpoch,
                    $"The consumer group member has a smaller member epoch ({req.MemberEpoch}) than the one known by the group coordinator ({member.MemberEpoch}). The member must abandon all its partitions and rejoin.");
            }
        }

        // 1. The member's metadata and subscription.
        bool subscriptionChanged = isNew;
        bool metadataChanged = isNew;
        if (req.RackId is not null && req.RackId != member.RackId)
        {
            member.RackId = req.RackId;
            metadataChanged = subscriptionChanged = true; // assignors may place by rack
        }
        if (clientId != member.ClientId || clientHost != member.ClientHost)
        {
            member.ClientId = clientId;
            member.ClientHost = clientHost;
            metadataChanged = true;
        }
        if (req.RebalanceTimeoutMs != -1 && req.RebalanceTimeoutMs != member.RebalanceTimeoutMs)
        {
            member.RebalanceTimeoutMs = req.RebalanceTimeoutMs;
            metadataChanged = true;
        }
        if (req.SubscribedTopicNames is not null)
        {
            var names = req.SubscribedTopicNames.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
            if (!names.SequenceEqual(member.SubscribedTopicNames, StringComparer.Ordinal))
            {
                member.SubscribedTopicNames = names;
                metadataChanged = subscriptionChanged = true;
            }
        }
        if (req.SubscribedTopicRegex is not null)
        {
            // An empty regex clears it (librdkafka sends "" when it subscribes to names only).
            string? regex = req.SubscribedTopicRegex.Length == 0 ? null : req.SubscribedTopicRegex;
            if (regex != member.SubscribedTopicRegex)
            {
                member.SubscribedTopicRegex = regex;
                metadataChanged = subscriptionChanged = true;
            }
        }
        if (req.ServerAssignor is not null && req.ServerAssignor != member.ServerAssignor)
        {
            member.ServerAssignor = req.ServerAssignor; // may change the assignor the group uses
            metadataChanged = subscriptionChanged = true;
        }
        if (metadataChanged) records.Add(MemberMetadataRecord(g, member));

        // 2. The group epoch: membership, subscriptions or the subscribed topics changed.
        bool bump = subscriptionChanged | RefreshSubscriptionMetadata(g, subscriptionChanged, records);
        if (bump)
        {
            g.GroupEpoch++;
            records.Add(GroupEpochRecord(g));
        }

        // 3. A new target assignment when the group epoch moved past the last one.
        if (g.GroupEpoch > g.AssignmentEpoch) ComputeTargetAssignment(g, records);

        // 4. One reconciliation step for this member.
        bool assignmentChanged = Reconcile(g, member, req.MemberEpoch == JoinEpoch ? new HashSet<TopicIdPartition>() : owned);
        if (assignmentChanged || isNew) records.Add(CurrentAssignmentRecord(g, member));
        ScheduleConsumerSession(g, member);

        var response = new ConsumerGroupHeartbeatResponse
        {
            MemberId = member.MemberId,
            MemberEpoch = member.MemberEpoch,
            HeartbeatIntervalMs = Options.ConsumerHeartbeatIntervalMs,
        };
        // The assignment goes out when it changed, on a join, or when the member's view of what it
        // owns differs from what it is assigned (it then learns what to drop or take).
        if (req.MemberEpoch == JoinEpoch || assignmentChanged || owned is not null && !owned.SetEquals(member.Assigned))
        {
            response.Assignment = new ConsumerGroupHeartbeatResponse.AssignmentData
            {
                TopicPartitions = ByTopic(member.Assigned, (id, ps) => new ConsumerGroupHeartbeatResponse.TopicPartitions { TopicId = id, Partitions = ps }),
            };
        }
        return response;
    }

    /// <summary>Epoch -1 (the member leaves) or -2 (a static member leaves for now and keeps its place until its session expires).</summary>
    private ConsumerGroupHeartbeatResponse Leave(ConsumerGroup g, ConsumerGroupHeartbeatRequest req, List<(byte[] Key, byte[]? Value)> records)
    {
        ConsumerGroupMember? member;
        if (req.InstanceId is { } instanceId)
        {
            if (!g.StaticMembers.TryGetValue(instanceId, out var heldBy) || !g.Members.TryGetValue(heldBy, out member))
                return HeartbeatError(ErrorCode.UnknownMemberId, $"Instance id {instanceId} is unknown in group {g.GroupId}.");
            if (heldBy != req.MemberId)
                return HeartbeatError(ErrorCode.FencedInstanceId, $"Instance id {instanceId} is held by another member than {req.MemberId}.");
        }
        else if (!g.Members.TryGetValue(req.MemberId, out member))
        {
            return HeartbeatError(ErrorCode.UnknownMemberId, $"Member {req.MemberId} is not a member of group {g.GroupId}.");
        }

        if (req.MemberEpoch == StaticLeaveEpoch && member.InstanceId is not null)
        {
            if (!member.IsStaticLeft)
            {
                member.PreviousMemberEpoch = member.MemberEpoch;
                member.MemberEpoch = StaticLeaveEpoch;
                records.Add(CurrentAssignmentRecord(g, member));
                LogConsumerStaticLeft(_logger, g.GroupId, member.MemberId);
            }
        }
        else
        {
            LogConsumerLeft(_logger, g.GroupId, member.MemberId);
            RemoveConsumerMember(g, member, records);
        }
        return new ConsumerGroupHeartbeatResponse
        {
            MemberId = req.MemberId,
            MemberEpoch = req.MemberEpoch,
            HeartbeatIntervalMs = 0,
        };
    }

    /// <summary>A static member comes back under a new member id: it takes the old one's place, epoch and assignment.</summary>
    private ConsumerGroupMember ReplaceStaticMember(ConsumerGroup g, ConsumerGroupMember old, string newId, List<(byte[] Key, byte[]? Value)> records)
    {
        var member = new ConsumerGroupMember(newId)
        {
            InstanceId = old.InstanceId,
            RackId = old.RackId,
            ClientId = old.ClientId,
            ClientHost = old.ClientHost,
            SubscribedTopicNames = old.SubscribedTopicNames,
            SubscribedTopicRegex = old.SubscribedTopicRegex,
            ServerAssignor = old.ServerAssignor,
            RebalanceTimeoutMs = old.RebalanceTimeoutMs,
            MemberEpoch = old.IsStaticLeft ? old.PreviousMemberEpoch : old.MemberEpoch,
            PreviousMemberEpoch = old.PreviousMemberEpoch,
            State = old.State,
            Assigned = old.Assigned,
            PendingRevocation = old.PendingRevocation,
        };
        old.DisposeTimers();
        records.Add((CurrentAssignmentKey(g, old.MemberId), null));
        if (g.TargetAssignment.Remove(old.MemberId, out var target))
        {
            records.Add((TargetMemberKey(g, old.MemberId), null));
            g.TargetAssignment[newId] = target;
            records.Add(TargetMemberRecord(g, newId, target));
        }
        records.Add((MemberMetadataKey(g, old.MemberId), null));
        g.Members.Remove(old.MemberId);
        g.Members[newId] = member;
        g.StaticMembers[member.InstanceId!] = newId;
        foreach (var (p, owner) in g.PartitionOwners.ToList())
            if (owner == old.MemberId) g.PartitionOwners[p] = newId;
        records.Add(MemberMetadataRecord(g, member));
        records.Add(CurrentAssignmentRecord(g, member));
        LogConsumerReplaced(_logger, g.GroupId, old.MemberId, newId, member.InstanceId!);
        return member;
    }

    /// <summary>Removes a member (left, session expired, or did not revoke in time): tombstones, its partitions freed, a new group epoch.</summary>
    private void RemoveConsumerMember(ConsumerGroup g, ConsumerGroupMember m, List<(byte[] Key, byte[]? Value)> records)
    {
        m.DisposeTimers();
        records.Add((CurrentAssignmentKey(g, m.MemberId), null));
        if (g.TargetAssignment.Remove(m.MemberId)) records.Add((TargetMemberKey(g, m.MemberId), null));
        records.Add((MemberMetadataKey(g, m.MemberId), null));
        g.Members.Remove(m.MemberId);
        if (m.InstanceId is not null && g.StaticMembers.TryGetValue(m.InstanceId, out var id) && id == m.MemberId) g.StaticMembers.Remove(m.InstanceId);
        g.ReleaseAll(m.MemberId);
        RefreshSubscriptionMetadata(g, force: true, records);
        g.GroupEpoch++;
        records.Add(GroupEpochRecord(g));
        if (g.IsEmpty) g.EmptySinceMs = NowMs;
    }

    // ================================================================ subscriptions and target assignment

    /// <summary>
    /// Recomputes which subscribed topics exist and their partition counts, when subscriptions
    /// changed or the metadata image is newer than the one last looked at. True (and a
    /// ConsumerGroupPartitionMetadata record) when that changed: the group epoch must move.
    /// </summary>
    private bool RefreshSubscriptionMetadata(ConsumerGroup g, bool force, List<(byte[] Key, byte[]? Value)>? records)
    {
        var image = _metadata.Image;
        if (!force && ReferenceEquals(g.MetadataImageSeen, image)) return false;
        g.MetadataImageSeen = image;
        ResolveRegexes(g, image);
        var next = new SortedDictionary<string, AssignableTopic>(StringComparer.Ordinal);
        foreach (var m in g.Members.Values)
        {
            foreach (var name in g.TopicsOf(m))
            {
                if (next.ContainsKey(name) || image.Topic(name) is not { } t) continue;
                next[name] = new AssignableTopic(t.Id, name, t.Partitions.Count);
            }
        }
        if (next.Count == g.SubscriptionMetadata.Count && next.All(kv => g.SubscriptionMetadata.TryGetValue(kv.Key, out var o) && o == kv.Value)) return false;
        g.SubscriptionMetadata = next;
        records?.Add(PartitionMetadataRecord(g));
        return true;
    }

    /// <summary>Matches each subscribed regex against the topics of the image (whole names, internal topics excluded).</summary>
    private static void ResolveRegexes(ConsumerGroup g, MetadataImage image)
    {
        var used = g.Members.Values.Select(m => m.SubscribedTopicRegex).OfType<string>().ToHashSet(StringComparer.Ordinal);
        foreach (var stale in g.ResolvedRegexes.Keys.Where(r => !used.Contains(r)).ToList()) g.ResolvedRegexes.Remove(stale);
        foreach (var pattern in used)
        {
            var regex = CompileSubscriptionRegex(pattern);
            var matched = new HashSet<string>(StringComparer.Ordinal);
            if (regex is not null)
            {
                foreach (var name in image.TopicsByName.Keys)
                {
                    if (InternalTopics.Contains(name)) continue;
                    try
                    {
                        if (regex.IsMatch(name)) matched.Add(name);
                    }
                    catch (RegexMatchTimeoutException)
                    {
                        // A pathological pattern: that topic is not matched rather than stalling the coordinator.
                    }
                }
            }
            g.ResolvedRegexes[pattern] = matched;
        }
    }

    /// <summary>A subscription regex, anchored so it must match the whole topic name (as Kafka matches it); null if it does not compile.</summary>
    private static Regex? CompileSubscriptionRegex(string pattern)
    {
        try
        {
            return new Regex($"^(?:{pattern})$", RegexOptions.CultureInvariant, TimeSpan.FromMilliseconds(100));
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    /// <summary>Runs the group's assignor for the current group epoch and records the members whose target changed.</summary>
    private void ComputeTargetAssignment(ConsumerGroup g, List<(byte[] Key, byte[]? Value)> records)
    {
        var assignor = FindAssignor(g.PreferredAssignor(DefaultAssignor.Name)) ?? DefaultAssignor;
        var topics = g.SubscriptionMetadata.Values.ToDictionary(t => t.Id);
        var members = g.Members.Values.OrderBy(m => m.MemberId, StringComparer.Ordinal).Select(m => new AssignorMember(
            m.MemberId, m.InstanceId, m.RackId,
            g.TopicsOf(m).Where(g.SubscriptionMetadata.ContainsKey).Select(n => g.SubscriptionMetadata[n].Id).ToHashSet(),
            g.TargetAssignment.TryGetValue(m.MemberId, out var current) ? current : new HashSet<TopicIdPartition>())).ToList();
        var result = assignor.Assign(new AssignmentSpec(members, topics));
        foreach (var m in members)
        {
            var next = result.TryGetValue(m.MemberId, out var assigned) ? new HashSet<TopicIdPartition>(assigned) : [];
            if (g.TargetAssignment.TryGetValue(m.MemberId, out var before) && before.SetEquals(next)) continue;
            g.TargetAssignment[m.MemberId] = next;
            records.Add(TargetMemberRecord(g, m.MemberId, next));
        }
        g.AssignmentEpoch = g.GroupEpoch;
        g.AssignorName = assignor.Name;
        records.Add(TargetMetadataRecord(g));
    }

    /// <summary>
    /// Moves a member one step towards its target (see the class comment). <paramref name="owned"/>
    /// is what the member reported owning, or null when it did not say. True when the member's
    /// epoch, state or partitions changed (a ConsumerGroupCurrentMemberAssignment record is due).
    /// </summary>
    private bool Reconcile(ConsumerGroup g, ConsumerGroupMember m, IReadOnlySet<TopicIdPartition>? owned)
    {
        if (m.IsStaticLeft) return false;
        bool changed = false;
        if (m.State == ConsumerMemberState.UnrevokedPartitions)
        {
            // Revocation completes when the member reports owning none of the revoked partitions.
            if (owned is null || m.PendingRevocation.Overlaps(owned)) return false;
            foreach (var p in m.PendingRevocation)
                if (g.PartitionOwners.TryGetValue(p, out var holder) && holder == m.MemberId) g.PartitionOwners.Remove(p);
            m.PendingRevocation = [];
            m.State = ConsumerMemberState.Stable;
            m.RebalanceTimer?.Dispose();
            m.RebalanceTimer = null;
            changed = true;
        }
        else if (m.IsReconciledTo(g.AssignmentEpoch))
        {
            return false;
        }

        var target = g.TargetAssignment.TryGetValue(m.MemberId, out var t) ? t : [];
        var revoke = m.Assigned.Where(p => !target.Contains(p)).ToHashSet();
        if (revoke.Count > 0)
        {
            // Give up first, at the current epoch; the new partitions come once that is confirmed.
            m.Assigned.ExceptWith(revoke);
            m.PendingRevocation = revoke;
            m.State = ConsumerMemberState.UnrevokedPartitions;
            ScheduleRevocationTimeout(g, m);
            return true;
        }
        bool unreleased = false;
        foreach (var p in target)
        {
            if (m.Assigned.Contains(p)) continue;
            if (g.PartitionOwners.TryGetValue(p, out var holder) && holder != m.MemberId)
            {
                unreleased = true; // still held by a member that has not revoked it
                continue;
            }
            g.PartitionOwners[p] = m.MemberId;
            m.Assigned.Add(p);
            changed = true;
        }
        if (m.MemberEpoch != g.AssignmentEpoch)
        {
            m.PreviousMemberEpoch = m.MemberEpoch;
            m.MemberEpoch = g.AssignmentEpoch;
            changed = true;
        }
        var state = unreleased ? ConsumerMemberState.UnreleasedPartitions : ConsumerMemberState.Stable;
        if (m.State != state)
        {
            m.State = state;
            changed = true;
        }
        return changed;
    }

    // ================================================================ timers

    /// <summary>(Re)arms the member's session: without a heartbeat for group.consumer.session.timeout.ms it is fenced.</summary>
    private void ScheduleConsumerSession(ConsumerGroup g, ConsumerGroupMember m)
    {
        var due = TimeSpan.FromMilliseconds(Options.ConsumerSessionTimeoutMs);
        if (m.SessionTimer is { } timer) timer.Change(due, Timeout.InfiniteTimeSpan);
        else m.SessionTimer = _time.CreateTimer(_ => FenceConsumerMember(g, m, -1, "session timeout expired"), null, due, Timeout.InfiniteTimeSpan);
    }

    /// <summary>A member asked to revoke has its rebalance timeout to do it; then it is fenced and its partitions move on.</summary>
    private void ScheduleRevocationTimeout(ConsumerGroup g, ConsumerGroupMember m)
    {
        m.RebalanceTimer?.Dispose();
        int epoch = m.MemberEpoch;
        int timeout = m.RebalanceTimeoutMs > 0 ? m.RebalanceTimeoutMs : Options.ConsumerSessionTimeoutMs;
        m.RebalanceTimer = _time.CreateTimer(_ => FenceConsumerMember(g, m, epoch, "did not revoke its partitions within the rebalance timeout"), null,
            TimeSpan.FromMilliseconds(timeout), Timeout.InfiniteTimeSpan);
    }

    /// <summary>Removes a member that went silent or stalled; <paramref name="revokingEpoch"/> &gt;= 0 only fences it if it is still revoking at that epoch.</summary>
    private void FenceConsumerMember(ConsumerGroup g, ConsumerGroupMember m, int revokingEpoch, string reason)
    {
        List<(byte[] Key, byte[]? Value)> records = [];
        lock (g.Lock)
        {
            if (g.IsDead || !g.Members.TryGetValue(m.MemberId, out var current) || !ReferenceEquals(current, m)) return;
            if (!_owned.ContainsKey(g.CoordinatorPartition)) return;
            if (revokingEpoch >= 0 && (m.State != ConsumerMemberState.UnrevokedPartitions || m.MemberEpoch != revokingEpoch)) return;
            LogConsumerFenced(_logger, g.GroupId, m.MemberId, reason);
            RemoveConsumerMember(g, m, records);
            // Not written: the group is rebuilt with the member, whose session (and so this fencing) runs again.
            _ = ObserveBackgroundWriteAsync(AppendGroupChangeLocked(g, records), g.GroupId, "fencing of a member"); // never faults
        }
    }

    // ================================================================ ConsumerGroupDescribe

    public ConsumerGroupDescribeResponse.DescribedGroup DescribeConsumerGroup(string groupId)
    {
        var d = new ConsumerGroupDescribeResponse.DescribedGroup { GroupId = groupId };
        ConsumerGroupDescribeResponse.DescribedGroup Fail(ErrorCode e, string? message = null)
        {
            d.ErrorCode = (short)e;
            d.ErrorMessage = message ?? e.DefaultMessage();
            return d;
        }

        if (string.IsNullOrEmpty(groupId)) return Fail(ErrorCode.InvalidGroupId);
        var ce = CheckCoordinator(groupId);
        if (ce != ErrorCode.None) return Fail(ce);
        if (!_groups.TryGetValue(groupId, out var g)) return Fail(ErrorCode.GroupIdNotFound, $"Group {groupId} not found.");
        if (g is not ConsumerGroup cg) return Fail(ErrorCode.GroupIdNotFound, $"Group {groupId} is not a consumer group.");
        var image = _metadata.Image;
        lock (cg.Lock)
        {
            if (cg.IsDead) return Fail(ErrorCode.GroupIdNotFound, $"Group {groupId} not found.");
            d.GroupState = cg.StateName;
            d.GroupEpoch = cg.GroupEpoch;
            d.AssignmentEpoch = cg.AssignmentEpoch;
            d.AssignorName = cg.AssignorName ?? cg.PreferredAssignor(DefaultAssignor.Name);
            foreach (var m in cg.Members.Values.OrderBy(m => m.MemberId, StringComparer.Ordinal))
            {
                d.Members.Add(new ConsumerGroupDescribeResponse.Member
                {
                    MemberId = m.MemberId,
                    InstanceId = m.InstanceId,
                    RackId = m.RackId,
                    MemberEpoch = m.MemberEpoch,
                    ClientId = m.ClientId,
                    ClientHost = m.ClientHost,
                    SubscribedTopicNames = [.. m.SubscribedTopicNames],
                    SubscribedTopicRegex = m.SubscribedTopicRegex,
                    Assignment = DescribedAssignment(cg, image, m.Assigned),
                    TargetAssignment = DescribedAssignment(cg, image, cg.TargetAssignment.TryGetValue(m.MemberId, out var t) ? t : []),
                });
            }
        }
        return d;
    }

    private static ConsumerGroupDescribeResponse.Assignment DescribedAssignment(ConsumerGroup g, MetadataImage image, IEnumerable<TopicIdPartition> partitions) => new()
    {
        TopicPartitions = ByTopic(partitions, (id, ps) => new ConsumerGroupDescribeResponse.TopicPartitions
        {
            TopicId = id,
            TopicName = image.Topic(id)?.Name ?? g.TopicName(id) ?? "",
            Partitions = ps,
        }),
    };

    // ================================================================ offsets of consumer groups

    /// <summary>
    /// OffsetCommit for a consumer group: anyone while it has no members and the epoch is -1
    /// (admin tools, consumers without group management); otherwise a member at its current epoch
    /// (UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH as Kafka answers).
    /// </summary>
    partial void ValidateConsumerGroupCommit(Group g, int epoch, string memberId, short apiVersion, ref ErrorCode result)
    {
        if (g is not ConsumerGroup cg) return;
        if (epoch < 0 && cg.IsEmpty)
        {
            result = ErrorCode.None;
            return;
        }
        if (!cg.Members.TryGetValue(memberId, out var m))
        {
            result = ErrorCode.UnknownMemberId;
            return;
        }
        // A member of the consumer protocol commits with OffsetCommit v9+ (the member epoch); an
        // older version from one is UNSUPPORTED_VERSION, as in Kafka's ConsumerGroup.validateOffsetCommit.
        if (apiVersion < 9)
        {
            result = ErrorCode.UnsupportedVersion;
            return;
        }
        // Any other epoch than the member's own: the member missed a revocation or a new
        // assignment (the partitions it commits may be someone else's by now).
        result = epoch == m.MemberEpoch ? ErrorCode.None : ErrorCode.StaleMemberEpoch;
    }

    /// <summary>OffsetFetch v9+ from a member: it must be one, at its current epoch; without a member id and epoch (admin) anything may be read.</summary>
    partial void ValidateConsumerGroupFetch(Group g, string memberId, int memberEpoch, ref ErrorCode result)
    {
        if (g is not ConsumerGroup cg) return;
        if (memberId.Length == 0 && memberEpoch < 0) return;
        if (!cg.Members.TryGetValue(memberId, out var m)) result = ErrorCode.UnknownMemberId;
        else if (m.MemberEpoch != memberEpoch) result = ErrorCode.StaleMemberEpoch;
    }

    /// <summary>What DeleteGroups and offset expiry write for a consumer group besides its offsets (members first, the group record last).</summary>
    partial void AddConsumerGroupTombstones(Group g, List<(byte[] Key, byte[]? Value)> records)
    {
        if (g is not ConsumerGroup cg) return;
        foreach (var m in cg.Members.Values)
        {
            m.DisposeTimers();
            records.Add((CurrentAssignmentKey(cg, m.MemberId), null));
            records.Add((TargetMemberKey(cg, m.MemberId), null));
            records.Add((MemberMetadataKey(cg, m.MemberId), null));
        }
        records.Add((GroupRecords.Encode((short)ConsumerOffsetsRecordType.ConsumerGroupTargetAssignmentMetadata, new ConsumerGroupTargetAssignmentMetadataKey { GroupId = cg.GroupId }), null));
        records.Add((GroupRecords.Encode((short)ConsumerOffsetsRecordType.ConsumerGroupPartitionMetadata, new ConsumerGroupPartitionMetadataKey { GroupId = cg.GroupId }), null));
        records.Add((GroupRecords.Encode((short)ConsumerOffsetsRecordType.ConsumerGroupMetadata, new ConsumerGroupMetadataKey { GroupId = cg.GroupId }), null));
    }

    // ================================================================ loading

    /// <summary>Replays the ConsumerGroup* records (key versions 3-8); other record types are not this protocol's.</summary>
    partial void ReplayOther(int partition, GroupRecords.Decoded record, ConcurrentDictionary<string, Group> groups)
    {
        switch (record.Key)
        {
            case ConsumerGroupMetadataKey k:
                if (record.Value is ConsumerGroupMetadataValue gv) ReplayGroup(groups, k.GroupId, partition).GroupEpoch = gv.Epoch;
                else ReplayGroupDeleted(groups, k.GroupId, partition);
                break;
            case ConsumerGroupPartitionMetadataKey k:
            {
                var g = record.Value is null ? Existing(groups, k.GroupId) : ReplayGroup(groups, k.GroupId, partition);
                if (g is null) break;
                g.SubscriptionMetadata = new SortedDictionary<string, AssignableTopic>(StringComparer.Ordinal);
                if (record.Value is ConsumerGroupPartitionMetadataValue v)
                    foreach (var t in v.Topics) g.SubscriptionMetadata[t.TopicName] = new AssignableTopic(t.TopicId, t.TopicName, t.NumPartitions);
                break;
            }
            case ConsumerGroupMemberMetadataKey k:
            {
                if (record.Value is not ConsumerGroupMemberMetadataValue v)
                {
                    if (Existing(groups, k.GroupId) is { } og && og.Members.Remove(k.MemberId, out var gone) && gone.InstanceId is not null
                        && og.StaticMembers.TryGetValue(gone.InstanceId, out var sid) && sid == k.MemberId)
                        og.StaticMembers.Remove(gone.InstanceId);
                    break;
                }
                var g = ReplayGroup(groups, k.GroupId, partition);
                var m = ReplayMember(g, k.MemberId);
                m.HasMetadata = true;
                m.InstanceId = v.InstanceId;
                m.RackId = v.RackId;
                m.ClientId = v.ClientId;
                m.ClientHost = v.ClientHost;
                m.SubscribedTopicNames = [.. v.SubscribedTopicNames];
                m.SubscribedTopicRegex = v.SubscribedTopicRegex is { Length: > 0 } r ? r : null;
                m.RebalanceTimeoutMs = v.RebalanceTimeoutMs;
                m.ServerAssignor = v.ServerAssignor;
                if (m.InstanceId is not null) g.StaticMembers[m.InstanceId] = m.MemberId;
                break;
            }
            case ConsumerGroupTargetAssignmentMetadataKey k:
            {
                var g = record.Value is null ? Existing(groups, k.GroupId) : ReplayGroup(groups, k.GroupId, partition);
                if (g is not null) g.AssignmentEpoch = record.Value is ConsumerGroupTargetAssignmentMetadataValue v ? v.AssignmentEpoch : 0;
                break;
            }
            case ConsumerGroupTargetAssignmentMemberKey k:
                if (record.Value is ConsumerGroupTargetAssignmentMemberValue tv)
                    ReplayGroup(groups, k.GroupId, partition).TargetAssignment[k.MemberId] = [.. tv.TopicPartitions.SelectMany(t => t.Partitions.Select(p => new TopicIdPartition(t.TopicId, p)))];
                else Existing(groups, k.GroupId)?.TargetAssignment.Remove(k.MemberId);
                break;
            case ConsumerGroupCurrentMemberAssignmentKey k:
            {
                if (record.Value is not ConsumerGroupCurrentMemberAssignmentValue v)
                {
                    if (Existing(groups, k.GroupId) is { } og && og.Members.TryGetValue(k.MemberId, out var om))
                    {
                        om.Assigned = [];
                        om.PendingRevocation = [];
                    }
                    break;
                }
                var m = ReplayMember(ReplayGroup(groups, k.GroupId, partition), k.MemberId);
                m.MemberEpoch = v.MemberEpoch;
                m.PreviousMemberEpoch = v.PreviousMemberEpoch;
                m.State = Enum.IsDefined((ConsumerMemberState)v.State) ? (ConsumerMemberState)v.State : ConsumerMemberState.Unknown;
                m.Assigned = [.. v.AssignedPartitions.SelectMany(t => t.Partitions.Select(p => new TopicIdPartition(t.TopicId, p)))];
                m.PendingRevocation = [.. v.PartitionsPendingRevocation.SelectMany(t => t.Partitions.Select(p => new TopicIdPartition(t.TopicId, p)))];
                break;
            }
        }
    }

    private static ConsumerGroup? Existing(ConcurrentDictionary<string, Group> groups, string groupId) => groups.TryGetValue(groupId, out var g) ? g as ConsumerGroup : null;

    /// <summary>The consumer group a replayed record belongs to: created, or replacing a classic group (whose offsets it keeps).</summary>
    private static ConsumerGroup ReplayGroup(ConcurrentDictionary<string, Group> groups, string groupId, int partition)
    {
        if (groups.TryGetValue(groupId, out var g) && g is ConsumerGroup cg) return cg;
        cg = new ConsumerGroup(groupId, partition);
        if (g is not null)
            foreach (var (tp, o) in g.Offsets) cg.Offsets[tp] = o;
        groups[groupId] = cg;
        return cg;
    }

    private static ConsumerGroupMember ReplayMember(ConsumerGroup g, string memberId)
    {
        if (!g.Members.TryGetValue(memberId, out var m)) g.Members[memberId] = m = new ConsumerGroupMember(memberId) { HasMetadata = false };
        return m;
    }

    /// <summary>The group record's tombstone: the group is gone; offsets not deleted with it stay, as a group without members.</summary>
    private static void ReplayGroupDeleted(ConcurrentDictionary<string, Group> groups, string groupId, int partition)
    {
        if (Existing(groups, groupId) is not { } g) return;
        groups.TryRemove(groupId, out _);
        if (g.Offsets.Count == 0) return;
        var rest = new ClassicGroup(groupId, partition);
        foreach (var (tp, o) in g.Offsets) rest.Offsets[tp] = o;
        groups[groupId] = rest;
    }

    /// <summary>After a load: partition ownership rebuilt, members' sessions (and unfinished revocations' timeouts) started afresh.</summary>
    partial void OnOtherGroupLoaded(Group group)
    {
        if (group is not ConsumerGroup g) return;
        // Assignment records of a member whose metadata record was deleted do not make a member.
        foreach (var orphan in g.Members.Values.Where(m => !m.HasMetadata).ToList()) g.Members.Remove(orphan.MemberId);
        foreach (var id in g.TargetAssignment.Keys.Where(id => !g.Members.ContainsKey(id)).ToList()) g.TargetAssignment.Remove(id);
        g.RebuildOwners();
        ResolveRegexes(g, _metadata.Image);
        foreach (var m in g.Members.Values)
        {
            ScheduleConsumerSession(g, m);
            if (m.State == ConsumerMemberState.UnrevokedPartitions) ScheduleRevocationTimeout(g, m);
        }
        if (g.IsEmpty) g.EmptySinceMs = NowMs;
    }

    partial void OnOtherGroupUnloaded(Group group)
    {
        if (group is not ConsumerGroup g) return;
        foreach (var m in g.Members.Values) m.DisposeTimers();
    }

    // ================================================================ records

    private static HashSet<TopicIdPartition>? OwnedPartitions(List<ConsumerGroupHeartbeatRequest.TopicPartitionsData>? topics) =>
        topics?.SelectMany(t => t.Partitions.Select(p => new TopicIdPartition(t.TopicId, p))).ToHashSet();

    /// <summary>Partitions grouped by topic id, in a fixed order (records and responses compare equal when the sets do).</summary>
    private static List<T> ByTopic<T>(IEnumerable<TopicIdPartition> partitions, Func<Uuid, List<int>, T> make) =>
        [.. partitions.GroupBy(p => p.TopicId)
            .OrderBy(t => t.Key.MostSignificantBits).ThenBy(t => t.Key.LeastSignificantBits)
            .Select(t => make(t.Key, [.. t.Select(p => p.Partition).Order()]))];

    private static byte[] Key(ConsumerOffsetsRecordType type, IMessage key) => GroupRecords.Encode((short)type, key);

    private static byte[] MemberMetadataKey(ConsumerGroup g, string memberId) =>
        Key(ConsumerOffsetsRecordType.ConsumerGroupMemberMetadata, new ConsumerGroupMemberMetadataKey { GroupId = g.GroupId, MemberId = memberId });

    private static byte[] TargetMemberKey(ConsumerGroup g, string memberId) =>
        Key(ConsumerOffsetsRecordType.ConsumerGroupTargetAssignmentMember, new ConsumerGroupTargetAssignmentMemberKey { GroupId = g.GroupId, MemberId = memberId });

    private static byte[] CurrentAssignmentKey(ConsumerGroup g, string memberId) =>
        Key(ConsumerOffsetsRecordType.ConsumerGroupCurrentMemberAssignment, new ConsumerGroupCurrentMemberAssignmentKey { GroupId = g.GroupId, MemberId = memberId });

    private static (byte[] Key, byte[]? Value) GroupEpochRecord(ConsumerGroup g) =>
        (Key(ConsumerOffsetsRecordType.ConsumerGroupMetadata, new ConsumerGroupMetadataKey { GroupId = g.GroupId }),
         GroupRecords.Encode(ValueVersion0, new ConsumerGroupMetadataValue { Epoch = g.GroupEpoch }));

    private static (byte[] Key, byte[]? Value) PartitionMetadataRecord(ConsumerGroup g)
    {
        var value = new ConsumerGroupPartitionMetadataValue();
        foreach (var t in g.SubscriptionMetadata.Values)
            value.Topics.Add(new ConsumerGroupPartitionMetadataValue.TopicMetadata { TopicId = t.Id, TopicName = t.Name, NumPartitions = t.Partitions });
        return (Key(ConsumerOffsetsRecordType.ConsumerGroupPartitionMetadata, new ConsumerGroupPartitionMetadataKey { GroupId = g.GroupId }),
                GroupRecords.Encode(ValueVersion0, value));
    }

    private static (byte[] Key, byte[]? Value) MemberMetadataRecord(ConsumerGroup g, ConsumerGroupMember m) =>
        (MemberMetadataKey(g, m.MemberId), GroupRecords.Encode(ValueVersion0, new ConsumerGroupMemberMetadataValue
        {
            InstanceId = m.InstanceId,
            RackId = m.RackId,
            ClientId = m.ClientId,
            ClientHost = m.ClientHost,
            SubscribedTopicNames = [.. m.SubscribedTopicNames],
            SubscribedTopicRegex = m.SubscribedTopicRegex,
            RebalanceTimeoutMs = m.RebalanceTimeoutMs,
            ServerAssignor = m.ServerAssignor,
            // ClassicMemberMetadata keeps its default, which is not written: Kafka writes none for consumer-protocol members.
        }));

    private static (byte[] Key, byte[]? Value) TargetMetadataRecord(ConsumerGroup g) =>
        (Key(ConsumerOffsetsRecordType.ConsumerGroupTargetAssignmentMetadata, new ConsumerGroupTargetAssignmentMetadataKey { GroupId = g.GroupId }),
         GroupRecords.Encode(ValueVersion0, new ConsumerGroupTargetAssignmentMetadataValue { AssignmentEpoch = g.AssignmentEpoch }));

    private static (byte[] Key, byte[]? Value) TargetMemberRecord(ConsumerGroup g, string memberId, IEnumerable<TopicIdPartition> partitions) =>
        (TargetMemberKey(g, memberId), GroupRecords.Encode(ValueVersion0, new ConsumerGroupTargetAssignmentMemberValue
        {
            TopicPartitions = ByTopic(partitions, (id, ps) => new ConsumerGroupTargetAssignmentMemberValue.TopicPartition { TopicId = id, Partitions = ps }),
        }));

    private static (byte[] Key, byte[]? Value) CurrentAssignmentRecord(ConsumerGroup g, ConsumerGroupMember m) =>
        (CurrentAssignmentKey(g, m.MemberId), GroupRecords.Encode(ValueVersion0, new ConsumerGroupCurrentMemberAssignmentValue
        {
            MemberEpoch = m.MemberEpoch,
            PreviousMemberEpoch = m.PreviousMemberEpoch,
            State = (sbyte)m.State,
            AssignedPartitions = ByTopic(m.Assigned, (id, ps) => new ConsumerGroupCurrentMemberAssignmentValue.TopicPartitions { TopicId = id, Partitions = ps }),
            PartitionsPendingRevocation = ByTopic(m.PendingRevocation, (id, ps) => new ConsumerGroupCurrentMemberAssignmentValue.TopicPartitions { TopicId = id, Partitions = ps }),
        }));

    [LoggerMessage(EventId = 6020, Level = LogLevel.Information, Message = "Consumer group {Group}: member {Member} joined")]
    private static partial void LogConsumerJoined(ILogger logger, string group, string member);

    [LoggerMessage(EventId = 6021, Level = LogLevel.Information, Message = "Consumer group {Group}: member {Member} left")]
    private static partial void LogConsumerLeft(ILogger logger, string group, string member);

    [LoggerMessage(EventId = 6022, Level = LogLevel.Information, Message = "Consumer group {Group}: static member {Member} left for now (its place is kept until its session expires)")]
    private static partial void LogConsumerStaticLeft(ILogger logger, string group, string member);

    [LoggerMessage(EventId = 6023, Level = LogLevel.Information, Message = "Consumer group {Group}: member {Member} fenced: {Reason}")]
    private static partial void LogConsumerFenced(ILogger logger, string group, string member, string reason);

    [LoggerMessage(EventId = 6025, Level = LogLevel.Information, Message = "Group {Group}: empty consumer group replaced by a classic group (classic JoinGroup)")]
    private static partial void LogConsumerGroupConverted(ILogger logger, string group);

    [LoggerMessage(EventId = 6024, Level = LogLevel.Information, Message = "Consumer group {Group}: static member {Old} replaced by {New} (instance {Instance})")]
    private static partial void LogConsumerReplaced(ILogger logger, string group, string old, string @new, string instance);
}
