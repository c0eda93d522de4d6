/*
 * test_bounce - lib/bounce: the class of a failure from its status and
 * text, case by case; enhanced status codes found in text and not in
 * version numbers or addresses; small hand-written reports of every kind
 * read field by field; and messages built to hurt (empty, endless nesting,
 * a missing boundary, a megabyte line, thousands of recipients, a huge
 * diagnostic, NUL and 0xFF bytes), then every fixture of
 * tests/fixtures/bounces mutated 200 ways, under ASan and UBSan.
 */
#include "config.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bounce.h"
#include "header.h"
#include "utf8.h"

/* parse - text with LF line ends made canonical (header_canonical), then read */
static void parse(const char *text, size_t len, struct bounce_report *r)
{
    struct buf c;

    buf_init(&c, len + 64);
    header_canonical(text, len, &c);
    bounce_parse(c.data, c.len, r);
    buf_release(&c);
}

static void parse_str(const char *text, struct bounce_report *r)
{
    parse(text, strlen(text), r);
}

/* Classification. */

struct ccase {
    const char *status, *text;
    enum bounce_class cls;
};

static const struct ccase ccases[] = {
    /* 5.1.x: the address */
    {"5.1.1", NULL, BOUNCE_HARD},
    {"5.1.1", "", BOUNCE_HARD},
    {"5.1.1", "mailbox full", BOUNCE_HARD},
    {"5.1.10", NULL, BOUNCE_HARD},
    {"5.1.10", "Recipient address rejected: access denied", BOUNCE_HARD},
    {"5.1.2", "host not found", BOUNCE_HARD},
    {"5.1.7", NULL, BOUNCE_BLOCK},
    {"5.1.7", "user unknown", BOUNCE_BLOCK},
    {"5.1.8", "Sender address rejected: Domain not found", BOUNCE_BLOCK},
    {"5.1.0", NULL, BOUNCE_SOFT},
    {"5.1.0", "user unknown", BOUNCE_HARD},
    /* 5.4.x */
    {"5.4.4", NULL, BOUNCE_HARD},
    {"5.4.4", "try again later", BOUNCE_HARD},
    {"5.4.1", NULL, BOUNCE_SOFT},
    {"5.4.1", "Recipient address rejected: Access denied", BOUNCE_SOFT},
    {"5.4.1", "550 5.4.1 Recipient address rejected: user unknown", BOUNCE_HARD},
    {"5.4.6", "routing loop detected", BOUNCE_SOFT},
    /* 5.2.x */
    {"5.2.2", NULL, BOUNCE_SOFT},
    {"5.2.2", "mailbox full", BOUNCE_SOFT},
    {"5.2.2", "user unknown", BOUNCE_SOFT},
    {"5.2.1", NULL, BOUNCE_SOFT},
    {"5.2.1", "mailbox disabled", BOUNCE_SOFT},
    {"5.2.1", "The email account that you tried to reach does not exist", BOUNCE_HARD},
    {"5.2.3", "message too large", BOUNCE_SOFT},
    /* 5.3.x */
    {"5.3.0", NULL, BOUNCE_SOFT},
    {"5.3.0", "user unknown", BOUNCE_HARD},
    {"5.3.4", "Message size exceeds fixed limit", BOUNCE_SOFT},
    {"5.3.2", "user unknown", BOUNCE_SOFT},
    /* 5.5.x: the text decides */
    {"5.5.0", "Requested action not taken: mailbox unavailable", BOUNCE_HARD},
    {"5.5.0", NULL, BOUNCE_SOFT},
    {"5.5.0", "", BOUNCE_SOFT},
    {"5.5.1", "blocked by policy", BOUNCE_BLOCK},
    /* 5.6.x, 5.7.x: the sender is refused, whatever the words */
    {"5.6.0", NULL, BOUNCE_BLOCK},
    {"5.6.1", "user unknown", BOUNCE_BLOCK},
    {"5.7.1", NULL, BOUNCE_BLOCK},
    {"5.7.1", "Recipient address rejected: user unknown, mailbox full", BOUNCE_BLOCK},
    {"5.7.1", "Service unavailable, try again later", BOUNCE_BLOCK},
    {"5.7.26", "Unauthenticated email is not accepted (DMARC)", BOUNCE_BLOCK},
    {"5.7.0", "", BOUNCE_BLOCK},
    /* 4.x.x: always soft */
    {"4.0.0", NULL, BOUNCE_SOFT},
    {"4.2.2", "mailbox full", BOUNCE_SOFT},
    {"4.1.1", "user unknown", BOUNCE_SOFT},
    {"4.7.0", "Greylisted, please try again in 300 seconds", BOUNCE_SOFT},
    {"4.7.1", "Client host blocked using zen.spamhaus.org", BOUNCE_SOFT},
    {"4.4.1", "Connection timed out", BOUNCE_SOFT},
    /* 5.0.0: the text decides */
    {"5.0.0", "550 User unknown", BOUNCE_HARD},
    {"5.0.0", "No such user here", BOUNCE_HARD},
    {"5.0.0", "The mailbox does not exist", BOUNCE_HARD},
    {"5.0.0", "no such domain", BOUNCE_HARD},
    {"5.0.0", "user is over quota", BOUNCE_SOFT},
    {"5.0.0", "Mailbox full", BOUNCE_SOFT},
    {"5.0.0", "Client host [198.51.100.25] blocked using zen.spamhaus.org", BOUNCE_BLOCK},
    {"5.0.0", "Your message was blocked", BOUNCE_BLOCK},
    {"5.0.0", "Message rejected due to the sender's DMARC policy", BOUNCE_BLOCK},
    {"5.0.0", "SPF check failed", BOUNCE_BLOCK},
    {"5.0.0", "Rejected for policy reasons", BOUNCE_BLOCK},
    {"5.0.0", "Sorry, I could not do that", BOUNCE_SOFT},
    {"5.0.0", NULL, BOUNCE_SOFT},
    /* no status: the text alone */
    {NULL, "user unknown", BOUNCE_HARD},
    {NULL, "mailbox is full", BOUNCE_SOFT},
    {NULL, "blocked", BOUNCE_BLOCK},
    {NULL, "something went wrong", BOUNCE_SOFT},
    {NULL, NULL, BOUNCE_SOFT},
    {"", "No Such User", BOUNCE_HARD},
    {"", "QUOTA exceeded", BOUNCE_SOFT},
    {"", "listed on SPAMHAUS", BOUNCE_BLOCK},
    {"", "", BOUNCE_SOFT},
    {"", NULL, BOUNCE_SOFT},
    /* garbage statuses: the text decides */
    {"5.", NULL, BOUNCE_SOFT},
    {"5.", "user unknown", BOUNCE_HARD},
    {"6.1.1", NULL, BOUNCE_SOFT},
    {"6.1.1", "spam", BOUNCE_BLOCK},
    {"5.1", NULL, BOUNCE_SOFT},
    {"5.1", "user unknown", BOUNCE_HARD},
    {"x", NULL, BOUNCE_SOFT},
    {"x", "mailbox full", BOUNCE_SOFT},
    {"x", "does not exist", BOUNCE_HARD},
    {"5", "blocked", BOUNCE_BLOCK},
    {"2.0.0", NULL, BOUNCE_SOFT},
    {"5.99999999999999999999.1", NULL, BOUNCE_SOFT},
    {"5.1.99999999999999999999", NULL, BOUNCE_SOFT},
    {"4.", "user unknown", BOUNCE_SOFT},
};

static void test_classify_table(void **state)
{
    int bad = 0;

    (void)state;
    assert_true(sizeof(ccases) / sizeof(ccases[0]) >= 40);
    for (size_t i = 0; i < sizeof(ccases) / sizeof(ccases[0]); i++) {
        enum bounce_class got = bounce_classify(ccases[i].status, ccases[i].text);

        if (got != ccases[i].cls) {
            print_error("case %zu: (%s, %s): %s, expected %s\n", i,
                        ccases[i].status ? ccases[i].status : "NULL",
                        ccases[i].text ? ccases[i].text : "NULL", bounce_class_name(got),
                        bounce_class_name(ccases[i].cls));
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(bounce_class_name(BOUNCE_HARD), "hard");
    assert_string_equal(bounce_class_name(BOUNCE_SOFT), "soft");
    assert_string_equal(bounce_class_name(BOUNCE_BLOCK), "block");
    assert_string_equal(bounce_kind_name(BOUNCE_KIND_NONE), "none");
    assert_string_equal(bounce_kind_name(BOUNCE_KIND_BOUNCE), "bounce");
    assert_string_equal(bounce_kind_name(BOUNCE_KIND_DELAY), "delay");
    assert_string_equal(bounce_kind_name(BOUNCE_KIND_AUTOREPLY), "autoreply");
    assert_string_equal(bounce_kind_name(BOUNCE_KIND_ARF), "arf");
    assert_string_equal(bounce_kind_name((enum bounce_kind)99), "none");
}

/* Finding status codes. */

struct scase {
    const char *text;
    int len; /* -1: strlen */
    int found;
    const char *out;
};

static const struct scase scases[] = {
    {"550 5.1.1 <a@b>", -1, 1, "5.1.1"},
    {"Sorry, no mailbox here by that name. (#5.1.1)", -1, 1, "5.1.1"},
    {"#5.1.1", -1, 1, "5.1.1"},
    {"550-5.7.26 This mail has been blocked", -1, 1, "5.7.26"},
    {"5.1.1", -1, 1, "5.1.1"},
    {"421 4.7.0 try again", -1, 1, "4.7.0"},
    {"2.0.0 Ok", -1, 1, "2.0.0"},
    {"first 4.4.7 then 5.1.1", -1, 1, "4.4.7"},
    {"status=5.123.456.", -1, 1, "5.123.456"},
    {"(5.1.1)", -1, 1, "5.1.1"},
    {"version 15.1.10", -1, 0, ""},
    {"10.5.1.1", -1, 0, ""},
    {"2.0.0x", -1, 0, ""},
    {"192.5.1.1", -1, 0, ""},
    {"connect to [192.0.2.5]:25", -1, 0, ""},
    {"5.1.1.2", -1, 0, ""},
    {"5.1.1234", -1, 0, ""},
    {"3.1.1", -1, 0, ""},
    {"5..1", -1, 0, ""},
    {"5.1.", -1, 0, ""},
    {"a5.1.1", -1, 0, ""},
    {"550 5.1.1", 7, 0, ""}, /* "550 5.1": the length is the end */
    {"550 5.1.1 more", 9, 1, "5.1.1"},
    {"", 0, 0, ""},
    {"no code here at all", -1, 0, ""},
};

static void test_status_find(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(scases) / sizeof(scases[0]); i++) {
        char out[16];
        size_t len = scases[i].len < 0 ? strlen(scases[i].text) : (size_t)scases[i].len;
        /* a copy of exactly len bytes, so reading past it is ASan's to see */
        char *copy = malloc(len ? len : 1);
        int rc;

        memcpy(copy, scases[i].text, len);
        memset(out, 'Z', sizeof(out));
        rc = bounce_status_find(copy, len, out);
        if (rc != scases[i].found || strcmp(out, scases[i].out) != 0)
            fail_msg("case %zu \"%s\": %d \"%s\", expected %d \"%s\"", i, scases[i].text,
                     rc, out, scases[i].found, scases[i].out);
        free(copy);
    }
}

/* Reading reports. */

static const char dsn_two[] =
    "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\n"
    "To: bounces@shop.example\n"
    "Subject: Undelivered Mail Returned to Sender\n"
    "Message-ID: <r1@mx.example.net>\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/report; report-type=delivery-status;\n"
    "\tboundary=\"BB\"\n"
    "\n"
    "--BB\n"
    "Content-Type: text/plain\n"
    "\n"
    "This is the mail system at host mx.example.net.\n"
    "\n"
    "--BB\n"
    "Content-Type: message/delivery-status\n"
    "\n"
    "Reporting-MTA: dns; mx.example.net\n"
    "Arrival-Date: Wed, 09 Dec 2026 07:30:16 +0000\n"
    "\n"
    "Final-Recipient: rfc822; ann@example.net\n"
    "Original-Recipient: rfc822;Ann.Other@example.net\n"
    "Action: failed\n"
    "Status: 5.1.1\n"
    "Remote-MTA: dns; mx2.example.net\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <ann@example.net>: Recipient address rejected:\n"
    " User unknown in virtual mailbox table\n"
    "\n"
    "Final-Recipient: rfc822; <bob@example.net>\n"
    "Action: Delayed\n"
    "Status: 4.4.1\n"
    "Diagnostic-Code: X-Postfix; connect to mx3.example.net: Connection timed out\n"
    "\n"
    "--BB\n"
    "Content-Type: text/rfc822-headers\n"
    "\n"
    "From: news@shop.example\n"
    "To: ann@example.net, bob@example.net\n"
    "Subject: hi\n"
    "List-Unsubscribe: <https://t.shop.example/u/abc>\n"
    "\n"
    "--BB--\n";

static void test_parse_rfc3464_two(void **state)
{
    struct bounce_report r;

    (void)state;
    bounce_report_init(&r);
    parse_str(dsn_two, &r);
    assert_int_equal(r.kind, BOUNCE_KIND_BOUNCE);
    assert_string_equal(r.format, "rfc3464");
    assert_int_equal(r.n, 2);
    assert_int_equal(r.nesting, 0);
    assert_int_equal(r.note.len, 0);
    assert_null(r.source);
    assert_string_equal(r.rcpt[0].address, "ann@example.net");
    assert_string_equal(r.rcpt[0].action, "failed");
    assert_string_equal(r.rcpt[0].status, "5.1.1");
    assert_int_equal(r.rcpt[0].cls, BOUNCE_HARD);
    assert_string_equal(r.rcpt[0].reason,
                        "550 5.1.1 <ann@example.net>: Recipient address "
                        "rejected: User unknown in virtual mailbox table");
    assert_string_equal(r.rcpt[0].remote_mta, "mx2.example.net");
    assert_string_equal(r.rcpt[1].address, "bob@example.net");
    assert_string_equal(r.rcpt[1].action, "delayed");
    assert_string_equal(r.rcpt[1].status, "4.4.1");
    assert_int_equal(r.rcpt[1].cls, BOUNCE_SOFT);
    assert_string_equal(r.rcpt[1].reason,
                        "connect to mx3.example.net: Connection timed out");
    assert_null(r.rcpt[1].remote_mta);
    /* the returned original's header block */
    assert_non_null(r.original);
    assert_int_equal(strlen(r.original), r.original_len);
    assert_non_null(
        strstr(r.original, "List-Unsubscribe: <https://t.shop.example/u/abc>\r\n"));
    assert_non_null(strstr(r.original, "From: news@shop.example\r\n"));
    /* read again into the same report: reset first, nothing doubled */
    parse_str(dsn_two, &r);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.rcpt[1].address, "bob@example.net");
    bounce_report_free(&r);
    assert_int_equal(r.n, 0);
    assert_null(r.rcpt);
}

/* a one-part delivery-status report, fields given */
static void dsn_of(const char *fields, struct buf *out)
{
    buf_reset(out);
    buf_printf(
        out,
        "From: MAILER-DAEMON@mx.example.net\n"
        "To: bounces@shop.example\n"
        "Subject: Delivery Status Notification\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"X1\"\n"
        "\n"
        "--X1\n"
        "Content-Type: message/delivery-status\n"
        "\n"
        "Reporting-MTA: dns; mx.example.net\n"
        "\n"
        "%s"
        "\n"
        "--X1--\n",
        fields);
}

static void test_parse_generic_status(void **state)
{
    struct bounce_report r;
    struct buf m;

    (void)state;
    bounce_report_init(&r);
    buf_init(&m, 1024);
    /* 5.0.0 beside 5.1.1 in the diagnostic: the specific one */
    dsn_of("Final-Recipient: rfc822; cat@example.org\n"
           "Action: failed\n"
           "Status: 5.0.0\n"
           "Diagnostic-Code: smtp; 550 5.1.1 The mailbox is not here\n",
           &m);
    parse(m.data, m.len, &r);
    assert_int_equal(r.kind, BOUNCE_KIND_BOUNCE);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.rcpt[0].address, "cat@example.org");
    assert_string_equal(r.rcpt[0].status, "5.1.1");
    assert_int_equal(r.rcpt[0].cls, BOUNCE_HARD);
    assert_string_equal(r.rcpt[0].reason, "550 5.1.1 The mailbox is not here");
    /* a code of another class does not replace it */
    dsn_of("Final-Recipient: rfc822; cat@example.org\n"
           "Action: failed\n"
           "Status: 5.0.0\n"
           "Diagnostic-Code: smtp; 452 4.2.2 over quota\n",
           &m);
    parse(m.data, m.len, &r);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.rcpt[0].status, "5.0.0");
    assert_int_equal(r.rcpt[0].cls, BOUNCE_SOFT);
    /* no Status at all: the diagnostic's code */
    dsn_of("Final-Recipient: rfc822; cat@example.org\n"
           "Action: failed\n"
           "Diagnostic-Code: smtp; 550 5.7.1 rejected\n",
           &m);
    parse(m.data, m.len, &r);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.rcpt[0].status, "5.7.1");
    assert_int_equal(r.rcpt[0].cls, BOUNCE_BLOCK);
    /* only an SMTP reply code: C.0.0 */
    dsn_of("Final-Recipient: rfc822; cat@example.org\n"
           "Action: failed\n"
           "Diagnostic-Code: smtp; 550 no such user\n",
           &m);
    parse(m.data, m.len, &r);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.rcpt[0].status, "5.0.0");
    assert_int_equal(r.rcpt[0].cls, BOUNCE_HARD);
    /* delayed with a permanent-looking code: class 4 */
    dsn_of("Final-Recipient: rfc822; cat@example.org\n"
           "Action: delayed\n"
           "Status: 5.2.2\n",
           &m);
    parse(m.data, m.len, &r);
    assert_int_equal(r.kind, BOUNCE_KIND_DELAY);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.rcpt[0].status, "4.2.2");
    assert_int_equal(r.rcpt[0].cls, BOUNCE_SOFT);
    buf_release(&m);
    bounce_report_free(&r);
}

static void test_parse_action_missing(void **state)
{
    struct bounce_report r;
    struct buf m;

    (void)state;
    bounce_report_init(&r);
    buf_init(&m, 1024);
    dsn_of("Final-Recipient: rfc822; one@example.org\n"
           "Status: 5.1.1\n"
           "\n"
           "Final-Recipient: rfc822; two@example.org\n"
           "Status: 4.2.0\n"
           "\n"
           "Final-Recipient: rfc822; three@example.org\n"
           "Status: 2.0.0\n",
           &m);
    parse(m.data, m.len, &r);
    assert_int_equal(r.kind, BOUNCE_KIND_BOUNCE);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.rcpt[0].address, "one@example.org");
    assert_string_equal(r.rcpt[0].action, "failed");
    assert_string_equal(r.rcpt[0].status, "5.1.1");
    assert_string_equal(r.rcpt[1].address, "two@example.org");
    assert_string_equal(r.rcpt[1].action, "delayed");
    assert_string_equal(r.rcpt[1].status, "4.2.0");
    /* only delayed ones: a delay */
    dsn_of("Original-Recipient: rfc822; <four@example.org>\n"
           "Status: 4.7.0\n",
           &m);
    parse(m.data, m.len, &r);
    assert_int_equal(r.kind, BOUNCE_KIND_DELAY);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.rcpt[0].address, "four@example.org");
    assert_string_equal(r.rcpt[0].action, "delayed");
    buf_release(&m);
    bounce_report_free(&r);
}

static void test_parse_relayed_only(void **state)
{
    struct bounce_report r;
    struct buf m;

    (void)state;
    bounce_report_init(&r);
    buf_init(&m, 1024);
    dsn_of("Final-Recipient: rfc822; one@example.org\n"
           "Action: relayed\n"
           "Status: 2.0.0\n"
           "\n"
           "Final-Recipient: rfc822; two@example.org\n"
           "Action: delivered\n"
           "Status: 2.0.0\n"
           "\n"
           "Final-Recipient: rfc822; three@example.org\n"
           "Action: expanded\n"
           "Status: 2.0.0\n",
           &m);
    parse(m.data, m.len, &r);
    assert_int_equal(r.kind, BOUNCE_KIND_NONE);
    assert_int_equal(r.n, 0);
    assert_null(r.rcpt);
    assert_string_equal(r.format, "rfc3464");
    assert_true(r.note.len > 0);
    buf_release(&m);
    bounce_report_free(&r);
}

static const char arf_msg[] =
    "From: ISP Feedback <FBL@Mail.ISP.example>\n"
    "To: fbl@shop.example\n"
    "Subject: complaint about message from 198.51.100.25\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/report; report-type=feedback-report; boundary=\"AA\"\n"
    "\n"
    "--AA\n"
    "Content-Type: text/plain\n"
    "\n"
    "This is an email abuse report.\n"
    "\n"
    "--AA\n"
    "Content-Type: message/feedback-report\n"
    "\n"
    "Feedback-Type: %s\n"
    "User-Agent: SomeFBL/1.0\n"
    "Version: 1\n"
    "Original-Rcpt-To: <carol@example.com>\n"
    "%s"
    "\n"
    "--AA\n"
    "Content-Type: message/rfc822\n"
    "\n"
    "From: news@shop.example\n"
    "To: carol@example.com\n"
    "Subject: offers\n"
    "List-Unsubscribe: <https://t.shop.example/u/xyz>\n"
    "\n"
    "Buy now.\n"
    "--AA--\n";

static void test_parse_arf(void **state)
{
    struct bounce_report r;
    struct buf m;

    (void)state;
    bounce_report_init(&r);
    buf_init(&m, 2048);
    buf_printf(&m, arf_msg, "Abuse", "Reporting-MTA: dns; FBL.ISP-Host.Example\n");
    parse(m.data, m.len, &r);
    assert_int_equal(r.kind, BOUNCE_KIND_ARF);
    assert_string_equal(r.format, "arf");
    assert_int_equal(r.n, 1);
    assert_string_equal(r.rcpt[0].address, "carol@example.com");
    assert_string_equal(r.rcpt[0].action, "abuse");
    assert_string_equal(r.rcpt[0].status, "");
    assert_string_equal(r.rcpt[0].reason, "");
    assert_string_equal(r.source, "fbl.isp-host.example");
    assert_non_null(r.original);
    assert_non_null(
        strstr(r.original, "List-Unsubscribe: <https://t.shop.example/u/xyz>"));
    /* no Reporting-MTA: the From domain, lower-cased; the type lower-cased */
    buf_reset(&m);
    buf_printf(&m, arf_msg, "Not-Spam", "");
    parse(m.data, m.len, &r);
    assert_int_equal(r.kind, BOUNCE_KIND_ARF);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.rcpt[0].action, "not-spam");
    assert_string_equal(r.source, "mail.isp.example");
    buf_release(&m);
    bounce_report_free(&r);
}

static void test_parse_autoreply(void **state)
{
    struct bounce_report r;

    (void)state;
    bounce_report_init(&r);
    parse_str("From: Dana <dana@example.com>\n"
              "To: news@shop.example\n"
              "Subject: Re: offers\n"
              "Auto-Submitted: auto-replied\n"
              "\n"
              "I am away until Monday.\n",
              &r);
    assert_int_equal(r.kind, BOUNCE_KIND_AUTOREPLY);
    assert_string_equal(r.format, "autoreply");
    assert_int_equal(r.n, 0);
    parse_str("From: Dana <dana@example.com>\n"
              "To: news@shop.example\n"
              "Subject: Out of Office: x\n"
              "\n"
              "I am away until Monday.\n",
              &r);
    assert_int_equal(r.kind, BOUNCE_KIND_AUTOREPLY);
    assert_int_equal(r.n, 0);
    /* Auto-Submitted: no is a person */
    parse_str("From: Dana <dana@example.com>\n"
              "To: news@shop.example\n"
              "Subject: Re: offers\n"
              "Auto-Submitted: no\n"
              "\n"
              "Thanks!\n",
              &r);
    assert_int_equal(r.kind, BOUNCE_KIND_NONE);
    bounce_report_free(&r);
}

static void test_parse_human(void **state)
{
    struct bounce_report r;

    (void)state;
    bounce_report_init(&r);
    parse_str("From: Erin <erin@example.com>\n"
              "To: news@shop.example\n"
              "Subject: Re: offers\n"
              "Message-ID: <h1@example.com>\n"
              "\n"
              "Please send me the catalogue. My colleague is frank@example.com.\n",
              &r);
    assert_int_equal(r.kind, BOUNCE_KIND_NONE);
    assert_int_equal(r.n, 0);
    assert_true(r.note.len > 0);
    assert_string_equal(r.note.data, "not a bounce, feedback report or auto-reply");
    assert_null(r.original);
    bounce_report_free(&r);
}

static const char qmail_msg[] =
    "From: MAILER-DAEMON@mail2.example.org\n"
    "To: bounces@shop.example\n"
    "Subject: failure notice\n"
    "\n"
    "Hi. This is the qmail-send program at mail2.example.org.\n"
    "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
    "This is a permanent error; I've given up. Sorry it didn't work out.\n"
    "\n"
    "<olivia@example.org>:\n"
    "Sorry, no mailbox here by that name. (#5.1.1)\n"
    "\n"
    "--- Below this line is a copy of the message.\n"
    "\n"
    "Return-Path: <bounces@shop.example>\n"
    "From: news@shop.example\n"
    "To: olivia@example.org, peter@example.org\n"
    "List-Unsubscribe: <https://t.shop.example/u/qtok>\n"
    "\n"
    "Hello peter@example.org\n";

static void test_parse_qmail(void **state)
{
    struct bounce_report r;

    (void)state;
    bounce_report_init(&r);
    parse_str(qmail_msg, &r);
    assert_int_equal(r.kind, BOUNCE_KIND_BOUNCE);
    assert_string_equal(r.format, "qmail");
    assert_int_equal(r.n, 1);
    assert_string_equal(r.rcpt[0].address, "olivia@example.org");
    assert_string_equal(r.rcpt[0].action, "failed");
    assert_string_equal(r.rcpt[0].status, "5.1.1");
    assert_int_equal(r.rcpt[0].cls, BOUNCE_HARD);
    assert_string_equal(r.rcpt[0].reason,
                        "Sorry, no mailbox here by that name. (#5.1.1)");
    assert_non_null(r.original);
    assert_non_null(
        strstr(r.original, "List-Unsubscribe: <https://t.shop.example/u/qtok>"));
    assert_null(strstr(r.original, "Hello"));
    bounce_report_free(&r);
}

/* b64 - base64 of bytes, lines of 76 (CRLF) */
static void b64(const char *in, size_t len, struct buf *out)
{
    static const char a[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t col = 0;

    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;

        if (i + 1 < len)
            v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < len)
            v |= (unsigned char)in[i + 2];
        buf_putc(out, a[v >> 18 & 63]);
        buf_putc(out, a[v >> 12 & 63]);
        buf_putc(out, i + 1 < len ? a[v >> 6 & 63] : '=');
        buf_putc(out, i + 2 < len ? a[v & 63] : '=');
        if ((col += 4) >= 76) {
            buf_puts(out, "\r\n");
            col = 0;
        }
    }
    buf_puts(out, "\r\n");
}

/* the returned original inside the forwarded reports below */
#define RETURNED_ORIGINAL                                                                \
    "--X1\n"                                                                             \
    "Content-Type: text/rfc822-headers\n"                                                \
    "\n"                                                                                 \
    "From: news@shop.example\n"                                                          \
    "To: quinn@example.net\n"                                                            \
    "List-Unsubscribe: <https://t.shop.example/u/fwdtok>\n"                              \
    "\n"

/* forwarded - a person's message with inner attached as message/rfc822 (base64: in
 * base64) */
static void forwarded(const char *inner, int base64, struct buf *out)
{
    struct buf c;

    buf_init(&c, strlen(inner) + 64);
    header_canonical(inner, strlen(inner), &c);
    buf_reset(out);
    buf_printf(out,
               "From: Paula <paula@shop.example>\r\n"
               "To: bounces@shop.example\r\n"
               "Subject: Fwd: Delivery Status Notification\r\n"
               "MIME-Version: 1.0\r\n"
               "Content-Type: multipart/mixed; boundary=\"OUT\"\r\n"
               "\r\n"
               "--OUT\r\n"
               "Content-Type: text/plain\r\n"
               "\r\n"
               "see attached\r\n"
               "\r\n"
               "--OUT\r\n"
               "Content-Type: message/rfc822\r\n"
               "%s"
               "\r\n",
               base64 ? "Content-Transfer-Encoding: base64\r\n" : "");
    if (base64)
        b64(c.data, c.len, out);
    else
        buf_append(out, c.data, c.len);
    buf_puts(out, "--OUT--\r\n");
    buf_release(&c);
}

static void inner_dsn(struct buf *inner)
{
    dsn_of("Final-Recipient: rfc822; quinn@example.net\n"
           "Action: failed\n"
           "Status: 5.1.1\n"
           "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n"
           "\n" RETURNED_ORIGINAL,
           inner);
}

static void assert_forwarded_dsn(const struct bounce_report *r)
{
    assert_int_equal(r->kind, BOUNCE_KIND_BOUNCE);
    assert_int_equal(r->nesting, 1);
    assert_string_equal(r->format, "rfc3464");
    assert_int_equal(r->n, 1);
    assert_string_equal(r->rcpt[0].address, "quinn@example.net");
    assert_string_equal(r->rcpt[0].status, "5.1.1");
    assert_int_equal(r->rcpt[0].cls, BOUNCE_HARD);
    assert_string_equal(r->rcpt[0].reason, "550 5.1.1 User unknown");
    /* the original the report returned, not the report's own header */
    assert_non_null(r->original);
    assert_non_null(
        strstr(r->original, "List-Unsubscribe: <https://t.shop.example/u/fwdtok>"));
    assert_null(strstr(r->original, "MAILER-DAEMON"));
}

static void test_parse_forwarded(void **state)
{
    struct bounce_report r;
    struct buf m, inner;

    (void)state;
    bounce_report_init(&r);
    buf_init(&m, 4096);
    buf_init(&inner, 2048);
    /* a forwarded DSN (its attachment in base64, as some clients send it) */
    inner_dsn(&inner);
    forwarded(inner.data, 1, &m);
    bounce_parse(m.data, m.len, &r);
    assert_forwarded_dsn(&r);
    /* a forwarded feedback report */
    buf_reset(&inner);
    buf_printf(&inner, arf_msg, "abuse", "Reporting-MTA: dns; fbl.isp.example\n");
    forwarded(inner.data, 0, &m);
    bounce_parse(m.data, m.len, &r);
    assert_int_equal(r.kind, BOUNCE_KIND_ARF);
    assert_int_equal(r.nesting, 1);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.rcpt[0].address, "carol@example.com");
    assert_string_equal(r.source, "fbl.isp.example");
    /* a forwarded human message: nothing */
    forwarded("From: a@example.com\nSubject: hi\n\nhello\n", 0, &m);
    bounce_parse(m.data, m.len, &r);
    assert_int_equal(r.kind, BOUNCE_KIND_NONE);
    assert_int_equal(r.n, 0);
    buf_release(&m);
    buf_release(&inner);
    bounce_report_free(&r);
}

/*
 * A DSN forwarded as a plain 7bit message/rfc822 attachment is read inside
 * (nesting 1, its own returned original kept): the fallback for a report cut
 * off before its close delimiter must not find the inner report in the raw
 * bytes (it did, once).
 */
static void test_parse_forwarded_plain(void **state)
{
    struct bounce_report r;
    struct buf m, inner;

    (void)state;
    bounce_report_init(&r);
    buf_init(&m, 4096);
    buf_init(&inner, 2048);
    inner_dsn(&inner);
    forwarded(inner.data, 0, &m);
    bounce_parse(m.data, m.len, &r);
    assert_forwarded_dsn(&r);
    buf_release(&m);
    buf_release(&inner);
    bounce_report_free(&r);
}

/* Robustness. */

/* check - what every report read from anything must satisfy */
static void check(const struct bounce_report *r, const char *what)
{
    if (r->n > BOUNCE_MAX_RCPTS || (r->n > 0 && r->rcpt == NULL) || r->format == NULL)
        fail_msg("%s: %zu recipients", what, r->n);
    if (r->nesting < 0 || r->nesting > BOUNCE_MAX_NESTING)
        fail_msg("%s: nesting %d", what, r->nesting);
    if (r->original && r->original[r->original_len] != 0)
        fail_msg("%s: original not terminated", what);
    switch (r->kind) {
    case BOUNCE_KIND_NONE:
        if (r->n != 0 || r->note.len == 0)
            fail_msg("%s: kind none with %zu recipients, note \"%s\"", what, r->n,
                     r->note.data ? r->note.data : "");
        break;
    case BOUNCE_KIND_AUTOREPLY:
        if (r->n != 0)
            fail_msg("%s: autoreply with recipients", what);
        break;
    case BOUNCE_KIND_BOUNCE:
    case BOUNCE_KIND_DELAY: {
        int failed = 0;

        if (r->n == 0)
            fail_msg("%s: %s without recipients", what, bounce_kind_name(r->kind));
        for (size_t i = 0; i < r->n; i++) {
            const struct bounce_rcpt *b = &r->rcpt[i];
            char st[16];

            if (b->action == NULL ||
                (strcmp(b->action, "failed") != 0 && strcmp(b->action, "delayed") != 0))
                fail_msg("%s: action %s", what, b->action ? b->action : "NULL");
            failed |= strcmp(b->action, "failed") == 0;
            if (memchr(b->status, 0, sizeof(b->status)) == NULL ||
                !bounce_status_find(b->status, strlen(b->status), st) ||
                strcmp(st, b->status) != 0)
                fail_msg("%s: status \"%.16s\"", what, b->status);
            if (strcmp(b->action, "delayed") == 0 && b->status[0] == '5')
                fail_msg("%s: delayed with %s", what, b->status);
            if (b->cls != bounce_classify(b->status, b->reason))
                fail_msg("%s: class of %s \"%s\"", what, b->status, b->reason);
        }
        if ((r->kind == BOUNCE_KIND_BOUNCE) != failed)
            fail_msg("%s: kind %s, failed %d", what, bounce_kind_name(r->kind), failed);
        break;
    }
    case BOUNCE_KIND_ARF:
        if (r->source && strlen(r->source) == 0)
            fail_msg("%s: empty source", what);
        break;
    default:
        fail_msg("%s: kind %d", what, (int)r->kind);
    }
    for (size_t i = 0; i < r->n; i++) {
        const struct bounce_rcpt *b = &r->rcpt[i];

        if (b->address == NULL || strchr(b->address, '@') == NULL ||
            strpbrk(b->address, " \t\r\n<>") != NULL)
            fail_msg("%s: address \"%s\"", what, b->address ? b->address : "NULL");
        if (b->reason == NULL || strlen(b->reason) > BOUNCE_REASON_MAX)
            fail_msg("%s: reason of %s", what, b->address);
        for (const unsigned char *p = (const unsigned char *)b->reason; *p; p++)
            if (*p < 0x20 || *p == 0x7f)
                fail_msg("%s: control byte in reason \"%s\"", what, b->reason);
        for (size_t j = 0; j < i; j++)
            if (strcasecmp(r->rcpt[j].address, b->address) == 0)
                fail_msg("%s: %s twice", what, b->address);
    }
}

static void test_empty_and_tiny(void **state)
{
    struct bounce_report r;
    static const char *const tiny[] = {
        "\r\n",
        "\r\n\r\n",
        "From: a@b.example\r\nSubject: x\r\n",
        "From: MAILER-DAEMON@b.example\r\nSubject: failure "
        "notice\r\n",
        "Content-Type: multipart/report; boundary=x\r\n",
        "Content-Type: message/delivery-status\r\n\r\n",
        "Content-Type: message/delivery-status\r\n\r\n"
        "Final-Recipient: rfc822; a@b.example",
        ":\r\n\r\n:",
        "\r",
        "\n",
        NULL};

    (void)state;
    bounce_report_init(&r);
    /* empty: an exactly-sized allocation, so that ASan sees any read */
    {
        char *e = malloc(1);

        bounce_parse(e, 0, &r);
        free(e);
    }
    check(&r, "empty");
    assert_int_equal(r.kind, BOUNCE_KIND_NONE);
    assert_int_equal(r.n, 0);
    for (size_t i = 0; tiny[i]; i++) {
        size_t n = strlen(tiny[i]);
        char *copy = malloc(n);

        memcpy(copy, tiny[i], n);
        bounce_parse(copy, n, &r);
        free(copy);
        check(&r, tiny[i]);
    }
    /* only a line end, and a header with no body */
    bounce_parse("\r\n", 2, &r);
    assert_int_equal(r.kind, BOUNCE_KIND_NONE);
    assert_int_equal(r.n, 0);
    bounce_parse(tiny[2], strlen(tiny[2]), &r);
    assert_int_equal(r.kind, BOUNCE_KIND_NONE);
    assert_int_equal(r.n, 0);
    /* a delivery-status part cut off in its one recipient: still read */
    bounce_parse(tiny[6], strlen(tiny[6]), &r);
    assert_int_equal(r.kind, BOUNCE_KIND_BOUNCE);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.rcpt[0].address, "a@b.example");
    bounce_report_free(&r);
}

static void test_deep_nesting(void **state)
{
    struct bounce_report r;
    struct buf m;
    const int depth = 200;

    (void)state;
    bounce_report_init(&r);
    buf_init(&m, 64 * 1024);
    buf_puts(&m, "From: MAILER-DAEMON@mx.example.net\r\nSubject: failure notice\r\n"
                 "MIME-Version: 1.0\r\n");
    for (int i = 0; i < depth; i++)
        buf_printf(&m, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n",
                   i, i);
    buf_puts(&m, "Content-Type: text/plain\r\n\r\nnothing here\r\n");
    for (int i = depth - 1; i >= 0; i--)
        buf_printf(&m, "--b%d--\r\n", i);
    bounce_parse(m.data, m.len, &r);
    check(&r, "nested 200");
    assert_int_equal(r.kind, BOUNCE_KIND_NONE);
    assert_int_equal(r.n, 0);
    /* the same 200 levels of forwarded messages */
    buf_reset(&m);
    for (int i = 0; i < depth; i++)
        buf_printf(&m,
                   "From: someone@example.com\r\nSubject: Fwd: x\r\nMIME-Version: 1.0\r\n"
                   "Content-Type: multipart/mixed; boundary=\"f%d\"\r\n\r\n--f%d\r\n"
                   "Content-Type: message/rfc822\r\n\r\n",
                   i, i);
    buf_puts(&m, "From: MAILER-DAEMON@mx.example.net\r\nSubject: failure notice\r\n\r\n"
                 "nothing\r\n");
    for (int i = depth - 1; i >= 0; i--)
        buf_printf(&m, "--f%d--\r\n", i);
    bounce_parse(m.data, m.len, &r);
    check(&r, "forwarded 200");
    assert_int_equal(r.kind, BOUNCE_KIND_NONE);
    assert_int_equal(r.n, 0);
    buf_release(&m);
    bounce_report_free(&r);
}

static void test_missing_boundary(void **state)
{
    struct bounce_report r;
    static const char msg[] = "From: postmaster@mx.example.net\r\n"
                              "Subject: Undeliverable\r\n"
                              "MIME-Version: 1.0\r\n"
                              "Content-Type: multipart/report; "
                              "report-type=delivery-status; boundary=\"NEVER\"\r\n"
                              "\r\n"
                              "--OTHER\r\n"
                              "Content-Type: text/plain\r\n"
                              "\r\n"
                              "Some text.\r\n"
                              "--OTHER\r\n"
                              "Content-Type: text/html\r\n"
                              "\r\n"
                              "<p>Some <b>text\r\n";
    char *copy = malloc(sizeof(msg) - 1);

    (void)state;
    bounce_report_init(&r);
    memcpy(copy, msg, sizeof(msg) - 1);
    bounce_parse(copy, sizeof(msg) - 1, &r);
    check(&r, "missing boundary");
    assert_int_equal(r.kind, BOUNCE_KIND_NONE);
    assert_int_equal(r.n, 0);
    free(copy);
    bounce_report_free(&r);
}

static void test_megabyte_line(void **state)
{
    struct bounce_report r;
    struct buf m;

    (void)state;
    bounce_report_init(&r);
    buf_init(&m, 1100 * 1024);
    buf_puts(
        &m,
        "From: someone@mx.example.net\r\nSubject: report\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"L\"\r\n"
        "\r\n--L\r\nContent-Type: message/delivery-status\r\n\r\n");
    for (int i = 0; i < 1024 * 1024; i++)
        buf_putc(&m, "abcdefghij klmnop"[i % 17]);
    buf_puts(&m, "\r\n\r\n--L--\r\n");
    bounce_parse(m.data, m.len, &r);
    check(&r, "1 MB line");
    assert_int_equal(r.kind, BOUNCE_KIND_NONE);
    assert_int_equal(r.n, 0);
    assert_string_equal(r.format, "rfc3464");
    /* and the same line with no end at all, the part unterminated */
    buf_truncate(&m, m.len - strlen("\r\n\r\n--L--\r\n"));
    bounce_parse(m.data, m.len, &r);
    check(&r, "1 MB line, cut");
    assert_int_equal(r.n, 0);
    buf_release(&m);
    bounce_report_free(&r);
}

static void test_many_recipients(void **state)
{
    struct bounce_report r;
    struct buf m;

    (void)state;
    bounce_report_init(&r);
    buf_init(&m, 512 * 1024);
    buf_puts(
        &m,
        "From: MAILER-DAEMON@mx.example.net\r\nSubject: report\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"M\"\r\n"
        "\r\n--M\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n");
    for (int i = 0; i < 5000; i++)
        buf_printf(&m,
                   "Final-Recipient: rfc822; u%d@example.com\r\nAction: failed\r\n"
                   "Status: 5.1.1\r\n\r\n",
                   i);
    buf_puts(&m, "--M--\r\n");
    bounce_parse(m.data, m.len, &r);
    check(&r, "5000 recipients");
    assert_int_equal(r.kind, BOUNCE_KIND_BOUNCE);
    assert_int_equal(r.n, BOUNCE_MAX_RCPTS);
    assert_string_equal(r.rcpt[0].address, "u0@example.com");
    assert_string_equal(r.rcpt[BOUNCE_MAX_RCPTS - 1].address, "u999@example.com");
    /* the same as text: "<address>: reply" lines */
    buf_reset(&m);
    buf_puts(&m, "From: MAILER-DAEMON@mx.example.net\r\nSubject: failure notice\r\n\r\n"
                 "Hi. This is the qmail-send program at mx.example.net.\r\n\r\n");
    for (int i = 0; i < 5000; i++)
        buf_printf(
            &m,
            "<t%d@example.com>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n",
            i);
    bounce_parse(m.data, m.len, &r);
    check(&r, "5000 text recipients");
    assert_int_equal(r.kind, BOUNCE_KIND_BOUNCE);
    assert_int_equal(r.n, BOUNCE_MAX_RCPTS);
    assert_string_equal(r.rcpt[BOUNCE_MAX_RCPTS - 1].address, "t999@example.com");
    buf_release(&m);
    bounce_report_free(&r);
}

static void test_huge_diagnostic(void **state)
{
    struct bounce_report r;
    struct buf m;

    (void)state;
    bounce_report_init(&r);
    buf_init(&m, 256 * 1024);
    /* "é" is two bytes and starts at an odd offset: the cut falls inside one */
    buf_puts(
        &m,
        "From: MAILER-DAEMON@mx.example.net\r\nSubject: report\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"D\"\r\n"
        "\r\n--D\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Final-Recipient: rfc822; big@example.com\r\nAction: failed\r\n"
        "Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 x");
    for (int i = 0; i < 50 * 1024; i++)
        buf_puts(&m, "\xc3\xa9");
    buf_puts(&m, "\r\n\r\n--D--\r\n");
    bounce_parse(m.data, m.len, &r);
    check(&r, "100 KB diagnostic");
    assert_int_equal(r.n, 1);
    assert_true(strlen(r.rcpt[0].reason) <= BOUNCE_REASON_MAX);
    assert_true(strlen(r.rcpt[0].reason) >= BOUNCE_REASON_MAX - 8);
    assert_true(utf8_valid(r.rcpt[0].reason, strlen(r.rcpt[0].reason)));
    assert_memory_equal(r.rcpt[0].reason, "550 5.1.1 x\xc3\xa9", 13);
    assert_int_equal(r.rcpt[0].cls, BOUNCE_HARD);
    /* at the limit exactly: 1024 bytes kept whole, 1025 cut to 1024 */
    for (int extra = 0; extra <= 1; extra++) {
        buf_reset(&m);
        buf_puts(&m, "From: MAILER-DAEMON@mx.example.net\r\nSubject: report\r\n"
                     "Content-Type: multipart/report; boundary=\"D\"\r\n"
                     "\r\n--D\r\nContent-Type: message/delivery-status\r\n\r\n"
                     "Final-Recipient: rfc822; big@example.com\r\nAction: failed\r\n"
                     "Status: 5.1.1\r\nDiagnostic-Code: ");
        for (int i = 0; i < BOUNCE_REASON_MAX + extra; i++)
            buf_putc(&m, 'a' + i % 26);
        buf_puts(&m, "\r\n\r\n--D--\r\n");
        bounce_parse(m.data, m.len, &r);
        assert_int_equal(r.n, 1);
        assert_int_equal(strlen(r.rcpt[0].reason), BOUNCE_REASON_MAX);
        assert_int_equal(r.rcpt[0].reason[BOUNCE_REASON_MAX - 1],
                         'a' + (BOUNCE_REASON_MAX - 1) % 26);
    }
    /* a text bounce with a 100 KB reply under its address */
    buf_reset(&m);
    buf_puts(&m, "From: MAILER-DAEMON@mx.example.net\r\nSubject: failure notice\r\n\r\n"
                 "Hi. This is the qmail-send program at mx.example.net.\r\n\r\n"
                 "<big@example.com>:\r\nx");
    for (int i = 0; i < 50 * 1024; i++)
        buf_puts(&m, i % 64 == 63 ? "\xc3\xa9\r\n" : "\xc3\xa9");
    buf_puts(&m, " (#5.1.1)\r\n\r\n");
    bounce_parse(m.data, m.len, &r);
    check(&r, "100 KB text reply");
    assert_int_equal(r.n, 1);
    assert_string_equal(r.rcpt[0].address, "big@example.com");
    assert_true(strlen(r.rcpt[0].reason) <= BOUNCE_REASON_MAX);
    assert_true(strlen(r.rcpt[0].reason) >= BOUNCE_REASON_MAX - 8);
    assert_true(utf8_valid(r.rcpt[0].reason, strlen(r.rcpt[0].reason)));
    buf_release(&m);
    bounce_report_free(&r);
}

/* xorshift64 - a fixed-seed generator, so that every run mutates the same way */
static uint64_t rng_state;

static uint64_t xorshift(void)
{
    uint64_t x = rng_state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static size_t below(size_t n)
{
    return n ? (size_t)(xorshift() % n) : 0;
}

static void test_nul_and_ff(void **state)
{
    struct bounce_report r;
    struct buf m, c;

    (void)state;
    bounce_report_init(&r);
    buf_init(&m, 4096);
    buf_init(&c, 4096);
    /* NUL and 0xFF inside a report's fields: read, made harmless */
    buf_puts(
        &m,
        "From: MAILER-DAEMON@mx.example.net\r\nSubject: report\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"N\"\r\n"
        "\r\n--N\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Final-Recipient: rfc822; nul@example.com\r\nAction: failed\r\n"
        "Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 user");
    buf_append(&m, "\0", 1);
    buf_puts(&m, "unknown\x01\xff\r\n\r\n--N--\r\n");
    bounce_parse(m.data, m.len, &r);
    check(&r, "NUL in a diagnostic");
    assert_int_equal(r.n, 1);
    assert_string_equal(r.rcpt[0].address, "nul@example.com");
    assert_string_equal(r.rcpt[0].reason, "550 5.1.1 user unknown?\xff");
    /* the same message with NUL and 0xFF bytes everywhere */
    buf_reset(&c);
    for (size_t i = 0; i < m.len; i++) {
        buf_putc(&c, m.data[i]);
        if (i % 7 == 3)
            buf_putc(&c, 0);
        if (i % 11 == 5)
            buf_putc(&c, 0xff);
    }
    bounce_parse(c.data, c.len, &r);
    check(&r, "NUL and 0xFF throughout");
    /* and 64 KB of random bytes */
    rng_state = 0x9e3779b97f4a7c15ull;
    buf_reset(&c);
    for (int i = 0; i < 64 * 1024; i++) {
        uint64_t x = xorshift();

        buf_putc(&c, (x & 7) == 0   ? 0
                     : (x & 7) == 1 ? 0xff
                     : (x & 7) == 2 ? '\n'
                                    : (int)(x >> 56));
    }
    bounce_parse(c.data, c.len, &r);
    check(&r, "random bytes");
    assert_int_equal(r.kind, BOUNCE_KIND_NONE);
    buf_release(&m);
    buf_release(&c);
    bounce_report_free(&r);
}

/* Mutating the fixtures. */

static const char *fixture_dir(char *path, size_t size)
{
    const char *top = getenv("SG_TOP_SRCDIR");

    snprintf(path, size, "%s/tests/fixtures/bounces", top && *top ? top : "../..");
    return path;
}

static int read_file(const char *path, struct buf *out)
{
    FILE *fp = fopen(path, "rb");
    char chunk[8192];
    size_t n;

    buf_reset(out);
    if (fp == NULL)
        return -1;
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        buf_append(out, chunk, n);
    fclose(fp);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* fixtures - the .eml files, sorted; their number */
static size_t fixtures(char ***names)
{
    char dirpath[1024];
    DIR *d = opendir(fixture_dir(dirpath, sizeof(dirpath)));
    struct dirent *de;
    size_t n = 0, cap = 0;

    *names = NULL;
    if (d == NULL)
        fail_msg("cannot open %s (set SG_TOP_SRCDIR)", dirpath);
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);

        if (len > 4 && strcmp(de->d_name + len - 4, ".eml") == 0) {
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                *names = realloc(*names, cap * sizeof(**names));
            }
            (*names)[n++] = strdup(de->d_name);
        }
    }
    closedir(d);
    qsort(*names, n, sizeof(**names), by_name);
    return n;
}

/* expected_kind - the "kind:" of a fixture's .expect, or "" */
static void expected_kind(const char *eml, char *kind, size_t size)
{
    char path[1200], line[512];
    FILE *fp;

    kind[0] = 0;
    snprintf(path, sizeof(path), "%s", eml);
    memcpy(path + strlen(path) - 4, ".expect", 8);
    if ((fp = fopen(path, "r")) == NULL)
        return;
    while (fgets(line, sizeof(line), fp))
        if (strncmp(line, "kind:", 5) == 0) {
            snprintf(kind, size, "%s", line + 5 + strspn(line + 5, " "));
            kind[strcspn(kind, " \r\n")] = 0;
        }
    fclose(fp);
}

/* mutate - one of four damages to m, in place */
static void mutate(struct buf *m)
{
    size_t len = m->len;

    switch (xorshift() % 4) {
    case 0: /* truncate */
        buf_truncate(m, below(len + 1));
        break;
    case 1: /* flip bytes */
        for (int k = 1 + (int)below(16); k > 0 && len > 0; k--)
            m->data[below(len)] ^= (char)(1 + below(255));
        break;
    case 2: { /* delete lines */
        for (int k = 1 + (int)below(8); k > 0 && m->len > 0; k--) {
            size_t s = below(m->len), e;
            const char *nl;

            while (s > 0 && m->data[s - 1] != '\n')
                s--;
            nl = memchr(m->data + s, '\n', m->len - s);
            e = nl ? (size_t)(nl - m->data) + 1 : m->len;
            memmove(m->data + s, m->data + e, m->len - e);
            buf_truncate(m, m->len - (e - s));
        }
        break;
    }
    default: { /* duplicate a chunk somewhere */
        size_t s = below(len), n = below(len - s + 1), at;
        char *chunk;

        if (n > 4096)
            n = 4096;
        chunk = malloc(n + 1);
        memcpy(chunk, m->data + s, n);
        at = below(m->len + 1);
        buf_reserve(m, n);
        memmove(m->data + at + n, m->data + at, m->len - at);
        memcpy(m->data + at, chunk, n);
        m->len += n;
        m->data[m->len] = 0;
        free(chunk);
        break;
    }
    }
}

static void test_fixtures_mutated(void **state)
{
    char **names, dirpath[1024], path[1200], kind[32], what[1300];
    size_t n = fixtures(&names);
    struct buf orig, m, c;
    struct bounce_report r;
    long kinds_checked = 0, parsed = 0, bounces = 0;

    (void)state;
    assert_true(n >= 40);
    fixture_dir(dirpath, sizeof(dirpath));
    buf_init(&orig, 16384);
    buf_init(&m, 16384);
    buf_init(&c, 16384);
    bounce_report_init(&r);
    rng_state = 0x2545f4914f6cdd1dull;
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dirpath, names[i]);
        if (read_file(path, &orig) < 0)
            fail_msg("cannot read %s", path);
        /* unchanged: the kind its .expect gives (unsubscribe mail is none here) */
        buf_reset(&c);
        header_canonical(orig.data, orig.len, &c);
        bounce_parse(c.data, c.len, &r);
        check(&r, names[i]);
        expected_kind(path, kind, sizeof(kind));
        if (*kind && strcmp(kind, "unsubscribe") != 0) {
            if (strcmp(kind, bounce_kind_name(r.kind)) != 0)
                fail_msg("%s: kind %s, expected %s", names[i], bounce_kind_name(r.kind),
                         kind);
            kinds_checked++;
        }
        for (int j = 0; j < 200; j++) {
            buf_reset(&m);
            buf_append(&m, orig.data, orig.len);
            for (int k = 1 + (int)below(3); k > 0; k--)
                mutate(&m);
            buf_reset(&c);
            header_canonical(m.data, m.len, &c);
            bounce_parse(c.data, c.len, &r);
            snprintf(what, sizeof(what), "%s mutation %d", names[i], j);
            check(&r, what);
            bounces += r.kind == BOUNCE_KIND_BOUNCE;
            parsed++;
        }
        free(names[i]);
    }
    free(names);
    bounce_report_free(&r);
    buf_release(&orig);
    buf_release(&m);
    buf_release(&c);
    assert_int_equal(parsed, (long)n * 200);
    assert_true(kinds_checked >= 35);
    /* most damage leaves a bounce readable */
    assert_true(bounces > parsed / 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_table),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_status_find),
        cmocka_unit_test(test_parse_rfc3464_two),
        cmocka_unit_test(test_parse_generic_status),
        cmocka_unit_test(test_parse_action_missing),
        cmocka_unit_test(test_parse_relayed_only),
        cmocka_unit_test(test_parse_arf),
        cmocka_unit_test(test_parse_autoreply),
        cmocka_unit_test(test_parse_human),
        cmocka_unit_test(test_parse_qmail),
        cmocka_unit_test(test_parse_forwarded),
        cmocka_unit_test(test_parse_forwarded_plain),
        cmocka_unit_test(test_empty_and_tiny),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_missing_boundary),
        cmocka_unit_test(test_megabyte_line),
        cmocka_unit_test(test_many_recipients),
        cmocka_unit_test(test_huge_diagnostic),
        cmocka_unit_test(test_nul_and_ff),
        cmocka_unit_test(test_fixtures_mutated),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
