// BMP reader: the layouts cameras and Windows tools write (BITMAPINFOHEADER and its V4/V5
// extensions, OS/2 core headers), read by hand because no library is needed. Every offset and
// size from the file is checked against the data before it is used; sizes are computed in
// 64 bits, and the declared pixel count is checked against max_pixels before any allocation.
#include "image_codecs.h"
#include "codec_message.h"

#include <stdlib.h>
#include <string.h>

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const uint8_t *p) { return le16(p) | le16(p + 2) << 16; }

// One channel of a BI_BITFIELDS mask: where it starts and how many bits it has.
typedef struct { uint32_t mask; int shift; int bits; } bmp_channel;

static int channel_from_mask(uint32_t mask, bmp_channel *channel) {
    channel->mask = mask;
    channel->shift = 0;
    channel->bits = 0;
    if (mask == 0) return 1;
    while (!(mask & 1)) { mask >>= 1; channel->shift++; }
    while (mask & 1) { mask >>= 1; channel->bits++; }
    return mask == 0;  // contiguous
}

// A masked sample scaled to 0...255, rounded.
static uint8_t channel_value(uint32_t pixel, const bmp_channel *channel) {
    if (channel->bits == 0) return 0;
    uint32_t value = (pixel & channel->mask) >> channel->shift;
    uint32_t maximum = channel->bits >= 32 ? 0xffffffffu : (1u << channel->bits) - 1;
    return (uint8_t)(((uint64_t)value * 255 + maximum / 2) / maximum);
}

int ic_decode_bmp(const uint8_t *data, size_t size, const ic_decode_options *options,
                  ic_image *out, char *message, size_t message_size) {
    memset(out, 0, sizeof *out);
    out->orientation = 1;
    if (size == 0) return fail(IC_ERR_EMPTY, message, message_size, "the file is empty");
    if (size < 2 || data[0] != 'B' || data[1] != 'M')
        return fail(IC_ERR_UNSUPPORTED, message, message_size, "not a BMP file (no BM signature)");
    if (size < 18) return fail(IC_ERR_TRUNCATED, message, message_size, "only %zu bytes, shorter than a BMP header", size);
    uint32_t pixel_offset = le32(data + 10), header_size = le32(data + 14);
    if (header_size != 12 && header_size != 40 && header_size != 52 && header_size != 56 && header_size != 64 &&
        header_size != 108 && header_size != 124)
        return fail(IC_ERR_UNSUPPORTED, message, message_size, "BMP info header of %u bytes (known: 12, 40, 52, 56, 64, 108, 124)", header_size);
    if ((uint64_t)14 + header_size > size)
        return fail(IC_ERR_TRUNCATED, message, message_size, "the file ends inside its %u-byte info header", header_size);
    const uint8_t *h = data + 14;
    int64_t width, height;
    uint32_t bits, compression = 0, colours_used = 0;
    if (header_size == 12) {
        width = le16(h + 4);
        height = le16(h + 6);
        bits = le16(h + 10);
    } else {
        width = (int32_t)le32(h + 4);
        height = (int32_t)le32(h + 8);
        bits = le16(h + 14);
        compression = le32(h + 16);
        colours_used = le32(h + 32);
    }
    int top_down = height < 0;
    if (top_down) height = -height;
    if (width <= 0 || height <= 0 || width > 0x7fffffff || height > 0x7fffffff)
        return fail(IC_ERR_CORRUPT, message, message_size, "BMP size %lldx%lld", (long long)width, (long long)height);
    uint64_t declared = (uint64_t)width * (uint64_t)height;
    if (options && options->max_pixels && declared > options->max_pixels) {
        out->width = (int32_t)width;
        out->height = (int32_t)height;
        return fail(IC_ERR_TOO_LARGE, message, message_size, "the header declares %lldx%lld = %llu pixels, above the limit of %llu",
                       (long long)width, (long long)height, (unsigned long long)declared, (unsigned long long)options->max_pixels);
    }
    // BI_RGB 0, BI_RLE8 1, BI_RLE4 2, BI_BITFIELDS 3, BI_JPEG 4, BI_PNG 5, BI_ALPHABITFIELDS 6.
    if (compression == 1 || compression == 2)
        return fail(IC_ERR_UNSUPPORTED, message, message_size, "RLE-compressed BMP (save it uncompressed)");
    if (compression == 4 || compression == 5)
        return fail(IC_ERR_UNSUPPORTED, message, message_size, "a BMP wrapping %s data", compression == 4 ? "JPEG" : "PNG");
    if (compression != 0 && compression != 3 && compression != 6)
        return fail(IC_ERR_UNSUPPORTED, message, message_size, "BMP compression %u", compression);
    int palette = bits == 1 || bits == 4 || bits == 8;
    if (!palette && bits != 16 && bits != 24 && bits != 32)
        return fail(IC_ERR_UNSUPPORTED, message, message_size, "%u bits per BMP pixel", bits);
    if (compression != 0 && bits != 16 && bits != 32)
        return fail(IC_ERR_CORRUPT, message, message_size, "BI_BITFIELDS with %u bits per pixel", bits);

    // Bit fields: defaults 5-5-5 (16 bits) and 8-8-8 (32 bits); else after a 40-byte header or inside a longer one.
    bmp_channel red, green, blue;
    uint32_t masks[3] = {0x7c00, 0x03e0, 0x001f};
    if (bits == 32) { masks[0] = 0xff0000; masks[1] = 0xff00; masks[2] = 0xff; }
    size_t table_start = 14 + (size_t)header_size;
    if (compression == 3 || compression == 6) {
        size_t at = header_size == 40 ? table_start : 14 + 40;
        size_t count = compression == 6 ? 4 : 3;
        if (at + 4 * count > size) return fail(IC_ERR_TRUNCATED, message, message_size, "the file ends inside its bit-field masks");
        for (int i = 0; i < 3; i++) masks[i] = le32(data + at + 4 * i);
        if (header_size == 40) table_start += 4 * count;
        uint32_t limit = bits == 16 ? 0xffffu : 0xffffffffu;
        if ((masks[0] | masks[1] | masks[2]) > limit || (masks[0] & masks[1]) || (masks[0] & masks[2]) || (masks[1] & masks[2]))
            return fail(IC_ERR_CORRUPT, message, message_size, "BMP bit-field masks %08x %08x %08x overlap or exceed %u bits",
                           masks[0], masks[1], masks[2], bits);
    }
    if (!channel_from_mask(masks[0], &red) || !channel_from_mask(masks[1], &green) || !channel_from_mask(masks[2], &blue))
        return fail(IC_ERR_CORRUPT, message, message_size, "BMP bit-field masks %08x %08x %08x are not contiguous", masks[0], masks[1], masks[2]);

    // The colour table: 4 bytes per entry (3 with the OS/2 header); colours_used 0 means all 2^bits.
    uint8_t table[256][3];
    uint32_t colours = 0;
    int grey = 1;
    if (palette) {
        uint32_t entry_size = header_size == 12 ? 3 : 4;
        colours = colours_used == 0 || colours_used > (1u << bits) ? 1u << bits : colours_used;
        if (table_start + (uint64_t)colours * entry_size > pixel_offset || pixel_offset > size) {
            // Some writers declare 2^bits colours but store fewer: keep the ones before the pixels.
            uint64_t room = pixel_offset > table_start && pixel_offset <= size ? (pixel_offset - table_start) / entry_size : 0;
            if (room == 0) return fail(IC_ERR_TRUNCATED, message, message_size, "no room for the colour table before the pixels");
            colours = (uint32_t)room;
        }
        for (uint32_t i = 0; i < colours; i++) {
            const uint8_t *entry = data + table_start + (size_t)i * entry_size;
            table[i][0] = entry[2];  // stored blue, green, red
            table[i][1] = entry[1];
            table[i][2] = entry[0];
            if (entry[0] != entry[1] || entry[1] != entry[2]) grey = 0;
        }
    }

    uint64_t stride = ((uint64_t)width * bits + 31) / 32 * 4;
    if (pixel_offset > size || stride * (uint64_t)height > size - pixel_offset)
        return fail(IC_ERR_TRUNCATED, message, message_size, "the pixels need %llu bytes from offset %u, the file has %zu",
                       (unsigned long long)(stride * (uint64_t)height), pixel_offset, size);
    int channels = palette && grey ? 1 : 3;
    uint8_t *pixels = malloc((size_t)declared * (size_t)channels);
    if (!pixels) return fail(IC_ERR_NO_MEMORY, message, message_size, "cannot allocate %llu pixels", (unsigned long long)declared);
    for (int64_t y = 0; y < height; y++) {
        const uint8_t *row = data + pixel_offset + (size_t)stride * (size_t)(top_down ? y : height - 1 - y);
        uint8_t *target = pixels + (size_t)y * (size_t)width * (size_t)channels;
        for (int64_t x = 0; x < width; x++) {
            uint8_t *pixel = target + (size_t)x * (size_t)channels;
            if (palette) {
                uint32_t index = bits == 8 ? row[x] : bits == 4 ? (row[x / 2] >> (x % 2 ? 0 : 4)) & 15 : (row[x / 8] >> (7 - x % 8)) & 1;
                if (index >= colours) {
                    free(pixels);
                    return fail(IC_ERR_CORRUPT, message, message_size, "palette index %u at (%lld, %lld) beyond the %u colours",
                                   index, (long long)x, (long long)y, colours);
                }
                if (channels == 1) pixel[0] = table[index][0];
                else memcpy(pixel, table[index], 3);
            } else if (bits == 24) {
                const uint8_t *source = row + 3 * x;
                pixel[0] = source[2]; pixel[1] = source[1]; pixel[2] = source[0];
            } else {
                uint32_t value = bits == 16 ? le16(row + 2 * x) : le32(row + 4 * x);
                pixel[0] = channel_value(value, &red);
                pixel[1] = channel_value(value, &green);
                pixel[2] = channel_value(value, &blue);
            }
        }
    }
    out->width = (int32_t)width;
    out->height = (int32_t)height;
    out->channels = channels;
    out->bit_depth = 8;
    out->pixels = pixels;
    return IC_OK;
}
