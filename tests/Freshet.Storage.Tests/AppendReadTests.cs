using Freshet.Protocol;
using Freshet.Storage.Segments;
using Freshet.Storage.Tests.Support;

namespace Freshet.Storage.Tests;

public sealed class AppendReadTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly ManualTimeProvider _time = new();
    private string Dir => _tmp.Sub("orders-0");
    private long Now => _time.NowMs;

    public void Dispose() => _tmp.Dispose();

    [Fact]
    public void Batches_get_consecutive_offsets_and_read_back_whole()
    {
        using var log = TestLogs.Create(Dir, _time);
        var sizes = new List<int>();
        var results = new List<(long, long, int)>();
        int n = 0;
        foreach (int count in new[] { 3, 1, 5, 2 })
        {
            var batch = Batches.Make(count, Now, tag: $"b{n++}");
            sizes.Add(batch.Length);
            var r = log.Append(batch);
            results.Add((r.FirstOffset, r.LastOffset, r.RecordCount));
            Assert.Equal(r.LastOffset + 1, log.LogEndOffset);
        }

        Assert.Equal([(0L, 2L, 3), (3L, 3L, 1), (4L, 8L, 5), (9L, 10L, 2)], results);
        Assert.Equal(11, log.LogEndOffset);
        Assert.Equal(0, log.LogStartOffset);
        Assert.Equal(0, log.HighWatermark); // only the replica manager moves it
        Assert.Equal(sizes.Sum(), new FileInfo(TestLogs.SegmentPath(Dir, 0)).Length);
        Assert.Equal(sizes.Sum(), log.Size);

        var records = log.RecordsFrom(0);
        Assert.Equal(Enumerable.Range(0, 11).Select(i => (long)i), records.Select(r => r.Offset));
        Assert.Equal(["b0-0", "b0-1", "b0-2", "b1-0", "b2-0", "b2-1", "b2-2", "b2-3", "b2-4", "b3-0", "b3-1"], records.Select(r => r.Value));
        var headers = log.BatchesFrom(0);
        Assert.Equal([0L, 3L, 4L, 9L], headers.Select(h => h.BaseOffset));
        Assert.Equal(sizes, headers.Select(h => h.Size));
    }

    [Fact]
    public void A_read_from_the_middle_of_a_batch_returns_the_whole_batch()
    {
        using var log = TestLogs.Create(Dir, _time);
        for (int i = 0; i < 3; i++) log.Append(Batches.Make(5, Now, tag: $"b{i}"));
        log.CommitAll();

        var r = log.Read(7, 1 << 20, log.HighWatermark, minOneBatch: true);
        var headers = Batches.Headers(r.Bytes());
        Assert.Equal([(5L, 9L), (10L, 14L)], headers.Select(h => (h.BaseOffset, h.LastOffset)));
        Assert.Equal(headers[0].Size, r.Records!.Position); // starts at the second batch's first byte
        Assert.Equal((15L, 15L, 0L), (r.HighWatermark, r.LogEndOffset, r.LogStartOffset));

        var last = Batches.Headers(log.Read(14, 1 << 20, 15, true).Bytes());
        Assert.Equal([10L], last.Select(h => h.BaseOffset));

        // At the end of the log: nothing, and no error.
        var end = log.Read(15, 1 << 20, 15, true);
        Assert.Equal(ErrorCode.None, end.Error);
        Assert.Null(end.Records);
    }

    [Fact]
    public void Reads_continue_across_segment_boundaries()
    {
        int size = Batches.Make(2, Now).Length;
        using var log = TestLogs.Create(Dir, _time, TestLogs.Config((LogConfig.SegmentBytesConfig, (2 * size).ToString())));
        for (int i = 0; i < 9; i++) log.Append(Batches.Make(2, Now, tag: $"b{i}"));
        log.CommitAll();
        Assert.Equal([0L, 4L, 8L, 12L, 16L], log.SegmentBases());

        // A read returns the batches of one segment; the next read picks up in the next segment.
        var trace = new List<(long From, long First, long Last)>();
        long next = 0;
        while (next < log.LogEndOffset)
        {
            var h = Batches.Headers(log.Read(next, 1 << 20, log.HighWatermark, true).Bytes());
            trace.Add((next, h[0].BaseOffset, h[^1].LastOffset));
            next = h[^1].LastOffset + 1;
        }
        Assert.Equal([(0L, 0L, 3L), (4L, 4L, 7L), (8L, 8L, 11L), (12L, 12L, 15L), (16L, 16L, 17L)], trace);

        // From the last offset of a segment: that segment's last batch only.
        Assert.Equal([(2L, 3L)], Batches.Headers(log.Read(3, 1 << 20, 18, true).Bytes()).Select(h => (h.BaseOffset, h.LastOffset)));
        Assert.Equal(Enumerable.Range(0, 18).Select(i => (long)i), log.RecordsFrom(0).Select(r => r.Offset));
        Assert.Equal(Enumerable.Range(10, 8).Select(i => (long)i), log.RecordsFrom(11).Select(r => r.Offset)); // from batch 10-11 on
    }

    [Fact]
    public void MaxBytes_counts_whole_batches_and_minOneBatch_returns_an_oversized_first_batch()
    {
        using var log = TestLogs.Create(Dir, _time);
        for (int i = 0; i < 4; i++) log.Append(Batches.Make(2, Now, tag: $"b{i}"));
        log.CommitAll();
        int s = log.BatchesFrom(0)[0].Size;

        int Len(int maxBytes, bool minOne) => log.Read(0, maxBytes, 8, minOne).Records?.Length ?? -1;

        Assert.Equal(2 * s, Len(2 * s + s / 2, false)); // the third batch would not fit
        Assert.Equal(2 * s, Len(2 * s, false));         // exactly two fit
        Assert.Equal(s, Len(s, false));
        Assert.Equal(0, Len(s - 1, false));              // first batch too big: an empty result, not an error
        Assert.Equal(s, Len(s - 1, true));               // ... unless the consumer must progress
        Assert.Equal(s, Len(1, true));
        Assert.Equal(4 * s, Len(1 << 20, false));
        // Also from the middle of the log.
        var r = log.Read(5, s - 1, 8, true);
        Assert.Equal([4L], Batches.Headers(r.Bytes()).Select(h => h.BaseOffset));
    }

    [Fact]
    public void Reads_stop_at_the_high_watermark_and_followers_read_to_the_end()
    {
        using var log = TestLogs.Create(Dir, _time);
        for (int i = 0; i < 4; i++) log.Append(Batches.Make(2, Now, tag: $"b{i}"));
        Assert.True(log.UpdateHighWatermark(4));

        var consumer = log.Read(0, 1 << 20, log.HighWatermark, true);
        Assert.Equal([0L, 2L], Batches.Headers(consumer.Bytes()).Select(h => h.BaseOffset));
        Assert.Equal((4L, 8L), (consumer.HighWatermark, consumer.LogEndOffset));

        var atHw = log.Read(4, 1 << 20, log.HighWatermark, true);
        Assert.Equal(ErrorCode.None, atHw.Error);
        Assert.Null(atHw.Records);
        var pastHw = log.Read(5, 1 << 20, log.HighWatermark, true);
        Assert.Equal(ErrorCode.None, pastHw.Error);
        Assert.Null(pastHw.Records);

        var follower = log.Read(4, 1 << 20, log.LogEndOffset, true);
        Assert.Equal([4L, 6L], Batches.Headers(follower.Bytes()).Select(h => h.BaseOffset));

        // The high watermark never passes the end and never goes back unless forced.
        Assert.True(log.UpdateHighWatermark(100));
        Assert.Equal(8, log.HighWatermark);
        Assert.False(log.UpdateHighWatermark(2));
        Assert.Equal(8, log.HighWatermark);
        Assert.True(log.UpdateHighWatermark(2, force: true));
        Assert.Equal(2, log.HighWatermark);
    }

    [Fact]
    public void Offsets_below_the_log_start_or_past_the_end_are_out_of_range()
    {
        int size = Batches.Make(2, Now).Length;
        using var log = TestLogs.Create(Dir, _time, TestLogs.Config((LogConfig.SegmentBytesConfig, (2 * size).ToString())));
        for (int i = 0; i < 5; i++) log.Append(Batches.Make(2, Now));
        log.CommitAll();
        Assert.Equal(ErrorCode.None, log.DeleteRecordsBefore(5, out long start));
        Assert.Equal(5, start);

        var below = log.Read(4, 1 << 20, 10, true);
        Assert.Equal((ErrorCode.OffsetOutOfRange, 5L, 10L), (below.Error, below.LogStartOffset, below.LogEndOffset));
        Assert.Null(below.Records);
        Assert.Equal(ErrorCode.OffsetOutOfRange, log.Read(-1, 1 << 20, 10, true).Error);
        Assert.Equal(ErrorCode.OffsetOutOfRange, log.Read(0, 1 << 20, 10, true).Error);
        Assert.Equal(ErrorCode.OffsetOutOfRange, log.Read(11, 1 << 20, 10, true).Error);
        Assert.Equal(ErrorCode.OffsetOutOfRange, log.Read(long.MaxValue, 1 << 20, 10, true).Error);

        // The log start is inside batch 4..5: a read from it returns that whole batch.
        Assert.Equal([4L, 6L], Batches.Headers(log.Read(5, 1 << 20, 10, true).Bytes()).Select(h => h.BaseOffset));
        Assert.Equal(ErrorCode.None, log.Read(10, 1 << 20, 10, true).Error);
    }

    [Fact]
    public void Invalid_appends_store_nothing()
    {
        int size = Batches.Make(1, Now).Length;
        using var log = TestLogs.Create(Dir, _time, TestLogs.Config(
            (LogConfig.SegmentBytesConfig, (3 * size).ToString()),
            (LogConfig.MaxMessageBytesConfig, (2 * size).ToString())));
        log.Append(Batches.Make(1, Now));

        Assert.Equal(ErrorCode.RecordListTooLarge, log.TryAppend(Batches.Make(1, Now, valueSize: 4 * size)).Error);
        Assert.Equal(ErrorCode.MessageTooLarge, log.TryAppend(Batches.Make(1, Now, valueSize: 2 * size)).Error);
        var corrupt = Batches.Make(2, Now);
        corrupt[^1] ^= 0xFF;
        Assert.Equal(ErrorCode.CorruptMessage, log.TryAppend(corrupt).Error);
        Assert.Equal(ErrorCode.CorruptMessage, log.TryAppend([]).Error);
        // A valid batch followed by garbage: all or nothing.
        var twoThirds = Batches.Make(1, Now).Concat(new byte[20]).ToArray();
        Assert.Equal(ErrorCode.CorruptMessage, log.TryAppend(twoThirds).Error);

        Assert.Equal(1, log.LogEndOffset);
        Assert.Equal(size, new FileInfo(TestLogs.SegmentPath(Dir, 0)).Length);
        Assert.Equal(1, log.Append(Batches.Make(1, Now)).FirstOffset);
    }

    [Fact]
    public void A_log_reopened_after_a_clean_close_continues_where_it_ended()
    {
        int size = Batches.Make(2, Now).Length;
        var config = TestLogs.Config((LogConfig.SegmentBytesConfig, (3 * size).ToString()));
        using (var log = TestLogs.Create(Dir, _time, config))
        {
            for (int i = 0; i < 7; i++) log.Append(Batches.Make(2, Now, tag: $"b{i}"));
            log.Close();
            Assert.Equal(14, log.RecoveryPoint);
        }
        foreach (var suffix in new[] { LogSegment.LogSuffix, LogSegment.IndexSuffix, LogSegment.TimeIndexSuffix })
            Assert.Equal([TestLogs.Name(0, suffix), TestLogs.Name(6, suffix), TestLogs.Name(12, suffix)], TestLogs.Files(Dir, suffix));
        Assert.Contains(PartitionMetadataFile.FileName, TestLogs.Files(Dir));

        using var reopened = TestLogs.Open(Dir, _time, config, recoveryPoint: 14, clean: true);
        Assert.Equal((0L, 14L, 14L), (reopened.LogStartOffset, reopened.LogEndOffset, reopened.RecoveryPoint));
        Assert.Equal(TestLogs.TopicId, reopened.TopicId);
        Assert.Equal([0L, 6L, 12L], reopened.SegmentBases());
        Assert.Equal(14, reopened.Append(Batches.Make(1, Now, tag: "after")).FirstOffset);
        reopened.CommitAll();
        var values = reopened.RecordsFrom(0).Select(r => r.Value).ToList();
        Assert.Equal(15, values.Count);
        Assert.Equal("b0-0", values[0]);
        Assert.Equal("after-0", values[^1]);
        Assert.IsType<FileRecords>(reopened.Read(0, 100, 15, true).Records);
    }
}
