/*
 * event - the event log: what happened to each message and recipient.
 *
 * An append-only log under STORE/events/, one file per UTC day
 * (YYYY-MM-DD.jsonl), one JSON object per line.  Every process appends
 * with O_APPEND and one write(2) per record, so concurrent writers never
 * interleave or lose records (Linux holds the inode lock across an
 * appending write to a regular file).  Each thread keeps the day's file
 * open between records and appends to it while its path still names that
 * file, checked at most once a second: a file renamed, removed or replaced
 * is left within a second for the one the path now names (or an error when
 * none can be opened).  A line that does not parse (a write
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
    int oldest_first;   /* the other order (without email) */
};

/* Called newest first (or oldest, as asked); return non-zero to stop. */
typedef int (*event_fn)(json_t *ev, void *ctx);

/*
 * event_record - append one event.  ev must hold "event" and "email"; the
 * timestamp (now), tenant ("default") and a fresh sg_event_id are added when
 * missing.  0, or -1 with why filled; never blocks on another writer.
 */
int event_record(const char *store_dir, json_t *ev, struct buf *why);

/*
 * The same record built field by field, for a hot path that need not make
 * a json_t for it (sgtrackd's clicks and opens): event_line_begin writes
 * "event", "email", "tenant", the timestamp (now) and a fresh sg_event_id;
 * each further call adds one field (keys are ASCII words, written as
 * given; strings are escaped, and one that is not UTF-8 has its high bytes
 * replaced by U+FFFD); event_line_members adds members already in JSON
 * ("k":v,... without braces; len 0: none); event_line_end appends the
 * record as event_record does and releases l: 0, or -1 with why filled.
 */
struct event_line {
    struct buf text;
    int64_t ts;
    char type[32], tenant[65];   /* for the counters (stats.h) */
    size_t members, members_len; /* where event_line_members put its text */
    int unique; /* set by the caller: the recipient's first open or click of the message
                 */
};

void event_line_begin(struct event_line *l, const char *type, const char *email,
                      const char *tenant);
/* event_line_begin_at - the same for an event of time ts (a replay, a test) */
void event_line_begin_at(struct event_line *l, int64_t ts, const char *type,
                         const char *email, const char *tenant);
void event_line_str(struct event_line *l, const char *key, const char *val, size_t len);
void event_line_int(struct event_line *l, const char *key, long long v);
void event_line_members(struct event_line *l, const char *members, size_t len);
int event_line_end(const char *store_dir, struct event_line *l, struct buf *why);

/*
 * event_query - events matching q, newest first; skipped counts bad lines.
 * The day files are mapped, not copied; with q->email only the lines where
 * the address is a whole JSON string (in any case) are parsed, found by
 * their '@', so that looking one address up in a day of a million events
 * costs a scan, not a million parses.
 */
int event_query(const char *store_dir, const struct event_query *q, event_fn fn,
                void *ctx, long long *skipped, struct buf *why);

#endif
