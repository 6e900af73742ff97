import CKernels

/// The BatchNorm2d kernels of a C kernel set (batchnorm.c, batchnorm_avx2.c), used instead of
/// BatchNorm2d's Swift loops where the engine's set has them (see KernelRouting). Each call
/// splits the channels over the engine's workers.
enum BatchNormAcceleration {
    /// Per-channel mean and biased variance of an (N, C, H, W) tensor.
    static func statistics(_ c: rstpm_kernel_set, _ input: Tensor, mean: inout [Float], variance: inout [Float]) {
        let (N, C, plane) = (input.shape[0], input.shape[1], input.shape[2] * input.shape[3])
        input.scalars.withUnsafeBufferPointer { x in
            mean.withUnsafeMutableBufferPointer { m in
                variance.withUnsafeMutableBufferPointer { v in
                    parallelRanges(count: C) { range in
                        c.batchnorm_statistics(x.baseAddress!, m.baseAddress!, v.baseAddress!, Int32(N),
                                                   range.lowerBound, range.upperBound, Int32(C), plane)
                    }
                }
            }
        }
    }

    /// output = activation((input - mean[c]) * scale[c] + shift[c]), all of `output` written.
    static func normalize(_ c: rstpm_kernel_set, _ input: Tensor, mean: [Float], scale: [Float], shift: [Float], activation: FusedActivation,
                          into output: inout Tensor) {
        let (N, C, plane) = (input.shape[0], input.shape[1], input.shape[2] * input.shape[3])
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                mean.withUnsafeBufferPointer { m in
                    scale.withUnsafeBufferPointer { a in
                        shift.withUnsafeBufferPointer { b in
                            parallelRanges(count: C) { range in
                                c.batchnorm_normalize(x.baseAddress!, m.baseAddress!, a.baseAddress!, b.baseAddress!, y.baseAddress!,
                                                          activation.kernelCode, Int32(N), range.lowerBound, range.upperBound, Int32(C), plane)
                            }
                        }
                    }
                }
            }
        }
    }

    /// Through the activation that `normalize` applied with the same mean, scale and shift:
    /// writes all of `inputGradient` and the per-channel sums of dz and dz * xhat.
    static func backward(_ c: rstpm_kernel_set, _ input: Tensor, _ outputGradient: Tensor, mean: [Float], reciprocalStd: [Float], scale: [Float],
                         shift: [Float], activation: FusedActivation, batchStatistics: Bool, inputGradient: inout Tensor,
                         sumGradient: inout [Float], sumGradientNormalized: inout [Float]) {
        let (N, C, plane) = (input.shape[0], input.shape[1], input.shape[2] * input.shape[3])
        // The per-channel arrays are small: contiguous copies keep the pointer nesting short.
        let channelValues = mean + reciprocalStd + scale + shift
        input.scalars.withUnsafeBufferPointer { x in
            outputGradient.scalars.withUnsafeBufferPointer { dy in
                inputGradient.scalars.withUnsafeMutableBufferPointer { dx in
                    channelValues.withUnsafeBufferPointer { values in
                        sumGradient.withUnsafeMutableBufferPointer { sumDy in
                            sumGradientNormalized.withUnsafeMutableBufferPointer { sumDyXhat in
                                let (m, r, a, b) = (values.baseAddress!, values.baseAddress! + C, values.baseAddress! + 2 * C, values.baseAddress! + 3 * C)
                                parallelRanges(count: C) { range in
                                    c.batchnorm_backward(x.baseAddress!, dy.baseAddress!, m, r, a, b, activation.kernelCode, dx.baseAddress!,
                                                             sumDy.baseAddress!, sumDyXhat.baseAddress!, batchStatistics ? 1 : 0, Int32(N),
                                                             range.lowerBound, range.upperBound, Int32(C), plane)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
