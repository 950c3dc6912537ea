/*
 * error.c: the core's error value (ak_err): a stable code and one line a user can act on.
 * OpenSSL reasons are taken from its error queue, which is then cleared so that a later
 * failure does not report a stale reason.
 */
#include "apikey.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void set_message(ak_err *e, ak_code code, const char *fmt, va_list ap)
{
    e->code = code;
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
}

int ak_fail(ak_err *e, ak_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(e, code, fmt, ap);
    va_end(ap);
    return -1;
}

int ak_fail_ssl(ak_err *e, ak_code code, const char *fmt, ...)
{
    va_list ap;
    unsigned long err = ERR_peek_last_error();
    va_start(ap, fmt);
    set_message(e, code, fmt, ap);
    va_end(ap);
    if (err != 0) {
        size_t used = strlen(e->msg);
        const char *reason = ERR_reason_error_string(err);
        snprintf(e->msg + used, sizeof e->msg - used, ": %s",
                 reason != NULL ? reason : "OpenSSL error");
    }
    ERR_clear_error();
    return -1;
}

const char *ak_code_name(ak_code code)
{
    switch (code) {
    case AK_OK:
        return "ok";
    case AK_EEXISTS:
        return "exists";
    case AK_ENOTFOUND:
        return "notfound";
    case AK_EBADPASSWORD:
        return "badpassword";
    case AK_ECORRUPT:
        return "corrupt";
    case AK_EIO:
        return "io";
    case AK_ELOCKED:
        return "locked";
    case AK_EINVALID:
        return "invalid";
    case AK_EINSECURE:
        return "insecure";
    case AK_ENOMEM:
        return "nomem";
    case AK_ECRYPTO:
        return "crypto";
    case AK_ELIMIT:
        return "limit";
    }
    return "unknown";
}
