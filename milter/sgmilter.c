/*
 * sgmilter - the pipeline on every message an MTA accepts, as a milter
 * daemon (the milter protocol is mfengine's): the options of X-SMTPAPI (refused when
 * invalid, and never sent on), and each recipient's decision, suppressed recipients
 * removed from the transaction and recorded as events.
 *
 * A thin adapter: the decisions are lib/pipeline's, as in the relay.  The
 * callbacks never exit the process and never crash the MTA's transaction:
 * any internal failure answers milter.on_error (tempfail by default) and is
 * logged with the queue id.  The header is held within milter.max_headers
 * and milter.max_header_size; the body only when the message may change,
 * in memory up to milter.body_memory and beyond that in a private unlinked
 * temporary file, up to milter.max_body_size.
 *
 * Threads: mfengine serves the MTA's connections on threads of its own,
 * which block SIGHUP, SIGTERM and SIGINT; the main thread takes them with a
 * handler.  SIGHUP reloads (a new struct state; messages in flight keep
 * theirs).  SIGTERM and SIGINT refuse the messages of newer connections,
 * serve the connections open already until they close (within
 * milter.stop_timeout), then stop the engine (see drain).
 *
 *   sgmilter [-c FILE] [-f]
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "address.h"
#include "addrlist.h"
#include "conf.h"
#include "daemon.h"
#include "event.h"
#include "fdio.h"
#include "header.h"
#include "mfengine.h"
#include "msg.h"
#include "mymalloc.h"
#include "pipeline.h"
#include "spool.h"
#include "stats.h"
#include "store.h"

/*
 * What messages are handled with: the configuration and what was opened
 * from it.  SIGHUP makes a new one; a message keeps the one it started
 * with (a reference), and the last reference frees it.
 */
/* The store, opened once per process (store.c allows no second opening). */
struct held_store {
    struct store *st;
    char *path;
    unsigned refs; /* states holding it, under state_lock */
};

struct state {
    struct conf *conf;
    struct held_store *hs;
    struct store *store; /* hs->st */
    struct pipeline *pl;
    struct spool *spool;
    unsigned refs;
};

static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t state_idle = PTHREAD_COND_INITIALIZER;
static struct state *current; /* holds a reference of its own */
static unsigned in_flight;    /* messages between MAIL and their end */
static unsigned open_conns;   /* MTA connections opened before a SIGTERM */
static int stopping;          /* SIGTERM: no message on a newer connection */
static const char *conf_path;
static char host[256];

/* One connection's current message. */
struct msgctx {
    int old_conn; /* opened before a SIGTERM: counted in open_conns */
    /*
     * A refusal decided at a step without a reply (the header, MAIL when
     * stopping), given at the next step that has one (a body chunk, the end)
     */
    mfe_stat refused; /* MFE_CONTINUE: none */
    char refuse_code[4], refuse_xcode[8];
    struct buf refuse_text;
    struct state *st; /* from MAIL to the message's end, else NULL */
    char *auth;       /* {auth_authen}, or NULL */
    char *sender;     /* the envelope sender, brackets removed */
    char **rcpts;     /* as the MTA gave them (for mfe_delrcpt) */
    size_t nrcpts, cap;
    struct buf smtpapi; /* the X-SMTPAPI value */
    int n_smtpapi;
    struct buf from; /* the first From value */
    int have_from;
    int n_lu, n_lup; /* List-Unsubscribe and List-Unsubscribe-Post fields seen */
    int n_mark;      /* PIPELINE_MARK_FIELD fields seen */
    struct buf mark; /* the first one's value */
    long n_fields;   /* header fields seen */
    /*
     * The message in canonical form: the header as seen ("Name: value"
     * CRLF each), the empty line, and the body while it is needed.  In
     * memory up to milter.body_memory, then in the unlinked file fd.
     */
    struct buf msg;
    int fd;
    long long size;      /* bytes of the message so far (memory or file) */
    long long body_len;  /* bytes of body so far */
    int need_body;       /* decided at the end of the header */
    int is_copy;         /* a copy sendguard made: pass it on as it is */
    int header_done;     /* header_done ran */
    int settled;         /* accepted at the end of the header (settle) */
    char *tenant;        /* decided at the end of the header */
    struct buf fromaddr; /* the From address */
};

/* state_free - what s holds; the store too when it held its last reference */
static void state_free(struct state *s, int drop_store)
{
    int close_store = 0;

    if (drop_store) {
        pthread_mutex_lock(&state_lock);
        close_store = --s->hs->refs == 0;
        pthread_mutex_unlock(&state_lock);
    }
    if (close_store) {
        store_close(s->hs->st);
        myfree(s->hs->path);
        myfree(s->hs);
    }
    pipeline_free(s->pl);
    if (s->spool)
        spool_close(s->spool);
    if (s->conf)
        conf_free(s->conf);
    myfree(s);
}

/*
 * state_load - a new state from the configuration file, sharing prev's
 * store when store.path is the same; NULL with why
 */
static struct state *state_load(struct state *prev, struct buf *why)
{
    struct state *s = mycalloc(1, sizeof(*s));
    const char *path;

    s->refs = 1;
    if ((s->conf = conf_load(conf_path, why)) == NULL)
        goto fail;
    stats_configure(s->conf); /* a zone is set at the first load only */
    path = conf_string(s->conf, "store.path");
    if (prev && strcmp(prev->hs->path, path) == 0) {
        pthread_mutex_lock(&state_lock);
        s->hs = prev->hs;
        s->hs->refs++;
        pthread_mutex_unlock(&state_lock);
    } else {
        struct store *st = store_open(path, STORE_READ, why);
        if (st == NULL)
            goto fail;
        s->hs = mycalloc(1, sizeof(*s->hs));
        s->hs->st = st;
        s->hs->path = mystrdup(path);
        s->hs->refs = 1;
    }
    s->store = s->hs->st;
    if ((s->spool = spool_open(conf_string(s->conf, "spool.path"), 0, why)) == NULL ||
        (s->pl = pipeline_new(s->conf, s->store, host, why)) == NULL)
        goto fail;
    return s;
fail:
    state_free(s, s->hs != NULL);
    return NULL;
}

/*
 * state_get - a reference to the current state for one message; NULL when
 * stopping and the connection came after the SIGTERM
 */
static struct state *state_get(int old_conn)
{
    struct state *s;

    pthread_mutex_lock(&state_lock);
    if ((s = stopping && !old_conn ? NULL : current) != NULL) {
        s->refs++;
        in_flight++;
    }
    pthread_mutex_unlock(&state_lock);
    return s;
}

/* state_put - the message is done with its state */
static void state_put(struct state *s, int message)
{
    int last;

    pthread_mutex_lock(&state_lock);
    last = --s->refs == 0;
    if (message)
        in_flight--;
    pthread_mutex_unlock(&state_lock);
    if (last)
        state_free(s, 1);
}

/* unbracket - "<a@b>" (perhaps with ESMTP parameters) as "a@b" */
static char *unbracket(const char *arg)
{
    const char *s = arg, *e;

    while (*s == ' ')
        s++;
    if (*s == '<' && (e = strchr(s, '>')) != NULL)
        return mystrndup(s + 1, (size_t)(e - s - 1));
    return mystrdup(s);
}

/* msg_reset - forget the message (and let go of its state), keep the connection */
static void msg_reset(struct msgctx *m)
{
    if (m->st)
        state_put(m->st, 1);
    m->st = NULL;
    myfree(m->auth);
    myfree(m->sender);
    for (size_t i = 0; i < m->nrcpts; i++)
        myfree(m->rcpts[i]);
    myfree(m->rcpts);
    m->auth = m->sender = NULL;
    m->rcpts = NULL;
    m->nrcpts = m->cap = 0;
    buf_reset(&m->smtpapi);
    buf_reset(&m->from);
    buf_reset(&m->mark);
    buf_reset(&m->fromaddr);
    /* a large message's memory goes back, a small one's is kept for the next */
    if (m->msg.cap > 65536) {
        buf_release(&m->msg);
        buf_init(&m->msg, 4096);
    }
    buf_reset(&m->msg);
    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
    m->size = m->body_len = 0;
    myfree(m->tenant);
    m->tenant = NULL;
    m->n_smtpapi = m->n_lu = m->n_lup = m->n_mark = 0;
    m->n_fields = 0;
    m->have_from = m->need_body = m->is_copy = m->header_done = m->settled = 0;
    m->refused = MFE_CONTINUE;
}

/* domain_of - the domain of an address, or NULL */
static const char *domain_of(const char *addr)
{
    const char *at = addr ? strrchr(addr, '@') : NULL;
    return at && at[1] ? at + 1 : NULL;
}

static struct msgctx *ctx_of(struct mfe_ctx *ctx)
{
    return mfe_getpriv(ctx);
}

/* queue_id - the MTA's queue id, for log lines */
static const char *queue_id(struct mfe_ctx *ctx)
{
    const char *id = mfe_getsymval(ctx, "i");
    return id ? id : "NOQUEUE";
}

/* on_error - the answer to an internal failure, as configured */
static mfe_stat on_error(struct mfe_ctx *ctx, const struct state *st, const char *what)
{
    msg_error("%s: %s", queue_id(ctx), what);
    if (st && strcmp(conf_string(st->conf, "milter.on_error"), "accept") == 0)
        return MFE_ACCEPT;
    mfe_setreply(ctx, "451", "4.3.0", "temporary failure, try again later");
    return MFE_TEMPFAIL;
}

/*
 * The steps sgmilter has nothing to answer at: it asks the MTA not to wait
 * for a reply there (each reply is a round trip).  It answers at the end of
 * the header (accepting there a message nothing will change: see settle),
 * at a body chunk (to skip the rest) and at the end.
 */
#define NR_STEPS                                                                         \
    (SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_DATA |     \
     SMFIP_NR_UNKN | SMFIP_NR_HDR)

/* no_reply - the MTA awaits no reply at this step (SMFIP_NR_*) */
static int no_reply(struct mfe_ctx *ctx, unsigned long step)
{
    return (mfe_getsteps(ctx) & step) != 0;
}

/*
 * refuse - refuse the message (how: MFE_REJECT or MFE_TEMPFAIL) with
 * this reply, now when the step has a reply, else at the next that has; the
 * message is forgotten either way
 */
static mfe_stat refuse(struct mfe_ctx *ctx, struct msgctx *m, unsigned long step,
                       mfe_stat how, const char *code, const char *xcode,
                       const char *text)
{
    msg_info("%s: %s: %s", queue_id(ctx), how == MFE_REJECT ? "reject" : "tempfail",
             text);
    msg_reset(m);
    if (!no_reply(ctx, step)) {
        mfe_setreply(ctx, code, xcode, text);
        return how;
    }
    m->refused = how;
    snprintf(m->refuse_code, sizeof(m->refuse_code), "%s", code);
    snprintf(m->refuse_xcode, sizeof(m->refuse_xcode), "%s", xcode);
    buf_set(&m->refuse_text, text);
    return MFE_NOREPLY;
}

/* refusal - a refusal decided earlier, given now at a step with a reply */
static mfe_stat refusal(struct mfe_ctx *ctx, struct msgctx *m)
{
    mfe_stat how = m->refused;

    mfe_setreply(ctx, m->refuse_code, m->refuse_xcode, buf_str(&m->refuse_text));
    m->refused = MFE_CONTINUE;
    return how;
}

/* too_large - refuse the message over a limit (552 5.3.4) */
static mfe_stat too_large(struct mfe_ctx *ctx, struct msgctx *m, unsigned long step,
                          const char *text)
{
    return refuse(ctx, m, step, MFE_REJECT, "552", "5.3.4", text);
}

/* conn_ctx - the connection's context, made by whichever callback comes first */
static struct msgctx *conn_ctx(struct mfe_ctx *ctx)
{
    struct msgctx *m = mfe_getpriv(ctx);

    if (m == NULL) {
        m = mycalloc(1, sizeof(*m));
        buf_init(&m->smtpapi, 256);
        buf_init(&m->from, 128);
        buf_init(&m->mark, 64);
        buf_init(&m->msg, 4096);
        buf_init(&m->fromaddr, 64);
        buf_init(&m->refuse_text, 64);
        m->fd = -1;
        m->refused = MFE_CONTINUE;
        pthread_mutex_lock(&state_lock);
        if ((m->old_conn = !stopping) != 0)
            open_conns++;
        pthread_mutex_unlock(&state_lock);
        mfe_setpriv(ctx, m);
    }
    return m;
}

#define NO_MACROS "{sendguard_no_macro}"

static mfe_stat cb_negotiate(struct mfe_ctx *ctx, unsigned long f0, unsigned long f1,
                             unsigned long *pf0, unsigned long *pf1)
{
    /*
     * only the actions used: remove recipients, add and change header
     * fields, and where the MTA allows them replace the body (tracking) and,
     * when a tenant has feedback.return_path (as the configuration is when
     * the connection starts), the envelope sender
     */
    const unsigned long want = SMFIF_DELRCPT | SMFIF_CHGHDRS | SMFIF_ADDHDRS;
    struct state *s;
    int chgfrom = 0;

    if ((f0 & want) != want)
        return MFE_REJECT;
    (void)conn_ctx(ctx); /* the connection counts for a SIGTERM from now */
    if ((s = state_get(1)) != NULL) {
        chgfrom = pipeline_has_return_path(s->pl, NULL);
        state_put(s, 1);
    }
    *pf0 = want | (f0 & SMFIF_CHGBODY) | (chgfrom ? f0 & SMFIF_CHGFROM : 0);
    /*
     * only the macros it reads, where it reads them: the login at MAIL, the
     * queue id (for the log and events) at RCPT, at the end of the header
     * and at the end; none at the other steps (Postfix sends a step's macros
     * with each of its packets, the header's with every field, which is why
     * the header's "i" is asked at its end alone).  "None" is a macro no MTA
     * defines: to Postfix an empty list means its own default list.
     */
    if ((f0 & SMFIF_SETSYMLIST) && mfe_setsymlist(ctx, SMFIM_CONNECT, NO_MACROS) == 0 &&
        mfe_setsymlist(ctx, SMFIM_HELO, NO_MACROS) == 0 &&
        mfe_setsymlist(ctx, SMFIM_ENVFROM, "{auth_authen}") == 0 &&
        mfe_setsymlist(ctx, SMFIM_ENVRCPT, "i") == 0 &&
        mfe_setsymlist(ctx, SMFIM_DATA, NO_MACROS) == 0 &&
        mfe_setsymlist(ctx, SMFIM_EOH, "i") == 0 &&
        mfe_setsymlist(ctx, SMFIM_EOM, "i") == 0)
        *pf0 |= SMFIF_SETSYMLIST;
    /*
     * no connect, HELO, unknown command or DATA step; no reply awaited but
     * at the end of the header (where a message nothing changes is
     * accepted, its body never sent), at the body (skipped when the header
     * says it is not needed: MFE_SKIP) and at the end
     */
    *pf1 = f1 & (SMFIP_SKIP | SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOUNKNOWN |
                 SMFIP_NODATA | NR_STEPS);
    return MFE_CONTINUE;
}

static mfe_stat cb_envfrom(struct mfe_ctx *ctx, char **argv)
{
    struct msgctx *m = ctx_of(ctx);
    const char *auth = mfe_getsymval(ctx, "{auth_authen}");

    if (m == NULL)
        m = conn_ctx(ctx);
    msg_reset(m);
    if ((m->st = state_get(m->old_conn)) == NULL)
        return refuse(ctx, m, SMFIP_NR_MAIL, MFE_TEMPFAIL, "451", "4.3.2",
                      "the mail filter is restarting, try again");
    m->sender = unbracket(argv[0]);
    m->auth = auth && *auth ? mystrdup(auth) : NULL;
    return MFE_CONTINUE;
}

static mfe_stat cb_envrcpt(struct mfe_ctx *ctx, char **argv)
{
    struct msgctx *m = ctx_of(ctx);

    if (m == NULL || m->st == NULL)
        return MFE_CONTINUE;
    m->rcpts = mygrow(m->rcpts, &m->cap, m->nrcpts, sizeof(char *));
    m->rcpts[m->nrcpts++] = mystrdup(argv[0]);
    return MFE_CONTINUE;
}

static mfe_stat cb_header(struct mfe_ctx *ctx, char *name, char *value)
{
    struct msgctx *m = ctx_of(ctx);
    const struct conf *conf;
    size_t size;

    if (m == NULL || m->st == NULL)
        return MFE_CONTINUE;
    conf = m->st->conf;
    size = strlen(name) + 2 + strlen(value);
    if (++m->n_fields > conf_int(conf, "milter.max_headers")) {
        char text[96];
        snprintf(text, sizeof(text), "too many header fields (limit %lld)",
                 conf_int(conf, "milter.max_headers"));
        return too_large(ctx, m, SMFIP_NR_HDR, text);
    }
    if ((long long)size > conf_size(conf, "milter.max_header_size")) {
        char text[160];
        snprintf(text, sizeof(text), "header field %.60s too large (limit %lld bytes)",
                 name, conf_size(conf, "milter.max_header_size"));
        return too_large(ctx, m, SMFIP_NR_HDR, text);
    }
    if (strcasecmp(name, PIPELINE_SMTPAPI_FIELD) == 0) {
        if (m->n_smtpapi++ == 0)
            buf_puts(&m->smtpapi, value);
    } else if (strcasecmp(name, "From") == 0 && !m->have_from) {
        buf_puts(&m->from, value);
        m->have_from = 1;
    } else if (strcasecmp(name, "List-Unsubscribe") == 0) {
        m->n_lu++;
    } else if (strcasecmp(name, "List-Unsubscribe-Post") == 0) {
        m->n_lup++;
    } else if (strcasecmp(name, PIPELINE_MARK_FIELD) == 0) {
        if (m->n_mark++ == 0)
            buf_puts(&m->mark, value);
    }
    /* the header as the message will carry it, in canonical form */
    buf_printf(&m->msg, "%s: ", name);
    for (const char *v = value; *v; v++) {
        if (*v == '\r' && v[1] == '\n')
            continue;
        if (*v == '\n')
            buf_putc(&m->msg, '\r');
        buf_putc(&m->msg, *v);
    }
    buf_puts(&m->msg, "\r\n");
    return MFE_CONTINUE;
}

/*
 * marked - a copy sendguard made already, for its one recipient: left
 * alone (the pipeline ran on it), its marker removed
 */
static int marked(struct msgctx *m)
{
    char *rcpt;
    int ok;

    if (m->n_mark != 1 || m->nrcpts != 1)
        return 0;
    rcpt = unbracket(m->rcpts[0]);
    ok = pipeline_mark_check(m->st->pl, rcpt, m->mark.data, m->mark.len, time(NULL));
    myfree(rcpt);
    return ok;
}

/*
 * header_done - at the end of the header (its step, else the first body
 * chunk or the end of the message): the tenant, and whether the body is
 * needed at all
 */
static void header_done(struct msgctx *m)
{
    struct state *st = m->st;

    if (m->header_done)
        return;
    m->header_done = 1;
    if ((m->is_copy = marked(m)) != 0)
        return; /* the body is skipped, the marker removed at the end */
    buf_puts(&m->msg, "\r\n");
    m->size = (long long)m->msg.len;
    if (m->have_from)
        addrlist_first(m->from.data, m->from.len, &m->fromaddr, NULL);
    m->tenant = mystrdup(
        conf_tenant_for(st->conf, m->auth, domain_of(m->sender),
                        domain_of(m->fromaddr.len ? buf_str(&m->fromaddr) : NULL)));
    m->need_body = m->n_smtpapi > 0 ||
                   pipeline_may_change(st->pl, m->tenant,
                                       m->fromaddr.len ? buf_str(&m->fromaddr) : NULL);
}

/*
 * spill - the message outgrew milter.body_memory: on into a private
 * temporary file, unlinked at once (nothing to clean up after a crash)
 */
static int spill(struct msgctx *m, struct buf *why)
{
    const char *dir = conf_string(m->st->conf, "milter.tmp_dir");
    struct buf path;
    int fd;

    if (*dir == 0 && ((dir = getenv("TMPDIR")) == NULL || *dir == 0))
        dir = "/tmp";
    buf_init(&path, 128);
    buf_setf(&path, "%s/sgmilter.XXXXXX", dir);
    fd = mkostemp(path.data, O_CLOEXEC);
    if (fd < 0) {
        buf_error(why, "cannot make a temporary file in %s: %s", dir, strerror(errno));
        buf_release(&path);
        return -1;
    }
    unlink(path.data);
    buf_release(&path);
    if (fd_write(fd, m->msg.data, m->msg.len) < 0) {
        buf_error(why, "cannot write a temporary file in %s: %s", dir, strerror(errno));
        close(fd);
        return -1;
    }
    m->fd = fd;
    buf_release(&m->msg);
    buf_init(&m->msg, 4096);
    return 0;
}

static mfe_stat cb_body(struct mfe_ctx *ctx, unsigned char *data, size_t len)
{
    struct msgctx *m = ctx_of(ctx);
    struct buf why;
    long long limit;

    if (m && m->refused != MFE_CONTINUE)
        return refusal(ctx, m);
    if (m == NULL || m->st == NULL)
        return MFE_CONTINUE;
    header_done(m);
    if (!m->need_body || m->is_copy)
        return MFE_SKIP; /* MFE_CONTINUE to an MTA that did not offer SMFIP_SKIP */
    m->body_len += (long long)len;
    limit = conf_size(m->st->conf, "milter.max_body_size");
    if (m->body_len > limit) {
        char text[96];
        snprintf(text, sizeof(text),
                 "message body too large for the milter (limit %lld bytes)", limit);
        return too_large(ctx, m, 0, text);
    }
    buf_init(&why, 128);
    if (m->fd < 0 && m->body_len > conf_size(m->st->conf, "milter.body_memory") &&
        spill(m, &why) < 0) {
        mfe_stat rc = on_error(ctx, m->st, buf_str(&why));
        buf_release(&why);
        return rc;
    }
    if (m->fd < 0) {
        buf_append(&m->msg, data, len);
    } else if (fd_write(m->fd, data, len) < 0) {
        mfe_stat rc;
        buf_setf(&why, "cannot write the message's temporary file: %s", strerror(errno));
        rc = on_error(ctx, m->st, buf_str(&why));
        buf_release(&why);
        return rc;
    }
    m->size += (long long)len;
    buf_release(&why);
    return MFE_CONTINUE;
}

/* record - one event for a recipient */
static void record(struct mfe_ctx *ctx, const struct state *st, const char *tenant,
                   const char *addr, const char *type, const char *reason,
                   const struct smtpapi_opts *opts, uint32_t group)
{
    struct buf why;
    json_t *ev = json_pack("{s:s,s:s,s:s,s:s}", "event", type, "email", addr, "tenant",
                           tenant, "sg_message_id", queue_id(ctx));

    buf_init(&why, 64);
    if (reason)
        json_object_set_new(ev, "reason", json_string(reason));
    pipeline_event(opts, group, ev);
    if (event_record(conf_string(st->conf, "store.path"), ev, &why) < 0)
        msg_warn("%s: cannot record %s event: %s", queue_id(ctx), type, buf_str(&why));
    json_decref(ev);
    buf_release(&why);
}

/*
 * apply_fields - each "Name: value" CRLF field of fields added at the end
 * of the header, or (first) inserted at its top, keeping their order
 */
static int apply_fields(struct mfe_ctx *ctx, const struct buf *fields, int first)
{
    size_t pos = 0, n = 0, cap = 0;
    struct header_field f, *all = NULL;
    int rc = 0;

    while (header_next(fields->data, fields->len, &pos, &f)) {
        all = mygrow(all, &cap, n, sizeof(*all));
        all[n++] = f;
    }
    for (size_t k = 0; k < n && rc == 0; k++) {
        struct header_field *h = &all[first ? n - 1 - k : k];
        char *name = mystrndup(h->name, h->name_len);
        struct buf v;
        const char *p = h->value, *end = h->value + h->value_len;
        buf_init(&v, h->value_len + 1);
        if (p < end && *p == ' ')
            p++;
        for (; p < end; p++)
            if (*p != '\r')
                buf_putc(&v, *p); /* folding as the MTA wants it: LF only */
        if ((first ? mfe_insheader(ctx, 0, name, v.data)
                   : mfe_addheader(ctx, name, v.data)) < 0)
            rc = -1;
        buf_release(&v);
        myfree(name);
    }
    myfree(all);
    return rc;
}

/* The whole message, from memory or mapped from its temporary file. */
struct view {
    const char *data;
    size_t len;
    void *map;
};

static int view_open(struct msgctx *m, struct view *v, struct buf *why)
{
    v->map = NULL;
    if (m->fd < 0) {
        v->data = m->msg.data;
        v->len = m->msg.len;
        return 0;
    }
    v->len = (size_t)m->size;
    v->map = mmap(NULL, v->len, PROT_READ, MAP_PRIVATE, m->fd, 0);
    if (v->map == MAP_FAILED) {
        v->map = NULL;
        return buf_error(why, "cannot map the message's temporary file: %s",
                         strerror(errno));
    }
    v->data = v->map;
    return 0;
}

static void view_close(struct view *v)
{
    if (v->map)
        munmap(v->map, v->len);
}

/*
 * handoff_key - what makes a hand-off the same one when the MTA asks again
 * (the milter died after writing it, before its answer reached the MTA, and
 * the client sent the message again): the tenant, the sender, the recipients
 * handed over and the message, less the MTA's own Received fields, which
 * name its queue id.  SHA-256, of which the spool name takes a part.
 */
static void handoff_key(const struct msgctx *m, const struct spool_env *env,
                        const char *msg, size_t len, unsigned char key[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t body, pos = 0, hlen = header_split(msg, len, &body);
    struct header_field f;
    unsigned int n = 0;

    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    EVP_DigestUpdate(md, "sendguard hand-off v1", 22);
    EVP_DigestUpdate(md, m->tenant, strlen(m->tenant) + 1);
    EVP_DigestUpdate(md, m->sender, strlen(m->sender) + 1);
    for (size_t i = 0; i < env->nrcpts; i++)
        EVP_DigestUpdate(md, env->rcpts[i].addr, strlen(env->rcpts[i].addr) + 1);
    while (header_next(msg, hlen, &pos, &f))
        if (!(f.name_len == 8 && strncasecmp(f.name, "Received", 8) == 0)) {
            EVP_DigestUpdate(md, f.name, f.name_len);
            EVP_DigestUpdate(md, f.value, f.value_len);
        }
    EVP_DigestUpdate(md, msg + body, len - body);
    EVP_DigestFinal_ex(md, key, &n);
    EVP_MD_CTX_free(md);
}

/*
 * personalise - the unsubscribe fields and signature for the recipient the
 * MTA keeps; when recipients get different copies, the others are written
 * once to the spool (durable before the answer) for the relay to send, and
 * removed from the transaction
 */
static mfe_stat personalise(struct mfe_ctx *ctx, struct msgctx *m,
                            const struct smtpapi_opts *opts,
                            const struct pipeline_decision *d, char **addrs, size_t kept,
                            int *handed)
{
    struct state *st = m->st;
    struct buf why;
    struct pipeline_copy c;
    struct pipeline_change ch;
    struct view v = {NULL, 0, NULL};
    size_t first = 0;
    mfe_stat rc = MFE_CONTINUE;

    while (d[first].action == POLICY_DROP)
        first++;
    buf_init(&why, 128);
    buf_init(&ch.added, 512);
    buf_init(&ch.sigs, 1024);
    buf_init(&ch.body, 0);
    if (view_open(m, &v, &why) < 0) {
        rc = on_error(ctx, st, buf_str(&why));
        goto out;
    }
    c.tenant = m->tenant;
    c.message = queue_id(ctx);
    c.rcpt = addrs[first];
    c.group = d[first].group;
    c.opts = opts;
    /* first what can fail: nothing is handed over for a message tempfailed */
    if (pipeline_changes(st->pl, &c, v.data, v.len, &ch, &why) < 0) {
        rc = on_error(ctx, st, buf_str(&why));
        goto out;
    }
    if (kept > 1 && pipeline_per_recipient(st->pl, &c, v.data, v.len)) {
        struct spool_env env;
        char id[SPOOL_ID_MAX];
        spool_env_init(&env);
        env.sender = mystrdup(m->sender);
        env.tenant = mystrdup(m->tenant);
        env.origin = mystrdup("milter");
        env.created = (int64_t)time(NULL);
        env.uid = getuid();
        env.policy_done = 1;
        for (size_t i = first + 1; i < m->nrcpts; i++)
            if (d[i].action != POLICY_DROP)
                spool_env_add(&env, addrs[i], NULL, 0);
        unsigned char key[32];
        int once;
        handoff_key(m, &env, v.data, v.len, key);
        if ((once = spool_submit_once(st->spool, &env, v.data, v.len, key, sizeof(key),
                                      id, &why)) < 0) {
            rc = on_error(ctx, st, buf_str(&why));
            spool_env_release(&env);
            goto out;
        }
        spool_env_release(&env);
        if (once == 0)
            msg_info("%s: %zu recipient(s) handed to the relay as %s", queue_id(ctx),
                     kept - 1, id);
        else
            msg_info("%s: %zu recipient(s) handed to the relay as %s already (the MTA "
                     "asks again)",
                     queue_id(ctx), kept - 1, id);
        for (size_t i = first + 1; i < m->nrcpts; i++)
            if (d[i].action != POLICY_DROP && mfe_delrcpt(ctx, m->rcpts[i]) < 0) {
                rc = on_error(ctx, st, "the MTA refused to remove a recipient");
                goto out;
            }
        spool_kick(st->spool, id);
        *handed = 1;
    }
    if (ch.drop_own) {
        for (int k = m->n_lu; k >= 1; k--)
            mfe_chgheader(ctx, "List-Unsubscribe", k, NULL);
        for (int k = m->n_lup; k >= 1; k--)
            mfe_chgheader(ctx, "List-Unsubscribe-Post", k, NULL);
    }
    if (apply_fields(ctx, &ch.added, 0) < 0 || apply_fields(ctx, &ch.sigs, 1) < 0)
        rc = on_error(ctx, st, "the MTA refused a header change");
    else if (ch.body_changed && mfe_replacebody(ctx, ch.body.data, ch.body.len) < 0)
        rc = on_error(ctx, st,
                      "the MTA does not let the milter replace the body (tracking)");
out:
    view_close(&v);
    buf_release(&why);
    buf_release(&ch.added);
    buf_release(&ch.sigs);
    buf_release(&ch.body);
    return rc;
}

/*
 * return_path - the tenant's feedback.return_path as the envelope sender,
 * its token naming rcpt (NULL: the message goes on to several); a null
 * sender (a bounce) stays null
 */
static mfe_stat return_path(struct mfe_ctx *ctx, struct msgctx *m, const char *rcpt)
{
    struct buf rp, why;
    mfe_stat rc = MFE_CONTINUE;
    int made;

    if (m->sender == NULL || *m->sender == 0)
        return MFE_CONTINUE;
    buf_init(&rp, 256);
    buf_init(&why, 64);
    if ((made = pipeline_return_path(m->st->pl, m->tenant, queue_id(ctx), rcpt, &rp,
                                     &why)) < 0)
        rc = on_error(ctx, m->st, buf_str(&why));
    else if (made > 0) {
        struct buf from;

        buf_init(&from, rp.len + 3);
        buf_printf(&from, "<%s>", buf_str(&rp));
        if (mfe_chgfrom(ctx, buf_str(&from)) < 0)
            rc = on_error(ctx, m->st,
                          "the MTA does not let the milter change the envelope sender "
                          "(feedback.return_path)");
        buf_release(&from);
    }
    buf_release(&rp);
    buf_release(&why);
    return rc;
}

/* A message's decisions: its options and each recipient's. */
struct plan {
    struct smtpapi_opts opts;
    struct pipeline_decision *d;
    char **addrs;   /* the recipients, brackets removed */
    size_t n;       /* m->nrcpts */
    size_t dropped; /* recipients the policy drops */
    size_t own;     /* sendguard's own feedback addresses */
};

static void plan_free(struct plan *p)
{
    for (size_t i = 0; i < p->n; i++)
        myfree(p->addrs[i]);
    myfree(p->addrs);
    myfree(p->d);
    smtpapi_free(&p->opts);
}

/*
 * plan_make - the options (X-SMTPAPI's, then the tenant's) and every
 * recipient's decision, before anything is changed (a store error changes
 * nothing): MFE_CONTINUE, else the answer (an invalid X-SMTPAPI refused, an
 * internal failure).  plan_free p either way.
 */
static mfe_stat plan_make(struct mfe_ctx *ctx, struct msgctx *m, struct plan *p)
{
    struct state *st = m->st;
    struct buf why;
    mfe_stat rc = MFE_CONTINUE;

    smtpapi_init(&p->opts);
    p->n = m->nrcpts;
    p->dropped = p->own = 0;
    p->d = mycalloc(p->n ? p->n : 1, sizeof(*p->d));
    p->addrs = mycalloc(p->n ? p->n : 1, sizeof(char *));
    for (size_t i = 0; i < p->n; i++)
        p->addrs[i] = unbracket(m->rcpts[i]);
    buf_init(&why, 128);
    if (m->n_smtpapi > 1 ||
        (m->n_smtpapi == 1 &&
         pipeline_options_field(st->conf, m->smtpapi.data, m->smtpapi.len, &p->opts,
                                &why) < 0)) {
        if (m->n_smtpapi > 1)
            buf_setf(&why, "the message has %d X-SMTPAPI fields; one is allowed",
                     m->n_smtpapi);
        if (strcmp(conf_string(st->conf, "milter.invalid_smtpapi"), "reject") == 0) {
            struct buf text;
            buf_init(&text, 128);
            const char *reason = buf_str(&why);
            /* the parser names the field itself: once is enough */
            if (strncmp(reason, PIPELINE_SMTPAPI_FIELD ": ",
                        strlen(PIPELINE_SMTPAPI_FIELD) + 2) == 0)
                reason += strlen(PIPELINE_SMTPAPI_FIELD) + 2;
            buf_printf(&text, "invalid X-SMTPAPI header: %s", reason);
            msg_info("%s: reject: %s", queue_id(ctx), buf_str(&text));
            mfe_setreply(ctx, "550", "5.6.0", buf_str(&text));
            buf_release(&text);
            buf_release(&why);
            return MFE_REJECT;
        }
        msg_info("%s: X-SMTPAPI ignored: %s", queue_id(ctx), buf_str(&why));
        smtpapi_free(&p->opts);
        smtpapi_init(&p->opts);
    }
    pipeline_tenant_options(st->pl, m->tenant, &p->opts);
    for (size_t i = 0; i < p->n && rc == MFE_CONTINUE; i++) {
        if (pipeline_decide(st->pl, m->tenant, &p->opts, p->addrs[i], &p->d[i], &why) < 0)
            rc = on_error(ctx, st, buf_str(&why));
        else if (p->d[i].own)
            p->own++;
        else if (p->d[i].action == POLICY_DROP)
            p->dropped++;
    }
    buf_release(&why);
    return rc;
}

/* record_processed - the processed events: every recipient but sendguard's own */
static void record_processed(struct mfe_ctx *ctx, struct msgctx *m, const struct plan *p)
{
    for (size_t i = 0; i < p->n; i++)
        if (!p->d[i].own)
            record(ctx, m->st, m->tenant, p->addrs[i], "processed", NULL, &p->opts,
                   p->d[i].group);
    if (p->own == p->n && p->n > 0) /* feedback coming in: a bounce, a complaint... */
        msg_info("%s: to sendguard's feedback addresses only: passed on", queue_id(ctx));
}

/* decide - at the end: the message's decisions, applied */
static mfe_stat decide(struct mfe_ctx *ctx, struct msgctx *m)
{
    struct state *st = m->st;
    struct plan p;
    const char *tenant = m->tenant;
    size_t kept;
    mfe_stat rc = plan_make(ctx, m, &p);

    if (rc != MFE_CONTINUE)
        goto out;
    record_processed(ctx, m, &p);
    if (p.own == p.n && p.n > 0)
        goto out;
    kept = p.n - p.dropped;
    for (size_t i = 0; i < p.n; i++) {
        if (p.d[i].action != POLICY_DROP)
            continue;
        if (mfe_delrcpt(ctx, m->rcpts[i]) < 0) {
            rc = on_error(ctx, st, "the MTA refused to remove a recipient");
            goto out;
        }
        msg_info("%s: to=<%s>, status=dropped (%s)", queue_id(ctx), p.addrs[i],
                 policy_reason_name(p.d[i].reason));
        record(ctx, st, tenant, p.addrs[i], "dropped", policy_reason_name(p.d[i].reason),
               &p.opts, p.d[i].group);
    }
    /* the header never leaves the server, nor a marker that did not verify */
    for (int k = m->n_smtpapi; k >= 1; k--)
        if (mfe_chgheader(ctx, PIPELINE_SMTPAPI_FIELD, k, NULL) < 0) {
            rc = on_error(ctx, st, "the MTA refused to remove X-SMTPAPI");
            goto out;
        }
    for (int k = m->n_mark; k >= 1; k--)
        mfe_chgheader(ctx, PIPELINE_MARK_FIELD, k, NULL);
    if (kept == 0 && p.n > 0) {
        if (strcmp(conf_string(st->conf, "milter.all_dropped"), "reject") == 0) {
            mfe_setreply(ctx, "550", "5.7.1", "message not accepted");
            rc = MFE_REJECT;
        } else {
            rc = MFE_DISCARD; /* the client is never told which lists */
        }
    } else if (kept > 0) {
        int handed = 0;
        size_t first = 0;

        if (m->need_body)
            rc = personalise(ctx, m, &p.opts, p.d, p.addrs, kept, &handed);
        while (p.d[first].action == POLICY_DROP)
            first++;
        /* the return path names the recipient when one is left in the transaction */
        if (rc == MFE_CONTINUE)
            rc = return_path(ctx, m, kept == 1 || handed ? p.addrs[first] : NULL);
    }
out:
    plan_free(&p);
    return rc;
}

/*
 * settle - at the end of the header, a message nothing will change: its
 * body not needed (no X-SMTPAPI, no key for its From domain, no group, no
 * tracking), no marker to remove, no return path, and no recipient
 * dropped.  Its events are recorded and it is accepted there: the MTA sends
 * neither its body nor its end (one answer for the message instead of two,
 * and the body never crosses).  Else MFE_CONTINUE, and the end decides.
 */
static mfe_stat settle(struct mfe_ctx *ctx, struct msgctx *m)
{
    struct plan p;
    mfe_stat rc;

    if (m->is_copy || m->need_body || m->n_mark > 0 || m->nrcpts == 0 ||
        pipeline_has_return_path(m->st->pl, m->tenant))
        return MFE_CONTINUE;
    if ((rc = plan_make(ctx, m, &p)) == MFE_CONTINUE && p.dropped == 0) {
        record_processed(ctx, m, &p);
        rc = MFE_ACCEPT;
    }
    plan_free(&p);
    return rc;
}

static mfe_stat cb_eoh(struct mfe_ctx *ctx)
{
    struct msgctx *m = ctx_of(ctx);
    mfe_stat rc;

    if (m && m->refused != MFE_CONTINUE && !no_reply(ctx, SMFIP_NR_EOH))
        return refusal(ctx, m);
    if (m == NULL || m->st == NULL)
        return MFE_CONTINUE;
    header_done(m);
    if (no_reply(ctx, SMFIP_NR_EOH))
        return MFE_NOREPLY;
    if ((rc = settle(ctx, m)) == MFE_ACCEPT)
        m->settled = 1; /* its end, should the MTA send it, changes nothing */
    else if (rc != MFE_CONTINUE)
        msg_reset(m); /* refused: the message is forgotten */
    return rc;
}

static mfe_stat cb_eom(struct mfe_ctx *ctx)
{
    struct msgctx *m = ctx_of(ctx);
    mfe_stat rc;

    if (m && m->refused != MFE_CONTINUE)
        return refusal(ctx, m);
    if (m && m->settled) {
        msg_reset(m);
        return MFE_CONTINUE;
    }
    if (m == NULL || m->st == NULL)
        return on_error(ctx, NULL, "end of message without its envelope");
    header_done(m); /* a message without a body */
    if (m->is_copy) {
        msg_info("%s: a copy sendguard made already: passed on", queue_id(ctx));
        mfe_chgheader(ctx, PIPELINE_MARK_FIELD, 1, NULL);
        msg_reset(m);
        return MFE_CONTINUE;
    }
    rc = decide(ctx, m);
    msg_reset(m); /* the message is done: its state goes back */
    return rc;
}

static mfe_stat cb_abort(struct mfe_ctx *ctx)
{
    struct msgctx *m = ctx_of(ctx);

    if (m)
        msg_reset(m);
    return MFE_CONTINUE;
}

static mfe_stat cb_close(struct mfe_ctx *ctx)
{
    struct msgctx *m = ctx_of(ctx);

    if (m) {
        msg_reset(m);
        buf_release(&m->smtpapi);
        buf_release(&m->from);
        buf_release(&m->mark);
        buf_release(&m->msg);
        buf_release(&m->fromaddr);
        buf_release(&m->refuse_text);
        pthread_mutex_lock(&state_lock);
        if (m->old_conn && --open_conns == 0)
            pthread_cond_broadcast(&state_idle);
        pthread_mutex_unlock(&state_lock);
        myfree(m);
        mfe_setpriv(ctx, NULL);
    }
    return MFE_CONTINUE;
}

static const struct mfe_callbacks callbacks = {
    .negotiate = cb_negotiate,
    .envfrom = cb_envfrom,
    .envrcpt = cb_envrcpt,
    .header = cb_header,
    .eoh = cb_eoh,
    .body = cb_body,
    .eom = cb_eom,
    .abort = cb_abort,
    .close = cb_close,
};

static void SG_NORETURN usage(void)
{
    fprintf(stderr, "usage: sgmilter [-c FILE] [-f]\n");
    exit(EX_USAGE);
}

/* reload - SIGHUP: a new state for the messages to come, or the old one kept */
static void reload(void)
{
    static const char *const fixed[] = {"milter.socket", "milter.user",
                                        "milter.pid_file"};
    struct state *s, *old;
    struct buf why;

    buf_init(&why, 128);
    pthread_mutex_lock(&state_lock);
    old = current;
    pthread_mutex_unlock(&state_lock);
    if ((s = state_load(old, &why)) == NULL) {
        msg_error("reload: %s; the running configuration stays", buf_str(&why));
        buf_release(&why);
        return;
    }
    pthread_mutex_lock(&state_lock);
    current = s;
    pthread_mutex_unlock(&state_lock);
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (strcmp(conf_string(s->conf, fixed[i]), conf_string(old->conf, fixed[i])) != 0)
            msg_warn("reload: %s changed: it takes effect at a restart", fixed[i]);
    msg_info("reloaded %s", conf_file(s->conf) ? conf_file(s->conf) : "the defaults");
    state_put(old, 0);
    buf_release(&why);
}

static int wake[2] = {-1, -1}; /* to the main thread: 'h' reload, 't' stop, 'q' gone */

static void on_signal(int sig)
{
    int saved = errno;
    char c = sig == SIGHUP ? 'h' : 't';

    if (write(wake[1], &c, 1) < 0) {
        /* the pipe is full: the main thread has plenty to read already */
    }
    errno = saved;
}

static struct mfe_server *server;

/* serve - the milter thread: the engine's loop, until mfe_stop or a failure */
static void *serve(void *arg)
{
    char c = 'q';
    int rv = mfe_run(server, &callbacks);

    (void)arg;
    if (write(wake[1], &c, 1) < 0)
        msg_warn("cannot wake the main thread: %m");
    return (void *)(long)rv;
}

/*
 * drain - SIGTERM: a connection the MTA opens from now on has each message
 * answered 451 4.3.2 (at its end: MAIL awaits no reply); the connections
 * open already are served until the MTA closes them (a message the client
 * began before the signal may reach the milter only at its end, the MTA
 * holding back the steps that await no reply), for at most
 * milter.stop_timeout; then the engine is stopped, which ends the newer
 * connections (the MTA applies milter_default_action to their messages).
 */
static void drain(void)
{
    struct timespec until;
    long long wait_s;

    pthread_mutex_lock(&state_lock);
    wait_s = conf_duration(current->conf, "milter.stop_timeout");
    stopping = 1;
    if (open_conns > 0)
        msg_info("stopping: %u connection(s) open, %u message(s) in flight", open_conns,
                 in_flight);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)wait_s;
    while (open_conns > 0 &&
           pthread_cond_timedwait(&state_idle, &state_lock, &until) != ETIMEDOUT)
        ;
    if (open_conns > 0)
        msg_warn("stopping with %u connection(s) open after %llds (%u message(s) in "
                 "flight): the MTA retries their mail",
                 open_conns, wait_s, in_flight);
    pthread_mutex_unlock(&state_lock);
    mfe_stop(server);
}

int main(int argc, char **argv)
{
    const char *sock;
    int foreground = 0, c;
    struct buf why;
    sigset_t mask, old;
    struct sigaction sa;
    pthread_t th;
    void *rv = NULL;

    while ((c = getopt(argc, argv, "c:f")) != -1) {
        switch (c) {
        case 'c':
            conf_path = optarg;
            break;
        case 'f':
            foreground = 1;
            break;
        default:
            usage();
        }
    }
    if (optind != argc)
        usage();
    msg_open("sgmilter", foreground ? MSG_STDERR : MSG_SYSLOG);
    buf_init(&why, 128);
    if (gethostname(host, sizeof(host)) < 0)
        strcpy(host, "localhost");
    host[sizeof(host) - 1] = 0;
    if ((current = state_load(NULL, &why)) == NULL) {
        fprintf(stderr, "sgmilter: %s\n", buf_str(&why));
        return EX_CONFIG;
    }
    /* every thread but this one blocks SIGHUP, SIGTERM and SIGINT (see the
     * top); blocked from before the socket listens, so that one sent as soon
     * as the MTA can connect waits for the handler instead of killing us */
    sigemptyset(&mask);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask, &old);
    sock = conf_string(current->conf, "milter.socket");
    if ((server = mfe_listen(sock, &why)) == NULL) {
        fprintf(stderr, "sgmilter: %s\n", buf_str(&why));
        return EX_UNAVAILABLE;
    }
    daemon_become("milter.user", conf_string(current->conf, "milter.user"),
                  strncmp(sock, "unix:", 5) == 0 ? sock + 5 : NULL);
    if (!foreground && daemon(0, 0) < 0) {
        fprintf(stderr, "sgmilter: cannot become a daemon: %s\n", strerror(errno));
        return EX_OSERR;
    }
    daemon_write_pid(conf_string(current->conf, "milter.pid_file"));
    if (pipe2(wake, O_CLOEXEC) < 0 || fcntl(wake[1], F_SETFL, O_NONBLOCK) < 0)
        msg_fatal("cannot make a pipe: %m");
    if (pthread_create(&th, NULL, serve, NULL) != 0)
        msg_fatal("cannot start the milter thread: %m");
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    pthread_sigmask(SIG_UNBLOCK, &mask, NULL);
    msg_info("listening on %s", sock);
    for (;;) {
        char cmd[64];
        ssize_t n = read(wake[0], cmd, sizeof(cmd));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || memchr(cmd, 'q', (size_t)n))
            break;
        if (memchr(cmd, 't', (size_t)n)) {
            drain();
            break;
        }
        reload(); /* once for every SIGHUP read together */
    }
    pthread_join(th, &rv);
    msg_info("stopped");
    state_put(current, 0);
    buf_release(&why);
    mfe_free(server);
    return (long)rv == 0 ? 0 : EX_SOFTWARE;
}
