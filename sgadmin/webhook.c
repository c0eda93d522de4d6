/*
 * webhook - sgadmin webhook key: the key that signs the event webhook.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli.h"
#include "fdio.h"
#include "mymalloc.h"
#include "webhook.h"

/* cmd_key - sgadmin webhook key [--file F]: made when missing; the public key printed */
static int cmd_key(struct cli *c, int argc, char **argv)
{
    const char *file = NULL;
    struct cli_opt opts[] = {{"file", 1, &file, NULL}, {NULL, 0, NULL, NULL}};
    struct webhook_key *k;
    struct buf why, pub;
    struct stat st;
    int rc, made = 0;

    if ((rc = cli_parse_options(c, argc, argv, opts)) != 0)
        return rc;
    if (file == NULL && cli_store_dir(c, &rc) == NULL)
        return rc;
    if (file == NULL)
        file = conf_string(c->conf, "secrets.webhook_key_file");
    buf_init(&why, 128);
    buf_init(&pub, 128);
    if (stat(file, &st) < 0 && errno == ENOENT) {
        if (webhook_key_generate(file, &why) < 0) {
            rc = cli_fail(EX_CANTCREAT, "%s", buf_str(&why));
            goto out;
        }
        made = 1;
    }
    if ((k = webhook_key_load(file, &why)) == NULL) {
        rc = cli_fail(EX_CONFIG, "%s", buf_str(&why));
        goto out;
    }
    webhook_public_key(k, &pub);
    webhook_key_free(k);
    if (c->json)
        cli_print_json(json_pack("{s:s,s:s,s:b}", "file", file, "public_key",
                                 buf_str(&pub), "made", made));
    else
        printf("%s%s\nverification key (give it to the receiver's verifier):\n%s\n", file,
               made ? ": a new key" : "", buf_str(&pub));
out:
    buf_release(&why);
    buf_release(&pub);
    return rc;
}

/* cmd_set - sgadmin webhook set URL: the tenant's events go there from now on */
static int cmd_set(struct cli *c, int argc, char **argv)
{
    struct cli_opt none[] = {{NULL, 0, NULL, NULL}};
    char **pos;
    int npos, rc;
    const char *dir;
    struct buf d, path, why;
    struct webhook_pos at;
    FILE *f;

    if ((rc = cli_parse(c, argc, argv, none, &pos, &npos)) != 0)
        return rc;
    if (npos != 1 ||
        (strncmp(pos[0], "https://", 8) != 0 && strncmp(pos[0], "http://", 7) != 0) ||
        strpbrk(pos[0], " \t\r\n") != NULL) {
        myfree(pos);
        return cli_usage_error(c,
                               "give one http:// or https:// URL (credentials in it for "
                               "basic authentication)");
    }
    if ((dir = cli_store_dir(c, &rc)) == NULL) {
        myfree(pos);
        return rc;
    }
    buf_init(&d, 128);
    buf_init(&path, 128);
    buf_init(&why, 128);
    buf_printf(&d, "%s/webhook", dir);
    fd_mkdir_shared(buf_str(&d));
    webhook_dir(dir, c->tenant, &d);
    fd_mkdir_shared(buf_str(&d));
    /* a new webhook starts with the events to come, as the hosted one does */
    if (webhook_pos_read(dir, c->tenant, &at, &why) <= 0) {
        webhook_pos_end(dir, &at);
        if (webhook_pos_write(dir, c->tenant, &at, &why) < 0) {
            rc = cli_fail(EX_IOERR, "%s", buf_str(&why));
            goto out;
        }
    }
    buf_printf(&path, "%s/url", buf_str(&d));
    if ((f = fopen(buf_str(&path), "w")) == NULL || fprintf(f, "%s\n", pos[0]) < 0 ||
        fclose(f) != 0)
        rc = cli_fail(EX_IOERR, "cannot write %s: %s", buf_str(&path), strerror(errno));
    else if (!c->json)
        printf("tenant %s: events go to %s from now on (sgwebhook sends them)\n",
               c->tenant, pos[0]);
out:
    buf_release(&d);
    buf_release(&path);
    buf_release(&why);
    myfree(pos);
    return rc;
}

/* cmd_status - sgadmin webhook status (and show): URL, position, backlog, last error */
static int cmd_status(struct cli *c, int argc, char **argv)
{
    struct cli_opt none[] = {{NULL, 0, NULL, NULL}};
    int rc;
    const char *dir;
    struct buf d, url, st, why;
    struct webhook_pos at;
    json_t *o, *s = NULL;

    if ((rc = cli_parse_options(c, argc, argv, none)) != 0)
        return rc;
    if ((dir = cli_store_dir(c, &rc)) == NULL)
        return rc;
    buf_init(&d, 128);
    buf_init(&url, 128);
    buf_init(&st, 256);
    buf_init(&why, 128);
    webhook_dir(dir, c->tenant, &d);
    buf_puts(&d, "/url");
    fd_read_file(buf_str(&d), &url, &why);
    while (url.len && url.data[url.len - 1] == '\n')
        buf_truncate(&url, url.len - 1);
    o = json_pack("{s:s,s:s}", "tenant", c->tenant, "url", buf_str(&url));
    if (webhook_pos_read(dir, c->tenant, &at, &why) > 0) {
        json_object_set_new(
            o, "position",
            json_pack("{s:s,s:I}", "day", at.day, "offset", (json_int_t)at.offset));
        json_object_set_new(o, "backlog",
                            json_integer(webhook_backlog(dir, c->tenant, &at)));
    }
    webhook_dir(dir, c->tenant, &d);
    buf_puts(&d, "/status");
    if (fd_read_file(buf_str(&d), &st, &why) == 0 &&
        (s = json_loadb(st.data, st.len, 0, NULL)) != NULL)
        json_object_update(o, s);
    json_decref(s);
    if (c->json) {
        cli_print_json(o);
    } else {
        const char *err = json_string_value(json_object_get(o, "last_error"));

        printf("tenant %s\n  url        %s\n", c->tenant,
               url.len ? buf_str(&url) : "(none)");
        if (json_object_get(o, "position"))
            printf("  position   %s +%lld\n  backlog    %lld events\n", at.day, at.offset,
                   (long long)json_integer_value(json_object_get(o, "backlog")));
        if (json_object_get(o, "events_sent"))
            printf("  sent       %lld events since sgwebhook started\n",
                   (long long)json_integer_value(json_object_get(o, "events_sent")));
        if (err)
            printf("  last error %s\n", err);
        json_decref(o);
    }
    buf_release(&d);
    buf_release(&url);
    buf_release(&st);
    buf_release(&why);
    return 0;
}

/*
 * cmd_test - sgadmin webhook test: a signed sample event POSTed now, by
 * sgwebhook -t (sgadmin itself stays without libcurl: it runs once per
 * message as the ingest command, and every library costs each run)
 */
static int cmd_test(struct cli *c, int argc, char **argv)
{
    struct cli_opt none[] = {{NULL, 0, NULL, NULL}};
    const char *prog = getenv("SGWEBHOOK");
    char *args[8];
    int n = 0, rc, st;
    pid_t pid;

    if ((rc = cli_parse_options(c, argc, argv, none)) != 0)
        return rc;
    if (prog == NULL || *prog == 0)
        prog = SG_SBINDIR "/sgwebhook";
    args[n++] = (char *)prog;
    if (c->conf_path) {
        args[n++] = "-c";
        args[n++] = (char *)c->conf_path;
    }
    if (c->json)
        args[n++] = "-j";
    args[n++] = "-t";
    args[n++] = (char *)c->tenant;
    args[n] = NULL;
    fflush(stdout);
    if ((pid = fork()) < 0)
        return cli_fail(EX_OSERR, "cannot fork: %s", strerror(errno));
    if (pid == 0) {
        execv(prog, args);
        fprintf(stderr, "sgadmin: cannot run %s: %s\n", prog, strerror(errno));
        _exit(EX_UNAVAILABLE);
    }
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return cli_fail(EX_OSERR, "cannot wait for %s: %s", prog, strerror(errno));
    return WIFEXITED(st) ? WEXITSTATUS(st) : EX_SOFTWARE;
}

const struct cli_verb webhook_verbs[] = {
    {"key", cmd_key, "[--file F]",
     "the key that signs the event webhook, made if missing; prints its verification "
     "key"},
    {"set", cmd_set, "URL",
     "the tenant's events POSTed there from now on (by sgwebhook)"},
    {"show", cmd_status, "", "the tenant's webhook: URL, position, backlog, last error"},
    {"status", cmd_status, "", "the same"},
    {"test", cmd_test, "", "a signed test event POSTed to the URL now; its answer"},
    {NULL, NULL, NULL, NULL},
};
