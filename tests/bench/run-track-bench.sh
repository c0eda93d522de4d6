#!/bin/sh
# run-track-bench - the tracking rewrite's bar (issue "Tracking"): a 60 KiB
# HTML newsletter (tests/fixtures/html/19-large-newsletter.html, 79 links),
# quoted-printable, with click, open and subscription tracking on, at least
# 2,000 messages/s on one core.  Beside it, in each round, the same message
# only decoded and re-encoded (what any rewrite costs before tracking does
# anything).  ROUNDS (5) rounds of one second each; the median holds the bar.
# Usage: tests/bench/run-track-bench.sh [ROUNDS]   (from the build directory)
set -eu
R=${1:-5}
build=${SG_TOP_BUILDDIR:-$(pwd)}
src=${SG_TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
bench=$build/tests/bench/bench_track
html=$src/tests/fixtures/html/19-large-newsletter.html
pin="taskset -c 0"
command -v taskset >/dev/null 2>&1 || pin=""
[ -x "$bench" ] || { echo "run-track-bench: no $bench (make bench builds it)" >&2; exit 2; }

echo "# bench: tracking rewrite, one core, $(date -u +%FT%TZ), $(wc -c <"$html") bytes of HTML"
rates=
r=1
while [ "$r" -le "$R" ]; do
    line=$($pin "$bench" "$html" 1)
    echo "round=$r $line"
    rates="$rates $(echo "$line" | sed 's/.*rewrite_per_s=\([0-9.]*\).*/\1/')"
    r=$((r + 1))
done
med=$(printf '%s\n' $rates | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
echo "rewrite_per_s_median=$med"
if [ "$(echo "$med >= 2000" | bc -l)" = 1 ]; then
    echo "bar_rewrite_ge_2000_per_s=PASS"
else
    echo "bar_rewrite_ge_2000_per_s=FAIL"
    exit 1
fi
