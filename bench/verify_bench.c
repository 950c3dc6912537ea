/*
 * verify_bench.c: checks per second through the C core, one thread.
 *
 *   verify_bench KEYSTORE KEYS_FILE [SECONDS]   load time, then verify/s for valid and
 *                                               unknown keys (SECONDS each, default 2)
 *   verify_bench --load KEYSTORE                load once and exit (for peak memory)
 *
 * Valid keys are taken from KEYS_FILE (one a line, as gen_keystore writes) and laid out in a
 * shuffled order, so that entries are reached in no order (as a server's requests do) while
 * the keys themselves are read one after another (as a request just received is in cache).
 * Unknown keys are fresh random UUIDs, as many as the valid ones up to 4096. Every answer is
 * checked; a wrong one fails the run.
 *
 * Rates are per second of this thread's CPU time, the median of 5 slices, so that other
 * processes on a busy machine count as little as they can.
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init and co., as csrc/keystore.c uses them */
#include "apikey.h"
#include "bench.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>

#define NUNKNOWN 4096

static int open_store(ak_keystore *ks, const char *path, double *ms)
{
    ak_err e;
    double t0 = now_s();
    if (keystore_open(ks, path, "", 0, 2048, 10000, &e) != 0) {
        fprintf(stderr, "verify_bench: %s\n", e.msg);
        return -1;
    }
    *ms = (now_s() - t0) * 1e3;
    return 0;
}

static char (*read_keys(const char *path, size_t *n))[AK_KEY_LEN + 1]
{
    char line[128];
    size_t cap = 1024;
    char(*v)[AK_KEY_LEN + 1] = malloc(cap * sizeof *v);
    FILE *f = fopen(path, "r");
    *n = 0;
    if (f == NULL || v == NULL) {
        perror(path);
        exit(1);
    }
    while (fgets(line, sizeof line, f) != NULL) {
        if (strlen(line) < AK_KEY_LEN)
            continue;
        if (*n == cap && (v = realloc(v, (cap *= 2) * sizeof *v)) == NULL)
            exit(1);
        memcpy(v[*n], line, AK_KEY_LEN);
        v[(*n)++][AK_KEY_LEN] = '\0';
    }
    fclose(f);
    return v;
}

#define SLICES 5
#define BATCH 4096

/* What is measured: BATCH calls of one operation over keys, cycling from *i. */
typedef struct {
    char (*keys)[AK_KEY_LEN + 1];
    size_t n, i;
    ak_keystore *ks; /* verify */
    ak_verdict want;
    EVP_MD *md; /* SHA-256 */
    EVP_MD_CTX *ctx;
    unsigned char sum;
} work;

static void verify_batch(work *w)
{
    const ak_entry *en;
    int64_t t = (int64_t)time(NULL);
    for (int k = 0; k < BATCH; k++) {
        if (keystore_verify(w->ks, w->keys[w->i], AK_KEY_LEN, t, &en) != w->want) {
            fprintf(stderr, "verify_bench: wrong verdict for %s\n", w->keys[w->i]);
            exit(1);
        }
        if (++w->i == w->n)
            w->i = 0;
    }
}

/* SHA-256 as a careful program computes it (the digest fetched once, one context reused): the
 * work no check can avoid, and so the yardstick of every check's rate. */
static void sha256_batch(work *w)
{
    unsigned char out[AK_HASH_LEN];
    unsigned int len;
    for (int k = 0; k < BATCH; k++) {
        if (EVP_DigestInit_ex2(w->ctx, w->md, NULL) != 1 ||
            EVP_DigestUpdate(w->ctx, w->keys[w->i], AK_KEY_LEN) != 1 ||
            EVP_DigestFinal_ex(w->ctx, out, &len) != 1)
            exit(1);
        w->sum ^= out[0]; /* keeps the digests from being optimised away */
        if (++w->i == w->n)
            w->i = 0;
    }
}

/* SHA-256 through OpenSSL's low-level functions, as the core hashes a key on every check. */
static void sha256_low_batch(work *w)
{
    unsigned char out[AK_HASH_LEN];
    for (int k = 0; k < BATCH; k++) {
        SHA256_CTX c;
        if (SHA256_Init(&c) != 1 || SHA256_Update(&c, w->keys[w->i], AK_KEY_LEN) != 1 ||
            SHA256_Final(out, &c) != 1)
            exit(1);
        w->sum ^= out[0];
        if (++w->i == w->n)
            w->i = 0;
    }
}

/* Runs batch in SLICES slices of secs / SLICES CPU seconds each; returns the median slice's
 * operations per CPU second. */
static double rate(void (*batch)(work *), work *w, double secs)
{
    double rates[SLICES];
    for (int s = 0; s < SLICES; s++) {
        unsigned long done = 0;
        double t0 = cpu_s(), t1;
        do {
            batch(w);
            done += BATCH;
            t1 = cpu_s();
        } while (t1 - t0 < secs / SLICES);
        rates[s] = (double)done / (t1 - t0);
    }
    qsort(rates, SLICES, sizeof rates[0], cmp_double);
    return rates[SLICES / 2];
}

/* A line of /proc/self/status in KiB ("VmRSS", "VmHWM"), or -1. */
static long status_kb(const char *field)
{
    char line[256];
    long kb = -1;
    size_t n = strlen(field);
    FILE *f = fopen("/proc/self/status", "r");

    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            kb = strtol(line + n + 1, NULL, 10);
            break;
        }
    }
    if (f != NULL)
        fclose(f);
    return kb;
}

int main(int argc, char **argv)
{
    ak_keystore ks;
    double ms, secs, valid, unknown, sha, sha_low;
    size_t n, nfresh;
    char(*keys)[AK_KEY_LEN + 1];
    char(*shuffled)[AK_KEY_LEN + 1];
    char(*fresh)[AK_KEY_LEN + 1];

    if (argc == 3 && strcmp(argv[1], "--load") == 0) {
        long before = status_kb("VmRSS");
        if (open_store(&ks, argv[2], &ms) != 0)
            return 1;
        /* resident memory before the load, after it (what the keys keep) and at the peak */
        printf("keys=%zu load_ms=%.1f rss_before_kb=%ld rss_after_kb=%ld rss_peak_kb=%ld\n",
               ks.entries.n, ms, before, status_kb("VmRSS"), status_kb("VmHWM"));
        keystore_close(&ks);
        return 0;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: verify_bench KEYSTORE KEYS_FILE [SECONDS]\n"
                        "       verify_bench --load KEYSTORE\n");
        return 2;
    }
    secs = argc > 3 ? atof(argv[3]) : 2.0;
    keys = read_keys(argv[2], &n);
    if (n == 0 || open_store(&ks, argv[1], &ms) != 0)
        return 1;

    nfresh = n < NUNKNOWN ? n : NUNKNOWN;
    shuffled = malloc(n * sizeof *shuffled);
    fresh = malloc(nfresh * sizeof *fresh);
    if (shuffled == NULL || fresh == NULL)
        return 1;
    srand(1);
    memcpy(shuffled, keys, n * sizeof *shuffled);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1);
        char t[AK_KEY_LEN + 1];
        memcpy(t, shuffled[i], sizeof t);
        memcpy(shuffled[i], shuffled[j], sizeof t);
        memcpy(shuffled[j], t, sizeof t);
    }
    free(keys);
    for (size_t i = 0; i < nfresh; i++) {
        uuid_t raw;
        uuid_generate_random(raw);
        uuid_unparse_lower(raw, fresh[i]);
    }

    {
        work w = {.keys = shuffled, .n = n, .ks = &ks, .want = AK_VALID};
        w.md = EVP_MD_fetch(NULL, "SHA256", NULL);
        w.ctx = EVP_MD_CTX_new();
        if (w.md == NULL || w.ctx == NULL)
            return 1;
        sha = rate(sha256_batch, &w, secs);
        sha_low = rate(sha256_low_batch, &w, secs);
        valid = rate(verify_batch, &w, secs);
        w.keys = fresh, w.n = nfresh, w.i = 0, w.want = AK_UNKNOWN;
        unknown = rate(verify_batch, &w, secs);
        EVP_MD_CTX_free(w.ctx);
        EVP_MD_free(w.md);
    }
    printf("keys=%zu load_ms=%.1f valid_per_s=%.0f unknown_per_s=%.0f sha256_per_s=%.0f "
           "sha256_low_per_s=%.0f\n",
           ks.entries.n, ms, valid, unknown, sha, sha_low);
    keystore_close(&ks);
    free(shuffled);
    free(fresh);
    return 0;
}
