/*
 * submit - what "sendmail" does with a message before it is queued: read it
 * as the caller wrote it, make it canonical, take recipients from its header
 * with -t, add the header fields the caller left out, and write it durably
 * into the spool.  Exit codes are <sysexits.h>: callers resend on any
 * non-zero code, so nothing is ever queued when this reports a failure.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "addrlist.h"
#include "header.h"
#include "mymalloc.h"
#include "pipeline.h"
#include "relay.h"

/* relay_read_input - see relay.h */
int relay_read_input(int fd, int dot_ends, long long limit, struct buf *out,
                     struct buf *why)
{
    size_t scanned = 0; /* start of the first line not yet looked at */

    buf_reset(out);
    for (;;) {
        ssize_t n;
        buf_reserve(out, 65536);
        n = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            buf_error(why, "cannot read the message: %m");
            return EX_IOERR;
        }
        if (n == 0)
            break;
        out->len += (size_t)n;
        out->data[out->len] = 0;
        if (limit > 0 && out->len > (unsigned long long)limit + 1024) {
            buf_error(why, "message larger than relay.message_size_limit (%lld bytes)",
                      limit);
            return EX_DATAERR;
        }
        if (!dot_ends)
            continue;
        /* without -i: a line holding a single dot ends the message */
        for (;;) {
            char *nl = memchr(out->data + scanned, '\n', out->len - scanned);
            size_t ll;
            if (nl == NULL)
                break;
            ll = (size_t)(nl - (out->data + scanned));
            if ((ll == 1 && out->data[scanned] == '.') ||
                (ll == 2 && out->data[scanned] == '.' &&
                 out->data[scanned + 1] == '\r')) {
                buf_truncate(out, scanned);
                return 0;
            }
            scanned += ll + 1;
        }
    }
    if (dot_ends && out->len - scanned == 1 && out->data[scanned] == '.')
        buf_truncate(out, scanned);
    if (limit > 0 && out->len > (unsigned long long)limit) {
        buf_error(why, "message larger than relay.message_size_limit (%lld bytes)",
                  limit);
        return EX_DATAERR;
    }
    return 0;
}

/* The recipients gathered for one message, without duplicates. */
struct rcpts {
    struct spool_env *env;
    struct relay *r;
    struct buf keys; /* NUL-separated comparison keys of those added */
    struct buf *why;
    int bad;
    int notify; /* for those found in the header */
};

/* qualify - an address with the relay's domain added when it has none */
static void qualify(struct relay *r, const char *addr, struct buf *out)
{
    buf_set(out, addr);
    if (strchr(addr, '@') == NULL)
        buf_printf(out, "@%s", r->domain);
}

/* add_rcpt - normalise and add one recipient; 0, or -1 with why */
static int add_rcpt(struct rcpts *rc, const char *addr, int notify, const char *orcpt)
{
    struct buf q, norm, key;
    int rv = 0;

    buf_init(&q, 128);
    buf_init(&norm, 128);
    buf_init(&key, 128);
    qualify(rc->r, addr, &q);
    if (address_normalize(buf_str(&q), &norm, rc->why) < 0) {
        buf_error(rc->why, "bad recipient address '%s'", addr);
        rv = -1;
        goto out;
    }
    address_key(buf_str(&norm), &key);
    for (size_t off = 0; off < rc->keys.len; off += strlen(rc->keys.data + off) + 1)
        if (strcmp(rc->keys.data + off, buf_str(&key)) == 0)
            goto out; /* named twice: delivered once */
    buf_append(&rc->keys, key.data, key.len + 1);
    spool_env_add(rc->env, buf_str(&norm), orcpt, notify);
out:
    buf_release(&q);
    buf_release(&norm);
    buf_release(&key);
    return rv;
}

/* header_rcpt - addrlist_fn for -t */
static int header_rcpt(const char *addr, void *ctx)
{
    struct rcpts *rc = ctx;

    if (add_rcpt(rc, addr, rc->notify, NULL) < 0) {
        rc->bad = 1;
        return 1;
    }
    return 0;
}

/* quote_phrase - a display name, quoted when it holds specials */
static void quote_phrase(const char *name, struct buf *out)
{
    int plain = *name != 0;

    for (const char *p = name; *p; p++)
        if (!(((unsigned char)*p >= 0x80) || (*p >= 'a' && *p <= 'z') ||
              (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr(" !#$%&'*+-/=?^_`{|}~", *p)))
            plain = 0;
    if (plain) {
        buf_puts(out, name);
        return;
    }
    buf_putc(out, '"');
    for (const char *p = name; *p; p++) {
        if (*p == '\r' || *p == '\n')
            continue;
        if (*p == '"' || *p == '\\')
            buf_putc(out, '\\');
        buf_putc(out, *p);
    }
    buf_putc(out, '"');
}

/* random_hex - n random bytes in hex */
static void random_hex(struct buf *out, size_t n)
{
    unsigned char b[16];

    if (n > sizeof(b))
        n = sizeof(b);
    if (getrandom(b, n, 0) != (ssize_t)n)
        for (size_t i = 0; i < n; i++)
            b[i] = (unsigned char)(rand() ^ getpid());
    for (size_t i = 0; i < n; i++)
        buf_printf(out, "%02x", b[i]);
}

/* exit_for_errno - the sysexits code for a failed write into the spool */
static int exit_for_errno(int err)
{
    switch (err) {
    case EACCES:
    case EPERM:
    case EROFS:
        return EX_CANTCREAT;
    default:
        return EX_TEMPFAIL; /* ENOSPC, EDQUOT, EIO: try again later */
    }
}

/* relay_accept - see relay.h */
int relay_accept(struct relay *r, const struct relay_opts *o, const char *raw, size_t len,
                 char *const *rcpt, size_t nrcpt, char id[SPOOL_ID_MAX],
                 struct spool_entry **keep, struct buf *why)
{
    struct buf canon, msg, sender, v, from_dom, sender_dom;
    struct spool_env env;
    struct rcpts rc;
    struct header_field f;
    size_t hlen, body, pos = 0;
    int have_date = 0, have_from = 0, have_msgid = 0, rv = 0;

    buf_init(&canon, len + 256);
    buf_init(&msg, len + 512);
    buf_init(&sender, 128);
    buf_init(&v, 256);
    buf_init(&from_dom, 64);
    buf_init(&sender_dom, 64);
    spool_env_init(&env);
    memset(&rc, 0, sizeof(rc));
    rc.env = &env;
    rc.r = r;
    rc.why = why;
    rc.notify = o->notify;
    buf_init(&rc.keys, 256);

    /* the envelope sender */
    if (o->sender) {
        const char *s = o->sender;
        size_t sl = strlen(s);
        if (sl >= 2 && s[0] == '<' && s[sl - 1] == '>')
            buf_append(&v, s + 1, sl - 2);
        else
            buf_set(&v, s);
        if (v.len > 0) {
            struct buf q;
            buf_init(&q, 128);
            qualify(r, buf_str(&v), &q);
            if (address_normalize(buf_str(&q), &sender, why) < 0) {
                buf_release(&q);
                buf_error(why, "bad sender address '%s'", o->sender);
                rv = EX_DATAERR;
                goto out;
            }
            buf_release(&q);
        }
    } else {
        struct buf q;
        buf_init(&q, 128);
        buf_setf(&q, "%s@%s", r->user, r->domain);
        if (address_normalize(buf_str(&q), &sender, why) < 0) {
            buf_error(why, "cannot make a sender address of user '%s'", r->user);
            buf_release(&q);
            rv = EX_DATAERR;
            goto out;
        }
        buf_release(&q);
    }

    /* the message, canonical; the header walked once */
    /* a leading mbox "From " line is no header field: dropped, as Postfix does */
    if (o->origin == NULL || strcmp(o->origin, "sendmail") == 0)
        while (len >= 5 &&
               (memcmp(raw, "From ", 5) == 0 || (len >= 6 && memcmp(raw, ">From ", 6) == 0))) {
            const char *nl = memchr(raw, '\n', len);
            size_t skip = nl ? (size_t)(nl - raw) + 1 : len;
            raw += skip;
            len -= skip;
        }
    header_canonical(raw, len, &canon);
    hlen = header_split(canon.data, canon.len, &body);
    if (conf_bool(r->conf, "relay.policy")) {
        /* refused now, while the application can still be told */
        struct smtpapi_opts api;
        smtpapi_init(&api);
        if (pipeline_options(r->conf, canon.data, canon.len, &api, why) < 0) {
            buf_setf(&v, "X-SMTPAPI: %s", buf_str(why));
            buf_set(why, buf_str(&v));
            rv = EX_DATAERR;
        }
        smtpapi_free(&api);
        if (rv)
            goto out;
    }
    for (size_t i = 0; i < nrcpt; i++)
        if (add_rcpt(&rc, rcpt[i], o->rcpt_notify ? o->rcpt_notify[i] : o->notify,
                     o->rcpt_orcpt ? o->rcpt_orcpt[i] : NULL) < 0) {
            rv = EX_DATAERR;
            goto out;
        }
    while (header_next(canon.data, hlen, &pos, &f)) {
        int is_rcpt = header_is(&f, "To") || header_is(&f, "Cc") || header_is(&f, "Bcc");
        if (o->from_header_rcpts && is_rcpt) {
            if (addrlist_parse(f.value, f.value_len, header_rcpt, &rc, &v) < 0) {
                buf_error(why, "cannot parse the %.*s field: %s", (int)f.name_len, f.name,
                          buf_str(&v));
                rv = EX_DATAERR;
                goto out;
            }
            if (rc.bad) {
                rv = EX_DATAERR;
                goto out;
            }
        }
        /* never sent on: blind copies, and what the final MTA adds */
        if (header_is(&f, "Bcc") || header_is(&f, "Resent-Bcc") ||
            header_is(&f, "Return-Path") || header_is(&f, "Content-Length"))
            continue;
        if (header_is(&f, "Date"))
            have_date = 1;
        else if (header_is(&f, "Message-ID"))
            have_msgid = 1;
        else if (header_is(&f, "From")) {
            have_from = 1;
            if (from_dom.len == 0 &&
                addrlist_first(f.value, f.value_len, &v, NULL) == 0 &&
                strchr(buf_str(&v), '@'))
                buf_set(&from_dom, strrchr(buf_str(&v), '@') + 1);
        }
        buf_append(&msg, f.start, f.len);
    }
    if (env.nrcpts == 0) {
        buf_error(why, o->from_header_rcpts
                           ? "no recipient addresses found in the message header"
                           : "no recipients given");
        rv = EX_USAGE;
        goto out;
    }

    /* what the caller left out, as sendmail adds it */
    if (!have_from) {
        buf_puts(&msg, "From: ");
        if (o->fullname && *o->fullname) {
            quote_phrase(o->fullname, &msg);
            buf_puts(&msg, " <");
        } else if (r->gecos && *r->gecos && o->sender == NULL) {
            quote_phrase(r->gecos, &msg);
            buf_puts(&msg, " <");
        } else {
            buf_putc(&msg, '<');
        }
        if (sender.len)
            buf_puts(&msg, buf_str(&sender));
        else
            buf_printf(&msg, "%s@%s", r->user, r->domain);
        buf_puts(&msg, ">\r\n");
    }
    if (!have_date) {
        buf_puts(&msg, "Date: ");
        header_date((int64_t)time(NULL), &msg);
        buf_puts(&msg, "\r\n");
    }
    if (!have_msgid) {
        buf_printf(&msg, "Message-ID: <%lld.", (long long)time(NULL));
        random_hex(&msg, 8);
        buf_printf(&msg, "@%s>\r\n", r->domain);
    }
    buf_puts(&msg, "\r\n");
    if (body < canon.len)
        buf_append(&msg, canon.data + body, canon.len - body);

    /* the envelope */
    env.sender = buf_steal(&sender);
    if (strchr(env.sender, '@'))
        buf_set(&sender_dom, strrchr(env.sender, '@') + 1);
    env.tenant = mystrdup(conf_tenant_for(r->conf, NULL,
                                          sender_dom.len ? buf_str(&sender_dom) : NULL,
                                          from_dom.len ? buf_str(&from_dom) : NULL));
    env.origin = mystrdup(o->origin ? o->origin : "sendmail");
    env.envid = o->envid ? mystrdup(o->envid) : NULL;
    env.ret = o->ret;
    env.body_8bit = o->body_8bit;
    env.created = (int64_t)time(NULL);
    env.uid = r->uid;
    if (spool_submit(r->spool, &env, msg.data, msg.len, keep ? SPOOL_KEEP_LOCKED : 0, id,
                     keep, why) < 0) {
        rv = exit_for_errno(errno);
        goto out;
    }
    msg_info("%s: from=<%s>, size=%zu, nrcpt=%zu, tenant=%s, uid=%lu", id, env.sender,
             msg.len, env.nrcpts, env.tenant, (unsigned long)r->uid);
out:
    spool_env_release(&env);
    buf_release(&rc.keys);
    buf_release(&canon);
    buf_release(&msg);
    buf_release(&sender);
    buf_release(&v);
    buf_release(&from_dom);
    buf_release(&sender_dom);
    return rv;
}
