/*
 * msg - the one diagnostics ladder of sendguard.
 *
 * msg_info/msg_warn/msg_error report and return; msg_fatal reports a problem
 * of the environment and exits with a <sysexits.h> code; msg_panic reports a
 * bug and aborts.  Output goes to syslog (facility mail) or to stderr, as
 * chosen by msg_open().  Formats are printf-checked; "%m" is errno's text, as
 * in syslog(3).
 *
 * Never call msg_fatal or msg_panic from code that runs inside the milter's
 * callbacks for a reason other than a bug: the milter answers errors, it does
 * not exit.
 */
#ifndef SG_MSG_H
#define SG_MSG_H

#include <stdarg.h>

#define SG_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define SG_NORETURN __attribute__((noreturn))

enum msg_dest { MSG_STDERR, MSG_SYSLOG };

void msg_open(const char *progname, enum msg_dest dest);
const char *msg_progname(void);
void msg_set_verbose(int level);
int msg_verbose(void);

void msg_debug(const char *fmt, ...) SG_PRINTF(1, 2);
void msg_info(const char *fmt, ...) SG_PRINTF(1, 2);
void msg_warn(const char *fmt, ...) SG_PRINTF(1, 2);
void msg_error(const char *fmt, ...) SG_PRINTF(1, 2);
void msg_fatal(const char *fmt, ...) SG_PRINTF(1, 2) SG_NORETURN;
void msg_fatal_status(int status, const char *fmt, ...) SG_PRINTF(2, 3) SG_NORETURN;
void msg_panic(const char *fmt, ...) SG_PRINTF(1, 2) SG_NORETURN;

#endif
