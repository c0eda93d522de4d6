/*
 * feedback - what comes back after mail is sent, applied to the tenant's
 * lists: bounces, delays, complaints and unsubscribe mail.  One code path
 * for the relay's own permanent failures (feedback_bounce) and for every
 * message sgadmin ingest reads (feedback_ingest).
 *
 * BOUNCES (feedback_bounce), by the tenant's bounces.* settings:
 *   hard   with suppress_hard, on the bounce list at once as "hard";
 *   soft   counted (store_soft_bounce); soft_limit of them within
 *          soft_window put it on the list as "soft";
 *   block  on the list as "block" (listed and shown by sgadmin lookup;
 *          lib/policy drops it only with suppress_block).
 * A list entry is never lowered: an address listed "hard" stays "hard"
 * whatever bounces later, and "soft" is not turned into "block".  Every
 * bounce is a "bounce" event (type "bounce", or "blocked" for a block;
 * bounce_type, status, reason, and whether it suppressed), whether or not
 * it suppressed.
 *
 * WHOM A REPORT IS ABOUT (feedback_ingest).  Tokens are trusted only when
 * they decrypt: the envelope recipient's ("bounces+TOKEN@", or
 * "unsubscribe+TOKEN@"; without --recipient, Delivered-To, X-Original-To
 * and To stand for it), then those in the returned original
 * (List-Unsubscribe's https and mailto URIs, Return-Path).  A token that names a
 * recipient decides the tenant and the address: a report about another address is not
 * taken from it (one recipient's token cannot suppress others).  Without such a token,
 * each address the report names counts only if the tenant sent it mail within
 * feedback.match_window (a "processed" or "delivered" event); the tenant
 * is then the token's, else the caller's, else the one conf_tenant_for
 * finds for the original's sender.  What cannot be matched is recorded as
 * an "unmatched" event, and so is what is not feedback (an auto-reply,
 * a human's reply, a report with no failed recipient).
 *
 * COMPLAINTS.  An ARF report of type abuse or fraud puts the recipient on
 * the spam-report list with the feedback loop (the report's Reporting-MTA,
 * else its sender's domain) as source, and records a "spamreport" event;
 * other types (not-spam, virus, other) are recorded as unmatched.
 *
 * UNSUBSCRIBE MAIL.  A message that is not a report, to an address whose
 * token is an unsubscribe token, unsubscribes the token's recipient from
 * the token's group, or from everything when it names none, whatever the
 * message says ("unsubscribe" or "group_unsubscribe" event).  An
 * auto-reply to that address unsubscribes nobody.
 *
 * Nothing here answers, forwards or bounces what it reads.  Errors: -1
 * only when the store or the event log cannot be written (the caller
 * retries later: sgadmin ingest exits EX_TEMPFAIL); every message that can
 * be read at all gets 0.
 */
#ifndef SG_FEEDBACK_H
#define SG_FEEDBACK_H

#include <stdint.h>

#include <jansson.h>

#include "bounce.h"
#include "buf.h"
#include "conf.h"
#include "store.h"
#include "token.h"

struct feedback {
    const struct conf *conf;
    struct store *store;     /* opened for writing */
    const char *store_dir;   /* of the event log */
    struct token_keys *keys; /* the token keys, or NULL: see key_file */
    /*
     * With keys NULL: the key file feedback_ingest loads at the first
     * message that has a token to read (and frees in feedback_release), so
     * that one without pays nothing for it; a file that does not exist
     * means no token is trusted, one that cannot be read is an error.
     * NULL: no token is trusted.
     */
    const char *key_file;
    int keys_loaded; /* (feedback_ingest's own: the file was tried) */
    int64_t now;     /* 0: time(NULL) */
};

/* feedback_release - what feedback_ingest loaded (the key file's keys) */
void feedback_release(struct feedback *fb);

/*
 * feedback_bounce - one failed recipient of a tenant's message: the list
 * and the event as above.  fields (may be NULL) are added to the event
 * (category, unique_args: pipeline_event's); tag names the report (see
 * store_soft_bounce; 0 none); source says where it came from ("relay",
 * "dsn").  *suppressed (may be NULL) gets whether the address's mail is
 * dropped from now on.  0, or -1 with why filled.
 */
int feedback_bounce(struct feedback *fb, const char *tenant, const char *address,
                    enum bounce_class cls, const char *status, const char *reason,
                    const char *message_id, const char *source, uint32_t tag,
                    json_t *fields, int *suppressed, struct buf *why);

/*
 * feedback_ingest - one message as received (any line ends, at most
 * feedback.max_size of it), delivered to envelope_rcpt (may be NULL) for
 * tenant (NULL: as above).  actions (may be NULL) gets one JSON object per
 * thing done: {"action": "bounce"|"deferred"|"spamreport"|"unsubscribe"|
 * "group_unsubscribe"|"unmatched", "email", "tenant", "kind", "format",
 * "matched" ("token", "sent" or "none"), and status, bounce_type, reason,
 * suppressed, source, asm_group_id as they apply}.  0, or -1 with why
 * filled (the store or the log could not be written).
 */
int feedback_ingest(struct feedback *fb, const char *msg, size_t len,
                    const char *envelope_rcpt, const char *tenant, json_t *actions,
                    struct buf *why);

/*
 * feedback_tokens - the token texts found in a header block: in
 * List-Unsubscribe (after "/u/" or "/p/", and after '+' in a mailto),
 * and Return-Path (after '+'); each appended to out, one per
 * line.  For tests and sgadmin.
 */
void feedback_tokens(const char *hdr, size_t hlen, struct buf *out);

#endif
