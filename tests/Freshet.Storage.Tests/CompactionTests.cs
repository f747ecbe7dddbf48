using Freshet.Protocol;
using Freshet.Protocol.Records;
using Freshet.Storage.Cleaner;
using Freshet.Storage.Segments;
using Freshet.Storage.Tests.Support;
using Microsoft.Extensions.Logging.Abstractions;

namespace Freshet.Storage.Tests;

public sealed class CompactionTests : IDisposable
{
    private readonly TempDir _tmp = new();
    private readonly ManualTimeProvider _time = new();
    private readonly List<(LogSegment Segment, long DelayMs)> _scheduled = [];
    private string Dir => _tmp.Sub("orders-0");
    private long Now => _time.NowMs;

    public void Dispose()
    {
        foreach (var (s, _) in _scheduled) s.Dispose();
        _tmp.Dispose();
    }

    private LogCleaner NewCleaner(LogCleanerOptions? options = null) => new(options ?? new LogCleanerOptions(), _time, NullLogger.Instance);

    private static LogConfig Compacted(params (string Key, string Value)[] extra) =>
        TestLogs.Config([(LogConfig.CleanupPolicyConfig, "compact"), .. extra]);

    private PartitionLog Create(LogConfig config, string? dir = null) =>
        TestLogs.Create(dir ?? Dir, _time, config, scheduleDelete: (s, d) => _scheduled.Add((s, d)));

    private PartitionLog Open(LogConfig config, string? dir = null, bool clean = true) =>
        TestLogs.Open(dir ?? Dir, _time, config, clean: clean, scheduleDelete: (s, d) => _scheduled.Add((s, d)));

    private static void CheckOffsetsIncrease(List<KeyedRecord> records)
    {
        for (int i = 1; i < records.Count; i++) Assert.True(records[i].Offset > records[i - 1].Offset, $"offset {records[i].Offset} after {records[i - 1].Offset}");
    }

    /// <summary>Ten keys written six times over, two keys per batch, over several segments.</summary>
    private static Dictionary<string, KeyedRecord> FillTenKeysSixTimes(PartitionLog log, long t0)
    {
        var latest = new Dictionary<string, KeyedRecord>();
        for (int round = 0; round < 6; round++)
        {
            for (int k = 0; k < 10; k += 2)
            {
                long ts = t0 + round * 100 + k;
                var r = log.Append(KeyedBatches.Make([new($"k{k}", $"r{round}-k{k}", ts), new($"k{k + 1}", $"r{round}-k{k + 1}", ts + 1)]));
                latest[$"k{k}"] = new KeyedRecord(r.FirstOffset, ts, $"k{k}", $"r{round}-k{k}", "");
                latest[$"k{k + 1}"] = new KeyedRecord(r.FirstOffset + 1, ts + 1, $"k{k + 1}", $"r{round}-k{k + 1}", "");
            }
        }
        return latest;
    }

    [Fact]
    public void The_latest_value_of_every_key_survives_at_its_offset_and_older_values_go()
    {
        using var log = Create(Compacted((LogConfig.SegmentBytesConfig, "1024")));
        var latest = FillTenKeysSixTimes(log, Now);
        log.Roll();
        log.CommitAll();
        var before = log.KeyedRecords();
        long sizeBefore = log.Size, end = log.LogEndOffset;
        int segmentsBefore = log.Segments.Count;
        Assert.Equal(60, before.Count);
        Assert.True(log.Segments.Count >= 4, $"{log.Segments.Count} segments");
        var modified = new DateTime(2020, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        for (int i = 0; i < log.Segments.Count - 1; i++) File.SetLastWriteTimeUtc(log.Segments[i].LogPath, modified.AddMinutes(i));

        var r = NewCleaner().Clean(log);

        Assert.True(r.Cleaned);
        Assert.Equal((0L, end), (r.FirstDirtyOffset, r.EndOffset));
        Assert.Equal((60L, 10L), (r.RecordsRead, r.RecordsKept));
        var after = log.KeyedRecords();
        Assert.Equal(latest.Values.OrderBy(x => x.Offset), after);
        CheckOffsetsIncrease(after);
        Assert.All(after, a => Assert.Contains(a, before)); // same offset, timestamp, key and value as written
        Assert.Equal(KeyedBatches.Table(before), KeyedBatches.Table(after));
        Assert.Equal((0L, end, end), (log.LogStartOffset, log.LogEndOffset, log.CleanerCheckpoint));
        Assert.True(log.Size < sizeBefore / 4, $"{log.Size} of {sizeBefore} bytes left");
        // The cleaned output was merged into one segment (it fits segment.bytes); the active one stays.
        Assert.Equal([0L, end], log.SegmentBases());
        // It is as old as the newest of its sources (retention's fallback when batches have no timestamp).
        Assert.Equal(new DateTimeOffset(modified.AddMinutes(segmentsBefore - 2)).ToUnixTimeMilliseconds(), log.Segments[0].LastModifiedMs);
        Assert.DoesNotContain(TestLogs.Files(Dir), f => f.EndsWith(".cleaned", StringComparison.Ordinal) || f.EndsWith(".swap", StringComparison.Ordinal));
        Assert.Contains(TestLogs.Name(0, ".index"), TestLogs.Files(Dir, ".index"));
        Assert.All(TestLogs.Files(Dir, ".index"), f => Assert.True(f == TestLogs.Name(0, ".index") || f == TestLogs.Name(end, ".index"), f));
        Assert.All(_scheduled, s => Assert.Equal(60_000, s.DelayMs));
        Assert.Equal(segmentsBefore - 1, _scheduled.Count); // every source segment, all but the active one

        // A read at an offset that was removed gets the next batch still there.
        long gap = Enumerable.Range(0, (int)end).First(o => after.All(a => a.Offset != o));
        var batch = Batches.Headers(log.Read(gap, 1, log.HighWatermark, true).Bytes())[0];
        Assert.Equal(after.First(a => a.Offset > gap).Offset, batch.BaseOffset);

        // Nothing is dirty any more; the log goes on at its end.
        Assert.False(NewCleaner().Clean(log).Cleaned);
        Assert.Equal(end, log.Append(KeyedBatches.Make(Now, ("k0", "new"))).FirstOffset);
    }

    [Theory]
    [InlineData(CompressionType.None)]
    [InlineData(CompressionType.Gzip)]
    [InlineData(CompressionType.Snappy)]
    [InlineData(CompressionType.Lz4)]
    [InlineData(CompressionType.Zstd)]
    public void A_thinned_batch_keeps_its_codec_offsets_timestamps_headers_and_producer_fields(CompressionType codec)
    {
        long t = Now;
        using var log = Create(Compacted());
        log.Append(KeyedBatches.Make([new("a", "a1", t + 1), new("b", "b1", t + 2), new("a", "a2", t + 3), new("c", "c1", t + 4), new("d", "d1", t + 2)],
            codec, producerId: 7, epoch: 3, baseSequence: 10, header: "x"));
        log.Append(KeyedBatches.Make(t + 10, ("b", "b2")));
        log.Append(KeyedBatches.Make(t + 11, ("d", "d2"), ("e", "e1")));
        log.Roll();
        log.CommitAll();
        var rawBefore = log.RawBatches();

        Assert.True(NewCleaner().Clean(log).Cleaned);

        var raw = log.RawBatches();
        Assert.Equal(3, raw.Count);
        var first = new RecordBatch(raw[0]);
        Assert.True(first.IsCrcValid);
        Assert.Equal((0L, 4L, 2), (first.BaseOffset, first.LastOffset, first.RecordsCount)); // last offset kept: sequences stay whole
        Assert.Equal((codec, 7L, (short)3, 10, 14), (first.Compression, first.ProducerId, first.ProducerEpoch, first.BaseSequence, first.LastSequence));
        Assert.Equal((0, TimestampType.CreateTime, false), (first.PartitionLeaderEpoch, first.TimestampType, first.HasDeleteHorizon));
        Assert.Equal(t + 4, first.MaxTimestamp); // of the records left
        Assert.Equal(
            [new KeyedRecord(2, t + 3, "a", "a2", "h=x:a;"), new KeyedRecord(3, t + 4, "c", "c1", "h=x:c;")],
            KeyedBatches.Records(raw[0]));
        // Batches that keep every record are copied byte for byte.
        Assert.Equal(rawBefore[1], raw[1]);
        Assert.Equal(rawBefore[2], raw[2]);
        // And the log reads back whole, with the reader's view of the gaps.
        Assert.Equal(["a2", "c1", "b2", "d2", "e1"], log.KeyedRecords().Select(r => r.Value));
        Assert.Equal([2L, 3L, 5L, 6L, 7L], log.KeyedRecords().Select(r => r.Offset));
    }

    [Fact]
    public void Reads_and_lookups_by_time_work_across_cleaned_segments_with_gaps()
    {
        long t0 = Now;
        using var log = Create(Compacted((LogConfig.SegmentBytesConfig, "800"), (LogConfig.IndexIntervalBytesConfig, "100")));
        // Every third record has a key of its own; the others update two keys over and over.
        for (int i = 0; i < 300; i++)
        {
            string key = i % 3 == 0 ? $"unique-{i}" : $"dup-{i % 2}";
            log.Append(KeyedBatches.Make([new(key, $"v{i}", t0 + 10L * i)]));
        }
        log.Roll();
        log.CommitAll();
        long end = log.LogEndOffset;

        var r = NewCleaner().Clean(log);
        Assert.True(r.Cleaned);
        var kept = log.KeyedRecords().Select(x => x.Offset).ToList();
        var expected = Enumerable.Range(0, 300).Where(i => i % 3 == 0).Select(i => (long)i).Concat([298L, 299L]).Order().ToList();
        Assert.Equal(expected, kept);
        Assert.True(log.Segments.Count >= 6, $"{log.Segments.Count} segments"); // grouped into several cleaned segments
        Assert.True(r.SegmentsRead > r.SegmentsWritten);

        for (long o = 0; o < end; o++)
        {
            long next = kept.First(k => k >= o);
            var first = Batches.Headers(log.Read(o, 1, log.HighWatermark, true).Bytes())[0];
            Assert.Equal(next, first.BaseOffset);
            // The first record stamped at or after the time of a removed record is the next kept one.
            Assert.Equal((next, t0 + 10 * next), log.FindOffsetByTimestamp(t0 + 10 * o));
            Assert.Equal((next, t0 + 10 * next), log.FindOffsetByTimestamp(t0 + 10 * o - 5));
        }
        Assert.Null(log.FindOffsetByTimestamp(t0 + 10 * 299 + 1));
        Assert.Equal((299L, t0 + 2990), log.FindMaxTimestamp());

        // The cleaned segments' indexes were written: a clean restart loads them instead of rebuilding.
        log.Close();
        using var reopened = Open(log.Config);
        reopened.CommitAll();
        Assert.Equal(kept, reopened.KeyedRecords().Select(x => x.Offset));
        Assert.All(reopened.Segments.Take(reopened.Segments.Count - 1), s => Assert.True(s.OffsetIndex.Count > 0));
        Assert.Equal((150L, t0 + 1500), reopened.FindOffsetByTimestamp(t0 + 1491));
    }

    [Fact]
    public void Tombstones_are_kept_for_delete_retention_ms_after_their_first_cleaning_then_removed()
    {
        long t0 = Now;
        var config = Compacted((LogConfig.DeleteRetentionMsConfig, "10000"));
        var log = Create(config);
        log.Append(KeyedBatches.Make(t0, ("a", "a1"), ("b", "b1")));
        log.Append(KeyedBatches.Make(t0 + 5, ("a", null)));
        log.Roll();
        log.CommitAll();
        var cleaner = NewCleaner();

        _time.Advance(1000);
        Assert.True(cleaner.Clean(log).Cleaned);
        var records = log.KeyedRecords();
        Assert.Equal([new KeyedRecord(1, t0, "b", "b1", ""), new KeyedRecord(2, t0 + 5, "a", null, "")], records);
        // The tombstone's batch carries its delete horizon (bit 6, base timestamp); the record keeps its own timestamp.
        var tomb = new RecordBatch(log.RawBatches()[1]);
        Assert.True(tomb.HasDeleteHorizon);
        Assert.True(tomb.IsCrcValid);
        Assert.Equal((t0 + 1000 + 10_000, t0 + 5), (tomb.BaseTimestamp, tomb.MaxTimestamp));
        Assert.Equal((2L, t0 + 5), log.FindOffsetByTimestamp(t0 + 3));

        // Before the horizon nothing is due, and a forced cleaning keeps the tombstone.
        _time.Advance(9_999);
        var m = cleaner.Measure(log)!;
        Assert.Equal((0L, 0.0, false), (m.DirtyBytes, m.DirtyRatio, m.DeleteHorizonPassed));
        Assert.Null(cleaner.CleanFilthiest([log]));
        cleaner.Clean(log);
        Assert.Equal(2, log.KeyedRecords().Count);

        // A restart forgets the horizon in memory; the cleaner finds it again in the batch headers.
        log.Close();
        log = Open(config);
        log.CommitAll();
        Assert.False(cleaner.Measure(log)!.DeleteHorizonPassed);
        _time.Advance(2);
        Assert.True(cleaner.Measure(log)!.DeleteHorizonPassed);

        // Past the horizon the log is due although nothing is dirty, and the tombstone goes.
        var r = cleaner.CleanFilthiest([log]);
        Assert.NotNull(r);
        Assert.Equal(1, r.TombstonesRemoved);
        Assert.Equal([new KeyedRecord(1, t0, "b", "b1", "")], log.KeyedRecords());
        Assert.False(cleaner.Measure(log)!.DeleteHorizonPassed);
        Assert.Null(cleaner.CleanFilthiest([log]));

        // A log whose every record goes keeps its first segment (empty) so the log start does not move.
        log.Append(KeyedBatches.Make(Now, ("b", null)));
        log.Roll();
        log.CommitAll();
        cleaner.Clean(log);
        _time.Advance(10_001);
        Assert.Equal(1, cleaner.CleanFilthiest([log])!.TombstonesRemoved);
        Assert.Empty(log.KeyedRecords());
        Assert.Equal((0L, 4L), (log.LogStartOffset, log.LogEndOffset));
        Assert.Equal([0L, 4L], log.SegmentBases());
        Assert.Equal(0, log.Segments[0].Size);
        Assert.Equal(ErrorCode.None, log.Read(0, 1000, log.HighWatermark, true).Error);
        log.Close();
        using var reopened = Open(config);
        Assert.Equal((0L, 4L), (reopened.LogStartOffset, reopened.LogEndOffset));
    }

    [Fact]
    public void Segments_younger_than_min_compaction_lag_ms_are_not_cleaned()
    {
        long t0 = Now;
        using var log = Create(Compacted((LogConfig.MinCompactionLagMsConfig, "60000")));
        log.Append(KeyedBatches.Make(t0, ("a", "a1"), ("b", "b1")));
        log.Append(KeyedBatches.Make(t0, ("a", "a2")));
        log.Roll();
        _time.Advance(100_000);
        log.Append(KeyedBatches.Make(Now, ("a", "a3"), ("b", "b2")));
        log.Roll();
        log.CommitAll();
        var cleaner = NewCleaner();

        // The first segment is old enough, the second is not: only the first is cleaned, against itself.
        var m = cleaner.Measure(log)!;
        Assert.Equal((0L, 3L), (m.FirstDirtyOffset, m.FirstUncleanableOffset));
        var r = cleaner.Clean(log);
        Assert.Equal((true, 3L), (r.Cleaned, r.EndOffset));
        Assert.Equal(["b1", "a2", "a3", "b2"], log.KeyedRecords().Select(x => x.Value));

        _time.Advance(59_999);
        Assert.False(cleaner.Clean(log).Cleaned);
        _time.Advance(2);
        Assert.True(cleaner.Clean(log).Cleaned);
        Assert.Equal(["a3", "b2"], log.KeyedRecords().Select(x => x.Value));
    }

    [Fact]
    public void The_active_segment_and_anything_at_or_past_the_high_watermark_are_never_cleaned()
    {
        using var log = Create(Compacted());
        for (int i = 0; i < 5; i++) log.Append(KeyedBatches.Make(Now, ("a", $"a{i}")));
        log.CommitAll();
        var cleaner = NewCleaner();

        // Only the active segment: nothing to clean, whatever the duplicates.
        Assert.False(cleaner.Clean(log).Cleaned);
        Assert.Equal(5, log.KeyedRecords().Count);

        // Rolled, but the high watermark is inside the segment: still nothing.
        log.Roll();
        log.Append(KeyedBatches.Make(Now, ("a", "a5")));
        log.UpdateHighWatermark(3, force: true);
        Assert.Equal(0L, cleaner.Measure(log)!.FirstUncleanableOffset);
        Assert.False(cleaner.Clean(log).Cleaned);
        Assert.Equal(6, log.KeyedRecords().Count);

        // Once the whole segment is below the high watermark it is cleaned; a5 in the active segment
        // is in the map of nothing, so a4 stays as the latest of the cleanable part.
        log.UpdateHighWatermark(5);
        Assert.True(cleaner.Clean(log).Cleaned);
        Assert.Equal(["a4", "a5"], log.KeyedRecords().Select(x => x.Value));
        Assert.Equal(5, log.CleanerCheckpoint);
    }

    [Fact]
    public void Compact_delete_applies_both_compaction_and_time_retention()
    {
        long t0 = Now;
        using var log = Create(TestLogs.Config((LogConfig.CleanupPolicyConfig, "compact,delete"), (LogConfig.RetentionMsConfig, "50000")));
        var cleaner = NewCleaner();
        log.Append(KeyedBatches.Make(t0, ("a", "a1"), ("b", "b1"), ("c", "c1")));
        log.Append(KeyedBatches.Make(t0, ("b", "b2")));
        log.Roll();
        log.CommitAll();
        Assert.True(cleaner.Clean(log).Cleaned);
        Assert.Equal(["a1", "c1", "b2"], log.KeyedRecords().Select(x => x.Value));

        _time.Advance(30_000);
        log.Append(KeyedBatches.Make(Now, ("a", "a2"), ("d", "d1")));
        log.Append(KeyedBatches.Make(Now, ("d", "d2")));
        log.Roll();
        log.CommitAll();
        Assert.Equal(0, log.DeleteOldSegments(Now));

        // The first segment's newest record passes retention.ms: the segment goes, compacted or not.
        _time.Advance(30_000);
        Assert.Equal(1, log.DeleteOldSegments(Now));
        Assert.Equal(4, log.LogStartOffset);
        Assert.Equal(["a2", "d1", "d2"], log.KeyedRecords().Select(x => x.Value));

        // And compaction goes on over what is left.
        var m = cleaner.Measure(log)!;
        Assert.Equal((4L, 7L), (m.FirstDirtyOffset, m.FirstUncleanableOffset));
        Assert.True(cleaner.Clean(log).Cleaned);
        Assert.Equal(["a2", "d2"], log.KeyedRecords().Select(x => x.Value));
    }

    [Fact]
    public void Max_compaction_lag_ms_makes_a_log_due_whatever_its_dirty_ratio_and_rolls_the_active_segment()
    {
        var config = Compacted((LogConfig.MinCleanableDirtyRatioConfig, "0.9"), (LogConfig.MaxCompactionLagMsConfig, "60000"));
        using var log = Create(config);
        for (int i = 0; i < 50; i++) log.Append(KeyedBatches.Make(Now, ($"k{i}", "v")));
        log.Roll();
        log.CommitAll();
        var cleaner = NewCleaner();
        Assert.NotNull(cleaner.CleanFilthiest([log])); // first cleaning: everything dirty

        log.Append(KeyedBatches.Make(Now, ("k0", "w")));
        // The next append comes after max.compaction.lag.ms: the active segment rolls although segment.ms is a week.
        _time.Advance(60_001);
        long active = log.ActiveSegment.BaseOffset;
        log.Append(KeyedBatches.Make(Now, ("k1", "w")));
        Assert.NotEqual(active, log.ActiveSegment.BaseOffset);
        log.CommitAll();

        var m = cleaner.Measure(log)!;
        Assert.True(m.DirtyBytes > 0 && m.DirtyRatio < 0.9, $"ratio {m.DirtyRatio}");
        Assert.True(m.MaxCompactionLagExceeded);
        var r = cleaner.CleanFilthiest([log]);
        Assert.NotNull(r);
        Assert.Equal("w", log.KeyedRecords().Single(x => x.Key == "k0").Value);

        // A young dirty section below the ratio is left alone.
        log.Roll();
        log.CommitAll();
        Assert.False(cleaner.Measure(log)!.MaxCompactionLagExceeded);
        Assert.Null(cleaner.CleanFilthiest([log]));
    }

    [Fact]
    public void Readers_of_replaced_segments_keep_their_file_ranges_until_the_delayed_deletion()
    {
        using var log = Create(Compacted((LogConfig.SegmentBytesConfig, "1024")));
        FillTenKeysSixTimes(log, Now);
        log.Roll();
        log.CommitAll();
        var read = log.Read(0, 1 << 20, log.HighWatermark, true);
        var expected = read.Records!.ReadAll();

        Assert.True(NewCleaner().Clean(log).Cleaned);
        Assert.Equal(expected, read.Records!.ReadAll());
        Assert.Contains(TestLogs.Files(Dir), f => f == TestLogs.Name(0, ".log.deleted"));
        Assert.Contains(_scheduled, s => s.Segment.BaseOffset == 0 && s.Segment.LogPath.EndsWith(".deleted", StringComparison.Ordinal));
    }

    [Fact]
    public void A_full_dedupe_buffer_cleans_in_steps_and_ends_with_the_latest_value_of_every_key()
    {
        using var log = Create(Compacted((LogConfig.SegmentBytesConfig, "4096")));
        var latest = new Dictionary<string, string>();
        for (int round = 0; round < 3; round++)
        {
            for (int k = 0; k < 200; k++)
            {
                log.Append(KeyedBatches.Make(Now, ($"key-{k:D3}", $"r{round}")));
                latest[$"key-{k:D3}"] = $"r{round}";
            }
        }
        log.Roll();
        log.CommitAll();
        long end = log.LogEndOffset;
        // 64 slots: at most 57 keys per cleaning.
        var cleaner = NewCleaner(new LogCleanerOptions { DedupeBufferSize = 64 * 24 });
        int cleanings = 0;
        while (log.CleanerCheckpoint < end)
        {
            var r = cleaner.Clean(log);
            Assert.True(r.Cleaned);
            Assert.True(r.EndOffset - r.FirstDirtyOffset <= 57, $"{r.FirstDirtyOffset}..{r.EndOffset}");
            Assert.True(++cleanings < 50);
        }
        Assert.True(cleanings >= 10, $"{cleanings} cleanings");
        var records = log.KeyedRecords();
        Assert.Equal(200, records.Count);
        Assert.Equal(latest, KeyedBatches.Table(records));
    }

    [Fact]
    public void A_log_of_100000_commits_over_1000_keys_stays_bounded()
    {
        // What __consumer_offsets sees: one single-record batch per commit, keys reused over and over.
        const int keys = 1000, commits = 100_000;
        using var log = Create(Compacted((LogConfig.SegmentBytesConfig, "32768")));
        var cleaner = NewCleaner();
        static byte[] Commit(int i, long ts) =>
            KeyedBatches.Make([new KeyedInput($"group-{i % keys / 100:D2}/orders/{i % 100:D2}", $"offset={i:D8};metadata=", ts)]);
        int batchSize = Commit(0, Now).Length;
        long peak = 0;
        for (int i = 0; i < commits; i++)
        {
            log.Append(Commit(i, Now));
            if (i % 10_000 == 9_999)
            {
                log.CommitAll();
                cleaner.CleanFilthiest([log]);
                peak = Math.Max(peak, log.Size);
            }
        }
        log.Roll();
        log.CommitAll();
        cleaner.Clean(log);

        var records = log.KeyedRecords();
        Assert.Equal(keys, records.Count);
        Assert.All(records, r => Assert.Equal($"offset={r.Offset:D8};metadata=", r.Value));
        Assert.Equal(Enumerable.Range(commits - keys, keys).Select(i => (long)i), records.Select(r => r.Offset));
        // Exactly the 1000 latest commits are left, in a handful of segments.
        Assert.Equal((long)keys * batchSize, log.Size);
        Assert.InRange(log.Segments.Count, 2, 8);
        // Right after each cleaning it held the latest commit of every key and the active segment, no more.
        Assert.True(peak <= (long)(keys + 32768 / batchSize + 1) * batchSize, $"peak {peak} bytes");
        Assert.Equal(commits, log.LogEndOffset);
    }

    [Fact]
    public void The_last_batch_of_an_idempotent_producer_survives_as_an_empty_batch_and_its_state_with_it()
    {
        const long pid = 42;
        var config = Compacted();
        var log = Create(config);
        byte[] P(int seq, params (string Key, string? Value)[] records) =>
            KeyedBatches.Make(records.Select(r => new KeyedInput(r.Key, r.Value, Now)), producerId: pid, epoch: 1, baseSequence: seq);
        PartitionLog CrashWithoutSnapshots(PartitionLog l)
        {
            l.Close();
            foreach (var f in TestLogs.Files(Dir, ".snapshot")) File.Delete(Path.Combine(Dir, f));
            var reopened = Open(config, clean: false);
            reopened.CommitAll();
            return reopened;
        }
        log.Append(P(0, ("a", "a1"), ("b", "b1")));
        var last = P(2, ("a", "a2"));
        log.Append(last);
        log.Append(KeyedBatches.Make(Now, ("a", "a3")));
        log.Append(KeyedBatches.Make(Now, ("b", "b2")));
        log.Roll();
        log.CommitAll();

        var r = NewCleaner().Clean(log);
        Assert.Equal(1, r.EmptyBatchesKept);
        Assert.Equal(["a3", "b2"], log.KeyedRecords().Select(x => x.Value));
        var raw = log.RawBatches();
        Assert.Equal(3, raw.Count);
        var empty = new RecordBatch(raw[0]);
        Assert.True(empty.IsCrcValid);
        Assert.Equal((2L, 2L, 0, RecordBatch.HeaderSize), (empty.BaseOffset, empty.LastOffset, empty.RecordsCount, empty.SizeInBytes));
        Assert.Equal((pid, (short)1, 2, CompressionType.None), (empty.ProducerId, empty.ProducerEpoch, empty.BaseSequence, empty.Compression));

        // The producer's state, rebuilt from the log alone after a crash, still knows its last batch.
        log = CrashWithoutSnapshots(log);
        try
        {
            Assert.Equal((short)1, log.Producers.Get(pid)!.Epoch);
            var dup = log.Append(last);
            Assert.True(dup.IsDuplicate);
            Assert.Equal((2L, 2L), (dup.FirstOffset, dup.LastOffset));
            Assert.Equal(ErrorCode.OutOfOrderSequenceNumber, log.TryAppend(P(4, ("c", "x"))).Error);
            var appended = log.Append(P(3, ("c", "c1")));
            Assert.Equal((5L, false), (appended.FirstOffset, appended.IsDuplicate));

            // Once the producer has a later batch, the empty one goes at the next cleaning.
            log.Roll();
            log.CommitAll();
            Assert.Equal(0, NewCleaner().Clean(log).EmptyBatchesKept);
            Assert.DoesNotContain(log.RawBatches(), b => new RecordBatch(b).RecordsCount == 0);

            // Clean restart (snapshot), then another crash: the retried batch is still recognised.
            log.Close();
            log = Open(config);
            Assert.True(log.Append(P(3, ("c", "c1"))).IsDuplicate);
            log = CrashWithoutSnapshots(log);
            var again = log.Append(P(3, ("c", "c1")));
            Assert.Equal((5L, true), (again.FirstOffset, again.IsDuplicate));
            Assert.Equal(ErrorCode.OutOfOrderSequenceNumber, log.TryAppend(P(5, ("c", "x"))).Error);
            Assert.False(log.Append(P(4, ("c", "c2"))).IsDuplicate);
        }
        finally
        {
            log.Dispose();
        }
    }

    [Fact]
    public void A_client_batch_with_a_record_without_key_is_refused_by_a_compacted_topic()
    {
        using var log = Create(Compacted());
        var noKey = log.TryAppend(Batches.Make(1, Now));
        Assert.Equal(ErrorCode.InvalidRecord, noKey.Error);
        Assert.Contains("Compacted topic cannot accept message without key", noKey.ErrorMessage, StringComparison.Ordinal);

        using var mixed = new RecordBatchBuilder();
        mixed.Append(Now, "k"u8.ToArray(), "v"u8.ToArray());
        mixed.Append(Now, null, "v"u8.ToArray());
        Assert.Equal(ErrorCode.InvalidRecord, log.TryAppend(mixed.Build()).Error);
        Assert.Equal((0L, 0L), (log.LogEndOffset, log.Size));

        Assert.Equal(0, log.Append(KeyedBatches.Make(Now, ("k", "v"))).FirstOffset);
        // The rule is for clients; a delete topic takes null keys.
        Assert.Equal(ErrorCode.None, log.AppendAsLeader(Batches.Make(1, Now), 0, AppendOrigin.Coordinator).Error);
        log.Config = TestLogs.Config();
        Assert.Equal(ErrorCode.None, log.TryAppend(Batches.Make(1, Now)).Error);
    }

    [Fact]
    public async Task Appends_reads_and_log_start_moves_go_on_while_the_cleaner_rewrites()
    {
        // Record n is at offset n with value "seq-n": a reader can tell whether what it sees at an offset ever changed.
        const int keys = 50, total = 10_000;
        using var log = Create(Compacted((LogConfig.SegmentBytesConfig, "2048")));
        var cleaner = NewCleaner();
        using var stop = new CancellationTokenSource();
        int passes = 0, cleanings = 0;
        using var readerRunning = new CountdownEvent(2);
        Task Loop(Action body) => Task.Factory.StartNew(body, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        var writer = Loop(() =>
        {
            Assert.True(readerRunning.Wait(TimeSpan.FromSeconds(30)));
            for (int n = 0; n < total; n += 5)
            {
                log.Append(KeyedBatches.Make(Enumerable.Range(n, 5).Select(i => new KeyedInput($"k{i % keys}", $"seq-{i}", Now))));
                log.CommitAll();
            }
        });
        var reader = Loop(() =>
        {
            readerRunning.Signal();
            do
            {
                long previous = -1;
                var lastSeq = new Dictionary<string, long>();
                foreach (var r in log.KeyedRecords())
                {
                    Assert.True(r.Offset > previous);
                    Assert.Equal($"seq-{r.Offset}", r.Value);
                    Assert.True(!lastSeq.TryGetValue(r.Key, out long seen) || seen < r.Offset);
                    lastSeq[r.Key] = r.Offset;
                    previous = r.Offset;
                }
                passes++;
            }
            while (!stop.IsCancellationRequested);
        });
        var cleaning = Loop(() =>
        {
            readerRunning.Signal();
            do
            {
                if (cleaner.Clean(log).Cleaned) cleanings++;
            }
            while (!stop.IsCancellationRequested);
        });
        // Now and then the log start moves (DeleteRecords), taking segments from under the cleaner,
        // whose swap must then give up.
        var deleting = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await Task.Delay(20);
                long hw = log.HighWatermark;
                if (hw > 1_000) Assert.Equal(ErrorCode.None, log.DeleteRecordsBefore(hw - 500, out _));
            }
        });
        await writer.WaitAsync(TimeSpan.FromSeconds(60));
        stop.Cancel();
        await Task.WhenAll(reader, cleaning, deleting);
        Assert.True(passes > 0 && cleanings > 0, $"{passes} read passes, {cleanings} cleanings");

        log.Roll();
        log.CommitAll();
        cleaner.Clean(log);
        var records = log.KeyedRecords();
        Assert.Equal(Enumerable.Range(total - keys, keys).Select(i => (long)i), records.Select(r => r.Offset));
        Assert.All(records, r => Assert.Equal($"seq-{r.Offset}", r.Value));
    }

    [Fact]
    public void A_log_that_is_not_compacted_is_left_alone()
    {
        using var log = Create(TestLogs.Config());
        for (int i = 0; i < 3; i++) log.Append(KeyedBatches.Make(Now, ("a", $"a{i}")));
        log.Roll();
        log.CommitAll();
        var cleaner = NewCleaner();
        Assert.Null(cleaner.Measure(log));
        Assert.Null(cleaner.CleanFilthiest([log]));
        Assert.False(cleaner.Clean(log).Cleaned);
        Assert.Equal(3, log.KeyedRecords().Count);
    }
}
