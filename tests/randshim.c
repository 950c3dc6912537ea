/*
 * randshim.c: an LD_PRELOAD library for the key generation spec. It makes the system's random
 * source fail as a seccomp filter (EPERM) or an early boot (EAGAIN) would, or makes OpenSSL's
 * RAND_bytes fail, so that a test can check that create never makes a key from a weaker source
 * and fails cleanly. Test-only: nothing in the product links it.
 *
 *   APIKEY_RAND_FAULT=getrandom:ERR   every way a process asks the kernel for random bytes
 *                                     fails with ERR (EPERM | EAGAIN | ENOSYS): getrandom(),
 *                                     getentropy() and syscall(SYS_getrandom, ...)
 *   APIKEY_RAND_FAULT=RAND_bytes      RAND_bytes returns 0 (failure)
 *   APIKEY_RAND_LOG=FILE              one line appended per injected fault: the function name
 *
 * Build: cc -shared -fPIC -o randshim.so tests/randshim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

enum fault { NONE, GETRANDOM, RANDBYTES };

static enum fault fault = NONE;
static int fault_errno;
static int configured;

static void configure(void)
{
    const char *spec;
    if (configured)
        return;
    configured = 1;
    spec = getenv("APIKEY_RAND_FAULT");
    if (spec == NULL)
        return;
    if (strcmp(spec, "RAND_bytes") == 0) {
        fault = RANDBYTES;
    } else if (strcmp(spec, "getrandom:EPERM") == 0) {
        fault = GETRANDOM;
        fault_errno = EPERM;
    } else if (strcmp(spec, "getrandom:EAGAIN") == 0) {
        fault = GETRANDOM;
        fault_errno = EAGAIN;
    } else if (strcmp(spec, "getrandom:ENOSYS") == 0) {
        fault = GETRANDOM;
        fault_errno = ENOSYS;
    }
}

/* Appends "name\n" to APIKEY_RAND_LOG, keeping errno as the caller will see it. */
static void log_fault(const char *name)
{
    const char *log = getenv("APIKEY_RAND_LOG");
    int saved = errno, fd;
    if (log != NULL && *log != '\0') {
        fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0) {
            char line[64];
            size_t n = strlen(name);
            if (n > sizeof line - 2)
                n = sizeof line - 2;
            memcpy(line, name, n);
            line[n] = '\n';
            (void)!write(fd, line, n + 1);
            close(fd);
        }
    }
    errno = saved;
}

static int random_source_fails(const char *name)
{
    configure();
    if (fault != GETRANDOM)
        return 0;
    log_fault(name);
    errno = fault_errno;
    return 1;
}

ssize_t getrandom(void *buf, size_t len, unsigned int flags)
{
    static ssize_t (*real)(void *, size_t, unsigned int);
    if (random_source_fails("getrandom"))
        return -1;
    if (real == NULL)
        real = (ssize_t(*)(void *, size_t, unsigned int))dlsym(RTLD_NEXT, "getrandom");
    return real(buf, len, flags);
}

int getentropy(void *buf, size_t len)
{
    static int (*real)(void *, size_t);
    if (random_source_fails("getentropy"))
        return -1;
    if (real == NULL)
        real = (int (*)(void *, size_t))dlsym(RTLD_NEXT, "getentropy");
    return real(buf, len);
}

/* syscall(2) takes at most six arguments after the number; they are passed on as they came. */
long syscall(long number, ...)
{
    static long (*real)(long, ...);
    long a[6];
    va_list ap;
    va_start(ap, number);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_getrandom && random_source_fails("syscall(SYS_getrandom)"))
        return -1;
    if (real == NULL)
        real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/* OpenSSL's; declared here so that the shim needs no OpenSSL headers. */
int RAND_bytes(unsigned char *buf, int num);

int RAND_bytes(unsigned char *buf, int num)
{
    static int (*real)(unsigned char *, int);
    configure();
    if (fault == RANDBYTES) {
        log_fault("RAND_bytes");
        return 0;
    }
    if (real == NULL)
        real = (int (*)(unsigned char *, int))dlsym(RTLD_NEXT, "RAND_bytes");
    if (real == NULL) {
        /* Lua loads the module, and with it libcrypto, out of the global scope that RTLD_NEXT
         * searches: ask for the library that is already loaded. */
        void *lib = dlopen("libcrypto.so.3", RTLD_LAZY | RTLD_NOLOAD);
        if (lib != NULL)
            real = (int (*)(unsigned char *, int))dlsym(lib, "RAND_bytes");
    }
    if (real == NULL)
        abort();
    return real(buf, num);
}
