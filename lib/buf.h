/*
 * buf - the one growable, binary-safe byte string of sendguard.
 *
 * A buf always keeps a NUL after its last byte, so buf_str() can be handed to
 * C string functions when the content has no NUL of its own.  All growth goes
 * through mymalloc: it never fails.  Use it for bytes of mail, keys, error
 * reasons; never a fixed char[] with strcpy/sprintf.
 */
#ifndef SG_BUF_H
#define SG_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "msg.h"

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

struct buf *buf_alloc(size_t cap);
void buf_free(struct buf *b);
void buf_init(struct buf *b, size_t cap); /* for a buf on the stack */
void buf_release(struct buf *b);          /* counterpart of buf_init */
void buf_reset(struct buf *b);
void buf_reserve(struct buf *b, size_t more);
void buf_truncate(struct buf *b, size_t len);
void buf_append(struct buf *b, const void *data, size_t len);

/* buf_putc - append one byte (inline: byte loops over mail call it a lot) */
static inline void buf_putc(struct buf *b, int ch)
{
    if (b->len + 1 > b->cap)
        buf_reserve(b, 1);
    b->data[b->len++] = (char)ch;
    b->data[b->len] = 0;
}

void buf_puts(struct buf *b, const char *str);
void buf_printf(struct buf *b, const char *fmt, ...) SG_PRINTF(2, 3);
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
void buf_set(struct buf *b, const char *str);
void buf_setf(struct buf *b, const char *fmt, ...) SG_PRINTF(2, 3);
char *buf_steal(struct buf *b); /* take data, leave b empty */

static inline const char *buf_str(const struct buf *b)
{
    return b->data;
}

/* buf_hex_digit - one hex digit's value (either case), or -1 */
static inline int buf_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static inline size_t buf_len(const struct buf *b)
{
    return b->len;
}

/* Fill an optional error reason; returns -1 so callers can "return err(...)". */
int buf_error(struct buf *why, const char *fmt, ...) SG_PRINTF(2, 3);
int buf_verror(struct buf *why, const char *fmt, va_list ap);

#endif
