/*
 * p12.c: the keystore file as PKCS#12 (RFC 7292).
 * OpenSSL handles the outer layers: the PFX, its MAC, the AuthenticatedSafe and the PBES2
 * encryption. The SafeContents inside, the list of bags, is written and read by hand:
 * OpenSSL's generic ASN.1 costs ~16 us a bag, and a keystore may hold 100,000 keys.
 * Whatever other tools put in the file (certificates, private keys, their own secrets, Java
 * entries) is kept and written back.
 */
#include "apikey.h"

#include <limits.h>
#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <string.h>

#define SALT_LEN 16
#define LIST_HDR_MAX 6 /* tag and longest length octets of the SafeContents SEQUENCE */
#define STR_(x) #x
#define STR(x) STR_(x)

enum {
    TAG_OCTET_STRING = 0x04,
    TAG_OID = 0x06,
    TAG_BMP_STRING = 0x1e,
    TAG_SEQUENCE = 0x30,
    TAG_SET = 0x31,
    TAG_EXPLICIT_0 = 0xa0,
};

/* A growing byte buffer whose old blocks are wiped: it may hold key hashes or foreign keys. */
typedef struct {
    unsigned char *p;
    size_t len, cap;
} bytes;

struct ak_foreign {
    STACK_OF(PKCS7) *cis; /* ContentInfos that hold none of our bags, as they were read */
    bytes bags;           /* DER SafeBags that shared a ContentInfo with ours, back to back */
};

/* DER contents (no tag, no length) of the object identifiers we compare bags against. */
typedef struct {
    const unsigned char *p;
    size_t n;
} oid_der;

typedef struct {
    oid_der secret_bag, friendly_name, record;
    ASN1_OBJECT *record_obj; /* owns record.p */
} oids;

typedef struct {
    oids oid;
    const char *forms[2]; /* the password as the MAC verified, then the other empty form */
    int nforms;
    int passlen;
    ak_entries entries;
    ak_foreign *foreign;
    long kdf_budget; /* key derivation iterations this load may still run */
} loader;

static int p12_nid; /* set once by p12_register_oid, at module load */

int p12_register_oid(void)
{
    int nid;

    if (p12_nid != NID_undef)
        return p12_nid;
    nid = OBJ_txt2nid(AK_RECORD_OID);
    if (nid == NID_undef)
        nid = OBJ_create(AK_RECORD_OID, AK_RECORD_OID_SN, AK_RECORD_OID_LN);
    ERR_clear_error();
    p12_nid = nid;
    return nid;
}

void foreign_free(ak_foreign *f)
{
    if (f == NULL)
        return;
    sk_PKCS7_pop_free(f->cis, PKCS7_free);
    OPENSSL_clear_free(f->bags.p, f->bags.cap);
    OPENSSL_free(f);
}

/* ---- small helpers ----------------------------------------------------------------------- */

static int bytes_reserve(bytes *b, size_t more)
{
    unsigned char *p;
    size_t cap;

    if (more <= b->cap - b->len)
        return 0;
    if (more > SIZE_MAX / 4 || b->len > SIZE_MAX / 4)
        return -1;
    cap = b->cap ? b->cap : 4096;
    while (cap - b->len < more)
        cap *= 2;
    p = OPENSSL_malloc(cap);
    if (p == NULL)
        return -1;
    if (b->len > 0)
        memcpy(p, b->p, b->len);
    OPENSSL_clear_free(b->p, b->cap);
    b->p = p;
    b->cap = cap;
    return 0;
}

static int oids_init(oids *o, ak_err *e)
{
    const ASN1_OBJECT *sb = OBJ_nid2obj(NID_secretBag);
    const ASN1_OBJECT *fn = OBJ_nid2obj(NID_friendlyName);

    /* Parsed from the text, so reading and writing need no registered NID. */
    o->record_obj = OBJ_txt2obj(AK_RECORD_OID, 1);
    if (sb == NULL || fn == NULL || o->record_obj == NULL) {
        ASN1_OBJECT_free(o->record_obj);
        o->record_obj = NULL;
        return ak_fail_ssl(e, AK_ENOMEM, "cannot set up the PKCS#12 object identifiers");
    }
    o->secret_bag.p = OBJ_get0_data(sb);
    o->secret_bag.n = OBJ_length(sb);
    o->friendly_name.p = OBJ_get0_data(fn);
    o->friendly_name.n = OBJ_length(fn);
    o->record.p = OBJ_get0_data(o->record_obj);
    o->record.n = OBJ_length(o->record_obj);
    return 0;
}

static int oid_is(const unsigned char *val, size_t vlen, const oid_der *oid)
{
    return vlen == oid->n && memcmp(val, oid->p, vlen) == 0;
}

/* Strict DER: the next TLV must be there, definite, minimal, and carry tag. */
static int expect(const unsigned char **p, const unsigned char *end, unsigned tag,
                  const unsigned char **val, size_t *vlen)
{
    unsigned got;
    return der_next(p, end, 1, &got, val, vlen) == 0 && got == tag ? 0 : -1;
}

static size_t tlv_size(size_t n)
{
    return 1 + der_len_octets(n) + n;
}

static unsigned char *put_oid(unsigned char *p, const oid_der *oid)
{
    p = der_put_header(p, TAG_OID, oid->n);
    memcpy(p, oid->p, oid->n);
    return p + oid->n;
}

/* ---- aliases: UTF-8 in memory, BMPString (UTF-16BE) in the friendlyName ------------------- */

/* UTF-8 alias -> UTF-16BE into bmp (room for 2 * AK_ALIAS_MAX bytes). -1 if not a valid
 * alias: 1..AK_ALIAS_MAX bytes of UTF-8 without NUL. */
static int alias_to_bmp(const char *alias, size_t len, unsigned char *bmp, size_t *bmplen)
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

/* UTF-16BE -> UTF-8 into out (AK_ALIAS_MAX bytes and a NUL). 0; -1 if not valid text
 * (odd length, NUL, a lone surrogate) or empty; -2 if longer than AK_ALIAS_MAX bytes. */
static int bmp_to_alias(const unsigned char *s, size_t n, char *out, size_t *outlen)
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

/* ---- reading ----------------------------------------------------------------------------- */

/* Tells our bags from the others by their first fields. 1 ours, 0 not ours, -1 malformed.
 * Not strict: another tool's bag may be BER, and an indefinite length still starts with its
 * contents. */
static int bag_is_ours(const unsigned char *p, const unsigned char *end, const oids *o)
{
    const unsigned char *val;
    size_t vlen;
    unsigned tag;

    if (der_next(&p, end, 0, &tag, &val, &vlen) != 0 || tag != TAG_OID)
        return -1;
    if (!oid_is(val, vlen, &o->secret_bag))
        return 0;
    if (der_next(&p, end, 0, &tag, &val, &vlen) < 0 || tag != TAG_EXPLICIT_0)
        return -1;
    p = val;
    end = val + vlen;
    if (der_next(&p, end, 0, &tag, &val, &vlen) < 0 || tag != TAG_SEQUENCE)
        return -1;
    p = val;
    end = val + vlen;
    if (der_next(&p, end, 0, &tag, &val, &vlen) != 0 || tag != TAG_OID)
        return -1;
    return oid_is(val, vlen, &o->record);
}

/* The alias: the first value of the friendlyName attribute, in the bag's attribute SET. */
static int read_alias(const unsigned char *p, const unsigned char *end, const oids *o, char *alias,
                      size_t *alias_len, const char **why)
{
    while (p != end) {
        const unsigned char *attr, *aend, *val, *values;
        size_t alen, vlen, nvalues;
        if (expect(&p, end, TAG_SEQUENCE, &attr, &alen) != 0)
            goto malformed;
        aend = attr + alen;
        if (expect(&attr, aend, TAG_OID, &val, &vlen) != 0 ||
            expect(&attr, aend, TAG_SET, &values, &nvalues) != 0 || attr != aend)
            goto malformed;
        if (!oid_is(val, vlen, &o->friendly_name))
            continue;
        if (expect(&values, values + nvalues, TAG_BMP_STRING, &val, &vlen) != 0) {
            *why = "its alias (friendlyName) is not a BMPString";
            return -1;
        }
        switch (bmp_to_alias(val, vlen, alias, alias_len)) {
        case 0:
            return 0;
        case -2:
            *why = "its alias (friendlyName) is longer than " STR(AK_ALIAS_MAX) " bytes";
            return -1;
        default:
            *why = "its alias (friendlyName) is empty or not valid text";
            return -1;
        }
    }
    *why = "it has no alias (friendlyName)";
    return -1;
malformed:
    *why = "its attributes are malformed";
    return -1;
}

/* Reads one of our SafeBags (its contents, bagId first), strict DER throughout:
 *   SEQUENCE { secretBag, [0] SEQUENCE { our OID, [0] OCTET STRING record }, SET attrs } */
static int read_our_bag(loader *ld, const unsigned char *p, const unsigned char *end, int ci,
                        int bag, ak_err *e)
{
    const unsigned char *val, *in, *in_end, *rec, *attrs = NULL;
    size_t vlen, reclen, attrslen = 0;
    char alias[AK_ALIAS_MAX + 1];
    size_t alias_len;
    const char *why = "its structure is not valid DER";
    ak_record r;

    /* bagId (secretBag) and [0] { SEQUENCE { secretTypeId (ours), [0] { OCTET STRING } } } */
    if (expect(&p, end, TAG_OID, &val, &vlen) != 0 ||
        expect(&p, end, TAG_EXPLICIT_0, &in, &vlen) != 0)
        goto corrupt;
    in_end = in + vlen;
    if (expect(&in, in_end, TAG_SEQUENCE, &val, &vlen) != 0 || in != in_end)
        goto corrupt;
    in = val;
    in_end = val + vlen;
    if (expect(&in, in_end, TAG_OID, &val, &vlen) != 0 ||
        expect(&in, in_end, TAG_EXPLICIT_0, &val, &vlen) != 0 || in != in_end)
        goto corrupt;
    in = val;
    in_end = val + vlen;
    if (expect(&in, in_end, TAG_OCTET_STRING, &rec, &reclen) != 0 || in != in_end)
        goto corrupt;
    if (p != end && (expect(&p, end, TAG_SET, &attrs, &attrslen) != 0 || p != end))
        goto corrupt;

    if (record_decode(rec, reclen, &r) != 0) {
        why = "its API key record is not valid";
        goto corrupt;
    }
    if (attrs == NULL) {
        why = "it has no alias (friendlyName)";
        goto corrupt;
    }
    if (read_alias(attrs, attrs + attrslen, &ld->oid, alias, &alias_len, &why) != 0)
        goto corrupt;
    return entries_push(&ld->entries, alias, alias_len, &r, e);
corrupt:
    return ak_fail(e, AK_ECORRUPT, "API key bag %d of content %d cannot be read: %s", bag, ci, why);
}

/* One SafeBag, whole [bag, bag + len), contents [p, end): ours to ld->entries, another
 * tool's to ld->foreign->bags. 1 if ours, 0 if not, -1 with e. */
static int read_bag(loader *ld, const unsigned char *bag, size_t len, const unsigned char *p,
                    const unsigned char *end, int ci, int n, ak_err *e)
{
    bytes *kept = &ld->foreign->bags;

    switch (bag_is_ours(p, end, &ld->oid)) {
    case 1:
        return read_our_bag(ld, p, end, ci, n, e) == 0 ? 1 : -1;
    case 0:
        if (bytes_reserve(kept, len) != 0)
            return ak_fail(e, AK_ENOMEM, "out of memory");
        memcpy(kept->p + kept->len, bag, len);
        kept->len += len;
        return 0;
    default:
        return ak_fail(e, AK_ECORRUPT, "bag %d of content %d is malformed", n, ci);
    }
}

/* A SafeContents in BER (some tools write indefinite lengths): OpenSSL decodes it, and each
 * bag, encoded again in DER, is read as above. Returns how many bags were ours, or -1. */
static long read_list_ber(loader *ld, const unsigned char *der, size_t len, int ci, int *nbags,
                          ak_err *e)
{
    const unsigned char *p = der;
    STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
    long ours = 0;

    if (len <= LONG_MAX)
        bags = (STACK_OF(PKCS12_SAFEBAG) *)ASN1_item_d2i(NULL, &p, (long)len,
                                                         ASN1_ITEM_rptr(PKCS12_SAFEBAGS));
    if (bags == NULL || p != der + len) {
        ERR_clear_error();
        sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
        return ak_fail(e, AK_ECORRUPT, "content %d: its list of bags is malformed", ci);
    }
    *nbags = sk_PKCS12_SAFEBAG_num(bags);
    for (int i = 0; i < *nbags && ours >= 0; i++) {
        unsigned char *bag = NULL;
        const unsigned char *q, *val;
        size_t vlen;
        unsigned tag;
        int n = i2d_PKCS12_SAFEBAG(sk_PKCS12_SAFEBAG_value(bags, i), &bag), r;
        q = bag;
        if (n <= 0 || der_next(&q, bag + n, 0, &tag, &val, &vlen) != 0) {
            ERR_clear_error();
            ours = ak_fail(e, AK_ECORRUPT, "bag %d of content %d is malformed", i + 1, ci);
        } else {
            r = read_bag(ld, bag, (size_t)n, val, val + vlen, ci, i + 1, e);
            ours = r < 0 ? -1 : ours + r;
        }
        if (n > 0)
            OPENSSL_clear_free(bag, (size_t)n);
    }
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
    return ours;
}

/* The outline of a SafeContents, SEQUENCE OF SafeBag: 0 with [*first, *last) the bags when
 * every length is definite, 1 when some are not (BER), -1 when malformed. */
static int list_outline(const unsigned char *der, size_t len, const unsigned char **first,
                        const unsigned char **last)
{
    const unsigned char *p = der, *end = der + len, *val;
    size_t vlen;
    unsigned tag;
    int r = der_next(&p, end, 0, &tag, &val, &vlen);

    if (r < 0 || tag != TAG_SEQUENCE || (r == 0 && p != end))
        return -1;
    if (r == 1)
        return 1;
    *first = p = val;
    *last = end = val + vlen;
    while (p != end) {
        r = der_next(&p, end, 0, &tag, &val, &vlen);
        if (r < 0 || tag != TAG_SEQUENCE)
            return -1;
        if (r == 1)
            return 1;
    }
    return 0;
}

/* Reads the SafeContents of content ci. Returns how many bags were ours, or -1 with e; *nbags
 * says how many there were in all. With none of ours, the other bags gathered are dropped
 * again: the caller keeps the whole ContentInfo instead, as it was. */
static long read_list(loader *ld, const unsigned char *der, size_t len, int ci, int *nbags,
                      ak_err *e)
{
    bytes *kept = &ld->foreign->bags;
    size_t mark = kept->len;
    const unsigned char *p = NULL, *end = NULL;
    long ours = 0;
    int n = 0;

    switch (list_outline(der, len, &p, &end)) {
    case 0:
        while (p != end && ours >= 0) {
            const unsigned char *bag = p, *val = NULL;
            size_t vlen = 0;
            unsigned tag;
            int r;
            der_next(&p, end, 0, &tag, &val, &vlen); /* list_outline checked it */
            r = read_bag(ld, bag, (size_t)(p - bag), val, val + vlen, ci, ++n, e);
            ours = r < 0 ? -1 : ours + r;
        }
        *nbags = n;
        break;
    case 1:
        ours = read_list_ber(ld, der, len, ci, nbags, e);
        break;
    default:
        return ak_fail(e, AK_ECORRUPT, "content %d: its list of bags is malformed", ci);
    }
    if (ours <= 0 && kept->len > mark) {
        OPENSSL_cleanse(kept->p + mark, kept->len - mark);
        kept->len = mark;
    }
    return ours;
}

/* Plausible plaintext of a SafeContents: one SEQUENCE filling it exactly. A wrong key still
 * passes CBC's padding check once in 256 tries; this catches the garbage it gives. */
static int looks_like_list(const unsigned char *der, size_t len)
{
    const unsigned char *p = der, *val;
    size_t vlen;
    unsigned tag;
    int r = der_next(&p, der + len, 0, &tag, &val, &vlen);

    return r >= 0 && tag == TAG_SEQUENCE && (r == 1 || p == der + len);
}

/* A file sets the cost of its key derivations, and may hold any number of encrypted contents:
 * one load runs at most this many iterations in all (a few seconds): our own content at the
 * most core.open allows (AK_ITER_MAX), and as much again for another tool's. */
#define KDF_BUDGET (2 * AK_ITER_MAX)

/* The iteration count of a password-based encryption: 0 with *iter for PBES2 with PBKDF2 and
 * for the PKCS#5 v1 and PKCS#12 schemes; 1 for PBES2 with another key derivation; -1 when the
 * parameters do not parse. */
static int pbe_iterations(const X509_ALGOR *alg, long *iter)
{
    const ASN1_OBJECT *obj;
    const void *param;
    int ptype, rc = -1;

    *iter = 0;
    X509_ALGOR_get0(&obj, &ptype, &param, alg);
    if (ptype != V_ASN1_SEQUENCE)
        return -1;
    if (OBJ_obj2nid(obj) == NID_pbes2) {
        PBE2PARAM *pbe2 = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM), alg->parameter);
        PBKDF2PARAM *kdf = NULL;
        if (pbe2 != NULL && pbe2->keyfunc != NULL) {
            if (OBJ_obj2nid(pbe2->keyfunc->algorithm) != NID_id_pbkdf2)
                rc = 1;
            else if ((kdf = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM),
                                                      pbe2->keyfunc->parameter)) != NULL &&
                     kdf->iter != NULL)
                rc = 0, *iter = ASN1_INTEGER_get(kdf->iter);
        }
        PBKDF2PARAM_free(kdf);
        PBE2PARAM_free(pbe2);
    } else {
        PBEPARAM *pbe = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBEPARAM), alg->parameter);
        if (pbe != NULL && pbe->iter != NULL)
            rc = 0, *iter = ASN1_INTEGER_get(pbe->iter);
        PBEPARAM_free(pbe);
    }
    ERR_clear_error();
    return rc;
}

/*
 * Decrypts an encryptedData ContentInfo with the password, in the form the MAC verified and
 * then the other empty form (an old PKCS#12 KDF gives different keys for "" and NULL, and a
 * file may mix them). 0 with the plaintext; 1 when no form decrypts it (another password, or
 * a cipher this OpenSSL lacks, such as the RC2 of old Java and OpenSSL files): the caller
 * keeps the content unopened; -1 when the ContentInfo is malformed; -2 when its key
 * derivation asks for fewer than 1 iteration, or for more than the load has left to run.
 * Another scheme than PBKDF2 under PBES2 (scrypt, whose cost the file also sets) is not run.
 */
static int decrypt_content(loader *ld, const PKCS7 *p7, unsigned char **plain, size_t *plainlen)
{
    const PKCS7_ENC_CONTENT *ec = p7->d.encrypted != NULL ? p7->d.encrypted->enc_data : NULL;
    long iter;
    int known;

    if (ec == NULL || ec->algorithm == NULL || ec->enc_data == NULL)
        return -1;
    known = pbe_iterations(ec->algorithm, &iter);
    if (known == 1)
        return 1;
    if (known == 0 && iter < 1)
        return -2;
    for (int f = 0; f < ld->nforms; f++) {
        unsigned char *out = NULL;
        int n = 0;
        if (known == 0) {
            if (iter > ld->kdf_budget)
                return -2;
            ld->kdf_budget -= iter;
        }
        if (PKCS12_pbe_crypt_ex(ec->algorithm, ld->forms[f], ld->passlen, ec->enc_data->data,
                                ec->enc_data->length, &out, &n, 0, NULL, NULL) == NULL)
            continue;
        if (n > 0 && looks_like_list(out, (size_t)n)) {
            ERR_clear_error();
            *plain = out;
            *plainlen = (size_t)n;
            return 0;
        }
        OPENSSL_clear_free(out, (size_t)n);
    }
    ERR_clear_error();
    return 1;
}

static int keep_content(loader *ld, STACK_OF(PKCS7) *cis, int i, ak_err *e)
{
    ak_foreign *f = ld->foreign;

    if (f->cis == NULL && (f->cis = sk_PKCS7_new_null()) == NULL)
        return ak_fail(e, AK_ENOMEM, "out of memory");
    if (sk_PKCS7_push(f->cis, sk_PKCS7_value(cis, i)) == 0)
        return ak_fail(e, AK_ENOMEM, "out of memory");
    sk_PKCS7_set(cis, i, NULL);
    return 0;
}

/* ContentInfo i of the AuthenticatedSafe: its bags are read, or, when none is ours, it is
 * moved whole to ld->foreign. */
static int load_content(loader *ld, STACK_OF(PKCS7) *cis, int i, ak_err *e)
{
    PKCS7 *p7 = sk_PKCS7_value(cis, i);
    long ours = 0;
    int nbags = -1; /* -1: not opened */

    switch (OBJ_obj2nid(p7->type)) {
    case NID_pkcs7_data:
        if (p7->d.data == NULL)
            return ak_fail(e, AK_ECORRUPT, "content %d has no data", i + 1);
        ours = read_list(ld, p7->d.data->data, (size_t)p7->d.data->length, i + 1, &nbags, e);
        break;
    case NID_pkcs7_encrypted: {
        unsigned char *plain = NULL;
        size_t n = 0;
        int r = decrypt_content(ld, p7, &plain, &n);
        if (r == -2)
            return ak_fail(e, AK_ECORRUPT,
                           "content %d: its encryption asks for an iteration count outside 1 to "
                           "%ld in all; the file is damaged or was made to stall apikey",
                           i + 1, (long)KDF_BUDGET);
        if (r < 0)
            return ak_fail(e, AK_ECORRUPT, "content %d: its encrypted data is missing", i + 1);
        if (r == 0) {
            ours = read_list(ld, plain, n, i + 1, &nbags, e);
            OPENSSL_clear_free(plain, n);
        }
        break;
    }
    default: /* envelopedData and the like: not for us to open */
        break;
    }
    if (ours < 0)
        return -1;
    /* An empty list holds nothing: dropped, or each save would pile up one more. */
    if (ours > 0 || nbags == 0)
        return 0;
    return keep_content(ld, cis, i, e);
}

/* Size the outer SEQUENCE announces, header included; 0 if it is not one. */
static size_t announced_size(const unsigned char *buf, size_t len)
{
    size_t n, size = 0;

    if (len < 2 || buf[0] != TAG_SEQUENCE)
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

static PKCS12 *parse_pfx(const unsigned char *buf, size_t len, ak_err *e)
{
    const unsigned char *p = buf;
    PKCS12 *p12 = NULL;
    size_t announced;

    if (len == 0) {
        ak_fail(e, AK_ECORRUPT, "the file is empty, not a PKCS#12 keystore");
        return NULL;
    }
    if (len <= LONG_MAX)
        p12 = d2i_PKCS12(NULL, &p, (long)len);
    ERR_clear_error();
    if (p12 == NULL) {
        announced = announced_size(buf, len);
        if (announced > len)
            ak_fail(e, AK_ECORRUPT,
                    "the file is truncated (%zu of its %zu bytes); restore it from a backup", len,
                    announced);
        else
            ak_fail(e, AK_ECORRUPT, "not a PKCS#12 keystore");
        return NULL;
    }
    if (p != buf + len) {
        PKCS12_free(p12);
        ak_fail(e, AK_ECORRUPT, "not a PKCS#12 keystore: %zu unexpected bytes follow its end",
                (size_t)(buf + len - p));
        return NULL;
    }
    return p12;
}

/* Verifies the MAC and leaves in ld->forms the password forms to decrypt with. */
static int check_mac(loader *ld, PKCS12 *p12, const char *pass, ak_err *e)
{
    const ASN1_INTEGER *iter = NULL;

    if (!PKCS12_mac_present(p12))
        return ak_fail(e, AK_ECORRUPT, "it has no integrity check (MAC), which apikey requires");
    PKCS12_get0_mac(NULL, NULL, NULL, &iter, p12);
    if (iter != NULL) {
        long n = ASN1_INTEGER_get(iter);
        ERR_clear_error();
        if (n < 1 || n > AK_ITER_MAX)
            return ak_fail(e, AK_ECORRUPT,
                           "its integrity check (MAC) asks for %ld iterations, outside 1 to %ld", n,
                           AK_ITER_MAX);
    }
    if (ld->passlen > 0) {
        ld->forms[0] = pass;
        ld->nforms = 1;
        if (PKCS12_verify_mac(p12, pass, ld->passlen))
            return 0;
    } else {
        ld->nforms = 2;
        ld->forms[0] = "";
        ld->forms[1] = NULL;
        if (PKCS12_verify_mac(p12, "", 0))
            return 0;
        ld->forms[0] = NULL;
        ld->forms[1] = "";
        if (PKCS12_verify_mac(p12, NULL, 0)) {
            ERR_clear_error();
            return 0;
        }
    }
    if (ERR_peek_error() != 0) /* not a mismatch: the MAC could not be computed */
        return ak_fail_ssl(e, AK_ECORRUPT, "cannot check its integrity (MAC)");
    return ak_fail(e, AK_EBADPASSWORD,
                   "wrong password, or the file is damaged (its integrity check failed)");
}

int p12_load(const unsigned char *buf, size_t len, const char *pass, size_t passlen,
             ak_entries *out, ak_foreign **foreign, ak_err *e)
{
    loader ld;
    PKCS12 *p12 = NULL;
    STACK_OF(PKCS7) *cis = NULL;
    int rc = -1;

    *foreign = NULL;
    memset(&ld, 0, sizeof ld);
    if (passlen > INT_MAX || (passlen > 0 && pass == NULL))
        return ak_fail(e, AK_EINVALID, "the password is too long");
    ld.passlen = (int)passlen;
    ld.kdf_budget = KDF_BUDGET;
    ERR_clear_error();
    if (oids_init(&ld.oid, e) != 0)
        return -1;
    ld.foreign = OPENSSL_zalloc(sizeof *ld.foreign);
    if (ld.foreign == NULL) {
        ak_fail(e, AK_ENOMEM, "out of memory");
        goto done;
    }
    p12 = parse_pfx(buf, len, e);
    if (p12 == NULL || check_mac(&ld, p12, pass, e) != 0)
        goto done;
    cis = PKCS12_unpack_authsafes(p12);
    if (cis == NULL) {
        ERR_clear_error();
        ak_fail(e, AK_ECORRUPT, "not a PKCS#12 keystore: its list of contents is malformed");
        goto done;
    }
    PKCS12_free(p12);
    p12 = NULL;
    for (int i = 0; i < sk_PKCS7_num(cis); i++) {
        if (load_content(&ld, cis, i, e) != 0)
            goto done;
    }
    *out = ld.entries;
    memset(&ld.entries, 0, sizeof ld.entries);
    if (ld.foreign->cis != NULL || ld.foreign->bags.len > 0) {
        *foreign = ld.foreign;
        ld.foreign = NULL;
    }
    rc = 0;
done:
    sk_PKCS7_pop_free(cis, PKCS7_free);
    PKCS12_free(p12);
    foreign_free(ld.foreign);
    entries_clear(&ld.entries);
    ASN1_OBJECT_free(ld.oid.record_obj);
    return rc;
}

/* ---- writing ----------------------------------------------------------------------------- */

/* Size of one of our SafeBags; when p is not NULL, the bag is also written there. */
static size_t put_our_bag(unsigned char *p, const oids *o, const unsigned char *rec, size_t reclen,
                          const unsigned char *bmp, size_t bmplen)
{
    /* contents lengths, innermost first */
    size_t value = tlv_size(reclen);                               /* [0] { OCTET STRING } */
    size_t secret = tlv_size(o->record.n) + tlv_size(value);       /* SEQUENCE { OID, [0] } */
    size_t bag_value = tlv_size(secret);                           /* [0] { SEQUENCE } */
    size_t values = tlv_size(bmplen);                              /* SET { BMPString } */
    size_t attr = tlv_size(o->friendly_name.n) + tlv_size(values); /* SEQUENCE { OID, SET } */
    size_t attrs = tlv_size(attr);                                 /* SET { SEQUENCE } */
    size_t bag = tlv_size(o->secret_bag.n) + tlv_size(bag_value) + tlv_size(attrs);

    if (p != NULL) {
        p = der_put_header(p, TAG_SEQUENCE, bag);
        p = put_oid(p, &o->secret_bag);
        p = der_put_header(p, TAG_EXPLICIT_0, bag_value);
        p = der_put_header(p, TAG_SEQUENCE, secret);
        p = put_oid(p, &o->record);
        p = der_put_header(p, TAG_EXPLICIT_0, value);
        p = der_put_header(p, TAG_OCTET_STRING, reclen);
        memcpy(p, rec, reclen);
        p += reclen;
        p = der_put_header(p, TAG_SET, attrs);
        p = der_put_header(p, TAG_SEQUENCE, attr);
        p = put_oid(p, &o->friendly_name);
        p = der_put_header(p, TAG_SET, values);
        p = der_put_header(p, TAG_BMP_STRING, bmplen);
        memcpy(p, bmp, bmplen);
    }
    return tlv_size(bag);
}

/* The plaintext SafeContents: the foreign bags that shared a ContentInfo with ours, then one
 * bag per entry. Built in b after room for its header; [*list, *list + *listlen) is the
 * whole SEQUENCE. */
static int write_list(const ak_entries *in, const ak_foreign *f, const oids *o, bytes *b,
                      const unsigned char **list, size_t *listlen, ak_err *e)
{
    size_t guess = LIST_HDR_MAX + (f != NULL ? f->bags.len : 0), body, hdr;

    for (size_t i = 0; i < in->n; i++)
        guess += 160 + 2 * in->v[i].alias_len;
    if (bytes_reserve(b, guess) != 0)
        return ak_fail(e, AK_ENOMEM, "out of memory");
    b->len = LIST_HDR_MAX;
    if (f != NULL && f->bags.len > 0) {
        memcpy(b->p + b->len, f->bags.p, f->bags.len);
        b->len += f->bags.len;
    }
    for (size_t i = 0; i < in->n; i++) {
        const ak_entry *en = &in->v[i];
        unsigned char bmp[2 * AK_ALIAS_MAX], *rec;
        size_t bmplen, reclen, size;
        if (alias_to_bmp(en->alias, en->alias_len, bmp, &bmplen) != 0)
            return ak_fail(e, AK_EINVALID, "entry %zu: an alias must be 1 to %d bytes of UTF-8",
                           i + 1, AK_ALIAS_MAX);
        if (record_encode(&en->rec, &rec, &reclen) != 0)
            return ak_fail(e, AK_EINVALID,
                           "the record of alias '%s' cannot be encoded (its hint or a date is "
                           "out of range)",
                           en->alias);
        size = put_our_bag(NULL, o, rec, reclen, bmp, bmplen);
        if (bytes_reserve(b, size) != 0) {
            OPENSSL_clear_free(rec, reclen);
            return ak_fail(e, AK_ENOMEM, "out of memory");
        }
        put_our_bag(b->p + b->len, o, rec, reclen, bmp, bmplen);
        b->len += size;
        OPENSSL_clear_free(rec, reclen);
    }
    body = b->len - LIST_HDR_MAX;
    hdr = tlv_size(body) - body;
    der_put_header(b->p + LIST_HDR_MAX - hdr, TAG_SEQUENCE, body);
    *list = b->p + LIST_HDR_MAX - hdr;
    *listlen = hdr + body;
    return 0;
}

/* An encryptedData ContentInfo holding list: PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC. */
static PKCS7 *encrypt_list(const unsigned char *list, size_t len, const char *pass, int passlen,
                           int iter, ak_err *e)
{
    unsigned char salt[SALT_LEN], *ct = NULL;
    int ctlen = 0;
    X509_ALGOR *alg = NULL;
    ASN1_OCTET_STRING *os = NULL;
    PKCS7 *p7 = NULL;
    PKCS7_ENC_CONTENT *ec;

    if (len > INT_MAX) {
        ak_fail(e, AK_EINVALID, "too many API keys for one keystore file");
        return NULL;
    }
    if (RAND_bytes(salt, sizeof salt) != 1 ||
        (alg = PKCS5_pbe2_set_iv_ex(EVP_aes_256_cbc(), iter, salt, sizeof salt, NULL,
                                    NID_hmacWithSHA256, NULL)) == NULL ||
        PKCS12_pbe_crypt_ex(alg, pass, passlen, list, (int)len, &ct, &ctlen, 1, NULL, NULL) ==
            NULL ||
        (os = ASN1_OCTET_STRING_new()) == NULL || (p7 = PKCS7_new()) == NULL ||
        !PKCS7_set_type(p7, NID_pkcs7_encrypted)) {
        ak_fail_ssl(e, AK_ENOMEM, "cannot encrypt the API keys");
        OPENSSL_free(ct);
        ASN1_OCTET_STRING_free(os);
        X509_ALGOR_free(alg);
        PKCS7_free(p7);
        return NULL;
    }
    ASN1_STRING_set0(os, ct, ctlen);
    ec = p7->d.encrypted->enc_data;
    X509_ALGOR_free(ec->algorithm);
    ec->algorithm = alg;
    ASN1_OCTET_STRING_free(ec->enc_data);
    ec->enc_data = os;
    return p7;
}

int p12_save(const ak_entries *in, const ak_foreign *foreign, const char *pass, size_t passlen,
             int iter, unsigned char **out, size_t *outlen, ak_err *e)
{
    oids o;
    bytes plain = {NULL, 0, 0};
    const unsigned char *list = NULL;
    size_t listlen = 0;
    PKCS7 *ours = NULL;
    STACK_OF(PKCS7) *cis = NULL;
    PKCS12 *p12 = NULL;
    unsigned char *der = NULL;
    int n, rc = -1;

    *out = NULL;
    *outlen = 0;
    if (passlen == 0)
        pass = "";
    if (iter < 1 || passlen > INT_MAX || pass == NULL)
        return ak_fail(e, AK_EINVALID, "invalid iteration count or password");
    ERR_clear_error();
    if (oids_init(&o, e) != 0)
        return -1;
    if (write_list(in, foreign, &o, &plain, &list, &listlen, e) != 0)
        goto done;
    ours = encrypt_list(list, listlen, pass, (int)passlen, iter, e);
    if (ours == NULL)
        goto done;
    cis = sk_PKCS7_new_null();
    if (cis == NULL)
        goto nomem;
    for (int i = 0; foreign != NULL && i < sk_PKCS7_num(foreign->cis); i++) {
        if (sk_PKCS7_push(cis, sk_PKCS7_value(foreign->cis, i)) == 0)
            goto nomem;
    }
    if (sk_PKCS7_push(cis, ours) == 0)
        goto nomem;
    p12 = PKCS12_add_safes(cis, NID_pkcs7_data);
    if (p12 == NULL ||
        !PKCS12_set_mac(p12, pass, (int)passlen, NULL, SALT_LEN, iter, EVP_sha256())) {
        ak_fail_ssl(e, AK_ENOMEM, "cannot assemble the keystore");
        goto done;
    }
    n = i2d_PKCS12(p12, &der);
    if (n <= 0) {
        ak_fail_ssl(e, AK_ENOMEM, "cannot encode the keystore");
        goto done;
    }
    *out = der;
    *outlen = (size_t)n;
    rc = 0;
    goto done;
nomem:
    ak_fail(e, AK_ENOMEM, "out of memory");
done:
    PKCS12_free(p12);
    sk_PKCS7_free(cis); /* the foreign ContentInfos in it are not ours to free */
    PKCS7_free(ours);
    OPENSSL_clear_free(plain.p, plain.cap);
    ASN1_OBJECT_free(o.record_obj);
    return rc;
}
