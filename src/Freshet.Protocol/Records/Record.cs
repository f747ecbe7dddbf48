namespace Freshet.Protocol.Records;

/// <summary>
/// One record of a v2 batch, as slices of the (decompressed) records section:
/// <code>
/// length varint | attributes int8 | timestampDelta varlong | offsetDelta varint |
/// keyLength varint (-1 = null) | key | valueLength varint (-1 = null) | value |
/// headerCount varint | headers: (keyLength varint | key utf8 | valueLength varint (-1 = null) | value)*
/// </code>
/// </summary>
public readonly ref struct Record
{
    public Record(sbyte attributes, long timestampDelta, int offsetDelta, ReadOnlySpan<byte> key, bool keyIsNull,
        ReadOnlySpan<byte> value, bool valueIsNull, int headerCount, ReadOnlySpan<byte> headers)
    {
        Attributes = attributes;
        TimestampDelta = timestampDelta;
        OffsetDelta = offsetDelta;
        Key = key;
        KeyIsNull = keyIsNull;
        Value = value;
        ValueIsNull = valueIsNull;
        HeaderCount = headerCount;
        HeaderBytes = headers;
    }

    public sbyte Attributes { get; }
    public long TimestampDelta { get; }
    public int OffsetDelta { get; }
    public ReadOnlySpan<byte> Key { get; }
    public bool KeyIsNull { get; }
    public ReadOnlySpan<byte> Value { get; }
    public bool ValueIsNull { get; }
    public int HeaderCount { get; }

    /// <summary>The encoded headers (after the count); iterate with <see cref="Headers"/>.</summary>
    public ReadOnlySpan<byte> HeaderBytes { get; }

    public HeaderReader Headers => new(HeaderBytes, HeaderCount);
}

/// <summary>A record header: key (UTF-8) and value (null allowed).</summary>
public readonly ref struct RecordHeader(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, bool valueIsNull)
{
    public ReadOnlySpan<byte> Key { get; } = key;
    public ReadOnlySpan<byte> Value { get; } = value;
    public bool ValueIsNull { get; } = valueIsNull;
}

/// <summary>Iterates encoded headers. Malformed input ends the iteration with <see cref="IsValid"/> false.</summary>
public ref struct HeaderReader
{
    private readonly ReadOnlySpan<byte> _s;
    private int _pos;
    private int _left;

    public HeaderReader(ReadOnlySpan<byte> encoded, int count)
    {
        _s = encoded;
        _pos = 0;
        _left = count;
        IsValid = true;
    }

    public bool IsValid { get; private set; }

    public bool TryRead(out RecordHeader header)
    {
        header = default;
        if (_left <= 0 || !IsValid) return false;
        if (!Varint.TryReadVarInt(_s, ref _pos, out int kl) || kl < 0 || kl > _s.Length - _pos) return Fail();
        var key = _s.Slice(_pos, kl);
        _pos += kl;
        if (!Varint.TryReadVarInt(_s, ref _pos, out int vl) || vl < -1 || vl > _s.Length - _pos) return Fail();
        var value = vl < 0 ? default : _s.Slice(_pos, vl);
        _pos += Math.Max(vl, 0);
        _left--;
        header = new RecordHeader(key, value, vl < 0);
        return true;
    }

    private bool Fail()
    {
        IsValid = false;
        return false;
    }
}

/// <summary>
/// Iterates the records of an uncompressed (or decompressed) records section. Each record's
/// declared length is checked against its fields; any mismatch stops with <see cref="IsValid"/> false.
/// </summary>
public ref struct RecordReader
{
    private readonly ReadOnlySpan<byte> _s;
    private int _pos;

    public RecordReader(ReadOnlySpan<byte> records)
    {
        _s = records;
        _pos = 0;
        IsValid = true;
    }

    public bool IsValid { get; private set; }

    /// <summary>True once every byte has been consumed by whole records.</summary>
    public readonly bool AtEnd => _pos == _s.Length;

    public bool TryRead(out Record record)
    {
        record = default;
        if (!IsValid || _pos >= _s.Length) return false;
        if (!Varint.TryReadVarInt(_s, ref _pos, out int length) || length <= 0 || length > _s.Length - _pos) return Fail();
        int end = _pos + length;
        var r = _s[..end];
        int p = _pos;
        if (p >= end) return Fail();
        sbyte attributes = (sbyte)r[p++];
        if (!Varint.TryReadVarLong(r, ref p, out long tsDelta)) return Fail();
        if (!Varint.TryReadVarInt(r, ref p, out int offDelta)) return Fail();
        if (!Varint.TryReadVarInt(r, ref p, out int kl) || kl < -1 || kl > end - p) return Fail();
        var key = kl < 0 ? default : r.Slice(p, kl);
        p += Math.Max(kl, 0);
        if (!Varint.TryReadVarInt(r, ref p, out int vl) || vl < -1 || vl > end - p) return Fail();
        var value = vl < 0 ? default : r.Slice(p, vl);
        p += Math.Max(vl, 0);
        if (!Varint.TryReadVarInt(r, ref p, out int hc) || hc < 0) return Fail();
        // The headers must fill the rest of the record exactly.
        var headers = r[p..end];
        if (!HeadersEndExactly(headers, hc)) return Fail();
        _pos = end;
        record = new Record(attributes, tsDelta, offDelta, key, kl < 0, value, vl < 0, hc, headers);
        return true;
    }

    private static bool HeadersEndExactly(ReadOnlySpan<byte> s, int count)
    {
        int pos = 0;
        for (int i = 0; i < count; i++)
        {
            if (!Varint.TryReadVarInt(s, ref pos, out int kl) || kl < 0 || kl > s.Length - pos) return false;
            pos += kl;
            if (!Varint.TryReadVarInt(s, ref pos, out int vl) || vl < -1 || vl > s.Length - pos) return false;
            pos += Math.Max(vl, 0);
        }
        return pos == s.Length;
    }

    private bool Fail()
    {
        IsValid = false;
        return false;
    }
}
