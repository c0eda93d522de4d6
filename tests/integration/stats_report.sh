#!/bin/sh
# stats_report - "sgadmin report --html" over a generated month of events
# (stats_month.py, recorded by event_feed), loaded in a real headless
# Chromium (stats_report.py): the tiles, the table, the charts and the top
# bounce reasons held to the month's known counts, nothing fetched from
# elsewhere, no script; screenshots in
# $SG_TOP_BUILDDIR/tests/artifacts/stats-report-*.png.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
$PY -c 'import selenium' 2>/dev/null && command -v chromedriver >/dev/null || {
    [ "${CI:-}" = true ] && fail "needs python3-selenium, chromium, chromium-driver"
    echo "stats_report: SKIP (no selenium or chromium)"
    exit 77
}
M="$SG_TOP_SRCDIR/tests/integration/stats_month.py"
ARTIFACTS="$SG_TOP_BUILDDIR/tests/artifacts"
mkdir -p "$ARTIFACTS"
CONF="$WORK/sendguard.conf"
printf 'store = { path = "%s"; };\n' "$STORE" >"$CONF"
mkdir -p "$STORE"
$PY "$M" gen "$WORK/events.jsonl" "$WORK/expect.json" 11 >/dev/null
# bounces with their replies, as the relay and ingest record them
sed -i -e 's|"type": "bounce"}|"type": "bounce", "reason": "550 5.1.1 <x@example.org>: Recipient address rejected: User unknown"}|' \
    -e 's|"type": "blocked"}|"type": "blocked", "reason": "554 5.7.1 Service unavailable; client host blocked <b>by</b> a list"}|' \
    "$WORK/events.jsonl"
"$SG_TOP_BUILDDIR/tests/integration/event_feed" "$STORE" <"$WORK/events.jsonl" >/dev/null ||
    fail "event_feed failed"
expect 0 -c "$CONF" --tenant acme bounces add gone@example.org
expect 0 -c "$CONF" --tenant acme report --html "$WORK/report.html" --start-date 2026-11-01 --end-date 2026-11-30
out_has "30 periods"
grep -q 'blocked &lt;b' "$WORK/report.html" && ! grep -q '<b>by</b>' "$WORK/report.html" ||
    fail "a reason's markup is not escaped"
CHECKS=$((CHECKS + 1))
set +e
$PY "$SG_TOP_SRCDIR/tests/integration/stats_report.py" "$WORK/report.html" "$WORK/expect.json" \
    "$WORK/events.jsonl" acme "$ARTIFACTS" >"$WORK/driver.out" 2>&1
rc=$?
set -e
cat "$WORK/driver.out"
[ "$rc" -eq 0 ] || fail "stats_report.py exited $rc: $(grep '^FAIL' "$WORK/driver.out" | head -5)"
CHECKS=$((CHECKS + $(grep -c '^ok' "$WORK/driver.out")))
# bad command lines
expect 64 -c "$CONF" report
expect 64 -c "$CONF" report --html "$WORK/x.html" --category news
expect 73 -c "$CONF" report --html "$WORK/no/such/dir/x.html"
done_ok
