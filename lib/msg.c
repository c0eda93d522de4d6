/*
 * msg - diagnostics to stderr or syslog, see msg.h.
 *
 * Each report is formatted into one buffer and written with one write(2) or
 * one syslog(3) call, so that reports of concurrent threads or processes do
 * not interleave.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sysexits.h>
#include <unistd.h>

#include "msg.h"

static const char *msg_name = "sendguard";
static enum msg_dest msg_to = MSG_STDERR;
static int msg_level;

/* msg_open - choose the program name and destination */
void msg_open(const char *progname, enum msg_dest dest)
{
    const char *slash = strrchr(progname, '/');

    msg_name = slash ? slash + 1 : progname;
    msg_to = dest;
    if (dest == MSG_SYSLOG)
        openlog(msg_name, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

/* msg_progname - the name reports carry */
const char *msg_progname(void)
{
    return msg_name;
}

/* msg_set_verbose - enable msg_debug output at level > 0 */
void msg_set_verbose(int level)
{
    msg_level = level;
}

/* msg_verbose - the current verbosity */
int msg_verbose(void)
{
    return msg_level;
}

/* msg_vreport - format and emit one report */
static void msg_vreport(int prio, const char *tag, const char *fmt, va_list ap)
{
    char text[2048];
    char line[2200];
    int len;

    vsnprintf(text, sizeof(text), fmt, ap); /* glibc expands %m here */
    if (msg_to == MSG_SYSLOG) {
        syslog(prio, "%s%s", tag, text);
        return;
    }
    len = snprintf(line, sizeof(line), "%s: %s%s\n", msg_name, tag, text);
    if (len < 0)
        return;
    if ((size_t)len >= sizeof(line)) {
        len = sizeof(line) - 1;
        line[len - 1] = '\n';
    }
    if (write(STDERR_FILENO, line, (size_t)len) < 0) {
        /* nowhere left to report to */
    }
}

#define MSG_BODY(prio, tag)                                                              \
    do {                                                                                 \
        va_list ap;                                                                      \
        int saved = errno;                                                               \
        va_start(ap, fmt);                                                               \
        errno = saved;                                                                   \
        msg_vreport(prio, tag, fmt, ap);                                                 \
        va_end(ap);                                                                      \
        errno = saved;                                                                   \
    } while (0)

/* msg_debug - report at verbose level only */
void msg_debug(const char *fmt, ...)
{
    if (msg_level > 0)
        MSG_BODY(LOG_DEBUG, "debug: ");
}

/* msg_info - informational report */
void msg_info(const char *fmt, ...)
{
    MSG_BODY(LOG_INFO, "");
}

/* msg_warn - something is wrong but work goes on */
void msg_warn(const char *fmt, ...)
{
    MSG_BODY(LOG_WARNING, "warning: ");
}

/* msg_error - an operation failed */
void msg_error(const char *fmt, ...)
{
    MSG_BODY(LOG_ERR, "error: ");
}

/* msg_fatal - the environment does not let us go on */
void msg_fatal(const char *fmt, ...)
{
    MSG_BODY(LOG_CRIT, "fatal: ");
    exit(EX_OSERR);
}

/* msg_fatal_status - as msg_fatal, with a chosen <sysexits.h> status */
void msg_fatal_status(int status, const char *fmt, ...)
{
    MSG_BODY(LOG_CRIT, "fatal: ");
    exit(status);
}

/* msg_panic - a bug: report and abort */
void msg_panic(const char *fmt, ...)
{
    MSG_BODY(LOG_CRIT, "panic: ");
    abort();
}
