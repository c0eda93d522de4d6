#!/bin/sh
# run-store-bench - the store's performance bars (issue "Foundation"):
#   decision median <= 20 us and p99 <= 100 us with 1,000,000 entries;
#   sgadmin bounces import of a 1,000,000-row CSV <= 15 s;
#   sgadmin bounces list --offset 900000 --limit 50 <= 1 s;
#   store size per million entries.
# Usage: tests/bench/run-store-bench.sh [N]   (from the build directory)
set -eu
N=${1:-1000000}
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${SG_TOP_BUILDDIR:-$(pwd)}
sgadmin=$build/sgadmin/sgadmin
bench=$build/tests/bench/bench_store
work=$(mktemp -d /tmp/sg-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

echo "# bench: store with $N entries, $(nproc) cores, $(date -u +%FT%TZ)"
"$bench" "$work/spread" "$N"

echo "# bench: sgadmin import and listing"
awk -v n="$N" 'BEGIN { print "email,reason"; for (i = 0; i < n; i++)
    printf "bounce%d@host%d.example,550 5.1.1 user unknown\n", i, i % 20000 }' \
    > "$work/bounces.csv"
t0=$(date +%s.%N)
"$sgadmin" --store "$work/import" bounces import "$work/bounces.csv" > "$work/import.out"
t1=$(date +%s.%N)
import_s=$(echo "$t1 - $t0" | bc)
cat "$work/import.out"
offset=$((N * 9 / 10))
t0=$(date +%s.%N)
"$sgadmin" --store "$work/import" --json bounces list --offset "$offset" --limit 50 \
    > "$work/list.out"
t1=$(date +%s.%N)
list_s=$(echo "$t1 - $t0" | bc)
rows=$(grep -c '"email"' "$work/list.out" || true)
size=$(du -sb "$work/import" | cut -f1)
echo "import_rows=$N import_seconds=$import_s import_rows_per_s=$(echo "$N / $import_s" | bc)"
echo "list_offset=$offset list_rows=$rows list_seconds=$list_s"
echo "import_store_bytes=$size import_store_mb_per_million=$(echo "scale=1; $size / 1048576 / ($N / 1000000)" | bc)"
echo "bar_import_le_15s=$(echo "$import_s <= 15" | bc | sed 's/1/pass/;s/0/FAIL/')"
echo "bar_list_le_1s=$(echo "$list_s <= 1" | bc | sed 's/1/pass/;s/0/FAIL/')"
