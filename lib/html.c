/*
 * html - see html.h.  The state names in the comments are the WHATWG
 * tokenizer's.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "html.h"

struct entity {
    const char *name, *utf8;
};

static const struct entity entities[] = {
#include "html_entities.inc"
};
#define N_ENTITIES (sizeof(entities) / sizeof(entities[0]))

/* find_entity - the reference named by exactly these bytes, or NULL */
static const struct entity *find_entity(const char *name, size_t len)
{
    size_t lo = 0, hi = N_ENTITIES;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const unsigned char *a = (const unsigned char *)entities[mid].name;
        const unsigned char *b = (const unsigned char *)name;
        size_t k = 0;
        int cmp = 0;
        for (; k < len && a[k]; k++)
            if (a[k] != b[k]) {
                cmp = a[k] < b[k] ? -1 : 1;
                break;
            }
        if (cmp == 0)
            cmp = a[k] ? 1 : (k < len ? -1 : 0);
        if (cmp == 0)
            return &entities[mid];
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int is_alnum(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* is_space - the tokenizer's whitespace (CR, normalised to LF, included) */
static int is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r';
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static void put_utf8(struct buf *out, uint32_t cp)
{
    if (cp < 0x80) {
        buf_putc(out, (int)cp);
    } else if (cp < 0x800) {
        buf_putc(out, (int)(0xc0 | cp >> 6));
        buf_putc(out, (int)(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        buf_putc(out, (int)(0xe0 | cp >> 12));
        buf_putc(out, (int)(0x80 | ((cp >> 6) & 0x3f)));
        buf_putc(out, (int)(0x80 | (cp & 0x3f)));
    } else {
        buf_putc(out, (int)(0xf0 | cp >> 18));
        buf_putc(out, (int)(0x80 | ((cp >> 12) & 0x3f)));
        buf_putc(out, (int)(0x80 | ((cp >> 6) & 0x3f)));
        buf_putc(out, (int)(0x80 | (cp & 0x3f)));
    }
}

/* numeric_cp - a numeric reference's code point, as the tokenizer maps it */
static uint32_t numeric_cp(uint32_t cp)
{
    /* C1 controls taken as windows-1252, as browsers do */
    static const uint16_t c1[32] = {
        0x20ac, 0x81,   0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021,
        0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8d,   0x017d, 0x8f,
        0x90,   0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
        0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x9d,   0x017e, 0x0178};

    if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0xfffd;
    if (cp >= 0x80 && cp <= 0x9f)
        return c1[cp - 0x80];
    return cp;
}

/*
 * char_ref - the character reference at v[0] == '&' (attribute rules),
 * decoded into out; the bytes it took
 */
static size_t char_ref(const char *v, size_t len, struct buf *out)
{
    size_t i = 1;

    if (i < len && v[i] == '#') {
        int hex = i + 1 < len && (v[i + 1] == 'x' || v[i + 1] == 'X');
        size_t d = i + 1 + (size_t)hex, k = d;
        uint32_t cp = 0;
        int big = 0;
        for (; k < len; k++) {
            int c = (unsigned char)v[k], dv;
            if ((dv = buf_hex_digit(c)) < 0 || (!hex && dv > 9))
                break;
            if (cp > 0x10ffff)
                big = 1;
            else
                cp = cp * (hex ? 16 : 10) + (uint32_t)dv;
        }
        if (k == d) { /* "&#" or "&#x" and no digit: as it stands */
            buf_putc(out, '&');
            return 1;
        }
        put_utf8(out, big ? 0xfffd : numeric_cp(cp));
        return k < len && v[k] == ';' ? k + 1 : k;
    }
    size_t run = 0;
    while (i + run < len && run < 32 && is_alnum((unsigned char)v[i + run]))
        run++;
    if (run == 0) {
        buf_putc(out, '&');
        return 1;
    }
    if (i + run < len && v[i + run] == ';') {
        const struct entity *e = find_entity(v + i, run + 1);
        if (e) {
            buf_puts(out, e->utf8);
            return i + run + 1;
        }
    }
    /* the longest name without ';' that the run starts with */
    for (size_t l = run; l >= 1; l--) {
        const struct entity *e = find_entity(v + i, l);
        if (e == NULL)
            continue;
        int next = i + l < len ? (unsigned char)v[i + l] : -1;
        if (next == '=' || is_alnum(next))
            break; /* left alone, for historical reasons */
        buf_puts(out, e->utf8);
        return i + l;
    }
    buf_putc(out, '&');
    return 1;
}

void html_decode_attr(const char *v, size_t len, struct buf *out)
{
    size_t i = 0;

    while (i < len) {
        const char *amp = memchr(v + i, '&', len - i);
        size_t stop = amp ? (size_t)(amp - v) : len;
        for (; i < stop; i++) {
            if (v[i] == '\r') {
                buf_putc(out, '\n');
                if (i + 1 < stop && v[i + 1] == '\n')
                    i++;
            } else if (v[i] == 0) {
                buf_puts(out, "\xef\xbf\xbd");
            } else {
                buf_putc(out, v[i]);
            }
        }
        if (i < len)
            i += char_ref(v + i, len - i, out);
    }
}

/*
 * What the tree builder keeps that the scan needs: open SVG and MathML
 * elements (their content is not HTML) and their integration points
 * (foreignObject, desc, title; mi, mo, mn, ms, mtext, annotation-xml of
 * HTML), innermost last.
 */
#define MAX_FRAMES 64
struct frame {
    char name[32]; /* as struct tag's */
    int foreign;   /* 1 an svg or math element, 0 an integration point */
    int depth;     /* the same name opened again inside it */
};

struct scan {
    const char *p;
    size_t len;
    struct frame f[MAX_FRAMES];
    int nf;
    int in_select;      /* 0, or 1 in a select, 2 in a select in a table */
    int tables;         /* tables open (as start and end tags count them) */
    int templates;      /* templates open: a select in one is not in a table */
    char select_at[16]; /* in_select when each template began (its content is not) */
    html_link_fn fn;
    void *ctx;
    struct html_doc *doc;
    struct buf value, aux;
};

/* One tag as the tokenizer emits it. */
struct tag {
    char name[32]; /* lower case; longer names are cut (none that matters is) */
    int self_closing;
    size_t start, stop; /* '<' .. after '>' */
    int have_href, have_ct, have_enc, font_attr;
    size_t href_start, href_len, ct_start, ct_len, enc_start, enc_len;
    int href_quote;
};

static int foreign(const struct scan *s)
{
    return s->nf > 0 && s->f[s->nf - 1].foreign;
}

static void push(struct scan *s, const char *name, int is_foreign)
{
    if (s->nf == MAX_FRAMES)
        return; /* deeper than any mail: the innermost are not followed */
    snprintf(s->f[s->nf].name, sizeof(s->f[0].name), "%s", name);
    s->f[s->nf].foreign = is_foreign;
    s->f[s->nf].depth = 1;
    s->nf++;
}

/* ieq - a (lower case) equals the bytes v[0..len) without regard to case */
static int ieq(const char *a, const char *v, size_t len)
{
    size_t k = 0;

    for (; k < len && a[k]; k++)
        if (a[k] != lower((unsigned char)v[k]))
            return 0;
    return k == len && a[k] == 0;
}

/* in_list - name is one of the words of list */
static int in_list(const char *name, const char *list)
{
    size_t n = strlen(name);
    const char *p = list;

    while ((p = strstr(p, name)) != NULL) {
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0))
            return 1;
        p += n;
    }
    return 0;
}

/* The HTML start tags that end SVG and MathML content. */
static const char breakout[] =
    "b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 "
    "head hr i img li listing menu meta nobr ol p pre ruby s small span strong "
    "strike sub sup table tt u ul var";

/* A table's tags, which end a select in a table (start or end tag) */
static const char table_tags[] = "caption table tbody tfoot thead tr td th";

/*
 * end_of_text - the '<' of "</name" followed by whitespace, '/' or '>' at
 * or after i (the end of an element whose content is text), or len
 */
static size_t end_of_text(const struct scan *s, size_t i, const char *name)
{
    size_t n = strlen(name);

    for (;;) {
        const char *lt = memchr(s->p + i, '<', s->len - i);
        if (lt == NULL)
            return s->len;
        i = (size_t)(lt - s->p);
        if (i + 2 + n < s->len && s->p[i + 1] == '/' && ieq(name, s->p + i + 2, n)) {
            int c = (unsigned char)s->p[i + 2 + n];
            if (is_space(c) || c == '/' || c == '>')
                return i;
        }
        i++;
    }
}

/* starts_tag - at i "<" (or "</" when end) and name, then whitespace, '/' or '>' */
static int starts_tag(const struct scan *s, size_t i, const char *name, int end)
{
    size_t n = strlen(name), o = i + 1 + (size_t)end;

    if (o + n >= s->len || s->p[i] != '<' || (end && s->p[i + 1] != '/') ||
        !ieq(name, s->p + o, n))
        return 0;
    int c = (unsigned char)s->p[o + n];
    return is_space(c) || c == '/' || c == '>';
}

/*
 * end_of_script - the '<' of the "</script" that ends a script's content
 * (script data, its escaped and double escaped states), or len
 */
static size_t end_of_script(const struct scan *s, size_t i)
{
    enum { DATA, ESCAPED, DOUBLE } st = DATA;

    while (i < s->len) {
        const char *p = s->p;
        if (p[i] == '<') {
            if ((st == DATA || st == ESCAPED) && starts_tag(s, i, "script", 1))
                return i;
            if (st == DOUBLE && starts_tag(s, i, "script", 1)) {
                st = ESCAPED;
                i += 8;
                continue;
            }
            if (st == DATA && i + 3 < s->len && memcmp(p + i, "<!--", 4) == 0) {
                st = ESCAPED;
                i += 2; /* at the "--": "<!-->" ends at once */
                continue;
            }
            if (st == ESCAPED && starts_tag(s, i, "script", 0)) {
                st = DOUBLE;
                i += 7;
                continue;
            }
        } else if (p[i] == '-' && st != DATA && i + 2 < s->len && p[i + 1] == '-' &&
                   p[i + 2] == '>') {
            st = DATA;
            i += 3;
            continue;
        }
        i++;
    }
    return s->len;
}

/* attr_value - the decoded value of the bytes [start, start + len) into b */
static const struct buf *attr_value(struct buf *b, const char *p, size_t start,
                                    size_t len)
{
    buf_reset(b);
    html_decode_attr(p + start, len, b);
    return b;
}

/* note_attr - an attribute of the tag: the first href, clicktracking, encoding */
static void note_attr(struct tag *t, const char *name, size_t vstart, size_t vlen,
                      int quote)
{
    if (strcmp(name, "href") == 0 && !t->have_href) {
        t->have_href = 1;
        t->href_start = vstart;
        t->href_len = vlen;
        t->href_quote = quote;
    } else if (strcmp(name, "clicktracking") == 0 && !t->have_ct) {
        t->have_ct = 1;
        t->ct_start = vstart;
        t->ct_len = vlen;
    } else if (strcmp(name, "encoding") == 0 && !t->have_enc) {
        t->have_enc = 1;
        t->enc_start = vstart;
        t->enc_len = vlen;
    } else if (strcmp(name, "color") == 0 || strcmp(name, "face") == 0 ||
               strcmp(name, "size") == 0) {
        t->font_attr = 1;
    }
}

/*
 * read_tag - the tag whose name starts at i (tag name state on); its end
 * in t->stop; 0 at the end of the input inside it (no tag: the tokenizer
 * emits none)
 */
static int read_tag(const struct scan *s, size_t i, struct tag *t)
{
    const char *p = s->p;
    size_t len = s->len, n = 0;
    char an[32];
    size_t an_len;

    while (i < len && !is_space((unsigned char)p[i]) && p[i] != '/' && p[i] != '>') {
        if (n + 1 < sizeof(t->name))
            t->name[n++] = (char)lower((unsigned char)p[i]);
        i++;
    }
    t->name[n] = 0;
    for (;;) {
        /* before attribute name (gumbo passes over a NUL here too) */
        while (i < len && (is_space((unsigned char)p[i]) || p[i] == 0))
            i++;
        if (i >= len)
            return 0;
        if (p[i] == '>') {
            t->stop = i + 1;
            return 1;
        }
        if (p[i] == '/') {
            /* self-closing start tag */
            i++;
            if (i >= len)
                return 0;
            if (p[i] == '>') {
                t->self_closing = 1;
                t->stop = i + 1;
                return 1;
            }
            continue;
        }
        /* attribute name: '=' may open it */
        an_len = 0;
        do {
            if (an_len + 1 < sizeof(an))
                an[an_len++] = (char)lower((unsigned char)p[i]);
            i++;
        } while (i < len && !is_space((unsigned char)p[i]) && p[i] != '/' &&
                 p[i] != '>' && p[i] != '=');
        an[an_len] = 0;
        size_t vstart = i, vlen = 0; /* no value: just after the name */
        /* after attribute name */
        while (i < len && is_space((unsigned char)p[i]))
            i++;
        if (i >= len)
            return 0;
        int quote = 0;
        if (p[i] == '=') {
            i++;
            /* before attribute value */
            while (i < len && is_space((unsigned char)p[i]))
                i++;
            if (i >= len)
                return 0;
            if (p[i] == '"' || p[i] == '\'') {
                const char *q = memchr(p + i + 1, p[i], len - i - 1);
                if (q == NULL)
                    return 0;
                quote = p[i];
                vstart = i + 1;
                vlen = (size_t)(q - p) - vstart;
                i = (size_t)(q - p) + 1;
                /* after attribute value (quoted): anything else starts the next name */
            } else if (p[i] != '>') {
                vstart = i;
                while (i < len && !is_space((unsigned char)p[i]) && p[i] != '>')
                    i++;
                if (i >= len)
                    return 0;
                vlen = i - vstart;
            }
        }
        note_attr(t, an, vstart, vlen, quote); /* the first of a name counts */
    }
}

/* start_tag - a start tag emitted: a link, or what it changes for the scan */
static int start_tag(struct scan *s, struct tag *t, size_t *next)
{
    const char *name = t->name;

    if (foreign(s)) {
        struct frame *f = &s->f[s->nf - 1];
        if (in_list(name, breakout) || (strcmp(name, "font") == 0 && t->font_attr)) {
            while (foreign(s))
                s->nf--; /* back to HTML: the tag is HTML's */
        } else {
            if (t->self_closing)
                return 0;
            if (strcmp(name, f->name) == 0)
                f->depth++;
            else if (strcmp(name, "svg") == 0 || strcmp(name, "math") == 0)
                push(s, name, 1);
            else if ((strcmp(f->name, "svg") == 0 &&
                      (strcmp(name, "foreignobject") == 0 || strcmp(name, "desc") == 0 ||
                       strcmp(name, "title") == 0)) ||
                     (strcmp(f->name, "math") == 0 &&
                      (in_list(name, "mi mo mn ms mtext") ||
                       (strcmp(name, "annotation-xml") == 0 && t->have_enc &&
                        (ieq("text/html", s->p + t->enc_start, t->enc_len) ||
                         ieq("application/xhtml+xml", s->p + t->enc_start,
                             t->enc_len))))))
                push(s, name, 0);
            return 0;
        }
    }
    if (s->in_select) {
        /* in a select only these count: they end it (and are then handled) */
        if (strcmp(name, "select") == 0) {
            s->in_select = 0;
            return 0;
        }
        if (!in_list(name, "input keygen textarea") &&
            !(s->in_select == 2 && in_list(name, table_tags))) {
            if (strcmp(name, "script") == 0)
                *next = end_of_script(s, t->stop);
            else if (strcmp(name, "style") == 0)
                *next = end_of_text(s, t->stop, name);
            if (strcmp(name, "template") != 0)
                return 0; /* dropped, or text */
        } else {
            s->in_select = 0;
        }
    }
    if (strcmp(name, "table") == 0) {
        s->tables++;
    } else if (strcmp(name, "template") == 0) {
        if (s->templates < (int)sizeof(s->select_at))
            s->select_at[s->templates] = (char)s->in_select;
        s->templates++;
        s->in_select = 0;
    }
    if (strcmp(name, "a") == 0) {
        if (!t->have_href)
            return 0;
        struct html_link l;
        l.start = t->href_start;
        l.len = t->href_len;
        l.quote = t->href_quote;
        l.tag_start = t->start;
        l.tag_end = t->stop;
        l.ct_start = t->ct_start;
        l.ct_len = t->ct_len;
        l.clicktracking =
            t->have_ct ? attr_value(&s->aux, s->p, t->ct_start, t->ct_len) : NULL;
        l.tracking_off = l.clicktracking && ieq("off", s->aux.data, s->aux.len);
        l.value = attr_value(&s->value, s->p, t->href_start, t->href_len);
        s->doc->nlinks++;
        return s->fn ? s->fn(&l, s->ctx) : 0;
    }
    if (strcmp(name, "svg") == 0 || strcmp(name, "math") == 0) {
        if (!t->self_closing)
            push(s, name, 1);
    } else if (strcmp(name, "script") == 0) {
        *next = end_of_script(s, t->stop);
    } else if (in_list(name, "style xmp iframe noembed noframes textarea title")) {
        *next = end_of_text(s, t->stop, name);
    } else if (strcmp(name, "plaintext") == 0) {
        *next = s->len;
    } else if (strcmp(name, "select") == 0) {
        s->in_select = s->tables > 0 && s->templates == 0 ? 2 : 1;
    }
    return 0;
}

/* end_tag - an end tag emitted */
static void end_tag(struct scan *s, const struct tag *t)
{
    const char *name = t->name;

    if (s->nf > 0) {
        struct frame *f = &s->f[s->nf - 1];
        if (strcmp(name, f->name) == 0) {
            if (--f->depth == 0)
                s->nf--;
            return;
        }
        if (f->foreign) {
            if (strcmp(name, "p") == 0 || strcmp(name, "br") == 0)
                while (foreign(s))
                    s->nf--;
            return;
        }
    }
    if (strcmp(name, "template") == 0 && s->templates > 0) {
        s->templates--;
        s->in_select =
            s->templates < (int)sizeof(s->select_at) ? s->select_at[s->templates] : 0;
        return;
    }
    if (s->in_select) {
        if (strcmp(name, "select") == 0 ||
            (s->in_select == 2 && in_list(name, table_tags)))
            s->in_select = 0;
        else
            return; /* dropped */
    }
    if (strcmp(name, "table") == 0 && s->tables > 0)
        s->tables--;
    else if (strcmp(name, "body") == 0)
        s->doc->body_end = (long)t->start;
    else if (strcmp(name, "html") == 0)
        s->doc->html_end = (long)t->start;
}

/* skip_to - just after the first c at or after i, or len */
static size_t skip_to(const struct scan *s, size_t i, int c)
{
    const char *q = i < s->len ? memchr(s->p + i, c, s->len - i) : NULL;
    return q ? (size_t)(q - s->p) + 1 : s->len;
}

/* comment_end - just after the comment opened by "<!--" at i, or len */
static size_t comment_end(const struct scan *s, size_t i)
{
    const char *p = s->p;
    size_t len = s->len;

    i += 4;
    if (i < len && p[i] == '>')
        return i + 1; /* "<!-->" */
    if (i + 1 < len && p[i] == '-' && p[i + 1] == '>')
        return i + 2; /* "<!--->" */
    for (; i + 2 < len; i++) {
        if (p[i] != '-' || p[i + 1] != '-')
            continue;
        if (p[i + 2] == '>')
            return i + 3;
        if (p[i + 2] == '!' && i + 3 < len && p[i + 3] == '>')
            return i + 4;
    }
    return len;
}

int html_links(const char *html, size_t len, html_link_fn fn, void *ctx,
               struct html_doc *doc)
{
    struct scan s;
    size_t i = 0;
    int rc = 0;

    memset(&s, 0, sizeof(s));
    s.p = html;
    s.len = len;
    s.fn = fn;
    s.ctx = ctx;
    s.doc = doc;
    doc->body_end = doc->html_end = -1;
    doc->nlinks = 0;
    buf_init(&s.value, 256);
    buf_init(&s.aux, 16);
    while (i < len && rc == 0) {
        const char *lt = memchr(html + i, '<', len - i);
        if (lt == NULL)
            break;
        i = (size_t)(lt - html);
        if (i + 1 >= len)
            break;
        int c = (unsigned char)html[i + 1];
        if (c == '!') {
            /* markup declaration open */
            if (i + 3 < len && html[i + 2] == '-' && html[i + 3] == '-')
                i = comment_end(&s, i);
            else if (s.nf > 0 && i + 8 < len && memcmp(html + i + 2, "[CDATA[", 7) == 0) {
                /* a CDATA section in SVG or MathML, their integration points included */
                const char *e = memmem(html + i + 9, len - i - 9, "]]>", 3);
                i = e ? (size_t)(e - html) + 3 : len;
            } else
                i = skip_to(&s, i + 2, '>'); /* DOCTYPE, or a bogus comment */
        } else if (c == '?') {
            i = skip_to(&s, i + 2, '>');
        } else if (c == '/') {
            if (i + 2 < len && is_alpha((unsigned char)html[i + 2])) {
                struct tag t;
                memset(&t, 0, sizeof(t));
                t.start = i;
                if (!read_tag(&s, i + 2, &t))
                    break;
                end_tag(&s, &t);
                i = t.stop;
            } else if (i + 2 < len && html[i + 2] == '>') {
                i += 3;
            } else {
                i = skip_to(&s, i + 2, '>');
            }
        } else if (is_alpha(c)) {
            struct tag t;
            memset(&t, 0, sizeof(t));
            t.start = i;
            if (!read_tag(&s, i + 1, &t))
                break;
            size_t next = t.stop;
            rc = start_tag(&s, &t, &next);
            i = next;
        } else {
            i++;
        }
    }
    buf_release(&s.value);
    buf_release(&s.aux);
    return rc;
}

/* html_escape - see html.h */
void html_escape(const char *s, size_t len, int attr, struct buf *out)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '&')
            buf_puts(out, "&amp;");
        else if (s[i] == '<')
            buf_puts(out, "&lt;");
        else if (s[i] == '"' && attr)
            buf_puts(out, "&quot;");
        else if (s[i] == '>' && !attr)
            buf_puts(out, "&gt;");
        else
            buf_putc(out, s[i]);
    }
}
