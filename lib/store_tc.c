/*
 * store_tc - the Tokyo Cabinet backend of the store: entries in a hash DB,
 * the index in a B+ tree DB.
 *
 * Both are always opened without TC's own file lock (store.c locks) and
 * without TC's mutexes: with them TC calls sched_yield() after every
 * operation, a third of a decision's time when measured.  store.c gives a
 * handle to one thread at a time instead.  Writers do not
 * use TSYNC: with it TC fsyncs its write-ahead log after every region it
 * logs, which measured 3,800 puts/s against 250,000/s without.  Instead
 * each commit syncs the file once (tchdbsync/tcbdbsync), so a committed
 * transaction is on disk before the caller hears so.  TC rolls back an
 * interrupted transaction from its log when the file is next opened for
 * writing; that covers a killed process.  A power failure in the middle of
 * a transaction is not covered: the log itself is not synced before the
 * data it protects.  Bulk operations skip the sync between their batches
 * (each sync writes back the whole randomly-dirtied bucket array: ~50 ms
 * a batch, measured) and sync once at the end.
 */
#include "config.h"

#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <tcutil.h>
#include <tchdb.h>
#include <tcbdb.h>

#include "mymalloc.h"
#include "store_backend.h"

#define TC_ENTRIES "entries.tch"
#define TC_INDEX "index.tcb"
#define TC_BUCKETS 2000003     /* sized for a few million entries */
#define TC_XMSIZ (256LL << 20) /* map the bucket array and hot records */

struct store_db {
    TCHDB *hdb;
    TCBDB *bdb; /* readers open it on first use: lookups never need it */
    int writer;
    char *hpath, *bpath;
    pthread_mutex_t lazy;
};

/*
 * Debian's libtokyocabinet is built with TC's "micro yield" mode
 * (_MYMICROYIELD, configure --enable-uyield, meant for shaking out races in
 * TC's own tests): nearly every internal loop calls sched_yield() every 256
 * steps, whether or not TC's mutexes are on.  Measured here, that is 70% of
 * the time of walking 900,000 index keys (1.47 s against 0.42 s) and a
 * third of a 1,000,000-row import (16.3 s against 11.3 s).  The yields carry
 * no meaning (TC's locks are off: store.c does the locking), so this file
 * defines sched_yield() for the process and swallows exactly the calls made
 * from TC's own code: the caller's return address is checked against TC's
 * executable segment, found once with dl_iterate_phdr().  Every other
 * caller gets the real system call.
 */
static uintptr_t tc_text_lo, tc_text_hi;
static pthread_once_t tc_text_once = PTHREAD_ONCE_INIT;

/* tc_find_text - the executable segment of libtokyocabinet, if loaded */
static int tc_find_text(struct dl_phdr_info *info, size_t size, void *ctx)
{
    (void)size;
    (void)ctx;
    if (info->dlpi_name == NULL || strstr(info->dlpi_name, "libtokyocabinet") == NULL)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            tc_text_lo = info->dlpi_addr + ph->p_vaddr;
            tc_text_hi = tc_text_lo + ph->p_memsz;
            return 1;
        }
    }
    return 0;
}

static void tc_text_init(void)
{
    dl_iterate_phdr(tc_find_text, NULL);
}

int sched_yield(void);

/* sched_yield - the real one, except for TC's micro yields (see above) */
int sched_yield(void)
{
    uintptr_t caller = (uintptr_t)__builtin_return_address(0);

    if (caller >= tc_text_lo && caller < tc_text_hi)
        return 0;
    return (int)syscall(SYS_sched_yield);
}

/* tc_fail - report a TC error on a database */
static int tc_fail(struct buf *why, const char *what, const char *path, int ecode)
{
    return buf_error(why, "%s %s: %s", what, path, tcerrmsg(ecode));
}

/* tc_close - close and free whatever is open */
static int tc_close(struct store_db *db, struct buf *why)
{
    int ok = 1;

    if (db == NULL)
        return 0;
    if (db->hdb) {
        if (!tchdbclose(db->hdb) && tchdbecode(db->hdb) != TCEINVALID) {
            tc_fail(why, "close", db->hpath, tchdbecode(db->hdb));
            ok = 0;
        }
        tchdbdel(db->hdb);
    }
    if (db->bdb) {
        if (!tcbdbclose(db->bdb) && tcbdbecode(db->bdb) != TCEINVALID && ok) {
            tc_fail(why, "close", db->bpath, tcbdbecode(db->bdb));
            ok = 0;
        }
        tcbdbdel(db->bdb);
    }
    pthread_mutex_destroy(&db->lazy);
    myfree(db->hpath);
    myfree(db->bpath);
    myfree(db);
    return ok ? 0 : -1;
}

/*
 * ix_cmp - byte order of index keys, the same order as TC's own
 * tccmplexical.  Ours because Debian's TC build calls sched_yield() every
 * 256 bytes its comparators look at: a third of a listing's time, measured.
 * It must be set before every open of the file.
 */
static int ix_cmp(const char *a, int asiz, const char *b, int bsiz, void *op)
{
    int n = asiz < bsiz ? asiz : bsiz;
    int rc = memcmp(a, b, (size_t)n);

    (void)op;
    return rc ? rc : asiz - bsiz;
}

/* tc_open_index - open the B+ tree; 0 or -1 */
static int tc_open_index(struct store_db *db, struct buf *why)
{
    int bmode = BDBONOLCK;
    TCBDB *bdb;

    if (db->writer)
        bmode |= BDBOWRITER | (db->writer > 1 ? BDBOCREAT : 0);
    else
        bmode |= BDBOREADER;
    bdb = tcbdbnew();
    tcbdbsetcmpfunc(bdb, ix_cmp, NULL);
    tcbdbtune(bdb, 256, 512, 65521, -1, -1, BDBTLARGE);
    tcbdbsetcache(bdb, db->writer ? 65536 : 8192, db->writer ? 8192 : 1024);
    tcbdbsetxmsiz(bdb, 64LL << 20);
    if (!tcbdbopen(bdb, db->bpath, bmode)) {
        tc_fail(why, "cannot open", db->bpath, tcbdbecode(bdb));
        tcbdbdel(bdb);
        return -1;
    }
    db->bdb = bdb;
    return 0;
}

/* tc_index - the B+ tree, opened now if a reader had not needed it yet */
static TCBDB *tc_index(struct store_db *db, struct buf *why)
{
    TCBDB *bdb;

    pthread_mutex_lock(&db->lazy);
    if (db->bdb == NULL)
        tc_open_index(db, why);
    bdb = db->bdb;
    pthread_mutex_unlock(&db->lazy);
    return bdb;
}

/* tc_open - open the databases of dir (a reader's index: on first use) */
static struct store_db *tc_open(const char *dir, int writer, int create, struct buf *why)
{
    struct store_db *db = mycalloc(1, sizeof(*db));
    struct buf path;
    int hmode = HDBONOLCK;

    pthread_once(&tc_text_once, tc_text_init);

    buf_init(&path, 256);
    buf_setf(&path, "%s/%s", dir, TC_ENTRIES);
    db->hpath = mystrdup(buf_str(&path));
    buf_setf(&path, "%s/%s", dir, TC_INDEX);
    db->bpath = mystrdup(buf_str(&path));
    buf_release(&path);
    db->writer = writer ? (create ? 2 : 1) : 0;
    pthread_mutex_init(&db->lazy, NULL);
    if (writer)
        hmode |= HDBOWRITER | (create ? HDBOCREAT : 0);
    else
        hmode |= HDBOREADER;
    db->hdb = tchdbnew();
    tchdbtune(db->hdb, TC_BUCKETS, -1, -1, HDBTLARGE);
    tchdbsetxmsiz(db->hdb, TC_XMSIZ);
    if (!tchdbopen(db->hdb, db->hpath, hmode)) {
        tc_fail(why, "cannot open", db->hpath, tchdbecode(db->hdb));
        tchdbdel(db->hdb);
        db->hdb = NULL;
        tc_close(db, NULL);
        return NULL;
    }
    if (writer && tc_open_index(db, why) < 0) {
        tc_close(db, NULL);
        return NULL;
    }
    return db;
}

/* tc_begin - start a transaction on both */
static int tc_begin(struct store_db *db, struct buf *why)
{
    if (!tchdbtranbegin(db->hdb))
        return tc_fail(why, "cannot begin a transaction on", db->hpath,
                       tchdbecode(db->hdb));
    if (!tcbdbtranbegin(db->bdb)) {
        tc_fail(why, "cannot begin a transaction on", db->bpath, tcbdbecode(db->bdb));
        tchdbtranabort(db->hdb);
        return -1;
    }
    return 0;
}

/* tc_commit_entries - commit the hash DB's transaction */
static int tc_commit_entries(struct store_db *db, int durable, struct buf *why)
{
    if (!tchdbtrancommit(db->hdb) || (durable && !tchdbsync(db->hdb)))
        return tc_fail(why, "cannot commit", db->hpath, tchdbecode(db->hdb));
    return 0;
}

/* tc_commit_index - commit the B+ tree's transaction */
static int tc_commit_index(struct store_db *db, int durable, struct buf *why)
{
    if (!tcbdbtrancommit(db->bdb) || (durable && !tcbdbsync(db->bdb)))
        return tc_fail(why, "cannot commit", db->bpath, tcbdbecode(db->bdb));
    return 0;
}

/* tc_sync - put both files on disk */
static int tc_sync(struct store_db *db, struct buf *why)
{
    if (!tchdbsync(db->hdb))
        return tc_fail(why, "cannot sync", db->hpath, tchdbecode(db->hdb));
    if (!tcbdbsync(db->bdb))
        return tc_fail(why, "cannot sync", db->bpath, tcbdbecode(db->bdb));
    return 0;
}

/* tc_abort - roll back whatever transaction is open */
static void tc_abort(struct store_db *db)
{
    tchdbtranabort(db->hdb);
    tcbdbtranabort(db->bdb);
}

/* tc_get - one entry */
static int tc_get(struct store_db *db, const void *key, size_t klen, struct buf *val,
                  struct buf *why)
{
    int vlen;
    char *v = tchdbget(db->hdb, key, (int)klen, &vlen);

    if (v == NULL) {
        int ecode = tchdbecode(db->hdb);

        if (ecode == TCENOREC)
            return 0;
        return tc_fail(why, "cannot read", db->hpath, ecode);
    }
    buf_reset(val);
    buf_append(val, v, (size_t)vlen);
    free(v);
    return 1;
}

/* tc_put - store one entry */
static int tc_put(struct store_db *db, const void *key, size_t klen, const void *val,
                  size_t vlen, struct buf *why)
{
    if (!tchdbput(db->hdb, key, (int)klen, val, (int)vlen))
        return tc_fail(why, "cannot write", db->hpath, tchdbecode(db->hdb));
    return 0;
}

/* tc_del - remove one entry */
static int tc_del(struct store_db *db, const void *key, size_t klen, struct buf *why)
{
    if (!tchdbout(db->hdb, key, (int)klen)) {
        int ecode = tchdbecode(db->hdb);

        if (ecode == TCENOREC)
            return 0;
        return tc_fail(why, "cannot write", db->hpath, ecode);
    }
    return 1;
}

/* tc_iterate - every entry */
static int tc_iterate(struct store_db *db, store_kv_fn fn, void *ctx, struct buf *why)
{
    TCXSTR *k = tcxstrnew(), *v = tcxstrnew();
    int rc = 0;

    if (!tchdbiterinit(db->hdb)) {
        rc = tc_fail(why, "cannot iterate", db->hpath, tchdbecode(db->hdb));
    } else {
        while (tchdbiternext3(db->hdb, k, v)) {
            if (fn(tcxstrptr(k), (size_t)tcxstrsize(k), tcxstrptr(v),
                   (size_t)tcxstrsize(v), ctx) != 0)
                break;
        }
        if (tchdbecode(db->hdb) != TCENOREC && tchdbecode(db->hdb) != TCESUCCESS)
            rc = tc_fail(why, "cannot iterate", db->hpath, tchdbecode(db->hdb));
    }
    tcxstrdel(k);
    tcxstrdel(v);
    return rc;
}

/* tc_ix_put - add a key to the index */
static int tc_ix_put(struct store_db *db, const void *key, size_t klen, struct buf *why)
{
    if (!tcbdbput(db->bdb, key, (int)klen, "", 0))
        return tc_fail(why, "cannot write", db->bpath, tcbdbecode(db->bdb));
    return 0;
}

/* tc_ix_del - remove a key from the index (absent is fine) */
static int tc_ix_del(struct store_db *db, const void *key, size_t klen, struct buf *why)
{
    if (!tcbdbout(db->bdb, key, (int)klen) && tcbdbecode(db->bdb) != TCENOREC)
        return tc_fail(why, "cannot write", db->bpath, tcbdbecode(db->bdb));
    return 0;
}

/* tc_ix_scan - keys with a prefix, in order, from a starting key */
static int tc_ix_scan(struct store_db *db, const void *prefix, size_t plen,
                      const void *from, size_t flen, store_key_fn fn, void *ctx,
                      struct buf *why)
{
    TCBDB *bdb = tc_index(db, why);
    BDBCUR *cur;
    int rc = 0;

    if (bdb == NULL)
        return -1;
    cur = tcbdbcurnew(bdb);

    if (from == NULL) {
        from = prefix;
        flen = plen;
    }
    if (tcbdbcurjump(cur, from, (int)flen)) {
        for (;;) {
            int klen;
            const char *k = tcbdbcurkey3(cur, &klen);

            if (k == NULL || (size_t)klen < plen || memcmp(k, prefix, plen) != 0)
                break;
            if (fn(k, (size_t)klen, ctx) != 0)
                break;
            if (!tcbdbcurnext(cur))
                break;
        }
    }
    if (tcbdbecode(bdb) != TCENOREC && tcbdbecode(bdb) != TCESUCCESS)
        rc = tc_fail(why, "cannot read", db->bpath, tcbdbecode(bdb));
    tcbdbcurdel(cur);
    return rc;
}

/* tc_ix_clear - empty the index, for a rebuild */
static int tc_ix_clear(struct store_db *db, struct buf *why)
{
    if (!tcbdbvanish(db->bdb))
        return tc_fail(why, "cannot clear", db->bpath, tcbdbecode(db->bdb));
    return 0;
}

/* tc_disk_size - bytes of both files */
static long long tc_disk_size(struct store_db *db)
{
    TCBDB *bdb = tc_index(db, NULL);

    return (long long)tchdbfsiz(db->hdb) + (bdb ? (long long)tcbdbfsiz(bdb) : 0);
}

const struct store_backend store_backend_tc = {
    .name = "tokyocabinet",
    .open = tc_open,
    .close = tc_close,
    .begin = tc_begin,
    .commit_entries = tc_commit_entries,
    .commit_index = tc_commit_index,
    .abort = tc_abort,
    .sync = tc_sync,
    .get = tc_get,
    .put = tc_put,
    .del = tc_del,
    .iterate = tc_iterate,
    .ix_put = tc_ix_put,
    .ix_del = tc_ix_del,
    .ix_scan = tc_ix_scan,
    .ix_clear = tc_ix_clear,
    .disk_size = tc_disk_size,
};
