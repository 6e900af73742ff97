#include "batchnorm.h"

#include <immintrin.h>

// Compiled per function for AVX-512 so the package still builds for any x86-64; the engine
// reaches these only through rstpm_avx512_kernels().
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

/// Clamp bounds of an activation: (-inf, inf), [0, inf) or [0, 6].
static void activation_bounds(int activation, float *low, float *high) {
    *low = activation == RSTPM_ACTIVATION_NONE ? -__builtin_inff() : 0.0f;
    *high = activation == RSTPM_ACTIVATION_RELU6 ? 6.0f : __builtin_inff();
}

/// min(high, max(low, z)): max/min return their second operand when either is NaN, so z goes
/// second and NaN propagates (as torch.relu and the Swift loops).
AVX512 ALWAYS_INLINE __m512 clamp(__m512 z, __m512 low, __m512 high) { return _mm512_min_ps(high, _mm512_max_ps(low, z)); }

AVX512 void rstpm_batchnorm_normalize(const float *input, const float *mean, const float *scale, const float *shift, float *output,
                                      int activation, int batch, long first_channel, long end_channel, int channels, long plane) {
    float low_value, high_value;
    activation_bounds(activation, &low_value, &high_value);
    const __m512 low = _mm512_set1_ps(low_value), high = _mm512_set1_ps(high_value);
    for (int n = 0; n < batch; n++) {
        for (long c = first_channel; c < end_channel; c++) {
            const float *x = input + (n * channels + c) * plane;
            float *y = output + (n * channels + c) * plane;
            const __m512 center = _mm512_set1_ps(mean[c]), a = _mm512_set1_ps(scale[c]), b = _mm512_set1_ps(shift[c]);
            long i = 0;
            for (; i + 32 <= plane; i += 32) {
                __m512 z0 = _mm512_fmadd_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), center), a, b);
                __m512 z1 = _mm512_fmadd_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), center), a, b);
                _mm512_storeu_ps(y + i, clamp(z0, low, high));
                _mm512_storeu_ps(y + i + 16, clamp(z1, low, high));
            }
            for (; i < plane; i += 16) {
                __mmask16 m = plane - i >= 16 ? (__mmask16)0xFFFF : first_lanes(plane - i);
                __m512 z = _mm512_fmadd_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), center), a, b);
                _mm512_mask_storeu_ps(y + i, m, clamp(z, low, high));
            }
        }
    }
}

/// The lanes of `lanes` where the activation passes the gradient at pre-activation z: all
/// without one, z > 0 for ReLU (its output is positive), 0 < z < 6 for ReLU6 (hardtanh's rule).
AVX512 ALWAYS_INLINE __mmask16 passing(__mmask16 lanes, __m512 z, int activation) {
    if (activation == RSTPM_ACTIVATION_NONE) return lanes;
    __mmask16 pass = _mm512_mask_cmp_ps_mask(lanes, z, _mm512_setzero_ps(), _CMP_GT_OQ);
    if (activation == RSTPM_ACTIVATION_RELU6) pass = _mm512_mask_cmp_ps_mask(pass, z, _mm512_set1_ps(6.0f), _CMP_LT_OQ);
    return pass;
}

/// Over one plane: adds sum dz and sum dz * (x - center) to *sum_dy and *sum_dy_d, where dz is
/// dy through the activation at z = (x - center) * scale + shift.
AVX512 static void plane_gradient_sums(const float *x, const float *dy, float center, float scale, float shift, int activation,
                                       long plane, double *sum_dy, double *sum_dy_d) {
    const __m512 c = _mm512_set1_ps(center), a = _mm512_set1_ps(scale), b = _mm512_set1_ps(shift);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, p0 = s0, p1 = s0;
    long i = 0;
    for (; i + 32 <= plane; i += 32) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), c), d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), c);
        __m512 g0 = _mm512_maskz_loadu_ps(passing(0xFFFF, _mm512_fmadd_ps(d0, a, b), activation), dy + i);
        __m512 g1 = _mm512_maskz_loadu_ps(passing(0xFFFF, _mm512_fmadd_ps(d1, a, b), activation), dy + i + 16);
        s0 = _mm512_add_ps(s0, g0);
        s1 = _mm512_add_ps(s1, g1);
        p0 = _mm512_fmadd_ps(g0, d0, p0);
        p1 = _mm512_fmadd_ps(g1, d1, p1);
    }
    for (; i < plane; i += 16) {
        __mmask16 m = plane - i >= 16 ? (__mmask16)0xFFFF : first_lanes(plane - i);
        __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), c);
        __m512 g = _mm512_maskz_loadu_ps(passing(m, _mm512_fmadd_ps(d, a, b), activation), dy + i);
        s0 = _mm512_add_ps(s0, g);
        p0 = _mm512_fmadd_ps(g, d, p0);
    }
    *sum_dy += (double)_mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    *sum_dy_d += (double)_mm512_reduce_add_ps(_mm512_add_ps(p0, p1));
}

AVX512 void rstpm_batchnorm_backward(const float *input, const float *output_gradient, const float *mean,
                                     const float *reciprocal_std, const float *scale, const float *shift, int activation,
                                     float *input_gradient, float *sum_dy, float *sum_dy_xhat, int batch_statistics, int batch,
                                     long first_channel, long end_channel, int channels, long plane) {
    const double count = (double)batch * (double)plane;
    for (long c = first_channel; c < end_channel; c++) {
        const float m = mean[c], r = reciprocal_std[c], a = scale[c], b = shift[c];
        double s = 0, sd = 0;
        for (int n = 0; n < batch; n++) {
            const long start = (n * channels + c) * plane;
            plane_gradient_sums(input + start, output_gradient + start, m, a, b, activation, plane, &s, &sd);
        }
        const float sx = (float)(sd * r);
        sum_dy[c] = (float)s;
        sum_dy_xhat[c] = sx;
        // dx = a*(dz - mean(dz) - xhat*mean(dz*xhat)) with xhat = (x - m)*r, as
        // a*dz + k*(x - m) + e (two FMAs per value).
        const float mean_dy = batch_statistics ? (float)(s / count) : 0;
        const float mean_dy_xhat = batch_statistics ? (float)(sx / count) : 0;
        const __m512 va = _mm512_set1_ps(a), vk = _mm512_set1_ps(-a * r * mean_dy_xhat), ve = _mm512_set1_ps(-a * mean_dy);
        const __m512 vm = _mm512_set1_ps(m), vb = _mm512_set1_ps(b);
        for (int n = 0; n < batch; n++) {
            const long start = (n * channels + c) * plane;
            const float *x = input + start, *dy = output_gradient + start;
            float *dx = input_gradient + start;
            long i = 0;
            for (; i + 32 <= plane; i += 32) {
                __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), vm), d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm);
                __m512 g0 = _mm512_maskz_loadu_ps(passing(0xFFFF, _mm512_fmadd_ps(d0, va, vb), activation), dy + i);
                __m512 g1 = _mm512_maskz_loadu_ps(passing(0xFFFF, _mm512_fmadd_ps(d1, va, vb), activation), dy + i + 16);
                _mm512_storeu_ps(dx + i, _mm512_fmadd_ps(va, g0, _mm512_fmadd_ps(vk, d0, ve)));
                _mm512_storeu_ps(dx + i + 16, _mm512_fmadd_ps(va, g1, _mm512_fmadd_ps(vk, d1, ve)));
            }
            for (; i < plane; i += 16) {
                __mmask16 mask = plane - i >= 16 ? (__mmask16)0xFFFF : first_lanes(plane - i);
                __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + i), vm);
                __m512 g = _mm512_maskz_loadu_ps(passing(mask, _mm512_fmadd_ps(d, va, vb), activation), dy + i);
                _mm512_mask_storeu_ps(dx + i, mask, _mm512_fmadd_ps(va, g, _mm512_fmadd_ps(vk, d, ve)));
            }
        }
    }
}
