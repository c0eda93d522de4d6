/*
 * dkim - DKIM signatures (RFC 6376), rsa-sha256 and ed25519-sha256 (RFC 8463).
 *
 * A signature is made in three steps that match how a milter sees a message:
 * the header fields one by one (dkim_sign_header), the body in chunks of any
 * size (dkim_sign_body: canonicalised and hashed as it arrives, never held),
 * then dkim_sign_end, which hashes the chosen header fields and returns the
 * DKIM-Signature field to prepend.
 *
 * The message is signed as it will travel: lines end in CRLF, so a bare LF
 * counts as CRLF (Postfix and the relay send it so); a bare CR is data.
 * Header fields are signed bottom-up when a name repeats, From is signed
 * once more than it occurs so that no From can be added afterwards, t= is
 * always set, x= when an expiry is configured, and l= never.
 *
 * What cannot be signed is refused with a reason, never a crash: no From, a
 * header field without a colon or over 998 bytes.  8-bit bytes in header
 * fields are signed as they are (RFC 6532 allows UTF-8 there).
 */
#ifndef SG_DKIM_H
#define SG_DKIM_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"

enum dkim_alg { DKIM_RSA_SHA256, DKIM_ED25519_SHA256 };
enum dkim_canon { DKIM_SIMPLE, DKIM_RELAXED };

#define DKIM_RSA_MIN_BITS 1024
#define DKIM_RSA_MAX_BITS 4096
#define DKIM_HEADER_MAX 998 /* RFC 5322 line limit, without CRLF */

struct dkim_key;
struct dkim_sign;

/*
 * dkim_key_load - read a PEM private key (RSA of 1024-4096 bits, or
 * Ed25519) for a domain and selector.  NULL with why filled on failure.
 */
struct dkim_key *dkim_key_load(const char *path, const char *domain, const char *selector,
                               struct buf *why);
/* dkim_key_from_pem - the same from PEM text in memory (tests, sgadmin) */
struct dkim_key *dkim_key_from_pem(const char *pem, size_t len, const char *domain,
                                   const char *selector, struct buf *why);
/* dkim_key_generate - a new key (bits: RSA only) */
struct dkim_key *dkim_key_generate(enum dkim_alg alg, int bits, const char *domain,
                                   const char *selector, struct buf *why);
/* dkim_key_write - the private key as PKCS#8 PEM in a new file of mode 0600 */
int dkim_key_write(const struct dkim_key *key, const char *path, struct buf *why);

/* dkim_key_ref - one more reference; dkim_key_free gives one back */
struct dkim_key *dkim_key_ref(struct dkim_key *key);
void dkim_key_free(struct dkim_key *key);
const char *dkim_key_domain(const struct dkim_key *key);
const char *dkim_key_selector(const struct dkim_key *key);
enum dkim_alg dkim_key_alg(const struct dkim_key *key);
int dkim_key_bits(const struct dkim_key *key);
const char *dkim_alg_name(enum dkim_alg alg); /* "rsa-sha256", "ed25519-sha256" */

/*
 * dkim_key_dns - the TXT record to publish for the key:
 * "v=DKIM1; k=rsa; p=BASE64" (or k=ed25519 and the raw 32-byte key).
 */
int dkim_key_dns(const struct dkim_key *key, struct buf *txt, struct buf *why);

/*
 * dkim_txt_strings - the record as DNS zone files write it: quoted strings
 * of at most 255 bytes each (RFC 1035 character-strings), separated by
 * spaces; a resolver joins them back.  The record holds no quotes or
 * backslashes, so none are escaped.
 */
#define DKIM_TXT_STRING_MAX 255
void dkim_txt_strings(const char *txt, struct buf *out);

struct dkim_params {
    enum dkim_canon header_canon, body_canon;
    const char *const *headers; /* names to sign; NULL: dkim_default_headers */
    long long expire;           /* seconds until x=; 0: no x= */
    time_t now;                 /* t=; 0: time(NULL) */
};

extern const char *const dkim_default_headers[];

/* dkim_params_init - relaxed/relaxed, the default header list, no x= */
void dkim_params_init(struct dkim_params *p);

struct dkim_sign *dkim_sign_new(struct dkim_key *key, const struct dkim_params *p);

/*
 * dkim_sign_header - one header field, from its name to the end of its
 * value, folding included (the final line end may be there or not).
 * 0, or -1 with why filled: the message cannot be signed.
 */
int dkim_sign_header(struct dkim_sign *ds, const char *field, size_t len,
                     struct buf *why);

/* dkim_sign_body - the next piece of the body, of any size */
void dkim_sign_body(struct dkim_sign *ds, const char *data, size_t len);

/*
 * dkim_sign_end - the DKIM-Signature field ("DKIM-Signature: v=1; ...",
 * folded with CRLF TAB, no final CRLF).  0, or -1 with why filled.
 */
int dkim_sign_end(struct dkim_sign *ds, struct buf *field, struct buf *why);

/*
 * dkim_sign_end_as - sign with a DKIM-Signature field written by the caller
 * ("DKIM-Signature: v=1; ...", every tag, folded as wanted, ending with an
 * empty "b="): the fields its h= names are signed, its bh= is taken as it
 * is.  For reproducing published examples (RFC 8463 Appendix A) and tags
 * this module does not write.  Use it or dkim_sign_end, once.
 */
int dkim_sign_end_as(struct dkim_sign *ds, const char *unsigned_field, struct buf *field,
                     struct buf *why);

/* dkim_sign_body_hash - instead of signing: the body hash, base64 (bh=) */
void dkim_sign_body_hash(struct dkim_sign *ds, struct buf *b64);

void dkim_sign_free(struct dkim_sign *ds);

/*
 * dkim_sign_message - sign a whole message (header, empty line, body) with
 * each key in turn; the fields go to out, each ending in CRLF, in the order
 * to prepend them.  0, or -1 with why filled.
 */
int dkim_sign_message(struct dkim_key *const *keys, size_t nkeys,
                      const struct dkim_params *p, const char *msg, size_t len,
                      struct buf *out, struct buf *why);

#endif
