/*
 * stats - counters kept as events are recorded (see stats.h).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "conf.h"
#include "fdio.h"
#include "msg.h"
#include "mymalloc.h"
#include "stats.h"

#define MAGIC "SGSTATS1"

struct stats_head {
    char magic[8];
    uint32_t version, slot_size;
    uint64_t nslots; /* appended under the file's flock; read with acquire */
    char pad[40];
};

struct stats_slot {
    char tenant[STATS_TENANT_MAX + 1];
    char category[STATS_CATEGORY_MAX + 1];
    char pad[6];
    int64_t m[STATS_NMETRICS];
};

static const char *const names[STATS_NMETRICS] = {
    "requests",          "processed",    "delivered",         "deferred",
    "bounces",           "blocks",       "bounce_drops",      "spam_reports",
    "spam_report_drops", "unsubscribes", "unsubscribe_drops", "opens",
    "unique_opens",      "clicks",       "unique_clicks",     "invalid_emails"};

/* stats_metric_name - see stats.h */
const char *stats_metric_name(enum stats_metric m)
{
    return (unsigned)m < STATS_NMETRICS ? names[m] : "";
}

/* is_offset - "+HH:MM", "-HHMM": 1 with the seconds east of UTC, or 0 */
static int is_offset(const char *tz, long *secs)
{
    int hh, mm;

    if (tz == NULL || (tz[0] != '+' && tz[0] != '-') ||
        (sscanf(tz + 1, "%2d:%2d", &hh, &mm) != 2 &&
         sscanf(tz + 1, "%2d%2d", &hh, &mm) != 2))
        return 0;
    *secs = (tz[0] == '-' ? -1 : 1) * (hh * 3600L + mm * 60L);
    return 1;
}

static int is_utc(const char *tz)
{
    return tz == NULL || *tz == 0 || strcmp(tz, "UTC") == 0;
}

static char *timezone_; /* stats_set_timezone's, or NULL: UTC */
static int zone_named;  /* the process's TZ is that zone */

/* stats_day - see stats.h */
void stats_day(int64_t ts, const char *tz, char day[11])
{
    time_t t = (time_t)ts;
    struct tm tm;
    long secs;

    if (is_offset(tz, &secs)) {
        t += secs;
        gmtime_r(&t, &tm);
    } else if (!is_utc(tz) && zone_named && timezone_ && strcmp(tz, timezone_) == 0) {
        localtime_r(&t, &tm); /* the process's TZ is that zone */
    } else {
        gmtime_r(&t, &tm);
    }
    strftime(day, 11, "%Y-%m-%d", &tm);
}

/* One day file, mapped by this process. */
struct dayfile {
    char path[4200];
    char day[11];
    int fd;
    struct stats_head *head;
    size_t mapped; /* slots the mapping covers */
    /* the slots found so far: (tenant, category) -> index */
    struct known {
        char *tenant, *category;
        size_t idx;
    } * known;
    size_t nknown, capknown;
};

static size_t file_size(size_t nslots)
{
    return sizeof(struct stats_head) + nslots * sizeof(struct stats_slot);
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct dayfile *days; /* this process's open day files */
static size_t ndays, capdays;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
/*
 * forgotten - in a child: the parent's files are not its own (a flock
 * belongs to the open file description, which a fork shares), so it opens
 * its own; the mappings are dropped, the parent's memory is left alone
 */
static void forgotten(void)
{
    for (size_t i = 0; i < ndays; i++) {
        munmap(days[i].head, file_size(days[i].mapped));
        close(days[i].fd);
    }
    days = NULL; /* the parent's copies, not freed in the child: they are few */
    ndays = capdays = 0;
    /* the seen sets' mappings are shared memory: a child may keep using them */
    pthread_mutex_init(&lock, NULL);
}

static void atfork_register(void)
{
    pthread_atfork(NULL, NULL, forgotten);
}

/* stats_set_timezone - see stats.h */
void stats_set_timezone(const char *tz)
{
    long secs;

    pthread_mutex_lock(&lock);
    if (zone_named) {
        if (!(tz && strcmp(timezone_, tz) == 0))
            msg_warn("stats.timezone: the zone stays %s until a restart", timezone_);
    } else {
        myfree(timezone_);
        timezone_ = is_utc(tz) ? NULL : mystrdup(tz);
        if (timezone_ && !is_offset(timezone_, &secs)) {
            setenv("TZ", timezone_, 1);
            tzset();
            zone_named = 1;
        }
    }
    pthread_mutex_unlock(&lock);
}

/* stats_configure - see stats.h */
void stats_configure(const struct conf *conf)
{
    stats_set_timezone(conf_string(conf, "stats.timezone"));
}

static struct stats_slot *slot_at(struct dayfile *d, size_t i)
{
    return (struct stats_slot *)((char *)d->head + sizeof(struct stats_head)) + i;
}

/* remap - map the file as long as it is now; 0 or -1 with why */
static int remap(struct dayfile *d, struct buf *why)
{
    struct stat st;
    void *m;
    size_t n;

    if (fstat(d->fd, &st) < 0)
        return buf_error(why, "cannot stat %s: %s", d->path, strerror(errno));
    if ((size_t)st.st_size < sizeof(struct stats_head))
        return buf_error(why, "%s is not a counter file", d->path);
    n = ((size_t)st.st_size - sizeof(struct stats_head)) / sizeof(struct stats_slot);
    m = mmap(NULL, file_size(n), PROT_READ | PROT_WRITE, MAP_SHARED, d->fd, 0);
    if (m == MAP_FAILED)
        return buf_error(why, "cannot map %s: %s", d->path, strerror(errno));
    if (d->head)
        munmap(d->head, file_size(d->mapped));
    d->head = m;
    d->mapped = n;
    if (memcmp(d->head->magic, MAGIC, 8) != 0 ||
        d->head->slot_size != sizeof(struct stats_slot))
        return buf_error(why, "%s is not a counter file of this version", d->path);
    return 0;
}

/* day_open - this process's mapping of a day's file, made if missing; NULL with why */
static struct dayfile *day_open(const char *store_dir, const char *day, struct buf *why)
{
    struct dayfile *d;
    char dir[4096];
    struct stat st;

    for (size_t i = 0; i < ndays; i++)
        if (strcmp(days[i].day, day) == 0)
            return &days[i];
    snprintf(dir, sizeof(dir), "%s/stats", store_dir);
    if (fd_mkdir_shared(dir) < 0)
        return buf_error(why, "cannot create %s: %s", dir, strerror(errno)), NULL;
    days = mygrow(days, &capdays, ndays, sizeof(*days));
    d = &days[ndays];
    memset(d, 0, sizeof(*d));
    snprintf(d->path, sizeof(d->path), "%s/%s.cnt", dir, day);
    memcpy(d->day, day, 11);
    if ((d->fd = open(d->path, O_RDWR | O_CREAT | O_CLOEXEC, 0660)) < 0)
        return buf_error(why, "cannot open %s: %s", d->path, strerror(errno)), NULL;
    /* a new file gets its header under the lock, once */
    if (flock(d->fd, LOCK_EX) < 0 || fstat(d->fd, &st) < 0) {
        buf_error(why, "cannot lock %s: %s", d->path, strerror(errno));
        close(d->fd);
        return NULL;
    }
    if (st.st_size == 0) {
        struct stats_head h;

        memset(&h, 0, sizeof(h));
        memcpy(h.magic, MAGIC, 8);
        h.version = 1;
        h.slot_size = sizeof(struct stats_slot);
        if (fd_write(d->fd, &h, sizeof(h)) < 0) {
            buf_error(why, "cannot write %s: %s", d->path, strerror(errno));
            flock(d->fd, LOCK_UN);
            close(d->fd);
            return NULL;
        }
    }
    flock(d->fd, LOCK_UN);
    if (remap(d, why) < 0) {
        close(d->fd);
        return NULL;
    }
    ndays++;
    return d;
}

/* slot_find - the index of (tenant, category) in d, appended if new; -1 with why */
static ssize_t slot_find(struct dayfile *d, const char *tenant, const char *cat,
                         struct buf *why)
{
    size_t n;

    for (size_t i = 0; i < d->nknown; i++)
        if (strcmp(d->known[i].tenant, tenant) == 0 &&
            strcmp(d->known[i].category, cat) == 0)
            return (ssize_t)d->known[i].idx;
    for (int pass = 0; pass < 2; pass++) {
        n = __atomic_load_n(&d->head->nslots, __ATOMIC_ACQUIRE);
        if (n > d->mapped && remap(d, why) < 0)
            return -1;
        for (size_t i = 0; i < n; i++) {
            struct stats_slot *s = slot_at(d, i);

            if (strcmp(s->tenant, tenant) == 0 && strcmp(s->category, cat) == 0) {
                d->known = mygrow(d->known, &d->capknown, d->nknown, sizeof(*d->known));
                d->known[d->nknown].tenant = mystrdup(tenant);
                d->known[d->nknown].category = mystrdup(cat);
                d->known[d->nknown++].idx = i;
                return (ssize_t)i;
            }
        }
        if (pass == 1)
            break;
        /* append it under the lock (and look again: another process may have) */
        if (flock(d->fd, LOCK_EX) < 0)
            return buf_error(why, "cannot lock %s: %s", d->path, strerror(errno));
        n = __atomic_load_n(&d->head->nslots, __ATOMIC_ACQUIRE);
        if (n > d->mapped && remap(d, why) < 0) {
            flock(d->fd, LOCK_UN);
            return -1;
        }
        {
            int found = 0;

            for (size_t i = 0; i < n && !found; i++)
                found = strcmp(slot_at(d, i)->tenant, tenant) == 0 &&
                        strcmp(slot_at(d, i)->category, cat) == 0;
            if (!found) {
                struct stats_slot s;

                memset(&s, 0, sizeof(s));
                snprintf(s.tenant, sizeof(s.tenant), "%s", tenant);
                snprintf(s.category, sizeof(s.category), "%s", cat);
                if (pwrite(d->fd, &s, sizeof(s), (off_t)file_size(n)) !=
                        (ssize_t)sizeof(s) ||
                    remap(d, why) < 0) {
                    if (why->len == 0)
                        buf_error(why, "cannot write %s: %s", d->path, strerror(errno));
                    flock(d->fd, LOCK_UN);
                    return -1;
                }
                __atomic_store_n(&d->head->nslots, n + 1, __ATOMIC_RELEASE);
            }
        }
        flock(d->fd, LOCK_UN);
    }
    return buf_error(why, "%s: the slot of %s/%s vanished", d->path, tenant, cat);
}

/* stats_add - see stats.h */
int stats_add(const char *store_dir, const char *tz, int64_t ts, const char *tenant,
              const char *const *cats, size_t ncats, const enum stats_metric *ms,
              const int64_t *n, size_t nm, struct buf *why)
{
    char day[11];
    struct dayfile *d;
    int rc = 0;

    if (nm == 0)
        return 0;
    pthread_once(&atfork_once, atfork_register);
    pthread_mutex_lock(&lock);
    stats_day(ts, tz ? tz : timezone_, day);
    if ((d = day_open(store_dir, day, why)) == NULL)
        rc = -1;
    for (size_t c = 0; rc == 0 && c <= ncats; c++) {
        const char *cat = c == 0 ? "" : cats[c - 1];
        ssize_t i;
        char cut[STATS_CATEGORY_MAX + 1];

        snprintf(cut, sizeof(cut), "%s", cat);
        if (c > 0 && *cut == 0)
            continue;
        if ((i = slot_find(d, tenant, cut, why)) < 0) {
            rc = -1;
            break;
        }
        for (size_t k = 0; k < nm; k++)
            __atomic_fetch_add(&slot_at(d, (size_t)i)->m[ms[k]], n[k], __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

/* Seen sets: the (message, recipient) pairs that opened or clicked. */

#define SEEN_MAGIC "SGSEEN01"
/* the first set of a day: 512 KiB; each next one twice its predecessor */
#define SEEN_SLOTS_FIRST (1u << 16)
#define SEEN_SLOTS_MAX (1u << 26)

struct seen_head {
    char magic[8];
    uint64_t slots;
    uint64_t used; /* added to atomically */
    char pad[40];
};

struct seenfile {
    char path[4200];
    struct seen_head *head;
    uint64_t *tab;
};

static struct seenfile *seens;
static size_t nseens, capseens;

/* seen_open - one seen file of this many slots mapped (made if missing); NULL with why */
static struct seenfile *seen_open(const char *path, uint64_t slots, struct buf *why)
{
    struct seenfile *f;
    int fd;
    struct stat st;
    size_t size = sizeof(struct seen_head) + slots * sizeof(uint64_t);
    void *m;

    for (size_t i = 0; i < nseens; i++)
        if (strcmp(seens[i].path, path) == 0)
            return &seens[i];
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0660)) < 0)
        return buf_error(why, "cannot open %s: %s", path, strerror(errno)), NULL;
    if (flock(fd, LOCK_EX) < 0 || fstat(fd, &st) < 0) {
        buf_error(why, "cannot lock %s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (st.st_size == 0) {
        struct seen_head h;

        memset(&h, 0, sizeof(h));
        memcpy(h.magic, SEEN_MAGIC, 8);
        h.slots = slots;
        /* sparse: the table takes disk only as it fills */
        if (fd_write(fd, &h, sizeof(h)) < 0 || ftruncate(fd, (off_t)size) < 0) {
            buf_error(why, "cannot write %s: %s", path, strerror(errno));
            flock(fd, LOCK_UN);
            close(fd);
            return NULL;
        }
    } else if ((size_t)st.st_size != size) {
        flock(fd, LOCK_UN);
        close(fd);
        return buf_error(why, "%s is not a seen set of this version", path), NULL;
    }
    flock(fd, LOCK_UN);
    m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return buf_error(why, "cannot map %s: %s", path, strerror(errno)), NULL;
    if (memcmp(((struct seen_head *)m)->magic, SEEN_MAGIC, 8) != 0) {
        munmap(m, size);
        return buf_error(why, "%s is not a seen set", path), NULL;
    }
    seens = mygrow(seens, &capseens, nseens, sizeof(*seens));
    f = &seens[nseens++];
    snprintf(f->path, sizeof(f->path), "%s", path);
    f->head = m;
    f->tab = (uint64_t *)((char *)m + sizeof(struct seen_head));
    return f;
}

/* seen_add - 1 h was not in f and is now, 0 it was, 2 f is too full to take it */
static int seen_add(struct seenfile *f, uint64_t h)
{
    uint64_t mask = f->head->slots - 1;

    for (uint64_t i = h & mask, probes = 0; probes < 64; i = (i + 1) & mask, probes++) {
        uint64_t cur = __atomic_load_n(&f->tab[i], __ATOMIC_ACQUIRE);

        if (cur == h)
            return 0;
        if (cur == 0) {
            if (__atomic_load_n(&f->head->used, __ATOMIC_RELAXED) >
                f->head->slots / 4 * 3)
                return 2;
            if (__atomic_compare_exchange_n(&f->tab[i], &cur, h, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                __atomic_fetch_add(&f->head->used, 1, __ATOMIC_RELAXED);
                return 1;
            }
            if (cur == h) /* another process put it there just now */
                return 0;
        }
    }
    return 2;
}

/* seen_has - is h in f? */
static int seen_has(struct seenfile *f, uint64_t h)
{
    uint64_t mask = f->head->slots - 1;

    for (uint64_t i = h & mask, probes = 0; probes < 64; i = (i + 1) & mask, probes++) {
        uint64_t cur = __atomic_load_n(&f->tab[i], __ATOMIC_ACQUIRE);

        if (cur == h)
            return 1;
        if (cur == 0)
            return 0;
    }
    return 0;
}

/* stats_first - see stats.h */
int stats_first(const char *store_dir, int64_t sent, char kind, const char *tenant,
                const char *message, const char *email, struct buf *why)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    struct buf key;
    uint64_t h = 0;
    char day[11], dir[4096], path[4200];
    int rc = -1;

    /* kind NUL tenant NUL message NUL email, hashed */
    buf_init(&key, 128);
    buf_putc(&key, kind);
    buf_append(&key, tenant, strlen(tenant) + 1);
    buf_append(&key, message ? message : "", strlen(message ? message : "") + 1);
    buf_puts(&key, email);
    rc = EVP_Digest(key.data, key.len, md, NULL, EVP_sha256(), NULL) == 1 ? 0 : -1;
    buf_release(&key);
    if (rc < 0)
        return buf_error(why, "cannot hash an open or click (SHA-256)");
    rc = -1;
    memcpy(&h, md, sizeof(h));
    if (h == 0)
        h = 1; /* 0 marks an empty slot */
    stats_day(sent, NULL, day);
    snprintf(dir, sizeof(dir), "%s/stats", store_dir);
    pthread_once(&atfork_once, atfork_register);
    pthread_mutex_lock(&lock);
    if (fd_mkdir_shared(dir) < 0) {
        buf_error(why, "cannot create %s: %s", dir, strerror(errno));
        goto out;
    }
    /* the chain of this day's sets: in a full one, look; in the last, add */
    for (int n = 0; n < 64; n++) {
        struct seenfile *f;
        uint64_t slots = (uint64_t)SEEN_SLOTS_FIRST << (n < 10 ? n : 10);
        int r;

        if (slots > SEEN_SLOTS_MAX)
            slots = SEEN_SLOTS_MAX;
        snprintf(path, sizeof(path), n ? "%s/seen-%s.%d.set" : "%s/seen-%s.set", dir, day,
                 n);
        if ((f = seen_open(path, slots, why)) == NULL)
            goto out;
        if ((r = seen_add(f, h)) != 2) {
            rc = r;
            goto out;
        }
        if (seen_has(f, h)) {
            rc = 0;
            goto out;
        }
    }
    buf_error(why, "the seen sets of %s are full", day);
out:
    pthread_mutex_unlock(&lock);
    return rc;
}

/* stats_event - see stats.h */
size_t stats_event(const char *event, const char *reason, const char *type,
                   enum stats_metric ms[4], int64_t n[4])
{
    size_t k = 0;

#define ADD(metric, v) (ms[k] = (metric), n[k++] = (v))
    if (strcmp(event, "processed") == 0) {
        ADD(STATS_REQUESTS, 1);
        ADD(STATS_PROCESSED, 1);
    } else if (strcmp(event, "dropped") == 0) {
        const char *r = reason ? reason : "";

        ADD(STATS_PROCESSED, -1);
        if (strcmp(r, "bounce") == 0)
            ADD(STATS_BOUNCE_DROPS, 1);
        else if (strcmp(r, "spam_report") == 0)
            ADD(STATS_SPAM_REPORT_DROPS, 1);
        else if (strcmp(r, "global_unsubscribe") == 0 ||
                 strcmp(r, "group_unsubscribe") == 0)
            ADD(STATS_UNSUBSCRIBE_DROPS, 1);
        else
            ADD(STATS_INVALID_EMAILS, 1);
    } else if (strcmp(event, "delivered") == 0) {
        ADD(STATS_DELIVERED, 1);
    } else if (strcmp(event, "deferred") == 0) {
        ADD(STATS_DEFERRED, 1);
    } else if (strcmp(event, "bounce") == 0) {
        ADD(type && strcmp(type, "blocked") == 0 ? STATS_BLOCKS : STATS_BOUNCES, 1);
    } else if (strcmp(event, "spamreport") == 0) {
        ADD(STATS_SPAM_REPORTS, 1);
    } else if (strcmp(event, "unsubscribe") == 0 ||
               strcmp(event, "group_unsubscribe") == 0) {
        ADD(STATS_UNSUBSCRIBES, 1);
    } else if (strcmp(event, "open") == 0) {
        ADD(STATS_OPENS, 1);
    } else if (strcmp(event, "click") == 0) {
        ADD(STATS_CLICKS, 1);
    }
#undef ADD
    return k;
}

static int day_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* stats_read - see stats.h */
int stats_read(const char *store_dir, const char *first, const char *last,
               const char *tenant, stats_fn fn, void *ctx, struct buf *why)
{
    char dir[4096];
    char **names_ = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct buf path;
    DIR *dh;
    struct dirent *de;

    snprintf(dir, sizeof(dir), "%s/stats", store_dir);
    if ((dh = opendir(dir)) == NULL)
        return errno == ENOENT
                   ? 0
                   : buf_error(why, "cannot open %s: %s", dir, strerror(errno));
    while ((de = readdir(dh)) != NULL) {
        if (strlen(de->d_name) != 14 || strcmp(de->d_name + 10, ".cnt") != 0)
            continue;
        if ((first && strncmp(de->d_name, first, 10) < 0) ||
            (last && strncmp(de->d_name, last, 10) > 0))
            continue;
        names_ = mygrow(names_, &cap, n, sizeof(*names_));
        names_[n++] = mystrndup(de->d_name, 10);
    }
    closedir(dh);
    qsort(names_, n, sizeof(*names_), day_cmp);
    buf_init(&path, 128);
    for (size_t i = 0; i < n && rc == 0; i++) {
        int fd;
        struct stat st;
        const struct stats_head *h;
        size_t ns;

        buf_setf(&path, "%s/%s.cnt", dir, names_[i]);
        if ((fd = open(buf_str(&path), O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0) {
            rc = buf_error(why, "cannot read %s: %s", buf_str(&path), strerror(errno));
            if (fd >= 0)
                close(fd);
            break;
        }
        if ((size_t)st.st_size < sizeof(struct stats_head)) {
            close(fd);
            continue; /* being made */
        }
        h = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (h == MAP_FAILED) {
            rc = buf_error(why, "cannot map %s: %s", buf_str(&path), strerror(errno));
            break;
        }
        if (memcmp(h->magic, MAGIC, 8) != 0 ||
            h->slot_size != sizeof(struct stats_slot)) {
            rc = buf_error(why, "%s is not a counter file of this version",
                           buf_str(&path));
        } else {
            ns = __atomic_load_n(&h->nslots, __ATOMIC_ACQUIRE);
            if (file_size(ns) > (size_t)st.st_size)
                ns = ((size_t)st.st_size - sizeof(*h)) / sizeof(struct stats_slot);
            for (size_t k = 0; k < ns && rc == 0; k++) {
                const struct stats_slot *s =
                    (const struct stats_slot *)((const char *)h + sizeof(*h)) + k;
                struct stats_row row;

                if (tenant && strcmp(s->tenant, tenant) != 0)
                    continue;
                memcpy(row.day, names_[i], 11);
                row.tenant = s->tenant;
                row.category = s->category;
                for (int m = 0; m < STATS_NMETRICS; m++)
                    row.m[m] = __atomic_load_n(&s->m[m], __ATOMIC_RELAXED);
                if (fn(&row, ctx) != 0)
                    rc = 1;
            }
        }
        munmap((void *)h, (size_t)st.st_size);
    }
    for (size_t i = 0; i < n; i++)
        myfree(names_[i]);
    myfree(names_);
    buf_release(&path);
    return rc < 0 ? -1 : 0;
}
