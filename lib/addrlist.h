/*
 * addrlist - the addr-specs of an RFC 5322 address-list field value (To, Cc,
 * Bcc, From...), found as tolerantly as Postfix's tok822 parser finds them in
 * real-world mail.
 *
 * The value is taken as it stands in the message: it may be folded (CRLF or
 * a bare LF, then white space).  Comments, display names and group names are
 * dropped; a route (<@relay:a@b>) is dropped; folding white space is dropped
 * outside quoted strings, and inside them the line breaks are (unfolding).
 * What is left of each member is handed out as written, for address.h to
 * judge: a quoted local part keeps its quotes and escapes, an IDN domain stays
 * UTF-8, an encoded word is just an atom.
 *
 * Tolerance, and its limits:
 *  - white space and comments around '.' and '@' vanish (obsolete syntax):
 *    "a . b @ x . example" gives "a.b@x.example";
 *  - two words with only white space or a comment between them are joined
 *    with one space ("a b@x.example"), not split and not glued: no recipient
 *    is guessed; address_normalize then refuses the result, and says why;
 *  - a bare local part ("root") is handed out as it is: the caller decides
 *    (sendmail appends its own domain);
 *  - empty members (",,", a trailing comma), empty groups
 *    ("undisclosed-recipients:;") and empty angle addresses ("<>") give no
 *    address and are not errors; a ';' outside a group is a separator;
 *  - after an angle address, anything up to the next ',' or ';' is taken as
 *    display-name text and dropped; another angle address there is handed out.
 *
 * It must never guess at a value it cannot take apart, nor read outside the
 * len bytes it is given (the value need not be NUL-terminated): an unbalanced
 * '"', '(', ')', '<', '>', '[' or ']', a NUL byte, or a value longer than
 * ADDRLIST_MAX is refused with a reason, before any address is handed out.
 */
#ifndef SG_ADDRLIST_H
#define SG_ADDRLIST_H

#include <stddef.h>

#include "buf.h"

#define ADDRLIST_MAX (1024 * 1024) /* longest value taken, in bytes */

/*
 * addrlist_fn - called once per address found, in order; addr is the
 * addr-spec as "local@domain" (quotes of a quoted local part kept as written,
 * comments and display names removed, folding white space removed outside
 * quoted strings), NUL-terminated, valid only during the call.  Return
 * non-zero to stop.
 */
typedef int (*addrlist_fn)(const char *addr, void *ctx);

/*
 * addrlist_parse - walk an address-list value of len bytes; returns the number
 * of addresses passed to fn (>= 0; the one that stopped the walk counts), or
 * -1 with why filled when the value cannot be parsed at all (unbalanced quote,
 * parenthesis, angle or square bracket, a NUL byte, longer than ADDRLIST_MAX).
 * On -1, fn has not been called.  fn may be NULL, to count or to check.
 */
int addrlist_parse(const char *value, size_t len, addrlist_fn fn, void *ctx,
                   struct buf *why);

/*
 * addrlist_first - the first address of a value into out (e.g. a From
 * field); 0, or -1 with why filled ("no address in ...", or why the value
 * cannot be parsed) and out empty.
 */
int addrlist_first(const char *value, size_t len, struct buf *out, struct buf *why);

#endif
