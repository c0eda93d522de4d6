/*
 * stats - counters kept as events are recorded: per tenant, day, category
 * and metric, so that "sgadmin stats" reads a few small files however long
 * the event log has grown (issue "Stats and the event webhook").
 *
 * METRICS (the hosted services' names).  From each event:
 *   processed          requests + processed (every recipient the pipeline
 *                      decided on; a later drop takes processed back)
 *   dropped            the drop's reason: bounce_drops, spam_report_drops,
 *                      unsubscribe_drops (global or group), invalid_emails;
 *                      every drop counts -1 processed
 *   delivered, deferred
 *   bounce             bounces (type "bounce") or blocks (type "blocked")
 *   spamreport         spam_reports
 *   unsubscribe, group_unsubscribe   unsubscribes
 *   open, click        opens, clicks
 * unique_opens and unique_clicks are counted by stats_first (below).
 *
 * FILES.  STORE/stats/DAY.cnt, DAY the event's day (YYYY-MM-DD) in
 * stats.timezone (default UTC): a header and an array of slots, one per
 * (tenant, category) seen that day, category "" being all of the tenant's
 * mail; a slot holds the metrics as 64-bit counters.  Every process maps
 * the file shared and adds with atomic instructions, so processes and
 * threads count at once without a lock; a slot is appended (rarely: once a
 * day per tenant and category) under an exclusive flock of the file, and a
 * process whose mapping is shorter than the slot count remaps.  A crash of
 * a process loses nothing it added (the page cache has it); the counters
 * are not synced, and "sgadmin stats --rebuild" recomputes them from the
 * event log.
 *
 * Errors are reported and never stop the event being recorded: a counter
 * that cannot be kept is a lost count, not a lost event.
 */
#ifndef SG_STATS_H
#define SG_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum stats_metric {
    STATS_REQUESTS,
    STATS_PROCESSED,
    STATS_DELIVERED,
    STATS_DEFERRED,
    STATS_BOUNCES,
    STATS_BLOCKS,
    STATS_BOUNCE_DROPS,
    STATS_SPAM_REPORTS,
    STATS_SPAM_REPORT_DROPS,
    STATS_UNSUBSCRIBES,
    STATS_UNSUBSCRIBE_DROPS,
    STATS_OPENS,
    STATS_UNIQUE_OPENS,
    STATS_CLICKS,
    STATS_UNIQUE_CLICKS,
    STATS_INVALID_EMAILS,
    STATS_NMETRICS
};

#define STATS_TENANT_MAX 64
#define STATS_CATEGORY_MAX 255

/* stats_metric_name - "requests", "processed", ... as the hosted APIs name them */
const char *stats_metric_name(enum stats_metric m);

/*
 * stats_add - add n to each metric of ms (nm of them) of tenant on the day
 * of ts (tz: a time zone name as TZ takes it, NULL or "" for UTC), for all
 * its mail and for each of the ncats categories; 0, or -1 with why filled
 */
int stats_add(const char *store_dir, const char *tz, int64_t ts, const char *tenant,
              const char *const *cats, size_t ncats, const enum stats_metric *ms,
              const int64_t *n, size_t nm, struct buf *why);

/*
 * stats_event - the metrics an event of this type (with reason or type,
 * as the event carries them) adds to, into ms and n; how many
 */
size_t stats_event(const char *event, const char *reason, const char *type,
                   enum stats_metric ms[4], int64_t n[4]);

/*
 * stats_first - is this the first open (or click: kind 'o', 'c') of the
 * message by the recipient?  1 yes (it is remembered now), 0 no, -1 with
 * why filled.  Remembered in STORE/stats/seen-DAY[.N].set, DAY the day the
 * message was sent (sent: its token's time), so that the sets stay the size
 * of one day's mail: open-addressing tables of 64-bit hashes (SHA-256 of
 * tenant, message, recipient and kind), mapped shared, filled with
 * compare-and-swap (no lock); a table more than 3/4 full is followed by a
 * next one twice its size (the first has 65,536 slots: 512 KiB, about
 * 49,000 opens and clicks).  Each (message, recipient) counts once, whenever it opens.
 */
int stats_first(const char *store_dir, int64_t sent, char kind, const char *tenant,
                const char *message, const char *email, struct buf *why);

/* One day's counters of one tenant and category, as stats_read gives them. */
struct stats_row {
    char day[11];
    const char *tenant;
    const char *category; /* "" for all of the tenant's mail */
    int64_t m[STATS_NMETRICS];
};

/*
 * stats_read - call fn for each (day, tenant, category) slot of the days
 * from first to last (YYYY-MM-DD, inclusive), day by day; tenant NULL: every
 * tenant; 0, or -1 with why filled (a file that is not a counter file)
 */
typedef int (*stats_fn)(const struct stats_row *row, void *ctx);
int stats_read(const char *store_dir, const char *first, const char *last,
               const char *tenant, stats_fn fn, void *ctx, struct buf *why);

/*
 * stats_day - the day (YYYY-MM-DD) of ts in tz: NULL, "" or "UTC", a
 * fixed offset such as "+02:00" or "-0500", or the zone stats_set_timezone
 * made the process's
 */
void stats_day(int64_t ts, const char *tz, char day[11]);

/*
 * stats_set_timezone - the time zone stats_add uses when given none (the
 * event log's writers): NULL, "" or "UTC", a fixed offset, or the name of
 * a zone of the tz database ("Europe/Berlin"), which becomes the process's
 * TZ: so it is set once, at start, before threads (a later call with
 * another name is refused, with a warning: a change takes a restart)
 */
void stats_set_timezone(const char *tz);

/* stats_configure - stats_set_timezone(stats.timezone); call after each conf_load */
struct conf;
void stats_configure(const struct conf *conf);

#endif
