/*
 * bounce - bounces, feedback reports and auto-replies read (see bounce.h).
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "addrlist.h"
#include "bounce.h"
#include "header.h"
#include "mime.h"
#include "mymalloc.h"
#include "utf8.h"

/* Classification. */

/* Texts that say what a failure is, lower case, tried in this order. */
static const char *const hard_texts[] = {"user unknown",
                                         "unknown user",
                                         "no such user",
                                         "no such mailbox",
                                         "mailbox not found",
                                         "mailbox unavailable",
                                         "mailbox does not exist",
                                         "does not exist",
                                         "doesn't exist",
                                         "doesn't have a",
                                         "does not have an account",
                                         "no mailbox here",
                                         "no such recipient",
                                         "unknown recipient",
                                         "invalid recipient",
                                         "recipient not found",
                                         "recipientnotfound",
                                         "recipnotfound",
                                         "addressee unknown",
                                         "unknown address",
                                         "invalid address",
                                         "bad destination",
                                         "no such domain",
                                         "domain not found",
                                         "host not found",
                                         "host or domain name not found",
                                         "name or service not known",
                                         "unrouteable",
                                         "unroutable",
                                         "no valid recipients",
                                         "account that you tried to reach does not",
                                         "not a valid mailbox",
                                         "address rejected: user",
                                         NULL};
static const char *const soft_texts[] = {
    "mailbox full", "mailbox is full", "over quota", "quota",     "insufficient storage",
    "storage",      "out of space",    "too many",   "try again", "temporar",
    "timeout",      "timed out",       "retry",      "deferred",  "greylist",
    "graylist",     "disabled",        "inactive",   "suspended", "too large",
    "too big",      "size limit",      NULL};
static const char *const block_texts[] = {"spam",
                                          "blacklist",
                                          "blocklist",
                                          "block list",
                                          "blocked",
                                          "dnsbl",
                                          "rbl",
                                          "spamhaus",
                                          "spamcop",
                                          "barracuda",
                                          "reputation",
                                          "policy",
                                          "dmarc",
                                          "spf",
                                          "dkim",
                                          "unauthenticated",
                                          "not authorized",
                                          "authentication",
                                          "relay access denied",
                                          "relaying denied",
                                          "relay not permitted",
                                          "access denied",
                                          "content rejected",
                                          "virus",
                                          "malware",
                                          "phish",
                                          "banned",
                                          "refused",
                                          NULL};

static int any_text(const char *text, const char *const *list)
{
    for (size_t i = 0; text && list[i]; i++)
        if (strcasestr(text, list[i]) != NULL)
            return 1;
    return 0;
}

/* bounce_classify - see bounce.h */
enum bounce_class bounce_classify(const char *status, const char *text)
{
    int cls = 0, subj = -1, det = -1;

    if (status && (status[0] == '2' || status[0] == '4' || status[0] == '5') &&
        status[1] == '.') {
        char *end;

        cls = status[0] - '0';
        subj = (int)strtol(status + 2, &end, 10);
        if (*end == '.')
            det = (int)strtol(end + 1, NULL, 10);
    }
    if (cls == 4)
        return BOUNCE_SOFT;
    if (cls == 5) {
        switch (subj) {
        case 1:
            if (det == 7 || det == 8)
                return BOUNCE_BLOCK;
            if (det > 0)
                return BOUNCE_HARD;
            break;
        case 2:
            if (det > 0)
                return any_text(text, hard_texts) && det == 1 ? BOUNCE_HARD : BOUNCE_SOFT;
            break;
        case 3:
            if (det > 0)
                return BOUNCE_SOFT;
            break;
        case 4:
            if (det == 4)
                return BOUNCE_HARD;
            if (det > 0 && !any_text(text, hard_texts))
                return BOUNCE_SOFT;
            break;
        case 6:
        case 7:
            return BOUNCE_BLOCK;
        default:
            break;
        }
    }
    /* X.0.0, 5.5.x, an unknown detail or no code: the text decides */
    if (any_text(text, hard_texts))
        return BOUNCE_HARD;
    if (any_text(text, soft_texts))
        return BOUNCE_SOFT;
    if (any_text(text, block_texts))
        return BOUNCE_BLOCK;
    return BOUNCE_SOFT;
}

/* bounce_class_name - see bounce.h */
const char *bounce_class_name(enum bounce_class c)
{
    switch (c) {
    case BOUNCE_HARD:
        return "hard";
    case BOUNCE_BLOCK:
        return "block";
    default:
        return "soft";
    }
}

/* bounce_kind_name - see bounce.h */
const char *bounce_kind_name(enum bounce_kind k)
{
    static const char *const names[] = {"none", "bounce", "delay", "autoreply", "arf"};

    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "none";
}

/* status_at - an enhanced code "C.S.D" starting at p (within end); its length or 0 */
static size_t status_at(const char *p, const char *end)
{
    const char *q = p;
    int digits;

    if (q >= end || (*q != '2' && *q != '4' && *q != '5'))
        return 0;
    q++;
    for (int part = 0; part < 2; part++) {
        if (q >= end || *q != '.')
            return 0;
        q++;
        for (digits = 0; q < end && isdigit((unsigned char)*q); q++)
            digits++;
        if (digits < 1 || digits > 3)
            return 0;
    }
    if (q < end && (isalnum((unsigned char)*q) ||
                    (*q == '.' && q + 1 < end && isdigit((unsigned char)q[1]))))
        return 0;
    return (size_t)(q - p);
}

/* bounce_status_find - see bounce.h */
int bounce_status_find(const char *text, size_t len, char out[16])
{
    const char *end = text + len;

    out[0] = 0;
    for (const char *p = text; p < end; p++) {
        size_t n;

        if (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '.'))
            continue;
        if ((n = status_at(p, end)) > 0 && n < 16) {
            memcpy(out, p, n);
            out[n] = 0;
            return 1;
        }
    }
    return 0;
}

/* basic_status - "C.0.0" from the first SMTP reply code (4xx, 5xx) in text; 1 or 0 */
static int basic_status(const char *text, char out[16])
{
    for (const char *p = text; *p; p++) {
        if ((p == text || !isalnum((unsigned char)p[-1])) && (*p == '4' || *p == '5') &&
            isdigit((unsigned char)p[1]) && isdigit((unsigned char)p[2]) &&
            (p[3] == ' ' || p[3] == '-' || p[3] == 0)) {
            out[0] = *p;
            memcpy(out + 1, ".0.0", 5);
            return 1;
        }
    }
    return 0;
}

/* Report building. */

/* bounce_report_init - see bounce.h */
void bounce_report_init(struct bounce_report *r)
{
    memset(r, 0, sizeof(*r));
    r->format = "";
    buf_init(&r->note, 32);
}

static void rcpts_free(struct bounce_report *r)
{
    for (size_t i = 0; i < r->n; i++) {
        myfree(r->rcpt[i].address);
        myfree(r->rcpt[i].action);
        myfree(r->rcpt[i].reason);
        myfree(r->rcpt[i].remote_mta);
    }
    myfree(r->rcpt);
    r->rcpt = NULL;
    r->n = r->cap = 0;
}

/* bounce_report_free - see bounce.h */
void bounce_report_free(struct bounce_report *r)
{
    rcpts_free(r);
    myfree(r->source);
    myfree(r->original);
    buf_release(&r->note);
    memset(r, 0, sizeof(*r));
}

/* one_line - text with its white space runs (line breaks too) made one space, trimmed,
 * cut */
static char *one_line(const char *text, size_t len)
{
    struct buf b;
    int space = 0;

    buf_init(&b, len + 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];

        if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == 0) {
            space = b.len > 0;
            continue;
        }
        if (space)
            buf_putc(&b, ' ');
        space = 0;
        buf_putc(&b, c < 0x20 || c == 0x7f ? '?' : c);
    }
    char *out;

    if (b.len > BOUNCE_REASON_MAX)
        buf_truncate(&b, utf8_cut(b.data, BOUNCE_REASON_MAX));
    out = buf_steal(&b);
    buf_release(&b);
    return out;
}

/* bare_address - an address without "rfc822;", white space and <>, or NULL if none */
static char *bare_address(const char *v, size_t len)
{
    const char *semi = memchr(v, ';', len);
    const char *end = v + len;

    if (semi)
        v = semi + 1;
    while (v < end && (isspace((unsigned char)*v) || *v == '<'))
        v++;
    while (end > v && (isspace((unsigned char)end[-1]) || end[-1] == '>'))
        end--;
    if (end == v || memchr(v, '@', (size_t)(end - v)) == NULL)
        return NULL;
    for (const char *p = v; p < end; p++)
        if (isspace((unsigned char)*p) || *p == '<' || *p == '>' ||
            (unsigned char)*p < 0x20)
            return NULL;
    return mystrndup(v, (size_t)(end - v));
}

/* find_rcpt - the report's recipient of that address (case-insensitively), or NULL */
static struct bounce_rcpt *find_rcpt(struct bounce_report *r, const char *addr)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcasecmp(r->rcpt[i].address, addr) == 0)
            return &r->rcpt[i];
    return NULL;
}

/* add_rcpt - a new recipient (address taken over), or NULL at the limit */
static struct bounce_rcpt *add_rcpt(struct bounce_report *r, char *addr)
{
    struct bounce_rcpt *b;

    if (r->n >= BOUNCE_MAX_RCPTS) {
        myfree(addr);
        return NULL;
    }
    r->rcpt = mygrow(r->rcpt, &r->cap, r->n, sizeof(*r->rcpt));
    b = &r->rcpt[r->n++];
    memset(b, 0, sizeof(*b));
    b->address = addr;
    return b;
}

/* finish_rcpt - status and class from what was found */
static void finish_rcpt(struct bounce_rcpt *b, const char *status, const char *diag)
{
    char st[16] = "";

    if (b->reason == NULL)
        b->reason = mystrdup(diag ? diag : "");
    if (status && status_at(status, status + strlen(status)) == strlen(status))
        snprintf(st, sizeof(st), "%s", status);
    /* a generic code beside a specific one of the same class in the reply */
    if (st[0] == 0 || strcmp(st + 1, ".0.0") == 0) {
        char found[16];

        if (bounce_status_find(b->reason, strlen(b->reason), found) &&
            (st[0] == 0 || found[0] == st[0]))
            memcpy(st, found, sizeof(st));
    }
    if (st[0] == 0 && !basic_status(b->reason, st))
        snprintf(st, sizeof(st), "%s",
                 b->action && strcmp(b->action, "delayed") == 0 ? "4.0.0" : "5.0.0");
    if (b->action && strcmp(b->action, "delayed") == 0 && st[0] != '4')
        st[0] = '4'; /* delayed is temporary, whatever the report says */
    memcpy(b->status, st, sizeof(b->status));
    b->cls = bounce_classify(b->status, b->reason);
}

/* Reading fields of a report part (delivery-status, feedback-report). */

struct field {
    const char *name;
    size_t name_len;
    struct buf value; /* unfolded */
};

/*
 * next_field - the field at *pos in text (LF or CRLF lines, folded),
 * advancing *pos: 1 with f filled, 0 at a blank line (the end of a block,
 * *pos after it), -1 at the end of the text.
 */
static int next_field(const char *text, size_t len, size_t *pos, struct field *f)
{
    size_t p = *pos, eol;
    const char *colon;

    if (p >= len)
        return -1;
    eol = p;
    while (eol < len && text[eol] != '\n')
        eol++;
    if (eol == p || (eol == p + 1 && text[p] == '\r')) {
        *pos = eol < len ? eol + 1 : len;
        return 0;
    }
    buf_reset(&f->value);
    colon = memchr(text + p, ':', eol - p);
    f->name = text + p;
    f->name_len = colon ? (size_t)(colon - (text + p)) : 0;
    buf_append(&f->value, colon ? colon + 1 : text + p,
               colon ? (size_t)(text + eol - (colon + 1)) : eol - p);
    for (p = eol < len ? eol + 1 : len; p < len && (text[p] == ' ' || text[p] == '\t');) {
        eol = p;
        while (eol < len && text[eol] != '\n')
            eol++;
        buf_append(&f->value, text + p, eol - p);
        p = eol < len ? eol + 1 : len;
    }
    while (f->name_len > 0 && isspace((unsigned char)f->name[f->name_len - 1]))
        f->name_len--;
    *pos = p;
    return 1;
}

static int field_is(const struct field *f, const char *name)
{
    return f->name_len == strlen(name) && strncasecmp(f->name, name, f->name_len) == 0;
}

/* after_type - a typed value ("smtp; 550 ...", "dns; host") without its type */
static const char *after_type(const char *v)
{
    const char *semi = strchr(v, ';');

    if (semi && (size_t)(semi - v) < 16) {
        for (const char *p = v; p < semi; p++)
            if (!isalnum((unsigned char)*p) && *p != '-' && !isspace((unsigned char)*p))
                return v;
        v = semi + 1;
    }
    while (isspace((unsigned char)*v))
        v++;
    return v;
}

/*
 * parse_dsn - the per-recipient blocks of a message/delivery-status body;
 * returns how many name a recipient (whatever their action)
 */
static int parse_dsn(struct bounce_report *r, const char *text, size_t len)
{
    struct field f;
    size_t pos = 0;
    int rc, block = 0, named = 0;

    buf_init(&f.value, 128);
    for (;;) {
        char *final = NULL, *orig = NULL, *action = NULL, *status = NULL, *diag = NULL,
             *mta = NULL;
        int fields = 0;

        while ((rc = next_field(text, len, &pos, &f)) > 0) {
            char **slot = field_is(&f, "Final-Recipient")      ? &final
                          : field_is(&f, "Original-Recipient") ? &orig
                          : field_is(&f, "Action")             ? &action
                          : field_is(&f, "Status")             ? &status
                          : field_is(&f, "Diagnostic-Code")    ? &diag
                          : field_is(&f, "Remote-MTA")         ? &mta
                                                               : NULL;
            fields++;
            if (slot && *slot == NULL)
                *slot = one_line(f.value.data, f.value.len);
        }
        if (block > 0 || final || orig) {
            char *addr = final ? bare_address(final, strlen(final)) : NULL;

            if (addr == NULL && orig)
                addr = bare_address(orig, strlen(orig));
            if (addr) {
                named++;
                const char *act = action ? action : "";
                char st[16] = "";
                struct bounce_rcpt *b;

                if (status)
                    bounce_status_find(status, strlen(status), st);
                if (*act == 0 || strncasecmp(act, "failed", 6) == 0 ||
                    strncasecmp(act, "delayed", 7) == 0) {
                    if (*act == 0)
                        act = st[0] == '4' ? "delayed" : st[0] == '2' ? "" : "failed";
                    if (*act && (b = find_rcpt(r, addr)) == NULL &&
                        (b = add_rcpt(r, mystrdup(addr))) != NULL) {
                        b->action =
                            mystrndup(act, strncasecmp(act, "failed", 6) == 0 ? 6 : 7);
                        for (char *p = b->action; *p; p++)
                            *p = (char)tolower((unsigned char)*p);
                        b->reason = mystrdup(diag ? after_type(diag) : "");
                        b->remote_mta = mta ? mystrdup(after_type(mta)) : NULL;
                        finish_rcpt(b, st, NULL);
                    }
                }
                myfree(addr);
            }
        }
        if (fields > 0)
            block++;
        myfree(final);
        myfree(orig);
        myfree(action);
        myfree(status);
        myfree(diag);
        myfree(mta);
        if (rc < 0)
            break;
    }
    buf_release(&f.value);
    return named;
}

/* is_report - is the message itself a multipart/report? */
static int is_report(const char *msg, size_t hlen)
{
    struct header_field f;
    struct buf v;
    int yes;

    if (!header_find(msg, hlen, "Content-Type", &f))
        return 0;
    buf_init(&v, 64);
    header_value(&f, &v);
    yes = strncasecmp(v.data, "multipart/report", 16) == 0;
    buf_release(&v);
    return yes;
}

/*
 * unterminated_part - the body of the last part of this type when the
 * multipart around it was cut off before its close delimiter (the MIME walk
 * drops such a part): from the empty line after its Content-Type to the next
 * delimiter line or the end; 1 with it in out, or 0
 */
static int unterminated_part(const char *msg, size_t len, const char *type,
                             struct buf *out)
{
    const char *p = NULL, *q, *end = msg + len;

    for (const char *s = msg;
         (s = memmem(s, (size_t)(end - s), type, strlen(type))) != NULL; s++)
        p = s;
    if (p == NULL || (q = memmem(p, (size_t)(end - p), "\r\n\r\n", 4)) == NULL)
        return 0;
    q += 4;
    for (const char *l = q; l < end;) {
        const char *nl = memchr(l, '\n', (size_t)(end - l));

        if (end - l >= 2 && l[0] == '-' && l[1] == '-')
            return buf_append(out, q, (size_t)(l - q)), 1;
        l = nl ? nl + 1 : end;
    }
    buf_append(out, q, (size_t)(end - q));
    return 1;
}

/* The parts of a message that matter, found by one MIME walk. */
struct parts {
    const char *msg;
    struct buf ds;   /* message/delivery-status, decoded */
    struct buf fr;   /* message/feedback-report, decoded */
    struct buf text; /* the text parts (HTML as text when there is no plain one) */
    struct buf html; /* the HTML parts as text */
    struct buf
        original;      /* the returned original's header block, or a forwarded message */
    struct buf nested; /* the first message/rfc822, whole, decoded */
    int has_ds, has_fr, has_original, has_nested;
};

/* html_text - HTML as rough text: tags gone, breaks at block ends, a few entities */
static void html_text(const char *h, size_t len, struct buf *out)
{
    static const struct {
        const char *ent;
        char c;
    } ents[] = {{"&lt;", '<'},  {"&gt;", '>'},   {"&amp;", '&'}, {"&nbsp;", ' '},
                {"&#64;", '@'}, {"&quot;", '"'}, {"&#160;", ' '}};

    for (size_t i = 0; i < len; i++) {
        if (h[i] == '<') {
            const char *end = memchr(h + i, '>', len - i);
            size_t tl = end ? (size_t)(end - (h + i)) : len - i;

            if (tl > 2 &&
                (strncasecmp(h + i, "<br", 3) == 0 || strncasecmp(h + i, "</p", 3) == 0 ||
                 strncasecmp(h + i, "</div", 5) == 0 ||
                 strncasecmp(h + i, "</tr", 4) == 0 ||
                 strncasecmp(h + i, "</h", 3) == 0 || strncasecmp(h + i, "</li", 4) == 0))
                buf_putc(out, '\n');
            if (tl > 6 && (strncasecmp(h + i, "<style", 6) == 0 ||
                           strncasecmp(h + i, "<script", 7) == 0)) {
                const char *close =
                    strncasecmp(h + i, "<style", 6) == 0 ? "</style" : "</script";
                const char *c = memmem(h + i, len - i, close, strlen(close));

                if (c == NULL)
                    break;
                end = memchr(c, '>', len - (size_t)(c - h));
                tl = end ? (size_t)(end - (h + i)) : len - i;
            }
            i += tl;
            continue;
        }
        if (h[i] == '&') {
            size_t k;

            for (k = 0; k < sizeof(ents) / sizeof(ents[0]); k++)
                if (len - i >= strlen(ents[k].ent) &&
                    strncasecmp(h + i, ents[k].ent, strlen(ents[k].ent)) == 0)
                    break;
            if (k < sizeof(ents) / sizeof(ents[0])) {
                buf_putc(out, ents[k].c);
                i += strlen(ents[k].ent) - 1;
                continue;
            }
        }
        buf_putc(out, h[i] == '\r' ? ' ' : h[i]);
    }
    buf_putc(out, '\n');
}

/* headers_of - the header block of a message (any line ends) into out, canonical */
static void headers_of(const char *m, size_t len, struct buf *out)
{
    struct buf c;
    size_t body, hlen;

    buf_init(&c, len + 64);
    header_canonical(m, len, &c);
    hlen = header_split(c.data, c.len, &body);
    buf_reset(out);
    buf_append(out, c.data, hlen);
    buf_release(&c);
}

static int collect_part(const struct mime_part *p, void *ctx)
{
    struct parts *ps = ctx;
    const char *body = ps->msg + p->body_start;
    struct buf dec;

    buf_init(&dec, p->body_len + 1);
    if (mime_decode(p->cte, body, p->body_len, &dec) < 0)
        buf_append(&dec, body, p->body_len);
    if (strcmp(p->type, "message") == 0 &&
        (strcmp(p->subtype, "delivery-status") == 0 ||
         strcmp(p->subtype, "global-delivery-status") == 0)) {
        if (!ps->has_ds)
            buf_append(&ps->ds, dec.data, dec.len);
        ps->has_ds = 1;
    } else if (strcmp(p->type, "message") == 0 &&
               strcmp(p->subtype, "feedback-report") == 0) {
        if (!ps->has_fr)
            buf_append(&ps->fr, dec.data, dec.len);
        ps->has_fr = 1;
    } else if ((strcmp(p->type, "message") == 0 && (strcmp(p->subtype, "rfc822") == 0 ||
                                                    strcmp(p->subtype, "global") == 0)) ||
               (strcmp(p->type, "text") == 0 &&
                strcmp(p->subtype, "rfc822-headers") == 0)) {
        headers_of(dec.data, dec.len, &ps->original);
        ps->has_original = 1;
        if (!ps->has_nested && p->type[0] == 'm') {
            buf_append(&ps->nested, dec.data, dec.len);
            ps->has_nested = 1;
        }
    } else if (strcmp(p->type, "text") == 0 && strcmp(p->subtype, "plain") == 0 &&
               (!p->attachment || p->depth == 0)) {
        buf_append(&ps->text, dec.data, dec.len);
        buf_puts(&ps->text, "\n");
    } else if (strcmp(p->type, "text") == 0 && strcmp(p->subtype, "html") == 0 &&
               !p->attachment) {
        html_text(dec.data, dec.len, &ps->html);
    }
    buf_release(&dec);
    return 0;
}

/* Recognising a message without a report. */

static int header_value_of(const char *msg, size_t hlen, const char *name,
                           struct buf *out)
{
    struct header_field f;

    buf_reset(out);
    if (!header_find(msg, hlen, name, &f))
        return 0;
    header_value(&f, out);
    return 1;
}

/* Subjects and opening sentences of bounces, lower case. */
static const char *const bounce_subjects[] = {"undeliver",
                                              "delivery status notification",
                                              "delivery failure",
                                              "failure notice",
                                              "returned mail",
                                              "mail delivery failed",
                                              "delivery has failed",
                                              "could not be delivered",
                                              "couldn't be delivered",
                                              "returned to sender",
                                              "delivery notification",
                                              "non remis",
                                              "nondeliverable",
                                              "non-deliverable",
                                              "delivery problem",
                                              "warning: could not send",
                                              "delayed mail",
                                              "delivery delayed",
                                              "mail system error",
                                              "unzustellbar",
                                              NULL};
static const char *const bounce_bodies[] = {
    "this is the qmail-send program",
    "this is the postfix program",
    "this is the mail system at host",
    "mail delivery software",
    "transcript of session follows",
    "permanent fatal errors",
    "courier mail server",
    "delivery has failed to these recipients",
    "did not reach some or all of the intended recipients",
    "unable to deliver your message",
    "couldn't be delivered",
    "could not be delivered to one or more",
    "message could not be delivered",
    "the following address(es) failed",
    "i'm afraid i wasn't able to deliver",
    "delivery to the following recipient",
    "address not found",
    "your message wasn't delivered",
    NULL};
static const char *const daemons[] = {
    "mailer-daemon", "postmaster", "mail delivery", "mailer daemon", "mail-daemon",
    "bounce",        NULL};
/* Where the returned original starts in a text bounce, lower case. */
static const char *const original_marks[] = {"below this line is a copy of the message",
                                             "this is a copy of the message",
                                             "original message follows",
                                             "----- original message -----",
                                             "returned message follows",
                                             "returned mail follows",
                                             "unsent message below",
                                             "the original message was",
                                             "original message headers",
                                             "the header of the original message",
                                             "this is a copy of the headers",
                                             "------- original message",
                                             "--- original message",
                                             "text of the original message",
                                             NULL};
static const char *const delay_texts[] = {"will continue trying",
                                          "will keep trying",
                                          "still trying",
                                          "not yet been delivered",
                                          "has not been delivered yet",
                                          "delivery delayed",
                                          "delivery is delayed",
                                          "this is a temporary error",
                                          "warning: could not send message for past",
                                          "message still undelivered",
                                          "will retry",
                                          "is delayed",
                                          NULL};
static const char *const permanent_texts[] = {"permanent error",
                                              "permanent fatal",
                                              "given up",
                                              "giving up",
                                              "could not be delivered",
                                              "couldn't be delivered",
                                              "unable to deliver",
                                              "did not reach",
                                              "delivery has failed",
                                              "failed permanently",
                                              "retry timeout exceeded",
                                              "returned to sender",
                                              "address not found",
                                              "wasn't delivered",
                                              "not be delivered",
                                              NULL};

static int any_lc(const char *text, const char *const *list)
{
    return any_text(text, list);
}

/* autoreply - do the top fields say an automatic reply? */
static int autoreply(const char *msg, size_t hlen)
{
    static const char *const subjects[] = {"out of office",
                                           "out of the office",
                                           "automatic reply",
                                           "auto:",
                                           "autoreply",
                                           "auto-reply",
                                           "auto reply",
                                           "abwesenheit",
                                           "automatische antwort",
                                           "réponse automatique",
                                           "reponse automatique",
                                           "vacation",
                                           "away from",
                                           "on leave",
                                           NULL};
    struct buf v;
    int yes = 0;

    buf_init(&v, 64);
    if (header_value_of(msg, hlen, "Auto-Submitted", &v) && v.len > 0 &&
        strncasecmp(v.data, "no", 2) != 0)
        yes = 1;
    else if (header_value_of(msg, hlen, "X-Autoreply", &v) ||
             header_value_of(msg, hlen, "X-Autorespond", &v) ||
             header_value_of(msg, hlen, "X-Autoresponse", &v))
        yes = 1;
    else if (header_value_of(msg, hlen, "Precedence", &v) &&
             strcasestr(v.data, "auto_reply") != NULL)
        yes = 1;
    else if (header_value_of(msg, hlen, "Subject", &v)) {
        for (size_t i = 0; subjects[i] && !yes; i++)
            if (strncasecmp(v.data, subjects[i], strlen(subjects[i])) == 0 ||
                (strlen(subjects[i]) > 5 && strcasestr(v.data, subjects[i]) != NULL))
                yes = 1;
    }
    buf_release(&v);
    return yes;
}

/* forwarded - a subject of a message a person forwards ("Fwd: ...") */
static int forwarded(const char *subject)
{
    static const char *const prefixes[] = {
        "fwd:", "fw:", "wg:", "tr:", "rv:", "enc:", NULL};

    for (size_t i = 0; prefixes[i]; i++)
        if (strncasecmp(subject, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
}

/* looks_like_bounce - From, Subject, X-Failed-Recipients or the text say so */
static int looks_like_bounce(const char *msg, size_t hlen, const char *text)
{
    struct buf v;
    int yes = 0;

    buf_init(&v, 64);
    if (header_value_of(msg, hlen, "X-Failed-Recipients", &v))
        yes = 1;
    else if (header_value_of(msg, hlen, "From", &v) && any_lc(v.data, daemons))
        yes = 1;
    else if (header_value_of(msg, hlen, "Subject", &v) && forwarded(v.data))
        yes = 0; /* a person passing a bounce on, in words: not the report itself */
    else if (v.len > 0 && any_lc(v.data, bounce_subjects))
        yes = 1;
    else if (any_lc(text, bounce_bodies))
        yes = 1;
    buf_release(&v);
    return yes;
}

/* Text bounces. */

static int local_char(int c)
{
    return isalnum(c) || (c != 0 && strchr(".!#$%&'*+/=?^_`{|}~-", c) != NULL) ||
           c >= 0x80;
}

static int domain_char(int c)
{
    return isalnum(c) || c == '.' || c == '-' || c >= 0x80;
}

/*
 * address_in - the address around the first '@' at or after p in a line
 * (its bounds in *s, *e), or 0 if there is none that looks like one.
 */
static int address_in(const char *p, const char *end, const char **s, const char **e)
{
    for (const char *at = p; (at = memchr(at, '@', (size_t)(end - at))) != NULL; at++) {
        const char *a = at, *b = at + 1;

        while (a > p && local_char((unsigned char)a[-1]))
            a--;
        while (b < end && domain_char((unsigned char)*b))
            b++;
        while (b > at + 1 && (b[-1] == '.' || b[-1] == '-'))
            b--;
        if (a < at && b > at + 1 && memchr(at + 1, '.', (size_t)(b - at - 1)) != NULL) {
            while (a < at && *a == '.')
                a++;
            *s = a;
            *e = b;
            return 1;
        }
    }
    return 0;
}

/* ignored - an address that is never a failed recipient: daemons, the report's own */
static int ignored(const char *addr, const struct buf *own)
{
    if (strncasecmp(addr, "postmaster@", 11) == 0 ||
        strncasecmp(addr, "mailer-daemon@", 14) == 0)
        return 1;
    for (const char *p = own->data; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);

        if (n == strlen(addr) && strncasecmp(p, addr, n) == 0)
            return 1;
        p = nl ? nl + 1 : p + n;
    }
    return 0;
}

/*
 * rcpt_line - is this line (trimmed) one that names a failed recipient: the
 * address first (bare, in <>, or in quotes), then nothing, a colon and maybe
 * the reply, "...", or " on DATE"; or an SMTP reply naming it with "..."
 * (Sendmail's "550 5.1.1 bob@x... User unknown")?  Returns the address's
 * bounds and where its text starts (*rest), else 0.
 */
static int rcpt_line(const char *p, const char *end, const char **as, const char **ae,
                     const char **rest)
{
    const char *q = p;

    if (end - p > 4 && isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[1]) &&
        isdigit((unsigned char)p[2]) && (p[3] == ' ' || p[3] == '-') &&
        (p[0] == '4' || p[0] == '5')) {
        /* "550 5.1.1 <bob@x>... User unknown" */
        if (address_in(p, end, as, ae) && end - *ae >= 3 &&
            (memcmp(*ae, "...", 3) == 0 || (*ae < end && **ae == '>' && end - *ae >= 4 &&
                                            memcmp(*ae + 1, "...", 3) == 0))) {
            *rest = p;
            return 1;
        }
        return 0;
    }
    if (q < end && (*q == '<' || *q == '"' || *q == '\''))
        q++;
    if (!address_in(q, end, as, ae) || *as != q)
        return 0;
    q = *ae;
    if (q < end && (*q == '>' || *q == '"' || *q == '\''))
        q++;
    while (q < end && (*q == ' ' || *q == '\t'))
        q++;
    if (q == end)
        *rest = end;
    else if (*q == ':')
        *rest = q + 1;
    else if (end - q >= 3 && memcmp(q, "...", 3) == 0)
        *rest = q + 3;
    else if (end - q >= 3 && strncasecmp(q, "on ", 3) == 0)
        *rest = end; /* Exchange: "bob@x on 12/7/2026 10:00 AM" */
    else if (*q == '(' || *q == '[' || *q == '|' || *q == ',')
        *rest = q;
    else
        return 0;
    return 1;
}

/* trim - a line's bounds without surrounding white space */
static void trim(const char **p, const char **end)
{
    while (*p < *end && (**p == ' ' || **p == '\t'))
        (*p)++;
    while (*end > *p && isspace((unsigned char)(*end)[-1]))
        (*end)--;
}

/* diag_add - one more piece of a recipient's text */
static void diag_add(struct buf *d, const char *p, size_t n)
{
    if (n == 0)
        return;
    if (d->len > 0)
        buf_putc(d, ' ');
    if (d->len < 4 * BOUNCE_REASON_MAX)
        buf_append(d, p, n);
}

struct text_rcpt {
    char *addr;
    struct buf diag;
};

/* parse_text - the failed recipients of a bounce written for people */
static void parse_text(struct bounce_report *r, const char *text, size_t len,
                       const struct buf *own, int delayed)
{
    struct text_rcpt *tr = NULL;
    size_t ntr = 0, cap = 0;
    ssize_t cur = -1, pending = -1; /* the recipient the next lines describe */
    const char *p = text, *end = text + len;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *ls = p, *le = eol ? eol : end, *as, *ae, *rest;

        p = eol ? eol + 1 : end;
        trim(&ls, &le);
        if (ls == le) {
            cur = -1;
            continue;
        }
        if (le - ls > 4 && (strncasecmp(ls, ">>> rcpt to:", 12) == 0 ||
                            strncasecmp(ls, ">>> rcpt to :", 13) == 0)) {
            /* Sendmail's and Courier's transcripts: the reply follows with <<< */
            if (address_in(ls, le, &as, &ae)) {
                char *a = mystrndup(as, (size_t)(ae - as));

                pending = -1;
                for (size_t i = 0; i < ntr; i++)
                    if (strcasecmp(tr[i].addr, a) == 0)
                        pending = (ssize_t)i;
                if (pending < 0 && !ignored(a, own) && ntr < BOUNCE_MAX_RCPTS) {
                    tr = mygrow(tr, &cap, ntr, sizeof(*tr));
                    tr[ntr].addr = a;
                    buf_init(&tr[ntr].diag, 128);
                    pending = (ssize_t)ntr++;
                } else
                    myfree(a);
            }
            cur = -1;
            continue;
        }
        if (le - ls > 4 && strncmp(ls, "<<< ", 4) == 0 && pending >= 0) {
            diag_add(&tr[pending].diag, ls + 4, (size_t)(le - ls - 4));
            continue;
        }
        if (strncmp(ls, ">>> ", 4) == 0) {
            pending = -1;
            continue;
        }
        if (rcpt_line(ls, le, &as, &ae, &rest)) {
            char *a = mystrndup(as, (size_t)(ae - as));
            ssize_t k = -1;

            for (size_t i = 0; i < ntr; i++)
                if (strcasecmp(tr[i].addr, a) == 0)
                    k = (ssize_t)i;
            if (ignored(a, own)) {
                myfree(a);
                cur = -1;
                continue;
            }
            if (k < 0 && ntr < BOUNCE_MAX_RCPTS) {
                tr = mygrow(tr, &cap, ntr, sizeof(*tr));
                tr[ntr].addr = a;
                buf_init(&tr[ntr].diag, 128);
                k = (ssize_t)ntr++;
            } else
                myfree(a);
            if (k >= 0) {
                const char *rs = rest, *re = le;

                trim(&rs, &re);
                diag_add(&tr[k].diag, rs, (size_t)(re - rs));
            }
            cur = k;
            continue;
        }
        if (cur >= 0)
            diag_add(&tr[cur].diag, ls, (size_t)(le - ls));
    }
    for (size_t i = 0; i < ntr; i++) {
        struct bounce_rcpt *b;
        char *reason = one_line(tr[i].diag.data, tr[i].diag.len);

        if (find_rcpt(r, tr[i].addr) == NULL &&
            (b = add_rcpt(r, mystrdup(tr[i].addr))) != NULL) {
            b->action = mystrdup(delayed ? "delayed" : "failed");
            b->reason = reason;
            reason = NULL;
            finish_rcpt(b, NULL, NULL);
        }
        myfree(reason);
        myfree(tr[i].addr);
        buf_release(&tr[i].diag);
    }
    myfree(tr);
}

/*
 * own_addresses - the addresses of these fields, one per line: the report's
 * own sender and recipient, and the original's sender, are never its failed
 * recipients (the original's To is, often)
 */
static void own_addresses(const char *msg, size_t hlen, const char *const *names,
                          struct buf *own)
{
    struct buf v, a, why;

    buf_init(&v, 64);
    buf_init(&a, 64);
    buf_init(&why, 16);
    for (size_t i = 0; names[i]; i++)
        if (header_value_of(msg, hlen, names[i], &v) &&
            addrlist_first(v.data, v.len, &a, &why) == 0 && a.len > 0) {
            buf_append(own, a.data, a.len);
            buf_putc(own, '\n');
        }
    buf_release(&v);
    buf_release(&a);
    buf_release(&why);
}

/* cut_original - where the returned original starts in text (its header kept), or len */
static size_t cut_original(const char *text, size_t len, struct buf *original)
{
    size_t best = len;

    for (size_t i = 0; original_marks[i]; i++) {
        const char *m = strcasestr(text, original_marks[i]);

        if (m && (size_t)(m - text) < best)
            best = (size_t)(m - text);
    }
    if (best < len && original->len == 0) {
        /* the header block that follows the marker's line, if one does */
        const char *p = memchr(text + best, '\n', len - best);

        if (p) {
            p++;
            while (p < text + len && (*p == '\n' || *p == '\r'))
                p++;
            if (p < text + len) {
                const char *colon = memchr(p, ':', (size_t)(text + len - p));
                const char *nl = memchr(p, '\n', (size_t)(text + len - p));

                if (colon && (!nl || colon < nl) && colon > p) {
                    int ok = 1;

                    for (const char *q = p; q < colon; q++)
                        if (!isgraph((unsigned char)*q))
                            ok = 0;
                    if (ok)
                        headers_of(p, (size_t)(text + len - p), original);
                }
            }
        }
        /* the line of the marker itself, back to its start */
        while (best > 0 && text[best - 1] != '\n')
            best--;
    }
    return best;
}

/* parse_arf - an RFC 5965 feedback report's fields */
static void parse_arf(struct bounce_report *r, const char *fr, size_t len,
                      const char *msg, size_t hlen)
{
    struct field f;
    size_t pos = 0;
    char *type = NULL, *mta = NULL;
    int rc;

    buf_init(&f.value, 128);
    while ((rc = next_field(fr, len, &pos, &f)) >= 0) {
        char *v;

        if (rc == 0)
            continue;
        v = one_line(f.value.data, f.value.len);
        if (field_is(&f, "Feedback-Type") && type == NULL) {
            type = v;
            v = NULL;
        } else if (field_is(&f, "Reporting-MTA") && mta == NULL) {
            mta = v;
            v = NULL;
        } else if (field_is(&f, "Original-Rcpt-To")) {
            char *a = bare_address(v, strlen(v));
            struct bounce_rcpt *b;

            if (a && find_rcpt(r, a) == NULL && (b = add_rcpt(r, a)) != NULL)
                b->reason = mystrdup("");
            else
                myfree(a);
        }
        myfree(v);
    }
    buf_release(&f.value);
    for (char *p = type; p && *p; p++)
        *p = (char)tolower((unsigned char)*p);
    for (size_t i = 0; i < r->n; i++)
        r->rcpt[i].action = mystrdup(type && *type ? type : "abuse");
    if (mta && *after_type(mta)) {
        const char *h = after_type(mta);
        size_t n = strcspn(h, " \t;(");

        r->source = mystrndup(h, n);
    } else {
        struct buf v, a, why;
        const char *at;

        buf_init(&v, 64);
        buf_init(&a, 64);
        buf_init(&why, 16);
        if (header_value_of(msg, hlen, "From", &v) &&
            addrlist_first(v.data, v.len, &a, &why) == 0 &&
            (at = strrchr(a.data, '@')) != NULL)
            r->source = mystrdup(at + 1);
        buf_release(&v);
        buf_release(&a);
        buf_release(&why);
    }
    if (r->source)
        for (char *p = r->source; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    r->format = "arf";
    r->kind = BOUNCE_KIND_ARF;
    myfree(type);
    myfree(mta);
}

/* text_format - the name of the text bounce's format, from its words */
static const char *text_format(const char *msg, size_t hlen, const char *text)
{
    static const struct {
        const char *mark, *name;
    } marks[] = {{"qmail-send program", "qmail"},
                 {"this is the postfix program", "postfix"},
                 {"this is the mail system at host", "postfix"},
                 {"transcript of session follows", "sendmail"},
                 {"permanent fatal errors", "sendmail"},
                 {"courier mail server", "courier"},
                 {"delivery has failed to these recipients", "exchange"},
                 {"did not reach some or all of the intended recipients", "exchange"},
                 {"couldn't be delivered", "office365"},
                 {"unable to deliver your message", "yahoo"},
                 {"mail delivery software", "exim"},
                 {"address not found", "gmail"},
                 {NULL, NULL}};
    struct buf v;
    int exim;

    buf_init(&v, 16);
    exim = header_value_of(msg, hlen, "X-Failed-Recipients", &v);
    buf_release(&v);
    if (exim)
        return "exim";
    for (size_t i = 0; marks[i].mark; i++)
        if (strcasestr(text, marks[i].mark))
            return marks[i].name;
    return "text";
}

static const char *const report_fields[] = {"From",     "To",     "Return-Path",
                                            "Reply-To", "Sender", NULL};
static const char *const original_fields[] = {"From", "Return-Path", "Sender", NULL};

/* parse_message - one message (canonical), nesting deep */
static void parse_message(const char *msg, size_t len, struct bounce_report *r,
                          int nesting)
{
    struct parts ps;
    size_t body, hlen = header_split(msg, len, &body);
    struct buf own, text;
    int named = 0;

    memset(&ps, 0, sizeof(ps));
    ps.msg = msg;
    buf_init(&ps.ds, 256);
    buf_init(&ps.fr, 256);
    buf_init(&ps.text, 1024);
    buf_init(&ps.html, 256);
    buf_init(&ps.original, 256);
    buf_init(&ps.nested, 16);
    buf_init(&own, 64);
    buf_init(&text, 256);
    mime_walk(msg, len, collect_part, &ps, NULL);
    r->nesting = nesting;
    if (ps.has_original) {
        myfree(r->original);
        r->original = mymemdup(ps.original.data, ps.original.len + 1);
        r->original_len = ps.original.len;
    }
    buf_append(&text, ps.text.data, ps.text.len);
    if (text.len == 0 || !any_text(text.data, bounce_bodies))
        buf_append(&text, ps.html.data,
                   ps.html.len); /* the HTML says more (Office 365) */
    if (ps.has_fr) {
        parse_arf(r, ps.fr.data, ps.fr.len, msg, hlen);
        goto out;
    }
    /* a report cut off before its close delimiter (not a report forwarded whole) */
    if (!ps.has_ds && is_report(msg, hlen) &&
        unterminated_part(msg, len, "message/delivery-status", &ps.ds))
        ps.has_ds = 1;
    if (ps.has_ds) {
        named = parse_dsn(r, ps.ds.data, ps.ds.len);
        r->format = "rfc3464";
    }
    /* a report that names its recipients says all there is; else the text may */
    if (named == 0 && looks_like_bounce(msg, hlen, text.data)) {
        struct buf orig;
        size_t cut;
        int delayed;

        buf_init(&orig, 256);
        if (ps.has_original)
            buf_append(&orig, ps.original.data, ps.original.len);
        cut = cut_original(text.data, text.len, &orig);
        if (!ps.has_original && orig.len > 0) {
            myfree(r->original);
            r->original = mymemdup(orig.data, orig.len + 1);
            r->original_len = orig.len;
        }
        buf_truncate(&text, cut);
        own_addresses(msg, hlen, report_fields, &own);
        if (r->original)
            own_addresses(r->original, r->original_len, original_fields, &own);
        delayed = any_lc(text.data, delay_texts) && !any_lc(text.data, permanent_texts);
        parse_text(r, text.data, text.len, &own, delayed);
        /* X-Failed-Recipients (Exim) names them when the text did not */
        if (r->n == 0) {
            struct buf v;

            buf_init(&v, 64);
            if (header_value_of(msg, hlen, "X-Failed-Recipients", &v))
                for (char *tok = strtok(v.data, ", \t"); tok;
                     tok = strtok(NULL, ", \t")) {
                    char *a = bare_address(tok, strlen(tok));
                    struct bounce_rcpt *b;

                    if (a && find_rcpt(r, a) == NULL && (b = add_rcpt(r, a)) != NULL) {
                        b->action = mystrdup("failed");
                        finish_rcpt(b, NULL, "");
                    } else
                        myfree(a);
                }
            buf_release(&v);
        }
        if (r->n > 0 && !ps.has_ds)
            r->format = text_format(msg, hlen, text.data);
        buf_release(&orig);
    }
    if (r->n > 0) {
        r->kind = BOUNCE_KIND_DELAY;
        for (size_t i = 0; i < r->n; i++)
            if (strcmp(r->rcpt[i].action, "failed") == 0)
                r->kind = BOUNCE_KIND_BOUNCE;
        goto out;
    }
    if (ps.has_ds) {
        r->format = "rfc3464";
        buf_set(&r->note, "a delivery report with no failed or delayed recipient");
        goto out;
    }
    if (autoreply(msg, hlen)) {
        r->kind = BOUNCE_KIND_AUTOREPLY;
        r->format = "autoreply";
        goto out;
    }
    if (ps.has_nested && nesting < BOUNCE_MAX_NESTING) {
        struct bounce_report inner;
        struct buf c;

        bounce_report_init(&inner);
        buf_init(&c, ps.nested.len + 64);
        header_canonical(ps.nested.data, ps.nested.len, &c);
        parse_message(c.data, c.len, &inner, nesting + 1);
        buf_release(&c);
        if (inner.kind == BOUNCE_KIND_BOUNCE || inner.kind == BOUNCE_KIND_DELAY ||
            inner.kind == BOUNCE_KIND_ARF) {
            bounce_report_free(r);
            *r = inner;
            goto out;
        }
        bounce_report_free(&inner);
    }
    buf_set(&r->note, "not a bounce, feedback report or auto-reply");
out:
    buf_release(&ps.ds);
    buf_release(&ps.fr);
    buf_release(&ps.text);
    buf_release(&ps.html);
    buf_release(&ps.original);
    buf_release(&ps.nested);
    buf_release(&own);
    buf_release(&text);
}

/* bounce_parse - see bounce.h */
void bounce_parse(const char *msg, size_t len, struct bounce_report *r)
{
    bounce_report_free(r);
    bounce_report_init(r);
    parse_message(msg, len, r, 0);
}
