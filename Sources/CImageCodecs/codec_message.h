#pragma once
// The one way the codecs fill their error message: printf-style, truncated to the buffer.
#include <stdarg.h>
#include <stdio.h>

static inline int fail(int status, char *message, size_t message_size, const char *format, ...) {
    if (message && message_size > 0) {
        va_list arguments;
        va_start(arguments, format);
        vsnprintf(message, message_size, format, arguments);
        va_end(arguments);
    }
    return status;
}
