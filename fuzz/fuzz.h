/*
 * fuzz.h: what every harness shares. A harness defines HARNESS (its name, "fuzz_p12") before
 * including this. CHECK aborts with one line that run.sh and replay.sh recognise, so that a
 * failed check is kept as a crashing input like any memory error.
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, HARNESS ": check failed: %s: ", #cond);                                \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
