/*
 * utf8 - the few UTF-8 facts sendguard needs: validity, length in
 * characters, and where to cut a string without splitting a character.
 */
#ifndef SG_UTF8_H
#define SG_UTF8_H

#include <stddef.h>

/* utf8_valid - well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF) */
int utf8_valid(const char *s, size_t len);

/* utf8_chars - number of characters of valid UTF-8 */
size_t utf8_chars(const char *s, size_t len);

/* utf8_cut - the largest length <= max that ends on a character boundary */
size_t utf8_cut(const char *s, size_t max);

#endif
