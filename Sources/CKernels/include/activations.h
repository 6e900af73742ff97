#ifndef RSTPM_ACTIVATIONS_H
#define RSTPM_ACTIVATIONS_H

// ReLU and ReLU6 forward and backward over `count` contiguous floats, AVX-512. Call only through
// rstpm_avx512_kernels() (cpu_features.h); activations_avx2.c has the same functions for AVX2.

/// output[i] = clamp(input[i], 0, high): high = INFINITY for ReLU, 6 for ReLU6.
void rstpm_clamp_forward(const float *input, float *output, long count, float high);

/// ReLU backward from its output: input_gradient[i] = output[i] > 0 ? output_gradient[i] : 0.
void rstpm_relu_backward(const float *output_gradient, const float *output, float *input_gradient, long count);

/// ReLU6 backward from its input (hardtanh's rule, no gradient at the kinks):
/// input_gradient[i] = 0 < input[i] < 6 ? output_gradient[i] : 0.
void rstpm_relu6_backward(const float *output_gradient, const float *input, float *input_gradient, long count);

#endif
