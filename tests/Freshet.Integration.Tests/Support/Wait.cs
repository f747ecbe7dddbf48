namespace Freshet.Integration.Tests.Support;

/// <summary>Waiting on a state the test can observe (an event), with a generous bound instead of a time window.</summary>
internal static class Wait
{
    /// <summary>Polls <paramref name="condition"/> until it holds; throws <see cref="TimeoutException"/> naming <paramref name="what"/> after <paramref name="seconds"/>.</summary>
    public static async Task UntilAsync(Func<bool> condition, string what, int seconds = 60)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"timed out waiting until {what}");
            await Task.Delay(100);
        }
    }
}
