#ifndef RSTPM_WINOGRAD_H
#define RSTPM_WINOGRAD_H

/// Winograd F(4x4, 3x3) transforms of a stride-1 3x3 convolution (Lavin and Gray, 2015): the
/// output is cut into 4x4 tiles, each read from a 6x6 input patch; tile t of channel c turns into
/// 36 values V[xi][c][t] = (B^T d B)[xi], the 36 products M[xi] = U[xi] (O, C) * V[xi] (C, tiles)
/// run as ordinary matrix products, and A^T M A gives the tile's 16 outputs. One function per
/// kernel set (AVX-512 and AVX2 + FMA intrinsics, one lane per tile; plain loops for the generic
/// set and the AVX2 output transform), called only on CPUs that run that set.

/// Tiles along one output dimension of length `output`.
static inline long rstpm_winograd_tiles(long output) { return (output + 3) / 4; }

/// Transforms tile rows tile_row_begin ..< tile_row_end of one input plane (height, width),
/// zero-padded by `padding`, into V: the value xi of the tile in tile row ty (relative to
/// tile_row_begin) and column tx goes to v[xi * v_stride + ty * tiles_x + tx].
typedef void (*rstpm_winograd_input_transform)(const float *plane, long height, long width, long padding, long tiles_x,
                                               long tile_row_begin, long tile_row_end, float *v, long v_stride);

/// Transforms tile rows tile_row_begin ..< tile_row_end of one output channel from M (value xi of
/// tile (ty, tx) at m[xi * m_stride + ty * tiles_x + tx], ty relative to tile_row_begin) into the
/// output plane (height, width): clamp(bias + A^T M A, low, high), cropping tiles that reach past
/// the plane.
typedef void (*rstpm_winograd_output_transform)(const float *m, long m_stride, long tiles_x, long tile_row_begin,
                                                long tile_row_end, float bias, float low, float high, float *plane,
                                                long height, long width);

void rstpm_winograd_input_avx512(const float *plane, long height, long width, long padding, long tiles_x,
                                 long tile_row_begin, long tile_row_end, float *v, long v_stride);
void rstpm_winograd_input_avx2(const float *plane, long height, long width, long padding, long tiles_x,
                               long tile_row_begin, long tile_row_end, float *v, long v_stride);
void rstpm_winograd_input_generic(const float *plane, long height, long width, long padding, long tiles_x,
                                  long tile_row_begin, long tile_row_end, float *v, long v_stride);

void rstpm_winograd_output_avx512(const float *m, long m_stride, long tiles_x, long tile_row_begin, long tile_row_end,
                                  float bias, float low, float high, float *plane, long height, long width);
void rstpm_winograd_output_avx2(const float *m, long m_stride, long tiles_x, long tile_row_begin, long tile_row_end,
                                float bias, float low, float high, float *plane, long height, long width);
void rstpm_winograd_output_generic(const float *m, long m_stride, long tiles_x, long tile_row_begin, long tile_row_end,
                                   float bias, float low, float high, float *plane, long height, long width);

#endif
