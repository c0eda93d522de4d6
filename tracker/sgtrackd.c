/*
 * sgtrackd - the HTTP endpoint behind the URLs the pipeline writes into mail
 * (sgtrackd(8)): /c/TOKEN a tracked link (302 to the original), /o/TOKEN the
 * open pixel, /u/TOKEN the unsubscribe page and its one-click POST (RFC
 * 8058), /p/TOKEN the preferences page.
 *
 * Everything a request needs is in its token (lib/token, pipeline.h's
 * metadata): no per-message state.  A token that does not decrypt, or that
 * was made for another purpose than its path's, is answered 404 and nothing
 * else: the tracker is not an open redirector, and a forged token learns
 * nothing.  Each answer is given only once what it did is durable: the
 * event in the log (and for unsubscribes the store changed first, so a retry
 * after a failure does it again harmlessly); a store or log that cannot be
 * written answers 503, and the client (a browser, a mailbox provider's
 * one-click POST) retries.
 *
 * libmicrohttpd serves: a pool of tracker.threads threads, each with its own
 * epoll loop, keep-alive, the request and connection limits of
 * sendguard.conf.  The main thread only waits for signals: SIGHUP loads the
 * configuration and keys anew (requests in flight keep the state they began
 * with), SIGTERM and SIGINT stop.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <unistd.h>

#include <microhttpd.h>

#include "address.h"
#include "buf.h"
#include "conf.h"
#include "daemon.h"
#include "event.h"
#include "html.h"
#include "msg.h"
#include "mymalloc.h"
#include "pipeline.h"
#include "smtpapi.h"
#include "store.h"
#include "stats.h"
#include "token.h"

#if MHD_VERSION < 0x00097002
typedef int MHD_RESULT;
#else
typedef enum MHD_Result MHD_RESULT;
#endif

/* What a request works with; SIGHUP makes a new one. */
struct state {
    unsigned refs; /* requests holding it, and current, under state_lock */
    struct conf *conf;
    struct store *store;   /* the process's, opened once (store.path at start) */
    const char *store_dir; /* the same */
    struct token_keys *keys;
    long long max_request, max_headers;
    const config_setting_t *trusted; /* tracker.trusted_proxies, NULL: the default */
};

static const char *conf_path;
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static struct state *current;
static struct store *store; /* one handle per process (lib/store) */
static char *store_dir;

/* The answers that never change, made once. */
static struct MHD_Response *pixel_response, *not_found, *bad_request, *busy;

/* The 43 bytes of a transparent 1x1 GIF. */
static const unsigned char pixel_gif[] = {
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80,
    0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x21, 0xf9, 0x04,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b};

/* Pages: no script, nothing from elsewhere, forms only to ourselves. */
#define PAGE_CSP                                                                         \
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "                \
    "frame-ancestors 'none'; base-uri 'none'"

/* ---- state ---- */

static void state_free(struct state *s)
{
    if (s == NULL)
        return;
    token_keys_free(s->keys);
    conf_free(s->conf);
    myfree(s);
}

/*
 * state_load - configuration and keys, and the store at the first load (a
 * changed store.path takes effect at a restart); NULL with why filled
 */
static struct state *state_load(struct buf *why)
{
    struct state *s = mycalloc(1, sizeof(*s));

    s->refs = 1;
    if ((s->conf = conf_load(conf_path, why)) == NULL)
        goto fail;
    stats_configure(s->conf); /* a zone is set at the first load only */
    if (store == NULL) {
        if ((store = store_open(conf_string(s->conf, "store.path"),
                                STORE_WRITE | STORE_CREATE, why)) == NULL)
            goto fail;
        store_dir = mystrdup(conf_string(s->conf, "store.path"));
    } else if (strcmp(store_dir, conf_string(s->conf, "store.path")) != 0) {
        msg_warn("reload: store.path changed: it takes effect at a restart");
    }
    s->store = store;
    s->store_dir = store_dir;
    if ((s->keys = token_keys_load(conf_string(s->conf, "secrets.token_key_file"),
                                   why)) == NULL)
        goto fail;
    s->max_request = conf_size(s->conf, "tracker.max_request_size");
    s->max_headers = conf_int(s->conf, "tracker.max_headers");
    s->trusted = conf_setting(s->conf, "tracker.trusted_proxies");
    msg_set_verbose((int)conf_int(s->conf, "log.verbose"));
    return s;
fail:
    state_free(s);
    return NULL;
}

static struct state *state_get(void)
{
    struct state *s;

    pthread_mutex_lock(&state_lock);
    s = current;
    s->refs++;
    pthread_mutex_unlock(&state_lock);
    return s;
}

static void state_put(struct state *s)
{
    int last;

    pthread_mutex_lock(&state_lock);
    last = --s->refs == 0;
    pthread_mutex_unlock(&state_lock);
    if (last)
        state_free(s);
}

/* ---- one request ---- */

/* What a request holds from its first call to its completion. */
struct request {
    struct state *st;
    struct buf body;
    int too_big; /* the body went over tracker.max_request_size */
};

/* The request being answered, and its decoded token. */
struct ask {
    struct MHD_Connection *conn;
    struct request *rq;
    struct state *st;
    struct token t;
    struct pipeline_meta meta; /* a click's link, the events' fields, groups to display */
    char ip[INET6_ADDRSTRLEN];
};

/* client_ip - the peer's address, or X-Forwarded-For's last when a trusted proxy's */
static void client_ip(struct ask *a)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(a->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const config_setting_t *trusted = a->st->trusted;
    const char *xff, *last;
    int ok = 0;

    strcpy(a->ip, "");
    if (ci == NULL || ci->client_addr == NULL)
        return;
    if (ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr,
                  a->ip, sizeof(a->ip));
    else if (ci->client_addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr,
                  a->ip, sizeof(a->ip));
    if (trusted == NULL) {
        ok = strcmp(a->ip, "127.0.0.1") == 0 || strcmp(a->ip, "::1") == 0;
    } else {
        for (int i = 0; i < config_setting_length(trusted) && !ok; i++)
            ok = strcmp(config_setting_get_string_elem(trusted, i), a->ip) == 0;
    }
    xff = MHD_lookup_connection_value(a->conn, MHD_HEADER_KIND, "X-Forwarded-For");
    if (!ok || xff == NULL)
        return;
    /* the proxy appends the address it saw: the last one */
    last = strrchr(xff, ',');
    last = last ? last + 1 : xff;
    while (*last == ' ' || *last == '\t')
        last++;
    {
        unsigned char bin[sizeof(struct in6_addr)];
        char cand[INET6_ADDRSTRLEN];
        size_t n = strcspn(last, " \t");

        if (n == 0 || n >= sizeof(cand))
            return;
        memcpy(cand, last, n);
        cand[n] = 0;
        if (inet_pton(AF_INET, cand, bin) == 1 || inet_pton(AF_INET6, cand, bin) == 1)
            strcpy(a->ip, cand);
    }
}

/*
 * record - the event of type for the token's recipient, with what the
 * request says and the message's fields from the token (built as a line:
 * clicks and opens are most of the events there are)
 */
static int record(struct ask *a, const char *type, uint32_t group, struct buf *why)
{
    const char *ua = MHD_lookup_connection_value(a->conn, MHD_HEADER_KIND, "User-Agent");
    const char *msgid = a->t.message ? a->t.message : "";
    struct event_line l;

    event_line_begin(&l, type, a->t.recipient, a->t.tenant);
    /* the first open (click) of the message by its recipient is a unique one */
    if (a->t.purpose == TOKEN_OPEN || a->t.purpose == TOKEN_CLICK) {
        struct buf err;
        int first;

        buf_init(&err, 64);
        if ((first = stats_first(a->st->store_dir, a->t.created,
                                 a->t.purpose == TOKEN_OPEN ? 'o' : 'c', a->t.tenant,
                                 msgid, a->t.recipient, &err)) < 0)
            msg_warn("cannot tell a unique %s: %s", type, buf_str(&err));
        l.unique = first > 0;
        buf_release(&err);
    }
    event_line_str(&l, "sg_message_id", msgid, strlen(msgid));
    event_line_str(&l, "ip", a->ip, strlen(a->ip));
    if (ua != NULL)
        event_line_str(&l, "useragent", ua, strlen(ua));
    if (a->t.purpose == TOKEN_CLICK)
        event_line_str(&l, "url", a->meta.url, a->meta.url_len);
    if (group != 0)
        event_line_int(&l, "asm_group_id", group);
    if (a->meta.fields_len > 2) /* the object's members, without its braces */
        event_line_members(&l, a->meta.fields + 1, a->meta.fields_len - 2);
    return event_line_end(a->st->store_dir, &l, why);
}

/* queue - answer with r (released here) and the headers every answer has */
static MHD_RESULT queue(struct MHD_Connection *conn, unsigned code,
                        struct MHD_Response *r)
{
    MHD_RESULT rc = MHD_queue_response(conn, code, r);

    MHD_destroy_response(r);
    return rc;
}

/* text_response - a short text/plain answer */
static struct MHD_Response *text_response(const char *text)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text,
                                                             MHD_RESPMEM_MUST_COPY);

    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    return r;
}

/* unavailable - 503: the store or the log could not be written; logged */
static MHD_RESULT unavailable(struct ask *a, const struct buf *why)
{
    msg_error("%s token for %s: %s; answered 503", token_purpose_name(a->t.purpose),
              a->t.tenant, buf_str(why));
    return MHD_queue_response(a->conn, MHD_HTTP_SERVICE_UNAVAILABLE, busy);
}

/* ---- pages ---- */

/* mask - an address as a page shows it: a…@example.com, not broken across lines */
static void mask(const char *addr, struct buf *out)
{
    const char *at = strrchr(addr, '@');
    size_t first = 1;

    if (at == NULL || at == addr) {
        html_escape(addr, strlen(addr), 0, out);
        return;
    }
    while (first < (size_t)(at - addr) && ((unsigned char)addr[first] & 0xc0) == 0x80)
        first++; /* the whole first character */
    buf_puts(out, "<span class=\"addr\">");
    html_escape(addr, first, 0, out);
    buf_puts(out, "\xe2\x80\xa6"); /* … */
    html_escape(at, strlen(at), 0, out);
    buf_puts(out, "</span>");
}

/* The values a page's text may name. */
struct words {
    const char *name;  /* the sender (pages.name, else the tenant) */
    const char *group; /* the group's name, "any" for everything */
    const char *email; /* the recipient */
};

/* fill - a configured text, escaped, with {name}, {group}, {email} put in */
static void fill(const char *text, const struct words *w, struct buf *out)
{
    while (*text) {
        if (strncmp(text, "{name}", 6) == 0) {
            html_escape(w->name, strlen(w->name), 0, out);
            text += 6;
        } else if (strncmp(text, "{group}", 7) == 0) {
            html_escape(w->group, strlen(w->group), 0, out);
            text += 7;
        } else if (strncmp(text, "{email}", 7) == 0) {
            mask(w->email, out);
            text += 7;
        } else {
            size_t n = strcspn(text + 1, "{") + 1;
            html_escape(text, n, 0, out);
            text += n;
        }
    }
}

/* page_begin - the page up to its main text */
static void page_begin(const char *title, const struct words *w, struct buf *out)
{
    buf_puts(out,
             "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
             "<meta name=\"robots\" content=\"noindex, nofollow\">\n<title>");
    html_escape(title, strlen(title), 0, out);
    buf_puts(out, " \xe2\x80\x93 ");
    html_escape(w->name, strlen(w->name), 0, out);
    buf_puts(
        out,
        "</title>\n<style>\n"
        "body{font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",sans-serif;"
        "color:#1b1b1b;background:#f6f6f4;margin:0}\n"
        "main{max-width:34rem;margin:3rem auto;padding:2rem;background:#fff;"
        "border:1px solid #deded9;border-radius:8px}\n"
        ".sender{margin:0;color:#555;font-size:.9em;text-transform:uppercase;"
        "letter-spacing:.05em}\n"
        "h1{font-size:1.5em;margin:.3em 0 1em}\n"
        "button{font:inherit;padding:.5em 1.3em;border:2px solid #1b1b1b;"
        "border-radius:6px;background:#1b1b1b;color:#fff;cursor:pointer}\n"
        "button.quiet{background:#fff;color:#1b1b1b}\n"
        "button:focus-visible{outline:3px solid #3b6fd8;outline-offset:2px}\n"
        "ul{list-style:none;padding:0;margin:1.5em 0}\n"
        "li{display:flex;justify-content:space-between;align-items:center;gap:1em;"
        "padding:.9em 0;border-top:1px solid #e4e4e0}\n"
        "li:last-child{border-bottom:1px solid #e4e4e0}\n"
        ".group{font-weight:600}.desc{display:block;color:#555;font-size:.9em}\n"
        ".state{display:block;font-size:.9em;font-weight:600;color:#2d6a1f}\n"
        ".state.off{color:#9a3412}\n"
        ".addr{white-space:nowrap}\n"
        ".notice{padding:.7em 1em;background:#eef5ea;border-left:4px solid #3d7a2a}\n"
        "footer{max-width:34rem;margin:0 auto 3rem;padding:0 2rem;color:#555;"
        "font-size:.85em}\n"
        "@media (max-width:40rem){main{margin:1rem;padding:1.25rem}"
        "footer{padding:0 1.25rem}}\n"
        "</style>\n</head>\n<body>\n<main>\n<p class=\"sender\">");
    html_escape(w->name, strlen(w->name), 0, out);
    buf_puts(out, "</p>\n<h1>");
    html_escape(title, strlen(title), 0, out);
    buf_puts(out, "</h1>\n");
}

/* page_end - the rest of a page */
static void page_end(const char *footer, struct buf *out)
{
    buf_puts(out, "</main>\n");
    if (*footer) {
        buf_puts(out, "<footer>");
        html_escape(footer, strlen(footer), 0, out);
        buf_puts(out, "</footer>\n");
    }
    buf_puts(out, "</body>\n</html>\n");
}

/* page - answer code with the page in html (taken) and the pages' strict headers */
static MHD_RESULT page(struct ask *a, unsigned code, struct buf *html)
{
    size_t len = html->len;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, buf_steal(html), MHD_RESPMEM_MUST_FREE);

    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    MHD_add_response_header(r, "Content-Security-Policy", PAGE_CSP);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    return queue(a->conn, code, r);
}

/* sender - pages.name, else the tenant's name */
static const char *sender(const struct ask *a)
{
    const char *n = conf_tenant_string(a->st->conf, a->t.tenant, "pages.name");

    return *n ? n : a->t.tenant;
}

/* ---- forms ---- */

/*
 * form_value - the value of key in an application/x-www-form-urlencoded body
 * into out (decoded): 1, 0 absent, -1 malformed (a bad %-escape)
 */
static int form_value(const struct buf *body, const char *key, struct buf *out)
{
    const char *p = body->data ? body->data : "", *end = p + body->len;
    size_t klen = strlen(key);

    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));

        if (eq && (size_t)(eq - p) == klen && memcmp(p, key, klen) == 0) {
            buf_reset(out);
            for (const char *v = eq + 1; v < e; v++) {
                if (*v == '+') {
                    buf_putc(out, ' ');
                } else if (*v == '%') {
                    int hi = v + 2 < e ? buf_hex_digit(v[1]) : -1;
                    int lo = hi >= 0 ? buf_hex_digit(v[2]) : -1;
                    if (lo < 0)
                        return -1;
                    buf_putc(out, hi * 16 + lo);
                    v += 2;
                } else {
                    buf_putc(out, *v);
                }
            }
            return 1;
        }
        p = e + 1;
    }
    return 0;
}

/* ---- what the tokens ask for ---- */

/* suppress - the recipient onto a list (global unsubscribes, or a group's) */
static int suppress(struct ask *a, uint32_t group, struct buf *why)
{
    struct store_fields f;
    enum store_add_result res;

    memset(&f, 0, sizeof(f));
    return store_add(a->st->store, a->t.tenant, group ? STORE_GROUP : STORE_UNSUBSCRIBES,
                     group, a->t.recipient, &f, &res, why);
}

/* click - GET /c: the event, then 302 to the link; HEAD answers alone */
static MHD_RESULT click(struct ask *a, int head)
{
    struct MHD_Response *r;
    struct buf why, loc;
    MHD_RESULT rc;

    if (a->meta.url_len == 0)
        return MHD_queue_response(a->conn, MHD_HTTP_NOT_FOUND, not_found);
    buf_init(&why, 128);
    if (!head && record(a, "click", a->t.group, &why) < 0) {
        rc = unavailable(a, &why);
        buf_release(&why);
        return rc;
    }
    buf_release(&why);
    /* a URL parser drops tabs and newlines; a header cannot carry them */
    buf_init(&loc, a->meta.url_len + 1);
    for (size_t i = 0; i < a->meta.url_len; i++)
        if (a->meta.url[i] != '\t' && a->meta.url[i] != '\r' && a->meta.url[i] != '\n')
            buf_putc(&loc, a->meta.url[i]);
    r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, buf_str(&loc)) == MHD_NO) {
        MHD_destroy_response(r);
        buf_release(&loc);
        return MHD_queue_response(a->conn, MHD_HTTP_NOT_FOUND, not_found);
    }
    buf_release(&loc);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    return queue(a->conn, MHD_HTTP_FOUND, r);
}

/* open_ - GET /o: the event, then the pixel */
static MHD_RESULT open_(struct ask *a, int head)
{
    struct buf why;
    MHD_RESULT rc;

    buf_init(&why, 128);
    if (!head && record(a, "open", a->t.group, &why) < 0)
        rc = unavailable(a, &why);
    else
        rc = MHD_queue_response(a->conn, MHD_HTTP_OK, pixel_response);
    buf_release(&why);
    return rc;
}

/* group_words - the words of a page about the token's group; 0 none, -1 */
static int group_words(struct ask *a, struct store_group *g, struct words *w,
                       struct buf *why)
{
    int rc;

    w->name = sender(a);
    w->email = a->t.recipient;
    w->group = "all";
    if (a->t.group == 0)
        return 1;
    if ((rc = store_group_get(a->st->store, a->t.tenant, a->t.group, g, why)) > 0)
        w->group = g->name;
    return rc;
}

/*
 * unsubscribe - /u: GET the page that asks (a GET alone changes nothing:
 * link scanners fetch every URL), POST unsubscribes from the token's group,
 * or from everything when it has none: the button's POST answers the
 * confirmation page, any other (RFC 8058's one-click) 200 and a line
 */
static MHD_RESULT unsubscribe(struct ask *a, int post)
{
    struct store_group g;
    struct words w;
    struct buf why, html, v, prefs;
    const char *conf_text;
    MHD_RESULT rc;
    int found, button;
    struct token pt;

    buf_init(&why, 128);
    buf_init(&html, 4096);
    buf_init(&v, 32);
    buf_init(&prefs, 256);
    if ((found = group_words(a, &g, &w, &why)) < 0) {
        rc = unavailable(a, &why);
        goto out;
    }
    if (found == 0) { /* the group was deleted since */
        rc = MHD_queue_response(a->conn, MHD_HTTP_NOT_FOUND, not_found);
        goto out;
    }
    button = post && form_value(&a->rq->body, "action", &v) > 0 &&
             strcmp(buf_str(&v), "unsubscribe") == 0;
    if (post) {
        if (suppress(a, a->t.group, &why) < 0 ||
            record(a, a->t.group ? "group_unsubscribe" : "unsubscribe", a->t.group,
                   &why) < 0) {
            rc = unavailable(a, &why);
            goto out;
        }
        if (!button) {
            rc = queue(a->conn, MHD_HTTP_OK, text_response("Unsubscribed.\n"));
            goto out;
        }
    }
    page_begin(post ? "Unsubscribed" : "Unsubscribe", &w, &html);
    conf_text = conf_tenant_string(a->st->conf, a->t.tenant,
                                   post ? "pages.unsubscribed" : "pages.unsubscribe");
    buf_puts(&html, post ? "<p class=\"notice\" role=\"status\">" : "<p>");
    fill(conf_text, &w, &html);
    buf_puts(&html, "</p>\n");
    if (!post)
        buf_puts(&html,
                 "<form method=\"post\">\n<input type=\"hidden\" name=\"action\" "
                 "value=\"unsubscribe\">\n<button type=\"submit\">Unsubscribe</button>\n"
                 "</form>\n");
    /* the preferences of the same recipient, a token of its own */
    memset(&pt, 0, sizeof(pt));
    pt.purpose = TOKEN_PREFERENCES;
    pt.group = a->t.group;
    pt.tenant = a->t.tenant;
    pt.message = a->t.message;
    pt.recipient = a->t.recipient;
    if (token_encode(a->st->keys, &pt, &prefs, &why) == 0) {
        buf_puts(&html, "<p><a href=\"../p/");
        html_escape(prefs.data, prefs.len, 1, &html);
        buf_puts(&html, "\">Manage all your email preferences</a></p>\n");
    }
    page_end(conf_tenant_string(a->st->conf, a->t.tenant, "pages.footer"), &html);
    rc = page(a, MHD_HTTP_OK, &html);
out:
    buf_release(&why);
    buf_release(&html);
    buf_release(&v);
    buf_release(&prefs);
    return rc;
}

/* The groups a preferences page shows. */
struct shown {
    struct store_group *g;
    size_t n, cap;
};

static int shown_add(const struct store_group *grp, void *ctx)
{
    struct shown *s = ctx;

    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 8;
        s->g = myrealloc(s->g, s->cap * sizeof(*s->g));
    }
    s->g[s->n++] = *grp;
    return 0;
}

/* shown_groups - asm_groups_to_display that exist, else every group of the tenant */
static int shown_groups(struct ask *a, struct shown *s, struct buf *why)
{
    struct store_group g;
    uint32_t ids[SMTPAPI_MAX_GROUPS_TO_DISPLAY];
    size_t n = pipeline_meta_groups(&a->meta, ids, SMTPAPI_MAX_GROUPS_TO_DISPLAY);
    int rc;

    if (n == 0)
        return store_group_list(a->st->store, a->t.tenant, shown_add, s, why);
    for (size_t i = 0; i < n; i++) {
        if ((rc = store_group_get(a->st->store, a->t.tenant, ids[i], &g, why)) < 0)
            return -1;
        if (rc > 0)
            shown_add(&g, s);
    }
    return 0;
}

/* has - is the recipient on that list (group) among hits? */
static int has(const struct store_hits *h, enum store_list list, uint32_t group)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->m[i].list == list && (list != STORE_GROUP || h->m[i].group == group))
            return 1;
    return 0;
}

/*
 * preferences - /p: the groups with the recipient's state, a form for each,
 * and unsubscribing from everything; a POST applies one form's change
 * (action=unsubscribe|resubscribe with group=ID, or action=unsubscribe_all)
 * and shows the page again with what was done
 */
static MHD_RESULT preferences(struct ask *a, int post)
{
    struct shown s = {NULL, 0, 0};
    struct store_hits hits;
    struct words w;
    struct buf why, html, act, gid, done;
    MHD_RESULT rc;
    int global;

    buf_init(&why, 128);
    buf_init(&html, 8192);
    buf_init(&act, 32);
    buf_init(&gid, 16);
    buf_init(&done, 128);
    store_hits_init(&hits);
    w.name = sender(a);
    w.email = a->t.recipient;
    w.group = "all";
    if (shown_groups(a, &s, &why) < 0) {
        rc = unavailable(a, &why);
        goto out;
    }
    if (post) {
        uint32_t g = 0;
        size_t i = 0;
        char *end;
        int r;

        if (form_value(&a->rq->body, "action", &act) <= 0 ||
            (r = form_value(&a->rq->body, "group", &gid)) < 0) {
            rc = MHD_queue_response(a->conn, MHD_HTTP_BAD_REQUEST, bad_request);
            goto out;
        }
        if (r > 0) {
            unsigned long v = strtoul(buf_str(&gid), &end, 10);
            for (i = 0; i < s.n && !(*end == 0 && s.g[i].id == v); i++)
                ;
            if (gid.len == 0 || *end != 0 ||
                i == s.n) { /* not one of the page's groups */
                rc = MHD_queue_response(a->conn, MHD_HTTP_BAD_REQUEST, bad_request);
                goto out;
            }
            g = (uint32_t)v;
        }
        if (strcmp(buf_str(&act), "unsubscribe_all") == 0) {
            if (suppress(a, 0, &why) < 0 || record(a, "unsubscribe", 0, &why) < 0) {
                rc = unavailable(a, &why);
                goto out;
            }
            buf_puts(&done, "You are unsubscribed from all mail.");
        } else if (g != 0 && strcmp(buf_str(&act), "unsubscribe") == 0) {
            if (suppress(a, g, &why) < 0 || record(a, "group_unsubscribe", g, &why) < 0) {
                rc = unavailable(a, &why);
                goto out;
            }
            buf_printf(&done, "You are unsubscribed from %s.", s.g[i].name);
        } else if (g != 0 && strcmp(buf_str(&act), "resubscribe") == 0) {
            if (store_remove(a->st->store, a->t.tenant, STORE_GROUP, g, a->t.recipient,
                             &why) < 0 ||
                record(a, "group_resubscribe", g, &why) < 0) {
                rc = unavailable(a, &why);
                goto out;
            }
            buf_printf(&done, "You are subscribed to %s again.", s.g[i].name);
        } else {
            rc = MHD_queue_response(a->conn, MHD_HTTP_BAD_REQUEST, bad_request);
            goto out;
        }
    }
    if (store_lookup(a->st->store, a->t.tenant, a->t.recipient, STORE_ALL_GROUPS, &hits,
                     &why) < 0) {
        rc = unavailable(a, &why);
        goto out;
    }
    global = has(&hits, STORE_UNSUBSCRIBES, 0);
    page_begin("Email preferences", &w, &html);
    if (done.len) {
        buf_puts(&html, "<p class=\"notice\" role=\"status\">");
        html_escape(done.data, done.len, 0, &html);
        buf_puts(&html, "</p>\n");
    }
    buf_puts(&html, "<p>");
    fill(conf_tenant_string(a->st->conf, a->t.tenant, "pages.preferences"), &w, &html);
    buf_puts(&html, "</p>\n");
    if (s.n > 0)
        buf_puts(&html, "<ul>\n");
    for (size_t i = 0; i < s.n; i++) {
        int off = has(&hits, STORE_GROUP, s.g[i].id);

        buf_printf(&html, "<li><span><span class=\"group\" id=\"g%u\">", s.g[i].id);
        html_escape(s.g[i].name, strlen(s.g[i].name), 0, &html);
        buf_puts(&html, "</span>");
        if (s.g[i].description[0]) {
            buf_puts(&html, "<span class=\"desc\">");
            html_escape(s.g[i].description, strlen(s.g[i].description), 0, &html);
            buf_puts(&html, "</span>");
        }
        buf_printf(&html, "<span class=\"state%s\">%s</span></span>\n",
                   off || global ? " off" : "",
                   global ? "Not sent (unsubscribed from all mail)"
                   : off  ? "Unsubscribed"
                          : "Subscribed");
        if (!global) {
            buf_printf(&html,
                       "<form method=\"post\"><input type=\"hidden\" name=\"group\" "
                       "value=\"%u\"><input type=\"hidden\" name=\"action\" value=\"%s\">"
                       "<button type=\"submit\" class=\"quiet\">%s ",
                       s.g[i].id, off ? "resubscribe" : "unsubscribe",
                       off ? "Resubscribe to" : "Unsubscribe from");
            html_escape(s.g[i].name, strlen(s.g[i].name), 0, &html);
            buf_puts(&html, "</button></form>");
        }
        buf_puts(&html, "</li>\n");
    }
    if (s.n > 0)
        buf_puts(&html, "</ul>\n");
    if (global) {
        buf_puts(&html, "<p><strong>");
        mask(a->t.recipient, &html);
        buf_puts(&html, " is unsubscribed from all mail from ");
        html_escape(w.name, strlen(w.name), 0, &html);
        buf_puts(&html, ".</strong></p>\n");
    } else {
        buf_puts(&html,
                 "<form method=\"post\"><input type=\"hidden\" name=\"action\" "
                 "value=\"unsubscribe_all\"><button type=\"submit\" class=\"quiet\">"
                 "Unsubscribe from all mail</button></form>\n");
    }
    page_end(conf_tenant_string(a->st->conf, a->t.tenant, "pages.footer"), &html);
    rc = page(a, MHD_HTTP_OK, &html);
out:
    myfree(s.g);
    store_hits_free(&hits);
    buf_release(&why);
    buf_release(&html);
    buf_release(&act);
    buf_release(&gid);
    buf_release(&done);
    return rc;
}

/* ---- the request handler ---- */

/* answer - the request's path and token to its page; a bad one 404 */
static MHD_RESULT answer(struct MHD_Connection *conn, struct request *rq, const char *url,
                         const char *method)
{
    static const struct {
        char kind;
        enum token_purpose purpose;
    } kinds[] = {{'c', TOKEN_CLICK},
                 {'o', TOKEN_OPEN},
                 {'u', TOKEN_UNSUBSCRIBE},
                 {'p', TOKEN_PREFERENCES}};
    struct ask a;
    struct buf why;
    size_t len, i;
    int post = strcmp(method, "POST") == 0, head = strcmp(method, "HEAD") == 0;
    MHD_RESULT rc;

    if (url[0] != '/' || url[1] == 0 || url[2] != '/')
        return MHD_queue_response(conn, MHD_HTTP_NOT_FOUND, not_found);
    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]) && kinds[i].kind != url[1]; i++)
        ;
    len = strlen(url + 3);
    if (i == sizeof(kinds) / sizeof(kinds[0]) || len == 0 || len > TOKEN_TEXT_MAX ||
        strspn(url + 3,
               "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != len)
        return MHD_queue_response(conn, MHD_HTTP_NOT_FOUND, not_found);
    if (post && (kinds[i].kind == 'c' || kinds[i].kind == 'o'))
        return MHD_queue_response(conn, MHD_HTTP_NOT_FOUND, not_found);
    memset(&a, 0, sizeof(a));
    a.conn = conn;
    a.rq = rq;
    a.st = rq->st;
    buf_init(&why, 128);
    if (token_decode(a.st->keys, url + 3, len, &a.t, &why) < 0 ||
        a.t.purpose != kinds[i].purpose || a.t.recipient == NULL || !a.t.recipient[0] ||
        pipeline_meta_split(a.t.data, a.t.data_len, &a.meta, &why) < 0) {
        msg_debug("/%c/: %s", url[1], buf_len(&why) ? buf_str(&why) : "another purpose");
        rc = MHD_queue_response(conn, MHD_HTTP_NOT_FOUND, not_found);
        goto out;
    }
    client_ip(&a);
    switch (kinds[i].kind) {
    case 'c':
        rc = click(&a, head);
        break;
    case 'o':
        rc = open_(&a, head);
        break;
    case 'u':
        rc = unsubscribe(&a, post);
        break;
    default:
        rc = preferences(&a, post);
        break;
    }
out:
    token_release(&a.t);
    buf_release(&why);
    return rc;
}

static MHD_RESULT handle(void *cls, struct MHD_Connection *conn, const char *url,
                         const char *method, const char *version, const char *upload,
                         size_t *upload_size, void **con_cls)
{
    struct request *rq = *con_cls;

    (void)cls;
    (void)version;
    if (rq == NULL) {
        const char *cl;
        struct MHD_Response *r;

        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 &&
            strcmp(method, "POST") != 0) {
            r = text_response("Method not allowed.\n");
            MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD, POST");
            return queue(conn, MHD_HTTP_METHOD_NOT_ALLOWED, r);
        }
        rq = mycalloc(1, sizeof(*rq));
        rq->st = state_get();
        buf_init(&rq->body, 64);
        *con_cls = rq;
        if (MHD_get_connection_values(conn, MHD_HEADER_KIND, NULL, NULL) >
            rq->st->max_headers)
            return queue(conn, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE,
                         text_response("Too many header fields.\n"));
        cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL &&
            strtoull(cl, NULL, 10) > (unsigned long long)rq->st->max_request)
            return queue(conn, MHD_HTTP_CONTENT_TOO_LARGE,
                         text_response("Request too large.\n"));
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (rq->body.len + *upload_size > (size_t)rq->st->max_request)
            rq->too_big = 1;
        else
            buf_append(&rq->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (rq->too_big)
        return queue(conn, MHD_HTTP_CONTENT_TOO_LARGE,
                     text_response("Request too large.\n"));
    return answer(conn, rq, url, method);
}

/*
 * keep_escapes - libmicrohttpd's unescaping of the path, not done: a token
 * is base64url and no other path is served, so "%00" or "%0d" in a path
 * must stay in it (and make it a 404) rather than cut or change it
 */
static size_t keep_escapes(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    return strlen(s);
}

/* completed - the request's end, answered or not */
static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode why)
{
    struct request *rq = *con_cls;

    (void)cls;
    (void)conn;
    (void)why;
    if (rq == NULL)
        return;
    state_put(rq->st);
    buf_release(&rq->body);
    myfree(rq);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct buf line;

    (void)cls;
    buf_init(&line, 128);
    buf_vprintf(&line, fmt, ap);
    while (line.len > 0 && line.data[line.len - 1] == '\n')
        buf_truncate(&line, line.len - 1);
    msg_warn("libmicrohttpd: %s", buf_str(&line));
    buf_release(&line);
}

/* ---- the daemon ---- */

/* listen_on - a listening socket on tracker.listen (HOST:PORT, [V6]:PORT) */
static int listen_on(const char *hostport)
{
    struct addrinfo hints, *res = NULL;
    char host[256];
    const char *colon = strrchr(hostport, ':'), *h = hostport;
    size_t hl;
    int fd, one = 1, rc;

    if (colon == NULL || colon[1] == 0)
        msg_fatal_status(EX_CONFIG, "tracker.listen: '%s' is not HOST:PORT", hostport);
    hl = (size_t)(colon - hostport);
    if (*h == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= sizeof(host))
        msg_fatal_status(EX_CONFIG, "tracker.listen: host too long");
    memcpy(host, h, hl);
    host[hl] = 0;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if ((rc = getaddrinfo(hl ? host : NULL, colon + 1, &hints, &res)) != 0)
        msg_fatal_status(EX_CONFIG, "tracker.listen: %s: %s", hostport, gai_strerror(rc));
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1024) < 0)
        msg_fatal_status(EX_UNAVAILABLE, "cannot listen on %s: %m", hostport);
    freeaddrinfo(res);
    return fd;
}

static void usage(void)
{
    fprintf(stderr, "usage: sgtrackd [-c FILE] [-f]\n");
    exit(EX_USAGE);
}

/* reload - SIGHUP: new requests get the new state, or the old one stays */
static void reload(void)
{
    struct state *s, *old;
    struct buf why;

    buf_init(&why, 128);
    if ((s = state_load(&why)) == NULL) {
        msg_error("reload: %s; the running configuration stays", buf_str(&why));
        buf_release(&why);
        return;
    }
    pthread_mutex_lock(&state_lock);
    old = current;
    current = s;
    pthread_mutex_unlock(&state_lock);
    if (strcmp(conf_string(s->conf, "tracker.listen"),
               conf_string(old->conf, "tracker.listen")) != 0)
        msg_warn("reload: tracker.listen changed: it takes effect at a restart");
    msg_info("reloaded %s", conf_file(s->conf) ? conf_file(s->conf) : "the defaults");
    state_put(old);
    buf_release(&why);
}

int main(int argc, char **argv)
{
    struct MHD_Daemon *d;
    struct buf why;
    sigset_t mask;
    long long threads;
    int foreground = 0, c, fd, sig;

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
    msg_open("sgtrackd", foreground ? MSG_STDERR : MSG_SYSLOG);
    buf_init(&why, 128);
    /* the signals wait for sigwait below, in every thread */
    sigemptyset(&mask);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    if ((current = state_load(&why)) == NULL) {
        fprintf(stderr, "sgtrackd: %s\n", buf_str(&why));
        return EX_CONFIG;
    }
    fd = listen_on(conf_string(current->conf, "tracker.listen"));
    daemon_become("tracker.user", conf_string(current->conf, "tracker.user"), NULL);
    if (!foreground && daemon(0, 0) < 0) {
        fprintf(stderr, "sgtrackd: cannot become a daemon: %s\n", strerror(errno));
        return EX_OSERR;
    }
    daemon_write_pid(conf_string(current->conf, "tracker.pid_file"));

    pixel_response = MHD_create_response_from_buffer(sizeof(pixel_gif), (void *)pixel_gif,
                                                     MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(pixel_response, MHD_HTTP_HEADER_CONTENT_TYPE, "image/gif");
    MHD_add_response_header(pixel_response, MHD_HTTP_HEADER_CACHE_CONTROL,
                            "no-store, no-cache, must-revalidate, max-age=0");
    MHD_add_response_header(pixel_response, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(pixel_response, "Referrer-Policy", "no-referrer");
    not_found = text_response("Not found.\n");
    bad_request = text_response("Bad request.\n");
    busy = text_response("Temporarily unavailable; please try again.\n");
    MHD_add_response_header(busy, MHD_HTTP_HEADER_RETRY_AFTER, "30");

    threads = conf_int(current->conf, "tracker.threads");
    if (threads == 0 && (threads = sysconf(_SC_NPROCESSORS_ONLN)) < 1)
        threads = 1;
    /* a pool only of two threads or more (libmicrohttpd warns about one) */
    struct MHD_OptionItem pool[] = {
        {threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)threads,
         NULL},
        {MHD_OPTION_END, 0, NULL}};
    d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_TURBO | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        handle, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET,
        fd, MHD_OPTION_ARRAY, pool, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)conf_int(current->conf, "tracker.max_connections"),
        MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)conf_duration(current->conf, "tracker.timeout"),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)conf_size(current->conf, "tracker.max_request_size") + 4096,
        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_UNESCAPE_CALLBACK,
        keep_escapes, NULL, MHD_OPTION_END);
    if (d == NULL)
        msg_fatal_status(EX_SOFTWARE, "cannot start the HTTP server");
    msg_info("listening on %s (%lld thread(s))",
             conf_string(current->conf, "tracker.listen"), threads);
    for (;;) {
        if (sigwait(&mask, &sig) != 0)
            continue;
        if (sig != SIGHUP)
            break;
        reload();
    }
    msg_info("stopping");
    MHD_stop_daemon(d);
    close(fd);
    MHD_destroy_response(pixel_response);
    MHD_destroy_response(not_found);
    MHD_destroy_response(bad_request);
    MHD_destroy_response(busy);
    state_put(current);
    store_close(store);
    myfree(store_dir);
    buf_release(&why);
    msg_info("stopped");
    return 0;
}
