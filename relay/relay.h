/*
 * relay - what the parts of sgrelay share: the sendmail command line turned
 * into a request, acceptance into the spool, the queue runner and delivery
 * with libESMTP.  Decisions about mail live in lib/; this folder translates
 * the command line and SMTP into lib/ calls and back.
 */
#ifndef SG_RELAY_H
#define SG_RELAY_H

#include <stdio.h>
#include <sys/types.h>

#include "buf.h"
#include "conf.h"
#include "spool.h"

enum relay_delivery { RELAY_BACKGROUND, RELAY_INTERACTIVE, RELAY_QUEUE_ONLY };

/* One invocation's settings, from the command line and the configuration. */
struct relay {
    const struct conf *conf;
    struct spool *spool;
    const char *progname;
    char *domain;   /* relay.domain, or this host's name */
    char *user;     /* the invoking user's login */
    char *gecos;    /* the invoking user's full name, or NULL */
    uid_t uid;      /* the invoking user */
    int privileged; /* root or the spool's owner: may run and see the whole queue */
    enum relay_delivery delivery;
    int verbose;
    struct spool_entry **bounces; /* queued by relay_bounce, locked, to send next */
    size_t nbounces, capbounces;
    struct store *store; /* the stores, for one relay_deliver (see relay_store) */
};

/* One message's envelope options as the command line or MAIL/RCPT give them. */
struct relay_opts {
    const char *sender;      /* -f/-r; NULL: the invoking user */
    const char *fullname;    /* -F */
    int from_header_rcpts;   /* -t */
    int dot_ends;            /* without -i: a line "." ends the input */
    int notify;              /* -N */
    int ret;                 /* -R */
    const char *envid;       /* -V */
    int body_8bit;           /* -B8BITMIME */
    const char *origin;      /* "sendmail" or "smtp" */
    const int *rcpt_notify;  /* per given recipient (-bs), or NULL: notify */
    char *const *rcpt_orcpt; /* per given recipient (-bs), or NULL */
};

/*
 * relay_accept - take one message (raw bytes as the caller wrote them) with
 * these recipients (plus those of the header with -t) into the spool.  0
 * with id filled, or a <sysexits.h> code with why filled (nothing queued).
 * With keep not NULL, the entry is returned locked for delivery.
 */
int relay_accept(struct relay *r, const struct relay_opts *o, const char *raw, size_t len,
                 char *const *rcpts, size_t nrcpts, char id[SPOOL_ID_MAX],
                 struct spool_entry **keep, struct buf *why);

/* relay_read_input - read a message from fd as sendmail does (-i/-oi) */
int relay_read_input(int fd, int dot_ends, long long limit, struct buf *out,
                     struct buf *why);

/* relay_smtpd - the -bs dialogue on in/out; returns an exit code */
int relay_smtpd(struct relay *r, FILE *in, FILE *out);

/*
 * relay_deliver - deliver these locked entries (they are closed or removed
 * here) over as few connections as the configuration allows.
 */
void relay_deliver(struct relay *r, struct spool_entry **entries, size_t n);

/* relay_after_accept - deliver entries just accepted, as -odi/-odb say */
void relay_after_accept(struct relay *r, struct spool_entry **entries, size_t n);

/* relay_run_queue - one queue run; all: ignore the retry times; exit code */
int relay_run_queue(struct relay *r, int all);

/* relay_daemon - run the queue every interval seconds until TERM */
int relay_daemon(struct relay *r, long long interval);

/* relay_list - the queue as mailq shows it; exit code */
int relay_list(struct relay *r, FILE *out);

/* relay_expired - bounce what has outlived spool.lifetime; 1 if it bounced */
int relay_bounce(struct relay *r, struct spool_entry *e, const size_t *idx, size_t n,
                 const char *const *diagnostics, const char *remote);

#endif
