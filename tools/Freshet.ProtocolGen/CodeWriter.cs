using System.Text;

namespace Freshet.ProtocolGen;

/// <summary>
/// Builds a source file line by line with four-space indentation and LF line endings whatever the
/// platform, so the output is byte-for-byte the same everywhere (the --check mode compares bytes).
/// </summary>
public sealed class CodeWriter
{
    private readonly StringBuilder _text = new();
    private int _indent;

    public void Line(string line = "")
    {
        if (line.Length > 0) _text.Append(' ', _indent * 4).Append(line);
        _text.Append('\n');
    }

    /// <summary>Writes <paramref name="header"/> and an opening brace, and indents.</summary>
    public void Open(string header)
    {
        Line(header);
        Line("{");
        _indent++;
    }

    public void Close(string suffix = "")
    {
        _indent--;
        Line("}" + suffix);
    }

    /// <summary>A bare block, to scope locals that several fields would otherwise share.</summary>
    public void OpenScope()
    {
        Line("{");
        _indent++;
    }

    public void Indent() => _indent++;

    public void Outdent() => _indent--;

    /// <summary>The text, with exactly one final newline.</summary>
    public override string ToString()
    {
        var s = _text.ToString().TrimEnd('\n');
        return s + "\n";
    }
}
