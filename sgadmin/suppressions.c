/*
 * suppressions - sgadmin bounces | spam-reports | unsubscribes | allow-list.
 *
 * The four lists share their verbs; what differs (the fields a bounce or a
 * spam report carries, whether a second add keeps or replaces) is decided by
 * the store, so one implementation serves them all.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include <tcutil.h>

#include "cli.h"
#include "csv.h"
#include "mymalloc.h"

/* record_json - a record as the hosted APIs show it */
json_t *suppression_json(const struct store_record *r);
json_t *suppression_json(const struct store_record *r)
{
    json_t *o = json_object();

    json_object_set_new(o, "created", json_integer(r->created));
    json_object_set_new(o, "email", json_string(r->email));
    if (r->list == STORE_BOUNCES) {
        json_object_set_new(o, "reason", json_string(r->reason));
        json_object_set_new(o, "status", json_string(r->status));
        json_object_set_new(o, "bounce_type", json_string(r->bounce_type));
    } else if (r->list == STORE_SPAM_REPORTS) {
        unsigned char addr[16];

        if (inet_pton(AF_INET, r->source, addr) == 1 ||
            inet_pton(AF_INET6, r->source, addr) == 1)
            json_object_set_new(o, "ip", json_string(r->source));
        json_object_set_new(o, "source", json_string(r->source));
    }
    return o;
}

/* collect - listing callback: append to a JSON array */
static int collect(const struct store_record *r, void *ctx)
{
    json_array_append_new(ctx, suppression_json(r));
    return 0;
}

/* print_rows - a list of records as JSON or a table */
static void print_rows(struct cli *c, json_t *rows)
{
    static const char *const bk[] = {"created", "email",  "bounce_type",
                                     "status",  "reason", NULL};
    static const char *const bh[] = {"CREATED (UTC)", "EMAIL",  "TYPE",
                                     "STATUS",        "REASON", NULL};
    static const char *const sk[] = {"created", "email", "source", NULL};
    static const char *const sh[] = {"CREATED (UTC)", "EMAIL", "SOURCE", NULL};
    static const char *const uk[] = {"created", "email", NULL};
    static const char *const uh[] = {"CREATED (UTC)", "EMAIL", NULL};

    if (c->json) {
        cli_print_json(json_incref(rows));
        return;
    }
    if (c->list == STORE_BOUNCES)
        cli_print_table(rows, bk, bh);
    else if (c->list == STORE_SPAM_REPORTS)
        cli_print_table(rows, sk, sh);
    else
        cli_print_table(rows, uk, uh);
}

/* cmd_list - sgadmin LIST list */
static int cmd_list(struct cli *c, int argc, char **argv)
{
    const char *limit = NULL, *offset = NULL, *start = NULL, *end = NULL, *email = NULL;
    struct cli_opt opts[] = {
        {"limit", 1, &limit, NULL},      {"offset", 1, &offset, NULL},
        {"start-time", 1, &start, NULL}, {"end-time", 1, &end, NULL},
        {"email", 1, &email, NULL},      {NULL, 0, NULL, NULL},
    };
    struct store_query q = {0, 50, 0, 0, NULL};
    long long v, total = -1;
    int rc;
    json_t *rows;
    struct buf why;

    if ((rc = cli_parse_options(c, argc, argv, opts)) != 0)
        return rc;
    if (limit && (rc = cli_number(c, "--limit", limit, 1, 500, &q.limit)) != 0)
        return rc;
    if (offset && (rc = cli_number(c, "--offset", offset, 0, LLONG_MAX, &v)) != 0)
        return rc;
    q.offset = offset ? v : 0;
    if (start && (rc = cli_time(c, "start-time", start, &q.start_time)) != 0)
        return rc;
    if (end && (rc = cli_time(c, "end-time", end, &q.end_time)) != 0)
        return rc;
    if (q.start_time && q.end_time && q.start_time > q.end_time)
        return cli_usage_error(c, "--start-time is after --end-time");
    q.email = email;
    if ((email && (rc = cli_entry(email)) != 0) || (rc = cli_open(c, STORE_READ)) != 0)
        return rc;
    buf_init(&why, 128);
    rows = json_array();
    if (store_list(c->st, c->tenant, c->list, 0, &q, collect, rows, &total, &why) < 0) {
        rc = cli_fail(EX_UNAVAILABLE, "%s", buf_str(&why));
    } else {
        print_rows(c, rows);
        if (!c->json)
            printf("-- %zu shown, %lld matching, offset %lld\n", json_array_size(rows),
                   total, q.offset);
    }
    json_decref(rows);
    buf_release(&why);
    return rc;
}

/* cmd_get - sgadmin LIST get ADDRESS */
static int cmd_get(struct cli *c, int argc, char **argv)
{
    char **pos;
    int npos, rc, found;
    json_t *rows;
    struct buf why;

    if ((rc = cli_parse(c, argc, argv, NULL, &pos, &npos)) != 0)
        return rc;
    if (npos != 1) {
        myfree(pos);
        return cli_usage_error(c, "give one address");
    }
    if ((rc = cli_entry(pos[0])) != 0 || (rc = cli_open(c, STORE_READ)) != 0) {
        myfree(pos);
        return rc;
    }
    buf_init(&why, 128);
    rows = json_array();
    found = store_get(c->st, c->tenant, c->list, 0, pos[0], collect, rows, &why);
    if (found < 0)
        rc = cli_fail(EX_UNAVAILABLE, "%s", buf_str(&why));
    else if (found == 0)
        rc = cli_fail(EX_NOUSER, "%s is not on the %s list", pos[0],
                      store_list_name(c->list));
    else if (c->json)
        cli_print_json(json_incref(json_array_get(rows, 0)));
    else
        print_rows(c, rows);
    json_decref(rows);
    buf_release(&why);
    myfree(pos);
    return rc;
}

/* report_add - say what an add did to one entry */
static void report_add(struct cli *c, json_t *out, const char *entry,
                       enum store_add_result res)
{
    static const char *const names[] = {"added", "kept", "updated"};
    json_t *rec = json_object();

    json_object_set_new(rec, "email", json_string(entry));
    json_object_set_new(rec, "result", json_string(names[res]));
    json_array_append_new(out, rec);
    if (c->json)
        return;
    if (res == STORE_ADDED)
        printf("added %s\n", entry);
    else if (res == STORE_KEPT)
        printf("%s is already listed; kept the first created time\n", entry);
    else
        printf("%s was already listed; replaced its bounce with this one\n", entry);
}

/* cmd_add - sgadmin LIST add ADDRESS... [fields] */
static int cmd_add(struct cli *c, int argc, char **argv)
{
    const char *type = NULL, *reason = NULL, *status = NULL, *source = NULL,
               *created = NULL;
    struct cli_opt bounce_opts[] = {
        {"type", 1, &type, NULL},     {"reason", 1, &reason, NULL},
        {"status", 1, &status, NULL}, {"created", 1, &created, NULL},
        {NULL, 0, NULL, NULL},
    };
    struct cli_opt spam_opts[] = {{"source", 1, &source, NULL},
                                  {"created", 1, &created, NULL},
                                  {NULL, 0, NULL, NULL}};
    struct cli_opt plain_opts[] = {{"created", 1, &created, NULL}, {NULL, 0, NULL, NULL}};
    struct store_fields f = {0, NULL, NULL, NULL, NULL};
    char **pos;
    int npos, rc, status_code = 0;
    json_t *out;
    struct buf why;

    if ((rc = cli_parse(c, argc, argv,
                        c->list == STORE_BOUNCES        ? bounce_opts
                        : c->list == STORE_SPAM_REPORTS ? spam_opts
                                                        : plain_opts,
                        &pos, &npos)) != 0)
        return rc;
    if (npos == 0) {
        myfree(pos);
        return cli_usage_error(c, "give at least one address");
    }
    if (type && strcmp(type, "hard") && strcmp(type, "soft") && strcmp(type, "block")) {
        myfree(pos);
        return cli_usage_error(c, "--type must be hard, soft or block");
    }
    if (created && (rc = cli_time(c, "created", created, &f.created)) != 0) {
        myfree(pos);
        return rc;
    }
    f.bounce_type = type;
    f.reason = reason;
    f.status = status;
    f.source = source;
    for (int i = 0; i < npos; i++)
        if (cli_entry(pos[i]) != 0)
            status_code = EX_DATAERR;
    if (status_code || (rc = cli_open(c, STORE_WRITE | STORE_CREATE)) != 0) {
        myfree(pos);
        return status_code ? status_code : rc;
    }
    buf_init(&why, 128);
    out = json_array();
    for (int i = 0; i < npos; i++) {
        enum store_add_result res;

        if (store_add(c->st, c->tenant, c->list, 0, pos[i], &f, &res, &why) < 0) {
            status_code = cli_fail(EX_TEMPFAIL, "%s: %s", pos[i], buf_str(&why));
            continue;
        }
        report_add(c, out, pos[i], res);
    }
    if (c->json)
        cli_print_json(json_incref(out));
    json_decref(out);
    buf_release(&why);
    myfree(pos);
    return status_code;
}

/* column roles in an import file */
enum col { COL_EMAIL, COL_REASON, COL_STATUS, COL_TYPE, COL_SOURCE, COL_CREATED, NCOL };

static const char *const col_names[NCOL] = {"email",       "reason", "status",
                                            "bounce_type", "source", "created"};

/* header_map - a first row naming its columns: map names to roles (map is
   changed only when the row is a header) */
static int header_map(const struct csv_row *row, int map[NCOL])
{
    int named = 0, found[NCOL];

    for (int k = 0; k < NCOL; k++)
        found[k] = -1;
    for (size_t i = 0; i < row->nfields; i++) {
        const char *name = row->field[i];

        for (int k = 0; k < NCOL; k++)
            if (strcasecmp(name, col_names[k]) == 0 ||
                (k == COL_TYPE && strcasecmp(name, "type") == 0) ||
                (k == COL_SOURCE && strcasecmp(name, "ip") == 0)) {
                found[k] = (int)i;
                named++;
            }
    }
    if (named == 0 || found[COL_EMAIL] < 0)
        return 0;
    memcpy(map, found, sizeof(found));
    return 1;
}

/* cmd_import - sgadmin LIST import FILE|- [--strict] */
static int cmd_import(struct cli *c, int argc, char **argv)
{
    int strict = 0;
    struct cli_opt opts[] = {{"strict", 0, NULL, &strict}, {NULL, 0, NULL, NULL}};
    char **pos;
    int npos, rc, map[NCOL], first = 1, r;
    FILE *fp;
    struct csv_reader *csv;
    struct csv_row row;
    struct buf why, disp, key;
    TCLIST *rows;
    long long bad = 0, good = 0, added = 0, kept = 0, updated = 0;
    enum address_kind kind;

    if ((rc = cli_parse(c, argc, argv, opts, &pos, &npos)) != 0)
        return rc;
    if (npos != 1) {
        myfree(pos);
        return cli_usage_error(c, "give one file, or - for standard input");
    }
    fp = strcmp(pos[0], "-") == 0 ? stdin : fopen(pos[0], "r");
    if (fp == NULL) {
        rc = cli_fail(EX_NOINPUT, "cannot open %s: %s", pos[0], strerror(errno));
        myfree(pos);
        return rc;
    }
    /* Pass 1: read and check every row; nothing is written yet. */
    for (int k = 0; k < NCOL; k++)
        map[k] = k == COL_EMAIL ? 0 : -1;
    map[c->list == STORE_SPAM_REPORTS ? COL_SOURCE : COL_REASON] =
        c->list == STORE_BOUNCES || c->list == STORE_SPAM_REPORTS ? 1 : -1;
    if (c->list == STORE_BOUNCES) {
        map[COL_STATUS] = 2;
        map[COL_TYPE] = 3;
    }
    buf_init(&why, 128);
    buf_init(&disp, 64);
    buf_init(&key, 64);
    rows = tclistnew();
    csv = csv_open(fp);
    while ((r = csv_read(csv, &row, &why)) != 0) {
        const char *fields[NCOL];

        if (r == -2) {
            rc = cli_fail(EX_IOERR, "%s: %s; nothing imported", pos[0], buf_str(&why));
            goto out;
        }
        if (r == -1) {
            fprintf(stderr, "sgadmin: %s:%zu: %s\n", pos[0], row.line, buf_str(&why));
            bad++;
            continue;
        }
        if (first) {
            first = 0;
            if (header_map(&row, map))
                continue;
        }
        for (int k = 0; k < NCOL; k++)
            fields[k] =
                map[k] >= 0 && (size_t)map[k] < row.nfields ? row.field[map[k]] : "";
        if (address_parse_entry(fields[COL_EMAIL], &kind, &disp, &key, &why) < 0) {
            fprintf(stderr, "sgadmin: %s:%zu: %s\n", pos[0], row.line, buf_str(&why));
            bad++;
            continue;
        }
        if (fields[COL_TYPE][0] && strcmp(fields[COL_TYPE], "hard") &&
            strcmp(fields[COL_TYPE], "soft") && strcmp(fields[COL_TYPE], "block")) {
            fprintf(stderr,
                    "sgadmin: %s:%zu: bounce type '%s' is not hard, soft or block\n",
                    pos[0], row.line, fields[COL_TYPE]);
            bad++;
            continue;
        }
        if (fields[COL_CREATED][0]) {
            char *end;
            long long t;

            errno = 0;
            t = strtoll(fields[COL_CREATED], &end, 10);
            if (errno || *end || t <= 0) {
                fprintf(stderr, "sgadmin: %s:%zu: created '%s' is not unix seconds\n",
                        pos[0], row.line, fields[COL_CREATED]);
                bad++;
                continue;
            }
        }
        /* Keep the row as NUL-separated fields. */
        buf_reset(&disp);
        for (int k = 0; k < NCOL; k++)
            buf_append(&disp, fields[k], strlen(fields[k]) + 1);
        tclistpush(rows, disp.data, (int)disp.len);
        good++;
        cli_progress("read %lld rows (%.1f MB)", good + bad,
                     (double)csv_bytes(csv) / 1e6);
    }
    cli_progress_done();
    if (bad && strict) {
        rc = cli_fail(EX_DATAERR, "%lld bad rows in %s; nothing imported (--strict)", bad,
                      pos[0]);
        goto out;
    }
    if ((rc = cli_open(c, STORE_WRITE | STORE_CREATE)) != 0)
        goto out;
    /* Pass 2: write, in batches; a store error undoes what was written. */
    store_bulk_begin(c->st);
    for (int i = 0; i < tclistnum(rows); i++) {
        int sz;
        const char *p = tclistval(rows, i, &sz);
        const char *fields[NCOL];
        struct store_fields f;
        enum store_add_result res;

        for (int k = 0; k < NCOL; k++) {
            fields[k] = p;
            p += strlen(p) + 1;
        }
        f.created = fields[COL_CREATED][0] ? strtoll(fields[COL_CREATED], NULL, 10) : 0;
        f.reason = fields[COL_REASON];
        f.status = fields[COL_STATUS];
        f.bounce_type = fields[COL_TYPE][0] ? fields[COL_TYPE] : NULL;
        f.source = fields[COL_SOURCE];
        if (store_add(c->st, c->tenant, c->list, 0, fields[COL_EMAIL], &f, &res, &why) <
            0) {
            store_bulk_end(c->st, 0, &why);
            cli_progress_done();
            rc = cli_fail(EX_TEMPFAIL, "import stopped at row %d: %s; nothing imported",
                          i + 1, buf_str(&why));
            goto out;
        }
        added += res == STORE_ADDED;
        kept += res == STORE_KEPT;
        updated += res == STORE_UPDATED;
        cli_progress("imported %d of %d rows", i + 1, tclistnum(rows));
    }
    if (store_bulk_end(c->st, 1, &why) < 0) {
        cli_progress_done();
        rc = cli_fail(EX_TEMPFAIL, "import failed: %s; nothing imported", buf_str(&why));
        goto out;
    }
    cli_progress_done();
    if (c->json) {
        json_t *o = json_object();

        json_object_set_new(o, "added", json_integer(added));
        json_object_set_new(o, "kept", json_integer(kept));
        json_object_set_new(o, "updated", json_integer(updated));
        json_object_set_new(o, "rejected", json_integer(bad));
        cli_print_json(o);
    } else {
        printf(
            "imported %lld row%s: %lld added, %lld already listed (kept), %lld updated",
            good, good == 1 ? "" : "s", added, kept, updated);
        if (bad)
            printf("; %lld row%s rejected (reported above)", bad, bad == 1 ? "" : "s");
        putchar('\n');
    }
    rc = bad ? EX_DATAERR : 0;
out:
    csv_close(csv);
    if (fp != stdin)
        fclose(fp);
    tclistdel(rows);
    buf_release(&why);
    buf_release(&disp);
    buf_release(&key);
    myfree(pos);
    return rc;
}

/* cmd_delete - sgadmin LIST delete ADDRESS... | --all --yes */
static int cmd_delete(struct cli *c, int argc, char **argv)
{
    int all = 0, yes = 0;
    struct cli_opt opts[] = {
        {"all", 0, NULL, &all}, {"yes", 0, NULL, &yes}, {NULL, 0, NULL, NULL}};
    char **pos;
    int npos, rc, status = 0;
    struct buf why;

    if ((rc = cli_parse(c, argc, argv, opts, &pos, &npos)) != 0)
        return rc;
    if (all == (npos > 0)) {
        myfree(pos);
        return cli_usage_error(c, "give addresses, or --all --yes");
    }
    if (all && !yes) {
        myfree(pos);
        return cli_usage_error(c, "refusing to delete every entry of %s without --yes",
                               store_list_name(c->list));
    }
    for (int i = 0; i < npos; i++)
        if (cli_entry(pos[i]) != 0)
            status = EX_DATAERR;
    if (status || (rc = cli_open(c, STORE_WRITE)) != 0) {
        myfree(pos);
        return status ? status : rc;
    }
    buf_init(&why, 128);
    if (all) {
        long long removed;

        if ((removed = store_clear(c->st, c->tenant, c->list, 0, &why)) < 0) {
            status = cli_fail(EX_TEMPFAIL, "%s; nothing deleted", buf_str(&why));
        } else if (c->json) {
            json_t *o = json_object();

            json_object_set_new(o, "deleted", json_integer(removed));
            cli_print_json(o);
        } else {
            printf("deleted %lld entries from %s\n", removed, store_list_name(c->list));
        }
    } else {
        json_t *out = json_array();

        for (int i = 0; i < npos; i++) {
            int r = store_remove(c->st, c->tenant, c->list, 0, pos[i], &why);

            if (r < 0) {
                status = cli_fail(EX_TEMPFAIL, "%s: %s", pos[i], buf_str(&why));
            } else if (r == 0) {
                if (!status)
                    status = EX_NOUSER;
                cli_fail(EX_NOUSER, "%s is not on the %s list", pos[i],
                         store_list_name(c->list));
            } else {
                json_array_append_new(out, json_string(pos[i]));
                if (!c->json)
                    printf("deleted %s\n", pos[i]);
            }
        }
        if (c->json)
            cli_print_json(json_pack("{s:O}", "deleted", out));
        json_decref(out);
    }
    buf_release(&why);
    myfree(pos);
    return status;
}

const struct cli_verb suppression_verbs[] = {
    {"list", cmd_list,
     "[--limit N] [--offset N] [--start-time T] [--end-time T] [--email A]",
     "list entries, newest first (limit 1-500, default 50)"},
    {"get", cmd_get, "ADDRESS", "show one entry"},
    {"add", cmd_add,
     "ADDRESS... [--created T] [bounces: --type hard|soft|block --reason R --status S] "
     "[spam-reports: --source S]",
     "add entries (an address, @domain, or an MD5/SHA-256 digest)"},
    {"import", cmd_import, "FILE|- [--strict]",
     "import a CSV (email[,reason|source[,status[,type]]] or a header row naming "
     "columns)"},
    {"delete", cmd_delete, "ADDRESS... | --all --yes", "delete entries"},
    {NULL, NULL, NULL, NULL},
};

const struct cli_verb allow_verbs[] = {
    {"list", cmd_list,
     "[--limit N] [--offset N] [--start-time T] [--end-time T] [--email A]",
     "list the allow list, newest first"},
    {"add", cmd_add, "ENTRY... [--created T]",
     "allow addresses, @domains or digests: never suppressed"},
    {"delete", cmd_delete, "ENTRY... | --all --yes", "remove entries"},
    {NULL, NULL, NULL, NULL},
};
