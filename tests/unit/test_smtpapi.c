/*
 * test_smtpapi - the X-SMTPAPI header (DESIGN.md step 3): every key and
 * filter setting, each wrong type, folding, the size limit, conflicting
 * bypass filters, notes for ignored keys, invalid JSON, merging.  Every
 * refusal must leave the options initialised, the notes untouched and a
 * reason of one printable ASCII line; ASan checks that nothing leaks.
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

#include "smtpapi.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* assert_one_line - a reason fit for an SMTP reply */
static void assert_one_line(const struct buf *why)
{
    assert_true(buf_len(why) > 0);
    assert_true(buf_len(why) <= 400);
    for (size_t i = 0; i < buf_len(why); i++)
        if (why->data[i] < 0x20 || why->data[i] > 0x7e)
            fail_msg("byte 0x%02x at %zu in reason \"%s\"", (unsigned char)why->data[i],
                     i, buf_str(why));
}

/* parse_ok - a value that must be accepted, NUL-terminated */
static void parse_ok(const char *value, struct smtpapi_opts *o, struct buf *notes)
{
    struct buf why;

    buf_init(&why, 64);
    if (smtpapi_parse(value, strlen(value), 0, o, notes, &why) != 0)
        fail_msg("refused %s: %s", value, buf_str(&why));
    buf_release(&why);
}

/* parse_err_len - a value that must be refused with a reason containing expect */
static void parse_err_len(const char *value, size_t len, size_t max, const char *expect)
{
    struct smtpapi_opts o, fresh;
    struct buf why, notes;

    buf_init(&why, 64);
    buf_init(&notes, 64);
    buf_set(&notes, "earlier note\n");
    if (smtpapi_parse(value, len, max, &o, &notes, &why) != -1)
        fail_msg("accepted %.*s", (int)len, value);
    if (strstr(buf_str(&why), expect) == NULL)
        fail_msg("for %.*s\n  reason: %s\nexpected: %s", (int)len, value, buf_str(&why),
                 expect);
    assert_one_line(&why);
    smtpapi_init(&fresh);
    assert_memory_equal(&o, &fresh, sizeof(o));
    assert_string_equal(buf_str(&notes), "earlier note\n");
    buf_release(&why);
    buf_release(&notes);
}

/* parse_err - the same, for a NUL-terminated value and the default limit */
static void parse_err(const char *value, const char *expect)
{
    parse_err_len(value, strlen(value), 0, expect);
}

/* repeat - a string of n copies of unit, to be freed */
static char *repeat(const char *unit, size_t n)
{
    size_t len = strlen(unit);
    char *s = malloc(len * n + 1);

    for (size_t i = 0; i < n; i++)
        memcpy(s + i * len, unit, len);
    s[len * n] = 0;
    return s;
}

/* Every member of struct smtpapi_filters, as the header names it. */
struct setting {
    const char *filter, *name;
    int is_flag;
    size_t offset;
};

#define FLAG(f, n, m)                                                                    \
    {                                                                                    \
        f, n, 1, offsetof(struct smtpapi_filters, m)                                     \
    }
#define STR(f, n, m)                                                                     \
    {                                                                                    \
        f, n, 0, offsetof(struct smtpapi_filters, m)                                     \
    }

static const struct setting settings[] = {
    FLAG("clicktrack", "enable", clicktrack.enable),
    FLAG("clicktrack", "enable_text", clicktrack.enable_text),
    FLAG("opentrack", "enable", opentrack.enable),
    STR("opentrack", "replace", opentrack.replace),
    FLAG("subscriptiontrack", "enable", subscriptiontrack.enable),
    STR("subscriptiontrack", "text/html", subscriptiontrack.text_html),
    STR("subscriptiontrack", "text/plain", subscriptiontrack.text_plain),
    STR("subscriptiontrack", "replace", subscriptiontrack.replace),
    FLAG("footer", "enable", footer.enable),
    STR("footer", "text/html", footer.text_html),
    STR("footer", "text/plain", footer.text_plain),
    FLAG("ganalytics", "enable", ganalytics.enable),
    STR("ganalytics", "utm_source", ganalytics.utm_source),
    STR("ganalytics", "utm_medium", ganalytics.utm_medium),
    STR("ganalytics", "utm_term", ganalytics.utm_term),
    STR("ganalytics", "utm_content", ganalytics.utm_content),
    STR("ganalytics", "utm_campaign", ganalytics.utm_campaign),
    FLAG("bypass_list_management", "enable", bypass_list_management),
    FLAG("bypass_spam_management", "enable", bypass_spam_management),
    FLAG("bypass_bounce_management", "enable", bypass_bounce_management),
    FLAG("bypass_unsubscribe_management", "enable", bypass_unsubscribe_management),
};

/* flag_at, string_at - a member of the filters */
static int *flag_at(struct smtpapi_filters *f, const struct setting *s)
{
    return (int *)((char *)f + s->offset);
}

static char **string_at(struct smtpapi_filters *f, const struct setting *s)
{
    return (char **)((char *)f + s->offset);
}

static void test_init(void **state)
{
    struct smtpapi_opts o;

    (void)state;
    memset(&o, 0x55, sizeof(o));
    smtpapi_init(&o);
    assert_int_equal(o.asm_group_id, 0);
    assert_null(o.groups_to_display);
    assert_int_equal(o.n_groups_to_display, 0);
    assert_null(o.categories);
    assert_int_equal(o.n_categories, 0);
    assert_null(o.unique_args);
    for (size_t i = 0; i < N(settings); i++) {
        if (settings[i].is_flag)
            assert_int_equal(*flag_at(&o.filters, &settings[i]), SMTPAPI_UNSET);
        else
            assert_null(*string_at(&o.filters, &settings[i]));
    }
    assert_false(smtpapi_is_on(SMTPAPI_UNSET));
    assert_false(smtpapi_is_on(0));
    assert_true(smtpapi_is_on(1));
    smtpapi_free(&o); /* freeing what is only initialised is fine */
}

static void test_empty_object(void **state)
{
    struct smtpapi_opts o, fresh;
    struct buf notes;

    (void)state;
    buf_init(&notes, 16);
    parse_ok("{}", &o, &notes);
    smtpapi_init(&fresh);
    assert_memory_equal(&o, &fresh, sizeof(o));
    assert_int_equal(buf_len(&notes), 0);
    smtpapi_free(&o);
    buf_release(&notes);
}

static void test_asm_group_id(void **state)
{
    static const struct {
        const char *value;
        long id;
    } cases[] = {
        {"{\"asm_group_id\":1}", 1},
        {"{\"asm_group_id\":42}", 42},
        {"{\"asm_group_id\": 4294967294 }", 4294967294L},
        {"{\"asm_group_id\":5,\"asm_group_id\":6}", 6}, /* the last one wins */
    };
    struct smtpapi_opts o;

    (void)state;
    for (size_t i = 0; i < N(cases); i++) {
        parse_ok(cases[i].value, &o, NULL);
        assert_int_equal(o.asm_group_id, cases[i].id);
        smtpapi_free(&o);
    }
}

static void test_groups_to_display(void **state)
{
    static const struct {
        const char *value;
        size_t n;
        long ids[4];
    } cases[] = {
        {"{\"asm_groups_to_display\":[7]}", 1, {7}},
        {"{\"asm_groups_to_display\":[3,1,2]}", 3, {3, 1, 2}},
        {"{\"asm_groups_to_display\":[3,1,3,2,1]}", 3, {3, 1, 2}},
        {"{\"asm_groups_to_display\":[]}", 0, {0}},
    };
    struct smtpapi_opts o;
    char value[512];
    size_t len;

    (void)state;
    for (size_t i = 0; i < N(cases); i++) {
        parse_ok(cases[i].value, &o, NULL);
        assert_int_equal(o.n_groups_to_display, cases[i].n);
        for (size_t j = 0; j < cases[i].n; j++)
            assert_int_equal(o.groups_to_display[j], cases[i].ids[j]);
        if (cases[i].n == 0)
            assert_null(o.groups_to_display);
        smtpapi_free(&o);
    }

    /* 25 distinct groups, then each again: still 25 */
    len = (size_t)snprintf(value, sizeof(value), "{\"asm_groups_to_display\":[");
    for (int pass = 0; pass < 2; pass++)
        for (int id = 1; id <= SMTPAPI_MAX_GROUPS_TO_DISPLAY; id++)
            len += (size_t)snprintf(value + len, sizeof(value) - len, "%s%d",
                                    pass == 0 && id == 1 ? "" : ",", id);
    snprintf(value + len, sizeof(value) - len, "]}");
    parse_ok(value, &o, NULL);
    assert_int_equal(o.n_groups_to_display, SMTPAPI_MAX_GROUPS_TO_DISPLAY);
    assert_int_equal(o.groups_to_display[24], 25);
    smtpapi_free(&o);

    /* 26 distinct groups */
    len = (size_t)snprintf(value, sizeof(value), "{\"asm_groups_to_display\":[");
    for (int id = 1; id <= SMTPAPI_MAX_GROUPS_TO_DISPLAY + 1; id++)
        len += (size_t)snprintf(value + len, sizeof(value) - len, "%s%d",
                                id == 1 ? "" : ",", id);
    snprintf(value + len, sizeof(value) - len, "]}");
    parse_err(value, "X-SMTPAPI: asm_groups_to_display names more than 25 groups");
}

static void test_category(void **state)
{
    static const struct {
        const char *value;
        size_t n;
        const char *cats[3];
    } cases[] = {
        {"{\"category\":\"news\"}", 1, {"news"}},
        {"{\"category\":[\"news\"]}", 1, {"news"}},
        {"{\"category\":[\"a\",\"b\",\"c\"]}", 3, {"a", "b", "c"}},
        {"{\"category\":[\"a\",\"b\",\"a\",\"b\"]}", 2, {"a", "b"}},
        {"{\"category\":[\"A\",\"a\"]}", 2, {"A", "a"}}, /* case matters */
        {"{\"category\":[\"caf\\u00e9\"]}", 1, {"caf\xc3\xa9"}},
        {"{\"category\":[]}", 0, {NULL}},
    };
    struct smtpapi_opts o;
    char value[1024];
    char *s;

    (void)state;
    for (size_t i = 0; i < N(cases); i++) {
        parse_ok(cases[i].value, &o, NULL);
        assert_int_equal(o.n_categories, cases[i].n);
        for (size_t j = 0; j < cases[i].n; j++)
            assert_string_equal(o.categories[j], cases[i].cats[j]);
        smtpapi_free(&o);
    }

    /* ten distinct, with duplicates: fine; eleven distinct: refused */
    parse_ok("{\"category\":[\"0\",\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\","
             "\"0\",\"9\"]}",
             &o, NULL);
    assert_int_equal(o.n_categories, SMTPAPI_MAX_CATEGORIES);
    assert_string_equal(o.categories[9], "9");
    smtpapi_free(&o);
    parse_err(
        "{\"category\":[\"0\",\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\","
        "\"10\"]}",
        "X-SMTPAPI: category names more than 10 categories");

    /* the length is in bytes: 255 is fine, 256 is not, as a string or in an array */
    s = repeat("x", SMTPAPI_MAX_CATEGORY_LEN);
    snprintf(value, sizeof(value), "{\"category\":\"%s\"}", s);
    parse_ok(value, &o, NULL);
    assert_int_equal(strlen(o.categories[0]), 255);
    smtpapi_free(&o);
    free(s);
    s = repeat("x", SMTPAPI_MAX_CATEGORY_LEN + 1);
    snprintf(value, sizeof(value), "{\"category\":\"%s\"}", s);
    parse_err(value, "X-SMTPAPI: category must be 1 to 255 bytes long, not 256");
    snprintf(value, sizeof(value), "{\"category\":[\"ok\",\"%s\"]}", s);
    parse_err(value, "X-SMTPAPI: category[1] must be 1 to 255 bytes long, not 256");
    free(s);
    s = repeat("\\u00e9", 127); /* 254 bytes */
    snprintf(value, sizeof(value), "{\"category\":\"%s\"}", s);
    parse_ok(value, &o, NULL);
    assert_int_equal(strlen(o.categories[0]), 254);
    smtpapi_free(&o);
    free(s);
    s = repeat("\\u00e9", 128); /* 256 bytes, 128 characters */
    snprintf(value, sizeof(value), "{\"category\":\"%s\"}", s);
    parse_err(value, "category must be 1 to 255 bytes long, not 256");
    free(s);
}

static void test_unique_args(void **state)
{
    static const struct {
        const char *key, *value;
    } want[] = {
        {"s", "text"},    {"e", ""},         {"i", "42"},
        {"neg", "-7"},    {"r", "1.5"},      {"tenth", "0.1"},
        {"t", "true"},    {"f", "false"},    {"big", "9007199254740993"},
        {"whole", "2.0"}, {"exp", "1e+300"}, {"u", "caf\xc3\xa9"},
    };
    struct smtpapi_opts o;

    (void)state;
    parse_ok("{\"unique_args\":{\"s\":\"text\",\"e\":\"\",\"i\":42,\"neg\":-7,\"r\":1.5,"
             "\"tenth\":0.1,\"whole\":2.0,\"exp\":1e300,\"t\":true,\"f\":false,\"big\":"
             "9007199254740993,"
             "\"u\":\"caf\\u00e9\"}}",
             &o, NULL);
    assert_non_null(o.unique_args);
    assert_int_equal(json_object_size(o.unique_args), N(want));
    for (size_t i = 0; i < N(want); i++) {
        json_t *v = json_object_get(o.unique_args, want[i].key);

        if (!json_is_string(v))
            fail_msg("unique_args.%s is not a string", want[i].key);
        assert_string_equal(json_string_value(v), want[i].value);
    }
    smtpapi_free(&o);

    parse_ok("{\"unique_args\":{}}", &o, NULL);
    assert_null(o.unique_args);
    smtpapi_free(&o);
}

/* filter_json - a header setting one filter setting to a JSON value */
static void filter_json(char *out, size_t size, const struct setting *s, const char *v)
{
    snprintf(out, size, "{\"filters\":{\"%s\":{\"settings\":{\"%s\":%s}}}}", s->filter,
             s->name, v);
}

static void test_filter_settings(void **state)
{
    static const struct {
        const char *json;
        int flag;
    } good_flags[] = {
        {"1", 1}, {"0", 0}, {"true", 1}, {"false", 0}, {"\"1\"", 1}, {"\"0\"", 0},
    };
    static const char *const bad_flags[] = {
        "2",      "-1",     "1.0",  "\"yes\"", "\"true\"", "\"\"",
        "\" 1\"", "\"01\"", "null", "[]",      "{}",
    };
    static const struct {
        const char *json, *str;
    } good_strings[] = {
        {"\"abc\"", "abc"},
        {"\"\"", ""},
        {"\"<p>Unsubscribe: <% %></p>\\r\\n\"", "<p>Unsubscribe: <% %></p>\r\n"},
        {"\"caf\\u00e9\"", "caf\xc3\xa9"},
    };
    static const char *const bad_strings[] = {"1", "0", "true", "null", "[]", "{}"};
    struct smtpapi_opts o, want;
    char value[256], expect[160];

    (void)state;
    for (size_t i = 0; i < N(settings); i++) {
        const struct setting *s = &settings[i];

        if (s->is_flag) {
            for (size_t j = 0; j < N(good_flags); j++) {
                filter_json(value, sizeof(value), s, good_flags[j].json);
                parse_ok(value, &o, NULL);
                smtpapi_init(&want);
                *flag_at(&want.filters, s) = good_flags[j].flag;
                if (memcmp(&o, &want, sizeof(o)) != 0)
                    fail_msg("%s did not set exactly that flag to %d", value,
                             good_flags[j].flag);
                smtpapi_free(&o);
            }
            snprintf(expect, sizeof(expect),
                     "X-SMTPAPI: filters.%s.settings.%s must be 0 or 1", s->filter,
                     s->name);
            for (size_t j = 0; j < N(bad_flags); j++) {
                filter_json(value, sizeof(value), s, bad_flags[j]);
                parse_err(value, expect);
            }
        } else {
            for (size_t j = 0; j < N(good_strings); j++) {
                filter_json(value, sizeof(value), s, good_strings[j].json);
                parse_ok(value, &o, NULL);
                assert_non_null(*string_at(&o.filters, s));
                assert_string_equal(*string_at(&o.filters, s), good_strings[j].str);
                smtpapi_init(&want);
                *string_at(&want.filters, s) = *string_at(&o.filters, s);
                if (memcmp(&o, &want, sizeof(o)) != 0)
                    fail_msg("%s set more than that string", value);
                smtpapi_free(&o);
            }
            snprintf(expect, sizeof(expect),
                     "X-SMTPAPI: filters.%s.settings.%s must be a string", s->filter,
                     s->name);
            for (size_t j = 0; j < N(bad_strings); j++) {
                filter_json(value, sizeof(value), s, bad_strings[j]);
                parse_err(value, expect);
            }
        }
    }
}

static void test_sendgrid_example(void **state)
{
    /* as an application written for SendGrid sends it, legacy string flags included */
    static const char value[] =
        "{\"asm_group_id\": 12, \"asm_groups_to_display\": [12, 13],\r\n"
        " \"category\": [\"newsletter\", \"weekly\"],\r\n"
        " \"unique_args\": {\"customer\": \"1234\", \"batch\": 7},\r\n"
        " \"filters\": {\r\n"
        "  \"clicktrack\": {\"settings\": {\"enable\": 1, \"enable_text\": \"0\"}},\r\n"
        "  \"opentrack\": {\"settings\": {\"enable\": true, \"replace\": "
        "\"%open%\"}},\r\n"
        "  \"subscriptiontrack\": {\"settings\": {\"enable\": 1, \"text/html\": \"<a "
        "href=\\\"<% %>\\\">Unsubscribe</a>\", \"text/plain\": \"Unsubscribe: <% %>\", "
        "\"replace\": \"-unsub-\"}},\r\n"
        "  \"footer\": {\"settings\": {\"enable\": \"1\", \"text/html\": "
        "\"<p>Acme</p>\", "
        "\"text/plain\": \"Acme\"}},\r\n"
        "  \"ganalytics\": {\"settings\": {\"enable\": 1, \"utm_source\": \"mail\", "
        "\"utm_medium\": \"email\", \"utm_term\": \"t\", \"utm_content\": \"c\", "
        "\"utm_campaign\": \"spring\"}},\r\n"
        "  \"bypass_spam_management\": {\"settings\": {\"enable\": 1}},\r\n"
        "  \"bypass_bounce_management\": {\"settings\": {\"enable\": 0}}}}";
    struct smtpapi_opts o;
    struct buf notes;
    const struct smtpapi_filters *f = &o.filters;

    (void)state;
    buf_init(&notes, 16);
    parse_ok(value, &o, &notes);
    assert_int_equal(buf_len(&notes), 0);
    assert_int_equal(o.asm_group_id, 12);
    assert_int_equal(o.n_groups_to_display, 2);
    assert_int_equal(o.groups_to_display[1], 13);
    assert_int_equal(o.n_categories, 2);
    assert_string_equal(o.categories[1], "weekly");
    assert_string_equal(json_string_value(json_object_get(o.unique_args, "batch")), "7");
    assert_int_equal(f->clicktrack.enable, 1);
    assert_int_equal(f->clicktrack.enable_text, 0);
    assert_int_equal(f->opentrack.enable, 1);
    assert_string_equal(f->opentrack.replace, "%open%");
    assert_int_equal(f->subscriptiontrack.enable, 1);
    assert_string_equal(f->subscriptiontrack.text_html,
                        "<a href=\"<% %>\">Unsubscribe</a>");
    assert_string_equal(f->subscriptiontrack.text_plain, "Unsubscribe: <% %>");
    assert_string_equal(f->subscriptiontrack.replace, "-unsub-");
    assert_int_equal(f->footer.enable, 1);
    assert_string_equal(f->footer.text_html, "<p>Acme</p>");
    assert_string_equal(f->footer.text_plain, "Acme");
    assert_int_equal(f->ganalytics.enable, 1);
    assert_string_equal(f->ganalytics.utm_source, "mail");
    assert_string_equal(f->ganalytics.utm_medium, "email");
    assert_string_equal(f->ganalytics.utm_term, "t");
    assert_string_equal(f->ganalytics.utm_content, "c");
    assert_string_equal(f->ganalytics.utm_campaign, "spring");
    assert_int_equal(f->bypass_list_management, SMTPAPI_UNSET);
    assert_int_equal(f->bypass_spam_management, 1);
    assert_int_equal(f->bypass_bounce_management, 0);
    assert_int_equal(f->bypass_unsubscribe_management, SMTPAPI_UNSET);
    smtpapi_free(&o);
    buf_release(&notes);
}

static void test_wrong_types(void **state)
{
    static const struct {
        const char *value, *expect;
    } cases[] = {
        /* asm_group_id: a positive integer, and nothing that looks like one */
        {"{\"asm_group_id\":\"5\"}",
         "X-SMTPAPI: asm_group_id must be a positive integer, not \"5\""},
        {"{\"asm_group_id\":0}",
         "X-SMTPAPI: asm_group_id must be a positive integer, not 0"},
        {"{\"asm_group_id\":-3}",
         "X-SMTPAPI: asm_group_id must be a positive integer, not -3"},
        {"{\"asm_group_id\":1.5}", "asm_group_id must be a positive integer, not 1.5"},
        {"{\"asm_group_id\":2.0}", "asm_group_id must be a positive integer, not 2.0"},
        {"{\"asm_group_id\":true}", "asm_group_id must be a positive integer, not true"},
        {"{\"asm_group_id\":null}", "asm_group_id must be a positive integer, not null"},
        {"{\"asm_group_id\":[1]}",
         "asm_group_id must be a positive integer, not an array"},
        {"{\"asm_group_id\":{}}",
         "asm_group_id must be a positive integer, not an object"},
        {"{\"asm_group_id\":4294967295}",
         "X-SMTPAPI: asm_group_id must be at most 4294967294, not 4294967295"},
        {"{\"asm_group_id\":9223372036854775807}",
         "asm_group_id must be at most 4294967294"},
        /* asm_groups_to_display */
        {"{\"asm_groups_to_display\":5}",
         "X-SMTPAPI: asm_groups_to_display must be an array of positive integers, not 5"},
        {"{\"asm_groups_to_display\":\"1,2\"}",
         "asm_groups_to_display must be an array of positive integers, not \"1,2\""},
        {"{\"asm_groups_to_display\":null}",
         "asm_groups_to_display must be an array of positive integers, not null"},
        {"{\"asm_groups_to_display\":[1,\"2\"]}",
         "X-SMTPAPI: asm_groups_to_display[1] must be a positive integer, not \"2\""},
        {"{\"asm_groups_to_display\":[0]}",
         "asm_groups_to_display[0] must be a positive integer, not 0"},
        {"{\"asm_groups_to_display\":[1,-2]}",
         "asm_groups_to_display[1] must be a positive integer, not -2"},
        {"{\"asm_groups_to_display\":[[1]]}",
         "asm_groups_to_display[0] must be a positive integer, not an array"},
        {"{\"asm_groups_to_display\":[4294967295]}",
         "asm_groups_to_display[0] must be at most 4294967294"},
        /* category */
        {"{\"category\":5}",
         "X-SMTPAPI: category must be a string or an array of strings, not 5"},
        {"{\"category\":null}",
         "category must be a string or an array of strings, not null"},
        {"{\"category\":{}}",
         "category must be a string or an array of strings, not an object"},
        {"{\"category\":\"\"}", "X-SMTPAPI: category must be 1 to 255 bytes long, not 0"},
        {"{\"category\":[\"\"]}", "category[0] must be 1 to 255 bytes long, not 0"},
        {"{\"category\":[1]}", "X-SMTPAPI: category[0] must be a string, not 1"},
        {"{\"category\":[\"a\",null]}", "category[1] must be a string, not null"},
        {"{\"category\":[[\"a\"]]}", "category[0] must be a string, not an array"},
        /* unique_args */
        {"{\"unique_args\":\"x\"}",
         "X-SMTPAPI: unique_args must be an object, not \"x\""},
        {"{\"unique_args\":[]}", "unique_args must be an object, not an array"},
        {"{\"unique_args\":null}", "unique_args must be an object, not null"},
        {"{\"unique_args\":{\"a\":\"1\",\"k\":null}}",
         "X-SMTPAPI: unique_args.k must be a string or a number, not null"},
        {"{\"unique_args\":{\"k\":{}}}",
         "unique_args.k must be a string or a number, not an object"},
        {"{\"unique_args\":{\"k\":[\"v\"]}}",
         "unique_args.k must be a string or a number, not an array"},
        /* filters and their shape */
        {"{\"filters\":[]}", "X-SMTPAPI: filters must be an object, not an array"},
        {"{\"filters\":\"clicktrack\"}", "filters must be an object, not \"clicktrack\""},
        {"{\"filters\":{\"clicktrack\":1}}",
         "X-SMTPAPI: filters.clicktrack must be an object, not 1"},
        {"{\"filters\":{\"footer\":{\"settings\":[]}}}",
         "X-SMTPAPI: filters.footer.settings must be an object, not an array"},
        {"{\"filters\":{\"footer\":{\"settings\":\"enable\"}}}",
         "filters.footer.settings must be an object, not \"enable\""},
        {"{\"filters\":{\"clicktrack\":{\"settings\":{\"enable\":2}}}}",
         "X-SMTPAPI: filters.clicktrack.settings.enable must be 0 or 1, not 2"},
        {"{\"filters\":{\"clicktrack\":{\"settings\":{\"enable\":\"on\"}}}}",
         "filters.clicktrack.settings.enable must be 0 or 1, not \"on\""},
    };

    (void)state;
    for (size_t i = 0; i < N(cases); i++)
        parse_err(cases[i].value, cases[i].expect);
}

static void test_bypass_combinations(void **state)
{
    static const char *const names[] = {
        "bypass_list_management",
        "bypass_spam_management",
        "bypass_bounce_management",
        "bypass_unsubscribe_management",
    };
    static const struct {
        const char *flags[4]; /* list, spam, bounce, unsubscribe; NULL: absent */
        const char *conflict; /* the filter named in the refusal, or NULL */
    } cases[] = {
        {{"1", "1", NULL, NULL}, "bypass_spam_management"},
        {{"1", NULL, "1", NULL}, "bypass_bounce_management"},
        {{"1", NULL, NULL, "1"}, "bypass_unsubscribe_management"},
        {{"true", NULL, "\"1\"", NULL}, "bypass_bounce_management"},
        {{"1", "0", "0", "1"}, "bypass_unsubscribe_management"},
        {{"1", "1", "1", "1"}, "bypass_"},
        {{NULL, "1", "1", "1"}, NULL},
        {{"1", NULL, NULL, NULL}, NULL},
        {{"1", "0", "false", "\"0\""}, NULL},
        {{"0", "1", "1", "1"}, NULL},
        {{"false", "1", NULL, NULL}, NULL},
    };
    struct smtpapi_opts o;
    char value[512], expect[200];
    size_t len;

    (void)state;
    for (size_t i = 0; i < N(cases); i++) {
        const char *sep = "";

        len = (size_t)snprintf(value, sizeof(value), "{\"filters\":{");
        for (size_t j = 0; j < 4; j++) {
            if (cases[i].flags[j] == NULL)
                continue;
            len += (size_t)snprintf(value + len, sizeof(value) - len,
                                    "%s\"%s\":{\"settings\":{\"enable\":%s}}", sep,
                                    names[j], cases[i].flags[j]);
            sep = ",";
        }
        snprintf(value + len, sizeof(value) - len, "}}");
        if (cases[i].conflict == NULL) {
            parse_ok(value, &o, NULL);
            smtpapi_free(&o);
            continue;
        }
        snprintf(
            expect, sizeof(expect),
            "X-SMTPAPI: filters.bypass_list_management cannot be combined with any other "
            "bypass filter, but filters.%s",
            cases[i].conflict);
        parse_err(value, expect);
    }

    /* the conflict is found after everything else was allocated */
    parse_err("{\"filters\":{\"bypass_list_management\":{\"settings\":{\"enable\":1}},"
              "\"footer\":{\"settings\":{\"text/html\":\"<p>x</p>\"}},"
              "\"bypass_spam_management\":{\"settings\":{\"enable\":1}}},"
              "\"category\":[\"a\",\"b\"],\"unique_args\":{\"k\":\"v\"},"
              "\"asm_groups_to_display\":[1,2]}",
              "cannot be combined");
}

static void test_unknown_keys(void **state)
{
    static const char value[] =
        "{\"to\":[\"a@example.com\"],\"sub\":{\"-name-\":[\"Ann\"]},\"section\":{\"s\":"
        "\"x\"},"
        "\"send_at\":1409348513,\"send_each_at\":[1409348513],\"ip_pool\":\"pool\","
        "\"Category\":\"case matters\",\"asm_group_id\":3,"
        "\"filters\":{\"templates\":{\"settings\":{\"enable\":1}},\"dkim\":5,"
        "\"clicktrack\":{\"settings\":{\"enable\":1,\"bogus\":[1]},\"extra\":{}},"
        "\"bypass_list_management\":{\"settings\":{\"enable\":0,\"text/html\":\"x\"}}}}";
    static const char want[] =
        "earlier\n"
        "ignored unknown key 'to'\n"
        "ignored unknown key 'sub'\n"
        "ignored unknown key 'section'\n"
        "ignored unknown key 'send_at'\n"
        "ignored unknown key 'send_each_at'\n"
        "ignored unknown key 'ip_pool'\n"
        "ignored unknown key 'Category'\n"
        "ignored unknown filter 'filters.templates'\n"
        "ignored unknown filter 'filters.dkim'\n"
        "ignored unknown setting 'filters.clicktrack.settings.bogus'\n"
        "ignored unknown key 'filters.clicktrack.extra'\n"
        "ignored unknown setting "
        "'filters.bypass_list_management.settings.text/html'\n";
    struct smtpapi_opts o;
    struct buf notes;

    (void)state;
    buf_init(&notes, 16);
    buf_set(&notes, "earlier\n");
    parse_ok(value, &o, &notes);
    assert_string_equal(buf_str(&notes), want);
    assert_int_equal(o.asm_group_id, 3);
    assert_int_equal(o.n_categories, 0);
    assert_int_equal(o.filters.clicktrack.enable, 1);
    assert_int_equal(o.filters.bypass_list_management, 0);
    smtpapi_free(&o);

    /* notes are optional */
    parse_ok(value, &o, NULL);
    assert_int_equal(o.asm_group_id, 3);
    smtpapi_free(&o);

    /* a filter without settings sets nothing and is no error */
    parse_ok("{\"filters\":{\"clicktrack\":{}}}", &o, NULL);
    assert_int_equal(o.filters.clicktrack.enable, SMTPAPI_UNSET);
    smtpapi_free(&o);

    /* keys from the header are shown safely: printable ASCII, cut short */
    buf_reset(&notes);
    parse_ok(
        "{\"b\\u00e9\\n\\u0007\":1,"
        "\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\":1}",
        &o, &notes);
    assert_string_equal(
        buf_str(&notes),
        "ignored unknown key 'b\?\?\?'\n"
        "ignored unknown key "
        "'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...'\n");
    smtpapi_free(&o);
    buf_release(&notes);
}

static void test_folding(void **state)
{
    static const struct {
        const char *name, *value;
        long group;
        const char *category;
    } cases[] = {
        {"CRLF and space", "{\"asm_group_id\":\r\n 5,\r\n \"category\":\"a\"}", 5, "a"},
        {"LF and tab", "{\"asm_group_id\":\n\t6,\n\t\"category\":\"b\"}", 6, "b"},
        {"CRLF and tab", "{\"asm_group_id\":\r\n\t7,\"category\":\"c\"}", 7, "c"},
        {"several lines folded in a row",
         "{\r\n \r\n\t\n  \"asm_group_id\":8,\"category\":\"d\"}", 8, "d"},
        {"leading white space and a final CRLF",
         " {\"asm_group_id\":9,\"category\":\"e\"}\r\n", 9, "e"},
        {"a fold inside a string keeps its white space",
         "{\"asm_group_id\":10,\"category\":\"big\r\n news\"}", 10, "big news"},
        {"a fold inside an array",
         "{\"category\":[\"x\",\r\n   \"f\"],\r\n \"asm_group_id\":11}", 11, "x"},
    };
    struct smtpapi_opts o;

    (void)state;
    for (size_t i = 0; i < N(cases); i++) {
        struct buf why;

        buf_init(&why, 64);
        if (smtpapi_parse(cases[i].value, strlen(cases[i].value), 0, &o, NULL, &why) != 0)
            fail_msg("%s: %s", cases[i].name, buf_str(&why));
        buf_release(&why);
        assert_int_equal(o.asm_group_id, cases[i].group);
        assert_string_equal(o.categories[0], cases[i].category);
        smtpapi_free(&o);
    }
}

/* padded - {"asm_group_id":1} padded to len bytes: n_folds folds, then spaces */
static char *padded(size_t len, const char *fold, size_t n_folds)
{
    static const char head[] = "{\"asm_group_id\":1";
    size_t flen = strlen(fold);
    char *s = malloc(len + 1);
    size_t n = strlen(head);

    memcpy(s, head, n);
    for (size_t i = 0; i < n_folds; i++, n += flen)
        memcpy(s + n, fold, flen);
    while (n + 1 < len)
        s[n++] = ' ';
    s[n++] = '}';
    s[n] = 0;
    assert_int_equal(n, len);
    return s;
}

static void test_size_limit(void **state)
{
    static const char *const folds[] = {"\r\n ", "\r\n\t", "\n ", "\n\t"};
    struct smtpapi_opts o;
    struct buf why;
    char *s;

    (void)state;
    buf_init(&why, 64);

    /* exactly at the limit, and one over */
    s = padded(100, "", 0);
    assert_int_equal(smtpapi_parse(s, 100, 100, &o, NULL, &why), 0);
    assert_int_equal(o.asm_group_id, 1);
    smtpapi_free(&o);
    parse_err_len(s, 100, 99, "X-SMTPAPI header is 100 bytes, over the limit of 99");
    free(s);

    /* the limit applies to the unfolded value: each fold's line break is not counted */
    for (size_t i = 0; i < N(folds); i++) {
        size_t raw = 100 + 20 * (strlen(folds[i]) - 1);

        s = padded(raw, folds[i], 20);
        if (smtpapi_parse(s, raw, 100, &o, NULL, &why) != 0)
            fail_msg("fold %zu: %s", i, buf_str(&why));
        smtpapi_free(&o);
        parse_err_len(s, raw, 99, "X-SMTPAPI header is 100 bytes, over the limit of 99");
        free(s);
    }

    /* 0 means the default */
    s = padded(SMTPAPI_DEFAULT_MAX_SIZE, "", 0);
    assert_int_equal(smtpapi_parse(s, SMTPAPI_DEFAULT_MAX_SIZE, 0, &o, NULL, &why), 0);
    smtpapi_free(&o);
    free(s);
    s = padded(SMTPAPI_DEFAULT_MAX_SIZE + 1, "", 0);
    parse_err_len(s, SMTPAPI_DEFAULT_MAX_SIZE + 1, 0,
                  "X-SMTPAPI header is 16385 bytes, over the limit of 16384");
    free(s);

    /* the value need not be NUL-terminated: len bytes are parsed, no more */
    assert_int_equal(smtpapi_parse("{\"asm_group_id\":7}garbage", 18, 0, &o, NULL, &why),
                     0);
    assert_int_equal(o.asm_group_id, 7);
    smtpapi_free(&o);
    buf_release(&why);
}

static void test_invalid_json(void **state)
{
    static const struct {
        const char *value;
        size_t len; /* 0: strlen */
        const char *expect;
    } cases[] = {
        {"{\"a\":}", 0,
         "X-SMTPAPI: invalid JSON at line 1 column 6: unexpected token near '}'"},
        {"{", 0, "X-SMTPAPI: invalid JSON at line 1 column 1: "},
        {"", 0, "X-SMTPAPI: invalid JSON at line 1 column 0: "},
        {"   ", 0, "X-SMTPAPI: invalid JSON at line 1 "},
        {"{} {}", 0, "X-SMTPAPI: invalid JSON at line 1 column 4: end of file expected"},
        {"{\"a\":1,}", 0, "X-SMTPAPI: invalid JSON at line 1 column 8: "},
        {"{'a':1}", 0, "X-SMTPAPI: invalid JSON at line 1 column 2: "},
        {"{\"a\":\xff}", 0, "X-SMTPAPI: invalid JSON at line 1 column 5: "},
        {"{\"a\":\"\xc3\"}", 0, "X-SMTPAPI: invalid JSON at line 1 "},
        {"{\"a\":\"x\ny\"}", 0, "X-SMTPAPI: invalid JSON at line "},
        {"{\"a\\u0000\":1}", 0, "X-SMTPAPI: invalid JSON at line 1 "},
        {"{\"a\":\"\\u0000\"}", 0, "X-SMTPAPI: invalid JSON at line 1 "},
        {"{\"a\"\0:1}", 8, "X-SMTPAPI: invalid JSON at line 1 "},
        {"{\"asm_group_id\":99999999999999999999}", 0,
         "X-SMTPAPI: invalid JSON at line 1 column 36: too big integer"},
        {"{\n\"a\":\n}", 0, "X-SMTPAPI: invalid JSON at line 3 column 1: "},
        /* unfolding keeps the tab, and a raw tab is not allowed in a JSON string */
        {"{\"category\":\"big\r\n\tnews\"}", 0, "X-SMTPAPI: invalid JSON at line 1 "},
    };

    (void)state;
    for (size_t i = 0; i < N(cases); i++)
        parse_err_len(cases[i].value,
                      cases[i].len ? cases[i].len : strlen(cases[i].value), 0,
                      cases[i].expect);
}

static void test_not_an_object(void **state)
{
    static const struct {
        const char *value, *expect;
    } cases[] = {
        {"[]", "X-SMTPAPI: the value must be a JSON object, not an array"},
        {"[{\"asm_group_id\":1}]", "the value must be a JSON object, not an array"},
        {"\"x\"", "the value must be a JSON object, not \"x\""},
        {"42", "the value must be a JSON object, not 42"},
        {"null", "the value must be a JSON object, not null"},
        {"true", "the value must be a JSON object, not true"},
    };

    (void)state;
    for (size_t i = 0; i < N(cases); i++)
        parse_err(cases[i].value, cases[i].expect);
}

static void test_reasons_are_safe(void **state)
{
    struct smtpapi_opts o;
    struct buf why;
    char *key, *value;

    (void)state;
    /* a key with non-ASCII and control characters */
    parse_err("{\"unique_args\":{\"k\\u00e9\\r\\n\":null}}",
              "X-SMTPAPI: unique_args.k??? must be a string or a number, not null");
    parse_err("{\"asm_group_id\":\"caf\\u00e9\\t\"}",
              "asm_group_id must be a positive integer, not \"caf??\"");
    /* jansson quoting raw bytes of the input */
    parse_err("{\"a\":\"\xe2\x82\"}", "X-SMTPAPI: invalid JSON");

    /* a long key is cut short; a long string is not quoted */
    key = repeat("k", 5000);
    value = malloc(6000);
    snprintf(value, 6000, "{\"unique_args\":{\"%s\":[]}}", key);
    parse_err(value,
              "unique_args.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
              "kkkkkkkk... must be a string or a number, not an array");
    snprintf(value, 6000, "{\"asm_group_id\":\"%s\"}", key);
    parse_err(value, "asm_group_id must be a positive integer, not a string");
    free(key);
    free(value);

    /* why is optional */
    assert_int_equal(smtpapi_parse("[", 1, 0, &o, NULL, NULL), -1);
    assert_int_equal(smtpapi_parse("{\"asm_group_id\":0}", 18, 0, &o, NULL, NULL), -1);
    assert_null(o.categories);

    /* a success leaves why alone */
    buf_init(&why, 16);
    buf_set(&why, "untouched");
    assert_int_equal(smtpapi_parse("{}", 2, 0, &o, NULL, &why), 0);
    assert_string_equal(buf_str(&why), "untouched");
    smtpapi_free(&o);
    buf_release(&why);
}

static void test_error_after_allocations(void **state)
{
    (void)state;
    /* each refusal comes after categories, groups, unique_args and strings were taken */
    parse_err(
        "{\"category\":[\"a\",\"b\"],\"asm_groups_to_display\":[1,2],"
        "\"unique_args\":{\"k\":\"v\",\"n\":1},"
        "\"filters\":{\"footer\":{\"settings\":{\"enable\":1,\"text/html\":\"<p>x</p>\","
        "\"text/plain\":\"x\"}},\"ganalytics\":{\"settings\":{\"utm_source\":\"s\"}},"
        "\"clicktrack\":{\"settings\":{\"enable\":7}}}}",
        "filters.clicktrack.settings.enable must be 0 or 1, not 7");
    parse_err("{\"category\":[\"a\",\"b\"],\"asm_groups_to_display\":[1,2,0]}",
              "asm_groups_to_display[2] must be a positive integer");
    parse_err("{\"category\":[\"a\",\"b\",5]}", "category[2] must be a string");
    parse_err("{\"unique_args\":{\"a\":\"1\",\"b\":2,\"c\":null}}", "unique_args.c");
    parse_err("{\"filters\":{\"opentrack\":{\"settings\":{\"replace\":\"x\"}}},"
              "\"category\":\"c\",\"asm_group_id\":\"1\"}",
              "asm_group_id must be a positive integer");
}

static void test_merge(void **state)
{
    struct smtpapi_opts base, over, empty;
    const struct smtpapi_filters *f = &base.filters;

    (void)state;
    parse_ok(
        "{\"asm_group_id\":1,\"category\":[\"default\"],\"unique_args\":{\"a\":\"1\"},"
        "\"asm_groups_to_display\":[1,2,3],"
        "\"filters\":{\"clicktrack\":{\"settings\":{\"enable\":1}},"
        "\"footer\":{\"settings\":{\"enable\":1,\"text/plain\":\"base footer\","
        "\"text/html\":\"<p>base</p>\"}},"
        "\"bypass_bounce_management\":{\"settings\":{\"enable\":1}}}}",
        &base, NULL);
    parse_ok("{\"category\":[\"x\",\"y\"],\"asm_groups_to_display\":[4,5],"
             "\"unique_args\":{\"b\":\"2\"},"
             "\"filters\":{\"clicktrack\":{\"settings\":{\"enable\":0}},"
             "\"footer\":{\"settings\":{\"text/plain\":\"over footer\"}},"
             "\"opentrack\":{\"settings\":{\"enable\":1,\"replace\":\"%o%\"}}}}",
             &over, NULL);
    smtpapi_merge(&base, &over);
    smtpapi_free(&over); /* base owns copies */

    assert_int_equal(base.asm_group_id, 1);
    assert_int_equal(base.n_categories, 2);
    assert_string_equal(base.categories[0], "x");
    assert_string_equal(base.categories[1], "y");
    assert_int_equal(base.n_groups_to_display, 2);
    assert_int_equal(base.groups_to_display[0], 4);
    assert_int_equal(base.groups_to_display[1], 5);
    /* unique_args are replaced as a whole, not key by key */
    assert_int_equal(json_object_size(base.unique_args), 1);
    assert_string_equal(json_string_value(json_object_get(base.unique_args, "b")), "2");
    assert_int_equal(f->clicktrack.enable, 0); /* 0 is set, and wins */
    assert_int_equal(f->clicktrack.enable_text, SMTPAPI_UNSET);
    assert_int_equal(f->footer.enable, 1);
    assert_string_equal(f->footer.text_plain, "over footer");
    assert_string_equal(f->footer.text_html, "<p>base</p>");
    assert_int_equal(f->opentrack.enable, 1);
    assert_string_equal(f->opentrack.replace, "%o%");
    assert_int_equal(f->bypass_bounce_management, 1);
    assert_int_equal(f->bypass_list_management, SMTPAPI_UNSET);

    /* nothing set: nothing changes; merging with itself: nothing changes */
    smtpapi_init(&empty);
    smtpapi_merge(&base, &empty);
    smtpapi_merge(&base, &base);
    assert_int_equal(base.asm_group_id, 1);
    assert_int_equal(base.n_categories, 2);
    assert_string_equal(base.categories[1], "y");
    assert_int_equal(base.n_groups_to_display, 2);
    assert_string_equal(f->footer.text_plain, "over footer");
    assert_int_equal(f->clicktrack.enable, 0);

    /* asm_group_id and every flag and string of an over that sets them */
    parse_ok(
        "{\"asm_group_id\":9,\"filters\":{\"clicktrack\":{\"settings\":{\"enable\":1,"
        "\"enable_text\":0}},\"bypass_bounce_management\":{\"settings\":{\"enable\":0}}}"
        "}",
        &over, NULL);
    smtpapi_merge(&base, &over);
    smtpapi_free(&over);
    assert_int_equal(base.asm_group_id, 9);
    assert_int_equal(f->clicktrack.enable, 1);
    assert_int_equal(f->clicktrack.enable_text, 0);
    assert_int_equal(f->bypass_bounce_management, 0);
    smtpapi_free(&base);

    /* into an empty base: a deep copy of everything */
    smtpapi_init(&base);
    parse_ok("{\"asm_group_id\":3,\"category\":\"c\",\"asm_groups_to_display\":[3],"
             "\"unique_args\":{\"k\":\"v\"},"
             "\"filters\":{\"ganalytics\":{\"settings\":{\"enable\":\"1\","
             "\"utm_campaign\":\"spring\"}}}}",
             &over, NULL);
    smtpapi_merge(&base, &over);
    assert_true(base.categories != over.categories);
    assert_true(base.categories[0] != over.categories[0]);
    assert_true(base.unique_args != over.unique_args);
    assert_true(f->ganalytics.utm_campaign != over.filters.ganalytics.utm_campaign);
    smtpapi_free(&over);
    assert_int_equal(base.asm_group_id, 3);
    assert_string_equal(base.categories[0], "c");
    assert_int_equal(base.groups_to_display[0], 3);
    assert_string_equal(json_string_value(json_object_get(base.unique_args, "k")), "v");
    assert_int_equal(f->ganalytics.enable, 1);
    assert_string_equal(f->ganalytics.utm_campaign, "spring");
    smtpapi_free(&base);
    smtpapi_free(&base); /* free re-initialises, so twice is harmless */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_empty_object),
        cmocka_unit_test(test_asm_group_id),
        cmocka_unit_test(test_groups_to_display),
        cmocka_unit_test(test_category),
        cmocka_unit_test(test_unique_args),
        cmocka_unit_test(test_filter_settings),
        cmocka_unit_test(test_sendgrid_example),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_bypass_combinations),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_folding),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_reasons_are_safe),
        cmocka_unit_test(test_error_after_allocations),
        cmocka_unit_test(test_merge),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
