/*
 * test_addrlist - addrlist.h: the addr-specs of address-list values as they
 * stand in messages (display names, comments, groups, routes, quoted local
 * parts, folding, obsolete white space, empty members); every refusal names
 * its problem and comes before any address; stopping early stops; nothing is
 * read past len.  Every value is handed over in an exact-size, unterminated
 * copy so that ASan catches an overread.  One table row per rule, then a
 * random walk over the characters that matter.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "addrlist.h"
#include "mymalloc.h"

struct pcase {
    const char *in;
    size_t len;         /* 0: strlen(in) */
    const char *out;    /* the addresses joined by '|', or NULL: refused */
    const char *reason; /* a substring of why, when refused */
};

static const struct pcase parse_cases[] = {
    /* plain lists */
    {"a@b.example", 0, "a@b.example", NULL},
    {"a@b.example, c@d.example", 0, "a@b.example|c@d.example", NULL},
    {"a@b.example,c@d.example", 0, "a@b.example|c@d.example", NULL},
    {"  a@b.example  ", 0, "a@b.example", NULL},

    /* display names */
    {"A <a@b.example>", 0, "a@b.example", NULL},
    {"John Q. Public <jqp@b.example>", 0, "jqp@b.example", NULL},
    {"\"Doe, John\" <j@x.example>, k@y.example", 0, "j@x.example|k@y.example", NULL},
    {"\"Say \\\"hi\\\", Bob\" <b@x.example>", 0, "b@x.example", NULL},
    {"\"<x@evil.example>\" <b@x.example>", 0, "b@x.example", NULL},
    {"=?UTF-8?B?w4lsb8Ovc2U=?= <u@x.example>", 0, "u@x.example", NULL},
    {"=?UTF-8?Q?Jos=C3=A9?= <u@x.example>, =?ISO-8859-1?Q?Andr=E9?= P <v@x.example>", 0,
     "u@x.example|v@x.example", NULL},
    {"Élodie Müller <em@x.example>", 0, "em@x.example", NULL},

    /* comments */
    {"j@x.example (John, Doe)", 0, "j@x.example", NULL},
    {"j@x.example (a (b, c) d), k@y.example", 0, "j@x.example|k@y.example", NULL},
    {"j@x.example (a \\( b), k@y.example", 0, "j@x.example|k@y.example", NULL},
    {"(a \\) b) j@x.example", 0, "j@x.example", NULL},
    {"(x)<j@x.example>(y),(z)k@y.example(w)", 0, "j@x.example|k@y.example", NULL},
    {"j(1)@(2)x.example", 0, "j@x.example", NULL},

    /* groups */
    {"friends: a@x.example, b@y.example;, c@z.example", 0,
     "a@x.example|b@y.example|c@z.example", NULL},
    {"undisclosed-recipients:;", 0, "", NULL},
    {"undisclosed-recipients: ;", 0, "", NULL},
    {"team: Ann <ann@x.example>, \"B, C\" (boss) <bc@y.example>;", 0,
     "ann@x.example|bc@y.example", NULL},
    {"a@x.example, list:;, b@y.example", 0, "a@x.example|b@y.example", NULL},
    {"\"The: Team\": a@x.example;", 0, "a@x.example", NULL},

    /* routes */
    {"<@relay.example:a@b.example>", 0, "a@b.example", NULL},
    {"Someone <@r1.example,@r2.example:a@b.example>", 0, "a@b.example", NULL},

    /* quoted local parts, kept as written */
    {"\"john doe\"@x.example", 0, "\"john doe\"@x.example", NULL},
    {"\"a@b\"@x.example", 0, "\"a@b\"@x.example", NULL},
    {"\"a\\\"b\"@x.example", 0, "\"a\\\"b\"@x.example", NULL},
    {"\"a,b\"@x.example, <\"c;d\"@y.example>", 0, "\"a,b\"@x.example|\"c;d\"@y.example",
     NULL},

    /* folding */
    {"Doe\r\n\t<j@x.example>,\n k@y.example", 0, "j@x.example|k@y.example", NULL},
    {"<j@x.\r\n example>", 0, "j@x.example", NULL},
    {"<\r\n j@x.example\r\n >", 0, "j@x.example", NULL},
    {"\"John\r\n Doe\" <j@x.example>", 0, "j@x.example", NULL},
    {"\"john\r\n doe\"@x.example", 0, "\"john doe\"@x.example", NULL},
    {"a@x.example,\r\n\tb@y.example\r\n", 0, "a@x.example|b@y.example", NULL},
    {"John\n Doe\n <j@x.example>", 0, "j@x.example", NULL},

    /* obsolete white space around '@' and '.' */
    {"a . b @ x . example", 0, "a.b@x.example", NULL},
    {"a(c).b@x.example", 0, "a.b@x.example", NULL},
    {"j @ x.example (J)", 0, "j@x.example", NULL},
    {"< a . b @ x . example >", 0, "a.b@x.example", NULL},

    /* empty members */
    {"a@x.example,,b@y.example", 0, "a@x.example|b@y.example", NULL},
    {"a@x.example, b@y.example,", 0, "a@x.example|b@y.example", NULL},
    {", ,a@x.example, ,", 0, "a@x.example", NULL},
    {"", 0, "", NULL},
    {" \r\n\t", 0, "", NULL},
    {"(only a comment)", 0, "", NULL},
    {"Nobody <>", 0, "", NULL},
    {"a@x.example; b@y.example", 0, "a@x.example|b@y.example", NULL},

    /* a bare local part: the caller decides */
    {"root", 0, "root", NULL},
    {"root, Admin <admin>", 0, "root|admin", NULL},

    /* bytes the caller judges: UTF-8 domains, literals, escapes */
    {"user@bücher.example", 0, "user@bücher.example", NULL},
    {"Ü <üser@例え.テスト>", 0, "üser@例え.テスト", NULL},
    {"a@[192.0.2.1]", 0, "a@[192.0.2.1]", NULL},
    {"a\\,b@x.example", 0, "a\\,b@x.example", NULL},

    /* not guessed: two words stay one member, with one space */
    {"a@x.example b@y.example", 0, "a@x.example b@y.example", NULL},
    {"John Smith", 0, "John Smith", NULL},
    {"<a b@x.example>", 0, "a b@x.example", NULL},

    /* after an angle address, up to the separator, is display text */
    {"<a@x.example> trailing words, b@y.example", 0, "a@x.example|b@y.example", NULL},
    {"<a@x.example> <b@y.example>", 0, "a@x.example|b@y.example", NULL},
    {"<<a@x.example>>", 0, "a@x.example", NULL},

    /* refused */
    {"\"Doe <j@x.example>", 0, NULL,
     "unbalanced '\"' in address list: the quoted string opened at byte 1 is not closed"},
    {"\"a\\\"@x.example", 0, NULL, "unbalanced '\"'"},
    {"a@x.example, \"b", 0, NULL, "byte 14"},
    {"A <a@b.example", 0, NULL,
     "unbalanced '<' in address list: the angle address opened at byte 3"},
    {"<<a@b.example>", 0, NULL, "unbalanced '<'"},
    {"a@b.example>", 0, NULL, "unbalanced '>' in address list: the '>' at byte 12"},
    {"<a@b.example>>", 0, NULL, "unbalanced '>'"},
    {"j@x.example (John", 0, NULL,
     "unbalanced '(' in address list: the comment opened at byte 13"},
    {"j@x.example (a (b) c", 0, NULL, "unbalanced '('"},
    {"j@x.example (a \\)", 0, NULL, "unbalanced '('"},
    {"j@x.example)", 0, NULL, "unbalanced ')'"},
    {"a@[192.0.2.1", 0, NULL, "unbalanced '[' in address list: the domain literal"},
    {"a@192.0.2.1]", 0, NULL, "unbalanced ']'"},
    {"a@x.example\0b@y.example", 23, NULL, "NUL byte in address list at byte 12"},
    {"\"a\0b\"@x.example", 15, NULL, "NUL byte"},
    {"(a\0b) a@x.example", 17, NULL, "NUL byte"},
};

/* collect - join the addresses with '|'; each must be a clean C string */
static int collect(const char *addr, void *ctx)
{
    struct buf *all = ctx;

    assert_non_null(addr);
    assert_true(strlen(addr) > 0);
    assert_null(strchr(addr, '\r'));
    assert_null(strchr(addr, '\n'));
    if (buf_len(all) > 0)
        buf_putc(all, '|');
    buf_puts(all, addr);
    return 0;
}

/* exact_copy - the value in a buffer of exactly len bytes, with no NUL after it */
static char *exact_copy(const char *in, size_t len)
{
    char *copy = mymalloc(len);

    if (len > 0)
        memcpy(copy, in, len);
    return copy;
}

/* count_of - how many addresses a joined expectation holds */
static int count_of(const char *joined)
{
    int n = *joined ? 1 : 0;

    for (; *joined; joined++)
        n += *joined == '|';
    return n;
}

/* test_parse - every row of parse_cases */
static void test_parse(void **state)
{
    struct buf all, why;

    (void)state;
    buf_init(&all, 64);
    buf_init(&why, 64);
    for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        const struct pcase *c = &parse_cases[i];
        size_t len = c->len ? c->len : strlen(c->in);
        char *value = exact_copy(c->in, len);
        int rc;

        buf_reset(&all);
        buf_reset(&why);
        rc = addrlist_parse(value, len, collect, &all, &why);
        if (c->out) {
            if (rc < 0)
                fail_msg("row %zu '%s': refused (%s), expected '%s'", i, c->in,
                         buf_str(&why), c->out);
            if (strcmp(buf_str(&all), c->out) != 0)
                fail_msg("row %zu '%s': got '%s', expected '%s'", i, c->in, buf_str(&all),
                         c->out);
            assert_int_equal(rc, count_of(c->out));
        } else {
            if (rc != -1)
                fail_msg("row %zu '%s': accepted as '%s', expected refusal", i, c->in,
                         buf_str(&all));
            if (strstr(buf_str(&why), c->reason) == NULL)
                fail_msg("row %zu '%s': reason '%s' lacks '%s'", i, c->in, buf_str(&why),
                         c->reason);
            assert_null(strchr(buf_str(&why), '\n'));
            /* A refusal comes before any address. */
            assert_int_equal(buf_len(&all), 0);
        }
        myfree(value);
    }
    buf_release(&all);
    buf_release(&why);
}

/* test_parse_no_why_no_fn - why is optional; fn may be NULL to count */
static void test_parse_no_why_no_fn(void **state)
{
    (void)state;
    assert_int_equal(addrlist_parse("\"a", 2, NULL, NULL, NULL), -1);
    assert_int_equal(addrlist_parse("a@x, B <b@y>, g: c@z;", 21, NULL, NULL, NULL), 3);
    assert_int_equal(addrlist_parse(NULL, 0, NULL, NULL, NULL), 0);
}

/* test_parse_len_counts - bytes past len are not part of the value */
static void test_parse_len_counts(void **state)
{
    struct buf all;

    (void)state;
    buf_init(&all, 64);
    assert_int_equal(addrlist_parse("a@x.example, b@y.example", 11, collect, &all, NULL),
                     1);
    assert_string_equal(buf_str(&all), "a@x.example");
    buf_reset(&all);
    /* The closing quote and bracket lie past len. */
    assert_int_equal(addrlist_parse("\"a\"@x", 2, collect, &all, NULL), -1);
    assert_int_equal(addrlist_parse("<a@x>", 4, collect, &all, NULL), -1);
    assert_int_equal(buf_len(&all), 0);
    buf_release(&all);
}

struct stopper {
    int calls;
    int stop_at;
};

/* stop_after - ask to stop at the stop_at'th address */
static int stop_after(const char *addr, void *ctx)
{
    struct stopper *s = ctx;

    (void)addr;
    return ++s->calls >= s->stop_at;
}

/* test_stop - a non-zero return from fn stops the walk, whatever comes next */
static void test_stop(void **state)
{
    static const char *const values[] = {
        "a@x.example, b@y.example, c@z.example, d@w.example",
        "A <a@x.example>, B <b@y.example>, C <c@z.example>, D <d@w.example>",
        "g: a@x.example, b@y.example; <c@z.example> <d@w.example>",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        size_t len = strlen(values[i]);
        char *value = exact_copy(values[i], len);

        for (int at = 1; at <= 4; at++) {
            struct stopper s = {0, at};

            assert_int_equal(addrlist_parse(value, len, stop_after, &s, NULL), at);
            assert_int_equal(s.calls, at);
        }
        myfree(value);
    }
}

/* test_too_long - ADDRLIST_MAX bytes are taken, one more is refused */
static void test_too_long(void **state)
{
    static const char unit[] = "a@b.example,"; /* 12 bytes */
    struct buf in, why;
    int n = ADDRLIST_MAX / 12;

    (void)state;
    buf_init(&in, ADDRLIST_MAX + 1);
    buf_init(&why, 64);
    for (int i = 0; i < n; i++)
        buf_append(&in, unit, 12);
    while (buf_len(&in) < ADDRLIST_MAX)
        buf_putc(&in, ' ');
    assert_int_equal(addrlist_parse(buf_str(&in), buf_len(&in), NULL, NULL, &why), n);
    buf_putc(&in, ' ');
    assert_int_equal(addrlist_parse(buf_str(&in), buf_len(&in), NULL, NULL, &why), -1);
    assert_string_equal(buf_str(&why), "address list longer than 1048576 bytes");
    buf_release(&in);
    buf_release(&why);
}

struct fcase {
    const char *in;
    const char *out;    /* the first address, or NULL: refused */
    const char *reason; /* a substring of why, when refused */
};

static const struct fcase first_cases[] = {
    {"Doe <j@x.example>, k@y.example", "j@x.example", NULL},
    {"j@x.example (Doe)", "j@x.example", NULL},
    {"undisclosed-recipients:;, \"Q\" <q@x.example>", "q@x.example", NULL},
    {"\"john doe\"@x.example", "\"john doe\"@x.example", NULL},
    {"undisclosed-recipients:;", NULL, "no address in 'undisclosed-recipients:;'"},
    {"", NULL, "no address in ''"},
    {"Nobody <>", NULL, "no address in 'Nobody <>'"},
    {"Doe\r\n <>", NULL, "no address in 'Doe\\x0d\\x0a <>'"},
    {"(a very long comment that goes on and on and on and on and on and on and on)", NULL,
     "no address in '(a very long comment that goes on and on and on and on and o...'"},
    {"a@x.example, \"b", NULL, "unbalanced '\"'"},
};

/* test_first - the first address, or why there is none; out empty on failure */
static void test_first(void **state)
{
    struct buf out, why;

    (void)state;
    buf_init(&out, 16);
    buf_init(&why, 16);
    for (size_t i = 0; i < sizeof(first_cases) / sizeof(first_cases[0]); i++) {
        const struct fcase *c = &first_cases[i];
        size_t len = strlen(c->in);
        char *value = exact_copy(c->in, len);
        int rc;

        buf_set(&out, "stale");
        buf_reset(&why);
        rc = addrlist_first(value, len, &out, &why);
        if (c->out) {
            if (rc != 0)
                fail_msg("'%s': refused (%s), expected '%s'", c->in, buf_str(&why),
                         c->out);
            assert_string_equal(buf_str(&out), c->out);
        } else {
            if (rc != -1)
                fail_msg("'%s': gave '%s', expected refusal", c->in, buf_str(&out));
            if (strstr(buf_str(&why), c->reason) == NULL)
                fail_msg("'%s': reason '%s' lacks '%s'", c->in, buf_str(&why), c->reason);
            assert_int_equal(buf_len(&out), 0);
        }
        myfree(value);
    }
    assert_int_equal(addrlist_first("x", 0, &out, NULL), -1);
    buf_release(&out);
    buf_release(&why);
}

/* next_random - xorshift32: the same strings on every run */
static uint32_t next_random(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

struct fuzz {
    int calls;
    size_t len;
    struct buf *firstbuf;
};

/* fuzz_fn - every address is a non-empty, one-line string no longer than the value */
static int fuzz_fn(const char *addr, void *ctx)
{
    struct fuzz *f = ctx;
    size_t n = strlen(addr);

    assert_true(n > 0 && n <= f->len);
    assert_null(strchr(addr, '\r'));
    assert_null(strchr(addr, '\n'));
    if (f->calls++ == 0)
        buf_set(f->firstbuf, addr);
    return 0;
}

/* test_fuzz - random values over the characters that matter: no crash, no overread */
static void test_fuzz(void **state)
{
    static const char alphabet[] = "a@.,;:<>\"()\\ \t\r\nx";
    uint32_t seed = 0x5e1d6a4d;
    struct buf in, why, first, out;

    (void)state;
    buf_init(&in, 64);
    buf_init(&why, 64);
    buf_init(&first, 64);
    buf_init(&out, 64);
    for (int i = 0; i < 20000; i++) {
        size_t len = next_random(&seed) % 65;
        struct fuzz f = {0, len, &first};
        char *value;
        int rc;

        buf_reset(&in);
        for (size_t j = 0; j < len; j++)
            buf_putc(&in, alphabet[next_random(&seed) % (sizeof(alphabet) - 1)]);
        value = exact_copy(buf_str(&in), len);
        buf_reset(&why);
        rc = addrlist_parse(value, len, fuzz_fn, &f, &why);
        if (rc < 0) {
            assert_int_equal(f.calls, 0);
            assert_true(buf_len(&why) > 0);
            assert_null(strchr(buf_str(&why), '\n'));
            assert_int_equal(addrlist_first(value, len, &out, NULL), -1);
        } else {
            assert_int_equal(rc, f.calls);
            if (rc > 0) {
                assert_int_equal(addrlist_first(value, len, &out, &why), 0);
                assert_string_equal(buf_str(&out), buf_str(&first));
            } else {
                assert_int_equal(addrlist_first(value, len, &out, &why), -1);
                assert_non_null(strstr(buf_str(&why), "no address in"));
            }
        }
        myfree(value);
    }
    buf_release(&in);
    buf_release(&why);
    buf_release(&first);
    buf_release(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_no_why_no_fn),
        cmocka_unit_test(test_parse_len_counts),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_first),
        cmocka_unit_test(test_fuzz),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
