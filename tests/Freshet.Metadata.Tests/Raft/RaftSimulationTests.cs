using System.Diagnostics;
using System.Globalization;
using Xunit.Abstractions;

namespace Freshet.Metadata.Tests.Raft;

/// <summary>
/// The Raft quorum under the deterministic simulation (<see cref="RaftSimulation"/>): many seeds, each a
/// different schedule of crashes, partitions, lost, duplicated and reordered messages. A failure names
/// its seed and the command that replays just it with a full trace:
/// <c>FRESHET_RAFT_SEED=123 FRESHET_RAFT_VOTERS=3 dotnet test tests/Freshet.Metadata.Tests --filter FullyQualifiedName~RaftSimulationTests.ReplaySeed</c>
/// (FRESHET_RAFT_OBSERVERS, FRESHET_RAFT_FAULT_MS and FRESHET_RAFT_LOG=file too when the run was not a default one).
/// The soak (<c>[Trait("Category", "Soak")]</c>) runs FRESHET_RAFT_SEEDS (default 10,000) longer seeds per quorum size.
/// </summary>
public sealed class RaftSimulationTests(ITestOutputHelper output)
{
    private const int DefaultSeeds = 1500;

    [Fact]
    public void ThreeVotersAndAnObserverStaySafeAndLive() => RunSeeds(new SimOptions { Voters = 3 }, 0, DefaultSeeds);

    [Fact]
    public void FiveVotersAndAnObserverStaySafeAndLive() => RunSeeds(new SimOptions { Voters = 5 }, 0, DefaultSeeds);

    [Fact]
    public void OneVoterAndAnObserverStaySafeAndLive() => RunSeeds(new SimOptions { Voters = 1 }, 0, 200);

    /// <summary>
    /// The same quorum over <see cref="PartitionRaftLog"/>s on disk (tmpfs when there is one): a crash closes
    /// the files unflushed and cuts a random part of the unflushed tail, possibly mid-batch, before the log
    /// is reopened and recovered.
    /// </summary>
    [Fact]
    public void ThreeVotersOnFileLogsStaySafeAndLive()
    {
        using var dir = new TempDir();
        RunSeeds(new SimOptions { Voters = 3, LogDirectory = dir.Path }, 0, Env("FRESHET_RAFT_FILE_SEEDS", 300));
    }

    [Fact]
    [Trait("Category", "Soak")]
    public void Soak()
    {
        int seeds = Env("FRESHET_RAFT_SEEDS", 10_000);
        // Different seeds from the default suite's, and a longer fault phase.
        RunSeeds(new SimOptions { Voters = 3, FaultPhaseMs = 20_000 }, 1_000_000, seeds);
        RunSeeds(new SimOptions { Voters = 5, Observers = 2, FaultPhaseMs = 20_000 }, 2_000_000, seeds);
    }

    /// <summary>Replays FRESHET_RAFT_SEED (with FRESHET_RAFT_VOTERS voters) and prints its whole trace; reported as skipped without it.</summary>
    [ReplayFact]
    public void ReplaySeed()
    {
        int seed = int.Parse(Environment.GetEnvironmentVariable("FRESHET_RAFT_SEED")!, CultureInfo.InvariantCulture);
        var defaults = new SimOptions();
        var options = defaults with
        {
            Voters = Env("FRESHET_RAFT_VOTERS", defaults.Voters),
            Observers = Env("FRESHET_RAFT_OBSERVERS", defaults.Observers),
            FaultPhaseMs = Env("FRESHET_RAFT_FAULT_MS", (int)defaults.FaultPhaseMs),
            ForgetVotes = Environment.GetEnvironmentVariable("FRESHET_RAFT_BUG") == "forget-votes",
            SkipFlush = Environment.GetEnvironmentVariable("FRESHET_RAFT_BUG") == "skip-flush",
            FullTrace = true,
        };
        using var dir = new TempDir();
        if (Environment.GetEnvironmentVariable("FRESHET_RAFT_LOG") == "file") options = options with { LogDirectory = dir.Path };
        var sim = new RaftSimulation(seed, options);
        try
        {
            var stats = sim.Run();
            output.WriteLine(sim.Trace);
            output.WriteLine(stats.ToString());
        }
        catch (SimulationFailure)
        {
            output.WriteLine(sim.Trace);
            throw;
        }
    }

    private static int Env(string name, int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), CultureInfo.InvariantCulture, out int v) ? v : fallback;

    /// <summary>The same seed gives the same run, event for event.</summary>
    [Fact]
    public void ASeedReplaysExactly()
    {
        for (int seed = 0; seed < 5; seed++)
        {
            var a = new RaftSimulation(seed, new SimOptions { Voters = 3, FullTrace = true });
            var b = new RaftSimulation(seed, new SimOptions { Voters = 3, FullTrace = true });
            Assert.Equal(a.Run(), b.Run());
            Assert.Equal(a.Trace, b.Trace);
        }
    }

    /// <summary>
    /// The checker can fail: voters that forget their vote (granting every up-to-date candidate in an
    /// epoch) elect two leaders in one epoch, and the simulation must notice within a few hundred seeds.
    /// </summary>
    [Fact]
    public void CheckerCatchesVotersThatVoteTwicePerEpoch()
    {
        SimulationFailure? caught = null;
        for (int seed = 0; seed < 300 && caught is null; seed++)
        {
            try
            {
                new RaftSimulation(seed, new SimOptions { Voters = 3, ForgetVotes = true }).Run();
            }
            catch (SimulationFailure e)
            {
                caught = e;
            }
        }
        Assert.NotNull(caught);
        output.WriteLine(caught.Message);
        Assert.Matches("two leaders in epoch|committed", caught.Message);
    }

    /// <summary>
    /// The committed-prefix check can fail too: nodes that never flush (yet count their entries toward
    /// the high watermark) lose committed entries in crashes, and another leader commits something else
    /// at those offsets.
    /// </summary>
    [Fact]
    public void CheckerCatchesCommittedEntriesLostToUnflushedLogs()
    {
        SimulationFailure? caught = null;
        for (int seed = 0; seed < 500 && caught is null; seed++)
        {
            try
            {
                new RaftSimulation(seed, new SimOptions { Voters = 3, SkipFlush = true }).Run();
            }
            catch (SimulationFailure e) when (!e.Message.Contains("liveness", StringComparison.Ordinal))
            {
                caught = e;
            }
        }
        Assert.NotNull(caught);
        output.WriteLine(caught.Message);
        Assert.Matches("committed|drop committed entries", caught.Message);
    }

    /// <summary>The file logs' crashes lose data too: nodes that never flush lose committed entries on them.</summary>
    [Fact]
    public void CheckerCatchesCommittedEntriesLostToUnflushedFileLogs()
    {
        using var dir = new TempDir();
        SimulationFailure? caught = null;
        for (int seed = 0; seed < 500 && caught is null; seed++)
        {
            try
            {
                new RaftSimulation(seed, new SimOptions { Voters = 3, SkipFlush = true, LogDirectory = dir.Path }).Run();
            }
            catch (SimulationFailure e) when (!e.Message.Contains("liveness", StringComparison.Ordinal))
            {
                caught = e;
            }
        }
        Assert.NotNull(caught);
        output.WriteLine(caught.Message);
        Assert.Matches("committed|drop committed entries", caught.Message);
        Assert.Contains("FRESHET_RAFT_LOG=file", caught.Message, StringComparison.Ordinal);
    }

    private void RunSeeds(SimOptions options, int firstSeed, int count)
    {
        var watch = Stopwatch.StartNew();
        var failures = new List<string>();
        long events = 0, virtualMs = 0, messagesDropped = 0;
        int crashes = 0, partitions = 0, snapshotsInstalled = 0, truncations = 0, maxEpoch = 0;
        for (int seed = firstSeed; seed < firstSeed + count; seed++)
        {
            try
            {
                var stats = new RaftSimulation(seed, options).Run();
                events += stats.Events;
                virtualMs += stats.VirtualMs;
                crashes += stats.Crashes;
                partitions += stats.Partitions;
                snapshotsInstalled += stats.SnapshotsInstalled;
                truncations += stats.Truncations;
                messagesDropped += stats.MessagesDropped;
                maxEpoch = Math.Max(maxEpoch, stats.MaxEpoch);
            }
            catch (SimulationFailure e)
            {
                failures.Add(e.Message);
                if (failures.Count >= 3) break;
            }
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{count} seeds from {firstSeed}, {options.Voters} voters: {watch.Elapsed.TotalSeconds:F1} s, {events} events, {virtualMs / 1000} virtual s, "
            + $"{crashes} crashes, {partitions} partitions, {messagesDropped} messages lost, {truncations} truncations, "
            + $"{snapshotsInstalled} snapshots downloaded, highest epoch {maxEpoch}"));
        if (failures.Count > 0)
        {
            // Replay the first failure with tracing on: the run is deterministic, so this is the same run.
            int seed = int.Parse(failures[0].AsSpan(5, failures[0].IndexOf(' ', 5) - 5), CultureInfo.InvariantCulture);
            var replay = new RaftSimulation(seed, options with { FullTrace = true });
            try { replay.Run(); } catch (SimulationFailure) { }
            string[] lines = replay.Trace.Split('\n');
            output.WriteLine($"last events of seed {seed}:\n" + string.Join('\n', lines[Math.Max(0, lines.Length - 120)..]));
            Assert.Fail(string.Join("\n\n", failures));
        }
        if (options.Voters > 1 && count >= 100)
        {
            // The faults were real: the runs crashed nodes, cut the network, truncated logs, shipped snapshots.
            Assert.True(crashes > 0 && partitions > 0 && truncations > 0 && snapshotsInstalled > 0,
                $"the simulation did not exercise every fault: {crashes} crashes, {partitions} partitions, {truncations} truncations, {snapshotsInstalled} snapshots");
        }
    }
}

/// <summary>The replay runs only when FRESHET_RAFT_SEED names a seed; otherwise it is reported as skipped, with the reason.</summary>
public sealed class ReplayFactAttribute : FactAttribute
{
    public ReplayFactAttribute()
    {
        if (!int.TryParse(Environment.GetEnvironmentVariable("FRESHET_RAFT_SEED"), CultureInfo.InvariantCulture, out _))
            Skip = "replays a failed simulation seed: set FRESHET_RAFT_SEED (and FRESHET_RAFT_VOTERS) to the values a failure printed";
    }
}
