/*
 * address - normalising and recognising addresses and suppression entries,
 * see address.h.
 *
 * This runs for every recipient of every message and for every row of an
 * import of millions: the common case, an ASCII address, costs a few passes
 * over at most 320 bytes and no allocation beyond the caller's buf.  libidn2
 * is called only for a domain that has non-ASCII bytes, and the OpenSSL
 * digests are fetched once per process.
 *
 * What is accepted: a dot-atom or quoted-string local part (RFC 5321/5322,
 * UTF-8 allowed as RFC 6531 does), "@", and a host name of at least two LDH
 * labels (after IDNA) or an IPv4 literal such as [192.0.2.1].  It must never
 * accept, silently, a string that is not an address: every refusal says why.
 */
#include "config.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <idn2.h>
#include <openssl/evp.h>

#include "address.h"
#include "msg.h"
#include "utf8.h"

#define ADDRESS_STR(x) #x
#define ADDRESS_XSTR(x) ADDRESS_STR(x)

/* is_space - white space that may surround an address */
static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* is_atext - RFC 5322 atext, plus the non-ASCII bytes of RFC 6531 */
static int is_atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
        c >= 0x80)
        return 1;
    return c != 0 && memchr("!#$%&'*+-/=?^_`{|}~", c, 19) != NULL;
}

/* is_hex - one hexadecimal digit, either case */
static int is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* lower - ASCII lower case; other bytes unchanged */
static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* trim - drop surrounding white space from a span */
static void trim(const char **s, size_t *len)
{
    while (*len > 0 && is_space((unsigned char)**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_space((unsigned char)(*s)[*len - 1]))
        (*len)--;
}

/* seq_len - length of the UTF-8 sequence a lead byte announces; 0 if none */
static size_t seq_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c >= 0xe0 && c <= 0xef)
        return 3;
    if (c >= 0xf0 && c <= 0xf4)
        return 4;
    return 0;
}

/* shown - a span fit for an error message: control bytes, invalid UTF-8 as \xNN */
static const char *shown(struct buf *tmp, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    buf_reset(tmp);
    while (i < len) {
        size_t n = seq_len(s[i]);

        if (n == 1 && s[i] >= 0x20 && s[i] != 0x7f) {
            buf_putc(tmp, s[i]);
        } else if (n > 1 && len - i >= n && utf8_valid(str + i, n)) {
            buf_append(tmp, s + i, n);
            i += n;
            continue;
        } else {
            buf_printf(tmp, "\\x%02x", s[i]);
        }
        i++;
    }
    return buf_str(tmp);
}

/* char_shown - one byte fit for an error message */
static const char *char_shown(unsigned char c, char text[8])
{
    if (c > 0x20 && c < 0x7f)
        snprintf(text, 8, "'%c'", c);
    else
        snprintf(text, 8, "\\x%02x", c);
    return text;
}

/* parse_local - check the local part at the start of s; *at is the '@' after it */
static int parse_local(const char *s, size_t len, size_t *at, struct buf *why)
{
    const unsigned char *u = (const unsigned char *)s;
    int high = 0;
    char text[8];
    size_t i;

    if (len > 0 && s[0] == '"') {
        for (i = 1; i < len && s[i] != '"'; i++) {
            if (s[i] == '\\') {
                if (++i == len)
                    break;
                if (u[i] < 0x20 || u[i] > 0x7e)
                    return buf_error(why,
                                     "quoted local part escapes %s, which RFC 5321 "
                                     "does not allow",
                                     char_shown(u[i], text));
            } else if (u[i] >= 0x80) {
                high = 1;
            } else if (u[i] < 0x20 || u[i] == 0x7f) {
                return buf_error(why,
                                 "quoted local part contains the control character %s",
                                 char_shown(u[i], text));
            }
        }
        if (i >= len)
            return buf_error(why, "quoted local part has no closing quote");
        if (++i == len)
            return buf_error(why, "missing @");
        if (s[i] != '@')
            return buf_error(why, "text after the closing quote of the local part");
        if (i == 2)
            return buf_error(why, "empty local part");
    } else {
        for (i = 0; i < len && s[i] != '@'; i++) {
            if (s[i] == '.') {
                if (i == 0)
                    return buf_error(why, "local part starts with a dot");
                if (s[i - 1] == '.')
                    return buf_error(why, "local part has two dots in a row");
            } else if (is_atext(u[i])) {
                high |= u[i] >= 0x80;
            } else if (is_space(u[i])) {
                return buf_error(why, "local part contains white space (quote it: "
                                      "\"john doe\"@example.com)");
            } else if (s[i] == '"') {
                return buf_error(why,
                                 "local part has a quote that does not enclose it all");
            } else {
                return buf_error(why, "local part contains %s, which must be quoted",
                                 char_shown(u[i], text));
            }
        }
        if (i == len)
            return buf_error(why, "missing @");
        if (i == 0)
            return buf_error(why, "empty local part");
        if (s[i - 1] == '.')
            return buf_error(why, "local part ends with a dot");
    }
    if (i > ADDRESS_LOCAL_MAX)
        return buf_error(why, "local part longer than %d bytes", ADDRESS_LOCAL_MAX);
    if (high && !utf8_valid(s, i))
        return buf_error(why, "local part is not valid UTF-8");
    *at = i;
    return 0;
}

/* check_host - an ASCII host name of LDH labels: NULL, or what is wrong with it */
static const char *check_host(const char *d, size_t len, unsigned char *bad)
{
    size_t labels = 0, start = 0;
    int numeric = 1, last_numeric = 0;

    if (len > ADDRESS_DOMAIN_MAX)
        return "is longer than " ADDRESS_XSTR(ADDRESS_DOMAIN_MAX) " bytes";
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = i < len ? (unsigned char)d[i] : '.';

        if (c == '.') {
            if (i == start)
                return "has an empty label";
            if (i - start > 63)
                return "has a label longer than 63 bytes";
            if (d[start] == '-')
                return "has a label that starts with a hyphen";
            if (d[i - 1] == '-')
                return "has a label that ends with a hyphen";
            labels++;
            start = i + 1;
            last_numeric = numeric;
            numeric = 1;
        } else if ((c >= 'a' && c <= 'z') || c == '-') {
            numeric = 0;
        } else if (c < '0' || c > '9') {
            *bad = c;
            return "contains a character that a host name cannot have";
        }
    }
    if (labels < 2)
        return "has only one label";
    if (last_numeric)
        return "ends in a numeric label (an IP address is written as a literal: "
               "[192.0.2.1])";
    return NULL;
}

/* host_error - report what check_host found, naming the domain as typed */
static int host_error(const char *problem, unsigned char bad, const char *d, size_t len,
                      struct buf *why)
{
    struct buf tmp;
    char text[8];

    buf_init(&tmp, 64);
    if (bad)
        buf_error(why, "domain '%s' contains %s, which a host name cannot have",
                  shown(&tmp, d, len), char_shown(bad, text));
    else
        buf_error(why, "domain '%s' %s", shown(&tmp, d, len), problem);
    buf_release(&tmp);
    return -1;
}

/* put_literal - append an IPv4 domain literal "[192.0.2.1]" */
static int put_literal(const char *d, size_t len, struct buf *out, struct buf *why)
{
    struct in_addr ia;
    struct buf tmp;
    char ip[16];

    if (len > 6 && strncasecmp(d + 1, "IPv6:", 5) == 0)
        return buf_error(why, "IPv6 domain literals are not supported");
    if (d[len - 1] == ']' && len - 2 < sizeof(ip)) {
        memcpy(ip, d + 1, len - 2);
        ip[len - 2] = 0;
        /* inet_pton takes only the canonical dotted quad: keep the text. */
        if (inet_pton(AF_INET, ip, &ia) == 1) {
            buf_append(out, d, len);
            return 0;
        }
    }
    buf_init(&tmp, 64);
    buf_error(why, "domain literal '%s' is not an IPv4 address in brackets",
              shown(&tmp, d, len));
    buf_release(&tmp);
    return -1;
}

/* put_domain - append the normalised form of a domain */
static int put_domain(const char *d, size_t len, struct buf *out, struct buf *why)
{
    char in[ADDRESS_MAX + 1];
    const char *problem;
    unsigned char bad = 0;
    char *ascii = NULL;
    size_t start = out->len;
    int high = 0, rc;

    if (len == 0)
        return buf_error(why, "missing domain after @");
    if (memchr(d, '@', len))
        return buf_error(why, "more than one @ (an @ in the local part must be quoted)");
    if (d[0] == '[')
        return put_literal(d, len, out, why);
    if (len > ADDRESS_MAX)
        return buf_error(why, "domain longer than %d bytes", ADDRESS_DOMAIN_MAX);
    for (size_t i = 0; i < len; i++) {
        in[i] = (char)lower((unsigned char)d[i]);
        high |= (unsigned char)d[i] >= 0x80;
    }
    if (len > 1 && in[len - 1] == '.') /* the root: "b.example." is "b.example" */
        len--;
    in[len] = 0;
    if (!high) {
        if ((problem = check_host(in, len, &bad)) != NULL)
            return host_error(problem, bad, d, len, why);
        buf_append(out, in, len);
        return 0;
    }
    /* UTS #46 non-transitional first (IDNA2008: faß.de keeps its ß). */
    rc = idn2_to_ascii_8z(in, &ascii, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
    if (rc != IDN2_OK &&
        idn2_to_ascii_8z(in, &ascii, IDN2_NFC_INPUT | IDN2_TRANSITIONAL) != IDN2_OK) {
        struct buf tmp;

        buf_init(&tmp, 64);
        buf_error(why, "domain '%s' is not valid UTF-8 / IDNA: %s", shown(&tmp, d, len),
                  idn2_strerror(rc));
        buf_release(&tmp);
        return -1;
    }
    for (const char *p = ascii; *p; p++)
        buf_putc(out, lower((unsigned char)*p));
    idn2_free(ascii);
    if ((problem = check_host(out->data + start, out->len - start, &bad)) != NULL) {
        buf_truncate(out, start);
        return host_error(problem, bad, d, len, why);
    }
    return 0;
}

/* strip - white space, then one pair of angle brackets and the space inside */
static int strip(const char *in, const char **s, size_t *len, struct buf *why)
{
    *s = in;
    *len = strlen(in);
    trim(s, len);
    if (*len > 0 && (*s)[0] == '<') {
        if ((*s)[*len - 1] != '>' || *len == 1)
            return buf_error(why, "unmatched '<'");
        (*s)++;
        *len -= 2;
        trim(s, len);
    } else if (*len > 0 && (*s)[*len - 1] == '>') {
        return buf_error(why, "unmatched '>' (give the address alone, without a name)");
    }
    if (*len == 0)
        return buf_error(why, "empty address");
    return 0;
}

/* address_normalize - see address.h; on failure "out" is left empty */
int address_normalize(const char *in, struct buf *out, struct buf *why)
{
    char copy[ADDRESS_MAX + 1];
    const char *s;
    size_t len, at = 0;

    if (strip(in, &s, &len, why) < 0)
        goto fail;
    if (len > ADDRESS_MAX) {
        buf_error(why, "address longer than %d bytes", ADDRESS_MAX);
        goto fail;
    }
    /* Work on a copy: "in" may live inside "out". */
    memcpy(copy, s, len);
    copy[len] = 0;
    if (memchr(copy, '@', len) == NULL) {
        buf_error(why, "missing @");
        goto fail;
    }
    if (parse_local(copy, len, &at, why) < 0)
        goto fail;
    buf_reset(out);
    buf_append(out, copy, at + 1);
    if (put_domain(copy + at + 1, len - at - 1, out, why) < 0)
        goto fail;
    if (out->len > ADDRESS_MAX) { /* cannot happen with 64 + 1 + 253; kept as a guard */
        buf_error(why, "address longer than %d bytes", ADDRESS_MAX);
        goto fail;
    }
    return 0;
fail:
    buf_reset(out);
    return -1;
}

/* address_key - see address.h */
void address_key(const char *normalized, struct buf *key)
{
    size_t len = strlen(normalized);
    uintptr_t p = (uintptr_t)normalized, d = (uintptr_t)key->data;

    if (p >= d && p <= d + key->len) { /* in place, or a tail of key itself */
        memmove(key->data, normalized, len + 1);
        key->len = len;
    } else {
        buf_reset(key);
        buf_append(key, normalized, len);
    }
    /* The domain is lower case already: folding it too is the same key. */
    for (size_t i = 0; i < len; i++)
        key->data[i] = (char)lower((unsigned char)key->data[i]);
}

/* address_domain - see address.h; "" when there is no '@' */
const char *address_domain(const char *normalized)
{
    const char *at = strrchr(normalized, '@');

    return at ? at + 1 : normalized + strlen(normalized);
}

/* address_parse_entry - see address.h; on failure "display" and "key" are left empty */
int address_parse_entry(const char *in, enum address_kind *kind, struct buf *display,
                        struct buf *key, struct buf *why)
{
    char copy[ADDRESS_MAX + 2];
    const char *s = in;
    size_t len = strlen(in), hex = 0;

    trim(&s, &len);
    while (hex < len && is_hex((unsigned char)s[hex]))
        hex++;
    if (len > 0 && s[0] == '@') {
        /* Work on a copy: "in" may live inside "display". */
        if (len > sizeof(copy) - 1) {
            buf_error(why, "domain longer than %d bytes", ADDRESS_DOMAIN_MAX);
            goto fail;
        }
        memcpy(copy, s, len);
        buf_reset(display);
        buf_putc(display, '@');
        if (put_domain(copy + 1, len - 1, display, why) < 0)
            goto fail;
        *kind = ADDRESS_DOMAIN;
    } else if (hex == len && (len == 32 || len == 64)) {
        memcpy(copy, s, len);
        buf_reset(display);
        for (size_t i = 0; i < len; i++)
            buf_putc(display, lower((unsigned char)copy[i]));
        *kind = len == 32 ? ADDRESS_MD5 : ADDRESS_SHA256;
    } else if (hex == len && len >= 16) {
        /* Too long to be a typo of an address, and not a digest either. */
        buf_error(why,
                  "%zu hex digits are not an address, nor an MD5 (32) or SHA-256 (64) "
                  "digest",
                  len);
        goto fail;
    } else {
        if (address_normalize(in, display, why) < 0)
            goto fail;
        address_key(display->data, key);
        *kind = ADDRESS_EXACT;
        return 0;
    }
    /* A domain or a digest is its own key: both are lower case already. */
    buf_reset(key);
    buf_append(key, display->data, display->len);
    return 0;
fail:
    buf_reset(display);
    buf_reset(key);
    return -1;
}

static pthread_once_t digest_once = PTHREAD_ONCE_INIT;
static EVP_MD *digest_md5;
static EVP_MD *digest_sha256;

/* digest_init - fetch the two digests once; they are shared by all threads */
static void digest_init(void)
{
    /* "-fips": these digests name entries, they protect nothing; MD5 is wanted
     * even where the FIPS provider is the default. */
    digest_md5 = EVP_MD_fetch(NULL, "MD5", "-fips");
    digest_sha256 = EVP_MD_fetch(NULL, "SHA256", "-fips");
    if (digest_md5 == NULL || digest_sha256 == NULL)
        msg_fatal("cannot fetch the %s digest from OpenSSL",
                  digest_md5 ? "SHA-256" : "MD5");
}

/* digest_hex - one digest of data, in lower-case hex */
static void digest_hex(const EVP_MD *md, const char *data, size_t len, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char raw[EVP_MAX_MD_SIZE];
    unsigned int n;

    if (EVP_Digest(data, len, raw, &n, md, NULL) != 1)
        msg_fatal("OpenSSL could not compute a %s digest", EVP_MD_get0_name(md));
    for (unsigned int i = 0; i < n; i++) {
        hex[2 * i] = digits[raw[i] >> 4];
        hex[2 * i + 1] = digits[raw[i] & 15];
    }
    hex[2 * n] = 0;
}

/* address_digests - see address.h */
void address_digests(const char *key, size_t len, char md5hex[33], char sha256hex[65])
{
    if (pthread_once(&digest_once, digest_init) != 0)
        msg_panic("address_digests: pthread_once failed");
    digest_hex(digest_md5, key, len, md5hex);
    digest_hex(digest_sha256, key, len, sha256hex);
}

/* address_kind_name - see address.h */
const char *address_kind_name(enum address_kind kind)
{
    switch (kind) {
    case ADDRESS_EXACT:
        return "exact";
    case ADDRESS_DOMAIN:
        return "domain";
    case ADDRESS_MD5:
        return "md5";
    case ADDRESS_SHA256:
        return "sha256";
    }
    return "unknown";
}
