/*
 * dsn - delivery status notifications, see dsn.h.
 *
 * The three parts are built first, each in its own buf, so that the boundary
 * can be checked against every byte it will separate (a remote reply is as
 * untrusted as the original); only then is the report assembled into the
 * caller's buf, so an error leaves it untouched.  Text from outside (SMTP
 * replies, local reasons) goes through dsn_fold, which is the one place
 * that decides what a line may contain and how long it may be.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "dsn.h"
#include "header.h"
#include "mymalloc.h"

#define DSN_WRAP 78          /* RFC 5322's "SHOULD" line length */
#define DSN_RANDOM_BYTES 12  /* of a boundary or Message-ID: 96 bits */
#define DSN_BOUNDARY_TRIES 8 /* a random source that collides this often is broken */
#define DSN_BOUNDARY_PREFIX "=_sg-dsn-"

void (*dsn_random_hook)(void *data, size_t len);

enum dsn_cte { DSN_7BIT, DSN_8BIT, DSN_BINARY };
enum dsn_return { DSN_RETURN_NONE, DSN_RETURN_FULL, DSN_RETURN_HEADERS };

static const char *const dsn_actions[] = {"failed", "delayed", "delivered", "relayed",
                                          "expanded"};

/* dsn_random - len random bytes; uniqueness, not secrecy, is what matters */
static void dsn_random(void *data, size_t len)
{
    static unsigned long counter;
    unsigned char *p = data;
    size_t got = 0;

    if (dsn_random_hook != NULL) {
        dsn_random_hook(data, len);
        return;
    }
    while (got < len) {
        ssize_t n = getrandom(p + got, len - got, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < len) {
        struct timespec ts;
        uint64_t x;

        clock_gettime(CLOCK_REALTIME, &ts);
        x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
            ((uint64_t)getpid() << 16) ^
            __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
        for (; got < len; got++) {
            x ^= x << 13; /* xorshift64 */
            x ^= x >> 7;
            x ^= x << 17;
            p[got] = (unsigned char)x;
        }
    }
}

/* dsn_put_random - DSN_RANDOM_BYTES random bytes, in hex */
static void dsn_put_random(struct buf *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[DSN_RANDOM_BYTES];

    dsn_random(rnd, sizeof(rnd));
    for (size_t i = 0; i < sizeof(rnd); i++) {
        buf_putc(out, hex[rnd[i] >> 4]);
        buf_putc(out, hex[rnd[i] & 15]);
    }
}

/* dsn_check - a name that goes into a header field: present, short, no controls */
static int dsn_check(const char *what, const char *v, int host, struct buf *why)
{
    if (v == NULL || *v == 0)
        return buf_error(why, "no %s", what);
    if (strlen(v) > DSN_VALUE_MAX)
        return buf_error(why, "%s longer than %d bytes", what, DSN_VALUE_MAX);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return buf_error(why, "%s contains a control character", what);
        if (host && (*p > 0x7f || *p == ' ' || *p == '<' || *p == '>'))
            return buf_error(why, "%s is not a host name", what);
    }
    return 0;
}

/* dsn_status_valid - RFC 3463: class "." subject "." detail */
static int dsn_status_valid(const char *s)
{
    size_t n;

    if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return 0;
    s += 2;
    for (int part = 0; part < 2; part++) {
        n = strspn(s, "0123456789");
        if (n < 1 || n > 3)
            return 0;
        s += n;
        if (part == 0 && *s++ != '.')
            return 0;
    }
    return *s == 0;
}

/* dsn_action - the canonical spelling of an action, or NULL */
static const char *dsn_action(const char *action)
{
    if (action == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(dsn_actions) / sizeof(dsn_actions[0]); i++)
        if (strcasecmp(action, dsn_actions[i]) == 0)
            return dsn_actions[i];
    return NULL;
}

/* dsn_put_ascii - a checked name, 8-bit bytes as "?" (field values are 7-bit) */
static void dsn_put_ascii(struct buf *out, const char *s)
{
    for (; *s; s++)
        buf_putc(out, (unsigned char)*s > 0x7e ? '?' : *s);
}

/* dsn_clean - one line of outside text: printable ASCII, blanks squeezed, trimmed */
static void dsn_clean(struct buf *out, const char *p, size_t len)
{
    buf_reset(out);
    if (len > 0 && p[len - 1] == '\r')
        len--;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c == ' ' || c == '\t') {
            if (out->len > 0 && out->data[out->len - 1] != ' ')
                buf_putc(out, ' ');
        } else {
            buf_putc(out, c < 0x20 || c > 0x7e ? '?' : c);
        }
    }
    if (out->len > 0 && out->data[out->len - 1] == ' ')
        buf_truncate(out, out->len - 1);
}

/* dsn_has_text - whether dsn_fold would write anything */
static int dsn_has_text(const char *s)
{
    return s != NULL && s[strspn(s, " \t\r\n")] != 0;
}

/* dsn_newline - end a line, start a continuation with indent */
static size_t dsn_newline(struct buf *out, const char *indent)
{
    buf_puts(out, "\r\n");
    buf_puts(out, indent);
    return strlen(indent);
}

/*
 * dsn_wrap - one clean line s at column col: broken at a space before column
 * DSN_WRAP when there is one, else at the first space that keeps the line
 * within DSN_LINE_MAX, else (a word that long) cut at DSN_LINE_MAX.  The
 * space a line is broken at is replaced by CRLF + indent, so with indent " "
 * this is RFC 5322 folding and unfolding restores s (a cut adds a space).
 */
static void dsn_wrap(struct buf *out, size_t col, const char *s, size_t len,
                     const char *indent)
{
    size_t pos = 0;

    while (pos < len) {
        size_t rest = len - pos, brk = 0, hard, i;

        if (col >= DSN_LINE_MAX)
            col = dsn_newline(out, indent);
        if (col + rest <= DSN_WRAP) {
            buf_append(out, s + pos, rest);
            return;
        }
        hard = DSN_LINE_MAX - col;
        /* the last space within DSN_WRAP, then the first within DSN_LINE_MAX */
        for (i = DSN_WRAP > col ? pos + (DSN_WRAP - col) : pos; i > pos; i--)
            if (i < len && s[i] == ' ') {
                brk = i;
                break;
            }
        for (i = pos + 1; brk == 0 && i < len && i - pos <= hard; i++)
            if (s[i] == ' ')
                brk = i;
        if (brk == 0) {
            if (rest <= hard) {
                buf_append(out, s + pos, rest);
                return;
            }
            buf_append(out, s + pos, hard);
            pos += hard;
        } else {
            buf_append(out, s + pos, brk - pos);
            pos = brk + 1;
        }
        col = dsn_newline(out, indent);
    }
}

/*
 * dsn_fold - outside text after a prefix of col bytes: each of its lines
 * cleaned (dsn_clean), empty ones dropped, the second and later ones on
 * continuation lines that start with indent, long ones wrapped (dsn_wrap).
 */
static void dsn_fold(struct buf *out, size_t col, const char *text, const char *indent)
{
    struct buf line;
    int first = 1;

    buf_init(&line, 128);
    while (*text) {
        const char *nl = strchr(text, '\n');
        size_t n = nl ? (size_t)(nl - text) : strlen(text);

        dsn_clean(&line, text, n);
        if (line.len > 0) {
            if (!first)
                col = dsn_newline(out, indent);
            dsn_wrap(out, col, line.data, line.len, indent);
            first = 0;
        }
        text += nl ? n + 1 : n;
    }
    buf_release(&line);
}

/* dsn_header_len - the header block of a message: up to its first empty line */
static size_t dsn_header_len(const char *p, size_t len)
{
    size_t i = 0;

    while (i < len) {
        const char *nl;

        if (p[i] == '\n' || (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n'))
            return i;
        nl = memchr(p + i, '\n', len - i);
        if (nl == NULL)
            break;
        i = (size_t)(nl - p) + 1;
    }
    return len;
}

/* dsn_put_crlf - bytes of the original, bare LF as CRLF, ending in CRLF */
static void dsn_put_crlf(struct buf *out, const char *p, size_t len)
{
    size_t start = 0;

    buf_reserve(out, len + 2);
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r')) {
            buf_append(out, p + start, i - start);
            buf_puts(out, "\r\n");
            start = i + 1;
        }
    }
    buf_append(out, p + start, len - start);
    if (len > 0 && (out->len < 2 || memcmp(out->data + out->len - 2, "\r\n", 2) != 0))
        buf_puts(out, "\r\n");
}

/* dsn_cte - what RFC 2045 calls CRLF text: 7bit, 8bit, or not text (binary) */
static enum dsn_cte dsn_cte(const char *p, size_t len)
{
    enum dsn_cte cte = DSN_7BIT;
    size_t col = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c == '\r' && i + 1 < len && p[i + 1] == '\n') {
            col = 0;
            i++;
            continue;
        }
        if (c == 0 || c == '\r' || c == '\n' || ++col > DSN_LINE_MAX)
            return DSN_BINARY;
        if (c > 0x7f)
            cte = DSN_8BIT;
    }
    return cte;
}

/* dsn_summary - the any-failed / any-delayed of a report */
static void dsn_summary(const struct dsn_report *r, int *failed, int *delayed)
{
    *failed = *delayed = 0;
    for (size_t i = 0; i < r->n_rcpts; i++) {
        const char *a = dsn_action(r->rcpts[i].action);

        *failed |= strcmp(a, "failed") == 0;
        *delayed |= strcmp(a, "delayed") == 0;
    }
}

/* dsn_text_part - part 1: what happened, for a person */
static void dsn_text_part(const struct dsn_report *r, enum dsn_return ret,
                          struct buf *out)
{
    int failed, delayed;

    dsn_summary(r, &failed, &delayed);
    buf_puts(out, "Content-Description: Notification\r\n"
                  "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
    buf_printf(out, "This is the mail system at host %s.\r\n\r\n", r->reporting_mta);
    if (failed)
        buf_puts(out,
                 "Your message could not be delivered to one or more recipients.\r\n");
    else if (delayed)
        buf_puts(out,
                 "Your message could not be delivered yet to one or more recipients.\r\n"
                 "Delivery will be retried; you do not need to send it again.\r\n");
    else
        buf_puts(out, "Your message was delivered to the recipients listed below.\r\n");
    if (ret == DSN_RETURN_FULL)
        buf_puts(out, "It is attached below.\r\n");
    else if (ret == DSN_RETURN_HEADERS && !r->headers_only)
        buf_printf(out,
                   "Its header is attached below: the message, of %zu bytes,\r\n"
                   "is larger than the %zu bytes returned in full.\r\n",
                   r->original_len, r->max_return);
    else if (ret == DSN_RETURN_HEADERS)
        buf_puts(out, "Its header is attached below.\r\n");
    for (size_t i = 0; i < r->n_rcpts; i++) {
        const struct dsn_rcpt *rc = &r->rcpts[i];
        size_t mark;

        buf_puts(out, "\r\n<");
        dsn_put_ascii(out, rc->recipient);
        buf_printf(out, ">: %s (%s)\r\n", dsn_action(rc->action), rc->status);
        if (!dsn_has_text(rc->diagnostic))
            continue;
        mark = out->len;
        buf_puts(out, "    ");
        if (rc->remote_mta != NULL)
            buf_printf(out, "host %s said: ", rc->remote_mta);
        dsn_fold(out, out->len - mark, rc->diagnostic, "    ");
        buf_puts(out, "\r\n");
    }
}

/* dsn_status_part - part 2: the message/delivery-status fields, for a program */
static void dsn_status_part(const struct dsn_report *r, struct buf *out)
{
    buf_puts(out, "Content-Description: Delivery report\r\n"
                  "Content-Type: message/delivery-status\r\n\r\n");
    /* in the order of RFC 3464's grammar: the envelope id comes first */
    if (r->envid != NULL) {
        buf_puts(out, "Original-Envelope-Id: ");
        dsn_put_ascii(out, r->envid);
        buf_puts(out, "\r\n");
    }
    buf_printf(out, "Reporting-MTA: dns; %s\r\n", r->reporting_mta);
    if (r->arrival != 0) {
        buf_puts(out, "Arrival-Date: ");
        header_date(r->arrival, out);
        buf_puts(out, "\r\n");
    }
    for (size_t i = 0; i < r->n_rcpts; i++) {
        const struct dsn_rcpt *rc = &r->rcpts[i];

        buf_puts(out, "\r\n");
        if (rc->orcpt != NULL) {
            buf_puts(out, "Original-Recipient: ");
            dsn_put_ascii(out, rc->orcpt);
            buf_puts(out, "\r\n");
        }
        buf_puts(out, "Final-Recipient: rfc822; ");
        dsn_put_ascii(out, rc->recipient);
        buf_printf(out, "\r\nAction: %s\r\nStatus: %s\r\n", dsn_action(rc->action),
                   rc->status);
        if (rc->remote_mta != NULL)
            buf_printf(out, "Remote-MTA: dns; %s\r\n", rc->remote_mta);
        if (dsn_has_text(rc->diagnostic)) {
            size_t mark = out->len;

            buf_puts(out, rc->remote_mta != NULL ? "Diagnostic-Code: smtp; "
                                                 : "Diagnostic-Code: X-Sendguard; ");
            dsn_fold(out, out->len - mark, rc->diagnostic, " ");
            buf_puts(out, "\r\n");
        }
        if (rc->last_attempt != 0) {
            buf_puts(out, "Last-Attempt-Date: ");
            header_date(rc->last_attempt, out);
            buf_puts(out, "\r\n");
        }
    }
}

/* dsn_original_part - part 3: the message, or its header, as it came */
static enum dsn_cte dsn_original_part(const struct dsn_report *r, enum dsn_return ret,
                                      struct buf *out)
{
    size_t len = r->original_len;
    struct buf body;
    enum dsn_cte cte;

    if (ret == DSN_RETURN_HEADERS)
        len = dsn_header_len(r->original, len);
    buf_init(&body, len + 2);
    dsn_put_crlf(&body, r->original, len);
    cte = dsn_cte(body.data, body.len);
    buf_puts(out, ret == DSN_RETURN_FULL
                      ? "Content-Description: Original message\r\n"
                        "Content-Type: message/rfc822\r\n"
                      : "Content-Description: Original message header\r\n"
                        "Content-Type: text/rfc822-headers\r\n");
    /* RFC 2046 5.2.1: message/rfc822 may be 8bit or binary, never encoded */
    if (cte == DSN_8BIT)
        buf_puts(out, "Content-Transfer-Encoding: 8bit\r\n");
    else if (cte == DSN_BINARY)
        buf_puts(out, "Content-Transfer-Encoding: binary\r\n");
    buf_puts(out, "\r\n");
    buf_append(out, body.data, body.len);
    buf_release(&body);
    return cte;
}

/* dsn_boundary - a random boundary that occurs in none of the parts */
static int dsn_boundary(struct buf *const *parts, size_t n, struct buf *boundary,
                        struct buf *why)
{
    for (int tries = 0; tries < DSN_BOUNDARY_TRIES; tries++) {
        size_t i;

        buf_set(boundary, DSN_BOUNDARY_PREFIX);
        dsn_put_random(boundary);
        for (i = 0; i < n; i++)
            if (memmem(parts[i]->data, parts[i]->len, boundary->data, boundary->len))
                break;
        if (i == n)
            return 0;
    }
    return buf_error(why,
                     "no MIME boundary found that is absent from the report's parts");
}

/* dsn_validate - everything dsn_build needs, or -1 with why */
static int dsn_validate(const struct dsn_report *r, struct buf *why)
{
    struct buf what;
    int ret = -1;

    if (dsn_check("reporting MTA", r->reporting_mta, 1, why) < 0)
        return -1;
    if (r->to == NULL || *r->to == 0)
        return buf_error(why, "no sender to report to (a null sender gets no report)");
    if (dsn_check("sender", r->to, 0, why) < 0)
        return -1;
    if (r->from != NULL && dsn_check("report sender", r->from, 0, why) < 0)
        return -1;
    if (r->envid != NULL && dsn_check("envelope id", r->envid, 0, why) < 0)
        return -1;
    if (r->rcpts == NULL || r->n_rcpts == 0)
        return buf_error(why, "no recipients to report on");
    buf_init(&what, 64);
    for (size_t i = 0; i < r->n_rcpts; i++) {
        const struct dsn_rcpt *rc = &r->rcpts[i];

        buf_setf(&what, "recipient %zu", i + 1);
        if (dsn_check(buf_str(&what), rc->recipient, 0, why) < 0)
            goto out;
        buf_setf(&what, "original recipient of recipient %zu", i + 1);
        if (rc->orcpt != NULL && dsn_check(buf_str(&what), rc->orcpt, 0, why) < 0)
            goto out;
        buf_setf(&what, "remote MTA of recipient %zu", i + 1);
        if (rc->remote_mta != NULL &&
            dsn_check(buf_str(&what), rc->remote_mta, 1, why) < 0)
            goto out;
        if (dsn_action(rc->action) == NULL) {
            buf_error(why, "recipient %zu: unknown action \"%s\"", i + 1,
                      rc->action ? rc->action : "(none)");
            goto out;
        }
        if (!dsn_status_valid(rc->status)) {
            buf_error(why, "recipient %zu: malformed status \"%s\"", i + 1,
                      rc->status ? rc->status : "(none)");
            goto out;
        }
    }
    ret = 0;
out:
    buf_release(&what);
    return ret;
}

/* dsn_build - see dsn.h */
int dsn_build(const struct dsn_report *r, struct buf *out, struct buf *why)
{
    struct buf text, status, orig, boundary;
    struct buf *parts[3] = {&text, &status, &orig};
    enum dsn_return ret = DSN_RETURN_NONE;
    enum dsn_cte cte = DSN_7BIT;
    int failed, delayed, rc = -1;
    time_t now = r->now ? (time_t)r->now : time(NULL);
    struct tm tm;

    if (dsn_validate(r, why) < 0)
        return -1;
    if (r->original != NULL && r->original_len > 0)
        ret = r->headers_only || (r->max_return && r->original_len > r->max_return)
                  ? DSN_RETURN_HEADERS
                  : DSN_RETURN_FULL;
    buf_init(&text, 1024);
    buf_init(&status, 1024);
    buf_init(&orig, ret == DSN_RETURN_NONE ? 16 : 1024);
    buf_init(&boundary, 64);
    dsn_text_part(r, ret, &text);
    dsn_status_part(r, &status);
    if (ret != DSN_RETURN_NONE)
        cte = dsn_original_part(r, ret, &orig);
    if (dsn_boundary(parts, ret == DSN_RETURN_NONE ? 2 : 3, &boundary, why) < 0)
        goto out;

    dsn_summary(r, &failed, &delayed);
    buf_puts(out, "From: Mail Delivery System <");
    if (r->from != NULL)
        buf_puts(out, r->from);
    else
        buf_printf(out, "MAILER-DAEMON@%s", r->reporting_mta);
    buf_printf(out, ">\r\nTo: <%s>\r\nSubject: %s\r\nDate: ", r->to,
               failed    ? "Undelivered Mail Returned to Sender"
               : delayed ? "Delayed Mail (still being retried)"
                         : "Successful Mail Delivery Report");
    header_date(now, out);
    if (gmtime_r(&now, &tm) == NULL)
        memset(&tm, 0, sizeof(tm));
    buf_printf(out, "\r\nMessage-ID: <%04d%02d%02d%02d%02d%02d.", tm.tm_year + 1900,
               tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    dsn_put_random(out);
    buf_printf(out,
               "@%s>\r\n"
               "Auto-Submitted: auto-replied\r\n"
               "MIME-Version: 1.0\r\n"
               "Content-Type: multipart/report; report-type=delivery-status;\r\n"
               "\tboundary=\"%s\"\r\n",
               r->reporting_mta, buf_str(&boundary));
    /* RFC 2045 6.4: a multipart is labelled as its widest part */
    if (cte == DSN_8BIT)
        buf_puts(out, "Content-Transfer-Encoding: 8bit\r\n");
    else if (cte == DSN_BINARY)
        buf_puts(out, "Content-Transfer-Encoding: binary\r\n");
    buf_puts(out, "\r\nThis is a MIME-encapsulated message.\r\n");
    for (size_t i = 0; i < (ret == DSN_RETURN_NONE ? 2u : 3u); i++) {
        /* a delimiter's leading CRLF is its own: the part keeps its last line end */
        buf_printf(out, "\r\n--%s\r\n", buf_str(&boundary));
        buf_append(out, parts[i]->data, parts[i]->len);
    }
    buf_printf(out, "\r\n--%s--\r\n", buf_str(&boundary));
    rc = 0;
out:
    buf_release(&text);
    buf_release(&status);
    buf_release(&orig);
    buf_release(&boundary);
    return rc;
}

/* dsn_status_from_reply - see dsn.h */
void dsn_status_from_reply(const char *reply, struct buf *out)
{
    const char *p;
    size_t n1, n2;

    buf_reset(out);
    if (reply == NULL || (reply[0] != '2' && reply[0] != '4' && reply[0] != '5') ||
        strspn(reply, "0123456789") != 3 ||
        (reply[3] != ' ' && reply[3] != '-' && reply[3] != 0 && reply[3] != '\r' &&
         reply[3] != '\n'))
        return;
    /* RFC 2034: the enhanced code follows the basic one, in the same class */
    p = reply + 4;
    if ((reply[3] == ' ' || reply[3] == '-') && p[0] == reply[0] && p[1] == '.' &&
        (n1 = strspn(p + 2, "0123456789")) >= 1 && n1 <= 3 && p[2 + n1] == '.' &&
        (n2 = strspn(p + 3 + n1, "0123456789")) >= 1 && n2 <= 3 &&
        strchr(" \t\r\n", p[3 + n1 + n2]) != NULL) { /* NUL included */
        buf_append(out, p, 3 + n1 + n2);
        return;
    }
    buf_printf(out, "%c.0.0", reply[0]);
}
