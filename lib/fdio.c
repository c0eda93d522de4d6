/*
 * fdio - see fdio.h.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"

/* fd_write_all - see fdio.h */
int fd_write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* fd_write - see fdio.h */
int fd_write(int fd, const void *data, size_t len)
{
    struct iovec iov = {(void *)data, len};

    return fd_write_all(fd, &iov, 1);
}

/* fd_read_file - see fdio.h */
int fd_read_file(const char *path, struct buf *out, struct buf *why)
{
    char chunk[65536];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return buf_error(why, "cannot open %s: %s", path, strerror(errno));
    buf_reset(out);
    while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        buf_append(out, chunk, (size_t)n);
    }
    if (n < 0) {
        buf_error(why, "cannot read %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

/* fd_mkdir_shared - see fdio.h */
int fd_mkdir_shared(const char *dir)
{
    struct stat st;

    if (mkdir(dir, 0770) < 0)
        return errno == EEXIST ? 0 : -1;
    if (stat(dir, &st) == 0)
        (void)chmod(dir, (st.st_mode & 07777) | S_ISGID);
    return 0;
}
