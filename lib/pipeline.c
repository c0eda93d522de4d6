/*
 * pipeline - options, decisions and per-recipient copies; see pipeline.h.
 *
 * Must never let a copy leave with an X-SMTPAPI field, never change a byte
 * of a message that needs nothing, and never sign before the last change.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#include "address.h"
#include "dkim.h"
#include "dkim_keys.h"
#include "header.h"
#include "msg.h"
#include "mymalloc.h"
#include "pipeline.h"
#include "mime.h"
#include "token.h"
#include "track.h"

struct pipeline {
    const struct conf *conf;
    struct store *store;
    struct token_keys *keys; /* NULL: see keys_why */
    struct buf keys_why;
    struct dkim_keyring *keyring;
    struct dkim_params dkim;
    const char **dkim_names;
    char *url_base;       /* "https://host[/path]", no final slash */
    char *mailto_local;   /* "unsubscribe" */
    char *mailto_domain;  /* "example.com" */
    int keep_existing;    /* unsubscribe.keep_existing */
    pthread_mutex_t lock; /* for unsigned_ and defaults: threads share a pipeline */
    struct buf unsigned_; /* "\n"-separated domains already reported unsigned */
    /* the tenants' default groups, as of the store's generation defaults_gen */
    struct tenant_default {
        char *tenant;
        uint32_t group;
    } * defaults;
    size_t ndefaults, capdefaults;
    uint64_t defaults_gen;
    /* each tenant's configured tracking filters (tracking.*), bounce rules
     * and return path, read once: tfilters[0] is the top level's (tenant
     * "default" and any unknown) */
    struct tenant_filters {
        const char *tenant;         /* the configuration's string */
        struct smtpapi_opts base;   /* its filters (empty texts: NULL) */
        int any;                    /* a filter on, or a text set */
        unsigned bounce_drops;      /* policy_bounce_drops */
        char *rp_local, *rp_domain; /* feedback.return_path split, or NULL */
        int tracks;                 /* a filter that rewrites text on */
    } * tfilters;
    size_t ntfilters;
};

static void tenant_filters_load(struct pipeline *p);

/* url_base - tracker.url checked: https, a host, no query or fragment */
static int url_base(const char *conf_url, const char *domain, char **out, struct buf *why)
{
    struct buf u;
    const char *host;

    buf_init(&u, 64);
    if (*conf_url)
        buf_puts(&u, conf_url);
    else
        buf_printf(&u, "https://%s", domain);
    while (u.len > 0 && u.data[u.len - 1] == '/')
        buf_truncate(&u, u.len - 1);
    host = buf_str(&u) + strlen("https://");
    if (strncmp(buf_str(&u), "https://", 8) != 0 || *host == 0 || *host == '/' ||
        strpbrk(buf_str(&u), "?# \t\"<>") != NULL) {
        buf_error(why,
                  "tracker.url: \"%s\" is not an https URL without query or fragment "
                  "(RFC 8058 wants https)",
                  buf_str(&u));
        buf_release(&u);
        return -1;
    }
    *out = buf_steal(&u);
    buf_release(&u);
    return 0;
}

/*
 * plain_split - a configured address a token goes into (LOCAL+TOKEN@DOMAIN)
 * split at its last '@': a plain address without '+'; 0, or -1 with why
 * naming the setting
 */
static int plain_split(const char *addr, const char *setting, char **local, char **domain,
                       struct buf *why)
{
    const char *at = strrchr(addr, '@');

    if (at == NULL || at == addr || at[1] == 0 ||
        strpbrk(addr, " \t\"<>(),;:\\[]+") != NULL)
        return buf_error(why, "%s: \"%s\" is not a plain address (local@domain, no '+')",
                         setting, addr);
    *local = mystrndup(addr, (size_t)(at - addr));
    *domain = mystrdup(at + 1);
    return 0;
}

/* mailto - unsubscribe.mailto split at its last '@' */
static int mailto(struct pipeline *p, const char *conf_addr, const char *domain,
                  struct buf *why)
{
    struct buf a;
    int rc;

    buf_init(&a, 64);
    if (*conf_addr)
        buf_puts(&a, conf_addr);
    else
        buf_printf(&a, "unsubscribe@%s", domain);
    rc = plain_split(buf_str(&a), "unsubscribe.mailto", &p->mailto_local,
                     &p->mailto_domain, why);
    buf_release(&a);
    return rc;
}

/* pipeline_new - see pipeline.h */
struct pipeline *pipeline_new(const struct conf *conf, struct store *st,
                              const char *domain, struct buf *why)
{
    struct pipeline *p = mycalloc(1, sizeof(*p));

    p->conf = conf;
    p->store = st;
    buf_init(&p->keys_why, 64);
    buf_init(&p->unsigned_, 64);
    pthread_mutex_init(&p->lock, NULL);
    p->keep_existing = conf_bool(conf, "unsubscribe.keep_existing");
    if (url_base(conf_string(conf, "tracker.url"), domain, &p->url_base, why) < 0 ||
        mailto(p, conf_string(conf, "unsubscribe.mailto"), domain, why) < 0 ||
        dkim_params_conf(&p->dkim, conf, &p->dkim_names, why) < 0) {
        pipeline_free(p);
        return NULL;
    }
    p->keys = token_keys_load(conf_string(conf, "secrets.token_key_file"), &p->keys_why);
    p->keyring = dkim_keyring_new(st, conf_string(conf, "dkim.default_domain"));
    tenant_filters_load(p);
    for (size_t i = 0; i < p->ntfilters; i++) {
        const char *rp =
            conf_tenant_string(conf, p->tfilters[i].tenant, "feedback.return_path");

        if (*rp && plain_split(rp, "feedback.return_path", &p->tfilters[i].rp_local,
                               &p->tfilters[i].rp_domain, why) < 0) {
            pipeline_free(p);
            return NULL;
        }
    }
    return p;
}

/* pipeline_free - see pipeline.h */
void pipeline_free(struct pipeline *p)
{
    if (p == NULL)
        return;
    token_keys_free(p->keys);
    dkim_keyring_free(p->keyring);
    myfree(p->dkim_names);
    myfree(p->url_base);
    myfree(p->mailto_local);
    myfree(p->mailto_domain);
    buf_release(&p->keys_why);
    buf_release(&p->unsigned_);
    for (size_t i = 0; i < p->ndefaults; i++)
        myfree(p->defaults[i].tenant);
    myfree(p->defaults);
    for (size_t i = 0; i < p->ntfilters; i++) {
        smtpapi_free(&p->tfilters[i].base);
        myfree(p->tfilters[i].rp_local);
        myfree(p->tfilters[i].rp_domain);
    }
    myfree(p->tfilters);
    pthread_mutex_destroy(&p->lock);
    myfree(p);
}

/* pipeline_options - see pipeline.h */
int pipeline_options(const struct conf *conf, const char *msg, size_t len,
                     struct smtpapi_opts *opts, struct buf *why)
{
    size_t body, hlen = header_split(msg, len, &body), pos = 0;
    struct header_field f, api;
    int found = 0;

    while (header_next(msg, hlen, &pos, &f))
        if (header_is(&f, PIPELINE_SMTPAPI_FIELD) && found++ == 0)
            api = f;
    if (found == 0)
        return 0;
    if (found > 1)
        return buf_error(why, "the message has %d X-SMTPAPI fields; one is allowed",
                         found);
    return pipeline_options_field(conf, api.value, api.value_len, opts, why);
}

/* pipeline_options_field - see pipeline.h */
int pipeline_options_field(const struct conf *conf, const char *value, size_t len,
                           struct smtpapi_opts *opts, struct buf *why)
{
    struct smtpapi_opts mine;
    int rc;

    smtpapi_init(&mine);
    rc = smtpapi_parse(value, len, (size_t)conf_size(conf, "smtpapi.max_size"), &mine,
                       NULL, why);
    if (rc == 0)
        smtpapi_merge(opts, &mine);
    smtpapi_free(&mine);
    return rc;
}

/* Where tracking.* lands in a message's filters. */
static const struct scoped_flag {
    const char *path;
    size_t off;
} scoped_flags[] = {
    {"tracking.clicktrack.enable", offsetof(struct smtpapi_filters, clicktrack.enable)},
    {"tracking.clicktrack.enable_text",
     offsetof(struct smtpapi_filters, clicktrack.enable_text)},
    {"tracking.opentrack.enable", offsetof(struct smtpapi_filters, opentrack.enable)},
    {"tracking.subscriptiontrack.enable",
     offsetof(struct smtpapi_filters, subscriptiontrack.enable)},
    {"tracking.footer.enable", offsetof(struct smtpapi_filters, footer.enable)},
    {"tracking.ganalytics.enable", offsetof(struct smtpapi_filters, ganalytics.enable)},
};
static const struct scoped_flag scoped_strings[] = {
    {"tracking.opentrack.replace", offsetof(struct smtpapi_filters, opentrack.replace)},
    {"tracking.subscriptiontrack.text_html",
     offsetof(struct smtpapi_filters, subscriptiontrack.text_html)},
    {"tracking.subscriptiontrack.text_plain",
     offsetof(struct smtpapi_filters, subscriptiontrack.text_plain)},
    {"tracking.subscriptiontrack.replace",
     offsetof(struct smtpapi_filters, subscriptiontrack.replace)},
    {"tracking.footer.text_html", offsetof(struct smtpapi_filters, footer.text_html)},
    {"tracking.footer.text_plain", offsetof(struct smtpapi_filters, footer.text_plain)},
    {"tracking.ganalytics.utm_source",
     offsetof(struct smtpapi_filters, ganalytics.utm_source)},
    {"tracking.ganalytics.utm_medium",
     offsetof(struct smtpapi_filters, ganalytics.utm_medium)},
    {"tracking.ganalytics.utm_term",
     offsetof(struct smtpapi_filters, ganalytics.utm_term)},
    {"tracking.ganalytics.utm_content",
     offsetof(struct smtpapi_filters, ganalytics.utm_content)},
    {"tracking.ganalytics.utm_campaign",
     offsetof(struct smtpapi_filters, ganalytics.utm_campaign)},
};
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* filters_track - does a filter rewrite a message's text? */
static int filters_track(const struct smtpapi_filters *f)
{
    return smtpapi_is_on(f->clicktrack.enable) || smtpapi_is_on(f->opentrack.enable) ||
           smtpapi_is_on(f->subscriptiontrack.enable) || smtpapi_is_on(f->footer.enable);
}

/* tenant_filters_add - the tracking filters the configuration gives tenant */
static void tenant_filters_add(struct pipeline *p, const char *tenant)
{
    struct tenant_filters *tf = &p->tfilters[p->ntfilters++];
    char *f = (char *)&tf->base.filters;

    tf->tenant = tenant;
    smtpapi_init(&tf->base);
    for (size_t i = 0; i < N_OF(scoped_flags); i++) {
        int on = conf_tenant_bool(p->conf, tenant, scoped_flags[i].path);
        *(int *)(f + scoped_flags[i].off) = on;
        tf->any |= on;
    }
    for (size_t i = 0; i < N_OF(scoped_strings); i++) {
        const char *v = conf_tenant_string(p->conf, tenant, scoped_strings[i].path);
        *(char **)(f + scoped_strings[i].off) = *v ? mystrdup(v) : NULL;
        tf->any |= *v != 0;
    }
    tf->tracks = filters_track(&tf->base.filters);
    tf->bounce_drops = policy_bounce_drops(p->conf, tenant);
}

/* tenant_filters_load - every tenant's, the top level's first */
static void tenant_filters_load(struct pipeline *p)
{
    const config_setting_t *list = conf_setting(p->conf, "tenants");
    int n = list ? config_setting_length(list) : 0;

    p->tfilters = mycalloc((size_t)n + 1, sizeof(*p->tfilters));
    tenant_filters_add(p, STORE_DEFAULT_TENANT);
    for (int i = 0; i < n; i++) {
        const char *name = NULL;
        config_setting_lookup_string(config_setting_get_elem(list, (unsigned)i), "name",
                                     &name);
        if (name != NULL)
            tenant_filters_add(p, name);
    }
}

/* tenant_filters - the tenant's, else the top level's */
static const struct tenant_filters *tenant_filters(const struct pipeline *p,
                                                   const char *tenant)
{
    for (size_t i = 1; tenant && i < p->ntfilters; i++)
        if (strcmp(p->tfilters[i].tenant, tenant) == 0)
            return &p->tfilters[i];
    return &p->tfilters[0];
}

/* pipeline_tenant_options - see pipeline.h */
void pipeline_tenant_options(const struct pipeline *p, const char *tenant,
                             struct smtpapi_opts *opts)
{
    const struct tenant_filters *tf = tenant_filters(p, tenant);
    struct smtpapi_opts merged;

    if (!tf->any)
        return; /* nothing configured: the message's own settings alone */
    smtpapi_init(&merged);
    smtpapi_merge(&merged, &tf->base);
    smtpapi_merge(&merged, opts); /* the message's own settings win */
    smtpapi_free(opts);
    *opts = merged;
}

/* plus_of - is rcpt LOCAL+something@DOMAIN (local and domain in any case)? */
static int plus_of(const char *rcpt, const char *local, const char *domain)
{
    const char *at = strrchr(rcpt, '@');
    size_t n = local ? strlen(local) : 0;

    return n > 0 && at && strncasecmp(rcpt, local, n) == 0 && rcpt[n] == '+' &&
           strcasecmp(at + 1, domain) == 0;
}

/* own_address - one of sendguard's feedback addresses (pipeline_decision.own) */
static int own_address(const struct pipeline *p, const char *rcpt)
{
    if (plus_of(rcpt, p->mailto_local, p->mailto_domain))
        return 1;
    for (size_t i = 0; i < p->ntfilters; i++)
        if (p->tfilters[i].rp_local &&
            plus_of(rcpt, p->tfilters[i].rp_local, p->tfilters[i].rp_domain))
            return 1;
    return 0;
}

/* pipeline_decide - see pipeline.h */
int pipeline_decide(struct pipeline *p, const char *tenant,
                    const struct smtpapi_opts *opts, const char *rcpt,
                    struct pipeline_decision *d, struct buf *why)
{
    struct buf addr, err;
    struct store_hits hits;
    struct policy_decision pd;
    uint32_t group =
        opts && opts->asm_group_id > 0 ? (uint32_t)opts->asm_group_id : STORE_ALL_GROUPS;
    int rc = 0;

    buf_init(&addr, 64);
    buf_init(&err, 64);
    store_hits_init(&hits);
    memset(d, 0, sizeof(*d));
    if (own_address(p, rcpt)) {
        d->action = POLICY_DELIVER;
        d->own = 1;
    } else if (address_normalize(rcpt, &addr, &err) < 0)
        rc = buf_error(why, "<%s>: %s", rcpt, buf_str(&err));
    else if (store_lookup(p->store, tenant, buf_str(&addr), group, &hits, &err) < 0)
        rc = buf_error(why, "cannot look <%s> up: %s", rcpt, buf_str(&err));
    else {
        policy_decide(&hits, opts, tenant_filters(p, tenant)->bounce_drops, &pd);
        d->action = pd.action;
        d->reason = pd.reason;
        d->group = pd.group;
        d->allowed = pd.allowed;
        d->bypassed = pd.bypassed;
    }
    store_hits_free(&hits);
    buf_release(&addr);
    buf_release(&err);
    return rc;
}

/* needs_unsubscribe - does this copy carry unsubscribe headers? */
static int needs_unsubscribe(const struct pipeline_copy *c)
{
    return c->group != 0 ||
           (c->opts && smtpapi_is_on(c->opts->filters.subscriptiontrack.enable));
}

/* The event fields a sender's unique_args may never set (SendGrid's rule). */
static const char *const reserved_fields[] = {
    "asm_group_id", "attempt", "category",  "email",       "event",
    "ip",           "reason",  "response",  "sg_event_id", "sg_message_id",
    "smtp-id",      "status",  "tenant",    "timestamp",   "tls",
    "type",         "url",     "useragent", NULL,
};

/* reserved - is this an event field of ours? */
static int reserved(const char *key)
{
    for (const char *const *r = reserved_fields; *r; r++)
        if (strcmp(*r, key) == 0)
            return 1;
    return 0;
}

/*
 * copy_meta - what the tracker needs of the message (see pipeline.h) into
 * out (emptied first): the fields its events carry as a JSON object
 * (category, and the unique_args sendguard's own fields leave free, the
 * unique_args left out when that is over PIPELINE_META_MAX bytes), then,
 * when it has asm_groups_to_display, a NUL and their ids ("3,5"); empty
 * when the message has none of it
 */
static void copy_meta(const struct pipeline_copy *c, struct buf *out)
{
    const struct smtpapi_opts *o = c->opts;
    json_t *m;
    char *text = NULL;

    buf_reset(out);
    if (o == NULL)
        return;
    m = json_object();
    if (o->n_categories > 0) {
        json_t *a = json_array();
        for (size_t i = 0; i < o->n_categories; i++)
            json_array_append_new(a, json_string(o->categories[i]));
        json_object_set_new(m, "category", a);
    }
    if (o->unique_args != NULL) {
        const char *k;
        json_t *v;
        json_t *with = json_copy(m);
        json_object_foreach (o->unique_args, k, v)
            if (!reserved(k))
                json_object_set(with, k, v);
        text = json_dumps(with, JSON_COMPACT);
        json_decref(with);
        if (text != NULL && strlen(text) > PIPELINE_META_MAX) {
            free(text); /* too long: the processed event has them */
            text = NULL;
        }
    }
    if (text == NULL && json_object_size(m) > 0)
        text = json_dumps(m, JSON_COMPACT);
    if (text != NULL && strcmp(text, "{}") != 0)
        buf_puts(out, text);
    free(text);
    json_decref(m);
    if (o->n_groups_to_display > 0) {
        buf_putc(out, 0);
        for (size_t i = 0; i < o->n_groups_to_display; i++)
            buf_printf(out, "%s%ld", i ? "," : "", o->groups_to_display[i]);
    }
}

/*
 * make_token - a token of the copy for rcpt (normalised) appended to out:
 * its data the url part (a click's link) and, when meta is not NULL or
 * empty and both fit, a NUL and meta; 0, or -1 with why
 */
static int make_token(struct pipeline *p, const struct pipeline_copy *c, const char *rcpt,
                      enum token_purpose purpose, uint32_t group, const char *url,
                      size_t url_len, const struct buf *meta, struct buf *out,
                      struct buf *why)
{
    struct token t;
    struct buf data, err;
    int rc = 0;

    buf_init(&data, url_len + (meta ? meta->len : 0) + 2);
    buf_init(&err, 64);
    buf_append(&data, url, url_len);
    if (meta != NULL && meta->len > 0 && url_len + 1 + meta->len <= TOKEN_DATA_MAX) {
        buf_putc(&data, 0);
        buf_append(&data, meta->data, meta->len);
    }
    memset(&t, 0, sizeof(t));
    t.purpose = purpose;
    t.group = group;
    t.tenant = (char *)c->tenant;
    t.message = (char *)c->message;
    t.recipient = (char *)rcpt;
    t.data = (unsigned char *)data.data;
    t.data_len = data.len;
    if (token_encode(p->keys, &t, out, &err) < 0)
        rc = buf_error(why, "cannot make a %s token: %s", token_purpose_name(purpose),
                       buf_str(&err));
    buf_release(&data);
    buf_release(&err);
    return rc;
}

/*
 * What every token of one copy shares, made once per copy: the recipient
 * normalised, the message's metadata, and the https unsubscribe token (of
 * the copy's group, else of everything), which List-Unsubscribe and the
 * footer both carry.
 */
struct copy_ids {
    struct buf rcpt, meta, unsub;
};

static void copy_ids_release(struct copy_ids *ids)
{
    buf_release(&ids->rcpt);
    buf_release(&ids->meta);
    buf_release(&ids->unsub);
}

/*
 * copy_ids_make - ids for the copy (released by the caller, also on
 * failure); 0, or -1 with why ("no WHAT token key", an address that is not
 * one, a token that cannot be made)
 */
static int copy_ids_make(struct pipeline *p, const struct pipeline_copy *c,
                         const char *what, struct copy_ids *ids, struct buf *why)
{
    struct buf err;
    int rc;

    buf_init(&ids->rcpt, 64);
    buf_init(&ids->meta, 64);
    buf_init(&ids->unsub, 160);
    if (p->keys == NULL)
        return buf_error(why, "no %s token key: %s", what, buf_str(&p->keys_why));
    buf_init(&err, 64);
    rc = address_normalize(c->rcpt, &ids->rcpt, &err);
    if (rc < 0)
        buf_error(why, "<%s>: %s", c->rcpt, buf_str(&err));
    buf_release(&err);
    if (rc < 0)
        return -1;
    copy_meta(c, &ids->meta);
    return make_token(p, c, buf_str(&ids->rcpt), TOKEN_UNSUBSCRIBE, c->group, NULL, 0,
                      &ids->meta, &ids->unsub, why);
}

/*
 * unsubscribe_fields - List-Unsubscribe (the https URL's token with the
 * message's metadata, the mailto's without: a local part must stay short)
 * and List-Unsubscribe-Post for the copy, appended to out
 */
static int unsubscribe_fields(struct pipeline *p, const struct pipeline_copy *c,
                              const struct copy_ids *ids, struct buf *out,
                              struct buf *why)
{
    struct buf mtok;
    int rc = 0;

    buf_init(&mtok, 160);
    if (ids->meta.len == 0)
        buf_set(&mtok, buf_str(&ids->unsub));
    else if ((rc = make_token(p, c, buf_str(&ids->rcpt), TOKEN_UNSUBSCRIBE, c->group,
                              NULL, 0, NULL, &mtok, why)) < 0)
        goto out;
    /* one URI per line: a token is over 100 characters */
    buf_printf(out, "List-Unsubscribe: <%s/u/%s>,\r\n <mailto:%s+%s@%s>\r\n", p->url_base,
               buf_str(&ids->unsub), p->mailto_local, buf_str(&mtok), p->mailto_domain);
    buf_puts(out, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
out:
    buf_release(&mtok);
    return rc;
}

/*
 * sign - the DKIM signatures of the From domain's keys over msg, appended to
 * sigs (each field ending in CRLF, in the order to prepend them)
 */
static int sign(struct pipeline *p, const char *msg, size_t len, struct buf *sigs,
                int *signed_by, struct buf *why)
{
    size_t body, hlen = header_split(msg, len, &body);
    struct header_field from;
    struct dkim_key *keys[DKIM_KEYS_MAX];
    struct buf value, dom, err;
    int n = 0, rc = 0;

    buf_init(&value, 128);
    buf_init(&dom, 64);
    buf_init(&err, 64);
    if (!header_find(msg, hlen, "From", &from)) {
        msg_warn("a message without From is not signed");
        goto out;
    }
    header_value(&from, &value);
    if (dkim_from_domain(buf_str(&value), &dom, &err) < 0) {
        msg_warn("not signed: From: %s", buf_str(&err));
        goto out;
    }
    if ((n = dkim_keyring_find(p->keyring, buf_str(&dom), keys, &err)) < 0) {
        rc = buf_error(why, "cannot find the DKIM keys of %s: %s", buf_str(&dom),
                       buf_str(&err));
        n = 0;
        goto out;
    }
    if (n == 0) {
        /* no key, no signature: said once per domain, and the mail goes on */
        struct buf line;
        buf_init(&line, 64);
        buf_printf(&line, "\n%s\n", buf_str(&dom));
        pthread_mutex_lock(&p->lock);
        if (memmem(p->unsigned_.data, p->unsigned_.len, line.data, line.len) == NULL) {
            msg_info("no DKIM key for %s: its mail leaves unsigned", buf_str(&dom));
            buf_append(&p->unsigned_, line.data, line.len - 1);
        }
        pthread_mutex_unlock(&p->lock);
        buf_release(&line);
        goto out;
    }
    if (dkim_sign_message(keys, (size_t)n, &p->dkim, msg, len, sigs, &err) < 0) {
        rc = buf_error(why, "cannot sign for %s: %s", buf_str(&dom), buf_str(&err));
        goto out;
    }
    if (signed_by)
        *signed_by = n;
out:
    for (int i = 0; i < n; i++)
        dkim_key_free(keys[i]);
    buf_release(&value);
    buf_release(&dom);
    buf_release(&err);
    return rc;
}

/* tracking - does a filter of this copy rewrite its text? */
static int tracking(const struct pipeline_copy *c)
{
    return c->opts && filters_track(&c->opts->filters);
}

/* The tokens of one copy's URLs. */
struct copy_urls {
    struct pipeline *p;
    const struct pipeline_copy *c;
    const struct copy_ids *ids;
    struct track_env env;
    struct track_count n;
    struct buf unsub, global, prefs, open;
};

/* url - p->url_base/KIND/TOKEN for the copy into out; 0 or -1 */
static int url(struct copy_urls *u, enum token_purpose purpose, uint32_t group,
               const char *data, size_t dlen, const char *kind, struct buf *out,
               struct buf *why)
{
    buf_printf(out, "%s/%s/", u->p->url_base, kind);
    return make_token(u->p, u->c, buf_str(&u->ids->rcpt), purpose, group, data, dlen,
                      &u->ids->meta, out, why);
}

static int click_url(void *ctx, const char *link, size_t len, struct buf *out,
                     struct buf *why)
{
    struct copy_urls *u = ctx;

    if (len > TOKEN_DATA_MAX)
        return buf_error(why, "a link of %zu bytes is over the %d a token holds", len,
                         TOKEN_DATA_MAX);
    return url(u, TOKEN_CLICK, u->c->group, link, len, "c", out, why);
}

static int rewrite_part(const struct mime_part *part, const struct buf *dec,
                        struct buf *next, void *ctx, struct buf *why)
{
    struct copy_urls *u = ctx;
    const struct smtpapi_filters *f = &u->c->opts->filters;

    if (strcmp(part->type, "text") != 0 || part->attachment)
        return 0;
    u->env.charset = part->charset;
    if (strcmp(part->subtype, "html") == 0)
        return track_html(f, &u->env, dec->data, dec->len, next, &u->n, why);
    if (strcmp(part->subtype, "plain") == 0)
        return track_text(f, &u->env, dec->data, dec->len, next, &u->n, why);
    return 0;
}

/*
 * track_copy - the copy's text parts with its tracking filters applied (its
 * links through the tracker, the pixel, the footers: lib/track), msg
 * rewritten in place, and whether that changed it to *changed; 0, or -1
 * with why
 */
static int track_copy(struct pipeline *p, const struct pipeline_copy *c,
                      const struct copy_ids *ids, struct buf *msg, int *changed,
                      struct buf *why)
{
    struct copy_urls u;
    struct buf out;
    int rc = -1;

    memset(&u, 0, sizeof(u));
    buf_init(&out, msg->len + msg->len / 4 + 4096);
    buf_init(&u.unsub, 160);
    buf_init(&u.global, 160);
    buf_init(&u.prefs, 160);
    buf_init(&u.open, 160);
    u.p = p;
    u.c = c;
    u.ids = ids;
    buf_printf(&u.unsub, "%s/u/%s", p->url_base, buf_str(&ids->unsub));
    if (url(&u, TOKEN_UNSUBSCRIBE, 0, NULL, 0, "u", &u.global, why) < 0 ||
        url(&u, TOKEN_PREFERENCES, c->group, NULL, 0, "p", &u.prefs, why) < 0 ||
        url(&u, TOKEN_OPEN, c->group, NULL, 0, "o", &u.open, why) < 0)
        goto out;
    u.env.tracker = p->url_base;
    u.env.unsub_url = u.unsub.data;
    u.env.global_url = u.global.data;
    u.env.prefs_url = u.prefs.data;
    u.env.open_url = u.open.data;
    u.env.click = click_url;
    u.env.ctx = &u;
    if (mime_rewrite(msg->data, msg->len, rewrite_part, &u, &out, changed, why) < 0)
        goto out;
    if (*changed) { /* the rewrite becomes msg, msg's storage is released below */
        struct buf was = *msg;
        *msg = out;
        out = was;
    }
    rc = 0;
out:
    buf_release(&out);
    buf_release(&u.unsub);
    buf_release(&u.global);
    buf_release(&u.prefs);
    buf_release(&u.open);
    return rc;
}

/*
 * build - the copy before signing into out (emptied first): the header
 * without X-SMTPAPI (and without the application's unsubscribe fields when
 * ours replace them), our fields, the body (rewritten by the tracking
 * filters); our fields also to added (if not NULL), whether the
 * application's were left out to *drop_own, whether tracking changed the
 * body to *body_changed
 */
static int build(struct pipeline *p, const struct pipeline_copy *c, const char *msg,
                 size_t len, struct buf *out, struct buf *added, int *drop_own,
                 int *body_changed, struct buf *why)
{
    size_t body, hlen = header_split(msg, len, &body), pos = 0, mark;
    struct header_field f;
    struct copy_ids ids;
    int add = needs_unsubscribe(c), own = 0, track = tracking(c), rc = 0;

    buf_reset(out);
    *drop_own = 0;
    *body_changed = 0;
    if (add && p->keep_existing) {
        own = header_find(msg, hlen, "List-Unsubscribe", &f);
        add = !own;
    }
    while (header_next(msg, hlen, &pos, &f)) {
        if (header_is(&f, PIPELINE_SMTPAPI_FIELD))
            continue;
        if (add && (header_is(&f, "List-Unsubscribe") ||
                    header_is(&f, "List-Unsubscribe-Post"))) {
            *drop_own = 1; /* ours replace the application's */
            continue;
        }
        buf_append(out, f.start, f.len);
    }
    if ((add || track) &&
        (rc = copy_ids_make(p, c, add ? "unsubscribe" : "tracking", &ids, why)) < 0)
        goto out;
    mark = out->len;
    if (add && (rc = unsubscribe_fields(p, c, &ids, out, why)) < 0)
        goto out;
    if (added)
        buf_append(added, out->data + mark, out->len - mark);
    buf_append(out, msg + hlen, len - hlen);
    if (track)
        rc = track_copy(p, c, &ids, out, body_changed, why);
out:
    if (add || track)
        copy_ids_release(&ids);
    return rc;
}

/* pipeline_personalise - see pipeline.h */
int pipeline_personalise(struct pipeline *p, const struct pipeline_copy *c,
                         const char *msg, size_t len, struct buf *out, int *signed_by,
                         struct buf *why)
{
    struct buf sigs;
    int drop_own, body_changed, rc;

    if (signed_by)
        *signed_by = 0;
    if (build(p, c, msg, len, out, NULL, &drop_own, &body_changed, why) < 0)
        return -1;
    buf_init(&sigs, 1024);
    if ((rc = sign(p, out->data, out->len, &sigs, signed_by, why)) == 0 && sigs.len > 0) {
        buf_append(&sigs, out->data, out->len);
        buf_reset(out);
        buf_append(out, sigs.data, sigs.len);
    }
    buf_release(&sigs);
    return rc;
}

/* pipeline_changes - see pipeline.h */
int pipeline_changes(struct pipeline *p, const struct pipeline_copy *c, const char *msg,
                     size_t len, struct pipeline_change *ch, struct buf *why)
{
    struct buf copy;
    int rc;

    buf_reset(&ch->added);
    buf_reset(&ch->sigs);
    ch->signed_by = 0;
    buf_init(&copy, len + 1024);
    buf_reset(&ch->body);
    rc = build(p, c, msg, len, &copy, &ch->added, &ch->drop_own, &ch->body_changed, why);
    if (rc == 0)
        rc = sign(p, copy.data, copy.len, &ch->sigs, &ch->signed_by, why);
    if (rc == 0 && ch->body_changed) {
        size_t body;
        header_split(copy.data, copy.len, &body);
        buf_append(&ch->body, copy.data + body, copy.len - body);
    } else {
        ch->body_changed = 0;
    }
    buf_release(&copy);
    return rc;
}

/* mark_data - what a marker's MAC covers: its time and the recipient */
static int mark_data(const char *rcpt, int64_t t, struct buf *data, struct buf *why)
{
    struct buf addr, key;
    int rc;

    buf_init(&addr, 64);
    buf_init(&key, 64);
    if ((rc = address_normalize(rcpt, &addr, why)) == 0) {
        address_key(buf_str(&addr), &key); /* as the lists compare addresses */
        buf_setf(data, "sendguard copy\n%" PRId64 "\n%s", t, buf_str(&key));
    }
    buf_release(&addr);
    buf_release(&key);
    return rc;
}

/* pipeline_mark - see pipeline.h */
int pipeline_mark(struct pipeline *p, const char *rcpt, int64_t now, struct buf *out,
                  struct buf *why)
{
    struct buf data;

    if (p->keys == NULL)
        return buf_error(why, "no token key for the copy's marker: %s",
                         buf_str(&p->keys_why));
    buf_init(&data, 128);
    if (mark_data(rcpt, now, &data, why) < 0) {
        buf_release(&data);
        return -1;
    }
    buf_printf(out, "%s: t=%" PRId64 "; m=", PIPELINE_MARK_FIELD, now);
    token_mac(p->keys, data.data, data.len, out);
    buf_puts(out, "\r\n");
    buf_release(&data);
    return 0;
}

/* pipeline_has_return_path - see pipeline.h */
int pipeline_has_return_path(const struct pipeline *p, const char *tenant)
{
    if (tenant)
        return tenant_filters(p, tenant)->rp_local != NULL;
    for (size_t i = 0; i < p->ntfilters; i++)
        if (p->tfilters[i].rp_local)
            return 1;
    return 0;
}

/* pipeline_return_path - see pipeline.h */
int pipeline_return_path(struct pipeline *p, const char *tenant, const char *message,
                         const char *rcpt, struct buf *out, struct buf *why)
{
    const struct tenant_filters *tf = tenant_filters(p, tenant);
    struct pipeline_copy c;
    struct buf addr, err;
    int rc = 1;

    if (tf->rp_local == NULL)
        return 0;
    if (p->keys == NULL)
        return buf_error(why, "no return-path token key: %s", buf_str(&p->keys_why));
    buf_init(&addr, 64);
    buf_init(&err, 64);
    if (rcpt && address_normalize(rcpt, &addr, &err) < 0)
        rc = buf_error(why, "<%s>: %s", rcpt, buf_str(&err));
    memset(&c, 0, sizeof(c));
    c.tenant = tenant;
    c.message = message;
    buf_reset(out);
    buf_printf(out, "%s+", tf->rp_local);
    if (rc == 1 && make_token(p, &c, rcpt ? buf_str(&addr) : NULL, TOKEN_RETURN_PATH, 0,
                              NULL, 0, NULL, out, why) < 0)
        rc = -1;
    if (rc == 1)
        buf_printf(out, "@%s", tf->rp_domain);
    else
        buf_reset(out);
    buf_release(&addr);
    buf_release(&err);
    return rc;
}

/* pipeline_mark_check - see pipeline.h */
int pipeline_mark_check(struct pipeline *p, const char *rcpt, const char *value,
                        size_t len, int64_t now)
{
    char text[128], *end;
    const char *m;
    long long t;
    struct buf data, err;
    int ok = 0;

    if (p->keys == NULL || len >= sizeof(text))
        return 0;
    memcpy(text, value, len);
    text[len] = 0;
    m = text + strspn(text, " \t");
    if (strncmp(m, "t=", 2) != 0)
        return 0;
    errno = 0;
    t = strtoll(m + 2, &end, 10);
    if (errno || end == m + 2 || strncmp(end, "; m=", 4) != 0 || t > now + 300 ||
        now - t > PIPELINE_MARK_MAX_AGE)
        return 0; /* malformed, from the future (beyond clock skew), or too old */
    m = end + 4;
    buf_init(&data, 128);
    buf_init(&err, 64);
    if (mark_data(rcpt, (int64_t)t, &data, &err) == 0)
        ok = token_mac_check(p->keys, data.data, data.len, m, strcspn(m, " \t\r\n"));
    buf_release(&data);
    buf_release(&err);
    return ok;
}

/*
 * default_group - the tenant's default group, from a cache that holds while
 * the store's generation does (any write moves it): no store read per
 * message.  0, or -1 with why.
 */
static int default_group(struct pipeline *p, const char *tenant, uint32_t *group,
                         struct buf *why)
{
    uint64_t gen = store_generation(p->store);
    int rc = 0;

    pthread_mutex_lock(&p->lock);
    if (gen != p->defaults_gen) {
        for (size_t i = 0; i < p->ndefaults; i++)
            myfree(p->defaults[i].tenant);
        p->ndefaults = 0;
        p->defaults_gen = gen;
    }
    for (size_t i = 0; i < p->ndefaults; i++)
        if (strcmp(p->defaults[i].tenant, tenant) == 0) {
            *group = p->defaults[i].group;
            pthread_mutex_unlock(&p->lock);
            return 0;
        }
    if ((rc = store_default_group(p->store, tenant, group, why)) == 0) {
        p->defaults =
            mygrow(p->defaults, &p->capdefaults, p->ndefaults, sizeof(*p->defaults));
        p->defaults[p->ndefaults].tenant = mystrdup(tenant);
        p->defaults[p->ndefaults++].group = *group;
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

/* pipeline_may_change - see pipeline.h */
int pipeline_may_change(struct pipeline *p, const char *tenant, const char *from_addr)
{
    struct dkim_key *keys[DKIM_KEYS_MAX];
    struct buf dom, addr, err;
    uint32_t group = 0;
    int n, rc = 1;

    buf_init(&dom, 64);
    buf_init(&addr, 64);
    buf_init(&err, 64);
    if (from_addr == NULL || address_normalize(from_addr, &addr, &err) < 0 ||
        dkim_domain_normalize(address_domain(buf_str(&addr)), &dom, &err) < 0)
        goto out; /* cannot tell: assume it may */
    if ((n = dkim_keyring_find(p->keyring, buf_str(&dom), keys, &err)) != 0) {
        for (int i = 0; i < n; i++)
            dkim_key_free(keys[i]);
        goto out; /* a key signs it (or the store cannot say) */
    }
    if (default_group(p, tenant, &group, &err) < 0 || group != 0)
        goto out; /* the tenant's default group: unsubscribe headers */
    if (tenant_filters(p, tenant)->tracks)
        goto out; /* tracking rewrites the body */
    rc = 0;
out:
    buf_release(&dom);
    buf_release(&addr);
    buf_release(&err);
    return rc;
}

/* pipeline_per_recipient - see pipeline.h */
int pipeline_per_recipient(const struct pipeline *p, const struct pipeline_copy *c,
                           const char *msg, size_t len)
{
    size_t body, hlen = header_split(msg, len, &body);
    struct header_field f;

    if (tracking(c))
        return 1; /* its URLs name the recipient */
    if (!needs_unsubscribe(c))
        return 0;
    return !(p->keep_existing && header_find(msg, hlen, "List-Unsubscribe", &f));
}

/* pipeline_meta_split - see pipeline.h */
int pipeline_meta_split(const unsigned char *data, size_t len, struct pipeline_meta *m,
                        struct buf *why)
{
    const char *p = (const char *)data, *end = p + len, *nul;

    memset(m, 0, sizeof(*m));
    m->url = p ? p : "";
    if (p == NULL)
        return 0;
    nul = memchr(p, 0, len);
    m->url_len = nul ? (size_t)(nul - p) : len;
    if (nul == NULL)
        return 0;
    m->fields = nul + 1;
    nul = memchr(m->fields, 0, (size_t)(end - m->fields));
    m->fields_len = (size_t)((nul ? nul : end) - m->fields);
    if (m->fields_len > 0 &&
        (m->fields_len < 2 || m->fields[0] != '{' || m->fields[m->fields_len - 1] != '}'))
        return buf_error(why, "token metadata: its fields are not a JSON object");
    if (nul == NULL)
        return 0;
    m->groups = nul + 1;
    m->groups_len = (size_t)(end - m->groups);
    if (m->groups_len == 0 || strspn(m->groups, "0123456789,") < m->groups_len ||
        memchr(m->groups, 0, m->groups_len) != NULL)
        return buf_error(why, "token metadata: bad groups to display");
    return 0;
}

/* pipeline_meta_groups - see pipeline.h */
size_t pipeline_meta_groups(const struct pipeline_meta *m, uint32_t *ids, size_t max)
{
    const char *p = m->groups, *end = m->groups + m->groups_len;
    size_t n = 0;

    while (p && p < end && n < max) {
        unsigned long long v = 0;

        for (; p < end && *p != ','; p++)
            v = v * 10 + (unsigned long long)(*p - '0');
        if (v > 0 && v <= UINT32_MAX)
            ids[n++] = (uint32_t)v;
        p++; /* past the comma */
    }
    return n;
}

/* pipeline_event - see pipeline.h */
void pipeline_event(const struct smtpapi_opts *opts, uint32_t group, json_t *ev)
{
    if (group != 0)
        json_object_set_new(ev, "asm_group_id", json_integer(group));
    if (opts == NULL)
        return;
    if (opts->n_categories > 0) {
        json_t *cats = json_array();
        for (size_t i = 0; i < opts->n_categories; i++)
            json_array_append_new(cats, json_string(opts->categories[i]));
        json_object_set_new(ev, "category", cats);
    }
    if (opts->unique_args != NULL) {
        /* SendGrid puts unique_args at the top level, never over its fields */
        const char *k;
        json_t *v;
        json_object_foreach (opts->unique_args, k, v) {
            if (!reserved(k) && json_object_get(ev, k) == NULL)
                json_object_set(ev, k, v);
        }
    }
}
