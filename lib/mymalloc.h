/*
 * mymalloc - allocation that never returns NULL.
 *
 * Running out of memory is fatal (msg_fatal), so callers need no checks.
 */
#ifndef SG_MYMALLOC_H
#define SG_MYMALLOC_H

#include <stddef.h>

void *mymalloc(size_t len);
void *mycalloc(size_t n, size_t len);
void *myrealloc(void *ptr, size_t len);
char *mystrdup(const char *str);
char *mystrndup(const char *str, size_t len);
void *mymemdup(const void *ptr, size_t len);
void myfree(void *ptr);
/*
 * mygrow - room for one element more in a growing array of n elements of
 * size elsize and capacity *cap: the array, moved if it had to grow (the
 * capacity doubles, from 8).
 */
void *mygrow(void *ptr, size_t *cap, size_t n, size_t elsize);

#endif
