/*
 * test_pipeline - options from X-SMTPAPI, decisions through a real store, and
 * each recipient's copy: X-SMTPAPI gone, unsubscribe headers whose token names
 * the recipient, an application's own List-Unsubscribe kept, a signature
 * prepended last, and a message that needs nothing left byte for byte.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"
#include "mime.h"
#include "dkim.h"
#include "pipeline.h"
#include "store.h"
#include "token.h"

static const char key_text[] =
    "7:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";

struct fx {
    char dir[64];
    struct conf *conf;
    struct store *st;
    struct pipeline *p;
    uint32_t group;
};

/* write_file - a file of this text and mode */
static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

/* open_fx - a store, a configuration (extra appended) and a pipeline */
static void open_fx(struct fx *fx, const char *extra, int with_key)
{
    char path[128], text[1024];
    struct buf why;
    uint32_t old;

    buf_init(&why, 64);
    strcpy(fx->dir, "/tmp/test_pipeline.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(path, sizeof(path), "%s/token.key", fx->dir);
    if (with_key)
        write_file(path, key_text, 0600);
    snprintf(text, sizeof(text),
             "store = { path = \"%s/store\"; };\n"
             "secrets = { token_key_file = \"%s/token.key\"; };\n"
             "tracker = { url = \"https://t.example.net/sg/\"; };\n%s",
             fx->dir, fx->dir, extra);
    snprintf(path, sizeof(path), "%s/sendguard.conf", fx->dir);
    write_file(path, text, 0644);
    fx->conf = conf_load(path, &why);
    if (fx->conf == NULL)
        fail_msg("conf_load: %s", buf_str(&why));
    snprintf(path, sizeof(path), "%s/store", fx->dir);
    fx->st = store_open(path, STORE_WRITE | STORE_CREATE, &why);
    if (fx->st == NULL)
        fail_msg("store_open: %s", buf_str(&why));
    assert_int_equal(
        store_group_create(fx->st, "default", "News", "", 0, &fx->group, &old, &why), 0);
    fx->p = pipeline_new(fx->conf, fx->st, "relay.test", &why);
    if (fx->p == NULL)
        fail_msg("pipeline_new: %s", buf_str(&why));
    buf_release(&why);
}

static void close_fx(struct fx *fx)
{
    char cmd[128];

    pipeline_free(fx->p);
    store_close(fx->st);
    conf_free(fx->conf);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
    assert_int_equal(system(cmd), 0);
}

static const char plain[] = "From: Shop <news@shop.example>\r\n"
                            "To: a@example.org\r\n"
                            "Subject: hello\r\n"
                            "\r\n"
                            "body\r\n";

/* options: none, one, two, and a bad one */
static void test_options(void **state)
{
    struct fx fx;
    struct smtpapi_opts o;
    struct buf why;
    const char two[] = "X-SMTPAPI: {\"asm_group_id\": 3}\r\nX-SMTPAPI: {}\r\n\r\nb\r\n";
    const char bad[] = "Subject: x\r\nX-SMTPAPI: {\"asm_group_id\": \r\n\r\nb\r\n";
    const char good[] = "Subject: x\r\nX-SMTPAPI: {\"asm_group_id\": 3,\r\n"
                        " \"category\": [\"a\", \"b\"]}\r\n\r\nb\r\n";

    (void)state;
    open_fx(&fx, "", 1);
    buf_init(&why, 64);
    smtpapi_init(&o);
    assert_int_equal(pipeline_options(fx.conf, plain, strlen(plain), &o, &why), 0);
    assert_int_equal(o.asm_group_id, 0);
    assert_int_equal(pipeline_options(fx.conf, good, strlen(good), &o, &why), 0);
    assert_int_equal(o.asm_group_id, 3);
    assert_int_equal(o.n_categories, 2);
    smtpapi_free(&o);
    smtpapi_init(&o);
    assert_int_equal(pipeline_options(fx.conf, two, strlen(two), &o, &why), -1);
    assert_non_null(strstr(buf_str(&why), "2 X-SMTPAPI fields"));
    buf_reset(&why);
    assert_int_equal(pipeline_options(fx.conf, bad, strlen(bad), &o, &why), -1);
    assert_true(why.len > 0);
    assert_int_equal(o.asm_group_id, 0);
    smtpapi_free(&o);
    buf_release(&why);
    close_fx(&fx);
}

/* decide: through the store, in the message's group */
static void test_decide(void **state)
{
    struct fx fx;
    struct smtpapi_opts o;
    struct pipeline_decision d;
    struct buf why;
    enum store_add_result res;

    (void)state;
    open_fx(&fx, "", 1);
    buf_init(&why, 64);
    assert_int_equal(store_add(fx.st, "default", STORE_BOUNCES, 0, "gone@example.org",
                               NULL, &res, &why),
                     0);
    assert_int_equal(store_add(fx.st, "default", STORE_GROUP, fx.group,
                               "left@example.org", NULL, &res, &why),
                     0);
    smtpapi_init(&o);
    o.asm_group_id = fx.group;
    assert_int_equal(pipeline_decide(fx.p, "default", &o, "Gone@Example.ORG", &d, &why),
                     0);
    assert_int_equal(d.action, POLICY_DROP);
    assert_int_equal(d.reason, POLICY_BOUNCE);
    assert_int_equal(pipeline_decide(fx.p, "default", &o, "left@example.org", &d, &why),
                     0);
    assert_int_equal(d.action, POLICY_DROP);
    assert_int_equal(d.reason, POLICY_GROUP_UNSUBSCRIBE);
    assert_int_equal(d.group, fx.group);
    assert_int_equal(pipeline_decide(fx.p, "default", &o, "ok@example.org", &d, &why), 0);
    assert_int_equal(d.action, POLICY_DELIVER);
    assert_int_equal(d.group, fx.group);
    /* without the group, the group suppression does not apply */
    assert_int_equal(pipeline_decide(fx.p, "default", NULL, "left@example.org", &d, &why),
                     0);
    assert_int_equal(d.action, POLICY_DELIVER);
    assert_int_equal(d.group, 0);
    /* another tenant's lists are not ours */
    assert_int_equal(pipeline_decide(fx.p, "other", NULL, "gone@example.org", &d, &why),
                     0);
    assert_int_equal(d.action, POLICY_DELIVER);
    /* not an address: an error, never a decision */
    assert_int_equal(pipeline_decide(fx.p, "default", NULL, "no address", &d, &why), -1);
    assert_true(why.len > 0);
    buf_release(&why);
    close_fx(&fx);
}

/* the token in "<https://t.example.net/sg/u/TOKEN>" decoded */
static void token_of(const char *copy, struct token *t)
{
    const char *u = strstr(copy, "https://t.example.net/sg/u/"), *end;
    struct token_keys *keys;
    struct buf why;

    assert_non_null(u);
    u += strlen("https://t.example.net/sg/u/");
    end = strchr(u, '>');
    assert_non_null(end);
    buf_init(&why, 64);
    keys = token_keys_from_text(key_text, strlen(key_text), &why);
    assert_non_null(keys);
    if (token_decode(keys, u, (size_t)(end - u), t, &why) < 0)
        fail_msg("token_decode: %s", buf_str(&why));
    /* the mailto URI carries the same token */
    assert_non_null(strstr(copy, "<mailto:unsubscribe+"));
    token_keys_free(keys);
    buf_release(&why);
}

/* personalise: nothing to do leaves the bytes; a group adds the headers */
static void test_personalise(void **state)
{
    struct fx fx;
    struct smtpapi_opts o;
    struct pipeline_copy c = {"default", "Q1", "A@Example.org", 0, NULL};
    struct buf out, why;
    struct token t;
    int nsig = -1;
    const char api[] = "From: news@shop.example\r\n"
                       "X-SMTPAPI: {\"category\": \"x\"}\r\n"
                       "Subject: s\r\n\r\nbody\r\n";
    const char api_out[] = "From: news@shop.example\r\nSubject: s\r\n\r\nbody\r\n";

    (void)state;
    open_fx(&fx, "", 1);
    buf_init(&out, 256);
    buf_init(&why, 64);
    assert_int_equal(
        pipeline_personalise(fx.p, &c, plain, strlen(plain), &out, &nsig, &why), 0);
    assert_int_equal(out.len, strlen(plain));
    assert_memory_equal(out.data, plain, out.len);
    assert_int_equal(nsig, 0);
    /* X-SMTPAPI removed, nothing else changed */
    assert_int_equal(pipeline_personalise(fx.p, &c, api, strlen(api), &out, NULL, &why),
                     0);
    assert_string_equal(buf_str(&out), api_out);

    /* a group: both fields, after the others, a token naming the recipient */
    c.group = fx.group;
    assert_int_equal(
        pipeline_personalise(fx.p, &c, plain, strlen(plain), &out, NULL, &why), 0);
    assert_non_null(
        strstr(buf_str(&out), "Subject: hello\r\nList-Unsubscribe: <https://"));
    assert_non_null(strstr(buf_str(&out), ">\r\nList-Unsubscribe-Post: "
                                          "List-Unsubscribe=One-Click\r\n\r\nbody\r\n"));
    assert_non_null(strstr(buf_str(&out), "@relay.test>\r\n"));
    token_of(buf_str(&out), &t);
    assert_int_equal(t.purpose, TOKEN_UNSUBSCRIBE);
    assert_string_equal(t.recipient, "A@example.org"); /* local part kept */
    assert_string_equal(t.tenant, "default");
    assert_string_equal(t.message, "Q1");
    assert_int_equal(t.group, fx.group);
    token_release(&t);
    assert_null(strstr(buf_str(&out), "A@example.org")); /* not in clear */

    /* subscription tracking without a group does it too */
    c.group = 0;
    smtpapi_init(&o);
    o.filters.subscriptiontrack.enable = 1;
    c.opts = &o;
    assert_int_equal(
        pipeline_personalise(fx.p, &c, plain, strlen(plain), &out, NULL, &why), 0);
    assert_non_null(strstr(buf_str(&out), "List-Unsubscribe-Post:"));
    smtpapi_free(&o);
    buf_release(&out);
    buf_release(&why);
    close_fx(&fx);
}

/* an application's own List-Unsubscribe: kept, or replaced when configured */
static void test_existing(void **state)
{
    struct fx fx;
    struct pipeline_copy c = {"default", "Q2", "b@example.org", 0, NULL};
    struct buf out, why;
    const char own[] = "From: a@shop.example\r\n"
                       "List-Unsubscribe: <https://shop.example/unsub?u=1>\r\n"
                       "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
                       "\r\nbody\r\n";

    (void)state;
    buf_init(&out, 256);
    buf_init(&why, 64);
    open_fx(&fx, "", 1);
    c.group = fx.group;
    assert_int_equal(pipeline_personalise(fx.p, &c, own, strlen(own), &out, NULL, &why),
                     0);
    assert_string_equal(buf_str(&out), own);
    close_fx(&fx);

    open_fx(
        &fx,
        "unsubscribe = { keep_existing = false; mailto = \"leave@lists.example\"; };\n",
        1);
    c.group = fx.group;
    assert_int_equal(pipeline_personalise(fx.p, &c, own, strlen(own), &out, NULL, &why),
                     0);
    assert_null(strstr(buf_str(&out), "shop.example/unsub"));
    assert_non_null(strstr(buf_str(&out), "<mailto:leave+"));
    assert_non_null(strstr(buf_str(&out), "@lists.example>"));
    /* exactly one of each */
    assert_null(strstr(strstr(buf_str(&out), "List-Unsubscribe-Post:") + 1,
                       "List-Unsubscribe-Post:"));
    close_fx(&fx);
    buf_release(&out);
    buf_release(&why);
}

/* no token key: a copy that needs a token cannot be made, others can */
static void test_no_key(void **state)
{
    struct fx fx;
    struct pipeline_copy c = {"default", "Q3", "c@example.org", 0, NULL};
    struct buf out, why;

    (void)state;
    buf_init(&out, 256);
    buf_init(&why, 64);
    open_fx(&fx, "", 0);
    assert_int_equal(
        pipeline_personalise(fx.p, &c, plain, strlen(plain), &out, NULL, &why), 0);
    c.group = fx.group;
    assert_int_equal(
        pipeline_personalise(fx.p, &c, plain, strlen(plain), &out, NULL, &why), -1);
    assert_non_null(strstr(buf_str(&why), "no unsubscribe token key"));
    assert_non_null(strstr(buf_str(&why), "token.key"));
    close_fx(&fx);
    buf_release(&out);
    buf_release(&why);
}

/* the marker of a copy: for its recipient, fresh, unaltered, under a key */
static void test_mark(void **state)
{
    struct fx fx;
    struct buf out, why;
    const int64_t now = 1795000000;
    const char *v;
    char text[160];

    (void)state;
    buf_init(&out, 128);
    buf_init(&why, 64);
    open_fx(&fx, "", 1);
    assert_int_equal(pipeline_mark(fx.p, "A@Example.ORG", now, &out, &why), 0);
    assert_int_equal(strncmp(buf_str(&out), PIPELINE_MARK_FIELD ": t=1795000000; m=",
                             strlen(PIPELINE_MARK_FIELD ": t=1795000000; m=")),
                     0);
    assert_string_equal(buf_str(&out) + out.len - 2, "\r\n");
    v = buf_str(&out) + strlen(PIPELINE_MARK_FIELD ": ");
    snprintf(text, sizeof(text), "%.*s", (int)(out.len - 2 - (size_t)(v - out.data)), v);
    /* the same recipient in any case, within the hour */
    assert_int_equal(pipeline_mark_check(fx.p, "a@example.org", text, strlen(text), now),
                     1);
    assert_int_equal(pipeline_mark_check(fx.p, "<A@example.org>", text, strlen(text),
                                         now + PIPELINE_MARK_MAX_AGE),
                     1);
    /* too old, from the future, another recipient */
    assert_int_equal(pipeline_mark_check(fx.p, "a@example.org", text, strlen(text),
                                         now + PIPELINE_MARK_MAX_AGE + 1),
                     0);
    assert_int_equal(
        pipeline_mark_check(fx.p, "a@example.org", text, strlen(text), now - 301), 0);
    assert_int_equal(pipeline_mark_check(fx.p, "b@example.org", text, strlen(text), now),
                     0);
    /* a time moved, a MAC changed, garbage */
    text[strlen("t=179500000")] = '1';
    assert_int_equal(
        pipeline_mark_check(fx.p, "a@example.org", text, strlen(text), now + 1), 0);
    text[strlen("t=179500000")] = '0';
    text[strlen(text) - 1] ^= 1;
    assert_int_equal(pipeline_mark_check(fx.p, "a@example.org", text, strlen(text), now),
                     0);
    assert_int_equal(pipeline_mark_check(fx.p, "a@example.org", "x", 1, now), 0);
    assert_int_equal(pipeline_mark_check(fx.p, "a@example.org", "t=; m=", 6, now), 0);
    close_fx(&fx);
    /* without a token key: no marker, and none verifies */
    open_fx(&fx, "", 0);
    buf_reset(&out);
    assert_int_equal(pipeline_mark(fx.p, "a@example.org", now, &out, &why), -1);
    assert_non_null(strstr(buf_str(&why), "no token key"));
    assert_int_equal(
        pipeline_mark_check(fx.p, "a@example.org", "t=1795000000; m=1.x", 19, now), 0);
    close_fx(&fx);
    buf_release(&out);
    buf_release(&why);
}

/* add_key - an Ed25519 key for shop.example (selector s1) in the store */
static void add_key(struct fx *fx)
{
    char path[128];
    struct store_dkim sd = {"shop.example", "s1", "ed25519-sha256", 0, path, 0};
    struct dkim_key *k;
    struct buf why;
    int replaced;

    buf_init(&why, 64);
    k = dkim_key_generate(DKIM_ED25519_SHA256, 0, "shop.example", "s1", &why);
    assert_non_null(k);
    snprintf(path, sizeof(path), "%s/s1.pem", fx->dir);
    assert_int_equal(dkim_key_write(k, path, &why), 0);
    dkim_key_free(k);
    assert_int_equal(store_dkim_put(fx->st, &sd, &replaced, &why), 0);
    buf_release(&why);
}

/* a key for the From domain: a signature first, covering our fields */
static void test_sign(void **state)
{
    struct fx fx;
    struct pipeline_copy c = {"default", "Q4", "d@example.org", 0, NULL};
    struct buf out, why;
    int nsig = 0;

    (void)state;
    buf_init(&out, 256);
    buf_init(&why, 64);
    open_fx(&fx, "", 1);
    c.group = fx.group;
    add_key(&fx);
    assert_int_equal(
        pipeline_personalise(fx.p, &c, plain, strlen(plain), &out, &nsig, &why), 0);
    assert_int_equal(nsig, 1);
    assert_int_equal(strncmp(buf_str(&out), "DKIM-Signature: v=1;", 20), 0);
    assert_non_null(strstr(buf_str(&out), "d=shop.example"));
    /* h= names both fields (before the body: the signature itself is folded) */
    {
        /* h= names both fields; unfold the signature to look */
        char sig[1024];
        size_t n = 0;
        for (const char *q = buf_str(&out); *q && strncmp(q, "\r\nFrom:", 7) != 0; q++)
            if (*q != '\r' && *q != '\n' && *q != '\t' && n < sizeof(sig) - 1)
                sig[n++] = *q;
        sig[n] = 0;
        assert_non_null(strcasestr(sig, ":List-Unsubscribe:List-Unsubscribe-Post;"));
    }
    /* mail from a domain without keys leaves unsigned */
    {
        const char other[] = "From: x@elsewhere.example\r\n\r\nb\r\n";
        assert_int_equal(
            pipeline_personalise(fx.p, &c, other, strlen(other), &out, &nsig, &why), 0);
        assert_int_equal(nsig, 0);
        assert_int_equal(strncmp(buf_str(&out), "From:", 5), 0);
    }
    close_fx(&fx);
    buf_release(&out);
    buf_release(&why);
}

/* after_sigs - the text after the leading DKIM-Signature fields */
static const char *after_sigs(const char *m)
{
    while (strncmp(m, "DKIM-Signature:", 15) == 0) {
        do
            m = strstr(m, "\r\n") + 2;
        while (*m == ' ' || *m == '\t');
    }
    return m;
}

/* pipeline_changes: applied as a milter would, they make the same copy */
static void test_changes(void **state)
{
    struct fx fx;
    struct pipeline_copy c = {"default", "Q5", "e@example.org", 0, NULL};
    struct pipeline_change ch;
    struct buf out, mine, why;
    int nsig = 0;
    const char api[] = "From: Shop <news@shop.example>\r\n"
                       "X-SMTPAPI: {}\r\n"
                       "Subject: s\r\n\r\nbody\r\n";
    const char kept[] = "From: Shop <news@shop.example>\r\nSubject: s\r\n";

    (void)state;
    buf_init(&out, 256);
    buf_init(&mine, 256);
    buf_init(&why, 64);
    buf_init(&ch.added, 256);
    buf_init(&ch.sigs, 256);
    buf_init(&ch.body, 0);
    open_fx(&fx, "", 1);
    c.group = fx.group;
    add_key(&fx);
    assert_int_equal(pipeline_per_recipient(fx.p, &c, api, strlen(api)), 1);
    assert_int_equal(pipeline_may_change(fx.p, "default", "news@shop.example"), 1);
    assert_int_equal(pipeline_may_change(fx.p, "other", "a@other.example"), 0);
    /* a default group makes every message of its tenant one that may change,
     * from the next message on: the cache follows the store's generation */
    assert_int_equal(pipeline_may_change(fx.p, "default", "a@other.example"), 0);
    assert_int_equal(
        store_group_update(fx.st, "default", fx.group, NULL, NULL, 1, NULL, &why), 0);
    assert_int_equal(pipeline_may_change(fx.p, "default", "a@other.example"), 1);
    assert_int_equal(pipeline_may_change(fx.p, "other", "a@other.example"), 0);
    assert_int_equal(
        store_group_update(fx.st, "default", fx.group, NULL, NULL, 0, NULL, &why), 0);
    assert_int_equal(pipeline_may_change(fx.p, "default", "a@other.example"), 0);
    assert_int_equal(pipeline_personalise(fx.p, &c, api, strlen(api), &out, &nsig, &why),
                     0);
    assert_int_equal(pipeline_changes(fx.p, &c, api, strlen(api), &ch, &why), 0);
    assert_int_equal(ch.signed_by, nsig);
    assert_int_equal(ch.drop_own, 0);
    assert_int_equal(strncmp(buf_str(&ch.sigs), "DKIM-Signature:", 15), 0);
    assert_int_equal(strncmp(buf_str(&ch.added), "List-Unsubscribe: <https://", 27), 0);
    /* the header without X-SMTPAPI, ours added, the body: the copy, tokens aside */
    buf_puts(&mine, kept);
    buf_append(&mine, ch.added.data, ch.added.len);
    buf_puts(&mine, "\r\nbody\r\n");
    {
        const char *a = after_sigs(buf_str(&out)), *b = buf_str(&mine);
        /* the tokens differ (random nonces): compare up to the first one */
        size_t n = (size_t)(strstr(a, "/u/") - a);
        assert_int_equal(strncmp(a, b, n + 3), 0);
        assert_non_null(strstr(a, "\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click"
                                  "\r\n\r\nbody\r\n"));
        assert_int_equal(strlen(a), strlen(b));
    }
    close_fx(&fx);
    buf_release(&out);
    buf_release(&mine);
    buf_release(&why);
    buf_release(&ch.added);
    buf_release(&ch.sigs);
    buf_release(&ch.body);
}

/* first_token - the token after prefix in text (up to a quote or '=' soft break) into out
 */
static int first_token(const char *text, const char *prefix, struct buf *out)
{
    const char *p = strstr(text, prefix);
    size_t n = 0;

    buf_reset(out);
    if (p == NULL)
        return 0;
    p += strlen(prefix);
    while (p[n] && strchr("\"'<> \r\n", p[n]) == NULL)
        n++;
    buf_append(out, p, n);
    return 1;
}

/* html_of - the decoded text/html part of a message */
static int html_part(const struct mime_part *part, void *ctx)
{
    const char **m = ((const char **)ctx);
    struct buf *out = (struct buf *)m[1];

    if (strcmp(part->subtype, "html") == 0)
        mime_decode(part->cte, m[0] + part->body_start, part->body_len, out);
    return 0;
}

static void html_of(const struct buf *msg, struct buf *out)
{
    const void *ctx[2] = {msg->data, out};
    buf_reset(out);
    mime_walk(msg->data, msg->len, html_part, (void *)ctx, NULL);
}

/*
 * tracking: the links of the copy's HTML part go through the tracker with
 * a click token that names the recipient and gives the link back, the
 * pixel and the footer are there, the signature covers the rewritten
 * message; pipeline_changes' body is the same rewrite
 */
static void test_tracking(void **state)
{
    struct fx fx;
    struct smtpapi_opts o;
    struct pipeline_copy c = {"default", "Q7", "Some.One@Example.org", 0, &o};
    struct pipeline_change ch;
    struct buf out, html, tok, why, keytext;
    struct token t;
    struct token_keys *keys;
    int nsig = 0;
    const char msg[] =
        "From: Shop <news@shop.example>\r\n"
        "Subject: s\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/alternative; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nplain, no link\r\n"
        "--b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: "
        "quoted-printable\r\n\r\n"
        "<p><a href=3D\"https://shop.example/sale?a=3D1&amp;b=3D2#top\">sale</a>\r\n"
        "<a href=3D\"mailto:x@shop.example\">m</a></p></body>\r\n"
        "--b--\r\n";

    (void)state;
    buf_init(&out, 256);
    buf_init(&html, 256);
    buf_init(&tok, 256);
    buf_init(&why, 64);
    buf_init(&keytext, 64);
    buf_init(&ch.added, 256);
    buf_init(&ch.sigs, 256);
    buf_init(&ch.body, 0);
    smtpapi_init(&o);
    o.filters.clicktrack.enable = 1;
    o.filters.opentrack.enable = 1;
    open_fx(&fx, "", 1);
    add_key(&fx);
    buf_puts(&keytext, key_text);
    keys = token_keys_from_text(keytext.data, keytext.len, &why);
    assert_non_null(keys);
    assert_int_equal(pipeline_per_recipient(fx.p, &c, msg, strlen(msg)), 1);
    assert_int_equal(pipeline_personalise(fx.p, &c, msg, strlen(msg), &out, &nsig, &why),
                     0);
    assert_int_equal(nsig, 1);
    html_of(&out, &html);
    assert_true(first_token(html.data, "href=\"https://t.example.net/sg/c/", &tok));
    assert_int_equal(token_decode(keys, tok.data, tok.len, &t, &why), 0);
    assert_int_equal(t.purpose, TOKEN_CLICK);
    assert_string_equal(t.recipient, "Some.One@example.org");
    assert_string_equal(t.message, "Q7");
    assert_string_equal((char *)t.data, "https://shop.example/sale?a=1&b=2#top");
    token_release(&t);
    assert_non_null(strstr(html.data, "<a href=\"mailto:x@shop.example\">"));
    assert_true(first_token(html.data, "<img src=\"https://t.example.net/sg/o/", &tok));
    assert_int_equal(token_decode(keys, tok.data, tok.len, &t, &why), 0);
    assert_int_equal(t.purpose, TOKEN_OPEN);
    token_release(&t);
    /* the plain part, the delimiters and the header as they were */
    assert_non_null(strstr(out.data,
                           "--b\r\nContent-Type: text/plain\r\n\r\nplain, no link\r\n"
                           "--b\r\nContent-Type: text/html\r\n"));
    assert_non_null(strstr(out.data, "</body>\r\n--b--\r\n"));
    /* the milter's changes: the same rewrite of the body */
    assert_int_equal(pipeline_changes(fx.p, &c, msg, strlen(msg), &ch, &why), 0);
    assert_int_equal(ch.body_changed, 1);
    {
        struct buf whole;
        buf_init(&whole, 256);
        buf_puts(&whole, "Content-Type: multipart/alternative; boundary=b\r\n\r\n");
        buf_append(&whole, ch.body.data, ch.body.len);
        html_of(&whole, &html);
        assert_true(first_token(html.data, "href=\"https://t.example.net/sg/c/", &tok));
        buf_release(&whole);
    }
    /* nothing to track: no body change */
    o.filters.clicktrack.enable = 0;
    o.filters.opentrack.enable = 0;
    assert_int_equal(pipeline_changes(fx.p, &c, msg, strlen(msg), &ch, &why), 0);
    assert_int_equal(ch.body_changed, 0);
    token_keys_free(keys);
    close_fx(&fx);
    buf_release(&out);
    buf_release(&html);
    buf_release(&tok);
    buf_release(&why);
    buf_release(&keytext);
    buf_release(&ch.added);
    buf_release(&ch.sigs);
    buf_release(&ch.body);
}

/* meta_field - a field of the metadata's object, parsed (a new reference) */
static json_t *meta_field(const struct pipeline_meta *m, const char *key)
{
    json_t *o = json_loadb(m->fields, m->fields_len, 0, NULL), *v;

    assert_non_null(o);
    v = json_incref(json_object_get(o, key));
    json_decref(o);
    return v;
}

/*
 * what the tracker needs of the message, in its tokens (pipeline_meta_split):
 * a click's link, then the events' fields (categories, the unique_args not
 * clashing with sendguard's fields) and the groups to display; unique_args
 * too long are left out; the mailto token carries none; malformed metadata
 * is refused
 */
static void test_meta(void **state)
{
    struct fx fx;
    struct smtpapi_opts o;
    struct pipeline_copy c = {"default", "Q8", "a@example.org", 0, &o};
    struct pipeline_meta m;
    struct buf out, html, tok, why, keytext, big;
    struct token t;
    struct token_keys *keys;
    uint32_t ids[4];
    json_t *v;
    long groups[] = {3, 5};
    const char msg[] =
        "From: Shop <news@shop.example>\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/html\r\n\r\n"
        "<p><a href=\"https://shop.example/x\">x</a></p></body>\r\n";

    (void)state;
    buf_init(&out, 256);
    buf_init(&html, 256);
    buf_init(&tok, 256);
    buf_init(&why, 64);
    buf_init(&keytext, 64);
    buf_init(&big, 4096);
    smtpapi_init(&o);
    o.filters.clicktrack.enable = 1;
    o.asm_group_id = 1;
    o.categories = (char *[]){"promo", "winter"};
    o.n_categories = 2;
    o.groups_to_display = groups;
    o.n_groups_to_display = 2;
    o.unique_args = json_pack("{s:s,s:s}", "user_id", "42", "url", "forged");
    open_fx(&fx, "", 1);
    c.group = fx.group;
    buf_puts(&keytext, key_text);
    keys = token_keys_from_text(keytext.data, keytext.len, &why);
    assert_non_null(keys);
    assert_int_equal(pipeline_personalise(fx.p, &c, msg, strlen(msg), &out, NULL, &why),
                     0);
    html_of(&out, &html);
    assert_true(first_token(html.data, "href=\"https://t.example.net/sg/c/", &tok));
    assert_int_equal(token_decode(keys, tok.data, tok.len, &t, &why), 0);
    assert_int_equal(pipeline_meta_split(t.data, t.data_len, &m, &why), 0);
    assert_int_equal(m.url_len, strlen("https://shop.example/x"));
    assert_memory_equal(m.url, "https://shop.example/x", m.url_len);
    v = meta_field(&m, "category");
    assert_int_equal(json_array_size(v), 2);
    assert_string_equal(json_string_value(json_array_get(v, 1)), "winter");
    json_decref(v);
    v = meta_field(&m, "user_id");
    assert_string_equal(json_string_value(v), "42");
    json_decref(v);
    assert_null(meta_field(&m, "url")); /* a field of ours: never the sender's */
    assert_int_equal(pipeline_meta_groups(&m, ids, 4), 2);
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[1], 5);
    assert_int_equal(pipeline_meta_groups(&m, ids, 1), 1);
    token_release(&t);
    /* the https unsubscribe token has it, the mailto one not */
    assert_true(first_token(out.data, "<https://t.example.net/sg/u/", &tok));
    assert_int_equal(token_decode(keys, tok.data, tok.len, &t, &why), 0);
    assert_int_equal(pipeline_meta_split(t.data, t.data_len, &m, &why), 0);
    assert_int_equal(m.url_len, 0);
    assert_true(m.fields_len > 0 && m.groups_len > 0);
    token_release(&t);
    assert_true(first_token(out.data, "<mailto:unsubscribe+", &tok));
    buf_truncate(&tok, (size_t)(strchr(tok.data, '@') - tok.data));
    assert_int_equal(token_decode(keys, tok.data, tok.len, &t, &why), 0);
    assert_int_equal(t.data_len, 0);
    token_release(&t);
    /* unique_args over PIPELINE_META_MAX: left out, the categories kept */
    for (int i = 0; i < 300; i++)
        buf_puts(&big, "0123456789");
    json_object_set_new(o.unique_args, "big", json_string(buf_str(&big)));
    assert_int_equal(pipeline_personalise(fx.p, &c, msg, strlen(msg), &out, NULL, &why),
                     0);
    html_of(&out, &html);
    assert_true(first_token(html.data, "href=\"https://t.example.net/sg/c/", &tok));
    assert_int_equal(token_decode(keys, tok.data, tok.len, &t, &why), 0);
    assert_int_equal(pipeline_meta_split(t.data, t.data_len, &m, &why), 0);
    assert_null(meta_field(&m, "user_id"));
    v = meta_field(&m, "category");
    assert_int_equal(json_array_size(v), 2);
    json_decref(v);
    token_release(&t);
    /* no metadata at all: the link alone; malformed metadata refused */
    assert_int_equal(pipeline_meta_split((const unsigned char *)"https://a", 9, &m, &why),
                     0);
    assert_int_equal(m.url_len, 9);
    assert_int_equal(m.fields_len + m.groups_len, 0);
    assert_int_equal(pipeline_meta_split((const unsigned char *)"u\0[]", 4, &m, &why),
                     -1);
    assert_int_equal(pipeline_meta_split((const unsigned char *)"u\0{\0x", 5, &m, &why),
                     -1);
    assert_int_equal(pipeline_meta_split((const unsigned char *)"u\0\0", 3, &m, &why),
                     -1);
    assert_int_equal(pipeline_meta_split((const unsigned char *)"u\0\0"
                                                                "3,5",
                                         6, &m, &why),
                     0);
    assert_int_equal(pipeline_meta_groups(&m, ids, 4), 2);
    json_decref(o.unique_args);
    token_keys_free(keys);
    close_fx(&fx);
    buf_release(&out);
    buf_release(&html);
    buf_release(&tok);
    buf_release(&why);
    buf_release(&keytext);
    buf_release(&big);
}

/* the tenant's configured tracking under the message's own filters */
static void test_tenant_options(void **state)
{
    struct fx fx;
    struct smtpapi_opts o;
    struct buf why;
    const char api[] = "{\"filters\": {\"clicktrack\": {\"settings\": {\"enable\": 0}}}, "
                       "\"category\": \"c\"}";

    (void)state;
    buf_init(&why, 64);
    open_fx(
        &fx,
        "tracking = { opentrack = { enable = true; }; };\n"
        "tenants = ( { name = \"acme\"; tracking = { clicktrack = { enable = true; };\n"
        "  footer = { enable = true; text_plain = \"-- Acme\"; }; }; } );\n",
        1);
    smtpapi_init(&o);
    assert_int_equal(pipeline_options_field(fx.conf, api, strlen(api), &o, &why), 0);
    pipeline_tenant_options(fx.p, "acme", &o);
    assert_int_equal(o.filters.clicktrack.enable, 0); /* the message's own */
    assert_int_equal(o.filters.opentrack.enable, 1);  /* the top level's */
    assert_int_equal(o.filters.footer.enable, 1);     /* the tenant's */
    assert_string_equal(o.filters.footer.text_plain, "-- Acme");
    assert_null(o.filters.footer.text_html);
    assert_int_equal(o.n_categories, 1);
    smtpapi_free(&o);
    smtpapi_init(&o);
    pipeline_tenant_options(fx.p, "default", &o);
    assert_int_equal(o.filters.clicktrack.enable, 0);
    assert_int_equal(o.filters.opentrack.enable, 1);
    smtpapi_free(&o);
    /* a tenant that tracks: its mail may change even without a key or group */
    assert_int_equal(pipeline_may_change(fx.p, "acme", "news@nokey.example"), 1);
    close_fx(&fx);
    buf_release(&why);
}

/* pipeline_event: SendGrid's fields */
static void test_event(void **state)
{
    struct smtpapi_opts o;
    struct buf why;
    json_t *ev = json_pack("{s:s,s:s}", "event", "processed", "email", "a@b.c");
    const char api[] = "{\"category\": [\"c1\"], \"unique_args\": {\"order\": \"42\", "
                       "\"email\": \"not-ours\", \"sg_event_id\": \"forged\", "
                       "\"reason\": \"forged\"}}";

    (void)state;
    buf_init(&why, 64);
    smtpapi_init(&o);
    assert_int_equal(smtpapi_parse(api, strlen(api), 0, &o, NULL, &why), 0);
    pipeline_event(&o, 9, ev);
    assert_int_equal(json_integer_value(json_object_get(ev, "asm_group_id")), 9);
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(ev, "category"), 0)), "c1");
    assert_string_equal(json_string_value(json_object_get(ev, "order")), "42");
    assert_string_equal(json_string_value(json_object_get(ev, "email")), "a@b.c");
    assert_null(json_object_get(ev, "sg_event_id")); /* reserved, even when absent */
    assert_null(json_object_get(ev, "reason"));
    json_decref(ev);
    smtpapi_free(&o);
    buf_release(&why);
}

/* the return path: a token naming tenant, message and recipient; own addresses */
static void test_return_path(void **state)
{
    struct fx fx;
    struct buf rp, why;
    struct token_keys *keys;
    struct token t;
    struct pipeline_decision d;
    const char *at, *plus;

    (void)state;
    buf_init(&rp, 256);
    buf_init(&why, 64);
    open_fx(&fx,
            "unsubscribe = { mailto = \"unsubscribe@shop.example\"; };\n"
            "tenants = ( { name = \"acme\"; feedback = { return_path = "
            "\"bounces@acme.example\"; }; } );\n",
            1);
    /* none for a tenant without one: rp untouched */
    buf_puts(&rp, "x");
    assert_int_equal(
        pipeline_return_path(fx.p, "default", "Q1", "a@example.org", &rp, &why), 0);
    assert_string_equal(buf_str(&rp), "x");
    assert_int_equal(
        pipeline_return_path(fx.p, "acme", "Q1", "Bob@Example.ORG", &rp, &why), 1);
    plus = strchr(buf_str(&rp), '+');
    at = strrchr(buf_str(&rp), '@');
    assert_non_null(plus);
    assert_non_null(at);
    assert_int_equal(strncmp(buf_str(&rp), "bounces+", 8), 0);
    assert_string_equal(at, "@acme.example");
    keys = token_keys_from_text(key_text, strlen(key_text), &why);
    assert_non_null(keys);
    assert_int_equal(token_decode(keys, plus + 1, (size_t)(at - plus - 1), &t, &why), 0);
    assert_int_equal(t.purpose, TOKEN_RETURN_PATH);
    assert_string_equal(t.tenant, "acme");
    assert_string_equal(t.message, "Q1");
    assert_string_equal(t.recipient, "Bob@example.org"); /* normalised */
    assert_null(t.data); /* nothing more: it stays short */
    token_release(&t);
    /* a copy to several: no recipient */
    assert_int_equal(pipeline_return_path(fx.p, "acme", "Q2", NULL, &rp, &why), 1);
    plus = strchr(buf_str(&rp), '+');
    at = strrchr(buf_str(&rp), '@');
    assert_int_equal(token_decode(keys, plus + 1, (size_t)(at - plus - 1), &t, &why), 0);
    assert_true(t.recipient == NULL || *t.recipient == 0);
    token_release(&t);
    token_keys_free(keys);
    /* mail to sendguard's own feedback addresses is delivered, never looked up */
    assert_int_equal(pipeline_decide(fx.p, "default", NULL,
                                     "unsubscribe+"
                                     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                                     "AAAAAAAAAAAAAAAAAAAAAAAAAAA@shop.example",
                                     &d, &why),
                     0);
    assert_int_equal(d.own, 1);
    assert_int_equal(d.action, POLICY_DELIVER);
    assert_int_equal(
        pipeline_decide(fx.p, "default", NULL, "BOUNCES+x@Acme.Example", &d, &why), 0);
    assert_int_equal(d.own, 1);
    assert_int_equal(
        pipeline_decide(fx.p, "default", NULL, "bounces@acme.example", &d, &why), 0);
    assert_int_equal(d.own, 0); /* without a token: an address like any */
    assert_int_equal(
        pipeline_decide(fx.p, "default", NULL, "unsubscribe+x@other.example", &d, &why),
        0);
    assert_int_equal(d.own, 0);
    close_fx(&fx);
    buf_release(&rp);
    buf_release(&why);
}

/* bad settings are refused with the setting's name */
static void test_bad_settings(void **state)
{
    static const char *const bad[] = {
        "tracker = { url = \"http://t.example.net\"; };\n",
        "tracker = { url = \"https://t.example.net/?a=1\"; };\n",
        "unsubscribe = { mailto = \"no-at-sign\"; };\n",
        "unsubscribe = { mailto = \"a+b@example.net\"; };\n",
        "feedback = { return_path = \"bounces+x@example.net\"; };\n",
        "tenants = ( { name = \"acme\"; feedback = { return_path = \"nobody\"; }; } );\n",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char dir[] = "/tmp/test_pipeline.XXXXXX", path[128], cmd[128];
        struct conf *conf;
        struct buf why;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/c.conf", dir);
        write_file(path, bad[i], 0644);
        buf_init(&why, 64);
        conf = conf_load(path, &why);
        if (conf == NULL)
            fail_msg("conf_load: %s", buf_str(&why));
        assert_null(pipeline_new(conf, NULL, "relay.test", &why));
        assert_true(strstr(buf_str(&why), "tracker.url") != NULL ||
                    strstr(buf_str(&why), "unsubscribe.mailto") != NULL ||
                    strstr(buf_str(&why), "feedback.return_path") != NULL);
        conf_free(conf);
        buf_release(&why);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options),        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_personalise),    cmocka_unit_test(test_existing),
        cmocka_unit_test(test_no_key),         cmocka_unit_test(test_sign),
        cmocka_unit_test(test_event),          cmocka_unit_test(test_meta),
        cmocka_unit_test(test_tenant_options), cmocka_unit_test(test_bad_settings),
        cmocka_unit_test(test_changes),        cmocka_unit_test(test_tracking),
        cmocka_unit_test(test_mark),           cmocka_unit_test(test_return_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
