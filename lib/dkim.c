/*
 * dkim - DKIM signing, see dkim.h.
 *
 * The body is canonicalised by a byte-at-a-time state machine into a staging
 * buffer that feeds SHA-256 in large blocks, so chunk boundaries (a CR at
 * the end of one chunk, its LF at the start of the next) change nothing.
 * Header fields are kept, normalised to CRLF, until dkim_sign_end: only then
 * is it known which of them the signature covers.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dkim.h"
#include "mymalloc.h"

struct dkim_key {
    int refs; /* dkim_key_ref, dkim_key_free */
    EVP_PKEY *pkey;
    enum dkim_alg alg;
    int bits;
    char *domain, *selector;
};

/* The default signed header fields (issue: DKIM). */
const char *const dkim_default_headers[] = {
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
    NULL,
};

#define STAGE_SIZE 16384

struct field {
    char *text; /* the whole field, lines ending in CRLF, the last one too */
    size_t len;
    size_t namelen;
};

struct dkim_sign {
    const struct dkim_key *key;
    struct dkim_params p;
    EVP_MD_CTX *body_md;
    /* body canonicalisation state */
    unsigned char stage[STAGE_SIZE];
    size_t staged;
    int cr_held;        /* a CR ended the last chunk */
    size_t empty_lines; /* empty lines not yet known not to be trailing */
    int line_has_data;  /* the current line has content */
    int wsp_pending;    /* relaxed: white space seen, not yet written */
    int body_has_data;  /* anything but trailing empty lines so far */
    /* header fields */
    struct field *fields;
    size_t nfields, cap;
    int failed;
    struct buf failure; /* why the first refused field was refused */
};

/* dkim_alg_name - see dkim.h */
const char *dkim_alg_name(enum dkim_alg alg)
{
    return alg == DKIM_ED25519_SHA256 ? "ed25519-sha256" : "rsa-sha256";
}

/* Keys. */

/* key_from_bio - a private key from PEM, checked for type and size */
static struct dkim_key *key_from_bio(BIO *bio, const char *what, const char *domain,
                                     const char *selector, struct buf *why)
{
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    struct dkim_key *key;
    int id;

    if (pkey == NULL) {
        buf_error(why, "%s is not a PEM private key", what);
        return NULL;
    }
    key = mycalloc(1, sizeof(*key));
    key->refs = 1;
    key->pkey = pkey;
    id = EVP_PKEY_get_id(pkey);
    if (id == EVP_PKEY_RSA) {
        key->alg = DKIM_RSA_SHA256;
        key->bits = EVP_PKEY_get_bits(pkey);
        if (key->bits < DKIM_RSA_MIN_BITS || key->bits > DKIM_RSA_MAX_BITS) {
            buf_error(why, "%s: an RSA key of %d bits; DKIM keys have %d to %d", what,
                      key->bits, DKIM_RSA_MIN_BITS, DKIM_RSA_MAX_BITS);
            dkim_key_free(key);
            return NULL;
        }
    } else if (id == EVP_PKEY_ED25519) {
        key->alg = DKIM_ED25519_SHA256;
        key->bits = 256;
    } else {
        buf_error(why, "%s: neither an RSA nor an Ed25519 key", what);
        dkim_key_free(key);
        return NULL;
    }
    key->domain = mystrdup(domain);
    key->selector = mystrdup(selector);
    return key;
}

/* dkim_key_load - see dkim.h */
struct dkim_key *dkim_key_load(const char *path, const char *domain, const char *selector,
                               struct buf *why)
{
    BIO *bio = BIO_new_file(path, "r");
    struct dkim_key *key;

    if (bio == NULL) {
        buf_error(why, "cannot read DKIM key %s", path);
        return NULL;
    }
    key = key_from_bio(bio, path, domain, selector, why);
    BIO_free(bio);
    return key;
}

/* dkim_key_from_pem - see dkim.h */
struct dkim_key *dkim_key_from_pem(const char *pem, size_t len, const char *domain,
                                   const char *selector, struct buf *why)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    struct dkim_key *key = key_from_bio(bio, "the key", domain, selector, why);

    BIO_free(bio);
    return key;
}

/* dkim_key_generate - see dkim.h */
struct dkim_key *dkim_key_generate(enum dkim_alg alg, int bits, const char *domain,
                                   const char *selector, struct buf *why)
{
    EVP_PKEY *pkey;
    struct dkim_key *key;

    if (alg == DKIM_RSA_SHA256 && (bits < DKIM_RSA_MIN_BITS || bits > DKIM_RSA_MAX_BITS))
        return buf_error(why, "RSA keys for DKIM have %d to %d bits, not %d",
                         DKIM_RSA_MIN_BITS, DKIM_RSA_MAX_BITS, bits),
               NULL;
    pkey = alg == DKIM_RSA_SHA256 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits)
                                  : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (pkey == NULL)
        return buf_error(why, "OpenSSL could not generate the key"), NULL;
    key = mycalloc(1, sizeof(*key));
    key->refs = 1;
    key->pkey = pkey;
    key->alg = alg;
    key->bits = alg == DKIM_RSA_SHA256 ? EVP_PKEY_get_bits(pkey) : 256;
    key->domain = mystrdup(domain);
    key->selector = mystrdup(selector);
    return key;
}

/* dkim_key_write - see dkim.h */
int dkim_key_write(const struct dkim_key *key, const char *path, struct buf *why)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    BIO *bio;
    int ok;

    if (fd < 0)
        return buf_error(why, "cannot create %s: %s", path, strerror(errno));
    if ((bio = BIO_new_fd(fd, BIO_NOCLOSE)) == NULL) {
        close(fd);
        unlink(path);
        return buf_error(why, "out of memory");
    }
    ok = PEM_write_bio_PrivateKey(bio, key->pkey, NULL, NULL, 0, NULL, NULL) == 1 &&
         BIO_flush(bio) == 1;
    BIO_free(bio);
    if (!ok || fsync(fd) < 0 || close(fd) < 0) {
        if (ok)
            buf_error(why, "cannot write %s: %s", path, strerror(errno));
        else
            buf_error(why, "cannot write the key to %s", path);
        unlink(path);
        return -1;
    }
    return 0;
}

/* dkim_key_ref - see dkim.h */
struct dkim_key *dkim_key_ref(struct dkim_key *key)
{
    __atomic_add_fetch(&key->refs, 1, __ATOMIC_SEQ_CST);
    return key;
}

/* dkim_key_free - give a reference back; the last frees the key */
void dkim_key_free(struct dkim_key *key)
{
    if (key == NULL || __atomic_sub_fetch(&key->refs, 1, __ATOMIC_SEQ_CST) > 0)
        return;
    EVP_PKEY_free(key->pkey);
    myfree(key->domain);
    myfree(key->selector);
    myfree(key);
}

const char *dkim_key_domain(const struct dkim_key *key)
{
    return key->domain;
}

const char *dkim_key_selector(const struct dkim_key *key)
{
    return key->selector;
}

enum dkim_alg dkim_key_alg(const struct dkim_key *key)
{
    return key->alg;
}

int dkim_key_bits(const struct dkim_key *key)
{
    return key->bits;
}

/* base64 - append the base64 of bytes */
static void base64(struct buf *out, const unsigned char *data, size_t len)
{
    size_t n = 4 * ((len + 2) / 3);

    buf_reserve(out, n + 1);
    EVP_EncodeBlock((unsigned char *)out->data + out->len, data, (int)len);
    out->len += n;
    out->data[out->len] = 0;
}

/* dkim_key_dns - see dkim.h */
int dkim_key_dns(const struct dkim_key *key, struct buf *txt, struct buf *why)
{
    unsigned char raw[64], *der = NULL;
    size_t rawlen = sizeof(raw);
    int derlen;

    buf_reset(txt);
    if (key->alg == DKIM_ED25519_SHA256) {
        if (EVP_PKEY_get_raw_public_key(key->pkey, raw, &rawlen) != 1)
            return buf_error(why, "cannot get the public key");
        buf_puts(txt, "v=DKIM1; k=ed25519; p=");
        base64(txt, raw, rawlen);
        return 0;
    }
    if ((derlen = i2d_PUBKEY(key->pkey, &der)) <= 0)
        return buf_error(why, "cannot encode the public key");
    buf_puts(txt, "v=DKIM1; k=rsa; p=");
    base64(txt, der, (size_t)derlen);
    OPENSSL_free(der);
    return 0;
}

/* dkim_txt_strings - see dkim.h */
void dkim_txt_strings(const char *txt, struct buf *out)
{
    size_t len = strlen(txt);

    buf_reset(out);
    for (size_t off = 0; off < len || off == 0; off += DKIM_TXT_STRING_MAX) {
        size_t n = len - off < DKIM_TXT_STRING_MAX ? len - off : DKIM_TXT_STRING_MAX;

        buf_printf(out, "%s\"%.*s\"", off ? " " : "", (int)n, txt + off);
        if (len == 0)
            break;
    }
}

/* Parameters. */

/* dkim_params_init - see dkim.h */
void dkim_params_init(struct dkim_params *p)
{
    memset(p, 0, sizeof(*p));
    p->header_canon = DKIM_RELAXED;
    p->body_canon = DKIM_RELAXED;
    p->headers = dkim_default_headers;
}

/* The body. */

/* stage_put - one canonical byte into the hash */
static inline void stage_put(struct dkim_sign *ds, unsigned char c)
{
    if (ds->staged == STAGE_SIZE) {
        EVP_DigestUpdate(ds->body_md, ds->stage, ds->staged);
        ds->staged = 0;
    }
    ds->stage[ds->staged++] = c;
}

/* line_data - a byte of content: empty lines before it were not trailing */
static inline void line_data(struct dkim_sign *ds, unsigned char c)
{
    if (!ds->line_has_data) {
        for (; ds->empty_lines; ds->empty_lines--) {
            stage_put(ds, '\r');
            stage_put(ds, '\n');
        }
        ds->line_has_data = 1;
        ds->body_has_data = 1;
    }
    if (ds->wsp_pending) {
        stage_put(ds, ' ');
        ds->wsp_pending = 0;
    }
    stage_put(ds, c);
}

/* line_end - a CRLF (or bare LF) ends the line */
static inline void line_end(struct dkim_sign *ds)
{
    ds->wsp_pending = 0; /* relaxed: white space at the end of a line goes */
    if (ds->line_has_data) {
        stage_put(ds, '\r');
        stage_put(ds, '\n');
        ds->line_has_data = 0;
    } else {
        ds->empty_lines++;
    }
}

/* body_byte - one byte of the body as sent, CR already resolved */
static inline void body_byte(struct dkim_sign *ds, unsigned char c)
{
    if (ds->p.body_canon == DKIM_RELAXED && (c == ' ' || c == '\t')) {
        ds->wsp_pending = 1;
        return;
    }
    line_data(ds, c);
}

/* dkim_sign_body - see dkim.h */
void dkim_sign_body(struct dkim_sign *ds, const char *data, size_t len)
{
    const unsigned char *p = (const unsigned char *)data, *end = p + len;

    for (; p < end; p++) {
        if (ds->cr_held) {
            ds->cr_held = 0;
            if (*p == '\n') {
                line_end(ds);
                continue;
            }
            body_byte(ds, '\r'); /* a bare CR is data */
        }
        if (*p == '\r')
            ds->cr_held = 1;
        else if (*p == '\n')
            line_end(ds); /* a bare LF travels as CRLF */
        else
            body_byte(ds, *p);
    }
}

/* body_final - finish the body hash (RFC 6376 3.4.3, 3.4.4) */
static void body_final(struct dkim_sign *ds, unsigned char hash[32])
{
    unsigned int n = 32;

    if (ds->cr_held) {
        ds->cr_held = 0;
        body_byte(ds, '\r');
    }
    if (ds->line_has_data) /* no CRLF at the end: one is added */
        line_end(ds);
    if (!ds->body_has_data && ds->p.body_canon == DKIM_SIMPLE) {
        /* simple: an empty body is one CRLF; relaxed: nothing at all */
        stage_put(ds, '\r');
        stage_put(ds, '\n');
    }
    EVP_DigestUpdate(ds->body_md, ds->stage, ds->staged);
    ds->staged = 0;
    EVP_DigestFinal_ex(ds->body_md, hash, &n);
}

/* Header fields. */

/* dkim_sign_new - see dkim.h */
struct dkim_sign *dkim_sign_new(const struct dkim_key *key, const struct dkim_params *p)
{
    struct dkim_sign *ds = mycalloc(1, sizeof(*ds));

    ds->key = key;
    buf_init(&ds->failure, 64);
    if (p)
        ds->p = *p;
    else
        dkim_params_init(&ds->p);
    if (ds->p.headers == NULL)
        ds->p.headers = dkim_default_headers;
    ds->body_md = EVP_MD_CTX_new();
    if (ds->body_md == NULL || EVP_DigestInit_ex(ds->body_md, EVP_sha256(), NULL) != 1)
        msg_fatal("cannot set up SHA-256");
    return ds;
}

/* dkim_sign_free - release a signature in progress */
void dkim_sign_free(struct dkim_sign *ds)
{
    if (ds == NULL)
        return;
    EVP_MD_CTX_free(ds->body_md);
    buf_release(&ds->failure);
    for (size_t i = 0; i < ds->nfields; i++)
        myfree(ds->fields[i].text);
    myfree(ds->fields);
    myfree(ds);
}

/* refuse - a field that cannot be signed: remember the first reason, return -1 */
static int refuse(struct dkim_sign *ds, struct buf *why, const char *fmt, ...)
    SG_PRINTF(3, 4);
static int refuse(struct dkim_sign *ds, struct buf *why, const char *fmt, ...)
{
    va_list ap;

    if (!ds->failed) {
        va_start(ap, fmt);
        buf_verror(&ds->failure, fmt, ap);
        va_end(ap);
        ds->failed = 1;
    }
    if (why)
        buf_set(why, buf_str(&ds->failure));
    return -1;
}

/* dkim_sign_header - see dkim.h */
int dkim_sign_header(struct dkim_sign *ds, const char *field, size_t len, struct buf *why)
{
    struct buf t;
    const char *colon = memchr(field, ':', len);
    size_t namelen, linelen = 0;
    struct field *f;

    if (colon == NULL)
        return refuse(ds, why, "a header field without a colon cannot be signed");
    namelen = (size_t)(colon - field);
    while (namelen && (field[namelen - 1] == ' ' || field[namelen - 1] == '\t'))
        namelen--; /* RFC 822 allowed "Name : value" */
    if (namelen == 0)
        return refuse(ds, why, "a header field without a name cannot be signed");
    for (size_t i = 0; i < namelen; i++)
        if ((unsigned char)field[i] <= ' ' || (unsigned char)field[i] >= 127)
            return refuse(ds, why, "header field name '%.*s' is not printable ASCII",
                          (int)(namelen > 60 ? 60 : namelen), field);
    /* Line ends as sent: CRLF everywhere, one at the end. */
    buf_init(&t, len + 4);
    for (size_t i = 0; i < len; i++) {
        char c = field[i];

        if (c == '\r' && i + 1 < len && field[i + 1] == '\n')
            continue;
        if (c == '\n' || c == '\r') {
            if (c == '\r') {
                buf_putc(&t, c); /* a bare CR is data */
                linelen++;
                continue;
            }
            buf_puts(&t, "\r\n");
            linelen = 0;
            continue;
        }
        if (++linelen > DKIM_HEADER_MAX) {
            buf_release(&t);
            return refuse(ds, why, "header field %.*s has a line over %d bytes",
                          (int)(namelen > 60 ? 60 : namelen), field, DKIM_HEADER_MAX);
        }
        buf_putc(&t, c);
    }
    while (t.len >= 2 && t.data[t.len - 2] == '\r' && t.data[t.len - 1] == '\n')
        buf_truncate(&t, t.len - 2);
    buf_puts(&t, "\r\n");
    if (ds->nfields == ds->cap) {
        ds->cap = ds->cap ? ds->cap * 2 : 16;
        ds->fields = myrealloc(ds->fields, ds->cap * sizeof(*ds->fields));
    }
    f = &ds->fields[ds->nfields++];
    f->len = t.len;
    f->namelen = namelen;
    f->text = buf_steal(&t);
    buf_release(&t);
    return 0;
}

/* canon_field - one field as the header canonicalisation makes it */
static void canon_field(enum dkim_canon canon, const char *text, size_t len,
                        size_t namelen, struct buf *out)
{
    const char *p, *end = text + len;
    int wsp = 0, started = 0;

    if (canon == DKIM_SIMPLE) {
        buf_append(out, text, len);
        return;
    }
    /* relaxed: name in lower case, unfolded, runs of WSP as one SP, no WSP
       around the colon or at the end */
    for (size_t i = 0; i < namelen; i++)
        buf_putc(out, (text[i] >= 'A' && text[i] <= 'Z') ? text[i] + 32 : text[i]);
    buf_putc(out, ':');
    p = (const char *)memchr(text, ':', len) + 1;
    for (; p < end; p++) {
        if (*p == '\r' && p + 1 < end && p[1] == '\n') {
            p++; /* unfold */
            continue;
        }
        if (*p == ' ' || *p == '\t') {
            wsp = 1;
            continue;
        }
        if (wsp && started)
            buf_putc(out, ' ');
        wsp = 0;
        started = 1;
        buf_putc(out, *p);
    }
    buf_puts(out, "\r\n");
}

/* name_is - does a field have this name (case-insensitive)? */
static int name_is(const struct field *f, const char *name)
{
    return strlen(name) == f->namelen && strncasecmp(f->text, name, f->namelen) == 0;
}

/* fold_add - append text to a header being built, folding before it if the
   line would grow past 78 characters */
static void fold_add(struct buf *h, size_t *col, const char *text)
{
    size_t len = strlen(text);

    if (*col + len + 1 > 78 && *col > 1) {
        buf_puts(h, "\r\n\t");
        *col = 1;
    } else if (*col > 0) {
        buf_putc(h, ' ');
        (*col)++;
    }
    buf_puts(h, text);
    *col += len;
}

/*
 * hlist_next - the next name of an h= value: its start and length, white
 * space and folding around it skipped; NULL at the end.
 */
static const char *hlist_next(const char **pp, const char *end, size_t *len)
{
    const char *p = *pp, *start;

    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == ':'))
        p++;
    if (p >= end)
        return NULL;
    start = p;
    while (p < end && *p != ':' && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
        p++;
    *len = (size_t)(p - start);
    *pp = p;
    return start;
}

/*
 * tag_value - the value of tag "name" in a DKIM-Signature field (after
 * "Name:"), to the ';' or the end.  NULL if absent.
 */
static const char *tag_value(const char *text, size_t len, const char *name, size_t *vlen)
{
    const char *p = memchr(text, ':', len), *end = text + len;
    size_t nlen = strlen(name);

    if (p == NULL)
        return NULL;
    for (p++; p < end;) {
        const char *semi = memchr(p, ';', (size_t)(end - p)), *t = p;
        const char *stop = semi ? semi : end;

        while (t < stop && (*t == ' ' || *t == '\t' || *t == '\r' || *t == '\n'))
            t++;
        if ((size_t)(stop - t) > nlen && strncmp(t, name, nlen) == 0) {
            const char *q = t + nlen;

            while (q < stop && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
                q++;
            if (q < stop && *q == '=') {
                *vlen = (size_t)(stop - q - 1);
                return q + 1;
            }
        }
        p = stop + 1;
    }
    return NULL;
}

/*
 * sign_field - the one signing step behind dkim_sign_end and
 * dkim_sign_end_as: "field" holds a DKIM-Signature field complete but for
 * the value of b=, which is its last tag; the fields named by its h= are
 * hashed (each name taking the next instance from the bottom, none if there
 * is no more: RFC 6376 5.4.2), then the field itself, and the signature is
 * appended to it.
 */
static int sign_field(struct dkim_sign *ds, size_t col, struct buf *field,
                      struct buf *why)
{
    unsigned char digest[32], sig[1024];
    size_t siglen = sizeof(sig), hlen, nlen;
    struct buf data, b64;
    EVP_MD_CTX *ctx = NULL;
    unsigned int dlen = 32;
    unsigned char *used;
    const char *h, *hend, *name;
    int rc = -1;

    if ((h = tag_value(field->data, field->len, "h", &hlen)) == NULL)
        return buf_error(why, "the DKIM-Signature field has no h= tag");
    hend = h + hlen;
    buf_init(&data, 4096);
    buf_init(&b64, 512);
    used = mycalloc(ds->nfields + 1, 1);
    while ((name = hlist_next(&h, hend, &nlen)) != NULL) {
        for (size_t i = ds->nfields; i-- > 0;) {
            if (used[i] || ds->fields[i].namelen != nlen ||
                strncasecmp(ds->fields[i].text, name, nlen) != 0)
                continue;
            used[i] = 1;
            canon_field(ds->p.header_canon, ds->fields[i].text, ds->fields[i].len,
                        ds->fields[i].namelen, &data);
            break;
        }
    }
    myfree(used);
    /* then this field, b= empty, without a final CRLF */
    {
        size_t start = data.len;

        canon_field(ds->p.header_canon, field->data, field->len, strlen("DKIM-Signature"),
                    &data);
        /* relaxed canonicalisation ends the field with CRLF: not this one */
        if (data.len >= start + 2 && data.data[data.len - 2] == '\r' &&
            data.data[data.len - 1] == '\n')
            buf_truncate(&data, data.len - 2);
    }
    if ((ctx = EVP_MD_CTX_new()) == NULL)
        msg_fatal("out of memory");
    if (ds->key->alg == DKIM_RSA_SHA256) {
        if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, ds->key->pkey) != 1 ||
            EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)data.data, data.len) !=
                1) {
            buf_error(why, "RSA signing failed");
            goto out;
        }
    } else {
        /* RFC 8463: Ed25519 signs the SHA-256 of the data */
        if (EVP_Digest(data.data, data.len, digest, &dlen, EVP_sha256(), NULL) != 1 ||
            EVP_DigestSignInit(ctx, NULL, NULL, NULL, ds->key->pkey) != 1 ||
            EVP_DigestSign(ctx, sig, &siglen, digest, dlen) != 1) {
            buf_error(why, "Ed25519 signing failed");
            goto out;
        }
    }
    base64(&b64, sig, siglen);
    /* b= folded in 72-character pieces */
    for (size_t off = 0; off < b64.len; off += 72) {
        size_t n = b64.len - off < 72 ? b64.len - off : 72;

        if (off > 0 || col + n > 78) {
            buf_puts(field, "\r\n\t");
            col = 1;
        }
        buf_append(field, b64.data + off, n);
        col += n;
    }
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    buf_release(&data);
    buf_release(&b64);
    return rc;
}

/* sign_ready - can the message be signed at all? */
static int sign_ready(struct dkim_sign *ds, struct buf *why)
{
    if (ds->failed)
        return buf_error(why, "the message cannot be signed: %s", buf_str(&ds->failure));
    for (size_t i = 0; i < ds->nfields; i++)
        if (name_is(&ds->fields[i], "From"))
            return 0;
    return buf_error(why, "the message has no From field to sign");
}

/* dkim_sign_end - see dkim.h */
int dkim_sign_end(struct dkim_sign *ds, struct buf *field, struct buf *why)
{
    unsigned char bh[32];
    size_t col;
    struct buf hlist, tag;
    time_t now = ds->p.now ? ds->p.now : time(NULL);

    if (sign_ready(ds, why) < 0)
        return -1;
    body_final(ds, bh);
    buf_init(&hlist, 256);
    buf_init(&tag, 128);

    /*
     * h=: each listed name (once, however often listed) as many times as it
     * occurs, so that every instance is signed, bottom-up; From once more,
     * so that no From can be added.
     */
    for (const char *const *name = ds->p.headers; *name; name++) {
        int n = strcasecmp(*name, "From") == 0, dup = 0;

        for (const char *const *prev = ds->p.headers; prev < name; prev++)
            dup |= strcasecmp(*prev, *name) == 0;
        if (dup)
            continue;
        for (size_t i = 0; i < ds->nfields; i++)
            n += name_is(&ds->fields[i], *name);
        while (n-- > 0)
            buf_printf(&hlist, "%s%s", hlist.len ? ":" : "", *name);
    }

    /* The DKIM-Signature field, up to an empty b=. */
    buf_reset(field);
    buf_puts(field, "DKIM-Signature:");
    col = field->len;
    buf_setf(&tag, "v=1; a=%s; c=%s/%s;", dkim_alg_name(ds->key->alg),
             ds->p.header_canon == DKIM_RELAXED ? "relaxed" : "simple",
             ds->p.body_canon == DKIM_RELAXED ? "relaxed" : "simple");
    fold_add(field, &col, buf_str(&tag));
    buf_setf(&tag, "d=%s;", ds->key->domain);
    fold_add(field, &col, buf_str(&tag));
    buf_setf(&tag, "s=%s;", ds->key->selector);
    fold_add(field, &col, buf_str(&tag));
    buf_setf(&tag, "t=%lld;", (long long)now);
    fold_add(field, &col, buf_str(&tag));
    if (ds->p.expire > 0) {
        buf_setf(&tag, "x=%lld;", (long long)now + ds->p.expire);
        fold_add(field, &col, buf_str(&tag));
    }
    /* h= may fold after any colon */
    {
        const char *p = hlist.data;
        int first = 1;

        while (*p) {
            const char *c = strchr(p, ':');
            size_t n = c ? (size_t)(c - p) + 1 : strlen(p);

            buf_reset(&tag);
            if (first)
                buf_puts(&tag, "h=");
            buf_append(&tag, p, n);
            if (c == NULL)
                buf_putc(&tag, ';');
            if (first) {
                fold_add(field, &col, buf_str(&tag));
            } else if (col + tag.len > 78) {
                buf_puts(field, "\r\n\t");
                buf_append(field, tag.data, tag.len);
                col = 1 + tag.len;
            } else {
                buf_append(field, tag.data, tag.len);
                col += tag.len;
            }
            first = 0;
            p += n;
        }
    }
    buf_set(&tag, "bh=");
    base64(&tag, bh, 32);
    buf_putc(&tag, ';');
    fold_add(field, &col, buf_str(&tag));
    fold_add(field, &col, "b=");
    buf_release(&hlist);
    buf_release(&tag);
    return sign_field(ds, col, field, why);
}

/* dkim_sign_end_as - see dkim.h */
int dkim_sign_end_as(struct dkim_sign *ds, const char *unsigned_field, struct buf *field,
                     struct buf *why)
{
    unsigned char bh[32];
    const char *nl;
    size_t len = strlen(unsigned_field), blen;
    const char *b;

    if (sign_ready(ds, why) < 0)
        return -1;
    body_final(ds, bh);
    b = tag_value(unsigned_field, len, "b", &blen);
    if (b == NULL || blen != 0 || b + blen != unsigned_field + len)
        return buf_error(why, "the DKIM-Signature field must end with an empty b=");
    buf_set(field, unsigned_field);
    nl = strrchr(unsigned_field, '\n');
    return sign_field(ds, nl ? strlen(nl + 1) : len, field, why);
}

/* dkim_sign_body_hash - see dkim.h */
void dkim_sign_body_hash(struct dkim_sign *ds, struct buf *b64)
{
    unsigned char bh[32];

    body_final(ds, bh);
    buf_reset(b64);
    base64(b64, bh, 32);
}

/* next_field - the extent of the header field at p (to the start of the next) */
static const char *next_field(const char *p, const char *end)
{
    for (;;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));

        if (nl == NULL)
            return end;
        p = nl + 1;
        if (p >= end || (*p != ' ' && *p != '\t'))
            return p;
    }
}

/* dkim_sign_message - see dkim.h */
int dkim_sign_message(struct dkim_key *const *keys, size_t nkeys,
                      const struct dkim_params *p, const char *msg, size_t len,
                      struct buf *out, struct buf *why)
{
    const char *end = msg + len, *body = end, *q;
    struct buf field;
    int rc = 0;

    /* The header ends at the first empty line. */
    for (q = msg; q < end;) {
        const char *nl = memchr(q, '\n', (size_t)(end - q));
        size_t linelen = nl ? (size_t)(nl - q) : (size_t)(end - q);

        if (linelen == 0 || (linelen == 1 && q[0] == '\r')) {
            body = nl ? nl + 1 : end;
            end = q;
            break;
        }
        if (nl == NULL)
            break;
        q = nl + 1;
    }
    buf_reset(out);
    buf_init(&field, 1024);
    for (size_t k = 0; k < nkeys && rc == 0; k++) {
        struct dkim_sign *ds = dkim_sign_new(keys[k], p);

        for (q = msg; q < end && rc == 0;) {
            const char *n = next_field(q, end);

            rc = dkim_sign_header(ds, q, (size_t)(n - q), why);
            q = n;
        }
        if (rc == 0) {
            dkim_sign_body(ds, body, (size_t)(msg + len - body));
            rc = dkim_sign_end(ds, &field, why);
        }
        if (rc == 0) {
            buf_append(out, field.data, field.len);
            buf_puts(out, "\r\n");
        }
        dkim_sign_free(ds);
    }
    buf_release(&field);
    return rc;
}
