#include <stdint.h>
#include <string.h>

#include "avx2_lanes.h"
#include "winograd.h"

// The transforms of winograd.h, in two forms.
//
// Loops (the generic set, and the AVX2 output transform): one tile row at a time, in chunks of up
// to CHUNK tiles; the patch rows are first split into their four column phases (column 4 * tx +
// q), so that every step is a loop over adjacent tiles, which the compiler vectorises. A tile row
// of a small plane is only 4 or 8 tiles, so these run mostly as scalar remainders there.
//
// Lanes (AVX-512 both ways, AVX2 the input transform): one vector lane per tile, 16 (8)
// consecutive tiles of the range at a time whatever their tile rows. On AVX-512 each tile row's
// run of tiles is copied as adjacent floats (zero in the padding) and split into column phases
// with permutes, and the output rows are interleaved back the same way (gathers and scatters
// are slow on AMD's cores); the AVX2 input transform reads with masked gathers.
#define CHUNK 64
#define BODY static inline __attribute__((always_inline))
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))

// V = B^T d B for tile row ty, tiles tx0 ..< tx0 + count, with
// B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1].
BODY void input_tiles(const float *plane, long height, long width, long padding, long ty, long tx0, long count, float *v,
                      long v_stride) {
    // phases[r][q * stride + i]: patch row r, input column 4 * (tx0 + i) + q - padding (zero outside).
    float phases[6][4 * (CHUNK + 1)], line[4 * (CHUNK + 1)];
    const long stride = count + 1, span = 4 * stride, first_column = 4 * tx0 - padding;
    for (int r = 0; r < 6; r++) {
        const long iy = 4 * ty - padding + r;
        memset(line, 0, (size_t)span * sizeof(float));
        if (iy >= 0 && iy < height) {
            long begin = first_column < 0 ? -first_column : 0;
            long end = width - first_column < span ? width - first_column : span;
            if (end > begin) memcpy(line + begin, plane + iy * width + first_column + begin, (size_t)(end - begin) * sizeof(float));
        }
        for (long i = 0; i < stride; i++) {
            for (int q = 0; q < 4; q++) phases[r][q * stride + i] = line[4 * i + q];
        }
    }
    // rows[k] = (B^T d)[k] along the patch rows, per phase and tile.
    float rows[6][4 * (CHUNK + 1)];
    const float *d0 = phases[0], *d1 = phases[1], *d2 = phases[2], *d3 = phases[3], *d4 = phases[4], *d5 = phases[5];
    for (long n = 0; n < span; n++) {
        rows[0][n] = 4 * d0[n] - 5 * d2[n] + d4[n];
        rows[1][n] = -4 * d1[n] - 4 * d2[n] + d3[n] + d4[n];
        rows[2][n] = 4 * d1[n] - 4 * d2[n] - d3[n] + d4[n];
        rows[3][n] = -2 * d1[n] - d2[n] + 2 * d3[n] + d4[n];
        rows[4][n] = 2 * d1[n] - d2[n] - 2 * d3[n] + d4[n];
        rows[5][n] = 4 * d1[n] - 5 * d3[n] + d5[n];
    }
    // Then along the columns: patch column j is phase j % 4 of tile i + j / 4.
    for (int k = 0; k < 6; k++) {
        const float *r0 = rows[k], *r1 = r0 + stride, *r2 = r1 + stride, *r3 = r2 + stride;
        float *out = v + (long)k * 6 * v_stride;
        for (long i = 0; i < count; i++) {
            out[i] = 4 * r0[i] - 5 * r2[i] + r0[i + 1];
            out[v_stride + i] = -4 * r1[i] - 4 * r2[i] + r3[i] + r0[i + 1];
            out[2 * v_stride + i] = 4 * r1[i] - 4 * r2[i] - r3[i] + r0[i + 1];
            out[3 * v_stride + i] = -2 * r1[i] - r2[i] + 2 * r3[i] + r0[i + 1];
            out[4 * v_stride + i] = 2 * r1[i] - r2[i] - 2 * r3[i] + r0[i + 1];
            out[5 * v_stride + i] = 4 * r1[i] - 5 * r3[i] + r1[i + 1];
        }
    }
}

BODY void input_transform(const float *plane, long height, long width, long padding, long tiles_x, long tile_row_begin,
                          long tile_row_end, float *v, long v_stride) {
    for (long ty = tile_row_begin; ty < tile_row_end; ty++) {
        for (long tx0 = 0; tx0 < tiles_x; tx0 += CHUNK) {
            long count = tiles_x - tx0 < CHUNK ? tiles_x - tx0 : CHUNK;
            input_tiles(plane, height, width, padding, ty, tx0, count, v + (ty - tile_row_begin) * tiles_x + tx0, v_stride);
        }
    }
}

// Y = A^T M A for tile row ty, tiles tx0 ..< tx0 + count, with
// A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1].
BODY void output_tiles(const float *m, long m_stride, long ty, long tx0, long count, float bias, float low, float high,
                       float *plane, long height, long width) {
    float s[6][4][CHUNK];  // (M A)[k][j] per tile
    for (int k = 0; k < 6; k++) {
        const float *m0 = m + (long)k * 6 * m_stride, *m1 = m0 + m_stride, *m2 = m1 + m_stride, *m3 = m2 + m_stride,
                    *m4 = m3 + m_stride, *m5 = m4 + m_stride;
        for (long i = 0; i < count; i++) {
            float sum12 = m1[i] + m2[i], difference12 = m1[i] - m2[i];
            float sum34 = m3[i] + m4[i], difference34 = m3[i] - m4[i];
            s[k][0][i] = m0[i] + sum12 + sum34;
            s[k][1][i] = difference12 + 2 * difference34;
            s[k][2][i] = sum12 + 4 * sum34;
            s[k][3][i] = difference12 + 8 * difference34 + m5[i];
        }
    }
    float y[4][4][CHUNK], line[4 * CHUNK];
    for (int j = 0; j < 4; j++) {
        for (long i = 0; i < count; i++) {
            float sum12 = s[1][j][i] + s[2][j][i], difference12 = s[1][j][i] - s[2][j][i];
            float sum34 = s[3][j][i] + s[4][j][i], difference34 = s[3][j][i] - s[4][j][i];
            y[0][j][i] = s[0][j][i] + sum12 + sum34;
            y[1][j][i] = difference12 + 2 * difference34;
            y[2][j][i] = sum12 + 4 * sum34;
            y[3][j][i] = difference12 + 8 * difference34 + s[5][j][i];
        }
    }
    const long first_column = 4 * tx0, columns = width - first_column < 4 * count ? width - first_column : 4 * count;
    for (int r = 0; r < 4 && 4 * ty + r < height; r++) {
        for (long i = 0; i < count; i++) {
            for (int j = 0; j < 4; j++) line[4 * i + j] = y[r][j][i];
        }
        float *out = plane + (4 * ty + r) * width + first_column;
        for (long c = 0; c < columns; c++) {
            float value = line[c] + bias;
            value = value < low ? low : value;
            out[c] = value > high ? high : value;
        }
    }
}

BODY void output_transform(const float *m, long m_stride, long tiles_x, long tile_row_begin, long tile_row_end, float bias,
                           float low, float high, float *plane, long height, long width) {
    for (long ty = tile_row_begin; ty < tile_row_end; ty++) {
        for (long tx0 = 0; tx0 < tiles_x; tx0 += CHUNK) {
            long count = tiles_x - tx0 < CHUNK ? tiles_x - tx0 : CHUNK;
            output_tiles(m + (ty - tile_row_begin) * tiles_x + tx0, m_stride, ty, tx0, count, bias, low, high, plane, height,
                         width);
        }
    }
}

void rstpm_winograd_input_generic(const float *plane, long height, long width, long padding, long tiles_x,
                                  long tile_row_begin, long tile_row_end, float *v, long v_stride) {
    input_transform(plane, height, width, padding, tiles_x, tile_row_begin, tile_row_end, v, v_stride);
}

void rstpm_winograd_output_generic(const float *m, long m_stride, long tiles_x, long tile_row_begin, long tile_row_end,
                                   float bias, float low, float high, float *plane, long height, long width) {
    output_transform(m, m_stride, tiles_x, tile_row_begin, tile_row_end, bias, low, high, plane, height, width);
}

AVX2 void rstpm_winograd_output_avx2(const float *m, long m_stride, long tiles_x, long tile_row_begin, long tile_row_end,
                                     float bias, float low, float high, float *plane, long height, long width) {
    output_transform(m, m_stride, tiles_x, tile_row_begin, tile_row_end, bias, low, high, plane, height, width);
}

// y = B^T x for six vectors x (a patch's column or row), lane by lane (any vector type).
#define B_TRANSPOSED(x, y)                                            \
    do {                                                              \
        (y)[0] = 4.0f * (x)[0] - 5.0f * (x)[2] + (x)[4];              \
        (y)[1] = -4.0f * (x)[1] - 4.0f * (x)[2] + (x)[3] + (x)[4];    \
        (y)[2] = 4.0f * (x)[1] - 4.0f * (x)[2] - (x)[3] + (x)[4];     \
        (y)[3] = -2.0f * (x)[1] - (x)[2] + 2.0f * (x)[3] + (x)[4];    \
        (y)[4] = 2.0f * (x)[1] - (x)[2] - 2.0f * (x)[3] + (x)[4];     \
        (y)[5] = 4.0f * (x)[1] - 5.0f * (x)[3] + (x)[5];              \
    } while (0)

// y = A^T x for six vectors x, into four.
#define A_TRANSPOSED(x, y)                                                                         \
    do {                                                                                           \
        const __typeof__((x)[0]) sum12 = (x)[1] + (x)[2], difference12 = (x)[1] - (x)[2];          \
        const __typeof__((x)[0]) sum34 = (x)[3] + (x)[4], difference34 = (x)[3] - (x)[4];          \
        (y)[0] = (x)[0] + sum12 + sum34;                                                           \
        (y)[1] = difference12 + 2.0f * difference34;                                               \
        (y)[2] = sum12 + 4.0f * sum34;                                                             \
        (y)[3] = difference12 + 8.0f * difference34 + (x)[5];                                      \
    } while (0)

// The top-left corners (row, column) of the patches of `lanes` consecutive tiles from tile
// `first` of the range: 4 * (ty, tx) - padding. Lanes past `lanes` repeat the last tile (they are
// masked off wherever they are used).
static inline void tile_corners(long first, long lanes, long tiles_x, long tile_row_begin, long padding, int32_t *rows,
                                int32_t *columns, long count) {
    long ty = tile_row_begin + first / tiles_x, tx = first % tiles_x;
    for (long lane = 0; lane < count; lane++) {
        rows[lane] = (int32_t)(4 * ty - padding);
        columns[lane] = (int32_t)(4 * tx - padding);
        if (lane + 1 < lanes && ++tx == tiles_x) {
            tx = 0;
            ++ty;
        }
    }
}

// Lanes low <= i < high of a 16-lane mask (none where high <= low).
static inline __mmask16 lanes_from_to(long low, long high) {
    low = low < 0 ? 0 : low;
    high = high > 16 ? 16 : high;
    return high <= low ? 0 : (__mmask16)(((1u << high) - 1) & ~((1u << low) - 1));
}

// out[0 ..< count] = row[start ..< start + count], zero outside 0 ..< width; writes whole vectors
// (up to 15 floats past count).
AVX512 static inline void copy_cropped(const float *row, long width, long start, long count, float *out) {
    for (long c = 0; c < count; c += 16) {
        const __mmask16 mask = lanes_from_to(-(start + c), width - (start + c) < count - c ? width - (start + c) : count - c);
        // Masked-off lanes are never read, wherever they would point.
        _mm512_storeu_ps(out + c, _mm512_maskz_loadu_ps(mask, row + start + c));
    }
}

AVX512 void rstpm_winograd_input_avx512(const float *plane, long height, long width, long padding, long tiles_x,
                                        long tile_row_begin, long tile_row_end, float *v, long v_stride) {
    const long tiles = (tile_row_end - tile_row_begin) * tiles_x;
    // Phases q of 16 tiles' 4 columns (tile after tile): pairs of phases from 8 tiles, then 16.
    const __m512i phases01 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
    const __m512i phases23 = _mm512_setr_epi32(2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
    const __m512i halves = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    const __m512i later_halves = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    for (long f0 = 0; f0 < tiles; f0 += 16) {
        const long lanes = tiles - f0 < 16 ? tiles - f0 : 16;
        const __mmask16 live = lanes_from_to(0, lanes);
        // own[r]: patch row r's columns 0..3 of each tile, tile after tile; next[r]: its columns 4..7.
        float own[6][80] __attribute__((aligned(64))), next[6][80] __attribute__((aligned(64)));
        long ty = tile_row_begin + f0 / tiles_x, tx = f0 % tiles_x;
        for (long lane = 0; lane < lanes; tx = 0, ++ty) {
            const long run = tiles_x - tx < lanes - lane ? tiles_x - tx : lanes - lane;
            for (int r = 0; r < 6; r++) {
                const long iy = 4 * ty - padding + r;
                if (iy < 0 || iy >= height) {
                    memset(own[r] + 4 * lane, 0, (size_t)(4 * run) * sizeof(float));
                    memset(next[r] + 4 * lane, 0, (size_t)(4 * run) * sizeof(float));
                    continue;
                }
                copy_cropped(plane + iy * width, width, 4 * tx - padding, 4 * run, own[r] + 4 * lane);
                copy_cropped(plane + iy * width, width, 4 * tx + 4 - padding, 4 * run, next[r] + 4 * lane);
            }
            lane += run;
        }
        __m512 t[6][6];  // t[j][k] = (B^T d)[k][j]
        for (int r = 0; r < 6; r++) {
            const __m512 a0 = _mm512_load_ps(own[r]), a1 = _mm512_load_ps(own[r] + 16), a2 = _mm512_load_ps(own[r] + 32),
                         a3 = _mm512_load_ps(own[r] + 48);
            const __m512 e0 = _mm512_load_ps(next[r]), e1 = _mm512_load_ps(next[r] + 16), e2 = _mm512_load_ps(next[r] + 32),
                         e3 = _mm512_load_ps(next[r] + 48);
            const __m512 a01 = _mm512_permutex2var_ps(a0, phases01, a1), later_a01 = _mm512_permutex2var_ps(a2, phases01, a3);
            const __m512 a23 = _mm512_permutex2var_ps(a0, phases23, a1), later_a23 = _mm512_permutex2var_ps(a2, phases23, a3);
            const __m512 e01 = _mm512_permutex2var_ps(e0, phases01, e1), later_e01 = _mm512_permutex2var_ps(e2, phases01, e3);
            t[0][r] = _mm512_permutex2var_ps(a01, halves, later_a01);
            t[1][r] = _mm512_permutex2var_ps(a01, later_halves, later_a01);
            t[2][r] = _mm512_permutex2var_ps(a23, halves, later_a23);
            t[3][r] = _mm512_permutex2var_ps(a23, later_halves, later_a23);
            t[4][r] = _mm512_permutex2var_ps(e01, halves, later_e01);
            t[5][r] = _mm512_permutex2var_ps(e01, later_halves, later_e01);
        }
        // t[j] holds column j of the patches, d[r][j]; B^T along r, then along j.
        __m512 u[6][6];  // u[k][j] = (B^T d)[k][j]
        for (int j = 0; j < 6; j++) {
            __m512 column[6];
            B_TRANSPOSED(t[j], column);
            for (int k = 0; k < 6; k++) u[k][j] = column[k];
        }
        for (int k = 0; k < 6; k++) {
            __m512 out[6];
            B_TRANSPOSED(u[k], out);
            for (int l = 0; l < 6; l++) _mm512_mask_storeu_ps(v + (k * 6 + l) * v_stride + f0, live, out[l]);
        }
    }
}

AVX512 void rstpm_winograd_output_avx512(const float *m, long m_stride, long tiles_x, long tile_row_begin, long tile_row_end,
                                         float bias, float low, float high, float *plane, long height, long width) {
    const long tiles = (tile_row_end - tile_row_begin) * tiles_x;
    const __m512 b = _mm512_set1_ps(bias), lowest = _mm512_set1_ps(low), highest = _mm512_set1_ps(high);
    // Interleave the four column vectors of an output row: (a, b) and (c, d) into pairs, then
    // the pairs into the tiles' four columns, tile after tile.
    const __m512i pairs = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i later_pairs = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512i quads = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
    const __m512i later_quads = _mm512_setr_epi32(8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
    for (long f0 = 0; f0 < tiles; f0 += 16) {
        const long lanes = tiles - f0 < 16 ? tiles - f0 : 16;
        const __mmask16 live = (__mmask16)((1u << lanes) - 1);
        __m512 s[4][6];  // s[j][k] = (M A)[k][j]
        for (int k = 0; k < 6; k++) {
            __m512 row[6], combined[4];
            for (int l = 0; l < 6; l++) row[l] = _mm512_maskz_loadu_ps(live, m + (k * 6 + l) * m_stride + f0);
            A_TRANSPOSED(row, combined);
            for (int j = 0; j < 4; j++) s[j][k] = combined[j];
        }
        __m512 y[4][4];  // y[r][j], clamped
        for (int j = 0; j < 4; j++) {
            __m512 column[4];
            A_TRANSPOSED(s[j], column);
            for (int r = 0; r < 4; r++) y[r][j] = _mm512_min_ps(_mm512_max_ps(column[r] + b, lowest), highest);
        }
        float lines[4][64] __attribute__((aligned(64)));  // output row r of the 16 tiles, 4 columns each
        for (int r = 0; r < 4; r++) {
            const __m512 ab = _mm512_permutex2var_ps(y[r][0], pairs, y[r][1]), later_ab = _mm512_permutex2var_ps(y[r][0], later_pairs, y[r][1]);
            const __m512 cd = _mm512_permutex2var_ps(y[r][2], pairs, y[r][3]), later_cd = _mm512_permutex2var_ps(y[r][2], later_pairs, y[r][3]);
            _mm512_store_ps(lines[r], _mm512_permutex2var_ps(ab, quads, cd));
            _mm512_store_ps(lines[r] + 16, _mm512_permutex2var_ps(ab, later_quads, cd));
            _mm512_store_ps(lines[r] + 32, _mm512_permutex2var_ps(later_ab, quads, later_cd));
            _mm512_store_ps(lines[r] + 48, _mm512_permutex2var_ps(later_ab, later_quads, later_cd));
        }
        // The lanes' runs within one tile row each: 4 * run adjacent outputs per row, cropped.
        long ty = tile_row_begin + f0 / tiles_x, tx = f0 % tiles_x;
        for (long lane = 0; lane < lanes; tx = 0, ++ty) {
            const long run = tiles_x - tx < lanes - lane ? tiles_x - tx : lanes - lane;
            const long columns = width - 4 * tx < 4 * run ? width - 4 * tx : 4 * run;
            for (int r = 0; r < 4 && 4 * ty + r < height; r++) {
                float *out = plane + (4 * ty + r) * width + 4 * tx;
                const float *in = lines[r] + 4 * lane;
                for (long c = 0; c < columns; c += 16) {
                    const __mmask16 mask = columns - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (columns - c)) - 1);
                    _mm512_mask_storeu_ps(out + c, mask, _mm512_maskz_loadu_ps(mask, in + c));
                }
            }
            lane += run;
        }
    }
}

AVX2 void rstpm_winograd_input_avx2(const float *plane, long height, long width, long padding, long tiles_x,
                                    long tile_row_begin, long tile_row_end, float *v, long v_stride) {
    const long tiles = (tile_row_end - tile_row_begin) * tiles_x;
    const __m256i below_zero = _mm256_set1_epi32(-1), h = _mm256_set1_epi32((int)height), w = _mm256_set1_epi32((int)width);
    for (long f0 = 0; f0 < tiles; f0 += 8) {
        const long lanes = tiles - f0 < 8 ? tiles - f0 : 8;
        int32_t ys[8], xs[8];
        tile_corners(f0, lanes, tiles_x, tile_row_begin, padding, ys, xs, 8);
        const __m256i oy = _mm256_loadu_si256((const __m256i *)ys), ox = _mm256_loadu_si256((const __m256i *)xs);
        const __m256i origin = _mm256_add_epi32(_mm256_mullo_epi32(oy, w), ox);
        const __m256i live = first_lanes(lanes);
        __m256i rows[6], columns[6];
        for (int k = 0; k < 6; k++) {
            const __m256i iy = _mm256_add_epi32(oy, _mm256_set1_epi32(k)), ix = _mm256_add_epi32(ox, _mm256_set1_epi32(k));
            rows[k] = _mm256_and_si256(live, _mm256_and_si256(_mm256_cmpgt_epi32(iy, below_zero), _mm256_cmpgt_epi32(h, iy)));
            columns[k] = _mm256_and_si256(_mm256_cmpgt_epi32(ix, below_zero), _mm256_cmpgt_epi32(w, ix));
        }
        __m256 t[6][6];  // t[k][j] = (B^T d)[k][j]
        for (int j = 0; j < 6; j++) {
            __m256 d[6], column[6];
            for (int r = 0; r < 6; r++) {
                const __m256i index = _mm256_add_epi32(origin, _mm256_set1_epi32((int)(r * width + j)));
                d[r] = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), plane, index,
                                                _mm256_castsi256_ps(_mm256_and_si256(rows[r], columns[j])), 4);
            }
            B_TRANSPOSED(d, column);
            for (int k = 0; k < 6; k++) t[k][j] = column[k];
        }
        for (int k = 0; k < 6; k++) {
            __m256 out[6];
            B_TRANSPOSED(t[k], out);
            for (int l = 0; l < 6; l++) _mm256_maskstore_ps(v + (k * 6 + l) * v_stride + f0, live, out[l]);
        }
    }
}
