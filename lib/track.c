/*
 * track - see track.h.
 */
#include "config.h"

#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "html.h"
#include "mymalloc.h"
#include "track.h"

/* The defaults of the hosted services' footers, for a filter that gives none. */
#define SUB_HTML_DEFAULT                                                                 \
    "<p style=\"text-align:center;font-size:12px\">If you would like to unsubscribe "    \
    "and stop receiving these emails <% click here %>.</p>"
#define SUB_TEXT_DEFAULT                                                                 \
    "If you would like to unsubscribe and stop receiving these emails click here: <% "   \
    "%>."

#define PIXEL_FMT_A "<img src=\""
#define PIXEL_FMT_B                                                                      \
    "\" alt=\"\" width=\"1\" height=\"1\" border=\"0\" style=\"height:1px "              \
    "!important;width:1px !important;border-width:0 !important;margin:0 "                \
    "!important;padding:0 !important\"/>"

static int on(int v)
{
    return v == 1;
}

static int set(const char *s)
{
    return s && *s;
}

/* One change to a text: len bytes at `at` become `with` (which this owns). */
struct edit {
    size_t at, len;
    char *with;
};

struct edits {
    struct edit *e;
    size_t n, cap;
};

static void add_edit(struct edits *ed, size_t at, size_t len, const char *with,
                     size_t wlen)
{
    ed->e = mygrow(ed->e, &ed->cap, ed->n, sizeof(*ed->e));
    ed->e[ed->n].at = at;
    ed->e[ed->n].len = len;
    ed->e[ed->n].with = mystrndup(with, wlen);
    ed->n++;
}

static int by_at(const void *a, const void *b)
{
    const struct edit *x = a, *y = b;
    return x->at < y->at ? -1 : x->at > y->at;
}

/* apply - text with the edits (sorted here; one overlapping an earlier is dropped) */
static void apply(struct edits *ed, const char *text, size_t len, struct buf *out)
{
    size_t pos = 0;

    qsort(ed->e, ed->n, sizeof(*ed->e), by_at);
    for (size_t i = 0; i < ed->n; i++) {
        struct edit *e = &ed->e[i];
        if (e->at < pos)
            continue;
        buf_append(out, text + pos, e->at - pos);
        buf_puts(out, e->with);
        pos = e->at + e->len;
    }
    buf_append(out, text + pos, len - pos);
}

/*
 * finish - tail (released) added at `at` and the edits applied, into out:
 * 1, or 0 when there is nothing to change
 */
static int finish(struct edits *ed, struct buf *tail, size_t at, const char *text,
                  size_t len, struct buf *out)
{
    if (tail->len)
        add_edit(ed, at, 0, tail->data, tail->len);
    buf_release(tail);
    if (ed->n == 0)
        return 0;
    apply(ed, text, len, out);
    return 1;
}

static void edits_free(struct edits *ed)
{
    for (size_t i = 0; i < ed->n; i++)
        myfree(ed->e[i].with);
    myfree(ed->e);
    ed->e = NULL;
    ed->n = ed->cap = 0;
}

/* find_tags - an edit for each occurrence of tag (when set) */
static int find_tags(struct edits *ed, const char *text, size_t len, const char *tag,
                     const char *with, size_t wlen)
{
    size_t tl = tag ? strlen(tag) : 0, pos = 0;
    int found = 0;
    const char *p;

    if (tl == 0 || with == NULL)
        return 0;
    while (pos < len && (p = memmem(text + pos, len - pos, tag, tl)) != NULL) {
        add_edit(ed, (size_t)(p - text), tl, with, wlen);
        pos = (size_t)(p - text) + tl;
        found = 1;
    }
    return found;
}

/* pixel - the open pixel's img, appended */
static void pixel(const struct track_env *env, struct buf *out)
{
    buf_puts(out, PIXEL_FMT_A);
    html_escape(env->open_url, strlen(env->open_url), 1, out);
    buf_puts(out, PIXEL_FMT_B);
}

/* put_crlf - s appended with every bare LF made CRLF (a configured footer's lines) */
static void put_crlf(struct buf *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
            buf_putc(out, '\r');
        buf_putc(out, s[i]);
    }
}

/* utf8_char - the code point of the UTF-8 sequence at s (n bytes left) and its
 * length into *len; U+FFFD and 1 for a byte that starts none */
static unsigned utf8_char(const unsigned char *s, size_t n, size_t *len)
{
    unsigned c = s[0], need = c >= 0xf0 && c < 0xf5 ? 3
                              : c >= 0xe0           ? 2
                              : c >= 0xc2           ? 1
                                                    : 0;

    if (c < 0x80) {
        *len = 1;
        return c;
    }
    if (need == 0 || need >= n)
        goto bad;
    c &= 0x3f >> need;
    for (unsigned i = 1; i <= need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            goto bad;
        c = c << 6 | (s[i] & 0x3f);
    }
    *len = need + 1;
    return c;
bad:
    *len = 1;
    return 0xfffd;
}

/*
 * tail_charset - what was added to a part (tail, in UTF-8: the configured
 * footers) put in the part's charset, see track_env
 */
static void tail_charset(struct buf *tail, const char *charset, int html)
{
    const unsigned char *s = (const unsigned char *)tail->data;
    struct buf out;
    size_t i, n;

    if ((charset && (strcmp(charset, "utf-8") == 0 || strcmp(charset, "utf8") == 0)))
        return;
    for (i = 0; i < tail->len && s[i] < 0x80; i++)
        ;
    if (i == tail->len)
        return; /* ASCII fits every charset */
    buf_init(&out, tail->len * 2);
    if (html) {
        for (i = 0; i < tail->len; i += n) {
            unsigned c = utf8_char(s + i, tail->len - i, &n);
            if (c < 0x80)
                buf_putc(&out, (int)c);
            else
                buf_printf(&out, "&#%u;", c);
        }
    } else {
        iconv_t cd = iconv_open(charset && *charset ? charset : "us-ascii", "UTF-8");
        for (i = 0; i < tail->len; i += n) {
            unsigned c = utf8_char(s + i, tail->len - i, &n);
            char conv[16], *in = (char *)s + i, *o = conv;
            size_t il = n, ol = sizeof(conv);
            if (c < 0x80) {
                buf_putc(&out, (int)c);
            } else if (cd != (iconv_t)-1 && c != 0xfffd &&
                       iconv(cd, &in, &il, &o, &ol) != (size_t)-1 && il == 0) {
                buf_append(&out, conv, sizeof(conv) - ol);
            } else {
                buf_putc(&out, '?'); /* the charset has no such character */
                if (cd != (iconv_t)-1)
                    iconv(cd, NULL, NULL, NULL, NULL);
            }
        }
        if (cd != (iconv_t)-1)
            iconv_close(cd);
    }
    buf_release(tail);
    *tail = out;
}

/*
 * footer_template - a footer with its "<% words %>" made the unsubscribe
 * link (HTML: a link with those words, text: the URL), appended to out
 */
static void footer_template(const char *tpl, const char *url, int html, struct buf *out)
{
    const char *p = tpl, *o, *c;

    while ((o = strstr(p, "<%")) != NULL && (c = strstr(o + 2, "%>")) != NULL) {
        put_crlf(out, p, (size_t)(o - p));
        const char *w = o + 2, *we = c;
        while (w < we && (*w == ' ' || *w == '\t'))
            w++;
        while (we > w && (we[-1] == ' ' || we[-1] == '\t'))
            we--;
        if (html) {
            buf_puts(out, "<a href=\"");
            html_escape(url, strlen(url), 1, out);
            buf_puts(out, "\">");
            if (we > w)
                buf_append(out, w, (size_t)(we - w));
            else
                html_escape(url, strlen(url), 0, out);
            buf_puts(out, "</a>");
        } else {
            buf_puts(out, url);
        }
        p = c + 2;
    }
    put_crlf(out, p, strlen(p));
}

/* percent - s percent-encoded for a query value */
static void percent(const char *s, struct buf *out)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~", c)) {
            buf_putc(out, c);
        } else {
            buf_putc(out, '%');
            buf_putc(out, hex[c >> 4]);
            buf_putc(out, hex[c & 15]);
        }
    }
}

/* has_param - the query (without '?') has a parameter of this name */
static int has_param(const char *q, size_t qlen, const char *name)
{
    size_t nl = strlen(name), i = 0;

    while (i < qlen) {
        const char *amp = memchr(q + i, '&', qlen - i);
        size_t end = amp ? (size_t)(amp - q) : qlen;
        if (end - i >= nl && strncmp(q + i, name, nl) == 0 &&
            (end - i == nl || q[i + nl] == '='))
            return 1;
        i = end + 1;
    }
    return 0;
}

void track_utm(const struct smtpapi_filters *f, const char *url, size_t len,
               struct buf *out)
{
    const char *names[] = {"utm_source", "utm_medium", "utm_term", "utm_content",
                           "utm_campaign"};
    const char *vals[] = {f->ganalytics.utm_source, f->ganalytics.utm_medium,
                          f->ganalytics.utm_term, f->ganalytics.utm_content,
                          f->ganalytics.utm_campaign};
    const char *hash = memchr(url, '#', len);
    size_t base = hash ? (size_t)(hash - url) : len;
    const char *q = memchr(url, '?', base);
    size_t qstart = q ? (size_t)(q - url) + 1 : base;

    buf_reset(out);
    buf_append(out, url, base);
    for (int i = 0; i < 5; i++) {
        if (!set(vals[i]) || (q && has_param(url + qstart, base - qstart, names[i])))
            continue;
        char last = out->len ? out->data[out->len - 1] : 0;
        if (!q) {
            buf_putc(out, '?');
            q = url; /* there is a query now */
        } else if (last != '?' && last != '&') {
            buf_putc(out, '&');
        }
        buf_printf(out, "%s=", names[i]);
        percent(vals[i], out);
    }
    buf_append(out, url + base, len - base);
}

/*
 * target - the URL a browser would follow for an href's decoded value:
 * leading and trailing spaces and controls trimmed, tabs and newlines
 * removed (WHATWG URL); into out
 */
static void target(const struct buf *v, struct buf *out)
{
    size_t s = 0, e = v->len;

    while (s < e && (unsigned char)v->data[s] <= ' ')
        s++;
    while (e > s && (unsigned char)v->data[e - 1] <= ' ')
        e--;
    buf_reset(out);
    for (size_t i = s; i < e; i++)
        if (v->data[i] != '\t' && v->data[i] != '\n' && v->data[i] != '\r')
            buf_putc(out, v->data[i]);
}

static int is_http(const char *u, size_t len)
{
    return (len > 7 && strncasecmp(u, "http://", 7) == 0) ||
           (len > 8 && strncasecmp(u, "https://", 8) == 0);
}

/* trackable - should this URL go through the tracker (the limit aside)? */
static int trackable(const struct track_env *env, const char *u, size_t len)
{
    size_t tl = env->tracker ? strlen(env->tracker) : 0;

    return is_http(u, len) && !(tl && len >= tl && strncmp(u, env->tracker, tl) == 0);
}

struct links {
    const struct smtpapi_filters *f;
    const struct track_env *env;
    struct track_count *n;
    struct edits *ed;
    struct buf url, ga, tracked, *why;
    int html;
};

/* link - one URL found: its tracked form as an edit, or left alone */
static int link(struct links *k, const char *u, size_t ulen, size_t at, size_t len,
                int quote)
{
    if (!trackable(k->env, u, ulen)) {
        return 0;
    }
    if (k->n->links + k->n->skipped >= TRACK_MAX_LINKS) {
        k->n->skipped++;
        return 0;
    }
    if (on(k->f->ganalytics.enable)) {
        track_utm(k->f, u, ulen, &k->ga);
        u = k->ga.data;
        ulen = k->ga.len;
    }
    buf_reset(&k->tracked);
    if (k->env->click(k->env->ctx, u, ulen, &k->tracked, k->why) < 0)
        return -1;
    struct buf w;
    buf_init(&w, k->tracked.len + 16);
    if (k->html) {
        if (!quote)
            buf_putc(&w, '"');
        html_escape(k->tracked.data, k->tracked.len, 1, &w);
        if (!quote)
            buf_putc(&w, '"');
    } else {
        buf_append(&w, k->tracked.data, k->tracked.len);
    }
    add_edit(k->ed, at, len, w.data, w.len);
    buf_release(&w);
    k->n->links++;
    return 0;
}

/*
 * fill_tags - the ASM and subscription tags in a link's URL replaced by the
 * recipient's URLs (the link's own edit replaces the tags' in the text)
 */
static void fill_tags(struct links *k, struct buf *u)
{
    const char *tag[4] = {
        TRACK_TAG_GROUP, TRACK_TAG_GLOBAL, TRACK_TAG_PREFS,
        on(k->f->subscriptiontrack.enable) ? k->f->subscriptiontrack.replace : NULL};
    const char *with[4] = {k->env->unsub_url, k->env->global_url, k->env->prefs_url,
                           k->env->unsub_url};
    struct edits ed = {NULL, 0, 0};

    for (int i = 0; i < 4; i++)
        find_tags(&ed, u->data, u->len, tag[i], with[i], with[i] ? strlen(with[i]) : 0);
    if (ed.n) {
        buf_reset(&k->ga);
        apply(&ed, u->data, u->len, &k->ga);
        buf_reset(u);
        buf_append(u, k->ga.data, k->ga.len);
    }
    edits_free(&ed);
}

static int html_link(const struct html_link *l, void *ctx)
{
    struct links *k = ctx;

    if (l->tracking_off) {
        k->n->skipped++;
        return 0;
    }
    target(l->value, &k->url);
    fill_tags(k, &k->url);
    return link(k, k->url.data, k->url.len, l->start, l->len, l->quote);
}

static void links_init(struct links *k, const struct smtpapi_filters *f,
                       const struct track_env *env, struct track_count *n,
                       struct edits *ed, int html, struct buf *why)
{
    k->f = f;
    k->env = env;
    k->n = n;
    k->ed = ed;
    k->html = html;
    k->why = why;
    buf_init(&k->url, 256);
    buf_init(&k->ga, 256);
    buf_init(&k->tracked, 256);
}

static void links_release(struct links *k)
{
    buf_release(&k->url);
    buf_release(&k->ga);
    buf_release(&k->tracked);
}

/* tags - the edits for the tags of the text (ASM, and the replace tags) */
static void tags(const struct smtpapi_filters *f, const struct track_env *env,
                 const char *text, size_t len, int html, struct edits *ed,
                 struct track_count *n, int *pixel_done, int *sub_done)
{
    /* the three ASM tags share their start: most texts have none, seen in one pass */
    if (memmem(text, len, "<%asm_", 6) != NULL) {
        find_tags(ed, text, len, TRACK_TAG_GROUP, env->unsub_url,
                  env->unsub_url ? strlen(env->unsub_url) : 0);
        find_tags(ed, text, len, TRACK_TAG_GLOBAL, env->global_url,
                  env->global_url ? strlen(env->global_url) : 0);
        find_tags(ed, text, len, TRACK_TAG_PREFS, env->prefs_url,
                  env->prefs_url ? strlen(env->prefs_url) : 0);
    }
    if (on(f->subscriptiontrack.enable) && set(f->subscriptiontrack.replace) &&
        env->unsub_url) {
        *sub_done = 1; /* with a replace tag there is no footer, tag or not */
        if (find_tags(ed, text, len, f->subscriptiontrack.replace, env->unsub_url,
                      strlen(env->unsub_url)))
            n->unsub = 1;
    }
    if (html && on(f->opentrack.enable) && set(f->opentrack.replace) && env->open_url) {
        struct buf px;
        buf_init(&px, 512);
        pixel(env, &px);
        if (find_tags(ed, text, len, f->opentrack.replace, px.data, px.len)) {
            *pixel_done = 1;
            n->pixel = 1;
        }
        buf_release(&px);
    }
}

int track_html(const struct smtpapi_filters *f, const struct track_env *env,
               const char *text, size_t len, struct buf *out, struct track_count *n,
               struct buf *why)
{
    struct edits ed = {NULL, 0, 0};
    struct links k;
    struct html_doc doc;
    int pixel_done = 0, sub_done = 0, rc = 0;

    buf_reset(out);
    tags(f, env, text, len, 1, &ed, n, &pixel_done, &sub_done);
    links_init(&k, f, env, n, &ed, 1, why);
    if (html_links(text, len, on(f->clicktrack.enable) && env->click ? html_link : NULL,
                   &k, &doc) < 0) {
        rc = -1;
        goto out;
    }
    /* what goes before </body>, in this order */
    struct buf tail;
    buf_init(&tail, 1024);
    if (on(f->subscriptiontrack.enable) && !sub_done && env->unsub_url) {
        footer_template(set(f->subscriptiontrack.text_html)
                            ? f->subscriptiontrack.text_html
                            : SUB_HTML_DEFAULT,
                        env->unsub_url, 1, &tail);
        n->unsub = 1;
    }
    if (on(f->footer.enable) && set(f->footer.text_html)) {
        put_crlf(&tail, f->footer.text_html, strlen(f->footer.text_html));
        n->footer = 1;
    }
    if (on(f->opentrack.enable) && !pixel_done && env->open_url) {
        pixel(env, &tail);
        n->pixel = 1;
    }
    size_t at = doc.body_end >= 0 ? (size_t)doc.body_end : len;
    if (doc.body_end < 0 && len >= 2 && text[len - 2] == '\r' && text[len - 1] == '\n')
        at = len - 2; /* the part keeps its last line end */
    tail_charset(&tail, env->charset, 1);
    rc = finish(&ed, &tail, at, text, len, out);
out:
    links_release(&k);
    edits_free(&ed);
    return rc;
}

/*
 * utf8_at - the code point of the UTF-8 sequence at t[i] (and its length in
 * *n), or -1 for a byte that starts none
 */
static long utf8_at(const char *t, size_t i, size_t len, size_t *n)
{
    const unsigned char *u = (const unsigned char *)t + i;
    size_t need = u[0] < 0x80    ? 1
                  : u[0] >= 0xf0 ? 4
                  : u[0] >= 0xe0 ? 3
                  : u[0] >= 0xc2 ? 2
                                 : 0;
    long cp;

    if (need == 0 || i + need > len)
        return -1;
    cp = need == 1 ? u[0] : u[0] & (0x3f >> (need - 1));
    for (size_t k = 1; k < need; k++) {
        if ((u[k] & 0xc0) != 0x80)
            return -1;
        cp = cp << 6 | (u[k] & 0x3f);
    }
    *n = need;
    return cp;
}

/* uspace - Unicode white space that ends a bare URL (no-break and CJK spaces) */
static int uspace(long cp)
{
    return cp == 0xa0 || (cp >= 0x2000 && cp <= 0x200b) || cp == 0x202f || cp == 0x205f ||
           cp == 0x3000 || cp == 0xfeff;
}

/* upunct - Unicode punctuation left out at a bare URL's end (letters stay) */
static int upunct(long cp)
{
    return (cp >= 0xa1 && cp <= 0xbf) || (cp >= 0x2010 && cp <= 0x205e) ||
           (cp >= 0x3001 && cp <= 0x303f) || (cp >= 0xff01 && cp <= 0xff0f) ||
           (cp >= 0xff1a && cp <= 0xff20) || (cp >= 0xff3b && cp <= 0xff40) ||
           (cp >= 0xff5b && cp <= 0xff65);
}

/*
 * url_end - the end of a bare URL starting at s: it stops at white space
 * (Unicode's too) and markup, and trailing punctuation (Unicode's too, an
 * unbalanced ')') is left out
 */
static size_t url_end(const char *t, size_t s, size_t len)
{
    size_t e = s, open = 0, close = 0, n = 1;

    while (e < len) {
        unsigned char c = (unsigned char)t[e];
        if (c <= ' ' || c == '<' || c == '>' || c == '"' || c == 0x7f)
            break;
        long cp = c < 0x80 ? c : utf8_at(t, e, len, &n);
        if (c >= 0x80 && cp >= 0 && uspace(cp))
            break;
        e += c < 0x80 || cp < 0 ? 1 : n;
    }
    for (size_t i = s; i < e; i++)
        open += t[i] == '(', close += t[i] == ')';
    while (e > s) {
        char c = t[e - 1];
        if (strchr(".,;:!?'*", c) || (c == ')' && close > open)) {
            close -= c == ')';
            e--;
            continue;
        }
        /* the last whole UTF-8 character, when it is punctuation */
        size_t b = e - 1;
        while (b > s && ((unsigned char)t[b] & 0xc0) == 0x80)
            b--;
        long cp = (unsigned char)t[b] >= 0x80 ? utf8_at(t, b, e, &n) : -1;
        if (cp < 0 || b + n != e || !upunct(cp))
            break;
        e = b;
    }
    return e;
}

int track_text(const struct smtpapi_filters *f, const struct track_env *env,
               const char *text, size_t len, struct buf *out, struct track_count *n,
               struct buf *why)
{
    struct edits ed = {NULL, 0, 0};
    struct links k;
    int pixel_done = 0, sub_done = 0, rc = 0;

    buf_reset(out);
    tags(f, env, text, len, 0, &ed, n, &pixel_done, &sub_done);
    links_init(&k, f, env, n, &ed, 0, why);
    if (on(f->clicktrack.enable) && on(f->clicktrack.enable_text) && env->click) {
        for (size_t i = 0; i + 7 < len; i++) {
            if ((text[i] != 'h' && text[i] != 'H') || !is_http(text + i, len - i) ||
                (i > 0 && ((text[i - 1] >= 'a' && text[i - 1] <= 'z') ||
                           (text[i - 1] >= 'A' && text[i - 1] <= 'Z') ||
                           (text[i - 1] >= '0' && text[i - 1] <= '9'))))
                continue;
            size_t e = url_end(text, i, len);
            if (link(&k, text + i, e - i, i, e - i, 0) < 0) {
                rc = -1;
                goto out;
            }
            i = e - 1;
        }
    }
    struct buf tail;
    buf_init(&tail, 512);
    if (on(f->subscriptiontrack.enable) && !sub_done && env->unsub_url) {
        buf_puts(&tail, "\r\n\r\n");
        footer_template(set(f->subscriptiontrack.text_plain)
                            ? f->subscriptiontrack.text_plain
                            : SUB_TEXT_DEFAULT,
                        env->unsub_url, 0, &tail);
        buf_puts(&tail, "\r\n");
        n->unsub = 1;
    }
    if (on(f->footer.enable) && set(f->footer.text_plain)) {
        buf_puts(&tail, "\r\n\r\n");
        put_crlf(&tail, f->footer.text_plain, strlen(f->footer.text_plain));
        buf_puts(&tail, "\r\n");
        n->footer = 1;
    }
    tail_charset(&tail, env->charset, 0);
    rc = finish(&ed, &tail, len, text, len, out);
out:
    links_release(&k);
    edits_free(&ed);
    return rc;
}
