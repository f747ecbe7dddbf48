namespace Freshet.Storage.Tests.Support;

/// <summary>A log spread over many small segments with sparse indexes, and the checks of every lookup over it.</summary>
public static class ManySegments
{
    /// <summary>~150 batches of 1-3 records over a dozen segments with sparse indexes; record j is stamped T + 10j.</summary>
    public static List<StoredBatch> Fill(PartitionLog log, long t0)
    {
        int record = 0;
        for (int i = 0; i < 150; i++)
        {
            int n = 1 + i % 3;
            var ts = Enumerable.Range(record, n).Select(j => t0 + 10L * j).ToArray();
            log.Append(Batches.Make(ts, tag: $"b{i}", valueSize: 40));
            record += n;
        }
        log.CommitAll();
        return log.BatchesFrom(0);
    }

    public static LogConfig Config => TestLogs.Config(
        (LogConfig.SegmentBytesConfig, "2000"), (LogConfig.IndexIntervalBytesConfig, "300"));

    /// <summary>Checks the sparse offset index of every segment and lookups by offset and by time over the whole log.</summary>
    public static void CheckLookups(PartitionLog log, List<StoredBatch> batches, long t0)
    {
        Assert.True(log.Segments.Count >= 10, $"{log.Segments.Count} segments");
        int maxBatch = batches.Max(b => b.Size);
        int sparse = 0;
        foreach (var seg in log.Segments)
        {
            long next = seg == log.ActiveSegment ? log.LogEndOffset : log.Segments[log.Segments.ToList().IndexOf(seg) + 1].BaseOffset;
            var inSeg = batches.Where(b => b.BaseOffset >= seg.BaseOffset && b.BaseOffset < next).ToList();
            var positions = new Dictionary<int, StoredBatch>();
            int p = 0;
            foreach (var b in inSeg) { positions[p] = b; p += b.Size; }
            Assert.Equal(p, seg.Size);

            var entries = new SortedSet<(long Offset, int Position)>();
            p = 0;
            foreach (var b in inSeg)
            {
                for (long o = b.BaseOffset; o <= b.LastOffset; o++)
                {
                    var (eo, ep) = seg.OffsetIndex.Lookup(o);
                    // The floor entry: at or before the offset, at the start of a batch whose last offset it names.
                    Assert.True(ep <= p && eo <= o, $"segment {seg.BaseOffset}: lookup({o}) = ({eo}, {ep}) is past batch at {p}");
                    Assert.True(positions.ContainsKey(ep), $"lookup({o}) position {ep} is not a batch boundary");
                    if (positions[ep].LastOffset == eo) entries.Add((eo, ep)); // an entry: (last offset of a batch, its position)
                    else Assert.Equal((seg.BaseOffset, 0), (eo, ep));          // before the first entry: the segment start
                }
                p += b.Size;
            }
            // Entries are index.interval.bytes (300) apart: more than that, by at most one batch.
            var list = entries.ToList();
            for (int i = 1; i < list.Count; i++)
            {
                int gap = list[i].Position - list[i - 1].Position;
                Assert.InRange(gap, 301, 300 + maxBatch);
            }
            Assert.Equal(list.Count, seg.OffsetIndex.Count);
            if (seg.OffsetIndex.Count < inSeg.Count) sparse++;
        }
        Assert.True(sparse >= log.Segments.Count - 1, "the offset indexes should be sparse");

        // Every offset reads back the batch holding it; every record's timestamp finds it exactly.
        foreach (var b in batches)
        {
            for (long o = b.BaseOffset; o <= b.LastOffset; o++)
            {
                var first = Batches.Headers(log.Read(o, 1, log.HighWatermark, true).Bytes()).Single();
                Assert.Equal((b.BaseOffset, b.LastOffset), (first.BaseOffset, first.LastOffset));
                Assert.Equal((o, t0 + 10 * o), log.FindOffsetByTimestamp(t0 + 10 * o));
                Assert.Equal((o, t0 + 10 * o), log.FindOffsetByTimestamp(t0 + 10 * o - 9));
            }
        }
        long end = log.LogEndOffset;
        Assert.Equal((0L, t0), log.FindOffsetByTimestamp(t0 - 1_000_000));
        Assert.Null(log.FindOffsetByTimestamp(t0 + 10 * (end - 1) + 1));
        Assert.Equal((end - 1, t0 + 10 * (end - 1)), log.FindMaxTimestamp());
    }
}
