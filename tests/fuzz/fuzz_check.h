/* What every fuzz target shares: libFuzzer's entry point, and a check that
 * holds in every build type (a fuzzer that stops checking under NDEBUG
 * finds nothing). */
#ifndef CB_FUZZ_CHECK_H
#define CB_FUZZ_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond))                                                                                                   \
            abort();                                                                                                   \
    } while (0)

#endif
