# lib.sh - shared by the integration tests: a private store per test,
# removed on exit, and assertions that say what they expected.
set -eu
: "${SGADMIN:?run through make check}"
: "${SG_TOP_SRCDIR:?run through make check}"
WORK=$(mktemp -d /tmp/sg-it-XXXXXX)
STORE="$WORK/store"
trap 'rm -rf "$WORK"' EXIT INT TERM
TESTNAME=$(basename "$0" .sh)
CHECKS=0

fail() {
    echo "FAIL ($TESTNAME): $*" >&2
    exit 1
}

# sga ARGS... - sgadmin on this test's store; output in $WORK/out, $WORK/err
sga() {
    set +e
    "$SGADMIN" --store "$STORE" "$@" >"$WORK/out" 2>"$WORK/err"
    RC=$?
    set -e
    return 0
}

# expect STATUS ARGS... - run sgadmin and require that exit status
expect() {
    want=$1
    shift
    sga "$@"
    CHECKS=$((CHECKS + 1))
    [ "$RC" -eq "$want" ] || fail "sgadmin $* exited $RC, expected $want; stderr: $(cat "$WORK/err"); stdout: $(head -c 600 "$WORK/out")"
}

# out_has TEXT / err_has TEXT / out_lacks TEXT
out_has() {
    CHECKS=$((CHECKS + 1))
    grep -qF -- "$1" "$WORK/out" || fail "stdout lacks '$1': $(head -c 800 "$WORK/out")"
}
err_has() {
    CHECKS=$((CHECKS + 1))
    grep -qF -- "$1" "$WORK/err" || fail "stderr lacks '$1': $(cat "$WORK/err")"
}
out_lacks() {
    CHECKS=$((CHECKS + 1))
    ! grep -qF -- "$1" "$WORK/out" || fail "stdout has '$1': $(head -c 800 "$WORK/out")"
}

# json EXPR - evaluate a Python expression over the JSON on stdout (as j)
json() {
    CHECKS=$((CHECKS + 1))
    /usr/bin/python3 -c "import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if ($1) else 1)" "$WORK/out" ||
        fail "JSON check failed: $1 on $(head -c 800 "$WORK/out")"
}

done_ok() {
    echo "$TESTNAME: $CHECKS checks passed"
}
