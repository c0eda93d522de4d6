/*
 * conf - the one libconfig file read by every sendguard program.
 *
 * Every setting is declared once, in the table in conf.c, with its type and
 * default; etc/sendguard.conf and etc/sendguard.conf.5 document the same
 * table.  Loading checks the whole file against it: an unknown setting or a
 * wrong type is an error naming file, line and setting.  Settings are read by
 * their dotted path ("store.path"); asking for a path the table does not
 * declare is a bug (msg_panic), so a typo in code cannot silently read a
 * default.
 */
#ifndef SG_CONF_H
#define SG_CONF_H

#include <libconfig.h>

#include "buf.h"

#define CONF_DEFAULT_PATH "/etc/sendguard/sendguard.conf"

struct conf;

/*
 * conf_load - load and check a file.  path NULL: the default path if it
 * exists, else the embedded defaults alone.  Returns NULL with why filled
 * ("FILE:LINE: ...") on any error.
 */
struct conf *conf_load(const char *path, struct buf *why);

/* conf_defaults - the embedded defaults alone */
struct conf *conf_defaults(void);

/* conf_file - the file loaded, or NULL for the embedded defaults */
const char *conf_file(const struct conf *conf);

const char *conf_string(const struct conf *conf, const char *path);
long long conf_int(const struct conf *conf, const char *path);
int conf_bool(const struct conf *conf, const char *path);
/* conf_duration - "90", "30s", "5m", "2h", "5d", "1w" in seconds */
long long conf_duration(const struct conf *conf, const char *path);
/* conf_size - "1000", "16k", "10M", "1G" in bytes */
long long conf_size(const struct conf *conf, const char *path);

/*
 * conf_parse_duration, conf_parse_size - a duration or size as written in the
 * file (digits and at most one suffix: s m h d w; k M G, powers of 1024, case
 * ignored), for callers that take the same forms elsewhere; 0, or -1 with why
 * filled ("bad duration '5x' (use s, m, h, d, w)", or too large).
 */
int conf_parse_duration(const char *text, long long *secs, struct buf *why);
int conf_parse_size(const char *text, long long *bytes, struct buf *why);

/*
 * conf_tenant_string, conf_tenant_bool, conf_tenant_int, conf_tenant_duration -
 * a setting a tenant may have of its own (tracking.*, pages.*, bounces.*,
 * feedback.return_path): the tenant's element of "tenants" if it sets
 * it, else the file's top level, else the default.  tenant NULL or
 * "default": the top level.
 */
const char *conf_tenant_string(const struct conf *conf, const char *tenant,
                               const char *path);
int conf_tenant_bool(const struct conf *conf, const char *tenant, const char *path);
long long conf_tenant_int(const struct conf *conf, const char *tenant, const char *path);
long long conf_tenant_duration(const struct conf *conf, const char *tenant,
                               const char *path);

/* conf_setting - a list or group setting (e.g. "tenants"), or NULL if absent */
const config_setting_t *conf_setting(const struct conf *conf, const char *path);

/*
 * conf_tenant_for - the tenant of a message: the first tenant whose "logins"
 * holds the SASL login, else whose "domains" holds the envelope sender's
 * domain, else the From domain; "default" when none matches.  Any argument
 * may be NULL.
 */
const char *conf_tenant_for(const struct conf *conf, const char *sasl_login,
                            const char *sender_domain, const char *from_domain);

/* conf_tenant_valid - is this a syntactically valid tenant name? */
int conf_tenant_valid(const char *name, struct buf *why);

/*
 * conf_check_secret - a secret file must be a regular file not readable or
 * writable by others; 0, or -1 with why filled.
 */
int conf_check_secret(const char *path, struct buf *why);

/*
 * conf_dkim_canon - parse dkim.canonicalization ("relaxed/simple"): 0 and
 * each part's "relaxed" flag, or -1.
 */
int conf_dkim_canon(const char *text, int *header_relaxed, int *body_relaxed);

/*
 * conf_smarthost - relay.smarthost (HOST, HOST:PORT, [ADDRESS] or
 * [ADDRESS]:PORT; IPv6 not supported, as libESMTP splits at the first
 * colon) as libESMTP takes it, "HOST:PORT" with port 25 by default, and
 * the bare host; either out may be NULL.  0, or -1 with why filled.
 */
int conf_smarthost(const char *hostport, struct buf *server, struct buf *host,
                   struct buf *why);

void conf_free(struct conf *conf);

#endif
