#!/bin/sh
# sgadmin_errors - bad usage, bad configuration and stores that cannot be
# opened each give one clear line and their sysexits code.
. "$SG_TOP_SRCDIR/tests/integration/lib.sh"

expect 64 frobnicate list
err_has "unknown noun 'frobnicate'"
expect 64 bounces frob
err_has "bounces has no verb 'frob'"
expect 64 bounces list --bogus
err_has "unknown option --bogus"
expect 64 bounces list --limit
err_has "needs a value"
expect 0 bounces --help
out_has "import"
expect 0 --help
out_has "group-suppressions"
expect 0 bounces add --help
out_has "usage: sgadmin bounces add"

# a store that does not exist, for reading
"$SGADMIN" --store "$WORK/none" bounces list >"$WORK/out" 2>"$WORK/err" && fail "read of a missing store succeeded"
grep -q "$WORK/none" "$WORK/err" || fail "missing store not named: $(cat "$WORK/err")"
# a store path that is a file
: >"$WORK/file"
"$SGADMIN" --store "$WORK/file" bounces add a@b.example >"$WORK/out" 2>"$WORK/err" && fail "a file as store succeeded"
grep -q "not a directory" "$WORK/err" || fail "file store: $(cat "$WORK/err")"

# configuration errors name file, line and setting
printf 'store = { pth = "/tmp"; };\n' >"$WORK/bad.conf"
rc=0
"$SGADMIN" -c "$WORK/bad.conf" bounces list >"$WORK/out" 2>"$WORK/err" || rc=$?
[ "$rc" -eq 78 ] || fail "bad config exited $rc"
grep -q "bad.conf:1" "$WORK/err" || fail "no file:line: $(cat "$WORK/err")"
grep -q "store.pth" "$WORK/err" || fail "no setting name: $(cat "$WORK/err")"
printf 'store = { path = "%s/cfgstore"; };\n' "$WORK" >"$WORK/good.conf"
"$SGADMIN" -c "$WORK/good.conf" bounces add c@example.com >/dev/null || fail "store.path from the config"
[ -f "$WORK/cfgstore/entries.tch" ] || fail "store.path not used"
"$SGADMIN" -c "$WORK/missing.conf" bounces list >/dev/null 2>"$WORK/err" && fail "a missing -c file was accepted"
grep -q "missing.conf" "$WORK/err" || fail "missing config not named"

# a store that its reader may not open
expect 0 bounces add perm@example.com
if [ "$(id -u)" -eq 0 ] && command -v runuser >/dev/null; then
    chmod 711 "$WORK"
    chmod 700 "$STORE"
    runuser -u nobody -- "$SGADMIN" --store "$STORE" bounces list >"$WORK/out" 2>"$WORK/err" && fail "nobody read a private store"
    grep -q "Permission denied" "$WORK/err" || fail "no reason: $(cat "$WORK/err")"
elif [ "${CI:-}" = true ]; then
    fail "CI must run this test as root with runuser"
fi
done_ok
