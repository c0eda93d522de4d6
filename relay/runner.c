/*
 * runner - the queue runs of sgrelay: once (-q), as a daemon (-bd -qN), and
 * right after acceptance (-odi, -odb); and the listing of mailq (-bp).
 *
 * A run lists the queue, then forks up to relay.connections workers, each
 * taking every n-th entry; a worker locks each entry (spool_entry_open) and
 * skips those another runner holds, so two runs at once never deliver the
 * same entry twice.  Workers deliver their entries in batches of
 * relay.messages_per_connection over one connection each.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "mymalloc.h"
#include "relay.h"

/* The names of the queue's entries. */
struct ids {
    char **v;
    size_t n, cap;
};

/* collect - spool_scan callback */
static int collect(const char *id, void *ctx)
{
    struct ids *ids = ctx;

    ids->v = mygrow(ids->v, &ids->cap, ids->n, sizeof(char *));
    ids->v[ids->n++] = mystrdup(id);
    return 0;
}

/* by_name - entries in name order, which is arrival order */
static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void ids_free(struct ids *ids)
{
    for (size_t i = 0; i < ids->n; i++)
        myfree(ids->v[i]);
    myfree(ids->v);
}

/* work - deliver every step-th entry from first: the part of one worker */
static void work(struct relay *r, struct ids *ids, size_t first, size_t step, int all)
{
    size_t per = (size_t)conf_int(r->conf, "relay.messages_per_connection");
    struct spool_entry **batch = mycalloc(per, sizeof(*batch));
    size_t nb = 0;
    int64_t now = (int64_t)time(NULL);
    struct buf why;

    buf_init(&why, 128);
    for (size_t i = first; i < ids->n; i += step) {
        struct spool_entry *e;
        int rc = spool_entry_open(r->spool, ids->v[i], &e, &why);
        if (rc < 0)
            msg_warn("%s", buf_str(&why));
        if (rc != 0)
            continue;
        if (!all && e->env.next_try > now) {
            spool_entry_close(e);
            continue;
        }
        batch[nb++] = e;
        if (nb == per) {
            relay_deliver(r, batch, nb);
            nb = 0;
        }
    }
    if (nb)
        relay_deliver(r, batch, nb);
    myfree(batch);
    buf_release(&why);
}

/* relay_run_queue - see relay.h */
int relay_run_queue(struct relay *r, int all)
{
    struct ids ids = {0};
    struct buf why;
    size_t workers = (size_t)conf_int(r->conf, "relay.connections");
    pid_t *pids;
    size_t started = 0;

    buf_init(&why, 128);
    if (spool_scan(r->spool, collect, &ids, &why) < 0) {
        msg_error("%s", buf_str(&why));
        buf_release(&why);
        return EX_IOERR;
    }
    buf_release(&why);
    spool_expire_done(r->spool, SPOOL_DONE_KEEP);
    qsort(ids.v, ids.n, sizeof(char *), by_name);
    if (workers > ids.n)
        workers = ids.n;
    if (workers <= 1) {
        if (ids.n)
            work(r, &ids, 0, 1, all);
        ids_free(&ids);
        return EX_OK;
    }
    pids = mycalloc(workers, sizeof(pid_t));
    for (size_t w = 0; w < workers; w++) {
        pid_t pid = fork();
        if (pid == 0) {
            work(r, &ids, w, workers, all);
            _exit(0);
        }
        if (pid < 0) {
            msg_warn("cannot fork a queue worker: %m");
            break;
        }
        pids[started++] = pid;
    }
    if (started == 0)
        work(r, &ids, 0, 1, all);
    for (size_t w = 0; w < started; w++)
        while (waitpid(pids[w], NULL, 0) < 0 && errno == EINTR)
            ;
    /* entries whose worker could not be started wait for the next run */
    myfree(pids);
    ids_free(&ids);
    return EX_OK;
}

static volatile sig_atomic_t stop_daemon;

static void on_term(int sig)
{
    (void)sig;
    stop_daemon = 1;
}

/*
 * deliver_kicked - the entries named by the complete lines of the kick
 * FIFO's text, delivered now; the part of a line not yet read stays in text
 */
static void deliver_kicked(struct relay *r, struct buf *text)
{
    struct ids ids = {0};
    size_t used = 0;
    pid_t pid;

    for (;;) {
        const char *p = text->data + used;
        const char *nl = memchr(p, '\n', text->len - used);
        size_t n;
        int dup = 0;
        if (nl == NULL)
            break;
        n = (size_t)(nl - p);
        used += n + 1;
        for (size_t i = 0; i < ids.n && !dup; i++)
            dup = strlen(ids.v[i]) == n && memcmp(ids.v[i], p, n) == 0;
        if (n > 0 && n < SPOOL_ID_MAX && !dup) {
            ids.v = mygrow(ids.v, &ids.cap, ids.n, sizeof(char *));
            ids.v[ids.n++] = mystrndup(p, n);
        }
    }
    memmove(text->data, text->data + used, text->len - used);
    buf_truncate(text, text->len - used);
    if (ids.n == 0)
        return;
    /* a worker of its own: the daemon goes on listening (reaped in relay_daemon) */
    if ((pid = fork()) == 0) {
        work(r, &ids, 0, 1, 1);
        _exit(0);
    }
    if (pid < 0)
        msg_warn("cannot fork to deliver: %m; the next queue run will");
    ids_free(&ids);
}

/* relay_daemon - see relay.h */
int relay_daemon(struct relay *r, long long interval)
{
    struct sigaction sa;
    struct buf why, text;
    time_t next = 0;
    int kick;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    buf_init(&why, 128);
    buf_init(&text, 256);
    if ((kick = spool_kick_listen(r->spool, &why)) < 0)
        msg_warn("%s: mail is delivered at each queue run only", buf_str(&why));
    msg_info("queue runner started, every %llds", interval);
    while (!stop_daemon) {
        struct pollfd pfd = {.fd = kick, .events = POLLIN};
        time_t now = time(NULL);
        char chunk[4096];
        ssize_t n;

        if (now >= next) {
            relay_run_queue(r, 0);
            next = time(NULL) + (time_t)interval;
            continue;
        }
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ; /* the workers of kicked entries */
        /* a second at most: a TERM between the check and poll waits no longer */
        if (poll(&pfd, kick >= 0 ? 1 : 0,
                 next - now > 1 ? 1000 : (int)(next - now) * 1000) <= 0)
            continue;
        if ((n = read(kick, chunk, sizeof(chunk))) > 0) {
            buf_append(&text, chunk, (size_t)n);
            deliver_kicked(r, &text);
        }
    }
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
        ;
    buf_release(&why);
    buf_release(&text);
    msg_info("queue runner stopped");
    return EX_OK;
}

/* relay_after_accept - see relay.h */
void relay_after_accept(struct relay *r, struct spool_entry **entries, size_t n)
{
    pid_t pid;

    if (n == 0)
        return;
    if (r->delivery == RELAY_INTERACTIVE) {
        relay_deliver(r, entries, n);
        return;
    }
    /* background: the caller (blocked in pclose) gets its exit status now */
    pid = fork();
    if (pid < 0) {
        msg_warn("cannot fork to deliver: %m; the queue runner will");
        for (size_t i = 0; i < n; i++)
            spool_entry_close(entries[i]);
        return;
    }
    if (pid > 0) {
        /* the child's copies of the descriptors keep the locks */
        for (size_t i = 0; i < n; i++)
            spool_entry_close(entries[i]);
        return;
    }
    setsid();
    if (fork() > 0)
        _exit(0);
    /* stdin, stdout and stderr belong to the caller: let go of them */
    if (freopen("/dev/null", "r", stdin) == NULL ||
        freopen("/dev/null", "w", stdout) == NULL ||
        freopen("/dev/null", "w", stderr) == NULL)
        _exit(0);
    msg_open(r->progname, MSG_SYSLOG);
    relay_deliver(r, entries, n);
    _exit(0);
}

/* relay_list - see relay.h */
int relay_list(struct relay *r, FILE *out)
{
    struct ids ids = {0};
    struct buf why, reason;
    size_t shown = 0, bytes = 0;

    buf_init(&why, 128);
    buf_init(&reason, 128);
    if (spool_scan(r->spool, collect, &ids, &why) < 0) {
        fprintf(stderr, "%s: %s\n", r->progname, buf_str(&why));
        buf_release(&why);
        buf_release(&reason);
        return EX_IOERR;
    }
    qsort(ids.v, ids.n, sizeof(char *), by_name);
    for (size_t i = 0; i < ids.n; i++) {
        struct spool_env env;
        size_t size = 0;
        char when[32];
        time_t t;
        struct tm tm;
        int rc = spool_read_env(r->spool, ids.v[i], &env, &size, &why);
        if (rc != 0) {
            if (rc < 0)
                fprintf(stderr, "%s: %s\n", r->progname, buf_str(&why));
            continue;
        }
        if (!r->privileged && env.uid != r->uid) {
            spool_env_release(&env);
            continue; /* another user's mail is none of this user's business */
        }
        if (shown++ == 0)
            fprintf(out, "-Queue ID-           --Size-- ----Arrival Time---- "
                         "-Sender/Recipient-------\n");
        t = (time_t)env.created;
        localtime_r(&t, &tm);
        strftime(when, sizeof(when), "%a %b %d %H:%M:%S", &tm);
        fprintf(out, "%-20s %8zu %-20s %s\n", ids.v[i], size, when,
                env.sender[0] ? env.sender : "MAILER-DAEMON");
        for (size_t k = 0; k < env.nrcpts; k++) {
            if (env.rcpts[k].state != SPOOL_PENDING)
                continue;
            if (env.attempts > 0) {
                spool_defer_reason(r->spool, ids.v[i], k, &reason);
                if (reason.len)
                    fprintf(out, "%52s(%s)\n", "", buf_str(&reason));
            }
            fprintf(out, "%52s%s\n", "", env.rcpts[k].addr);
        }
        fputc('\n', out);
        bytes += size;
        spool_env_release(&env);
    }
    if (shown == 0)
        fprintf(out, "Mail queue is empty\n");
    else
        fprintf(out, "-- %zu Kbytes in %zu Request%s.\n", (bytes + 1023) / 1024, shown,
                shown == 1 ? "" : "s");
    ids_free(&ids);
    buf_release(&why);
    buf_release(&reason);
    return EX_OK;
}
