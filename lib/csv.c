/*
 * csv - a streaming RFC 4180 reader, see csv.h.
 *
 * The stream is read in large blocks into one buffer ("in"); a record is
 * parsed from there and its fields are copied, unquoted and NUL-terminated,
 * into a second buffer ("rec") that the row points into.  The raw bytes of
 * the record being parsed stay in "in" until the record is done (a record is
 * at most CSV_RECORD_MAX bytes, so that is bounded): after a malformed record
 * the reader goes back to its start and resumes at the line after its first
 * line.  A stray quote that opens a field by mistake therefore swallows no
 * good rows, however many lines it would have run over.
 *
 * Line ends: LF, CRLF, and also a lone CR (old Mac exports); each counts as
 * one line, inside quoted fields too.  A NUL byte is malformed: fields are
 * handed out as C strings and must not be cut short silently.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "csv.h"
#include "mymalloc.h"

#define CSV_BUFSIZE (256 * 1024) /* read buffer; well over CSV_RECORD_MAX */

#define CSV_STR(x) #x
#define CSV_XSTR(x) CSV_STR(x)
#define CSV_TOO_LONG "record longer than " CSV_XSTR(CSV_RECORD_MAX) " bytes"

struct csv_reader {
    FILE *fp;
    char *in; /* raw input: in[0..len), next byte at in[pos] */
    size_t len;
    size_t pos;
    size_t mark;             /* in[mark..] must be kept: the record's start */
    unsigned long long base; /* stream offset of in[0] */
    size_t line;             /* physical line of in[pos], 1-based */
    char *rec;               /* the fields of the current record */
    int started;             /* the byte-order mark has been looked for */
    int eof;
    int err;  /* errno of a read error; sticky */
    int full; /* the record outgrew CSV_RECORD_MAX while reading */
};

/* Byte classes: 0 is ordinary text, copied as it is. */
enum { T_TEXT, T_COMMA, T_QUOTE, T_CR, T_LF, T_NUL };

static const unsigned char unquoted_class[256] = {
    [','] = T_COMMA, ['"'] = T_QUOTE, ['\r'] = T_CR, ['\n'] = T_LF, [0] = T_NUL,
};

static const unsigned char quoted_class[256] = {
    ['"'] = T_QUOTE,
    ['\r'] = T_CR,
    ['\n'] = T_LF,
    [0] = T_NUL,
};

/* csv_open - see csv.h */
struct csv_reader *csv_open(FILE *fp)
{
    struct csv_reader *r = mycalloc(1, sizeof(*r));

    r->fp = fp;
    r->in = mymalloc(CSV_BUFSIZE);
    /* Unquoted content never exceeds the raw bytes, plus one NUL per field. */
    r->rec = mymalloc(CSV_BUFSIZE + 1);
    r->line = 1;
    return r;
}

/* csv_close - see csv.h */
void csv_close(struct csv_reader *r)
{
    if (r == NULL)
        return;
    myfree(r->in);
    myfree(r->rec);
    myfree(r);
}

/* csv_bytes - see csv.h */
unsigned long long csv_bytes(const struct csv_reader *r)
{
    return r->base + r->pos;
}

/* fill - read more after in[len], dropping what is before the mark; 0 at the end */
static int fill(struct csv_reader *r)
{
    size_t n;

    if (r->eof || r->err)
        return 0;
    if (r->len - r->mark > CSV_RECORD_MAX) {
        r->full = 1; /* keeping more would be keeping a record that is refused */
        return 0;
    }
    if (r->mark > 0) {
        memmove(r->in, r->in + r->mark, r->len - r->mark);
        r->len -= r->mark;
        r->pos -= r->mark;
        r->base += r->mark;
        r->mark = 0;
    }
    errno = 0;
    n = fread(r->in + r->len, 1, CSV_BUFSIZE - r->len, r->fp);
    if (n == 0) {
        if (ferror(r->fp))
            r->err = errno ? errno : EIO;
        else
            r->eof = 1;
        return 0;
    }
    r->len += n;
    return 1;
}

/* peek - the next byte, not consumed; -1 at the end (or error, or a full buffer) */
static int peek(struct csv_reader *r)
{
    if (r->pos == r->len && !fill(r))
        return -1;
    return (unsigned char)r->in[r->pos];
}

/* copy_text - copy ordinary bytes to rec[*o]; the class of the byte that stopped it */
static int copy_text(struct csv_reader *r, const unsigned char *cls, size_t *o)
{
    for (;;) {
        /* The limit is checked here, by position, whatever the buffer holds. */
        size_t limit = r->mark + CSV_RECORD_MAX + 1;
        size_t stop = r->len < limit ? r->len : limit;
        const unsigned char *start = (const unsigned char *)r->in + r->pos;
        const unsigned char *p = start;
        char *w = r->rec + *o;

        if (r->pos >= limit) {
            r->full = 1;
            return -1;
        }
        while (p < (const unsigned char *)r->in + stop && cls[*p] == T_TEXT)
            *w++ = (char)*p++;
        *o += (size_t)(p - start);
        r->pos += (size_t)(p - start);
        if (r->pos < stop)
            return cls[*p];
        if (r->pos < limit && !fill(r))
            return -1;
    }
}

/* end_line - consume the CR, LF or CRLF at pos */
static void end_line(struct csv_reader *r)
{
    int crlf = r->in[r->pos] == '\r';

    r->pos++;
    r->line++;
    if (crlf && peek(r) == '\n')
        r->pos++;
}

/* resume - after a malformed record: go on at the line after its first line */
static void resume(struct csv_reader *r, size_t line)
{
    r->pos = r->mark;
    r->line = line;
    r->full = 0;
    for (;;) {
        const char *start = r->in + r->pos, *end = r->in + r->len;
        const char *p = start;

        while (p < end && *p != '\n' && *p != '\r')
            p++;
        r->pos += (size_t)(p - start);
        if (p < end) {
            end_line(r);
            return;
        }
        r->mark = r->pos; /* what is skipped need not be kept */
        if (!fill(r))
            return;
    }
}

/* read_error - the -2 result */
static int read_error(struct csv_reader *r, struct buf *why)
{
    buf_error(why, "read error: %s", strerror(r->err));
    errno = r->err;
    return -2;
}

/* malformed - the -1 result: report, then skip the record's first line */
static int malformed(struct csv_reader *r, struct csv_row *row, struct buf *why,
                     const char *what, size_t field)
{
    if (why) {
        buf_error(why, "%s", what);
        if (field)
            buf_printf(why, " (field %zu", field);
        if (field && r->line != row->line)
            buf_printf(why, ", line %zu", r->line);
        if (field)
            buf_putc(why, ')');
    }
    row->nfields = 0;
    resume(r, row->line);
    return -1;
}

/* at_end - why a field or record met the end of what can be read */
static int at_end(struct csv_reader *r, struct csv_row *row, struct buf *why, int quoted)
{
    if (r->err)
        return read_error(r, why);
    if (r->full)
        return malformed(r, row, why,
                         quoted ? CSV_TOO_LONG " (is a quote left open?)" : CSV_TOO_LONG,
                         0);
    return 0;
}

/* csv_read - see csv.h */
int csv_read(struct csv_reader *r, struct csv_row *row, struct buf *why)
{
    size_t o = 0, nf = 0, start;
    int c, rc;

    row->nfields = 0;
    if (r->err)
        return read_error(r, why);
    if (!r->started) {
        r->started = 1;
        if (peek(r) == 0xef && r->len - r->pos >= 3 &&
            memcmp(r->in + r->pos, "\xef\xbb\xbf", 3) == 0)
            r->pos += 3;
    }
    /* Empty lines are not records. */
    for (;;) {
        r->mark = r->pos;
        c = peek(r);
        if (c < 0)
            return r->err ? read_error(r, why) : 0;
        if (c != '\n' && c != '\r')
            break;
        end_line(r);
    }
    row->line = r->line;
    for (;;) {
        /* One field per turn; c is the class of the byte that ended the field. */
        if (nf == CSV_FIELDS_MAX)
            return malformed(r, row, why, "more than " CSV_XSTR(CSV_FIELDS_MAX) " fields",
                             0);
        start = o;
        if (peek(r) == '"') {
            r->pos++;
            for (;;) {
                c = copy_text(r, quoted_class, &o);
                if (c < 0) {
                    if ((rc = at_end(r, row, why, 1)) != 0)
                        return rc;
                    return malformed(r, row, why, "unterminated quoted field", nf + 1);
                }
                if (c == T_NUL)
                    return malformed(r, row, why, "NUL byte", nf + 1);
                if (c == T_CR || c == T_LF) { /* a line break, kept as it is */
                    r->rec[o++] = r->in[r->pos++];
                    r->line++;
                    if (c == T_CR && peek(r) == '\n')
                        r->rec[o++] = r->in[r->pos++];
                    continue;
                }
                /* A quote: doubled, it stands for one; alone, it closes. */
                r->pos++;
                if (peek(r) != '"')
                    break;
                r->rec[o++] = '"';
                r->pos++;
            }
            c = peek(r);
            if (c < 0) {
                if ((rc = at_end(r, row, why, 0)) != 0)
                    return rc;
            } else if ((c = unquoted_class[c]) == T_TEXT || c == T_QUOTE || c == T_NUL) {
                return malformed(r, row, why, "text after closing quote", nf + 1);
            }
        } else {
            c = copy_text(r, unquoted_class, &o);
            if (c < 0 && (rc = at_end(r, row, why, 0)) != 0)
                return rc;
            if (c == T_QUOTE)
                return malformed(r, row, why, "quote inside unquoted field", nf + 1);
            if (c == T_NUL)
                return malformed(r, row, why, "NUL byte", nf + 1);
        }
        r->rec[o++] = 0;
        row->field[nf] = r->rec + start;
        row->flen[nf] = o - start - 1;
        nf++;
        if (c != T_COMMA)
            break;
        r->pos++;
    }
    /* c is now T_CR, T_LF or -1 (the end of input). */
    if (r->pos - r->mark > CSV_RECORD_MAX)
        return malformed(r, row, why, CSV_TOO_LONG, 0);
    if (c >= 0)
        end_line(r);
    row->nfields = nf;
    return 1;
}
