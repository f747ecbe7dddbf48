using System.IO.Hashing;

namespace Freshet.Storage.Cleaner;

/// <summary>
/// The cleaner's key -> latest offset map over a log's dirty section (what Kafka calls the dedupe
/// buffer). Keys are not stored: each is reduced to a 128-bit xxHash, so an entry costs 24 bytes
/// (hash 16, offset 8) whatever the key's size, and log.cleaner.dedupe.buffer.size bytes hold
/// size / 24 slots. Two keys sharing a hash would lose the older one's record; at 128 bits that is
/// far less likely than a disk error. Open addressing with linear probing; the map takes at most
/// <see cref="MaxEntries"/> keys (slots x load factor), after which the cleaner stops adding and
/// cleans only as far as the map reached.
/// </summary>
internal sealed class OffsetMap
{
    /// <summary>Bytes one slot stands for (hash and offset), to size the map from the buffer size.</summary>
    public const int BytesPerEntry = 24;

    private UInt128[] _hashes = [];
    private long[] _offsets = []; // -1: empty slot
    private int _slots;

    /// <summary>Distinct keys in the map.</summary>
    public int Count { get; private set; }

    /// <summary>Keys the map may take before it counts as full.</summary>
    public int MaxEntries { get; private set; }

    /// <summary>
    /// Empties the map and sizes it for <paramref name="expectedEntries"/> keys, within
    /// <paramref name="maxSlots"/> slots (the dedupe buffer). Arrays are reused when large enough.
    /// </summary>
    public void Reset(long expectedEntries, long maxSlots, double loadFactor)
    {
        long wanted = (long)Math.Ceiling(Math.Max(1, expectedEntries) / loadFactor) + 1;
        int slots = (int)Math.Clamp(Math.Min(wanted, maxSlots), 2, Array.MaxLength);
        if (_offsets.Length < slots)
        {
            _hashes = new UInt128[slots];
            _offsets = new long[slots];
        }
        _slots = slots;
        _offsets.AsSpan(0, slots).Fill(-1);
        Count = 0;
        MaxEntries = Math.Max(1, (int)Math.Min(slots - 1, (long)(slots * loadFactor)));
    }

    public static UInt128 Hash(ReadOnlySpan<byte> key) => XxHash128.HashToUInt128(key);

    /// <summary>Sets the key's offset (later offsets are put after earlier ones, so the last put wins).</summary>
    public void Put(UInt128 hash, long offset)
    {
        int i = Slot(hash);
        while (true)
        {
            if (_offsets[i] < 0)
            {
                _hashes[i] = hash;
                _offsets[i] = offset;
                Count++;
                return;
            }
            if (_hashes[i] == hash)
            {
                _offsets[i] = offset;
                return;
            }
            if (++i == _slots) i = 0;
        }
    }

    /// <summary>The key's latest offset in the dirty section, or -1 when it has none there.</summary>
    public long Get(UInt128 hash)
    {
        int i = Slot(hash);
        while (true)
        {
            long o = _offsets[i];
            if (o < 0) return -1;
            if (_hashes[i] == hash) return o;
            if (++i == _slots) i = 0;
        }
    }

    private int Slot(UInt128 hash) => (int)((ulong)(hash >> 64) % (uint)_slots);

    /// <summary>Lets go of the arrays when they are larger than <paramref name="keepBytes"/> (a big one-off cleaning).</summary>
    public void Trim(long keepBytes)
    {
        if ((long)_offsets.Length * BytesPerEntry <= keepBytes) return;
        _hashes = [];
        _offsets = [];
        _slots = 0;
        Count = 0;
        MaxEntries = 0;
    }
}
