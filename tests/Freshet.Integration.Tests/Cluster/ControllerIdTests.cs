using Freshet.Integration.Tests.Support;
using Freshet.Protocol.Messages;
using Xunit.Abstractions;
using ErrorCode = Freshet.Protocol.ErrorCode;

namespace Freshet.Integration.Tests.Cluster;

/// <summary>
/// Which node the cluster says is the controller, asked of a node that is not: Metadata and
/// DescribeCluster on a broker listener name the active controller (a broker too, in combined
/// mode), and DescribeCluster on a controller listener lists the controllers, as Kafka's
/// ControllerApis does.
/// </summary>
public sealed class ControllerIdTests(ITestOutputHelper output)
{
    [Fact]
    public async Task ANodeThatIsNotTheControllerNamesTheActiveControllerAndListsTheControllers()
    {
        await using var cluster = new ClusterProcesses(3);
        await cluster.StartAsync();
        int active = await cluster.ActiveControllerAsync(1);
        int asked = cluster.Nodes.Keys.First(n => n != active);
        output.WriteLine($"active controller {active}, asking node {asked}");

        await using var client = await RawKafkaClient.ConnectAsync(cluster.Nodes[asked].BootstrapServers);
        // Every node is ready, but the asked one may not have applied the last broker's unfencing yet.
        MetadataResponse md;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while ((md = await client.RequestAsync<MetadataResponse>(new MetadataRequest { Topics = [] }, 12)).Brokers.Count < 3)
        {
            Assert.True(DateTime.UtcNow < deadline, $"node {asked} lists {md.Brokers.Count} brokers");
            await Task.Delay(100);
        }
        Assert.Equal(active, md.ControllerId);

        var brokers = await client.RequestAsync<DescribeClusterResponse>(new DescribeClusterRequest { EndpointType = 1 }, 1);
        Assert.Equal((short)ErrorCode.None, brokers.ErrorCode);
        Assert.Equal(active, brokers.ControllerId);
        Assert.Equal([1, 2, 3], brokers.Brokers.Select(b => b.BrokerId).Order());

        // The controllers are described by a controller listener; a broker listener says the endpoint is the wrong kind.
        var mismatched = await client.RequestAsync<DescribeClusterResponse>(new DescribeClusterRequest { EndpointType = 2 }, 1);
        Assert.Equal((short)ErrorCode.MismatchedEndpointType, mismatched.ErrorCode);
        Assert.Empty(mismatched.Brokers);
        var unknown = await client.RequestAsync<DescribeClusterResponse>(new DescribeClusterRequest { EndpointType = 7 }, 1);
        Assert.Equal((short)ErrorCode.UnsupportedEndpointType, unknown.ErrorCode);

        await using var controllerListener = await RawKafkaClient.ConnectAsync($"127.0.0.1:{cluster.ControllerPort(asked)}");
        var controllers = await controllerListener.RequestAsync<DescribeClusterResponse>(new DescribeClusterRequest { EndpointType = 2 }, 1);
        Assert.Equal((short)ErrorCode.None, controllers.ErrorCode);
        Assert.Equal(active, controllers.ControllerId);
        Assert.Equal([(1, cluster.ControllerPort(1)), (2, cluster.ControllerPort(2)), (3, cluster.ControllerPort(3))],
            controllers.Brokers.Select(b => (b.BrokerId, b.Port)).Order());
        var brokersOnController = await controllerListener.RequestAsync<DescribeClusterResponse>(new DescribeClusterRequest { EndpointType = 1 }, 1);
        Assert.Equal((short)ErrorCode.MismatchedEndpointType, brokersOnController.ErrorCode);
    }
}
