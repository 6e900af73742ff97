import CKernels

/// The depthwise kernels of a C kernel set (depthwise.c, depthwise_avx2.c), used instead of the
/// Swift loops of ConvolutionKernels.swift where the engine's set has them (see KernelRouting)
/// and the geometry is one they handle (stride 1 or 2, padding below the kernel size).
enum DepthwiseAcceleration {
    static func handles(_ g: WindowGeometry) -> Bool {
        kernels.c != nil && rstpm_depthwise_supported(Int32(g.kernel), Int32(g.stride), Int32(g.padding)) != 0
    }

    /// All N * channels * multiplier output planes, split over the engine's workers.
    static func forward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>,
                        N: Int, channels: Int, multiplier: Int, g: WindowGeometry, activation: FusedActivation) {
        let forward = kernels.c!.depthwise_forward!
        parallelRanges(count: N * channels * multiplier) { range in
            forward(x, w, bias, y, range.lowerBound, range.upperBound, Int32(channels), Int32(multiplier),
                                    Int32(g.height), Int32(g.width), Int32(g.kernel), Int32(g.stride), Int32(g.padding), activation.kernelCode)
        }
    }

    /// Writes the input gradient (all of `dx`) and adds the weight gradient; split by input
    /// channel, so each worker owns its dx planes and its weights' gradients.
    static func backward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
                         _ dx: UnsafeMutablePointer<Float>, _ dw: UnsafeMutablePointer<Float>,
                         N: Int, channels: Int, multiplier: Int, g: WindowGeometry) {
        let backward = kernels.c!.depthwise_backward!
        parallelRanges(count: channels) { range in
            backward(x, w, dy, dx, dw, Int32(N), range.lowerBound, range.upperBound, Int32(channels), Int32(multiplier),
                                     Int32(g.height), Int32(g.width), Int32(g.kernel), Int32(g.stride), Int32(g.padding))
        }
    }
}
