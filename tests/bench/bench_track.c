/*
 * bench_track - the tracking rewrite's rate on one core (issue "Tracking"):
 * a newsletter (an HTML file, 63 KiB with 79 links for the bar) made a
 * multipart/alternative message, its text/plain and text/html parts
 * quoted-printable, rewritten for one recipient with click tracking, open
 * tracking and the subscription footer on, every link's URL a real click
 * token (lib/token, ChaCha20-Poly1305), as the pipeline makes them.
 * Printed beside it, in the same run: the same message only decoded and
 * re-encoded (mime_rewrite with every part "changed" to itself), which is
 * what any rewrite of the message costs before tracking does anything.
 *
 *   bench_track HTMLFILE SECONDS
 *
 * Output: one line, rewrite_per_s=R recode_per_s=C links=N bytes=B
 * out_bytes=O.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "fdio.h"
#include "mime.h"
#include "token.h"
#include "track.h"

static const struct token_keys *keys;

static int click(void *ctx, const char *url, size_t len, struct buf *out, struct buf *why)
{
    struct token t;

    (void)ctx;
    memset(&t, 0, sizeof(t));
    t.purpose = TOKEN_CLICK;
    t.group = 7;
    t.tenant = "default";
    t.message = "4B2C1A7F3D";
    t.recipient = "someone@example.org";
    t.data = (unsigned char *)url;
    t.data_len = len;
    buf_puts(out, "https://t.example.net/c/");
    return token_encode(keys, &t, out, why);
}

static struct smtpapi_filters filters;
static struct track_env env = {
    .tracker = "https://t.example.net/",
    .unsub_url =
        "https://t.example.net/u/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    .global_url = "https://t.example.net/u/BBBB",
    .prefs_url = "https://t.example.net/p/CCCC",
    .open_url =
        "https://t.example.net/o/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    .click = click,
};

static int rewrite(const struct mime_part *p, const struct buf *dec, struct buf *next,
                   void *ctx, struct buf *why)
{
    struct track_count *n = ctx;

    if (strcmp(p->type, "text") != 0 || p->attachment)
        return 0;
    if (strcmp(p->subtype, "html") == 0)
        return track_html(&filters, &env, dec->data, dec->len, next, n, why);
    return track_text(&filters, &env, dec->data, dec->len, next, n, why);
}

static int recode(const struct mime_part *p, const struct buf *dec, struct buf *next,
                  void *ctx, struct buf *why)
{
    (void)p;
    (void)ctx;
    (void)why;
    buf_append(next, dec->data, dec->len);
    return 1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* rate - messages per second of fn over msg for about seconds */
static double rate(const struct buf *msg, mime_rewrite_fn fn, double seconds,
                   struct track_count *n, size_t *out_len)
{
    struct buf out, why;
    long count = 0;
    double t0 = now(), t;

    buf_init(&out, msg->len * 2);
    buf_init(&why, 64);
    do {
        int changed;
        memset(n, 0, sizeof(*n));
        if (mime_rewrite(msg->data, msg->len, fn, n, &out, &changed, &why) < 0) {
            fprintf(stderr, "bench_track: %s\n", buf_str(&why));
            exit(1);
        }
        count++;
        t = now() - t0;
    } while (t < seconds);
    *out_len = out.len;
    buf_release(&out);
    buf_release(&why);
    return (double)count / t;
}

int main(int argc, char **argv)
{
    struct buf html, msg, why, keytext;
    struct track_count cnt;
    size_t out_len, recode_len;

    if (argc != 3) {
        fprintf(stderr, "usage: bench_track HTMLFILE SECONDS\n");
        return 2;
    }
    buf_init(&html, 65536);
    buf_init(&why, 64);
    if (fd_read_file(argv[1], &html, &why) < 0) {
        fprintf(stderr, "bench_track: %s\n", buf_str(&why));
        return 2;
    }
    buf_init(&keytext, 128);
    token_key_line(1, &keytext);
    if ((keys = token_keys_from_text(keytext.data, keytext.len, &why)) == NULL) {
        fprintf(stderr, "bench_track: %s\n", buf_str(&why));
        return 1;
    }
    /* the message: a short text part and the HTML, both quoted-printable */
    buf_init(&msg, html.len * 2);
    buf_puts(&msg, "From: News <news@shop.example>\r\nTo: someone@example.org\r\n"
                   "Subject: bench\r\nMIME-Version: 1.0\r\n"
                   "Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n"
                   "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
    mime_encode(MIME_QP,
                "Our spring catalogue is out: https://shop.example/spring\r\n"
                "Read it online: https://shop.example/online?id=42\r\n",
                106, &msg);
    buf_puts(&msg, "\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n"
                   "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
    /* the file's LF lines as CRLF */
    struct buf crlf;
    buf_init(&crlf, html.len + 4096);
    for (size_t i = 0; i < html.len; i++) {
        if (html.data[i] == '\n' && (i == 0 || html.data[i - 1] != '\r'))
            buf_putc(&crlf, '\r');
        buf_putc(&crlf, html.data[i]);
    }
    mime_encode(MIME_QP, crlf.data, crlf.len, &msg);
    buf_puts(&msg, "\r\n--b1--\r\n");

    memset(&filters, 0, sizeof(filters));
    filters.clicktrack.enable = 1;
    filters.clicktrack.enable_text = 1;
    filters.opentrack.enable = 1;
    filters.subscriptiontrack.enable = 1;
    double secs = atof(argv[2]);
    double r = rate(&msg, rewrite, secs, &cnt, &out_len);
    unsigned links = cnt.links;
    double c = rate(&msg, recode, secs, &cnt, &recode_len);
    printf("rewrite_per_s=%.1f recode_per_s=%.1f links=%u bytes=%zu out_bytes=%zu\n", r,
           c, links, msg.len, out_len);
    token_keys_free((struct token_keys *)keys);
    buf_release(&html);
    buf_release(&crlf);
    buf_release(&msg);
    buf_release(&why);
    buf_release(&keytext);
    return 0;
}
