/*
 * address - the one place where e-mail addresses and suppression entries are
 * normalised and recognised.
 *
 * Normalised form (DESIGN.md): surrounding white space and one pair of angle
 * brackets removed; the domain lower-cased and converted to its ASCII
 * (punycode) form with libidn2; the local part kept as written (dot-atom or
 * quoted string, UTF-8 allowed as RFC 6531 does).  The comparison key is the
 * normalised form with the ASCII letters of the local part lower-cased: local
 * parts are compared case-insensitively.  MD5 and SHA-256 digests, for lists
 * shared in hashed form, are taken over that key.
 *
 * Nothing here ever accepts a string that is not an address without saying
 * why: every failure fills "why" with a reason fit for a person.
 */
#ifndef SG_ADDRESS_H
#define SG_ADDRESS_H

#include "buf.h"

#define ADDRESS_LOCAL_MAX 64
#define ADDRESS_DOMAIN_MAX 253
#define ADDRESS_MAX 320

enum address_kind {
    ADDRESS_EXACT,  /* a@b.example */
    ADDRESS_DOMAIN, /* @b.example: every address of that domain */
    ADDRESS_MD5,    /* 32 hex digits */
    ADDRESS_SHA256  /* 64 hex digits */
};

/* address_normalize - normalise one address; 0, or -1 with why filled */
int address_normalize(const char *in, struct buf *out, struct buf *why);

/* address_key - comparison key of a normalised address (local part folded) */
void address_key(const char *normalized, struct buf *key);

/* address_domain - the domain part of a normalised address or key */
const char *address_domain(const char *normalized);

/*
 * address_parse_entry - a suppression-list entry: an address, "@domain", or
 * an MD5 / SHA-256 hex digest (either case; stored lower-case).  "display" is
 * what listings show (the normalised address, "@domain" in punycode, the
 * lower-case digest); "key" is what lookups compare (for an address, its
 * address_key).  Returns 0, or -1 with why filled.
 */
int address_parse_entry(const char *in, enum address_kind *kind, struct buf *display,
                        struct buf *key, struct buf *why);

/* address_digests - lower-case hex MD5 and SHA-256 of a key */
void address_digests(const char *key, size_t len, char md5hex[33], char sha256hex[65]);

/* address_kind_name - "exact", "domain", "md5", "sha256" */
const char *address_kind_name(enum address_kind kind);

#endif
