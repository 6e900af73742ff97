#ifndef RSTPM_CPU_FEATURES_H
#define RSTPM_CPU_FEATURES_H

/// 1 when this CPU runs the AVX-512 kernels (AVX-512 F, BW, DQ, VL and FMA) and the
/// environment does not turn them off with RSTPM_KERNELS=generic; 0 otherwise, and the
/// engine then uses OpenBLAS and its portable Swift loops. Decided once per process.
int rstpm_avx512_enabled(void);

#endif
