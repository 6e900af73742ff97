#include "activations.h"
#include "avx2_lanes.h"
#include "internal.h"

// The AVX2 ReLU and ReLU6 kernels (activations.c's, on 8-lane vectors). max/min return their
// second operand when either is NaN: x goes second, so NaN propagates.

AVX2 void rstpm_avx2_clamp_forward(const float *input, float *output, long count, float high) {
    const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(high);
    long i = 0;
    for (; i + 16 <= count; i += 16) {
        _mm256_storeu_ps(output + i, _mm256_min_ps(top, _mm256_max_ps(zero, _mm256_loadu_ps(input + i))));
        _mm256_storeu_ps(output + i + 8, _mm256_min_ps(top, _mm256_max_ps(zero, _mm256_loadu_ps(input + i + 8))));
    }
    for (; i < count; i += 8) store_first(output + i, count - i, _mm256_min_ps(top, _mm256_max_ps(zero, load_first(input + i, count - i))));
}

AVX2 void rstpm_avx2_relu_backward(const float *output_gradient, const float *output, float *input_gradient, long count) {
    const __m256 zero = _mm256_setzero_ps();
    for (long i = 0; i < count; i += 8) {
        __m256 pass = _mm256_cmp_ps(load_first(output + i, count - i), zero, _CMP_GT_OQ);
        store_first(input_gradient + i, count - i, _mm256_and_ps(pass, load_first(output_gradient + i, count - i)));
    }
}

AVX2 void rstpm_avx2_relu6_backward(const float *output_gradient, const float *input, float *input_gradient, long count) {
    const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6);
    for (long i = 0; i < count; i += 8) {
        __m256 x = load_first(input + i, count - i);
        __m256 pass = _mm256_and_ps(_mm256_cmp_ps(x, zero, _CMP_GT_OQ), _mm256_cmp_ps(x, six, _CMP_LT_OQ));
        store_first(input_gradient + i, count - i, _mm256_and_ps(pass, load_first(output_gradient + i, count - i)));
    }
}
