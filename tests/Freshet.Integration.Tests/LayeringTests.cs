using System.Reflection;
using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace Freshet.Integration.Tests;

/// <summary>
/// The layers depend downwards only: Cli → Server → Network → Broker → Metadata → Storage → Protocol,
/// each project referencing exactly the one below it. Any other edge fails here.
/// </summary>
public sealed class LayeringTests
{
    private static readonly string[] Layers = ["Cli", "Server", "Network", "Broker", "Metadata", "Storage", "Protocol"];

    private static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Freshet.slnx"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Freshet.slnx not found above the test directory");
    }

    [Fact]
    public void EachLayerReferencesOnlyTheLayerBelow()
    {
        string src = Path.Combine(RepoRoot(), "src");
        var projects = Directory.GetDirectories(src).Select(Path.GetFileName).Order().ToList();
        Assert.Equal(Layers.Select(l => "Freshet." + l).Order(), projects);
        for (int i = 0; i < Layers.Length; i++)
        {
            string name = "Freshet." + Layers[i];
            var refs = XDocument.Load(Path.Combine(src, name, name + ".csproj"))
                .Descendants("ProjectReference")
                .Select(e => Path.GetFileNameWithoutExtension(e.Attribute("Include")!.Value))
                .ToList();
            var expected = i + 1 < Layers.Length ? new[] { "Freshet." + Layers[i + 1] } : [];
            Assert.True(expected.SequenceEqual(refs), $"{name} references [{string.Join(", ", refs)}], expected [{string.Join(", ", expected)}]");
        }
    }

    [Fact]
    public void NoSourceFileUsesANamespaceFromALayerAbove()
    {
        string src = Path.Combine(RepoRoot(), "src");
        for (int i = 1; i < Layers.Length; i++)
        {
            string name = "Freshet." + Layers[i];
            var above = Layers[..i].Select(l => "Freshet." + l).ToList();
            foreach (var file in Directory.EnumerateFiles(Path.Combine(src, name), "*.cs", SearchOption.AllDirectories))
            {
                if (file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)) continue;
                foreach (var line in File.ReadLines(file).Where(l => l.StartsWith("using ", StringComparison.Ordinal)))
                    Assert.False(above.Any(a => line.Contains(" " + a + ";", StringComparison.Ordinal) || line.Contains(" " + a + ".", StringComparison.Ordinal)),
                        $"{Path.GetFileName(file)} in {name} uses a higher layer: {line}");
            }
        }
    }

    /// <summary>The storage types that only Partition and ReplicaManager may touch: handlers ask them, never a log.</summary>
    private static readonly Type[] LogTypes = [typeof(Freshet.Storage.PartitionLog), typeof(Freshet.Storage.LogManager), typeof(Freshet.Storage.Segments.LogSegment)];

    /// <summary>
    /// No request handler reaches into a partition's log (Kafka's KafkaApis asks ReplicaManager and Partition): no type in
    /// Freshet.Broker.Handlers has a field, property, constructor or method parameter, or method return of a log type
    /// (method bodies are not inspected by reflection; the source scan below covers them).
    /// </summary>
    [Fact]
    public void NoHandlerSignatureUsesALogType()
    {
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        var handlers = typeof(Freshet.Broker.Handlers.FetchHandler).Assembly.GetTypes()
            .Where(t => t.Namespace == "Freshet.Broker.Handlers").ToList();
        Assert.NotEmpty(handlers);
        var found = new List<string>();
        foreach (var t in handlers)
        {
            foreach (var f in t.GetFields(all)) Check(f.FieldType, $"{t.Name}.{f.Name}");
            foreach (var p in t.GetProperties(all)) Check(p.PropertyType, $"{t.Name}.{p.Name}");
            foreach (var m in t.GetMethods(all).Cast<MethodBase>().Concat(t.GetConstructors(all)))
            {
                if (m is MethodInfo mi) Check(mi.ReturnType, $"{t.Name}.{m.Name} returns");
                foreach (var p in m.GetParameters()) Check(p.ParameterType, $"{t.Name}.{m.Name}({p.Name})");
            }
        }
        Assert.True(found.Count == 0, "handlers use log types: " + string.Join("; ", found));

        void Check(Type type, string where)
        {
            if (Mentions(type)) found.Add($"{where}: {type.Name}");
        }
    }

    private static bool Mentions(Type type)
    {
        if (LogTypes.Contains(type)) return true;
        if (type.HasElementType && Mentions(type.GetElementType()!)) return true;
        return type.IsGenericType && type.GetGenericArguments().Any(Mentions);
    }

    /// <summary>
    /// The same in the handlers' source: no log type named, and no <c>.Log</c> / <c>.Logs</c> member reached (a
    /// partition's log, the broker's log manager), which reflection over signatures cannot see inside method bodies.
    /// </summary>
    [Fact]
    public void NoHandlerSourceReachesIntoALog()
    {
        string dir = Path.Combine(RepoRoot(), "src", "Freshet.Broker", "Handlers");
        var forbidden = new Regex(@"\b(PartitionLog|LogManager|LogSegment)\b|\.Logs?\b(?!\s*\()", RegexOptions.CultureInvariant);
        var found = new List<string>();
        var files = Directory.GetFiles(dir, "*.cs");
        Assert.NotEmpty(files);
        foreach (var file in files)
        {
            int n = 0;
            foreach (var line in File.ReadLines(file))
            {
                n++;
                string code = line.TrimStart();
                if (code.StartsWith("//", StringComparison.Ordinal)) continue;
                if (forbidden.Match(code) is { Success: true } m) found.Add($"{Path.GetFileName(file)}:{n}: {m.Value}");
            }
        }
        Assert.True(found.Count == 0, "handlers reach into logs: " + string.Join("; ", found));
    }

    /// <summary>
    /// The network layer sends records through Protocol's TransferableRecords and never names Storage
    /// (Storage never sees a socket, and the socket side never sees a segment): a new kind of records
    /// needs no change in Network.
    /// </summary>
    [Fact]
    public void TheNetworkLayerNamesNothingFromStorage()
    {
        string network = Path.Combine(RepoRoot(), "src", "Freshet.Network");
        foreach (var file in Directory.EnumerateFiles(network, "*.cs", SearchOption.AllDirectories))
        {
            if (file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)) continue;
            string text = File.ReadAllText(file);
            Assert.False(text.Contains("Freshet.Storage", StringComparison.Ordinal), $"{Path.GetFileName(file)} names Freshet.Storage");
            Assert.False(text.Contains("FileRecords", StringComparison.Ordinal), $"{Path.GetFileName(file)} names Storage's FileRecords");
        }
    }
}
