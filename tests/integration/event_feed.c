/*
 * event_feed - record events as sendguard's programs do, for the stats
 * tests: one JSON object per line on stdin, with its "timestamp".  Opens
 * and clicks are recorded as sgtrackd records them (event_line, unique by
 * stats_first with the message's send time, the line's "sent", which is
 * not written); everything else with event_record.  Counts are kept as the
 * events are (lib/stats).
 *
 *   event_feed STORE_DIR < events.jsonl
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "event.h"
#include "stats.h"

int main(int argc, char **argv)
{
    char line[65536];
    struct buf why;
    long n = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: event_feed STORE_DIR < events.jsonl\n");
        return 2;
    }
    buf_init(&why, 128);
    while (fgets(line, sizeof(line), stdin)) {
        json_t *ev = json_loads(line, 0, NULL), *cat;
        const char *type;
        int rc;

        if (ev == NULL ||
            (type = json_string_value(json_object_get(ev, "event"))) == NULL) {
            fprintf(stderr, "event_feed: line %ld is no event\n", n + 1);
            return 1;
        }
        if (strcmp(type, "open") == 0 || strcmp(type, "click") == 0) {
            struct event_line l;
            const char *msgid = json_string_value(json_object_get(ev, "sg_message_id"));
            const char *email = json_string_value(json_object_get(ev, "email"));
            const char *tenant = json_string_value(json_object_get(ev, "tenant"));
            int first;

            event_line_begin_at(&l, json_integer_value(json_object_get(ev, "timestamp")),
                                type, email, tenant);
            first = stats_first(argv[1], json_integer_value(json_object_get(ev, "sent")),
                                type[0], tenant, msgid, email, &why);
            if (first < 0) {
                fprintf(stderr, "event_feed: %s\n", buf_str(&why));
                return 1;
            }
            l.unique = first;
            event_line_str(&l, "sg_message_id", msgid, strlen(msgid));
            if ((cat = json_object_get(ev, "category")) != NULL) {
                char *m = json_dumps(cat, JSON_COMPACT);
                struct buf members;

                buf_init(&members, 64);
                buf_printf(&members, "\"category\":%s", m);
                event_line_members(&l, members.data, members.len);
                buf_release(&members);
                free(m);
            }
            rc = event_line_end(argv[1], &l, &why);
        } else {
            rc = event_record(argv[1], ev, &why);
        }
        if (rc < 0) {
            fprintf(stderr, "event_feed: %s\n", buf_str(&why));
            return 1;
        }
        json_decref(ev);
        n++;
    }
    buf_release(&why);
    printf("%ld\n", n);
    return 0;
}
