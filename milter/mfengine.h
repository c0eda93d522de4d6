/*
 * mfengine - the filter side of the Sendmail milter protocol (version 6, as
 * Postfix and Sendmail speak it), serving sgmilter's callbacks.
 *
 * Why not libmilter: Debian's libmilter reads each packet with two poll()s
 * and two read()s, waits a millisecond for the next, and hands the
 * connection between its threads through a pipe and a condition variable:
 * about 200 system calls and several thread switches for one message of the
 * 30 packets Postfix sends, which Postfix itself writes in a handful of
 * writes.  Here a connection is one thread that reads what is there (every
 * packet that has arrived, in one read) and writes its answer, and the
 * changes before it, in one write.  The callbacks and their meaning are
 * libmilter's (the xxfi_* of smfiDesc; mfe_getpriv and the rest are its
 * smfi_getpriv and the rest), so the
 * adapter reads like any milter; the protocol's names (SMFIC_, SMFIR_,
 * SMFIP_, SMFIF_, SMFIM_) are the ones its documentation uses.
 *
 * Never here: a decision about mail.  The engine answers the MTA what the
 * callbacks say, and a callback's failure is the callback's to answer.
 */
#ifndef SG_MFENGINE_H
#define SG_MFENGINE_H

#include <stddef.h>

#include "buf.h"

/* Actions the filter may take (negotiated) */
#define SMFIF_ADDHDRS 0x001UL
#define SMFIF_CHGBODY 0x002UL
#define SMFIF_ADDRCPT 0x004UL
#define SMFIF_DELRCPT 0x008UL
#define SMFIF_CHGHDRS 0x010UL
#define SMFIF_QUARANTINE 0x020UL
#define SMFIF_CHGFROM 0x040UL
#define SMFIF_ADDRCPT_PAR 0x080UL
#define SMFIF_SETSYMLIST 0x100UL

/* Protocol steps: what the MTA need not send, and where it need not wait */
#define SMFIP_NOCONNECT 0x00000001UL
#define SMFIP_NOHELO 0x00000002UL
#define SMFIP_NOMAIL 0x00000004UL
#define SMFIP_NORCPT 0x00000008UL
#define SMFIP_NOBODY 0x00000010UL
#define SMFIP_NOHDRS 0x00000020UL
#define SMFIP_NOEOH 0x00000040UL
#define SMFIP_NR_HDR 0x00000080UL
#define SMFIP_NOUNKNOWN 0x00000100UL
#define SMFIP_NODATA 0x00000200UL
#define SMFIP_SKIP 0x00000400UL
#define SMFIP_RCPT_REJ 0x00000800UL
#define SMFIP_NR_CONN 0x00001000UL
#define SMFIP_NR_HELO 0x00002000UL
#define SMFIP_NR_MAIL 0x00004000UL
#define SMFIP_NR_RCPT 0x00008000UL
#define SMFIP_NR_DATA 0x00010000UL
#define SMFIP_NR_UNKN 0x00020000UL
#define SMFIP_NR_EOH 0x00040000UL
#define SMFIP_NR_BODY 0x00080000UL
#define SMFIP_HDR_LEADSPC 0x00100000UL

/* The steps a macro list (mfe_setsymlist) is for */
enum {
    SMFIM_CONNECT,
    SMFIM_HELO,
    SMFIM_ENVFROM,
    SMFIM_ENVRCPT,
    SMFIM_DATA,
    SMFIM_EOM,
    SMFIM_EOH,
    SMFIM_COUNT
};

/* A callback's answer, as libmilter's SMFIS_* */
typedef enum {
    MFE_CONTINUE,
    MFE_REJECT,
    MFE_DISCARD,
    MFE_ACCEPT,
    MFE_TEMPFAIL,
    MFE_NOREPLY, /* at a step the MTA awaits no reply for */
    MFE_SKIP,    /* at a body chunk: no more of the body */
} mfe_stat;

/* One MTA connection. */
struct mfe_ctx;

/*
 * The callbacks (any may be NULL).  Strings are the packet's, valid during
 * the call.  negotiate gets what the MTA offers (actions, steps) and sets
 * what the filter wants of them; MFE_REJECT ends the connection.
 */
struct mfe_callbacks {
    mfe_stat (*negotiate)(struct mfe_ctx *ctx, unsigned long actions, unsigned long steps,
                          unsigned long *want_actions, unsigned long *want_steps);
    mfe_stat (*envfrom)(struct mfe_ctx *ctx, char **argv);
    mfe_stat (*envrcpt)(struct mfe_ctx *ctx, char **argv);
    mfe_stat (*header)(struct mfe_ctx *ctx, char *name, char *value);
    mfe_stat (*eoh)(struct mfe_ctx *ctx);
    mfe_stat (*body)(struct mfe_ctx *ctx, unsigned char *data, size_t len);
    mfe_stat (*eom)(struct mfe_ctx *ctx);
    mfe_stat (*abort)(struct mfe_ctx *ctx);
    mfe_stat (*close)(struct mfe_ctx *ctx);
};

struct mfe_server;

/*
 * mfe_listen - listen on SPEC: "unix:PATH" or "local:PATH" (an old socket
 * file there is removed), "inet:PORT@HOST" or "inet6:PORT@HOST" (HOST
 * optional); NULL with why
 */
struct mfe_server *mfe_listen(const char *spec, struct buf *why);

/*
 * mfe_run - serve connections (a thread each, reused) with cb until
 * mfe_stop; then the connections still open are closed (their messages
 * aborted) and it returns 0, or -1 when it could not go on
 */
int mfe_run(struct mfe_server *srv, const struct mfe_callbacks *cb);

/* mfe_stop - make mfe_run return (from any thread, or a signal handler) */
void mfe_stop(struct mfe_server *srv);

/* mfe_free - close the socket (removing a unix socket's file) */
void mfe_free(struct mfe_server *srv);

/* The context, in the callbacks: as libmilter's smfi_ functions of the same names. */
void *mfe_getpriv(struct mfe_ctx *ctx);
void mfe_setpriv(struct mfe_ctx *ctx, void *priv);
/* the value of a macro the MTA sent ("i" and "{i}" are the same), or NULL */
const char *mfe_getsymval(struct mfe_ctx *ctx, const char *name);
/* the steps negotiated (SMFIP_*), 0 before */
unsigned long mfe_getsteps(struct mfe_ctx *ctx);
/* in negotiate: the macros wanted at a step; 0 or -1 */
int mfe_setsymlist(struct mfe_ctx *ctx, int step, const char *macros);
/* the text of the next MFE_REJECT or MFE_TEMPFAIL; 0 or -1 (malformed) */
int mfe_setreply(struct mfe_ctx *ctx, const char *code, const char *xcode,
                 const char *text);
/* in eom, and only when negotiated: the changes; 0 or -1 */
int mfe_addheader(struct mfe_ctx *ctx, const char *name, const char *value);
int mfe_insheader(struct mfe_ctx *ctx, int index, const char *name, const char *value);
int mfe_chgheader(struct mfe_ctx *ctx, const char *name, int index, const char *value);
int mfe_delrcpt(struct mfe_ctx *ctx, const char *rcpt);
/* the envelope sender replaced ("<addr>"), without ESMTP arguments */
int mfe_chgfrom(struct mfe_ctx *ctx, const char *from);
/* the whole new body (CRLF lines), after every other change */
int mfe_replacebody(struct mfe_ctx *ctx, const char *body, size_t len);

#endif
