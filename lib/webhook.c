/*
 * webhook - the signed event webhook (see webhook.h).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "conf.h"
#include "fdio.h"
#include "mymalloc.h"
#include "webhook.h"

struct webhook_key {
    EVP_PKEY *pkey;
};

/* ssl_error - why with OpenSSL's last reason; -1 */
static int ssl_error(struct buf *why, const char *what)
{
    unsigned long e = ERR_get_error();
    char text[256];

    ERR_error_string_n(e, text, sizeof(text));
    ERR_clear_error();
    return buf_error(why, "%s: %s", what, e ? text : "unknown OpenSSL error");
}

/* webhook_key_generate - see webhook.h */
int webhook_key_generate(const char *path, struct buf *why)
{
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    BIO *mem = NULL;
    char *pem;
    long len;
    int fd, rc = -1;

    if (pkey == NULL)
        return ssl_error(why, "cannot make a P-256 key");
    if ((mem = BIO_new(BIO_s_mem())) == NULL ||
        !PEM_write_bio_PrivateKey(mem, pkey, NULL, NULL, 0, NULL, NULL)) {
        ssl_error(why, "cannot write the key");
        goto out;
    }
    len = BIO_get_mem_data(mem, &pem);
    if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
        buf_error(why, "cannot create %s: %s", path,
                  errno == EEXIST ? "it exists (a key is never replaced)"
                                  : strerror(errno));
        goto out;
    }
    if (fd_write(fd, pem, (size_t)len) < 0 || fsync(fd) < 0) {
        buf_error(why, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        goto out;
    }
    rc = close(fd) < 0 ? buf_error(why, "cannot write %s: %s", path, strerror(errno)) : 0;
out:
    BIO_free(mem);
    EVP_PKEY_free(pkey);
    return rc;
}

/* webhook_key_load - see webhook.h */
struct webhook_key *webhook_key_load(const char *path, struct buf *why)
{
    struct buf pem;
    BIO *mem;
    EVP_PKEY *pkey;
    struct webhook_key *k;

    if (conf_check_secret(path, why) < 0)
        return NULL;
    buf_init(&pem, 512);
    if (fd_read_file(path, &pem, why) < 0) {
        buf_release(&pem);
        return NULL;
    }
    mem = BIO_new_mem_buf(pem.data, (int)pem.len);
    pkey = mem ? PEM_read_bio_PrivateKey(mem, NULL, NULL, NULL) : NULL;
    BIO_free(mem);
    OPENSSL_cleanse(pem.data, pem.len);
    buf_release(&pem);
    if (pkey == NULL)
        return ssl_error(why, path), NULL;
    if (!EVP_PKEY_is_a(pkey, "EC") || EVP_PKEY_get_bits(pkey) != 256) {
        EVP_PKEY_free(pkey);
        return buf_error(why, "%s: not a P-256 (prime256v1) key", path), NULL;
    }
    k = mycalloc(1, sizeof(*k));
    k->pkey = pkey;
    return k;
}

/* webhook_key_free - see webhook.h */
void webhook_key_free(struct webhook_key *k)
{
    if (k == NULL)
        return;
    EVP_PKEY_free(k->pkey);
    myfree(k);
}

/* base64 - len bytes appended to out as base64, one line */
static void base64(const unsigned char *in, size_t len, struct buf *out)
{
    size_t n = 4 * ((len + 2) / 3);

    buf_reserve(out, n + 1);
    EVP_EncodeBlock((unsigned char *)out->data + out->len, in, (int)len);
    out->len += n;
    out->data[out->len] = 0;
}

/* webhook_public_key - see webhook.h */
void webhook_public_key(const struct webhook_key *k, struct buf *out)
{
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(k->pkey, &der);

    if (len > 0)
        base64(der, (size_t)len, out);
    OPENSSL_free(der);
}

/* webhook_sign - see webhook.h */
int webhook_sign(const struct webhook_key *k, const char *timestamp, const char *body,
                 size_t len, struct buf *out, struct buf *why)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char sig[128];
    size_t slen = sizeof(sig);
    int rc = -1;

    if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k->pkey) != 1 ||
        EVP_DigestSignUpdate(ctx, timestamp, strlen(timestamp)) != 1 ||
        EVP_DigestSignUpdate(ctx, body, len) != 1 ||
        EVP_DigestSignFinal(ctx, sig, &slen) != 1)
        ssl_error(why, "cannot sign");
    else {
        base64(sig, slen, out);
        rc = 0;
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* webhook_dir - see webhook.h */
void webhook_dir(const char *store_dir, const char *tenant, struct buf *out)
{
    buf_reset(out);
    buf_printf(out, "%s/webhook/%s", store_dir, tenant);
}

/* webhook_pos_read - see webhook.h */
int webhook_pos_read(const char *store_dir, const char *tenant, struct webhook_pos *pos,
                     struct buf *why)
{
    struct buf path, text;
    int rc;

    memset(pos, 0, sizeof(*pos));
    buf_init(&path, 128);
    buf_init(&text, 64);
    webhook_dir(store_dir, tenant, &path);
    buf_puts(&path, "/position");
    if (fd_read_file(buf_str(&path), &text, why) < 0)
        rc = errno == ENOENT ? 0 : -1;
    else if (sscanf(buf_str(&text), "%10s %lld", pos->day, &pos->offset) != 2 ||
             strlen(pos->day) != 10 || pos->offset < 0)
        rc = buf_error(why, "%s: not a position (DAY OFFSET)", buf_str(&path));
    else
        rc = 1;
    if (rc == 0)
        buf_reset(why);
    buf_release(&path);
    buf_release(&text);
    return rc;
}

/* webhook_pos_write - see webhook.h */
int webhook_pos_write(const char *store_dir, const char *tenant,
                      const struct webhook_pos *pos, struct buf *why)
{
    struct buf dir, tmp, path, text;
    int fd, rc = -1;

    buf_init(&dir, 128);
    buf_init(&tmp, 128);
    buf_init(&path, 128);
    buf_init(&text, 64);
    buf_printf(&dir, "%s/webhook", store_dir);
    fd_mkdir_shared(buf_str(&dir));
    webhook_dir(store_dir, tenant, &dir);
    fd_mkdir_shared(buf_str(&dir));
    buf_printf(&path, "%s/position", buf_str(&dir));
    buf_printf(&tmp, "%s/position.tmp", buf_str(&dir));
    buf_printf(&text, "%s %lld\n", pos->day, pos->offset);
    if ((fd = open(buf_str(&tmp), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0660)) < 0 ||
        fd_write(fd, text.data, text.len) < 0 || fsync(fd) < 0) {
        buf_error(why, "cannot write %s: %s", buf_str(&tmp), strerror(errno));
        if (fd >= 0)
            close(fd);
    } else if (close(fd) < 0 || rename(buf_str(&tmp), buf_str(&path)) < 0) {
        buf_error(why, "cannot replace %s: %s", buf_str(&path), strerror(errno));
    } else {
        /* the rename itself made durable */
        if ((fd = open(buf_str(&dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
            fsync(fd);
            close(fd);
        }
        rc = 0;
    }
    buf_release(&dir);
    buf_release(&tmp);
    buf_release(&path);
    buf_release(&text);
    return rc;
}

/* days_after - the day files of the log after day (exclusive), sorted; how many */
static size_t days_after(const char *store_dir, const char *day, char (**out)[11])
{
    struct buf dir;
    DIR *dh;
    struct dirent *de;
    size_t n = 0, cap = 0;

    *out = NULL;
    buf_init(&dir, 128);
    buf_printf(&dir, "%s/events", store_dir);
    if ((dh = opendir(buf_str(&dir))) != NULL) {
        while ((de = readdir(dh)) != NULL) {
            if (strlen(de->d_name) != 16 || strcmp(de->d_name + 10, ".jsonl") != 0 ||
                strncmp(de->d_name, day, 10) <= 0)
                continue;
            *out = mygrow(*out, &cap, n, sizeof(**out));
            memcpy((*out)[n], de->d_name, 10);
            (*out)[n++][10] = 0;
        }
        closedir(dh);
    }
    buf_release(&dir);
    qsort(*out, n, sizeof(**out), (int (*)(const void *, const void *))strcmp);
    return n;
}

/* webhook_pos_end - see webhook.h */
void webhook_pos_end(const char *store_dir, struct webhook_pos *pos)
{
    char(*days)[11];
    size_t n = days_after(store_dir, "0000-00-00", &days);
    struct buf path;
    struct stat st;

    memset(pos, 0, sizeof(*pos));
    if (n == 0) {
        time_t now = time(NULL);
        struct tm tm;

        gmtime_r(&now, &tm);
        strftime(pos->day, sizeof(pos->day), "%Y-%m-%d", &tm);
    } else {
        memcpy(pos->day, days[n - 1], 11);
        buf_init(&path, 128);
        buf_printf(&path, "%s/events/%s.jsonl", store_dir, pos->day);
        if (stat(buf_str(&path), &st) == 0)
            pos->offset = (long long)st.st_size;
        buf_release(&path);
    }
    myfree(days);
}

/* for_sending - an event as the hosted services post it: no "tenant" */
static json_t *for_sending(json_t *ev)
{
    json_object_del(ev, "tenant");
    return ev;
}

/* webhook_read - see webhook.h */
int webhook_read(const char *store_dir, const char *tenant, const struct webhook_pos *pos,
                 size_t max, json_t *events, struct webhook_pos *next, struct buf *why)
{
    struct buf path, data, tag;
    size_t taken = 0;
    int rc = 0;

    *next = *pos;
    buf_init(&path, 128);
    buf_init(&data, 65536);
    buf_init(&tag, 80);
    /* the lines of other tenants are passed over without parsing them */
    buf_printf(&tag, "\"tenant\":");
    {
        json_t *js = json_string(tenant);
        char *enc = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;

        buf_puts(&tag, enc ? enc : "\"\"");
        free(enc);
        json_decref(js);
    }
    while (taken < max && rc == 0) {
        int fd;
        struct stat st;
        char(*later)[11];
        size_t nlater;
        ssize_t got;
        const char *p, *end;

        buf_setf(&path, "%s/events/%s.jsonl", store_dir, next->day);
        fd = open(buf_str(&path), O_RDONLY | O_CLOEXEC);
        if (fd < 0 && errno != ENOENT) {
            rc = buf_error(why, "cannot read %s: %s", buf_str(&path), strerror(errno));
            break;
        }
        if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > next->offset) {
            /* at most 4 MiB at a time: a batch is far smaller */
            size_t want = (size_t)(st.st_size - next->offset);

            if (want > 4u << 20)
                want = 4u << 20;
            buf_reset(&data);
            buf_reserve(&data, want + 1);
            got = pread(fd, data.data, want, next->offset);
            close(fd);
            if (got < 0) {
                rc =
                    buf_error(why, "cannot read %s: %s", buf_str(&path), strerror(errno));
                break;
            }
            data.len = (size_t)got;
            data.data[data.len] = 0;
            /* whole lines only: one being written is left for later */
            for (p = data.data, end = data.data + data.len; p < end && taken < max;) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                json_t *ev;

                if (nl == NULL)
                    break;
                if (memmem(p, (size_t)(nl - p), tag.data, tag.len) != NULL &&
                    (ev = json_loadb(p, (size_t)(nl - p), 0, NULL)) != NULL) {
                    const char *t = json_string_value(json_object_get(ev, "tenant"));

                    if (t && strcmp(t, tenant) == 0) {
                        json_array_append_new(events, for_sending(ev));
                        taken++;
                    } else {
                        json_decref(ev);
                    }
                }
                next->offset += (long long)(nl + 1 - p);
                p = nl + 1;
            }
            if (taken >= max)
                break;
            if (p < end) /* the rest is a line being written */
                break;
            continue; /* read again from the new offset */
        }
        if (fd >= 0)
            close(fd);
        /* this day is read: on to the next one, once there is one */
        nlater = days_after(store_dir, next->day, &later);
        if (nlater == 0) {
            myfree(later);
            break;
        }
        memcpy(next->day, later[0], 11);
        next->offset = 0;
        myfree(later);
    }
    buf_release(&path);
    buf_release(&data);
    buf_release(&tag);
    return rc;
}

/* webhook_backlog - see webhook.h */
long long webhook_backlog(const char *store_dir, const char *tenant,
                          const struct webhook_pos *pos)
{
    struct webhook_pos at = *pos, next;
    long long n = 0;
    struct buf why;

    buf_init(&why, 64);
    for (;;) {
        json_t *evs = json_array();
        size_t got;

        if (webhook_read(store_dir, tenant, &at, 10000, evs, &next, &why) < 0) {
            json_decref(evs);
            break;
        }
        got = json_array_size(evs);
        json_decref(evs);
        n += (long long)got;
        if (got == 0 && strcmp(next.day, at.day) == 0 && next.offset == at.offset)
            break;
        at = next;
    }
    buf_release(&why);
    return n;
}
