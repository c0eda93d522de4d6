/*
 * stats - sgadmin stats: the hosted services' email statistics, from the
 * counters lib/stats keeps as events are recorded.
 *
 *   sgadmin stats [--start-date D] [--end-date D] [--aggregated-by day|week|month]
 *                 [--category C]... [--all-tenants] [--rebuild]
 *
 * Every period of the range is listed, with zeros where nothing happened;
 * a week starts on Monday and is named by that day, a month by its first.
 * Without --category the figures are all of the tenant's mail; with it,
 * one entry per category.  --rebuild first recomputes every counter from
 * the event log (the counters' files are replaced).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "event.h"
#include "html.h"
#include "mymalloc.h"
#include "smtpapi.h"
#include "stats.h"

#define MAX_CATS 100

struct period {
    char date[11];
    int64_t m[MAX_CATS + 1][STATS_NMETRICS]; /* [0] all mail, [1 + i] category i */
};

struct acc {
    const char *agg; /* "day", "week", "month" */
    const char *const *cats;
    int ncats;
    const char *tenant; /* NULL: every tenant */
    struct period *p;
    size_t n;
};

/* day_time - midnight UTC of a YYYY-MM-DD day */
static int64_t day_time(const char *d)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (sscanf(d, "%4d-%2d-%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday) != 3)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

/* period_of - the period a day falls in, as its date */
static void period_of(const char *day, const char *agg, char out[11])
{
    int64_t t = day_time(day);
    struct tm tm;
    time_t tt;

    if (strcmp(agg, "month") == 0) {
        snprintf(out, 11, "%.7s-01", day);
        return;
    }
    if (strcmp(agg, "week") == 0) {
        tt = (time_t)t;
        gmtime_r(&tt, &tm);
        t -= (int64_t)((tm.tm_wday + 6) % 7) * 86400; /* back to Monday */
    }
    stats_day(t, NULL, out);
}

static struct period *find_period(struct acc *a, const char *date)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->p[i].date, date) == 0)
            return &a->p[i];
    return NULL;
}

static int add_row(const struct stats_row *r, void *ctx)
{
    struct acc *a = ctx;
    char date[11];
    struct period *p;
    int k = -1;

    if (a->ncats == 0) {
        if (r->category[0] == 0)
            k = 0;
    } else {
        for (int i = 0; i < a->ncats; i++)
            if (strcmp(a->cats[i], r->category) == 0)
                k = 1 + i;
    }
    if (k < 0)
        return 0;
    period_of(r->day, a->agg, date);
    if ((p = find_period(a, date)) == NULL)
        return 0; /* outside the range */
    for (int m = 0; m < STATS_NMETRICS; m++)
        p->m[k][m] += r->m[m];
    return 0;
}

static json_t *metrics_json(const int64_t *m)
{
    json_t *o = json_object();

    for (int i = 0; i < STATS_NMETRICS; i++)
        json_object_set_new(o, stats_metric_name((enum stats_metric)i),
                            json_integer(m[i]));
    return o;
}

/*
 * rebuild - every counter again from the event log, oldest first; an open
 * or click is unique by the send day of its message (its processed event's
 * day, as the tracker takes it from the token), else by its own day
 */
struct sent {
    char *message;
    int64_t ts;
};

struct rebuild {
    const char *dir;
    struct buf why;
    long long events;
    int failed;
    struct sent *tab; /* open addressing, by message id */
    size_t cap, used;
};

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int64_t *sent_slot(struct rebuild *rb, const char *message, int add)
{
    if (add && rb->used * 2 >= rb->cap) {
        struct sent *old = rb->tab;
        size_t ocap = rb->cap;

        rb->cap = ocap ? ocap * 2 : 4096;
        rb->tab = mycalloc(rb->cap, sizeof(*rb->tab));
        for (size_t i = 0; i < ocap; i++)
            if (old[i].message) {
                size_t k = str_hash(old[i].message) & (rb->cap - 1);

                while (rb->tab[k].message)
                    k = (k + 1) & (rb->cap - 1);
                rb->tab[k] = old[i];
            }
        myfree(old);
    }
    if (rb->cap == 0)
        return NULL;
    for (size_t k = str_hash(message) & (rb->cap - 1);; k = (k + 1) & (rb->cap - 1)) {
        if (rb->tab[k].message == NULL) {
            if (!add)
                return NULL;
            rb->tab[k].message = mystrdup(message);
            rb->used++;
            return &rb->tab[k].ts;
        }
        if (strcmp(rb->tab[k].message, message) == 0)
            return &rb->tab[k].ts;
    }
}

static int rebuild_event(json_t *ev, void *ctx)
{
    struct rebuild *rb = ctx;
    const char *type = json_string_value(json_object_get(ev, "event"));
    const char *tenant = json_string_value(json_object_get(ev, "tenant"));
    const char *msgid = json_string_value(json_object_get(ev, "sg_message_id"));
    int64_t ts = json_integer_value(json_object_get(ev, "timestamp"));
    json_t *cat = json_object_get(ev, "category");
    const char *cats[SMTPAPI_MAX_CATEGORIES];
    size_t nc = 0, nm;
    enum stats_metric ms[5];
    int64_t n[5];

    if (type == NULL || tenant == NULL)
        return 0;
    nm = stats_event(type, json_string_value(json_object_get(ev, "reason")),
                     json_string_value(json_object_get(ev, "type")), ms, n);
    if (strcmp(type, "processed") == 0 && msgid) {
        int64_t *t = sent_slot(rb, msgid, 1);

        if (*t == 0)
            *t = ts;
    } else if ((strcmp(type, "open") == 0 || strcmp(type, "click") == 0) &&
               json_is_string(json_object_get(ev, "email"))) {
        int64_t *t = msgid ? sent_slot(rb, msgid, 0) : NULL;
        int first =
            stats_first(rb->dir, t ? *t : ts, type[0], tenant, msgid,
                        json_string_value(json_object_get(ev, "email")), &rb->why);

        if (first < 0)
            return rb->failed = 1;
        if (first > 0) {
            ms[nm] = type[0] == 'o' ? STATS_UNIQUE_OPENS : STATS_UNIQUE_CLICKS;
            n[nm++] = 1;
        }
    }
    if (nm == 0)
        return 0;
    if (json_is_string(cat))
        cats[nc++] = json_string_value(cat);
    else if (json_is_array(cat))
        for (size_t i = 0; i < json_array_size(cat) && nc < SMTPAPI_MAX_CATEGORIES; i++)
            if (json_is_string(json_array_get(cat, i)))
                cats[nc++] = json_string_value(json_array_get(cat, i));
    if (stats_add(rb->dir, NULL, ts, tenant, cats, nc, ms, n, nm, &rb->why) < 0)
        return rb->failed = 1;
    rb->events++;
    return 0;
}

/* rebuild - the counters' files removed, then every event counted again */
static int rebuild(struct cli *c, const char *dir)
{
    struct rebuild rb;
    struct event_query q;
    char sdir[4096];
    DIR *dh;
    struct dirent *de;
    long long skipped = 0;
    int rc = 0;

    memset(&rb, 0, sizeof(rb));
    rb.dir = dir;
    buf_init(&rb.why, 128);
    snprintf(sdir, sizeof(sdir), "%s/stats", dir);
    if ((dh = opendir(sdir)) != NULL) {
        while ((de = readdir(dh)) != NULL) {
            size_t l = strlen(de->d_name);
            char path[4400];

            if ((l > 4 && strcmp(de->d_name + l - 4, ".cnt") == 0) ||
                (l > 4 && strcmp(de->d_name + l - 4, ".set") == 0)) {
                snprintf(path, sizeof(path), "%s/%s", sdir, de->d_name);
                if (unlink(path) < 0 && errno != ENOENT) {
                    rc =
                        cli_fail(EX_IOERR, "cannot remove %s: %s", path, strerror(errno));
                    break;
                }
            }
        }
        closedir(dh);
    }
    memset(&q, 0, sizeof(q));
    q.oldest_first = 1;
    if (rc == 0 && event_query(dir, &q, rebuild_event, &rb, &skipped, &rb.why) < 0)
        rc = cli_fail(EX_IOERR, "%s", buf_str(&rb.why));
    else if (rc == 0 && rb.failed)
        rc = cli_fail(EX_IOERR, "%s", buf_str(&rb.why));
    else if (rc == 0 && !c->json)
        fprintf(stderr, "sgadmin: counted %lld events again%s\n", rb.events,
                skipped ? " (some lines of the log did not parse)" : "");
    for (size_t i = 0; i < rb.cap; i++)
        myfree(rb.tab[i].message);
    myfree(rb.tab);
    buf_release(&rb.why);
    return rc;
}

/* The human table's columns. */
static const enum stats_metric shown[] = {
    STATS_REQUESTS,     STATS_DELIVERED,    STATS_BOUNCES, STATS_BLOCKS,
    STATS_SPAM_REPORTS, STATS_UNSUBSCRIBES, STATS_OPENS,   STATS_UNIQUE_OPENS,
    STATS_CLICKS,       STATS_UNIQUE_CLICKS};
static const char *const heads[] = {"REQUESTS", "DELIVERED", "BOUNCES", "BLOCKS",
                                    "SPAM",     "UNSUBS",    "OPENS",   "U.OPENS",
                                    "CLICKS",   "U.CLICKS"};
#define NSHOWN (sizeof(shown) / sizeof(shown[0]))
static const char *const short_heads[] = {"requests", "delivered", "bounces", "blocks",
                                          "spam",     "unsubs",    "opens",   "u. opens",
                                          "clicks",   "u. clicks"};

/* bar - a chart's bar of width w for v of max */
static void bar(int64_t v, int64_t max, int w)
{
    int n = max > 0 ? (int)((v * w + max - 1) / max) : 0;

    for (int i = 0; i < n; i++)
        fputs("\u2588", stdout);
    for (int i = n; i < w; i++)
        putchar(' ');
}

static void human(struct acc *a)
{
    int64_t total[STATS_NMETRICS] = {0};
    int ks = a->ncats ? a->ncats : 1;

    for (int k = 0; k < ks; k++) {
        int idx = a->ncats ? 1 + k : 0;

        if (a->ncats)
            printf("category %s\n", a->cats[k]);
        printf("%-10s", "DATE");
        for (size_t i = 0; i < NSHOWN; i++)
            printf(" %9s", heads[i]);
        printf("\n");
        for (size_t p = 0; p < a->n; p++) {
            printf("%-10s", a->p[p].date);
            for (size_t i = 0; i < NSHOWN; i++)
                printf(" %9lld", (long long)a->p[p].m[idx][shown[i]]);
            printf("\n");
            if (idx == 0 || a->ncats)
                for (int m = 0; m < STATS_NMETRICS; m++)
                    total[m] += a->p[p].m[idx][m];
        }
    }
    printf("%-10s", "TOTAL");
    for (size_t i = 0; i < NSHOWN; i++)
        printf(" %9lld", (long long)total[shown[i]]);
    printf("\n");
    if (total[STATS_DELIVERED] > 0)
        printf(
            "complaint rate: %.3f%% of delivered (the large mailbox providers hold bulk "
            "senders to under 0.3%%)%s\n",
            100.0 * (double)total[STATS_SPAM_REPORTS] / (double)total[STATS_DELIVERED],
            (double)total[STATS_SPAM_REPORTS] > 0.003 * (double)total[STATS_DELIVERED]
                ? ": OVER"
                : "");
    if (isatty(1) && a->ncats == 0) {
        static const enum stats_metric chart[] = {STATS_DELIVERED, STATS_BOUNCES,
                                                  STATS_OPENS, STATS_CLICKS};
        static const char *const cn[] = {"delivered", "bounces", "opens", "clicks"};

        printf("\n");
        for (size_t c = 0; c < 4; c++) {
            int64_t max = 0;

            for (size_t p = 0; p < a->n; p++)
                if (a->p[p].m[0][chart[c]] > max)
                    max = a->p[p].m[0][chart[c]];
            printf("%s (max %lld)\n", cn[c], (long long)max);
            for (size_t p = 0; p < a->n; p++) {
                printf("  %s ", a->p[p].date);
                bar(a->p[p].m[0][chart[c]], max, 40);
                printf(" %lld\n", (long long)a->p[p].m[0][chart[c]]);
            }
        }
    }
}

/* The options stats and report share. */
struct query {
    const char *start, *end, *agg;
    int all, again;
    const char *cats[MAX_CATS];
    int ncats;
    const char *html; /* report: the page's file */
};

/* parse_query - the options (--category may come many times); 0 or a status */
static int parse_query(struct cli *c, int argc, char **argv, struct query *q, int report)
{
    struct cli_opt sopts[] = {
        {"start-date", 1, &q->start, NULL},  {"end-date", 1, &q->end, NULL},
        {"aggregated-by", 1, &q->agg, NULL}, {"all-tenants", 0, NULL, &q->all},
        {"rebuild", 0, NULL, &q->again},     {NULL, 0, NULL, NULL}};
    struct cli_opt ropts[] = {
        {"start-date", 1, &q->start, NULL},  {"end-date", 1, &q->end, NULL},
        {"aggregated-by", 1, &q->agg, NULL}, {"all-tenants", 0, NULL, &q->all},
        {"html", 1, &q->html, NULL},         {NULL, 0, NULL, NULL}};
    char **rest = mycalloc((size_t)argc + 1, sizeof(char *));
    int nrest = 0, rc;

    memset(q, 0, sizeof(*q));
    q->agg = "day";
    for (int i = 0; i < argc; i++) {
        const char *cat = strcmp(argv[i], "--category") == 0 && i + 1 < argc ? argv[++i]
                          : strncmp(argv[i], "--category=", 11) == 0 ? argv[i] + 11
                                                                     : NULL;

        if (cat == NULL) {
            rest[nrest++] = argv[i];
        } else if (report || q->ncats == MAX_CATS) {
            myfree(rest);
            return report ? cli_usage_error(c, "the report is of all mail: no --category")
                          : cli_usage_error(c, "at most %d categories", MAX_CATS);
        } else {
            q->cats[q->ncats++] = cat;
        }
    }
    rc = cli_parse_options(c, nrest, rest, report ? ropts : sopts);
    myfree(rest);
    if (rc != 0)
        return rc;
    if (strcmp(q->agg, "day") != 0 && strcmp(q->agg, "week") != 0 &&
        strcmp(q->agg, "month") != 0)
        return cli_usage_error(c, "--aggregated-by is day, week or month");
    if ((q->end && day_time(q->end) < 0) || (q->start && day_time(q->start) < 0))
        return cli_usage_error(c, "dates are YYYY-MM-DD");
    if (report && q->html == NULL)
        return cli_usage_error(c, "give --html FILE");
    return 0;
}

/*
 * gather - the periods of the range, filled from the counters (a.p
 * allocated); *dir gets the store; 0 or a status
 */
static int gather(struct cli *c, struct query *q, struct acc *a, const char **dir,
                  char first[11], char last[11])
{
    char today[11];
    int64_t t0, t1;
    struct buf why;
    int rc;

    if ((*dir = cli_store_dir(c, &rc)) == NULL)
        return rc;
    /* today in stats.timezone, as the counters' days are */
    stats_day((int64_t)time(NULL), conf_string(c->conf, "stats.timezone"), today);
    t1 = day_time(q->end ? q->end : today);
    t0 = q->start ? day_time(q->start) : t1 - 29 * 86400;
    if (t0 > t1)
        return cli_usage_error(c, "--start-date is after --end-date");
    if ((t1 - t0) / 86400 > 3660)
        return cli_usage_error(c, "at most ten years at once");
    if (q->again && (rc = rebuild(c, *dir)) != 0)
        return rc;
    memset(a, 0, sizeof(*a));
    a->agg = q->agg;
    a->cats = q->cats;
    a->ncats = q->ncats;
    a->tenant = q->all ? NULL : c->tenant;
    /* every period of the range, in order */
    for (int64_t t = t0; t <= t1; t += 86400) {
        char d[11], p[11];

        stats_day(t, NULL, d);
        period_of(d, q->agg, p);
        if (a->n == 0 || strcmp(a->p[a->n - 1].date, p) != 0) {
            a->p = myrealloc(a->p, (a->n + 1) * sizeof(*a->p));
            memset(&a->p[a->n], 0, sizeof(*a->p));
            memcpy(a->p[a->n++].date, p, 11);
        }
    }
    stats_day(t0, NULL, first);
    stats_day(t1, NULL, last);
    buf_init(&why, 128);
    rc = stats_read(*dir, first, last, a->tenant, add_row, a, &why) < 0
             ? cli_fail(EX_IOERR, "%s", buf_str(&why))
             : 0;
    buf_release(&why);
    return rc;
}

/* cmd_stats - see above */
static int cmd_stats(struct cli *c, int argc, char **argv)
{
    struct query q;
    struct acc a;
    const char *dir;
    char first[11], last[11];
    int rc;

    memset(&a, 0, sizeof(a));
    if ((rc = parse_query(c, argc, argv, &q, 0)) != 0)
        return rc;
    if ((rc = gather(c, &q, &a, &dir, first, last)) == 0) {
        if (c->json) {
            json_t *out = json_array();

            for (size_t p = 0; p < a.n; p++) {
                json_t *st = json_array();

                if (q.ncats == 0)
                    json_array_append_new(
                        st, json_pack("{s:o}", "metrics", metrics_json(a.p[p].m[0])));
                for (int k = 0; k < q.ncats; k++)
                    json_array_append_new(st,
                                          json_pack("{s:s,s:s,s:o}", "type", "category",
                                                    "name", q.cats[k], "metrics",
                                                    metrics_json(a.p[p].m[1 + k])));
                json_array_append_new(
                    out, json_pack("{s:s,s:o}", "date", a.p[p].date, "stats", st));
            }
            cli_print_json(out);
        } else {
            human(&a);
        }
    }
    myfree(a.p);
    return rc;
}

/* The report page. */

/* reasons - the bounce reasons of the range, counted */
struct reasons {
    json_t *count; /* reason -> count */
};

static int count_reason(json_t *ev, void *ctx)
{
    struct reasons *r = ctx;
    const char *why = json_string_value(json_object_get(ev, "reason"));
    char key[121];

    snprintf(key, sizeof(key), "%s", why && *why ? why : "(no reason given)");
    json_object_set_new(
        r->count, key,
        json_integer(json_integer_value(json_object_get(r->count, key)) + 1));
    return 0;
}

static void esc(struct buf *h, const char *s)
{
    html_escape(s, strlen(s), 1, h);
}

/* chart - an inline SVG line chart of these metrics over the periods */
static void chart(struct buf *h, const struct acc *a, const enum stats_metric *ms,
                  const char *const *labels, const char *const *colours, size_t nm)
{
    const int W = 720, H = 240, L = 56, R = 12, T = 32, B = 28;
    int64_t max = 1;

    for (size_t k = 0; k < nm; k++)
        for (size_t p = 0; p < a->n; p++)
            if (a->p[p].m[0][ms[k]] > max)
                max = a->p[p].m[0][ms[k]];
    buf_printf(h,
               "<svg viewBox=\"0 0 %d %d\" width=\"100%%\" role=\"img\" "
               "aria-label=\"%s per period\">\n",
               W, H, labels[0]);
    buf_printf(h,
               "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>"
               "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>\n",
               L, T, L, H - B, L, H - B, W - R, H - B);
    buf_printf(h,
               "<text x=\"%d\" y=\"%d\" class=\"tick\" text-anchor=\"end\">%lld</text>",
               L - 6, T + 10, (long long)max);
    buf_printf(h, "<text x=\"%d\" y=\"%d\" class=\"tick\" text-anchor=\"end\">0</text>\n",
               L - 6, H - B);
    if (a->n > 0) {
        buf_printf(h, "<text x=\"%d\" y=\"%d\" class=\"tick\">%s</text>", L, H - 8,
                   a->p[0].date);
        buf_printf(
            h, "<text x=\"%d\" y=\"%d\" class=\"tick\" text-anchor=\"end\">%s</text>\n",
            W - R, H - 8, a->p[a->n - 1].date);
    }
    for (size_t k = 0; k < nm; k++) {
        buf_printf(h,
                   "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                   colours[k]);
        for (size_t p = 0; p < a->n; p++) {
            double x =
                L + (a->n > 1 ? (double)(W - L - R) * (double)p / (double)(a->n - 1)
                              : (double)(W - L - R) / 2);
            double y = (double)(H - B) -
                       (double)(H - B - T) * (double)a->p[p].m[0][ms[k]] / (double)max;

            buf_printf(h, "%.1f,%.1f ", x, y);
        }
        buf_puts(h, "\"/>\n");
        buf_printf(h,
                   "<rect x=\"%d\" y=\"4\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                   "<text x=\"%d\" y=\"13\" class=\"legend\">%s</text>\n",
                   (int)(L + 120 * k), colours[k], (int)(L + 14 + 120 * k), labels[k]);
    }
    buf_puts(h, "</svg>\n");
}

/* rate_chart - the complaint rate per period as bars, and the 0.3 % line */
static void rate_chart(struct buf *h, const struct acc *a)
{
    const int W = 720, H = 160, L = 56, R = 12, T = 12, B = 28;
    double max = 0.5, line;

    for (size_t p = 0; p < a->n; p++) {
        int64_t d = a->p[p].m[0][STATS_DELIVERED];
        double r = d ? 100.0 * (double)a->p[p].m[0][STATS_SPAM_REPORTS] / (double)d : 0;

        if (r > max)
            max = r;
    }
    line = (double)(H - B) - (double)(H - B - T) * 0.3 / max;
    buf_printf(h,
               "<svg viewBox=\"0 0 %d %d\" width=\"100%%\" role=\"img\" "
               "aria-label=\"complaint rate per period\">\n"
               "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>\n",
               W, H, L, H - B, W - R, H - B);
    for (size_t p = 0; p < a->n; p++) {
        int64_t d = a->p[p].m[0][STATS_DELIVERED];
        double r = d ? 100.0 * (double)a->p[p].m[0][STATS_SPAM_REPORTS] / (double)d : 0;
        double bw = (double)(W - L - R) / (double)(a->n ? a->n : 1);
        double y = (double)(H - B) - (double)(H - B - T) * r / max;

        buf_printf(h,
                   "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                   "class=\"%s\"><title>%s: %.3f%%</title></rect>\n",
                   L + bw * (double)p + 1, y, bw > 3 ? bw - 2 : bw, (double)(H - B) - y,
                   r > 0.3 ? "over" : "rate", a->p[p].date, r);
    }
    buf_printf(
        h,
        "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"limit\"/>"
        "<text x=\"%d\" y=\"%.1f\" class=\"tick\" text-anchor=\"end\">0.3%%</text>\n"
        "<text x=\"%d\" y=\"%d\" class=\"tick\" text-anchor=\"end\">%.2f%%</text>\n"
        "</svg>\n",
        L, line, W - R, line, L - 6, line + 4, L - 6, T + 10, max);
}

static int reason_cmp(const void *x, const void *y)
{
    const json_t *const *a = x, *const *b = y;

    return (int)(json_integer_value(json_array_get(*b, 1)) -
                 json_integer_value(json_array_get(*a, 1)));
}

static int group_size(const struct store_group *g, void *ctx)
{
    struct buf *h = ctx;

    buf_puts(h, "<tr><td>group ");
    esc(h, g->name);
    buf_printf(h, " (%u)</td><td class=\"n\">%lld</td></tr>\n", g->id, g->count);
    return 0;
}

/* cmd_report - sgadmin report --html FILE [the stats options]: one page */
static int cmd_report(struct cli *c, int argc, char **argv)
{
    static const enum stats_metric main4[] = {STATS_DELIVERED, STATS_BOUNCES, STATS_OPENS,
                                              STATS_CLICKS};
    static const char *const l4[] = {"delivered", "bounces", "opens", "clicks"};
    static const char *const c4[] = {"#2b6cb0", "#c53030", "#2f855a", "#b7791f"};
    static const struct {
        enum store_list list;
        const char *name;
    } lists[] = {{STORE_BOUNCES, "bounces"},
                 {STORE_SPAM_REPORTS, "spam reports"},
                 {STORE_UNSUBSCRIBES, "global unsubscribes"},
                 {STORE_ALLOW, "allow list"}};
    struct query q;
    struct acc a;
    const char *dir;
    char first[11], last[11];
    int64_t total[STATS_NMETRICS] = {0};
    struct reasons rs;
    struct event_query eq;
    struct buf h, why;
    json_t *sorted;
    const char *key;
    json_t *val;
    int rc;
    FILE *f;

    memset(&a, 0, sizeof(a));
    if ((rc = parse_query(c, argc, argv, &q, 1)) != 0)
        return rc;
    if ((rc = gather(c, &q, &a, &dir, first, last)) != 0) {
        myfree(a.p);
        return rc;
    }
    for (size_t p = 0; p < a.n; p++)
        for (int m = 0; m < STATS_NMETRICS; m++)
            total[m] += a.p[p].m[0][m];
    buf_init(&h, 65536);
    buf_init(&why, 128);
    buf_puts(
        &h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<title>sendguard report</title>\n<style>\n"
        "body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;"
        "padding:0 1em;color:#1a202c}\n"
        "h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}\n"
        ".tiles{display:flex;flex-wrap:wrap;gap:.6em}\n"
        ".tile{border:1px solid #cbd5e0;border-radius:6px;padding:.5em .8em;"
        "min-width:8.5em}\n"
        ".tile b{display:block;font-size:1.35em}\n"
        ".scroll{overflow-x:auto}#reasons td{white-space:normal;"
        "overflow-wrap:anywhere}\n"
        "table{border-collapse:collapse;width:100%;font-size:.9em}td,th{padding:.25em "
        ".45em;border-bottom:1px solid #e2e8f0;text-align:left;white-space:nowrap}\n"
        "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\n"
        "svg .axis{stroke:#718096}svg .tick,svg .legend{font-size:11px;"
        "fill:#4a5568}\n"
        "svg .limit{stroke:#c53030;stroke-dasharray:5 4}svg .rate{fill:#4a5568}"
        "svg .over{fill:#c53030}\n"
        ".over-text{color:#c53030;font-weight:bold}\n"
        "</style></head><body>\n");
    buf_puts(&h, "<h1>sendguard report: ");
    esc(&h, a.tenant ? a.tenant : "all tenants");
    buf_printf(&h, "</h1>\n<p>%s to %s, by %s.</p>\n", first, last, q.agg);
    buf_puts(&h, "<div class=\"tiles\">\n");
    {
        static const enum stats_metric tiles[] = {
            STATS_REQUESTS,     STATS_DELIVERED,    STATS_BOUNCES, STATS_BLOCKS,
            STATS_SPAM_REPORTS, STATS_UNSUBSCRIBES, STATS_OPENS,   STATS_UNIQUE_OPENS,
            STATS_CLICKS,       STATS_UNIQUE_CLICKS};

        for (size_t i = 0; i < sizeof(tiles) / sizeof(tiles[0]); i++)
            buf_printf(&h, "<div class=\"tile\" id=\"%s\">%s<b>%lld</b></div>\n",
                       stats_metric_name(tiles[i]), stats_metric_name(tiles[i]),
                       (long long)total[tiles[i]]);
    }
    {
        double rate = total[STATS_DELIVERED] ? 100.0 * (double)total[STATS_SPAM_REPORTS] /
                                                   (double)total[STATS_DELIVERED]
                                             : 0;

        buf_printf(
            &h,
            "<div class=\"tile\" id=\"complaint_rate\">complaint rate<b%s>%.3f%%</b>"
            "</div>\n</div>\n",
            rate > 0.3 ? " class=\"over-text\"" : "", rate);
        buf_printf(&h,
                   "<p>The large mailbox providers hold bulk senders to a complaint rate "
                   "under 0.3%%%s.</p>\n",
                   rate > 0.3 ? ": <span class=\"over-text\">this is over it</span>"
                              : "");
    }
    buf_puts(&h, "<h2>Delivered, bounces, opens and clicks</h2>\n");
    chart(&h, &a, main4, l4, c4, 4);
    buf_puts(&h, "<h2>Complaint rate</h2>\n");
    rate_chart(&h, &a);
    buf_puts(&h, "<h2>Per period</h2>\n<div class=\"scroll\"><table id=\"periods\">"
                 "<tr><th>date</th>");
    for (size_t i = 0; i < NSHOWN; i++)
        buf_printf(&h, "<th class=\"n\" title=\"%s\">%s</th>",
                   stats_metric_name(shown[i]), short_heads[i]);
    buf_puts(&h, "</tr>\n");
    for (size_t p = 0; p < a.n; p++) {
        buf_printf(&h, "<tr><td>%s</td>", a.p[p].date);
        for (size_t i = 0; i < NSHOWN; i++)
            buf_printf(&h, "<td class=\"n\">%lld</td>", (long long)a.p[p].m[0][shown[i]]);
        buf_puts(&h, "</tr>\n");
    }
    buf_puts(&h, "</table></div>\n");
    /* the top bounce reasons, from the log */
    rs.count = json_object();
    memset(&eq, 0, sizeof(eq));
    eq.since = day_time(first);
    eq.until = day_time(last) + 86399;
    eq.type = "bounce";
    eq.tenant = a.tenant;
    if (event_query(dir, &eq, count_reason, &rs, NULL, &why) < 0)
        rc = cli_fail(EX_IOERR, "%s", buf_str(&why));
    sorted = json_array();
    json_object_foreach (rs.count, key, val)
        json_array_append_new(
            sorted, json_pack("[s,I]", key, (json_int_t)json_integer_value(val)));
    {
        size_t n = json_array_size(sorted);
        json_t **v = mycalloc(n ? n : 1, sizeof(*v));

        for (size_t i = 0; i < n; i++)
            v[i] = json_array_get(sorted, i);
        qsort(v, n, sizeof(*v), reason_cmp);
        buf_puts(&h,
                 "<h2>Top bounce reasons</h2>\n<table id=\"reasons\"><tr><th>reason</th>"
                 "<th class=\"n\">bounces</th></tr>\n");
        for (size_t i = 0; i < n && i < 10; i++) {
            buf_puts(&h, "<tr><td>");
            esc(&h, json_string_value(json_array_get(v[i], 0)));
            buf_printf(&h, "</td><td class=\"n\">%lld</td></tr>\n",
                       (long long)json_integer_value(json_array_get(v[i], 1)));
        }
        if (n == 0)
            buf_puts(&h, "<tr><td>no bounces</td><td></td></tr>\n");
        buf_puts(&h, "</table>\n");
        myfree(v);
    }
    json_decref(sorted);
    json_decref(rs.count);
    /* the lists' sizes, now */
    buf_puts(&h, "<h2>The lists now</h2>\n<table id=\"lists\">\n");
    if (rc == 0 && (rc = cli_open(c, STORE_READ)) == 0) {
        const char *t = a.tenant ? a.tenant : c->tenant;

        for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
            buf_printf(&h, "<tr><td>%s</td><td class=\"n\">%lld</td></tr>\n",
                       lists[i].name, store_count(c->st, t, lists[i].list, 0, &why));
        store_group_list(c->st, t, group_size, &h, &why);
    }
    buf_puts(&h, "</table>\n<p><small>Made by sgadmin report from the counters kept as "
                 "events are recorded.</small></p>\n</body></html>\n");
    if (rc == 0) {
        if ((f = fopen(q.html, "w")) == NULL || fwrite(h.data, 1, h.len, f) != h.len ||
            fclose(f) != 0)
            rc = cli_fail(EX_CANTCREAT, "cannot write %s: %s", q.html, strerror(errno));
        else if (!c->json)
            printf("%s: %zu periods, %lld requests\n", q.html, a.n,
                   (long long)total[STATS_REQUESTS]);
    }
    buf_release(&h);
    buf_release(&why);
    myfree(a.p);
    return rc;
}

const struct cli_verb report_verbs[] = {
    {"", cmd_report,
     "--html FILE [--start-date D] [--end-date D] [--aggregated-by day|week|month] "
     "[--all-tenants]",
     "one self-contained page: the statistics, charts, top bounce reasons, the lists"},
    {NULL, NULL, NULL, NULL},
};

const struct cli_verb stats_verbs[] = {
    {"", cmd_stats,
     "[--start-date D] [--end-date D] [--aggregated-by day|week|month] [--category C]... "
     "[--all-tenants] [--rebuild]",
     "the hosted services' email statistics, per day, week or month"},
    {NULL, NULL, NULL, NULL},
};
