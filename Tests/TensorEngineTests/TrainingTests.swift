import Foundation
import TensorEngine
import TestSupport
import XCTest

/// A conv-BN-ReLU-conv net trained 5 steps with SGD and with Adam, against PyTorch's losses and
/// final weights (Tests/Fixtures/engine_training.tensors); weights are loaded by state_dict name.
final class TrainingTests: XCTestCase {
    static let tolerance: Float = 1e-4

    func makeNet(loading fixture: TensorFixture) -> Sequential {
        let generator = SeededGenerator(seed: 0)
        let net = Sequential(named: [
            ("conv1", Conv2d(inputChannels: 3, outputChannels: 4, kernelSize: 3, padding: 1, bias: false, generator: generator)),
            ("bn1", BatchNorm2d(channels: 4)),
            ("relu", ReLU()),
            ("conv2", Conv2d(inputChannels: 4, outputChannels: 2, kernelSize: 3, stride: 2, padding: 1, generator: generator)),
        ])
        for (name, state) in net.namedState() {
            let entry = fixture["initial.\(name)"]
            // tensorfile.py stores PyTorch's 0-d num_batches_tracked as shape [1].
            XCTAssertEqual(entry.shape.reduce(1, *), state.value.count, name)
            XCTAssertEqual(entry.shape, state.value.shape == [] ? [1] : state.value.shape, name)
            state.value = Tensor(shape: state.value.shape, scalars: entry.values)
        }
        return net
    }

    func train(optimizerName: String, makeOptimizer: ([Parameter]) -> (step: () -> Void, zero: () -> Void)) throws {
        let fixture = try TensorFixture(named: "engine_training.tensors")
        XCTAssertEqual(fixture.version, 1)
        let net = makeNet(loading: fixture)
        let x = Tensor(shape: fixture["x"].shape, scalars: fixture["x"].values)
        let target = Tensor(shape: fixture["target"].shape, scalars: fixture["target"].values)
        let optimizer = makeOptimizer(net.parameters)
        let distance = HalfSquaredDistance(), mean = Mean()
        var losses: [Float] = []
        for _ in 0..<5 {
            optimizer.zero()
            let output = net.forward(x)
            losses.append(mean.forward(distance.forward(output, target)))
            _ = net.backward(distance.backward(mean.backward()).lhs)
            optimizer.step()
        }
        let expected = fixture["\(optimizerName).losses"].values
        print("\(optimizerName) losses: \(losses) (PyTorch \(expected))")
        let lossDifference = zip(losses, expected).map { abs($0 - $1) / abs($1) }.max()!
        print(String(format: "\(optimizerName) losses max relative difference %.3e", lossDifference))
        XCTAssertLessThanOrEqual(lossDifference, Self.tolerance)
        for (name, state) in net.namedState() {
            let difference = maxRelativeDifference(state.value.scalars, fixture["\(optimizerName).final.\(name)"].values)
            print(String(format: "\(optimizerName) final %-28@ max relative difference %.3e", name as NSString, difference))
            XCTAssertLessThanOrEqual(difference, Self.tolerance, name)
        }
    }

    func testSGDMatchesPyTorch() throws {
        try train(optimizerName: "sgd") { parameters in
            let sgd = SGD(parameters: parameters, learningRate: 0.1, momentum: 0.9, weightDecay: 1e-4)
            return (sgd.step, sgd.zeroGradients)
        }
    }

    func testAdamMatchesPyTorch() throws {
        try train(optimizerName: "adam") { parameters in
            let adam = Adam(parameters: parameters, learningRate: 0.01, betas: (0.9, 0.999), weightDecay: 1e-4)
            return (adam.step, adam.zeroGradients)
        }
    }
}
