/*
 * token - encrypted, authenticated tokens for URLs and addresses, see token.h.
 *
 * Decoding reads through one cursor (struct rd) whose every step checks the
 * bytes left first, so no length in a token can make it read past the end;
 * the tag is checked before any of the plaintext is looked at.  Nothing is
 * kept between calls but the keys, which are not written after loading, so
 * encode and decode need no lock.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "conf.h"
#include "msg.h"
#include "mymalloc.h"
#include "token.h"

#define FORMAT_VERSION 1
#define KEY_LEN 32   /* master key and subkeys */
#define NONCE_LEN 12 /* ChaCha20-Poly1305 */
#define TAG_LEN 16
#define HEAD_LEN 2  /* version, key id: the AAD */
#define MAC_LEN 16  /* token_mac: HMAC-SHA256 truncated */
#define MAC_TEXT 22 /* base64url of MAC_LEN bytes */
#define KEY_FILE_MAX (1024 * 1024)

/* created is kept as seconds since this moment, so that it takes 4 bytes */
#define CREATED_EPOCH 1704067200 /* 2024-01-01T00:00:00Z */

/* the longest plaintext and token: each varint at its longest */
#define PLAIN_MAX                                                                        \
    (1 + 5 + 10 + (1 + TOKEN_TENANT_MAX) + (2 + TOKEN_MESSAGE_MAX) +                     \
     (2 + TOKEN_RECIPIENT_MAX) + (2 + TOKEN_DATA_MAX))
#define RAW_MAX (HEAD_LEN + NONCE_LEN + PLAIN_MAX + TAG_LEN)
/* the shortest: purpose, group, created, a 1-byte tenant, three empty fields */
#define PLAIN_MIN (1 + 1 + 1 + 2 + 1 + 1 + 1)
#define RAW_MIN (HEAD_LEN + NONCE_LEN + PLAIN_MIN + TAG_LEN)

_Static_assert(TOKEN_TEXT_MAX == (RAW_MAX * 4 + 2) / 3, "TOKEN_TEXT_MAX is not RAW_MAX");

struct token_key {
    unsigned kid;
    unsigned char aead[KEY_LEN]; /* "sendguard token v1" */
    /*
     * HMAC-SHA256 keyed with the "sendguard marker v1" subkey, initialised:
     * each use works on a copy (EVP_MAC_CTX_dup reads it only, so threads may
     * share it), which saves a digest fetch and key setup per marker.
     */
    EVP_MAC_CTX *mac;
};

struct token_keys {
    struct token_key *keys; /* keys[0] encodes */
    size_t n, cap;
    unsigned char slot[TOKEN_KID_MAX + 1]; /* key id -> index + 1; 0: none */
};

/* The algorithms, fetched once: an implicit fetch per use costs a lookup. */
static EVP_CIPHER *aead_cipher;
static EVP_KDF *hkdf;
static EVP_MAC *hmac;
static pthread_once_t algs_once = PTHREAD_ONCE_INIT;

/* algs_fetch - fetch the algorithms; a missing one is reported at key loading */
static void algs_fetch(void)
{
    aead_cipher = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
    hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

/* algs_ready - are the algorithms there? 0, or -1 with why filled */
static int algs_ready(struct buf *why)
{
    pthread_once(&algs_once, algs_fetch);
    if (aead_cipher == NULL || hkdf == NULL || hmac == NULL)
        return buf_error(why, "OpenSSL lacks %s, which tokens need",
                         aead_cipher == NULL ? "ChaCha20-Poly1305"
                         : hkdf == NULL      ? "HKDF"
                                             : "HMAC");
    return 0;
}

/*
 * Per thread, for speed (a newsletter's links make dozens of tokens, the
 * tracker decodes one per click): one cipher context, reused by
 * token_encode and token_decode, and random nonces drawn from
 * OpenSSL in batches (each RAND_bytes call costs more than the encryption:
 * OpenSSL checks its process id on each).  A child after fork() drops its
 * batch, or parent and child would use the same nonces.
 */
#define NONCE_BATCH 64
struct token_thread {
    EVP_CIPHER_CTX *ctx;
    unsigned char nonces[NONCE_BATCH * NONCE_LEN];
    size_t used; /* bytes of nonces handed out; sizeof(nonces): empty */
};
static pthread_key_t thread_key;
static pthread_once_t thread_once = PTHREAD_ONCE_INIT;
static __thread struct token_thread *this_thread;

static void thread_free(void *p)
{
    struct token_thread *tt = p;

    EVP_CIPHER_CTX_free(tt->ctx);
    OPENSSL_cleanse(tt->nonces, sizeof(tt->nonces));
    myfree(tt);
}

static void thread_forked(void)
{
    if (this_thread)
        this_thread->used = sizeof(this_thread->nonces);
}

static void thread_init(void)
{
    pthread_key_create(&thread_key, thread_free);
    pthread_atfork(NULL, NULL, thread_forked);
}

/* thread_state - this thread's context and nonces (made at its first token) */
static struct token_thread *thread_state(void)
{
    if (this_thread == NULL) {
        pthread_once(&thread_once, thread_init);
        this_thread = mycalloc(1, sizeof(*this_thread));
        this_thread->ctx = EVP_CIPHER_CTX_new();
        this_thread->used = sizeof(this_thread->nonces);
        pthread_setspecific(thread_key, this_thread);
    }
    return this_thread;
}

/* next_nonce - n random bytes (n <= NONCE_LEN) never handed out before; 0 or -1 */
static int next_nonce(struct token_thread *tt, unsigned char *nonce, size_t n)
{
    if (tt->used + n > sizeof(tt->nonces)) {
        if (RAND_bytes(tt->nonces, sizeof(tt->nonces)) != 1)
            return -1;
        tt->used = 0;
    }
    memcpy(nonce, tt->nonces + tt->used, n);
    OPENSSL_cleanse(tt->nonces + tt->used, n);
    tt->used += n;
    return 0;
}

/* Base64url, without padding. */

static const char b64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* b64_encode - append the base64url of bytes */
static void b64_encode(struct buf *out, const unsigned char *p, size_t len)
{
    char *o;

    buf_reserve(out, (len * 4 + 2) / 3 + 1);
    o = out->data + out->len;
    for (; len >= 3; p += 3, len -= 3) {
        *o++ = b64_chars[p[0] >> 2];
        *o++ = b64_chars[(p[0] & 3) << 4 | p[1] >> 4];
        *o++ = b64_chars[(p[1] & 15) << 2 | p[2] >> 6];
        *o++ = b64_chars[p[2] & 63];
    }
    if (len > 0) {
        *o++ = b64_chars[p[0] >> 2];
        if (len == 1) {
            *o++ = b64_chars[(p[0] & 3) << 4];
        } else {
            *o++ = b64_chars[(p[0] & 3) << 4 | p[1] >> 4];
            *o++ = b64_chars[(p[1] & 15) << 2];
        }
    }
    out->len = (size_t)(o - out->data);
    out->data[out->len] = 0;
}

/* b64_value - the 6 bits of a base64url character, or -1 */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/*
 * b64_decode - the bytes of base64url text into out (room for len * 3 / 4):
 * their number, or -1 for a bad character or length, or left-over bits that
 * are not zero (so each byte string has exactly one text).
 */
static long b64_decode(const char *text, size_t len, unsigned char *out)
{
    const unsigned char *p = (const unsigned char *)text;
    unsigned char *o = out;
    uint32_t acc = 0;
    int bits = 0;

    if (len % 4 == 1)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(p[i]);

        if (v < 0)
            return -1;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (unsigned char)(acc >> bits);
        }
    }
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return -1;
    return (long)(o - out);
}

/* Keys. */

/* derive - one subkey of a master key, by HKDF-SHA256 with this info label */
static int derive(const unsigned char master[KEY_LEN], const char *info,
                  unsigned char out[KEY_LEN])
{
    EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(hkdf);
    OSSL_PARAM params[4];
    int ok;

    if (ctx == NULL)
        return -1;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
    params[1] =
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)master, KEY_LEN);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info,
                                                  strlen(info));
    params[3] = OSSL_PARAM_construct_end();
    ok = EVP_KDF_derive(ctx, out, KEY_LEN, params) == 1;
    EVP_KDF_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* key_add - derive the subkeys of one master key and add them */
static int key_add(struct token_keys *keys, unsigned kid,
                   const unsigned char master[KEY_LEN], struct buf *why)
{
    unsigned char mkey[KEY_LEN];
    struct token_key *k;
    OSSL_PARAM params[2];
    int ok;

    keys->keys = mygrow(keys->keys, &keys->cap, keys->n, sizeof(*keys->keys));
    k = &keys->keys[keys->n];
    memset(k, 0, sizeof(*k));
    k->kid = kid;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    ok = derive(master, "sendguard token v1", k->aead) == 0 &&
         derive(master, "sendguard marker v1", mkey) == 0 &&
         (k->mac = EVP_MAC_CTX_new(hmac)) != NULL &&
         EVP_MAC_init(k->mac, mkey, KEY_LEN, params) == 1;
    OPENSSL_cleanse(mkey, sizeof(mkey));
    if (!ok) {
        EVP_MAC_CTX_free(k->mac);
        OPENSSL_cleanse(k, sizeof(*k));
        return buf_error(why, "OpenSSL could not derive the token keys");
    }
    keys->n++;
    keys->slot[kid] = (unsigned char)keys->n;
    return 0;
}

/* key_line - one non-blank, non-comment line "KID:HEX" */
static int key_line(struct token_keys *keys, const char *p, size_t len, struct buf *why)
{
    const char *colon = memchr(p, ':', len), *hex;
    unsigned char master[KEY_LEN];
    unsigned kid = 0;
    size_t digits;
    int rc;

    if (colon == NULL)
        return buf_error(why, "expected KID:HEX");
    digits = (size_t)(colon - p);
    for (size_t i = 0; i < digits; i++) {
        if (p[i] < '0' || p[i] > '9' || digits > 3) {
            kid = 0;
            break;
        }
        kid = kid * 10 + (unsigned)(p[i] - '0');
    }
    if (kid < 1 || kid > TOKEN_KID_MAX)
        return buf_error(why, "the key id must be a number from 1 to %d", TOKEN_KID_MAX);
    if (keys->slot[kid])
        return buf_error(why, "key id %u is listed twice", kid);
    hex = colon + 1;
    if ((size_t)(p + len - hex) != 2 * KEY_LEN)
        return buf_error(why, "the key must be %d hex digits (%d bytes), not %zu",
                         2 * KEY_LEN, KEY_LEN, (size_t)(p + len - hex));
    for (size_t i = 0; i < KEY_LEN; i++) {
        int hi = buf_hex_digit((unsigned char)hex[2 * i]);
        int lo = buf_hex_digit((unsigned char)hex[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            OPENSSL_cleanse(master, sizeof(master));
            return buf_error(why, "the key is not all hex digits");
        }
        master[i] = (unsigned char)(hi << 4 | lo);
    }
    rc = key_add(keys, kid, master, why);
    OPENSSL_cleanse(master, sizeof(master));
    return rc;
}

/* keys_parse - the keys of a key file's text; what names it in errors */
static struct token_keys *keys_parse(const char *text, size_t len, const char *what,
                                     struct buf *why)
{
    struct token_keys *keys;
    const char *p = text, *end = text + len;
    unsigned line = 0;
    struct buf reason;

    if (algs_ready(why) < 0)
        return NULL;
    keys = mycalloc(1, sizeof(*keys));
    buf_init(&reason, 128);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end, *next = nl ? nl + 1 : end;

        line++;
        while (p < e && (*p == ' ' || *p == '\t' || *p == '\r'))
            p++;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            e--;
        if (p < e && *p != '#' && key_line(keys, p, (size_t)(e - p), &reason) < 0) {
            if (what)
                buf_error(why, "%s:%u: %s", what, line, buf_str(&reason));
            else
                buf_error(why, "line %u: %s", line, buf_str(&reason));
            goto error;
        }
        p = next;
    }
    if (keys->n == 0) {
        buf_error(why, "%s holds no key", what ? what : "the key text");
        goto error;
    }
    buf_release(&reason);
    return keys;

error:
    buf_release(&reason);
    token_keys_free(keys);
    return NULL;
}

/* token_keys_from_text - see token.h */
struct token_keys *token_keys_from_text(const char *text, size_t len, struct buf *why)
{
    return keys_parse(text, len, NULL, why);
}

/* token_keys_load - see token.h */
struct token_keys *token_keys_load(const char *path, struct buf *why)
{
    struct token_keys *keys = NULL;
    struct stat st;
    struct buf text;
    ssize_t n;
    int fd;

    if (conf_check_secret(path, why) < 0)
        return NULL;
    /* checked again on what was opened: the name may have changed meanwhile */
    if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        buf_error(why, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & S_IRWXO) != 0) {
        close(fd);
        buf_error(why,
                  "%s changed while it was opened; a secret must be a regular file "
                  "not accessible by other users",
                  path);
        return NULL;
    }
    /* room for all at once: a realloc would leave a copy of the keys behind */
    buf_init(&text, st.st_size < KEY_FILE_MAX ? (size_t)st.st_size + 4096 : KEY_FILE_MAX);
    for (;;) {
        if (text.len == text.cap)
            buf_reserve(&text, 4096);
        n = read(fd, text.data + text.len, text.cap - text.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        text.len += (size_t)n;
        if (text.len > KEY_FILE_MAX)
            break;
    }
    if (n < 0)
        buf_error(why, "cannot read %s: %s", path, strerror(errno));
    else if (text.len > KEY_FILE_MAX)
        buf_error(why, "%s is larger than %d bytes; not a key file", path, KEY_FILE_MAX);
    else
        keys = keys_parse(text.data, text.len, path, why);
    close(fd);
    OPENSSL_cleanse(text.data, text.cap + 1);
    buf_release(&text);
    return keys;
}

/* token_keys_free - see token.h */
void token_keys_free(struct token_keys *keys)
{
    if (keys == NULL)
        return;
    for (size_t i = 0; i < keys->n; i++)
        EVP_MAC_CTX_free(keys->keys[i].mac);
    if (keys->keys)
        OPENSSL_cleanse(keys->keys, keys->cap * sizeof(*keys->keys));
    myfree(keys->keys);
    myfree(keys);
}

/* token_keys_current - see token.h */
unsigned token_keys_current(const struct token_keys *keys)
{
    return keys->keys[0].kid;
}

/* token_keys_has - see token.h */
int token_keys_has(const struct token_keys *keys, unsigned kid)
{
    return kid >= 1 && kid <= TOKEN_KID_MAX && keys->slot[kid] != 0;
}

/* token_key_line - see token.h */
void token_key_line(unsigned kid, struct buf *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char key[KEY_LEN];

    if (kid < 1 || kid > TOKEN_KID_MAX)
        msg_panic("token_key_line: key id %u is not 1 to %d", kid, TOKEN_KID_MAX);
    if (RAND_bytes(key, sizeof(key)) != 1)
        msg_fatal("OpenSSL has no random bytes for a token key");
    buf_printf(out, "%u:", kid);
    for (size_t i = 0; i < KEY_LEN; i++) {
        buf_putc(out, hex[key[i] >> 4]);
        buf_putc(out, hex[key[i] & 15]);
    }
    buf_putc(out, '\n');
    OPENSSL_cleanse(key, sizeof(key));
}

/* key_of - the key with this id, or NULL */
static const struct token_key *key_of(const struct token_keys *keys, unsigned kid)
{
    if (kid > TOKEN_KID_MAX || keys->slot[kid] == 0)
        return NULL;
    return &keys->keys[keys->slot[kid] - 1];
}

/* The plaintext. */

/* put_varint - append v as LEB128 */
static void put_varint(struct buf *b, uint64_t v)
{
    while (v >= 0x80) {
        buf_putc(b, (int)(v & 0x7f) | 0x80);
        v >>= 7;
    }
    buf_putc(b, (int)v);
}

/* put_field - append a varint length and the bytes */
static void put_field(struct buf *b, const void *p, size_t len)
{
    put_varint(b, len);
    buf_append(b, p, len);
}

/* A cursor over bytes: every read checks what is left first. */
struct rd {
    const unsigned char *p, *end;
};

/* get_varint - a LEB128 number in its shortest form, at most 64 bits */
static int get_varint(struct rd *r, uint64_t *v)
{
    uint64_t x = 0;

    for (unsigned shift = 0; shift < 64; shift += 7) {
        unsigned char c;

        if (r->p >= r->end)
            return -1;
        c = *r->p++;
        if (shift == 63 && c > 1)
            return -1; /* more than 64 bits */
        x |= (uint64_t)(c & 0x7f) << shift;
        if ((c & 0x80) == 0) {
            if (c == 0 && shift > 0)
                return -1; /* not the shortest form */
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* get_field - a varint length of at most max, and that many bytes */
static int get_field(struct rd *r, size_t max, const unsigned char **p, size_t *len)
{
    uint64_t n;

    if (get_varint(r, &n) < 0 || n > max || n > (uint64_t)(r->end - r->p))
        return -1;
    *p = r->p;
    *len = (size_t)n;
    r->p += n;
    return 0;
}

/* get_string - a field as a new NUL-terminated string; a NUL inside is malformed */
static int get_string(struct rd *r, size_t min, size_t max, char **out)
{
    const unsigned char *p;
    size_t len;

    if (get_field(r, max, &p, &len) < 0 || len < min || memchr(p, 0, len) != NULL)
        return -1;
    *out = mystrndup((const char *)p, len);
    return 0;
}

/* plain_parse - the fields of a decrypted plaintext into t */
static int plain_parse(const unsigned char *p, size_t len, struct token *t)
{
    struct rd r = {p, p + len};
    const unsigned char *data;
    uint64_t v;

    if (r.p >= r.end || *r.p < TOKEN_UNSUBSCRIBE || *r.p > TOKEN_RETURN_PATH)
        return -1;
    t->purpose = (enum token_purpose)r.p[0];
    r.p++;
    if (get_varint(&r, &v) < 0 || v > UINT32_MAX)
        return -1;
    t->group = (uint32_t)v;
    if (get_varint(&r, &v) < 0)
        return -1;
    t->created = (int64_t)(v + CREATED_EPOCH); /* modulo 2^64, as encoded */
    if (get_string(&r, 1, TOKEN_TENANT_MAX, &t->tenant) < 0 ||
        get_string(&r, 0, TOKEN_MESSAGE_MAX, &t->message) < 0 ||
        get_string(&r, 0, TOKEN_RECIPIENT_MAX, &t->recipient) < 0 ||
        get_field(&r, TOKEN_DATA_MAX, &data, &t->data_len) < 0 || r.p != r.end)
        return -1;
    if (t->data_len > 0) {
        t->data = mymalloc(t->data_len + 1);
        memcpy(t->data, data, t->data_len);
        t->data[t->data_len] = 0;
    }
    return 0;
}

/* Tokens. */

/* token_encode - see token.h */
int token_encode(const struct token_keys *keys, const struct token *t, struct buf *out,
                 struct buf *why)
{
    const struct token_key *k = &keys->keys[0];
    const char *msgid = t->message ? t->message : "";
    const char *rcpt = t->recipient ? t->recipient : "";
    size_t tlen = t->tenant ? strlen(t->tenant) : 0;
    size_t mlen = strlen(msgid), rlen = strlen(rcpt);
    int64_t created = t->created ? t->created : (int64_t)time(NULL);
    unsigned char *raw, *ct;
    struct token_thread *tt = thread_state();
    EVP_CIPHER_CTX *ctx = tt->ctx;
    struct buf plain;
    int n, fin, ok;

    if (t->purpose < TOKEN_UNSUBSCRIBE || t->purpose > TOKEN_RETURN_PATH)
        return buf_error(why, "bad token purpose %d", (int)t->purpose);
    if (tlen == 0)
        return buf_error(why, "a token needs a tenant");
    if (tlen > TOKEN_TENANT_MAX)
        return buf_error(why, "the tenant has %zu bytes; a token holds at most %d", tlen,
                         TOKEN_TENANT_MAX);
    if (mlen > TOKEN_MESSAGE_MAX)
        return buf_error(why, "the message id has %zu bytes; a token holds at most %d",
                         mlen, TOKEN_MESSAGE_MAX);
    if (rlen > TOKEN_RECIPIENT_MAX)
        return buf_error(why, "the recipient has %zu bytes; a token holds at most %d",
                         rlen, TOKEN_RECIPIENT_MAX);
    if (t->data_len > TOKEN_DATA_MAX)
        return buf_error(why, "the data has %zu bytes; a token holds at most %d",
                         t->data_len, TOKEN_DATA_MAX);
    if (t->data == NULL && t->data_len > 0)
        return buf_error(why, "the token's data is NULL but data_len is %zu",
                         t->data_len);

    buf_init(&plain, 64 + tlen + mlen + rlen + t->data_len);
    buf_putc(&plain, (int)t->purpose);
    put_varint(&plain, t->group);
    put_varint(&plain, (uint64_t)created - CREATED_EPOCH); /* modulo 2^64 */
    put_field(&plain, t->tenant, tlen);
    put_field(&plain, msgid, mlen);
    put_field(&plain, rcpt, rlen);
    put_field(&plain, t->data, t->data_len);

    raw = mymalloc(HEAD_LEN + NONCE_LEN + plain.len + TAG_LEN);
    raw[0] = FORMAT_VERSION;
    raw[1] = (unsigned char)k->kid;
    ct = raw + HEAD_LEN + NONCE_LEN;
    ok = next_nonce(tt, raw + HEAD_LEN, NONCE_LEN) == 0;
    if (!ok)
        buf_error(why, "OpenSSL has no random bytes for the token's nonce");
    if (ok) {
        ok =
            ctx != NULL &&
            EVP_EncryptInit_ex2(ctx, aead_cipher, k->aead, raw + HEAD_LEN, NULL) == 1 &&
            EVP_EncryptUpdate(ctx, NULL, &n, raw, HEAD_LEN) == 1 &&
            EVP_EncryptUpdate(ctx, ct, &n, (unsigned char *)plain.data, (int)plain.len) ==
                1 &&
            EVP_EncryptFinal_ex(ctx, ct + n, &fin) == 1 &&
            (size_t)n + (size_t)fin == plain.len &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, ct + plain.len) == 1;
        if (!ok)
            buf_error(why, "OpenSSL could not encrypt the token");
    }
    if (ok)
        b64_encode(out, raw, HEAD_LEN + NONCE_LEN + plain.len + TAG_LEN);
    myfree(raw);
    buf_release(&plain);
    return ok ? 0 : -1;
}

/*
 * decrypt - the plaintext of a token's bytes under key k, in an allocation of
 * its exact size (so that the sanitizers see any read past its end); NULL if
 * the tag does not verify.
 */
static unsigned char *decrypt(const struct token_key *k, unsigned char *raw, size_t len)
{
    unsigned char *ct = raw + HEAD_LEN + NONCE_LEN, *tag = raw + len - TAG_LEN;
    size_t ctlen = len - HEAD_LEN - NONCE_LEN - TAG_LEN;
    unsigned char *plain = mymalloc(ctlen);
    EVP_CIPHER_CTX *ctx = thread_state()->ctx; /* the thread's, as for encoding */
    int n, fin, ok;

    ok = ctx != NULL &&
         EVP_DecryptInit_ex2(ctx, aead_cipher, k->aead, raw + HEAD_LEN, NULL) == 1 &&
         EVP_DecryptUpdate(ctx, NULL, &n, raw, HEAD_LEN) == 1 &&
         EVP_DecryptUpdate(ctx, plain, &n, ct, (int)ctlen) == 1 && (size_t)n == ctlen &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, tag) == 1 &&
         EVP_DecryptFinal_ex(ctx, plain + n, &fin) == 1 && fin == 0;
    if (!ok) {
        myfree(plain);
        return NULL;
    }
    return plain;
}

/* token_decode - see token.h */
int token_decode(const struct token_keys *keys, const char *text, size_t len,
                 struct token *t, struct buf *why)
{
    const struct token_key *k;
    unsigned char *raw = NULL, *plain = NULL;
    long n;
    int rc = -1;

    memset(t, 0, sizeof(*t));
    if (len == 0) {
        buf_error(why, "not a token: empty");
        goto out;
    }
    if (len > TOKEN_TEXT_MAX) {
        buf_error(why, "not a token: %zu characters, more than a token has", len);
        goto out;
    }
    /* the exact size, as for the plaintext */
    raw = mymalloc(len * 3 / 4);
    if ((n = b64_decode(text, len, raw)) < 0) {
        buf_error(why, "not a token: not base64url text");
        goto out;
    }
    if (n < RAW_MIN) {
        buf_error(why, "not a token: too short");
        goto out;
    }
    if (raw[0] != FORMAT_VERSION) {
        buf_error(why, "not a token: unknown version %u", raw[0]);
        goto out;
    }
    if ((k = key_of(keys, raw[1])) == NULL) {
        buf_error(why, "unknown key id %u", raw[1]);
        goto out;
    }
    if ((plain = decrypt(k, raw, (size_t)n)) == NULL) {
        buf_error(why, "token does not verify");
        goto out;
    }
    if (plain_parse(plain, (size_t)n - HEAD_LEN - NONCE_LEN - TAG_LEN, t) < 0) {
        token_release(t);
        buf_error(why, "token content is malformed");
        goto out;
    }
    rc = 0;
out:
    myfree(raw);
    myfree(plain);
    return rc;
}

/* token_release - see token.h */
void token_release(struct token *t)
{
    myfree(t->tenant);
    myfree(t->message);
    myfree(t->recipient);
    myfree(t->data);
    memset(t, 0, sizeof(*t));
}

/* Markers. */

/* mac_compute - the truncated HMAC of data under key k; 0 or -1 */
static int mac_compute(const struct token_key *k, const void *data, size_t len,
                       unsigned char out[MAC_LEN])
{
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(k->mac);
    unsigned char full[EVP_MAX_MD_SIZE];
    size_t flen = 0;
    int ok;

    ok = ctx != NULL && EVP_MAC_update(ctx, data, len) == 1 &&
         EVP_MAC_final(ctx, full, &flen, sizeof(full)) == 1 && flen >= MAC_LEN;
    EVP_MAC_CTX_free(ctx);
    if (ok)
        memcpy(out, full, MAC_LEN);
    OPENSSL_cleanse(full, sizeof(full));
    return ok ? 0 : -1;
}

/* token_mac - see token.h */
void token_mac(const struct token_keys *keys, const void *data, size_t len,
               struct buf *out)
{
    const struct token_key *k = &keys->keys[0];
    unsigned char mac[MAC_LEN];

    /* a working HMAC that fails is OpenSSL out of memory, as mymalloc would */
    if (mac_compute(k, data, len, mac) < 0)
        msg_fatal("OpenSSL could not compute HMAC-SHA256");
    buf_printf(out, "%u.", k->kid);
    b64_encode(out, mac, MAC_LEN);
}

/* token_mac_check - see token.h */
int token_mac_check(const struct token_keys *keys, const void *data, size_t len,
                    const char *text, size_t text_len)
{
    const char *dot = text_len ? memchr(text, '.', text_len) : NULL;
    unsigned char want[MAC_LEN + 2], got[MAC_LEN];
    const struct token_key *k;
    unsigned kid = 0;
    size_t digits;

    if (dot == NULL || (digits = (size_t)(dot - text)) < 1 || digits > 3 ||
        text + text_len - (dot + 1) != MAC_TEXT)
        return 0;
    for (size_t i = 0; i < digits; i++) {
        if (text[i] < '0' || text[i] > '9')
            return 0;
        kid = kid * 10 + (unsigned)(text[i] - '0');
    }
    if ((k = key_of(keys, kid)) == NULL || b64_decode(dot + 1, MAC_TEXT, want) != MAC_LEN)
        return 0;
    if (mac_compute(k, data, len, got) < 0)
        return 0;
    return CRYPTO_memcmp(want, got, MAC_LEN) == 0;
}

/* token_purpose_name - see token.h */
const char *token_purpose_name(enum token_purpose p)
{
    switch (p) {
    case TOKEN_UNSUBSCRIBE:
        return "unsubscribe";
    case TOKEN_PREFERENCES:
        return "preferences";
    case TOKEN_CLICK:
        return "click";
    case TOKEN_OPEN:
        return "open";
    case TOKEN_RETURN_PATH:
        return "return-path";
    }
    return "unknown";
}
