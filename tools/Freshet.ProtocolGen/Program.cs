using System.Text;

namespace Freshet.ProtocolGen;

/// <summary>
/// Generates Freshet's protocol classes from Apache Kafka's JSON message schemas.
///
///   dotnet run --project tools/Freshet.ProtocolGen                 regenerate the committed *.g.cs
///   dotnet run --project tools/Freshet.ProtocolGen -- --check      exit 1 if they are not up to date
///
/// Options: --schemas DIR (default: ../shared next to the repository root), --repo DIR (default:
/// the directory holding Freshet.slnx, searched upward from the current directory), --out DIR
/// (write or check the src/Freshet.Protocol/... tree under DIR instead of the repository: for
/// trying generator changes without touching the build).
///
/// The schemas stay outside the repository (they are Kafka's files); only the generated code is
/// committed, with Freshet's overlays (tools/Freshet.ProtocolGen/overlay, see <see cref="Overlay"/>):
/// the versions a newer Kafka release added, applied on top of the schemas at every run, --check
/// included. Without them nothing can be generated or checked: that is an error (exit 3), never a
/// silent pass; test.sh says the check was skipped when the schemas are absent, and fails when they
/// are required (FRESHET_REQUIRE_SCHEMAS=1, set by .ci/run).
/// </summary>
public static class Program
{
    /// <summary>Schema folder under the schema root, output folder under the repository, namespace.</summary>
    private static readonly (string SchemaDir, SchemaKind Kind, string OutputDir, string Namespace)[] Sets =
    [
        ("kafka-protocol", SchemaKind.Protocol, "src/Freshet.Protocol/Messages", "Freshet.Protocol.Messages"),
        ("kafka-metadata", SchemaKind.Metadata, "src/Freshet.Protocol/MetadataRecords", "Freshet.Protocol.MetadataRecords"),
        ("kafka-coordinator-records", SchemaKind.Coordinator, "src/Freshet.Protocol/CoordinatorRecords", "Freshet.Protocol.CoordinatorRecords"),
    ];

    public static int Main(string[] args)
    {
        bool check = false;
        string? schemas = null, repo = null, output = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--check": check = true; break;
                case "--schemas" when i + 1 < args.Length: schemas = args[++i]; break;
                case "--repo" when i + 1 < args.Length: repo = args[++i]; break;
                case "--out" when i + 1 < args.Length: output = args[++i]; break;
                case "-h" or "--help":
                    Console.WriteLine("usage: Freshet.ProtocolGen [--check] [--schemas DIR] [--repo DIR] [--out DIR]");
                    return 0;
                default:
                    Console.Error.WriteLine($"unknown argument '{args[i]}' (try --help)");
                    return 2;
            }
        }

        repo = Path.GetFullPath(repo ?? FindRepoRoot() ?? ".");
        if (!File.Exists(Path.Combine(repo, "Freshet.slnx")))
        {
            Console.Error.WriteLine($"{repo} is not the Freshet repository root (no Freshet.slnx); pass --repo");
            return 2;
        }
        schemas = Path.GetFullPath(schemas ?? Path.Combine(repo, "..", "shared"));
        var missing = Sets.Select(s => Path.Combine(schemas, s.SchemaDir)).Where(d => !Directory.Exists(d)).ToList();
        if (missing.Count > 0)
        {
            Console.Error.WriteLine($"schema directories not found: {string.Join(", ", missing)}: nothing {(check ? "checked" : "generated")} (pass --schemas DIR)");
            return 3;
        }

        output = Path.GetFullPath(output ?? repo);

        Dictionary<string, string> generated;
        int classCount;
        try
        {
            (generated, classCount) = Generate(schemas, repo);
        }
        catch (SchemaException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }

        var existing = Sets
            .Select(s => Path.Combine(output, s.OutputDir))
            .Where(Directory.Exists)
            .SelectMany(d => Directory.EnumerateFiles(d, "*.g.cs"))
            .Select(f => Path.GetRelativePath(output, f).Replace('\\', '/'))
            .ToHashSet(StringComparer.Ordinal);
        // Line endings are not compared: a checkout with core.autocrlf must not fail the check.
        var changed = generated
            .Where(g => !existing.Contains(g.Key) || File.ReadAllText(Path.Combine(output, g.Key)).ReplaceLineEndings("\n") != g.Value)
            .Select(g => g.Key)
            .Order(StringComparer.Ordinal)
            .ToList();
        var stale = existing.Where(f => !generated.ContainsKey(f)).Order(StringComparer.Ordinal).ToList();

        if (check)
        {
            if (changed.Count == 0 && stale.Count == 0)
            {
                Console.WriteLine($"{generated.Count} generated files ({classCount} classes) are up to date");
                return 0;
            }
            foreach (var f in changed) Console.WriteLine($"{(existing.Contains(f) ? "differs" : "missing")}: {f}");
            foreach (var f in stale) Console.WriteLine($"stale:   {f}");
            Console.WriteLine("generated code is out of date: run `dotnet run --project tools/Freshet.ProtocolGen`");
            return 1;
        }

        foreach (var f in changed)
        {
            var path = Path.Combine(output, f);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllText(path, generated[f], new UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
        }
        foreach (var f in stale) File.Delete(Path.Combine(output, f));
        Console.WriteLine($"{generated.Count} files ({classCount} classes): {changed.Count} written, {stale.Count} deleted");
        return 0;
    }

    /// <summary>
    /// Every output file (repository-relative path, text) and the number of classes in them: the
    /// schemas under <paramref name="schemaRoot"/> with the repository's overlays applied (see <see cref="Overlay"/>).
    /// </summary>
    public static (Dictionary<string, string> Files, int Classes) Generate(string schemaRoot, string repoRoot)
    {
        var files = new Dictionary<string, string>(StringComparer.Ordinal);
        int classes = 0;
        string overlayRoot = Path.Combine(repoRoot, Overlay.Folder);
        if (Directory.Exists(overlayRoot))
        {
            foreach (var d in Directory.EnumerateFileSystemEntries(overlayRoot))
            {
                if (!Sets.Any(s => s.SchemaDir == Path.GetFileName(d)) || !Directory.Exists(d))
                    throw new SchemaException($"{Overlay.Folder}/{Path.GetFileName(d)}: not a schema folder ({string.Join(", ", Sets.Select(s => s.SchemaDir))})");
            }
        }
        foreach (var (schemaDir, kind, outputDir, ns) in Sets)
        {
            string dir = Path.Combine(schemaRoot, schemaDir);
            if (!Directory.Exists(dir)) throw new SchemaException($"{dir} not found");
            var overlays = Overlay.FilesFor(repoRoot, schemaDir);
            var specs = Directory.EnumerateFiles(dir, "*.json")
                .Order(StringComparer.Ordinal)
                .Select(p =>
                {
                    string file = Path.GetFileName(p);
                    var spec = SchemaParser.ParseFile(p, $"{schemaDir}/{file}", kind);
                    if (!overlays.Remove(file, out var overlay)) return spec;
                    return Overlay.Apply(spec, File.ReadAllText(overlay), Overlay.RelativePath(schemaDir, file));
                })
                .ToList();
            // An overlay whose schema is gone would silently stop applying.
            foreach (var file in overlays.Keys)
                throw new SchemaException($"{Overlay.RelativePath(schemaDir, file)}: there is no schema {schemaDir}/{file} to apply it to");
            foreach (var spec in specs)
            {
                var model = ClassModelBuilder.Build(spec);
                classes += 1 + model.Nested.Count;
                Add(files, $"{outputDir}/{spec.Name}.g.cs", MessageEmitter.Emit(model, ns));
            }
            var registry = kind switch
            {
                SchemaKind.Protocol => RegistryEmitter.EmitApiRegistry(specs, ns),
                SchemaKind.Metadata => RegistryEmitter.EmitMetadataRegistry(specs, ns),
                _ => RegistryEmitter.EmitCoordinatorRegistry(specs, ns),
            };
            foreach (var (name, text) in registry) Add(files, $"{outputDir}/{name}", text);
        }
        return (files, classes);
    }

    private static void Add(Dictionary<string, string> files, string path, string text)
    {
        if (!files.TryAdd(path, text)) throw new SchemaException($"two outputs would be written to {path}");
    }

    private static string? FindRepoRoot()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var d = new DirectoryInfo(start); d is not null; d = d.Parent)
            {
                if (File.Exists(Path.Combine(d.FullName, "Freshet.slnx"))) return d.FullName;
            }
        }
        return null;
    }
}
