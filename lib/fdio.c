/*
 * fdio - see fdio.h.
 */
#include "config.h"

#include <errno.h>
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
