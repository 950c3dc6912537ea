/*
 * safebags_ab.c: the SafeBag list read and written by hand (csrc/safebags.c) against OpenSSL's
 * generic path (its ASN.1 templates: PKCS12_unpack_p7encdata, d2i of PKCS12_SAFEBAGS,
 * PKCS12_get_friendlyname; PKCS12_SAFEBAG_create_secret, PKCS12_pack_p7encdata), on the same
 * keystores, in one run, so that each pair is compared as a ratio on the same machine state.
 *
 *   safebags_ab ROUNDS KEYSTORE...      keystores written by gen_keystore (empty password)
 *
 * Each measurement runs in a child process of its own, the two ways alternating round after
 * round:
 *   load  the whole p12_load from the file's bytes to the entries (MAC, decryption, bags):
 *         milliseconds, and the child's peak resident memory (what a user of the module sees);
 *   read  only the list of bags, from the decrypted SafeContents to the entries: milliseconds,
 *         and the peak of OpenSSL's heap during the read above what it held before, in bytes
 *         (the entries themselves, the same both ways, are not on that heap);
 *   write only the list of bags, from the entries to the encrypted content: milliseconds.
 * Prints one line per measurement (key=value), then the medians and the median of the
 * per-round ratios (generic / hand).
 */
#include "apikey.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { HAND, GENERIC };
enum { LOAD, READ, WRITE, NSCOPES };
static const char *const way_names[] = {"hand", "generic"};
static const char *const scope_names[] = {"load", "read", "write"};

#define MAX_ROUNDS 64
#define WRITE_ITER 2048 /* as gen_keystore writes */

static void die(const char *what)
{
    fprintf(stderr, "safebags_ab: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- OpenSSL's heap, counted (read scope only: set before OpenSSL allocates anything) ---- */

static size_t heap_now, heap_peak;

typedef union {
    size_t n;
    max_align_t align;
} heap_hdr;

static void *count_malloc(size_t n, const char *file, int line)
{
    heap_hdr *h = malloc(sizeof *h + n);
    (void)file, (void)line;
    if (h == NULL)
        return NULL;
    h->n = n;
    heap_now += n;
    if (heap_now > heap_peak)
        heap_peak = heap_now;
    return h + 1;
}

static void count_free(void *p, const char *file, int line)
{
    heap_hdr *h = p != NULL ? (heap_hdr *)p - 1 : NULL;
    (void)file, (void)line;
    if (h != NULL) {
        heap_now -= h->n;
        free(h);
    }
}

static void *count_realloc(void *p, size_t n, const char *file, int line)
{
    heap_hdr *h = p != NULL ? (heap_hdr *)p - 1 : NULL;
    void *q;
    if (h == NULL)
        return count_malloc(n, file, line);
    q = count_malloc(n, file, line);
    if (q != NULL) {
        memcpy(q, p, h->n < n ? h->n : n);
        count_free(p, file, line);
    }
    return q;
}

/* ---- the file and its decrypted list --------------------------------------------------------- */

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) <= 0 ||
        fseek(f, 0, SEEK_SET) != 0 || (buf = malloc((size_t)n)) == NULL ||
        fread(buf, 1, (size_t)n, f) != (size_t)n)
        die("cannot read the keystore");
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* The one encrypted content of a gen_keystore file, and its plaintext (the SafeContents). */
static PKCS7 *our_content(const unsigned char *buf, size_t len)
{
    const unsigned char *p = buf;
    PKCS12 *p12 = d2i_PKCS12(NULL, &p, (long)len);
    STACK_OF(PKCS7) *cis = p12 != NULL ? PKCS12_unpack_authsafes(p12) : NULL;
    PKCS7 *ci;
    if (cis == NULL || sk_PKCS7_num(cis) != 1)
        die("not a keystore written by gen_keystore");
    ci = sk_PKCS7_pop(cis);
    sk_PKCS7_free(cis);
    PKCS12_free(p12);
    return ci;
}

static unsigned char *decrypt(PKCS7 *ci, size_t *len)
{
    const PKCS7_ENC_CONTENT *ec = ci->d.encrypted->enc_data;
    unsigned char *out = NULL;
    int n = 0;
    if (PKCS12_pbe_crypt_ex(ec->algorithm, "", 0, ec->enc_data->data, ec->enc_data->length, &out,
                            &n, 0, NULL, NULL) == NULL)
        die("cannot decrypt");
    *len = (size_t)n;
    return out;
}

/* ---- the generic way ------------------------------------------------------------------------- */

/* Our bags of a decoded list to entries; the others would be kept as they are (objects). */
static void generic_entries(const STACK_OF(PKCS12_SAFEBAG) *bags, const ASN1_OBJECT *record,
                            ak_entries *out)
{
    ak_err e;
    for (int i = 0; i < sk_PKCS12_SAFEBAG_num(bags); i++) {
        PKCS12_SAFEBAG *bag = sk_PKCS12_SAFEBAG_value(bags, i);
        const ASN1_TYPE *value;
        char *alias;
        ak_record r;
        if (PKCS12_SAFEBAG_get_nid(bag) != NID_secretBag ||
            OBJ_cmp(PKCS12_SAFEBAG_get0_bag_type(bag), record) != 0)
            continue;
        value = PKCS12_SAFEBAG_get0_bag_obj(bag);
        if (value == NULL || value->type != V_ASN1_OCTET_STRING ||
            record_decode(value->value.octet_string->data,
                          (size_t)value->value.octet_string->length, &r) != 0)
            die("generic: a record does not decode");
        alias = PKCS12_get_friendlyname(bag);
        if (alias == NULL || entries_push(out, alias, strlen(alias), &r, &e) != 0)
            die("generic: a bag has no alias");
        OPENSSL_free(alias);
    }
}

static void generic_read(const unsigned char *list, size_t len, const ASN1_OBJECT *record,
                         ak_entries *out)
{
    const unsigned char *p = list;
    STACK_OF(PKCS12_SAFEBAG) *bags = (STACK_OF(PKCS12_SAFEBAG) *)ASN1_item_d2i(
        NULL, &p, (long)len, ASN1_ITEM_rptr(PKCS12_SAFEBAGS));
    if (bags == NULL)
        die("generic: the list does not decode");
    generic_entries(bags, record, out);
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
}

/* What a loader through OpenSSL's PKCS#12 functions does: the same outer layers as p12_load
 * (PFX, MAC, AuthenticatedSafe), then PKCS12_unpack_p7encdata for the list. */
static void generic_load(const unsigned char *buf, size_t len, const ASN1_OBJECT *record,
                         ak_entries *out)
{
    const unsigned char *p = buf;
    PKCS12 *p12 = d2i_PKCS12(NULL, &p, (long)len);
    STACK_OF(PKCS7) *cis;
    if (p12 == NULL || !PKCS12_verify_mac(p12, "", 0) ||
        (cis = PKCS12_unpack_authsafes(p12)) == NULL)
        die("generic: the keystore does not load");
    PKCS12_free(p12);
    for (int i = 0; i < sk_PKCS7_num(cis); i++) {
        PKCS7 *ci = sk_PKCS7_value(cis, i);
        STACK_OF(PKCS12_SAFEBAG) *bags = PKCS7_type_is_encrypted(ci)
                                             ? PKCS12_unpack_p7encdata(ci, "", 0)
                                             : PKCS12_unpack_p7data(ci);
        if (bags == NULL)
            die("generic: a content does not open");
        generic_entries(bags, record, out);
        sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
    }
    sk_PKCS7_pop_free(cis, PKCS7_free);
}

/* The list through PKCS12_SAFEBAG_create_secret (which needs the OID registered) and
 * PKCS12_pack_p7encdata, as DESIGN.md's first prototype wrote it. */
static void generic_write(const ak_entries *in, int nid)
{
    STACK_OF(PKCS12_SAFEBAG) *bags = sk_PKCS12_SAFEBAG_new_null();
    PKCS7 *ci;
    for (size_t i = 0; bags != NULL && i < in->n; i++) {
        unsigned char *der;
        size_t len;
        PKCS12_SAFEBAG *bag;
        if (record_encode(&in->v[i].rec, &der, &len) != 0)
            die("generic: record_encode");
        bag = PKCS12_SAFEBAG_create_secret(nid, V_ASN1_OCTET_STRING, der, (int)len);
        OPENSSL_free(der);
        if (bag == NULL ||
            !PKCS12_add_friendlyname_utf8(bag, in->v[i].alias, (int)in->v[i].alias_len) ||
            !sk_PKCS12_SAFEBAG_push(bags, bag))
            die("generic: a bag");
    }
    ci = PKCS12_pack_p7encdata(NID_aes_256_cbc, "", 0, NULL, 16, WRITE_ITER, bags);
    if (ci == NULL)
        die("generic: PKCS12_pack_p7encdata");
    PKCS7_free(ci);
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
}

/* The hand way's list, encrypted as p12_save does it. */
static void hand_write(const ak_entries *in)
{
    ak_bytes b = {NULL, 0, 0};
    const unsigned char *list;
    size_t len;
    unsigned char salt[16], *ct = NULL;
    int ctlen = 0;
    X509_ALGOR *alg;
    ak_err e;
    if (safebags_write(in, NULL, &b, &list, &len, &e) != 0)
        die(e.msg);
    if (RAND_bytes(salt, sizeof salt) != 1 ||
        (alg = PKCS5_pbe2_set_iv_ex(EVP_aes_256_cbc(), WRITE_ITER, salt, sizeof salt, NULL,
                                    NID_hmacWithSHA256, NULL)) == NULL ||
        PKCS12_pbe_crypt_ex(alg, "", 0, list, (int)len, &ct, &ctlen, 1, NULL, NULL) == NULL)
        die("hand: encrypt");
    X509_ALGOR_free(alg);
    OPENSSL_free(ct);
    OPENSSL_clear_free(b.p, b.cap);
}

/* ---- one measurement, in a child ------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs the measurement reps times; prints "ms heap_kb n" on out (median ms). */
static void measure(int way, int scope, const char *path, int reps, FILE *out)
{
    ASN1_OBJECT *record;
    unsigned char *buf, *list = NULL;
    size_t len, listlen = 0, heap_before = 0;
    ak_entries es = {0}, base = {0};
    ak_foreign *f = NULL;
    ak_err e;
    double ms[MAX_ROUNDS];
    int nid = 0;

    if (scope == READ && !CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free))
        die("CRYPTO_set_mem_functions");
    buf = read_file(path, &len);
    record = OBJ_txt2obj(AK_RECORD_OID, 1);
    if (record == NULL)
        die("OBJ_txt2obj");
    if (scope != LOAD) {
        PKCS7 *ci = our_content(buf, len);
        list = decrypt(ci, &listlen);
        PKCS7_free(ci);
    }
    if (scope == WRITE) {
        if (p12_load(buf, len, "", 0, &base, &f, &e) != 0)
            die(e.msg);
        nid = OBJ_create(AK_RECORD_OID, AK_RECORD_OID_SN, AK_RECORD_OID_LN);
    }
    for (int r = 0; r < reps; r++) {
        double t0;
        size_t n = 0;
        int nbags;
        ak_bytes kept = {NULL, 0, 0};
        heap_before = heap_now;
        heap_peak = heap_now;
        t0 = now_ms();
        if (scope == LOAD && way == HAND && p12_load(buf, len, "", 0, &es, &f, &e) != 0)
            die(e.msg);
        if (scope == LOAD && way == GENERIC)
            generic_load(buf, len, record, &es);
        if (scope == READ && way == HAND &&
            safebags_read(list, listlen, 1, &es, &kept, &nbags, &e) < 0)
            die(e.msg);
        if (scope == READ && way == GENERIC)
            generic_read(list, listlen, record, &es);
        if (scope == WRITE && way == HAND)
            hand_write(&base);
        if (scope == WRITE && way == GENERIC)
            generic_write(&base, nid);
        ms[r] = now_ms() - t0;
        n = scope == WRITE ? base.n : es.n;
        if (r == reps - 1)
            fprintf(out, "%zu ", n);
        OPENSSL_clear_free(kept.p, kept.cap);
        entries_clear(&es);
    }
    qsort(ms, (size_t)reps, sizeof ms[0], cmp_double);
    fprintf(out, "%.3f %zu\n", ms[reps / 2], heap_peak - heap_before);
    entries_clear(&base);
    foreign_free(f);
    OPENSSL_free(list);
    ASN1_OBJECT_free(record);
    free(buf);
}

typedef struct {
    size_t keys;
    double ms;
    long heap, maxrss_kb;
} result;

static result run_child(int way, int scope, const char *path, int reps)
{
    int fds[2], status;
    struct rusage ru;
    result res = {0, 0, 0, 0};
    pid_t pid;
    FILE *in;

    if (pipe(fds) != 0)
        die("pipe");
    pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        FILE *out = fdopen(fds[1], "w");
        close(fds[0]);
        measure(way, scope, path, reps, out);
        fclose(out);
        _exit(0);
    }
    close(fds[1]);
    in = fdopen(fds[0], "r");
    if (fscanf(in, "%zu %lf %ld", &res.keys, &res.ms, &res.heap) != 3)
        die("a measurement failed");
    fclose(in);
    if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("a measurement failed");
    res.maxrss_kb = ru.ru_maxrss;
    return res;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 0;

    if (argc < 3 || rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "usage: safebags_ab ROUNDS KEYSTORE...   (ROUNDS 1 to %d)\n", MAX_ROUNDS);
        return 2;
    }
    for (int k = 2; k < argc; k++) {
        for (int scope = 0; scope < NSCOPES; scope++) {
            double ms[2][MAX_ROUNDS], rss[2][MAX_ROUNDS], heap[2][MAX_ROUNDS];
            double ratio_ms[MAX_ROUNDS], ratio_mem[MAX_ROUNDS];
            size_t keys = 0;
            for (int r = 0; r < rounds; r++) {
                /* Alternate which way goes first, so neither always runs on a cold machine. */
                for (int i = 0; i < 2; i++) {
                    int way = (r + i) % 2;
                    /* Small keystores load in a few ms: repeat inside the child, take the
                     * median, so that one timer tick or page fault does not decide. */
                    result res = run_child(way, scope, argv[k], scope == READ ? 9 : 3);
                    keys = res.keys;
                    ms[way][r] = res.ms;
                    rss[way][r] = (double)res.maxrss_kb;
                    heap[way][r] = (double)res.heap;
                    printf("keys=%zu scope=%s way=%s round=%d ms=%.3f maxrss_kb=%ld "
                           "heap_peak_bytes=%ld\n",
                           res.keys, scope_names[scope], way_names[way], r + 1, res.ms,
                           res.maxrss_kb, res.heap);
                }
                ratio_ms[r] = ms[GENERIC][r] / ms[HAND][r];
                ratio_mem[r] = scope == READ ? heap[GENERIC][r] / heap[HAND][r]
                                             : rss[GENERIC][r] / rss[HAND][r];
            }
            printf("summary keys=%zu scope=%s hand_ms=%.3f generic_ms=%.3f time_ratio=%.2f", keys,
                   scope_names[scope], median(ms[HAND], rounds), median(ms[GENERIC], rounds),
                   median(ratio_ms, rounds));
            if (scope == READ)
                printf(" hand_heap_bytes=%.0f generic_heap_bytes=%.0f heap_ratio=%.0f\n",
                       median(heap[HAND], rounds), median(heap[GENERIC], rounds),
                       median(ratio_mem, rounds));
            else
                printf(" hand_maxrss_kb=%.0f generic_maxrss_kb=%.0f maxrss_ratio=%.2f\n",
                       median(rss[HAND], rounds), median(rss[GENERIC], rounds),
                       median(ratio_mem, rounds));
            fflush(stdout);
        }
    }
    return 0;
}
