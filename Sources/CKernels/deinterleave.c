#include "deinterleave.h"

#include "avx2_lanes.h"
#include "internal.h"

#include <immintrin.h>

// The stride-2 convolutions split every input row before their products read it (a Lite stem's
// 256x256x3 image, ResNet's strided layers); one permute per 16 outputs instead of a scalar
// copy per float.

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))

/// The scalar rest of a row from column `from` (even).
static inline void deinterleave_tail(const float *row, long from, long width, float *even, float *odd) {
    for (long column = from; column < width; column++) {
        if (column % 2 == 0) even[column / 2] = row[column];
        else odd[column / 2] = row[column];
    }
}

AVX512 void rstpm_deinterleave(const float *row, long width, float *even, float *odd) {
    const __m512i evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odds = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    long column = 0;
    for (; column + 32 <= width; column += 32) {
        const __m512 a = _mm512_loadu_ps(row + column), b = _mm512_loadu_ps(row + column + 16);
        _mm512_storeu_ps(even + column / 2, _mm512_permutex2var_ps(a, evens, b));
        _mm512_storeu_ps(odd + column / 2, _mm512_permutex2var_ps(a, odds, b));
    }
    deinterleave_tail(row, column, width, even, odd);
}

AVX2 void rstpm_avx2_deinterleave(const float *row, long width, float *even, float *odd) {
    long column = 0;
    for (; column + 16 <= width; column += 16) {
        const __m256 a = _mm256_loadu_ps(row + column), b = _mm256_loadu_ps(row + column + 8);
        // Per 128-bit half: a0 a2 b0 b2 | a4 a6 b4 b6; the 64-bit quarters reordered 0 2 1 3.
        const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)), o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
        _mm256_storeu_ps(even + column / 2, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0))));
        _mm256_storeu_ps(odd + column / 2, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0))));
    }
    deinterleave_tail(row, column, width, even, odd);
}
