#ifndef RSTPM_DEINTERLEAVE_H
#define RSTPM_DEINTERLEAVE_H

/// Splits `width` floats into their even and odd columns, so that stride-2 windows read
/// contiguously: even[j] = row[2j] for 2j < width, odd[j] = row[2j + 1] for 2j + 1 < width.
/// AVX-512 (rstpm_avx512_kernels(), cpu_features.h); rstpm_avx2_deinterleave the same on AVX2.
void rstpm_deinterleave(const float *row, long width, float *even, float *odd);

#endif
