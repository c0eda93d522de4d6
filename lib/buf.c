/*
 * buf - growable byte string, see buf.h.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "mymalloc.h"

/* buf_init - prepare a caller-owned buf */
void buf_init(struct buf *b, size_t cap)
{
    b->cap = cap ? cap : 16;
    b->data = mymalloc(b->cap + 1);
    b->len = 0;
    b->data[0] = 0;
}

/* buf_release - free the storage of a caller-owned buf */
void buf_release(struct buf *b)
{
    myfree(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* buf_alloc - a new empty buf */
struct buf *buf_alloc(size_t cap)
{
    struct buf *b = mymalloc(sizeof(*b));

    buf_init(b, cap);
    return b;
}

/* buf_free - destroy a buf from buf_alloc */
void buf_free(struct buf *b)
{
    if (b == NULL)
        return;
    buf_release(b);
    myfree(b);
}

/* buf_reset - empty it, keeping the storage */
void buf_reset(struct buf *b)
{
    b->len = 0;
    b->data[0] = 0;
}

/* buf_reserve - make room for at least more bytes beyond len */
void buf_reserve(struct buf *b, size_t more)
{
    size_t need = b->len + more;

    if (need < b->len)
        msg_panic("buf_reserve: size overflow");
    if (need <= b->cap)
        return;
    while (b->cap < need)
        b->cap = b->cap * 2 > b->cap ? b->cap * 2 : need;
    b->data = myrealloc(b->data, b->cap + 1);
}

/* buf_truncate - shorten to len bytes */
void buf_truncate(struct buf *b, size_t len)
{
    if (len < b->len) {
        b->len = len;
        b->data[len] = 0;
    }
}

/* buf_append - append bytes */
void buf_append(struct buf *b, const void *data, size_t len)
{
    buf_reserve(b, len);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
}

/* buf_puts - append a C string */
void buf_puts(struct buf *b, const char *str)
{
    buf_append(b, str, strlen(str));
}

/* buf_vprintf - append formatted text */
void buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    va_list aq;
    int n;

    va_copy(aq, ap);
    n = vsnprintf(b->data + b->len, b->cap - b->len + 1, fmt, aq);
    va_end(aq);
    if (n < 0)
        msg_panic("buf_vprintf: bad format \"%s\"", fmt);
    if ((size_t)n > b->cap - b->len) {
        buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, b->cap - b->len + 1, fmt, ap);
    }
    b->len += (size_t)n;
}

/* buf_printf - append formatted text */
void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

/* buf_set - replace the content with a C string */
void buf_set(struct buf *b, const char *str)
{
    buf_reset(b);
    buf_puts(b, str);
}

/* buf_setf - replace the content with formatted text */
void buf_setf(struct buf *b, const char *fmt, ...)
{
    va_list ap;

    buf_reset(b);
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

/* buf_steal - hand the storage to the caller and start afresh */
char *buf_steal(struct buf *b)
{
    char *data = b->data;

    buf_init(b, 16);
    return data;
}

/* buf_verror - set an optional reason and return -1 */
int buf_verror(struct buf *why, const char *fmt, va_list ap)
{
    if (why != NULL) {
        buf_reset(why);
        buf_vprintf(why, fmt, ap);
    }
    return -1;
}

/* buf_error - set an optional reason and return -1 */
int buf_error(struct buf *why, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    buf_verror(why, fmt, ap);
    va_end(ap);
    return -1;
}
