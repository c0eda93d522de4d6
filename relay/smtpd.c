/*
 * smtpd - "sendmail -bs": an SMTP dialogue on standard input and output, as
 * Symfony Mailer speaks it by default.  Each message is queued durably
 * before its 250; delivery starts after QUIT (or end of input), as the
 * -od mode says.  Commands may be pipelined: every reply is flushed.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

#include "address.h"
#include "mymalloc.h"
#include "relay.h"

#define SMTPD_LINE_MAX 4096
#define SMTPD_RCPT_MAX 1000

/* One transaction's envelope. */
struct txn {
    int active;
    char *sender;
    char **rcpt;
    int *notify;
    char **orcpt;
    size_t n, cap;
    struct relay_opts o;
    char *envid;
};

static void txn_reset(struct txn *t)
{
    for (size_t i = 0; i < t->n; i++) {
        myfree(t->rcpt[i]);
        myfree(t->orcpt[i]);
    }
    myfree(t->rcpt);
    myfree(t->notify);
    myfree(t->orcpt);
    myfree(t->sender);
    myfree(t->envid);
    memset(t, 0, sizeof(*t));
}

/* reply - one reply line, flushed */
static void reply(FILE *out, const char *text)
{
    fputs(text, out);
    fputs("\r\n", out);
    fflush(out);
}

/* path_arg - the <path> after "FROM:" / "TO:"; rest points after it */
static char *path_arg(const char *p, const char **rest)
{
    const char *end;

    while (*p == ' ')
        p++;
    if (*p != '<') {
        end = p;
        while (*end && *end != ' ')
            end++;
    } else {
        end = strchr(p, '>');
        if (end == NULL)
            return NULL;
        p++;
    }
    *rest = *end == '>' ? end + 1 : end;
    return mystrndup(p, (size_t)(end - p));
}

/* params - the ESMTP parameters of MAIL (rcpt_i < 0) or of a RCPT */
static const char *params(struct txn *t, const char *p, long rcpt_i)
{
    while (*p) {
        const char *end, *eq;
        size_t klen;
        while (*p == ' ')
            p++;
        if (*p == 0)
            break;
        end = p;
        while (*end && *end != ' ')
            end++;
        eq = memchr(p, '=', (size_t)(end - p));
        klen = eq ? (size_t)(eq - p) : (size_t)(end - p);
        if (rcpt_i < 0 && klen == 4 && strncasecmp(p, "BODY", 4) == 0 && eq) {
            if ((size_t)(end - eq - 1) == 8 && strncasecmp(eq + 1, "8BITMIME", 8) == 0)
                t->o.body_8bit = 1;
            else if (!((size_t)(end - eq - 1) == 4 &&
                       strncasecmp(eq + 1, "7BIT", 4) == 0))
                return "501 5.5.4 Bad BODY parameter";
        } else if (rcpt_i < 0 && klen == 4 && strncasecmp(p, "SIZE", 4) == 0) {
            /* checked against the limit once the data is in */
        } else if (rcpt_i < 0 && klen == 3 && strncasecmp(p, "RET", 3) == 0 && eq) {
            if ((size_t)(end - eq - 1) == 4 && strncasecmp(eq + 1, "FULL", 4) == 0)
                t->o.ret = SPOOL_RET_FULL;
            else if ((size_t)(end - eq - 1) == 4 && strncasecmp(eq + 1, "HDRS", 4) == 0)
                t->o.ret = SPOOL_RET_HDRS;
            else
                return "501 5.5.4 Bad RET parameter";
        } else if (rcpt_i < 0 && klen == 5 && strncasecmp(p, "ENVID", 5) == 0 && eq) {
            myfree(t->envid);
            t->envid = mystrndup(eq + 1, (size_t)(end - eq - 1));
        } else if (rcpt_i >= 0 && klen == 6 && strncasecmp(p, "NOTIFY", 6) == 0 && eq) {
            int bits = spool_notify_parse(eq + 1, (size_t)(end - eq - 1));
            if (bits < 0)
                return "501 5.5.4 Bad NOTIFY parameter";
            t->notify[rcpt_i] = bits;
        } else if (rcpt_i >= 0 && klen == 5 && strncasecmp(p, "ORCPT", 5) == 0 && eq) {
            myfree(t->orcpt[rcpt_i]);
            t->orcpt[rcpt_i] = mystrndup(eq + 1, (size_t)(end - eq - 1));
        } else {
            return "555 5.5.4 Unsupported parameter";
        }
        p = end;
    }
    return NULL;
}

/* read_data - the message up to the line ".", dot-unstuffed; 0, -1 at EOF */
static int read_data(FILE *in, struct buf *msg, long long limit, int *too_big)
{
    char line[SMTPD_LINE_MAX];
    int at_start = 1;

    buf_reset(msg);
    *too_big = 0;
    while (fgets(line, sizeof(line), in) != NULL) {
        size_t n = strlen(line);
        const char *p = line;
        if (at_start && (strcmp(line, ".\r\n") == 0 || strcmp(line, ".\n") == 0))
            return 0;
        if (at_start && line[0] == '.')
            p++, n--;
        at_start = n > 0 && p[n - 1] == '\n';
        if (limit > 0 && (long long)(msg->len + n) > limit)
            *too_big = 1;
        if (!*too_big)
            buf_append(msg, p, n);
    }
    return -1;
}

/* relay_smtpd - see relay.h */
int relay_smtpd(struct relay *r, FILE *in, FILE *out)
{
    char line[SMTPD_LINE_MAX];
    struct txn t;
    struct buf msg, why, text;
    struct spool_entry **kept = NULL;
    size_t nkept = 0, capkept = 0;
    long long limit = conf_size(r->conf, "relay.message_size_limit");
    int rv = EX_OK;

    memset(&t, 0, sizeof(t));
    buf_init(&msg, 8192);
    buf_init(&why, 128);
    buf_init(&text, 256);
    buf_setf(&text, "220 %s ESMTP sgrelay", r->domain);
    reply(out, buf_str(&text));
    while (fgets(line, sizeof(line), in) != NULL) {
        size_t n = strlen(line);
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        if (strncasecmp(line, "EHLO", 4) == 0 && (line[4] == ' ' || line[4] == 0)) {
            txn_reset(&t);
            buf_setf(
                &text,
                "250-%s\r\n250-PIPELINING\r\n250-SIZE %lld\r\n250-8BITMIME\r\n250-DSN\r\n"
                "250 ENHANCEDSTATUSCODES",
                r->domain, limit);
            reply(out, buf_str(&text));
        } else if (strncasecmp(line, "HELO", 4) == 0 &&
                   (line[4] == ' ' || line[4] == 0)) {
            txn_reset(&t);
            buf_setf(&text, "250 %s", r->domain);
            reply(out, buf_str(&text));
        } else if (strncasecmp(line, "MAIL FROM:", 10) == 0) {
            const char *rest, *err;
            char *path;
            if (t.active) {
                reply(out, "503 5.5.1 Error: nested MAIL command");
                continue;
            }
            if ((path = path_arg(line + 10, &rest)) == NULL) {
                reply(out, "501 5.1.7 Bad sender address syntax");
                continue;
            }
            t.sender = path;
            t.active = 1;
            if ((err = params(&t, rest, -1)) != NULL) {
                txn_reset(&t);
                reply(out, err);
                continue;
            }
            reply(out, "250 2.1.0 Ok");
        } else if (strncasecmp(line, "RCPT TO:", 8) == 0) {
            const char *rest, *err;
            char *path;
            struct buf norm;
            if (!t.active) {
                reply(out, "503 5.5.1 Error: need MAIL command");
                continue;
            }
            if (t.n >= SMTPD_RCPT_MAX) {
                reply(out, "452 4.5.3 Error: too many recipients");
                continue;
            }
            if ((path = path_arg(line + 8, &rest)) == NULL || *path == 0) {
                myfree(path);
                reply(out, "501 5.1.3 Bad recipient address syntax");
                continue;
            }
            buf_init(&norm, 128);
            if (strchr(path, '@') && address_normalize(path, &norm, &why) < 0) {
                buf_release(&norm);
                myfree(path);
                buf_setf(&text, "501 5.1.3 Bad recipient address syntax: %s",
                         buf_str(&why));
                reply(out, buf_str(&text));
                continue;
            }
            buf_release(&norm);
            t.rcpt = mygrow(t.rcpt, &t.cap, t.n, sizeof(char *));
            t.notify = myrealloc(t.notify, t.cap * sizeof(int));
            t.orcpt = myrealloc(t.orcpt, t.cap * sizeof(char *));
            t.rcpt[t.n] = path;
            t.notify[t.n] = 0;
            t.orcpt[t.n] = NULL;
            if ((err = params(&t, rest, (long)t.n)) != NULL) {
                myfree(path);
                myfree(t.orcpt[t.n]);
                reply(out, err);
                continue;
            }
            t.n++;
            reply(out, "250 2.1.5 Ok");
        } else if (strcasecmp(line, "DATA") == 0) {
            char id[SPOOL_ID_MAX];
            struct spool_entry *e = NULL;
            int too_big, code;
            if (!t.active || t.n == 0) {
                reply(out, t.active ? "554 5.5.1 Error: no valid recipients"
                                    : "503 5.5.1 Error: need RCPT command");
                continue;
            }
            reply(out, "354 End data with <CR><LF>.<CR><LF>");
            if (read_data(in, &msg, limit, &too_big) < 0) {
                rv = EX_DATAERR; /* the client went away in the middle */
                break;
            }
            if (too_big) {
                reply(out, "552 5.3.4 Error: message file too big");
                txn_reset(&t);
                continue;
            }
            t.o.sender = t.sender;
            t.o.origin = "smtp";
            t.o.envid = t.envid;
            t.o.rcpt_notify = t.notify;
            t.o.rcpt_orcpt = t.orcpt;
            code = relay_accept(r, &t.o, msg.data, msg.len, t.rcpt, t.n, id,
                                r->delivery == RELAY_QUEUE_ONLY ? NULL : &e, &why);
            if (code == 0) {
                buf_setf(&text, "250 2.0.0 Ok: queued as %s", id);
                if (e) {
                    kept = mygrow(kept, &capkept, nkept, sizeof(*kept));
                    kept[nkept++] = e;
                }
            } else if (code == EX_TEMPFAIL || code == EX_CANTCREAT || code == EX_IOERR) {
                buf_setf(&text, "451 4.3.0 Error: %s", buf_str(&why));
            } else {
                buf_setf(&text, "554 5.6.0 Error: %s", buf_str(&why));
            }
            reply(out, buf_str(&text));
            txn_reset(&t);
        } else if (strcasecmp(line, "RSET") == 0) {
            txn_reset(&t);
            reply(out, "250 2.0.0 Ok");
        } else if (strncasecmp(line, "NOOP", 4) == 0) {
            reply(out, "250 2.0.0 Ok");
        } else if (strncasecmp(line, "VRFY", 4) == 0) {
            reply(out, "252 2.0.0 Cannot VRFY user, but will accept message");
        } else if (strcasecmp(line, "QUIT") == 0) {
            reply(out, "221 2.0.0 Bye");
            break;
        } else {
            reply(out, "502 5.5.2 Error: command not recognized");
        }
    }
    txn_reset(&t);
    buf_release(&msg);
    buf_release(&why);
    buf_release(&text);
    relay_after_accept(r, kept, nkept);
    myfree(kept);
    return rv;
}
