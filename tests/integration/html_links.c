/*
 * html_links - lib/html's links of an HTML file, printed as
 * html_links_gumbo prints gumbo's (see there for the format), so that
 * tests/integration/html_links.sh can compare the two line by line.
 *
 * Two things are done here only to print as gumbo does: a quoted value's
 * span is widened to include its quotes, and in a decoded value each byte
 * that is not UTF-8, and each control character but whitespace and each
 * noncharacter, is shown as U+FFFD (gumbo reads every file as UTF-8 and
 * replaces those; lib/html leaves bytes as they are).
 *
 *   html_links FILE
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "fdio.h"
#include "html.h"

/*
 * utf8_len - the length of the valid UTF-8 sequence at s, or 0 with *bad
 * the bytes that make one U+FFFD (the WHATWG decoder's maximal subpart)
 */
static size_t utf8_len(const unsigned char *s, size_t n, size_t *bad)
{
    size_t need, k;
    unsigned lo = 0x80, hi = 0xbf;

    *bad = 1;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        need = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        need = 3, lo = s[0] == 0xe0 ? 0xa0 : 0x80, hi = s[0] == 0xed ? 0x9f : 0xbf;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        need = 4, lo = s[0] == 0xf0 ? 0x90 : 0x80, hi = s[0] == 0xf4 ? 0x8f : 0xbf;
    else
        return 0;
    for (k = 1; k < need; k++) {
        if (k >= n || s[k] < lo || s[k] > hi) {
            *bad = k;
            return 0;
        }
        lo = 0x80, hi = 0xbf;
    }
    return need;
}

/*
 * gumbo_replaces - a character gumbo's input reader turns into U+FFFD:
 * controls other than whitespace, and noncharacters
 */
static int gumbo_replaces(const unsigned char *s, size_t n)
{
    unsigned cp = n == 1   ? s[0]
                  : n == 2 ? (s[0] & 0x1fu) << 6 | (s[1] & 0x3fu)
                  : n == 3 ? (s[0] & 0x0fu) << 12 | (s[1] & 0x3fu) << 6 | (s[2] & 0x3fu)
                           : (s[0] & 0x07u) << 18 | (s[1] & 0x3fu) << 12 |
                                 (s[2] & 0x3fu) << 6 | (s[3] & 0x3fu);
    return (cp >= 0x1 && cp <= 0x8) || cp == 0xb || (cp >= 0xe && cp <= 0x1f) ||
           (cp >= 0x7f && cp <= 0x9f) || (cp >= 0xfdd0 && cp <= 0xfdef) ||
           (cp & 0xfffe) == 0xfffe;
}

/*
 * gumbo_input - the bytes as gumbo's input reader passes them on: each byte
 * that is not UTF-8, and each control character but whitespace and each
 * noncharacter, as U+FFFD
 */
static void gumbo_input(const char *v, size_t len, struct buf *out)
{
    const unsigned char *s = (const unsigned char *)v;
    size_t i = 0;

    while (i < len) {
        size_t bad, n = utf8_len(s + i, len - i, &bad);
        if (n == 0 || gumbo_replaces(s + i, n)) {
            buf_puts(out, "\xef\xbf\xbd");
            i += n ? n : bad;
        } else {
            buf_append(out, v + i, n);
            i += n;
        }
    }
}

static void put_escaped(const struct buf *b)
{
    for (size_t i = 0; i < b->len; i++) {
        unsigned char c = (unsigned char)b->data[i];
        if (c < 0x20 || c == 0x7f || c == '\\' || c >= 0x80)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
}

/* put_value - a raw attribute value as gumbo decodes it */
static void put_value(const char *file, size_t start, size_t len)
{
    struct buf raw, dec;

    buf_init(&raw, len + 1);
    buf_init(&dec, len + 1);
    gumbo_input(file + start, len, &raw);
    html_decode_attr(raw.data, raw.len, &dec);
    put_escaped(&dec);
    buf_release(&raw);
    buf_release(&dec);
}

static int print_link(const struct html_link *l, void *ctx)
{
    const char *file = ctx;

    if (l->quote)
        printf("%zu\t%zu\t", l->start - 1, l->len + 2);
    else
        printf("%zu\t%zu\t", l->start, l->len);
    put_value(file, l->start, l->len);
    putchar('\t');
    if (l->clicktracking)
        put_value(file, l->ct_start, l->ct_len);
    putchar('\n');
    return 0;
}

int main(int argc, char **argv)
{
    struct buf in, why;
    struct html_doc doc;

    if (argc != 2) {
        fprintf(stderr, "usage: html_links FILE\n");
        return 2;
    }
    buf_init(&in, 65536);
    buf_init(&why, 64);
    if (fd_read_file(argv[1], &in, &why) < 0) {
        fprintf(stderr, "html_links: %s\n", buf_str(&why));
        return 2;
    }
    html_links(in.data, in.len, print_link, in.data, &doc);
    buf_release(&in);
    buf_release(&why);
    return 0;
}
