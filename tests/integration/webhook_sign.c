/*
 * webhook_sign - a body on stdin signed with lib/webhook, for the test that
 * has SendGrid's own verifier check it.
 *
 *   webhook_sign KEYFILE TIMESTAMP < BODY     prints the signature (base64)
 */
#include "config.h"

#include <stdio.h>

#include "webhook.h"

int main(int argc, char **argv)
{
    struct buf why, body, sig;
    struct webhook_key *k;
    char chunk[65536];
    size_t n;

    if (argc != 3) {
        fprintf(stderr, "usage: webhook_sign KEYFILE TIMESTAMP < BODY\n");
        return 2;
    }
    buf_init(&why, 64);
    buf_init(&body, 4096);
    buf_init(&sig, 128);
    if ((k = webhook_key_load(argv[1], &why)) == NULL) {
        fprintf(stderr, "webhook_sign: %s\n", buf_str(&why));
        return 1;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
        buf_append(&body, chunk, n);
    if (webhook_sign(k, argv[2], body.data, body.len, &sig, &why) < 0) {
        fprintf(stderr, "webhook_sign: %s\n", buf_str(&why));
        return 1;
    }
    printf("%s\n", buf_str(&sig));
    webhook_key_free(k);
    buf_release(&why);
    buf_release(&body);
    buf_release(&sig);
    return 0;
}
