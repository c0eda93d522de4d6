/*
 * events - sgadmin events list: the event log, newest first.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "address.h"
#include "cli.h"
#include "event.h"
#include "mymalloc.h"

static int collect(json_t *ev, void *ctx)
{
    json_array_append(ctx, ev);
    return 0;
}

/* cmd_list - sgadmin events list [--since T] [--until T] [--type X] [--email A] [--limit
 * N] */
static int cmd_list(struct cli *c, int argc, char **argv)
{
    const char *since = NULL, *until = NULL, *type = NULL, *email = NULL, *limit = NULL;
    struct cli_opt opts[] = {
        {"since", 1, &since, NULL}, {"until", 1, &until, NULL}, {"type", 1, &type, NULL},
        {"email", 1, &email, NULL}, {"limit", 1, &limit, NULL}, {NULL, 0, NULL, NULL},
    };
    struct event_query q = {0, 0, NULL, NULL, NULL, 100, 0};
    int rc;
    long long skipped = 0;
    const char *dir;
    struct buf why, addr;
    json_t *rows;

    if ((rc = cli_parse_options(c, argc, argv, opts)) != 0)
        return rc;
    if ((since && (rc = cli_time(c, "since", since, &q.since)) != 0) ||
        (until && (rc = cli_time(c, "until", until, &q.until)) != 0) ||
        (limit && (rc = cli_number(c, "--limit", limit, 1, 1000000, &q.limit)) != 0))
        return rc;
    buf_init(&why, 128);
    buf_init(&addr, 128);
    if (email && address_normalize(email, &addr, &why) < 0) {
        rc = cli_fail(EX_DATAERR, "--email %s: %s", email, buf_str(&why));
        goto out;
    }
    q.email = email ? buf_str(&addr) : NULL;
    q.type = type;
    q.tenant = c->tenant;
    /* The event log needs no database: a store that was never written to
       simply has no events yet. */
    if ((dir = cli_store_dir(c, &rc)) == NULL)
        goto out;
    rows = json_array();
    if (event_query(dir, &q, collect, rows, &skipped, &why) < 0) {
        rc = cli_fail(EX_IOERR, "%s", buf_str(&why));
    } else if (c->json) {
        cli_print_json(json_incref(rows));
    } else {
        static const char *const k[] = {"created", "event", "email", "detail", NULL};
        static const char *const h[] = {"TIME (UTC)", "EVENT", "EMAIL", "DETAIL", NULL};
        size_t i;
        json_t *ev;

        /* the table's time column is "created"; its detail the reason, else
         * a click's link, else the group */
        json_array_foreach (rows, i, ev) {
            json_t *d = json_object_get(ev, "reason");
            json_object_set(ev, "created", json_object_get(ev, "timestamp"));
            if (!json_is_string(d))
                d = json_object_get(ev, "url");
            if (json_is_string(d))
                json_object_set(ev, "detail", d);
            else if (json_is_integer(d = json_object_get(ev, "asm_group_id")))
                json_object_set_new(
                    ev, "detail",
                    json_sprintf("group %" JSON_INTEGER_FORMAT, json_integer_value(d)));
        }
        cli_print_table(rows, k, h);
    }
    if (skipped)
        cli_fail(0, "warning: %lld unreadable lines in the event log were skipped",
                 skipped);
    json_decref(rows);
out:
    buf_release(&why);
    buf_release(&addr);
    return rc;
}

const struct cli_verb event_verbs[] = {
    {"list", cmd_list, "[--since T] [--until T] [--type X] [--email A] [--limit N]",
     "events, newest first (default limit 100)"},
    {NULL, NULL, NULL, NULL},
};
