/*
 * dkim_keys - key choice and key cache, see dkim_keys.h.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "address.h"
#include "dkim_keys.h"
#include "msg.h"
#include "mymalloc.h"

/* One key record, and the key parsed from its file. */
struct slot {
    char *domain, *selector, *path;
    struct dkim_key *key; /* NULL: not loaded, or unusable */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime; /* ctime: a chmod counts as a change */
    int tried;                    /* the file as it is now was tried */
    int marked;                   /* still in the store (during a refresh) */
};

struct dkim_keyring {
    struct store *st;
    char *default_domain;
    pthread_mutex_t lock;
    uint64_t gen; /* store generation the slots reflect */
    int loaded;
    struct slot *slots;
    size_t n, cap;
};

/* dkim_keyring_new - see dkim_keys.h */
struct dkim_keyring *dkim_keyring_new(struct store *st, const char *default_domain)
{
    struct dkim_keyring *kr = mycalloc(1, sizeof(*kr));

    kr->st = st;
    kr->default_domain =
        default_domain && *default_domain ? mystrdup(default_domain) : NULL;
    pthread_mutex_init(&kr->lock, NULL);
    return kr;
}

static void slot_free(struct slot *s)
{
    myfree(s->domain);
    myfree(s->selector);
    myfree(s->path);
    dkim_key_free(s->key);
}

/* dkim_keyring_free - see dkim_keys.h */
void dkim_keyring_free(struct dkim_keyring *kr)
{
    if (kr == NULL)
        return;
    for (size_t i = 0; i < kr->n; i++)
        slot_free(&kr->slots[i]);
    myfree(kr->slots);
    myfree(kr->default_domain);
    pthread_mutex_destroy(&kr->lock);
    myfree(kr);
}

/* refresh_one - keep or add the slot of one store record */
static int refresh_one(const struct store_dkim *rec, void *ctx)
{
    struct dkim_keyring *kr = ctx;
    struct slot *s;

    for (size_t i = 0; i < kr->n; i++) {
        s = &kr->slots[i];
        if (strcmp(s->domain, rec->domain) == 0 &&
            strcmp(s->selector, rec->selector) == 0) {
            if (strcmp(s->path, rec->path) != 0) {
                /* the record points elsewhere now: load afresh */
                myfree(s->path);
                s->path = mystrdup(rec->path);
                dkim_key_free(s->key);
                s->key = NULL;
                s->tried = 0;
            }
            s->marked = 1;
            return 0;
        }
    }
    kr->slots = mygrow(kr->slots, &kr->cap, kr->n, sizeof(*kr->slots));
    s = &kr->slots[kr->n++];
    memset(s, 0, sizeof(*s));
    s->domain = mystrdup(rec->domain);
    s->selector = mystrdup(rec->selector);
    s->path = mystrdup(rec->path);
    s->marked = 1;
    return 0;
}

/* refresh - reread the records if the store changed; with the lock */
static int refresh(struct dkim_keyring *kr, struct buf *why)
{
    uint64_t gen = store_generation(kr->st);
    size_t j = 0;

    if (kr->loaded && gen == kr->gen)
        return 0;
    for (size_t i = 0; i < kr->n; i++)
        kr->slots[i].marked = 0;
    if (store_dkim_list(kr->st, NULL, NULL, refresh_one, kr, why) < 0)
        return -1;
    for (size_t i = 0; i < kr->n; i++) {
        if (kr->slots[i].marked)
            kr->slots[j++] = kr->slots[i];
        else
            slot_free(&kr->slots[i]); /* deleted from the store */
    }
    kr->n = j;
    kr->gen = gen;
    kr->loaded = 1;
    return 0;
}

/* slot_key - the slot's key, (re)loaded if its file changed; NULL if unusable */
static struct dkim_key *slot_key(struct slot *s)
{
    struct stat sb;
    struct buf why;

    if (stat(s->path, &sb) < 0) {
        if (s->key || !s->tried)
            msg_warn("DKIM key %s/%s: %s: %s; not signing with it", s->domain,
                     s->selector, s->path, strerror(errno));
        dkim_key_free(s->key);
        s->key = NULL;
        s->tried = 1;
        s->ino = 0;
        return NULL;
    }
    if (s->tried && sb.st_dev == s->dev && sb.st_ino == s->ino && sb.st_size == s->size &&
        sb.st_mtim.tv_sec == s->mtime.tv_sec && sb.st_mtim.tv_nsec == s->mtime.tv_nsec &&
        sb.st_ctim.tv_sec == s->ctime.tv_sec && sb.st_ctim.tv_nsec == s->ctime.tv_nsec)
        return s->key;
    /* new, or changed on disk */
    s->dev = sb.st_dev;
    s->ino = sb.st_ino;
    s->size = sb.st_size;
    s->mtime = sb.st_mtim;
    s->ctime = sb.st_ctim;
    s->tried = 1;
    dkim_key_free(s->key);
    s->key = NULL;
    buf_init(&why, 128);
    if (dkim_key_file_check(s->path, &why) < 0 ||
        (s->key = dkim_key_load(s->path, s->domain, s->selector, &why)) == NULL)
        msg_warn("DKIM key %s/%s: %s; not signing with it", s->domain, s->selector,
                 buf_str(&why));
    buf_release(&why);
    return s->key;
}

/* keys_of - the usable keys of one domain; with the lock */
static int keys_of(struct dkim_keyring *kr, const char *domain,
                   struct dkim_key *keys[DKIM_KEYS_MAX], int *recorded)
{
    int n = 0;

    *recorded = 0;
    for (size_t i = 0; i < kr->n && n < DKIM_KEYS_MAX; i++) {
        struct dkim_key *k;

        if (strcmp(kr->slots[i].domain, domain) != 0)
            continue;
        (*recorded)++;
        if ((k = slot_key(&kr->slots[i])) != NULL)
            keys[n++] = dkim_key_ref(k);
    }
    return n;
}

/* dkim_keyring_find - see dkim_keys.h */
int dkim_keyring_find(struct dkim_keyring *kr, const char *domain,
                      struct dkim_key *keys[DKIM_KEYS_MAX], struct buf *why)
{
    int n = 0, recorded = 0;
    const char *d = domain;

    pthread_mutex_lock(&kr->lock);
    if (refresh(kr, why) < 0) {
        pthread_mutex_unlock(&kr->lock);
        return -1;
    }
    /* the domain, then each parent; the first that has keys decides */
    while (d && *d) {
        n = keys_of(kr, d, keys, &recorded);
        if (recorded)
            break;
        d = strchr(d, '.');
        d = d ? d + 1 : NULL;
    }
    if (!recorded && kr->default_domain)
        n = keys_of(kr, kr->default_domain, keys, &recorded);
    pthread_mutex_unlock(&kr->lock);
    return n;
}

/* dkim_key_file_check - see dkim_keys.h */
int dkim_key_file_check(const char *path, struct buf *why)
{
    return conf_check_secret(path, why);
}

/* dkim_domain_normalize - see dkim_keys.h */
int dkim_domain_normalize(const char *in, struct buf *out, struct buf *why)
{
    struct buf entry, key;
    enum address_kind kind;
    int rc;

    if (*in == '@' || strchr(in, '@'))
        return buf_error(why, "'%s' is a domain with an '@' in it", in);
    buf_init(&entry, 128);
    buf_init(&key, 128);
    buf_setf(&entry, "@%s", in);
    rc = address_parse_entry(buf_str(&entry), &kind, out, &key, why);
    if (rc == 0 && kind != ADDRESS_DOMAIN)
        rc = buf_error(why, "'%s' is not a domain", in);
    if (rc == 0) {
        /* drop the '@' */
        memmove(out->data, out->data + 1, out->len);
        out->len--;
    }
    buf_release(&entry);
    buf_release(&key);
    return rc;
}

/* dkim_from_domain - see dkim_keys.h */
int dkim_from_domain(const char *value, struct buf *domain, struct buf *why)
{
    const char *lt = strchr(value, '<'), *p, *start, *at = NULL;
    struct buf d;
    int rc;

    /* "Name <addr>": the address in brackets; else the first addr-spec */
    p = lt ? lt + 1 : value;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    start = p;
    for (; *p && *p != '>' && *p != ',' && *p != ';' && *p != ' ' && *p != '\t' &&
           *p != '\r' && *p != '\n';
         p++)
        if (*p == '@')
            at = p;
    if (at == NULL || at + 1 == p || at == start)
        return buf_error(why, "no address with a domain in From: %.80s", value);
    buf_init(&d, 128);
    buf_append(&d, at + 1, (size_t)(p - at - 1));
    rc = dkim_domain_normalize(buf_str(&d), domain, why);
    buf_release(&d);
    return rc;
}

/* dkim_selector_check - see dkim_keys.h */
int dkim_selector_check(const char *sel, struct buf *why)
{
    size_t label = 0, len = strlen(sel);

    if (len == 0 || len > 253)
        return buf_error(why, "a selector has 1 to 253 characters");
    for (const char *p = sel; *p; p++) {
        if (*p == '.') {
            if (label == 0 || p[-1] == '-')
                return buf_error(why, "selector '%s' has an empty or bad label", sel);
            label = 0;
            continue;
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '-'))
            return buf_error(
                why, "selector '%s' may hold only letters, digits, '-' and '.'", sel);
        if ((label == 0 && *p == '-') || ++label > 63)
            return buf_error(why, "selector '%s' has a bad label", sel);
    }
    if (label == 0 || sel[len - 1] == '-')
        return buf_error(why, "selector '%s' has an empty or bad label", sel);
    return 0;
}

/* dkim_params_conf - see dkim_keys.h */
int dkim_params_conf(struct dkim_params *p, const struct conf *conf, const char ***names,
                     struct buf *why)
{
    const config_setting_t *list = conf_setting(conf, "dkim.headers");
    int h, b;

    dkim_params_init(p);
    *names = NULL;
    if (conf_dkim_canon(conf_string(conf, "dkim.canonicalization"), &h, &b) < 0)
        return buf_error(why, "dkim.canonicalization is not HEADER/BODY");
    p->header_canon = h ? DKIM_RELAXED : DKIM_SIMPLE;
    p->body_canon = b ? DKIM_RELAXED : DKIM_SIMPLE;
    p->expire = conf_duration(conf, "dkim.expire");
    if (list) {
        int n = config_setting_length(list);

        *names = mycalloc((size_t)n + 1, sizeof(**names));
        int from = 0;

        for (int i = 0; i < n; i++) {
            (*names)[i] = config_setting_get_string_elem(list, (unsigned)i);
            from |= strcasecmp((*names)[i], "From") == 0;
        }
        p->headers = *names;
        if (!from)
            return buf_error(why, "dkim.headers must name From (RFC 6376 5.4)");
    }
    return 0;
}
