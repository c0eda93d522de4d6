/*
 * test_event - the event log: many processes appending at once lose and
 * interleave nothing; queries filter by time, type, address and tenant,
 * newest first; a torn record is skipped and counted, and the record
 * appended after it is still read.
 */
#include "config.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "event.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sg-test-event-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void record(const char *type, const char *email, long long ts, const char *tenant)
{
    json_t *ev = json_pack("{s:s,s:s,s:I}", "event", type, "email", email, "timestamp",
                           (json_int_t)ts);
    struct buf why;

    if (tenant)
        json_object_set_new(ev, "tenant", json_string(tenant));
    /* a long field, so that records are far from tiny */
    json_object_set_new(ev, "reason",
                        json_string("550 5.1.1 <x@example.com>: Recipient "
                                    "address rejected: User unknown in "
                                    "virtual mailbox table"));
    buf_init(&why, 64);
    if (event_record(dir, ev, &why) < 0)
        fail_msg("event_record: %s", buf_str(&why));
    buf_release(&why);
    json_decref(ev);
}

struct tally {
    int n;
    long long last_ts;
    int ordered;
    char first_email[64];
};

static int tally_fn(json_t *ev, void *ctx)
{
    struct tally *t = ctx;
    long long ts = json_integer_value(json_object_get(ev, "timestamp"));

    if (t->n == 0)
        snprintf(t->first_email, sizeof(t->first_email), "%s",
                 json_string_value(json_object_get(ev, "email")));
    if (t->n && ts > t->last_ts)
        t->ordered = 0;
    t->last_ts = ts;
    t->n++;
    assert_non_null(json_string_value(json_object_get(ev, "sg_event_id")));
    return 0;
}

static int query(struct event_query *q, struct tally *t, long long *skipped)
{
    struct buf why;
    int rc;

    memset(t, 0, sizeof(*t));
    t->ordered = 1;
    buf_init(&why, 64);
    rc = event_query(dir, q, tally_fn, t, skipped, &why);
    if (rc < 0)
        fail_msg("event_query: %s", buf_str(&why));
    buf_release(&why);
    return t->n;
}

static void test_concurrent_appenders(void **state)
{
    enum { PROCS = 6, EACH = 3000 };
    struct event_query q = {0, 0, NULL, NULL, NULL, 0, 0};
    struct tally t;
    long long skipped;
    pid_t pids[PROCS];

    (void)state;
    for (int p = 0; p < PROCS; p++) {
        if ((pids[p] = fork()) == 0) {
            char email[64];

            for (int i = 0; i < EACH; i++) {
                snprintf(email, sizeof(email), "p%d-%d@example.com", p, i);
                record(i % 2 ? "delivered" : "processed", email, 1700000000 + i, NULL);
            }
            _exit(0);
        }
    }
    for (int p = 0; p < PROCS; p++) {
        int status;

        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(query(&q, &t, &skipped), PROCS * EACH);
    assert_int_equal(skipped, 0);
    q.type = "delivered";
    assert_int_equal(query(&q, &t, &skipped), PROCS * EACH / 2);
}

static void test_filters_and_order(void **state)
{
    struct event_query q = {0, 0, NULL, NULL, NULL, 0, 0};
    struct tally t;
    long long skipped;

    (void)state;
    record("processed", "a@example.com", 1700000000, NULL); /* 2023-11-14 */
    record("dropped", "b@example.com", 1700086400, NULL);   /* next day */
    record("bounce", "a@example.com", 1700172800, NULL);    /* day after */
    record("bounce", "a@example.com", 1700172900, "acme");
    assert_int_equal(query(&q, &t, &skipped), 4);
    assert_true(t.ordered);
    q.tenant = "default";
    assert_int_equal(query(&q, &t, &skipped), 3);
    assert_string_equal(t.first_email, "a@example.com");
    q.email = "A@example.com";
    assert_int_equal(query(&q, &t, &skipped), 2);
    q.email = NULL;
    q.since = 1700086400;
    q.until = 1700172800;
    assert_int_equal(query(&q, &t, &skipped), 2); /* inclusive bounds */
    q.since = q.until = 0;
    q.type = "bounce";
    assert_int_equal(query(&q, &t, &skipped), 1);
    q.type = NULL;
    q.limit = 2;
    assert_int_equal(query(&q, &t, &skipped), 2);
}

static void test_torn_line_and_errors(void **state)
{
    struct event_query q = {0, 0, NULL, NULL, NULL, 0, 0};
    struct tally t;
    long long skipped;
    char path[128];
    int fd;
    json_t *ev;
    struct buf why;

    (void)state;
    record("processed", "a@example.com", 1700000000, NULL);
    snprintf(path, sizeof(path), "%s/events/2023-11-14.jsonl", dir);
    fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "{\"event\":\"del", 13), 13); /* cut short */
    close(fd);
    record("delivered", "a@example.com", 1700000001, NULL);
    /* the fragment is skipped; both whole records are read */
    assert_int_equal(query(&q, &t, &skipped), 2);
    assert_int_equal(skipped, 1);

    buf_init(&why, 64);
    ev = json_pack("{s:s}", "email", "a@example.com");
    assert_int_equal(event_record(dir, ev, &why), -1);
    assert_non_null(strstr(buf_str(&why), "event"));
    json_decref(ev);
    ev = json_pack("{s:s,s:s}", "event", "open", "email", "a@example.com");
    assert_int_equal(event_record("/nonexistent/dir", ev, &why), -1);
    assert_non_null(strstr(buf_str(&why), "/nonexistent/dir"));
    json_decref(ev);
    buf_release(&why);
}

/* ids_fn - collect the events' ids */
static int ids_fn(json_t *ev, void *ctx)
{
    char(*ids)[32] = ctx;
    int i = 0;

    while (ids[i][0])
        i++;
    snprintf(ids[i], sizeof(ids[i]), "%s",
             json_string_value(json_object_get(ev, "sg_event_id")));
    return 0;
}

/*
 * a thread keeps the day's file open only while the path still names it,
 * checked at most once a second: renamed away, a record a second later
 * makes a new file at the path; replaced by a directory, a record a second
 * later fails; put back, it works again.  A forked child
 * draws ids of its own, not the parent's next ones.
 */
static void test_file_replaced_and_fork(void **state)
{
    struct event_query q = {0, 0, NULL, NULL, NULL, 0, 0};
    struct tally t;
    long long skipped;
    char path[128], away[160], ids[8][32];
    json_t *ev;
    struct buf why;
    pid_t pid;
    int status;

    (void)state;
    snprintf(path, sizeof(path), "%s/events/2023-11-14.jsonl", dir);
    snprintf(away, sizeof(away), "%s.away", path);
    record("processed", "a@example.com", 1700000000, NULL);
    assert_int_equal(rename(path, away), 0);
    sleep(1);
    record("delivered", "a@example.com", 1700000001, NULL);
    assert_int_equal(query(&q, &t, &skipped), 1); /* the new file holds the second */
    assert_string_equal(t.first_email, "a@example.com");
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    sleep(1);
    buf_init(&why, 64);
    ev = json_pack("{s:s,s:s,s:I}", "event", "open", "email", "a@example.com",
                   "timestamp", (json_int_t)1700000002);
    assert_int_equal(event_record(dir, ev, &why), -1);
    assert_non_null(strstr(buf_str(&why), "cannot open"));
    json_decref(ev);
    buf_release(&why);
    assert_int_equal(rmdir(path), 0);
    assert_int_equal(rename(away, path), 0);
    record("open", "a@example.com", 1700000003, NULL);
    assert_int_equal(query(&q, &t, &skipped), 2);

    /* parent and child after a fork: different ids */
    if ((pid = fork()) == 0) {
        record("click", "child@example.com", 1700000004, NULL);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    record("click", "parent@example.com", 1700000004, NULL);
    memset(ids, 0, sizeof(ids));
    q.type = "click";
    buf_init(&why, 64);
    assert_int_equal(event_query(dir, &q, ids_fn, ids, &skipped, &why), 0);
    buf_release(&why);
    assert_true(ids[0][0] && ids[1][0] && !ids[2][0]);
    assert_string_not_equal(ids[0], ids[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_concurrent_appenders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filters_and_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_line_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_replaced_and_fork, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
