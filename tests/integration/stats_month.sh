#!/bin/sh
# stats_month - "sgadmin stats" against a generated month of events with
# known counts (stats_month.py): the events recorded as sendguard's programs
# record them (event_feed: the counters kept as they go, opens and clicks
# unique as sgtrackd counts them), then every metric of every day, week and
# month compared, for a tenant, for its categories and for all tenants; then
# the counters thrown away and rebuilt from the event log (--rebuild) and
# compared again; last, bad options.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
M="$SG_TOP_SRCDIR/tests/integration/stats_month.py"

CONF="$WORK/sendguard.conf"
printf 'store = { path = "%s"; };\n' "$STORE" >"$CONF"
mkdir -p "$STORE"
N=$($PY "$M" gen "$WORK/events.jsonl" "$WORK/expect.json" 7)
FED=$("$SG_TOP_BUILDDIR/tests/integration/event_feed" "$STORE" <"$WORK/events.jsonl") ||
    fail "event_feed failed"
check "all $N events recorded ($FED)" [ "$FED" = "$N" ]

# compare TENANT-OPTION EXPECT-TENANT AGG [CATEGORY...]
compare() {
    topt=$1
    tname=$2
    agg=$3
    shift 3
    cargs=
    for c in "$@"; do cargs="$cargs --category $c"; done
    # shellcheck disable=SC2086
    expect 0 -c "$CONF" --json stats $topt --start-date 2026-11-01 --end-date 2026-11-30 \
        --aggregated-by "$agg" $cargs
    figures=$($PY "$M" check "$WORK/expect.json" "$WORK/out" "$tname" "$agg" "$@" 2>&1) ||
        fail "$tname by $agg ${*:-}: $figures"
    CHECKS=$((CHECKS + figures))
}
round() {
    for agg in day week month; do
        compare "--tenant acme" acme "$agg"
        compare "--tenant beta" beta "$agg" news promo winter
        compare --all-tenants '*' "$agg"
        compare --all-tenants '*' "$agg" winter
    done
}
round
# the periods: 30 days, 5 weeks from Monday (Oct 26 .. Nov 23), one month
expect 0 -c "$CONF" --tenant acme --json stats --start-date 2026-11-01 --end-date 2026-11-30
json 'len(j) == 30 and j[0]["date"] == "2026-11-01" and j[-1]["date"] == "2026-11-30"'
expect 0 -c "$CONF" --tenant acme --json stats --start-date 2026-11-01 --end-date 2026-11-30 --aggregated-by week
json '[e["date"] for e in j] == ["2026-10-26", "2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23", "2026-11-30"]'
expect 0 -c "$CONF" --tenant acme --json stats --start-date 2026-11-01 --end-date 2026-11-30 --aggregated-by month
json 'len(j) == 1 and j[0]["date"] == "2026-11-01" and j[0]["stats"][0]["metrics"]["requests"] > 0'

# the counters rebuilt from the log: the same figures
rm -rf "$STORE/stats"
expect 0 -c "$CONF" --tenant acme --json stats --start-date 2026-11-01 --end-date 2026-11-01
json 'j[0]["stats"][0]["metrics"]["requests"] == 0'
expect 0 -c "$CONF" --json stats --rebuild --start-date 2026-11-01 --end-date 2026-11-01
round

# the human table: the totals and the complaint rate
expect 0 -c "$CONF" --tenant acme stats --start-date 2026-11-01 --end-date 2026-11-30 --aggregated-by week
out_has "TOTAL"
out_has "complaint rate:"
out_has "0.3%"

# bad options
expect 64 -c "$CONF" stats --aggregated-by year
expect 64 -c "$CONF" stats --start-date 2026-13-45x
expect 64 -c "$CONF" stats --start-date 2026-11-30 --end-date 2026-11-01
done_ok
