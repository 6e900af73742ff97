import Foundation
import KernelSetTesting
import TensorEngine
import TestSupport
import XCTest

/// Every op against PyTorch (Tests/Fixtures/engine_ops.tensors from
/// scripts/fixtures/make_engine_fixtures.py): output, input gradients and parameter gradients,
/// each within 1e-4 of the tensor's largest magnitude.
final class ParityTests: XCTestCase {
    static let fixture = Result { try TensorFixture(named: "engine_ops.tensors") }
    static let tolerance: Float = 1e-4

    func fixture() throws -> TensorFixture {
        let fixture = try Self.fixture.get()
        XCTAssertEqual(fixture.version, 1, "engine_ops.tensors: regenerate with scripts/fixtures/make_engine_fixtures.py")
        return fixture
    }

    func tensor(_ fixture: TensorFixture, _ name: String) -> Tensor {
        let entry = fixture[name]
        return Tensor(shape: entry.shape, scalars: entry.values)
    }

    func check(_ actual: Tensor, _ fixture: TensorFixture, _ name: String, file: StaticString = #filePath, line: UInt = #line) {
        let expected = fixture[name]
        XCTAssertEqual(actual.shape, expected.shape, "\(name) shape", file: file, line: line)
        guard actual.shape == expected.shape else { return }
        let difference = maxRelativeDifference(actual.scalars, expected.values)
        print(String(format: "parity %-36@ max relative difference %.3e", name as NSString, difference))
        XCTAssertLessThanOrEqual(difference, Self.tolerance, name, file: file, line: line)
    }

    /// Forward x, backward dy, and compare y, dx and every listed parameter gradient.
    func checkLayer(_ layer: any Layer, _ fixture: TensorFixture, _ name: String, file: StaticString = #filePath, line: UInt = #line) {
        let y = layer.forward(tensor(fixture, "\(name).x"))
        check(y, fixture, "\(name).y", file: file, line: line)
        let dx = layer.backward(tensor(fixture, "\(name).dy"))
        check(dx, fixture, "\(name).dx", file: file, line: line)
        for parameter in layer.ownParameters {
            check(parameter.gradient, fixture, "\(name).d\(parameter.name)", file: file, line: line)
        }
    }

    func convolution(_ f: TensorFixture, _ name: String, stride: Int = 1, padding: Int = 0, groups: Int = 1) -> Conv2d {
        let weight = tensor(f, "\(name).weight")
        let bias = f.tensors["\(name).bias"].map { Tensor(shape: $0.shape, scalars: $0.values) }
        return Conv2d(inputChannels: weight.shape[1] * groups, outputChannels: weight.shape[0], kernelSize: weight.shape[2],
                      stride: stride, padding: padding, groups: groups, weight: weight, bias: bias)
    }

    func testConvolutions() throws {
        try forEachKernelSet { _ in
            let f = try fixture()
            checkLayer(convolution(f, "conv", padding: 1), f, "conv")
            checkLayer(convolution(f, "conv_strided", stride: 2, padding: 1), f, "conv_strided")
            checkLayer(convolution(f, "conv_stem", stride: 2, padding: 3), f, "conv_stem")
            checkLayer(convolution(f, "conv_grouped", padding: 1, groups: 2), f, "conv_grouped")
            checkLayer(convolution(f, "conv_depthwise", stride: 2, padding: 1, groups: 6), f, "conv_depthwise")
            checkLayer(convolution(f, "conv_depthwise5", padding: 2, groups: 4), f, "conv_depthwise5")
            checkLayer(convolution(f, "conv_pointwise"), f, "conv_pointwise")
            checkLayer(convolution(f, "conv_pointwise_strided", stride: 2), f, "conv_pointwise_strided")
        }
    }

    func testTransposedConvolutions() throws {
        let f = try fixture()
        for (name, padding, outputPadding) in [("convt_k2s2", 0, 0), ("convt_k3s2p1op1", 1, 1)] {
            let weight = tensor(f, "\(name).weight")
            let layer = ConvTranspose2d(inputChannels: weight.shape[0], outputChannels: weight.shape[1], kernelSize: weight.shape[2],
                                        stride: 2, padding: padding, outputPadding: outputPadding,
                                        weight: weight, bias: tensor(f, "\(name).bias"))
            checkLayer(layer, f, name)
        }
    }

    func testBatchNorm() throws {
        try forEachKernelSet { _ in
            let f = try fixture()
            for (name, mode) in [("bn_train", LayerMode.training), ("bn_train_eps3", .training), ("bn_eval", .evaluation)] {
                let layer = BatchNorm2d(channels: 4, epsilon: f["\(name).eps"].values[0])
                layer.weight.value = tensor(f, "\(name).weight")
                layer.bias.value = tensor(f, "\(name).bias")
                layer.runningMean.value = tensor(f, "\(name).running_mean")
                layer.runningVariance.value = tensor(f, "\(name).running_var")
                layer.setMode(mode)
                checkLayer(layer, f, name)
                check(layer.runningMean.value, f, "\(name).running_mean_after")
                check(layer.runningVariance.value, f, "\(name).running_var_after")
                XCTAssertEqual(layer.batchesTracked.value.scalars, f["\(name).num_batches_tracked_after"].values)
            }
        }
    }

    func testActivationsPoolingAndLinear() throws {
        try forEachKernelSet { _ in
            let f = try fixture()
            checkLayer(ReLU(), f, "relu")
            checkLayer(ReLU6(), f, "relu6")
            checkLayer(Sigmoid(), f, "sigmoid")
            checkLayer(MaxPool2d(kernelSize: 3, stride: 2, padding: 1), f, "maxpool")
            checkLayer(AvgPool2d(kernelSize: 2, stride: 2), f, "avgpool")
            checkLayer(AvgPool2d(kernelSize: 3, stride: 1, padding: 1), f, "avgpool_padded")
            checkLayer(GlobalAveragePool(), f, "gap")
            let linear = Linear(inputFeatures: 6, outputFeatures: 4, weight: tensor(f, "linear.weight"), bias: tensor(f, "linear.bias"))
            checkLayer(linear, f, "linear")
        }
    }

    func testResizing() throws {
        let f = try fixture()
        for name in ["bilinear_up", "bilinear_up_odd", "bilinear_down", "bilinear_down_odd"] {
            let shape = f["\(name).y"].shape
            checkLayer(BilinearResize(outputHeight: shape[2], outputWidth: shape[3]), f, name)
        }
        checkLayer(NearestResize(outputHeight: 8, outputWidth: 10), f, "nearest")
    }

    func testTwoInputOps() throws {
        let f = try fixture()
        let concatenation = ChannelConcatenation()
        check(concatenation.forward([tensor(f, "concat.a"), tensor(f, "concat.b")]), f, "concat.y")
        let parts = concatenation.backward(tensor(f, "concat.dy"))
        check(parts[0], f, "concat.da")
        check(parts[1], f, "concat.db")

        for name in ["mul_broadcast", "mul"] {
            let multiplication = Multiplication()
            check(multiplication.forward(tensor(f, "\(name).x"), tensor(f, "\(name).m")), f, "\(name).y")
            let (dx, dm) = multiplication.backward(tensor(f, "\(name).dy"))
            check(dx, f, "\(name).dx")
            check(dm, f, "\(name).dm")
        }

        let distance = HalfSquaredDistance()
        check(distance.forward(tensor(f, "distance.a"), tensor(f, "distance.b")), f, "distance.y")
        let (da, db) = distance.backward(tensor(f, "distance.dy"))
        check(da, f, "distance.da")
        check(db, f, "distance.db")
    }

    func testNormalizationAndLosses() throws {
        let f = try fixture()
        checkLayer(L2Normalization(), f, "normalize")
        checkLayer(L2Normalization(), f, "normalize_zero")

        let mean = Mean()
        check(Tensor(shape: [1], scalars: [mean.forward(tensor(f, "mean.x"))]), f, "mean.y")
        check(mean.backward(), f, "mean.dx")

        let focal = FocalLoss()
        let loss = focal.forward(probabilities: tensor(f, "focal.p"), mask: tensor(f, "focal.mask"))
        check(Tensor(shape: [1], scalars: [loss]), f, "focal.y")
        check(focal.backward(), f, "focal.dp")
    }
}
