/*
 * test_feedback - lib/feedback: bounces applied to the bounce list by the
 * tenant's rules (hard at once, soft by count within a window, block listed,
 * a list entry never lowered) with their events; messages ingested: the
 * unsubscribe mail, the reports matched by token or by mail sent, the
 * complaint matched through the returned original's token, and what is
 * not matched; the tokens of a header block; and a store that cannot be
 * written, which must fail so that the caller retries.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "address.h"
#include "event.h"
#include "feedback.h"
#include "policy.h"
#include "store.h"
#include "token.h"

#define T0 1790000000LL /* fb.now: 2026-09-21 */
#define DAY 86400LL

static char dir[64];
static struct conf *conf;
static struct store *st;
static struct token_keys *keys;
static struct feedback fb;

/* put - write text to dir/name */
static const char *put(const char *name, const char *text)
{
    static char path[256];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
    return path;
}

/* load - a configuration with the store in dir and these lines, which must load */
static struct conf *load(const char *name, const char *extra)
{
    struct buf text, why;
    struct conf *c;

    buf_init(&text, 512);
    buf_init(&why, 64);
    buf_printf(&text, "store = { path = \"%s\"; };\n%s", dir, extra);
    c = conf_load(put(name, text.data), &why);
    if (c == NULL)
        fail_msg("conf_load: %s", buf_str(&why));
    buf_release(&text);
    buf_release(&why);
    return c;
}

static const char conf_text[] =
    "bounces = { suppress_hard = true; soft_limit = 3; soft_window = \"7d\";\n"
    "            suppress_block = false; };\n"
    "feedback = { match_window = \"7d\"; };\n"
    "tenants = (\n"
    "    { name = \"acme\"; bounces = { soft_limit = 1; }; },\n"
    "    { name = \"nosoft\"; bounces = { soft_limit = 0; }; }\n"
    ");\n";

static int setup(void **state)
{
    struct buf why, text;

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sg-test-feedback-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    conf = load("sendguard.conf", conf_text);
    buf_init(&why, 64);
    st = store_open(dir, STORE_WRITE | STORE_CREATE, &why);
    if (st == NULL)
        fail_msg("store_open: %s", buf_str(&why));
    buf_init(&text, 128);
    token_key_line(1, &text);
    keys = token_keys_from_text(text.data, text.len, &why);
    if (keys == NULL)
        fail_msg("keys: %s", buf_str(&why));
    buf_release(&text);
    buf_release(&why);
    memset(&fb, 0, sizeof(fb));
    fb.conf = conf;
    fb.store = st;
    fb.store_dir = dir;
    fb.keys = keys;
    fb.now = T0;
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    if (st)
        store_close(st);
    st = NULL;
    conf_free(conf);
    conf = NULL;
    token_keys_free(keys);
    keys = NULL;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Helpers. */

/* bounce - feedback_bounce, which must succeed; returns *suppressed */
static int bounce(const char *tenant, const char *addr, enum bounce_class cls,
                  const char *status, uint32_t tag)
{
    struct buf why;
    int sup = -1;

    buf_init(&why, 64);
    if (feedback_bounce(&fb, tenant, addr, cls, status, "550 test reply", "m-1", "relay",
                        tag, NULL, &sup, &why) < 0)
        fail_msg("feedback_bounce %s: %s", addr, buf_str(&why));
    buf_release(&why);
    assert_true(sup == 0 || sup == 1);
    return sup;
}

/* listed - the bounce type of the address's entry ("" when not listed) */
static int type_of(const struct store_record *rec, void *ctx)
{
    snprintf(ctx, 16, "%s", rec->bounce_type ? rec->bounce_type : "(null)");
    return 0;
}

static const char *listed(const char *tenant, enum store_list list, const char *addr)
{
    static char type[16];
    struct buf why;
    int rc;

    buf_init(&why, 64);
    type[0] = 0;
    rc = store_get(st, tenant, list, 0, addr, type_of, type, &why);
    if (rc < 0)
        fail_msg("store_get: %s", buf_str(&why));
    buf_release(&why);
    if (rc == 0)
        return "";
    return type[0] ? type : "(listed)";
}

/* events - the address's events of a type, newest first (a new array) */
static int collect(json_t *ev, void *ctx)
{
    json_array_append(ctx, ev);
    return 0;
}

static json_t *events(const char *email, const char *type)
{
    struct event_query q;
    struct buf why;
    json_t *a = json_array();
    long long skipped = 0;

    memset(&q, 0, sizeof(q));
    q.email = email;
    q.type = type;
    buf_init(&why, 64);
    if (event_query(dir, &q, collect, a, &skipped, &why) < 0)
        fail_msg("event_query: %s", buf_str(&why));
    assert_int_equal(skipped, 0);
    buf_release(&why);
    return a;
}

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s ? s : "(none)";
}

static long long num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    if (!json_is_integer(v))
        fail_msg("%s is not an integer", key);
    return json_integer_value(v);
}

static int boolean(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    if (!json_is_boolean(v))
        fail_msg("%s is not a boolean", key);
    return json_is_true(v);
}

/* token - a token's text for these fields (tenant, recipient, group) */
static void token(enum token_purpose purpose, const char *tenant, const char *recipient,
                  uint32_t group, struct buf *out)
{
    struct token t;
    struct buf why;

    memset(&t, 0, sizeof(t));
    t.purpose = purpose;
    t.tenant = (char *)tenant;
    t.recipient = (char *)recipient;
    t.group = group;
    t.message = (char *)"20260921.m1@shop.example";
    t.created = T0 - 60;
    buf_init(&why, 64);
    buf_reset(out);
    if (token_encode(keys, &t, out, &why) < 0)
        fail_msg("token_encode: %s", buf_str(&why));
    buf_release(&why);
}

/* ingest - feedback_ingest, which must succeed; the actions */
static json_t *ingest(const char *msg, const char *envelope, const char *tenant)
{
    json_t *actions = json_array();
    struct buf why;

    buf_init(&why, 64);
    if (feedback_ingest(&fb, msg, strlen(msg), envelope, tenant, actions, &why) < 0)
        fail_msg("feedback_ingest: %s", buf_str(&why));
    buf_release(&why);
    return actions;
}

/* hits - the lists an address is on (all groups) */
static struct store_hits hits_of(const char *tenant, const char *addr)
{
    struct store_hits h;
    struct buf why;

    store_hits_init(&h);
    buf_init(&why, 64);
    if (store_lookup(st, tenant, addr, STORE_ALL_GROUPS, &h, &why) < 0)
        fail_msg("store_lookup: %s", buf_str(&why));
    buf_release(&why);
    return h;
}

static void record_sent(const char *email, const char *tenant, long long ts)
{
    json_t *ev = json_pack("{s:s,s:s,s:s,s:I}", "event", "processed", "email", email,
                           "tenant", tenant, "timestamp", (json_int_t)ts);
    struct buf why;

    buf_init(&why, 64);
    if (event_record(dir, ev, &why) < 0)
        fail_msg("event_record: %s", buf_str(&why));
    json_decref(ev);
    buf_release(&why);
}

/* dsn - an RFC 3464 report to `to` with these recipient blocks */
static void dsn(struct buf *m, const char *to, const char *msgid, const char *blocks)
{
    buf_reset(m);
    buf_printf(
        m,
        "Return-Path: <>\n"
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\n"
        "To: %s\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "Message-ID: <%s>\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n"
        "\n"
        "--B\n"
        "Content-Type: text/plain\n"
        "\n"
        "This is the mail system at host mx.example.net.\n"
        "\n"
        "--B\n"
        "Content-Type: message/delivery-status\n"
        "\n"
        "Reporting-MTA: dns; mx.example.net\n"
        "\n"
        "%s"
        "\n"
        "--B\n"
        "Content-Type: text/rfc822-headers\n"
        "\n"
        "From: Shop <news@shop.example>\n"
        "To: someone@example.org\n"
        "Subject: offers\n"
        "\n"
        "--B--\n",
        to, msgid, blocks);
}

#define HARD_X                                                                           \
    "Final-Recipient: rfc822; x@example.org\n"                                           \
    "Action: failed\n"                                                                   \
    "Status: 5.1.1\n"                                                                    \
    "Diagnostic-Code: smtp; 550 5.1.1 <x@example.org>: user unknown\n"
#define HARD_Y                                                                           \
    "Final-Recipient: rfc822; y@example.org\n"                                           \
    "Action: failed\n"                                                                   \
    "Status: 5.1.1\n"                                                                    \
    "Diagnostic-Code: smtp; 550 5.1.1 <y@example.org>: user unknown\n"

/* feedback_bounce. */

static void test_hard(void **state)
{
    struct buf why;
    json_t *ev, *e;
    int sup = -1;

    (void)state;
    buf_init(&why, 64);
    assert_int_equal(feedback_bounce(&fb, "default", "H@Example.COM", BOUNCE_HARD,
                                     "5.1.1", "550 5.1.1 user unknown", "msg-42", "relay",
                                     0, NULL, &sup, &why),
                     0);
    assert_int_equal(sup, 1);
    assert_string_equal(listed("default", STORE_BOUNCES, "h@example.com"), "hard");
    /* another tenant's list is untouched */
    assert_string_equal(listed("acme", STORE_BOUNCES, "h@example.com"), "");
    ev = events("h@example.com", "bounce");
    assert_int_equal(json_array_size(ev), 1);
    e = json_array_get(ev, 0);
    assert_string_equal(str(e, "event"), "bounce");
    assert_string_equal(str(e, "type"), "bounce");
    assert_string_equal(str(e, "bounce_type"), "hard");
    assert_string_equal(str(e, "status"), "5.1.1");
    assert_string_equal(str(e, "reason"), "550 5.1.1 user unknown");
    assert_string_equal(str(e, "source"), "relay");
    assert_string_equal(str(e, "tenant"), "default");
    assert_string_equal(str(e, "sg_message_id"), "msg-42");
    assert_int_equal(num(e, "timestamp"), T0);
    assert_true(boolean(e, "suppressed"));
    assert_null(json_object_get(e, "soft_bounces"));
    json_decref(ev);
    buf_release(&why);
}

static void test_fields_added(void **state)
{
    struct buf why;
    json_t *fields = json_pack("{s:[s],s:{s:s},s:s}", "category", "news", "unique_args",
                               "user_id", "42", "status", "not this");
    json_t *ev, *e;
    int sup = -1;

    (void)state;
    buf_init(&why, 64);
    assert_int_equal(feedback_bounce(&fb, "default", "f@example.com", BOUNCE_HARD,
                                     "5.1.1", "no such user", NULL, "dsn", 0, fields,
                                     &sup, &why),
                     0);
    ev = events("f@example.com", "bounce");
    assert_int_equal(json_array_size(ev), 1);
    e = json_array_get(ev, 0);
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(e, "category"), 0)), "news");
    assert_string_equal(str(json_object_get(e, "unique_args"), "user_id"), "42");
    /* the bounce's own fields win */
    assert_string_equal(str(e, "status"), "5.1.1");
    assert_null(json_object_get(e, "sg_message_id"));
    json_decref(ev);
    json_decref(fields);
    buf_release(&why);
}

static void test_soft_counts(void **state)
{
    json_t *ev;

    (void)state;
    assert_int_equal(bounce("default", "s@example.com", BOUNCE_SOFT, "4.2.2", 0), 0);
    assert_string_equal(listed("default", STORE_BOUNCES, "s@example.com"), "");
    fb.now = T0 + 3600;
    assert_int_equal(bounce("default", "s@example.com", BOUNCE_SOFT, "4.2.2", 0), 0);
    assert_string_equal(listed("default", STORE_BOUNCES, "s@example.com"), "");
    fb.now = T0 + 6 * DAY;
    assert_int_equal(bounce("default", "s@example.com", BOUNCE_SOFT, "5.2.2", 0), 1);
    assert_string_equal(listed("default", STORE_BOUNCES, "s@example.com"), "soft");
    ev = events("s@example.com", "bounce");
    assert_int_equal(json_array_size(ev), 3);
    /* newest first */
    assert_int_equal(num(json_array_get(ev, 0), "soft_bounces"), 3);
    assert_int_equal(num(json_array_get(ev, 1), "soft_bounces"), 2);
    assert_int_equal(num(json_array_get(ev, 2), "soft_bounces"), 1);
    assert_true(boolean(json_array_get(ev, 0), "suppressed"));
    assert_false(boolean(json_array_get(ev, 1), "suppressed"));
    assert_false(boolean(json_array_get(ev, 2), "suppressed"));
    assert_string_equal(str(json_array_get(ev, 0), "bounce_type"), "soft");
    assert_string_equal(str(json_array_get(ev, 0), "status"), "5.2.2");
    json_decref(ev);
}

static void test_soft_window(void **state)
{
    json_t *ev;

    (void)state;
    /* each a window apart: never more than one */
    for (int i = 0; i < 5; i++) {
        fb.now = T0 + i * 8 * DAY;
        assert_int_equal(bounce("default", "w@example.com", BOUNCE_SOFT, "4.2.2", 0), 0);
    }
    assert_string_equal(listed("default", STORE_BOUNCES, "w@example.com"), "");
    ev = events("w@example.com", "bounce");
    assert_int_equal(json_array_size(ev), 5);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(num(json_array_get(ev, i), "soft_bounces"), 1);
    json_decref(ev);
    /* 0, 4 and 8 days: the first has left the window by the third */
    fb.now = T0 + 100 * DAY;
    assert_int_equal(bounce("default", "v@example.com", BOUNCE_SOFT, "4.2.2", 0), 0);
    fb.now += 4 * DAY;
    assert_int_equal(bounce("default", "v@example.com", BOUNCE_SOFT, "4.2.2", 0), 0);
    fb.now += 4 * DAY;
    assert_int_equal(bounce("default", "v@example.com", BOUNCE_SOFT, "4.2.2", 0), 0);
    assert_string_equal(listed("default", STORE_BOUNCES, "v@example.com"), "");
    ev = events("v@example.com", "bounce");
    assert_int_equal(num(json_array_get(ev, 0), "soft_bounces"), 2);
    json_decref(ev);
    /* one more the next day: three within seven days */
    fb.now += DAY;
    assert_int_equal(bounce("default", "v@example.com", BOUNCE_SOFT, "4.2.2", 0), 1);
    assert_string_equal(listed("default", STORE_BOUNCES, "v@example.com"), "soft");
}

static void test_soft_tag(void **state)
{
    json_t *ev;

    (void)state;
    assert_int_equal(bounce("default", "t@example.com", BOUNCE_SOFT, "4.2.2", 7), 0);
    fb.now += 60;
    assert_int_equal(bounce("default", "t@example.com", BOUNCE_SOFT, "4.2.2", 7), 0);
    fb.now += 60;
    assert_int_equal(bounce("default", "t@example.com", BOUNCE_SOFT, "4.2.2", 7), 0);
    ev = events("t@example.com", "bounce");
    assert_int_equal(json_array_size(ev), 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(num(json_array_get(ev, i), "soft_bounces"), 1);
    json_decref(ev);
    assert_string_equal(listed("default", STORE_BOUNCES, "t@example.com"), "");
    /* other tags count */
    assert_int_equal(bounce("default", "t@example.com", BOUNCE_SOFT, "4.2.2", 8), 0);
    assert_int_equal(bounce("default", "t@example.com", BOUNCE_SOFT, "4.2.2", 9), 1);
    assert_string_equal(listed("default", STORE_BOUNCES, "t@example.com"), "soft");
    /* tag 0 is no tag: every one counts */
    assert_int_equal(bounce("nosoft", "t0@example.com", BOUNCE_SOFT, "4.2.2", 0), 0);
    assert_int_equal(bounce("nosoft", "t0@example.com", BOUNCE_SOFT, "4.2.2", 0), 0);
    ev = events("t0@example.com", "bounce");
    assert_int_equal(num(json_array_get(ev, 0), "soft_bounces"), 2);
    json_decref(ev);
}

static void test_block(void **state)
{
    struct conf *strict;
    json_t *ev, *e;

    (void)state;
    assert_int_equal(bounce("default", "b@example.com", BOUNCE_BLOCK, "5.7.1", 0), 0);
    assert_string_equal(listed("default", STORE_BOUNCES, "b@example.com"), "block");
    ev = events("b@example.com", "bounce");
    assert_int_equal(json_array_size(ev), 1);
    e = json_array_get(ev, 0);
    assert_string_equal(str(e, "type"), "blocked");
    assert_string_equal(str(e, "bounce_type"), "block");
    assert_string_equal(str(e, "status"), "5.7.1");
    assert_false(boolean(e, "suppressed"));
    json_decref(ev);
    /* with suppress_block, the block drops */
    strict = load("strict.conf", "bounces = { suppress_block = true; };\n");
    fb.conf = strict;
    assert_int_equal(bounce("default", "b2@example.com", BOUNCE_BLOCK, "5.7.26", 0), 1);
    assert_string_equal(listed("default", STORE_BOUNCES, "b2@example.com"), "block");
    ev = events("b2@example.com", "bounce");
    assert_true(boolean(json_array_get(ev, 0), "suppressed"));
    json_decref(ev);
    fb.conf = conf;
    conf_free(strict);
    /* and without it again: listed, not dropped */
    assert_int_equal(bounce("default", "b2@example.com", BOUNCE_BLOCK, "5.7.26", 0), 0);
}

static void test_never_lowered(void **state)
{
    json_t *ev;

    (void)state;
    assert_int_equal(bounce("default", "h@example.com", BOUNCE_HARD, "5.1.1", 0), 1);
    /* a later soft or block keeps hard, and the address still drops */
    for (int i = 0; i < 4; i++)
        assert_int_equal(bounce("default", "h@example.com", BOUNCE_SOFT, "4.2.2", 0), 1);
    assert_string_equal(listed("default", STORE_BOUNCES, "h@example.com"), "hard");
    assert_int_equal(bounce("default", "h@example.com", BOUNCE_BLOCK, "5.7.1", 0), 1);
    assert_string_equal(listed("default", STORE_BOUNCES, "h@example.com"), "hard");
    ev = events("h@example.com", "bounce");
    assert_int_equal(json_array_size(ev), 6);
    assert_string_equal(str(json_array_get(ev, 0), "bounce_type"), "block");
    assert_true(boolean(json_array_get(ev, 0), "suppressed"));
    json_decref(ev);
    /* soft is not turned into block */
    for (int i = 0; i < 3; i++)
        bounce("default", "s@example.com", BOUNCE_SOFT, "4.2.2", 0);
    assert_string_equal(listed("default", STORE_BOUNCES, "s@example.com"), "soft");
    assert_int_equal(bounce("default", "s@example.com", BOUNCE_BLOCK, "5.7.1", 0), 1);
    assert_string_equal(listed("default", STORE_BOUNCES, "s@example.com"), "soft");
    /* a block is raised to hard, and to soft */
    assert_int_equal(bounce("default", "b@example.com", BOUNCE_BLOCK, "5.7.1", 0), 0);
    assert_int_equal(bounce("default", "b@example.com", BOUNCE_HARD, "5.1.1", 0), 1);
    assert_string_equal(listed("default", STORE_BOUNCES, "b@example.com"), "hard");
    assert_int_equal(bounce("acme", "b@example.com", BOUNCE_BLOCK, "5.7.1", 0), 0);
    assert_int_equal(bounce("acme", "b@example.com", BOUNCE_SOFT, "4.2.2", 0), 1);
    assert_string_equal(listed("acme", STORE_BOUNCES, "b@example.com"), "soft");
    /* soft raised to hard */
    assert_int_equal(bounce("default", "s@example.com", BOUNCE_HARD, "5.1.1", 0), 1);
    assert_string_equal(listed("default", STORE_BOUNCES, "s@example.com"), "hard");
}

static void test_soft_limit_zero_and_tenants(void **state)
{
    json_t *ev;

    (void)state;
    for (int i = 0; i < 10; i++)
        assert_int_equal(bounce("nosoft", "z@example.com", BOUNCE_SOFT, "4.2.2", 0), 0);
    assert_string_equal(listed("nosoft", STORE_BOUNCES, "z@example.com"), "");
    ev = events("z@example.com", "bounce");
    assert_int_equal(json_array_size(ev), 10);
    assert_int_equal(num(json_array_get(ev, 0), "soft_bounces"), 10);
    assert_false(boolean(json_array_get(ev, 0), "suppressed"));
    assert_string_equal(str(json_array_get(ev, 0), "tenant"), "nosoft");
    json_decref(ev);
    /* hard still lists there */
    assert_int_equal(bounce("nosoft", "z@example.com", BOUNCE_HARD, "5.1.1", 0), 1);
    assert_string_equal(listed("nosoft", STORE_BOUNCES, "z@example.com"), "hard");
    /* acme lists at the first soft bounce; default does not */
    assert_int_equal(bounce("acme", "a@example.com", BOUNCE_SOFT, "4.2.2", 0), 1);
    assert_string_equal(listed("acme", STORE_BOUNCES, "a@example.com"), "soft");
    assert_int_equal(bounce("default", "a@example.com", BOUNCE_SOFT, "4.2.2", 0), 0);
    assert_string_equal(listed("default", STORE_BOUNCES, "a@example.com"), "");
    /* a tenant the file does not name has the top level's rules */
    assert_int_equal(bounce("other", "a@example.com", BOUNCE_SOFT, "4.2.2", 0), 0);
    assert_string_equal(listed("other", STORE_BOUNCES, "a@example.com"), "");
}

static void test_remove_forgets(void **state)
{
    struct buf why;
    json_t *ev;

    (void)state;
    buf_init(&why, 64);
    for (int i = 0; i < 3; i++)
        bounce("default", "r@example.com", BOUNCE_SOFT, "4.2.2", 0);
    assert_string_equal(listed("default", STORE_BOUNCES, "r@example.com"), "soft");
    assert_int_equal(store_remove(st, "default", STORE_BOUNCES, 0, "r@example.com", &why),
                     1);
    assert_string_equal(listed("default", STORE_BOUNCES, "r@example.com"), "");
    assert_int_equal(bounce("default", "r@example.com", BOUNCE_SOFT, "4.2.2", 0), 0);
    ev = events("r@example.com", "bounce");
    assert_int_equal(json_array_size(ev), 4);
    assert_int_equal(num(json_array_get(ev, 0), "soft_bounces"), 1);
    json_decref(ev);
    assert_string_equal(listed("default", STORE_BOUNCES, "r@example.com"), "");
    buf_release(&why);
}

static void test_not_an_address(void **state)
{
    struct buf why;
    int sup = -1;
    json_t *ev;

    (void)state;
    buf_init(&why, 64);
    assert_int_equal(feedback_bounce(&fb, "default", "not an address", BOUNCE_HARD,
                                     "5.1.1", "x", NULL, "relay", 0, NULL, &sup, &why),
                     -1);
    assert_true(why.len > 0);
    assert_non_null(strstr(buf_str(&why), "not an address"));
    assert_int_equal(sup, 0);
    buf_reset(&why);
    assert_int_equal(feedback_bounce(&fb, "default", "", BOUNCE_SOFT, "4.2.2", "x", NULL,
                                     "relay", 0, NULL, NULL, &why),
                     -1);
    assert_true(why.len > 0);
    ev = events(NULL, NULL);
    assert_int_equal(json_array_size(ev), 0);
    json_decref(ev);
    assert_int_equal(store_count(st, "default", STORE_BOUNCES, 0, &why), 0);
    buf_release(&why);
}

/* feedback_ingest. */

static void test_unsubscribe_mail(void **state)
{
    struct buf tok, msg, env, why;
    struct store_hits h;
    uint32_t g = 0;
    json_t *a, *x;

    (void)state;
    buf_init(&tok, 256);
    buf_init(&msg, 1024);
    buf_init(&env, 256);
    buf_init(&why, 64);
    assert_int_equal(
        store_group_create(st, "default", "Newsletter", "weekly", 0, &g, NULL, &why), 0);
    assert_true(g > 0);
    token(TOKEN_UNSUBSCRIBE, "default", "carl@example.com", g, &tok);
    buf_printf(&env, "unsubscribe+%s@shop.example", tok.data);
    buf_printf(&msg,
               "From: Carl <carl@example.com>\n"
               "To: %s\n"
               "Subject: please\n"
               "Message-ID: <u1@example.com>\n"
               "\n"
               "Please keep sending me everything!\n",
               env.data);
    a = ingest(msg.data, env.data, NULL);
    assert_int_equal(json_array_size(a), 1);
    x = json_array_get(a, 0);
    assert_string_equal(str(x, "action"), "group_unsubscribe");
    assert_string_equal(str(x, "email"), "carl@example.com");
    assert_string_equal(str(x, "tenant"), "default");
    assert_string_equal(str(x, "matched"), "token");
    assert_string_equal(str(x, "kind"), "none");
    assert_int_equal(num(x, "asm_group_id"), g);
    json_decref(a);
    h = hits_of("default", "carl@example.com");
    assert_int_equal(h.n, 1);
    assert_int_equal(h.m[0].list, STORE_GROUP);
    assert_int_equal(h.m[0].group, g);
    store_hits_free(&h);
    /* the event */
    a = events("carl@example.com", "group_unsubscribe");
    assert_int_equal(json_array_size(a), 1);
    assert_int_equal(num(json_array_get(a, 0), "asm_group_id"), g);
    json_decref(a);

    /* group 0: the global list */
    token(TOKEN_UNSUBSCRIBE, "default", "dora@example.com", 0, &tok);
    buf_reset(&env);
    buf_printf(&env, "unsubscribe+%s@shop.example", tok.data);
    buf_reset(&msg);
    buf_printf(&msg, "From: dora@example.com\nTo: %s\nSubject: unsubscribe\n\n\n",
               env.data);
    a = ingest(msg.data, env.data, NULL);
    assert_int_equal(json_array_size(a), 1);
    assert_string_equal(str(json_array_get(a, 0), "action"), "unsubscribe");
    assert_string_equal(str(json_array_get(a, 0), "email"), "dora@example.com");
    assert_int_equal(num(json_array_get(a, 0), "asm_group_id"), 0);
    json_decref(a);
    h = hits_of("default", "dora@example.com");
    assert_int_equal(h.n, 1);
    assert_int_equal(h.m[0].list, STORE_UNSUBSCRIBES);
    store_hits_free(&h);

    /* without an envelope recipient: the To field stands for it */
    token(TOKEN_UNSUBSCRIBE, "acme", "emil@example.com", 0, &tok);
    buf_reset(&msg);
    buf_printf(&msg,
               "From: emil@example.com\nTo: <unsubscribe+%s@shop.example>\n\nstop\n",
               tok.data);
    a = ingest(msg.data, NULL, NULL);
    assert_int_equal(json_array_size(a), 1);
    assert_string_equal(str(json_array_get(a, 0), "action"), "unsubscribe");
    assert_string_equal(str(json_array_get(a, 0), "tenant"), "acme");
    json_decref(a);
    h = hits_of("acme", "emil@example.com");
    assert_int_equal(h.n, 1);
    store_hits_free(&h);
    buf_release(&tok);
    buf_release(&msg);
    buf_release(&env);
    buf_release(&why);
}

static void test_unsubscribe_forged_and_autoreply(void **state)
{
    struct buf tok, msg, env;
    struct store_hits h;
    json_t *a;
    size_t mid;

    (void)state;
    buf_init(&tok, 256);
    buf_init(&msg, 1024);
    buf_init(&env, 256);
    token(TOKEN_UNSUBSCRIBE, "default", "fred@example.com", 0, &tok);
    /* one character changed */
    mid = tok.len / 2;
    tok.data[mid] = tok.data[mid] == 'A' ? 'B' : 'A';
    buf_printf(&env, "unsubscribe+%s@shop.example", tok.data);
    buf_printf(&msg, "From: fred@example.com\nTo: %s\nSubject: unsubscribe\n\nstop\n",
               env.data);
    a = ingest(msg.data, env.data, NULL);
    assert_int_equal(json_array_size(a), 1);
    assert_string_equal(str(json_array_get(a, 0), "action"), "unmatched");
    assert_string_equal(str(json_array_get(a, 0), "matched"), "none");
    assert_non_null(strstr(str(json_array_get(a, 0), "reason"), "does not decrypt"));
    json_decref(a);
    h = hits_of("default", "fred@example.com");
    assert_int_equal(h.n, 0);
    store_hits_free(&h);
    a = events(NULL, "unmatched");
    assert_int_equal(json_array_size(a), 1);
    json_decref(a);

    /* an auto-reply to a good unsubscribe address unsubscribes nobody */
    token(TOKEN_UNSUBSCRIBE, "default", "gina@example.com", 0, &tok);
    buf_reset(&env);
    buf_printf(&env, "unsubscribe+%s@shop.example", tok.data);
    buf_reset(&msg);
    buf_printf(&msg,
               "From: gina@example.com\nTo: %s\nSubject: Re: offers\n"
               "Auto-Submitted: auto-replied\n\nI am on holiday.\n",
               env.data);
    a = ingest(msg.data, env.data, NULL);
    assert_int_equal(json_array_size(a), 1);
    assert_string_equal(str(json_array_get(a, 0), "action"), "unmatched");
    assert_string_equal(str(json_array_get(a, 0), "kind"), "autoreply");
    json_decref(a);
    h = hits_of("default", "gina@example.com");
    assert_int_equal(h.n, 0);
    store_hits_free(&h);
    /* a return-path token does not unsubscribe */
    token(TOKEN_RETURN_PATH, "default", "hugo@example.com", 0, &tok);
    buf_reset(&env);
    buf_printf(&env, "bounces+%s@shop.example", tok.data);
    buf_reset(&msg);
    buf_printf(&msg, "From: hugo@example.com\nTo: %s\nSubject: unsubscribe\n\nstop\n",
               env.data);
    a = ingest(msg.data, env.data, NULL);
    assert_int_equal(json_array_size(a), 1);
    assert_string_equal(str(json_array_get(a, 0), "action"), "unmatched");
    json_decref(a);
    h = hits_of("default", "hugo@example.com");
    assert_int_equal(h.n, 0);
    store_hits_free(&h);
    buf_release(&tok);
    buf_release(&msg);
    buf_release(&env);
}

static void test_dsn_matched_by_sent_mail(void **state)
{
    struct buf msg;
    json_t *a, *x;

    (void)state;
    buf_init(&msg, 2048);
    dsn(&msg, "bounces@shop.example", "d1@mx.example.net", HARD_X);
    a = ingest(msg.data, "bounces@shop.example", NULL);
    assert_int_equal(json_array_size(a), 1);
    x = json_array_get(a, 0);
    assert_string_equal(str(x, "action"), "unmatched");
    assert_string_equal(str(x, "email"), "x@example.org");
    assert_string_equal(str(x, "kind"), "bounce");
    assert_string_equal(str(x, "format"), "rfc3464");
    assert_non_null(strstr(str(x, "reason"), "match_window"));
    json_decref(a);
    assert_string_equal(listed("default", STORE_BOUNCES, "x@example.org"), "");

    /* mail sent to it eight days ago: outside feedback.match_window */
    record_sent("x@example.org", "default", T0 - 8 * DAY);
    a = ingest(msg.data, "bounces@shop.example", NULL);
    assert_string_equal(str(json_array_get(a, 0), "action"), "unmatched");
    json_decref(a);
    /* sent by another tenant: not this one's */
    record_sent("x@example.org", "acme", T0 - 3600);
    a = ingest(msg.data, "bounces@shop.example", NULL);
    assert_string_equal(str(json_array_get(a, 0), "action"), "unmatched");
    json_decref(a);
    assert_string_equal(listed("default", STORE_BOUNCES, "x@example.org"), "");

    record_sent("x@example.org", "default", T0 - 3600);
    a = ingest(msg.data, "bounces@shop.example", NULL);
    assert_int_equal(json_array_size(a), 1);
    x = json_array_get(a, 0);
    assert_string_equal(str(x, "action"), "bounce");
    assert_string_equal(str(x, "email"), "x@example.org");
    assert_string_equal(str(x, "tenant"), "default");
    assert_string_equal(str(x, "matched"), "sent");
    assert_string_equal(str(x, "bounce_type"), "hard");
    assert_string_equal(str(x, "status"), "5.1.1");
    assert_string_equal(str(x, "reason"), "550 5.1.1 <x@example.org>: user unknown");
    assert_true(boolean(x, "suppressed"));
    json_decref(a);
    assert_string_equal(listed("default", STORE_BOUNCES, "x@example.org"), "hard");
    a = events("x@example.org", "bounce");
    assert_int_equal(json_array_size(a), 1);
    assert_string_equal(str(json_array_get(a, 0), "source"), "dsn");
    json_decref(a);
    buf_release(&msg);
}

static void test_dsn_matched_by_token(void **state)
{
    struct buf tok, msg, env;
    json_t *a, *x;

    (void)state;
    buf_init(&tok, 256);
    buf_init(&msg, 2048);
    buf_init(&env, 256);
    token(TOKEN_RETURN_PATH, "acme", "y@example.org", 0, &tok);
    buf_printf(&env, "bounces+%s@shop.example", tok.data);
    /* a report about y: y's bounce, in the token's tenant */
    dsn(&msg, env.data, "d2@mx.example.net", HARD_Y);
    a = ingest(msg.data, env.data, NULL);
    assert_int_equal(json_array_size(a), 1);
    x = json_array_get(a, 0);
    assert_string_equal(str(x, "action"), "bounce");
    assert_string_equal(str(x, "email"), "y@example.org");
    assert_string_equal(str(x, "matched"), "token");
    assert_string_equal(str(x, "tenant"), "acme");
    assert_string_equal(str(x, "bounce_type"), "hard");
    json_decref(a);
    assert_string_equal(listed("acme", STORE_BOUNCES, "y@example.org"), "hard");
    assert_string_equal(listed("default", STORE_BOUNCES, "y@example.org"), "");
    /* the event carries the token's message id */
    a = events("y@example.org", "bounce");
    assert_int_equal(json_array_size(a), 1);
    assert_string_equal(str(json_array_get(a, 0), "sg_message_id"),
                        "20260921.m1@shop.example");
    json_decref(a);

    /* a report naming two: only y, the other is not taken from y's token */
    token(TOKEN_RETURN_PATH, "default", "y@example.org", 0, &tok);
    buf_reset(&env);
    buf_printf(&env, "bounces+%s@shop.example", tok.data);
    record_sent("x@example.org", "default", T0 - 60); /* even when x was sent mail */
    dsn(&msg, env.data, "d3@mx.example.net", HARD_X "\n" HARD_Y);
    a = ingest(msg.data, env.data, NULL);
    assert_int_equal(json_array_size(a), 2);
    x = json_array_get(a, 0);
    assert_string_equal(str(x, "action"), "unmatched");
    assert_string_equal(str(x, "email"), "x@example.org");
    assert_non_null(strstr(str(x, "reason"), "another recipient"));
    x = json_array_get(a, 1);
    assert_string_equal(str(x, "action"), "bounce");
    assert_string_equal(str(x, "email"), "y@example.org");
    assert_string_equal(str(x, "matched"), "token");
    json_decref(a);
    assert_string_equal(listed("default", STORE_BOUNCES, "x@example.org"), "");
    assert_string_equal(listed("default", STORE_BOUNCES, "y@example.org"), "hard");

    /* a forged token in the envelope matches nothing by itself */
    tok.data[10] = tok.data[10] == 'A' ? 'B' : 'A';
    buf_reset(&env);
    buf_printf(&env, "bounces+%s@shop.example", tok.data);
    dsn(&msg, env.data, "d4@mx.example.net",
        "Final-Recipient: rfc822; w@example.org\nAction: failed\nStatus: 5.1.1\n");
    a = ingest(msg.data, env.data, NULL);
    assert_int_equal(json_array_size(a), 1);
    assert_string_equal(str(json_array_get(a, 0), "action"), "unmatched");
    assert_string_equal(str(json_array_get(a, 0), "email"), "w@example.org");
    json_decref(a);
    assert_string_equal(listed("default", STORE_BOUNCES, "w@example.org"), "");
    buf_release(&tok);
    buf_release(&msg);
    buf_release(&env);
}

static void test_dsn_delayed(void **state)
{
    struct buf tok, msg, env;
    json_t *a, *x;

    (void)state;
    buf_init(&tok, 256);
    buf_init(&msg, 2048);
    buf_init(&env, 256);
    token(TOKEN_RETURN_PATH, "default", "q@example.org", 0, &tok);
    buf_printf(&env, "bounces+%s@shop.example", tok.data);
    dsn(&msg, env.data, "d5@mx.example.net",
        "Final-Recipient: rfc822; q@example.org\nAction: delayed\nStatus: 4.4.1\n"
        "Diagnostic-Code: X-Postfix; connection timed out\n");
    a = ingest(msg.data, env.data, NULL);
    assert_int_equal(json_array_size(a), 1);
    x = json_array_get(a, 0);
    assert_string_equal(str(x, "action"), "deferred");
    assert_string_equal(str(x, "kind"), "delay");
    assert_string_equal(str(x, "status"), "4.4.1");
    json_decref(a);
    assert_string_equal(listed("default", STORE_BOUNCES, "q@example.org"), "");
    a = events("q@example.org", "deferred");
    assert_int_equal(json_array_size(a), 1);
    assert_string_equal(str(json_array_get(a, 0), "response"), "connection timed out");
    json_decref(a);
    buf_release(&tok);
    buf_release(&msg);
    buf_release(&env);
}

static void test_arf_complaint(void **state)
{
    struct buf tok, msg;
    json_t *a, *x;
    struct store_hits h;

    (void)state;
    buf_init(&tok, 256);
    buf_init(&msg, 4096);
    token(TOKEN_UNSUBSCRIBE, "default", "z@example.org", 0, &tok);
    buf_printf(
        &msg,
        "From: Hotmail Staff <staff@hotmail.example>\n"
        "To: fbl@shop.example\n"
        "Subject: complaint about message from 198.51.100.25\n"
        "Message-ID: <arf1@hotmail.example>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/report; report-type=feedback-report; boundary=\"A\"\n"
        "\n"
        "--A\n"
        "Content-Type: text/plain\n"
        "\n"
        "This is an email abuse report.\n"
        "\n"
        "--A\n"
        "Content-Type: message/feedback-report\n"
        "\n"
        "Feedback-Type: abuse\n"
        "User-Agent: JMRP/1.0\n"
        "Version: 1\n"
        "Original-Rcpt-To: <redacted@redacted.invalid>\n"
        "Reporting-MTA: dns; FBL.Hotmail.Example\n"
        "\n"
        "--A\n"
        "Content-Type: text/rfc822-headers\n"
        "\n"
        "From: Shop <news@shop.example>\n"
        "To: redacted\n"
        "Subject: offers\n"
        "List-Unsubscribe: <https://t.example/u/%s>\n"
        "\n"
        "--A--\n",
        tok.data);
    a = ingest(msg.data, "fbl@shop.example", NULL);
    assert_int_equal(json_array_size(a), 1);
    x = json_array_get(a, 0);
    assert_string_equal(str(x, "action"), "spamreport");
    assert_string_equal(str(x, "email"), "z@example.org");
    assert_string_equal(str(x, "kind"), "arf");
    assert_string_equal(str(x, "format"), "arf");
    assert_string_equal(str(x, "matched"), "token");
    assert_string_equal(str(x, "source"), "fbl.hotmail.example");
    assert_string_equal(str(x, "feedback_type"), "abuse");
    json_decref(a);
    h = hits_of("default", "z@example.org");
    assert_int_equal(h.n, 1);
    assert_int_equal(h.m[0].list, STORE_SPAM_REPORTS);
    store_hits_free(&h);
    {
        struct buf why;

        buf_init(&why, 64);
        assert_int_equal(store_get(st, "default", STORE_SPAM_REPORTS, 0, "z@example.org",
                                   NULL, NULL, &why),
                         1);
        buf_release(&why);
    }
    /* the redacted address is not listed, nor taken as one */
    h = hits_of("default", "redacted@redacted.invalid");
    assert_int_equal(h.n, 0);
    store_hits_free(&h);
    a = events("z@example.org", "spamreport");
    assert_int_equal(json_array_size(a), 1);
    assert_string_equal(str(json_array_get(a, 0), "source"), "fbl.hotmail.example");
    json_decref(a);
    buf_release(&tok);
    buf_release(&msg);
}

static void test_tokens_of_header(void **state)
{
    struct buf out, t1, t2, t3, t4, expect;
    static const char short_tok[] = "abcdefghijklmnopqrstuvwxyz0123456789ABC"; /* 39 */
    static const char long_ok[] = "abcdefghijklmnopqrstuvwxyz0123456789ABCD";  /* 40 */
    struct buf hdr;

    (void)state;
    buf_init(&out, 256);
    buf_init(&t1, 256);
    buf_init(&t2, 256);
    buf_init(&t3, 256);
    buf_init(&t4, 256);
    buf_init(&expect, 1024);
    buf_init(&hdr, 2048);
    token(TOKEN_UNSUBSCRIBE, "default", "a@example.org", 0, &t1);
    token(TOKEN_UNSUBSCRIBE, "default", "b@example.org", 3, &t2);
    token(TOKEN_RETURN_PATH, "default", "c@example.org", 0, &t3);
    token(TOKEN_PREFERENCES, "default", "d@example.org", 0, &t4);
    assert_int_equal(strlen(short_tok), 39);
    buf_printf(
        &hdr,
        "From: news@shop.example\r\n"
        "List-Unsubscribe: <https://t.example/u/%s>,\r\n"
        " <mailto:unsubscribe+%s@shop.example?subject=unsub>\r\n"
        "Return-Path: <bounces+%s@shop.example>\r\n"
        "X-Sendguard-Token:   %s\r\n"
        "Subject: not here https://t.example/u/%s\r\n"
        "X-Other: <mailto:unsubscribe+%s@shop.example>\r\n"
        "Reply-To: x+%s@shop.example\r\n"
        "List-Unsubscribe: <mailto:u+%s@shop.example>, <https://t.example/u/%s>\r\n"
        "Return-Path: <bounces+%s@shop.example>\r\n"
        "Return-Path: <bounces+%s>\r\n",
        t1.data, t2.data, t3.data, t4.data, t1.data, t1.data, t1.data, short_tok,
        short_tok, long_ok, t3.data);
    feedback_tokens(hdr.data, hdr.len, &out);
    /* X-Sendguard-Token is no field sendguard writes: not read */
    buf_printf(&expect, "%s\n%s\n%s\n%s\n", t1.data, t2.data, t3.data, long_ok);
    assert_string_equal(out.data, expect.data);
    /* nothing in an empty header, or in one with no such field */
    buf_reset(&out);
    feedback_tokens("", 0, &out);
    assert_int_equal(out.len, 0);
    buf_reset(&hdr);
    buf_printf(&hdr, "To: x+%s@example.org\r\nCc: <y+%s@example.org>\r\n", long_ok,
               t1.data);
    feedback_tokens(hdr.data, hdr.len, &out);
    assert_int_equal(out.len, 0);
    /* /p/ is a preferences link */
    buf_reset(&hdr);
    buf_printf(&hdr, "List-Unsubscribe: <https://t.example/p/%s>\r\n", t4.data);
    feedback_tokens(hdr.data, hdr.len, &out);
    buf_reset(&expect);
    buf_printf(&expect, "%s\n", t4.data);
    assert_string_equal(out.data, expect.data);
    buf_release(&out);
    buf_release(&t1);
    buf_release(&t2);
    buf_release(&t3);
    buf_release(&t4);
    buf_release(&expect);
    buf_release(&hdr);
}

static void test_store_read_only(void **state)
{
    struct buf tok, msg, env, why;
    json_t *a;

    (void)state;
    buf_init(&tok, 256);
    buf_init(&msg, 2048);
    buf_init(&env, 256);
    buf_init(&why, 64);
    store_close(st);
    st = store_open(dir, STORE_READ, &why);
    if (st == NULL)
        fail_msg("store_open: %s", buf_str(&why));
    fb.store = st;
    token(TOKEN_RETURN_PATH, "default", "y@example.org", 0, &tok);
    buf_printf(&env, "bounces+%s@shop.example", tok.data);
    dsn(&msg, env.data, "d9@mx.example.net", HARD_Y);
    a = json_array();
    assert_int_equal(feedback_ingest(&fb, msg.data, msg.len, env.data, NULL, a, &why),
                     -1);
    assert_true(why.len > 0);
    assert_non_null(strstr(buf_str(&why), "read-only"));
    /* nothing was done, so nothing is reported as done */
    for (size_t i = 0; i < json_array_size(a); i++)
        assert_string_not_equal(str(json_array_get(a, i), "action"), "bounce");
    json_decref(a);
    /* feedback_bounce itself, the relay's path */
    buf_reset(&why);
    assert_int_equal(feedback_bounce(&fb, "default", "y@example.org", BOUNCE_SOFT,
                                     "4.2.2", "x", NULL, "relay", 0, NULL, NULL, &why),
                     -1);
    assert_true(why.len > 0);
    assert_string_equal(listed("default", STORE_BOUNCES, "y@example.org"), "");
    /* an unsubscribe cannot be written either */
    token(TOKEN_UNSUBSCRIBE, "default", "u@example.org", 0, &tok);
    buf_reset(&env);
    buf_printf(&env, "unsubscribe+%s@shop.example", tok.data);
    buf_reset(&msg);
    buf_printf(&msg, "From: u@example.org\nTo: %s\n\nstop\n", env.data);
    buf_reset(&why);
    assert_int_equal(feedback_ingest(&fb, msg.data, msg.len, env.data, NULL, NULL, &why),
                     -1);
    assert_true(why.len > 0);
    buf_release(&tok);
    buf_release(&msg);
    buf_release(&env);
    buf_release(&why);
}

/*
 * An address X-Failed-Recipients names twice (in any case) is one
 * recipient: one report with no Message-ID (tag 0) must count as one soft
 * bounce, not several (it did, once).
 */
static void test_duplicate_failed_recipients(void **state)
{
    static const char msg[] =
        "From: Mail Delivery System <Mailer-Daemon@mx.example.net>\n"
        "To: bounces@shop.example\n"
        "Subject: Mail delivery failed\n"
        "X-Failed-Recipients: dup@example.org, DUP@example.org,\n"
        " dup@example.org\n"
        "\n"
        "This message was created automatically by mail delivery "
        "software.\n"
        "\n"
        "A message that you sent could not be delivered.\n";
    json_t *a;

    (void)state;
    record_sent("dup@example.org", "default", T0 - 60);
    a = ingest(msg, "bounces@shop.example", NULL);
    assert_int_equal(json_array_size(a), 1);
    assert_string_equal(str(json_array_get(a, 0), "action"), "bounce");
    assert_string_equal(str(json_array_get(a, 0), "bounce_type"), "soft");
    assert_false(boolean(json_array_get(a, 0), "suppressed"));
    json_decref(a);
    assert_string_equal(listed("default", STORE_BOUNCES, "dup@example.org"), "");
}

/*
 * With suppress_block, an address listed "block" keeps dropping when a soft
 * bounce below the limit (or a hard one with suppress_hard off) follows,
 * and *suppressed and the event say so (they once said 0).
 */
static void test_block_then_soft_suppressed(void **state)
{
    struct conf *strict = load("strict.conf", "bounces = { suppress_block = true; };\n");
    struct policy_decision d;
    struct store_hits h;

    (void)state;
    fb.conf = strict;
    assert_int_equal(bounce("default", "bs@example.com", BOUNCE_BLOCK, "5.7.1", 0), 1);
    /* the address's mail is dropped by the block entry ... */
    h = hits_of("default", "bs@example.com");
    policy_decide(&h, NULL, policy_bounce_drops(strict, "default"), &d);
    assert_int_equal(d.action, POLICY_DROP);
    store_hits_free(&h);
    /* ... and still after one soft bounce, which must say so */
    {
        int sup = bounce("default", "bs@example.com", BOUNCE_SOFT, "4.2.2", 0);

        h = hits_of("default", "bs@example.com");
        policy_decide(&h, NULL, policy_bounce_drops(strict, "default"), &d);
        store_hits_free(&h);
        fb.conf = conf;
        conf_free(strict);
        assert_int_equal(d.action, POLICY_DROP);
        assert_int_equal(sup, 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fields_added, setup, teardown),
        cmocka_unit_test_setup_teardown(test_soft_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_soft_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_soft_tag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_never_lowered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_soft_limit_zero_and_tenants, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_remove_forgets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_an_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsubscribe_mail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsubscribe_forged_and_autoreply, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dsn_matched_by_sent_mail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dsn_matched_by_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dsn_delayed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arf_complaint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens_of_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_failed_recipients, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_block_then_soft_suppressed, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
