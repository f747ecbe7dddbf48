using Freshet.Protocol.Records;

namespace Freshet.Protocol.Tests.Records;

public class PooledBufferWriterTests
{
    [Fact]
    public void Grows_and_keeps_written_bytes()
    {
        using var w = new PooledBufferWriter();
        var data = TestData.Random(100_000);
        for (int i = 0; i < data.Length; i += 999) w.Write(data.AsSpan(i, Math.Min(999, data.Length - i)));
        Assert.Equal(data.Length, w.WrittenCount);
        Assert.True(w.WrittenSpan.SequenceEqual(data));
        Assert.True(w.WrittenMemory.Span.SequenceEqual(data));
    }

    [Fact]
    public void GetSpan_gives_at_least_the_hint_and_Advance_counts()
    {
        using var w = new PooledBufferWriter();
        var s = w.GetSpan(5000);
        Assert.True(s.Length >= 5000);
        s[0] = 42;
        w.Advance(1);
        Assert.Equal(1, w.WrittenCount);
        Assert.Equal(42, w.WrittenSpan[0]);
        Assert.Throws<InvalidOperationException>(() => w.Advance(w.Capacity));
    }

    [Fact]
    public void Clear_keeps_the_array_and_Reset_returns_it()
    {
        using var w = new PooledBufferWriter(1000);
        w.Write(new byte[10]);
        int capacity = w.Capacity;
        w.Clear();
        Assert.Equal(0, w.WrittenCount);
        Assert.Equal(capacity, w.Capacity);
        w.Write(new byte[10]);
        w.Reset();
        Assert.Equal(0, w.WrittenCount);
        Assert.Equal(0, w.Capacity);
        w.Write([1, 2, 3]);
        Assert.Equal([1, 2, 3], w.ToArray());
    }

    [Fact]
    public void Exceeding_the_bound_is_InvalidDataException()
    {
        using var w = new PooledBufferWriter(0, maxSize: 100);
        w.Write(new byte[60]);
        w.Write(new byte[40]);
        Assert.Throws<InvalidDataException>(() => w.WriteByte(1));
        Assert.Throws<InvalidDataException>(() => w.GetSpan(1));
        Assert.Equal(100, w.WrittenCount);
    }

    [Fact]
    public void Spans_never_reach_past_the_bound()
    {
        using var w = new PooledBufferWriter(0, maxSize: 300);
        Assert.Equal(300, w.GetSpan(280).Length); // the pool hands out 512; only 300 may be used
    }

    [Fact]
    public void Truncate_undoes_a_partial_write()
    {
        using var w = new PooledBufferWriter();
        w.Write([1, 2, 3, 4]);
        w.Truncate(2);
        Assert.Equal([1, 2], w.ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => w.Truncate(3));
    }

    [Fact]
    public void Stream_view_appends_and_is_write_only()
    {
        using var w = new PooledBufferWriter();
        w.Write([9]);
        var s = w.AsStream();
        Assert.Same(s, w.AsStream());
        Assert.True(s.CanWrite);
        Assert.False(s.CanRead);
        Assert.False(s.CanSeek);
        s.Write([1, 2], 0, 2);
        s.WriteByte(3);
        s.Write(new ReadOnlySpan<byte>([4, 5]));
        s.Dispose(); // leaves the writer alone
        Assert.Equal([9, 1, 2, 3, 4, 5], w.ToArray());
        Assert.Equal(6, s.Length);
        Assert.Throws<NotSupportedException>(() => s.Read(new byte[1], 0, 1));
    }
}
