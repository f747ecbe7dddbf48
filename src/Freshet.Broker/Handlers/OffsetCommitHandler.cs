using Freshet.Broker.Groups;
using Freshet.Protocol;
using Freshet.Protocol.Messages;
using Freshet.Protocol.Wire;

namespace Freshet.Broker.Handlers;

/// <summary>OffsetCommit, OffsetFetch (one group, or many from v8) and OffsetDelete.</summary>
public sealed class OffsetCommitHandler(RequestDispatcher dispatcher, GroupCoordinator groups)
{
    public void Register()
    {
        dispatcher.Register(ApiKey.OffsetCommit, async (c, r) => await CommitAsync(c, (OffsetCommitRequest)r).ConfigureAwait(false));
        dispatcher.Register(ApiKey.OffsetFetch, (c, r) => new(Fetch(c, (OffsetFetchRequest)r)));
        dispatcher.Register(ApiKey.OffsetDelete, async (c, r) => await DeleteAsync((OffsetDeleteRequest)r).ConfigureAwait(false));
    }

    private async Task<IApiMessage?> CommitAsync(RequestContext context, OffsetCommitRequest request)
    {
        short v = context.ApiVersion;
        var commits = request.Topics.SelectMany(t => t.Partitions.Select(p => new GroupCoordinator.CommitRequest(
            t.Name, p.PartitionIndex, p.CommittedOffset, v >= 6 ? p.CommittedLeaderEpoch : -1, p.CommittedMetadata))).ToList();
        var results = await groups.CommitOffsetsAsync(request.GroupId, v >= 1 ? request.GenerationIdOrMemberEpoch : -1,
            v >= 1 ? request.MemberId : "", v >= 7 ? request.GroupInstanceId : null, commits, v).ConfigureAwait(false);
        var response = new OffsetCommitResponse();
        foreach (var t in request.Topics)
        {
            var tr = new OffsetCommitResponse.OffsetCommitResponseTopic { Name = t.Name };
            foreach (var p in t.Partitions)
                tr.Partitions.Add(new() { PartitionIndex = p.PartitionIndex, ErrorCode = (short)results.GetValueOrDefault((t.Name, p.PartitionIndex)) });
            response.Topics.Add(tr);
        }
        return response;
    }

    private OffsetFetchResponse Fetch(RequestContext context, OffsetFetchRequest request)
    {
        short v = context.ApiVersion;
        var response = new OffsetFetchResponse();
        if (v >= 8)
        {
            foreach (var g in request.Groups)
            {
                var (e, offsets) = groups.FetchOffsets(g.GroupId,
                    g.Topics?.Select(t => (t.Name, (IReadOnlyList<int>)t.PartitionIndexes)).ToList(), v >= 9 ? g.MemberId : null, g.MemberEpoch);
                var gr = new OffsetFetchResponse.OffsetFetchResponseGroup { GroupId = g.GroupId, ErrorCode = (short)e };
                foreach (var byTopic in offsets.GroupBy(o => o.Topic))
                {
                    var tr = new OffsetFetchResponse.OffsetFetchResponseTopics { Name = byTopic.Key };
                    foreach (var (_, p, o) in byTopic)
                        tr.Partitions.Add(new() { PartitionIndex = p, CommittedOffset = o?.Offset ?? -1, CommittedLeaderEpoch = o?.LeaderEpoch ?? -1, Metadata = o?.Metadata ?? "" });
                    gr.Topics.Add(tr);
                }
                response.Groups.Add(gr);
            }
            return response;
        }
        // v0-7: one group; a null topic list (v2+) means every committed partition.
        var topics = request.Topics?.Select(t => (t.Name, (IReadOnlyList<int>)t.PartitionIndexes)).ToList();
        var (error, list) = groups.FetchOffsets(request.GroupId, topics);
        if (v >= 2) response.ErrorCode = (short)error;
        if (error != ErrorCode.None && topics is not null)
        {
            // Before v2 there is no top-level error: each partition carries it.
            list = [.. topics.SelectMany(t => t.Item2.Select(p => (t.Name, p, (CommittedOffset?)null)))];
        }
        foreach (var byTopic in list.GroupBy(o => o.Topic))
        {
            var tr = new OffsetFetchResponse.OffsetFetchResponseTopic { Name = byTopic.Key };
            foreach (var (_, p, o) in byTopic)
                tr.Partitions.Add(new()
                {
                    PartitionIndex = p, CommittedOffset = o?.Offset ?? -1, CommittedLeaderEpoch = o?.LeaderEpoch ?? -1, Metadata = o?.Metadata ?? "",
                    ErrorCode = (short)(v < 2 ? error : ErrorCode.None),
                });
            response.Topics.Add(tr);
        }
        return response;
    }

    private async Task<IApiMessage?> DeleteAsync(OffsetDeleteRequest request)
    {
        var (e, results) = await groups.DeleteOffsetsAsync(request.GroupId,
            request.Topics.Select(t => (t.Name, (IReadOnlyList<int>)t.Partitions.Select(p => p.PartitionIndex).ToList())).ToList()).ConfigureAwait(false);
        var response = new OffsetDeleteResponse { ErrorCode = (short)e };
        if (e == ErrorCode.None)
        {
            foreach (var t in request.Topics)
            {
                var tr = new OffsetDeleteResponse.OffsetDeleteResponseTopic { Name = t.Name };
                foreach (var p in t.Partitions)
                    tr.Partitions.Add(new() { PartitionIndex = p.PartitionIndex, ErrorCode = (short)results.GetValueOrDefault((t.Name, p.PartitionIndex)) });
                response.Topics.Add(tr);
            }
        }
        return response;
    }
}
