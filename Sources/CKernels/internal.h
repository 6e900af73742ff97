#ifndef RSTPM_INTERNAL_H
#define RSTPM_INTERNAL_H

// Shared by the kernel files, not part of the module's interface: scratch memory, the
// product's edge cases, and the AVX2 + FMA set, which the engine reaches only through
// rstpm_avx2_kernels() (cpu_features.h). The AVX2 functions have the semantics of the AVX-512
// ones of the same name in gemm.h, depthwise.h, batchnorm.h and activations.h.

#include <stddef.h>

#include "depthwise.h"
#include "gemm.h"

/// This thread's packing scratch of the products, grown on demand (freed when the thread exits).
float *rstpm_gemm_scratch(size_t floats);

/// This thread's scratch of the depthwise kernels, grown on demand.
float *rstpm_depthwise_scratch(size_t floats);

/// No product to add (k == 0 or alpha == 0): C = clamp(beta * C + bias), beta == 0 not reading C.
void rstpm_gemm_scale_only(long m, long n, float beta, const float *bias, int clamp, float low, float high, float *c, long ldc);

/// 1 unless (low, high) is (-inf, inf): the product then clamps its output.
int rstpm_gemm_clamps(float low, float high);

// What the micro-kernel does with a finished tile besides adding alpha * A*B: the first block
// of k scales or replaces C (beta) and adds the bias, the last one clamps.
struct tile_update {
    float alpha, beta;
    int first, last;
    const float *bias;  // indexed by the tile's rows; NULL: none
    int clamp;
    float low, high;
};

// Where the product's B comes from: a matrix (transposed or not), or a convolution's input
// unfolded on the fly.
struct b_source {
    int transpose;
    const float *b;
    long ldb;
    const struct rstpm_convolution_input *convolution;
    long first_column;
};

// The AVX2 product's register tile: 6 rows by 16 columns of C (12 of the 16 ymm registers).
#define RSTPM_AVX2_GEMM_ROWS 6
#define RSTPM_AVX2_GEMM_COLUMNS 16

void rstpm_avx2_sgemm(int transpose_a, int transpose_b, long m, long n, long k, float alpha, const float *a, long lda,
                      const float *b, long ldb, float beta, float *c, long ldc);
long rstpm_avx2_packed_a_floats(long m, long k);
void rstpm_avx2_pack_a(long m, long k, const float *a, long lda, float *panels);
void rstpm_avx2_sgemm_bias_clamp(long m, long n, long k, const float *a, long lda, const struct rstpm_packed_a *packed_a,
                                 const float *b, long ldb, const float *bias, float low, float high, float *c, long ldc);
void rstpm_avx2_convolution_bias_clamp(long m, long n, long k, const float *a, long lda, const struct rstpm_packed_a *packed_a,
                                       const struct rstpm_convolution_input *input, long first_column, const float *bias,
                                       float low, float high, float *c, long ldc);

void rstpm_avx2_depthwise_forward(const float *input, const float *weights, const float *bias, float *output, long first_plane,
                                  long end_plane, int channels, int multiplier, int height, int width, int kernel, int stride,
                                  int padding, int activation);
void rstpm_avx2_depthwise_forward_rows(const struct rstpm_depthwise_rows *rows, const float *weights, const float *bias,
                                       long first_channel, long end_channel, int height, int width, int kernel, int stride,
                                       int padding, int activation);
void rstpm_avx2_deinterleave(const float *row, long width, float *even, float *odd);
void rstpm_avx2_depthwise_backward(const float *input, const float *weights, const float *output_gradient, float *input_gradient,
                                   float *weight_gradient, int batch, long first_channel, long end_channel, int channels,
                                   int multiplier, int height, int width, int kernel, int stride, int padding);

void rstpm_avx2_batchnorm_statistics(const float *input, float *mean, float *variance, int batch, long first_channel,
                                     long end_channel, int channels, long plane);
void rstpm_avx2_batchnorm_normalize(const float *input, const float *mean, const float *scale, const float *shift, float *output,
                                    int activation, int batch, long first_channel, long end_channel, int channels, long plane);
void rstpm_avx2_batchnorm_backward(const float *input, const float *output_gradient, const float *mean,
                                   const float *reciprocal_std, const float *scale, const float *shift, int activation,
                                   float *input_gradient, float *sum_dy, float *sum_dy_xhat, int batch_statistics, int batch,
                                   long first_channel, long end_channel, int channels, long plane);

void rstpm_avx2_clamp_forward(const float *input, float *output, long count, float high);
void rstpm_avx2_relu_backward(const float *output_gradient, const float *output, float *input_gradient, long count);
void rstpm_avx2_relu6_backward(const float *output_gradient, const float *input, float *input_gradient, long count);

#endif
