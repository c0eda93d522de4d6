/*
 * header - the header block of a message held in memory (RFC 5322).
 *
 * Works on messages in canonical form (every line ends in CRLF), as the
 * spool keeps them.  Fields are walked in place, never copied; a field is
 * its name, its value (after the colon, folding included) and its whole
 * extent including the final CRLF, so callers can copy a message while
 * leaving out or replacing fields byte for byte.  Nothing here ever changes
 * a byte it was not asked to.
 */
#ifndef SG_HEADER_H
#define SG_HEADER_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct header_field {
    const char *name; /* the field name, name_len bytes */
    size_t name_len;
    const char *value; /* after the colon, up to (excluding) the final CRLF */
    size_t value_len;
    const char *start; /* the whole field, CRLF included */
    size_t len;
};

/*
 * header_split - the header block's length (up to and including the CRLF of
 * its last field) and where the body starts (after the empty line; len when
 * there is none).
 */
size_t header_split(const char *msg, size_t len, size_t *body);

/*
 * header_next - the field at *pos within the header block of hlen bytes,
 * advancing *pos: 1 with f filled, 0 at the end.  A line with no colon is a
 * field with an empty name.
 */
int header_next(const char *msg, size_t hlen, size_t *pos, struct header_field *f);

/* header_is - is this field named name (case-insensitively)? */
int header_is(const struct header_field *f, const char *name);

/* header_find - the first field named name; 1 with f filled, or 0 */
int header_find(const char *msg, size_t hlen, const char *name, struct header_field *f);

/* header_value - the value unfolded, white space trimmed, into out */
void header_value(const struct header_field *f, struct buf *out);

/*
 * header_canonical - the message as read from a program (LF or CRLF line
 * ends, a bare CR kept as it is) into out with every line ending in CRLF,
 * and, when the header block ends at a line that is not a field, an empty
 * line put before it (as Postfix does), so that the result always has a
 * header block and a body.  Returns the number of lines converted.
 */
size_t header_canonical(const char *in, size_t len, struct buf *out);

/* header_date - t as an RFC 5322 date in local time with its numeric zone, appended */
void header_date(int64_t t, struct buf *out);

#endif
