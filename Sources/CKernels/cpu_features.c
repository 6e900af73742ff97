#include "cpu_features.h"

#include "activations.h"
#include "internal.h"
#include "batchnorm.h"
#include "depthwise.h"

#include <pthread.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

// The kernels are compiled per function for their instruction set (target attributes), so
// the package still builds for, and runs on, any x86-64; these checks hand a set out only
// where its instructions run.

static const struct rstpm_kernel_set avx512 = {
    .name = "avx512",
    .gemm_rows = 14,
    .gemm_columns = 32,
    .sgemm = rstpm_sgemm,
    .packed_a_floats = rstpm_packed_a_floats,
    .pack_a = rstpm_pack_a,
    .sgemm_bias_clamp = rstpm_sgemm_bias_clamp,
    .convolution_bias_clamp = rstpm_convolution_bias_clamp,
    .depthwise_forward = rstpm_depthwise_forward,
    .depthwise_forward_rows = rstpm_depthwise_forward_rows,
    .depthwise_backward = rstpm_depthwise_backward,
    .batchnorm_statistics = rstpm_batchnorm_statistics,
    .batchnorm_normalize = rstpm_batchnorm_normalize,
    .batchnorm_backward = rstpm_batchnorm_backward,
    .deinterleave = rstpm_deinterleave,
    .clamp_forward = rstpm_clamp_forward,
    .relu_backward = rstpm_relu_backward,
    .relu6_backward = rstpm_relu6_backward,
};

static const struct rstpm_kernel_set avx2 = {
    .name = "avx2",
    .gemm_rows = RSTPM_AVX2_GEMM_ROWS,
    .gemm_columns = RSTPM_AVX2_GEMM_COLUMNS,
    .sgemm = rstpm_avx2_sgemm,
    .packed_a_floats = rstpm_avx2_packed_a_floats,
    .pack_a = rstpm_avx2_pack_a,
    .sgemm_bias_clamp = rstpm_avx2_sgemm_bias_clamp,
    .convolution_bias_clamp = rstpm_avx2_convolution_bias_clamp,
    .depthwise_forward = rstpm_avx2_depthwise_forward,
    .depthwise_forward_rows = rstpm_avx2_depthwise_forward_rows,
    .depthwise_backward = rstpm_avx2_depthwise_backward,
    .batchnorm_statistics = rstpm_avx2_batchnorm_statistics,
    .batchnorm_normalize = rstpm_avx2_batchnorm_normalize,
    .batchnorm_backward = rstpm_avx2_batchnorm_backward,
    .deinterleave = rstpm_avx2_deinterleave,
    .clamp_forward = rstpm_avx2_clamp_forward,
    .relu_backward = rstpm_avx2_relu_backward,
    .relu6_backward = rstpm_avx2_relu6_backward,
};

static int has_avx512(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

// AVX512_BF16 is CPUID leaf 7, subleaf 1, EAX bit 5 (the compiler's feature checks do not
// all know it).
static int has_avx512_bf16(void) {
#if defined(__x86_64__)
    unsigned int eax, ebx, ecx, edx;
    if (!has_avx512() || !__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return 0;
    return (eax >> 5) & 1;
#else
    return 0;
#endif
}

static int has_avx2(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

const struct rstpm_kernel_set *rstpm_avx512_kernels(void) { return has_avx512() ? &avx512 : NULL; }

// The AVX-512 set with its three inference products in bf16: copied from it once, so that the
// two tables cannot drift apart.
static struct rstpm_kernel_set avx512_bf16;

static void make_avx512_bf16(void) {
    avx512_bf16 = avx512;
    avx512_bf16.name = "avx512-bf16";
    avx512_bf16.pack_a = rstpm_bf16_pack_a;
    avx512_bf16.sgemm_bias_clamp = rstpm_bf16_sgemm_bias_clamp;
    avx512_bf16.convolution_bias_clamp = rstpm_bf16_convolution_bias_clamp;
}

const struct rstpm_kernel_set *rstpm_avx512_bf16_kernels(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (!has_avx512_bf16()) return NULL;
    pthread_once(&once, make_avx512_bf16);
    return &avx512_bf16;
}

const struct rstpm_kernel_set *rstpm_avx2_kernels(void) { return has_avx2() ? &avx2 : NULL; }
