/*
 * lookup - sgadmin lookup ADDRESS [--group ID]: every list and group the
 * address is on, through which entry, and what the policy decides.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "cli.h"
#include "mymalloc.h"
#include "policy.h"

/* cmd_lookup - see above */
static int cmd_lookup(struct cli *c, int argc, char **argv)
{
    const char *group = NULL;
    struct cli_opt opts[] = {{"group", 1, &group, NULL}, {NULL, 0, NULL, NULL}};
    char **pos;
    int npos, rc;
    long long gid = 0;
    struct buf why, addr;
    struct store_hits hits;
    struct smtpapi_opts mo;
    struct policy_decision d;
    json_t *out, *matches;

    if ((rc = cli_parse(c, argc, argv, opts, &pos, &npos)) != 0)
        return rc;
    if (npos != 1) {
        myfree(pos);
        return cli_usage_error(c, "give one address");
    }
    if (group && (rc = cli_number(c, "--group", group, 1, UINT32_MAX - 1, &gid)) != 0) {
        myfree(pos);
        return rc;
    }
    buf_init(&why, 128);
    buf_init(&addr, 128);
    if (address_normalize(pos[0], &addr, &why) < 0) {
        rc = cli_fail(EX_DATAERR, "%s: %s", pos[0], buf_str(&why));
        goto out;
    }
    if ((rc = cli_open(c, STORE_READ)) != 0)
        goto out;
    store_hits_init(&hits);
    if (store_lookup(c->st, c->tenant, buf_str(&addr), STORE_ALL_GROUPS, &hits, &why) <
        0) {
        rc = cli_fail(EX_UNAVAILABLE, "%s", buf_str(&why));
        store_hits_free(&hits);
        goto out;
    }
    smtpapi_init(&mo);
    mo.asm_group_id = gid;
    policy_decide(&hits, &mo, policy_bounce_drops(c->conf, c->tenant), &d);
    matches = json_array();
    for (size_t i = 0; i < hits.n; i++) {
        const struct store_match *m = &hits.m[i];
        json_t *o = json_pack("{s:s,s:s,s:s,s:I}", "list", store_list_name(m->list),
                              "entry", m->entry, "match", address_kind_name(m->via),
                              "created", (json_int_t)m->created);

        if (m->list == STORE_GROUP)
            json_object_set_new(o, "group", json_integer(m->group));
        if (m->list == STORE_BOUNCES)
            json_object_set_new(o, "bounce_type", json_string(m->bounce_type));
        json_array_append_new(matches, o);
    }
    out = json_pack("{s:s,s:s,s:o,s:s,s:s}", "email", buf_str(&addr), "tenant", c->tenant,
                    "matches", matches, "decision",
                    d.action == POLICY_DROP ? "drop" : "deliver", "reason",
                    policy_reason_name(d.reason));
    json_object_set_new(out, "group", d.group ? json_integer(d.group) : json_null());
    json_object_set_new(out, "allowed", json_boolean(d.allowed));
    if (c->json) {
        cli_print_json(out);
    } else {
        char t[32];

        printf("%s (tenant %s)\n", buf_str(&addr), c->tenant);
        if (hits.n == 0)
            printf("  on no list\n");
        for (size_t i = 0; i < hits.n; i++) {
            const struct store_match *m = &hits.m[i];

            printf("  %-13s", store_list_name(m->list));
            if (m->list == STORE_GROUP)
                printf(" group %u", m->group);
            printf(" via %s entry %s since %s%s%s\n", address_kind_name(m->via), m->entry,
                   cli_fmt_time(m->created, t), m->bounce_type[0] ? ", type " : "",
                   m->bounce_type);
        }
        if (d.group)
            printf("  message group: %u%s\n", d.group,
                   gid ? "" : " (the tenant's default group)");
        if (d.action == POLICY_DROP)
            printf("decision: drop (%s)\n", policy_reason_name(d.reason));
        else
            printf("decision: deliver%s\n", d.allowed ? " (on the allow list)" : "");
        json_decref(out);
    }
    smtpapi_free(&mo);
    store_hits_free(&hits);
out:
    buf_release(&why);
    buf_release(&addr);
    myfree(pos);
    return rc;
}

const struct cli_verb lookup_verbs[] = {
    {"", cmd_lookup, "ADDRESS [--group ID]",
     "every list an address is on, through which entry, and the decision"},
    {NULL, NULL, NULL, NULL},
};
