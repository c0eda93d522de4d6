/*
 * sgrelay - the sendmail-compatible command: accept a message from a program
 * into the spool, list the queue (-bp, or called as mailq), run it (-q), or
 * keep running it (-bd -qINTERVAL).  See sgrelay(8).
 *
 * It never exits 0 before the message is durable in the spool, and never
 * exits non-zero once it is (callers resend on failure).  Every failure is
 * one line on stderr and a <sysexits.h> code.
 *
 * Installed setgid to the spool's group: the first thing it does is to
 * decide what the caller may do with that privilege (see relay_privileges).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <auth-client.h>

#include "mymalloc.h"
#include "relay.h"
#include "stats.h"

static const char *progname = "sgrelay";

/* die - one line on stderr (and in the log), and the exit code */
static int log_to_stderr; /* -v: the log goes to stderr too */

static void SG_PRINTF(2, 3) SG_NORETURN die(int code, const char *fmt, ...)
{
    struct buf b;
    va_list ap;

    buf_init(&b, 128);
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", progname, buf_str(&b));
    if (!log_to_stderr) /* with -v the log is stderr: said once */
        msg_warn("%s", buf_str(&b));
    buf_release(&b);
    exit(code);
}

/* usage_die - a flag sendmail's callers do not use */
static void SG_NORETURN usage_die(const char *what)
{
    die(EX_USAGE, "%s (see sgrelay(8))", what);
}

/* this_host - relay.domain, else the host's name */
static char *this_host(const struct conf *conf)
{
    char h[256];
    const char *d = conf_string(conf, "relay.domain");

    if (*d)
        return mystrdup(d);
    if (gethostname(h, sizeof(h)) < 0 || h[0] == 0)
        return mystrdup("localhost");
    h[sizeof(h) - 1] = 0;
    return mystrdup(h);
}

/*
 * trusted_conf - may an ordinary user name this configuration without losing
 * the group?  Only a file root keeps beside the default one: the path is
 * CONF_DEFAULT_PATH's directory, a slash and a plain name (no symbolic link
 * followed); that directory is root's and only root may change it; the file
 * is a regular file owned by root that only root may change and that
 * everyone may read (so it holds no secret the group could reveal).  Being
 * owned by root and world-readable is not enough on its own: the kernel
 * shows /proc/self/cmdline so, with contents the caller chose.  As nobody
 * else can change the directory, the name stays what was checked.
 */
static int trusted_conf(const char *path)
{
    const char *slash = strrchr(CONF_DEFAULT_PATH, '/');
    size_t dlen = (size_t)(slash - CONF_DEFAULT_PATH);
    const char *name = path + dlen + 1;
    char dir[256];
    struct stat st;
    int dfd, fd, ok;

    if (dlen >= sizeof(dir) || strncmp(path, CONF_DEFAULT_PATH, dlen + 1) != 0 ||
        *name == 0 || *name == '.' || strchr(name, '/') != NULL)
        return 0;
    memcpy(dir, CONF_DEFAULT_PATH, dlen);
    dir[dlen] = 0;
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return 0;
    ok = fstat(dfd, &st) == 0 && st.st_uid == 0 && !(st.st_mode & (S_IWGRP | S_IWOTH));
    fd = ok ? openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) : -1;
    close(dfd);
    if (fd < 0)
        return 0;
    ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == 0 &&
         !(st.st_mode & (S_IWGRP | S_IWOTH)) && (st.st_mode & S_IROTH);
    close(fd);
    return ok;
}

int main(int argc, char **argv)
{
    struct relay r;
    struct relay_opts o;
    const char *conf_path = NULL, *qarg = NULL, *slash;
    struct buf why, input;
    struct conf *conf;
    struct passwd *pw;
    struct stat st;
    char mode = 'm', id[SPOOL_ID_MAX];
    int ch, run_queue = 0, daemon = 0, setgid_run = getegid() != getgid();
    int rv;

    slash = strrchr(argv[0], '/');
    if (strcmp(slash ? slash + 1 : argv[0], "mailq") == 0)
        mode = 'p';
    umask(007);
    msg_open(progname, MSG_SYSLOG);
    memset(&r, 0, sizeof(r));
    memset(&o, 0, sizeof(o));
    r.progname = progname;
    r.delivery = RELAY_BACKGROUND;
    o.dot_ends = 1;
    o.origin = "sendmail";
    buf_init(&why, 128);

    opterr = 0;
    while ((ch = getopt(argc, argv, "+B:b:C:F:f:iN:O:o:q::R:r:tV:v")) != -1) {
        switch (ch) {
        case 'B':
            if (strcasecmp(optarg, "8BITMIME") == 0)
                o.body_8bit = 1;
            else if (strcasecmp(optarg, "7BIT") != 0)
                usage_die("-B takes 7BIT or 8BITMIME");
            break;
        case 'b':
            if (strlen(optarg) != 1 || strchr("mspd", optarg[0]) == NULL) {
                buf_setf(&why, "unsupported option -b%s", optarg);
                usage_die(buf_str(&why));
            }
            if (optarg[0] == 'd')
                daemon = 1;
            else
                mode = optarg[0];
            break;
        case 'C':
            conf_path = optarg;
            break;
        case 'F':
            o.fullname = optarg;
            break;
        case 'f':
        case 'r':
            o.sender = optarg;
            break;
        case 'i':
            o.dot_ends = 0;
            break;
        case 'N':
            if ((o.notify = spool_notify_parse(optarg, strlen(optarg))) < 0)
                usage_die("-N takes never, or a list of success, failure and delay");
            break;
        case 'O':
            break; /* sendmail's long options: accepted, ignored */
        case 'o':
            if (strcmp(optarg, "i") == 0)
                o.dot_ends = 0;
            else if (optarg[0] == 'd' && optarg[1] != 0 && optarg[2] == 0) {
                if (optarg[1] == 'i')
                    r.delivery = RELAY_INTERACTIVE;
                else if (optarg[1] == 'b')
                    r.delivery = RELAY_BACKGROUND;
                else if (optarg[1] == 'q' || optarg[1] == 'd')
                    r.delivery = RELAY_QUEUE_ONLY;
            } /* -oem, -oee, -om, -o... : accepted, ignored */
            break;
        case 'q':
            run_queue = 1;
            qarg = optarg;
            break;
        case 'R':
            if (strcasecmp(optarg, "full") == 0)
                o.ret = SPOOL_RET_FULL;
            else if (strcasecmp(optarg, "hdrs") == 0)
                o.ret = SPOOL_RET_HDRS;
            else
                usage_die("-R takes full or hdrs");
            break;
        case 't':
            o.from_header_rcpts = 1;
            break;
        case 'V':
            for (const char *p = optarg; *p; p++)
                if (*p < 33 || *p > 126 || *p == '+' || *p == '=')
                    usage_die(
                        "-V takes an envelope id of printable ASCII without + or =");
            o.envid = optarg;
            break;
        case 'v':
            r.verbose++;
            break;
        default:
            if (optopt && strchr("BbCFfNOoRrV", optopt)) {
                buf_setf(&why, "option -%c needs an argument", optopt);
            } else {
                buf_setf(&why, "unknown option -%c", optopt ? optopt : '?');
            }
            usage_die(buf_str(&why));
        }
    }
    if (r.verbose) {
        msg_open(progname, MSG_STDERR);
        log_to_stderr = 1;
    }

    /*
     * privileges: a configuration named by an ordinary user loses the group,
     * unless it is one root keeps beside the default one (trusted_conf)
     */
    if (conf_path && setgid_run && getuid() != 0 && !trusted_conf(conf_path)) {
        if (setresgid(getgid(), getgid(), getgid()) < 0)
            die(EX_OSERR, "cannot drop privileges: %s", strerror(errno));
        setgid_run = 0;
    }
    if ((conf = conf_load(conf_path, &why)) != NULL)
        stats_configure(conf);
    if (conf == NULL)
        die(EX_CONFIG, "%s", buf_str(&why));
    r.conf = conf;
    r.uid = getuid();
    if ((pw = getpwuid(r.uid)) != NULL) {
        r.user = mystrdup(pw->pw_name);
        if (pw->pw_gecos && *pw->pw_gecos) {
            r.gecos = mystrdup(pw->pw_gecos);
            r.gecos[strcspn(r.gecos, ",")] = 0;
        }
    } else {
        buf_setf(&why, "uid%lu", (unsigned long)r.uid);
        r.user = buf_steal(&why);
    }
    r.domain = this_host(conf);
    r.privileged = r.uid == 0 || (stat(conf_string(conf, "spool.path"), &st) == 0 &&
                                  st.st_uid == r.uid);
    if ((r.spool = spool_open(conf_string(conf, "spool.path"), r.uid == 0, &why)) == NULL)
        die(mode == 'm' || mode == 's' ? EX_CANTCREAT : EX_OSFILE, "%s", buf_str(&why));
    auth_client_init();

    if (mode == 'p') {
        rv = relay_list(&r, stdout);
    } else if (daemon || (run_queue && qarg && *qarg)) {
        long long interval = 60;
        if (!r.privileged)
            die(EX_NOPERM, "only root or the spool's owner may run the queue");
        if (qarg && *qarg && conf_parse_duration(qarg, &interval, &why) < 0)
            usage_die(buf_str(&why));
        rv = relay_daemon(&r, interval > 0 ? interval : 60);
    } else if (run_queue) {
        if (!r.privileged)
            die(EX_NOPERM, "only root or the spool's owner may run the queue");
        rv = relay_run_queue(&r, 1);
    } else if (mode == 's') {
        if (optind < argc)
            usage_die("-bs takes no recipients");
        rv = relay_smtpd(&r, stdin, stdout);
    } else {
        struct spool_entry *e = NULL;
        buf_init(&input, 65536);
        if ((rv = relay_read_input(0, o.dot_ends,
                                   conf_size(conf, "relay.message_size_limit"), &input,
                                   &why)) != 0)
            die(rv, "%s", buf_str(&why));
        rv = relay_accept(&r, &o, input.data, input.len, argv + optind,
                          (size_t)(argc - optind), id,
                          r.delivery == RELAY_QUEUE_ONLY ? NULL : &e, &why);
        buf_release(&input);
        if (rv != 0)
            die(rv, "%s", buf_str(&why));
        if (e)
            relay_after_accept(&r, &e, 1);
    }
    fflush(stdout);
    if (ferror(stdout) && mode == 'p')
        rv = EX_IOERR;
    spool_close(r.spool);
    myfree(r.user);
    myfree(r.gecos);
    myfree(r.domain);
    conf_free(conf);
    buf_release(&why);
    (void)setgid_run;
    return rv;
}
