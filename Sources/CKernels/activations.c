#include "activations.h"

#include <immintrin.h>

// Compiled per function for AVX-512 so the package still builds for any x86-64; the engine
// reaches these only through rstpm_avx512_kernels().
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define ALWAYS_INLINE static inline __attribute__((always_inline))

AVX512 ALWAYS_INLINE __mmask16 tail_lanes(long remaining) {
    return remaining >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << remaining) - 1);
}

// max/min return their second operand when either is NaN: x goes second, so NaN propagates
// (as torch.relu and the Swift loops).
AVX512 void rstpm_clamp_forward(const float *input, float *output, long count, float high) {
    const __m512 zero = _mm512_setzero_ps(), top = _mm512_set1_ps(high);
    long i = 0;
    for (; i + 32 <= count; i += 32) {
        _mm512_storeu_ps(output + i, _mm512_min_ps(top, _mm512_max_ps(zero, _mm512_loadu_ps(input + i))));
        _mm512_storeu_ps(output + i + 16, _mm512_min_ps(top, _mm512_max_ps(zero, _mm512_loadu_ps(input + i + 16))));
    }
    for (; i < count; i += 16) {
        __mmask16 m = tail_lanes(count - i);
        _mm512_mask_storeu_ps(output + i, m, _mm512_min_ps(top, _mm512_max_ps(zero, _mm512_maskz_loadu_ps(m, input + i))));
    }
}

AVX512 void rstpm_relu_backward(const float *output_gradient, const float *output, float *input_gradient, long count) {
    const __m512 zero = _mm512_setzero_ps();
    for (long i = 0; i < count; i += 16) {
        __mmask16 m = tail_lanes(count - i);
        __mmask16 pass = _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, output + i), zero, _CMP_GT_OQ);
        _mm512_mask_storeu_ps(input_gradient + i, m, _mm512_maskz_loadu_ps(pass, output_gradient + i));
    }
}

AVX512 void rstpm_relu6_backward(const float *output_gradient, const float *input, float *input_gradient, long count) {
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6);
    for (long i = 0; i < count; i += 16) {
        __mmask16 m = tail_lanes(count - i);
        __m512 x = _mm512_maskz_loadu_ps(m, input + i);
        __mmask16 pass = _mm512_mask_cmp_ps_mask(_mm512_mask_cmp_ps_mask(m, x, zero, _CMP_GT_OQ), x, six, _CMP_LT_OQ);
        _mm512_mask_storeu_ps(input_gradient + i, m, _mm512_maskz_loadu_ps(pass, output_gradient + i));
    }
}
