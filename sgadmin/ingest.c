/*
 * ingest - sgadmin ingest [--recipient ADDR] [FILE...]: bounces, delivery
 * reports, feedback reports and unsubscribe mail read and applied to the
 * lists (lib/feedback).  One message per FILE, or stdin: what Postfix's
 * pipe(8) runs for the return-path and unsubscribe addresses, with the
 * envelope recipient as --recipient.
 *
 * Exit status, as pipe(8) wants it: 0 once what a message says is durable
 * in the store and the event log (or it is recorded as not feedback);
 * EX_TEMPFAIL when the configuration, the store, the token keys or the log
 * cannot be used now, so that the MTA keeps the message and tries again;
 * EX_USAGE for a bad command line.  Nothing is ever answered, forwarded or
 * bounced, and a message that cannot be parsed is not an error.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cli.h"
#include "feedback.h"
#include "mymalloc.h"

/* read_message - a whole file (stdin for "-"), only max bytes of it kept; 0 or -1 */
static int read_message(const char *path, size_t max, struct buf *out, struct buf *why)
{
    int fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);
    char chunk[65536];
    ssize_t n;

    buf_reset(out);
    if (fd < 0)
        return buf_error(why, "cannot open %s: %s", path, strerror(errno));
    while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            buf_error(why, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        /* the rest is read, so the writer sees all of it taken, and dropped */
        if (out->len < max)
            buf_append(out, chunk,
                       (size_t)n < max - out->len ? (size_t)n : max - out->len);
    }
    if (fd != 0)
        close(fd);
    return n < 0 ? -1 : 0;
}

/* say - one action in words */
static void say(const char *name, json_t *a)
{
    const char *what = json_string_value(json_object_get(a, "action"));
    const char *email = json_string_value(json_object_get(a, "email"));
    const char *reason = json_string_value(json_object_get(a, "reason"));

    printf("%s: %s", name, what);
    if (strcmp(what, "bounce") == 0)
        printf(" %s %s", json_string_value(json_object_get(a, "bounce_type")),
               json_string_value(json_object_get(a, "status")));
    else if (strcmp(what, "deferred") == 0)
        printf(" %s", json_string_value(json_object_get(a, "status")));
    if (email && *email)
        printf(" <%s>", email);
    printf(" (tenant %s, %s %s", json_string_value(json_object_get(a, "tenant")),
           json_string_value(json_object_get(a, "kind")),
           json_string_value(json_object_get(a, "format")));
    if (strcmp(json_string_value(json_object_get(a, "matched")), "none") != 0)
        printf(", matched by %s", json_string_value(json_object_get(a, "matched")));
    printf(")");
    if (json_is_true(json_object_get(a, "suppressed")))
        printf(", suppressed");
    if (reason && *reason)
        printf(": %s", reason);
    printf("\n");
}

/* cmd_ingest - see above */
static int cmd_ingest(struct cli *c, int argc, char **argv)
{
    const char *rcpt = NULL;
    struct cli_opt opts[] = {{"recipient", 1, &rcpt, NULL}, {NULL, 0, NULL, NULL}};
    static char *stdin_only[] = {"-"};
    char **pos, **files;
    int npos, rc, nfiles;
    struct feedback fb;
    struct buf why, msg;
    json_t *all;

    if ((rc = cli_parse(c, argc, argv, opts, &pos, &npos)) != 0)
        return rc;
    files = npos > 0 ? pos : stdin_only;
    nfiles = npos > 0 ? npos : 1;
    /*
     * A process per message (pipe(8)) pays OpenSSL's start once each: the
     * tokens' one algorithm needs no system configuration file, and a
     * process about to exit no clean-up (together a quarter of its set-up)
     */
    OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_ATEXIT, NULL);
    /* from here on every failure is one to retry (pipe(8): EX_TEMPFAIL) */
    if (cli_open(c, STORE_WRITE) != 0) {
        myfree(pos);
        return EX_TEMPFAIL;
    }
    buf_init(&why, 128);
    buf_init(&msg, 65536);
    memset(&fb, 0, sizeof(fb));
    fb.conf = c->conf;
    fb.store = c->st;
    fb.store_dir = c->store_dir;
    /* loaded at the first token there is to read (no key file: none trusted) */
    fb.key_file = conf_string(c->conf, "secrets.token_key_file");
    all = json_array();
    for (int i = 0; i < nfiles && rc == 0; i++) {
        json_t *actions = json_array();
        size_t k;
        json_t *a;

        if (read_message(files[i], (size_t)conf_size(c->conf, "feedback.max_size"), &msg,
                         &why) < 0) {
            rc = cli_fail(npos > 0 ? EX_NOINPUT : EX_TEMPFAIL, "%s", buf_str(&why));
        } else if (feedback_ingest(&fb, msg.data, msg.len, rcpt,
                                   c->tenant_given ? c->tenant : NULL, actions,
                                   &why) < 0) {
            rc = cli_fail(EX_TEMPFAIL, "%s: %s", files[i], buf_str(&why));
        }
        if (!c->json)
            json_array_foreach (actions, k, a)
                say(files[i], a);
        json_array_append_new(
            all, json_pack("{s:s,s:o}", "message", files[i], "actions", actions));
    }
    if (c->json)
        cli_print_json(all);
    else
        json_decref(all);
    feedback_release(&fb);
    buf_release(&why);
    buf_release(&msg);
    myfree(pos);
    return rc;
}

const struct cli_verb ingest_verbs[] = {
    {"", cmd_ingest, "[--recipient ADDR] [FILE...]",
     "bounces, feedback reports and unsubscribe mail applied to the lists (stdin: one "
     "message)"},
    {NULL, NULL, NULL, NULL},
};
