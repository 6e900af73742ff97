#pragma once
// CImageCodecs: a small C shim around libpng, libjpeg and libtiff, plus a direct path for the
// common 8-bit PNG (libdeflate and SIMD filters, png_direct.c) that hands every other file to
// libpng, and a BMP reader of its own (bmp_decode.c; BMP needs no library).
//
// Both libraries report fatal errors with longjmp, which Swift cannot catch; every call into
// them therefore happens in this file behind setjmp, and each entry point returns a status
// code plus a message instead. Every allocation is released on every error path. The functions
// may run concurrently on different threads (the only shared state is the direct path's one
// cached scratch buffer, taken and returned atomically).
//
// Decoded pixels are interleaved rows, `channels` 1 (gray) or 3 (RGB), `bit_depth` 8 or 16
// (16-bit samples in host byte order). Alpha is dropped, not composited, as PIL's
// `convert("RGB")` does. The caller frees the pixels with ic_image_free.

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    IC_OK = 0,
    IC_ERR_EMPTY = 1,        // zero bytes
    IC_ERR_TRUNCATED = 2,    // the data ends before the image does
    IC_ERR_CORRUPT = 3,      // the library rejected the data (message says why)
    IC_ERR_UNSUPPORTED = 4,  // not a PNG / JPEG / BMP / TIFF, or a layout we do not handle
    IC_ERR_TOO_LARGE = 5,    // declared width * height above max_pixels
    IC_ERR_NO_MEMORY = 6,
} ic_status;

typedef struct {
    uint64_t max_pixels;     // refuse headers declaring more pixels than this (0: no limit)
    int32_t target_width;    // > 0 with target_height: JPEG may decode with DCT scaling down to
    int32_t target_height;   // the smallest M/8 (M = 1, 2, 4) whose size is still >= the target
    int32_t png_decoder;     // an ic_png_decoder; tests compare the two paths
} ic_decode_options;

typedef enum {
    IC_PNG_AUTO = 0,     // the direct path (libdeflate, SIMD filters) for 8-bit non-interlaced
                         // gray/RGB(A) files it finds intact; libpng for everything else
    IC_PNG_LIBPNG = 1,   // always libpng
    IC_PNG_DIRECT = 2,   // only the direct path: IC_ERR_UNSUPPORTED where it declines
} ic_png_decoder;

typedef struct {
    int32_t width;           // decoded size (after DCT scaling, before orientation); on
    int32_t height;          // IC_ERR_TOO_LARGE, the size the header declares (pixels NULL)
    int32_t channels;        // 1 or 3
    int32_t bit_depth;       // 8 or 16
    int32_t orientation;     // EXIF orientation 1...8 (1 when absent); not yet applied
    void *pixels;            // malloc'd; free with ic_image_free
} ic_image;

int ic_decode_png(const uint8_t *data, size_t size, const ic_decode_options *options,
                  ic_image *out, char *message, size_t message_size);
int ic_decode_jpeg(const uint8_t *data, size_t size, const ic_decode_options *options,
                   ic_image *out, char *message, size_t message_size);
// BMP: 1/4/8-bit palette (a grey palette gives 1 channel), 16/24/32-bit BI_RGB or BI_BITFIELDS,
// bottom-up or top-down; RLE and embedded JPEG/PNG are IC_ERR_UNSUPPORTED. Always 8 bits.
int ic_decode_bmp(const uint8_t *data, size_t size, const ic_decode_options *options,
                  ic_image *out, char *message, size_t message_size);
// TIFF (first page): 8- or 16-bit grey (MinIsBlack/MinIsWhite) or RGB, extra samples dropped,
// strips or tiles, any compression libtiff has; other layouts through libtiff's RGBA reader.
// Always 8 bits: 16-bit samples scale linearly from 0...MaxSampleValue (the tag, 65535 when
// absent) to 0...255, rounded. libtiff's warnings and errors go to `message`, never to stderr.
int ic_decode_tiff(const uint8_t *data, size_t size, const ic_decode_options *options,
                   ic_image *out, char *message, size_t message_size);
void ic_image_free(ic_image *image);

// Encoders. `pixels` are interleaved rows; PNG takes channels 1 or 3 at bit_depth 8, or
// channels 1 at bit_depth 16 (host order); fast != 0 trades size for speed (SUB filter;
// libdeflate level 1 at 8 bits, zlib level 1 with run-length matching at 16);
// text_keys/text_values add tEXt chunks (Latin-1, keys 1-79 bytes). JPEG takes channels 1 or 3 at 8 bits. On success *out is malloc'd; free
// it with ic_buffer_free.
int ic_encode_png(const void *pixels, int32_t width, int32_t height, int32_t channels,
                  int32_t bit_depth, int32_t fast, const char *const *text_keys,
                  const char *const *text_values, int32_t text_count,
                  uint8_t **out, size_t *out_size, char *message, size_t message_size);
int ic_encode_jpeg(const uint8_t *pixels, int32_t width, int32_t height, int32_t channels,
                   int32_t quality, int32_t progressive,
                   uint8_t **out, size_t *out_size, char *message, size_t message_size);
void ic_buffer_free(void *buffer);

#ifdef __cplusplus
}
#endif
