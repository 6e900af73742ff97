// Over 400 lines: the PNG and JPEG paths share the setjmp error plumbing and EXIF handling here.
// C shim around libpng and libjpeg: both report fatal errors by longjmp, which Swift cannot
// catch, so every call into them happens here behind setjmp. State that must survive a
// longjmp lives in structs whose address the libraries hold (never in plain locals).
#include "image_codecs.h"
#include "png_direct.h"
#include "codec_message.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <zlib.h>  // Z_RLE
#include <jpeglib.h>
#include <jerror.h>

// Reads the Orientation tag (0x0112) from IFD0 of a TIFF-structured EXIF block.
int32_t ic_exif_orientation(const uint8_t *tiff, size_t length) {
    if (length < 8) return 1;
    int little;
    if (tiff[0] == 'I' && tiff[1] == 'I') little = 1;
    else if (tiff[0] == 'M' && tiff[1] == 'M') little = 0;
    else return 1;
#define U16(p) (little ? (uint32_t)(p)[0] | (uint32_t)(p)[1] << 8 : (uint32_t)(p)[0] << 8 | (uint32_t)(p)[1])
#define U32(p) (little ? U16(p) | U16((p) + 2) << 16 : U16(p) << 16 | U16((p) + 2))
    if (U16(tiff + 2) != 42) return 1;
    uint32_t ifd = U32(tiff + 4);
    if ((uint64_t)ifd + 2 > length) return 1;
    uint32_t count = U16(tiff + ifd);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t entry = (uint64_t)ifd + 2 + 12 * (uint64_t)i;
        if (entry + 12 > length) break;
        const uint8_t *p = tiff + entry;
        if (U16(p) == 0x0112 && U16(p + 2) == 3) {
            uint32_t value = U16(p + 8);
            return value >= 1 && value <= 8 ? (int32_t)value : 1;
        }
    }
#undef U32
#undef U16
    return 1;
}

// MARK: - PNG

typedef struct {
    const uint8_t *input;
    size_t input_size, input_position;
    int hit_end;
    uint8_t *output;
    size_t output_size, output_capacity;
    char *message;
    size_t message_size;
} png_context;

static void png_on_error(png_structp png, png_const_charp text) {
    png_context *context = png_get_error_ptr(png);
    fail(0, context->message, context->message_size, "%s", text);
    png_longjmp(png, 1);
}

// libpng warns about damaged ancillary chunks, which it then skips; the pixels are intact.
static void png_on_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;
}

static void png_read_bytes(png_structp png, png_bytep out, size_t length) {
    png_context *context = png_get_io_ptr(png);
    if (length > context->input_size - context->input_position) {
        context->hit_end = 1;
        png_error(png, "the file ends early");
    }
    memcpy(out, context->input + context->input_position, length);
    context->input_position += length;
}

int ic_decode_png(const uint8_t *data, size_t size, const ic_decode_options *options,
                  ic_image *out, char *message, size_t message_size) {
    memset(out, 0, sizeof *out);
    if (size == 0) return fail(IC_ERR_EMPTY, message, message_size, "the file is empty");
    size_t signature_bytes = size < 8 ? size : 8;
    if (png_sig_cmp(data, 0, signature_bytes) != 0)
        return fail(IC_ERR_UNSUPPORTED, message, message_size, "not a PNG file (bad signature)");
    if (size < 8)
        return fail(IC_ERR_TRUNCATED, message, message_size, "only %zu bytes, shorter than a PNG signature", size);

    int decoder = options ? options->png_decoder : IC_PNG_AUTO;
    if (decoder != IC_PNG_LIBPNG && ic_png_direct_decode(data, size, options ? options->max_pixels : 0, out))
        return IC_OK;
    if (decoder == IC_PNG_DIRECT)
        return fail(IC_ERR_UNSUPPORTED, message, message_size, "declined by the direct PNG path");

    png_context context = {.input = data, .input_size = size, .message = message, .message_size = message_size};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &context, png_on_error, png_on_warning);
    if (!png) return fail(IC_ERR_NO_MEMORY, message, message_size, "libpng could not allocate its state");
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return fail(IC_ERR_NO_MEMORY, message, message_size, "libpng could not allocate its state");
    }
    // Buffers allocated after setjmp: volatile so the error path sees their current value.
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return context.hit_end ? IC_ERR_TRUNCATED : IC_ERR_CORRUPT;
    }
    png_set_read_fn(png, &context, png_read_bytes);
    // Our max_pixels check replaces libpng's per-dimension default of 1,000,000.
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);

    png_uint_32 width, height;
    int depth, color, interlace;
    png_get_IHDR(png, info, &width, &height, &depth, &color, &interlace, NULL, NULL);
    uint64_t declared = (uint64_t)width * height;
    if (options && options->max_pixels && declared > options->max_pixels) {
        png_destroy_read_struct(&png, &info, NULL);
        out->width = (int32_t)width;  // at most 2^31 - 1: libpng checks IHDR
        out->height = (int32_t)height;
        return fail(IC_ERR_TOO_LARGE, message, message_size,
                    "the header declares %ux%u = %llu pixels, above the limit of %llu",
                    width, height, (unsigned long long)declared, (unsigned long long)options->max_pixels);
    }
    int32_t orientation = 1;
#ifdef PNG_eXIf_SUPPORTED
    png_uint_32 exif_length = 0;
    png_bytep exif = NULL;
    if (png_get_eXIf_1(png, info, &exif_length, &exif) && exif) orientation = ic_exif_orientation(exif, exif_length);
#endif

    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    // palette_to_rgb also turns tRNS into an alpha channel, which we drop with the rest.
    if ((color & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (depth == 16) png_set_swap(png);
#endif
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int channels = png_get_channels(png, info);
    int bit_depth = png_get_bit_depth(png, info);
    size_t row_bytes = png_get_rowbytes(png, info);
    if ((channels != 1 && channels != 3) || (bit_depth != 8 && bit_depth != 16))
        png_error(png, "unexpected layout after transforms");
    pixels = malloc(row_bytes * height);
    rows = malloc(sizeof(png_bytep) * height);
    if (!pixels || !rows) png_error(png, "out of memory for the pixels");
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + y * row_bytes;
    png_read_image(png, rows);
    // Reading through IEND catches files cut off after the last IDAT (half-copied files).
    png_read_end(png, NULL);

    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    out->width = (int32_t)width;
    out->height = (int32_t)height;
    out->channels = channels;
    out->bit_depth = bit_depth;
    out->orientation = orientation;
    out->pixels = pixels;
    return IC_OK;
}

static void png_write_bytes(png_structp png, png_bytep in, size_t length) {
    png_context *context = png_get_io_ptr(png);
    if (length > context->output_capacity - context->output_size) {
        size_t capacity = context->output_capacity ? context->output_capacity : 65536;
        while (capacity - context->output_size < length) capacity *= 2;
        uint8_t *grown = realloc(context->output, capacity);
        if (!grown) png_error(png, "out of memory for the encoded file");
        context->output = grown;
        context->output_capacity = capacity;
    }
    memcpy(context->output + context->output_size, in, length);
    context->output_size += length;
}

static void png_flush_bytes(png_structp png) { (void)png; }

int ic_encode_png(const void *pixels, int32_t width, int32_t height, int32_t channels,
                  int32_t bit_depth, int32_t fast, const char *const *text_keys,
                  const char *const *text_values, int32_t text_count,
                  uint8_t **out, size_t *out_size, char *message, size_t message_size) {
    *out = NULL;
    *out_size = 0;
    int layout_ok = (bit_depth == 8 && (channels == 1 || channels == 3)) || (bit_depth == 16 && channels == 1);
    if (!layout_ok || width <= 0 || height <= 0)
        return fail(IC_ERR_UNSUPPORTED, message, message_size,
                    "cannot encode %dx%d with %d channels at %d bits", width, height, channels, bit_depth);
    if (fast && bit_depth == 8 &&
        ic_png_direct_encode_fast(pixels, width, height, channels, text_keys, text_values, text_count, out, out_size))
        return IC_OK;
    png_context context = {.message = message, .message_size = message_size};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &context, png_on_error, png_on_warning);
    if (!png) return fail(IC_ERR_NO_MEMORY, message, message_size, "libpng could not allocate its state");
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return fail(IC_ERR_NO_MEMORY, message, message_size, "libpng could not allocate its state");
    }
    png_text *volatile texts = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(texts);
        free(context.output);
        png_destroy_write_struct(&png, &info);
        return IC_ERR_CORRUPT;
    }
    png_set_write_fn(png, &context, png_write_bytes, png_flush_bytes);
    if (fast) {
        // 16-bit files, or keywords left to libpng to refuse. zlib's level 1 with one fixed
        // filter and run-length matching only (Z_RLE) is several times faster than its default.
        png_set_compression_level(png, 1);
        png_set_compression_strategy(png, Z_RLE);
        png_set_filter(png, 0, PNG_FILTER_SUB);
    }
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, bit_depth,
                 channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (text_count > 0) {
        texts = calloc((size_t)text_count, sizeof(png_text));
        if (!texts) png_error(png, "out of memory for the text chunks");
        for (int32_t i = 0; i < text_count; i++) {
            texts[i].compression = PNG_TEXT_COMPRESSION_NONE;
            texts[i].key = (png_charp)text_keys[i];
            texts[i].text = (png_charp)text_values[i];
        }
        png_set_text(png, info, texts, text_count);
    }
    png_write_info(png, info);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (bit_depth == 16) png_set_swap(png);
#endif
    size_t row_bytes = (size_t)width * (size_t)channels * (size_t)(bit_depth / 8);
    for (int32_t y = 0; y < height; y++)
        png_write_row(png, (png_const_bytep)pixels + (size_t)y * row_bytes);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(texts);
    *out = context.output;
    *out_size = context.output_size;
    return IC_OK;
}

// MARK: - JPEG

typedef struct {
    struct jpeg_error_mgr manager;  // first: libjpeg hands back a pointer to it
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    int status;
    unsigned char *output;
    unsigned long output_size;
    char *message;
    size_t message_size;
} jpeg_failure;

static void jpeg_on_error_exit(j_common_ptr cinfo) {
    jpeg_failure *failure = (jpeg_failure *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    cinfo->err->format_message(cinfo, text);
    fail(0, failure->message, failure->message_size, "%s", text);
    if (failure->status == IC_OK) failure->status = IC_ERR_CORRUPT;
    longjmp(failure->jump, 1);
}

// libjpeg only warns about damaged entropy data and a missing end and then invents the
// missing pixels; a half-copied file must fail, so those warnings are fatal here. Others (e.g.
// extraneous bytes before a marker, which some cameras write) leave the image intact.
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return;
    switch (cinfo->err->msg_code) {
    case JWRN_JPEG_EOF:
        ((jpeg_failure *)cinfo->err)->status = IC_ERR_TRUNCATED;
        jpeg_on_error_exit(cinfo);
        break;
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_MUST_RESYNC:
    case JWRN_NOT_SEQUENTIAL:
    case JWRN_BOGUS_PROGRESSION:
    case JWRN_TOO_MUCH_DATA:
        jpeg_on_error_exit(cinfo);
        break;
    default:
        break;
    }
}

// A corrupt progressive file can declare thousands of tiny scans and take minutes; real
// encoders write about ten (libjpeg-turbo's TurboJPEG API uses the same limit).
static void jpeg_on_progress(j_common_ptr cinfo) {
    if (!cinfo->is_decompressor) return;
    if (((j_decompress_ptr)cinfo)->input_scan_number > 500) {
        jpeg_failure *failure = (jpeg_failure *)cinfo->err;
        fail(0, failure->message, failure->message_size, "more than 500 progressive scans");
        failure->status = IC_ERR_CORRUPT;
        longjmp(failure->jump, 1);
    }
}

static void jpeg_install_failure(jpeg_failure *failure, char *message, size_t message_size) {
    memset(failure, 0, sizeof *failure);
    jpeg_std_error(&failure->manager);
    failure->manager.error_exit = jpeg_on_error_exit;
    failure->manager.emit_message = jpeg_on_message;
    failure->progress.progress_monitor = jpeg_on_progress;
    failure->status = IC_OK;
    failure->message = message;
    failure->message_size = message_size;
}

static inline uint8_t muldiv255(uint32_t a, uint32_t b) {
    uint32_t t = a * b + 128;
    return (uint8_t)((t + (t >> 8)) >> 8);
}

int ic_decode_jpeg(const uint8_t *data, size_t size, const ic_decode_options *options,
                   ic_image *out, char *message, size_t message_size) {
    memset(out, 0, sizeof *out);
    if (size == 0) return fail(IC_ERR_EMPTY, message, message_size, "the file is empty");
    if (data[0] != 0xFF || (size > 1 && data[1] != 0xD8))
        return fail(IC_ERR_UNSUPPORTED, message, message_size, "not a JPEG file (no SOI marker)");
    if (size < 4)
        return fail(IC_ERR_TRUNCATED, message, message_size, "only %zu bytes, shorter than any JPEG", size);

    struct jpeg_decompress_struct cinfo;
    jpeg_failure failure;
    jpeg_install_failure(&failure, message, message_size);
    cinfo.err = &failure.manager;
    uint8_t *volatile pixels = NULL;
    if (setjmp(failure.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        return failure.status;
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &failure.progress;
    jpeg_mem_src(&cinfo, (unsigned char *)data, (unsigned long)size);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&cinfo, TRUE);

    uint64_t declared = (uint64_t)cinfo.image_width * cinfo.image_height;
    if (options && options->max_pixels && declared > options->max_pixels) {
        unsigned width = cinfo.image_width, height = cinfo.image_height;
        jpeg_destroy_decompress(&cinfo);
        out->width = (int32_t)width;
        out->height = (int32_t)height;
        return fail(IC_ERR_TOO_LARGE, message, message_size,
                    "the header declares %ux%u = %llu pixels, above the limit of %llu",
                    width, height, (unsigned long long)declared, (unsigned long long)options->max_pixels);
    }
    int32_t orientation = 1;
    for (jpeg_saved_marker_ptr marker = cinfo.marker_list; marker; marker = marker->next) {
        if (marker->marker == JPEG_APP0 + 1 && marker->data_length >= 14 &&
            memcmp(marker->data, "Exif\0\0", 6) == 0) {
            orientation = ic_exif_orientation(marker->data + 6, marker->data_length - 6);
            break;
        }
    }
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: cinfo.out_color_space = JCS_GRAYSCALE; break;
    case JCS_CMYK:
    case JCS_YCCK: cinfo.out_color_space = JCS_CMYK; break;
    default: cinfo.out_color_space = JCS_RGB; break;
    }
    if (options && options->target_width > 0 && options->target_height > 0) {
        // The target is in displayed orientation; 5...8 swap width and height.
        uint64_t target_width = (uint64_t)(orientation >= 5 ? options->target_height : options->target_width);
        uint64_t target_height = (uint64_t)(orientation >= 5 ? options->target_width : options->target_height);
        for (unsigned numerator = 1; numerator < 8; numerator *= 2) {
            uint64_t scaled_width = ((uint64_t)cinfo.image_width * numerator + 7) / 8;
            uint64_t scaled_height = ((uint64_t)cinfo.image_height * numerator + 7) / 8;
            if (scaled_width >= target_width && scaled_height >= target_height) {
                cinfo.scale_num = numerator;
                cinfo.scale_denom = 8;
                break;
            }
        }
    }
    jpeg_start_decompress(&cinfo);

    unsigned width = cinfo.output_width, height = cinfo.output_height;
    int components = cinfo.output_components;
    size_t row_bytes = (size_t)width * (size_t)components;
    pixels = malloc(row_bytes * height);
    if (!pixels) {
        failure.status = IC_ERR_NO_MEMORY;
        fail(0, message, message_size, "out of memory for %ux%u pixels", width, height);
        longjmp(failure.jump, 1);
    }
    while (cinfo.output_scanline < height) {
        JSAMPROW rows[16];
        unsigned count = height - cinfo.output_scanline < 16 ? height - cinfo.output_scanline : 16;
        for (unsigned i = 0; i < count; i++) rows[i] = pixels + (size_t)(cinfo.output_scanline + i) * row_bytes;
        jpeg_read_scanlines(&cinfo, rows, count);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);

    if (components == 4) {
        // PIL and browsers read every CMYK JPEG as Adobe writes it, inverted (0 = full ink),
        // whether or not the Adobe marker is present; RGB = C'K' / 255 with C' = stored C.
        size_t count = (size_t)width * height;
        uint8_t *rgb = pixels;
        for (size_t i = 0; i < count; i++) {
            const uint8_t *cmyk = pixels + 4 * i;
            uint8_t r = muldiv255(cmyk[0], cmyk[3]), g = muldiv255(cmyk[1], cmyk[3]), b = muldiv255(cmyk[2], cmyk[3]);
            rgb[3 * i] = r;
            rgb[3 * i + 1] = g;
            rgb[3 * i + 2] = b;
        }
        components = 3;
    }
    out->width = (int32_t)width;
    out->height = (int32_t)height;
    out->channels = components;
    out->bit_depth = 8;
    out->orientation = orientation;
    out->pixels = pixels;
    return IC_OK;
}

int ic_encode_jpeg(const uint8_t *pixels, int32_t width, int32_t height, int32_t channels,
                   int32_t quality, int32_t progressive,
                   uint8_t **out, size_t *out_size, char *message, size_t message_size) {
    *out = NULL;
    *out_size = 0;
    if ((channels != 1 && channels != 3) || width <= 0 || height <= 0 || width > 65500 || height > 65500)
        return fail(IC_ERR_UNSUPPORTED, message, message_size,
                    "cannot encode %dx%d with %d channels as JPEG", width, height, channels);
    struct jpeg_compress_struct cinfo;
    jpeg_failure failure;
    jpeg_install_failure(&failure, message, message_size);
    cinfo.err = &failure.manager;
    if (setjmp(failure.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(failure.output);
        return failure.status;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &failure.output, &failure.output_size);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = channels;
    cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality < 1 ? 1 : quality > 100 ? 100 : quality, TRUE);
    // At high quality keep colour at full resolution (4:4:4): heatmaps have sharp colour edges.
    if (quality >= 90) {
        for (int c = 0; c < cinfo.num_components; c++) {
            cinfo.comp_info[c].h_samp_factor = 1;
            cinfo.comp_info[c].v_samp_factor = 1;
        }
    }
    if (progressive) jpeg_simple_progression(&cinfo);
    jpeg_start_compress(&cinfo, TRUE);
    size_t row_bytes = (size_t)width * (size_t)channels;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * row_bytes);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *out = failure.output;
    *out_size = failure.output_size;
    return IC_OK;
}

void ic_image_free(ic_image *image) {
    if (!image) return;
    free(image->pixels);
    image->pixels = NULL;
}

void ic_buffer_free(void *buffer) { free(buffer); }
