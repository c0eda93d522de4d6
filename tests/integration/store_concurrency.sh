#!/bin/sh
# store_concurrency - one process writes continuously while another reads
# from several threads (see store_concurrency.c for what it checks).
. "$SG_TOP_SRCDIR/tests/integration/lib.sh"
"$SG_TOP_BUILDDIR/tests/integration/store_concurrency" "$STORE" "${SG_CONC_SECONDS:-6}" 4 || fail "see the figures above"
