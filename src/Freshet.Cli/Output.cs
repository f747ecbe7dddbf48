using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Freshet.Cli;

/// <summary>How a command prints its result: an aligned table for people, JSON for scripts.</summary>
public enum OutputFormat
{
    Table,
    Json,
}

/// <summary>Output helpers shared by the client commands: tables, JSON, and bytes shown as text.</summary>
public static class Output
{
    /// <summary>
    /// Relaxed escaping: the output goes to a terminal or a pipe, not into HTML, so non-ASCII text
    /// stays readable instead of turning into \uXXXX sequences.
    /// </summary>
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static readonly JsonSerializerOptions Compact = new() { WriteIndented = false, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Throws on invalid bytes, so "is this UTF-8?" has a yes/no answer.</summary>
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static OutputFormat ParseFormat(string? value) => value?.ToLowerInvariant() switch
    {
        null or "table" => OutputFormat.Table,
        "json" => OutputFormat.Json,
        _ => throw new UsageException($"--format must be table or json, got '{value}'"),
    };

    /// <summary>A multi-line JSON document (topics results).</summary>
    public static string ToIndentedJson(JsonNode node) => node.ToJsonString(Indented);

    /// <summary>One line of JSON (a consumed record).</summary>
    public static string ToJsonLine(JsonNode node) => node.ToJsonString(Compact);

    /// <summary>
    /// The bytes as UTF-8 text when they are valid UTF-8, otherwise base64 (<paramref name="isBase64"/>
    /// is then true). Null stays null.
    /// </summary>
    public static string? BytesAsText(byte[]? bytes, out bool isBase64)
    {
        isBase64 = false;
        if (bytes is null) return null;
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            isBase64 = true;
            return Convert.ToBase64String(bytes);
        }
    }

    /// <summary>Kafka's textual form of a topic id: the 16 bytes in URL-safe base64 without padding.</summary>
    public static string TopicId(Confluent.Kafka.Uuid? id)
    {
        if (id is null) return "";
        Span<byte> bytes = stackalloc byte[16];
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(bytes, id.MostSignificantBits);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(bytes[8..], id.LeastSignificantBits);
        return System.Buffers.Text.Base64Url.EncodeToString(bytes);
    }
}

/// <summary>
/// Rows printed as columns padded to their widest cell, separated by two spaces. The last column
/// is not padded so lines carry no trailing blanks.
/// </summary>
public sealed class Table(params string[] headers)
{
    private readonly List<string[]> _rows = [];

    public int RowCount => _rows.Count;

    public void Add(params object?[] cells)
    {
        if (cells.Length != headers.Length) throw new ArgumentException($"expected {headers.Length} cells, got {cells.Length}", nameof(cells));
        _rows.Add([.. cells.Select(c => Convert.ToString(c, System.Globalization.CultureInfo.InvariantCulture) ?? "")]);
    }

    public void Write(TextWriter writer, string indent = "")
    {
        var widths = headers.Select(h => h.Length).ToArray();
        foreach (var row in _rows)
            for (int i = 0; i < row.Length; i++) widths[i] = Math.Max(widths[i], row[i].Length);
        WriteRow(writer, indent, headers, widths);
        foreach (var row in _rows) WriteRow(writer, indent, row, widths);
    }

    private static void WriteRow(TextWriter writer, string indent, string[] cells, int[] widths)
    {
        var sb = new StringBuilder(indent);
        for (int i = 0; i < cells.Length; i++)
        {
            if (i > 0) sb.Append("  ");
            sb.Append(i == cells.Length - 1 ? cells[i] : cells[i].PadRight(widths[i]));
        }
        writer.WriteLine(sb.ToString().TrimEnd());
    }
}
