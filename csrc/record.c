/*
 * record.c: the DER form of one API key record (ApiKeyRecord, see apikey.h).
 * Written and read by hand, as the bags that hold it are (safebags.c): a record is 62 or 79
 * bytes (more with scopes) and a keystore may hold 100,000. The reader takes untrusted bytes
 * (it is fuzzed): strict DER, and every step checked against the end of the input.
 */
#include "apikey.h"

#include <openssl/crypto.h>
#include <string.h>

#define RECORD_VERSION 1   /* a key with full access, never rotated: as every version wrote */
#define RECORD_VERSION_2 2 /* a key with scopes or rotated: older versions refuse it */
#define GENTIME_LEN 15     /* YYYYMMDDHHMMSSZ */
#define TAG_SCOPES 0xa0    /* [0] IMPLICIT SEQUENCE OF UTF8String */
#define TAG_GRACE_END 0x81 /* [1] IMPLICIT GeneralizedTime */

/* The bytes a scope name may hold: ASCII letters, digits and ":._-". */
static int scope_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' ||
           c == '.' || c == '_' || c == '-';
}

int record_scopes_valid(const unsigned char *s, size_t n)
{
    const unsigned char *p = s, *end = s + n;
    size_t count = 0;

    if (s == NULL || n == 0)
        return -1;
    while (p != end) {
        size_t len;
        /* Each a UTF8String of 1 to AK_SCOPE_MAX bytes: a short-form length, as DER wants. */
        if (end - p < 2 || p[0] != DER_UTF8_STRING || p[1] == 0 || p[1] > AK_SCOPE_MAX ||
            (size_t)(end - p - 2) < p[1] || ++count > AK_SCOPES_MAX)
            return -1;
        len = p[1];
        for (size_t i = 0; i < len; i++)
            if (!scope_char(p[2 + i]))
                return -1;
        /* No two alike. */
        for (const unsigned char *q = s; q != p; q += 2 + q[1])
            if (q[1] == len && memcmp(q + 2, p + 2, len) == 0)
                return -1;
        p += 2 + len;
    }
    return 0;
}

int record_has_scope(const ak_record *r, const char *name, size_t len)
{
    const unsigned char *p = r->scopes, *end = r->scopes + r->scopes_len;

    if (p == NULL)
        return 1;
    for (; p < end; p += 2 + p[1])
        if (p[1] == len && memcmp(p + 2, name, len) == 0)
            return 1;
    return 0;
}

/* A hint is AK_HINT_LEN bytes of printable text: valid UTF-8 without control characters. */
static int hint_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;

    if (n != AK_HINT_LEN)
        return 0;
    while (i < n) {
        unsigned long cp;
        size_t k = utf8_char(s + i, n - i, &cp);
        if (k == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return 0;
        i += k;
    }
    return 1;
}

/* Formats t as GeneralizedTime, and only if it reads back as t: what we write, we can read. */
static int format_time(int64_t t, char buf[32])
{
    int64_t back;

    time_format_gentime(t, buf, 32);
    if (strlen(buf) != GENTIME_LEN || time_parse_gentime(buf, GENTIME_LEN, &back) != 0 || back != t)
        return -1;
    return 0;
}

static unsigned char *put_tlv(unsigned char *p, unsigned tag, const void *val, size_t len)
{
    *p++ = (unsigned char)tag;
    *p++ = (unsigned char)len; /* every field and the whole record are under 128 bytes */
    memcpy(p, val, len);
    return p + len;
}

int record_encode(const ak_record *r, unsigned char **der, size_t *len)
{
    char created[32], expires[32], grace_end[32];
    int has_expires = r->expires != AK_NO_EXPIRY;
    int v2 = r->scopes != NULL || r->rotated;
    unsigned char version = v2 ? RECORD_VERSION_2 : RECORD_VERSION;
    size_t body, hint_len = strnlen(r->hint, sizeof r->hint);
    unsigned char *buf, *p;

    *der = NULL;
    *len = 0;
    if (!hint_valid((const unsigned char *)r->hint, hint_len) ||
        format_time(r->created, created) != 0 ||
        (has_expires && format_time(r->expires, expires) != 0) ||
        (r->scopes != NULL && record_scopes_valid(r->scopes, r->scopes_len) != 0) ||
        (r->rotated && format_time(r->grace_end, grace_end) != 0))
        return -1;
    body = (2 + 1) + (2 + AK_HASH_LEN) + (2 + AK_HINT_LEN) + (2 + GENTIME_LEN) +
           (has_expires ? 2 + GENTIME_LEN : 0) +
           (r->scopes != NULL ? der_tlv_size(r->scopes_len) : 0) +
           (r->rotated ? 2 + GENTIME_LEN : 0);
    buf = OPENSSL_malloc(der_tlv_size(body));
    if (buf == NULL)
        return -1;
    p = der_put_header(buf, DER_SEQUENCE, body);
    p = put_tlv(p, DER_INTEGER, &version, 1);
    p = put_tlv(p, DER_OCTET_STRING, r->hash, AK_HASH_LEN);
    p = put_tlv(p, DER_UTF8_STRING, r->hint, AK_HINT_LEN);
    p = put_tlv(p, DER_GENERALIZED_TIME, created, GENTIME_LEN);
    if (has_expires)
        p = put_tlv(p, DER_GENERALIZED_TIME, expires, GENTIME_LEN);
    if (r->scopes != NULL) {
        p = der_put_header(p, TAG_SCOPES, r->scopes_len);
        memcpy(p, r->scopes, r->scopes_len);
        p += r->scopes_len;
    }
    if (r->rotated)
        p = put_tlv(p, TAG_GRACE_END, grace_end, GENTIME_LEN);
    *der = buf;
    *len = (size_t)(p - buf);
    return 0;
}

int record_decode(const unsigned char *der, size_t len, ak_record *r)
{
    const unsigned char *p = der, *end, *val;
    size_t vlen;
    unsigned tag;
    int version;
    ak_record rec;

    if (der == NULL || der_expect(&p, der + len, DER_SEQUENCE, &val, &vlen) != 0 || p != der + len)
        return -1;
    p = val;
    end = val + vlen;
    memset(&rec, 0, sizeof rec);

    if (der_expect(&p, end, DER_INTEGER, &val, &vlen) != 0 || vlen != 1 ||
        (val[0] != RECORD_VERSION && val[0] != RECORD_VERSION_2))
        return -1;
    version = val[0];
    if (der_expect(&p, end, DER_OCTET_STRING, &val, &vlen) != 0 || vlen != AK_HASH_LEN)
        return -1;
    memcpy(rec.hash, val, AK_HASH_LEN);
    if (der_expect(&p, end, DER_UTF8_STRING, &val, &vlen) != 0 || !hint_valid(val, vlen))
        return -1;
    memcpy(rec.hint, val, AK_HINT_LEN);
    rec.hint[AK_HINT_LEN] = '\0';
    if (der_expect(&p, end, DER_GENERALIZED_TIME, &val, &vlen) != 0 || vlen != GENTIME_LEN ||
        time_parse_gentime((const char *)val, vlen, &rec.created) != 0)
        return -1;
    rec.expires = AK_NO_EXPIRY;
    if (p != end && *p == DER_GENERALIZED_TIME) {
        if (der_expect(&p, end, DER_GENERALIZED_TIME, &val, &vlen) != 0 || vlen != GENTIME_LEN ||
            time_parse_gentime((const char *)val, vlen, &rec.expires) != 0)
            return -1;
    }
    /* Version 2's fields; in a version 1 record, what follows is skipped below. */
    if (version == RECORD_VERSION_2 && p != end && *p == TAG_SCOPES) {
        if (der_expect(&p, end, TAG_SCOPES, &val, &vlen) != 0 ||
            record_scopes_valid(val, vlen) != 0)
            return -1;
        rec.scopes = val;
        rec.scopes_len = vlen;
    }
    if (version == RECORD_VERSION_2 && p != end && *p == TAG_GRACE_END) {
        if (der_expect(&p, end, TAG_GRACE_END, &val, &vlen) != 0 || vlen != GENTIME_LEN ||
            time_parse_gentime((const char *)val, vlen, &rec.grace_end) != 0)
            return -1;
        rec.rotated = 1;
    }
    /* Fields a later version appended: skipped, but they must still be well-formed. */
    while (p != end) {
        if (der_next(&p, end, 1, &tag, &val, &vlen) != 0)
            return -1;
    }
    *r = rec;
    return 0;
}
