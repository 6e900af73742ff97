import ArgumentParser

/// The `rstpm` root command: each subcommand lives in its own file and is listed here.
struct RSTPMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rstpm",
        abstract: "Train, run, evaluate and benchmark RSTPM anomaly detection models.",
        subcommands: [WeightsCommand.self, ClassifyCommand.self, BenchCommand.self, TrainCommand.self, InferCommand.self, EvalCommand.self, DemoCommand.self, ModelCommand.self, RetrainCommand.self]
    )
}

// glibc's mallopt (not exported by Swift's Glibc module). Batch-8 feature maps are tens of MB:
// above glibc's mmap threshold every tensor would be a fresh mmap, page-faulted on first touch
// and unmapped when freed, which made batch-8 forwards 2-8x slower per layer. Keeping them in
// the heap lets freed tensors be reused.
@_silgen_name("mallopt") private func mallopt(_ parameter: Int32, _ value: Int32) -> Int32
private let mallocMmapThreshold: Int32 = -3, mallocTrimThreshold: Int32 = -1
_ = mallopt(mallocMmapThreshold, 1 << 30)
_ = mallopt(mallocTrimThreshold, Int32.max)

RSTPMCommand.main()
