#include "avx2_lanes.h"
#include "internal.h"

// The AVX2 + FMA product, blocked as gemm.c's AVX-512 one (see there) for 16 ymm registers:
// the micro-kernel keeps MR x 2 accumulators (MR rows by NR = 16 columns of C), broadcasting
// one value of A per row and loading two vectors of B per step of k. The packed B micro-panel
// (KC x NR, 24 KiB) stays in L1, the packed A block (MC x KC, 144 KiB) in L2. Edges of C use
// masks; packing zero-pads, so the micro-kernel reads whole vectors.
#define MR RSTPM_AVX2_GEMM_ROWS
#define NR RSTPM_AVX2_GEMM_COLUMNS
#define KC 384
#define MC (16 * MR)
#define NC 2048
#define UNROLLED _Pragma("clang loop unroll(full)")

// Columns jc..jc+nc, rows pc..pc+kc of a convolution input's unfolded matrix, as NR-column
// panels [k][NR], read as gemm.c's pack_b_convolution does: per (tap, run of outputs in one
// output row) one masked load from one stride phase of an input row, tabulated per panel.
AVX2 static void pack_b_convolution(const struct rstpm_convolution_input *x, long first_column, long pc, long kc, long jc, long nc,
                                    float *packed) {
    const long kernel = x->kernel, taps = kernel * kernel, stride = x->stride;
    const long phase_width = (x->width + stride - 1) / stride, row_length = stride * phase_width;
    const long plane = x->height * row_length;
    struct load {
        __m256i low, high;
        long offset;  // from the channel's plane to the input element lane 0 would read
    } loads[taps * NR];
    int load_count[taps];
    for (long j0 = 0; j0 < nc; j0 += NR, packed += kc * NR) {
        long width = nc - j0 < NR ? nc - j0 : NR;
        for (long tap = 0; tap < taps; ++tap) load_count[tap] = 0;
        for (long lane = 0; lane < width;) {
            long j = first_column + jc + j0 + lane;
            long oy = j / x->output_width, ox = j % x->output_width;
            long count = x->output_width - ox < width - lane ? x->output_width - ox : width - lane;
            for (long tap = 0; tap < taps; ++tap) {
                long iy = oy * stride + tap / kernel - x->padding;
                long shift = tap % kernel - x->padding;
                long phase = ((shift % stride) + stride) % stride, whole = (shift - phase) / stride;
                long phase_count = (x->width - phase + stride - 1) / stride, start = ox + whole;
                long first = start < 0 ? -start : 0, end = phase_count - start < count ? phase_count - start : count;
                if (iy < 0 || iy >= x->height || first >= end) continue;
                unsigned lanes = ((1u << (lane + end)) - 1) & ~((1u << (lane + first)) - 1);
                loads[tap * NR + load_count[tap]++] = (struct load){
                    lanes_of_bits(lanes & 0xFF), lanes_of_bits(lanes >> 8), iy * row_length + phase * phase_width + start - lane};
            }
            lane += count;
        }
        long channel = pc / taps, tap = pc % taps;
        for (long p = 0; p < kc; ++p) {
            const float *source = x->planes + channel * plane;
            __m256 low = _mm256_setzero_ps(), high = low;
            const struct load *load = loads + tap * NR;
            // The loads' lanes are disjoint and masked lanes read as zero: OR merges them.
            for (int r = 0; r < load_count[tap]; ++r) {
                low = _mm256_or_ps(low, _mm256_maskload_ps(source + load[r].offset, load[r].low));
                high = _mm256_or_ps(high, _mm256_maskload_ps(source + load[r].offset + 8, load[r].high));
                _mm_prefetch((const char *)(source + load[r].offset + NR), _MM_HINT_T0);
            }
            _mm256_store_ps(packed + p * NR, low);
            _mm256_store_ps(packed + p * NR + 8, high);
            if (++tap == taps) {
                tap = 0;
                ++channel;
            }
        }
    }
}

// op(B) rows pc..pc+kc, columns jc..jc+nc, as NR-column panels [k][NR], zero past nc.
AVX2 static void pack_b(const struct b_source *source_b, long pc, long kc, long jc, long nc, float *packed) {
    if (source_b->convolution) {
        pack_b_convolution(source_b->convolution, source_b->first_column, pc, kc, jc, nc, packed);
        return;
    }
    const float *b = source_b->b;
    long ldb = source_b->ldb;
    for (long j0 = 0; j0 < nc; j0 += NR, packed += kc * NR) {
        long width = nc - j0 < NR ? nc - j0 : NR;
        if (!source_b->transpose) {
            const float *source = b + pc * ldb + jc + j0;
            for (long k = 0; k < kc; ++k, source += ldb) {
                _mm256_store_ps(packed + k * NR, load_first(source, width));
                _mm256_store_ps(packed + k * NR + 8, load_first(source + 8, width - 8));
                _mm_prefetch((const char *)(source + NR), _MM_HINT_T0);
            }
        } else {
            // op(B)[k][j] = b[j * ldb + k]: the transposed products are training's, off the hot path.
            const float *source = b + (jc + j0) * ldb + pc;
            for (long k = 0; k < kc; ++k)
                for (long j = 0; j < NR; ++j) packed[k * NR + j] = j < width ? source[j * ldb + k] : 0;
        }
    }
}

// op(A) rows ic..ic+mc, columns pc..pc+kc, as MR-row panels [k][MR], zero past mc.
static void pack_a(int transpose, const float *a, long lda, long ic, long mc, long pc, long kc, float *packed) {
    for (long i0 = 0; i0 < mc; i0 += MR, packed += kc * MR) {
        long rows = mc - i0 < MR ? mc - i0 : MR;
        for (long i = 0; i < MR; ++i) {
            if (i >= rows) {
                for (long k = 0; k < kc; ++k) packed[k * MR + i] = 0;
            } else if (!transpose) {
                const float *source = a + (ic + i0 + i) * lda + pc;
                for (long k = 0; k < kc; ++k) packed[k * MR + i] = source[k];
            } else {
                const float *source = a + pc * lda + ic + i0 + i;
                for (long k = 0; k < kc; ++k) packed[k * MR + i] = source[k * lda];
            }
        }
    }
}

// alpha * sum, then beta * C and the bias (first block of k) or + C (later blocks), clamped
// after the last block; `count` lanes of C exist.
AVX2_INLINE __m256 finish(__m256 sum, const float *c, long count, const struct tile_update *update, long row) {
    __m256 value = _mm256_mul_ps(sum, _mm256_set1_ps(update->alpha));
    if (update->first) {
        // beta == 0 must not read C: it may hold garbage or NaN.
        if (update->beta != 0) value = _mm256_fmadd_ps(_mm256_set1_ps(update->beta), load_first(c, count), value);
        if (update->bias) value = _mm256_add_ps(value, _mm256_set1_ps(update->bias[row]));
    } else {
        value = _mm256_add_ps(value, load_first(c, count));
    }
    if (update->last && update->clamp)
        value = _mm256_min_ps(_mm256_max_ps(value, _mm256_set1_ps(update->low)), _mm256_set1_ps(update->high));
    return value;
}

// C tile (rows x `width` <= 8 * vectors columns) from an MR-row panel of A and an NR-column
// panel of B; `rows` and `vectors` are constants in each specialization, so the sums are registers.
AVX2_INLINE void micro_kernel(int rows, int vectors, long kc, const float *a, const float *b, float *c, long ldc, long width,
                              const struct tile_update *update) {
    UNROLLED
    for (int i = 0; i < rows; ++i) _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
    __m256 sum[MR][2];
    {
        __m256 b0 = _mm256_load_ps(b);
        __m256 b1 = vectors == 2 ? _mm256_load_ps(b + 8) : b0;
        UNROLLED
        for (int i = 0; i < rows; ++i) {
            __m256 ai = _mm256_broadcast_ss(a + i);
            sum[i][0] = _mm256_mul_ps(ai, b0);
            if (vectors == 2) sum[i][1] = _mm256_mul_ps(ai, b1);
        }
        a += MR;
        b += NR;
    }
    for (long p = 1; p < kc; ++p, a += MR, b += NR) {
        __m256 b0 = _mm256_load_ps(b);
        __m256 b1 = vectors == 2 ? _mm256_load_ps(b + 8) : b0;
        UNROLLED
        for (int i = 0; i < rows; ++i) {
            __m256 ai = _mm256_broadcast_ss(a + i);
            sum[i][0] = _mm256_fmadd_ps(ai, b0, sum[i][0]);
            if (vectors == 2) sum[i][1] = _mm256_fmadd_ps(ai, b1, sum[i][1]);
        }
    }
    UNROLLED
    for (int i = 0; i < rows; ++i) {
        float *row = c + i * ldc;
        store_first(row, width, finish(sum[i][0], row, width, update, i));
        if (vectors == 2) store_first(row + 8, width - 8, finish(sum[i][1], row + 8, width - 8, update, i));
    }
}

typedef void (*micro_kernel_fn)(long, const float *, const float *, float *, long, long, const struct tile_update *);

#define SPECIALIZE(rows)                                                                                               \
    AVX2 static void micro_kernel_##rows##x16(long kc, const float *a, const float *b, float *c, long ldc, long width, \
                                              const struct tile_update *u) {                                          \
        micro_kernel(rows, 2, kc, a, b, c, ldc, width, u);                                                             \
    }                                                                                                                  \
    AVX2 static void micro_kernel_##rows##x8(long kc, const float *a, const float *b, float *c, long ldc, long width,  \
                                             const struct tile_update *u) {                                           \
        micro_kernel(rows, 1, kc, a, b, c, ldc, width, u);                                                             \
    }
SPECIALIZE(1) SPECIALIZE(2) SPECIALIZE(3) SPECIALIZE(4) SPECIALIZE(5) SPECIALIZE(6)
#undef SPECIALIZE

// [rows - 1][vectors - 1]
static const micro_kernel_fn micro_kernels[MR][2] = {
    {micro_kernel_1x8, micro_kernel_1x16}, {micro_kernel_2x8, micro_kernel_2x16}, {micro_kernel_3x8, micro_kernel_3x16},
    {micro_kernel_4x8, micro_kernel_4x16}, {micro_kernel_5x8, micro_kernel_5x16}, {micro_kernel_6x8, micro_kernel_6x16},
};

// K cut into equal blocks of at most KC.
static long k_block(long k) { return (k + (k + KC - 1) / KC - 1) / ((k + KC - 1) / KC); }

// Where the packed panels of op(A) rows first_row.., columns pc..pc+kc start in a matrix of
// `rows` rows packed whole by rstpm_avx2_pack_a (first_row a multiple of MR).
static const float *prepacked_panels(const struct rstpm_packed_a *packed, long first_row, long pc, long kc) {
    return packed->panels + pc * ((packed->rows + MR - 1) / MR * MR) + (packed->first_row + first_row) * kc;
}

long rstpm_avx2_packed_a_floats(long m, long k) { return (m + MR - 1) / MR * MR * k; }

AVX2 void rstpm_avx2_pack_a(long m, long k, const float *a, long lda, float *panels) {
    const long block_k = k_block(k), padded_rows = (m + MR - 1) / MR * MR;
    for (long pc = 0; pc < k; pc += block_k) {
        long kc = k - pc < block_k ? k - pc : block_k;
        pack_a(0, a, lda, 0, m, pc, kc, panels + pc * padded_rows);
    }
}

// `prepacked` (NULL: none) replaces packing op(A) from `a` (then not read).
AVX2 static void gemm(int transpose_a, long m, long n, long k, float alpha, const float *a, long lda,
                      const struct rstpm_packed_a *prepacked, const struct b_source *source_b, float beta, const float *bias,
                      int clamp, float low, float high, float *c, long ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0) {
        rstpm_gemm_scale_only(m, n, beta, bias, clamp, low, high, c, ldc);
        return;
    }
    long block_k = k_block(k);
    long block_m = m < MC ? (m + MR - 1) / MR * MR : MC;
    long block_n = n < NC ? (n + NR - 1) / NR * NR : NC;
    long packed_a_floats = (block_m * block_k + 15) / 16 * 16;  // packed B starts 64-byte aligned
    float *packed_a = rstpm_gemm_scratch((size_t)(packed_a_floats + block_k * block_n));
    float *packed_b = packed_a + packed_a_floats;
    for (long jc = 0; jc < n; jc += NC) {
        long nc = n - jc < NC ? n - jc : NC;
        for (long pc = 0; pc < k; pc += block_k) {
            long kc = k - pc < block_k ? k - pc : block_k;
            pack_b(source_b, pc, kc, jc, nc, packed_b);
            for (long ic = 0; ic < m; ic += MC) {
                long mc = m - ic < MC ? m - ic : MC;
                const float *panels_a = packed_a;
                if (prepacked)
                    panels_a = prepacked_panels(prepacked, ic, pc, kc);
                else
                    pack_a(transpose_a, a, lda, ic, mc, pc, kc, packed_a);
                struct tile_update update = {
                    .alpha = alpha, .beta = beta, .first = pc == 0, .last = pc + kc == k,
                    .clamp = clamp, .low = low, .high = high,
                };
                for (long jr = 0; jr < nc; jr += NR) {
                    long width = nc - jr < NR ? nc - jr : NR;
                    const float *panel_b = packed_b + jr * kc;
                    for (long ir = 0; ir < mc; ir += MR) {
                        long rows = mc - ir < MR ? mc - ir : MR;
                        update.bias = bias ? bias + ic + ir : NULL;
                        micro_kernels[rows - 1][width > 8](kc, panels_a + ir * kc, panel_b, c + (ic + ir) * ldc + jc + jr, ldc,
                                                           width, &update);
                    }
                }
            }
        }
    }
}

AVX2 void rstpm_avx2_sgemm(int transpose_a, int transpose_b, long m, long n, long k, float alpha, const float *a, long lda,
                      const float *b, long ldb, float beta, float *c, long ldc) {
    struct b_source source_b = {.transpose = transpose_b, .b = b, .ldb = ldb};
    gemm(transpose_a, m, n, k, alpha, a, lda, NULL, &source_b, beta, NULL, 0, 0, 0, c, ldc);
}

AVX2 void rstpm_avx2_sgemm_bias_clamp(long m, long n, long k, const float *a, long lda, const struct rstpm_packed_a *packed_a,
                                 const float *b, long ldb, const float *bias, float low, float high, float *c, long ldc) {
    struct b_source source_b = {.b = b, .ldb = ldb};
    gemm(0, m, n, k, 1, a, lda, packed_a, &source_b, 0, bias, rstpm_gemm_clamps(low, high), low, high, c, ldc);
}

AVX2 void rstpm_avx2_convolution_bias_clamp(long m, long n, long k, const float *a, long lda, const struct rstpm_packed_a *packed_a,
                                       const struct rstpm_convolution_input *input, long first_column, const float *bias,
                                       float low, float high, float *c, long ldc) {
    struct b_source source_b = {.convolution = input, .first_column = first_column};
    gemm(0, m, n, k, 1, a, lda, packed_a, &source_b, 0, bias, rstpm_gemm_clamps(low, high), low, high, c, ldc);
}
