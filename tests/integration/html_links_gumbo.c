/*
 * html_links_gumbo - the oracle of sendguard's link scanner test.
 *
 * This program is a test tool only, never part of sendguard itself: it
 * parses an HTML file with gumbo (Google's HTML5 parser, libgumbo) and lists
 * the links an HTML5 parser finds, so that the links sendguard's own scanner
 * (lib/html.h) finds in the same file can be compared with them
 * (tests/fixtures/html/NAME.links hold its output for NAME.html).
 *
 * Usage: html_links_gumbo [-t] FILE
 *
 * The file is parsed with gumbo_parse_with_options(&kGumboDefaultOptions)
 * over its bytes as they are (gumbo takes them as UTF-8, whatever a <meta
 * charset> says: a byte that is not valid UTF-8 becomes U+FFFD in a decoded
 * value, while offsets stay those of the file's bytes).
 *
 * A link is an element whose tag is GUMBO_TAG_A in the HTML namespace
 * (GUMBO_NAMESPACE_HTML) that has an attribute named "href" with no
 * namespace.  An <a> of SVG or MathML is not a link we rewrite and is not
 * listed (an <a> inside an SVG <foreignObject>, <desc> or <title> or a
 * MathML <mi>, <mo>, <mn>, <ms>, <mtext> or <annotation-xml encoding=
 * "text/html"> is HTML again, and is listed).  <a> elements inside <template>
 * are walked too.  Other elements with an href (<area>, <link>, <base>,
 * VML's <v:roundrect>) are not listed.  Of two href attributes on one tag
 * the first counts (gumbo drops the second; so for clicktracking).  gumbo
 * parses with scripting off, so the content of <noscript> is markup and an
 * <a href> there is listed; an <a> start tag inside <select> is dropped by
 * the tree builder and is not.
 *
 * Output: one line per link, ascending by OFFSET, which is the order of the
 * source (with -t: in tree order instead; the two differ where the tree
 * builder moves an element, e.g. an <a> foster-parented out of a table).
 * Each line has exactly four fields separated by TAB (so always three TABs,
 * the last one followed by nothing when there is no clicktracking):
 *
 *   OFFSET \t LENGTH \t VALUE \t CLICKTRACKING \n
 *
 *   OFFSET, LENGTH  decimal: the byte offset in the file (0 = the first
 *                   byte) and the length in bytes of the href value as
 *                   written, which is gumbo's original_value: for a quoted
 *                   value the span INCLUDES both quotes (href="x" gives
 *                   LENGTH 3, the quote is the byte at OFFSET, and the value
 *                   inside the quotes is OFFSET+1 .. OFFSET+LENGTH-2;
 *                   href="" gives LENGTH 2); for an unquoted value it is the
 *                   value's bytes alone (href=x gives LENGTH 1).  OFFSET is
 *                   taken as original_value.data minus the start of the
 *                   buffer; gumbo's value_start.offset agrees with it (a
 *                   mismatch is reported on stderr).  An href written with
 *                   no value at all (<a href>, <a href=>, <a href= >) has
 *                   no value position in gumbo (its original_value repeats
 *                   the attribute's name and its value_start is not set):
 *                   it is printed with LENGTH 0 and OFFSET the byte just
 *                   after the attribute's name (the byte at OFFSET-1 is the
 *                   f of href).  LENGTH 0 means that and nothing else.
 *   VALUE           gumbo's decoded value (character references decoded as
 *                   in an attribute, CR LF and CR turned into LF, NUL and
 *                   invalid UTF-8 into U+FFFD), with every byte below 0x20,
 *                   0x7f, '\' and every byte 0x80..0xff written as \xHH (two
 *                   lower-case hex digits), so that a line holds one link.
 *   CLICKTRACKING   the decoded value of the same element's clicktracking
 *                   attribute (SendGrid's opt-out, clicktracking=off), escaped
 *                   the same way, case as written; empty when the element
 *                   has none (and also when it has one with an empty value).
 *
 * Clones: the tree builder may create more than one `a` element for one
 * <a ...> start tag: the reconstruction of the active formatting elements
 * (e.g. <b><a href=x>..</b>more</a>, or <p><a href=x>..<p>more) and the
 * adoption agency algorithm (e.g. <a href=x><div>..<a href=y>) insert copies
 * of an `a` that is still open.  gumbo's clone_node() copies the element
 * whole: the copy keeps the original's original_tag, start_pos and its
 * attributes' original_name/original_value pointers into the source, and
 * gets GUMBO_INSERTION_BY_PARSER plus GUMBO_INSERTION_RECONSTRUCTED_
 * FORMATTING_ELEMENT or GUMBO_INSERTION_ADOPTION_AGENCY_CLONED in its
 * parse_flags.  So an href attribute is identified by its source position
 * (original_name.data, the attribute name's first byte in the buffer), and
 * each is printed once: for the element that is not a clone (the one the
 * start tag made), else for the first one in tree order (a note goes to
 * stderr then; it does not happen in the corpus).  With -t a link is placed
 * where that element stands in the tree.
 *
 * Exit status: 0 on success, 2 on a usage or I/O error.
 *
 * Compile (gumbo from Debian's libgumbo-dev):
 *   gcc -Wall -Wextra -O2 $(pkg-config --cflags gumbo) \
 *       tests/integration/html_links_gumbo.c $(pkg-config --libs gumbo) \
 *       -o html_links_gumbo
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gumbo.h>

#define CLONE_FLAGS                                                                      \
    (GUMBO_INSERTION_RECONSTRUCTED_FORMATTING_ELEMENT |                                  \
     GUMBO_INSERTION_ADOPTION_AGENCY_CLONED)

struct link {
    const GumboNode *node;
    const GumboAttribute *href;
    const GumboAttribute *ct; /* clicktracking, or NULL */
    size_t key;               /* offset of the href attribute's name */
    size_t off, len;          /* the value as written */
    size_t tree;              /* index in tree order */
    int clone;
};

static const char *prog = "html_links_gumbo";
static const char *input;
static size_t input_len;
static struct link *links;
static size_t nlinks, maxlinks;

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (p == NULL) {
        fprintf(stderr, "%s: out of memory\n", prog);
        exit(2);
    }
    return p;
}

/* an attribute of the element by its (lower-case) name, no namespace */
static const GumboAttribute *attr(const GumboElement *e, const char *name)
{
    for (unsigned i = 0; i < e->attributes.length; i++) {
        const GumboAttribute *a = e->attributes.data[i];
        if (a->attr_namespace == GUMBO_ATTR_NAMESPACE_NONE && strcmp(a->name, name) == 0)
            return a;
    }
    return NULL;
}

static size_t source_offset(const char *p)
{
    if (p < input || p > input + input_len) {
        fprintf(stderr, "%s: gumbo gave a pointer outside the input\n", prog);
        exit(2);
    }
    return (size_t)(p - input);
}

static void add(const GumboNode *node)
{
    const GumboElement *e = &node->v.element;
    const GumboAttribute *h = attr(e, "href");
    struct link *l;

    if (h == NULL)
        return;
    if (nlinks == maxlinks) {
        maxlinks = maxlinks ? 2 * maxlinks : 64;
        links = xrealloc(links, maxlinks * sizeof *links);
    }
    l = &links[nlinks];
    l->node = node;
    l->href = h;
    l->ct = attr(e, "clicktracking");
    l->key = source_offset(h->original_name.data);
    l->tree = nlinks;
    l->clone = (node->parse_flags & CLONE_FLAGS) != 0;
    if (h->original_value.data == h->original_name.data) {
        /*
         * Written without a value.  gumbo's finish_attribute_name() sets
         * original_value to the attribute's name text and never sets
         * value_start/value_end (they are left uninitialised, so they
         * must not be read); a value, when there is one, replaces
         * original_value with text that starts after the '='.
         */
        l->off = l->key + h->original_name.length;
        l->len = 0;
    } else {
        l->off = source_offset(h->original_value.data);
        l->len = h->original_value.length;
        if (l->off + l->len > input_len) {
            fprintf(stderr, "%s: value at %zu+%zu beyond the input\n", prog, l->off,
                    l->len);
            exit(2);
        }
        if (h->value_start.offset != l->off)
            fprintf(stderr,
                    "%s: note: value at %zu, gumbo's value_start "
                    "says %u\n",
                    prog, l->off, h->value_start.offset);
    }
    nlinks++;
}

/* every node in tree order, template contents included */
static void walk(const GumboNode *root)
{
    const GumboNode **stack = NULL;
    size_t n = 0, max = 0;

    stack = xrealloc(stack, (max = 256) * sizeof *stack);
    stack[n++] = root;
    while (n > 0) {
        const GumboNode *node = stack[--n];
        const GumboVector *kids;

        if (node->type == GUMBO_NODE_DOCUMENT) {
            kids = &node->v.document.children;
        } else if (node->type == GUMBO_NODE_ELEMENT ||
                   node->type == GUMBO_NODE_TEMPLATE) {
            if (node->v.element.tag == GUMBO_TAG_A &&
                node->v.element.tag_namespace == GUMBO_NAMESPACE_HTML)
                add(node);
            kids = &node->v.element.children;
        } else {
            continue;
        }
        if (n + kids->length > max) {
            while (n + kids->length > max)
                max *= 2;
            stack = xrealloc(stack, max * sizeof *stack);
        }
        for (unsigned i = kids->length; i-- > 0;) /* first child on top */
            stack[n++] = kids->data[i];
    }
    free(stack);
}

static int by_key(const void *a, const void *b)
{
    const struct link *x = a, *y = b;

    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->clone != y->clone) /* the element the start tag made first */
        return x->clone - y->clone;
    return x->tree < y->tree ? -1 : x->tree > y->tree;
}

static int by_tree(const void *a, const void *b)
{
    const struct link *x = a, *y = b;

    return x->tree < y->tree ? -1 : x->tree > y->tree;
}

static void put_escaped(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p >= 0x7f || *p == '\\')
            printf("\\x%02x", *p);
        else
            putchar(*p);
    }
}

int main(int argc, char **argv)
{
    int tree_order = 0;
    const char *path;
    FILE *f;
    char *buf = NULL;
    size_t len = 0, cap = 0, kept;
    GumboOutput *out;

    if (argc == 3 && strcmp(argv[1], "-t") == 0) {
        tree_order = 1;
        path = argv[2];
    } else if (argc == 2 && argv[1][0] != '-') {
        path = argv[1];
    } else {
        fprintf(stderr, "usage: %s [-t] FILE\n", prog);
        return 2;
    }

    if ((f = fopen(path, "rb")) == NULL) {
        fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
        return 2;
    }
    for (;;) {
        size_t got;

        if (len == cap)
            buf = xrealloc(buf, (cap = cap ? 2 * cap : 65536) + 1);
        got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        fprintf(stderr, "%s: %s: read error\n", prog, path);
        return 2;
    }
    fclose(f);
    buf[len] = '\0';
    input = buf;
    input_len = len;

    out = gumbo_parse_with_options(&kGumboDefaultOptions, buf, len);
    walk(out->document);

    /* one line per source attribute: drop the clones */
    if (nlinks > 0)
        qsort(links, nlinks, sizeof *links, by_key);
    kept = 0;
    for (size_t i = 0; i < nlinks; i++) {
        if (kept > 0 && links[kept - 1].key == links[i].key)
            continue;
        links[kept++] = links[i];
    }
    if (tree_order && kept > 0)
        qsort(links, kept, sizeof *links, by_tree);

    for (size_t i = 0; i < kept; i++) {
        const struct link *l = &links[i];

        if (l->clone)
            fprintf(stderr,
                    "%s: note: the link at %zu is known only by a "
                    "clone\n",
                    prog, l->off);
        printf("%zu\t%zu\t", l->off, l->len);
        put_escaped(l->href->value);
        putchar('\t');
        if (l->ct != NULL)
            put_escaped(l->ct->value);
        putchar('\n');
    }

    gumbo_destroy_output(&kGumboDefaultOptions, out);
    free(links);
    free(buf);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: write error\n", prog);
        return 2;
    }
    return 0;
}
