using System.Reflection;
using System.Text;
using Freshet.Protocol.Wire;
using Xunit.Abstractions;

namespace Freshet.Protocol.Tests;

/// <summary>
/// Every generated message, record and struct class at every version it supports: fill it with
/// seeded pseudo-random values, encode, check the size, decode, encode again and compare bytes.
/// The classes are found by reflection, so a regenerated schema set is covered without edits here.
/// </summary>
public class GeneratedMessageRoundTripTests(ITestOutputHelper output)
{
    private static readonly string[] GeneratedNamespaces =
    [
        "Freshet.Protocol.Messages",
        "Freshet.Protocol.MetadataRecords",
        "Freshet.Protocol.CoordinatorRecords",
    ];

    /// <summary>Generated IMessage classes, nested ones included, in a stable order.</summary>
    public static IReadOnlyList<Type> MessageTypes { get; } =
    [
        .. typeof(IMessage).Assembly.GetTypes()
            .Where(t => t is { IsClass: true, IsAbstract: false } && typeof(IMessage).IsAssignableFrom(t)
                        && GeneratedNamespaces.Contains(t.Namespace))
            .OrderBy(t => t.FullName, StringComparer.Ordinal),
    ];

    /// <summary>
    /// Short names ("FetchResponse.PartitionData") for readable test case names; xunit cuts
    /// arguments after 50 characters, which the namespaces alone nearly fill.
    /// </summary>
    private static readonly Dictionary<string, Type> TypesByShortName =
        MessageTypes.ToDictionary(t => t.IsNested ? $"{t.DeclaringType!.Name}.{t.Name}" : t.Name, StringComparer.Ordinal);

    /// <summary>(type name, version) for every type and every version from lowest to highest supported.</summary>
    public static IEnumerable<object[]> Cases()
    {
        foreach (var (name, type) in TypesByShortName.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            var m = (IMessage)Activator.CreateInstance(type)!;
            for (int v = m.LowestSupportedVersion; v <= m.HighestSupportedVersion; v++)
                yield return [name, (short)v];
        }
    }

    [Fact]
    public void CoversEveryGeneratedTypeAndVersion()
    {
        int cases = Cases().Count();
        int topLevel = MessageTypes.Count(t => !t.IsNested);
        output.WriteLine($"{MessageTypes.Count} generated message types ({topLevel} top-level), {cases} type/version round-trip cases");
        Assert.True(topLevel > 200, $"only {topLevel} top-level generated types found");
        Assert.True(cases > 1000, $"only {cases} type/version cases");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void RoundTrips(string typeName, short version)
    {
        var type = TypesByShortName[typeName];
        int seed = StableHash($"{typeName}/{version}");

        // Nulls are tried first; a null where this version allows none makes Write throw
        // InvalidOperationException, and then the same values are drawn again without nulls.
        var message = Fill(type, new Random(seed), allowNulls: true);
        byte[] bytes;
        try
        {
            bytes = message.ToBytes(version);
        }
        catch (InvalidOperationException e) when (e.Message.Contains("does not allow null", StringComparison.Ordinal))
        {
            message = Fill(type, new Random(seed), allowNulls: false);
            bytes = message.ToBytes(version);
        }
        Assert.Equal(bytes.Length, message.Size(version));

        var decoded = Parse(type, bytes, version);
        byte[] again = decoded.ToBytes(version);
        Assert.Equal(bytes, again);
        Assert.Equal(again.Length, decoded.Size(version));

        // Every byte is needed: a message cut short is a protocol error, never a partial message.
        if (bytes.Length > 0) Assert.Throws<ProtocolException>(() => Parse(type, bytes[..^1], version));

        var decodedAgain = Parse(type, again, version);
        Assert.True(decoded.Equals(decodedAgain), $"{typeName} v{version}: decoded messages differ");
        Assert.Equal(decoded.GetHashCode(), decodedAgain.GetHashCode());
    }

    /// <summary>Decodes through <see cref="MessageExtensions.Parse{T}"/> for a type known at run time.</summary>
    internal static IMessage Parse(Type type, byte[] bytes, short version)
    {
        var parse = typeof(MessageExtensions).GetMethod(nameof(MessageExtensions.Parse))!.MakeGenericMethod(type);
        try
        {
            return (IMessage)parse.Invoke(null, [new ReadOnlyMemory<byte>(bytes), version])!;
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e.InnerException);
            throw;
        }
    }

    // ------------------------------------------------------------------ value filling

    private static readonly string[] Words = ["", "a", "topic-1", "grüße", "日本語", "ключ", "emoji 🎉", "x/y.z_w"];

    private static readonly NullabilityInfoContext Nullability = new();

    internal static IMessage Fill(Type type, Random rng, bool allowNulls, int depth = 0)
    {
        var m = (IMessage)Activator.CreateInstance(type)!;
        foreach (var p in type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite))
        {
            if (p.Name == "UnknownTaggedFields")
            {
                p.SetValue(m, UnknownTaggedFields(rng));
                continue;
            }
            bool nullable = Nullable.GetUnderlyingType(p.PropertyType) is not null
                            || (!p.PropertyType.IsValueType && Nullability.Create(p).WriteState == NullabilityState.Nullable);
            p.SetValue(m, Value(p.PropertyType, nullable, rng, allowNulls, depth));
        }
        return m;
    }

    /// <summary>Tags far above any the schemas use, so the decoder keeps them as unknown.</summary>
    private static List<RawTaggedField>? UnknownTaggedFields(Random rng)
    {
        int n = rng.Next(3);
        if (n == 0) return null;
        var list = new List<RawTaggedField>();
        int tag = 1000;
        for (int i = 0; i < n; i++)
        {
            tag += rng.Next(1, 200);
            list.Add(new RawTaggedField(tag, Bytes(rng)));
        }
        return list;
    }

    private static object? Value(Type t, bool nullable, Random rng, bool allowNulls, int depth)
    {
        if (nullable && allowNulls && rng.Next(5) == 0) return null;
        t = Nullable.GetUnderlyingType(t) ?? t;
        if (t == typeof(bool)) return rng.Next(4) != 0;
        if (t == typeof(sbyte)) return (sbyte)rng.Next(sbyte.MinValue, sbyte.MaxValue + 1);
        if (t == typeof(short)) return (short)rng.Next(short.MinValue, short.MaxValue + 1);
        if (t == typeof(ushort)) return (ushort)rng.Next(ushort.MaxValue + 1);
        if (t == typeof(int)) return rng.Next(int.MinValue, int.MaxValue);
        if (t == typeof(uint)) return (uint)rng.NextInt64(uint.MaxValue + 1L);
        if (t == typeof(long)) return rng.NextInt64(long.MinValue, long.MaxValue);
        if (t == typeof(double)) return (rng.NextDouble() - 0.5) * 1e9;
        if (t == typeof(string)) return Words[rng.Next(Words.Length)] + (rng.Next(2) == 0 ? "" : rng.Next(1000).ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (t == typeof(ReadOnlyMemory<byte>)) return new ReadOnlyMemory<byte>(Bytes(rng));
        if (t == typeof(RecordSet)) return new RecordSet(Bytes(rng));
        if (t == typeof(Uuid)) return new Uuid(rng.NextInt64(long.MinValue, long.MaxValue), rng.NextInt64(long.MinValue, long.MaxValue));
        if (t.IsGenericType && t.GetGenericTypeDefinition() == typeof(List<>))
        {
            var element = t.GetGenericArguments()[0];
            var list = (System.Collections.IList)Activator.CreateInstance(t)!;
            int n = depth > 6 ? 0 : rng.Next(4);
            for (int i = 0; i < n; i++) list.Add(Value(element, nullable: false, rng, allowNulls, depth + 1));
            return list;
        }
        if (typeof(IMessage).IsAssignableFrom(t)) return Fill(t, rng, allowNulls, depth + 1);
        throw new InvalidOperationException($"no value generator for {t}");
    }

    private static byte[] Bytes(Random rng)
    {
        var b = new byte[rng.Next(9)];
        rng.NextBytes(b);
        return b;
    }

    /// <summary>FNV-1a: string.GetHashCode is randomized per process, and the seeds must not be.</summary>
    private static int StableHash(string s)
    {
        uint h = 2166136261;
        foreach (byte b in Encoding.UTF8.GetBytes(s)) h = (h ^ b) * 16777619;
        return (int)h;
    }
}
