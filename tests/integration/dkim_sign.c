/*
 * dkim_sign - sign a message on standard input with lib/dkim, for the
 * verification tests (sgadmin dkim sign, with keys from the store, builds
 * on the same calls).
 *
 *   dkim_sign [-c HEADER/BODY] [-t TIME] [-x SECONDS] KEYFILE DOMAIN SELECTOR...
 *
 * Writes the DKIM-Signature fields and then the message unchanged.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dkim.h"

int main(int argc, char **argv)
{
    struct buf why, msg, out;
    struct dkim_params p;
    struct dkim_key *keys[8];
    size_t nkeys = 0, n;
    char chunk[65536];
    int ch, rc = 0;

    dkim_params_init(&p);
    while ((ch = getopt(argc, argv, "c:t:x:")) != -1) {
        if (ch == 'c') {
            p.header_canon =
                strncmp(optarg, "simple", 6) == 0 ? DKIM_SIMPLE : DKIM_RELAXED;
            p.body_canon = strstr(optarg, "/simple") ? DKIM_SIMPLE : DKIM_RELAXED;
        } else if (ch == 't') {
            p.now = (time_t)atoll(optarg);
        } else if (ch == 'x') {
            p.expire = atoll(optarg);
        } else {
            return 2;
        }
    }
    buf_init(&why, 128);
    buf_init(&msg, 65536);
    buf_init(&out, 2048);
    for (int i = optind; i + 2 < argc && nkeys < 8; i += 3) {
        if ((keys[nkeys] = dkim_key_load(argv[i], argv[i + 1], argv[i + 2], &why)) ==
            NULL) {
            fprintf(stderr, "dkim_sign: %s\n", buf_str(&why));
            return 1;
        }
        nkeys++;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
        buf_append(&msg, chunk, n);
    if (dkim_sign_message(keys, nkeys, &p, msg.data, msg.len, &out, &why) < 0) {
        fprintf(stderr, "dkim_sign: %s\n", buf_str(&why));
        rc = 1;
    } else {
        fwrite(out.data, 1, out.len, stdout);
        fwrite(msg.data, 1, msg.len, stdout);
    }
    for (size_t i = 0; i < nkeys; i++)
        dkim_key_free(keys[i]);
    buf_release(&why);
    buf_release(&msg);
    buf_release(&out);
    return rc;
}
