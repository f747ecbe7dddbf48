using Freshet.Metadata.Raft;

namespace Freshet.Metadata.Tests.Raft;

public sealed class QuorumVotersTests
{
    [Fact]
    public void ParsesIdsHostsAndPorts()
    {
        var voters = QuorumVoters.Parse("1@localhost:9093, 2@10.0.0.2:9094,3@controller-3.example.com:19093");
        Assert.Equal([1, 2, 3], voters.Keys);
        Assert.Equal(new VoterEndpoint("localhost", 9093), voters[1]);
        Assert.Equal(new VoterEndpoint("10.0.0.2", 9094), voters[2]);
        Assert.Equal(new VoterEndpoint("controller-3.example.com", 19093), voters[3]);
    }

    [Fact]
    public void ParsesBracketedIpv6()
    {
        var voters = QuorumVoters.Parse("5@[::1]:9093,6@[fe80::1%eth0]:9094");
        Assert.Equal(new VoterEndpoint("::1", 9093), voters[5]);
        Assert.Equal(new VoterEndpoint("fe80::1%eth0", 9094), voters[6]);
        Assert.Equal("[::1]:9093", voters[5].ToString());
    }

    [Fact]
    public void SortsById() => Assert.Equal([1, 2, 3], QuorumVoters.Parse("3@c:3,1@a:1,2@b:2").Keys);

    [Fact]
    public void EmptyIsNoVoters() => Assert.Empty(QuorumVoters.Parse(""));

    [Theory]
    [InlineData("1@localhost")]               // no port
    [InlineData("localhost:9093")]            // no id
    [InlineData("x@localhost:9093")]          // id not a number
    [InlineData("-1@localhost:9093")]         // negative id
    [InlineData("1@:9093")]                   // no host
    [InlineData("1@localhost:port")]          // port not a number
    [InlineData("1@localhost:70000")]         // port out of range
    [InlineData("1@::1:9093")]                // IPv6 without brackets
    [InlineData("1@[::1:9093")]               // unclosed bracket
    [InlineData("1@a:1,,2@b:2")]              // empty entry
    [InlineData("1@a:1,1@b:2")]               // duplicate id
    public void RejectsMalformedEntries(string value)
    {
        var e = Assert.Throws<FormatException>(() => QuorumVoters.Parse(value));
        Assert.Contains(QuorumVoters.ConfigKey, e.Message);
    }
}
