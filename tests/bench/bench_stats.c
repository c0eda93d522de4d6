/*
 * bench_stats - recording events with their counters (lib/event, lib/stats)
 * from several processes at once.
 *
 *   bench_stats STORE_DIR PROCS EVENTS DAYS
 *
 * PROCS processes record EVENTS events in all, spread evenly over the DAYS
 * days before today (UTC), as the milter, the relay and the tracker record
 * them: event_record for processed, delivered and bounces, event_line for
 * opens and clicks (unique by stats_first), each with one of 5 categories
 * and one of 3 tenants.  Prints "events=.. seconds=.. events_per_s=..".
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "event.h"
#include "stats.h"

static int record(const char *dir, long i, long events, int days, struct buf *why)
{
    static const char *const types[] = {"processed", "delivered", "open", "processed",
                                        "delivered", "click",     "open", "bounce"};
    static const char *const tenants[] = {"acme", "beta", "gamma"};
    static const char *const cats[] = {"news", "promo", "winter", "billing", "alerts"};
    int64_t now = (int64_t)time(NULL);
    int64_t ts =
        now - (int64_t)days * 86400 + (int64_t)((double)i / events * days * 86400);
    const char *type = types[i % 8], *tenant = tenants[i % 3], *cat = cats[(i / 8) % 5];
    char email[64], msg[32];

    snprintf(email, sizeof(email), "u%ld@example%ld.org", i / 4, i % 50);
    snprintf(msg, sizeof(msg), "M%ld", i / 16);
    if (type[0] == 'o' || type[0] == 'c') {
        struct event_line l;
        char members[64];
        int first;

        event_line_begin_at(&l, ts, type, email, tenant);
        if ((first = stats_first(dir, ts, type[0], tenant, msg, email, why)) < 0)
            return -1;
        l.unique = first;
        event_line_str(&l, "sg_message_id", msg, strlen(msg));
        snprintf(members, sizeof(members), "\"category\":[\"%s\"]", cat);
        event_line_members(&l, members, strlen(members));
        return event_line_end(dir, &l, why);
    } else {
        json_t *ev = json_pack("{s:s,s:s,s:s,s:I,s:s,s:[s]}", "event", type, "email",
                               email, "tenant", tenant, "timestamp", (json_int_t)ts,
                               "sg_message_id", msg, "category", cat);
        int rc;

        if (type[0] == 'b')
            json_object_set_new(ev, "type", json_string("bounce"));
        rc = event_record(dir, ev, why);
        json_decref(ev);
        return rc;
    }
}

int main(int argc, char **argv)
{
    struct timespec a, b;
    int procs, days;
    long events;
    double s;

    if (argc != 5) {
        fprintf(stderr, "usage: bench_stats STORE_DIR PROCS EVENTS DAYS\n");
        return 2;
    }
    procs = atoi(argv[2]);
    events = atol(argv[3]);
    days = atoi(argv[4]);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int p = 0; p < procs; p++) {
        if (fork() == 0) {
            struct buf why;

            buf_init(&why, 128);
            for (long i = p; i < events; i += procs)
                if (record(argv[1], i, events, days, &why) < 0) {
                    fprintf(stderr, "bench_stats: %s\n", buf_str(&why));
                    _exit(1);
                }
            _exit(0);
        }
    }
    for (int p = 0; p < procs; p++) {
        int st;

        if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    printf("events=%ld procs=%d seconds=%.3f events_per_s=%.0f\n", events, procs, s,
           (double)events / s);
    return 0;
}
