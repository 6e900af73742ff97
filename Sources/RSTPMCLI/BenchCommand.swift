import ArgumentParser
import Backbones
import EngineBench
import Foundation
import TensorEngine

/// `rstpm bench`: short timing runs for reports.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Benchmarks.", subcommands: [EngineBenchCommand.self, MethodBenchCommand.self])
}

/// `rstpm bench engine`: backbone feature extraction (the teachers' work) in ms per image,
/// achieved GFLOPS (2 x convolution MACs) and percent of the sgemm peak measured in the same run
/// (the faster of the product of the engine's kernel set and OpenBLAS),
/// plus CPU time (all threads) and minor page faults per image: on a shared machine wall time
/// varies with the other load, CPU time much less.
/// Random weights: timing does not depend on the values. bench/engine.sh compares with PyTorch,
/// ONNX Runtime and OpenVINO running the same networks. RSTPM_PROFILE=1 adds, after each row,
/// the per-layer table of `iterations` more untimed runs (LayerProfile).
struct EngineBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "engine", abstract: "Time the backbones' feature extraction.")

    @Option(help: "Comma-separated batch sizes.")
    var batch: String = "1,8"

    @OptionGroup var engine: EngineOptions

    @OptionGroup var precision: PrecisionOptions

    @Option(help: "Timed forwards per configuration (the best is reported).")
    var iterations: Int = 5

    @Option(help: "Only the networks whose names contain this (e.g. lite0, resnet).")
    var only: String = ""

    @Flag(help: "Time a training step instead: features in .training mode (BatchNorm not folded) and backward from every tap.")
    var training = false

    @Option(help: "Input side in pixels.")
    var size: Int = 256

    /// Networks as bench/engine_reference.py builds them: name, backbone, taps run.
    static let networks: [(name: String, kind: BackboneKind, taps: Int)] = [
        ("resnet18-layer3", .resnet18, 3), ("resnet50-layer3", .resnet50, 3),
        ("efficientnet-lite0", .efficientNetLite0, 3), ("efficientnet-lite2", .efficientNetLite2, 3),
    ]

    func validate() throws {
        if batchSizes.isEmpty || batchSizes.contains(where: { $0 < 1 }) { throw ValidationError("--batch takes positive integers, e.g. 1,8") }
        if iterations < 1 || size < 32 { throw ValidationError("--iterations must be >= 1, --size >= 32") }
    }

    var batchSizes: [Int] { batch.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func run() throws {
        let threads = engine.configureEngine(fallback: 2)
        let precision = self.precision.configureEngine()
        // The engine's products run on its kernel set's C product (RSTPM_KERNELS, else the best
        // the CPU runs); the peak is the faster of it and OpenBLAS with its own threads.
        // The engine's kernel first: OpenBLAS's own threads keep spinning for a while after its
        // run and would take a core from the engine's measurement.
        let kernelPeak = EngineBenchmarks.kernelGemm ? EngineBenchmarks.sgemm(m: 1024, n: 1024, k: 1024, iterations: 5, engineSplit: true) : nil
        let openBLASPeak = EngineBenchmarks.sgemm(m: 1024, n: 1024, k: 1024, iterations: 5)
        let peak = max(openBLASPeak.gigaflops, kernelPeak?.gigaflops ?? 0)
        print("threads \(threads), precision \(precision.rawValue), input \(size)x\(size), taps 0..2 (strides 4, 8, 16), "
              + (training ? "training step (forward + backward; GFLOPS count the forward only)" : "BatchNorm folded") + ", best of \(iterations)")
        print("sgemm 1024^3 peak: \(Engine.kernelSet.rawValue) kernels " + (kernelPeak.map { String(format: "%.1f GFLOPS", $0.gigaflops) } ?? "off")
              + String(format: ", OpenBLAS %.1f GFLOPS", openBLASPeak.gigaflops) + " (\(Engine.blasCoreName) kernels)")
        print("network               batch   ms/image    GFLOPS   % of sgemm peak   CPU ms/image  faults/image")
        for network in Self.networks where only.isEmpty || network.name.contains(only) {
            let backbone = Backbone(kind: network.kind, seed: 1)
            if !training {
                backbone.setMode(.inference)
                backbone.foldBatchNorm()
            }
            let flopsPerImage = 2 * Double(backbone.featureMultiplyAccumulates(height: size, width: size, upTo: network.taps))
            for batchSize in batchSizes {
                let generator = SeededGenerator(seed: 2)
                let input = generator.uniformTensor(shape: [batchSize, 3, size, size], bound: 2)
                let step = {
                    let taps = backbone.features(input, upTo: network.taps)
                    if training { _ = backbone.backward(tapGradients: taps.map { Tensor(shape: $0.shape, repeating: 1e-3) }) }
                }
                step()
                var (best, bestProcessor, bestFaults) = (Double.infinity, Double.infinity, Int.max)
                for _ in 0..<iterations {
                    let (startUsage, start) = (ResourceUsage.now(), DispatchTime.now().uptimeNanoseconds)
                    step()
                    best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
                    let usage = ResourceUsage.now()
                    bestProcessor = min(bestProcessor, usage.processorMilliseconds - startUsage.processorMilliseconds)
                    bestFaults = min(bestFaults, usage.pageFaults - startUsage.pageFaults)
                }
                if LayerProfile.enabled {
                    LayerProfile.reset()
                    for _ in 0..<iterations { step() }
                }
                let perImage = best / Double(batchSize)
                let gigaflops = flopsPerImage / (perImage * 1e6)
                print("RESULT " + network.name.padding(toLength: 18, withPad: " ", startingAt: 0)
                      + String(format: " %5d %10.2f %9.1f %9.1f %12.2f %12d", batchSize, perImage, gigaflops, 100 * gigaflops / peak,
                               bestProcessor / Double(batchSize), bestFaults / batchSize))
                if LayerProfile.enabled { print(LayerProfile.report(per: iterations * batchSize)) }
            }
        }
    }
}

/// Process CPU time and minor page faults so far (getrusage).
private struct ResourceUsage {
    let processorMilliseconds: Double
    let pageFaults: Int

    static func now() -> ResourceUsage {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let seconds = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        return ResourceUsage(processorMilliseconds: seconds * 1e3, pageFaults: usage.ru_minflt)
    }
}
