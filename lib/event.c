/*
 * event - the append-only event log, see event.h.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "event.h"
#include "fdio.h"
#include "mymalloc.h"

/* event_day - YYYY-MM-DD (UTC) of a time */
static void event_day(int64_t t, char day[11])
{
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    strftime(day, 11, "%Y-%m-%d", &tm);
}

/* event_new_id - 22 URL-safe random characters */
static void event_new_id(char id[23])
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char rnd[22];

    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        for (size_t i = 0; i < sizeof(rnd); i++)
            rnd[i] = (unsigned char)((ts.tv_nsec >> (i % 8)) ^ (getpid() * (i + 1)));
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        id[i] = abc[rnd[i] & 63];
    id[22] = 0;
}

/* event_record - see event.h */
int event_record(const char *store_dir, json_t *ev, struct buf *why)
{
    struct buf path;
    json_t *ts;
    char day[11], id[23];
    char *line;
    size_t len;
    int fd, rc = -1;
    ssize_t n;

    if (!json_is_string(json_object_get(ev, "event")))
        return buf_error(why, "an event needs an \"event\" type");
    if (!json_is_string(json_object_get(ev, "email")))
        return buf_error(why, "an event needs an \"email\"");
    if (!json_is_integer(ts = json_object_get(ev, "timestamp")))
        json_object_set_new(ev, "timestamp", ts = json_integer((json_int_t)time(NULL)));
    if (!json_is_string(json_object_get(ev, "tenant")))
        json_object_set_new(ev, "tenant", json_string("default"));
    if (!json_is_string(json_object_get(ev, "sg_event_id"))) {
        event_new_id(id);
        json_object_set_new(ev, "sg_event_id", json_string(id));
    }
    event_day((int64_t)json_integer_value(ts), day);
    line = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
    if (line == NULL)
        return buf_error(why, "cannot encode event");
    len = strlen(line);
    if (len + 1 > EVENT_LINE_MAX) {
        free(line);
        return buf_error(why, "event of %zu bytes is over the limit", len);
    }
    line[len] = '\n'; /* replaces the NUL: write len + 1 bytes */
    buf_init(&path, 128);
    buf_setf(&path, "%s/events/%s.jsonl", store_dir, day);
    fd = open(buf_str(&path), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0660);
    if (fd < 0 && errno == ENOENT) {
        /* the first event: the directory is made (a system call less for the
         * others), the group's: every process of the sendguard group appends
         * (sgrelay(8)) */
        char *dir = mystrndup(path.data, path.len - strlen(day) - 7);
        if (mkdir(dir, 02770) < 0 && errno != EEXIST) {
            buf_error(why, "cannot create %s: %s", dir, strerror(errno));
            myfree(dir);
            goto out;
        }
        myfree(dir);
        fd = open(buf_str(&path), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0660);
    }
    if (fd < 0) {
        buf_error(why, "cannot open %s: %s", buf_str(&path), strerror(errno));
        goto out;
    }
    while ((n = write(fd, line, len + 1)) < 0 && errno == EINTR)
        ;
    if (n != (ssize_t)(len + 1)) {
        buf_error(why, "cannot append to %s: %s", buf_str(&path),
                  n < 0 ? strerror(errno) : "short write");
        close(fd);
        goto out;
    }
    if (close(fd) < 0) {
        buf_error(why, "cannot append to %s: %s", buf_str(&path), strerror(errno));
        goto out;
    }
    rc = 0;
out:
    buf_release(&path);
    free(line);
    return rc;
}

/* day_cmp - for qsort of day file names, newest first */
static int day_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)b, *(char *const *)a);
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

/* event_query - see event.h */
int event_query(const char *store_dir, const struct event_query *q, event_fn fn,
                void *ctx, long long *skipped, struct buf *why)
{
    struct buf dirpath, path, data;
    DIR *dir;
    struct dirent *de;
    char **days = NULL;
    size_t ndays = 0, cap = 0;
    char first[11] = "", last[11] = "";
    long long emitted = 0;
    int rc = 0, stop = 0;

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
    qsort(days, ndays, sizeof(*days), day_cmp);
    buf_init(&path, 128);
    buf_init(&data, 65536);
    for (size_t i = 0; i < ndays && !stop && rc == 0; i++) {
        char *end, *start;

        buf_setf(&path, "%s/%s", buf_str(&dirpath), days[i]);
        if (fd_read_file(buf_str(&path), &data, why) < 0) {
            rc = -1;
            break;
        }
        /* Lines newest first: walk the file backwards. */
        end = data.data + data.len;
        while (end > data.data && !stop) {
            json_t *ev;

            if (end[-1] == '\n')
                end--;
            start = end;
            while (start > data.data && start[-1] != '\n')
                start--;
            if (end > start) {
                ev = event_parse_line(start, end, skipped);
                if (ev && event_match(ev, q)) {
                    if (fn(ev, ctx) != 0 || (q->limit && ++emitted >= q->limit))
                        stop = 1;
                }
                json_decref(ev);
            }
            end = start;
        }
    }
    for (size_t i = 0; i < ndays; i++)
        myfree(days[i]);
    myfree(days);
    buf_release(&path);
    buf_release(&data);
    buf_release(&dirpath);
    return rc;
}
