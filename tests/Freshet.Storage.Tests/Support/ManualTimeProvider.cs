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

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> _readsByThread = new(StringComparer.Ordinal);
    private long _nowMs = startMs;

    public long NowMs => Interlocked.Read(ref _nowMs);

    public override DateTimeOffset GetUtcNow()
    {
        if (Thread.CurrentThread.Name is { } thread) _readsByThread.AddOrUpdate(thread, 1, static (_, n) => n + 1);
        return DateTimeOffset.FromUnixTimeMilliseconds(NowMs);
    }

    /// <summary>
    /// How often threads named <paramref name="threadName"/> read this clock: a background thread that reads
    /// it once per pass (the log cleaner's) shows a test when its next pass has begun, instead of a sleep.
    /// </summary>
    public long ReadsBy(string threadName) => _readsByThread.GetValueOrDefault(threadName);

    public void Advance(long ms) => Interlocked.Add(ref _nowMs, ms);
}
