/*
 * record.c: the DER form of one API key record (ApiKeyRecord, see apikey.h).
 * Written and read by hand, as the bags that hold it are (safebags.c): a record is 62 or 79
 * bytes and a keystore may hold 100,000. The reader takes untrusted bytes (it is fuzzed):
 * strict DER, and every step checked against the end of the input.
 */
#include "apikey.h"

#include <openssl/crypto.h>
#include <string.h>

#define RECORD_VERSION 1
#define GENTIME_LEN 15 /* YYYYMMDDHHMMSSZ */

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
    static const unsigned char version = RECORD_VERSION;
    char created[32], expires[32];
    int has_expires = r->expires != AK_NO_EXPIRY;
    size_t body, hint_len = strnlen(r->hint, sizeof r->hint);
    unsigned char *buf, *p;

    *der = NULL;
    *len = 0;
    if (!hint_valid((const unsigned char *)r->hint, hint_len) ||
        format_time(r->created, created) != 0 ||
        (has_expires && format_time(r->expires, expires) != 0))
        return -1;
    body = (2 + 1) + (2 + AK_HASH_LEN) + (2 + AK_HINT_LEN) + (2 + GENTIME_LEN) +
           (has_expires ? 2 + GENTIME_LEN : 0);
    buf = OPENSSL_malloc(2 + body);
    if (buf == NULL)
        return -1;
    p = buf;
    *p++ = DER_SEQUENCE;
    *p++ = (unsigned char)body;
    p = put_tlv(p, DER_INTEGER, &version, 1);
    p = put_tlv(p, DER_OCTET_STRING, r->hash, AK_HASH_LEN);
    p = put_tlv(p, DER_UTF8_STRING, r->hint, AK_HINT_LEN);
    p = put_tlv(p, DER_GENERALIZED_TIME, created, GENTIME_LEN);
    if (has_expires)
        p = put_tlv(p, DER_GENERALIZED_TIME, expires, GENTIME_LEN);
    *der = buf;
    *len = (size_t)(p - buf);
    return 0;
}

int record_decode(const unsigned char *der, size_t len, ak_record *r)
{
    const unsigned char *p = der, *end, *val;
    size_t vlen;
    unsigned tag;
    ak_record rec;

    if (der == NULL || der_expect(&p, der + len, DER_SEQUENCE, &val, &vlen) != 0 || p != der + len)
        return -1;
    p = val;
    end = val + vlen;

    if (der_expect(&p, end, DER_INTEGER, &val, &vlen) != 0 || vlen != 1 || val[0] != RECORD_VERSION)
        return -1;
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
    /* Fields a later version appended: skipped, but they must still be well-formed. */
    while (p != end) {
        if (der_next(&p, end, 1, &tag, &val, &vlen) != 0)
            return -1;
    }
    *r = rec;
    return 0;
}
