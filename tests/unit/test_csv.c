/*
 * test_csv - csv.h: RFC 4180 records, quoting, line ends, the byte-order
 * mark, line numbers; every malformation is reported with its line and the
 * good row after it still comes back; records that straddle the reader's
 * internal buffer (256 KiB) parse like any other; read errors stop the
 * reader.
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "csv.h"

/* One csv_read result: a record (fields joined by '|'), a refusal, or the end. */
struct exp {
    int rc;
    size_t line;
    const char *text; /* rc 1: the fields joined by '|'; rc -1: part of why */
};

struct ccase {
    const char *name;
    const char *in;
    size_t len; /* 0: strlen(in) */
    struct exp exp[8];
};

static const struct ccase cases[] = {
    {"plain records",
     "a,b,c\nd,e,f\n",
     0,
     {{1, 1, "a|b|c"}, {1, 2, "d|e|f"}, {0, 0, NULL}}},
    {"final record without a newline",
     "a,b\nc,d",
     0,
     {{1, 1, "a|b"}, {1, 2, "c|d"}, {0, 0, NULL}}},
    {"CRLF", "a,b\r\nc,d\r\n", 0, {{1, 1, "a|b"}, {1, 2, "c|d"}, {0, 0, NULL}}},
    {"a lone CR ends a line too", "a\rb\r", 0, {{1, 1, "a"}, {1, 2, "b"}, {0, 0, NULL}}},
    {"final CR at end of input", "a,b\r", 0, {{1, 1, "a|b"}, {0, 0, NULL}}},
    {"byte-order mark skipped",
     "\xef\xbb\xbf"
     "email\r\na@b.com\r\n",
     0,
     {{1, 1, "email"}, {1, 2, "a@b.com"}, {0, 0, NULL}}},
    {"byte-order mark only at the very start",
     "a\n\xef\xbb\xbf"
     "b\n",
     0,
     {{1, 1, "a"},
      {1, 2,
       "\xef\xbb\xbf"
       "b"},
      {0, 0, NULL}}},
    {"empty lines are not records",
     "\n\r\n\na\n\n\r\nb\n\n",
     0,
     {{1, 4, "a"}, {1, 7, "b"}, {0, 0, NULL}}},
    {"empty fields",
     ",\n,,\n\"\"\n",
     0,
     {{1, 1, "|"}, {1, 2, "||"}, {1, 3, ""}, {0, 0, NULL}}},
    {"white space is data", " a , b \n", 0, {{1, 1, " a | b "}, {0, 0, NULL}}},
    {"quoted fields",
     "\"a,b\",\"say \"\"hi\"\"\",\"\"\"\"\n",
     0,
     {{1, 1, "a,b|say \"hi\"|\""}, {0, 0, NULL}}},
    {"quoted line breaks keep the line count",
     "\"line1\nline2\",x\n\"crlf\r\nin\",y\r\n\"cr\rin\",w\nnext,z\n",
     0,
     {{1, 1, "line1\nline2|x"},
      {1, 3, "crlf\r\nin|y"},
      {1, 5, "cr\rin|w"},
      {1, 7, "next|z"},
      {0, 0, NULL}}},
    {"quote inside unquoted field",
     "a\"b,c\ngood,row\n",
     0,
     {{-1, 1, "quote inside unquoted field (field 1)"},
      {1, 2, "good|row"},
      {0, 0, NULL}}},
    {"quote inside a later unquoted field",
     "ok,b\"c\ngood\n",
     0,
     {{-1, 1, "quote inside unquoted field (field 2)"}, {1, 2, "good"}, {0, 0, NULL}}},
    {"text after closing quote",
     "\"a\"b,c\ngood,row\n",
     0,
     {{-1, 1, "text after closing quote"}, {1, 2, "good|row"}, {0, 0, NULL}}},
    {"space after closing quote",
     "\"a\" ,b\ngood\n",
     0,
     {{-1, 1, "text after closing quote"}, {1, 2, "good"}, {0, 0, NULL}}},
    {"unterminated quoted field does not swallow the rows after it",
     "ok,1\n\"open,2\ngood,3\nalso,4\n",
     0,
     {{1, 1, "ok|1"},
      {-1, 2, "unterminated quoted field"},
      {1, 3, "good|3"},
      {1, 4, "also|4"},
      {0, 0, NULL}}},
    {"unterminated quoted field at the end",
     "\"abc",
     0,
     {{-1, 1, "unterminated"}, {0, 0, NULL}}},
    {"a bad row after a quoted line break resumes after the record's first line",
     "\"a\nb\"x,1\ngood\n",
     0,
     {{-1, 1, "text after closing quote (field 1, line 2)"},
      {-1, 2, "quote inside unquoted field"},
      {1, 3, "good"},
      {0, 0, NULL}}},
    {"NUL byte",
     "a\0b,c\ngood\n",
     11,
     {{-1, 1, "NUL byte (field 1)"}, {1, 2, "good"}, {0, 0, NULL}}},
    {"NUL byte in a quoted field",
     "x,\"a\0b\"\r\ngood\r\n",
     15,
     {{-1, 1, "NUL byte"}, {1, 2, "good"}, {0, 0, NULL}}},
    {"malformed last line without a newline",
     "good\nbad\"",
     0,
     {{1, 1, "good"}, {-1, 2, "quote inside"}, {0, 0, NULL}}},
    {"empty input", "", 0, {{0, 0, NULL}}},
    {"only empty lines", "\n\r\n\r", 0, {{0, 0, NULL}}},
    {"only a byte-order mark", "\xef\xbb\xbf", 0, {{0, 0, NULL}}},
};

/* open_data - a stream holding len bytes of data */
static FILE *open_data(const void *data, size_t len)
{
    FILE *fp = tmpfile();

    assert_non_null(fp);
    if (len)
        assert_int_equal(fwrite(data, 1, len, fp), len);
    rewind(fp);
    return fp;
}

/* joined - the fields of a row joined by '|', checking each is NUL-terminated */
static const char *joined(const struct csv_row *row, struct buf *b)
{
    buf_reset(b);
    for (size_t i = 0; i < row->nfields; i++) {
        if (i)
            buf_putc(b, '|');
        assert_int_equal(row->field[i][row->flen[i]], 0);
        assert_int_equal(strlen(row->field[i]), row->flen[i]);
        buf_append(b, row->field[i], row->flen[i]);
    }
    return buf_str(b);
}

/* test_cases - every row of cases, in order, then the end stays the end */
static void test_cases(void **state)
{
    struct buf why, text;
    struct csv_row row;

    (void)state;
    buf_init(&why, 64);
    buf_init(&text, 64);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct ccase *c = &cases[i];
        size_t len = c->len ? c->len : strlen(c->in);
        FILE *fp = open_data(c->in, len);
        struct csv_reader *r = csv_open(fp);

        for (const struct exp *e = c->exp;; e++) {
            int rc;

            buf_reset(&why);
            rc = csv_read(r, &row, &why);
            if (rc != e->rc)
                fail_msg("%s: result %zu: got %d (%s), expected %d", c->name,
                         (size_t)(e - c->exp), rc, buf_str(&why), e->rc);
            if (rc == 0)
                break;
            if (row.line != e->line)
                fail_msg("%s: result %zu: line %zu, expected %zu", c->name,
                         (size_t)(e - c->exp), row.line, e->line);
            if (rc == 1 && strcmp(joined(&row, &text), e->text) != 0)
                fail_msg("%s: line %zu: got '%s', expected '%s'", c->name, row.line,
                         buf_str(&text), e->text);
            if (rc == -1 && strstr(buf_str(&why), e->text) == NULL)
                fail_msg("%s: line %zu: reason '%s' lacks '%s'", c->name, row.line,
                         buf_str(&why), e->text);
            if (rc == -1)
                assert_int_equal(row.nfields, 0);
        }
        assert_int_equal(csv_read(r, &row, &why), 0);
        assert_int_equal(csv_bytes(r), len);
        csv_close(r);
        fclose(fp);
    }
    buf_release(&why);
    buf_release(&text);
}

/* test_field_limit - 64 fields are a record, 65 are refused */
static void test_field_limit(void **state)
{
    struct buf in, why;
    struct csv_row row;
    struct csv_reader *r;
    FILE *fp;

    (void)state;
    buf_init(&in, 512);
    buf_init(&why, 64);
    for (int i = 0; i < CSV_FIELDS_MAX; i++)
        buf_printf(&in, i ? ",f%d" : "f%d", i);
    buf_puts(&in, "\n");
    for (int i = 0; i <= CSV_FIELDS_MAX; i++)
        buf_printf(&in, i ? ",\"g%d\"" : "\"g%d\"", i);
    buf_puts(&in, "\ngood\n");
    fp = open_data(buf_str(&in), buf_len(&in));
    r = csv_open(fp);
    assert_int_equal(csv_read(r, &row, &why), 1);
    assert_int_equal(row.nfields, CSV_FIELDS_MAX);
    assert_string_equal(row.field[63], "f63");
    assert_int_equal(csv_read(r, &row, &why), -1);
    assert_int_equal(row.line, 2);
    assert_non_null(strstr(buf_str(&why), "more than 64 fields"));
    assert_int_equal(csv_read(r, &row, &why), 1);
    assert_int_equal(row.line, 3);
    assert_string_equal(row.field[0], "good");
    assert_int_equal(csv_read(r, &row, &why), 0);
    csv_close(r);
    fclose(fp);
    buf_release(&in);
    buf_release(&why);
}

/* put_n - n copies of a byte */
static void put_n(struct buf *b, int ch, size_t n)
{
    buf_reserve(b, n);
    memset(b->data + b->len, ch, n);
    b->len += n;
    b->data[b->len] = 0;
}

/* test_record_limit - 65536 bytes are a record, one more is refused, at any size */
static void test_record_limit(void **state)
{
    struct buf in, why;
    struct csv_row row;
    struct csv_reader *r;
    FILE *fp;

    (void)state;
    buf_init(&in, 1 << 20);
    buf_init(&why, 64);
    buf_puts(&in, "first\n");            /* line 1 */
    put_n(&in, 'x', CSV_RECORD_MAX);     /* line 2: at the limit */
    buf_puts(&in, "\r\n");               /* */
    put_n(&in, 'y', CSV_RECORD_MAX + 1); /* line 3: one over */
    buf_puts(&in, "\ngood3\n");          /* line 4 */
    put_n(&in, 'z', 600000);             /* line 5: over the buffer */
    buf_puts(&in, "\ngood5\n\"");        /* line 6, then 7 opens a quote */
    for (int i = 0; i < 3000; i++)       /* lines 7..3006 */
        buf_printf(&in, "row%d@example.com,%d\n", i, i);
    buf_puts(&in, "last,\"q\""); /* line 3007 */
    fp = open_data(buf_str(&in), buf_len(&in));
    r = csv_open(fp);

    assert_int_equal(csv_read(r, &row, &why), 1);
    assert_string_equal(row.field[0], "first");
    assert_int_equal(csv_read(r, &row, &why), 1);
    assert_int_equal(row.line, 2);
    assert_int_equal(row.flen[0], CSV_RECORD_MAX);
    assert_int_equal(csv_read(r, &row, &why), -1);
    assert_int_equal(row.line, 3);
    assert_non_null(strstr(buf_str(&why), "record longer than 65536 bytes"));
    assert_int_equal(csv_read(r, &row, &why), 1);
    assert_int_equal(row.line, 4);
    assert_string_equal(row.field[0], "good3");
    assert_int_equal(csv_read(r, &row, &why), -1);
    assert_int_equal(row.line, 5);
    assert_non_null(strstr(buf_str(&why), "record longer than 65536 bytes"));
    assert_int_equal(csv_read(r, &row, &why), 1);
    assert_int_equal(row.line, 6);
    assert_string_equal(row.field[0], "good5");
    /* The open quote on line 7 runs past the limit; the rows after it come back. */
    assert_int_equal(csv_read(r, &row, &why), -1);
    assert_int_equal(row.line, 7);
    if (strstr(buf_str(&why), "quote left open") == NULL)
        fail_msg("reason: %s", buf_str(&why));
    for (int i = 1; i < 3000; i++) {
        char want[64];

        assert_int_equal(csv_read(r, &row, &why), 1);
        assert_int_equal(row.line, (size_t)i + 7);
        snprintf(want, sizeof(want), "row%d@example.com", i);
        assert_string_equal(row.field[0], want);
    }
    assert_int_equal(csv_read(r, &row, &why), 1);
    assert_int_equal(row.line, 3007);
    assert_string_equal(row.field[1], "q");
    assert_int_equal(csv_read(r, &row, &why), 0);
    assert_int_equal(csv_bytes(r), buf_len(&in));
    csv_close(r);
    fclose(fp);
    buf_release(&in);
    buf_release(&why);
}

/*
 * One pattern of records, each construct of the format once; repeated past
 * the reader's buffer size and shifted one byte at a time, it puts the edge
 * of that buffer on every byte of the pattern: inside a quoted CRLF, between
 * a doubled quote's two halves, between CR and LF, and so on.
 */
static const char pattern[] = "plain,field\n"
                              "\"q \"\"x\"\" y\",\"a,b\"\r\n"
                              "\"multi\r\nline\",z\n"
                              "\n"
                              "last,\r\n"
                              "\"\",x\r"
                              "bad\"row,1\n";

static const struct exp pattern_rows[] = {
    {1, 0, "plain|field"},
    {1, 1, "q \"x\" y|a,b"},
    {1, 2, "multi\r\nline|z"},
    {1, 5, "last|"},
    {1, 6, "|x"},
    {-1, 7, "quote inside unquoted"},
};
#define PATTERN_LINES 8

/* test_buffer_edges - records straddling the internal buffer's edge, at every offset */
static void test_buffer_edges(void **state)
{
    struct buf in, why, text;
    struct csv_row row;

    (void)state;
    buf_init(&in, 1 << 19);
    buf_init(&why, 64);
    buf_init(&text, 64);
    for (size_t shift = 0; shift < sizeof(pattern); shift++) {
        struct csv_reader *r;
        size_t reps = 0;
        FILE *fp;

        buf_reset(&in);
        buf_puts(&in, "pad,");
        put_n(&in, 'p', shift);
        buf_puts(&in, "\n");
        while (buf_len(&in) < 300 * 1024) {
            buf_puts(&in, pattern);
            reps++;
        }
        fp = open_data(buf_str(&in), buf_len(&in));
        r = csv_open(fp);
        assert_int_equal(csv_read(r, &row, &why), 1);
        assert_int_equal(row.flen[1], shift);
        for (size_t k = 0; k < reps; k++) {
            for (size_t j = 0; j < sizeof(pattern_rows) / sizeof(pattern_rows[0]); j++) {
                const struct exp *e = &pattern_rows[j];
                size_t line = 2 + k * PATTERN_LINES + e->line;
                int rc = csv_read(r, &row, &why);

                if (rc != e->rc || row.line != line)
                    fail_msg("shift %zu, line %zu: got %d at line %zu (%s)", shift, line,
                             rc, row.line, buf_str(&why));
                if (rc == 1 && strcmp(joined(&row, &text), e->text) != 0)
                    fail_msg("shift %zu, line %zu: got '%s', expected '%s'", shift, line,
                             buf_str(&text), e->text);
                if (rc == -1 && strstr(buf_str(&why), e->text) == NULL)
                    fail_msg("shift %zu, line %zu: reason '%s'", shift, line,
                             buf_str(&why));
            }
        }
        assert_int_equal(csv_read(r, &row, &why), 0);
        assert_int_equal(csv_bytes(r), buf_len(&in));
        csv_close(r);
        fclose(fp);
    }
    buf_release(&in);
    buf_release(&why);
    buf_release(&text);
}

/* test_big_file - 200,000 generated rows of varied length, each checked */
static void test_big_file(void **state)
{
    enum { N = 200000 };
    struct buf why, want, text;
    struct csv_row row;
    struct csv_reader *r;
    unsigned long long last = 0;
    FILE *fp = tmpfile();

    (void)state;
    assert_non_null(fp);
    fputs("\xef\xbb\xbf"
          "email,reason,created\r\n",
          fp);
    for (int i = 0; i < N; i++) {
        if (i % 7 == 0)
            fprintf(fp, "user%d@domain%d.example,\"reason, with \"\"%d\"\"\",%d\r\n", i,
                    i % 997, i, 1700000000 + i);
        else
            fprintf(fp, "user%d@domain%d.example,%.*s,%d\r\n", i, i % 997, i % 50,
                    "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwx", 1700000000 + i);
    }
    rewind(fp);
    buf_init(&why, 64);
    buf_init(&want, 128);
    buf_init(&text, 128);
    r = csv_open(fp);
    assert_int_equal(csv_read(r, &row, &why), 1);
    assert_string_equal(joined(&row, &text), "email|reason|created");
    for (int i = 0; i < N; i++) {
        if (csv_read(r, &row, &why) != 1)
            fail_msg("row %d: %s", i, buf_str(&why));
        assert_int_equal(row.line, (size_t)i + 2);
        if (i % 7 == 0)
            buf_setf(&want, "user%d@domain%d.example|reason, with \"%d\"|%d", i, i % 997,
                     i, 1700000000 + i);
        else
            buf_setf(&want, "user%d@domain%d.example|%.*s|%d", i, i % 997, i % 50,
                     "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwx",
                     1700000000 + i);
        if (strcmp(joined(&row, &text), buf_str(&want)) != 0)
            fail_msg("row %d: got '%s', expected '%s'", i, buf_str(&text),
                     buf_str(&want));
        assert_true(csv_bytes(r) > last);
        last = csv_bytes(r);
    }
    assert_int_equal(csv_read(r, &row, &why), 0);
    assert_int_equal(csv_bytes(r), (unsigned long long)ftell(fp));
    csv_close(r);
    fclose(fp);
    buf_release(&why);
    buf_release(&want);
    buf_release(&text);
}

/* test_read_error - a stream that fails: -2, errno and why set, and it stays so */
static void test_read_error(void **state)
{
    struct buf why;
    struct csv_row row;
    struct csv_reader *r;
    FILE *fp = fopen("/", "r"); /* opens, but read(2) fails with EISDIR */

    (void)state;
    assert_non_null(fp);
    buf_init(&why, 64);
    r = csv_open(fp);
    errno = 0;
    assert_int_equal(csv_read(r, &row, &why), -2);
    assert_int_equal(errno, EISDIR);
    assert_non_null(strstr(buf_str(&why), "read error"));
    assert_int_equal(csv_read(r, &row, NULL), -2);
    csv_close(r);
    fclose(fp);
    buf_release(&why);
}

/* test_no_why - why is optional */
static void test_no_why(void **state)
{
    static const char data[] = "a\"b\nc\n";
    struct csv_row row;
    FILE *fp = open_data(data, sizeof(data) - 1);
    struct csv_reader *r = csv_open(fp);

    (void)state;
    assert_int_equal(csv_read(r, &row, NULL), -1);
    assert_int_equal(csv_read(r, &row, NULL), 1);
    assert_string_equal(row.field[0], "c");
    assert_int_equal(csv_read(r, &row, NULL), 0);
    csv_close(r);
    csv_close(NULL);
    fclose(fp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),        cmocka_unit_test(test_field_limit),
        cmocka_unit_test(test_record_limit), cmocka_unit_test(test_buffer_edges),
        cmocka_unit_test(test_big_file),     cmocka_unit_test(test_read_error),
        cmocka_unit_test(test_no_why),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
