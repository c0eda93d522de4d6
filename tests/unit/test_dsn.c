/*
 * test_dsn - delivery status notifications: one report byte for byte, then
 * the structure of many (every line CRLF and within 998 octets, the
 * boundary delimiters exactly where they belong, the status blocks exact),
 * the subject for each mix of actions, what of the original comes back,
 * replies folded and sanitised, a boundary never found in the parts even
 * when chance says otherwise, enhanced status codes from replies, and
 * refusals with a reason.  (Python's email parser reading a report is a
 * manual check, not part of this test.)
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cmocka.h>

#include "dsn.h"
#include "header.h"

#define NOW 1700000000     /* Tue, 14 Nov 2023 22:13:20 +0000 */
#define ARRIVAL 1699990000 /* Tue, 14 Nov 2023 19:26:40 +0000 */

static const char orig_msg[] = "From: Alice <alice@example.com>\r\n"
                               "To: bob@example.org\r\n"
                               "Subject: secret plans\r\n"
                               "Message-ID: <1@example.com>\r\n"
                               "\r\n"
                               "Hello Bob.\r\n";
static const char orig_header[] = "From: Alice <alice@example.com>\r\n"
                                  "To: bob@example.org\r\n"
                                  "Subject: secret plans\r\n"
                                  "Message-ID: <1@example.com>\r\n";

/* fake_random - every byte of the n-th call is n: boundaries known in advance */
static unsigned fake_calls;
static void fake_random(void *data, size_t len)
{
    memset(data, (int)(fake_calls++ & 0xff), len);
}

/* stuck_random - always the same bytes */
static void stuck_random(void *data, size_t len)
{
    memset(data, 0xab, len);
}

static int setup(void **state)
{
    (void)state;
    setenv("TZ", "UTC", 1);
    tzset();
    return 0;
}

/* a report taken apart */
struct parsed {
    struct buf msg, header, boundary;
    struct buf part[3]; /* each: its header, empty line, content */
    size_t n_parts;
};

/* count - occurrences of needle in p */
static size_t count(const char *p, size_t len, const char *needle)
{
    size_t n = 0, nlen = strlen(needle);
    const char *q;

    while ((q = memmem(p, len, needle, nlen)) != NULL) {
        n++;
        len -= (size_t)(q - p) + nlen;
        p = q + nlen;
    }
    return n;
}

/* check_lines - every line ends in CRLF and has at most 998 octets */
static void check_lines(const char *p, size_t len)
{
    size_t col = 0;

    assert_true(len >= 2);
    assert_memory_equal(p + len - 2, "\r\n", 2);
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\r') {
            assert_true(i + 1 < len && p[i + 1] == '\n');
            i++;
            col = 0;
            continue;
        }
        assert_true(p[i] != '\n');
        if (++col > DSN_LINE_MAX)
            fail_msg("line of more than %d octets at byte %zu", DSN_LINE_MAX, i);
    }
}

/* parse - check the shape of msg and split it into header, boundary, parts */
static void parse(struct parsed *pr)
{
    const char *m = pr->msg.data, *end = m + pr->msg.len, *p, *q;
    struct buf delim;

    check_lines(m, pr->msg.len);
    p = strstr(m, "\r\n\r\n");
    assert_non_null(p);
    buf_init(&pr->header, 512);
    buf_append(&pr->header, m, (size_t)(p - m) + 2);
    p = strstr(pr->header.data, "boundary=\"");
    assert_non_null(p);
    p += 10;
    q = strchr(p, '"');
    assert_non_null(q);
    buf_init(&pr->boundary, 64);
    buf_append(&pr->boundary, p, (size_t)(q - p));
    assert_true(pr->boundary.len >= 1 && pr->boundary.len <= 70);

    /* the boundary: once in the header, then only in delimiter lines */
    buf_init(&delim, 80);
    buf_printf(&delim, "\r\n--%s", buf_str(&pr->boundary));
    pr->n_parts = count(m, pr->msg.len, delim.data);
    assert_int_equal(count(m, pr->msg.len, buf_str(&pr->boundary)), pr->n_parts + 1);
    assert_true(pr->n_parts == 3 || pr->n_parts == 4);
    pr->n_parts--;
    buf_puts(&delim, "--\r\n");
    assert_int_equal(count(m, pr->msg.len, delim.data), 1);
    assert_memory_equal(end - delim.len, delim.data, delim.len);
    buf_truncate(&delim, delim.len - 4);
    buf_puts(&delim, "\r\n");

    p = m;
    for (size_t i = 0; i < pr->n_parts; i++) {
        p = memmem(p, (size_t)(end - p), delim.data, delim.len);
        assert_non_null(p);
        p += delim.len;
        q = memmem(p, (size_t)(end - p), delim.data, delim.len - 2);
        assert_non_null(q);
        buf_init(&pr->part[i], 1024);
        buf_append(&pr->part[i], p, (size_t)(q - p));
    }
    buf_release(&delim);
}

/* build - a report that must succeed, parsed */
static void build(const struct dsn_report *r, struct parsed *pr)
{
    struct buf why;

    buf_init(&why, 64);
    buf_init(&pr->msg, 4096);
    if (dsn_build(r, &pr->msg, &why) < 0)
        fail_msg("dsn_build: %s", buf_str(&why));
    buf_release(&why);
    parse(pr);
}

static void parsed_free(struct parsed *pr)
{
    buf_release(&pr->msg);
    buf_release(&pr->header);
    buf_release(&pr->boundary);
    for (size_t i = 0; i < pr->n_parts; i++)
        buf_release(&pr->part[i]);
}

/* body - the content of part i, after its header */
static const char *body(const struct parsed *pr, size_t i)
{
    const char *p = strstr(pr->part[i].data, "\r\n\r\n");

    assert_non_null(p);
    return p + 4;
}

/* field - the unfolded value of the first field "name" in text */
static void field(const char *text, const char *name, struct buf *out)
{
    const char *p = strstr(text, name);

    assert_non_null(p);
    p += strlen(name);
    buf_reset(out);
    for (;;) {
        const char *e = strstr(p, "\r\n");

        assert_non_null(e);
        buf_append(out, p, (size_t)(e - p));
        if (e[2] != ' ' && e[2] != '\t')
            break;
        p = e + 2;
    }
}

/* one_rcpt - the common case: a recipient refused by the remote host */
static const struct dsn_rcpt one_rcpt = {
    .recipient = "bob@example.org",
    .action = "failed",
    .status = "5.1.1",
    .remote_mta = "mx.example.org",
    .diagnostic = "550 5.1.1 <bob@example.org>: Recipient address rejected: User "
                  "unknown in virtual mailbox table",
    .last_attempt = NOW - 10,
};

/* base - a report on rcpts with the original returned */
static struct dsn_report base(const struct dsn_rcpt *rcpts, size_t n)
{
    struct dsn_report r = {
        .reporting_mta = "relay.example.com",
        .from = "MAILER-DAEMON@relay.example.com",
        .to = "alice@example.com",
        .arrival = ARRIVAL,
        .now = NOW,
        .rcpts = rcpts,
        .n_rcpts = n,
        .original = orig_msg,
        .original_len = sizeof(orig_msg) - 1,
    };
    return r;
}

/* One report, byte for byte. */
static void test_golden(void **state)
{
    struct dsn_report r = base(&one_rcpt, 1);
    struct parsed pr;
    static const char expect[] =
        "From: Mail Delivery System <MAILER-DAEMON@relay.example.com>\r\n"
        "To: <alice@example.com>\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        "Message-ID: <20231114221320.010101010101010101010101@relay.example.com>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        "\tboundary=\"=_sg-dsn-000000000000000000000000\"\r\n"
        "\r\n"
        "This is a MIME-encapsulated message.\r\n"
        "\r\n"
        "--=_sg-dsn-000000000000000000000000\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        "This is the mail system at host relay.example.com.\r\n"
        "\r\n"
        "Your message could not be delivered to one or more recipients.\r\n"
        "It is attached below.\r\n"
        "\r\n"
        "<bob@example.org>: failed (5.1.1)\r\n"
        "    host mx.example.org said: 550 5.1.1 <bob@example.org>: Recipient address\r\n"
        "    rejected: User unknown in virtual mailbox table\r\n"
        "\r\n"
        "--=_sg-dsn-000000000000000000000000\r\n"
        "Content-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; relay.example.com\r\n"
        "Arrival-Date: Tue, 14 Nov 2023 19:26:40 +0000\r\n"
        "\r\n"
        "Final-Recipient: rfc822; bob@example.org\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        "Remote-MTA: dns; mx.example.org\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.org>: Recipient address\r\n"
        " rejected: User unknown in virtual mailbox table\r\n"
        "Last-Attempt-Date: Tue, 14 Nov 2023 22:13:10 +0000\r\n"
        "\r\n"
        "--=_sg-dsn-000000000000000000000000\r\n"
        "Content-Description: Original message\r\n"
        "Content-Type: message/rfc822\r\n"
        "\r\n"
        "From: Alice <alice@example.com>\r\n"
        "To: bob@example.org\r\n"
        "Subject: secret plans\r\n"
        "Message-ID: <1@example.com>\r\n"
        "\r\n"
        "Hello Bob.\r\n"
        "\r\n"
        "--=_sg-dsn-000000000000000000000000--\r\n";

    (void)state;
    fake_calls = 0;
    dsn_random_hook = fake_random;
    build(&r, &pr);
    dsn_random_hook = NULL;
    assert_string_equal(buf_str(&pr.msg), expect);
    assert_int_equal(pr.n_parts, 3);
    /* nothing of the original in the report's own header */
    assert_null(strstr(buf_str(&pr.header), "secret"));
    assert_null(strstr(buf_str(&pr.header), "Alice"));
    parsed_free(&pr);

    /* without a hook: Date now, a random Message-ID and boundary */
    r.now = 0;
    r.from = NULL;
    build(&r, &pr);
    assert_non_null(strstr(pr.header.data, "From: Mail Delivery System "
                                           "<MAILER-DAEMON@relay.example.com>\r\n"));
    assert_non_null(strstr(pr.header.data, "@relay.example.com>\r\n"));
    assert_memory_equal(pr.boundary.data, "=_sg-dsn-", 9);
    assert_string_not_equal(pr.boundary.data, "=_sg-dsn-000000000000000000000000");
    parsed_free(&pr);
}

/* The subject and the first sentence follow the worst action. */
static void test_subjects(void **state)
{
    static const struct {
        const char *actions[3];
        const char *subject, *sentence;
    } cases[] = {
        {{"failed"}, "Undelivered Mail Returned to Sender", "could not be delivered to"},
        {{"delayed", "failed"},
         "Undelivered Mail Returned to Sender",
         "could not be delivered to"},
        {{"delivered", "delayed", "failed"},
         "Undelivered Mail Returned to Sender",
         "could not be delivered to"},
        {{"delayed"}, "Delayed Mail (still being retried)", "could not be delivered yet"},
        {{"delivered", "delayed"},
         "Delayed Mail (still being retried)",
         "could not be delivered yet"},
        {{"delivered"}, "Successful Mail Delivery Report", "was delivered"},
        {{"relayed", "expanded", "delivered"},
         "Successful Mail Delivery Report",
         "was delivered"},
        {{"FAILED"}, "Undelivered Mail Returned to Sender", "could not be delivered to"},
    };

    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct dsn_rcpt rcpts[3];
        struct dsn_report r;
        struct parsed pr;
        struct buf subject;
        size_t n = 0;

        for (; n < 3 && cases[c].actions[n]; n++) {
            const char *a = cases[c].actions[n];

            rcpts[n] = one_rcpt;
            rcpts[n].action = a;
            rcpts[n].status = strcasecmp(a, "failed") == 0    ? "5.1.1"
                              : strcasecmp(a, "delayed") == 0 ? "4.4.1"
                                                              : "2.0.0";
        }
        r = base(rcpts, n);
        build(&r, &pr);
        buf_init(&subject, 64);
        field(pr.header.data, "\r\nSubject: ", &subject);
        assert_string_equal(buf_str(&subject), cases[c].subject);
        assert_non_null(strstr(body(&pr, 0), cases[c].sentence));
        assert_int_equal(count(body(&pr, 1), strlen(body(&pr, 1)), "Final-Recipient:"),
                         n);
        buf_release(&subject);
        parsed_free(&pr);
    }
}

/* Three recipients with ORCPT and an ENVID: the status part exactly. */
static void test_status_blocks(void **state)
{
    static const struct dsn_rcpt rcpts[] = {
        {.recipient = "bob@example.org",
         .orcpt = "rfc822;Bob@Example.org",
         .action = "failed",
         .status = "5.1.1",
         .remote_mta = "mx.example.org",
         .diagnostic = "550 5.1.1 user unknown",
         .last_attempt = NOW - 5},
        {.recipient = "carol@example.net",
         .orcpt = "rfc822;carol+list@example.net",
         .action = "delayed",
         .status = "4.4.1",
         .diagnostic = "connection timed out"},
        {.recipient = "dave@example.org",
         .orcpt = "x-local;dave",
         .action = "relayed",
         .status = "2.0.0",
         .remote_mta = "mx.example.org"},
    };
    struct dsn_report r = base(rcpts, 3);
    struct parsed pr;
    const char *p;

    (void)state;
    r.envid = "QQ314159";
    build(&r, &pr);
    assert_string_equal(body(&pr, 1),
                        "Original-Envelope-Id: QQ314159\r\n"
                        "Reporting-MTA: dns; relay.example.com\r\n"
                        "Arrival-Date: Tue, 14 Nov 2023 19:26:40 +0000\r\n"
                        "\r\n"
                        "Original-Recipient: rfc822;Bob@Example.org\r\n"
                        "Final-Recipient: rfc822; bob@example.org\r\n"
                        "Action: failed\r\n"
                        "Status: 5.1.1\r\n"
                        "Remote-MTA: dns; mx.example.org\r\n"
                        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
                        "Last-Attempt-Date: Tue, 14 Nov 2023 22:13:15 +0000\r\n"
                        "\r\n"
                        "Original-Recipient: rfc822;carol+list@example.net\r\n"
                        "Final-Recipient: rfc822; carol@example.net\r\n"
                        "Action: delayed\r\n"
                        "Status: 4.4.1\r\n"
                        "Diagnostic-Code: X-Sendguard; connection timed out\r\n"
                        "\r\n"
                        "Original-Recipient: x-local;dave\r\n"
                        "Final-Recipient: rfc822; dave@example.org\r\n"
                        "Action: relayed\r\n"
                        "Status: 2.0.0\r\n"
                        "Remote-MTA: dns; mx.example.org\r\n");
    assert_non_null(strstr(body(&pr, 0), "<carol@example.net>: delayed (4.4.1)\r\n"
                                         "    connection timed out\r\n"));
    assert_non_null(strstr(body(&pr, 0), "<dave@example.org>: relayed (2.0.0)\r\n"));
    parsed_free(&pr);

    /* no ENVID, no arrival date: the per-message block is one field */
    r.envid = NULL;
    r.arrival = 0;
    build(&r, &pr);
    p = "Reporting-MTA: dns; relay.example.com\r\n\r\nOriginal-Recipient: ";
    assert_memory_equal(body(&pr, 1), p, strlen(p));
    parsed_free(&pr);
}

/* What comes back of the original: the whole of it, its header, or nothing. */
static void test_returned(void **state)
{
    static const struct {
        const char *name, *original;
        int headers_only;
        size_t max_return;
        const char *type, *content, *sentence;
    } cases[] = {
        {"whole", orig_msg, 0, 0, "message/rfc822", orig_msg, "It is attached below."},
        {"RET=HDRS", orig_msg, 1, 0, "text/rfc822-headers", orig_header,
         "Its header is attached below.\r\n"},
        {"too large", orig_msg, 0, 20, "text/rfc822-headers", orig_header,
         "the message, of 120 bytes,\r\nis larger than the 20 bytes returned in full."},
        {"just fits", orig_msg, 0, sizeof(orig_msg) - 1, "message/rfc822", orig_msg,
         "It is attached below."},
        {"no body, whole", "From: a@example.com\r\nSubject: x\r\n", 0, 0,
         "message/rfc822", "From: a@example.com\r\nSubject: x\r\n", NULL},
        {"no body, header", "From: a@example.com\r\nSubject: x\r\n", 1, 0,
         "text/rfc822-headers", "From: a@example.com\r\nSubject: x\r\n", NULL},
        {"no final CRLF", "From: a@example.com\r\nSubject: x", 1, 0,
         "text/rfc822-headers", "From: a@example.com\r\nSubject: x\r\n", NULL},
        {"bare LF, whole", "From: a@example.com\nSubject: x\n\nline\n", 0, 0,
         "message/rfc822", "From: a@example.com\r\nSubject: x\r\n\r\nline\r\n", NULL},
        {"bare LF, header", "From: a@example.com\nSubject: x\n\nline\n", 1, 0,
         "text/rfc822-headers", "From: a@example.com\r\nSubject: x\r\n", NULL},
        {"empty header", "\r\nbody\r\n", 1, 0, "text/rfc822-headers", "", NULL},
        {"empty body", "From: a@example.com\r\n\r\n", 1, 0, "text/rfc822-headers",
         "From: a@example.com\r\n", NULL},
        {"nothing", NULL, 0, 0, NULL, NULL, NULL},
        {"nothing, RET=HDRS", NULL, 1, 0, NULL, NULL, NULL},
    };

    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct dsn_report r = base(&one_rcpt, 1);
        struct parsed pr;
        struct buf want;

        r.original = cases[c].original;
        r.original_len = cases[c].original ? strlen(cases[c].original) : 0;
        r.headers_only = cases[c].headers_only;
        r.max_return = cases[c].max_return;
        build(&r, &pr);
        if (cases[c].type == NULL) {
            assert_int_equal(pr.n_parts, 2);
            assert_null(strstr(body(&pr, 0), "attached"));
            parsed_free(&pr);
            continue;
        }
        assert_int_equal(pr.n_parts, 3);
        buf_init(&want, 256);
        buf_printf(&want, "Content-Type: %s\r\n\r\n", cases[c].type);
        if (strstr(pr.part[2].data, buf_str(&want)) == NULL)
            fail_msg("%s: no %s", cases[c].name, buf_str(&want));
        assert_string_equal(body(&pr, 2), cases[c].content);
        if (cases[c].sentence && strstr(body(&pr, 0), cases[c].sentence) == NULL)
            fail_msg("%s: text lacks \"%s\"", cases[c].name, cases[c].sentence);
        assert_null(strstr(pr.msg.data, "Content-Transfer-Encoding"));
        buf_release(&want);
        parsed_free(&pr);
    }
}

/* 8-bit bytes and overlong lines in the original are labelled, not changed. */
static void test_returned_8bit(void **state)
{
    static const char eight[] = "From: a@example.com\r\nSubject: caf\xc3\xa9\r\n\r\n"
                                "na\xc3\xafve\r\n";
    struct dsn_report r = base(&one_rcpt, 1);
    struct parsed pr;
    struct buf longline;

    (void)state;
    r.original = eight;
    r.original_len = sizeof(eight) - 1;
    for (int hdrs = 0; hdrs < 2; hdrs++) {
        r.headers_only = hdrs;
        buf_init(&pr.msg, 1024);
        assert_int_equal(dsn_build(&r, &pr.msg, NULL), 0);
        parse(&pr);
        assert_non_null(
            strstr(pr.header.data, "\r\nContent-Transfer-Encoding: 8bit\r\n"));
        assert_non_null(
            strstr(pr.part[2].data, "\r\nContent-Transfer-Encoding: 8bit\r\n"));
        assert_null(strstr(pr.part[0].data, "Content-Transfer-Encoding"));
        assert_null(strstr(pr.part[1].data, "Content-Transfer-Encoding"));
        assert_non_null(strstr(body(&pr, 2), "Subject: caf\xc3\xa9\r\n"));
        parsed_free(&pr);
    }

    /* a body line over 998 octets is not 8bit but binary; the header alone is 7bit */
    buf_init(&longline, 2048);
    buf_puts(&longline, "From: a@example.com\r\n\r\n");
    for (int i = 0; i < 1200; i++)
        buf_putc(&longline, 'x');
    buf_puts(&longline, "\r\n");
    r.original = longline.data;
    r.original_len = longline.len;
    r.headers_only = 0;
    buf_init(&pr.msg, 4096);
    assert_int_equal(dsn_build(&r, &pr.msg, NULL), 0);
    assert_non_null(strstr(pr.msg.data, "\r\nContent-Transfer-Encoding: binary\r\n\r\n"
                                        "This is a MIME"));
    assert_non_null(strstr(pr.msg.data, "message/rfc822\r\n"
                                        "Content-Transfer-Encoding: binary\r\n\r\n"));
    buf_release(&pr.msg);
    r.headers_only = 1;
    build(&r, &pr);
    assert_null(strstr(pr.msg.data, "Content-Transfer-Encoding"));
    parsed_free(&pr);
    buf_release(&longline);
}

/* A multi-line reply: one folded field, one indented paragraph. */
static void test_multiline(void **state)
{
    struct dsn_rcpt rc = one_rcpt;
    struct dsn_report r = base(&rc, 1);
    struct parsed pr;

    (void)state;
    rc.diagnostic = "550-5.7.1 Our system has detected that this message is\n"
                    "550-5.7.1 likely unsolicited mail.\r\n"
                    "\n"
                    "550 5.7.1 Please visit https://support.example.org/mail/spam   \n";
    rc.status = "5.7.1";
    build(&r, &pr);
    assert_non_null(strstr(
        body(&pr, 1), "\r\nDiagnostic-Code: smtp; 550-5.7.1 Our system has detected "
                      "that this message is\r\n"
                      " 550-5.7.1 likely unsolicited mail.\r\n"
                      " 550 5.7.1 Please visit https://support.example.org/mail/spam\r\n"
                      "Last-Attempt-Date: "));
    assert_non_null(
        strstr(body(&pr, 0),
               "<bob@example.org>: failed (5.7.1)\r\n"
               "    host mx.example.org said: 550-5.7.1 Our system has "
               "detected that this\r\n"
               "    message is\r\n"
               "    550-5.7.1 likely unsolicited mail.\r\n"
               "    550 5.7.1 Please visit https://support.example.org/mail/spam\r\n"));
    parsed_free(&pr);

    /* a reply of nothing but line ends gives no Diagnostic-Code at all */
    rc.diagnostic = "\r\n \n";
    build(&r, &pr);
    assert_null(strstr(pr.msg.data, "Diagnostic-Code"));
    assert_null(strstr(pr.msg.data, "said:"));
    parsed_free(&pr);
}

/* 8-bit and control bytes from outside become "?"; the report is then 7-bit. */
static void test_sanitised(void **state)
{
    struct dsn_rcpt rc = one_rcpt;
    struct dsn_report r = base(&rc, 1);
    struct parsed pr;
    struct buf v;

    (void)state;
    rc.diagnostic = "550 5.7.1 caf\xc3\xa9\x01\x7f\tend\r\x1b[31m  red\x00ignored";
    rc.recipient = "b\xc3\xb8"
                   "b@example.org";
    rc.orcpt = "utf-8;b\xc3\xb8"
               "b@example.org";
    r.envid = "id\xff";
    build(&r, &pr);
    buf_init(&v, 128);
    field(body(&pr, 1), "\r\nDiagnostic-Code: ", &v);
    assert_string_equal(buf_str(&v), "smtp; 550 5.7.1 caf???? end??[31m red");
    field(body(&pr, 1), "\r\nFinal-Recipient: ", &v);
    assert_string_equal(buf_str(&v), "rfc822; b??b@example.org");
    field(body(&pr, 1), "\r\nOriginal-Recipient: ", &v);
    assert_string_equal(buf_str(&v), "utf-8;b??b@example.org");
    field(body(&pr, 1), "Original-Envelope-Id: ", &v);
    assert_string_equal(buf_str(&v), "id?");
    assert_non_null(strstr(body(&pr, 0), "<b??b@example.org>: failed (5.1.1)\r\n"
                                         "    host mx.example.org said: 550 5.7.1 "
                                         "caf???? end??[31m red\r\n"));
    for (size_t i = 0; i < pr.msg.len; i++) {
        unsigned char c = (unsigned char)pr.msg.data[i];

        if (c > 0x7e || (c < 0x20 && c != '\r' && c != '\n' && c != '\t'))
            fail_msg("byte 0x%02x at %zu", c, i);
    }
    buf_release(&v);
    parsed_free(&pr);
}

/* A 3,000-byte reply: no line over 998, and unfolding gives it back. */
static void test_long_diagnostic(void **state)
{
    static const char *const kinds[] = {"words", "one word", "two words"};

    (void)state;
    for (size_t k = 0; k < 3; k++) {
        struct dsn_rcpt rc = one_rcpt;
        struct dsn_report r = base(&rc, 1);
        struct parsed pr;
        struct buf diag, v, want;
        const char *p;

        buf_init(&diag, 3100);
        buf_puts(&diag, "550 ");
        while (diag.len < 3000) {
            if (k == 0)
                buf_puts(&diag, diag.len % 11 ? "unknownx " : "user ");
            else if (k == 2 && diag.len == 1500)
                buf_putc(&diag, ' ');
            else
                buf_putc(&diag, 'a' + (int)(diag.len % 26));
        }
        buf_truncate(&diag, 3000);
        while (diag.data[diag.len - 1] == ' ')
            buf_truncate(&diag, diag.len - 1);
        rc.diagnostic = diag.data;
        build(&r, &pr); /* every line, text part included, checked by parse */
        buf_init(&v, 3200);
        buf_init(&want, 3200);
        field(body(&pr, 1), "\r\nDiagnostic-Code: ", &v);
        buf_setf(&want, "smtp; %s", diag.data);
        if (k == 0) {
            assert_string_equal(buf_str(&v), buf_str(&want));
            /* with spaces to break at, lines keep to 78 */
            p = strstr(body(&pr, 1), "\r\nDiagnostic-Code: ") + 2;
            do {
                const char *e = strstr(p, "\r\n");

                if (e - p > 78)
                    fail_msg("%s: line of %d octets", kinds[k], (int)(e - p));
                p = e + 2;
            } while (*p == ' ');
        } else {
            /* a cut inside a word adds one space where it was made */
            struct buf a, b;

            buf_init(&a, 3200);
            buf_init(&b, 3200);
            for (size_t i = 0; i < v.len; i++)
                if (v.data[i] != ' ')
                    buf_putc(&a, v.data[i]);
            for (size_t i = 0; i < want.len; i++)
                if (want.data[i] != ' ')
                    buf_putc(&b, want.data[i]);
            assert_string_equal(buf_str(&a), buf_str(&b));
            assert_true(v.len <= want.len + 4);
            buf_release(&a);
            buf_release(&b);
        }
        buf_release(&diag);
        buf_release(&v);
        buf_release(&want);
        parsed_free(&pr);
    }
}

/* The boundary occurs in none of the parts, whatever they contain. */
static void test_boundary(void **state)
{
    struct dsn_rcpt rc = one_rcpt;
    struct dsn_report r = base(&rc, 1);
    struct parsed pr;
    struct buf orig, out, why;

    (void)state;
    buf_init(&orig, 1024);
    buf_init(&out, 1024);
    buf_init(&why, 64);
    buf_puts(&orig, "From: a@example.com\r\nContent-Type: multipart/mixed;\r\n"
                    "\tboundary=\"=_sg-dsn-000000000000000000000000\"\r\n\r\n"
                    "--=_sg-dsn-000000000000000000000000\r\n\r\nx\r\n"
                    "--=_sg-dsn-010101010101010101010101\r\n\r\ny\r\n"
                    "--=_sg-dsn-\r\n--=_sg-dsn-000000000000000000000000--\r\n");
    r.original = orig.data;
    r.original_len = orig.len;

    /* by chance: random boundaries */
    for (int i = 0; i < 20; i++) {
        build(&r, &pr);
        assert_null(memmem(orig.data, orig.len, pr.boundary.data, pr.boundary.len));
        assert_int_equal(pr.n_parts, 3);
        parsed_free(&pr);
    }

    /* by design: the first two candidates are in the original, the third is used */
    fake_calls = 0;
    dsn_random_hook = fake_random;
    build(&r, &pr);
    assert_string_equal(buf_str(&pr.boundary), "=_sg-dsn-020202020202020202020202");
    assert_string_equal(body(&pr, 2), orig.data);
    parsed_free(&pr);

    /* in a remote reply, too */
    fake_calls = 0;
    rc.diagnostic = "550 see =_sg-dsn-000000000000000000000000";
    r.original = orig_msg;
    r.original_len = sizeof(orig_msg) - 1;
    build(&r, &pr);
    assert_string_equal(buf_str(&pr.boundary), "=_sg-dsn-010101010101010101010101");
    parsed_free(&pr);

    /* a random source that never changes cannot produce one: refused */
    dsn_random_hook = stuck_random;
    rc.diagnostic = "550 see =_sg-dsn-abababababababababababab";
    buf_set(&out, "keep");
    assert_int_equal(dsn_build(&r, &out, &why), -1);
    assert_non_null(strstr(buf_str(&why), "boundary"));
    assert_string_equal(buf_str(&out), "keep");
    dsn_random_hook = NULL;

    buf_release(&orig);
    buf_release(&out);
    buf_release(&why);
}

/* Enhanced status codes from SMTP replies. */
static void test_status_from_reply(void **state)
{
    static const struct {
        const char *reply, *status;
    } cases[] = {
        {"550 5.1.1 x", "5.1.1"},
        {"550 user unknown", "5.0.0"},
        {"451-4.7.1 first\n451 4.7.1 second", "4.7.1"},
        {"250 2.0.0 Ok", "2.0.0"},
        {"garbage", ""},
        {"550 5.1.1", "5.1.1"},
        {"550-5.7.26 unauthenticated", "5.7.26"},
        {"452 4.2.2\r\n", "4.2.2"},
        {"550 4.7.1 class differs", "5.0.0"},
        {"550 5.1.1234 too long", "5.0.0"},
        {"550 5.1 short", "5.0.0"},
        {"550 5.1.1x", "5.0.0"},
        {"421", "4.0.0"},
        {"421 ", "4.0.0"},
        {"354 go ahead", ""},
        {"5500 x", ""},
        {"55 x", ""},
        {"", ""},
        {NULL, ""},
    };
    struct buf out;

    (void)state;
    buf_init(&out, 16);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        buf_set(&out, "junk");
        dsn_status_from_reply(cases[c].reply, &out);
        if (strcmp(buf_str(&out), cases[c].status) != 0)
            fail_msg("\"%s\": \"%s\", not \"%s\"",
                     cases[c].reply ? cases[c].reply : "NULL", buf_str(&out),
                     cases[c].status);
    }
    buf_release(&out);
}

/* What cannot make a proper report is refused with a reason, out untouched. */
static void test_errors(void **state)
{
    static const char unset[] = "";
    static const struct {
        const char *why;
        const char *mta, *to, *from, *envid; /* NULL: as in base(); unset: NULL */
        const char *recipient, *orcpt, *action, *status, *remote;
        int n_rcpts; /* -1: rcpts NULL */
    } cases[] = {
        {"no recipients", .n_rcpts = 0},
        {"no recipients", .n_rcpts = -1},
        {"no sender", .to = unset, .n_rcpts = 1},
        {"no sender", .to = "", .n_rcpts = 1},
        {"no reporting MTA", .mta = unset, .n_rcpts = 1},
        {"reporting MTA is not a host name", .mta = "relay example", .n_rcpts = 1},
        {"reporting MTA is not a host name", .mta = "<relay>", .n_rcpts = 1},
        {"sender contains a control", .to = "a@b\r\nBcc: c@d", .n_rcpts = 1},
        {"report sender contains a control", .from = "x@y\n", .n_rcpts = 1},
        {"envelope id contains a control", .envid = "a\rb", .n_rcpts = 1},
        {"no recipient 1", .recipient = unset, .n_rcpts = 1},
        {"recipient 1 contains a control", .recipient = "b@x\r\nX: y", .n_rcpts = 1},
        {"original recipient of recipient 1", .orcpt = "rfc822;b\n", .n_rcpts = 1},
        {"remote MTA of recipient 1", .remote = "mx\t1", .n_rcpts = 1},
        {"unknown action \"bounced\"", .action = "bounced", .n_rcpts = 1},
        {"unknown action \"(none)\"", .action = unset, .n_rcpts = 1},
        {"malformed status \"5.1\"", .status = "5.1", .n_rcpts = 1},
        {"malformed status \"6.1.1\"", .status = "6.1.1", .n_rcpts = 1},
        {"malformed status \"5.1.1 \"", .status = "5.1.1 ", .n_rcpts = 1},
        {"malformed status \"(none)\"", .status = unset, .n_rcpts = 1},
    };
    struct buf out, why, longname;

    (void)state;
    buf_init(&out, 64);
    buf_init(&why, 64);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct dsn_rcpt rc = one_rcpt;
        struct dsn_report r = base(&rc, 1);

#define SET(dst, src) (dst) = (src) == NULL ? (dst) : (src) == unset ? NULL : (src)
        SET(r.reporting_mta, cases[c].mta);
        SET(r.to, cases[c].to);
        SET(r.from, cases[c].from);
        SET(r.envid, cases[c].envid);
        SET(rc.recipient, cases[c].recipient);
        SET(rc.orcpt, cases[c].orcpt);
        SET(rc.action, cases[c].action);
        SET(rc.status, cases[c].status);
        SET(rc.remote_mta, cases[c].remote);
#undef SET
        r.n_rcpts = cases[c].n_rcpts < 0 ? 1 : (size_t)cases[c].n_rcpts;
        if (cases[c].n_rcpts < 0)
            r.rcpts = NULL;
        buf_set(&out, "keep");
        buf_reset(&why);
        assert_int_equal(dsn_build(&r, &out, &why), -1);
        if (strstr(buf_str(&why), cases[c].why) == NULL)
            fail_msg("case %zu: \"%s\", not \"%s\"", c, buf_str(&why), cases[c].why);
        assert_string_equal(buf_str(&out), "keep");
        assert_int_equal(dsn_build(&r, &out, NULL), -1); /* why is optional */
    }

    /* a name too long for one line */
    buf_init(&longname, 600);
    while (longname.len < DSN_VALUE_MAX + 1)
        buf_putc(&longname, 'a');
    buf_puts(&longname, "@example.org");
    {
        struct dsn_rcpt rc = one_rcpt;
        struct dsn_report r = base(&rc, 1);

        rc.recipient = longname.data;
        assert_int_equal(dsn_build(&r, &out, &why), -1);
        assert_non_null(strstr(buf_str(&why), "longer than"));
    }
    buf_release(&longname);
    buf_release(&out);
    buf_release(&why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),        cmocka_unit_test(test_subjects),
        cmocka_unit_test(test_status_blocks), cmocka_unit_test(test_returned),
        cmocka_unit_test(test_returned_8bit), cmocka_unit_test(test_multiline),
        cmocka_unit_test(test_sanitised),     cmocka_unit_test(test_long_diagnostic),
        cmocka_unit_test(test_boundary),      cmocka_unit_test(test_status_from_reply),
        cmocka_unit_test(test_errors),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
