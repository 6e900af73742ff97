#include "depthwise.h"

#include "internal.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

// Compiled per function for AVX-512 so the package still builds for any x86-64; the engine
// reaches these only through rstpm_avx512_kernels().
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define ALWAYS_INLINE static inline __attribute__((always_inline))

static int round_up(int value, int multiple) { return (value + multiple - 1) / multiple * multiple; }

int rstpm_depthwise_supported(int kernel, int stride, int padding) {
    // Larger paddings only add rows of zeros, and other strides are rare: the Swift loop keeps them.
    return kernel >= 1 && (stride == 1 || stride == 2) && padding >= 0 && padding < kernel;
}

// Per-thread scratch that only grows: a worker allocates once for the largest plane it meets,
// so the hot path never calls malloc.
static _Thread_local float *scratch_floats;
static _Thread_local size_t scratch_capacity;

float *rstpm_depthwise_scratch(size_t count) {
    if (count > scratch_capacity) {
        free(scratch_floats);
        scratch_floats = aligned_alloc(64, (count * sizeof(float) + 63) / 64 * 64);
        if (!scratch_floats) abort();
        scratch_capacity = count;
    }
    return scratch_floats;
}

/// Mask of the lanes i with low <= i < high.
AVX512 ALWAYS_INLINE __mmask16 lanes(int low, int high) {
    if (low < 0) low = 0;
    if (high > 16) high = 16;
    if (high <= low) return 0;
    return (__mmask16)((1u << high) - (1u << low));
}

/// Masks of the 16-lane chunks of a padded row (input column j - padding at position j):
/// which lanes lie inside [0, width). Rows of one plane share them, so they are computed once.
AVX512 static void chunk_masks(int width, int padding, int chunks, __mmask16 *masks) {
    for (int c = 0; c < chunks; c++) masks[c] = lanes(padding - 16 * c, width + padding - 16 * c);
}

/// One input row with its zero padding, split into `stride` phases of `length` floats each:
/// phase q, position j holds source[q + stride * j - padding] (zero outside the row), so that
/// every kernel tap of 16 adjacent outputs is one contiguous load. `masks` (chunk_masks over
/// stride * length positions) keep the loads inside the row.
AVX512 static void fill_phase_row(const float *source, const __mmask16 *masks, int padding, int stride, int length, float *row) {
    if (stride == 1) {
        for (int j = 0; j < length; j += 16) _mm512_storeu_ps(row + j, _mm512_maskz_loadu_ps(masks[j / 16], source + j - padding));
        return;
    }
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    for (int j = 0; j < 2 * length; j += 32) {
        __m512 a = _mm512_maskz_loadu_ps(masks[j / 16], source + j - padding);
        __m512 b = _mm512_maskz_loadu_ps(masks[j / 16 + 1], source + j + 16 - padding);
        _mm512_storeu_ps(row + j / 2, _mm512_permutex2var_ps(a, even, b));
        _mm512_storeu_ps(row + length + j / 2, _mm512_permutex2var_ps(a, odd, b));
    }
}

// MARK: forward

typedef struct {
    int height, width, kernel, stride, padding, out_height, out_width;
    int length;     // floats per phase row
    int window;     // padded input rows one block of output rows reads
    int ring_rows;  // the window and the rows the next block adds
} forward_plan;

/// The output rows one call computes, and the image row of its input's first row.
typedef struct {
    int first_row, end_row, first_input_row;
} output_band;

/// A block's R x V sums (row-major), clamped to [low, high], into output rows oy0 ..< oy0 + R
/// before the band's end (row first_row at `output`), columns ox ..< ox + 16V inside the width.
AVX512 ALWAYS_INLINE void store_block(const __m512 *sums, const int R, const int V, int oy0, int ox, const output_band *band,
                                      float *output, int width, __m512 low, __m512 high) {
    for (int r = 0; r < R && oy0 + r < band->end_row; r++) {
        float *target = output + (long)(oy0 + r - band->first_row) * width;
        for (int v = 0; v < V && ox + 16 * v < width; v++) {
            const int column = ox + 16 * v;
            const __m512 value = _mm512_min_ps(_mm512_max_ps(sums[r * V + v], low), high);
            if (column + 16 <= width) _mm512_storeu_ps(target + column, value);
            else _mm512_mask_storeu_ps(target + column, lanes(0, width - column), value);
        }
    }
}

/// One output plane, in blocks of R output rows x V vectors of 16 columns whose R*V sums stay
/// in registers over all taps (independent FMA chains hide the FMA latency). The input rows
/// are copied, padded and phase-split, into a ring of rows one block ahead of their use: late
/// enough to be in L1, early enough that the copy's stores have left the store buffer (an
/// unaligned tap load that straddles two pending stores waits for both). The padding rows
/// above and below read a row of zeros.
AVX512 ALWAYS_INLINE void forward_plane(const float *input, const float *weights, float bias, float *output,
                                        const forward_plan *plan, const output_band *band, int activation, float *ring,
                                        const float *zeros, const __mmask16 *masks, const int K, const int S, const int R,
                                        const int V) {
    const int H = plan->height, W = plan->width, p = plan->padding, Wo = plan->out_width;
    const int L = plan->length, window = plan->window, ring_rows = plan->ring_rows;
    const __m512 low = _mm512_set1_ps(activation == RSTPM_ACTIVATION_NONE ? -__builtin_inff() : 0.0f);
    const __m512 high = _mm512_set1_ps(activation == RSTPM_ACTIVATION_RELU6 ? 6.0f : __builtin_inff());
    const __m512 start = _mm512_set1_ps(bias);
    // Padded row r lives in slot (r - begin) % ring_rows, counted along instead of divided.
    // Rows past the band's last needed row are never read from `input` (a band may end there).
    const int begin = band->first_row * S, fill_end = p + H < (band->end_row - 1) * S + K ? p + H : (band->end_row - 1) * S + K;
    int next_fill = p > begin ? p : begin, fill_slot = (next_fill - begin) % ring_rows, first_slot = 0;
    for (int oy0 = band->first_row; oy0 < band->end_row; oy0 += R) {
        const int first = oy0 * S;
        for (; next_fill < first + ring_rows && next_fill < fill_end; next_fill++) {
            fill_phase_row(input + (long)(next_fill - p - band->first_input_row) * W, masks, p, S, L, ring + fill_slot * S * L);
            if (++fill_slot == ring_rows) fill_slot = 0;
        }
        const float *rows[window];
        for (int i = 0, slot = first_slot; i < window; i++) {
            const int r = first + i;
            rows[i] = r < p || r >= p + H ? zeros : ring + slot * S * L;
            if (++slot == ring_rows) slot = 0;
        }
        first_slot += R * S;
        if (first_slot >= ring_rows) first_slot -= ring_rows;
        for (int ox = 0; ox < Wo; ox += 16 * V) {
            __m512 sums[R][V];
            for (int r = 0; r < R; r++)
                for (int v = 0; v < V; v++) sums[r][v] = start;
            for (int ky = 0; ky < K; ky++) {
                for (int kx = 0; kx < K; kx++) {
                    const __m512 w = _mm512_set1_ps(weights[ky * K + kx]);
                    const int offset = (kx % S) * L + kx / S + ox;
                    for (int r = 0; r < R; r++) {
                        const float *source = rows[r * S + ky] + offset;
                        for (int v = 0; v < V; v++) sums[r][v] = _mm512_fmadd_ps(w, _mm512_loadu_ps(source + 16 * v), sums[r][v]);
                    }
                }
            }
            store_block(&sums[0][0], R, V, oy0, ox, band, output, Wo, low, high);
        }
    }
}

typedef void (*forward_function)(const float *, const float *, float, float *, const forward_plan *, const output_band *, int,
                                 float *, const float *, const __mmask16 *);

// Specialised for kernels 3 and 5 (fully unrolled taps), and any kernel with a loop over taps.
#define FORWARD_VARIANT(NAME, K, S, R, V)                                                                       \
    AVX512 static void NAME(const float *input, const float *weights, float bias, float *output,                \
                            const forward_plan *plan, const output_band *band, int activation, float *ring,     \
                            const float *zeros, const __mmask16 *masks) {                                       \
        forward_plane(input, weights, bias, output, plan, band, activation, ring, zeros, masks, K, S, R, V);    \
    }
FORWARD_VARIANT(forward_k3_s1_narrow, 3, 1, 8, 1)
FORWARD_VARIANT(forward_k3_s1_wide, 3, 1, 4, 2)
FORWARD_VARIANT(forward_k3_s2_narrow, 3, 2, 8, 1)
FORWARD_VARIANT(forward_k3_s2_wide, 3, 2, 4, 2)
FORWARD_VARIANT(forward_k5_s1_narrow, 5, 1, 8, 1)
FORWARD_VARIANT(forward_k5_s1_wide, 5, 1, 4, 2)
FORWARD_VARIANT(forward_k5_s2_narrow, 5, 2, 8, 1)
FORWARD_VARIANT(forward_k5_s2_wide, 5, 2, 4, 2)
FORWARD_VARIANT(forward_any_s1_narrow, plan->kernel, 1, 8, 1)
FORWARD_VARIANT(forward_any_s1_wide, plan->kernel, 1, 4, 2)
FORWARD_VARIANT(forward_any_s2_narrow, plan->kernel, 2, 8, 1)
FORWARD_VARIANT(forward_any_s2_wide, plan->kernel, 2, 4, 2)

/// Stride 1 with "same" padding: the blocks of forward_plane, each tap loaded straight from
/// the input rows with the lanes outside the row masked (masked lanes do not fault), instead of
/// from padded copies of the rows: no copy, and no load waiting on a copy's stores. Rows above
/// and below the image, or past the band's last needed row, read a row of zeros. `masks` holds
/// each block column's masks per kx and vector (direct_masks).
AVX512 ALWAYS_INLINE void forward_plane_direct(const float *input, const float *weights, float bias, float *output,
                                               const forward_plan *plan, const output_band *band, int activation,
                                               const float *zeros, const __mmask16 *masks, const int K, const int R,
                                               const int V) {
    const int H = plan->height, W = plan->width, p = plan->padding;
    const __m512 low = _mm512_set1_ps(activation == RSTPM_ACTIVATION_NONE ? -__builtin_inff() : 0.0f);
    const __m512 high = _mm512_set1_ps(activation == RSTPM_ACTIVATION_RELU6 ? 6.0f : __builtin_inff());
    const __m512 start = _mm512_set1_ps(bias);
    // Image rows past this one are not in the band's input (nor needed by its outputs).
    const int last_row = (band->end_row - 1) + K - 1 - p < H - 1 ? (band->end_row - 1) + K - 1 - p : H - 1;
    for (int oy0 = band->first_row; oy0 < band->end_row; oy0 += R) {
        const float *rows[R + K - 1];
        for (int i = 0; i < R + K - 1; i++) {
            const int r = oy0 + i - p;
            rows[i] = r < 0 || r > last_row ? zeros : input + (long)(r - band->first_input_row) * W;
        }
        for (int ox = 0; ox < W; ox += 16 * V) {
            const __mmask16 *block_masks = masks + ox / (16 * V) * K * V;
            __m512 sums[R][V];
            for (int r = 0; r < R; r++)
                for (int v = 0; v < V; v++) sums[r][v] = start;
            for (int ky = 0; ky < K; ky++) {
                for (int kx = 0; kx < K; kx++) {
                    const __m512 w = _mm512_set1_ps(weights[ky * K + kx]);
                    for (int r = 0; r < R; r++) {
                        const float *source = rows[r + ky] + ox + kx - p;
                        for (int v = 0; v < V; v++)
                            sums[r][v] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(block_masks[kx * V + v], source + 16 * v), sums[r][v]);
                    }
                }
            }
            store_block(&sums[0][0], R, V, oy0, ox, band, output, W, low, high);
        }
    }
}

#define DIRECT_VARIANT(NAME, K, R, V)                                                                           \
    AVX512 static void NAME(const float *input, const float *weights, float bias, float *output,                \
                            const forward_plan *plan, const output_band *band, int activation, float *ring,     \
                            const float *zeros, const __mmask16 *masks) {                                       \
        (void)ring;                                                                                             \
        forward_plane_direct(input, weights, bias, output, plan, band, activation, zeros, masks, K, R, V);      \
    }
DIRECT_VARIANT(direct_k3_narrow, 3, 8, 1)
DIRECT_VARIANT(direct_k3_wide, 3, 4, 2)
DIRECT_VARIANT(direct_k5_narrow, 5, 8, 1)
DIRECT_VARIANT(direct_k5_wide, 5, 4, 2)

/// Whether forward_plane_direct runs this geometry.
static int runs_direct(int kernel, int stride, int padding) {
    return stride == 1 && 2 * padding == kernel - 1 && (kernel == 3 || kernel == 5);
}

/// forward_plane_direct's masks: block column b (outputs 16Vb ...), tap column kx, vector v at
/// masks[(b * K + kx) * V + v], the lanes whose input column lies in [0, width).
AVX512 static void direct_masks(int width, int padding, int kernel, int vectors, __mmask16 *masks) {
    for (int ox = 0, i = 0; ox < width; ox += 16 * vectors)
        for (int kx = 0; kx < kernel; kx++)
            for (int v = 0; v < vectors; v++, i++) masks[i] = lanes(padding - kx - ox - 16 * v, width + padding - kx - ox - 16 * v);
}

static forward_function choose_forward(int kernel, int stride, int padding, int wide) {
    if (runs_direct(kernel, stride, padding))
        return kernel == 3 ? (wide ? direct_k3_wide : direct_k3_narrow) : (wide ? direct_k5_wide : direct_k5_narrow);
    static const forward_function table[3][2][2] = {
        {{forward_k3_s1_narrow, forward_k3_s1_wide}, {forward_k3_s2_narrow, forward_k3_s2_wide}},
        {{forward_k5_s1_narrow, forward_k5_s1_wide}, {forward_k5_s2_narrow, forward_k5_s2_wide}},
        {{forward_any_s1_narrow, forward_any_s1_wide}, {forward_any_s2_narrow, forward_any_s2_wide}},
    };
    return table[kernel == 3 ? 0 : kernel == 5 ? 1 : 2][stride - 1][wide];
}

/// A geometry's plan, variant and scratch (the ring, a zero row, the chunk masks) in this thread.
typedef struct {
    forward_plan plan;
    forward_function function;
    float *ring, *zeros;
    __mmask16 *masks;
} forward_setup;

AVX512 static forward_setup setup_forward(int height, int width, int kernel, int stride, int padding) {
    forward_setup f = {{height, width, kernel, stride, padding, 0, 0, 0, 0, 0}, 0, 0, 0, 0};
    f.plan.out_height = (height + 2 * padding - kernel) / stride + 1;
    f.plan.out_width = (width + 2 * padding - kernel) / stride + 1;
    // Narrow planes (Lite's 8x8 and 16x16 stages) get eight rows of one vector per block.
    const int wide = f.plan.out_width > 16, rows = wide ? 4 : 8, vectors = wide ? 2 : 1;
    f.plan.length = round_up(round_up(f.plan.out_width, 16 * vectors) + (kernel - 1) / stride + 1, 16);
    f.plan.window = (rows - 1) * stride + kernel;
    f.plan.ring_rows = f.plan.window + rows * stride;
    const int phase_rows = stride * f.plan.length, chunks = phase_rows / 16;
    const int direct = runs_direct(kernel, stride, padding);
    const int mask_count = direct ? (width + 16 * vectors - 1) / (16 * vectors) * kernel * vectors : chunks;
    f.ring = rstpm_depthwise_scratch((size_t)(f.plan.ring_rows + 1) * phase_rows + mask_count);
    f.zeros = f.ring + (size_t)f.plan.ring_rows * phase_rows;
    f.masks = (__mmask16 *)(f.zeros + phase_rows);
    memset(f.zeros, 0, sizeof(float) * phase_rows);
    if (direct) direct_masks(width, padding, kernel, vectors, f.masks);
    else chunk_masks(width, padding, chunks, f.masks);
    f.function = choose_forward(kernel, stride, padding, wide);
    return f;
}

// MARK: small planes

/// Lane mask of a small plane's vector: lanes whose input (output lane + tap offset) lies
/// inside the plane. Pure arithmetic on constants in the variants below, so it folds away.
ALWAYS_INLINE __mmask16 small_plane_mask(int v, int ky, int kx, int p, int height, int width) {
    unsigned mask = 0;
    for (int lane = 0; lane < 16; lane++) {
        const int row = (16 * v + lane) / width + ky - p, column = lane % width + kx - p;
        if (row >= 0 && row < height && column >= 0 && column < width) mask |= 1u << lane;
    }
    return (__mmask16)mask;
}

/// 16x16 and 8x8 planes (Lite's last stages), stride 1, "same" padding: vector v holds outputs
/// 16v ..< 16v + 16 of the plane (one row of 16, or two rows of 8), and each tap of it is one
/// contiguous load straight from the input plane at the flat offset (ky - p) * W + kx - p, the
/// lanes whose input lies outside the plane masked (masked lanes do not fault; a vector with no
/// lane inside is skipped). No padded copy of the rows is made: on planes this small the ring
/// kernel above spends most of its time on those copies, and its first loads wait on the
/// copies' stores. K, H and W are constants, so every mask is one; all sums stay in registers.
AVX512 ALWAYS_INLINE void forward_small_plane(const float *input, const float *weights, float bias, float *output, int activation,
                                              const int K, const int H, const int W) {
    enum { MAX_VECTORS = 16 };
    const int p = K / 2, V = H * W / 16;
    const __m512 low = _mm512_set1_ps(activation == RSTPM_ACTIVATION_NONE ? -__builtin_inff() : 0.0f);
    const __m512 high = _mm512_set1_ps(activation == RSTPM_ACTIVATION_RELU6 ? 6.0f : __builtin_inff());
    __m512 sums[MAX_VECTORS];
    for (int v = 0; v < V; v++) sums[v] = _mm512_set1_ps(bias);
#pragma clang loop unroll(full)
    for (int ky = 0; ky < K; ky++) {
#pragma clang loop unroll(full)
        for (int kx = 0; kx < K; kx++) {
            const __m512 w = _mm512_set1_ps(weights[ky * K + kx]);
            const float *source = input + (ky - p) * W + kx - p;
#pragma clang loop unroll(full)
            for (int v = 0; v < V; v++) {
                const __mmask16 mask = small_plane_mask(v, ky, kx, p, H, W);
                if (mask == 0) continue;
                const __m512 x = mask == 0xFFFF ? _mm512_loadu_ps(source + 16 * v) : _mm512_maskz_loadu_ps(mask, source + 16 * v);
                sums[v] = _mm512_fmadd_ps(w, x, sums[v]);
            }
        }
    }
    for (int v = 0; v < V; v++) _mm512_storeu_ps(output + 16 * v, _mm512_min_ps(_mm512_max_ps(sums[v], low), high));
}

typedef void (*small_plane_function)(const float *, const float *, float, float *, int);

#define SMALL_PLANE_VARIANT(NAME, K, H, W)                                                                                  \
    AVX512 static void NAME(const float *input, const float *weights, float bias, float *output, int activation) {          \
        forward_small_plane(input, weights, bias, output, activation, K, H, W);                                            \
    }
SMALL_PLANE_VARIANT(small_k3_8x8, 3, 8, 8)
SMALL_PLANE_VARIANT(small_k3_16x16, 3, 16, 16)
SMALL_PLANE_VARIANT(small_k5_8x8, 5, 8, 8)
SMALL_PLANE_VARIANT(small_k5_16x16, 5, 16, 16)

/// The small-plane variant for this geometry, or NULL where it does not apply.
static small_plane_function choose_small_plane(int height, int width, int kernel, int stride, int padding) {
    if (stride != 1 || 2 * padding != kernel - 1 || height != width || (width != 8 && width != 16)) return 0;
    if (kernel == 3) return width == 8 ? small_k3_8x8 : small_k3_16x16;
    if (kernel == 5) return width == 8 ? small_k5_8x8 : small_k5_16x16;
    return 0;
}

AVX512 void rstpm_depthwise_forward(const float *input, const float *weights, const float *bias, float *output,
                                    long first_plane, long end_plane, int channels, int multiplier,
                                    int height, int width, int kernel, int stride, int padding, int activation) {
    const long outputs = (long)channels * multiplier, kk = (long)kernel * kernel;
    const small_plane_function small = choose_small_plane(height, width, kernel, stride, padding);
    if (small) {
        const long plane = (long)height * width;
        for (long task = first_plane; task < end_plane; task++) {
            const long n = task / outputs, o = task % outputs;
            small(input + (n * channels + o / multiplier) * plane, weights + o * kk, bias ? bias[o] : 0.0f, output + task * plane,
                  activation);
        }
        return;
    }
    const forward_setup f = setup_forward(height, width, kernel, stride, padding);
    const output_band whole = {0, f.plan.out_height, 0};
    const long plane = (long)height * width, out_plane = (long)f.plan.out_height * f.plan.out_width;
    for (long task = first_plane; task < end_plane; task++) {
        const long n = task / outputs, o = task % outputs;
        f.function(input + (n * channels + o / multiplier) * plane, weights + o * kk, bias ? bias[o] : 0.0f,
                   output + task * out_plane, &f.plan, &whole, activation, f.ring, f.zeros, f.masks);
    }
}

AVX512 void rstpm_depthwise_forward_rows(const struct rstpm_depthwise_rows *rows, const float *weights, const float *bias,
                                         long first_channel, long end_channel, int height, int width, int kernel, int stride,
                                         int padding, int activation) {
    const forward_setup f = setup_forward(height, width, kernel, stride, padding);
    const output_band band = {rows->first_output_row, rows->end_output_row, rows->first_input_row};
    const long kk = (long)kernel * kernel;
    for (long c = first_channel; c < end_channel; c++) {
        f.function(rows->input + c * rows->input_plane, weights + c * kk, bias ? bias[c] : 0.0f, rows->output + c * rows->output_plane,
                   &f.plan, &band, activation, f.ring, f.zeros, f.masks);
    }
}

// MARK: backward

/// dw[t] += sum over the plane of dy * (input under tap t), with x the whole input plane in
/// phase rows (`length` floats each, `stride` phases per padded row). One accumulator vector
/// per tap, so the K*K FMA chains are independent.
AVX512 ALWAYS_INLINE void weight_gradient_plane(const float *x, int length, const float *dy, int Ho, int Wo,
                                                float *dw, const int K, const int S) {
    __m512 sums[K * K];
    for (int t = 0; t < K * K; t++) sums[t] = _mm512_setzero_ps();
    for (int oy = 0; oy < Ho; oy++) {
        const float *base = x + (long)oy * S * S * length;
        for (int ox = 0; ox < Wo; ox += 16) {
            // Lanes past the row's end hold zero gradient, so they add nothing.
            const __m512 g = _mm512_maskz_loadu_ps(lanes(0, Wo - ox), dy + (long)oy * Wo + ox);
            for (int ky = 0; ky < K; ky++) {
                for (int kx = 0; kx < K; kx++) {
                    const float *source = base + (ky * S + kx % S) * length + kx / S + ox;
                    sums[ky * K + kx] = _mm512_fmadd_ps(g, _mm512_loadu_ps(source), sums[ky * K + kx]);
                }
            }
        }
    }
    for (int t = 0; t < K * K; t++) dw[t] += _mm512_reduce_add_ps(sums[t]);
}

AVX512 static void weight_gradient_k3(const float *x, int length, const float *dy, int Ho, int Wo, float *dw, int S) {
    if (S == 1) weight_gradient_plane(x, length, dy, Ho, Wo, dw, 3, 1);
    else weight_gradient_plane(x, length, dy, Ho, Wo, dw, 3, 2);
}

AVX512 static void weight_gradient_k5(const float *x, int length, const float *dy, int Ho, int Wo, float *dw, int S) {
    if (S == 1) weight_gradient_plane(x, length, dy, Ho, Wo, dw, 5, 1);
    else weight_gradient_plane(x, length, dy, Ho, Wo, dw, 5, 2);
}

AVX512 static void weight_gradient_any(const float *x, int length, const float *dy, int Ho, int Wo, float *dw, int K, int S) {
    weight_gradient_plane(x, length, dy, Ho, Wo, dw, K, S);
}

typedef struct {
    int height, width, kernel, stride, padding, out_height, out_width;
    int x_length;                   // floats per phase row of the input
    int border;                     // zero rows and columns around the output gradient
    int dy_rows, dy_length;         // padded output gradient rows and their length
} backward_plan;

/// sums[v] = sum over the taps of weights[t] * sources[t][j + 16v .. +15], for V vectors, each
/// in P partial sums: V * P independent FMA chains, so that narrow rows (V = 1) do not wait
/// on one chain's latency.
AVX512 ALWAYS_INLINE void gather_taps(const float *const *sources, const float *weights, int taps, int j, __m512 *sums,
                                      const int V, const int P) {
    __m512 partial[P][V];
    for (int q = 0; q < P; q++)
        for (int v = 0; v < V; v++) partial[q][v] = _mm512_setzero_ps();
    int t = 0;
    for (; t + P <= taps; t += P) {
        for (int q = 0; q < P; q++) {
            const __m512 w = _mm512_set1_ps(weights[t + q]);
            for (int v = 0; v < V; v++) partial[q][v] = _mm512_fmadd_ps(w, _mm512_loadu_ps(sources[t + q] + j + 16 * v), partial[q][v]);
        }
    }
    for (; t < taps; t++) {
        const __m512 w = _mm512_set1_ps(weights[t]);
        for (int v = 0; v < V; v++) partial[0][v] = _mm512_fmadd_ps(w, _mm512_loadu_ps(sources[t] + j + 16 * v), partial[0][v]);
    }
    for (int v = 0; v < V; v++) {
        sums[v] = partial[0][v];
        for (int q = 1; q < P; q++) sums[v] = _mm512_add_ps(sums[v], partial[q][v]);
    }
}

/// row[column ..] = value, or += value when `accumulate`, for the lanes before the row's end `width`.
AVX512 ALWAYS_INLINE void put_into_row(float *row, int column, int width, __m512 value, int accumulate) {
    const __mmask16 inside = lanes(0, width - column);
    if (accumulate) value = _mm512_add_ps(_mm512_maskz_loadu_ps(inside, row + column), value);
    _mm512_mask_storeu_ps(row + column, inside, value);
}

/// dx = (or += when `accumulate`) the transposed convolution of dy, gathered rather than scattered: dx[iy][ix] sums
/// w[ky][kx] * dy[(iy + p - ky) / S][(ix + p - kx) / S] over the taps where both divide
/// exactly, so every dx vector is summed in registers and stored once. For stride 2 the taps
/// differ between even and odd columns: both phases are summed and then interleaved.
/// `dy` is the padded output gradient: row oy + border, column ox + border.
AVX512 static void input_gradient_plane(const float *dy, const backward_plan *plan, const float *weights, float *dx, int accumulate) {
    const int K = plan->kernel, S = plan->stride, p = plan->padding, H = plan->height, W = plan->width;
    const int B = plan->border, length = plan->dy_length;
    const float *tap_rows[2][K * K];
    float tap_weights[2][K * K];  // tap lists of the even and odd dx columns (one list for stride 1)
    int taps[2];
    const __m512i low_half = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i high_half = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    for (int iy = 0; iy < H; iy++) {
        float *target = dx + (long)iy * W;
        for (int b = 0; b < S; b++) {
            taps[b] = 0;
            for (int ky = (iy + p) % S; ky < K; ky += S) {
                for (int kx = (b + p) % S; kx < K; kx += S) {
                    tap_rows[b][taps[b]] = dy + (long)((iy + p - ky) / S + B) * length + (b + p - kx) / S + B;
                    tap_weights[b][taps[b]++] = weights[ky * K + kx];
                }
            }
        }
        if (S == 1) {
            if (W > 32) {
                for (int j = 0; j < W; j += 64) {
                    __m512 sums[4];
                    gather_taps(tap_rows[0], tap_weights[0], taps[0], j, sums, 4, 1);
                    for (int v = 0; v < 4 && j + 16 * v < W; v++) put_into_row(target, j + 16 * v, W, sums[v], accumulate);
                }
            } else {
                for (int j = 0; j < W; j += 16) {
                    __m512 sum;
                    gather_taps(tap_rows[0], tap_weights[0], taps[0], j, &sum, 1, 4);
                    put_into_row(target, j, W, sum, accumulate);
                }
            }
        } else if ((W + 1) / 2 > 16) {
            for (int j = 0; j < (W + 1) / 2; j += 32) {
                __m512 even[2], odd[2];
                gather_taps(tap_rows[0], tap_weights[0], taps[0], j, even, 2, 1);
                gather_taps(tap_rows[1], tap_weights[1], taps[1], j, odd, 2, 1);
                for (int v = 0; v < 2; v++) {
                    const int column = 2 * (j + 16 * v);
                    put_into_row(target, column, W, _mm512_permutex2var_ps(even[v], low_half, odd[v]), accumulate);
                    if (column + 16 < W) put_into_row(target, column + 16, W, _mm512_permutex2var_ps(even[v], high_half, odd[v]), accumulate);
                }
            }
        } else {
            for (int j = 0; j < (W + 1) / 2; j += 16) {
                __m512 even, odd;
                gather_taps(tap_rows[0], tap_weights[0], taps[0], j, &even, 1, 2);
                gather_taps(tap_rows[1], tap_weights[1], taps[1], j, &odd, 1, 2);
                put_into_row(target, 2 * j, W, _mm512_permutex2var_ps(even, low_half, odd), accumulate);
                if (2 * j + 16 < W) put_into_row(target, 2 * j + 16, W, _mm512_permutex2var_ps(even, high_half, odd), accumulate);
            }
        }
    }
}

AVX512 void rstpm_depthwise_backward(const float *input, const float *weights, const float *output_gradient,
                                     float *input_gradient, float *weight_gradient, int batch,
                                     long first_channel, long end_channel, int channels, int multiplier,
                                     int height, int width, int kernel, int stride, int padding) {
    backward_plan plan = {height, width, kernel, stride, padding, 0, 0, 0, 0, 0, 0};
    const int Ho = (height + 2 * padding - kernel) / stride + 1, Wo = (width + 2 * padding - kernel) / stride + 1;
    plan.out_height = Ho;
    plan.out_width = Wo;
    plan.x_length = round_up(round_up(Wo, 16) + (kernel - 1) / stride + 1, 16);
    // A border of `kernel` zeros keeps every gathered tap inside the padded gradient:
    // (iy + p - ky) / S >= -(kernel - 1), and columns read at most one vector group past the
    // dx phase width plus (p + 1) / S.
    plan.border = kernel;
    const int phase_width = round_up((width + stride - 1) / stride, stride == 1 ? 64 : 32);
    plan.dy_length = round_up(phase_width + padding + stride + 2 * kernel, 16);
    const int last_row = (height - 1 + padding) / stride + 1;
    plan.dy_rows = (last_row > Ho ? last_row : Ho) + 2 * kernel;
    const long x_floats = (long)(height + 2 * padding) * stride * plan.x_length;
    const long dy_floats = (long)plan.dy_rows * plan.dy_length;
    const int x_chunks = stride * plan.x_length / 16, dy_chunks = plan.dy_length / 16;
    float *x = rstpm_depthwise_scratch((size_t)(x_floats + dy_floats + x_chunks + dy_chunks));
    float *dy = x + x_floats;
    __mmask16 *x_masks = (__mmask16 *)(dy + dy_floats), *dy_masks = x_masks + x_chunks;
    chunk_masks(width, padding, x_chunks, x_masks);
    chunk_masks(Wo, plan.border, dy_chunks, dy_masks);
    const long outputs = (long)channels * multiplier, kk = (long)kernel * kernel;
    const long plane = (long)height * width, out_plane = (long)Ho * Wo;
    for (long c = first_channel; c < end_channel; c++) {
        for (long o = c * multiplier; o < (c + 1) * multiplier; o++) {
            for (long n = 0; n < batch; n++) {
                const float *x_plane = input + (n * channels + c) * plane;
                const float *dy_plane = output_gradient + (n * outputs + o) * out_plane;
                for (int r = 0; r < height + 2 * padding; r++) {
                    float *row = x + (long)r * stride * plan.x_length;
                    if (r < padding || r >= padding + height) memset(row, 0, sizeof(float) * stride * plan.x_length);
                    else fill_phase_row(x_plane + (long)(r - padding) * width, x_masks, padding, stride, plan.x_length, row);
                }
                for (int r = 0; r < plan.dy_rows; r++) {
                    float *row = dy + (long)r * plan.dy_length;
                    const int oy = r - plan.border;
                    if (oy < 0 || oy >= Ho) memset(row, 0, sizeof(float) * plan.dy_length);
                    else fill_phase_row(dy_plane + (long)oy * Wo, dy_masks, plan.border, 1, plan.dy_length, row);
                }
                float *dw = weight_gradient + o * kk;
                if (kernel == 3) weight_gradient_k3(x, plan.x_length, dy_plane, Ho, Wo, dw, stride);
                else if (kernel == 5) weight_gradient_k5(x, plan.x_length, dy_plane, Ho, Wo, dw, stride);
                else weight_gradient_any(x, plan.x_length, dy_plane, Ho, Wo, dw, kernel, stride);
                // The channel's first output writes its dx planes, the others (multiplier > 1) add.
                input_gradient_plane(dy, &plan, weights + o * kk, input_gradient + (n * channels + c) * plane, o > c * multiplier);
            }
        }
    }
}
