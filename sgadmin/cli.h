/*
 * cli - what every sgadmin command shares: options, the configuration and
 * store, output as tables or JSON, times, exit codes.
 *
 * Commands never print half a result and stop: an error is one line on
 * stderr and a <sysexits.h> code.
 */
#ifndef SG_CLI_H
#define SG_CLI_H

#include <stdint.h>

#include <jansson.h>

#include "buf.h"
#include "conf.h"
#include "store.h"

struct cli {
    const char *conf_path;
    const char *store_dir;
    const char *tenant;
    int tenant_given; /* --tenant was on the command line */
    int json;
    int verbose;
    const char *noun;
    const char *verb;
    const char *usage;    /* of the current verb */
    enum store_list list; /* for the suppression nouns */
    struct conf *conf;
    struct store *st;
};

struct cli_opt {
    const char *name; /* long name, without "--" */
    int has_arg;
    const char **value; /* for options with an argument */
    int *flag;          /* for flags: set to 1 */
};

struct cli_verb {
    const char *name;
    int (*run)(struct cli *c, int argc, char **argv);
    const char *usage;
    const char *summary;
};

struct cli_noun {
    const char *name;
    const struct cli_verb *verbs;
    const char *summary;
    enum store_list list;
};

/* cli_parse - the verb's options (and the global ones) then positionals */
int cli_parse(struct cli *c, int argc, char **argv, const struct cli_opt *opts,
              char ***pos, int *npos);
/* cli_parse_options - the same for a verb that takes options only */
int cli_parse_options(struct cli *c, int argc, char **argv, const struct cli_opt *opts);
/* cli_usage_error - a usage error: message, usage line, EX_USAGE */
int cli_usage_error(struct cli *c, const char *fmt, ...) SG_PRINTF(2, 3);
/* cli_fail - an error line on stderr; returns status */
int cli_fail(int status, const char *fmt, ...) SG_PRINTF(2, 3);

/* cli_entry - is this a valid entry?  0, or EX_DATAERR after saying why */
int cli_entry(const char *text);
/* cli_store_dir - load the configuration; the store directory, or NULL */
const char *cli_store_dir(struct cli *c, int *status);
/* cli_open - load the configuration and open the store */
int cli_open(struct cli *c, int mode);
void cli_close(struct cli *c);
/*
 * cli_interrupted - a writing command was asked to stop (INT, TERM, HUP);
 * cli_finish - the exit status, unless so: then die of that signal.
 */
int cli_interrupted(void);
int cli_finish(int status);

/* cli_number - parse a non-negative integer option in [min, max] */
int cli_number(struct cli *c, const char *name, const char *text, long long min,
               long long max, long long *out);
/* cli_time - parse unix seconds or an ISO 8601 date/time (UTC if no zone) */
int cli_time(struct cli *c, const char *name, const char *text, int64_t *out);
/* cli_fmt_time - "2026-11-23 10:00:00" (UTC) */
const char *cli_fmt_time(int64_t t, char out[32]);

/* cli_print_json - print a JSON value (and take ownership) */
void cli_print_json(json_t *v);
/* cli_print_table - print an array of objects as a table of these columns */
void cli_print_table(json_t *rows, const char *const *keys, const char *const *heads);

/* cli_progress - on a terminal, a progress line at most twice a second */
void cli_progress(const char *fmt, ...) SG_PRINTF(1, 2);
void cli_progress_done(void);

extern const struct cli_verb suppression_verbs[];
extern const struct cli_verb allow_verbs[];
extern const struct cli_verb group_verbs[];
extern const struct cli_verb group_suppression_verbs[];
extern const struct cli_verb lookup_verbs[];
extern const struct cli_verb event_verbs[];
extern const struct cli_verb dkim_verbs[];
extern const struct cli_verb token_verbs[];
extern const struct cli_verb ingest_verbs[];
extern const struct cli_verb stats_verbs[];
extern const struct cli_verb report_verbs[];
extern const struct cli_verb webhook_verbs[];

#endif
