/*
 * kdfbudget.c: how much key derivation a keystore file may make a load run. The file sets the
 * cost of its own key derivations (iteration counts, the KDF itself) and may hold any number of
 * encrypted contents, so a damaged or hostile file could stall whoever loads it for minutes.
 * Before any derivation runs, every one the file asks for is read and added up: its MAC's
 * (the PKCS#12 KDF of RFC 7292, or PBKDF2 under PBMAC1, RFC 9579) and each encrypted content's.
 * One load runs at most AK_KDF_BUDGET iterations in all, a MAC at most AK_ITER_MAX, and no KDF
 * whose cost is not an iteration count (scrypt under PBES2).
 */
#include "apikey.h"

#include <limits.h>
#include <openssl/asn1.h>
#include <openssl/asn1t.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

/* RFC 9579: PBMAC1-params ::= SEQUENCE { keyDerivationFunc AlgorithmIdentifier,
 * messageAuthScheme AlgorithmIdentifier }. OpenSSL has no type for it before 3.4. */
typedef struct {
    X509_ALGOR *kdf;
    X509_ALGOR *scheme;
} pbmac1_params;

static const ASN1_ITEM *pbmac1_params_it(void); /* its template, at the end */

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

/* Whether "" and no password (NULL) derive different keys: only in the PKCS#12 KDF (RFC 7292
 * B.2), which turns "" into a BMPString's terminating zeros. PBKDF2 and PKCS#5 v1 hash both as
 * zero octets. */
static int forms_differ(const X509_ALGOR *alg)
{
    switch (OBJ_obj2nid(alg->algorithm)) {
    case NID_pbe_WithSHA1And128BitRC4:
    case NID_pbe_WithSHA1And40BitRC4:
    case NID_pbe_WithSHA1And3_Key_TripleDES_CBC:
    case NID_pbe_WithSHA1And2_Key_TripleDES_CBC:
    case NID_pbe_WithSHA1And128BitRC2_CBC:
    case NID_pbe_WithSHA1And40BitRC2_CBC:
        return 1;
    default:
        return 0;
    }
}

/* The encryption of an encryptedData ContentInfo, or NULL (another type, or malformed). */
static const X509_ALGOR *content_alg(const PKCS7 *p7)
{
    if (OBJ_obj2nid(p7->type) != NID_pkcs7_encrypted || p7->d.encrypted == NULL ||
        p7->d.encrypted->enc_data == NULL)
        return NULL;
    return p7->d.encrypted->enc_data->algorithm;
}

/* The PBKDF2 of a PBMAC1 MAC (RFC 9579): 0 with *iter, or -1 with e. */
static int pbmac1_iterations(const X509_ALGOR *alg, long *iter, ak_err *e)
{
    const ASN1_ITEM *it = ASN1_ITEM_rptr(pbmac1_params);
    pbmac1_params *pm = NULL;
    PBKDF2PARAM *kdf = NULL;
    long keylen;
    int rc = -1;

    if (alg->parameter != NULL)
        pm = ASN1_TYPE_unpack_sequence(it, alg->parameter);
    if (pm == NULL) {
        ak_fail(e, AK_ECORRUPT,
                "its integrity check (a PBMAC1 MAC) has parameters that do not "
                "parse");
        goto done;
    }
    if (OBJ_obj2nid(pm->kdf->algorithm) != NID_id_pbkdf2) {
        ak_fail(e, AK_ECORRUPT,
                "its integrity check (a PBMAC1 MAC) derives its key with "
                "something other than PBKDF2, which RFC 9579 requires");
        goto done;
    }
    if (pm->kdf->parameter != NULL)
        kdf = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM), pm->kdf->parameter);
    /* RFC 9579: a salt given as such (not otherSource) and a keyLength, which is also the size
     * of the buffer OpenSSL derives the key into (the digest's, at most EVP_MAX_MD_SIZE). */
    if (kdf == NULL || kdf->iter == NULL || kdf->salt == NULL ||
        kdf->salt->type != V_ASN1_OCTET_STRING) {
        ak_fail(e, AK_ECORRUPT,
                "its integrity check (a PBMAC1 MAC) has PBKDF2 parameters that "
                "do not parse");
        goto done;
    }
    keylen = kdf->keylength != NULL ? ASN1_INTEGER_get(kdf->keylength) : 0;
    if (keylen < 1 || keylen > EVP_MAX_MD_SIZE) {
        ak_fail(e, AK_ECORRUPT,
                "its integrity check (a PBMAC1 MAC) asks for a key of %ld bytes, outside 1 to %d",
                keylen, EVP_MAX_MD_SIZE);
        goto done;
    }
    *iter = ASN1_INTEGER_get(kdf->iter);
    rc = 0;
done:
    PBKDF2PARAM_free(kdf);
    ASN1_item_free((ASN1_VALUE *)pm, it);
    ERR_clear_error();
    return rc;
}

/* The MAC's key derivation: 0 with *mac, or -1 with e. */
static int mac_iterations(const PKCS12 *p12, kdf_mac *mac, ak_err *e)
{
    const X509_ALGOR *alg = NULL;
    const ASN1_INTEGER *iter = NULL;

    PKCS12_get0_mac(NULL, &alg, NULL, &iter, p12);
    if (alg == NULL)
        return ak_fail(e, AK_ECORRUPT, "it has no integrity check (MAC), which apikey requires");
    mac->pbmac1 = OBJ_obj2nid(alg->algorithm) == NID_pbmac1;
    if (mac->pbmac1) /* MacData's own iterations are not used (RFC 9579) */
        return pbmac1_iterations(alg, &mac->iter, e);
    mac->iter = iter != NULL ? ASN1_INTEGER_get(iter) : 1; /* DEFAULT 1 */
    ERR_clear_error();
    return 0;
}

int kdf_plan(long *budget, const PKCS12 *p12, const STACK_OF(PKCS7) *cis, kdf_mac *mac, ak_err *e)
{
    const char *what;
    long total, contents = 0, iter;
    int n = 0;

    if (mac_iterations(p12, mac, e) != 0)
        return -1;
    what = mac->pbmac1 ? "its integrity check (a PBMAC1 MAC) asks for %ld PBKDF2 iterations, "
                         "outside 1 to %ld"
                       : "its integrity check (MAC) asks for %ld iterations, outside 1 to %ld";
    if (mac->iter < 1 || mac->iter > AK_ITER_MAX)
        return ak_fail(e, AK_ECORRUPT, what, mac->iter, AK_ITER_MAX);
    for (int i = 0; i < sk_PKCS7_num(cis); i++) {
        const X509_ALGOR *alg = content_alg(sk_PKCS7_value(cis, i));
        if (alg == NULL || pbe_iterations(alg, &iter) != 0)
            continue; /* not opened, so not derived */
        if (iter < 1)
            return ak_fail(e, AK_ECORRUPT,
                           "content %d: its encryption asks for %ld iterations, fewer than 1",
                           i + 1, iter);
        contents = iter > LONG_MAX - contents ? LONG_MAX : contents + iter;
        n++;
    }
    total = contents > LONG_MAX - mac->iter ? LONG_MAX : contents + mac->iter;
    if (total > *budget)
        return ak_fail(e, AK_ECORRUPT,
                       "it asks for %ld key derivation iterations in all (%ld for its integrity "
                       "check, %ld for %d encrypted content%s), more than the %ld one load may "
                       "run; the file is damaged or was made to stall apikey",
                       total, mac->iter, contents, n, n == 1 ? "" : "s", *budget);
    *budget -= total;
    return 0;
}

int kdf_charge(long *budget, const X509_ALGOR *alg)
{
    long iter;

    switch (pbe_iterations(alg, &iter)) {
    case 0:
        if (iter < 1 || iter > *budget)
            return -2;
        *budget -= iter;
        return 0;
    case 1:
        return 1;
    default:
        return -1;
    }
}

int kdf_opens(const X509_ALGOR *alg)
{
    long iter;
    return pbe_iterations(alg, &iter) == 0 && iter >= 1;
}

int kdf_charge_retry(long *budget, const X509_ALGOR *alg, int ci, ak_err *e)
{
    long iter;

    if (!forms_differ(alg) || pbe_iterations(alg, &iter) != 0 || iter < 1)
        return 1;
    if (iter > *budget)
        return ak_fail(e, AK_ECORRUPT,
                       "content %d does not decrypt with the empty password as \"\", and trying "
                       "no password would take %ld more key derivation iterations, over the %ld "
                       "left of the %ld one load may run",
                       ci, iter, *budget, (long)AK_KDF_BUDGET);
    *budget -= iter;
    return 0;
}

/* clang-format off: the template macros, to the end of the file */
ASN1_SEQUENCE(pbmac1_params) = {
    ASN1_SIMPLE(pbmac1_params, kdf, X509_ALGOR),
    ASN1_SIMPLE(pbmac1_params, scheme, X509_ALGOR),
} static_ASN1_SEQUENCE_END(pbmac1_params)
