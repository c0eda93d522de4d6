/*
 * dkim_keys - which keys sign a message, and the signing settings.
 *
 * The keys are those recorded in the store (sgadmin dkim): a message is
 * signed with every key of its From domain, else of the nearest parent
 * domain that has keys (news.example.com falls back to example.com), else of
 * the configured default domain; with no key at all it is not signed, which
 * the caller logs: a missing key never stops mail.
 *
 * A keyring caches the parsed keys.  It rereads the store's records when the
 * store's generation has moved, and a key file when its inode, size or
 * modification time has changed, so that a key replaced on disk (a rotation)
 * is used from the next message on, without a restart.  A key file that other
 * users may read, or that does not parse, is not used, and says why once.
 * Threads may share a keyring; the keys it hands out are referenced, so a
 * reload never frees a key in use.
 */
#ifndef SG_DKIM_KEYS_H
#define SG_DKIM_KEYS_H

#include "buf.h"
#include "conf.h"
#include "dkim.h"
#include "store.h"

#define DKIM_KEYS_MAX 8 /* keys for one domain */

struct dkim_keyring;

/* dkim_keyring_new - over an open store; default_domain "" or NULL: none */
struct dkim_keyring *dkim_keyring_new(struct store *st, const char *default_domain);
void dkim_keyring_free(struct dkim_keyring *kr);

/*
 * dkim_keyring_find - the keys for mail from this domain (normalised, see
 * dkim_from_domain): the number put in keys[] (0: none), each to be given
 * back with dkim_key_free; -1 with why filled when the store cannot be read.
 * Keys that cannot be used are skipped (and logged).
 */
int dkim_keyring_find(struct dkim_keyring *kr, const char *domain,
                      struct dkim_key *keys[DKIM_KEYS_MAX], struct buf *why);

/*
 * dkim_key_file_check - a private key file fit to be used: a regular file,
 * not readable or writable by other users; 0, or -1 with why filled.
 */
int dkim_key_file_check(const char *path, struct buf *why);

/*
 * dkim_from_domain - the domain of the (first) address in a From field's
 * value ("Joe <joe@Example.COM>" -> "example.com", in punycode); 0, or -1
 * with why filled.
 */
int dkim_from_domain(const char *value, struct buf *domain, struct buf *why);

/* dkim_domain_normalize - a domain as the store keeps it; 0 or -1 */
int dkim_domain_normalize(const char *in, struct buf *out, struct buf *why);

/* dkim_selector_check - a selector is dot-separated labels of A-Z a-z 0-9 - */
int dkim_selector_check(const char *selector, struct buf *why);

/*
 * dkim_params_conf - signing parameters from the dkim settings.  The header
 * list points into the configuration (or the built-in list): keep conf.
 * "names" is storage for it, freed with myfree.  0, or -1 with why filled.
 */
int dkim_params_conf(struct dkim_params *p, const struct conf *conf, const char ***names,
                     struct buf *why);

#endif
