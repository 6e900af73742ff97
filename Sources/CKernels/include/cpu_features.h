#ifndef RSTPM_CPU_FEATURES_H
#define RSTPM_CPU_FEATURES_H

#include "deinterleave.h"
#include "depthwise.h"
#include "gemm.h"

/// One instruction set's kernels, with the semantics documented in gemm.h, depthwise.h, deinterleave.h,
/// batchnorm.h and activations.h. The engine picks one set at start-up (TensorEngine's
/// KernelRouting.swift) and calls every kernel through it; the generic set is the engine's
/// Swift loops and OpenBLAS, and has no table.
struct rstpm_kernel_set {
    const char *name;
    /// The product's register tile (rows, columns of C): blocks of C split at multiples of it
    /// leave no partial tiles inside, and rows of a packed A start at multiples of gemm_rows.
    long gemm_rows, gemm_columns;

    void (*sgemm)(int transpose_a, int transpose_b, long m, long n, long k, float alpha, const float *a, long lda,
                  const float *b, long ldb, float beta, float *c, long ldc);
    /// Packed A's layout belongs to its set: pack with the set that multiplies.
    long (*packed_a_floats)(long m, long k);
    void (*pack_a)(long m, long k, const float *a, long lda, float *panels);
    void (*sgemm_bias_clamp)(long m, long n, long k, const float *a, long lda, const struct rstpm_packed_a *packed_a,
                             const float *b, long ldb, const float *bias, float low, float high, float *c, long ldc);
    void (*convolution_bias_clamp)(long m, long n, long k, const float *a, long lda, const struct rstpm_packed_a *packed_a,
                                   const struct rstpm_convolution_input *input, long first_column, const float *bias, float low,
                                   float high, float *c, long ldc);

    void (*depthwise_forward)(const float *input, const float *weights, const float *bias, float *output, long first_plane,
                              long end_plane, int channels, int multiplier, int height, int width, int kernel, int stride,
                              int padding, int activation);
    void (*depthwise_forward_rows)(const struct rstpm_depthwise_rows *rows, const float *weights, const float *bias,
                                   long first_channel, long end_channel, int height, int width, int kernel, int stride,
                                   int padding, int activation);
    void (*depthwise_backward)(const float *input, const float *weights, const float *output_gradient, float *input_gradient,
                               float *weight_gradient, int batch, long first_channel, long end_channel, int channels,
                               int multiplier, int height, int width, int kernel, int stride, int padding);

    void (*batchnorm_statistics)(const float *input, float *mean, float *variance, int batch, long first_channel,
                                 long end_channel, int channels, long plane);
    void (*batchnorm_normalize)(const float *input, const float *mean, const float *scale, const float *shift, float *output,
                                int activation, int batch, long first_channel, long end_channel, int channels, long plane);
    void (*batchnorm_backward)(const float *input, const float *output_gradient, const float *mean, const float *reciprocal_std,
                               const float *scale, const float *shift, int activation, float *input_gradient, float *sum_dy,
                               float *sum_dy_xhat, int batch_statistics, int batch, long first_channel, long end_channel,
                               int channels, long plane);

    void (*deinterleave)(const float *row, long width, float *even, float *odd);

    void (*clamp_forward)(const float *input, float *output, long count, float high);
    void (*relu_backward)(const float *output_gradient, const float *output, float *input_gradient, long count);
    void (*relu6_backward)(const float *output_gradient, const float *input, float *input_gradient, long count);
};

/// The AVX-512 set (AVX-512 F, BW, DQ, VL and FMA), or NULL where this CPU lacks them.
const struct rstpm_kernel_set *rstpm_avx512_kernels(void);

/// The AVX-512 set with its inference products in bf16 (pack_a, sgemm_bias_clamp and
/// convolution_bias_clamp, see gemm.h), or NULL where this CPU lacks AVX-512 BF16. Its other
/// entries are the AVX-512 set's, f32.
const struct rstpm_kernel_set *rstpm_avx512_bf16_kernels(void);

/// The AVX2 + FMA set, or NULL where this CPU lacks them.
const struct rstpm_kernel_set *rstpm_avx2_kernels(void);

#endif
