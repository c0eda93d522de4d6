/*
 * spool - the queue directory shared by sgrelay (the sendmail command and
 * its queue runner) and sgmilter (per-recipient copies).
 *
 * Layout under spool.path:
 *   tmp/ID     an entry being written; never read by a runner
 *   queue/ID   an accepted entry: envelope, empty line, message (CRLF)
 *   defer/ID   the last temporary failure per recipient (diagnostics only)
 *
 * Acceptance (spool_submit) is durable before it returns: the entry is
 * written to tmp/ with O_EXCL, fsync'ed, closed (and close checked), renamed
 * into queue/, and queue/ is fsync'ed.  A failure at any step removes the
 * temporary file: nothing half-written ever enters queue/.
 *
 * The envelope is text, one record per line.  The mutable records have a
 * fixed width so that they are overwritten in place with one pwrite(2) of at
 * most 32 bytes, which never spans two sectors' worth of state:
 *   "S ATTEMPTS NEXT_TRY"  the attempt count and the next try (unix time);
 *   "R STATE ..."          per recipient, STATE one byte: '-' pending,
 *                          'D' delivered, 'F' failed (bounce queued),
 *                          'X' dropped by policy.
 * A recipient's state is written and fdatasync'ed before the entry's next
 * step depends on it, so a crash at any instant leaves each recipient either
 * pending (it will be tried again) or finished.
 *
 * The crash window: a recipient the next hop accepted is marked (or the
 * entry removed) right after the 250 reply to the message's data, before
 * the next message of the connection is sent.  A crash between that reply
 * and the mark reaching the disk delivers that recipient again on the next
 * run: at least once always, exactly once outside that window, so a crash
 * duplicates at most the messages in flight (one per connection).
 *
 * One runner per entry: spool_entry_open takes an exclusive flock(2) on the
 * entry, without waiting; a second runner is told the entry is busy.  The
 * submitter may keep that lock across the rename (SPOOL_KEEP_LOCKED) to
 * deliver the entry itself in the background.
 *
 * Ownership: entries are created mode 0660 in directories the submitting
 * user cannot enter (see sgrelay(8)); the creating uid is recorded, and
 * listing by an ordinary user shows only that user's entries.
 */
#ifndef SG_SPOOL_H
#define SG_SPOOL_H

#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

#define SPOOL_ID_MAX 32

enum spool_state {
    SPOOL_PENDING = '-',
    SPOOL_DELIVERED = 'D',
    SPOOL_FAILED = 'F',
    SPOOL_DROPPED = 'X',
};

/* DSN NOTIFY bits (RFC 3461); 0 means not given */
#define SPOOL_NOTIFY_NEVER 1
#define SPOOL_NOTIFY_SUCCESS 2
#define SPOOL_NOTIFY_FAILURE 4
#define SPOOL_NOTIFY_DELAY 8

/*
 * spool_notify_parse - a DSN NOTIFY value of len bytes (SMTP's NOTIFY= or
 * sendmail's -N): NEVER, or a comma-separated list of SUCCESS, FAILURE and
 * DELAY, case ignored; its SPOOL_NOTIFY_* bits, or -1 when it is not one.
 */
int spool_notify_parse(const char *v, size_t len);

/* DSN RET (RFC 3461) */
enum spool_ret { SPOOL_RET_UNSET, SPOOL_RET_FULL, SPOOL_RET_HDRS };

struct spool_rcpt {
    char *addr;   /* envelope recipient */
    char *orcpt;  /* ORCPT as given ("rfc822;a@b"), or NULL */
    int notify;   /* SPOOL_NOTIFY_* bits, 0: not given */
    int state;    /* enum spool_state */
    off_t offset; /* where the state byte lives in the entry */
};

struct spool_env {
    char *sender;   /* envelope sender; "" is the null sender <> */
    char *tenant;   /* "default" when unknown */
    char *envid;    /* DSN ENVID, or NULL */
    char *origin;   /* who queued it: "sendmail", "smtp", "milter", "bounce" */
    char *queue_id; /* the MTA's queue id, for logs; NULL */
    int ret;        /* enum spool_ret */
    int body_8bit;  /* BODY=8BITMIME */
    int64_t created;
    uid_t uid;        /* the submitting user */
    int attempts;     /* delivery attempts made */
    int64_t next_try; /* not before this unix time */
    int policy_done;  /* the pipeline's decisions are recorded */
    struct spool_rcpt *rcpts;
    size_t nrcpts;
    size_t cap;
};

struct spool;

/* One opened, locked entry. */
struct spool_entry {
    struct spool *sp;
    char id[SPOOL_ID_MAX];
    int fd;
    off_t state_offset; /* of the "S" record's fields */
    struct spool_env env;
    char *data; /* the whole file */
    size_t len;
    const char *msg; /* the message within data */
    size_t msg_len;
};

/*
 * spool_open - a spool directory; with create, make its subdirectories (mode
 * 02770) when missing.  NULL with why filled.
 */
struct spool *spool_open(const char *path, int create, struct buf *why);
void spool_close(struct spool *sp);
const char *spool_path(const struct spool *sp);

/* spool_env_init / spool_env_release - an empty envelope, and its memory */
void spool_env_init(struct spool_env *env);
void spool_env_release(struct spool_env *env);
/* spool_env_add - add a recipient (copied); returns it */
struct spool_rcpt *spool_env_add(struct spool_env *env, const char *addr,
                                 const char *orcpt, int notify);

#define SPOOL_KEEP_LOCKED 1 /* spool_submit: return the entry opened and locked */

/*
 * spool_submit - write env and the message (CRLF; len bytes) durably into
 * the queue; id receives the new entry's name.  With SPOOL_KEEP_LOCKED and
 * entry not NULL, the entry is returned open and locked as by
 * spool_entry_open.  0, or -1 with why filled and nothing left behind; errno
 * then tells a full disk (ENOSPC, EDQUOT) from other failures.
 */
int spool_submit(struct spool *sp, const struct spool_env *env, const char *msg,
                 size_t len, int flags, char id[SPOOL_ID_MAX], struct spool_entry **entry,
                 struct buf *why);

/*
 * The kick: a FIFO "kick" in the spool directory on which a queue daemon
 * (sgrelay -bd) listens.  A writer that has just queued an entry writes its
 * id and a newline there, and the daemon delivers it at once instead of at
 * its next queue run.
 *
 * spool_kick - tell a listening daemon that entry id waits.  Best effort:
 * when no daemon listens nothing happens and nothing fails (the next queue
 * run delivers the entry).
 */
void spool_kick(struct spool *sp, const char *id);

/*
 * spool_kick_listen - the daemon's end: the FIFO made when missing (mode
 * 0660), opened for reading without blocking (and held open for writing too,
 * so that it never reads an end of file).  The descriptor, or -1 with why.
 */
int spool_kick_listen(struct spool *sp, struct buf *why);

/*
 * Once-only entries: a writer that may be asked twice for the same thing
 * (sgmilter, when the MTA retries a message whose answer was lost) names
 * the entry after a key of its content.  Its name is SPOOL_ONCE_PREFIX and
 * the key in hex; when the relay is done with it, spool_entry_remove moves
 * it (emptied) into SPOOL_DONE_DIR, where spool_expire_done drops it after a
 * while.  Names starting so sort after every other: a queue run takes them
 * last (sgrelay -bd takes them at once, through the kick).
 */
#define SPOOL_ONCE_PREFIX "H"
#define SPOOL_DONE_DIR "done"
/* how long: longer than an MTA's client retries a message (Postfix: 5 days) */
#define SPOOL_DONE_KEEP (7 * 86400)

/*
 * spool_submit_once - spool_submit (no SPOOL_KEEP_LOCKED) under the name
 * made from key: 0 written, 1 when an entry of that name is queued already
 * or was done within the expiry (nothing written; id names it), -1 with why.
 */
int spool_submit_once(struct spool *sp, const struct spool_env *env, const char *msg,
                      size_t len, const unsigned char *key, size_t key_len,
                      char id[SPOOL_ID_MAX], struct buf *why);

/* spool_expire_done - forget once-only entries done more than max_age seconds ago */
void spool_expire_done(struct spool *sp, int64_t max_age);

/*
 * spool_entry_open - open and lock one entry: 0 with *entry, 1 when another
 * process holds it (busy), 2 when it is gone, -1 with why filled when it
 * cannot be read or parsed.
 */
int spool_entry_open(struct spool *sp, const char *id, struct spool_entry **entry,
                     struct buf *why);
/* spool_entry_close - unlock and forget (the entry stays queued) */
void spool_entry_close(struct spool_entry *e);

/* spool_entry_mark - set recipient i's state in place (not yet synced) */
int spool_entry_mark(struct spool_entry *e, size_t i, enum spool_state state,
                     struct buf *why);
/* spool_entry_schedule - record an attempt made and the next try, in place */
int spool_entry_schedule(struct spool_entry *e, int attempts, int64_t next_try,
                         struct buf *why);
/* spool_entry_policy_done - record that the pipeline's decisions are made */
int spool_entry_policy_done(struct spool_entry *e, struct buf *why);
/* spool_entry_sync - make the marks durable (fdatasync) */
int spool_entry_sync(struct spool_entry *e, struct buf *why);
/* spool_entry_pending - recipients still pending */
size_t spool_entry_pending(const struct spool_entry *e);
/*
 * spool_entry_remove - remove a finished entry (and its deferral notes) and
 * close it.  The removal is not fsync'ed: see the crash window above.
 */
int spool_entry_remove(struct spool_entry *e, struct buf *why);

/*
 * spool_defer_note / spool_defer_reason - the last temporary failure of
 * recipient i, kept for the bounce sent when the entry expires.
 */
void spool_defer_note(struct spool_entry *e, size_t i, const char *reason);
void spool_defer_reason(struct spool *sp, const char *id, size_t i, struct buf *out);

/*
 * spool_scan - call fn for every entry name in the queue (unlocked, in no
 * particular order); fn returns non-zero to stop.  0, or -1 with why.
 */
int spool_scan(struct spool *sp, int (*fn)(const char *id, void *ctx), void *ctx,
               struct buf *why);

/*
 * spool_read_env - parse an entry without locking it (for listings); 0, 2
 * when gone, -1 with why.  env must be released; *size gets the message size.
 */
int spool_read_env(struct spool *sp, const char *id, struct spool_env *env, size_t *size,
                   struct buf *why);

/* spool_retry_delay - the wait after attempt n (1, 2, ...): min doubling to max */
int64_t spool_retry_delay(int attempts, int64_t min, int64_t max);

#endif
