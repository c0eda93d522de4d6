/*
 * token - sgadmin token generate|decode: the key file of the unsubscribe
 * and tracking tokens (secrets.token_key_file), and what a token says.
 *
 * generate never overwrites a key: it writes a new file, or puts a new
 * current key above the old ones (a rotation: tokens already sent keep
 * working), through a temporary file and rename, mode 0600.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli.h"
#include "mymalloc.h"
#include "pipeline.h"
#include "token.h"

/* read_all - the whole file into out; 0, 1 when it does not exist, -1 */
static int read_all(const char *path, struct buf *out)
{
    char chunk[4096];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return errno == ENOENT ? 1 : -1;
    while ((n = read(fd, chunk, sizeof(chunk))) > 0)
        buf_append(out, chunk, (size_t)n);
    close(fd);
    return n < 0 ? -1 : 0;
}

/*
 * write_secret - text into path, durably: mode 0600, or the owner, group
 * and mode of the file it replaces (0640 root:sendguard stays so)
 */
static int write_secret(const char *path, const struct buf *text, struct buf *why)
{
    struct stat old;
    int had = stat(path, &old) == 0;
    struct buf tmp;
    int fd, rc = 0;

    buf_init(&tmp, 128);
    buf_printf(&tmp, "%s.tmp.%ld", path, (long)getpid());
    fd = open(buf_str(&tmp), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = buf_error(why, "cannot create %s: %m", buf_str(&tmp));
        goto out;
    }
    if (had && (fchown(fd, old.st_uid, old.st_gid) < 0 ||
                fchmod(fd, old.st_mode & (S_IRUSR | S_IWUSR | S_IRGRP | S_IWGRP)) < 0)) {
        rc = buf_error(why, "cannot give %s the owner and mode of %s: %m", buf_str(&tmp),
                       path);
        close(fd);
    } else if (write(fd, text->data, text->len) != (ssize_t)text->len || fsync(fd) < 0) {
        rc = buf_error(why, "cannot write %s: %m", buf_str(&tmp));
        close(fd);
    } else if (close(fd) < 0) {
        rc = buf_error(why, "cannot write %s: %m", buf_str(&tmp));
    } else if (rename(buf_str(&tmp), path) < 0) {
        rc = buf_error(why, "cannot rename %s to %s: %m", buf_str(&tmp), path);
    }
    if (rc < 0)
        unlink(buf_str(&tmp));
out:
    buf_release(&tmp);
    return rc;
}

/* cmd_generate - a new current key */
static int cmd_generate(struct cli *c, int argc, char **argv)
{
    const char *kid_arg = NULL, *file = NULL;
    struct cli_opt opts[] = {
        {"kid", 1, &kid_arg, NULL}, {"file", 1, &file, NULL}, {NULL, 0, NULL, NULL}};
    long long kid = 0;
    struct token_keys *keys = NULL;
    struct buf old, text, why;
    int rc, exists;
    size_t head = 0;

    if ((rc = cli_parse_options(c, argc, argv, opts)) != 0)
        return rc;
    if (kid_arg && (rc = cli_number(c, "--kid", kid_arg, 1, TOKEN_KID_MAX, &kid)) != 0)
        return rc;
    if (file == NULL && cli_store_dir(c, &rc) == NULL)
        return rc;
    if (file == NULL)
        file = conf_string(c->conf, "secrets.token_key_file");
    buf_init(&old, 1024);
    buf_init(&text, 1024);
    buf_init(&why, 128);
    if ((exists = read_all(file, &old)) < 0) {
        rc = cli_fail(EX_NOINPUT, "cannot read %s: %s", file, strerror(errno));
        goto out;
    }
    if (exists == 0) {
        if ((keys = token_keys_load(file, &why)) == NULL) {
            rc = cli_fail(EX_DATAERR, "%s; not changed", buf_str(&why));
            goto out;
        }
        if (kid == 0) { /* the next free id after the current one */
            kid = token_keys_current(keys);
            do
                kid = kid % TOKEN_KID_MAX + 1;
            while (token_keys_has(keys, (unsigned)kid) &&
                   kid != (long long)token_keys_current(keys));
        }
        if (token_keys_has(keys, (unsigned)kid)) {
            rc = cli_fail(EX_DATAERR, "%s already has a key %lld", file, kid);
            goto out;
        }
    } else if (kid == 0) {
        kid = 1;
    }
    /* the new key goes first, below the comments heading the file */
    while (head < old.len && (old.data[head] == '#' || old.data[head] == '\n')) {
        const char *nl = memchr(old.data + head, '\n', old.len - head);
        head = nl ? (size_t)(nl - old.data) + 1 : old.len;
    }
    if (exists != 0)
        buf_puts(&text, "# sendguard token keys: the first is current (sgadmin token)\n");
    buf_append(&text, old.data, head);
    token_key_line((unsigned)kid, &text);
    buf_append(&text, old.data + head, old.len - head);
    if (write_secret(file, &text, &why) < 0) {
        rc = cli_fail(EX_CANTCREAT, "%s", buf_str(&why));
        goto out;
    }
    printf("token key %lld is now current in %s\n", kid, file);
out:
    token_keys_free(keys);
    explicit_bzero(text.data, text.len);
    explicit_bzero(old.data, old.len);
    buf_release(&old);
    buf_release(&text);
    buf_release(&why);
    return rc;
}

/* cmd_decode - what a token says */
static int cmd_decode(struct cli *c, int argc, char **argv)
{
    const char *file = NULL;
    struct cli_opt opts[] = {{"file", 1, &file, NULL}, {NULL, 0, NULL, NULL}};
    char **pos, when[32];
    int npos, rc;
    struct token_keys *keys;
    struct token t;
    struct buf why;
    json_t *o, *meta;
    struct pipeline_meta m;
    uint32_t groups[SMTPAPI_MAX_GROUPS_TO_DISPLAY];
    size_t ngroups = 0;

    if ((rc = cli_parse(c, argc, argv, opts, &pos, &npos)) != 0)
        return rc;
    if (npos != 1) {
        myfree(pos);
        return cli_usage_error(c, "give one token");
    }
    if (file == NULL && cli_store_dir(c, &rc) == NULL) {
        myfree(pos);
        return rc;
    }
    buf_init(&why, 128);
    keys = token_keys_load(file ? file : conf_string(c->conf, "secrets.token_key_file"),
                           &why);
    if (keys == NULL) {
        rc = cli_fail(EX_CONFIG, "%s", buf_str(&why));
    } else if (token_decode(keys, pos[0], strlen(pos[0]), &t, &why) < 0) {
        rc = cli_fail(EX_DATAERR, "%s", buf_str(&why));
    } else {
        o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "purpose",
                      token_purpose_name(t.purpose), "tenant", t.tenant, "message",
                      t.message ? t.message : "", "recipient",
                      t.recipient ? t.recipient : "", "group", (json_int_t)t.group,
                      "created", (json_int_t)t.created);
        /* the url part, and what the tracker needs of the message (pipeline.h) */
        if (pipeline_meta_split(t.data, t.data_len, &m, &why) < 0) {
            json_object_set_new(o, "data", json_stringn((char *)t.data, t.data_len));
        } else {
            if (m.url_len)
                json_object_set_new(o, "data", json_stringn(m.url, m.url_len));
            if (m.fields_len && (meta = json_loadb(m.fields, m.fields_len, 0, NULL)))
                json_object_set_new(o, "meta", meta);
            if ((ngroups =
                     pipeline_meta_groups(&m, groups, SMTPAPI_MAX_GROUPS_TO_DISPLAY))) {
                json_t *a = json_array();
                for (size_t i = 0; i < ngroups; i++)
                    json_array_append_new(a, json_integer(groups[i]));
                json_object_set_new(o, "groups_to_display", a);
            }
        }
        if (c->json) {
            cli_print_json(o);
        } else {
            printf("purpose:   %s\ntenant:    %s\nmessage:   %s\nrecipient: %s\n"
                   "group:     %u\ncreated:   %s\n",
                   token_purpose_name(t.purpose), t.tenant, t.message ? t.message : "",
                   t.recipient ? t.recipient : "", t.group,
                   cli_fmt_time(t.created, when));
            if ((meta = json_object_get(o, "data")) != NULL)
                printf("data:      %s\n", json_string_value(meta));
            if ((meta = json_object_get(o, "meta")) != NULL) {
                char *text = json_dumps(meta, JSON_COMPACT);
                printf("meta:      %s\n", text ? text : "?");
                free(text);
            }
            for (size_t i = 0; i < ngroups; i++)
                printf("%s%u%s", i ? "," : "display:   ", groups[i],
                       i + 1 < ngroups ? "" : "\n");
            json_decref(o);
        }
        token_release(&t);
    }
    token_keys_free(keys);
    myfree(pos);
    buf_release(&why);
    return rc;
}

const struct cli_verb token_verbs[] = {
    {"generate", cmd_generate, "[--kid N] [--file F]",
     "make a new current token key (a new file, or a rotation keeping the old keys)"},
    {"decode", cmd_decode, "TOKEN [--file F]",
     "what an unsubscribe or tracking token says"},
    {NULL, NULL, NULL, NULL},
};
