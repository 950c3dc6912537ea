/*
 * storage.c: the keystore file on disk. Writers are serialized by an flock on "PATH.lock"
 * beside the keystore; a write never touches PATH in place (temp file, fsync, rename, fsync of
 * the folder), so a reader sees the old file or the new one, whole. Reads and writes trust a
 * keystore only when nobody but its user and root could have written it: the file, its lock file
 * and every symbolic link on the way to it owned by the running user or root, not writable by
 * group or others, in folders that are owned by them too and that group and others cannot write
 * (unless sticky, and then only the running user's own files count). A path that is a symbolic
 * link is followed: the file it points to is read, locked and replaced in its own folder. A
 * rewrite carries the owner, mode, ACLs and extended attributes over (libacl, libattr), or fails.
 * The stamp (device, inode, size, mtime, ctime) tells a long-lived reader that the file was
 * replaced.
 *
 * Plain libc calls on purpose: a test shim can interpose write/fsync/rename/fsetxattr with
 * LD_PRELOAD.
 */
#include "apikey.h"

#include <acl/libacl.h>
#include <attr/error_context.h>
#include <attr/libattr.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Far above any real keystore (100,000 keys are ~20 MB): a bigger file is the wrong file. */
#define MAX_KEYSTORE_SIZE ((off_t)1 << 30)
/* mkstemp replaces these with [A-Za-z0-9]. */
#define TMP_SUFFIX ".tmp-"
#define TMP_RANDOM "XXXXXX"
/* Symbolic links followed to reach the keystore, as the kernel's own limit. */
#define MAX_LINKS 40

/* What to do about a failed call, appended to the message ("" when there is nothing useful). */
static const char *advice(int err)
{
    switch (err) {
    case EACCES:
    case EPERM:
        return "; run as the keystore's owner or choose another keystore file";
    case ENOSPC:
    case EDQUOT:
        return "; free some disk space and try again";
    case EROFS:
        return "; choose a keystore on a writable file system";
    default:
        return "";
    }
}

static int fail_errno(ak_err *e, const char *what, const char *path, int err)
{
    return ak_fail(e, AK_EIO, "cannot %s %s: %s%s", what, path, strerror(err), advice(err));
}

/* path + suffix, malloc'd. */
static char *path_with(const char *path, const char *suffix)
{
    size_t a = strlen(path), b = strlen(suffix);
    char *s = malloc(a + b + 1);
    if (s != NULL) {
        memcpy(s, path, a);
        memcpy(s + a, suffix, b + 1);
    }
    return s;
}

/* The folder that holds path, malloc'd: "." for a bare name, "/" for a file at the root. */
static char *folder_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t n;
    char *s;
    if (slash == NULL)
        return strdup(".");
    n = slash == path ? 1 : (size_t)(slash - path);
    s = malloc(n + 1);
    if (s != NULL) {
        memcpy(s, path, n);
        s[n] = '\0';
    }
    return s;
}

static const char *base_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL ? slash + 1 : path;
}

static void fill_stamp(ak_stamp *st, const struct stat *sb)
{
    memset(st, 0, sizeof *st);
    st->exists = 1;
    st->dev = sb->st_dev;
    st->ino = sb->st_ino;
    st->size = sb->st_size;
    st->mtime = sb->st_mtim;
    st->ctime = sb->st_ctim;
}

/* ---- who is trusted with the keystore ------------------------------------------------------ */

/* The running user's and root's files only: whoever else owns the keystore, a link to it or its
 * folder could change its keys. */
static int trusted_owner(uid_t uid)
{
    return uid == 0 || uid == geteuid();
}

/* A user's name, or the number when the user has none. */
static void user_name(uid_t uid, char *buf, size_t size)
{
    struct passwd pw, *found = NULL;
    char scratch[1024];
    if (getpwuid_r(uid, &pw, scratch, sizeof scratch, &found) == 0 && found != NULL)
        snprintf(buf, size, "%s", found->pw_name);
    else
        snprintf(buf, size, "%u", (unsigned)uid);
}

/*
 * Checks the folder that holds a keystore, a lock file or a link (path names that file, for
 * the message). *shared is set when others may create files there (sticky and writable by
 * group or others, as /tmp): then only the running user's own files are trusted in it. A
 * missing folder passes: it holds nothing yet, and a writer creates it with mode 0700.
 */
static int check_folder(const char *dir, const char *path, int *shared, ak_err *e)
{
    struct stat sb;
    char owner[64], me[64];
    *shared = 0;
    if (stat(dir, &sb) != 0)
        return errno == ENOENT ? 0 : fail_errno(e, "check folder", dir, errno);
    if (!S_ISDIR(sb.st_mode))
        return ak_fail(e, AK_EIO, "%s is not a folder; choose another keystore file", dir);
    if (!trusted_owner(sb.st_uid)) {
        user_name(sb.st_uid, owner, sizeof owner);
        user_name(geteuid(), me, sizeof me);
        return ak_fail(e, AK_EINSECURE,
                       "folder %s of %s belongs to user %s, who could replace the keystore; keep "
                       "it in a folder of your own or root's, or run as root: chown %s %s",
                       dir, path, owner, me, dir);
    }
    if (sb.st_mode & (S_IWGRP | S_IWOTH)) {
        if (!(sb.st_mode & S_ISVTX))
            return ak_fail(e, AK_EINSECURE,
                           "folder %s of %s is writable by group or others (mode %04o), who "
                           "could replace the keystore; run: chmod go-w %s",
                           dir, path, (unsigned)(sb.st_mode & 07777), dir);
        *shared = 1;
    }
    return 0;
}

/* Checks who owns a file (what: "keystore", "lock file", "symbolic link"); shared as
 * check_folder gave it for the file's folder. */
static int check_owner(const char *what, const char *path, const struct stat *sb, int shared,
                       ak_err *e)
{
    char owner[64], me[64];
    if (shared ? sb->st_uid == geteuid() : trusted_owner(sb->st_uid))
        return 0;
    user_name(sb->st_uid, owner, sizeof owner);
    user_name(geteuid(), me, sizeof me);
    if (shared)
        return ak_fail(e, AK_EINSECURE,
                       "%s %s belongs to user %s, in a folder that others can write: only your "
                       "own files are trusted there; keep the keystore in a folder of your own",
                       what, path, owner);
    /* chown -h: the link itself, not the file it points to */
    return ak_fail(e, AK_EINSECURE,
                   "%s %s belongs to user %s, not to you or root, and its owner could change the "
                   "keys; if it is yours to use, run as root: chown %s%s %s",
                   what, path, owner, strcmp(what, "symbolic link") == 0 ? "-h " : "", me, path);
}

/* The keystore file as found from a path: links followed, checked, and open for reading. */
typedef struct {
    char *path;     /* the file itself (malloc'd): the path given, or where its links lead */
    char *dir;      /* its folder (malloc'd) */
    int shared;     /* its folder is sticky and writable by others (see check_folder) */
    int fd;         /* open for reading; -1 when the file does not exist */
    struct stat sb; /* fstat of fd */
} ak_target;

static void target_close(ak_target *t)
{
    if (t->fd >= 0)
        close(t->fd);
    free(t->path);
    free(t->dir);
    t->fd = -1;
    t->path = t->dir = NULL;
}

/* Where the link at path (in folder dir) points, malloc'd; NULL with errno on failure. */
static char *link_target(const char *path, const char *dir, off_t size)
{
    size_t cap = size > 0 ? (size_t)size + 1 : PATH_MAX;
    size_t nd = strlen(dir);
    size_t at = dir[nd - 1] == '/' ? nd : nd + 1; /* dir is "/" or has no slash at its end */
    char *buf = malloc(at + cap);
    ssize_t n;
    if (buf == NULL)
        return NULL;
    /* Read after "dir/", so that a relative target becomes dir/target in place. */
    n = readlink(path, buf + at, cap);
    if (n < 0 || (size_t)n >= cap) {
        free(buf);
        if (n >= 0)
            errno = ENAMETOOLONG; /* the link changed while it was read */
        return NULL;
    }
    buf[at + (size_t)n] = '\0';
    if (buf[at] == '/') {
        memmove(buf, buf + at, (size_t)n + 1);
        return buf;
    }
    memcpy(buf, dir, nd);
    buf[at - 1] = '/';
    return buf;
}

/*
 * Finds the keystore file from path: follows symbolic links (each one checked as a file is),
 * checks every folder on the way, opens the file (not a link, not a FIFO's wait) and checks it:
 * a regular file, owned by the running user or root, not writable by group or others.
 * Returns 0 with t filled (t->fd -1 when path names no file); -1 with e, t left empty.
 */
static int target_open(const char *path, ak_target *t, ak_err *e)
{
    struct stat sb;
    int links = 0;

    memset(t, 0, sizeof *t);
    t->fd = -1;
    t->path = strdup(path);
    if (t->path == NULL)
        goto nomem;
    for (;;) {
        char *next;
        t->dir = folder_of(t->path);
        if (t->dir == NULL)
            goto nomem;
        if (check_folder(t->dir, path, &t->shared, e) != 0)
            goto fail;
        if (lstat(t->path, &sb) != 0) {
            if (errno != ENOENT) {
                fail_errno(e, "check", t->path, errno);
                goto fail;
            }
            if (links == 0)
                return 0;
            /* A link to nothing is a mistake to report, not an empty keystore. */
            ak_fail(e, AK_EIO,
                    "%s is a symbolic link to a missing file (%s); fix the link or choose "
                    "another keystore file",
                    path, t->path);
            goto fail;
        }
        if (!S_ISLNK(sb.st_mode))
            break;
        if (check_owner("symbolic link", t->path, &sb, t->shared, e) != 0)
            goto fail;
        if (++links > MAX_LINKS) {
            ak_fail(e, AK_EIO, "cannot read %s: %s; fix the link", path, strerror(ELOOP));
            goto fail;
        }
        next = link_target(t->path, t->dir, sb.st_size);
        if (next == NULL) {
            if (errno == ENOMEM)
                goto nomem;
            fail_errno(e, "read link", t->path, errno);
            goto fail;
        }
        free(t->path);
        free(t->dir);
        t->path = next;
        t->dir = NULL;
    }
    /* O_NOFOLLOW: the name was just seen to be no link. O_NONBLOCK: opening a FIFO named by
     * mistake must not hang; no effect on regular files. */
    do
        t->fd = open(t->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
    while (t->fd < 0 && errno == EINTR);
    if (t->fd < 0) {
        fail_errno(e, "read", path, errno);
        goto fail;
    }
    if (fstat(t->fd, &t->sb) != 0) {
        fail_errno(e, "check", path, errno);
        goto fail;
    }
    if (!S_ISREG(t->sb.st_mode)) {
        ak_fail(e, AK_EIO, "%s is not a regular file; choose the keystore file itself", path);
        goto fail;
    }
    if (check_owner("keystore", path, &t->sb, t->shared, e) != 0)
        goto fail;
    if (t->sb.st_mode & (S_IWGRP | S_IWOTH)) {
        ak_fail(e, AK_EINSECURE,
                "keystore %s is writable by group or others (mode %04o); run: chmod 600 %s", path,
                (unsigned)(t->sb.st_mode & 07777), path);
        goto fail;
    }
    return 0;

nomem:
    ak_fail(e, AK_ENOMEM, "out of memory");
fail:
    target_close(t);
    return -1;
}

/* A keystore its owner made read-only is not changed: that is the owner's say. */
static int check_writable(const ak_target *t, const char *path, ak_err *e)
{
    if (t->fd < 0 || (t->sb.st_mode & S_IWUSR))
        return 0;
    return ak_fail(e, AK_EIO,
                   "keystore %s is read-only (mode %04o), so it is not changed; to allow "
                   "changes, run: chmod u+w %s",
                   path, (unsigned)(t->sb.st_mode & 07777), path);
}

int storage_stamp(const char *path, ak_stamp *st, ak_err *e)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        memset(st, 0, sizeof *st);
        if (errno == ENOENT)
            return 0;
        return fail_errno(e, "check", path, errno);
    }
    fill_stamp(st, &sb);
    return 0;
}

int storage_stamp_equal(const ak_stamp *a, const ak_stamp *b)
{
    if (a->exists != b->exists)
        return 0;
    if (!a->exists)
        return 1;
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

int storage_read(const char *path, unsigned char **buf, size_t *len, ak_stamp *st, ak_err *e)
{
    ak_target t;
    struct stat sb;
    unsigned char *data = NULL;
    size_t cap, used = 0;
    int fd;

    *buf = NULL;
    *len = 0;
    memset(st, 0, sizeof *st);
    /* As for a write (storage_lock): a missing "dir/" is not an empty keystore. */
    if (*base_of(path) == '\0')
        return ak_fail(e, AK_EIO, "keystore path '%s' names a folder; give a file name", path);
    if (target_open(path, &t, e) != 0)
        return -1;
    if (t.fd < 0) {
        target_close(&t);
        return 1;
    }
    fd = t.fd;
    sb = t.sb;
    if (sb.st_size > MAX_KEYSTORE_SIZE) {
        ak_fail(e, AK_ECORRUPT,
                "%s is too large to be a keystore (%lld bytes); check that it is the "
                "keystore file",
                path, (long long)sb.st_size);
        goto fail;
    }
    /* +1 so that reaching end of file needs no second allocation; grows if the file does. */
    cap = (size_t)sb.st_size + 1;
    data = malloc(cap);
    if (data == NULL) {
        ak_fail(e, AK_ENOMEM, "out of memory reading %s", path);
        goto fail;
    }
    for (;;) {
        ssize_t n;
        if (used == cap) {
            unsigned char *bigger;
            if ((off_t)cap > MAX_KEYSTORE_SIZE) {
                ak_fail(e, AK_ECORRUPT, "%s is too large to be a keystore", path);
                goto fail;
            }
            bigger = realloc(data, cap * 2);
            if (bigger == NULL) {
                ak_fail(e, AK_ENOMEM, "out of memory reading %s", path);
                goto fail;
            }
            data = bigger;
            cap *= 2;
        }
        n = read(fd, data + used, cap - used);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail_errno(e, "read", path, errno);
            goto fail;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    /* Read-only descriptor: close cannot lose data, so its result changes nothing. */
    target_close(&t);
    fill_stamp(st, &sb);
    *buf = data;
    *len = used;
    return 0;

fail:
    free(data);
    target_close(&t);
    return -1;
}

/* Creates the keystore's folder (mode 0700) when it is missing; only the last component. */
static int ensure_folder(const char *dir, ak_err *e)
{
    struct stat sb;
    if (stat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode))
            return ak_fail(e, AK_EIO, "%s is not a folder; choose another keystore file", dir);
        return 0;
    }
    if (errno != ENOENT)
        return fail_errno(e, "use folder", dir, errno);
    if (mkdir(dir, 0700) == 0 || errno == EEXIST)
        return 0;
    if (errno == ENOENT)
        return ak_fail(e, AK_EIO,
                       "cannot create folder %s: its parent folder does not exist; create it "
                       "first or choose another keystore file",
                       dir);
    return fail_errno(e, "create folder", dir, errno);
}

/* A name mkstemp made from base + TMP_SUFFIX + TMP_RANDOM: the prefix, then exactly six
 * letters or digits. Exact, so that another keystore named "PATH.tmp-something" is spared. */
static int is_temp_of(const char *name, const char *base)
{
    size_t nb = strlen(base), ns = strlen(TMP_SUFFIX), nr = strlen(TMP_RANDOM);
    if (strlen(name) != nb + ns + nr || strncmp(name, base, nb) != 0 ||
        strncmp(name + nb, TMP_SUFFIX, ns) != 0)
        return 0;
    for (const char *p = name + nb + ns; *p != '\0'; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return 0;
    return 1;
}

/* Removes the temp files of a writer that died; only a lock holder makes them, so any found
 * while holding the lock are stale. */
static int remove_stale_temps(const char *dir, const char *base, ak_err *e)
{
    DIR *d = opendir(dir);
    struct dirent *ent;
    if (d == NULL)
        return fail_errno(e, "list folder", dir, errno);
    for (;;) {
        errno = 0;
        ent = readdir(d);
        if (ent == NULL)
            break;
        if (ent->d_type != DT_REG && ent->d_type != DT_UNKNOWN)
            continue;
        if (!is_temp_of(ent->d_name, base))
            continue;
        /* A leftover that cannot be removed (sticky folder, another owner) only costs disk
         * space: it must not stop this write, so the error is not reported. */
        (void)unlinkat(dirfd(d), ent->d_name, 0);
    }
    if (errno != 0) {
        int err = errno;
        closedir(d);
        return fail_errno(e, "list folder", dir, err);
    }
    closedir(d);
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for the lock with short sleeps that grow to 32 ms, never past the deadline. */
static int wait_for_lock(int fd, const char *path, int timeout_ms, ak_err *e)
{
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    long pause_ms = 1;
    for (;;) {
        int64_t left;
        struct timespec ts;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK)
            return fail_errno(e, "lock", path, errno);
        left = deadline - now_ms();
        if (left <= 0)
            return ak_fail(e, AK_ELOCKED,
                           "keystore %s is locked by another apikey command; try again", path);
        if (pause_ms > left)
            pause_ms = (long)left;
        ts.tv_sec = 0;
        ts.tv_nsec = pause_ms * 1000000L;
        /* Woken early by a signal: the loop checks the deadline again. */
        (void)nanosleep(&ts, NULL);
        if (pause_ms < 32)
            pause_ms *= 2;
    }
}

/* Opens (creating it 0600) the lock file of the keystore t, and checks who owns it: a lock file
 * planted by another user must not be trusted, nor its folder handed a file of ours. */
static int open_lock_file(const ak_target *t, const char *lockpath, ak_err *e)
{
    struct stat sb;
    int fd;
    /* Never unlinked: removing a lock file lets two writers lock two different inodes. Never a
     * symbolic link: it could make a root writer create a file anywhere. */
    do
        fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int err = errno;
        if (err == ELOOP)
            return ak_fail(e, AK_EIO, "lock file %s is a symbolic link; remove it", lockpath);
        /* Another user's lock file that cannot be opened: say whose it is, not just EACCES. */
        if (lstat(lockpath, &sb) == 0 && check_owner("lock file", lockpath, &sb, t->shared, e) != 0)
            return -1;
        return fail_errno(e, "open lock file", lockpath, err);
    }
    if (fstat(fd, &sb) != 0) {
        fail_errno(e, "check lock file", lockpath, errno);
        close(fd);
        return -1;
    }
    if (check_owner("lock file", lockpath, &sb, t->shared, e) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int storage_lock(const char *path, int timeout_ms, ak_lock *lk, ak_err *e)
{
    ak_target t;
    char *lockpath = NULL;
    int fd = -1, rc = -1;

    lk->fd = -1;
    if (*base_of(path) == '\0')
        return ak_fail(e, AK_EIO, "keystore path '%s' names a folder; give a file name", path);
    /* Everything that would refuse the write is checked before anything is created. */
    if (target_open(path, &t, e) != 0)
        return -1;
    if (check_writable(&t, path, e) != 0)
        goto done;
    /* The lock is beside the file itself, so that writers through a link and writers given the
     * file directly share it. */
    lockpath = path_with(t.path, ".lock");
    if (lockpath == NULL) {
        ak_fail(e, AK_ENOMEM, "out of memory");
        goto done;
    }
    if (ensure_folder(t.dir, e) != 0)
        goto done;
    fd = open_lock_file(&t, lockpath, e);
    if (fd < 0)
        goto done;
    if (wait_for_lock(fd, path, timeout_ms, e) != 0)
        goto done;
    if (remove_stale_temps(t.dir, base_of(t.path), e) != 0)
        goto done;
    lk->fd = fd;
    fd = -1;
    rc = 0;
done:
    if (fd >= 0)
        close(fd);
    target_close(&t);
    free(lockpath);
    return rc;
}

void storage_unlock(ak_lock *lk)
{
    if (lk->fd >= 0) {
        /* Closing the descriptor releases the flock; there is nothing to do if it fails. */
        close(lk->fd);
        lk->fd = -1;
    }
}

static int write_all(int fd, const unsigned char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len > SSIZE_MAX ? SSIZE_MAX : len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int fsync_retry(int fd)
{
    int rc;
    do
        rc = fsync(fd);
    while (rc != 0 && errno == EINTR);
    return rc;
}

/* What libacl and libattr report through their error context: the first failure, with the
 * errno it came with. */
typedef struct {
    struct error_context ctx; /* first, so that the callback can find the rest */
    char msg[256];
} copy_error;

static void copy_error_report(struct error_context *ctx, const char *fmt, ...)
{
    copy_error *ce = (copy_error *)ctx;
    int err = errno;
    size_t used;
    va_list ap;
    if (ce->msg[0] != '\0')
        return;
    va_start(ap, fmt);
    vsnprintf(ce->msg, sizeof ce->msg, fmt, ap);
    va_end(ap);
    used = strlen(ce->msg);
    snprintf(ce->msg + used, sizeof ce->msg - used, "%s%s", used > 0 ? ": " : "", strerror(err));
}

/*
 * The new file gets what the old one had: owner and group, mode, POSIX ACLs and the other
 * extended attributes (a server that reads the keystore as another user, by its group or an
 * ACL entry, goes on reading it). target_open has checked the old file, so its owner is one we
 * trust. A new keystore is 0600. What cannot be carried over fails the write.
 */
static int match_old_file(int fd, const ak_target *old, const char *path, ak_err *e)
{
    copy_error ce = {{copy_error_report, NULL, NULL}, ""};
    if (old->fd < 0) {
        if (fchmod(fd, 0600) != 0)
            return fail_errno(e, "set permissions of", path, errno);
        return 0;
    }
    /* First the owner: a change of owner clears some attributes (security.capability). */
    if (old->sb.st_uid != geteuid() || old->sb.st_gid != getegid()) {
        if (fchown(fd, old->sb.st_uid, old->sb.st_gid) != 0)
            return ak_fail(e, AK_EIO,
                           "cannot keep the owner of %s (uid %u, gid %u): %s; run as root or "
                           "as the keystore's owner",
                           path, (unsigned)old->sb.st_uid, (unsigned)old->sb.st_gid,
                           strerror(errno));
    }
    /* The mode and ACL (perm_copy_fd), then every other attribute that /etc/xattr.conf does not
     * say to skip (attr_copy_fd's default check). */
    if (perm_copy_fd(path, old->fd, path, fd, &ce.ctx) != 0 ||
        attr_copy_fd(path, old->fd, path, fd, NULL, &ce.ctx) != 0)
        return ak_fail(e, AK_EIO,
                       "cannot carry the ACL and extended attributes of %s over to its new "
                       "version (%s), so it is not changed; keep the keystore on a file system "
                       "that supports them, or remove them (setfacl -b, setfattr -x)",
                       path, ce.msg[0] != '\0' ? ce.msg : "unknown error");
    return 0;
}

/* fsync of the folder makes the rename itself durable. File systems that cannot sync a
 * folder say EINVAL; there is nothing more to do on them. */
static int sync_folder(const char *dir, const char *path, ak_err *e)
{
    int fd, err = 0;
    do
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        err = errno;
    else if (fsync_retry(fd) != 0 && errno != EINVAL)
        err = errno;
    if (fd >= 0)
        close(fd);
    if (err != 0)
        return ak_fail(e, AK_EIO,
                       "%s was replaced but its folder %s could not be synced to disk: %s; "
                       "check the disk",
                       path, dir, strerror(err));
    return 0;
}

/* Why a rename over the keystore failed, and what to do. */
static int fail_rename(ak_err *e, const char *path, int err)
{
    /* The file is a mount point: a single file bind-mounted (into a container, say) cannot be
     * replaced, only written in place, which a keystore never is. */
    if (err == EBUSY || err == EXDEV)
        return ak_fail(e, AK_EIO,
                       "cannot replace %s: %s; it is a mount point (a file mounted on its own), "
                       "and a keystore is changed by replacing it: mount its folder instead",
                       path, strerror(err));
    return fail_errno(e, "replace", path, err);
}

int storage_replace(const char *path, const unsigned char *buf, size_t len, ak_err *e)
{
    ak_target old;
    int made = 0, fd = -1, rc = -1;
    char *tmp = NULL;

    /* Checked again under the lock: the file may have changed since storage_lock. A link is
     * followed: the file it points to is replaced, in its own folder, and the link stays. */
    if (target_open(path, &old, e) != 0)
        return -1;
    if (check_writable(&old, path, e) != 0)
        goto done;
    tmp = path_with(old.path, TMP_SUFFIX TMP_RANDOM);
    if (tmp == NULL) {
        ak_fail(e, AK_ENOMEM, "out of memory");
        goto done;
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        fail_errno(e, "create a file in folder", old.dir, errno);
        goto done;
    }
    made = 1;
    if (match_old_file(fd, &old, path, e) != 0)
        goto done;
    if (write_all(fd, buf, len) != 0 || fsync_retry(fd) != 0) {
        fail_errno(e, "write", path, errno);
        goto done;
    }
    /* No retry on EINTR: Linux has closed the descriptor anyway, and fsync already succeeded. */
    if (close(fd) != 0 && errno != EINTR) {
        fd = -1;
        fail_errno(e, "write", path, errno);
        goto done;
    }
    fd = -1;
    if (rename(tmp, old.path) != 0) {
        fail_rename(e, path, errno);
        goto done;
    }
    made = 0; /* the temp file is the keystore now */
    rc = sync_folder(old.dir, path, e) == 0 ? 0 : 1;
done:
    if (fd >= 0)
        close(fd);
    if (made)
        (void)unlink(tmp);
    free(tmp);
    target_close(&old);
    return rc;
}
