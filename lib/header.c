/*
 * header - walk and build the header block of a message in memory; see
 * header.h.
 */
#include "config.h"

#include <string.h>
#include <strings.h>
#include <time.h>
#include <stdint.h>

#include "header.h"

/* line_end - the end of the line at p (after its LF), or end */
static const char *line_end(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));

    return nl ? nl + 1 : end;
}

/* header_split - see header.h */
size_t header_split(const char *msg, size_t len, size_t *body)
{
    const char *p = msg, *end = msg + len;

    while (p < end) {
        const char *e = line_end(p, end);
        if ((e - p == 2 && p[0] == '\r') || (e - p == 1 && p[0] == '\n')) {
            *body = (size_t)(e - msg);
            return (size_t)(p - msg);
        }
        p = e;
    }
    *body = len;
    return len;
}

/* header_next - see header.h */
int header_next(const char *msg, size_t hlen, size_t *pos, struct header_field *f)
{
    const char *p = msg + *pos, *end = msg + hlen, *e, *colon, *vend;

    if (p >= end)
        return 0;
    e = line_end(p, end);
    while (e < end && (*e == ' ' || *e == '\t'))
        e = line_end(e, end);
    f->start = p;
    f->len = (size_t)(e - p);
    colon = memchr(p, ':', (size_t)(line_end(p, end) - p)); /* in the first line only */
    vend = e;
    if (vend > p && vend[-1] == '\n')
        vend--;
    if (vend > p && vend[-1] == '\r')
        vend--;
    if (colon == NULL || colon > vend) {
        f->name = p;
        f->name_len = 0;
        f->value = p;
        f->value_len = (size_t)(vend - p);
    } else {
        const char *n = colon;
        while (n > p && (n[-1] == ' ' || n[-1] == '\t'))
            n--;
        f->name = p;
        f->name_len = (size_t)(n - p);
        f->value = colon + 1;
        f->value_len = (size_t)(vend - colon - 1);
    }
    *pos = (size_t)(e - msg);
    return 1;
}

/* header_is - see header.h */
int header_is(const struct header_field *f, const char *name)
{
    size_t n = strlen(name);

    return f->name_len == n && strncasecmp(f->name, name, n) == 0;
}

/* header_find - see header.h */
int header_find(const char *msg, size_t hlen, const char *name, struct header_field *f)
{
    size_t pos = 0;

    while (header_next(msg, hlen, &pos, f))
        if (header_is(f, name))
            return 1;
    return 0;
}

/* header_value - see header.h */
void header_value(const struct header_field *f, struct buf *out)
{
    const char *p = f->value, *end = f->value + f->value_len;

    buf_reset(out);
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    while (end > p &&
           (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        end--;
    for (; p < end; p++)
        if (*p != '\r' && *p != '\n')
            buf_putc(out, *p);
}

/* is_field_line - does this line start a header field (name, colon)? */
static int is_field_line(const char *p, const char *e)
{
    const char *q = p;

    while (q<e && * q> 32 && *q < 127 && *q != ':')
        q++;
    if (q == p)
        return 0;
    while (q < e && (*q == ' ' || *q == '\t'))
        q++;
    return q < e && *q == ':';
}

/* header_canonical - see header.h */
size_t header_canonical(const char *in, size_t len, struct buf *out)
{
    const char *p = in, *end = in + len;
    size_t converted = 0;
    int in_header = 1, first = 1;

    buf_reserve(out, len + len / 32 + 4);
    while (p < end) {
        const char *e = line_end(p, end), *content_end = e;
        if (content_end > p && content_end[-1] == '\n')
            content_end--;
        if (content_end > p && content_end[-1] == '\r' && e[-1] == '\n')
            content_end--;
        if (in_header) {
            if (content_end == p) {
                in_header = 0;
            } else if (!(*p == ' ' || *p == '\t') || first) {
                if (!is_field_line(p, content_end)) {
                    buf_append(out, "\r\n", 2); /* the body starts here */
                    in_header = 0;
                }
            }
            first = 0;
        }
        buf_append(out, p, (size_t)(content_end - p));
        if (e[-1] == '\n' || e == end) {
            if (!(content_end + 2 == e && content_end[0] == '\r'))
                converted++;
            buf_append(out, "\r\n", 2);
        }
        p = e;
    }
    if (in_header)
        buf_append(out, "\r\n", 2); /* a message that is all header */
    return converted;
}

/* header_date - see header.h */
void header_date(int64_t t, struct buf *out)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t tt = (time_t)t;
    struct tm tm;
    long off;

    if (localtime_r(&tt, &tm) == NULL) {
        tt = 0;
        gmtime_r(&tt, &tm);
    }
    off = tm.tm_gmtoff / 60;
    buf_printf(out, "%s, %d %s %04d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday],
               tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
               tm.tm_sec, off < 0 ? '-' : '+', (off < 0 ? -off : off) / 60,
               (off < 0 ? -off : off) % 60);
}
