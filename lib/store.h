/*
 * store - the suppression stores of sendguard, scoped by tenant.
 *
 * What it holds (DESIGN.md "Stores"): bounces, spam reports, global
 * unsubscribes, unsubscribe groups and their suppressions, and the allow list.
 * Every entry is an address, a whole domain ("@example.com") or the MD5 or
 * SHA-256 hex digest of an address key (see address.h); store_lookup() checks
 * an address against all four forms at once.
 *
 * LAYOUT.  One directory holds two Tokyo Cabinet databases behind the
 * backend table in store_backend.h (store_tc.c is the only backend today):
 *
 *   entries (hash DB, the truth)
 *     E tenant NUL key        -> every record of that entry, one per list or
 *                                group it is on (created, display form, and
 *                                the list's fields: reason/status/type, source)
 *     N tenant NUL tag group  -> number of records on that list
 *     G tenant NUL group-id   -> a group (name, description)
 *     g tenant NUL lc(name)   -> group id, for unique names
 *     D tenant                -> id of the tenant's default group
 *     S tenant NUL key        -> the address's recent soft bounces (times)
 *     Q tenant                -> last group id handed out
 *     K domain NUL selector   -> a DKIM key (algorithm, bits, path, created)
 *   index (B+ tree, derived)
 *     L tenant NUL tag group ~created key  -> listing order, newest first
 *     G tenant NUL group-id                -> groups in id order
 *     K domain NUL selector                -> DKIM keys in order
 *
 * The directory is made with mode 2770 and the files with 0660 (less the
 * umask; a file that exists keeps its mode): the sendguard group shares the
 * stores, and every program in it may write them (sgadmin, the relay's
 * bounces, sgtrackd's unsubscribes, sgadmin ingest).
 *
 * A lookup is four hash gets (exact, domain, MD5, SHA-256) plus one for the
 * default group: measured ~1.5 us per miss and ~3 us per hit on a 1M-entry
 * file.  Listing walks the B+ tree, which orders by time and gives start/end
 * as cursor jumps.  Every change of an entry goes through one function that
 * diffs the old and new records and adjusts the index and counters, so the
 * three can only change together.
 *
 * CONCURRENCY.  Tokyo Cabinet's own lock is a whole-file fcntl lock held from
 * open to close, which would let one reading daemon starve every writer.  So
 * every handle is opened with the TC lock off (HDBONOLCK/BDBONOLCK) and this
 * module does the locking itself, with three lock files in the directory:
 *
 *   store.lock   a small header shared by mmap (generation number, a
 *                "writer waiting" flag, a "dirty" state) and the data lock:
 *                readers hold flock(LOCK_SH) around each operation, a writer
 *                holds flock(LOCK_EX) for each transaction;
 *   store.gate   writers among themselves: LOCK_EX for a whole transaction,
 *                or a whole bulk operation; readers never touch it;
 *   store.turn   the turnstile that gives writers preference, which flock
 *                lacks.
 *
 * A writer takes the turnstile (LOCK_EX), raises "writer waiting", waits for
 * the data lock, and lets the turnstile go.  A reader that sees the flag
 * queues on the turnstile (LOCK_SH) and keeps it until it has its shared data
 * lock.  So a writer waits only for the readers already inside (each a few
 * microseconds) and never for a stream of new ones; and the readers it held
 * back are inside before its next turn, so a writer committing in a loop, or
 * a bulk operation between batches, cannot starve them either.
 *
 * The writer opens the databases in writer mode after taking the gate, runs
 * one TC transaction on each under the data lock, commits, bumps the
 * generation and closes; a writer's handle never outlives the gate (a TC
 * writer's close rewrites the file header from its own cached view).
 * Readers keep reader-mode handles open across operations, one per process,
 * used by one thread at a time (a process mutex: TC's own mutexes yield the
 * CPU on every call, see store_tc.c), and compare the generation under their
 * shared lock: a changed generation reopens the handles, so a committed
 * change is visible to the next lookup in any process.  flock locks belong to
 * an open file description, so every thread reads through its own
 * descriptors (thread-specific data).  In one process, one thread at a time
 * writes: it holds a process mutex from store_begin (or store_bulk_begin) to
 * the end, and other threads' changes wait for it; their reads are refused
 * while a bulk operation of the process holds the writer handle.
 *
 * Bulk operations (imports, delete-all, group deletion) commit every
 * store.write_batch records and let the data lock go between batches, so a
 * reader waits at most for one batch (~50 ms at the default 5000); they keep the
 * gate, so no other writer gets in between.  Their batches are committed
 * without fsync and the last commit syncs everything (store_tc.c).  One that
 * fails part-way, or is interrupted (store_set_interrupt), undoes the batches
 * it had committed from an undo log of the entries it touched
 * (store_bulk_begin/end): an import happens entirely or not at all, unless
 * the process is killed outright (then the committed batches stay, each
 * whole).  After a failure the bulk refuses further changes, and it keeps the
 * gate until its undo is done, so the undo overwrites no other writer's work.
 * A writer waiting for a lock gives up when the interrupt flag is set.
 *
 * CRASHES.  "dirty" is 1 while a transaction is open and 2 from just before
 * the commit of the entries until the index has committed too.  Whoever
 * takes the lock and finds it non-zero recovers: TC rolls back an
 * interrupted transaction from its write-ahead log when the file is opened
 * for writing; state 2 means the index may lag the entries, and it is
 * rebuilt from them.  A reader that may write store.lock recovers by itself,
 * so that a daemon's lookups do not wait for an administrator; one that may
 * not reports "needs recovery by a writer".
 *
 * LIMITS.  If the commit of the index fails after the entries committed (a
 * full disk), the index is rebuilt and -1 returned although the change was
 * applied.  The undo log of a bulk operation holds entries, not groups: a
 * group deleted inside a caller's bulk operation that is then undone comes
 * back as its suppressions without the group.  Reader descriptors of threads
 * other than the one calling store_close are closed when those threads end.
 *
 * Errors are returned (-1 and a reason), never fatal: the milter calls this.
 */
#ifndef SG_STORE_H
#define SG_STORE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "address.h"
#include "buf.h"

enum store_list {
    STORE_BOUNCES,
    STORE_SPAM_REPORTS,
    STORE_UNSUBSCRIBES, /* global */
    STORE_GROUP,        /* one unsubscribe group's suppressions */
    STORE_ALLOW,
    STORE_NLISTS
};

#define STORE_DEFAULT_TENANT "default"
#define STORE_FIELD_MAX 1024 /* longer reasons are cut at a character boundary */
#define STORE_GROUP_NAME_MAX 100
#define STORE_GROUP_DESC_MAX 500

/* Group selectors for store_lookup(). */
#define STORE_NO_GROUP 0u
#define STORE_ALL_GROUPS UINT32_MAX

enum store_mode {
    STORE_READ = 0,   /* lookups and listings */
    STORE_WRITE = 1,  /* also changes */
    STORE_CREATE = 2, /* with STORE_WRITE: create the directory's files */
};

struct store;

/* One record of one list, as listings and store_get() return it. */
struct store_record {
    enum store_list list;
    uint32_t group;
    enum address_kind kind;
    int64_t created;
    const char *email; /* the entry as shown: address, @domain or digest */
    const char *reason, *status, *bounce_type; /* bounces */
    const char *source;                        /* spam reports */
};

/* What an add carries besides the entry. */
struct store_fields {
    int64_t created; /* 0: now */
    const char *reason, *status, *bounce_type, *source;
};

enum store_add_result {
    STORE_ADDED,   /* new on that list */
    STORE_KEPT,    /* already listed: the first "created" was kept */
    STORE_UPDATED, /* already listed: fields replaced (bounces) */
};

/* One list or group an address was found on by store_lookup(). */
struct store_match {
    enum store_list list;
    uint32_t group;
    enum address_kind via; /* which entry form matched */
    int64_t created;
    char bounce_type[8];
    char entry[ADDRESS_MAX + 1]; /* the entry that matched, as shown */
};

struct store_hits {
    size_t n, cap;
    struct store_match *m;
    uint32_t default_group; /* the tenant's default group, 0 if none */
};

struct store_group {
    uint32_t id;
    int is_default;
    char name[STORE_GROUP_NAME_MAX * 4 + 1]; /* UTF-8: 100 characters */
    char description[STORE_GROUP_DESC_MAX * 4 + 1];
    long long count; /* suppressions in it */
};

struct store_query {
    long long offset;
    long long limit;    /* 0: no limit */
    int64_t start_time; /* inclusive; 0: none */
    int64_t end_time;   /* inclusive; 0: none */
    const char *email;  /* exact entry, or NULL */
};

/* Callbacks return 0 to go on, non-zero to stop. */
typedef int (*store_record_fn)(const struct store_record *rec, void *ctx);
typedef int (*store_group_fn)(const struct store_group *grp, void *ctx);

/* store_open - open the stores in dir; NULL with why filled on failure */
struct store *store_open(const char *dir, int mode, struct buf *why);
void store_close(struct store *st);

/* store_set_batch - records per transaction in bulk operations */
void store_set_batch(struct store *st, size_t batch);

/*
 * store_set_interrupt - once *flag is non-zero (a signal handler sets it),
 * a bulk operation stops before its next batch and store_bulk_end undoes it,
 * as after any failure.  Single changes are not affected.
 */
void store_set_interrupt(struct store *st, volatile sig_atomic_t *flag);

/* store_list_name - "bounces", "spam_reports", "unsubscribes", "group", "allow" */
const char *store_list_name(enum store_list list);

/*
 * Explicit transactions, for a caller making several changes that belong
 * together.  Single changes outside one make their own.  Keep them short: the
 * exclusive lock is held from begin to commit.  If a change inside one fails,
 * store_commit refuses and rolls everything back.
 */
int store_begin(struct store *st, struct buf *why);
int store_commit(struct store *st, struct buf *why);
void store_abort(struct store *st);

/*
 * Bulk operations: between store_bulk_begin and store_bulk_end every entry
 * touched is remembered; store_bulk_end(st, 0) undoes them all, and so does
 * store_bulk_end(st, 1) if a change failed.  store_add and store_remove
 * inside a bulk commit by themselves every batch.  The calling thread is the
 * store's writer from begin to end.
 */
void store_bulk_begin(struct store *st);
int store_bulk_end(struct store *st, int keep, struct buf *why);

/* store_add - put an entry on a list (group: the group id, for STORE_GROUP) */
int store_add(struct store *st, const char *tenant, enum store_list list, uint32_t group,
              const char *entry, const struct store_fields *f, enum store_add_result *res,
              struct buf *why);

/* store_remove - take an entry off a list; 1 removed, 0 was not there, -1 */
int store_remove(struct store *st, const char *tenant, enum store_list list,
                 uint32_t group, const char *entry, struct buf *why);

/*
 * store_soft_bounce - note one soft bounce of an address (an address, not a
 * domain or digest) at time now: *count gets how many it has had within
 * window seconds before now, this one included (at most STORE_SOFT_MAX are
 * kept).  A non-zero tag names the bounce (a hash of the report's
 * Message-ID): one already noted with that tag is not counted again, so a
 * report read twice counts once.  The history is kept beside the entry (S
 * tenant NUL key, never listed) and forgotten when the address's bounce is
 * removed; store_clear leaves the histories, which age out by themselves.
 * The caller puts the address on the bounce list when the count says so
 * (lib/feedback).  0, or -1 with why filled.
 */
#define STORE_SOFT_MAX 32
int store_soft_bounce(struct store *st, const char *tenant, const char *address,
                      int64_t now, int64_t window, uint32_t tag, int *count,
                      struct buf *why);

/* store_clear - remove every entry of a list; returns the count or -1 */
long long store_clear(struct store *st, const char *tenant, enum store_list list,
                      uint32_t group, struct buf *why);

/* store_get - one entry of a list: 1 and fn called, 0 not there, -1 */
int store_get(struct store *st, const char *tenant, enum store_list list, uint32_t group,
              const char *entry, store_record_fn fn, void *ctx, struct buf *why);

/* store_list - a list, newest first, filtered by q; total gets the match count */
int store_list(struct store *st, const char *tenant, enum store_list list, uint32_t group,
               const struct store_query *q, store_record_fn fn, void *ctx,
               long long *total, struct buf *why);

/* store_count - number of entries on a list, or -1 */
long long store_count(struct store *st, const char *tenant, enum store_list list,
                      uint32_t group, struct buf *why);

/*
 * store_lookup - every list (and group: one id, STORE_NO_GROUP or
 * STORE_ALL_GROUPS) on which a normalised address is found, through which
 * entry; the allow list included.  Also reports the default group.
 */
void store_hits_init(struct store_hits *hits);
void store_hits_free(struct store_hits *hits);
int store_lookup(struct store *st, const char *tenant, const char *address,
                 uint32_t group, struct store_hits *hits, struct buf *why);

/* Groups. */
int store_group_create(struct store *st, const char *tenant, const char *name,
                       const char *description, int is_default, uint32_t *id,
                       uint32_t *old_default, struct buf *why);
/* store_group_update - NULL name/description: unchanged; is_default -1: unchanged */
int store_group_update(struct store *st, const char *tenant, uint32_t id,
                       const char *name, const char *description, int is_default,
                       uint32_t *old_default, struct buf *why);
/* store_group_get - 1 found, 0 not, -1 */
/* store_default_group - the tenant's default group (0: none); 0, or -1 with why */
int store_default_group(struct store *st, const char *tenant, uint32_t *id,
                        struct buf *why);
int store_group_get(struct store *st, const char *tenant, uint32_t id,
                    struct store_group *grp, struct buf *why);
int store_group_list(struct store *st, const char *tenant, store_group_fn fn, void *ctx,
                     struct buf *why);
/* store_group_delete - the group and its suppressions; 1, 0 not found, -1 */
int store_group_delete(struct store *st, const char *tenant, uint32_t id,
                       long long *suppressions, struct buf *why);

/*
 * DKIM keys: global (a domain's keys sign for every tenant), by domain (as
 * address.h normalises it) and selector.  The store records where the
 * private key is, never the key itself.
 */
struct store_dkim {
    const char *domain, *selector;
    const char *algorithm; /* "rsa-sha256", "ed25519-sha256" */
    int bits;
    const char *path; /* of the PEM private key */
    int64_t created;  /* 0 on put: now */
};
typedef int (*store_dkim_fn)(const struct store_dkim *key, void *ctx);
/* store_dkim_put - add or replace (*replaced set to 1 then); 0 or -1 */
int store_dkim_put(struct store *st, const struct store_dkim *key, int *replaced,
                   struct buf *why);
/* store_dkim_delete - 1 deleted, 0 not there, -1 */
int store_dkim_delete(struct store *st, const char *domain, const char *selector,
                      struct buf *why);
/*
 * store_dkim_list - the keys of every domain (domain NULL), of one, or one
 * key (selector too), in domain and selector order; the number, or -1.
 */
int store_dkim_list(struct store *st, const char *domain, const char *selector,
                    store_dkim_fn fn, void *ctx, struct buf *why);

/* store_generation - the current generation: it moves at every commit (caches of
 * what the store says hold while it does not) */
uint64_t store_generation(struct store *st);

/* store_max_lock_wait_us - the longest this handle waited for the write lock */
uint64_t store_max_lock_wait_us(struct store *st);

#endif
