#include "core/id.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/time.h>
#include <unistd.h>

static atomic_uint id_counter;
static atomic_bool id_seeded;

void id_new(char out[ID_LEN + 1])
{
    struct timeval tv;
    if (!atomic_exchange(&id_seeded, true)) {
        unsigned seed = 0;
        if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
            seed = (unsigned)getpid();
        atomic_store(&id_counter, seed);
    }
    gettimeofday(&tv, NULL);
    uint64_t us = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    unsigned c = atomic_fetch_add(&id_counter, 1) & 0xfff;
    snprintf(out, ID_LEN + 1, "%013llX%03X", (unsigned long long)(us & 0xfffffffffffffULL), c);
}

bool id_valid(const char *s, size_t n)
{
    if (n != ID_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}
