#!/bin/sh
# run-dkim-bench - the DKIM signer's bars (issue "DKIM"), on one core, side
# by side with OpenSSL on this machine:
#   4 KiB messages:   sendguard's rate >= 85 % of OpenSSL's raw signing rate;
#   100 KiB messages: >= 60 % of 1 / (one OpenSSL signature + OpenSSL's time
#                     to hash 100 KiB with SHA-256 at its large-block speed).
# First OpenSSL's own figures as the issue names them (openssl speed -seconds
# 3 rsa2048 ed25519, -evp sha256).  Then, because these machines change speed
# from one second to the next, the ratios come from ROUNDS rounds in which
# OpenSSL and sendguard run back to back for one second each; each round's
# ratio is printed and the median is held to the bar.
# Usage: tests/bench/run-dkim-bench.sh [ROUNDS]   (from the build directory)
set -eu
R=${1:-5}
build=${SG_TOP_BUILDDIR:-$(pwd)}
bench=$build/tests/bench/bench_dkim
work=$(mktemp -d /tmp/sg-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
pin="taskset -c 0"
command -v taskset >/dev/null 2>&1 || pin=""

echo "# bench: DKIM signing, one core, $(date -u +%FT%TZ), $(openssl version)"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ED25519 -out "$work/ed.pem" 2>/dev/null

sign_rate() { # ALG SECONDS - OpenSSL's signatures per second
    $pin openssl speed -seconds "$2" "$1" 2>/dev/null |
        awk '/^rsa 2048 bits|Ed25519\)/ { print $(NF-1) }'
}
sha_rate() { # SECONDS - OpenSSL's SHA-256 bytes per second, 16 KiB blocks
    $pin openssl speed -seconds "$1" -bytes 16384 -evp sha256 2>/dev/null |
        awk '/^sha256/ { v = $NF; sub(/k$/, "", v); print v * 1000 }'
}
ours() { # KEY SIZE - sendguard's signatures per second, one second
    $pin "$bench" "$1" "$2" 1 | sed 's/.*sigs_per_s=\([0-9.]*\).*/\1/'
}

$pin openssl speed -seconds 3 rsa2048 ed25519 2>/dev/null >"$work/speed"
$pin openssl speed -seconds 3 -evp sha256 2>/dev/null >"$work/sha"
echo "openssl speed -seconds 3: rsa2048_sign_per_s=$(awk '/^rsa 2048 bits/ { print $(NF-1) }' "$work/speed")" \
    "ed25519_sign_per_s=$(awk '/Ed25519\)/ { print $(NF-1) }' "$work/speed")" \
    "sha256_16KiB_bytes_per_s=$(awk '/^sha256/ { v = $NF; sub(/k$/, "", v); print v * 1000 }' "$work/sha")"

fail=0
for alg in rsa2048 ed25519; do
    key=$work/rsa.pem
    [ "$alg" = ed25519 ] && key=$work/ed.pem
    : >"$work/r4" && : >"$work/r100"
    i=1
    while [ "$i" -le "$R" ]; do
        raw=$(sign_rate "$alg" 1)
        sha=$(sha_rate 1)
        s4=$(ours "$key" 4096)
        s100=$(ours "$key" 102400)
        ideal100=$(echo "scale=12; i = 1 / (1 / $raw + 102400 / $sha); scale=1; i / 1" | bc -l)
        r4=$(echo "scale=3; $s4 / $raw" | bc -l)
        r100=$(echo "scale=3; $s100 / $ideal100" | bc -l)
        echo "$alg round $i: openssl_sign_per_s=$raw openssl_sha256_bytes_per_s=$sha" \
            "ours_4KiB_per_s=$s4 ratio=$r4 ours_100KiB_per_s=$s100 ideal_100KiB_per_s=$ideal100 ratio=$r100"
        echo "$r4" >>"$work/r4"
        echo "$r100" >>"$work/r100"
        i=$((i + 1))
    done
    m4=$(sort -n "$work/r4" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    m100=$(sort -n "$work/r100" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    v4=pass
    [ "$(echo "$m4 >= 0.85" | bc -l)" = 1 ] || { v4=FAIL; fail=1; }
    v100=pass
    [ "$(echo "$m100 >= 0.60" | bc -l)" = 1 ] || { v100=FAIL; fail=1; }
    echo "${alg}_4KiB median_ratio=$m4 bar_ge_0.85=$v4"
    echo "${alg}_100KiB median_ratio=$m100 bar_ge_0.60=$v100"
done
exit $fail
