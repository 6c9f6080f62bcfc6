/* Shared by the fuzz targets: FUZZ_CHECK states an invariant beyond "no
 * crash, no sanitizer report"; a broken one aborts, which libFuzzer keeps
 * as a crash input. */
#ifndef SLUICE_FUZZ_H
#define SLUICE_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond) do { \
    if (!(cond)) { \
        fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
        abort(); \
    } \
} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
