/*
 * fuzz_record.c: record_decode on arbitrary bytes, and record_encode of what decodes.
 *
 * Checks, besides memory safety and leaks:
 * - a decoded record has a NUL-terminated hint and times that format back (1970..9999), and
 *   scopes (version 2) that are a valid list lying inside the input, or none;
 * - what decodes encodes, decodes again to the same record, and encodes again to the same
 *   bytes (the encoding is canonical), which OpenSSL's own DER parser reads in full;
 * - a record built from the input's bytes (any hash, hint, times in range, scopes, rotated or
 *   not) survives encode then decode unchanged, and is written as version 1 exactly when it
 *   has neither scopes nor a rotation (what older versions read), else as version 2 (what they
 *   refuse).
 */
#include "apikey.h"

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HARNESS "fuzz_record"
#include "fuzz.h"

static void check_sane(const ak_record *r, const char *what)
{
    CHECK(memchr(r->hint, '\0', sizeof r->hint) != NULL, "%s: hint not terminated", what);
    CHECK(r->created >= 0 && r->created <= AK_TIME_MAX, "%s: created %lld", what,
          (long long)r->created);
    CHECK(r->expires == AK_NO_EXPIRY || (r->expires >= 0 && r->expires <= AK_TIME_MAX),
          "%s: expires %lld", what, (long long)r->expires);
    CHECK(r->rotated == 0 || r->rotated == 1, "%s: rotated %d", what, r->rotated);
    CHECK(!r->rotated || (r->grace_end >= 0 && r->grace_end <= AK_TIME_MAX), "%s: grace_end %lld",
          what, (long long)r->grace_end);
    CHECK(r->scopes == NULL ? r->scopes_len == 0
                            : record_scopes_valid(r->scopes, r->scopes_len) == 0,
          "%s: scopes not a valid list", what);
}

static void check_same(const ak_record *a, const ak_record *b, const char *what)
{
    CHECK(memcmp(a->hash, b->hash, AK_HASH_LEN) == 0, "%s: hash differs", what);
    CHECK(strcmp(a->hint, b->hint) == 0, "%s: hint '%s' became '%s'", what, a->hint, b->hint);
    CHECK(a->created == b->created, "%s: created %lld became %lld", what, (long long)a->created,
          (long long)b->created);
    CHECK(a->expires == b->expires, "%s: expires %lld became %lld", what, (long long)a->expires,
          (long long)b->expires);
    CHECK(a->rotated == b->rotated && (!a->rotated || a->grace_end == b->grace_end),
          "%s: rotation differs", what);
    CHECK((a->scopes == NULL) == (b->scopes == NULL) && a->scopes_len == b->scopes_len &&
              (a->scopes == NULL || memcmp(a->scopes, b->scopes, a->scopes_len) == 0),
          "%s: scopes differ", what);
}

/* Encodes r, decodes it back, checks it is the same record; returns the encoding. */
static unsigned char *round_trip(const ak_record *r, size_t *len, const char *what)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    ak_record back;
    ASN1_SEQUENCE_ANY *seq;

    CHECK(record_encode(r, &der, len) == 0, "%s: encode failed", what);
    CHECK(der != NULL && *len > 0, "%s: empty encoding", what);
    {
        /* The version after the SEQUENCE's header: 1 unless scopes or a rotation need 2. */
        size_t at = der[1] < 0x80 ? 2 : 2 + (der[1] & 0x7f);
        int want = (r->scopes != NULL || r->rotated) ? 2 : 1;
        CHECK(*len > at + 2 && der[at] == DER_INTEGER && der[at + 1] == 1 && der[at + 2] == want,
              "%s: not written as version %d", what, want);
    }
    memset(&back, 0xA5, sizeof back);
    CHECK(record_decode(der, *len, &back) == 0, "%s: its encoding does not decode", what);
    check_same(r, &back, what);

    p = der;
    seq = d2i_ASN1_SEQUENCE_ANY(NULL, &p, (long)*len);
    CHECK(seq != NULL && p == der + *len, "%s: encoding is not one DER SEQUENCE", what);
    sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
    return der;
}

static void check_decoded(const unsigned char *data, size_t size)
{
    ak_record r;
    unsigned char *der1, *der2;
    size_t len1 = 0, len2 = 0;

    memset(&r, 0x5A, sizeof r);
    if (record_decode(data, size, &r) != 0)
        return;
    check_sane(&r, "decoded");
    CHECK(r.scopes == NULL || (r.scopes >= data && r.scopes + r.scopes_len <= data + size),
          "decoded: scopes outside the input");
    der1 = round_trip(&r, &len1, "decoded");
    {
        ak_record again;
        CHECK(record_decode(der1, len1, &again) == 0, "re-decode");
        der2 = round_trip(&again, &len2, "re-encoded");
    }
    CHECK(len1 == len2 && memcmp(der1, der2, len1) == 0, "encoding not canonical");
    OPENSSL_free(der1);
    OPENSSL_free(der2);
}

/* A record made from 48 bytes and more: hash, 4 hint characters, two times mapped into range;
 * then, from byte 48 on, a rotation (its grace end) and up to AK_SCOPES_MAX scopes whose names
 * are made of the bytes that follow. */
static void check_built(const unsigned char *data, size_t size)
{
    static const char alphabet[] = "0123456789abcdef-";
    static const char scope_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789:._-";
    ak_record r;
    uint64_t c, x;
    unsigned char *der, scopes[AK_SCOPES_MAX * (2 + AK_SCOPE_MAX)];
    size_t len = 0;

    if (size < 48)
        return;
    memset(&r, 0, sizeof r);
    memcpy(r.hash, data, AK_HASH_LEN);
    for (int i = 0; i < AK_HINT_LEN; i++)
        r.hint[i] = alphabet[data[32 + i] % (sizeof alphabet - 1)];
    r.hint[AK_HINT_LEN] = '\0';
    memcpy(&c, data + 36, sizeof c);
    memcpy(&x, data + 40, sizeof x);
    r.created = (int64_t)(c % (uint64_t)(AK_TIME_MAX + 1));
    r.expires = (x & 1) ? AK_NO_EXPIRY : (int64_t)((x >> 1) % (uint64_t)(AK_TIME_MAX + 1));
    if (size > 48) {
        /* byte 48: bit 0 rotated, the rest the number of scopes; the grace end from the hash */
        size_t n = (size_t)(data[48] >> 1) % (AK_SCOPES_MAX + 1), at = 49, slen = 0;
        uint64_t g;
        memcpy(&g, data, sizeof g);
        r.rotated = data[48] & 1;
        r.grace_end = r.rotated ? (int64_t)(g % (uint64_t)(AK_TIME_MAX + 1)) : 0;
        for (size_t i = 0; i < n && at < size; i++) {
            /* a name: its index (so no two are alike), then up to 62 characters of the input */
            size_t k = 1 + (data[at++] % (AK_SCOPE_MAX - 1));
            unsigned char *name = scopes + slen + 2;
            size_t m = 0;
            name[m++] = (unsigned char)scope_chars[i];
            name[m++] = '.';
            while (m < k + 1 && m < AK_SCOPE_MAX && at < size)
                name[m++] = (unsigned char)scope_chars[data[at++] % (sizeof scope_chars - 1)];
            scopes[slen] = DER_UTF8_STRING;
            scopes[slen + 1] = (unsigned char)m;
            slen += 2 + m;
        }
        if (slen > 0) {
            r.scopes = scopes;
            r.scopes_len = slen;
        }
    }
    der = round_trip(&r, &len, "built");
    OPENSSL_free(der);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    check_decoded(data, size);
    check_built(data, size);
    return 0;
}
