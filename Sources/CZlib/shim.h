// zlib (Debian: zlib1g-dev), for the DEFLATE entries of wheel archives.
#include <zlib.h>
