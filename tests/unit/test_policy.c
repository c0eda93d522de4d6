/*
 * test_policy - DESIGN.md step 4, one case per rule and per bypass filter.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"

/* A compact description of a match: list letter, group, bounce type. */
struct m {
    char list; /* b s u g a */
    uint32_t group;
    const char *btype;
};

struct pcase {
    const char *name;
    struct m hits[6];
    uint32_t default_group;
    long asm_group_id;
    int bypass_list, bypass_bounce, bypass_spam, bypass_unsub;
    enum policy_action action;
    enum policy_reason reason;
    int allowed;
    uint32_t group;
};

static const struct pcase cases[] = {
    {"no match delivers", {{0}}, 0, 0, 0, 0, 0, 0, POLICY_DELIVER, POLICY_NONE, 0, 0},
    {"bounce drops",
     {{'b', 0, "hard"}},
     0,
     0,
     0,
     0,
     0,
     0,
     POLICY_DROP,
     POLICY_BOUNCE,
     0,
     0},
    {"soft bounce drops",
     {{'b', 0, "soft"}},
     0,
     0,
     0,
     0,
     0,
     0,
     POLICY_DROP,
     POLICY_BOUNCE,
     0,
     0},
    {"block bounce does not drop",
     {{'b', 0, "block"}},
     0,
     0,
     0,
     0,
     0,
     0,
     POLICY_DELIVER,
     POLICY_NONE,
     0,
     0},
    {"spam report drops",
     {{'s', 0, ""}},
     0,
     0,
     0,
     0,
     0,
     0,
     POLICY_DROP,
     POLICY_SPAM_REPORT,
     0,
     0},
    {"global unsubscribe drops",
     {{'u', 0, ""}},
     0,
     0,
     0,
     0,
     0,
     0,
     POLICY_DROP,
     POLICY_GLOBAL_UNSUBSCRIBE,
     0,
     0},
    {"bounce wins over spam and unsubscribe",
     {{'u', 0, ""}, {'s', 0, ""}, {'b', 0, "hard"}},
     0,
     0,
     0,
     0,
     0,
     0,
     POLICY_DROP,
     POLICY_BOUNCE,
     0,
     0},
    {"group unsubscribe in the named group drops",
     {{'g', 7, ""}},
     0,
     7,
     0,
     0,
     0,
     0,
     POLICY_DROP,
     POLICY_GROUP_UNSUBSCRIBE,
     0,
     7},
    {"group unsubscribe in another group delivers",
     {{'g', 8, ""}},
     0,
     7,
     0,
     0,
     0,
     0,
     POLICY_DELIVER,
     POLICY_NONE,
     0,
     7},
    {"no group named: the default group applies",
     {{'g', 3, ""}},
     3,
     0,
     0,
     0,
     0,
     0,
     POLICY_DROP,
     POLICY_GROUP_UNSUBSCRIBE,
     0,
     3},
    {"a named group overrides the default",
     {{'g', 3, ""}},
     3,
     9,
     0,
     0,
     0,
     0,
     POLICY_DELIVER,
     POLICY_NONE,
     0,
     9},
    {"no group and no default: group suppressions do not apply",
     {{'g', 3, ""}},
     0,
     0,
     0,
     0,
     0,
     0,
     POLICY_DELIVER,
     POLICY_NONE,
     0,
     0},
    {"allow list wins over everything",
     {{'b', 0, "hard"}, {'s', 0, ""}, {'u', 0, ""}, {'g', 2, ""}, {'a', 0, ""}},
     2,
     0,
     0,
     0,
     0,
     0,
     POLICY_DELIVER,
     POLICY_NONE,
     1,
     2},
    {"bypass_list_management bypasses all",
     {{'b', 0, "hard"}, {'s', 0, ""}, {'u', 0, ""}, {'g', 2, ""}},
     2,
     0,
     1,
     0,
     0,
     0,
     POLICY_DELIVER,
     POLICY_NONE,
     0,
     2},
    {"bypass_bounce_management bypasses bounces only",
     {{'b', 0, "hard"}},
     0,
     0,
     0,
     1,
     0,
     0,
     POLICY_DELIVER,
     POLICY_NONE,
     0,
     0},
    {"bypass_bounce_management still checks spam",
     {{'b', 0, "hard"}, {'s', 0, ""}},
     0,
     0,
     0,
     1,
     0,
     0,
     POLICY_DROP,
     POLICY_SPAM_REPORT,
     0,
     0},
    {"bypass_spam_management bypasses spam reports",
     {{'s', 0, ""}},
     0,
     0,
     0,
     0,
     1,
     0,
     POLICY_DELIVER,
     POLICY_NONE,
     0,
     0},
    {"bypass_spam_management still checks bounces",
     {{'s', 0, ""}, {'b', 0, "hard"}},
     0,
     0,
     0,
     0,
     1,
     0,
     POLICY_DROP,
     POLICY_BOUNCE,
     0,
     0},
    {"bypass_unsubscribe_management bypasses global unsubscribes",
     {{'u', 0, ""}},
     0,
     0,
     0,
     0,
     0,
     1,
     POLICY_DELIVER,
     POLICY_NONE,
     0,
     0},
    {"bypass_unsubscribe_management does not bypass group unsubscribes",
     {{'u', 0, ""}, {'g', 4, ""}},
     0,
     4,
     0,
     0,
     0,
     1,
     POLICY_DROP,
     POLICY_GROUP_UNSUBSCRIBE,
     0,
     4},
    {"bypass_unsubscribe_management does not bypass the default group",
     {{'g', 4, ""}},
     4,
     0,
     0,
     0,
     0,
     1,
     POLICY_DROP,
     POLICY_GROUP_UNSUBSCRIBE,
     0,
     4},
    {"all three narrow bypasses leave the group",
     {{'b', 0, "hard"}, {'s', 0, ""}, {'u', 0, ""}, {'g', 4, ""}},
     0,
     4,
     0,
     1,
     1,
     1,
     POLICY_DROP,
     POLICY_GROUP_UNSUBSCRIBE,
     0,
     4},
};

/* build - hits and options from a case */
static void build(const struct pcase *pc, struct store_hits *hits, struct smtpapi_opts *o)
{
    store_hits_init(hits);
    hits->cap = 8;
    hits->m = test_calloc(8, sizeof(*hits->m));
    for (size_t i = 0; i < 6 && pc->hits[i].list; i++) {
        struct store_match *m = &hits->m[hits->n++];
        const char *l = strchr("bsuga", pc->hits[i].list);

        m->list = (enum store_list)(l - "bsuga");
        m->group = pc->hits[i].group;
        m->via = ADDRESS_EXACT;
        snprintf(m->bounce_type, sizeof(m->bounce_type), "%s",
                 pc->hits[i].btype ? pc->hits[i].btype : "");
        snprintf(m->entry, sizeof(m->entry), "x@example.com");
    }
    hits->default_group = pc->default_group;
    smtpapi_init(o);
    o->asm_group_id = pc->asm_group_id;
    o->filters.bypass_list_management = pc->bypass_list ? 1 : SMTPAPI_UNSET;
    o->filters.bypass_bounce_management = pc->bypass_bounce ? 1 : SMTPAPI_UNSET;
    o->filters.bypass_spam_management = pc->bypass_spam ? 1 : SMTPAPI_UNSET;
    o->filters.bypass_unsubscribe_management = pc->bypass_unsub ? 1 : 0;
}

static void test_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct pcase *pc = &cases[i];
        struct store_hits hits;
        struct smtpapi_opts o;
        struct policy_decision d;

        build(pc, &hits, &o);
        policy_decide(&hits, &o, POLICY_DROP_DEFAULT, &d);
        if (d.action != pc->action || d.reason != pc->reason ||
            d.allowed != pc->allowed || d.group != pc->group)
            fail_msg("case \"%s\": got action %d reason %s allowed %d group %u", pc->name,
                     d.action, policy_reason_name(d.reason), d.allowed, d.group);
        if (d.action == POLICY_DROP)
            assert_non_null(d.match);
        test_free(hits.m);
    }
}

static void test_null_options(void **state)
{
    struct store_hits hits;
    struct smtpapi_opts o;
    struct policy_decision d;

    (void)state;
    build(&cases[1], &hits, &o);
    policy_decide(&hits, NULL, POLICY_DROP_DEFAULT, &d);
    assert_int_equal(d.action, POLICY_DROP);
    assert_string_equal(policy_reason_name(d.reason), "bounce");
    test_free(hits.m);
}

/* the tenant's bounce rules: which bounce types drop */
static void test_bounce_drops(void **state)
{
    static const struct {
        const char *type;
        unsigned mask;
        enum policy_action want;
    } t[] = {
        {"hard", POLICY_DROP_DEFAULT, POLICY_DROP},
        {"soft", POLICY_DROP_DEFAULT, POLICY_DROP},
        {"block", POLICY_DROP_DEFAULT, POLICY_DELIVER},
        {"", POLICY_DROP_DEFAULT, POLICY_DROP}, /* an entry from before types */
        {"hard", POLICY_DROP_SOFT, POLICY_DELIVER},
        {"soft", POLICY_DROP_HARD, POLICY_DELIVER},
        {"block", POLICY_DROP_BLOCK, POLICY_DROP},
        {"block", POLICY_DROP_HARD | POLICY_DROP_SOFT | POLICY_DROP_BLOCK, POLICY_DROP},
        {"hard", 0, POLICY_DELIVER},
    };
    struct conf *none = conf_defaults();

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct pcase pc = {"mask", {{'b', 0, t[i].type}}, 0,           0, 0, 0, 0,
                           0,      POLICY_DELIVER,        POLICY_NONE, 0, 0};
        struct store_hits hits;
        struct smtpapi_opts o;
        struct policy_decision d;

        build(&pc, &hits, &o);
        policy_decide(&hits, &o, t[i].mask, &d);
        if (d.action != t[i].want)
            fail_msg("type \"%s\" mask %u: got action %d", t[i].type, t[i].mask,
                     d.action);
        test_free(hits.m);
    }
    assert_int_equal(policy_bounce_drops(none, "acme"), POLICY_DROP_DEFAULT);
    conf_free(none);
}

static void test_reason_names(void **state)
{
    (void)state;
    assert_string_equal(policy_reason_name(POLICY_NONE), "");
    assert_string_equal(policy_reason_name(POLICY_SPAM_REPORT), "spam_report");
    assert_string_equal(policy_reason_name(POLICY_GLOBAL_UNSUBSCRIBE),
                        "global_unsubscribe");
    assert_string_equal(policy_reason_name(POLICY_GROUP_UNSUBSCRIBE),
                        "group_unsubscribe");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_null_options),
        cmocka_unit_test(test_bounce_drops),
        cmocka_unit_test(test_reason_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
