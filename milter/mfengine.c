/*
 * mfengine - the filter side of the milter protocol (see mfengine.h).
 *
 * The wire: each packet is a 4-byte length (network order, counting what
 * follows), a command byte and its data.  The MTA sends commands (SMFIC_*)
 * and macro packets; the filter answers the steps the MTA waits at with one
 * reply (SMFIR_*), at the end of the message after its changes.
 *
 * Threads: the idle workers wait in accept() (the kernel wakes one per
 * connection); a worker serves its connection to the end and waits again,
 * and a new one starts when the last idle one takes a connection.  No
 * hand-over between threads: a connection costs its accept and its reads.  Each
 * connection is read into one buffer, every complete packet in it handled in turn, and
 * what is to be answered written just before the next read (the MTA sends nothing more
 * until it has the answer it waits for).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"
#include "mfengine.h"
#include "msg.h"
#include "mymalloc.h"

/* Commands from the MTA */
#define SMFIC_ABORT 'A'
#define SMFIC_BODY 'B'
#define SMFIC_CONNECT 'C'
#define SMFIC_MACRO 'D'
#define SMFIC_BODYEOB 'E'
#define SMFIC_HELO 'H'
#define SMFIC_QUIT_NC 'K'
#define SMFIC_HEADER 'L'
#define SMFIC_MAIL 'M'
#define SMFIC_EOH 'N'
#define SMFIC_OPTNEG 'O'
#define SMFIC_QUIT 'Q'
#define SMFIC_RCPT 'R'
#define SMFIC_DATA 'T'
#define SMFIC_UNKNOWN 'U'

/* Replies to it */
#define SMFIR_DELRCPT '-'
#define SMFIR_CHGFROM 'e'
#define SMFIR_REPLBODY 'b'
#define SMFIR_ACCEPT 'a'
#define SMFIR_CONTINUE 'c'
#define SMFIR_DISCARD 'd'
#define SMFIR_ADDHEADER 'h'
#define SMFIR_INSHEADER 'i'
#define SMFIR_CHGHEADER 'm'
#define SMFIR_REJECT 'r'
#define SMFIR_SKIP 's'
#define SMFIR_TEMPFAIL 't'
#define SMFIR_REPLYCODE 'y'

#define MFE_VERSION 6
/* the largest packet taken: a body chunk of SMFIP_MDS_1M, with room */
#define MFE_MAX_PACKET (1024 * 1024 + 64)
/* how long a connection may be silent, or not read (libmilter's default, 2 h 10 s) */
#define MFE_TIMEOUT 7210
/* idle workers kept for the next connections */
#define MFE_MAX_IDLE 64
/* macro packets are kept per step they came for; the slots' steps */
static const char macro_steps[] = "UCHMRTLNBE"; /* searched from the end */
#define MFE_SLOTS (sizeof(macro_steps) - 1)
/* the steps of a message, whose macros go when it ends */
static const char message_steps[] = "UMRTLNBE";

struct mfe_ctx {
    int fd;
    const struct mfe_callbacks *cb;
    void *priv;
    unsigned long actions, steps; /* negotiated */
    struct buf in;                /* read, not yet handled from pos on */
    size_t pos;
    struct buf out; /* to write before the next read */
    struct buf macros[MFE_SLOTS];
    char *symlist[SMFIM_COUNT];
    struct buf reply; /* smfi_setreply's, for the next refusal */
    int in_msg;       /* between MAIL and the end or an abort */
    int in_eom;       /* in the eom callback: changes may be made */
    struct mfe_ctx *next, *prev;
};

struct mfe_server {
    int fd;
    char *path; /* a unix socket's file */
    int stop[2];
    const struct mfe_callbacks *cb;
    pthread_mutex_t lock;
    pthread_cond_t gone;
    unsigned workers, idle; /* idle: in accept() or about to be */
    int stopping;
    struct mfe_ctx *conns; /* being served */
};

/* put32 - a number in network order */
static void put32(struct buf *b, uint32_t v)
{
    uint32_t n = htonl(v);
    buf_append(b, &n, 4);
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t n;
    memcpy(&n, p, 4);
    return ntohl(n);
}

/* open_packet - a packet to the MTA begun (close_packet sets its length) */
static size_t open_packet(struct mfe_ctx *c, int cmd)
{
    size_t start = c->out.len;

    put32(&c->out, 0);
    buf_putc(&c->out, cmd);
    return start;
}

static void close_packet(struct mfe_ctx *c, size_t start)
{
    uint32_t n = htonl((uint32_t)(c->out.len - start - 4));
    memcpy(c->out.data + start, &n, 4);
}

/* packet - one packet to the MTA: the command and its data */
static void packet(struct mfe_ctx *c, int cmd, const void *data, size_t len)
{
    size_t start = open_packet(c, cmd);

    if (len)
        buf_append(&c->out, data, len);
    close_packet(c, start);
}

/* slot - the macro slot of a step's command letter, or -1 */
static int slot(int step)
{
    const char *p = step ? strchr(macro_steps, step) : NULL;
    return p ? (int)(p - macro_steps) : -1;
}

static void clear_macros(struct mfe_ctx *c, const char *steps)
{
    for (const char *s = steps; *s; s++)
        buf_reset(&c->macros[slot(*s)]);
}

/* same_macro - "i" and "{i}" are one macro */
static int same_macro(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);

    if (la > 2 && a[0] == '{' && a[la - 1] == '}')
        a++, la -= 2;
    if (lb > 2 && b[0] == '{' && b[lb - 1] == '}')
        b++, lb -= 2;
    return la == lb && memcmp(a, b, la) == 0;
}

const char *mfe_getsymval(struct mfe_ctx *c, const char *name)
{
    /* the latest step's value first */
    for (int i = (int)MFE_SLOTS - 1; i >= 0; i--) {
        const struct buf *m = &c->macros[i];
        size_t p = 0;
        while (p < m->len) {
            const char *n = m->data + p, *v = n + strlen(n) + 1;
            if (v >= m->data + m->len)
                break;
            if (same_macro(n, name))
                return v;
            p = (size_t)(v - m->data) + strlen(v) + 1;
        }
    }
    return NULL;
}

void *mfe_getpriv(struct mfe_ctx *c)
{
    return c->priv;
}

void mfe_setpriv(struct mfe_ctx *c, void *priv)
{
    c->priv = priv;
}

unsigned long mfe_getsteps(struct mfe_ctx *c)
{
    return c->steps;
}

int mfe_setsymlist(struct mfe_ctx *c, int step, const char *macros)
{
    if (step < 0 || step >= SMFIM_COUNT || macros == NULL || c->symlist[step])
        return -1;
    c->symlist[step] = mystrdup(macros);
    return 0;
}

int mfe_setreply(struct mfe_ctx *c, const char *code, const char *xcode, const char *text)
{
    if (code == NULL || strlen(code) != 3 || (code[0] != '4' && code[0] != '5') ||
        strspn(code, "0123456789") != 3 || (xcode && xcode[0] != code[0]) ||
        (text && strpbrk(text, "\r\n")))
        return -1;
    buf_set(&c->reply, code);
    if (xcode)
        buf_printf(&c->reply, " %s", xcode);
    if (text) {
        buf_putc(&c->reply, ' ');
        /* Sendmail reads the text as a format: a '%' is "%%" */
        for (const char *t = text; *t; t++) {
            if (*t == '%')
                buf_putc(&c->reply, '%');
            buf_putc(&c->reply, *t);
        }
    }
    return 0;
}

/* change - a change to the message: only in eom, and only a negotiated one */
static int change(struct mfe_ctx *c, unsigned long action, int cmd, int index,
                  const char *s1, const char *s2)
{
    size_t start;

    if (!c->in_eom || !(c->actions & action) || s1 == NULL || *s1 == 0)
        return -1;
    start = open_packet(c, cmd);
    if (index >= 0)
        put32(&c->out, (uint32_t)index);
    buf_append(&c->out, s1, strlen(s1) + 1);
    if (s2)
        buf_append(&c->out, s2, strlen(s2) + 1);
    close_packet(c, start);
    return 0;
}

int mfe_addheader(struct mfe_ctx *c, const char *name, const char *value)
{
    return value ? change(c, SMFIF_ADDHDRS, SMFIR_ADDHEADER, -1, name, value) : -1;
}

int mfe_insheader(struct mfe_ctx *c, int index, const char *name, const char *value)
{
    return value && index >= 0
               ? change(c, SMFIF_ADDHDRS, SMFIR_INSHEADER, index, name, value)
               : -1;
}

int mfe_chgheader(struct mfe_ctx *c, const char *name, int index, const char *value)
{
    /* an empty value removes the field */
    return index >= 0 ? change(c, SMFIF_CHGHDRS, SMFIR_CHGHEADER, index, name,
                               value ? value : "")
                      : -1;
}

int mfe_replacebody(struct mfe_ctx *c, const char *body, size_t len)
{
    /* in chunks of at most 64 KiB less one, as MTAs send bodies */
    if (!c->in_eom || !(c->actions & SMFIF_CHGBODY))
        return -1;
    do {
        size_t n = len > 65535 ? 65535 : len;
        packet(c, SMFIR_REPLBODY, body, n);
        body += n;
        len -= n;
    } while (len > 0);
    return 0;
}

int mfe_chgfrom(struct mfe_ctx *c, const char *from)
{
    return change(c, SMFIF_CHGFROM, SMFIR_CHGFROM, -1, from, NULL);
}

int mfe_delrcpt(struct mfe_ctx *c, const char *rcpt)
{
    return change(c, SMFIF_DELRCPT, SMFIR_DELRCPT, -1, rcpt, NULL);
}

/*
 * answer - the reply to a step the MTA waits at: the callback's answer,
 * with the text smfi_setreply gave a refusal
 */
static void answer(struct mfe_ctx *c, mfe_stat st)
{
    int cmd;

    switch (st) {
    case MFE_REJECT:
    case MFE_TEMPFAIL:
        if (c->reply.len && c->reply.data[0] == (st == MFE_REJECT ? '5' : '4')) {
            packet(c, SMFIR_REPLYCODE, c->reply.data, c->reply.len + 1);
            buf_reset(&c->reply);
            return;
        }
        cmd = st == MFE_REJECT ? SMFIR_REJECT : SMFIR_TEMPFAIL;
        break;
    case MFE_ACCEPT:
        cmd = SMFIR_ACCEPT;
        break;
    case MFE_DISCARD:
        cmd = SMFIR_DISCARD;
        break;
    case MFE_SKIP:
        cmd = c->steps & SMFIP_SKIP ? SMFIR_SKIP : SMFIR_CONTINUE;
        break;
    default:
        cmd = SMFIR_CONTINUE;
        break;
    }
    buf_reset(&c->reply);
    packet(c, cmd, NULL, 0);
}

/*
 * step - after a callback (or none): the answer, when the MTA waits for
 * one at this step; a message refused or accepted is over
 */
static void step(struct mfe_ctx *c, unsigned long no_reply, mfe_stat st)
{
    if (!(c->steps & no_reply))
        answer(c, st);
    if (st == MFE_REJECT || st == MFE_TEMPFAIL || st == MFE_DISCARD || st == MFE_ACCEPT)
        buf_reset(&c->reply);
}

/* strings - the NUL-terminated strings of data as an argv; -1 when malformed */
static int strings(char *data, size_t len, char ***argv, size_t *n)
{
    size_t cap = 0;

    *n = 0;
    *argv = NULL;
    if (len == 0 || data[len - 1] != 0)
        return -1;
    for (size_t p = 0; p < len; p += strlen(data + p) + 1) {
        *argv = mygrow(*argv, &cap, *n + 1, sizeof(char *));
        (*argv)[(*n)++] = data + p;
    }
    (*argv)[*n] = NULL;
    return 0;
}

/* end_message - the message is over: its macros go */
static void end_message(struct mfe_ctx *c)
{
    c->in_msg = 0;
    clear_macros(c, message_steps);
}

/* negotiate - SMFIC_OPTNEG; -1 ends the connection */
static int negotiate(struct mfe_ctx *c, const unsigned char *d, size_t len)
{
    unsigned long version, actions, steps, want_a = 0, want_s = 0;

    if (len < 12) {
        msg_warn("milter protocol: a short option negotiation (%zu bytes)", len);
        return -1;
    }
    version = get32(d);
    actions = get32(d + 4);
    if (version < 2) {
        msg_warn("milter protocol: the MTA speaks version %lu; 2 or later is needed",
                 version);
        return -1;
    }
    steps = get32(d + 8);
    for (int i = 0; i < SMFIM_COUNT; i++) {
        myfree(c->symlist[i]);
        c->symlist[i] = NULL;
    }
    if (c->cb->negotiate &&
        c->cb->negotiate(c, actions, steps, &want_a, &want_s) == MFE_REJECT)
        return -1;
    if ((want_a & ~actions) || (want_s & ~steps)) {
        msg_error("milter protocol: the filter wants actions 0x%lx, steps 0x%lx of the "
                  "MTA's 0x%lx, 0x%lx",
                  want_a, want_s, actions, steps);
        return -1;
    }
    c->actions = want_a;
    c->steps = want_s;
    size_t start = open_packet(c, SMFIC_OPTNEG);
    /* an older MTA's version; a newer MTA gets this engine's */
    put32(&c->out, (uint32_t)(version < MFE_VERSION ? version : MFE_VERSION));
    put32(&c->out, (uint32_t)want_a);
    put32(&c->out, (uint32_t)want_s);
    if (want_a & SMFIF_SETSYMLIST)
        for (int i = 0; i < SMFIM_COUNT; i++)
            if (c->symlist[i]) {
                put32(&c->out, (uint32_t)i);
                buf_append(&c->out, c->symlist[i], strlen(c->symlist[i]) + 1);
            }
    close_packet(c, start);
    return 0;
}

/* args_step - MAIL or RCPT: the callback with the arguments */
static mfe_stat args_step(struct mfe_ctx *c, mfe_stat (*fn)(struct mfe_ctx *, char **),
                          char *d, size_t len, int *bad)
{
    char **argv;
    size_t n;
    mfe_stat st = MFE_CONTINUE;

    if (strings(d, len, &argv, &n) < 0) {
        *bad = 1;
        return MFE_CONTINUE;
    }
    if (fn)
        st = fn(c, argv);
    myfree(argv);
    return st;
}

/*
 * handle - one packet; -1 ends the connection (a QUIT, a protocol error);
 * 1 a new connection follows on this one (QUIT_NC)
 */
static int handle(struct mfe_ctx *c, int cmd, char *d, size_t len)
{
    const struct mfe_callbacks *cb = c->cb;
    mfe_stat st = MFE_CONTINUE;
    int bad = 0;

    switch (cmd) {
    case SMFIC_OPTNEG:
        return negotiate(c, (unsigned char *)d, len);
    case SMFIC_MACRO:
        if (len == 0 || (len > 1 && d[len - 1] != 0)) {
            bad = 1;
            break;
        }
        if (slot(d[0]) < 0)
            return 0; /* a step this engine does not know: nobody asks for them */
        buf_reset(&c->macros[slot(d[0])]);
        buf_append(&c->macros[slot(d[0])], d + 1, len - 1);
        return 0;
    case SMFIC_CONNECT:
    case SMFIC_HELO:
    case SMFIC_DATA:
    case SMFIC_UNKNOWN:
        /* steps without a callback (the filter asks not to be sent them) */
        step(c,
             cmd == SMFIC_CONNECT ? SMFIP_NR_CONN
             : cmd == SMFIC_HELO  ? SMFIP_NR_HELO
             : cmd == SMFIC_DATA  ? SMFIP_NR_DATA
                                  : SMFIP_NR_UNKN,
             MFE_CONTINUE);
        return 0;
    case SMFIC_MAIL:
        if (c->in_msg) { /* a MAIL without the last message's end */
            if (cb->abort)
                cb->abort(c);
            clear_macros(c, "RTLNBE"); /* this MAIL's own came before it */
        }
        c->in_msg = 1;
        st = args_step(c, cb->envfrom, d, len, &bad);
        if (!bad)
            step(c, SMFIP_NR_MAIL, st);
        break;
    case SMFIC_RCPT:
        st = args_step(c, cb->envrcpt, d, len, &bad);
        if (!bad)
            step(c, SMFIP_NR_RCPT, st);
        break;
    case SMFIC_HEADER: {
        char **argv;
        size_t n;
        if (strings(d, len, &argv, &n) < 0 || n != 2) {
            myfree(argv);
            bad = 1;
            break;
        }
        if (cb->header)
            st = cb->header(c, argv[0], argv[1]);
        myfree(argv);
        step(c, SMFIP_NR_HDR, st);
        return 0;
    }
    case SMFIC_EOH:
        if (cb->eoh)
            st = cb->eoh(c);
        step(c, SMFIP_NR_EOH, st);
        return 0;
    case SMFIC_BODY:
        if (cb->body)
            st = cb->body(c, (unsigned char *)d, len);
        step(c, SMFIP_NR_BODY, st);
        return 0;
    case SMFIC_BODYEOB:
        /* a last body chunk may come with the end */
        if (len && cb->body)
            st = cb->body(c, (unsigned char *)d, len);
        if (st == MFE_CONTINUE || st == MFE_SKIP || st == MFE_NOREPLY) {
            c->in_eom = 1;
            st = cb->eom ? cb->eom(c) : MFE_CONTINUE;
            c->in_eom = 0;
        }
        answer(c, st == MFE_NOREPLY || st == MFE_SKIP ? MFE_CONTINUE : st);
        end_message(c);
        return 0;
    case SMFIC_ABORT:
        if (cb->abort)
            cb->abort(c);
        end_message(c);
        buf_reset(&c->reply);
        return 0;
    case SMFIC_QUIT_NC:
        if (c->in_msg && cb->abort)
            cb->abort(c);
        if (cb->close)
            cb->close(c);
        c->priv = NULL;
        end_message(c);
        clear_macros(c, macro_steps);
        return 1;
    case SMFIC_QUIT:
        return -1;
    default:
        msg_warn("milter protocol: unknown command 0x%02x (%zu bytes)", cmd & 0xff, len);
        return -1;
    }
    if (bad) {
        msg_warn("milter protocol: a malformed '%c' packet (%zu bytes)", cmd, len);
        return -1;
    }
    return 0;
}

/* flush - write what is to be answered; -1 when the MTA is gone */
static int flush(struct mfe_ctx *c)
{
    int rc = 0;

    if (c->out.len && fd_write(c->fd, c->out.data, c->out.len) < 0) {
        if (errno != EPIPE && errno != ECONNRESET)
            msg_warn("milter connection: write: %m");
        rc = -1;
    }
    buf_reset(&c->out);
    return rc;
}

/* session - one MTA connection, to its end */
static void session(struct mfe_ctx *c)
{
    int done = 0;

    while (!done) {
        size_t avail = c->in.len - c->pos;
        uint32_t plen;

        if (avail >= 5 && (plen = get32((unsigned char *)c->in.data + c->pos)) >= 1 &&
            plen <= MFE_MAX_PACKET && avail >= 4 + (size_t)plen) {
            char *p = c->in.data + c->pos;
            int cmd = (unsigned char)p[4];
            c->pos += 4 + plen;
            switch (handle(c, cmd, p + 5, plen - 1)) {
            case -1:
                done = 1;
                break;
            case 1:
                break;
            }
            continue;
        }
        if (avail >= 4 && ((plen = get32((unsigned char *)c->in.data + c->pos)) < 1 ||
                           plen > MFE_MAX_PACKET)) {
            msg_warn("milter protocol: a packet of %lu bytes", (unsigned long)plen);
            break;
        }
        /* the rest of a packet: compact, make room, answer, read */
        if (c->pos) {
            memmove(c->in.data, c->in.data + c->pos, avail);
            buf_truncate(&c->in, avail);
            c->pos = 0;
        }
        buf_reserve(&c->in, avail >= 4 ? get32((unsigned char *)c->in.data) + 4 : 16384);
        if (flush(c) < 0)
            break;
        ssize_t n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                msg_warn("milter connection: silent for %d s: closed", MFE_TIMEOUT);
            else if (n < 0 && errno != ECONNRESET)
                msg_warn("milter connection: read: %m");
            break;
        }
        c->in.len += (size_t)n;
        c->in.data[c->in.len] = 0;
    }
    flush(c);
    if (c->in_msg && c->cb->abort)
        c->cb->abort(c);
    if (c->cb->close)
        c->cb->close(c);
}

static struct mfe_ctx *ctx_new(int fd, const struct mfe_callbacks *cb)
{
    struct mfe_ctx *c = mycalloc(1, sizeof(*c));

    c->fd = fd;
    c->cb = cb;
    buf_init(&c->in, 65536);
    buf_init(&c->out, 1024);
    buf_init(&c->reply, 128);
    for (size_t i = 0; i < MFE_SLOTS; i++)
        buf_init(&c->macros[i], 64);
    return c;
}

static void ctx_free(struct mfe_ctx *c)
{
    buf_release(&c->in);
    buf_release(&c->out);
    buf_release(&c->reply);
    for (size_t i = 0; i < MFE_SLOTS; i++)
        buf_release(&c->macros[i]);
    for (int i = 0; i < SMFIM_COUNT; i++)
        myfree(c->symlist[i]);
    myfree(c);
}

static void spawn(struct mfe_server *s);

/* worker - take a connection and serve it, again and again; gone when
 * stopping or idle enough */
static void *worker(void *arg)
{
    struct mfe_server *s = arg;

    for (;;) {
        int fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
        pthread_mutex_lock(&s->lock);
        if (s->stopping) {
            if (fd >= 0)
                close(fd);
            break;
        }
        if (fd < 0) {
            int e = errno;
            pthread_mutex_unlock(&s->lock);
            if (e != EINTR && e != EAGAIN && e != ECONNABORTED) {
                /* out of descriptors or memory: let connections end */
                struct timespec ts = {0, 100 * 1000 * 1000};
                errno = e;
                msg_warn("milter: accept: %m");
                nanosleep(&ts, NULL);
            }
            continue;
        }
        if (--s->idle == 0)
            spawn(s); /* the next connection's */
        struct mfe_ctx *c = ctx_new(fd, s->cb);
        if ((c->next = s->conns) != NULL)
            c->next->prev = c;
        s->conns = c;
        pthread_mutex_unlock(&s->lock);

        struct timeval tv = {MFE_TIMEOUT, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)); /* an MTA not reading */
        session(c);

        pthread_mutex_lock(&s->lock);
        if (c->prev)
            c->prev->next = c->next;
        else
            s->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        close(fd);
        ctx_free(c);
        if (s->stopping || s->idle >= MFE_MAX_IDLE) {
            s->idle++; /* counted out below */
            break;
        }
        s->idle++;
        pthread_mutex_unlock(&s->lock);
    }
    s->idle--;
    s->workers--;
    pthread_cond_broadcast(&s->gone);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* spawn - one more worker (under the lock) */
static void spawn(struct mfe_server *s)
{
    pthread_t th;
    pthread_attr_t attr;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, worker, s) == 0) {
        s->workers++;
        s->idle++;
    } else {
        msg_warn("cannot start a thread for milter connections: %m");
    }
    pthread_attr_destroy(&attr);
}

/* parse_inet - "PORT@HOST" (HOST optional) as an address to bind */
static struct addrinfo *parse_inet(const char *rest, int family, struct buf *why)
{
    struct addrinfo hints, *ai = NULL;
    const char *at = strchr(rest, '@');
    char *port = at ? mystrndup(rest, (size_t)(at - rest)) : mystrdup(rest);
    const char *node = at && at[1] ? at + 1 : NULL;
    int rc = 0;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if (*port == 0 || (rc = getaddrinfo(node, port, &hints, &ai)) != 0) {
        buf_error(why, "cannot listen on port %s of %s: %s", port, node ? node : "any",
                  *port ? gai_strerror(rc) : "no port");
        ai = NULL;
    }
    myfree(port);
    return ai;
}

struct mfe_server *mfe_listen(const char *spec, struct buf *why)
{
    struct mfe_server *s = mycalloc(1, sizeof(*s));
    const char *colon = strchr(spec, ':');
    size_t tlen = colon ? (size_t)(colon - spec) : 0;
    const char *rest = colon ? colon + 1 : spec;
    int one = 1;

    s->fd = s->stop[0] = s->stop[1] = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->gone, NULL);
    if (!colon || (tlen == 4 && strncmp(spec, "unix", 4) == 0) ||
        (tlen == 5 && strncmp(spec, "local", 5) == 0)) {
        struct sockaddr_un sun;
        if (*rest == 0 || strlen(rest) >= sizeof(sun.sun_path)) {
            buf_error(why, "milter socket %s: not a socket path", spec);
            goto fail;
        }
        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;
        strcpy(sun.sun_path, rest);
        struct stat sb;
        if (lstat(rest, &sb) == 0 && S_ISSOCK(sb.st_mode))
            unlink(rest); /* a socket left by an earlier run */
        if ((s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
            bind(s->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
            buf_error(why, "cannot listen on %s: %s", spec, strerror(errno));
            goto fail;
        }
        s->path = mystrdup(rest);
    } else if ((tlen == 4 && strncmp(spec, "inet", 4) == 0) ||
               (tlen == 5 && strncmp(spec, "inet6", 5) == 0)) {
        struct addrinfo *ai = parse_inet(rest, tlen == 4 ? AF_INET : AF_INET6, why);
        if (ai == NULL)
            goto fail;
        if ((s->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
            setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(s->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            buf_error(why, "cannot listen on %s: %s", spec, strerror(errno));
            freeaddrinfo(ai);
            goto fail;
        }
        freeaddrinfo(ai);
    } else {
        buf_error(why,
                  "milter socket %s: not unix:PATH, local:PATH, inet:PORT@HOST or "
                  "inet6:PORT@HOST",
                  spec);
        goto fail;
    }
    if (listen(s->fd, SOMAXCONN) < 0) {
        buf_error(why, "cannot listen on %s: %s", spec, strerror(errno));
        goto fail;
    }
    if (pipe2(s->stop, O_CLOEXEC | O_NONBLOCK) < 0) {
        buf_error(why, "cannot make a pipe: %s", strerror(errno));
        goto fail;
    }
    return s;
fail:
    mfe_free(s);
    return NULL;
}

void mfe_stop(struct mfe_server *s)
{
    int saved = errno;

    if (write(s->stop[1], "s", 1) < 0) {
        /* full: a stop is pending already */
    }
    errno = saved;
}

int mfe_run(struct mfe_server *s, const struct mfe_callbacks *cb)
{
    struct pollfd pfd = {s->stop[0], POLLIN, 0};
    struct timespec until;

    s->cb = cb;
    signal(SIGPIPE, SIG_IGN); /* an MTA gone is a write's error, not the end */
    pthread_mutex_lock(&s->lock);
    spawn(s);
    if (s->workers == 0) {
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    pthread_mutex_unlock(&s->lock);
    while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
        ;

    /* stopping: no more connections; those open are closed, their messages aborted */
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    shutdown(s->fd, SHUT_RDWR); /* wakes the accept()s */
    for (struct mfe_ctx *c = s->conns; c; c = c->next)
        shutdown(c->fd, SHUT_RDWR);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    while (s->workers > 0 &&
           pthread_cond_timedwait(&s->gone, &s->lock, &until) != ETIMEDOUT)
        ;
    if (s->workers > 0)
        msg_warn("milter: %u thread(s) still busy at the stop", s->workers);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

void mfe_free(struct mfe_server *s)
{
    int busy;

    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    busy = s->workers > 0;
    pthread_mutex_unlock(&s->lock);
    if (s->fd >= 0)
        close(s->fd);
    if (s->path)
        unlink(s->path);
    for (int i = 0; i < 2; i++)
        if (s->stop[i] >= 0)
            close(s->stop[i]);
    myfree(s->path);
    s->path = NULL;
    s->fd = s->stop[0] = s->stop[1] = -1;
    if (busy)
        return; /* a worker still busy uses the rest: the process is ending */
    myfree(s);
}
