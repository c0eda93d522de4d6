/*
 * test_spool - the queue directory, each test in a fresh directory under
 * /tmp: the layout made on demand and refused when missing, envelopes and
 * messages that come back byte for byte (xtext included), nothing left in
 * tmp/ whatever happens, one runner per entry across processes, state
 * written in place without changing the file's size, deferral notes,
 * listings without locks, damaged files refused with a reason (never a
 * crash), the retry schedule, and a write that fails half way (a file size
 * limit standing in for a full disk) leaving nothing behind.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "mymalloc.h"
#include "spool.h"

#define NOW 1700000000

#define LEN(s) (sizeof(s) - 1)

static char dir[64];   /* this test's directory */
static char spath[96]; /* the spool within it */

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sg-test-spool-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(spath, sizeof(spath), "%s/spool", dir);
    return 0;
}

/* rm_one - nftw callback: remove one file or (emptied) directory */
static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    (void)state;
    return nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* open_spool - the test's spool, made when missing */
static struct spool *open_spool(void)
{
    struct buf why;
    struct spool *sp;

    buf_init(&why, 64);
    sp = spool_open(spath, 1, &why);
    if (sp == NULL)
        fail_msg("spool_open: %s", buf_str(&why));
    buf_release(&why);
    return sp;
}

/* sub_path - path of name (or the directory itself) in a subdirectory */
static void sub_path(struct buf *p, const char *sub, const char *name)
{
    buf_setf(p, "%s/%s%s%s", spath, sub, name ? "/" : "", name ? name : "");
}

/* count_files - entries in a subdirectory of the spool */
static size_t count_files(const char *sub)
{
    struct buf p;
    DIR *d;
    struct dirent *de;
    size_t n = 0;

    buf_init(&p, 128);
    sub_path(&p, sub, NULL);
    d = opendir(buf_str(&p));
    if (d == NULL)
        fail_msg("opendir %s: %s", buf_str(&p), strerror(errno));
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    buf_release(&p);
    return n;
}

/* file_exists - is there a file of that name in the subdirectory? */
static int file_exists(const char *sub, const char *name)
{
    struct buf p;
    struct stat st;
    int rc;

    buf_init(&p, 128);
    sub_path(&p, sub, name);
    rc = lstat(buf_str(&p), &st) == 0;
    buf_release(&p);
    return rc;
}

/* file_size - the size of a file in a subdirectory */
static off_t file_size(const char *sub, const char *name)
{
    struct buf p;
    struct stat st;

    buf_init(&p, 128);
    sub_path(&p, sub, name);
    if (stat(buf_str(&p), &st) < 0)
        fail_msg("stat %s: %s", buf_str(&p), strerror(errno));
    buf_release(&p);
    return st.st_size;
}

/* read_whole - the content of a file in a subdirectory */
static void read_whole(const char *sub, const char *name, struct buf *out)
{
    struct buf p;
    char chunk[4096];
    ssize_t n;
    int fd;

    buf_init(&p, 128);
    sub_path(&p, sub, name);
    fd = open(buf_str(&p), O_RDONLY);
    if (fd < 0)
        fail_msg("open %s: %s", buf_str(&p), strerror(errno));
    buf_reset(out);
    while ((n = read(fd, chunk, sizeof(chunk))) > 0)
        buf_append(out, chunk, (size_t)n);
    close(fd);
    buf_release(&p);
}

/* write_whole - put a file into a subdirectory, bypassing the spool */
static void write_whole(const char *sub, const char *name, const char *data, size_t len)
{
    struct buf p;
    int fd;

    buf_init(&p, 128);
    sub_path(&p, sub, name);
    fd = open(buf_str(&p), O_WRONLY | O_CREAT | O_TRUNC, 0660);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len || close(fd) < 0)
        fail_msg("write %s: %s", buf_str(&p), strerror(errno));
    buf_release(&p);
}

/* submit - queue env and msg; the new id */
static void submit(struct spool *sp, const struct spool_env *env, const char *msg,
                   size_t len, char id[SPOOL_ID_MAX])
{
    struct buf why;

    buf_init(&why, 64);
    if (spool_submit(sp, env, msg, len, 0, id, NULL, &why) < 0)
        fail_msg("spool_submit: %s", buf_str(&why));
    buf_release(&why);
}

/* open_entry - open and lock an entry that must be there */
static struct spool_entry *open_entry(struct spool *sp, const char *id)
{
    struct spool_entry *e = NULL;
    struct buf why;
    int rc;

    buf_init(&why, 64);
    rc = spool_entry_open(sp, id, &e, &why);
    if (rc != 0)
        fail_msg("spool_entry_open %s: %d %s", id, rc, buf_str(&why));
    buf_release(&why);
    assert_non_null(e);
    return e;
}

/* open_elsewhere - spool_entry_open's answer in another process */
static int open_elsewhere(struct spool *sp, const char *id)
{
    pid_t pid = fork();
    int status;

    assert_true(pid >= 0);
    if (pid == 0) {
        struct spool_entry *e = NULL;
        int rc = spool_entry_open(sp, id, &e, NULL);

        spool_entry_close(e);
        _exit(rc < 0 ? 100 : rc);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status) == 100 ? -1 : WEXITSTATUS(status);
}

/* str_eq - equal strings, both NULL counting as equal */
static void str_eq(const char *got, const char *want)
{
    if (want == NULL)
        assert_null(got);
    else {
        assert_non_null(got);
        assert_string_equal(got, want);
    }
}

/* env_eq - the envelope read back is the one submitted */
static void env_eq(const struct spool_env *got, const struct spool_env *want)
{
    str_eq(got->sender, want->sender);
    str_eq(got->tenant, want->tenant ? want->tenant : "default");
    str_eq(got->origin, want->origin ? want->origin : "sendmail");
    str_eq(got->envid, want->envid);
    str_eq(got->queue_id, want->queue_id);
    assert_int_equal(got->ret, want->ret);
    assert_int_equal(got->body_8bit, want->body_8bit);
    assert_int_equal(got->created, want->created);
    assert_int_equal(got->uid, want->uid);
    assert_int_equal(got->attempts, want->attempts);
    assert_int_equal(got->next_try, want->next_try);
    assert_int_equal(got->policy_done, want->policy_done);
    assert_int_equal(got->nrcpts, want->nrcpts);
    for (size_t i = 0; i < want->nrcpts; i++) {
        str_eq(got->rcpts[i].addr, want->rcpts[i].addr);
        str_eq(got->rcpts[i].orcpt, want->rcpts[i].orcpt);
        assert_int_equal(got->rcpts[i].notify, want->rcpts[i].notify);
        assert_int_equal(got->rcpts[i].state, want->rcpts[i].state);
        assert_true(got->rcpts[i].offset > 0);
    }
}

/* simple_env - one sender, n recipients */
static void simple_env(struct spool_env *env, size_t n)
{
    spool_env_init(env);
    env->sender = mystrdup("sender@example.com");
    env->created = NOW;
    env->uid = 1000;
    for (size_t i = 0; i < n; i++) {
        char addr[64];

        snprintf(addr, sizeof(addr), "rcpt%zu@example.com", i);
        spool_env_add(env, addr, NULL, 0);
    }
}

static const char small_msg[] = "Subject: test\r\n\r\nhello\r\n";

/* With create the layout is made; without, a missing spool is refused. */
static void test_open(void **state)
{
    static const char *const subs[] = {"tmp", "queue", "defer"};
    struct buf why, p;
    struct spool *sp;

    (void)state;
    buf_init(&why, 64);
    buf_init(&p, 128);
    sp = spool_open(spath, 0, &why);
    assert_null(sp);
    assert_true(buf_len(&why) > 0);
    assert_non_null(strstr(buf_str(&why), spath));

    buf_reset(&why);
    sp = spool_open(spath, 1, &why);
    if (sp == NULL)
        fail_msg("spool_open: %s", buf_str(&why));
    assert_string_equal(spool_path(sp), spath);
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        struct stat st;

        sub_path(&p, subs[i], NULL);
        assert_int_equal(stat(buf_str(&p), &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07, 0); /* never open to others */
        assert_int_equal(count_files(subs[i]), 0);
    }
    spool_close(sp);

    /* there now: no create needed; create again changes nothing */
    sp = spool_open(spath, 0, &why);
    assert_non_null(sp);
    spool_close(sp);
    sp = spool_open(spath, 1, &why);
    assert_non_null(sp);
    spool_close(sp);

    /* one subdirectory missing: refused without create, made with it */
    sub_path(&p, "defer", NULL);
    assert_int_equal(rmdir(buf_str(&p)), 0);
    buf_reset(&why);
    assert_null(spool_open(spath, 0, &why));
    assert_non_null(strstr(buf_str(&why), "defer"));
    sp = spool_open(spath, 1, &why);
    assert_non_null(sp);
    spool_close(sp);

    /* a parent that is missing is not made */
    buf_setf(&p, "%s/no/such", dir);
    buf_reset(&why);
    assert_null(spool_open(buf_str(&p), 1, &why));
    assert_true(buf_len(&why) > 0);
    spool_close(NULL);
    buf_release(&why);
    buf_release(&p);
}

/* Envelopes and messages come back exactly; xtext round-trips any byte. */
static void test_round_trip(void **state)
{
    static const char full_msg[] = "Subject: =?utf-8?q?J=C3=BCrgen?=\r\n"
                                   "\r\n"
                                   "8-bit: \xc3\xbc\xff\x01 and a NUL \0 inside\r\n"
                                   "\r\n"
                                   "R - 0 - not an envelope record\r\n"
                                   "a line without CRLF at the end";
    static const struct {
        const char *addr, *orcpt;
        int notify, state;
    } rcpts[] = {
        {"plain@example.com", NULL, 0, SPOOL_PENDING},
        {"\"a b\"@example.com", "rfc822;\"a b\"@example.com",
         SPOOL_NOTIFY_SUCCESS | SPOOL_NOTIFY_FAILURE | SPOOL_NOTIFY_DELAY, SPOOL_PENDING},
        {"user+tag@example.com", "rfc822;user+2Btag@example.com", SPOOL_NOTIFY_NEVER,
         SPOOL_PENDING},
        {"x=y@example.com", "rfc822;x+3Dy@example.com", SPOOL_NOTIFY_FAILURE,
         SPOOL_DELIVERED},
        {"j\xc3\xbcrgen@b\xc3\xbc"
         "cher.example",
         "utf-8;j\xc3\xbcrgen@b\xc3\xbc"
         "cher.example",
         SPOOL_NOTIFY_DELAY, SPOOL_PENDING},
        {"-", "", 0, SPOOL_PENDING},
        {"+2B+3D+ = %\t\x7f\x80\xfe@example.com", "-x", SPOOL_NOTIFY_SUCCESS,
         SPOOL_FAILED},
    };
    struct spool_env full, bare, *envs[2] = {&full, &bare};
    const char *msgs[2] = {full_msg, ""};
    size_t lens[2] = {LEN(full_msg), 0};
    struct spool *sp = open_spool();

    (void)state;
    /* everything set, and awkward */
    spool_env_init(&full);
    full.sender = mystrdup("s+1=2 \xe9t\xe9@example.com");
    full.tenant = mystrdup("acme corp+=");
    full.envid = mystrdup("ENV+ID=1 2");
    full.origin = mystrdup("smtp");
    full.queue_id = mystrdup("4SVn1x2yZ");
    full.ret = SPOOL_RET_HDRS;
    full.body_8bit = 1;
    full.created = NOW;
    full.uid = 4242;
    full.attempts = 3;
    full.next_try = NOW + 600;
    full.policy_done = 1;
    for (size_t i = 0; i < sizeof(rcpts) / sizeof(rcpts[0]); i++)
        spool_env_add(&full, rcpts[i].addr, rcpts[i].orcpt, rcpts[i].notify)->state =
            rcpts[i].state;
    /* the least: the null sender, defaults, an empty message */
    spool_env_init(&bare);
    bare.sender = mystrdup("");
    bare.ret = SPOOL_RET_FULL;
    bare.created = 0;
    bare.uid = 0;
    spool_env_add(&bare, "postmaster@example.com", NULL, 0);

    for (size_t c = 0; c < 2; c++) {
        char id[SPOOL_ID_MAX];
        struct spool_entry *e;
        struct stat st;
        struct buf p;

        submit(sp, envs[c], msgs[c], lens[c], id);
        assert_true(strlen(id) > 0 && strlen(id) < SPOOL_ID_MAX);
        assert_null(strchr(id, '/'));
        assert_true(id[0] != '.');
        assert_int_equal(count_files("tmp"), 0);
        assert_true(file_exists("queue", id));
        buf_init(&p, 128);
        sub_path(&p, "queue", id);
        assert_int_equal(stat(buf_str(&p), &st), 0);
        assert_int_equal(st.st_mode & 0777, 0660);
        buf_release(&p);

        e = open_entry(sp, id);
        assert_string_equal(e->id, id);
        assert_ptr_equal(e->sp, sp);
        env_eq(&e->env, envs[c]);
        assert_int_equal(e->msg_len, lens[c]);
        if (lens[c])
            assert_memory_equal(e->msg, msgs[c], lens[c]);
        assert_int_equal(e->len, (size_t)st.st_size);
        spool_entry_close(e);
    }
    assert_int_equal(count_files("queue"), 2);
    assert_int_equal(count_files("tmp"), 0);
    spool_env_release(&full);
    spool_env_release(&bare);
    spool_close(sp);
}

/* No recipients: refused, and nothing written anywhere. */
static void test_no_recipients(void **state)
{
    struct spool *sp = open_spool();
    struct spool_env env;
    struct spool_entry *e = NULL;
    char id[SPOOL_ID_MAX];
    struct buf why;

    (void)state;
    buf_init(&why, 64);
    simple_env(&env, 0);
    errno = 0;
    assert_int_equal(spool_submit(sp, &env, small_msg, LEN(small_msg), 0, id, NULL, &why),
                     -1);
    assert_int_equal(errno, EINVAL);
    assert_true(buf_len(&why) > 0);
    buf_reset(&why);
    assert_int_equal(spool_submit(sp, &env, small_msg, LEN(small_msg), SPOOL_KEEP_LOCKED,
                                  id, &e, &why),
                     -1);
    assert_true(buf_len(&why) > 0);
    assert_int_equal(count_files("tmp"), 0);
    assert_int_equal(count_files("queue"), 0);
    assert_int_equal(count_files("defer"), 0);
    spool_env_release(&env);
    buf_release(&why);
    spool_close(sp);
}

/* One runner per entry: a second open is told busy, in any process. */
static void test_lock(void **state)
{
    struct spool *sp = open_spool();
    struct spool_env env;
    struct spool_entry *e, *e2 = NULL;
    char id[SPOOL_ID_MAX];

    (void)state;
    simple_env(&env, 1);
    submit(sp, &env, small_msg, LEN(small_msg), id);
    /* free, it opens anywhere */
    assert_int_equal(open_elsewhere(sp, id), 0);
    e = open_entry(sp, id);
    /* held: busy for another process, and for another open in this one */
    assert_int_equal(open_elsewhere(sp, id), 1);
    assert_int_equal(spool_entry_open(sp, id, &e2, NULL), 1);
    assert_null(e2);
    spool_entry_close(e);
    /* released by close */
    assert_int_equal(open_elsewhere(sp, id), 0);
    e = open_entry(sp, id);
    spool_entry_close(e);
    spool_env_release(&env);
    spool_close(sp);
}

/* SPOOL_KEEP_LOCKED hands back the entry, already locked. */
static void test_keep_locked(void **state)
{
    struct spool *sp = open_spool();
    struct spool_env env;
    struct spool_entry *e = NULL, *e2 = NULL;
    char id[SPOOL_ID_MAX];
    struct buf why;

    (void)state;
    buf_init(&why, 64);
    simple_env(&env, 2);
    if (spool_submit(sp, &env, small_msg, LEN(small_msg), SPOOL_KEEP_LOCKED, id, &e,
                     &why) < 0)
        fail_msg("spool_submit: %s", buf_str(&why));
    assert_non_null(e);
    assert_string_equal(e->id, id);
    env_eq(&e->env, &env);
    assert_int_equal(e->msg_len, LEN(small_msg));
    assert_memory_equal(e->msg, small_msg, LEN(small_msg));
    assert_int_equal(count_files("tmp"), 0);
    assert_true(file_exists("queue", id));
    assert_int_equal(open_elsewhere(sp, id), 1);
    assert_int_equal(spool_entry_open(sp, id, &e2, &why), 1);
    /* it can be worked on as it is */
    assert_int_equal(spool_entry_mark(e, 1, SPOOL_DELIVERED, &why), 0);
    assert_int_equal(spool_entry_sync(e, &why), 0);
    spool_entry_close(e);
    assert_int_equal(open_elsewhere(sp, id), 0);
    e = open_entry(sp, id);
    assert_int_equal(e->env.rcpts[0].state, SPOOL_PENDING);
    assert_int_equal(e->env.rcpts[1].state, SPOOL_DELIVERED);
    spool_entry_close(e);

    /* without somewhere to put the entry, it is queued and not held */
    assert_int_equal(spool_submit(sp, &env, small_msg, LEN(small_msg), SPOOL_KEEP_LOCKED,
                                  id, NULL, &why),
                     0);
    assert_int_equal(open_elsewhere(sp, id), 0);
    spool_env_release(&env);
    buf_release(&why);
    spool_close(sp);
}

/* unreadable_env - an envelope spool_submit writes but cannot read back */
static void unreadable_env(struct spool_env *env)
{
    simple_env(env, 1);
    env->attempts = 1000000; /* seven digits: the S record is a byte too long */
}

/*
 * A kept entry that cannot be read back is either refused with nothing
 * left behind, or queued and not left locked by the submitter.
 */
static void test_keep_locked_unreadable(void **state)
{
    struct spool *sp = open_spool();
    struct spool_env env;
    struct spool_entry *e = NULL;
    char id[SPOOL_ID_MAX];
    struct buf why;
    int rc;

    (void)state;
    buf_init(&why, 64);
    unreadable_env(&env);
    rc = spool_submit(sp, &env, small_msg, LEN(small_msg), SPOOL_KEEP_LOCKED, id, &e,
                      &why);
    assert_int_equal(count_files("tmp"), 0);
    if (rc == 0) {
        if (e == NULL) /* queued, not reopened: no one may hold it */
            assert_int_not_equal(open_elsewhere(sp, id), 1);
        spool_entry_close(e);
    } else {
        assert_int_equal(count_files("queue"), 0);
    }
    spool_env_release(&env);
    buf_release(&why);
    spool_close(sp);
}

/* The same without a reason buffer (why is optional): no crash. */
static void test_keep_locked_unreadable_no_why(void **state)
{
    struct spool *sp = open_spool();
    struct spool_env env;
    char id[SPOOL_ID_MAX];
    pid_t pid;
    int status;

    (void)state;
    unreadable_env(&env);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct spool_entry *e = NULL;

        spool_submit(sp, &env, small_msg, LEN(small_msg), SPOOL_KEEP_LOCKED, id, &e,
                     NULL);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child: %s %d", WIFEXITED(status) ? "exit" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    spool_env_release(&env);
    spool_close(sp);
}

/* State written in place: seen after reopening, the size never changes. */
static void test_state_in_place(void **state)
{
    struct spool *sp = open_spool();
    struct spool_env env;
    struct spool_entry *e;
    char id[SPOOL_ID_MAX];
    struct buf why, before, after;
    off_t size;

    (void)state;
    buf_init(&why, 64);
    buf_init(&before, 256);
    buf_init(&after, 256);
    simple_env(&env, 3);
    submit(sp, &env, small_msg, LEN(small_msg), id);
    size = file_size("queue", id);
    read_whole("queue", id, &before);

    e = open_entry(sp, id);
    assert_int_equal(spool_entry_pending(e), 3);
    assert_int_equal(e->env.attempts, 0);
    assert_int_equal(e->env.next_try, 0);
    assert_int_equal(e->env.policy_done, 0);
    assert_int_equal(spool_entry_mark(e, 0, SPOOL_DELIVERED, &why), 0);
    assert_int_equal(spool_entry_mark(e, 2, SPOOL_FAILED, &why), 0);
    assert_int_equal(spool_entry_pending(e), 1);
    assert_int_equal(spool_entry_schedule(e, 5, NOW + 3600, &why), 0);
    assert_int_equal(spool_entry_policy_done(e, &why), 0);
    assert_int_equal(spool_entry_sync(e, &why), 0);
    spool_entry_close(e);
    assert_int_equal(file_size("queue", id), size);

    e = open_entry(sp, id);
    assert_int_equal(e->env.rcpts[0].state, SPOOL_DELIVERED);
    assert_int_equal(e->env.rcpts[1].state, SPOOL_PENDING);
    assert_int_equal(e->env.rcpts[2].state, SPOOL_FAILED);
    assert_int_equal(spool_entry_pending(e), 1);
    assert_int_equal(e->env.attempts, 5);
    assert_int_equal(e->env.next_try, NOW + 3600);
    assert_int_equal(e->env.policy_done, 1);
    assert_memory_equal(e->msg, small_msg, LEN(small_msg));
    /* the rest of the envelope is untouched */
    assert_string_equal(e->env.sender, "sender@example.com");
    assert_string_equal(e->env.rcpts[1].addr, "rcpt1@example.com");
    assert_int_equal(e->env.created, NOW);
    assert_int_equal(spool_entry_mark(e, 1, SPOOL_DROPPED, &why), 0);
    assert_int_equal(spool_entry_pending(e), 0);
    /* the widest values fit; an attempt count beyond six digits is capped */
    assert_int_equal(spool_entry_schedule(e, 1234567, INT64_C(9999999999999), &why), 0);
    spool_entry_close(e);
    assert_int_equal(file_size("queue", id), size);

    e = open_entry(sp, id);
    assert_int_equal(e->env.rcpts[1].state, SPOOL_DROPPED);
    assert_int_equal(spool_entry_pending(e), 0);
    assert_int_equal(e->env.attempts, 999999);
    assert_int_equal(e->env.next_try, INT64_C(9999999999999));
    assert_int_equal(e->env.policy_done, 1);
    /* back to where it started: byte for byte the file it was */
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(spool_entry_mark(e, i, SPOOL_PENDING, &why), 0);
    e->env.policy_done = 0;
    assert_int_equal(spool_entry_schedule(e, 0, 0, &why), 0);
    spool_entry_close(e);
    read_whole("queue", id, &after);
    assert_int_equal(after.len, before.len);
    assert_memory_equal(after.data, before.data, before.len);

    spool_env_release(&env);
    buf_release(&why);
    buf_release(&before);
    buf_release(&after);
    spool_close(sp);
}

/* Removal takes the entry and its notes; it is then gone (2). */
static void test_remove(void **state)
{
    struct spool *sp = open_spool();
    struct spool_env env, env2;
    struct spool_entry *e = NULL;
    char id[SPOOL_ID_MAX], other[SPOOL_ID_MAX];
    struct buf why;
    size_t size = 1;

    (void)state;
    buf_init(&why, 64);
    simple_env(&env, 2);
    submit(sp, &env, small_msg, LEN(small_msg), id);
    submit(sp, &env, small_msg, LEN(small_msg), other);
    e = open_entry(sp, id);
    spool_defer_note(e, 1, "451 4.3.0 try later");
    assert_true(file_exists("defer", id));
    assert_int_equal(spool_entry_remove(e, &why), 0);
    assert_false(file_exists("queue", id));
    assert_false(file_exists("defer", id));
    assert_int_equal(spool_entry_open(sp, id, &e, &why), 2);
    assert_null(e);
    assert_int_equal(spool_read_env(sp, id, &env2, &size, &why), 2);
    /* the other entry is untouched */
    assert_true(file_exists("queue", other));
    assert_int_equal(count_files("queue"), 1);
    /* an entry without notes goes as well */
    e = open_entry(sp, other);
    assert_int_equal(spool_entry_remove(e, &why), 0);
    assert_int_equal(count_files("queue"), 0);
    assert_int_equal(spool_entry_open(sp, other, &e, &why), 2);
    /* ids that could leave queue/ are refused */
    assert_int_equal(spool_entry_open(sp, "../tmp/x", &e, &why), -1);
    assert_int_equal(spool_entry_open(sp, "..", &e, &why), -1);
    assert_int_equal(spool_entry_open(sp, ".hidden", &e, &why), -1);
    assert_true(buf_len(&why) > 0);
    assert_int_equal(
        spool_entry_open(sp, "0123456789012345678901234567890123456789", &e, &why), -1);
    spool_env_release(&env);
    buf_release(&why);
    spool_close(sp);
}

/*
 * A once-only entry: one per key, while queued and after it is done, until
 * the done/ name expires; other keys, and ordinary entries, are not affected.
 */
static void test_once(void **state)
{
    struct spool *sp = open_spool();
    struct spool_env env;
    struct spool_entry *e = NULL;
    char id[SPOOL_ID_MAX], again[SPOOL_ID_MAX], other[SPOOL_ID_MAX];
    const unsigned char key[32] = {0xab, 0x01, 0x02}, key2[32] = {0xab, 0x01, 0x03};
    struct buf why, p;
    struct stat st;

    (void)state;
    buf_init(&why, 64);
    buf_init(&p, 128);
    simple_env(&env, 2);
    assert_int_equal(spool_submit_once(sp, &env, small_msg, LEN(small_msg), key,
                                       sizeof(key), id, &why),
                     0);
    assert_int_equal(strncmp(id, SPOOL_ONCE_PREFIX "AB0102", 7), 0);
    assert_true(strlen(id) < SPOOL_ID_MAX);
    assert_true(file_exists("queue", id));
    assert_int_equal(count_files("tmp"), 0);
    /* asked again while queued: nothing written, the same name */
    assert_int_equal(spool_submit_once(sp, &env, small_msg, LEN(small_msg), key,
                                       sizeof(key), again, &why),
                     1);
    assert_string_equal(again, id);
    assert_int_equal(count_files("queue"), 1);
    assert_int_equal(count_files("tmp"), 0);
    /* another key is another entry */
    assert_int_equal(spool_submit_once(sp, &env, small_msg, LEN(small_msg), key2,
                                       sizeof(key2), other, &why),
                     0);
    assert_string_not_equal(other, id);
    /* done: its name stays, empty, in done/, and it is not queued again */
    e = open_entry(sp, id);
    assert_int_equal(spool_entry_remove(e, &why), 0);
    assert_false(file_exists("queue", id));
    assert_true(file_exists(SPOOL_DONE_DIR, id));
    sub_path(&p, SPOOL_DONE_DIR, id);
    assert_int_equal(stat(buf_str(&p), &st), 0);
    assert_int_equal(st.st_size, 0);
    assert_int_equal(spool_submit_once(sp, &env, small_msg, LEN(small_msg), key,
                                       sizeof(key), again, &why),
                     1);
    assert_false(file_exists("queue", id));
    assert_int_equal(count_files("tmp"), 0);
    /* an ordinary entry removed leaves nothing behind */
    submit(sp, &env, small_msg, LEN(small_msg), again);
    e = open_entry(sp, again);
    assert_int_equal(spool_entry_remove(e, &why), 0);
    assert_false(file_exists(SPOOL_DONE_DIR, again));
    /* expired: the key may be queued again */
    spool_expire_done(sp, 3600);
    assert_true(file_exists(SPOOL_DONE_DIR, id));
    spool_expire_done(sp, -1);
    assert_false(file_exists(SPOOL_DONE_DIR, id));
    assert_int_equal(spool_submit_once(sp, &env, small_msg, LEN(small_msg), key,
                                       sizeof(key), again, &why),
                     0);
    assert_true(file_exists("queue", id));
    spool_env_release(&env);
    buf_release(&why);
    buf_release(&p);
    spool_close(sp);
}

/* The last note of a recipient wins; a note is always one line. */
static void test_defer_notes(void **state)
{
    struct spool *sp = open_spool();
    struct spool_env env;
    struct spool_entry *e;
    char id[SPOOL_ID_MAX];
    struct buf out, file;
    size_t lines = 0;

    (void)state;
    buf_init(&out, 64);
    buf_init(&file, 256);
    simple_env(&env, 12);
    submit(sp, &env, small_msg, LEN(small_msg), id);
    buf_set(&out, "left over");
    spool_defer_reason(sp, id, 0, &out);
    assert_string_equal(buf_str(&out), "");

    e = open_entry(sp, id);
    spool_defer_note(e, 0, "421 4.4.2 first");
    spool_defer_note(e, 1, "450 4.2.1 other");
    spool_defer_note(e, 11, "eleven");
    spool_defer_note(e, 0, "451 4.3.0 second\r\nline two\nline three");
    spool_defer_note(e, 10, "");
    spool_entry_close(e);

    spool_defer_reason(sp, id, 0, &out);
    assert_string_equal(buf_str(&out), "451 4.3.0 second  line two line three");
    spool_defer_reason(sp, id, 1, &out);
    assert_string_equal(buf_str(&out), "450 4.2.1 other");
    spool_defer_reason(sp, id, 11, &out);
    assert_string_equal(buf_str(&out), "eleven");
    spool_defer_reason(sp, id, 10, &out);
    assert_string_equal(buf_str(&out), "");
    buf_set(&out, "left over");
    spool_defer_reason(sp, id, 2, &out);
    assert_string_equal(buf_str(&out), "");
    buf_set(&out, "left over");
    spool_defer_reason(sp, "NOSUCHID", 0, &out);
    assert_string_equal(buf_str(&out), "");

    /* five notes, five lines */
    read_whole("defer", id, &file);
    for (size_t i = 0; i < file.len; i++)
        lines += file.data[i] == '\n';
    assert_int_equal(lines, 5);
    assert_int_equal(file.data[file.len - 1], '\n');
    assert_null(memchr(file.data, '\r', file.len));

    /* a torn last line is not taken */
    write_whole("defer", id, "0 whole\n0 tor", LEN("0 whole\n0 tor"));
    spool_defer_reason(sp, id, 0, &out);
    assert_string_equal(buf_str(&out), "whole");

    spool_env_release(&env);
    buf_release(&out);
    buf_release(&file);
    spool_close(sp);
}

struct scan_ctx {
    char ids[8][SPOOL_ID_MAX];
    size_t n, stop_after;
};

static int collect(const char *id, void *ctx)
{
    struct scan_ctx *c = ctx;

    assert_true(c->n < 8);
    assert_true(strlen(id) < SPOOL_ID_MAX);
    snprintf(c->ids[c->n++], SPOOL_ID_MAX, "%s", id);
    return c->stop_after && c->n >= c->stop_after;
}

/* The scan lists exactly the queued entries, and stops when asked. */
static void test_scan(void **state)
{
    struct spool *sp = open_spool();
    struct spool_env env;
    struct scan_ctx c;
    char ids[5][SPOOL_ID_MAX];
    struct buf why;

    (void)state;
    buf_init(&why, 64);
    simple_env(&env, 1);
    memset(&c, 0, sizeof(c));
    assert_int_equal(spool_scan(sp, collect, &c, &why), 0);
    assert_int_equal(c.n, 0);

    for (size_t i = 0; i < 5; i++)
        submit(sp, &env, small_msg, LEN(small_msg), ids[i]);
    /* neither tmp/ nor defer/ is listed */
    write_whole("tmp", "INPROGRESS", "x", 1);
    write_whole("defer", ids[0], "0 x\n", 4);
    memset(&c, 0, sizeof(c));
    assert_int_equal(spool_scan(sp, collect, &c, &why), 0);
    assert_int_equal(c.n, 5);
    for (size_t i = 0; i < 5; i++) {
        size_t found = 0;

        for (size_t j = 0; j < c.n; j++)
            found += strcmp(ids[i], c.ids[j]) == 0;
        if (found != 1)
            fail_msg("id %s listed %zu times", ids[i], found);
    }
    /* the same scan twice gives the same */
    memset(&c, 0, sizeof(c));
    assert_int_equal(spool_scan(sp, collect, &c, &why), 0);
    assert_int_equal(c.n, 5);

    memset(&c, 0, sizeof(c));
    c.stop_after = 2;
    assert_int_equal(spool_scan(sp, collect, &c, &why), 0);
    assert_int_equal(c.n, 2);
    spool_env_release(&env);
    buf_release(&why);
    spool_close(sp);
}

/* Listing reads an entry even while a runner holds it. */
static void test_read_env(void **state)
{
    static const char msg[] = "Subject: read\r\n\r\nsome body\r\n";
    struct spool *sp = open_spool();
    struct spool_env env, got;
    struct spool_entry *e;
    char id[SPOOL_ID_MAX];
    struct buf why;
    size_t size = 0;

    (void)state;
    buf_init(&why, 64);
    simple_env(&env, 2);
    env.envid = mystrdup("env id");
    spool_env_add(&env, "a b+c=d@example.com", "rfc822;x", SPOOL_NOTIFY_FAILURE);
    submit(sp, &env, msg, LEN(msg), id);
    e = open_entry(sp, id);
    assert_int_equal(spool_read_env(sp, id, &got, &size, &why), 0);
    assert_int_equal(size, LEN(msg));
    env_eq(&got, &env);
    spool_env_release(&got);
    /* size is optional */
    assert_int_equal(spool_read_env(sp, id, &got, NULL, &why), 0);
    spool_env_release(&got);
    /* and it took no lock: the entry is still held by e alone */
    assert_int_equal(open_elsewhere(sp, id), 1);
    spool_entry_close(e);
    assert_int_equal(open_elsewhere(sp, id), 0);
    assert_int_equal(spool_read_env(sp, "NOSUCHID", &got, &size, &why), 2);
    spool_env_release(&env);
    buf_release(&why);
    spool_close(sp);
}

/* check_damaged - an entry that must be refused with a reason */
static void check_damaged(struct spool *sp, const char *name, const char *data,
                          size_t len)
{
    struct spool_entry *e = (struct spool_entry *)1;
    struct spool_env env;
    struct buf why;
    size_t size;
    int rc;

    buf_init(&why, 64);
    write_whole("queue", name, data, len);
    rc = spool_entry_open(sp, name, &e, &why);
    if (rc != -1)
        fail_msg("%s (%zu bytes): spool_entry_open gave %d", name, len, rc);
    assert_null(e);
    assert_true(buf_len(&why) > 0);
    buf_reset(&why);
    assert_int_equal(spool_read_env(sp, name, &env, &size, &why), -1);
    assert_true(buf_len(&why) > 0);
    spool_env_release(&env);
    /* the lock was let go */
    assert_int_equal(open_elsewhere(sp, name), -1);
    buf_release(&why);
}

/* Damaged files: refused with a reason, whatever is wrong with them. */
static void test_damaged(void **state)
{
#define ENV_HEAD                                                                         \
    "SGQ1\nC 1700000000 1000\nF a@example.com\nT default\nO sendmail\nM 0 0\n"
#define S_REC "S 0 000000 0000000000000\n"
#define R_REC "R - 0 - b@example.com\n"
    static const struct {
        const char *name, *data;
    } cases[] = {
        {"EMPTY", ""},
        {"GARBAGE", "hello world\n\nthis is not a queue file\n"},
        {"MAGIC-ONLY", "SGQ1"},
        {"MAGIC-V2", "SGQ2\n" S_REC R_REC "\n"},
        {"NO-EMPTY-LINE", ENV_HEAD S_REC R_REC},
        {"NO-NEWLINE", ENV_HEAD S_REC "R - 0 - b@example.com"},
        {"NO-S", ENV_HEAD R_REC "\nbody\r\n"},
        {"NO-C", "SGQ1\nF a@example.com\nM 0 0\n" S_REC R_REC "\nbody\r\n"},
        {"NO-F", "SGQ1\nC 1700000000 1000\nM 0 0\n" S_REC R_REC "\nbody\r\n"},
        {"NO-R", ENV_HEAD S_REC "\nbody\r\n"},
        {"BAD-STATE", ENV_HEAD S_REC "R Z 0 - b@example.com\n\nbody\r\n"},
        {"BAD-NOTIFY", ENV_HEAD S_REC "R - g - b@example.com\n\nbody\r\n"},
        {"R-NO-ADDR", ENV_HEAD S_REC "R - 0 -\n\nbody\r\n"},
        {"R-EMPTY-ADDR", ENV_HEAD S_REC "R - 0 - \n\nbody\r\n"},
        {"R-SHORT", ENV_HEAD S_REC "R -\n\nbody\r\n"},
        {"S-SHORT", ENV_HEAD "S 0 00000 0000000000000\n" R_REC "\nbody\r\n"},
        {"S-LONG", ENV_HEAD "S 0 0000000 0000000000000\n" R_REC "\nbody\r\n"},
        {"S-BAD-POLICY", ENV_HEAD "S 2 000000 0000000000000\n" R_REC "\nbody\r\n"},
        {"S-NOT-NUMBERS", ENV_HEAD "S 0 00x000 0000000000000\n" R_REC "\nbody\r\n"},
        {"C-BAD", "SGQ1\nC yesterday\nF a@example.com\n" S_REC R_REC "\nbody\r\n"},
        {"C-TRAILING", "SGQ1\nC 1 2 3\nF a@example.com\n" S_REC R_REC "\nbody\r\n"},
        {"M-BAD", ENV_HEAD "M 3 0\n" S_REC R_REC "\nbody\r\n"},
        {"M-SHORT", ENV_HEAD "M 0\n" S_REC R_REC "\nbody\r\n"},
        {"XTEXT-SHORT", ENV_HEAD S_REC "R - 0 - b+4\n\nbody\r\n"},
        {"XTEXT-NUL", ENV_HEAD S_REC "R - 0 - b+00c\n\nbody\r\n"},
        {"XTEXT-NOT-HEX", ENV_HEAD S_REC "R - 0 - b+GGc\n\nbody\r\n"},
        {"XTEXT-SENDER", "SGQ1\nC 1 2\nF a+\nM 0 0\n" S_REC R_REC "\nbody\r\n"},
        {"RECORD-NO-SPACE", ENV_HEAD "Xyz\n" S_REC R_REC "\nbody\r\n"},
        {"RECORD-ONE-BYTE", ENV_HEAD "X\n" S_REC R_REC "\nbody\r\n"},
    };
    struct spool *sp = open_spool();
    struct spool_entry *e;
    struct spool_env env;
    char id[SPOOL_ID_MAX];
    struct buf good;
    size_t env_len;

    (void)state;
    buf_init(&good, 512);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
        check_damaged(sp, cases[c].name, cases[c].data, strlen(cases[c].data));
    check_damaged(sp, "BINARY", "\0\1\2\xff\xfe\n\n\n", 8);

    /* a later version's record is passed over */
    write_whole("queue", "LATER", ENV_HEAD S_REC "Z new record\n" R_REC "\nbody\r\n",
                LEN(ENV_HEAD S_REC "Z new record\n" R_REC "\nbody\r\n"));
    e = open_entry(sp, "LATER");
    assert_string_equal(e->env.rcpts[0].addr, "b@example.com");
    assert_int_equal(e->msg_len, LEN("body\r\n"));
    spool_entry_close(e);

    /* every truncation of a real envelope is refused */
    simple_env(&env, 3);
    env.envid = mystrdup("E1");
    env.queue_id = mystrdup("Q1");
    submit(sp, &env, small_msg, LEN(small_msg), id);
    read_whole("queue", id, &good);
    env_len = good.len - LEN(small_msg);
    for (size_t n = 0; n < env_len; n++)
        check_damaged(sp, "TRUNCATED", good.data, n);
    /* ... and the whole envelope with any part of the message is not */
    for (size_t n = env_len; n <= good.len; n++) {
        write_whole("queue", "TRUNCATED", good.data, n);
        e = open_entry(sp, "TRUNCATED");
        assert_int_equal(e->msg_len, n - env_len);
        spool_entry_close(e);
    }
    /* a bad state byte in a real entry */
    for (size_t i = 0; i + 2 < env_len; i++)
        if (good.data[i] == '\n' && good.data[i + 1] == 'R') {
            good.data[i + 3] = '?';
            break;
        }
    check_damaged(sp, "BAD-STATE-REAL", good.data, good.len);
    /* the damaged files stay where they are, for a person to look at */
    assert_true(file_exists("queue", "GARBAGE"));
    assert_true(file_exists("queue", id));
    spool_env_release(&env);
    buf_release(&good);
    spool_close(sp);
#undef ENV_HEAD
#undef S_REC
#undef R_REC
}

/* The wait doubles from min after each attempt, up to max. */
/* spool_notify_parse: NOTIFY= and -N share one grammar */
static void test_notify_parse(void **state)
{
    static const struct {
        const char *text;
        int bits;
    } cases[] = {
        {"NEVER", SPOOL_NOTIFY_NEVER},
        {"never", SPOOL_NOTIFY_NEVER},
        {"SUCCESS", SPOOL_NOTIFY_SUCCESS},
        {"failure,delay", SPOOL_NOTIFY_FAILURE | SPOOL_NOTIFY_DELAY},
        {"Success,Failure,Delay",
         SPOOL_NOTIFY_SUCCESS | SPOOL_NOTIFY_FAILURE | SPOOL_NOTIFY_DELAY},
        {"", -1},
        {"sometimes", -1},
        {"success,", -1},
        {"never,success", -1},
        {"success,,failure", -1},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(spool_notify_parse(cases[i].text, strlen(cases[i].text)),
                         cases[i].bits);
}

static void test_retry_delay(void **state)
{
    static const struct {
        int attempts;
        int64_t min, max, delay;
    } cases[] = {
        {1, 300, 3600, 300},
        {2, 300, 3600, 600},
        {3, 300, 3600, 1200},
        {4, 300, 3600, 2400},
        {5, 300, 3600, 3600},
        {6, 300, 3600, 3600},
        {50, 300, 3600, 3600},
        {0, 300, 3600, 300},
        {1000000, 300, 3600, 3600},
        {3, 60, 86400, 240},
        {2, 300, 300, 300},
        {1, 0, 3600, 1},
        {40, 60, 4 * 86400, 4 * 86400},
    };

    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        int64_t d = spool_retry_delay(cases[c].attempts, cases[c].min, cases[c].max);
        if (d != cases[c].delay)
            fail_msg("attempt %d (%lld..%lld): %lld, expected %lld", cases[c].attempts,
                     (long long)cases[c].min, (long long)cases[c].max, (long long)d,
                     (long long)cases[c].delay);
    }
}

/*
 * A write that fails half way (RLIMIT_FSIZE in a child, where a full disk
 * cannot be had without mount): -1, errno told, nothing in tmp/ or queue/.
 */
static void test_write_fails(void **state)
{
    struct spool *sp = open_spool();
    struct spool_env env;
    char id[SPOOL_ID_MAX];
    size_t big_len = 256 * 1024;
    char *big = malloc(big_len);
    pid_t pid;
    int status;

    (void)state;
    assert_non_null(big);
    memset(big, 'x', big_len);
    memcpy(big, "Subject: big\r\n\r\n", 16);
    big[big_len - 2] = '\r';
    big[big_len - 1] = '\n';
    simple_env(&env, 2);

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit rl;
        struct buf why;
        struct spool_entry *e = NULL;
        int rc, err;

        signal(SIGXFSZ, SIG_IGN);
        getrlimit(RLIMIT_FSIZE, &rl);
        rl.rlim_cur = 4096;
        if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
            _exit(10);
        buf_init(&why, 64);
        errno = 0;
        rc = spool_submit(sp, &env, big, big_len, 0, id, NULL, &why);
        err = errno;
        if (rc != -1)
            _exit(11);
        if (err != EFBIG)
            _exit(12);
        if (buf_len(&why) == 0)
            _exit(13);
        /* the same, keeping the entry */
        rc = spool_submit(sp, &env, big, big_len, SPOOL_KEEP_LOCKED, id, &e, &why);
        if (rc != -1 || errno != EFBIG)
            _exit(14);
        /* a message that fits still goes through */
        if (spool_submit(sp, &env, small_msg, LEN(small_msg), 0, id, NULL, &why) != 0)
            _exit(15);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("child: %s %d", WIFEXITED(status) ? "exit" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    assert_int_equal(count_files("tmp"), 0);
    assert_int_equal(count_files("queue"), 1);

    /* without the limit the big one goes through */
    submit(sp, &env, big, big_len, id);
    assert_int_equal(count_files("queue"), 2);
    assert_int_equal(count_files("tmp"), 0);

    /* tmp/ not writable: refused before anything is written (root ignores modes) */
    if (geteuid() != 0) {
        struct buf p, why;
        char id2[SPOOL_ID_MAX];

        buf_init(&p, 128);
        buf_init(&why, 64);
        sub_path(&p, "tmp", NULL);
        assert_int_equal(chmod(buf_str(&p), 0500), 0);
        assert_int_equal(spool_submit(sp, &env, big, big_len, 0, id2, NULL, &why), -1);
        assert_int_equal(errno, EACCES);
        assert_true(buf_len(&why) > 0);
        assert_int_equal(chmod(buf_str(&p), 0700), 0);
        assert_int_equal(count_files("tmp"), 0);
        assert_int_equal(count_files("queue"), 2);
        buf_release(&p);
        buf_release(&why);
    }
    free(big);
    spool_env_release(&env);
    spool_close(sp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_recipients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_locked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_locked_unreadable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_locked_unreadable_no_why, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_state_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defer_notes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_delay, setup, teardown),
        cmocka_unit_test(test_notify_parse),
        cmocka_unit_test_setup_teardown(test_write_fails, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
