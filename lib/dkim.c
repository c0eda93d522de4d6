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
#include <pthread.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dkim.h"
#include "mymalloc.h"

#define KEY_POOL 8

struct dkim_key {
    int refs; /* dkim_key_ref, dkim_key_free */
    EVP_PKEY *pkey;
    /*
     * Signing contexts, made once and reused (setting one up costs OpenSSL 3
     * a provider lookup, a large part of an Ed25519 signature): RSA keeps
     * EVP_PKEY_CTX (sign a digest), Ed25519 EVP_MD_CTX (DigestSign).
     */
    pthread_mutex_t pool_lock;
    void *pool[KEY_POOL];
    int npool;
    /* finished signing states, kept with their buffers for the next message */
    struct dkim_sign *spare[KEY_POOL];
    int nspare;
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

#define STAGE_SIZE 4096

struct field {
    size_t off; /* in the arena: the field in the header canonical form */
    size_t len;
    size_t namelen;
};

struct dkim_sign {
    struct dkim_key *key;
    struct dkim_params p;
    EVP_MD_CTX *body_md;
    /* body canonicalisation state */
    size_t staged;
    int cr_held;        /* a CR ended the last chunk */
    size_t empty_lines; /* empty lines not yet known not to be trailing */
    int line_has_data;  /* the current line has content */
    int wsp_pending;    /* relaxed: white space seen, not yet written */
    int body_has_data;  /* anything but trailing empty lines so far */
    /* header fields */
    struct field *fields;
    size_t nfields, cap;
    struct buf arena;          /* the fields' text, one after the other */
    struct buf tag, data, b64; /* scratch of dkim_sign_end */
    size_t *order;             /* the fields h= signs, in order */
    size_t norder, order_cap;
    /* the header names to sign, each once, with lengths */
    struct hname {
        const char *name;
        size_t len;
        int is_from;
        int count; /* h= entries, in dkim_sign_end */
    } * names;
    size_t nnames, names_cap;
    int failed;
    struct buf failure;              /* why the first refused field was refused */
    unsigned char stage[STAGE_SIZE]; /* last: not cleared by dkim_sign_new */
};

static void sign_state_free(struct dkim_sign *ds);
static size_t canon_relaxed(const char *text, size_t len, size_t namelen, char *o);

/* The SHA-256 implementation, fetched once: an implicit fetch per use
   (EVP_sha256()) costs OpenSSL 3 a lookup every time. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    if ((sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
        msg_fatal("OpenSSL has no SHA-256");
}

static const EVP_MD *sha256(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_md;
}

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
    pthread_mutex_init(&key->pool_lock, NULL);
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
    pthread_mutex_init(&key->pool_lock, NULL);
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
    for (int i = 0; i < key->npool; i++)
        if (key->alg == DKIM_RSA_SHA256)
            EVP_PKEY_CTX_free(key->pool[i]);
        else
            EVP_MD_CTX_free(key->pool[i]);
    for (int i = 0; i < key->nspare; i++)
        sign_state_free(key->spare[i]);
    pthread_mutex_destroy(&key->pool_lock);
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

/* stage_run - canonical bytes into the hash */
static inline void stage_run(struct dkim_sign *ds, const unsigned char *p, size_t n)
{
    if (n >= 512) {
        /* a long run is hashed where it is, not copied */
        if (ds->staged)
            EVP_DigestUpdate(ds->body_md, ds->stage, ds->staged);
        ds->staged = 0;
        EVP_DigestUpdate(ds->body_md, p, n);
        return;
    }
    while (n > 0) {
        size_t room = STAGE_SIZE - ds->staged, k = n < room ? n : room;

        if (room == 0) {
            EVP_DigestUpdate(ds->body_md, ds->stage, ds->staged);
            ds->staged = 0;
            continue;
        }
        memcpy(ds->stage + ds->staged, p, k);
        ds->staged += k;
        p += k;
        n -= k;
    }
}

/*
 * line_data - content bytes: the empty lines before them were not trailing,
 * and (relaxed) white space before them becomes one space.
 */
static inline void line_data(struct dkim_sign *ds, const unsigned char *p, size_t n)
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
    stage_run(ds, p, n);
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

/*
 * Bytes that end a run of plain content: line ends always, white space too
 * for relaxed canonicalisation ([1]).
 */
static const unsigned char body_special[2][256] = {
    {['\r'] = 1, ['\n'] = 1},
    {['\r'] = 1, ['\n'] = 1, [' '] = 1, ['\t'] = 1},
};

/*
 * Eight bytes at a time (SWAR): eq_mask() has 0x80 in exactly the bytes of
 * v equal to c (no carries cross bytes).  plain_words() returns how far from
 * p the body is plain content, in whole words: for relaxed, no byte below
 * 0x20 (CR, LF, TAB among them) and no space followed by one of those or a
 * space (the byte after the word counts too), so that copying it as it is is
 * its canonical form.
 */
#define SWAR_ONES 0x0101010101010101ULL
#define SWAR_HIGH 0x8080808080808080ULL

static inline uint64_t eq_mask(uint64_t v, unsigned char c)
{
    uint64_t x = v ^ (SWAR_ONES * c);

    return ~(((x & ~SWAR_HIGH) + ~SWAR_HIGH) | x | ~SWAR_HIGH);
}

/* le20_mask - 0x80 in exactly the bytes <= 0x20 (space, controls) */
static inline uint64_t le20_mask(uint64_t v)
{
    return ~(((v & ~SWAR_HIGH) + SWAR_ONES * 0x5f) | v) & SWAR_HIGH;
}

static inline size_t plain_words(const unsigned char *p, const unsigned char *end,
                                 int relaxed)
{
    const unsigned char *r = p;
    uint64_t w, w2;

#ifdef __SSE2__
    /*
     * Sixteen bytes at a time (x86-64 always has SSE2).  For relaxed, a CRLF
     * is plain too when it ends a line with content and the next line is not
     * empty: the canonical form of such text is the text itself, so whole
     * paragraphs go through as one run.
     */
    if (relaxed) {
        const __m128i s20 = _mm_set1_epi8(0x20), scr = _mm_set1_epi8('\r'),
                      slf = _mm_set1_epi8('\n');
        unsigned carry = 0; /* the CR before this block's first byte was fine */

        while (end - r >= 18) {
            __m128i v = _mm_loadu_si128((const __m128i *)r);
            __m128i v1 = _mm_loadu_si128((const __m128i *)(r + 1));
            __m128i le = _mm_cmpeq_epi8(_mm_max_epu8(v, s20), s20);
            __m128i le1 = _mm_cmpeq_epi8(_mm_max_epu8(v1, s20), s20);
            __m128i sp = _mm_cmpeq_epi8(v, s20);
            __m128i v0, v2, cr, lf, eol2;
            unsigned cr_ok, lf_ok, bad;

            /* most blocks: words and single spaces, no line end */
            if (_mm_movemask_epi8(_mm_or_si128(_mm_andnot_si128(sp, le),
                                               _mm_and_si128(sp, le1))) == 0) {
                carry = 0;
                r += 16;
                continue;
            }
            v0 = r > p ? _mm_loadu_si128((const __m128i *)(r - 1))
                       : _mm_slli_si128(v, 1); /* (lane 0: NUL, not content) */
            v2 = _mm_loadu_si128((const __m128i *)(r + 2));
            cr = _mm_cmpeq_epi8(v, scr);
            lf = _mm_cmpeq_epi8(v, slf);
            eol2 = _mm_or_si128(_mm_cmpeq_epi8(v2, scr), _mm_cmpeq_epi8(v2, slf));
            /* a CR: LF next, content before, and a non-empty line after */
            cr_ok = (unsigned)_mm_movemask_epi8(_mm_andnot_si128(
                _mm_or_si128(_mm_cmpeq_epi8(_mm_max_epu8(v0, s20), s20), eol2),
                _mm_and_si128(cr, _mm_cmpeq_epi8(v1, slf))));
            lf_ok = (unsigned)_mm_movemask_epi8(lf) & ((cr_ok << 1) | carry);
            /* other white space and controls; a space before white space */
            bad = (unsigned)_mm_movemask_epi8(
                _mm_or_si128(_mm_andnot_si128(_mm_or_si128(sp, _mm_or_si128(cr, lf)), le),
                             _mm_and_si128(sp, le1)));
            bad |= ((unsigned)_mm_movemask_epi8(cr) & ~cr_ok) |
                   ((unsigned)_mm_movemask_epi8(lf) & ~lf_ok);
            if (bad != 0)
                break;
            carry = cr_ok >> 15;
            r += 16;
        }
        /* never end a run inside a line end: the byte path takes it */
        if (r > p && r[-1] == '\r')
            r--;
        else if (r - p >= 2 && r[-1] == '\n')
            r -= 2;
    } else {
        const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');

        while (end - r >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)r);

            if (_mm_movemask_epi8(
                    _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf))) != 0)
                break;
            r += 16;
        }
    }
#endif
    if (relaxed) {
        /* (other control bytes stop the run too; the byte loop takes them) */
        while (end - r >= 9) {
            uint64_t sp;

            memcpy(&w, r, 8);
            memcpy(&w2, r + 1, 8);
            sp = eq_mask(w, ' ');
            if (((le20_mask(w) & ~sp) | (sp & le20_mask(w2))) != 0)
                break;
            r += 8;
        }
    } else {
        while (end - r >= 8) {
            memcpy(&w, r, 8);
            if ((eq_mask(w, '\r') | eq_mask(w, '\n')) != 0)
                break;
            r += 8;
        }
    }
    return (size_t)(r - p);
}

/*
 * dkim_sign_body - see dkim.h.  Runs of plain content are found a word, then
 * a byte at a time, and copied to the staging buffer whole; only line ends
 * and runs of white space take the slow path.
 */
void dkim_sign_body(struct dkim_sign *ds, const char *data, size_t len)
{
    const unsigned char *p = (const unsigned char *)data, *end = p + len;
    const unsigned char *special = body_special[ds->p.body_canon == DKIM_RELAXED];
    static const unsigned char cr = '\r';

    if (ds->cr_held && p < end) {
        ds->cr_held = 0;
        if (*p == '\n') {
            line_end(ds);
            p++;
        } else {
            line_data(ds, &cr, 1); /* a bare CR is data */
        }
    }
    while (p < end) {
        const unsigned char *q = p;

        /* (a space after white space already seen is not content) */
        if (!(ds->wsp_pending && *p == ' '))
            q += plain_words(p, end, ds->p.body_canon == DKIM_RELAXED);
        while (q < end && !special[*q])
            q++;
        if (q > p) {
            line_data(ds, p, (size_t)(q - p));
            p = q;
            continue;
        }
        switch (*p) {
        case ' ':
        case '\t':
            ds->wsp_pending = 1; /* relaxed only: simple has them as data */
            p++;
            break;
        case '\n':
            line_end(ds); /* a bare LF travels as CRLF */
            p++;
            break;
        default: /* '\r' */
            if (p + 1 == end) {
                ds->cr_held = 1; /* its LF may come with the next piece */
                p++;
            } else if (p[1] == '\n') {
                line_end(ds);
                p += 2;
            } else {
                line_data(ds, &cr, 1);
                p++;
            }
        }
    }
}

/* body_final - finish the body hash (RFC 6376 3.4.3, 3.4.4) */
static void body_final(struct dkim_sign *ds, unsigned char hash[32])
{
    unsigned int n = 32;

    if (ds->cr_held) {
        static const unsigned char cr = '\r';

        ds->cr_held = 0;
        line_data(ds, &cr, 1);
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

/* sign_state_free - release a signing state for good */
static void sign_state_free(struct dkim_sign *ds)
{
    EVP_MD_CTX_free(ds->body_md);
    buf_release(&ds->arena);
    buf_release(&ds->tag);
    buf_release(&ds->data);
    buf_release(&ds->b64);
    myfree(ds->names);
    myfree(ds->order);
    myfree(ds->fields);
    myfree(ds);
}

/* dkim_sign_new - see dkim.h */
struct dkim_sign *dkim_sign_new(struct dkim_key *key, const struct dkim_params *p)
{
    struct dkim_sign *ds = NULL;

    /* a state a finished message left with this key, buffers and all */
    pthread_mutex_lock(&key->pool_lock);
    if (key->nspare > 0)
        ds = key->spare[--key->nspare];
    pthread_mutex_unlock(&key->pool_lock);
    if (ds == NULL) {
        ds = mymalloc(sizeof(*ds));
        memset(ds, 0, offsetof(struct dkim_sign, stage));
        buf_init(&ds->arena, 2048);
        buf_init(&ds->tag, 128);
        buf_init(&ds->data, 4096);
        buf_init(&ds->b64, 512);
        if ((ds->body_md = EVP_MD_CTX_new()) == NULL)
            msg_fatal("out of memory");
    }
    ds->key = key;
    if (p)
        ds->p = *p;
    else
        dkim_params_init(&ds->p);
    if (ds->p.headers == NULL)
        ds->p.headers = dkim_default_headers;
    if (EVP_DigestInit_ex(ds->body_md, sha256(), NULL) != 1)
        msg_fatal("cannot set up SHA-256");
    return ds;
}

/* dkim_sign_free - release a signature in progress */
void dkim_sign_free(struct dkim_sign *ds)
{
    struct dkim_key *key;

    if (ds == NULL)
        return;
    if (ds->failed)
        buf_release(&ds->failure);
    /* back to the key for the next message, with the state cleared */
    key = ds->key;
    ds->staged = 0;
    ds->cr_held = ds->line_has_data = ds->wsp_pending = ds->body_has_data = 0;
    ds->empty_lines = 0;
    ds->nfields = 0;
    ds->failed = 0;
    buf_reset(&ds->arena);
    pthread_mutex_lock(&key->pool_lock);
    if (key->nspare < KEY_POOL && ds->arena.cap <= 65536) {
        key->spare[key->nspare++] = ds;
        ds = NULL;
    }
    pthread_mutex_unlock(&key->pool_lock);
    if (ds)
        sign_state_free(ds);
}

/* refuse - a field that cannot be signed: remember the first reason, return -1 */
static int refuse(struct dkim_sign *ds, struct buf *why, const char *fmt, ...)
    SG_PRINTF(3, 4);
static int refuse(struct dkim_sign *ds, struct buf *why, const char *fmt, ...)
{
    va_list ap;

    if (!ds->failed) {
        va_start(ap, fmt);
        buf_init(&ds->failure, 128);
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
    const char *colon = memchr(field, ':', len);
    size_t namelen, start;
    char *o;
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
    /* Line ends as sent: CRLF everywhere (a bare LF too), one at the end. */
    buf_reserve(&ds->arena, 2 * len + 3);
    start = ds->arena.len;
    o = ds->arena.data + start;
    for (const char *p = field, *end = field + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        size_t n;

        if (nl && e > p && e[-1] == '\r')
            e--; /* CRLF; a CR anywhere else is data */
        n = (size_t)(e - p);
        if (n > DKIM_HEADER_MAX)
            return refuse(ds, why, "header field %.*s has a line over %d bytes",
                          (int)(namelen > 60 ? 60 : namelen), field, DKIM_HEADER_MAX);
        memcpy(o, p, n);
        o += n;
        if (nl == NULL)
            break;
        *o++ = '\r';
        *o++ = '\n';
        p = nl + 1;
    }
    while (o - ds->arena.data >= (ptrdiff_t)start + 2 && o[-2] == '\r' && o[-1] == '\n')
        o -= 2;
    *o++ = '\r';
    *o++ = '\n';
    *o = 0;
    ds->arena.len = (size_t)(o - ds->arena.data);
    ds->fields = mygrow(ds->fields, &ds->cap, ds->nfields, sizeof(*ds->fields));
    f = &ds->fields[ds->nfields++];
    f->off = start;
    f->len = ds->arena.len - start;
    f->namelen = namelen;
    if (ds->p.header_canon == DKIM_RELAXED) {
        /* only the canonical form is ever needed: keep that, in place */
        f->len = canon_relaxed(ds->arena.data + start, f->len, namelen,
                               ds->arena.data + start);
        ds->arena.len = start + f->len;
        ds->arena.data[ds->arena.len] = 0;
    }
    return 0;
}

/*
 * canon_relaxed - a field as relaxed header canonicalisation makes it: name
 * in lower case, unfolded, runs of WSP as one SP, no WSP around the colon or
 * at the end, CRLF.  Writes to o, which may be text itself (the result is
 * never longer); returns its length.
 */
static size_t canon_relaxed(const char *text, size_t len, size_t namelen, char *o)
{
    const char *p, *end = text + len;
    char *o0 = o;
    int wsp = 0, started = 0;

    for (size_t i = 0; i < namelen; i++)
        *o++ = (text[i] >= 'A' && text[i] <= 'Z') ? text[i] + 32 : text[i];
    p = (const char *)memchr(text, ':', len) + 1;
    *o++ = ':';
    while (p < end) {
        const char *q = p;

        /* white space and folding, as much as there is: one SP, if inside */
        if (*p == ' ' || *p == '\t' || (*p == '\r' && p + 1 < end && p[1] == '\n')) {
            while (p < end && (*p == ' ' || *p == '\t' ||
                               (*p == '\r' && p + 1 < end && p[1] == '\n')))
                p += *p == '\r' ? 2 : 1;
            wsp = started;
            continue;
        }
        /* a run that is its own canonical form: no white space but single
           spaces between other bytes (a bare CR or control byte is data) */
#ifdef __SSE2__
        {
            const __m128i s20 = _mm_set1_epi8(0x20);

            while (end - q >= 17) {
                __m128i v = _mm_loadu_si128((const __m128i *)q);
                __m128i v1 = _mm_loadu_si128((const __m128i *)(q + 1));
                __m128i sp = _mm_cmpeq_epi8(v, s20);
                __m128i ws = _mm_or_si128(sp, _mm_cmpeq_epi8(v, _mm_set1_epi8('\t')));
                __m128i le1 = _mm_cmpeq_epi8(_mm_max_epu8(v1, s20), s20);
                __m128i cr = _mm_cmpeq_epi8(v, _mm_set1_epi8('\r'));

                if (_mm_movemask_epi8(
                        _mm_or_si128(cr, _mm_or_si128(_mm_andnot_si128(sp, ws),
                                                      _mm_and_si128(sp, le1)))) != 0)
                    break;
                q += 16;
            }
        }
#endif
        while (q < end && *q != '\t' && *q != '\r' &&
               (*q != ' ' || (q + 1 < end && (unsigned char)q[1] > ' ')))
            q++;
        if (q == p) /* a CR that is data */
            q++;
        if (wsp)
            *o++ = ' ';
        wsp = 0;
        started = 1;
        memmove(o, p, (size_t)(q - p));
        o += q - p;
        p = q;
    }
    *o++ = '\r';
    *o++ = '\n';
    return (size_t)(o - o0);
}

/* canon_field - a field as the header canonicalisation makes it, appended */
static void canon_field(enum dkim_canon canon, const char *text, size_t len,
                        size_t namelen, struct buf *out)
{
    if (canon == DKIM_SIMPLE) {
        buf_append(out, text, len);
        return;
    }
    buf_reserve(out, len + 3);
    out->len += canon_relaxed(text, len, namelen, out->data + out->len);
    out->data[out->len] = 0;
}

/* name_is - does a field have this name (case-insensitive)? */
static int name_is(const struct dkim_sign *ds, const struct field *f, const char *name)
{
    return strlen(name) == f->namelen &&
           strncasecmp(ds->arena.data + f->off, name, f->namelen) == 0;
}

/* fold_add - append text to a header being built, folding before it if the
   line would grow past 78 characters */
static void fold_add(struct buf *h, size_t *col, const char *text, size_t len)
{
    if (*col + len + 1 > 78 && *col > 1) {
        buf_append(h, "\r\n\t", 3);
        *col = 1;
    } else if (*col > 0) {
        buf_putc(h, ' ');
        (*col)++;
    }
    buf_append(h, text, len);
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

/* key_sign - the private-key operation over a digest, with a pooled context */
static int key_sign(struct dkim_key *key, const unsigned char *digest, size_t dlen,
                    unsigned char *sig, size_t *siglen)
{
    void *ctx = NULL;
    int ok;

    pthread_mutex_lock(&key->pool_lock);
    if (key->npool > 0)
        ctx = key->pool[--key->npool];
    pthread_mutex_unlock(&key->pool_lock);
    if (ctx == NULL && key->alg == DKIM_RSA_SHA256) {
        EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_pkey(NULL, key->pkey, NULL);

        if (pctx == NULL || EVP_PKEY_sign_init(pctx) != 1 ||
            EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1 ||
            EVP_PKEY_CTX_set_signature_md(pctx, sha256()) != 1) {
            EVP_PKEY_CTX_free(pctx);
            return -1;
        }
        ctx = pctx;
    } else if (ctx == NULL) {
        EVP_MD_CTX *mctx = EVP_MD_CTX_new();

        if (mctx == NULL || EVP_DigestSignInit(mctx, NULL, NULL, NULL, key->pkey) != 1) {
            EVP_MD_CTX_free(mctx);
            return -1;
        }
        ctx = mctx;
    }
    if (key->alg == DKIM_RSA_SHA256)
        ok = EVP_PKEY_sign(ctx, sig, siglen, digest, dlen) == 1;
    else
        ok = EVP_DigestSign(ctx, sig, siglen, digest, dlen) == 1;
    if (!ok) {
        /* not put back: a context in an unknown state is not reused */
        if (key->alg == DKIM_RSA_SHA256)
            EVP_PKEY_CTX_free(ctx);
        else
            EVP_MD_CTX_free(ctx);
        return -1;
    }
    pthread_mutex_lock(&key->pool_lock);
    if (key->npool < KEY_POOL) {
        key->pool[key->npool++] = ctx;
        ctx = NULL;
    }
    pthread_mutex_unlock(&key->pool_lock);
    if (ctx && key->alg == DKIM_RSA_SHA256)
        EVP_PKEY_CTX_free(ctx);
    else if (ctx)
        EVP_MD_CTX_free(ctx);
    return 0;
}

/* order_push - one more field for h= to sign */
static void order_push(struct dkim_sign *ds, size_t i)
{
    ds->order = mygrow(ds->order, &ds->order_cap, ds->norder, sizeof(*ds->order));
    ds->order[ds->norder++] = i;
}

/*
 * order_from_h - the fields an h= value names: each name takes the next
 * instance from the bottom, none if there is no more (RFC 6376 5.4.2)
 */
static void order_from_h(struct dkim_sign *ds, const char *h, size_t hlen)
{
    unsigned char *used, used_small[64];
    const char *hend = h + hlen, *name;
    size_t nlen;

    ds->norder = 0;
    used = ds->nfields < sizeof(used_small) ? used_small : mymalloc(ds->nfields + 1);
    memset(used, 0, ds->nfields + 1);
    while ((name = hlist_next(&h, hend, &nlen)) != NULL) {
        for (size_t i = ds->nfields; i-- > 0;) {
            if (used[i] || ds->fields[i].namelen != nlen ||
                strncasecmp(ds->arena.data + ds->fields[i].off, name, nlen) != 0)
                continue;
            used[i] = 1;
            order_push(ds, i);
            break;
        }
    }
    if (used != used_small)
        myfree(used);
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
    size_t siglen = sizeof(sig);
    struct buf *data = &ds->data, *b64 = &ds->b64;
    unsigned int dlen = 32;
    int rc = -1;

    buf_reset(data);
    buf_reset(b64);
    /* the fields, kept in canonical form by dkim_sign_header */
    for (size_t k = 0; k < ds->norder; k++)
        buf_append(data, ds->arena.data + ds->fields[ds->order[k]].off,
                   ds->fields[ds->order[k]].len);
    /* then this field, b= empty, without a final CRLF */
    {
        size_t start = data->len;

        canon_field(ds->p.header_canon, field->data, field->len, strlen("DKIM-Signature"),
                    data);
        /* relaxed canonicalisation ends the field with CRLF: not this one */
        if (data->len >= start + 2 && data->data[data->len - 2] == '\r' &&
            data->data[data->len - 1] == '\n')
            buf_truncate(data, data->len - 2);
    }
    /* rsa-sha256 signs the SHA-256 (PKCS #1 v1.5); RFC 8463: Ed25519 too */
    /* (the body's hashing context is done with: reuse it) */
    if (EVP_DigestInit_ex(ds->body_md, sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ds->body_md, data->data, data->len) != 1 ||
        EVP_DigestFinal_ex(ds->body_md, digest, &dlen) != 1 ||
        key_sign(ds->key, digest, dlen, sig, &siglen) < 0) {
        buf_error(why, "%s signing failed", dkim_alg_name(ds->key->alg));
        goto out;
    }
    base64(b64, sig, siglen);
    /* b= folded in 72-character pieces */
    for (size_t off = 0; off < b64->len; off += 72) {
        size_t n = b64->len - off < 72 ? b64->len - off : 72;

        if (off > 0 || col + n > 78) {
            buf_puts(field, "\r\n\t");
            col = 1;
        }
        buf_append(field, b64->data + off, n);
        col += n;
    }
    rc = 0;
out:

    return rc;
}

/* sign_ready - can the message be signed at all? */
static int sign_ready(struct dkim_sign *ds, struct buf *why)
{
    if (ds->failed)
        return buf_error(why, "the message cannot be signed: %s", buf_str(&ds->failure));
    for (size_t i = 0; i < ds->nfields; i++)
        if (name_is(ds, &ds->fields[i], "From"))
            return 0;
    return buf_error(why, "the message has no From field to sign");
}

/* names_prepare - the configured header names, duplicates dropped */
static void names_prepare(struct dkim_sign *ds)
{
    size_t n = 0;

    for (const char *const *name = ds->p.headers; *name; name++)
        n++;
    if (n + 1 > ds->names_cap) {
        ds->names_cap = n + 1;
        ds->names = myrealloc(ds->names, ds->names_cap * sizeof(*ds->names));
    }
    ds->nnames = 0;
    for (const char *const *name = ds->p.headers; *name; name++) {
        size_t len = strlen(*name), k;

        for (k = 0; k < ds->nnames; k++)
            if (ds->names[k].len == len && strcasecmp(ds->names[k].name, *name) == 0)
                break;
        if (k < ds->nnames || len == 0)
            continue;
        ds->names[ds->nnames].name = *name;
        ds->names[ds->nnames].len = len;
        ds->names[ds->nnames].is_from = len == 4 && strcasecmp(*name, "From") == 0;
        ds->nnames++;
    }
}

/* tag_set - tag = a b c (b, c may be NULL) */
static void tag_set(struct buf *tag, const char *a, const char *b, const char *c)
{
    buf_set(tag, a);
    if (b)
        buf_puts(tag, b);
    if (c)
        buf_puts(tag, c);
}

/* tag_num - append a non-negative number and ';' */
static void tag_num(struct buf *tag, long long v)
{
    char digits[24], *d = digits + sizeof(digits);

    *--d = 0;
    *--d = ';';
    do
        *--d = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    buf_puts(tag, d);
}

/* dkim_sign_end - see dkim.h */
int dkim_sign_end(struct dkim_sign *ds, struct buf *field, struct buf *why)
{
    unsigned char bh[32];
    size_t col;
    int rc;
    struct buf *tag = &ds->tag;
    time_t now = ds->p.now ? ds->p.now : time(NULL);
    size_t total = 0;
    int from = 0;

    if (sign_ready(ds, why) < 0)
        return -1;
    body_final(ds, bh);

    /*
     * h=: each listed name (once, however often listed) as many times as it
     * occurs, so that every instance is signed, bottom-up; From once more,
     * so that no From can be added.
     */
    names_prepare(ds);
    ds->norder = 0;
    for (size_t k = 0; k < ds->nnames; k++) {
        const char *name = ds->names[k].name;
        size_t len = ds->names[k].len;
        int n = ds->names[k].is_from; /* signed once more than it occurs */

        for (size_t i = ds->nfields; i-- > 0;)
            if (ds->fields[i].namelen == len &&
                (ds->arena.data[ds->fields[i].off] | 0x20) == (name[0] | 0x20) &&
                strncasecmp(ds->arena.data + ds->fields[i].off, name, len) == 0) {
                order_push(ds, i); /* bottom-up */
                n++;
            }
        ds->names[k].count = n;
        total += (size_t)n;
        from |= ds->names[k].is_from;
    }
    if (!from)
        return buf_error(why,
                         "the header fields to sign must include From (RFC 6376 5.4)");

    /* The DKIM-Signature field, up to an empty b= (no printf: per message). */
    buf_reset(field);
    buf_append(field, "DKIM-Signature:", 15);
    col = 15;
    buf_set(tag, "v=1; a=");
    buf_puts(tag, dkim_alg_name(ds->key->alg));
    buf_append(tag, "; c=", 4);
    if (ds->p.header_canon == DKIM_RELAXED)
        buf_append(tag, "relaxed/", 8);
    else
        buf_append(tag, "simple/", 7);
    if (ds->p.body_canon == DKIM_RELAXED)
        buf_append(tag, "relaxed;", 8);
    else
        buf_append(tag, "simple;", 7);
    fold_add(field, &col, tag->data, tag->len);
    tag_set(tag, "d=", ds->key->domain, ";");
    fold_add(field, &col, tag->data, tag->len);
    tag_set(tag, "s=", ds->key->selector, ";");
    fold_add(field, &col, tag->data, tag->len);
    buf_set(tag, "t=");
    tag_num(tag, (long long)now);
    fold_add(field, &col, tag->data, tag->len);
    if (ds->p.expire > 0) {
        buf_set(tag, "x=");
        tag_num(tag, (long long)now + ds->p.expire);
        fold_add(field, &col, tag->data, tag->len);
    }
    /* h=, which may fold after any colon */
    for (size_t k = 0, idx = 0; k < ds->nnames; k++) {
        for (int c = 0; c < ds->names[k].count; c++, idx++) {
            buf_reset(tag);
            if (idx == 0)
                buf_append(tag, "h=", 2);
            buf_append(tag, ds->names[k].name, ds->names[k].len);
            buf_putc(tag, idx + 1 == total ? ';' : ':');
            if (idx == 0) {
                fold_add(field, &col, tag->data, tag->len);
            } else if (col + tag->len > 78) {
                buf_append(field, "\r\n\t", 3);
                buf_append(field, tag->data, tag->len);
                col = 1 + tag->len;
            } else {
                buf_append(field, tag->data, tag->len);
                col += tag->len;
            }
        }
    }
    buf_set(tag, "bh=");
    base64(tag, bh, 32);
    buf_putc(tag, ';');
    fold_add(field, &col, tag->data, tag->len);
    fold_add(field, &col, "b=", 2);
    rc = sign_field(ds, col, field, why);
    return rc;
}

/* dkim_sign_end_as - see dkim.h */
int dkim_sign_end_as(struct dkim_sign *ds, const char *unsigned_field, struct buf *field,
                     struct buf *why)
{
    unsigned char bh[32];
    const char *nl, *b, *h;
    size_t len = strlen(unsigned_field), blen, hlen;

    if (sign_ready(ds, why) < 0)
        return -1;
    body_final(ds, bh);
    b = tag_value(unsigned_field, len, "b", &blen);
    if (b == NULL || blen != 0 || b + blen != unsigned_field + len)
        return buf_error(why, "the DKIM-Signature field must end with an empty b=");
    buf_set(field, unsigned_field);
    nl = strrchr(unsigned_field, '\n');
    if ((h = tag_value(unsigned_field, len, "h", &hlen)) == NULL)
        return buf_error(why, "the DKIM-Signature field has no h= tag");
    order_from_h(ds, h, hlen);
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
