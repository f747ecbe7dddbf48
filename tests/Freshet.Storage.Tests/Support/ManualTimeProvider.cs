namespace Freshet.Storage.Tests.Support;

/// <summary>
/// A clock the test moves by hand. Only the wall clock is faked; timers created through it
/// (the LogManager's PeriodicTimer) still tick in real time, but every decision they make reads
/// <see cref="GetUtcNow"/>, so nothing time-based happens until the test advances the clock.
/// </summary>
public sealed class ManualTimeProvider(long startMs = ManualTimeProvider.DefaultStartMs) : TimeProvider
{
    /// <summary>2023-11-14T22:13:20Z: a realistic epoch so record timestamps near "now" look like real ones.</summary>
    public const long DefaultStartMs = 1_700_000_000_000;

    private long _nowMs = startMs;

    public long NowMs => Interlocked.Read(ref _nowMs);

    public override DateTimeOffset GetUtcNow() => DateTimeOffset.FromUnixTimeMilliseconds(NowMs);

    public void Advance(long ms) => Interlocked.Add(ref _nowMs, ms);
}
