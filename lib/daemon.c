/*
 * daemon - privileges and pid file of sendguard's daemons, see daemon.h.
 */
#include "config.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

#include "daemon.h"
#include "msg.h"

/* daemon_become - see daemon.h */
void daemon_become(const char *what, const char *user, const char *sock_path)
{
    struct passwd *pw;

    if (*user == 0 || getuid() != 0)
        return;
    if ((pw = getpwnam(user)) == NULL)
        msg_fatal("%s: no user %s", what, user);
    /* a unix socket made as root becomes the user's (and its group's) */
    if (sock_path != NULL && chown(sock_path, pw->pw_uid, pw->pw_gid) < 0)
        msg_warn("cannot give %s to %s: %m", sock_path, user);
    if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
        setuid(pw->pw_uid) < 0)
        msg_fatal("cannot become %s: %m", user);
}

/* daemon_write_pid - see daemon.h */
void daemon_write_pid(const char *path)
{
    FILE *f;

    if (*path == 0)
        return;
    if ((f = fopen(path, "w")) == NULL || fprintf(f, "%ld\n", (long)getpid()) < 0 ||
        fclose(f) != 0)
        msg_warn("cannot write the pid file %s: %m", path);
}
