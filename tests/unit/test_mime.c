/*
 * test_mime - MIME walked in place and rewritten part by part: parameters
 * (quoted, commented, RFC 2231), nested multiparts with their leaves'
 * types, encodings and exact bodies, signed and encrypted parts left alone,
 * quoted-printable and base64 decoded and re-encoded (round trips over
 * random bytes, line lengths), long 7bit lines broken at a space, and a
 * rewrite that changes one part and leaves every other byte as it was.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mime.h"

static const char nested[] =
    "From: a@example.com\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"outer\" (a comment)\r\n"
    "\r\n"
    "preamble\r\n"
    "--outer\r\n"
    "Content-Type: multipart/alternative;\r\n"
    "\tboundary=inner\r\n"
    "\r\n"
    "--inner\r\n"
    "Content-Type: text/plain; charset=UTF-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "caf=C3=A9 https://example.com/a=\r\n"
    "b\r\n"
    "--inner\r\n"
    "Content-Type: text/html; charset=\"iso-8859-1\"\r\n"
    "\r\n"
    "<a href=\"https://example.com/\">x</a>\r\n"
    "--inner--\r\n"
    "--outer\r\n"
    "Content-Type: application/pdf; name=\"r.pdf\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "JVBERi0=\r\n"
    "--outer\r\n"
    "Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; "
    "boundary=s\r\n"
    "\r\n"
    "--s\r\n"
    "Content-Type: text/html\r\n"
    "\r\n"
    "<a href=\"https://signed/\">s</a>\r\n"
    "--s--\r\n"
    "--outer\r\n"
    "\r\n"
    "a part without a header\r\n"
    "--outer--\r\n"
    "epilogue\r\n";

struct seen {
    char list[1024];
    const char *msg;
};

static int note_part(const struct mime_part *p, void *ctx)
{
    struct seen *s = ctx;
    char one[256];

    snprintf(one, sizeof(one), "%s/%s;%s;%d;%d;%d;[%.*s]\n", p->type, p->subtype,
             p->charset, (int)p->cte, p->attachment, p->depth, (int)p->body_len,
             s->msg + p->body_start);
    strncat(s->list, one, sizeof(s->list) - strlen(s->list) - 1);
    return 0;
}

static void test_walk(void **state)
{
    struct seen s = {"", nested};
    struct buf skipped;

    (void)state;
    buf_init(&skipped, 64);
    assert_int_equal(mime_walk(nested, strlen(nested), note_part, &s, &skipped), 0);
    assert_string_equal(
        s.list, "text/plain;utf-8;3;0;2;[caf=C3=A9 https://example.com/a=\r\nb]\n"
                "text/html;iso-8859-1;0;0;2;[<a href=\"https://example.com/\">x</a>]\n"
                "application/pdf;;4;1;1;[JVBERi0=]\n"
                "text/plain;;0;0;1;[a part without a header]\n");
    assert_non_null(strstr(skipped.data, "multipart/signed left alone"));
    buf_release(&skipped);
}

static void test_single(void **state)
{
    const char *m = "Subject: x\r\n\r\nbody\r\n";
    struct seen s = {"", NULL};

    (void)state;
    s.msg = m;
    mime_walk(m, strlen(m), note_part, &s, NULL);
    assert_string_equal(s.list, "text/plain;;0;0;0;[body\r\n]\n");
}

static void test_params(void **state)
{
    struct buf v;
    const char *ct = "multipart/mixed; a=1; boundary=\"b;c \\\"q\\\"\" (c); x=y";
    const char *cd = "attachment; filename*0*=utf-8''caf%C3%A9%20; filename*1=menu.pdf; "
                     "filename=\"fallback.pdf\"";

    (void)state;
    buf_init(&v, 16);
    assert_int_equal(mime_param(ct, strlen(ct), "boundary", &v), 1);
    assert_string_equal(v.data, "b;c \"q\"");
    assert_int_equal(mime_param(ct, strlen(ct), "x", &v), 1);
    assert_string_equal(v.data, "y");
    assert_int_equal(mime_param(ct, strlen(ct), "charset", &v), 0);
    assert_int_equal(mime_param(cd, strlen(cd), "filename", &v), 1);
    assert_string_equal(v.data, "caf\xc3\xa9 menu.pdf");
    buf_release(&v);
}

static void test_qp(void **state)
{
    struct buf out, back;
    const char *enc = "a=3Db  \r\nsoft=\r\nbreak =\r\nend=C3=A9=\r\n";

    (void)state;
    buf_init(&out, 64);
    buf_init(&back, 64);
    mime_decode(MIME_QP, enc, strlen(enc), &out);
    assert_string_equal(out.data, "a=b\r\nsoftbreak end\xc3\xa9");
    /* round trips of random bytes and lines: decoded back, every line within 76 */
    srand(7);
    for (int round = 0; round < 200; round++) {
        char text[600];
        size_t n = (size_t)(rand() % (int)sizeof(text));
        for (size_t i = 0; i < n; i++) {
            int r = rand() % 10;
            text[i] = r < 6   ? (char)('a' + rand() % 26)
                      : r < 7 ? ' '
                              : (char)(rand() % 256);
            if (r == 9 && i + 1 < n) {
                text[i++] = '\r';
                text[i] = '\n';
            }
        }
        buf_reset(&out);
        buf_reset(&back);
        mime_encode(MIME_QP, text, n, &out);
        for (const char *l = out.data; l < out.data + out.len;) {
            const char *e = strstr(l, "\r\n");
            size_t ll = e ? (size_t)(e - l) : strlen(l);
            assert_true(ll <= 76);
            assert_false(ll > 0 && (l[ll - 1] == ' ' || l[ll - 1] == '\t'));
            l += ll + (e ? 2 : 0);
        }
        mime_decode(MIME_QP, out.data, out.len, &back);
        assert_int_equal(back.len, n);
        assert_memory_equal(back.data, text, n);
    }
    buf_release(&out);
    buf_release(&back);
}

static void test_base64(void **state)
{
    struct buf out, back;
    unsigned char data[1000];

    (void)state;
    buf_init(&out, 64);
    buf_init(&back, 64);
    for (size_t n = 0; n < sizeof(data); n += 37) {
        for (size_t i = 0; i < n; i++)
            data[i] = (unsigned char)(i * 7 + n);
        buf_reset(&out);
        buf_reset(&back);
        mime_encode(MIME_BASE64, (const char *)data, n, &out);
        for (size_t i = 0; i < out.len; i += 78)
            assert_true(out.len - i <= 76 || memcmp(out.data + i + 76, "\r\n", 2) == 0);
        mime_decode(MIME_BASE64, out.data, out.len, &back);
        assert_int_equal(back.len, n);
        assert_memory_equal(back.data, data, n);
    }
    buf_release(&out);
    buf_release(&back);
}

static void test_long_lines(void **state)
{
    char line[2100];
    struct buf out;

    (void)state;
    buf_init(&out, 64);
    memset(line, 'x', sizeof(line));
    line[900] = ' ';
    line[1500] = ' ';
    assert_int_equal(mime_encode(MIME_7BIT, line, 2000, &out), 0);
    assert_int_equal(out.len, 2000 + 2); /* two spaces became two CRLFs */
    assert_memory_equal(out.data + 900, "\r\n", 2);
    buf_reset(&out);
    memset(line, 'y', sizeof(line));
    assert_int_equal(mime_encode(MIME_8BIT, line, 1200, &out),
                     1); /* no space: reported */
    buf_release(&out);
}

static int upper_html(const struct mime_part *p, const struct buf *dec, struct buf *next,
                      void *ctx, struct buf *why)
{
    (void)ctx;
    (void)why;
    if (strcmp(p->subtype, "plain") != 0 || p->depth != 2)
        return 0;
    for (size_t i = 0; i < dec->len; i++)
        buf_putc(next, dec->data[i] >= 'a' && dec->data[i] <= 'z' ? dec->data[i] - 32
                                                                  : dec->data[i]);
    return 1;
}

static int nothing(const struct mime_part *p, const struct buf *dec, struct buf *next,
                   void *ctx, struct buf *why)
{
    (void)p;
    (void)dec;
    (void)next;
    (void)ctx;
    (void)why;
    return 0;
}

static void test_rewrite(void **state)
{
    struct buf out, why;
    int changed;
    const char *was = "caf=C3=A9 https://example.com/a=\r\nb";
    const char *now = "CAF=C3=A9 HTTPS://EXAMPLE.COM/AB";
    const char *at = strstr(nested, was);

    (void)state;
    buf_init(&out, 64);
    buf_init(&why, 64);
    assert_int_equal(
        mime_rewrite(nested, strlen(nested), nothing, NULL, &out, &changed, &why), 0);
    assert_int_equal(changed, 0);
    assert_int_equal(out.len, strlen(nested));
    assert_memory_equal(out.data, nested, out.len);
    assert_int_equal(
        mime_rewrite(nested, strlen(nested), upper_html, NULL, &out, &changed, &why), 0);
    assert_int_equal(changed, 1);
    /* before and after the part, byte for byte */
    assert_memory_equal(out.data, nested, (size_t)(at - nested));
    assert_memory_equal(out.data + (at - nested), now, strlen(now));
    assert_string_equal(out.data + (at - nested) + strlen(now), at + strlen(was));
    buf_release(&out);
    buf_release(&why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_walk),    cmocka_unit_test(test_single),
        cmocka_unit_test(test_params),  cmocka_unit_test(test_qp),
        cmocka_unit_test(test_base64),  cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_rewrite),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
