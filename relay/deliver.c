/*
 * deliver - send queued entries to relay.smarthost with libESMTP and record
 * each recipient's fate in the spool, the event log and, for permanent
 * failures, a bounce to the sender.
 *
 * libESMTP 1.1.0 as Debian ships it, and how it is used here:
 *  - its default TLS context is a static that a destroyed session frees, so
 *    a second TLS session in one process would use freed memory (upstream
 *    #30): every session gets its own SSL_CTX (TLS >= 1.2), set with
 *    smtp_starttls_set_ctx; certificate and host checks are answered in the
 *    event callback, from relay.starttls;
 *  - it adds Date, From and Message-Id when missing and drops Return-Path:
 *    accepted messages always carry the first three (submit.c adds them) and
 *    never the last, so the bytes sent are the bytes queued (tested);
 *  - PLAIN and LOGIN need AUTH_PLUGIN_PLAIN enabled explicitly;
 *  - smtp_start_session succeeds even when every recipient was refused:
 *    only the per-message and per-recipient statuses say what happened.
 *
 * A 5xx for one recipient bounces that recipient only; a 4xx defers it only.
 * A refusal of MAIL FROM or of the data applies to all of the message's
 * recipients, except "530" (authentication or TLS required), which says our
 * setup is wrong, not the mail: it defers.  A session that fails before a
 * recipient got an answer (connection refused, TLS refused, timeout) defers
 * every recipient that had none.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <limits.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <auth-client.h>
#include <libesmtp.h>
#include <jansson.h>

#include "bounce.h"
#include "dsn.h"
#include "event.h"
#include "feedback.h"
#include "header.h"
#include "mymalloc.h"
#include "pipeline.h"
#include "relay.h"

enum outcome { OUT_NONE, OUT_DELIVERED, OUT_DEFERRED, OUT_FAILED };

/* One SMTP transaction: a message and some of an entry's recipients. */
struct job {
    struct spool_entry *e;
    const struct smtpapi_opts *opts; /* the message's options, for events */
    uint32_t group;                  /* the recipient's group (pipeline copies) */
    int skip;                        /* not sent: out[] and reply[] are set */
    int personal;                    /* sent as its recipient's own copy */
    struct buf copy;                 /* that copy, while its connection lasts */
    char *sender;                    /* the tenant's return path, or NULL: the entry's */
    const char *data;                /* the bytes to send */
    size_t len;
    size_t *idx; /* recipients (indices into the entry's envelope) */
    size_t n;
    smtp_message_t m;
    smtp_recipient_t *rr;
    enum outcome *out;
    char **reply;         /* per recipient: the reply that decided */
    unsigned char *noted; /* per recipient: delivered() done */
};

/* What the event callback needs. */
struct session_ctx {
    struct relay *r;
    int tls_required;
    const char *tls_name;
    const char *host; /* the smarthost's name, for log lines */
    struct buf tls_error;
    char *password;
    auth_context_t actx;   /* given to the session once TLS is up */
    int in_auth;           /* AUTH sent, its outcome not yet read */
    int authed;            /* AUTH succeeded on this connection */
    struct buf auth_error; /* the refusal of AUTH, if any */
    struct buf ext_error;  /* an extension the mail needs is not offered */
    struct job *jobs;      /* the session's messages, to mark them as they go */
    size_t njobs;
};

static enum outcome judge(const smtp_status_t *mail, const smtp_status_t *rcpt,
                          const smtp_status_t *data, const smtp_status_t **decider);
static char *status_text(const smtp_status_t *st);
static void delivered(struct relay *r, struct job *j, size_t i, const char *reply,
                      const char *host);

/*
 * message_sent - mark a message's accepted recipients delivered as soon as
 * its data is accepted, not when the connection ends: a crash later in the
 * session then sends again only the message in flight (the crash window).
 */
static void message_sent(struct session_ctx *sc, smtp_message_t m)
{
    struct buf why;

    buf_init(&why, 64);
    for (size_t k = 0; k < sc->njobs; k++) {
        struct job *j = &sc->jobs[k];
        const smtp_status_t *mail, *data, *rst, *decider;
        if (j->m != m)
            continue;
        mail = smtp_reverse_path_status(m);
        data = smtp_message_transfer_status(m);
        for (size_t i = 0; i < j->n && mail && data; i++)
            if ((rst = smtp_recipient_status(j->rr[i])) != NULL &&
                judge(mail, rst, data, &decider) == OUT_DELIVERED) {
                char *reply = status_text(decider);
                delivered(sc->r, j, i, reply, sc->host);
                myfree(reply);
            }
        break;
    }
    buf_release(&why);
}

/*
 * tcp_nodelay - turn off Nagle on this process's TCP sockets.  libESMTP
 * writes a message in 2 KiB pieces and then waits for the reply: Nagle holds
 * the last small piece until the server's delayed ACK, 40 ms per message
 * (measured: 22 messages a second per connection, 2,500 without).  libESMTP
 * does not hand out its socket, so the one a delivering process has is
 * found among its descriptors when it connects (SMTP_EV_CONNECT).
 */
static void tcp_nodelay(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int one = 1;

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);
        int fd = atoi(de->d_name), type = 0;
        socklen_t tlen = sizeof(type);
        if (de->d_name[0] < '0' || de->d_name[0] > '9' || fd == dirfd(d))
            continue;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0 ||
            type != SOCK_STREAM || getsockname(fd, (struct sockaddr *)&sa, &len) < 0 ||
            (sa.ss_family != AF_INET && sa.ss_family != AF_INET6))
            continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    closedir(d);
}

/* event_cb - libESMTP's questions about TLS, answered from relay.starttls */
static void event_cb(smtp_session_t session, int event_no, void *arg, ...)
{
    struct session_ctx *sc = arg;
    va_list ap;
    int *ok;

    (void)session;
    va_start(ap, arg);
    switch (event_no) {
    case SMTP_EV_INVALID_PEER_CERTIFICATE: {
        long vfy = va_arg(ap, long);
        ok = va_arg(ap, int *);
        *ok = !sc->tls_required;
        if (sc->tls_required)
            buf_setf(&sc->tls_error, "certificate not trusted: %s",
                     X509_verify_cert_error_string(vfy));
        break;
    }
    case SMTP_EV_NO_PEER_CERTIFICATE:
        ok = va_arg(ap, int *);
        *ok = !sc->tls_required;
        if (sc->tls_required)
            buf_set(&sc->tls_error, "the smarthost presented no certificate");
        break;
    case SMTP_EV_WRONG_PEER_CERTIFICATE: {
        SSL *ssl;
        X509 *cert;
        ok = va_arg(ap, int *);
        (void)va_arg(ap, char *);
        ssl = va_arg(ap, SSL *);
        /* libESMTP matches DNS names only; we check names and addresses */
        *ok = !sc->tls_required;
        if (sc->tls_required && (cert = SSL_get1_peer_certificate(ssl)) != NULL) {
            *ok = X509_check_host(cert, sc->tls_name, 0, 0, NULL) == 1 ||
                  X509_check_ip_asc(cert, sc->tls_name, 0) == 1;
            X509_free(cert);
        }
        if (!*ok)
            buf_setf(&sc->tls_error, "certificate does not name %s", sc->tls_name);
        break;
    }
    case SMTP_EV_CONNECT:
        tcp_nodelay();
        /* a new connection (libESMTP tries each address): no TLS, no AUTH yet */
        smtp_auth_set_context(session, NULL);
        sc->in_auth = sc->authed = 0;
        buf_set(&sc->auth_error, "");
        break;
    case SMTP_EV_STARTTLS_OK:
        /* the password goes only over TLS: AUTH is offered from now on */
        if (sc->actx)
            smtp_auth_set_context(session, sc->actx);
        break;
    case SMTP_EV_WEAK_CIPHER:
        (void)va_arg(ap, int);
        ok = va_arg(ap, int *);
        *ok = !sc->tls_required;
        break;
    case SMTP_EV_MESSAGESENT:
        message_sent(sc, va_arg(ap, smtp_message_t));
        break;
    case SMTP_EV_EXTNA_STARTTLS:
        buf_set(&sc->tls_error, "the smarthost does not offer STARTTLS");
        break;
    case SMTP_EV_EXTNA_8BITMIME:
        buf_set(&sc->ext_error,
                "the smarthost does not offer 8BITMIME for an 8-bit message");
        break;
    default:
        break;
    }
    va_end(ap);
}

/*
 * monitor_cb - the dialogue as it passes (headers and body excluded), read
 * for one thing libESMTP does not report: a refused AUTH.  The session goes
 * on without it, and the smarthost's refusals of the mail then say nothing
 * about the mail.
 */
static void monitor_cb(const char *buf, int len, int writing, void *arg)
{
    struct session_ctx *sc = arg;

    if (writing) {
        if (len >= 5 && strncasecmp(buf, "AUTH ", 5) == 0)
            sc->in_auth = 1;
        return;
    }
    for (const char *p = buf, *end = buf + len; sc->in_auth && p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n >= 4 && (p[0] == '4' || p[0] == '5') && p[3] == ' ') {
            buf_set(&sc->auth_error, "");
            buf_append(&sc->auth_error, p, n && p[n - 1] == '\r' ? n - 1 : n);
            sc->in_auth = 0;
        } else if (n >= 4 && p[0] == '2' && p[3] == ' ') {
            sc->in_auth = 0;
            sc->authed = 1; /* a mechanism tried before may have failed */
            buf_set(&sc->auth_error, "");
        }
        p += n + 1;
    }
}

/* message_cb - hand libESMTP the job's bytes in one piece */
static const char *message_cb(void **ctx, int *len, void *arg)
{
    struct job *j = arg;

    if (*ctx == NULL)
        *ctx = calloc(1, sizeof(size_t)); /* freed by libESMTP */
    if (*ctx == NULL) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len == NULL) { /* rewind */
        *(size_t *)*ctx = 0;
        return NULL;
    }
    if (*(size_t *)*ctx >= j->len) {
        *len = 0;
        return NULL;
    }
    *len = (int)(j->len - *(size_t *)*ctx);
    *(size_t *)*ctx = j->len;
    return j->data;
}

/* auth_interact - the user name and password for AUTH */
static int auth_interact(auth_client_request_t req, char **result, int fields, void *arg)
{
    struct session_ctx *sc = arg;

    for (int i = 0; i < fields; i++) {
        if (req[i].flags & AUTH_USER)
            result[i] = (char *)conf_string(sc->r->conf, "relay.auth_user");
        else if (req[i].flags & AUTH_PASS)
            result[i] = sc->password;
        else
            return 0;
    }
    return 1;
}

/* read_password - the first line of relay.password_file */
static char *read_password(const char *path, struct buf *why)
{
    FILE *fp;
    char line[1024];
    size_t n;

    if (conf_check_secret(path, why) < 0)
        return NULL;
    if ((fp = fopen(path, "re")) == NULL) {
        buf_error(why, "cannot open %s: %m", path);
        return NULL;
    }
    if (fgets(line, sizeof(line), fp) == NULL) {
        fclose(fp);
        buf_error(why, "%s is empty", path);
        return NULL;
    }
    fclose(fp);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    return mystrdup(line);
}

/* tls_ctx - a TLS context of our own for one session */
static SSL_CTX *tls_ctx(struct relay *r, struct buf *why)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    const char *ca = conf_string(r->conf, "relay.tls_ca_file");

    if (ctx == NULL) {
        buf_error(why, "cannot make a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* judged in event_cb */
    if ((*ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL)
             : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
        SSL_CTX_free(ctx);
        buf_error(why, "cannot load CA certificates from %s",
                  *ca ? ca : "the system's store");
        return NULL;
    }
    return ctx;
}

/* status_text - a libESMTP status as "CODE X.Y.Z TEXT" on one line */
static char *status_text(const smtp_status_t *st)
{
    struct buf b;
    const char *t = st->text ? st->text : "";

    buf_init(&b, 128);
    buf_printf(&b, "%d ", st->code);
    if (st->enh_class > 0)
        buf_printf(&b, "%d.%d.%d ", st->enh_class, st->enh_subject, st->enh_detail);
    for (; *t; t++)
        buf_putc(&b, *t == '\r' || *t == '\n' ? ' ' : *t);
    while (b.len && b.data[b.len - 1] == ' ')
        buf_truncate(&b, b.len - 1);
    {
        char *s = buf_steal(&b);
        buf_release(&b);
        return s;
    }
}

/* smarthost_name - the host part of relay.smarthost (checked at load) */
static void smarthost_name(const char *hostport, struct buf *out)
{
    if (conf_smarthost(hostport, NULL, out, out) < 0)
        msg_panic("relay.smarthost '%s' passed the configuration check", hostport);
}

static void record(struct relay *r, struct spool_entry *e, size_t i, const char *type,
                   const char *reply, int attempt, const struct smtpapi_opts *opts,
                   uint32_t group);

/*
 * relay_store - the stores for this run of relay_deliver, opened at the
 * first need: for writing (bounces go on the list) where this process may,
 * else for reading (the pipeline's lookups); one handle, as a process may
 * open the stores only once.  NULL with why filled.
 */
static struct store *relay_store(struct relay *r, struct buf *why)
{
    const char *dir = conf_string(r->conf, "store.path");

    if (r->store == NULL && (r->store = store_open(dir, STORE_WRITE, why)) == NULL)
        r->store = store_open(dir, STORE_READ, why);
    return r->store;
}

/*
 * failed - recipient i of entry e failed for good (a 5xx, or 4xx until the
 * message's lifetime ran out): the failure classified and, by the tenant's
 * bounce rules, the address put on its bounce list, with the "bounce" event
 * (lib/feedback).  When the store cannot be written the event is still
 * recorded (and the sender still gets the relay's bounce).
 */
static void failed(struct relay *r, struct spool_entry *e, size_t i, const char *reply,
                   int attempt, const struct smtpapi_opts *opts, uint32_t group)
{
    struct feedback fb;
    struct buf why, st;
    json_t *fields;
    int rc;

    if (strcmp(e->env.origin, "bounce") == 0)
        return; /* our own notifications are not the sender's mail */
    buf_init(&why, 128);
    buf_init(&st, 16);
    if (relay_store(r, &why) == NULL) {
        msg_warn("%s: cannot record <%s> on the bounce list: %s", e->id,
                 e->env.rcpts[i].addr, buf_str(&why));
        record(r, e, i, "bounce", reply, attempt, opts, group);
        goto out;
    }
    memset(&fb, 0, sizeof(fb));
    fb.conf = r->conf;
    fb.store = r->store;
    fb.store_dir = conf_string(r->conf, "store.path");
    dsn_status_from_reply(reply, &st);
    fields = json_object();
    pipeline_event(opts, group, fields);
    rc = feedback_bounce(&fb, e->env.tenant, e->env.rcpts[i].addr,
                         bounce_classify(buf_str(&st), reply), buf_str(&st), reply, e->id,
                         "relay", 0, fields, NULL, &why);
    json_decref(fields);
    if (rc < 0) {
        msg_warn("%s: cannot record <%s> on the bounce list: %s", e->id,
                 e->env.rcpts[i].addr, buf_str(&why));
        record(r, e, i, "bounce", reply, attempt, opts, group);
    }
out:
    buf_release(&why);
    buf_release(&st);
}

/* record - one event for recipient i of entry e */
static void record(struct relay *r, struct spool_entry *e, size_t i, const char *type,
                   const char *reply, int attempt, const struct smtpapi_opts *opts,
                   uint32_t group)
{
    struct buf why;
    json_t *ev;

    if (strcmp(e->env.origin, "bounce") == 0)
        return; /* our own notifications are not the sender's mail */
    ev = json_pack("{s:s,s:s,s:s,s:s}", "event", type, "email", e->env.rcpts[i].addr,
                   "tenant", e->env.tenant, "sg_message_id", e->id);

    buf_init(&why, 64);
    if (reply && strcmp(type, "dropped") == 0)
        json_object_set_new(ev, "reason", json_string(reply));
    else if (reply && strcmp(type, "delivered") == 0)
        json_object_set_new(ev, "response", json_string(reply));
    else if (reply && strcmp(type, "deferred") == 0) {
        json_object_set_new(ev, "response", json_string(reply));
        json_object_set_new(ev, "attempt", json_integer(attempt));
    } else if (reply) {
        struct buf st;
        buf_init(&st, 16);
        dsn_status_from_reply(reply, &st);
        json_object_set_new(ev, "reason", json_string(reply));
        json_object_set_new(ev, "status", json_string(buf_str(&st)));
        json_object_set_new(ev, "type", json_string("bounce"));
        buf_release(&st);
    }
    pipeline_event(opts, group, ev); /* last: it never replaces our fields */
    if (event_record(conf_string(r->conf, "store.path"), ev, &why) < 0)
        msg_warn("%s: cannot record %s event: %s", e->id, type, buf_str(&why));
    json_decref(ev);
    buf_release(&why);
}

/*
 * delivered - recipient i of job j was accepted: logged, marked in the
 * spool and recorded, once (as its data is accepted, see message_sent; or
 * from finish when that event did not come)
 */
static void delivered(struct relay *r, struct job *j, size_t i, const char *reply,
                      const char *host)
{
    struct spool_entry *e = j->e;
    size_t ri = j->idx[i];
    struct buf why;

    if (j->noted[i])
        return;
    j->noted[i] = 1;
    buf_init(&why, 64);
    msg_info("%s: to=<%s>, relay=%s, status=sent (%s)", e->id, e->env.rcpts[ri].addr,
             host, reply);
    if (spool_entry_mark(e, ri, SPOOL_DELIVERED, &why) < 0)
        msg_warn("%s", buf_str(&why));
    record(r, e, ri, "delivered", reply, e->env.attempts + 1, j->opts, j->group);
    buf_release(&why);
}

/* judge - a recipient's outcome from the statuses of its transaction */
static enum outcome judge(const smtp_status_t *mail, const smtp_status_t *rcpt,
                          const smtp_status_t *data, const smtp_status_t **decider)
{
    if (mail->code >= 400) {
        *decider = mail;
        return mail->code >= 500 && mail->code != 530 ? OUT_FAILED : OUT_DEFERRED;
    }
    if (rcpt->code >= 400) {
        *decider = rcpt;
        return rcpt->code >= 500 && rcpt->code != 530 ? OUT_FAILED : OUT_DEFERRED;
    }
    if (rcpt->code >= 200 && rcpt->code < 300 && data->code >= 200 && data->code < 300) {
        *decider = data;
        return OUT_DELIVERED;
    }
    if (data->code >= 400) {
        *decider = data;
        return data->code >= 500 ? OUT_FAILED : OUT_DEFERRED;
    }
    *decider = NULL;
    return OUT_NONE; /* no answer: the session broke off */
}

/* run_session - one connection carrying these jobs */
static void run_session(struct relay *r, struct job *jobs, size_t njobs,
                        const char *password)
{
    smtp_session_t s = smtp_create_session();
    struct session_ctx sc;
    auth_context_t actx = NULL;
    SSL_CTX *ctx = NULL;
    struct buf why, host, fail, server;
    const char *starttls = conf_string(r->conf, "relay.starttls");
    const char *helo = conf_string(r->conf, "relay.helo");
    long timeout = (long)conf_duration(r->conf, "relay.timeout") * 1000;

    memset(&sc, 0, sizeof(sc));
    sc.r = r;
    sc.password = (char *)password;
    sc.jobs = jobs;
    sc.njobs = njobs;
    buf_init(&sc.tls_error, 64);
    buf_init(&sc.auth_error, 64);
    buf_init(&sc.ext_error, 64);
    buf_init(&why, 128);
    buf_init(&host, 64);
    buf_init(&fail, 128);
    buf_init(&server, 64);
    smarthost_name(conf_string(r->conf, "relay.smarthost"), &host);
    sc.host = buf_str(&host);
    sc.tls_name = *conf_string(r->conf, "relay.tls_name")
                      ? conf_string(r->conf, "relay.tls_name")
                      : buf_str(&host);
    sc.tls_required = strcmp(starttls, "required") == 0;

    conf_smarthost(conf_string(r->conf, "relay.smarthost"), &server, NULL, &why);
    smtp_set_server(s, buf_str(&server)); /* HOST:PORT, the brackets gone */
    smtp_set_hostname(s, *helo ? helo : r->domain);
    smtp_set_eventcb(s, event_cb, &sc);
    for (int w = Timeout_GREETING; w <= Timeout_DATA2; w++)
        smtp_set_timeout(s, w | Timeout_OVERRIDE_RFC2822_MINIMUM, timeout);
    if (strcmp(starttls, "none") != 0) {
        if ((ctx = tls_ctx(r, &why)) == NULL) {
            buf_set(&fail, buf_str(&why));
            goto done;
        }
        smtp_starttls_set_ctx(s, ctx);
        smtp_starttls_enable(s, sc.tls_required ? Starttls_REQUIRED : Starttls_ENABLED);
    } else {
        smtp_starttls_enable(s, Starttls_DISABLED);
    }
    if (password) {
        if (strcmp(starttls, "none") == 0) {
            buf_set(&fail, "relay.auth_user is set but relay.starttls is none: the "
                           "password is never sent in clear");
            goto done;
        }
        actx = auth_create_context();
        auth_set_mechanism_flags(actx, AUTH_PLUGIN_PLAIN, 0);
        auth_set_interact_cb(actx, auth_interact, &sc);
        sc.actx = actx; /* given to the session by event_cb, after STARTTLS */
        smtp_set_monitorcb(s, monitor_cb, &sc, 0);
    }
    for (size_t k = 0; k < njobs; k++) {
        struct job *j = &jobs[k];
        const struct spool_env *env = &j->e->env;
        if (j->skip)
            continue;
        j->m = smtp_add_message(s);
        smtp_set_reverse_path(j->m, j->sender ? j->sender : env->sender);
        smtp_set_messagecb(j->m, message_cb, j);
        smtp_size_set_estimate(j->m, (unsigned long)j->len);
        if (env->body_8bit)
            smtp_8bitmime_set_body(j->m, E8bitmime_8BITMIME);
        if (env->ret != SPOOL_RET_UNSET)
            smtp_dsn_set_ret(j->m, env->ret == SPOOL_RET_HDRS ? Ret_HDRS : Ret_FULL);
        if (env->envid)
            smtp_dsn_set_envid(j->m, env->envid);
        for (size_t i = 0; i < j->n; i++) {
            const struct spool_rcpt *rc = &env->rcpts[j->idx[i]];
            j->rr[i] = smtp_add_recipient(j->m, rc->addr);
            if (rc->notify) {
                int nf = 0;
                if (rc->notify & SPOOL_NOTIFY_NEVER)
                    nf = Notify_NEVER;
                else
                    nf = (rc->notify & SPOOL_NOTIFY_SUCCESS ? Notify_SUCCESS : 0) |
                         (rc->notify & SPOOL_NOTIFY_FAILURE ? Notify_FAILURE : 0) |
                         (rc->notify & SPOOL_NOTIFY_DELAY ? Notify_DELAY : 0);
                smtp_dsn_set_notify(j->rr[i], (enum notify_flags)nf);
            }
            if (rc->orcpt && strchr(rc->orcpt, ';')) {
                const char *semi = strchr(rc->orcpt, ';');
                char *type = mystrndup(rc->orcpt, (size_t)(semi - rc->orcpt));
                smtp_dsn_set_orcpt(j->rr[i], type, semi + 1);
                myfree(type);
            }
        }
    }
    /* it may return success after a failed TLS handshake: ask smtp_errno too */
    if (!smtp_start_session(s) || smtp_errno() != 0) {
        char eb[256];
        buf_setf(&fail, "%s", smtp_strerror(smtp_errno(), eb, sizeof(eb)));
    }
    if (sc.tls_error.len)
        buf_setf(&fail, "TLS: %s", buf_str(&sc.tls_error));
    else if (sc.ext_error.len)
        buf_set(&fail, buf_str(&sc.ext_error));

done:
    for (size_t k = 0; k < njobs; k++) {
        struct job *j = &jobs[k];
        const smtp_status_t *mail = j->m ? smtp_reverse_path_status(j->m) : NULL;
        if (j->skip)
            continue;
        const smtp_status_t *data = j->m ? smtp_message_transfer_status(j->m) : NULL;
        for (size_t i = 0; i < j->n; i++) {
            const smtp_status_t *decider = NULL, *rst;
            enum outcome o = OUT_NONE;
            if (j->m && mail && data && (rst = smtp_recipient_status(j->rr[i])) != NULL)
                o = judge(mail, rst, data, &decider);
            if (o == OUT_NONE) {
                j->out[i] = OUT_DEFERRED;
                j->reply[i] = mystrdup(
                    fail.len ? buf_str(&fail) : "connection to the smarthost broke off");
            } else if (o == OUT_FAILED && sc.actx && !sc.authed) {
                /* refused while we are not logged in: our setup, not the mail */
                struct buf t;
                char *then = status_text(decider);
                buf_init(&t, 128);
                if (sc.auth_error.len)
                    buf_printf(&t, "authentication failed (%s); then: %s",
                               buf_str(&sc.auth_error), then);
                else
                    buf_printf(&t,
                               "not authenticated (the smarthost offered no AUTH after "
                               "STARTTLS); then: %s",
                               then);
                j->out[i] = OUT_DEFERRED;
                j->reply[i] = buf_steal(&t);
                buf_release(&t);
                myfree(then);
            } else {
                j->out[i] = o;
                j->reply[i] = status_text(decider);
            }
        }
    }
    smtp_destroy_session(s);
    if (actx)
        auth_destroy_context(actx);
    if (ctx)
        SSL_CTX_free(ctx);
    buf_release(&sc.tls_error);
    buf_release(&sc.auth_error);
    buf_release(&sc.ext_error);
    buf_release(&why);
    buf_release(&host);
    buf_release(&fail);
    buf_release(&server);
}

/* first_attempt - the events of an entry seen for the first time */
static void first_attempt(struct relay *r, struct spool_entry *e,
                          const struct smtpapi_opts *opts)
{
    struct buf why;

    if (e->env.policy_done)
        return;
    for (size_t i = 0; i < e->env.nrcpts; i++)
        if (e->env.rcpts[i].state == SPOOL_PENDING)
            record(r, e, i, "processed", NULL, 0, opts,
                   opts->asm_group_id > 0 ? (uint32_t)opts->asm_group_id : 0);
    buf_init(&why, 64);
    if (spool_entry_policy_done(e, &why) < 0)
        msg_warn("%s", buf_str(&why));
    buf_release(&why);
}

/*
 * decide - each pending recipient's decision, made before every attempt (a
 * recipient who unsubscribed while the message waited is not sent it);
 * drops are marked and recorded.  groups[] gets each recipient's group.  0,
 * or -1 with why filled when nothing could be decided (nothing marked).
 */
static int decide(struct relay *r, struct pipeline *pl, struct spool_entry *e,
                  const struct smtpapi_opts *opts, uint32_t *groups, struct buf *why)
{
    struct pipeline_decision *d = mycalloc(e->env.nrcpts, sizeof(*d));
    struct buf err;
    int rc = 0;

    buf_init(&err, 64);
    for (size_t i = 0; i < e->env.nrcpts && rc == 0; i++)
        if (e->env.rcpts[i].state == SPOOL_PENDING)
            rc = pipeline_decide(pl, e->env.tenant, opts, e->env.rcpts[i].addr, &d[i],
                                 why);
    for (size_t i = 0; i < e->env.nrcpts && rc == 0; i++) {
        groups[i] = d[i].group;
        if (e->env.rcpts[i].state != SPOOL_PENDING || d[i].action != POLICY_DROP)
            continue;
        msg_info("%s: to=<%s>, status=dropped (%s)", e->id, e->env.rcpts[i].addr,
                 policy_reason_name(d[i].reason));
        if (spool_entry_mark(e, i, SPOOL_DROPPED, &err) < 0)
            msg_warn("%s", buf_str(&err));
        record(r, e, i, "dropped", policy_reason_name(d[i].reason), 0, opts, d[i].group);
    }
    myfree(d);
    buf_release(&err);
    return rc;
}

/* finish - record the outcomes of one entry's jobs and decide its future */
static void finish(struct relay *r, struct spool_entry *e, struct job *jobs, size_t njobs)
{
    struct buf why, reason;
    size_t nfail = 0, *fidx = mycalloc(e->env.nrcpts, sizeof(size_t));
    const char **fdiag = mycalloc(e->env.nrcpts, sizeof(char *));
    int64_t now = (int64_t)time(NULL);
    int attempts = e->env.attempts + 1;
    int expired;
    struct buf host;

    buf_init(&why, 128);
    buf_init(&reason, 128);
    buf_init(&host, 64);
    smarthost_name(conf_string(r->conf, "relay.smarthost"), &host);
    expired = now - e->env.created >= conf_duration(r->conf, "spool.lifetime");

    for (size_t k = 0; k < njobs; k++) {
        struct job *j = &jobs[k];
        for (size_t i = 0; i < j->n; i++) {
            size_t ri = j->idx[i];
            const char *addr = e->env.rcpts[ri].addr;
            switch (j->out[i]) {
            case OUT_DELIVERED:
                delivered(r, j, i, j->reply[i],
                          buf_str(&host)); /* if message_sent did not */
                break;
            case OUT_FAILED:
                msg_info("%s: to=<%s>, relay=%s, status=bounced (%s)", e->id, addr,
                         buf_str(&host), j->reply[i]);
                fidx[nfail] = ri;
                fdiag[nfail++] = j->reply[i];
                failed(r, e, ri, j->reply[i], attempts, j->opts, j->group);
                break;
            default:
                if (expired) {
                    msg_info("%s: to=<%s>, status=expired (%s)", e->id, addr,
                             j->reply[i]);
                    fidx[nfail] = ri;
                    fdiag[nfail++] = j->reply[i];
                    failed(r, e, ri, j->reply[i], attempts, j->opts, j->group);
                } else {
                    msg_info("%s: to=<%s>, relay=%s, status=deferred (%s)", e->id, addr,
                             buf_str(&host), j->reply[i]);
                    spool_defer_note(e, ri, j->reply[i]);
                    record(r, e, ri, "deferred", j->reply[i], attempts, j->opts,
                           j->group);
                }
                break;
            }
        }
    }
    /* the bounce is durable before its recipients are marked failed */
    if (nfail > 0 && relay_bounce(r, e, fidx, nfail, fdiag, buf_str(&host)) == 0)
        for (size_t i = 0; i < nfail; i++)
            if (spool_entry_mark(e, fidx[i], SPOOL_FAILED, &why) < 0)
                msg_warn("%s", buf_str(&why));
    if (spool_entry_pending(e) == 0) {
        if (spool_entry_remove(e, &why) < 0)
            msg_warn("%s", buf_str(&why));
    } else {
        int64_t delay =
            spool_retry_delay(attempts, conf_duration(r->conf, "spool.retry_min"),
                              conf_duration(r->conf, "spool.retry_max"));
        if (spool_entry_schedule(e, attempts, now + delay, &why) < 0 ||
            spool_entry_sync(e, &why) < 0)
            msg_warn("%s", buf_str(&why));
        spool_entry_close(e);
    }
    myfree(fidx);
    myfree(fdiag);
    buf_release(&why);
    buf_release(&reason);
    buf_release(&host);
}

/* job_new - the next job, for n of entry e's recipients */
static struct job *job_new(struct job **jobs, size_t *cap, size_t *njobs,
                           struct spool_entry *e, const struct smtpapi_opts *opts)
{
    struct job *j;

    *jobs = mygrow(*jobs, cap, *njobs, sizeof(**jobs));
    j = &(*jobs)[(*njobs)++];
    memset(j, 0, sizeof(*j));
    j->e = e;
    j->opts = opts;
    j->data = e->msg;
    j->len = e->msg_len;
    j->idx = mycalloc(e->env.nrcpts, sizeof(size_t));
    j->rr = mycalloc(e->env.nrcpts, sizeof(smtp_recipient_t));
    j->out = mycalloc(e->env.nrcpts, sizeof(enum outcome));
    j->reply = mycalloc(e->env.nrcpts, sizeof(char *));
    j->noted = mycalloc(e->env.nrcpts, 1);
    return j;
}

/* job_take_pending - every pending recipient of the job's entry */
static void job_take_pending(struct job *j)
{
    for (size_t k = 0; k < j->e->env.nrcpts; k++)
        if (j->e->env.rcpts[k].state == SPOOL_PENDING)
            j->idx[j->n++] = k;
}

/* job_settle - a job not sent: every recipient's outcome is already known */
static void job_settle(struct job *j, enum outcome o, const char *reply)
{
    j->skip = 1;
    for (size_t i = 0; i < j->n; i++) {
        j->out[i] = o;
        j->reply[i] = mystrdup(reply);
    }
}

/*
 * plan - the jobs of one entry: all its pending recipients in one
 * transaction, or with the pipeline one personalised copy each.
 */
static void plan(struct relay *r, struct pipeline *pl, struct spool_entry *e,
                 struct smtpapi_opts *opts, struct job **jobs, size_t *cap, size_t *njobs)
{
    struct buf why, reply;
    uint32_t *groups = mycalloc(e->env.nrcpts, sizeof(uint32_t));
    struct job *j;

    buf_init(&why, 128);
    buf_init(&reply, 128);
    if (pl && pipeline_options(r->conf, e->msg, e->msg_len, opts, &why) < 0) {
        /* not the sender's intent, and it will not parse tomorrow either */
        first_attempt(r, e, opts);
        j = job_new(jobs, cap, njobs, e, opts);
        job_take_pending(j);
        buf_setf(&reply, "550 5.6.0 X-SMTPAPI: %s", buf_str(&why));
        job_settle(j, OUT_FAILED, buf_str(&reply));
        goto out;
    }
    if (pl)
        pipeline_tenant_options(pl, e->env.tenant, opts);
    first_attempt(r, e, opts);
    if (pl && decide(r, pl, e, opts, groups, &why) < 0) {
        msg_warn("%s: %s; mail stays queued", e->id, buf_str(&why));
        j = job_new(jobs, cap, njobs, e, opts);
        job_take_pending(j);
        buf_setf(&reply, "cannot apply the sending policy: %s", buf_str(&why));
        job_settle(j, OUT_DEFERRED, buf_str(&reply));
        goto out;
    }
    if (!pl) {
        j = job_new(jobs, cap, njobs, e, opts);
        job_take_pending(j);
        goto out;
    }
    /* one copy each, made just before its connection (job_prepare) */
    for (size_t k = 0; k < e->env.nrcpts; k++) {
        if (e->env.rcpts[k].state != SPOOL_PENDING)
            continue;
        j = job_new(jobs, cap, njobs, e, opts);
        j->idx[j->n++] = k;
        j->group = groups[k];
        j->personal = 1;
    }
out:
    myfree(groups);
    buf_release(&why);
    buf_release(&reply);
}

/* stable_partition_8bit - the 7-bit messages' jobs first, order kept */
static void stable_partition_8bit(struct job *jobs, size_t n)
{
    struct job *tmp = mycalloc(n ? n : 1, sizeof(*tmp));
    size_t k = 0;

    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n; i++)
            if ((jobs[i].e->env.body_8bit != 0) == pass)
                tmp[k++] = jobs[i];
    memcpy(jobs, tmp, n * sizeof(*tmp));
    myfree(tmp);
}

/*
 * job_prepare - make a job's personalised copy, just before its connection:
 * copies are held for one connection at a time, never for a whole batch
 * (a 10 MB message to 1,000 recipients would be 10 GB)
 */
static void job_prepare(struct pipeline *pl, struct job *j)
{
    struct spool_entry *e = j->e;
    struct pipeline_copy c;
    struct buf why;

    if (pl && !j->skip && j->sender == NULL && e->env.sender[0] != 0) {
        /* the tenant's return path, naming the recipient when the copy has one */
        struct buf rp;

        buf_init(&rp, 256);
        buf_init(&why, 64);
        if (pipeline_return_path(pl, e->env.tenant, e->id,
                                 j->n == 1 ? e->env.rcpts[j->idx[0]].addr : NULL, &rp,
                                 &why) < 0) {
            msg_warn("%s: %s", e->id, buf_str(&why));
            job_settle(j, OUT_DEFERRED, buf_str(&why));
        } else if (rp.len > 0)
            j->sender = mystrdup(buf_str(&rp));
        buf_release(&rp);
        buf_release(&why);
    }
    if (!j->personal || j->skip)
        return;
    c.tenant = e->env.tenant;
    c.message = e->id;
    c.rcpt = e->env.rcpts[j->idx[0]].addr;
    c.group = j->group;
    c.opts = j->opts;
    buf_init(&why, 128);
    buf_init(&j->copy, e->msg_len + 1024);
    if (pipeline_personalise(pl, &c, e->msg, e->msg_len, &j->copy, NULL, &why) < 0) {
        msg_warn("%s: to=<%s>: %s", e->id, c.rcpt, buf_str(&why));
        job_settle(j, OUT_DEFERRED, buf_str(&why));
    } else {
        /*
         * marked first, so that the milter of a next hop through the same
         * MTA leaves the copy alone (pipeline.h); without a token key the
         * copy needs none (it would have failed above) and goes unmarked
         */
        struct buf mark;
        buf_init(&mark, 96);
        if (pipeline_mark(pl, c.rcpt, (int64_t)time(NULL), &mark, &why) == 0) {
            buf_append(&mark, j->copy.data, j->copy.len);
            buf_release(&j->copy);
            j->copy = mark;
        } else {
            buf_release(&mark);
        }
        j->data = j->copy.data;
        j->len = j->copy.len;
    }
    buf_release(&why);
}

/* job_release_copy - a job's copy, once its connection is over */
static void job_release_copy(struct job *j)
{
    if (j->copy.data)
        buf_release(&j->copy);
    memset(&j->copy, 0, sizeof(j->copy));
    j->data = NULL;
    j->len = 0;
}

/* job_free - what a job holds */
static void job_free(struct job *j)
{
    for (size_t i = 0; i < j->n; i++)
        myfree(j->reply[i]);
    myfree(j->idx);
    myfree(j->rr);
    myfree(j->out);
    myfree(j->reply);
    myfree(j->noted);
    myfree(j->sender);
    job_release_copy(j);
}

/* from_milter - an entry sgmilter handed over, to personalise and sign */
static int from_milter(const struct spool_entry *e)
{
    return strcmp(e->env.origin, "milter") == 0;
}

/* any_from_milter - does the batch hold one? */
static int any_from_milter(struct spool_entry **entries, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (from_milter(entries[i]))
            return 1;
    return 0;
}

/* relay_deliver - see relay.h */
void relay_deliver(struct relay *r, struct spool_entry **entries, size_t n)
{
    size_t per = (size_t)conf_int(r->conf, "relay.messages_per_connection");
    struct job *jobs = NULL;
    size_t njobs = 0, cap = 0, k;
    struct smtpapi_opts *opts = mycalloc(n ? n : 1, sizeof(*opts));
    char *password = NULL;
    struct buf why;
    const char *pwfile = conf_string(r->conf, "relay.password_file");
    struct store *st = NULL;
    struct pipeline *pl = NULL;
    int own_store =
        r->store == NULL; /* this call opens and closes it (bounces recurse) */

    buf_init(&why, 128);
    if (*conf_string(r->conf, "relay.auth_user")) {
        if (*pwfile == 0 || (password = read_password(pwfile, &why)) == NULL) {
            msg_error("cannot authenticate to the smarthost: %s; mail stays queued",
                      *pwfile ? buf_str(&why) : "relay.password_file is not set");
            goto keep;
        }
    }
    if (conf_bool(r->conf, "relay.policy") || any_from_milter(entries, n)) {
        if ((st = relay_store(r, &why)) == NULL ||
            (pl = pipeline_new(r->conf, st, r->domain, &why)) == NULL) {
            msg_error("cannot apply the sending policy: %s; mail stays queued",
                      buf_str(&why));
            goto keep;
        }
    }
    for (size_t i = 0; i < n; i++) {
        smtpapi_init(&opts[i]);
        /* the pipeline for everything with relay.policy, else for the milter's */
        if (spool_entry_pending(entries[i]) > 0)
            plan(r,
                 conf_bool(r->conf, "relay.policy") || from_milter(entries[i]) ? pl
                                                                               : NULL,
                 entries[i], &opts[i], &jobs, &cap, &njobs);
        if (spool_entry_pending(entries[i]) == 0) { /* all dropped, or nothing left */
            if (spool_entry_remove(entries[i], &why) < 0)
                msg_warn("%s", buf_str(&why));
            entries[i] = NULL;
        }
    }
    /*
     * 8-bit messages go last, on connections of their own: libESMTP makes
     * 8BITMIME mandatory for a session that has one, and a smarthost
     * without it must not hold up the other mail.  (Entries are all 8-bit
     * or not, so each entry's jobs stay adjacent.)
     */
    stable_partition_8bit(jobs, njobs);
    /* a connection carries up to "per" messages; settled jobs take no room */
    for (size_t start = 0; start < njobs;) {
        size_t end = start, sent = 0;
        int eight = jobs[start].e->env.body_8bit;
        while (end < njobs && sent < per && jobs[end].e->env.body_8bit == eight) {
            job_prepare(pl, &jobs[end]);
            sent += !jobs[end++].skip;
        }
        if (sent > 0)
            run_session(r, jobs + start, end - start, password);
        for (size_t k2 = start; k2 < end; k2++)
            job_release_copy(&jobs[k2]);
        start = end;
    }
    /* each entry's jobs are adjacent: finish them together */
    for (size_t start = 0; start < njobs; start = k) {
        for (k = start; k < njobs && jobs[k].e == jobs[start].e;)
            k++;
        finish(r, jobs[start].e, jobs + start, k - start);
    }
    for (k = 0; k < njobs; k++)
        job_free(&jobs[k]);
    for (size_t i = 0; i < n; i++)
        smtpapi_free(&opts[i]);
    /* the bounces this batch queued go now (theirs are never bounced) */
    if (r->nbounces > 0) {
        struct spool_entry **b = r->bounces;
        size_t nb = r->nbounces;
        r->bounces = NULL;
        r->nbounces = r->capbounces = 0;
        relay_deliver(r, b, nb);
        myfree(b);
    }
    goto out;
keep:
    for (size_t i = 0; i < n; i++)
        spool_entry_close(entries[i]);
out:
    if (password) {
        explicit_bzero(password, strlen(password));
        myfree(password);
    }
    pipeline_free(pl);
    if (own_store && r->store) {
        store_close(r->store);
        r->store = NULL;
    }
    myfree(opts);
    myfree(jobs);
    buf_release(&why);
}

/* relay_bounce - see relay.h */
int relay_bounce(struct relay *r, struct spool_entry *e, const size_t *idx, size_t n,
                 const char *const *diag, const char *remote)
{
    struct dsn_report rep;
    struct dsn_rcpt *rc;
    struct spool_env env;
    struct spool_entry *queued = NULL;
    struct buf msg, why, from, reason;
    char id[SPOOL_ID_MAX];
    int rv = 0;

    if (e->env.sender[0] == 0) {
        /* never bounce a bounce: the loop nullmailer and dma are known for */
        msg_info("%s: undeliverable mail from <> discarded for %zu recipient(s)", e->id,
                 n);
        return 0;
    }
    /* RFC 3461: NOTIFY=NEVER, or a list without FAILURE, asks for no bounce */
    {
        size_t kept = 0, *keep = mycalloc(n ? n : 1, sizeof(size_t));
        const char **kdiag = mycalloc(n ? n : 1, sizeof(char *));
        for (size_t i = 0; i < n; i++) {
            int nf = e->env.rcpts[idx[i]].notify;
            if (nf == 0 || (nf & SPOOL_NOTIFY_FAILURE)) {
                keep[kept] = idx[i];
                kdiag[kept++] = diag[i];
            } else {
                msg_info("%s: to=<%s>: no bounce, as NOTIFY asked", e->id,
                         e->env.rcpts[idx[i]].addr);
            }
        }
        if (kept < n) {
            rv = kept ? relay_bounce(r, e, keep, kept, kdiag, remote) : 0;
            myfree(keep);
            myfree(kdiag);
            return rv;
        }
        myfree(keep);
        myfree(kdiag);
    }
    memset(&rep, 0, sizeof(rep));
    rc = mycalloc(n, sizeof(*rc));
    buf_init(&msg, 4096);
    buf_init(&why, 128);
    buf_init(&from, 64);
    buf_init(&reason, 128);
    for (size_t i = 0; i < n; i++) {
        const struct spool_rcpt *sr = &e->env.rcpts[idx[i]];
        struct buf st;
        buf_init(&st, 16);
        dsn_status_from_reply(diag[i], &st);
        rc[i].recipient = sr->addr;
        rc[i].orcpt = sr->orcpt;
        rc[i].action = "failed";
        rc[i].status = mystrdup(buf_str(&st));
        rc[i].remote_mta = remote;
        rc[i].diagnostic = diag[i];
        rc[i].last_attempt = (int64_t)time(NULL);
        buf_release(&st);
    }
    buf_setf(&from, "MAILER-DAEMON@%s", r->domain);
    rep.reporting_mta = r->domain;
    rep.from = buf_str(&from);
    rep.to = e->env.sender;
    rep.envid = e->env.envid;
    rep.arrival = e->env.created;
    rep.rcpts = rc;
    rep.n_rcpts = n;
    rep.original = e->msg;
    rep.original_len = e->msg_len;
    rep.headers_only = e->env.ret == SPOOL_RET_HDRS;
    rep.max_return = (size_t)conf_size(r->conf, "relay.bounce_return_limit");
    if (dsn_build(&rep, &msg, &why) < 0) {
        msg_error("%s: cannot build a bounce: %s", e->id, buf_str(&why));
        rv = -1;
        goto out;
    }
    spool_env_init(&env);
    env.sender = mystrdup("");
    env.tenant = mystrdup(e->env.tenant);
    env.origin = mystrdup("bounce");
    env.created = (int64_t)time(NULL);
    env.uid = getuid();
    spool_env_add(&env, e->env.sender, NULL, 0);
    if (spool_submit(r->spool, &env, msg.data, msg.len, SPOOL_KEEP_LOCKED, id, &queued,
                     &why) < 0) {
        msg_error("%s: cannot queue a bounce: %s", e->id, buf_str(&why));
        rv = -1;
    } else {
        msg_info("%s: sender non-delivery notification: %s", e->id, id);
        /* sent by this process once the batch is done (relay_deliver); an
         * entry that could not be kept open is left to the next queue run */
        if (queued != NULL) {
            r->bounces =
                mygrow(r->bounces, &r->capbounces, r->nbounces, sizeof(*r->bounces));
            r->bounces[r->nbounces++] = queued;
        }
    }
    spool_env_release(&env);
out:
    for (size_t i = 0; i < n; i++)
        myfree((char *)rc[i].status);
    myfree(rc);
    buf_release(&msg);
    buf_release(&why);
    buf_release(&from);
    buf_release(&reason);
    return rv;
}
