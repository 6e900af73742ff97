import RSTPM
import TensorEngine
import TestSupport
import XCTest

/// S2 (both variants) and D give the same inference outputs after `foldBatchNorm()` as with
/// their BatchNorms, for non-trivial running statistics and affine parameters.
final class BatchNormFoldingTests: XCTestCase {
    /// Random BN statistics and affine parameters, so folding has something to get wrong.
    private func randomizeBatchNorms(_ layer: any Layer, generator: SeededGenerator) {
        for (name, state) in layer.namedState() {
            let count = state.value.count
            if name.hasSuffix("running_mean") {
                state.value = generator.uniformTensor(shape: state.value.shape, bound: 0.5)
            } else if name.hasSuffix("running_var") {
                state.value = Tensor(shape: state.value.shape, scalars: (0..<count).map { _ in 0.3 + generator.nextUniform() })
            } else if name.contains("bn") || name.contains("encoder") || name.contains("decoder"), state.value.rank == 1, count > 1 {
                state.value = Tensor(shape: state.value.shape, scalars: (0..<count).map { _ in 0.5 + generator.nextUniform() })
            }
        }
    }

    func testFoldedStudentMatches() {
        for (variant, modes) in [(ReconstructionVariant.reverseDistillation, "*+"), (.paper, "+*")] {
            let generator = SeededGenerator(seed: 11)
            let student = ReconstructionStudent(variant: variant, inputChannels: 8, outputChannels: [6, 5, 4],
                                                attentionModes: AttentionMode.modes(parsing: modes)!, attentionHiddenChannels: 3,
                                                generator: generator)
            randomizeBatchNorms(student, generator: generator)
            let input = generator.uniformTensor(shape: [2, 8, 2, 3], bound: 2)
            let sources = [generator.uniformTensor(shape: [2, 6, 4, 6], bound: 1), generator.uniformTensor(shape: [2, 5, 8, 12], bound: 1)]
            // .evaluation runs layer by layer (separate ReLUs, attention products and sums).
            student.setMode(.evaluation)
            let layerByLayer = student.forward(input, attentionSources: sources)
            student.setMode(.inference)
            let before = student.forward(input, attentionSources: sources)
            XCTAssertEqual(before, layerByLayer, "\(variant)")
            let batchNorms = student.namedState().filter { $0.name.hasSuffix("running_mean") }.count
            student.foldBatchNorm()
            XCTAssertEqual(student.namedState().filter { $0.name.hasSuffix("running_mean") }.count, 0, "\(variant): every BatchNorm folded")
            XCTAssertGreaterThan(batchNorms, 0)
            // Folded: the reverse-distillation stages' ReLU inside the upsampling, the skip added in place.
            let after = student.forward(input, attentionSources: sources)
            for (index, (x, y)) in zip(before, after).enumerated() {
                XCTAssertEqual(x.shape, y.shape)
                XCTAssertLessThan(maxRelativeDifference(y.scalars, x.scalars), 1e-5, "\(variant) output \(index)")
            }
        }
    }

    func testFoldedDiscriminatorMatches() {
        let generator = SeededGenerator(seed: 12)
        let discriminator = Discriminator(baseWidth: 4, levels: 3, generator: generator)
        randomizeBatchNorms(discriminator, generator: generator)
        let input = generator.uniformTensor(shape: [2, 3, 16, 20], bound: 3)
        // .evaluation runs layer by layer (separate ReLUs, upsampling, concatenation).
        discriminator.setMode(.evaluation)
        let layerByLayer = discriminator(input)
        discriminator.setMode(.inference)
        let before = discriminator(input)
        XCTAssertEqual(before, layerByLayer)
        discriminator.foldBatchNorm()
        XCTAssertFalse(discriminator.namedState().contains { $0.name.hasSuffix("running_var") })
        // Folded: each convolution with its ReLU in one pass, upsampling into the concatenation.
        let after = discriminator(input)
        XCTAssertLessThan(maxRelativeDifference(after.scalars, before.scalars), 1e-5)
        XCTAssertGreaterThan(before.scalars.max()! - before.scalars.min()!, 1e-3, "a non-constant map")
    }
}
