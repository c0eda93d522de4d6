/*
 * sgwebhook - the sender of the event webhook: every tenant with a URL
 * (sgadmin webhook set) gets its events POSTed as signed JSON arrays, in
 * batches, from the position it has acknowledged, by a thread of its own.
 *
 *   sgwebhook [-c FILE] [-f]
 *
 * See sgwebhook(8).  Why a daemon of its own: it waits on other people's
 * servers, for a day when they are down; the milter, the relay and the
 * tracker must never wait on one, and a thread per tenant keeps one slow
 * endpoint from delaying any other tenant's events.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "conf.h"
#include "daemon.h"
#include "fdio.h"
#include "msg.h"
#include "mymalloc.h"
#include "stats.h"
#include "webhook.h"

static volatile sig_atomic_t stopping;
static struct conf *conf;
static struct webhook_key *key;
static const char *store_dir;

struct sender {
    char *tenant;
    pthread_t th;
    volatile int done;
};

static struct sender *senders;
static size_t nsenders, capsenders;

static void on_stop(int sig)
{
    (void)sig;
    stopping = 1;
}

/* nap - sleep ms milliseconds, less when stopping */
static void nap(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};

    while (!stopping && nanosleep(&t, &t) < 0 && errno == EINTR)
        ;
}

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
    (void)p;
    (void)ctx;
    return size * n;
}

/* post - the batch to url: the HTTP status, or 0 with why when none came */
static long post(CURL *c, const char *url, const char *body, size_t len, struct buf *why)
{
    char ts[32], errbuf[CURL_ERROR_SIZE] = "";
    struct buf sig, h1, h2;
    struct curl_slist *hs = NULL;
    long code = 0;
    CURLcode rc;

    snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
    buf_init(&sig, 128);
    buf_init(&h1, 160);
    buf_init(&h2, 80);
    if (webhook_sign(key, ts, body, len, &sig, why) < 0)
        goto out;
    buf_printf(&h1, "X-Twilio-Email-Event-Webhook-Signature: %s", buf_str(&sig));
    buf_printf(&h2, "X-Twilio-Email-Event-Webhook-Timestamp: %s", ts);
    hs = curl_slist_append(hs, "Content-Type: application/json");
    hs = curl_slist_append(hs, "User-Agent: sendguard-webhook/1.0");
    hs = curl_slist_append(hs, buf_str(&h1));
    hs = curl_slist_append(hs, buf_str(&h2));
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)conf_duration(conf, "webhook.timeout"));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    /* certificates verified (libcurl's default, said here so it stays) */
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if ((rc = curl_easy_perform(c)) != CURLE_OK)
        buf_error(why, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    else
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
out:
    curl_slist_free_all(hs);
    buf_release(&sig);
    buf_release(&h1);
    buf_release(&h2);
    return code;
}

/* status - the tenant's status file: the last success and the last error */
static void status(const char *tenant, int64_t ok_at, long long sent, int64_t err_at,
                   const char *err)
{
    struct buf path, tmp, why;
    json_t *st = json_pack("{s:I,s:I}", "last_success", (json_int_t)ok_at, "events_sent",
                           (json_int_t)sent);
    char *text;

    if (err_at) {
        json_object_set_new(st, "last_error_at", json_integer(err_at));
        json_object_set_new(st, "last_error", json_string(err));
    }
    text = json_dumps(st, JSON_COMPACT);
    buf_init(&path, 128);
    buf_init(&tmp, 128);
    buf_init(&why, 64);
    webhook_dir(store_dir, tenant, &path);
    buf_printf(&tmp, "%s/status.tmp", buf_str(&path));
    buf_puts(&path, "/status");
    {
        FILE *f = fopen(buf_str(&tmp), "w");

        if (f && fputs(text, f) >= 0 && fclose(f) == 0)
            rename(buf_str(&tmp), buf_str(&path));
        else if (f)
            fclose(f);
    }
    free(text);
    json_decref(st);
    buf_release(&path);
    buf_release(&tmp);
    buf_release(&why);
}

/* url_of - the tenant's URL (its url file), or 0 when it has none now */
static int url_of(const char *tenant, struct buf *url)
{
    struct buf path, why;
    int ok;

    buf_init(&path, 128);
    buf_init(&why, 64);
    webhook_dir(store_dir, tenant, &path);
    buf_puts(&path, "/url");
    ok = fd_read_file(buf_str(&path), url, &why) == 0;
    while (ok && url->len &&
           (url->data[url->len - 1] == '\n' || url->data[url->len - 1] == ' '))
        buf_truncate(url, url->len - 1);
    buf_release(&path);
    buf_release(&why);
    return ok && url->len > 0;
}

/* send_loop - one tenant's events, batch after batch, for as long as it has a URL */
static void *send_loop(void *arg)
{
    struct sender *s = arg;
    CURL *c = curl_easy_init();
    struct webhook_pos pos, next;
    struct buf why, url;
    size_t batch = (size_t)conf_int(conf, "webhook.batch_size");
    long long age_ms = conf_duration(conf, "webhook.batch_age") * 1000;
    int64_t retry_for = conf_duration(conf, "webhook.retry_for");
    int64_t pending_since = 0, failing_since = 0, ok_at = 0, err_at = 0;
    long long sent = 0;
    long backoff = 1000;
    char err[512] = "";

    buf_init(&why, 128);
    buf_init(&url, 256);
    if (webhook_pos_read(store_dir, s->tenant, &pos, &why) <= 0) {
        if (why.len)
            msg_warn("webhook %s: %s; starting from the log's end", s->tenant,
                     buf_str(&why));
        webhook_pos_end(store_dir, &pos);
        webhook_pos_write(store_dir, s->tenant, &pos, &why);
    }
    while (!stopping && url_of(s->tenant, &url)) {
        json_t *evs = json_array();
        size_t n;
        char *body;
        long code;
        int64_t now = (int64_t)time(NULL);

        if (webhook_read(store_dir, s->tenant, &pos, batch, evs, &next, &why) < 0) {
            msg_warn("webhook %s: %s", s->tenant, buf_str(&why));
            json_decref(evs);
            nap(1000);
            continue;
        }
        n = json_array_size(evs);
        if (n == 0) {
            json_decref(evs);
            if (strcmp(next.day, pos.day) != 0 || next.offset != pos.offset) {
                /* only other tenants' events: passed over for good */
                pos = next;
                webhook_pos_write(store_dir, s->tenant, &pos, &why);
            }
            pending_since = 0;
            nap(200);
            continue;
        }
        /* a batch not full waits up to batch_age for more */
        if (pending_since == 0)
            pending_since = now * 1000 + 0;
        if (n < batch && (now * 1000 - pending_since) < age_ms) {
            json_decref(evs);
            nap(100);
            continue;
        }
        body = json_dumps(evs, JSON_COMPACT);
        json_decref(evs);
        buf_reset(&why);
        code = post(c, buf_str(&url), body, strlen(body), &why);
        free(body);
        if (code >= 200 && code < 300) {
            if (webhook_pos_write(store_dir, s->tenant, &next, &why) < 0) {
                /* sent but not remembered: it goes again (at least once) */
                msg_warn("webhook %s: %s", s->tenant, buf_str(&why));
            }
            pos = next;
            sent += (long long)n;
            ok_at = (int64_t)time(NULL);
            pending_since = failing_since = 0;
            backoff = 1000;
            status(s->tenant, ok_at, sent, err_at, err);
            continue;
        }
        err_at = (int64_t)time(NULL);
        if (code)
            snprintf(err, sizeof(err), "HTTP %ld", code);
        else
            snprintf(err, sizeof(err), "%s", buf_str(&why));
        if (code >= 400 && code < 500 && code != 408 && code != 429) {
            /* refused for good: not sent again */
            msg_warn("webhook %s: %s refused a batch of %zu events (%s): passed over",
                     s->tenant, buf_str(&url), n, err);
            pos = next;
            webhook_pos_write(store_dir, s->tenant, &pos, &why);
            status(s->tenant, ok_at, sent, err_at, err);
            continue;
        }
        if (failing_since == 0)
            failing_since = err_at;
        if (err_at - failing_since > retry_for) {
            msg_warn(
                "webhook %s: %s failing for %lld s (%s): a batch of %zu events given up",
                s->tenant, buf_str(&url), (long long)(err_at - failing_since), err, n);
            pos = next;
            webhook_pos_write(store_dir, s->tenant, &pos, &why);
            failing_since = 0;
            backoff = 1000;
        } else {
            msg_info("webhook %s: %s (%s); again in %ld ms", s->tenant, buf_str(&url),
                     err, backoff);
            nap(backoff);
            backoff = backoff * 2 > 600000 ? 600000 : backoff * 2;
        }
        status(s->tenant, ok_at, sent, err_at, err);
    }
    curl_easy_cleanup(c);
    buf_release(&why);
    buf_release(&url);
    s->done = 1;
    return NULL;
}

/* scan - a sender for every tenant with a url file and none yet */
static void scan(void)
{
    struct buf dir;
    DIR *dh;
    struct dirent *de;

    buf_init(&dir, 128);
    buf_printf(&dir, "%s/webhook", store_dir);
    if ((dh = opendir(buf_str(&dir))) != NULL) {
        while ((de = readdir(dh)) != NULL) {
            struct buf url;
            size_t i;

            if (de->d_name[0] == '.')
                continue;
            for (i = 0; i < nsenders; i++)
                if (strcmp(senders[i].tenant, de->d_name) == 0)
                    break;
            if (i < nsenders && !senders[i].done)
                continue;
            buf_init(&url, 64);
            if (url_of(de->d_name, &url)) {
                if (i == nsenders) {
                    senders = mygrow(senders, &capsenders, nsenders, sizeof(*senders));
                    senders[nsenders].tenant = mystrdup(de->d_name);
                    nsenders++;
                } else {
                    pthread_join(senders[i].th, NULL);
                }
                senders[i].done = 0;
                if (pthread_create(&senders[i].th, NULL, send_loop, &senders[i]) != 0) {
                    msg_warn("webhook %s: cannot start its thread", de->d_name);
                    senders[i].done = 1;
                } else {
                    msg_info("webhook %s: sending to %s", de->d_name, buf_str(&url));
                }
            }
            buf_release(&url);
        }
        closedir(dh);
    }
    buf_release(&dir);
}

static void SG_NORETURN usage(void)
{
    fprintf(
        stderr,
        "usage: sgwebhook [-c FILE] [-f]\n       sgwebhook [-c FILE] [-j] -t TENANT\n");
    exit(EX_USAGE);
}

/* test - -t TENANT: a signed sample event POSTed to its URL now; 0 when it answered 2xx
 */
static int test(const char *tenant, int json)
{
    struct buf url, why;
    CURL *c = curl_easy_init();
    json_t *sample;
    char *body;
    long code;

    buf_init(&url, 128);
    buf_init(&why, 128);
    if (!url_of(tenant, &url)) {
        fprintf(stderr, "sgwebhook: tenant %s has no webhook (sgadmin webhook set URL)\n",
                tenant);
        return EX_CONFIG;
    }
    sample = json_pack("[{s:s,s:I,s:s,s:s,s:s,s:[s]}]", "email", "example@test.com",
                       "timestamp", (json_int_t)time(NULL), "event", "processed",
                       "sg_event_id", "sendguard-webhook-test", "sg_message_id",
                       "sendguard-webhook-test", "category", "test");
    body = json_dumps(sample, JSON_COMPACT);
    json_decref(sample);
    code = post(c, buf_str(&url), body, strlen(body), &why);
    free(body);
    curl_easy_cleanup(c);
    if (json) {
        json_t *o =
            json_pack("{s:s,s:I}", "url", buf_str(&url), "status", (json_int_t)code);

        if (code == 0)
            json_object_set_new(o, "error", json_string(buf_str(&why)));
        body = json_dumps(o, JSON_INDENT(2));
        printf("%s\n", body);
        free(body);
        json_decref(o);
    } else if (code) {
        printf("%s answered %ld to a signed test event\n", buf_str(&url), code);
    } else {
        fprintf(stderr, "sgwebhook: %s: %s\n", buf_str(&url), buf_str(&why));
    }
    buf_release(&url);
    buf_release(&why);
    return code >= 200 && code < 300 ? 0 : EX_UNAVAILABLE;
}

int main(int argc, char **argv)
{
    const char *conf_path = NULL, *test_tenant = NULL;
    int ch, foreground = 0, json = 0;
    struct buf why;
    struct sigaction sa;

    while ((ch = getopt(argc, argv, "c:fjt:")) != -1) {
        if (ch == 'c')
            conf_path = optarg;
        else if (ch == 'f')
            foreground = 1;
        else if (ch == 'j')
            json = 1;
        else if (ch == 't')
            test_tenant = optarg;
        else
            usage();
    }
    if (optind != argc)
        usage();
    msg_open("sgwebhook", foreground || test_tenant ? MSG_STDERR : MSG_SYSLOG);
    buf_init(&why, 128);
    if ((conf = conf_load(conf_path, &why)) == NULL)
        msg_fatal("%s", buf_str(&why));
    stats_configure(conf);
    store_dir = conf_string(conf, "store.path");
    if ((key = webhook_key_load(conf_string(conf, "secrets.webhook_key_file"), &why)) ==
        NULL)
        msg_fatal("%s (sgadmin webhook key makes one)", buf_str(&why));
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        msg_fatal("cannot start libcurl");
    if (test_tenant)
        return test(test_tenant, json);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    daemon_become("webhook.user", conf_string(conf, "webhook.user"), NULL);
    if (!foreground && daemon(0, 0) < 0)
        msg_fatal("cannot go into the background: %s", strerror(errno));
    daemon_write_pid(conf_string(conf, "webhook.pid_file"));
    msg_info("started: the webhooks of %s", store_dir);
    while (!stopping) {
        scan();
        nap(1000);
    }
    for (size_t i = 0; i < nsenders; i++) {
        pthread_join(senders[i].th, NULL);
        myfree(senders[i].tenant);
    }
    myfree(senders);
    webhook_key_free(key);
    curl_global_cleanup();
    conf_free(conf);
    buf_release(&why);
    msg_info("stopped");
    return 0;
}
