// Over 400 lines: the f32 and bf16 products share the blocking, the packing and the tile
// epilogue, which change together.
#include "gemm.h"

#include "internal.h"

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

// BLIS-style blocking. C is row-major, so the micro-kernel keeps a tile of MR rows by NR
// columns in registers (MR x 2 zmm accumulators, vectors along N), broadcasting one value of A
// per row and loading two vectors of B per step of k. The packed B micro-panel (KC x NR, 48 KiB)
// stays in L1 while the MR-row panels of the packed A block (MC x KC, 252 KiB) stream from L2;
// the packed B block (KC x NC, 3 MiB) lives in L3. K is cut into equal blocks of at most KC (576 =
// 2 x 288, not 384 + 192), so no block is short. Packing absorbs the transposes and zero-pads
// the edges, so the micro-kernel only ever reads whole vectors; edges of C use masks.
#define MR 14
#define NR 32
#define KC 384
#define MC (12 * MR)
#define NC 2048
// Taps of the largest convolution kernel the products unfold (7 x 7).
#define MAX_TAPS 49

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx512bf16")))
#define INLINE static inline __attribute__((always_inline))
// Loops over the rows of a register tile: unrolled before the accumulator array is promoted
// to registers (else it stays a stack array, loaded and stored around every k loop).
#define UNROLLED _Pragma("clang loop unroll(full)")

// Per-thread packing scratch, grown on demand and reused by every later call on that thread
// (freed when the thread exits).
struct scratch {
    float *data;
    size_t floats;
};
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_release(void *pointer) {
    struct scratch *scratch = pointer;
    free(scratch->data);
    free(scratch);
}

static void scratch_create_key(void) { pthread_key_create(&scratch_key, scratch_release); }

float *rstpm_gemm_scratch(size_t floats) {
    pthread_once(&scratch_once, scratch_create_key);
    struct scratch *scratch = pthread_getspecific(scratch_key);
    if (!scratch) {
        scratch = calloc(1, sizeof *scratch);
        if (!scratch) abort();
        pthread_setspecific(scratch_key, scratch);
    }
    if (scratch->floats < floats) {
        free(scratch->data);
        scratch->data = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
        if (!scratch->data) abort();
        scratch->floats = floats;
    }
    return scratch->data;
}

INLINE __mmask16 mask_first(long count) {
    return count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (count > 0 ? count : 0)) - 1);
}

// In-register transpose of 16 rows of 16 floats.
AVX512 INLINE void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4i + q], 128-bit lane l: element q of lane l (column 4l + q) of rows 4i..4i+3.
    for (int i = 0; i < 4; ++i) {
        u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int q = 0; q < 4; ++q) {
        __m512 even_lanes_low = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x88);
        __m512 odd_lanes_low = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xDD);
        __m512 even_lanes_high = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x88);
        __m512 odd_lanes_high = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xDD);
        r[q] = _mm512_shuffle_f32x4(even_lanes_low, even_lanes_high, 0x88);
        r[8 + q] = _mm512_shuffle_f32x4(even_lanes_low, even_lanes_high, 0xDD);
        r[4 + q] = _mm512_shuffle_f32x4(odd_lanes_low, odd_lanes_high, 0x88);
        r[12 + q] = _mm512_shuffle_f32x4(odd_lanes_low, odd_lanes_high, 0xDD);
    }
}

// Packs `count` (<= 16) source rows, each `kc` contiguous floats from `source` with stride
// `stride`, as their transpose: destination row k (stride `width` floats, `store_mask` lanes
// written) holds element k of every source row, zero for the missing rows.
AVX512 static void pack_transposed(const float *source, long stride, long count, long kc,
                                   float *destination, long width, __mmask16 store_mask) {
    for (long k0 = 0; k0 < kc; k0 += 16) {
        long taken = kc - k0 < 16 ? kc - k0 : 16;
        __mmask16 load_mask = mask_first(taken);
        __m512 r[16];
        for (long t = 0; t < 16; ++t)
            r[t] = t < count ? _mm512_maskz_loadu_ps(load_mask, source + t * stride + k0) : _mm512_setzero_ps();
        transpose16(r);
        for (long t = 0; t < taken; ++t) _mm512_mask_storeu_ps(destination + (k0 + t) * width, store_mask, r[t]);
    }
}

// bf16 panels hold pairs of k: pair row p, lane j holds rows 2p and 2p + 1 of column j, each
// rounded to nearest even (cvtne2ps), the layout vdpbf16ps multiplies; a missing row of an odd
// k is zero. They take the first half of the f32 panel's space, at the same offsets.

// 16 lanes of rows 2p (`first`) and 2p + 1 (`second`) as 16 pairs.
AVX512_BF16 INLINE __m512 pairs_of(__m512 first, __m512 second) {
    // Interleaves the 16 bf16 of each operand of cvtne2ps: lane pair j = (first[j], second[j]).
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                                21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_castsi512_ps(_mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(second, first)));
}

// Rewrites a packed f32 panel of `kc` rows of `width` (<= 32) floats, in place, as bf16 pair
// rows. Pair row p overwrites float rows before 2p only, which are already read.
AVX512_BF16 static void pack_pairs(float *panel, long width, long kc) {
    for (long p = 0; p < (kc + 1) / 2; ++p) {
        for (long j = 0; j < width; j += 16) {
            __mmask16 mask = mask_first(width - j);
            __m512 first = _mm512_maskz_loadu_ps(mask, panel + 2 * p * width + j);
            __m512 second = 2 * p + 1 < kc ? _mm512_maskz_loadu_ps(mask, panel + (2 * p + 1) * width + j) : _mm512_setzero_ps();
            _mm512_mask_storeu_ps(panel + p * width + j, mask, pairs_of(first, second));
        }
    }
}

// A convolution panel's gather plan: which lanes of row k come from where. They depend only on
// the kernel tap, not on the channel, so each panel tabulates them once per (tap, run).
struct convolution_load {
    long offset;  // from the channel's plane to the input element lane 0 would read
    __mmask16 low, high;
};

// The loads of NR-column panel `width` wide starting at unfolded column `column`; returns nothing,
// fills loads[tap * NR ...] and load_count[tap].
AVX512 INLINE void tabulate_convolution_loads(const struct rstpm_convolution_input *x, long column, long width,
                                              struct convolution_load *loads, int *load_count) {
    const long kernel = x->kernel, taps = kernel * kernel, stride = x->stride;
    const long phase_width = (x->width + stride - 1) / stride, row_length = stride * phase_width;
    for (long tap = 0; tap < taps; ++tap) load_count[tap] = 0;
    for (long lane = 0; lane < width;) {
        long j = column + lane;
        long oy = j / x->output_width, ox = j % x->output_width;
        long count = x->output_width - ox < width - lane ? x->output_width - ox : width - lane;
        for (long tap = 0; tap < taps; ++tap) {
            long iy = oy * stride + tap / kernel - x->padding;
            // Input column ox * stride + shift is element ox + whole of phase `phase`.
            long shift = tap % kernel - x->padding;
            long phase = ((shift % stride) + stride) % stride, whole = (shift - phase) / stride;
            long phase_count = (x->width - phase + stride - 1) / stride, start = ox + whole;
            long first = start < 0 ? -start : 0, end = phase_count - start < count ? phase_count - start : count;
            if (iy < 0 || iy >= x->height || first >= end) continue;
            unsigned long long lanes = ((1ull << (lane + end)) - 1) & ~((1ull << (lane + first)) - 1);
            loads[tap * NR + load_count[tap]++] =
                (struct convolution_load){iy * row_length + phase * phase_width + start - lane, (__mmask16)lanes, (__mmask16)(lanes >> 16)};
        }
        lane += count;
    }
}

// One row of a convolution panel (two vectors) from channel plane `source`, by its tap's loads.
AVX512 INLINE void gather_convolution_row(const float *source, const struct convolution_load *load, int count, __m512 *low,
                                          __m512 *high) {
    __m512 l = _mm512_setzero_ps(), h = _mm512_setzero_ps();
    for (int r = 0; r < count; ++r) {
        // Masked lanes are never accessed, wherever they would point.
        l = _mm512_mask_loadu_ps(l, load[r].low, source + load[r].offset);
        h = _mm512_mask_loadu_ps(h, load[r].high, source + load[r].offset + 16);
        // The next panel's columns in the same rows: too many streams (channels x rows) for
        // the hardware prefetcher to follow.
        _mm_prefetch((const char *)(source + load[r].offset + NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(source + load[r].offset + NR + 16), _MM_HINT_T0);
    }
    *low = l;
    *high = h;
}

// Columns jc..jc+nc, rows pc..pc+kc of a convolution input's unfolded matrix, as NR-column
// panels [k][NR]. A panel's columns are runs of output positions within one output row each;
// for every row k each run is one masked load from one stride phase of an input row (adjacent
// outputs read adjacent elements there; lanes in the zero padding are masked off and read as
// zero).
AVX512 static void pack_b_convolution(const struct rstpm_convolution_input *x, long first_column, long pc, long kc, long jc,
                                      long nc, float *packed) {
    const long taps = x->kernel * x->kernel, stride = x->stride;
    const long plane = x->height * stride * ((x->width + stride - 1) / stride);
    // Fixed sizes, not taps: the frame stays statically aligned for zmm spills.
    struct convolution_load loads[MAX_TAPS * NR];
    int load_count[MAX_TAPS];
    for (long j0 = 0; j0 < nc; j0 += NR, packed += kc * NR) {
        tabulate_convolution_loads(x, first_column + jc + j0, nc - j0 < NR ? nc - j0 : NR, loads, load_count);
        long channel = pc / taps, tap = pc % taps;
        for (long p = 0; p < kc; ++p) {
            __m512 low, high;
            gather_convolution_row(x->planes + channel * plane, loads + tap * NR, load_count[tap], &low, &high);
            _mm512_store_ps(packed + p * NR, low);
            _mm512_store_ps(packed + p * NR + 16, high);
            if (++tap == taps) {
                tap = 0;
                ++channel;
            }
        }
    }
}

// pack_b_convolution into bf16 pair rows: rows 2p and 2p + 1 are gathered, then rounded and
// interleaved in registers and stored once (an odd kc's last row paired with zero).
AVX512_BF16 static void pack_b_convolution_bf16(const struct rstpm_convolution_input *x, long first_column, long pc, long kc,
                                                long jc, long nc, float *packed) {
    const long taps = x->kernel * x->kernel, stride = x->stride;
    const long plane = x->height * stride * ((x->width + stride - 1) / stride);
    struct convolution_load loads[MAX_TAPS * NR];
    int load_count[MAX_TAPS];
    for (long j0 = 0; j0 < nc; j0 += NR, packed += kc * NR) {
        tabulate_convolution_loads(x, first_column + jc + j0, nc - j0 < NR ? nc - j0 : NR, loads, load_count);
        long channel = pc / taps, tap = pc % taps;
        float *pair_row = packed;
        for (long p = 0; p < kc; p += 2, pair_row += NR) {
            __m512 low[2], high[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
            for (int row = 0; row < 2 && p + row < kc; ++row) {
                gather_convolution_row(x->planes + channel * plane, loads + tap * NR, load_count[tap], &low[row], &high[row]);
                if (++tap == taps) {
                    tap = 0;
                    ++channel;
                }
            }
            if (p + 1 == kc) low[1] = _mm512_setzero_ps();
            _mm512_store_ps(pair_row, pairs_of(low[0], low[1]));
            _mm512_store_ps(pair_row + 16, pairs_of(high[0], high[1]));
        }
    }
}

// Rows pc..pc+kc, columns jc..jc+nc of row-major B as bf16 pair rows of NR-column panels: two
// rows read, rounded and interleaved in registers, stored once.
AVX512_BF16 static void pack_b_matrix_bf16(const float *b, long ldb, long pc, long kc, long jc, long nc, float *packed) {
    for (long j0 = 0; j0 < nc; j0 += NR, packed += kc * NR) {
        long width = nc - j0 < NR ? nc - j0 : NR;
        const float *source = b + pc * ldb + jc + j0;
        __mmask16 low = mask_first(width), high = mask_first(width - 16);
        float *pair_row = packed;
        long k = 0;
        for (; k + 1 < kc; k += 2, source += 2 * ldb, pair_row += NR) {
            __m512 first_low = _mm512_maskz_loadu_ps(low, source), first_high = _mm512_maskz_loadu_ps(high, source + 16);
            __m512 second_low = _mm512_maskz_loadu_ps(low, source + ldb), second_high = _mm512_maskz_loadu_ps(high, source + ldb + 16);
            // The next panel's part of these rows: kc rows are too many streams for the
            // hardware prefetcher.
            _mm_prefetch((const char *)(source + NR), _MM_HINT_T0);
            _mm_prefetch((const char *)(source + NR + 16), _MM_HINT_T0);
            _mm_prefetch((const char *)(source + ldb + NR), _MM_HINT_T0);
            _mm_prefetch((const char *)(source + ldb + NR + 16), _MM_HINT_T0);
            _mm512_store_ps(pair_row, pairs_of(first_low, second_low));
            _mm512_store_ps(pair_row + 16, pairs_of(first_high, second_high));
        }
        if (k < kc) {
            _mm512_store_ps(pair_row, pairs_of(_mm512_maskz_loadu_ps(low, source), _mm512_setzero_ps()));
            _mm512_store_ps(pair_row + 16, pairs_of(_mm512_maskz_loadu_ps(high, source + 16), _mm512_setzero_ps()));
        }
    }
}

// op(B) rows pc..pc+kc, columns jc..jc+nc, as NR-column panels [k][NR] (bf16: pair rows), zero past nc.
AVX512 static void pack_b(const struct b_source *source_b, long pc, long kc, long jc, long nc, int bf16, float *packed) {
    if (source_b->convolution) {
        if (bf16)
            pack_b_convolution_bf16(source_b->convolution, source_b->first_column, pc, kc, jc, nc, packed);
        else
            pack_b_convolution(source_b->convolution, source_b->first_column, pc, kc, jc, nc, packed);
        return;
    }
    const float *b = source_b->b;
    long ldb = source_b->ldb;
    if (bf16 && !source_b->transpose) {
        pack_b_matrix_bf16(b, ldb, pc, kc, jc, nc, packed);
        return;
    }
    for (long j0 = 0; j0 < nc; j0 += NR, packed += kc * NR) {
        long width = nc - j0 < NR ? nc - j0 : NR;
        if (!source_b->transpose) {
            const float *source = b + pc * ldb + jc + j0;
            __mmask16 low = mask_first(width), high = mask_first(width - 16);
            for (long k = 0; k < kc; ++k, source += ldb) {
                _mm512_store_ps(packed + k * NR, _mm512_maskz_loadu_ps(low, source));
                _mm512_store_ps(packed + k * NR + 16, _mm512_maskz_loadu_ps(high, source + 16));
                // The next panel's part of this row: kc rows are too many streams for the
                // hardware prefetcher.
                _mm_prefetch((const char *)(source + NR), _MM_HINT_T0);
                _mm_prefetch((const char *)(source + NR + 16), _MM_HINT_T0);
            }
        } else {
            // op(B)[k][j] = b[j * ldb + k]: 16 stored rows of B at a time become 16 columns.
            const float *source = b + (jc + j0) * ldb + pc;
            pack_transposed(source, ldb, width, kc, packed, NR, 0xFFFF);
            pack_transposed(source + 16 * ldb, ldb, width - 16, kc, packed + 16, NR, 0xFFFF);
            if (bf16) pack_pairs(packed, NR, kc);
        }
    }
}

// op(A) rows ic..ic+mc, columns pc..pc+kc, as MR-row panels [k][MR].
AVX512 static void pack_a(int transpose, const float *a, long lda, long ic, long mc, long pc, long kc, float *packed) {
    const __mmask16 panel_mask = (1u << MR) - 1;
    for (long i0 = 0; i0 < mc; i0 += MR, packed += kc * MR) {
        long rows = mc - i0 < MR ? mc - i0 : MR;
        if (!transpose) {
            pack_transposed(a + (ic + i0) * lda + pc, lda, rows, kc, packed, MR, panel_mask);
        } else {
            // op(A)[i][k] = a[k * lda + i]: each k is already a contiguous run of rows.
            const float *source = a + pc * lda + ic + i0;
            __mmask16 load_mask = mask_first(rows);
            for (long k = 0; k < kc; ++k, source += lda)
                _mm512_mask_storeu_ps(packed + k * MR, panel_mask, _mm512_maskz_loadu_ps(load_mask, source));
        }
    }
}

AVX512 INLINE __m512 finish(__m512 sum, const float *c, __mmask16 mask, const struct tile_update *update, long row) {
    // alpha == 1 (every bias_clamp product): sum * 1 is sum, one multiply per vector saved.
    __m512 value = update->alpha == 1 ? sum : _mm512_mul_ps(sum, _mm512_set1_ps(update->alpha));
    if (update->first) {
        // beta == 0 must not read C: it may hold garbage or NaN.
        if (update->beta != 0) value = _mm512_fmadd_ps(_mm512_set1_ps(update->beta), _mm512_maskz_loadu_ps(mask, c), value);
        if (update->bias) value = _mm512_add_ps(value, _mm512_set1_ps(update->bias[row]));
    } else {
        value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(mask, c));
    }
    if (update->last && update->clamp)
        value = _mm512_min_ps(_mm512_max_ps(value, _mm512_set1_ps(update->low)), _mm512_set1_ps(update->high));
    return value;
}

AVX512 INLINE void prefetch_tile(int rows, int vectors, const float *c, long ldc) {
    UNROLLED
    for (int i = 0; i < rows; ++i) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        if (vectors == 2) _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T0);
    }
}

AVX512 INLINE void store_tile(int rows, int vectors, __m512 sum[MR][2], float *c, long ldc, __mmask16 low_mask,
                              __mmask16 high_mask, const struct tile_update *update) {
    // A local copy: stores to C (floats) could alias *update's floats, so the compiler would
    // reload every field after every store; the copy's fields stay in registers.
    const struct tile_update local = *update;
    UNROLLED
    for (int i = 0; i < rows; ++i) {
        float *row = c + i * ldc;
        _mm512_mask_storeu_ps(row, low_mask, finish(sum[i][0], row, low_mask, &local, i));
        if (vectors == 2) _mm512_mask_storeu_ps(row + 16, high_mask, finish(sum[i][1], row + 16, high_mask, &local, i));
    }
}

// C tile (rows x up to 16*vectors columns) from an MR-row panel of A and an NR-column panel of
// B; `rows` and `vectors` are constants in every specialization below, so the accumulators
// are registers.
AVX512 INLINE void micro_kernel(int rows, int vectors, long kc, const float *a, const float *b, float *c, long ldc,
                                __mmask16 low_mask, __mmask16 high_mask, const struct tile_update *update) {
    prefetch_tile(rows, vectors, c, ldc);
    // The first step of k (kc >= 1) initialises the sums, instead of a pass that zeroes them.
    __m512 sum[MR][2];
    {
        __m512 b0 = _mm512_load_ps(b);
        __m512 b1 = vectors == 2 ? _mm512_load_ps(b + 16) : b0;
        UNROLLED
        for (int i = 0; i < rows; ++i) {
            __m512 ai = _mm512_set1_ps(a[i]);
            sum[i][0] = _mm512_mul_ps(ai, b0);
            if (vectors == 2) sum[i][1] = _mm512_mul_ps(ai, b1);
        }
        a += MR;
        b += NR;
    }
    for (long p = 1; p < kc; ++p, a += MR, b += NR) {
        __m512 b0 = _mm512_load_ps(b);
        __m512 b1 = vectors == 2 ? _mm512_load_ps(b + 16) : b0;
        UNROLLED
        for (int i = 0; i < rows; ++i) {
            __m512 ai = _mm512_set1_ps(a[i]);
            sum[i][0] = _mm512_fmadd_ps(ai, b0, sum[i][0]);
            if (vectors == 2) sum[i][1] = _mm512_fmadd_ps(ai, b1, sum[i][1]);
        }
    }
    store_tile(rows, vectors, sum, c, ldc, low_mask, high_mask, update);
}

// micro_kernel on bf16 panels (pair rows, see pairs_of): each step takes two k at once, one 32-bit pair
// of A broadcast against 16 pairs of B per vector; vdpbf16ps accumulates in f32.
AVX512_BF16 INLINE void micro_kernel_bf16(int rows, int vectors, long kc, const float *a, const float *b, float *c, long ldc,
                                          __mmask16 low_mask, __mmask16 high_mask, const struct tile_update *update) {
    prefetch_tile(rows, vectors, c, ldc);
    __m512 sum[MR][2];
    UNROLLED
    for (int i = 0; i < rows; ++i) sum[i][0] = sum[i][1] = _mm512_setzero_ps();
    for (long p = 0; p < (kc + 1) / 2; ++p, a += MR, b += NR) {
        __m512bh b0 = (__m512bh)_mm512_load_ps(b);
        __m512bh b1 = vectors == 2 ? (__m512bh)_mm512_load_ps(b + 16) : b0;
        UNROLLED
        for (int i = 0; i < rows; ++i) {
            __m512bh ai = (__m512bh)_mm512_broadcastd_epi32(_mm_loadu_si32(a + i));
            sum[i][0] = _mm512_dpbf16_ps(sum[i][0], ai, b0);
            if (vectors == 2) sum[i][1] = _mm512_dpbf16_ps(sum[i][1], ai, b1);
        }
    }
    store_tile(rows, vectors, sum, c, ldc, low_mask, high_mask, update);
}

typedef void (*micro_kernel_fn)(long, const float *, const float *, float *, long, __mmask16, __mmask16,
                                const struct tile_update *);

#define SPECIALIZE(target, kernel, rows)                                                                           \
    target static void kernel##_##rows##x32(long kc, const float *a, const float *b, float *c, long ldc,           \
                                            __mmask16 lm, __mmask16 hm, const struct tile_update *u) {             \
        kernel(rows, 2, kc, a, b, c, ldc, lm, hm, u);                                                             \
    }                                                                                                              \
    target static void kernel##_##rows##x16(long kc, const float *a, const float *b, float *c, long ldc,           \
                                            __mmask16 lm, __mmask16 hm, const struct tile_update *u) {             \
        kernel(rows, 1, kc, a, b, c, ldc, lm, hm, u);                                                             \
    }
#define SPECIALIZE_ALL(target, kernel)                                                                             \
    SPECIALIZE(target, kernel, 1) SPECIALIZE(target, kernel, 2) SPECIALIZE(target, kernel, 3)                      \
    SPECIALIZE(target, kernel, 4) SPECIALIZE(target, kernel, 5) SPECIALIZE(target, kernel, 6)                      \
    SPECIALIZE(target, kernel, 7) SPECIALIZE(target, kernel, 8) SPECIALIZE(target, kernel, 9)                      \
    SPECIALIZE(target, kernel, 10) SPECIALIZE(target, kernel, 11) SPECIALIZE(target, kernel, 12)                   \
    SPECIALIZE(target, kernel, 13) SPECIALIZE(target, kernel, 14)
SPECIALIZE_ALL(AVX512, micro_kernel)
SPECIALIZE_ALL(AVX512_BF16, micro_kernel_bf16)
#undef SPECIALIZE_ALL
#undef SPECIALIZE

// [rows - 1][vectors - 1]
#define TABLE(kernel)                                                                                              \
    {                                                                                                              \
        {kernel##_1x16, kernel##_1x32},   {kernel##_2x16, kernel##_2x32},   {kernel##_3x16, kernel##_3x32},        \
        {kernel##_4x16, kernel##_4x32},   {kernel##_5x16, kernel##_5x32},   {kernel##_6x16, kernel##_6x32},        \
        {kernel##_7x16, kernel##_7x32},   {kernel##_8x16, kernel##_8x32},   {kernel##_9x16, kernel##_9x32},        \
        {kernel##_10x16, kernel##_10x32}, {kernel##_11x16, kernel##_11x32}, {kernel##_12x16, kernel##_12x32},      \
        {kernel##_13x16, kernel##_13x32}, {kernel##_14x16, kernel##_14x32},                                        \
    }
static const micro_kernel_fn micro_kernels[MR][2] = TABLE(micro_kernel);
static const micro_kernel_fn micro_kernels_bf16[MR][2] = TABLE(micro_kernel_bf16);
#undef TABLE

void rstpm_gemm_scale_only(long m, long n, float beta, const float *bias, int clamp, float low, float high, float *c, long ldc) {
    for (long i = 0; i < m; ++i) {
        float *row = c + i * ldc;
        for (long j = 0; j < n; ++j) {
            float value = beta == 0 ? 0 : beta * row[j];
            if (bias) value += bias[i];
            if (clamp) value = fminf(fmaxf(value, low), high);
            row[j] = value;
        }
    }
}

// K cut into equal blocks of at most KC; even ones in bf16, so that no pair of k straddles two
// blocks (the last block may be odd: its last pair is padded with zero).
static long k_block(long k, int bf16) {
    long block = (k + (k + KC - 1) / KC - 1) / ((k + KC - 1) / KC);
    return bf16 ? (block + 1) / 2 * 2 : block;
}

// Where the packed panels of op(A) rows first_row.., columns pc..pc+kc start in a matrix of
// `rows` rows packed whole by rstpm_pack_a (first_row a multiple of MR). bf16 panels are
// written in place over the f32 ones and keep their offsets.
static const float *prepacked_panels(const struct rstpm_packed_a *packed, long first_row, long pc, long kc) {
    return packed->panels + pc * ((packed->rows + MR - 1) / MR * MR) + (packed->first_row + first_row) * kc;
}

long rstpm_packed_a_floats(long m, long k) { return (m + MR - 1) / MR * MR * k; }

// pack_a, then (bf16) each MR-row panel as pair rows.
AVX512 static void pack_a_panels(int bf16, int transpose, const float *a, long lda, long ic, long mc, long pc, long kc,
                                 float *packed) {
    pack_a(transpose, a, lda, ic, mc, pc, kc, packed);
    if (bf16)
        for (long i0 = 0; i0 < mc; i0 += MR) pack_pairs(packed + i0 * kc, MR, kc);
}

AVX512 static void pack_whole_a(int bf16, long m, long k, const float *a, long lda, float *panels) {
    const long block_k = k_block(k, bf16), padded_rows = (m + MR - 1) / MR * MR;
    for (long pc = 0; pc < k; pc += block_k) {
        long kc = k - pc < block_k ? k - pc : block_k;
        pack_a_panels(bf16, 0, a, lda, 0, m, pc, kc, panels + pc * padded_rows);
    }
}

void rstpm_pack_a(long m, long k, const float *a, long lda, float *panels) { pack_whole_a(0, m, k, a, lda, panels); }

void rstpm_bf16_pack_a(long m, long k, const float *a, long lda, float *panels) { pack_whole_a(1, m, k, a, lda, panels); }

// `prepacked` (NULL: none) replaces packing op(A) from `a` (then not read). `bf16`: A and B
// rounded to bf16 while packing, products summed in f32.
AVX512 static void gemm(int bf16, int transpose_a, long m, long n, long k, float alpha, const float *a, long lda,
                        const struct rstpm_packed_a *prepacked, const struct b_source *source_b, float beta,
                        const float *bias, int clamp, float low, float high, float *c, long ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0) {
        rstpm_gemm_scale_only(m, n, beta, bias, clamp, low, high, c, ldc);
        return;
    }
    long block_k = k_block(k, bf16);
    long block_m = m < MC ? (m + MR - 1) / MR * MR : MC;
    long block_n = n < NC ? (n + NR - 1) / NR * NR : NC;
    long packed_a_floats = (block_m * block_k + 15) / 16 * 16;  // packed B starts 64-byte aligned
    float *packed_a = rstpm_gemm_scratch((size_t)(packed_a_floats + block_k * block_n));
    float *packed_b = packed_a + packed_a_floats;
    const micro_kernel_fn(*kernels)[2] = bf16 ? micro_kernels_bf16 : micro_kernels;
    for (long jc = 0; jc < n; jc += NC) {
        long nc = n - jc < NC ? n - jc : NC;
        for (long pc = 0; pc < k; pc += block_k) {
            long kc = k - pc < block_k ? k - pc : block_k;
            pack_b(source_b, pc, kc, jc, nc, bf16, packed_b);
            for (long ic = 0; ic < m; ic += MC) {
                long mc = m - ic < MC ? m - ic : MC;
                const float *panels_a = packed_a;
                if (prepacked)
                    panels_a = prepacked_panels(prepacked, ic, pc, kc);
                else
                    pack_a_panels(bf16, transpose_a, a, lda, ic, mc, pc, kc, packed_a);
                struct tile_update update = {
                    .alpha = alpha, .beta = beta, .first = pc == 0, .last = pc + kc == k,
                    .clamp = clamp, .low = low, .high = high,
                };
                for (long jr = 0; jr < nc; jr += NR) {
                    long width = nc - jr < NR ? nc - jr : NR;
                    __mmask16 low_mask = mask_first(width), high_mask = mask_first(width - 16);
                    const float *panel_b = packed_b + jr * kc;
                    for (long ir = 0; ir < mc; ir += MR) {
                        long rows = mc - ir < MR ? mc - ir : MR;
                        update.bias = bias ? bias + ic + ir : NULL;
                        kernels[rows - 1][width > 16](kc, panels_a + ir * kc, panel_b, c + (ic + ir) * ldc + jc + jr, ldc,
                                                      low_mask, high_mask, &update);
                    }
                }
            }
        }
    }
}

void rstpm_sgemm(int transpose_a, int transpose_b, long m, long n, long k, float alpha,
                 const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    struct b_source source_b = {.transpose = transpose_b, .b = b, .ldb = ldb};
    gemm(0, transpose_a, m, n, k, alpha, a, lda, NULL, &source_b, beta, NULL, 0, 0, 0, c, ldc);
}

int rstpm_gemm_clamps(float low, float high) { return !(isinf(low) && low < 0 && isinf(high) && high > 0); }

static void bias_clamp_product(int bf16, long m, long n, long k, const float *a, long lda, const struct rstpm_packed_a *packed_a,
                               const struct b_source *source_b, const float *bias, float low, float high, float *c, long ldc) {
    gemm(bf16, 0, m, n, k, 1, a, lda, packed_a, source_b, 0, bias, rstpm_gemm_clamps(low, high), low, high, c, ldc);
}

void rstpm_sgemm_bias_clamp(long m, long n, long k, const float *a, long lda, const struct rstpm_packed_a *packed_a,
                            const float *b, long ldb, const float *bias, float low, float high, float *c, long ldc) {
    bias_clamp_product(0, m, n, k, a, lda, packed_a, &(struct b_source){.b = b, .ldb = ldb}, bias, low, high, c, ldc);
}

void rstpm_bf16_sgemm_bias_clamp(long m, long n, long k, const float *a, long lda, const struct rstpm_packed_a *packed_a,
                                 const float *b, long ldb, const float *bias, float low, float high, float *c, long ldc) {
    bias_clamp_product(1, m, n, k, a, lda, packed_a, &(struct b_source){.b = b, .ldb = ldb}, bias, low, high, c, ldc);
}

void rstpm_convolution_bias_clamp(long m, long n, long k, const float *a, long lda, const struct rstpm_packed_a *packed_a,
                                  const struct rstpm_convolution_input *input, long first_column,
                                  const float *bias, float low, float high, float *c, long ldc) {
    struct b_source source_b = {.convolution = input, .first_column = first_column};
    bias_clamp_product(0, m, n, k, a, lda, packed_a, &source_b, bias, low, high, c, ldc);
}

void rstpm_bf16_convolution_bias_clamp(long m, long n, long k, const float *a, long lda, const struct rstpm_packed_a *packed_a,
                                       const struct rstpm_convolution_input *input, long first_column,
                                       const float *bias, float low, float high, float *c, long ldc) {
    struct b_source source_b = {.convolution = input, .first_column = first_column};
    bias_clamp_product(1, m, n, k, a, lda, packed_a, &source_b, bias, low, high, c, ldc);
}
