/*
 * cli - shared sgadmin plumbing, see cli.h.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "cli.h"
#include "mymalloc.h"
#include "stats.h"

/* cli_vsay - one "sgadmin: ..." line on stderr */
static void cli_vsay(const char *fmt, va_list ap)
{
    fprintf(stderr, "sgadmin: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

/* cli_fail - see cli.h */
int cli_fail(int status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cli_vsay(fmt, ap);
    va_end(ap);
    return status;
}

/* cli_usage_error - see cli.h */
int cli_usage_error(struct cli *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cli_vsay(fmt, ap);
    va_end(ap);
    if (c->usage)
        fprintf(stderr, "usage: sgadmin %s%s%s %s\n", c->noun, c->verb[0] ? " " : "",
                c->verb, c->usage);
    return EX_USAGE;
}

/* The options every command takes, wherever they stand. */
static int global_opt(struct cli *c, const char *name, const char *arg)
{
    if (strcmp(name, "json") == 0)
        c->json = 1;
    else if (strcmp(name, "verbose") == 0)
        c->verbose++;
    else if (strcmp(name, "tenant") == 0) {
        c->tenant = arg;
        c->tenant_given = 1;
    } else if (strcmp(name, "store") == 0)
        c->store_dir = arg;
    else if (strcmp(name, "config") == 0)
        c->conf_path = arg;
    else
        return 0;
    return 1;
}

static int global_has_arg(const char *name)
{
    return strcmp(name, "tenant") == 0 || strcmp(name, "store") == 0 ||
           strcmp(name, "config") == 0;
}

static int global_known(const char *name)
{
    return global_has_arg(name) || strcmp(name, "json") == 0 ||
           strcmp(name, "verbose") == 0;
}

/* cli_parse - see cli.h; "--" ends the options, "-" is a positional */
int cli_parse(struct cli *c, int argc, char **argv, const struct cli_opt *opts,
              char ***pos, int *npos)
{
    char **out = mycalloc((size_t)argc + 1, sizeof(char *));
    int n = 0, dashdash = 0;

    for (int i = 0; i < argc; i++) {
        char *a = argv[i], *eq, name[64];
        const char *arg = NULL;
        const struct cli_opt *o;
        int has_arg;

        if (dashdash || a[0] != '-' || a[1] == 0) {
            out[n++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            dashdash = 1;
            continue;
        }
        if (strcmp(a, "-c") == 0) {
            snprintf(name, sizeof(name), "config");
        } else if (strcmp(a, "-v") == 0) {
            snprintf(name, sizeof(name), "verbose");
        } else if (a[1] != '-') {
            myfree(out);
            return cli_usage_error(c, "unknown option %s", a);
        } else {
            size_t len = (eq = strchr(a, '=')) ? (size_t)(eq - a - 2) : strlen(a + 2);

            if (len >= sizeof(name)) {
                myfree(out);
                return cli_usage_error(c, "unknown option %s", a);
            }
            memcpy(name, a + 2, len);
            name[len] = 0;
            if (eq)
                arg = eq + 1;
        }
        for (o = opts; o && o->name; o++)
            if (strcmp(o->name, name) == 0)
                break;
        if ((o == NULL || o->name == NULL) && !global_known(name)) {
            myfree(out);
            return cli_usage_error(c, "unknown option --%s", name);
        }
        has_arg = (o && o->name) ? o->has_arg : global_has_arg(name);
        if (has_arg && arg == NULL) {
            if (i + 1 >= argc) {
                myfree(out);
                return cli_usage_error(c, "option --%s needs a value", name);
            }
            arg = argv[++i];
        } else if (!has_arg && arg) {
            myfree(out);
            return cli_usage_error(c, "option --%s takes no value", name);
        }
        if (o && o->name) {
            if (o->value)
                *o->value = arg;
            if (o->flag)
                *o->flag = 1;
        } else {
            global_opt(c, name, arg);
        }
    }
    *pos = out;
    *npos = n;
    return 0;
}

/* cli_parse_options - see cli.h */
int cli_parse_options(struct cli *c, int argc, char **argv, const struct cli_opt *opts)
{
    char **pos;
    int npos, rc = cli_parse(c, argc, argv, opts, &pos, &npos);

    if (rc == 0 && npos > 0)
        rc = cli_usage_error(c, "unexpected argument '%s'", pos[0]);
    myfree(pos);
    return rc;
}

/* cli_entry - see cli.h */
int cli_entry(const char *text)
{
    struct buf why, display, key;
    enum address_kind kind;
    int rc = 0;

    buf_init(&why, 64);
    buf_init(&display, 64);
    buf_init(&key, 64);
    if (address_parse_entry(text, &kind, &display, &key, &why) < 0)
        rc = cli_fail(EX_DATAERR, "%s: %s", text, buf_str(&why));
    buf_release(&why);
    buf_release(&display);
    buf_release(&key);
    return rc;
}

/* cli_store_dir - see cli.h */
const char *cli_store_dir(struct cli *c, int *status)
{
    struct buf why;

    buf_init(&why, 128);
    *status = 0;
    if (c->conf == NULL && (c->conf = conf_load(c->conf_path, &why)) == NULL)
        *status = cli_fail(EX_CONFIG, "%s", buf_str(&why));
    else if (!conf_tenant_valid(c->tenant, &why))
        *status = cli_fail(EX_USAGE, "bad --tenant: %s", buf_str(&why));
    buf_release(&why);
    if (*status)
        return NULL;
    stats_configure(c->conf); /* the days of the counters events add to */
    return c->store_dir ? c->store_dir : conf_string(c->conf, "store.path");
}

/* The signal that asked a writing command to stop, or 0. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
    stop_signal = sig;
}

/*
 * catch_stop_signals - a writing command is not killed by INT, TERM or HUP
 * in the middle of a bulk change: the store stops it at the next batch and
 * undoes it, and cli_finish() then dies of the signal as it would have.
 */
static void catch_stop_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

/* cli_interrupted - see cli.h */
int cli_interrupted(void)
{
    return stop_signal != 0;
}

/* cli_finish - see cli.h */
int cli_finish(int status)
{
    if (stop_signal) {
        signal(stop_signal, SIG_DFL);
        raise(stop_signal);
    }
    return status;
}

/* cli_open - see cli.h */
int cli_open(struct cli *c, int mode)
{
    struct buf why;
    const char *dir;
    int status;

    if ((dir = cli_store_dir(c, &status)) == NULL)
        return status;
    buf_init(&why, 128);
    if ((c->st = store_open(dir, mode, &why)) == NULL) {
        /* store_open does not promise errno: ask the file system */
        int denied = (access(dir, R_OK | X_OK) < 0 && errno == EACCES) ||
                     strstr(buf_str(&why), "Permission denied") != NULL ||
                     strstr(buf_str(&why), "no permission") != NULL; /* TC's wording */

        status = denied ? EX_NOPERM : EX_UNAVAILABLE;
        cli_fail(status, "%s", buf_str(&why));
        buf_release(&why);
        return status;
    }
    store_set_batch(c->st, (size_t)conf_int(c->conf, "store.write_batch"));
    if (mode & STORE_WRITE) {
        catch_stop_signals();
        store_set_interrupt(c->st, &stop_signal);
    }
    c->store_dir = dir;
    buf_release(&why);
    return 0;
}

/* cli_close - see cli.h */
void cli_close(struct cli *c)
{
    store_close(c->st);
    c->st = NULL;
    conf_free(c->conf);
    c->conf = NULL;
}

/* cli_number - see cli.h */
int cli_number(struct cli *c, const char *name, const char *text, long long min,
               long long max, long long *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max)
        return cli_usage_error(c, "%s must be a whole number from %lld to %lld, not '%s'",
                               name, min, max, text);
    *out = v;
    return 0;
}

/* cli_time - see cli.h */
int cli_time(struct cli *c, const char *name, const char *text, int64_t *out)
{
    struct tm tm;
    const char *rest;
    char *end;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (!errno && end != text && *end == 0 && v >= 0) {
        *out = v;
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    if ((rest = strptime(text, "%Y-%m-%d", &tm)) != NULL) {
        if (*rest == 'T' || *rest == ' ')
            rest = strptime(rest + 1, "%H:%M:%S", &tm);
        if (rest && (*rest == 'Z' || *rest == 0) && (*rest == 0 || rest[1] == 0)) {
            *out = (int64_t)timegm(&tm);
            return 0;
        }
    }
    return cli_usage_error(
        c,
        "--%s must be unix seconds or YYYY-MM-DD[THH:MM:SS][Z] in UTC (a space may stand "
        "for the T), not '%s'",
        name, text);
}

/* cli_fmt_time - see cli.h */
const char *cli_fmt_time(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%d %H:%M:%S", &tm);
    return out;
}

/* cli_print_json - see cli.h */
void cli_print_json(json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);

    if (s) {
        puts(s);
        free(s);
    }
    json_decref(v);
}

/* cell - the text of one table cell */
static void cell(json_t *v, const char *key, char *out, size_t size)
{
    json_t *x = json_object_get(v, key);

    if (json_is_string(x))
        snprintf(out, size, "%s", json_string_value(x));
    else if (json_is_integer(x) && strcmp(key, "created") == 0) {
        char t[32];

        snprintf(out, size, "%s", cli_fmt_time(json_integer_value(x), t));
    } else if (json_is_integer(x))
        snprintf(out, size, "%lld", (long long)json_integer_value(x));
    else if (json_is_boolean(x))
        snprintf(out, size, "%s", json_is_true(x) ? "yes" : "");
    else
        snprintf(out, size, "%s", "");
}

/* cli_print_table - see cli.h */
void cli_print_table(json_t *rows, const char *const *keys, const char *const *heads)
{
    size_t ncol = 0, width[16] = {0};
    char text[1100];
    size_t i;
    json_t *row;

    while (keys[ncol] && ncol < 16) {
        width[ncol] = strlen(heads[ncol]);
        ncol++;
    }
    json_array_foreach (rows, i, row) {
        for (size_t k = 0; k + 1 < ncol; k++) {
            cell(row, keys[k], text, sizeof(text));
            if (strlen(text) > width[k])
                width[k] = strlen(text);
        }
    }
    for (size_t k = 0; k < ncol; k++)
        printf("%-*s%s", k + 1 < ncol ? (int)width[k] : 0, heads[k],
               k + 1 < ncol ? "  " : "\n");
    json_array_foreach (rows, i, row) {
        for (size_t k = 0; k < ncol; k++) {
            cell(row, keys[k], text, sizeof(text));
            printf("%-*s%s", k + 1 < ncol ? (int)width[k] : 0, text,
                   k + 1 < ncol ? "  " : "\n");
        }
    }
}

static struct timespec progress_last;
static int progress_shown;

/* cli_progress - see cli.h */
void cli_progress(const char *fmt, ...)
{
    static struct timespec start;
    struct timespec now;
    va_list ap;

    if (!isatty(STDERR_FILENO))
        return;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (start.tv_sec == 0)
        start = now;
    if (now.tv_sec - start.tv_sec < 1 ||
        (progress_shown && (now.tv_sec - progress_last.tv_sec) * 1000 +
                                   (now.tv_nsec - progress_last.tv_nsec) / 1000000 <
                               500))
        return;
    progress_last = now;
    progress_shown = 1;
    fputc('\r', stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\033[K", stderr);
}

/* cli_progress_done - end the progress line */
void cli_progress_done(void)
{
    if (progress_shown)
        fputc('\n', stderr);
    progress_shown = 0;
}
