import KernelSetTesting
import RSTPM
import TensorEngine
import TestSupport
import XCTest

/// S2 (both variants, with attention), the discriminator and the Eq. 1 fusion against PyTorch
/// (scripts/fixtures/make_rstpm_fixtures.py), under every kernel set this CPU runs.
final class NetworkParityTests: XCTestCase {
    private static let fixture = try! TensorFixture(named: "rstpm_networks.tensors")

    private func tensor(_ name: String) -> Tensor {
        let entry = Self.fixture[name]
        return Tensor(shape: entry.shape, scalars: entry.values)
    }

    private func load(_ layer: any Layer, prefix: String) {
        for (name, state) in layer.namedState() {
            let value = tensor("\(prefix).state.\(name)")
            XCTAssertEqual(state.value.count, value.count, "size of \(name)")
            state.value = value.reshaped(to: state.value.shape)  // the fixture stores scalars as [1]
        }
    }

    private func checkStudent(variant: ReconstructionVariant, prefix: String, modes: String) {
        let student = ReconstructionStudent(variant: variant, inputChannels: 8, outputChannels: [6, 5, 4],
                                            attentionModes: AttentionMode.modes(parsing: modes)!, attentionHiddenChannels: 3,
                                            generator: SeededGenerator(seed: 1))
        let fixtureNames = Set(Self.fixture.tensors.keys.filter { $0.hasPrefix("\(prefix).state.") })
        XCTAssertEqual(Set(student.namedState().map { "\(prefix).state.\($0.name)" }), fixtureNames, "state names match PyTorch")
        load(student, prefix: prefix)
        let outputs = student.forward(tensor("s2.input"), attentionSources: [tensor("s2.source0"), tensor("s2.source1")])
        var loss: Float = 0
        var gradients: [Tensor] = []
        for (index, output) in outputs.enumerated() {
            XCTAssertLessThan(maxRelativeDifference(output.scalars, tensor("\(prefix).output\(index)").scalars), 1e-5, "output \(index)")
            let (teacherNorm, studentNorm, distance, mean) = (L2Normalization(), L2Normalization(), HalfSquaredDistance(), Mean())
            loss += mean.forward(distance.forward(teacherNorm(tensor("s2.target\(index)")), studentNorm(output)))
            gradients.append(studentNorm.backward(distance.backward(mean.backward()).rhs))
        }
        XCTAssertEqual(loss, tensor("\(prefix).loss").scalars[0], accuracy: 1e-5)
        student.backward(outputGradients: gradients)
        var worst: Float = 0
        for (name, parameter) in student.namedParameters() {
            let difference = maxRelativeDifference(parameter.gradient.scalars, tensor("\(prefix).grad.\(name)").scalars)
            XCTAssertLessThanOrEqual(difference, 1e-4, "gradient of \(name)")
            worst = max(worst, difference)
        }
        XCTAssertNotNil(student.lastAttentionMeans[0])
        print("S2 \(variant.rawValue) \(modes): worst gradient relative difference \(worst)")
    }

    func testReverseDistillationStudentGradientsMatchPyTorch() throws {
        try forEachKernelSet { _ in
            checkStudent(variant: .reverseDistillation, prefix: "rd", modes: "*+")
        }
    }

    func testPaperStudentGradientsMatchPyTorch() throws {
        try forEachKernelSet { _ in
            checkStudent(variant: .paper, prefix: "paper", modes: "+*")
        }
    }

    func testDiscriminatorMatchesPyTorch() throws {
        try forEachKernelSet { _ in
            let discriminator = Discriminator(baseWidth: 4, levels: 3, generator: SeededGenerator(seed: 2))
            load(discriminator, prefix: "unet")
            let input = tensor("unet.input")
            let output = discriminator(input)
            XCTAssertLessThan(maxRelativeDifference(output.scalars, tensor("unet.output").scalars), 1e-5)
            let focal = FocalLoss()
            let loss = focal.forward(probabilities: output, mask: tensor("unet.mask"))
            XCTAssertEqual(loss, tensor("unet.loss").scalars[0], accuracy: 1e-5)
            let inputGradient = discriminator.backward(focal.backward())
            XCTAssertLessThan(maxRelativeDifference(inputGradient.scalars, tensor("unet.input_grad").scalars), 1e-4)
            for (name, parameter) in discriminator.namedParameters() {
                XCTAssertLessThanOrEqual(maxRelativeDifference(parameter.gradient.scalars, tensor("unet.grad.\(name)").scalars), 1e-4, name)
            }
        }
    }

    func testFusedMapIsEquationOne() throws {
        try forEachKernelSet { _ in
            let levels = (1...6).map { tensor("fusion.omega\($0)") }
            let st = MapFusion.studentTeacherMap(levelMaps: levels, height: 32, width: 64)
            XCTAssertLessThan(maxRelativeDifference(st.scalars, tensor("fusion.st").scalars), 1e-5)
            let final = st * MapFusion.resized(tensor("fusion.omega7_small"), height: 32, width: 64)
            XCTAssertLessThan(maxRelativeDifference(final.scalars, tensor("fusion.final").scalars), 1e-5)
            let expectedScores = tensor("fusion.score_mean21").scalars
            let scores = MapFusion.scores(of: final, rule: .meanFilter21)
            for (score, expected) in zip(scores, expectedScores) { XCTAssertEqual(score, expected, accuracy: 1e-5 * expected) }
            XCTAssertEqual(MapFusion.scores(of: final, rule: .max), [final.batchItem(0).max(), final.batchItem(1).max()])
        }
    }
}
