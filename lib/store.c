/*
 * store - suppression stores, see store.h for the layout and the locking.
 *
 * Everything that changes an entry goes through entry_replace(), which
 * diffs the records before and after and adjusts the index and the counters;
 * nothing else writes "E", "L" or "N" keys.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <tcutil.h>

#include "fdio.h"
#include "mymalloc.h"
#include "store.h"
#include "store_backend.h"
#include "utf8.h"

#define STORE_LOCK_FILE "store.lock"
#define STORE_GATE_FILE "store.gate"
#define STORE_TURN_FILE "store.turn"
#define STORE_DEFAULT_BATCH 5000
#define STORE_SCAN_CHUNK 50000 /* index keys walked per shared-lock hold */

/* The header of store.lock, shared by every process through mmap. */
struct store_shm {
    uint64_t generation; /* bumped by every commit */
    uint32_t waiting;    /* a writer wants the lock */
    uint32_t dirty;      /* 1: transaction open, 2: entries may be ahead of index */
    uint32_t spare;
    char pad[4096 - 20];
};

/* One record inside an entry's value. */
struct rec {
    char tag;
    uint32_t group;
    int64_t created;
    uint8_t kind;
    uint8_t nstr;       /* display + list fields */
    const char *str[5]; /* not NUL-terminated */
    uint16_t len[5];
};

struct recset {
    size_t n, cap;
    struct rec *r;
};

struct store {
    char *dir;
    int mode;
    const struct store_backend *be;
    struct store_shm *shm;
    /* the writer's descriptors (-1 when the lock file is not writable) */
    int wlockfd, wgatefd, wturnfd;
    pthread_key_t tls;    /* per-thread reader descriptors (struct rfds) */
    pthread_mutex_t use;  /* one thread at a time uses rdb */
    struct store_db *rdb; /* reader handle, shared by threads */
    uint64_t rgen;        /* generation rdb reflects */
    /*
     * Writing.  One thread at a time: it holds "wmu" from store_begin (or
     * store_bulk_begin) to the end of its transaction (or bulk operation),
     * and "owner" is set for it alone; the fields below are its.
     */
    pthread_mutex_t wmu;
    pthread_key_t owner;
    struct store_db *wdb;
    int in_tx;
    int tx_failed; /* a change of the caller's transaction failed */
    size_t tx_ops;
    TCMAP *deltas; /* counter changes not yet written */
    /* bulk */
    size_t batch;
    int bulk;
    int bulk_failed; /* a batch was lost: the bulk cannot be kept */
    int ending;      /* the last commit of a bulk operation: make it durable */
    int undoing;     /* st_undo at work: changes are not logged */
    volatile sig_atomic_t *stop; /* set (by a signal handler): end bulk work */
    TCMAP *undo;                 /* entry key -> 0 (absent) or 1 + prior value */
    uint64_t max_wait_us;        /* longest wait for the write lock */
    int held; /* a bulk operation keeps the gate and wdb between batches */
    int registered;
    int shm_rw; /* the shared header is writable (readers may be read-only) */
    dev_t dev;
    ino_t ino;
};

static const char list_tag[STORE_NLISTS] = {'b', 's', 'u', 'g', 'a'};
static const char *const list_names[STORE_NLISTS] = {"bounces", "spam_reports",
                                                     "unsubscribes", "group", "allow"};

/* store_list_name - the list's name in listings and JSON */
const char *store_list_name(enum store_list list)
{
    return (unsigned)list < STORE_NLISTS ? list_names[list] : "?";
}

/* tag_list - the list of a record tag */
static enum store_list tag_list(char tag)
{
    for (int i = 0; i < STORE_NLISTS; i++)
        if (list_tag[i] == tag)
            return (enum store_list)i;
    return STORE_NLISTS;
}

/* Big-endian integers keep the index in numeric order. */
static void put_be32(struct buf *b, uint32_t v)
{
    unsigned char c[4] = {v >> 24, v >> 16, v >> 8, v};

    buf_append(b, c, 4);
}

static void put_be64(struct buf *b, uint64_t v)
{
    put_be32(b, (uint32_t)(v >> 32));
    put_be32(b, (uint32_t)v);
}

static uint32_t get_be32(const void *p)
{
    const unsigned char *c = p;

    return (uint32_t)c[0] << 24 | (uint32_t)c[1] << 16 | (uint32_t)c[2] << 8 | c[3];
}

static uint64_t get_be64(const void *p)
{
    return (uint64_t)get_be32(p) << 32 | get_be32((const char *)p + 4);
}

/* key_tenant - start a key: one kind letter, the tenant, a NUL */
static void key_tenant(struct buf *k, char kind, const char *tenant)
{
    buf_reset(k);
    buf_putc(k, kind);
    buf_append(k, tenant, strlen(tenant) + 1);
}

/* key_entry - E tenant NUL key */
static void key_entry(struct buf *k, const char *tenant, const char *key, size_t klen)
{
    key_tenant(k, 'E', tenant);
    buf_append(k, key, klen);
}

/* key_list_prefix - L tenant NUL tag group: the prefix of one list's index */
static void key_list_prefix(struct buf *k, const char *tenant, char tag, uint32_t group)
{
    key_tenant(k, 'L', tenant);
    buf_putc(k, tag);
    put_be32(k, group);
}

/* key_index - one index key: newest first, then by entry key */
static void key_index(struct buf *k, const char *tenant, char tag, uint32_t group,
                      int64_t created, const char *key, size_t klen)
{
    key_list_prefix(k, tenant, tag, group);
    put_be64(k, ~(uint64_t)created);
    buf_append(k, key, klen);
}

/* key_count - N tenant NUL tag group */
static void key_count(struct buf *k, const char *tenant, char tag, uint32_t group)
{
    key_tenant(k, 'N', tenant);
    buf_putc(k, tag);
    put_be32(k, group);
}

/* key_soft - S tenant NUL key: an address's recent soft bounces */
static void key_soft(struct buf *k, const char *tenant, const char *key, size_t klen)
{
    key_tenant(k, 'S', tenant);
    buf_append(k, key, klen);
}

/* key_group - G tenant NUL id (in the entries and in the index) */
static void key_group(struct buf *k, const char *tenant, uint32_t id)
{
    key_tenant(k, 'G', tenant);
    put_be32(k, id);
}

/* Record sets. */
static void recset_init(struct recset *rs)
{
    rs->n = 0;
    rs->cap = 0;
    rs->r = NULL;
}

static void recset_free(struct recset *rs)
{
    myfree(rs->r);
    recset_init(rs);
}

static struct rec *recset_add(struct recset *rs)
{
    rs->r = mygrow(rs->r, &rs->cap, rs->n, sizeof(*rs->r));
    memset(&rs->r[rs->n], 0, sizeof(rs->r[0]));
    return &rs->r[rs->n++];
}

static struct rec *recset_find(struct recset *rs, char tag, uint32_t group)
{
    for (size_t i = 0; i < rs->n; i++)
        if (rs->r[i].tag == tag && rs->r[i].group == group)
            return &rs->r[i];
    return NULL;
}

/*
 * rec_decode - split an entry's value into records that point into it:
 * tag(1) group(4) created(8) kind(1) nstr(1) then nstr x (len(2) bytes).
 */
static int rec_decode(const char *v, size_t vlen, struct recset *rs)
{
    size_t off = 0;

    rs->n = 0;
    while (off < vlen) {
        struct rec *r;

        if (vlen - off < 15)
            return -1;
        r = recset_add(rs);
        r->tag = v[off];
        r->group = get_be32(v + off + 1);
        r->created = (int64_t)get_be64(v + off + 5);
        r->kind = (uint8_t)v[off + 13];
        r->nstr = (uint8_t)v[off + 14];
        off += 15;
        if (r->nstr > 5 || tag_list(r->tag) == STORE_NLISTS)
            return -1;
        for (int i = 0; i < r->nstr; i++) {
            if (vlen - off < 2)
                return -1;
            r->len[i] =
                (uint16_t)((unsigned char)v[off] << 8 | (unsigned char)v[off + 1]);
            off += 2;
            if (vlen - off < r->len[i])
                return -1;
            r->str[i] = v + off;
            off += r->len[i];
        }
    }
    return 0;
}

/* rec_encode - the value for a set of records */
static void rec_encode(const struct recset *rs, struct buf *out)
{
    buf_reset(out);
    for (size_t i = 0; i < rs->n; i++) {
        const struct rec *r = &rs->r[i];

        buf_putc(out, r->tag);
        put_be32(out, r->group);
        put_be64(out, (uint64_t)r->created);
        buf_putc(out, r->kind);
        buf_putc(out, r->nstr);
        for (int j = 0; j < r->nstr; j++) {
            buf_putc(out, r->len[j] >> 8);
            buf_putc(out, r->len[j] & 0xff);
            buf_append(out, r->str[j], r->len[j]);
        }
    }
}

/* Locking. */

/* One thread's descriptors for reading: flock belongs to an open file. */
struct rfds {
    int lock, turn;
};

/* st_thread_fds - this thread's descriptors of store.lock and store.turn */
static struct rfds *st_thread_fds(struct store *st, struct buf *why)
{
    struct rfds *fds = pthread_getspecific(st->tls);
    struct buf path;

    if (fds)
        return fds;
    fds = mymalloc(sizeof(*fds));
    buf_init(&path, 128);
    buf_setf(&path, "%s/%s", st->dir, STORE_LOCK_FILE);
    fds->lock = open(buf_str(&path), O_RDONLY | O_CLOEXEC);
    buf_setf(&path, "%s/%s", st->dir, STORE_TURN_FILE);
    fds->turn = fds->lock < 0 ? -1 : open(buf_str(&path), O_RDONLY | O_CLOEXEC);
    /* a store no writer has opened since store.turn came in: no turnstile */
    if (fds->lock >= 0 && fds->turn < 0 && errno == ENOENT) {
        fds->turn = -2;
    } else if (fds->turn < 0) {
        buf_error(why, "cannot open %s: %s", buf_str(&path), strerror(errno));
        if (fds->lock >= 0)
            close(fds->lock);
        myfree(fds);
        buf_release(&path);
        return NULL;
    }
    buf_release(&path);
    pthread_setspecific(st->tls, fds);
    return fds;
}

/* st_close_thread_fds - thread exit (or close): close its descriptors */
static void st_close_thread_fds(void *p)
{
    struct rfds *fds = p;

    if (fds) {
        close(fds->lock);
        if (fds->turn >= 0)
            close(fds->turn);
        myfree(fds);
    }
}

/* st_flock - flock(2), restarted after signals */
static int st_flock(int fd, int op)
{
    int rc;

    while ((rc = flock(fd, op)) < 0 && errno == EINTR)
        ;
    return rc;
}

/* st_own - does the calling thread hold the store's writer role? */
static int st_own(struct store *st)
{
    return pthread_getspecific(st->owner) != NULL;
}

/* st_take - become the store's writing thread (waits for another to finish) */
static void st_take(struct store *st)
{
    pthread_mutex_lock(&st->wmu);
    pthread_setspecific(st->owner, st);
}

/* st_give - stop being it */
static void st_give(struct store *st)
{
    pthread_setspecific(st->owner, NULL);
    pthread_mutex_unlock(&st->wmu);
}

/*
 * st_wait_ex - a writer's wait for an exclusive lock: restarted after
 * signals, unless the interrupt flag is set (a queued sgadmin stops on ^C).
 */
static int st_wait_ex(struct store *st, int fd)
{
    int rc;

    while ((rc = flock(fd, LOCK_EX)) < 0 && errno == EINTR)
        if (st->stop && *st->stop && !st->undoing)
            break;
    return rc;
}

static int st_recover(struct store *st, struct buf *why);

/*
 * st_data_lock - the exclusive data lock, through the turnstile: while we
 * hold store.turn no new reader gets past it, so we wait only for the readers
 * already inside, and the readers we held back get in before our next turn.
 */
static int st_data_lock(struct store *st, struct buf *why)
{
    struct timespec t0, t1;
    uint64_t waited;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (st_wait_ex(st, st->wturnfd) < 0)
        return buf_error(why, "cannot lock %s/%s: %s", st->dir, STORE_TURN_FILE,
                         strerror(errno));
    __atomic_store_n(&st->shm->waiting, 1, __ATOMIC_SEQ_CST);
    if (st_wait_ex(st, st->wlockfd) < 0) {
        buf_error(why, "cannot lock %s/%s: %s", st->dir, STORE_LOCK_FILE,
                  strerror(errno));
        __atomic_store_n(&st->shm->waiting, 0, __ATOMIC_SEQ_CST);
        st_flock(st->wturnfd, LOCK_UN);
        return -1;
    }
    st_flock(st->wturnfd, LOCK_UN);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    waited = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000 +
             (uint64_t)((t1.tv_nsec - t0.tv_nsec) / 1000);
    if (waited > st->max_wait_us)
        st->max_wait_us = waited;
    return 0;
}

/* st_data_unlock - let the readers in */
static void st_data_unlock(struct store *st)
{
    __atomic_store_n(&st->shm->waiting, 0, __ATOMIC_SEQ_CST);
    st_flock(st->wlockfd, LOCK_UN);
}

/*
 * st_lock_ex - the calling thread, which owns the writer role, becomes the
 * one writer: the gate (against other writers), then the data lock.
 */
static int st_lock_ex(struct store *st, struct buf *why)
{
    if (st->wlockfd < 0)
        return buf_error(why, "store %s: %s/%s is not writable by this process", st->dir,
                         st->dir, STORE_LOCK_FILE);
    if (st_wait_ex(st, st->wgatefd) < 0)
        return buf_error(why, "cannot lock %s/%s: %s", st->dir, STORE_GATE_FILE,
                         strerror(errno));
    if (st_data_lock(st, why) < 0) {
        st_flock(st->wgatefd, LOCK_UN);
        return -1;
    }
    /*
     * TC refuses to open a file twice in one process, so the writer handle
     * needs the reader handle closed.  No thread of ours is reading now:
     * reads hold the shared lock, which our exclusive lock excludes.
     */
    pthread_mutex_lock(&st->use);
    if (st->rdb) {
        st->be->close(st->rdb, NULL);
        st->rdb = NULL;
    }
    pthread_mutex_unlock(&st->use);
    return 0;
}

/* st_unlock_ex - release both */
static void st_unlock_ex(struct store *st)
{
    st_data_unlock(st);
    st_flock(st->wgatefd, LOCK_UN);
}

/*
 * st_recover_now - a reader found the store dirty (a writer died inside a
 * transaction): recover it, if this process may write the lock file.
 */
static int st_recover_now(struct store *st, struct buf *why)
{
    int rc = 0, mine = st_own(st);

    if (st->wlockfd < 0)
        return buf_error(why, "store %s needs recovery by a writer (sgadmin)", st->dir);
    if (!mine)
        st_take(st);
    if (st_lock_ex(st, why) < 0)
        rc = -1;
    else {
        if (st->shm->dirty)
            rc = st_recover(st, why);
        st_unlock_ex(st);
    }
    if (!mine)
        st_give(st);
    return rc;
}

/* st_in_own_tx - is the calling thread the writer, with its handle open? */
static int st_in_own_tx(struct store *st)
/* (between the batches of a bulk operation too: its handle stays open) */
{
    return st_own(st) && st->wdb;
}

/*
 * st_rlock - enter a read: shared lock, up-to-date reader handle, the "use"
 * mutex.  Returns the handle to read with.  Inside the caller's own
 * transaction the writer handle is used and nothing is locked.
 */
static struct store_db *st_rlock(struct store *st, struct buf *why)
{
    struct rfds *fds;

    if (st_in_own_tx(st))
        return st->wdb;
    if (__atomic_load_n(&st->held, __ATOMIC_SEQ_CST))
        return buf_error(why, "store %s is busy with a bulk change in this process",
                         st->dir),
               NULL;
    if ((fds = st_thread_fds(st, why)) == NULL)
        return NULL;
    for (;;) {
        /* A writer is waiting: queue behind it in the turnstile. */
        int turn = fds->turn >= 0 && __atomic_load_n(&st->shm->waiting, __ATOMIC_SEQ_CST);

        if (turn)
            st_flock(fds->turn, LOCK_SH);
        if (st_flock(fds->lock, LOCK_SH) < 0) {
            buf_error(why, "cannot lock %s/%s: %s", st->dir, STORE_LOCK_FILE,
                      strerror(errno));
            if (turn)
                st_flock(fds->turn, LOCK_UN);
            return NULL;
        }
        if (turn)
            st_flock(fds->turn, LOCK_UN);
        if (__atomic_load_n(&st->shm->dirty, __ATOMIC_SEQ_CST) == 0)
            break;
        st_flock(fds->lock, LOCK_UN);
        if (st_recover_now(st, why) < 0)
            return NULL;
    }
    pthread_mutex_lock(&st->use);
    if (__atomic_load_n(&st->held, __ATOMIC_SEQ_CST)) {
        /* a bulk operation of this process began meanwhile: its handle is open */
        pthread_mutex_unlock(&st->use);
        st_flock(fds->lock, LOCK_UN);
        return buf_error(why, "store %s is busy with a bulk change in this process",
                         st->dir),
               NULL;
    }
    if (st->rdb == NULL ||
        st->rgen != __atomic_load_n(&st->shm->generation, __ATOMIC_SEQ_CST)) {
        /* a writer committed since this handle was opened: reopen */
        if (st->rdb)
            st->be->close(st->rdb, NULL);
        st->rgen = __atomic_load_n(&st->shm->generation, __ATOMIC_SEQ_CST);
        if ((st->rdb = st->be->open(st->dir, 0, 0, why)) == NULL) {
            pthread_mutex_unlock(&st->use);
            st_flock(fds->lock, LOCK_UN);
            return NULL;
        }
    }
    return st->rdb;
}

/* st_runlock - leave a read */
static void st_runlock(struct store *st)
{
    struct rfds *fds;

    if (st_in_own_tx(st))
        return;
    pthread_mutex_unlock(&st->use);
    fds = pthread_getspecific(st->tls);
    st_flock(fds->lock, LOCK_UN);
}

/* Open and close. */

/*
 * One store per directory per process: TC refuses to open a file twice in a
 * process, and flock would make two handles of one process lock each other
 * out.  Directories are compared by device and inode.
 */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct open_dir {
    dev_t dev;
    ino_t ino;
} open_dirs[64];
static int open_count;

/* st_register - claim a directory for this process; -1 if already open */
static int st_register(const struct stat *sb)
{
    int rc = 0;

    pthread_mutex_lock(&open_lock);
    for (int i = 0; i < open_count; i++)
        if (open_dirs[i].dev == sb->st_dev && open_dirs[i].ino == sb->st_ino)
            rc = -1;
    if (rc == 0 && open_count < (int)(sizeof(open_dirs) / sizeof(open_dirs[0]))) {
        open_dirs[open_count].dev = sb->st_dev;
        open_dirs[open_count].ino = sb->st_ino;
        open_count++;
    }
    pthread_mutex_unlock(&open_lock);
    return rc;
}

/* st_unregister - give a directory up */
static void st_unregister(dev_t dev, ino_t ino)
{
    pthread_mutex_lock(&open_lock);
    for (int i = 0; i < open_count; i++)
        if (open_dirs[i].dev == dev && open_dirs[i].ino == ino) {
            open_dirs[i] = open_dirs[--open_count];
            break;
        }
    pthread_mutex_unlock(&open_lock);
}

/* st_open_lockfile - open (creating if allowed) one of the lock files */
static int st_open_lockfile(const char *dir, const char *name, int flags, struct buf *why)
{
    struct buf path;
    int fd;

    buf_init(&path, 128);
    buf_setf(&path, "%s/%s", dir, name);
    fd = open(buf_str(&path), flags | O_CLOEXEC, 0660);
    if (fd < 0)
        buf_error(why, "cannot open %s: %s", buf_str(&path), strerror(errno));
    buf_release(&path);
    return fd;
}

/* store_open - see store.h */
struct store *store_open(const char *dir, int mode, struct buf *why)
{
    struct store *st = mycalloc(1, sizeof(*st));
    int lockfd = -1, rw = (mode & STORE_WRITE) != 0;
    int create = rw && (mode & STORE_CREATE);
    struct stat sb;
    mode_t lmode = 0660;
    struct store_db *db;

    st->dir = mystrdup(dir);
    st->mode = mode;
    st->be = &store_backend_tc;
    st->batch = STORE_DEFAULT_BATCH;
    st->wlockfd = st->wgatefd = st->wturnfd = -1;
    pthread_mutex_init(&st->use, NULL);
    pthread_mutex_init(&st->wmu, NULL);
    if (pthread_key_create(&st->tls, st_close_thread_fds) != 0 ||
        pthread_key_create(&st->owner, NULL) != 0) {
        buf_error(why, "cannot create thread keys");
        myfree(st->dir);
        myfree(st);
        return NULL;
    }
    /* the group shares the stores: every sendguard program in it may write */
    if (create && fd_mkdir_shared(dir) < 0) {
        buf_error(why, "cannot create store directory %s: %s", dir, strerror(errno));
        goto error;
    }
    if (stat(dir, &sb) < 0) {
        buf_error(why, "cannot open store %s: %s", dir, strerror(errno));
        goto error;
    }
    if (!S_ISDIR(sb.st_mode)) {
        buf_error(why, "store %s is not a directory", dir);
        goto error;
    }
    if (st_register(&sb) < 0) {
        buf_error(why, "store %s is already open in this process", dir);
        goto error;
    }
    st->registered = 1;
    st->dev = sb.st_dev;
    st->ino = sb.st_ino;
    /*
     * The lock file: a reader that may write it can also recover the store
     * after a writer died, so that lookups go on without waiting for sgadmin.
     */
    lockfd = st_open_lockfile(dir, STORE_LOCK_FILE, O_RDWR | (create ? O_CREAT : 0), why);
    if (lockfd < 0 && !rw && (errno == EACCES || errno == EROFS))
        lockfd = st_open_lockfile(dir, STORE_LOCK_FILE, O_RDONLY, why);
    else
        st->shm_rw = lockfd >= 0;
    if (lockfd < 0)
        goto error;
    if (fstat(lockfd, &sb) == 0)
        lmode = sb.st_mode & 0777;
    if (fstat(lockfd, &sb) < 0 || sb.st_size < (off_t)sizeof(struct store_shm)) {
        if (!create) {
            buf_error(why, "store %s is not initialised (no valid %s)", dir,
                      STORE_LOCK_FILE);
            goto error;
        }
        if (ftruncate(lockfd, sizeof(struct store_shm)) < 0) {
            buf_error(why, "cannot size %s/%s: %s", dir, STORE_LOCK_FILE,
                      strerror(errno));
            goto error;
        }
    }
    st->shm = mmap(NULL, sizeof(struct store_shm),
                   PROT_READ | (st->shm_rw ? PROT_WRITE : 0), MAP_SHARED, lockfd, 0);
    if (st->shm == MAP_FAILED) {
        st->shm = NULL;
        buf_error(why, "cannot map %s/%s: %s", dir, STORE_LOCK_FILE, strerror(errno));
        goto error;
    }
    if (st->shm_rw) {
        /* created by any process that may (stores from before store.turn) */
        int flags = O_RDWR | O_CREAT;

        st->wgatefd = st_open_lockfile(dir, STORE_GATE_FILE, flags, why);
        st->wturnfd =
            st->wgatefd < 0 ? -1 : st_open_lockfile(dir, STORE_TURN_FILE, flags, why);
        if (st->wturnfd >= 0) {
            st->wlockfd = lockfd;
            lockfd = -1;
        } else if (rw) {
            goto error;
        }
    }
    if (rw && !create && st->shm->dirty == 0) {
        /*
         * A writer that may not create: the databases are opened by its first
         * transaction (which recovers them when a writer died), not here too,
         * so a short-lived one (sgadmin ingest, once per message) pays for
         * the open once
         */
    } else if (rw) {
        /* Create the databases, or recover them, under the exclusive lock. */
        if (st_lock_ex(st, why) < 0)
            goto error;
        if (st->shm->dirty && st_recover(st, why) < 0) {
            st_unlock_ex(st);
            goto error;
        }
        struct buf path;
        struct stat dbst;
        int fresh;

        /* the databases made now get the lock file's mode (0660 less the
         * umask, when it was made too); existing ones keep theirs */
        buf_init(&path, 128);
        buf_setf(&path, "%s/entries.tch", dir);
        fresh = create && stat(buf_str(&path), &dbst) < 0 && errno == ENOENT;
        if ((db = st->be->open(dir, 1, create, why)) == NULL) {
            buf_release(&path);
            st_unlock_ex(st);
            goto error;
        }
        st->be->close(db, NULL);
        if (fresh) {
            chmod(buf_str(&path), lmode);
            buf_setf(&path, "%s/index.tcb", dir);
            chmod(buf_str(&path), lmode);
        }
        buf_release(&path);
        st_unlock_ex(st);
    } else {
        /* Open now, so that a missing or unreadable store is reported here. */
        if (st_rlock(st, why) == NULL)
            goto error;
        st_runlock(st);
    }
    if (lockfd >= 0)
        close(lockfd);
    return st;

error:
    if (lockfd >= 0)
        close(lockfd);
    store_close(st);
    return NULL;
}

/*
 * store_close - close everything; an open transaction is rolled back, and so
 * is an unfinished bulk operation.
 */
void store_close(struct store *st)
{
    if (st == NULL)
        return;
    if (st_own(st)) {
        if (st->in_tx)
            store_abort(st);
        if (st->bulk)
            store_bulk_end(st, 0, NULL);
    }
    if (st->rdb)
        st->be->close(st->rdb, NULL);
    if (st->shm)
        munmap(st->shm, sizeof(struct store_shm));
    if (st->wlockfd >= 0)
        close(st->wlockfd);
    if (st->wgatefd >= 0)
        close(st->wgatefd);
    if (st->wturnfd >= 0)
        close(st->wturnfd);
    st_close_thread_fds(pthread_getspecific(st->tls));
    pthread_setspecific(st->tls, NULL);
    pthread_key_delete(st->tls);
    pthread_key_delete(st->owner);
    pthread_mutex_destroy(&st->use);
    pthread_mutex_destroy(&st->wmu);
    if (st->deltas)
        tcmapdel(st->deltas);
    if (st->undo)
        tcmapdel(st->undo);
    if (st->registered)
        st_unregister(st->dev, st->ino);
    myfree(st->dir);
    myfree(st);
}

/* store_set_batch - records per transaction in bulk operations */
void store_set_batch(struct store *st, size_t batch)
{
    st->batch = batch ? batch : 1;
}

/* store_set_interrupt - see store.h */
void store_set_interrupt(struct store *st, volatile sig_atomic_t *flag)
{
    st->stop = flag;
}

/* store_max_lock_wait_us - see store.h */
uint64_t store_max_lock_wait_us(struct store *st)
{
    return st->max_wait_us;
}

/* store_generation - see store.h */
uint64_t store_generation(struct store *st)
{
    return __atomic_load_n(&st->shm->generation, __ATOMIC_SEQ_CST);
}

/* Transactions. */

static void st_release(struct store *st);

/* store_begin - see store.h */
int store_begin(struct store *st, struct buf *why)
{
    if (!(st->mode & STORE_WRITE))
        return buf_error(why, "store %s is open read-only", st->dir);
    if (st_own(st) && st->in_tx)
        return buf_error(why, "a transaction is already open");
    if (st->bulk && st_own(st) && !st->undoing) {
        /* store_bulk_end undoes what a failed or interrupted bulk did */
        if (st->bulk_failed)
            return buf_error(why, "an earlier part of this bulk change failed");
        if (st->stop && *st->stop) {
            st->bulk_failed = 1;
            return buf_error(why, "interrupted");
        }
    }
    if (!st_own(st))
        st_take(st);
    if (st->held) {
        /* the next batch of a bulk operation: the gate and handle are ours */
        if (st_data_lock(st, why) < 0)
            goto failed;
    } else {
        if (st_lock_ex(st, why) < 0) {
            if (!st->bulk)
                st_give(st);
            goto failed;
        }
        if ((st->shm->dirty && st_recover(st, why) < 0) ||
            (st->wdb = st->be->open(st->dir, 1, 0, why)) == NULL) {
            st_release(st);
            goto failed;
        }
        __atomic_store_n(&st->held, st->bulk, __ATOMIC_SEQ_CST);
    }
    /* dirty first: a crash from here on is recovered */
    __atomic_store_n(&st->shm->dirty, 1, __ATOMIC_SEQ_CST);
    if (st->be->begin(st->wdb, why) < 0) {
        __atomic_store_n(&st->shm->dirty, 0, __ATOMIC_SEQ_CST);
        if (st->held)
            st_data_unlock(st);
        else
            st_release(st);
        goto failed;
    }
    st->in_tx = 1;
    st->tx_failed = 0;
    st->tx_ops = 0;
    if (st->deltas == NULL)
        st->deltas = tcmapnew();
    tcmapclear(st->deltas);
    return 0;

failed:
    if (st->bulk && !st->undoing)
        st->bulk_failed = 1;
    return -1;
}

/* st_flush_deltas - write the counter changes of this transaction */
static int st_flush_deltas(struct store *st, struct buf *why)
{
    const char *k;
    int klen;
    struct buf val;
    int rc = 0;

    buf_init(&val, 16);
    tcmapiterinit(st->deltas);
    while (rc == 0 && (k = tcmapiternext(st->deltas, &klen)) != NULL) {
        int vlen;
        const int64_t *d = tcmapget(st->deltas, k, klen, &vlen);
        int64_t n = 0;
        int found = st->be->get(st->wdb, k, (size_t)klen, &val, why);

        if (found < 0) {
            rc = -1;
            break;
        }
        if (found && val.len == 8)
            n = (int64_t)get_be64(val.data);
        n += *d;
        if (n <= 0) {
            rc = st->be->del(st->wdb, k, (size_t)klen, why) < 0 ? -1 : 0;
        } else {
            buf_reset(&val);
            put_be64(&val, (uint64_t)n);
            rc = st->be->put(st->wdb, k, (size_t)klen, val.data, val.len, why);
        }
    }
    tcmapclear(st->deltas);
    buf_release(&val);
    return rc;
}

/*
 * st_release - close the writer handle and give up every lock, and the
 * writer role unless a bulk operation goes on.  With the data lock, or
 * between the batches of a bulk operation.
 */
static void st_release(struct store *st)
{
    if (st->wdb)
        st->be->close(st->wdb, NULL);
    st->wdb = NULL;
    st->in_tx = 0;
    __atomic_store_n(&st->held, 0, __ATOMIC_SEQ_CST);
    if (st->shm)
        st_unlock_ex(st);
    if (!st->bulk)
        st_give(st);
}

/*
 * st_end_tx - a transaction is over: give up the lock, or, between the
 * batches of a bulk operation, only the data lock, so that readers get in
 * while no other writer does (our handle stays valid, and warm).
 */
static void st_end_tx(struct store *st)
{
    if (!st->held) {
        st_release(st);
        return;
    }
    st->in_tx = 0;
    st_data_unlock(st);
}

/* store_commit - see store.h */
int store_commit(struct store *st, struct buf *why)
{
    /* only the end of a bulk operation makes its batches durable */
    int durable = !st->held || st->ending;

    if (!st_own(st) || !st->in_tx)
        return buf_error(why, "no transaction is open");
    if (st->tx_failed) {
        store_abort(st);
        return buf_error(why, "a change in the transaction failed: it was rolled back");
    }
    if (st_flush_deltas(st, why) < 0) {
        store_abort(st);
        return -1;
    }
    /* From here the entries may be ahead of the index until both commit. */
    __atomic_store_n(&st->shm->dirty, 2, __ATOMIC_SEQ_CST);
    if (st->be->commit_entries(st->wdb, durable, why) < 0 ||
        st->be->commit_index(st->wdb, durable, why) < 0) {
        /* Roll back what TC still can, and make the index match the entries. */
        st->be->abort(st->wdb);
        st->be->close(st->wdb, NULL);
        st->wdb = NULL;
        st_recover(st, NULL);
        if (st->bulk)
            st->bulk_failed = 1;
        /* a bulk keeps the gate, so that its undo overwrites no one's work */
        if (st->held && (st->wdb = st->be->open(st->dir, 1, 0, NULL)) != NULL)
            st_end_tx(st);
        else
            st_release(st);
        return -1;
    }
    __atomic_add_fetch(&st->shm->generation, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&st->shm->dirty, 0, __ATOMIC_SEQ_CST);
    st_end_tx(st);
    return 0;
}

/* store_abort - see store.h */
void store_abort(struct store *st)
{
    if (!st_own(st) || !st->in_tx)
        return;
    st->be->abort(st->wdb);
    if (st->deltas)
        tcmapclear(st->deltas);
    if (st->bulk)
        st->bulk_failed = 1; /* the batch's changes are gone */
    __atomic_store_n(&st->shm->dirty, 0, __ATOMIC_SEQ_CST);
    st_end_tx(st);
}

/* Recovery. */

struct rebuild {
    struct store *st;
    struct store_db *db;
    struct buf key;
    struct recset rs;
    struct buf *why;
    int rc;
};

/* rebuild_one - put back the index keys of one entry or group */
static int rebuild_one(const char *k, size_t klen, const char *v, size_t vlen, void *ctx)
{
    struct rebuild *rb = ctx;
    const char *tenant = k + 1;
    size_t tlen = strnlen(tenant, klen - 1);

    if (tlen + 1 >= klen)
        return 0;
    if (k[0] == 'G' || k[0] == 'K') {
        if (rb->st->be->ix_put(rb->db, k, klen, rb->why) < 0)
            return rb->rc = -1;
    } else if (k[0] == 'E') {
        const char *ekey = tenant + tlen + 1;
        size_t eklen = klen - tlen - 2;

        if (rec_decode(v, vlen, &rb->rs) < 0)
            return 0; /* a damaged entry is not indexed; lookups still see it */
        for (size_t i = 0; i < rb->rs.n; i++) {
            key_index(&rb->key, tenant, rb->rs.r[i].tag, rb->rs.r[i].group,
                      rb->rs.r[i].created, ekey, eklen);
            if (rb->st->be->ix_put(rb->db, rb->key.data, rb->key.len, rb->why) < 0)
                return rb->rc = -1;
        }
    }
    return 0;
}

/*
 * st_recover - with the exclusive lock held and "dirty" set: let TC roll
 * back from its log, and rebuild the index if the entries may be ahead of it.
 */
static int st_recover(struct store *st, struct buf *why)
{
    uint32_t state = st->shm->dirty;
    struct rebuild rb;

    msg_warn("store %s: recovering from an interrupted write (state %u)", st->dir, state);
    if ((rb.db = st->be->open(st->dir, 1, 0, why)) == NULL)
        return -1;
    if (state == 2) {
        rb.st = st;
        rb.why = why;
        rb.rc = 0;
        buf_init(&rb.key, 128);
        recset_init(&rb.rs);
        if (st->be->ix_clear(rb.db, why) < 0 ||
            st->be->iterate(rb.db, rebuild_one, &rb, why) < 0)
            rb.rc = -1;
        buf_release(&rb.key);
        recset_free(&rb.rs);
        if (rb.rc < 0) {
            st->be->close(rb.db, NULL);
            return -1;
        }
        msg_warn("store %s: index rebuilt", st->dir);
    }
    if (st->be->close(rb.db, why) < 0)
        return -1;
    __atomic_add_fetch(&st->shm->generation, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&st->shm->dirty, 0, __ATOMIC_SEQ_CST);
    return 0;
}

/* Changing entries. */

/* st_delta - remember a counter change for the commit */
static void st_delta(struct store *st, const char *tenant, char tag, uint32_t group,
                     int64_t d)
{
    struct buf k;
    int vlen;
    const int64_t *old;
    int64_t n;

    buf_init(&k, 64);
    key_count(&k, tenant, tag, group);
    old = tcmapget(st->deltas, k.data, (int)k.len, &vlen);
    n = (old ? *old : 0) + d;
    tcmapput(st->deltas, k.data, (int)k.len, &n, sizeof(n));
    buf_release(&k);
}

/*
 * index_diff - for each record of "from" that "to" lacks or holds with
 * another time: delete (dir -1) or put (dir 1) its index key, and count it
 * off or on its list when "to" lacks it altogether.
 */
static int index_diff(struct store *st, const char *tenant, const char *ekey,
                      size_t eklen, struct recset *from, struct recset *to, int dir,
                      struct buf *k, struct buf *why)
{
    for (size_t i = 0; i < from->n; i++) {
        struct rec *r = &from->r[i];
        struct rec *twin = recset_find(to, r->tag, r->group);

        if (twin == NULL || twin->created != r->created) {
            key_index(k, tenant, r->tag, r->group, r->created, ekey, eklen);
            if ((dir < 0 ? st->be->ix_del : st->be->ix_put)(st->wdb, k->data, k->len,
                                                            why) < 0)
                return -1;
        }
        if (twin == NULL)
            st_delta(st, tenant, r->tag, r->group, dir);
    }
    return 0;
}

/*
 * entry_replace - the one writer of entries: replace the records of one
 * entry (old -> new), adjusting the index and counters to match.
 */
static int entry_replace(struct store *st, const char *tenant, const char *ekey,
                         size_t eklen, struct recset *old, struct recset *new,
                         struct buf *why)
{
    struct buf k, k2, v;
    int rc = -1, sz;

    buf_init(&k, 128);
    buf_init(&k2, 128);
    buf_init(&v, 128);
    if (st->bulk && !st->undoing) {
        key_entry(&k, tenant, ekey, eklen);
        if (tcmapget(st->undo, k.data, (int)k.len, &sz) == NULL) {
            /* first touch in this bulk operation: remember the prior state */
            buf_putc(&v, old->n ? 1 : 0);
            rec_encode(old, &k2);
            buf_append(&v, k2.data, k2.len);
            tcmapput(st->undo, k.data, (int)k.len, v.data, (int)v.len);
        }
    }
    if (index_diff(st, tenant, ekey, eklen, old, new, -1, &k, why) < 0 ||
        index_diff(st, tenant, ekey, eklen, new, old, 1, &k, why) < 0)
        goto out;
    key_entry(&k, tenant, ekey, eklen);
    if (new->n == 0) {
        if (st->be->del(st->wdb, k.data, k.len, why) < 0)
            goto out;
    } else {
        rec_encode(new, &v);
        if (st->be->put(st->wdb, k.data, k.len, v.data, v.len, why) < 0)
            goto out;
    }
    rc = 0;
out:
    buf_release(&k);
    buf_release(&k2);
    buf_release(&v);
    return rc;
}

/* st_tx_enter - make sure a transaction of this thread is open for one change */
static int st_tx_enter(struct store *st, int *own, struct buf *why)
{
    *own = 0;
    if (st_own(st) && st->in_tx)
        return 0;
    if (store_begin(st, why) < 0)
        return -1;
    *own = !st->bulk;
    return 0;
}

/*
 * st_tx_leave - commit a change's own transaction, or a full bulk batch.  A
 * failed change rolls back the whole batch (the bulk operation cannot then
 * be kept), and spoils the caller's explicit transaction.
 */
static int st_tx_leave(struct store *st, int own, int ok, struct buf *why)
{
    if (!ok) {
        if (own || st->bulk)
            store_abort(st);
        else
            st->tx_failed = 1;
        return -1;
    }
    st->tx_ops++;
    if (own || (st->bulk && st->tx_ops >= st->batch))
        return store_commit(st, why);
    return 0;
}

/* field_set - one string of a record, cut at STORE_FIELD_MAX on a UTF-8 boundary */
static void field_set(struct rec *r, int i, const char *s)
{
    size_t len = s ? strlen(s) : 0;

    if (len > STORE_FIELD_MAX)
        len = utf8_cut(s, STORE_FIELD_MAX);
    r->str[i] = s ? s : "";
    r->len[i] = (uint16_t)len;
}

/* st_get_entry - read and decode one entry with a handle */
static int st_get_entry(struct store *st, struct store_db *db, const char *tenant,
                        const char *ekey, size_t eklen, struct buf *val,
                        struct recset *rs, struct buf *why)
{
    struct buf k;
    int found;

    buf_init(&k, 128);
    key_entry(&k, tenant, ekey, eklen);
    found = st->be->get(db, k.data, k.len, val, why);
    buf_release(&k);
    rs->n = 0;
    if (found <= 0)
        return found;
    if (rec_decode(val->data, val->len, rs) < 0)
        return buf_error(why, "store %s: damaged entry for tenant %s", st->dir, tenant);
    return 1;
}

/* parse_entry - an entry as the user typed it */
struct entry {
    enum address_kind kind;
    struct buf display, key;
};

static int entry_parse(struct entry *e, const char *text, struct buf *why)
{
    buf_init(&e->display, 64);
    buf_init(&e->key, 64);
    if (address_parse_entry(text, &e->kind, &e->display, &e->key, why) < 0) {
        buf_release(&e->display);
        buf_release(&e->key);
        return -1;
    }
    return 0;
}

static void entry_free(struct entry *e)
{
    buf_release(&e->display);
    buf_release(&e->key);
}

/* st_check_list - a valid list and group combination */
static int st_check_list(enum store_list list, uint32_t group, struct buf *why)
{
    if ((unsigned)list >= STORE_NLISTS)
        return buf_error(why, "no such list");
    if ((list == STORE_GROUP) != (group != 0))
        return buf_error(why, list == STORE_GROUP ? "a group id is required"
                                                  : "only group lists take a group id");
    return 0;
}

/* store_add - see store.h */
int store_add(struct store *st, const char *tenant, enum store_list list, uint32_t group,
              const char *entry, const struct store_fields *f, enum store_add_result *res,
              struct buf *why)
{
    struct entry e;
    struct recset old, new;
    struct buf val;
    struct rec *r, *prev;
    int own, ok = 0;
    char tag = list_tag[list];
    int64_t created = f && f->created ? f->created : (int64_t)time(NULL);

    if (st_check_list(list, group, why) < 0 || entry_parse(&e, entry, why) < 0)
        return -1;
    if (st_tx_enter(st, &own, why) < 0) {
        entry_free(&e);
        return -1;
    }
    recset_init(&old);
    recset_init(&new);
    buf_init(&val, 256);
    if (list == STORE_GROUP) {
        struct buf gk;
        int found;

        buf_init(&gk, 64);
        key_group(&gk, tenant, group);
        found = st->be->get(st->wdb, gk.data, gk.len, &val, why);
        buf_release(&gk);
        if (found == 0)
            buf_error(why, "no group %u for tenant %s", group, tenant);
        if (found <= 0)
            goto out;
    }
    if (st_get_entry(st, st->wdb, tenant, e.key.data, e.key.len, &val, &old, why) < 0)
        goto out;
    for (size_t i = 0; i < old.n; i++)
        *recset_add(&new) = old.r[i];
    prev = recset_find(&new, tag, group);
    if (prev && list != STORE_BOUNCES) {
        if (res)
            *res = STORE_KEPT;
        ok = 1;
        goto out;
    }
    r = prev ? prev : recset_add(&new);
    memset(r, 0, sizeof(*r));
    r->tag = tag;
    r->group = group;
    r->created = created;
    r->kind = (uint8_t)e.kind;
    r->nstr = 1;
    r->str[0] = e.display.data;
    r->len[0] = (uint16_t)e.display.len;
    if (list == STORE_BOUNCES) {
        r->nstr = 4;
        field_set(r, 1, f ? f->reason : NULL);
        field_set(r, 2, f ? f->status : NULL);
        field_set(r, 3, f && f->bounce_type ? f->bounce_type : "hard");
    } else if (list == STORE_SPAM_REPORTS) {
        r->nstr = 2;
        field_set(r, 1, f ? f->source : NULL);
    }
    if (res)
        *res = prev ? STORE_UPDATED : STORE_ADDED;
    ok = entry_replace(st, tenant, e.key.data, e.key.len, &old, &new, why) == 0;
out:
    recset_free(&old);
    recset_free(&new);
    buf_release(&val);
    entry_free(&e);
    return st_tx_leave(st, own, ok, why);
}

/* st_remove_key - take one list's record off an entry, by key; 1, 0, -1 */
static int st_remove_key(struct store *st, const char *tenant, char tag, uint32_t group,
                         const char *ekey, size_t eklen, struct buf *why)
{
    struct recset old, new;
    struct buf val;
    int rc;

    recset_init(&old);
    recset_init(&new);
    buf_init(&val, 256);
    rc = st_get_entry(st, st->wdb, tenant, ekey, eklen, &val, &old, why);
    if (rc > 0) {
        for (size_t i = 0; i < old.n; i++)
            if (!(old.r[i].tag == tag && old.r[i].group == group))
                *recset_add(&new) = old.r[i];
        if (new.n == old.n)
            rc = 0;
        else if (entry_replace(st, tenant, ekey, eklen, &old, &new, why) < 0)
            rc = -1;
    }
    recset_free(&old);
    recset_free(&new);
    buf_release(&val);
    return rc;
}

/* store_remove - see store.h */
int store_remove(struct store *st, const char *tenant, enum store_list list,
                 uint32_t group, const char *entry, struct buf *why)
{
    struct entry e;
    int own, rc;

    if (st_check_list(list, group, why) < 0 || entry_parse(&e, entry, why) < 0)
        return -1;
    if (st_tx_enter(st, &own, why) < 0) {
        entry_free(&e);
        return -1;
    }
    rc = st_remove_key(st, tenant, list_tag[list], group, e.key.data, e.key.len, why);
    if (rc >= 0 && list == STORE_BOUNCES) {
        /* a bounce deleted forgets the soft bounces that led to it */
        struct buf k;

        buf_init(&k, 128);
        key_soft(&k, tenant, e.key.data, e.key.len);
        if (st->be->del(st->wdb, k.data, k.len, why) < 0)
            rc = -1;
        buf_release(&k);
    }
    entry_free(&e);
    if (st_tx_leave(st, own, rc >= 0, why) < 0)
        return -1;
    return rc;
}

/* store_soft_bounce - see store.h */
int store_soft_bounce(struct store *st, const char *tenant, const char *address,
                      int64_t now, int64_t window, uint32_t tag, int *count,
                      struct buf *why)
{
    struct entry e;
    struct buf k, v, next;
    int own, found, seen = 0, rc = -1;
    size_t n = 0;

    *count = 0;
    if (entry_parse(&e, address, why) < 0)
        return -1;
    if (st_tx_enter(st, &own, why) < 0) {
        entry_free(&e);
        return -1;
    }
    buf_init(&k, 128);
    buf_init(&v, 12 * STORE_SOFT_MAX);
    buf_init(&next, 12 * STORE_SOFT_MAX);
    key_soft(&k, tenant, e.key.data, e.key.len);
    if ((found = st->be->get(st->wdb, k.data, k.len, &v, why)) < 0)
        goto out;
    /* 12 bytes each, oldest first: be64 time, be32 tag; the old ones dropped */
    for (size_t off = 0; found > 0 && off + 12 <= v.len; off += 12) {
        int64_t t = (int64_t)get_be64(v.data + off);
        uint32_t g = get_be32(v.data + off + 8);

        if (t <= now - window)
            continue;
        if (tag != 0 && g == tag)
            seen = 1;
        buf_append(&next, v.data + off, 12);
        n++;
    }
    if (!seen) {
        put_be64(&next, (uint64_t)now);
        put_be32(&next, tag);
        n++;
    }
    if (n > STORE_SOFT_MAX) {
        memmove(next.data, next.data + 12 * (n - STORE_SOFT_MAX), 12 * STORE_SOFT_MAX);
        buf_truncate(&next, 12 * STORE_SOFT_MAX);
        n = STORE_SOFT_MAX;
    }
    if (st->be->put(st->wdb, k.data, k.len, next.data, next.len, why) < 0)
        goto out;
    *count = (int)n;
    rc = 0;
out:
    buf_release(&k);
    buf_release(&v);
    buf_release(&next);
    entry_free(&e);
    return st_tx_leave(st, own, rc == 0, why) < 0 ? -1 : 0;
}

/* Bulk operations. */

/* store_bulk_begin - see store.h */
void store_bulk_begin(struct store *st)
{
    if (!st_own(st))
        st_take(st);
    st->bulk = 1;
    st->bulk_failed = 0;
    if (st->undo == NULL)
        st->undo = tcmapnew();
    tcmapclear(st->undo);
}

/*
 * st_bulk_finish - the batches were committed without syncing: commit the
 * last one durably, which syncs them all, or sync under the data lock.
 */
static int st_bulk_finish(struct store *st, struct buf *why)
{
    int rc = 0;

    st->ending = 1;
    if (st->in_tx) {
        rc = store_commit(st, why);
    } else if (st->held) {
        if ((rc = st_data_lock(st, why)) == 0) {
            rc = st->be->sync(st->wdb, why);
            st_data_unlock(st);
        }
    }
    st->ending = 0;
    return rc;
}

/* st_undo - put every entry a failed bulk operation touched back as it was */
static int st_undo(struct store *st, struct buf *why)
{
    const char *k;
    int klen, n = 0;
    struct recset cur, prior;
    struct buf val;
    int rc = 0;

    recset_init(&cur);
    recset_init(&prior);
    buf_init(&val, 256);
    st->undoing = 1; /* the undo itself is not logged */
    tcmapiterinit(st->undo);
    while ((k = tcmapiternext(st->undo, &klen)) != NULL) {
        int vlen;
        const char *v = tcmapget(st->undo, k, klen, &vlen);
        const char *tenant = k + 1;
        size_t tlen = strlen(tenant);
        const char *ekey = tenant + tlen + 1;
        size_t eklen = (size_t)klen - tlen - 2;

        if (!st->in_tx && store_begin(st, why) < 0) {
            rc = -1;
            break;
        }
        if (st_get_entry(st, st->wdb, tenant, ekey, eklen, &val, &cur, why) < 0 ||
            rec_decode(v + 1, (size_t)vlen - 1, &prior) < 0 ||
            entry_replace(st, tenant, ekey, eklen, &cur, &prior, why) < 0) {
            store_abort(st);
            rc = -1;
            break;
        }
        if (++n % (int)st->batch == 0 && store_commit(st, why) < 0) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && st_bulk_finish(st, why) < 0)
        rc = -1;
    st->undoing = 0;
    recset_free(&cur);
    recset_free(&prior);
    buf_release(&val);
    return rc;
}

/* store_bulk_end - see store.h */
int store_bulk_end(struct store *st, int keep, struct buf *why)
{
    int rc = 0;

    if (!st->bulk || !st_own(st))
        return 0;
    if (keep && st->bulk_failed) {
        buf_error(why, "part of the bulk change failed");
        keep = 0;
    }
    if (keep && st->stop && *st->stop) {
        buf_error(why, "interrupted");
        keep = 0;
    }
    if (keep && st_bulk_finish(st, why) < 0)
        keep = 0;
    if (!keep) {
        struct buf err;

        store_abort(st);
        buf_init(&err, 64);
        if (st_undo(st, &err) < 0) {
            msg_error("store %s: could not undo a failed bulk change: %s", st->dir,
                      buf_str(&err));
            if (why)
                buf_printf(why, "; undoing it failed too: %s", buf_str(&err));
        }
        buf_release(&err);
        rc = -1;
    }
    st->bulk = 0;
    st->bulk_failed = 0;
    tcmapclear(st->undo);
    if (st->held)
        st_release(st); /* gives the writer role up too */
    else
        st_give(st);
    return rc;
}

struct keylist {
    TCLIST *keys;
    size_t skip; /* bytes of prefix + time to drop from each key */
    size_t max;
    int whole; /* keep the whole index key */
};

/* collect_key - gather index keys (the entry key part, or whole) up to max */
static int collect_key(const char *k, size_t klen, void *ctx)
{
    struct keylist *kl = ctx;
    size_t skip = kl->whole ? 0 : kl->skip;

    tclistpush(kl->keys, k + skip, (int)(klen - skip));
    return (size_t)tclistnum(kl->keys) >= kl->max;
}

/* store_clear - see store.h */
long long store_clear(struct store *st, const char *tenant, enum store_list list,
                      uint32_t group, struct buf *why)
{
    struct buf prefix;
    struct keylist kl;
    long long removed = 0;
    int own_bulk, done = 0;

    if (st_check_list(list, group, why) < 0)
        return -1;
    if (st_own(st) && st->in_tx)
        return buf_error(why, "a list cannot be cleared inside a transaction");
    own_bulk = !(st_own(st) && st->bulk);
    buf_init(&prefix, 64);
    key_list_prefix(&prefix, tenant, list_tag[list], group);
    kl.skip = prefix.len + 8;
    kl.max = st->batch;
    kl.whole = 1;
    kl.keys = tclistnew();
    if (own_bulk)
        store_bulk_begin(st);
    while (!done) {
        tclistclear(kl.keys);
        if (store_begin(st, why) < 0)
            goto error;
        if (st->be->ix_scan(st->wdb, prefix.data, prefix.len, NULL, 0, collect_key, &kl,
                            why) < 0)
            goto error;
        done = (size_t)tclistnum(kl.keys) < kl.max;
        for (int i = 0; i < tclistnum(kl.keys); i++) {
            int sz;
            const char *k = tclistval(kl.keys, i, &sz);
            int rc = st_remove_key(st, tenant, list_tag[list], group, k + kl.skip,
                                   (size_t)sz - kl.skip, why);

            /* an index key without its record (damage) must go too, or we loop */
            if (rc == 0 && st->be->ix_del(st->wdb, k, (size_t)sz, why) < 0)
                rc = -1;
            if (rc < 0)
                goto error;
            removed += rc;
        }
        if (store_commit(st, why) < 0)
            goto error;
    }
    tclistdel(kl.keys);
    buf_release(&prefix);
    if (own_bulk && store_bulk_end(st, 1, why) < 0)
        return -1;
    return removed;

error:
    tclistdel(kl.keys);
    buf_release(&prefix);
    store_abort(st);
    st->bulk_failed = 1;
    if (own_bulk)
        store_bulk_end(st, 0, why);
    return -1;
}

/* Reading. */

/* rec_to_record - the public view of a record (strings copied into bufs) */
struct recview {
    struct buf s[5];
};

static void recview_init(struct recview *rv)
{
    for (int i = 0; i < 5; i++)
        buf_init(&rv->s[i], 32);
}

static void recview_free(struct recview *rv)
{
    for (int i = 0; i < 5; i++)
        buf_release(&rv->s[i]);
}

static void rec_view(const struct rec *r, struct recview *rv, struct store_record *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < 5; i++) {
        buf_reset(&rv->s[i]);
        if (i < r->nstr)
            buf_append(&rv->s[i], r->str[i], r->len[i]);
    }
    out->list = tag_list(r->tag);
    out->group = r->group;
    out->kind = (enum address_kind)r->kind;
    out->created = r->created;
    out->email = rv->s[0].data;
    if (out->list == STORE_BOUNCES) {
        out->reason = rv->s[1].data;
        out->status = rv->s[2].data;
        out->bounce_type = rv->s[3].data;
    } else if (out->list == STORE_SPAM_REPORTS) {
        out->source = rv->s[1].data;
    }
}

/* store_get - see store.h */
int store_get(struct store *st, const char *tenant, enum store_list list, uint32_t group,
              const char *entry, store_record_fn fn, void *ctx, struct buf *why)
{
    struct entry e;
    struct recset rs;
    struct buf val;
    struct store_db *db;
    struct store_record out;
    struct recview rv;
    int rc;

    if (st_check_list(list, group, why) < 0 || entry_parse(&e, entry, why) < 0)
        return -1;
    recset_init(&rs);
    buf_init(&val, 256);
    recview_init(&rv);
    if ((db = st_rlock(st, why)) == NULL) {
        rc = -1;
    } else {
        rc = st_get_entry(st, db, tenant, e.key.data, e.key.len, &val, &rs, why);
        if (rc > 0) {
            struct rec *r = recset_find(&rs, list_tag[list], group);

            rc = r != NULL;
            if (r)
                rec_view(r, &rv, &out);
        }
        st_runlock(st);
        if (rc > 0 && fn)
            fn(&out, ctx);
    }
    recview_free(&rv);
    recset_free(&rs);
    buf_release(&val);
    entry_free(&e);
    return rc;
}

/* st_count - a counter, with this transaction's pending change */
static long long st_count(struct store *st, struct store_db *db, const char *tenant,
                          char tag, uint32_t group, struct buf *why)
{
    struct buf k, val;
    long long n = 0;
    int found;

    buf_init(&k, 64);
    buf_init(&val, 16);
    key_count(&k, tenant, tag, group);
    found = st->be->get(db, k.data, k.len, &val, why);
    if (found < 0)
        n = -1;
    else if (found && val.len == 8)
        n = (long long)get_be64(val.data);
    if (n >= 0 && db == st->wdb && st->deltas) {
        int vlen;
        const int64_t *d = tcmapget(st->deltas, k.data, (int)k.len, &vlen);

        if (d)
            n += *d;
    }
    buf_release(&k);
    buf_release(&val);
    return n;
}

/* store_count - see store.h */
long long store_count(struct store *st, const char *tenant, enum store_list list,
                      uint32_t group, struct buf *why)
{
    struct store_db *db;
    long long n;

    if (st_check_list(list, group, why) < 0)
        return -1;
    if ((db = st_rlock(st, why)) == NULL)
        return -1;
    n = st_count(st, db, tenant, list_tag[list], group, why);
    st_runlock(st);
    return n;
}

struct walk {
    const struct store_query *q;
    size_t plen;
    long long seen;   /* keys in range so far */
    long long wanted; /* seen count after which we may stop (-1: never) */
    size_t steps;     /* keys visited while this lock was held */
    int stop_range;   /* walked past start_time */
    struct buf last;  /* last key visited, to resume after it */
    struct keylist *page;
    long long page_max;
};

/* walk_key - count index keys in the time range and keep one page of them */
static int walk_key(const char *k, size_t klen, void *ctx)
{
    struct walk *w = ctx;
    int64_t created = (int64_t)~get_be64(k + w->plen);

    buf_reset(&w->last);
    buf_append(&w->last, k, klen);
    if (w->q->start_time && created < w->q->start_time) {
        w->stop_range = 1;
        return 1;
    }
    w->seen++;
    if (w->seen > w->q->offset && (long long)tclistnum(w->page->keys) < w->page_max)
        tclistpush(w->page->keys, k + w->plen + 8, (int)(klen - w->plen - 8));
    if (w->wanted >= 0 && w->seen >= w->wanted)
        return 1;
    return ++w->steps >= STORE_SCAN_CHUNK;
}

/* st_emit - call fn for the records of collected entry keys */
static int st_emit(struct store *st, const char *tenant, char tag, uint32_t group,
                   TCLIST *keys, store_record_fn fn, void *ctx, struct buf *why)
{
    struct recset rs;
    struct buf val;
    struct recview rv;
    struct store_db *db;
    int rc = 0;

    recset_init(&rs);
    buf_init(&val, 256);
    recview_init(&rv);
    for (int i = 0; rc == 0 && i < tclistnum(keys); i++) {
        int sz, found;
        const char *k = tclistval(keys, i, &sz);
        struct store_record out;
        struct rec *r = NULL;

        if ((db = st_rlock(st, why)) == NULL) {
            rc = -1;
            break;
        }
        found = st_get_entry(st, db, tenant, k, (size_t)sz, &val, &rs, why);
        if (found > 0 && (r = recset_find(&rs, tag, group)) != NULL)
            rec_view(r, &rv, &out);
        st_runlock(st);
        if (found < 0) {
            rc = -1;
            break;
        }
        if (r && fn(&out, ctx) != 0)
            break;
    }
    recview_free(&rv);
    recset_free(&rs);
    buf_release(&val);
    return rc;
}

struct one_ctx {
    const struct store_query *q;
    store_record_fn fn;
    void *ctx;
    int matched;
};

/* one_record - the --email case of a listing: apply the time range */
static int one_record(const struct store_record *rec, void *ctx)
{
    struct one_ctx *oc = ctx;

    if ((oc->q->start_time && rec->created < oc->q->start_time) ||
        (oc->q->end_time && rec->created > oc->q->end_time))
        return 0;
    oc->matched = 1;
    if (oc->q->offset == 0)
        oc->fn(rec, oc->ctx);
    return 0;
}

/* store_list - see store.h */
int store_list(struct store *st, const char *tenant, enum store_list list, uint32_t group,
               const struct store_query *q, store_record_fn fn, void *ctx,
               long long *total, struct buf *why)
{
    struct buf prefix, from;
    struct keylist page;
    struct walk w;
    struct store_db *db;
    int rc = 0, filtered = q->start_time || q->end_time;
    char tag = list_tag[list];

    if (st_check_list(list, group, why) < 0)
        return -1;
    if (q->email) {
        struct one_ctx oc = {q, fn, ctx, 0};

        if (store_get(st, tenant, list, group, q->email, one_record, &oc, why) < 0)
            return -1;
        if (total)
            *total = oc.matched;
        return 0;
    }
    buf_init(&prefix, 64);
    buf_init(&from, 64);
    key_list_prefix(&prefix, tenant, tag, group);
    buf_append(&from, prefix.data, prefix.len);
    if (q->end_time)
        put_be64(&from, ~(uint64_t)q->end_time);
    page.keys = tclistnew();
    page.skip = 0;
    memset(&w, 0, sizeof(w));
    w.q = q;
    w.plen = prefix.len;
    w.page = &page;
    w.page_max = q->limit > 0 ? q->limit : LLONG_MAX;
    /* Without a time range the counter gives the total: stop after the page. */
    w.wanted = (!filtered && q->limit > 0) ? q->offset + q->limit : -1;
    buf_init(&w.last, 64);
    for (;;) {
        w.steps = 0;
        if ((db = st_rlock(st, why)) == NULL) {
            rc = -1;
            break;
        }
        if (!filtered && total)
            *total = st_count(st, db, tenant, tag, group, why);
        rc = st->be->ix_scan(db, prefix.data, prefix.len, from.data, from.len, walk_key,
                             &w, why);
        st_runlock(st);
        if (rc < 0 || w.stop_range || w.steps < STORE_SCAN_CHUNK ||
            (w.wanted >= 0 && w.seen >= w.wanted))
            break;
        /* Resume just after the last key, with the lock given up meanwhile. */
        buf_reset(&from);
        buf_append(&from, w.last.data, w.last.len);
        buf_putc(&from, 0);
    }
    if (rc == 0 && filtered && total)
        *total = w.seen;
    if (rc == 0)
        rc = st_emit(st, tenant, tag, group, page.keys, fn, ctx, why);
    tclistdel(page.keys);
    buf_release(&w.last);
    buf_release(&prefix);
    buf_release(&from);
    return rc;
}

/* Lookup. */

/* store_hits_init - an empty result, reusable across lookups */
void store_hits_init(struct store_hits *hits)
{
    memset(hits, 0, sizeof(*hits));
}

/* store_hits_free - release a result */
void store_hits_free(struct store_hits *hits)
{
    myfree(hits->m);
    store_hits_init(hits);
}

/* hits_add - one more match */
static struct store_match *hits_add(struct store_hits *hits)
{
    hits->m = mygrow(hits->m, &hits->cap, hits->n, sizeof(*hits->m));
    return &hits->m[hits->n++];
}

/* store_lookup - see store.h */
int store_lookup(struct store *st, const char *tenant, const char *address,
                 uint32_t group, struct store_hits *hits, struct buf *why)
{
    struct buf key, k, val;
    char md5[33], sha[65];
    const char *forms[4];
    size_t flen[4];
    struct recset rs;
    struct store_db *db;
    int rc = 0;

    hits->n = 0;
    hits->default_group = 0;
    buf_init(&key, 128);
    buf_init(&k, 160);
    buf_init(&val, 256);
    recset_init(&rs);
    address_key(address, &key);
    if (key.len == 0 || key.data[0] == '@' || strchr(key.data, '@') == NULL) {
        buf_error(why, "not an address: \"%s\"", address);
        rc = -1;
        goto out;
    }
    address_digests(key.data, key.len, md5, sha);
    {
        const char *dom = address_domain(key.data);

        forms[0] = key.data;
        flen[0] = key.len;
        forms[1] = dom - 1; /* "@domain": the key holds it from the '@' */
        flen[1] = strlen(dom) + 1;
        forms[2] = md5;
        flen[2] = 32;
        forms[3] = sha;
        flen[3] = 64;
    }
    if ((db = st_rlock(st, why)) == NULL) {
        rc = -1;
        goto out;
    }
    for (int f = 0; f < 4 && rc == 0; f++) {
        int found = st_get_entry(st, db, tenant, forms[f], flen[f], &val, &rs, why);

        if (found < 0) {
            rc = -1;
            break;
        }
        for (size_t i = 0; i < rs.n; i++) {
            struct rec *r = &rs.r[i];
            struct store_match *m;
            size_t n;

            if (r->tag == 'g' && group != STORE_ALL_GROUPS && r->group != group)
                continue;
            m = hits_add(hits);
            m->list = tag_list(r->tag);
            m->group = r->group;
            m->via = (enum address_kind)r->kind;
            m->created = r->created;
            m->bounce_type[0] = 0;
            if (r->tag == 'b' && r->nstr >= 4) {
                n = r->len[3] < sizeof(m->bounce_type) - 1 ? r->len[3]
                                                           : sizeof(m->bounce_type) - 1;
                memcpy(m->bounce_type, r->str[3], n);
                m->bounce_type[n] = 0;
            }
            n = r->len[0] < ADDRESS_MAX ? r->len[0] : ADDRESS_MAX;
            memcpy(m->entry, r->str[0], n);
            m->entry[n] = 0;
        }
    }
    if (rc == 0) {
        key_tenant(&k, 'D', tenant);
        int found = st->be->get(db, k.data, k.len, &val, why);

        if (found < 0)
            rc = -1;
        else if (found && val.len == 4)
            hits->default_group = get_be32(val.data);
    }
    st_runlock(st);
out:
    recset_free(&rs);
    buf_release(&key);
    buf_release(&k);
    buf_release(&val);
    return rc;
}

/* Groups. */

/* group_encode - name(len2 bytes) description(len2 bytes) */
static void group_encode(struct buf *v, const char *name, const char *desc)
{
    size_t nl = strlen(name), dl = strlen(desc);

    buf_reset(v);
    buf_putc(v, (int)(nl >> 8));
    buf_putc(v, (int)(nl & 0xff));
    buf_append(v, name, nl);
    buf_putc(v, (int)(dl >> 8));
    buf_putc(v, (int)(dl & 0xff));
    buf_append(v, desc, dl);
}

/* group_decode - fill name and description of grp from a value */
static int group_decode(const struct buf *v, struct store_group *grp)
{
    const unsigned char *p = (const unsigned char *)v->data;
    size_t nl, dl;

    if (v->len < 4)
        return -1;
    nl = (size_t)p[0] << 8 | p[1];
    if (nl >= sizeof(grp->name) || v->len < 4 + nl)
        return -1;
    dl = (size_t)p[2 + nl] << 8 | p[3 + nl];
    if (dl >= sizeof(grp->description) || v->len < 4 + nl + dl)
        return -1;
    memcpy(grp->name, p + 2, nl);
    grp->name[nl] = 0;
    memcpy(grp->description, p + 4 + nl, dl);
    grp->description[dl] = 0;
    return 0;
}

/* key_group_name - g tenant NUL name folded to lower case (ASCII) */
static void key_group_name(struct buf *k, const char *tenant, const char *name)
{
    key_tenant(k, 'g', tenant);
    for (const char *p = name; *p; p++)
        buf_putc(k, (*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
}

/* group_check_text - name 1-100 characters, description up to 500 */
static int group_check_text(const char *name, const char *desc, struct buf *why)
{
    if (name) {
        size_t len = strlen(name), chars;

        if (!utf8_valid(name, len))
            return buf_error(why, "group name is not valid UTF-8");
        chars = utf8_chars(name, len);
        if (chars == 0 || strspn(name, " \t") == len)
            return buf_error(why, "group name is empty");
        if (chars > STORE_GROUP_NAME_MAX)
            return buf_error(why, "group name has %zu characters; at most %d", chars,
                             STORE_GROUP_NAME_MAX);
        for (const char *p = name; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                return buf_error(why, "group name contains a control character");
    }
    if (desc) {
        size_t len = strlen(desc);

        if (!utf8_valid(desc, len))
            return buf_error(why, "group description is not valid UTF-8");
        if (utf8_chars(desc, len) > STORE_GROUP_DESC_MAX)
            return buf_error(why, "group description has %zu characters; at most %d",
                             utf8_chars(desc, len), STORE_GROUP_DESC_MAX);
    }
    return 0;
}

/* st_get_u32 - a 4-byte value, 0 if absent */
static int st_get_u32(struct store *st, struct store_db *db, const struct buf *k,
                      uint32_t *out, struct buf *why)
{
    struct buf v;
    int found;

    buf_init(&v, 8);
    found = st->be->get(db, k->data, k->len, &v, why);
    *out = (found > 0 && v.len == 4) ? get_be32(v.data) : 0;
    buf_release(&v);
    return found < 0 ? -1 : 0;
}

/* store_default_group - see store.h */
int store_default_group(struct store *st, const char *tenant, uint32_t *id,
                        struct buf *why)
{
    struct store_db *db;
    struct buf k;
    int rc;

    *id = 0;
    if ((db = st_rlock(st, why)) == NULL)
        return -1;
    buf_init(&k, 64);
    key_tenant(&k, 'D', tenant);
    rc = st_get_u32(st, db, &k, id, why);
    st_runlock(st);
    buf_release(&k);
    return rc;
}

/* st_put_u32 - store a 4-byte value */
static int st_put_u32(struct store *st, const struct buf *k, uint32_t val,
                      struct buf *why)
{
    struct buf v;
    int rc;

    buf_init(&v, 8);
    put_be32(&v, val);
    rc = st->be->put(st->wdb, k->data, k->len, v.data, v.len, why);
    buf_release(&v);
    return rc;
}

/* st_name_taken - is the name used by a group other than self? */
static int st_name_taken(struct store *st, const char *tenant, const char *name,
                         uint32_t self, struct buf *why)
{
    struct buf k;
    uint32_t id;
    int rc;

    buf_init(&k, 64);
    key_group_name(&k, tenant, name);
    rc = st_get_u32(st, st->wdb, &k, &id, why);
    buf_release(&k);
    if (rc < 0)
        return -1;
    if (id && id != self)
        return buf_error(why, "a group named \"%s\" already exists (id %u)", name, id);
    return 0;
}

/* st_set_default - make id the default (0: none); the old one is reported */
static int st_set_default(struct store *st, const char *tenant, uint32_t id,
                          uint32_t *old_default, struct buf *why)
{
    struct buf k;
    uint32_t old;
    int rc;

    buf_init(&k, 64);
    key_tenant(&k, 'D', tenant);
    rc = st_get_u32(st, st->wdb, &k, &old, why);
    if (rc == 0) {
        if (old_default)
            *old_default = old != id ? old : 0;
        if (id)
            rc = st_put_u32(st, &k, id, why);
        else
            rc = st->be->del(st->wdb, k.data, k.len, why) < 0 ? -1 : 0;
    }
    buf_release(&k);
    return rc;
}

/* store_group_create - see store.h */
int store_group_create(struct store *st, const char *tenant, const char *name,
                       const char *description, int is_default, uint32_t *id,
                       uint32_t *old_default, struct buf *why)
{
    struct buf k, v;
    uint32_t seq;
    int own, ok = 0;

    if (old_default)
        *old_default = 0;
    if (group_check_text(name, description, why) < 0)
        return -1;
    if (st_tx_enter(st, &own, why) < 0)
        return -1;
    buf_init(&k, 64);
    buf_init(&v, 128);
    if (st_name_taken(st, tenant, name, 0, why) < 0)
        goto out;
    key_tenant(&k, 'Q', tenant);
    if (st_get_u32(st, st->wdb, &k, &seq, why) < 0 || st_put_u32(st, &k, ++seq, why) < 0)
        goto out;
    key_group_name(&k, tenant, name);
    if (st_put_u32(st, &k, seq, why) < 0)
        goto out;
    key_group(&k, tenant, seq);
    group_encode(&v, name, description ? description : "");
    if (st->be->put(st->wdb, k.data, k.len, v.data, v.len, why) < 0 ||
        st->be->ix_put(st->wdb, k.data, k.len, why) < 0)
        goto out;
    if (is_default && st_set_default(st, tenant, seq, old_default, why) < 0)
        goto out;
    *id = seq;
    ok = 1;
out:
    buf_release(&k);
    buf_release(&v);
    return st_tx_leave(st, own, ok, why);
}

/* store_group_update - see store.h */
int store_group_update(struct store *st, const char *tenant, uint32_t id,
                       const char *name, const char *description, int is_default,
                       uint32_t *old_default, struct buf *why)
{
    struct buf k, v;
    struct store_group grp;
    int own, ok = 0, found;

    if (old_default)
        *old_default = 0;
    if (group_check_text(name, description, why) < 0)
        return -1;
    if (st_tx_enter(st, &own, why) < 0)
        return -1;
    buf_init(&k, 64);
    buf_init(&v, 128);
    key_group(&k, tenant, id);
    found = st->be->get(st->wdb, k.data, k.len, &v, why);
    if (found == 0)
        buf_error(why, "no group %u for tenant %s", id, tenant);
    if (found <= 0)
        goto out;
    if (group_decode(&v, &grp) < 0) {
        buf_error(why, "store %s: damaged group %u", st->dir, id);
        goto out;
    }
    if (name && strcmp(name, grp.name) != 0) {
        if (st_name_taken(st, tenant, name, id, why) < 0)
            goto out;
        key_group_name(&k, tenant, grp.name);
        if (st->be->del(st->wdb, k.data, k.len, why) < 0)
            goto out;
        key_group_name(&k, tenant, name);
        if (st_put_u32(st, &k, id, why) < 0)
            goto out;
    }
    key_group(&k, tenant, id);
    group_encode(&v, name ? name : grp.name, description ? description : grp.description);
    if (st->be->put(st->wdb, k.data, k.len, v.data, v.len, why) < 0)
        goto out;
    if (is_default == 1 && st_set_default(st, tenant, id, old_default, why) < 0)
        goto out;
    if (is_default == 0) {
        uint32_t cur;

        key_tenant(&k, 'D', tenant);
        if (st_get_u32(st, st->wdb, &k, &cur, why) < 0)
            goto out;
        if (cur == id && st_set_default(st, tenant, 0, NULL, why) < 0)
            goto out;
    }
    ok = 1;
out:
    buf_release(&k);
    buf_release(&v);
    return st_tx_leave(st, own, ok, why);
}

/* st_group_read - one group with its default flag and count, with a handle */
static int st_group_read(struct store *st, struct store_db *db, const char *tenant,
                         uint32_t id, struct store_group *grp, struct buf *why)
{
    struct buf k, v;
    uint32_t def;
    int found;

    buf_init(&k, 64);
    buf_init(&v, 128);
    key_group(&k, tenant, id);
    found = st->be->get(db, k.data, k.len, &v, why);
    if (found > 0 && group_decode(&v, grp) < 0)
        found = buf_error(why, "store %s: damaged group %u", st->dir, id);
    if (found > 0) {
        grp->id = id;
        key_tenant(&k, 'D', tenant);
        if (st_get_u32(st, db, &k, &def, why) < 0)
            found = -1;
        grp->is_default = def == id;
        grp->count = st_count(st, db, tenant, 'g', id, why);
        if (grp->count < 0)
            found = -1;
    }
    buf_release(&k);
    buf_release(&v);
    return found;
}

/* store_group_get - see store.h */
int store_group_get(struct store *st, const char *tenant, uint32_t id,
                    struct store_group *grp, struct buf *why)
{
    struct store_db *db = st_rlock(st, why);
    int found;

    if (db == NULL)
        return -1;
    found = st_group_read(st, db, tenant, id, grp, why);
    st_runlock(st);
    return found;
}

/* collect_group - gather group ids from the index */
static int collect_group(const char *k, size_t klen, void *ctx)
{
    TCLIST *ids = ctx;

    tclistpush(ids, k + klen - 4, 4);
    return 0;
}

/* store_group_list - see store.h */
int store_group_list(struct store *st, const char *tenant, store_group_fn fn, void *ctx,
                     struct buf *why)
{
    struct store_db *db;
    struct buf prefix;
    TCLIST *ids = tclistnew();
    struct store_group *grps = NULL;
    int n = 0, rc = -1;

    buf_init(&prefix, 64);
    key_tenant(&prefix, 'G', tenant);
    if ((db = st_rlock(st, why)) == NULL)
        goto out;
    if (st->be->ix_scan(db, prefix.data, prefix.len, NULL, 0, collect_group, ids, why) <
        0) {
        st_runlock(st);
        goto out;
    }
    grps = mycalloc((size_t)tclistnum(ids) + 1, sizeof(*grps));
    for (int i = 0; i < tclistnum(ids); i++) {
        int sz;
        uint32_t id = get_be32(tclistval(ids, i, &sz));
        int found = st_group_read(st, db, tenant, id, &grps[n], why);

        if (found < 0) {
            st_runlock(st);
            goto out;
        }
        n += found;
    }
    st_runlock(st);
    rc = 0;
    for (int i = 0; i < n; i++)
        if (fn(&grps[i], ctx) != 0)
            break;
out:
    myfree(grps);
    tclistdel(ids);
    buf_release(&prefix);
    return rc;
}

/* store_group_delete - see store.h */
int store_group_delete(struct store *st, const char *tenant, uint32_t id,
                       long long *suppressions, struct buf *why)
{
    struct store_group grp;
    struct buf k;
    int found, ok = 0, own_bulk;
    uint32_t def;
    long long n = 0;

    if (suppressions)
        *suppressions = 0;
    if (st_own(st) && st->in_tx)
        return buf_error(why, "a group cannot be deleted inside a transaction");
    /*
     * One bulk operation: the group read under the gate (no other writer can
     * rename it meanwhile), the suppressions in batches, then the group; a
     * failure of the last step puts the suppressions back.
     */
    own_bulk = !(st_own(st) && st->bulk);
    if (own_bulk)
        store_bulk_begin(st);
    if (store_begin(st, why) < 0) {
        found = -1;
        goto out;
    }
    found = st_group_read(st, st->wdb, tenant, id, &grp, why);
    if (store_commit(st, why) < 0) /* nothing changed: it ends the read */
        found = -1;
    if (found <= 0) {
        ok = found == 0;
        goto out;
    }
    if ((n = store_clear(st, tenant, STORE_GROUP, id, why)) < 0 ||
        store_begin(st, why) < 0)
        goto out;
    buf_init(&k, 64);
    key_group(&k, tenant, id);
    if (st->be->del(st->wdb, k.data, k.len, why) < 0 ||
        st->be->ix_del(st->wdb, k.data, k.len, why) < 0)
        goto abort;
    key_group_name(&k, tenant, grp.name);
    if (st->be->del(st->wdb, k.data, k.len, why) < 0)
        goto abort;
    key_tenant(&k, 'D', tenant);
    if (st_get_u32(st, st->wdb, &k, &def, why) < 0)
        goto abort;
    if (def == id && st->be->del(st->wdb, k.data, k.len, why) < 0)
        goto abort;
    ok = 1;
abort:
    buf_release(&k);
    if (!ok)
        store_abort(st);
    else if (store_commit(st, why) < 0)
        ok = 0;
out:
    if (!ok && !own_bulk)
        st->bulk_failed = 1;
    if (own_bulk && store_bulk_end(st, ok, why) < 0)
        ok = 0;
    if (!ok)
        return -1;
    if (suppressions)
        *suppressions = n;
    return found;
}

/* DKIM keys. */

/* key_dkim - "K" domain NUL selector (the index holds the same key) */
static void key_dkim(struct buf *k, const char *domain, const char *selector)
{
    key_tenant(k, 'K', domain);
    buf_puts(k, selector);
}

/* dkim_decode - value: algorithm NUL bits NUL path NUL created */
static int dkim_decode(const char *v, size_t vlen, const char *domain,
                       const char *selector, struct store_dkim *out)
{
    const char *f[4], *p = v, *end = v + vlen;

    for (int i = 0; i < 4; i++) {
        const char *nul = memchr(p, 0, (size_t)(end - p));

        if (nul == NULL)
            return -1;
        f[i] = p;
        p = nul + 1;
    }
    out->domain = domain;
    out->selector = selector;
    out->algorithm = f[0];
    out->bits = atoi(f[1]);
    out->path = f[2];
    out->created = strtoll(f[3], NULL, 10);
    return 0;
}

/* store_dkim_put - see store.h */
int store_dkim_put(struct store *st, const struct store_dkim *key, int *replaced,
                   struct buf *why)
{
    struct buf k, v;
    int own, found, ok = 0;

    if (!*key->domain || !*key->selector)
        return buf_error(why, "a DKIM key needs a domain and a selector");
    if (st_tx_enter(st, &own, why) < 0)
        return -1;
    buf_init(&k, 128);
    buf_init(&v, 256);
    key_dkim(&k, key->domain, key->selector);
    if ((found = st->be->get(st->wdb, k.data, k.len, &v, why)) < 0)
        goto out;
    if (replaced)
        *replaced = found;
    buf_reset(&v);
    buf_printf(&v, "%s%c%d%c%s%c%lld%c", key->algorithm, 0, key->bits, 0, key->path, 0,
               (long long)(key->created ? key->created : (int64_t)time(NULL)), 0);
    ok = st->be->put(st->wdb, k.data, k.len, v.data, v.len, why) == 0 &&
         st->be->ix_put(st->wdb, k.data, k.len, why) == 0;
out:
    buf_release(&k);
    buf_release(&v);
    return st_tx_leave(st, own, ok, why);
}

/* store_dkim_delete - see store.h */
int store_dkim_delete(struct store *st, const char *domain, const char *selector,
                      struct buf *why)
{
    struct buf k;
    int own, found;

    if (st_tx_enter(st, &own, why) < 0)
        return -1;
    buf_init(&k, 128);
    key_dkim(&k, domain, selector);
    found = st->be->del(st->wdb, k.data, k.len, why);
    if (found > 0 && st->be->ix_del(st->wdb, k.data, k.len, why) < 0)
        found = -1;
    buf_release(&k);
    if (st_tx_leave(st, own, found >= 0, why) < 0)
        return -1;
    return found;
}

/* collect_dkim - index keys of DKIM records */
static int collect_dkim(const char *k, size_t klen, void *ctx)
{
    tclistpush(ctx, k, (int)klen);
    return 0;
}

/* store_dkim_list - see store.h */
int store_dkim_list(struct store *st, const char *domain, const char *selector,
                    store_dkim_fn fn, void *ctx, struct buf *why)
{
    struct store_db *db;
    struct buf prefix, v;
    TCLIST *keys = tclistnew(), *fk = tclistnew(), *fv = tclistnew();
    int rc = -1;

    buf_init(&prefix, 128);
    buf_init(&v, 256);
    if (domain && selector)
        key_dkim(&prefix, domain, selector);
    else if (domain)
        key_tenant(&prefix, 'K', domain);
    else
        buf_putc(&prefix, 'K');
    if ((db = st_rlock(st, why)) == NULL)
        goto out;
    if (st->be->ix_scan(db, prefix.data, prefix.len, NULL, 0, collect_dkim, keys, why) <
        0) {
        st_runlock(st);
        goto out;
    }
    for (int i = 0; i < tclistnum(keys); i++) {
        int sz, found;
        const char *k = tclistval(keys, i, &sz);

        /* with a selector, only that one (not the others it begins) */
        if (selector && (size_t)sz != prefix.len)
            continue;
        if ((found = st->be->get(db, k, (size_t)sz, &v, why)) < 0) {
            st_runlock(st);
            goto out;
        }
        if (found) {
            tclistpush(fk, k, sz);
            tclistpush(fv, v.data, (int)v.len);
        }
    }
    st_runlock(st);
    rc = tclistnum(fk);
    for (int i = 0; i < tclistnum(fk); i++) {
        int ksz, vsz;
        const char *k = tclistval(fk, i, &ksz);
        const char *val = tclistval(fv, i, &vsz);
        const char *dom = k + 1, *sel = dom + strlen(dom) + 1;
        struct store_dkim rec;

        if (dkim_decode(val, (size_t)vsz, dom, sel, &rec) < 0) {
            rc = buf_error(why, "store %s: damaged DKIM record %s/%s", st->dir, dom, sel);
            break;
        }
        if (fn && fn(&rec, ctx) != 0)
            break;
    }
out:
    buf_release(&prefix);
    buf_release(&v);
    tclistdel(keys);
    tclistdel(fk);
    tclistdel(fv);
    return rc;
}
