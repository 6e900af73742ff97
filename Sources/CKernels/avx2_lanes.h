#ifndef RSTPM_AVX2_LANES_H
#define RSTPM_AVX2_LANES_H

// Lane masks and reductions shared by the AVX2 kernels. AVX2 has no mask registers: a mask is
// a vector whose lanes are all ones (taken) or zero, as vmaskmovps reads its sign bits; masked
// loads never touch the memory of lanes left out (no fault, wherever they point).

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma")))

/// Lanes i with low <= i < high.
AVX2_INLINE __m256i lanes_between(long low, long high) {
    static const int ones_then_zeros[24] = {0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    low = low < 0 ? 0 : low > 8 ? 8 : low;
    high = high < low ? low : high > 8 ? 8 : high;
    // Window at 8 - low starts with `low` zeros, then ones; window at 16 - high keeps the first `high`.
    const __m256i from_low = _mm256_loadu_si256((const __m256i *)(ones_then_zeros + 8 - low));
    const __m256i below_high = _mm256_loadu_si256((const __m256i *)(ones_then_zeros + 16 - high));
    return _mm256_and_si256(from_low, below_high);
}

/// The first `count` lanes (all for count >= 8, none for count <= 0).
AVX2_INLINE __m256i first_lanes(long count) { return lanes_between(0, count); }

/// Lanes whose bit is set in `bits` (bit i: lane i).
AVX2_INLINE __m256i lanes_of_bits(unsigned bits) {
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)bits), bit), bit);
}

/// Zero outside `mask`.
AVX2_INLINE __m256 keep_lanes(__m256i mask, __m256 value) { return _mm256_and_ps(_mm256_castsi256_ps(mask), value); }

/// Sum of the 8 lanes.
AVX2_INLINE float reduce_add(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// Stores the first `count` lanes (all 8 when count >= 8: a plain store, as masked stores are
/// slow on some AVX2 CPUs).
AVX2_INLINE void store_first(float *target, long count, __m256 value) {
    if (count >= 8) _mm256_storeu_ps(target, value);
    else _mm256_maskstore_ps(target, first_lanes(count), value);
}

/// The first `count` floats from `source`, zero in the other lanes.
AVX2_INLINE __m256 load_first(const float *source, long count) {
    return count >= 8 ? _mm256_loadu_ps(source) : _mm256_maskload_ps(source, first_lanes(count));
}

#endif
