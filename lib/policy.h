/*
 * policy - DESIGN.md step 4: for one recipient, deliver or drop with a reason.
 *
 * Pure: it looks only at what store_lookup() found for the address and at the
 * message's options, so every rule is unit-tested case by case.  The rules,
 * in order:
 *   1. an allow-list match (exact, domain or digest) delivers, whatever else;
 *   2. bypass_list_management delivers (all lists and groups bypassed);
 *   3. a bounce drops ("bounce") unless bypass_bounce_management, if the
 *      tenant's bounce rules (bounces.* in sendguard.conf: by default hard
 *      and soft entries drop, block entries are listed and do not) say its
 *      type drops;
 *   4. a spam report drops ("spam_report") unless bypass_spam_management;
 *   5. a global unsubscribe drops ("global_unsubscribe") unless
 *      bypass_unsubscribe_management;
 *   6. a suppression in the message's group (asm_group_id, else the tenant's
 *      default group) drops ("group_unsubscribe"); no bypass but the list
 *      management one reaches it, as the hosted service documents.
 */
#ifndef SG_POLICY_H
#define SG_POLICY_H

#include "conf.h"
#include "smtpapi.h"
#include "store.h"

enum policy_action { POLICY_DELIVER, POLICY_DROP };

enum policy_reason {
    POLICY_NONE,
    POLICY_BOUNCE,
    POLICY_SPAM_REPORT,
    POLICY_GLOBAL_UNSUBSCRIBE,
    POLICY_GROUP_UNSUBSCRIBE,
};

struct policy_decision {
    enum policy_action action;
    enum policy_reason reason;       /* why dropped; POLICY_NONE if delivered */
    const struct store_match *match; /* the match that decided, if any */
    uint32_t group;                  /* the group the message counts under, 0 none */
    int allowed;                     /* delivered because of the allow list */
    int bypassed;                    /* a match was ignored because of a bypass */
};

/* Which bounce types drop, for policy_decide (policy_bounce_drops reads them). */
#define POLICY_DROP_HARD 1u
#define POLICY_DROP_SOFT 2u
#define POLICY_DROP_BLOCK 4u
#define POLICY_DROP_DEFAULT (POLICY_DROP_HARD | POLICY_DROP_SOFT)

/* policy_decide - the decision for one recipient; opts may be NULL */
void policy_decide(const struct store_hits *hits, const struct smtpapi_opts *opts,
                   unsigned bounce_drops, struct policy_decision *d);

/*
 * policy_bounce_drops - the bounce types that drop a tenant's mail:
 * bounces.suppress_hard, soft_limit > 0, suppress_block
 */
unsigned policy_bounce_drops(const struct conf *conf, const char *tenant);

/* policy_reason_name - "bounce", "spam_report", ...; "" for POLICY_NONE */
const char *policy_reason_name(enum policy_reason reason);

#endif
