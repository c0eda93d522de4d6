#!/bin/sh
# sgadmin_interrupt - an import stopped by a signal half-way: readers saw its
# batches arrive (they are not shut out for the whole import), and after the
# signal the store is as before, needs no recovery, and sgadmin dies of the
# signal as a shell expects.
. "$SG_TOP_SRCDIR/tests/integration/lib.sh"

expect 0 bounces add keep@example.com --reason before
seq 1 400000 | sed 's/.*/u&@big.example,r&/' >"$WORK/big.csv"
"$SGADMIN" --store "$STORE" bounces import "$WORK/big.csv" >"$WORK/imp.out" 2>"$WORK/imp.err" &
pid=$!
# Wait until a reader sees the first batch, while the import goes on.
seen=0
for i in $(seq 1 600); do
    if "$SGADMIN" --store "$STORE" bounces get u1@big.example >/dev/null 2>&1; then
        seen=1
        break
    fi
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
done
[ "$seen" -eq 1 ] || fail "no batch of the import became visible to a reader"
kill -INT $pid
set +e
wait $pid
rc=$?
set -e
CHECKS=$((CHECKS + 1))
[ "$rc" -eq 130 ] || fail "the interrupted import exited $rc, not 130 (SIGINT); stderr: $(cat "$WORK/imp.err")"
grep -q "interrupted; nothing imported" "$WORK/imp.err" ||
    fail "stderr does not say the import was undone: $(cat "$WORK/imp.err")"
# Every row written before the signal was undone; the earlier entry remains.
expect 67 bounces get u1@big.example
expect 0 --json bounces list --limit 5
json 'len(j)==1 and j[0]["email"]=="keep@example.com" and j[0]["reason"]=="before"'
# No recovery was needed (it would be logged), and writes go on.
expect 0 bounces add after@example.com
CHECKS=$((CHECKS + 1))
! grep -q "recover" "$WORK/err" || fail "the store needed recovery: $(cat "$WORK/err")"
done_ok
