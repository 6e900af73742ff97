// libFuzzer entry point: the direct PNG path (png_direct.c) against libpng on the same bytes.
// Not a SwiftPM target (a fuzzer build has no main and needs -fsanitize=fuzzer). Chunk CRCs are
// repaired before decoding so that mutations reach the image data and the filters; the fuzzer
// stops when the direct path decodes a file libpng refuses, or decodes it differently. With
// AddressSanitizer. From the repository root:
//
//   S=Sources/CImageCodecs
//   clang -g -O1 -fsanitize=fuzzer,address -I$S/include -I$S Tests/ImagingFuzz/png_direct_fuzz.c \
//       $S/image_codecs.c $S/png_direct.c -lpng -ljpeg -ldeflate -o .build/png-direct-fuzz
//   mkdir -p .build/png-corpus && cp Tests/Fixtures/images/*.png .build/png-corpus/
//   .build/png-direct-fuzz .build/png-corpus -max_len=100000 -max_total_time=300
#include "image_codecs.h"
#include <libdeflate.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
static uint32_t be(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 8 || size > (1 << 20)) return 0;
    uint8_t *copy = malloc(size);
    memcpy(copy, data, size);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(copy, sig, 8);
    size_t pos = 8;
    while (size - pos >= 12) {
        uint32_t len = be(copy + pos);
        if (len > size - pos - 12) break;
        uint32_t crc = libdeflate_crc32(0, copy + pos + 4, (size_t)len + 4);
        uint8_t *c = copy + pos + 8 + len;
        c[0] = crc >> 24; c[1] = crc >> 16; c[2] = crc >> 8; c[3] = crc;
        pos += 12 + (size_t)len;
    }
    ic_decode_options direct = {.max_pixels = 1 << 20, .png_decoder = IC_PNG_DIRECT};
    ic_decode_options reference = {.max_pixels = 1 << 20, .png_decoder = IC_PNG_LIBPNG};
    ic_image a, b;
    char message[256];
    int sa = ic_decode_png(copy, size, &direct, &a, message, sizeof message);
    if (sa == IC_OK) {
        int sb = ic_decode_png(copy, size, &reference, &b, message, sizeof message);
        if (sb != IC_OK) abort();  // the direct path accepted what libpng refuses
        if (a.width != b.width || a.height != b.height || a.channels != b.channels || a.orientation != b.orientation ||
            memcmp(a.pixels, b.pixels, (size_t)a.width * a.height * a.channels) != 0) abort();
        ic_image_free(&b);
        ic_image_free(&a);
    }
    free(copy);
    return 0;
}
