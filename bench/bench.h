/*
 * bench.h: the clocks and the median shared by the benchmark programs (verify_bench.c,
 * ab_check.c). Rates are per second of the calling thread's CPU time, so that other processes
 * on a busy machine count as little as they can.
 */
#ifndef BENCH_H
#define BENCH_H

#include <time.h>

static inline double bench_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wall-clock seconds, and this thread's CPU seconds. */
static inline double now_s(void)
{
    return bench_clock(CLOCK_MONOTONIC);
}

static inline double cpu_s(void)
{
    return bench_clock(CLOCK_THREAD_CPUTIME_ID);
}

/* For qsort of doubles, ascending. */
static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
