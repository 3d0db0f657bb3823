/* The file I/O calls on the durability path go through this table so that tests can inject
 * failures (EIO, ENOSPC, short writes) and check the order of writes, syncs and
 * acknowledgements, as SQLite's os layer allows. Production code never changes it. */
#ifndef SL_CORE_IO_H
#define SL_CORE_IO_H

#include <sys/types.h>

struct sl_io_ops {
    ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
    int (*fdatasync)(int fd);
};

extern struct sl_io_ops sl_io;

#endif
