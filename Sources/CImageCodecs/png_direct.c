// Over 400 lines: chunk walking, CRC checks and the SIMD unfiltering of one format, read together.
// The common PNG, decoded without libpng: 8-bit gray, gray+alpha, RGB or RGBA, not interlaced.
// libpng inflates through zlib's streaming API and undoes the Paeth filter one byte at a time;
// on camera-sized photos those two took ~12 ms of a 900x900 decode. Here the IDAT stream is
// inflated in one call by libdeflate and the filters are undone a pixel at a time with SSE2.
//
// This path only ever decodes files it fully understands and has checked (every chunk's CRC,
// the zlib checksum, the exact decompressed size, IEND present). Anything else, damaged or
// unusual, is declined and goes to libpng, so the messages users see for bad files stay
// libpng's and there is one definition of what a valid file is.
#include "png_direct.h"

#include <libdeflate.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static uint32_t big_endian_32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static int chunk_is(const uint8_t *type, const char *name) { return memcmp(type, name, 4) == 0; }

// Chunk types are four ASCII letters; libpng refuses anything else.
static int valid_chunk_type(const uint8_t *type) {
    for (int i = 0; i < 4; i++)
        if (!((type[i] >= 'A' && type[i] <= 'Z') || (type[i] >= 'a' && type[i] <= 'z'))) return 0;
    return 1;
}

static uint8_t paeth(uint8_t a, uint8_t b, uint8_t c) {
    int p = (int)a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

#if defined(__SSE2__)
// Loads `bpp` (3 or 4) bytes as 16-bit lanes. Reads 4 bytes: callers leave a spare byte after
// each row (the next row's filter byte, or padding after the last).
static inline __m128i load_pixel(const uint8_t *p) {
    uint32_t word;
    memcpy(&word, p, 4);
    return _mm_unpacklo_epi8(_mm_cvtsi32_si128((int)word), _mm_setzero_si128());
}

static inline __attribute__((always_inline)) void store_pixel(uint8_t *p, __m128i pixel, size_t bpp) {
    uint32_t word = (uint32_t)_mm_cvtsi128_si32(_mm_packus_epi16(pixel, pixel));
    memcpy(p, &word, bpp);
}

// One Paeth pixel in 16-bit lanes: left a, up b, upper-left c, filtered x. The choice is
// written with distances from p = a + b - c: |p - a| = |b - c|, |p - b| = |a - c|,
// |p - c| = |(b - c) + (a - c)|; ties prefer a, then b, as the specification orders them.
static inline __m128i paeth_pixel(__m128i a, __m128i b, __m128i c, __m128i x) {
    const __m128i zero = _mm_setzero_si128();
    __m128i b_c = _mm_sub_epi16(b, c), a_c = _mm_sub_epi16(a, c);
    __m128i sum = _mm_add_epi16(b_c, a_c);
    __m128i pa = _mm_max_epi16(b_c, _mm_sub_epi16(zero, b_c));
    __m128i pb = _mm_max_epi16(a_c, _mm_sub_epi16(zero, a_c));
    __m128i pc = _mm_max_epi16(sum, _mm_sub_epi16(zero, sum));
    __m128i smallest = _mm_min_epi16(pa, _mm_min_epi16(pb, pc));
    __m128i take_a = _mm_cmpeq_epi16(pa, smallest), take_b = _mm_cmpeq_epi16(pb, smallest);
    __m128i predicted = _mm_or_si128(_mm_and_si128(take_b, b), _mm_andnot_si128(take_b, c));
    predicted = _mm_or_si128(_mm_and_si128(take_a, a), _mm_andnot_si128(take_a, predicted));
    return _mm_and_si128(_mm_add_epi16(x, predicted), _mm_set1_epi16(0xff));
}

// Each pixel waits for its left neighbour, so one row is a chain of dependent steps. Two
// Paeth rows in a row are undone together, the lower one pixel behind, to run two chains at
// once: its up and upper-left neighbours are the upper row's pixels just computed.
static inline __attribute__((always_inline)) void paeth_rows(uint8_t *out, const uint8_t *filtered, size_t filtered_stride,
                                                             const uint8_t *previous, size_t row_bytes, size_t bpp, int two_rows) {
    const __m128i zero = _mm_setzero_si128();
    uint8_t *lower_out = out + row_bytes;
    const uint8_t *lower_filtered = filtered + filtered_stride;
    __m128i a = zero, c = zero;              // upper row
    __m128i lower_a = zero, lower_c = zero;  // lower row
    for (size_t i = 0; i < row_bytes; i += bpp) {
        __m128i b = load_pixel(previous + i);
        __m128i upper_left_of_lower = a;
        a = paeth_pixel(a, b, c, load_pixel(filtered + i));
        c = b;
        store_pixel(out + i, a, bpp);
        if (two_rows && i > 0) {
            lower_a = paeth_pixel(lower_a, upper_left_of_lower, lower_c, load_pixel(lower_filtered + i - bpp));
            lower_c = upper_left_of_lower;
            store_pixel(lower_out + i - bpp, lower_a, bpp);
        }
    }
    if (two_rows) {
        size_t last = row_bytes - bpp;
        lower_a = paeth_pixel(lower_a, a, lower_c, load_pixel(lower_filtered + last));
        store_pixel(lower_out + last, lower_a, bpp);
    }
}

static void paeth_rows_simd(uint8_t *out, const uint8_t *filtered, size_t filtered_stride, const uint8_t *previous,
                            size_t row_bytes, size_t bpp, int two_rows) {
    // Constant bpp and row count: the pixel copies compile to plain stores.
    if (bpp == 3) {
        if (two_rows) paeth_rows(out, filtered, filtered_stride, previous, row_bytes, 3, 1);
        else paeth_rows(out, filtered, filtered_stride, previous, row_bytes, 3, 0);
    } else {
        if (two_rows) paeth_rows(out, filtered, filtered_stride, previous, row_bytes, 4, 1);
        else paeth_rows(out, filtered, filtered_stride, previous, row_bytes, 4, 0);
    }
}
#endif

// Undoes one row's filter into `out`; `previous` is the row above, already unfiltered (zeros
// for the first row). Returns 0 for a filter type the specification does not define.
static int unfilter_row(uint8_t *out, const uint8_t *filtered, const uint8_t *previous, uint8_t type, size_t row_bytes, size_t bpp) {
    size_t i;
    switch (type) {
    case 0:
        memcpy(out, filtered, row_bytes);
        return 1;
    case 1:
        for (i = 0; i < bpp && i < row_bytes; i++) out[i] = filtered[i];
        for (; i < row_bytes; i++) out[i] = (uint8_t)(filtered[i] + out[i - bpp]);
        return 1;
    case 2:
        for (i = 0; i < row_bytes; i++) out[i] = (uint8_t)(filtered[i] + previous[i]);
        return 1;
    case 3:
        for (i = 0; i < bpp && i < row_bytes; i++) out[i] = (uint8_t)(filtered[i] + (previous[i] >> 1));
        for (; i < row_bytes; i++) out[i] = (uint8_t)(filtered[i] + ((out[i - bpp] + previous[i]) >> 1));
        return 1;
    case 4:
#if defined(__SSE2__)
        if (bpp == 3 || bpp == 4) {
            paeth_rows_simd(out, filtered, 0, previous, row_bytes, bpp, 0);
            return 1;
        }
#endif
        for (i = 0; i < bpp && i < row_bytes; i++) out[i] = (uint8_t)(filtered[i] + previous[i]);
        for (; i < row_bytes; i++) out[i] = (uint8_t)(filtered[i] + paeth(out[i - bpp], previous[i], previous[i - bpp]));
        return 1;
    default:
        return 0;
    }
}

// Drops the alpha sample of each pixel: `channels` 2 or 4 in, one fewer out.
static void strip_alpha(uint8_t *out, const uint8_t *in, size_t width, size_t channels) {
    size_t kept = channels - 1;
    for (size_t x = 0; x < width; x++)
        for (size_t c = 0; c < kept; c++) out[x * kept + c] = in[x * channels + c];
}

typedef struct {
    uint32_t width, height;
    int channels;  // in the file: 1, 2, 3 or 4
    int32_t orientation;
    const uint8_t *idat;  // the first IDAT's data, or `joined` when there are several
    size_t idat_size;
    uint8_t *joined;
} png_layout;

// Walks the chunks. Returns 1 when the file is one this path decodes, with every CRC correct,
// the IDATs consecutive and IEND reached.
static int read_layout(const uint8_t *data, size_t size, uint64_t max_pixels, png_layout *layout) {
    memset(layout, 0, sizeof *layout);
    layout->orientation = 1;
    size_t position = 8, idat_count = 0, idat_total = 0;
    int seen_header = 0, idat_finished = 0, seen_exif = 0;
    const uint8_t *first_idat = NULL;
    for (;;) {
        if (size - position < 12) return 0;
        uint32_t length = big_endian_32(data + position);
        if (length > 0x7fffffffu || size - position - 12 < length) return 0;
        const uint8_t *type = data + position + 4, *body = data + position + 8;
        if (!valid_chunk_type(type)) return 0;
        if (libdeflate_crc32(0, type, (size_t)length + 4) != big_endian_32(body + length)) return 0;
        if (!seen_header) {
            if (!chunk_is(type, "IHDR") || length != 13) return 0;
            uint32_t width = big_endian_32(body), height = big_endian_32(body + 4);
            uint8_t depth = body[8], colour = body[9];
            if (width == 0 || height == 0 || width > 0x7fffffffu || height > 0x7fffffffu) return 0;
            if (depth != 8 || body[10] != 0 || body[11] != 0 || body[12] != 0) return 0;
            static const int channels_of[7] = {1, 0, 3, 0, 2, 0, 4};
            if (colour > 6 || channels_of[colour] == 0) return 0;
            if (max_pixels && (uint64_t)width * height > max_pixels) return 0;
            // Keeps every size below (4 bytes per pixel, plus a byte per row) far from overflow.
            if ((uint64_t)width * height > (uint64_t)1 << 32) return 0;
            layout->width = width;
            layout->height = height;
            layout->channels = channels_of[colour];
            seen_header = 1;
        } else if (chunk_is(type, "IDAT")) {
            if (idat_finished) return 0;
            if (idat_count++ == 0) first_idat = body;
            idat_total += length;
        } else if (chunk_is(type, "IEND")) {
            break;
        } else {
            if (idat_count > 0) idat_finished = 1;
            // Critical chunks other than these (a suggested palette in a truecolour file is
            // rare, and libpng has rules for it) are left to libpng.
            if (!(type[0] & 0x20)) return 0;
            if (chunk_is(type, "eXIf") && idat_count == 0) {
                if (seen_exif++) return 0;
                layout->orientation = ic_exif_orientation(body, length);
            }
        }
        position += (size_t)length + 12;
    }
    if (idat_count == 0) return 0;
    if (idat_count == 1) {
        layout->idat = first_idat;
        layout->idat_size = idat_total;
        return 1;
    }
    layout->joined = malloc(idat_total);
    if (!layout->joined) return 0;
    size_t filled = 0;
    for (position = (size_t)(first_idat - data) - 8;; position += (size_t)big_endian_32(data + position) + 12) {
        if (!chunk_is(data + position + 4, "IDAT")) break;
        uint32_t length = big_endian_32(data + position);
        memcpy(layout->joined + filled, data + position + 8, length);
        filled += length;
    }
    layout->idat = layout->joined;
    layout->idat_size = filled;
    return 1;
}

// The inflated rows are scratch, as large as the image: one buffer is kept between decodes so
// that a daemon decoding image after image does not map (and fault in) fresh pages each time.
// One slot, taken and returned by atomic exchange: concurrent decodes beyond the first simply
// allocate. Buffers above the cap are never kept.
typedef struct {
    uint8_t *data;
    size_t capacity;
} scratch_buffer;

static _Atomic(scratch_buffer *) kept_scratch;
enum { scratch_cap = 64u << 20 };

static scratch_buffer *take_scratch(size_t size) {
    scratch_buffer *buffer = atomic_exchange(&kept_scratch, NULL);
    if (buffer && buffer->capacity >= size) return buffer;
    if (buffer) {
        free(buffer->data);
        free(buffer);
    }
    buffer = malloc(sizeof *buffer);
    if (!buffer) return NULL;
    buffer->data = malloc(size);
    buffer->capacity = size;
    if (!buffer->data) {
        free(buffer);
        return NULL;
    }
    return buffer;
}

static void return_scratch(scratch_buffer *buffer) {
    if (!buffer) return;
    if (buffer->capacity <= scratch_cap) buffer = atomic_exchange(&kept_scratch, buffer);
    if (buffer) {
        free(buffer->data);
        free(buffer);
    }
}

int ic_png_direct_decode(const uint8_t *data, size_t size, uint64_t max_pixels, ic_image *out) {
    png_layout layout;
    if (!read_layout(data, size, max_pixels, &layout)) {
        free(layout.joined);
        return 0;
    }
    size_t width = layout.width, height = layout.height, channels = (size_t)layout.channels;
    size_t row_bytes = width * channels, stride = row_bytes + 1;
    size_t kept = channels == 2 || channels == 4 ? channels - 1 : channels;
    // 4 spare bytes: the SIMD Paeth loads and stores whole 4-byte words.
    scratch_buffer *scratch = take_scratch(stride * height + 4);
    uint8_t *filtered = scratch ? scratch->data : NULL;
    uint8_t *pixels = malloc(width * kept * height + 4);
    uint8_t *rows = malloc(2 * row_bytes + 8);  // previous and current row, when alpha is dropped
    struct libdeflate_decompressor *inflater = libdeflate_alloc_decompressor();
    int ok = filtered && pixels && rows && inflater &&
             libdeflate_zlib_decompress(inflater, layout.idat, layout.idat_size, filtered, stride * height, NULL) == LIBDEFLATE_SUCCESS;
    if (ok) {
        memset(rows, 0, 2 * row_bytes + 8);
        const uint8_t *previous = rows;  // zeros above the first row
        for (size_t y = 0; y < height && ok; y++) {
            const uint8_t *line = filtered + y * stride;
            if (kept == channels) {
                uint8_t *target = pixels + y * row_bytes;
#if defined(__SSE2__)
                if (channels == 3 && y + 1 < height && line[0] == 4 && line[stride] == 4) {
                    paeth_rows_simd(target, line + 1, stride, previous, row_bytes, channels, 1);
                    previous = target + row_bytes;
                    y++;
                    continue;
                }
#endif
                ok = unfilter_row(target, line + 1, previous, line[0], row_bytes, channels);
                previous = target;
            } else {
                uint8_t *target = rows + (y % 2 ? 0 : row_bytes + 4);
                ok = unfilter_row(target, line + 1, previous, line[0], row_bytes, channels);
                strip_alpha(pixels + y * width * kept, target, width, channels);
                previous = target;
            }
        }
    }
    if (inflater) libdeflate_free_decompressor(inflater);
    free(rows);
    return_scratch(scratch);
    free(layout.joined);
    if (!ok) {
        free(pixels);
        return 0;
    }
    out->width = (int32_t)width;
    out->height = (int32_t)height;
    out->channels = (int32_t)kept;
    out->bit_depth = 8;
    out->orientation = layout.orientation;
    out->pixels = pixels;
    return 1;
}

// MARK: - Encoding

static uint8_t *put_big_endian_32(uint8_t *p, uint32_t value) {
    p[0] = (uint8_t)(value >> 24);
    p[1] = (uint8_t)(value >> 16);
    p[2] = (uint8_t)(value >> 8);
    p[3] = (uint8_t)value;
    return p + 4;
}

// Writes the chunk whose data is already at p + 8 (`length` bytes); returns the end.
static uint8_t *close_chunk(uint8_t *p, const char *type, size_t length) {
    put_big_endian_32(p, (uint32_t)length);
    memcpy(p + 4, type, 4);
    return put_big_endian_32(p + 8 + length, libdeflate_crc32(0, p + 4, length + 4));
}

// A tEXt keyword as libpng accepts it: 1-79 printable Latin-1 bytes without edge or double spaces.
static int valid_keyword(const char *key) {
    size_t length = strlen(key);
    if (length == 0 || length > 79 || key[0] == ' ' || key[length - 1] == ' ') return 0;
    for (size_t i = 0; i < length; i++) {
        uint8_t c = (uint8_t)key[i];
        if ((c < 32 || (c > 126 && c < 161)) || (c == ' ' && key[i + 1] == ' ')) return 0;
    }
    return 1;
}

int ic_png_direct_encode_fast(const uint8_t *pixels, int32_t width, int32_t height, int32_t channels,
                              const char *const *text_keys, const char *const *text_values, int32_t text_count,
                              uint8_t **out, size_t *out_size) {
    if (width <= 0 || height <= 0 || (channels != 1 && channels != 3)) return 0;
    size_t text_bytes = 0;
    for (int32_t i = 0; i < text_count; i++) {
        if (!valid_keyword(text_keys[i])) return 0;
        text_bytes += 12 + strlen(text_keys[i]) + 1 + strlen(text_values[i]);
    }
    size_t row_bytes = (size_t)width * (size_t)channels, filtered_size = (row_bytes + 1) * (size_t)height;
    uint8_t *filtered = malloc(filtered_size);
    // Level 1 of libdeflate: faster than zlib's level 1 with run-length matching, about as small.
    struct libdeflate_compressor *deflater = libdeflate_alloc_compressor(1);
    size_t bound = deflater ? libdeflate_zlib_compress_bound(deflater, filtered_size) : 0;
    size_t capacity = 8 + 25 + text_bytes + 12 + bound + 12;
    uint8_t *file = filtered && deflater ? malloc(capacity) : NULL;
    if (!file) {
        free(filtered);
        if (deflater) libdeflate_free_compressor(deflater);
        return 0;
    }
    // The SUB filter on every row: on heatmaps (smooth colour over a photo) as small as
    // choosing per row, at a fraction of the cost.
    for (size_t y = 0; y < (size_t)height; y++) {
        const uint8_t *row = pixels + y * row_bytes;
        uint8_t *line = filtered + y * (row_bytes + 1);
        line[0] = 1;
        for (size_t i = 0; i < row_bytes; i++) line[1 + i] = (uint8_t)(row[i] - (i >= (size_t)channels ? row[i - channels] : 0));
    }
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(file, signature, 8);
    uint8_t *p = file + 8;
    uint8_t *header = p + 8;
    put_big_endian_32(header, (uint32_t)width);
    put_big_endian_32(header + 4, (uint32_t)height);
    header[8] = 8;
    header[9] = channels == 1 ? 0 : 2;
    header[10] = header[11] = header[12] = 0;
    p = close_chunk(p, "IHDR", 13);
    for (int32_t i = 0; i < text_count; i++) {
        size_t key_length = strlen(text_keys[i]) + 1, value_length = strlen(text_values[i]);
        memcpy(p + 8, text_keys[i], key_length);
        memcpy(p + 8 + key_length, text_values[i], value_length);
        p = close_chunk(p, "tEXt", key_length + value_length);
    }
    size_t compressed = libdeflate_zlib_compress(deflater, filtered, filtered_size, p + 8, bound);
    libdeflate_free_compressor(deflater);
    free(filtered);
    if (compressed == 0 || compressed > 0x7fffffffu) {
        free(file);
        return 0;
    }
    p = close_chunk(p, "IDAT", compressed);
    p = close_chunk(p, "IEND", 0);
    *out = file;
    *out_size = (size_t)(p - file);
    return 1;
}
