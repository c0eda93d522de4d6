/*
 * event - the event log: what happened to each message and recipient.
 *
 * An append-only log under STORE/events/, one file per UTC day
 * (YYYY-MM-DD.jsonl), one JSON object per line.  Every process appends
 * with O_APPEND and one write(2) per record, so concurrent writers never
 * interleave or lose records (Linux holds the inode lock across an
 * appending write to a regular file).  A line that does not parse (a write
 * cut short by a full disk) is skipped by readers and counted.
 *
 * A record always has "timestamp" (unix seconds), "event", "email",
 * "tenant" and "sg_event_id"; anything else (reason, status, type,
 * asm_group_id, category, unique_args, ...) is carried as given.
 */
#ifndef SG_EVENT_H
#define SG_EVENT_H

#include <stdint.h>

#include <jansson.h>

#include "buf.h"

#define EVENT_LINE_MAX 65536

struct event_query {
    int64_t since;      /* inclusive; 0: from the first day */
    int64_t until;      /* inclusive; 0: up to now */
    const char *type;   /* NULL: every type */
    const char *email;  /* normalised address, NULL: every address */
    const char *tenant; /* NULL: every tenant */
    long long limit;    /* 0: no limit */
};

/* Called newest first; return non-zero to stop. */
typedef int (*event_fn)(json_t *ev, void *ctx);

/*
 * event_record - append one event.  ev must hold "event" and "email"; the
 * timestamp (now), tenant ("default") and a fresh sg_event_id are added when
 * missing.  0, or -1 with why filled; never blocks on another writer.
 */
int event_record(const char *store_dir, json_t *ev, struct buf *why);

/* event_query - events matching q, newest first; skipped counts bad lines */
int event_query(const char *store_dir, const struct event_query *q, event_fn fn,
                void *ctx, long long *skipped, struct buf *why);

#endif
