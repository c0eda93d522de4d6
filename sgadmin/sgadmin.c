/*
 * sgadmin - the administrator's command over sendguard's stores.
 *
 *   sgadmin [-c FILE] [--store DIR] [--tenant NAME] [--json] NOUN VERB [ARGS]
 *
 * This file only finds the noun and verb; each noun lives in its own file,
 * and every decision is made in lib/.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "cli.h"
#include "msg.h"

static const struct cli_noun nouns[] = {
    {"bounces", suppression_verbs, "addresses that bounced", STORE_BOUNCES},
    {"spam-reports", suppression_verbs, "addresses that reported mail as spam",
     STORE_SPAM_REPORTS},
    {"unsubscribes", suppression_verbs, "global unsubscribes", STORE_UNSUBSCRIBES},
    {"groups", group_verbs, "unsubscribe groups", STORE_GROUP},
    {"group-suppressions", group_suppression_verbs, "unsubscribes from one group",
     STORE_GROUP},
    {"allow-list", allow_verbs, "addresses and domains never suppressed", STORE_ALLOW},
    {"lookup", lookup_verbs, "why an address would be dropped or delivered",
     STORE_NLISTS},
    {"events", event_verbs, "the event log", STORE_NLISTS},
    {"dkim", dkim_verbs, "DKIM keys, and signing a message with them", STORE_NLISTS},
    {"token", token_verbs, "the token key file, and what a token says", STORE_NLISTS},
    {"ingest", ingest_verbs, "bounces, complaints and unsubscribe mail put on the lists",
     STORE_NLISTS},
    {"stats", stats_verbs, "email statistics per day, week or month", STORE_NLISTS},
    {"report", report_verbs, "the statistics as one HTML page", STORE_NLISTS},
    {"webhook", webhook_verbs, "the signed event webhook", STORE_NLISTS},
    {NULL, NULL, NULL, STORE_NLISTS},
};

/* usage - the top level help */
static int usage(FILE *fp, int status)
{
    fprintf(fp,
            "usage: sgadmin [-c FILE] [--store DIR] [--tenant NAME] [--json] NOUN VERB "
            "[ARGS]\n\nnouns:\n");
    for (const struct cli_noun *n = nouns; n->name; n++)
        fprintf(fp, "  %-20s %s\n", n->name, n->summary);
    fprintf(fp, "\n'sgadmin NOUN --help' lists a noun's verbs; see sgadmin(8).\n");
    return status;
}

/* noun_usage - the verbs of one noun */
static int noun_usage(const struct cli_noun *n, FILE *fp, int status)
{
    if (n->verbs[0].name[0] == 0) {
        fprintf(fp, "usage: sgadmin %s %s\n  %s\n", n->name, n->verbs[0].usage,
                n->verbs[0].summary);
        return status;
    }
    fprintf(fp, "usage: sgadmin %s VERB [ARGS]\n\nverbs:\n", n->name);
    for (const struct cli_verb *v = n->verbs; v->name; v++)
        fprintf(fp, "  %-8s %s\n           %s\n", v->name, v->usage, v->summary);
    return status;
}

/* is_help - -h or --help */
static int is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

int main(int argc, char **argv)
{
    struct cli c;
    const struct cli_noun *n;
    const struct cli_verb *v;
    int i = 1, rc;

    memset(&c, 0, sizeof(c));
    c.tenant = STORE_DEFAULT_TENANT;
    msg_open(argv[0], MSG_STDERR);
    /* Global options before the noun (they are also accepted after the verb). */
    while (i < argc && argv[i][0] == '-') {
        const char *a = argv[i];

        if (is_help(a))
            return usage(stdout, 0);
        if (strcmp(a, "--json") == 0) {
            c.json = 1;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            c.verbose++;
        } else if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0 ||
                    strcmp(a, "--store") == 0 || strcmp(a, "--tenant") == 0) &&
                   i + 1 < argc) {
            const char **dst = a[1] == 'c' || a[2] == 'c' ? &c.conf_path
                               : a[2] == 's'              ? &c.store_dir
                                                          : &c.tenant;
            *dst = argv[++i];
            c.tenant_given |= dst == &c.tenant;
        } else if (strncmp(a, "--config=", 9) == 0) {
            c.conf_path = a + 9;
        } else if (strncmp(a, "--store=", 8) == 0) {
            c.store_dir = a + 8;
        } else if (strncmp(a, "--tenant=", 9) == 0) {
            c.tenant = a + 9;
            c.tenant_given = 1;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0 ||
                   strcmp(a, "--store") == 0 || strcmp(a, "--tenant") == 0) {
            fprintf(stderr, "sgadmin: option %s needs a value\n", a);
            return usage(stderr, EX_USAGE);
        } else {
            fprintf(stderr, "sgadmin: unknown option %s\n", a);
            return usage(stderr, EX_USAGE);
        }
        i++;
    }
    if (i >= argc)
        return usage(stderr, EX_USAGE);
    for (n = nouns; n->name; n++)
        if (strcmp(n->name, argv[i]) == 0)
            break;
    if (n->name == NULL) {
        fprintf(stderr, "sgadmin: unknown noun '%s'\n", argv[i]);
        return usage(stderr, EX_USAGE);
    }
    c.noun = n->name;
    c.list = n->list;
    i++;
    /* A noun with one nameless verb (lookup) takes its arguments directly. */
    if (n->verbs[0].name[0] == 0) {
        v = &n->verbs[0];
        if (i < argc && is_help(argv[i]))
            return noun_usage(n, stdout, 0);
    } else {
        if (i >= argc)
            return noun_usage(n, stderr, EX_USAGE);
        if (is_help(argv[i]))
            return noun_usage(n, stdout, 0);
        for (v = n->verbs; v->name; v++)
            if (strcmp(v->name, argv[i]) == 0)
                break;
        if (v->name == NULL) {
            fprintf(stderr, "sgadmin: %s has no verb '%s'\n", n->name, argv[i]);
            return noun_usage(n, stderr, EX_USAGE);
        }
        i++;
    }
    c.verb = v->name;
    c.usage = v->usage;
    for (int j = i; j < argc; j++) {
        if (strcmp(argv[j], "--") == 0)
            break;
        if (is_help(argv[j])) {
            printf("usage: sgadmin %s%s%s %s\n  %s\n", n->name, v->name[0] ? " " : "",
                   v->name, v->usage, v->summary);
            return 0;
        }
    }
    msg_set_verbose(c.verbose);
    rc = v->run(&c, argc - i, argv + i);
    cli_close(&c);
    if (fflush(stdout) != 0 || ferror(stdout))
        rc = cli_fail(EX_IOERR, "cannot write the output");
    return cli_finish(rc);
}
