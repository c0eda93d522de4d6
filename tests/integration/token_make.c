/*
 * token_make - a token made with lib/token, for the tests that need ones
 * sendguard would have put in a message (the bounce fixtures' placeholders).
 *
 *   token_make KEYFILE PURPOSE TENANT RECIPIENT GROUP MESSAGE
 *
 * PURPOSE is unsubscribe, preferences or return-path; RECIPIENT and
 * MESSAGE "-" for none.  Prints the token's text.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"

int main(int argc, char **argv)
{
    struct token_keys *keys;
    struct token t;
    struct buf why, out;

    if (argc != 7) {
        fprintf(stderr,
                "usage: token_make KEYFILE PURPOSE TENANT RECIPIENT GROUP MESSAGE\n");
        return 2;
    }
    buf_init(&why, 64);
    buf_init(&out, 256);
    if ((keys = token_keys_load(argv[1], &why)) == NULL) {
        fprintf(stderr, "token_make: %s\n", buf_str(&why));
        return 1;
    }
    memset(&t, 0, sizeof(t));
    t.purpose = strcmp(argv[2], "unsubscribe") == 0   ? TOKEN_UNSUBSCRIBE
                : strcmp(argv[2], "preferences") == 0 ? TOKEN_PREFERENCES
                : strcmp(argv[2], "return-path") == 0 ? TOKEN_RETURN_PATH
                                                      : 0;
    t.tenant = argv[3];
    t.recipient = strcmp(argv[4], "-") == 0 ? NULL : argv[4];
    t.group = (uint32_t)strtoul(argv[5], NULL, 10);
    t.message = strcmp(argv[6], "-") == 0 ? NULL : argv[6];
    if (token_encode(keys, &t, &out, &why) < 0) {
        fprintf(stderr, "token_make: %s\n", buf_str(&why));
        return 1;
    }
    printf("%s\n", buf_str(&out));
    token_keys_free(keys);
    buf_release(&why);
    buf_release(&out);
    return 0;
}
