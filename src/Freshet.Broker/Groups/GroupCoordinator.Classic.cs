using Freshet.Protocol;
using Freshet.Protocol.CoordinatorRecords;
using Freshet.Protocol.Messages;

namespace Freshet.Broker.Groups;

/// <summary>
/// The classic group protocol, as Kafka's coordinator runs it. A rebalance: members send
/// JoinGroup and wait; once all known members have rejoined (or the rebalance timeout passes, or
/// for a new group group.initial.rebalance.delay.ms), the generation is bumped, a protocol and a
/// leader are chosen, and every waiting JoinGroup is answered (the leader gets everyone's
/// metadata). Members then send SyncGroup; the leader's carries the assignment, which is stored
/// in __consumer_offsets before every SyncGroup is answered with its member's share. Heartbeats
/// keep a member's session alive; a member whose session expires is removed and the group
/// rebalances. Static members (group.instance.id, KIP-345) keep their place across restarts.
/// </summary>
public sealed partial class GroupCoordinator
{
    // ================================================================ JoinGroup

    public async Task<JoinGroupResponse> JoinGroupAsync(JoinGroupRequest req, short version, string clientId, string clientHost)
    {
        JoinGroupResponse Fail(ErrorCode e, string memberId = "") => new()
        {
            ErrorCode = (short)e, GenerationId = -1, ProtocolName = version >= 7 ? null : "", Leader = "", MemberId = memberId,
        };

        if (string.IsNullOrEmpty(req.GroupId)) return Fail(ErrorCode.InvalidGroupId);
        var ce = CheckCoordinator(req.GroupId);
        if (ce != ErrorCode.None) return Fail(ce);
        if (req.SessionTimeoutMs < Options.MinSessionTimeoutMs || req.SessionTimeoutMs > Options.MaxSessionTimeoutMs)
            return Fail(ErrorCode.InvalidSessionTimeout, req.MemberId);
        int rebalanceTimeout = version >= 1 && req.RebalanceTimeoutMs > 0 ? req.RebalanceTimeoutMs : req.SessionTimeoutMs;
        var protocols = req.Protocols.Select(p => (p.Name, p.Metadata.ToArray())).ToList();
        string? instanceId = version >= 5 ? req.GroupInstanceId : null;

        var group = _groups.GetOrAdd(req.GroupId, id => new ClassicGroup(id, PartitionFor(id)));
        if (group is ConsumerGroup consumer)
        {
            var (classic, replaceError) = ReplaceEmptyConsumerGroup(consumer);
            if (replaceError != ErrorCode.None) return Fail(replaceError);
            group = classic ?? group;
        }
        if (group is not ClassicGroup cg) return Fail(ErrorCode.InconsistentGroupProtocol, req.MemberId);

        Task<JoinGroupResponse> wait;
        Task<ErrorCode>? persist = null;
        JoinGroupResponse? immediate = null;
        lock (cg.Lock)
        {
            if (cg.IsDead) return Fail(ErrorCode.CoordinatorNotAvailable);
            if (!cg.SupportsProtocols(req.ProtocolType, protocols.Select(p => p.Name))) return Fail(ErrorCode.InconsistentGroupProtocol, req.MemberId);

            ClassicMember? member;
            if (req.MemberId.Length == 0)
            {
                if (instanceId is not null && cg.StaticMembers.TryGetValue(instanceId, out var oldId) && cg.Members.TryGetValue(oldId, out var old))
                {
                    // A static member restarting: it takes a new member id and keeps its place.
                    string newId = $"{instanceId}-{Guid.NewGuid()}";
                    ReplaceStaticMember(cg, old, newId);
                    old.ClientId = clientId;
                    old.ClientHost = clientHost;
                    old.SessionTimeoutMs = req.SessionTimeoutMs;
                    old.RebalanceTimeoutMs = rebalanceTimeout;
                    old.Protocols = protocols;
                    old.ProtocolType = req.ProtocolType;
                    bool leader = cg.LeaderId == newId;
                    // As Kafka does: a Stable group keeps its assignment as long as the protocol it
                    // would select is still the one in use (the member's metadata may differ: a
                    // restarted consumer no longer owns partitions).
                    if (cg.State == ClassicGroupState.Stable && cg.SelectProtocol() == cg.ProtocolName)
                    {
                        // No rebalance: the member gets its generation back and its old assignment at SyncGroup.
                        ScheduleSession(cg, old);
                        immediate = JoinResponse(cg, old, version, includeMembers: leader);
                        immediate.SkipAssignment = leader;
                        // Not written: the group is rebuilt from the log (the old member id back) and the join fails.
                        persist = AppendGroupChangeLocked(cg, [GroupMetadataRecord(cg, null)]);
                        member = null;
                    }
                    else
                    {
                        member = old;
                        BeginJoin(cg, member, version);
                        MaybePrepareRebalance(cg);
                    }
                }
                else
                {
                    if (cg.Members.Count >= Options.MaxGroupSize) return Fail(ErrorCode.GroupMaxSizeReached);
                    string newId = $"{(instanceId ?? clientId)}-{Guid.NewGuid()}";
                    if (instanceId is null && version >= 4)
                    {
                        // KIP-394: hand out the member id first; the member comes back with it.
                        cg.PendingMembers.Add(newId);
                        SchedulePendingMemberExpiry(cg, newId, req.SessionTimeoutMs);
                        return Fail(ErrorCode.MemberIdRequired, newId);
                    }
                    member = AddMember(cg, newId, instanceId, clientId, clientHost, req.SessionTimeoutMs, rebalanceTimeout, req.ProtocolType, protocols);
                    BeginJoin(cg, member, version);
                    MaybePrepareRebalance(cg);
                }
            }
            else if (cg.PendingMembers.Remove(req.MemberId))
            {
                if (cg.Members.Count >= Options.MaxGroupSize) return Fail(ErrorCode.GroupMaxSizeReached, req.MemberId);
                member = AddMember(cg, req.MemberId, instanceId, clientId, clientHost, req.SessionTimeoutMs, rebalanceTimeout, req.ProtocolType, protocols);
                BeginJoin(cg, member, version);
                MaybePrepareRebalance(cg);
            }
            else if (!cg.Members.TryGetValue(req.MemberId, out member))
            {
                return Fail(ErrorCode.UnknownMemberId, req.MemberId);
            }
            else if (instanceId is not null && (!cg.StaticMembers.TryGetValue(instanceId, out var sid) || sid != req.MemberId))
            {
                return Fail(ErrorCode.FencedInstanceId, req.MemberId);
            }
            else
            {
                bool unchanged = member.SameProtocols(protocols);
                member.Protocols = protocols;
                member.ProtocolType = req.ProtocolType;
                member.SessionTimeoutMs = req.SessionTimeoutMs;
                member.RebalanceTimeoutMs = rebalanceTimeout;
                switch (cg.State)
                {
                    case ClassicGroupState.CompletingRebalance when unchanged:
                    case ClassicGroupState.Stable when unchanged && cg.LeaderId != member.MemberId:
                        // Nothing changed: tell the member where the group stands, no rebalance.
                        ScheduleSession(cg, member);
                        immediate = JoinResponse(cg, member, version, includeMembers: cg.LeaderId == member.MemberId);
                        member = null;
                        break;
                    default:
                        BeginJoin(cg, member, version);
                        MaybePrepareRebalance(cg);
                        break;
                }
            }
            if (immediate is not null)
            {
                wait = Task.FromResult(immediate);
            }
            else
            {
                wait = member!.PendingJoin!.Task;
                TryCompleteJoin(cg);
            }
        }
        if (persist is not null)
        {
            var e = await persist.ConfigureAwait(false);
            if (e != ErrorCode.None) return Fail(e);
        }
        return await wait.ConfigureAwait(false);
    }

    private ClassicMember AddMember(ClassicGroup cg, string memberId, string? instanceId, string clientId, string clientHost,
        int sessionTimeoutMs, int rebalanceTimeoutMs, string protocolType, List<(string, byte[])> protocols)
    {
        var m = new ClassicMember(memberId, instanceId, clientId, clientHost, sessionTimeoutMs, rebalanceTimeoutMs)
        {
            ProtocolType = protocolType,
            Protocols = protocols,
        };
        cg.Members[memberId] = m;
        if (instanceId is not null) cg.StaticMembers[instanceId] = memberId;
        cg.ProtocolType ??= protocolType;
        if (cg.Members.Count == 1) cg.ProtocolType = protocolType;
        cg.EmptySinceMs = -1;
        return m;
    }

    private void ReplaceStaticMember(ClassicGroup cg, ClassicMember member, string newId)
    {
        string oldId = member.MemberId;
        member.PendingJoin?.TrySetResult(new JoinGroupResponse { ErrorCode = (short)ErrorCode.FencedInstanceId, MemberId = oldId, ProtocolName = "", Leader = "" });
        member.PendingJoin = null;
        member.PendingSync?.TrySetResult(new SyncGroupResponse { ErrorCode = (short)ErrorCode.FencedInstanceId });
        member.PendingSync = null;
        cg.Members.Remove(oldId);
        member.MemberId = newId;
        cg.Members[newId] = member;
        cg.StaticMembers[member.GroupInstanceId!] = newId;
        if (cg.LeaderId == oldId) cg.LeaderId = newId;
    }

    private void BeginJoin(ClassicGroup cg, ClassicMember m, short version)
    {
        m.PendingJoin ??= new TaskCompletionSource<JoinGroupResponse>(TaskCreationOptions.RunContinuationsAsynchronously);
        m.PendingJoinVersion = version;
        ScheduleSession(cg, m);
    }

    private JoinGroupResponse JoinResponse(ClassicGroup cg, ClassicMember m, short version, bool includeMembers)
    {
        var r = new JoinGroupResponse
        {
            GenerationId = cg.GenerationId,
            ProtocolType = cg.ProtocolType,
            ProtocolName = cg.ProtocolName ?? (version >= 7 ? null : ""),
            Leader = cg.LeaderId ?? "",
            MemberId = m.MemberId,
        };
        if (includeMembers && cg.ProtocolName is not null)
        {
            foreach (var other in cg.Members.Values)
                r.Members.Add(new JoinGroupResponse.JoinGroupResponseMember
                {
                    MemberId = other.MemberId,
                    GroupInstanceId = other.GroupInstanceId,
                    Metadata = other.MetadataFor(cg.ProtocolName) ?? [],
                });
        }
        return r;
    }

    // ================================================================ rebalance

    /// <summary>Starts a rebalance unless one is under way. Under the group's lock.</summary>
    private void MaybePrepareRebalance(ClassicGroup cg)
    {
        if (cg.State == ClassicGroupState.PreparingRebalance) return;
        if (cg.State == ClassicGroupState.CompletingRebalance)
        {
            // The assignment being synced is void: tell those waiting to rejoin.
            foreach (var m in cg.Members.Values)
            {
                m.PendingSync?.TrySetResult(new SyncGroupResponse { ErrorCode = (short)ErrorCode.RebalanceInProgress });
                m.PendingSync = null;
            }
        }
        bool initial = cg.State == ClassicGroupState.Empty;
        cg.State = ClassicGroupState.PreparingRebalance;
        cg.CurrentStateTimestamp = NowMs;
        cg.JoinTimer?.Dispose();
        int generation = cg.GenerationId;
        if (initial && Options.InitialRebalanceDelayMs > 0)
        {
            cg.InitialJoinDeadlineMs = NowMs + Math.Max(cg.MaxRebalanceTimeoutMs, Options.InitialRebalanceDelayMs);
            int members = cg.Members.Count;
            cg.JoinTimer = _time.CreateTimer(_ => OnInitialJoinDelay(cg, generation, members), null,
                TimeSpan.FromMilliseconds(Options.InitialRebalanceDelayMs), Timeout.InfiniteTimeSpan);
        }
        else
        {
            cg.InitialJoinDeadlineMs = -1;
            cg.JoinTimer = _time.CreateTimer(_ => OnJoinTimeout(cg, generation), null,
                TimeSpan.FromMilliseconds(Math.Max(1, cg.MaxRebalanceTimeoutMs)), Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>group.initial.rebalance.delay.ms passed: wait once more if members kept arriving (up to the rebalance timeout), else complete.</summary>
    private void OnInitialJoinDelay(ClassicGroup cg, int generation, int membersBefore)
    {
        lock (cg.Lock)
        {
            if (cg.IsDead || cg.State != ClassicGroupState.PreparingRebalance || cg.GenerationId != generation || cg.InitialJoinDeadlineMs < 0) return;
            long remaining = cg.InitialJoinDeadlineMs - NowMs;
            if (cg.Members.Count > membersBefore && remaining > 0)
            {
                int members = cg.Members.Count;
                cg.JoinTimer?.Dispose();
                cg.JoinTimer = _time.CreateTimer(_ => OnInitialJoinDelay(cg, generation, members), null,
                    TimeSpan.FromMilliseconds(Math.Min(Options.InitialRebalanceDelayMs, remaining)), Timeout.InfiniteTimeSpan);
                return;
            }
            cg.InitialJoinDeadlineMs = -1;
            CompleteJoin(cg);
        }
    }

    private void OnJoinTimeout(ClassicGroup cg, int generation)
    {
        lock (cg.Lock)
        {
            if (!cg.IsDead && cg.State == ClassicGroupState.PreparingRebalance && cg.GenerationId == generation) CompleteJoin(cg);
        }
    }

    /// <summary>Completes the join phase early once every known member has rejoined (not during the initial delay).</summary>
    private void TryCompleteJoin(ClassicGroup cg)
    {
        if (cg.State == ClassicGroupState.PreparingRebalance && cg.InitialJoinDeadlineMs < 0 && cg.AllMembersJoined) CompleteJoin(cg);
    }

    /// <summary>Ends the join phase: members that did not rejoin leave, the generation moves on, every waiting JoinGroup is answered.</summary>
    private void CompleteJoin(ClassicGroup cg)
    {
        cg.JoinTimer?.Dispose();
        cg.JoinTimer = null;
        foreach (var m in cg.Members.Values.Where(m => m.PendingJoin is null).ToList()) RemoveMember(cg, m, ErrorCode.UnknownMemberId);
        cg.PendingMembers.Clear();
        cg.GenerationId++;
        cg.CurrentStateTimestamp = NowMs;
        if (cg.Members.Count == 0)
        {
            cg.State = ClassicGroupState.Empty;
            cg.ProtocolName = null;
            cg.LeaderId = null;
            cg.EmptySinceMs = NowMs;
            // Not written: the group is rebuilt from the log with its members, whose sessions expire again and bring this back.
            _ = ObserveBackgroundWriteAsync(AppendGroupChangeLocked(cg, [GroupMetadataRecord(cg, null)]), cg.GroupId, "empty group metadata"); // never faults
            return;
        }
        cg.ProtocolName = cg.SelectProtocol();
        if (cg.LeaderId is null || !cg.Members.ContainsKey(cg.LeaderId)) cg.LeaderId = cg.Members.Keys.First();
        cg.State = ClassicGroupState.CompletingRebalance;
        LogStabilized(_logger, cg.GroupId, cg.GenerationId, cg.Members.Count, cg.ProtocolName ?? "");
        foreach (var m in cg.Members.Values)
        {
            var join = m.PendingJoin!;
            m.PendingJoin = null;
            ScheduleSession(cg, m);
            join.TrySetResult(JoinResponse(cg, m, m.PendingJoinVersion, includeMembers: m.MemberId == cg.LeaderId));
        }
    }

    private void RemoveMember(ClassicGroup cg, ClassicMember m, ErrorCode toWaiters)
    {
        cg.Members.Remove(m.MemberId);
        if (m.GroupInstanceId is not null && cg.StaticMembers.TryGetValue(m.GroupInstanceId, out var id) && id == m.MemberId)
            cg.StaticMembers.Remove(m.GroupInstanceId);
        m.SessionTimer?.Dispose();
        m.SessionTimer = null;
        m.PendingJoin?.TrySetResult(new JoinGroupResponse { ErrorCode = (short)toWaiters, MemberId = m.MemberId, ProtocolName = "", Leader = "" });
        m.PendingJoin = null;
        m.PendingSync?.TrySetResult(new SyncGroupResponse { ErrorCode = (short)toWaiters });
        m.PendingSync = null;
        if (cg.LeaderId == m.MemberId) cg.LeaderId = null;
    }

    /// <summary>A member left or expired: remove it and rebalance (or finish the rebalance it was holding up).</summary>
    private void RemoveMemberAndRebalance(ClassicGroup cg, ClassicMember m)
    {
        RemoveMember(cg, m, ErrorCode.UnknownMemberId);
        switch (cg.State)
        {
            case ClassicGroupState.Stable or ClassicGroupState.CompletingRebalance:
                MaybePrepareRebalance(cg);
                TryCompleteJoin(cg);
                break;
            case ClassicGroupState.PreparingRebalance:
                TryCompleteJoin(cg);
                break;
        }
    }

    private void FailPendingRequests(ClassicGroup cg, ErrorCode error)
    {
        cg.JoinTimer?.Dispose();
        foreach (var m in cg.Members.Values)
        {
            m.SessionTimer?.Dispose();
            m.PendingJoin?.TrySetResult(new JoinGroupResponse { ErrorCode = (short)error, MemberId = m.MemberId, ProtocolName = "", Leader = "" });
            m.PendingJoin = null;
            m.PendingSync?.TrySetResult(new SyncGroupResponse { ErrorCode = (short)error });
            m.PendingSync = null;
        }
    }

    // ================================================================ sessions

    /// <summary>(Re)arms a member's session: if nothing is heard from it for session.timeout.ms it is removed.</summary>
    private void ScheduleSession(ClassicGroup cg, ClassicMember m)
    {
        var timer = m.SessionTimer;
        if (timer is null)
        {
            m.SessionTimer = _time.CreateTimer(_ => OnSessionExpired(cg, m), null, TimeSpan.FromMilliseconds(m.SessionTimeoutMs), Timeout.InfiniteTimeSpan);
        }
        else
        {
            timer.Change(TimeSpan.FromMilliseconds(m.SessionTimeoutMs), Timeout.InfiniteTimeSpan);
        }
    }

    private void OnSessionExpired(ClassicGroup cg, ClassicMember m)
    {
        lock (cg.Lock)
        {
            if (cg.IsDead || !cg.Members.TryGetValue(m.MemberId, out var current) || !ReferenceEquals(current, m)) return;
            if (m.PendingJoin is not null || m.PendingSync is not null)
            {
                // A member waiting in JoinGroup or SyncGroup cannot heartbeat: keep it alive.
                ScheduleSession(cg, m);
                return;
            }
            LogSessionExpired(_logger, cg.GroupId, m.MemberId);
            RemoveMemberAndRebalance(cg, m);
        }
    }

    private void SchedulePendingMemberExpiry(ClassicGroup cg, string memberId, int sessionTimeoutMs)
    {
        ITimer? timer = null;
        timer = _time.CreateTimer(_ =>
        {
            lock (cg.Lock)
            {
                if (cg.PendingMembers.Remove(memberId)) TryCompleteJoin(cg);
            }
            timer?.Dispose();
        }, null, TimeSpan.FromMilliseconds(sessionTimeoutMs), Timeout.InfiniteTimeSpan);
    }

    // ================================================================ SyncGroup

    public async Task<SyncGroupResponse> SyncGroupAsync(SyncGroupRequest req, short version)
    {
        static SyncGroupResponse Fail(ErrorCode e) => new() { ErrorCode = (short)e };

        if (string.IsNullOrEmpty(req.GroupId)) return Fail(ErrorCode.InvalidGroupId);
        var ce = CheckCoordinator(req.GroupId);
        if (ce != ErrorCode.None) return Fail(ce);
        if (!_groups.TryGetValue(req.GroupId, out var g) || g is not ClassicGroup cg) return Fail(ErrorCode.UnknownMemberId);

        Task<SyncGroupResponse> wait;
        Task<ErrorCode>? persist = null;
        int generation;
        Dictionary<string, byte[]>? assignment = null;
        lock (cg.Lock)
        {
            if (cg.IsDead) return Fail(ErrorCode.CoordinatorNotAvailable);
            if (!cg.Members.TryGetValue(req.MemberId, out var m)) return Fail(ErrorCode.UnknownMemberId);
            string? instanceId = version >= 3 ? req.GroupInstanceId : null;
            if (instanceId is not null && (!cg.StaticMembers.TryGetValue(instanceId, out var sid) || sid != req.MemberId)) return Fail(ErrorCode.FencedInstanceId);
            if (req.GenerationId != cg.GenerationId) return Fail(ErrorCode.IllegalGeneration);
            if (version >= 5 && (req.ProtocolType is not null && req.ProtocolType != cg.ProtocolType || req.ProtocolName is not null && req.ProtocolName != cg.ProtocolName))
                return Fail(ErrorCode.InconsistentGroupProtocol);
            switch (cg.State)
            {
                case ClassicGroupState.Empty or ClassicGroupState.Dead:
                    return Fail(ErrorCode.UnknownMemberId);
                case ClassicGroupState.PreparingRebalance:
                    return Fail(ErrorCode.RebalanceInProgress);
                case ClassicGroupState.Stable:
                    ScheduleSession(cg, m);
                    return SyncResponse(cg, m.Assignment);
            }
            // CompletingRebalance: wait for the leader's assignment to be stored.
            ScheduleSession(cg, m);
            m.PendingSync ??= new TaskCompletionSource<SyncGroupResponse>(TaskCreationOptions.RunContinuationsAsynchronously);
            wait = m.PendingSync.Task;
            generation = cg.GenerationId;
            if (m.MemberId == cg.LeaderId)
            {
                assignment = req.Assignments.ToDictionary(a => a.MemberId, a => a.Assignment.ToArray(), StringComparer.Ordinal);
                persist = AppendAsync(cg.CoordinatorPartition, [GroupMetadataRecord(cg, assignment)]);
            }
        }
        if (persist is not null)
        {
            var e = await persist.ConfigureAwait(false);
            lock (cg.Lock)
            {
                if (!cg.IsDead && cg.State == ClassicGroupState.CompletingRebalance && cg.GenerationId == generation)
                {
                    if (e != ErrorCode.None)
                    {
                        foreach (var m in cg.Members.Values)
                        {
                            m.PendingSync?.TrySetResult(Fail(e));
                            m.PendingSync = null;
                        }
                        MaybePrepareRebalance(cg);
                    }
                    else
                    {
                        foreach (var m in cg.Members.Values) m.Assignment = assignment!.GetValueOrDefault(m.MemberId) ?? [];
                        cg.State = ClassicGroupState.Stable;
                        cg.CurrentStateTimestamp = NowMs;
                        foreach (var m in cg.Members.Values)
                        {
                            m.PendingSync?.TrySetResult(SyncResponse(cg, m.Assignment));
                            m.PendingSync = null;
                        }
                    }
                }
            }
        }
        return await wait.ConfigureAwait(false);
    }

    private static SyncGroupResponse SyncResponse(ClassicGroup cg, byte[] assignment) => new()
    {
        ProtocolType = cg.ProtocolType,
        ProtocolName = cg.ProtocolName,
        Assignment = assignment,
    };

    // ================================================================ Heartbeat and LeaveGroup

    public ErrorCode Heartbeat(HeartbeatRequest req, short version)
    {
        if (string.IsNullOrEmpty(req.GroupId)) return ErrorCode.InvalidGroupId;
        var ce = CheckCoordinator(req.GroupId);
        if (ce != ErrorCode.None) return ce;
        if (!_groups.TryGetValue(req.GroupId, out var g) || g is not ClassicGroup cg) return ErrorCode.UnknownMemberId;
        lock (cg.Lock)
        {
            if (cg.IsDead) return ErrorCode.CoordinatorNotAvailable;
            if (!cg.Members.TryGetValue(req.MemberId, out var m)) return ErrorCode.UnknownMemberId;
            string? instanceId = version >= 3 ? req.GroupInstanceId : null;
            if (instanceId is not null && (!cg.StaticMembers.TryGetValue(instanceId, out var sid) || sid != req.MemberId)) return ErrorCode.FencedInstanceId;
            if (req.GenerationId != cg.GenerationId) return ErrorCode.IllegalGeneration;
            switch (cg.State)
            {
                case ClassicGroupState.Empty or ClassicGroupState.Dead:
                    return ErrorCode.UnknownMemberId;
                case ClassicGroupState.PreparingRebalance:
                    ScheduleSession(cg, m);
                    return ErrorCode.RebalanceInProgress;
                default:
                    // Stable, or CompletingRebalance (a member may heartbeat between JoinGroup and SyncGroup).
                    ScheduleSession(cg, m);
                    return ErrorCode.None;
            }
        }
    }

    public LeaveGroupResponse LeaveGroup(LeaveGroupRequest req, short version)
    {
        var response = new LeaveGroupResponse();
        var leaving = version >= 3
            ? req.Members.Select(m => (m.MemberId, m.GroupInstanceId)).ToList()
            : [(req.MemberId, (string?)null)];
        if (string.IsNullOrEmpty(req.GroupId))
        {
            response.ErrorCode = (short)ErrorCode.InvalidGroupId;
            return response;
        }
        var ce = CheckCoordinator(req.GroupId);
        if (ce != ErrorCode.None || !_groups.TryGetValue(req.GroupId, out var g) || g is not ClassicGroup cg)
        {
            var e = ce != ErrorCode.None ? ce : ErrorCode.UnknownMemberId;
            if (version >= 3 && ce == ErrorCode.None)
                foreach (var (id, inst) in leaving) response.Members.Add(new() { MemberId = id, GroupInstanceId = inst, ErrorCode = (short)e });
            else response.ErrorCode = (short)e;
            return response;
        }
        lock (cg.Lock)
        {
            foreach (var (memberId, instanceId) in leaving)
            {
                ErrorCode e = ErrorCode.None;
                ClassicMember? m = null;
                if (instanceId is not null)
                {
                    if (!cg.StaticMembers.TryGetValue(instanceId, out var sid)) e = ErrorCode.UnknownMemberId;
                    else if (memberId.Length > 0 && memberId != sid) e = ErrorCode.FencedInstanceId;
                    else m = cg.Members.GetValueOrDefault(sid);
                }
                else if (!cg.Members.TryGetValue(memberId, out m))
                {
                    // A member that only got its id (MEMBER_ID_REQUIRED) may leave too.
                    e = cg.PendingMembers.Remove(memberId) ? ErrorCode.None : ErrorCode.UnknownMemberId;
                }
                if (m is not null)
                {
                    LogLeft(_logger, cg.GroupId, m.MemberId);
                    RemoveMemberAndRebalance(cg, m);
                }
                if (version >= 3) response.Members.Add(new() { MemberId = memberId, GroupInstanceId = instanceId, ErrorCode = (short)e });
                else response.ErrorCode = (short)e;
            }
        }
        return response;
    }

    // ================================================================ records

    /// <summary>The group's GroupMetadataValue record (with <paramref name="assignment"/> when given, else the members' current ones).</summary>
    private static (byte[] Key, byte[]? Value) GroupMetadataRecord(ClassicGroup cg, Dictionary<string, byte[]>? assignment)
    {
        var value = new GroupMetadataValue
        {
            ProtocolType = cg.ProtocolType ?? "",
            Generation = cg.GenerationId,
            Protocol = cg.ProtocolName,
            Leader = cg.LeaderId,
            CurrentStateTimestamp = cg.CurrentStateTimestamp,
        };
        foreach (var m in cg.Members.Values)
        {
            value.Members.Add(new GroupMetadataValue.MemberMetadata
            {
                MemberId = m.MemberId,
                GroupInstanceId = m.GroupInstanceId,
                ClientId = m.ClientId,
                ClientHost = m.ClientHost,
                RebalanceTimeout = m.RebalanceTimeoutMs,
                SessionTimeout = m.SessionTimeoutMs,
                Subscription = (cg.ProtocolName is null ? null : m.MetadataFor(cg.ProtocolName)) ?? [],
                Assignment = assignment is null ? m.Assignment : assignment.GetValueOrDefault(m.MemberId) ?? [],
            });
        }
        return (GroupRecords.GroupMetadataKeyBytes(cg.GroupId), GroupRecords.Encode(GroupRecords.GroupMetadataValueVersion, value));
    }

    [Microsoft.Extensions.Logging.LoggerMessage(EventId = 6012, Level = Microsoft.Extensions.Logging.LogLevel.Information, Message = "Group {Group}: generation {Generation} with {Members} members (protocol {Protocol})")]
    private static partial void LogStabilized(Microsoft.Extensions.Logging.ILogger logger, string group, int generation, int members, string protocol);

    [Microsoft.Extensions.Logging.LoggerMessage(EventId = 6010, Level = Microsoft.Extensions.Logging.LogLevel.Information, Message = "Group {Group}: member {Member} session expired")]
    private static partial void LogSessionExpired(Microsoft.Extensions.Logging.ILogger logger, string group, string member);

    [Microsoft.Extensions.Logging.LoggerMessage(EventId = 6011, Level = Microsoft.Extensions.Logging.LogLevel.Information, Message = "Group {Group}: member {Member} left")]
    private static partial void LogLeft(Microsoft.Extensions.Logging.ILogger logger, string group, string member);
}
