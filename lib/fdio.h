/*
 * fdio - writing everything to a descriptor, and reading a whole file: the
 * loops that partial writes, short reads and signals call for, in one place.
 */
#ifndef SG_FDIO_H
#define SG_FDIO_H

#include <stddef.h>
#include <sys/uio.h>

#include "buf.h"

/*
 * fd_write_all - write the n iovecs completely (they are consumed: iov is
 * changed as the writes go); 0, or -1 with errno
 */
int fd_write_all(int fd, struct iovec *iov, int n);

/* fd_write - write len bytes of data completely; 0, or -1 with errno */
int fd_write(int fd, const void *data, size_t len);

/* fd_read_file - the whole file at path into out (emptied first); 0, or -1 with why */
int fd_read_file(const char *path, struct buf *out, struct buf *why);

#endif
