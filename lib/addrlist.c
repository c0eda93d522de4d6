/*
 * addrlist - the addr-specs of an address-list field value, see addrlist.h.
 *
 * Two passes over the value with one lexer.  The first only checks that the
 * value can be taken apart (quotes, comments, brackets balanced, no NUL), so
 * that a refusal never comes after some addresses were already handed out.
 * The second walks the tokens with a small state machine and builds each
 * address in one buf; memory is that buf, however long the value.
 *
 * It must never read outside [value, value + len): every index is checked
 * against len before use, the value is not assumed to be NUL-terminated.
 */
#include "config.h"

#include <string.h>

#include "addrlist.h"
#include "utf8.h"

#define ADDRLIST_SHOWN 60 /* bytes of a value quoted in a reason */

enum tok_type { TOK_END, TOK_WORD, TOK_SPECIAL };

struct token {
    enum tok_type type;
    const char *text; /* a word's bytes, as written */
    size_t len;
    size_t where; /* offset of its first byte */
    int ch;       /* a special's character */
    int spaced;   /* white space or a comment came before it */
};

struct lexer {
    const char *s;
    size_t len;
    size_t pos;
};

/* is_wsp - folding white space; a lone CR or LF counts too */
static int is_wsp(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* is_special - the one-byte tokens of an address list */
static int is_special(unsigned char c)
{
    return c != 0 && memchr("<>@,;:.", c, 7) != NULL;
}

/* is_atom - a byte of an atom: anything that does not start another token */
static int is_atom(unsigned char c)
{
    return !is_wsp(c) && !is_special(c) && memchr("()[]\"", c, 5) == NULL;
}

/* unbalanced - the reason for an opening byte that is never closed */
static int unbalanced(struct buf *why, int ch, const char *what, size_t where)
{
    return buf_error(why,
                     "unbalanced '%c' in address list: the %s opened at byte %zu is "
                     "not closed",
                     ch, what, where + 1);
}

/* stray - the reason for a closing byte that closes nothing */
static int stray(struct buf *why, int ch, size_t where)
{
    return buf_error(why,
                     "unbalanced '%c' in address list: the '%c' at byte %zu closes "
                     "nothing",
                     ch, ch, where + 1);
}

/* skip_delimited - step over a quoted string or domain literal at pos; 0 or -1 */
static int skip_delimited(struct lexer *lx, int close, const char *what, struct buf *why)
{
    size_t start = lx->pos;
    size_t i = start + 1;

    while (i < lx->len && lx->s[i] != close) {
        if (lx->s[i] == '\\')
            i++; /* quoted-pair: the next byte cannot close */
        i++;
    }
    if (i >= lx->len)
        return unbalanced(why, lx->s[start], what, start);
    lx->pos = i + 1;
    return 0;
}

/* skip_comment - step over a comment at pos, nested ones included; 0 or -1 */
static int skip_comment(struct lexer *lx, struct buf *why)
{
    size_t start = lx->pos;
    size_t depth = 0;
    size_t i;

    for (i = start; i < lx->len; i++) {
        if (lx->s[i] == '\\') {
            i++;
        } else if (lx->s[i] == '(') {
            depth++;
        } else if (lx->s[i] == ')' && --depth == 0) {
            lx->pos = i + 1;
            return 0;
        }
    }
    return unbalanced(why, '(', "comment", start);
}

/* lex_next - the next token; 1, 0 at the end, or -1 with why filled */
static int lex_next(struct lexer *lx, struct token *tok, struct buf *why)
{
    const char *s = lx->s;
    unsigned char c;
    size_t start;

    tok->spaced = 0;
    for (;;) {
        while (lx->pos < lx->len && is_wsp((unsigned char)s[lx->pos])) {
            lx->pos++;
            tok->spaced = 1;
        }
        if (lx->pos >= lx->len) {
            tok->type = TOK_END;
            tok->where = lx->len;
            return 0;
        }
        if (s[lx->pos] != '(')
            break;
        if (skip_comment(lx, why) < 0)
            return -1;
        tok->spaced = 1;
    }

    start = lx->pos;
    c = (unsigned char)s[start];
    tok->where = start;
    tok->text = s + start;
    if (c == ')' || c == ']')
        return stray(why, c, start);
    if (is_special(c)) {
        tok->type = TOK_SPECIAL;
        tok->ch = c;
        tok->len = 1;
        lx->pos++;
        return 1;
    }
    tok->type = TOK_WORD;
    if (c == '"' || c == '[') {
        if (skip_delimited(lx, c == '"' ? '"' : ']',
                           c == '"' ? "quoted string" : "domain literal", why) < 0)
            return -1;
    } else {
        /* An atom; a backslash takes the next byte with it, as Postfix does. */
        while (lx->pos < lx->len && is_atom((unsigned char)s[lx->pos])) {
            if (s[lx->pos] == '\\' && lx->pos + 1 < lx->len && s[lx->pos + 1] != '\r' &&
                s[lx->pos + 1] != '\n')
                lx->pos++;
            lx->pos++;
        }
    }
    tok->len = lx->pos - start;
    return 1;
}

/* check - can the value be taken apart: 0, or -1 with why filled */
static int check(const char *value, size_t len, struct buf *why)
{
    struct lexer lx = {value, len, 0};
    struct token tok;
    const char *nul;
    size_t depth = 0;
    size_t opened = 0;
    int rc;

    if (len > ADDRLIST_MAX)
        return buf_error(why, "address list longer than %d bytes", ADDRLIST_MAX);
    /* Before the lexer: a NUL inside a quoted string or comment counts too. */
    if (len > 0 && (nul = memchr(value, 0, len)) != NULL)
        return buf_error(why, "NUL byte in address list at byte %zu",
                         (size_t)(nul - value) + 1);
    while ((rc = lex_next(&lx, &tok, why)) > 0) {
        if (tok.type != TOK_SPECIAL)
            continue;
        if (tok.ch == '<' && depth++ == 0)
            opened = tok.where;
        else if (tok.ch == '>' && depth-- == 0)
            return stray(why, '>', tok.where);
    }
    if (rc < 0)
        return -1;
    if (depth > 0)
        return unbalanced(why, '<', "angle address", opened);
    return 0;
}

/* put_word - append a word, without the line breaks of folding */
static void put_word(struct buf *cur, const struct token *tok)
{
    size_t i = 0;

    while (i < tok->len) {
        size_t n = 0;

        while (i + n < tok->len && tok->text[i + n] != '\r' && tok->text[i + n] != '\n')
            n++;
        buf_append(cur, tok->text + i, n);
        i += n;
        while (i < tok->len && (tok->text[i] == '\r' || tok->text[i] == '\n'))
            i++;
    }
}

/* shown - the start of a value fit for a reason: control bytes, bad UTF-8 as \xNN */
static const char *shown(struct buf *tmp, const char *value, size_t len)
{
    size_t cut = len > ADDRLIST_SHOWN ? utf8_cut(value, ADDRLIST_SHOWN) : len;
    int utf8 = utf8_valid(value, cut);

    buf_reset(tmp);
    for (size_t i = 0; i < cut; i++) {
        unsigned char c = (unsigned char)value[i];

        if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8))
            buf_printf(tmp, "\\x%02x", c);
        else
            buf_putc(tmp, c);
    }
    if (cut < len)
        buf_puts(tmp, "...");
    return buf_str(tmp);
}

/* addrlist_parse - walk an address-list value, one call of fn per address */
int addrlist_parse(const char *value, size_t len, addrlist_fn fn, void *ctx,
                   struct buf *why)
{
    struct lexer lx = {value, len, 0};
    struct token tok;
    struct buf cur;
    size_t depth = 0; /* angle brackets open */
    int skip = 0;     /* an angle address was handed out: drop the rest */
    int last_word = 0;
    int count = 0;
    int stop = 0;
    int rc;

    if (check(value, len, why) < 0)
        return -1;
    buf_init(&cur, 64);
    while (!stop) {
        if ((rc = lex_next(&lx, &tok, why)) < 0) {
            count = -1; /* check() said it could not happen */
            break;
        }
        if (tok.type == TOK_WORD ||
            (tok.type == TOK_SPECIAL && memchr("<>:", tok.ch, 3) == NULL &&
             (depth > 0 || (tok.ch != ',' && tok.ch != ';')))) {
            /* Part of the member: address, display name or route. */
            if (skip)
                continue;
            if (tok.type == TOK_WORD) {
                if (last_word && tok.spaced)
                    buf_putc(&cur, ' ');
                put_word(&cur, &tok);
            } else {
                buf_putc(&cur, tok.ch);
            }
            last_word = tok.type == TOK_WORD;
            continue;
        }
        if (tok.type == TOK_SPECIAL && tok.ch == '<') {
            /* What came before was a display name. */
            depth++;
            skip = 0;
        } else if (tok.type == TOK_SPECIAL && tok.ch == '>') {
            if (depth > 0)
                depth--;
            if (!skip && buf_len(&cur) > 0) {
                count++;
                stop = fn != NULL && fn(buf_str(&cur), ctx) != 0;
            }
            skip = 1;
        } else if (tok.type == TOK_SPECIAL && tok.ch == ':') {
            /* A group's name or, in angle brackets, the end of a route. */
            if (depth == 0)
                skip = 0;
        } else {
            /* ',' or ';' between members, or the end of the value. */
            if (!skip && buf_len(&cur) > 0) {
                count++;
                stop = fn != NULL && fn(buf_str(&cur), ctx) != 0;
            }
            skip = 0;
        }
        buf_reset(&cur);
        last_word = 0;
        if (tok.type == TOK_END)
            break;
    }
    buf_release(&cur);
    return count;
}

struct first {
    struct buf *out;
};

/* first_fn - keep the first address and stop */
static int first_fn(const char *addr, void *ctx)
{
    struct first *f = ctx;

    buf_set(f->out, addr);
    return 1;
}

/* addrlist_first - the first address of a value */
int addrlist_first(const char *value, size_t len, struct buf *out, struct buf *why)
{
    struct first f = {out};
    struct buf tmp;
    int rc;

    buf_reset(out);
    rc = addrlist_parse(value, len, first_fn, &f, why);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        buf_init(&tmp, 64);
        buf_error(why, "no address in '%s'", shown(&tmp, value, len));
        buf_release(&tmp);
        return -1;
    }
    return 0;
}
