#include "batchnorm.h"

#include <immintrin.h>

// Compiled per function for AVX-512 so the package still builds for any x86-64; the engine
// calls these only after rstpm_avx512_enabled().
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/// Mask of the first `count` lanes (count < 16).
AVX512 ALWAYS_INLINE __mmask16 first_lanes(long count) { return (__mmask16)((1u << count) - 1); }

/// sum_i x[i] over one plane: four independent 16-lane accumulators (the adds' latency is
/// hidden, and each lane adds only plane / 64 values in float).
AVX512 static double plane_sum(const float *x, long plane) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    long i = 0;
    for (; i + 64 <= plane; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(x + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(x + i + 48));
    }
    for (; i + 16 <= plane; i += 16) s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
    if (i < plane) s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(first_lanes(plane - i), x + i));
    return (double)_mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/// sum_i (x[i] - center)^2 over one plane, accumulated as plane_sum.
AVX512 static double plane_squared_deviation(const float *x, float center, long plane) {
    const __m512 c = _mm512_set1_ps(center);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    long i = 0;
    for (; i + 64 <= plane; i += 64) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), c), d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), c);
        __m512 d2 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 32), c), d3 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 48), c);
        s0 = _mm512_fmadd_ps(d0, d0, s0);
        s1 = _mm512_fmadd_ps(d1, d1, s1);
        s2 = _mm512_fmadd_ps(d2, d2, s2);
        s3 = _mm512_fmadd_ps(d3, d3, s3);
    }
    for (; i + 16 <= plane; i += 16) {
        __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + i), c);
        s0 = _mm512_fmadd_ps(d, d, s0);
    }
    if (i < plane) {
        // Masked-off lanes must contribute 0, not center^2.
        __mmask16 m = first_lanes(plane - i);
        __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), c);
        s1 = _mm512_fmadd_ps(d, d, s1);
    }
    return (double)_mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

AVX512 void rstpm_batchnorm_statistics(const float *input, float *mean, float *variance, int batch,
                                       long first_channel, long end_channel, int channels, long plane) {
    const double count = (double)batch * (double)plane;
    for (long c = first_channel; c < end_channel; c++) {
        double sum = 0;
        for (int n = 0; n < batch; n++) sum += plane_sum(input + (n * channels + c) * plane, plane);
        const float m = (float)(sum / count);
        double squares = 0;
        for (int n = 0; n < batch; n++) squares += plane_squared_deviation(input + (n * channels + c) * plane, m, plane);
        mean[c] = m;
        variance[c] = (float)(squares / count);
    }
}

AVX512 void rstpm_batchnorm_normalize(const float *input, const float *mean, const float *scale, const float *shift, float *output,
                                      int batch, long first_channel, long end_channel, int channels, long plane) {
    for (int n = 0; n < batch; n++) {
        for (long c = first_channel; c < end_channel; c++) {
            const float *x = input + (n * channels + c) * plane;
            float *y = output + (n * channels + c) * plane;
            const __m512 center = _mm512_set1_ps(mean[c]), a = _mm512_set1_ps(scale[c]), b = _mm512_set1_ps(shift[c]);
            long i = 0;
            for (; i + 32 <= plane; i += 32) {
                _mm512_storeu_ps(y + i, _mm512_fmadd_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), center), a, b));
                _mm512_storeu_ps(y + i + 16, _mm512_fmadd_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), center), a, b));
            }
            for (; i < plane; i += 16) {
                __mmask16 m = plane - i >= 16 ? (__mmask16)0xFFFF : first_lanes(plane - i);
                _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), center), a, b));
            }
        }
    }
}

/// Adds sum_i dy[i] and sum_i dy[i] * (x[i] - center) over one plane to *sum_dy and *sum_dy_d.
AVX512 static void plane_gradient_sums(const float *x, const float *dy, float center, long plane, double *sum_dy, double *sum_dy_d) {
    const __m512 c = _mm512_set1_ps(center);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, p0 = s0, p1 = s0;
    long i = 0;
    for (; i + 32 <= plane; i += 32) {
        __m512 g0 = _mm512_loadu_ps(dy + i), g1 = _mm512_loadu_ps(dy + i + 16);
        s0 = _mm512_add_ps(s0, g0);
        s1 = _mm512_add_ps(s1, g1);
        p0 = _mm512_fmadd_ps(g0, _mm512_sub_ps(_mm512_loadu_ps(x + i), c), p0);
        p1 = _mm512_fmadd_ps(g1, _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), c), p1);
    }
    for (; i < plane; i += 16) {
        __mmask16 m = plane - i >= 16 ? (__mmask16)0xFFFF : first_lanes(plane - i);
        __m512 g = _mm512_maskz_loadu_ps(m, dy + i);
        s0 = _mm512_add_ps(s0, g);
        p0 = _mm512_fmadd_ps(g, _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), c), p0);
    }
    *sum_dy += (double)_mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    *sum_dy_d += (double)_mm512_reduce_add_ps(_mm512_add_ps(p0, p1));
}

AVX512 void rstpm_batchnorm_backward(const float *input, const float *output_gradient, const float *mean,
                                     const float *reciprocal_std, const float *gamma, float *input_gradient,
                                     float *sum_dy, float *sum_dy_xhat, int batch_statistics, int batch,
                                     long first_channel, long end_channel, int channels, long plane) {
    const double count = (double)batch * (double)plane;
    for (long c = first_channel; c < end_channel; c++) {
        const float m = mean[c], r = reciprocal_std[c];
        double s = 0, sd = 0;
        for (int n = 0; n < batch; n++) {
            const long start = (n * channels + c) * plane;
            plane_gradient_sums(input + start, output_gradient + start, m, plane, &s, &sd);
        }
        const float sx = (float)(sd * r);
        sum_dy[c] = (float)s;
        sum_dy_xhat[c] = sx;
        // dx = g*r*(dy - mean(dy) - xhat*mean(dy*xhat)) with xhat = (x - m)*r, as
        // a*dy + k*(x - m) + b (two FMAs per value).
        const float a = gamma[c] * r;
        const float mean_dy = batch_statistics ? (float)(s / count) : 0;
        const float mean_dy_xhat = batch_statistics ? (float)(sx / count) : 0;
        const __m512 va = _mm512_set1_ps(a), vk = _mm512_set1_ps(-a * r * mean_dy_xhat), vb = _mm512_set1_ps(-a * mean_dy);
        const __m512 vm = _mm512_set1_ps(m);
        for (int n = 0; n < batch; n++) {
            const long start = (n * channels + c) * plane;
            const float *x = input + start, *dy = output_gradient + start;
            float *dx = input_gradient + start;
            long i = 0;
            for (; i + 32 <= plane; i += 32) {
                __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), vm), d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm);
                _mm512_storeu_ps(dx + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(dy + i), _mm512_fmadd_ps(vk, d0, vb)));
                _mm512_storeu_ps(dx + i + 16, _mm512_fmadd_ps(va, _mm512_loadu_ps(dy + i + 16), _mm512_fmadd_ps(vk, d1, vb)));
            }
            for (; i < plane; i += 16) {
                __mmask16 mask = plane - i >= 16 ? (__mmask16)0xFFFF : first_lanes(plane - i);
                __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + i), vm);
                _mm512_mask_storeu_ps(dx + i, mask, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(mask, dy + i), _mm512_fmadd_ps(vk, d, vb)));
            }
        }
    }
}
