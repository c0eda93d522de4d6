/*
 * daemon - what sendguard's daemons (sgmilter, sgtrackd) do alike when they
 * start: give up root for a configured user after opening their socket, and
 * write a pid file.
 */
#ifndef SG_DAEMON_H
#define SG_DAEMON_H

/*
 * daemon_become - when running as root and user is not empty: a unix socket
 * at sock_path (if not NULL) is given to the user and its group, then the
 * process takes the user's groups, group and id.  Fatal (msg_fatal) when the
 * user does not exist or cannot be become: a daemon must not go on as root.
 * what names the setting in messages ("milter.user").
 */
void daemon_become(const char *what, const char *user, const char *sock_path);

/* daemon_write_pid - the pid file at path; empty: none; failure is a warning */
void daemon_write_pid(const char *path);

#endif
