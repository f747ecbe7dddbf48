using System.Text;

namespace Freshet.Server;

/// <summary>
/// Reads Java-style .properties text (what server.properties is): "key=value", "key: value" or
/// "key value", '#' and '!' comments, a trailing backslash continues a line, and \t \n \\ \uXXXX escapes.
/// </summary>
public static class PropertiesFile
{
    public static Dictionary<string, string> Parse(string text)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        var lines = text.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i].TrimStart();
            if (line.Length == 0 || line[0] is '#' or '!') continue;
            // Join continuation lines (an odd number of trailing backslashes).
            while (EndsWithContinuation(line) && i + 1 < lines.Length)
                line = line[..^1] + lines[++i].TrimStart();
            int sep = -1;
            for (int j = 0; j < line.Length; j++)
            {
                if (line[j] == '\\') { j++; continue; }
                if (line[j] is '=' or ':' or ' ' or '\t') { sep = j; break; }
            }
            string key = sep < 0 ? line : line[..sep];
            string value = "";
            if (sep >= 0)
            {
                int v = sep;
                while (v < line.Length && line[v] is ' ' or '\t') v++;
                if (v < line.Length && line[v] is '=' or ':') v++;
                while (v < line.Length && line[v] is ' ' or '\t') v++;
                value = line[v..];
            }
            result[Unescape(key.TrimEnd())] = Unescape(value.TrimEnd());
        }
        return result;
    }

    private static bool EndsWithContinuation(string line)
    {
        int n = 0;
        for (int i = line.Length - 1; i >= 0 && line[i] == '\\'; i--) n++;
        return n % 2 == 1;
    }

    private static string Unescape(string s)
    {
        if (!s.Contains('\\', StringComparison.Ordinal)) return s;
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c != '\\' || i + 1 >= s.Length) { sb.Append(c); continue; }
            char n = s[++i];
            switch (n)
            {
                case 't': sb.Append('\t'); break;
                case 'n': sb.Append('\n'); break;
                case 'r': sb.Append('\r'); break;
                case 'f': sb.Append('\f'); break;
                case 'u' when i + 4 < s.Length && int.TryParse(s.AsSpan(i + 1, 4), System.Globalization.NumberStyles.HexNumber, null, out int code):
                    sb.Append((char)code);
                    i += 4;
                    break;
                default: sb.Append(n); break;
            }
        }
        return sb.ToString();
    }
}
