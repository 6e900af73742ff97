// libFuzzer entry point: the BMP reader (bmp_decode.c) and the TIFF path through libtiff
// (tiff_decode.c) on arbitrary bytes. Either returns a status and, on IC_OK, an image whose
// size matches its buffer (AddressSanitizer checks every pixel is readable), or an error with a
// message; it never crashes, reads out of bounds, leaks, or writes to stderr (libtiff's
// handlers). The first bytes are forced to each signature so mutations reach the headers.
// Not a SwiftPM target (a fuzzer build has no main and needs -fsanitize=fuzzer). From the
// repository root:
//
//   S=Sources/CImageCodecs
//   clang -g -O1 -fsanitize=fuzzer,address -I$S/include -I$S Tests/ImagingFuzz/bmp_tiff_fuzz.c \
//       $S/bmp_decode.c $S/tiff_decode.c $S/image_codecs.c $S/png_direct.c -ltiff -lpng -ljpeg -ldeflate \
//       -o .build/bmp-tiff-fuzz
//   mkdir -p .build/bmp-tiff-corpus && cp Tests/ImagingFuzz/seeds/* .build/bmp-tiff-corpus/
//   .build/bmp-tiff-fuzz .build/bmp-tiff-corpus -max_len=20000 -max_total_time=300 2>&1 | tail
#include "image_codecs.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(int status, ic_image *image, const char *message) {
    if (status == IC_OK) {
        if (image->width <= 0 || image->height <= 0 || (image->channels != 1 && image->channels != 3) || image->bit_depth != 8 || !image->pixels)
            abort();
        volatile uint8_t sum = 0;
        const uint8_t *pixels = image->pixels;
        size_t count = (size_t)image->width * (size_t)image->height * (size_t)image->channels;
        for (size_t i = 0; i < count; i++) sum += pixels[i];
        (void)sum;
        ic_image_free(image);
    } else {
        if (status < IC_ERR_EMPTY || status > IC_ERR_NO_MEMORY || image->pixels || message[0] == 0) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4 || size > (1 << 20)) return 0;
    uint8_t *copy = malloc(size);
    ic_decode_options options = {.max_pixels = 1 << 22};
    ic_image image;
    char message[256];
    memcpy(copy, data, size);
    copy[0] = 'B'; copy[1] = 'M';
    message[0] = 0;
    check(ic_decode_bmp(copy, size, &options, &image, message, sizeof message), &image, message);
    memcpy(copy, data, size);
    int big_endian = data[0] & 1;
    memcpy(copy, big_endian ? "MM\0*" : "II*\0", 4);
    message[0] = 0;
    check(ic_decode_tiff(copy, size, &options, &image, message, sizeof message), &image, message);
    free(copy);
    return 0;
}
