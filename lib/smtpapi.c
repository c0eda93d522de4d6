/*
 * smtpapi - SendGrid's X-SMTPAPI header, see smtpapi.h.
 *
 * Where SendGrid's documentation leaves room, this module decides:
 *
 * - Unfolding removes a CRLF or LF that is followed by a space or tab and
 *   keeps the white space (RFC 5322 2.2.3), also inside JSON strings (so a
 *   tab folded into a string is a raw tab there: invalid JSON).  The size
 *   limit applies to the unfolded value.  Parse errors give jansson's line
 *   and column in the unfolded value.
 * - A key given twice in one object: the last one wins (jansson's default,
 *   and what most JSON parsers do).
 * - asm_group_id and asm_groups_to_display take integers from 1 to
 *   SMTPAPI_MAX_GROUP_ID: group ids are uint32_t in the store, where
 *   UINT32_MAX stands for "all groups".
 * - Duplicates are removed from category and asm_groups_to_display (first
 *   occurrence kept, order kept) before their limits are checked.  An empty
 *   array, like an empty unique_args object, sets nothing.
 * - unique_args values: strings are kept; numbers and booleans become their
 *   JSON text ("42", "1.5", "true"), since SendGrid reports them as strings;
 *   null, objects and arrays are errors naming the key.
 * - A filter without "settings" sets nothing; a key of a filter other than
 *   "settings" is ignored with a note, like unknown filters and settings.
 * - On error, notes gets nothing from this call.
 *
 * What it must never do: let a byte from the header reach a reason or a note
 * unsanitised (reasons go into SMTP replies, notes into the log), or leave a
 * half-filled opts behind on error.
 */
#include "config.h"

#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "mymalloc.h"
#include "smtpapi.h"

#define SMTPAPI_MAX_GROUP_ID (UINT32_MAX - 1)
#define SHOW_MAX 64 /* bytes of a key or value quoted in a reason or note */
#define WHY_MAX 400 /* a reason, so that it fits one SMTP reply line */
#define PREFIX "X-SMTPAPI: "

/* One known setting of one known filter, and where it lives. */
enum setting_kind { SETTING_FLAG, SETTING_STRING };

struct setting {
    const char *filter;
    const char *name;
    enum setting_kind kind;
    size_t offset; /* in struct smtpapi_filters */
};

#define FLAG(filter, name, member)                                                       \
    {                                                                                    \
        filter, name, SETTING_FLAG, offsetof(struct smtpapi_filters, member)             \
    }
#define STRING(filter, name, member)                                                     \
    {                                                                                    \
        filter, name, SETTING_STRING, offsetof(struct smtpapi_filters, member)           \
    }

/* Every member of struct smtpapi_filters appears here exactly once. */
static const struct setting settings[] = {
    FLAG("clicktrack", "enable", clicktrack.enable),
    FLAG("clicktrack", "enable_text", clicktrack.enable_text),
    FLAG("opentrack", "enable", opentrack.enable),
    STRING("opentrack", "replace", opentrack.replace),
    FLAG("subscriptiontrack", "enable", subscriptiontrack.enable),
    STRING("subscriptiontrack", "text/html", subscriptiontrack.text_html),
    STRING("subscriptiontrack", "text/plain", subscriptiontrack.text_plain),
    STRING("subscriptiontrack", "replace", subscriptiontrack.replace),
    FLAG("footer", "enable", footer.enable),
    STRING("footer", "text/html", footer.text_html),
    STRING("footer", "text/plain", footer.text_plain),
    FLAG("ganalytics", "enable", ganalytics.enable),
    STRING("ganalytics", "utm_source", ganalytics.utm_source),
    STRING("ganalytics", "utm_medium", ganalytics.utm_medium),
    STRING("ganalytics", "utm_term", ganalytics.utm_term),
    STRING("ganalytics", "utm_content", ganalytics.utm_content),
    STRING("ganalytics", "utm_campaign", ganalytics.utm_campaign),
    FLAG("bypass_list_management", "enable", bypass_list_management),
    FLAG("bypass_spam_management", "enable", bypass_spam_management),
    FLAG("bypass_bounce_management", "enable", bypass_bounce_management),
    FLAG("bypass_unsubscribe_management", "enable", bypass_unsubscribe_management),
};

#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

/* The state of one smtpapi_parse() call. */
struct parse {
    struct smtpapi_opts *opts;
    struct buf *notes; /* may be NULL */
    struct buf *why;   /* may be NULL */
};

/* flag_at - a flag member of the filters */
static int *flag_at(struct smtpapi_filters *f, const struct setting *s)
{
    return (int *)((char *)f + s->offset);
}

/* string_at - a string member of the filters */
static char **string_at(struct smtpapi_filters *f, const struct setting *s)
{
    return (char **)((char *)f + s->offset);
}

/* flag_of - a flag member of read-only filters */
static int flag_of(const struct smtpapi_filters *f, const struct setting *s)
{
    return *(const int *)((const char *)f + s->offset);
}

/* string_of - a string member of read-only filters */
static const char *string_of(const struct smtpapi_filters *f, const struct setting *s)
{
    return *(char *const *)((const char *)f + s->offset);
}

/* sanitize - printable ASCII from offset from on, one '?' per other character */
static void sanitize(struct buf *b, size_t from)
{
    size_t out = from;
    int in_seq = 0;

    for (size_t i = from; i < b->len; i++) {
        unsigned char ch = (unsigned char)b->data[i];

        if (ch >= 0x80 && ch < 0xc0 && in_seq)
            continue; /* the rest of a UTF-8 character already shown as '?' */
        in_seq = ch >= 0xc0;
        b->data[out++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    buf_truncate(b, out);
}

/* put_shown - append a key or value from the header, made safe to show */
static void put_shown(struct buf *b, const char *s)
{
    size_t from = b->len;
    size_t len = strlen(s);

    buf_append(b, s, len > SHOW_MAX ? SHOW_MAX : len);
    sanitize(b, from);
    if (len > SHOW_MAX)
        buf_puts(b, "...");
}

/* put_real - a real as the shortest text that reads back the same */
static void put_real(struct buf *b, double d)
{
    char text[64];

    for (int prec = 15; prec <= 17; prec++) {
        snprintf(text, sizeof(text), "%.*g", prec, d);
        if (strtod(text, NULL) == d)
            break;
    }
    buf_puts(b, text);
    if (strspn(text, "-0123456789") == strlen(text))
        buf_puts(b, ".0"); /* still a real: 2.0 is not the integer 2 */
}

/* put_described - what a wrong value was, for a reason */
static void put_described(struct buf *b, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        buf_puts(b, "an object");
        break;
    case JSON_ARRAY:
        buf_puts(b, "an array");
        break;
    case JSON_STRING:
        if (json_string_length(v) > SHOW_MAX / 2) {
            buf_puts(b, "a string");
        } else {
            buf_putc(b, '"');
            put_shown(b, json_string_value(v));
            buf_putc(b, '"');
        }
        break;
    case JSON_INTEGER:
        buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        put_real(b, json_real_value(v));
        break;
    case JSON_TRUE:
        buf_puts(b, "true");
        break;
    case JSON_FALSE:
        buf_puts(b, "false");
        break;
    case JSON_NULL:
        buf_puts(b, "null");
        break;
    }
}

/* fail - set the reason (", not GOT" appended when got is not NULL), return -1 */
static int fail(struct buf *why, const json_t *got, const char *fmt, ...) SG_PRINTF(3, 4);

static int fail(struct buf *why, const json_t *got, const char *fmt, ...)
{
    va_list ap;

    if (why == NULL)
        return -1;
    va_start(ap, fmt);
    buf_verror(why, fmt, ap);
    va_end(ap);
    if (got != NULL) {
        buf_puts(why, ", not ");
        put_described(why, got);
    }
    sanitize(why, 0);
    if (buf_len(why) > WHY_MAX) {
        buf_truncate(why, WHY_MAX - 3);
        buf_puts(why, "...");
    }
    return -1;
}

/* note - one line about an ignored key: "ignored unknown WHAT 'PATHKEY'" */
static void note(struct parse *p, const char *what, const char *path, const char *key)
{
    if (p->notes == NULL)
        return;
    buf_printf(p->notes, "ignored unknown %s '%s", what, path);
    put_shown(p->notes, key);
    buf_puts(p->notes, "'\n");
}

/* need - a jansson result that only fails when memory runs out */
static json_t *need(json_t *v)
{
    if (v == NULL)
        msg_fatal("out of memory in jansson");
    return v;
}

/* unfold - copy (out not NULL) or count the bytes of the unfolded value */
static size_t unfold(char *out, const char *in, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\r' && i + 2 < len && in[i + 1] == '\n' &&
            (in[i + 2] == ' ' || in[i + 2] == '\t')) {
            i++;
            continue;
        }
        if (in[i] == '\n' && i + 1 < len && (in[i + 1] == ' ' || in[i + 1] == '\t'))
            continue;
        if (out)
            out[n] = in[i];
        n++;
    }
    return n;
}

/* group_id - an integer from 1 to SMTPAPI_MAX_GROUP_ID */
static int group_id(struct parse *p, const json_t *v, const char *path, long *id)
{
    json_int_t n;

    if (!json_is_integer(v) || (n = json_integer_value(v)) < 1)
        return fail(p->why, v, PREFIX "%s must be a positive integer", path);
    if ((unsigned long long)n > SMTPAPI_MAX_GROUP_ID || (unsigned long long)n > LONG_MAX)
        return fail(p->why, v, PREFIX "%s must be at most %lu", path,
                    (unsigned long)SMTPAPI_MAX_GROUP_ID);
    *id = (long)n;
    return 0;
}

/* parse_asm_group_id - the unsubscribe group of the message */
static int parse_asm_group_id(struct parse *p, const char *key, json_t *v)
{
    return group_id(p, v, key, &p->opts->asm_group_id);
}

/* parse_groups_to_display - the groups shown on the unsubscribe page */
static int parse_groups_to_display(struct parse *p, const char *key, json_t *v)
{
    struct smtpapi_opts *o = p->opts;
    struct buf path;
    size_t i, j;
    long id = 0;
    int rc = 0;

    if (!json_is_array(v))
        return fail(p->why, v, PREFIX "%s must be an array of positive integers", key);
    if (json_array_size(v) == 0)
        return 0;
    o->groups_to_display = mymalloc(SMTPAPI_MAX_GROUPS_TO_DISPLAY * sizeof(long));
    buf_init(&path, 64);
    for (i = 0; i < json_array_size(v); i++) {
        buf_setf(&path, "%s[%zu]", key, i);
        if ((rc = group_id(p, json_array_get(v, i), buf_str(&path), &id)) < 0)
            break;
        for (j = 0; j < o->n_groups_to_display && o->groups_to_display[j] != id; j++)
            /* void */;
        if (j < o->n_groups_to_display)
            continue;
        if (o->n_groups_to_display == SMTPAPI_MAX_GROUPS_TO_DISPLAY) {
            rc = fail(p->why, NULL, PREFIX "%s names more than %d groups", key,
                      SMTPAPI_MAX_GROUPS_TO_DISPLAY);
            break;
        }
        o->groups_to_display[o->n_groups_to_display++] = id;
    }
    buf_release(&path);
    return rc;
}

/* add_category - one category, checked, unless it is a duplicate */
static int add_category(struct parse *p, const json_t *v, const char *path)
{
    struct smtpapi_opts *o = p->opts;
    size_t len;

    if (!json_is_string(v))
        return fail(p->why, v, PREFIX "%s must be a string", path);
    len = json_string_length(v);
    if (len < 1 || len > SMTPAPI_MAX_CATEGORY_LEN)
        return fail(p->why, NULL, PREFIX "%s must be 1 to %d bytes long, not %zu", path,
                    SMTPAPI_MAX_CATEGORY_LEN, len);
    for (size_t i = 0; i < o->n_categories; i++)
        if (strcmp(o->categories[i], json_string_value(v)) == 0)
            return 0;
    if (o->n_categories == SMTPAPI_MAX_CATEGORIES)
        return fail(p->why, NULL, PREFIX "category names more than %d categories",
                    SMTPAPI_MAX_CATEGORIES);
    o->categories[o->n_categories++] = mystrdup(json_string_value(v));
    return 0;
}

/* parse_category - a string or an array of strings */
static int parse_category(struct parse *p, const char *key, json_t *v)
{
    struct buf path;
    size_t i;
    int rc = 0;

    if (!json_is_string(v) && !json_is_array(v))
        return fail(p->why, v, PREFIX "%s must be a string or an array of strings", key);
    if (json_is_array(v) && json_array_size(v) == 0)
        return 0;
    p->opts->categories = mymalloc(SMTPAPI_MAX_CATEGORIES * sizeof(char *));
    if (json_is_string(v))
        return add_category(p, v, key);
    buf_init(&path, 64);
    for (i = 0; i < json_array_size(v); i++) {
        buf_setf(&path, "%s[%zu]", key, i);
        if ((rc = add_category(p, json_array_get(v, i), buf_str(&path))) < 0)
            break;
    }
    buf_release(&path);
    return rc;
}

/* parse_unique_args - an object of strings; numbers and booleans as JSON text */
static int parse_unique_args(struct parse *p, const char *key, json_t *v)
{
    struct buf text, path;
    const char *name;
    json_t *item, *args;
    int rc = 0;

    if (!json_is_object(v))
        return fail(p->why, v, PREFIX "%s must be an object", key);
    if (json_object_size(v) == 0)
        return 0;
    args = p->opts->unique_args = need(json_object());
    buf_init(&text, 32);
    buf_init(&path, 64);
    for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
        name = json_object_iter_key(it);
        item = json_object_iter_value(it);
        buf_reset(&text);
        if (json_is_string(item)) {
            buf_append(&text, json_string_value(item), json_string_length(item));
        } else if (json_is_number(item) || json_is_boolean(item)) {
            put_described(&text, item);
        } else {
            buf_setf(&path, "%s.", key);
            put_shown(&path, name);
            rc = fail(p->why, item, PREFIX "%s must be a string or a number",
                      buf_str(&path));
            break;
        }
        if (json_object_set_new(args, name, need(json_string(buf_str(&text)))) < 0)
            msg_fatal("out of memory in jansson");
    }
    buf_release(&text);
    buf_release(&path);
    return rc;
}

/* parse_flag - 0/1, true/false or "0"/"1" */
static int parse_flag(struct parse *p, const json_t *v, const char *path, int *flag)
{
    const char *s;

    if (json_is_boolean(v)) {
        *flag = json_is_true(v);
        return 0;
    }
    if (json_is_integer(v) &&
        (json_integer_value(v) == 0 || json_integer_value(v) == 1)) {
        *flag = (int)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v) && json_string_length(v) == 1 &&
        ((s = json_string_value(v))[0] == '0' || s[0] == '1')) {
        *flag = s[0] - '0';
        return 0;
    }
    return fail(p->why, v, PREFIX "%s must be 0 or 1", path);
}

/* parse_settings - filters.NAME.settings */
static int parse_settings(struct parse *p, const char *filter, json_t *v)
{
    struct smtpapi_filters *f = &p->opts->filters;
    const struct setting *s;
    struct buf path;
    const char *name;
    json_t *item;
    char **str;
    int rc = 0;

    buf_init(&path, 64);
    buf_setf(&path, "filters.%s.settings", filter);
    if (!json_is_object(v)) {
        rc = fail(p->why, v, PREFIX "%s must be an object", buf_str(&path));
        buf_release(&path);
        return rc;
    }
    for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
        name = json_object_iter_key(it);
        item = json_object_iter_value(it);
        for (s = settings; s < settings + N_SETTINGS; s++)
            if (strcmp(s->filter, filter) == 0 && strcmp(s->name, name) == 0)
                break;
        if (s == settings + N_SETTINGS) {
            buf_setf(&path, "filters.%s.settings.", filter);
            note(p, "setting", buf_str(&path), name);
            continue;
        }
        buf_setf(&path, "filters.%s.settings.%s", filter, name);
        if (s->kind == SETTING_FLAG) {
            if ((rc = parse_flag(p, item, buf_str(&path), flag_at(f, s))) < 0)
                break;
        } else if (!json_is_string(item)) {
            rc = fail(p->why, item, PREFIX "%s must be a string", buf_str(&path));
            break;
        } else {
            str = string_at(f, s);
            myfree(*str);
            *str = mystrdup(json_string_value(item));
        }
    }
    buf_release(&path);
    return rc;
}

/* known_filter - the name as spelled in the table, or NULL */
static const char *known_filter(const char *name)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strcmp(settings[i].filter, name) == 0)
            return settings[i].filter;
    return NULL;
}

/* parse_filters - filters.NAME.settings.SETTING */
static int parse_filters(struct parse *p, const char *key, json_t *v)
{
    const char *name, *filter, *fkey;
    json_t *item, *fval;
    struct buf path;

    if (!json_is_object(v))
        return fail(p->why, v, PREFIX "%s must be an object", key);
    for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
        name = json_object_iter_key(it);
        item = json_object_iter_value(it);
        if ((filter = known_filter(name)) == NULL) {
            note(p, "filter", "filters.", name);
            continue;
        }
        if (!json_is_object(item))
            return fail(p->why, item, PREFIX "filters.%s must be an object", filter);
        for (void *fit = json_object_iter(item); fit;
             fit = json_object_iter_next(item, fit)) {
            fkey = json_object_iter_key(fit);
            fval = json_object_iter_value(fit);
            if (strcmp(fkey, "settings") == 0) {
                if (parse_settings(p, filter, fval) < 0)
                    return -1;
                continue;
            }
            buf_init(&path, 64);
            buf_setf(&path, "filters.%s.", filter);
            note(p, "key", buf_str(&path), fkey);
            buf_release(&path);
        }
    }
    return 0;
}

/* check_bypass - bypass_list_management goes alone (as SendGrid insists) */
static int check_bypass(struct parse *p)
{
    const struct smtpapi_filters *f = &p->opts->filters;
    static const char *const names[] = {
        "bypass_spam_management",
        "bypass_bounce_management",
        "bypass_unsubscribe_management",
    };
    const int flags[] = {
        f->bypass_spam_management,
        f->bypass_bounce_management,
        f->bypass_unsubscribe_management,
    };

    if (!smtpapi_is_on(f->bypass_list_management))
        return 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (smtpapi_is_on(flags[i]))
            return fail(p->why, NULL,
                        PREFIX "filters.bypass_list_management cannot be combined with "
                               "any other bypass filter, but filters.%s is enabled too",
                        names[i]);
    return 0;
}

/* The top-level keys. */
static const struct {
    const char *name;
    int (*parse)(struct parse *p, const char *key, json_t *v);
} top_keys[] = {
    {"asm_group_id", parse_asm_group_id},
    {"asm_groups_to_display", parse_groups_to_display},
    {"category", parse_category},
    {"unique_args", parse_unique_args},
    {"filters", parse_filters},
};

/* parse_object - the top-level object */
static int parse_object(struct parse *p, json_t *root)
{
    const char *key;
    json_t *v;
    size_t i;

    for (void *it = json_object_iter(root); it; it = json_object_iter_next(root, it)) {
        key = json_object_iter_key(it);
        v = json_object_iter_value(it);
        for (i = 0; i < sizeof(top_keys) / sizeof(top_keys[0]); i++)
            if (strcmp(top_keys[i].name, key) == 0)
                break;
        if (i == sizeof(top_keys) / sizeof(top_keys[0]))
            note(p, "key", "", key);
        else if (top_keys[i].parse(p, key, v) < 0)
            return -1;
    }
    return check_bypass(p);
}

/* smtpapi_init - every option unset */
void smtpapi_init(struct smtpapi_opts *opts)
{
    memset(opts, 0, sizeof(*opts));
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (settings[i].kind == SETTING_FLAG)
            *flag_at(&opts->filters, &settings[i]) = SMTPAPI_UNSET;
}

/* smtpapi_parse - one header value into opts */
int smtpapi_parse(const char *value, size_t len, size_t max_size,
                  struct smtpapi_opts *opts, struct buf *notes, struct buf *why)
{
    struct parse p = {opts, notes, why};
    size_t notes_len = notes ? buf_len(notes) : 0;
    size_t n;
    char *text;
    json_t *root;
    json_error_t err;
    int rc;

    smtpapi_init(opts);
    if (max_size == 0)
        max_size = SMTPAPI_DEFAULT_MAX_SIZE;
    if ((n = unfold(NULL, value, len)) > max_size)
        return fail(why, NULL, "X-SMTPAPI header is %zu bytes, over the limit of %zu", n,
                    max_size);
    text = mymalloc(n + 1);
    unfold(text, value, len);
    root = json_loadb(text, n, JSON_DECODE_ANY, &err);
    myfree(text);
    if (root == NULL) {
        if (err.line > 0 && err.column >= 0)
            return fail(why, NULL, PREFIX "invalid JSON at line %d column %d: %s",
                        err.line, err.column, err.text);
        return fail(why, NULL, PREFIX "invalid JSON: %s", err.text);
    }
    if (!json_is_object(root))
        rc = fail(why, root, PREFIX "the value must be a JSON object");
    else
        rc = parse_object(&p, root);
    json_decref(root);
    if (rc < 0) {
        smtpapi_free(opts);
        if (notes)
            buf_truncate(notes, notes_len);
    }
    return rc;
}

/* smtpapi_merge - every option set in "over" replaces the one in "base" */
void smtpapi_merge(struct smtpapi_opts *base, const struct smtpapi_opts *over)
{
    struct smtpapi_filters *bf = &base->filters;
    const struct smtpapi_filters *of = &over->filters;
    size_t i;

    if (base == over)
        return;
    if (over->asm_group_id != 0)
        base->asm_group_id = over->asm_group_id;
    if (over->n_groups_to_display > 0) {
        myfree(base->groups_to_display);
        base->groups_to_display =
            mymemdup(over->groups_to_display, over->n_groups_to_display * sizeof(long));
        base->n_groups_to_display = over->n_groups_to_display;
    }
    if (over->n_categories > 0) {
        for (i = 0; i < base->n_categories; i++)
            myfree(base->categories[i]);
        myfree(base->categories);
        base->categories = mymalloc(over->n_categories * sizeof(char *));
        for (i = 0; i < over->n_categories; i++)
            base->categories[i] = mystrdup(over->categories[i]);
        base->n_categories = over->n_categories;
    }
    if (over->unique_args != NULL) {
        json_decref(base->unique_args);
        base->unique_args = need(json_deep_copy(over->unique_args));
    }
    for (i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];

        if (s->kind == SETTING_FLAG && flag_of(of, s) != SMTPAPI_UNSET) {
            *flag_at(bf, s) = flag_of(of, s);
        } else if (s->kind == SETTING_STRING && string_of(of, s) != NULL) {
            myfree(*string_at(bf, s));
            *string_at(bf, s) = mystrdup(string_of(of, s));
        }
    }
}

/* smtpapi_free - release what parse or merge allocated, and start afresh */
void smtpapi_free(struct smtpapi_opts *opts)
{
    for (size_t i = 0; i < opts->n_categories; i++)
        myfree(opts->categories[i]);
    myfree(opts->categories);
    myfree(opts->groups_to_display);
    json_decref(opts->unique_args);
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (settings[i].kind == SETTING_STRING)
            myfree(*string_at(&opts->filters, &settings[i]));
    smtpapi_init(opts);
}
