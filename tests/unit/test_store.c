/*
 * test_store - the stores: lists, lookups through every entry form, listing
 * order and filters, groups, bulk undo, tenants, a writer that dies in
 * the middle of a transaction or of a bulk operation, threads writing through
 * one handle, and a failed change inside an explicit transaction.
 */
#include "config.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "address.h"
#include "store.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sg-test-store-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct store *open_rw(void)
{
    struct buf why;
    struct store *st;

    buf_init(&why, 64);
    st = store_open(dir, STORE_WRITE | STORE_CREATE, &why);
    if (st == NULL)
        fail_msg("store_open: %s", buf_str(&why));
    buf_release(&why);
    return st;
}

static void add(struct store *st, const char *tenant, enum store_list list,
                uint32_t group, const char *entry, int64_t created,
                enum store_add_result expect)
{
    struct store_fields f = {created, "550 5.1.1 no such user", "5.1.1", NULL,
                             "fbl.example"};
    enum store_add_result res;
    struct buf why;

    buf_init(&why, 64);
    if (store_add(st, tenant, list, group, entry, &f, &res, &why) < 0)
        fail_msg("store_add %s: %s", entry, buf_str(&why));
    assert_int_equal(res, expect);
    buf_release(&why);
}

static struct store_hits lookup(struct store *st, const char *tenant, const char *addr,
                                uint32_t group)
{
    struct store_hits hits;
    struct buf why, norm;

    store_hits_init(&hits);
    buf_init(&why, 64);
    buf_init(&norm, 64);
    assert_int_equal(address_normalize(addr, &norm, &why), 0);
    if (store_lookup(st, tenant, buf_str(&norm), group, &hits, &why) < 0)
        fail_msg("store_lookup: %s", buf_str(&why));
    buf_release(&why);
    buf_release(&norm);
    return hits;
}

static void test_open_errors(void **state)
{
    struct buf why;
    char path[128];

    (void)state;
    buf_init(&why, 64);
    snprintf(path, sizeof(path), "%s/missing", dir);
    assert_null(store_open(path, STORE_READ, &why));
    assert_non_null(strstr(buf_str(&why), path));
    /* A directory without a store is reported, not created, when reading. */
    assert_null(store_open(dir, STORE_READ, &why));
    assert_non_null(strstr(buf_str(&why), "store.lock"));
    buf_release(&why);
}

static int keep_created(const struct store_record *r, void *ctx)
{
    *(int64_t *)ctx = r->created;
    return 0;
}

static void test_add_get_keep_update(void **state)
{
    struct store *st = open_rw();
    struct buf why;
    int64_t created = 0;
    enum store_add_result res;

    (void)state;
    buf_init(&why, 64);
    add(st, "default", STORE_BOUNCES, 0, "a@example.com", 1000, STORE_ADDED);
    add(st, "default", STORE_BOUNCES, 0, "A@Example.COM", 2000, STORE_UPDATED);
    assert_int_equal(store_get(st, "default", STORE_BOUNCES, 0, "a@example.com",
                               keep_created, &created, &why),
                     1);
    assert_int_equal(created, 2000);
    add(st, "default", STORE_SPAM_REPORTS, 0, "s@example.com", 1000, STORE_ADDED);
    add(st, "default", STORE_SPAM_REPORTS, 0, "S@example.com", 3000, STORE_KEPT);
    assert_int_equal(store_get(st, "default", STORE_SPAM_REPORTS, 0, "s@example.com",
                               keep_created, &created, &why),
                     1);
    assert_int_equal(created, 1000);
    assert_int_equal(store_count(st, "default", STORE_BOUNCES, 0, &why), 1);
    assert_int_equal(store_get(st, "default", STORE_UNSUBSCRIBES, 0, "a@example.com",
                               NULL, NULL, &why),
                     0);
    /* Not an address: an error with a reason, nothing stored. */
    assert_int_equal(
        store_add(st, "default", STORE_BOUNCES, 0, "not an address", NULL, &res, &why),
        -1);
    assert_true(buf_len(&why) > 0);
    assert_int_equal(store_count(st, "default", STORE_BOUNCES, 0, &why), 1);
    /* A group id where none belongs, and none where one does. */
    assert_int_equal(
        store_add(st, "default", STORE_BOUNCES, 5, "a@b.com", NULL, &res, &why), -1);
    assert_int_equal(
        store_add(st, "default", STORE_GROUP, 0, "a@b.com", NULL, &res, &why), -1);
    assert_int_equal(
        store_add(st, "default", STORE_GROUP, 99, "a@b.com", NULL, &res, &why), -1);
    assert_non_null(strstr(buf_str(&why), "no group 99"));
    store_close(st);
    buf_release(&why);
}

static void test_lookup_forms(void **state)
{
    struct store *st = open_rw();
    struct store_hits hits;
    char md5[33], sha[65];
    struct buf why;
    uint32_t g1, g2, old;

    (void)state;
    buf_init(&why, 64);
    address_digests("digest@example.org", 18, md5, sha);
    add(st, "default", STORE_BOUNCES, 0, "Exact@example.com", 10, STORE_ADDED);
    add(st, "default", STORE_UNSUBSCRIBES, 0, "@blocked.example", 10, STORE_ADDED);
    add(st, "default", STORE_SPAM_REPORTS, 0, md5, 10, STORE_ADDED);
    add(st, "default", STORE_UNSUBSCRIBES, 0, sha, 10, STORE_ADDED);
    assert_int_equal(
        store_group_create(st, "default", "News", "weekly", 1, &g1, &old, &why), 0);
    assert_int_equal(store_group_create(st, "default", "Offers", "", 0, &g2, &old, &why),
                     0);
    add(st, "default", STORE_GROUP, g1, "grp@example.com", 10, STORE_ADDED);
    add(st, "default", STORE_GROUP, g2, "grp@example.com", 10, STORE_ADDED);
    add(st, "default", STORE_ALLOW, 0, "@allowed.example", 10, STORE_ADDED);

    hits = lookup(st, "default", "exact@EXAMPLE.com", STORE_NO_GROUP);
    assert_int_equal(hits.n, 1);
    assert_int_equal(hits.m[0].list, STORE_BOUNCES);
    assert_int_equal(hits.m[0].via, ADDRESS_EXACT);
    assert_string_equal(hits.m[0].bounce_type, "hard");
    assert_int_equal(hits.default_group, g1);
    store_hits_free(&hits);

    hits = lookup(st, "default", "anyone@BLOCKED.example", STORE_NO_GROUP);
    assert_int_equal(hits.n, 1);
    assert_int_equal(hits.m[0].via, ADDRESS_DOMAIN);
    assert_string_equal(hits.m[0].entry, "@blocked.example");
    store_hits_free(&hits);

    hits = lookup(st, "default", "Digest@example.org", STORE_NO_GROUP);
    assert_int_equal(hits.n, 2);
    assert_int_equal(hits.m[0].via, ADDRESS_MD5);
    assert_int_equal(hits.m[0].list, STORE_SPAM_REPORTS);
    assert_int_equal(hits.m[1].via, ADDRESS_SHA256);
    assert_int_equal(hits.m[1].list, STORE_UNSUBSCRIBES);
    store_hits_free(&hits);

    hits = lookup(st, "default", "grp@example.com", g2);
    assert_int_equal(hits.n, 1);
    assert_int_equal(hits.m[0].group, g2);
    store_hits_free(&hits);
    hits = lookup(st, "default", "grp@example.com", STORE_ALL_GROUPS);
    assert_int_equal(hits.n, 2);
    store_hits_free(&hits);
    hits = lookup(st, "default", "grp@example.com", STORE_NO_GROUP);
    assert_int_equal(hits.n, 0);
    store_hits_free(&hits);

    hits = lookup(st, "default", "x@allowed.example", STORE_NO_GROUP);
    assert_int_equal(hits.n, 1);
    assert_int_equal(hits.m[0].list, STORE_ALLOW);
    store_hits_free(&hits);

    /* Another tenant sees none of it. */
    hits = lookup(st, "acme", "exact@example.com", STORE_ALL_GROUPS);
    assert_int_equal(hits.n, 0);
    assert_int_equal(hits.default_group, 0);
    store_hits_free(&hits);

    /* One store per directory per process. */
    assert_null(store_open(dir, STORE_READ, &why));
    assert_non_null(strstr(buf_str(&why), "already open in this process"));
    /* A reader in another process sees the same, and sees a later change at once. */
    {
        int p1[2], p2[2], status;
        char c;
        pid_t pid;

        assert_int_equal(pipe(p1), 0);
        assert_int_equal(pipe(p2), 0);
        if ((pid = fork()) == 0) {
            struct store *ro;
            struct store_hits h;
            int bad = 0;

            store_close(st); /* the child's copy: this process is a reader only */
            ro = store_open(dir, STORE_READ, NULL);
            if (ro == NULL)
                _exit(2);
            h = lookup(ro, "default", "anyone@blocked.example", STORE_NO_GROUP);
            bad |= h.n != 1;
            h.n = 0;
            store_hits_free(&h);
            if (write(p1[1], "r", 1) != 1 || read(p2[0], &c, 1) != 1)
                _exit(3);
            h = lookup(ro, "default", "late@example.com", STORE_NO_GROUP);
            bad |= h.n != 1;
            store_hits_free(&h);
            store_close(ro);
            _exit(bad ? 4 : 0);
        }
        assert_int_equal(read(p1[0], &c, 1), 1);
        add(st, "default", STORE_BOUNCES, 0, "late@example.com", 10, STORE_ADDED);
        assert_int_equal(write(p2[1], "w", 1), 1);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        close(p1[0]);
        close(p1[1]);
        close(p2[0]);
        close(p2[1]);
    }
    store_close(st);
    buf_release(&why);
}

struct seen {
    int n;
    char emails[16][64];
    int64_t created[16];
};

static int seen_add(const struct store_record *r, void *ctx)
{
    struct seen *s = ctx;

    if (s->n < 16) {
        snprintf(s->emails[s->n], 64, "%s", r->email);
        s->created[s->n] = r->created;
    }
    s->n++;
    return 0;
}

static void test_listing(void **state)
{
    struct store *st = open_rw();
    struct store_query q = {0, 0, 0, 0, NULL};
    struct seen s;
    long long total;
    struct buf why;
    char email[64];

    (void)state;
    buf_init(&why, 64);
    for (int i = 1; i <= 10; i++) {
        snprintf(email, sizeof(email), "u%02d@example.com", i);
        add(st, "default", STORE_UNSUBSCRIBES, 0, email, 100 * i, STORE_ADDED);
    }
    memset(&s, 0, sizeof(s));
    assert_int_equal(
        store_list(st, "default", STORE_UNSUBSCRIBES, 0, &q, seen_add, &s, &total, &why),
        0);
    assert_int_equal(s.n, 10);
    assert_int_equal(total, 10);
    assert_string_equal(s.emails[0], "u10@example.com"); /* newest first */
    assert_string_equal(s.emails[9], "u01@example.com");

    q.offset = 3;
    q.limit = 2;
    memset(&s, 0, sizeof(s));
    store_list(st, "default", STORE_UNSUBSCRIBES, 0, &q, seen_add, &s, &total, &why);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.emails[0], "u07@example.com");
    assert_string_equal(s.emails[1], "u06@example.com");

    /* start and end are inclusive */
    q.offset = 0;
    q.limit = 0;
    q.start_time = 300;
    q.end_time = 500;
    memset(&s, 0, sizeof(s));
    store_list(st, "default", STORE_UNSUBSCRIBES, 0, &q, seen_add, &s, &total, &why);
    assert_int_equal(s.n, 3);
    assert_int_equal(total, 3);
    assert_int_equal(s.created[0], 500);
    assert_int_equal(s.created[2], 300);

    q.start_time = 0;
    q.end_time = 0;
    q.email = "U03@example.com";
    memset(&s, 0, sizeof(s));
    store_list(st, "default", STORE_UNSUBSCRIBES, 0, &q, seen_add, &s, &total, &why);
    assert_int_equal(s.n, 1);
    assert_int_equal(total, 1);

    /* remove, then clear */
    assert_int_equal(
        store_remove(st, "default", STORE_UNSUBSCRIBES, 0, "u03@example.com", &why), 1);
    assert_int_equal(
        store_remove(st, "default", STORE_UNSUBSCRIBES, 0, "u03@example.com", &why), 0);
    assert_int_equal(store_count(st, "default", STORE_UNSUBSCRIBES, 0, &why), 9);
    store_set_batch(st, 4); /* several batches */
    assert_int_equal(store_clear(st, "default", STORE_UNSUBSCRIBES, 0, &why), 9);
    assert_int_equal(store_count(st, "default", STORE_UNSUBSCRIBES, 0, &why), 0);
    q.email = NULL;
    memset(&s, 0, sizeof(s));
    store_list(st, "default", STORE_UNSUBSCRIBES, 0, &q, seen_add, &s, &total, &why);
    assert_int_equal(s.n, 0);
    store_close(st);
    buf_release(&why);
}

static int count_groups(const struct store_group *g, void *ctx)
{
    (void)g;
    (*(int *)ctx)++;
    return 0;
}

static void test_groups(void **state)
{
    struct store *st = open_rw();
    struct store_group g;
    struct buf why;
    uint32_t a, b, old;
    long long n;
    int count = 0;
    char longname[120];

    (void)state;
    buf_init(&why, 64);
    assert_int_equal(
        store_group_create(st, "default", "Newsletter", "", 1, &a, &old, &why), 0);
    assert_int_equal(old, 0);
    assert_int_equal(
        store_group_create(st, "default", "newsletter", "", 0, &b, &old, &why), -1);
    assert_non_null(strstr(buf_str(&why), "already exists"));
    assert_int_equal(store_group_create(st, "default", "", "", 0, &b, &old, &why), -1);
    memset(longname, 'x', 101);
    longname[101] = 0;
    assert_int_equal(store_group_create(st, "default", longname, "", 0, &b, &old, &why),
                     -1);
    longname[100] = 0;
    assert_int_equal(store_group_create(st, "default", longname, "", 0, &b, &old, &why),
                     0);
    /* Making b default takes it from a, and says so. */
    assert_int_equal(store_group_update(st, "default", b, "Offers", NULL, 1, &old, &why),
                     0);
    assert_int_equal(old, a);
    assert_int_equal(store_group_get(st, "default", a, &g, &why), 1);
    assert_false(g.is_default);
    assert_int_equal(store_group_get(st, "default", b, &g, &why), 1);
    assert_true(g.is_default);
    assert_string_equal(g.name, "Offers");
    /* The old name is free again after the rename. */
    assert_int_equal(store_group_create(st, "acme", longname, "", 0, &old, NULL, &why),
                     0);
    add(st, "default", STORE_GROUP, b, "one@example.com", 0, STORE_ADDED);
    add(st, "default", STORE_GROUP, b, "two@example.com", 0, STORE_ADDED);
    add(st, "default", STORE_GROUP, a, "one@example.com", 0, STORE_ADDED);
    assert_int_equal(store_group_get(st, "default", b, &g, &why), 1);
    assert_int_equal(g.count, 2);
    assert_int_equal(store_group_list(st, "default", count_groups, &count, &why), 0);
    assert_int_equal(count, 2);
    assert_int_equal(store_group_delete(st, "default", b, &n, &why), 1);
    assert_int_equal(n, 2);
    assert_int_equal(store_group_get(st, "default", b, &g, &why), 0);
    assert_int_equal(store_group_delete(st, "default", b, &n, &why), 0);
    /* its suppressions are gone, the other group's stay */
    {
        struct store_hits hits =
            lookup(st, "default", "one@example.com", STORE_ALL_GROUPS);

        assert_int_equal(hits.n, 1);
        assert_int_equal(hits.m[0].group, a);
        assert_int_equal(hits.default_group, 0);
        store_hits_free(&hits);
    }
    /* a description over 500 characters */
    {
        char desc[600];

        memset(desc, 'd', 501);
        desc[501] = 0;
        assert_int_equal(store_group_update(st, "default", a, NULL, desc, -1, &old, &why),
                         -1);
    }
    store_close(st);
    buf_release(&why);
}

static void test_bulk_undo(void **state)
{
    struct store *st = open_rw();
    struct buf why;
    char email[64];

    (void)state;
    buf_init(&why, 64);
    add(st, "default", STORE_BOUNCES, 0, "keep@example.com", 50, STORE_ADDED);
    store_set_batch(st, 3);
    store_bulk_begin(st);
    for (int i = 0; i < 10; i++) {
        snprintf(email, sizeof(email), "bulk%d@example.com", i);
        add(st, "default", STORE_BOUNCES, 0, email, 100 + i, STORE_ADDED);
    }
    add(st, "default", STORE_BOUNCES, 0, "keep@example.com", 999, STORE_UPDATED);
    assert_int_equal(store_bulk_end(st, 0, &why), -1);
    assert_int_equal(store_count(st, "default", STORE_BOUNCES, 0, &why), 1);
    {
        int64_t created = 0;

        assert_int_equal(store_get(st, "default", STORE_BOUNCES, 0, "keep@example.com",
                                   keep_created, &created, &why),
                         1);
        assert_int_equal(created, 50);
    }
    /* and a bulk that is kept */
    store_bulk_begin(st);
    for (int i = 0; i < 10; i++) {
        snprintf(email, sizeof(email), "bulk%d@example.com", i);
        add(st, "default", STORE_BOUNCES, 0, email, 100 + i, STORE_ADDED);
    }
    assert_int_equal(store_bulk_end(st, 1, &why), 0);
    assert_int_equal(store_count(st, "default", STORE_BOUNCES, 0, &why), 11);
    store_close(st);
    buf_release(&why);
}

static void test_writer_dies(void **state)
{
    struct store *st = open_rw();
    struct buf why;
    pid_t pid;
    int status;

    (void)state;
    buf_init(&why, 64);
    add(st, "default", STORE_BOUNCES, 0, "before@example.com", 10, STORE_ADDED);
    store_close(st);
    pid = fork();
    if (pid == 0) {
        struct store *c = store_open(dir, STORE_WRITE, NULL);
        enum store_add_result res;

        store_begin(c, NULL);
        store_add(c, "default", STORE_BOUNCES, 0, "during@example.com", NULL, &res, NULL);
        _exit(0); /* dies holding an open transaction */
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    /*
     * A reader that may write the lock file recovers (lookups must not wait
     * for an administrator): the transaction is rolled back.
     */
    st = store_open(dir, STORE_READ, &why);
    assert_non_null(st);
    {
        struct store_hits hits =
            lookup(st, "default", "during@example.com", STORE_NO_GROUP);

        assert_int_equal(hits.n, 0);
        store_hits_free(&hits);
    }
    store_close(st);
    st = open_rw();
    {
        struct store_hits hits =
            lookup(st, "default", "during@example.com", STORE_NO_GROUP);

        assert_int_equal(hits.n, 0);
        store_hits_free(&hits);
        hits = lookup(st, "default", "before@example.com", STORE_NO_GROUP);
        assert_int_equal(hits.n, 1);
        store_hits_free(&hits);
    }
    assert_int_equal(store_count(st, "default", STORE_BOUNCES, 0, &why), 1);
    add(st, "default", STORE_BOUNCES, 0, "after@example.com", 10, STORE_ADDED);
    store_close(st);
    buf_release(&why);
}

struct thread_job {
    struct store *st;
    int id, bulk, failures;
};

static void *write_job(void *arg)
{
    struct thread_job *j = arg;
    struct buf why;
    char email[64];

    buf_init(&why, 64);
    if (j->bulk)
        store_bulk_begin(j->st);
    for (int i = 0; i < (j->bulk ? 1000 : 300); i++) {
        snprintf(email, sizeof(email), "t%d-%d@threads.example", j->id, i);
        if (store_add(j->st, "default", j->bulk ? STORE_SPAM_REPORTS : STORE_BOUNCES, 0,
                      email, NULL, NULL, &why) < 0)
            j->failures++;
    }
    if (j->bulk && store_bulk_end(j->st, 1, &why) < 0)
        j->failures++;
    buf_release(&why);
    return NULL;
}

/* Threads of one process share a handle: their writes never mix. */
static void test_threads_write(void **state)
{
    struct store *st = open_rw();
    struct thread_job jobs[3] = {{st, 0, 0, 0}, {st, 1, 0, 0}, {st, 2, 1, 0}};
    pthread_t tid[3];
    struct buf why;

    (void)state;
    buf_init(&why, 64);
    store_set_batch(st, 100);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&tid[i], NULL, write_job, &jobs[i]), 0);
    for (int i = 0; i < 3; i++) {
        pthread_join(tid[i], NULL);
        assert_int_equal(jobs[i].failures, 0);
    }
    assert_int_equal(store_count(st, "default", STORE_BOUNCES, 0, &why), 600);
    assert_int_equal(store_count(st, "default", STORE_SPAM_REPORTS, 0, &why), 1000);
    store_close(st);
    buf_release(&why);
}

/* A change that fails inside the caller's transaction spoils all of it. */
static void test_tx_failure(void **state)
{
    struct store *st = open_rw();
    struct buf why;
    struct store_hits hits;

    (void)state;
    buf_init(&why, 64);
    store_hits_init(&hits);
    assert_int_equal(store_begin(st, &why), 0);
    add(st, "default", STORE_BOUNCES, 0, "one@example.com", 10, STORE_ADDED);
    assert_int_equal(
        store_add(st, "default", STORE_GROUP, 99, "two@example.com", NULL, NULL, &why),
        -1);
    assert_non_null(strstr(buf_str(&why), "no group 99"));
    assert_int_equal(store_commit(st, &why), -1);
    assert_non_null(strstr(buf_str(&why), "rolled back"));
    assert_int_equal(store_count(st, "default", STORE_BOUNCES, 0, &why), 0);
    /* and the handle goes on working */
    add(st, "default", STORE_BOUNCES, 0, "one@example.com", 10, STORE_ADDED);
    /* a lookup of something that is not an address is an error, not a miss */
    assert_int_equal(store_lookup(st, "default", "nodomain", STORE_NO_GROUP, &hits, &why),
                     -1);
    assert_non_null(strstr(buf_str(&why), "not an address"));
    assert_int_equal(
        store_lookup(st, "default", "@example.com", STORE_NO_GROUP, &hits, &why), -1);
    store_hits_free(&hits);
    store_close(st);
    buf_release(&why);
}

static int count_rows(const struct store_record *r, void *ctx)
{
    (void)r;
    (*(long long *)ctx)++;
    return 0;
}

/* A bulk operation killed between batches: readers recover, lists stay whole. */
static void test_bulk_killed(void **state)
{
    struct store *st = open_rw();
    struct buf why;
    struct store_query q = {0};
    long long rows = 0, total = 0;
    pid_t pid;
    int status;

    (void)state;
    buf_init(&why, 64);
    store_close(st);
    if ((pid = fork()) == 0) {
        struct store *c = store_open(dir, STORE_WRITE, NULL);
        char email[64];

        store_set_batch(c, 10);
        store_bulk_begin(c);
        for (int i = 0; i < 25; i++) {
            snprintf(email, sizeof(email), "k%d@killed.example", i);
            store_add(c, "default", STORE_BOUNCES, 0, email, NULL, NULL, NULL);
        }
        _exit(0); /* two batches committed, the third open */
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    st = store_open(dir, STORE_READ, &why);
    assert_non_null(st);
    assert_int_equal(store_count(st, "default", STORE_BOUNCES, 0, &why), 20);
    q.limit = 100;
    assert_int_equal(
        store_list(st, "default", STORE_BOUNCES, 0, &q, count_rows, &rows, &total, &why),
        0);
    assert_int_equal(rows, 20);
    assert_int_equal(total, 20);
    store_close(st);
    buf_release(&why);
}

static int collect_dkim_rec(const struct store_dkim *k, void *ctx)
{
    struct buf *b = ctx;

    buf_printf(b, "%s/%s/%s/%d/%s;", k->domain, k->selector, k->algorithm, k->bits,
               k->path);
    return 0;
}

/* DKIM key records: put, replace, list by domain and selector, delete. */
static void test_dkim_keys(void **state)
{
    struct store *st = open_rw();
    struct store_dkim k = {"example.com", "s1", "rsa-sha256", 2048, "/k/s1.pem", 0};
    struct buf why, out;
    int replaced = -1;

    (void)state;
    buf_init(&why, 64);
    buf_init(&out, 256);
    assert_int_equal(store_dkim_put(st, &k, &replaced, &why), 0);
    assert_int_equal(replaced, 0);
    k.selector = "s10";
    k.algorithm = "ed25519-sha256";
    k.bits = 256;
    k.path = "/k/s10.pem";
    assert_int_equal(store_dkim_put(st, &k, &replaced, &why), 0);
    k.domain = "example.com.evil";
    assert_int_equal(store_dkim_put(st, &k, NULL, &why), 0);
    k.domain = "example.com";
    k.selector = "s1";
    k.path = "/k/s1-new.pem";
    k.algorithm = "rsa-sha256";
    k.bits = 1024;
    assert_int_equal(store_dkim_put(st, &k, &replaced, &why), 0);
    assert_int_equal(replaced, 1);
    assert_int_equal(
        store_dkim_list(st, "example.com", NULL, collect_dkim_rec, &out, &why), 2);
    assert_string_equal(buf_str(&out), "example.com/s1/rsa-sha256/1024//k/s1-new.pem;"
                                       "example.com/s10/ed25519-sha256/256//k/s10.pem;");
    buf_reset(&out);
    assert_int_equal(
        store_dkim_list(st, "example.com", "s1", collect_dkim_rec, &out, &why), 1);
    assert_string_equal(buf_str(&out), "example.com/s1/rsa-sha256/1024//k/s1-new.pem;");
    buf_reset(&out);
    assert_int_equal(store_dkim_list(st, NULL, NULL, collect_dkim_rec, &out, &why), 3);
    assert_int_equal(store_dkim_delete(st, "example.com", "s1", &why), 1);
    assert_int_equal(store_dkim_delete(st, "example.com", "s1", &why), 0);
    buf_reset(&out);
    assert_int_equal(
        store_dkim_list(st, "example.com", "s1", collect_dkim_rec, &out, &why), 0);
    assert_int_equal(
        store_dkim_list(st, "example.com", NULL, collect_dkim_rec, &out, &why), 1);
    store_close(st);
    buf_release(&why);
    buf_release(&out);
}

/* An interrupted bulk is undone even if the caller asks to keep it. */
static void test_bulk_interrupted(void **state)
{
    struct store *st = open_rw();
    static volatile sig_atomic_t stop;
    struct buf why, path;
    char email[64];
    int failed = 0;

    (void)state;
    buf_init(&why, 64);
    buf_init(&path, 128);
    add(st, "default", STORE_BOUNCES, 0, "keep@example.com", 50, STORE_ADDED);
    store_set_interrupt(st, &stop);
    store_set_batch(st, 3);
    store_bulk_begin(st);
    for (int i = 0; i < 10; i++) {
        if (i == 4)
            stop = 1; /* a signal, in the middle of the second batch */
        snprintf(email, sizeof(email), "i%d@example.com", i);
        failed += store_add(st, "default", STORE_BOUNCES, 0, email, NULL, NULL, &why) < 0;
    }
    assert_true(failed > 0);
    assert_int_equal(store_bulk_end(st, 1, &why), -1);
    assert_non_null(strstr(buf_str(&why), "part of the bulk change failed"));
    assert_int_equal(store_count(st, "default", STORE_BOUNCES, 0, &why), 1);
    stop = 0;
    store_close(st);
    /* a store from before store.turn: readers still read */
    buf_setf(&path, "%s/store.turn", dir);
    assert_int_equal(unlink(buf_str(&path)), 0);
    st = store_open(dir, STORE_READ, &why);
    assert_non_null(st);
    assert_int_equal(store_count(st, "default", STORE_BOUNCES, 0, &why), 1);
    store_close(st);
    buf_release(&why);
    buf_release(&path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_get_keep_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_groups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_undo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_dies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tx_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dkim_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_interrupted, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
