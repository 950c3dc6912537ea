/*
 * storage.c: the keystore file on disk. Writers are serialized by an flock on "PATH.lock"
 * beside the keystore; a write never touches PATH in place (temp file, fsync, rename, fsync of
 * the folder), so a reader sees the old file or the new one, whole. Reads refuse a keystore
 * that group or others could have rewritten. The stamp (device, inode, size, mtime, ctime) tells a
 * long-lived reader that the file was replaced.
 *
 * Plain libc calls on purpose: a test shim can interpose write/fsync/rename with LD_PRELOAD.
 */
#include "apikey.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

/* What to do about a failed call, appended to the message ("" when there is nothing useful). */
static const char *advice(int err)
{
    switch (err) {
    case EACCES:
    case EPERM:
        return "; run as the keystore's owner or choose another file with --keystore";
    case ENOSPC:
    case EDQUOT:
        return "; free some disk space and try again";
    case EROFS:
        return "; choose a keystore on a writable file system with --keystore";
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
    struct stat sb;
    unsigned char *data = NULL;
    size_t cap, used = 0;
    int fd;

    *buf = NULL;
    *len = 0;
    memset(st, 0, sizeof *st);
    /* O_NONBLOCK: opening a FIFO named by mistake must not hang; no effect on regular files. */
    do
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        if (errno != ENOENT)
            return fail_errno(e, "read", path, errno);
        /* A link to nothing is a mistake to report, not an empty keystore. */
        if (lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode))
            return ak_fail(e, AK_EIO,
                           "%s is a symbolic link to a missing file; fix the link or choose the "
                           "keystore file with --keystore",
                           path);
        return 1;
    }
    if (fstat(fd, &sb) != 0) {
        fail_errno(e, "check", path, errno);
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        ak_fail(e, AK_EIO, "%s is not a regular file; choose the keystore file with --keystore",
                path);
        goto fail;
    }
    if (sb.st_mode & (S_IWGRP | S_IWOTH)) {
        ak_fail(e, AK_EINSECURE,
                "keystore %s is writable by group or others (mode %04o); run: chmod 600 %s", path,
                (unsigned)(sb.st_mode & 07777), path);
        goto fail;
    }
    if (sb.st_size > MAX_KEYSTORE_SIZE) {
        ak_fail(e, AK_ECORRUPT,
                "%s is too large to be a keystore (%lld bytes); check the file given with "
                "--keystore",
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
    close(fd);
    fill_stamp(st, &sb);
    *buf = data;
    *len = used;
    return 0;

fail:
    free(data);
    close(fd);
    return -1;
}

/* Creates the keystore's folder (mode 0700) when it is missing; only the last component. */
static int ensure_folder(const char *dir, ak_err *e)
{
    struct stat sb;
    if (stat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode))
            return ak_fail(e, AK_EIO, "%s is not a folder; choose another file with --keystore",
                           dir);
        return 0;
    }
    if (errno != ENOENT)
        return fail_errno(e, "use folder", dir, errno);
    if (mkdir(dir, 0700) == 0 || errno == EEXIST)
        return 0;
    if (errno == ENOENT)
        return ak_fail(e, AK_EIO,
                       "cannot create folder %s: its parent folder does not exist; create it "
                       "first or choose another file with --keystore",
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

int storage_lock(const char *path, int timeout_ms, ak_lock *lk, ak_err *e)
{
    char *dir = NULL, *lockpath = NULL;
    int fd = -1, rc = -1;

    lk->fd = -1;
    if (*base_of(path) == '\0')
        return ak_fail(e, AK_EIO, "keystore path '%s' names a folder; give a file name", path);
    dir = folder_of(path);
    lockpath = path_with(path, ".lock");
    if (dir == NULL || lockpath == NULL) {
        ak_fail(e, AK_ENOMEM, "out of memory");
        goto done;
    }
    if (ensure_folder(dir, e) != 0)
        goto done;
    /* Never unlinked: removing a lock file lets two writers lock two different inodes. Never a
     * symbolic link: it could make a root writer create a file anywhere. */
    do
        fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        if (errno == ELOOP)
            ak_fail(e, AK_EIO, "lock file %s is a symbolic link; remove it", lockpath);
        else
            fail_errno(e, "open lock file", lockpath, errno);
        goto done;
    }
    if (wait_for_lock(fd, path, timeout_ms, e) != 0)
        goto done;
    if (remove_stale_temps(dir, base_of(path), e) != 0)
        goto done;
    lk->fd = fd;
    fd = -1;
    rc = 0;
done:
    if (fd >= 0)
        close(fd);
    free(dir);
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

/*
 * The new file keeps the old one's owner and read bits (a server reading the keystore as
 * another user goes on reading it); a new keystore is 0600. Write bits for group and others
 * are never given: storage_read refuses such a file.
 */
static int match_old_file(int fd, const char *path, const struct stat *old, ak_err *e)
{
    mode_t mode = old != NULL ? (old->st_mode & 0644) | 0600 : 0600;
    if (old != NULL && (old->st_uid != geteuid() || old->st_gid != getegid())) {
        if (fchown(fd, old->st_uid, old->st_gid) != 0)
            return ak_fail(e, AK_EIO,
                           "cannot keep the owner of %s (uid %u, gid %u): %s; run as root or "
                           "as the keystore's owner",
                           path, (unsigned)old->st_uid, (unsigned)old->st_gid, strerror(errno));
    }
    if (fchmod(fd, mode) != 0)
        return fail_errno(e, "set permissions of", path, errno);
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

int storage_replace(const char *path, const unsigned char *buf, size_t len, ak_err *e)
{
    struct stat old;
    int have_old, made = 0, fd = -1, rc = -1;
    char *dir = folder_of(path);
    char *tmp = path_with(path, TMP_SUFFIX TMP_RANDOM);

    if (dir == NULL || tmp == NULL) {
        ak_fail(e, AK_ENOMEM, "out of memory");
        goto done;
    }
    if (lstat(path, &old) == 0) {
        /* rename would replace the link itself with a regular file. */
        if (S_ISLNK(old.st_mode)) {
            ak_fail(e, AK_EIO, "%s is a symbolic link; give the file it points to with --keystore",
                    path);
            goto done;
        }
        have_old = 1;
    } else if (errno == ENOENT) {
        have_old = 0;
    } else {
        fail_errno(e, "check", path, errno);
        goto done;
    }

    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        fail_errno(e, "create a file in folder", dir, errno);
        goto done;
    }
    made = 1;
    if (match_old_file(fd, path, have_old ? &old : NULL, e) != 0)
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
    if (rename(tmp, path) != 0) {
        fail_errno(e, "replace", path, errno);
        goto done;
    }
    made = 0; /* the temp file is PATH now */
    rc = sync_folder(dir, path, e) == 0 ? 0 : 1;
done:
    if (fd >= 0)
        close(fd);
    if (made)
        (void)unlink(tmp);
    free(tmp);
    free(dir);
    return rc;
}
