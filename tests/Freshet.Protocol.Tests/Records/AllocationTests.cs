using Freshet.Protocol.Records;
using Xunit.Abstractions;

namespace Freshet.Protocol.Tests.Records;

public class AllocationTests(ITestOutputHelper output)
{
    public static TheoryData<CompressionType> AllCodecs => TestData.AllCodecs;

    [Theory]
    [MemberData(nameof(AllCodecs))]
    public void Validation_allocates_little(CompressionType codec)
    {
        using var b = new RecordBatchBuilder(codec);
        for (int i = 0; i < 500; i++) b.Append(i, TestData.Compressible(10, i), TestData.Compressible(500, i));
        var batch = b.Build();
        using var scratch = new PooledBufferWriter();
        using var dst = new PooledBufferWriter();
        for (int i = 0; i < 3; i++) Assert.True(RecordBatchValidator.Validate(batch, scratch).IsValid); // warm up
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) RecordBatchValidator.Validate(batch, scratch);
        long perValidate = (GC.GetAllocatedBytesForCurrentThread() - before) / 10;
        for (int i = 0; i < 3; i++) { dst.Clear(); b.WriteTo(dst); }
        before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) { dst.Clear(); b.WriteTo(dst); }
        long perBuild = (GC.GetAllocatedBytesForCurrentThread() - before) / 10;
        output.WriteLine($"{codec}: batch {batch.Length} bytes, {perValidate} bytes allocated per validation, {perBuild} per build");
        // Only the codec's own objects (streams, contexts) are allocated; nothing scales with the data.
        Assert.True(perValidate < 4096, $"{perValidate} bytes per validation");
        Assert.True(perBuild < 4096, $"{perBuild} bytes per build");
        if (codec == CompressionType.None) Assert.Equal(0, perValidate);
    }
}
