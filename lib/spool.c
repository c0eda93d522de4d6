/*
 * spool - the queue directory: durable acceptance, per-recipient state in
 * place, one runner per entry.  See spool.h for the contract and the crash
 * window.
 *
 * Envelope records (one per line, values xtext-encoded as RFC 3461 does, so
 * that no value can hold a space or a line break):
 *   SGQ1                      format and version
 *   C CREATED UID             accepted at (unix time), by uid
 *   F SENDER                  envelope sender, empty for <>
 *   T TENANT
 *   O ORIGIN
 *   Q QUEUEID                 optional
 *   E ENVID                   optional
 *   M RET BODY8
 *   S P AAAAAA NNNNNNNNNNNNN  policy done, attempts, next try (fixed width)
 *   R S N ORCPT ADDR          state byte, notify bits (hex), ORCPT or "-"
 * then an empty line and the message.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "fdio.h"
#include "mymalloc.h"
#include "spool.h"

#define SPOOL_MAGIC "SGQ1"
#define S_RECORD_FMT "S %c %06d %013" PRId64 "\n"
#define S_RECORD_LEN 25 /* "S P AAAAAA NNNNNNNNNNNNN\n" */

struct spool {
    char *path;
    int tmp_fd, queue_fd, defer_fd; /* the subdirectories */
    int done_fd; /* "done": what once-only entries leave behind; -1 if none */
};

/* open_sub - open (and with create, make) one subdirectory */
static int open_sub(const char *path, const char *name, int create, struct buf *why)
{
    struct buf p;
    int fd;

    buf_init(&p, 128);
    buf_setf(&p, "%s/%s", path, name);
    if (create && mkdir(buf_str(&p), 02770) == 0) {
        /* the mode whatever the umask: every process of the group writes there */
        chmod(buf_str(&p), 02770);
    } else if (create && errno != EEXIST) {
        buf_error(why, "cannot create %s: %m", buf_str(&p));
        buf_release(&p);
        return -1;
    }
    fd = open(buf_str(&p), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        buf_error(why, "cannot open spool directory %s: %m", buf_str(&p));
    buf_release(&p);
    return fd;
}

/* spool_open - see spool.h */
struct spool *spool_open(const char *path, int create, struct buf *why)
{
    struct spool *sp;

    if (create && mkdir(path, 02770) < 0 && errno != EEXIST) {
        buf_error(why, "cannot create spool %s: %m", path);
        return NULL;
    }
    sp = mycalloc(1, sizeof(*sp));
    sp->path = mystrdup(path);
    sp->tmp_fd = sp->queue_fd = sp->defer_fd = sp->done_fd = -1;
    if ((sp->tmp_fd = open_sub(path, "tmp", create, why)) < 0 ||
        (sp->queue_fd = open_sub(path, "queue", create, why)) < 0 ||
        (sp->defer_fd = open_sub(path, "defer", create, why)) < 0) {
        spool_close(sp);
        return NULL;
    }
    /* made by any process of the spool's group: spools older than it lack it */
    if ((sp->done_fd = open_sub(path, SPOOL_DONE_DIR, 1, why)) < 0)
        buf_reset(why);
    return sp;
}

/* spool_close - see spool.h */
void spool_close(struct spool *sp)
{
    if (sp == NULL)
        return;
    if (sp->tmp_fd >= 0)
        close(sp->tmp_fd);
    if (sp->queue_fd >= 0)
        close(sp->queue_fd);
    if (sp->defer_fd >= 0)
        close(sp->defer_fd);
    if (sp->done_fd >= 0)
        close(sp->done_fd);
    myfree(sp->path);
    myfree(sp);
}

/* spool_path - see spool.h */
const char *spool_path(const struct spool *sp)
{
    return sp->path;
}

/* spool_env_init - see spool.h */
void spool_env_init(struct spool_env *env)
{
    memset(env, 0, sizeof(*env));
    env->ret = SPOOL_RET_UNSET;
}

/* spool_env_release - see spool.h */
void spool_env_release(struct spool_env *env)
{
    for (size_t i = 0; i < env->nrcpts; i++) {
        myfree(env->rcpts[i].addr);
        myfree(env->rcpts[i].orcpt);
    }
    myfree(env->rcpts);
    myfree(env->sender);
    myfree(env->tenant);
    myfree(env->envid);
    myfree(env->origin);
    myfree(env->queue_id);
    spool_env_init(env);
}

/* spool_env_add - see spool.h */
struct spool_rcpt *spool_env_add(struct spool_env *env, const char *addr,
                                 const char *orcpt, int notify)
{
    struct spool_rcpt *r;

    env->rcpts = mygrow(env->rcpts, &env->cap, env->nrcpts, sizeof(*env->rcpts));
    r = &env->rcpts[env->nrcpts++];
    r->addr = mystrdup(addr);
    r->orcpt = orcpt ? mystrdup(orcpt) : NULL;
    r->notify = notify;
    r->state = SPOOL_PENDING;
    r->offset = 0;
    return r;
}

/* xtext_put - append s as RFC 3461 xtext */
static void xtext_put(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 33 || *p > 126 || *p == '+' || *p == '=') {
            buf_putc(b, '+');
            buf_putc(b, hex[*p >> 4]);
            buf_putc(b, hex[*p & 15]);
        } else {
            buf_putc(b, *p);
        }
    }
}

/* xtext_get - decode len bytes of xtext into a new string; NULL if bad */
static char *xtext_get(const char *s, size_t len)
{
    struct buf b;

    buf_init(&b, len + 1);
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            int hi, lo;
            if (i + 2 >= len)
                goto bad;
            hi = buf_hex_digit((unsigned char)s[i + 1]);
            lo = buf_hex_digit((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                goto bad;
            buf_putc(&b, hi << 4 | lo);
            i += 2;
        } else {
            buf_putc(&b, s[i]);
        }
    }
    {
        char *text = buf_steal(&b);
        buf_release(&b);
        return text;
    }
bad:
    buf_release(&b);
    return NULL;
}

/* env_format - the envelope text of env, recording the state offsets */
static void env_format(const struct spool_env *env, struct buf *b)
{
    buf_puts(b, SPOOL_MAGIC "\n");
    buf_printf(b, "C %" PRId64 " %lu\n", env->created, (unsigned long)env->uid);
    buf_puts(b, "F ");
    xtext_put(b, env->sender ? env->sender : "");
    buf_puts(b, "\nT ");
    xtext_put(b, env->tenant ? env->tenant : "default");
    buf_puts(b, "\nO ");
    xtext_put(b, env->origin ? env->origin : "sendmail");
    buf_putc(b, '\n');
    if (env->queue_id) {
        buf_puts(b, "Q ");
        xtext_put(b, env->queue_id);
        buf_putc(b, '\n');
    }
    if (env->envid) {
        buf_puts(b, "E ");
        xtext_put(b, env->envid);
        buf_putc(b, '\n');
    }
    buf_printf(b, "M %d %d\n", env->ret, env->body_8bit ? 1 : 0);
    buf_printf(b, S_RECORD_FMT, env->policy_done ? '1' : '0',
               env->attempts > 999999 ? 999999 : env->attempts, env->next_try);
    for (size_t i = 0; i < env->nrcpts; i++) {
        const struct spool_rcpt *r = &env->rcpts[i];
        buf_printf(b, "R %c %x ", r->state, r->notify & 15);
        if (r->orcpt)
            xtext_put(b, r->orcpt);
        else
            buf_putc(b, '-');
        buf_putc(b, ' ');
        xtext_put(b, r->addr);
        buf_putc(b, '\n');
    }
    buf_putc(b, '\n');
}

/* new_id - a queue id: seconds, microseconds and randomness, in hex */
static void new_id(char id[SPOOL_ID_MAX])
{
    struct timeval tv;
    uint32_t rnd = 0;

    gettimeofday(&tv, NULL);
    if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
        rnd = (uint32_t)getpid() ^ (uint32_t)tv.tv_usec << 8;
    snprintf(id, SPOOL_ID_MAX, "%09llX%05lX%06X", (unsigned long long)tv.tv_sec,
             (unsigned long)tv.tv_usec, (unsigned)(rnd & 0xffffff));
}

static int entry_load(struct spool *sp, const char *id, int fd,
                      struct spool_entry **entry, struct buf *why);

/* spool_submit - see spool.h */
/*
 * submit - spool_submit, and with once (a name of SPOOL_ONCE_PREFIX and hex)
 * spool_submit_once: the entry linked in under that name, never over an
 * entry of that name nor beside what one left in done/; 1 then
 */
static int submit(struct spool *sp, const struct spool_env *env, const char *msg,
                  size_t len, int flags, const char *once, char id[SPOOL_ID_MAX],
                  struct spool_entry **entry, struct buf *why)
{
    struct buf head;
    struct iovec iov[2];
    int fd = -1, saved, keep = (flags & SPOOL_KEEP_LOCKED) && entry;
    int renamed = 0;
    char tmp[SPOOL_ID_MAX];

    if (env->nrcpts == 0)
        return errno = EINVAL, buf_error(why, "no recipients");
    for (size_t i = 0; i < env->nrcpts; i++)
        if (env->rcpts[i].addr[0] == 0)
            return errno = EINVAL, buf_error(why, "an empty recipient address");
    for (int tries = 0;; tries++) {
        new_id(tmp);
        fd = openat(sp->tmp_fd, tmp,
                    O_CREAT | O_EXCL | (keep ? O_RDWR : O_WRONLY) | O_CLOEXEC, 0660);
        if (fd >= 0 || errno != EEXIST || tries > 10)
            break;
    }
    snprintf(id, SPOOL_ID_MAX, "%s", once ? once : tmp);
    if (fd < 0) {
        saved = errno;
        buf_error(why, "cannot create a queue file in %s/tmp: %m", sp->path);
        errno = saved;
        return -1;
    }
    if (keep && flock(fd, LOCK_EX) < 0)
        goto fail;
    buf_init(&head, 512);
    env_format(env, &head);
    iov[0].iov_base = head.data;
    iov[0].iov_len = head.len;
    iov[1].iov_base = (void *)msg;
    iov[1].iov_len = len;
    if (fchmod(fd, 0660) < 0 || fd_write_all(fd, iov, 2) < 0 || fsync(fd) < 0) {
        buf_release(&head);
        goto fail;
    }
    buf_release(&head);
    if (!keep) {
        int rc = close(fd);
        fd = -1;
        if (rc < 0)
            goto fail;
    }
    if (once == NULL) {
        if (renameat(sp->tmp_fd, tmp, sp->queue_fd, id) < 0)
            goto fail;
    } else {
        /*
         * linked, not renamed: an entry of that name is never replaced.  The
         * relay moves an entry it is done with into done/ in one rename, so
         * when the link succeeds and done/ has nothing of that name, no entry
         * of that name ever was.
         */
        if (linkat(sp->tmp_fd, tmp, sp->queue_fd, id, 0) < 0) {
            if (errno != EEXIST)
                goto fail;
            unlinkat(sp->tmp_fd, tmp, 0);
            if (fd >= 0)
                close(fd);
            return 1;
        }
        unlinkat(sp->tmp_fd, tmp, 0);
        if (sp->done_fd >= 0 && faccessat(sp->done_fd, id, F_OK, 0) == 0) {
            unlinkat(sp->queue_fd, id, 0);
            if (fd >= 0)
                close(fd);
            return 1;
        }
    }
    renamed = 1;
    if (fsync(sp->queue_fd) < 0)
        goto fail;
    if (keep) {
        struct buf lwhy;
        buf_init(&lwhy, 64);
        if (entry_load(sp, id, fd, entry, &lwhy) != 0) {
            /* durable already: the runner will find it; never report failure */
            *entry = NULL;
            close(fd);
            msg_warn("queue file %s written but not reopened: %s", id, buf_str(&lwhy));
        }
        buf_release(&lwhy);
    }
    return 0;

fail:
    saved = errno;
    buf_error(why, "cannot write queue file %s in %s: %m", id, sp->path);
    if (fd >= 0)
        close(fd);
    if (renamed)
        unlinkat(sp->queue_fd, id, 0);
    else
        unlinkat(sp->tmp_fd, tmp, 0);
    errno = saved;
    return -1;
}

/* spool_submit - see spool.h */
int spool_submit(struct spool *sp, const struct spool_env *env, const char *msg,
                 size_t len, int flags, char id[SPOOL_ID_MAX], struct spool_entry **entry,
                 struct buf *why)
{
    return submit(sp, env, msg, len, flags, NULL, id, entry, why);
}

/* spool_submit_once - see spool.h */
int spool_submit_once(struct spool *sp, const struct spool_env *env, const char *msg,
                      size_t len, const unsigned char *key, size_t key_len,
                      char id[SPOOL_ID_MAX], struct buf *why)
{
    char once[SPOOL_ID_MAX];
    size_t n = strlen(SPOOL_ONCE_PREFIX);

    memcpy(once, SPOOL_ONCE_PREFIX, n);
    for (size_t i = 0; i < key_len && n + 2 < SPOOL_ID_MAX - 8; i++)
        n += (size_t)snprintf(once + n, 3, "%02X", key[i]);
    once[n] = 0;
    return submit(sp, env, msg, len, 0, once, id, NULL, why);
}

/* field_end - the end of the space-delimited field starting at p */
static const char *field_end(const char *p, const char *end)
{
    while (p < end && *p != ' ')
        p++;
    return p;
}

/* parse_env - parse the envelope at the start of data; 0 or -1 */
static int parse_env(const char *data, size_t len, struct spool_env *env,
                     off_t *state_offset, size_t *msg_off, struct buf *why)
{
    const char *p = data, *end = data + len;
    int seen_c = 0, seen_s = 0;

    spool_env_init(env);
    if (len < 5 || memcmp(data, SPOOL_MAGIC "\n", 5) != 0)
        return buf_error(why, "not a sendguard queue file");
    p += 5;
    for (;;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *f, *fe;
        if (nl == NULL)
            goto bad;
        if (nl == p) { /* the empty line: the message follows */
            *msg_off = (size_t)(nl + 1 - data);
            break;
        }
        if (nl - p < 2 || p[1] != ' ')
            goto bad;
        f = p + 2;
        switch (*p) {
        case 'C': {
            char *e;
            long long c = strtoll(f, &e, 10);
            unsigned long u;
            if (*e != ' ')
                goto bad;
            u = strtoul(e + 1, &e, 10);
            if (e != nl)
                goto bad;
            env->created = c;
            env->uid = (uid_t)u;
            seen_c = 1;
            break;
        }
        case 'F':
            if ((env->sender = xtext_get(f, (size_t)(nl - f))) == NULL)
                goto bad;
            break;
        case 'T':
            if ((env->tenant = xtext_get(f, (size_t)(nl - f))) == NULL)
                goto bad;
            break;
        case 'O':
            if ((env->origin = xtext_get(f, (size_t)(nl - f))) == NULL)
                goto bad;
            break;
        case 'Q':
            if ((env->queue_id = xtext_get(f, (size_t)(nl - f))) == NULL)
                goto bad;
            break;
        case 'E':
            if ((env->envid = xtext_get(f, (size_t)(nl - f))) == NULL)
                goto bad;
            break;
        case 'M':
            if (nl - f != 3 || f[1] != ' ' || f[0] < '0' || f[0] > '2' ||
                (f[2] != '0' && f[2] != '1'))
                goto bad;
            env->ret = f[0] - '0';
            env->body_8bit = f[2] == '1';
            break;
        case 'S': {
            char *e;
            if (nl + 1 - p != S_RECORD_LEN || (f[0] != '0' && f[0] != '1') || f[1] != ' ')
                goto bad;
            env->policy_done = f[0] == '1';
            env->attempts = (int)strtol(f + 2, &e, 10);
            if (*e != ' ')
                goto bad;
            env->next_try = strtoll(e + 1, &e, 10);
            if (e != nl)
                goto bad;
            *state_offset = (off_t)(f - data);
            seen_s = 1;
            break;
        }
        case 'R': {
            struct spool_rcpt *r;
            char *orcpt = NULL, *addr;
            int notify;
            if (nl - f < 5 || f[1] != ' ' || buf_hex_digit((unsigned char)f[2]) < 0 ||
                f[3] != ' ')
                goto bad;
            if (strchr("-DFX", f[0]) == NULL)
                goto bad;
            notify = buf_hex_digit((unsigned char)f[2]);
            fe = field_end(f + 4, nl);
            if (fe >= nl)
                goto bad;
            if (!(fe - (f + 4) == 1 && f[4] == '-') &&
                (orcpt = xtext_get(f + 4, (size_t)(fe - (f + 4)))) == NULL)
                goto bad;
            if ((addr = xtext_get(fe + 1, (size_t)(nl - fe - 1))) == NULL || *addr == 0) {
                myfree(addr);
                myfree(orcpt);
                goto bad;
            }
            r = spool_env_add(env, addr, orcpt, notify);
            myfree(addr);
            myfree(orcpt);
            r->state = f[0];
            r->offset = (off_t)(f - data);
            break;
        }
        default:
            break; /* a record of a later version: ignored */
        }
        p = nl + 1;
    }
    if (!seen_c || !seen_s || env->sender == NULL || env->nrcpts == 0)
        goto bad;
    if (env->tenant == NULL)
        env->tenant = mystrdup("default");
    if (env->origin == NULL)
        env->origin = mystrdup("sendmail");
    return 0;
bad:
    spool_env_release(env);
    return buf_error(why, "damaged queue file envelope");
}

/* read_file - the whole file behind fd */
static int read_file(int fd, char **data, size_t *len)
{
    struct stat st;
    size_t got = 0;

    if (fstat(fd, &st) < 0)
        return -1;
    *data = mymalloc((size_t)st.st_size + 1);
    while (got < (size_t)st.st_size) {
        ssize_t n = pread(fd, *data + got, (size_t)st.st_size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            myfree(*data);
            *data = NULL;
            if (n == 0)
                errno = EIO;
            return -1;
        }
        got += (size_t)n;
    }
    (*data)[got] = 0;
    *len = got;
    return 0;
}

/* entry_load - read and parse an opened, locked entry */
static int entry_load(struct spool *sp, const char *id, int fd,
                      struct spool_entry **entry, struct buf *why)
{
    struct spool_entry *e = mycalloc(1, sizeof(*e));
    size_t off = 0;

    e->sp = sp;
    e->fd = fd;
    snprintf(e->id, sizeof(e->id), "%s", id);
    if (read_file(fd, &e->data, &e->len) < 0) {
        buf_error(why, "cannot read queue file %s: %m", id);
        goto fail;
    }
    if (parse_env(e->data, e->len, &e->env, &e->state_offset, &off, why) < 0) {
        buf_error(why, "queue file %s: damaged envelope", id);
        goto fail;
    }
    e->msg = e->data + off;
    e->msg_len = e->len - off;
    *entry = e;
    return 0;
fail:
    myfree(e->data);
    myfree(e);
    return -1;
}

/* spool_expire_done - see spool.h */
void spool_expire_done(struct spool *sp, int64_t max_age)
{
    int fd;
    DIR *d;
    struct dirent *de;
    struct stat st;
    time_t now = time(NULL);

    if (sp->done_fd < 0 || (fd = dup(sp->done_fd)) < 0)
        return;
    if ((d = fdopendir(fd)) == NULL) {
        close(fd);
        return;
    }
    rewinddir(d);
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.' && fstatat(sp->done_fd, de->d_name, &st, 0) == 0 &&
            now - st.st_mtime > max_age)
            unlinkat(sp->done_fd, de->d_name, 0);
    closedir(d);
}

#define KICK_NAME "kick"

/* spool_kick - see spool.h */
void spool_kick(struct spool *sp, const char *id)
{
    struct buf path, line;
    int fd;

    buf_init(&path, 128);
    buf_setf(&path, "%s/" KICK_NAME, sp->path);
    /* ENXIO: a FIFO with no reader; ENOENT: no daemon ever listened */
    fd = open(buf_str(&path), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    buf_release(&path);
    if (fd < 0)
        return;
    buf_init(&line, SPOOL_ID_MAX + 1);
    buf_printf(&line, "%s\n", id);
    /* shorter than PIPE_BUF: written whole or not at all (a full pipe) */
    if (write(fd, line.data, line.len) < 0) {
        /* the daemon is behind: its next queue run delivers the entry */
    }
    buf_release(&line);
    close(fd);
}

/* spool_kick_listen - see spool.h */
int spool_kick_listen(struct spool *sp, struct buf *why)
{
    struct buf path;
    struct stat st;
    int fd = -1, wfd;

    buf_init(&path, 128);
    buf_setf(&path, "%s/" KICK_NAME, sp->path);
    if (mkfifo(buf_str(&path), 0660) == 0) {
        chmod(buf_str(&path), 0660); /* whatever the umask: the milter writes */
    } else if (errno != EEXIST) {
        buf_error(why, "cannot make %s: %m", buf_str(&path));
        goto out;
    }
    if ((fd = open(buf_str(&path), O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
        buf_error(why, "cannot open %s: %m", buf_str(&path));
        goto out;
    }
    if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode)) {
        buf_error(why, "%s is not a FIFO", buf_str(&path));
        close(fd);
        fd = -1;
        goto out;
    }
    /* a writer of our own: the last other writer's close is no end of file */
    if ((wfd = open(buf_str(&path), O_WRONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
        buf_error(why, "cannot open %s for writing: %m", buf_str(&path));
        close(fd);
        fd = -1;
        goto out;
    }
    (void)wfd; /* kept open for the life of the process */
out:
    buf_release(&path);
    return fd;
}

/* spool_entry_open - see spool.h */
int spool_entry_open(struct spool *sp, const char *id, struct spool_entry **entry,
                     struct buf *why)
{
    struct stat st;
    int fd;

    *entry = NULL;
    if (strchr(id, '/') || id[0] == '.' || strlen(id) >= SPOOL_ID_MAX)
        return buf_error(why, "bad queue id '%s'", id);
    if ((fd = openat(sp->queue_fd, id, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        if (errno == ENOENT)
            return 2;
        return buf_error(why, "cannot open queue file %s: %m", id);
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int saved = errno;
        close(fd);
        if (saved == EWOULDBLOCK)
            return 1;
        errno = saved;
        return buf_error(why, "cannot lock queue file %s: %m", id);
    }
    /* removed by the runner that held the lock before us */
    if (fstat(fd, &st) < 0 || st.st_nlink == 0) {
        close(fd);
        return 2;
    }
    if (entry_load(sp, id, fd, entry, why) < 0) {
        close(fd);
        return -1;
    }
    return 0;
}

/* spool_entry_close - see spool.h */
void spool_entry_close(struct spool_entry *e)
{
    if (e == NULL)
        return;
    if (e->fd >= 0)
        close(e->fd);
    spool_env_release(&e->env);
    myfree(e->data);
    myfree(e);
}

/* put_at - overwrite bytes of the entry in place */
static int put_at(struct spool_entry *e, off_t off, const char *bytes, size_t n,
                  struct buf *why)
{
    ssize_t w;

    do
        w = pwrite(e->fd, bytes, n, off);
    while (w < 0 && errno == EINTR);
    if (w != (ssize_t)n)
        return buf_error(why, "cannot update queue file %s: %m", e->id);
    return 0;
}

/* spool_entry_mark - see spool.h */
int spool_entry_mark(struct spool_entry *e, size_t i, enum spool_state state,
                     struct buf *why)
{
    char c = (char)state;

    if (i >= e->env.nrcpts)
        msg_panic("spool_entry_mark: recipient %zu of %zu", i, e->env.nrcpts);
    if (put_at(e, e->env.rcpts[i].offset, &c, 1, why) < 0)
        return -1;
    e->env.rcpts[i].state = state;
    return 0;
}

/* write_state - rewrite the fixed-width S record */
static int write_state(struct spool_entry *e, struct buf *why)
{
    char rec[S_RECORD_LEN + 8];
    int n;

    n = snprintf(rec, sizeof(rec), S_RECORD_FMT, e->env.policy_done ? '1' : '0',
                 e->env.attempts > 999999 ? 999999 : e->env.attempts, e->env.next_try);
    if (n != S_RECORD_LEN)
        msg_panic("spool state record of %d bytes", n);
    /* the offset points after "S ": skip those two bytes of rec */
    return put_at(e, e->state_offset, rec + 2, (size_t)n - 3, why);
}

/* spool_entry_schedule - see spool.h */
int spool_entry_schedule(struct spool_entry *e, int attempts, int64_t next_try,
                         struct buf *why)
{
    e->env.attempts = attempts;
    e->env.next_try = next_try;
    return write_state(e, why);
}

/* spool_entry_policy_done - see spool.h */
int spool_entry_policy_done(struct spool_entry *e, struct buf *why)
{
    e->env.policy_done = 1;
    return write_state(e, why);
}

/* spool_entry_sync - see spool.h */
int spool_entry_sync(struct spool_entry *e, struct buf *why)
{
    if (fdatasync(e->fd) < 0)
        return buf_error(why, "cannot sync queue file %s: %m", e->id);
    return 0;
}

/* spool_entry_pending - see spool.h */
size_t spool_entry_pending(const struct spool_entry *e)
{
    size_t n = 0;

    for (size_t i = 0; i < e->env.nrcpts; i++)
        n += e->env.rcpts[i].state == SPOOL_PENDING;
    return n;
}

/* spool_entry_remove - see spool.h */
int spool_entry_remove(struct spool_entry *e, struct buf *why)
{
    int rc = 0;

    /* a once-only entry leaves its name behind, emptied, in one rename */
    if (strncmp(e->id, SPOOL_ONCE_PREFIX, strlen(SPOOL_ONCE_PREFIX)) == 0 &&
        e->sp->done_fd >= 0 &&
        renameat(e->sp->queue_fd, e->id, e->sp->done_fd, e->id) == 0) {
        if (ftruncate(e->fd, 0) < 0)
            msg_warn("cannot empty %s/%s/%s: %m", e->sp->path, SPOOL_DONE_DIR, e->id);
    } else if (unlinkat(e->sp->queue_fd, e->id, 0) < 0 && errno != ENOENT) {
        rc = buf_error(why, "cannot remove queue file %s: %m", e->id);
    }
    unlinkat(e->sp->defer_fd, e->id, 0);
    spool_entry_close(e);
    return rc;
}

/* spool_defer_note - see spool.h */
void spool_defer_note(struct spool_entry *e, size_t i, const char *reason)
{
    struct buf line;
    int fd;

    /* one line per note, appended; the last one of a recipient wins */
    buf_init(&line, 256);
    buf_printf(&line, "%zu ", i);
    for (const char *p = reason; *p; p++)
        buf_putc(&line, *p == '\n' || *p == '\r' ? ' ' : *p);
    buf_putc(&line, '\n');
    fd = openat(e->sp->defer_fd, e->id, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0660);
    if (fd < 0 || write(fd, line.data, line.len) != (ssize_t)line.len)
        msg_warn("cannot note deferral of %s: %m", e->id);
    if (fd >= 0)
        close(fd);
    buf_release(&line);
}

/* spool_defer_reason - see spool.h */
void spool_defer_reason(struct spool *sp, const char *id, size_t i, struct buf *out)
{
    char *data = NULL;
    size_t len = 0;
    int fd = openat(sp->defer_fd, id, O_RDONLY | O_CLOEXEC);

    buf_reset(out);
    if (fd < 0)
        return;
    if (read_file(fd, &data, &len) == 0) {
        for (char *p = data, *nl; p < data + len; p = nl + 1) {
            char *e2;
            unsigned long idx;
            if ((nl = memchr(p, '\n', (size_t)(data + len - p))) == NULL)
                break; /* a torn last line */
            idx = strtoul(p, &e2, 10);
            if (*e2 == ' ' && idx == i)
                buf_set(out, ""), buf_append(out, e2 + 1, (size_t)(nl - e2 - 1));
        }
    }
    myfree(data);
    close(fd);
}

/* spool_scan - see spool.h */
int spool_scan(struct spool *sp, int (*fn)(const char *id, void *ctx), void *ctx,
               struct buf *why)
{
    int fd = openat(sp->queue_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d;
    struct dirent *de;

    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        if (fd >= 0)
            close(fd);
        return buf_error(why, "cannot read %s/queue: %m", sp->path);
    }
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (fn(de->d_name, ctx))
            break;
    }
    closedir(d);
    return 0;
}

/* spool_read_env - see spool.h */
int spool_read_env(struct spool *sp, const char *id, struct spool_env *env, size_t *size,
                   struct buf *why)
{
    char *data;
    size_t len, off = 0;
    off_t so;
    int fd, rc;

    spool_env_init(env);
    if ((fd = openat(sp->queue_fd, id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        if (errno == ENOENT)
            return 2;
        return buf_error(why, "cannot open queue file %s: %m", id);
    }
    rc = read_file(fd, &data, &len);
    close(fd);
    if (rc < 0)
        return buf_error(why, "cannot read queue file %s: %m", id);
    rc = parse_env(data, len, env, &so, &off, why);
    if (rc == 0 && size)
        *size = len - off;
    myfree(data);
    return rc;
}

/* spool_notify_parse - see spool.h */
int spool_notify_parse(const char *v, size_t len)
{
    int bits = 0;

    if (len == 5 && strncasecmp(v, "NEVER", 5) == 0)
        return SPOOL_NOTIFY_NEVER;
    while (len > 0) {
        const char *c = memchr(v, ',', len);
        size_t n = c ? (size_t)(c - v) : len;
        if (n == 7 && strncasecmp(v, "SUCCESS", 7) == 0)
            bits |= SPOOL_NOTIFY_SUCCESS;
        else if (n == 7 && strncasecmp(v, "FAILURE", 7) == 0)
            bits |= SPOOL_NOTIFY_FAILURE;
        else if (n == 5 && strncasecmp(v, "DELAY", 5) == 0)
            bits |= SPOOL_NOTIFY_DELAY;
        else
            return -1;
        if (c != NULL && n + 1 == len)
            return -1; /* a list ending in a comma */
        v += n + (c != NULL);
        len -= n + (c != NULL);
    }
    return bits ? bits : -1;
}

/* spool_retry_delay - see spool.h */
int64_t spool_retry_delay(int attempts, int64_t min, int64_t max)
{
    int64_t d = min > 0 ? min : 1;

    for (int i = 1; i < attempts && d < max; i++)
        d *= 2;
    return d > max ? max : d;
}
