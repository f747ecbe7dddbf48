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
