/*
 * apikey.h: the internal interfaces between the files of the C core.
 * Nothing declared here is exported from the module; only luaopen_apikey_core is.
 *
 * Layers: a file calls only the files on the lines below its own (docs/ARCHITECTURE.md draws
 * them with the path of a check and of a create):
 *   binding.c                          the Lua binding, module apikey.core
 *   keystore.c                         the model: entries, hash index, create/revoke/verify
 *   p12.c              storage.c       the PKCS#12 file through OpenSSL; the file on disk
 *   safebags.c         kdfbudget.c     the bag list by hand; the key-derivation budget
 *   record.c  alias.c  entries.c       one record; alias text; the entry list
 *   timeutil.c  der.c  error.c         dates; DER primitives; the error value
 * and below them all, the libraries (OpenSSL, libacl, libattr) and the OS. Every file may call
 * error.c; binding.c also calls timeutil.c, for the dates of the Lua API.
 */
#ifndef APIKEY_H
#define APIKEY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define AK_HASH_LEN 32   /* SHA-256 of the key text */
#define AK_HINT_LEN 4    /* the key's last characters, shown by `list` */
#define AK_KEY_LEN 36    /* a UUID in text form */
#define AK_ALIAS_MAX 128 /* bytes of UTF-8 */
#define AK_NO_EXPIRY INT64_MIN
/* The latest time the format holds, 9999-12-31T23:59:59Z: a GeneralizedTime with a 4-digit year.
 * Every time the core accepts lies in 0 (1970) .. AK_TIME_MAX. */
#define AK_TIME_MAX INT64_C(253402300799)
/* The most PBKDF2/MAC iterations a keystore may ask for: the most we write, and the most we
 * read (more is a damaged or hostile file, made to stall whoever loads it). */
#define AK_ITER_MAX 10000000L

/* The version, here and nowhere else: apikey.version and `apikey --version` print it. */
#define APIKEY_VERSION "0.1.0"

/* The secretTypeId of our SecretBags: an OID under 2.25 (made from a UUID, ITU-T X.667). */
#define AK_RECORD_OID "2.25.230069031340117737368073348630963488319"
#define AK_RECORD_OID_SN "apikeyRecordV1"
#define AK_RECORD_OID_LN "apikey record version 1"

/* ---- errors (error.c) ------------------------------------------------------------------- */

/* Stable codes; their names (ak_code_name) are part of the Lua API. */
typedef enum {
    AK_OK = 0,
    AK_EEXISTS,      /* "exists": the alias is taken */
    AK_ENOTFOUND,    /* "notfound": no such alias */
    AK_EBADPASSWORD, /* "badpassword": the MAC does not verify with the password given */
    AK_ECORRUPT,     /* "corrupt": not a PKCS#12 file, truncated, or a record we cannot read */
    AK_EIO,          /* "io": an OS call failed */
    AK_ELOCKED,      /* "locked": another writer held the lock for too long */
    AK_EINVALID,     /* "invalid": a bad argument value (alias, date) */
    AK_EINSECURE,    /* "insecure": keystore writable by group or others */
    AK_ENOMEM,       /* "nomem": out of memory */
    AK_ECRYPTO,      /* "crypto": OpenSSL failed (random, encryption, MAC, encoding) */
    AK_ELIMIT,       /* "limit": a limit reached (too many keys, a size over a bound) */
} ak_code;

typedef struct {
    ak_code code;
    char msg[512]; /* one line a user can act on: what failed, on which file, what to do */
} ak_err;

/* Sets e (code and printf-style message) and returns -1, so a failure is one line:
 *   return ak_fail(e, AK_EIO, "cannot open %s: %s", path, strerror(errno)); */
int ak_fail(ak_err *e, ak_code code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Like ak_fail, then appends ": <reason>" from OpenSSL's error queue and clears the queue. */
int ak_fail_ssl(ak_err *e, ak_code code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
const char *ak_code_name(ak_code code);

/* ---- DER and UTF-8 primitives (der.c) -------------------------------------------------------- */

/* The identifier octets of the DER types the records and the SafeBags use. */
enum {
    DER_INTEGER = 0x02,
    DER_OCTET_STRING = 0x04,
    DER_OID = 0x06,
    DER_UTF8_STRING = 0x0c,
    DER_GENERALIZED_TIME = 0x18,
    DER_BMP_STRING = 0x1e,
    DER_SEQUENCE = 0x30,
    DER_SET = 0x31,
    DER_EXPLICIT_0 = 0xa0, /* [0], constructed */
};

/*
 * Splits the next TLV off [*p, end): *tag is its first identifier octet, [*val, *val + *vlen)
 * its contents, and *p moves past it. Returns 0; -1 when malformed or running past end, and
 * when strict also for what DER forbids (non-minimal lengths, indefinite lengths); 1 (not
 * strict, constructed only) for an indefinite length (BER), the contents taken to run to end.
 */
int der_next(const unsigned char **p, const unsigned char *end, int strict, unsigned *tag,
             const unsigned char **val, size_t *vlen);
/* Strict der_next of a TLV that must carry tag: 0, or -1. */
int der_expect(const unsigned char **p, const unsigned char *end, unsigned tag,
               const unsigned char **val, size_t *vlen);
/* Octets of the DER length of n (1-5), of a whole TLV with n octets of contents, and the
 * header (tag, length) written at p. */
size_t der_len_octets(size_t n);
size_t der_tlv_size(size_t n);
unsigned char *der_put_header(unsigned char *p, unsigned tag, size_t n);
/* The size, header included, that the SEQUENCE starting buf announces (so a file cut short
 * can be told from one that is not DER at all); 0 when buf does not start one. */
size_t der_announced_size(const unsigned char *buf, size_t len);
/* Length (1-4) of the valid UTF-8 character at s (at most n bytes), or 0 (overlong, a
 * surrogate, beyond U+10FFFF, truncated); *cp gets the code point. */
size_t utf8_char(const unsigned char *s, size_t n, unsigned long *cp);

/* ---- one API key record (record.c) ------------------------------------------------------- */

#define AK_SCOPE_MAX 64  /* bytes of one scope name */
#define AK_SCOPES_MAX 32 /* scopes of one key */

/* What is kept per key. The key text itself is never kept. All zero bytes but the times is a
 * key with full access that was not rotated. */
typedef struct {
    unsigned char hash[AK_HASH_LEN]; /* SHA-256(key text) */
    int64_t expires;                 /* Unix seconds, UTC, or AK_NO_EXPIRY */
    int64_t grace_end;               /* when rotated: Unix seconds, UTC, the end of its grace */
    unsigned char rotated;           /* 1: replaced by `rotate`, valid until grace_end */
    char hint[AK_HINT_LEN + 1];      /* last 4 characters of the key, NUL-terminated */
    int64_t created;                 /* Unix seconds, UTC */
    /* The key's scopes: the contents of a SEQUENCE OF UTF8String, each a scope name (1 to
     * AK_SCOPE_MAX bytes of letters, digits and ":._-", short-form lengths), 1 to AK_SCOPES_MAX
     * of them, no two alike; NULL (and 0) for full access. Borrowed: record_decode points into
     * its input; an entry holds its own copy (entries_push copies it). */
    const unsigned char *scopes;
    size_t scopes_len;
} ak_record;

/*
 * DER:  ApiKeyRecord ::= SEQUENCE {
 *          version  INTEGER (1 | 2),
 *          hash     OCTET STRING (SIZE (32)),
 *          hint     UTF8String,
 *          created  GeneralizedTime,           -- YYYYMMDDHHMMSSZ
 *          expires  GeneralizedTime OPTIONAL,
 *          -- version 2 only:
 *          scopes   [0] IMPLICIT SEQUENCE SIZE (1..32) OF UTF8String OPTIONAL,
 *          rotated  [1] IMPLICIT GeneralizedTime OPTIONAL,  -- the end of its grace
 *          ...                                 -- later fields; skipped
 *       }
 * A record with scopes or rotated is version 2, and only such a record: a key without them is
 * written as version 1, byte for byte as before. Decoders before version 2 accept version 1
 * only, so they refuse a scoped key (and the whole file) rather than give it full access; and
 * they skip fields appended after expires, so scopes never go in a version 1 record. A field
 * that an older decoder may skip is appended in the same version; one it must not skip raises
 * the version. A version 1 record's appended fields are skipped, never read as scopes.
 * record_encode: *der is OPENSSL_malloc'd, caller OPENSSL_free's it. Returns 0, or -1 on
 * allocation failure or a field out of range. record_decode: returns 0, or -1 if the bytes are
 * not a valid record (never reads past len); r->scopes then points into der.
 */
int record_encode(const ak_record *r, unsigned char **der, size_t *len);
int record_decode(const unsigned char *der, size_t len, ak_record *r);
/* When the key of record r stops being valid: its expiry, or the end of its grace when it was
 * rotated, the earlier; AK_UNTIL_NEVER for a key that does not expire. A record's times are at
 * most AK_TIME_MAX, so never is none of them. */
#define AK_UNTIL_NEVER INT64_MAX
static inline int64_t record_until(const ak_record *r)
{
    int64_t until = r->expires == AK_NO_EXPIRY ? AK_UNTIL_NEVER : r->expires;
    if (r->rotated && r->grace_end < until)
        until = r->grace_end;
    return until;
}
/* Whether a key valid until until (record_until) is refused as expired at now: never is never,
 * even at the last now a caller may give (INT64_MAX). Inline: it runs on every check. */
static inline int until_passed(int64_t until, int64_t now)
{
    return until <= now && until != AK_UNTIL_NEVER;
}
/* Whether the key of record r is refused as expired at now. */
static inline int record_expired(const ak_record *r, int64_t now)
{
    return until_passed(record_until(r), now);
}
/* Whether [s, s + n) is a valid scope list (as r->scopes above): 0, or -1. */
int record_scopes_valid(const unsigned char *s, size_t n);
/* Whether a key with record r may act in scope [name, name + len): a key with full access
 * (no scopes) may do anything. */
int record_has_scope(const ak_record *r, const char *name, size_t len);

/* ---- entries: a record with its alias ------------------------------------------------------ */

/* What an entry is: one of our API keys, or (in the list of other tools' names) what Java
 * would call it. */
typedef enum {
    AK_KIND_APIKEY = 0,
    AK_KIND_SECRET,     /* another tool's secret key (Java's SecretKeyEntry) */
    AK_KIND_PRIVATE,    /* a private key */
    AK_KIND_CERT,       /* a certificate */
    AK_KIND_OTHER,      /* any other bag */
    AK_KIND_METRICSHUB, /* an API key of MetricsHub's: "api_key:ALIAS", the key in the clear */
} ak_kind;

typedef struct {
    char *alias;      /* malloc'd UTF-8, NUL-terminated, as the user typed it */
    size_t alias_len; /* bytes, without the NUL */
    ak_record rec;    /* of a MetricsHub key: its hash and expiry, created AK_NO_EXPIRY */
    ak_kind kind;
    unsigned char *bag; /* AK_KIND_METRICSHUB: its SafeBag as read, written back as it is */
    size_t bag_len;
} ak_entry;

typedef struct {
    ak_entry *v; /* malloc'd, in file order (= creation order) */
    size_t n, cap;
} ak_entries;

/* Appends a copy of alias and *rec, with a copy of its scopes that the entry owns. 0, or -1
 * (and e) when out of memory. */
int entries_push(ak_entries *es, const char *alias, size_t alias_len, const ak_record *rec,
                 ak_err *e);
/* Removes entry i, keeping order. */
void entries_remove(ak_entries *es, size_t i);
/* Moves entry from to position to, the others keeping their order. */
void entries_move(ak_entries *es, size_t from, size_t to);
/* Frees every alias and the array; es is left empty and reusable. */
void entries_clear(ak_entries *es);

/* ---- alias text (alias.c) ------------------------------------------------------------------ */

/* UTF-8 alias -> UTF-16BE (a BMPString's contents) into bmp, room for 2 * AK_ALIAS_MAX bytes.
 * 0; -1 if not a valid alias: 1..AK_ALIAS_MAX bytes of UTF-8 without NUL. */
int alias_to_bmp(const char *alias, size_t len, unsigned char *bmp, size_t *bmplen);
/* UTF-16BE -> UTF-8 into out (AK_ALIAS_MAX bytes and a NUL). 0; -1 if not valid text (odd
 * length, NUL, a lone surrogate) or empty; -2 if longer than AK_ALIAS_MAX bytes. */
int alias_from_bmp(const unsigned char *s, size_t n, char *out, size_t *outlen);

/* Why an alias is refused, from alias_check. */
typedef enum {
    AK_ALIAS_OK = 0,
    AK_ALIAS_EMPTY,
    AK_ALIAS_LONG,      /* over AK_ALIAS_MAX bytes */
    AK_ALIAS_NOT_UTF8,  /* invalid UTF-8, or a NUL */
    AK_ALIAS_CONTROL,   /* a control, line or paragraph separator, bidirectional control */
    AK_ALIAS_INVISIBLE, /* a default-ignorable code point or another format character */
    AK_ALIAS_BLANK,     /* starts or ends with white space */
    AK_ALIAS_KEY,       /* holds text shaped like a key */
    AK_ALIAS_RESERVED,  /* starts with MetricsHub's "api_key:" */
} ak_alias_fault;

/* MetricsHub (metricshub-community): the alias prefix of its API keys, as Java lists it (lower
 * case), their entry password, and the store password of its keystore (SecurityManager), public
 * in its source: a file with that password is readable by anyone who can read the file. */
#define AK_METRICSHUB_PREFIX "api_key:"
#define AK_METRICSHUB_ENTRY_PASSWORD "secret"
#define AK_METRICSHUB_STORE_PASSWORD                                                               \
    "Matrix, Credits: Bertrand, Elvis, Fadhela, Huan, Nassim, Ramassh and Thomas"

/* The rules a new alias follows: AK_ALIAS_OK, or the first fault, *cp the code point at fault
 * (control, invisible, blank) or 0. */
ak_alias_fault alias_check(const char *alias, size_t len, unsigned long *cp);
/* Whether a code point must not be shown raw (a control or an invisible character). */
int alias_hidden(unsigned long cp);
/* The alias folded as Java folds it (toLowerCase(Locale.ENGLISH)): malloc'd, NUL-terminated,
 * *outlen bytes; NULL when out of memory or not UTF-8. */
char *alias_fold(const char *alias, size_t len, size_t *outlen);
/* Whether two aliases are one for Java: equal once folded. */
int alias_equal(const char *a, size_t alen, const char *b, size_t blen);

/* ---- the SafeBag list (safebags.c) ------------------------------------------------------------
 */

/* A growing byte buffer (OPENSSL_malloc'd) whose old blocks are wiped: it may hold key hashes
 * or another tool's keys. Freed with OPENSSL_clear_free(b.p, b.cap). */
typedef struct {
    unsigned char *p;
    size_t len, cap;
} ak_bytes;

/*
 * Reads a SafeContents (DER, or BER through OpenSSL), the bags of content number ci: our
 * SecretBags are appended to entries in file order, alias from the friendlyName (ours by their
 * secretTypeId, or by their value: a record of ours under another type, as Java's keytool writes
 * our bags back after a rewrite); every other
 * bag is appended to kept as its DER, and its friendlyName, if any, to names with its kind.
 * MetricsHub's keys (a secret key "api_key:ALIAS" that decrypts with its entry password to a
 * key, or a key, "__" and an expiry) are entries too, of kind AK_KIND_METRICSHUB, hashed as
 * they are read; their decryption is charged to *budget (kdf_charge). Returns
 * how many bags were ours, or -1 with e (AK_ECORRUPT for anything unreadable); *nbags is how many
 * there were in all. With none of ours, what was appended to kept is taken off again (the caller
 * keeps the whole content).
 */
long safebags_read(const unsigned char *der, size_t len, int ci, ak_entries *entries,
                   ak_bytes *kept, ak_entries *names, long *budget, int *nbags, ak_err *e);
/* Plausible plaintext of a SafeContents: one SEQUENCE filling it exactly. A wrong key still
 * passes CBC's padding check once in 256 tries; this catches the garbage it gives. */
int safebags_plausible(const unsigned char *der, size_t len);
/* Writes the SafeContents: the bags in kept (may be NULL), then one SecretBag per entry, in
 * order. Built in b; [*list, *list + *listlen) is the whole SEQUENCE, inside b. 0, or -1 with e. */
int safebags_write(const ak_entries *in, const ak_bytes *kept, ak_bytes *b,
                   const unsigned char **list, size_t *listlen, ak_err *e);

/* Another password for other tools' keys, when the keystore's password changes: a private key
 * (pkcs8ShroudedKeyBag) or a secret key as Java writes it (a SecretBag holding an
 * EncryptedPrivateKeyInfo) is decrypted with a form of the old password and encrypted again with
 * the new one (PBES2: PBKDF2-HMAC-SHA256 with iter iterations, AES-256-CBC). */
typedef struct {
    const char *old[2]; /* the forms of the old password: itself, or "" and NULL when empty */
    int nold;
    size_t oldlen;
    const char *newpass;
    size_t newlen;
    int iter;
    long *budget;        /* key derivation iterations left, charged for every decryption */
    ak_entries *refused; /* the names (and kinds) of the keys no form of the old one opens */
    int unnamed;         /* such keys without a name */
} ak_repass;

/* The bags of a SafeContents (DER, or BER through OpenSSL), back to back in DER, appended to
 * out. 0, or -1 with e. */
int safebags_split(const unsigned char *der, size_t len, int ci, ak_bytes *out, ak_err *e);
/* Bags back to back [in, in + len) appended to out, each key protected with the new password as
 * above (*changed counts them) and every other bag as it was; a key no form of the old password
 * opens is kept as it was and named in rp->refused (or counted in rp->unnamed). 0, or -1 with e
 * (malformed, the key derivation budget spent, out of memory, OpenSSL failed). */
int safebags_repass(const unsigned char *in, size_t len, ak_repass *rp, ak_bytes *out, int *changed,
                    ak_err *e);

/* ---- the key derivation budget (kdfbudget.c) --------------------------------------------------
 */

/* Iterations one load may run in all, the MAC's included (a few seconds): a file apikey wrote at
 * the most core.open allows, AK_ITER_MAX for its MAC and as many for its content. */
#define AK_KDF_BUDGET (2 * AK_ITER_MAX)

struct X509_algor_st;  /* OpenSSL's X509_ALGOR */
struct PKCS12_st;      /* OpenSSL's PKCS12 */
struct stack_st_PKCS7; /* OpenSSL's STACK_OF(PKCS7) */

/* The MAC's key derivation, as kdf_plan read it. */
typedef struct {
    long iter;  /* its iteration count: MacData's, or PBMAC1's PBKDF2 (MacData's is then unused) */
    int pbmac1; /* a PBMAC1 MAC (RFC 9579), whose PBKDF2 derives the same key from "" and NULL */
} kdf_mac;

/*
 * Before any key derivation runs: reads the one of the MAC (classic PKCS#12, or PBMAC1 with
 * PBKDF2) and those of the encrypted contents in cis that a load would open (kdf_opens), and
 * charges each once, for the first password form tried, to *budget. 0 with *mac; -1 with e
 * (AK_ECORRUPT) for a MAC whose parameters do not parse (a PBMAC1 key length outside 1 to
 * EVP_MAX_MD_SIZE included), a MAC asking for an iteration count outside 1 to AK_ITER_MAX, a
 * content asking for fewer than 1, or a sum over *budget; the message names the counts and the
 * limit.
 */
int kdf_plan(long *budget, const struct PKCS12_st *p12, const struct stack_st_PKCS7 *cis,
             kdf_mac *mac, ak_err *e);
/* Whether a load opens a content encrypted with alg (and kdf_plan charged it): PBES2 with
 * PBKDF2 and the PKCS#5 v1 and PKCS#12 schemes; not another KDF (scrypt's cost is set by the file
 * too), nor parameters that do not parse: such a content is kept unopened. */
int kdf_opens(const struct X509_algor_st *alg);
/* For a derivation found while the contents are read (a MetricsHub entry's own encryption):
 * charges its iterations to *budget. 0 when charged; 1 for another key derivation than the
 * ones kdf_opens lists (not run); -1 when its parameters do not parse; -2 when it asks for
 * fewer than 1 or more than *budget has left. */
int kdf_charge(long *budget, const struct X509_algor_st *alg);
/* Before content ci (from 1) is tried again with the other form of the empty password: 1 when
 * that is pointless (both forms derive the same key: all but the PKCS#12 KDF) or not opened;
 * 0 when charged to *budget: run it; -1 with e (AK_ECORRUPT) when more than *budget has left. */
int kdf_charge_retry(long *budget, const struct X509_algor_st *alg, int ci, ak_err *e);

/* ---- the PKCS#12 file (p12.c) ---------------------------------------------------------------- */

/* Everything a keystore file holds that is not ours, kept to be written back unchanged. */
typedef struct ak_foreign ak_foreign;
void foreign_free(ak_foreign *f);
/* The aliases (friendlyNames) of the other tools' bags, each with its kind (rec unused), for
 * the one namespace of aliases; NULL when f is NULL. */
const ak_entries *foreign_names(const ak_foreign *f);

/*
 * Parses a whole PKCS#12 file held in buf. The MAC is checked with the password; an empty
 * password (passlen 0) is tried both as "" and as NULL (Java writes ""), then bags are
 * decrypted with the form that verified. Our SecretBags are appended to out in file order,
 * alias from the friendlyName; every other bag and ContentInfo goes to *foreign.
 * Returns 0, or -1 with e: AK_EBADPASSWORD when the MAC does not verify; AK_ECORRUPT for
 * anything unparseable (not PKCS#12, truncated, a record of ours that does not decode, a bag of
 * ours without a friendlyName), for a file that asks for more key derivation than AK_ITER_MAX
 * for its MAC or AK_KDF_BUDGET in all, refused before any derivation runs (kdf_plan; the file
 * is what is wrong, not a setting), and for a PBMAC1 MAC this OpenSSL (before 3.4) cannot
 * check; AK_ELIMIT for a password over INT_MAX bytes; AK_ENOMEM. The message says what is wrong
 * without naming the file (p12_load sees bytes): the caller puts "cannot read PATH: " before it,
 * as storage.c words its failures. On failure out and *foreign are left empty/NULL.
 */
int p12_load(const unsigned char *buf, size_t len, const char *pass, size_t passlen,
             ak_entries *out, ak_foreign **foreign, ak_err *e);

/*
 * Encodes a whole PKCS#12 file: the foreign ContentInfos as they were, then one
 * encryptedData ContentInfo (PBES2: PBKDF2-HMAC-SHA256 with iter iterations, AES-256-CBC,
 * random salt) holding one SecretBag per entry in order (and any foreign bags that shared a
 * ContentInfo with ours), then a SHA-256 MAC with iter iterations. Password "" when
 * passlen is 0. foreign may be NULL. *out is OPENSSL_malloc'd.
 * Returns 0, or -1 with e: AK_EINVALID (an iteration count under 1, an entry whose alias or
 * record cannot be written), AK_ELIMIT (the list of keys or the password over INT_MAX bytes),
 * AK_ECRYPTO (the random salt, the encryption, the MAC or the encoding failed in OpenSSL),
 * AK_ENOMEM. The caller puts "cannot write PATH: " before the message.
 */
int p12_save(const ak_entries *in, const ak_foreign *foreign, const char *pass, size_t passlen,
             int iter, unsigned char **out, size_t *outlen, ak_err *e);

/*
 * Protects what other tools keep in f with the new password instead of the old (passwd): the
 * keys in every bag (as safebags_repass), and each encrypted content, decrypted with the old
 * password and encrypted again with the new (iter iterations). f is changed only when all of it
 * could be; else -1 with e: AK_EINVALID naming the keys (and counting the contents) that the old
 * password does not open, or as safebags_repass fails. *count is how many keys and contents
 * were protected again. f may be NULL (nothing to do).
 */
int p12_repass(ak_foreign *f, const char *oldpass, size_t oldlen, const char *newpass,
               size_t newlen, int iter, int *count, ak_err *e);

/* ---- the file on disk (storage.c) -------------------------------------------------------------
 */

/* Identity of a file's current content: a change in any field means it was replaced/edited. */
typedef struct {
    int exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    struct timespec ctime; /* changes with chmod/chown too: a permission fix is seen */
} ak_stamp;

/* Fills st for path; a missing file gives st->exists = 0 and returns 0. -1 with e on error. */
int storage_stamp(const char *path, ak_stamp *st, ak_err *e);
int storage_stamp_equal(const ak_stamp *a, const ak_stamp *b);

/*
 * Who is trusted, for reads and writes alike: the keystore, its lock file and every symbolic
 * link on the way to it are owned by the running user or root, and every folder that holds one
 * of them is owned by the running user or root and not writable by group or others, unless it
 * has the sticky bit (as /tmp), and then only the running user's own files count in it. The
 * keystore is not writable by group or others. Any other case is AK_EINSECURE, naming the
 * owner or the mode and the fix. A path that is a symbolic link is followed: the file it
 * points to is read, locked ("FILE.lock" beside it) and replaced in its own folder.
 */

/*
 * Reads the whole file. Returns 0 with *buf (malloc'd, caller frees) and *len, and st
 * describing what was read (fstat of the open descriptor); returns 1 when the file does
 * not exist (*buf NULL, st->exists 0); -1 with e otherwise: AK_EIO (a folder, unreadable, a
 * link to nothing, ...), AK_EINSECURE as above (for a file writable by group or others the
 * message says `chmod 600 PATH`).
 */
int storage_read(const char *path, unsigned char **buf, size_t *len, ak_stamp *st, ak_err *e);

/* An exclusive lock on "PATH.lock" beside the keystore (flock), for writers only. */
typedef struct {
    int fd;
} ak_lock;

/*
 * Checks the keystore as storage_read does, and that its owner left it writable (a keystore
 * without the owner's write bit is AK_EIO, "chmod u+w"), before anything is created. Then
 * creates the keystore's folder (mode 0700) when it is missing, opens/creates FILE.lock
 * (0600; checked as the keystore is), and takes an exclusive flock, waiting up to timeout_ms.
 * Then removes stale temp files "FILE.tmp-*" left by a writer that died (only a lock holder
 * makes them). Returns 0, or -1 with e: AK_ELOCKED on time-out, AK_EINSECURE as above,
 * AK_EIO otherwise.
 */
int storage_lock(const char *path, int timeout_ms, ak_lock *lk, ak_err *e);
void storage_unlock(ak_lock *lk);

/*
 * Replaces the file atomically: checks it again as storage_lock does, mkstemp
 * "FILE.tmp-XXXXXX" in the same folder, gives it the old file's owner, group, mode, POSIX ACLs
 * and extended attributes (a new keystore: 0600), write all, fsync, rename over FILE, fsync the
 * folder. On any failure before the rename (attributes that cannot be carried over included)
 * the temp file is removed and FILE is untouched; a FILE that is a mount point (EBUSY, EXDEV)
 * says to mount its folder instead. Never truncates or writes FILE in place. Returns 0; 1 with
 * e when FILE was replaced but the fsync of the folder failed (the change is made and seen by
 * every reader, but may not survive a power loss); -1 with e otherwise.
 */
int storage_replace(const char *path, const unsigned char *buf, size_t len, ak_err *e);

/* ---- time (timeutil.c) --------------------------------------------------------------------------
 */

/*
 * Parses a date-time as the user gives it: "YYYY-MM-DDThh:mm", optionally ":ss", optionally
 * "." and up to 9 digits of a fraction of a second (what Java's LocalDateTime.parse takes; the
 * fraction is dropped), in local time resolved as Java's atZone does (a time in a DST gap moves
 * later by the gap, one in an overlap takes the earlier offset), or followed by "Z" or
 * "+hh:mm"/"-hh:mm". Fields are range-checked (no February 30, no 24:00). Returns 0 with *out
 * in Unix seconds UTC; AK_TIME_EARLY for a well-formed time before 1970-01-01T00:00:00Z,
 * AK_TIME_LATE for one after AK_TIME_MAX (or a year after 9999, 5 to 9
 * digits, with or without "+"); -1 when malformed.
 */
int time_parse_iso(const char *s, size_t len, int64_t *out);
#define AK_TIME_EARLY 1
#define AK_TIME_LATE 2
/* A LocalDateTime as Java prints it ("YYYY-MM-DDThh:mm", ":ss", ".fffffffff" optional; what
 * MetricsHub stores as a key's expiry), read and resolved as time_parse_iso reads a local
 * time. 0 with *out in Unix seconds, or -1 when malformed or outside 1970..9999. */
int time_parse_java_local(const char *s, size_t len, int64_t *out);
/* "YYYY-MM-DDThh:mm:ss" in local time. buf of at least 32 bytes. */
void time_format_local(int64_t t, char *buf, size_t size);
/* "YYYY-MM-DDThh:mm:ssZ" in UTC. */
void time_format_utc(int64_t t, char *buf, size_t size);
/* GeneralizedTime text "YYYYMMDDHHMMSSZ" <-> Unix seconds (UTC); parse returns -1 if invalid. */
void time_format_gentime(int64_t t, char *buf, size_t size);
int time_parse_gentime(const char *s, size_t len, int64_t *out);

/* ---- the keystore model (keystore.c) --------------------------------------------------------- */

typedef enum { AK_VALID = 0, AK_UNKNOWN, AK_EXPIRED, AK_MALFORMED } ak_verdict;

/* The index of a keystore's entries: the slots of the lookup by hash, what a check reads of each
 * key, and the scope names that have a bit in the keys' scope_bits (at most AK_SCOPE_BITS, in
 * the order the entries first name them), found through a small table of their own. Made whole
 * on every change of content (index_build in keystore.c). */
typedef struct {
    unsigned char len;
    char name[AK_SCOPE_MAX];
} ak_scope_name;

/* What a check reads of entry i, in a cache line of its own: ak_index.hot[i]. The entries'
 * lists are read by everything else; these are made for the check alone, so that it reads one
 * line per key, in a list half the size of the entries' (fewer pages, all the cache's sets). */
typedef struct {
    unsigned char hash[AK_HASH_LEN]; /* the record's */
    int64_t until;       /* refused as expired from then on: the expiry, or the end of the grace
                            of a rotated key, the earlier: record_until */
    uint64_t scope_bits; /* the key's scopes as bits over the index's names (below) */
    unsigned char unused[16];
} ak_hot;

#define AK_HOT_ALIGN 64
_Static_assert(sizeof(ak_hot) == AK_HOT_ALIGN, "a key's hot record is one cache line");

/* A key's scope bits: bit i (i < AK_SCOPE_BITS) is the index's i-th name; AK_SCOPES_BEYOND says
 * the key has names beyond those, to be looked for in its list; AK_SCOPES_ALL is a key with
 * full access. */
#define AK_SCOPE_BITS 62
#define AK_SCOPES_BEYOND ((uint64_t)1 << 62)
#define AK_SCOPES_ALL ((uint64_t)1 << 63)

#define AK_SCOPE_TABLE 128 /* slots of the names' table: a power of two, over 2 * AK_SCOPE_BITS */
typedef struct {
    uint32_t *slots;      /* open addressing over entries, keyed by the hash; 0 = empty, else i+1 */
    size_t nslots;        /* power of two */
    ak_hot *hot;          /* one a key, in the entries' order; AK_HOT_ALIGN-aligned */
    ak_scope_name *names; /* malloc'd, room for AK_SCOPE_BITS; NULL when no key has scopes */
    size_t nnames;
    unsigned char table[AK_SCOPE_TABLE]; /* open addressing over names: 0 = empty, else bit+1 */
} ak_index;

typedef struct {
    char *path;
    char *pass; /* wiped with OPENSSL_cleanse before free */
    size_t passlen;
    int iter;
    int lock_timeout_ms;
    ak_entries entries;
    ak_foreign *foreign;
    int metricshub_pass; /* the content was read with MetricsHub's store password */
    ak_index index;      /* over entries */
    ak_stamp stamp;      /* of the content loaded */
    /* The last reload that failed, and why: the same file is not parsed again (with a password,
     * each try costs a full key derivation) until it changes. */
    int failed;
    ak_stamp failed_stamp;
    ak_err failed_err;
    /* Set by the last create or revoke when it was made but could not be confirmed on disk
     * (storage_replace returned 1): what the caller should tell the user. */
    int warned;
    ak_err warning;
} ak_keystore;

/* Loads path (a missing file is an empty keystore; nothing is written until a change). With
 * no password (passlen 0), a file that the empty password does not open is tried with
 * MetricsHub's store password, and is then written with it.
 * On failure ks is left closed (keystore_close is still safe to call). */
int keystore_open(ak_keystore *ks, const char *path, const char *pass, size_t passlen, int iter,
                  int lock_timeout_ms, ak_err *e);
/* Reloads when the file's stamp changed; *changed says whether it did. On failure the
 * last good content stays loaded. */
int keystore_refresh(ak_keystore *ks, int *changed, ak_err *e);
/* Whether the file changed since the content loaded: 1 (its stamp in *now), 0, or -1 on
 * failure, the failure of the last reload too when the file is still what failed to read. */
int keystore_stamp_changed(ak_keystore *ks, ak_stamp *now, ak_err *e);
/* Makes the content from holds (entries, index, stamp) ks's, and ks's from's, which the caller
 * then closes: how a content loaded elsewhere (reload.c) is swapped in whole. */
void keystore_take(ak_keystore *ks, ak_keystore *from);
/* Writers: take the lock, re-read the file under it, change, replace the file atomically, and
 * keep what was written as the loaded content. A file that cannot be read is never written.
 * Aliases are one namespace with every other entry of the file: create of an alias that any
 * entry holds (compared as Java compares aliases) is AK_EEXISTS. The rules for a new alias
 * (alias_check) are the caller's to apply.
 * create writes a new random key (UUID v4, lower case) into key_out; *index is the new entry's
 * position in ks->entries. */
int keystore_create(ak_keystore *ks, const char *alias, size_t alias_len, int64_t created,
                    int64_t expires, char key_out[AK_KEY_LEN + 1], size_t *index, ak_err *e);
/* create with scopes: [scopes, scopes + scopes_len) as ak_record's, or NULL for full access. */
int keystore_create_scoped(ak_keystore *ks, const char *alias, size_t alias_len, int64_t created,
                           int64_t expires, const unsigned char *scopes, size_t scopes_len,
                           char key_out[AK_KEY_LEN + 1], size_t *index, ak_err *e);
/* Revokes the alias that the key text belongs to (as keystore_revoke), whichever of its keys it
 * is; alias_out gets the alias (AK_ALIAS_MAX bytes and a NUL). AK_EINVALID when the text is not
 * a key, AK_ENOTFOUND when no entry has it. */
int keystore_revoke_key(ak_keystore *ks, const char *key, size_t len,
                        char alias_out[AK_ALIAS_MAX + 1], size_t *alias_len, ak_err *e);
/*
 * Gives the alias a new key, with the scopes of its key, and expires (AK_NO_EXPIRY: none) or,
 * when keep_expiry, the expiry of its key (AK_EINVALID when that has passed). The key it had
 * stays, marked rotated, until grace_end (now: refused at once), then is refused as expired;
 * keys it replaced before whose grace has ended are dropped. The new entry takes the old one's
 * place in the list, the old one right after it; *index is the new one's. AK_ENOTFOUND when the
 * alias has no key that was not rotated.
 */
int keystore_rotate(ak_keystore *ks, const char *alias, size_t alias_len, int64_t now,
                    int64_t grace_end, int keep_expiry, int64_t expires,
                    char key_out[AK_KEY_LEN + 1], size_t *index, ak_err *e);
/* Undoes a rotate whose new key nobody saw: removes the entry of that key, and the key of its
 * alias that was rotated last is in use again. AK_ENOTFOUND when no entry has the key. */
int keystore_unrotate(ak_keystore *ks, const char *key, size_t len, ak_err *e);
/* revoke removes every API key of the alias (compared as Java compares aliases): its key, the
 * keys it replaced by rotate, and any other key of that alias another tool wrote; copies the
 * alias as stored into stored (AK_ALIAS_MAX + 1 bytes); an alias that another tool's entry
 * holds is AK_ENOTFOUND, saying what that entry is, and is never removed. */
int keystore_revoke(ak_keystore *ks, const char *alias, size_t alias_len, char *stored,
                    size_t *stored_len, ak_err *e);
/* Turns every MetricsHub key into one of ours (same alias, hash and expiry, created now), so
 * that no key stays in the file in the clear; *count is how many. One atomic write, none when
 * there is no MetricsHub key. */
int keystore_migrate(ak_keystore *ks, int64_t now, size_t *count, ak_err *e);
/*
 * Changes the file's password to [pass, pass + passlen) (0: none), written with iter
 * iterations, in one write under the writers' protocol; the handle then uses it. What other
 * tools protected with the old password (their keys, their encrypted contents) is protected
 * with the new one (p12_repass, *count of them); what the old one does not open is refused by
 * name (AK_EINVALID) before anything is written. AK_ENOTFOUND when the file does not exist;
 * AK_EINVALID for a MetricsHub keystore (read with MetricsHub's store password), which
 * MetricsHub could no longer open.
 */
int keystore_passwd(ak_keystore *ks, const char *pass, size_t passlen, int iter, int *count,
                    ak_err *e);
/* Whether the file at path has a password: *has 0 when the empty password opens it (or it does
 * not exist: *exists 0), *metricshub when MetricsHub's fixed one does; *has 1 when neither
 * verifies its MAC. 0, or -1 with e when it cannot be told (unreadable, insecure, corrupt). */
int keystore_has_password(const char *path, int *has, int *metricshub, int *exists, ak_err *e);
/* O(1): hash lookup, constant-time compare of the whole hash. Upper-case key text is accepted.
 * *out is set for AK_VALID and AK_EXPIRED. */
ak_verdict keystore_verify(ak_keystore *ks, const char *key, size_t len, int64_t now,
                           const ak_entry **out);
/* Whether the key of en, an entry of ks, may act in scope [name, name + len): a key with full
 * access may do anything. O(1) for a name with a bit; a key whose names go beyond the bits is
 * looked for in its list as well. */
int keystore_has_scope(const ak_keystore *ks, const ak_entry *en, const char *name, size_t len);
void keystore_close(ak_keystore *ks);
/* For the PostgreSQL store (csrc/pg/), which makes, hashes and writes keys as the file does.
 * keystore_new_key: a new key as create makes one. keystore_key_hash: the hash of a key's text
 * (upper case accepted): 0; -1 when it is not of a key's form; -2 when hashing failed.
 * keystore_sync: makes the file's API keys those of keys (in order; other tools' entries stay),
 * with the writers' protocol; writes only when they differ or the file does not exist yet.
 * *changed says whether it wrote. */
int keystore_new_key(char key_out[AK_KEY_LEN + 1], ak_err *e);
int keystore_key_hash(const char *key, size_t len, unsigned char hash[AK_HASH_LEN]);
int keystore_sync(ak_keystore *ks, const ak_entries *keys, int *changed, ak_err *e);

/* ---- reloads off the request path (reload.c) ------------------------------------------------- */

typedef struct ak_reload ak_reload;

/* As keystore_refresh, but the changed file is read and indexed in a thread of its own, while
 * ks keeps answering with the content it has; a later call swaps the new content in whole
 * (*changed = 1), or reports why it could not be read (-1, the content kept). *pending says a
 * read is under way, so that the caller calls again soon. *r is made on first use; reload_free
 * waits for a read under way, then frees it. */
int keystore_refresh_background(ak_keystore *ks, ak_reload **r, int *changed, int *pending,
                                ak_err *e);
void reload_free(ak_reload *r);

#endif
