/*
 * test_track - the tracking filters on one part's text: which links go
 * through the tracker (http and https hrefs, quoted or not, entities
 * decoded; not mailto, tel, fragments, clicktracking=off, the tracker's
 * own, beyond the limit), utm parameters added once with the fragment last,
 * bare URLs in plain text without their trailing punctuation, the pixel at
 * its replace tag or before </body> or at the end, the subscription footer
 * or its replace tag, the footer, the ASM tags, and text left as it was
 * when nothing applies.
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

#include "track.h"

/* a tracked URL that shows what it was made from: https://t.test/c/[URL] */
static int fake_click(void *ctx, const char *url, size_t len, struct buf *out,
                      struct buf *why)
{
    (void)ctx;
    (void)why;
    buf_puts(out, "https://t.test/c/[");
    buf_append(out, url, len);
    buf_putc(out, ']');
    return 0;
}

static struct track_env env = {
    .tracker = "https://t.test/",
    .unsub_url = "https://t.test/u/U",
    .global_url = "https://t.test/u/G",
    .prefs_url = "https://t.test/p/P",
    .open_url = "https://t.test/o/O",
    .click = fake_click,
};

static struct smtpapi_filters filters(void)
{
    struct smtpapi_opts o;
    smtpapi_init(&o);
    return o.filters;
}

static char *html(const struct smtpapi_filters *f, const char *in, int *rc)
{
    struct buf out, why;
    struct track_count n = {0, 0, 0, 0, 0};

    buf_init(&out, 64);
    buf_init(&why, 64);
    *rc = track_html(f, &env, in, strlen(in), &out, &n, &why);
    buf_release(&why);
    char *r = buf_steal(&out);
    buf_release(&out);
    return r;
}

static void test_clicks(void **state)
{
    struct smtpapi_filters f = filters();
    int rc;
    char *got;

    (void)state;
    f.clicktrack.enable = 1;
    got = html(&f,
               "<a href=\"https://shop.example/?a=1&amp;b=2\">x</a>"
               "<a href=http://x.example/>y</a>"
               "<a href='mailto:a@b'>m</a><a href=\"tel:1\">t</a><a href=\"#top\">f</a>"
               "<a href=\"https://x.example/o\" clicktracking=off>o</a>"
               "<a href=\"https://t.test/u/U\">own</a>"
               "<a href=\" https://sp.example/\n \">s</a>",
               &rc);
    assert_int_equal(rc, 1);
    assert_string_equal(
        got, "<a href=\"https://t.test/c/[https://shop.example/?a=1&amp;b=2]\">x</a>"
             "<a href=\"https://t.test/c/[http://x.example/]\">y</a>"
             "<a href='mailto:a@b'>m</a><a href=\"tel:1\">t</a><a href=\"#top\">f</a>"
             "<a href=\"https://x.example/o\" clicktracking=off>o</a>"
             "<a href=\"https://t.test/u/U\">own</a>"
             "<a href=\"https://t.test/c/[https://sp.example/]\">s</a>");
    free(got);
}

static void test_limit(void **state)
{
    struct smtpapi_filters f = filters();
    struct buf in, out, why;
    struct track_count n = {0, 0, 0, 0, 0};

    (void)state;
    f.clicktrack.enable = 1;
    buf_init(&in, 64);
    buf_init(&out, 64);
    buf_init(&why, 64);
    for (int i = 0; i < TRACK_MAX_LINKS + 5; i++)
        buf_printf(&in, "<a href=\"https://e.example/%d\">%d</a>\n", i, i);
    assert_int_equal(track_html(&f, &env, in.data, in.len, &out, &n, &why), 1);
    assert_int_equal(n.links, TRACK_MAX_LINKS);
    assert_int_equal(n.skipped, 5);
    assert_non_null(strstr(out.data, "[https://e.example/999]"));
    assert_non_null(strstr(out.data, "<a href=\"https://e.example/1000\">"));
    buf_release(&in);
    buf_release(&out);
    buf_release(&why);
}

static void test_utm(void **state)
{
    struct smtpapi_filters f = filters();
    struct buf out;

    (void)state;
    buf_init(&out, 64);
    f.ganalytics.utm_source = "news letter";
    f.ganalytics.utm_campaign = "spring&sale";
    track_utm(&f, "https://e.example/p#frag", 24, &out);
    assert_string_equal(
        out.data,
        "https://e.example/p?utm_source=news%20letter&utm_campaign=spring%26sale#frag");
    track_utm(&f, "https://e.example/p?utm_source=app&x=1", 38, &out);
    assert_string_equal(
        out.data, "https://e.example/p?utm_source=app&x=1&utm_campaign=spring%26sale");
    track_utm(&f, "https://e.example/p?", 20, &out);
    assert_string_equal(
        out.data,
        "https://e.example/p?utm_source=news%20letter&utm_campaign=spring%26sale");
    buf_release(&out);
}

static void test_pixel_and_footers(void **state)
{
    struct smtpapi_filters f = filters();
    int rc;
    char *got;

    (void)state;
    f.opentrack.enable = 1;
    got = html(&f, "<body>x</body></html>", &rc);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(got, "x<img src=\"https://t.test/o/O\""));
    assert_non_null(strstr(got, "/></body></html>"));
    free(got);
    got = html(&f, "no body", &rc);
    assert_true(strncmp(got, "no body<img src=", 16) == 0);
    free(got);
    f.opentrack.replace = "%open%";
    got = html(&f, "<p>%open%</p></body>", &rc);
    assert_true(strncmp(got, "<p><img src=\"https://t.test/o/O\"", 31) == 0);
    assert_non_null(strstr(got, "/></p></body>"));
    free(got);
    f.opentrack.enable = 0;

    f.subscriptiontrack.enable = 1;
    f.subscriptiontrack.text_html = "<p>Bye: <% leave %></p>";
    f.footer.enable = 1;
    f.footer.text_html = "<p>Acme Ltd</p>";
    got = html(&f, "<body>x</body>", &rc);
    assert_string_equal(got, "<body>x<p>Bye: <a href=\"https://t.test/u/U\">leave</a></p>"
                             "<p>Acme Ltd</p></body>");
    free(got);
    f.subscriptiontrack.replace = "[unsub]";
    got = html(&f, "<a href=\"[unsub]\">u</a> <%asm_preferences_raw_url%></body>", &rc);
    assert_string_equal(got, "<a href=\"https://t.test/u/U\">u</a> https://t.test/p/P"
                             "<p>Acme Ltd</p></body>");
    free(got);
}

static void test_text(void **state)
{
    struct smtpapi_filters f = filters();
    struct buf out, why;
    struct track_count n = {0, 0, 0, 0, 0};
    const char *in = "See https://e.example/a.html. Or (https://e.example/b_(c)), "
                     "xhttps://no.example, <https://e.example/d>\r\n";

    (void)state;
    buf_init(&out, 64);
    buf_init(&why, 64);
    f.clicktrack.enable = 1;
    assert_int_equal(track_text(&f, &env, in, strlen(in), &out, &n, &why), 0);
    f.clicktrack.enable_text = 1;
    f.subscriptiontrack.enable = 1;
    f.subscriptiontrack.text_plain = "Leave:\n<% %>";
    assert_int_equal(track_text(&f, &env, in, strlen(in), &out, &n, &why), 1);
    assert_string_equal(
        out.data, "See https://t.test/c/[https://e.example/a.html]. "
                  "Or (https://t.test/c/[https://e.example/b_(c)]), "
                  "xhttps://no.example, <https://t.test/c/[https://e.example/d]>\r\n"
                  "\r\n\r\nLeave:\r\nhttps://t.test/u/U\r\n");
    buf_release(&out);
    buf_release(&why);
}

/*
 * the configured footers (UTF-8) put in the part's charset: HTML gets
 * character references, text the charset's bytes or '?' where it has no
 * such character; a UTF-8 part gets them as they are
 */
static void test_footer_charset(void **state)
{
    struct smtpapi_filters f = filters();
    struct track_env e = env;
    struct buf out, why;
    struct track_count n = {0, 0, 0, 0, 0};
    const char *text = "Hello\r\n";

    (void)state;
    buf_init(&out, 64);
    buf_init(&why, 64);
    f.footer.enable = 1;
    f.footer.text_html = "<p>Gr\xc3\xbc\xc3\x9f"
                         "e \xe2\x80\x93 Acme</p>";
    f.footer.text_plain = "Gr\xc3\xbc\xc3\x9f"
                          "e \xe2\x80\x93 Acme";
    e.charset = "iso-8859-1";
    assert_int_equal(track_html(&f, &e, "<body>x</body>", 14, &out, &n, &why), 1);
    assert_string_equal(out.data, "<body>x<p>Gr&#252;&#223;e &#8211; Acme</p></body>");
    assert_int_equal(track_text(&f, &e, text, strlen(text), &out, &n, &why), 1);
    assert_string_equal(out.data, "Hello\r\n\r\n\r\nGr\xfc\xdf"
                                  "e ? Acme\r\n");
    e.charset = NULL; /* US-ASCII */
    assert_int_equal(track_text(&f, &e, text, strlen(text), &out, &n, &why), 1);
    assert_string_equal(out.data, "Hello\r\n\r\n\r\nGr??e ? Acme\r\n");
    e.charset = "utf-8";
    assert_int_equal(track_html(&f, &e, "<body>x</body>", 14, &out, &n, &why), 1);
    assert_string_equal(out.data, "<body>x<p>Gr\xc3\xbc\xc3\x9f"
                                  "e \xe2\x80\x93 Acme</p></body>");
    buf_release(&out);
    buf_release(&why);
}

static void test_nothing(void **state)
{
    struct smtpapi_filters f = filters();
    int rc;
    char *got;

    (void)state;
    got = html(&f, "<a href=\"https://e.example/\">x</a></body>", &rc);
    assert_int_equal(rc, 0);
    free(got);
    f.clicktrack.enable = 1;
    got = html(&f, "<a href=\"mailto:x@y\">x</a></body>", &rc);
    assert_int_equal(rc, 0);
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clicks),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_utm),
        cmocka_unit_test(test_pixel_and_footers),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_nothing),
        cmocka_unit_test(test_footer_charset),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
