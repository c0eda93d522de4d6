/*
 * bench_store - recipient decisions against a store of N entries.
 *
 *   bench_store DIR [N]
 *
 * Builds (if DIR has no store yet) N entries spread over every list: bounces,
 * spam reports, global unsubscribes, two groups' suppressions and the allow
 * list, with 1,000 domain entries and 10,000 digests (half MD5, half
 * SHA-256) among them.  Then times, single-threaded, one full recipient
 * decision (normalise, look up exact + domain + MD5 + SHA-256 + allow list +
 * one group, decide) for a mix of listed and unlisted addresses, and beside
 * it, in the same run, the raw cost of four Tokyo Cabinet gets on the same
 * file, which is the floor the design sits on.  Prints key=value lines.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <tchdb.h>

#include "address.h"
#include "policy.h"
#include "store.h"

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void die(const char *what, struct buf *why)
{
    fprintf(stderr, "bench_store: %s: %s\n", what, buf_str(why));
    exit(1);
}

/* build - n entries spread over the lists */
static void build(const char *dir, long n, uint32_t *g1)
{
    struct buf why, key;
    struct store *st;
    uint32_t g2, old;
    char email[96], md5[33], sha[65];
    double t0 = now();
    long added = 0;

    buf_init(&why, 128);
    buf_init(&key, 128);
    if ((st = store_open(dir, STORE_WRITE | STORE_CREATE, &why)) == NULL)
        die("open", &why);
    store_set_batch(st,
                    getenv("BENCH_BATCH") ? (size_t)atol(getenv("BENCH_BATCH")) : 10000);
    if (store_group_create(st, "default", "News", "", 1, g1, &old, &why) < 0 ||
        store_group_create(st, "default", "Offers", "", 0, &g2, &old, &why) < 0)
        die("groups", &why);
    store_bulk_begin(st);
    for (long i = 0; i < n; i++) {
        enum store_list list;
        uint32_t grp = 0;
        long r = i % 100;
        const char *entry = email;

        /* 50% bounces, 15% spam, 20% unsubscribes, 14% groups, 1% allow */
        list = r < 50   ? STORE_BOUNCES
               : r < 65 ? STORE_SPAM_REPORTS
               : r < 85 ? STORE_UNSUBSCRIBES
               : r < 99 ? STORE_GROUP
                        : STORE_ALLOW;
        if (list == STORE_GROUP)
            grp = r < 92 ? *g1 : g2;
        if (i < 1000) {
            snprintf(email, sizeof(email), "@blocked%ld.example", i);
            list = STORE_BOUNCES;
            grp = 0;
        } else if (i < 11000) {
            snprintf(email, sizeof(email), "hashed%ld@list.example", i);
            address_key(email, &key);
            address_digests(key.data, key.len, md5, sha);
            entry = i % 2 ? md5 : sha;
            list = STORE_UNSUBSCRIBES;
            grp = 0;
        } else {
            snprintf(email, sizeof(email), "user%ld@domain%ld.example", i, i % 5000);
        }
        if (store_add(st, "default", list, grp, entry, NULL, NULL, &why) < 0)
            die("add", &why);
        added++;
    }
    if (store_bulk_end(st, 1, &why) < 0)
        die("commit", &why);
    store_close(st);
    printf("build_entries=%ld build_seconds=%.2f build_rate_per_s=%.0f\n", added,
           now() - t0, added / (now() - t0));
    buf_release(&why);
    buf_release(&key);
}

/* dir_bytes - bytes of the store's database files */
static long long dir_bytes(const char *dir)
{
    const char *files[] = {"entries.tch", "index.tcb"};
    long long total = 0;
    char path[512];
    struct stat sb;

    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        if (stat(path, &sb) == 0)
            total += (long long)sb.st_blocks * 512;
    }
    return total;
}

int main(int argc, char **argv)
{
    const char *dir;
    long n = 1000000, samples = 200000;
    struct buf why, addr;
    struct store *st;
    struct store_hits hits;
    struct policy_decision d;
    struct smtpapi_opts opts;
    uint32_t g1 = 1;
    double *lat, t0, raw;
    long drops = 0;
    char email[96], path[512];
    struct stat sb;
    TCHDB *hdb;

    if (argc < 2) {
        fprintf(stderr, "usage: bench_store DIR [N]\n");
        return 2;
    }
    dir = argv[1];
    if (argc > 2)
        n = atol(argv[2]);
    snprintf(path, sizeof(path), "%s/entries.tch", dir);
    if (stat(path, &sb) != 0)
        build(dir, n, &g1);
    if (getenv("BENCH_BUILD_ONLY"))
        return 0;
    printf("store_bytes=%lld store_mb_per_million_entries=%.1f\n", dir_bytes(dir),
           (double)dir_bytes(dir) / 1048576.0 / ((double)n / 1e6));

    buf_init(&why, 128);
    buf_init(&addr, 128);
    if ((st = store_open(dir, STORE_READ, &why)) == NULL)
        die("open", &why);
    store_hits_init(&hits);
    smtpapi_init(&opts);
    opts.asm_group_id = g1;
    lat = malloc(sizeof(double) * (size_t)samples);
    srand(42);
    for (long s = 0; s < samples; s++) {
        long i = 11000 + rand() % (n - 11000);
        int k = rand() % 4;

        /* a listed address, an unlisted one at a listed domain, a blocked
           domain, a hashed entry */
        if (k == 0)
            snprintf(email, sizeof(email), "User%ld@Domain%ld.example", i, i % 5000);
        else if (k == 1)
            snprintf(email, sizeof(email), "nobody%ld@domain%ld.example", i, i % 5000);
        else if (k == 2)
            snprintf(email, sizeof(email), "x%ld@blocked%ld.example", i, i % 1000);
        else
            snprintf(email, sizeof(email), "hashed%ld@list.example", 1000 + i % 10000);
        t0 = now();
        if (address_normalize(email, &addr, &why) < 0)
            die(email, &why);
        if (store_lookup(st, "default", buf_str(&addr), g1, &hits, &why) < 0)
            die("lookup", &why);
        policy_decide(&hits, &opts, &d);
        lat[s] = (now() - t0) * 1e6;
        drops += d.action == POLICY_DROP;
    }
    qsort(lat, (size_t)samples, sizeof(double), cmp_double);
    printf("decisions=%ld dropped=%ld decision_median_us=%.2f decision_p90_us=%.2f "
           "decision_p99_us=%.2f decision_max_us=%.1f\n",
           samples, drops, lat[samples / 2], lat[samples * 9 / 10],
           lat[samples * 99 / 100], lat[samples - 1]);
    store_hits_free(&hits);
    store_close(st);

    /* The floor, side by side: four raw gets on the same hash file. */
    hdb = tchdbnew();
    tchdbsetxmsiz(hdb, 256LL << 20);
    if (!tchdbopen(hdb, path, HDBOREADER | HDBONOLCK)) {
        fprintf(stderr, "bench_store: raw open failed\n");
        return 1;
    }
    t0 = now();
    for (long s = 0; s < samples; s++) {
        long i = 11000 + rand() % (n - 11000);
        int len = snprintf(email, sizeof(email), "Edefault%cuser%ld@domain%ld.example", 0,
                           i, i % 5000);
        int sz;

        for (int k = 0; k < 4; k++) {
            void *v = tchdbget(hdb, email, len - k, &sz);

            free(v);
        }
    }
    raw = (now() - t0) * 1e6 / (double)samples;
    tchdbclose(hdb);
    tchdbdel(hdb);
    printf("raw_tc_4gets_mean_us=%.2f decision_over_raw_ratio=%.2f\n", raw,
           lat[samples / 2] / raw);
    printf("bar_decision_median_le_20us=%s bar_decision_p99_le_100us=%s\n",
           lat[samples / 2] <= 20 ? "pass" : "FAIL",
           lat[samples * 99 / 100] <= 100 ? "pass" : "FAIL");
    free(lat);
    smtpapi_free(&opts);
    buf_release(&why);
    buf_release(&addr);
    return 0;
}
