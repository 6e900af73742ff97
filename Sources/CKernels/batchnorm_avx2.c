#include "avx2_lanes.h"
#include "batchnorm.h"
#include "internal.h"

// The AVX2 + FMA BatchNorm2d kernels: batchnorm.c's passes (see there) on 8-lane vectors.

/// sum_i x[i] over one plane: four independent 8-lane accumulators.
AVX2 static double plane_sum(const float *x, long plane) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    long i = 0;
    for (; i + 32 <= plane; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(x + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(x + i + 24));
    }
    for (; i < plane; i += 8) s0 = _mm256_add_ps(s0, load_first(x + i, plane - i));
    return (double)reduce_add(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

/// sum_i (x[i] - center)^2 over one plane, accumulated as plane_sum.
AVX2 static double plane_squared_deviation(const float *x, float center, long plane) {
    const __m256 c = _mm256_set1_ps(center);
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    long i = 0;
    for (; i + 32 <= plane; i += 32) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), c), d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), c);
        __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 16), c), d3 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 24), c);
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
        s2 = _mm256_fmadd_ps(d2, d2, s2);
        s3 = _mm256_fmadd_ps(d3, d3, s3);
    }
    for (; i < plane; i += 8) {
        // Lanes past the plane must contribute 0, not center^2.
        __m256 d = keep_lanes(first_lanes(plane - i), _mm256_sub_ps(load_first(x + i, plane - i), c));
        s0 = _mm256_fmadd_ps(d, d, s0);
    }
    return (double)reduce_add(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

AVX2 void rstpm_avx2_batchnorm_statistics(const float *input, float *mean, float *variance, int batch, long first_channel,
                                     long end_channel, int channels, long plane) {
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

/// min(high, max(low, z)): z second, so NaN propagates (as batchnorm.c).
AVX2_INLINE __m256 clamp(__m256 z, __m256 low, __m256 high) { return _mm256_min_ps(high, _mm256_max_ps(low, z)); }

AVX2 void rstpm_avx2_batchnorm_normalize(const float *input, const float *mean, const float *scale, const float *shift, float *output,
                                    int activation, int batch, long first_channel, long end_channel, int channels, long plane) {
    const __m256 low = _mm256_set1_ps(activation == RSTPM_ACTIVATION_NONE ? -__builtin_inff() : 0.0f);
    const __m256 high = _mm256_set1_ps(activation == RSTPM_ACTIVATION_RELU6 ? 6.0f : __builtin_inff());
    for (int n = 0; n < batch; n++) {
        for (long c = first_channel; c < end_channel; c++) {
            const float *x = input + (n * channels + c) * plane;
            float *y = output + (n * channels + c) * plane;
            const __m256 center = _mm256_set1_ps(mean[c]), a = _mm256_set1_ps(scale[c]), b = _mm256_set1_ps(shift[c]);
            long i = 0;
            for (; i + 16 <= plane; i += 16) {
                __m256 z0 = _mm256_fmadd_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), center), a, b);
                __m256 z1 = _mm256_fmadd_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), center), a, b);
                _mm256_storeu_ps(y + i, clamp(z0, low, high));
                _mm256_storeu_ps(y + i + 8, clamp(z1, low, high));
            }
            for (; i < plane; i += 8) {
                __m256 z = _mm256_fmadd_ps(_mm256_sub_ps(load_first(x + i, plane - i), center), a, b);
                store_first(y + i, plane - i, clamp(z, low, high));
            }
        }
    }
}

/// dy where the activation passes the gradient at pre-activation z (all lanes without one,
/// z > 0 for ReLU, 0 < z < 6 for ReLU6), else 0.
AVX2_INLINE __m256 passed(__m256 dy, __m256 z, int activation) {
    if (activation == RSTPM_ACTIVATION_NONE) return dy;
    __m256 pass = _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_GT_OQ);
    if (activation == RSTPM_ACTIVATION_RELU6) pass = _mm256_and_ps(pass, _mm256_cmp_ps(z, _mm256_set1_ps(6.0f), _CMP_LT_OQ));
    return _mm256_and_ps(pass, dy);
}

/// Over one plane: adds sum dz and sum dz * (x - center) to *sum_dy and *sum_dy_d.
AVX2 static void plane_gradient_sums(const float *x, const float *dy, float center, float scale, float shift, int activation,
                                     long plane, double *sum_dy, double *sum_dy_d) {
    const __m256 c = _mm256_set1_ps(center), a = _mm256_set1_ps(scale), b = _mm256_set1_ps(shift);
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, p0 = s0, p1 = s0;
    long i = 0;
    for (; i + 16 <= plane; i += 16) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), c), d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), c);
        __m256 g0 = passed(_mm256_loadu_ps(dy + i), _mm256_fmadd_ps(d0, a, b), activation);
        __m256 g1 = passed(_mm256_loadu_ps(dy + i + 8), _mm256_fmadd_ps(d1, a, b), activation);
        s0 = _mm256_add_ps(s0, g0);
        s1 = _mm256_add_ps(s1, g1);
        p0 = _mm256_fmadd_ps(g0, d0, p0);
        p1 = _mm256_fmadd_ps(g1, d1, p1);
    }
    for (; i < plane; i += 8) {
        // Lanes past the plane load 0 for both x and dy: d may be -center there, but dz is 0.
        __m256 d = _mm256_sub_ps(load_first(x + i, plane - i), c);
        __m256 g = passed(load_first(dy + i, plane - i), _mm256_fmadd_ps(d, a, b), activation);
        s0 = _mm256_add_ps(s0, g);
        p0 = _mm256_fmadd_ps(g, d, p0);
    }
    *sum_dy += (double)reduce_add(_mm256_add_ps(s0, s1));
    *sum_dy_d += (double)reduce_add(_mm256_add_ps(p0, p1));
}

AVX2 void rstpm_avx2_batchnorm_backward(const float *input, const float *output_gradient, const float *mean,
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
        // dx = a*(dz - mean(dz) - xhat*mean(dz*xhat)) with xhat = (x - m)*r, as a*dz + k*(x - m) + e.
        const float mean_dy = batch_statistics ? (float)(s / count) : 0;
        const float mean_dy_xhat = batch_statistics ? (float)(sx / count) : 0;
        const __m256 va = _mm256_set1_ps(a), vk = _mm256_set1_ps(-a * r * mean_dy_xhat), ve = _mm256_set1_ps(-a * mean_dy);
        const __m256 vm = _mm256_set1_ps(m), vb = _mm256_set1_ps(b);
        for (int n = 0; n < batch; n++) {
            const long start = (n * channels + c) * plane;
            const float *x = input + start, *dy = output_gradient + start;
            float *dx = input_gradient + start;
            for (long i = 0; i < plane; i += 8) {
                __m256 d = _mm256_sub_ps(load_first(x + i, plane - i), vm);
                __m256 g = passed(load_first(dy + i, plane - i), _mm256_fmadd_ps(d, va, vb), activation);
                store_first(dx + i, plane - i, _mm256_fmadd_ps(va, g, _mm256_fmadd_ps(vk, d, ve)));
            }
        }
    }
}
