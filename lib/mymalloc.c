/*
 * mymalloc - allocation wrappers, see mymalloc.h.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "msg.h"
#include "mymalloc.h"

/* mymalloc - malloc or die */
void *mymalloc(size_t len)
{
    void *ptr = malloc(len ? len : 1);

    if (ptr == NULL)
        msg_fatal_status(EX_OSERR, "out of memory allocating %zu bytes", len);
    return ptr;
}

/* mycalloc - calloc or die */
void *mycalloc(size_t n, size_t len)
{
    void *ptr = calloc(n ? n : 1, len ? len : 1);

    if (ptr == NULL)
        msg_fatal_status(EX_OSERR, "out of memory allocating %zu x %zu bytes", n, len);
    return ptr;
}

/* myrealloc - realloc or die */
void *myrealloc(void *ptr, size_t len)
{
    void *res = realloc(ptr, len ? len : 1);

    if (res == NULL)
        msg_fatal_status(EX_OSERR, "out of memory reallocating %zu bytes", len);
    return res;
}

/* mygrow - see mymalloc.h */
void *mygrow(void *ptr, size_t *cap, size_t n, size_t elsize)
{
    if (n < *cap)
        return ptr;
    if (*cap > SIZE_MAX / 2 / (elsize ? elsize : 1))
        msg_fatal_status(EX_OSERR, "out of memory growing an array of %zu", *cap);
    *cap = *cap ? 2 * *cap : 8;
    return myrealloc(ptr, *cap * elsize);
}

/* mystrdup - strdup or die */
char *mystrdup(const char *str)
{
    return mystrndup(str, strlen(str));
}

/* mystrndup - copy at most len bytes and terminate */
char *mystrndup(const char *str, size_t len)
{
    char *res;
    const char *end = memchr(str, 0, len);

    if (end)
        len = (size_t)(end - str);
    res = mymalloc(len + 1);
    memcpy(res, str, len);
    res[len] = 0;
    return res;
}

/* mymemdup - copy bytes, with a terminating NUL for convenience */
void *mymemdup(const void *ptr, size_t len)
{
    char *res = mymalloc(len + 1);

    memcpy(res, ptr, len);
    res[len] = 0;
    return res;
}

/* myfree - free(3), for symmetry */
void myfree(void *ptr)
{
    free(ptr);
}
