/*
 * alias.c: the alias as text. In memory and in the Lua API it is UTF-8; in the file it is the
 * friendlyName attribute, a BMPString (UTF-16BE, surrogate pairs beyond U+FFFF), as PKCS#12
 * and Java write it. Both directions refuse what is not text: NUL, a lone surrogate, invalid
 * UTF-8, an empty alias, one over AK_ALIAS_MAX bytes of UTF-8.
 *
 * The rules a new alias follows (alias_check) and how two aliases compare (alias_fold, as Java
 * compares them: toLowerCase(Locale.ENGLISH), full Unicode lower-casing) are here too, from
 * libunistring's Unicode tables: each rule is written once, and the Lua layer asks for it.
 */
#include "apikey.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <unicase.h>
#include <unictype.h>
#include <unistr.h>

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

/* ---- the rules an alias follows, and how aliases compare ---------------------------------- */

/* A character that would make a line lie or break: C0 and C1 controls, line and paragraph
 * separators, bidirectional controls. */
static int is_control(ucs4_t c)
{
    return uc_is_general_category(c, UC_CATEGORY_Cc) || uc_is_general_category(c, UC_CATEGORY_Zl) ||
           uc_is_general_category(c, UC_CATEGORY_Zp) || uc_is_property_bidi_control(c);
}

/* A character that shows nothing: Unicode's default-ignorable code points (zero-width spaces
 * and joiners, soft hyphen, fillers, tags, variation selectors, ...) and the other format
 * characters (interlinear annotation marks, ...), which the property leaves out. */
static int is_invisible(ucs4_t c)
{
    return uc_is_property_default_ignorable_code_point(c) ||
           uc_is_general_category(c, UC_CATEGORY_Cf);
}

int alias_hidden(unsigned long cp)
{
    return cp > 0x10ffff || is_control((ucs4_t)cp) || is_invisible((ucs4_t)cp);
}

/* Whether [s, s + n) holds a key's text form, 8-4-4-4-12 hexadecimal digits. */
static int has_key_shape(const char *s, size_t n)
{
    static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    for (size_t i = 0; n >= AK_KEY_LEN && i <= n - AK_KEY_LEN; i++) {
        size_t j = 0;
        while (j < AK_KEY_LEN &&
               (shape[j] == '-' ? s[i + j] == '-' : isxdigit((unsigned char)s[i + j])))
            j++;
        if (j == AK_KEY_LEN)
            return 1;
    }
    return 0;
}

ak_alias_fault alias_check(const char *alias, size_t len, unsigned long *cp)
{
    const uint8_t *s = (const uint8_t *)alias;
    ucs4_t c = 0, first = 0;
    char folded[sizeof AK_METRICSHUB_PREFIX];
    size_t flen = sizeof folded;
    uint8_t *f;

    *cp = 0;
    if (len == 0)
        return AK_ALIAS_EMPTY;
    if (len > AK_ALIAS_MAX)
        return AK_ALIAS_LONG;
    if (u8_check(s, len) != NULL)
        return AK_ALIAS_NOT_UTF8;
    for (const uint8_t *p = s; p < s + len; p += u8_mbtouc(&c, p, (size_t)(s + len - p))) {
        u8_mbtouc(&c, p, (size_t)(s + len - p));
        *cp = c;
        if (is_control(c))
            return AK_ALIAS_CONTROL;
        if (is_invisible(c))
            return AK_ALIAS_INVISIBLE;
        if (p == s)
            first = c;
    }
    if (uc_is_property_white_space(first) || uc_is_property_white_space(*cp)) {
        *cp = uc_is_property_white_space(first) ? first : *cp;
        return AK_ALIAS_BLANK;
    }
    *cp = 0;
    if (has_key_shape(alias, len))
        return AK_ALIAS_KEY;
    /* MetricsHub names its keys "api_key:ALIAS": such an alias would be taken for one of them,
     * and MetricsHub's server, failing to read it, would refuse every key. */
    f = u8_tolower(s, len < sizeof folded - 1 ? len : sizeof folded - 1, "en", NULL,
                   (uint8_t *)folded, &flen);
    if (f == NULL)
        return AK_ALIAS_NOT_UTF8;
    if (flen == sizeof folded - 1 && memcmp(f, AK_METRICSHUB_PREFIX, flen) == 0) {
        if (f != (uint8_t *)folded)
            free(f);
        return AK_ALIAS_RESERVED;
    }
    if (f != (uint8_t *)folded)
        free(f);
    return AK_ALIAS_OK;
}

char *alias_fold(const char *alias, size_t len, size_t *outlen)
{
    size_t n = 0;
    uint8_t *f = u8_tolower((const uint8_t *)alias, len, "en", NULL, NULL, &n);
    char *out;

    if (f == NULL)
        return NULL;
    out = realloc(f, n + 1);
    if (out == NULL) {
        free(f);
        return NULL;
    }
    out[n] = '\0';
    *outlen = n;
    return out;
}

int alias_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t fa, fb;
    char *x = alias_fold(a, alen, &fa), *y = alias_fold(b, blen, &fb);
    int eq = x != NULL && y != NULL && fa == fb && memcmp(x, y, fa) == 0;
    free(x);
    free(y);
    return eq;
}
