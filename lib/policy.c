/*
 * policy - the per-recipient decision, see policy.h for the rules.
 */
#include "config.h"

#include <string.h>

#include "policy.h"

/* policy_reason_name - see policy.h */
const char *policy_reason_name(enum policy_reason reason)
{
    switch (reason) {
    case POLICY_BOUNCE:
        return "bounce";
    case POLICY_SPAM_REPORT:
        return "spam_report";
    case POLICY_GLOBAL_UNSUBSCRIBE:
        return "global_unsubscribe";
    case POLICY_GROUP_UNSUBSCRIBE:
        return "group_unsubscribe";
    default:
        return "";
    }
}

/* drops - does a bounce entry of this type drop, by the mask? */
static int drops(const char *type, unsigned mask)
{
    if (strcmp(type, "block") == 0)
        return (mask & POLICY_DROP_BLOCK) != 0;
    if (strcmp(type, "soft") == 0)
        return (mask & POLICY_DROP_SOFT) != 0;
    return (mask & POLICY_DROP_HARD) != 0; /* "hard", and entries without a type */
}

/* find - the first match on a list (for groups: on that group) that counts */
static const struct store_match *find(const struct store_hits *hits, enum store_list list,
                                      uint32_t group, unsigned bounce_drops)
{
    for (size_t i = 0; i < hits->n; i++) {
        const struct store_match *m = &hits->m[i];

        if (m->list != list)
            continue;
        if (list == STORE_GROUP && m->group != group)
            continue;
        if (list == STORE_BOUNCES && !drops(m->bounce_type, bounce_drops))
            continue;
        return m;
    }
    return NULL;
}

/* policy_decide - see policy.h */
void policy_decide(const struct store_hits *hits, const struct smtpapi_opts *opts,
                   unsigned bounce_drops, struct policy_decision *d)
{
    static const struct {
        enum store_list list;
        enum policy_reason reason;
    } order[] = {
        {STORE_BOUNCES, POLICY_BOUNCE},
        {STORE_SPAM_REPORTS, POLICY_SPAM_REPORT},
        {STORE_UNSUBSCRIBES, POLICY_GLOBAL_UNSUBSCRIBE},
        {STORE_GROUP, POLICY_GROUP_UNSUBSCRIBE},
    };
    const struct smtpapi_filters *f = opts ? &opts->filters : NULL;
    int bypass[4] = {
        f && smtpapi_is_on(f->bypass_bounce_management),
        f && smtpapi_is_on(f->bypass_spam_management),
        f && smtpapi_is_on(f->bypass_unsubscribe_management),
        0,
    };
    const struct store_match *m;

    memset(d, 0, sizeof(*d));
    d->action = POLICY_DELIVER;
    d->reason = POLICY_NONE;
    d->group = opts && opts->asm_group_id > 0 ? (uint32_t)opts->asm_group_id
                                              : hits->default_group;
    if ((m = find(hits, STORE_ALLOW, 0, bounce_drops)) != NULL) {
        d->allowed = 1;
        d->match = m;
        return;
    }
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        if (order[i].list == STORE_GROUP && d->group == 0)
            continue;
        if ((m = find(hits, order[i].list, d->group, bounce_drops)) == NULL)
            continue;
        if (bypass[i] || (f && smtpapi_is_on(f->bypass_list_management))) {
            d->bypassed = 1;
            continue;
        }
        d->action = POLICY_DROP;
        d->reason = order[i].reason;
        d->match = m;
        return;
    }
}

/* policy_bounce_drops - see policy.h */
unsigned policy_bounce_drops(const struct conf *conf, const char *tenant)
{
    return (conf_tenant_bool(conf, tenant, "bounces.suppress_hard") ? POLICY_DROP_HARD
                                                                    : 0) |
           (conf_tenant_int(conf, tenant, "bounces.soft_limit") > 0 ? POLICY_DROP_SOFT
                                                                    : 0) |
           (conf_tenant_bool(conf, tenant, "bounces.suppress_block") ? POLICY_DROP_BLOCK
                                                                     : 0);
}
