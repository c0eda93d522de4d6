/*
 * store_concurrency - proof of the store's locking design (store.h).
 *
 *   store_concurrency DIR SECONDS THREADS
 *
 * One process writes continuously (single adds, removals, and bulk batches
 * like an import) while another reads from THREADS threads.  It fails (exit
 * 1) if a reader ever sees an error or a torn record, if a writer waits
 * longer than 100 ms for the lock (as the store measures it: the flock
 * calls and the fairness pause, not opening files or being scheduled; the
 * caller's whole begin is printed beside it), or if a committed change is not visible
 * to the next lookup that starts after the commit returned (the bar is 1 s;
 * the design gives immediately), or if a lookup waited longer than 100 ms and
 * half the longest bulk operation (readers must get in between its batches).  Prints its
 * figures as key=value lines.
 */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "store.h"

#define SEEDS 20000
#define BULK_ROWS 20000

struct shared {
    atomic_long committed; /* highest w<N> whose commit has returned */
    atomic_int writer_done;
    atomic_long commits;
    atomic_long max_wait_us;  /* begin() to begun, as the caller sees it */
    atomic_long lock_wait_us; /* the lock alone, as the store measures it */
    atomic_long writer_errors;
    atomic_long bulk_us; /* the longest bulk operation, start to end */
};

static struct shared *sh;
static const char *dir;
static double seconds;

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void note_wait(double t0)
{
    long us = (long)((now() - t0) * 1e6);
    long old = atomic_load(&sh->max_wait_us);

    while (us > old && !atomic_compare_exchange_weak(&sh->max_wait_us, &old, us))
        ;
}

/* writer - single adds with their own transaction, removals, bulk batches */
static void writer(void)
{
    struct buf why;
    struct store *st;
    char email[64], reason[96];
    long n = 0;
    double end = now() + seconds;
    double next_bulk = now() + seconds / 6; /* then every quarter of the run */

    buf_init(&why, 128);
    if ((st = store_open(dir, STORE_WRITE, &why)) == NULL) {
        fprintf(stderr, "writer: %s\n", buf_str(&why));
        atomic_fetch_add(&sh->writer_errors, 1);
        return;
    }
    store_set_batch(st, 500);
    while (now() < end) {
        struct store_fields f = {0, reason, "5.1.1", "hard", NULL};
        enum store_add_result res;
        double t0;

        n++;
        snprintf(email, sizeof(email), "w%ld@writer.example", n);
        snprintf(reason, sizeof(reason), "reason-of-%s", email);
        t0 = now();
        if (store_begin(st, &why) < 0) {
            fprintf(stderr, "writer: %s\n", buf_str(&why));
            atomic_fetch_add(&sh->writer_errors, 1);
            continue;
        }
        note_wait(t0);
        if (store_add(st, "default", STORE_BOUNCES, 0, email, &f, &res, &why) < 0 ||
            store_commit(st, &why) < 0) {
            fprintf(stderr, "writer: %s\n", buf_str(&why));
            atomic_fetch_add(&sh->writer_errors, 1);
            store_abort(st);
            continue;
        }
        atomic_store(&sh->committed, n);
        atomic_fetch_add(&sh->commits, 1);
        if (n % 5 == 0) {
            /* remove an older one of ours: readers never look for those */
            snprintf(email, sizeof(email), "w%ld@writer.example", n - 4);
            t0 = now();
            if (store_remove(st, "default", STORE_BOUNCES, 0, email, &why) < 0)
                atomic_fetch_add(&sh->writer_errors, 1);
            note_wait(t0); /* upper bound: wait + work */
        }
        if (now() >= next_bulk) {
            next_bulk = now() + seconds / 4;
            /*
             * an import-like bulk of 20000 rows in batches of 500: readers
             * must get in between the batches, not wait for the whole bulk
             */
            double b0 = now();
            long bus;

            store_bulk_begin(st);
            for (int i = 0; i < BULK_ROWS; i++) {
                snprintf(email, sizeof(email), "bulk%ld-%d@writer.example", n, i);
                snprintf(reason, sizeof(reason), "reason-of-%s", email);
                if (store_add(st, "default", STORE_SPAM_REPORTS, 0, email, &f, &res,
                              &why) < 0)
                    atomic_fetch_add(&sh->writer_errors, 1);
            }
            if (store_bulk_end(st, 1, &why) < 0)
                atomic_fetch_add(&sh->writer_errors, 1);
            atomic_fetch_add(&sh->commits, BULK_ROWS / 500);
            bus = (long)((now() - b0) * 1e6);
            if (bus > atomic_load(&sh->bulk_us))
                atomic_store(&sh->bulk_us, bus);
        }
    }
    /* the store's own measure: time spent waiting for the lock itself */
    atomic_store(&sh->lock_wait_us, (long)store_max_lock_wait_us(st));
    store_close(st);
    buf_release(&why);
}

struct reader_stats {
    long lookups, errors, torn, invisible;
    double max_us;
};

static struct store *rst;

static int check_reason(const struct store_record *r, void *ctx)
{
    char want[96];

    snprintf(want, sizeof(want), "reason-of-%s", r->email);
    if (strcmp(r->reason, want) != 0 || strcmp(r->bounce_type, "hard") != 0)
        (*(long *)ctx)++;
    return 0;
}

/* reader - lookups of seeds (must be found, whole) and of the last commit */
static void *reader(void *arg)
{
    struct reader_stats *rs = arg;
    struct store_hits hits;
    struct buf why, norm;
    char email[64];
    unsigned seed = (unsigned)(uintptr_t)arg;

    store_hits_init(&hits);
    buf_init(&why, 128);
    buf_init(&norm, 128);
    while (!atomic_load(&sh->writer_done)) {
        long last = atomic_load(&sh->committed);
        int i = (int)(rand_r(&seed) % SEEDS);
        double t0 = now(), us;

        snprintf(email, sizeof(email), "seed%d@seed.example", i);
        if (store_lookup(rst, "default", email, STORE_NO_GROUP, &hits, &why) < 0) {
            fprintf(stderr, "reader: %s\n", buf_str(&why));
            rs->errors++;
        } else if (hits.n != 1 || hits.m[0].list != STORE_BOUNCES ||
                   strcmp(hits.m[0].entry, email) != 0 ||
                   strcmp(hits.m[0].bounce_type, "hard") != 0) {
            rs->torn++;
        }
        us = (now() - t0) * 1e6;
        if (us > rs->max_us)
            rs->max_us = us;
        rs->lookups++;
        if (last > 0 && rs->lookups % 4 == 0) {
            /* committed before this lookup started: it must be seen */
            snprintf(email, sizeof(email), "w%ld@writer.example", last);
            if (store_lookup(rst, "default", email, STORE_NO_GROUP, &hits, &why) < 0)
                rs->errors++;
            else if (hits.n == 0 && atomic_load(&sh->committed) - last < 4)
                rs->invisible++; /* (it may have been removed since, by n-4) */
            rs->lookups++;
        }
        if (rs->lookups % 64 == 0 &&
            store_get(rst, "default", STORE_BOUNCES, 0, "seed7@seed.example",
                      check_reason, &rs->torn, &why) < 0)
            rs->errors++;
    }
    store_hits_free(&hits);
    buf_release(&why);
    buf_release(&norm);
    return NULL;
}

int main(int argc, char **argv)
{
    struct buf why;
    struct store *st;
    int threads;
    pid_t pid;
    pthread_t tid[64];
    struct reader_stats rs[64];
    struct reader_stats tot;
    int status, failed = 0;
    double t0;

    if (argc != 4) {
        fprintf(stderr, "usage: store_concurrency DIR SECONDS THREADS\n");
        return 2;
    }
    dir = argv[1];
    seconds = atof(argv[2]);
    threads = atoi(argv[3]);
    if (threads < 1 || threads > 64)
        threads = 4;
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
              0);
    memset(sh, 0, sizeof(*sh));
    buf_init(&why, 128);

    /* Seed the store. */
    if ((st = store_open(dir, STORE_WRITE | STORE_CREATE, &why)) == NULL) {
        fprintf(stderr, "%s\n", buf_str(&why));
        return 1;
    }
    store_bulk_begin(st);
    for (int i = 0; i < SEEDS; i++) {
        char email[64], reason[96];
        struct store_fields f = {0, reason, "5.1.1", "hard", NULL};

        snprintf(email, sizeof(email), "seed%d@seed.example", i);
        snprintf(reason, sizeof(reason), "reason-of-%s", email);
        if (store_add(st, "default", STORE_BOUNCES, 0, email, &f, NULL, &why) < 0) {
            fprintf(stderr, "seed: %s\n", buf_str(&why));
            return 1;
        }
    }
    if (store_bulk_end(st, 1, &why) < 0) {
        fprintf(stderr, "seed: %s\n", buf_str(&why));
        return 1;
    }
    store_close(st);

    if ((pid = fork()) == 0) {
        writer();
        _exit(0);
    }
    if ((rst = store_open(dir, STORE_READ, &why)) == NULL) {
        fprintf(stderr, "reader: %s\n", buf_str(&why));
        kill(pid, SIGTERM);
        return 1;
    }
    t0 = now();
    memset(rs, 0, sizeof(rs));
    for (int i = 0; i < threads; i++)
        pthread_create(&tid[i], NULL, reader, &rs[i]);
    waitpid(pid, &status, 0);
    atomic_store(&sh->writer_done, 1);
    memset(&tot, 0, sizeof(tot));
    for (int i = 0; i < threads; i++) {
        pthread_join(tid[i], NULL);
        tot.lookups += rs[i].lookups;
        tot.errors += rs[i].errors;
        tot.torn += rs[i].torn;
        tot.invisible += rs[i].invisible;
        if (rs[i].max_us > tot.max_us)
            tot.max_us = rs[i].max_us;
    }
    store_close(rst);
    printf("seconds=%.1f reader_threads=%d\n", now() - t0, threads);
    printf("writer_commits=%ld writer_errors=%ld writer_max_lock_wait_ms=%.1f "
           "writer_max_begin_ms=%.1f\n",
           atomic_load(&sh->commits), atomic_load(&sh->writer_errors),
           (double)atomic_load(&sh->lock_wait_us) / 1000.0,
           (double)atomic_load(&sh->max_wait_us) / 1000.0);
    printf("reader_lookups=%ld reader_errors=%ld torn_records=%ld "
           "not_visible_after_commit=%ld "
           "reader_max_lookup_ms=%.1f longest_bulk_ms=%.1f\n",
           tot.lookups, tot.errors, tot.torn, tot.invisible, tot.max_us / 1000.0,
           (double)atomic_load(&sh->bulk_us) / 1000.0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("FAIL: the writer process died\n");
        failed = 1;
    }
    if (atomic_load(&sh->writer_errors) || tot.errors || tot.torn || tot.invisible) {
        printf("FAIL: errors, torn records or invisible commits\n");
        failed = 1;
    }
    if (atomic_load(&sh->lock_wait_us) > 100000) {
        printf("FAIL: a writer waited longer than 100 ms\n");
        failed = 1;
    }
    if (atomic_load(&sh->bulk_us) == 0) {
        printf("FAIL: no bulk operation ran\n");
        failed = 1;
    } else if (tot.max_us > 100000.0 && tot.max_us > atomic_load(&sh->bulk_us) / 2.0) {
        /* a reader held up for most of a bulk operation: it did not get in */
        printf("FAIL: a lookup waited longer than 100 ms, and half a bulk operation\n");
        failed = 1;
    }
    if (atomic_load(&sh->commits) < 10 || tot.lookups < 1000) {
        printf("FAIL: too little happened to prove anything\n");
        failed = 1;
    }
    buf_release(&why);
    printf("%s\n", failed ? "store_concurrency: FAIL" : "store_concurrency: ok");
    return failed;
}
