/*
 * dkim - sgadmin dkim: DKIM keys (generate, add, list, show, dns, delete) and
 * signing a message from standard input with them.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "dkim.h"
#include "dkim_keys.h"
#include "mymalloc.h"

/* domain_arg - a domain argument, normalised; 0 or EX_DATAERR */
static int domain_arg(const char *text, struct buf *out)
{
    struct buf why;
    int rc = 0;

    buf_init(&why, 128);
    if (dkim_domain_normalize(text, out, &why) < 0)
        rc = cli_fail(EX_DATAERR, "%s", buf_str(&why));
    buf_release(&why);
    return rc;
}

/* selector_arg - a selector argument, checked; 0 or EX_DATAERR */
static int selector_arg(const char *text)
{
    struct buf why;
    int rc = 0;

    buf_init(&why, 128);
    if (dkim_selector_check(text, &why) < 0)
        rc = cli_fail(EX_DATAERR, "%s", buf_str(&why));
    buf_release(&why);
    return rc;
}

/* mkdir_p - a directory and its parents, new ones with this mode */
static int mkdir_p(const char *path, mode_t mode)
{
    char *copy = mystrdup(path);
    int rc = 0;

    for (char *p = copy + 1; rc == 0; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;

            *p = 0;
            if (mkdir(copy, mode) < 0 && errno != EEXIST)
                rc =
                    cli_fail(EX_CANTCREAT, "cannot create %s: %s", copy, strerror(errno));
            *p = c;
            if (c == 0)
                break;
        }
    }
    myfree(copy);
    return rc;
}

/* print_dns - the TXT record of a key, as a zone-file line or JSON */
static int print_dns(struct cli *c, const struct dkim_key *key)
{
    struct buf why, txt, strings;
    int rc = 0;

    buf_init(&why, 128);
    buf_init(&txt, 512);
    buf_init(&strings, 600);
    if (dkim_key_dns(key, &txt, &why) < 0) {
        rc = cli_fail(EX_SOFTWARE, "%s", buf_str(&why));
    } else if (c->json) {
        json_t *parts = json_array();
        size_t len = txt.len;

        for (size_t off = 0; off < len; off += DKIM_TXT_STRING_MAX)
            json_array_append_new(
                parts, json_stringn(txt.data + off, len - off < DKIM_TXT_STRING_MAX
                                                        ? len - off
                                                        : DKIM_TXT_STRING_MAX));
        cli_print_json(json_pack("{s:s++,s:s,s:s,s:o}", "name", dkim_key_selector(key),
                                 "._domainkey.", dkim_key_domain(key), "type", "TXT",
                                 "value", buf_str(&txt), "strings", parts));
    } else {
        dkim_txt_strings(buf_str(&txt), &strings);
        printf("%s._domainkey.%s. IN TXT %s\n", dkim_key_selector(key),
               dkim_key_domain(key), buf_str(&strings));
    }
    buf_release(&why);
    buf_release(&txt);
    buf_release(&strings);
    return rc;
}

/* record - put a key in the store; 0 or a status */
static int record(struct cli *c, const struct dkim_key *key, const char *path,
                  int *replaced)
{
    struct store_dkim rec = {dkim_key_domain(key),
                             dkim_key_selector(key),
                             dkim_alg_name(dkim_key_alg(key)),
                             dkim_key_bits(key),
                             path,
                             0};
    struct buf why;
    int rc = 0;

    buf_init(&why, 128);
    if (store_dkim_put(c->st, &rec, replaced, &why) < 0)
        rc = cli_fail(EX_TEMPFAIL, "%s", buf_str(&why));
    buf_release(&why);
    return rc;
}

/* cmd_generate - sgadmin dkim generate --domain D [--selector S] ... */
static int cmd_generate(struct cli *c, int argc, char **argv)
{
    const char *domain = NULL, *selector = NULL, *alg = "rsa", *bits_text = NULL;
    struct cli_opt opts[] = {{"domain", 1, &domain, NULL},
                             {"selector", 1, &selector, NULL},
                             {"algorithm", 1, &alg, NULL},
                             {"bits", 1, &bits_text, NULL},
                             {NULL, 0, NULL, NULL}};
    char sel[64];
    int rc, replaced = 0;
    long long bits = 2048;
    enum dkim_alg a;
    struct buf dom, dir, path, why;
    struct dkim_key *key = NULL;

    if ((rc = cli_parse_options(c, argc, argv, opts)) != 0)
        return rc;
    if (domain == NULL)
        return cli_usage_error(c, "--domain is required");
    if (strcmp(alg, "rsa") == 0)
        a = DKIM_RSA_SHA256;
    else if (strcmp(alg, "ed25519") == 0)
        a = DKIM_ED25519_SHA256;
    else
        return cli_usage_error(c, "--algorithm is rsa or ed25519, not '%s'", alg);
    if (bits_text && a != DKIM_RSA_SHA256)
        return cli_usage_error(c, "--bits is for RSA keys only");
    if (bits_text && (rc = cli_number(c, "--bits", bits_text, DKIM_RSA_MIN_BITS,
                                      DKIM_RSA_MAX_BITS, &bits)) != 0)
        return rc;
    if (selector == NULL) {
        /* one selector per algorithm and month, so that rotations do not clash */
        time_t now = time(NULL);
        struct tm tm;

        gmtime_r(&now, &tm);
        snprintf(sel, sizeof(sel), "%s-%04d%02d", alg, tm.tm_year + 1900, tm.tm_mon + 1);
        selector = sel;
    }
    buf_init(&dom, 128);
    buf_init(&dir, 256);
    buf_init(&path, 256);
    buf_init(&why, 128);
    if ((rc = domain_arg(domain, &dom)) != 0 || (rc = selector_arg(selector)) != 0)
        goto out;
    if ((rc = cli_open(c, STORE_WRITE | STORE_CREATE)) != 0)
        goto out;
    {
        int n = store_dkim_list(c->st, buf_str(&dom), selector, NULL, NULL, &why);

        if (n < 0) {
            rc = cli_fail(EX_UNAVAILABLE, "%s", buf_str(&why));
            goto out;
        }
        if (n > 0) {
            rc = cli_fail(EX_CANTCREAT,
                          "%s already has a key with selector %s; delete it first or "
                          "choose another selector",
                          buf_str(&dom), selector);
            goto out;
        }
    }
    buf_setf(&dir, "%s/%s", conf_string(c->conf, "dkim.key_dir"), buf_str(&dom));
    buf_setf(&path, "%s/%s.pem", buf_str(&dir), selector);
    if ((rc = mkdir_p(buf_str(&dir), 0750)) != 0)
        goto out;
    if ((key = dkim_key_generate(a, (int)bits, buf_str(&dom), selector, &why)) == NULL) {
        rc = cli_fail(EX_SOFTWARE, "%s", buf_str(&why));
        goto out;
    }
    if (dkim_key_write(key, buf_str(&path), &why) < 0) {
        rc = cli_fail(EX_CANTCREAT, "%s", buf_str(&why));
        goto out;
    }
    if ((rc = record(c, key, buf_str(&path), &replaced)) != 0) {
        unlink(buf_str(&path));
        goto out;
    }
    if (!c->json)
        printf("generated %s key %s/%s (%d bits) in %s\npublish this record in DNS:\n",
               alg, buf_str(&dom), selector, dkim_key_bits(key), buf_str(&path));
    rc = print_dns(c, key);
out:
    dkim_key_free(key);
    buf_release(&dom);
    buf_release(&dir);
    buf_release(&path);
    buf_release(&why);
    return rc;
}

/* cmd_add - sgadmin dkim add --domain D --selector S --key FILE */
static int cmd_add(struct cli *c, int argc, char **argv)
{
    const char *domain = NULL, *selector = NULL, *file = NULL;
    struct cli_opt opts[] = {{"domain", 1, &domain, NULL},
                             {"selector", 1, &selector, NULL},
                             {"key", 1, &file, NULL},
                             {NULL, 0, NULL, NULL}};
    char *abs = NULL;
    int rc, replaced = 0;
    struct buf dom, why;
    struct dkim_key *key = NULL;

    if ((rc = cli_parse_options(c, argc, argv, opts)) != 0)
        return rc;
    if (domain == NULL || selector == NULL || file == NULL)
        return cli_usage_error(c, "--domain, --selector and --key are required");
    buf_init(&dom, 128);
    buf_init(&why, 128);
    if ((rc = domain_arg(domain, &dom)) != 0 || (rc = selector_arg(selector)) != 0)
        goto out;
    if ((abs = realpath(file, NULL)) == NULL) {
        rc = cli_fail(EX_NOINPUT, "%s: %s", file, strerror(errno));
        goto out;
    }
    if (dkim_key_file_check(file, &why) < 0) {
        rc = cli_fail(EX_NOPERM, "%s", buf_str(&why));
        goto out;
    }
    if ((key = dkim_key_load(abs, buf_str(&dom), selector, &why)) == NULL) {
        rc = cli_fail(EX_DATAERR, "%s", buf_str(&why));
        goto out;
    }
    if ((rc = cli_open(c, STORE_WRITE | STORE_CREATE)) != 0 ||
        (rc = record(c, key, abs, &replaced)) != 0)
        goto out;
    if (!c->json)
        printf("%s %s key %s/%s (%d bits), %s\npublish this record in DNS:\n",
               replaced ? "replaced by" : "added", dkim_alg_name(dkim_key_alg(key)),
               buf_str(&dom), selector, dkim_key_bits(key), abs);
    rc = print_dns(c, key);
out:
    free(abs);
    dkim_key_free(key);
    buf_release(&dom);
    buf_release(&why);
    return rc;
}

/* key_json - a key record, and whether its file is usable */
static int collect_key(const struct store_dkim *k, void *ctx)
{
    struct buf why;
    struct dkim_key *key;
    const char *status = "ok";
    char when[32];

    buf_init(&why, 128);
    if (dkim_key_file_check(k->path, &why) < 0 ||
        (key = dkim_key_load(k->path, k->domain, k->selector, &why)) == NULL)
        status = buf_str(&why);
    else
        dkim_key_free(key);
    json_array_append_new(
        ctx, json_pack("{s:s,s:s,s:s,s:i,s:s,s:I,s:s,s:s}", "domain", k->domain,
                       "selector", k->selector, "algorithm", k->algorithm, "bits",
                       k->bits, "path", k->path, "created", (json_int_t)k->created,
                       "created_at", cli_fmt_time(k->created, when), "status", status));
    buf_release(&why);
    return 0;
}

/* cmd_list - sgadmin dkim list [DOMAIN] */
static int cmd_list(struct cli *c, int argc, char **argv)
{
    static const char *const k[] = {"domain",     "selector", "algorithm", "bits",
                                    "created_at", "path",     "status",    NULL};
    static const char *const h[] = {"DOMAIN",  "SELECTOR", "ALGORITHM", "BITS",
                                    "CREATED", "PATH",     "KEY FILE",  NULL};
    char **pos;
    int npos, rc;
    struct buf dom, why;
    json_t *rows;

    if ((rc = cli_parse(c, argc, argv, NULL, &pos, &npos)) != 0)
        return rc;
    if (npos > 1) {
        myfree(pos);
        return cli_usage_error(c, "give at most one domain");
    }
    buf_init(&dom, 128);
    buf_init(&why, 128);
    rows = json_array();
    if ((npos == 0 || (rc = domain_arg(pos[0], &dom)) == 0) &&
        (rc = cli_open(c, STORE_READ)) == 0) {
        if (store_dkim_list(c->st, npos ? buf_str(&dom) : NULL, NULL, collect_key, rows,
                            &why) < 0)
            rc = cli_fail(EX_UNAVAILABLE, "%s", buf_str(&why));
        else if (c->json)
            cli_print_json(json_incref(rows));
        else
            cli_print_table(rows, k, h);
    }
    json_decref(rows);
    myfree(pos);
    buf_release(&dom);
    buf_release(&why);
    return rc;
}

/* one_key - DOMAIN SELECTOR arguments: the record (JSON) and the loaded key */
static int one_key(struct cli *c, int argc, char **argv, json_t **rec,
                   struct dkim_key **key)
{
    char **pos;
    int npos, rc;
    struct buf dom, why;
    json_t *rows = json_array();

    *rec = NULL;
    if (key)
        *key = NULL;
    if ((rc = cli_parse(c, argc, argv, NULL, &pos, &npos)) != 0) {
        json_decref(rows);
        return rc;
    }
    buf_init(&dom, 128);
    buf_init(&why, 128);
    if (npos != 2)
        rc = cli_usage_error(c, "give a domain and a selector");
    else if ((rc = domain_arg(pos[0], &dom)) == 0 && (rc = selector_arg(pos[1])) == 0 &&
             (rc = cli_open(c, STORE_READ)) == 0) {
        int n = store_dkim_list(c->st, buf_str(&dom), pos[1], collect_key, rows, &why);

        if (n < 0)
            rc = cli_fail(EX_UNAVAILABLE, "%s", buf_str(&why));
        else if (n == 0)
            rc = cli_fail(EX_NOUSER, "no DKIM key %s for %s", pos[1], buf_str(&dom));
        else
            *rec = json_incref(json_array_get(rows, 0));
    }
    if (rc == 0 && key) {
        const char *path = json_string_value(json_object_get(*rec, "path"));

        if (dkim_key_file_check(path, &why) < 0)
            rc = cli_fail(EX_NOPERM, "%s", buf_str(&why));
        else if ((*key = dkim_key_load(path, buf_str(&dom), pos[1], &why)) == NULL)
            rc = cli_fail(EX_DATAERR, "%s", buf_str(&why));
    }
    json_decref(rows);
    myfree(pos);
    buf_release(&dom);
    buf_release(&why);
    return rc;
}

/* cmd_show - sgadmin dkim show DOMAIN SELECTOR */
static int cmd_show(struct cli *c, int argc, char **argv)
{
    json_t *rec;
    struct dkim_key *key = NULL;
    struct buf txt, why;
    int rc = one_key(c, argc, argv, &rec, NULL);

    if (rc != 0)
        return rc;
    buf_init(&txt, 512);
    buf_init(&why, 128);
    /* the DNS record too, when the key file can be read */
    if (strcmp(json_string_value(json_object_get(rec, "status")), "ok") == 0 &&
        (key =
             dkim_key_load(json_string_value(json_object_get(rec, "path")),
                           json_string_value(json_object_get(rec, "domain")),
                           json_string_value(json_object_get(rec, "selector")), &why)) &&
        dkim_key_dns(key, &txt, &why) == 0)
        json_object_set_new(rec, "dns", json_string(buf_str(&txt)));
    if (c->json) {
        cli_print_json(json_incref(rec));
    } else {
        const char *key_;
        json_t *v;

        json_object_foreach (rec, key_, v) {
            if (json_is_string(v))
                printf("%-11s %s\n", key_, json_string_value(v));
            else
                printf("%-11s %lld\n", key_, (long long)json_integer_value(v));
        }
    }
    dkim_key_free(key);
    json_decref(rec);
    buf_release(&txt);
    buf_release(&why);
    return 0;
}

/* cmd_dns - sgadmin dkim dns DOMAIN SELECTOR */
static int cmd_dns(struct cli *c, int argc, char **argv)
{
    json_t *rec;
    struct dkim_key *key;
    int rc = one_key(c, argc, argv, &rec, &key);

    if (rc == 0)
        rc = print_dns(c, key);
    dkim_key_free(key);
    json_decref(rec);
    return rc;
}

/* cmd_delete - sgadmin dkim delete DOMAIN SELECTOR [--purge] */
static int cmd_delete(struct cli *c, int argc, char **argv)
{
    int purge = 0;
    struct cli_opt opts[] = {{"purge", 0, NULL, &purge}, {NULL, 0, NULL, NULL}};
    char **pos;
    int npos, rc, found;
    struct buf dom, why, path;
    json_t *rows = json_array();

    if ((rc = cli_parse(c, argc, argv, opts, &pos, &npos)) != 0) {
        json_decref(rows);
        return rc;
    }
    buf_init(&dom, 128);
    buf_init(&why, 128);
    buf_init(&path, 256);
    if (npos != 2) {
        rc = cli_usage_error(c, "give a domain and a selector");
        goto out;
    }
    if ((rc = domain_arg(pos[0], &dom)) != 0 || (rc = selector_arg(pos[1])) != 0 ||
        (rc = cli_open(c, STORE_WRITE)) != 0)
        goto out;
    if (store_dkim_list(c->st, buf_str(&dom), pos[1], collect_key, rows, &why) > 0)
        buf_set(&path,
                json_string_value(json_object_get(json_array_get(rows, 0), "path")));
    if ((found = store_dkim_delete(c->st, buf_str(&dom), pos[1], &why)) < 0) {
        rc = cli_fail(EX_TEMPFAIL, "%s", buf_str(&why));
        goto out;
    }
    if (found == 0) {
        rc = cli_fail(EX_NOUSER, "no DKIM key %s for %s", pos[1], buf_str(&dom));
        goto out;
    }
    if (purge && unlink(buf_str(&path)) < 0 && errno != ENOENT) {
        rc = cli_fail(EX_CANTCREAT,
                      "deleted the record of %s/%s, but cannot remove %s: %s",
                      buf_str(&dom), pos[1], buf_str(&path), strerror(errno));
        goto out;
    }
    if (c->json)
        cli_print_json(json_pack("{s:s,s:s,s:s,s:b}", "domain", buf_str(&dom), "selector",
                                 pos[1], "path", buf_str(&path), "purged", purge));
    else if (purge)
        printf("deleted DKIM key %s/%s and its file %s\n", buf_str(&dom), pos[1],
               buf_str(&path));
    else
        printf("deleted DKIM key %s/%s; its file %s stays (--purge removes it)\n",
               buf_str(&dom), pos[1], buf_str(&path));
out:
    json_decref(rows);
    myfree(pos);
    buf_release(&dom);
    buf_release(&why);
    buf_release(&path);
    return rc;
}

/* from_value - the value of the first From field of a message header */
static int from_value(const char *msg, size_t len, struct buf *value)
{
    const char *p = msg, *end = msg + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t linelen = nl ? (size_t)(nl - p) : (size_t)(end - p);

        if (linelen == 0 || (linelen == 1 && *p == '\r'))
            return -1; /* end of the header */
        if (linelen > 5 && strncasecmp(p, "From", 4) == 0 &&
            (p[4] == ':' || p[4] == ' ' || p[4] == '\t')) {
            const char *colon = memchr(p, ':', linelen);

            if (colon) {
                /* with its continuation lines */
                const char *q = colon + 1;

                buf_reset(value);
                for (;;) {
                    const char *e = memchr(q, '\n', (size_t)(end - q));

                    buf_append(value, q, (size_t)((e ? e : end) - q));
                    if (e == NULL || e + 1 >= end || (e[1] != ' ' && e[1] != '\t'))
                        return 0;
                    q = e + 1;
                }
            }
        }
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    return -1;
}

/* cmd_sign - sgadmin dkim sign [--domain D] < message > signed */
static int cmd_sign(struct cli *c, int argc, char **argv)
{
    const char *domain = NULL;
    struct cli_opt opts[] = {{"domain", 1, &domain, NULL}, {NULL, 0, NULL, NULL}};
    char **pos, chunk[65536];
    const char **names = NULL;
    int npos, rc, n = 0, lf;
    const char *nl;
    size_t got;
    struct buf msg, dom, from, why, out;
    struct dkim_params p;
    struct dkim_key *keys[DKIM_KEYS_MAX];
    struct dkim_keyring *kr = NULL;

    if ((rc = cli_parse(c, argc, argv, opts, &pos, &npos)) != 0)
        return rc;
    myfree(pos);
    if (npos)
        return cli_usage_error(c, "the message is read from standard input");
    buf_init(&msg, 65536);
    buf_init(&dom, 128);
    buf_init(&from, 256);
    buf_init(&why, 128);
    buf_init(&out, 2048);
    while ((got = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
        buf_append(&msg, chunk, got);
    if (ferror(stdin)) {
        rc = cli_fail(EX_IOERR, "cannot read the message: %s", strerror(errno));
        goto out;
    }
    if (domain) {
        if ((rc = domain_arg(domain, &dom)) != 0)
            goto out;
    } else if (from_value(msg.data, msg.len, &from) < 0) {
        rc = cli_fail(EX_DATAERR, "the message has no From field to sign");
        goto out;
    } else if (dkim_from_domain(buf_str(&from), &dom, &why) < 0) {
        rc = cli_fail(EX_DATAERR, "%s", buf_str(&why));
        goto out;
    }
    if ((rc = cli_open(c, STORE_READ)) != 0)
        goto out;
    if (dkim_params_conf(&p, c->conf, &names, &why) < 0) {
        rc = cli_fail(EX_CONFIG, "%s", buf_str(&why));
        goto out;
    }
    kr = dkim_keyring_new(c->st,
                          domain ? NULL : conf_string(c->conf, "dkim.default_domain"));
    if ((n = dkim_keyring_find(kr, buf_str(&dom), keys, &why)) < 0) {
        rc = cli_fail(EX_UNAVAILABLE, "%s", buf_str(&why));
        goto out;
    }
    if (n == 0 && domain) {
        rc = cli_fail(EX_NOUSER, "no usable DKIM key for %s", buf_str(&dom));
        goto out;
    }
    if (n == 0) {
        /* as in the mail path: no key, no signature, and the mail goes on */
        fprintf(stderr, "sgadmin: no DKIM key for %s; the message is not signed\n",
                buf_str(&dom));
    } else if (dkim_sign_message(keys, (size_t)n, &p, msg.data, msg.len, &out, &why) <
               0) {
        rc = cli_fail(EX_DATAERR, "%s", buf_str(&why));
        goto out;
    }
    /* the fields end lines as the message does */
    nl = memchr(msg.data, '\n', msg.len);
    lf = nl != NULL && !(nl > msg.data && nl[-1] == '\r');
    for (size_t i = 0; i < out.len; i++)
        if (!(lf && out.data[i] == '\r' && i + 1 < out.len && out.data[i + 1] == '\n'))
            putchar(out.data[i]);
    fwrite(msg.data, 1, msg.len, stdout);
out:
    for (int i = 0; i < n; i++)
        dkim_key_free(keys[i]);
    dkim_keyring_free(kr);
    myfree(names);
    buf_release(&msg);
    buf_release(&dom);
    buf_release(&from);
    buf_release(&why);
    buf_release(&out);
    return rc;
}

const struct cli_verb dkim_verbs[] = {
    {"generate", cmd_generate,
     "--domain D [--selector S] [--algorithm rsa|ed25519] [--bits N]",
     "make a key, record it, and print its DNS record"},
    {"add", cmd_add, "--domain D --selector S --key FILE",
     "record an existing private key"},
    {"list", cmd_list, "[DOMAIN]", "list the keys, and whether their files are usable"},
    {"show", cmd_show, "DOMAIN SELECTOR", "one key, with its DNS record"},
    {"dns", cmd_dns, "DOMAIN SELECTOR", "the TXT record to publish for a key"},
    {"delete", cmd_delete, "DOMAIN SELECTOR [--purge]",
     "forget a key (--purge: remove its file too)"},
    {"sign", cmd_sign, "[--domain D] < MESSAGE",
     "sign a message with the keys of its From domain (or D)"},
    {NULL, NULL, NULL, NULL},
};
