/*
 * pqlib.h: libpq, loaded when the store is first used rather than when the module loads.
 * Linked into core.so, libpq would bring some twenty libraries (Kerberos, LDAP, GnuTLS, ...)
 * into every `apikey` command and every web server process, which cost the command a third of
 * its start-up (bench/README) and most of them never use the store. Included after
 * <libpq-fe.h>: each PQ* function used below is then called through a pointer that
 * pqlib_load() fills with dlopen and dlsym.
 */
#ifndef APIKEY_PQLIB_H
#define APIKEY_PQLIB_H

#include "apikey.h"

#include <libpq-fe.h>

/* One function a line: */
/* clang-format off */
#define AK_PQ_FUNCTIONS(X) \
    X(PQclear) \
    X(PQconninfoFree) \
    X(PQconninfoParse) \
    X(PQconnectdbParams) \
    X(PQconsumeInput) \
    X(PQdb) \
    X(PQerrorMessage) \
    X(PQexec) \
    X(PQexecParams) \
    X(PQfinish) \
    X(PQfreemem) \
    X(PQgetisnull) \
    X(PQgetvalue) \
    X(PQhost) \
    X(PQnotifies) \
    X(PQntuples) \
    X(PQresultErrorField) \
    X(PQresultErrorMessage) \
    X(PQresultStatus) \
    X(PQsetNoticeProcessor) \
    X(PQsocket) \
    X(PQstatus) \
    X(PQuser)
/* clang-format on */

#define AK_PQ_POINTER(name) extern __typeof__(name) *ak_##name;
AK_PQ_FUNCTIONS(AK_PQ_POINTER)
#undef AK_PQ_POINTER

/* Loads libpq once (libpq.so.5, Debian's libpq5): 0, or -1 with e (AK_EIO) saying what is
 * missing. Safe to call again. */
int pqlib_load(ak_err *e);

/* From here on, every call of these functions goes through its pointer. */
#define PQclear (*ak_PQclear)
#define PQconninfoFree (*ak_PQconninfoFree)
#define PQconninfoParse (*ak_PQconninfoParse)
#define PQconnectdbParams (*ak_PQconnectdbParams)
#define PQconsumeInput (*ak_PQconsumeInput)
#define PQdb (*ak_PQdb)
#define PQerrorMessage (*ak_PQerrorMessage)
#define PQexec (*ak_PQexec)
#define PQexecParams (*ak_PQexecParams)
#define PQfinish (*ak_PQfinish)
#define PQfreemem (*ak_PQfreemem)
#define PQgetisnull (*ak_PQgetisnull)
#define PQgetvalue (*ak_PQgetvalue)
#define PQhost (*ak_PQhost)
#define PQnotifies (*ak_PQnotifies)
#define PQntuples (*ak_PQntuples)
#define PQresultErrorField (*ak_PQresultErrorField)
#define PQresultErrorMessage (*ak_PQresultErrorMessage)
#define PQresultStatus (*ak_PQresultStatus)
#define PQsetNoticeProcessor (*ak_PQsetNoticeProcessor)
#define PQsocket (*ak_PQsocket)
#define PQstatus (*ak_PQstatus)
#define PQuser (*ak_PQuser)

#endif
