/*
 * safebags.c: the SafeContents, the list of SafeBags inside a keystore's contents, read and
 * written by hand in DER. Our bags (a SecretBag of our record OID, the alias in its
 * friendlyName) become entries; every other tool's bag is kept as its DER bytes, to be written
 * back unchanged. A list in BER (indefinite lengths) goes through OpenSSL's generic ASN.1
 * decoder instead, the one place the generic path is used. By hand because a bag costs
 * 0.13 us this way and 2.3 us through OpenSSL's templates, which also hold about 420 bytes of
 * heap a bag while they read (bench/safebags_ab.c; bench/README.md, "SafeBags").
 */
#include "apikey.h"

#include <limits.h>
#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LIST_HDR_MAX 6 /* tag and longest length octets of the SafeContents SEQUENCE */
#define STR_(x) #x
#define STR(x) STR_(x)

/* DER contents (no tag, no length) of the object identifiers we compare bags against. */
typedef struct {
    const unsigned char *p;
    size_t n;
} oid_der;

typedef struct {
    oid_der secret_bag, friendly_name, record, key_bag, shrouded_key_bag, cert_bag;
    ASN1_OBJECT *record_obj; /* owns record.p */
} oids;

/* One list being read: where our entries and the others' bags go. */
typedef struct {
    oids oid;
    ak_entries *entries;
    ak_bytes *kept;
    ak_entries *names; /* other tools' aliases, with their kinds */
    long *budget;      /* key derivation iterations the load may still run */
    int ci;            /* the content's number in the file, for messages */
} reader;

static int bytes_reserve(ak_bytes *b, size_t more)
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
    const ASN1_OBJECT *kb = OBJ_nid2obj(NID_keyBag), *skb = OBJ_nid2obj(NID_pkcs8ShroudedKeyBag);
    const ASN1_OBJECT *cb = OBJ_nid2obj(NID_certBag);

    /* Parsed from the text, so reading and writing need no registered NID. */
    o->record_obj = OBJ_txt2obj(AK_RECORD_OID, 1);
    if (sb == NULL || fn == NULL || kb == NULL || skb == NULL || cb == NULL ||
        o->record_obj == NULL) {
        ASN1_OBJECT_free(o->record_obj);
        o->record_obj = NULL;
        return ak_fail_ssl(e, AK_ECRYPTO, "setting up the PKCS#12 object identifiers failed");
    }
    o->secret_bag.p = OBJ_get0_data(sb);
    o->secret_bag.n = OBJ_length(sb);
    o->friendly_name.p = OBJ_get0_data(fn);
    o->friendly_name.n = OBJ_length(fn);
    o->key_bag.p = OBJ_get0_data(kb);
    o->key_bag.n = OBJ_length(kb);
    o->shrouded_key_bag.p = OBJ_get0_data(skb);
    o->shrouded_key_bag.n = OBJ_length(skb);
    o->cert_bag.p = OBJ_get0_data(cb);
    o->cert_bag.n = OBJ_length(cb);
    o->record.p = OBJ_get0_data(o->record_obj);
    o->record.n = OBJ_length(o->record_obj);
    return 0;
}

static void oids_free(oids *o)
{
    ASN1_OBJECT_free(o->record_obj);
    o->record_obj = NULL;
}

static int oid_is(const unsigned char *val, size_t vlen, const oid_der *oid)
{
    return vlen == oid->n && memcmp(val, oid->p, vlen) == 0;
}

static unsigned char *put_oid(unsigned char *p, const oid_der *oid)
{
    p = der_put_header(p, DER_OID, oid->n);
    memcpy(p, oid->p, oid->n);
    return p + oid->n;
}

/* Tells our bags from the others. 1: a SecretBag of our record OID; 2: a SecretBag of another
 * type whose value is one of our records, as another tool that keeps a bag's bytes writes it
 * back (Java 17 re-tags every SecretBag it rewrites as pkcs8ShroudedKeyBag): ours too,
 * recognised by content; 0: not ours; -1 malformed. Not strict: another tool's bag may be BER,
 * and an indefinite length still starts with its contents. */
static int bag_is_ours(const unsigned char *p, const unsigned char *end, const oids *o)
{
    const unsigned char *val;
    size_t vlen;
    unsigned tag;
    ak_record r;

    if (der_next(&p, end, 0, &tag, &val, &vlen) != 0 || tag != DER_OID)
        return -1;
    if (!oid_is(val, vlen, &o->secret_bag))
        return 0;
    if (der_next(&p, end, 0, &tag, &val, &vlen) < 0 || tag != DER_EXPLICIT_0)
        return -1;
    p = val;
    end = val + vlen;
    if (der_next(&p, end, 0, &tag, &val, &vlen) < 0 || tag != DER_SEQUENCE)
        return -1;
    p = val;
    end = val + vlen;
    if (der_next(&p, end, 0, &tag, &val, &vlen) != 0 || tag != DER_OID)
        return -1;
    if (oid_is(val, vlen, &o->record))
        return 1;
    /* [0] { OCTET STRING value }, in DER: a value that decodes as a record is ours. */
    if (der_expect(&p, end, DER_EXPLICIT_0, &val, &vlen) != 0)
        return 0;
    p = val;
    end = val + vlen;
    if (der_expect(&p, end, DER_OCTET_STRING, &val, &vlen) != 0 || p != end)
        return 0;
    return record_decode(val, vlen, &r) == 0 ? 2 : 0;
}

/* The alias: the first value of the friendlyName attribute, in the bag's attribute SET. */
static int read_alias(const unsigned char *p, const unsigned char *end, const oids *o, char *alias,
                      size_t *alias_len, const char **why)
{
    while (p != end) {
        const unsigned char *attr, *aend, *val, *values;
        size_t alen, vlen, nvalues;
        if (der_expect(&p, end, DER_SEQUENCE, &attr, &alen) != 0)
            goto malformed;
        aend = attr + alen;
        if (der_expect(&attr, aend, DER_OID, &val, &vlen) != 0 ||
            der_expect(&attr, aend, DER_SET, &values, &nvalues) != 0 || attr != aend)
            goto malformed;
        if (!oid_is(val, vlen, &o->friendly_name))
            continue;
        if (der_expect(&values, values + nvalues, DER_BMP_STRING, &val, &vlen) != 0) {
            *why = "its alias (friendlyName) is not a BMPString";
            return -1;
        }
        switch (alias_from_bmp(val, vlen, alias, alias_len)) {
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
static int read_our_bag(reader *rd, const unsigned char *p, const unsigned char *end, int bag,
                        ak_err *e)
{
    const unsigned char *val, *in, *in_end, *rec, *attrs = NULL;
    size_t vlen, reclen, attrslen = 0;
    char alias[AK_ALIAS_MAX + 1];
    size_t alias_len;
    const char *why = "its structure is not valid DER";
    ak_record r;

    /* bagId (secretBag) and [0] { SEQUENCE { secretTypeId (ours), [0] { OCTET STRING } } } */
    if (der_expect(&p, end, DER_OID, &val, &vlen) != 0 ||
        der_expect(&p, end, DER_EXPLICIT_0, &in, &vlen) != 0)
        goto corrupt;
    in_end = in + vlen;
    if (der_expect(&in, in_end, DER_SEQUENCE, &val, &vlen) != 0 || in != in_end)
        goto corrupt;
    in = val;
    in_end = val + vlen;
    if (der_expect(&in, in_end, DER_OID, &val, &vlen) != 0 ||
        der_expect(&in, in_end, DER_EXPLICIT_0, &val, &vlen) != 0 || in != in_end)
        goto corrupt;
    in = val;
    in_end = val + vlen;
    if (der_expect(&in, in_end, DER_OCTET_STRING, &rec, &reclen) != 0 || in != in_end)
        goto corrupt;
    if (p != end && (der_expect(&p, end, DER_SET, &attrs, &attrslen) != 0 || p != end))
        goto corrupt;

    if (record_decode(rec, reclen, &r) != 0) {
        why = "its API key record is not valid";
        goto corrupt;
    }
    if (attrs == NULL) {
        why = "it has no alias (friendlyName)";
        goto corrupt;
    }
    if (read_alias(attrs, attrs + attrslen, &rd->oid, alias, &alias_len, &why) != 0)
        goto corrupt;
    return entries_push(rd->entries, alias, alias_len, &r, e);
corrupt:
    return ak_fail(e, AK_ECORRUPT, "API key bag %d of content %d: %s", bag, rd->ci, why);
}

/* The alias of another tool's bag (contents [p, end)), with its kind, to rd->names; a bag
 * without a readable friendlyName has no name to take. 0, or -1 with e (out of memory). */
static int note_name(reader *rd, const unsigned char *p, const unsigned char *end, ak_err *e)
{
    const unsigned char *val, *id;
    size_t vlen, idlen, alias_len;
    unsigned tag;
    char alias[AK_ALIAS_MAX + 1];
    const char *why;
    ak_record none;
    ak_kind kind = AK_KIND_OTHER;

    if (der_next(&p, end, 0, &tag, &id, &idlen) != 0 || tag != DER_OID ||
        der_next(&p, end, 0, &tag, &val, &vlen) != 0 || tag != DER_EXPLICIT_0 ||
        der_next(&p, end, 0, &tag, &val, &vlen) != 0 || tag != DER_SET ||
        read_alias(val, val + vlen, &rd->oid, alias, &alias_len, &why) != 0)
        return 0;
    if (oid_is(id, idlen, &rd->oid.secret_bag))
        kind = AK_KIND_SECRET;
    else if (oid_is(id, idlen, &rd->oid.key_bag) || oid_is(id, idlen, &rd->oid.shrouded_key_bag))
        kind = AK_KIND_PRIVATE;
    else if (oid_is(id, idlen, &rd->oid.cert_bag))
        kind = AK_KIND_CERT;
    memset(&none, 0, sizeof none);
    if (entries_push(rd->names, alias, alias_len, &none, e) != 0)
        return -1;
    rd->names->v[rd->names->n - 1].kind = kind;
    return 0;
}

/* The key text of a MetricsHub key, "KEY" or "KEY__EXPIRY" (LocalDateTime.toString()), into
 * rec: its hash, hint and expiry. 0, or -1 when it is not of that form. */
static int metricshub_record(const unsigned char *text, size_t len, ak_record *rec)
{
    char key[AK_KEY_LEN];
    int rc = -1;

    if (len < AK_KEY_LEN ||
        (len > AK_KEY_LEN && (len < AK_KEY_LEN + 2 || memcmp(text + AK_KEY_LEN, "__", 2) != 0)))
        return -1;
    for (size_t i = 0; i < AK_KEY_LEN; i++) {
        char c = (char)text[i];
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            goto done;
        key[i] = c;
    }
    memset(rec, 0, sizeof *rec);
    rec->created = AK_NO_EXPIRY;
    rec->expires = AK_NO_EXPIRY;
    if (len > AK_KEY_LEN && time_parse_java_local((const char *)text + AK_KEY_LEN + 2,
                                                  len - AK_KEY_LEN - 2, &rec->expires) != 0)
        goto done;
    memcpy(rec->hint, key + AK_KEY_LEN - AK_HINT_LEN, AK_HINT_LEN);
    if (EVP_Digest(key, AK_KEY_LEN, rec->hash, NULL, EVP_sha256(), NULL) != 1)
        goto done;
    rc = 0;
done:
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

/* A SecretBag of MetricsHub's, [bag, bag + len), contents [p, end): its alias folded starts
 * with "api_key:", its value is an EncryptedPrivateKeyInfo that decrypts with MetricsHub's
 * entry password to a PKCS#8 whose key is "KEY" or "KEY__EXPIRY". 1 and the entry added; 0
 * when it is not one (another tool's bag); -1 with e. */
static int read_metricshub_bag(reader *rd, const unsigned char *bag, size_t len,
                               const unsigned char *p, const unsigned char *end, ak_err *e)
{
    const unsigned char *val, *attrs, *epki, *q;
    size_t vlen, attrslen, epkilen, alias_len, folded_len = 0, plen = strlen(AK_METRICSHUB_PREFIX);
    unsigned tag;
    char alias[AK_ALIAS_MAX + 1], *folded = NULL;
    const char *why;
    X509_SIG *sig = NULL;
    PKCS8_PRIV_KEY_INFO *p8 = NULL;
    const X509_ALGOR *alg;
    const unsigned char *text;
    int textlen, rc = 0;
    ak_record rec;
    ak_entry *en;

    if (der_next(&p, end, 0, &tag, &val, &vlen) != 0 || tag != DER_OID ||
        !oid_is(val, vlen, &rd->oid.secret_bag) ||
        der_expect(&p, end, DER_EXPLICIT_0, &val, &vlen) != 0 ||
        der_expect(&p, end, DER_SET, &attrs, &attrslen) != 0 || p != end ||
        read_alias(attrs, attrs + attrslen, &rd->oid, alias, &alias_len, &why) != 0)
        return 0;
    folded = alias_fold(alias, alias_len, &folded_len);
    if (folded == NULL || folded_len <= plen || folded_len - plen > AK_ALIAS_MAX ||
        memcmp(folded, AK_METRICSHUB_PREFIX, plen) != 0)
        goto done;
    /* [0] { SEQUENCE { type, [0] { OCTET STRING EncryptedPrivateKeyInfo } } } */
    p = val;
    end = val + vlen;
    if (der_expect(&p, end, DER_SEQUENCE, &val, &vlen) != 0)
        goto done;
    p = val;
    end = val + vlen;
    if (der_expect(&p, end, DER_OID, &val, &vlen) != 0 ||
        der_expect(&p, end, DER_EXPLICIT_0, &val, &vlen) != 0)
        goto done;
    p = val;
    end = val + vlen;
    if (der_expect(&p, end, DER_OCTET_STRING, &epki, &epkilen) != 0 || epkilen > LONG_MAX)
        goto done;
    q = epki;
    sig = d2i_X509_SIG(NULL, &q, (long)epkilen);
    if (sig == NULL)
        goto done;
    X509_SIG_get0(sig, &alg, NULL);
    switch (kdf_charge(rd->budget, alg)) {
    case 0:
        break;
    case -2:
        rc = ak_fail(e, AK_ECORRUPT,
                     "content %d: its MetricsHub keys ask for more key derivation than %ld "
                     "iterations in all; the file is damaged or was made to stall apikey",
                     rd->ci, (long)AK_KDF_BUDGET);
        goto done;
    default:
        goto done;
    }
    p8 =
        PKCS8_decrypt(sig, AK_METRICSHUB_ENTRY_PASSWORD, (int)strlen(AK_METRICSHUB_ENTRY_PASSWORD));
    if (p8 == NULL || !PKCS8_pkey_get0(NULL, &text, &textlen, NULL, p8) || textlen < 0 ||
        metricshub_record(text, (size_t)textlen, &rec) != 0)
        goto done;
    if (entries_push(rd->entries, folded + plen, folded_len - plen, &rec, e) != 0) {
        rc = -1;
        goto done;
    }
    en = &rd->entries->v[rd->entries->n - 1];
    en->kind = AK_KIND_METRICSHUB;
    en->bag = malloc(len);
    if (en->bag == NULL) {
        rc = ak_fail(e, AK_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(en->bag, bag, len);
    en->bag_len = len;
    rc = 1;
done:
    ERR_clear_error();
    OPENSSL_cleanse(&rec, sizeof rec);
    PKCS8_PRIV_KEY_INFO_free(p8);
    X509_SIG_free(sig);
    free(folded);
    return rc;
}

/* SafeBag n, whole [bag, bag + len), contents [p, end): ours to rd->entries, another
 * tool's to rd->kept (and its alias to rd->names). 1 if ours, 0 if not, -1 with e. */
static int read_bag(reader *rd, const unsigned char *bag, size_t len, const unsigned char *p,
                    const unsigned char *end, int n, ak_err *e)
{
    ak_bytes *kept = rd->kept;

    switch (bag_is_ours(p, end, &rd->oid)) {
    case 1:
    case 2:
        return read_our_bag(rd, p, end, n, e) == 0 ? 1 : -1;
    case 0:
        switch (read_metricshub_bag(rd, bag, len, p, end, e)) {
        case 1:
            return 1;
        case -1:
            return -1;
        default:
            break;
        }
        if (bytes_reserve(kept, len) != 0)
            return ak_fail(e, AK_ENOMEM, "out of memory");
        memcpy(kept->p + kept->len, bag, len);
        kept->len += len;
        return note_name(rd, p, end, e);
    default:
        return ak_fail(e, AK_ECORRUPT, "bag %d of content %d is malformed", n, rd->ci);
    }
}

/* A SafeContents in BER (some tools write indefinite lengths): OpenSSL decodes it, and each
 * bag, encoded again in DER, is read as above. Returns how many bags were ours, or -1. */
static long read_list_ber(reader *rd, const unsigned char *der, size_t len, int *nbags, ak_err *e)
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
        return ak_fail(e, AK_ECORRUPT, "content %d: its list of bags is malformed", rd->ci);
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
            ours = ak_fail(e, AK_ECORRUPT, "bag %d of content %d is malformed", i + 1, rd->ci);
        } else {
            r = read_bag(rd, bag, (size_t)n, val, val + vlen, i + 1, e);
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

    if (r < 0 || tag != DER_SEQUENCE || (r == 0 && p != end))
        return -1;
    if (r == 1)
        return 1;
    *first = p = val;
    *last = end = val + vlen;
    while (p != end) {
        r = der_next(&p, end, 0, &tag, &val, &vlen);
        if (r < 0 || tag != DER_SEQUENCE)
            return -1;
        if (r == 1)
            return 1;
    }
    return 0;
}

long safebags_read(const unsigned char *der, size_t len, int ci, ak_entries *entries,
                   ak_bytes *kept, ak_entries *names, long *budget, int *nbags, ak_err *e)
{
    reader rd = {.entries = entries, .kept = kept, .names = names, .budget = budget, .ci = ci};
    size_t mark = kept->len;
    const unsigned char *p = NULL, *end = NULL;
    long ours = 0;
    int n = 0;

    *nbags = 0;
    if (oids_init(&rd.oid, e) != 0)
        return -1;
    switch (list_outline(der, len, &p, &end)) {
    case 0:
        while (p != end && ours >= 0) {
            const unsigned char *bag = p, *val = NULL;
            size_t vlen = 0;
            unsigned tag;
            int r;
            der_next(&p, end, 0, &tag, &val, &vlen); /* list_outline checked it */
            r = read_bag(&rd, bag, (size_t)(p - bag), val, val + vlen, ++n, e);
            ours = r < 0 ? -1 : ours + r;
        }
        *nbags = n;
        break;
    case 1:
        ours = read_list_ber(&rd, der, len, nbags, e);
        break;
    default:
        ours = ak_fail(e, AK_ECORRUPT, "content %d: its list of bags is malformed", ci);
        break;
    }
    oids_free(&rd.oid);
    if (ours <= 0 && kept->len > mark) {
        OPENSSL_cleanse(kept->p + mark, kept->len - mark);
        kept->len = mark;
    }
    return ours;
}

int safebags_plausible(const unsigned char *der, size_t len)
{
    const unsigned char *p = der, *val;
    size_t vlen;
    unsigned tag;
    int r = der_next(&p, der + len, 0, &tag, &val, &vlen);

    return r >= 0 && tag == DER_SEQUENCE && (r == 1 || p == der + len);
}

/* Size of one of our SafeBags; when p is not NULL, the bag is also written there. */
static size_t put_our_bag(unsigned char *p, const oids *o, const unsigned char *rec, size_t reclen,
                          const unsigned char *bmp, size_t bmplen)
{
    /* contents lengths, innermost first */
    size_t value = der_tlv_size(reclen);                             /* [0] { OCTET STRING } */
    size_t secret = der_tlv_size(o->record.n) + der_tlv_size(value); /* SEQUENCE { OID, [0] } */
    size_t bag_value = der_tlv_size(secret);                         /* [0] { SEQUENCE } */
    size_t values = der_tlv_size(bmplen);                            /* SET { BMPString } */
    size_t attr =
        der_tlv_size(o->friendly_name.n) + der_tlv_size(values); /* SEQUENCE { OID, SET } */
    size_t attrs = der_tlv_size(attr);                           /* SET { SEQUENCE } */
    size_t bag = der_tlv_size(o->secret_bag.n) + der_tlv_size(bag_value) + der_tlv_size(attrs);

    if (p != NULL) {
        p = der_put_header(p, DER_SEQUENCE, bag);
        p = put_oid(p, &o->secret_bag);
        p = der_put_header(p, DER_EXPLICIT_0, bag_value);
        p = der_put_header(p, DER_SEQUENCE, secret);
        p = put_oid(p, &o->record);
        p = der_put_header(p, DER_EXPLICIT_0, value);
        p = der_put_header(p, DER_OCTET_STRING, reclen);
        memcpy(p, rec, reclen);
        p += reclen;
        p = der_put_header(p, DER_SET, attrs);
        p = der_put_header(p, DER_SEQUENCE, attr);
        p = put_oid(p, &o->friendly_name);
        p = der_put_header(p, DER_SET, values);
        p = der_put_header(p, DER_BMP_STRING, bmplen);
        memcpy(p, bmp, bmplen);
    }
    return der_tlv_size(bag);
}

/* safebags_write with the object identifiers set up. */
static int write_list(const ak_entries *in, const ak_bytes *kept, const oids *o, ak_bytes *b,
                      const unsigned char **list, size_t *listlen, ak_err *e)
{
    size_t guess = LIST_HDR_MAX + (kept != NULL ? kept->len : 0), body, hdr;

    for (size_t i = 0; i < in->n; i++)
        guess += 160 + 2 * in->v[i].alias_len;
    if (bytes_reserve(b, guess) != 0)
        return ak_fail(e, AK_ENOMEM, "out of memory");
    b->len = LIST_HDR_MAX;
    if (kept != NULL && kept->len > 0) {
        memcpy(b->p + b->len, kept->p, kept->len);
        b->len += kept->len;
    }
    for (size_t i = 0; i < in->n; i++) {
        const ak_entry *en = &in->v[i];
        unsigned char bmp[2 * AK_ALIAS_MAX], *rec;
        size_t bmplen, reclen, size;
        if (en->kind == AK_KIND_METRICSHUB && en->bag != NULL) { /* as it was read */
            if (bytes_reserve(b, en->bag_len) != 0)
                return ak_fail(e, AK_ENOMEM, "out of memory");
            memcpy(b->p + b->len, en->bag, en->bag_len);
            b->len += en->bag_len;
            continue;
        }
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
    hdr = der_tlv_size(body) - body;
    der_put_header(b->p + LIST_HDR_MAX - hdr, DER_SEQUENCE, body);
    *list = b->p + LIST_HDR_MAX - hdr;
    *listlen = hdr + body;
    return 0;
}

int safebags_write(const ak_entries *in, const ak_bytes *kept, ak_bytes *b,
                   const unsigned char **list, size_t *listlen, ak_err *e)
{
    oids o;
    int rc;

    if (oids_init(&o, e) != 0)
        return -1;
    rc = write_list(in, kept, &o, b, list, listlen, e);
    oids_free(&o);
    return rc;
}

/* ---- another password for other tools' keys (for p12_repass) -------------------------------- */

int safebags_split(const unsigned char *der, size_t len, int ci, ak_bytes *out, ak_err *e)
{
    const unsigned char *p = NULL, *end = NULL, *q;
    STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
    int rc = -1;

    switch (list_outline(der, len, &p, &end)) {
    case 0:
        if (bytes_reserve(out, (size_t)(end - p)) != 0)
            return ak_fail(e, AK_ENOMEM, "out of memory");
        if (end > p)
            memcpy(out->p + out->len, p, (size_t)(end - p));
        out->len += (size_t)(end - p);
        return 0;
    case 1:
        break;
    default:
        return ak_fail(e, AK_ECORRUPT, "content %d: its list of bags is malformed", ci);
    }
    q = der;
    if (len <= LONG_MAX)
        bags = (STACK_OF(PKCS12_SAFEBAG) *)ASN1_item_d2i(NULL, &q, (long)len,
                                                         ASN1_ITEM_rptr(PKCS12_SAFEBAGS));
    if (bags == NULL || q != der + len) {
        ak_fail(e, AK_ECORRUPT, "content %d: its list of bags is malformed", ci);
        goto done;
    }
    for (int i = 0; i < sk_PKCS12_SAFEBAG_num(bags); i++) {
        unsigned char *bag = NULL;
        int n = i2d_PKCS12_SAFEBAG(sk_PKCS12_SAFEBAG_value(bags, i), &bag);
        if (n <= 0 || bytes_reserve(out, (size_t)n) != 0) {
            if (n > 0)
                OPENSSL_clear_free(bag, (size_t)n);
            ak_fail(e, AK_ENOMEM, "out of memory");
            goto done;
        }
        memcpy(out->p + out->len, bag, (size_t)n);
        out->len += (size_t)n;
        OPENSSL_clear_free(bag, (size_t)n);
    }
    rc = 0;
done:
    ERR_clear_error();
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
    return rc;
}

/* An EncryptedPrivateKeyInfo [epki, epki + len) decrypted with a form of the old password and
 * encrypted again with the new one: 0 with *out (OPENSSL_malloc'd DER); 1 when it cannot be (no
 * form decrypts it, a key derivation a load does not run, not an EncryptedPrivateKeyInfo); -1
 * with e (the budget of key derivation spent, out of memory or OpenSSL failed). */
static int repass_key(ak_repass *rp, const unsigned char *epki, size_t len, unsigned char **out,
                      size_t *outlen, ak_err *e)
{
    const unsigned char *q = epki;
    X509_SIG *sig = NULL, *nsig = NULL;
    PKCS8_PRIV_KEY_INFO *p8 = NULL;
    const X509_ALGOR *alg;
    int rc = 1, n;

    if (len <= LONG_MAX)
        sig = d2i_X509_SIG(NULL, &q, (long)len);
    if (sig == NULL || q != epki + len)
        goto done;
    X509_SIG_get0(sig, &alg, NULL);
    for (int f = 0; f < rp->nold && p8 == NULL; f++) {
        switch (kdf_charge(rp->budget, alg)) {
        case 0:
            break;
        case -2:
            rc = ak_fail(e, AK_ECORRUPT,
                         "its keys ask for more key derivation than %ld iterations in all; the "
                         "file is damaged or was made to stall apikey",
                         (long)AK_KDF_BUDGET);
            goto done;
        default:
            goto done;
        }
        p8 = PKCS8_decrypt(sig, rp->old[f], rp->old[f] != NULL ? (int)rp->oldlen : 0);
    }
    if (p8 == NULL)
        goto done;
    nsig = PKCS8_encrypt_ex(-1, EVP_aes_256_cbc(), rp->newpass, (int)rp->newlen, NULL, 16, rp->iter,
                            p8, NULL, NULL);
    *out = NULL;
    if (nsig == NULL || (n = i2d_X509_SIG(nsig, out)) <= 0) {
        rc = ak_fail_ssl(e, AK_ECRYPTO,
                         "protecting another tool's key with the new password "
                         "failed");
        goto done;
    }
    *outlen = (size_t)n;
    rc = 0;
done:
    ERR_clear_error();
    PKCS8_PRIV_KEY_INFO_free(p8); /* wipes the key it holds */
    X509_SIG_free(nsig);
    X509_SIG_free(sig);
    return rc;
}

/* Appends to out the bag SEQUENCE { bagId, [0] { value }, attrs }, where value is
 * [v, v + vlen) wrapped in the headers of wrap (outermost first, nwrap of them), and attrs the
 * bytes [attrs, attrs + alen) as they were. */
static int put_bag(ak_bytes *out, const oid_der *id, const unsigned tags[], const oid_der *inner,
                   int nwrap, const unsigned char *v, size_t vlen, const unsigned char *attrs,
                   size_t alen)
{
    size_t sizes[4], bag, total;
    unsigned char *p;
    int k;

    /* sizes[k]: the contents of the k-th header from the outside; the innermost holds v. */
    sizes[nwrap - 1] = vlen;
    for (k = nwrap - 1; k > 0; k--)
        sizes[k - 1] =
            der_tlv_size(sizes[k]) + (inner != NULL && k == 2 ? der_tlv_size(inner->n) : 0);
    bag = der_tlv_size(id->n) + der_tlv_size(sizes[0]) + alen;
    total = der_tlv_size(bag);
    if (bytes_reserve(out, total) != 0)
        return -1;
    p = der_put_header(out->p + out->len, DER_SEQUENCE, bag);
    p = put_oid(p, id);
    for (k = 0; k < nwrap; k++) {
        p = der_put_header(p, tags[k], sizes[k]);
        if (inner != NULL && k == 1)
            p = put_oid(p, inner);
    }
    memcpy(p, v, vlen);
    p += vlen;
    if (alen > 0)
        memcpy(p, attrs, alen);
    out->len += total;
    return 0;
}

int safebags_repass(const unsigned char *in, size_t len, ak_repass *rp, ak_bytes *out, int *changed,
                    ak_err *e)
{
    const unsigned char *p = in, *end = in + len;
    oids o;
    int rc = -1, n = 0;

    *changed = 0;
    if (oids_init(&o, e) != 0)
        return -1;
    while (p != end) {
        const unsigned char *bag = p, *val, *q, *qend, *id, *v, *attrs, *epki = NULL, *type = NULL;
        size_t vlen, idlen, tvlen, epkilen = 0, typelen = 0, bytes;
        unsigned tag;
        unsigned char *nkey = NULL;
        size_t nkeylen = 0;
        int r = 1, secret = 0;

        n++;
        if (der_next(&p, end, 0, &tag, &val, &vlen) != 0 || tag != DER_SEQUENCE) {
            ak_fail(e, AK_ECORRUPT, "bag %d of another tool is malformed", n);
            goto done;
        }
        bytes = (size_t)(p - bag);
        q = val;
        qend = val + vlen;
        if (der_next(&q, qend, 0, &tag, &id, &idlen) != 0 || tag != DER_OID ||
            der_next(&q, qend, 0, &tag, &v, &tvlen) != 0 || tag != DER_EXPLICIT_0) {
            r = 2; /* not a bag we can read: kept as it is */
        } else if (oid_is(id, idlen, &o.shrouded_key_bag)) {
            epki = v;
            epkilen = tvlen;
        } else if (oid_is(id, idlen, &o.secret_bag)) {
            /* [0] { SEQUENCE { type, [0] { OCTET STRING EncryptedPrivateKeyInfo } } }: a secret
             * key as Java writes it, protected as a private key is */
            const unsigned char *s = v, *send = v + tvlen, *w;
            size_t wlen;
            if (der_expect(&s, send, DER_SEQUENCE, &w, &wlen) == 0 && s == send) {
                s = w;
                send = w + wlen;
                if (der_expect(&s, send, DER_OID, &type, &typelen) == 0 &&
                    oid_is(type, typelen, &o.shrouded_key_bag) &&
                    der_expect(&s, send, DER_EXPLICIT_0, &w, &wlen) == 0 && s == send) {
                    s = w;
                    send = w + wlen;
                    if (der_expect(&s, send, DER_OCTET_STRING, &epki, &epkilen) != 0 || s != send)
                        epki = NULL;
                    secret = epki != NULL;
                }
            }
            if (!secret)
                r = 2;
        } else {
            r = 2;
        }
        attrs = q;
        if (r == 1)
            r = repass_key(rp, epki, epkilen, &nkey, &nkeylen, e);
        if (r < 0)
            goto done;
        if (r == 0) {
            static const unsigned shrouded_tags[] = {DER_EXPLICIT_0};
            static const unsigned secret_tags[] = {DER_EXPLICIT_0, DER_SEQUENCE, DER_EXPLICIT_0,
                                                   DER_OCTET_STRING};
            oid_der inner = {type, typelen};
            int bad = secret ? put_bag(out, &o.secret_bag, secret_tags, &inner, 4, nkey, nkeylen,
                                       attrs, (size_t)(qend - attrs))
                             : put_bag(out, &o.shrouded_key_bag, shrouded_tags, NULL, 1, nkey,
                                       nkeylen, attrs, (size_t)(qend - attrs));
            OPENSSL_free(nkey);
            if (bad) {
                ak_fail(e, AK_ENOMEM, "out of memory");
                goto done;
            }
            (*changed)++;
            continue;
        }
        if (r == 1) { /* a key the old password does not open: named, and refused */
            reader rd = {.oid = o, .names = rp->refused};
            size_t before = rp->refused->n;
            if (note_name(&rd, val, qend, e) != 0)
                goto done;
            if (rp->refused->n == before)
                rp->unnamed++;
        }
        if (bytes_reserve(out, bytes) != 0) {
            ak_fail(e, AK_ENOMEM, "out of memory");
            goto done;
        }
        memcpy(out->p + out->len, bag, bytes);
        out->len += bytes;
    }
    rc = 0;
done:
    oids_free(&o);
    return rc;
}
