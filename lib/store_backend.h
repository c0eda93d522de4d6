/*
 * store_backend - the table of functions a storage engine gives store.c.
 *
 * A backend holds two databases in one directory: "entries", a key/value map
 * (the truth), and "index", an ordered set of keys (derived, for listings).
 * It knows nothing of tenants, lists or locking: store.c decides what the
 * bytes mean and when the files may be touched.  Adding an engine is adding
 * a file with one of these tables.
 */
#ifndef SG_STORE_BACKEND_H
#define SG_STORE_BACKEND_H

#include <stddef.h>

#include "buf.h"

struct store_db;

typedef int (*store_key_fn)(const char *key, size_t klen, void *ctx);
typedef int (*store_kv_fn)(const char *key, size_t klen, const char *val, size_t vlen,
                           void *ctx);

struct store_backend {
    const char *name;
    /* open both databases; writer mode may create them */
    struct store_db *(*open)(const char *dir, int writer, int create, struct buf *why);
    int (*close)(struct store_db *db, struct buf *why);
    /*
     * One transaction over both; the entries are committed first.  With
     * "durable", a commit returns only once the data is on disk; without,
     * it is atomic (a killed process rolls it back) but may still be in the
     * page cache: bulk operations sync once at their end with sync().
     */
    int (*begin)(struct store_db *db, struct buf *why);
    int (*commit_entries)(struct store_db *db, int durable, struct buf *why);
    int (*commit_index)(struct store_db *db, int durable, struct buf *why);
    void (*abort)(struct store_db *db);
    int (*sync)(struct store_db *db, struct buf *why);
    /* entries: get 1 found / 0 absent / -1 error; del 1 removed / 0 absent */
    int (*get)(struct store_db *db, const void *key, size_t klen, struct buf *val,
               struct buf *why);
    int (*put)(struct store_db *db, const void *key, size_t klen, const void *val,
               size_t vlen, struct buf *why);
    int (*del)(struct store_db *db, const void *key, size_t klen, struct buf *why);
    /* iterate every entry, for rebuilding the index */
    int (*iterate)(struct store_db *db, store_kv_fn fn, void *ctx, struct buf *why);
    /* index */
    int (*ix_put)(struct store_db *db, const void *key, size_t klen, struct buf *why);
    int (*ix_del)(struct store_db *db, const void *key, size_t klen, struct buf *why);
    /* keys with this prefix, from the first >= from (NULL: the prefix), in order */
    int (*ix_scan)(struct store_db *db, const void *prefix, size_t plen, const void *from,
                   size_t flen, store_key_fn fn, void *ctx, struct buf *why);
    int (*ix_clear)(struct store_db *db, struct buf *why);
    /* bytes on disk of both databases */
    long long (*disk_size)(struct store_db *db);
};

extern const struct store_backend store_backend_tc;

#endif
