/*
 * test_dkim - the signer against outside facts: RFC 8463 Appendix A
 * reproduced byte for byte, the empty-body hashes of RFC 6376, chunking
 * that changes nothing, h= as the RFC defines it, malformed input refused
 * with a reason, TXT records split for DNS, and the keyring: parent and
 * default domains, rotation on disk, refused key files.  (Independent verification
 * by python3-dkim is tests/integration/dkim_corpus.sh.)
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dkim.h"
#include "dkim_keys.h"
#include "store.h"

/* RFC 8463 A.2: the Ed25519 seed nWGxne/9..., as PKCS#8 PEM */
static const char rfc_ed25519_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
    "-----END PRIVATE KEY-----\n";

/* RFC 8463 A.3: the message, and the ed25519 signature's field */
static const char rfc_message[] =
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    "\r\n"
    "Hi.\r\n"
    "\r\n"
    "We lost the game.  Are you hungry yet?\r\n"
    "\r\n"
    "Joe.\r\n";
static const char rfc_field_unsigned[] =
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    " subject : date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=";
static const char rfc_b[] = "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus"
                            "Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==";
static const char rfc_public[] = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

static struct dkim_key *rfc_key(void)
{
    struct buf why;
    struct dkim_key *key;

    buf_init(&why, 64);
    key = dkim_key_from_pem(rfc_ed25519_pem, sizeof(rfc_ed25519_pem) - 1,
                            "football.example.com", "brisbane", &why);
    if (key == NULL)
        fail_msg("key: %s", buf_str(&why));
    buf_release(&why);
    return key;
}

/* feed - header fields one by one, then the body in chunks of "chunk" bytes */
static struct dkim_sign *feed(struct dkim_key *key, const struct dkim_params *p,
                              const char *msg, size_t chunk, struct buf *why)
{
    struct dkim_sign *ds = dkim_sign_new(key, p);
    const char *q = msg, *body = strstr(msg, "\r\n\r\n");
    const char *hend;

    if (body == NULL)
        body = strstr(msg, "\n\n");
    hend = body ? body + (body[0] == '\r' ? 2 : 1) : msg + strlen(msg);
    while (q < hend) {
        const char *n = q;

        do {
            n = strchr(n, '\n');
            n = n ? n + 1 : hend;
        } while (n < hend && (*n == ' ' || *n == '\t'));
        if (dkim_sign_header(ds, q, (size_t)(n - q), why) < 0)
            return ds;
        q = n;
    }
    if (body) {
        const char *b = body + (body[0] == '\r' ? 4 : 2);
        size_t len = strlen(b);

        for (size_t off = 0; off < len; off += chunk)
            dkim_sign_body(ds, b + off, len - off < chunk ? len - off : chunk);
    }
    return ds;
}

/* b_value - the b= of a field, white space removed */
static void b_value(const char *field, struct buf *out)
{
    const char *b = strstr(field, " b=");

    if (b == NULL)
        b = strstr(field, "\tb=");
    assert_non_null(b);
    buf_reset(out);
    for (b += 3; *b; b++)
        if (*b != ' ' && *b != '\t' && *b != '\r' && *b != '\n')
            buf_putc(out, *b);
}

static void test_rfc8463(void **state)
{
    struct dkim_key *key = rfc_key();
    struct dkim_params p;
    struct dkim_sign *ds;
    struct buf why, field, b, txt;

    (void)state;
    buf_init(&why, 64);
    buf_init(&field, 512);
    buf_init(&b, 128);
    buf_init(&txt, 128);
    /* the public key the RFC publishes */
    assert_int_equal(dkim_key_dns(key, &txt, &why), 0);
    assert_string_equal(
        buf_str(&txt),
        "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
    (void)rfc_public;
    /* the body hash, through our own field */
    dkim_params_init(&p);
    ds = feed(key, &p, rfc_message, 7, &why);
    dkim_sign_body_hash(ds, &b);
    assert_string_equal(buf_str(&b), "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");
    dkim_sign_free(ds);
    /* the signature, with the RFC's own field: byte for byte */
    ds = feed(key, &p, rfc_message, 1000, &why);
    if (dkim_sign_end_as(ds, rfc_field_unsigned, &field, &why) < 0)
        fail_msg("sign: %s", buf_str(&why));
    b_value(buf_str(&field), &b);
    assert_string_equal(buf_str(&b), rfc_b);
    assert_memory_equal(field.data, rfc_field_unsigned, sizeof(rfc_field_unsigned) - 1);
    dkim_sign_free(ds);
    /* a field that does not end with an empty b= is refused */
    ds = feed(key, &p, rfc_message, 1000, &why);
    assert_int_equal(
        dkim_sign_end_as(ds, "DKIM-Signature: v=1; h=from; b=x", &field, &why), -1);
    dkim_sign_free(ds);
    dkim_key_free(key);
    buf_release(&why);
    buf_release(&field);
    buf_release(&b);
    buf_release(&txt);
}

/* RFC 6376 3.4.3/3.4.4: the empty body, and trailing empty lines */
static void test_empty_bodies(void **state)
{
    struct dkim_key *key = rfc_key();
    struct dkim_params p;
    struct buf why, bh;
    static const char *const relaxed_same[] = {"From: a@b.example\r\n\r\n",
                                               "From: a@b.example\r\n\r\n\r\n\r\n",
                                               "From: a@b.example\r\n\r\n \r\n\t\r\n"};
    static const char *const simple_same[] = {"From: a@b.example\r\n\r\n",
                                              "From: a@b.example\r\n\r\n\r\n\r\n"};

    (void)state;
    buf_init(&why, 64);
    buf_init(&bh, 64);
    dkim_params_init(&p);
    for (size_t i = 0; i < 3; i++) {
        struct dkim_sign *ds = feed(key, &p, relaxed_same[i], 3, &why);

        dkim_sign_body_hash(ds, &bh);
        assert_string_equal(buf_str(&bh), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        dkim_sign_free(ds);
    }
    p.body_canon = DKIM_SIMPLE;
    for (size_t i = 0; i < 2; i++) {
        struct dkim_sign *ds = feed(key, &p, simple_same[i], 1, &why);

        dkim_sign_body_hash(ds, &bh);
        assert_string_equal(buf_str(&bh), "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=");
        dkim_sign_free(ds);
    }
    dkim_key_free(key);
    buf_release(&why);
    buf_release(&bh);
}

/* sign_with - the whole field for a message, at a fixed time */
static int sign_with(struct dkim_key *key, struct dkim_params *p, const char *msg,
                     size_t chunk, struct buf *field, struct buf *why)
{
    struct dkim_sign *ds;
    int rc;

    p->now = 1700000000;
    ds = feed(key, p, msg, chunk, why);
    rc = dkim_sign_end(ds, field, why);
    dkim_sign_free(ds);
    return rc;
}

/* Chunk boundaries and line ends as sent change nothing. */
static void test_chunks_and_line_ends(void **state)
{
    struct dkim_key *key = rfc_key();
    struct dkim_params p;
    struct buf why, a, b;
    static const char crlf[] = "From: a@b.example\r\nSubject: x\r\n\r\n"
                               "line one  \r\n\r\nline\ttwo\r\nbare\rCR\r\n\r\n\r\n";
    static const char lf[] = "From: a@b.example\nSubject: x\n\n"
                             "line one  \n\nline\ttwo\nbare\rCR\n\n\n";

    (void)state;
    buf_init(&why, 64);
    buf_init(&a, 512);
    buf_init(&b, 512);
    for (int canon = 0; canon < 2; canon++) {
        dkim_params_init(&p);
        p.header_canon = p.body_canon = canon ? DKIM_RELAXED : DKIM_SIMPLE;
        assert_int_equal(sign_with(key, &p, crlf, 100000, &a, &why), 0);
        for (size_t chunk = 1; chunk < 9; chunk++) {
            assert_int_equal(sign_with(key, &p, crlf, chunk, &b, &why), 0);
            assert_string_equal(buf_str(&a), buf_str(&b));
            assert_int_equal(sign_with(key, &p, lf, chunk, &b, &why), 0);
            assert_string_equal(buf_str(&a), buf_str(&b));
        }
    }
    dkim_key_free(key);
    buf_release(&why);
    buf_release(&a);
    buf_release(&b);
}

/* h=: every instance bottom-up, From once more, a name listed twice once. */
static void test_header_list(void **state)
{
    struct dkim_key *key = rfc_key();
    struct dkim_params p;
    struct buf why, f;
    static const char *const list[] = {"From", "Received", "received", "To", NULL};
    static const char msg[] = "Received: one\r\nReceived: two\r\nFrom: a@b.example\r\n"
                              "X-Other: y\r\n\r\nbody\r\n";

    (void)state;
    buf_init(&why, 64);
    buf_init(&f, 512);
    dkim_params_init(&p);
    p.headers = list;
    p.expire = 3600;
    assert_int_equal(sign_with(key, &p, msg, 64, &f, &why), 0);
    {
        struct buf u;

        buf_init(&u, 512);
        for (size_t i = 0; i < f.len; i++)
            if (f.data[i] != '\r' && f.data[i] != '\n' && f.data[i] != '\t')
                buf_putc(&u, f.data[i]);
        assert_non_null(strstr(buf_str(&u), "h=From:From:Received:Received;"));
        buf_release(&u);
    }
    assert_non_null(strstr(buf_str(&f), "t=1700000000;"));
    assert_non_null(strstr(buf_str(&f), "x=1700003600;"));
    assert_null(strstr(buf_str(&f), " l="));
    assert_memory_equal(f.data,
                        "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;", 57);
    /* folded under 80 columns */
    for (const char *line = f.data; line;) {
        const char *nl = strchr(line, '\n');

        assert_true((nl ? (size_t)(nl - line) : strlen(line)) <= 80);
        line = nl ? nl + 1 : NULL;
    }
    dkim_key_free(key);
    buf_release(&why);
    buf_release(&f);
}

/* What cannot be signed is refused with a reason; the rest is signed. */
static void test_malformed(void **state)
{
    struct dkim_key *key = rfc_key();
    struct dkim_params p;
    struct buf why, f, longline;

    (void)state;
    buf_init(&why, 64);
    buf_init(&f, 512);
    buf_init(&longline, 1200);
    dkim_params_init(&p);
    assert_int_equal(sign_with(key, &p, "Subject: x\r\n\r\nbody\r\n", 5, &f, &why), -1);
    assert_non_null(strstr(buf_str(&why), "no From"));
    assert_int_equal(sign_with(key, &p,
                               "From: a@b.example\r\nno colon here\r\n\r\nbody\r\n", 5,
                               &f, &why),
                     -1);
    assert_non_null(strstr(buf_str(&why), "colon"));
    assert_int_equal(
        sign_with(key, &p, "From: a@b.example\r\n: no name\r\n\r\nbody\r\n", 5, &f, &why),
        -1);
    assert_non_null(strstr(buf_str(&why), "without a name"));
    buf_puts(&longline, "From: a@b.example\r\nSubject: ");
    for (int i = 0; i < 1000; i++)
        buf_putc(&longline, 'x');
    buf_puts(&longline, "\r\n\r\nbody\r\n");
    assert_int_equal(sign_with(key, &p, buf_str(&longline), 5, &f, &why), -1);
    assert_non_null(strstr(buf_str(&why), "over 998"));
    /* 8-bit bytes in header fields (RFC 6532) and a bare CR are signed */
    assert_int_equal(
        sign_with(key, &p,
                  "From: J\xc3\xbcrgen <j@b.example>\r\nSubject: caf\xc3\xa9 \rx\r\n"
                  "\r\nbody\r\n",
                  5, &f, &why),
        0);
    /* a list of fields to sign without From is refused */
    {
        static const char *const no_from[] = {"Subject", NULL};

        p.headers = no_from;
        assert_int_equal(sign_with(key, &p,
                                   "From: a@b.example\r\nSubject: x\r\n\r\nbody\r\n", 5,
                                   &f, &why),
                         -1);
        assert_non_null(strstr(buf_str(&why), "must include From"));
        p.headers = NULL;
    }
    /* an empty message has no From */
    assert_int_equal(sign_with(key, &p, "", 5, &f, &why), -1);
    dkim_key_free(key);
    buf_release(&why);
    buf_release(&f);
    buf_release(&longline);
}

/* Keys: bad PEM, wrong kinds, sizes; TXT strings of at most 255 bytes. */
static void test_keys_and_txt(void **state)
{
    struct buf why, txt, out;
    struct dkim_key *key;

    (void)state;
    buf_init(&why, 64);
    buf_init(&txt, 600);
    buf_init(&out, 700);
    assert_null(dkim_key_from_pem("junk", 4, "d.example", "s", &why));
    assert_non_null(strstr(buf_str(&why), "not a PEM private key"));
    assert_null(dkim_key_load("/nonexistent/key.pem", "d.example", "s", &why));
    assert_non_null(strstr(buf_str(&why), "/nonexistent/key.pem"));
    key = rfc_key();
    assert_int_equal(dkim_key_alg(key), DKIM_ED25519_SHA256);
    dkim_key_free(key);
    for (int i = 0; i < 600; i++)
        buf_putc(&txt, (char)('a' + i % 26));
    dkim_txt_strings(buf_str(&txt), &out);
    /* "255" "255" "90" */
    assert_int_equal(out.len, 600 + 6 + 2);
    assert_int_equal(out.data[256], '"');
    assert_int_equal(out.data[257], ' ');
    assert_int_equal(out.data[258], '"');
    dkim_txt_strings("short", &out);
    assert_string_equal(buf_str(&out), "\"short\"");
    buf_release(&why);
    buf_release(&txt);
    buf_release(&out);
}

/* dns_of - the TXT record of a key, to tell keys apart */
static void dns_of(const struct dkim_key *key, struct buf *out)
{
    struct buf why;

    buf_init(&why, 64);
    assert_int_equal(dkim_key_dns(key, out, &why), 0);
    buf_release(&why);
}

/* new_key_file - a fresh key written to path (replacing it atomically) */
static void new_key_file(enum dkim_alg alg, const char *path)
{
    struct buf why, tmp;
    struct dkim_key *k;

    buf_init(&why, 64);
    buf_init(&tmp, 128);
    buf_setf(&tmp, "%s.new", path);
    k = dkim_key_generate(alg, 1024, "x", "x", &why);
    assert_non_null(k);
    unlink(buf_str(&tmp));
    assert_int_equal(dkim_key_write(k, buf_str(&tmp), &why), 0);
    assert_int_equal(rename(buf_str(&tmp), path), 0);
    dkim_key_free(k);
    buf_release(&why);
    buf_release(&tmp);
}

/* The keyring: parent fallback, default domain, rotation, bad files. */
static void test_keyring(void **state)
{
    char dir[] = "/tmp/sg-test-dkim-XXXXXX";
    struct buf why, path, a, b;
    struct store *st;
    struct dkim_keyring *kr;
    struct dkim_key *keys[DKIM_KEYS_MAX];
    struct store_dkim rec = {"example.com", "r", "rsa-sha256", 1024, NULL, 0};
    int n;

    (void)state;
    assert_non_null(mkdtemp(dir));
    buf_init(&why, 64);
    buf_init(&path, 128);
    buf_init(&a, 512);
    buf_init(&b, 512);
    buf_setf(&path, "%s/store", dir);
    st = store_open(buf_str(&path), STORE_WRITE | STORE_CREATE, &why);
    assert_non_null(st);
    buf_setf(&path, "%s/r.pem", dir);
    new_key_file(DKIM_RSA_SHA256, buf_str(&path));
    rec.path = buf_str(&path);
    assert_int_equal(store_dkim_put(st, &rec, NULL, &why), 0);
    kr = dkim_keyring_new(st, NULL);

    /* the domain itself, and a subdomain through its parent */
    assert_int_equal(dkim_keyring_find(kr, "example.com", keys, &why), 1);
    assert_string_equal(dkim_key_domain(keys[0]), "example.com");
    dns_of(keys[0], &a);
    dkim_key_free(keys[0]);
    assert_int_equal(dkim_keyring_find(kr, "a.b.example.com", keys, &why), 1);
    dkim_key_free(keys[0]);
    assert_int_equal(dkim_keyring_find(kr, "example.org", keys, &why), 0);
    assert_int_equal(dkim_keyring_find(kr, "com", keys, &why), 0);

    /* a rotation on disk is seen by the next find; a key in use stays valid */
    assert_int_equal(dkim_keyring_find(kr, "example.com", keys, &why), 1);
    new_key_file(DKIM_RSA_SHA256, buf_str(&path));
    {
        struct dkim_key *old = keys[0];

        assert_int_equal(dkim_keyring_find(kr, "example.com", keys, &why), 1);
        dns_of(keys[0], &b);
        assert_string_not_equal(buf_str(&a), buf_str(&b));
        dns_of(old, &b); /* still usable */
        assert_string_equal(buf_str(&a), buf_str(&b));
        dkim_key_free(old);
        dkim_key_free(keys[0]);
    }
    /* a key others may read is not used */
    assert_int_equal(chmod(buf_str(&path), 0644), 0);
    assert_int_equal(dkim_keyring_find(kr, "example.com", keys, &why), 0);
    assert_int_equal(chmod(buf_str(&path), 0600), 0);
    assert_int_equal(dkim_keyring_find(kr, "example.com", keys, &why), 1);
    dkim_key_free(keys[0]);

    /* a second key of the other kind: both sign */
    buf_setf(&a, "%s/e.pem", dir);
    new_key_file(DKIM_ED25519_SHA256, buf_str(&a));
    rec.selector = "e";
    rec.algorithm = "ed25519-sha256";
    rec.path = buf_str(&a);
    assert_int_equal(store_dkim_put(st, &rec, NULL, &why), 0);
    n = dkim_keyring_find(kr, "news.example.com", keys, &why);
    assert_int_equal(n, 2);
    for (int i = 0; i < n; i++)
        dkim_key_free(keys[i]);

    /* deleted from the store: gone from the keyring */
    assert_int_equal(store_dkim_delete(st, "example.com", "r", &why), 1);
    assert_int_equal(store_dkim_delete(st, "example.com", "e", &why), 1);
    assert_int_equal(dkim_keyring_find(kr, "example.com", keys, &why), 0);
    dkim_keyring_free(kr);

    /* the default domain, for mail from a domain without keys */
    rec.domain = "default.example";
    assert_int_equal(store_dkim_put(st, &rec, NULL, &why), 0);
    kr = dkim_keyring_new(st, "default.example");
    assert_int_equal(dkim_keyring_find(kr, "example.org", keys, &why), 1);
    assert_string_equal(dkim_key_domain(keys[0]), "default.example");
    dkim_key_free(keys[0]);
    dkim_keyring_free(kr);
    store_close(st);
    buf_setf(&why, "rm -rf %s", dir);
    assert_int_equal(system(buf_str(&why)), 0);
    buf_release(&why);
    buf_release(&path);
    buf_release(&a);
    buf_release(&b);
}

/* From domains, domains and selectors. */
static void test_names(void **state)
{
    struct buf why, d;

    (void)state;
    buf_init(&why, 64);
    buf_init(&d, 64);
    assert_int_equal(
        dkim_from_domain(" Joe SixPack <joe@Football.Example.COM>", &d, &why), 0);
    assert_string_equal(buf_str(&d), "football.example.com");
    assert_int_equal(dkim_from_domain("joe@b\xc3\xbc"
                                      "cher.example (Joe)",
                                      &d, &why),
                     0);
    assert_string_equal(buf_str(&d), "xn--bcher-kva.example");
    assert_int_equal(dkim_from_domain("\"a@b\" <c@d.example>", &d, &why), 0);
    assert_string_equal(buf_str(&d), "d.example");
    assert_int_equal(dkim_from_domain("undisclosed-recipients:;", &d, &why), -1);
    assert_int_equal(dkim_from_domain("joe@", &d, &why), -1);
    assert_int_equal(dkim_selector_check("s2026-11.mail", &why), 0);
    assert_int_equal(dkim_selector_check("bad selector", &why), -1);
    assert_int_equal(dkim_selector_check("-x", &why), -1);
    assert_int_equal(dkim_selector_check("a..b", &why), -1);
    assert_int_equal(dkim_selector_check("", &why), -1);
    assert_int_equal(dkim_domain_normalize("a@b.example", &d, &why), -1);
    buf_release(&why);
    buf_release(&d);
}

/*
 * The word-at-a-time scan (SSE2, SWAR) against the byte path: runs of
 * spaces and tabs at every offset within 16-byte blocks, at line ends and
 * chunk ends, controls, 8-bit bytes; fed whole, and a byte at a time.
 */
static void test_body_fast_path(void **state)
{
    struct dkim_key *key = rfc_key();
    struct dkim_params p;
    struct buf why, msg, a, b;
    static const char *const gaps[] = {" ",   "  ",   "\t",       " \t ",
                                       "   ", "\x01", "\xc3\xa9 "};

    (void)state;
    buf_init(&why, 64);
    buf_init(&msg, 65536);
    buf_init(&a, 512);
    buf_init(&b, 512);
    buf_puts(&msg, "From: a@b.example\r\n\r\n");
    for (int line = 0; line < 300; line++) {
        int len = line % 53;

        for (int i = 0; i < len; i++) {
            buf_putc(&msg, (char)('a' + (line + i) % 26));
            if ((i + line) % 7 == 0)
                buf_puts(&msg, gaps[(line + i) % 7]);
        }
        buf_puts(&msg, line % 5 == 0 ? "  \r\n" : line % 11 == 0 ? "\n" : "\r\n");
        if (line % 17 == 0)
            buf_puts(&msg, " \t\r\n\r\n");
    }
    buf_puts(&msg, "\r\n\r\n \r\n");
    for (int canon = 0; canon < 2; canon++) {
        dkim_params_init(&p);
        p.header_canon = p.body_canon = canon ? DKIM_RELAXED : DKIM_SIMPLE;
        assert_int_equal(sign_with(key, &p, buf_str(&msg), 1, &a, &why), 0);
        for (size_t chunk = 13; chunk < 100000; chunk = chunk * 7 + 3) {
            assert_int_equal(sign_with(key, &p, buf_str(&msg), chunk, &b, &why), 0);
            assert_string_equal(buf_str(&a), buf_str(&b));
        }
    }
    dkim_key_free(key);
    buf_release(&why);
    buf_release(&msg);
    buf_release(&a);
    buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc8463),
        cmocka_unit_test(test_empty_bodies),
        cmocka_unit_test(test_chunks_and_line_ends),
        cmocka_unit_test(test_body_fast_path),
        cmocka_unit_test(test_header_list),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_keys_and_txt),
        cmocka_unit_test(test_keyring),
        cmocka_unit_test(test_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
