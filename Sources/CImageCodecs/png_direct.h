#pragma once
// Internal to CImageCodecs: the direct PNG path (png_direct.c) and what it shares with the shim.
#include "image_codecs.h"

// Decodes `data` (whose signature the caller checked) when it is an 8-bit, non-interlaced gray,
// gray+alpha, RGB or RGBA PNG that is intact and within `max_pixels` (0: no limit), filling
// `out` as ic_decode_png does and returning 1. Returns 0, with nothing allocated, for any other
// file: the caller then decodes it with libpng.
int ic_png_direct_decode(const uint8_t *data, size_t size, uint64_t max_pixels, ic_image *out);

// The Orientation tag (1...8, 1 when absent or unreadable) of a TIFF-structured EXIF block.
int32_t ic_exif_orientation(const uint8_t *tiff, size_t length);

// ic_encode_png's `fast` mode for 8-bit gray or RGB, written here with libdeflate: returns 1
// with *out malloc'd, or 0 (nothing allocated) for a layout or keyword it leaves to libpng.
int ic_png_direct_encode_fast(const uint8_t *pixels, int32_t width, int32_t height, int32_t channels,
                              const char *const *text_keys, const char *const *text_values, int32_t text_count,
                              uint8_t **out, size_t *out_size);
