/*
 * conf - the one configuration file, checked against one table, see conf.h.
 *
 * conf_table below is the whole schema: one row per setting, with its dotted
 * path, type, default (written as it would be in the file), accepted range
 * and a one-line description.  Adding a setting is adding a row here, a line
 * to etc/sendguard.conf and an entry to etc/sendguard.conf.5.  A setting
 * whose value is a list of groups ("tenants") points at the table of its
 * elements.
 *
 * conf_load parses with libconfig, then walks every setting of the file and
 * refuses the file at the first one the table does not describe or whose
 * value does not fit, naming file, line and setting.  Afterwards the file is
 * never written: a loaded conf is read-only and may be shared by threads.
 *
 * libconfig 1.5 accepts two things silently that we must not: it reads a
 * plain integer beyond 32 bits modulo 2^32 (4294967297 becomes 1), and it
 * follows @include.  check_literals() scans the text of the file for both.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conf.h"
#include "mymalloc.h"

#define TENANT_NAME_MAX 64

enum conf_type {
    CONF_STRING,
    CONF_INT,
    CONF_BOOL,
    CONF_DURATION, /* seconds: an integer, or a string with a suffix */
    CONF_SIZE,     /* bytes: an integer, or a string with a suffix */
    CONF_STRLIST,  /* ["a", "b"] or ("a", "b") */
    CONF_GROUPLIST /* ( { ... }, { ... } ), each element checked by .sub */
};

struct check;

struct conf_row {
    const char *path;           /* dotted, relative to its table */
    enum conf_type type;        /* what the value must be */
    const char *def;            /* default as written in the file; NULL: none */
    long long min, max;         /* accepted range, when max > min */
    int required;               /* must be present (inside list elements) */
    int scoped;                 /* per tenant: also in tenants' elements */
    const struct conf_row *sub; /* CONF_GROUPLIST: the table of each element */
    int (*check)(struct check *ck, const config_setting_t *s); /* further rules */
    const char *doc;                                           /* one line */
};

static int check_tenants(struct check *ck, const config_setting_t *list);
static int check_canonicalization(struct check *ck, const config_setting_t *s);
static int check_starttls(struct check *ck, const config_setting_t *s);
static int check_smarthost(struct check *ck, const config_setting_t *s);
static int check_on_error(struct check *ck, const config_setting_t *s);
static int check_invalid_smtpapi(struct check *ck, const config_setting_t *s);
static int check_all_dropped(struct check *ck, const config_setting_t *s);

/*
 * The settings a tenant may have of its own (conf_tenant_string and
 * conf_tenant_bool): in the file's top level they are every tenant's
 * default, in an element of "tenants" that tenant's value.  The tracking
 * filters carry X-SMTPAPI's names, which override them per message.
 */
#define SCOPED_BOOL(p, d, text)                                                          \
    {                                                                                    \
        .path = p, .type = CONF_BOOL, .def = d, .scoped = 1, .doc = text                 \
    }
#define SCOPED_STRING(p, d, text)                                                        \
    {                                                                                    \
        .path = p, .type = CONF_STRING, .def = d, .scoped = 1, .doc = text               \
    }
#define SCOPED_INT(p, d, lo, hi, text)                                                   \
    {                                                                                    \
        .path = p, .type = CONF_INT, .def = d, .min = lo, .max = hi, .scoped = 1,        \
        .doc = text                                                                      \
    }
#define SCOPED_DURATION(p, d, text)                                                      \
    {                                                                                    \
        .path = p, .type = CONF_DURATION, .def = d, .scoped = 1, .doc = text             \
    }
#define SCOPED_ROWS                                                                      \
    SCOPED_BOOL("tracking.clicktrack.enable", "false",                                   \
                "links in HTML through the tracker"),                                    \
        SCOPED_BOOL("tracking.clicktrack.enable_text", "false",                          \
                    "bare URLs in plain text too"),                                      \
        SCOPED_BOOL("tracking.opentrack.enable", "false", "the open pixel"),             \
        SCOPED_STRING("tracking.opentrack.replace", "", "the tag the pixel replaces"),   \
        SCOPED_BOOL("tracking.subscriptiontrack.enable", "false",                        \
                    "the unsubscribe footer"),                                           \
        SCOPED_STRING("tracking.subscriptiontrack.text_html", "",                        \
                      "its HTML (<% words %> the link); empty: the hosted services'"),   \
        SCOPED_STRING("tracking.subscriptiontrack.text_plain", "",                       \
                      "its text (<% %> the URL); empty: the hosted services'"),          \
        SCOPED_STRING("tracking.subscriptiontrack.replace", "",                          \
                      "a tag replaced by the URL instead of a footer"),                  \
        SCOPED_BOOL("tracking.footer.enable", "false", "a footer"),                      \
        SCOPED_STRING("tracking.footer.text_html", "", "the footer in HTML parts"),      \
        SCOPED_STRING("tracking.footer.text_plain", "", "the footer in text parts"),     \
        SCOPED_BOOL("tracking.ganalytics.enable", "false", "utm_* on tracked links"),    \
        SCOPED_STRING("tracking.ganalytics.utm_source", "", "utm_source"),               \
        SCOPED_STRING("tracking.ganalytics.utm_medium", "", "utm_medium"),               \
        SCOPED_STRING("tracking.ganalytics.utm_term", "", "utm_term"),                   \
        SCOPED_STRING("tracking.ganalytics.utm_content", "", "utm_content"),             \
        SCOPED_STRING("tracking.ganalytics.utm_campaign", "", "utm_campaign"),           \
        SCOPED_STRING("pages.name", "",                                                  \
                      "the sender's name on sgtrackd's pages; empty: the tenant's"),     \
        SCOPED_STRING("pages.unsubscribe",                                               \
                      "Stop sending {group} mail from {name} to {email}?",               \
                      "the unsubscribe page's question"),                                \
        SCOPED_STRING("pages.unsubscribed",                                              \
                      "Done: {email} is unsubscribed from {group} mail from {name}.",    \
                      "the page after unsubscribing"),                                   \
        SCOPED_STRING("pages.preferences", "Choose the mail {name} sends to {email}.",   \
                      "the preferences page's heading text"),                            \
        SCOPED_STRING("pages.footer", "",                                                \
                      "a line at the bottom of every page (an address)"),                \
        SCOPED_BOOL("bounces.suppress_hard", "true",                                     \
                    "a hard bounce (no such user or domain) drops the address's mail"),  \
        SCOPED_INT("bounces.soft_limit", "3", 0, 32,                                     \
                   "soft bounces within soft_window that drop its mail; 0: never"),      \
        SCOPED_DURATION("bounces.soft_window", "7d",                                     \
                        "the window soft bounces count in"),                             \
        SCOPED_BOOL("bounces.suppress_block", "false",                                   \
                    "a block (policy, spam, authentication) drops its mail"),            \
        SCOPED_STRING("feedback.return_path", "",                                        \
                      "LOCAL@DOMAIN: outgoing mail's envelope sender becomes "           \
                      "LOCAL+TOKEN@DOMAIN; empty: the sender's own")

/* Each element of "tenants". */
static const struct conf_row tenant_table[] = {
    {.path = "name", .type = CONF_STRING, .required = 1, .doc = "the tenant's name"},
    {.path = "logins", .type = CONF_STRLIST, .doc = "SASL logins that belong to it"},
    {.path = "domains", .type = CONF_STRLIST, .doc = "sender and From domains"},
    SCOPED_ROWS,
    {.path = NULL},
};

/* The schema: every setting there is.  Keep in step with sendguard.conf(5). */
static const struct conf_row conf_table[] = {
    {.path = "store.path",
     .type = CONF_STRING,
     .def = "/var/lib/sendguard",
     .doc = "directory of the Tokyo Cabinet stores and the event log"},
    {.path = "store.write_batch",
     .type = CONF_INT,
     .def = "5000",
     .min = 1,
     .max = 100000,
     .doc = "rows per write transaction in bulk operations"},
    {.path = "smtpapi.max_size",
     .type = CONF_SIZE,
     .def = "16k",
     .doc = "largest X-SMTPAPI header accepted"},
    {.path = "dkim.key_dir",
     .type = CONF_STRING,
     .def = "/etc/sendguard/keys",
     .doc = "where sgadmin dkim generate writes private keys (DOMAIN/SELECTOR.pem)"},
    {.path = "dkim.canonicalization",
     .type = CONF_STRING,
     .def = "relaxed/relaxed",
     .check = check_canonicalization,
     .doc = "header/body canonicalisation: simple or relaxed each"},
    {.path = "dkim.headers",
     .type = CONF_STRLIST,
     .doc = "header fields to sign (default: From, Reply-To, Subject, ... Feedback-ID)"},
    {.path = "dkim.expire",
     .type = CONF_DURATION,
     .def = "0",
     .doc = "signatures expire (x=) this long after signing; 0: never"},
    {.path = "dkim.default_domain",
     .type = CONF_STRING,
     .def = "",
     .doc = "whose keys sign mail from a domain without keys; empty: none"},
    {.path = "spool.path",
     .type = CONF_STRING,
     .def = "/var/spool/sendguard",
     .doc = "the queue directory of sgrelay and sgmilter"},
    {.path = "spool.lifetime",
     .type = CONF_DURATION,
     .def = "5d",
     .doc = "how long a message is retried before it is returned to its sender"},
    {.path = "spool.retry_min",
     .type = CONF_DURATION,
     .def = "5m",
     .doc = "the wait after the first failed attempt"},
    {.path = "spool.retry_max",
     .type = CONF_DURATION,
     .def = "1h",
     .doc = "the longest wait between attempts (the wait doubles up to it)"},
    {.path = "relay.smarthost",
     .type = CONF_STRING,
     .def = "127.0.0.1:25",
     .check = check_smarthost,
     .doc = "HOST:PORT (or [ADDRESS]:PORT) the relay forwards mail to"},
    {.path = "relay.starttls",
     .type = CONF_STRING,
     .def = "opportunistic",
     .check = check_starttls,
     .doc = "none, opportunistic or required (verified certificate and host name)"},
    {.path = "relay.tls_ca_file",
     .type = CONF_STRING,
     .def = "",
     .doc = "CA certificates the smarthost's certificate must chain to; empty: the "
            "system's"},
    {.path = "relay.tls_name",
     .type = CONF_STRING,
     .def = "",
     .doc = "the name the smarthost's certificate must carry; empty: its host"},
    {.path = "relay.auth_user",
     .type = CONF_STRING,
     .def = "",
     .doc = "SMTP AUTH (PLAIN, LOGIN) user name; empty: no AUTH"},
    {.path = "relay.password_file",
     .type = CONF_STRING,
     .def = "",
     .doc = "file holding the AUTH password (a secret: not readable by others)"},
    {.path = "relay.helo",
     .type = CONF_STRING,
     .def = "",
     .doc = "the name given in EHLO; empty: this host's name"},
    {.path = "relay.domain",
     .type = CONF_STRING,
     .def = "",
     .doc =
         "domain of local senders and unqualified recipients; empty: this host's name"},
    {.path = "relay.timeout",
     .type = CONF_DURATION,
     .def = "5m",
     .doc = "how long to wait for the smarthost at each step"},
    {.path = "relay.connections",
     .type = CONF_INT,
     .def = "4",
     .min = 1,
     .max = 64,
     .doc = "parallel connections of one queue run"},
    {.path = "relay.messages_per_connection",
     .type = CONF_INT,
     .def = "100",
     .min = 1,
     .max = 10000,
     .doc = "messages sent over one connection before it is closed"},
    {.path = "relay.message_size_limit",
     .type = CONF_SIZE,
     .def = "10M",
     .doc = "the largest message accepted"},
    {.path = "relay.bounce_return_limit",
     .type = CONF_SIZE,
     .def = "100k",
     .doc = "a bounce returns the whole message up to this size, else its header"},
    {.path = "relay.policy",
     .type = CONF_BOOL,
     .def = "false",
     .doc = "apply the pipeline (suppressions, unsubscribe headers, DKIM) in the relay"},
    {.path = "secrets.token_key_file",
     .type = CONF_STRING,
     .def = "/etc/sendguard/token.key",
     .doc = "keys of the unsubscribe and tracking tokens (sgadmin token generate)"},
    {.path = "secrets.webhook_key_file",
     .type = CONF_STRING,
     .def = "/etc/sendguard/webhook.key",
     .doc = "the P-256 key that signs the event webhook (sgadmin webhook key)"},
    {.path = "tracker.url",
     .type = CONF_STRING,
     .def = "",
     .doc = "https base URL of sgtrackd (unsubscribe links); empty: https://DOMAIN"},
    {.path = "tracker.listen",
     .type = CONF_STRING,
     .def = "127.0.0.1:8025",
     .doc = "HOST:PORT sgtrackd listens on (behind the TLS reverse proxy)"},
    {.path = "tracker.threads",
     .type = CONF_INT,
     .def = "0",
     .min = 0,
     .max = 256,
     .doc = "sgtrackd's threads; 0: one per CPU"},
    {.path = "tracker.max_connections",
     .type = CONF_INT,
     .def = "1000",
     .min = 1,
     .max = 100000,
     .doc = "connections sgtrackd holds at once (more wait in the kernel's queue)"},
    {.path = "tracker.max_request_size",
     .type = CONF_SIZE,
     .def = "16k",
     .doc = "bytes of a request's line, header and body (more: 413 or 431)"},
    {.path = "tracker.max_headers",
     .type = CONF_INT,
     .def = "64",
     .min = 1,
     .max = 10000,
     .doc = "header fields of a request (more: 431)"},
    {.path = "tracker.timeout",
     .type = CONF_DURATION,
     .def = "15s",
     .doc = "a connection idle this long is closed (slow clients)"},
    {.path = "tracker.trusted_proxies",
     .type = CONF_STRLIST,
     .def = NULL,
     .doc =
         "addresses whose X-Forwarded-For names the client; default 127.0.0.1 and ::1"},
    {.path = "tracker.user",
     .type = CONF_STRING,
     .def = "",
     .doc = "the user sgtrackd becomes after opening its socket; empty: stay"},
    {.path = "tracker.pid_file",
     .type = CONF_STRING,
     .def = "/run/sendguard/sgtrackd.pid",
     .doc = "sgtrackd's pid file; empty: none"},
    {.path = "unsubscribe.mailto",
     .type = CONF_STRING,
     .def = "",
     .doc = "address of mailto unsubscribes (LOCAL+TOKEN@DOMAIN); empty: "
            "unsubscribe@DOMAIN"},
    {.path = "unsubscribe.keep_existing",
     .type = CONF_BOOL,
     .def = "true",
     .doc = "keep an application's own List-Unsubscribe instead of adding ours"},
    {.path = "feedback.max_size",
     .type = CONF_SIZE,
     .def = "10M",
     .doc = "bytes of a message the ingest command reads (the rest is not parsed)"},
    {.path = "feedback.match_window",
     .type = CONF_DURATION,
     .def = "7d",
     .doc = "a report with no token counts for an address sent to within this time"},
    {.path = "stats.timezone",
     .type = CONF_STRING,
     .def = "UTC",
     .doc = "the days of the statistics: UTC, an offset (+02:00) or a zone (Europe/Berlin)"},
    {.path = "webhook.batch_size",
     .type = CONF_INT,
     .def = "1000",
     .min = 1,
     .max = 10000,
     .doc = "events in one POST of the event webhook at most"},
    {.path = "webhook.batch_age",
     .type = CONF_DURATION,
     .def = "5s",
     .doc = "how long a batch not full waits for more events"},
    {.path = "webhook.timeout",
     .type = CONF_DURATION,
     .def = "30s",
     .doc = "how long one POST may take"},
    {.path = "webhook.retry_for",
     .type = CONF_DURATION,
     .def = "24h",
     .doc = "how long a batch is tried again (failures, 5xx) before it is given up"},
    {.path = "webhook.user",
     .type = CONF_STRING,
     .def = "",
     .doc = "the user sgwebhook becomes when started as root; empty: stay"},
    {.path = "webhook.pid_file",
     .type = CONF_STRING,
     .def = "/run/sendguard/sgwebhook.pid",
     .doc = "sgwebhook's pid file; empty: none"},
    {.path = "milter.socket",
     .type = CONF_STRING,
     .def = "unix:/run/sendguard/sgmilter.sock",
     .doc = "where sgmilter listens: unix:PATH (or local:PATH), inet:PORT@HOST or "
            "inet6:PORT@HOST"},
    {.path = "milter.user",
     .type = CONF_STRING,
     .def = "",
     .doc = "the user sgmilter runs as after opening its socket; empty: stay"},
    {.path = "milter.pid_file",
     .type = CONF_STRING,
     .def = "/run/sendguard/sgmilter.pid",
     .doc = "sgmilter's pid file; empty: none"},
    {.path = "milter.on_error",
     .type = CONF_STRING,
     .def = "tempfail",
     .check = check_on_error,
     .doc = "an internal failure answers tempfail, or accept (the message unchanged)"},
    {.path = "milter.invalid_smtpapi",
     .type = CONF_STRING,
     .def = "reject",
     .check = check_invalid_smtpapi,
     .doc = "an invalid X-SMTPAPI is rejected (550 5.6.0), or ignored (logged, removed)"},
    {.path = "milter.all_dropped",
     .type = CONF_STRING,
     .def = "discard",
     .check = check_all_dropped,
     .doc = "a message with every recipient suppressed is discarded, or rejected (550 "
            "5.7.1)"},
    {.path = "milter.max_headers",
     .type = CONF_INT,
     .def = "1000",
     .min = 1,
     .max = 1000000,
     .doc = "header fields a message may have (more: 552 5.3.4)"},
    {.path = "milter.max_header_size",
     .type = CONF_SIZE,
     .def = "100k",
     .doc = "bytes of one header field, name and value (more: 552 5.3.4)"},
    {.path = "milter.max_body_size",
     .type = CONF_SIZE,
     .def = "64M",
     .doc = "bytes of body held for a message that may change (more: 552 5.3.4)"},
    {.path = "milter.body_memory",
     .type = CONF_SIZE,
     .def = "1M",
     .doc = "bytes of body held in memory; beyond, in a private temporary file"},
    {.path = "milter.tmp_dir",
     .type = CONF_STRING,
     .def = "",
     .doc = "directory of those temporary files; empty: $TMPDIR, else /tmp"},
    {.path = "milter.stop_timeout",
     .type = CONF_DURATION,
     .def = "1m",
     .doc = "how long SIGTERM waits for the connections (and messages) in flight"},
    {.path = "log.verbose", .type = CONF_INT, .def = "0", .doc = "debug logging level"},
    {.path = "tenants",
     .type = CONF_GROUPLIST,
     .sub = tenant_table,
     .check = check_tenants,
     .doc = "SASL logins and domains of each tenant"},
    SCOPED_ROWS,
    {.path = NULL},
};

/* One tenant, as conf_tenant_for() needs it; strings live in the config_t. */
struct conf_tenant {
    const char *name;
    const config_setting_t *logins; /* NULL when absent */
    const config_setting_t *domains;
    const config_setting_t *elem; /* the element of "tenants" */
};

struct conf {
    config_t cfg; /* empty for the embedded defaults */
    char *file;   /* NULL for the embedded defaults */
    struct conf_tenant *tenants;
    size_t ntenants;
};

/* The state of one check of a file. */
struct check {
    const char *file;
    struct buf *why;
};

/* loc_error - fill why with "FILE:LINE: " and the reason; returns -1 */
static int SG_PRINTF(3, 4)
    loc_error(struct check *ck, const config_setting_t *s, const char *fmt, ...)
{
    const char *file = s ? config_setting_source_file(s) : NULL;
    unsigned line = s ? config_setting_source_line(s) : 0;
    va_list ap;

    if (ck->why == NULL)
        return -1;
    buf_reset(ck->why);
    buf_printf(ck->why, "%s:", file ? file : ck->file);
    if (line)
        buf_printf(ck->why, "%u:", line);
    buf_putc(ck->why, ' ');
    va_start(ap, fmt);
    buf_vprintf(ck->why, fmt, ap);
    va_end(ap);
    return -1;
}

/* parse_number - digits with one optional suffix from units; -1 if bad */
static int parse_number(const char *text, const char *units, const long long *mult,
                        long long *out, int *overflow)
{
    const char *p = text;
    const char *u;
    long long v = 0;

    *overflow = 0;
    if (!isdigit((unsigned char)*p))
        return -1;
    for (; isdigit((unsigned char)*p); p++) {
        int d = *p - '0';

        if (v > (LLONG_MAX - d) / 10)
            *overflow = 1;
        else
            v = v * 10 + d;
    }
    if (*p != 0) {
        if (p[1] != 0 || (u = strchr(units, *p)) == NULL)
            return -1;
        if (v > LLONG_MAX / mult[u - units])
            *overflow = 1;
        else
            v *= mult[u - units];
    }
    if (*overflow)
        return -1;
    *out = v;
    return 0;
}

/* conf_parse_duration - see conf.h */
int conf_parse_duration(const char *text, long long *secs, struct buf *why)
{
    static const long long mult[] = {1, 60, 3600, 86400, 604800};
    int overflow;

    if (parse_number(text, "smhdw", mult, secs, &overflow) == 0)
        return 0;
    if (overflow)
        return buf_error(why, "duration '%s' is too large", text);
    return buf_error(why, "bad duration '%s' (use s, m, h, d, w)", text);
}

/* conf_parse_size - see conf.h */
int conf_parse_size(const char *text, long long *bytes, struct buf *why)
{
    static const long long mult[] = {
        1024, 1024, 1024 * 1024, 1024 * 1024, 1024 * 1024 * 1024, 1024 * 1024 * 1024};
    int overflow;

    if (parse_number(text, "kKmMgG", mult, bytes, &overflow) == 0)
        return 0;
    if (overflow)
        return buf_error(why, "size '%s' is too large", text);
    return buf_error(why, "bad size '%s' (use k, M, G)", text);
}

/* type_name - what a value of this type is, for "must be ..." */
static const char *type_name(enum conf_type type)
{
    switch (type) {
    case CONF_STRING:
        return "a string";
    case CONF_INT:
        return "an integer";
    case CONF_BOOL:
        return "true or false";
    case CONF_DURATION:
        return "a duration (seconds, or a string such as \"5m\")";
    case CONF_SIZE:
        return "a size (bytes, or a string such as \"16k\")";
    case CONF_STRLIST:
        return "a list of strings";
    case CONF_GROUPLIST:
        return "a list of groups";
    }
    return "?";
}

/* row_find - the row of this exact path, or NULL */
static const struct conf_row *row_find(const struct conf_row *rows, const char *path)
{
    for (; rows->path; rows++)
        if (strcmp(rows->path, path) == 0)
            return rows;
    return NULL;
}

/* row_is_group - does any row live below this path? */
static int row_is_group(const struct conf_row *rows, const char *path)
{
    size_t len = strlen(path);

    for (; rows->path; rows++)
        if (strncmp(rows->path, path, len) == 0 && rows->path[len] == '.')
            return 1;
    return 0;
}

/* row_get - the row a getter asks for; a path or type mismatch is a bug */
static const struct conf_row *row_get(const char *path, enum conf_type type,
                                      const char *getter)
{
    const struct conf_row *row = row_find(conf_table, path);

    if (row == NULL)
        msg_panic("%s: no setting '%s' in the configuration table", getter, path);
    if (row->type != type)
        msg_panic("%s: setting '%s' is %s, not %s", getter, path, type_name(row->type),
                  type_name(type));
    return row;
}

/* row_default - the default of a number-like row as a number */
static long long row_default(const struct conf_row *row)
{
    long long v = 0;
    char *end;

    switch (row->type) {
    case CONF_INT:
        errno = 0;
        v = strtoll(row->def, &end, 10);
        if (errno != 0 || end == row->def || *end != 0)
            msg_panic("conf: setting '%s': bad default '%s'", row->path, row->def);
        break;
    case CONF_BOOL:
        if (strcmp(row->def, "true") == 0)
            v = 1;
        else if (strcmp(row->def, "false") != 0)
            msg_panic("conf: setting '%s': bad default '%s'", row->path, row->def);
        break;
    case CONF_DURATION:
        if (conf_parse_duration(row->def, &v, NULL) < 0)
            msg_panic("conf: setting '%s': bad default '%s'", row->path, row->def);
        break;
    case CONF_SIZE:
        if (conf_parse_size(row->def, &v, NULL) < 0)
            msg_panic("conf: setting '%s': bad default '%s'", row->path, row->def);
        break;
    default:
        msg_panic("conf: setting '%s' has no numeric default", row->path);
    }
    if (row->max > row->min && (v < row->min || v > row->max))
        msg_panic("conf: setting '%s': default %lld out of range", row->path, v);
    return v;
}

/* table_check - every default of the table parses and is in range */
static void table_check(void)
{
    for (const struct conf_row *row = conf_table; row->path; row++) {
        if (row->type == CONF_STRING && row->def == NULL)
            msg_panic("conf: setting '%s' has no default", row->path);
        if (row->type != CONF_STRING && row->type != CONF_STRLIST &&
            row->type != CONF_GROUPLIST)
            (void)row_default(row);
    }
}

/* check_range - a number-like value against its row's range */
static int check_range(struct check *ck, const struct conf_row *row,
                       const config_setting_t *s, const char *name, long long v)
{
    if (v < 0 && (row->type == CONF_DURATION || row->type == CONF_SIZE))
        return loc_error(ck, s, "setting '%s': %lld is negative", name, v);
    if (row->max > row->min && (v < row->min || v > row->max))
        return loc_error(ck, s, "setting '%s': %lld is out of range (%lld..%lld)", name,
                         v, row->min, row->max);
    return 0;
}

static int check_group(struct check *ck, const struct conf_row *rows,
                       const config_setting_t *group, const char *rel, const char *shown);

/* check_elements - each element of a list setting */
static int check_elements(struct check *ck, const struct conf_row *row,
                          const config_setting_t *s, const char *name)
{
    int n = config_setting_length(s);
    struct buf shown;
    int rc = 0;

    buf_init(&shown, 64);
    buf_setf(&shown, "%s.", name);
    /*
     * A misfit element is reported at the line of the list: libconfig dates
     * a scalar element by the token after it, which may be on the next line.
     */
    for (int i = 0; i < n && rc == 0; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);

        if (row->type == CONF_STRLIST && config_setting_type(e) != CONFIG_TYPE_STRING)
            rc = loc_error(ck, s, "setting '%s' must be %s", name, type_name(row->type));
        else if (row->type == CONF_GROUPLIST && !config_setting_is_group(e))
            rc = loc_error(ck, s, "setting '%s' must be %s", name, type_name(row->type));
        else if (row->type == CONF_GROUPLIST)
            rc = check_group(ck, row->sub, e, "", buf_str(&shown));
    }
    buf_release(&shown);
    return rc;
}

/* check_value - one setting against its row */
static int check_value(struct check *ck, const struct conf_row *row,
                       const config_setting_t *s, const char *name)
{
    int type = config_setting_type(s);
    int is_int = type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64;
    struct buf reason;
    long long v;
    int rc;

    switch (row->type) {
    case CONF_STRING:
        if (type != CONFIG_TYPE_STRING)
            goto wrong_type;
        break;
    case CONF_BOOL:
        if (type != CONFIG_TYPE_BOOL)
            goto wrong_type;
        break;
    case CONF_INT:
        if (!is_int)
            goto wrong_type;
        if (check_range(ck, row, s, name, config_setting_get_int64(s)) < 0)
            return -1;
        break;
    case CONF_DURATION:
    case CONF_SIZE:
        if (is_int) {
            v = config_setting_get_int64(s);
        } else if (type == CONFIG_TYPE_STRING) {
            buf_init(&reason, 64);
            rc = row->type == CONF_DURATION
                     ? conf_parse_duration(config_setting_get_string(s), &v, &reason)
                     : conf_parse_size(config_setting_get_string(s), &v, &reason);
            if (rc < 0)
                loc_error(ck, s, "setting '%s': %s", name, buf_str(&reason));
            buf_release(&reason);
            if (rc < 0)
                return -1;
        } else {
            goto wrong_type;
        }
        if (check_range(ck, row, s, name, v) < 0)
            return -1;
        break;
    case CONF_STRLIST:
    case CONF_GROUPLIST:
        /* an empty [] is an array; a non-empty array cannot hold groups */
        if (type != CONFIG_TYPE_LIST && type != CONFIG_TYPE_ARRAY)
            goto wrong_type;
        if (check_elements(ck, row, s, name) < 0)
            return -1;
        break;
    }
    return row->check ? row->check(ck, s) : 0;

wrong_type:
    return loc_error(ck, s, "setting '%s' must be %s", name, type_name(row->type));
}

/*
 * check_group - every member of a group, and every required row, against the
 * rows under rel ("" or "store."); names in reasons are prefixed by shown.
 */
static int check_group(struct check *ck, const struct conf_row *rows,
                       const config_setting_t *group, const char *rel, const char *shown)
{
    int n = config_setting_length(group);
    size_t rel_len = strlen(rel);
    struct buf path, name;
    int rc = 0;

    buf_init(&path, 64);
    buf_init(&name, 64);
    for (int i = 0; i < n && rc == 0; i++) {
        const config_setting_t *m = config_setting_get_elem(group, (unsigned)i);
        const struct conf_row *row;

        buf_setf(&path, "%s%s", rel, config_setting_name(m));
        buf_setf(&name, "%s%s", shown, buf_str(&path));
        if ((row = row_find(rows, buf_str(&path))) != NULL) {
            rc = check_value(ck, row, m, buf_str(&name));
        } else if (row_is_group(rows, buf_str(&path))) {
            if (!config_setting_is_group(m)) {
                rc = loc_error(ck, m, "setting '%s' must be a group", buf_str(&name));
            } else {
                buf_putc(&path, '.');
                rc = check_group(ck, rows, m, buf_str(&path), shown);
            }
        } else {
            rc = loc_error(ck, m, "unknown setting '%s'", buf_str(&name));
        }
    }
    for (const struct conf_row *row = rows; rc == 0 && row->path; row++) {
        if (!row->required || strncmp(row->path, rel, rel_len) != 0 ||
            strchr(row->path + rel_len, '.') != NULL)
            continue;
        if (config_setting_get_member(group, row->path + rel_len) == NULL)
            rc = loc_error(ck, group, "setting '%s%s' is required", shown, row->path);
    }
    buf_release(&path);
    buf_release(&name);
    return rc;
}

/* check_tenants - names valid, unique and not the reserved "default" */
/* check_canonicalization - "simple" or "relaxed", "/", "simple" or "relaxed" */
static int check_canonicalization(struct check *ck, const config_setting_t *s)
{
    const char *v = config_setting_get_string(s);

    if (conf_dkim_canon(v, NULL, NULL) < 0)
        return loc_error(ck, s,
                         "setting 'dkim.canonicalization': '%s' is not HEADER/BODY with "
                         "each simple or relaxed",
                         v);
    return 0;
}

/* check_starttls - relay.starttls is one of three words */
static int check_starttls(struct check *ck, const config_setting_t *s)
{
    const char *v = config_setting_get_string(s);

    if (strcmp(v, "none") != 0 && strcmp(v, "opportunistic") != 0 &&
        strcmp(v, "required") != 0)
        return loc_error(
            ck, s,
            "setting 'relay.starttls': '%s' is not none, opportunistic or required", v);
    return 0;
}

/* one_of - a string setting that must be one of two words */
static int one_of(struct check *ck, const config_setting_t *s, const char *name,
                  const char *a, const char *b)
{
    const char *v = config_setting_get_string(s);

    if (strcmp(v, a) != 0 && strcmp(v, b) != 0)
        return loc_error(ck, s, "setting '%s': '%s' is not %s or %s", name, v, a, b);
    return 0;
}

static int check_on_error(struct check *ck, const config_setting_t *s)
{
    return one_of(ck, s, "milter.on_error", "tempfail", "accept");
}

static int check_invalid_smtpapi(struct check *ck, const config_setting_t *s)
{
    return one_of(ck, s, "milter.invalid_smtpapi", "reject", "ignore");
}

static int check_all_dropped(struct check *ck, const config_setting_t *s)
{
    return one_of(ck, s, "milter.all_dropped", "discard", "reject");
}

/* conf_smarthost - see conf.h */
int conf_smarthost(const char *hostport, struct buf *server, struct buf *host,
                   struct buf *why)
{
    const char *h = hostport, *end, *port;
    size_t hlen;

    if (*h == '[') {
        if ((end = strchr(h, ']')) == NULL)
            return buf_error(why, "'%s': '[' without ']'", hostport);
        h++;
        hlen = (size_t)(end - h);
        port = end[1] == ':' ? end + 2 : NULL;
        if (end[1] != 0 && end[1] != ':')
            return buf_error(why, "'%s': something after ']' that is not ':PORT'",
                             hostport);
        if (memchr(h, ':', hlen) != NULL)
            return buf_error(why,
                             "'%s': IPv6 addresses cannot be given to libESMTP; use a "
                             "host name",
                             hostport);
    } else {
        port = strchr(h, ':');
        hlen = port ? (size_t)(port - h) : strlen(h);
        if (port)
            port++;
        if (port && strchr(port, ':') != NULL)
            return buf_error(why, "'%s': more than one ':' (IPv6 is not supported)",
                             hostport);
    }
    if (hlen == 0)
        return buf_error(why, "'%s': no host", hostport);
    if (port && (*port == 0 || strpbrk(port, " \t/") != NULL))
        return buf_error(why, "'%s': bad port", hostport);
    if (host) {
        buf_set(host, "");
        buf_append(host, h, hlen);
    }
    if (server) {
        buf_set(server, "");
        buf_append(server, h, hlen);
        buf_printf(server, ":%s", port ? port : "25");
    }
    return 0;
}

/* check_smarthost - relay.smarthost is HOST, HOST:PORT, [ADDR] or [ADDR]:PORT */
static int check_smarthost(struct check *ck, const config_setting_t *s)
{
    struct buf why;
    int rc = 0;

    buf_init(&why, 64);
    if (conf_smarthost(config_setting_get_string(s), NULL, NULL, &why) < 0)
        rc = loc_error(ck, s, "setting 'relay.smarthost': %s", buf_str(&why));
    buf_release(&why);
    return rc;
}

/* conf_dkim_canon - see conf.h */
int conf_dkim_canon(const char *text, int *header_relaxed, int *body_relaxed)
{
    const char *slash = strchr(text, '/');
    int h, b;

    if (slash == NULL)
        return -1;
    if ((size_t)(slash - text) == 6 && strncmp(text, "simple", 6) == 0)
        h = 0;
    else if ((size_t)(slash - text) == 7 && strncmp(text, "relaxed", 7) == 0)
        h = 1;
    else
        return -1;
    if (strcmp(slash + 1, "simple") == 0)
        b = 0;
    else if (strcmp(slash + 1, "relaxed") == 0)
        b = 1;
    else
        return -1;
    if (header_relaxed)
        *header_relaxed = h;
    if (body_relaxed)
        *body_relaxed = b;
    return 0;
}

static int check_tenants(struct check *ck, const config_setting_t *list)
{
    int n = config_setting_length(list);
    struct buf reason;
    int rc = 0;

    buf_init(&reason, 64);
    for (int i = 0; i < n && rc == 0; i++) {
        const config_setting_t *name =
            config_setting_get_member(config_setting_get_elem(list, (unsigned)i), "name");
        const char *str = config_setting_get_string(name);

        if (!conf_tenant_valid(str, &reason)) {
            rc = loc_error(ck, name, "setting 'tenants.name': %s", buf_str(&reason));
            break;
        }
        if (strcmp(str, "default") == 0) {
            rc = loc_error(ck, name,
                           "tenant 'default' is reserved: mail that matches "
                           "no tenant belongs to it");
            break;
        }
        for (int j = 0; j < i; j++) {
            const config_setting_t *other = config_setting_get_member(
                config_setting_get_elem(list, (unsigned)j), "name");

            if (strcmp(config_setting_get_string(other), str) == 0) {
                rc = loc_error(ck, name,
                               "tenant '%s' is declared twice (first at line %u)", str,
                               config_setting_source_line(other));
                break;
            }
        }
    }
    buf_release(&reason);
    return rc;
}

/* check_number - one numeric literal at *pp; advances past it */
static int check_number(struct check *ck, const char **pp, unsigned line)
{
    const char *start = *pp;
    const char *p = start;
    int hex = 0;
    int is64;
    char token[32];
    size_t len;

    if (*p == '-' || *p == '+')
        p++;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        hex = 1;
        for (p += 2; isxdigit((unsigned char)*p); p++)
            ;
    } else {
        while (isdigit((unsigned char)*p))
            p++;
        if (*p == '.' || *p == 'e' || *p == 'E') {
            while (isdigit((unsigned char)*p) || (*p && strchr(".eE+-", *p)))
                p++;
            *pp = p;
            return 0; /* a float */
        }
    }
    len = (size_t)(p - start);
    is64 = *p == 'L';
    while (*p == 'L')
        p++;
    *pp = p;
    if (len < sizeof(token)) {
        long long v;
        int ok;

        memcpy(token, start, len);
        token[len] = 0;
        errno = 0;
        v = hex ? (long long)strtoull(token, NULL, 16) : strtoll(token, NULL, 10);
        ok = errno == 0;
        if (hex)
            ok = ok && v >= 0 && (is64 || v <= INT_MAX);
        else
            ok = ok && (is64 || (v >= INT_MIN && v <= INT_MAX));
        if (ok)
            return 0;
    } else {
        snprintf(token, sizeof(token), "%.*s...", (int)sizeof(token) - 4, start);
    }
    if (is64)
        return buf_error(ck->why, "%s:%u: integer '%s' does not fit in 64 bits", ck->file,
                         line, token);
    return buf_error(ck->why,
                     "%s:%u: integer '%s' does not fit in 32 bits (append L for a "
                     "64-bit integer)",
                     ck->file, line, token);
}

/* check_literals - reject what libconfig 1.5 reads wrongly or follows */
static int check_literals(struct check *ck, const char *text)
{
    const char *p = text;
    unsigned line = 1;

    while (*p) {
        if (*p == '\n') {
            line++;
            p++;
        } else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
            while (*p && *p != '\n')
                p++;
        } else if (p[0] == '/' && p[1] == '*') {
            for (p += 2; *p && !(p[0] == '*' && p[1] == '/'); p++)
                if (*p == '\n')
                    line++;
            if (*p)
                p += 2;
        } else if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1])
                    p++;
                if (*p == '\n')
                    line++;
            }
            if (*p)
                p++;
        } else if (strncmp(p, "@include", 8) == 0) {
            return buf_error(ck->why,
                             "%s:%u: @include is not supported: sendguard reads "
                             "one file",
                             ck->file, line);
        } else if (isalpha((unsigned char)*p) || *p == '*') {
            while (isalnum((unsigned char)*p) || (*p && strchr("-_*", *p)))
                p++;
        } else if (isdigit((unsigned char)*p) ||
                   ((*p == '-' || *p == '+') && isdigit((unsigned char)p[1]))) {
            if (check_number(ck, &p, line) < 0)
                return -1;
        } else if (*p == '.' && isdigit((unsigned char)p[1])) {
            while (isdigit((unsigned char)*p) || (*p && strchr(".eE+-", *p)))
                p++;
        } else {
            p++;
        }
    }
    return 0;
}

/* read_text - the whole file, or NULL with why filled */
static char *read_text(const char *path, struct buf *why)
{
    struct stat st;
    struct buf text;
    char chunk[4096];
    size_t n;
    FILE *fp;

    if ((fp = fopen(path, "r")) == NULL) {
        buf_error(why, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
        buf_error(why, "%s: %s", path, strerror(EISDIR));
        fclose(fp);
        return NULL;
    }
    buf_init(&text, st.st_size > 0 ? (size_t)st.st_size : 1024);
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        buf_append(&text, chunk, n);
    if (ferror(fp)) {
        buf_error(why, "%s: %s", path, strerror(errno));
        buf_release(&text);
        fclose(fp);
        return NULL;
    }
    fclose(fp);
    return text.data; /* the caller frees it with myfree */
}

/* conf_new - an empty conf */
static struct conf *conf_new(void)
{
    struct conf *conf = mycalloc(1, sizeof(*conf));

    config_init(&conf->cfg);
    return conf;
}

/* conf_defaults - see conf.h */
struct conf *conf_defaults(void)
{
    table_check();
    return conf_new();
}

/* collect_tenants - the tenants of a checked file, in file order */
static void collect_tenants(struct conf *conf)
{
    const config_setting_t *list = config_lookup(&conf->cfg, "tenants");
    int n = list ? config_setting_length(list) : 0;

    if (n <= 0)
        return;
    conf->tenants = mycalloc((size_t)n, sizeof(*conf->tenants));
    conf->ntenants = (size_t)n;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        struct conf_tenant *t = &conf->tenants[i];

        t->name = config_setting_get_string(config_setting_get_member(e, "name"));
        t->logins = config_setting_get_member(e, "logins");
        t->domains = config_setting_get_member(e, "domains");
        t->elem = e;
    }
}

/* syntax_error - libconfig's own complaint, as "FILE:LINE: syntax error: ..." */
static void syntax_error(const struct conf *conf, const char *path, struct buf *why)
{
    const char *file = config_error_file(&conf->cfg);
    const char *text = config_error_text(&conf->cfg);
    int line = config_error_line(&conf->cfg);

    if (file == NULL)
        file = path;
    if (config_error_type(&conf->cfg) == CONFIG_ERR_FILE_IO)
        buf_error(why, "%s: %s", file, text ? text : "file I/O error");
    else if (text == NULL || strcmp(text, "syntax error") == 0)
        buf_error(why, "%s:%d: syntax error", file, line);
    else
        buf_error(why, "%s:%d: syntax error: %s", file, line, text);
}

/* conf_load_file - load and check one file */
static struct conf *conf_load_file(const char *path, struct buf *why)
{
    struct check ck;
    struct conf *conf;
    char *text;

    if ((text = read_text(path, why)) == NULL)
        return NULL;
    conf = conf_defaults();
    conf->file = mystrdup(path);
    ck.file = conf->file;
    ck.why = why;
    if (!config_read_file(&conf->cfg, path)) {
        syntax_error(conf, path, why);
        goto error;
    }
    /* literals first: a wrapped integer would otherwise be judged by its wrong value */
    if (check_literals(&ck, text) < 0 ||
        check_group(&ck, conf_table, config_root_setting(&conf->cfg), "", "") < 0)
        goto error;
    myfree(text);
    collect_tenants(conf);
    return conf;

error:
    myfree(text);
    conf_free(conf);
    return NULL;
}

/* conf_load - see conf.h */
struct conf *conf_load(const char *path, struct buf *why)
{
    struct stat st;

    if (path == NULL) {
        if (stat(CONF_DEFAULT_PATH, &st) < 0 && (errno == ENOENT || errno == ENOTDIR))
            return conf_defaults();
        path = CONF_DEFAULT_PATH;
    }
    return conf_load_file(path, why);
}

/* conf_file - see conf.h */
const char *conf_file(const struct conf *conf)
{
    return conf->file;
}

/* conf_lookup - the setting of path in the file, or NULL for the default */
static const config_setting_t *conf_lookup(const struct conf *conf, const char *path)
{
    return config_lookup(&conf->cfg, path);
}

/* conf_string - see conf.h */
const char *conf_string(const struct conf *conf, const char *path)
{
    const struct conf_row *row = row_get(path, CONF_STRING, "conf_string");
    const config_setting_t *s = conf_lookup(conf, path);

    return s ? config_setting_get_string(s) : row->def;
}

/* conf_int - see conf.h */
long long conf_int(const struct conf *conf, const char *path)
{
    const struct conf_row *row = row_get(path, CONF_INT, "conf_int");
    const config_setting_t *s = conf_lookup(conf, path);

    return s ? config_setting_get_int64(s) : row_default(row);
}

/* conf_bool - see conf.h */
int conf_bool(const struct conf *conf, const char *path)
{
    const struct conf_row *row = row_get(path, CONF_BOOL, "conf_bool");
    const config_setting_t *s = conf_lookup(conf, path);

    return s ? config_setting_get_bool(s) : (int)row_default(row);
}

/* number_value - a duration or size from the file (s), else the default */
static long long number_value(const config_setting_t *s, const struct conf_row *row)
{
    long long v;
    int rc;

    if (s == NULL)
        return row_default(row);
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return config_setting_get_int64(s);
    rc = row->type == CONF_DURATION
             ? conf_parse_duration(config_setting_get_string(s), &v, NULL)
             : conf_parse_size(config_setting_get_string(s), &v, NULL);
    if (rc < 0)
        msg_panic("conf: setting '%s' was not checked at load time", row->path);
    return v;
}

/* conf_duration - see conf.h */
long long conf_duration(const struct conf *conf, const char *path)
{
    const struct conf_row *row = row_get(path, CONF_DURATION, "conf_duration");

    return number_value(conf_lookup(conf, path), row);
}

/* conf_size - see conf.h */
long long conf_size(const struct conf *conf, const char *path)
{
    const struct conf_row *row = row_get(path, CONF_SIZE, "conf_size");

    return number_value(conf_lookup(conf, path), row);
}

/* scoped_lookup - a tenant's own setting of a scoped row, else the file's top level */
static const config_setting_t *scoped_lookup(const struct conf *conf, const char *tenant,
                                             const struct conf_row *row,
                                             const char *getter)
{
    const config_setting_t *s;

    if (!row->scoped)
        msg_panic("%s: setting '%s' is not one a tenant may have", getter, row->path);
    for (size_t i = 0; tenant && i < conf->ntenants; i++)
        if (strcmp(conf->tenants[i].name, tenant) == 0 &&
            (s = config_setting_lookup((config_setting_t *)conf->tenants[i].elem,
                                       row->path)) != NULL)
            return s;
    return conf_lookup(conf, row->path);
}

/* conf_tenant_string - see conf.h */
const char *conf_tenant_string(const struct conf *conf, const char *tenant,
                               const char *path)
{
    const struct conf_row *row = row_get(path, CONF_STRING, "conf_tenant_string");
    const config_setting_t *s = scoped_lookup(conf, tenant, row, "conf_tenant_string");

    return s ? config_setting_get_string(s) : row->def;
}

/* conf_tenant_bool - see conf.h */
int conf_tenant_bool(const struct conf *conf, const char *tenant, const char *path)
{
    const struct conf_row *row = row_get(path, CONF_BOOL, "conf_tenant_bool");
    const config_setting_t *s = scoped_lookup(conf, tenant, row, "conf_tenant_bool");

    return s ? config_setting_get_bool(s) : (int)row_default(row);
}

/* conf_tenant_int - see conf.h */
long long conf_tenant_int(const struct conf *conf, const char *tenant, const char *path)
{
    const struct conf_row *row = row_get(path, CONF_INT, "conf_tenant_int");
    const config_setting_t *s = scoped_lookup(conf, tenant, row, "conf_tenant_int");

    return s ? config_setting_get_int64(s) : row_default(row);
}

/* conf_tenant_duration - see conf.h */
long long conf_tenant_duration(const struct conf *conf, const char *tenant,
                               const char *path)
{
    const struct conf_row *row = row_get(path, CONF_DURATION, "conf_tenant_duration");

    return number_value(scoped_lookup(conf, tenant, row, "conf_tenant_duration"), row);
}

/* conf_setting - see conf.h */
const config_setting_t *conf_setting(const struct conf *conf, const char *path)
{
    const struct conf_row *row = row_find(conf_table, path);

    if (row ? row->type != CONF_STRLIST && row->type != CONF_GROUPLIST
            : !row_is_group(conf_table, path))
        msg_panic("conf_setting: no list or group '%s' in the configuration table", path);
    return conf_lookup(conf, path);
}

/* ascii_casecmp - strcasecmp without the locale: domains are ASCII (punycode) */
static int ascii_casecmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        int ca = *a >= 'A' && *a <= 'Z' ? *a - 'A' + 'a' : *a;
        int cb = *b >= 'A' && *b <= 'Z' ? *b - 'A' + 'a' : *b;

        if (ca != cb || ca == 0)
            return ca - cb;
    }
}

/* list_has - is str on a string list (NULL: an empty list)? */
static int list_has(const config_setting_t *list, const char *str, int nocase)
{
    int n = list ? config_setting_length(list) : 0;

    for (int i = 0; i < n; i++) {
        const char *e = config_setting_get_string_elem(list, i);

        if (e && (nocase ? ascii_casecmp(e, str) : strcmp(e, str)) == 0)
            return 1;
    }
    return 0;
}

/* conf_tenant_for - see conf.h */
const char *conf_tenant_for(const struct conf *conf, const char *sasl_login,
                            const char *sender_domain, const char *from_domain)
{
    const char *keys[] = {sasl_login, sender_domain, from_domain};

    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        if (keys[k] == NULL || *keys[k] == 0)
            continue;
        for (size_t i = 0; i < conf->ntenants; i++) {
            const struct conf_tenant *t = &conf->tenants[i];

            if (k == 0 ? list_has(t->logins, keys[k], 0)
                       : list_has(t->domains, keys[k], 1))
                return t->name;
        }
    }
    return "default";
}

/* conf_tenant_valid - see conf.h */
int conf_tenant_valid(const char *name, struct buf *why)
{
    size_t len = name ? strlen(name) : 0;

    if (len == 0) {
        buf_error(why, "tenant name is empty");
        return 0;
    }
    if (len > TENANT_NAME_MAX) {
        buf_error(why, "tenant name is longer than %d characters", TENANT_NAME_MAX);
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];

        if (isascii(c) && (isalnum(c) || c == '.' || c == '_' || c == '-'))
            continue;
        if (isascii(c) && isprint(c))
            buf_error(why, "tenant name has '%c' (use A-Z, a-z, 0-9, '.', '_', '-')", c);
        else
            buf_error(
                why, "tenant name has byte 0x%02x (use A-Z, a-z, 0-9, '.', '_', '-')", c);
        return 0;
    }
    if (name[0] == '.' || name[0] == '-') {
        buf_error(why, "tenant name '%s' starts with '%c'", name, name[0]);
        return 0;
    }
    return 1;
}

/* conf_check_secret - see conf.h */
int conf_check_secret(const char *path, struct buf *why)
{
    struct stat st;
    const char *how;

    if (lstat(path, &st) < 0)
        return buf_error(why, "%s: %s", path, strerror(errno));
    if (S_ISLNK(st.st_mode))
        return buf_error(why, "%s is a symbolic link; a secret must be a regular file",
                         path);
    if (!S_ISREG(st.st_mode))
        return buf_error(why, "%s is not a regular file", path);
    if ((st.st_mode & S_IRWXO) == 0)
        return 0;
    if ((st.st_mode & S_IROTH) && (st.st_mode & S_IWOTH))
        how = "readable and writable";
    else if (st.st_mode & S_IROTH)
        how = "readable";
    else if (st.st_mode & S_IWOTH)
        how = "writable";
    else
        how = "accessible";
    return buf_error(why, "%s is %s by other users (mode %04o); chmod 600 it", path, how,
                     (unsigned)(st.st_mode & 07777));
}

/* conf_free - see conf.h */
void conf_free(struct conf *conf)
{
    if (conf == NULL)
        return;
    config_destroy(&conf->cfg);
    myfree(conf->tenants);
    myfree(conf->file);
    myfree(conf);
}
