/*
 * token - the opaque tokens sendguard puts into URLs and mail addresses.
 *
 * A token names tenant, message, recipient, unsubscribe group and purpose, and
 * goes where anyone can read and change it: https://BASE/u/TOKEN,
 * unsubscribe+TOKEN@domain, bounces+TOKEN@domain.  So it is encrypted and
 * authenticated: it cannot be forged or altered, does not show the recipient's
 * address, and its text is base64url without padding (A-Z a-z 0-9 - _ only).
 * Decoding checks everything it reads: a tampered, truncated, foreign or
 * garbage token is an error with a reason, never a crash or a read out of
 * bounds.
 *
 * This module must never use a master key directly, never let the recipient
 * or any other field appear in clear in a token, never accept a token whose
 * tag does not verify, and never log or hand out key material.
 *
 * KEY FILE.  Text; blank lines and lines whose first non-blank character is
 * '#' are ignored.  Every other line is
 *
 *   KID:HEX
 *
 * KID a decimal key id 1..255, HEX exactly 64 hex digits (a 32-byte random
 * master key; token_key_line makes one).  The FIRST key line is the current
 * key, used to encode; every listed key decodes.  To rotate, put the new key
 * first and keep the old ones below until their tokens no longer matter.
 * Duplicate key ids, a malformed line or no key at all are errors.  The file
 * must pass conf_check_secret (a regular file, no access by other users, not a
 * symbolic link).
 *
 * CRYPTO (OpenSSL 3 EVP).  From each master key HKDF-SHA256 derives two
 * subkeys: "sendguard token v1" (the AEAD key) and "sendguard marker v1" (the
 * HMAC key of token_mac).  A token's bytes are
 *
 *   version (1 byte, 1) | key id (1 byte) | nonce (12 random bytes) |
 *   ChaCha20-Poly1305 ciphertext of the plaintext | tag (16 bytes)
 *
 * with version and key id as the additional authenticated data.  The
 * plaintext is: purpose (1 byte), group (varint), created (varint: seconds
 * since 2024-01-01 modulo 2^64), then tenant, message, recipient and data,
 * each a varint length and its bytes.  Varints are LEB128, shortest form only.
 * ChaCha20-Poly1305 rather than AES-256-GCM: equally strong with random
 * 96-bit nonces, constant time in software on every CPU (no AES-NI needed,
 * no table lookups), and its one-shot key setup costs nothing per token.  (A
 * FIPS-only OpenSSL lacks it; that would call for AES-256-GCM and a new
 * version byte.)  Random nonces bound a key to about 2^32 tokens: rotate well
 * before.
 *
 * Overhead: 30 bytes (header, nonce, tag) plus about 8 of lengths and numbers;
 * tenant "default", a 20-byte message id and a 25-byte recipient make a token
 * of 123 characters.  Note that RFC 5321 limits a local part to 64 octets, which
 * tokens in bounces+TOKEN@ exceed: that relies on the MTAs on the way (Postfix,
 * Exim and the large mailbox providers accept longer local parts), and on them
 * keeping the local part's case.
 *
 * WHAT THE PIPELINE PUTS IN (pipeline.h): unsubscribe and preferences
 * tokens name the message's group (0: unsubscribe from everything); a
 * click's data is the original link, byte for byte; every https token's
 * data may go on with a NUL and the fields the message's events carry
 * (category, unique_args: a JSON object of at most PIPELINE_META_MAX
 * bytes) and its asm_groups_to_display, so that sgtrackd answers and
 * records events with no state of its own (pipeline_meta_split).
 *
 * URL LENGTH.  A token is 4/3 of (40 + tenant + message + recipient + data)
 * characters, about (123 for the unsubscribe token above): a click on a
 * 40-byte link in a message of tenant "default" with a 20-byte message id,
 * to a 25-byte recipient, is 177 characters, plus the tracker's base URL
 * and "/c/"; with one category and a small unique_args ({"user_id": "42"})
 * 226.  Every link of a message is that much longer, so a newsletter of 80
 * links grows by some 14 KiB.
 *
 * Keys are read-only after loading: threads may share them for encode,
 * decode and the marker.
 */
#ifndef SG_TOKEN_H
#define SG_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define TOKEN_TENANT_MAX 64     /* bytes; at least 1 */
#define TOKEN_MESSAGE_MAX 255   /* bytes */
#define TOKEN_RECIPIENT_MAX 320 /* bytes */
#define TOKEN_DATA_MAX 8192     /* bytes */
#define TOKEN_TEXT_MAX 11846    /* characters of the longest token */
#define TOKEN_KID_MAX 255

enum token_purpose {
    TOKEN_UNSUBSCRIBE = 1, /* List-Unsubscribe https and mailto */
    TOKEN_PREFERENCES,     /* preferences page */
    TOKEN_CLICK,           /* tracked link; data holds the original URL */
    TOKEN_OPEN,            /* open pixel */
    TOKEN_RETURN_PATH,     /* bounces+TOKEN@ envelope sender */
};

struct token {
    enum token_purpose purpose;
    uint32_t group;      /* unsubscribe group id, 0 none */
    int64_t created;     /* unix time the token was made (encode: 0 means now) */
    char *tenant;        /* 1..64 bytes */
    char *message;       /* message id, 0..255 bytes (may be "" or NULL to encode) */
    char *recipient;     /* normalised address, 0..320 bytes (may be "" or NULL) */
    unsigned char *data; /* opaque extra bytes (a click's URL), may be NULL */
    size_t data_len;     /* <= TOKEN_DATA_MAX */
};

struct token_keys; /* the loaded keys; read-only after load, shareable by threads */

/*
 * token_keys_load - read the key file (see above), which must pass
 * conf_check_secret; NULL with why filled ("PATH:LINE: ...").
 */
struct token_keys *token_keys_load(const char *path, struct buf *why);

/* token_keys_from_text - the same from text in memory (for tests and sgadmin) */
struct token_keys *token_keys_from_text(const char *text, size_t len, struct buf *why);

/* token_keys_free - wipe and free the keys; NULL is fine */
void token_keys_free(struct token_keys *keys);

/* token_keys_current - the key id tokens are encoded with */
unsigned token_keys_current(const struct token_keys *keys);

/* token_keys_has - is a key of this id loaded? */
int token_keys_has(const struct token_keys *keys, unsigned kid);

/*
 * token_key_line - append one line "KID:HEX\n" for a fresh random 32-byte key
 * with id kid (1..255; anything else is a bug).
 */
void token_key_line(unsigned kid, struct buf *out);

/*
 * token_encode - append the token's text (base64url, no padding) to out,
 * under the current key; 0, or -1 with why filled (a field too long, bad
 * purpose, tenant empty) and out unchanged.
 */
int token_encode(const struct token_keys *keys, const struct token *t, struct buf *out,
                 struct buf *why);

/*
 * token_decode - parse len bytes of text: 0 with t filled (allocated copies;
 * the strings, and data when not NULL, end with a NUL not counted in their
 * length; data is NULL when data_len is 0; release with token_release), or -1
 * with why filled ("not a token: ...", "unknown key id 7", "token does not
 * verify", "token content is malformed") and t zeroed.
 */
int token_decode(const struct token_keys *keys, const char *text, size_t len,
                 struct token *t, struct buf *why);

/* token_release - free what token_decode allocated, and zero t */
void token_release(struct token *t);

/*
 * token_mac - append a short keyed marker over bytes, "KID.MAC": the current
 * key's id in decimal, a dot, then 22 base64url characters (HMAC-SHA256 under
 * the key's marker subkey, truncated to 128 bits).  Used to mark mail
 * sendguard has already processed.
 */
void token_mac(const struct token_keys *keys, const void *data, size_t len,
               struct buf *out);

/*
 * token_mac_check - does text (as token_mac made it) match data under the
 * loaded key it names: 1 yes, 0 no (also for malformed text or a key no
 * longer loaded).  Constant time in the MAC.
 */
int token_mac_check(const struct token_keys *keys, const void *data, size_t len,
                    const char *text, size_t text_len);

/*
 * token_purpose_name - "unsubscribe", "preferences", "click", "open",
 * "return-path"; "unknown" for anything else.
 */
const char *token_purpose_name(enum token_purpose p);

#endif
