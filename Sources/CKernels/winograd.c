#include <string.h>

#include "winograd.h"

// The transforms of winograd.h. Each works on one tile row at a time, in chunks of up to CHUNK
// tiles: the patch rows are first split into their four column phases (column 4 * tx + q), so
// that every step below is a loop over adjacent tiles, which the compiler vectorises for the
// target of each wrapper (the bodies are inlined into AVX-512, AVX2 + FMA and baseline copies).
#define CHUNK 64
#define BODY static inline __attribute__((always_inline))
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define AVX2 __attribute__((target("avx2,fma")))

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

#define WRAPPERS(target, suffix)                                                                                       \
    target void rstpm_winograd_input_##suffix(const float *plane, long height, long width, long padding, long tiles_x, \
                                              long tile_row_begin, long tile_row_end, float *v, long v_stride) {      \
        input_transform(plane, height, width, padding, tiles_x, tile_row_begin, tile_row_end, v, v_stride);            \
    }                                                                                                                  \
    target void rstpm_winograd_output_##suffix(const float *m, long m_stride, long tiles_x, long tile_row_begin,       \
                                               long tile_row_end, float bias, float low, float high, float *plane,     \
                                               long height, long width) {                                             \
        output_transform(m, m_stride, tiles_x, tile_row_begin, tile_row_end, bias, low, high, plane, height, width);   \
    }

WRAPPERS(AVX512, avx512)
WRAPPERS(AVX2, avx2)
WRAPPERS(, generic)
