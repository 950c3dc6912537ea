/*
 * kdfbudget.c: how much key derivation a keystore file may make a load run. The file sets the
 * cost of its own key derivations (iteration counts, the KDF itself) and may hold any number of
 * encrypted contents, so a damaged or hostile file could stall whoever loads it for minutes.
 * One load runs at most AK_KDF_BUDGET iterations in all, and no KDF whose cost is not an
 * iteration count (scrypt under PBES2).
 */
#include "apikey.h"

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

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
