import Foundation
import RSTPM
import TensorEngine

/// A small random convolution stack with taps at strides 4, 8, 16, 32, standing in for the
/// EfficientNet/ResNet teachers and S1 in tests (training-machinery tests only).
final class TinyExtractor: FeatureExtractor {
    var mode: LayerMode = .training
    let tapChannels: [Int]
    let stem: Sequential
    let stages: [Sequential]
    private var tapCount = 0

    init(channels: [Int], seed: UInt64) {
        let generator = SeededGenerator(seed: seed)
        tapChannels = channels
        stem = Sequential([Conv2d(inputChannels: 3, outputChannels: channels[0], kernelSize: 3, stride: 2, padding: 1, bias: false, generator: generator),
                           BatchNorm2d(channels: channels[0]), ReLU()])
        var stages: [Sequential] = []
        var previous = channels[0]
        for output in channels {
            stages.append(Sequential([Conv2d(inputChannels: previous, outputChannels: output, kernelSize: 3, stride: 2, padding: 1, bias: false, generator: generator),
                                      BatchNorm2d(channels: output), ReLU(),
                                      Conv2d(inputChannels: output, outputChannels: output, kernelSize: 1, generator: generator)]))
            previous = output
        }
        self.stages = stages
    }

    var children: [(name: String, layer: any Layer)] {
        [("stem", stem)] + stages.enumerated().map { (name: "stages.\($0.offset)", layer: $0.element) }
    }

    func forward(_ input: Tensor) -> Tensor { features(input, upTo: 4)[3] }
    func backward(_ outputGradient: Tensor) -> Tensor { backward(tapGradients: [nil, nil, nil, outputGradient]) }

    func features(_ input: Tensor, upTo tapCount: Int) -> [Tensor] {
        self.tapCount = tapCount
        var x = stem(input)
        var taps: [Tensor] = []
        for stage in stages.prefix(tapCount) {
            x = stage(x)
            taps.append(x)
        }
        return taps
    }

    /// Its layers keep state, so calls from several threads take turns.
    func inferenceFeatures(_ input: Tensor, upTo tapCount: Int) -> [Tensor] {
        lock.lock()
        defer { lock.unlock() }
        return features(input, upTo: tapCount)
    }
    private let lock = NSLock()

    func backward(tapGradients: [Tensor?]) -> Tensor {
        var g: Tensor?
        for index in (0..<tapCount).reversed() {
            if let tap = tapGradients[index] { g = g.map { $0 + tap } ?? tap }
            if let current = g { g = stages[index].backward(current) }
        }
        return stem.backward(g!)
    }
}

enum TinySetup {
    static func teachers(t1Hash: String = "t1hash") -> TeacherSet {
        let t1 = [4, 6, 8, 10], t2 = [5, 7, 9, 11]
        return TeacherSet(teacher1: TinyExtractor(channels: t1, seed: 101), teacher2: TinyExtractor(channels: t2, seed: 202),
                          records: [TeacherRecord(role: "T1", kind: "tiny-a", checkpointFile: "a.pth", checkpointSHA256: t1Hash),
                                    TeacherRecord(role: "T2", kind: "tiny-b", checkpointFile: "b.pth", checkpointSHA256: "t2hash")],
                          makeStudent: { TinyExtractor(channels: t1, seed: $0 &+ 7) })
    }

    static func configuration() -> RSTPMConfiguration {
        var configuration = RSTPMConfiguration()
        configuration.teacher1 = "tiny-a"
        configuration.teacher2 = "tiny-b"
        configuration.inputWidth = 64
        configuration.inputHeight = 64
        configuration.attentionHiddenChannels = 4
        configuration.discriminatorBaseWidth = 4
        configuration.discriminatorLevels = 3
        configuration.studentEpochs = 4
        configuration.discriminatorEpochs = 1
        configuration.batchSize = 3
        configuration.validationFraction = 0.25
        configuration.seed = 3
        return configuration
    }

    /// Smooth random images with a few blobs: a stable "product".
    static func images(count: Int, seed: UInt64, width: Int = 64, height: Int = 64) -> [PlanarImage] {
        let generator = SeededGenerator(seed: seed)
        return (0..<count).map { _ in
            var values = [Float](repeating: 0, count: 3 * width * height)
            let (fx, fy) = (1 + generator.nextUniform() * 0.2, 1 + generator.nextUniform() * 0.2)
            for c in 0..<3 { for y in 0..<height { for x in 0..<width {
                let u: Float = Float(x) * 0.2 * fx + Float(c), v: Float = Float(y) * 0.15 * fy
                let base: Float = 0.5 + 0.3 * sin(u) * cos(v)
                values[(c * height + y) * width + x] = min(1, max(0, base + 0.05 * generator.nextUniform()))
            } } }
            return PlanarImage(width: width, height: height, values: values)
        }
    }
}
