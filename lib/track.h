/*
 * track - what the tracking settings make of a message's text parts (the
 * hosted services' semantics, X-SMTPAPI's filters): links through the
 * tracker (clicktrack, with ganalytics' utm_* parameters), the open pixel
 * (opentrack), the unsubscribe footer or its replace tag
 * (subscriptiontrack), the footer (footer), and the ASM tags.
 *
 * One part at a time, decoded (lib/mime does the rest).  In HTML the links
 * are lib/html's: http and https hrefs of <a> elements, not mailto:, tel:,
 * fragments or other schemes, not those with clicktracking=off, not the
 * tracker's own URLs, not beyond the first TRACK_MAX_LINKS of a message;
 * an href is replaced in place (quotes added to an unquoted one), nothing
 * else of the markup changes.  In plain text (clicktrack.enable_text) bare
 * http and https URLs are replaced, trailing punctuation left out.
 * Footers and the pixel go just before the last </body>, else at the end.
 *
 * Never here: tokens or keys.  The caller gives the recipient's URLs and a
 * function that makes a link's tracked URL.
 */
#ifndef SG_TRACK_H
#define SG_TRACK_H

#include <stddef.h>

#include "buf.h"
#include "smtpapi.h"

#define TRACK_MAX_LINKS 1000

/* The ASM substitution tags (SendGrid's names) */
#define TRACK_TAG_GROUP "<%asm_group_unsubscribe_raw_url%>"
#define TRACK_TAG_GLOBAL "<%asm_global_unsubscribe_raw_url%>"
#define TRACK_TAG_PREFS "<%asm_preferences_raw_url%>"

/* The recipient's URLs, and how to make a tracked link. */
struct track_env {
    const char *tracker;    /* the tracker's base URL: its links are never tracked */
    const char *unsub_url;  /* unsubscribe (from the message's group, else all) */
    const char *global_url; /* unsubscribe from everything */
    const char *prefs_url;  /* the preferences page */
    const char *open_url;   /* the pixel's URL */
    /* click - append the tracked URL for url (len bytes); 0, or -1 with why */
    int (*click)(void *ctx, const char *url, size_t len, struct buf *out,
                 struct buf *why);
    void *ctx;
    /* the part's charset (lower case; NULL or empty: US-ASCII): the
     * configured footers, written in UTF-8, are put in it (HTML: non-ASCII
     * characters as &#N; references; text: converted by iconv, what it
     * cannot is '?') */
    const char *charset;
};

/* What a message's parts got, summed over them. */
struct track_count {
    unsigned links;   /* links tracked */
    unsigned skipped; /* links left as they are (scheme, opt-out, over the limit) */
    int pixel, footer, unsub;
};

/*
 * track_html, track_text - the part's decoded text with the filters (merged
 * over the defaults: SMTPAPI_UNSET counts as off) applied, into out
 * (emptied first); n is carried from part to part (the link limit is the
 * message's).  1 when something changed, 0 when out is the text as it was,
 * -1 with why filled (a link could not be made).
 */
int track_html(const struct smtpapi_filters *f, const struct track_env *env,
               const char *text, size_t len, struct buf *out, struct track_count *n,
               struct buf *why);
int track_text(const struct smtpapi_filters *f, const struct track_env *env,
               const char *text, size_t len, struct buf *out, struct track_count *n,
               struct buf *why);

/*
 * track_utm - url with the utm_* parameters of f appended to its query
 * (those it has already kept, not doubled; the fragment stays last), into
 * out (emptied first)
 */
void track_utm(const struct smtpapi_filters *f, const char *url, size_t len,
               struct buf *out);

#endif
