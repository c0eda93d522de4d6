#!/bin/sh
# run-stats-bench - the stats bars, measured:
#   (1) recording events with their counters from several processes at once
#       (bench_stats: PROCS (4) processes, event_record and event_line with
#       stats_first as the milter, relay and tracker record them), at least
#       50,000 events/s: a first run of RECORD (1,000,000) events into an
#       empty store;
#   (2) "sgadmin --json stats" for 90 days aggregated by day with
#       EVENTS (10,000,000) events recorded (spread over the 90 days, 3
#       tenants, 5 categories): at most 100 ms, the median of RUNS (11)
#       runs, beside the same with two categories and by month.
# The event log itself is made too (the events are recorded, not faked):
#   about 150 bytes an event, 1.5 GB for 10 million, in a mktemp -d
#   directory (TMPDIR) removed on exit.
# Usage: tests/bench/run-stats-bench.sh (BENCH_STATS, SGADMIN: the built
#   tests/bench/bench_stats and sgadmin/sgadmin under SG_TOP_BUILDDIR or the
#   top directory)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
B=${SG_TOP_BUILDDIR:-$top}
BENCH_STATS=${BENCH_STATS:-$B/tests/bench/bench_stats}
SGADMIN=${SGADMIN:-$B/sgadmin/sgadmin}
PROCS=${PROCS:-4}
RECORD=${RECORD:-1000000}
EVENTS=${EVENTS:-10000000}
RUNS=${RUNS:-11}
work=$(mktemp -d "${TMPDIR:-/tmp}/sg-stats-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
echo "# bench: stats, $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"

# (1) recording
mkdir -p "$work/rec"
r=$("$BENCH_STATS" "$work/rec" "$PROCS" "$RECORD" 90)
echo "run config=record $r"
rate=$(echo "$r" | sed 's/.*events_per_s=\([0-9]*\).*/\1/')
rm -rf "$work/rec"

# (2) the query over EVENTS events
mkdir -p "$work/st"
r=$("$BENCH_STATS" "$work/st" "$PROCS" "$EVENTS" 90)
echo "# filled: $r; event log $(du -sh "$work/st/events" | cut -f1), counters $(du -sh "$work/st/stats" | cut -f1)"
printf 'store = { path = "%s"; };\n' "$work/st" >"$work/c.conf"
end=$(date -u +%F)
start=$(date -u -d "89 days ago" +%F)
# time_ms ARGS... - the median wall time of RUNS runs of sgadmin ARGS, in ms
time_ms() {
    i=0
    while [ "$i" -lt "$RUNS" ]; do
        t0=$(date +%s%N)
        "$SGADMIN" -c "$work/c.conf" --tenant acme --json "$@" >"$work/out" || exit 1
        t1=$(date +%s%N)
        echo $(((t1 - t0) / 1000))
        i=$((i + 1))
    done | sort -n | awk '{ a[NR] = $1 } END { printf "%.1f", a[int((NR + 1) / 2)] / 1000 }'
}
ms=$(time_ms stats --start-date "$start" --end-date "$end")
n=$(/usr/bin/python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(len(j), sum(e["stats"][0]["metrics"]["requests"] for e in j))' "$work/out")
echo "run config=stats_90_days_by_day ms=$ms periods_and_requests=\"$n\""
ms2=$(time_ms stats --start-date "$start" --end-date "$end" --category news --category promo)
echo "run config=stats_90_days_two_categories ms=$ms2"
ms3=$(time_ms stats --start-date "$start" --end-date "$end" --aggregated-by month)
echo "run config=stats_90_days_by_month ms=$ms3"
fail=0
v=PASS
[ "$(awk -v r="$rate" 'BEGIN { print (r >= 50000) }')" = 1 ] || { v=FAIL; fail=1; }
echo "bar record_events_per_s>=50000 $v"
v=PASS
[ "$(awk -v m="$ms" 'BEGIN { print (m <= 100) }')" = 1 ] || { v=FAIL; fail=1; }
echo "bar stats_90_days_ms<=100 $v"
exit $fail
