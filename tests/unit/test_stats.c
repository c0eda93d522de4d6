/*
 * test_stats - lib/stats: counters per tenant, day, category and metric,
 * added by several processes at once without losing a count.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "event.h"
#include "stats.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/test_stats.XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd);
}

/* the rows read back, summed per (day, tenant, category) into a JSON object */
static int collect(const struct stats_row *r, void *ctx)
{
    char key[512];
    json_t *o = json_object();

    for (int m = 0; m < STATS_NMETRICS; m++)
        if (r->m[m])
            json_object_set_new(o, stats_metric_name((enum stats_metric)m),
                                json_integer(r->m[m]));
    snprintf(key, sizeof(key), "%s/%s/%s", r->day, r->tenant, r->category);
    json_object_set_new(ctx, key, o);
    return 0;
}

static json_t *read_all(const char *first, const char *last, const char *tenant)
{
    json_t *all = json_object();
    struct buf why;

    buf_init(&why, 64);
    if (stats_read(dir, first, last, tenant, collect, all, &why) < 0)
        fail_msg("stats_read: %s", buf_str(&why));
    buf_release(&why);
    return all;
}

static long long metric(json_t *all, const char *key, const char *name)
{
    return json_integer_value(json_object_get(json_object_get(all, key), name));
}

#define T0 1796601600 /* 2026-12-07 00:00:00 UTC */

static void test_days(void **state)
{
    char d[11];

    (void)state;
    stats_day(T0, NULL, d);
    assert_string_equal(d, "2026-12-07");
    stats_day(T0 - 1, "UTC", d);
    assert_string_equal(d, "2026-12-06");
    stats_day(T0 - 3600, "+02:00", d);
    assert_string_equal(d, "2026-12-07");
    stats_day(T0 + 3600, "-0500", d);
    assert_string_equal(d, "2026-12-06");
    stats_day(T0, "Europe/Nowhere", d); /* not an offset: UTC */
    assert_string_equal(d, "2026-12-07");
}

static void test_event_metrics(void **state)
{
    enum stats_metric ms[4];
    int64_t n[4];

    (void)state;
    assert_int_equal(stats_event("processed", NULL, NULL, ms, n), 2);
    assert_int_equal(ms[0], STATS_REQUESTS);
    assert_int_equal(ms[1], STATS_PROCESSED);
    assert_int_equal(stats_event("dropped", "bounce", NULL, ms, n), 2);
    assert_int_equal(ms[0], STATS_PROCESSED);
    assert_int_equal(n[0], -1);
    assert_int_equal(ms[1], STATS_BOUNCE_DROPS);
    assert_int_equal(stats_event("dropped", "group_unsubscribe", NULL, ms, n), 2);
    assert_int_equal(ms[1], STATS_UNSUBSCRIBE_DROPS);
    assert_int_equal(stats_event("dropped", "spam_report", NULL, ms, n), 2);
    assert_int_equal(ms[1], STATS_SPAM_REPORT_DROPS);
    assert_int_equal(stats_event("bounce", NULL, "blocked", ms, n), 1);
    assert_int_equal(ms[0], STATS_BLOCKS);
    assert_int_equal(stats_event("bounce", NULL, "bounce", ms, n), 1);
    assert_int_equal(ms[0], STATS_BOUNCES);
    assert_int_equal(stats_event("group_unsubscribe", NULL, NULL, ms, n), 1);
    assert_int_equal(ms[0], STATS_UNSUBSCRIBES);
    assert_int_equal(stats_event("click", NULL, NULL, ms, n), 1);
    assert_int_equal(ms[0], STATS_CLICKS);
    assert_int_equal(stats_event("unmatched", NULL, NULL, ms, n), 0);
    assert_string_equal(stats_metric_name(STATS_SPAM_REPORT_DROPS), "spam_report_drops");
    assert_string_equal(stats_metric_name(STATS_NMETRICS), "");
}

static void test_add_read(void **state)
{
    const char *cats[] = {"weekly", "promo", ""};
    enum stats_metric ms[] = {STATS_REQUESTS, STATS_PROCESSED};
    int64_t n[] = {1, 1};
    struct buf why;
    json_t *all;

    (void)state;
    buf_init(&why, 64);
    for (int i = 0; i < 5; i++)
        assert_int_equal(stats_add(dir, NULL, T0 + i, "acme", cats, 3, ms, n, 2, &why),
                         0);
    assert_int_equal(stats_add(dir, NULL, T0 + 86400, "acme", cats, 1, ms, n, 2, &why),
                     0);
    assert_int_equal(stats_add(dir, NULL, T0, "beta", NULL, 0, ms, n, 1, &why), 0);
    all = read_all(NULL, NULL, NULL);
    assert_int_equal(metric(all, "2026-12-07/acme/", "requests"), 5);
    assert_int_equal(metric(all, "2026-12-07/acme/weekly", "processed"), 5);
    assert_int_equal(metric(all, "2026-12-07/acme/promo", "requests"), 5);
    assert_int_equal(metric(all, "2026-12-08/acme/weekly", "requests"), 1);
    assert_null(json_object_get(all, "2026-12-08/acme/promo"));
    assert_int_equal(metric(all, "2026-12-07/beta/", "requests"), 1);
    assert_int_equal(metric(all, "2026-12-07/beta/", "processed"),
                     0); /* nm 1: requests only */
    json_decref(all);
    /* a day range and a tenant */
    all = read_all("2026-12-08", "2026-12-08", "acme");
    assert_int_equal(json_object_size(all), 2);
    json_decref(all);
    all = read_all(NULL, NULL, "beta");
    assert_int_equal(json_object_size(all), 1);
    json_decref(all);
    buf_release(&why);
}

/* several processes, each adding in new and old slots: every count is kept */
static void test_processes(void **state)
{
    enum { PROCS = 4, EACH = 20000 };
    pid_t pids[PROCS];
    json_t *all;

    (void)state;
    for (int p = 0; p < PROCS; p++) {
        if ((pids[p] = fork()) == 0) {
            struct buf why;
            enum stats_metric ms[] = {STATS_OPENS};
            int64_t n[] = {1};
            char cat[16];

            buf_init(&why, 64);
            for (int i = 0; i < EACH; i++) {
                const char *cats[] = {cat};

                /* 50 categories, appended by whichever process comes first */
                snprintf(cat, sizeof(cat), "c%d", i % 50);
                if (stats_add(dir, NULL, T0 + 2 * 86400, "acme", cats, 1, ms, n, 1,
                              &why) < 0)
                    _exit(2);
            }
            _exit(0);
        }
        assert_true(pids[p] > 0);
    }
    for (int p = 0; p < PROCS; p++) {
        int st;

        assert_int_equal(waitpid(pids[p], &st, 0), pids[p]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    all = read_all("2026-12-09", "2026-12-09", NULL);
    assert_int_equal(json_object_size(all), 51); /* no slot twice */
    assert_int_equal(metric(all, "2026-12-09/acme/", "opens"), PROCS * EACH);
    for (int c = 0; c < 50; c++) {
        char key[64];

        snprintf(key, sizeof(key), "2026-12-09/acme/c%d", c);
        assert_int_equal(metric(all, key, "opens"), PROCS * EACH / 50);
    }
    json_decref(all);
}

/* the event log's writers count what they record */
static void test_events_counted(void **state)
{
    struct buf why;
    struct event_line l;
    json_t *ev, *all;
    char today[11];

    (void)state;
    buf_init(&why, 64);
    ev = json_pack("{s:s,s:s,s:s,s:[s,s]}", "event", "processed", "email",
                   "a@example.org", "tenant", "gamma", "category", "news", "winter");
    assert_int_equal(event_record(dir, ev, &why), 0);
    json_decref(ev);
    ev = json_pack("{s:s,s:s,s:s,s:s,s:s}", "event", "dropped", "email", "b@example.org",
                   "tenant", "gamma", "reason", "spam_report", "category", "news");
    assert_int_equal(event_record(dir, ev, &why), 0);
    json_decref(ev);
    event_line_begin(&l, "click", "a@example.org", "gamma");
    {
        const char *members = "\"category\":[\"winter\"],\"campaign\":\"w1\"";

        event_line_members(&l, members, strlen(members));
    }
    assert_int_equal(event_line_end(dir, &l, &why), 0);
    stats_day(time(NULL), NULL, today);
    all = read_all(today, today, "gamma");
    {
        char k_all[64], k_news[64], k_winter[64];

        snprintf(k_all, sizeof(k_all), "%s/gamma/", today);
        snprintf(k_news, sizeof(k_news), "%s/gamma/news", today);
        snprintf(k_winter, sizeof(k_winter), "%s/gamma/winter", today);
        assert_int_equal(metric(all, k_all, "requests"), 1);
        assert_int_equal(metric(all, k_all, "processed"), 0); /* 1 - the drop */
        assert_int_equal(metric(all, k_all, "spam_report_drops"), 1);
        assert_int_equal(metric(all, k_all, "clicks"), 1);
        assert_int_equal(metric(all, k_news, "requests"), 1);
        assert_int_equal(metric(all, k_news, "spam_report_drops"), 1);
        assert_int_equal(metric(all, k_winter, "clicks"), 1);
        assert_int_equal(metric(all, k_winter, "processed"), 1);
    }
    json_decref(all);
    buf_release(&why);
}

/* unique opens and clicks: each (message, recipient) once, in any process */
static void test_first(void **state)
{
    struct buf why;
    enum { PROCS = 3, PAIRS = 3000 };
    pid_t pids[PROCS];
    int rd[PROCS], firsts = 0;

    (void)state;
    buf_init(&why, 64);
    assert_int_equal(stats_first(dir, T0, 'o', "acme", "Q1", "a@example.org", &why), 1);
    assert_int_equal(stats_first(dir, T0, 'o', "acme", "Q1", "a@example.org", &why), 0);
    assert_int_equal(stats_first(dir, T0, 'c', "acme", "Q1", "a@example.org", &why), 1);
    assert_int_equal(stats_first(dir, T0, 'o', "acme", "Q2", "a@example.org", &why), 1);
    assert_int_equal(stats_first(dir, T0, 'o', "beta", "Q1", "a@example.org", &why), 1);
    assert_int_equal(stats_first(dir, T0, 'o', "acme", "Q1", "b@example.org", &why), 1);
    /* the same message sent another day is another set: still not twice */
    assert_int_equal(
        stats_first(dir, T0 + 86400, 'o', "acme", "Q1", "a@example.org", &why), 1);
    assert_int_equal(
        stats_first(dir, T0 + 86400, 'o', "acme", "Q1", "a@example.org", &why), 0);
    /* processes racing for the same pairs: one of them is first for each */
    for (int p = 0; p < PROCS; p++) {
        int fd[2];

        assert_int_equal(pipe(fd), 0);
        if ((pids[p] = fork()) == 0) {
            int mine = 0;
            char rcpt[64];

            close(fd[0]);
            for (int i = 0; i < PAIRS; i++) {
                int r;

                snprintf(rcpt, sizeof(rcpt), "r%d@example.org", i);
                if ((r = stats_first(dir, T0 + 2 * 86400, 'c', "acme", "Q9", rcpt,
                                     &why)) < 0)
                    _exit(2);
                mine += r;
            }
            if (write(fd[1], &mine, sizeof(mine)) != sizeof(mine))
                _exit(3);
            _exit(0);
        }
        close(fd[1]);
        rd[p] = fd[0];
    }
    for (int p = 0; p < PROCS; p++) {
        int st, got = 0;

        assert_int_equal(read(rd[p], &got, sizeof(got)), (ssize_t)sizeof(got));
        close(rd[p]);
        firsts += got;
        assert_int_equal(waitpid(pids[p], &st, 0), pids[p]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    assert_int_equal(firsts, PAIRS);
    buf_release(&why);
}

/* a full set is followed by the next: nothing is lost, nothing counted twice */
static void test_first_overflow(void **state)
{
    struct buf why;
    char rcpt[64], path[128];
    int firsts = 0;
    enum { N = 200000 }; /* more than the first two sets (64 Ki, 128 Ki slots) take */

    (void)state;
    buf_init(&why, 64);
    for (int i = 0; i < N; i++) {
        snprintf(rcpt, sizeof(rcpt), "o%d@example.org", i);
        firsts += stats_first(dir, T0 + 5 * 86400, 'o', "acme", "Q", rcpt, &why);
    }
    assert_int_equal(firsts, N);
    snprintf(path, sizeof(path), "%s/stats/seen-2026-12-12.2.set", dir);
    assert_int_equal(access(path, F_OK), 0);
    /* all of them known, in whichever set */
    for (int i = 0; i < N; i += 997) {
        snprintf(rcpt, sizeof(rcpt), "o%d@example.org", i);
        assert_int_equal(stats_first(dir, T0 + 5 * 86400, 'o', "acme", "Q", rcpt, &why),
                         0);
    }
    buf_release(&why);
}

/* a named zone becomes the process's, once; its days follow summer time */
static void test_zone(void **state)
{
    char d[11];
    struct buf why;
    enum stats_metric ms[] = {STATS_OPENS};
    int64_t n[] = {1};
    json_t *all;

    (void)state;
    stats_set_timezone("Europe/Berlin");
    stats_day(T0 - 1800, "Europe/Berlin", d); /* 23:30 UTC is 00:30 CET */
    assert_string_equal(d, "2026-12-07");
    stats_day(1782860400 - 1800, "Europe/Berlin", d); /* 22:30 UTC is 00:30 CEST */
    assert_string_equal(d, "2026-07-01");
    stats_day(T0 - 1800, NULL, d); /* UTC when asked */
    assert_string_equal(d, "2026-12-06");
    /* the writers' counters take the zone's days */
    buf_init(&why, 64);
    assert_int_equal(stats_add(dir, NULL, T0 - 1800, "zoned", NULL, 0, ms, n, 1, &why),
                     0);
    all = read_all("2026-12-07", "2026-12-07", "zoned");
    assert_int_equal(metric(all, "2026-12-07/zoned/", "opens"), 1);
    json_decref(all);
    /* another zone later is refused: the process keeps its TZ */
    stats_set_timezone("America/New_York");
    stats_day(T0 - 1800, "Europe/Berlin", d);
    assert_string_equal(d, "2026-12-07");
    buf_release(&why);
}

/* a file in the stats directory that is no counter file is an error */
static void test_damaged(void **state)
{
    char path[128];
    FILE *f;
    struct buf why;
    json_t *all = json_object();

    (void)state;
    snprintf(path, sizeof(path), "%s/stats/2020-01-01.cnt", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("not a counter file at all, but long enough to have a header ......", f);
    fclose(f);
    buf_init(&why, 64);
    assert_int_equal(
        stats_read(dir, "2020-01-01", "2020-01-01", NULL, collect, all, &why), -1);
    assert_non_null(strstr(buf_str(&why), "not a counter file"));
    buf_release(&why);
    json_decref(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_days),           cmocka_unit_test(test_event_metrics),
        cmocka_unit_test(test_add_read),       cmocka_unit_test(test_processes),
        cmocka_unit_test(test_events_counted), cmocka_unit_test(test_damaged),
        cmocka_unit_test(test_first),          cmocka_unit_test(test_first_overflow),
        cmocka_unit_test(test_zone),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
