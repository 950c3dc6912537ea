/*
 * faultshim.c: an LD_PRELOAD library for the fault specs. It makes write, fsync, fdatasync,
 * rename, close and fsetxattr fail as a full or broken disk would (or a mount point, or a file
 * system without extended attributes), so that a test can check what the keystore does when
 * the OS lets it down. Test-only: nothing in the product links it.
 *
 *   APIKEY_FAULT="op:ERR[:N][,op:ERR[:N]...]"
 *       op   write | fsync | fdatasync | rename | close | fsetxattr
 *       ERR  ENOSPC | EIO | EDQUOT | EROFS | EINTR | EBUSY | EXDEV | ENOTSUP
 *            | SHORT (write only: write half, succeed)
 *       N    fail only the Nth matching call (1-based); without it, every matching call
 *   APIKEY_FAULT_MATCH="text"  only calls on a path containing text (default ".tmp-", the
 *                              keystore's temp file); "=PATH" means exactly PATH. For rename,
 *                              either path may match. Descriptors are named by /proc/self/fd.
 *   APIKEY_FAULT_LOG=FILE      one line appended per injected fault: "op ERR path"
 *   APIKEY_FAULT_TRACE=FILE    one line appended per matching call but fsetxattr, fault or
 *                              not: "op path SECONDS" (CLOCK_REALTIME, when the call began), so
 *                              that a test can see when a command writes its temp file
 *
 * Build: sh tests/build.sh OUT faultshim (OUT/faultshim.so)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define MAX_RULES 8

enum op { OP_WRITE, OP_FSYNC, OP_FDATASYNC, OP_RENAME, OP_CLOSE, OP_FSETXATTR, OP_COUNT };

static const char *const op_names[OP_COUNT] = {"write",  "fsync", "fdatasync",
                                               "rename", "close", "fsetxattr"};

/* err 0 means SHORT: a partial write that succeeds. */
struct rule {
    enum op op;
    int err;
    const char *err_name;
    long nth;  /* 0: every matching call */
    long seen; /* matching calls so far */
};

static struct rule rules[MAX_RULES];
static int nrules;
static int configured;
static const char *match = ".tmp-";
static const char *trace;

static ssize_t (*real_write)(int, const void *, size_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_rename)(const char *, const char *);
static int (*real_close)(int);
static int (*real_fsetxattr)(int, const char *, const void *, size_t, int);

static const struct {
    const char *name;
    int err;
} errs[] = {{"ENOSPC", ENOSPC}, {"EIO", EIO},         {"EDQUOT", EDQUOT},
            {"EROFS", EROFS},   {"EINTR", EINTR},     {"EBUSY", EBUSY},
            {"EXDEV", EXDEV},   {"ENOTSUP", ENOTSUP}, {"SHORT", 0}};

static void parse_rule(char *spec)
{
    char *op = strtok(spec, ":");
    char *err = strtok(NULL, ":");
    char *nth = strtok(NULL, ":");
    struct rule r = {0};
    int i, found = 0;

    if (op == NULL || err == NULL || nrules == MAX_RULES)
        return;
    for (i = 0; i < OP_COUNT && !found; i++)
        if (strcmp(op, op_names[i]) == 0) {
            r.op = (enum op)i;
            found = 1;
        }
    if (!found)
        return;
    found = 0;
    for (i = 0; i < (int)(sizeof errs / sizeof errs[0]) && !found; i++)
        if (strcmp(err, errs[i].name) == 0) {
            r.err = errs[i].err;
            r.err_name = errs[i].name;
            found = 1;
        }
    if (!found || (r.err == 0 && r.op != OP_WRITE))
        return;
    r.nth = nth != NULL ? strtol(nth, NULL, 10) : 0;
    rules[nrules++] = r;
}

/* Single-threaded callers (the Lua interpreter): lazy set-up needs no lock. */
static void configure(void)
{
    const char *spec, *m;
    char buf[512], *save = NULL, *item;

    if (configured)
        return;
    configured = 1;
    real_write = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    real_rename = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
    real_fsetxattr =
        (int (*)(int, const char *, const void *, size_t, int))dlsym(RTLD_NEXT, "fsetxattr");
    trace = getenv("APIKEY_FAULT_TRACE");
    if (trace != NULL && *trace == '\0')
        trace = NULL;
    m = getenv("APIKEY_FAULT_MATCH");
    if (m != NULL && *m != '\0')
        match = m;
    spec = getenv("APIKEY_FAULT");
    if (spec == NULL || strlen(spec) >= sizeof buf)
        return;
    strcpy(buf, spec);
    /* strtok_r for the list, strtok inside parse_rule for the fields. */
    for (item = strtok_r(buf, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save))
        parse_rule(item);
}

static int path_matches(const char *path)
{
    if (path == NULL)
        return 0;
    if (match[0] == '=')
        return strcmp(path, match + 1) == 0;
    return strstr(path, match) != NULL;
}

static int fd_matches(int fd, char *path, size_t size)
{
    char link[64];
    ssize_t n;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, size - 1);
    if (n < 0)
        return 0;
    path[n] = '\0';
    return path_matches(path);
}

static void append_line(const char *file, const char *line, size_t len)
{
    int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    (void)real_write(fd, line, len);
    (void)real_close(fd);
}

static void log_fault(const struct rule *r, const char *path)
{
    const char *log = getenv("APIKEY_FAULT_LOG");
    char line[PATH_MAX + 64];
    int n;
    if (log == NULL || *log == '\0')
        return;
    n = snprintf(line, sizeof line, "%s %s %s\n", op_names[r->op], r->err_name, path);
    if (n > 0)
        append_line(log, line, strlen(line));
}

static void trace_call(enum op op, const char *path)
{
    struct timespec ts;
    char line[PATH_MAX + 64];
    int n;
    clock_gettime(CLOCK_REALTIME, &ts);
    n = snprintf(line, sizeof line, "%s %s %lld.%09ld\n", op_names[op], path, (long long)ts.tv_sec,
                 ts.tv_nsec);
    if (n > 0)
        append_line(trace, line, strlen(line));
}

/* Whether calls of op are traced: the data path of the temp file, not its attributes. */
static int traced(enum op op)
{
    return trace != NULL && op != OP_FSETXATTR;
}

/* The rule that fires for this call, if any; every matching rule counts the call. */
static struct rule *fault_for(enum op op, const char *path)
{
    struct rule *fire = NULL;
    if (traced(op))
        trace_call(op, path);
    for (int i = 0; i < nrules; i++) {
        struct rule *r = &rules[i];
        if (r->op != op)
            continue;
        r->seen++;
        if (fire == NULL && (r->nth == 0 || r->nth == r->seen))
            fire = r;
    }
    if (fire != NULL)
        log_fault(fire, path);
    return fire;
}

/* Whether calls of op need their path: a rule for op, or tracing. */
static int has_rule(enum op op)
{
    if (traced(op))
        return 1;
    for (int i = 0; i < nrules; i++)
        if (rules[i].op == op)
            return 1;
    return 0;
}

/* The rule that fires for a call on fd, if any. */
static struct rule *fd_fault(enum op op, int fd)
{
    char path[PATH_MAX];
    configure();
    if (!has_rule(op) || !fd_matches(fd, path, sizeof path))
        return NULL;
    return fault_for(op, path);
}

ssize_t write(int fd, const void *buf, size_t count)
{
    struct rule *r = fd_fault(OP_WRITE, fd);
    if (r == NULL)
        return real_write(fd, buf, count);
    if (r->err == 0)
        return real_write(fd, buf, count > 1 ? count / 2 : count);
    errno = r->err;
    return -1;
}

int fsync(int fd)
{
    struct rule *r = fd_fault(OP_FSYNC, fd);
    if (r == NULL)
        return real_fsync(fd);
    errno = r->err;
    return -1;
}

int fdatasync(int fd)
{
    struct rule *r = fd_fault(OP_FDATASYNC, fd);
    if (r == NULL)
        return real_fdatasync(fd);
    errno = r->err;
    return -1;
}

/* Linux releases the descriptor even when close reports an error: so does the shim. */
int close(int fd)
{
    struct rule *r = fd_fault(OP_CLOSE, fd);
    int rc = real_close(fd);
    if (r == NULL)
        return rc;
    errno = r->err;
    return -1;
}

int rename(const char *from, const char *to)
{
    struct rule *r = NULL;
    configure();
    if (has_rule(OP_RENAME) && (path_matches(from) || path_matches(to)))
        r = fault_for(OP_RENAME, path_matches(from) ? from : to);
    if (r == NULL)
        return real_rename(from, to);
    errno = r->err;
    return -1;
}

int fsetxattr(int fd, const char *name, const void *value, size_t size, int flags)
{
    struct rule *r = fd_fault(OP_FSETXATTR, fd);
    if (r == NULL)
        return real_fsetxattr(fd, name, value, size, flags);
    errno = r->err;
    return -1;
}
