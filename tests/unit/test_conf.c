/*
 * test_conf - the configuration file: defaults without a file, a full file,
 * one case per error (each must name file, line and setting), the duration
 * and size forms, tenant mapping precedence, secret file modes, a getter
 * asked for an undeclared path panics, and the shipped etc/sendguard.conf
 * loads as is and shows the true defaults.
 *
 * SG_TOP_SRCDIR (set by "make check") locates etc/sendguard.conf; "." else.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sg-test-conf-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* put - write text to dir/name; returns the path (static storage) */
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

/* load - conf_load of text, which must succeed */
static struct conf *load(const char *text)
{
    const char *path = put("ok.conf", text);
    struct buf why;
    struct conf *conf;

    buf_init(&why, 64);
    conf = conf_load(path, &why);
    if (conf == NULL)
        fail_msg("conf_load: %s", buf_str(&why));
    buf_release(&why);
    assert_string_equal(conf_file(conf), path);
    return conf;
}

/* The values of every setting, for comparing a conf with expectations. */
struct values {
    const char *store_path;
    long long write_batch;
    long long max_size;
    long long verbose;
};

static const struct values defaults = {"/var/lib/sendguard", 5000, 16384, 0};

static void assert_values(const struct conf *conf, const struct values *v)
{
    assert_string_equal(conf_string(conf, "store.path"), v->store_path);
    assert_int_equal(conf_int(conf, "store.write_batch"), v->write_batch);
    assert_int_equal(conf_size(conf, "smtpapi.max_size"), v->max_size);
    assert_int_equal(conf_int(conf, "log.verbose"), v->verbose);
}

static void test_defaults(void **state)
{
    struct conf *conf = conf_defaults();
    struct buf why;

    (void)state;
    assert_null(conf_file(conf));
    assert_values(conf, &defaults);
    assert_null(conf_setting(conf, "tenants"));
    assert_null(conf_setting(conf, "store"));
    assert_string_equal(conf_tenant_for(conf, "acme-app", "acme.example", NULL),
                        "default");
    conf_free(conf);

    /* an empty file is the defaults too */
    conf = load("# nothing\n");
    assert_values(conf, &defaults);
    conf_free(conf);

    /* no path: the default file if there is one, else the defaults */
    buf_init(&why, 64);
    conf = conf_load(NULL, &why);
    if (access(CONF_DEFAULT_PATH, F_OK) < 0) {
        assert_non_null(conf);
        assert_null(conf_file(conf));
        assert_values(conf, &defaults);
    } else if (conf != NULL) {
        assert_string_equal(conf_file(conf), CONF_DEFAULT_PATH);
    } else {
        assert_memory_equal(buf_str(&why), CONF_DEFAULT_PATH, strlen(CONF_DEFAULT_PATH));
    }
    conf_free(conf);
    buf_release(&why);
}

struct valid_case {
    const char *name;
    const char *text;
    struct values want;
};

static const struct valid_case valid_cases[] = {
    {"every setting",
     "store = { path = \"/srv/sg\"; write_batch = 100000; };\n"
     "smtpapi = { max_size = \"10M\"; };\n"
     "log = { verbose = 2; };\n"
     "tenants = (\n"
     "  { name = \"acme\"; logins = [\"acme-app\"];\n"
     "    domains = [\"acme.example\", \"news.acme.example\"]; },\n"
     "  { name = \"b_2.x\"; logins = (); },\n"
     "  { name = \"solo\"; }\n"
     ");\n",
     {"/srv/sg", 100000, 10 * 1024 * 1024, 2}},
    {"colons, comments, plain numbers and 64-bit integers",
     "// a comment\n"
     "store: { write_batch: 1; };   /* another */\n"
     "smtpapi: { max_size: 2048L; };\n"
     "log: { verbose: -1; };\n"
     "tenants = [];\n",
     {"/var/lib/sendguard", 1, 2048, -1}},
    {"groups may be empty",
     "store = {};\nsmtpapi = {};\nlog = {};\ntenants = ();\n",
     {"/var/lib/sendguard", 5000, 16384, 0}},
    {"a number-like string and a name with digits are not integers",
     "store = { path = \"/x/99999999999\"; };\n"
     "smtpapi = { max_size = \"1g\"; };\n"
     "tenants = ( { name = \"t9999999999999\"; } );\n",
     {"/x/99999999999", 5000, 1024 * 1024 * 1024, 0}},
};

static void test_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
        const struct valid_case *c = &valid_cases[i];
        struct conf *conf;

        print_message("valid: %s\n", c->name);
        conf = load(c->text);
        assert_values(conf, &c->want);
        conf_free(conf);
    }
}

static void test_tenants_setting(void **state)
{
    struct conf *conf = load(valid_cases[0].text);
    const config_setting_t *t = conf_setting(conf, "tenants");
    const char *name;

    (void)state;
    assert_non_null(t);
    assert_int_equal(config_setting_length(t), 3);
    assert_true(
        config_setting_lookup_string(config_setting_get_elem(t, 1), "name", &name));
    assert_string_equal(name, "b_2.x");
    assert_non_null(conf_setting(conf, "store"));
    assert_non_null(conf_setting(conf, "smtpapi"));
    conf_free(conf);
}

struct error_case {
    const char *name;
    const char *text;
    int line; /* 0: no line in the reason */
    const char *reason;
};

static const struct error_case error_cases[] = {
    /* libconfig's own errors */
    {"syntax error", "store = {\n  path = \"/x\";\n  write_batch = ;\n};\n", 3,
     "syntax error"},
    {"duplicate setting", "log = { verbose = 1;\n verbose = 2; };\n", 2,
     "syntax error: duplicate setting name"},
    {"unterminated string", "store = { path = \"/x; };\n", 2, "syntax error"},

    /* what libconfig 1.5 would accept silently */
    {"integer beyond 32 bits", "store = {\n  write_batch = 4294967297;\n};\n", 2,
     "integer '4294967297' does not fit in 32 bits (append L for a 64-bit integer)"},
    {"negative integer beyond 32 bits", "log = { verbose = -2147483649; };\n", 1,
     "integer '-2147483649' does not fit in 32 bits (append L for a 64-bit integer)"},
    {"hex integer beyond 31 bits", "log = { verbose = 0x80000000; };\n", 1,
     "integer '0x80000000' does not fit in 32 bits (append L for a 64-bit integer)"},
    {"integer beyond 64 bits", "smtpapi = { max_size = 99999999999999999999L; };\n", 1,
     "integer '99999999999999999999' does not fit in 64 bits"},
    {"@include", "log = { verbose = 1; };\n@include \"/dev/null\"\n", 2,
     "@include is not supported: sendguard reads one file"},

    /* unknown settings */
    {"unknown top-level setting", "\nstorage = { path = \"/x\"; };\n", 2,
     "unknown setting 'storage'"},
    {"unknown nested setting", "store = {\n  path = \"/x\";\n  pth = \"/y\";\n};\n", 3,
     "unknown setting 'store.pth'"},
    {"unknown setting inside a tenant",
     "tenants = (\n  { name = \"acme\";\n    domain = [\"acme.example\"]; }\n);\n", 3,
     "unknown setting 'tenants.domain'"},

    /* wrong types */
    {"group given a value", "store = \"/var/lib/sendguard\";\n", 1,
     "setting 'store' must be a group"},
    {"string given an integer", "store = { path = 5; };\n", 1,
     "setting 'store.path' must be a string"},
    {"integer given a string", "store = { write_batch = \"5000\"; };\n", 1,
     "setting 'store.write_batch' must be an integer"},
    {"integer given a float", "log = { verbose = 1.0; };\n", 1,
     "setting 'log.verbose' must be an integer"},
    {"size given a boolean", "smtpapi = { max_size = true; };\n", 1,
     "setting 'smtpapi.max_size' must be a size (bytes, or a string such as \"16k\")"},
    {"list of groups given a group", "tenants = { name = \"acme\"; };\n", 1,
     "setting 'tenants' must be a list of groups"},
    {"list of groups given strings", "tenants = (\n \"acme\"\n);\n", 1,
     "setting 'tenants' must be a list of groups"},
    {"list of strings given a string",
     "tenants = ( { name = \"acme\";\n logins = \"acme-app\"; } );\n", 2,
     "setting 'tenants.logins' must be a list of strings"},
    {"list of strings holding a number",
     "tenants = ( { name = \"acme\";\n domains = (\"acme.example\",\n 5); } );\n", 2,
     "setting 'tenants.domains' must be a list of strings"},

    /* bad values */
    {"bad size", "smtpapi = {\n  max_size = \"16x\";\n};\n", 2,
     "setting 'smtpapi.max_size': bad size '16x' (use k, M, G)"},
    {"size overflow", "smtpapi = { max_size = \"9999999999999G\"; };\n", 1,
     "setting 'smtpapi.max_size': size '9999999999999G' is too large"},
    {"negative size", "smtpapi = { max_size = -1; };\n", 1,
     "setting 'smtpapi.max_size': -1 is negative"},
    {"integer below its range", "store = { write_batch = 0; };\n", 1,
     "setting 'store.write_batch': 0 is out of range (1..100000)"},
    {"integer above its range", "store = { write_batch = 100001; };\n", 1,
     "setting 'store.write_batch': 100001 is out of range (1..100000)"},
    {"64-bit integer above its range", "store = { write_batch = 4294967297L; };\n", 1,
     "setting 'store.write_batch': 4294967297 is out of range (1..100000)"},

    /* tenants */
    {"tenant without a name",
     "tenants = (\n  { name = \"acme\"; },\n  { logins = [\"x\"]; }\n);\n", 3,
     "setting 'tenants.name' is required"},
    {"tenant name of the wrong type", "tenants = ( { name = 7; } );\n", 1,
     "setting 'tenants.name' must be a string"},
    {"tenant name starting with '-'", "tenants = ( { name = \"-acme\"; } );\n", 1,
     "setting 'tenants.name': tenant name '-acme' starts with '-'"},
    {"tenant name with a space", "tenants = ( { name = \"ac me\"; } );\n", 1,
     "setting 'tenants.name': tenant name has ' ' (use A-Z, a-z, 0-9, '.', '_', '-')"},
    {"empty tenant name", "tenants = ( { name = \"\"; } );\n", 1,
     "setting 'tenants.name': tenant name is empty"},
    {"duplicate tenant",
     "tenants = (\n  { name = \"acme\"; },\n  { name = \"beta\"; },\n  { name = "
     "\"acme\"; }\n);\n",
     4, "tenant 'acme' is declared twice (first at line 2)"},
    {"reserved tenant name", "tenants = (\n  { name = \"default\"; }\n);\n", 2,
     "tenant 'default' is reserved: mail that matches no tenant belongs to it"},
};

static void test_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
        const struct error_case *c = &error_cases[i];
        const char *path = put("bad.conf", c->text);
        char want[512];
        struct buf why;

        print_message("error: %s\n", c->name);
        if (c->line)
            snprintf(want, sizeof(want), "%s:%d: %s", path, c->line, c->reason);
        else
            snprintf(want, sizeof(want), "%s: %s", path, c->reason);
        buf_init(&why, 64);
        assert_null(conf_load(path, &why));
        assert_string_equal(buf_str(&why), want);
        /* why is optional */
        assert_null(conf_load(path, NULL));
        buf_release(&why);
    }
}

static void test_unreadable(void **state)
{
    char path[256];
    char want[512];
    struct buf why;

    (void)state;
    buf_init(&why, 64);
    snprintf(path, sizeof(path), "%s/missing.conf", dir);
    assert_null(conf_load(path, &why));
    snprintf(want, sizeof(want), "%s: %s", path, strerror(ENOENT));
    assert_string_equal(buf_str(&why), want);

    assert_null(conf_load(dir, &why));
    snprintf(want, sizeof(want), "%s: %s", dir, strerror(EISDIR));
    assert_string_equal(buf_str(&why), want);
    buf_release(&why);
}

struct number_case {
    const char *text;
    int is_size;
    long long want; /* -1: an error */
    const char *reason;
};

static const struct number_case number_cases[] = {
    {"0", 0, 0, NULL},
    {"90", 0, 90, NULL},
    {"30s", 0, 30, NULL},
    {"5m", 0, 300, NULL},
    {"2h", 0, 7200, NULL},
    {"5d", 0, 432000, NULL},
    {"1w", 0, 604800, NULL},
    {"5x", 0, -1, "bad duration '5x' (use s, m, h, d, w)"},
    {"", 0, -1, "bad duration '' (use s, m, h, d, w)"},
    {"m", 0, -1, "bad duration 'm' (use s, m, h, d, w)"},
    {"5M", 0, -1, "bad duration '5M' (use s, m, h, d, w)"},
    {"-5m", 0, -1, "bad duration '-5m' (use s, m, h, d, w)"},
    {" 5m", 0, -1, "bad duration ' 5m' (use s, m, h, d, w)"},
    {"5 m", 0, -1, "bad duration '5 m' (use s, m, h, d, w)"},
    {"5mm", 0, -1, "bad duration '5mm' (use s, m, h, d, w)"},
    {"1h30m", 0, -1, "bad duration '1h30m' (use s, m, h, d, w)"},
    {"9223372036854775807", 0, 9223372036854775807LL, NULL},
    {"9223372036854775808", 0, -1, "duration '9223372036854775808' is too large"},
    {"15250284452471w", 0, 15250284452471LL * 604800, NULL},
    {"15250284452472w", 0, -1, "duration '15250284452472w' is too large"},
    {"1000", 1, 1000, NULL},
    {"16k", 1, 16384, NULL},
    {"16K", 1, 16384, NULL},
    {"10M", 1, 10485760, NULL},
    {"10m", 1, 10485760, NULL},
    {"1G", 1, 1073741824, NULL},
    {"8589934591G", 1, 8589934591LL * 1073741824, NULL},
    {"8589934592G", 1, -1, "size '8589934592G' is too large"},
    {"16kb", 1, -1, "bad size '16kb' (use k, M, G)"},
    {"1T", 1, -1, "bad size '1T' (use k, M, G)"},
    {"k", 1, -1, "bad size 'k' (use k, M, G)"},
    {"0x10", 1, -1, "bad size '0x10' (use k, M, G)"},
};

static void test_numbers(void **state)
{
    struct buf why;

    (void)state;
    buf_init(&why, 64);
    for (size_t i = 0; i < sizeof(number_cases) / sizeof(number_cases[0]); i++) {
        const struct number_case *c = &number_cases[i];
        long long v = -2;
        int rc;

        print_message("%s '%s'\n", c->is_size ? "size" : "duration", c->text);
        buf_reset(&why);
        rc = c->is_size ? conf_parse_size(c->text, &v, &why)
                        : conf_parse_duration(c->text, &v, &why);
        if (c->reason) {
            assert_int_equal(rc, -1);
            assert_string_equal(buf_str(&why), c->reason);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(v, c->want);
        }
    }
    buf_release(&why);

    /* sizes as the file writes them reach the getter */
    {
        struct conf *conf = load("smtpapi = { max_size = \"64K\"; };\n");

        assert_int_equal(conf_size(conf, "smtpapi.max_size"), 65536);
        conf_free(conf);
        conf = load("smtpapi = { max_size = 100; };\n");
        assert_int_equal(conf_size(conf, "smtpapi.max_size"), 100);
        conf_free(conf);
    }
}

struct tenant_case {
    const char *login, *sender, *from;
    const char *want;
};

static const struct tenant_case tenant_cases[] = {
    {NULL, NULL, NULL, "default"},
    {"", "", "", "default"},
    {"acme-app", NULL, NULL, "acme"},
    /* the login decides before either domain */
    {"beta-app", "acme.example", "acme.example", "beta"},
    /* a login on two tenants: the first declared wins */
    {"shared", NULL, NULL, "acme"},
    /* logins are compared exactly */
    {"ACME-APP", NULL, NULL, "default"},
    /* the sender's domain, case-insensitively */
    {NULL, "NEWS.Acme.Example", NULL, "acme"},
    /* a domain on two tenants: the first declared wins */
    {NULL, "acme.example", NULL, "acme"},
    {NULL, "beta.example", NULL, "beta"},
    /* an unknown login falls through to the domains */
    {"nobody", "beta.example", "acme.example", "beta"},
    /* the sender's domain decides before the From domain */
    {NULL, "beta.example", "news.acme.example", "beta"},
    /* the From domain last */
    {"nobody", "other.example", "beta.example", "beta"},
    {NULL, NULL, "Acme.Example", "acme"},
    /* no subdomain matching */
    {NULL, "sub.acme.example", "sub.beta.example", "default"},
    /* a login is not a domain, nor the other way round */
    {"acme.example", NULL, NULL, "default"},
    {NULL, "acme-app", NULL, "default"},
};

static void test_tenant_for(void **state)
{
    struct conf *conf =
        load("tenants = (\n"
             "  { name = \"acme\"; logins = [\"acme-app\", \"shared\"];\n"
             "    domains = [\"acme.example\", \"news.acme.example\"]; },\n"
             "  { name = \"beta\"; logins = (\"beta-app\");\n"
             "    domains = [\"Beta.Example\", \"acme.example\"]; },\n"
             "  { name = \"gamma\"; logins = [\"shared\"]; },\n"
             "  { name = \"delta\"; }\n"
             ");\n");

    (void)state;
    for (size_t i = 0; i < sizeof(tenant_cases) / sizeof(tenant_cases[0]); i++) {
        const struct tenant_case *c = &tenant_cases[i];

        print_message("tenant_for(%s, %s, %s)\n", c->login ? c->login : "NULL",
                      c->sender ? c->sender : "NULL", c->from ? c->from : "NULL");
        assert_string_equal(conf_tenant_for(conf, c->login, c->sender, c->from), c->want);
    }
    conf_free(conf);
}

/* tracking and pages: a tenant's own, else the top level's, else the default */
static void test_tenant_scoped(void **state)
{
    struct conf *conf =
        load("tracking = { clicktrack = { enable = true; }; footer = { text_plain = "
             "\"T\"; }; };\n"
             "pages = { name = \"Top\"; };\n"
             "tenants = (\n"
             "  { name = \"acme\"; tracking = { clicktrack = { enable = false; };\n"
             "      opentrack = { enable = true; }; }; pages = { footer = \"Acme Inc.\"; "
             "}; },\n"
             "  { name = \"beta\"; }\n"
             ");\n");
    struct conf *none = conf_defaults();
    struct buf why;

    (void)state;
    assert_false(conf_tenant_bool(conf, "acme", "tracking.clicktrack.enable"));
    assert_true(conf_tenant_bool(conf, "acme", "tracking.opentrack.enable"));
    assert_true(conf_tenant_bool(conf, "beta", "tracking.clicktrack.enable"));
    assert_false(conf_tenant_bool(conf, "beta", "tracking.opentrack.enable"));
    assert_true(conf_tenant_bool(conf, "default", "tracking.clicktrack.enable"));
    assert_true(conf_tenant_bool(conf, NULL, "tracking.clicktrack.enable"));
    assert_true(conf_tenant_bool(conf, "nobody", "tracking.clicktrack.enable"));
    assert_string_equal(conf_tenant_string(conf, "acme", "tracking.footer.text_plain"),
                        "T");
    assert_string_equal(conf_tenant_string(conf, "acme", "pages.name"), "Top");
    assert_string_equal(conf_tenant_string(conf, "acme", "pages.footer"), "Acme Inc.");
    assert_string_equal(conf_tenant_string(conf, "beta", "pages.footer"), "");
    assert_string_equal(conf_tenant_string(none, "acme", "pages.unsubscribe"),
                        "Stop sending {group} mail from {name} to {email}?");
    assert_false(conf_tenant_bool(none, "acme", "tracking.ganalytics.enable"));
    conf_free(conf);
    conf_free(none);

    /* inside a tenant, checked like the top level */
    buf_init(&why, 64);
    assert_null(conf_load(put("bad.conf",
                              "tenants = ( { name = \"acme\";\n"
                              "  tracking = { clicktrack = { enable = 1; }; }; } );\n"),
                          &why));
    assert_non_null(strstr(buf_str(&why), "bad.conf:2: setting "
                                          "'tenants.tracking.clicktrack.enable' must be "
                                          "true or false"));
    buf_release(&why);
}

/* the numbers a tenant may have of its own: bounces.* */
static void test_tenant_numbers(void **state)
{
    struct conf *conf = load("bounces = { soft_limit = 5; soft_window = \"2d\"; };\n"
                             "tenants = (\n"
                             "  { name = \"acme\"; bounces = { soft_limit = 0;\n"
                             "      soft_window = \"12h\"; suppress_block = true; }; },\n"
                             "  { name = \"beta\"; }\n"
                             ");\n");
    struct conf *none = conf_defaults();
    struct buf why;

    (void)state;
    assert_int_equal(conf_tenant_int(conf, "acme", "bounces.soft_limit"), 0);
    assert_int_equal(conf_tenant_int(conf, "beta", "bounces.soft_limit"), 5);
    assert_int_equal(conf_tenant_int(conf, NULL, "bounces.soft_limit"), 5);
    assert_int_equal(conf_tenant_duration(conf, "acme", "bounces.soft_window"), 43200);
    assert_int_equal(conf_tenant_duration(conf, "beta", "bounces.soft_window"), 172800);
    assert_true(conf_tenant_bool(conf, "acme", "bounces.suppress_block"));
    assert_false(conf_tenant_bool(conf, "beta", "bounces.suppress_block"));
    assert_int_equal(conf_tenant_int(none, "acme", "bounces.soft_limit"), 3);
    assert_int_equal(conf_tenant_duration(none, "acme", "bounces.soft_window"), 604800);
    assert_true(conf_tenant_bool(none, "acme", "bounces.suppress_hard"));
    conf_free(conf);
    conf_free(none);

    buf_init(&why, 64);
    assert_null(conf_load(put("bad.conf", "tenants = ( { name = \"acme\";\n"
                                          "  bounces = { soft_limit = 99; }; } );\n"),
                          &why));
    assert_non_null(strstr(buf_str(&why), "bad.conf:2:"));
    assert_non_null(strstr(buf_str(&why), "tenants.bounces.soft_limit"));
    assert_null(
        conf_load(put("bad.conf", "tenants = ( { name = \"acme\";\n"
                                  "  bounces = { soft_window = \"3x\"; }; } );\n"),
                  &why));
    assert_non_null(strstr(buf_str(&why), "bad.conf:2:"));
    buf_release(&why);
}

struct name_case {
    const char *name;
    const char *reason; /* NULL: valid */
};

static const struct name_case name_cases[] = {
    {"acme", NULL},
    {"default", NULL}, /* valid as a name; only declaring it is refused */
    {"A.b_c-9", NULL},
    {"a.", NULL},
    {"_x", NULL},
    {"0123456789012345678901234567890123456789012345678901234567890123", NULL},
    {"01234567890123456789012345678901234567890123456789012345678901234",
     "tenant name is longer than 64 characters"},
    {"", "tenant name is empty"},
    {NULL, "tenant name is empty"},
    {".acme", "tenant name '.acme' starts with '.'"},
    {"-acme", "tenant name '-acme' starts with '-'"},
    {"ac/me", "tenant name has '/' (use A-Z, a-z, 0-9, '.', '_', '-')"},
    {"ac\nme", "tenant name has byte 0x0a (use A-Z, a-z, 0-9, '.', '_', '-')"},
    {"caf\xc3\xa9", "tenant name has byte 0xc3 (use A-Z, a-z, 0-9, '.', '_', '-')"},
};

static void test_tenant_valid(void **state)
{
    struct buf why;

    (void)state;
    buf_init(&why, 64);
    for (size_t i = 0; i < sizeof(name_cases) / sizeof(name_cases[0]); i++) {
        const struct name_case *c = &name_cases[i];

        buf_reset(&why);
        if (c->reason == NULL) {
            assert_true(conf_tenant_valid(c->name, &why));
        } else {
            assert_false(conf_tenant_valid(c->name, &why));
            assert_string_equal(buf_str(&why), c->reason);
            assert_false(conf_tenant_valid(c->name, NULL));
        }
    }
    buf_release(&why);
}

struct secret_case {
    const char *name;
    int kind; /* 'f' file, 'd' directory, 'l' symbolic link, 0 nothing */
    mode_t mode;
    const char *reason; /* after "PATH"; NULL: accepted */
};

static const struct secret_case secret_cases[] = {
    {"key0600", 'f', 0600, NULL},
    {"key0400", 'f', 0400, NULL},
    {"key0640", 'f', 0640, NULL}, /* group-readable is allowed */
    {"key0660", 'f', 0660, NULL},
    {"key0644", 'f', 0644, " is readable by other users (mode 0644); chmod 600 it"},
    {"key0606", 'f', 0606,
     " is readable and writable by other users (mode 0606); chmod 600 it"},
    {"key0602", 'f', 0602, " is writable by other users (mode 0602); chmod 600 it"},
    {"key0601", 'f', 0601, " is accessible by other users (mode 0601); chmod 600 it"},
    {"key2604", 'f', 02604, " is readable by other users (mode 2604); chmod 600 it"},
    {"keydir", 'd', 0700, " is not a regular file"},
    {"keylink", 'l', 0, " is a symbolic link; a secret must be a regular file"},
    {"keymissing", 0, 0, ": No such file or directory"},
};

static void test_check_secret(void **state)
{
    struct buf why;

    (void)state;
    buf_init(&why, 64);
    for (size_t i = 0; i < sizeof(secret_cases) / sizeof(secret_cases[0]); i++) {
        const struct secret_case *c = &secret_cases[i];
        char path[256];
        char want[512];

        print_message("secret: %s\n", c->name);
        snprintf(path, sizeof(path), "%s/%s", dir, c->name);
        if (c->kind == 'f') {
            put(c->name, "0123456789abcdef\n");
            assert_int_equal(chmod(path, c->mode), 0);
        } else if (c->kind == 'd') {
            assert_int_equal(mkdir(path, c->mode), 0);
        } else if (c->kind == 'l') {
            assert_int_equal(chmod(put("keytarget", "0123456789abcdef\n"), 0600), 0);
            assert_int_equal(symlink("keytarget", path), 0);
        }
        buf_reset(&why);
        if (c->reason == NULL) {
            assert_int_equal(conf_check_secret(path, &why), 0);
        } else {
            assert_int_equal(conf_check_secret(path, &why), -1);
            snprintf(want, sizeof(want), "%s%s", path, c->reason);
            assert_string_equal(buf_str(&why), want);
            assert_int_equal(conf_check_secret(path, NULL), -1);
        }
    }
    buf_release(&why);
}

/* dies_by_abort - run fn in a child; did it abort (msg_panic)? */
static int dies_by_abort(void (*fn)(const struct conf *), const struct conf *conf)
{
    pid_t pid = fork();
    int status;

    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);

        if (fd >= 0)
            dup2(fd, STDERR_FILENO);
        fn(conf);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static void get_undeclared(const struct conf *conf)
{
    (void)conf_string(conf, "store.pth");
}

static void get_wrong_type(const struct conf *conf)
{
    (void)conf_int(conf, "store.path");
}

static void get_size_as_duration(const struct conf *conf)
{
    (void)conf_duration(conf, "smtpapi.max_size");
}

static void get_int_as_bool(const struct conf *conf)
{
    (void)conf_bool(conf, "log.verbose");
}

static void get_scalar_as_setting(const struct conf *conf)
{
    (void)conf_setting(conf, "store.path");
}

static void get_nested_tenant_key(const struct conf *conf)
{
    (void)conf_string(conf, "tenants.name");
}

static void get_unscoped_per_tenant(const struct conf *conf)
{
    (void)conf_tenant_string(conf, "acme", "store.path");
}

static void test_panics(void **state)
{
    struct conf *conf = conf_defaults();

    (void)state;
    assert_true(dies_by_abort(get_undeclared, conf));
    assert_true(dies_by_abort(get_wrong_type, conf));
    assert_true(dies_by_abort(get_size_as_duration, conf));
    assert_true(dies_by_abort(get_int_as_bool, conf));
    assert_true(dies_by_abort(get_scalar_as_setting, conf));
    assert_true(dies_by_abort(get_nested_tenant_key, conf));
    assert_true(dies_by_abort(get_unscoped_per_tenant, conf));
    conf_free(conf);
}

static void test_shipped_example(void **state)
{
    const char *top = getenv("SG_TOP_SRCDIR");
    char path[1024];
    struct conf *conf;
    struct buf why;

    (void)state;
    snprintf(path, sizeof(path), "%s/etc/sendguard.conf", top && *top ? top : ".");
    buf_init(&why, 64);
    conf = conf_load(path, &why);
    if (conf == NULL)
        fail_msg("conf_load: %s", buf_str(&why));
    /* the example shows the defaults, so it means the same as no file */
    assert_values(conf, &defaults);
    assert_string_equal(conf_tenant_for(conf, "acme-app", "acme.example", NULL),
                        "default");
    conf_free(conf);
    buf_release(&why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_tenants_setting), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_unreadable),      cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_tenant_for),      cmocka_unit_test(test_tenant_valid),
        cmocka_unit_test(test_check_secret),    cmocka_unit_test(test_panics),
        cmocka_unit_test(test_shipped_example), cmocka_unit_test(test_tenant_scoped),
        cmocka_unit_test(test_tenant_numbers),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
