/*
 * mime - see mime.h.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "header.h"
#include "mime.h"
#include "mymalloc.h"

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int is_tspecial(int c)
{
    return strchr("()<>@,;:\\\"/[]?=", c) != NULL || c <= ' ' || c >= 127;
}

/* skip_cfws - past white space and (nested) comments */
static size_t skip_cfws(const char *v, size_t len, size_t i)
{
    for (;;) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n'))
            i++;
        if (i >= len || v[i] != '(')
            return i;
        int depth = 0;
        for (; i < len; i++) {
            if (v[i] == '\\' && i + 1 < len)
                i++;
            else if (v[i] == '(')
                depth++;
            else if (v[i] == ')' && --depth == 0) {
                i++;
                break;
            }
        }
    }
}

/* token - a token at i, lower-cased into out (size n); the index after it */
static size_t token(const char *v, size_t len, size_t i, char *out, size_t n)
{
    size_t k = 0;

    for (; i < len && !is_tspecial((unsigned char)v[i]); i++)
        if (k + 1 < n)
            out[k++] = (char)lower((unsigned char)v[i]);
    out[k] = 0;
    return i;
}

/* parse_type - "type/subtype" of a Content-Type value, lower case */
static void parse_type(const char *v, size_t len, char *type, size_t tn, char *sub,
                       size_t sn)
{
    size_t i = skip_cfws(v, len, 0);

    i = token(v, len, i, type, tn);
    i = skip_cfws(v, len, i);
    if (i < len && v[i] == '/') {
        i = skip_cfws(v, len, i + 1);
        token(v, len, i, sub, sn);
    } else {
        sub[0] = 0;
    }
}

/*
 * param_value - the value at i (a quoted string or a token) into out; the
 * index after it
 */
static size_t param_value(const char *v, size_t len, size_t i, struct buf *out)
{
    if (i < len && v[i] == '"') {
        for (i++; i < len && v[i] != '"'; i++) {
            if (v[i] == '\\' && i + 1 < len)
                i++;
            else if (v[i] == '\r' || v[i] == '\n')
                continue; /* folding */
            buf_putc(out, v[i]);
        }
        return i < len ? i + 1 : i;
    }
    for (; i < len && !is_tspecial((unsigned char)v[i]); i++)
        buf_putc(out, v[i]);
    return i;
}

/* rfc2231_decode - "charset'lang'%XX..." (first=1) or "%XX..." into out */
static void rfc2231_decode(const char *s, size_t len, int first, struct buf *out)
{
    size_t i = 0;

    if (first) {
        const char *q1 = memchr(s, '\'', len);
        const char *q2 = q1 ? memchr(q1 + 1, '\'', len - (size_t)(q1 + 1 - s)) : NULL;
        if (q2)
            i = (size_t)(q2 + 1 - s);
    }
    for (; i < len; i++) {
        if (s[i] == '%' && i + 2 < len && buf_hex_digit((unsigned char)s[i + 1]) >= 0 &&
            buf_hex_digit((unsigned char)s[i + 2]) >= 0) {
            buf_putc(out, buf_hex_digit((unsigned char)s[i + 1]) * 16 +
                              buf_hex_digit((unsigned char)s[i + 2]));
            i += 2;
        } else {
            buf_putc(out, s[i]);
        }
    }
}

int mime_param(const char *v, size_t len, const char *name, struct buf *out)
{
    size_t nlen = strlen(name), i = 0;
    /* RFC 2231 continuations: name*N or name*N*, in any order; up to 64 */
    struct buf parts[64];
    int have[64] = {0}, enc[64] = {0}, found = 0, plain = 0;
    struct buf plain_value;

    buf_init(&plain_value, 32);
    for (int k = 0; k < 64; k++)
        buf_init(&parts[k], 0);
    /* past the type (or disposition) to the first ';' */
    while (i < len && v[i] != ';') {
        if (v[i] == '"')
            i = param_value(v, len, i, &plain_value);
        else
            i++;
    }
    buf_reset(&plain_value);
    while (i < len) {
        char pname[96];
        i = skip_cfws(v, len, i + 1); /* past ';' */
        i = token(v, len, i, pname, sizeof(pname));
        i = skip_cfws(v, len, i);
        if (i >= len || v[i] != '=') {
            while (i < len && v[i] != ';')
                i++;
            continue;
        }
        i = skip_cfws(v, len, i + 1);
        struct buf val;
        buf_init(&val, 32);
        i = param_value(v, len, i, &val);
        i = skip_cfws(v, len, i);
        while (i < len && v[i] != ';')
            i++;
        if (strncmp(pname, name, nlen) == 0 && pname[nlen] == 0 && !plain) {
            buf_set(&plain_value, buf_str(&val));
            plain = 1;
        } else if (strncmp(pname, name, nlen) == 0 && pname[nlen] == '*') {
            const char *rest = pname + nlen + 1;
            int n = 0, star = 0;
            if (*rest == 0) {
                star = 1; /* name*=charset'lang'value */
            } else {
                while (*rest >= '0' && *rest <= '9')
                    n = n * 10 + (*rest++ - '0');
                star = *rest == '*';
            }
            if (n < 64 && !have[n]) {
                have[n] = 1;
                enc[n] = star;
                buf_set(&parts[n], buf_str(&val));
                found = 1;
            }
        }
        buf_release(&val);
    }
    int rc = 0;
    if (found && have[0]) {
        buf_reset(out);
        for (int k = 0; k < 64 && have[k]; k++) {
            if (enc[k])
                rfc2231_decode(parts[k].data, parts[k].len, k == 0, out);
            else
                buf_append(out, parts[k].data, parts[k].len);
        }
        rc = 1;
    } else if (plain) {
        buf_set(out, buf_str(&plain_value));
        rc = 1;
    }
    for (int k = 0; k < 64; k++)
        buf_release(&parts[k]);
    buf_release(&plain_value);
    return rc;
}

/* What the walk knows of a part from its header. */
struct info {
    char type[32], subtype[64], charset[64];
    enum mime_cte cte;
    int attachment;
    struct buf boundary;
};

static void part_info(const char *msg, size_t hstart, size_t hlen, int in_digest,
                      struct info *in)
{
    struct header_field f;
    struct buf val;

    buf_init(&val, 64);
    snprintf(in->type, sizeof(in->type), "%s", in_digest ? "message" : "text");
    snprintf(in->subtype, sizeof(in->subtype), "%s", in_digest ? "rfc822" : "plain");
    in->charset[0] = 0;
    in->cte = MIME_7BIT;
    in->attachment = 0;
    buf_reset(&in->boundary);
    if (header_find(msg + hstart, hlen, "Content-Type", &f)) {
        char t[32], s[64];
        parse_type(f.value, f.value_len, t, sizeof(t), s, sizeof(s));
        if (t[0] && s[0]) {
            snprintf(in->type, sizeof(in->type), "%s", t);
            snprintf(in->subtype, sizeof(in->subtype), "%s", s);
        }
        if (mime_param(f.value, f.value_len, "charset", &val)) {
            size_t k = 0;
            for (; k + 1 < sizeof(in->charset) && k < val.len; k++)
                in->charset[k] = (char)lower((unsigned char)val.data[k]);
            in->charset[k] = 0;
        }
        if (mime_param(f.value, f.value_len, "boundary", &val))
            buf_set(&in->boundary, buf_str(&val));
        if (mime_param(f.value, f.value_len, "name", &val))
            in->attachment = 1;
    }
    if (header_find(msg + hstart, hlen, "Content-Transfer-Encoding", &f)) {
        char c[32];
        token(f.value, f.value_len, skip_cfws(f.value, f.value_len, 0), c, sizeof(c));
        in->cte = strcmp(c, "7bit") == 0               ? MIME_7BIT
                  : strcmp(c, "8bit") == 0             ? MIME_8BIT
                  : strcmp(c, "binary") == 0           ? MIME_BINARY
                  : strcmp(c, "quoted-printable") == 0 ? MIME_QP
                  : strcmp(c, "base64") == 0           ? MIME_BASE64
                  : c[0] == 0                          ? MIME_7BIT
                                                       : MIME_UNKNOWN;
    }
    if (header_find(msg + hstart, hlen, "Content-Disposition", &f)) {
        char d[32];
        token(f.value, f.value_len, skip_cfws(f.value, f.value_len, 0), d, sizeof(d));
        if (strcmp(d, "attachment") == 0 ||
            mime_param(f.value, f.value_len, "filename", &val))
            in->attachment = 1;
    }
    buf_release(&val);
}

struct walk {
    const char *msg;
    mime_part_fn fn;
    void *ctx;
    struct buf *skipped;
};

/* skip_note - "TYPE/SUBTYPE left alone: WHY", a line of skipped */
static void skip_note(struct walk *w, const struct info *in, const char *why)
{
    if (w->skipped)
        buf_printf(w->skipped, "%s/%s left alone: %s\n", in->type, in->subtype, why);
}

/*
 * delimiter - is there a delimiter line of boundary b at p (a line start)?
 * 1 a delimiter, 2 the close delimiter, 0 none; *next the start of the
 * line after it
 */
static int delimiter(const char *p, size_t avail, const struct buf *b, size_t *next)
{
    size_t i;
    int close = 0;

    if (avail < 2 + b->len || p[0] != '-' || p[1] != '-' ||
        memcmp(p + 2, b->data, b->len) != 0)
        return 0;
    i = 2 + b->len;
    if (i + 1 < avail && p[i] == '-' && p[i + 1] == '-') {
        close = 1;
        i += 2;
    }
    while (i < avail && (p[i] == ' ' || p[i] == '\t'))
        i++;
    if (i == avail) {
        *next = avail;
        return close ? 2 : 1;
    }
    if (i + 1 < avail && p[i] == '\r' && p[i + 1] == '\n') {
        *next = i + 2;
        return close ? 2 : 1;
    }
    /* "--boundary" followed by more: only a close delimiter may be (RFC 2046 says
     * nothing may follow; readers take the line anyway when it is "--b--x") */
    if (close) {
        const char *e = memchr(p + i, '\n', avail - i);
        *next = e ? (size_t)(e - p) + 1 : avail;
        return 2;
    }
    return 0;
}

static int walk(struct walk *w, size_t hstart, size_t hlen, size_t bstart, size_t blen,
                int depth, int in_digest)
{
    struct info in;
    int rc = 0;

    buf_init(&in.boundary, 64);
    part_info(w->msg, hstart, hlen, in_digest, &in);
    if ((strcmp(in.type, "multipart") == 0 &&
         (strcmp(in.subtype, "signed") == 0 || strcmp(in.subtype, "encrypted") == 0)) ||
        (strcmp(in.type, "application") == 0 &&
         (strcmp(in.subtype, "pkcs7-mime") == 0 ||
          strcmp(in.subtype, "x-pkcs7-mime") == 0))) {
        skip_note(w, &in, "signed or encrypted");
        goto out;
    }
    if (strcmp(in.type, "multipart") != 0) {
        struct mime_part p;
        p.hdr_start = hstart;
        p.hdr_len = hlen;
        p.body_start = bstart;
        p.body_len = blen;
        snprintf(p.type, sizeof(p.type), "%s", in.type);
        snprintf(p.subtype, sizeof(p.subtype), "%s", in.subtype);
        snprintf(p.charset, sizeof(p.charset), "%s", in.charset);
        p.cte = in.cte;
        p.attachment = in.attachment;
        p.depth = depth;
        rc = w->fn ? w->fn(&p, w->ctx) : 0;
        goto out;
    }
    if (in.boundary.len == 0) {
        skip_note(w, &in, "no boundary");
        goto out;
    }
    if (depth >= MIME_MAX_DEPTH) {
        skip_note(w, &in, "nested too deep");
        goto out;
    }
    /* the parts: between delimiter lines, each without the CRLF before the next */
    const char *body = w->msg + bstart;
    size_t pos = 0, part_start = 0;
    int open = 0;
    while (pos <= blen && rc == 0) {
        size_t next;
        int d = delimiter(body + pos, blen - pos, &in.boundary, &next);
        if (d) {
            next += pos;
            if (open) {
                size_t end = pos >= 2 && body[pos - 2] == '\r' ? pos - 2 : pos;
                if (end < part_start)
                    end = part_start;
                size_t pbody, plen = end - part_start;
                size_t ph = header_split(body + part_start, plen, &pbody);
                if (plen >= 2 && body[part_start] == '\r' &&
                    body[part_start + 1] == '\n') {
                    ph = 0; /* no header: the body starts after the empty line */
                    pbody = 2;
                }
                rc = walk(w, bstart + part_start, ph, bstart + part_start + pbody,
                          plen - pbody, depth + 1, strcmp(in.subtype, "digest") == 0);
            }
            if (d == 2)
                break;
            open = 1;
            part_start = next;
            pos = next;
            continue;
        }
        const char *nl = memchr(body + pos, '\n', blen - pos);
        if (nl == NULL)
            break;
        pos = (size_t)(nl - body) + 1;
    }
out:
    buf_release(&in.boundary);
    return rc;
}

int mime_walk(const char *msg, size_t len, mime_part_fn fn, void *ctx,
              struct buf *skipped)
{
    struct walk w = {msg, fn, ctx, skipped};
    size_t body, hlen = header_split(msg, len, &body);

    return walk(&w, 0, hlen, body, len - body, 0, 0);
}

int mime_decode(enum mime_cte cte, const char *in, size_t len, struct buf *out)
{
    if (cte == MIME_QP) {
        /* the output is never longer: written in place after one reserve */
        buf_reserve(out, len);
        char *o = out->data + out->len;
        size_t i = 0;
        while (i < len) {
            /* a run of plain bytes at once; a blank inside it (one a byte
             * other than a blank or CR follows) is plain too */
            size_t r = i;
            while (r < len) {
                char c = in[r];
                if (c == '=')
                    break;
                if ((c == ' ' || c == '\t') && (r + 1 == len || in[r + 1] == ' ' ||
                                                in[r + 1] == '\t' || in[r + 1] == '\r'))
                    break;
                r++;
            }
            memcpy(o, in + i, r - i);
            o += r - i;
            if ((i = r) >= len)
                break;
            if (in[i] == '=') {
                int h1 = i + 1 < len ? buf_hex_digit((unsigned char)in[i + 1]) : -1;
                int h2 = i + 2 < len ? buf_hex_digit((unsigned char)in[i + 2]) : -1;
                if (h1 >= 0 && h2 >= 0) {
                    *o++ = (char)(h1 * 16 + h2);
                    i += 3;
                    continue;
                }
                size_t k = i + 1;
                while (k < len && (in[k] == ' ' || in[k] == '\t'))
                    k++;
                if (k + 1 < len && in[k] == '\r' && in[k + 1] == '\n') {
                    i = k + 2; /* a soft line break */
                    continue;
                }
                if (k == len) {
                    i = len;
                    continue;
                }
                *o++ = '='; /* malformed: kept, as readers do */
                i++;
                continue;
            }
            /* white space at the end of a line is padding */
            size_t k = i;
            while (k < len && (in[k] == ' ' || in[k] == '\t'))
                k++;
            if (!(k == len || (k + 1 < len && in[k] == '\r' && in[k + 1] == '\n'))) {
                memcpy(o, in + i, k - i);
                o += k - i;
            }
            i = k;
        }
        out->len = (size_t)(o - out->data);
        out->data[out->len] = 0;
        return 0;
    }
    if (cte == MIME_BASE64) {
        unsigned acc = 0;
        int bits = 0;
        for (size_t i = 0; i < len; i++) {
            int c = (unsigned char)in[i], v;
            if (c >= 'A' && c <= 'Z')
                v = c - 'A';
            else if (c >= 'a' && c <= 'z')
                v = c - 'a' + 26;
            else if (c >= '0' && c <= '9')
                v = c - '0' + 52;
            else if (c == '+')
                v = 62;
            else if (c == '/')
                v = 63;
            else if (c == '=')
                break;
            else
                continue;
            acc = acc << 6 | (unsigned)v;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                buf_putc(out, (int)((acc >> bits) & 0xff));
            }
        }
        return 0;
    }
    if (cte == MIME_UNKNOWN)
        return -1;
    buf_append(out, in, len);
    return 0;
}

/* qp_encode - text in quoted-printable, lines within 76 (soft breaks never split =XX) */
static void qp_encode(const unsigned char *s, size_t n, struct buf *out)
{
    static const char hex[] = "0123456789ABCDEF";
    /* worst case: every byte as =XX, a soft break every 24 of them */
    buf_reserve(out, n * 3 + (n / 24 + 2) * 3);
    char *o = out->data + out->len;
    size_t col = 0;

    for (size_t i = 0; i < n; i++) {
        int c = s[i];
        /* a run of bytes that stand for themselves, as far as the line has
         * room for them and a soft break (the general case below does the
         * rest, the line's last column included) */
        if (c >= 33 && c <= 126 && c != '=' && col < 75) {
            size_t r = i + 1, lim = i + (75 - col) < n ? i + (75 - col) : n;
            while (r < lim && s[r] >= 33 && s[r] <= 126 && s[r] != '=')
                r++;
            memcpy(o, s + i, r - i);
            o += r - i;
            col += r - i;
            i = r - 1;
            continue;
        }
        if (c == '\r' && i + 1 < n && s[i + 1] == '\n') {
            *o++ = '\r';
            *o++ = '\n';
            col = 0;
            i++;
            continue;
        }
        int last = i + 1 == n || (s[i + 1] == '\r' && i + 2 < n && s[i + 2] == '\n');
        int literal =
            (c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !last);
        size_t w = literal ? 1 : 3;
        /* room for the token and, unless it ends the line, a soft break's '=' */
        if (col + w > (last ? 76u : 75u)) {
            *o++ = '=';
            *o++ = '\r';
            *o++ = '\n';
            col = 0;
        }
        if (literal) {
            *o++ = (char)c;
        } else {
            *o++ = '=';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
        col += w;
    }
    out->len = (size_t)(o - out->data);
    out->data[out->len] = 0;
}

size_t mime_encode(enum mime_cte cte, const char *in, size_t len, struct buf *out)
{
    size_t long_lines = 0;

    if (cte == MIME_QP) {
        qp_encode((const unsigned char *)in, len, out);
        return 0;
    }
    if (cte == MIME_BASE64) {
        static const char b64[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t col = 0;
        for (size_t i = 0; i < len; i += 3) {
            unsigned v = (unsigned char)in[i] << 16;
            if (i + 1 < len)
                v |= (unsigned char)in[i + 1] << 8;
            if (i + 2 < len)
                v |= (unsigned char)in[i + 2];
            if (col == 76) {
                buf_puts(out, "\r\n");
                col = 0;
            }
            buf_putc(out, b64[v >> 18 & 63]);
            buf_putc(out, b64[v >> 12 & 63]);
            buf_putc(out, i + 1 < len ? b64[v >> 6 & 63] : '=');
            buf_putc(out, i + 2 < len ? b64[v & 63] : '=');
            col += 4;
        }
        return 0;
    }
    /* 7bit, 8bit, binary: as written, a line over 998 octets broken at a space */
    size_t i = 0;
    while (i < len) {
        const char *nl = NULL;
        for (size_t k = i; k + 1 < len; k++)
            if (in[k] == '\r' && in[k + 1] == '\n') {
                nl = in + k;
                break;
            }
        size_t n = nl ? (size_t)(nl - in) - i : len - i;
        const char *line = in + i;
        while (n > 998 && cte != MIME_BINARY) {
            size_t cut = 998;
            while (cut > 0 && line[cut - 1] != ' ')
                cut--;
            if (cut == 0) {
                long_lines++;
                break;
            }
            buf_append(out, line, cut - 1);
            buf_puts(out, "\r\n");
            line += cut;
            n -= cut;
        }
        buf_append(out, line, n);
        if (nl) {
            buf_puts(out, "\r\n");
            i = (size_t)(nl - in) + 2;
        } else {
            i = len;
        }
    }
    return long_lines;
}

struct rewrite {
    const char *msg;
    mime_rewrite_fn fn;
    void *ctx;
    struct buf *out, *why;
    size_t copied; /* msg bytes copied to out so far */
    int changed;
    struct buf decoded, next;
};

static int rewrite_part(const struct mime_part *p, void *ctx)
{
    struct rewrite *r = ctx;
    int rc;

    buf_reset(&r->decoded);
    buf_reset(&r->next);
    if (mime_decode(p->cte, r->msg + p->body_start, p->body_len, &r->decoded) < 0)
        return 0; /* an encoding nobody knows: left as it is */
    rc = r->fn(p, &r->decoded, &r->next, r->ctx, r->why);
    if (rc <= 0)
        return rc;
    buf_append(r->out, r->msg + r->copied, p->body_start - r->copied);
    mime_encode(p->cte, r->next.data, r->next.len, r->out);
    /* base64 keeps a last line end where the body had one */
    if (p->cte == MIME_BASE64 && p->body_len >= 2 &&
        memcmp(r->msg + p->body_start + p->body_len - 2, "\r\n", 2) == 0)
        buf_puts(r->out, "\r\n");
    r->copied = p->body_start + p->body_len;
    r->changed++;
    return 0;
}

int mime_rewrite(const char *msg, size_t len, mime_rewrite_fn fn, void *ctx,
                 struct buf *out, int *changed, struct buf *why)
{
    struct rewrite r;
    int rc;

    memset(&r, 0, sizeof(r));
    r.msg = msg;
    r.fn = fn;
    r.ctx = ctx;
    r.out = out;
    r.why = why;
    buf_init(&r.decoded, 4096);
    buf_init(&r.next, 4096);
    buf_reset(out);
    rc = mime_walk(msg, len, rewrite_part, &r, NULL);
    if (rc == 0)
        buf_append(out, msg + r.copied, len - r.copied);
    buf_release(&r.decoded);
    buf_release(&r.next);
    *changed = r.changed;
    return rc < 0 ? -1 : 0;
}
