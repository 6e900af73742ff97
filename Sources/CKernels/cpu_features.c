#include "cpu_features.h"

#include <stdlib.h>
#include <string.h>

// The kernels are compiled per function for AVX-512 (target attributes), so the package
// still builds for, and runs on, any x86-64; this check picks them only where they run.
static int detect(void) {
    const char *choice = getenv("RSTPM_KERNELS");
    if (choice && strcmp(choice, "generic") == 0) return 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

int rstpm_avx512_enabled(void) {
    static int state = -1;  // racing first calls compute the same answer
    if (state < 0) state = detect();
    return state;
}
