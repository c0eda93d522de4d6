/*
 * mime - a message's MIME structure walked in place (RFC 2045, 2046), its
 * text parts decoded and, when a caller changes one, re-encoded in its own
 * transfer encoding and spliced back.
 *
 * Messages are in canonical form (CRLF).  Multiparts (mixed, alternative,
 * related, any other) are followed to any depth (up to MIME_MAX_DEPTH);
 * every byte outside a changed part's body leaves exactly as it came:
 * headers, preambles, epilogues, delimiters, attachments and the parts no
 * one changed.  multipart/signed and application/pkcs7-mime (S/MIME and
 * PGP/MIME) are never entered: a change would break the signature or
 * cannot be made, and mime_walk says so.  A message/rfc822 part (a
 * forwarded message) is not entered either: it is the sender's quote, not
 * the sender's mail.
 *
 * A re-encoded part keeps its Content-Transfer-Encoding: quoted-printable
 * in lines of at most 76 characters (soft breaks never split an "=XX"),
 * base64 in lines of 76, 7bit and 8bit with the lines as the caller wrote
 * them, a line over 998 octets broken at a space (the caller's text, HTML
 * or plain, must allow it) or else left long and reported.
 */
#ifndef SG_MIME_H
#define SG_MIME_H

#include <stddef.h>

#include "buf.h"

#define MIME_MAX_DEPTH 32

enum mime_cte { MIME_7BIT, MIME_8BIT, MIME_BINARY, MIME_QP, MIME_BASE64, MIME_UNKNOWN };

/* One leaf part (or the message itself, when it is not a multipart). */
struct mime_part {
    size_t hdr_start, hdr_len; /* its header block (the message's own for the top) */
    size_t body_start,
        body_len; /* its body, encoded, without the CRLF before a delimiter */
    char type[32], subtype[64]; /* lower case; text/plain when none is given */
    char charset[64];           /* lower case, or empty */
    enum mime_cte cte;
    int attachment; /* Content-Disposition: attachment, or a file name given */
    int depth;      /* 0 for a message that is not a multipart */
};

/*
 * mime_walk - call fn for each leaf part in order (nonzero from fn stops
 * the walk and is returned).  A part left alone and not walked (signed,
 * encrypted, nested too deep, a multipart without its boundary) is
 * described in skipped, if not NULL, one line each.  0 at the end.
 */
typedef int (*mime_part_fn)(const struct mime_part *p, void *ctx);
int mime_walk(const char *msg, size_t len, mime_part_fn fn, void *ctx,
              struct buf *skipped);

/*
 * mime_decode - a body in its transfer encoding, decoded, appended to out
 * (7bit, 8bit and binary as they are; a malformed "=" or base64 character
 * kept or skipped as readers do); -1 for an unknown encoding
 */
int mime_decode(enum mime_cte cte, const char *in, size_t len, struct buf *out);

/*
 * mime_encode - decoded text (CRLF line ends) encoded, appended to out;
 * returns the number of 7bit/8bit lines left over 998 octets (0 otherwise)
 */
size_t mime_encode(enum mime_cte cte, const char *in, size_t len, struct buf *out);

/*
 * mime_rewrite - msg into out (emptied first) with each leaf part fn
 * changes: fn gets the part and its decoded body and returns 1 with the new
 * decoded body in next, 0 to leave the part as it is, -1 to stop (why
 * filled by fn).  *changed gets the number of parts changed; a message with
 * none comes out identical.  0, or -1.
 */
typedef int (*mime_rewrite_fn)(const struct mime_part *p, const struct buf *decoded,
                               struct buf *next, void *ctx, struct buf *why);
int mime_rewrite(const char *msg, size_t len, mime_rewrite_fn fn, void *ctx,
                 struct buf *out, int *changed, struct buf *why);

/*
 * mime_param - a parameter of a structured field's value (Content-Type,
 * Content-Disposition): quoted strings and comments understood, RFC 2231
 * continuations joined (charset and language dropped, %XX decoded); 1 with
 * its value in out, or 0
 */
int mime_param(const char *value, size_t len, const char *name, struct buf *out);

#endif
