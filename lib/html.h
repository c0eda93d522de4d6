/*
 * html - the links of an HTML document, found as a browser finds them.
 *
 * A scanner, not a parser: it follows the HTML5 tokenizer (WHATWG, section
 * 13.2.5) over the bytes as they are, and of the tree builder only what
 * changes what the tokenizer sees or what an <a> start tag makes: the
 * elements whose content is text (script, style, textarea, title, xmp,
 * iframe, noembed, noframes, plaintext), SVG and MathML (an <a> there is not
 * an HTML link; their integration points are HTML again), and <select>
 * (which drops an <a>).  So an <a> inside a comment, a script, a style or
 * an Outlook conditional comment is not a link, attributes may be quoted
 * either way or not at all, in any case, over several lines, and the first
 * of two href attributes counts.  tests/integration/html_links.sh holds it
 * to gumbo's parse (Google's HTML5 parser) over tests/fixtures/html/: the
 * same links at the same bytes, the same decoded values.  (gumbo itself
 * builds a whole tree and is too slow for every message of a newsletter.)
 *
 * Bytes are never changed here: the caller splices at the offsets given.
 * Input may be in any charset compatible with ASCII; only ASCII markup is
 * read, the other bytes pass through (a decoded value keeps them as they
 * are).  Never reads beyond len.
 */
#ifndef SG_HTML_H
#define SG_HTML_H

#include <stddef.h>

#include "buf.h"

/* One <a href> of the HTML namespace, in document order. */
struct html_link {
    size_t start, len;       /* the href value as written: inside its quotes, if any;
                                an href without a value: len 0 just after its name */
    int quote;               /* '"', '\'' or 0 */
    size_t tag_start;        /* the '<' of the <a> tag */
    size_t tag_end;          /* just after its '>' */
    const struct buf *value; /* the value with character references decoded */
    const struct buf *clicktracking; /* the clicktracking attribute's value, or NULL */
    size_t ct_start, ct_len;         /* and as written (inside its quotes) */
    int tracking_off;                /* it is "off" (in any case) */
};

/* What else a rewriter needs to know of the document. */
struct html_doc {
    long body_end;   /* the '<' of the last </body> end tag, or -1 */
    long html_end;   /* the '<' of the last </html> end tag, or -1 */
    unsigned nlinks; /* the links handed to fn */
};

/*
 * html_links - call fn for each link of the document (a nonzero return
 * stops the scan and is returned); 0 when the whole document was scanned
 */
typedef int (*html_link_fn)(const struct html_link *link, void *ctx);
int html_links(const char *html, size_t len, html_link_fn fn, void *ctx,
               struct html_doc *doc);

/*
 * html_decode_attr - an attribute value's character references decoded as
 * in an attribute (HTML5's rules, a legacy reference followed by '=' or an
 * alphanumeric left alone), appended to out; NUL becomes U+FFFD, CR LF and
 * CR become LF
 */
void html_decode_attr(const char *v, size_t len, struct buf *out);

/*
 * html_escape - len bytes of s appended to out as HTML text (& < > escaped),
 * or with attr as the value of a double-quoted attribute (& < " escaped)
 */
void html_escape(const char *s, size_t len, int attr, struct buf *out);

#endif
