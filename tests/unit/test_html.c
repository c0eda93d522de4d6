/*
 * test_html - lib/html's links, table-driven: which <a href> a browser
 * would follow (quoting, case, lines, comments, raw text, select, SVG and
 * its integration points, a tag cut off at the end), where the value
 * stands (inside its quotes), what it decodes to, clicktracking=off, the
 * last </body>, and a scan stopped by the callback.  The corpus test
 * (tests/integration/html_links.sh) holds it to gumbo over whole
 * newsletters; these pin the rules one by one.
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

#include "html.h"

/* "VALUE|RAW|off" per link, ';'-separated, into out */
static int collect(const struct html_link *l, void *ctx)
{
    struct buf *out = ctx;

    if (out->len)
        buf_putc(out, ';');
    buf_append(out, l->value->data, l->value->len);
    buf_printf(out, "|%zu+%zu%s%s", l->start, l->len,
               l->quote == '"'    ? "dq"
               : l->quote == '\'' ? "sq"
                                  : "",
               l->tracking_off ? "|off" : "");
    return 0;
}

static char *links_of(const char *html, struct html_doc *doc)
{
    struct buf out;
    struct html_doc d;

    buf_init(&out, 64);
    char *r;

    html_links(html, strlen(html), collect, &out, doc ? doc : &d);
    r = buf_steal(&out);
    buf_release(&out);
    return r;
}

static void test_links(void **state)
{
    static const struct {
        const char *html, *want;
    } cases[] = {
        {"<a href=\"https://x/\">x</a>", "https://x/|9+10dq"},
        {"<a href='https://x/'>", "https://x/|9+10sq"},
        {"<a href=https://x/>", "https://x/|8+10"},
        {"<A HREF=\"h\">", "h|9+1dq"},
        {"<a\n  class=b\r\n  href = \"h\"\n>", "h|24+1dq"},
        {"<a href=\"1\" href=\"2\">", "1|9+1dq"},
        {"<a/href=\"h\">", "h|9+1dq"},
        {"<a href=\"h\"title=\"t\">", "h|9+1dq"},
        {"<a href=\"?a=1&amp;b=2&#38;c&#x26;d\">", "?a=1&b=2&c&d|9+25dq"},
        {"<a href=\"?x&copy=1&ampy&amp\">", "?x&copy=1&ampy&|9+18dq"},
        {"<a href=\"&#128;&#0;&#xD800;\">",
         "\xe2\x82\xac\xef\xbf\xbd\xef\xbf\xbd|9+18dq"},
        {"<a href>", "|7+0"},
        {"<a name=top>", ""},
        {"<a href=h clicktracking=off>", "h|8+1|off"},
        {"<a clicktracking=\"OFF\" href=h>", "h|28+1|off"},
        {"<a href=h clicktracking=on>", "h|8+1"},
        {"<!-- <a href=c> --><a href=h>", "h|27+1"},
        {"<!--> <a href=h>", "h|14+1"},
        {"<!-- --!> <a href=h>", "h|18+1"},
        {"<!--[if mso]><a href=v><![endif]-->", ""},
        {"<script>\"<a href=s>\"</script ><a href=h>", "h|38+1"},
        {"<script><!--<script></script><a href=s>--></script><a href=h>", "h|59+1"},
        {"<style>a{}</style><a href=h>", "h|26+1"},
        {"<title><a href=t></title><a href=h>", "h|33+1"},
        {"<textarea><a href=t></TEXTAREA><a href=h>", "h|39+1"},
        {"<select><a href=s></select><a href=h>", "h|35+1"},
        {"<svg><a href=s></a></svg><a href=h>", "h|33+1"},
        {"<svg><foreignObject><a href=f></foreignObject></svg>", "f|28+1"},
        {"<svg><p><a href=b>", "b|16+1"},
        {"<svg/><a href=h>", "h|14+1"},
        {"<a href=\"cut", ""},
        {"<a href=h", ""},
        {"< a href=x><a href=h>", "h|19+1"},
        {"<plaintext><a href=p>", ""},
        {"<!DOCTYPE html><?xml?><![CDATA[<a href=c>]]><a href=h>", "h|52+1"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = links_of(cases[i].html, NULL);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("%s: got \"%s\", want \"%s\"", cases[i].html, got, cases[i].want);
        free(got);
    }
}

static void test_body_end(void **state)
{
    struct html_doc doc;
    char *got;

    (void)state;
    got = links_of("<body><a href=h></body></html>", &doc);
    assert_int_equal(doc.body_end, 16);
    assert_int_equal(doc.html_end, 23);
    assert_int_equal(doc.nlinks, 1);
    free(got);
    got =
        links_of("<body><!-- </body> --><script></body></script>x</body >y</body>", &doc);
    assert_int_equal(doc.body_end, 56);
    free(got);
    got = links_of("no markup at all", &doc);
    assert_int_equal(doc.body_end, -1);
    assert_int_equal(doc.html_end, -1);
    assert_int_equal(doc.nlinks, 0);
    free(got);
}

static int stop_at_second(const struct html_link *l, void *ctx)
{
    int *n = ctx;
    (void)l;
    return ++*n == 2 ? 7 : 0;
}

static void test_stop(void **state)
{
    const char *html = "<a href=1><a href=2><a href=3>";
    struct html_doc doc;
    int n = 0;

    (void)state;
    assert_int_equal(html_links(html, strlen(html), stop_at_second, &n, &doc), 7);
    assert_int_equal(n, 2);
}

static void test_decode(void **state)
{
    struct buf out;

    (void)state;
    buf_init(&out, 16);
    html_decode_attr("a\r\nb\rc\0d&notin;&notit;&lt&#x1F600;", 34, &out);
    assert_string_equal(out.data, "a\nb\nc\xef\xbf\xbd"
                                  "d\xe2\x88\x89&notit;<\xf0\x9f\x98\x80");
    buf_release(&out);
}

/* no read past the end: every prefix of a document with every construct */
static void test_prefixes(void **state)
{
    const char *doc =
        "<!DOCTYPE x><!-- c --><svg><![CDATA[x]]><desc><a href='d'></desc>"
        "</svg><select><a href=s></select><script><!--<script>x</script>"
        "--></script><a href=\"&amp;&#x41;\" clicktracking=off>t</a></body>";
    size_t len = strlen(doc);

    (void)state;
    for (size_t n = 0; n <= len; n++) {
        char *copy = malloc(n ? n : 1); /* exactly n bytes: ASan sees an overread */
        struct html_doc d;
        memcpy(copy, doc, n);
        html_links(copy, n, NULL, NULL, &d);
        free(copy);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_links),    cmocka_unit_test(test_body_end),
        cmocka_unit_test(test_stop),     cmocka_unit_test(test_decode),
        cmocka_unit_test(test_prefixes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
