/*
 * track_message - one message through the pipeline's copy for one
 * recipient (pipeline_personalise: X-SMTPAPI options, unsubscribe fields,
 * the tracking rewrite, DKIM), as the relay and the milter make it, written
 * to standard output, for the rewriting tests to take apart with a MIME
 * parser of their own (and the tracker's tests to follow its URLs).  The
 * tenant's configured tracking settings apply under the message's own.  The message's id in its tokens is MESSAGE_ID.
 *
 *   track_message CONF FILE RCPT [TENANT]
 *
 * Exit status: 0, 1 when the pipeline refuses (the reason on stderr), 2 on
 * a usage or I/O error.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "fdio.h"
#include "header.h"
#include "pipeline.h"
#include "store.h"

#define MESSAGE_ID "TRACKTEST"

int main(int argc, char **argv)
{
    struct buf in, canon, out, why;
    struct conf *conf;
    struct store *st;
    struct pipeline *p;
    struct smtpapi_opts opts;
    struct pipeline_copy c;
    int rc = 1;

    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: track_message CONF FILE RCPT [TENANT]\n");
        return 2;
    }
    buf_init(&in, 65536);
    buf_init(&canon, 65536);
    buf_init(&out, 65536);
    buf_init(&why, 128);
    if (fd_read_file(argv[2], &in, &why) < 0) {
        fprintf(stderr, "track_message: %s\n", buf_str(&why));
        return 2;
    }
    header_canonical(in.data, in.len, &canon);
    if ((conf = conf_load(argv[1], &why)) == NULL ||
        (st = store_open(conf_string(conf, "store.path"), STORE_READ, &why)) == NULL) {
        fprintf(stderr, "track_message: %s\n", buf_str(&why));
        return 2;
    }
    if ((p = pipeline_new(conf, st, "relay.test", &why)) == NULL) {
        fprintf(stderr, "track_message: %s\n", buf_str(&why));
        return 2;
    }
    smtpapi_init(&opts);
    if (pipeline_options(conf, canon.data, canon.len, &opts, &why) < 0) {
        fprintf(stderr, "track_message: %s\n", buf_str(&why));
        goto out;
    }
    c.tenant = argc == 5 ? argv[4] : "default";
    pipeline_tenant_options(p, c.tenant, &opts);
    c.message = MESSAGE_ID;
    c.rcpt = argv[3];
    c.group = opts.asm_group_id > 0 ? (uint32_t)opts.asm_group_id : 0;
    c.opts = &opts;
    if (pipeline_personalise(p, &c, canon.data, canon.len, &out, NULL, &why) < 0) {
        fprintf(stderr, "track_message: %s\n", buf_str(&why));
        goto out;
    }
    fwrite(out.data, 1, out.len, stdout);
    rc = 0;
out:
    smtpapi_free(&opts);
    pipeline_free(p);
    store_close(st);
    conf_free(conf);
    buf_release(&in);
    buf_release(&canon);
    buf_release(&out);
    buf_release(&why);
    return rc;
}
