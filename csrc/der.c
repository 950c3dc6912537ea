/*
 * der.c: the DER primitives that the record (record.c) and the SafeBag list (safebags.c) share:
 * splitting a TLV off untrusted bytes, writing a header, the size a file's outer SEQUENCE
 * announces, and reading one UTF-8 character. Every step is checked against the end of the
 * input (these readers are fuzzed).
 */
#include "apikey.h"

int der_next(const unsigned char **p, const unsigned char *end, int strict, unsigned *tag,
             const unsigned char **val, size_t *vlen)
{
    const unsigned char *q = *p;
    size_t len;

    if (q == end)
        return -1;
    *tag = *q++;
    if ((*tag & 0x1f) == 0x1f) { /* high tag number: base-128, more octets while bit 8 set */
        const unsigned char *first = q;
        if (q == end || *q == 0x80)
            return -1;
        while (q != end && (*q & 0x80))
            q++;
        if (q == end)
            return -1;
        if (q == first && *q < 0x1f) /* a number that fits in the first octet */
            return -1;
        q++;
    }
    if (q == end)
        return -1;
    len = *q++;
    if (len == 0x80) {
        if (strict || !(*tag & 0x20))
            return -1;
        *val = q;
        *vlen = (size_t)(end - q);
        *p = end;
        return 1;
    }
    if (len & 0x80) {
        size_t n = len & 0x7f;
        if (n == 0 || n > 4 || n > (size_t)(end - q) || (strict && *q == 0))
            return -1;
        for (len = 0; n > 0; n--)
            len = (len << 8) | *q++;
        if (strict && len < 0x80)
            return -1;
    }
    if (len > (size_t)(end - q))
        return -1;
    *val = q;
    *vlen = len;
    *p = q + len;
    return 0;
}

int der_expect(const unsigned char **p, const unsigned char *end, unsigned tag,
               const unsigned char **val, size_t *vlen)
{
    unsigned got;
    return der_next(p, end, 1, &got, val, vlen) == 0 && got == tag ? 0 : -1;
}

size_t der_len_octets(size_t n)
{
    return n < 0x80 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : n <= 0xffffff ? 4 : 5;
}

size_t der_tlv_size(size_t n)
{
    return 1 + der_len_octets(n) + n;
}

unsigned char *der_put_header(unsigned char *p, unsigned tag, size_t n)
{
    size_t k = der_len_octets(n) - 1;

    *p++ = (unsigned char)tag;
    if (k == 0) {
        *p++ = (unsigned char)n;
        return p;
    }
    *p++ = (unsigned char)(0x80 | k);
    while (k-- > 0)
        *p++ = (unsigned char)(n >> (8 * k));
    return p;
}

size_t der_announced_size(const unsigned char *buf, size_t len)
{
    size_t n, size = 0;

    if (len < 2 || buf[0] != DER_SEQUENCE)
        return 0;
    if (!(buf[1] & 0x80))
        return 2 + (size_t)buf[1];
    n = buf[1] & 0x7f;
    if (n == 0 || n > 4 || len < 2 + n)
        return 0;
    for (size_t i = 0; i < n; i++)
        size = (size << 8) | buf[2 + i];
    return 2 + n + size;
}

size_t utf8_char(const unsigned char *s, size_t n, unsigned long *cp)
{
    unsigned long c = s[0], min;
    size_t k;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        k = 2;
        c &= 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        k = 3;
        c &= 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 4;
        c &= 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < k)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return k;
}
