/*
 * test_address - address.h: what is an address and what its normalised
 * form, comparison key and digests are; what a suppression entry is; every
 * refusal says why.  One table per function, one row per rule.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "address.h"

struct ncase {
    const char *in;
    const char *out;    /* the normalised form, or NULL: refused */
    const char *reason; /* a substring of why, when refused */
};

static const struct ncase norm_cases[] = {
    /* accepted */
    {"a@b.com", "a@b.com", NULL},
    {"<a@B.COM>", "a@b.com", NULL},
    {"a@b.com ", "a@b.com", NULL},
    {" \t<a@b.com>\r\n", "a@b.com", NULL},
    {"< a@b.com >", "a@b.com", NULL},
    {"John.Smith@Example.COM", "John.Smith@example.com", NULL},
    {"\"john doe\"@Example.COM", "\"john doe\"@example.com", NULL},
    {"\"a@b\"@example.com", "\"a@b\"@example.com", NULL},
    {"\"a\\\"b\"@example.com", "\"a\\\"b\"@example.com", NULL},
    {"\"a..b\"@example.com", "\"a..b\"@example.com", NULL},
    {"Üser@Bücher.example", "Üser@xn--bcher-kva.example", NULL},
    {"user@BÜCHER.EXAMPLE", "user@xn--bcher-kva.example", NULL},
    {"user@faß.de", "user@xn--fa-hia.de", NULL},
    {"user@例え.テスト", "user@xn--r8jz45g.xn--zckzah", NULL},
    {"user@xn--bcher-kva.example", "user@xn--bcher-kva.example", NULL},
    {"user@XN--BCHER-KVA.example", "user@xn--bcher-kva.example", NULL},
    {"user@☃.net", "user@xn--n3h.net", NULL}, /* only UTS #46 transitional takes it */
    {"!#$%&'*+-/=?^_`{|}~@example.com", "!#$%&'*+-/=?^_`{|}~@example.com", NULL},
    {"a.b.c@d-e.f-g.example", "a.b.c@d-e.f-g.example", NULL},
    {"a@b.com.", "a@b.com", NULL},
    {"a@123.example", "a@123.example", NULL},
    {"a@[192.0.2.1]", "a@[192.0.2.1]", NULL},
    {"user+tag@sub.example.co.uk", "user+tag@sub.example.co.uk", NULL},
    {"1234567890123456789012345678901234567890123456789012345678901234@example.com",
     "1234567890123456789012345678901234567890123456789012345678901234@example.com",
     NULL},

    /* refused: the shape */
    {"", NULL, "empty address"},
    {"   ", NULL, "empty address"},
    {"<>", NULL, "empty address"},
    {"<a@b.com", NULL, "unmatched '<'"},
    {"John <a@b.com>", NULL, "unmatched '>'"},
    {"foo", NULL, "missing @"},
    {"\"a@b\"", NULL, "missing @"},
    {"a@", NULL, "missing domain"},
    {"@b.com", NULL, "empty local part"},
    {"\"\"@b.com", NULL, "empty local part"},
    {"a@@b.com", NULL, "more than one @"},
    {"a@b@c.com", NULL, "more than one @"},

    /* refused: the local part */
    {"a..b@c.com", NULL, "two dots in a row"},
    {".a@c.com", NULL, "starts with a dot"},
    {"a.@c.com", NULL, "ends with a dot"},
    {"a b@c.com", NULL, "white space"},
    {"a,b@c.com", NULL, "local part contains ','"},
    {"a(b)@c.com", NULL, "local part contains '('"},
    {"a\"b\"@c.com", NULL, "quote that does not enclose"},
    {"\"ab@c.com", NULL, "no closing quote"},
    {"\"a\"b@c.com", NULL, "text after the closing quote"},
    {"\"a\tb\"@c.com", NULL, "control character"},
    {"\xff\xfe@c.com", NULL, "local part is not valid UTF-8"},
    {"12345678901234567890123456789012345678901234567890123456789012345@example.com",
     NULL, "local part longer than 64 bytes"},

    /* refused: the domain */
    {"a@b..com", NULL, "domain 'b..com' has an empty label"},
    {"a@.b.com", NULL, "has an empty label"},
    {"a@b.com..", NULL, "has an empty label"},
    {"a@-b.com", NULL, "domain '-b.com' has a label that starts with a hyphen"},
    {"a@b-.com", NULL, "ends with a hyphen"},
    {"a@b_c.com", NULL, "contains '_'"},
    {"a@b c.com", NULL, "contains \\x20"},
    {"a@localhost", NULL, "domain 'localhost' has only one label"},
    {"a@192.0.2.1", NULL, "numeric label"},
    {"a@b.\xff", NULL, "not valid UTF-8 / IDNA"},
    {"a@-bü.com", NULL, "not valid UTF-8 / IDNA"},
    {"a@bü..com", NULL, "domain 'bü..com' has an empty label"},
    {"a@bü_x.com", NULL, "contains '_'"},
    {"a@b\xc3.com", NULL, "domain 'b\\xc3.com' is not valid UTF-8 / IDNA"},
    {"a@[192.0.2.256]", NULL, "not an IPv4 address"},
    {"a@[192.0.2.01]", NULL, "not an IPv4 address"},
    {"a@[192.0.2.1", NULL, "not an IPv4 address"},
    {"a@[IPv6:2001:db8::1]", NULL, "IPv6 domain literals are not supported"},
    {"a@"
     "a123456789012345678901234567890123456789012345678901234567890123.com",
     NULL, "label longer than 63 bytes"},
};

/* test_normalize - every row of norm_cases */
static void test_normalize(void **state)
{
    struct buf out, why;

    (void)state;
    buf_init(&out, 16);
    buf_init(&why, 16);
    for (size_t i = 0; i < sizeof(norm_cases) / sizeof(norm_cases[0]); i++) {
        const struct ncase *c = &norm_cases[i];
        int rc;

        buf_set(&out, "stale");
        buf_reset(&why);
        rc = address_normalize(c->in, &out, &why);
        if (c->out) {
            if (rc != 0)
                fail_msg("'%s': refused (%s), expected '%s'", c->in, buf_str(&why),
                         c->out);
            if (strcmp(buf_str(&out), c->out) != 0)
                fail_msg("'%s': got '%s', expected '%s'", c->in, buf_str(&out), c->out);
            assert_int_equal(buf_len(&out), strlen(c->out));
        } else {
            if (rc != -1)
                fail_msg("'%s': accepted as '%s', expected refusal", c->in,
                         buf_str(&out));
            if (strstr(buf_str(&why), c->reason) == NULL)
                fail_msg("'%s': reason '%s' lacks '%s'", c->in, buf_str(&why), c->reason);
            assert_int_equal(buf_len(&out), 0);
        }
    }
    buf_release(&out);
    buf_release(&why);
}

/* test_normalize_lengths - the 64, 253 and 320 byte limits, at and over */
static void test_normalize_lengths(void **state)
{
    struct buf in, out, why;

    (void)state;
    buf_init(&in, 512);
    buf_init(&out, 16);
    buf_init(&why, 16);

    /* A 253-byte domain: 63+1+63+1+63+1+57+1+3 */
    buf_reset(&in);
    buf_puts(&in, "a@");
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 63; j++)
            buf_putc(&in, 'd');
        buf_putc(&in, '.');
    }
    for (int j = 0; j < 57; j++)
        buf_putc(&in, 'e');
    buf_puts(&in, ".com");
    assert_int_equal(buf_len(&in) - 2, 253);
    assert_int_equal(address_normalize(buf_str(&in), &out, &why), 0);
    buf_truncate(&in, buf_len(&in) - 4);
    buf_puts(&in, "e.com"); /* 254 */
    assert_int_equal(address_normalize(buf_str(&in), &out, &why), -1);
    assert_non_null(strstr(buf_str(&why), "longer than 253 bytes"));

    /* Longer than 320 in all. */
    buf_reset(&in);
    for (int j = 0; j < 64; j++)
        buf_putc(&in, 'l');
    buf_putc(&in, '@');
    for (int j = 0; j < 300; j++)
        buf_putc(&in, j % 10 == 9 ? '.' : 'd');
    buf_puts(&in, "com");
    assert_int_equal(address_normalize(buf_str(&in), &out, &why), -1);
    assert_non_null(strstr(buf_str(&why), "address longer than 320 bytes"));

    /* A very long input is refused, not copied anywhere. */
    buf_reset(&in);
    for (int j = 0; j < 100000; j++)
        buf_putc(&in, 'x');
    assert_int_equal(address_normalize(buf_str(&in), &out, &why), -1);
    assert_non_null(strstr(buf_str(&why), "longer than 320"));

    buf_release(&in);
    buf_release(&out);
    buf_release(&why);
}

/* test_normalize_no_why - why is optional */
static void test_normalize_no_why(void **state)
{
    struct buf out;

    (void)state;
    buf_init(&out, 16);
    assert_int_equal(address_normalize("a@b..com", &out, NULL), -1);
    assert_int_equal(address_normalize("A@B.com", &out, NULL), 0);
    assert_string_equal(buf_str(&out), "A@b.com");
    buf_release(&out);
}

/* test_normalize_in_place - the input may be the output's own text */
static void test_normalize_in_place(void **state)
{
    struct buf b, key, why;
    enum address_kind kind;

    (void)state;
    buf_init(&b, 4);
    buf_init(&why, 16);
    buf_set(&b, "  <Someone@Bücher.EXAMPLE>  ");
    assert_int_equal(address_normalize(buf_str(&b), &b, &why), 0);
    assert_string_equal(buf_str(&b), "Someone@xn--bcher-kva.example");
    address_key(buf_str(&b), &b);
    assert_string_equal(buf_str(&b), "someone@xn--bcher-kva.example");

    /* A tail of the key's own text. */
    buf_set(&b, "xxxxAB@example.com");
    address_key(buf_str(&b) + 4, &b);
    assert_string_equal(buf_str(&b), "ab@example.com");

    /* Entries, too. */
    buf_init(&key, 16);
    buf_set(&b, " @Bücher.EXAMPLE ");
    assert_int_equal(address_parse_entry(buf_str(&b), &kind, &b, &key, &why), 0);
    assert_int_equal(kind, ADDRESS_DOMAIN);
    assert_string_equal(buf_str(&b), "@xn--bcher-kva.example");
    buf_set(&b, "357A20E8C56E69D6F9734D23EF9517E8");
    assert_int_equal(address_parse_entry(buf_str(&b), &kind, &b, &key, &why), 0);
    assert_string_equal(buf_str(&b), "357a20e8c56e69d6f9734d23ef9517e8");
    buf_set(&b, "<A@B.com>");
    assert_int_equal(address_parse_entry(buf_str(&b), &kind, &b, &key, &why), 0);
    assert_string_equal(buf_str(&b), "A@b.com");
    assert_string_equal(buf_str(&key), "a@b.com");
    buf_release(&key);
    buf_release(&b);
    buf_release(&why);
}

struct kcase {
    const char *normalized;
    const char *key;
    const char *domain;
};

static const struct kcase key_cases[] = {
    {"a@b.com", "a@b.com", "b.com"},
    {"John.Smith@example.com", "john.smith@example.com", "example.com"},
    {"\"John Doe\"@example.com", "\"john doe\"@example.com", "example.com"},
    {"\"A@B\"@example.com", "\"a@b\"@example.com", "example.com"},
    {"Üser@xn--bcher-kva.example", "Üser@xn--bcher-kva.example", "xn--bcher-kva.example"},
    {"ÀBC@example.com", "Àbc@example.com", "example.com"},
    {"X@[192.0.2.1]", "x@[192.0.2.1]", "[192.0.2.1]"},
};

/* test_key_and_domain - the key folds ASCII letters only; the domain follows the last @
 */
static void test_key_and_domain(void **state)
{
    struct buf key;

    (void)state;
    buf_init(&key, 4);
    for (size_t i = 0; i < sizeof(key_cases) / sizeof(key_cases[0]); i++) {
        const struct kcase *c = &key_cases[i];

        address_key(c->normalized, &key);
        assert_string_equal(buf_str(&key), c->key);
        assert_int_equal(buf_len(&key), strlen(c->key));
        assert_string_equal(address_domain(c->normalized), c->domain);
        assert_string_equal(address_domain(buf_str(&key)), c->domain);
        assert_int_equal(address_domain(buf_str(&key))[-1], '@');
    }
    assert_string_equal(address_domain("no-at-sign"), "");
    buf_release(&key);
}

/* test_key_matches_case_variants - spellings that differ only in case share a key */
static void test_key_matches_case_variants(void **state)
{
    static const char *const variants[] = {"Exact@Example.com", "exact@EXAMPLE.COM",
                                           "<EXACT@example.com>", " eXaCt@example.com. "};
    struct buf norm, key, why;

    (void)state;
    buf_init(&norm, 16);
    buf_init(&key, 16);
    buf_init(&why, 16);
    for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
        assert_int_equal(address_normalize(variants[i], &norm, &why), 0);
        address_key(buf_str(&norm), &key);
        assert_string_equal(buf_str(&key), "exact@example.com");
    }
    buf_release(&norm);
    buf_release(&key);
    buf_release(&why);
}

struct ecase {
    const char *in;
    int rc;
    enum address_kind kind;
    const char *display; /* or, when rc is -1, a substring of why */
    const char *key;
};

#define MD5_AB "357a20e8c56e69d6f9734d23ef9517e8"
#define SHA_AB "fb98d44ad7501a959f3f4f4a3f004fe2d9e581ea6207e218c4b02c08a4d75adf"

static const struct ecase entry_cases[] = {
    {"User@Example.COM", 0, ADDRESS_EXACT, "User@example.com", "user@example.com"},
    {"  <User@Bücher.example>\t", 0, ADDRESS_EXACT, "User@xn--bcher-kva.example",
     "user@xn--bcher-kva.example"},
    {"@Example.COM", 0, ADDRESS_DOMAIN, "@example.com", "@example.com"},
    {" @Bücher.example ", 0, ADDRESS_DOMAIN, "@xn--bcher-kva.example",
     "@xn--bcher-kva.example"},
    {"@[192.0.2.1]", 0, ADDRESS_DOMAIN, "@[192.0.2.1]", "@[192.0.2.1]"},
    {MD5_AB, 0, ADDRESS_MD5, MD5_AB, MD5_AB},
    {"357A20E8C56E69D6F9734D23EF9517E8", 0, ADDRESS_MD5, MD5_AB, MD5_AB},
    {" " SHA_AB "\n", 0, ADDRESS_SHA256, SHA_AB, SHA_AB},
    {"FB98D44AD7501A959F3F4F4A3F004FE2D9E581EA6207E218C4B02C08A4D75ADF", 0,
     ADDRESS_SHA256, SHA_AB, SHA_AB},
    {"", -1, 0, "empty address", NULL},
    {"@", -1, 0, "missing domain", NULL},
    {"@b..com", -1, 0, "empty label", NULL},
    {"@localhost", -1, 0, "only one label", NULL},
    {"@a@b.com", -1, 0, "more than one @", NULL},
    {"357a20e8c56e69d6f9734d23ef9517e", -1, 0, "31 hex digits", NULL},
    {"357a20e8c56e69d6f9734d23ef9517e8a", -1, 0, "33 hex digits", NULL},
    {"357a20e8c56e69d6f9734d23ef9517eg", -1, 0, "missing @", NULL},
    {"foo", -1, 0, "missing @", NULL},
    {"a..b@c.com", -1, 0, "two dots", NULL},
};

/* test_parse_entry - the four kinds, their display and key forms, and refusals */
static void test_parse_entry(void **state)
{
    struct buf display, key, why;

    (void)state;
    buf_init(&display, 16);
    buf_init(&key, 16);
    buf_init(&why, 16);
    for (size_t i = 0; i < sizeof(entry_cases) / sizeof(entry_cases[0]); i++) {
        const struct ecase *c = &entry_cases[i];
        enum address_kind kind = ADDRESS_EXACT;
        int rc;

        buf_reset(&why);
        rc = address_parse_entry(c->in, &kind, &display, &key, &why);
        if (rc != c->rc)
            fail_msg("'%s': returned %d (%s), expected %d", c->in, rc, buf_str(&why),
                     c->rc);
        if (rc == 0) {
            if (kind != c->kind)
                fail_msg("'%s': kind %s, expected %s", c->in, address_kind_name(kind),
                         address_kind_name(c->kind));
            assert_string_equal(buf_str(&display), c->display);
            assert_string_equal(buf_str(&key), c->key);
        } else {
            if (strstr(buf_str(&why), c->display) == NULL)
                fail_msg("'%s': reason '%s' lacks '%s'", c->in, buf_str(&why),
                         c->display);
            assert_int_equal(buf_len(&display), 0);
            assert_int_equal(buf_len(&key), 0);
        }
    }
    buf_release(&display);
    buf_release(&key);
    buf_release(&why);
}

struct dcase {
    const char *key;
    const char *md5;
    const char *sha256;
};

/* Computed with: printf %s KEY | md5sum; printf %s KEY | sha256sum */
static const struct dcase digest_cases[] = {
    {"a@b.com", MD5_AB, SHA_AB},
    {"", "d41d8cd98f00b204e9800998ecf8427e",
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"user@example.com", "b58996c504c5638798eb6b511e6f49af",
     "b4c9a289323b21a01c3e940f150eb9b8c542587f1abfd8f0e1cc1ffc5e475514"},
    {"üser@xn--bcher-kva.example", "f063e1ab0df4876ddfab4dd2b9857f64", NULL},
};

/* test_digests - known vectors, lower-case hex, NUL-terminated */
static void test_digests(void **state)
{
    char md5[33], sha[65];

    (void)state;
    for (size_t i = 0; i < sizeof(digest_cases) / sizeof(digest_cases[0]); i++) {
        const struct dcase *c = &digest_cases[i];

        memset(md5, 'x', sizeof(md5));
        memset(sha, 'x', sizeof(sha));
        address_digests(c->key, strlen(c->key), md5, sha);
        assert_string_equal(md5, c->md5);
        if (c->sha256)
            assert_string_equal(sha, c->sha256);
        assert_int_equal(strlen(sha), 64);
    }
    /* The length is what counts, not a NUL. */
    address_digests("a@b.comXYZ", 7, md5, sha);
    assert_string_equal(md5, MD5_AB);
    assert_string_equal(sha, SHA_AB);
}

/* test_digest_of_entry - an MD5 entry made from an address matches its lookup */
static void test_digest_of_entry(void **state)
{
    struct buf norm, key, display, why;
    enum address_kind kind;
    char md5[33], sha[65];

    (void)state;
    buf_init(&norm, 16);
    buf_init(&key, 16);
    buf_init(&display, 16);
    buf_init(&why, 16);
    assert_int_equal(address_normalize("<A@B.COM>", &norm, &why), 0);
    address_key(buf_str(&norm), &key);
    address_digests(buf_str(&key), buf_len(&key), md5, sha);
    assert_string_equal(md5, MD5_AB);
    assert_int_equal(address_parse_entry(sha, &kind, &display, &key, &why), 0);
    assert_int_equal(kind, ADDRESS_SHA256);
    assert_string_equal(buf_str(&key), SHA_AB);
    buf_release(&norm);
    buf_release(&key);
    buf_release(&display);
    buf_release(&why);
}

/* test_kind_names - the names listings and JSON use */
static void test_kind_names(void **state)
{
    (void)state;
    assert_string_equal(address_kind_name(ADDRESS_EXACT), "exact");
    assert_string_equal(address_kind_name(ADDRESS_DOMAIN), "domain");
    assert_string_equal(address_kind_name(ADDRESS_MD5), "md5");
    assert_string_equal(address_kind_name(ADDRESS_SHA256), "sha256");
    assert_string_equal(address_kind_name((enum address_kind)42), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_normalize_lengths),
        cmocka_unit_test(test_normalize_no_why),
        cmocka_unit_test(test_normalize_in_place),
        cmocka_unit_test(test_key_and_domain),
        cmocka_unit_test(test_key_matches_case_variants),
        cmocka_unit_test(test_parse_entry),
        cmocka_unit_test(test_digests),
        cmocka_unit_test(test_digest_of_entry),
        cmocka_unit_test(test_kind_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
