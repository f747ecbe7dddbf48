using Freshet.Broker.Groups;
using Freshet.Protocol.Wire;

namespace Freshet.Integration.Tests.Groups;

/// <summary>The consumer protocol's server-side assignors on their own: validity, balance, stickiness, range semantics, determinism.</summary>
public sealed class ConsumerAssignorTests
{
    private static readonly AssignableTopic T1 = new(new Uuid(1, 1), "t1", 6);
    private static readonly AssignableTopic T2 = new(new Uuid(2, 2), "t2", 6);

    private static AssignorMember Member(string id, IEnumerable<AssignableTopic> topics, IEnumerable<TopicIdPartition>? current = null) =>
        new(id, null, null, topics.Select(t => t.Id).ToHashSet(), (current ?? []).ToHashSet());

    private static AssignmentSpec Spec(IEnumerable<AssignableTopic> topics, params AssignorMember[] members) =>
        new(members, topics.ToDictionary(t => t.Id));

    private static IEnumerable<TopicIdPartition> All(AssignableTopic t) => Enumerable.Range(0, t.Partitions).Select(p => new TopicIdPartition(t.Id, p));

    /// <summary>Every partition of every topic goes to exactly one member, and only to a member subscribed to its topic.</summary>
    private static void AssertValid(AssignmentSpec spec, IReadOnlyDictionary<string, IReadOnlySet<TopicIdPartition>> result)
    {
        Assert.Equal(spec.Members.Select(m => m.MemberId).Order(), result.Keys.Order());
        var all = result.Values.SelectMany(s => s).ToList();
        Assert.Equal(all.Count, all.Distinct().Count());
        Assert.Equal(spec.Topics.Values.SelectMany(All).ToHashSet(), all.ToHashSet());
        foreach (var m in spec.Members)
            Assert.All(result[m.MemberId], p => Assert.Contains(p.TopicId, m.Topics));
    }

    public static TheoryData<int, int> Sizes => new() { { 1, 6 }, { 2, 6 }, { 3, 6 }, { 4, 6 }, { 5, 13 }, { 7, 3 }, { 10, 100 } };

    [Theory]
    [MemberData(nameof(Sizes))]
    public void UniformBalancesIdenticalSubscriptionsToWithinOne(int members, int partitions)
    {
        var topic = T1 with { Partitions = partitions };
        var spec = Spec([topic, T2], [.. Enumerable.Range(0, members).Select(i => Member($"m{i:D2}", [topic, T2]))]);
        var result = new UniformAssignor().Assign(spec);
        AssertValid(spec, result);
        var counts = result.Values.Select(s => s.Count).ToList();
        Assert.True(counts.Max() - counts.Min() <= 1, string.Join(",", counts));
    }

    [Fact]
    public void UniformKeepsPartitionsWhereItCan()
    {
        var uniform = new UniformAssignor();
        var two = uniform.Assign(Spec([T1], Member("a", [T1]), Member("b", [T1])));
        Assert.Equal(3, two["a"].Count);

        // A third member: only the two partitions it needs move, one from each.
        var three = uniform.Assign(Spec([T1], Member("a", [T1], two["a"]), Member("b", [T1], two["b"]), Member("c", [T1])));
        Assert.All(three.Values, s => Assert.Equal(2, s.Count));
        Assert.True(three["a"].IsSubsetOf(two["a"]));
        Assert.True(three["b"].IsSubsetOf(two["b"]));

        // A member leaves: the others keep everything they had and share its partitions.
        var afterLeave = uniform.Assign(Spec([T1], Member("a", [T1], three["a"]), Member("c", [T1], three["c"])));
        Assert.True(three["a"].IsSubsetOf(afterLeave["a"]));
        Assert.True(three["c"].IsSubsetOf(afterLeave["c"]));
        Assert.Equal(3, afterLeave["a"].Count);

        // Nothing changes: nothing moves.
        var again = uniform.Assign(Spec([T1], Member("a", [T1], afterLeave["a"]), Member("c", [T1], afterLeave["c"])));
        Assert.True(again["a"].SetEquals(afterLeave["a"]));
    }

    [Fact]
    public void UniformDropsWhatIsNoLongerValidAndNeverAssignsAPartitionTwice()
    {
        var shrunk = T1 with { Partitions = 4 };
        // "b" claims partitions that "a" also claims (a replaced static member), and partitions that no longer exist.
        var spec = Spec([shrunk],
            Member("a", [shrunk], All(T1).Take(3)),
            Member("b", [shrunk], All(T1).Skip(2)));
        var result = new UniformAssignor().Assign(spec);
        AssertValid(spec, result);
        Assert.Equal(2, result["a"].Count);
        Assert.Equal(2, result["b"].Count);
    }

    [Fact]
    public void UniformRespectsDifferentSubscriptions()
    {
        // "a" reads t1 only; "b" and "c" read both: "a" should get a fair part of t1, b and c the rest.
        var spec = Spec([T1, T2], Member("a", [T1]), Member("b", [T1, T2]), Member("c", [T1, T2]));
        var result = new UniformAssignor().Assign(spec);
        AssertValid(spec, result);
        Assert.All(result.Values, s => Assert.Equal(4, s.Count));
        Assert.All(result["a"], p => Assert.Equal(T1.Id, p.TopicId));
    }

    [Fact]
    public void RangeGivesConsecutiveCoPartitionedRanges()
    {
        var spec = Spec([T1, T2], Member("c", [T1, T2]), Member("a", [T1, T2]), Member("b", [T1, T2]));
        var result = new RangeAssignor().Assign(spec);
        AssertValid(spec, result);
        // Members in id order get partitions 0-1, 2-3, 4-5 of each topic.
        string[] order = ["a", "b", "c"];
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(new[] { 2 * i, 2 * i + 1 }, result[order[i]].Where(p => p.TopicId == T1.Id).Select(p => p.Partition).Order());
            Assert.Equal(new[] { 2 * i, 2 * i + 1 }, result[order[i]].Where(p => p.TopicId == T2.Id).Select(p => p.Partition).Order());
        }

        // 7 partitions over 3 members: the first gets the extra one, ranges stay consecutive.
        var seven = T1 with { Partitions = 7 };
        var r7 = new RangeAssignor().Assign(Spec([seven], Member("a", [seven]), Member("b", [seven]), Member("c", [seven])));
        Assert.Equal(new[] { 0, 1, 2 }, r7["a"].Select(p => p.Partition).Order());
        Assert.Equal(new[] { 3, 4 }, r7["b"].Select(p => p.Partition).Order());
        Assert.Equal(new[] { 5, 6 }, r7["c"].Select(p => p.Partition).Order());
    }

    [Fact]
    public void RangeAssignsATopicOnlyAmongItsSubscribersAndKeepsPartitionsWithinTheShare()
    {
        var spec = Spec([T1, T2], Member("a", [T1]), Member("b", [T1, T2]));
        var result = new RangeAssignor().Assign(spec);
        AssertValid(spec, result);
        Assert.Equal(3, result["a"].Count);
        Assert.Equal(9, result["b"].Count); // 3 of t1, all of t2

        // A member joins: a and b keep partitions they had, up to their new share.
        var next = new RangeAssignor().Assign(Spec([T1, T2], Member("a", [T1], result["a"]), Member("b", [T1, T2], result["b"]), Member("c", [T1, T2])));
        Assert.True(next["a"].IsSubsetOf(result["a"]));
        Assert.True(next["b"].IsSubsetOf(result["b"]));
        Assert.Equal(2, next["a"].Count);
        Assert.Equal(5, next["b"].Count);
        Assert.Equal(5, next["c"].Count);
    }

    [Theory]
    [InlineData("uniform")]
    [InlineData("range")]
    public void TheSameInputGivesTheSameAssignmentWhateverTheOrder(string name)
    {
        var assignor = ConsumerGroupAssignors.Create(name)!;
        Assert.Equal(name, assignor.Name);
        var rnd = new Random(848);
        var topics = Enumerable.Range(0, 4).Select(i => new AssignableTopic(new Uuid(10 + i, 7 * i + 1), $"topic-{i}", 3 + i * 2)).ToList();
        var members = Enumerable.Range(0, 5).Select(i => Member($"member-{i}", topics.Where((_, t) => (t + i) % 3 != 0))).ToList();
        var first = assignor.Assign(new AssignmentSpec(members, topics.ToDictionary(t => t.Id)));
        for (int round = 0; round < 5; round++)
        {
            var shuffled = members.OrderBy(_ => rnd.Next()).ToList();
            var topicMap = topics.OrderBy(_ => rnd.Next()).ToDictionary(t => t.Id);
            var again = assignor.Assign(new AssignmentSpec(shuffled, topicMap));
            foreach (var m in members) Assert.True(first[m.MemberId].SetEquals(again[m.MemberId]));
        }
        AssertValid(new AssignmentSpec(members, topics.ToDictionary(t => t.Id)), first);
    }

    [Fact]
    public void ConfiguredNamesIncludeKafkasClassNames()
    {
        Assert.IsType<UniformAssignor>(ConsumerGroupAssignors.Create("org.apache.kafka.coordinator.group.assignor.UniformAssignor"));
        Assert.IsType<RangeAssignor>(ConsumerGroupAssignors.Create("range"));
        Assert.Null(ConsumerGroupAssignors.Create("sticky"));
    }
}
