#ifndef RSTPM_GEMM_H
#define RSTPM_GEMM_H

/// Row-major single-precision matrix product with cblas_sgemm's arguments:
/// `C (m, n) = alpha * op(A) * op(B) + beta * C`, op(X) = X, or X transposed when its flag is
/// nonzero (A is then stored (k, m), B (n, k)). beta == 0 does not read C. Single-threaded (the
/// engine splits products over its workers); AVX-512: call it only through
/// rstpm_avx512_kernels() (cpu_features.h; gemm_avx2.c has the same products for AVX2).
void rstpm_sgemm(int transpose_a, int transpose_b, long m, long n, long k, float alpha,
                 const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc);

/// A matrix A (rows, k) packed once by rstpm_pack_a, for products that reuse it (a frozen
/// layer's weights): the products below then read rows first_row ..< first_row + m of it
/// (first_row a multiple of 14, the kernel's register tile) instead of packing A again.
struct rstpm_packed_a {
    const float *panels;
    long rows, first_row;
};

/// Floats that rstpm_pack_a writes for A (m, k).
long rstpm_packed_a_floats(long m, long k);

/// Packs row-major A (m, k) into the panels the products read (the layout follows the register
/// tile of the set: pack with the set that multiplies). AVX-512.
void rstpm_pack_a(long m, long k, const float *a, long lda, float *panels);

/// `C (m, n) = clamp(bias[i] + A (m, k) * B (k, n), low, high)`, no transposes, bias one value
/// per row of C (NULL: none): a convolution with its bias and ReLU/ReLU6 applied to each tile
/// of C while it is still in registers. Pass -INFINITY/INFINITY for no activation. A comes
/// packed from `packed_a` unless that is NULL. AVX-512.
void rstpm_sgemm_bias_clamp(long m, long n, long k, const float *a, long lda, const struct rstpm_packed_a *packed_a,
                            const float *b, long ldb, const float *bias, float low, float high, float *c, long ldc);

/// One item (one group) of a convolution's input (kernel at most 7), seen as the matrix its im2col unfolds: row
/// c * kernel^2 + ky * kernel + kx, column oy * output_width + ox holds input channel c at
/// (oy * stride + ky - padding, ox * stride + kx - padding), zero outside. `planes` holds the
/// input (channels, height, width) with each row split into its stride phases: row iy is
/// `stride` runs of ceil(width / stride) floats, run q holding columns q, q + stride, ... (for
/// stride 1 simply the planes), so that adjacent outputs read adjacent floats.
struct rstpm_convolution_input {
    const float *planes;
    long height, width, kernel, stride, padding, output_width;
};

/// rstpm_sgemm_bias_clamp with B the columns `first_column ..< first_column + n` of `input`'s
/// unfolded matrix, read straight from the planes while packing (no im2col buffer):
/// `C (m, n) = clamp(bias[i] + A (m, k) * columns, low, high)`. AVX-512.
void rstpm_convolution_bias_clamp(long m, long n, long k, const float *a, long lda, const struct rstpm_packed_a *packed_a,
                                  const struct rstpm_convolution_input *input, long first_column,
                                  const float *bias, float low, float high, float *c, long ldc);

/// bf16 variants of rstpm_pack_a, rstpm_sgemm_bias_clamp and rstpm_convolution_bias_clamp (the
/// inference products): A and B are rounded to bf16 (to nearest even) while they are packed, and
/// each product of two k is summed in f32 (vdpbf16ps); bias and clamp as in f32. A packed by
/// rstpm_bf16_pack_a takes as many floats as rstpm_packed_a_floats says and is read only by these
/// products. AVX-512 BF16: call them only through rstpm_avx512_bf16_kernels() (cpu_features.h).
void rstpm_bf16_pack_a(long m, long k, const float *a, long lda, float *panels);
void rstpm_bf16_sgemm_bias_clamp(long m, long n, long k, const float *a, long lda, const struct rstpm_packed_a *packed_a,
                                 const float *b, long ldb, const float *bias, float low, float high, float *c, long ldc);
void rstpm_bf16_convolution_bias_clamp(long m, long n, long k, const float *a, long lda, const struct rstpm_packed_a *packed_a,
                                       const struct rstpm_convolution_input *input, long first_column,
                                       const float *bias, float low, float high, float *c, long ldc);

#endif
