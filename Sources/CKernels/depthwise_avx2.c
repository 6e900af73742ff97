#include <string.h>

#include "avx2_lanes.h"
#include "depthwise.h"
#include "internal.h"

// The AVX2 + FMA depthwise kernels: depthwise.c's algorithm (see there) on 8-lane vectors.
// Lane masks of the padded rows are computed where they are used (AVX2 has no mask registers
// to tabulate).

static int round_up(int value, int multiple) { return (value + multiple - 1) / multiple * multiple; }

/// One input row with its zero padding, split into `stride` phases of `length` floats each:
/// phase q, position j holds source[q + stride * j - padding] (zero outside [0, width)).
AVX2 static void fill_phase_row(const float *source, int width, int padding, int stride, int length, float *row) {
    if (stride == 1) {
        for (int j = 0; j < length; j += 8)
            _mm256_storeu_ps(row + j, _mm256_maskload_ps(source + j - padding, lanes_between(padding - j, width + padding - j)));
        return;
    }
    const __m256i split = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (int j = 0; j < 2 * length; j += 16) {
        __m256 a = _mm256_maskload_ps(source + j - padding, lanes_between(padding - j, width + padding - j));
        __m256 b = _mm256_maskload_ps(source + j + 8 - padding, lanes_between(padding - j - 8, width + padding - j - 8));
        // Each half becomes (its evens, its odds); the 128-bit lanes then pair evens with evens.
        a = _mm256_permutevar8x32_ps(a, split);
        b = _mm256_permutevar8x32_ps(b, split);
        _mm256_storeu_ps(row + j / 2, _mm256_permute2f128_ps(a, b, 0x20));
        _mm256_storeu_ps(row + length + j / 2, _mm256_permute2f128_ps(a, b, 0x31));
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

/// One output plane in blocks of R output rows x V vectors of 8 columns (R * V sums in
/// registers over all taps), with the input rows copied, padded and phase-split, into a ring
/// one block ahead of their use.
AVX2_INLINE void forward_plane(const float *input, const float *weights, float bias, float *output, const forward_plan *plan,
                               const output_band *band, int activation, float *ring, const float *zeros, const int K,
                               const int S, const int R, const int V) {
    const int H = plan->height, W = plan->width, p = plan->padding, Wo = plan->out_width;
    const int L = plan->length, window = plan->window, ring_rows = plan->ring_rows;
    const __m256 low = _mm256_set1_ps(activation == RSTPM_ACTIVATION_NONE ? -__builtin_inff() : 0.0f);
    const __m256 high = _mm256_set1_ps(activation == RSTPM_ACTIVATION_RELU6 ? 6.0f : __builtin_inff());
    const __m256 start = _mm256_set1_ps(bias);
    const int begin = band->first_row * S, fill_end = p + H < (band->end_row - 1) * S + K ? p + H : (band->end_row - 1) * S + K;
    int next_fill = p > begin ? p : begin, fill_slot = (next_fill - begin) % ring_rows, first_slot = 0;
    for (int oy0 = band->first_row; oy0 < band->end_row; oy0 += R) {
        const int first = oy0 * S;
        for (; next_fill < first + ring_rows && next_fill < fill_end; next_fill++) {
            fill_phase_row(input + (long)(next_fill - p - band->first_input_row) * W, W, p, S, L, ring + fill_slot * S * L);
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
        for (int ox = 0; ox < Wo; ox += 8 * V) {
            __m256 sums[R][V];
            for (int r = 0; r < R; r++)
                for (int v = 0; v < V; v++) sums[r][v] = start;
            for (int ky = 0; ky < K; ky++) {
                for (int kx = 0; kx < K; kx++) {
                    const __m256 w = _mm256_set1_ps(weights[ky * K + kx]);
                    const int offset = (kx % S) * L + kx / S + ox;
                    for (int r = 0; r < R; r++) {
                        const float *source = rows[r * S + ky] + offset;
                        for (int v = 0; v < V; v++) sums[r][v] = _mm256_fmadd_ps(w, _mm256_loadu_ps(source + 8 * v), sums[r][v]);
                    }
                }
            }
            for (int r = 0; r < R && oy0 + r < band->end_row; r++) {
                float *target = output + (long)(oy0 + r - band->first_row) * Wo;
                for (int v = 0; v < V && ox + 8 * v < Wo; v++) {
                    const int column = ox + 8 * v;
                    store_first(target + column, Wo - column, _mm256_min_ps(_mm256_max_ps(sums[r][v], low), high));
                }
            }
        }
    }
}

typedef void (*forward_function)(const float *, const float *, float, float *, const forward_plan *, const output_band *, int,
                                 float *, const float *);

#define FORWARD_VARIANT(NAME, K, S, R, V)                                                                                   \
    AVX2 static void NAME(const float *input, const float *weights, float bias, float *output, const forward_plan *plan,   \
                          const output_band *band, int activation, float *ring, const float *zeros) {                     \
        forward_plane(input, weights, bias, output, plan, band, activation, ring, zeros, K, S, R, V);                      \
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

static forward_function choose_forward(int kernel, int stride, int wide) {
    static const forward_function table[3][2][2] = {
        {{forward_k3_s1_narrow, forward_k3_s1_wide}, {forward_k3_s2_narrow, forward_k3_s2_wide}},
        {{forward_k5_s1_narrow, forward_k5_s1_wide}, {forward_k5_s2_narrow, forward_k5_s2_wide}},
        {{forward_any_s1_narrow, forward_any_s1_wide}, {forward_any_s2_narrow, forward_any_s2_wide}},
    };
    return table[kernel == 3 ? 0 : kernel == 5 ? 1 : 2][stride - 1][wide];
}

/// A geometry's plan, variant and scratch (the ring and a zero row) in this thread.
typedef struct {
    forward_plan plan;
    forward_function function;
    float *ring, *zeros;
} forward_setup;

AVX2 static forward_setup setup_forward(int height, int width, int kernel, int stride, int padding) {
    forward_setup f = {{height, width, kernel, stride, padding, 0, 0, 0, 0, 0}, 0, 0, 0};
    f.plan.out_height = (height + 2 * padding - kernel) / stride + 1;
    f.plan.out_width = (width + 2 * padding - kernel) / stride + 1;
    // Planes up to 8 outputs wide get eight rows of one vector per block.
    const int wide = f.plan.out_width > 8, rows = wide ? 4 : 8, vectors = wide ? 2 : 1;
    f.plan.length = round_up(round_up(f.plan.out_width, 8 * vectors) + (kernel - 1) / stride + 1, 8);
    f.plan.window = (rows - 1) * stride + kernel;
    f.plan.ring_rows = f.plan.window + rows * stride;
    const int phase_rows = stride * f.plan.length;
    f.ring = rstpm_depthwise_scratch((size_t)(f.plan.ring_rows + 1) * phase_rows);
    f.zeros = f.ring + (size_t)f.plan.ring_rows * phase_rows;
    memset(f.zeros, 0, sizeof(float) * phase_rows);
    f.function = choose_forward(kernel, stride, wide);
    return f;
}

AVX2 void rstpm_avx2_depthwise_forward(const float *input, const float *weights, const float *bias, float *output, long first_plane,
                                       long end_plane, int channels, int multiplier, int height, int width, int kernel, int stride,
                                       int padding, int activation) {
    const forward_setup f = setup_forward(height, width, kernel, stride, padding);
    const output_band whole = {0, f.plan.out_height, 0};
    const long outputs = (long)channels * multiplier, kk = (long)kernel * kernel;
    const long plane = (long)height * width, out_plane = (long)f.plan.out_height * f.plan.out_width;
    for (long task = first_plane; task < end_plane; task++) {
        const long n = task / outputs, o = task % outputs;
        f.function(input + (n * channels + o / multiplier) * plane, weights + o * kk, bias ? bias[o] : 0.0f, output + task * out_plane,
                   &f.plan, &whole, activation, f.ring, f.zeros);
    }
}

AVX2 void rstpm_avx2_depthwise_forward_rows(const struct rstpm_depthwise_rows *rows, const float *weights, const float *bias,
                                            long first_channel, long end_channel, int height, int width, int kernel, int stride,
                                            int padding, int activation) {
    const forward_setup f = setup_forward(height, width, kernel, stride, padding);
    const output_band band = {rows->first_output_row, rows->end_output_row, rows->first_input_row};
    const long kk = (long)kernel * kernel;
    for (long c = first_channel; c < end_channel; c++) {
        f.function(rows->input + c * rows->input_plane, weights + c * kk, bias ? bias[c] : 0.0f, rows->output + c * rows->output_plane,
                   &f.plan, &band, activation, f.ring, f.zeros);
    }
}

// MARK: backward

/// dw[t] += sum over the plane of dy * (input under tap t), x the whole input plane in phase
/// rows; one accumulator per tap.
AVX2_INLINE void weight_gradient_plane(const float *x, int length, const float *dy, int Ho, int Wo, float *dw, const int K,
                                       const int S) {
    __m256 sums[K * K];
    for (int t = 0; t < K * K; t++) sums[t] = _mm256_setzero_ps();
    for (int oy = 0; oy < Ho; oy++) {
        const float *base = x + (long)oy * S * S * length;
        for (int ox = 0; ox < Wo; ox += 8) {
            // Lanes past the row's end hold zero gradient, so they add nothing.
            const __m256 g = load_first(dy + (long)oy * Wo + ox, Wo - ox);
            for (int ky = 0; ky < K; ky++) {
                for (int kx = 0; kx < K; kx++) {
                    const float *source = base + (ky * S + kx % S) * length + kx / S + ox;
                    sums[ky * K + kx] = _mm256_fmadd_ps(g, _mm256_loadu_ps(source), sums[ky * K + kx]);
                }
            }
        }
    }
    for (int t = 0; t < K * K; t++) dw[t] += reduce_add(sums[t]);
}

AVX2 static void weight_gradient(const float *x, int length, const float *dy, int Ho, int Wo, float *dw, int K, int S) {
    if (K == 3 && S == 1) weight_gradient_plane(x, length, dy, Ho, Wo, dw, 3, 1);
    else if (K == 3) weight_gradient_plane(x, length, dy, Ho, Wo, dw, 3, 2);
    else if (K == 5 && S == 1) weight_gradient_plane(x, length, dy, Ho, Wo, dw, 5, 1);
    else if (K == 5) weight_gradient_plane(x, length, dy, Ho, Wo, dw, 5, 2);
    else weight_gradient_plane(x, length, dy, Ho, Wo, dw, K, S);
}

typedef struct {
    int height, width, kernel, stride, padding, out_height, out_width;
    int x_length;            // floats per phase row of the input
    int border;              // zero rows and columns around the output gradient
    int dy_rows, dy_length;  // padded output gradient rows and their length
} backward_plan;

/// sums[v] = sum over the taps of weights[t] * sources[t][j + 8v .. +7], for V vectors, each
/// in P partial sums (V * P independent FMA chains).
AVX2_INLINE void gather_taps(const float *const *sources, const float *weights, int taps, int j, __m256 *sums, const int V,
                             const int P) {
    __m256 partial[P][V];
    for (int q = 0; q < P; q++)
        for (int v = 0; v < V; v++) partial[q][v] = _mm256_setzero_ps();
    int t = 0;
    for (; t + P <= taps; t += P) {
        for (int q = 0; q < P; q++) {
            const __m256 w = _mm256_set1_ps(weights[t + q]);
            for (int v = 0; v < V; v++) partial[q][v] = _mm256_fmadd_ps(w, _mm256_loadu_ps(sources[t + q] + j + 8 * v), partial[q][v]);
        }
    }
    for (; t < taps; t++) {
        const __m256 w = _mm256_set1_ps(weights[t]);
        for (int v = 0; v < V; v++) partial[0][v] = _mm256_fmadd_ps(w, _mm256_loadu_ps(sources[t] + j + 8 * v), partial[0][v]);
    }
    for (int v = 0; v < V; v++) {
        sums[v] = partial[0][v];
        for (int q = 1; q < P; q++) sums[v] = _mm256_add_ps(sums[v], partial[q][v]);
    }
}

/// row[column ..] = value, or += value when `accumulate`, for the lanes before the row's end `width`.
AVX2_INLINE void put_into_row(float *row, int column, int width, __m256 value, int accumulate) {
    if (accumulate) value = _mm256_add_ps(load_first(row + column, width - column), value);
    store_first(row + column, width - column, value);
}

/// dx = (or += when `accumulate`) the transposed convolution of dy, gathered as depthwise.c's
/// input_gradient_plane: for stride 2 the even and odd dx columns are summed apart, then
/// interleaved. `dy` is the padded output gradient: row oy + border, column ox + border.
AVX2 static void input_gradient_plane(const float *dy, const backward_plan *plan, const float *weights, float *dx, int accumulate) {
    const int K = plan->kernel, S = plan->stride, p = plan->padding, H = plan->height, W = plan->width;
    const int B = plan->border, length = plan->dy_length;
    const float *tap_rows[2][K * K];
    float tap_weights[2][K * K];
    int taps[2];
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
            if (W > 16) {
                for (int j = 0; j < W; j += 32) {
                    __m256 sums[4];
                    gather_taps(tap_rows[0], tap_weights[0], taps[0], j, sums, 4, 1);
                    for (int v = 0; v < 4 && j + 8 * v < W; v++) put_into_row(target, j + 8 * v, W, sums[v], accumulate);
                }
            } else {
                for (int j = 0; j < W; j += 8) {
                    __m256 sum;
                    gather_taps(tap_rows[0], tap_weights[0], taps[0], j, &sum, 1, 4);
                    put_into_row(target, j, W, sum, accumulate);
                }
            }
        } else {
            const int vectors = (W + 1) / 2 > 8 ? 2 : 1;
            for (int j = 0; j < (W + 1) / 2; j += 8 * vectors) {
                __m256 even[2], odd[2];
                if (vectors == 2) {
                    gather_taps(tap_rows[0], tap_weights[0], taps[0], j, even, 2, 1);
                    gather_taps(tap_rows[1], tap_weights[1], taps[1], j, odd, 2, 1);
                } else {
                    gather_taps(tap_rows[0], tap_weights[0], taps[0], j, even, 1, 2);
                    gather_taps(tap_rows[1], tap_weights[1], taps[1], j, odd, 1, 2);
                }
                for (int v = 0; v < vectors; v++) {
                    // e0 o0 e1 o1 | e4 o4 e5 o5 and e2 o2 e3 o3 | e6 o6 e7 o7, then the 128-bit lanes in order.
                    const __m256 low = _mm256_unpacklo_ps(even[v], odd[v]), high = _mm256_unpackhi_ps(even[v], odd[v]);
                    const int column = 2 * (j + 8 * v);
                    if (column >= W) break;
                    put_into_row(target, column, W, _mm256_permute2f128_ps(low, high, 0x20), accumulate);
                    if (column + 8 < W) put_into_row(target, column + 8, W, _mm256_permute2f128_ps(low, high, 0x31), accumulate);
                }
            }
        }
    }
}

AVX2 void rstpm_avx2_depthwise_backward(const float *input, const float *weights, const float *output_gradient, float *input_gradient,
                                   float *weight_gradient_out, int batch, long first_channel, long end_channel, int channels,
                                   int multiplier, int height, int width, int kernel, int stride, int padding) {
    backward_plan plan = {height, width, kernel, stride, padding, 0, 0, 0, 0, 0, 0};
    const int Ho = (height + 2 * padding - kernel) / stride + 1, Wo = (width + 2 * padding - kernel) / stride + 1;
    plan.out_height = Ho;
    plan.out_width = Wo;
    plan.x_length = round_up(round_up(Wo, 8) + (kernel - 1) / stride + 1, 8);
    // A border of `kernel` zeros keeps every gathered tap inside the padded gradient (see depthwise.c).
    plan.border = kernel;
    const int phase_width = round_up((width + stride - 1) / stride, stride == 1 ? 32 : 16);
    plan.dy_length = round_up(phase_width + padding + stride + 2 * kernel, 8);
    const int last_row = (height - 1 + padding) / stride + 1;
    plan.dy_rows = (last_row > Ho ? last_row : Ho) + 2 * kernel;
    const long x_floats = (long)(height + 2 * padding) * stride * plan.x_length;
    const long dy_floats = (long)plan.dy_rows * plan.dy_length;
    float *x = rstpm_depthwise_scratch((size_t)(x_floats + dy_floats));
    float *dy = x + x_floats;
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
                    else fill_phase_row(x_plane + (long)(r - padding) * width, width, padding, stride, plan.x_length, row);
                }
                for (int r = 0; r < plan.dy_rows; r++) {
                    float *row = dy + (long)r * plan.dy_length;
                    const int oy = r - plan.border;
                    if (oy < 0 || oy >= Ho) memset(row, 0, sizeof(float) * plan.dy_length);
                    else fill_phase_row(dy_plane + (long)oy * Wo, Wo, plan.border, 1, plan.dy_length, row);
                }
                weight_gradient(x, plan.x_length, dy_plane, Ho, Wo, weight_gradient_out + o * kk, kernel, stride);
                // The channel's first output writes its dx planes, the others (multiplier > 1) add.
                input_gradient_plane(dy, &plan, weights + o * kk, input_gradient + (n * channels + c) * plane, o > c * multiplier);
            }
        }
    }
}
