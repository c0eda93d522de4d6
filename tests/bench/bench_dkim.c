/*
 * bench_dkim - DKIM signatures per second on one core, as the milter makes
 * them: header fields one by one, the body in 64 KiB pieces, then the
 * signature (canonicalisation, body hash, header hash, private-key
 * operation, base64, folding).
 *
 *   bench_dkim KEYFILE SIZE SECONDS
 *
 * Prints "sigs_per_s=N us_per_sig=T" for a message of SIZE bytes, header
 * (11 fields, 10 of them signed) and a realistic text body (72-character
 * lines, words and spaces, some blank lines) together; relaxed/relaxed, the
 * default header list.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dkim.h"

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    static const char *const fields[] = {
        "From: Example News <news@example.com>\r\n",
        "To: Jane Doe <jane@example.net>\r\n",
        "Subject: Your weekly digest: twelve new articles\r\n",
        "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n",
        "Message-ID: <20261123100000.12345@mail.example.com>\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: text/plain; charset=utf-8\r\n",
        "Content-Transfer-Encoding: 8bit\r\n",
        "List-Unsubscribe: <https://u.example.com/u/abcdef>, <mailto:u@example.com>\r\n",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        "Received: from app.example.com (app.example.com [192.0.2.1])\r\n"
        "\tby mail.example.com (Postfix) with ESMTP id 4ABC123\r\n",
    };
    static const char *const words[] = {"the",      "quick", "brown",   "fox",   "jumps",
                                        "over",     "lazy",  "dog",     "mail",  "server",
                                        "delivery", "news,", "weekly.", "links", "a"};
    struct buf why, field, body;
    struct dkim_key *key;
    struct dkim_params p;
    size_t size, hsize = 2; /* the empty line */
    double seconds, t0, t;
    long n = 0;
    unsigned seed = 1;

    if (argc != 4) {
        fprintf(stderr, "usage: bench_dkim KEYFILE SIZE SECONDS\n");
        return 2;
    }
    size = (size_t)atol(argv[2]);
    seconds = atof(argv[3]);
    buf_init(&why, 128);
    buf_init(&field, 1024);
    buf_init(&body, size + 128);
    if ((key = dkim_key_load(argv[1], "example.com", "bench", &why)) == NULL) {
        fprintf(stderr, "bench_dkim: %s\n", buf_str(&why));
        return 1;
    }
    size_t flen[sizeof(fields) / sizeof(fields[0])];

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        hsize += flen[i] = strlen(fields[i]);
    size = size > hsize ? size - hsize : 0;
    /* the body: lines of words up to 72 columns, a blank line now and then */
    while (body.len < size) {
        size_t col = 0;

        while (col < 66) {
            const char *w = words[rand_r(&seed) % 15];

            if (col)
                buf_putc(&body, ' ');
            buf_puts(&body, w);
            col += strlen(w) + 1;
        }
        buf_puts(&body, rand_r(&seed) % 10 == 0 ? "\r\n\r\n" : "\r\n");
    }
    buf_truncate(&body, size);
    dkim_params_init(&p);
    t0 = now();
    do {
        for (int rep = 0; rep < 16; rep++) {
            struct dkim_sign *ds = dkim_sign_new(key, &p);

            for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
                dkim_sign_header(ds, fields[i], flen[i],
                                 NULL); /* (as a milter has them) */
            for (size_t off = 0; off < body.len; off += 65536)
                dkim_sign_body(ds, body.data + off,
                               body.len - off < 65536 ? body.len - off : 65536);
            if (dkim_sign_end(ds, &field, &why) < 0) {
                fprintf(stderr, "bench_dkim: %s\n", buf_str(&why));
                return 1;
            }
            dkim_sign_free(ds);
            n++;
        }
        t = now() - t0;
    } while (t < seconds);
    printf("sigs_per_s=%.1f us_per_sig=%.2f\n", (double)n / t, t / (double)n * 1e6);
    dkim_key_free(key);
    buf_release(&why);
    buf_release(&field);
    buf_release(&body);
    return 0;
}
