/*
 * test_token - token.h: every field survives a round trip, within limits and
 * at them; the text is URL-safe, random and hides the recipient; any change
 * to a token (a bit, a cut, an extra byte, another key, a foreign character)
 * is refused with a reason; rotation works both ways; key files are refused
 * for each defect; the marker checks.  Tokens sealed here by hand, from the
 * layout token.h documents, pin that layout and prove that malformed content
 * under a valid tag is refused.  A random loop feeds garbage and mutated
 * tokens to the decoder for the sanitizers to watch.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "token.h"

#define HEX_A "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define HEX_B "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f"
#define HEX_C "5555555555555555555555555555555555555555555555555555555555555555"

/* keys_of - keys from text, which must load */
static struct token_keys *keys_of(const char *text)
{
    struct buf why;
    struct token_keys *keys;

    buf_init(&why, 64);
    keys = token_keys_from_text(text, strlen(text), &why);
    if (keys == NULL)
        fail_msg("keys: %s", buf_str(&why));
    buf_release(&why);
    return keys;
}

/* b64url - the base64url of bytes, without padding (OpenSSL's, translated) */
static void b64url(const void *p, size_t len, struct buf *out)
{
    unsigned char *enc = malloc(4 * ((len + 2) / 3) + 1);
    int n = EVP_EncodeBlock(enc, p, (int)len);

    buf_reset(out);
    for (int i = 0; i < n; i++)
        if (enc[i] != '=')
            buf_putc(out, enc[i] == '+' ? '-' : enc[i] == '/' ? '_' : enc[i]);
    free(enc);
}

/* unb64url - the bytes of base64url text (assumed valid), by OpenSSL */
static void unb64url(const char *text, size_t len, struct buf *out)
{
    struct buf t;
    unsigned char *dec = malloc(len + 4);
    int n;

    buf_init(&t, len + 4);
    for (size_t i = 0; i < len; i++)
        buf_putc(&t, text[i] == '-' ? '+' : text[i] == '_' ? '/' : text[i]);
    while (t.len % 4)
        buf_putc(&t, '=');
    n = EVP_DecodeBlock(dec, (unsigned char *)t.data, (int)t.len);
    assert_true(n >= 0);
    n -= (len % 4 == 2) ? 2 : (len % 4 == 3) ? 1 : 0; /* padding counted */
    buf_reset(out);
    buf_append(out, dec, (size_t)n);
    free(dec);
    buf_release(&t);
}

/* encode_ok - encode, which must succeed */
static void encode_ok(const struct token_keys *keys, const struct token *t,
                      struct buf *out)
{
    struct buf why;

    buf_init(&why, 64);
    buf_reset(out);
    if (token_encode(keys, t, out, &why) < 0)
        fail_msg("encode: %s", buf_str(&why));
    buf_release(&why);
}

/* decode_fails - decode must fail with a reason containing "reason" (or any) */
static void decode_fails(const struct token_keys *keys, const char *text, size_t len,
                         const char *reason)
{
    struct buf why;
    struct token t;
    static const struct token zero;

    buf_init(&why, 64);
    if (token_decode(keys, text, len, &t, &why) == 0)
        fail_msg("decoded what should fail: %.*s", (int)len, text);
    assert_true(buf_len(&why) > 0);
    assert_null(strchr(buf_str(&why), '\n'));
    if (reason && strstr(buf_str(&why), reason) == NULL)
        fail_msg("reason '%s', expected '%s'", buf_str(&why), reason);
    assert_memory_equal(&t, &zero, sizeof(t));
    buf_release(&why);
}

/* same_token - decoded equals what was encoded (NULL message, recipient as "") */
static void same_token(const struct token *a, const struct token *b)
{
    assert_int_equal(a->purpose, b->purpose);
    assert_int_equal(a->group, b->group);
    assert_true(a->created == b->created);
    assert_string_equal(a->tenant, b->tenant);
    assert_string_equal(a->message ? a->message : "", b->message);
    assert_string_equal(a->recipient ? a->recipient : "", b->recipient);
    assert_int_equal(a->data_len, b->data_len);
    if (a->data_len) {
        assert_memory_equal(a->data, b->data, a->data_len);
        assert_int_equal(b->data[b->data_len], 0);
    } else {
        assert_null(b->data);
    }
}

/* roundtrip - encode then decode under the same keys, compared */
static void roundtrip(const struct token_keys *keys, const struct token *t,
                      struct buf *text)
{
    struct buf why;
    struct token d;

    buf_init(&why, 64);
    encode_ok(keys, t, text);
    if (token_decode(keys, buf_str(text), buf_len(text), &d, &why) < 0)
        fail_msg("decode: %s", buf_str(&why));
    same_token(t, &d);
    token_release(&d);
    buf_release(&why);
}

static const char click_url[] = "https://example.com/landing?utm_source=mail&x=%20y";

struct rcase {
    struct token t;
};

static const struct rcase round_cases[] = {
    {{TOKEN_UNSUBSCRIBE, 7, 1750000000, "default", "<20260101.abc@mail.example>",
      "joe@example.com", NULL, 0}},
    {{TOKEN_PREFERENCES, 0, 1750000001, "acme", "m1", "Ann.Other@example.org", NULL, 0}},
    {{TOKEN_CLICK, 42, 1750000002, "t", "msg-1", "a@b.c", (unsigned char *)click_url,
      sizeof(click_url) - 1}},
    {{TOKEN_OPEN, UINT32_MAX, 1, "tenant-x", "id", "\"john doe\"@example.com", NULL, 0}},
    {{TOKEN_RETURN_PATH, 1, INT64_MAX, "rp", "bounce-id", "bounce@example.net",
      (unsigned char *)"\0\1\2\377", 4}},
    /* empty message and recipient, NULL ones, created far in the past */
    {{TOKEN_UNSUBSCRIBE, 3, -1, "default", "", "", NULL, 0}},
    {{TOKEN_CLICK, 0, INT64_MIN, "default", NULL, NULL, (unsigned char *)"x", 1}},
    {{TOKEN_OPEN, 0, 1704067200, "d", "", "", NULL, 0}}, /* the epoch itself */
    {{TOKEN_OPEN, 0, 1704067199, "d", "", "", NULL, 0}},
    /* bytes that are not ASCII */
    {{TOKEN_PREFERENCES, 9, 1750000000, "t\xc3\xa9", "\xff\x01", "\xc3\x9cser@b.example",
      NULL, 0}},
};

/* Every purpose, every field, round trip. */
static void test_roundtrip(void **state)
{
    struct token_keys *keys = keys_of("1:" HEX_A "\n");
    struct buf text;

    (void)state;
    buf_init(&text, 256);
    for (size_t i = 0; i < sizeof(round_cases) / sizeof(round_cases[0]); i++)
        roundtrip(keys, &round_cases[i].t, &text);
    for (int p = TOKEN_UNSUBSCRIBE; p <= TOKEN_RETURN_PATH; p++) {
        struct token t = round_cases[2].t;

        t.purpose = (enum token_purpose)p;
        roundtrip(keys, &t, &text);
    }
    token_keys_free(keys);
    buf_release(&text);
}

/* created 0 is now */
static void test_created_now(void **state)
{
    struct token_keys *keys = keys_of("1:" HEX_A);
    struct token t = {TOKEN_OPEN, 0, 0, "default", "m", "r@x", NULL, 0}, d;
    struct buf text, why;
    int64_t before = (int64_t)time(NULL), after;

    (void)state;
    buf_init(&text, 256);
    buf_init(&why, 64);
    encode_ok(keys, &t, &text);
    after = (int64_t)time(NULL);
    assert_int_equal(token_decode(keys, buf_str(&text), buf_len(&text), &d, &why), 0);
    assert_true(d.created >= before && d.created <= after);
    token_release(&d);
    token_keys_free(keys);
    buf_release(&text);
    buf_release(&why);
}

/* fill - a string of n copies of c */
static char *fill(size_t n, int c)
{
    char *s = malloc(n + 1);

    memset(s, c, n);
    s[n] = 0;
    return s;
}

/* Every field at its largest; one more is refused, and so is nonsense. */
static void test_limits(void **state)
{
    struct token_keys *keys = keys_of("1:" HEX_A);
    char *tenant = fill(TOKEN_TENANT_MAX, 't'), *msgid = fill(TOKEN_MESSAGE_MAX, 'm');
    char *rcpt = fill(TOKEN_RECIPIENT_MAX, 'r');
    unsigned char *data = (unsigned char *)fill(TOKEN_DATA_MAX + 1, 'd');
    char *tenant2 = fill(TOKEN_TENANT_MAX + 1, 't'),
         *msgid2 = fill(TOKEN_MESSAGE_MAX + 1, 'm');
    char *rcpt2 = fill(TOKEN_RECIPIENT_MAX + 1, 'r');
    struct token big = {TOKEN_CLICK, UINT32_MAX, -1,   tenant,
                        msgid,       rcpt,       data, TOKEN_DATA_MAX};
    struct buf text, why;
    struct {
        struct token t;
        const char *reason;
    } bad[] = {
        {{TOKEN_CLICK, 0, 0, tenant2, "", "", NULL, 0}, "tenant has 65 bytes"},
        {{TOKEN_CLICK, 0, 0, "", "", "", NULL, 0}, "needs a tenant"},
        {{TOKEN_CLICK, 0, 0, NULL, "", "", NULL, 0}, "needs a tenant"},
        {{TOKEN_CLICK, 0, 0, "t", msgid2, "", NULL, 0}, "message id has 256 bytes"},
        {{TOKEN_CLICK, 0, 0, "t", "", rcpt2, NULL, 0}, "recipient has 321 bytes"},
        {{TOKEN_CLICK, 0, 0, "t", "", "", data, TOKEN_DATA_MAX + 1}, "data has 8193"},
        {{TOKEN_CLICK, 0, 0, "t", "", "", NULL, 5}, "NULL"},
        {{(enum token_purpose)0, 0, 0, "t", "", "", NULL, 0}, "bad token purpose 0"},
        {{(enum token_purpose)6, 0, 0, "t", "", "", NULL, 0}, "bad token purpose 6"},
    };

    (void)state;
    buf_init(&text, 256);
    buf_init(&why, 64);
    roundtrip(keys, &big, &text);
    /* the longest token there can be: every varint at its longest */
    assert_int_equal(buf_len(&text), TOKEN_TEXT_MAX);
    printf("longest token: %zu characters\n", buf_len(&text));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        buf_set(&text, "keep");
        assert_int_equal(token_encode(keys, &bad[i].t, &text, &why), -1);
        if (strstr(buf_str(&why), bad[i].reason) == NULL)
            fail_msg("case %zu: '%s', expected '%s'", i, buf_str(&why), bad[i].reason);
        assert_string_equal(buf_str(&text), "keep"); /* out unchanged */
    }
    /* longer than any token: refused before decoding */
    buf_reset(&text);
    for (int i = 0; i < TOKEN_TEXT_MAX + 1; i++)
        buf_putc(&text, 'A');
    decode_fails(keys, buf_str(&text), buf_len(&text), "not a token");
    token_keys_free(keys);
    free(tenant);
    free(msgid);
    free(rcpt);
    free(data);
    free(tenant2);
    free(msgid2);
    free(rcpt2);
    buf_release(&text);
    buf_release(&why);
}

/* contains - does text hold needle (of len bytes)? */
static int contains(const struct buf *text, const char *needle, size_t len)
{
    if (len == 0 || len > text->len)
        return len == 0;
    for (size_t i = 0; i + len <= text->len; i++)
        if (memcmp(text->data + i, needle, len) == 0)
            return 1;
    return 0;
}

/* URL-safe text, the recipient hidden, a fresh nonce each time, the size. */
static void test_text(void **state)
{
    static const char rcpt[] = "recipient@example-mail.co"; /* 25 bytes */
    struct token_keys *keys = keys_of("# test\n\n1:" HEX_A "\n");
    struct token t = {TOKEN_UNSUBSCRIBE, 1,    0, "default", "01234567890123456789",
                      (char *)rcpt,      NULL, 0};
    struct buf a, b, enc, prefixed;

    (void)state;
    buf_init(&a, 256);
    buf_init(&b, 256);
    buf_init(&enc, 64);
    buf_init(&prefixed, 64);
    assert_int_equal(strlen(t.message), 20);
    assert_int_equal(strlen(t.recipient), 25);
    encode_ok(keys, &t, &a);
    printf("token for tenant \"default\", a 20-byte message id, a 25-byte recipient: "
           "%zu characters\n",
           buf_len(&a));
    assert_true(buf_len(&a) <= 125);
    for (size_t i = 0; i < buf_len(&a); i++) {
        char c = buf_str(&a)[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_'))
            fail_msg("'%c' in %s", c, buf_str(&a));
    }
    /* neither the address nor any of its base64 forms (each alignment) */
    assert_false(contains(&a, rcpt, strlen(rcpt)));
    assert_false(contains(&a, "recipient", 9));
    for (size_t shift = 0; shift < 3; shift++) {
        buf_set(&prefixed, "xx");
        buf_truncate(&prefixed, shift);
        buf_puts(&prefixed, rcpt);
        b64url(prefixed.data, prefixed.len, &enc);
        /* the characters that depend on the address alone: skip the first 4 */
        assert_false(contains(&a, enc.data + 4, 12));
    }
    /* the same token twice: two texts, both decode */
    encode_ok(keys, &t, &b);
    assert_string_not_equal(buf_str(&a), buf_str(&b));
    assert_int_equal(buf_len(&a), buf_len(&b));
    token_keys_free(keys);
    buf_release(&a);
    buf_release(&b);
    buf_release(&enc);
    buf_release(&prefixed);
}

/* Any change to a token is refused. */
static void test_tamper(void **state)
{
    struct token_keys *keys = keys_of("1:" HEX_A), *other = keys_of("1:" HEX_B);
    struct token t = round_cases[2].t;
    struct buf text, raw, mod, why;
    static const char *const foreign[] = {"=", "+", "/", " ", ".", "\n", "\xc3\xa9", "~"};

    (void)state;
    buf_init(&text, 256);
    buf_init(&raw, 256);
    buf_init(&mod, 256);
    buf_init(&why, 64);
    encode_ok(keys, &t, &text);
    unb64url(text.data, text.len, &raw);
    /* our test decoder agrees: the bytes re-encode to the text */
    b64url(raw.data, raw.len, &mod);
    assert_string_equal(buf_str(&mod), buf_str(&text));
    assert_int_equal((unsigned char)raw.data[0], 1); /* version */
    assert_int_equal((unsigned char)raw.data[1], 1); /* key id */

    /* every bit of every byte */
    for (size_t i = 0; i < raw.len; i++)
        for (int bit = 0; bit < 8; bit++) {
            raw.data[i] ^= (char)(1 << bit);
            b64url(raw.data, raw.len, &mod);
            decode_fails(keys, mod.data, mod.len, NULL);
            raw.data[i] ^= (char)(1 << bit);
        }
    /* every character changed to every other base64url character */
    for (size_t i = 0; i < text.len; i++) {
        static const char set[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

        for (const char *c = set; *c; c++) {
            if (*c == text.data[i])
                continue;
            buf_set(&mod, text.data);
            mod.data[i] = *c;
            decode_fails(keys, mod.data, mod.len, NULL);
        }
    }
    /* every truncation, of the text and of the bytes */
    for (size_t len = 0; len < text.len; len++)
        decode_fails(keys, text.data, len, NULL);
    for (size_t len = 0; len < raw.len; len++) {
        b64url(raw.data, len, &mod);
        decode_fails(keys, mod.data, mod.len, NULL);
    }
    decode_fails(keys, text.data, 0, "not a token: empty");
    decode_fails(keys, text.data, 20, "not a token: too short");
    /* bytes or characters appended */
    for (int extra = 1; extra <= 5; extra++) {
        buf_set(&mod, "");
        buf_append(&mod, raw.data, raw.len);
        for (int k = 0; k < extra; k++)
            buf_putc(&mod, k);
        b64url(mod.data, mod.len, &mod);
        decode_fails(keys, mod.data, mod.len, "token does not verify");
        buf_set(&mod, text.data);
        for (int k = 0; k < extra; k++)
            buf_putc(&mod, 'A');
        decode_fails(keys, mod.data, mod.len, NULL);
    }
    /* the same key id with another key */
    decode_fails(other, text.data, text.len, "token does not verify");
    /* characters outside base64url, anywhere */
    for (size_t f = 0; f < sizeof(foreign) / sizeof(foreign[0]); f++)
        for (size_t at = 0; at <= text.len; at += 7) {
            buf_reset(&mod);
            buf_append(&mod, text.data, at);
            buf_puts(&mod, foreign[f]);
            buf_append(&mod, text.data + at, text.len - at);
            decode_fails(keys, mod.data, mod.len, "not a token");
        }
    /* one character more than whole bytes need: not base64 at all */
    decode_fails(keys, "AAAAA", 5, "not base64url");
    {
        static const char *const ids[] = {"", "x", "xx"};
        int found = 0;

        for (size_t i = 0; i < 3 && !found; i++) {
            struct token u = t;

            u.message = (char *)ids[i];
            encode_ok(keys, &u, &mod);
            if (mod.len % 4 == 0) {
                buf_putc(&mod, 'A');
                decode_fails(keys, mod.data, mod.len, "not base64url");
                found = 1;
            }
        }
        assert_true(found);
    }
    /* padding, as standard base64 would add */
    buf_set(&mod, text.data);
    buf_puts(&mod, "==");
    decode_fails(keys, mod.data, mod.len, "not a token");
    /* a NUL inside the given length */
    buf_set(&mod, text.data);
    mod.data[10] = 0;
    decode_fails(keys, mod.data, mod.len, "not a token");
    /* an unknown key id, and an unknown version */
    raw.data[1] = 7;
    b64url(raw.data, raw.len, &mod);
    decode_fails(keys, mod.data, mod.len, "unknown key id 7");
    raw.data[1] = 1;
    raw.data[0] = 2;
    b64url(raw.data, raw.len, &mod);
    decode_fails(keys, mod.data, mod.len, "unknown version 2");
    raw.data[0] = 1;
    /* and after all that, the original still decodes */
    {
        struct token d;

        assert_int_equal(token_decode(keys, text.data, text.len, &d, &why), 0);
        same_token(&t, &d);
        token_release(&d);
    }
    token_keys_free(keys);
    token_keys_free(other);
    buf_release(&text);
    buf_release(&raw);
    buf_release(&mod);
    buf_release(&why);
}

/* decodes - does text decode under keys? */
static int decodes(const struct token_keys *keys, const struct buf *text, struct buf *why)
{
    struct token d;

    if (token_decode(keys, text->data, text->len, &d, why) < 0)
        return 0;
    token_release(&d);
    return 1;
}

/* Rotation: the first key encodes, every key decodes, order does not matter. */
static void test_rotation(void **state)
{
    struct token_keys *new_first = keys_of("2:" HEX_B "\n1:" HEX_A "\n");
    struct token_keys *old_only = keys_of("1:" HEX_A "\n");
    struct token_keys *new_only = keys_of("2:" HEX_B "\n");
    struct token_keys *old_first = keys_of("1:" HEX_A "\n2:" HEX_B "\n");
    struct token t = round_cases[0].t;
    struct buf old_tok, new_tok, why;

    (void)state;
    buf_init(&old_tok, 256);
    buf_init(&new_tok, 256);
    buf_init(&why, 64);
    assert_int_equal(token_keys_current(new_first), 2);
    assert_int_equal(token_keys_current(old_first), 1);
    encode_ok(old_only, &t, &old_tok);
    encode_ok(new_first, &t, &new_tok);
    /* the new key's tokens: not under the old key alone */
    assert_false(decodes(old_only, &new_tok, &why));
    assert_string_equal(buf_str(&why), "unknown key id 2");
    assert_true(decodes(new_first, &new_tok, &why));
    assert_true(decodes(new_only, &new_tok, &why));
    assert_true(decodes(old_first, &new_tok, &why));
    /* the old key's tokens: wherever the old key still is */
    assert_true(decodes(new_first, &old_tok, &why));
    assert_true(decodes(old_first, &old_tok, &why));
    assert_false(decodes(new_only, &old_tok, &why));
    assert_string_equal(buf_str(&why), "unknown key id 1");
    token_keys_free(new_first);
    token_keys_free(old_only);
    token_keys_free(new_only);
    token_keys_free(old_first);
    buf_release(&old_tok);
    buf_release(&new_tok);
    buf_release(&why);
}

struct kcase {
    const char *text;
    const char *reason; /* NULL: loads */
};

static const struct kcase key_cases[] = {
    {"1:" HEX_A, NULL},
    {"  1:" HEX_A " \r\n", NULL},
    {"# comment\n\n \t\n1:" HEX_A "\n# 2:zz\n", NULL},
    {"255:" HEX_A "\n1:" HEX_B "\n3:" HEX_C, NULL},
    {"1:000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", NULL},
    {"", "holds no key"},
    {"\n\n# only comments\n", "holds no key"},
    {"1:" HEX_A "\n1:" HEX_B, "line 2: key id 1 is listed twice"},
    {"0:" HEX_A, "line 1: the key id must be a number from 1 to 255"},
    {"256:" HEX_A, "from 1 to 255"},
    {"1000:" HEX_A, "from 1 to 255"},
    {"-1:" HEX_A, "from 1 to 255"},
    {"+1:" HEX_A, "from 1 to 255"},
    {":" HEX_A, "from 1 to 255"},
    {"a:" HEX_A, "from 1 to 255"},
    {"1 :" HEX_A, "from 1 to 255"},
    {"1" HEX_A, "expected KID:HEX"},
    {"1:" HEX_A "0", "64 hex digits"},
    {"1:" HEX_A "\n2:" HEX_A "00\n", "line 2: the key must be 64 hex digits"},
    {"1:00", "64 hex digits"},
    {"1:", "64 hex digits"},
    {"1:g00102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     "not all hex digits"},
    {"1:00010203040506070809 a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     "not all hex digits"},
    {"1: " HEX_A, "64 hex digits"},
    {"\n\n\n1:xyz\n", "line 4:"},
};

/* Key text: what loads and what is refused, with the line. */
static void test_key_text(void **state)
{
    struct buf why;

    (void)state;
    buf_init(&why, 64);
    for (size_t i = 0; i < sizeof(key_cases) / sizeof(key_cases[0]); i++) {
        const struct kcase *c = &key_cases[i];
        struct token_keys *keys =
            token_keys_from_text(c->text, strlen(c->text), c->reason ? &why : NULL);

        if (c->reason == NULL && keys == NULL)
            fail_msg("case %zu refused", i);
        if (c->reason && keys != NULL)
            fail_msg("case %zu loaded", i);
        if (c->reason && strstr(buf_str(&why), c->reason) == NULL)
            fail_msg("case %zu: '%s', expected '%s'", i, buf_str(&why), c->reason);
        token_keys_free(keys);
    }
    /* a NUL in the text is not a key */
    {
        static const char nul[] = "1:" HEX_A "\n2:0\0" HEX_A "\n";

        assert_null(token_keys_from_text(nul, sizeof(nul) - 1, &why));
        assert_non_null(strstr(buf_str(&why), "line 2"));
    }
    /* without a reason to fill */
    assert_null(token_keys_from_text("x", 1, NULL));
    token_keys_free(NULL);
    buf_release(&why);
}

/* write_file - path gets text, mode 0600 */
static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(close(fd), 0);
    assert_int_equal(chmod(path, 0600), 0);
}

/* The key file: a secret, refused if others may read it or it is a symlink. */
static void test_key_file(void **state)
{
    char dir[] = "/tmp/sg-test-token-XXXXXX";
    struct buf path, link, why, text;
    struct token_keys *keys, *mem;
    struct token t = round_cases[1].t;

    (void)state;
    assert_non_null(mkdtemp(dir));
    buf_init(&path, 128);
    buf_init(&link, 128);
    buf_init(&why, 64);
    buf_init(&text, 256);
    buf_setf(&path, "%s/token.keys", dir);
    buf_setf(&link, "%s/link.keys", dir);

    /* missing */
    assert_null(token_keys_load(buf_str(&path), &why));
    assert_non_null(strstr(buf_str(&why), buf_str(&path)));
    /* good: the same keys as from text */
    write_file(buf_str(&path), "# sendguard token keys\n3:" HEX_C "\n1:" HEX_A "\n");
    keys = token_keys_load(buf_str(&path), &why);
    if (keys == NULL)
        fail_msg("load: %s", buf_str(&why));
    assert_int_equal(token_keys_current(keys), 3);
    mem = keys_of("1:" HEX_A "\n3:" HEX_C);
    encode_ok(keys, &t, &text);
    assert_true(decodes(mem, &text, &why));
    token_keys_free(keys);
    /* readable by others */
    assert_int_equal(chmod(buf_str(&path), 0644), 0);
    assert_null(token_keys_load(buf_str(&path), &why));
    assert_non_null(strstr(buf_str(&why), "readable"));
    assert_int_equal(chmod(buf_str(&path), 0604), 0);
    assert_null(token_keys_load(buf_str(&path), &why));
    assert_int_equal(chmod(buf_str(&path), 0640), 0); /* the group may: allowed */
    keys = token_keys_load(buf_str(&path), &why);
    assert_non_null(keys);
    token_keys_free(keys);
    /* a symbolic link, even to a good file */
    assert_int_equal(chmod(buf_str(&path), 0600), 0);
    assert_int_equal(symlink(buf_str(&path), buf_str(&link)), 0);
    assert_null(token_keys_load(buf_str(&link), &why));
    assert_non_null(strstr(buf_str(&why), "symbolic link"));
    /* a directory */
    assert_null(token_keys_load(dir, &why));
    /* a bad line names file and line */
    write_file(buf_str(&path), "1:" HEX_A "\n\n1:" HEX_B "\n");
    assert_null(token_keys_load(buf_str(&path), &why));
    buf_setf(&text, "%s:3: key id 1 is listed twice", buf_str(&path));
    assert_string_equal(buf_str(&why), buf_str(&text));
    /* empty */
    write_file(buf_str(&path), "");
    assert_null(token_keys_load(buf_str(&path), &why));
    assert_non_null(strstr(buf_str(&why), "holds no key"));

    token_keys_free(mem);
    unlink(buf_str(&link));
    unlink(buf_str(&path));
    rmdir(dir);
    buf_release(&path);
    buf_release(&link);
    buf_release(&why);
    buf_release(&text);
}

/* token_key_line makes lines that load, each key different. */
static void test_key_line(void **state)
{
    struct buf text, why, tok;
    struct token_keys *keys, *first;
    struct token t = round_cases[3].t;
    const char *nl;

    (void)state;
    buf_init(&text, 256);
    buf_init(&why, 64);
    buf_init(&tok, 256);
    token_key_line(1, &text);
    assert_int_equal(buf_len(&text), 2 + 64 + 1);
    assert_int_equal(buf_str(&text)[buf_len(&text) - 1], '\n');
    token_key_line(255, &text);
    nl = strchr(buf_str(&text), '\n');
    assert_memory_equal(nl + 1, "255:", 4);
    assert_memory_not_equal(buf_str(&text) + 2, nl + 5, 64);
    keys = token_keys_from_text(buf_str(&text), buf_len(&text), &why);
    if (keys == NULL)
        fail_msg("%s", buf_str(&why));
    assert_int_equal(token_keys_current(keys), 1);
    first = token_keys_from_text(buf_str(&text), (size_t)(nl + 1 - buf_str(&text)), &why);
    assert_non_null(first);
    encode_ok(keys, &t, &tok);
    assert_true(decodes(first, &tok, &why));
    token_keys_free(keys);
    token_keys_free(first);
    buf_release(&text);
    buf_release(&why);
    buf_release(&tok);
}

/* The marker: checks under the key it names, fails for anything else. */
static void test_mac(void **state)
{
    struct token_keys *a = keys_of("1:" HEX_A), *b = keys_of("1:" HEX_B);
    struct token_keys *rot = keys_of("2:" HEX_C "\n1:" HEX_A);
    struct token_keys *c_only = keys_of("2:" HEX_C);
    static const char data[] = "Message-ID: <x@y>; tenant default";
    struct buf m, m2, mod;

    (void)state;
    buf_init(&m, 64);
    buf_init(&m2, 64);
    buf_init(&mod, 64);
    token_mac(a, data, strlen(data), &m);
    assert_int_equal(buf_len(&m), 2 + 22);
    assert_memory_equal(buf_str(&m), "1.", 2);
    /* deterministic */
    token_mac(a, data, strlen(data), &m2);
    assert_string_equal(buf_str(&m), buf_str(&m2));
    assert_int_equal(token_mac_check(a, data, strlen(data), m.data, m.len), 1);
    /* other data, other key under the same id, a changed character, a cut */
    assert_int_equal(token_mac_check(a, data, strlen(data) - 1, m.data, m.len), 0);
    assert_int_equal(token_mac_check(b, data, strlen(data), m.data, m.len), 0);
    for (size_t i = 0; i < m.len; i++) {
        buf_set(&mod, m.data);
        mod.data[i] = mod.data[i] == 'A' ? 'B' : 'A';
        assert_int_equal(token_mac_check(a, data, strlen(data), mod.data, mod.len), 0);
    }
    for (size_t len = 0; len < m.len; len++)
        assert_int_equal(token_mac_check(a, data, strlen(data), m.data, len), 0);
    buf_set(&mod, m.data);
    buf_putc(&mod, 'A');
    assert_int_equal(token_mac_check(a, data, strlen(data), mod.data, mod.len), 0);
    assert_int_equal(token_mac_check(a, data, strlen(data), "", 0), 0);
    assert_int_equal(token_mac_check(a, data, strlen(data), "garbage.", 8), 0);
    /* rotation: new markers carry the new id; old ones still check */
    buf_reset(&m2);
    token_mac(rot, data, strlen(data), &m2);
    assert_memory_equal(buf_str(&m2), "2.", 2);
    assert_int_equal(token_mac_check(rot, data, strlen(data), m.data, m.len), 1);
    assert_int_equal(token_mac_check(rot, data, strlen(data), m2.data, m2.len), 1);
    assert_int_equal(token_mac_check(a, data, strlen(data), m2.data, m2.len), 0);
    assert_int_equal(token_mac_check(c_only, data, strlen(data), m.data, m.len), 0);
    assert_int_equal(token_mac_check(c_only, data, strlen(data), m2.data, m2.len), 1);
    /* empty data has a marker too */
    buf_reset(&m);
    token_mac(a, "", 0, &m);
    assert_int_equal(token_mac_check(a, "", 0, m.data, m.len), 1);
    token_keys_free(a);
    token_keys_free(b);
    token_keys_free(rot);
    token_keys_free(c_only);
    buf_release(&m);
    buf_release(&m2);
    buf_release(&mod);
}

static void test_purpose_names(void **state)
{
    (void)state;
    assert_string_equal(token_purpose_name(TOKEN_UNSUBSCRIBE), "unsubscribe");
    assert_string_equal(token_purpose_name(TOKEN_PREFERENCES), "preferences");
    assert_string_equal(token_purpose_name(TOKEN_CLICK), "click");
    assert_string_equal(token_purpose_name(TOKEN_OPEN), "open");
    assert_string_equal(token_purpose_name(TOKEN_RETURN_PATH), "return-path");
    assert_string_equal(token_purpose_name((enum token_purpose)0), "unknown");
}

/* subkey - HKDF-SHA256 of a hex master key with this info label, by hand */
static void subkey(const char *hex, const char *info, unsigned char key[32])
{
    unsigned char master[32];
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kctx = EVP_KDF_CTX_new(kdf);
    OSSL_PARAM params[4];

    for (int i = 0; i < 32; i++) {
        unsigned v;

        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        master[i] = (unsigned char)v;
    }
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, master, 32);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info,
                                                  strlen(info));
    params[3] = OSSL_PARAM_construct_end();
    assert_int_equal(EVP_KDF_derive(kctx, key, 32, params), 1);
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
}

/*
 * seal - a token made here from the layout token.h documents: the AEAD key
 * by HKDF-SHA256 ("sendguard token v1") from the master key, header
 * version 1 and kid as AAD, a fixed nonce, ChaCha20-Poly1305.
 */
static void seal(const char *hex, unsigned kid, const void *plain, size_t len,
                 struct buf *text)
{
    unsigned char key[32], *raw = malloc(2 + 12 + len + 16);
    EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n;

    subkey(hex, "sendguard token v1", key);
    raw[0] = 1;
    raw[1] = (unsigned char)kid;
    memset(raw + 2, 0x5a, 12);
    assert_int_equal(EVP_EncryptInit_ex2(ctx, cipher, key, raw + 2, NULL), 1);
    assert_int_equal(EVP_EncryptUpdate(ctx, NULL, &n, raw, 2), 1);
    assert_int_equal(EVP_EncryptUpdate(ctx, raw + 14, &n, plain, (int)len), 1);
    assert_int_equal(EVP_EncryptFinal_ex(ctx, raw + 14 + n, &n), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, raw + 14 + len),
                     1);
    b64url(raw, 2 + 12 + len + 16, text);
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_free(cipher);
    free(raw);
}

struct pcase {
    const char *plain; /* the plaintext, as a C literal with its length */
    size_t len;
    int ok;
};

#define P(s) s, sizeof(s) - 1
/* purpose 3, group 5, created epoch+300 ("\xac\x02"), "ten", "m", "r@x", "u" */
#define GOOD "\x03\x05\xac\x02\x03ten\x01m\x03r@x\x01u"

static const struct pcase plain_cases[] = {
    {P(GOOD), 1},
    {P("\x01\x00\x00\x01t\x00\x00\x00"), 1},                /* the shortest */
    {P(GOOD "\x00"), 0},                                    /* a byte too many */
    {P("\x00\x05\xac\x02\x03ten\x01m\x03r@x\x01u"), 0},     /* purpose 0 */
    {P("\x06\x05\xac\x02\x03ten\x01m\x03r@x\x01u"), 0},     /* purpose 6 */
    {P("\x03\x85\x00\xac\x02\x03ten\x01m\x03r@x\x01u"), 0}, /* varint not shortest */
    {P("\x03\x80\x80\x80\x80\x10\xac\x02\x03ten\x01m\x03r@x\x01u"),
     0}, /* group > 32 bits */
    {P("\x03\x05\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x03ten\x01m\x03r@x\x01u"),
     0}, /* created > 64 bits */
    {P("\x03\x05\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x03ten"), 0}, /* endless */
    {P("\x03\x05\xac\x02\x00\x01m\x03r@x\x01u"), 0},     /* empty tenant */
    {P("\x03\x05\xac\x02\x04ten\x01m\x03r@x\x01u"), 0},  /* length too long */
    {P("\x03\x05\xac\x02\x03t\0n\x01m\x03r@x\x01u"), 0}, /* NUL in tenant */
    {P("\x03\x05\xac\x02\x03ten\x01m\x03r\0x\x01u"), 0}, /* NUL in recipient */
    {P("\x03\x05\xac\x02\x03ten\x01m\x03r@x\x05u"), 0},  /* data cut short */
    {P("\x03\x05\xac\x02\x03ten\x01m\x03r@x"), 0},
    /* a length one more than what is left, at the end */
    {P("\x03\x05\xac\x02\x03ten\x02m"), 0},
    {P("\x03\x05\xac\x02\x03ten\x01m\x04r@x"), 0},
    {P("\x03\x05\xac\x02\x03ten\x01m\x03r@x\x02u"), 0},
    {P("\x03\x05\xac\x02\x03ten\x01m\x03r@x\x01"), 0},      /* data missing */
    {P("\x03\x05\xac\x02\x03ten\x01m\x03r@x\x01u\x01"), 0}, /* trailing */
    {P("\x03\x05\xac\x02\x03ten\x01m\x03r@x\x81\x40u"), 0}, /* data of 8193 bytes */
    {P("\x03\x05\xac\x02\x41tenxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
       "xxxx\x00\x00\x00"),
     0}, /* a 65-byte tenant */
};

/* Tokens sealed by hand: the layout, and malformed content under a good tag. */
static void test_sealed(void **state)
{
    struct token_keys *keys = keys_of("4:" HEX_A);
    struct buf text, why;
    struct token d;

    (void)state;
    buf_init(&text, 256);
    buf_init(&why, 64);
    for (size_t i = 0; i < sizeof(plain_cases) / sizeof(plain_cases[0]); i++) {
        const struct pcase *c = &plain_cases[i];
        int rc;

        seal(HEX_A, 4, c->plain, c->len, &text);
        rc = token_decode(keys, text.data, text.len, &d, &why);
        if (c->ok && rc < 0)
            fail_msg("case %zu: %s", i, buf_str(&why));
        if (!c->ok && rc == 0)
            fail_msg("case %zu decoded", i);
        if (!c->ok)
            assert_string_equal(buf_str(&why), "token content is malformed");
        if (i == 0) {
            assert_int_equal(d.purpose, TOKEN_CLICK);
            assert_int_equal(d.group, 5);
            assert_true(d.created == 1704067200 + 300);
            assert_string_equal(d.tenant, "ten");
            assert_string_equal(d.message, "m");
            assert_string_equal(d.recipient, "r@x");
            assert_int_equal(d.data_len, 1);
            assert_memory_equal(d.data, "u", 2);
        }
        token_release(&d);
    }
    /* under a key id the keys do not have */
    seal(HEX_A, 5, P(GOOD), &text);
    decode_fails(keys, text.data, text.len, "unknown key id 5");
    token_keys_free(keys);
    buf_release(&text);
    buf_release(&why);
}

/* The marker, computed here: HMAC-SHA256 under "sendguard marker v1", 128 bits. */
static void test_mac_layout(void **state)
{
    struct token_keys *keys = keys_of("9:" HEX_B);
    static const char data[] = "the data";
    unsigned char key[32], mac[32];
    unsigned mlen = sizeof(mac);
    struct buf want, got;

    (void)state;
    buf_init(&want, 64);
    buf_init(&got, 64);
    subkey(HEX_B, "sendguard marker v1", key);
    assert_non_null(HMAC(EVP_sha256(), key, 32, (const unsigned char *)data, strlen(data),
                         mac, &mlen));
    b64url(mac, 16, &got);
    buf_setf(&want, "9.%s", buf_str(&got));
    buf_reset(&got);
    token_mac(keys, data, strlen(data), &got);
    assert_string_equal(buf_str(&got), buf_str(&want));
    /* and not under the token subkey */
    subkey(HEX_B, "sendguard token v1", key);
    HMAC(EVP_sha256(), key, 32, (const unsigned char *)data, strlen(data), mac, &mlen);
    b64url(mac, 16, &want);
    assert_null(strstr(buf_str(&got), buf_str(&want)));
    token_keys_free(keys);
    buf_release(&want);
    buf_release(&got);
}

/* rnd - xorshift64*, so that a failure repeats */
static uint64_t rnd_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state >> 12;
    rnd_state ^= rnd_state << 25;
    rnd_state ^= rnd_state >> 27;
    return rnd_state * 2685821657736338717ULL;
}

/* Garbage and mutated tokens: refused or decoded, never a crash (ASan). */
static void test_fuzz(void **state)
{
    static const char set[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    struct token_keys *keys = keys_of("1:" HEX_A "\n2:" HEX_B);
    struct buf text, mod, why;
    struct token d;
    int decoded = 0;

    (void)state;
    buf_init(&text, 256);
    buf_init(&mod, 256);
    buf_init(&why, 64);
    for (int i = 0; i < 10000; i++) {
        size_t len = (size_t)(rnd() % 300);
        int alphabet = (int)(rnd() % 2);

        buf_reset(&mod);
        for (size_t k = 0; k < len; k++)
            buf_putc(&mod, alphabet ? set[rnd() % 64] : (int)(rnd() & 0xff));
        /* an exact-size heap copy, so that ASan sees any read past the end */
        {
            char *exact = malloc(len ? len : 1);

            memcpy(exact, mod.data, len);
            if (token_decode(keys, exact, len, &d, &why) == 0) {
                decoded++;
                token_release(&d);
            }
            free(exact);
        }
    }
    assert_int_equal(decoded, 0);
    for (int i = 0; i < 10000; i++) {
        struct token t =
            round_cases[rnd() % (sizeof(round_cases) / sizeof(round_cases[0]))].t;
        int edits = 1 + (int)(rnd() % 4);
        char *exact;

        encode_ok(keys, &t, &text);
        buf_set(&mod, text.data);
        for (int e = 0; e < edits; e++) {
            size_t at = mod.len ? (size_t)(rnd() % mod.len) : 0;

            switch (rnd() % 4) {
            case 0: /* change a character */
                if (mod.len)
                    mod.data[at] = set[rnd() % 64];
                break;
            case 1: /* cut */
                buf_truncate(&mod, at);
                break;
            case 2: /* insert */
                buf_putc(&mod, 'x');
                memmove(mod.data + at + 1, mod.data + at, mod.len - at - 1);
                mod.data[at] = set[rnd() % 64];
                break;
            default: /* any byte */
                if (mod.len)
                    mod.data[at] = (char)(rnd() & 0xff);
                break;
            }
        }
        exact = malloc(mod.len ? mod.len : 1);
        memcpy(exact, mod.data, mod.len);
        if (token_decode(keys, exact, mod.len, &d, &why) == 0) {
            /* only if nothing changed after all */
            assert_int_equal(mod.len, text.len);
            assert_memory_equal(mod.data, text.data, text.len);
            token_release(&d);
        }
        free(exact);
    }
    token_keys_free(keys);
    buf_release(&text);
    buf_release(&mod);
    buf_release(&why);
}

/* Threads share keys: encode, decode and mark at once. */
static void *worker(void *arg)
{
    const struct token_keys *keys = arg;
    struct token t = round_cases[0].t, d;
    struct buf text, why, m;
    int ok = 1;

    buf_init(&text, 256);
    buf_init(&why, 64);
    buf_init(&m, 64);
    for (int i = 0; i < 300 && ok; i++) {
        t.group = (uint32_t)i;
        buf_reset(&text);
        buf_reset(&m);
        ok = token_encode(keys, &t, &text, &why) == 0 &&
             token_decode(keys, text.data, text.len, &d, &why) == 0 &&
             d.group == (uint32_t)i;
        if (ok)
            token_release(&d);
        token_mac(keys, text.data, text.len, &m);
        ok = ok && token_mac_check(keys, text.data, text.len, m.data, m.len) == 1;
    }
    buf_release(&text);
    buf_release(&why);
    buf_release(&m);
    return ok ? arg : NULL;
}

static void test_threads(void **state)
{
    struct token_keys *keys = keys_of("1:" HEX_A);
    pthread_t th[4];

    (void)state;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker, keys), 0);
    for (int i = 0; i < 4; i++) {
        void *res;

        assert_int_equal(pthread_join(th[i], &res), 0);
        assert_ptr_equal(res, keys);
    }
    token_keys_free(keys);
}

/* nonce_of - the 12 nonce bytes of a token's text (after version and key id) */
static void nonce_of(const struct buf *text, unsigned char nonce[12])
{
    struct buf raw;

    buf_init(&raw, 256);
    unb64url(text->data, text->len, &raw);
    assert_true(raw.len > 14);
    memcpy(nonce, raw.data + 2, 12);
    buf_release(&raw);
}

/*
 * test_nonces - nonces come from per-thread batches: never the same twice
 * (over several batches), and a child after fork() never uses the parent's
 * (it drops its batch)
 */
static void test_nonces(void **state)
{
    struct token_keys *keys = keys_of("1:" HEX_A);
    struct token t = {TOKEN_CLICK, 0, 0, "default", "m", "a@example.com", NULL, 0};
    struct buf text, why;
    enum { N = 300 };
    static unsigned char seen[N + 1][12];
    int fds[2];

    (void)state;
    buf_init(&text, 256);
    buf_init(&why, 64);
    for (int i = 0; i < N; i++) {
        buf_reset(&text);
        assert_int_equal(token_encode(keys, &t, &text, &why), 0);
        nonce_of(&text, seen[i]);
        for (int j = 0; j < i; j++)
            assert_memory_not_equal(seen[i], seen[j], 12);
    }
    /* the parent's next nonce, and the child's first: not the same */
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        unsigned char nc[12];
        buf_reset(&text);
        if (token_encode(keys, &t, &text, &why) < 0)
            _exit(1);
        nonce_of(&text, nc);
        _exit(write(fds[1], nc, 12) == 12 ? 0 : 1);
    }
    unsigned char child[12];
    int st;
    close(fds[1]);
    assert_int_equal(read(fds[0], child, 12), 12);
    close(fds[0]);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    buf_reset(&text);
    assert_int_equal(token_encode(keys, &t, &text, &why), 0);
    nonce_of(&text, seen[N]);
    assert_memory_not_equal(child, seen[N], 12);
    for (int j = 0; j < N; j++)
        assert_memory_not_equal(child, seen[j], 12);
    buf_release(&text);
    buf_release(&why);
    token_keys_free(keys);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),     cmocka_unit_test(test_created_now),
        cmocka_unit_test(test_limits),        cmocka_unit_test(test_text),
        cmocka_unit_test(test_tamper),        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_key_text),      cmocka_unit_test(test_key_file),
        cmocka_unit_test(test_key_line),      cmocka_unit_test(test_mac),
        cmocka_unit_test(test_purpose_names), cmocka_unit_test(test_sealed),
        cmocka_unit_test(test_mac_layout),    cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_threads),       cmocka_unit_test(test_nonces),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
