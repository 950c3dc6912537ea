/*
 * alias.c: the alias as text. In memory and in the Lua API it is UTF-8; in the file it is the
 * friendlyName attribute, a BMPString (UTF-16BE, surrogate pairs beyond U+FFFF), as PKCS#12
 * and Java write it. Both directions refuse what is not text: NUL, a lone surrogate, invalid
 * UTF-8, an empty alias, one over AK_ALIAS_MAX bytes of UTF-8.
 */
#include "apikey.h"

int alias_to_bmp(const char *alias, size_t len, unsigned char *bmp, size_t *bmplen)
{
    const unsigned char *s = (const unsigned char *)alias;
    size_t i = 0, o = 0;

    if (len == 0 || len > AK_ALIAS_MAX)
        return -1;
    while (i < len) {
        unsigned long cp;
        size_t k = utf8_char(s + i, len - i, &cp);
        if (k == 0 || cp == 0)
            return -1;
        i += k;
        if (cp >= 0x10000) {
            unsigned long hi = 0xd800 + ((cp - 0x10000) >> 10), lo = 0xdc00 + (cp & 0x3ff);
            bmp[o++] = (unsigned char)(hi >> 8);
            bmp[o++] = (unsigned char)hi;
            cp = lo;
        }
        bmp[o++] = (unsigned char)(cp >> 8);
        bmp[o++] = (unsigned char)cp;
    }
    *bmplen = o;
    return 0;
}

int alias_from_bmp(const unsigned char *s, size_t n, char *out, size_t *outlen)
{
    unsigned char *u = (unsigned char *)out;
    size_t o = 0;

    if (n == 0 || n % 2 != 0)
        return -1;
    for (size_t i = 0; i < n; i += 2) {
        unsigned long c = ((unsigned long)s[i] << 8) | s[i + 1];
        size_t k;
        if (c == 0 || (c >= 0xdc00 && c <= 0xdfff))
            return -1;
        if (c >= 0xd800 && c <= 0xdbff) {
            unsigned long lo;
            if (n - i < 4)
                return -1;
            lo = ((unsigned long)s[i + 2] << 8) | s[i + 3];
            if (lo < 0xdc00 || lo > 0xdfff)
                return -1;
            c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
            i += 2;
        }
        k = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
        if (AK_ALIAS_MAX - o < k)
            return -2;
        switch (k) {
        case 1:
            u[o++] = (unsigned char)c;
            break;
        case 2:
            u[o++] = (unsigned char)(0xc0 | (c >> 6));
            u[o++] = (unsigned char)(0x80 | (c & 0x3f));
            break;
        case 3:
            u[o++] = (unsigned char)(0xe0 | (c >> 12));
            u[o++] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
            u[o++] = (unsigned char)(0x80 | (c & 0x3f));
            break;
        default:
            u[o++] = (unsigned char)(0xf0 | (c >> 18));
            u[o++] = (unsigned char)(0x80 | ((c >> 12) & 0x3f));
            u[o++] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
            u[o++] = (unsigned char)(0x80 | (c & 0x3f));
            break;
        }
    }
    out[o] = '\0';
    *outlen = o;
    return 0;
}
