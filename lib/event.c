/*
 * event - the append-only event log, see event.h.
 */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "event.h"
#include "fdio.h"
#include "msg.h"
#include "mymalloc.h"
#include "smtpapi.h"
#include "stats.h"
#include "utf8.h"

/* event_day - YYYY-MM-DD (UTC) of a time */
static void event_day(int64_t t, char day[11])
{
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    strftime(day, 11, "%Y-%m-%d", &tm);
}

/*
 * What each thread keeps between events: random bytes for event ids, drawn
 * in batches (a getrandom call per event cost as much as the write), and
 * the day's file it appends to, kept open and used while the path still
 * names it, which is checked (a stat(2)) at most once a second: an open and
 * a close per event cost more than the write, and a stat a third of it.  A
 * forked child starts with an empty batch: parent and child must not hand
 * out the same ids.
 */
#define ID_LEN 22
#define ID_BATCH 32

struct event_thread {
    unsigned char rnd[ID_LEN * ID_BATCH];
    size_t used; /* bytes handed out; sizeof(rnd): empty */
    char *path;  /* the open file's path, NULL: none */
    char *dir;   /* its store directory */
    int64_t day; /* the unix time its day begins */
    int fd;
    dev_t dev;
    ino_t ino;
    time_t checked; /* when the path last named it (CLOCK_MONOTONIC_COARSE) */
};

static pthread_key_t thread_key;
static pthread_once_t thread_once = PTHREAD_ONCE_INIT;
static __thread struct event_thread *this_thread;

static void thread_free(void *p)
{
    struct event_thread *et = p;

    if (et->fd >= 0)
        close(et->fd);
    myfree(et->path);
    myfree(et);
}

static void thread_forked(void)
{
    if (this_thread)
        this_thread->used = sizeof(this_thread->rnd);
}

static void thread_init(void)
{
    pthread_key_create(&thread_key, thread_free);
    pthread_atfork(NULL, NULL, thread_forked);
}

/* thread_state - this thread's (made at its first event) */
static struct event_thread *thread_state(void)
{
    if (this_thread == NULL) {
        pthread_once(&thread_once, thread_init);
        this_thread = mycalloc(1, sizeof(*this_thread));
        this_thread->used = sizeof(this_thread->rnd);
        this_thread->fd = -1;
        pthread_setspecific(thread_key, this_thread);
    }
    return this_thread;
}

/* event_new_id - 22 URL-safe random characters */
static void event_new_id(struct event_thread *et, char id[ID_LEN + 1])
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    if (et->used + ID_LEN > sizeof(et->rnd)) {
        if (getrandom(et->rnd, sizeof(et->rnd), 0) != (ssize_t)sizeof(et->rnd)) {
            struct timespec ts;

            clock_gettime(CLOCK_REALTIME, &ts);
            for (size_t i = 0; i < sizeof(et->rnd); i++)
                et->rnd[i] =
                    (unsigned char)((ts.tv_nsec >> (i % 8)) ^ (getpid() * (i + 1)) ^ i);
        }
        et->used = 0;
    }
    for (size_t i = 0; i < ID_LEN; i++)
        id[i] = abc[et->rnd[et->used + i] & 63];
    et->used += ID_LEN;
    id[ID_LEN] = 0;
}

/* drop_file - close the thread's file */
static void drop_file(struct event_thread *et)
{
    if (et->fd >= 0)
        close(et->fd);
    et->fd = -1;
    myfree(et->path);
    myfree(et->dir);
    et->path = et->dir = NULL;
}

/*
 * day_file - a descriptor appending to the log of ts's day in store_dir:
 * the thread's open one while its path still names that file (checked when
 * a second has passed since the last check), else the file opened (its
 * directory made when missing); -1 with why filled
 */
static int day_file(struct event_thread *et, const char *store_dir, int64_t ts,
                    struct buf *why)
{
    struct timespec now;
    struct stat st;
    struct buf path;
    char day[11];
    int fd;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    if (et->fd >= 0 && ts >= et->day && ts - et->day < 86400 &&
        strcmp(et->dir, store_dir) == 0) {
        if (now.tv_sec == et->checked)
            return et->fd;
        if (stat(et->path, &st) == 0 && st.st_dev == et->dev && st.st_ino == et->ino) {
            et->checked = now.tv_sec;
            return et->fd;
        }
    }
    drop_file(et);
    event_day(ts, day);
    buf_init(&path, 128);
    buf_setf(&path, "%s/events/%s.jsonl", store_dir, day);
    fd = open(buf_str(&path), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0660);
    if (fd < 0 && errno == ENOENT) {
        /* the first event: the directory is made (a system call less for the
         * others), the group's: every process of the sendguard group appends
         * (sgrelay(8)) */
        char *dir = mystrndup(path.data, path.len - strlen(day) - 7);
        if (fd_mkdir_shared(dir) < 0) {
            buf_error(why, "cannot create %s: %s", dir, strerror(errno));
            myfree(dir);
            buf_release(&path);
            return -1;
        }
        myfree(dir);
        fd = open(buf_str(&path), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0660);
    }
    if (fd < 0 || fstat(fd, &st) < 0) {
        buf_error(why, "cannot open %s: %s", buf_str(&path), strerror(errno));
        if (fd >= 0)
            close(fd);
        buf_release(&path);
        return -1;
    }
    et->fd = fd;
    et->path = buf_steal(&path);
    et->dir = mystrdup(store_dir);
    et->day = ts - ts % 86400; /* event times are after 1970 */
    et->dev = st.st_dev;
    et->ino = st.st_ino;
    et->checked = now.tv_sec;
    buf_release(&path);
    return fd;
}

/*
 * append_line - line (len bytes, ending in a newline) appended to the log
 * of the day of time ts; 0, or -1 with why
 */
static int append_line(const char *store_dir, int64_t ts, const char *line, size_t len,
                       struct buf *why)
{
    struct event_thread *et = thread_state();
    int fd;
    ssize_t n;

    if (len > EVENT_LINE_MAX)
        return buf_error(why, "event of %zu bytes is over the limit", len - 1);
    if ((fd = day_file(et, store_dir, ts, why)) < 0)
        return -1;
    while ((n = write(fd, line, len)) < 0 && errno == EINTR)
        ;
    if (n != (ssize_t)len) {
        buf_error(why, "cannot append to %s: %s", et->path,
                  n < 0 ? strerror(errno) : "short write");
        drop_file(et); /* opened afresh next time */
        return -1;
    }
    return 0;
}

/*
 * count - the counters an event recorded adds to (stats.h), for its
 * tenant, day and categories (category: a string, an array of them, or
 * NULL); a counter that cannot be kept is logged, the event stays recorded
 */
static void count(const char *store_dir, int64_t ts, const char *type, const char *tenant,
                  json_t *category, const char *reason, const char *btype, int unique)
{
    enum stats_metric ms[5];
    int64_t n[5];
    const char *cats[SMTPAPI_MAX_CATEGORIES];
    size_t nm = stats_event(type, reason, btype, ms, n), nc = 0;
    struct buf why;

    if (unique && (strcmp(type, "open") == 0 || strcmp(type, "click") == 0)) {
        ms[nm] = type[0] == 'o' ? STATS_UNIQUE_OPENS : STATS_UNIQUE_CLICKS;
        n[nm++] = 1;
    }
    if (nm == 0)
        return;
    if (json_is_string(category))
        cats[nc++] = json_string_value(category);
    else if (json_is_array(category))
        for (size_t i = 0; i < json_array_size(category) && nc < SMTPAPI_MAX_CATEGORIES;
             i++)
            if (json_is_string(json_array_get(category, i)))
                cats[nc++] = json_string_value(json_array_get(category, i));
    buf_init(&why, 64);
    if (stats_add(store_dir, NULL, ts, tenant, cats, nc, ms, n, nm, &why) < 0)
        msg_warn("event %s: cannot count it: %s", type, buf_str(&why));
    buf_release(&why);
}

/* event_record - see event.h */
int event_record(const char *store_dir, json_t *ev, struct buf *why)
{
    json_t *ts;
    char id[ID_LEN + 1];
    char *line;
    size_t len;
    int rc;

    if (!json_is_string(json_object_get(ev, "event")))
        return buf_error(why, "an event needs an \"event\" type");
    if (!json_is_string(json_object_get(ev, "email")))
        return buf_error(why, "an event needs an \"email\"");
    /* in its normal form (address.h), as lookups and event queries find it */
    if (*json_string_value(json_object_get(ev, "email"))) {
        struct buf norm, err;

        buf_init(&norm, 64);
        buf_init(&err, 16);
        if (address_normalize(json_string_value(json_object_get(ev, "email")), &norm,
                              &err) == 0)
            json_object_set_new(ev, "email", json_stringn(norm.data, norm.len));
        buf_release(&norm);
        buf_release(&err);
    }
    if (!json_is_integer(ts = json_object_get(ev, "timestamp")))
        json_object_set_new(ev, "timestamp", ts = json_integer((json_int_t)time(NULL)));
    if (!json_is_string(json_object_get(ev, "tenant")))
        json_object_set_new(ev, "tenant", json_string("default"));
    if (!json_is_string(json_object_get(ev, "sg_event_id"))) {
        event_new_id(thread_state(), id);
        json_object_set_new(ev, "sg_event_id", json_string(id));
    }
    line = json_dumps(ev, JSON_COMPACT); /* in the order the fields were set */
    if (line == NULL)
        return buf_error(why, "cannot encode event");
    len = strlen(line);
    line[len] = '\n'; /* replaces the NUL: write len + 1 bytes */
    rc = append_line(store_dir, (int64_t)json_integer_value(ts), line, len + 1, why);
    free(line);
    if (rc == 0)
        count(store_dir, (int64_t)json_integer_value(ts),
              json_string_value(json_object_get(ev, "event")),
              json_string_value(json_object_get(ev, "tenant")),
              json_object_get(ev, "category"),
              json_string_value(json_object_get(ev, "reason")),
              json_string_value(json_object_get(ev, "type")), 0);
    return rc;
}

/*
 * json_str - s (len bytes) as a JSON string: quotes, backslashes and
 * control characters escaped; a string that is not UTF-8 has each byte
 * over 0x7f replaced by U+FFFD, so the line always parses
 */
static void json_str(struct buf *out, const char *s, size_t len)
{
    int valid = utf8_valid(s, len);

    buf_putc(out, '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\') {
            buf_putc(out, '\\');
            buf_putc(out, c);
        } else if (c < 0x20) {
            buf_printf(out, "\\u%04x", c);
        } else if (c >= 0x80 && !valid) {
            buf_puts(out, "\\ufffd");
        } else {
            buf_putc(out, c);
        }
    }
    buf_putc(out, '"');
}

/* put_key - ,"key": */
static void put_key(struct buf *out, const char *key)
{
    buf_puts(out, ",\"");
    buf_puts(out, key);
    buf_puts(out, "\":");
}

/* put_int - v in decimal */
static void put_int(struct buf *out, long long v)
{
    char digits[24];
    size_t n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

    do
        digits[n++] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        buf_putc(out, '-');
    while (n > 0)
        buf_putc(out, digits[--n]);
}

/* event_line_begin - see event.h */
void event_line_begin(struct event_line *l, const char *type, const char *email,
                      const char *tenant)
{
    event_line_begin_at(l, (int64_t)time(NULL), type, email, tenant);
}

/* event_line_begin_at - see event.h */
void event_line_begin_at(struct event_line *l, int64_t ts, const char *type,
                         const char *email, const char *tenant)
{
    char id[ID_LEN + 1];

    buf_init(&l->text, 512);
    l->ts = ts;
    snprintf(l->type, sizeof(l->type), "%s", type);
    snprintf(l->tenant, sizeof(l->tenant), "%s", tenant);
    l->members = l->members_len = 0;
    l->unique = 0;
    event_new_id(thread_state(), id);
    buf_puts(&l->text, "{\"event\":");
    json_str(&l->text, type, strlen(type));
    put_key(&l->text, "email");
    json_str(&l->text, email, strlen(email));
    put_key(&l->text, "tenant");
    json_str(&l->text, tenant, strlen(tenant));
    put_key(&l->text, "timestamp");
    put_int(&l->text, (long long)l->ts);
    put_key(&l->text, "sg_event_id");
    json_str(&l->text, id, ID_LEN);
}

/* event_line_str - see event.h */
void event_line_str(struct event_line *l, const char *key, const char *val, size_t len)
{
    put_key(&l->text, key);
    json_str(&l->text, val, len);
}

/* event_line_int - see event.h */
void event_line_int(struct event_line *l, const char *key, long long v)
{
    put_key(&l->text, key);
    put_int(&l->text, v);
}

/* event_line_members - see event.h */
void event_line_members(struct event_line *l, const char *members, size_t len)
{
    if (len == 0)
        return;
    buf_putc(&l->text, ',');
    l->members = l->text.len;
    l->members_len = len;
    buf_append(&l->text, members, len);
}

/* event_line_end - see event.h */
int event_line_end(const char *store_dir, struct event_line *l, struct buf *why)
{
    int rc;

    buf_puts(&l->text, "}\n");
    rc = append_line(store_dir, l->ts, l->text.data, l->text.len, why);
    if (rc == 0) {
        json_t *cat = NULL, *m = NULL;

        /* the message's categories, from the fields the tracker added */
        if (l->members_len > 0 &&
            memmem(l->text.data + l->members, l->members_len, "\"category\"", 10)) {
            struct buf obj;

            buf_init(&obj, l->members_len + 2);
            buf_putc(&obj, '{');
            buf_append(&obj, l->text.data + l->members, l->members_len);
            buf_putc(&obj, '}');
            if ((m = json_loadb(obj.data, obj.len, 0, NULL)) != NULL)
                cat = json_object_get(m, "category");
            buf_release(&obj);
        }
        count(store_dir, l->ts, l->type, l->tenant, cat, NULL, NULL, l->unique);
        json_decref(m);
    }
    buf_release(&l->text);
    return rc;
}

/* day_cmp - for qsort of day file names, newest first */
static int day_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)b, *(char *const *)a);
}

static int day_cmp_old(const void *a, const void *b)
{
    return -day_cmp(a, b);
}

/* event_match - does a parsed event pass the query? */
static int event_match(json_t *ev, const struct event_query *q)
{
    json_int_t ts = json_integer_value(json_object_get(ev, "timestamp"));
    const char *s;

    if (q->since && ts < q->since)
        return 0;
    if (q->until && ts > q->until)
        return 0;
    if (q->type && ((s = json_string_value(json_object_get(ev, "event"))) == NULL ||
                    strcmp(s, q->type) != 0))
        return 0;
    if (q->email && ((s = json_string_value(json_object_get(ev, "email"))) == NULL ||
                     strcasecmp(s, q->email) != 0))
        return 0;
    if (q->tenant && ((s = json_string_value(json_object_get(ev, "tenant"))) == NULL ||
                      strcmp(s, q->tenant) != 0))
        return 0;
    return 1;
}

/*
 * event_parse_line - one line as an event.  A write cut short (a full disk)
 * leaves a fragment that the next record is appended to: the fragment is
 * counted as skipped and the record after it is still read.
 */
static json_t *event_parse_line(const char *start, const char *end, long long *skipped)
{
    json_error_t jerr;
    json_t *ev = json_loadb(start, (size_t)(end - start), 0, &jerr);

    if (ev && json_is_object(ev))
        return ev;
    json_decref(ev);
    if (skipped)
        (*skipped)++;
    for (const char *p = start + 1; p < end; p++) {
        if (p[0] != '{' || p + 1 >= end || p[1] != '"')
            continue;
        ev = json_loadb(p, (size_t)(end - p), 0, &jerr);
        if (ev && json_is_object(ev))
            return ev;
        json_decref(ev);
    }
    return NULL;
}

static const char empty_day[1];

/*
 * map_day - a day file mapped for reading (len 0 for an empty one), or NULL
 * with why filled; a query reads files of many megabytes: no copy
 */
static const char *map_day(const char *path, size_t *len, struct buf *why)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    void *m;

    *len = 0;
    if (fd < 0 || fstat(fd, &st) < 0) {
        buf_error(why, "cannot read %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    if (st.st_size == 0) {
        close(fd);
        return empty_day;
    }
    m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        buf_error(why, "cannot map %s: %s", path, strerror(errno));
        return NULL;
    }
    *len = (size_t)st.st_size;
    return m;
}

static void unmap_day(const char *data, size_t len)
{
    if (data != empty_day)
        munmap((void *)data, len);
}

/*
 * email_lines - the starts of the lines of data that hold the address as a
 * whole JSON string: "@domain"" compared at each '@' (events hold addresses
 * in their normal form: the domain in lower case), the local part without
 * regard to case; the lines an email query parses, instead of all
 */
static void email_lines(const char *data, size_t len, const char *email,
                        const char ***starts, size_t *n, size_t *cap)
{
    const char *at_q = strrchr(email, '@');
    const char *p = data, *end = data + len, *last = NULL;
    size_t llen = (size_t)(at_q - email);
    struct buf needle;

    *n = 0;
    buf_init(&needle, 64);
    buf_puts(&needle, at_q);
    for (char *c = needle.data; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    buf_putc(&needle, '"');
    /* memchr is quicker than memmem here: one '@' in a line of ~150 bytes */
    while ((p = memchr(p, '@', (size_t)(end - p))) != NULL) {
        if ((size_t)(end - p) >= needle.len && p[1] == needle.data[1] &&
            memcmp(p, needle.data, needle.len) == 0 && (size_t)(p - data) > llen &&
            strncasecmp(p - llen, email, llen) == 0 && p[-(ptrdiff_t)llen - 1] == '"') {
            const char *s = p;

            while (s > data && s[-1] != '\n')
                s--;
            if (s != last) {
                *starts = mygrow(*starts, cap, *n, sizeof(**starts));
                (*starts)[(*n)++] = last = s;
            }
        }
        p++;
    }
    buf_release(&needle);
}

/*
 * emit - one line of the log: parsed and, when it passes the query, handed
 * to fn; 1 when the query is to stop (fn said so, or the limit is reached)
 */
static int emit(const char *start, const char *end, const struct event_query *q,
                event_fn fn, void *ctx, long long *skipped, long long *emitted)
{
    json_t *ev = event_parse_line(start, end, skipped);
    int stop = ev && event_match(ev, q) &&
               (fn(ev, ctx) != 0 || (q->limit && ++*emitted >= q->limit));

    json_decref(ev);
    return stop;
}

/* event_query - see event.h */
int event_query(const char *store_dir, const struct event_query *q, event_fn fn,
                void *ctx, long long *skipped, struct buf *why)
{
    struct buf dirpath, path;
    DIR *dir;
    struct dirent *de;
    char **days = NULL;
    size_t ndays = 0, cap = 0;
    char first[11] = "", last[11] = "";
    long long emitted = 0;
    int rc = 0, stop = 0;
    const char **starts = NULL; /* an email query's lines of one file */
    size_t nstarts = 0, capstarts = 0;

    if (skipped)
        *skipped = 0;
    if (q->since)
        event_day(q->since, first);
    if (q->until)
        event_day(q->until, last);
    buf_init(&dirpath, 128);
    buf_setf(&dirpath, "%s/events", store_dir);
    if ((dir = opendir(buf_str(&dirpath))) == NULL) {
        rc = errno == ENOENT ? 0
                             : buf_error(why, "cannot open %s: %s", buf_str(&dirpath),
                                         strerror(errno));
        buf_release(&dirpath);
        return rc;
    }
    while ((de = readdir(dir)) != NULL) {
        size_t len = strlen(de->d_name);

        if (len != 16 || strcmp(de->d_name + 10, ".jsonl") != 0)
            continue;
        if ((first[0] && strncmp(de->d_name, first, 10) < 0) ||
            (last[0] && strncmp(de->d_name, last, 10) > 0))
            continue;
        days = mygrow(days, &cap, ndays, sizeof(*days));
        days[ndays++] = mystrdup(de->d_name);
    }
    closedir(dir);
    qsort(days, ndays, sizeof(*days), q->oldest_first ? day_cmp_old : day_cmp);
    buf_init(&path, 128);
    for (size_t i = 0; i < ndays && !stop && rc == 0; i++) {
        const char *end, *start, *data;
        size_t len;

        buf_setf(&path, "%s/%s", buf_str(&dirpath), days[i]);
        if ((data = map_day(buf_str(&path), &len, why)) == NULL) {
            rc = -1;
            break;
        }
        if (q->email && strchr(q->email, '@')) {
            /* only the lines that name the address are parsed, newest first */
            email_lines(data, len, q->email, &starts, &nstarts, &capstarts);
            for (size_t k = nstarts; k-- > 0 && !stop;) {
                start = starts[k];
                end = memchr(start, '\n', (size_t)(data + len - start));
                if (end == NULL)
                    end = data + len;
                stop = emit(start, end, q, fn, ctx, skipped, &emitted);
            }
            unmap_day(data, len);
            continue;
        }
        if (q->oldest_first) {
            /* lines in the order they were written */
            for (start = data; start < data + len && !stop; start = end + 1) {
                if ((end = memchr(start, '\n', (size_t)(data + len - start))) == NULL)
                    end = data + len;
                if (end > start)
                    stop = emit(start, end, q, fn, ctx, skipped, &emitted);
            }
            unmap_day(data, len);
            continue;
        }
        /* Lines newest first: walk the file backwards. */
        end = data + len;
        while (end > data && !stop) {
            if (end[-1] == '\n')
                end--;
            start = end;
            while (start > data && start[-1] != '\n')
                start--;
            if (end > start)
                stop = emit(start, end, q, fn, ctx, skipped, &emitted);
            end = start;
        }
        unmap_day(data, len);
    }
    for (size_t i = 0; i < ndays; i++)
        myfree(days[i]);
    myfree(days);
    myfree(starts);
    buf_release(&path);
    buf_release(&dirpath);
    return rc;
}
