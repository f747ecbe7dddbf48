using Freshet.Protocol;
using Freshet.Storage.Segments;
using Freshet.Storage.Tests.Support;

namespace Freshet.Storage.Tests;

public sealed class RollAndIndexTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly ManualTimeProvider _time = new();
    private string Dir => _tmp.Sub("orders-0");
    private long Now => _time.NowMs;

    public void Dispose() => _tmp.Dispose();

    [Theory]
    [InlineData(0, 3)]  // segment.bytes is exactly three batches: three fit
    [InlineData(-1, 2)] // one byte less: two fit
    public void Rolls_when_the_next_batch_would_pass_segment_bytes(int slack, int perSegment)
    {
        int s = Batches.Make(1, Now).Length;
        using var log = TestLogs.Create(Dir, _time, TestLogs.Config((LogConfig.SegmentBytesConfig, (3 * s + slack).ToString())));
        for (int i = 0; i < 7; i++) log.Append(Batches.Make(1, Now));

        var expectedBases = Enumerable.Range(0, 7).Where(i => i % perSegment == 0).Select(i => (long)i).ToList();
        Assert.Equal(expectedBases, log.SegmentBases());
        Assert.Equal(expectedBases.Select(b => TestLogs.Name(b, ".log")), TestLogs.Files(Dir, ".log"));
        Assert.All(log.Segments.SkipLast(1), seg => Assert.Equal(perSegment * s, seg.Size));
        Assert.All(log.Segments.SkipLast(1), seg => Assert.Equal(perSegment * s, new FileInfo(seg.LogPath).Length));
        Assert.Equal(7 - expectedBases[^1], log.ActiveSegment.Size / s);
    }

    [Fact]
    public void Rolls_when_the_first_batch_of_the_active_segment_is_older_than_segment_ms()
    {
        using var log = TestLogs.Create(Dir, _time, TestLogs.Config((LogConfig.SegmentMsConfig, "60000")));
        var trace = new List<(long Offset, long Segment)>();
        void Append()
        {
            var r = log.Append(Batches.Make(1, Now));
            trace.Add((r.FirstOffset, log.ActiveSegment.BaseOffset));
        }

        _time.Advance(120_000); // an empty segment's age does not count: nothing to roll yet
        Append();               // 0 -> segment 0, first batch stamped now
        _time.Advance(60_000);
        Append();               // exactly segment.ms later: still segment 0
        _time.Advance(1);
        Append();               // 60001 ms after the first batch: roll
        _time.Advance(30_000);
        Append();
        log.Roll();             // an explicit roll
        log.Roll();             // ... of an empty segment does nothing
        _time.Advance(600_000);
        Append();               // goes into the empty active segment however old it is

        Assert.Equal([(0L, 0L), (1L, 0L), (2L, 2L), (3L, 2L), (4L, 4L)], trace);
        Assert.Equal([0L, 2L, 4L], log.SegmentBases());
    }

    [Fact]
    public void Segment_ms_counts_from_the_first_batch_timestamp_not_from_the_clock_at_creation()
    {
        using var log = TestLogs.Create(Dir, _time, TestLogs.Config((LogConfig.SegmentMsConfig, "60000")));
        // The producer's clock is two minutes behind: the segment counts as two minutes old at once.
        log.Append(Batches.Make(1, Now - 120_000));
        log.Append(Batches.Make(1, Now));
        Assert.Equal([0L, 1L], log.SegmentBases());
    }

    [Fact]
    public void A_producer_whose_clock_lags_more_than_segment_ms_does_not_roll_a_segment_per_append()
    {
        // Segment age is measured in record time (incoming batch minus first batch), as Kafka does.
        using var log = TestLogs.Create(Dir, _time, TestLogs.Config((LogConfig.SegmentMsConfig, "60000")));
        for (int i = 0; i < 5; i++) log.Append(Batches.Make(1, Now - 10 * 86_400_000L + i));
        Assert.Equal([0L], log.SegmentBases());
    }

    [Theory]
    [InlineData(false, 3)] // one timestamp: the time index holds one entry, the offset index (3 entries) fills first
    [InlineData(true, 2)]  // rising timestamps: the time index (2 entries) fills first
    public void Rolls_when_an_index_is_full(bool risingTimestamps, int perSegment)
    {
        // 24 bytes: 3 offset index entries (8 bytes), 2 time index entries (12 bytes); every batch is indexed.
        using var log = TestLogs.Create(Dir, _time, TestLogs.Config(
            (LogConfig.SegmentIndexBytesConfig, "24"), (LogConfig.IndexIntervalBytesConfig, "0")));
        for (int i = 0; i < 8; i++) log.Append(Batches.Make(2, risingTimestamps ? Now + i : Now));

        var bases = Enumerable.Range(0, 8).Where(i => i % perSegment == 0).Select(i => 2L * i).ToList();
        Assert.Equal(bases, log.SegmentBases());
        foreach (var seg in log.Segments.SkipLast(1))
        {
            Assert.True(seg.OffsetIndex.IsFull || seg.TimeIndex.IsFull);
            Assert.Equal(perSegment, seg.OffsetIndex.Count);
            Assert.Equal(risingTimestamps ? 2 : 1, seg.TimeIndex.Count);
            // Rolled segments have their indexes on disk.
            Assert.Equal(perSegment * OffsetIndex.EntrySize, new FileInfo(TestLogs.SegmentPath(Dir, seg.BaseOffset, ".index")).Length);
            Assert.Equal(seg.TimeIndex.Count * TimeIndex.EntrySize, new FileInfo(TestLogs.SegmentPath(Dir, seg.BaseOffset, ".timeindex")).Length);
        }
        log.CommitAll();
        Assert.Equal(Enumerable.Range(0, 16).Select(i => (long)i), log.RecordsFrom(0).Select(r => r.Offset));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_segment_with_more_index_entries_than_segment_index_bytes_now_allows_still_opens(bool clean)
    {
        // Written with an index entry per batch and room for them all...
        var before = TestLogs.Config((LogConfig.IndexIntervalBytesConfig, "0"));
        using (var log = TestLogs.Create(Dir, _time, before))
        {
            for (int i = 0; i < 10; i++) log.Append(Batches.Make(1, Now + i, tag: $"b{i}"));
            Assert.Equal(10, log.ActiveSegment.OffsetIndex.Count);
            if (clean) log.Close();
            else log.Crash();
        }
        // ... and reopened after segment.index.bytes was lowered to four entries.
        var after = TestLogs.Config((LogConfig.IndexIntervalBytesConfig, "0"), (LogConfig.SegmentIndexBytesConfig, "32"));
        using var reopened = TestLogs.Open(Dir, _time, after, recoveryPoint: clean ? 10 : 0, clean: clean);
        Assert.Equal(10, reopened.LogEndOffset);
        reopened.CommitAll();
        for (long o = 0; o < 10; o++)
            Assert.Equal(o, Batches.Headers(reopened.Read(o, 1, 10, true).Bytes()).Single().BaseOffset);
        Assert.Equal((7L, Now + 7), reopened.FindOffsetByTimestamp(Now + 7));
        // The full index rolls the segment at the next append.
        Assert.Equal(10, reopened.Append(Batches.Make(1, Now)).FirstOffset);
        Assert.Equal([0L, 10L], reopened.SegmentBases());
    }

    [Fact]
    public void A_multi_batch_append_that_fills_the_offset_index_midway_is_stored_whole()
    {
        // Two offset index entries (one time index entry), every batch indexed; then three batches arrive at once.
        using var log = TestLogs.Create(Dir, _time, TestLogs.Config(
            (LogConfig.IndexIntervalBytesConfig, "0"), (LogConfig.SegmentIndexBytesConfig, "16")));
        log.Append(Batches.Make(1, Now, tag: "first"));
        var three = Batches.Make(2, Now, tag: "x").Concat(Batches.Make(2, Now, tag: "y")).Concat(Batches.Make(2, Now, tag: "z")).ToArray();
        var r = log.AppendAsLeader(three, 0, AppendOrigin.Coordinator);
        Assert.Equal((ErrorCode.None, 1L, 6L), (r.Error, r.FirstOffset, r.LastOffset));
        Assert.Equal(7, log.LogEndOffset);
        log.CommitAll();
        Assert.Equal(["first-0", "x-0", "x-1", "y-0", "y-1", "z-0", "z-1"], log.RecordsFrom(0).Select(x => x.Value));
        for (long o = 0; o < 7; o++)
            Assert.InRange(o - Batches.Headers(log.Read(o, 1, 7, true).Bytes()).Single().BaseOffset, 0, 1);
        // The one-entry time index was full after the first batch: the three went to a new segment, whose
        // offset index filled after two of them; the next append rolls.
        Assert.Equal([0L, 1L], log.SegmentBases());
        Assert.Equal(7, log.Append(Batches.Make(1, Now)).FirstOffset);
        Assert.Equal([0L, 1L, 7L], log.SegmentBases());
    }

    [Fact]
    public void Index_lookups_work_across_many_segments_before_and_after_a_restart()
    {
        long t0 = Now;
        List<StoredBatch> batches;
        using (var log = TestLogs.Create(Dir, _time, ManySegments.Config))
        {
            batches = ManySegments.Fill(log, t0);
            ManySegments.CheckLookups(log, batches, t0);
            log.Close();
        }
        using (var clean = TestLogs.Open(Dir, _time, ManySegments.Config, clean: true))
        {
            clean.CommitAll();
            Assert.Equal(batches, clean.BatchesFrom(0));
            ManySegments.CheckLookups(clean, batches, t0);
            clean.Crash();
        }
        // Unclean, from offset 0: every index rebuilt from the log.
        using var rebuilt = TestLogs.Open(Dir, _time, ManySegments.Config);
        rebuilt.CommitAll();
        ManySegments.CheckLookups(rebuilt, batches, t0);
    }

    [Fact]
    public void FindOffsetByTimestamp_finds_the_first_record_at_or_after_a_time()
    {
        long t = Now;
        using var log = TestLogs.Create(Dir, _time);
        log.Append(Batches.Make([t + 0, t + 10, t + 20]));  // 0-2
        log.Append(Batches.Make([t + 30, t + 40]));         // 3-4
        log.Roll();
        log.Append(Batches.Make([t + 100, t + 50, t + 60])); // 5-7: out of order inside the batch
        log.Append(Batches.Make([t + 70]));                  // 8
        log.CommitAll();

        Assert.Equal((0L, t), log.FindOffsetByTimestamp(t - 5_000));   // before everything: the first record
        Assert.Equal((0L, t), log.FindOffsetByTimestamp(t));
        Assert.Equal((2L, t + 20), log.FindOffsetByTimestamp(t + 15)); // a record inside a batch
        Assert.Equal((2L, t + 20), log.FindOffsetByTimestamp(t + 20));
        Assert.Equal((3L, t + 30), log.FindOffsetByTimestamp(t + 21));
        Assert.Equal((5L, t + 100), log.FindOffsetByTimestamp(t + 41)); // the first record at or after 41 is 5 (t+100)
        Assert.Equal((5L, t + 100), log.FindOffsetByTimestamp(t + 100));
        Assert.Null(log.FindOffsetByTimestamp(t + 101));                // after everything

        // Records above the high watermark are invisible; so are those below the log start.
        log.UpdateHighWatermark(5, force: true);
        Assert.Null(log.FindOffsetByTimestamp(t + 41));
        Assert.Equal((4L, t + 40), log.FindOffsetByTimestamp(t + 35));
        log.CommitAll();
        Assert.Equal(ErrorCode.None, log.DeleteRecordsBefore(2, out _));
        Assert.Equal((2L, t + 20), log.FindOffsetByTimestamp(t - 5_000));
    }

    [Fact]
    public void FindMaxTimestamp_returns_the_first_record_with_the_largest_timestamp()
    {
        long t = Now;
        var config = TestLogs.Config((LogConfig.IndexIntervalBytesConfig, "0"));
        using (var log = TestLogs.Create(Dir, _time, config))
        {
            Assert.Null(log.FindMaxTimestamp());
            log.Append(Batches.Make([t + 5, t + 50, t + 7])); // 0-2: the max is offset 1, inside the batch
            log.Append(Batches.Make([t + 20]));               // 3
            log.Roll();
            log.Append(Batches.Make([t + 30, t + 50]));       // 4-5: a tie comes later
            log.Append(Batches.Make([t + 40]));               // 6
            Assert.Null(log.FindMaxTimestamp());              // nothing below the high watermark yet
            log.CommitAll();
            Assert.Equal((1L, t + 50), log.FindMaxTimestamp());
            log.Close();
        }
        using (var clean = TestLogs.Open(Dir, _time, config, clean: true))
        {
            clean.CommitAll();
            Assert.Equal((1L, t + 50), clean.FindMaxTimestamp());
            clean.Crash();
        }
        using var recovered = TestLogs.Open(Dir, _time, config);
        recovered.CommitAll();
        Assert.Equal((1L, t + 50), recovered.FindMaxTimestamp());
    }

    [Fact]
    public void The_largest_timestamp_is_restored_from_batches_past_the_last_index_entry()
    {
        // Default index.interval.bytes: only the first batch of the segment is indexed.
        long t = Now;
        using (var log = TestLogs.Create(Dir, _time))
        {
            log.Append(Batches.Make([t + 1]));
            log.Append(Batches.Make([t + 9, t + 3]));
            log.Append(Batches.Make([t + 2]));
            Assert.Equal(1, log.ActiveSegment.OffsetIndex.Count);
            log.Close();
        }
        using var clean = TestLogs.Open(Dir, _time, clean: true);
        clean.CommitAll();
        Assert.Equal((t + 9, 2L), (clean.ActiveSegment.MaxTimestamp, clean.ActiveSegment.OffsetOfMaxTimestamp));
        Assert.Equal((1L, t + 9), clean.FindMaxTimestamp());
        Assert.Equal((1L, t + 9), clean.FindOffsetByTimestamp(t + 4));
    }
}
