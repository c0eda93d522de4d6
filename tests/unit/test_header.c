/*
 * test_header - the header block walked in place: where it ends (CRLF, LF,
 * no body, no header), fields over folded lines and lines without a colon,
 * names matched without regard to case or the white space before the
 * colon, values unfolded and trimmed, a program's message made canonical
 * (CRLF, bare CR kept, an empty line put before a first body line as
 * Postfix does, the converted lines counted), and RFC 5322 dates in zones
 * with odd offsets.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "header.h"

#define NOW 1700000000 /* Tue, 14 Nov 2023 22:13:20 +0000 */

#define LEN(s) (sizeof(s) - 1)

static int setup(void **state)
{
    (void)state;
    setenv("TZ", "UTC", 1);
    tzset();
    return 0;
}

/* field_is - the field's name, value and extent as expected */
static void field_is(const struct header_field *f, const char *name, const char *value,
                     const char *whole)
{
    assert_int_equal(f->name_len, strlen(name));
    assert_memory_equal(f->name, name, f->name_len);
    assert_int_equal(f->value_len, strlen(value));
    assert_memory_equal(f->value, value, f->value_len);
    assert_int_equal(f->len, strlen(whole));
    assert_memory_equal(f->start, whole, f->len);
}

/* The header block's length and the body's start. */
static void test_split(void **state)
{
    static const struct {
        const char *msg;
        size_t hlen, body;
    } cases[] = {
        /* CRLF, with a body */
        {"A: 1\r\nB: 2\r\n\r\nbody\r\n", 12, 14},
        /* an empty body after the empty line */
        {"A: 1\r\n\r\n", 6, 8},
        /* all header: the body starts at the end */
        {"A: 1\r\nB: 2\r\n", 12, 12},
        {"A: 1", 4, 4},
        /* LF-only lines */
        {"A: 1\nB: 2\n\nbody\n", 10, 11},
        {"A: 1\nB: 2\n", 10, 10},
        /* folded: the continuation belongs to the header */
        {"A: 1\r\n 2\r\n\r\nx", 10, 12},
        /* a line of white space is not the empty line */
        {"A: 1\r\n \r\n\r\nx", 9, 11},
        /* no header at all */
        {"\r\nbody\r\n", 0, 2},
        {"\nbody\n", 0, 1},
        {"", 0, 0},
        /* only the first empty line counts */
        {"A: 1\r\n\r\n\r\nB: 2\r\n", 6, 8},
    };

    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        size_t body = 12345;
        size_t hlen = header_split(cases[c].msg, strlen(cases[c].msg), &body);
        if (hlen != cases[c].hlen || body != cases[c].body)
            fail_msg("case %zu: header %zu body %zu, expected %zu %zu", c, hlen, body,
                     cases[c].hlen, cases[c].body);
    }
}

/* Fields over folded lines, lines without a colon, white space before the colon. */
static void test_next(void **state)
{
    static const char msg[] = "Subject: one\r\n"
                              " two\r\n"
                              "\tthree\r\n"
                              "To: a@example.com\r\n"
                              "not a field\r\n"
                              "Cc \t: c@example.com\r\n"
                              "Empty:\r\n"
                              "X-Colons: a:b:c\r\n"
                              "\r\n"
                              "Body: not a field\r\n";
    static const struct {
        const char *name, *value, *whole;
    } want[] = {
        {"Subject", " one\r\n two\r\n\tthree", "Subject: one\r\n two\r\n\tthree\r\n"},
        {"To", " a@example.com", "To: a@example.com\r\n"},
        {"", "not a field", "not a field\r\n"},
        {"Cc", " c@example.com", "Cc \t: c@example.com\r\n"},
        {"Empty", "", "Empty:\r\n"},
        {"X-Colons", " a:b:c", "X-Colons: a:b:c\r\n"},
    };
    struct header_field f;
    size_t body, hlen = header_split(msg, LEN(msg), &body), pos = 0, n = 0;

    (void)state;
    while (header_next(msg, hlen, &pos, &f)) {
        assert_true(n < sizeof(want) / sizeof(want[0]));
        field_is(&f, want[n].name, want[n].value, want[n].whole);
        assert_int_equal(pos, (size_t)(f.start + f.len - msg));
        n++;
    }
    assert_int_equal(n, sizeof(want) / sizeof(want[0]));
    assert_int_equal(pos, hlen);
    /* at the end it stays at the end */
    assert_int_equal(header_next(msg, hlen, &pos, &f), 0);
    assert_int_equal(pos, hlen);
}

/* LF-only lines fold the same way; the value stops before the LF. */
static void test_next_lf(void **state)
{
    static const char msg[] = "Subject: a\n b\nTo: x\n";
    struct header_field f;
    size_t pos = 0;

    (void)state;
    assert_int_equal(header_next(msg, LEN(msg), &pos, &f), 1);
    field_is(&f, "Subject", " a\n b", "Subject: a\n b\n");
    assert_int_equal(header_next(msg, LEN(msg), &pos, &f), 1);
    field_is(&f, "To", " x", "To: x\n");
    assert_int_equal(header_next(msg, LEN(msg), &pos, &f), 0);
    /* a last field without a line end */
    pos = 0;
    assert_int_equal(header_next("A: b", 4, &pos, &f), 1);
    field_is(&f, "A", " b", "A: b");
    assert_int_equal(pos, 4);
}

/*
 * A line without a colon is a field with an empty name, even when a
 * continuation line after it holds a colon: the name is never looked for
 * beyond the field's first line.
 */
static void test_next_colon_in_continuation(void **state)
{
    static const char msg[] = "no colon here\r\n x: y\r\nTo: a@example.com\r\n";
    struct header_field f;
    size_t pos = 0;

    (void)state;
    assert_int_equal(header_next(msg, LEN(msg), &pos, &f), 1);
    assert_int_equal(f.len, LEN("no colon here\r\n x: y\r\n"));
    assert_int_equal(f.name_len, 0);
    assert_int_equal(f.value_len, LEN("no colon here\r\n x: y"));
    assert_int_equal(header_next(msg, LEN(msg), &pos, &f), 1);
    field_is(&f, "To", " a@example.com", "To: a@example.com\r\n");
}

/* Names compare without regard to case, and only as a whole. */
static void test_is(void **state)
{
    static const struct {
        const char *field, *name;
        int is;
    } cases[] = {
        {"Subject: x\r\n", "Subject", 1},
        {"Subject: x\r\n", "subject", 1},
        {"Subject: x\r\n", "SUBJECT", 1},
        {"sUbJeCt: x\r\n", "Subject", 1},
        {"Subject  : x\r\n", "subject", 1},
        {"Subject: x\r\n", "Subj", 0},
        {"Subject: x\r\n", "Subjects", 0},
        {"Subject: x\r\n", "Subject:", 0},
        {"Subject: x\r\n", "", 0},
        {"Message-ID: <a@b>\r\n", "message-id", 1},
        {"Message-ID: <a@b>\r\n", "message_id", 0},
    };

    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct header_field f;
        size_t pos = 0;

        assert_int_equal(header_next(cases[c].field, strlen(cases[c].field), &pos, &f),
                         1);
        if (header_is(&f, cases[c].name) != cases[c].is)
            fail_msg("case %zu: '%s' is '%s': expected %d", c, cases[c].field,
                     cases[c].name, cases[c].is);
    }
}

/* The first field of that name, within the header block only. */
static void test_find(void **state)
{
    static const char msg[] = "Received: from a\r\n"
                              "\tby b\r\n"
                              "subject: first\r\n"
                              "Subject: second\r\n"
                              "To  : x@example.com\r\n"
                              "\r\n"
                              "Cc: in the body\r\n";
    struct header_field f;
    size_t body, hlen = header_split(msg, LEN(msg), &body);

    (void)state;
    assert_int_equal(header_find(msg, hlen, "SUBJECT", &f), 1);
    field_is(&f, "subject", " first", "subject: first\r\n");
    assert_int_equal(header_find(msg, hlen, "received", &f), 1);
    field_is(&f, "Received", " from a\r\n\tby b", "Received: from a\r\n\tby b\r\n");
    assert_int_equal(header_find(msg, hlen, "to", &f), 1);
    field_is(&f, "To", " x@example.com", "To  : x@example.com\r\n");
    /* a continuation line is no field of its own */
    assert_int_equal(header_find(msg, hlen, "\tby b", &f), 0);
    /* nothing in the body */
    assert_int_equal(header_find(msg, hlen, "Cc", &f), 0);
    assert_int_equal(header_find(msg, LEN(msg), "Cc", &f), 1);
    assert_int_equal(header_find(msg, hlen, "From", &f), 0);
    assert_int_equal(header_find(msg, 0, "Received", &f), 0);
}

/* Values unfolded (the line breaks go, the white space stays) and trimmed. */
static void test_value(void **state)
{
    static const struct {
        const char *field, *value;
    } cases[] = {
        {"Subject: hello\r\n", "hello"},
        {"Subject:hello\r\n", "hello"},
        {"Subject: \t hello \t \r\n", "hello"},
        {"Subject: a  b\r\n", "a  b"},
        {"Subject: a\r\n b\r\n", "a b"},
        {"Subject: a\r\n\tb\r\n", "a\tb"},
        {"Subject: a\r\n b\r\n  c\r\n", "a b  c"},
        {"Subject:\r\n b\r\n", "b"},
        {"Subject: a\r\n \r\n", "a"},
        {"Subject: a\n b\n", "a b"},
        {"Subject:\r\n", ""},
        {"Subject: \r\n \r\n\t\r\n", ""},
        {"Subject: a:b\r\n", "a:b"},
        {"no colon \r\n", "no colon"},
    };
    struct buf out;

    (void)state;
    buf_init(&out, 16);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct header_field f;
        size_t pos = 0;

        assert_int_equal(header_next(cases[c].field, strlen(cases[c].field), &pos, &f),
                         1);
        buf_set(&out, "left over");
        header_value(&f, &out);
        if (strcmp(buf_str(&out), cases[c].value) != 0)
            fail_msg("case %zu: '%s', expected '%s'", c, buf_str(&out), cases[c].value);
        assert_int_equal(buf_len(&out), strlen(cases[c].value));
    }
    buf_release(&out);
}

/* A program's message made canonical; the lines whose end changed counted. */
static void test_canonical(void **state)
{
    static const struct {
        const char *in, *out;
        size_t converted;
    } cases[] = {
        /* CRLF kept */
        {"Subject: x\r\n\r\nbody\r\n", "Subject: x\r\n\r\nbody\r\n", 0},
        /* LF to CRLF */
        {"Subject: x\n\nbody\n", "Subject: x\r\n\r\nbody\r\n", 3},
        /* mixed */
        {"Subject: x\r\n\nbody\nmore\r\n", "Subject: x\r\n\r\nbody\r\nmore\r\n", 2},
        /* a bare CR is kept as it is */
        {"Subject: x\n\na\rb\n", "Subject: x\r\n\r\na\rb\r\n", 3},
        {"Subject: a\rb\r\n\r\nc\r\n", "Subject: a\rb\r\n\r\nc\r\n", 0},
        {"Subject: x\r\n\r\na\r\r\n", "Subject: x\r\n\r\na\r\r\n", 0},
        /* a last line without a line end gets one */
        {"Subject: x\n\nbody", "Subject: x\r\n\r\nbody\r\n", 3},
        {"Subject: x\r\n\r\nbody", "Subject: x\r\n\r\nbody\r\n", 1},
        /* a first body line that is not a field: an empty line before it */
        {"Subject: x\nthis is not a header\n",
         "Subject: x\r\n\r\nthis is not a header\r\n", 2},
        {"Subject: x\r\nno-colon\r\nmore\r\n", "Subject: x\r\n\r\nno-colon\r\nmore\r\n",
         0},
        {"From someone Tue Nov 14\nSubject: x\n\nbody\n",
         "\r\nFrom someone Tue Nov 14\r\nSubject: x\r\n\r\nbody\r\n", 4},
        /* a continuation line in the header is kept there */
        {"Subject: a\n b\n\tc\nTo: d\n\nbody\n",
         "Subject: a\r\n b\r\n\tc\r\nTo: d\r\n\r\nbody\r\n", 6},
        /* ... but a header cannot start with one */
        {" a\nTo: d\n", "\r\n a\r\nTo: d\r\n", 2},
        /* white space before the colon is still a field */
        {"Subject  : x\n\nbody\n", "Subject  : x\r\n\r\nbody\r\n", 3},
        /* after the empty line nothing is looked at */
        {"Subject: x\n\nnot a header\nTo: y\n",
         "Subject: x\r\n\r\nnot a header\r\nTo: y\r\n", 4},
        /* no header at all */
        {"hello\n", "\r\nhello\r\n", 1},
        {"\nhello\n", "\r\nhello\r\n", 2},
        {"\r\nhello\r\n", "\r\nhello\r\n", 0},
        /* all header: the empty line is added */
        {"Subject: x\n", "Subject: x\r\n\r\n", 1},
        {"Subject: x\r\n", "Subject: x\r\n\r\n", 0},
        {"Subject: x", "Subject: x\r\n\r\n", 1},
        {"Subject: a\n b\n", "Subject: a\r\n b\r\n\r\n", 2},
        {"", "\r\n", 0},
    };
    struct buf out;

    (void)state;
    buf_init(&out, 16);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        size_t n;

        buf_reset(&out);
        n = header_canonical(cases[c].in, strlen(cases[c].in), &out);
        if (buf_len(&out) != strlen(cases[c].out) ||
            memcmp(buf_str(&out), cases[c].out, buf_len(&out)) != 0)
            fail_msg("case %zu: '%s'", c, buf_str(&out));
        if (n != cases[c].converted)
            fail_msg("case %zu: %zu lines converted, expected %zu", c, n,
                     cases[c].converted);
    }
    buf_release(&out);
}

/* A canonical message splits where its empty line is, and stays as it is. */
static void test_canonical_split(void **state)
{
    static const char in[] = "Subject: x\nTo: y\n z\nnot a header\n\nmore\n";
    struct buf out, again;
    struct header_field f;
    size_t body, hlen, pos = 0, n = 0;

    (void)state;
    buf_init(&out, 16);
    buf_init(&again, 16);
    header_canonical(in, LEN(in), &out);
    hlen = header_split(out.data, out.len, &body);
    assert_int_equal(hlen, LEN("Subject: x\r\nTo: y\r\n z\r\n"));
    assert_int_equal(body, hlen + 2);
    assert_string_equal(out.data + body, "not a header\r\n\r\nmore\r\n");
    while (header_next(out.data, hlen, &pos, &f)) {
        assert_true(f.name_len > 0);
        n++;
    }
    assert_int_equal(n, 2);
    /* canonical input goes through unchanged */
    assert_int_equal(header_canonical(out.data, out.len, &again), 0);
    assert_int_equal(again.len, out.len);
    assert_memory_equal(again.data, out.data, out.len);
    buf_release(&out);
    buf_release(&again);
}

/* RFC 5322 dates, in zones whole and half an hour off, appended. */
static void test_dates(void **state)
{
    static const struct {
        const char *tz;
        int64_t t;
        const char *date;
    } cases[] = {
        {"UTC", NOW, "Tue, 14 Nov 2023 22:13:20 +0000"},
        {"UTC", 0, "Thu, 1 Jan 1970 00:00:00 +0000"},
        {"EST5", NOW, "Tue, 14 Nov 2023 17:13:20 -0500"},
        {"IST-5:30", NOW, "Wed, 15 Nov 2023 03:43:20 +0530"},
        {"NST3:30", NOW, "Tue, 14 Nov 2023 18:43:20 -0330"},
    };
    struct buf out;

    (void)state;
    buf_init(&out, 64);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        setenv("TZ", cases[c].tz, 1);
        tzset();
        buf_set(&out, "<");
        header_date(cases[c].t, &out);
        assert_string_equal(buf_str(&out) + 1, cases[c].date);
    }
    setenv("TZ", "UTC", 1);
    tzset();
    buf_release(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_next),
        cmocka_unit_test(test_next_lf),
        cmocka_unit_test(test_next_colon_in_continuation),
        cmocka_unit_test(test_is),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_value),
        cmocka_unit_test(test_canonical),
        cmocka_unit_test(test_canonical_split),
        cmocka_unit_test(test_dates),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
