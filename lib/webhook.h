/*
 * webhook - the signed event webhook of the hosted services: events POSTed
 * as JSON arrays, signed as SendGrid signs them, so that an application
 * that consumes SendGrid's Event Webhook works unchanged.
 *
 * SIGNING.  ECDSA over the NIST P-256 curve with SHA-256, over the
 * timestamp (decimal unix seconds, as sent in
 * X-Twilio-Email-Event-Webhook-Timestamp) followed by the request body; the
 * DER signature in base64 goes in X-Twilio-Email-Event-Webhook-Signature.
 * The verification key their libraries take is the public key's
 * SubjectPublicKeyInfo, DER, in base64 (one line, no PEM armour).
 *
 * KEY FILE.  The private key in PEM (PKCS #8), mode 0600: it must pass
 * conf_check_secret.
 */
#ifndef SG_WEBHOOK_H
#define SG_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "buf.h"

struct webhook_key;

/* webhook_key_generate - a new P-256 key written to path (made 0600, not replaced); 0 or
 * -1 */
int webhook_key_generate(const char *path, struct buf *why);

/* webhook_key_load - the key of a key file; NULL with why filled */
struct webhook_key *webhook_key_load(const char *path, struct buf *why);
void webhook_key_free(struct webhook_key *k);

/* webhook_public_key - the verification key (base64 DER SPKI) appended to out */
void webhook_public_key(const struct webhook_key *k, struct buf *out);

/*
 * webhook_sign - the signature of timestamp (decimal) and body, base64 of
 * the DER ECDSA signature, appended to out; 0, or -1 with why filled
 */
int webhook_sign(const struct webhook_key *k, const char *timestamp, const char *body,
                 size_t len, struct buf *out, struct buf *why);

/*
 * STATE.  Per tenant, STORE/webhook/TENANT/: "url" (the endpoint, set by
 * sgadmin webhook set), "position" ("DAY OFFSET": the first byte of the
 * event log not yet acknowledged by the endpoint, replaced by a rename
 * after each acknowledged batch and synced, so that a restart or a crash
 * sends again at most the batch that was in flight), "status" (JSON: the
 * last success, the last error, written by the sender).
 */
struct webhook_pos {
    char day[11]; /* YYYY-MM-DD: the day file */
    long long offset;
};

/* webhook_dir - STORE/webhook/TENANT into out */
void webhook_dir(const char *store_dir, const char *tenant, struct buf *out);

/* webhook_pos_read - the tenant's position; 1, 0 none yet, -1 with why */
int webhook_pos_read(const char *store_dir, const char *tenant, struct webhook_pos *pos,
                     struct buf *why);

/* webhook_pos_write - the tenant's position, durably (temporary file, fsync, rename) */
int webhook_pos_write(const char *store_dir, const char *tenant,
                      const struct webhook_pos *pos, struct buf *why);

/* webhook_pos_end - the end of the event log now (where a new webhook starts) */
void webhook_pos_end(const char *store_dir, struct webhook_pos *pos);

/*
 * webhook_read - the tenant's events from pos on, at most max of them, as
 * the hosted services' Event Webhook has them (the event's fields, the
 * message's unique_args at the top, no "tenant"), appended to events (a
 * JSON array); *next gets the position after the last line taken (lines of
 * other tenants and lines that do not parse are passed over).  A day file
 * read to its end is left for the next one only once a later day file
 * exists.  0, or -1 with why filled.
 */
int webhook_read(const char *store_dir, const char *tenant, const struct webhook_pos *pos,
                 size_t max, json_t *events, struct webhook_pos *next, struct buf *why);

/* webhook_backlog - how many of the tenant's events lie after pos (a scan) */
long long webhook_backlog(const char *store_dir, const char *tenant,
                          const struct webhook_pos *pos);

#endif
