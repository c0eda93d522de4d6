/*
 * fdio - writing everything to a descriptor, and reading a whole file: the
 * loops that partial writes, short reads and signals call for, in one place;
 * and the directories the sendguard group shares.
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

/*
 * fd_mkdir_shared - make a directory the group shares: mode 02770 less the
 * umask, the set-group-ID bit set by chmod (mkdir(2) drops it on Linux) so
 * that what is made inside belongs to the directory's group; 0 when made or
 * already there, -1 with errno
 */
int fd_mkdir_shared(const char *dir);

#endif
