/*
 * pipeline - DESIGN.md's steps 3 to 6 for one message, as the relay and the
 * milter both apply them: the options of its X-SMTPAPI header merged over
 * the defaults, the decision for each recipient, and each recipient's copy
 * (X-SMTPAPI removed, unsubscribe headers added, DKIM-signed last).
 *
 * The adapters (relay/, milter/) own the envelope and the events' wording;
 * everything that decides what a message becomes is here, so that mail sent
 * through either door leaves the same.
 *
 * A copy changes only what it must: a message with no X-SMTPAPI, no group,
 * no subscription tracking and no signing key for its From domain leaves
 * byte for byte as it came.  Missing keys never stop mail (the message goes
 * unsigned, logged once per domain and process); a missing token key does,
 * for messages that need an unsubscribe link: a bulk message without one is
 * what Gmail and Yahoo refuse, so those recipients are deferred with the
 * reason and the administrator sees it in the queue.
 *
 * Messages are in canonical form (CRLF), as the spool holds them.  Threads
 * may share a pipeline (the store and the keyring lock themselves).
 */
#ifndef SG_PIPELINE_H
#define SG_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "buf.h"
#include "conf.h"
#include "policy.h"
#include "smtpapi.h"
#include "store.h"

#define PIPELINE_SMTPAPI_FIELD "X-SMTPAPI"

struct pipeline;

/*
 * pipeline_new - what a process needs to run the pipeline: the store (open,
 * kept by the caller, for decisions and DKIM keys), the token keys
 * (secrets.token_key_file), the signing settings, and the unsubscribe URLs
 * (tracker.url, unsubscribe.mailto; when empty, https://DOMAIN and
 * unsubscribe@DOMAIN).  A token key file that cannot be read is not an error
 * here: it is reported by each copy that needs a token.  NULL with why filled
 * when a setting is wrong.
 */
struct pipeline *pipeline_new(const struct conf *conf, struct store *st,
                              const char *domain, struct buf *why);
void pipeline_free(struct pipeline *p);

/*
 * pipeline_options - the message's options: its X-SMTPAPI field (if any)
 * parsed (within smtpapi.max_size) and merged over the defaults into opts
 * (smtpapi_init'ed by the caller; release with smtpapi_free).  0, or -1 with why filled
 * with a reason fit for an SMTP reply (invalid JSON, two X-SMTPAPI fields, ...).
 */
int pipeline_options(const struct conf *conf, const char *msg, size_t len,
                     struct smtpapi_opts *opts, struct buf *why);

/*
 * pipeline_options_field - the same from one X-SMTPAPI field's value (as it
 * stood, folding included), for callers that see fields one at a time (the
 * milter); they refuse a second field themselves.
 */
int pipeline_options_field(const struct conf *conf, const char *value, size_t len,
                           struct smtpapi_opts *opts, struct buf *why);

/*
 * pipeline_tenant_options - the tenant's configured tracking filters
 * (tracking.* in sendguard.conf, the tenant's own or the top level's, read
 * by pipeline_new) under opts: every filter setting opts leaves unset takes
 * the tenant's value.  Call it once the tenant is known, after
 * pipeline_options.
 */
void pipeline_tenant_options(const struct pipeline *p, const char *tenant,
                             struct smtpapi_opts *opts);

/* The decision for one recipient. */
struct pipeline_decision {
    enum policy_action action;
    enum policy_reason reason; /* why dropped */
    uint32_t group;            /* the group the message counts under, 0 none */
    int allowed, bypassed;     /* as policy_decide says */
    int own;                   /* one of sendguard's feedback addresses (LOCAL+TOKEN@ of
                                * unsubscribe.mailto or a tenant's return path): mail to it is
                                * feedback coming in, delivered, never looked up or recorded */
};

/*
 * pipeline_decide - deliver or drop one recipient (any address form: it is
 * normalised here).  0 with d filled, or -1 with why filled: the store could
 * not be read, or the address is not one (then nothing can be decided, and
 * the caller must not deliver as if it had been).
 */
int pipeline_decide(struct pipeline *p, const char *tenant,
                    const struct smtpapi_opts *opts, const char *rcpt,
                    struct pipeline_decision *d, struct buf *why);

/* One recipient's copy: whose, of which message, under which group. */
struct pipeline_copy {
    const char *tenant;
    const char *message; /* the message's id in events and tokens */
    const char *rcpt;    /* the recipient, as in the envelope */
    uint32_t group;      /* from pipeline_decide */
    const struct smtpapi_opts *opts;
};

/*
 * pipeline_personalise - the copy of msg for c->rcpt into out (emptied
 * first): X-SMTPAPI removed; List-Unsubscribe (an https and a mailto URI
 * carrying the recipient's token) and List-Unsubscribe-Post added when the
 * message has a group or subscription tracking, unless it has its own and
 * unsubscribe.keep_existing says to keep it; its text parts rewritten by
 * its tracking filters (lib/track: links through tracker.url's /c/, the
 * pixel /o/, footers with /u/, the ASM tags; every URL a token naming
 * tenant, message, recipient and group); then DKIM signatures of its From
 * domain's keys prepended, over the rewritten message.  0, or -1 with why filled (the
 * copy cannot be made now: no token key, a store error); *signed_by (if not NULL) gets
 * how many signatures were added.
 */
int pipeline_personalise(struct pipeline *p, const struct pipeline_copy *c,
                         const char *msg, size_t len, struct buf *out, int *signed_by,
                         struct buf *why);

/* What a copy changes, as a milter applies it to the MTA's message. */
struct pipeline_change {
    int drop_own;     /* remove the application's List-Unsubscribe(-Post) */
    struct buf added; /* fields to add at the end of the header, each with CRLF */
    struct buf sigs;  /* DKIM-Signature fields to insert first, each with CRLF */
    int signed_by;
    struct buf body; /* the new body (tracking rewrote it), when body_changed */
    int body_changed;
};

/*
 * pipeline_changes - what pipeline_personalise would do to msg for c, as
 * separate changes (ch's bufs initialised by the caller): the message with
 * X-SMTPAPI removed, the application's fields dropped when drop_own, added
 * appended to the header, the body replaced by body when body_changed, and
 * sigs put first is the personalised copy.  0,
 * or -1 with why filled.
 */
int pipeline_changes(struct pipeline *p, const struct pipeline_copy *c, const char *msg,
                     size_t len, struct pipeline_change *ch, struct buf *why);

/*
 * pipeline_may_change - could a message from from_addr (the From address)
 * of this tenant without X-SMTPAPI be changed: does its domain have a DKIM
 * key, or the tenant a default group?  1 also when it cannot tell; 0 means
 * the milter need not see the body.
 */
int pipeline_may_change(struct pipeline *p, const char *tenant, const char *from_addr);

/*
 * pipeline_per_recipient - do recipients of this message get different
 * copies (their own unsubscribe fields, or tracked URLs)?  Signing alone
 * does not make them differ.
 */
int pipeline_per_recipient(const struct pipeline *p, const struct pipeline_copy *c,
                           const char *msg, size_t len);

/*
 * The marker of a copy sendguard made (the relay's copies, each for one
 * recipient): a field "X-Sendguard-Copy: t=UNIXTIME; m=KID.MAC" put first in
 * the header, after signing (no signature covers it), where MAC is token_mac
 * over the time and the recipient (its comparison key, address.h).  A copy
 * passing sgmilter again (a next hop through the same MTA) is recognised by
 * it and left alone; a marker that does not verify, names another
 * recipient or is older than PIPELINE_MARK_MAX_AGE seconds counts for
 * nothing (and the milter removes it).
 */
#define PIPELINE_MARK_FIELD "X-Sendguard-Copy"
#define PIPELINE_MARK_MAX_AGE 3600

/*
 * pipeline_mark - the marker field of a copy for rcpt made at now, "Name:
 * value" CRLF appended to out.  0, or -1 with why filled (no token key, an
 * address that is not one).
 */
int pipeline_mark(struct pipeline *p, const char *rcpt, int64_t now, struct buf *out,
                  struct buf *why);

/*
 * pipeline_mark_check - is value (a marker field's value, as it stood) the
 * marker of a copy for rcpt made within PIPELINE_MARK_MAX_AGE of now: 1 or 0.
 */
int pipeline_mark_check(struct pipeline *p, const char *rcpt, const char *value,
                        size_t len, int64_t now);

/*
 * A token's data (lib/token) is the url part (a click's original link;
 * empty for the other purposes), then, when the message has any of it, a
 * NUL and what sgtrackd needs of the message, so that it keeps no state
 * per message: the fields its events carry, as a JSON object
 * ({"category": [...], "user_id": "42"}: the categories and the
 * unique_args that sendguard's own event fields leave free, the unique_args
 * left out when the object would be over PIPELINE_META_MAX bytes, the
 * message's processed event having them), and, when the message has
 * asm_groups_to_display, a NUL and their ids ("3,5").  The mailto
 * unsubscribe token carries none of it.
 */
#define PIPELINE_META_MAX 2000

struct pipeline_meta {
    const char *url; /* the url part, url_len bytes (not NUL-terminated) */
    size_t url_len;
    const char *fields; /* the events' fields: a JSON object's text, or fields_len 0 */
    size_t fields_len;
    const char *groups; /* asm_groups_to_display, "3,5", or groups_len 0 */
    size_t groups_len;
};

/*
 * pipeline_meta_split - a token's data taken apart into m (pointing into
 * data, nothing allocated); 0, or -1 with why when it is not what
 * pipeline_personalise writes
 */
int pipeline_meta_split(const unsigned char *data, size_t len, struct pipeline_meta *m,
                        struct buf *why);

/* pipeline_meta_groups - the groups to display into ids (at most max); how many */
size_t pipeline_meta_groups(const struct pipeline_meta *m, uint32_t *ids, size_t max);

/*
 * pipeline_return_path - the envelope sender a copy of the tenant's message
 * goes out with when its feedback.return_path is set: LOCAL+TOKEN@DOMAIN,
 * the token (purpose return-path) naming tenant, message and the recipient
 * (rcpt NULL: none, for a copy to several), so that a bounce or complaint
 * coming back is matched to them (lib/feedback).  The token carries nothing
 * else: it must stay short in an address (see token.h).  1 with out filled,
 * 0 when the tenant has no return path (out untouched), -1 with why filled
 * (no token key, rcpt not an address).
 */
int pipeline_return_path(struct pipeline *p, const char *tenant, const char *message,
                         const char *rcpt, struct buf *out, struct buf *why);

/*
 * pipeline_has_return_path - has this tenant a return path (its mail gets a
 * new envelope sender)?  tenant NULL: has any tenant (a milter asks to
 * change senders)?
 */
int pipeline_has_return_path(const struct pipeline *p, const char *tenant);

/*
 * pipeline_event - what an event about this message carries besides the
 * recipient: asm_group_id (when group is not 0), category and unique_args
 * (SendGrid's event fields), added to ev.
 */
void pipeline_event(const struct smtpapi_opts *opts, uint32_t group, json_t *ev);

#endif
