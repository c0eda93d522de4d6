/*
 * dsn - delivery status notifications (RFC 3464): the report a relay sends
 * to the sender of a message it could not deliver, is still retrying, or
 * (when asked with NOTIFY=SUCCESS) delivered.
 *
 * A report is a multipart/report (RFC 6522) of three parts: a short
 * text/plain explanation, the message/delivery-status fields, and the
 * original as message/rfc822, or only its header as text/rfc822-headers
 * (RET=HDRS, or larger than max_return).  Every line ends in CRLF, every
 * header field line stays within 998 octets (long and multi-line SMTP replies
 * are folded), and everything dsn writes itself is 7-bit: 8-bit and control
 * bytes of a remote reply become "?".  The returned original is never
 * altered except that bare LFs become CRLF; its part is labelled 8bit (or
 * binary: NUL, bare CR, lines over 998 octets) when it has to be, and so is
 * the report as a whole, so the relay knows it needs 8BITMIME (BINARYMIME).
 *
 * dsn never puts the original's bytes in the report's own header, never sends
 * a report to the null sender (that is an error: bounces are not bounced), and
 * never reuses a MIME boundary that occurs anywhere in the parts.  Names that
 * land in header fields (reporting_mta, from, to, the recipient fields) are
 * refused when they hold control bytes, so a hostile envelope cannot add
 * header fields or MIME parts.
 */
#ifndef SG_DSN_H
#define SG_DSN_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define DSN_LINE_MAX 998  /* RFC 5322 line limit, without CRLF */
#define DSN_VALUE_MAX 512 /* longest name accepted (an ORCPT is at most 500) */

struct dsn_rcpt {
    const char *recipient;  /* final recipient address, e.g. "bob@example.org" */
    const char *orcpt;      /* ORCPT as given ("rfc822;bob@example.org"), or NULL */
    const char *action;     /* "failed", "delayed", "delivered", "relayed", "expanded" */
    const char *status;     /* "5.1.1", "4.4.1" ... (RFC 3463 syntax) */
    const char *remote_mta; /* host the reply came from, or NULL */
    /*
     * The remote SMTP reply as received ("550 5.1.1 <bob@...>: user
     * unknown"), possibly several lines joined by "\n" (or "\r\n"); or a
     * local reason ("delivery time expired") when remote_mta is NULL; or NULL.
     */
    const char *diagnostic;
    int64_t last_attempt; /* unix time, 0: omit */
};

struct dsn_report {
    const char *reporting_mta; /* our host name */
    const char *from;  /* "MAILER-DAEMON@host" (NULL: MAILER-DAEMON@reporting_mta) */
    const char *to;    /* the original sender; never empty */
    const char *envid; /* ENVID of the original, or NULL */
    int64_t arrival;   /* when the original was accepted (0: omit) */
    int64_t now;       /* Date of the report (0: time(NULL)) */
    const struct dsn_rcpt *rcpts;
    size_t n_rcpts;
    const char *original; /* the original message, CRLF line endings, or NULL */
    size_t original_len;
    int headers_only;  /* RET=HDRS: return only the headers */
    size_t max_return; /* return the whole message only up to this size, else its
                          headers; 0: no limit */
};

/*
 * dsn_build - the complete report message (header + body, CRLF) appended to
 * out; 0, or -1 with why filled (no recipients, missing reporting_mta or to,
 * an unknown action, a malformed status, control bytes in a name) and out
 * left as it was.
 */
int dsn_build(const struct dsn_report *r, struct buf *out, struct buf *why);

/*
 * dsn_status_from_reply - the enhanced status code of an SMTP reply ("550
 * 5.1.1 ..." -> "5.1.1"), or one derived from its basic code when it has
 * none, or one whose class differs from the basic code (5xx -> "5.0.0", 4xx ->
 * "4.0.0", 2xx -> "2.0.0"); it replaces the content of out.  Only the first
 * line of a multi-line reply counts.  out is left empty when the reply does
 * not start with a 2xx, 4xx or 5xx code.
 */
void dsn_status_from_reply(const char *reply, struct buf *out);


/*
 * dsn_random_hook - for tests only: when set, the source of the random bytes
 * of boundaries and Message-IDs (which are otherwise from getrandom(2)).
 */
extern void (*dsn_random_hook)(void *data, size_t len);

#endif
