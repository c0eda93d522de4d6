/*
 * feedback - bounces, complaints and unsubscribe mail applied (see feedback.h).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <strings.h>
#include <time.h>

#include "address.h"
#include "addrlist.h"
#include "event.h"
#include "feedback.h"
#include "header.h"
#include "msg.h"
#include "mymalloc.h"
#include "pipeline.h"
#include "policy.h"

#define TOKEN_MIN 40 /* characters: shorter text after a '+' is not a token */

static int64_t now_of(const struct feedback *fb)
{
    return fb->now ? fb->now : (int64_t)time(NULL);
}

/* Finding tokens. */

static int token_char(int c)
{
    return isalnum(c) || c == '-' || c == '_';
}

/* token_at - the run of token characters at p (within end), appended as a line if long
 * enough */
static void token_at(const char *p, const char *end, struct buf *out)
{
    const char *q = p;

    while (q < end && token_char((unsigned char)*q))
        q++;
    if (q - p >= TOKEN_MIN && q - p <= TOKEN_TEXT_MAX) {
        buf_append(out, p, (size_t)(q - p));
        buf_putc(out, '\n');
    }
}

/* plus_tokens - after each '+' in text that is followed by token characters and '@' */
static void plus_tokens(const char *v, size_t len, struct buf *out)
{
    const char *end = v + len;

    for (const char *p = v; (p = memchr(p, '+', (size_t)(end - p))) != NULL; p++) {
        const char *q = p + 1;

        while (q < end && token_char((unsigned char)*q))
            q++;
        if (q < end && *q == '@')
            token_at(p + 1, q, out);
    }
}

/* feedback_tokens - see feedback.h */
void feedback_tokens(const char *hdr, size_t hlen, struct buf *out)
{
    struct header_field f;
    size_t pos = 0;

    while (header_next(hdr, hlen, &pos, &f)) {
        const char *v = f.value, *end = f.value + f.value_len;

        if (header_is(&f, "List-Unsubscribe")) {
            for (const char *p = v; p + 3 < end; p++)
                if (p[0] == '/' && (p[1] == 'u' || p[1] == 'p') && p[2] == '/')
                    token_at(p + 3, end, out);
            plus_tokens(v, f.value_len, out);
        } else if (header_is(&f, "Return-Path")) {
            plus_tokens(v, f.value_len, out);
        }
    }
}

/* What the tokens of one message said. */
struct found {
    int have; /* t holds a token that decrypted */
    struct token t;
    const char *where; /* "envelope", "original" */
    int forged;        /* some token text did not decrypt */
};

/* try_tokens - the first of these token texts (lines) that decrypts and names a recipient
 */
static void try_tokens(const struct feedback *fb, const char *lines, const char *where,
                       int unsubscribe_only, struct found *fd)
{
    struct buf why;

    buf_init(&why, 64);
    for (const char *p = lines; *p && !fd->have;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        struct token t;

        if (fb->keys && token_decode(fb->keys, p, n, &t, &why) == 0) {
            int ok = t.recipient && *t.recipient &&
                     (unsubscribe_only ? t.purpose == TOKEN_UNSUBSCRIBE
                                       : (t.purpose == TOKEN_UNSUBSCRIBE ||
                                          t.purpose == TOKEN_PREFERENCES ||
                                          t.purpose == TOKEN_RETURN_PATH));

            if (ok) {
                fd->t = t;
                fd->have = 1;
                fd->where = where;
            } else
                token_release(&t);
        } else
            fd->forged = 1;
        p = nl ? nl + 1 : p + n;
    }
    buf_release(&why);
}

/* need_keys - the key file loaded now, if it is to be; 0, or -1 with why */
static int need_keys(struct feedback *fb, struct buf *why)
{
    struct buf err;
    struct stat sb;

    if (fb->keys || fb->keys_loaded || fb->key_file == NULL)
        return 0;
    fb->keys_loaded = 1;
    buf_init(&err, 64);
    if ((fb->keys = token_keys_load(fb->key_file, &err)) == NULL &&
        (stat(fb->key_file, &sb) == 0 || errno != ENOENT)) {
        buf_error(why, "%s", buf_str(&err));
        buf_release(&err);
        return -1;
    }
    if (fb->keys == NULL)
        msg_warn("%s does not exist: no token is trusted", fb->key_file);
    buf_release(&err);
    return 0;
}

/* feedback_release - see feedback.h */
void feedback_release(struct feedback *fb)
{
    if (fb->keys_loaded) {
        token_keys_free(fb->keys);
        fb->keys = NULL;
        fb->keys_loaded = 0;
    }
}

/* envelope_tokens - the envelope recipient's token, or the report's own address fields'
 */
static void envelope_tokens(const char *msg, size_t hlen, const char *envelope,
                            struct buf *out)
{
    static const char *const names[] = {"Delivered-To", "X-Original-To", "To", "Cc",
                                        NULL};
    struct header_field f;

    if (envelope && *envelope) {
        plus_tokens(envelope, strlen(envelope), out);
        return;
    }
    for (size_t i = 0; names[i]; i++) {
        size_t pos = 0;

        while (header_next(msg, hlen, &pos, &f))
            if (header_is(&f, names[i]))
                plus_tokens(f.value, f.value_len, out);
    }
}

/* Recording. */

/* normalized - an address in its normal form; 0, or -1 with why */
static int normalized(const char *in, struct buf *out, struct buf *why)
{
    struct buf err;
    int rc;

    buf_init(&err, 64);
    rc = address_normalize(in, out, &err);
    if (rc < 0)
        buf_error(why, "<%s>: %s", in, buf_str(&err));
    buf_release(&err);
    return rc;
}

static int record(struct feedback *fb, json_t *ev, struct buf *why)
{
    struct buf err;
    int rc;

    buf_init(&err, 64);
    if ((rc = event_record(fb->store_dir, ev, &err)) < 0)
        buf_error(why, "cannot record the %s event: %s",
                  json_string_value(json_object_get(ev, "event")), buf_str(&err));
    buf_release(&err);
    return rc;
}

/* type_of - the bounce type of an address's bounce entry ("" none) */
static int type_of(const struct store_record *rec, void *ctx)
{
    snprintf(ctx, 8, "%s", rec->bounce_type ? rec->bounce_type : "");
    return 0;
}

/* rank - how strongly a bounce type holds an address: a later bounce never lowers it */
static int rank(const char *type)
{
    return strcmp(type, "hard") == 0 ? 3 : strcmp(type, "soft") == 0 ? 2 : *type ? 1 : 0;
}

/* feedback_bounce - see feedback.h */
int feedback_bounce(struct feedback *fb, const char *tenant, const char *address,
                    enum bounce_class cls, const char *status, const char *reason,
                    const char *message_id, const char *source, uint32_t tag,
                    json_t *fields, int *suppressed, struct buf *why)
{
    const char *type = bounce_class_name(cls);
    struct store_fields sf;
    struct buf addr;
    char old[8] = "";
    int list = 0, drops = 0, count = 0, rc = -1;
    int64_t now = now_of(fb);
    json_t *ev;

    if (suppressed)
        *suppressed = 0;
    buf_init(&addr, 64);
    if (normalized(address, &addr, why) < 0)
        goto out;
    if (store_begin(fb->store, why) < 0)
        goto out;
    if (store_get(fb->store, tenant, STORE_BOUNCES, 0, buf_str(&addr), type_of, old,
                  why) < 0)
        goto fail;
    switch (cls) {
    case BOUNCE_HARD:
        list = conf_tenant_bool(fb->conf, tenant, "bounces.suppress_hard");
        break;
    case BOUNCE_SOFT: {
        long long limit = conf_tenant_int(fb->conf, tenant, "bounces.soft_limit");

        if (store_soft_bounce(
                fb->store, tenant, buf_str(&addr), now,
                conf_tenant_duration(fb->conf, tenant, "bounces.soft_window"), tag,
                &count, why) < 0)
            goto fail;
        list = limit > 0 && count >= limit;
        break;
    }
    case BOUNCE_BLOCK:
        list = 1; /* listed and shown; it drops only with bounces.suppress_block */
        break;
    }
    if (list && rank(old) <= rank(type)) {
        memset(&sf, 0, sizeof(sf));
        sf.created = now;
        sf.reason = reason;
        sf.status = status;
        sf.bounce_type = type;
        if (store_add(fb->store, tenant, STORE_BOUNCES, 0, buf_str(&addr), &sf, NULL,
                      why) < 0)
            goto fail;
    }
    if (store_commit(fb->store, why) < 0)
        goto out;
    /* whether mail to it drops now: by the entry it has, by the tenant's rules */
    {
        const char *entry = list && rank(type) >= rank(old) ? type : old;
        unsigned mask = policy_bounce_drops(fb->conf, tenant);

        drops = strcmp(entry, "hard") == 0    ? (mask & POLICY_DROP_HARD) != 0
                : strcmp(entry, "soft") == 0  ? (mask & POLICY_DROP_SOFT) != 0
                : strcmp(entry, "block") == 0 ? (mask & POLICY_DROP_BLOCK) != 0
                                              : 0;
    }
    ev =
        json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:b}", "event", "bounce", "email",
                  buf_str(&addr), "tenant", tenant, "timestamp", (json_int_t)now, "type",
                  cls == BOUNCE_BLOCK ? "blocked" : "bounce", "bounce_type", type,
                  "status", status ? status : "", "reason", reason ? reason : "",
                  "source", source ? source : "", "suppressed", drops);
    if (message_id && *message_id)
        json_object_set_new(ev, "sg_message_id", json_string(message_id));
    if (cls == BOUNCE_SOFT)
        json_object_set_new(ev, "soft_bounces", json_integer(count));
    if (fields)
        json_object_update_missing(ev, fields);
    rc = record(fb, ev, why);
    json_decref(ev);
    if (suppressed)
        *suppressed = drops;
    goto out;
fail:
    store_abort(fb->store);
out:
    buf_release(&addr);
    return rc;
}

/* Matching a report to sent mail. */

static int sent_event(json_t *ev, void *ctx)
{
    const char *type = json_string_value(json_object_get(ev, "event"));

    if (type && (strcmp(type, "processed") == 0 || strcmp(type, "delivered") == 0)) {
        *(int *)ctx = 1;
        return 1;
    }
    return 0;
}

/* sent_to - did the tenant send mail to this (normalised) address lately? 1, 0, -1 */
static int sent_to(struct feedback *fb, const char *tenant, const char *address,
                   struct buf *why)
{
    struct event_query q;
    int found = 0;

    memset(&q, 0, sizeof(q));
    q.since = now_of(fb) - conf_duration(fb->conf, "feedback.match_window");
    q.email = address;
    q.tenant = tenant;
    if (event_query(fb->store_dir, &q, sent_event, &found, NULL, why) < 0)
        return -1;
    return found;
}

/* One message being ingested. */
struct ingest {
    struct feedback *fb;
    struct bounce_report r;
    struct found fd;
    const char *tenant; /* decided */
    char *message_id;   /* the report's Message-ID, for soft-bounce tags */
    json_t *actions;
    json_t *fields; /* the token's event fields (category, unique_args) */
};

/* action - one entry of the caller's list, with what every entry has */
static json_t *action(struct ingest *in, const char *what, const char *email,
                      const char *matched)
{
    json_t *a = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "action", what, "email",
                          email ? email : "", "tenant", in->tenant, "kind",
                          bounce_kind_name(in->r.kind), "format", in->r.format, "matched",
                          matched);

    if (in->actions)
        json_array_append(in->actions, a);
    return a;
}

/*
 * record_message - ev (taken over) recorded with what it knows of the
 * report's message: the token's message id and event fields
 */
static int record_message(struct ingest *in, json_t *ev, struct buf *why)
{
    int rc;

    if (in->fd.have && in->fd.t.message && *in->fd.t.message)
        json_object_set_new(ev, "sg_message_id", json_string(in->fd.t.message));
    if (in->fields)
        json_object_update_missing(ev, in->fields);
    rc = record(in->fb, ev, why);
    json_decref(ev);
    return rc;
}

/* unmatched - an "unmatched" event and action: nothing was changed, and why */
static int unmatched(struct ingest *in, const char *email, const char *why_text,
                     struct buf *why)
{
    json_t *a = action(in, "unmatched", email, "none");
    json_t *ev = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "event", "unmatched", "email",
                           email ? email : "", "tenant", in->tenant, "kind",
                           bounce_kind_name(in->r.kind), "format", in->r.format, "reason",
                           why_text);
    int rc;

    json_object_set_new(a, "reason", json_string(why_text));
    if (in->message_id)
        json_object_set_new(ev, "report_message_id", json_string(in->message_id));
    rc = record(in->fb, ev, why);
    json_decref(ev);
    json_decref(a);
    return rc;
}

/* fnv1a - the tag of a report: its Message-ID hashed (0 stays for "none") */
static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;

    if (s == NULL || *s == 0)
        return 0;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h ? h : 1;
}

/*
 * whom - the address a report's recipient i stands for, and how it was
 * matched: the token's recipient ("token"), the report's own address the
 * tenant sent mail to ("sent"); NULL (with *reason) if none.  1 matched,
 * 0 not, -1 error.
 */
static int whom(struct ingest *in, const char *reported, struct buf *addr,
                const char **matched, const char **reason, struct buf *why)
{
    struct buf err;
    int rc;

    buf_reset(addr);
    if (in->fd.have) {
        struct buf rep;
        int same;

        /* the token's recipient, when the report is about it (or names one alone) */
        buf_init(&rep, 64);
        buf_init(&err, 16);
        same = reported == NULL || in->r.n <= 1 ||
               (address_normalize(reported, &rep, &err) == 0 &&
                strcasecmp(buf_str(&rep), in->fd.t.recipient) == 0);
        buf_release(&rep);
        buf_release(&err);
        if (!same) {
            *reason = "the report's token names another recipient";
            return 0;
        }
        buf_puts(addr, in->fd.t.recipient);
        *matched = "token";
        return 1;
    }
    if (reported == NULL) {
        *reason = in->fd.forged ? "its token does not decrypt, and it names no recipient"
                                : "it names no recipient and carries no token";
        return 0;
    }
    buf_init(&err, 64);
    if (address_normalize(reported, addr, &err) < 0) {
        buf_release(&err);
        *reason = "the address it names is not one";
        return 0;
    }
    buf_release(&err);
    if ((rc = sent_to(in->fb, in->tenant, buf_str(addr), why)) < 0)
        return -1;
    if (rc == 0) {
        *reason = "no mail was sent to this address within feedback.match_window";
        return 0;
    }
    *matched = "sent";
    return 1;
}

/* ingest_bounce - the failed and delayed recipients of a bounce */
static int ingest_bounce(struct ingest *in, struct buf *why)
{
    struct buf addr;
    int rc = 0;

    buf_init(&addr, 64);
    for (size_t i = 0; i < in->r.n && rc == 0; i++) {
        const struct bounce_rcpt *b = &in->r.rcpt[i];
        const char *matched = "none", *reason = "";
        int m = whom(in, b->address, &addr, &matched, &reason, why);

        if (m < 0)
            rc = -1;
        else if (m == 0)
            rc = unmatched(in, b->address, reason, why);
        else if (strcmp(b->action, "delayed") == 0) {
            json_t *a = action(in, "deferred", buf_str(&addr), matched);
            json_t *ev =
                json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "event", "deferred", "email",
                          buf_str(&addr), "tenant", in->tenant, "status", b->status,
                          "response", b->reason, "source", "dsn");

            json_object_set_new(a, "status", json_string(b->status));
            json_object_set_new(a, "reason", json_string(b->reason));
            rc = record_message(in, ev, why);
            json_decref(a);
        } else {
            int sup = 0;
            json_t *a;

            rc = feedback_bounce(in->fb, in->tenant, buf_str(&addr), b->cls, b->status,
                                 b->reason, in->fd.have ? in->fd.t.message : NULL, "dsn",
                                 fnv1a(in->message_id), in->fields, &sup, why);
            if (rc == 0) {
                a = action(in, "bounce", buf_str(&addr), matched);
                json_object_set_new(a, "bounce_type",
                                    json_string(bounce_class_name(b->cls)));
                json_object_set_new(a, "status", json_string(b->status));
                json_object_set_new(a, "reason", json_string(b->reason));
                json_object_set_new(a, "suppressed", json_boolean(sup));
                json_decref(a);
            }
        }
    }
    buf_release(&addr);
    return rc;
}

/* ingest_arf - a feedback report: the token's recipient, else Original-Rcpt-To's */
static int ingest_arf(struct ingest *in, struct buf *why)
{
    struct buf addr;
    const char *type = in->r.n > 0 ? in->r.rcpt[0].action : "abuse";
    const char *source = in->r.source ? in->r.source : "";
    size_t n = in->fd.have || in->r.n == 0 ? 1 : in->r.n;
    int rc = 0;

    buf_init(&addr, 64);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *reported = in->r.n > 0 ? in->r.rcpt[i].address : NULL;
        const char *matched = "none", *reason = "";
        int m;

        if (in->fd.have)
            reported = NULL; /* the token decides: the report's address may be redacted */
        if ((m = whom(in, reported, &addr, &matched, &reason, why)) < 0)
            rc = -1;
        else if (m == 0)
            rc = unmatched(in, reported, reason, why);
        else if (strcmp(type, "abuse") != 0 && strcmp(type, "fraud") != 0) {
            struct buf text;

            buf_init(&text, 64);
            buf_setf(&text, "a feedback report of type %s is not a complaint", type);
            rc = unmatched(in, buf_str(&addr), buf_str(&text), why);
            buf_release(&text);
        } else {
            struct store_fields sf;
            json_t *a, *ev;

            memset(&sf, 0, sizeof(sf));
            sf.created = now_of(in->fb);
            sf.source = source;
            if ((rc = store_add(in->fb->store, in->tenant, STORE_SPAM_REPORTS, 0,
                                buf_str(&addr), &sf, NULL, why)) < 0)
                break;
            ev = json_pack("{s:s,s:s,s:s,s:s,s:s}", "event", "spamreport", "email",
                           buf_str(&addr), "tenant", in->tenant, "source", source,
                           "feedback_type", type);
            rc = record_message(in, ev, why);
            a = action(in, "spamreport", buf_str(&addr), matched);
            json_object_set_new(a, "source", json_string(source));
            json_object_set_new(a, "feedback_type", json_string(type));
            json_decref(a);
        }
    }
    buf_release(&addr);
    return rc;
}

/* ingest_unsubscribe - mail to an unsubscribe address with a good token */
static int ingest_unsubscribe(struct ingest *in, struct buf *why)
{
    const struct token *t = &in->fd.t;
    struct store_fields sf;
    struct store_group g;
    const char *what = t->group ? "group_unsubscribe" : "unsubscribe";
    json_t *a, *ev;
    int rc;

    if (t->group &&
        (rc = store_group_get(in->fb->store, t->tenant, t->group, &g, why)) <= 0) {
        if (rc < 0)
            return -1;
        return unmatched(in, t->recipient, "the token's group no longer exists", why);
    }
    memset(&sf, 0, sizeof(sf));
    sf.created = now_of(in->fb);
    if (store_add(in->fb->store, t->tenant, t->group ? STORE_GROUP : STORE_UNSUBSCRIBES,
                  t->group, t->recipient, &sf, NULL, why) < 0)
        return -1;
    ev = json_pack("{s:s,s:s,s:s,s:s}", "event", what, "email", t->recipient, "tenant",
                   t->tenant, "source", "mailto");
    if (t->group)
        json_object_set_new(ev, "asm_group_id", json_integer(t->group));
    if (t->message && *t->message)
        json_object_set_new(ev, "sg_message_id", json_string(t->message));
    rc = record(in->fb, ev, why);
    json_decref(ev);
    a = action(in, what, t->recipient, "token");
    json_object_set_new(a, "asm_group_id", json_integer(t->group));
    json_decref(a);
    return rc;
}

/* default_tenant - the tenant of the returned original's sender, by the configuration */
static const char *default_tenant(struct ingest *in)
{
    struct header_field f;
    struct buf v, from, sender, err;
    const char *t, *fd = NULL, *sd = NULL;

    if (in->r.original == NULL)
        return STORE_DEFAULT_TENANT;
    buf_init(&v, 64);
    buf_init(&from, 64);
    buf_init(&sender, 64);
    buf_init(&err, 16);
    if (header_find(in->r.original, in->r.original_len, "From", &f) &&
        addrlist_first(f.value, f.value_len, &from, &err) == 0 && strchr(from.data, '@'))
        fd = strrchr(from.data, '@') + 1;
    if (header_find(in->r.original, in->r.original_len, "Return-Path", &f) &&
        addrlist_first(f.value, f.value_len, &sender, &err) == 0 &&
        strchr(sender.data, '@'))
        sd = strrchr(sender.data, '@') + 1;
    t = conf_tenant_for(in->fb->conf, NULL, sd, fd);
    buf_release(&v);
    buf_release(&from);
    buf_release(&sender);
    buf_release(&err);
    return t;
}

/* feedback_ingest - see feedback.h */
int feedback_ingest(struct feedback *fb, const char *msg, size_t len,
                    const char *envelope_rcpt, const char *tenant, json_t *actions,
                    struct buf *why)
{
    struct ingest in;
    struct buf canon, lines, v;
    struct header_field f;
    size_t body, hlen;
    long long max = conf_size(fb->conf, "feedback.max_size");
    int rc = 0;

    memset(&in, 0, sizeof(in));
    in.fb = fb;
    in.actions = actions;
    bounce_report_init(&in.r);
    buf_init(&canon, len + 256);
    buf_init(&lines, 256);
    buf_init(&v, 64);
    header_canonical(msg, max > 0 && len > (size_t)max ? (size_t)max : len, &canon);
    hlen = header_split(canon.data, canon.len, &body);
    if (header_find(canon.data, hlen, "Message-ID", &f)) {
        header_value(&f, &v);
        in.message_id = mystrdup(buf_str(&v));
    }
    bounce_parse(canon.data, canon.len, &in.r);

    /* the envelope's token first: it is where the report was sent */
    envelope_tokens(canon.data, hlen, envelope_rcpt, &lines);
    if (lines.len > 0 && need_keys(fb, why) < 0) {
        rc = -1;
        goto out;
    }
    try_tokens(fb, buf_str(&lines), "envelope", in.r.kind == BOUNCE_KIND_NONE, &in.fd);
    if (!in.fd.have && in.r.original && in.r.kind != BOUNCE_KIND_NONE) {
        buf_reset(&lines);
        feedback_tokens(in.r.original, in.r.original_len, &lines);
        if (lines.len > 0 && need_keys(fb, why) < 0) {
            rc = -1;
            goto out;
        }
        try_tokens(fb, buf_str(&lines), "original", 0, &in.fd);
    }
    in.tenant = in.fd.have ? in.fd.t.tenant : tenant ? tenant : default_tenant(&in);
    if (in.fd.have && in.fd.t.data_len > 0) {
        struct pipeline_meta m;
        struct buf err;

        buf_init(&err, 16);
        if (pipeline_meta_split(in.fd.t.data, in.fd.t.data_len, &m, &err) == 0 &&
            m.fields_len > 0)
            in.fields = json_loadb(m.fields, m.fields_len, 0, NULL);
        buf_release(&err);
    }

    switch (in.r.kind) {
    case BOUNCE_KIND_BOUNCE:
    case BOUNCE_KIND_DELAY:
        rc = ingest_bounce(&in, why);
        break;
    case BOUNCE_KIND_ARF:
        rc = ingest_arf(&in, why);
        break;
    case BOUNCE_KIND_AUTOREPLY:
        rc = unmatched(&in, NULL, "an auto-reply", why);
        break;
    case BOUNCE_KIND_NONE:
        if (in.fd.have && in.fd.t.purpose == TOKEN_UNSUBSCRIBE)
            rc = ingest_unsubscribe(&in, why);
        else
            rc = unmatched(&in, NULL,
                           in.fd.forged ? "not feedback, and its token does not decrypt"
                           : buf_str(&in.r.note)[0] ? buf_str(&in.r.note)
                                                    : "not feedback",
                           why);
        break;
    }
out:
    if (in.fd.have)
        token_release(&in.fd.t);
    json_decref(in.fields);
    myfree(in.message_id);
    bounce_report_free(&in.r);
    buf_release(&canon);
    buf_release(&lines);
    buf_release(&v);
    return rc;
}
