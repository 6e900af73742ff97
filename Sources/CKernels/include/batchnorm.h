#ifndef RSTPM_BATCHNORM_H
#define RSTPM_BATCHNORM_H

#include "depthwise.h"  // RSTPM_ACTIVATION_*

// BatchNorm2d over NCHW tensors, AVX-512 + FMA: per-channel statistics, the normalisation
// with the affine parameters, and the backward. Call only through
// rstpm_avx512_kernels() (cpu_features.h); batchnorm_avx2.c has the same functions for AVX2.
// Every function handles channels [first_channel, end_channel) of an (N, channels, plane)
// tensor over all N items; distinct channel ranges touch distinct memory, so ranges can run on
// different threads.

/// mean[c] and the biased variance[c] of each channel's N * plane values: two passes (mean,
/// then squared deviations from it), 64 float partial sums per plane, planes summed in double.
void rstpm_batchnorm_statistics(const float *input, float *mean, float *variance, int batch,
                                long first_channel, long end_channel, int channels, long plane);

/// output = activation((input - mean[c]) * scale[c] + shift[c]): with scale = gamma *
/// reciprocal std and shift = beta, the normalisation, the affine map and a following ReLU or
/// ReLU6 in one pass (the centring stays a separate subtraction, so a large mean does not
/// cancel against the shift).
void rstpm_batchnorm_normalize(const float *input, const float *mean, const float *scale, const float *shift, float *output,
                               int activation, int batch, long first_channel, long end_channel, int channels, long plane);

/// Backward from the input (xhat = (x - mean[c]) * reciprocal_std[c] is recomputed, not cached),
/// through the activation that rstpm_batchnorm_normalize applied with the same mean, scale and
/// shift (dz = dy where the recomputed pre-activation z is inside the activation's open
/// interval, else 0; dz = dy without one): writes sum_dy[c] = sum dz and sum_dy_xhat[c] =
/// sum dz * xhat, and WRITES input_gradient (its old contents are not read) as scale[c] * (dz -
/// mean(dz) - xhat * mean(dz * xhat)) with batch statistics, or scale[c] * dz with running
/// statistics (batch_statistics 0).
void rstpm_batchnorm_backward(const float *input, const float *output_gradient, const float *mean,
                              const float *reciprocal_std, const float *scale, const float *shift, int activation,
                              float *input_gradient, float *sum_dy, float *sum_dy_xhat, int batch_statistics, int batch,
                              long first_channel, long end_channel, int channels, long plane);

#endif
