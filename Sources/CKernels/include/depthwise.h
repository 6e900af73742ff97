#ifndef RSTPM_DEPTHWISE_H
#define RSTPM_DEPTHWISE_H

// Depthwise 2-D convolution (one input channel per group) on NCHW planes, AVX-512 + FMA.
// Call only through rstpm_avx512_kernels() (cpu_features.h; depthwise_avx2.c has the same
// functions for AVX2), and where rstpm_depthwise_supported() accepts the
// geometry. Square kernel, equal stride and symmetric zero padding in both directions; output
// channel o (of channels * multiplier) reads input channel o / multiplier, with weights
// (channels * multiplier, 1, kernel, kernel). Thread-safe: each thread has its own scratch.

/// Activation applied to each output as it is stored (as the engine's FusedActivation).
enum {
    RSTPM_ACTIVATION_NONE = 0,
    RSTPM_ACTIVATION_RELU = 1,
    RSTPM_ACTIVATION_RELU6 = 2,
};

/// 1 when the kernels below handle this geometry: stride 1 or 2, padding below the kernel size.
int rstpm_depthwise_supported(int kernel, int stride, int padding);

/// output planes [first_plane, end_plane) of an (N, channels * multiplier, Ho, Wo) output,
/// plane n * (channels * multiplier) + o = activation(bias[o] + sum of weights[o] * windows of
/// input plane n * channels + o / multiplier). `bias` may be NULL (zero).
void rstpm_depthwise_forward(const float *input, const float *weights, const float *bias, float *output,
                             long first_plane, long end_plane, int channels, int multiplier,
                             int height, int width, int kernel, int stride, int padding, int activation);

/// Output rows [first_output_row, end_output_row) of some planes of one item, for kernels that
/// run a block of output rows at a time (an inverted residual block's expanded rows stay in
/// cache). Channel c's input rows from image row first_input_row on are at input + c *
/// input_plane; only the rows those outputs read are read (the zero padding is implicit). Output
/// row first_output_row of channel c is written at output + c * output_plane, the next rows after it.
struct rstpm_depthwise_rows {
    const float *input;
    long input_plane;
    int first_input_row;
    float *output;
    long output_plane;
    int first_output_row, end_output_row;
};

/// rstpm_depthwise_forward on the band `rows` describes, for channels [first_channel,
/// end_channel) (multiplier 1: output channel c reads input channel c, weights + c * kernel^2).
void rstpm_depthwise_forward_rows(const struct rstpm_depthwise_rows *rows, const float *weights, const float *bias,
                                  long first_channel, long end_channel, int height, int width, int kernel, int stride,
                                  int padding, int activation);

/// Backward of input channels [first_channel, end_channel), over all `batch` items and each
/// channel's `multiplier` output channels: WRITES those channels' planes of `input_gradient`
/// (N, channels, H, W; its old contents are not read) and ADDS the weight gradient into
/// `weight_gradient`; distinct channel ranges touch distinct memory, so ranges can run on
/// different threads.
void rstpm_depthwise_backward(const float *input, const float *weights, const float *output_gradient,
                              float *input_gradient, float *weight_gradient, int batch,
                              long first_channel, long end_channel, int channels, int multiplier,
                              int height, int width, int kernel, int stride, int padding);

#endif
