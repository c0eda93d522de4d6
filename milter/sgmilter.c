/*
 * sgmilter - the pipeline on every message an MTA accepts, as a libmilter
 * daemon: the options of X-SMTPAPI (refused when invalid, and never sent
 * on), and each recipient's decision, suppressed recipients removed from
 * the transaction and recorded as events.
 *
 * A thin adapter: the decisions are lib/pipeline's, as in the relay.  The
 * callbacks never exit the process and never crash the MTA's transaction:
 * any internal failure answers milter.on_error (tempfail by default) and is
 * logged with the queue id.  Nothing is buffered but the envelope and the
 * two header fields it needs; the body is never asked for.
 *
 *   sgmilter [-c FILE] [-f]
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

#include "address.h"
#include "addrlist.h"
#include "conf.h"
#include "event.h"
#include "msg.h"
#include "mymalloc.h"
#include "pipeline.h"
#include "spool.h"
#include "store.h"
#include "header.h"

/* What every thread shares, read-only after start. */
static struct conf *conf;
static struct store *store;
static struct pipeline *pl;
static struct spool *spool;
static int skip_ok; /* the MTA takes SMFIS_SKIP from the body callback */

/* One connection's current message. */
struct msgctx {
    char *auth;   /* {auth_authen}, or NULL */
    char *sender; /* the envelope sender, brackets removed */
    char **rcpts; /* as the MTA gave them (for smfi_delrcpt) */
    size_t nrcpts, cap;
    struct buf smtpapi; /* the X-SMTPAPI value */
    int n_smtpapi;
    struct buf from; /* the first From value */
    int have_from;
    int n_lu, n_lup;     /* List-Unsubscribe and List-Unsubscribe-Post fields seen */
    struct buf hdrs;     /* the header as seen, "Name: value" CRLF each */
    struct buf body;     /* the body, when it may be needed */
    int need_body;       /* decided at the end of the header */
    char *tenant;        /* decided at the end of the header */
    struct buf fromaddr; /* the From address */
};

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

/* msg_reset - forget the message, keep the connection */
static void msg_reset(struct msgctx *m)
{
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
    buf_reset(&m->hdrs);
    buf_reset(&m->body);
    buf_reset(&m->fromaddr);
    myfree(m->tenant);
    m->tenant = NULL;
    m->n_smtpapi = m->n_lu = m->n_lup = 0;
    m->have_from = m->need_body = 0;
}

/* domain_of - the domain of an address, or NULL */
static const char *domain_of(const char *addr)
{
    const char *at = addr ? strrchr(addr, '@') : NULL;
    return at && at[1] ? at + 1 : NULL;
}

static struct msgctx *ctx_of(SMFICTX *ctx)
{
    return smfi_getpriv(ctx);
}

/* queue_id - the MTA's queue id, for log lines */
static const char *queue_id(SMFICTX *ctx)
{
    const char *id = smfi_getsymval(ctx, "i");
    return id ? id : "NOQUEUE";
}

/* on_error - the answer to an internal failure, as configured */
static sfsistat on_error(SMFICTX *ctx, const char *what)
{
    msg_error("%s: %s", queue_id(ctx), what);
    if (strcmp(conf_string(conf, "milter.on_error"), "accept") == 0)
        return SMFIS_ACCEPT;
    smfi_setreply(ctx, "451", "4.3.0", "temporary failure, try again later");
    return SMFIS_TEMPFAIL;
}

static sfsistat cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                             unsigned long f2, unsigned long f3, unsigned long *pf0,
                             unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    (void)ctx;
    (void)f2;
    (void)f3;
    /* only the actions used, and only the steps needed: no body */
    const unsigned long want = SMFIF_DELRCPT | SMFIF_CHGHDRS | SMFIF_ADDHDRS;

    if ((f0 & want) != want)
        return SMFIS_REJECT;
    *pf0 = want;
    /* the body only when the header says it is needed (SMFIS_SKIP) */
    *pf1 = f1 & (SMFIP_SKIP | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NOHELO);
    skip_ok = (f1 & SMFIP_SKIP) != 0;
    *pf2 = *pf3 = 0;
    return SMFIS_CONTINUE;
}

static sfsistat cb_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *sa)
{
    struct msgctx *m = mycalloc(1, sizeof(*m));

    (void)host;
    (void)sa;
    buf_init(&m->smtpapi, 256);
    buf_init(&m->from, 128);
    buf_init(&m->hdrs, 4096);
    buf_init(&m->body, 4096);
    buf_init(&m->fromaddr, 64);
    smfi_setpriv(ctx, m);
    return SMFIS_CONTINUE;
}

static sfsistat cb_envfrom(SMFICTX *ctx, char **argv)
{
    struct msgctx *m = ctx_of(ctx);
    const char *auth = smfi_getsymval(ctx, "{auth_authen}");

    if (m == NULL)
        return on_error(ctx, "no connection context");
    msg_reset(m);
    m->sender = unbracket(argv[0]);
    m->auth = auth && *auth ? mystrdup(auth) : NULL;
    return SMFIS_CONTINUE;
}

static sfsistat cb_envrcpt(SMFICTX *ctx, char **argv)
{
    struct msgctx *m = ctx_of(ctx);

    m->rcpts = mygrow(m->rcpts, &m->cap, m->nrcpts, sizeof(char *));
    m->rcpts[m->nrcpts++] = mystrdup(argv[0]);
    return SMFIS_CONTINUE;
}

static sfsistat cb_header(SMFICTX *ctx, char *name, char *value)
{
    struct msgctx *m = ctx_of(ctx);

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
    }
    /* the header as the message will carry it, in canonical form */
    buf_printf(&m->hdrs, "%s: ", name);
    for (const char *v = value; *v; v++) {
        if (*v == '\r' && v[1] == '\n')
            continue;
        if (*v == '\n')
            buf_putc(&m->hdrs, '\r');
        buf_putc(&m->hdrs, *v);
    }
    buf_puts(&m->hdrs, "\r\n");
    return SMFIS_CONTINUE;
}

/* cb_eoh - the tenant, and whether the body is needed at all */
static sfsistat cb_eoh(SMFICTX *ctx)
{
    struct msgctx *m = ctx_of(ctx);

    if (m->have_from)
        addrlist_first(m->from.data, m->from.len, &m->fromaddr, NULL);
    m->tenant = mystrdup(
        conf_tenant_for(conf, m->auth, domain_of(m->sender),
                        domain_of(m->fromaddr.len ? buf_str(&m->fromaddr) : NULL)));
    m->need_body = m->n_smtpapi > 0 ||
                   pipeline_may_change(pl, m->tenant,
                                       m->fromaddr.len ? buf_str(&m->fromaddr) : NULL);
    return SMFIS_CONTINUE;
}

static sfsistat cb_body(SMFICTX *ctx, unsigned char *data, size_t len)
{
    struct msgctx *m = ctx_of(ctx);

    if (!m->need_body)
        return skip_ok ? SMFIS_SKIP : SMFIS_CONTINUE;
    buf_append(&m->body, data, len);
    return SMFIS_CONTINUE;
}

/* record - one event for a recipient */
static void record(SMFICTX *ctx, const char *tenant, const char *addr, const char *type,
                   const char *reason, const struct smtpapi_opts *opts, uint32_t group)
{
    struct buf why;
    json_t *ev = json_pack("{s:s,s:s,s:s,s:s}", "event", type, "email", addr, "tenant",
                           tenant, "sg_message_id", queue_id(ctx));

    buf_init(&why, 64);
    if (reason)
        json_object_set_new(ev, "reason", json_string(reason));
    pipeline_event(opts, group, ev);
    if (event_record(conf_string(conf, "store.path"), ev, &why) < 0)
        msg_warn("%s: cannot record %s event: %s", queue_id(ctx), type, buf_str(&why));
    json_decref(ev);
    buf_release(&why);
}

/*
 * apply_fields - each "Name: value" CRLF field of fields added at the end
 * of the header, or (first) inserted at its top, keeping their order
 */
static int apply_fields(SMFICTX *ctx, const struct buf *fields, int first)
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
        if ((first ? smfi_insheader(ctx, 0, name, v.data)
                   : smfi_addheader(ctx, name, v.data)) != MI_SUCCESS)
            rc = -1;
        buf_release(&v);
        myfree(name);
    }
    myfree(all);
    return rc;
}

/*
 * personalise - the unsubscribe fields and signature for the recipient the
 * MTA keeps; when recipients get different copies, the others are written
 * once to the spool (durable before the answer) for the relay to send, and
 * removed from the transaction
 */
static sfsistat personalise(SMFICTX *ctx, struct msgctx *m,
                            const struct smtpapi_opts *opts,
                            const struct pipeline_decision *d, char **addrs, size_t kept)
{
    struct buf msg, why;
    struct pipeline_copy c;
    struct pipeline_change ch;
    size_t first = 0;
    sfsistat rc = SMFIS_CONTINUE;

    while (d[first].action == POLICY_DROP)
        first++;
    buf_init(&msg, m->hdrs.len + m->body.len + 2);
    buf_init(&why, 128);
    buf_init(&ch.added, 512);
    buf_init(&ch.sigs, 1024);
    buf_append(&msg, m->hdrs.data, m->hdrs.len);
    buf_puts(&msg, "\r\n");
    buf_append(&msg, m->body.data, m->body.len);
    c.tenant = m->tenant;
    c.message = queue_id(ctx);
    c.rcpt = addrs[first];
    c.group = d[first].group;
    c.opts = opts;
    /* first what can fail: nothing is handed over for a message tempfailed */
    if (pipeline_changes(pl, &c, msg.data, msg.len, &ch, &why) < 0) {
        rc = on_error(ctx, buf_str(&why));
        goto out;
    }
    if (kept > 1 && pipeline_per_recipient(pl, &c, msg.data, msg.len)) {
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
        if (spool_submit(spool, &env, msg.data, msg.len, 0, id, NULL, &why) < 0) {
            rc = on_error(ctx, buf_str(&why));
            spool_env_release(&env);
            goto out;
        }
        spool_env_release(&env);
        msg_info("%s: %zu recipient(s) handed to the relay as %s", queue_id(ctx),
                 kept - 1, id);
        for (size_t i = first + 1; i < m->nrcpts; i++)
            if (d[i].action != POLICY_DROP &&
                smfi_delrcpt(ctx, m->rcpts[i]) != MI_SUCCESS) {
                rc = on_error(ctx, "the MTA refused to remove a recipient");
                goto out;
            }
    }
    if (ch.drop_own) {
        for (int k = m->n_lu; k >= 1; k--)
            smfi_chgheader(ctx, "List-Unsubscribe", k, NULL);
        for (int k = m->n_lup; k >= 1; k--)
            smfi_chgheader(ctx, "List-Unsubscribe-Post", k, NULL);
    }
    if (apply_fields(ctx, &ch.added, 0) < 0 || apply_fields(ctx, &ch.sigs, 1) < 0)
        rc = on_error(ctx, "the MTA refused a header change");
out:
    buf_release(&msg);
    buf_release(&why);
    buf_release(&ch.added);
    buf_release(&ch.sigs);
    return rc;
}

static sfsistat cb_eom(SMFICTX *ctx)
{
    struct msgctx *m = ctx_of(ctx);
    struct smtpapi_opts opts;
    struct pipeline_decision *d;
    struct buf why;
    const char *tenant;
    char **addrs;
    size_t kept = 0;
    sfsistat rc = SMFIS_CONTINUE;

    smtpapi_init(&opts);
    buf_init(&why, 128);
    if (m->n_smtpapi > 1 ||
        (m->n_smtpapi == 1 && pipeline_options_field(conf, m->smtpapi.data,
                                                     m->smtpapi.len, &opts, &why) < 0)) {
        if (m->n_smtpapi > 1)
            buf_setf(&why, "the message has %d X-SMTPAPI fields; one is allowed",
                     m->n_smtpapi);
        if (strcmp(conf_string(conf, "milter.invalid_smtpapi"), "reject") == 0) {
            struct buf text;
            buf_init(&text, 128);
            buf_printf(&text, "invalid X-SMTPAPI header: %s", buf_str(&why));
            msg_info("%s: reject: %s", queue_id(ctx), buf_str(&text));
            smfi_setreply(ctx, "550", "5.6.0", (char *)buf_str(&text));
            buf_release(&text);
            smtpapi_free(&opts);
            buf_release(&why);
            return SMFIS_REJECT;
        }
        msg_info("%s: X-SMTPAPI ignored: %s", queue_id(ctx), buf_str(&why));
        smtpapi_free(&opts);
        smtpapi_init(&opts);
    }
    tenant = m->tenant;

    /* every decision first: a store error changes nothing */
    d = mycalloc(m->nrcpts ? m->nrcpts : 1, sizeof(*d));
    addrs = mycalloc(m->nrcpts ? m->nrcpts : 1, sizeof(char *));
    for (size_t i = 0; i < m->nrcpts; i++) {
        addrs[i] = unbracket(m->rcpts[i]);
        if (pipeline_decide(pl, tenant, &opts, addrs[i], &d[i], &why) < 0) {
            rc = on_error(ctx, buf_str(&why));
            goto out;
        }
    }
    for (size_t i = 0; i < m->nrcpts; i++)
        record(ctx, tenant, addrs[i], "processed", NULL, &opts, d[i].group);
    for (size_t i = 0; i < m->nrcpts; i++) {
        if (d[i].action != POLICY_DROP) {
            kept++;
            continue;
        }
        if (smfi_delrcpt(ctx, m->rcpts[i]) != MI_SUCCESS) {
            rc = on_error(ctx, "the MTA refused to remove a recipient");
            goto out;
        }
        msg_info("%s: to=<%s>, status=dropped (%s)", queue_id(ctx), addrs[i],
                 policy_reason_name(d[i].reason));
        record(ctx, tenant, addrs[i], "dropped", policy_reason_name(d[i].reason), &opts,
               d[i].group);
    }
    /* the header never leaves the server */
    for (int k = m->n_smtpapi; k >= 1; k--)
        if (smfi_chgheader(ctx, PIPELINE_SMTPAPI_FIELD, k, NULL) != MI_SUCCESS) {
            rc = on_error(ctx, "the MTA refused to remove X-SMTPAPI");
            goto out;
        }
    if (kept == 0 && m->nrcpts > 0) {
        if (strcmp(conf_string(conf, "milter.all_dropped"), "reject") == 0) {
            smfi_setreply(ctx, "550", "5.7.1", "message not accepted");
            rc = SMFIS_REJECT;
        } else {
            rc = SMFIS_DISCARD; /* the client is never told which lists */
        }
    } else if (kept > 0 && m->need_body) {
        rc = personalise(ctx, m, &opts, d, addrs, kept);
    }
out:
    for (size_t i = 0; i < m->nrcpts; i++)
        myfree(addrs[i]);
    myfree(addrs);
    myfree(d);
    smtpapi_free(&opts);
    buf_release(&why);
    return rc;
}

static sfsistat cb_abort(SMFICTX *ctx)
{
    struct msgctx *m = ctx_of(ctx);

    if (m)
        msg_reset(m);
    return SMFIS_CONTINUE;
}

static sfsistat cb_close(SMFICTX *ctx)
{
    struct msgctx *m = ctx_of(ctx);

    if (m) {
        msg_reset(m);
        buf_release(&m->smtpapi);
        buf_release(&m->from);
        buf_release(&m->hdrs);
        buf_release(&m->body);
        buf_release(&m->fromaddr);
        myfree(m);
        smfi_setpriv(ctx, NULL);
    }
    return SMFIS_CONTINUE;
}

static struct smfiDesc desc = {
    .xxfi_name = "sgmilter",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_DELRCPT | SMFIF_CHGHDRS | SMFIF_ADDHDRS,
    .xxfi_connect = cb_connect,
    .xxfi_envfrom = cb_envfrom,
    .xxfi_envrcpt = cb_envrcpt,
    .xxfi_header = cb_header,
    .xxfi_eoh = cb_eoh,
    .xxfi_body = cb_body,
    .xxfi_eom = cb_eom,
    .xxfi_abort = cb_abort,
    .xxfi_close = cb_close,
    .xxfi_negotiate = cb_negotiate,
};

static void SG_NORETURN usage(void)
{
    fprintf(stderr, "usage: sgmilter [-c FILE] [-f]\n");
    exit(EX_USAGE);
}

/* drop_privileges - become milter.user, once the socket is open */
static void drop_privileges(void)
{
    const char *user = conf_string(conf, "milter.user");
    struct passwd *pw;

    if (*user == 0 || getuid() != 0)
        return;
    if ((pw = getpwnam(user)) == NULL)
        msg_fatal("milter.user: no user %s", user);
    if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
        setuid(pw->pw_uid) < 0)
        msg_fatal("cannot become %s: %m", user);
}

/* write_pid - the pid file, if one is configured */
static void write_pid(void)
{
    const char *path = conf_string(conf, "milter.pid_file");
    FILE *f;

    if (*path == 0)
        return;
    if ((f = fopen(path, "w")) == NULL || fprintf(f, "%ld\n", (long)getpid()) < 0 ||
        fclose(f) != 0)
        msg_warn("cannot write the pid file %s: %m", path);
}

int main(int argc, char **argv)
{
    const char *conf_path = NULL, *sock;
    int foreground = 0, c, rv;
    char host[256];
    struct buf why;

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
    if ((conf = conf_load(conf_path, &why)) == NULL) {
        fprintf(stderr, "sgmilter: %s\n", buf_str(&why));
        return EX_CONFIG;
    }
    if ((store = store_open(conf_string(conf, "store.path"), STORE_READ, &why)) == NULL) {
        fprintf(stderr, "sgmilter: %s\n", buf_str(&why));
        return EX_UNAVAILABLE;
    }
    if ((spool = spool_open(conf_string(conf, "spool.path"), 0, &why)) == NULL) {
        fprintf(stderr, "sgmilter: %s\n", buf_str(&why));
        return EX_UNAVAILABLE;
    }
    if (gethostname(host, sizeof(host)) < 0)
        strcpy(host, "localhost");
    host[sizeof(host) - 1] = 0;
    if ((pl = pipeline_new(conf, store, host, &why)) == NULL) {
        fprintf(stderr, "sgmilter: %s\n", buf_str(&why));
        return EX_CONFIG;
    }
    sock = conf_string(conf, "milter.socket");
    if (smfi_setconn((char *)sock) != MI_SUCCESS || smfi_register(desc) != MI_SUCCESS ||
        smfi_opensocket(1) != MI_SUCCESS) {
        fprintf(stderr, "sgmilter: cannot listen on %s\n", sock);
        return EX_UNAVAILABLE;
    }
    drop_privileges();
    if (!foreground && daemon(0, 0) < 0) {
        fprintf(stderr, "sgmilter: cannot become a daemon: %s\n", strerror(errno));
        return EX_OSERR;
    }
    write_pid();
    msg_info("listening on %s", sock);
    rv = smfi_main();
    msg_info("stopped");
    pipeline_free(pl);
    store_close(store);
    conf_free(conf);
    buf_release(&why);
    return rv == MI_SUCCESS ? 0 : EX_SOFTWARE;
}
