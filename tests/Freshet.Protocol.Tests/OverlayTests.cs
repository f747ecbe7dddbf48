using Freshet.ProtocolGen;

namespace Freshet.Protocol.Tests;

/// <summary>
/// The generator's overlays (tools/Freshet.ProtocolGen/Overlay.cs): they may only add versions and
/// fields of those versions, so every version the schema already had keeps Kafka's encoding; any
/// other use, and an overlay the schema has caught up with, stops the generation with a message
/// naming the overlay.
/// </summary>
public class OverlayTests
{
    private const string OverlayPath = "tools/Freshet.ProtocolGen/overlay/kafka-protocol/DemoRequest.overlay.json";

    /// <summary>A small request schema in Kafka's syntax: versions 0-2, flexible from 1, with a nested struct.</summary>
    private static MessageSpec Schema(bool unstable = false)
    {
        string path = Path.Combine(Path.GetTempPath(), $"freshet-overlay-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, $$"""
            {
              "apiKey": 900, "type": "request", "name": "DemoRequest",
              {{(unstable ? "\"latestVersionUnstable\": true," : "")}}
              "validVersions": "0-2", "flexibleVersions": "1+",
              "fields": [
                { "name": "Id", "type": "string", "versions": "0+" },
                { "name": "Topics", "type": "[]DemoTopic", "versions": "0+", "fields": [
                  { "name": "Name", "type": "string", "versions": "0+" }
                ]}
              ]
            }
            """);
        try
        {
            return SchemaParser.ParseFile(path, "kafka-protocol/DemoRequest.json", SchemaKind.Protocol);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static string Error(MessageSpec spec, string overlay) =>
        Assert.Throws<SchemaException>(() => Overlay.Apply(spec, overlay, OverlayPath)).Message;

    [Fact]
    public void RaisesValidVersionsAndAddsFieldsOfTheNewVersionsOnly()
    {
        var spec = Overlay.Apply(Schema(), """
            // comments are allowed, as in Kafka's schemas
            {
              "name": "DemoRequest", "reason": "a newer Kafka added version 3",
              "validVersions": "0-3",
              "addFields": [
                { "under": "", "field": { "name": "Epoch", "type": "int16", "versions": "3+", "default": "-1" } },
                { "under": "Topics", "field": { "name": "TopicId", "type": "uuid", "versions": "3+" } }
              ]
            }
            """, OverlayPath);

        Assert.Equal(OverlayPath, spec.OverlayPath);
        Assert.Equal("0-3", spec.ValidVersions.ToString());
        Assert.Equal(["Id", "Topics", "Epoch"], spec.Fields.Select(f => f.Name));
        Assert.Equal("3+", spec.Fields[2].Versions.ToString());
        Assert.Equal("-1", spec.Fields[2].Default);
        Assert.Equal(["Name", "TopicId"], spec.Fields[1].Fields.Select(f => f.Name));
        // The generated class: version 3 is readable, the new fields exist from version 3 on.
        var model = ClassModelBuilder.Build(spec);
        Assert.Equal(3, model.Versions.Highest);
        Assert.Contains(model.Fields, f => f.Property == "Epoch");
        Assert.Contains(model.Nested.Single().Fields, f => f.Property == "TopicId");
    }

    [Fact]
    public void ClearsLatestVersionUnstable()
    {
        var spec = Overlay.Apply(Schema(unstable: true), """{ "name": "DemoRequest", "reason": "released", "latestVersionUnstable": false }""", OverlayPath);
        Assert.False(spec.LatestVersionUnstable);
        Assert.Equal("0-2", spec.ValidVersions.ToString());
    }

    [Fact]
    public void AnOverlayTheSchemaHasCaughtUpWithMustBeDeleted()
    {
        // The schema copy was updated and already has what the overlay adds: say so rather than apply nothing.
        Assert.Contains("delete", Error(Schema(), """{ "name": "DemoRequest", "reason": "r", "validVersions": "0-2" }"""));
        Assert.Contains("delete", Error(Schema(unstable: false), """{ "name": "DemoRequest", "reason": "r", "latestVersionUnstable": false }"""));
        Assert.Contains("changes nothing", Error(Schema(), """{ "name": "DemoRequest", "reason": "r" }"""));
    }

    [Fact]
    public void RefusesWhatWouldChangeAVersionTheSchemaAlreadyHas()
    {
        // A field in version 2 would change the bytes of a version Kafka's clients already send.
        var e = Error(Schema(), """
            { "name": "DemoRequest", "reason": "r", "validVersions": "0-3",
              "addFields": [ { "under": "", "field": { "name": "Epoch", "type": "int16", "versions": "2+" } } ] }
            """);
        Assert.StartsWith(OverlayPath + ":", e);
        Assert.Contains("Epoch", e);
        // ...unless it is tagged: readers of version 2 skip unknown tags.
        var tagged = Overlay.Apply(Schema(), """
            { "name": "DemoRequest", "reason": "r",
              "addFields": [ { "under": "", "field": { "name": "Hint", "type": "int32", "versions": "1+", "taggedVersions": "1+", "tag": 0 } } ] }
            """, OverlayPath);
        Assert.Equal(0, tagged.Fields[^1].Tag);

        Assert.Contains("lowest", Error(Schema(), """{ "name": "DemoRequest", "reason": "r", "validVersions": "1-3" }"""));
        Assert.Contains("adds nothing", Error(Schema(), """{ "name": "DemoRequest", "reason": "r", "validVersions": "0-1" }"""));
        Assert.Contains("already has a field Id", Error(Schema(), """
            { "name": "DemoRequest", "reason": "r", "validVersions": "0-3",
              "addFields": [ { "under": "", "field": { "name": "Id", "type": "string", "versions": "3+" } } ] }
            """));
        Assert.Contains("no struct field", Error(Schema(), """
            { "name": "DemoRequest", "reason": "r", "validVersions": "0-3",
              "addFields": [ { "under": "Id", "field": { "name": "X", "type": "int8", "versions": "3+" } } ] }
            """));
        Assert.Contains("no valid version", Error(Schema(), """
            { "name": "DemoRequest", "reason": "r", "validVersions": "0-3",
              "addFields": [ { "under": "", "field": { "name": "X", "type": "int8", "versions": "4+" } } ] }
            """));
    }

    [Fact]
    public void RefusesTyposAndOverlaysWithoutAReason()
    {
        Assert.Contains("unknown property \"validVersion\"", Error(Schema(), """{ "name": "DemoRequest", "reason": "r", "validVersion": "0-3" }"""));
        Assert.Contains("reason", Error(Schema(), """{ "name": "DemoRequest", "validVersions": "0-3" }"""));
        Assert.Contains("is DemoRequest", Error(Schema(), """{ "name": "DemoResponse", "reason": "r", "validVersions": "0-3" }"""));
        Assert.Contains("bad version range", Error(Schema(), """{ "name": "DemoRequest", "reason": "r", "validVersions": "0-x" }"""));
        Assert.StartsWith(OverlayPath + ":", Error(Schema(), "{ not json"));
    }
}
