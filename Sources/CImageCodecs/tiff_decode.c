// TIFF through libtiff, from memory. libtiff reports errors by return codes (no longjmp), but
// prints warnings and errors through handlers that default to stderr: every handle gets
// handlers that keep the first error in the caller's message, and the process-wide ones are
// cleared once, for the few messages libtiff emits before it has a handle.
#include "image_codecs.h"
#include "codec_message.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <tiffio.h>

typedef struct {
    const uint8_t *data;
    size_t size, position;
    int hit_end;         // a read asked for bytes past the end: the file is truncated
    char *message;
    size_t message_size;
    int has_message;
} tiff_source;

static tmsize_t source_read(thandle_t handle, void *buffer, tmsize_t length) {
    tiff_source *source = handle;
    if (length < 0) return -1;
    size_t available = source->position < source->size ? source->size - source->position : 0;
    size_t count = (size_t)length < available ? (size_t)length : available;
    if (count < (size_t)length) source->hit_end = 1;
    memcpy(buffer, source->data + source->position, count);
    source->position += count;
    return (tmsize_t)count;
}

static tmsize_t source_write(thandle_t handle, void *buffer, tmsize_t length) {
    (void)handle; (void)buffer; (void)length;
    return -1;
}

static toff_t source_seek(thandle_t handle, toff_t offset, int whence) {
    tiff_source *source = handle;
    uint64_t base = whence == SEEK_CUR ? source->position : whence == SEEK_END ? source->size : 0;
    if (offset > UINT64_MAX - base) return (toff_t)-1;
    source->position = (size_t)(base + offset > SIZE_MAX ? SIZE_MAX : base + offset);
    return (toff_t)source->position;
}

static int source_close(thandle_t handle) { (void)handle; return 0; }
static toff_t source_size(thandle_t handle) { return ((tiff_source *)handle)->size; }
static int source_map(thandle_t handle, void **base, toff_t *size) { (void)handle; (void)base; (void)size; return 0; }
static void source_unmap(thandle_t handle, void *base, toff_t size) { (void)handle; (void)base; (void)size; }

static int on_error(TIFF *tiff, void *user, const char *module, const char *format, va_list arguments) {
    (void)tiff;
    tiff_source *source = user;
    if (!source->has_message && source->message && source->message_size > 0) {
        int used = snprintf(source->message, source->message_size, "%s: ", module ? module : "libtiff");
        if (used >= 0 && (size_t)used < source->message_size)
            vsnprintf(source->message + used, source->message_size - (size_t)used, format, arguments);
        source->has_message = 1;
    }
    return 1;  // handled: libtiff's global handler (stderr) is not called
}

static int on_warning(TIFF *tiff, void *user, const char *module, const char *format, va_list arguments) {
    (void)tiff; (void)user; (void)module; (void)format; (void)arguments;
    return 1;  // unknown tags and the like; the pixels decide
}

static void silence_global_handlers(void) {
    TIFFSetErrorHandler(NULL);
    TIFFSetWarningHandler(NULL);
}

// The status for a libtiff failure: truncated when a read ran past the end of the data.
static int read_failure(tiff_source *source, const char *what) {
    if (!source->has_message) fail(0, source->message, source->message_size, "%s", what);
    return source->hit_end ? IC_ERR_TRUNCATED : IC_ERR_CORRUPT;
}

// Samples of one plane (or all, interleaved) from a strip or tile buffer into the 8-bit output.
typedef struct {
    uint32_t width, height, samples;  // samples per pixel in the file
    int separate;                     // PLANARCONFIG_SEPARATE
    int bits;                         // 8 or 16
    int channels;                     // output channels, 1 or 3
    int invert;                       // MinIsWhite
    uint32_t maximum;                 // MaxSampleValue for 16-bit scaling
    uint8_t *pixels;
} tiff_layout;

static uint8_t to_byte(const tiff_layout *layout, const uint8_t *chunk, size_t index) {
    uint32_t value;
    if (layout->bits == 8) {
        value = chunk[index];
    } else {
        uint32_t sample;
        uint16_t stored;
        memcpy(&stored, chunk + 2 * index, 2);  // host order: libtiff swabs on read
        sample = stored < layout->maximum ? stored : layout->maximum;
        value = (sample * 255 + layout->maximum / 2) / layout->maximum;
    }
    return (uint8_t)(layout->invert ? 255 - value : value);
}

// Copies a decoded chunk (a strip is a tile as wide as the image) at (x0, y0) of `plane`.
static void place(const tiff_layout *layout, const uint8_t *chunk, uint32_t x0, uint32_t y0,
                  uint32_t chunk_width, uint32_t chunk_height, uint16_t plane) {
    uint32_t per_pixel = layout->separate ? 1 : layout->samples;
    for (uint32_t y = 0; y < chunk_height && y0 + y < layout->height; y++) {
        for (uint32_t x = 0; x < chunk_width && x0 + x < layout->width; x++) {
            size_t source = ((size_t)y * chunk_width + x) * per_pixel;
            uint8_t *target = layout->pixels + (((size_t)(y0 + y)) * layout->width + x0 + x) * (size_t)layout->channels;
            if (layout->separate) {
                if (plane < layout->channels) target[plane] = to_byte(layout, chunk, source);
            } else {
                for (int c = 0; c < layout->channels; c++) target[c] = to_byte(layout, chunk, source + (size_t)c);
            }
        }
    }
}

static int read_samples(TIFF *tiff, tiff_source *source, const tiff_layout *layout) {
    int tiled = TIFFIsTiled(tiff);
    tmsize_t chunk_size = tiled ? TIFFTileSize(tiff) : TIFFStripSize(tiff);
    if (chunk_size <= 0) return read_failure(source, "cannot size the strips or tiles");
    uint8_t *chunk = malloc((size_t)chunk_size);
    if (!chunk) return fail(IC_ERR_NO_MEMORY, source->message, source->message_size, "cannot allocate a %lld-byte strip", (long long)chunk_size);
    uint32_t chunk_width = layout->width, chunk_height = 0;
    if (tiled) {
        TIFFGetField(tiff, TIFFTAG_TILEWIDTH, &chunk_width);
        TIFFGetField(tiff, TIFFTAG_TILELENGTH, &chunk_height);
    } else {
        TIFFGetFieldDefaulted(tiff, TIFFTAG_ROWSPERSTRIP, &chunk_height);
        if (chunk_height > layout->height) chunk_height = layout->height;
    }
    if (chunk_width == 0 || chunk_height == 0) {
        free(chunk);
        return read_failure(source, "zero tile or strip size");
    }
    uint32_t count = tiled ? TIFFNumberOfTiles(tiff) : TIFFNumberOfStrips(tiff);
    uint32_t planes = layout->separate ? layout->samples : 1;
    uint32_t per_plane = count / planes;
    uint32_t across = tiled ? (layout->width + chunk_width - 1) / chunk_width : 1;
    for (uint32_t index = 0; index < count; index++) {
        uint16_t plane = (uint16_t)(index / (per_plane ? per_plane : 1));
        if (layout->separate && plane >= layout->channels) break;  // extra samples are dropped
        tmsize_t got = tiled ? TIFFReadEncodedTile(tiff, index, chunk, chunk_size) : TIFFReadEncodedStrip(tiff, index, chunk, chunk_size);
        if (got < 0) {
            free(chunk);
            return read_failure(source, tiled ? "cannot read a tile" : "cannot read a strip");
        }
        uint32_t within = index % (per_plane ? per_plane : 1);
        uint32_t x0 = (within % across) * chunk_width, y0 = (within / across) * chunk_height;
        if (y0 >= layout->height) continue;
        // A last strip may be shorter; decode only the rows it has.
        uint32_t bytes_per_row = (uint32_t)((uint64_t)chunk_width * (layout->separate ? 1 : layout->samples) * (uint32_t)layout->bits / 8);
        uint32_t rows = (uint32_t)((uint64_t)got / (bytes_per_row ? bytes_per_row : 1));
        place(layout, chunk, x0, y0, chunk_width, rows < chunk_height ? rows : chunk_height, plane);
    }
    free(chunk);
    return IC_OK;
}

// Layouts the sample reader does not handle (palette, YCbCr, CMYK, 1-bit...): libtiff's RGBA reader.
static int read_rgba(TIFF *tiff, tiff_source *source, uint32_t width, uint32_t height, ic_image *out) {
    char reason[1024];
    if (!TIFFRGBAImageOK(tiff, reason))
        return fail(IC_ERR_UNSUPPORTED, source->message, source->message_size, "TIFF layout not supported: %s", reason);
    uint32_t *rgba = _TIFFmalloc((tmsize_t)((uint64_t)width * height * 4));
    if (!rgba) return fail(IC_ERR_NO_MEMORY, source->message, source->message_size, "cannot allocate %ux%u pixels", width, height);
    if (!TIFFReadRGBAImageOriented(tiff, width, height, rgba, ORIENTATION_TOPLEFT, 0)) {
        _TIFFfree(rgba);
        return read_failure(source, "cannot read the image");
    }
    uint8_t *pixels = malloc((size_t)width * height * 3);
    if (!pixels) {
        _TIFFfree(rgba);
        return fail(IC_ERR_NO_MEMORY, source->message, source->message_size, "cannot allocate %ux%u pixels", width, height);
    }
    for (size_t i = 0; i < (size_t)width * height; i++) {
        pixels[3 * i] = (uint8_t)TIFFGetR(rgba[i]);
        pixels[3 * i + 1] = (uint8_t)TIFFGetG(rgba[i]);
        pixels[3 * i + 2] = (uint8_t)TIFFGetB(rgba[i]);
    }
    _TIFFfree(rgba);
    out->channels = 3;
    out->pixels = pixels;
    out->orientation = 1;  // the RGBA reader applied it
    return IC_OK;
}

static int decode(TIFF *tiff, tiff_source *source, const ic_decode_options *options, ic_image *out) {
    uint32_t width = 0, height = 0;
    uint16_t samples = 1, bits = 1, photometric = PHOTOMETRIC_MINISBLACK, planar = PLANARCONFIG_CONTIG, format = SAMPLEFORMAT_UINT;
    uint16_t orientation = ORIENTATION_TOPLEFT, maximum = 0, extra_count = 0;
    uint16_t *extra = NULL;
    if (!TIFFGetField(tiff, TIFFTAG_IMAGEWIDTH, &width) || !TIFFGetField(tiff, TIFFTAG_IMAGELENGTH, &height) || width == 0 || height == 0)
        return read_failure(source, "no image size");
    uint64_t declared = (uint64_t)width * height;
    if (options && options->max_pixels && declared > options->max_pixels) {
        out->width = width > INT32_MAX ? INT32_MAX : (int32_t)width;
        out->height = height > INT32_MAX ? INT32_MAX : (int32_t)height;
        return fail(IC_ERR_TOO_LARGE, source->message, source->message_size, "the header declares %ux%u = %llu pixels, above the limit of %llu",
                       width, height, (unsigned long long)declared, (unsigned long long)options->max_pixels);
    }
    if (width > INT32_MAX || height > INT32_MAX) return fail(IC_ERR_TOO_LARGE, source->message, source->message_size, "TIFF size %ux%u", width, height);
    TIFFGetFieldDefaulted(tiff, TIFFTAG_SAMPLESPERPIXEL, &samples);
    TIFFGetFieldDefaulted(tiff, TIFFTAG_BITSPERSAMPLE, &bits);
    TIFFGetField(tiff, TIFFTAG_PHOTOMETRIC, &photometric);
    TIFFGetFieldDefaulted(tiff, TIFFTAG_PLANARCONFIG, &planar);
    TIFFGetFieldDefaulted(tiff, TIFFTAG_SAMPLEFORMAT, &format);
    TIFFGetFieldDefaulted(tiff, TIFFTAG_ORIENTATION, &orientation);
    TIFFGetFieldDefaulted(tiff, TIFFTAG_MAXSAMPLEVALUE, &maximum);
    TIFFGetFieldDefaulted(tiff, TIFFTAG_EXTRASAMPLES, &extra_count, &extra);
    out->width = (int32_t)width;
    out->height = (int32_t)height;
    out->bit_depth = 8;
    out->orientation = orientation >= 1 && orientation <= 8 ? orientation : 1;
    int grey = photometric == PHOTOMETRIC_MINISBLACK || photometric == PHOTOMETRIC_MINISWHITE;
    int colours = samples > extra_count ? samples - extra_count : 0;
    int simple = (bits == 8 || bits == 16) && format == SAMPLEFORMAT_UINT &&
                 ((grey && colours == 1) || (photometric == PHOTOMETRIC_RGB && colours == 3));
    if (!simple) return read_rgba(tiff, source, width, height, out);
    tiff_layout layout = {
        .width = width, .height = height, .samples = samples, .separate = planar == PLANARCONFIG_SEPARATE,
        .bits = bits, .channels = grey ? 1 : 3, .invert = photometric == PHOTOMETRIC_MINISWHITE,
        .maximum = bits == 16 && maximum > 0 ? maximum : 65535,
    };
    layout.pixels = calloc((size_t)declared, (size_t)layout.channels);
    if (!layout.pixels) return fail(IC_ERR_NO_MEMORY, source->message, source->message_size, "cannot allocate %ux%u pixels", width, height);
    int status = read_samples(tiff, source, &layout);
    if (status != IC_OK) {
        free(layout.pixels);
        return status;
    }
    out->channels = layout.channels;
    out->pixels = layout.pixels;
    return IC_OK;
}

int ic_decode_tiff(const uint8_t *data, size_t size, const ic_decode_options *options,
                   ic_image *out, char *message, size_t message_size) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, silence_global_handlers);
    memset(out, 0, sizeof *out);
    if (size == 0) return fail(IC_ERR_EMPTY, message, message_size, "the file is empty");
    if (size < 4 || !((data[0] == 'I' && data[1] == 'I' && data[2] == 42 && data[3] == 0) ||
                      (data[0] == 'M' && data[1] == 'M' && data[2] == 0 && data[3] == 42) ||
                      (data[0] == 'I' && data[1] == 'I' && data[2] == 43 && data[3] == 0) ||
                      (data[0] == 'M' && data[1] == 'M' && data[2] == 0 && data[3] == 43)))
        return fail(IC_ERR_UNSUPPORTED, message, message_size, "not a TIFF file (bad signature)");
    tiff_source source = {.data = data, .size = size, .message = message, .message_size = message_size};
    TIFFOpenOptions *open_options = TIFFOpenOptionsAlloc();
    if (!open_options) return fail(IC_ERR_NO_MEMORY, message, message_size, "libtiff could not allocate its options");
    TIFFOpenOptionsSetErrorHandlerExtR(open_options, on_error, &source);
    TIFFOpenOptionsSetWarningHandlerExtR(open_options, on_warning, &source);
    // No single libtiff allocation above what the largest allowed image needs (4 bytes a pixel
    // for the RGBA reader, 6 for 16-bit RGB), so a forged strip size cannot take the memory.
    uint64_t pixels = options && options->max_pixels ? options->max_pixels : (1ull << 32);
    uint64_t budget = pixels * 8 < (1ull << 40) ? pixels * 8 : (1ull << 40);
    TIFFOpenOptionsSetMaxSingleMemAlloc(open_options, (tmsize_t)(budget > (1u << 20) ? budget : (1u << 20)));
    // "m": no memory mapping, so every read goes through source_read and a short file is noticed.
    TIFF *tiff = TIFFClientOpenExt("image", "rm", &source, source_read, source_write, source_seek, source_close,
                                   source_size, source_map, source_unmap, open_options);
    TIFFOpenOptionsFree(open_options);
    if (!tiff) return read_failure(&source, "libtiff cannot open the file");
    int status = decode(tiff, &source, options, out);
    TIFFClose(tiff);
    if (status != IC_OK && status != IC_ERR_TOO_LARGE) {
        free(out->pixels);
        memset(out, 0, sizeof *out);
    }
    return status;
}
