/*
 * p12.c: the keystore file as PKCS#12 (RFC 7292), through OpenSSL: the PFX and its MAC (an
 * empty password tried in both of its forms), the AuthenticatedSafe and the PBES2 encryption
 * of our content. The bags inside each content are read and written by safebags.c, what key
 * derivation a file may ask for is kdfbudget.c's rule. Whatever other tools put in the file
 * (certificates, private keys, their own secrets, Java entries) is kept and written back.
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
#include <string.h>

#define SALT_LEN 16

struct ak_foreign {
    STACK_OF(PKCS7) *cis; /* ContentInfos that hold none of our bags, as they were read */
    ak_bytes bags;        /* DER SafeBags that shared a ContentInfo with ours, back to back */
    ak_entries names;     /* the aliases of every bag of theirs that was read, with kinds */
};

typedef struct {
    const char *forms[2]; /* the password as the MAC verified, then the other empty form */
    int nforms;
    int passlen;
    ak_entries entries;
    ak_foreign *foreign;
    long kdf_budget; /* iterations left once kdf_plan charged each derivation, for retries */
    const unsigned char *buf; /* the file's bytes, to decode a content again (load_content) */
    size_t len;
} loader;

void foreign_free(ak_foreign *f)
{
    if (f == NULL)
        return;
    sk_PKCS7_pop_free(f->cis, PKCS7_free);
    OPENSSL_clear_free(f->bags.p, f->bags.cap);
    entries_clear(&f->names);
    OPENSSL_free(f);
}

const ak_entries *foreign_names(const ak_foreign *f)
{
    return f != NULL ? &f->names : NULL;
}

/* ---- reading ----------------------------------------------------------------------------- */

/*
 * Decrypts encryptedData ContentInfo number ci with the password, in the form the MAC verified
 * and then the other empty form (the PKCS#12 KDF gives different keys for "" and NULL, and a
 * file may mix them). 0 with the plaintext; 1 when no form decrypts it (another password, or
 * a cipher this OpenSSL lacks, such as the RC2 of old Java and OpenSSL files) or its key
 * derivation is not one a load runs (kdf_opens): the caller keeps the content unopened; -1
 * when the ContentInfo is malformed; -2 with e when the other form would take more key
 * derivation than the load has left (the first was charged by kdf_plan).
 */
static int decrypt_content(loader *ld, const PKCS7 *p7, int ci, unsigned char **plain,
                           size_t *plainlen, ak_err *e)
{
    const PKCS7_ENC_CONTENT *ec = p7->d.encrypted != NULL ? p7->d.encrypted->enc_data : NULL;

    if (ec == NULL || ec->algorithm == NULL || ec->enc_data == NULL)
        return -1;
    if (!kdf_opens(ec->algorithm))
        return 1;
    for (int f = 0; f < ld->nforms; f++) {
        unsigned char *out = NULL;
        int n = 0;
        if (f > 0) {
            int r = kdf_charge_retry(&ld->kdf_budget, ec->algorithm, ci, e);
            if (r < 0)
                return -2;
            if (r > 0)
                break;
        }
        if (PKCS12_pbe_crypt_ex(ec->algorithm, ld->forms[f], ld->passlen, ec->enc_data->data,
                                ec->enc_data->length, &out, &n, 0, NULL, NULL) == NULL)
            continue;
        if (n > 0 && safebags_plausible(out, (size_t)n)) {
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

static PKCS12 *parse_pfx(const unsigned char *buf, size_t len, ak_err *e);

/* Puts back ContentInfo i of cis, whose ciphertext load_content dropped, as the file has it. */
static int restore_content(loader *ld, STACK_OF(PKCS7) *cis, int i, ak_err *e)
{
    PKCS12 *p12 = parse_pfx(ld->buf, ld->len, e);
    STACK_OF(PKCS7) *again = p12 != NULL ? PKCS12_unpack_authsafes(p12) : NULL;
    int rc = -1;

    if (again != NULL && sk_PKCS7_num(again) == sk_PKCS7_num(cis)) {
        PKCS7 *dropped = sk_PKCS7_value(cis, i);
        sk_PKCS7_set(cis, i, sk_PKCS7_value(again, i));
        PKCS7_free(dropped);
        sk_PKCS7_set(again, i, NULL);
        rc = 0;
    } else if (p12 != NULL) {
        ERR_clear_error();
        ak_fail(e, AK_ENOMEM, "out of memory");
    }
    sk_PKCS7_pop_free(again, PKCS7_free);
    PKCS12_free(p12);
    return rc;
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
        ours = safebags_read(p7->d.data->data, (size_t)p7->d.data->length, i + 1, &ld->entries,
                             &ld->foreign->bags, &ld->foreign->names, &ld->kdf_budget, &nbags, e);
        break;
    case NID_pkcs7_encrypted: {
        unsigned char *plain = NULL;
        size_t n = 0;
        int r = decrypt_content(ld, p7, i + 1, &plain, &n, e);
        if (r == -2)
            return -1;
        if (r < 0)
            return ak_fail(e, AK_ECORRUPT, "content %d: its encrypted data is missing", i + 1);
        if (r == 0) {
            /* The ciphertext goes as soon as it is decrypted, so that the entries do not grow
             * beside the file, the ciphertext and the plaintext at once; a content that turns
             * out to hold none of ours is decoded again from the file to be kept whole. */
            PKCS7_ENC_CONTENT *ec = p7->d.encrypted->enc_data;
            ASN1_OCTET_STRING_free(ec->enc_data);
            ec->enc_data = NULL;
            ours = safebags_read(plain, n, i + 1, &ld->entries, &ld->foreign->bags,
                                 &ld->foreign->names, &ld->kdf_budget, &nbags, e);
            OPENSSL_clear_free(plain, n);
            if (ours == 0 && nbags != 0 && restore_content(ld, cis, i, e) != 0)
                return -1;
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
        announced = der_announced_size(buf, len);
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

/*
 * Verifies the MAC, whose first try kdf_plan charged, and leaves in ld->forms the password
 * forms to decrypt with. With the empty password, the other form is tried when it derives
 * another key (the classic MAC; not PBMAC1's PBKDF2) and the budget has room for it.
 */
static int check_mac(loader *ld, PKCS12 *p12, const kdf_mac *mac, const char *pass, ak_err *e)
{
    if (mac->pbmac1 && OpenSSL_version_num() < 0x30400000L)
        return ak_fail(e, AK_ECORRUPT,
                       "its integrity check is a PBMAC1 MAC (RFC 9579), which this OpenSSL (%s) "
                       "cannot check; OpenSSL 3.4 or later can",
                       OpenSSL_version(OPENSSL_VERSION_STRING));
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
        if (!mac->pbmac1) { /* PBKDF2 derives from NULL the key it derived from "" */
            if (mac->iter > ld->kdf_budget)
                return ak_fail(e, AK_EBADPASSWORD,
                               "wrong password, or the file is damaged (its integrity check "
                               "failed with the empty password as \"\"; trying no password would "
                               "take %ld more key derivation iterations, over the %ld left of the "
                               "%ld one load may run)",
                               mac->iter, ld->kdf_budget, (long)AK_KDF_BUDGET);
            ld->kdf_budget -= mac->iter;
            ld->forms[0] = NULL;
            ld->forms[1] = "";
            if (PKCS12_verify_mac(p12, NULL, 0)) {
                ERR_clear_error();
                return 0;
            }
        }
    }
    if (ERR_peek_error() != 0) /* not a mismatch: the MAC could not be computed */
        return ak_fail_ssl(e, AK_ECORRUPT, "its integrity check (MAC) cannot be computed");
    return ak_fail(e, AK_EBADPASSWORD,
                   "wrong password, or the file is damaged (its integrity check failed)");
}

int p12_load(const unsigned char *buf, size_t len, const char *pass, size_t passlen,
             ak_entries *out, ak_foreign **foreign, ak_err *e)
{
    loader ld;
    kdf_mac mac;
    PKCS12 *p12 = NULL;
    STACK_OF(PKCS7) *cis = NULL;
    int rc = -1;

    *foreign = NULL;
    memset(&ld, 0, sizeof ld);
    if (passlen > 0 && pass == NULL)
        return ak_fail(e, AK_EINVALID, "invalid password");
    if (passlen > INT_MAX)
        return ak_fail(e, AK_ELIMIT, "the password is too long");
    ld.passlen = (int)passlen;
    ld.kdf_budget = AK_KDF_BUDGET;
    ld.buf = buf;
    ld.len = len;
    ERR_clear_error();
    ld.foreign = OPENSSL_zalloc(sizeof *ld.foreign);
    if (ld.foreign == NULL) {
        ak_fail(e, AK_ENOMEM, "out of memory");
        goto done;
    }
    p12 = parse_pfx(buf, len, e);
    if (p12 == NULL)
        goto done;
    if (!PKCS12_mac_present(p12)) {
        ak_fail(e, AK_ECORRUPT, "it has no integrity check (MAC), which apikey requires");
        goto done;
    }
    /* Decoded before the MAC is checked (no key derivation in that) so that every derivation
     * the file asks for is counted before any runs. */
    cis = PKCS12_unpack_authsafes(p12);
    if (cis == NULL) {
        ERR_clear_error();
        ak_fail(e, AK_ECORRUPT, "not a PKCS#12 keystore: its list of contents is malformed");
        goto done;
    }
    if (kdf_plan(&ld.kdf_budget, p12, cis, &mac, e) != 0 || check_mac(&ld, p12, &mac, pass, e) != 0)
        goto done;
    PKCS12_free(p12);
    p12 = NULL;
    for (int i = 0; i < sk_PKCS7_num(cis); i++) {
        if (load_content(&ld, cis, i, e) != 0)
            goto done;
    }
    *out = ld.entries;
    memset(&ld.entries, 0, sizeof ld.entries);
    if (ld.foreign->cis != NULL || ld.foreign->bags.len > 0 || ld.foreign->names.n > 0) {
        *foreign = ld.foreign;
        ld.foreign = NULL;
    }
    rc = 0;
done:
    sk_PKCS7_pop_free(cis, PKCS7_free);
    PKCS12_free(p12);
    foreign_free(ld.foreign);
    entries_clear(&ld.entries);
    return rc;
}

/* ---- writing ----------------------------------------------------------------------------- */

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
        ak_fail(e, AK_ELIMIT, "too many API keys for one keystore file");
        return NULL;
    }
    if (RAND_bytes(salt, sizeof salt) != 1) {
        ak_fail_ssl(e, AK_ECRYPTO, "the random generator failed");
        goto fail;
    }
    alg = PKCS5_pbe2_set_iv_ex(EVP_aes_256_cbc(), iter, salt, sizeof salt, NULL, NID_hmacWithSHA256,
                               NULL);
    if (alg == NULL || PKCS12_pbe_crypt_ex(alg, pass, passlen, list, (int)len, &ct, &ctlen, 1, NULL,
                                           NULL) == NULL) {
        ak_fail_ssl(e, AK_ECRYPTO, "the encryption of the API keys failed");
        goto fail;
    }
    if ((os = ASN1_OCTET_STRING_new()) == NULL || (p7 = PKCS7_new()) == NULL ||
        !PKCS7_set_type(p7, NID_pkcs7_encrypted)) {
        ak_fail(e, AK_ENOMEM, "out of memory");
        goto fail;
    }
    ASN1_STRING_set0(os, ct, ctlen);
    ec = p7->d.encrypted->enc_data;
    X509_ALGOR_free(ec->algorithm);
    ec->algorithm = alg;
    ASN1_OCTET_STRING_free(ec->enc_data);
    ec->enc_data = os;
    return p7;
fail:
    OPENSSL_free(ct);
    ASN1_OCTET_STRING_free(os);
    X509_ALGOR_free(alg);
    PKCS7_free(p7);
    return NULL;
}

int p12_save(const ak_entries *in, const ak_foreign *foreign, const char *pass, size_t passlen,
             int iter, unsigned char **out, size_t *outlen, ak_err *e)
{
    ak_bytes plain = {NULL, 0, 0};
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
    if (iter < 1 || pass == NULL)
        return ak_fail(e, AK_EINVALID, "invalid iteration count or password");
    if (passlen > INT_MAX)
        return ak_fail(e, AK_ELIMIT, "the password is too long");
    ERR_clear_error();
    if (safebags_write(in, foreign != NULL ? &foreign->bags : NULL, &plain, &list, &listlen, e) !=
        0)
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
    if (p12 == NULL) {
        ak_fail_ssl(e, AK_ECRYPTO, "encoding its list of contents failed");
        goto done;
    }
    if (!PKCS12_set_mac(p12, pass, (int)passlen, NULL, SALT_LEN, iter, EVP_sha256())) {
        ak_fail_ssl(e, AK_ECRYPTO, "computing its integrity check (MAC) failed");
        goto done;
    }
    n = i2d_PKCS12(p12, &der);
    if (n <= 0) {
        ak_fail_ssl(e, AK_ECRYPTO, "encoding the file failed");
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
    return rc;
}
/* ---- another password for other tools' content ------------------------------------------- */

/* A SafeContents of the bags [bags, bags + len), OPENSSL_malloc'd in *out. 0, or -1. */
static int wrap_list(const unsigned char *bags, size_t len, unsigned char **out, size_t *outlen)
{
    *outlen = der_tlv_size(len);
    *out = OPENSSL_malloc(*outlen);
    if (*out == NULL)
        return -1;
    memcpy(der_put_header(*out, DER_SEQUENCE, len), bags, len);
    return 0;
}

/* A data ContentInfo holding list. */
static PKCS7 *data_content(const unsigned char *list, size_t len)
{
    PKCS7 *p7 = PKCS7_new();
    if (p7 == NULL || !PKCS7_set_type(p7, NID_pkcs7_data) || len > INT_MAX ||
        !ASN1_OCTET_STRING_set(p7->d.data, list, (int)len)) {
        PKCS7_free(p7);
        return NULL;
    }
    return p7;
}

/* The message of a refusal: the names of the keys that cannot be protected again. */
static void refusal(ak_err *e, const ak_repass *rp, int contents)
{
    char *m = e->msg;
    size_t size = sizeof e->msg - 200, used; /* room kept for the advice */
    size_t i;

    e->code = AK_EINVALID;
    used = (size_t)snprintf(m, size,
                            "other tools' entries are protected with a password that is "
                            "not the keystore's, so they cannot be protected with the "
                            "new one:");
    for (i = 0; i < rp->refused->n && used < size; i++) {
        const ak_entry *en = &rp->refused->v[i];
        const char *kind = en->kind == AK_KIND_PRIVATE  ? "a private key"
                           : en->kind == AK_KIND_SECRET ? "a secret key"
                                                        : "an entry";
        size_t before = used;
        used += (size_t)snprintf(m + used, size - used, "%s '%.*s' (%s)", i > 0 ? "," : "",
                                 (int)en->alias_len, en->alias, kind);
        /* a name from the file: its control bytes are not written raw to a terminal */
        for (size_t j = before; j < used && j < size; j++)
            if ((unsigned char)m[j] < 0x20 || m[j] == 0x7f)
                m[j] = '?';
    }
    if (used >= size)
        used = size - 1;
    if (i < rp->refused->n)
        used +=
            (size_t)snprintf(m + used, sizeof e->msg - used, " and %zu more", rp->refused->n - i);
    if (rp->unnamed > 0)
        used += (size_t)snprintf(m + used, sizeof e->msg - used, "%s %d key%s without a name",
                                 rp->refused->n > 0 ? "," : "", rp->unnamed,
                                 rp->unnamed == 1 ? "" : "s");
    if (contents > 0)
        used += (size_t)snprintf(
            m + used, sizeof e->msg - used, "%s %d encrypted content%s it cannot open",
            rp->refused->n > 0 || rp->unnamed > 0 ? "," : "", contents, contents == 1 ? "" : "s");
    snprintf(m + used, sizeof e->msg - used,
             "; give them the keystore's password with the tool that made them, or remove them; "
             "nothing was written");
}

int p12_repass(ak_foreign *f, const char *oldpass, size_t oldlen, const char *newpass,
               size_t newlen, int iter, int *count, ak_err *e)
{
    loader ld;
    ak_entries refused = {0};
    ak_repass rp;
    ak_bytes bags = {NULL, 0, 0}, list = {NULL, 0, 0};
    PKCS7 **fresh = NULL;
    int n = 0, contents = 0, changed = 0, rc = -1;

    *count = 0;
    if (f == NULL)
        return 0;
    if (oldlen > INT_MAX || newlen > INT_MAX)
        return ak_fail(e, AK_ELIMIT, "the password is too long");
    memset(&ld, 0, sizeof ld);
    ld.passlen = (int)oldlen;
    ld.kdf_budget = AK_KDF_BUDGET;
    if (oldlen > 0) {
        ld.forms[0] = oldpass;
        ld.nforms = 1;
    } else {
        ld.forms[0] = "";
        ld.forms[1] = NULL;
        ld.nforms = 2;
    }
    memset(&rp, 0, sizeof rp);
    rp.old[0] = ld.forms[0];
    rp.old[1] = ld.forms[1];
    rp.nold = ld.nforms;
    rp.oldlen = oldlen;
    rp.newpass = newlen > 0 ? newpass : "";
    rp.newlen = newlen;
    rp.iter = iter;
    rp.budget = &ld.kdf_budget;
    rp.refused = &refused;
    ERR_clear_error();

    /* The bags that share our content: written by p12_save, encrypted with the new password. */
    if (f->bags.len > 0) {
        if (safebags_repass(f->bags.p, f->bags.len, &rp, &bags, &changed, e) != 0)
            goto done;
        *count += changed;
    }
    n = sk_PKCS7_num(f->cis);
    if (n > 0 && (fresh = OPENSSL_zalloc((size_t)n * sizeof *fresh)) == NULL)
        goto nomem;
    for (int i = 0; i < n; i++) {
        PKCS7 *p7 = sk_PKCS7_value(f->cis, i);
        unsigned char *plain = NULL, *wrapped = NULL;
        size_t plainlen = 0, wrappedlen = 0;
        int nid = OBJ_obj2nid(p7->type), r, encrypted = nid == NID_pkcs7_encrypted;

        if (nid == NID_pkcs7_data) {
            if (p7->d.data == NULL)
                continue;
            plain = p7->d.data->data;
            plainlen = (size_t)p7->d.data->length;
        } else if (encrypted) {
            const PKCS7_ENC_CONTENT *ec =
                p7->d.encrypted != NULL ? p7->d.encrypted->enc_data : NULL;
            if (ec == NULL || ec->algorithm == NULL) {
                contents++;
                continue;
            }
            if (kdf_opens(ec->algorithm) && kdf_charge(&ld.kdf_budget, ec->algorithm) == -2) {
                ak_fail(e, AK_ECORRUPT, "content %d asks for more key derivation than is left",
                        i + 1);
                goto done;
            }
            r = decrypt_content(&ld, p7, i + 1, &plain, &plainlen, e);
            if (r == -2)
                goto done;
            if (r != 0) { /* another password, or a cipher or key derivation not opened */
                contents++;
                continue;
            }
        } else {
            continue; /* envelopedData and the like: not protected with a password */
        }
        list.len = 0;
        r = safebags_split(plain, plainlen, i + 1, &list, e);
        if (r == 0) {
            ak_bytes out = {NULL, 0, 0};
            r = safebags_repass(list.p, list.len, &rp, &out, &changed, e);
            if (r == 0 && (encrypted || changed > 0)) {
                if (wrap_list(out.p, out.len, &wrapped, &wrappedlen) != 0)
                    r = ak_fail(e, AK_ENOMEM, "out of memory");
                else if (encrypted)
                    r = (fresh[i] = encrypt_list(wrapped, wrappedlen, rp.newpass, (int)newlen, iter,
                                                 e)) != NULL
                            ? 0
                            : -1;
                else if ((fresh[i] = data_content(wrapped, wrappedlen)) == NULL)
                    r = ak_fail(e, AK_ENOMEM, "out of memory");
                *count += changed + encrypted;
            }
            OPENSSL_clear_free(out.p, out.cap);
            if (wrapped != NULL)
                OPENSSL_clear_free(wrapped, wrappedlen);
        }
        if (encrypted)
            OPENSSL_clear_free(plain, plainlen);
        if (r != 0)
            goto done;
    }
    if (refused.n > 0 || rp.unnamed > 0 || contents > 0) {
        refusal(e, &rp, contents);
        goto done;
    }
    /* All of it could be: now f changes. */
    for (int i = 0; i < n; i++) {
        if (fresh[i] != NULL) {
            PKCS7 *was = sk_PKCS7_value(f->cis, i);
            sk_PKCS7_set(f->cis, i, fresh[i]); /* returns the new one */
            PKCS7_free(was);
            fresh[i] = NULL;
        }
    }
    if (f->bags.len > 0) {
        OPENSSL_clear_free(f->bags.p, f->bags.cap);
        f->bags = bags;
        bags.p = NULL;
        bags.cap = 0;
    }
    rc = 0;
    goto done;
nomem:
    ak_fail(e, AK_ENOMEM, "out of memory");
done:
    for (int i = 0; fresh != NULL && i < n; i++)
        PKCS7_free(fresh[i]);
    OPENSSL_free(fresh);
    OPENSSL_clear_free(bags.p, bags.cap);
    OPENSSL_clear_free(list.p, list.cap);
    entries_clear(&refused);
    ERR_clear_error();
    return rc;
}
