/*
 * smtpapi - SendGrid's X-SMTPAPI header, parsed into the message options of
 * DESIGN.md step 3.
 *
 * The header value is JSON, possibly folded over many lines.  Recognised
 * keys: asm_group_id, asm_groups_to_display, category (string or array),
 * unique_args, and filters.NAME.settings for the filters below.  Unknown keys
 * (including the parts of SendGrid's SMTP API sendguard does not implement,
 * such as "to", "sub", "section", "send_at") are ignored, each with a note.
 * Invalid JSON, a wrong type, conflicting bypass filters or a header over the
 * size limit are errors whose reason is fit to return to the sender in an SMTP
 * reply (one line, printable ASCII).
 *
 * Every option is tri-state (SMTPAPI_UNSET / 0 / 1 for flags, NULL for
 * strings, 0 for asm_group_id) so that a message's options can be merged
 * over the configured defaults with smtpapi_merge().
 */
#ifndef SG_SMTPAPI_H
#define SG_SMTPAPI_H

#include <stddef.h>

#include <jansson.h>

#include "buf.h"

#define SMTPAPI_UNSET (-1)
#define SMTPAPI_MAX_CATEGORIES 10
#define SMTPAPI_MAX_CATEGORY_LEN 255
#define SMTPAPI_MAX_GROUPS_TO_DISPLAY 25
#define SMTPAPI_DEFAULT_MAX_SIZE 16384

struct smtpapi_filters {
    struct {
        int enable, enable_text;
    } clicktrack;
    struct {
        int enable;
        char *replace;
    } opentrack;
    struct {
        int enable;
        char *text_html, *text_plain, *replace;
    } subscriptiontrack;
    struct {
        int enable;
        char *text_html, *text_plain;
    } footer;
    struct {
        int enable;
        char *utm_source, *utm_medium, *utm_term, *utm_content, *utm_campaign;
    } ganalytics;
    int bypass_list_management;
    int bypass_spam_management;
    int bypass_bounce_management;
    int bypass_unsubscribe_management;
};

struct smtpapi_opts {
    long asm_group_id;       /* 0: none named */
    long *groups_to_display; /* asm_groups_to_display */
    size_t n_groups_to_display;
    char **categories;
    size_t n_categories;
    json_t *unique_args; /* object of string values, or NULL */
    struct smtpapi_filters filters;
};

/* smtpapi_init - every option unset */
void smtpapi_init(struct smtpapi_opts *opts);

/*
 * smtpapi_parse - parse one header value (as it stood in the message, folding
 * included; len bytes, need not be NUL-terminated).  Returns 0 with opts
 * filled (and one line per ignored key appended to notes, if not NULL), or -1
 * with why filled and opts left initialised.  max_size 0 means
 * SMTPAPI_DEFAULT_MAX_SIZE.
 */
int smtpapi_parse(const char *value, size_t len, size_t max_size,
                  struct smtpapi_opts *opts, struct buf *notes, struct buf *why);

/* smtpapi_merge - every option set in "over" replaces the one in "base" */
void smtpapi_merge(struct smtpapi_opts *base, const struct smtpapi_opts *over);

/* smtpapi_is_on - a tri-state flag as a boolean (unset is off) */
static inline int smtpapi_is_on(int flag)
{
    return flag == 1;
}

/* smtpapi_free - release what parse or merge allocated */
void smtpapi_free(struct smtpapi_opts *opts);

#endif
