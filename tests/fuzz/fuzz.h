/*
 * Fuzz targets share this interface: libFuzzer's entry point, plus a seed
 * corpus that the stand-alone driver (driver.c) mutates when the target is
 * built without libFuzzer (gcc, the sanitizer test build).
 */
#ifndef MW_TESTS_FUZZ_H
#define MW_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_seed {
    const char *data;
    size_t len;
};
extern const struct fuzz_seed fuzz_seeds[];
extern const size_t fuzz_nseeds;

#define SEED(s) { s, sizeof(s) - 1 }

#endif
