using Freshet.Protocol;
using Freshet.Protocol.Records;
using Freshet.Storage.Producers;
using Freshet.Storage.Tests.Support;

namespace Freshet.Storage.Tests;

public sealed class ProducerStateTests : IDisposable
{
    private const long Pid = 4000;
    private const long OtherPid = 5000;

    private readonly TempDir _tmp = new();
    private readonly ManualTimeProvider _time = new();
    private string Dir => _tmp.Sub("orders-0");
    private long Now => _time.NowMs;

    public void Dispose() => _tmp.Dispose();

    private byte[] P(int seq, int count = 1, short epoch = 0, long pid = Pid) => Batches.Idempotent(pid, epoch, seq, count, Now);

    private List<long> Snapshots() => TestLogs.Files(Dir, ProducerStateManager.SnapshotSuffix)
        .Select(f => long.Parse(f[..20], System.Globalization.CultureInfo.InvariantCulture)).ToList();

    [Fact]
    public void A_retried_batch_is_answered_with_its_original_offsets_and_not_stored_again()
    {
        using var log = TestLogs.Create(Dir, _time);
        var first = P(0, 3);
        Assert.Equal((0L, 2L, false), Result(log.Append(first)));
        Assert.Equal((3L, 4L, false), Result(log.Append(P(3, 2))));
        log.Append(Batches.Make(1, Now)); // not idempotent: 5
        long size = log.Size;

        Assert.Equal((0L, 2L, true), Result(log.Append(first)));
        Assert.Equal((3L, 4L, true), Result(log.Append(P(3, 2))));
        Assert.Equal(6, log.LogEndOffset);
        Assert.Equal(size, log.Size);
        Assert.Equal((6L, 6L, false), Result(log.Append(P(5))));

        static (long, long, bool) Result(LogAppendResult r) => (r.FirstOffset, r.LastOffset, r.IsDuplicate);
    }

    [Fact]
    public void A_sequence_gap_is_out_of_order_and_stores_nothing()
    {
        using var log = TestLogs.Create(Dir, _time);
        log.Append(P(0, 5));
        Assert.Equal(ErrorCode.OutOfOrderSequenceNumber, log.TryAppend(P(6)).Error);
        Assert.Equal(ErrorCode.OutOfOrderSequenceNumber, log.TryAppend(P(3)).Error); // overlaps, but not a batch we have
        Assert.Equal(5, log.LogEndOffset);
        Assert.Equal(5, log.Append(P(5)).FirstOffset);
        Assert.Equal(5, log.Producers.Get(Pid)!.LastSequence);
    }

    [Fact]
    public void An_older_epoch_is_fenced_and_a_bumped_epoch_restarts_at_sequence_zero()
    {
        using var log = TestLogs.Create(Dir, _time);
        log.Append(P(0, 2, epoch: 3));
        Assert.Equal(ErrorCode.InvalidProducerEpoch, log.TryAppend(P(2, epoch: 2)).Error);
        Assert.Equal(ErrorCode.OutOfOrderSequenceNumber, log.TryAppend(P(2, epoch: 4)).Error); // a new epoch must start at 0
        Assert.Equal(2, log.LogEndOffset);

        var bumped = P(0, 1, epoch: 4);
        Assert.Equal(2, log.Append(bumped).FirstOffset);
        Assert.Equal((short)4, log.Producers.Get(Pid)!.Epoch);
        Assert.Equal(ErrorCode.InvalidProducerEpoch, log.TryAppend(P(2, epoch: 3)).Error); // the old epoch is now fenced
        var dup = log.Append(bumped);
        Assert.True(dup.IsDuplicate);
        Assert.Equal(2, dup.FirstOffset);
        Assert.Equal(3, log.Append(P(1, epoch: 4)).FirstOffset);
        Assert.Equal(4, log.LogEndOffset);
    }

    [Fact]
    public void Only_the_last_five_batches_of_a_producer_are_recognised_as_duplicates()
    {
        using var log = TestLogs.Create(Dir, _time);
        var batches = Enumerable.Range(0, 6).Select(i => P(i)).ToList();
        foreach (var b in batches) log.Append(b);

        for (int i = 1; i < 6; i++)
        {
            var r = log.Append(batches[i]);
            Assert.True(r.IsDuplicate, $"seq {i}");
            Assert.Equal(i, r.FirstOffset);
        }
        Assert.Equal(ErrorCode.OutOfOrderSequenceNumber, log.TryAppend(batches[0]).Error);
        Assert.Equal(6, log.LogEndOffset);
    }

    [Fact]
    public void Producers_are_tracked_independently()
    {
        using var log = TestLogs.Create(Dir, _time);
        log.Append(P(0, 2));
        log.Append(P(0, 1, pid: OtherPid));
        log.Append(P(2));
        Assert.Equal(2, log.Append(P(0, 1, pid: OtherPid)).FirstOffset);
        Assert.Equal(4, log.Append(P(1, 1, pid: OtherPid)).FirstOffset);
        Assert.Equal((2, 1), (log.Producers.Get(Pid)!.LastSequence, log.Producers.Get(OtherPid)!.LastSequence));
    }

    [Fact]
    public void Snapshots_are_taken_at_roll_and_close_and_reloaded_on_open()
    {
        byte[] last;
        using (var log = TestLogs.Create(Dir, _time))
        {
            log.Append(P(0, 2));
            log.Roll();
            Assert.Equal([2L], Snapshots());
            log.Append(P(2));
            log.Roll();
            log.Append(P(3, 2));
            log.Roll();
            Assert.Equal([3L, 5L], Snapshots()); // only the two newest are kept
            last = P(5, 3);
            log.Append(last); // 5-7
            log.Close();
            Assert.Equal([5L, 8L], Snapshots());
        }
        using var reopened = TestLogs.Open(Dir, _time, recoveryPoint: 8, clean: true);
        var e = reopened.Producers.Get(Pid)!;
        Assert.Equal(((short)0, 7, 7L), (e.Epoch, e.LastSequence, e.LastOffset));
        var dup = reopened.Append(last);
        Assert.Equal((true, 5L, 7L), (dup.IsDuplicate, dup.FirstOffset, dup.LastOffset));
        Assert.Equal(ErrorCode.OutOfOrderSequenceNumber, reopened.TryAppend(P(9)).Error);
        Assert.Equal(8, reopened.Append(P(8)).FirstOffset);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void After_a_crash_the_state_is_rebuilt_from_the_latest_snapshot_and_the_log_after_it(bool keepSnapshots)
    {
        byte[] lastOfPid, lastOfOther;
        using (var log = TestLogs.Create(Dir, _time))
        {
            for (int i = 0; i < 5; i++) log.Append(P(i));      // 0-4
            log.Roll();                                          // snapshot at 5
            log.Append(P(0, 2, pid: OtherPid));                  // 5-6
            lastOfOther = P(2, 1, pid: OtherPid);
            log.Append(lastOfOther);                             // 7
            lastOfPid = P(5, 2);
            log.Append(lastOfPid);                               // 8-9
            log.Crash();
        }
        Assert.Equal([5L], Snapshots());
        if (!keepSnapshots) File.Delete(ProducerStateManager.SnapshotPath(Dir, 5));

        using var reopened = TestLogs.Open(Dir, _time);
        Assert.Equal(10, reopened.LogEndOffset);
        var e = reopened.Producers.Get(Pid)!;
        Assert.Equal((6, 9L), (e.LastSequence, e.LastOffset));
        // From the snapshot only the last batch before it is known; replaying the whole log gives all five.
        Assert.Equal(keepSnapshots ? 2 : 5, e.Batches.Count);
        Assert.Equal((2, 7L), (reopened.Producers.Get(OtherPid)!.LastSequence, reopened.Producers.Get(OtherPid)!.LastOffset));

        var dup = reopened.Append(lastOfPid);
        Assert.Equal((true, 8L, 9L), (dup.IsDuplicate, dup.FirstOffset, dup.LastOffset));
        dup = reopened.Append(P(4));
        Assert.Equal((true, 4L), (dup.IsDuplicate, dup.FirstOffset));
        dup = reopened.Append(lastOfOther);
        Assert.Equal((true, 7L), (dup.IsDuplicate, dup.FirstOffset));
        Assert.Equal(ErrorCode.OutOfOrderSequenceNumber, reopened.TryAppend(P(8)).Error);
        Assert.Equal(10, reopened.Append(P(7)).FirstOffset);
    }

    [Fact]
    public void Snapshots_past_the_end_of_a_recovered_log_are_discarded()
    {
        int s = P(0).Length;
        using (var log = TestLogs.Create(Dir, _time))
        {
            for (int i = 0; i < 5; i++) log.Append(P(i)); // 0-4
            log.Roll();                                     // snapshot 5
            for (int i = 5; i < 8; i++) log.Append(P(i)); // 5-7
            log.Roll();                                     // snapshot 8
            log.Append(P(8));                               // 8
            log.Crash();
        }
        Assert.Equal([5L, 8L], Snapshots());
        // Offset 3 is damaged: the log ends at 3 (sequences 0-2) and the later segments go.
        TestLogs.CorruptByte(TestLogs.SegmentPath(Dir, 0), 3 * s + RecordBatch.RecordsOffset + 2);
        byte[] lastOfOther;
        using (var log = TestLogs.Open(Dir, _time))
        {
            Assert.Equal(3, log.LogEndOffset);
            Assert.Equal(2, log.Producers.Get(Pid)!.LastSequence);
            Assert.DoesNotContain(Snapshots(), o => o > 3); // they describe batches that are gone

            // Another producer writes 3-7, then a crash again.
            for (int i = 0; i < 4; i++) log.Append(P(i, pid: OtherPid));
            lastOfOther = P(4, pid: OtherPid);
            log.Append(lastOfOther);
            log.Crash();
        }
        using var again = TestLogs.Open(Dir, _time);
        Assert.Equal(8, again.LogEndOffset);
        Assert.Equal(2, again.Producers.Get(Pid)!.LastSequence);
        Assert.Equal(4, again.Producers.Get(OtherPid)!.LastSequence);
        var dup = again.Append(lastOfOther);
        Assert.Equal((true, 7L), (dup.IsDuplicate, dup.FirstOffset));
        Assert.Equal(8, again.Append(P(3)).FirstOffset);
    }

    [Fact]
    public void Idle_producers_expire_after_producer_id_expiration_ms()
    {
        var options = new LogOptions { ProducerIdExpirationMs = 60_000 };
        using (var log = TestLogs.Create(Dir, _time, options: options))
        {
            log.Append(P(0, 3));
            _time.Advance(30_000);
            log.Append(P(0, 1, pid: OtherPid));
            _time.Advance(29_999);
            Assert.Equal(0, log.RemoveExpiredProducers(Now));
            _time.Advance(1);
            Assert.Equal(1, log.RemoveExpiredProducers(Now)); // 60 s since Pid's last batch
            Assert.Null(log.Producers.Get(Pid));
            Assert.NotNull(log.Producers.Get(OtherPid));

            // Forgotten: any sequence starts it again, and the old batch is no longer a duplicate.
            Assert.Equal(4, log.Append(P(0, 3)).FirstOffset);
            _time.Advance(60_000);
            Assert.Equal(2, log.RemoveExpiredProducers(Now));
            Assert.Equal(7, log.Append(P(42)).FirstOffset);
            log.Close();
        }
        using var reopened = TestLogs.Open(Dir, _time, recoveryPoint: 8, clean: true, options: options);
        Assert.Equal([Pid], reopened.Producers.Producers.Keys);
        Assert.Equal(42, reopened.Producers.Get(Pid)!.LastSequence);
    }

    [Fact]
    public void Producers_whose_batches_all_fall_below_the_log_start_are_forgotten()
    {
        using var log = TestLogs.Create(Dir, _time);
        log.Append(P(0, 2));                    // 0-1
        log.Append(P(0, 1, pid: OtherPid));     // 2
        log.Append(Batches.Make(1, Now));       // 3
        log.CommitAll();
        Assert.Equal(ErrorCode.None, log.DeleteRecordsBefore(2, out _));
        Assert.Null(log.Producers.Get(Pid));
        Assert.NotNull(log.Producers.Get(OtherPid));
        Assert.Equal(4, log.Append(P(17)).FirstOffset); // no state left: any sequence is accepted
    }
}
