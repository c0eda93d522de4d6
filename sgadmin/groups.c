/*
 * groups - sgadmin groups and sgadmin group-suppressions.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "cli.h"
#include "mymalloc.h"

/* group_json - a group as the hosted API shows it */
static json_t *group_json(const struct store_group *g)
{
    return json_pack("{s:I,s:s,s:s,s:b,s:I}", "id", (json_int_t)g->id, "name", g->name,
                     "description", g->description, "is_default", g->is_default,
                     "unsubscribes", (json_int_t)g->count);
}

/* collect_group - listing callback */
static int collect_group(const struct store_group *g, void *ctx)
{
    json_array_append_new(ctx, group_json(g));
    return 0;
}

static void print_groups(struct cli *c, json_t *rows)
{
    static const char *const k[] = {"id",   "is_default",  "unsubscribes",
                                    "name", "description", NULL};
    static const char *const h[] = {"ID",   "DEFAULT",     "SUPPRESSED",
                                    "NAME", "DESCRIPTION", NULL};

    if (c->json)
        cli_print_json(json_incref(rows));
    else
        cli_print_table(rows, k, h);
}

/* parse_id - a group id argument */
static int parse_id(struct cli *c, const char *text, uint32_t *id)
{
    long long v;
    int rc = cli_number(c, "a group id", text, 1, UINT32_MAX - 1, &v);

    *id = (uint32_t)v;
    return rc;
}

/* one_id - a verb's options and its one argument, a group id */
static int one_id(struct cli *c, int argc, char **argv, const struct cli_opt *opts,
                  uint32_t *id)
{
    char **pos;
    int npos, rc;

    if ((rc = cli_parse(c, argc, argv, opts, &pos, &npos)) != 0)
        return rc;
    if (npos != 1)
        rc = cli_usage_error(c, "give one group id");
    else
        rc = parse_id(c, pos[0], id);
    myfree(pos);
    return rc;
}

/* cmd_list - sgadmin groups list */
static int cmd_list(struct cli *c, int argc, char **argv)
{
    int rc;
    json_t *rows;
    struct buf why;

    if ((rc = cli_parse_options(c, argc, argv, NULL)) != 0)
        return rc;
    if ((rc = cli_open(c, STORE_READ)) != 0)
        return rc;
    buf_init(&why, 128);
    rows = json_array();
    if (store_group_list(c->st, c->tenant, collect_group, rows, &why) < 0)
        rc = cli_fail(EX_UNAVAILABLE, "%s", buf_str(&why));
    else
        print_groups(c, rows);
    json_decref(rows);
    buf_release(&why);
    return rc;
}

/* get_group - read one group or fail with EX_NOUSER */
static int get_group(struct cli *c, uint32_t id, struct store_group *g)
{
    struct buf why;
    int found, rc = 0;

    buf_init(&why, 128);
    found = store_group_get(c->st, c->tenant, id, g, &why);
    if (found < 0)
        rc = cli_fail(EX_UNAVAILABLE, "%s", buf_str(&why));
    else if (found == 0)
        rc = cli_fail(EX_NOUSER, "no group %u for tenant %s", id, c->tenant);
    buf_release(&why);
    return rc;
}

/* cmd_get - sgadmin groups get ID */
static int cmd_get(struct cli *c, int argc, char **argv)
{
    int rc;
    uint32_t id;
    struct store_group g;

    if ((rc = one_id(c, argc, argv, NULL, &id)) != 0)
        return rc;
    if ((rc = cli_open(c, STORE_READ)) != 0 || (rc = get_group(c, id, &g)) != 0)
        return rc;
    if (c->json) {
        cli_print_json(group_json(&g));
    } else {
        json_t *rows = json_array();

        json_array_append_new(rows, group_json(&g));
        print_groups(c, rows);
        json_decref(rows);
    }
    return 0;
}

/* say_default - report that making a group default took it from another */
static void say_default(uint32_t old, uint32_t id)
{
    if (old && old != id)
        fprintf(stderr, "sgadmin: group %u is no longer the default group\n", old);
}

/* report_change - after a create or update: the old default, then the group */
static int report_change(struct cli *c, const char *done, uint32_t id, uint32_t old)
{
    struct store_group g;
    int rc;

    say_default(old, id);
    if ((rc = get_group(c, id, &g)) != 0)
        return rc;
    if (c->json)
        cli_print_json(group_json(&g));
    else
        printf("%s group %u \"%s\"%s\n", done, id, g.name,
               g.is_default ? " (default)" : "");
    return 0;
}

/* cmd_create - sgadmin groups create --name N [--description D] [--default] */
static int cmd_create(struct cli *c, int argc, char **argv)
{
    const char *name = NULL, *desc = NULL;
    int def = 0;
    struct cli_opt opts[] = {{"name", 1, &name, NULL},
                             {"description", 1, &desc, NULL},
                             {"default", 0, NULL, &def},
                             {NULL, 0, NULL, NULL}};
    int rc;
    uint32_t id, old;
    struct buf why;

    if ((rc = cli_parse_options(c, argc, argv, opts)) != 0)
        return rc;
    if (name == NULL)
        return cli_usage_error(c, "--name is required");
    if ((rc = cli_open(c, STORE_WRITE | STORE_CREATE)) != 0)
        return rc;
    buf_init(&why, 128);
    if (store_group_create(c->st, c->tenant, name, desc, def, &id, &old, &why) < 0)
        rc = cli_fail(EX_DATAERR, "%s", buf_str(&why));
    else
        rc = report_change(c, "created", id, old);
    buf_release(&why);
    return rc;
}

/* cmd_update - sgadmin groups update ID [--name N] [--description D]
 * [--default|--no-default] */
static int cmd_update(struct cli *c, int argc, char **argv)
{
    const char *name = NULL, *desc = NULL;
    int def = 0, nodef = 0;
    struct cli_opt opts[] = {{"name", 1, &name, NULL},
                             {"description", 1, &desc, NULL},
                             {"default", 0, NULL, &def},
                             {"no-default", 0, NULL, &nodef},
                             {NULL, 0, NULL, NULL}};
    int rc;
    uint32_t id, old;
    struct buf why;
    struct store_group g;

    if ((rc = one_id(c, argc, argv, opts, &id)) != 0)
        return rc;
    if (def && nodef)
        return cli_usage_error(c, "--default and --no-default contradict each other");
    if (!name && !desc && !def && !nodef)
        return cli_usage_error(c, "nothing to change");
    if ((rc = cli_open(c, STORE_WRITE)) != 0 || (rc = get_group(c, id, &g)) != 0)
        return rc;
    buf_init(&why, 128);
    if (store_group_update(c->st, c->tenant, id, name, desc,
                           def     ? 1
                           : nodef ? 0
                                   : -1,
                           &old, &why) < 0)
        rc = cli_fail(EX_DATAERR, "%s", buf_str(&why));
    else
        rc = report_change(c, "updated", id, old);
    buf_release(&why);
    return rc;
}

/* cmd_delete - sgadmin groups delete ID */
static int cmd_delete(struct cli *c, int argc, char **argv)
{
    int rc, found;
    uint32_t id;
    long long n;
    struct buf why;

    if ((rc = one_id(c, argc, argv, NULL, &id)) != 0)
        return rc;
    if ((rc = cli_open(c, STORE_WRITE)) != 0)
        return rc;
    buf_init(&why, 128);
    found = store_group_delete(c->st, c->tenant, id, &n, &why);
    if (found < 0)
        rc = cli_fail(EX_TEMPFAIL, "%s", buf_str(&why));
    else if (found == 0)
        rc = cli_fail(EX_NOUSER, "no group %u for tenant %s", id, c->tenant);
    else if (c->json)
        cli_print_json(json_pack("{s:I,s:I}", "deleted", (json_int_t)id, "suppressions",
                                 (json_int_t)n));
    else
        printf("deleted group %u and its %lld suppressions\n", id, n);
    buf_release(&why);
    return rc;
}

const struct cli_verb group_verbs[] = {
    {"list", cmd_list, "", "list the unsubscribe groups with their suppression counts"},
    {"get", cmd_get, "ID", "show one group"},
    {"create", cmd_create, "--name N [--description D] [--default]",
     "create a group (name unique, 1-100 characters; description up to 500)"},
    {"update", cmd_update, "ID [--name N] [--description D] [--default|--no-default]",
     "change a group"},
    {"delete", cmd_delete, "ID", "delete a group and its suppressions"},
    {NULL, NULL, NULL, NULL},
};

/* Group suppressions. */

/* collect_email - listing callback: the API lists bare addresses */
static int collect_email(const struct store_record *r, void *ctx)
{
    json_array_append_new(ctx, json_string(r->email));
    return 0;
}

/* gs_open - parse ID and the rest, open the store, check the group */
static int gs_open(struct cli *c, int argc, char **argv, const struct cli_opt *opts,
                   int mode, uint32_t *id, char ***pos, int *npos)
{
    struct store_group g;
    int rc;

    if ((rc = cli_parse(c, argc, argv, opts, pos, npos)) != 0)
        return rc;
    if (*npos < 1) {
        myfree(*pos);
        return cli_usage_error(c, "give a group id");
    }
    if ((rc = parse_id(c, (*pos)[0], id)) != 0 || (rc = cli_open(c, mode)) != 0 ||
        (rc = get_group(c, *id, &g)) != 0) {
        myfree(*pos);
        return rc;
    }
    return 0;
}

/* cmd_gs_list - sgadmin group-suppressions list ID [--limit N] [--offset N] */
static int cmd_gs_list(struct cli *c, int argc, char **argv)
{
    const char *limit = NULL, *offset = NULL;
    struct cli_opt opts[] = {
        {"limit", 1, &limit, NULL}, {"offset", 1, &offset, NULL}, {NULL, 0, NULL, NULL}};
    struct store_query q = {0, 50, 0, 0, NULL};
    char **pos;
    int npos, rc;
    uint32_t id;
    long long total = 0;
    json_t *rows;
    struct buf why;

    if ((rc = gs_open(c, argc, argv, opts, STORE_READ, &id, &pos, &npos)) != 0)
        return rc;
    myfree(pos);
    if (npos != 1)
        return cli_usage_error(c, "unexpected argument");
    if (limit && (rc = cli_number(c, "--limit", limit, 1, 500, &q.limit)) != 0)
        return rc;
    if (offset && (rc = cli_number(c, "--offset", offset, 0, LLONG_MAX, &q.offset)) != 0)
        return rc;
    buf_init(&why, 128);
    rows = json_array();
    if (store_list(c->st, c->tenant, STORE_GROUP, id, &q, collect_email, rows, &total,
                   &why) < 0) {
        rc = cli_fail(EX_UNAVAILABLE, "%s", buf_str(&why));
    } else if (c->json) {
        cli_print_json(json_incref(rows));
    } else {
        size_t i;
        json_t *e;

        json_array_foreach (rows, i, e)
            puts(json_string_value(e));
        printf("-- %zu shown of %lld in group %u\n", json_array_size(rows), total, id);
    }
    json_decref(rows);
    buf_release(&why);
    return rc;
}

/* gs_each - run add, delete or search over the addresses */
static int gs_each(struct cli *c, int argc, char **argv, int what)
{
    char **pos;
    int npos, rc, status = 0;
    uint32_t id;
    json_t *out = json_array();
    struct buf why;

    if ((rc = gs_open(c, argc, argv, NULL, what == 's' ? STORE_READ : STORE_WRITE, &id,
                      &pos, &npos)) != 0) {
        json_decref(out);
        return rc;
    }
    if (npos < 2) {
        myfree(pos);
        json_decref(out);
        return cli_usage_error(c, "give at least one address");
    }
    for (int i = 1; i < npos; i++)
        if (cli_entry(pos[i]) != 0)
            status = EX_DATAERR;
    if (status) {
        myfree(pos);
        json_decref(out);
        return status;
    }
    buf_init(&why, 128);
    for (int i = 1; i < npos; i++) {
        int r;
        enum store_add_result res = STORE_ADDED;

        if (what == 'a')
            r = store_add(c->st, c->tenant, STORE_GROUP, id, pos[i], NULL, &res, &why) < 0
                    ? -1
                    : 1;
        else if (what == 'd')
            r = store_remove(c->st, c->tenant, STORE_GROUP, id, pos[i], &why);
        else
            r = store_get(c->st, c->tenant, STORE_GROUP, id, pos[i], NULL, NULL, &why);
        if (r < 0) {
            status = cli_fail(what == 's' ? EX_UNAVAILABLE : EX_TEMPFAIL, "%s: %s",
                              pos[i], buf_str(&why));
            continue;
        }
        if (r == 0 && what == 'd') {
            cli_fail(EX_NOUSER, "%s is not suppressed in group %u", pos[i], id);
            if (!status)
                status = EX_NOUSER;
            continue;
        }
        if (r == 0)
            continue;
        json_array_append_new(out, json_string(pos[i]));
        if (!c->json) {
            if (what == 'a')
                printf(res == STORE_KEPT ? "%s is already suppressed in group %u\n"
                                         : "suppressed %s in group %u\n",
                       pos[i], id);
            else if (what == 'd')
                printf("removed %s from group %u\n", pos[i], id);
            else
                puts(pos[i]);
        }
    }
    if (c->json)
        cli_print_json(json_pack("{s:O}",
                                 what == 'a'   ? "recipient_emails"
                                 : what == 'd' ? "deleted"
                                               : "suppressed",
                                 out));
    json_decref(out);
    buf_release(&why);
    myfree(pos);
    return status;
}

static int cmd_gs_add(struct cli *c, int argc, char **argv)
{
    return gs_each(c, argc, argv, 'a');
}

static int cmd_gs_delete(struct cli *c, int argc, char **argv)
{
    return gs_each(c, argc, argv, 'd');
}

static int cmd_gs_search(struct cli *c, int argc, char **argv)
{
    return gs_each(c, argc, argv, 's');
}

const struct cli_verb group_suppression_verbs[] = {
    {"list", cmd_gs_list, "ID [--limit N] [--offset N]", "list a group's suppressions"},
    {"add", cmd_gs_add, "ID ADDRESS...", "suppress addresses in a group"},
    {"delete", cmd_gs_delete, "ID ADDRESS...", "remove addresses from a group"},
    {"search", cmd_gs_search, "ID ADDRESS...",
     "print those of the addresses that are suppressed in the group"},
    {NULL, NULL, NULL, NULL},
};
