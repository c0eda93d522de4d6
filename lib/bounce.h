/*
 * bounce - what comes back after mail is sent, read: delivery status
 * notifications (RFC 3464), the common bounces that do not follow it
 * (qmail, Exim, Sendmail and Postfix in their older forms, Courier,
 * Microsoft Exchange and Office 365, Google, Yahoo), feedback reports (RFC
 * 5965, ARF) and auto-replies; and the class of a failure, one function for
 * the relay's own deliveries and for sgadmin ingest.
 *
 * CLASSES.  bounce_classify looks at the enhanced status code first and at
 * the reply's text when the code says little (X.0.0, 5.5.x, none):
 *   hard   the address does not exist: 5.1.x (not 5.1.7/5.1.8, which are
 *          about the sender), 5.4.4, and texts such as "user unknown",
 *          "does not exist", "no such domain";
 *   soft   it may work later: every 4.x.x, 5.2.x (mailbox full, disabled,
 *          message too big), 5.3.x, 5.4.x but 5.4.4, mailbox-full and quota
 *          texts, and a permanent failure whose text gives no cause (one odd
 *          reply should not lose a reader; repeated ones do, by the soft
 *          limit);
 *   block  the receiver refuses the sender, not the address: 5.7.x, 5.6.x,
 *          5.1.7, 5.1.8, and texts naming spam, blocklists, policy, DMARC,
 *          SPF, DKIM, reputation or relaying.
 *
 * PARSING.  bounce_parse takes a message in canonical form (CRLF; see
 * header_canonical) and never fails: what it cannot read is kind
 * BOUNCE_KIND_NONE with a note.  In order:
 *   1. a message/feedback-report part: an ARF report (its Original-Rcpt-To
 *      addresses, Feedback-Type, and the source: Reporting-MTA's host, else
 *      the report's From domain);
 *   2. a message/delivery-status part: every per-recipient block (Final-
 *      else Original-Recipient, Action, Status, Diagnostic-Code,
 *      Remote-MTA); "failed" and "delayed" are kept, "delivered",
 *      "relayed" and "expanded" are not feedback;
 *   3. a message that reads as a bounce (a mailer daemon's From or
 *      Subject, X-Failed-Recipients, or a known opening sentence) but has
 *      no report: its text, up to where the returned original starts, is
 *      searched for the failed addresses and the replies under them, as the
 *      formats above write them;
 *   4. an auto-reply (Auto-Submitted other than "no", X-Autoreply,
 *      Precedence: auto_reply, out-of-office subjects): kind AUTOREPLY;
 *   5. a forwarded message (message/rfc822) is read the same way, up to
 *      BOUNCE_MAX_NESTING deep, so a bounce or report someone forwarded to
 *      the bounce mailbox still counts.
 * The returned original (message/rfc822, text/rfc822-headers, or the text
 * after "a copy of the message follows") is kept as its header block, for
 * the tokens sendguard put there (lib/feedback).  Limits: BOUNCE_MAX_RCPTS
 * recipients, reasons cut at BOUNCE_REASON_MAX bytes; the MIME walk stops at
 * MIME_MAX_DEPTH.
 */
#ifndef SG_BOUNCE_H
#define SG_BOUNCE_H

#include <stddef.h>

#include "buf.h"

#define BOUNCE_MAX_RCPTS 1000
#define BOUNCE_REASON_MAX 1024
#define BOUNCE_MAX_NESTING 3

enum bounce_class { BOUNCE_HARD, BOUNCE_SOFT, BOUNCE_BLOCK };

enum bounce_kind {
    BOUNCE_KIND_NONE,      /* not feedback */
    BOUNCE_KIND_BOUNCE,    /* at least one recipient failed */
    BOUNCE_KIND_DELAY,     /* only delayed recipients */
    BOUNCE_KIND_AUTOREPLY, /* vacation, out of office */
    BOUNCE_KIND_ARF,       /* a feedback report */
};

struct bounce_rcpt {
    char *address;   /* as the report gives it, without "rfc822;" and <> */
    char *action;    /* "failed", "delayed"; ARF: the feedback type ("abuse") */
    char status[16]; /* "5.1.1"; "" for ARF */
    enum bounce_class cls;
    char *reason;     /* the reply or diagnostic, one line; "" if none */
    char *remote_mta; /* or NULL */
};

struct bounce_report {
    enum bounce_kind kind;
    const char *format; /* what recognised it: "rfc3464", "arf", "qmail", ... */
    struct bounce_rcpt *rcpt;
    size_t n, cap;
    char *source;   /* ARF: the feedback loop (host or domain); else NULL */
    char *original; /* the returned original's header block (CRLF), or NULL */
    size_t original_len;
    int nesting;     /* 0, or how deep in forwarded mail the report was */
    struct buf note; /* for kind NONE: why; else empty */
};

/* bounce_classify - the class of a failure from its status ("5.1.1", "" or NULL) and text
 */
enum bounce_class bounce_classify(const char *status, const char *text);

/* bounce_class_name - "hard", "soft", "block" */
const char *bounce_class_name(enum bounce_class c);

/*
 * bounce_status_find - the first enhanced status code (class 2, 4 or 5)
 * in text ("#5.1.1", "550-5.7.26 ...") into out[16]; 1, or 0 with out "".
 */
int bounce_status_find(const char *text, size_t len, char out[16]);

/* bounce_parse - read msg (canonical, CRLF) into r (see above); r is reset first */
void bounce_parse(const char *msg, size_t len, struct bounce_report *r);

void bounce_report_init(struct bounce_report *r);
void bounce_report_free(struct bounce_report *r);

/* bounce_kind_name - "none", "bounce", "delay", "autoreply", "arf" */
const char *bounce_kind_name(enum bounce_kind k);

#endif
